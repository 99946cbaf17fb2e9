//! ClusterRole aggregation, as upstream's controller: a ClusterRole with an
//! `aggregationRule` holds the rules of every ClusterRole its selectors
//! pick (by name order, without repeats). This is how `admin`, `edit` and
//! `view` gain what the `aggregate-to-*` roles grant.

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::json;

use crate::common::{selects, Error};

pub async fn run(client: kube::Client) {
    let roles = Api::<ClusterRole>::all(client.clone());
    let controller = Controller::new(roles.clone(), watcher::Config::default());
    let store = controller.store();
    // Any role's change can change what an aggregated role holds.
    let aggregated = store.clone();
    let controller = controller.watches(roles.clone(), watcher::Config::default(), move |_| {
        aggregated.state().into_iter().filter(|r| r.aggregation_rule.is_some()).map(|r| ObjectRef::from_obj(&*r)).collect::<Vec<_>>()
    });
    crate::common::run("clusterrole-aggregation", controller, reconcile, Arc::new((roles, store))).await;
}

async fn reconcile(role: Arc<ClusterRole>, ctx: Arc<(Api<ClusterRole>, Store<ClusterRole>)>) -> Result<Action, Error> {
    let (api, store) = &*ctx;
    let Some(rule) = &role.aggregation_rule else { return Ok(Action::await_change()) };
    // Reconciles start while the first list is still coming in.
    crate::informers::ready(&store).await.map_err(|e| Error(e.to_string()))?;
    let selectors = rule.cluster_role_selectors.as_deref().unwrap_or_default();
    let name = role.metadata.name.clone().unwrap_or_default();
    let mut sources: Vec<Arc<ClusterRole>> = store
        .state()
        .into_iter()
        .filter(|r| r.metadata.name.as_deref() != Some(&name) && selectors.iter().any(|s| selects(s, r.metadata.labels.as_ref())))
        .collect();
    sources.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for rule in sources.iter().flat_map(|r| r.rules.iter().flatten()) {
        if !rules.contains(rule) {
            rules.push(rule.clone());
        }
    }
    if role.rules.as_deref().unwrap_or_default() != rules.as_slice() {
        let patch = json!({"rules": rules});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(Action::await_change())
}

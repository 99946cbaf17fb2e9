//! The disruption controller, as upstream's: each PodDisruptionBudget's
//! status says how many of its pods are healthy, how many must be
//! (`minAvailable`, or the expected count less `maxUnavailable`, where the
//! expected count is the scale of the pods' controllers), and so how many
//! disruptions are allowed now, which the eviction API spends.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use serde_json::json;
use skiff_scheduler::selector_matches;

use crate::common::{controller_of, ready_since, resolve, Error};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use crate::informers::{on_pods_in_namespace, Informer};

/// An eviction the API server recorded but the pod watch may not show yet
/// counts as a disruption this long, as upstream's DeletionTimeout.
const DELETION_TIMEOUT: chrono::Duration = chrono::Duration::minutes(2);

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
}

pub fn run(client: kube::Client, pods: &Informer<Pod>) -> impl Future<Output = ()> + Send {
    let context = Arc::new(Context { client: client.clone(), pods: pods.store() });
    crate::common::run("disruption", on_pods_in_namespace::<PodDisruptionBudget>(&client, pods), reconcile, context)
}

/// The replicas the pods' controllers want, summed once per controller;
/// None when a pod has no controller that scales.
async fn expected_count(client: &kube::Client, ns: &str, pods: &[Arc<Pod>]) -> Result<Option<i32>, Error> {
    let mut seen = HashSet::new();
    let mut total = 0;
    for pod in pods {
        let Some(owner) = controller_of(&pod.metadata) else { return Ok(None) };
        if !seen.insert(owner.uid.clone()) {
            continue;
        }
        let replicas = match owner.kind.as_str() {
            "ReplicaSet" => {
                let rs = Api::<ReplicaSet>::namespaced(client.clone(), ns).get(&owner.name).await?;
                match controller_of(&rs.metadata).filter(|o| o.kind == "Deployment") {
                    Some(d) if seen.insert(d.uid.clone()) => Api::<Deployment>::namespaced(client.clone(), ns).get(&d.name).await?.spec.and_then(|s| s.replicas),
                    Some(_) => Some(0),
                    None => rs.spec.and_then(|s| s.replicas),
                }
            }
            "ReplicationController" => Api::<ReplicationController>::namespaced(client.clone(), ns).get(&owner.name).await?.spec.and_then(|s| s.replicas),
            "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), ns).get(&owner.name).await?.spec.and_then(|s| s.replicas),
            _ => return Ok(None),
        };
        // A negative scale is 0; the sum saturates.
        total = i32::saturating_add(total, replicas.unwrap_or(1).max(0));
    }
    Ok(Some(total))
}

/// The budget's next status from its pods and, for a percentage
/// minAvailable or a maxUnavailable, the scale of their controllers
/// (None: a pod has none that scales); with the pods still counted as
/// disrupted, and the DisruptionAllowed condition's state.
pub fn next_status(budget: &PodDisruptionBudget, pods: &[Arc<Pod>], scale: Option<i32>, now: chrono::DateTime<Utc>) -> (serde_json::Value, BTreeMap<String, String>, &'static str) {
    let meta = &budget.metadata;
    let spec = budget.spec.clone().unwrap_or_default();
    // Evictions the watch has not caught up with still count as disruptions.
    let mut disrupted: BTreeMap<String, String> = BTreeMap::new();
    for (pod, at) in budget.status.as_ref().and_then(|s| s.disrupted_pods.clone()).unwrap_or_default() {
        let present = pods.iter().any(|p| p.metadata.name.as_ref() == Some(&pod) && p.metadata.deletion_timestamp.is_none());
        if present && at.0.checked_add_signed(DELETION_TIMEOUT).is_some_and(|until| until > now) {
            disrupted.insert(pod, at.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
    }
    let healthy = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && ready_since(p).is_some() && !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or_default()))
        .count() as i32;
    let (expected, desired) = match (&spec.min_available, &spec.max_unavailable) {
        (Some(IntOrString::Int(n)), _) => (Some(pods.len() as i32), Some(*n)),
        (Some(min), _) => (scale, scale.map(|e| resolve(Some(min), "0", e, true))),
        (None, Some(max)) => (scale, scale.map(|e| e.saturating_sub(resolve(Some(max), "0", e, true)).max(0))),
        (None, None) => (Some(pods.len() as i32), Some(0)),
    };
    // Without a controller's scale, a percentage or maxUnavailable budget
    // cannot be computed: no disruption is allowed, as upstream.
    let allowed = desired.map_or(0, |d| healthy.saturating_sub(d).max(0));
    let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let old_condition = budget.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "DisruptionAllowed").cloned());
    let (state, reason) = if allowed > 0 { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
    let transition = old_condition.filter(|c| c.status == state).map_or(stamp, |c| c.last_transition_time.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let status = json!({
        "observedGeneration": meta.generation,
        "currentHealthy": healthy,
        "desiredHealthy": desired.unwrap_or(0),
        "expectedPods": expected.unwrap_or(0),
        "disruptionsAllowed": allowed,
        "disruptedPods": if disrupted.is_empty() { serde_json::Value::Null } else { json!(disrupted) },
        "conditions": [{"type": "DisruptionAllowed", "status": state, "reason": reason, "message": "", "observedGeneration": meta.generation, "lastTransitionTime": transition}],
    });
    (status, disrupted, state)
}

async fn reconcile(budget: Arc<PodDisruptionBudget>, ctx: Arc<Context>) -> Result<Action, Error> {
    crate::informers::ready(&ctx.pods).await.map_err(|e| Error(e.to_string()))?;
    let meta = &budget.metadata;
    if meta.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let (ns, name) = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
    let spec = budget.spec.clone().unwrap_or_default();
    // In policy/v1 an empty selector selects every pod of the namespace, a
    // missing one none.
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()) && selector_matches(spec.selector.as_ref(), p.metadata.labels.as_ref()))
        .collect();
    // The pods' controllers' scale, read only when the budget needs it.
    let scale = match (&spec.min_available, &spec.max_unavailable) {
        (Some(IntOrString::Int(_)), _) | (None, None) => None,
        _ => expected_count(&ctx.client, &ns, &pods).await?,
    };
    let (status, disrupted, state) = next_status(&budget, &pods, scale, Utc::now());
    let current = serde_json::to_value(budget.status.clone().unwrap_or_default()).unwrap_or_default();
    let fields = ["observedGeneration", "currentHealthy", "desiredHealthy", "expectedPods", "disruptionsAllowed"];
    let changed = fields.iter().any(|k| current.get(*k).unwrap_or(&json!(0)) != &status[*k])
        || current.get("disruptedPods").map_or(0, |d| d.as_object().map_or(0, |o| o.len())) != disrupted.len()
        || current.pointer("/conditions/0/status") != Some(&json!(state));
    if changed {
        let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
        // Conditional on the version read: the eviction API writes this status too.
        let patch = json!({"metadata": {"resourceVersion": meta.resource_version}, "status": status});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    }
    Ok(Action::requeue(Duration::from_secs(if disrupted.is_empty() { 60 } else { 5 })))
}

//! The ReplicaSet and ReplicationController controller: keeps
//! `spec.replicas` active pods matching the selector, created from the
//! template and owned by the set (adopting matching orphans, releasing
//! owned pods that stop matching), and
//! reports their counts in its status, with a `ReplicaFailure` condition
//! while creating or deleting its pods fails (a quota exceeded), as
//! upstream's replica manager.

use std::cmp::Reverse;
use std::future::Future;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, StreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use serde_json::json;

use crate::informers::Informer;
use crate::common::{controlled_by, controller_of, is_active, is_available, owner_reference, ready_since, selects, Error, Expectations};

type Time = chrono::DateTime<chrono::Utc>;

/// Pods created or deleted per sync at most, as upstream's burstReplicas.
const BURST: usize = 500;
/// Creates in flight at once: kube clients do not back off on 429 by
/// themselves (client-go does), so a large batch must not flood the server.
const PARALLEL_CREATES: usize = 32;

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    expectations: Expectations,
}

/// What the controller needs of a ReplicaSet or a ReplicationController.
pub trait Replicated: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static {
    const API_VERSION: &str;
    const KIND: &str;
    /// The controller's name in logs and metrics.
    const CONTROLLER: &str;
    fn replicas(&self) -> Option<i32>;
    fn selector(&self) -> LabelSelector;
    fn template(&self) -> PodTemplateSpec;
    fn min_ready_seconds(&self) -> i32;
    fn status(&self) -> serde_json::Value;
}

impl Replicated for ReplicaSet {
    const API_VERSION: &str = "apps/v1";
    const KIND: &str = "ReplicaSet";
    const CONTROLLER: &str = "replicaset";
    fn replicas(&self) -> Option<i32> {
        self.spec.as_ref()?.replicas
    }
    fn selector(&self) -> LabelSelector {
        self.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default()
    }
    fn template(&self) -> PodTemplateSpec {
        self.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn status(&self) -> serde_json::Value {
        serde_json::to_value(self.status.clone().unwrap_or_default()).unwrap_or_default()
    }
}

impl Replicated for ReplicationController {
    const API_VERSION: &str = "v1";
    const KIND: &str = "ReplicationController";
    const CONTROLLER: &str = "replicationcontroller";
    fn replicas(&self) -> Option<i32> {
        self.spec.as_ref()?.replicas
    }
    fn selector(&self) -> LabelSelector {
        LabelSelector { match_labels: self.spec.as_ref().and_then(|s| s.selector.clone()), match_expressions: None }
    }
    fn template(&self) -> PodTemplateSpec {
        self.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default()
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn status(&self) -> serde_json::Value {
        serde_json::to_value(self.status.clone().unwrap_or_default()).unwrap_or_default()
    }
}

pub fn run<K: Replicated>(client: kube::Client, pods: &Informer<Pod>) -> impl Future<Output = ()> + Send {
    let pod_events = pods.subscribe();
    let context = Arc::new(Context { client: client.clone(), pods: pods.store(), expectations: Expectations::default() });
    let controller = Controller::new(Api::<K>::all(client), watcher::Config::default()).owns_shared_stream(pod_events);
    crate::common::run(K::CONTROLLER, controller, reconcile::<K>, context)
}

/// The replicas the set wants: a negative count is 0, as upstream's
/// controller treats it.
fn wanted<K: Replicated>(rs: &K) -> usize {
    rs.replicas().unwrap_or(1).max(0) as usize
}

/// How many pods to create (positive) or which to delete, at most BURST
/// a sync: the active pods that go first when scaling down.
pub fn change<K: Replicated>(rs: &K, active: &[Arc<Pod>]) -> (usize, Vec<Arc<Pod>>) {
    let wanted = wanted(rs);
    if active.len() < wanted {
        return ((wanted - active.len()).min(BURST), vec![]);
    }
    let mut ranked = active.to_vec();
    ranked.sort_by_cached_key(deletion_rank);
    ranked.truncate((active.len() - wanted).min(BURST));
    (0, ranked)
}

async fn reconcile<K: Replicated>(rs: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    crate::informers::ready(&ctx.pods).await.map_err(|e| Error(e.to_string()))?;
    let meta = rs.meta();
    let (ns, name, uid) = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default(), meta.uid.clone().unwrap_or_default());
    let selector = rs.selector();
    let (owned, strays): (Vec<Arc<Pod>>, Vec<Arc<Pod>>) = controlled_by(&ctx.pods, meta).into_iter().partition(|p| selects(&selector, p.metadata.labels.as_ref()));
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    if meta.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Pods whose labels no longer match are released, as upstream does.
    for stray in &strays {
        let others: Vec<_> = stray.metadata.owner_references.iter().flatten().filter(|o| o.uid != uid).collect();
        let patch = json!({"metadata": {"ownerReferences": if others.is_empty() { serde_json::Value::Null } else { json!(others) }, "uid": stray.metadata.uid}});
        let _ = pods_api.patch(stray.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(patch)).await;
    }
    // Orphans the selector matches are adopted, as upstream does.
    let orphans: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()) && controller_of(&p.metadata).is_none() && is_active(p))
        .filter(|p| selects(&selector, p.metadata.labels.as_ref()))
        .collect();
    // Adopted pods count in this pass already, as upstream's claimed pods
    // do: else the set creates their replacements and deletes one later.
    let mut owned = owned;
    for orphan in orphans {
        let patch = json!({"metadata": {"ownerReferences": [owner_reference(meta, K::API_VERSION, K::KIND)], "uid": orphan.metadata.uid}});
        if pods_api.patch(orphan.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Strategic(patch)).await.is_ok() {
            owned.push(orphan);
        }
    }
    let present: HashSet<String> = owned.iter().filter_map(|p| p.metadata.name.clone()).collect();
    let active: Vec<Arc<Pod>> = owned.iter().filter(|p| is_active(p)).cloned().collect();
    // The API's refusal of a create or delete (upstream's
    // manageReplicasErr): surfaced in the status, then retried.
    let mut failure: Option<String> = None;
    if ctx.expectations.satisfied(&uid, &present) {
        let (create, doomed) = change(&*rs, &active);
        if create > 0 {
            failure = create_pods(&ctx, &*rs, &pods_api, create).await.err();
        } else if !doomed.is_empty() {
            ctx.expectations.expect(&uid, [], doomed.iter().filter_map(|p| p.metadata.name.clone()));
            for pod in doomed {
                let params = DeleteParams { preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }), ..Default::default() };
                match pods_api.delete(pod.metadata.name.as_deref().unwrap_or_default(), &params).await {
                    // Gone already, or another pod by that name now.
                    Ok(_) | Err(kube::Error::Api(kube::error::ErrorResponse { code: 404 | 409, .. })) => {}
                    Err(e) => {
                        tracing::debug!("deleting a pod of {ns}/{name}: {e}");
                        failure.get_or_insert_with(|| api_message(e));
                    }
                }
            }
        }
    }
    update_status(&ctx, &*rs, &owned, failure.as_deref()).await?;
    match failure {
        Some(message) => Err(Error(message)),
        None => Ok(Action::requeue(Duration::from_secs(30))),
    }
}

/// What the API said, as client-go's error text: a refusal's message.
fn api_message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(response) => response.message,
        e => e.to_string(),
    }
}

/// Every decision of one sync, on the objects alone: for the fuzz targets.
pub fn fuzz<K: Replicated>(rs: &K, pods: &[Arc<Pod>]) {
    let selector = rs.selector();
    let owned: Vec<Arc<Pod>> = pods.iter().filter(|p| selects(&selector, p.metadata.labels.as_ref())).cloned().collect();
    let active: Vec<Arc<Pod>> = owned.iter().filter(|p| is_active(p)).cloned().collect();
    let _ = change(rs, &active);
    let _ = next_status(rs, &owned, None);
    let _ = next_status(rs, &owned, Some("refused"));
    let _ = owner_reference(rs.meta(), K::API_VERSION, K::KIND);
}

/// Creates `count` pods from the template in doubling batches (1, 2, 4, …),
/// as upstream's slow start: a template the API refuses fails once, not
/// `count` times.
async fn create_pods<K: Replicated>(ctx: &Context, rs: &K, pods: &Api<Pod>, count: usize) -> Result<(), String> {
    let meta = rs.meta();
    let uid = meta.uid.clone().unwrap_or_default();
    let template = rs.template();
    let mut pod_meta = template.metadata.unwrap_or_default();
    pod_meta.generate_name = Some(format!("{}-", meta.name.as_deref().unwrap_or_default()));
    pod_meta.owner_references = Some(vec![owner_reference(meta, K::API_VERSION, K::KIND)]);
    pod_meta.namespace = meta.namespace.clone();
    let pod = Pod { metadata: pod_meta, spec: template.spec, status: None };
    let params = PostParams::default();
    let (mut done, mut batch) = (0, 1);
    while done < count {
        let size = batch.min(count - done);
        let results: Vec<Result<Pod, kube::Error>> = stream::iter(0..size).map(|_| pods.create(&params, &pod)).buffer_unordered(size.min(PARALLEL_CREATES)).collect().await;
        let created: Vec<String> = results.iter().filter_map(|r| r.as_ref().ok()).filter_map(|p| p.metadata.name.clone()).collect();
        ctx.expectations.expect(&uid, created.clone(), []);
        if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
            return Err(api_message(e));
        }
        done += size;
        batch *= 2;
    }
    Ok(())
}

/// Which pods go first when scaling down, as upstream ranks them:
/// unscheduled, then pending, then not ready, then the most recently
/// ready or created.
type Rank = (bool, u8, bool, Reverse<Option<Time>>, Reverse<Option<Time>>);

fn deletion_rank(pod: &Arc<Pod>) -> Rank {
    let assigned = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let ready = ready_since(pod);
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (assigned, phase, ready.is_some(), Reverse(ready), Reverse(created))
}

/// The set's status from its pods and this sync's failure to create or
/// delete them, and whether it differs from the one it has. A failure adds
/// a `ReplicaFailure` condition unless one is there (upstream keeps the
/// first one's message); a sync without one removes it.
pub fn next_status<K: Replicated>(rs: &K, owned: &[Arc<Pod>], failure: Option<&str>) -> (serde_json::Value, bool) {
    let min_ready = rs.min_ready_seconds();
    let active: Vec<&Arc<Pod>> = owned.iter().filter(|p| is_active(p)).collect();
    let template_labels = rs.template().metadata.and_then(|m| m.labels).unwrap_or_default();
    let current = rs.status();
    let had: Vec<serde_json::Value> = current.get("conditions").and_then(|c| c.as_array()).cloned().unwrap_or_default();
    let mut conditions = had.clone();
    let failing = conditions.iter().any(|c| c["type"] == REPLICA_FAILURE);
    match failure {
        Some(message) if !failing => {
            let reason = match active.len().cmp(&wanted(rs)) {
                std::cmp::Ordering::Less => "FailedCreate",
                std::cmp::Ordering::Greater => "FailedDelete",
                std::cmp::Ordering::Equal => "",
            };
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            conditions.push(crate::endpoints::compact(json!({"type": REPLICA_FAILURE, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message})));
        }
        None if failing => conditions.retain(|c| c["type"] != REPLICA_FAILURE),
        _ => {}
    }
    let status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": active.iter().filter(|p| p.metadata.labels.as_ref().is_some_and(|l| template_labels.iter().all(|(k, v)| l.get(k) == Some(v)))).count(),
        "readyReplicas": active.iter().filter(|p| ready_since(p).is_some()).count(),
        "availableReplicas": active.iter().filter(|p| is_available(p, min_ready)).count(),
        "observedGeneration": rs.meta().generation,
        // An emptied list goes (null), as Go's omitempty drops it.
        "conditions": if conditions.is_empty() { serde_json::Value::Null } else { json!(conditions) },
    });
    let unchanged = ["replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration"]
        .iter()
        .all(|k| current.get(k).unwrap_or(&json!(0)) == status.get(k).filter(|v| !v.is_null()).unwrap_or(&json!(0)))
        && conditions == had;
    (status, !unchanged)
}

const REPLICA_FAILURE: &str = "ReplicaFailure";

async fn update_status<K: Replicated>(ctx: &Context, rs: &K, owned: &[Arc<Pod>], failure: Option<&str>) -> Result<(), Error> {
    let (status, changed) = next_status(rs, owned, failure);
    if !changed {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), rs.meta().namespace.as_deref().unwrap_or_default());
    api.patch_status(rs.meta().name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(replicas: i32, conditions: serde_json::Value) -> ReplicationController {
        serde_json::from_value(json!({
            "metadata": {"name": "condition-test", "namespace": "ns", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"name": "condition-test"}, "template": {"metadata": {"labels": {"name": "condition-test"}}}},
            "status": {"replicas": 2, "fullyLabeledReplicas": 2, "observedGeneration": 1, "conditions": conditions},
        }))
        .unwrap()
    }

    fn pods(n: usize) -> Vec<Arc<Pod>> {
        (0..n).map(|i| Arc::new(serde_json::from_value(json!({"metadata": {"name": format!("p{i}"), "labels": {"name": "condition-test"}}})).unwrap())).collect()
    }

    /// `[sig-apps] ReplicationController should surface a failure condition
    /// on a common issue like exceeded quota [Conformance]`: a refused
    /// create sets `ReplicaFailure` (True, FailedCreate, the API's message)
    /// once; a sync without failure removes it.
    #[test]
    fn a_refused_create_surfaces_a_replica_failure_condition() {
        let message = "pods \"condition-test-x\" is forbidden: exceeded quota: condition-test, requested: pods=1, used: pods=2, limited: pods=2";
        let (status, changed) = next_status(&rc(3, json!(null)), &pods(2), Some(message));
        assert!(changed);
        let condition = &status["conditions"][0];
        assert_eq!((&condition["type"], &condition["status"], &condition["reason"], &condition["message"]), (&json!("ReplicaFailure"), &json!("True"), &json!("FailedCreate"), &json!(message)));
        assert!(condition["lastTransitionTime"].is_string());
        // Failing again: the first condition stays as it is.
        let (_, changed) = next_status(&rc(3, status["conditions"].clone()), &pods(2), Some("another"));
        assert!(!changed);
        // Scaled to what the quota allows: the condition goes.
        let (status, changed) = next_status(&rc(2, status["conditions"].clone()), &pods(2), None);
        assert!(changed);
        assert!(status["conditions"].is_null());
        // And a set without one, not failing, is unchanged.
        assert!(!next_status(&rc(2, json!(null)), &pods(2), None).1);
    }
}

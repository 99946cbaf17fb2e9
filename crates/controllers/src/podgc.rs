//! The pod garbage collector, as upstream's: every 20 s it deletes
//! finished pods beyond `--terminated-pod-gc-threshold` (oldest first),
//! pods bound to nodes that no longer exist (marked Failed with a
//! `DisruptionTarget` condition first), and unscheduled pods already
//! being deleted (nothing else would finish their deletion).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::Store;
use serde_json::json;

const PERIOD: Duration = Duration::from_secs(20);
/// One API call may take this long: a call that never answers (the
/// client's own read timeout is 295 s) must not stop every later period.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(client: kube::Client, pods: Store<Pod>, nodes: Store<Node>, threshold: usize) {
    let mut ticks = tokio::time::interval(PERIOD);
    // Nodes missing twice in a row are gone, not just not yet seen
    // (upstream's quarantine).
    let mut suspects: HashSet<String> = HashSet::new();
    loop {
        ticks.tick().await;
        if crate::informers::ready(&pods).await.is_err() || crate::informers::ready(&nodes).await.is_err() {
            continue;
        }
        let all = pods.state();
        let known: HashSet<String> = nodes.state().iter().filter_map(|n| n.metadata.name.clone()).collect();

        let mut finished: Vec<&Arc<Pod>> = all.iter().filter(|p| matches!(phase(p), Some("Succeeded" | "Failed")) && p.metadata.deletion_timestamp.is_none()).collect();
        if finished.len() > threshold {
            finished.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            let excess = finished.len() - threshold;
            for pod in finished.into_iter().take(excess) {
                delete(&client, pod).await;
            }
        }

        let missing: HashSet<String> = all.iter().filter_map(|p| p.spec.as_ref()?.node_name.clone()).filter(|n| !known.contains(n)).collect();
        for pod in all.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| missing.contains(n) && suspects.contains(n))) {
            let api: Api<Pod> = Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap_or_default());
            let name = pod.metadata.name.as_deref().unwrap_or_default();
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let condition = json!({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC", "message": "PodGC: node no longer exists", "lastTransitionTime": now});
            let status = json!({"status": {"phase": "Failed", "conditions": [condition]}});
            if !matches!(phase(pod), Some("Succeeded" | "Failed")) {
                let _ = tokio::time::timeout(CALL_TIMEOUT, api.patch_status(name, &PatchParams::default(), &Patch::Strategic(status))).await;
            }
            delete(&client, pod).await;
        }
        suspects = missing;

        for pod in all.iter().filter(|p| p.metadata.deletion_timestamp.is_some() && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none()) {
            delete(&client, pod).await;
        }
    }
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

async fn delete(client: &kube::Client, pod: &Pod) {
    let api: Api<Pod> = Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap_or_default());
    let params = DeleteParams { grace_period_seconds: Some(0), preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }), ..Default::default() };
    match tokio::time::timeout(CALL_TIMEOUT, api.delete(pod.metadata.name.as_deref().unwrap_or_default(), &params)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!("pod GC: deleting {:?}: {e}", pod.metadata.name),
        Err(_) => tracing::warn!("pod GC: deleting {:?}: no answer in {CALL_TIMEOUT:?}", pod.metadata.name),
    }
}

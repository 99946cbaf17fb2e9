//! upstream's pvc-protection and pv-protection controllers: a claim being
//! deleted keeps its `kubernetes.io/pvc-protection` finalizer while a pod
//! that has not finished uses it, and a volume being deleted keeps
//! `kubernetes.io/pv-protection` while it is Bound. (The
//! StorageObjectInUseProtection admission plugin adds both.)

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::Resource;
use serde_json::json;
use skiff_scheduler::volume_rules::claims_of;

use crate::informers::Informer;

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

pub fn run(client: kube::Client, pods: &Informer<Pod>, claims: &Informer<PersistentVolumeClaim>, volumes: &Informer<PersistentVolume>) -> impl std::future::Future<Output = ()> + Send {
    let changes = futures::stream::select(futures::stream::select(claims.subscribe().map(drop), volumes.subscribe().map(drop)), pods.subscribe().map(drop));
    let (pods, claims, volumes) = (pods.store(), claims.store(), volumes.store());
    async move {
        let mut triggers = changes.ready_chunks(1024).boxed();
        while triggers.next().await.is_some() {
            if crate::informers::ready(&claims).await.is_err() || crate::informers::ready(&volumes).await.is_err() || crate::informers::ready(&pods).await.is_err() {
                continue;
            }
            sync(&client, &claims, &volumes, &pods).await;
        }
    }
}

/// One pass over what is being deleted and still protected.
async fn sync(client: &kube::Client, claims: &Store<PersistentVolumeClaim>, volumes: &Store<PersistentVolume>, pods: &Store<Pod>) {
    let deleting = |meta: &kube::api::ObjectMeta, finalizer: &str| meta.deletion_timestamp.is_some() && meta.finalizers.iter().flatten().any(|f| f == finalizer);
    let claims: Vec<Arc<PersistentVolumeClaim>> = claims.state().into_iter().filter(|c| deleting(c.meta(), PVC_PROTECTION)).collect();
    if !claims.is_empty() {
        let in_use = claims_in_use(&pods.state());
        for claim in claims {
            let (Some(ns), Some(name)) = (claim.metadata.namespace.as_deref(), claim.metadata.name.as_deref()) else { continue };
            if !in_use.contains(&format!("{ns}/{name}")) {
                release(&Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns), claim.as_ref(), PVC_PROTECTION).await;
            }
        }
    }
    for volume in volumes.state().into_iter().filter(|v| deleting(v.meta(), PV_PROTECTION)) {
        let bound = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if !bound {
            release(&Api::<PersistentVolume>::all(client.clone()), volume.as_ref(), PV_PROTECTION).await;
        }
    }
}

/// `namespace/claim` of every claim a pod that has not finished uses, by
/// name or as its generic ephemeral volume (as the scheduler reads them).
fn claims_in_use(pods: &[Arc<Pod>]) -> HashSet<String> {
    pods.iter()
        .filter(|pod| !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
        .flat_map(|pod| claims_of(pod))
        .map(|(key, _)| key)
        .collect()
}

/// Removes `finalizer`, on the version read: a concurrent change wins and
/// the next pass looks again.
async fn release<K>(api: &Api<K>, object: &K, finalizer: &str)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let meta = object.meta();
    let kept: Vec<&String> = meta.finalizers.iter().flatten().filter(|f| *f != finalizer).collect();
    let patch = json!({"metadata": {"finalizers": kept, "resourceVersion": meta.resource_version}});
    let name = meta.name.as_deref().unwrap_or_default();
    if let Err(e) = api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
        tracing::debug!("removing {finalizer} from {name}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_pods_hold_their_claims_finished_ones_do_not() {
        let pod = |name: &str, phase: &str, volumes: serde_json::Value| -> Arc<Pod> {
            Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"containers": [], "volumes": volumes}, "status": {"phase": phase}})).unwrap())
        };
        let used = claims_in_use(&[
            pod("a", "Running", json!([{"name": "data", "persistentVolumeClaim": {"claimName": "held"}}])),
            pod("b", "Succeeded", json!([{"name": "data", "persistentVolumeClaim": {"claimName": "free"}}])),
            pod("c", "Pending", json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}])),
        ]);
        assert_eq!(used, ["ns/held".to_string(), "ns/c-scratch".to_string()].into());
    }
}

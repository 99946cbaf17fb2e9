//! upstream's ephemeral volume controller: a pod's generic ephemeral
//! volume gets its claim, `<pod>-<volume>`, made from the volume's
//! `volumeClaimTemplate` and owned by the pod, so that the claim goes with
//! it. The kubelet mounts only a claim the pod owns.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use skiff_scheduler::volume_rules::ephemeral_claim_name;

use crate::informers::Informer;

pub fn run(client: kube::Client, pods: &Informer<Pod>) -> impl std::future::Future<Output = ()> + Send {
    let (mut changes, store) = (pods.subscribe().boxed(), pods.store());
    async move {
        // The pods there before this started, then each change.
        if crate::informers::ready(&store).await.is_ok() {
            for pod in store.state() {
                ensure_claims(&client, &pod).await;
            }
        }
        while let Some(pod) = changes.next().await {
            ensure_claims(&client, &pod).await;
        }
    }
}

async fn ensure_claims(client: &kube::Client, pod: &Pod) {
    for claim in claims_for(pod) {
        let ns = claim.metadata.namespace.clone().unwrap_or_default();
        match Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns).create(&PostParams::default(), &claim).await {
            Ok(_) => {}
            // Made before, or someone else's: the kubelet checks the owner.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => tracing::warn!("the ephemeral volume claim {ns}/{}: {e}", claim.metadata.name.as_deref().unwrap_or_default()),
        }
    }
}

/// The claims a pod's ephemeral volumes need; none for a pod being deleted.
fn claims_for(pod: &Pod) -> Vec<PersistentVolumeClaim> {
    let (Some(name), Some(ns), Some(uid)) = (pod.metadata.name.as_deref(), pod.metadata.namespace.as_deref(), pod.metadata.uid.as_deref()) else { return Vec::new() };
    if pod.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    volumes
        .filter_map(|volume| {
            let template = volume.ephemeral.as_ref()?.volume_claim_template.as_ref()?;
            let meta = template.metadata.clone().unwrap_or_default();
            serde_json::from_value(json!({
                "metadata": {
                    "name": ephemeral_claim_name(name, &volume.name),
                    "namespace": ns,
                    "labels": meta.labels,
                    "annotations": meta.annotations,
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}],
                },
                "spec": template.spec,
            }))
            .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ephemeral_volume_becomes_a_claim_the_pod_owns() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [], "volumes": [
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"metadata": {"labels": {"type": "scratch"}}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}},
                {"name": "config", "configMap": {"name": "c"}},
            ]}
        }))
        .unwrap();
        let claims = claims_for(&pod);
        assert_eq!(claims.len(), 1);
        let claim = serde_json::to_value(&claims[0]).unwrap();
        assert_eq!(claim["metadata"]["name"], "web-scratch");
        assert_eq!(claim["metadata"]["labels"]["type"], "scratch");
        assert_eq!(claim["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(claim["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
    }
}

//! Upstream's attach/detach controller, for CSI volumes: a pod bound to a
//! node that uses a claim bound to a CSI volume whose driver must attach
//! it (its CSIDriver says `attachRequired: true`, or there is no CSIDriver:
//! upstream's default) gets a VolumeAttachment for that volume and node;
//! one that no pod on its node needs any more is deleted. The driver's
//! attacher, on the node (`skiff_csi::attacher`), attaches and detaches;
//! the kubelet mounts a volume only once it is attached.
//!
//! A pod needs its volumes until it is gone from the API, finished or
//! not: its kubelet unmounts them before it lets the pod go, so a volume
//! is never detached from under a mount.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{CSIDriver, VolumeAttachment};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;
use skiff_csi::attachment_name;
use skiff_scheduler::volume_rules::claims_of;

use crate::informers::Informer;

pub fn run(client: kube::Client, pods: &Informer<Pod>, claims: &Informer<PersistentVolumeClaim>, volumes: &Informer<PersistentVolume>) -> impl std::future::Future<Output = ()> + Send {
    let drivers = Informer::<CSIDriver>::start(Api::all(client.clone()));
    let attachments = Informer::<VolumeAttachment>::start(Api::all(client.clone()));
    let changes = futures::stream::select_all([
        pods.subscribe().map(drop).boxed(),
        claims.subscribe().map(drop).boxed(),
        volumes.subscribe().map(drop).boxed(),
        drivers.subscribe().map(drop).boxed(),
        attachments.subscribe().map(drop).boxed(),
    ]);
    let (pods, claims, volumes) = (pods.store(), claims.store(), volumes.store());
    async move {
        let (drivers_store, attachments_store) = (drivers.store(), attachments.store());
        let mut triggers = changes.ready_chunks(1024).boxed();
        while triggers.next().await.is_some() {
            let ready = crate::informers::ready(&pods).await.is_ok()
                && crate::informers::ready(&claims).await.is_ok()
                && crate::informers::ready(&volumes).await.is_ok()
                && crate::informers::ready(&drivers_store).await.is_ok()
                && crate::informers::ready(&attachments_store).await.is_ok();
            if ready {
                sync(&client, &pods, &claims, &volumes, &drivers_store, &attachments_store).await;
            }
        }
    }
}

/// The attachments the pods need, by name: (driver, volume, node).
fn wanted(pods: &Store<Pod>, claims: &Store<PersistentVolumeClaim>, volumes: &Store<PersistentVolume>, drivers: &Store<CSIDriver>) -> BTreeMap<String, (String, String, String)> {
    let mut wanted = BTreeMap::new();
    for pod in pods.state() {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) else { continue };
        for (key, _) in claims_of(&pod) {
            let Some((ns, name)) = key.split_once('/') else { continue };
            let Some(claim) = claims.get(&ObjectRef::new(name).within(ns)) else { continue };
            let Some(volume_name) = claim.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty()) else { continue };
            let Some(volume) = volumes.get(&ObjectRef::new(&volume_name)) else { continue };
            let Some(csi) = volume.spec.as_ref().and_then(|s| s.csi.as_ref()) else { continue };
            let attach = drivers.get(&ObjectRef::new(&csi.driver)).is_none_or(|d| d.spec.attach_required != Some(false));
            if attach {
                wanted.insert(attachment_name(&csi.volume_handle, &csi.driver, &node), (csi.driver.clone(), volume_name, node.clone()));
            }
        }
    }
    wanted
}

async fn sync(client: &kube::Client, pods: &Store<Pod>, claims: &Store<PersistentVolumeClaim>, volumes: &Store<PersistentVolume>, drivers: &Store<CSIDriver>, attachments: &Store<VolumeAttachment>) {
    let api: Api<VolumeAttachment> = Api::all(client.clone());
    let wanted = wanted(pods, claims, volumes, drivers);
    let existing = attachments.state();
    for (name, (driver, volume, node)) in &wanted {
        if existing.iter().any(|a| a.metadata.name.as_deref() == Some(name.as_str())) {
            continue;
        }
        let attachment = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
            "metadata": {"name": name},
            "spec": {"attacher": driver, "nodeName": node, "source": {"persistentVolumeName": volume}},
        });
        let Ok(attachment) = serde_json::from_value::<VolumeAttachment>(attachment) else { continue };
        match api.create(&PostParams::default(), &attachment).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => tracing::warn!("creating VolumeAttachment {name} of {volume} to {node}: {e}"),
        }
    }
    for attachment in existing {
        let name = attachment.metadata.name.as_deref().unwrap_or_default();
        if is_ours(&attachment, volumes) && attachment.metadata.deletion_timestamp.is_none() && !wanted.contains_key(name) {
            if let Err(e) = api.delete(name, &DeleteParams::default()).await {
                tracing::debug!("deleting VolumeAttachment {name}: {e}");
            }
        }
    }
}

/// Whether this controller made the attachment: named for its volume's
/// handle, driver and node, as it names them. Others' (made by hand, or by
/// another controller) are left alone, as upstream's controller leaves them.
fn is_ours(attachment: &VolumeAttachment, volumes: &Store<PersistentVolume>) -> bool {
    let spec = &attachment.spec;
    let Some(volume) = spec.source.persistent_volume_name.as_deref().and_then(|v| volumes.get(&ObjectRef::new(v))) else { return false };
    let Some(csi) = volume.spec.as_ref().and_then(|s| s.csi.as_ref()) else { return false };
    attachment.metadata.name.as_deref() == Some(attachment_name(&csi.volume_handle, &spec.attacher, &spec.node_name).as_str())
}

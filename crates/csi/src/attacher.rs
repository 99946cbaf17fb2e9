//! external-attacher's job, done by the node a VolumeAttachment names,
//! for the drivers registered there (whose controller service it reaches
//! over their socket, as the provisioner does):
//!
//! - a new attachment gets the driver's finalizer
//!   (`external-attacher/<driver>`), then `ControllerPublishVolume` when
//!   the driver attaches volumes (PUBLISH_UNPUBLISH_VOLUME), and status
//!   `attached: true` with the driver's publish context as
//!   `attachmentMetadata` (a driver that does not attach is attached at
//!   once, as upstream's attacher treats it); a failure is the status's
//!   `attachError`;
//! - a deleted one gets `ControllerUnpublishVolume`, then loses the
//!   finalizer, and goes.
//!
//! The kubelet stages a volume only once its attachment is attached.

use std::sync::Arc;

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{CSIPersistentVolumeSource, PersistentVolume};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

use crate::pb::csi;
use crate::registry::{Driver, Registry};

/// Upstream's finalizer for a driver's attachments: anything but letters,
/// digits and `-` in its name becomes `-`.
pub fn finalizer(driver: &str) -> String {
    let mut name: String = driver.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
    if name.ends_with('-') {
        name.push('X');
    }
    format!("external-attacher/{name}")
}

/// How long after a failed attach it is tried again.
const RETRY_SECONDS: i64 = 10;

/// Runs for as long as the process does.
pub async fn run(client: kube::Client, node: String, registry: Registry) {
    let (attachments, attachments_writer) = reflector::store();
    let (volumes, volumes_writer) = reflector::store();
    let changes = futures::stream::select(
        reflector::reflector(attachments_writer, watcher(Api::<VolumeAttachment>::all(client.clone()), watcher::Config::default())).default_backoff().map(drop),
        reflector::reflector(volumes_writer, watcher(Api::<PersistentVolume>::all(client.clone()), watcher::Config::default())).default_backoff().map(drop),
    );
    // A resync retries what failed: a driver registering late, an attach error.
    let ticks = futures::stream::unfold(tokio::time::interval(std::time::Duration::from_secs(10)), |mut t| async move {
        t.tick().await;
        Some(((), t))
    });
    let mut triggers = futures::stream::select(changes.boxed(), ticks.boxed()).ready_chunks(1024);
    while triggers.next().await.is_some() {
        if futures::FutureExt::now_or_never(attachments.wait_until_ready()).is_none() || futures::FutureExt::now_or_never(volumes.wait_until_ready()).is_none() {
            continue;
        }
        for attachment in attachments.state() {
            if attachment.spec.node_name != node {
                continue;
            }
            let Some(driver) = registry.get(&attachment.spec.attacher) else { continue };
            if let Err(e) = sync(&client, &driver, &attachment, &volumes).await {
                tracing::warn!(attachment = attachment.metadata.name.as_deref().unwrap_or_default(), "{e:#}");
            }
        }
    }
}

async fn sync(client: &kube::Client, driver: &Driver, attachment: &Arc<VolumeAttachment>, volumes: &Store<PersistentVolume>) -> Result<()> {
    let api: Api<VolumeAttachment> = Api::all(client.clone());
    let name = attachment.metadata.name.as_deref().unwrap_or_default();
    let finalizer = finalizer(&driver.name);
    let finalizers = attachment.metadata.finalizers.clone().unwrap_or_default();
    // The attached volume, and its CSI source.
    let volume = || -> Result<(Arc<PersistentVolume>, CSIPersistentVolumeSource)> {
        let name = attachment.spec.source.persistent_volume_name.as_deref().context("not an attachment of a PersistentVolume")?;
        let volume = volumes.get(&ObjectRef::new(name)).with_context(|| format!("persistentvolume {name} not found"))?;
        let source = volume.spec.as_ref().and_then(|s| s.csi.clone()).context("not a CSI volume")?;
        Ok((volume, source))
    };
    if attachment.metadata.deletion_timestamp.is_some() {
        if !finalizers.contains(&finalizer) {
            return Ok(());
        }
        if driver.publishes {
            let request = csi::ControllerUnpublishVolumeRequest { volume_id: volume()?.1.volume_handle, node_id: driver.node_id.clone(), secrets: Default::default() };
            driver.controller().controller_unpublish_volume(request).await.map_err(crate::mounter::rpc_error)?;
        }
        let kept: Vec<&String> = finalizers.iter().filter(|f| **f != finalizer).collect();
        let patch = json!({"metadata": {"finalizers": kept, "resourceVersion": attachment.metadata.resource_version}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        return Ok(());
    }
    if attachment.status.as_ref().is_some_and(|s| s.attached) {
        return Ok(());
    }
    // A failed attach is tried again by the resync, not at once: its own
    // status change would otherwise bring it straight back.
    let failed_at = attachment.status.as_ref().and_then(|s| s.attach_error.as_ref()).and_then(|e| e.time.as_ref());
    if failed_at.is_some_and(|t| (k8s_openapi::chrono::Utc::now() - t.0).num_seconds() < RETRY_SECONDS) {
        return Ok(());
    }
    if !finalizers.contains(&finalizer) {
        let mut with = finalizers.clone();
        with.push(finalizer);
        let patch = json!({"metadata": {"finalizers": with, "resourceVersion": attachment.metadata.resource_version}});
        // The change comes back through the watch, and the next pass attaches.
        api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        return Ok(());
    }
    let published = match driver.publishes {
        true => match volume() {
            Ok((volume, source)) => publish(driver, &volume, source).await,
            Err(e) => Err(e),
        },
        // A driver that does not attach: attached at once.
        false => Ok(Default::default()),
    };
    let status = match published {
        Ok(context) => json!({"status": {"attached": true, "attachmentMetadata": context, "attachError": null}}),
        Err(e) => json!({"status": {"attached": false, "attachError": {"time": crate::provisioner::now(), "message": format!("{e:#}")}}}),
    };
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await?;
    Ok(())
}

/// ControllerPublishVolume; the driver's publish context.
async fn publish(driver: &Driver, volume: &PersistentVolume, source: CSIPersistentVolumeSource) -> Result<std::collections::HashMap<String, String>> {
    let spec = volume.spec.clone().unwrap_or_default();
    let mode = spec.access_modes.clone().unwrap_or_default().first().cloned().unwrap_or_else(|| "ReadWriteOnce".into());
    let block = spec.volume_mode.as_deref() == Some("Block");
    let request = csi::ControllerPublishVolumeRequest {
        volume_id: source.volume_handle.clone(),
        node_id: driver.node_id.clone(),
        volume_capability: Some(crate::provisioner::capability(&mode, block, source.fs_type.as_deref().unwrap_or_default(), spec.mount_options.clone().unwrap_or_default())?),
        readonly: source.read_only == Some(true),
        secrets: Default::default(),
        volume_context: source.volume_attributes.clone().unwrap_or_default().into_iter().collect(),
    };
    let response = driver.controller().controller_publish_volume(request).await.map_err(crate::mounter::rpc_error)?;
    Ok(response.into_inner().publish_context)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finalizers_are_named_as_upstream_s() {
        assert_eq!(super::finalizer("local.csi.skiff.io"), "external-attacher/local-csi-skiff-io");
        assert_eq!(super::finalizer("example.com/"), "external-attacher/example-com-X");
    }
}

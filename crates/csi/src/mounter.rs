//! The kubelet's CSI volume plugin: a pod's CSI volume is staged once per
//! node (`NodeStageVolume`, for drivers that stage) and published into the
//! pod's directory (`NodePublishVolume`); when the pod goes, it is
//! unpublished, and unstaged once no pod on the node uses it.
//!
//! As upstream's, each published volume keeps `vol_data.json` beside its
//! mount point, so a pod left by an earlier run of the agent is torn down
//! from what is on disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::CSIPersistentVolumeSource;
use serde::{Deserialize, Serialize};

use crate::pb::csi;
use crate::registry::Registry;
use crate::Paths;

/// The plugin's directory under a pod's `volumes`.
pub const PLUGIN_DIR: &str = "kubernetes.io~csi";
/// How long a mount waits for its driver to register (at the agent's start).
const DRIVER_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Mounter {
    pub paths: Paths,
    pub registry: Registry,
    /// `<data>/pods`: every pod's directory, to know who else uses a volume.
    pub pods: PathBuf,
}

/// What `vol_data.json` records (upstream's key names).
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
struct VolumeData {
    driver_name: String,
    volume_handle: String,
    #[serde(rename = "specVolID")]
    spec_vol_id: String,
    /// `Ephemeral` for an inline volume, which is never staged.
    #[serde(default = "persistent")]
    volume_lifecycle_mode: String,
}

fn persistent() -> String {
    "Persistent".into()
}

/// How the pod will use a volume.
pub struct Usage<'a> {
    pub access_mode: &'a str,
    pub read_only: bool,
    /// `volumeMode: Block`: the target becomes the raw device.
    pub block: bool,
    /// An inline volume of the pod's own (CSI's ephemeral lifecycle): the
    /// driver makes it at NodePublishVolume and removes it at
    /// NodeUnpublishVolume; it is never staged.
    pub ephemeral: bool,
    pub mount_options: Vec<String>,
    /// Added to the volume's context: the pod's details, for a driver whose
    /// CSIDriver asks for them (`podInfoOnMount`).
    pub pod_info: std::collections::HashMap<String, String>,
    /// What attaching the volume to this node told of it (its
    /// VolumeAttachment's `attachmentMetadata`).
    pub publish_context: std::collections::HashMap<String, String>,
}

impl Mounter {
    /// Stages (once per node) and publishes the volume for the pod whose
    /// directory is `pod_dir`; returns where it is mounted (in Block mode,
    /// the device node bound there).
    pub async fn publish(&self, pod_dir: &Path, volume: &str, source: &CSIPersistentVolumeSource, usage: Usage<'_>) -> Result<PathBuf> {
        let driver = self.registry.wait_for(&source.driver, DRIVER_WAIT).await?;
        let dir = pod_dir.join("volumes").join(PLUGIN_DIR).join(volume);
        let target = dir.join("mount");
        std::fs::create_dir_all(&dir)?;
        // Recorded first: a crash after this still finds what to undo.
        let volume_lifecycle_mode = if usage.ephemeral { "Ephemeral" } else { "Persistent" }.to_string();
        let data = VolumeData { driver_name: source.driver.clone(), volume_handle: source.volume_handle.clone(), spec_vol_id: volume.to_string(), volume_lifecycle_mode };
        std::fs::write(dir.join("vol_data.json"), serde_json::to_vec(&data)?)?;
        let capability = crate::provisioner::capability(usage.access_mode, usage.block, source.fs_type.as_deref().unwrap_or_default(), usage.mount_options)?;
        let context: std::collections::HashMap<String, String> = source.volume_attributes.clone().unwrap_or_default().into_iter().collect();
        let mut node = driver.node();
        let staging = self.paths.staging(&source.driver, &source.volume_handle);
        let stages = driver.stages && !usage.ephemeral;
        if stages {
            std::fs::create_dir_all(&staging)?;
            let request = csi::NodeStageVolumeRequest {
                volume_id: source.volume_handle.clone(),
                staging_target_path: staging.to_string_lossy().into_owned(),
                volume_capability: Some(capability.clone()),
                volume_context: context.clone(),
                publish_context: usage.publish_context.clone(),
                ..Default::default()
            };
            node.node_stage_volume(request).await.map_err(rpc_error).context("MountVolume.MountDevice failed")?;
        }
        let request = csi::NodePublishVolumeRequest {
            volume_id: source.volume_handle.clone(),
            staging_target_path: if stages { staging.to_string_lossy().into_owned() } else { String::new() },
            target_path: target.to_string_lossy().into_owned(),
            volume_capability: Some(capability),
            readonly: usage.read_only || source.read_only == Some(true),
            volume_context: context.into_iter().chain(usage.pod_info).collect(),
            publish_context: usage.publish_context,
            ..Default::default()
        };
        node.node_publish_volume(request).await.map_err(rpc_error)?;
        Ok(target)
    }

    /// Unpublishes every CSI volume of the pod whose directory is
    /// `pod_dir`, and unstages those no other pod here uses. An error leaves
    /// the volume's directory in place, to be tried again.
    pub async fn unpublish_all(&self, pod_dir: &Path) -> Result<()> {
        let plugin = pod_dir.join("volumes").join(PLUGIN_DIR);
        for entry in std::fs::read_dir(&plugin).into_iter().flatten().flatten() {
            let dir = entry.path();
            let Ok(text) = std::fs::read(dir.join("vol_data.json")) else {
                // Nothing was published here before the record.
                let _ = std::fs::remove_dir(&dir);
                continue;
            };
            let data: VolumeData = serde_json::from_slice(&text).with_context(|| format!("{}/vol_data.json", dir.display()))?;
            let driver = self.registry.wait_for(&data.driver_name, DRIVER_WAIT).await?;
            let mut node = driver.node();
            let target = dir.join("mount");
            let request = csi::NodeUnpublishVolumeRequest { volume_id: data.volume_handle.clone(), target_path: target.to_string_lossy().into_owned() };
            node.node_unpublish_volume(request).await.map_err(rpc_error).with_context(|| format!("UnmountVolume.TearDown failed for volume \"{}\"", data.spec_vol_id))?;
            if crate::mounts::is_mounted(&target) {
                bail!("{} is still mounted after NodeUnpublishVolume", target.display());
            }
            std::fs::remove_file(dir.join("vol_data.json"))?;
            let _ = std::fs::remove_dir(&target);
            std::fs::remove_dir(&dir).with_context(|| format!("removing {}", dir.display()))?;
            if driver.stages && data.volume_lifecycle_mode != "Ephemeral" && !self.in_use(&data.driver_name, &data.volume_handle) {
                let staging = self.paths.staging(&data.driver_name, &data.volume_handle);
                let request = csi::NodeUnstageVolumeRequest { volume_id: data.volume_handle.clone(), staging_target_path: staging.to_string_lossy().into_owned() };
                node.node_unstage_volume(request).await.map_err(rpc_error).context("UnmountDevice failed")?;
                if let Some(parent) = staging.parent() {
                    let _ = std::fs::remove_dir(&staging);
                    let _ = std::fs::remove_dir(parent);
                }
            }
        }
        Ok(())
    }

    /// Whether a pod on this node still has the volume published.
    fn in_use(&self, driver: &str, handle: &str) -> bool {
        self.published(driver, handle).is_some()
    }

    /// Where a pod on this node has the volume published, if one has.
    pub fn published(&self, driver: &str, handle: &str) -> Option<PathBuf> {
        let pods = std::fs::read_dir(&self.pods).into_iter().flatten().flatten();
        pods.flat_map(|pod| std::fs::read_dir(pod.path().join("volumes").join(PLUGIN_DIR)).into_iter().flatten().flatten()).find_map(|v| {
            let data = std::fs::read(v.path().join("vol_data.json")).ok().and_then(|t| serde_json::from_slice::<VolumeData>(&t).ok())?;
            (data.driver_name == driver && data.volume_handle == handle).then(|| v.path().join("mount"))
        })
    }

    /// Grows the filesystem of a volume published here to `bytes`
    /// (`NodeExpandVolume`, upstream's online expansion).
    pub async fn expand(&self, source: &CSIPersistentVolumeSource, access_mode: &str, bytes: i64) -> Result<()> {
        let driver = self.registry.get(&source.driver).context("driver not registered")?;
        let target = self.published(&source.driver, &source.volume_handle).context("the volume is not published on this node")?;
        let capability = crate::provisioner::capability(access_mode, false, source.fs_type.as_deref().unwrap_or_default(), vec![])?;
        let staging = if driver.stages { self.paths.staging(&source.driver, &source.volume_handle).to_string_lossy().into_owned() } else { String::new() };
        let request = csi::NodeExpandVolumeRequest {
            volume_id: source.volume_handle.clone(),
            volume_path: target.to_string_lossy().into_owned(),
            capacity_range: Some(csi::CapacityRange { required_bytes: bytes, limit_bytes: 0 }),
            staging_target_path: staging,
            volume_capability: Some(capability),
            secrets: Default::default(),
        };
        driver.node().node_expand_volume(request).await.map_err(rpc_error)?;
        Ok(())
    }

    /// Usage of a published volume (`NodeGetVolumeStats`): (bytes total,
    /// available, used), then the same for inodes.
    pub async fn stats(&self, driver: &str, handle: &str, path: &Path) -> Result<Vec<csi::VolumeUsage>> {
        let driver = self.registry.get(driver).context("driver not registered")?;
        let request = csi::NodeGetVolumeStatsRequest { volume_id: handle.to_string(), volume_path: path.to_string_lossy().into_owned(), staging_target_path: String::new() };
        Ok(driver.node().node_get_volume_stats(request).await.map_err(rpc_error)?.into_inner().usage)
    }
}

/// A gRPC status as upstream's kubelet words it in events.
pub fn rpc_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("rpc error: code = {:?} desc = {}", status.code(), status.message())
}

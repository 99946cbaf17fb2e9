//! The Container Storage Interface, both sides.
//!
//! Skiff is the container orchestrator (CO): it does the jobs of upstream's
//! sidecars itself, so a driver's own containers are enough.
//! - [`registry`]: the kubelet's plugin watcher: drivers announce
//!   themselves in `plugins_registry`; each one's node facts go to its
//!   CSINode and Node.
//! - [`provisioner`]: external-provisioner's job, on the node (its
//!   `--node-deployment` mode): a claim of a driver's class gets a volume
//!   (CreateVolume) and a PersistentVolume; a released one is deleted.
//! - [`snapshots`]: external-snapshotter's jobs, on the node holding the
//!   volume: VolumeSnapshots, their contents, CreateSnapshot/DeleteSnapshot;
//!   claims restored from snapshots or cloned from claims.
//! - [`attacher`]: external-attacher's job, on the node an attachment
//!   names: ControllerPublishVolume for VolumeAttachments.
//! - [`mounter`]: the kubelet's CSI volume plugin: stage, publish,
//!   unpublish, unstage, stats.
//!
//! Skiff's own drivers are served over sockets like any other ([`serve`]):
//! [`local`] (`local.csi.skiff.io`) behind the built-in classes, and
//! [`subdir`] (`subdir.csi.skiff.io`), ReadWriteMany volumes as
//! subdirectories of a GlusterFS or NFS [`share`].

pub mod attacher;
pub mod local;
pub mod mounter;
pub mod mounts;
pub mod provisioner;
pub mod registry;
pub mod serve;
pub mod share;
pub mod snapshots;
pub mod socket;
pub mod subdir;

/// The generated services and messages.
pub mod pb {
    /// CSI v1 (`csi.v1`).
    pub mod csi {
        tonic::include_proto!("csi.v1");
    }
    /// The kubelet's plugin registration (`pluginregistration`).
    pub mod registration {
        tonic::include_proto!("pluginregistration");
    }
}

/// Upstream's name for a volume's VolumeAttachment to a node: `csi-` and
/// the sha256 of the volume's handle, driver and node.
pub fn attachment_name(handle: &str, driver: &str, node: &str) -> String {
    format!("csi-{}", sha256_hex(&format!("{handle}{driver}{node}")))
}

/// Upstream's handle for a pod's inline CSI volume: one per pod and
/// volume, the same on every retry.
pub fn inline_volume_handle(pod_uid: &str, volume: &str) -> String {
    format!("csi-{}", sha256_hex(&format!("{pod_uid}{volume}")))
}

pub(crate) fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The CSI versions this CO speaks, as plugin registration names them.
pub const SUPPORTED_VERSIONS: &[&str] = &["1.0.0"];

/// Where upstream's kubelet keeps what plugins need: their sockets
/// (`plugins/<name>/csi.sock`), their registration sockets
/// (`plugins_registry/`), and volumes staged for pods
/// (`plugins/kubernetes.io/csi/<driver>/<sha256 of handle>/globalmount`).
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: std::path::PathBuf,
}

impl Paths {
    pub fn registry(&self) -> std::path::PathBuf {
        self.root.join("plugins_registry")
    }

    pub fn plugin(&self, driver: &str) -> std::path::PathBuf {
        self.root.join("plugins").join(driver)
    }

    pub fn staging(&self, driver: &str, handle: &str) -> std::path::PathBuf {
        self.root.join("plugins/kubernetes.io/csi").join(driver).join(sha256_hex(handle)).join("globalmount")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn attachment_names_are_upstream_s() {
        assert_eq!(super::attachment_name("pvc-1", "driver.example.com", "node-1"), "csi-0cf5bca14ecd67a192fe33cfbc29bc70d520fcfdc65a7b9ff04d3d555cf72c56");
    }
}

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
//! - [`mounter`]: the kubelet's CSI volume plugin: stage, publish,
//!   unpublish, unstage, stats.
//!
//! Skiff's own drivers are served over sockets like any other ([`serve`]):
//! [`local`] (`local.csi.skiff.io`) behind the built-in classes, and
//! [`subdir`] (`subdir.csi.skiff.io`), ReadWriteMany volumes as
//! subdirectories of a GlusterFS or NFS [`share`].

pub mod local;
pub mod mounter;
pub mod mounts;
pub mod provisioner;
pub mod registry;
pub mod serve;
pub mod share;
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
        use sha2::Digest;
        let hash: String = sha2::Sha256::digest(handle.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        self.root.join("plugins/kubernetes.io/csi").join(driver).join(hash).join("globalmount")
    }
}

//! Filesystems served over the network, mounted with the host's own tools
//! as upstream's in-tree plugins mount them: GlusterFS through its FUSE
//! client (`mount -t glusterfs`, from glusterfs-client), NFS through the
//! kernel's client (`mount -t nfs`). The kubelet mounts the in-tree
//! `glusterfs` and `nfs` volume sources with it, and `subdir.csi.skiff.io`
//! its shares.

use std::path::Path;
use std::time::Duration;

use tonic::Status;

use crate::mounts::{is_mounted, run};

/// How long a mount may take before the server is taken as unreachable
/// (the FUSE client would otherwise retry for minutes).
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Protocol {
    Glusterfs,
    Nfs,
}

impl Protocol {
    pub fn parse(name: &str) -> Result<Protocol, Status> {
        match name {
            "glusterfs" => Ok(Protocol::Glusterfs),
            "nfs" => Ok(Protocol::Nfs),
            other => Err(Status::invalid_argument(format!("type {other:?} is neither \"glusterfs\" nor \"nfs\""))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Glusterfs => "glusterfs",
            Protocol::Nfs => "nfs",
        }
    }
}

/// A share: its servers (the first is asked first) and its path there,
/// a GlusterFS volume's name or an NFS export, with any subdirectory.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    pub protocol: Protocol,
    pub servers: Vec<String>,
    pub path: String,
}

impl Share {
    /// `sub` inside this share.
    pub fn join(&self, sub: &str) -> Share {
        Share { path: format!("{}/{}", self.path.trim_end_matches('/'), sub.trim_matches('/')), ..self.clone() }
    }

    /// What `mount` takes: `host:/volume[/sub]` or `host:/export[/sub]`.
    fn source(&self) -> Result<String, Status> {
        let server = self.servers.first().ok_or_else(|| Status::invalid_argument("the share has no server"))?;
        let host = if server.contains(':') { format!("[{server}]") } else { server.clone() };
        Ok(format!("{host}:/{}", self.path.trim_start_matches('/')))
    }

    fn options(&self, read_only: bool, extra: &[String]) -> Vec<String> {
        let mut options = Vec::new();
        if read_only {
            options.push("ro".to_string());
        }
        if self.protocol == Protocol::Glusterfs && self.servers.len() > 1 {
            // The FUSE client's failover for fetching the volume's layout.
            options.push(format!("backup-volfile-servers={}", self.servers[1..].join(":")));
        }
        options.extend(extra.iter().cloned());
        options
    }
}

/// Mounts `share` at `target` (made if missing); nothing to do when
/// something is mounted there already.
pub async fn mount(share: &Share, target: &Path, read_only: bool, extra: &[String]) -> Result<(), Status> {
    if is_mounted(target) {
        return Ok(());
    }
    std::fs::create_dir_all(target).map_err(|e| Status::internal(format!("creating {}: {e}", target.display())))?;
    let source = share.source()?;
    let options = share.options(read_only, extra);
    let target_text = target.to_string_lossy();
    let mut args = vec!["-t", share.protocol.name()];
    let joined = options.join(",");
    if !joined.is_empty() {
        args.extend(["-o", joined.as_str()]);
    }
    args.extend([source.as_str(), target_text.as_ref()]);
    match tokio::time::timeout(MOUNT_TIMEOUT, run("mount", &args)).await {
        Ok(result) => result.map(drop),
        Err(_) => Err(Status::deadline_exceeded(format!("mounting {source} at {target_text}: no answer in {} s", MOUNT_TIMEOUT.as_secs()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_options_are_what_mount_takes() {
        let gluster = Share { protocol: Protocol::Glusterfs, servers: vec!["10.0.0.1".into(), "10.0.0.2".into(), "10.0.0.3".into()], path: "gv0".into() };
        assert_eq!(gluster.join("pvc-1").source().unwrap(), "10.0.0.1:/gv0/pvc-1");
        assert_eq!(gluster.options(true, &[]), ["ro", "backup-volfile-servers=10.0.0.2:10.0.0.3"]);
        let nfs = Share { protocol: Protocol::Nfs, servers: vec!["fd00::1".into()], path: "/exports/data/".into() };
        assert_eq!(nfs.join("/x/").source().unwrap(), "[fd00::1]:/exports/data/x");
        assert_eq!(nfs.options(false, &["nfsvers=4.1".into()]), ["nfsvers=4.1"]);
        assert!(Protocol::parse("cifs").is_err());
    }
}

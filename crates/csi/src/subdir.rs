//! `subdir.csi.skiff.io`: ReadWriteMany volumes, a subdirectory each on a
//! share every node reaches (a GlusterFS volume or an NFS export), as
//! csi-driver-nfs makes them. A class names the share:
//!
//! ```yaml
//! provisioner: subdir.csi.skiff.io
//! parameters: {type: glusterfs, server: 10.0.0.5, share: gv0, subDir: "${pvc.metadata.namespace}-${pvc.metadata.name}", onDelete: archive}
//! ```
//!
//! - CreateVolume mounts the share for a moment and makes the
//!   subdirectory (`subDir`, by default the volume's name); DeleteVolume
//!   removes it (`onDelete: delete`, the default), keeps it (`retain`) or
//!   renames it `archived-<subdir>` (`archive`).
//! - NodePublishVolume mounts the subdirectory itself at the pod's target,
//!   on whichever node the pod runs.
//!
//! Everything the node needs is in the volume's id,
//! `<type>#<servers>#<share>#<subdir>#<onDelete>`, so a volume outlives
//! the class that made it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use tonic::{Request, Response, Status};

use crate::mounts::{internal, is_mounted, unmount, usage};
use crate::pb::csi::{self as csi, controller_server, identity_server, node_server};
use crate::share::{self, Protocol, Share};
use crate::Paths;

pub const NAME: &str = "subdir.csi.skiff.io";

#[derive(Clone)]
pub struct Subdir {
    node: String,
    /// Where the controller mounts a share while it makes or removes a subdirectory.
    work: PathBuf,
}

/// Starts the driver on its socket and announces it; runs until the process ends.
pub fn start(paths: &Paths, node: &str) -> Result<()> {
    let work = paths.plugin(NAME).join("controller");
    std::fs::create_dir_all(&work)?;
    crate::serve::serve(paths, NAME, Subdir { node: node.to_string(), work })
}

/// What `DeleteVolume` does with the subdirectory.
#[derive(Debug, Clone, Copy, PartialEq)]
enum OnDelete {
    Delete,
    Retain,
    Archive,
}

impl OnDelete {
    fn parse(text: &str) -> Result<OnDelete, Status> {
        match text {
            "" | "delete" => Ok(OnDelete::Delete),
            "retain" => Ok(OnDelete::Retain),
            "archive" => Ok(OnDelete::Archive),
            other => Err(Status::invalid_argument(format!("onDelete: {other:?} is not one of delete, retain, archive"))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            OnDelete::Delete => "delete",
            OnDelete::Retain => "retain",
            OnDelete::Archive => "archive",
        }
    }
}

/// A volume: its share, its subdirectory there, and what deletion does.
#[derive(Debug, PartialEq)]
struct Volume {
    share: Share,
    subdir: String,
    on_delete: OnDelete,
}

impl Volume {
    fn id(&self) -> String {
        let s = &self.share;
        format!("{}#{}#{}#{}#{}", s.protocol.name(), s.servers.join(","), s.path, self.subdir, self.on_delete.name())
    }

    fn parse(id: &str) -> Result<Volume, Status> {
        let parts: Vec<&str> = id.split('#').collect();
        let [protocol, servers, path, subdir, on_delete] = parts[..] else {
            return Err(Status::not_found(format!("{id:?} is not a volume of {NAME}")));
        };
        let share = Share { protocol: Protocol::parse(protocol)?, servers: servers.split(',').map(str::to_string).collect(), path: path.to_string() };
        check_subdir(subdir)?;
        Ok(Volume { share, subdir: subdir.to_string(), on_delete: OnDelete::parse(on_delete)? })
    }
}

/// A subdirectory stays inside its share, and `#` separates an id's parts.
fn check_subdir(subdir: &str) -> Result<(), Status> {
    let fine = !subdir.is_empty() && !subdir.contains('#') && Path::new(subdir).components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if fine {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!("subDir {subdir:?} must be a relative path inside the share, without '..' or '#'")))
    }
}

/// csi-driver-nfs's `subDir` templates: `${pvc.metadata.name}`,
/// `${pvc.metadata.namespace}`, `${pv.metadata.name}`, from what the CO
/// passes with CreateVolume (external-provisioner's `--extra-create-metadata`).
fn expand_subdir(template: &str, parameters: &HashMap<String, String>) -> String {
    let get = |key: &str| parameters.get(key).cloned().unwrap_or_default();
    template
        .replace("${pvc.metadata.name}", &get(crate::provisioner::PVC_NAME))
        .replace("${pvc.metadata.namespace}", &get(crate::provisioner::PVC_NAMESPACE))
        .replace("${pv.metadata.name}", &get(crate::provisioner::PV_NAME))
}

impl Subdir {
    /// Runs `work` with the share's root mounted, then unmounts it.
    async fn with_share<T>(&self, volume_name: &str, share: &Share, work: impl FnOnce(&Path) -> std::io::Result<T>) -> Result<T, Status> {
        let at = self.work.join(volume_name.replace('/', "_"));
        share::mount(share, &at, false, &[]).await?;
        let result = work(&at).map_err(internal);
        unmount(&at)?;
        let _ = std::fs::remove_dir(&at);
        result
    }
}

#[tonic::async_trait]
impl identity_server::Identity for Subdir {
    async fn get_plugin_info(&self, _: Request<csi::GetPluginInfoRequest>) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        Ok(Response::new(csi::GetPluginInfoResponse { name: NAME.into(), vendor_version: env!("CARGO_PKG_VERSION").into(), manifest: Default::default() }))
    }

    async fn get_plugin_capabilities(&self, _: Request<csi::GetPluginCapabilitiesRequest>) -> Result<Response<csi::GetPluginCapabilitiesResponse>, Status> {
        use csi::plugin_capability::{service, Service, Type};
        let controller = csi::PluginCapability { r#type: Some(Type::Service(Service { r#type: service::Type::ControllerService as i32 })) };
        Ok(Response::new(csi::GetPluginCapabilitiesResponse { capabilities: vec![controller] }))
    }

    async fn probe(&self, _: Request<csi::ProbeRequest>) -> Result<Response<csi::ProbeResponse>, Status> {
        Ok(Response::new(csi::ProbeResponse { ready: Some(true) }))
    }
}

fn is_block(capability: &csi::VolumeCapability) -> bool {
    matches!(capability.access_type, Some(csi::volume_capability::AccessType::Block(_)))
}

#[tonic::async_trait]
impl controller_server::Controller for Subdir {
    async fn create_volume(&self, request: Request<csi::CreateVolumeRequest>) -> Result<Response<csi::CreateVolumeResponse>, Status> {
        let request = request.into_inner();
        if request.name.is_empty() {
            return Err(Status::invalid_argument("a volume name is required"));
        }
        if request.volume_capabilities.iter().any(is_block) {
            return Err(Status::invalid_argument(format!("{NAME} volumes are directories: volumeMode Block is not supported")));
        }
        if request.volume_content_source.is_some() {
            return Err(Status::invalid_argument(format!("{NAME} does not restore snapshots or clone volumes")));
        }
        let p = &request.parameters;
        let required = |key: &str| p.get(key).filter(|v| !v.is_empty()).cloned().ok_or_else(|| Status::invalid_argument(format!("parameter {key} is required")));
        let servers: Vec<String> = required("server")?.split(',').map(|s| s.trim().to_string()).collect();
        let share = Share { protocol: Protocol::parse(p.get("type").map(String::as_str).unwrap_or("nfs"))?, servers, path: required("share")? };
        if share.servers.iter().chain([&share.path]).any(|s| s.contains('#') || s.is_empty()) {
            return Err(Status::invalid_argument("server and share must not contain '#'"));
        }
        let subdir = p.get("subDir").map(|t| expand_subdir(t, p)).unwrap_or_else(|| request.name.clone());
        check_subdir(&subdir)?;
        let volume = Volume { share, subdir, on_delete: OnDelete::parse(p.get("onDelete").map(String::as_str).unwrap_or(""))? };
        let subdir = volume.subdir.clone();
        self.with_share(&request.name, &volume.share, |root| {
            use std::os::unix::fs::PermissionsExt;
            let dir = root.join(&subdir);
            std::fs::create_dir_all(&dir)?;
            // A new volume is writable by whoever the pod runs as, as an
            // empty local-path volume is handed to it (the kubelet cannot
            // chown a directory another node's pod may have written to).
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
        })
        .await?;
        let context = HashMap::from([("type".to_string(), volume.share.protocol.name().to_string()), ("server".into(), volume.share.servers.join(",")), ("share".into(), volume.share.path.clone()), ("subDir".into(), volume.subdir.clone())]);
        let capacity_bytes = request.capacity_range.map(|r| r.required_bytes).unwrap_or(0);
        Ok(Response::new(csi::CreateVolumeResponse { volume: Some(csi::Volume { capacity_bytes, volume_id: volume.id(), volume_context: context, ..Default::default() }) }))
    }

    async fn delete_volume(&self, request: Request<csi::DeleteVolumeRequest>) -> Result<Response<csi::DeleteVolumeResponse>, Status> {
        let id = request.into_inner().volume_id;
        // A volume of another driver's making is not this one's to delete, and not an error (the spec's idempotency).
        let Ok(volume) = Volume::parse(&id) else { return Ok(Response::new(csi::DeleteVolumeResponse {})) };
        if volume.on_delete == OnDelete::Retain {
            return Ok(Response::new(csi::DeleteVolumeResponse {}));
        }
        let name = volume.subdir.replace('/', "_");
        self.with_share(&name, &volume.share, |root| {
            let dir = root.join(&volume.subdir);
            let result = match volume.on_delete {
                OnDelete::Archive => {
                    let archived = dir.with_file_name(format!("archived-{}", dir.file_name().unwrap_or_default().to_string_lossy()));
                    std::fs::rename(&dir, archived)
                }
                _ => std::fs::remove_dir_all(&dir),
            };
            match result {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        })
        .await?;
        Ok(Response::new(csi::DeleteVolumeResponse {}))
    }

    async fn controller_get_capabilities(&self, _: Request<csi::ControllerGetCapabilitiesRequest>) -> Result<Response<csi::ControllerGetCapabilitiesResponse>, Status> {
        use csi::controller_service_capability::{rpc::Type, Rpc, Type as Cap};
        let rpc = |t: Type| csi::ControllerServiceCapability { r#type: Some(Cap::Rpc(Rpc { r#type: t as i32 })) };
        Ok(Response::new(csi::ControllerGetCapabilitiesResponse { capabilities: vec![rpc(Type::CreateDeleteVolume), rpc(Type::SingleNodeMultiWriter)] }))
    }
}

#[tonic::async_trait]
impl node_server::Node for Subdir {
    async fn node_publish_volume(&self, request: Request<csi::NodePublishVolumeRequest>) -> Result<Response<csi::NodePublishVolumeResponse>, Status> {
        let request = request.into_inner();
        let volume = Volume::parse(&request.volume_id)?;
        let capability = request.volume_capability.ok_or_else(|| Status::invalid_argument("volume_capability is required"))?;
        let flags = match &capability.access_type {
            Some(csi::volume_capability::AccessType::Mount(m)) => m.mount_flags.clone(),
            _ => return Err(Status::invalid_argument("volumeMode Block is not supported")),
        };
        share::mount(&volume.share.join(&volume.subdir), Path::new(&request.target_path), request.readonly, &flags).await?;
        Ok(Response::new(csi::NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(&self, request: Request<csi::NodeUnpublishVolumeRequest>) -> Result<Response<csi::NodeUnpublishVolumeResponse>, Status> {
        let target = PathBuf::from(request.into_inner().target_path);
        unmount(&target)?;
        match std::fs::remove_dir(&target) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(internal(e)),
            _ => Ok(Response::new(csi::NodeUnpublishVolumeResponse {})),
        }
    }

    async fn node_get_volume_stats(&self, request: Request<csi::NodeGetVolumeStatsRequest>) -> Result<Response<csi::NodeGetVolumeStatsResponse>, Status> {
        let path = PathBuf::from(request.into_inner().volume_path);
        if !is_mounted(&path) {
            return Err(Status::not_found(format!("{} is not mounted", path.display())));
        }
        // The share's figures: a subdirectory has none of its own.
        Ok(Response::new(csi::NodeGetVolumeStatsResponse { usage: usage(&path)?, volume_condition: None }))
    }

    async fn node_get_capabilities(&self, _: Request<csi::NodeGetCapabilitiesRequest>) -> Result<Response<csi::NodeGetCapabilitiesResponse>, Status> {
        use csi::node_service_capability::{rpc::Type, Rpc, Type as Cap};
        let rpc = |t: Type| csi::NodeServiceCapability { r#type: Some(Cap::Rpc(Rpc { r#type: t as i32 })) };
        Ok(Response::new(csi::NodeGetCapabilitiesResponse { capabilities: vec![rpc(Type::GetVolumeStats), rpc(Type::SingleNodeMultiWriter)] }))
    }

    async fn node_get_info(&self, _: Request<csi::NodeGetInfoRequest>) -> Result<Response<csi::NodeGetInfoResponse>, Status> {
        Ok(Response::new(csi::NodeGetInfoResponse { node_id: self.node.clone(), max_volumes_per_node: 0, accessible_topology: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_everything_the_node_needs() {
        let volume = Volume {
            share: Share { protocol: Protocol::Glusterfs, servers: vec!["10.0.0.1".into(), "10.0.0.2".into()], path: "gv0".into() },
            subdir: "team/pvc-1".into(),
            on_delete: OnDelete::Archive,
        };
        assert_eq!(volume.id(), "glusterfs#10.0.0.1,10.0.0.2#gv0#team/pvc-1#archive");
        assert_eq!(Volume::parse(&volume.id()).unwrap(), volume);
        for bad in ["pvc-1", "glusterfs#h#gv0#../x#delete", "glusterfs#h#gv0#/abs#delete", "glusterfs#h#gv0#x#shred", "cifs#h#s#x#delete"] {
            assert!(Volume::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sub_directories_expand_the_claim_s_names() {
        let parameters = HashMap::from([
            (crate::provisioner::PVC_NAME.to_string(), "data".to_string()),
            (crate::provisioner::PVC_NAMESPACE.to_string(), "shop".to_string()),
            (crate::provisioner::PV_NAME.to_string(), "pvc-1".to_string()),
        ]);
        assert_eq!(expand_subdir("${pvc.metadata.namespace}-${pvc.metadata.name}/${pv.metadata.name}", &parameters), "shop-data/pvc-1");
    }
}

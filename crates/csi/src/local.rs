//! `local.csi.skiff.io`: the CSI driver behind the built-in classes, one
//! per node, serving its node's volumes under one root directory.
//!
//! - `type: path` (class `local-path`): a directory per volume,
//!   `<root>/<id>`, bind-mounted into the pod. No size limit, as
//!   local-path-provisioner.
//! - `type: disk` (class `local-disk`): a sparse file of exactly the size
//!   asked, `<root>/<id>.img`, with its own filesystem (ext4, or
//!   `csi.storage.k8s.io/fstype: xfs`), staged through a loop device: a pod
//!   cannot write past it, and it grows online. In Block mode the pod gets
//!   the loop device itself.
//!
//! A volume lives on one node: its topology is [`TOPOLOGY_KEY`]. Every
//! call is idempotent, as the spec asks, so a CO that crashed half-way
//! repeats it and finishes: a disk is made under `<id>.img.part` and
//! renamed when whole, and leftovers are removed at start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use tonic::{Request, Response, Status};

use crate::pb::csi::{self as csi, controller_server, identity_server, node_server};
use crate::mounts::{bind, internal, is_mounted, run, unmount, usage};
use crate::Paths;

pub const NAME: &str = "local.csi.skiff.io";
pub const TOPOLOGY_KEY: &str = "topology.local.csi.skiff.io/node";
/// A disk whose claim asks no size.
const DEFAULT_DISK_BYTES: i64 = 1 << 30;

#[derive(Clone)]
pub struct Local {
    node: String,
    root: PathBuf,
    /// Serializes the calls on one volume: a CO retrying while the first
    /// call still runs must not make or mount it twice.
    locks: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Starts the driver on its socket and announces it in the kubelet's
/// `plugins_registry`; runs until the process ends.
pub async fn start(paths: &Paths, node: &str, root: &Path) -> Result<()> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    for entry in std::fs::read_dir(root)?.flatten().chain(std::fs::read_dir(root.join("snapshots")).into_iter().flatten().flatten()) {
        if entry.file_name().to_string_lossy().ends_with(".part") {
            let _ = std::fs::remove_file(entry.path()).or_else(|_| std::fs::remove_dir_all(entry.path()));
        }
    }
    crate::serve::serve(paths, NAME, Local { node: node.to_string(), root: root.to_path_buf(), locks: Default::default() })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Path,
    Disk,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Path => "path",
            Kind::Disk => "disk",
        }
    }
}

/// The volume context's mark of an inline volume (with `podInfoOnMount`).
const EPHEMERAL: &str = "csi.storage.k8s.io/ephemeral";

impl Local {
    fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).entry(id.to_string()).or_default().clone()
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn disk(&self, id: &str) -> PathBuf {
        self.root.join(format!("{id}.img"))
    }

    fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// A snapshot made here, to restore a volume of `kind` from.
    fn snapshot(&self, id: &str, kind: Kind) -> Result<PathBuf, Status> {
        check_id(id)?;
        let path = match kind {
            Kind::Disk => self.snapshots().join(format!("{id}.img")),
            Kind::Path => self.snapshots().join(id),
        };
        if path.exists() {
            Ok(path)
        } else {
            Err(Status::not_found(format!("no snapshot {id} of a {} volume on node {}: a snapshot is restored on the node that holds it", kind.name(), self.node)))
        }
    }

    fn ephemeral_dir(&self, id: &str) -> PathBuf {
        self.root.join("ephemeral").join(id)
    }

    /// An inline volume's directory, made if missing: only `type: path`,
    /// since a disk's size could not follow the pod's changes.
    fn make_ephemeral(&self, id: &str, context: &HashMap<String, String>, capability: &csi::VolumeCapability) -> Result<PathBuf, Status> {
        check_id(id)?;
        if is_block(capability) || context.get("type").is_some_and(|t| t != "path") {
            return Err(Status::invalid_argument(format!("inline {NAME} volumes are directories: type {:?} is not supported", context.get("type").map(String::as_str).unwrap_or("block"))));
        }
        let dir = self.ephemeral_dir(id);
        std::fs::create_dir_all(&dir).map_err(internal)?;
        Ok(dir)
    }

    /// What the volume is, or NotFound.
    fn kind(&self, id: &str) -> Result<Kind, Status> {
        check_id(id)?;
        if self.disk(id).is_file() {
            Ok(Kind::Disk)
        } else if self.dir(id).is_dir() {
            Ok(Kind::Path)
        } else {
            Err(Status::not_found(format!("volume {id} does not exist on node {}", self.node)))
        }
    }

    fn topology(&self) -> csi::Topology {
        csi::Topology { segments: HashMap::from([(TOPOLOGY_KEY.to_string(), self.node.clone())]) }
    }
}

/// A volume id names a file under the root: nothing that could leave it.
fn check_id(id: &str) -> Result<(), Status> {
    let fine = !id.is_empty() && id.len() <= 128 && id != "." && id != ".." && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!("invalid volume id {id:?}")))
    }
}

fn is_block(capability: &csi::VolumeCapability) -> bool {
    matches!(capability.access_type, Some(csi::volume_capability::AccessType::Block(_)))
}

fn fs_type(capability: Option<&csi::VolumeCapability>) -> String {
    match capability.and_then(|c| c.access_type.as_ref()) {
        Some(csi::volume_capability::AccessType::Mount(m)) if !m.fs_type.is_empty() => m.fs_type.clone(),
        _ => "ext4".into(),
    }
}

/// Local volumes serve one node: the multi-node modes are refused.
fn check_modes(capabilities: &[csi::VolumeCapability]) -> Result<(), Status> {
    use csi::volume_capability::access_mode::Mode;
    for capability in capabilities {
        let mode = capability.access_mode.as_ref().map(|m| m.mode()).unwrap_or(Mode::Unknown);
        if !matches!(mode, Mode::SingleNodeWriter | Mode::SingleNodeReaderOnly | Mode::SingleNodeSingleWriter | Mode::SingleNodeMultiWriter) {
            return Err(Status::invalid_argument(format!("{NAME} volumes live on one node: access mode {} is not supported", mode.as_str_name())));
        }
    }
    Ok(())
}

/// Copies a volume's directory or disk file (sparse, and sharing blocks
/// where the filesystem can), whole or not at all.
async fn copy(from: &Path, to: &Path) -> Result<(), Status> {
    let part = to.with_file_name(format!("{}.part", to.file_name().unwrap_or_default().to_string_lossy()));
    let _ = std::fs::remove_dir_all(&part).or_else(|_| std::fs::remove_file(&part));
    run("cp", &["-a", "--sparse=always", "--reflink=auto", &from.to_string_lossy(), &part.to_string_lossy()]).await?;
    std::fs::rename(&part, to).map_err(internal)
}

/// `copy` of a disk whose filesystem is frozen meanwhile when it is
/// mounted, so the copy is what the filesystem holds at one moment.
async fn frozen_copy(from: &Path, to: &Path) -> Result<(), Status> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let devices = loops_of(from).await?;
    // mountinfo: the mount point is field 5, the source the second after " - ".
    let mounted = info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        devices.iter().any(|d| right.split(' ').nth(1) == Some(d.as_str())).then(|| crate::mounts::mount_points(left).next())?
    });
    let Some(at) = mounted else { return copy(from, to).await };
    run("fsfreeze", &["--freeze", &at]).await?;
    let copied = copy(from, to).await;
    run("fsfreeze", &["--unfreeze", &at]).await?;
    copied
}

/// The loop devices backing `file` (`losetup -j`).
async fn loops_of(file: &Path) -> Result<Vec<String>, Status> {
    let listed = run("losetup", &["-j", &file.to_string_lossy()]).await?;
    Ok(listed.lines().filter_map(|l| l.split(':').next()).filter(|d| d.starts_with("/dev/")).map(str::to_string).collect())
}

/// The loop device for `file`, attaching one if there is none yet. With
/// direct I/O to the file where its filesystem allows it: the volume's
/// own page cache is enough, and a second one of the file would take the
/// node's memory twice for the same data (and make fio inside the volume
/// measure the host's cache).
async fn attach(file: &Path) -> Result<String, Status> {
    if let Some(device) = loops_of(file).await?.into_iter().next() {
        return Ok(device);
    }
    let file = file.to_string_lossy();
    match run("losetup", &["--find", "--show", "--direct-io=on", &file]).await {
        Ok(device) => Ok(device.trim().to_string()),
        // Attached without direct I/O, or not at all (a filesystem without O_DIRECT).
        Err(_) => match loops_of(Path::new(file.as_ref())).await?.into_iter().next() {
            Some(device) => Ok(device),
            None => Ok(run("losetup", &["--find", "--show", &file]).await?.trim().to_string()),
        },
    }
}

#[tonic::async_trait]
impl identity_server::Identity for Local {
    async fn get_plugin_info(&self, _: Request<csi::GetPluginInfoRequest>) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        Ok(Response::new(csi::GetPluginInfoResponse { name: NAME.into(), vendor_version: env!("CARGO_PKG_VERSION").into(), manifest: Default::default() }))
    }

    async fn get_plugin_capabilities(&self, _: Request<csi::GetPluginCapabilitiesRequest>) -> Result<Response<csi::GetPluginCapabilitiesResponse>, Status> {
        use csi::plugin_capability::{service, volume_expansion, Service, Type, VolumeExpansion};
        let service = |t: service::Type| csi::PluginCapability { r#type: Some(Type::Service(Service { r#type: t as i32 })) };
        let capabilities = vec![
            service(service::Type::ControllerService),
            service(service::Type::VolumeAccessibilityConstraints),
            csi::PluginCapability { r#type: Some(Type::VolumeExpansion(VolumeExpansion { r#type: volume_expansion::Type::Online as i32 })) },
        ];
        Ok(Response::new(csi::GetPluginCapabilitiesResponse { capabilities }))
    }

    async fn probe(&self, _: Request<csi::ProbeRequest>) -> Result<Response<csi::ProbeResponse>, Status> {
        Ok(Response::new(csi::ProbeResponse { ready: Some(true) }))
    }
}

#[tonic::async_trait]
impl controller_server::Controller for Local {
    async fn create_volume(&self, request: Request<csi::CreateVolumeRequest>) -> Result<Response<csi::CreateVolumeResponse>, Status> {
        let request = request.into_inner();
        check_id(&request.name)?;
        check_modes(&request.volume_capabilities)?;
        // Node-deployment provisioning: only this node's volumes are made here.
        if let Some(wanted) = &request.accessibility_requirements {
            let here = wanted.requisite.iter().chain(&wanted.preferred).any(|t| t.segments.get(TOPOLOGY_KEY) == Some(&self.node));
            if !wanted.requisite.is_empty() && !here {
                return Err(Status::resource_exhausted(format!("this is node {}: the volume is wanted elsewhere", self.node)));
            }
        }
        let kind = match request.parameters.get("type").map(String::as_str) {
            None | Some("path") => Kind::Path,
            Some("disk") => Kind::Disk,
            Some(other) => return Err(Status::invalid_argument(format!("parameter type: {other:?} is neither \"path\" nor \"disk\""))),
        };
        let range = request.capacity_range.unwrap_or_default();
        if range.limit_bytes > 0 && range.required_bytes > range.limit_bytes {
            return Err(Status::out_of_range(format!("{} bytes are required but at most {} allowed", range.required_bytes, range.limit_bytes)));
        }
        let id = request.name;
        let _held = self.lock(&id).lock_owned().await;
        // What the new volume starts from: a snapshot, another volume, or nothing.
        let source = match request.volume_content_source.as_ref().and_then(|s| s.r#type.as_ref()) {
            None => None,
            Some(csi::volume_content_source::Type::Snapshot(s)) => Some(self.snapshot(&s.snapshot_id, kind)?),
            Some(csi::volume_content_source::Type::Volume(v)) => {
                if self.kind(&v.volume_id)? != kind {
                    return Err(Status::invalid_argument(format!("volume {} is not of type {}: it cannot be cloned to one", v.volume_id, kind.name())));
                }
                Some(if kind == Kind::Disk { self.disk(&v.volume_id) } else { self.dir(&v.volume_id) })
            }
        };
        let capacity = match kind {
            Kind::Path if self.dir(&id).is_dir() => range.required_bytes,
            Kind::Path => {
                match &source {
                    Some(from) => copy(from, &self.dir(&id)).await?,
                    None => std::fs::create_dir(self.dir(&id)).map_err(internal)?,
                }
                range.required_bytes
            }
            Kind::Disk => {
                let size = if range.required_bytes > 0 { range.required_bytes } else { DEFAULT_DISK_BYTES };
                let file = self.disk(&id);
                match std::fs::metadata(&file) {
                    Ok(meta) if (meta.len() as i64) < size => return Err(Status::already_exists(format!("volume {id} exists with {} bytes", meta.len()))),
                    Ok(meta) => meta.len() as i64,
                    Err(_) => match &source {
                        Some(from) => {
                            let held = std::fs::metadata(from).map_err(internal)?.len() as i64;
                            if size > held {
                                return Err(Status::out_of_range(format!("{size} bytes asked, but the source holds {held}: {NAME} restores and clones at the source's size")));
                            }
                            frozen_copy(from, &file).await?;
                            held
                        }
                        None => {
                            let block = request.volume_capabilities.iter().any(is_block);
                            let fs = fs_type(request.volume_capabilities.first());
                            self.make_disk(&file, size, (!block).then_some(fs.as_str())).await?;
                            size
                        }
                    },
                }
            }
        };
        Ok(Response::new(csi::CreateVolumeResponse {
            volume: Some(csi::Volume {
                capacity_bytes: capacity,
                volume_id: id,
                volume_context: HashMap::from([("type".to_string(), kind.name().to_string())]),
                content_source: request.volume_content_source,
                accessible_topology: vec![self.topology()],
            }),
        }))
    }

    async fn delete_volume(&self, request: Request<csi::DeleteVolumeRequest>) -> Result<Response<csi::DeleteVolumeResponse>, Status> {
        let id = request.into_inner().volume_id;
        let _held = self.lock(&id).lock_owned().await;
        match self.kind(&id) {
            Err(e) if e.code() == tonic::Code::NotFound => {}
            Err(e) => return Err(e),
            Ok(Kind::Path) => std::fs::remove_dir_all(self.dir(&id)).map_err(internal)?,
            Ok(Kind::Disk) => {
                let file = self.disk(&id);
                for device in loops_of(&file).await? {
                    run("losetup", &["-d", &device]).await?;
                }
                std::fs::remove_file(&file).map_err(internal)?;
            }
        }
        Ok(Response::new(csi::DeleteVolumeResponse {}))
    }

    async fn controller_get_capabilities(&self, _: Request<csi::ControllerGetCapabilitiesRequest>) -> Result<Response<csi::ControllerGetCapabilitiesResponse>, Status> {
        use csi::controller_service_capability::{rpc::Type, Rpc, Type as Cap};
        let rpc = |t: Type| csi::ControllerServiceCapability { r#type: Some(Cap::Rpc(Rpc { r#type: t as i32 })) };
        let capabilities = [Type::CreateDeleteVolume, Type::ExpandVolume, Type::SingleNodeMultiWriter, Type::CreateDeleteSnapshot, Type::CloneVolume, Type::GetCapacity];
        Ok(Response::new(csi::ControllerGetCapabilitiesResponse { capabilities: capabilities.into_iter().map(rpc).collect() }))
    }

    /// What new volumes may still take here: the free space of the
    /// filesystem the volumes are made on (a disk is sparse, so this is
    /// what its writes can still fill).
    async fn get_capacity(&self, request: Request<csi::GetCapacityRequest>) -> Result<Response<csi::GetCapacityResponse>, Status> {
        if let Some(wanted) = &request.get_ref().accessible_topology {
            if wanted.segments.get(TOPOLOGY_KEY).is_some_and(|n| *n != self.node) {
                return Ok(Response::new(csi::GetCapacityResponse::default()));
            }
        }
        let s = nix::sys::statvfs::statvfs(&self.root).map_err(internal)?;
        let available = s.blocks_available() as i64 * s.fragment_size() as i64;
        Ok(Response::new(csi::GetCapacityResponse { available_capacity: available, maximum_volume_size: None, minimum_volume_size: None }))
    }

    /// A copy of the volume (a disk frozen while it is copied, so the copy
    /// is consistent), under `<root>/snapshots`.
    async fn create_snapshot(&self, request: Request<csi::CreateSnapshotRequest>) -> Result<Response<csi::CreateSnapshotResponse>, Status> {
        let request = request.into_inner();
        let (id, source) = (request.name, request.source_volume_id);
        check_id(&id)?;
        let _held = self.lock(&source).lock_owned().await;
        let kind = self.kind(&source)?;
        let (from, to) = match kind {
            Kind::Disk => (self.disk(&source), self.snapshots().join(format!("{id}.img"))),
            Kind::Path => (self.dir(&source), self.snapshots().join(&id)),
        };
        if !to.exists() {
            std::fs::create_dir_all(self.snapshots()).map_err(internal)?;
            match kind {
                Kind::Disk => frozen_copy(&from, &to).await?,
                Kind::Path => copy(&from, &to).await?,
            }
        }
        let meta = std::fs::metadata(&to).map_err(internal)?;
        let made = meta.modified().map_err(internal)?.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let snapshot = csi::Snapshot {
            size_bytes: if kind == Kind::Disk { meta.len() as i64 } else { 0 },
            snapshot_id: id,
            source_volume_id: source,
            creation_time: Some(prost_types::Timestamp { seconds: made.as_secs() as i64, nanos: made.subsec_nanos() as i32 }),
            ready_to_use: true,
            group_snapshot_id: String::new(),
        };
        Ok(Response::new(csi::CreateSnapshotResponse { snapshot: Some(snapshot) }))
    }

    async fn delete_snapshot(&self, request: Request<csi::DeleteSnapshotRequest>) -> Result<Response<csi::DeleteSnapshotResponse>, Status> {
        let id = request.into_inner().snapshot_id;
        check_id(&id)?;
        let (disk, dir) = (self.snapshots().join(format!("{id}.img")), self.snapshots().join(&id));
        let removed = std::fs::remove_file(&disk).or_else(|_| std::fs::remove_dir_all(&dir));
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(internal(e)),
            _ => Ok(Response::new(csi::DeleteSnapshotResponse {})),
        }
    }

    async fn controller_expand_volume(&self, request: Request<csi::ControllerExpandVolumeRequest>) -> Result<Response<csi::ControllerExpandVolumeResponse>, Status> {
        let request = request.into_inner();
        let id = request.volume_id;
        let wanted = request.capacity_range.unwrap_or_default().required_bytes;
        let _held = self.lock(&id).lock_owned().await;
        match self.kind(&id)? {
            // A directory has no size of its own.
            Kind::Path => Ok(Response::new(csi::ControllerExpandVolumeResponse { capacity_bytes: wanted, node_expansion_required: false })),
            Kind::Disk => {
                let file = std::fs::OpenOptions::new().write(true).open(self.disk(&id)).map_err(internal)?;
                let size = file.metadata().map_err(internal)?.len() as i64;
                if wanted > size {
                    file.set_len(wanted as u64).map_err(internal)?;
                }
                let block = request.volume_capability.as_ref().is_some_and(is_block);
                Ok(Response::new(csi::ControllerExpandVolumeResponse { capacity_bytes: wanted.max(size), node_expansion_required: !block }))
            }
        }
    }
}

impl Local {
    /// A sparse file of `size` bytes with a filesystem (`None` for Block),
    /// made whole under another name first.
    async fn make_disk(&self, file: &Path, size: i64, fs: Option<&str>) -> Result<(), Status> {
        let part = file.with_extension("img.part");
        std::fs::File::create(&part).and_then(|f| f.set_len(size as u64)).map_err(internal)?;
        let part_name = part.to_string_lossy().into_owned();
        let made = match fs {
            None => Ok(String::new()),
            Some("ext4") => run("mkfs.ext4", &["-q", "-F", "-m", "0", "-E", "nodiscard", &part_name]).await,
            Some("xfs") => run("mkfs.xfs", &["-q", "-f", "-K", &part_name]).await,
            Some(other) => Err(Status::invalid_argument(format!("fsType {other:?}: {NAME} makes ext4 or xfs"))),
        };
        if let Err(e) = made {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        std::fs::rename(&part, file).map_err(internal)
    }
}

#[tonic::async_trait]
impl node_server::Node for Local {
    async fn node_stage_volume(&self, request: Request<csi::NodeStageVolumeRequest>) -> Result<Response<csi::NodeStageVolumeResponse>, Status> {
        let request = request.into_inner();
        let id = request.volume_id;
        let capability = request.volume_capability.ok_or_else(|| Status::invalid_argument("volume_capability is required"))?;
        let _held = self.lock(&id).lock_owned().await;
        if self.kind(&id)? == Kind::Path {
            return Ok(Response::new(csi::NodeStageVolumeResponse {}));
        }
        let device = attach(&self.disk(&id)).await?;
        let staging = PathBuf::from(&request.staging_target_path);
        if !is_block(&capability) && !is_mounted(&staging) {
            std::fs::create_dir_all(&staging).map_err(internal)?;
            let fs = fs_type(Some(&capability));
            nix::mount::mount(Some(device.as_str()), &staging, Some(fs.as_str()), nix::mount::MsFlags::empty(), None::<&str>).map_err(|e| Status::internal(format!("mounting {device} ({fs}) at {}: {e}", staging.display())))?;
        }
        Ok(Response::new(csi::NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(&self, request: Request<csi::NodeUnstageVolumeRequest>) -> Result<Response<csi::NodeUnstageVolumeResponse>, Status> {
        let request = request.into_inner();
        let id = request.volume_id;
        let _held = self.lock(&id).lock_owned().await;
        let staging = PathBuf::from(&request.staging_target_path);
        unmount(&staging)?;
        let _ = std::fs::remove_dir(&staging);
        if self.disk(&id).is_file() {
            for device in loops_of(&self.disk(&id)).await? {
                run("losetup", &["-d", &device]).await?;
            }
        }
        Ok(Response::new(csi::NodeUnstageVolumeResponse {}))
    }

    async fn node_publish_volume(&self, request: Request<csi::NodePublishVolumeRequest>) -> Result<Response<csi::NodePublishVolumeResponse>, Status> {
        let request = request.into_inner();
        let id = request.volume_id;
        let capability = request.volume_capability.ok_or_else(|| Status::invalid_argument("volume_capability is required"))?;
        let target = PathBuf::from(&request.target_path);
        let _held = self.lock(&id).lock_owned().await;
        let ephemeral = request.volume_context.get(EPHEMERAL).is_some_and(|v| v == "true");
        let source = match if ephemeral { None } else { Some(self.kind(&id)?) } {
            None => self.make_ephemeral(&id, &request.volume_context, &capability)?,
            Some(Kind::Path) if is_block(&capability) => return Err(Status::invalid_argument(format!("volume {id} is a directory: it has no block device"))),
            Some(Kind::Path) => self.dir(&id),
            Some(Kind::Disk) if is_block(&capability) => PathBuf::from(attach(&self.disk(&id)).await?),
            Some(Kind::Disk) => PathBuf::from(&request.staging_target_path),
        };
        if is_mounted(&target) {
            return Ok(Response::new(csi::NodePublishVolumeResponse {}));
        }
        if is_block(&capability) {
            std::fs::create_dir_all(target.parent().unwrap_or(Path::new("/"))).map_err(internal)?;
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&target).map_err(internal)?;
        } else {
            if !ephemeral && !is_mounted(&source) && self.kind(&id)? == Kind::Disk {
                return Err(Status::failed_precondition(format!("volume {id} is not staged at {}", source.display())));
            }
            std::fs::create_dir_all(&target).map_err(internal)?;
        }
        bind(&source, &target, request.readonly)?;
        Ok(Response::new(csi::NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(&self, request: Request<csi::NodeUnpublishVolumeRequest>) -> Result<Response<csi::NodeUnpublishVolumeResponse>, Status> {
        let request = request.into_inner();
        let target = PathBuf::from(&request.target_path);
        let _held = self.lock(&request.volume_id).lock_owned().await;
        unmount(&target)?;
        // Only what publishing made: an empty directory or the device's file.
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => std::fs::remove_dir(&target).map_err(internal)?,
            Ok(_) => std::fs::remove_file(&target).map_err(internal)?,
            Err(_) => {}
        }
        // An inline volume goes with its only pod.
        check_id(&request.volume_id)?;
        match std::fs::remove_dir_all(self.ephemeral_dir(&request.volume_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(internal(e)),
            _ => {}
        }
        Ok(Response::new(csi::NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(&self, request: Request<csi::NodeGetVolumeStatsRequest>) -> Result<Response<csi::NodeGetVolumeStatsResponse>, Status> {
        let request = request.into_inner();
        self.kind(&request.volume_id)?;
        Ok(Response::new(csi::NodeGetVolumeStatsResponse { usage: usage(Path::new(&request.volume_path))?, volume_condition: None }))
    }

    async fn node_expand_volume(&self, request: Request<csi::NodeExpandVolumeRequest>) -> Result<Response<csi::NodeExpandVolumeResponse>, Status> {
        let request = request.into_inner();
        let id = request.volume_id;
        let _held = self.lock(&id).lock_owned().await;
        if self.kind(&id)? == Kind::Path {
            return Ok(Response::new(csi::NodeExpandVolumeResponse { capacity_bytes: 0 }));
        }
        let file = self.disk(&id);
        let device = attach(&file).await?;
        // The loop device learns the file's new size, then the filesystem grows into it.
        run("losetup", &["-c", &device]).await?;
        let capability = request.volume_capability.as_ref();
        if !capability.is_some_and(is_block) {
            match fs_type(capability).as_str() {
                "xfs" => run("xfs_growfs", &[&request.volume_path]).await?,
                _ => run("resize2fs", &[&device]).await?,
            };
        }
        let size = std::fs::metadata(&file).map_err(internal)?.len() as i64;
        Ok(Response::new(csi::NodeExpandVolumeResponse { capacity_bytes: size }))
    }

    async fn node_get_capabilities(&self, _: Request<csi::NodeGetCapabilitiesRequest>) -> Result<Response<csi::NodeGetCapabilitiesResponse>, Status> {
        use csi::node_service_capability::{rpc::Type, Rpc, Type as Cap};
        let rpc = |t: Type| csi::NodeServiceCapability { r#type: Some(Cap::Rpc(Rpc { r#type: t as i32 })) };
        Ok(Response::new(csi::NodeGetCapabilitiesResponse {
            capabilities: vec![rpc(Type::StageUnstageVolume), rpc(Type::GetVolumeStats), rpc(Type::ExpandVolume), rpc(Type::SingleNodeMultiWriter)],
        }))
    }

    async fn node_get_info(&self, _: Request<csi::NodeGetInfoRequest>) -> Result<Response<csi::NodeGetInfoResponse>, Status> {
        Ok(Response::new(csi::NodeGetInfoResponse { node_id: self.node.clone(), max_volumes_per_node: 0, accessible_topology: Some(self.topology()) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_under_the_root() {
        assert!(check_id("pvc-0b1c2d3e-aaaa-bbbb-cccc-0123456789ab").is_ok());
        for bad in ["", ".", "..", "../etc", "a/b", "a b"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }
}

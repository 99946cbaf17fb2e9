//! A pod's volumes on the host, under `<pods>/<uid>/volumes/<plugin>/<name>`
//! as upstream lays them out: emptyDir (disk, or tmpfs for `Memory`),
//! hostPath, GlusterFS and NFS shares, claims' volumes (CSI ones through
//! their drivers), and the projected kinds (configMap, secret, downwardAPI,
//! serviceAccountToken) written atomically: a new timestamped directory,
//! then the `..data` symlink swapped to it, so a reader never sees half
//! an update.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount, Volume};
use k8s_openapi::api::storage::v1::CSIDriver;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::downward;

pub struct Volumes {
    /// `<data>/pods`: one directory per pod.
    root: PathBuf,
    /// CSI volumes: the drivers registered here, and their mounts.
    pub csi: skiff_csi::mounter::Mounter,
    /// This node's name, which its volumes' attachments carry.
    node: String,
    /// The claims' CSI volumes published here, by pod UID then volume
    /// name, for their usage figures.
    claims: std::sync::Mutex<std::collections::HashMap<String, BTreeMap<String, ClaimVolume>>>,
}

/// A claim's CSI volume mounted for a pod here.
#[derive(Clone)]
pub struct ClaimVolume {
    pub namespace: String,
    pub claim: String,
    driver: String,
    handle: String,
    path: PathBuf,
}

/// A claim's usage, as `NodeGetVolumeStats` reports it.
#[derive(Default)]
pub struct ClaimUsage {
    pub bytes: Option<skiff_csi::pb::csi::VolumeUsage>,
    pub inodes: Option<skiff_csi::pb::csi::VolumeUsage>,
}

/// Files of one projected volume: relative path → (contents, mode).
type Files = BTreeMap<String, (Vec<u8>, u32)>;

impl Volumes {
    /// `data` holds the pods' directories (`pods`) and the plugins' (`plugins`, `plugins_registry`).
    pub fn new(data: &Path, node: &str) -> Result<Volumes> {
        let root = data.join("pods");
        std::fs::create_dir_all(&root)?;
        let csi = skiff_csi::mounter::Mounter { paths: skiff_csi::Paths { root: data.to_path_buf() }, registry: Default::default(), pods: root.clone() };
        Ok(Volumes { root, csi, node: node.to_string(), claims: Default::default() })
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join(uid)
    }

    /// Pods that have a directory here.
    pub fn list(&self) -> Vec<String> {
        std::fs::read_dir(&self.root).map(|d| d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned())).collect()).unwrap_or_default()
    }

    /// Sets up (or refreshes) every volume of the pod; returns each
    /// volume's host path by name. Errors name the volume, as upstream's
    /// `FailedMount` events do.
    pub async fn setup(&self, client: &kube::Client, pod: &Pod, allocatable: &BTreeMap<String, String>) -> Result<BTreeMap<String, PathBuf>> {
        let uid = pod.metadata.uid.as_deref().context("pod without uid")?;
        let mut paths = BTreeMap::new();
        for volume in pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
            // Its name becomes a path under the pod's directory.
            crate::spec::check_name("volume", &volume.name).with_context(|| format!("MountVolume.SetUp failed for volume \"{}\"", volume.name))?;
            let path = self.setup_one(client, pod, uid, volume, allocatable).await.with_context(|| format!("MountVolume.SetUp failed for volume \"{}\"", volume.name))?;
            paths.insert(volume.name.clone(), path);
        }
        Ok(paths)
    }

    async fn setup_one(&self, client: &kube::Client, pod: &Pod, uid: &str, volume: &Volume, allocatable: &BTreeMap<String, String>) -> Result<PathBuf> {
        let dir = |plugin: &str| self.pod_dir(uid).join("volumes").join(plugin).join(&volume.name);
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        if let Some(empty) = &volume.empty_dir {
            let path = dir("kubernetes.io~empty-dir");
            if !path.exists() {
                std::fs::create_dir_all(&path)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))?;
                if empty.medium.as_deref() == Some("Memory") {
                    let size = empty.size_limit.as_ref().and_then(|q| skiff_quantity::value(&q.0));
                    let options = size.map(|s| format!("size={s}")).unwrap_or_default();
                    nix::mount::mount(Some("tmpfs"), &path, Some("tmpfs"), nix::mount::MsFlags::empty(), Some(options.as_str()))?;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))?;
                }
                if let Some(group) = fs_group(pod) {
                    set_ownership(&path, group, false)?;
                }
            }
            return Ok(path);
        }
        if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            check_host_path(&path, host.type_.as_deref().unwrap_or(""))?;
            return Ok(path);
        }
        if let Some(gluster) = &volume.glusterfs {
            let share = glusterfs_share(client, ns, &gluster.endpoints, &gluster.path).await?;
            return mount_share(&share, &dir(GLUSTERFS_DIR), gluster.read_only == Some(true)).await;
        }
        if let Some(nfs) = &volume.nfs {
            return mount_share(&nfs_share(&nfs.server, &nfs.path), &dir(NFS_DIR), nfs.read_only == Some(true)).await;
        }
        let files = if let Some(source) = &volume.config_map {
            let mode = source.default_mode.unwrap_or(0o644) as u32;
            match fetch::<ConfigMap>(client, ns, &source.name, source.optional).await? {
                Some(cm) => project(config_map_data(&cm), source.items.as_deref(), mode, &source.name, source.optional)?,
                None => Files::new(),
            }
        } else if let Some(source) = &volume.secret {
            let name = source.secret_name.clone().unwrap_or_default();
            let mode = source.default_mode.unwrap_or(0o644) as u32;
            match fetch::<Secret>(client, ns, &name, source.optional).await? {
                Some(s) => project(secret_data(&s), source.items.as_deref(), mode, &name, source.optional)?,
                None => Files::new(),
            }
        } else if let Some(source) = &volume.downward_api {
            downward_files(pod, source.items.as_deref().unwrap_or_default(), source.default_mode.unwrap_or(0o644) as u32, allocatable)?
        } else if let Some(projected) = &volume.projected {
            let mode = projected.default_mode.unwrap_or(0o644) as u32;
            let mut files = Files::new();
            for source in projected.sources.iter().flatten() {
                if let Some(s) = &source.config_map {
                    if let Some(cm) = fetch::<ConfigMap>(client, ns, &s.name, s.optional).await? {
                        files.extend(project(config_map_data(&cm), s.items.as_deref(), mode, &s.name, s.optional)?);
                    }
                }
                if let Some(s) = &source.secret {
                    if let Some(secret) = fetch::<Secret>(client, ns, &s.name, s.optional).await? {
                        files.extend(project(secret_data(&secret), s.items.as_deref(), mode, &s.name, s.optional)?);
                    }
                }
                if let Some(s) = &source.downward_api {
                    files.extend(downward_files(pod, s.items.as_deref().unwrap_or_default(), mode, allocatable)?);
                }
                if let Some(s) = &source.service_account_token {
                    let token = request_token(client, pod, s.audience.as_deref(), s.expiration_seconds.unwrap_or(3607)).await?;
                    files.insert(s.path.clone(), (token.into_bytes(), mode));
                }
            }
            files
        } else if let Some(claim) = &volume.persistent_volume_claim {
            return self.claimed_path(client, pod, volume, &claim.claim_name, None, claim.read_only == Some(true)).await;
        } else if let Some(source) = &volume.csi {
            return self.inline_csi(client, pod, volume, source).await;
        } else if volume.ephemeral.is_some() {
            // A generic ephemeral volume: the claim made for this pod, `<pod>-<volume>`.
            let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
            let owner = (pod_name, pod.metadata.uid.as_deref().unwrap_or_default());
            return self.claimed_path(client, pod, volume, &format!("{pod_name}-{}", volume.name), Some(owner), false).await;
        } else {
            bail!("unsupported volume type");
        };
        let plugin = match () {
            _ if volume.config_map.is_some() => "kubernetes.io~configmap",
            _ if volume.secret.is_some() => "kubernetes.io~secret",
            _ if volume.downward_api.is_some() => "kubernetes.io~downward-api",
            _ => "kubernetes.io~projected",
        };
        let path = dir(plugin);
        write_atomically(&path, &files)?;
        if let Some(group) = fs_group(pod) {
            set_ownership(&path, group, true)?;
        }
        Ok(path)
    }

    /// Unmounts what the pod's volumes mounted and removes its directory.
    /// Nothing is removed below a mount that is still there: that would
    /// delete a volume's data.
    pub async fn teardown(&self, uid: &str) -> Result<()> {
        crate::lock(&self.claims).remove(uid);
        let dir = self.pod_dir(uid);
        self.csi.unpublish_all(&dir).await?;
        let mounted = ["kubernetes.io~empty-dir", GLUSTERFS_DIR, NFS_DIR].map(|plugin| dir.join("volumes").join(plugin));
        for entry in mounted.iter().flat_map(std::fs::read_dir).flatten().flatten() {
            match nix::mount::umount2(&entry.path(), nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
                Err(e) => bail!("unmounting {}: {e}", entry.path().display()),
            }
        }
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if let Some(mount) = skiff_csi::mounts::mount_points(&info).find(|m| Path::new(m).starts_with(&dir)) {
            bail!("{mount} is still mounted: the pod's directory is kept");
        }
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(|| format!("removing {}", dir.display())),
            _ => Ok(()),
        }
    }

    /// Usage of the claims' filesystems mounted here, each with the pod
    /// UID and the volume's name in the pod; a volume whose driver cannot
    /// say is left out.
    pub async fn claim_usage(&self) -> Vec<(String, String, ClaimVolume, ClaimUsage)> {
        let mounted: Vec<(String, String, ClaimVolume)> =
            crate::lock(&self.claims).iter().flat_map(|(uid, volumes)| volumes.iter().map(move |(name, v)| (uid.clone(), name.clone(), v.clone()))).collect();
        let mut out = Vec::new();
        for (uid, name, volume) in mounted {
            let Ok(figures) = self.csi.stats(&volume.driver, &volume.handle, &volume.path).await else { continue };
            let mut usage = ClaimUsage::default();
            for figure in figures {
                match skiff_csi::pb::csi::volume_usage::Unit::try_from(figure.unit) {
                    Ok(skiff_csi::pb::csi::volume_usage::Unit::Bytes) => usage.bytes = Some(figure),
                    Ok(skiff_csi::pb::csi::volume_usage::Unit::Inodes) => usage.inodes = Some(figure),
                    _ => {}
                }
            }
            out.push((uid, name, volume, usage));
        }
        out
    }

    /// An inline CSI volume (`volumes[].csi`), CSI's ephemeral lifecycle:
    /// the driver makes it when it publishes it and removes it with the
    /// pod. Only for a driver whose CSIDriver lists the `Ephemeral` mode.
    async fn inline_csi(&self, client: &kube::Client, pod: &Pod, volume: &Volume, source: &k8s_openapi::api::core::v1::CSIVolumeSource) -> Result<PathBuf> {
        let driver = Api::<CSIDriver>::all(client.clone()).get_opt(&source.driver).await?;
        let modes = driver.as_ref().and_then(|d| d.spec.volume_lifecycle_modes.clone()).unwrap_or_else(|| vec!["Persistent".into()]);
        anyhow::ensure!(modes.iter().any(|m| m == "Ephemeral"), "volume mode \"Ephemeral\" not supported by driver {} (only supports {modes:?})", source.driver);
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let as_volume = k8s_openapi::api::core::v1::CSIPersistentVolumeSource {
            driver: source.driver.clone(),
            volume_handle: skiff_csi::inline_volume_handle(uid, &volume.name),
            fs_type: source.fs_type.clone(),
            read_only: source.read_only,
            volume_attributes: source.volume_attributes.clone(),
            ..Default::default()
        };
        let read_only = source.read_only == Some(true);
        let usage = skiff_csi::mounter::Usage {
            access_mode: "ReadWriteOnce",
            read_only,
            block: false,
            ephemeral: true,
            mount_options: vec![],
            pod_info: pod_info(pod, driver.as_ref(), true),
            publish_context: Default::default(),
        };
        let path = self.csi.publish(&self.pod_dir(uid), &volume.name, &as_volume, usage).await?;
        if !read_only {
            give_to_pod(pod, driver.as_ref(), source.fs_type.as_deref(), &["ReadWriteOnce".into()], &path)?;
        }
        Ok(path)
    }

    /// Where a bound claim's volume is, for the pod: a hostPath or local
    /// volume's own path, or a CSI volume published into the pod's
    /// directory. `owner`, for an ephemeral volume's claim, is the pod
    /// (name, uid) that must own it (upstream's `VolumeIsForPod`).
    async fn claimed_path(&self, client: &kube::Client, pod: &Pod, volume: &Volume, claim: &str, owner: Option<(&str, &str)>, read_only: bool) -> Result<PathBuf> {
        use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let pvc = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns).get(claim).await.with_context(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
        if let Some((pod, uid)) = owner {
            let owned = pvc.metadata.owner_references.iter().flatten().any(|r| r.uid == uid && r.controller == Some(true));
            anyhow::ensure!(owned, "PVC {ns}/{claim} was not created for pod {ns}/{pod} (pod is not owner)");
        }
        let Some(name) = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty()) else {
            bail!("persistentvolumeclaim \"{claim}\" is not bound");
        };
        let pv = Api::<PersistentVolume>::all(client.clone()).get(&name).await?;
        let spec = pv.spec.unwrap_or_default();
        if let Some(csi) = &spec.csi {
            let driver = Api::<CSIDriver>::all(client.clone()).get_opt(&csi.driver).await?;
            // Upstream's default, with no CSIDriver to say otherwise: attach.
            let publish_context = match driver.as_ref().is_none_or(|d| d.spec.attach_required != Some(false)) {
                true => attached(client, &csi.volume_handle, &csi.driver, &self.node).await?,
                false => Default::default(),
            };
            let modes = spec.access_modes.clone().unwrap_or_default();
            let block = spec.volume_mode.as_deref() == Some("Block");
            let usage = skiff_csi::mounter::Usage {
                access_mode: modes.first().map(String::as_str).unwrap_or("ReadWriteOnce"),
                read_only,
                block,
                ephemeral: false,
                mount_options: spec.mount_options.clone().unwrap_or_default(),
                pod_info: pod_info(pod, driver.as_ref(), false),
                publish_context,
            };
            let path = self.csi.publish(&self.pod_dir(pod.metadata.uid.as_deref().unwrap_or_default()), &volume.name, csi, usage).await?;
            if !block {
                if !read_only {
                    give_to_pod(pod, driver.as_ref(), csi.fs_type.as_deref(), &modes, &path)?;
                }
                let mounted = ClaimVolume { namespace: ns.to_string(), claim: claim.to_string(), driver: csi.driver.clone(), handle: csi.volume_handle.clone(), path: path.clone() };
                crate::lock(&self.claims).entry(pod.metadata.uid.clone().unwrap_or_default()).or_default().insert(volume.name.clone(), mounted);
            }
            return Ok(path);
        }
        let pod_volume = |plugin: &str| self.pod_dir(pod.metadata.uid.as_deref().unwrap_or_default()).join("volumes").join(plugin).join(&volume.name);
        if let Some(gluster) = &spec.glusterfs {
            let endpoints_ns = gluster.endpoints_namespace.as_deref().unwrap_or(ns);
            let share = glusterfs_share(client, endpoints_ns, &gluster.endpoints, &gluster.path).await?;
            return mount_share(&share, &pod_volume(GLUSTERFS_DIR), read_only || gluster.read_only == Some(true)).await;
        }
        if let Some(nfs) = &spec.nfs {
            return mount_share(&nfs_share(&nfs.server, &nfs.path), &pod_volume(NFS_DIR), read_only || nfs.read_only == Some(true)).await;
        }
        let path = match (spec.host_path, spec.local) {
            (Some(host), _) => {
                check_host_path(Path::new(&host.path), host.type_.as_deref().unwrap_or(""))?;
                host.path
            }
            (None, Some(local)) => local.path,
            _ => bail!("persistentvolume \"{name}\" is of a kind this agent does not mount yet"),
        };
        anyhow::ensure!(Path::new(&path).exists(), "persistentvolume \"{name}\": {path} does not exist");
        Ok(PathBuf::from(path))
    }
}

/// Where the in-tree network volumes are mounted in a pod's directory.
const GLUSTERFS_DIR: &str = "kubernetes.io~glusterfs";
const NFS_DIR: &str = "kubernetes.io~nfs";

/// A GlusterFS volume's share: its servers are the addresses of the
/// Endpoints object the source names, as upstream's plugin reads them.
async fn glusterfs_share(client: &kube::Client, ns: &str, endpoints: &str, path: &str) -> Result<skiff_csi::share::Share> {
    let found = Api::<k8s_openapi::api::core::v1::Endpoints>::namespaced(client.clone(), ns).get_opt(endpoints).await?;
    let found = found.with_context(|| format!("endpoints \"{endpoints}\" not found in namespace {ns}"))?;
    let servers: Vec<String> = found.subsets.iter().flatten().flat_map(|s| s.addresses.iter().flatten()).map(|a| a.ip.clone()).collect();
    anyhow::ensure!(!servers.is_empty(), "endpoints {ns}/{endpoints} list no address of a GlusterFS server");
    Ok(skiff_csi::share::Share { protocol: skiff_csi::share::Protocol::Glusterfs, servers, path: path.to_string() })
}

fn nfs_share(server: &str, path: &str) -> skiff_csi::share::Share {
    skiff_csi::share::Share { protocol: skiff_csi::share::Protocol::Nfs, servers: vec![server.to_string()], path: path.to_string() }
}

async fn mount_share(share: &skiff_csi::share::Share, target: &Path, read_only: bool) -> Result<PathBuf> {
    skiff_csi::share::mount(share, target, read_only, &[]).await.map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    Ok(target.to_path_buf())
}

/// Lets the pod write to a freshly published CSI volume. Its fsGroup
/// becomes the volume's group when the driver's CSIDriver asks for it
/// (`fsGroupPolicy: File`, or the default `ReadWriteOnceWithFSType` with
/// an fsType and ReadWriteOnce). A pod that runs as a user of its own and
/// has no fsGroup gets an empty, root-owned volume handed to that user:
/// upstream would leave it unwritable, the local-path complaint the
/// built-in classes answer.
fn give_to_pod(pod: &Pod, driver: Option<&CSIDriver>, fs_type: Option<&str>, modes: &[String], path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if let Some(group) = fs_group(pod) {
        let policy = driver.and_then(|d| d.spec.fs_group_policy.clone()).unwrap_or_else(|| "ReadWriteOnceWithFSType".into());
        let applies = match policy.as_str() {
            "File" => true,
            "ReadWriteOnceWithFSType" => fs_type.is_some_and(|f| !f.is_empty()) && modes.iter().any(|m| m == "ReadWriteOnce"),
            _ => false,
        };
        if applies && std::fs::metadata(path)?.gid() != group {
            set_ownership(path, group, false)?;
        }
        return Ok(());
    }
    let security = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let user = security.and_then(|s| s.run_as_user).filter(|u| *u != 0);
    let meta = std::fs::metadata(path)?;
    let empty = std::fs::read_dir(path)?.all(|e| e.is_ok_and(|e| e.file_name() == "lost+found"));
    if let (Some(user), true, true) = (user, meta.uid() == 0, empty) {
        let group = security.and_then(|s| s.run_as_group).map(|g| nix::unistd::Gid::from_raw(g as u32));
        nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(user as u32)), group).with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// How long a mount waits for its volume's attachment before the pod's
/// next sync tries again.
const ATTACH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The attachment's metadata once the volume is attached to this node
/// (upstream's WaitForAttach); an error until then.
async fn attached(client: &kube::Client, handle: &str, driver: &str, node: &str) -> Result<std::collections::HashMap<String, String>> {
    let name = skiff_csi::attachment_name(handle, driver, node);
    let api = Api::<k8s_openapi::api::storage::v1::VolumeAttachment>::all(client.clone());
    let deadline = tokio::time::Instant::now() + ATTACH_WAIT;
    loop {
        let status = api.get_opt(&name).await?.and_then(|a| a.status);
        match status {
            Some(s) if s.attached => return Ok(s.attachment_metadata.unwrap_or_default().into_iter().collect()),
            Some(s) if tokio::time::Instant::now() >= deadline => {
                let why = s.attach_error.and_then(|e| e.message).unwrap_or_else(|| "not attached yet".into());
                bail!("volume attachment {name} is not attached: {why}");
            }
            None if tokio::time::Instant::now() >= deadline => bail!("volume attachment {name} is not attached: it has not been made yet"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
}

/// What a driver whose CSIDriver has `podInfoOnMount` is told of the pod
/// at NodePublishVolume, under upstream's keys.
fn pod_info(pod: &Pod, driver: Option<&CSIDriver>, ephemeral: bool) -> std::collections::HashMap<String, String> {
    if !driver.is_some_and(|d| d.spec.pod_info_on_mount == Some(true)) {
        return Default::default();
    }
    let meta = &pod.metadata;
    let account = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
    [
        ("csi.storage.k8s.io/pod.name", meta.name.clone().unwrap_or_default()),
        ("csi.storage.k8s.io/pod.namespace", meta.namespace.clone().unwrap_or_default()),
        ("csi.storage.k8s.io/pod.uid", meta.uid.clone().unwrap_or_default()),
        ("csi.storage.k8s.io/serviceAccount.name", account),
        ("csi.storage.k8s.io/ephemeral", ephemeral.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The pod's `securityContext.fsGroup`.
fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec.as_ref()?.security_context.as_ref()?.fs_group.map(|g| g as u32)
}

/// Upstream's volume ownership for an fsGroup: the group owns every file
/// and may read it (and write it, unless the volume is read-only);
/// directories are setgid, so files made later take the group too.
fn set_ownership(root: &Path, group: u32, read_only: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(root)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    nix::unistd::chown(root, None, Some(nix::unistd::Gid::from_raw(group))).with_context(|| format!("chown {}", root.display()))?;
    let mut mode = meta.mode() & 0o7777 | if read_only { 0o440 } else { 0o660 };
    if meta.is_dir() {
        mode |= 0o2110;
        for entry in std::fs::read_dir(root)? {
            set_ownership(&entry?.path(), group, read_only)?;
        }
    }
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Upstream's hostPath type checks (`DirectoryOrCreate` and
/// `FileOrCreate` create what is missing).
fn check_host_path(path: &Path, kind: &str) -> Result<()> {
    let meta = std::fs::metadata(path);
    let is = |test: fn(&std::fs::FileType) -> bool| meta.as_ref().is_ok_and(|m| test(&m.file_type()));
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_err() => {
            std::fs::create_dir_all(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
            Ok(())
        }
        "FileOrCreate" if meta.is_err() => {
            std::fs::OpenOptions::new().create(true).append(true).open(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
            Ok(())
        }
        "Directory" | "DirectoryOrCreate" if is(|t| t.is_dir()) => Ok(()),
        "File" | "FileOrCreate" if is(|t| t.is_file()) => Ok(()),
        "Socket" if is(|t| t.is_socket()) => Ok(()),
        "CharDevice" if is(|t| t.is_char_device()) => Ok(()),
        "BlockDevice" if is(|t| t.is_block_device()) => Ok(()),
        "Directory" | "File" | "Socket" | "CharDevice" | "BlockDevice" | "DirectoryOrCreate" | "FileOrCreate" => {
            let what = match kind {
                "Directory" | "DirectoryOrCreate" => "directory",
                "File" | "FileOrCreate" => "file",
                "Socket" => "socket",
                "CharDevice" => "character device",
                _ => "block device",
            };
            bail!("hostPath type check failed: {} is not a {what}", path.display())
        }
        other => bail!("invalid hostPath type {other:?}"),
    }
}

/// A ConfigMap or Secret; an absent one is None when `optional`, else an
/// error worded as upstream's (`configmap "x" not found`).
pub(crate) async fn fetch<K>(client: &kube::Client, ns: &str, name: &str, optional: Option<bool>) -> Result<Option<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await? {
        Some(object) => Ok(Some(object)),
        None if optional == Some(true) => Ok(None),
        None => bail!("{} \"{name}\" not found", K::kind(&()).to_lowercase()),
    }
}

pub fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
    data.extend(cm.binary_data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
    data
}

pub fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
    data.extend(secret.string_data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
    data
}

/// A source's keys as files: every key, or just `items` at their paths.
fn project(data: BTreeMap<String, Vec<u8>>, items: Option<&[KeyToPath]>, mode: u32, name: &str, optional: Option<bool>) -> Result<Files> {
    let Some(items) = items else {
        return Ok(data.into_iter().map(|(k, v)| (k, (v, mode))).collect());
    };
    let mut files = Files::new();
    for item in items {
        match data.get(&item.key) {
            Some(v) => {
                files.insert(item.path.clone(), (v.clone(), item.mode.map(|m| m as u32).unwrap_or(mode)));
            }
            None if optional == Some(true) => {}
            None => bail!("configmap or secret \"{name}\" has no key \"{}\"", item.key),
        }
    }
    Ok(files)
}

fn downward_files(pod: &Pod, items: &[DownwardAPIVolumeFile], mode: u32, allocatable: &BTreeMap<String, String>) -> Result<Files> {
    let mut files = Files::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            downward::field(pod, &field.field_path)?
        } else if let Some(resource) = &item.resource_field_ref {
            downward::resource(pod, None, resource, allocatable)?
        } else {
            bail!("downwardAPI item {} has no source", item.path);
        };
        files.insert(item.path.clone(), (value.into_bytes(), item.mode.map(|m| m as u32).unwrap_or(mode)));
    }
    Ok(files)
}

/// A token for the pod's service account, bound to the pod (TokenRequest).
async fn request_token(client: &kube::Client, pod: &Pod, audience: Option<&str>, expiration: i64) -> Result<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let account = pod.spec.as_ref().and_then(|s| s.service_account_name.as_deref()).unwrap_or("default");
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": audience.map(|a| vec![a]).unwrap_or_default(),
            "expirationSeconds": expiration,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod.metadata.name, "uid": pod.metadata.uid},
        },
    });
    let response: serde_json::Value = api.create_subresource("token", account, &PostParams::default(), serde_json::to_vec(&request)?).await?;
    response.pointer("/status/token").and_then(|t| t.as_str()).map(str::to_string).context("TokenRequest returned no token")
}

/// Writes `files` under `dir` as upstream's AtomicWriter does: into a new
/// `..<timestamp>` directory, then `..data` is swapped to it by a rename,
/// and each top-level name is a symlink through `..data`.
fn write_atomically(dir: &Path, files: &Files) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    if let Ok(current) = std::fs::read_link(&data_link) {
        if same_contents(&dir.join(&current), files) {
            return Ok(());
        }
    }
    let stamp = format!("..{}.{}", chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S"), uuid::Uuid::new_v4().simple());
    let fresh = dir.join(&stamp);
    for (path, (contents, mode)) in files {
        if Path::new(path).components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            bail!("invalid path {path:?}: must be relative and may not contain '..'");
        }
        let target = fresh.join(path);
        std::fs::create_dir_all(target.parent().unwrap())?;
        std::fs::write(&target, contents)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode & 0o777))?;
    }
    std::fs::create_dir_all(&fresh)?;
    let old = std::fs::read_link(&data_link).ok();
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)?;
    std::fs::rename(&tmp_link, &data_link)?;
    let top: std::collections::BTreeSet<String> = files.keys().filter_map(|p| p.split('/').next().map(str::to_string)).collect();
    for name in &top {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link)?;
        }
    }
    // Names the new data no longer has go, then the old directory.
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

fn same_contents(dir: &Path, files: &Files) -> bool {
    files.iter().all(|(path, (contents, mode))| {
        let p = dir.join(path);
        std::fs::read(&p).is_ok_and(|c| c == *contents) && std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o777 == mode & 0o777)
    }) && count_files(dir) == files.len()
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| if e.path().is_dir() { count_files(&e.path()) } else { 1 }).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_swap_the_data_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v");
        let mut files = Files::from([("a".to_string(), (b"1".to_vec(), 0o644)), ("sub/b".to_string(), (b"2".to_vec(), 0o600))]);
        write_atomically(&path, &files).unwrap();
        assert_eq!(std::fs::read(path.join("a")).unwrap(), b"1");
        assert_eq!(std::fs::read(path.join("sub/b")).unwrap(), b"2");
        let first = std::fs::read_link(path.join("..data")).unwrap();
        write_atomically(&path, &files).unwrap();
        assert_eq!(std::fs::read_link(path.join("..data")).unwrap(), first, "unchanged data is not rewritten");
        files.remove("a");
        files.insert("sub/b".into(), (b"3".to_vec(), 0o600));
        write_atomically(&path, &files).unwrap();
        assert_eq!(std::fs::read(path.join("sub/b")).unwrap(), b"3");
        assert!(std::fs::symlink_metadata(path.join("a")).is_err(), "a removed key's file goes");
        assert!(!dir.path().join("v").join(&first).exists(), "the old data goes");
        assert!(write_atomically(&path, &Files::from([("../x".to_string(), (vec![], 0o644))])).is_err());
    }
}

//! Containers through an OCI runtime. `ContainerRuntime` is the seam a CRI
//! backend (containerd, CRI-O) can be put behind; `Runc` drives `runc`
//! through bundles: an overlay of the image's layers as the root, the
//! spec the kubelet built as `config.json`, and a shim per container.
//!
//! Each container's directory (`<root>/<id>/`) is its bundle and its
//! record: `meta.json` (which pod and container it is), `started.json` and
//! `exit.json` (from the shim). The directory is the truth, so an agent
//! that restarts finds its containers again.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::exec_shim;
use crate::shim::{self, Exited, Started};

/// Which pod container a runtime container is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub container: String,
    /// 0 for the first run, then one more per restart (the restart count).
    pub attempt: u32,
    pub image: String,
    pub image_id: String,
    pub log_path: PathBuf,
}

/// A container to create and start.
pub struct ContainerConfig {
    pub meta: Meta,
    /// The OCI runtime spec; its root is set to the bundle's `rootfs`.
    pub spec: oci_spec::runtime::Spec,
    /// Image layer directories, highest first.
    pub layers: Vec<PathBuf>,
    /// The pod's cgroup (`/kubepods/pod<uid>`); the container's is below it.
    pub cgroup_parent: String,
    /// Whether the container has a stdin to attach to, and a terminal.
    pub stdin: bool,
    pub tty: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Made, not (yet, or ever) started: the error says why, and when, if known.
    Created { error: Option<String>, failed_at: Option<String> },
    Running { started_at: String },
    Exited { started_at: String, finished_at: String, exit_code: i32, oom_killed: bool },
}

#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub meta: Meta,
    pub state: State,
}

#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Creates and starts a container; its ID is returned even when it
    /// fails to start, so the failure can be reported and cleaned up.
    async fn start(&self, config: ContainerConfig) -> (String, Result<()>);
    /// Sends SIGTERM, then SIGKILL once `grace` has passed; returns when it has exited.
    async fn stop(&self, id: &str, grace: Duration) -> Result<()>;
    /// Removes a stopped container and everything it held.
    async fn remove(&self, id: &str) -> Result<()>;
    /// The containers this runtime knows, in any state: all of them, or a pod's.
    async fn list(&self, pod_uid: Option<&str>) -> Result<Vec<Container>>;
    /// Runs a command in a running container, its stdout and stderr piped
    /// (and its stdin, if asked).
    async fn exec(&self, id: &str, command: &[String], stdin: bool) -> Result<tokio::process::Child>;
    /// Runs a command in a running container on a terminal of the given
    /// size (columns, rows): the process's stdin and stdout (and stderr,
    /// for its errors) are the terminal's, and `WIDTH HEIGHT` lines written
    /// to the returned pipe resize it.
    async fn exec_tty(&self, id: &str, command: &[String], size: Option<(u16, u16)>) -> Result<(tokio::process::Child, OwnedFd)>;
    /// One container's state, if the runtime has it.
    fn state(&self, id: &str) -> Option<State>;
    /// Where what is written reaches a running container's stdin, if it has one.
    fn stdin(&self, id: &str) -> Option<PathBuf>;
    /// Sets the size of a container's own terminal (`tty: true`).
    fn resize(&self, id: &str, width: u16, height: u16) -> Result<()>;
    /// Where a container's writes to its root go (its overlay's upper layer).
    fn writable_layer(&self, id: &str) -> PathBuf;
    /// The runtime's name and version, as `nodeInfo.containerRuntimeVersion`.
    fn version(&self) -> String;
}

pub struct Runc {
    /// Container directories.
    root: PathBuf,
    /// runc's own state (`runc --root`); on tmpfs, gone at reboot, as the containers are.
    state_root: PathBuf,
    /// The program that is the shim (`skiff`, run as `skiff shim`).
    shim: PathBuf,
    version: String,
    /// Each container's log is rotated past this size, keeping this many files.
    log_limits: (u64, usize),
    /// Who each container is, read from the directories once at start.
    metas: std::sync::Mutex<std::collections::HashMap<String, Meta>>,
}

const META: &str = "meta.json";

impl Runc {
    pub fn new(root: &Path, state_root: &Path, shim: &Path, log_limits: (u64, usize)) -> Result<Runc> {
        std::fs::create_dir_all(root)?;
        std::fs::create_dir_all(state_root)?;
        let out = std::process::Command::new("runc").arg("--version").output().context("runc is not installed (apt-get install runc)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text.lines().next().and_then(|l| l.strip_prefix("runc version ")).unwrap_or("unknown").trim().to_string();
        let mut metas = std::collections::HashMap::new();
        for entry in std::fs::read_dir(root)?.flatten() {
            let meta = std::fs::read(entry.path().join(META)).ok().and_then(|m| serde_json::from_slice(&m).ok());
            match meta {
                Some(meta) => {
                    metas.insert(entry.file_name().to_string_lossy().into_owned(), meta);
                }
                // Left half-made by an agent that died while starting it.
                None => Self::discard(&entry.path()),
            }
        }
        Ok(Runc { root: root.to_path_buf(), state_root: state_root.to_path_buf(), shim: shim.to_path_buf(), version, log_limits, metas: metas.into() })
    }

    fn discard(dir: &Path) {
        let _ = nix::mount::umount2(&dir.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    async fn runc(&self, args: &[&str]) -> Result<std::process::Output> {
        let out = tokio::process::Command::new("runc").arg("--root").arg(&self.state_root).args(args).output().await.context("running runc")?;
        Ok(out)
    }

    fn state_of(dir: &Path) -> State {
        let read = |name: &str| std::fs::read(dir.join(name)).ok();
        let started: Option<Started> = read(shim::STARTED).and_then(|b| serde_json::from_slice(&b).ok());
        let exited: Option<Exited> = read(shim::EXITED).and_then(|b| serde_json::from_slice(&b).ok());
        match (started, exited) {
            (Some(s), Some(e)) => State::Exited { started_at: s.started_at, finished_at: e.finished_at, exit_code: e.exit_code, oom_killed: e.oom_killed },
            (Some(s), None) => State::Running { started_at: s.started_at },
            (None, _) => {
                let failed_at = std::fs::metadata(dir.join("error")).and_then(|m| m.modified()).ok();
                State::Created {
                    error: read("error").map(|e| String::from_utf8_lossy(&e).into_owned()),
                    failed_at: failed_at.map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
                }
            }
        }
    }

    /// Mounts the overlay root: the image's layers below, the container's
    /// own writable layer above.
    fn mount_rootfs(dir: &Path, layers: &[PathBuf]) -> Result<()> {
        let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
        for d in [&upper, &work, &rootfs] {
            std::fs::create_dir_all(d)?;
        }
        let lower: Vec<String> = layers.iter().map(|l| l.display().to_string()).collect();
        // overlayfs needs two lower layers or an upper one; an image of one
        // layer has the upper, so one lower is fine.
        let options = format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), upper.display(), work.display());
        nix::mount::mount(Some("overlay"), &rootfs, Some("overlay"), nix::mount::MsFlags::empty(), Some(options.as_str()))
            .with_context(|| format!("mounting the root of {}", dir.display()))?;
        Ok(())
    }

    async fn start_inner(&self, id: &str, dir: &Path, config: ContainerConfig) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        shim::write_json(&dir.join(META), &config.meta)?;
        crate::lock(&self.metas).insert(id.to_string(), config.meta.clone());
        if let Some(parent) = config.meta.log_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Self::mount_rootfs(dir, &config.layers)?;
        let mut spec = config.spec;
        if let Some(linux) = spec.linux_mut() {
            linux.set_cgroups_path(Some(PathBuf::from(format!("{}/{id}", config.cgroup_parent))));
        }
        spec.set_root(Some(oci_spec::runtime::RootBuilder::default().path("rootfs").readonly(spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false)).build()?));
        spec.save(dir.join("config.json"))?;
        let out = tokio::process::Command::new(&self.shim)
            .arg("shim")
            .arg("--id")
            .arg(id)
            .arg("--bundle")
            .arg(dir)
            .arg("--runc-root")
            .arg(&self.state_root)
            .arg("--log")
            .arg(&config.meta.log_path)
            .arg("--log-max-size")
            .arg(self.log_limits.0.to_string())
            .arg("--log-max-files")
            .arg(self.log_limits.1.to_string())
            .args(config.stdin.then_some("--stdin"))
            .args(config.tty.then_some("--tty"))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .context("starting the shim")?;
        if !out.status.success() {
            let error = String::from_utf8_lossy(&out.stderr).trim().to_string();
            std::fs::write(dir.join("error"), &error)?;
            bail!("{error}");
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for Runc {
    async fn start(&self, config: ContainerConfig) -> (String, Result<()>) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.dir(&id);
        let result = self.start_inner(&id, &dir, config).await;
        if let Err(e) = &result {
            let _ = std::fs::write(dir.join("error"), format!("{e:#}"));
        }
        (id, result)
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let dir = self.dir(id);
        if !matches!(Self::state_of(&dir), State::Running { .. }) {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + grace;
        let _ = self.runc(&["kill", id, "TERM"]).await;
        while tokio::time::Instant::now() < deadline {
            if !matches!(Self::state_of(&dir), State::Running { .. }) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.runc(&["kill", "--all", id, "KILL"]).await;
        for _ in 0..200 {
            if !matches!(Self::state_of(&dir), State::Running { .. }) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("container {id} did not die from SIGKILL")
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        let out = self.runc(&["delete", "--force", id]).await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !stderr.contains("does not exist") && !stderr.contains("not exist") {
            bail!("runc delete {id}: {}", stderr.trim());
        }
        let rootfs = dir.join("rootfs");
        match nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => bail!("unmounting {}: {e}", rootfs.display()),
        }
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).with_context(|| format!("removing {}", dir.display())),
            _ => {}
        }
        crate::lock(&self.metas).remove(id);
        Ok(())
    }

    async fn list(&self, pod_uid: Option<&str>) -> Result<Vec<Container>> {
        let metas: Vec<(String, Meta)> = crate::lock(&self.metas).iter().filter(|(_, m)| pod_uid.is_none_or(|u| m.pod_uid == u)).map(|(i, m)| (i.clone(), m.clone())).collect();
        Ok(metas.into_iter().map(|(id, meta)| Container { state: Self::state_of(&self.dir(&id)), id, meta }).collect())
    }

    async fn exec(&self, id: &str, command: &[String], stdin: bool) -> Result<tokio::process::Child> {
        use std::process::Stdio;
        let child = tokio::process::Command::new("runc")
            .arg("--root")
            .arg(&self.state_root)
            .arg("exec")
            .arg(id)
            .args(command)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("running runc exec")?;
        Ok(child)
    }

    async fn exec_tty(&self, id: &str, command: &[String], size: Option<(u16, u16)>) -> Result<(tokio::process::Child, OwnedFd)> {
        use std::os::fd::AsRawFd;
        use std::process::Stdio;
        let (sizes, resize) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("making the resize pipe")?;
        let sizes_fd = sizes.as_raw_fd();
        let mut shim = tokio::process::Command::new(&self.shim);
        shim.arg("exec-shim")
            .arg("--id")
            .arg(id)
            .arg("--bundle")
            .arg(self.dir(id))
            .arg("--runc-root")
            .arg(&self.state_root)
            .args(size.map(|(columns, rows)| format!("--size={columns}x{rows}")))
            .arg("--")
            .args(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // SAFETY: between fork and exec, only async-signal-safe calls.
        unsafe {
            shim.pre_exec(move || {
                // The shim reads sizes from its fd 3, open across exec.
                match sizes_fd == exec_shim::RESIZE_FD {
                    true => nix::fcntl::fcntl(sizes_fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).map(drop),
                    false => nix::unistd::dup2(sizes_fd, exec_shim::RESIZE_FD).map(drop),
                }
                .map_err(std::io::Error::from)
            });
        }
        let child = shim.spawn().context("starting the exec shim")?;
        drop(sizes);
        Ok((child, resize))
    }

    fn state(&self, id: &str) -> Option<State> {
        crate::lock(&self.metas).contains_key(id).then(|| Self::state_of(&self.dir(id)))
    }

    fn version(&self) -> String {
        format!("runc://{}", self.version)
    }

    fn stdin(&self, id: &str) -> Option<PathBuf> {
        Some(self.dir(id).join(shim::STDIN_FIFO)).filter(|p| p.exists())
    }

    fn writable_layer(&self, id: &str) -> PathBuf {
        self.dir(id).join("upper")
    }

    fn resize(&self, id: &str, width: u16, height: u16) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking: with no shim reading, the open fails instead of waiting.
        let mut fifo = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(self.dir(id).join(shim::RESIZE_FIFO))?;
        fifo.write_all(format!("{width} {height}\n").as_bytes())?;
        Ok(())
    }
}

/// Removes a pod's cgroup (every container's below it must be gone) from
/// each hierarchy that has it.
pub fn remove_cgroup(parent: &str) {
    let parent = parent.trim_start_matches('/');
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let dir = hierarchy.path().join(parent);
        if dir.is_dir() {
            if let Err(e) = std::fs::remove_dir(&dir) {
                tracing::debug!("removing {}: {e}", dir.display());
            }
        }
    }
}

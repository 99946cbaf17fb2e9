//! Pod sandboxes: the network, IPC and UTS namespaces a pod's containers
//! share, kept alive by bind mounts (no pause process), and the pod's
//! network from CNI.
//!
//! CNI is called as the spec says, by running the plugin with its
//! configuration on stdin; there is no maintained Rust crate for the
//! caller's side, and the protocol is a few environment variables.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use serde_json::{json, Value};

/// The namespaces a pod's containers join.
pub const SHARED: [&str; 3] = ["net", "ipc", "uts"];

pub struct Network {
    /// Where the CNI plugins are (Debian's containernetworking-plugins).
    pub bin_dir: PathBuf,
    /// The bridge pods attach to on this node.
    pub bridge: String,
    /// host-local IPAM's state.
    pub ipam_dir: PathBuf,
    /// The pods' MTU, when the network needs a smaller one than the bridge's.
    pub mtu: Option<u32>,
}

pub struct Sandboxes {
    root: PathBuf,
    pub network: Network,
}

impl Sandboxes {
    pub fn new(root: &Path, network: Network) -> Result<Sandboxes> {
        std::fs::create_dir_all(root)?;
        Ok(Sandboxes { root: root.to_path_buf(), network })
    }

    pub fn dir(&self, pod_uid: &str) -> PathBuf {
        self.root.join(pod_uid)
    }

    /// The path of one of a pod's namespaces, for the OCI spec.
    pub fn namespace(&self, pod_uid: &str, kind: &str) -> PathBuf {
        self.dir(pod_uid).join(kind)
    }

    /// The namespaces the pod's sandbox holds, by OCI name.
    pub fn namespaces(&self, pod_uid: &str) -> Vec<(&'static str, PathBuf)> {
        SHARED.into_iter().map(|k| (k, self.namespace(pod_uid, k))).filter(|(_, p)| p.exists()).collect()
    }

    pub fn exists(&self, pod_uid: &str) -> bool {
        self.dir(pod_uid).join("ip").exists()
    }

    /// The pods that have sandboxes.
    pub fn list(&self) -> Vec<String> {
        std::fs::read_dir(&self.root).map(|d| d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned())).collect()).unwrap_or_default()
    }

    pub fn ip(&self, pod_uid: &str) -> Option<IpAddr> {
        std::fs::read_to_string(self.dir(pod_uid).join("ip")).ok()?.trim().parse().ok()
    }

    /// Makes the namespaces and attaches the pod to the network; returns
    /// its IP. `subnet` is the node's pod CIDR; a pod on the host's
    /// network (`None`) has the host's IP, network and UTS namespaces, and
    /// one with `host_ipc` the host's IPC namespace.
    pub fn create(&self, pod_uid: &str, hostname: &str, subnet: Option<&str>, host_ip: IpAddr, host_ipc: bool) -> Result<IpAddr> {
        let dir = self.dir(pod_uid);
        // What an agent killed half-way through left (namespaces pinned, an
        // address taken): released first, or pinning again would fail.
        if dir.exists() {
            self.remove(pod_uid).context("removing a sandbox left half-made")?;
        }
        std::fs::create_dir_all(&dir)?;
        let mut kinds = Vec::new();
        if subnet.is_some() {
            kinds.extend([("net", CloneFlags::CLONE_NEWNET), ("uts", CloneFlags::CLONE_NEWUTS)]);
        }
        if !host_ipc {
            kinds.push(("ipc", CloneFlags::CLONE_NEWIPC));
        }
        let (d, host) = (dir.clone(), hostname.to_string());
        // unshare() acts on the calling thread only: a thread of its own
        // makes the namespaces and pins them with bind mounts, then ends.
        std::thread::spawn(move || -> Result<()> {
            let flags = kinds.iter().fold(CloneFlags::empty(), |all, (_, flag)| all | *flag);
            if !flags.is_empty() {
                unshare(flags)?;
            }
            if flags.contains(CloneFlags::CLONE_NEWUTS) {
                nix::unistd::sethostname(&host)?;
            }
            for (kind, _) in kinds {
                let target = d.join(kind);
                std::fs::File::create(&target)?;
                mount(Some(&PathBuf::from(format!("/proc/thread-self/ns/{kind}"))), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                    .with_context(|| format!("pinning the {kind} namespace"))?;
            }
            Ok(())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))??;
        let Some(subnet) = subnet else {
            std::fs::write(dir.join("ip"), host_ip.to_string())?;
            return Ok(host_ip);
        };
        let netns = self.namespace(pod_uid, "net");
        // Written first, so that a sandbox interrupted from here on is
        // released with CNI DEL (its address given back).
        std::fs::write(dir.join("subnet"), subnet)?;
        self.cni("ADD", pod_uid, &netns, &loopback())?;
        let result = self.cni("ADD", pod_uid, &netns, &self.bridge(subnet))?;
        let ip: IpAddr = result["ips"]
            .as_array()
            .and_then(|ips| ips.first())
            .and_then(|ip| ip["address"].as_str())
            .and_then(|a| a.split('/').next()?.parse().ok())
            .context("CNI gave the pod no IP")?;
        std::fs::write(dir.join("ip"), ip.to_string())?;
        Ok(ip)
    }

    /// Detaches the pod from the network and releases its namespaces.
    pub fn remove(&self, pod_uid: &str) -> Result<()> {
        let dir = self.dir(pod_uid);
        if !dir.exists() {
            return Ok(());
        }
        let netns = self.namespace(pod_uid, "net");
        if let Ok(subnet) = std::fs::read_to_string(dir.join("subnet")) {
            // DEL releases the address even when the namespace is gone.
            if let Err(e) = self.cni("DEL", pod_uid, &netns, &self.bridge(&subnet)) {
                tracing::warn!("CNI DEL for pod {pod_uid}: {e:#}");
            }
        }
        for kind in SHARED.into_iter().filter(|k| dir.join(k).exists()) {
            match umount2(&dir.join(kind), MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => bail!("releasing the {kind} namespace of pod {pod_uid}: {e}"),
            }
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
    }

    fn bridge(&self, subnet: &str) -> Value {
        let mut config = json!({
            "cniVersion": "1.0.0",
            "name": "skiff",
            "type": "bridge",
            "bridge": self.network.bridge,
            "isGateway": true,
            "isDefaultGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet.trim()}]], "dataDir": self.network.ipam_dir},
        });
        if let Some(mtu) = self.network.mtu {
            config["mtu"] = json!(mtu);
        }
        config
    }

    /// Runs one CNI plugin; returns its result.
    fn cni(&self, command: &str, pod_uid: &str, netns: &Path, config: &Value) -> Result<Value> {
        let plugin = config["type"].as_str().unwrap_or_default();
        let mut child = std::process::Command::new(self.network.bin_dir.join(plugin))
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", pod_uid)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", if plugin == "loopback" { "lo" } else { "eth0" })
            .env("CNI_PATH", &self.network.bin_dir)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("running the CNI plugin {plugin} from {}", self.network.bin_dir.display()))?;
        child.stdin.take().unwrap().write_all(config.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        let result: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if !out.status.success() {
            let msg = result["msg"].as_str().map(str::to_string).unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned());
            bail!("CNI {plugin} {command}: {msg}");
        }
        Ok(result)
    }
}

fn loopback() -> Value {
    json!({"cniVersion": "1.0.0", "name": "loopback", "type": "loopback"})
}

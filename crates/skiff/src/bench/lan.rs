//! Hosts for the multi-host benchmarks: network namespaces on one bridge,
//! this machine at `<prefix>.1`, each running a `skiff` process; all of it
//! removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

pub struct Lan {
    pub bridge: &'static str,
    /// The first three octets of the /24.
    pub prefix: &'static str,
    pub netns_prefix: &'static str,
}

/// The bridge, deleted when dropped.
pub struct Bridge(&'static str);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = sh(&["ip", "link", "del", self.0]);
    }
}

pub struct Host {
    pub netns: String,
    pub address: String,
    pub dir: PathBuf,
    pub child: Option<Child>,
}

impl Lan {
    /// The bridge with this machine's address on it.
    pub fn up(&self) -> Result<Bridge> {
        let _ = sh(&["ip", "link", "del", self.bridge]);
        sh(&["ip", "link", "add", self.bridge, "type", "bridge"]).context("making the hosts' bridge (run as root)")?;
        let bridge = Bridge(self.bridge);
        sh(&["ip", "addr", "add", &format!("{}/24", self.gateway()), "dev", self.bridge])?;
        sh(&["ip", "link", "set", self.bridge, "up"])?;
        Ok(bridge)
    }

    pub fn gateway(&self) -> String {
        format!("{}.1", self.prefix)
    }

    /// Host `name` at `<prefix>.<octet>`, keeping its files in `dir/<name>`.
    pub fn plug_in(&self, name: &str, octet: u8, dir: &Path) -> Result<Host> {
        let netns = format!("{}{name}", self.netns_prefix);
        let outer = format!("{}{name}", self.bridge);
        let address = format!("{}.{octet}", self.prefix);
        let _ = sh(&["ip", "netns", "del", &netns]);
        let _ = sh(&["ip", "link", "del", &outer]);
        sh(&["ip", "netns", "add", &netns])?;
        sh(&["ip", "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns", &netns])?;
        sh(&["ip", "link", "set", &outer, "master", self.bridge, "up"])?;
        sh(&["ip", "-n", &netns, "addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
        sh(&["ip", "-n", &netns, "link", "set", "eth0", "up"])?;
        sh(&["ip", "-n", &netns, "link", "set", "lo", "up"])?;
        sh(&["ip", "-n", &netns, "route", "add", "default", "via", &self.gateway()])?;
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(Host { netns, address, dir, child: None })
    }
}

impl Host {
    /// Runs `skiff <args>` in the host's namespace, logging to `dir/log`.
    pub fn spawn(&mut self, args: &[String]) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(std::env::current_exe()?)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
        // Whatever else runs in the namespace (containers, etcd) goes with it.
        let pids = Command::new("ip").args(["netns", "pids", &self.netns]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).output();
        }
        remove_containers(&self.dir);
        let _ = sh(&["ip", "netns", "del", &self.netns]);
    }
}

/// What an agent in `dir` left running or mounted (it was killed before
/// it could tear its pods down): containers, mounts, pod cgroups.
fn remove_containers(dir: &Path) {
    let runc = dir.join("run/runc");
    let listed = Command::new("runc").arg("--root").arg(&runc).args(["list", "-q"]).output();
    for id in listed.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default().lines() {
        let _ = Command::new("runc").arg("--root").arg(&runc).args(["delete", "--force", id]).output();
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.display().to_string();
    let mounts: Vec<&str> = info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&prefix)).collect();
    for mount in mounts.into_iter().rev() {
        let _ = Command::new("umount").args(["-l", mount]).output();
    }
    for pod in std::fs::read_dir(dir.join("data/agent/pods")).into_iter().flatten().flatten() {
        let cgroup = format!("kubepods/pod{}", pod.file_name().to_string_lossy());
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let path = hierarchy.path().join(&cgroup);
            for child in std::fs::read_dir(&path).into_iter().flatten().flatten().filter(|c| c.path().is_dir()) {
                let _ = std::fs::remove_dir(child.path());
            }
            let _ = std::fs::remove_dir(path);
        }
    }
}

/// A process on this machine, killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `skiff server` (no agent of its own) on this machine's address on
/// the bridge, and what agents join it with.
pub struct Server {
    _process: Process,
    pub client: kube::Client,
    url: String,
    token: String,
    ca_file: PathBuf,
}

impl Lan {
    /// Starts a server on `port` keeping its files in `dir`, with more
    /// `flags`, and waits until it answers.
    pub async fn start_server(&self, dir: &Path, port: u16, flags: &[&str]) -> Result<Server> {
        let gateway = self.gateway();
        let kubeconfig = dir.join("kubeconfig.yaml");
        let log = std::fs::File::create(dir.join("server.log"))?;
        let process = Process(
            Command::new(std::env::current_exe()?)
                .args(["server", "--bind-address", &gateway, "--https-listen-port", &port.to_string(), "--disable-agent"])
                .args(flags)
                .arg("--data-dir")
                .arg(dir.join("server"))
                .arg("--write-kubeconfig")
                .arg(&kubeconfig)
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while !kubeconfig.exists() {
            anyhow::ensure!(Instant::now() < deadline, "the server did not start: {}", std::fs::read_to_string(dir.join("server.log")).unwrap_or_default());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let client = crate::sim::client(&kubeconfig).await?;
        let token = Command::new(std::env::current_exe()?).args(["token", "create", "--kubeconfig", &kubeconfig.display().to_string()]).output()?;
        anyhow::ensure!(token.status.success(), "token create: {}", String::from_utf8_lossy(&token.stderr));
        let token = String::from_utf8(token.stdout)?.trim().to_string();
        Ok(Server { _process: process, client, url: format!("https://{gateway}:{port}"), token, ca_file: dir.join("server/server/tls/ca.crt") })
    }
}

impl Server {
    /// Starts an agent on `host`, named `node`, joined to this server,
    /// with more `flags`.
    pub fn join(&self, host: &mut Host, node: &str, flags: &[&str]) -> Result<()> {
        let d = |sub: &str| host.dir.join(sub).display().to_string();
        let mut args: Vec<String> = [
            "agent", "--server", &self.url, "--token", &self.token,
            "--ca-file", &self.ca_file.display().to_string(),
            "--node-name", node, "--node-ip", &host.address,
            "--data-dir", &d("data"), "--agent-run-dir", &d("run"), "--pod-log-dir", &d("pods"),
            "--eviction-hard", "nodefs.available<1%,imagefs.available<1%",
        ]
        .map(String::from)
        .to_vec();
        args.extend(flags.iter().map(|f| f.to_string()));
        host.spawn(&args)
    }

    /// Deletes the default namespace's pods and waits (a minute at most)
    /// until they are gone, so that the agents remove what they made.
    pub async fn delete_pods(&self) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        let _ = pods.delete_collection(&DeleteParams::default(), &Default::default()).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pods.list(&Default::default()).await.map(|l| l.items.is_empty()).unwrap_or(true) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("running {}", args[0]))?;
    anyhow::ensure!(out.status.success(), "{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

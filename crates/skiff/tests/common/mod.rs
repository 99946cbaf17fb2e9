//! A real `skiff server` on a free loopback port, driven with stock kubectl.
#![allow(dead_code)]

pub mod hosts;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Disk thresholds a test host's own disk does not cross.
pub const LENIENT_EVICTION: [&str; 2] = ["--eviction-hard", "nodefs.available<1%,imagefs.available<1%"];

pub struct Cluster {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The address the server listens on.
    host: String,
    /// Extra `skiff server` flags (e.g. the datastore).
    extra: Vec<String>,
    /// The pod network of this cluster's node agent, if it runs one.
    network: Option<Network>,
}

/// A pod network of its own for one test cluster: a bridge `skt<n>` and
/// the cluster CIDR `10.<n>.0.0/16`, `n` claimed with a lock file so that
/// clusters running at once never share one.
pub struct Network {
    pub n: u8,
    _claim: std::fs::File,
}

impl Network {
    pub fn claim() -> Network {
        let dir = Path::new("/tmp/skiff-test-networks");
        std::fs::create_dir_all(dir).unwrap();
        for n in 100..=250u8 {
            let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(n.to_string())).unwrap();
            if try_lock(&file) {
                return Network { n, _claim: file };
            }
        }
        panic!("no free test network");
    }

    pub fn bridge(&self) -> String {
        format!("skt{}", self.n)
    }
}

/// An exclusive, non-blocking lock held while the file stays open.
fn try_lock(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor that stays open across the call.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Cluster {
        Self::start_on("127.0.0.1", extra)
    }

    /// A server without a node agent listening on `host` (one of this
    /// host's addresses), with these extra flags.
    pub fn start_on(host: &str, extra: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new().prefix("skiff-e2e-").tempdir().unwrap();
        let port = TcpListener::bind((host, 0)).unwrap().local_addr().unwrap().port();
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let mut cluster = Cluster { child: None, dir, port, host: host.to_string(), extra, network: None };
        cluster.boot();
        cluster
    }

    /// A cluster whose server runs its node agent, with real containers,
    /// on a pod network of its own; images come from the local test
    /// registry (`scripts/test-registry.sh`).
    pub fn start_node(extra: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new().prefix("skiff-node-").tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let network = Network::claim();
        let mut flags: Vec<String> = vec![
            "--node-name".into(),
            "node-1".into(),
            "--kubelet-port".into(),
            "0".into(),
            "--agent-run-dir".into(),
            dir.path().join("run").display().to_string(),
            "--pod-log-dir".into(),
            dir.path().join("pod-logs").display().to_string(),
            "--cni-bridge".into(),
            network.bridge(),
            "--cluster-cidr".into(),
            format!("10.{}.0.0/16", network.n),
            // Clusters running at once share this host's network namespace:
            // their pod networks stay on their own bridges, and the network
            // between hosts is tested on hosts of their own (`hosts.rs`).
            "--flannel-backend".into(),
            "none".into(),
            "--disable-kube-proxy".into(),
            "--disable-network-policy".into(),
            "--disable".into(),
            "coredns".into(),
        ];
        // A test host's disk may be fuller than upstream's default eviction
        // thresholds allow; tests of pressure give their own.
        if !extra.contains(&"--eviction-hard") {
            flags.extend([LENIENT_EVICTION[0].to_string(), LENIENT_EVICTION[1].to_string()]);
        }
        flags.extend(extra.iter().map(|s| s.to_string()));
        let mut cluster = Cluster { child: None, dir, port, host: "127.0.0.1".into(), extra: flags, network: Some(network) };
        cluster.boot();
        cluster.wait_for(&["get", "node", "node-1", "-o", "jsonpath={.spec.podCIDR}"], "the node to register and get its pod CIDR", |c| !c.is_empty());
        cluster
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    pub fn url(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }

    /// Another `skiff` command, expecting success; returns stdout.
    pub fn skiff(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_skiff")).args(args).output().unwrap();
        assert!(out.status.success(), "skiff {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Starts the server (again) on the same data directory.
    pub fn boot(&mut self) {
        let _ = std::fs::remove_file(self.kubeconfig());
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["server", "--bind-address", &self.host])
            .args(self.network.is_none().then_some("--disable-agent"))
            .arg("--https-listen-port")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .args(&self.extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.kubeconfig().exists() && self.kubectl(&["get", "--raw", "/readyz"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("skiff server did not become ready: {}", self.log());
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl_with(&self.kubeconfig(), args, stdin)
    }

    /// The cluster CA, for kubeconfigs of other users.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("data/server/tls/ca.crt")
    }

    /// A kubeconfig for this cluster whose user entry is `user` (YAML
    /// flow mapping, e.g. `{token: abc}`), written as `<name>.kubeconfig`.
    pub fn kubeconfig_for(&self, name: &str, user: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.kubeconfig"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{}\", certificate-authority: {}}}}}]\nusers: [{{name: u, user: {user}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n",
            self.url(),
            self.ca_file().display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// kubectl with the given kubeconfig.
pub fn kubectl_with(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    kubectl_env(kubeconfig, &[], args, stdin)
}

/// kubectl with the given kubeconfig and environment (`KUBECTL_*` switches).
pub fn kubectl_env(kubeconfig: &Path, env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("kubectl");
    cmd.args(args).env("KUBECONFIG", kubeconfig).env_remove("KUBERNETES_SERVICE_HOST").envs(env.iter().copied());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl is installed");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

impl Cluster {
    /// Runs kubectl, expecting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_stdin(args, None)
    }

    pub fn ok_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl, expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(!out.status.success(), "kubectl {} should fail but printed {}", args.join(" "), String::from_utf8_lossy(&out.stdout));
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Another skiff process against this cluster (`skiff scheduler`, …),
    /// logging to `<name>.log` in the data dir; stopped when dropped.
    pub fn component(&self, command: &str, log_name: &str, args: &[&str]) -> Sim {
        let log = std::fs::File::create(self.dir.path().join(format!("{log_name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg(command)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Sim(child)
    }

    /// `skiff sim` joined to this cluster with these flags; stopped when
    /// the returned guard is dropped. Returns once its nodes are Ready.
    pub fn sim(&self, args: &[&str]) -> Sim {
        let log = std::fs::File::create(self.dir.path().join("sim.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("sim")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let sim = Sim(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(self.dir.path().join("sim.log")).unwrap_or_default().contains("registered") {
            assert!(Instant::now() < deadline, "skiff sim did not register its nodes");
            std::thread::sleep(Duration::from_millis(50));
        }
        sim
    }

    /// Polls `kubectl args` until its output satisfies `done`; returns it.
    pub fn wait_for(&self, args: &[&str], what: &str, done: impl Fn(&str) -> bool) -> String {
        self.wait_up_to(Duration::from_secs(30), args, what, done)
    }

    pub fn wait_up_to(&self, limit: Duration, args: &[&str], what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let out = self.kubectl(args);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && done(&text) {
                return text;
            }
            if Instant::now() >= deadline {
                // What the server said last: the first clue to a flake in CI.
                let log = self.log();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                panic!("timed out waiting for {what}; last output:\n{text}{}\nserver log, last lines:\n{tail}", String::from_utf8_lossy(&out.stderr));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub struct Sim(Child);

impl Sim {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        if let Some(network) = &self.network {
            remove_node_leftovers(self.dir.path(), Some(&network.bridge()));
        }
    }
}

/// What a node agent leaves on the host once its server is killed: the
/// containers (their shims outlive it, as they must), mounts, pod cgroups
/// and the bridge. A test that checks the agent cleans up after itself
/// does so before this runs.
pub fn remove_node_leftovers(dir: &Path, bridge: Option<&str>) {
    let runc_root = dir.join("run/runc");
    let listed = Command::new("runc").arg("--root").arg(&runc_root).args(["list", "-q"]).output();
    for id in listed.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default().lines() {
        let _ = Command::new("runc").arg("--root").arg(&runc_root).args(["delete", "--force", id]).output();
    }
    for mount in mounts_under(dir).into_iter().rev() {
        let _ = Command::new("umount").args(["-l", &mount]).output();
    }
    // The loop devices of local-disk volumes a failed test left staged.
    let loops = Command::new("losetup").args(["--list", "--noheadings", "--raw", "--output", "NAME,BACK-FILE"]).output();
    for line in loops.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default().lines() {
        if let Some((device, file)) = line.split_once(' ') {
            if Path::new(file).starts_with(dir) {
                let _ = Command::new("losetup").args(["-d", device]).output();
            }
        }
    }
    // Pods are known by their volume directories, and (once those are torn
    // down, as a finished pod's are) by their log directories, `<ns>_<pod>_<uid>`.
    let volumes = std::fs::read_dir(dir.join("data/agent/pods")).into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned());
    let logs = std::fs::read_dir(dir.join("pod-logs")).into_iter().flatten().flatten().filter_map(|e| e.file_name().to_string_lossy().rsplit('_').next().map(String::from));
    let uids: std::collections::BTreeSet<String> = volumes.chain(logs).collect();
    for uid in uids {
        let cgroup = format!("kubepods/pod{uid}");
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let path = hierarchy.path().join(&cgroup);
            for child in std::fs::read_dir(&path).into_iter().flatten().flatten().filter(|c| c.path().is_dir()) {
                let _ = std::fs::remove_dir(child.path());
            }
            let _ = std::fs::remove_dir(path);
        }
    }
    if let Some(bridge) = bridge {
        let _ = Command::new("ip").args(["link", "del", bridge]).output();
    }
}

/// The busybox test image in the local registry, started (and the image
/// built) on first use.
pub fn test_image() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/test-registry.sh");
    let out = Command::new(script).output().expect("running scripts/test-registry.sh");
    assert!(out.status.success(), "the test registry: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Mount points at or below `dir`, in the order they were mounted.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.display().to_string();
    info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&prefix)).map(str::to_string).collect()
}

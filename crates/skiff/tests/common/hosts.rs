//! Several hosts on this machine: a network namespace each, joined by one
//! bridge as one L2 segment, with a `skiff agent` in each joined to a
//! server on the bridge's own address. Each agent keeps all its state under
//! its own directory, as on separate machines.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Cluster, Network};

pub struct Host {
    pub name: String,
    /// The namespace, `/run/netns/<netns>`.
    pub netns: String,
    pub address: Ipv4Addr,
    pub dir: PathBuf,
    /// More `skiff agent` flags.
    pub agent_flags: Vec<String>,
    agent: Option<Child>,
}

pub struct Hosts {
    pub cluster: Cluster,
    pub hosts: Vec<Host>,
    lan: Lan,
    token: String,
}

/// Runs a command, expecting success.
pub fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(out.status.success(), "{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    out
}

impl Hosts {
    /// A server on a bridge of its own and `count` hosts on it, each with
    /// an agent; `server_flags` go to `skiff server` (e.g. the backend), with
    /// `{n}` standing for this network's number (the LAN is 10.255.{n}.0/24, apart
    /// from every pod network 10.{n}.0.0/16 since n ≤ 250, and from the usual home and
    /// office ranges).
    pub fn start(count: usize, server_flags: &[&str]) -> Hosts {
        Self::start_with(count, server_flags, &[])
    }

    /// As `start`, with more flags for every agent.
    pub fn start_with(count: usize, server_flags: &[&str], agent_flags: &[&str]) -> Hosts {
        let lan = Lan::new();
        let n = lan.n();
        let mut flags = vec!["--cluster-cidr".to_string(), format!("10.{n}.0.0/16")];
        flags.extend(server_flags.iter().map(|s| s.replace("{n}", &n.to_string())));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let cluster = Cluster::start_on(&lan.gateway(), &flags);
        let token = cluster.skiff(&["token", "create", "--kubeconfig", &cluster.kubeconfig().display().to_string()]).trim().to_string();
        let mut hosts = Hosts { cluster, hosts: Vec::new(), lan, token };
        for i in 1..=count {
            hosts.add_host(i, agent_flags);
        }
        for host in &hosts.hosts {
            hosts.cluster.wait_up_to(Duration::from_secs(60), &["get", "node", &host.name, "-o", "jsonpath={.spec.podCIDR}"], "the node to register and get its pod CIDR", |c| !c.is_empty());
        }
        hosts
    }

    fn add_host(&mut self, i: usize, agent_flags: &[&str]) {
        let mut host = Host::plug_in(&self.lan, i, self.cluster.dir.path().join(format!("h{i}")));
        host.agent_flags = agent_flags.iter().map(|f| f.to_string()).collect();
        self.hosts.push(host);
        let last = self.hosts.len() - 1;
        self.hosts[last].start_agent(&self.cluster.url(), &self.token, &self.cluster.ca_file());
    }

    /// A network namespace of its own on this segment (see [`Lan::plug_in`]).
    pub fn plug_in(&self, netns: &str, outer: &str, address: &str) {
        self.lan.plug_in(netns, outer, address)
    }

    /// This network's number: the LAN is 10.255.{n}.0/24, the pods 10.{n}.0.0/16.
    pub fn n(&self) -> u8 {
        self.lan.n()
    }

    /// This machine's address on the hosts' LAN.
    pub fn gateway(&self) -> String {
        self.lan.gateway()
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts.iter().find(|h| h.name == name).unwrap_or_else(|| panic!("no host {name}"))
    }

    /// Stops a host's agent (its pods keep running, as on a real host).
    pub fn stop_agent(&mut self, name: &str) {
        self.hosts.iter_mut().find(|h| h.name == name).unwrap().stop_agent();
    }

    pub fn restart_agent(&mut self, name: &str) {
        let (url, ca) = (self.cluster.url(), self.cluster.ca_file());
        let host = self.hosts.iter_mut().find(|h| h.name == name).unwrap();
        host.stop_agent();
        host.start_agent(&url, &self.token, &ca);
    }

    /// A command on a host, in its network namespace; returns its output.
    pub fn on(&self, name: &str, program: &str, args: &[&str]) -> Output {
        self.host(name).run(program, args)
    }

    pub fn agent_log(&self, name: &str) -> String {
        self.host(name).agent_log()
    }

    /// Polls `check` until it holds; the hosts' agent logs on failure.
    pub fn wait(&self, what: &str, limit: Duration, check: impl FnMut() -> bool) {
        wait_for_hosts(&self.hosts, what, limit, check)
    }
}

/// Polls `check` until it holds; the hosts' agent logs on failure.
pub fn wait_for_hosts(hosts: &[Host], what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        if Instant::now() > deadline {
            let logs: Vec<String> = hosts.iter().map(|h| {
                let log = h.agent_log();
                let lines: Vec<&str> = log.lines().collect();
                format!("--- {} agent log, last lines:\n{}", h.name, lines[lines.len().saturating_sub(20)..].join("\n"))
            }).collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One L2 segment: a bridge `skl<n>` at 10.255.<n>.1/24 on this machine,
/// which namespaces plug into as hosts on a LAN; removed when dropped.
pub struct Lan {
    network: Network,
}

impl Lan {
    pub fn new() -> Lan {
        let network = Network::claim();
        let n = network.n;
        let bridge = format!("skl{n}");
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        run("ip", &["link", "add", &bridge, "type", "bridge"]);
        run("ip", &["addr", "add", &format!("10.255.{n}.1/24"), "dev", &bridge]);
        run("ip", &["link", "set", &bridge, "up"]);
        Lan { network }
    }

    /// The LAN is 10.255.{n}.0/24, apart from every pod network 10.{n}.0.0/16
    /// since n ≤ 250, and from the usual home and office ranges.
    pub fn n(&self) -> u8 {
        self.network.n
    }

    /// This machine's own address on the LAN.
    pub fn gateway(&self) -> String {
        format!("10.255.{}.1", self.network.n)
    }

    /// A network namespace of its own on this segment, as another machine
    /// on the LAN: its `eth0` at `address`/24, whose other end `outer` is on
    /// the bridge. What a run killed midway left under those names goes first.
    pub fn plug_in(&self, netns: &str, outer: &str, address: &str) {
        let n = self.network.n;
        let _ = Command::new("ip").args(["netns", "del", netns]).output();
        let _ = Command::new("ip").args(["link", "del", outer]).output();
        run("ip", &["netns", "add", netns]);
        run("ip", &["link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", netns]);
        run("ip", &["link", "set", outer, "master", &format!("skl{n}"), "up"]);
        run("ip", &["-n", netns, "addr", "add", &format!("{address}/24"), "dev", "eth0"]);
        run("ip", &["-n", netns, "link", "set", "eth0", "up"]);
        run("ip", &["-n", netns, "link", "set", "lo", "up"]);
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &format!("skl{}", self.network.n)]).output();
    }
}

impl Host {
    /// Host `i` on the LAN (10.255.<n>.<10+i>, named `h<i>`), keeping its
    /// state in `dir`, with the test image in its image store, its agent
    /// not started yet.
    pub fn plug_in(lan: &Lan, i: usize, dir: PathBuf) -> Host {
        let n = lan.n();
        let netns = format!("sk{n}-h{i}");
        let address = Ipv4Addr::new(10, 255, n, 10 + i as u8);
        lan.plug_in(&netns, &format!("sk{n}h{i}"), &address.to_string());
        // As a real host has one: Service IPs are routed before they are DNATed.
        run("ip", &["-n", &netns, "route", "add", "default", "via", &lan.gateway()]);
        std::fs::create_dir_all(&dir).unwrap();
        let host = Host { name: format!("h{i}"), netns, address, dir, agent_flags: Vec::new(), agent: None };
        import_test_image(&host.dir.join("data"));
        host
    }

    /// Starts the agent, joining the server at `url` with a bootstrap token.
    pub fn start_agent(&mut self, url: &str, token: &str, ca_file: &Path) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("agent.log")).unwrap();
        let d = |sub: &str| self.dir.join(sub).display().to_string();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(env!("CARGO_BIN_EXE_skiff"))
            .args(["agent", "--server", url, "--token", token])
            .args(["--ca-file", &ca_file.display().to_string()])
            .args(["--node-name", &self.name, "--node-ip", &self.address.to_string()])
            .args(["--data-dir", &d("data"), "--agent-run-dir", &d("run"), "--pod-log-dir", &d("pod-logs")])
            .args(super::LENIENT_EVICTION)
            .args(&self.agent_flags)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agent = Some(child);
    }

    pub fn stop_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A command in this host's network namespace; returns its output.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        Command::new("nsenter").arg(format!("--net=/run/netns/{}", self.netns)).arg(program).args(args).stdin(Stdio::null()).output().unwrap()
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// Stops the agent and whatever still runs in the namespace (containers,
    /// shims), then removes the node's leftovers and the namespace.
    pub fn remove(&mut self) {
        self.stop_agent();
        let pids = Command::new("ip").args(["netns", "pids", &self.netns]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).output();
        }
        super::remove_node_leftovers(&self.dir, None);
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
    }
}


/// The test image, put straight into a host's image store: hosts cannot
/// reach the registry on the machine's loopback.
fn import_test_image(data_dir: &std::path::Path) {
    let image = super::test_image();
    let archive = data_dir.with_file_name("busybox.tar");
    run("skopeo", &["copy", "-q", "--src-tls-verify=false", &format!("docker://{image}"), &format!("oci-archive:{}", archive.display())]);
    let out = Command::new(env!("CARGO_BIN_EXE_skiff")).args(["image", "import", &archive.display().to_string(), "--name", &image, "--data-dir", &data_dir.display().to_string()]).output().unwrap();
    assert!(out.status.success(), "importing the test image: {}", String::from_utf8_lossy(&out.stderr));
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // For a look at a failed test's hosts before they go.
        if let Some(seconds) = std::env::var("SKIFF_TEST_PAUSE").ok().and_then(|s| s.parse().ok()) {
            eprintln!("pausing {seconds}s: hosts {:?}, dir {}", self.hosts.iter().map(|h| &h.netns).collect::<Vec<_>>(), self.cluster.dir.path().display());
            std::thread::sleep(Duration::from_secs(seconds));
        }
        for host in &mut self.hosts {
            host.remove();
        }
        self.cluster.stop();
    }
}

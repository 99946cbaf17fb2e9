//! High availability: several servers, each on a host of its own (a network
//! namespace on one LAN), that are one cluster; agents that keep working
//! when the server they joined through dies; embedded etcd across three
//! servers; snapshots of the datastore.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::hosts::{run, wait_for_hosts, Host, Lan};
use common::{kubectl_with, Cluster};

/// A host running `skiff server` (without an agent) at 10.255.<n>.<20+i>:6443.
struct ServerHost {
    netns: String,
    address: String,
    dir: PathBuf,
    flags: Vec<String>,
    child: Option<Child>,
}

impl ServerHost {
    fn new(lan: &Lan, i: usize, dir: &Path, flags: &[&str]) -> ServerHost {
        let n = lan.n();
        let netns = format!("sk{n}-s{i}");
        let address = format!("10.255.{n}.{}", 20 + i);
        lan.plug_in(&netns, &format!("sk{n}s{i}"), &address);
        run("ip", &["-n", &netns, "route", "add", "default", "via", &lan.gateway()]);
        let mut flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        flags.extend(["--cluster-cidr".into(), format!("10.{n}.0.0/16")]);
        ServerHost { netns, address, dir: dir.join(format!("s{i}")), flags, child: None }
    }

    fn command(&self) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(env!("CARGO_BIN_EXE_skiff"))
            .args(["server", "--bind-address", &self.address, "--disable-agent"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .args(&self.flags)
            .stdin(Stdio::null());
        command
    }

    fn start(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let _ = std::fs::remove_file(self.kubeconfig());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("server.log")).unwrap();
        let child = self.command().env("RUST_LOG", "info").stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
        self.child = Some(child);
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("server {} exited ({status}): {}", self.address, self.log());
            }
            if self.kubeconfig().exists() && kubectl_with(&self.kubeconfig(), &["get", "--raw", "/readyz"], None).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server {} did not become ready: {}", self.address, self.log());
    }

    /// kill -9, as a host that dies.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("https://{}:6443", self.address)
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("data/server/tls/ca.crt")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A command in this host's network namespace.
    fn on(&self, program: &str, args: &[&str]) -> Output {
        Command::new("nsenter").arg(format!("--net=/run/netns/{}", self.netns)).arg(program).args(args).stdin(Stdio::null()).output().unwrap()
    }
}

impl Drop for ServerHost {
    fn drop(&mut self) {
        self.kill();
        // The embedded etcd goes with its server; anything left goes now.
        let pids = Command::new("ip").args(["netns", "pids", &self.netns]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).output();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
    }
}

/// etcd on a host of its own (10.255.<n>.5), as an external datastore.
struct EtcdHost {
    netns: String,
    child: Child,
    endpoint: String,
}

impl EtcdHost {
    fn start(lan: &Lan, dir: &Path) -> EtcdHost {
        let n = lan.n();
        let netns = format!("sk{n}-etcd");
        let address = format!("10.255.{n}.5");
        lan.plug_in(&netns, &format!("sk{n}etcd"), &address);
        let endpoint = format!("http://{address}:2379");
        let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args(["etcd", "--data-dir"])
            .arg(dir.join("etcd"))
            .args(["--listen-client-urls", &endpoint, "--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-cluster", "default=http://127.0.0.1:2380", "--max-request-bytes", "2097152"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        EtcdHost { netns, child, endpoint }
    }
}

impl Drop for EtcdHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).output();
    }
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// kubectl with `kubeconfig`'s credentials against the server `server`.
fn kubectl_at(kubeconfig: &Path, server: &ServerHost, args: &[&str]) -> Output {
    let server_flag = format!("--server={}", server.url());
    kubectl_with(kubeconfig, &[&[server_flag.as_str()], args].concat(), None)
}

fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn micro_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text.trim()).ok().map(|t| t.with_timezone(&chrono::Utc))
}

/// Three servers on one external etcd with one token are one cluster: one
/// admin kubeconfig, one ServiceAccount token and one encryption key at
/// rest work on all of them, the
/// `kubernetes` endpoints list the live ones. When the server the agents
/// joined through is killed, their nodes keep heartbeating through another,
/// leadership moves, a Deployment scaled through the second server gets its
/// pods, logs come through the third; the killed server rejoins; a server
/// with the wrong token is refused and writes nothing; one joining through
/// another with the token alone learns the datastore.
#[test]
fn ha_servers_on_one_etcd_are_one_cluster_and_agents_fail_over() {
    let lan = Lan::new();
    let n = lan.n();
    let dir = tempfile::Builder::new().prefix("skiff-ha-").tempdir().unwrap();
    let etcd = EtcdHost::start(&lan, dir.path());
    let flags = ["--datastore-endpoint", &etcd.endpoint, "--token", "ha-cluster-secret", "--secrets-encryption"];
    let mut servers: Vec<ServerHost> = (1..=3).map(|i| ServerHost::new(&lan, i, dir.path(), &flags)).collect();
    servers[0].start();
    servers[0].wait_ready();
    servers[1].start();
    servers[2].start();
    servers[1].wait_ready();
    servers[2].wait_ready();
    let admin = servers[0].kubeconfig();
    let kubectl = |s: &ServerHost, args: &[&str]| ok(kubectl_at(&admin, s, args), &args.join(" "));

    // One CA and one admin identity on every server.
    for s in &servers {
        assert_eq!(kubectl(s, &["get", "ns", "kube-system", "-o", "name"]).trim(), "namespace/kube-system");
        assert_eq!(std::fs::read(s.ca_file()).unwrap(), std::fs::read(servers[0].ca_file()).unwrap(), "one cluster CA");
    }
    // A ServiceAccount token issued through one server is good on the others.
    kubectl(&servers[0], &["create", "serviceaccount", "robot"]);
    let sa_token = kubectl(&servers[0], &["create", "token", "robot"]);
    let token_config = dir.path().join("robot.kubeconfig");
    std::fs::write(&token_config, format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{}\", certificate-authority: {}}}}}]\nusers: [{{name: u, user: {{token: {}}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n", servers[0].url(), servers[0].ca_file().display(), sa_token.trim())).unwrap();
    for s in &servers[1..] {
        let who = ok(kubectl_at(&token_config, s, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]), "whoami");
        assert_eq!(who, "system:serviceaccount:default:robot");
    }
    // The encryption key the first server made is every server's.
    kubectl(&servers[0], &["create", "secret", "generic", "db", "--from-literal=password=hunter2"]);
    assert_eq!(kubectl(&servers[2], &["get", "secret", "db", "-o", "jsonpath={.data.password}"]), "aHVudGVyMg==");
    let raw = Command::new("nsenter").arg(format!("--net=/run/netns/{}", etcd.netns)).args(["etcdctl", "--endpoints", &etcd.endpoint, "get", "/registry/secrets/default/db", "--print-value-only"]).output().unwrap();
    let raw = String::from_utf8_lossy(&raw.stdout);
    assert!(raw.starts_with("k8s:enc:aescbc:v1:aescbckey:") && !raw.contains("hunter2"), "{raw}");
    // The `kubernetes` Service's endpoints: every live server.
    let endpoints = |s: &ServerHost| kubectl(s, &["get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[*].ip}"]);
    let all = format!("10.255.{n}.21 10.255.{n}.22 10.255.{n}.23");
    wait_until("the endpoints to list the three servers", Duration::from_secs(20), || endpoints(&servers[1]) == all);

    // Two agents join through the first server.
    let bootstrap = ok(Command::new(env!("CARGO_BIN_EXE_skiff")).args(["token", "create", "--kubeconfig", &admin.display().to_string()]).output().unwrap(), "token create");
    let mut hosts: Vec<Host> = (1..=2).map(|i| Host::plug_in(&lan, i, dir.path().join(format!("h{i}")))).collect();
    for host in &mut hosts {
        host.start_agent(&servers[0].url(), bootstrap.trim(), &servers[0].ca_file());
    }
    let ready = |s: &ServerHost, node: &str| kubectl_at(&admin, s, &["get", "node", node, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
    wait_for_hosts(&hosts, "both nodes Ready", Duration::from_secs(90), || hosts.iter().all(|h| String::from_utf8_lossy(&ready(&servers[0], &h.name).stdout) == "True"));
    let image = common::test_image();
    kubectl(&servers[0], &["create", "deployment", "web", &format!("--image={image}"), "--replicas=2", "--", "sh", "-c", "echo hello from $(hostname); sleep 3600"]);
    let available = |s: &ServerHost| String::from_utf8_lossy(&kubectl_at(&admin, s, &["get", "deploy", "web", "-o", "jsonpath={.status.availableReplicas}"]).stdout).into_owned();
    wait_for_hosts(&hosts, "the Deployment's two pods", Duration::from_secs(90), || available(&servers[0]) == "2");
    let holder = |s: &ServerHost, lease: &str| kubectl(s, &["get", "lease", "-n", "kube-system", lease, "-o", "jsonpath={.spec.holderIdentity} {.spec.renewTime}"]);

    // The server the agents joined through dies.
    servers[0].kill();
    let killed = chrono::Utc::now();
    let (second, third) = (&servers[1], &servers[2]);
    // The nodes heartbeat through another server: their Leases renew.
    for host in &hosts {
        let renewed = || micro_time(&kubectl(second, &["get", "lease", "-n", "kube-node-lease", &host.name, "-o", "jsonpath={.spec.renewTime}"])).is_some_and(|t| t > killed);
        wait_for_hosts(&hosts, "the node's Lease to be renewed through another server", Duration::from_secs(30), renewed);
    }
    // The scheduler's and controller manager's leases are held by a live server.
    for lease in ["kube-scheduler", "kube-controller-manager"] {
        let live = || holder(second, lease).split_once(' ').and_then(|(_, t)| micro_time(t)).is_some_and(|t| t > killed + chrono::Duration::seconds(1));
        wait_until(&format!("{lease}'s lease held by a live server"), Duration::from_secs(40), live);
    }
    // The dead server drops out of the endpoints.
    let live_two = format!("10.255.{n}.22 10.255.{n}.23");
    wait_until("the endpoints to drop the dead server", Duration::from_secs(30), || endpoints(third) == live_two);
    // Scaled through the second server, the Deployment gets its pods.
    kubectl(second, &["scale", "deployment", "web", "--replicas=4"]);
    wait_for_hosts(&hosts, "four pods after the scale", Duration::from_secs(90), || available(second) == "4");
    // Logs come through the third server, from a node that joined through the dead one.
    let pod = kubectl(third, &["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"]);
    let logs = kubectl(third, &["logs", &pod]);
    assert!(logs.contains("hello from"), "{logs}");
    for host in &hosts {
        assert_eq!(String::from_utf8_lossy(&ready(third, &host.name).stdout), "True", "{} stays Ready", host.name);
    }

    // The killed server restarts and rejoins.
    servers[0].start();
    servers[0].wait_ready();
    wait_until("the endpoints to list the restarted server", Duration::from_secs(20), || endpoints(&servers[2]) == all);

    // A server with the wrong token is refused, and writes nothing.
    let bad = ServerHost::new(&lan, 4, dir.path(), &["--datastore-endpoint", &etcd.endpoint, "--token", "not-the-token"]);
    let out = bad.command().output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("the token does not match"), "{stderr}");
    assert!(!bad.dir.join("data/server/tls").exists(), "nothing written by a refused server");
    assert_eq!(endpoints(&servers[1]), all);

    // A server joins through another, with the full token alone: it learns
    // the datastore from it, and later restarts without it.
    let token = std::fs::read_to_string(servers[0].dir.join("data/server/token")).unwrap();
    let mut fourth = ServerHost::new(&lan, 5, dir.path(), &["--server", &servers[1].url(), "--token", token.trim()]);
    fourth.start();
    fourth.wait_ready();
    assert_eq!(kubectl(&fourth, &["get", "secret", "db", "-o", "jsonpath={.data.password}"]), "aHVudGVyMg==");
    fourth.kill();
    servers[1].kill();
    fourth.start();
    fourth.wait_ready();
    assert_eq!(kubectl(&fourth, &["get", "serviceaccount", "robot", "-o", "name"]).trim(), "serviceaccount/robot");

    for host in &mut hosts {
        host.remove();
    }
}

/// `--cluster-init` runs etcd inside the server; two more servers join it
/// with `--server` and the full token, each adding its etcd member. The
/// cluster keeps serving reads and writes when one of the three dies; the
/// dead one rejoins from its own data; deleting a server's Node removes
/// its member; a joining server with the wrong token is refused.
#[test]
fn ha_embedded_etcd_three_servers_survive_the_loss_of_one() {
    let lan = Lan::new();
    let dir = tempfile::Builder::new().prefix("skiff-ha-etcd-").tempdir().unwrap();
    let mut servers = vec![ServerHost::new(&lan, 1, dir.path(), &["--cluster-init", "--token", "embedded-secret"])];
    servers[0].start();
    servers[0].wait_ready();
    let token = std::fs::read_to_string(servers[0].dir.join("data/server/token")).unwrap();
    assert!(token.starts_with("K10") && token.trim().ends_with("::server:embedded-secret"), "{token}");
    for i in 2..=3 {
        let mut joining = ServerHost::new(&lan, i, dir.path(), &["--server", &servers[0].url(), "--token", token.trim()]);
        joining.start();
        joining.wait_ready();
        servers.push(joining);
    }
    let admin = servers[0].kubeconfig();
    let kubectl = |s: &ServerHost, args: &[&str]| ok(kubectl_at(&admin, s, args), &args.join(" "));
    let members = |s: &ServerHost| ok(s.on("etcdctl", &["--endpoints", "http://127.0.0.1:2379", "member", "list"]), "etcdctl member list");
    let listed = members(&servers[0]);
    assert_eq!(listed.lines().filter(|l| l.contains(", started, ")).count(), 3, "{listed}");
    assert!(listed.contains("https://"), "peers talk TLS: {listed}");

    kubectl(&servers[0], &["create", "configmap", "one", "--from-literal=k=v1"]);
    assert_eq!(kubectl(&servers[2], &["get", "configmap", "one", "-o", "jsonpath={.data.k}"]), "v1");

    // One of three dies (its etcd member with it): the other two keep a quorum.
    servers[2].kill();
    kubectl(&servers[0], &["create", "configmap", "two", "--from-literal=k=v2"]);
    assert_eq!(kubectl(&servers[1], &["get", "configmap", "two", "-o", "jsonpath={.data.k}"]), "v2");
    // It comes back from its own data and catches up.
    servers[2].start();
    servers[2].wait_ready();
    assert_eq!(kubectl(&servers[2], &["get", "configmap", "two", "-o", "jsonpath={.data.k}"]), "v2");

    // A snapshot of the embedded etcd, kept and listed.
    let data = servers[0].dir.join("data").display().to_string();
    let saved = ok(servers[0].on(env!("CARGO_BIN_EXE_skiff"), &["etcd-snapshot", "save", "--data-dir", &data]), "etcd-snapshot save");
    assert!(saved.contains("saved"), "{saved}");
    let listed = ok(servers[0].on(env!("CARGO_BIN_EXE_skiff"), &["etcd-snapshot", "ls", "--data-dir", &data]), "etcd-snapshot ls");
    assert!(listed.lines().nth(1).is_some_and(|l| l.starts_with("on-demand-")), "{listed}");

    // A server leaves for good when its Node is deleted: its member goes.
    servers[2].kill();
    let node = format!(r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"s3"}},"status":{{"addresses":[{{"type":"InternalIP","address":"{}"}}]}}}}"#, servers[2].address);
    ok(kubectl_with(&admin, &["create", "-f", "-"], Some(&node)), "creating s3's Node");
    kubectl(&servers[0], &["delete", "node", "s3"]);
    wait_until("the deleted server's member to be removed", Duration::from_secs(20), || members(&servers[0]).lines().count() == 2);
    kubectl(&servers[1], &["create", "configmap", "three"]);

    // Joining with the wrong secret is refused before anything is written.
    let hash = token.trim().split("::").next().unwrap();
    let bad = ServerHost::new(&lan, 4, dir.path(), &["--server", &servers[0].url(), "--token", &format!("{hash}::server:wrong")]);
    let out = bad.command().output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("refused the token"), "{stderr}");
    assert!(!bad.dir.join("data/server").exists(), "nothing written by a refused server");
}

/// With SQLite, `skiff etcd-snapshot save` copies the database while the
/// server runs; `restore` puts it back for a stopped server.
#[test]
fn etcd_snapshot_saves_and_restores_the_sqlite_datastore() {
    let mut c = Cluster::start();
    c.ok(&["create", "configmap", "kept", "--from-literal=k=before"]);
    let data = c.dir.path().join("data").display().to_string();
    let saved = c.skiff(&["etcd-snapshot", "save", "--data-dir", &data, "--name", "backup"]);
    let name = saved.split_whitespace().nth(1).unwrap().to_string();
    assert!(name.starts_with("backup-"), "{saved}");
    c.ok(&["delete", "configmap", "kept"]);
    c.ok(&["create", "configmap", "later"]);
    c.stop();
    let restored = c.skiff(&["etcd-snapshot", "restore", "--data-dir", &data, &name]);
    assert!(restored.contains("Restored"), "{restored}");
    c.boot();
    assert_eq!(c.ok(&["get", "configmap", "kept", "-o", "jsonpath={.data.k}"]), "before");
    assert!(c.fails(&["get", "configmap", "later"], None).contains("not found"));
}

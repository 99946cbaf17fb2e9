//! `skiff bench failover`: three servers on embedded etcd and one agent,
//! each on a host of its own (network namespaces on one bridge). Each round
//! kills (-9) the server the agent is using and measures how long until the
//! agent's next heartbeat (its node Lease renewed through another server),
//! how much later that heartbeat came than its schedule, and how long the
//! scheduler's and controller manager's leadership took to move when the
//! dead server held it. A writer creates ConfigMaps through all three
//! servers throughout; every write acknowledged must be there at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};

use super::lan::{Host, Lan};

#[derive(clap::Args)]
pub struct Args {
    /// Servers killed one after another (each restarted before the next).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

const LAN: Lan = Lan { bridge: "skbha", prefix: "10.254.200", netns_prefix: "skiff-bench-ha-" };
const NODE: &str = "bench-ha-h1";
const LEASES: [&str; 2] = ["kube-scheduler", "kube-controller-manager"];

struct Server {
    host: Host,
    args: Vec<String>,
}

impl Server {
    fn url(&self) -> String {
        format!("https://{}:6443", self.host.address)
    }

    fn kubeconfig(&self) -> PathBuf {
        self.host.dir.join("kubeconfig.yaml")
    }

    async fn start(&mut self) -> Result<()> {
        let _ = std::fs::remove_file(self.kubeconfig());
        self.host.spawn(&self.args)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.host.log().contains("skiff server ready") {
            if let Some(Ok(Some(status))) = self.host.child.as_mut().map(Child::try_wait) {
                bail!("server {} exited ({status}): {}", self.host.address, self.host.log());
            }
            if Instant::now() > deadline {
                bail!("server {} did not start: {}", self.host.address, self.host.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// The identity this server last took `lease` with.
    fn leader_identity(&self, lease: &str) -> Option<String> {
        let log = self.host.log();
        let line = log.lines().rev().find(|l| l.contains("leading: started") && l.contains(&format!("lease=\"{lease}\"")))?;
        Some(line.split("identity=").nth(1)?.split_whitespace().next()?.to_string())
    }
}

/// A client of the server at `url` with the admin credentials.
async fn client_at(kubeconfig: &Path, url: &str) -> Result<kube::Client> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let mut config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await?;
    config.cluster_url = url.parse()?;
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(5));
    Ok(kube::Client::try_from(config)?)
}

struct Round {
    heartbeat: Duration,
    late: Duration,
    scheduler: Option<Duration>,
    controller_manager: Option<Duration>,
}

pub async fn run(args: Args) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("skiff-bench-ha-").tempdir()?;
    let _bridge = LAN.up()?;

    let mut servers: Vec<Server> = Vec::new();
    for i in 1..=3u8 {
        let host = LAN.plug_in(&format!("s{i}"), 20 + i, dir.path())?;
        let mut flags: Vec<String> = ["server", "--disable-agent", "--flannel-backend", "none", "--disable-kube-proxy", "--https-listen-port", "6443"].map(String::from).to_vec();
        flags.extend(["--bind-address".into(), host.address.clone(), "--data-dir".into(), host.dir.join("data").display().to_string()]);
        flags.extend(["--write-kubeconfig".into(), host.dir.join("kubeconfig.yaml").display().to_string()]);
        match servers.first() {
            None => flags.extend(["--cluster-init".into(), "--token".into(), "bench-failover".into()]),
            Some(first) => {
                let token = std::fs::read_to_string(first.host.dir.join("data/server/token"))?;
                flags.extend(["--server".into(), first.url(), "--token".into(), token.trim().to_string()]);
            }
        }
        let mut server = Server { host, args: flags };
        server.start().await?;
        eprintln!("server s{i} up at {}", server.url());
        servers.push(server);
    }
    let admin = servers[0].kubeconfig();
    let mut clients = Vec::new();
    for server in &servers {
        clients.push(client_at(&admin, &server.url()).await?);
    }

    // The agent joins through the first server.
    let mut agent = LAN.plug_in("h1", 11, dir.path())?;
    let bootstrap = Command::new(std::env::current_exe()?).args(["token", "create", "--kubeconfig", &admin.display().to_string()]).output()?;
    anyhow::ensure!(bootstrap.status.success(), "token create: {}", String::from_utf8_lossy(&bootstrap.stderr));
    let d = |sub: &str| agent.dir.join(sub).display().to_string();
    let agent_args: Vec<String> = [
        "agent", "--server", &servers[0].url(), "--token", String::from_utf8(bootstrap.stdout)?.trim(),
        "--ca-file", &servers[0].host.dir.join("data/server/tls/ca.crt").display().to_string(),
        "--node-name", NODE, "--node-ip", &agent.address,
        "--data-dir", &d("data"), "--agent-run-dir", &d("run"), "--pod-log-dir", &d("pods"),
    ]
    .map(String::from)
    .to_vec();
    agent.spawn(&agent_args)?;
    let node_leases: Vec<Api<Lease>> = clients.iter().map(|c| Api::namespaced(c.clone(), "kube-node-lease")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while node_leases[0].get_opt(NODE).await.ok().flatten().is_none() {
        anyhow::ensure!(Instant::now() < deadline, "the agent did not join: {}", agent.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("agent joined through {}", servers[0].url());

    // Writes through every server in turn, for the whole run.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (clients, acknowledged, stop) = (clients.clone(), acknowledged.clone(), stop.clone());
        tokio::spawn(async move {
            let mut attempts = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("failover-{attempts:06}");
                let api: Api<ConfigMap> = Api::namespaced(clients[attempts % clients.len()].clone(), "default");
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": {"bench": "failover"}}})).expect("a ConfigMap");
                if api.create(&PostParams::default(), &cm).await.is_ok() {
                    acknowledged.lock().expect("not poisoned").push(name);
                }
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            attempts
        })
    };

    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let kept: Vec<std::net::SocketAddr> = serde_json::from_slice(&std::fs::read(agent.dir.join("data/agent/servers.json")).unwrap_or_default()).unwrap_or_default();
        let in_use = kept.first().map(|a| a.ip().to_string()).unwrap_or_else(|| servers[0].host.address.clone());
        let victim = servers.iter().position(|s| s.host.address == in_use).context("the agent's server is not one of ours")?;
        let survivor = (victim + 1) % servers.len();
        let leases: Api<Lease> = Api::namespaced(clients[survivor].clone(), "kube-system");
        // Whether the server about to die leads: the lease's holder is the identity it last took it with.
        let mut led = [false; 2];
        for (i, name) in LEASES.iter().enumerate() {
            let holder = leases.get(name).await?.spec.and_then(|s| s.holder_identity);
            led[i] = holder.is_some() && holder == servers[victim].leader_identity(name);
        }
        let last_renew = renew_time(&node_leases[survivor]).await?;
        servers[victim].host.kill();
        let killed = chrono::Utc::now();
        let started = Instant::now();
        let (mut heartbeat, mut moved) = (None, [None, None]);
        while heartbeat.is_none() || moved.iter().zip(&led).any(|(m, led)| *led && m.is_none()) {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(90), "no failover within 90 s: {}", agent.log());
            if heartbeat.is_none() {
                if let Ok(renew) = renew_time(&node_leases[survivor]).await {
                    if renew > killed {
                        heartbeat = Some(renew);
                    }
                }
            }
            for (i, name) in LEASES.iter().enumerate() {
                if led[i] && moved[i].is_none() {
                    if let Ok(lease) = leases.get(name).await {
                        if lease.spec.and_then(|s| s.holder_identity) != servers[victim].leader_identity(name) {
                            moved[i] = Some(started.elapsed());
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let heartbeat = heartbeat.expect("waited for");
        let after = (heartbeat - killed).to_std().unwrap_or_default();
        // Renewals are due every 10 s: what the failover added to the wait.
        let late = ((heartbeat - last_renew).to_std().unwrap_or_default()).saturating_sub(Duration::from_secs(10));
        eprintln!(
            "round {round}: killed {} (the agent's server{}); heartbeat through another after {:.2} s ({:.2} s later than due); leadership moved: scheduler {}, controller manager {}",
            servers[victim].host.address,
            if led.iter().any(|l| *l) { ", a leader" } else { "" },
            after.as_secs_f64(),
            late.as_secs_f64(),
            show(moved[0]),
            show(moved[1]),
        );
        rounds.push(Round { heartbeat: after, late, scheduler: moved[0], controller_manager: moved[1] });
        servers[victim].start().await?;
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let attempts = writer.await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(clients[0].clone(), "default");
    let stored: std::collections::HashSet<String> = configmaps.list(&ListParams::default().labels("bench=failover")).await?.items.into_iter().filter_map(|c| c.metadata.name).collect();
    let acknowledged = acknowledged.lock().expect("not poisoned").clone();
    let lost: Vec<&String> = acknowledged.iter().filter(|n| !stored.contains(*n)).collect();

    println!("\nfailover: 3 servers on embedded etcd, 1 agent, {} rounds", rounds.len());
    println!("{:<8} {:>14} {:>14} {:>16} {:>22}", "round", "heartbeat s", "late by s", "scheduler s", "controller-manager s");
    for (i, r) in rounds.iter().enumerate() {
        println!("{:<8} {:>14.2} {:>14.2} {:>16} {:>22}", i + 1, r.heartbeat.as_secs_f64(), r.late.as_secs_f64(), show(r.scheduler), show(r.controller_manager));
    }
    println!("writes: {attempts} tried, {} acknowledged, {} acknowledged and lost", acknowledged.len(), lost.len());
    anyhow::ensure!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    Ok(())
}

fn show(moved: Option<Duration>) -> String {
    moved.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

async fn renew_time(leases: &Api<Lease>) -> Result<chrono::DateTime<chrono::Utc>> {
    let lease = leases.get(NODE).await?;
    lease.spec.and_then(|s| s.renew_time).map(|t| t.0).context("the node's Lease has no renewTime")
}

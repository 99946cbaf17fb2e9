//! Benchmarks: each prints its figures as it goes and a table at the end.

mod api;
mod appsafe;
mod authz;
mod deployment;
mod dns;
mod failover;
mod images;
mod lan;
mod monitoring;
mod netpol;
mod network;
mod pods;
mod proxy;
mod scheduler;
mod store;
mod volumes;

use std::time::Duration;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Bench {
    /// The storage backends side by side: SQLite, etcd, and raw etcd.
    Store(store::Args),
    /// The API server over HTTPS, as clients see it.
    Api(api::Args),
    /// Requests/s under RBAC with many roles and bindings, against AlwaysAllow.
    Authz(authz::Args),
    /// The scheduler on simulated nodes, end to end through the API.
    Scheduler(scheduler::Args),
    /// A large Deployment becoming Ready on simulated nodes.
    Deployment(deployment::Args),
    /// Real pods on the node agent: startup latency beside bare runc.
    Pods(pods::Args),
    /// The service proxy: API write to kernel, and first-packet latency, as Services grow.
    Proxy(proxy::Args),
    /// Cluster DNS: queries/s with dnsperf and memory at 10,000 Services.
    Dns(dns::Args),
    /// Pod-to-pod TCP throughput across two hosts, per backend, beside host to host.
    Network(network::Args),
    /// Pods with new claims created at once: claim-to-Bound and pod start through CSI.
    Volumes(volumes::Args),
    /// Killing the server an agent uses: heartbeat and leadership failover, writes lost.
    Failover(failover::Args),
    /// A pod on a second host whose image is on the first only: from that host against from a registry.
    Images(images::Args),
    /// NetworkPolicy: a policy write to enforcement in the kernel, with 1,000 policies over 1,000 pods.
    Netpol(netpol::Args),
    /// AppSafe: requests per second to a group in Protect against Discover, and the flow observer's pace.
    Appsafe(appsafe::Args),
    /// What a Prometheus scraping the server costs it, at 1,000 and 10,000 pods; the cluster-state page's size and time.
    Monitoring(monitoring::Args),
}

impl Bench {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Bench::Store(args) => store::run(args).await,
            Bench::Api(args) => api::run(args).await,
            Bench::Authz(args) => authz::run(args).await,
            Bench::Scheduler(args) => scheduler::run(args).await,
            Bench::Deployment(args) => deployment::run(args).await,
            Bench::Pods(args) => pods::run(args).await,
            Bench::Proxy(args) => proxy::run(args).await,
            Bench::Dns(args) => dns::run(args).await,
            Bench::Network(args) => network::run(args).await,
            Bench::Volumes(args) => volumes::run(args).await,
            Bench::Failover(args) => failover::run(args).await,
            Bench::Images(args) => images::run(args).await,
            Bench::Netpol(args) => netpol::run(args).await,
            Bench::Appsafe(args) => appsafe::run(args).await,
            Bench::Monitoring(args) => monitoring::run(args).await,
        }
    }
}

/// Runs `skiff <args>` (the benchmark again, told it is inside) in a
/// network namespace of its own, made here and removed after, so that the
/// host's own rules stay untouched.
pub fn inside_netns(netns: &str, args: &[String]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::process::Command;
    let _ = Command::new("ip").args(["netns", "del", netns]).output();
    let made = Command::new("ip").args(["netns", "add", netns]).output().context("running ip (iproute2)")?;
    anyhow::ensure!(made.status.success(), "ip netns add: {} (run as root)", String::from_utf8_lossy(&made.stderr));
    let status = Command::new("nsenter").arg(format!("--net=/run/netns/{netns}")).arg(std::env::current_exe()?).args(args).status();
    let _ = Command::new("ip").args(["netns", "del", netns]).output();
    anyhow::ensure!(status?.success(), "the benchmark failed");
    Ok(())
}

/// Percentile of a sample, which it sorts.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// A watch of `api`'s objects with these labels, once it is established:
/// what is made after it returns, it sees.
pub async fn watch_labelled<K>(api: &kube::Api<K>, labels: &str) -> anyhow::Result<Events<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    use futures::{StreamExt, TryStreamExt};
    use kube::runtime::watcher;
    let mut events = watcher(api.clone(), watcher::Config::default().labels(labels)).boxed();
    while let Some(event) = events.try_next().await? {
        if matches!(event, watcher::Event::InitDone) {
            break;
        }
    }
    Ok(events)
}

pub type Events<K> = futures::stream::BoxStream<'static, Result<kube::runtime::watcher::Event<K>, kube::runtime::watcher::Error>>;

pub fn running(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A process's resident memory (`pid`, or `self`), from /proc.
fn rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time a process (`pid`, or `self`) has used, user and system, from
/// /proc: what a figure costs, steadier than a rate on a busy machine.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks: f64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<f64>().ok()).sum();
    // /proc counts in USER_HZ, which is 100 on every architecture Skiff runs on.
    ticks / 100.0
}

/// This process's resident memory.
fn self_rss_mib() -> f64 {
    rss_mib("self")
}

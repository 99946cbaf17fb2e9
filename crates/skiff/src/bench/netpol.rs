//! `skiff bench netpol`: how long a NetworkPolicy write takes to be
//! enforced in the kernel, with 1,000 policies over 1,000 pods present.
//!
//! In a network namespace of its own (made here, removed after): a real
//! API server, the node's policy enforcer in this process, and `nft
//! monitor` reporting what the kernel commits, so "enforced" is the
//! kernel's word: the new policy's pod is in the table's isolated set.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{ms, percentile};

#[derive(clap::Args)]
pub struct Args {
    /// Pods present, each with an address.
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Policies present, each selecting one pod and letting another in.
    #[arg(long, default_value_t = 1000)]
    policies: usize,
    /// Policy writes measured.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    #[arg(long, hide = true)]
    inside: bool,
}

const NETNS: &str = "skiff-bench-netpol";

pub async fn run(args: Args) -> Result<()> {
    if args.inside {
        return inside(args).await;
    }
    let inner = ["bench", "netpol", "--inside", "--pods", &args.pods.to_string(), "--policies", &args.policies.to_string(), "--changes", &args.changes.to_string()];
    super::inside_netns(NETNS, &inner.map(String::from))
}

/// `make(i)` for each `i`, 32 at a time; the first error, if any.
async fn concurrently<F, Fut>(items: std::ops::Range<usize>, make: F) -> Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    futures::stream::iter(items).map(make).buffer_unordered(32).collect::<Vec<_>>().await.into_iter().collect()
}

/// The address of pod `i` (pods need not run: the enforcer reads status).
fn ip_of(i: usize) -> String {
    format!("10.42.{}.{}", i / 250, i % 250 + 1)
}

/// `nft monitor`, stopped when dropped (also when the benchmark fails).
struct Monitor(std::process::Child);

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines `nft monitor` printed, with when they were read.
type Seen = Arc<Mutex<Vec<(Instant, String)>>>;

async fn seen_at(seen: &Seen, wanted: impl Fn(&str) -> bool, limit: Duration) -> Result<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        {
            // Lines looked at are dropped: each is read once.
            let mut lines = seen.lock().unwrap();
            let found = lines.iter().find(|(_, l)| wanted(l)).map(|(at, _)| *at);
            lines.clear();
            if let Some(at) = found {
                return Ok(at);
            }
        }
        if Instant::now() > deadline {
            bail!("the kernel never showed the policy");
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

async fn inside(args: Args) -> Result<()> {
    let status = Command::new("ip").args(["link", "set", "lo", "up"]).status()?;
    anyhow::ensure!(status.success(), "ip link set lo up");
    let (server, client, _) = super::api::start_server(&["--disable-scheduler", "--disable-controller-manager", "--disable", "coredns", "--flannel-backend", "none", "--advertise-address", "10.99.0.1"]).await?;
    let mut monitor = Monitor(Command::new("stdbuf").args(["-oL", "nft", "monitor", "ruleset"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().context("running nft monitor")?);
    let seen: Seen = Arc::default();
    let lines = BufReader::new(monitor.0.stdout.take().context("nft monitor's output")?);
    let s = seen.clone();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            s.lock().unwrap().push((Instant::now(), line));
        }
    });

    // Pods with addresses, in ten namespaces.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    for n in 0..10 {
        namespaces.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": format!("ns{n}")}}))?).await?;
        // No controller manager here to make it.
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), &format!("ns{n}"));
        accounts.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "default"}}))?).await?;
    }
    let started = Instant::now();
    let total = args.pods + args.changes;
    concurrently(0..total, |i| {
        let client = client.clone();
        async move {
            let ns = format!("ns{}", i % 10);
            let pods: Api<Pod> = Api::namespaced(client, &ns);
            let pod: Pod = serde_json::from_value(json!({"metadata": {"name": format!("p{i}"), "labels": {"app": format!("app{i}")}}, "spec": {"containers": [{"name": "c", "image": "none"}]}}))?;
            pods.create(&PostParams::default(), &pod).await?;
            let status = json!({"status": {"phase": "Running", "podIP": ip_of(i), "podIPs": [{"ip": ip_of(i)}]}});
            pods.patch_status(&format!("p{i}"), &PatchParams::default(), &Patch::Merge(status)).await?;
            Ok(())
        }
    })
    .await?;
    eprintln!("{total} pods in {:.1} s", started.elapsed().as_secs_f64());
    let policy = |i: usize, selects: usize| -> Result<NetworkPolicy> {
        // A peer in the same namespace (pods go round the ten).
        let peer = (selects + 10) % args.pods.max(1);
        Ok(serde_json::from_value(json!({
            "metadata": {"name": format!("np{i}")},
            "spec": {
                "podSelector": {"matchLabels": {"app": format!("app{selects}")}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": format!("app{peer}")}}}], "ports": [{"port": 80}]}],
            },
        }))?)
    };
    let started = Instant::now();
    concurrently(0..args.policies, |i| {
        let client = client.clone();
        async move {
            let selects = i % args.pods.max(1);
            let policies: Api<NetworkPolicy> = Api::namespaced(client, &format!("ns{}", selects % 10));
            policies.create(&PostParams::default(), &policy(i, selects)?).await?;
            Ok(())
        }
    })
    .await?;

    let enforcer = Arc::new(skiff_net::policy::Enforcer::default());
    let e = enforcer.clone();
    let c = client.clone();
    tokio::spawn(async move {
        if let Err(err) = e.run(c).await {
            eprintln!("the enforcer stopped: {err:#}");
        }
    });
    // Every present policy in the kernel, then quiet for two seconds.
    let last = ip_of((args.policies.max(1) - 1) % args.pods.max(1));
    seen_at(&seen, |l| l.contains("ingress-isolated") && l.contains(&last), Duration::from_secs(300)).await?;
    loop {
        let quiet = seen.lock().unwrap().last().is_none_or(|(at, _)| at.elapsed() > Duration::from_secs(2));
        if quiet {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{} policies over {} pods in the kernel, {:.1} s after they were written", args.policies, args.pods, started.elapsed().as_secs_f64());

    let mut samples = Vec::new();
    for k in 0..args.changes {
        seen.lock().unwrap().clear();
        // A pod no policy selected yet.
        let selects = args.pods + k;
        let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &format!("ns{}", selects % 10));
        let ip = ip_of(selects);
        let began = Instant::now();
        policies.create(&PostParams::default(), &policy(args.policies + k, selects)?).await?;
        let at = seen_at(&seen, |l| l.contains("ingress-isolated") && l.contains(&ip), Duration::from_secs(30)).await?;
        samples.push(at - began);
    }
    let table = Command::new("nft").args(["list", "table", "inet", skiff_net::policy::model::TABLE]).output()?;
    let text = String::from_utf8_lossy(&table.stdout);
    let rules = text.lines().filter(|l| l.contains(" accept") || l.contains(" return") || l.contains(" drop")).count();
    let sets = text.lines().filter(|l| l.trim_start().starts_with("set ")).count();
    println!("\n| policies | pods | policy write → enforced p50 / p99 | rules in the table | sets |");
    println!("|---|---|---|---|---|");
    println!("| {} | {} | {} / {} | {rules} | {sets} |", args.policies + args.changes, total, ms(percentile(&mut samples.clone(), 50.0)), ms(percentile(&mut samples, 99.0)));
    drop(server);
    Ok(())
}

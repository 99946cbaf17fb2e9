//! `skiff bench monitoring`: what being monitored costs the server. For
//! each size, a `skiff server` (API server, store, scheduler, controllers;
//! no agent) with simulated nodes running Deployments of that many pods:
//! its RSS and CPU over a window unscraped, then over the same window with
//! Debian's Prometheus scraping, every `--scrape-interval`, all that `skiff
//! monitoring config` points it at which the server answers itself (its
//! `/metrics` as the apiserver, scheduler and controller-manager jobs,
//! `/metrics/cluster-state`, and the HTTP service discovery of nodes and
//! pods). The kubelet, kube-proxy and CoreDNS jobs are left out: simulated
//! nodes have no agent to answer them. Then the cluster-state page's size
//! and time to serve, as Prometheus and as a client see it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{json, Value};

use super::api::{namespace, start_server, ServerProcess};

#[derive(clap::Args)]
pub struct Args {
    /// Cluster sizes, in pods (a fresh server for each).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pods: Vec<usize>,
    /// How long CPU and memory are watched, each way.
    #[arg(long, default_value_t = 60)]
    window: u64,
    #[arg(long, default_value = "15s")]
    scrape_interval: String,
}

/// Pods per Deployment.
const REPLICAS: usize = 50;

pub async fn run(args: Args) -> Result<()> {
    let version = Command::new("prometheus").arg("--version").output().context("prometheus is not installed (scripts/deps.sh installs it)")?;
    anyhow::ensure!(version.status.success(), "prometheus --version failed");
    for &pods in &args.pods {
        // Each size's figures as soon as they are known.
        println!("\n| metric | value |\n|---|---|");
        for (metric, value) in one_size(&args, pods).await? {
            println!("| {metric} | {value} |");
        }
    }
    Ok(())
}

/// A request, again while the server answers 429 (as client-go retries;
/// kube's client does not): the controllers and simulated nodes keep its
/// write slots busy while the pods are made.
async fn patient<T, F, Fut>(request: F) -> kube::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = kube::Result<T>>,
{
    loop {
        match request().await {
            Err(kube::Error::Api(e)) if e.code == 429 => tokio::time::sleep(Duration::from_millis(200)).await,
            other => return other,
        }
    }
}

/// The server's mean CPU (cores) and its RSS at the end, over the window.
async fn watch(server: &ServerProcess, window: u64) -> (f64, f64) {
    let cpu = server.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(window)).await;
    ((server.cpu_seconds() - cpu) / window as f64, server.rss_mib())
}

async fn one_size(args: &Args, pods: usize) -> Result<Vec<(String, String)>> {
    println!("{pods} pods:");
    let (server, client, _) = start_server(&[]).await?;
    // 100 pods a node (110 fit), as a full cluster would be.
    let nodes = pods.div_ceil(100).max(1);
    let _sim = skiff_sim::Sim::start(client.clone(), skiff_sim::Options { nodes, ..Default::default() }).await?;
    namespace(&client, "bench").await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "bench");
    let (create, list) = (PostParams::default(), ListParams::default());
    let count = pods.div_ceil(REPLICAS);
    for i in 0..count {
        let replicas = REPLICAS.min(pods - i * REPLICAS);
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": format!("web-{i}")},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": format!("web-{i}")}},
                "template": {
                    "metadata": {"labels": {"app": format!("web-{i}")}},
                    "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}}]},
                },
            },
        }))?;
        patient(|| deployments.create(&create, &deployment)).await?;
    }
    let started = Instant::now();
    loop {
        let ready: i32 = patient(|| deployments.list(&list)).await?.items.iter().filter_map(|d| d.status.as_ref()?.ready_replicas).sum();
        if ready as usize >= pods {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("only {ready} of {pods} pods Ready after 15 minutes");
        }
        println!("  … {ready} of {pods} pods Ready");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    // The burst of creating them settles first.
    tokio::time::sleep(Duration::from_secs(15)).await;
    println!("  watching the server unscraped for {} s…", args.window);
    let (idle_cpu, idle_rss) = watch(&server, args.window).await;

    let dir = server.dir().join("monitoring");
    let configured = Command::new(std::env::current_exe()?)
        .args(["monitoring", "config", "--kubeconfig"])
        .arg(server.dir().join("kubeconfig.yaml"))
        .arg("--dir")
        .arg(&dir)
        .args(["--scrape-interval", &args.scrape_interval])
        .output()?;
    anyhow::ensure!(configured.status.success(), "skiff monitoring config: {}", String::from_utf8_lossy(&configured.stderr));
    // Only what the server answers: simulated nodes have no agent.
    let path = dir.join("prometheus.yml");
    let mut config: Value = serde_yaml::from_str(&std::fs::read_to_string(&path)?)?;
    let jobs = config["scrape_configs"].as_array_mut().context("prometheus.yml has no scrape_configs")?;
    jobs.retain(|j| !["kubelet", "kubelet-cadvisor", "kubelet-resource", "kube-proxy", "coredns"].contains(&j["job_name"].as_str().unwrap_or_default()));
    std::fs::write(&path, serde_yaml::to_string(&config)?)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let measured = scraped(args, &server, &client, port).await;
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let (cpu, rss, scrape_seconds, samples, page_bytes, page_ms) = measured?;
    Ok(vec![
        (format!("{pods} pods on {nodes} simulated nodes: server CPU, unscraped → scraped every {}", args.scrape_interval), format!("{:.1} % → {:.1} % of a core", idle_cpu * 100.0, cpu * 100.0)),
        (format!("{pods} pods: server RSS, unscraped → scraped"), format!("{idle_rss:.0} MiB → {rss:.0} MiB")),
        (format!("{pods} pods: /metrics/cluster-state, as Prometheus scrapes it (scrape_duration_seconds, samples)"), format!("{:.0} ms, {samples} samples", scrape_seconds * 1000.0)),
        (format!("{pods} pods: /metrics/cluster-state served to a client (median of 5, size)"), format!("{page_ms:.0} ms, {:.1} MiB", page_bytes as f64 / (1024.0 * 1024.0))),
    ])
}

/// With Prometheus running: the server's CPU and RSS over the window once
/// every target is up; the cluster-state job's last scrape; the page's
/// size and median time to a client.
async fn scraped(args: &Args, server: &ServerProcess, client: &kube::Client, port: u16) -> Result<(f64, f64, f64, u64, usize, f64)> {
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let get = |url: String| async move {
        let out = tokio::process::Command::new("curl").args(["-sf", &url]).output().await.ok()?;
        serde_json::from_slice::<Value>(&out.stdout).ok()
    };
    let started = Instant::now();
    loop {
        let targets = get(format!("{api}/targets?state=active")).await.unwrap_or_default();
        let active = targets["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
        if active.len() >= 4 && active.iter().all(|t| t["health"] == "up") {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("Prometheus's targets never all came up: {active:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("  watching the server scraped for {} s…", args.window);
    let (cpu, rss) = watch(server, args.window).await;
    let value = |body: Option<Value>| body.and_then(|b| b["data"]["result"][0]["value"][1].as_str()?.parse::<f64>().ok()).unwrap_or(f64::NAN);
    let scrape = value(get(format!("{api}/query?query=scrape_duration_seconds%7Bjob%3D%22kube-state-metrics%22%7D")).await);
    let samples = value(get(format!("{api}/query?query=scrape_samples_scraped%7Bjob%3D%22kube-state-metrics%22%7D")).await) as u64;
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..5 {
        let request = http::Request::get("/metrics/cluster-state").body(Vec::new())?;
        let started = Instant::now();
        bytes = client.request_text(request).await?.len();
        times.push(started.elapsed());
    }
    let median = super::percentile(&mut times, 50.0).as_secs_f64() * 1000.0;
    Ok((cpu, rss, scrape, samples, bytes, median))
}

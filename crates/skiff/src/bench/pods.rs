//! Pods on the real node agent: startup latency (created → Running, seen
//! by a watch, image present) beside a bare `runc run -d` of the same
//! container in the same run, pods started per second in a burst, and
//! memory with the pods running.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use super::api::start_server_and_agent;
use super::{ms, percentile, running, watch_labelled};

#[derive(clap::Args)]
pub struct Args {
    /// How many pods.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// The image, present in a registry the agent reaches
    /// (`scripts/test-registry.sh` serves this one).
    #[arg(long, default_value = "127.0.0.1:5000/busybox:test")]
    image: String,
}

fn pod(name: &str, image: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "pods"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}],
        },
    }))?)
}

/// Creates `names` at once; returns each one's time from its create to
/// the watch event that shows it Running.
async fn start(pods: &Api<Pod>, image: &str, names: &[String]) -> Result<Vec<Duration>> {
    let mut events = watch_labelled(pods, "bench=pods").await?;
    let mut created = std::collections::HashMap::new();
    for name in names {
        created.insert(name.clone(), Instant::now());
        pods.create(&PostParams::default(), &pod(name, image)?).await?;
    }
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while latencies.len() < names.len() {
        let event = tokio::time::timeout_at(deadline.into(), events.try_next()).await.context("pods did not all start in 2 minutes")??;
        if let Some(watcher::Event::Apply(p)) = event {
            let name = p.metadata.name.clone().unwrap_or_default();
            if running(&p) {
                if let Some(at) = created.remove(&name) {
                    latencies.push(at.elapsed());
                }
            }
        }
    }
    Ok(latencies)
}

async fn delete_all(pods: &Api<Pod>) -> Result<()> {
    pods.delete_collection(&DeleteParams::default(), &ListParams::default().labels("bench=pods")).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pods.list(&ListParams::default().labels("bench=pods")).await?.items.is_empty() {
        if Instant::now() > deadline {
            bail!("pods were not deleted in 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// `runc run -d` of the same image and command, `n` times, each removed after.
fn bare_runc(dir: &Path, rootfs: &Path, n: usize) -> Result<Vec<Duration>> {
    let bundle = dir.join("bare-bundle");
    let root = dir.join("bare-runc");
    std::fs::create_dir_all(&bundle)?;
    let spec = std::process::Command::new("runc").args(["spec", "--bundle"]).arg(&bundle).status()?;
    anyhow::ensure!(spec.success(), "runc spec failed");
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path)?)?;
    config["process"]["args"] = json!(["sleep", "3600"]);
    config["process"]["terminal"] = json!(false);
    config["root"] = json!({"path": rootfs, "readonly": true});
    std::fs::write(&config_path, serde_json::to_vec(&config)?)?;
    let mut times = Vec::new();
    for i in 0..n {
        let id = format!("skiff-bench-bare-{i}");
        let started = Instant::now();
        let status = std::process::Command::new("runc").arg("--root").arg(&root).args(["run", "-d", "--bundle"]).arg(&bundle).arg(&id).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status()?;
        times.push(started.elapsed());
        anyhow::ensure!(status.success(), "runc run failed");
        std::process::Command::new("runc").arg("--root").arg(&root).args(["delete", "--force", &id]).status()?;
    }
    Ok(times)
}

/// Memory of the shims (one per container) of this server's containers:
/// their proportional set size, since they share the binary's pages.
fn shims_pss_mib(dir: &Path) -> (usize, f64) {
    let marker = dir.display().to_string();
    let mut count = 0;
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(" shim ") && cmdline.contains(&marker) {
            count += 1;
            let rollup = std::fs::read_to_string(entry.path().join("smaps_rollup")).unwrap_or_default();
            let pss_kib: f64 = rollup.lines().find_map(|l| l.strip_prefix("Pss:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0.0);
            total += pss_kib / 1024.0;
        }
    }
    (count, total)
}

pub async fn run(args: Args) -> Result<()> {
    let (server, agent, client) = start_server_and_agent().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes.get_opt("bench-node").await?.and_then(|n| n.spec?.pod_cidr).is_none() {
        anyhow::ensure!(Instant::now() < deadline, "the node did not register with a pod CIDR");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let idle_rss = (server.rss_mib(), agent.rss_mib());
    eprintln!("pulling {} with a first pod…", args.image);
    start(&pods, &args.image, &["warm-up".into()]).await?;
    delete_all(&pods).await?;

    eprintln!("starting {} pods one after another…", args.pods);
    let mut one_by_one = Vec::new();
    for i in 0..args.pods {
        one_by_one.extend(start(&pods, &args.image, &[format!("seq-{i}")]).await?);
    }
    let loaded_rss = (server.rss_mib(), agent.rss_mib());
    let (shims, shims_pss) = shims_pss_mib(agent.dir());
    delete_all(&pods).await?;

    eprintln!("starting {} pods at once…", args.pods);
    let names: Vec<String> = (0..args.pods).map(|i| format!("burst-{i}")).collect();
    let burst_started = Instant::now();
    start(&pods, &args.image, &names).await?;
    let burst = burst_started.elapsed();
    delete_all(&pods).await?;

    eprintln!("the same container with bare runc…");
    let store = skiff_kubelet::images::ImageStore::open(&agent.dir().join("data/agent/images"))?;
    let image = store.get(&args.image).context("the image is not on the node")?;
    let layers = store.layer_dirs(&image);
    anyhow::ensure!(layers.len() == 1, "the bare runc comparison takes a one-layer image");
    let mut bare = bare_runc(agent.dir(), &layers[0], args.pods)?;

    let (p50, p99) = (percentile(&mut one_by_one, 50.0), percentile(&mut one_by_one, 99.0));
    let (b50, b99) = (percentile(&mut bare, 50.0), percentile(&mut bare, 99.0));
    println!("pod startup, created → Running seen by a watch, {} pods one after another: p50 {}, p99 {}", args.pods, ms(p50), ms(p99));
    println!("bare `runc run -d` of the same container: p50 {}, p99 {}; ratio p50 {:.1}x, p99 {:.1}x", ms(b50), ms(b99), p50.as_secs_f64() / b50.as_secs_f64(), p99.as_secs_f64() / b99.as_secs_f64());
    println!("{} pods created at once, all Running in {}: {:.0} pods/s", args.pods, ms(burst), args.pods as f64 / burst.as_secs_f64());
    println!("agent RSS (`skiff agent`, its own process): idle {:.1} MiB, with {} pods {:.1} MiB", idle_rss.1, args.pods, loaded_rss.1);
    println!("{shims} shims {shims_pss:.1} MiB PSS ({:.2} MiB each)", shims_pss / shims.max(1) as f64);
    println!("server RSS (API server, scheduler, controllers): idle {:.1} MiB, with {} pods {:.1} MiB", idle_rss.0, args.pods, loaded_rss.0);
    drop(agent);
    drop(server);
    let _ = std::process::Command::new("ip").args(["link", "del", "skbench"]).status();
    Ok(())
}

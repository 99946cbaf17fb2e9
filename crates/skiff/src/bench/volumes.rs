//! Dynamic provisioning on the real node agent: N pods, each with a new
//! claim of the default class (`local-path`), created at once; every claim
//! goes through the scheduler's selected node, the node's provisioner and
//! CSI driver, and the binder. Prints claim create → Bound and pod
//! create → Running (p50, p99) and the time until every pod runs.
//!
//! Then `local-disk`'s overhead: the same fio runs (sequential 1 MiB and
//! random 4 KiB reads and writes, direct I/O) on a pod's mounted
//! `local-disk` volume (a loop device and its own ext4 on a sparse file)
//! and on the host's own filesystem beside it. fio runs on the host, on
//! the very mount the container sees: the test image has no fio, and a
//! bind mount adds nothing to I/O.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use super::api::start_server_and_agent;
use super::{ms, percentile, running, watch_labelled, Events};

#[derive(clap::Args)]
pub struct Args {
    /// How many pods, each with its own claim.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// The image, present in a registry the agent reaches
    /// (`scripts/test-registry.sh` serves this one).
    #[arg(long, default_value = "127.0.0.1:5000/busybox:test")]
    image: String,
    /// Seconds per fio run (four runs on the volume, four on the host); 0 skips them.
    #[arg(long, default_value_t = 10)]
    fio_seconds: u64,
}

fn claim(name: &str) -> Result<PersistentVolumeClaim> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "volumes"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "16Mi"}}},
    }))?)
}

fn pod(name: &str, image: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "volumes"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", "echo up > /data/up; sleep 3600"],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": name}}],
        },
    }))?)
}

/// Waits until the pod `name` shows Running on the watch.
async fn until_running(events: &mut Events<Pod>, name: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let event = tokio::time::timeout_at(deadline.into(), events.try_next()).await.with_context(|| format!("pod {name} did not start in {} s", limit.as_secs()))??;
        if let Some(watcher::Event::Apply(p)) = event {
            if p.metadata.name.as_deref() == Some(name) && running(&p) {
                return Ok(());
            }
        }
    }
}

pub async fn run(args: Args) -> Result<()> {
    let (server, agent, client) = start_server_and_agent().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes.get_opt("bench-node").await?.and_then(|n| n.spec?.pod_cidr).is_none() {
        anyhow::ensure!(Instant::now() < deadline, "the node did not register with a pod CIDR");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eprintln!("pulling {} with a first pod…", args.image);
    let mut pod_events = watch_labelled(&pods, "bench=volumes").await?;
    let mut claim_events = watch_labelled(&claims, "bench=volumes").await?;
    claims.create(&PostParams::default(), &claim("warm-up")?).await?;
    pods.create(&PostParams::default(), &pod("warm-up", &args.image)?).await?;
    until_running(&mut pod_events, "warm-up", Duration::from_secs(120)).await?;

    eprintln!("creating {} claims and their pods at once…", args.pods);
    let names: Vec<String> = (0..args.pods).map(|i| format!("vol-{i}")).collect();
    let mut claim_made = HashMap::new();
    let mut pod_made = HashMap::new();
    let started = Instant::now();
    for name in &names {
        claim_made.insert(name.clone(), Instant::now());
        claims.create(&PostParams::default(), &claim(name)?).await?;
        pod_made.insert(name.clone(), Instant::now());
        pods.create(&PostParams::default(), &pod(name, &args.image)?).await?;
    }
    let (mut bound, mut started_pods) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last_report = Instant::now();
    while bound.len() < names.len() || started_pods.len() < names.len() {
        let next = tokio::time::timeout_at(deadline.into(), futures::future::select(claim_events.next(), pod_events.next()));
        match next.await.with_context(|| format!("after 5 minutes {} claims bound and {} pods running", bound.len(), started_pods.len()))? {
            futures::future::Either::Left((Some(Ok(watcher::Event::Apply(c))), _)) if c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") => {
                if let Some(at) = claim_made.remove(c.metadata.name.as_deref().unwrap_or_default()) {
                    bound.push(at.elapsed());
                }
            }
            futures::future::Either::Right((Some(Ok(watcher::Event::Apply(p))), _)) if running(&p) => {
                if let Some(at) = pod_made.remove(p.metadata.name.as_deref().unwrap_or_default()) {
                    started_pods.push(at.elapsed());
                }
            }
            _ => {}
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            eprintln!("  {:.1} s: {} claims bound, {} pods running", started.elapsed().as_secs_f64(), bound.len(), started_pods.len());
            last_report = Instant::now();
        }
    }
    let all = started.elapsed();
    let volumes = std::fs::read_dir(agent.dir().join("data/agent/local-volumes"))?.count();
    let (b50, b99) = (percentile(&mut bound, 50.0), percentile(&mut bound, 99.0));
    let (r50, r99) = (percentile(&mut started_pods, 50.0), percentile(&mut started_pods, 99.0));
    println!("{} pods, each with a new claim (local-path), created at once on one node: all Running in {}", args.pods, ms(all));
    println!("claim created → Bound: p50 {}, p99 {}", ms(b50), ms(b99));
    println!("pod created → Running: p50 {}, p99 {}", ms(r50), ms(r99));
    println!("volume directories on the node: {volumes}");
    if args.fio_seconds > 0 {
        fio_table(&claims, &pods, &mut pod_events, &args, agent.dir()).await?;
    }
    clean_up(&claims, &pods, &client).await?;
    drop(agent);
    drop(server);
    let _ = std::process::Command::new("ip").args(["link", "del", "skbench"]).status();
    Ok(())
}

/// Deletes the pods and claims and waits for their volumes to go: the
/// agent leaves running containers and mounted volumes behind when it
/// stops, as a kubelet does.
async fn clean_up(claims: &Api<PersistentVolumeClaim>, pods: &Api<Pod>, client: &kube::Client) -> Result<()> {
    eprintln!("deleting the pods, claims and volumes…");
    let ours = ListParams::default().labels("bench=volumes");
    pods.delete_collection(&DeleteParams::default(), &ours).await?;
    claims.delete_collection(&DeleteParams::default(), &ours).await?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(180);
    while !pods.list(&ours).await?.items.is_empty() || !volumes.list(&ListParams::default()).await?.items.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "the pods and volumes were not gone in 3 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// fio's four runs, each as (name, fio arguments).
const FIO_RUNS: [(&str, &str); 4] = [
    ("sequential write, 1 MiB", "--rw=write --bs=1M --iodepth=4"),
    ("sequential read, 1 MiB", "--rw=read --bs=1M --iodepth=4"),
    ("random write, 4 KiB", "--rw=randwrite --bs=4k --iodepth=16"),
    ("random read, 4 KiB", "--rw=randread --bs=4k --iodepth=16"),
];

/// (MiB/s, IOPS) of one fio run on a file in `dir`.
fn fio(dir: &std::path::Path, run: &str, seconds: u64) -> Result<(f64, f64)> {
    let mut command = std::process::Command::new("fio");
    command.args(["--name=bench", "--ioengine=libaio", "--direct=1", "--size=256M", "--time_based", "--output-format=json"]);
    command.arg(format!("--runtime={seconds}")).arg(format!("--directory={}", dir.display())).args(run.split(' '));
    let out = command.output().context("running fio (Debian's fio package)")?;
    anyhow::ensure!(out.status.success(), "fio: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).context("fio's JSON report")?;
    let job = &report["jobs"][0];
    let side = if run.contains("write") { &job["write"] } else { &job["read"] };
    Ok((side["bw"].as_f64().unwrap_or(0.0) / 1024.0, side["iops"].as_f64().unwrap_or(0.0)))
}

/// One pod with a 1 GiB `local-disk` claim, then each fio run on its
/// volume's mount and on the host's filesystem, side by side.
async fn fio_table(claims: &Api<PersistentVolumeClaim>, pods: &Api<Pod>, pod_events: &mut Events<Pod>, args: &Args, agent_dir: &std::path::Path) -> Result<()> {
    let mut disk = claim("fio")?;
    let spec = disk.spec.get_or_insert_with(Default::default);
    spec.storage_class_name = Some("local-disk".into());
    spec.resources.get_or_insert_with(Default::default).requests = Some([("storage".to_string(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into()))].into());
    claims.create(&PostParams::default(), &disk).await?;
    let made = pods.create(&PostParams::default(), &pod("fio", &args.image)?).await?;
    until_running(pod_events, "fio", Duration::from_secs(60)).await?;
    let uid = made.metadata.uid.context("the pod has no uid")?;
    let volume = agent_dir.join("data/agent/pods").join(uid).join("volumes/kubernetes.io~csi/data/mount");
    let host = agent_dir.join("fio-host");
    std::fs::create_dir_all(&host)?;
    println!();
    println!("local-disk (1 GiB, ext4 on a loop device) against the host's filesystem, fio {} s per run, direct I/O:", args.fio_seconds);
    println!("| run | local-disk MiB/s | host MiB/s | local-disk IOPS | host IOPS | local-disk / host |");
    println!("|---|---|---|---|---|---|");
    for (name, run) in FIO_RUNS {
        eprintln!("fio: {name}…");
        let (disk_bw, disk_iops) = fio(&volume, run, args.fio_seconds)?;
        let (host_bw, host_iops) = fio(&host, run, args.fio_seconds)?;
        let ratio = if host_iops > 0.0 { disk_iops / host_iops } else { 0.0 };
        println!("| {name} | {disk_bw:.0} | {host_bw:.0} | {disk_iops:.0} | {host_iops:.0} | {ratio:.2} |");
    }
    Ok(())
}

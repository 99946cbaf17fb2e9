//! `skiff bench scheduler`: pods scheduled per second end to end, on
//! simulated nodes: a `skiff server` process (API server and scheduler),
//! nodes registered by this process, pods created through the API by 32
//! clients and counted as bound when a watch sees their `nodeName`.
//! Nodes only hold their pods (nothing runs them) and send no heartbeats
//! unless asked (`--node-heartbeats`), as in upstream's
//! scheduler_perf; the pods are scheduler_perf's shapes: `pod-default`
//! (SchedulingBasic), `pod-with-pod-anti-affinity`
//! (SchedulingPodAntiAffinity: one per host) and
//! `pod-with-topology-spreading` (TopologySpreading: maxSkew 5 over zones).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::ValueEnum;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use serde::Deserialize;
use serde_json::json;

use super::api::{namespace, start_server};

#[derive(clap::Args)]
pub struct Args {
    /// Simulated nodes (4 CPU, 32 GiB, 110 pods each, as scheduler_perf's).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Pods to schedule.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Pods created and bound before the measured ones, as scheduler_perf's
    /// `initPods` (1,000 in its SchedulingBasic 5000Nodes_10000Pods): the
    /// clock starts on a warm server and scheduler.
    #[arg(long, default_value_t = 0)]
    init_pods: usize,
    /// Clients creating pods at once.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Run the controller manager too (it then holds every pod as well),
    /// for the whole control plane's memory.
    #[arg(long)]
    controllers: bool,
    /// The pods' shape.
    #[arg(long, value_enum, default_value_t = Shape::Basic)]
    shape: Shape,
    /// Start the API server as upstream's scheduler_perf starts its own:
    /// without the ServiceAccount and Priority admission plugins (its
    /// figures are measured so; pods then carry no token volume).
    #[arg(long)]
    scheduler_perf_admission: bool,
    /// Renew every node's Lease each 10 s, as kubelets (and KWOK's nodes)
    /// do: 500 writes/s at 5,000 nodes. Off by default, as scheduler_perf's
    /// nodes have no heartbeats; on with `--controllers`, whose node
    /// lifecycle controller would otherwise evict every pod.
    #[arg(long)]
    node_heartbeats: bool,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Shape {
    Basic,
    AntiAffinity,
    TopologySpread,
}

/// Zones the nodes are spread over for the topology-spread shape.
const ZONES: usize = 3;

fn pod(name: &str, shape: Shape) -> Pod {
    let resources = json!({"cpu": "100m", "memory": "500Mi"});
    let mut pod = json!({
        "metadata": {"name": name},
        "spec": {"containers": [{
            "name": "pause", "image": "registry.k8s.io/pause:3.10",
            "ports": [{"containerPort": 80}],
            "resources": {"requests": resources, "limits": resources},
        }]},
    });
    match shape {
        Shape::Basic => {}
        Shape::AntiAffinity => {
            pod["metadata"]["labels"] = json!({"color": "green"});
            pod["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"color": "green"}}, "topologyKey": "kubernetes.io/hostname"}]}});
        }
        Shape::TopologySpread => {
            pod["metadata"]["labels"] = json!({"color": "blue"});
            pod["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 5, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"color": "blue"}}}]);
        }
    }
    serde_json::from_value(pod).expect("a valid pod")
}

/// A pod's JSON made once: each create only puts its name in, so the
/// bench's own CPU goes to the API rather than to building bodies.
struct Template {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Template {
    const NAME: &'static str = "pod-name-placeholder";

    fn new(shape: Shape) -> Template {
        let json = serde_json::to_string(&pod(Template::NAME, shape)).expect("a pod serializes");
        let (head, tail) = json.split_once(Template::NAME).expect("the name is in the pod");
        Template { head: head.into(), tail: tail.into() }
    }

    fn body(&self, name: &str) -> Vec<u8> {
        [&self.head[..], name.as_bytes(), &self.tail[..]].concat()
    }
}

/// What the bench reads of a pod, from creates' responses and the watch:
/// its name, resourceVersion (for the watch to resume) and node. The bench
/// shares the machine with the server, so it skips decoding the rest
/// (managedFields above all); the server still sends whole pods.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "SlimPod")]
struct BoundPod {
    metadata: ObjectMeta,
    node: Option<String>,
}

#[derive(Deserialize)]
struct SlimPod {
    metadata: SlimMeta,
    spec: Option<SlimSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimMeta {
    name: Option<String>,
    namespace: Option<String>,
    resource_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimSpec {
    node_name: Option<String>,
}

impl From<SlimPod> for BoundPod {
    fn from(pod: SlimPod) -> BoundPod {
        let SlimMeta { name, namespace, resource_version } = pod.metadata;
        BoundPod { metadata: ObjectMeta { name, namespace, resource_version, ..Default::default() }, node: pod.spec.and_then(|s| s.node_name) }
    }
}

impl k8s_openapi::Resource for BoundPod {
    const API_VERSION: &'static str = Pod::API_VERSION;
    const GROUP: &'static str = Pod::GROUP;
    const KIND: &'static str = Pod::KIND;
    const VERSION: &'static str = Pod::VERSION;
    const URL_PATH_SEGMENT: &'static str = Pod::URL_PATH_SEGMENT;
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for BoundPod {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Creates the pods numbered `names` (`p-N`) with `clients` clients at once.
fn create(client: &kube::Client, url: &str, template: &Arc<Template>, names: std::ops::Range<usize>, clients: usize) -> Vec<tokio::task::JoinHandle<Result<()>>> {
    let next = Arc::new(AtomicUsize::new(names.start));
    (0..clients)
        .map(|_| {
            let (client, next, end, template) = (client.clone(), next.clone(), names.end, template.clone());
            let request = kube::core::Request::new(url);
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        return Ok(());
                    }
                    let body = template.body(&format!("p-{i}"));
                    let created: BoundPod = client.request(request.create(&PostParams::default(), body)?.map(Into::into)).await?;
                    if created.metadata.name.is_none() {
                        bail!("a create answered without the pod");
                    }
                }
            })
        })
        .collect()
}

pub async fn run(args: Args) -> Result<()> {
    // The controller manager has nothing to do here but watch.
    let mut flags = Vec::new();
    if !args.controllers {
        flags.push("--disable-controller-manager");
    }
    if args.scheduler_perf_admission {
        flags.extend(["--disable-admission-plugins", "ServiceAccount,Priority"]);
    }
    let (server, client, _) = start_server(&flags).await?;
    let started = Instant::now();
    if args.shape == Shape::AntiAffinity && args.pods > args.nodes {
        bail!("pods with anti-affinity take a node each: use --pods ≤ --nodes");
    }
    let zones = if args.shape == Shape::TopologySpread { ZONES } else { 0 };
    let options = skiff_sim::Options { nodes: args.nodes, cpu: "4".into(), memory: "32Gi".into(), run_pods: false, zones, heartbeats: args.node_heartbeats || args.controllers, ..Default::default() };
    let _sim = skiff_sim::Sim::start(client.clone(), options).await?;
    println!("  {} nodes registered in {:.1} s", args.nodes, started.elapsed().as_secs_f64());
    namespace(&client, "sched").await?;
    let pods: Api<BoundPod> = Api::namespaced(client.clone(), "sched");

    // Bound pods, as a watch sees them.
    let bound = Arc::new(AtomicUsize::new(0));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watching = {
        let (pods, bound, total) = (pods.clone(), bound.clone(), args.init_pods + args.pods);
        tokio::spawn(async move {
            let mut seen = HashSet::new();
            let mut ready = Some(ready_tx);
            let mut events = watcher(pods, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    // A relisted watch (after a 410) shows bound pods as InitApply.
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))
                        if p.node.is_some() && seen.insert(p.metadata.name.clone().unwrap_or_default()) =>
                    {
                        bound.fetch_add(1, Ordering::Relaxed);
                        if seen.len() == total {
                            return Instant::now();
                        }
                    }
                    _ => {}
                }
            }
            Instant::now()
        })
    };
    ready_rx.await?;

    let template = Arc::new(Template::new(args.shape));
    let url = pods.resource_url().to_string();
    if args.init_pods > 0 {
        let creators = create(&client, &url, &template, 0..args.init_pods, args.clients);
        let deadline = Instant::now() + Duration::from_secs(600);
        while bound.load(Ordering::Relaxed) < args.init_pods {
            if Instant::now() > deadline {
                bail!("the init pods were not bound within 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for c in futures::future::join_all(creators).await {
            c??;
        }
        println!("  {} init pods bound", args.init_pods);
    }

    let started = Instant::now();
    let cpu_before = (server.cpu_seconds(), super::cpu_seconds("self"));
    let creators = create(&client, &url, &template, args.init_pods..args.init_pods + args.pods, args.clients);
    let mut progress = tokio::time::interval(Duration::from_secs(2));
    progress.tick().await;
    let mut watching = watching;
    let finished = loop {
        tokio::select! {
            done = &mut watching => break done?,
            _ = progress.tick() => {
                println!("  … {} of {} bound after {:.1} s", bound.load(Ordering::Relaxed) - args.init_pods, args.pods, started.elapsed().as_secs_f64());
                if started.elapsed() > Duration::from_secs(600) {
                    bail!("not all pods were bound within 10 minutes");
                }
            }
        }
    };
    let created = futures::future::join_all(creators).await;
    for c in created {
        c??;
    }
    let cpu_used = (server.cpu_seconds() - cpu_before.0, super::cpu_seconds("self") - cpu_before.1);
    let elapsed = finished - started;
    let rate = args.pods as f64 / elapsed.as_secs_f64();
    println!("\n| metric | value |\n|---|---|");
    let shape = args.shape.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
    println!("| {shape}: {} pods on {} nodes: created → bound (watched) | {:.2} s |", args.pods, args.nodes, elapsed.as_secs_f64());
    println!("| pods scheduled per second, end to end | {rate:.0} |");
    let per_pod = |seconds: f64| seconds * 1e6 / args.pods as f64;
    println!("| server CPU per pod (API server, store, scheduler; user + system) | {:.0} µs |", per_pod(cpu_used.0));
    println!("| bench CPU per pod (clients, watch, simulated nodes) | {:.0} µs |", per_pod(cpu_used.1));
    println!("| server RSS after (API server, store, scheduler) | {:.1} MiB |", server.rss_mib());
    println!("| bench RSS after (simulated nodes, watch, clients) | {:.1} MiB |", super::self_rss_mib());
    Ok(())
}

//! `skiff bench appsafe`: what AppSafe costs a node. Requests per second
//! through a Service to a group in Protect against the same group in
//! Discover (rounds alternated), and whether the flow observer kept up
//! with every new connection meanwhile (conntrack events counted against
//! connections made), with the agent's CPU and memory.
//!
//! A server on this machine and one host (a network namespace) with an
//! agent, on a bridge made here; two pods (`server`, `client`) that only
//! hold network namespaces: this process serves from the server pod's and
//! connects from the client pod's (threads that enter them), so the
//! figures measure the node's data path, not busybox.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_api::appsafe::AppGroup;

use super::lan::{sh, Host, Lan};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds each round sends requests for.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds in each mode, alternated.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Connections open at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The test image (scripts/test-registry.sh), imported on the host.
    #[arg(long, default_value = "127.0.0.1:5000/busybox:test")]
    image: String,
}

const LAN: Lan = Lan { bridge: "skbapp", prefix: "10.254.203", netns_prefix: "skiff-bench-app-" };
const NODE: &str = "bench-app-h1";
const IMAGE: &str = "bench.local/busybox:test";
const PORT: u16 = 8080;

/// Runs `work` on a thread of its own inside the network namespace at `netns`.
fn in_netns<T: Send + 'static>(netns: PathBuf, work: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<Result<T>> {
    std::thread::spawn(move || {
        let file = std::fs::File::open(&netns).with_context(|| format!("opening {}", netns.display()))?;
        // SAFETY: setns on this thread only, with a namespace file we hold open.
        let done = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        anyhow::ensure!(done == 0, "entering {}: {}", netns.display(), std::io::Error::last_os_error());
        Ok(work())
    })
}

/// Answers every connection with one line, until `stop`.
fn serve(stop: Arc<AtomicBool>) -> Result<()> {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT))?;
    listener.set_nonblocking(true)?;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.write_all(b"ok\n");
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_micros(200)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One request: connect, read the answer to its end.
fn request(to: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&to, Duration::from_secs(1)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).is_ok() && answer == b"ok\n"
}

/// Requests from the client pod for `seconds`, `concurrency` at once:
/// how many were answered, and how many failed.
fn load(client_netns: &Path, to: SocketAddr, seconds: u64, concurrency: usize) -> Result<(u64, u64)> {
    let (answered, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let until = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (answered, failed) = (answered.clone(), failed.clone());
            in_netns(client_netns.to_path_buf(), move || {
                while Instant::now() < until {
                    let counter = if request(to) { &answered } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| anyhow::anyhow!("a load worker panicked"))??;
    }
    Ok((answered.load(Ordering::Relaxed), failed.load(Ordering::Relaxed)))
}

async fn set_mode(groups: &Api<AppGroup>, name: &str, mode: &str) -> Result<()> {
    groups.patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"mode": mode}}))).await?;
    Ok(())
}

/// A figure from the node's /metrics.
async fn node_metric(client: &kube::Client, name: &str) -> Result<f64> {
    let request = http::Request::get(format!("/api/v1/nodes/{NODE}/proxy/metrics")).body(Vec::new())?;
    let text = client.request_text(request).await?;
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok()).with_context(|| format!("the node serves no {name}"))
}

async fn wait_for(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !check().await? {
        if Instant::now() > deadline {
            bail!("{what} did not happen within {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

pub async fn run(args: Args) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("skiff-bench-appsafe-").tempdir()?;
    let _bridge = LAN.up()?;
    let server = LAN.start_server(dir.path(), 6445, &["--disable", "coredns", "--cluster-cidr", "10.203.0.0/16"]).await?;
    let mut host = LAN.plug_in("h1", 11, dir.path())?;
    // The image comes with the host, as an air-gapped node's would.
    let images = host.dir.join("data/agent/images");
    std::fs::create_dir_all(&images)?;
    sh(&["skopeo", "copy", "-q", "--src-tls-verify=false", &format!("docker://{}", args.image), &format!("oci-archive:{}:{IMAGE}", images.join("busybox.tar").display())]).context("copying the test image (is scripts/test-registry.sh's registry up?)")?;
    server.join(&mut host, NODE, &[])?;
    let result = measure(&server.client, &host, &args).await;
    // Pods go first, so that the agent removes what it made.
    server.delete_pods().await;
    result.inspect_err(|_| eprintln!("the agent's log:\n{}", host.log()))
}

async fn measure(client: &kube::Client, host: &Host, args: &Args) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for("the agent to join", Duration::from_secs(60), async || Ok(nodes.get_opt(NODE).await?.is_some())).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["server", "client"] {
        let pod = json!({"metadata": {"name": name, "labels": {"app": name}}, "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}});
        pods.create(&PostParams::default(), &serde_json::from_value(pod)?).await?;
    }
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let service = json!({"metadata": {"name": "server"}, "spec": {"selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": PORT}]}});
    let service = services.create(&PostParams::default(), &serde_json::from_value(service)?).await?;
    let cluster_ip: Ipv4Addr = service.spec.and_then(|s| s.cluster_ip).context("the Service has no address")?.parse()?;
    let running = async |name: &str| -> Result<bool> { Ok(pods.get(name).await?.status.and_then(|s| s.phase).as_deref() == Some("Running")) };
    wait_for("the pods to run", Duration::from_secs(120), async || Ok(running("server").await? && running("client").await?)).await?;
    let netns = async |name: &str| -> Result<PathBuf> { Ok(host.dir.join("run/pods").join(pods.get(name).await?.metadata.uid.context("a uid")?).join("net")) };
    let (server_netns, client_netns) = (netns("server").await?, netns("client").await?);
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let server = in_netns(server_netns, move || serve(s));
    let to = SocketAddr::from((cluster_ip, 80));

    // Discover first: the client → server flow is learned.
    let groups: Api<AppGroup> = Api::namespaced(client.clone(), "default");
    wait_for("the groups", Duration::from_secs(60), async || Ok(groups.get_opt("server").await?.is_some() && groups.get_opt("client").await?.is_some())).await?;
    let warm = load(&client_netns, to, 2, 2)?;
    anyhow::ensure!(warm.0 > 0, "no request was answered through the Service");
    wait_for("the flow to be learned", Duration::from_secs(30), async || Ok(groups.get("server").await?.status.is_some_and(|s| !s.ingress.is_empty()))).await?;

    let agent_pid = host.child.as_ref().context("the agent")?.id().to_string();
    let (mut discover, mut protect) = (Vec::new(), Vec::new());
    let (mut made, mut failed, mut cpu, mut seconds) = (0u64, 0u64, 0.0, 0.0);
    let events_before = node_metric(client, "skiff_appsafe_conntrack_events_total").await?;
    let overflows_before = node_metric(client, "skiff_appsafe_event_overflows_total").await?;
    for round in 0..args.rounds {
        for mode in ["Discover", "Protect"] {
            set_mode(&groups, "server", mode).await?;
            set_mode(&groups, "client", mode).await?;
            let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> = Api::namespaced(client.clone(), "default");
            let enforced = mode == "Protect";
            wait_for("the policies to follow the mode", Duration::from_secs(30), async || Ok(policies.list(&Default::default()).await?.items.len() == if enforced { 2 } else { 0 })).await?;
            // Enforcement reaches the node's table within a second.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let cpu_before = super::cpu_seconds(&agent_pid);
            let started = Instant::now();
            let (answered, lost) = load(&client_netns, to, args.seconds, args.concurrency)?;
            let elapsed = started.elapsed().as_secs_f64();
            cpu += super::cpu_seconds(&agent_pid) - cpu_before;
            seconds += elapsed;
            made += answered + lost;
            failed += lost;
            let rate = answered as f64 / elapsed;
            eprintln!("round {} {mode}: {rate:.0} requests/s ({lost} failed)", round + 1);
            if enforced { &mut protect } else { &mut discover }.push(rate);
        }
    }
    // Every connection's NEW event, counted by the agent once it read it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let observed = node_metric(client, "skiff_appsafe_conntrack_events_total").await? - events_before;
    let overflows = node_metric(client, "skiff_appsafe_event_overflows_total").await? - overflows_before;
    let rss = super::rss_mib(&agent_pid);
    stop.store(true, Ordering::Relaxed);
    server.join().map_err(|_| anyhow::anyhow!("the server thread panicked"))???;

    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, p) = (median(&mut discover), median(&mut protect));
    println!("\nappsafe: {} rounds of {} s per mode, {} connections at once, one request per connection", args.rounds, args.seconds, args.concurrency);
    println!("| group mode | requests/s (median) |");
    println!("|---|---|");
    println!("| Discover | {d:.0} |");
    println!("| Protect | {p:.0} |");
    println!("| Protect / Discover | {:.1} % |", 100.0 * p / d);
    println!("\nflow observer: {made} connections in {seconds:.1} s ({:.0}/s), {observed:.0} conntrack events read ({:.2} %), {overflows:.0} buffer overflows, {failed} requests failed", made as f64 / seconds, 100.0 * observed / made as f64);
    println!("agent: {:.1} % of a core over the rounds, {rss:.1} MiB resident at the end", 100.0 * cpu / seconds);
    Ok(())
}

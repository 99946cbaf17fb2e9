//! `skiff bench proxy`: how long a Service or endpoint change takes to be
//! in the kernel, with many Services present, and whether the first packet
//! of a connection gets slower as Services grow.
//!
//! It runs in a network namespace of its own (made here, removed after):
//! a real API server, the node's service proxy in this process, and `nft
//! monitor` reporting each commit the kernel makes, so that "programmed" is
//! the kernel's word, not the proxy's.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{ms, percentile};

#[derive(clap::Args)]
pub struct Args {
    /// Services present when changes are measured, each step in turn.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    services: Vec<usize>,
    /// Changes measured at each step (half new Services, half new endpoints).
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Connections whose first packet is timed at each step.
    #[arg(long, default_value_t = 500)]
    connections: usize,
    #[arg(long, hide = true)]
    inside: bool,
}

const NETNS: &str = "skiff-bench-proxy";
/// The namespace's own address, and the range every Service's endpoint
/// answers on (each Service its own address, so that no two connections'
/// translated addresses can collide in conntrack).
const ENDPOINT: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const ENDPOINTS: &str = "10.99.0.0/16";

fn endpoint_of(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ENDPOINT) + (i as u32 % 65000))
}
const ENDPOINT_PORT: u16 = 8080;

pub async fn run(args: Args) -> Result<()> {
    if args.inside {
        return inside(args).await;
    }
    let mut inner: Vec<String> = ["bench", "proxy", "--inside", "--services"].map(String::from).to_vec();
    inner.push(args.services.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","));
    inner.extend(["--changes".into(), args.changes.to_string(), "--connections".into(), args.connections.to_string()]);
    super::inside_netns(NETNS, &inner)
}

fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    anyhow::ensure!(out.status.success(), "{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Lines `nft monitor` printed, with when they were read.
type Seen = Arc<Mutex<VecDeque<(Instant, String)>>>;

fn monitor() -> Result<(std::process::Child, Seen)> {
    // Line-buffered: into a pipe, nft's output would come in 4 KiB lumps.
    let mut child = Command::new("stdbuf").args(["-oL", "nft", "monitor", "ruleset"]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().context("running nft monitor")?;
    let seen: Seen = Arc::default();
    let lines = BufReader::new(child.stdout.take().context("nft monitor's output")?);
    let s = seen.clone();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            s.lock().unwrap().push_back((Instant::now(), line));
        }
    });
    Ok((child, seen))
}

/// Waits until the monitor shows a line with `needle`; returns when it was read.
async fn seen_at(seen: &Seen, needle: &str, limit: Duration) -> Result<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        {
            let mut lines = seen.lock().unwrap();
            if let Some(position) = lines.iter().position(|(_, l)| l.contains(needle)) {
                let at = lines[position].0;
                lines.drain(..=position);
                return Ok(at);
            }
        }
        if Instant::now() > deadline {
            bail!("the kernel never showed {needle:?}");
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

async fn inside(args: Args) -> Result<()> {
    sh(&["ip", "link", "set", "lo", "up"])?;
    sh(&["ip", "addr", "add", &format!("{ENDPOINT}/32"), "dev", "lo"])?;
    sh(&["ip", "route", "add", "local", ENDPOINTS, "dev", "lo"])?;
    // A host routes Service IPs somewhere (its default route) before they are DNATed.
    sh(&["ip", "route", "add", "10.43.0.0/16", "dev", "lo"])?;
    // The endpoints: each answers a connection with one line.
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, ENDPOINT_PORT)).await?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stream.write_all(b"ok\n").await;
            });
        }
    });
    let advertise = ENDPOINT.to_string();
    let (server, client, _) = super::api::start_server(&["--disable-scheduler", "--disable-controller-manager", "--disable", "coredns", "--flannel-backend", "none", "--advertise-address", &advertise]).await?;
    let node = skiff_net::proxy::rules::NodeContext { cluster_cidr: "10.42.0.0/16".parse()?, service_cidr: "10.43.0.0/16".parse()?, node_ips: vec![ENDPOINT] };
    let proxy = Arc::new(skiff_net::proxy::Proxy { node_name: "bench".into(), node, service_lb: false, local_services: Default::default() });
    let (mut monitor, seen) = monitor()?;
    let p = proxy.clone();
    let c = client.clone();
    tokio::spawn(async move {
        if let Err(e) = p.run(c).await {
            eprintln!("the proxy stopped: {e:#}");
        }
    });
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let mut rows = Vec::new();
    let mut present = 0;
    for &target in &args.services {
        let started = Instant::now();
        let mut ips = Vec::new();
        let made = futures::stream::iter(present..target)
            .map(|i| {
                let (services, slices) = (services.clone(), slices.clone());
                async move { create(&services, &slices, &format!("s{i}"), endpoint_of(i)).await }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        for ip in made {
            ips.push(ip?);
        }
        let last = ips.last().cloned().unwrap_or_default();
        if !last.is_empty() {
            seen_at(&seen, &format!("{last} . tcp . 80"), Duration::from_secs(600)).await?;
        }
        // The proxy may still be catching up with the burst: measured
        // changes start once the kernel has been quiet for two seconds.
        loop {
            let last = seen.lock().unwrap().back().map(|(at, _)| *at);
            if last.is_none_or(|at| at.elapsed() > Duration::from_secs(2)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("{target} Services in the kernel ({} made in {:.1} s)", target - present, started.elapsed().as_secs_f64());
        present = target;
        seen.lock().unwrap().clear();

        let mut new_service = Vec::new();
        let mut new_endpoint = Vec::new();
        for i in 0..args.changes {
            let began = Instant::now();
            if i % 2 == 0 {
                let ip = create(&services, &slices, &format!("c{target}-{i}"), endpoint_of(i)).await?;
                new_service.push(seen_at(&seen, &format!("{ip} . tcp . 80"), Duration::from_secs(10)).await? - began);
            } else {
                // One more endpoint for an existing Service (an address no
                // step used before).
                let address = endpoint_of(40000 + target + i);
                let service = i % target;
                let patch = json!({"endpoints": [{"addresses": [endpoint_of(service).to_string()], "conditions": {"ready": true}}, {"addresses": [address.to_string()], "conditions": {"ready": true}}]});
                slices.patch(&format!("s{service}"), &PatchParams::default(), &Patch::Merge(patch)).await?;
                new_endpoint.push(seen_at(&seen, &format!("dnat to {address}:{ENDPOINT_PORT}"), Duration::from_secs(10)).await? - began);
            }
        }
        let first_packet = first_packets(&services, target, args.connections).await?;
        let row = (target, percentile(&mut new_service.clone(), 50.0), percentile(&mut new_service, 99.0), percentile(&mut new_endpoint.clone(), 50.0), percentile(&mut new_endpoint, 99.0), first_packet);
        eprintln!(
            "{target} Services: new Service in the kernel p50 {} p99 {}; new endpoint p50 {} p99 {}; first packet p50 {} p99 {}",
            ms(row.1), ms(row.2), ms(row.3), ms(row.4), ms(row.5.0), ms(row.5.1)
        );
        rows.push(row);
    }
    let direct = first_packet_to(SocketAddr::from((ENDPOINT, ENDPOINT_PORT)), args.connections).await?;
    println!("\n| Services | new Service, API write → kernel p50 / p99 | new endpoint p50 / p99 | first packet through a ClusterIP p50 / p99 |");
    println!("|---|---|---|---|");
    for (n, s50, s99, e50, e99, (f50, f99)) in rows {
        println!("| {n} | {} / {} | {} / {} | {} / {} |", ms(s50), ms(s99), ms(e50), ms(e99), ms(f50), ms(f99));
    }
    println!("| (endpoint directly) | | | {} / {} |", ms(direct.0), ms(direct.1));
    let _ = monitor.kill();
    drop(server);
    Ok(())
}

/// A Service `name` with one ready endpoint; returns its ClusterIP.
async fn create(services: &Api<Service>, slices: &Api<EndpointSlice>, name: &str, endpoint: Ipv4Addr) -> Result<String> {
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [endpoint.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": ENDPOINT_PORT, "protocol": "TCP"}],
    }))?;
    slices.create(&PostParams::default(), &slice).await?;
    let service: Service = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": ENDPOINT_PORT}]}}))?;
    let made = services.create(&PostParams::default(), &service).await?;
    made.spec.and_then(|s| s.cluster_ip).context("the Service got no ClusterIP")
}

/// Connect-and-first-byte times through random Services' ClusterIPs.
async fn first_packets(services: &Api<Service>, present: usize, count: usize) -> Result<(Duration, Duration)> {
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("s{}", (i * 7919) % present);
        let ip: Ipv4Addr = services.get(&name).await?.spec.and_then(|s| s.cluster_ip).context("no ClusterIP")?.parse()?;
        samples.push(one_connection(SocketAddr::from((ip, 80))).await?);
    }
    Ok((percentile(&mut samples.clone(), 50.0), percentile(&mut samples, 99.0)))
}

async fn first_packet_to(address: SocketAddr, count: usize) -> Result<(Duration, Duration)> {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        samples.push(one_connection(address).await?);
    }
    Ok((percentile(&mut samples.clone(), 50.0), percentile(&mut samples, 99.0)))
}

async fn one_connection(address: SocketAddr) -> Result<Duration> {
    use tokio::io::AsyncReadExt;
    let began = Instant::now();
    let mut stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(address)).await.context("connect timed out")??;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?;
    Ok(began.elapsed())
}

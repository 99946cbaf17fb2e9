//! `skiff bench dns`: cluster DNS as a node agent serves it. `--services`
//! synthetic Services with their EndpointSlices are fed to the index
//! directly (no API server), the same server code as `skiff agent`'s
//! answers on loopback, and dnsperf (Debian's `dnsperf`) asks it a mix of
//! cluster names. Figures: the index's memory (RSS growth while it is
//! filled), queries/s and latency as dnsperf measures them, and the
//! server's CPU time per query.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_net::dns::proto::rr::{Name, RecordType};
use skiff_net::dns::{Outcome, Records, Server};

use super::{cpu_seconds, self_rss_mib};

#[derive(clap::Args)]
pub struct Args {
    /// Services in the index; one in ten is headless.
    #[arg(long, default_value_t = 10_000)]
    services: usize,
    /// Seconds dnsperf runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// dnsperf's clients (sockets).
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// dnsperf's queries in flight at most.
    #[arg(long, default_value_t = 100)]
    outstanding: usize,
    /// Loopback port to serve on; 0 for a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
}

const DOMAIN: &str = "cluster.local";
const NAMESPACES: usize = 100;

fn namespace(i: usize) -> String {
    format!("ns-{}", i % NAMESPACES)
}

/// Service `i`: `svc-i` (ClusterIP, ports http and https, two endpoints)
/// or, one in ten, `hl-i` (headless, three endpoints with hostnames).
fn objects(i: usize) -> (Service, EndpointSlice) {
    let headless = i.is_multiple_of(10);
    let name = if headless { format!("hl-{i}") } else { format!("svc-{i}") };
    let ns = namespace(i);
    let cluster_ip = if headless { "None".to_string() } else { format!("10.43.{}.{}", i / 250, i % 250 + 1) };
    let ports = json!([{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "https", "port": 443, "protocol": "TCP"}]);
    let service = json!({"metadata": {"namespace": ns, "name": name}, "spec": {"clusterIP": cluster_ip, "ports": ports}});
    let endpoints: Vec<_> = (0..if headless { 3 } else { 2 })
        .map(|e| {
            let ip = format!("10.42.{}.{}", (i * 3 + e) / 250 % 250, (i * 3 + e) % 250 + 1);
            if headless {
                json!({"addresses": [ip], "hostname": format!("{name}-{e}"), "conditions": {"ready": true}})
            } else {
                json!({"addresses": [ip], "conditions": {"ready": true}})
            }
        })
        .collect();
    let slice = json!({
        "metadata": {"namespace": ns, "name": format!("{name}-abcde"), "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "https", "port": 8443, "protocol": "TCP"}],
        "endpoints": endpoints,
    });
    (serde_json::from_value(service).expect("a Service"), serde_json::from_value(slice).expect("an EndpointSlice"))
}

/// dnsperf's input: per 20 lines, 10 Service A, 4 SRV for a named port, 3
/// headless A (three addresses), 2 NXDOMAIN, 1 pod A.
fn queries(services: usize, lines: usize) -> String {
    let mut text = String::new();
    for n in 0..lines {
        // Spread over the index, by a step prime to its size.
        let i = (n * 7919) % services.max(1);
        let ns = namespace(i);
        let plain = if i.is_multiple_of(10) { i + 1 } else { i };
        let headless = i - i % 10;
        let _ = match n % 20 {
            0..=9 => writeln!(text, "svc-{plain}.{}.svc.{DOMAIN} A", namespace(plain)),
            10..=13 => writeln!(text, "_http._tcp.svc-{plain}.{}.svc.{DOMAIN} SRV", namespace(plain)),
            14..=16 => writeln!(text, "hl-{headless}.{}.svc.{DOMAIN} A", namespace(headless)),
            17 | 18 => writeln!(text, "missing-{i}.{ns}.svc.{DOMAIN} A"),
            _ => writeln!(text, "10-42-{}-{}.{ns}.pod.{DOMAIN} A", i / 250 % 250, i % 250),
        };
    }
    text
}

/// A figure from dnsperf's report, by the text before it.
fn figure(report: &str, label: &str) -> Option<f64> {
    report.lines().find_map(|l| l.trim().strip_prefix(label)).and_then(|rest| rest.split_whitespace().next()).and_then(|v| v.trim_end_matches('%').parse().ok())
}

pub async fn run(args: Args) -> Result<()> {
    anyhow::ensure!(Command::new("dnsperf").arg("-h").output().is_ok(), "dnsperf is not installed: apt-get install dnsperf");
    println!("skiff bench dns: {} Services ({} headless) in {NAMESPACES} namespaces, dnsperf for {} s with {} clients", args.services, args.services.div_ceil(10), args.seconds, args.clients);

    let rss_before = self_rss_mib();
    let started = Instant::now();
    let mut records = Records::new(DOMAIN);
    for n in 0..NAMESPACES.min(args.services.max(1)) {
        records.apply_namespace(&namespace(n));
    }
    for i in 0..args.services {
        let (service, slice) = objects(i);
        records.apply_service(&service);
        records.apply_endpoint_slice(&slice);
    }
    let rss_index = self_rss_mib() - rss_before;
    println!(
        "  index: {} Services with their slices in {:.2} s; RSS grew {rss_index:.1} MiB ({:.0} bytes a Service)",
        records.services(),
        started.elapsed().as_secs_f64(),
        rss_index * 1048576.0 / args.services.max(1) as f64
    );

    // The answers dnsperf will get, checked once here.
    for (name, want) in [(format!("svc-1.{}.svc.{DOMAIN}.", namespace(1)), 1), (format!("hl-0.{}.svc.{DOMAIN}.", namespace(0)), 3)] {
        let outcome = records.lookup(&Name::from_ascii(&name)?, RecordType::A);
        let Outcome::Answer(answer) = outcome else { anyhow::bail!("{name}: not answered from the index") };
        anyhow::ensure!(answer.answers.len() == want, "{name}: {} addresses, not {want}", answer.answers.len());
    }

    let records = Arc::new(RwLock::new(records));
    let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), args.port);
    let listening = Server::new(records.clone(), &[]).bind(&[addr]).await?;
    let addr = listening.addrs[0];
    let serving = tokio::spawn(listening.run());
    let rss_serving = self_rss_mib() - rss_before;
    println!("  serving on {addr} (UDP and TCP); RSS grew {rss_serving:.1} MiB in all");

    let input = tempfile::NamedTempFile::new()?;
    std::fs::write(input.path(), queries(args.services, 20_000))?;
    let cpu_before = cpu_seconds("self");
    let ran = Instant::now();
    let mut dnsperf = Command::new("dnsperf");
    dnsperf.arg("-s").arg(addr.ip().to_string()).arg("-p").arg(addr.port().to_string()).arg("-d").arg(input.path());
    dnsperf.args(["-l", &args.seconds.to_string(), "-c", &args.clients.to_string(), "-q", &args.outstanding.to_string()]);
    println!("  running: dnsperf -s {} -p {} -d <{} cluster names> -l {} -c {} -q {}", addr.ip(), addr.port(), 20_000, args.seconds, args.clients, args.outstanding);
    let output = tokio::task::spawn_blocking(move || dnsperf.output()).await?.context("running dnsperf")?;
    let cpu = cpu_seconds("self") - cpu_before;
    let wall = ran.elapsed().as_secs_f64();
    let report = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "dnsperf failed: {report}{}", String::from_utf8_lossy(&output.stderr));
    serving.abort();

    let qps = figure(&report, "Queries per second:").context("no queries/s in dnsperf's report")?;
    let completed = figure(&report, "Queries completed:").unwrap_or(0.0);
    let lost = figure(&report, "Queries lost:").unwrap_or(0.0);
    let latency = figure(&report, "Average Latency (s):").unwrap_or(0.0);
    let codes = report.lines().find(|l| l.trim().starts_with("Response codes:")).unwrap_or("").trim();
    let rss_after = self_rss_mib() - rss_before;
    println!("  dnsperf: {qps:.0} queries/s, {completed:.0} completed, {lost:.0} lost, average latency {:.3} ms; {codes}", latency * 1000.0);
    println!("  server: {:.1} µs of CPU a query ({cpu:.1} s CPU over {wall:.1} s); RSS grew {rss_after:.1} MiB in all after the run", cpu * 1e6 / completed.max(1.0));
    println!();
    println!("| Services | queries/s | avg latency | CPU/query | RSS: index | RSS: after run |");
    println!("|---|---|---|---|---|---|");
    println!("| {} | {qps:.0} | {:.3} ms | {:.1} µs | {rss_index:.1} MiB | {rss_after:.1} MiB |", args.services, latency * 1000.0, cpu * 1e6 / completed.max(1.0));
    Ok(())
}

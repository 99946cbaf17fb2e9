//! `skiff bench network`: pod-to-pod TCP throughput across two hosts, for
//! the vxlan and host-gw backends, beside the same transfer between the
//! hosts' own addresses. The ratio is what the pod network costs.
//!
//! Two network namespaces made here are the hosts, on one L2 segment (a
//! veth pair). Each has a pod, wired to a bridge as the CNI bridge plugin
//! wires a kubelet's pods, and the data path skiff-net programs on an
//! agent (`routes::DataPath`): the same code, without the API around it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use skiff_net::cluster::Backend;
use skiff_net::routes::{vtep_mac, DataPath, Peer};

#[derive(clap::Args)]
pub struct Args {
    /// MiB sent per transfer.
    #[arg(long, default_value_t = 2048)]
    mib: usize,
    /// Transfers per path; the median is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Backends measured, each in turn.
    #[arg(long, value_delimiter = ',', default_value = "vxlan,host-gw")]
    backends: Vec<Backend>,
}

/// A host: its namespace, its pod's, its address and its pod network.
struct Host {
    netns: String,
    pod_netns: String,
    address: Ipv4Addr,
    pod_cidr: ipnet::Ipv4Net,
}

impl Host {
    fn new(i: u8) -> Host {
        Host {
            netns: format!("skiff-bench-net-h{i}"),
            pod_netns: format!("skiff-bench-net-p{i}"),
            address: Ipv4Addr::new(192, 168, 231, i),
            pod_cidr: format!("10.244.{i}.0/24").parse().expect("a network"),
        }
    }

    fn pod_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.pod_cidr.network()) + 2)
    }

    fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.pod_cidr.network()) + 1)
    }
}

pub async fn run(args: Args) -> Result<()> {
    anyhow::ensure!(args.rounds > 0 && args.mib > 0, "--rounds and --mib must be positive");
    let hosts = [Host::new(1), Host::new(2)];
    let mut rows = Vec::new();
    for backend in &args.backends {
        if !matches!(backend, Backend::Vxlan | Backend::HostGw) {
            bail!("only vxlan and host-gw carry pod traffic themselves; {backend} is not measured");
        }
        let measured = measure(&hosts, *backend, &args);
        remove(&hosts);
        rows.push((*backend, measured?));
    }
    println!("\n| Backend | host to host | pod to pod (other host) | pod to pod / host to host |");
    println!("|---|---|---|---|");
    for (backend, (host, pod)) in rows {
        println!("| {backend} | {host:.2} Gbit/s | {pod:.2} Gbit/s | {:.0} % |", 100.0 * pod / host);
    }
    Ok(())
}

/// Median Gbit/s host to host and pod to pod.
fn measure(hosts: &[Host; 2], backend: Backend, args: &Args) -> Result<(f64, f64)> {
    remove(hosts);
    wire(hosts, backend)?;
    let mut host = Vec::new();
    let mut pod = Vec::new();
    for round in 1..=args.rounds {
        host.push(transfer(&hosts[0].netns, &hosts[1].netns, hosts[1].address, args.mib)?);
        pod.push(transfer(&hosts[0].pod_netns, &hosts[1].pod_netns, hosts[1].pod_ip(), args.mib)?);
        println!("{backend} round {round}: host to host {:.2} Gbit/s, pod to pod {:.2} Gbit/s", host[round - 1], pod[round - 1]);
    }
    Ok((median(&mut host), median(&mut pod)))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn sh(args: &[&str]) -> Result<()> {
    checked(Command::new(args[0]).args(&args[1..]), args)
}

/// Runs a command in a namespace (nsenter, as agents are run: `ip netns
/// exec` would remount /sys).
fn in_ns(netns: &str, args: &[&str]) -> Result<()> {
    checked(Command::new("nsenter").arg(format!("--net=/run/netns/{netns}")).args(args), args)
}

fn checked(command: &mut Command, args: &[&str]) -> Result<()> {
    let out = command.output().with_context(|| format!("running {}", args[0]))?;
    anyhow::ensure!(out.status.success(), "{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    Ok(())
}

/// The two hosts, their pods, and the data path between them.
fn wire(hosts: &[Host; 2], backend: Backend) -> Result<()> {
    for h in hosts {
        sh(&["ip", "netns", "add", &h.netns]).context("making the hosts' namespaces (run as root)")?;
        sh(&["ip", "netns", "add", &h.pod_netns])?;
    }
    sh(&["ip", "link", "add", "eth0", "netns", &hosts[0].netns, "type", "veth", "peer", "name", "eth0", "netns", &hosts[1].netns])?;
    for h in hosts {
        in_ns(&h.netns, &["ip", "addr", "add", &format!("{}/24", h.address), "dev", "eth0"])?;
        in_ns(&h.netns, &["ip", "link", "set", "eth0", "up"])?;
        in_ns(&h.netns, &["ip", "link", "set", "lo", "up"])?;
        in_ns(&h.netns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    }
    // Each host's end first (the VXLAN device and its MAC), then the routes to the other's pods.
    let data: Vec<String> = hosts.iter().map(|h| in_netns(&h.netns, || async { Ok(DataPath::new(backend, h.address, h.pod_cidr).await?.backend_data()) })).collect::<Result<_>>()?;
    for (i, h) in hosts.iter().enumerate() {
        let other = &hosts[1 - i];
        let peer = Peer { name: other.netns.clone(), pod_cidr: other.pod_cidr, address: other.address, vtep_mac: vtep_mac(&data[1 - i]), route_reflector: false };
        let mtu = in_netns(&h.netns, || async {
            let path = DataPath::new(backend, h.address, h.pod_cidr).await?;
            let off_link = path.program(std::slice::from_ref(&peer)).await?;
            anyhow::ensure!(off_link.is_empty(), "the other host is not on this host's segment");
            DataPath::pod_mtu(backend, h.address).await
        })?
        .to_string();
        // The pod, as the CNI bridge plugin wires it: a veth pair on the
        // host's bridge, which is the pod's gateway.
        in_ns(&h.netns, &["ip", "link", "add", "cni0", "mtu", &mtu, "type", "bridge"])?;
        in_ns(&h.netns, &["ip", "addr", "add", &format!("{}/24", h.gateway()), "dev", "cni0"])?;
        in_ns(&h.netns, &["ip", "link", "set", "cni0", "up"])?;
        in_ns(&h.netns, &["ip", "link", "add", "veth0", "mtu", &mtu, "type", "veth", "peer", "name", "eth0", "mtu", &mtu, "netns", &h.pod_netns])?;
        in_ns(&h.netns, &["ip", "link", "set", "veth0", "master", "cni0", "up"])?;
        in_ns(&h.pod_netns, &["ip", "addr", "add", &format!("{}/24", h.pod_ip()), "dev", "eth0"])?;
        in_ns(&h.pod_netns, &["ip", "link", "set", "eth0", "up"])?;
        in_ns(&h.pod_netns, &["ip", "link", "set", "lo", "up"])?;
        in_ns(&h.pod_netns, &["ip", "route", "add", "default", "via", &h.gateway().to_string()])?;
    }
    Ok(())
}

fn remove(hosts: &[Host; 2]) {
    for h in hosts {
        for ns in [&h.netns, &h.pod_netns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Runs `f` on a thread of its own inside a namespace, with a runtime of
/// its own: netlink sockets belong to the namespace they are opened in.
fn in_netns<T, F, Fut>(netns: &str, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce() -> Fut + Send,
    Fut: std::future::Future<Output = Result<T>>,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(netns)?;
                tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f())
            })
            .join()
            .unwrap_or_else(|_| bail!("a thread in {netns} panicked"))
    })
}

/// Moves the calling thread into a network namespace.
fn enter(netns: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(format!("/run/netns/{netns}")).with_context(|| format!("opening namespace {netns}"))?;
    // SAFETY: a valid descriptor of a network namespace; only this thread moves.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("entering namespace {netns}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

const PORT: u16 = 5201;

/// Sends `mib` MiB over one TCP connection from `from` to `to` (an address
/// in namespace `at`); Gbit/s as the receiver counted them.
fn transfer(from: &str, at: &str, to: Ipv4Addr, mib: usize) -> Result<f64> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let receiver = scope.spawn(move || -> Result<f64> {
            enter(at)?;
            let listener = TcpListener::bind((to, PORT))?;
            let _ = ready_tx.send(());
            let (mut stream, _) = listener.accept()?;
            let mut buf = vec![0u8; 1 << 18];
            let (started, mut total) = (Instant::now(), 0usize);
            loop {
                match stream.read(&mut buf)? {
                    0 => break,
                    n => total += n,
                }
            }
            Ok(total as f64 * 8.0 / started.elapsed().as_secs_f64() / 1e9)
        });
        let sender = scope.spawn(move || -> Result<()> {
            enter(from)?;
            ready_rx.recv_timeout(Duration::from_secs(10)).context("the receiver did not start")?;
            let mut stream = TcpStream::connect_timeout(&SocketAddr::from((to, PORT)), Duration::from_secs(5)).with_context(|| format!("connecting to {to}"))?;
            let chunk = vec![0x5au8; 1 << 18];
            for _ in 0..mib * 4 {
                stream.write_all(&chunk)?;
            }
            stream.shutdown(std::net::Shutdown::Write)?;
            Ok(())
        });
        let sent = sender.join().unwrap_or_else(|_| bail!("the sender panicked"));
        let received = receiver.join().unwrap_or_else(|_| bail!("the receiver panicked"));
        sent.and(received)
    })
}

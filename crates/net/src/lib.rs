//! The node's network, run by every agent: routes to other nodes' pods
//! (VXLAN overlay, plain L3 routes or BGP), the service proxy (nftables)
//! and cluster DNS. Like the kubelet, an API client only.

pub mod appsafe;
pub mod cluster;
pub mod dns;
pub mod hostports;
pub mod masquerade;
pub mod metrics;
mod netlink;
pub mod nft;
pub mod policy;
pub mod proxy;
pub mod routes;

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Node;
use kube::Api;

pub use cluster::{Backend, ClusterNetwork};

/// What one node is, for its network.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// The node's InternalIP: the VXLAN tunnels' and host-gw routes' end.
    pub address: IpAddr,
    /// What the network keeps while it runs (BIRD's configuration and socket).
    pub run_dir: std::path::PathBuf,
    /// The pods' bridge (the kubelet's CNI bridge).
    pub bridge: String,
    /// NetworkPolicy's enforcer, which the node agent also tells of new pods.
    pub enforcer: std::sync::Arc<policy::Enforcer>,
    /// AppSafe's flow observer, whose metrics the node agent serves.
    pub observer: std::sync::Arc<appsafe::Observer>,
}

/// The running network of a node; dropping it stops its loops (what they
/// programmed stays, so pods keep their traffic across an agent restart).
pub struct NodeNetwork {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for NodeNetwork {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// The MTU this node's pods get under the cluster's backend.
pub async fn pod_mtu(cluster: &ClusterNetwork, node: &NodeConfig) -> Result<u32> {
    routes::DataPath::pod_mtu(cluster.backend, ipv4(node.address)?).await
}

/// Sets up the node's side of the pod network and keeps it in step with
/// the cluster: NAT for pod traffic, routes to the other nodes' pods, the
/// service proxy. What cannot be set up is said on the Node as a Warning
/// event (`kubectl describe node`), as well as returned.
pub async fn start(client: kube::Client, cluster: ClusterNetwork, node: NodeConfig) -> Result<NodeNetwork> {
    let started = start_loops(client.clone(), cluster, &node).await;
    if let Err(e) = &started {
        let reporter = kube::runtime::events::Reporter { controller: "skiff-net".into(), instance: Some(node.name.clone()) };
        warn_on_node(&kube::runtime::events::Recorder::new(client, reporter), &node.name, "NetworkSetupFailed", "SetUpNetwork", format!("{e:#}")).await;
    }
    started
}

/// A Warning event about this node (a Node's events are found by its
/// name, which kubelets also put in the reference's uid).
pub(crate) async fn warn_on_node(recorder: &kube::runtime::events::Recorder, node: &str, reason: &str, action: &str, note: String) {
    let reference = k8s_openapi::api::core::v1::ObjectReference { kind: Some("Node".into()), api_version: Some("v1".into()), name: Some(node.into()), uid: Some(node.into()), ..Default::default() };
    let event = kube::runtime::events::Event { type_: kube::runtime::events::EventType::Warning, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
    if let Err(e) = recorder.publish(&event, &reference).await {
        tracing::debug!("event {reason}: {e}");
    }
}

async fn start_loops(client: kube::Client, cluster: ClusterNetwork, node: &NodeConfig) -> Result<NodeNetwork> {
    let mut tasks = Vec::new();
    let address = ipv4(node.address)?;
    sysctl("net/ipv4/ip_forward", "forwarding pod traffic between interfaces")?;
    // Pod-to-Service traffic answered by a pod on the same bridge must pass
    // the NAT hooks to be un-DNATed.
    sysctl("net/bridge/bridge-nf-call-iptables", "NAT for traffic between pods of one bridge (br_netfilter)")?;
    let pod_cidr = routes::pod_cidr(&Api::<Node>::all(client.clone()), &node.name).await?;
    if cluster.backend != Backend::None {
        masquerade::apply(cluster.cluster_cidr, pod_cidr).context("the pod network's NAT rules")?;
        let routes = std::sync::Arc::new(routes::Routes::start(client.clone(), &node.name, address, pod_cidr, &cluster, &node.run_dir).await?);
        let c = client.clone();
        tasks.push(tokio::spawn(supervise("routes", move || {
            let (routes, client) = (routes.clone(), c.clone());
            async move { routes.run(client).await }
        })));
        // hostPort comes with the pod network, as portmap does with flannel's.
        let (c, name, bridge) = (client.clone(), node.name.clone(), node.bridge.clone());
        tasks.push(tokio::spawn(supervise("host ports", move || {
            let (client, name, bridge) = (c.clone(), name.clone(), bridge.clone());
            async move { hostports::run(client, &name, pod_cidr, &bridge).await }
        })));
    }
    if cluster.network_policy {
        let (c, enforcer) = (client.clone(), node.enforcer.clone());
        tasks.push(tokio::spawn(supervise("network policy", move || {
            let (c, enforcer) = (c.clone(), enforcer.clone());
            async move { enforcer.run(c).await }
        })));
        // AppSafe comes with NetworkPolicy: Protect is enforced by it.
        let infrastructure = vec![cluster.cluster_cidr, cluster.service_cidr];
        let observed = appsafe::Node { name: node.name.clone(), address, infrastructure };
        let (c, observer) = (client.clone(), node.observer.clone());
        tasks.push(tokio::spawn(supervise("appsafe flows", move || {
            let (c, observer, observed) = (c.clone(), observer.clone(), observed.clone());
            async move { observer.run(c, observed).await }
        })));
    }
    if cluster.proxy {
        let dns = cluster.dns.then(|| (cluster::NAMESPACE.to_string(), cluster::DNS_SERVICE.to_string()));
        let proxy = std::sync::Arc::new(proxy::Proxy {
            node_name: node.name.clone(),
            node: proxy::rules::NodeContext { cluster_cidr: cluster.cluster_cidr, service_cidr: cluster.service_cidr, node_ips: vec![address] },
            service_lb: cluster.service_lb,
            local_services: dns.into_iter().collect(),
        });
        let c = client.clone();
        tasks.push(tokio::spawn(supervise("service proxy", move || {
            let (proxy, client) = (proxy.clone(), c.clone());
            async move { proxy.run(client).await }
        })));
    }
    if cluster.dns {
        tasks.push(serve_dns(client, &cluster, node).await?);
    }
    Ok(NodeNetwork { tasks })
}

/// Cluster DNS on this node: the kube-dns Service's address is made this
/// node's own (on `lo`, as NodeLocal DNSCache holds its address), so pods
/// and the node itself are answered here, by the DNS server in this agent.
async fn serve_dns(client: kube::Client, cluster: &ClusterNetwork, node: &NodeConfig) -> Result<tokio::task::JoinHandle<()>> {
    let address = cluster.cluster_dns;
    let netlink = netlink::Netlink::connect()?;
    let lo = netlink.link("lo").await?.context("this host has no lo")?.header.index;
    netlink.add_host_address(lo, address).await.context("taking the cluster DNS address")?;
    // Remembered for `skiff agent --cleanup`, which has no server to ask.
    std::fs::create_dir_all(&node.run_dir)?;
    std::fs::write(node.run_dir.join(DNS_ADDRESS_FILE), address.to_string())?;
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    // A host that already resolves through the cluster must not forward to itself.
    let upstreams: Vec<std::net::SocketAddr> = dns::upstreams_from_resolv_conf(&host).into_iter().filter(|a| a.ip() != IpAddr::V4(address)).collect();
    let domain = cluster.cluster_domain.clone();
    Ok(tokio::spawn(supervise("cluster DNS", move || {
        let config = dns::Config { listen: vec![std::net::SocketAddr::new(IpAddr::V4(address), 53)], cluster_domain: domain.clone(), upstreams: upstreams.clone() };
        dns::serve(client.clone(), config)
    })))
}

const DNS_ADDRESS_FILE: &str = "dns-address";

/// Removes everything the node's network made: devices (the pods' bridge
/// among them), addresses, routes, rules (`skiff agent --cleanup`).
pub async fn clean_up(bridge: &str, run_dir: &std::path::Path) -> Result<()> {
    routes::clean_up().await?;
    let netlink = netlink::Netlink::connect()?;
    netlink.delete_link(bridge).await?;
    if let Some(address) = std::fs::read_to_string(run_dir.join(DNS_ADDRESS_FILE)).ok().and_then(|a| a.trim().parse().ok()) {
        if let Some(lo) = netlink.link("lo").await? {
            netlink.delete_address(lo.header.index, address).await?;
        }
        std::fs::remove_file(run_dir.join(DNS_ADDRESS_FILE))?;
    }
    masquerade::remove()?;
    hostports::clean_up()?;
    nft::delete_table("inet", policy::model::TABLE)?;
    proxy::clean_up()
}

/// Turns a kernel switch on (`/proc/sys/<path>`), naming what needs it.
fn sysctl(path: &str, why: &str) -> Result<()> {
    std::fs::write(format!("/proc/sys/{path}"), "1").with_context(|| format!("setting {} = 1, needed for {why}", path.replace('/', ".")))
}

fn ipv4(address: IpAddr) -> Result<std::net::Ipv4Addr> {
    match address {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(_) => anyhow::bail!("the pod network needs an IPv4 node address, not {address}"),
    }
}

/// Runs a loop again whenever it fails, after a back-off (100 ms doubling
/// to 30 s).
async fn supervise<F, Fut>(name: &'static str, mut start: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        if let Err(e) = start().await {
            tracing::error!(task = name, "{e:#}; starting it again in {delay:?}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

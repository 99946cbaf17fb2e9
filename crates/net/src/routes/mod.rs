//! Routes to the other nodes' pods, by the cluster's backend, kept in step
//! with the Node objects: each node publishes what its peers need on its
//! Node (flannel's `flannel.alpha.coreos.com/*` annotations) and programs
//! what its peers published.

pub mod bgp;
mod vxlan;

pub use vxlan::mac_of as vtep_mac;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{reflector, watcher, WatchStreamExt};

use crate::cluster::Backend;
use crate::netlink::{Netlink, Route};

pub const BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
pub const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
pub const PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
pub const SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";

/// What this node needs of another to reach its pods.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    pub name: String,
    pub pod_cidr: Ipv4Net,
    pub address: Ipv4Addr,
    /// The MAC of its VXLAN device (vxlan only).
    pub vtep_mac: Option<String>,
    /// It reflects BGP routes for the other nodes (bgp only).
    pub route_reflector: bool,
}

fn is_route_reflector(node: &Node) -> bool {
    node.metadata.labels.as_ref().and_then(|l| l.get(bgp::ROUTE_REFLECTOR_LABEL)).is_some_and(|v| v == "true")
}

/// The peers the Node objects describe: every other node with a pod CIDR
/// and a public IP published for this backend.
pub fn peers(nodes: &[Arc<Node>], me: &str, backend: Backend) -> Vec<Peer> {
    let mut peers: Vec<Peer> = nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(me) && n.metadata.deletion_timestamp.is_none())
        .filter_map(|node| {
            let annotations = node.metadata.annotations.as_ref()?;
            if annotations.get(BACKEND_TYPE)?.as_str() != backend.to_string() {
                return None;
            }
            let vtep_mac = match backend {
                Backend::Vxlan => Some(vxlan::mac_of(annotations.get(BACKEND_DATA)?)?),
                _ => None,
            };
            Some(Peer {
                name: node.metadata.name.clone()?,
                pod_cidr: node.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok()?,
                address: annotations.get(PUBLIC_IP)?.parse().ok()?,
                vtep_mac,
                route_reflector: is_route_reflector(node),
            })
        })
        .collect();
    peers.sort();
    peers
}

/// The kernel's side of reaching other nodes' pods: the overlay device
/// (vxlan) and a route per peer. Knows nothing of the API.
pub struct DataPath {
    netlink: Netlink,
    backend: Backend,
    /// The interface holding the node's address, and the networks on it.
    underlay: u32,
    on_link: Vec<Ipv4Net>,
    vtep: Option<vxlan::Vtep>,
}

impl DataPath {
    /// Sets up this node's end: the VXLAN device under vxlan, nothing otherwise.
    pub async fn new(backend: Backend, address: Ipv4Addr, pod_cidr: Ipv4Net) -> Result<DataPath> {
        let netlink = Netlink::connect()?;
        let (underlay, mtu) = netlink.link_of(IpAddr::V4(address)).await?;
        let on_link = netlink.networks(underlay).await?;
        let vtep = match backend {
            Backend::Vxlan => Some(vxlan::Vtep::ensure(&netlink, address, underlay, mtu, pod_cidr).await?),
            _ => {
                // A node moved off vxlan keeps no overlay behind.
                netlink.delete_link(vxlan::DEVICE).await?;
                None
            }
        };
        Ok(DataPath { netlink, backend, underlay, on_link, vtep })
    }

    /// What peers need to know of this node (flannel's backend-data).
    pub fn backend_data(&self) -> String {
        self.vtep.as_ref().map(|v| v.backend_data()).unwrap_or_else(|| "null".into())
    }

    /// Programs a route to each peer's pods and removes the rest; returns
    /// the peers host-gw cannot reach, being off this node's segment.
    pub async fn program(&self, peers: &[Peer]) -> Result<Vec<Peer>> {
        let mut wanted = HashSet::new();
        let mut off_link = Vec::new();
        for peer in peers {
            match (self.backend, &self.vtep) {
                (Backend::Vxlan, Some(vtep)) => {
                    wanted.insert(vtep.route(peer));
                }
                (Backend::HostGw, _) => {
                    if self.on_link.iter().any(|net| net.contains(&peer.address)) {
                        wanted.insert(Route { destination: peer.pod_cidr, gateway: peer.address, link: self.underlay, onlink: false, protocol: crate::netlink::PROTOCOL.into() });
                    } else {
                        off_link.push(peer.clone());
                    }
                }
                _ => {}
            }
        }
        let present: HashSet<Route> = self.netlink.routes(crate::netlink::PROTOCOL).await?.into_iter().collect();
        for stale in present.difference(&wanted) {
            self.netlink.delete_route(stale).await?;
        }
        if let Some(vtep) = &self.vtep {
            vtep.sync_neighbours(&self.netlink, peers).await?;
        }
        for route in wanted.difference(&present) {
            self.netlink.add_route(route).await?;
        }
        Ok(off_link)
    }

    /// The MTU pods get: the node's, less the overlay's headers.
    pub async fn pod_mtu(backend: Backend, address: Ipv4Addr) -> Result<u32> {
        let (_, mtu) = Netlink::connect()?.link_of(IpAddr::V4(address)).await?;
        Ok(if backend == Backend::Vxlan { mtu - vxlan::OVERHEAD } else { mtu })
    }
}

/// This node's side of the pod network, kept in step with the Nodes.
pub struct Routes {
    data_path: DataPath,
    node_name: String,
    address: Ipv4Addr,
    /// BIRD and what it announces (bgp only).
    bird: Option<(bgp::Bird, Ipv4Net, crate::cluster::ClusterNetwork)>,
    events: Recorder,
    nodes: Api<Node>,
    /// The condition last posted on this node: peers whose pods it cannot reach.
    posted: tokio::sync::Mutex<Option<Vec<Peer>>>,
}

/// This node's condition naming the peers whose pods it has no route to.
pub const ROUTES_INCOMPLETE: &str = "PodRoutesIncomplete";

/// Waits for the node's pod CIDR.
pub async fn pod_cidr(nodes: &Api<Node>, name: &str) -> Result<Ipv4Net> {
    loop {
        if let Some(cidr) = nodes.get_opt(name).await?.and_then(|n| n.spec?.pod_cidr) {
            return cidr.parse().with_context(|| format!("node {name}'s podCIDR {cidr:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Routes {
    /// Sets up this node's end (the VXLAN device) and publishes it on the Node.
    pub async fn start(client: kube::Client, node_name: &str, address: Ipv4Addr, pod_cidr: Ipv4Net, cluster: &crate::cluster::ClusterNetwork, run_dir: &std::path::Path) -> Result<Routes> {
        let backend = cluster.backend;
        let data_path = DataPath::new(backend, address, pod_cidr).await?;
        let mut annotations = BTreeMap::from([
            (BACKEND_TYPE.to_string(), backend.to_string()),
            (PUBLIC_IP.to_string(), address.to_string()),
            (SUBNET_MANAGER.to_string(), "true".to_string()),
        ]);
        annotations.insert(BACKEND_DATA.to_string(), data_path.backend_data());
        let nodes: Api<Node> = Api::all(client.clone());
        let patch = serde_json::json!({"metadata": {"annotations": annotations}});
        nodes.patch(node_name, &PatchParams::default(), &Patch::Merge(patch)).await.context("publishing the node's network annotations")?;
        let reporter = Reporter { controller: "skiff-net".into(), instance: Some(node_name.to_string()) };
        let bird = (backend == Backend::Bgp).then(|| (bgp::Bird::new(run_dir.join("bird")), pod_cidr, cluster.clone()));
        let events = Recorder::new(client, reporter);
        Ok(Routes { data_path, node_name: node_name.to_string(), address, bird, events, nodes, posted: Default::default() })
    }

    /// Follows the Node objects for ever, programming a route per peer.
    pub async fn run(&self, client: kube::Client) -> Result<()> {
        let nodes: Api<Node> = Api::all(client);
        let (reader, writer) = reflector::store();
        let mut stream = std::pin::pin!(reflector(writer, watcher(nodes, watcher::Config::default())).default_backoff());
        let mut applied: Option<(Vec<Peer>, bool)> = None;
        let mut repair = tokio::time::interval(Duration::from_secs(60));
        // Nothing is programmed before the first list is whole: an empty
        // store would take a restarted agent's routes away.
        let mut listed = false;
        loop {
            tokio::select! {
                event = stream.next() => match event {
                    Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                    Some(Ok(watcher::Event::InitDone)) => listed = true,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => { tracing::warn!("watching nodes: {e}"); continue }
                    None => bail!("the node watch ended"),
                },
                // Routes someone else removed come back.
                _ = repair.tick() => applied = None,
            }
            if !listed {
                continue;
            }
            let nodes = reader.state();
            let reflector = nodes.iter().any(|n| n.metadata.name.as_deref() == Some(&self.node_name) && is_route_reflector(n));
            let wanted = (peers(&nodes, &self.node_name, self.data_path.backend), reflector);
            if applied.as_ref() == Some(&wanted) {
                continue;
            }
            match self.sync(&wanted.0, wanted.1).await {
                Ok(()) => applied = Some(wanted),
                Err(e) => tracing::warn!("programming routes to other nodes: {e:#}"),
            }
        }
    }

    async fn sync(&self, peers: &[Peer], reflector: bool) -> Result<()> {
        if let Some((bird, pod_cidr, cluster)) = &self.bird {
            let speaker = bgp::Speaker { address: self.address, pod_cidr: *pod_cidr, asn: cluster.bgp_asn, reflector, external: cluster.bgp_peers.clone() };
            bird.apply(&bgp::config(&speaker, peers))?;
        }
        let off_link = self.data_path.program(peers).await?;
        for peer in &off_link {
            self.not_on_link(peer).await;
        }
        self.post_condition(off_link).await?;
        tracing::info!(backend = %self.data_path.backend, peers = peers.len(), node = %self.address, "routes to other nodes' pods programmed");
        Ok(())
    }

    /// Says on the Node whether every peer's pods are routed, when that changes.
    async fn post_condition(&self, off_link: Vec<Peer>) -> Result<()> {
        let mut posted = self.posted.lock().await;
        if posted.as_ref() == Some(&off_link) {
            return Ok(());
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let condition = if off_link.is_empty() {
            serde_json::json!({"type": ROUTES_INCOMPLETE, "status": "False", "reason": "RoutesProgrammed", "message": "every peer node's pods are routed", "lastHeartbeatTime": now, "lastTransitionTime": now})
        } else {
            let peers: Vec<String> = off_link.iter().map(|p| format!("{} ({})", p.name, p.address)).collect();
            let message = format!("no route to the pods of {}: not on this node's L2 segment, which host-gw needs; use the vxlan or bgp backend", peers.join(", "));
            serde_json::json!({"type": ROUTES_INCOMPLETE, "status": "True", "reason": "PeerNotOnLink", "message": message, "lastHeartbeatTime": now, "lastTransitionTime": now})
        };
        // Merged by type, beside the kubelet's conditions.
        let patch = serde_json::json!({"status": {"conditions": [condition]}});
        self.nodes.patch_status(&self.node_name, &PatchParams::default(), &Patch::Strategic(patch)).await.context("posting the node's routes condition")?;
        *posted = Some(off_link);
        Ok(())
    }

    /// host-gw routes through a peer's address, which must be on this
    /// node's own segment: a peer behind a router is said so, not lost.
    async fn not_on_link(&self, peer: &Peer) {
        let note = format!(
            "node {} ({}) is not on this node's L2 segment ({}): host-gw cannot route to its pods {}; use the vxlan or bgp backend",
            peer.name,
            peer.address,
            self.data_path.on_link.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
            peer.pod_cidr
        );
        tracing::warn!("{note}");
        crate::warn_on_node(&self.events, &self.node_name, "PeerNotOnLink", "ProgramRoutes", note).await;
    }
}

/// Removes what the routes made: the overlay device and every route, its
/// own and BIRD's.
pub async fn clean_up() -> Result<()> {
    let netlink = Netlink::connect()?;
    netlink.delete_link(vxlan::DEVICE).await?;
    for protocol in [crate::netlink::PROTOCOL, rtnetlink::packet_route::route::RouteProtocol::Bird] {
        for route in netlink.routes(protocol).await? {
            netlink.delete_route(&route).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, cidr: Option<&str>, annotations: &[(&str, &str)]) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta { name: Some(name.into()), annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()), ..Default::default() },
            spec: Some(k8s_openapi::api::core::v1::NodeSpec { pod_cidr: cidr.map(Into::into), ..Default::default() }),
            ..Default::default()
        })
    }

    #[test]
    fn peers_are_the_other_nodes_that_published_this_backend() {
        let data = r#"{"VNI":1,"VtepMAC":"0a:1b:2c:3d:4e:5f"}"#;
        let nodes = vec![
            node("me", Some("10.42.0.0/24"), &[(BACKEND_TYPE, "vxlan"), (PUBLIC_IP, "192.0.2.1"), (BACKEND_DATA, data)]),
            node("b", Some("10.42.1.0/24"), &[(BACKEND_TYPE, "vxlan"), (PUBLIC_IP, "192.0.2.2"), (BACKEND_DATA, data)]),
            node("no-cidr", None, &[(BACKEND_TYPE, "vxlan"), (PUBLIC_IP, "192.0.2.3"), (BACKEND_DATA, data)]),
            node("host-gw", Some("10.42.3.0/24"), &[(BACKEND_TYPE, "host-gw"), (PUBLIC_IP, "192.0.2.4")]),
            node("no-mac", Some("10.42.4.0/24"), &[(BACKEND_TYPE, "vxlan"), (PUBLIC_IP, "192.0.2.5"), (BACKEND_DATA, "null")]),
        ];
        let found = peers(&nodes, "me", Backend::Vxlan);
        assert_eq!(found, vec![Peer { name: "b".into(), pod_cidr: "10.42.1.0/24".parse().unwrap(), address: "192.0.2.2".parse().unwrap(), vtep_mac: Some("0a:1b:2c:3d:4e:5f".into()), route_reflector: false }]);
        let found = peers(&nodes, "me", Backend::HostGw);
        assert_eq!(found.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["host-gw"]);
    }
}

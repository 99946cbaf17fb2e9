//! NetworkPolicy, enforced on every node in nftables (as Calico's Felix
//! and kube-router do it without a proxy in the path): pods, namespaces
//! and policies in; one table out, replaced whole in one transaction when
//! what it should hold changes. Verdicts are decided in the kernel's
//! forward hook, so traffic within the node (bridged, with br_netfilter),
//! across hosts and through a Service (after DNAT) is checked alike, and
//! connections already established keep going. The node's own traffic to
//! its pods (kubelet probes) never crosses the forward hook: it is open.

pub mod model;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Api;
use kube::runtime::watcher;

use crate::nft;
use model::PodInfo;

/// Changes closer together than this are written as one.
const SETTLE: Duration = Duration::from_millis(20);

// Short-lived, one at a time: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Change {
    /// The agent has a new pod to be isolated now.
    Admitted,
    Pod(watcher::Result<watcher::Event<Pod>>),
    Namespace(watcher::Result<watcher::Event<Namespace>>),
    Policy(watcher::Result<watcher::Event<NetworkPolicy>>),
}

/// Objects of one kind by namespace/name, as a watch shows them.
struct Objects<T> {
    now: HashMap<String, T>,
    listing: Option<HashMap<String, T>>,
}

impl<T: kube::Resource> Objects<T> {
    fn new() -> Self {
        Objects { now: HashMap::new(), listing: None }
    }

    fn key(object: &T) -> String {
        format!("{}/{}", object.meta().namespace.as_deref().unwrap_or(""), object.meta().name.as_deref().unwrap_or(""))
    }

    /// Takes one event; whether what it holds changed.
    fn apply(&mut self, event: watcher::Event<T>) -> bool {
        match event {
            watcher::Event::Init => {
                self.listing = Some(HashMap::new());
                false
            }
            watcher::Event::InitApply(object) => {
                if let Some(list) = &mut self.listing {
                    list.insert(Self::key(&object), object);
                }
                false
            }
            watcher::Event::InitDone => {
                self.now = self.listing.take().unwrap_or_default();
                true
            }
            watcher::Event::Apply(object) => {
                self.now.insert(Self::key(&object), object);
                true
            }
            watcher::Event::Delete(object) => {
                self.now.remove(&Self::key(&object));
                true
            }
        }
    }
}

/// A pod with an IPv4 address of its own on the pod network: its status's,
/// or `ip` for one whose status does not have it yet.
fn pod_info_at(pod: &Pod, ip: Option<std::net::Ipv4Addr>) -> Option<PodInfo> {
    let spec = pod.spec.as_ref()?;
    let status = pod.status.clone().unwrap_or_default();
    if spec.host_network == Some(true) || matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let ip = ip.or_else(|| status.pod_ips.iter().flatten().map(|p| p.ip.as_str()).chain(status.pod_ip.as_deref()).find_map(|ip| ip.parse().ok()))?;
    let named_ports = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| Some((p.name.clone()?, p.protocol.clone().unwrap_or_else(|| "TCP".into()), u16::try_from(p.container_port).ok()?)))
        .collect();
    Some(PodInfo { namespace: pod.metadata.namespace.clone()?, labels: pod.metadata.labels.clone().unwrap_or_default(), ip, named_ports })
}

/// The node's enforcer: the loop that keeps the table in step, and the way
/// the node agent has a new pod isolated before its first container starts.
#[derive(Default)]
pub struct Enforcer {
    /// Pods the agent gave an address that the watch may not show yet.
    early: std::sync::Mutex<HashMap<String, PodInfo>>,
    wake: tokio::sync::Notify,
    /// Tables written so far; 0 until the first, so until the cluster is listed.
    written: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Enforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enforcer").field("written", &*self.written.borrow()).finish_non_exhaustive()
    }
}

impl Enforcer {
    /// Once the pod's sandbox has its address, and before any of its
    /// containers runs: the table is written with the pod in it (isolated
    /// if a policy selects it). A no-op while the enforcer is not running.
    pub async fn admit(&self, pod: &Pod, ip: std::net::IpAddr) {
        let std::net::IpAddr::V4(ip) = ip else { return };
        let Some(info) = pod_info_at(pod, Some(ip)) else { return };
        let mut written = self.written.subscribe();
        let before = *written.borrow_and_update();
        if before == 0 {
            return;
        }
        self.early.lock().expect("not poisoned").insert(Objects::<Pod>::key(pod), info);
        self.wake.notify_one();
        // Bounded: a table that cannot be written must not hold pods back.
        let _ = tokio::time::timeout(Duration::from_secs(2), written.wait_for(|n| *n > before)).await;
    }

    /// Keeps this node's table in step with the cluster's policies.
    pub async fn run(&self, client: kube::Client) -> Result<()> {
        run(self, client).await
    }
}

/// Keeps this node's table in step with the cluster's policies.
async fn run(enforcer: &Enforcer, client: kube::Client) -> Result<()> {
    let config = watcher::Config::default();
    let pods = watcher(Api::<Pod>::all(client.clone()), config.clone()).map(Change::Pod);
    let namespaces = watcher(Api::<Namespace>::all(client.clone()), config.clone()).map(Change::Namespace);
    let policies = watcher(Api::<NetworkPolicy>::all(client), config).map(Change::Policy);
    let mut changes = std::pin::pin!(futures::stream::select(futures::stream::select(pods, namespaces), policies));
    let (mut pods, mut namespaces, mut policies) = (Objects::<Pod>::new(), Objects::<Namespace>::new(), Objects::<NetworkPolicy>::new());
    let mut listed = [false; 3];
    let mut written = String::new();
    loop {
        // One change (or a pod the agent admits), then all that follow it closely.
        let mut next = tokio::select! {
            change = changes.next() => change,
            _ = enforcer.wake.notified() => Some(Change::Admitted),
        };
        let mut dirty = false;
        loop {
            match next {
                Some(Change::Admitted) => dirty = true,
                None => anyhow::bail!("the watches ended"),
                Some(Change::Pod(Ok(e))) => {
                    listed[0] |= matches!(e, watcher::Event::InitDone);
                    dirty |= pods.apply(e);
                }
                Some(Change::Namespace(Ok(e))) => {
                    listed[1] |= matches!(e, watcher::Event::InitDone);
                    dirty |= namespaces.apply(e);
                }
                Some(Change::Policy(Ok(e))) => {
                    listed[2] |= matches!(e, watcher::Event::InitDone);
                    dirty |= policies.apply(e);
                }
                Some(Change::Pod(Err(e))) | Some(Change::Namespace(Err(e))) | Some(Change::Policy(Err(e))) => tracing::debug!("network policy watch: {e}"),
            }
            match tokio::time::timeout(SETTLE, changes.next()).await {
                Ok(more) => next = more,
                Err(_) => break,
            }
        }
        // Nothing is enforced from a partial view of the cluster.
        if !dirty || !listed.iter().all(|l| *l) {
            continue;
        }
        let mut infos: Vec<PodInfo> = pods.now.values().filter_map(|p| pod_info_at(p, None)).collect();
        {
            // Admitted pods count until the watch shows them with their address.
            let mut early = enforcer.early.lock().expect("not poisoned");
            early.retain(|key, _| pods.now.get(key).is_none_or(|p| pod_info_at(p, None).is_none()));
            infos.extend(early.values().cloned());
        }
        let labels: BTreeMap<String, BTreeMap<String, String>> = namespaces.now.values().filter_map(|n| Some((n.metadata.name.clone()?, n.metadata.labels.clone().unwrap_or_default()))).collect();
        let mut all: Vec<NetworkPolicy> = policies.now.values().cloned().collect();
        all.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
        let table = model::render(&all, &infos, &labels);
        if table != written {
            let script = format!("{}{table}", nft::fresh_table("inet", model::TABLE));
            match tokio::task::spawn_blocking(move || nft::apply(&script)).await? {
                Ok(()) => written = table,
                Err(e) => tracing::error!("writing the network policies: {e:#}"),
            }
        }
        enforcer.written.send_modify(|n| *n += 1);
    }
}

//! AppSafe on a node: the flow observer. It watches the node's new
//! connections (conntrack) and the policy table's drops (NFLOG), maps
//! their addresses to pods and the pods to their AppGroups, and writes
//! what it sees into the groups' status: flows learned by a group in
//! Discover, counted for the others; connections a group in Monitor or
//! Protect did not learn become `AppSafeViolation` Warning events on the
//! group (one per source, destination and port, its count raised on each
//! repeat) and `skiff_appsafe_violations_total`. The processes of the
//! node's pods are learned, reported and (in Protect) killed alike.
//!
//! New flows are written within a second; counts of known ones every
//! `COUNTS_EVERY`, so a busy group costs a write now and then, not one per
//! connection. Writes carry the resourceVersion read, so observers on
//! several nodes merge into one status without losing each other's flows.

mod kernel;
pub mod learn;
mod processes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use skiff_api::appsafe::{AppGroup, GroupKey, DISCOVER};

pub use kernel::LOG_GROUP;
use kernel::{Counts, Seen};
use learn::{Outcome, Pending, PodRef, View, Violation};

/// How often what was seen is written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Counts of flows a group already holds are written this often at most.
const COUNTS_EVERY: Duration = Duration::from_secs(30);

/// The node's flow observer, and what it has counted.
#[derive(Debug, Default)]
pub struct Observer {
    counts: Arc<Counts>,
    /// What the kernel readers send; they are started once, with the first
    /// run, and outlive a run that fails (the NFLOG group stays bound).
    seen: tokio::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Seen>>>,
    /// Violations by namespace, group, kind (ingress, egress, process) and mode.
    violations: Mutex<BTreeMap<[String; 4], u64>>,
}

/// Where the observer runs.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub address: Ipv4Addr,
    /// The pod network and the Services' range: addresses in them that are
    /// no pod's are the nodes' own (gateways, the cluster DNS).
    pub infrastructure: Vec<Ipv4Net>,
}

impl Observer {
    /// The observer's metrics, in Prometheus' text format.
    pub fn metrics(&self) -> String {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        let mut registry = prometheus_client::registry::Registry::default();
        let violations = Family::<Vec<(String, String)>, Counter>::default();
        for ([namespace, group, direction, mode], n) in self.violations.lock().expect("not poisoned").iter() {
            let labels = vec![("namespace".into(), namespace.clone()), ("group".into(), group.clone()), ("kind".into(), direction.clone()), ("mode".into(), mode.clone())];
            violations.get_or_create(&labels).inc_by(*n);
        }
        registry.register("skiff_appsafe_violations", "Connections and processes an AppGroup in Monitor or Protect had not learned", violations);
        let single = |n: u64| {
            let c = Counter::<u64>::default();
            c.inc_by(n);
            c
        };
        registry.register("skiff_appsafe_conntrack_events", "New connections this node's conntrack reported", single(self.counts.events.load(Ordering::Relaxed)));
        registry.register("skiff_appsafe_event_overflows", "Times the kernel dropped conntrack or NFLOG messages because the observer fell behind", single(self.counts.overflows.load(Ordering::Relaxed)));
        registry.register("skiff_appsafe_dropped_packets", "Packets the network policy table dropped and logged", single(self.counts.drops.load(Ordering::Relaxed)));
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }

    /// Observes until the kernel's sockets or the watches fail.
    pub async fn run(self: Arc<Self>, client: kube::Client, node: Node) -> Result<()> {
        let mut receiver = self.seen.lock().await;
        if receiver.is_none() {
            let (sink, seen) = tokio::sync::mpsc::unbounded_channel();
            for (name, read) in [("conntrack", kernel::read_conntrack as fn(_, _) -> Result<()>), ("NFLOG", kernel::read_drops)] {
                let (sink, counts) = (sink.clone(), self.counts.clone());
                std::thread::Builder::new().name(format!("appsafe {name}")).spawn(move || {
                    if let Err(e) = read(sink, counts) {
                        tracing::error!("appsafe: {name}: {e:#}");
                    }
                })?;
            }
            *receiver = Some(seen);
        }
        let seen = receiver.as_mut().expect("set above");
        let mut pods_watch = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).boxed();
        let mut groups_watch = watcher(Api::<AppGroup>::all(client.clone()), watcher::Config::default()).boxed();
        let mut state = State { node, client, pods: HashMap::new(), pod_ips: HashMap::new(), groups: HashMap::new(), pending: HashMap::new(), written: HashMap::new(), violations: HashMap::new(), events: HashMap::new(), running: HashMap::new() };
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut listed = [false; 2];
        loop {
            tokio::select! {
                event = pods_watch.next() => match event.context("the pod watch ended")? {
                    Ok(e) => {
                        listed[0] |= matches!(e, watcher::Event::InitDone);
                        state.apply_pod(e);
                    }
                    Err(e) => tracing::debug!("appsafe pods: {e}"),
                },
                event = groups_watch.next() => match event.context("the group watch ended")? {
                    Ok(e) => {
                        listed[1] |= matches!(e, watcher::Event::InitDone);
                        state.apply_group(e);
                    }
                    Err(e) => tracing::debug!("appsafe groups: {e}"),
                },
                got = seen.recv() => {
                    let got = got.context("the kernel readers stopped")?;
                    // Judged only against a whole view of the cluster.
                    if listed.iter().all(|l| *l) {
                        state.take(&self, got);
                        while let Ok(more) = seen.try_recv() {
                            state.take(&self, more);
                        }
                    }
                }
                _ = flush.tick() => {
                    if listed.iter().all(|l| *l) {
                        state.look_at_processes(&self);
                    }
                    state.flush().await
                }
            }
        }
    }
}

struct State {
    node: Node,
    client: kube::Client,
    pods: HashMap<Ipv4Addr, PodRef>,
    /// Each pod's address, to forget it when the pod goes.
    pod_ips: HashMap<String, Ipv4Addr>,
    groups: HashMap<GroupKey, AppGroup>,
    pending: HashMap<GroupKey, Pending>,
    /// When each group's status was last written from here.
    written: HashMap<GroupKey, Instant>,
    violations: HashMap<Violation, i32>,
    /// Events made, by name, with the count they hold.
    events: HashMap<String, i32>,
    /// The pids seen in each local pod (by uid) at the last look.
    running: HashMap<String, HashSet<i32>>,
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default())
}

fn group_key(group: &AppGroup) -> GroupKey {
    (group.metadata.namespace.clone().unwrap_or_default(), group.metadata.name.clone().unwrap_or_default())
}

impl State {
    fn apply_pod(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => {
                self.pods.clear();
                self.pod_ips.clear();
            }
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                let key = pod_key(&pod);
                if let Some(old) = self.pod_ips.remove(&key) {
                    self.pods.remove(&old);
                }
                let status = pod.status.as_ref();
                let finished = matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
                let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
                let ip = status.and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse::<Ipv4Addr>().ok());
                if let (Some(ip), false, false) = (ip, finished, host_network) {
                    let local = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(self.node.name.as_str());
                    let reference = PodRef { uid: pod.metadata.uid.clone().unwrap_or_default(), namespace: pod.metadata.namespace.clone().unwrap_or_default(), name: pod.metadata.name.clone().unwrap_or_default(), labels: pod.metadata.labels.clone().unwrap_or_default(), local };
                    self.pods.insert(ip, reference);
                    self.pod_ips.insert(key, ip);
                }
            }
            watcher::Event::Delete(pod) => {
                if let Some(ip) = self.pod_ips.remove(&pod_key(&pod)) {
                    self.pods.remove(&ip);
                }
            }
            watcher::Event::InitDone => {}
        }
    }

    fn apply_group(&mut self, event: watcher::Event<AppGroup>) {
        match event {
            watcher::Event::Init => self.groups.clear(),
            watcher::Event::InitApply(group) | watcher::Event::Apply(group) => {
                self.groups.insert(group_key(&group), group);
            }
            watcher::Event::Delete(group) => {
                let key = group_key(&group);
                self.groups.remove(&key);
                self.pending.remove(&key);
            }
            watcher::Event::InitDone => {}
        }
    }

    fn view(&self) -> View<'_> {
        View { pods: &self.pods, groups: &self.groups, infrastructure: &self.node.infrastructure, node_address: self.node.address }
    }

    fn take(&mut self, observer: &Observer, seen: Seen) {
        let now = Utc::now();
        for outcome in self.view().outcomes(seen) {
            match outcome {
                Outcome::Learn { group, direction, peer, port, protocol } => self.pending.entry(group).or_default().add(direction, peer, port, protocol, now),
                Outcome::LearnProcess { .. } => {}
                Outcome::Violation(v) => self.violated(observer, v),
            }
        }
    }

    fn violated(&mut self, observer: &Observer, v: Violation) {
        let labels = [v.group.0.clone(), v.group.1.clone(), v.kind.to_string(), v.mode.to_string()];
        *observer.violations.lock().expect("not poisoned").entry(labels).or_default() += 1;
        *self.violations.entry(v).or_default() += 1;
    }

    /// The processes new in this node's pods since the last look: learned,
    /// reported, or killed.
    fn look_at_processes(&mut self, observer: &Observer) {
        let now = Utc::now();
        let local: Vec<PodRef> = self.pods.values().filter(|p| p.local).cloned().collect();
        let mut running = HashMap::new();
        for pod in local {
            if self.view().group_of(&pod).is_none() {
                continue;
            }
            let pids: HashSet<i32> = processes::pids(&pod.uid).into_iter().collect();
            let seen = self.running.remove(&pod.uid).unwrap_or_default();
            for &pid in pids.difference(&seen) {
                let Some(process) = processes::describe(pid) else { continue };
                let outcome = self.view().process_outcome(&pod, &process);
                match outcome {
                    Some((Outcome::LearnProcess { group, name, path }, _)) => self.pending.entry(group).or_default().add_process(name, path, now),
                    Some((Outcome::Violation(v), kill)) => {
                        if kill {
                            processes::kill(&process);
                        }
                        self.violated(observer, v);
                    }
                    _ => {}
                }
            }
            running.insert(pod.uid.clone(), pids);
        }
        self.running = running;
    }

    async fn flush(&mut self) {
        let due: Vec<GroupKey> = self
            .pending
            .iter()
            .filter(|(key, pending)| {
                let status = self.groups.get(*key).and_then(|g| g.status.as_ref());
                pending.has_new(status) || self.written.get(*key).is_none_or(|t| t.elapsed() >= COUNTS_EVERY)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            let Some(pending) = self.pending.remove(&key) else { continue };
            match self.write_flows(&key, &pending).await {
                Ok(()) => {
                    self.written.insert(key, Instant::now());
                }
                Err(e) => {
                    tracing::warn!(namespace = %key.0, group = %key.1, "appsafe: writing flows: {e}");
                    self.pending.insert(key, pending);
                }
            }
        }
        for (violation, count) in std::mem::take(&mut self.violations) {
            if let Err(e) = self.report(&violation, count).await {
                tracing::warn!(namespace = %violation.group.0, group = %violation.group.1, "appsafe: reporting a violation: {e}");
            }
        }
    }

    /// Merges flows into the group's status, read again on a conflict.
    async fn write_flows(&mut self, key: &GroupKey, pending: &Pending) -> Result<(), kube::Error> {
        let api = Api::<AppGroup>::namespaced(self.client.clone(), &key.0);
        let mut current = match self.groups.get(key) {
            Some(g) => g.clone(),
            None => return Ok(()),
        };
        for _ in 0..5 {
            let learning = current.mode() == DISCOVER;
            let merged = learn::merge(&current.status.clone().unwrap_or_default(), pending, learning, Utc::now());
            if current.status.as_ref() == Some(&merged) {
                return Ok(());
            }
            let mut updated = current.clone();
            updated.status = Some(merged);
            let body = serde_json::to_vec(&updated).expect("an AppGroup serializes");
            match api.replace_status(&key.1, &PostParams::default(), body).await {
                Ok(written) => {
                    self.groups.insert(key.clone(), written);
                    return Ok(());
                }
                Err(kube::Error::Api(e)) if e.code == 409 => current = api.get_status(&key.1).await?,
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Err(kube::Error::Service("the group kept changing under the write".into()))
    }

    /// One event per violation, its count raised on each repeat, as
    /// upstream's event recorder folds repeats.
    async fn report(&mut self, v: &Violation, count: i32) -> Result<(), kube::Error> {
        let (namespace, group) = &v.group;
        let Some(uid) = self.groups.get(&v.group).and_then(|g| g.metadata.uid.clone()) else { return Ok(()) };
        let api = Api::<Event>::namespaced(self.client.clone(), namespace);
        let name = format!("{group}.{:016x}", fingerprint(v));
        let now = Utc::now();
        let total = match self.events.get(&name) {
            Some(held) => held + count,
            None => {
                let message = format!("{} is not among what the group learned ({}: {})", v.what, v.mode, v.outcome);
                let event: Event = serde_json::from_value(json!({
                    "metadata": {"name": name, "namespace": namespace},
                    "involvedObject": {"apiVersion": skiff_api::appsafe::API_VERSION, "kind": "AppGroup", "namespace": namespace, "name": group, "uid": uid},
                    "reason": "AppSafeViolation", "type": "Warning", "message": message,
                    "source": {"component": "skiff-appsafe", "host": self.node.name},
                    "reportingComponent": "skiff-appsafe", "reportingInstance": self.node.name,
                    "firstTimestamp": now, "lastTimestamp": now, "count": count,
                }))
                .expect("an Event");
                match api.create(&PostParams::default(), &event).await {
                    Ok(_) => {
                        self.events.insert(name, count);
                        return Ok(());
                    }
                    // Made before (by this node before a restart, or another).
                    Err(kube::Error::Api(e)) if e.code == 409 => api.get(&name).await?.count.unwrap_or(0) + count,
                    Err(e) => return Err(e),
                }
            }
        };
        api.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"count": total, "lastTimestamp": now}))).await?;
        self.events.insert(name, total);
        Ok(())
    }
}

/// A stable name for one violation's event.
fn fingerprint(v: &Violation) -> u64 {
    // FNV-1a: stable across processes, unlike the std hasher's keys.
    let text = format!("{}|{}|{}|{}", v.kind, v.mode, v.what, v.outcome);
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

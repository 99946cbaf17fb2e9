//! The scheduler: assigns each pending pod to a node, by upstream's rules
//! (filters and scores in `plugins`, the queue in `queue`), through the
//! API only: it watches nodes and pods, binds through `pods/binding` and
//! reports `Scheduled` and `FailedScheduling` events.
//!
//! Decisions are made one pod at a time against an in-memory picture of
//! the cluster: a chosen node counts the pod at once ("assumed") while the
//! binding is written in the background, so the next pod is placed without
//! waiting for the API.

pub mod config;
pub mod crash;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
mod model;
mod plugins;
mod preemption;
pub use skiff_quantity as quantity;
mod queue;
mod topology;
mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::{CSIDriver, CSIStorageCapacity, StorageClass};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

use config::{Config, Plugin, Profile};
use model::{NodeInfo, PodInfo, WatchedPod};
/// Upstream keeps this rule in a package the scheduler and the node
/// lifecycle controller share (component-helpers); here the scheduler
/// exports it.
pub use plugins::{selects_node, tolerates};
pub use model::drop_unread;
pub use topology::matches as selector_matches;
/// Upstream's `FindMatchingVolume` rules, which the volume controller
/// shares with VolumeBinding.
pub mod volume_rules {
    pub use crate::volumes::{best_match, claim_ref_patch, claimed_by, claims_of, ephemeral_claim_name, BIND_COMPLETED, BOUND_BY_CONTROLLER};
}
use plugins::Reason;
use queue::Queue;
use topology::{Cycle, Domains, Tallies};
use volumes::{Choice, Storage};

#[derive(Debug, Clone)]
pub struct Options {
    /// The profiles: pods whose `schedulerName` is a profile's name are
    /// ours, scheduled by its plugins, and events about them are reported
    /// under that name.
    pub profiles: Vec<Profile>,
    /// A pod's first wait after a failed attempt, doubled per failure up
    /// to the second.
    pub backoff: (Duration, Duration),
    /// Bindings written at once.
    pub parallel_binds: usize,
}

impl Options {
    pub fn from_config(config: &Config) -> Options {
        Options { profiles: config.profiles.clone(), backoff: (config.initial_backoff, config.max_backoff), parallel_binds: 64 }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::from_config(&Config::with_profiles(&["default-scheduler".into()]))
    }
}

/// The nodes in a fixed order (for sampling from a rotating start), and
/// where each one is.
#[derive(Default)]
struct Nodes {
    list: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Each topology key's domains per node, made when first needed and
    /// kept until a node comes, goes, or changes its labels.
    domains: Mutex<HashMap<String, Arc<Domains>>>,
    /// Counts up each time the domains may have changed.
    generation: u64,
    /// On how many nodes each image is (ImageLocality).
    image_nodes: HashMap<String, usize>,
}

impl Nodes {
    /// The nodes' domains for a topology key.
    fn domains(&self, key: &str) -> Arc<Domains> {
        let mut cache = self.domains.lock().unwrap_or_else(PoisonError::into_inner);
        cache.entry(key.to_string()).or_insert_with(|| Arc::new(Domains::new(&self.list, key))).clone()
    }

    fn domains_changed(&mut self) {
        self.domains.lock().unwrap_or_else(PoisonError::into_inner).clear();
        self.generation += 1;
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        self.index.get(name).map(|i| &mut self.list[*i])
    }

    fn count_images(&mut self, node: &NodeInfo, delta: isize) {
        for image in node.images.keys() {
            let n = self.image_nodes.entry(image.clone()).or_default();
            *n = n.saturating_add_signed(delta);
        }
    }

    fn insert(&mut self, info: NodeInfo) {
        self.count_images(&info, 1);
        match self.index.get(&info.name).copied() {
            Some(i) => {
                if self.list[i].labels() != info.labels() {
                    self.domains_changed();
                }
                let old = std::mem::replace(&mut self.list[i], info);
                self.count_images(&old, -1);
            }
            None => {
                self.domains_changed();
                self.index.insert(info.name.clone(), self.list.len());
                self.list.push(info);
            }
        }
    }

    fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.domains_changed();
        let gone: Vec<NodeInfo> = self.list.iter().filter(|n| !keep(&n.name)).cloned().collect();
        for node in &gone {
            self.count_images(node, -1);
        }
        self.list.retain(|n| keep(&n.name));
        self.index = self.list.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
    }
}

#[derive(Default)]
struct State {
    /// Pods whose `schedulerName` names one of these are ours.
    profiles: Vec<Arc<Profile>>,
    nodes: Nodes,
    next_start: usize,
    /// Every pod holding room on a node (bound, or assumed), by uid.
    placed: HashMap<String, PodInfo>,
    /// Pods nominated to a node by preemption, by uid: (node, pod).
    nominated: HashMap<String, (String, PodInfo)>,
    /// The placed pods with required anti-affinity, which every pod must
    /// respect.
    repelling: HashSet<String>,
    /// Placed pods counted per topology domain (spread and affinity).
    tallies: Tallies,
    /// Assumed pods whose binding is in flight.
    binding: HashSet<String>,
    queue: Queue,
    /// The last FailedScheduling message per pod, so it is not repeated.
    reported: HashMap<String, String>,
    /// Which watched kinds have been listed (by `Watched::SLOT`): pods
    /// are placed only against a whole picture.
    synced: [bool; WATCHED],
    /// PodDisruptionBudgets by namespace/name, which preemption spares.
    budgets: HashMap<String, Arc<PodDisruptionBudget>>,
    /// Claims, volumes and classes (VolumeBinding).
    storage: Storage,
}

struct Scheduler {
    client: kube::Client,
    state: Mutex<State>,
    wake: Notify,
    binds: Arc<Semaphore>,
    events: tokio::sync::mpsc::Sender<Event>,
    /// Condition updates written at once: kube clients do not back off
    /// on 429 by themselves, so the scheduler must not flood the server.
    reports: Arc<Semaphore>,
}

/// Events waiting to be written; beyond this many they are dropped, as
/// upstream's event broadcaster drops them, so reporting never slows
/// scheduling.
const QUEUED_EVENTS: usize = 1000;
const PARALLEL_EVENTS: usize = 4;

/// Writes queued events, a few at a time.
async fn write_events(client: kube::Client, events: tokio::sync::mpsc::Receiver<Event>) {
    tokio_stream::wrappers::ReceiverStream::new(events)
        .for_each_concurrent(PARALLEL_EVENTS, |event| {
            let client = client.clone();
            async move {
                let ns = event.metadata.namespace.clone().unwrap_or_default();
                // The created Event the server answers with is not read:
                // only its status is, so the body is not decoded.
                let url = Api::<Event>::namespaced(client.clone(), &ns).resource_url().to_string();
                let body = serde_json::to_vec(&event).expect("an Event serializes");
                let created = match kube::core::Request::new(url).create(&PostParams::default(), body) {
                    Ok(request) => client.request_text(request.map(Into::into)).await.map(drop),
                    Err(e) => Err(kube::Error::BuildRequest(e)),
                };
                if let Err(e) = created {
                    tracing::debug!("recording event {:?}: {e}", event.reason);
                }
            }
        })
        .await
}

/// Schedules until the process ends.
pub async fn run(client: kube::Client, options: Options) -> Result<()> {
    let (events, queued) = tokio::sync::mpsc::channel(QUEUED_EVENTS);
    // Stopped with this future (a scheduler that loses its Lease).
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(write_events(client.clone(), queued));
    let scheduler = Arc::new(Scheduler {
        binds: Arc::new(Semaphore::new(options.parallel_binds)),
        events,
        reports: Arc::new(Semaphore::new(PARALLEL_EVENTS)),
        client,
        state: Mutex::new(State {
            profiles: options.profiles.into_iter().map(Arc::new).collect(),
            queue: Queue::new(options.backoff.0, options.backoff.1),
            ..State::default()
        }),
        wake: Notify::new(),
    });
    // Each task is started again if it ends or panics.
    let task = |name: &'static str, start: fn(Arc<Scheduler>) -> futures::future::BoxFuture<'static, ()>| {
        let s = scheduler.clone();
        metrics::starting(name);
        crash::supervise(name, move || start(s.clone()), move || metrics::restarted(name))
    };
    tasks.spawn(task("watch nodes", |s| follow::<Node>(s).boxed()));
    tasks.spawn(task("watch pods", |s| follow::<WatchedPod>(s).boxed()));
    tasks.spawn(task("watch poddisruptionbudgets", |s| follow::<PodDisruptionBudget>(s).boxed()));
    tasks.spawn(task("watch persistentvolumeclaims", |s| follow::<PersistentVolumeClaim>(s).boxed()));
    tasks.spawn(task("watch persistentvolumes", |s| follow::<PersistentVolume>(s).boxed()));
    tasks.spawn(task("watch storageclasses", |s| follow::<StorageClass>(s).boxed()));
    tasks.spawn(task("watch csidrivers", |s| follow::<CSIDriver>(s).boxed()));
    tasks.spawn(task("watch csistoragecapacities", |s| follow::<CSIStorageCapacity>(s).boxed()));
    tasks.spawn(task("flush the queue", |s| flush(s).boxed()));
    task("schedule", |s| async move { s.schedule_forever().await }.boxed()).await;
    Ok(())
}

/// Moves backed-off pods back in line as their time comes.
async fn flush(s: Arc<Scheduler>) {
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    loop {
        ticks.tick().await;
        let moved = {
            let mut st = s.state();
            let moved = st.queue.flush();
            let (active, backoff, unschedulable) = st.queue.pending();
            metrics::pending(active, backoff, unschedulable);
            moved
        };
        if moved {
            s.wake.notify_one();
        }
    }
}

/// How many kinds the scheduler watches.
const WATCHED: usize = 8;

/// What a watched kind changes in the scheduler's picture.
trait Watched: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static {
    /// Its place in `State::synced`.
    const SLOT: usize;
    /// A whole new list (at start, or after the watch had to start over).
    fn relisted(st: &mut State, all: Vec<Self>);
    fn changed(st: &mut State, object: Self);
    fn deleted(st: &mut State, object: Self);
    /// Drops what scheduling never reads before the object is kept:
    /// managedFields, by default.
    fn trim(&mut self) {
        self.managed_fields_mut().clear();
    }
}

impl Watched for Node {
    const SLOT: usize = 0;
    fn relisted(st: &mut State, all: Vec<Node>) {
        let seen: HashSet<String> = all.into_iter().map(|n| st.upsert_node(n)).collect();
        st.nodes.retain(|name| seen.contains(name));
        st.queue.cluster_changed();
    }

    fn changed(st: &mut State, node: Node) {
        st.upsert_node(node);
        st.queue.cluster_changed();
    }

    fn deleted(st: &mut State, node: Node) {
        let name = node.metadata.name.unwrap_or_default();
        st.nodes.retain(|n| n != name);
    }
}

impl Watched for PodDisruptionBudget {
    const SLOT: usize = 2;
    fn relisted(st: &mut State, all: Vec<Self>) {
        st.budgets = all.into_iter().map(|b| (key_of(&b), Arc::new(b))).collect();
    }

    fn changed(st: &mut State, budget: Self) {
        st.budgets.insert(key_of(&budget), Arc::new(budget));
    }

    fn deleted(st: &mut State, budget: Self) {
        st.budgets.remove(&key_of(&budget));
    }
}

/// The storage kinds VolumeBinding reads, each kept whole by
/// `namespace/name` (or name); any change may make a waiting pod fit.
trait StorageKind: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static {
    const SLOT: usize;
    fn kept(storage: &mut Storage) -> &mut HashMap<String, Arc<Self>>;
}

impl StorageKind for PersistentVolumeClaim {
    const SLOT: usize = 3;
    fn kept(storage: &mut Storage) -> &mut HashMap<String, Arc<Self>> {
        &mut storage.claims
    }
}

impl StorageKind for PersistentVolume {
    const SLOT: usize = 4;
    fn kept(storage: &mut Storage) -> &mut HashMap<String, Arc<Self>> {
        &mut storage.volumes
    }
}

impl StorageKind for StorageClass {
    const SLOT: usize = 5;
    fn kept(storage: &mut Storage) -> &mut HashMap<String, Arc<Self>> {
        &mut storage.classes
    }
}

impl StorageKind for CSIDriver {
    const SLOT: usize = 6;
    fn kept(storage: &mut Storage) -> &mut HashMap<String, Arc<Self>> {
        &mut storage.drivers
    }
}

impl StorageKind for CSIStorageCapacity {
    const SLOT: usize = 7;
    fn kept(storage: &mut Storage) -> &mut HashMap<String, Arc<Self>> {
        &mut storage.capacities
    }
}

/// How the scheduler keys what it keeps: `namespace/name`, or the name of
/// a cluster-scoped object.
fn key_of<K: kube::Resource>(object: &K) -> String {
    match object.meta().namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", object.name_any()),
        None => object.name_any(),
    }
}

impl<K: StorageKind> Watched for K {
    const SLOT: usize = <K as StorageKind>::SLOT;
    fn relisted(st: &mut State, all: Vec<Self>) {
        *K::kept(&mut st.storage) = all.into_iter().map(|o| (key_of(&o), Arc::new(o))).collect();
        st.queue.cluster_changed();
    }

    fn changed(st: &mut State, object: Self) {
        K::kept(&mut st.storage).insert(key_of(&object), Arc::new(object));
        st.queue.cluster_changed();
    }

    fn deleted(st: &mut State, object: Self) {
        K::kept(&mut st.storage).remove(&key_of(&object));
    }
}

impl Watched for WatchedPod {
    const SLOT: usize = 1;
    fn trim(&mut self) {
        model::keep_what_scheduling_reads(&mut self.0);
    }

    fn relisted(st: &mut State, pods: Vec<WatchedPod>) {
        let live: HashSet<String> = pods.iter().filter_map(|p| p.0.metadata.uid.clone()).collect();
        let gone: Vec<PodInfo> = st.placed.values().filter(|p| !live.contains(&p.uid) && !st.binding.contains(&p.uid)).cloned().collect();
        for pod in gone {
            st.release(&pod);
        }
        for pod in pods {
            st.observe(pod.0);
        }
    }

    fn changed(st: &mut State, pod: WatchedPod) {
        st.observe(pod.0);
    }

    fn deleted(st: &mut State, pod: WatchedPod) {
        let info = PodInfo::new(Arc::new(pod.0));
        st.queue.remove(&info.uid);
        st.reported.remove(&info.uid);
        if st.release(&info) {
            st.queue.cluster_changed();
        }
    }
}

/// The scheduler profile a pod asks for (`spec.schedulerName`).
fn profile_of(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).unwrap_or("default-scheduler")
}

/// Feeds one kind's watch into the picture, and wakes the scheduling loop
/// after each change.
async fn follow<K: Watched>(s: Arc<Scheduler>) {
    let mut events = watcher(Api::<K>::all(s.client.clone()), watcher::Config::default()).modify(K::trim).boxed();
    let mut relisted: Option<Vec<K>> = None;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!("watching {}: {e}", K::plural(&()));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut st = s.state();
        // A panic on one object skips it; the watch goes on.
        let applied = std::panic::catch_unwind(AssertUnwindSafe(|| match event {
            watcher::Event::Init => relisted = Some(Vec::new()),
            watcher::Event::InitApply(o) => relisted.get_or_insert_with(Vec::new).push(o),
            watcher::Event::InitDone => {
                st.synced[K::SLOT] = true;
                K::relisted(&mut st, relisted.take().unwrap_or_default());
            }
            watcher::Event::Apply(o) => K::changed(&mut st, o),
            watcher::Event::Delete(o) => K::deleted(&mut st, o),
        }));
        drop(st);
        if let Err(panic) = applied {
            tracing::error!("watching {}: a change panicked and was skipped: {}", K::plural(&()), crash::message(&*panic));
            metrics::panicked(&format!("watch {}", K::plural(&())));
        }
        s.wake.notify_one();
    }
}

impl State {
    /// Adds or refreshes a node; returns its name.
    fn upsert_node(&mut self, node: Node) -> String {
        let node = Arc::new(node);
        let name = node.metadata.name.clone().unwrap_or_default();
        let info = match self.nodes.get_mut(&name) {
            Some(old) => old.refreshed(node),
            None => {
                // Pods placed before their node was seen.
                let mut info = NodeInfo::new(node);
                for pod in self.placed.values().filter(|p| p.node.as_deref() == Some(name.as_str())) {
                    info.add_pod(pod);
                }
                info
            }
        };
        self.nodes.insert(info);
        name
    }

    /// The profile that schedules the pod, if it is ours.
    fn profile(&self, pod: &Pod) -> Option<Arc<Profile>> {
        self.profiles.iter().find(|p| p.name == profile_of(pod)).cloned()
    }

    /// Takes in a pod as the API now has it.
    fn observe(&mut self, pod: Pod) {
        let profile = self.profile(&pod);
        // SchedulingGates: a gated pod waits, unqueued, for its gates to go.
        let gated = pod.spec.as_ref().and_then(|s| s.scheduling_gates.as_ref()).is_some_and(|g| !g.is_empty());
        let ours = profile.is_some_and(|p| !(gated && p.runs(Plugin::SchedulingGates)));
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let info = PodInfo::new(Arc::new(pod));
        if info.terminal {
            self.queue.remove(&info.uid);
            if self.release(&info) {
                self.queue.cluster_changed();
            }
            return;
        }
        if let Some(node) = info.node.clone() {
            // Bound (by us or anyone): it holds room on its node. Its
            // binding may be seen here before the binder hears back.
            if let Some((since_queued, attempts)) = self.queue.done(&info.uid) {
                metrics::scheduled(since_queued, attempts);
            }
            self.binding.remove(&info.uid);
            self.nominated.remove(&info.uid);
            self.reported.remove(&info.uid);
            if let Some(old) = self.placed.get(&info.uid).cloned() {
                if old.node.as_deref() != Some(node.as_str()) {
                    self.release(&old);
                }
            }
            if let Some(n) = self.nodes.get_mut(&node) {
                n.add_pod(&info);
            }
            self.place(info);
            return;
        }
        if ours && !deleting && !self.binding.contains(&info.uid) {
            self.queue.add_or_update(info);
        } else if deleting || !ours {
            self.queue.remove(&info.uid);
            self.nominated.remove(&info.uid);
        }
    }

    /// Records a pod as holding room on its node.
    fn place(&mut self, pod: PodInfo) {
        if pod.repels {
            self.repelling.insert(pod.uid.clone());
        }
        let (generation, nodes, index) = (self.nodes.generation, &self.nodes.list, &self.nodes.index);
        self.tallies.count(&pod, 1, generation, nodes, index);
        match self.placed.insert(pod.uid.clone(), pod) {
            Some(old) => self.tallies.count(&old, -1, generation, nodes, index),
            None => self.queue.pod_placed(),
        }
    }

    /// Frees the room a pod held; true if it held any.
    fn release(&mut self, pod: &PodInfo) -> bool {
        self.repelling.remove(&pod.uid);
        let Some(placed) = self.placed.remove(&pod.uid) else { return false };
        self.tallies.count(&placed, -1, self.nodes.generation, &self.nodes.list, &self.nodes.index);
        if let Some(n) = placed.node.as_ref().and_then(|n| self.nodes.get_mut(n)) {
            n.remove_pod(&placed);
        }
        true
    }

    /// How many feasible nodes to look for before scoring, as upstream's
    /// `percentageOfNodesToScore`: all of a small cluster, else the given
    /// share, or a share shrinking with the cluster's size (at least 5%),
    /// and at least 100 nodes.
    fn nodes_to_find(&self, percentage: Option<u32>) -> usize {
        let all = self.nodes.list.len();
        if all < 100 {
            return all;
        }
        let percent = percentage.map_or((50 - all as i64 / 125).max(5) as usize, |p| p as usize);
        (all * percent / 100).max(100).min(all)
    }

    /// The best node for `pod` by its profile's plugins, and how its
    /// unbound claims are bound there, or why none fits.
    fn decide(&mut self, pod: &PodInfo, profile: &Profile) -> Result<(String, Vec<Choice>), Unfit> {
        let wanted = self.nodes_to_find(profile.percentage_of_nodes_to_score);
        let total = self.nodes.list.len();
        let claims = match pod.claims.is_empty() || !profile.runs(Plugin::VolumeBinding) {
            true => None,
            false => match self.storage.prefilter(&pod.claims) {
                Ok(claims) => Some(claims),
                Err(message) => return Err(Unfit { total, reasons: BTreeMap::new(), unresolvable: total, candidates: Vec::new(), prefilter: Some(message) }),
            },
        };
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(wanted);
        let mut reasons: BTreeMap<Reason, usize> = BTreeMap::new();
        let mut failed_unresolvable = 0;
        let mut examined = 0;
        // Spread and inter-pod affinity: only pods that use them, or that
        // another pod's anti-affinity may keep out, pay for counting.
        let cycle = (pod.depends_on_pods || !self.repelling.is_empty()).then(|| {
            self.tallies.sync(self.nodes.generation, &self.nodes.list, &self.nodes.index, self.placed.values());
            Cycle::new(pod, &self.nodes.list, &self.nodes.index, &|key| self.nodes.domains(key), &mut self.tallies, self.placed.values())
        });
        let mut candidates = Vec::new();
        for i in 0..total {
            if feasible.len() >= wanted {
                break;
            }
            examined += 1;
            let node = &self.nodes.list[(self.next_start + i) % total];
            // Pods as important, nominated to this node, have their room kept.
            let ahead: Vec<&PodInfo> = self.nominated.values().filter(|(n, p)| n == &node.name && p.uid != pod.uid && p.priority >= pod.priority).map(|(_, p)| p).collect();
            let verdict = if ahead.is_empty() {
                plugins::filter(pod, node, profile)
            } else {
                let mut with = node.clone();
                for p in ahead {
                    with.add_pod(p);
                }
                plugins::filter(pod, &with, profile)
            };
            let verdict = verdict
                .and_then(|()| claims.as_ref().map_or(Ok(()), |c| self.storage.choose(c, node).map(drop)))
                .and_then(|()| cycle.as_ref().map_or(Ok(()), |c| c.filter(node, profile)));
            match verdict {
                Ok(()) => feasible.push(node),
                Err(why) => {
                    if why.iter().any(|r| r.unresolvable) {
                        failed_unresolvable += 1;
                    } else {
                        candidates.push(node.name.clone());
                    }
                    for r in why {
                        *reasons.entry(r).or_default() += 1;
                    }
                }
            }
        }
        if total > 0 {
            self.next_start = (self.next_start + examined) % total;
        }
        if feasible.is_empty() {
            return Err(Unfit { total, reasons, unresolvable: failed_unresolvable, candidates, prefilter: None });
        }
        let spread = |image: &str| self.nodes.image_nodes.get(image).copied().unwrap_or(0);
        let mut scores = plugins::score(pod, &feasible, &spread, total, profile);
        if let Some(c) = &cycle {
            for (score, extra) in scores.iter_mut().zip(c.score(&feasible, profile)) {
                *score += extra;
            }
        }
        let best = scores.iter().copied().max().unwrap_or(0);
        // Ties are broken at random, as upstream does.
        let top: Vec<usize> = (0..feasible.len()).filter(|i| scores[*i] == best).collect();
        let node = feasible[top[rand::random_range(0..top.len())]];
        let choices = claims.and_then(|c| self.storage.choose(&c, node).ok()).unwrap_or_default();
        Ok((node.name.clone(), choices))
    }
}

impl State {
    /// PostFilter: the node and victims that make room for `pod`, or why
    /// the pod may not preempt (None: no victims found).
    fn preempt(&mut self, pod: &PodInfo, unfit: &Unfit, profile: &Profile) -> Result<(String, Vec<PodInfo>), Option<&'static str>> {
        let nominated = self.nominated.get(&pod.uid).map(|(n, _)| n);
        preemption::eligible(pod, nominated, &self.nodes.index, &self.nodes.list, &self.placed).map_err(Some)?;
        let budgets: Vec<_> = self.budgets.values().cloned().collect();
        let candidates: Vec<(String, preemption::Victims)> = unfit
            .candidates
            .iter()
            .filter_map(|name| self.nodes.index.get(name).map(|i| &self.nodes.list[*i]))
            .filter_map(|node| Some((node.name.clone(), preemption::victims_on(pod, node, &self.placed, &budgets, profile)?)))
            .collect();
        let (node, victims) = preemption::best(candidates).map(|(node, v)| (node, v.pods)).ok_or(None)?;
        // Nominated: the node's room is kept for it; pods of lower priority
        // nominated there lose their claim.
        self.nominated.retain(|_, (n, p)| n != &node || p.priority >= pod.priority);
        self.nominated.insert(pod.uid.clone(), (node.clone(), pod.clone()));
        Ok((node, victims))
    }
}

/// Why a pod fits nowhere: the reasons per node, and the nodes where
/// preemption could help (those that failed only resolvably).
struct Unfit {
    total: usize,
    reasons: BTreeMap<Reason, usize>,
    unresolvable: usize,
    candidates: Vec<String>,
    /// A PreFilter's verdict, for every node at once.
    prefilter: Option<String>,
}

/// Upstream's FailedScheduling message: `0/3 nodes are available: 1
/// Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector.
/// preemption: 0/3 nodes are available: …`, the preemption part being
/// `postfilter` when given (a pod that may not preempt), none when
/// preemption found victims, and else which nodes it could not help on.
fn fit_error(unfit: &Unfit, postfilter: Option<Option<&str>>) -> String {
    let (total, reasons, unresolvable) = (unfit.total, &unfit.reasons, unfit.unresolvable);
    if total == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut counted: BTreeMap<&str, usize> = BTreeMap::new();
    for (reason, n) in reasons {
        *counted.entry(reason.message.as_str()).or_default() += n;
    }
    let mut parts: Vec<String> = counted.iter().map(|(m, n)| format!("{n} {m}")).collect();
    parts.sort();
    let mut message = format!("0/{total} nodes are available");
    if let Some(prefilter) = &unfit.prefilter {
        message += &format!(": {prefilter}.");
    } else if !parts.is_empty() {
        message += &format!(": {}.", parts.join(", "));
    } else {
        message += ".";
    }
    match postfilter {
        Some(Some(reason)) => return format!("{message} preemption: {reason}"),
        Some(None) => return message,
        None => {}
    }
    let mut preemption = Vec::new();
    if total - unresolvable > 0 {
        preemption.push(format!("{} No preemption victims found for incoming pod", total - unresolvable));
    }
    if unresolvable > 0 {
        preemption.push(format!("{unresolvable} Preemption is not helpful for scheduling"));
    }
    preemption.sort();
    message + &format!(" preemption: 0/{total} nodes are available: {}.", preemption.join(", "))
}

/// One scheduling attempt's outcome: the node and how the pod's claims
/// bind there, or why the pod fits nowhere and whom preemption evicts.
enum Attempt {
    Fits(String, Vec<Choice>),
    Unfit(String, Option<(String, Vec<PodInfo>)>),
}

impl State {
    /// Filters, scores and, when nothing fits, preemption, for one pod.
    fn attempt(&mut self, pod: &PodInfo, profile: &Profile) -> Attempt {
        match self.decide(pod, profile) {
            Ok((node, choices)) => Attempt::Fits(node, choices),
            Err(unfit) if !profile.runs(Plugin::DefaultPreemption) => Attempt::Unfit(fit_error(&unfit, Some(None)), None),
            Err(unfit) => match self.preempt(pod, &unfit, profile) {
                Ok(preempted) => Attempt::Unfit(fit_error(&unfit, Some(None)), Some(preempted)),
                Err(reason) => Attempt::Unfit(fit_error(&unfit, reason.map(Some)), None),
            },
        }
    }
}

/// An error of the scheduler's own (a binding that panicked), as the
/// binding's errors are reported.
fn internal_error(reason: &str, message: String) -> kube::Error {
    kube::Error::Api(kube::core::ErrorResponse { status: "Failure".into(), message, reason: reason.into(), code: 500 })
}

impl Scheduler {
    /// The picture of the cluster. A panic caught while it was held (one
    /// pod's attempt, one watched change) poisons the lock; what it holds
    /// stays usable, so the scheduler goes on.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn schedule_forever(self: &Arc<Self>) {
        loop {
            let next = {
                let mut st = self.state();
                if st.synced.iter().all(|s| *s) {
                    st.queue.pop()
                } else {
                    None
                }
            };
            let Some(pod) = next else {
                self.wake.notified().await;
                continue;
            };
            // Queued pods are a profile's; profiles never change.
            let Some(profile) = self.state().profile(&pod.pod) else {
                self.state().queue.remove(&pod.uid);
                continue;
            };
            // A panic on one pod fails that attempt (an error, tried again
            // after the pod's back-off), not the scheduler.
            let started = Instant::now();
            match std::panic::catch_unwind(AssertUnwindSafe(|| self.state().attempt(&pod, &profile))) {
                Ok(Attempt::Fits(node, choices)) => self.assume_and_bind(pod, node, choices, profile.bind_timeout, started).await,
                Ok(Attempt::Unfit(message, preempted)) => {
                    if let Some((node, victims)) = preempted {
                        self.evict(&pod, &node, victims);
                    }
                    metrics::attempt(&profile.name, "unschedulable", started.elapsed());
                    self.failed(pod, message, "Unschedulable");
                }
                Err(panic) => {
                    let message = crash::message(&*panic);
                    tracing::error!(pod = %pod.key, "scheduling panicked: {message}");
                    metrics::panicked("schedule");
                    metrics::attempt(&profile.name, "error", started.elapsed());
                    self.failed(pod, format!("running the scheduling plugins: {message}"), "SchedulerError");
                }
            }
        }
    }

    /// `started`: when this attempt began, for its latency.
    async fn assume_and_bind(self: &Arc<Self>, pod: PodInfo, node: String, volumes: Vec<Choice>, bind_timeout: Duration, started: Instant) {
        let assumed = PodInfo { node: Some(node.clone()), ..pod };
        {
            let mut st = self.state();
            if let Some(n) = st.nodes.get_mut(&node) {
                n.add_pod(&assumed);
            }
            st.binding.insert(assumed.uid.clone());
            st.storage.assume(&volumes);
            st.place(assumed.clone());
        }
        // Waits only when binds are already backed up; a pod whose volumes
        // are still to bind waits for them first, holding no permit.
        let permit = match volumes.is_empty() {
            true => Some(self.binds.clone().acquire_owned().await.expect("never closed")),
            false => None,
        };
        let s = self.clone();
        tokio::spawn(async move {
            let binding = AssertUnwindSafe(async {
                let mut result = s.bind_volumes(&volumes, &node, bind_timeout).await;
                if result.is_ok() {
                    let _permit = match permit {
                        Some(p) => p,
                        None => s.binds.clone().acquire_owned().await.expect("never closed"),
                    };
                    result = s.bind(&assumed, &node).await;
                }
                result
            });
            // A panic while binding fails the binding: the pod is tried again.
            let result = binding.catch_unwind().await.unwrap_or_else(|panic| {
                metrics::panicked("bind");
                Err(internal_error("SchedulerError", format!("binding panicked: {}", crash::message(&*panic))))
            });
            metrics::attempt(profile_of(&assumed.pod), if result.is_ok() { "scheduled" } else { "error" }, started.elapsed());
            let mut st = s.state();
            st.binding.remove(&assumed.uid);
            st.storage.forget(&volumes);
            match result {
                Ok(()) => {
                    if let Some((since_queued, attempts)) = st.queue.done(&assumed.uid) {
                        metrics::scheduled(since_queued, attempts);
                    }
                }
                Err(e) => {
                    tracing::debug!(pod = %assumed.key, %node, "binding failed: {e}");
                    st.release(&assumed);
                    let gone = matches!(&e, kube::Error::Api(a) if a.code == 404 || a.code == 409);
                    if gone {
                        st.queue.remove(&assumed.uid);
                    } else {
                        st.queue.failed(&assumed.uid, false);
                    }
                }
            }
        });
    }

    /// VolumeBinding's PreBind: claims the chosen volumes, asks for the
    /// others to be provisioned on the node, and waits (by default, as
    /// upstream, up to ten minutes) for the volume controller to bind
    /// every claim.
    async fn bind_volumes(&self, volumes: &[Choice], node: &str, timeout: Duration) -> Result<(), kube::Error> {
        if volumes.is_empty() {
            return Ok(());
        }
        for choice in volumes {
            volumes::write(&self.client, choice, node).await?;
        }
        let failed = |message: String| internal_error("VolumeBinding", message);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let bound = self.state().storage.all_bound(volumes);
            match bound {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(message) => return Err(failed(message)),
            }
            if tokio::time::Instant::now() > deadline {
                return Err(failed("binding volumes: timed out waiting for the condition".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn bind(&self, pod: &PodInfo, node: &str) -> Result<(), kube::Error> {
        let meta = &pod.pod.metadata;
        let (ns, name) = (meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default());
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": meta.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let body = serde_json::to_vec(&binding).expect("JSON serializes");
        pods.create_subresource::<serde_json::Value>("binding", name, &PostParams::default(), body).await?;
        let note = format!("Successfully assigned {ns}/{name} to {node}");
        self.event(pod, "Normal", "Scheduled", "Binding", note);
        Ok(())
    }

    /// Carries out a preemption, as upstream: each victim is marked with a
    /// DisruptionTarget condition and deleted (gracefully), with a
    /// Preempted event; the pod is nominated to the node.
    fn evict(self: &Arc<Self>, pod: &PodInfo, node: &str, victims: Vec<PodInfo>) {
        for victim in &victims {
            let note = format!("Preempted by pod {} on node {node}", pod.uid);
            self.event(victim, "Normal", "Preempted", "Preempting", note);
        }
        let (s, pod, node) = (self.clone(), pod.clone(), node.to_string());
        tokio::spawn(async move {
            let _permit = s.reports.acquire().await;
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            for victim in victims {
                let meta = &victim.pod.metadata;
                let api: Api<Pod> = Api::namespaced(s.client.clone(), meta.namespace.as_deref().unwrap_or_default());
                let name = meta.name.as_deref().unwrap_or_default();
                let condition = json!({"status": {"conditions": [{
                    "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                    "message": format!("{}: preempting to accommodate a higher priority pod", profile_of(&pod.pod)), "lastTransitionTime": now,
                }]}});
                let _ = api.patch_status(name, &PatchParams::default(), &Patch::Strategic(condition)).await;
                let params = kube::api::DeleteParams { preconditions: Some(kube::api::Preconditions { uid: meta.uid.clone(), resource_version: None }), ..Default::default() };
                if let Err(e) = api.delete(name, &params).await {
                    tracing::debug!(victim = %victim.key, "preempting: {e}");
                }
            }
            let meta = &pod.pod.metadata;
            let api: Api<Pod> = Api::namespaced(s.client.clone(), meta.namespace.as_deref().unwrap_or_default());
            let nominate = json!({"status": {"nominatedNodeName": node}});
            if let Err(e) = api.patch_status(meta.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(nominate)).await {
                tracing::debug!(pod = %pod.key, "nominating: {e}");
            }
        });
    }

    /// No node fits (`Unschedulable`: the pod waits for a change) or the
    /// attempt failed (`SchedulerError`: it is tried again after its
    /// back-off); the pod says why (once per distinct reason) in an event
    /// and in its PodScheduled condition.
    fn failed(self: &Arc<Self>, pod: PodInfo, message: String, reason: &'static str) {
        let fresh = {
            let mut st = self.state();
            st.queue.failed(&pod.uid, reason == "Unschedulable");
            st.reported.insert(pod.uid.clone(), message.clone()).as_ref() != Some(&message)
        };
        if !fresh {
            return;
        }
        let s = self.clone();
        self.event(&pod, "Warning", "FailedScheduling", "Scheduling", message.clone());
        tokio::spawn(async move {
            let _permit = s.reports.acquire().await;
            let meta = &pod.pod.metadata;
            let pods: Api<Pod> = Api::namespaced(s.client.clone(), meta.namespace.as_deref().unwrap_or_default());
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            // Only onto the pod as it was seen: bound since, it keeps the
            // binding's condition (the patch then fails with a conflict).
            let status = json!({
                "metadata": {"resourceVersion": meta.resource_version},
                "status": {"conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": reason, "message": message,
                    "lastProbeTime": null, "lastTransitionTime": now,
                }]},
            });
            if let Err(e) = pods.patch_status(meta.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Strategic(status)).await {
                tracing::debug!(pod = %pod.key, "reporting unschedulable: {e}");
            }
        });
    }

    /// Queues an events.k8s.io/v1 Event about `pod`, as upstream's
    /// scheduler writes them.
    fn event(&self, pod: &PodInfo, kind: &str, reason: &str, action: &str, note: String) {
        let meta = &pod.pod.metadata;
        let now = chrono::Utc::now();
        let name = format!("{}.{:x}", meta.name.as_deref().unwrap_or_default(), now.timestamp_nanos_opt().unwrap_or_default());
        let event = Event {
            metadata: ObjectMeta { name: Some(name), namespace: Some(meta.namespace.clone().unwrap_or_default()), ..Default::default() },
            event_time: Some(MicroTime(now)),
            type_: Some(kind.into()),
            reason: Some(reason.into()),
            action: Some(action.into()),
            note: Some(note),
            reporting_controller: Some(profile_of(&pod.pod).into()),
            reporting_instance: Some(profile_of(&pod.pod).into()),
            regarding: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        if self.events.try_send(event).is_err() {
            tracing::debug!(pod = %pod.key, "event queue full: dropping {reason}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(message: &str, unresolvable: bool) -> Reason {
        Reason { message: message.into(), unresolvable }
    }

    #[test]
    fn fit_errors_read_as_upstream() {
        let mut reasons = BTreeMap::new();
        reasons.insert(reason("node(s) didn't match Pod's node affinity/selector", true), 2);
        reasons.insert(reason("Insufficient cpu", false), 1);
        let unfit = Unfit { total: 3, reasons, unresolvable: 2, candidates: vec![], prefilter: None };
        assert_eq!(
            fit_error(&unfit, None),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
        );
        assert_eq!(
            fit_error(&unfit, Some(Some(preemption::NEVER))),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. preemption: not eligible due to preemptionPolicy=Never."
        );
        assert_eq!(fit_error(&unfit, Some(None)), "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector.");
        let none = Unfit { total: 0, reasons: BTreeMap::new(), unresolvable: 0, candidates: vec![], prefilter: None };
        assert_eq!(fit_error(&none, None), "no nodes available to schedule pods");
        let claim = Unfit { total: 2, reasons: BTreeMap::new(), unresolvable: 2, candidates: vec![], prefilter: Some("pod has unbound immediate PersistentVolumeClaims".into()) };
        assert_eq!(
            fit_error(&claim, None),
            "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
    }
}

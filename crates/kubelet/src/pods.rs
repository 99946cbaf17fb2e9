//! The pods bound to this node: one worker per pod brings the containers
//! to what the spec says, level-triggered as upstream's pod workers are
//! (on every change of the pod, and every second as upstream's PLEG
//! relists), and posts the status when it changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Container as ContainerSpec, Node, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use serde_json::{json, Value};

use crate::runtime::{Container, ContainerConfig, Meta, State};
use crate::status::{self, Waiting};
use crate::probes::{self, Kind, Outcome};
use crate::{spec, Kubelet};

/// How often a worker looks again without being told (upstream's PLEG period).
const RELIST: Duration = Duration::from_secs(1);
/// Upstream's crash-loop back-off: 10 s, doubling, at most 5 minutes.
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How often volumes whose sources can change (configMap, secret,
/// projected tokens) are refreshed.
const VOLUME_REFRESH: Duration = Duration::from_secs(60);
/// How often disk-backed emptyDir volumes are measured (upstream's housekeeping period).
const STORAGE_CHECK: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Update {
    pod: Pod,
    /// Gone from the API (deleted for good, or bound elsewhere).
    gone: bool,
}

/// Watches the pods bound here and feeds each its worker; once the first
/// list is in, removes what belongs to no pod (left from before a restart).
pub(crate) async fn run(kubelet: Arc<Kubelet>) {
    let api: Api<Pod> = Api::all(kubelet.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", kubelet.config.node_name));
    let mut workers: HashMap<String, tokio::sync::watch::Sender<Update>> = HashMap::new();
    let mut listed: HashSet<String> = HashSet::new();
    let mut events = watcher(api, config).boxed();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("watching pods: {e}");
                continue;
            }
        };
        let (pod, gone) = match event {
            watcher::Event::Init => {
                listed.clear();
                continue;
            }
            watcher::Event::InitDone => {
                // Pods that went while the watch was down are gone too.
                for (uid, worker) in &workers {
                    if !listed.contains(uid) {
                        let pod = worker.borrow().pod.clone();
                        let _ = worker.send(Update { pod, gone: true });
                    }
                }
                // Best effort: a panic here must not lose the pods' workers.
                if let Err(panic) = AssertUnwindSafe(kubelet.clean_up_orphans(&listed)).catch_unwind().await {
                    tracing::error!("cleaning up after pods that are gone panicked: {}", crate::panic_message(&*panic));
                    kubelet.sync_panics.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            watcher::Event::InitApply(pod) => {
                listed.extend(pod.metadata.uid.clone());
                (pod, false)
            }
            watcher::Event::Apply(pod) => (pod, false),
            watcher::Event::Delete(pod) => (pod, true),
        };
        let Some(uid) = pod.metadata.uid.clone() else { continue };
        let update = Update { pod, gone };
        let delivered = workers.get(&uid).is_some_and(|w| w.send(update.clone()).is_ok());
        match () {
            _ if delivered => {}
            // A pod gone whose worker already finished: nothing to do.
            _ if gone && workers.remove(&uid).is_some() => {}
            _ => {
                let (tx, rx) = tokio::sync::watch::channel(update);
                tokio::spawn(worker(kubelet.clone(), rx));
                workers.insert(uid, tx);
            }
        }
        workers.retain(|_, w| !w.is_closed());
    }
}

/// What a worker remembers between syncs.
#[derive(Default)]
struct PodState {
    /// Why each container that is not running waits, when it is not the runtime's to say.
    waiting: HashMap<String, Waiting>,
    /// Current back-off per container, from the last restart.
    backoff: HashMap<String, Duration>,
    /// When image pulls may be tried again, per container.
    pull_backoff: HashMap<String, (Instant, Duration)>,
    volumes: Option<(Instant, BTreeMap<String, PathBuf>)>,
    posted: Option<Value>,
    start_time: Option<String>,
    /// Probe results, by container run (ID) and kind.
    probes: probes::Trackers,
    /// Why the kubelet stopped the pod for good, if it did.
    stopped: Option<Stopped>,
    /// When its emptyDir volumes were last measured against their sizeLimit.
    storage_checked: Option<Instant>,
    /// Synced at least once by this worker.
    synced: bool,
    /// When a pod new to this node was first seen, until it runs.
    starting_since: Option<Instant>,
}

/// Why the kubelet stopped a pod for good: evicted under node pressure
/// (a disruption) or refused by it, or past its activeDeadlineSeconds.
struct Stopped {
    reason: &'static str,
    message: String,
    disruption: bool,
}

/// Upstream's activeDeadlineHandler: the pod has been active on the node,
/// since its startTime, for its activeDeadlineSeconds.
fn past_deadline(pod: &Pod, state: &PodState) -> bool {
    let Some(deadline) = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds) else { return false };
    let started = pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0).or_else(|| {
        let posted = state.start_time.as_deref()?;
        chrono::DateTime::parse_from_rfc3339(posted).ok().map(|t| t.with_timezone(&chrono::Utc))
    });
    started.is_some_and(|started| chrono::Utc::now() - started >= chrono::Duration::seconds(deadline))
}

async fn worker(kubelet: Arc<Kubelet>, mut updates: tokio::sync::watch::Receiver<Update>) {
    let mut state = PodState::default();
    let mut panics = 0;
    loop {
        let update = updates.borrow_and_update().clone();
        // A panic while syncing one pod is that pod's error: it is
        // reported on the pod, and the pod is synced again after a
        // back-off; the agent and the other pods go on.
        let mut wait = RELIST;
        let started = Instant::now();
        let synced = AssertUnwindSafe(kubelet.sync(&update, &mut state)).catch_unwind().await;
        kubelet.timings.pod_sync.observe(started.elapsed().as_secs_f64());
        match synced {
            Ok(Ok(true)) => return,
            Ok(Ok(false)) => panics = 0,
            Ok(Err(e)) => tracing::warn!("pod {}: {e:#}", name_of(&update.pod)),
            Err(panic) => {
                let message = crate::panic_message(&*panic);
                tracing::error!("pod {}: syncing panicked: {message}", name_of(&update.pod));
                kubelet.sync_panics.fetch_add(1, Ordering::Relaxed);
                kubelet.event(&update.pod, None, true, "FailedSync", &format!("error syncing pod: {message}")).await;
                wait = BACKOFF_START.saturating_mul(1 << panics.min(5)).min(BACKOFF_MAX);
                panics += 1;
            }
        }
        tokio::select! {
            changed = updates.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The pod's ephemeral containers as containers: the same fields, less
/// `targetContainerName` (each runs in namespaces of its own).
fn ephemeral(pod: &Pod) -> Vec<ContainerSpec> {
    let list = pod.spec.as_ref().and_then(|s| s.ephemeral_containers.as_ref());
    list.into_iter()
        .flatten()
        .filter_map(|e| {
            let mut fields = serde_json::to_value(e).ok()?;
            fields.as_object_mut()?.remove("targetContainerName");
            serde_json::from_value(fields).ok()
        })
        .collect()
}

fn name_of(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""))
}

fn uid_of(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

pub(crate) fn cgroup_parent(uid: &str) -> String {
    format!("/kubepods/pod{uid}")
}

/// A container's runs, oldest first, by container name.
fn runs_by_name(containers: &[Container]) -> BTreeMap<&str, Vec<&Container>> {
    let mut by_name: BTreeMap<&str, Vec<&Container>> = BTreeMap::new();
    for c in containers {
        by_name.entry(c.meta.container.as_str()).or_default().push(c);
    }
    by_name.values_mut().for_each(|runs| runs.sort_by_key(|c| c.meta.attempt));
    by_name
}

/// Whether a container that ended is started again.
fn restarts(policy: &str, state: &State) -> bool {
    match state {
        State::Running { .. } => false,
        State::Exited { exit_code: 0, .. } => policy == "Always",
        _ => policy != "Never",
    }
}

/// When a run ended: it exited, or failed to start (which backs off too).
fn finished_at(state: &State) -> Option<chrono::DateTime<chrono::Utc>> {
    let at = match state {
        State::Exited { finished_at, .. } => finished_at,
        State::Created { failed_at: Some(at), .. } => at,
        _ => return None,
    };
    chrono::DateTime::parse_from_rfc3339(at).ok().map(|t| t.with_timezone(&chrono::Utc))
}

/// The container's `volumeDevices`: each its claim's device, published by
/// the volume's driver in Block mode.
fn block_devices(container: &ContainerSpec, volumes: &BTreeMap<String, PathBuf>) -> Result<Vec<spec::BlockDevice>> {
    let devices = container.volume_devices.iter().flatten();
    devices.map(|d| Ok(spec::BlockDevice { source: volumes.get(&d.name).with_context(|| format!("no volume {:?}", d.name))?.clone(), path: d.device_path.clone() })).collect()
}

/// `root/sub`, made if missing, resolved so that no symlink inside the
/// volume (one a container wrote) carries the mount outside it.
fn inside_volume(root: &std::path::Path, sub: &str) -> Result<PathBuf> {
    let root = root.canonicalize().with_context(|| format!("resolving {}", root.display()))?;
    let escapes = |p: &std::path::Path| -> Result<()> {
        // The deepest part that exists is where a symlink could lead.
        let existing = p.ancestors().find(|a| a.exists()).unwrap_or(&root).canonicalize()?;
        anyhow::ensure!(existing.starts_with(&root), "subPath {sub:?} leads outside its volume");
        Ok(())
    };
    let path = root.join(sub);
    escapes(&path)?;
    std::fs::create_dir_all(&path).or_else(|e| if path.exists() { Ok(()) } else { Err(e) })?;
    escapes(&path)?;
    Ok(path.canonicalize()?)
}

/// The hostname a pod's containers see: `spec.hostname` or the pod's
/// name, cut to 63 characters as upstream does.
pub(crate) fn hostname(pod: &Pod) -> String {
    let name = pod.spec.as_ref().and_then(|s| s.hostname.clone()).or_else(|| pod.metadata.name.clone()).unwrap_or_default();
    name.chars().take(63).collect::<String>().trim_end_matches(['-', '.']).to_string()
}

impl Kubelet {
    /// Brings one pod toward its spec; true once the pod is done with here.
    async fn sync(&self, update: &Update, state: &mut PodState) -> Result<bool> {
        let pod = &update.pod;
        let uid = uid_of(pod);
        // The UID names the pod's directories and cgroup.
        anyhow::ensure!(!uid.is_empty() && !uid.contains(['/', '\0']) && uid != "." && uid != "..", "pod UID {uid:?} cannot name a directory");
        let containers = self.runtime.list(Some(uid)).await?;
        if !std::mem::replace(&mut state.synced, true) && containers.is_empty() {
            // New here, not found again after the agent restarted.
            state.starting_since = Some(Instant::now());
        }
        let finished = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
        let leaving = update.gone || pod.metadata.deletion_timestamp.is_some();
        if leaving || finished {
            // Chosen for eviction as it finished or went: nothing is left
            // to evict, and the next victim may be chosen.
            crate::lock(&self.evictions).remove(uid);
        }
        if leaving {
            self.terminate(pod, &containers).await?;
            if !update.gone {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
                let params = DeleteParams { grace_period_seconds: Some(0), preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }), ..Default::default() };
                match api.delete(pod.metadata.name.as_deref().unwrap_or(""), &params).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => return Err(e).context("deleting the pod"),
                }
            }
            return Ok(true);
        }
        if finished {
            // A finished pod runs nothing and holds no address; its
            // containers stay for their logs until the pod is deleted.
            self.stop_all(pod, &containers).await;
            if self.sandboxes.exists(uid) {
                tokio::task::block_in_place(|| self.sandboxes.remove(uid))?;
            }
            return Ok(false);
        }
        if state.storage_checked.is_none_or(|at| at.elapsed() >= STORAGE_CHECK) {
            state.storage_checked = Some(Instant::now());
            if let Some(message) = self.over_storage_limit(pod) {
                crate::lock(&self.evictions).insert(uid.to_string(), message);
            }
        }
        // Evicted under node pressure or past a storage limit, refused by
        // node pressure before starting, or past its deadline.
        if state.stopped.is_none() {
            let evicted = crate::lock(&self.evictions).get(uid).cloned();
            let refused = if evicted.is_none() && containers.is_empty() && !self.sandboxes.exists(uid) { self.refusal(pod) } else { None };
            state.stopped = match (evicted, refused) {
                (Some(message), _) => Some(Stopped { reason: "Evicted", message, disruption: true }),
                (None, Some(message)) => Some(Stopped { reason: "Evicted", message, disruption: false }),
                (None, None) => past_deadline(pod, state).then(|| Stopped {
                    reason: "DeadlineExceeded",
                    message: "Pod was active on the node longer than the specified deadline".into(),
                    disruption: false,
                }),
            };
            if let Some(stopped) = &state.stopped {
                self.event(pod, None, stopped.reason == "Evicted", stopped.reason, &stopped.message).await;
            }
        }
        if state.stopped.is_some() {
            // Stopped for good: the pod is Failed, and runs nothing again.
            self.stop_all(pod, &containers).await;
            let containers = self.runtime.list(Some(uid)).await?;
        if !std::mem::replace(&mut state.synced, true) && containers.is_empty() {
            // New here, not found again after the agent restarted.
            state.starting_since = Some(Instant::now());
        }
            self.post_status(pod, state, &containers).await?;
            // Stopped, so the next victim may be chosen.
            crate::lock(&self.evictions).remove(uid);
            return Ok(false);
        }
        state.start_time.get_or_insert_with(|| chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));

        let spec = pod.spec.as_ref().context("pod without spec")?;
        if !self.sandboxes.exists(uid) {
            if let Err(e) = self.create_sandbox(pod).await {
                self.event(pod, None, true, "FailedCreatePodSandBox", &format!("Failed to create pod sandbox: {e:#}")).await;
                self.post_status(pod, state, &containers).await?;
                return Err(e);
            }
        }
        let refresh = state.volumes.as_ref().is_none_or(|(at, _)| at.elapsed() >= VOLUME_REFRESH);
        if refresh {
            let allocatable = crate::lock(&self.allocatable).clone();
            match self.volumes.setup(&self.client, pod, &allocatable).await {
                Ok(paths) => state.volumes = Some((Instant::now(), paths)),
                Err(e) if state.volumes.is_none() => {
                    self.event(pod, None, true, "FailedMount", &format!("{e:#}")).await;
                    self.post_status(pod, state, &containers).await?;
                    return Ok(false);
                }
                Err(e) => tracing::warn!("refreshing the volumes of {}: {e:#}", name_of(pod)),
            }
        }

        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let runs = runs_by_name(&containers);
        let mut initialized = true;
        for init in spec.init_containers.iter().flatten() {
            let sidecar = init.restart_policy.as_deref() == Some("Always");
            let latest = runs.get(init.name.as_str()).and_then(|r| r.last());
            match latest.map(|c| &c.state) {
                Some(State::Running { .. }) if sidecar => continue,
                Some(State::Exited { exit_code: 0, .. }) if !sidecar => continue,
                Some(State::Running { .. }) => {}
                Some(_) if !sidecar && policy == "Never" => {
                    initialized = false;
                    break;
                }
                _ => self.start_if_due(pod, init, latest.copied(), state).await,
            }
            if !sidecar {
                initialized = false;
                break;
            }
        }
        if initialized {
            for container in &spec.containers {
                let latest = runs.get(container.name.as_str()).and_then(|r| r.last());
                if latest.is_none_or(|c| restarts(policy, &c.state)) {
                    self.start_if_due(pod, container, latest.copied(), state).await;
                }
            }
            // Ephemeral containers run once each, never restarted.
            for container in &ephemeral(pod) {
                if !runs.contains_key(container.name.as_str()) {
                    self.start_if_due(pod, container, None, state).await;
                }
            }
        }
        let containers = self.runtime.list(Some(uid)).await?;
        if !std::mem::replace(&mut state.synced, true) && containers.is_empty() {
            // New here, not found again after the agent restarted.
            state.starting_since = Some(Instant::now());
        }
        self.probe(pod, state, &containers).await;
        self.post_status(pod, state, &containers).await?;
        Ok(false)
    }

    fn target<'a>(&'a self, pod: &Pod, container: &'a ContainerSpec, id: &'a str) -> probes::Target<'a> {
        probes::Target { runtime: self.runtime.as_ref(), container_id: id, ip: self.sandboxes.ip(uid_of(pod)), ports: container.ports.as_deref().unwrap_or_default() }
    }

    /// Runs the probes that are due on the running containers: a startup
    /// probe first (the others wait for it), then liveness and readiness.
    /// A container failing its startup or liveness probe is killed, and
    /// restarts as its policy says.
    async fn probe(&self, pod: &Pod, state: &mut PodState, containers: &[Container]) {
        let Some(spec) = pod.spec.as_ref() else { return };
        let live: HashSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        state.probes.retain(|(id, _), _| live.contains(id.as_str()));
        let runs = runs_by_name(containers);
        let specs = spec.containers.iter().chain(spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always")));
        for container in specs {
            let Some(run) = runs.get(container.name.as_str()).and_then(|r| r.last()) else { continue };
            let State::Running { started_at } = &run.state else { continue };
            let since_start = chrono::DateTime::parse_from_rfc3339(started_at).map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).to_std().unwrap_or_default()).unwrap_or_default();
            let started = Instant::now().checked_sub(since_start).unwrap_or_else(Instant::now);
            for kind in [Kind::Startup, Kind::Liveness, Kind::Readiness] {
                let Some(probe) = kind.of(container) else { continue };
                let startup_pending = kind != Kind::Startup && container.startup_probe.is_some() && state.probes.get(&(run.id.clone(), Kind::Startup)).and_then(|t| t.result) != Some(true);
                let tracker = state.probes.entry((run.id.clone(), kind)).or_default();
                if startup_pending || (kind == Kind::Startup && tracker.result == Some(true)) || !tracker.due(probe, started) {
                    continue;
                }
                let result = probes::check(&self.target(pod, container, &run.id), probe).await;
                if let Err(why) = &result {
                    self.event(pod, Some(&container.name), true, "Unhealthy", &format!("{} probe failed: {why}", kind.name())).await;
                }
                let outcome = state.probes.get_mut(&(run.id.clone(), kind)).expect("inserted above").record(probe, result);
                if let (Outcome::Failed(_), Kind::Startup | Kind::Liveness) = (outcome, kind) {
                    let what = if kind == Kind::Startup { "startup" } else { "liveness" };
                    self.event(pod, Some(&container.name), false, "Killing", &format!("Container {} failed {what} probe, will be restarted", container.name)).await;
                    self.stop_container(pod, container, run).await;
                }
            }
        }
    }

    /// Stops one run of a container: its preStop hook, then SIGTERM, and
    /// SIGKILL once the pod's grace period is over.
    async fn stop_container(&self, pod: &Pod, container: &ContainerSpec, run: &Container) {
        let grace = Duration::from_secs(pod.metadata.deletion_grace_period_seconds.or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds)).unwrap_or(30).max(0) as u64);
        let began = Instant::now();
        if let Some(hook) = container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
            if let Err(why) = probes::hook(&self.target(pod, container, &run.id), hook, grace).await {
                self.event(pod, Some(&container.name), true, "FailedPreStopHook", &format!("PreStopHook failed: {why}")).await;
            }
        }
        if let Err(e) = self.runtime.stop(&run.id, grace.saturating_sub(began.elapsed())).await {
            tracing::warn!("stopping {}: {e:#}", run.id);
        }
    }

    async fn create_sandbox(&self, pod: &Pod) -> Result<()> {
        let uid = uid_of(pod).to_string();
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let host_ipc = pod.spec.as_ref().and_then(|s| s.host_ipc).unwrap_or(false);
        let subnet = if host_network { None } else { Some(self.pod_cidr().await?) };
        let hostname = if host_network { self.config.node_name.clone() } else { hostname(pod) };
        let address = self.config.address;
        let kubelet_sandboxes = &self.sandboxes;
        // Namespaces and CNI are blocking work (threads, plugin processes).
        tokio::task::block_in_place(|| kubelet_sandboxes.create(&uid, &hostname, subnet.as_deref(), address, host_ipc))?;
        if let (Some(hook), Some(ip), false) = (&self.config.sandbox_ready, self.sandboxes.ip(&uid), host_network) {
            (hook.0)(pod.clone(), ip).await;
        }
        Ok(())
    }

    /// This node's pod CIDR, once the node IPAM controller has given one.
    async fn pod_cidr(&self) -> Result<String> {
        self.pod_cidr
            .get_or_try_init(|| async {
                let nodes: Api<Node> = Api::all(self.client.clone());
                let node = nodes.get(&self.config.node_name).await?;
                if let Some(allocatable) = node.status.as_ref().and_then(|s| s.allocatable.as_ref()) {
                    *crate::lock(&self.allocatable) = allocatable.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
                }
                node.spec.and_then(|s| s.pod_cidr).context("the node has no pod CIDR yet")
            })
            .await
            .cloned()
    }

    /// Starts a container, unless it is backing off (after a crash or a
    /// failed pull); what it waits for goes into `state.waiting`.
    async fn start_if_due(&self, pod: &Pod, container: &ContainerSpec, latest: Option<&Container>, state: &mut PodState) {
        let name = &container.name;
        if let (Some(last), Some(delay)) = (latest, state.backoff.get(name)) {
            if let Some(finished) = finished_at(&last.state) {
                let due = finished + chrono::TimeDelta::from_std(*delay).unwrap_or_default();
                if chrono::Utc::now() < due {
                    let message = format!("back-off {}s restarting failed container={name} pod={}_{}({})", delay.as_secs(), pod.metadata.name.as_deref().unwrap_or(""), pod.metadata.namespace.as_deref().unwrap_or(""), uid_of(pod));
                    let first = state.waiting.get(name).is_none_or(|w| w.reason != "CrashLoopBackOff");
                    state.waiting.insert(name.clone(), Waiting { reason: "CrashLoopBackOff".into(), message: message.clone() });
                    if first {
                        self.event(pod, Some(name), true, "BackOff", &format!("Back-off restarting failed container {name} in pod {}", name_of(pod).replace('/', "_"))).await;
                    }
                    return;
                }
            }
        }
        if let Some((until, _)) = state.pull_backoff.get(name) {
            if Instant::now() < *until {
                let image = container.image.clone().unwrap_or_default();
                state.waiting.insert(name.clone(), Waiting { reason: "ImagePullBackOff".into(), message: format!("Back-off pulling image \"{image}\"") });
                return;
            }
        }
        let attempt = latest.map(|c| c.meta.attempt + 1).unwrap_or(0);
        match self.start_container(pod, container, attempt, state).await {
            Ok(()) => {
                state.waiting.remove(name);
                if latest.is_some() {
                    let next = state.backoff.get(name).map(|d| (*d * 2).min(BACKOFF_MAX)).unwrap_or(BACKOFF_START);
                    state.backoff.insert(name.clone(), next);
                }
            }
            Err(waiting) => {
                state.waiting.insert(name.clone(), waiting);
            }
        }
    }

    /// Pulls the image if needed, prepares the environment and mounts, and
    /// starts one run of a container. A failure to start is the runtime's
    /// to report (StartError); the other failures come back as why it waits.
    async fn start_container(&self, pod: &Pod, container: &ContainerSpec, attempt: u32, state: &mut PodState) -> Result<(), Waiting> {
        let name = &container.name;
        let config_error = |e: anyhow::Error| Waiting { reason: "CreateContainerConfigError".into(), message: format!("{e:#}") };
        // The name becomes a path (logs, termination messages): validation
        // wants a DNS label, and a pod stored before it may not have one.
        spec::check_name("container", name).map_err(config_error)?;
        let image_ref = container.image.clone().unwrap_or_default();
        let image = match self.ensure_image(pod, container, state).await {
            Ok(image) => image,
            Err(w) => return Err(w),
        };
        let image_config = self.images.config(&image).map_err(config_error)?;
        if let Err(e) = self.images.touch(&image.digest) {
            tracing::warn!("marking image {} used: {e:#}", image.digest);
        }
        let uid = uid_of(pod);
        // The downward API sees the addresses this sync knows, posted or not.
        let mut pod_with_ips = pod.clone();
        let ip = self.sandboxes.ip(uid).map(|ip| ip.to_string());
        let status = pod_with_ips.status.get_or_insert_with(Default::default);
        status.pod_ip = ip.clone();
        status.pod_ips = ip.map(|ip| vec![k8s_openapi::api::core::v1::PodIP { ip }]);
        status.host_ip = Some(self.config.address.to_string());
        status.host_ips = Some(vec![k8s_openapi::api::core::v1::HostIP { ip: self.config.address.to_string() }]);
        let env = self.environment(&pod_with_ips, container).await.map_err(config_error)?;
        let volumes = state.volumes.as_ref().map(|(_, v)| v.clone()).unwrap_or_default();
        let mounts = self.mounts(pod, container, attempt, &volumes, &env).map_err(config_error)?;
        let devices = block_devices(container, &volumes).map_err(config_error)?;
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let inputs = spec::Inputs {
            pod: &pod_with_ips,
            container,
            image: &image_config,
            env,
            mounts,
            devices,
            namespaces: self.sandboxes.namespaces(uid),
            hostname: if host_network { self.config.node_name.clone() } else { hostname(pod) },
            seccomp_dir: &self.config.data_dir.join("seccomp"),
            layers: &self.images.layer_dirs(&image),
        };
        let spec = spec::build_guarded(inputs).map_err(config_error)?;
        let log_path = self.config.log_dir.join(format!("{}_{}_{uid}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""))).join(name).join(format!("{attempt}.log"));
        let meta = Meta {
            pod_uid: uid.to_string(),
            pod_namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            container: name.clone(),
            attempt,
            image: image_ref.clone(),
            image_id: image.id_for(&crate::images::normalize(&image_ref).unwrap_or(image_ref.clone())),
            log_path,
        };
        let config = ContainerConfig { meta, spec, layers: self.images.layer_dirs(&image), cgroup_parent: cgroup_parent(uid), stdin: container.stdin == Some(true), tty: container.tty == Some(true) };
        let (id, started) = self.runtime.start(config).await;
        match started {
            Ok(()) => {
                self.event(pod, Some(name), false, "Created", &format!("Created container {name}")).await;
                self.event(pod, Some(name), false, "Started", &format!("Started container {name}")).await;
                if let Some(hook) = container.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
                    // As upstream: the container counts as started once its hook has run; a failed hook kills it.
                    if let Err(why) = probes::hook(&self.target(pod, container, &id), hook, Duration::from_secs(30)).await {
                        self.event(pod, Some(name), true, "FailedPostStartHook", &format!("PostStartHook failed: {why}")).await;
                        let _ = self.runtime.stop(&id, Duration::from_secs(2)).await;
                    }
                }
            }
            Err(e) => {
                tracing::debug!("container {id} of {} failed to start: {e:#}", name_of(pod));
                self.event(pod, Some(name), true, "Failed", &format!("Error: {e:#}")).await;
            }
        }
        Ok(())
    }

    /// The image, pulled as `imagePullPolicy` says (upstream's default:
    /// Always for `:latest` or no tag, else IfNotPresent).
    async fn ensure_image(&self, pod: &Pod, container: &ContainerSpec, state: &mut PodState) -> Result<crate::images::Image, Waiting> {
        let name = &container.name;
        let reference = container.image.clone().unwrap_or_default();
        let present = self.images.get(&reference);
        let latest = !reference.contains('@') && reference.rsplit('/').next().is_some_and(|last| !last.contains(':') || last.ends_with(":latest"));
        let policy = container.image_pull_policy.clone().unwrap_or_else(|| if latest { "Always" } else { "IfNotPresent" }.into());
        match (policy.as_str(), present) {
            ("Never", Some(image)) | ("IfNotPresent", Some(image)) => {
                self.event(pod, Some(name), false, "Pulled", &format!("Container image \"{reference}\" already present on machine")).await;
                return Ok(image);
            }
            ("Never", None) => {
                let message = format!("Container image \"{reference}\" is not present with pull policy of Never");
                self.event(pod, Some(name), true, "ErrImageNeverPull", &message).await;
                return Err(Waiting { reason: "ErrImageNeverPull".into(), message });
            }
            _ => {}
        }
        self.event(pod, Some(name), false, "Pulling", &format!("Pulling image \"{reference}\"")).await;
        let started = Instant::now();
        let credentials = self.pull_credentials(pod, &reference).await;
        let pulled = self.images.pull(&reference, credentials.as_ref(), &self.registries.get(), self.peers.as_ref()).await;
        {
            let mut pulls = crate::lock(&self.pulls);
            pulls.0 += 1;
            pulls.1 += pulled.is_err() as u64;
        }
        match pulled {
            Ok(image) => {
                state.pull_backoff.remove(name);
                let took = started.elapsed().as_secs_f64();
                self.event(pod, Some(name), false, "Pulled", &format!("Successfully pulled image \"{reference}\" in {took:.3}s. Image size: {} bytes.", image.size)).await;
                Ok(image)
            }
            Err(e) => {
                let delay = state.pull_backoff.get(name).map(|(_, d)| (*d * 2).min(BACKOFF_MAX)).unwrap_or(BACKOFF_START);
                state.pull_backoff.insert(name.clone(), (Instant::now() + delay, delay));
                let message = format!("Failed to pull image \"{reference}\": {e:#}");
                self.event(pod, Some(name), true, "Failed", &message).await;
                Err(Waiting { reason: "ErrImagePull".into(), message })
            }
        }
    }

    /// Credentials for the image's registry from the pod's imagePullSecrets
    /// (`kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`).
    async fn pull_credentials(&self, pod: &Pod, reference: &str) -> Option<crate::images::Credentials> {
        let registry = crate::images::normalize(reference).ok()?.split('/').next()?.to_string();
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        for reference in pod.spec.as_ref()?.image_pull_secrets.iter().flatten() {
            let Ok(secret) = secrets.get(&reference.name).await else { continue };
            let data = crate::volumes::secret_data(&secret);
            let config: Value = match (data.get(".dockerconfigjson"), data.get(".dockercfg")) {
                (Some(json), _) => serde_json::from_slice::<Value>(json).ok()?.get("auths").cloned()?,
                (None, Some(cfg)) => serde_json::from_slice(cfg).ok()?,
                _ => continue,
            };
            let hosts = config.as_object()?;
            let entry = hosts.iter().find(|(host, _)| {
                let host = host.trim_start_matches("https://").trim_start_matches("http://").split('/').next().unwrap_or("");
                host == registry || (registry == "docker.io" && host == "index.docker.io")
            });
            if let Some((_, entry)) = entry {
                return crate::images::credentials_from_docker_config(entry);
            }
        }
        None
    }

    /// `env` and `envFrom`, resolved in upstream's order: envFrom first,
    /// then env, each able to refer to the ones before it and to the
    /// Services' variables, which follow unless declared.
    async fn environment(&self, pod: &Pod, container: &ContainerSpec) -> Result<Vec<(String, String)>> {
        use crate::volumes::{config_map_data, fetch, secret_data};
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let client = &self.client;
        let service_links = pod.spec.as_ref().and_then(|s| s.enable_service_links) != Some(false);
        let services = self.services.for_pod(ns, service_links).await?;
        // The Services' variables first, so that what is declared wins.
        let mut env: Vec<(String, String)> = services.clone();
        for from in container.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            let data = if let Some(source) = &from.config_map_ref {
                fetch::<ConfigMap>(client, ns, &source.name, source.optional).await?.map(|cm| config_map_data(&cm))
            } else if let Some(source) = &from.secret_ref {
                fetch::<Secret>(client, ns, &source.name, source.optional).await?.map(|s| secret_data(&s))
            } else {
                None
            };
            for (k, v) in data.into_iter().flatten() {
                env.push((format!("{prefix}{k}"), String::from_utf8_lossy(&v).into_owned()));
            }
        }
        let allocatable = crate::lock(&self.allocatable).clone();
        // One key of a ConfigMap's or Secret's data; None for an optional one that is not there.
        let key_value = |data: Option<BTreeMap<String, Vec<u8>>>, kind: &str, name: &str, key: &str, optional: Option<bool>| -> Result<Option<String>> {
            match data.as_ref().and_then(|d| d.get(key)) {
                Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
                None if optional == Some(true) => Ok(None),
                None => anyhow::bail!("couldn't find key {key} in {kind} {ns}/{name}"),
            }
        };
        for var in container.env.iter().flatten() {
            let value = match &var.value_from {
                None => Some(spec::expand(var.value.as_deref().unwrap_or(""), &env)),
                Some(from) => {
                    if let Some(field) = &from.field_ref {
                        Some(crate::downward::field(pod, &field.field_path)?)
                    } else if let Some(resource) = &from.resource_field_ref {
                        Some(crate::downward::resource(pod, Some(&container.name), resource, &allocatable)?)
                    } else if let Some(key) = &from.config_map_key_ref {
                        let data = fetch::<ConfigMap>(client, ns, &key.name, key.optional).await?.map(|cm| config_map_data(&cm));
                        key_value(data, "ConfigMap", &key.name, &key.key, key.optional)?
                    } else if let Some(key) = &from.secret_key_ref {
                        let data = fetch::<Secret>(client, ns, &key.name, key.optional).await?.map(|s| secret_data(&s));
                        key_value(data, "Secret", &key.name, &key.key, key.optional)?
                    } else {
                        None
                    }
                }
            };
            if let Some(value) = value {
                env.push((var.name.clone(), value));
            }
        }
        let mut declared = env.split_off(services.len());
        let names: std::collections::HashSet<String> = declared.iter().map(|(k, _)| k.clone()).collect();
        declared.extend(services.into_iter().filter(|(k, _)| !names.contains(k)));
        Ok(declared)
    }

    /// The container's volume mounts and the files every container gets:
    /// `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` and its
    /// termination log.
    fn mounts(&self, pod: &Pod, container: &ContainerSpec, attempt: u32, volumes: &BTreeMap<String, PathBuf>, env: &[(String, String)]) -> Result<Vec<spec::BindMount>> {
        let uid = uid_of(pod);
        let pod_dir = self.volumes.pod_dir(uid);
        let mut mounts = Vec::new();
        spec::check_mount_paths(container)?;
        for m in container.volume_mounts.iter().flatten() {
            let mut source = volumes.get(&m.name).with_context(|| format!("no volume {:?}", m.name))?.clone();
            let expanded = m.sub_path_expr.as_deref().map(|e| spec::expand(e, env));
            if let Some(sub) = expanded.as_deref().or(m.sub_path.as_deref()).filter(|s| !s.is_empty()) {
                if std::path::Path::new(sub).components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
                    anyhow::bail!("subPath {sub:?} must be a relative path without '..'");
                }
                source = inside_volume(&source, sub)?;
            }
            mounts.push(spec::BindMount { source, destination: m.mount_path.clone(), read_only: m.read_only == Some(true) });
        }
        let etc = pod_dir.join("etc");
        std::fs::create_dir_all(&etc)?;
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let name = if host_network { self.config.node_name.clone() } else { hostname(pod) };
        let ip = self.sandboxes.ip(uid).map(|i| i.to_string()).unwrap_or_default();
        let mut hosts = String::from("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n");
        if !ip.is_empty() {
            // With a subdomain, the pod's FQDN first, as upstream's kubelet writes it.
            let subdomain = pod.spec.as_ref().and_then(|s| s.subdomain.as_deref()).filter(|s| !s.is_empty() && !host_network);
            match subdomain {
                Some(sub) => hosts.push_str(&format!("{ip}\t{name}.{sub}.{}.svc.{}\t{name}\n", pod.metadata.namespace.as_deref().unwrap_or("default"), self.config.cluster_domain)),
                None => hosts.push_str(&format!("{ip}\t{name}\n")),
            }
        }
        for alias in pod.spec.as_ref().and_then(|s| s.host_aliases.as_ref()).into_iter().flatten() {
            hosts.push_str(&format!("\n# Entries added by HostAliases.\n{}\t{}\n", alias.ip, alias.hostnames.clone().unwrap_or_default().join("\t")));
        }
        std::fs::write(etc.join("hosts"), hosts)?;
        std::fs::write(etc.join("hostname"), format!("{name}\n"))?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolv = crate::resolv::resolv_conf(pod, &self.config.cluster_dns, &self.config.cluster_domain, &host_resolv).map_err(|e| anyhow::anyhow!("the pod's DNS configuration: {e}"))?;
        std::fs::write(etc.join("resolv.conf"), resolv)?;
        let termination = pod_dir.join("containers").join(&container.name).join(attempt.to_string());
        std::fs::create_dir_all(termination.parent().unwrap())?;
        std::fs::write(&termination, "")?;
        let destinations: HashSet<&str> = mounts.iter().map(|m| m.destination.as_str()).collect();
        let mut extra = vec![("hosts", "/etc/hosts"), ("hostname", "/etc/hostname"), ("resolv.conf", "/etc/resolv.conf")]
            .into_iter()
            .filter(|(_, to)| !destinations.contains(to))
            .map(|(file, to)| spec::BindMount { source: etc.join(file), destination: to.into(), read_only: false })
            .collect::<Vec<_>>();
        let message_path = container.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into());
        extra.push(spec::BindMount { source: termination, destination: message_path, read_only: false });
        mounts.extend(extra);
        Ok(mounts)
    }

    /// Stops every running container of a pod (SIGTERM, then SIGKILL after
    /// the grace period), then removes its containers, sandbox and volumes.
    async fn terminate(&self, pod: &Pod, containers: &[Container]) -> Result<()> {
        self.stop_all(pod, containers).await;
        let uid = uid_of(pod);
        for c in containers {
            self.runtime.remove(&c.id).await?;
        }
        crate::runtime::remove_cgroup(&cgroup_parent(uid));
        tokio::task::block_in_place(|| self.sandboxes.remove(uid))?;
        self.volumes.teardown(uid).await?;
        let logs = self.config.log_dir.join(format!("{}_{}_{uid}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or("")));
        let _ = std::fs::remove_dir_all(logs);
        Ok(())
    }

    async fn stop_all(&self, pod: &Pod, containers: &[Container]) {
        let ephemeral = ephemeral(pod);
        let specs: Vec<&ContainerSpec> = pod.spec.as_ref().map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()).chain(&ephemeral).collect()).unwrap_or_default();
        let specs = &specs;
        let running: Vec<&Container> = containers.iter().filter(|c| matches!(c.state, State::Running { .. })).collect();
        let stops = running.iter().map(|c| async move {
            self.event(pod, Some(&c.meta.container), false, "Killing", &format!("Stopping container {}", c.meta.container)).await;
            match specs.iter().find(|s| s.name == c.meta.container) {
                Some(spec) => self.stop_container(pod, spec, c).await,
                None => {
                    let _ = self.runtime.stop(&c.id, Duration::from_secs(2)).await;
                }
            }
        });
        futures::future::join_all(stops).await;
    }

    /// Posts the pod's status when it differs from what was posted last.
    async fn post_status(&self, pod: &Pod, state: &mut PodState, containers: &[Container]) -> Result<()> {
        let uid = uid_of(pod);
        let spec = pod.spec.as_ref().context("pod without spec")?;
        let runs = runs_by_name(containers);
        let fallback_to_logs: HashSet<&str> = spec.containers.iter().chain(spec.init_containers.iter().flatten()).filter(|c| c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")).map(|c| c.name.as_str()).collect();
        let messages: BTreeMap<String, String> = containers
            .iter()
            .filter_map(|c| {
                let State::Exited { exit_code, .. } = c.state else { return None };
                let path = self.volumes.pod_dir(uid).join("containers").join(&c.meta.container).join(c.meta.attempt.to_string());
                let written: String = std::fs::read_to_string(path).unwrap_or_default().chars().take(4096).collect();
                // Upstream's FallbackToLogsOnError: a failed container that
                // wrote no message gets its last 80 lines (2 KiB at most).
                let message = if written.is_empty() && exit_code != 0 && fallback_to_logs.contains(c.meta.container.as_str()) {
                    let log = std::fs::read_to_string(&c.meta.log_path).unwrap_or_default();
                    let tail = crate::logs::read(&log, &crate::logs::Options { tail_lines: Some(80), ..Default::default() });
                    let start = tail.len().saturating_sub(2048);
                    tail[tail.ceil_char_boundary(start)..].to_string()
                } else {
                    written
                };
                (!message.is_empty()).then(|| (c.id.clone(), message))
            })
            .collect();
        let statuses = |list: &[ContainerSpec]| -> Vec<Value> {
            list.iter().map(|c| status::container_status(c, runs.get(c.name.as_str()).map(Vec::as_slice).unwrap_or_default(), state.waiting.get(&c.name), &messages)).collect()
        };
        let init_specs = spec.init_containers.clone().unwrap_or_default();
        let mut init = statuses(&init_specs);
        let mut main = statuses(&spec.containers);
        let mut ephemeral_statuses = statuses(&ephemeral(pod));
        // No probe judges them: upstream reports them never ready.
        for s in &mut ephemeral_statuses {
            s["ready"] = json!(false);
        }
        // Probes decide `started` and `ready` of running containers.
        for (c, s) in spec.containers.iter().zip(&mut main).chain(init_specs.iter().zip(&mut init)) {
            let Some(run) = runs.get(c.name.as_str()).and_then(|r| r.last()).filter(|r| matches!(r.state, State::Running { .. })) else { continue };
            let passed = |kind: Kind| kind.of(c).is_none() || state.probes.get(&(run.id.clone(), kind)).and_then(|t| t.result) == Some(true);
            let started = passed(Kind::Startup);
            s["started"] = json!(started);
            s["ready"] = json!(started && passed(Kind::Readiness));
        }
        let policy = spec.restart_policy.as_deref().unwrap_or("Always");
        let mut pending_init = Vec::new();
        let mut init_failed = false;
        for (c, s) in init_specs.iter().zip(&mut init) {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let done = if sidecar { s["started"] == true } else { s["state"]["terminated"]["exitCode"] == 0 };
            if !done {
                pending_init.push(c.name.clone());
                let failed = s["state"]["terminated"]["exitCode"].as_i64().is_some_and(|c| c != 0);
                init_failed |= failed && policy == "Never" && !sidecar;
            }
            if !sidecar {
                s["ready"] = json!(done);
            }
        }
        let initialized = pending_init.is_empty();
        if !initialized {
            for s in &mut main {
                if s["state"]["waiting"]["reason"] == "ContainerCreating" {
                    s["state"]["waiting"]["reason"] = json!("PodInitializing");
                }
            }
        }
        let phase = if state.stopped.is_some() { "Failed" } else { status::phase(pod, &main, initialized, init_failed) };
        if phase == "Running" {
            if let Some(since) = state.starting_since.take() {
                self.timings.pod_start.observe(since.elapsed().as_secs_f64());
            }
        }
        let unready: Vec<String> = main.iter().filter(|s| s["ready"] != true).filter_map(|s| s["name"].as_str().map(str::to_string)).collect();
        let sandbox = self.sandboxes.exists(uid);
        let mut conditions = status::conditions(pod, sandbox, if initialized { Ok(()) } else { Err(pending_init) }, unready, phase);
        if let Some(Stopped { message, disruption: true, .. }) = &state.stopped {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            conditions.push(json!({"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet", "message": message, "lastTransitionTime": now}));
        }
        let ip = self.sandboxes.ip(uid).map(|i| i.to_string());
        let host_ip = self.config.address.to_string();
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).or(state.start_time.clone()),
            "containerStatuses": main,
        });
        if !init.is_empty() {
            status["initContainerStatuses"] = json!(init);
        }
        if !ephemeral_statuses.is_empty() {
            status["ephemeralContainerStatuses"] = json!(ephemeral_statuses);
        }
        if let Some(stopped) = &state.stopped {
            status["reason"] = json!(stopped.reason);
            status["message"] = json!(stopped.message);
        }
        if let Some(ip) = ip {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{"ip": ip}]);
        }
        if state.posted.as_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
        api.patch_status(pod.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await.context("posting the pod's status")?;
        state.posted = Some(status);
        Ok(())
    }

    /// Upstream's local storage eviction: a disk-backed emptyDir volume
    /// grown past its `sizeLimit` evicts its pod.
    fn over_storage_limit(&self, pod: &Pod) -> Option<String> {
        let volumes = pod.spec.as_ref()?.volumes.as_ref()?;
        volumes.iter().find_map(|v| {
            let empty = v.empty_dir.as_ref().filter(|e| e.medium.as_deref() != Some("Memory"))?;
            let limit = empty.size_limit.as_ref()?;
            let bytes = u64::try_from(skiff_quantity::value(&limit.0)?).ok()?;
            let path = self.volumes.pod_dir(uid_of(pod)).join("volumes/kubernetes.io~empty-dir").join(&v.name);
            (crate::disk_usage(&path) > bytes).then(|| format!("Usage of EmptyDir volume \"{}\" exceeds the limit \"{}\". ", v.name, limit.0))
        })
    }

    /// Removes containers, sandboxes and volumes of pods that are not
    /// bound here any more (left from before the agent restarted).
    async fn clean_up_orphans(&self, pods: &HashSet<String>) {
        let containers = self.runtime.list(None).await.unwrap_or_default();
        for c in containers.iter().filter(|c| !pods.contains(&c.meta.pod_uid)) {
            let _ = self.runtime.stop(&c.id, Duration::from_secs(2)).await;
            if let Err(e) = self.runtime.remove(&c.id).await {
                tracing::warn!("removing orphaned container {}: {e:#}", c.id);
            }
        }
        let mut uids: HashSet<String> = self.sandboxes.list().into_iter().collect();
        uids.extend(self.volumes.list());
        uids.extend(containers.iter().map(|c| c.meta.pod_uid.clone()));
        for uid in uids.iter().filter(|u| !pods.contains(*u)) {
            crate::runtime::remove_cgroup(&cgroup_parent(uid));
            if let Err(e) = tokio::task::block_in_place(|| self.sandboxes.remove(uid)) {
                tracing::warn!("removing the sandbox of pod {uid}: {e:#}");
            }
            if let Err(e) = self.volumes.teardown(uid).await {
                tracing::warn!("removing the volumes of pod {uid}: {e:#}");
            }
        }
    }

    async fn event(&self, pod: &Pod, container: Option<&str>, warning: bool, reason: &str, note: &str) {
        let mut reference = kube::Resource::object_ref(pod, &());
        if let Some(name) = container {
            let spec = pod.spec.as_ref();
            let is_init = spec.and_then(|s| s.init_containers.as_ref()).is_some_and(|l| l.iter().any(|c| c.name == name));
            let is_ephemeral = spec.and_then(|s| s.ephemeral_containers.as_ref()).is_some_and(|l| l.iter().any(|c| c.name == name));
            let list = if is_init { "initContainers" } else if is_ephemeral { "ephemeralContainers" } else { "containers" };
            reference.field_path = Some(format!("spec.{list}{{{name}}}"));
        }
        let event = Event { type_: if warning { EventType::Warning } else { EventType::Normal }, reason: reason.into(), note: Some(note.into()), action: reason.into(), secondary: None };
        if let Err(e) = self.events.publish(&event, &reference).await {
            tracing::debug!("event for {}: {e}", name_of(pod));
        }
    }
}

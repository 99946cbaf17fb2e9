//! The Job controller, as upstream's: runs pods from the template until
//! `completions` succeed (each index once, in Indexed mode), at most
//! `parallelism` at a time, replacing failed ones with exponential backoff
//! until `backoffLimit`, within `activeDeadlineSeconds`, as the
//! `podFailurePolicy` says, and not at all while `suspend`ed.
//!
//! Finished pods are counted through upstream's finalizer protocol: each
//! pod carries `batch.kubernetes.io/job-tracking`; a finished pod's uid is
//! first written to `status.uncountedTerminatedPods`, then its finalizer
//! removed, then it moves into `succeeded` or `failed`. A pod is counted
//! exactly once even if it is deleted right after it finishes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use k8s_openapi::api::batch::v1::{Job, JobSpec, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::{json, Value};

use crate::common::{controlled_by, controller_of, is_active, lock, owner_reference, plus_seconds, ready_since, Error, Expectations};
use crate::informers::Informer;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
const INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Pods created in flight at once (kube clients do not back off on 429).
const PARALLEL_CREATES: usize = 32;
/// Upstream's pod failure backoff: 10 s, doubled per failure, at most 6 min.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    expectations: Expectations,
    /// Per Job, pods whose finalizer this controller removed while the pod
    /// watch may still show it: they are counted already.
    counted: Mutex<HashMap<String, HashSet<String>>>,
    /// Per Job, the version of its last status write: a copy older than
    /// that is stale, and counting from it would count pods twice.
    written: Mutex<HashMap<String, u64>>,
}

pub fn run(client: kube::Client, pods: &Informer<Pod>) -> impl Future<Output = ()> + Send {
    let context = Arc::new(Context { client: client.clone(), pods: pods.store(), expectations: Expectations::default(), counted: Mutex::default(), written: Mutex::default() });
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default());
    let orphans = release_orphans(client, controller.store(), pods.subscribe());
    let jobs = crate::common::run("job", controller.owns_shared_stream(pods.subscribe()), reconcile, context);
    async move {
        tokio::join!(jobs, orphans);
    }
}

/// Pods that carry the tracking finalizer but whose Job is gone (deleted
/// in the background) lose the finalizer, as upstream's orphan pod
/// handling does; else they would stay Terminating forever.
async fn release_orphans(client: kube::Client, jobs: Store<Job>, pod_events: impl futures::Stream<Item = Arc<Pod>> + Send) {
    if crate::informers::ready(&jobs).await.is_err() {
        return;
    }
    pod_events
        .for_each(|pod| {
            let (client, jobs) = (client.clone(), jobs.clone());
            async move {
                // Only pods on their way out: a live Job counts them itself.
                let leaving = pod.metadata.deletion_timestamp.is_some();
                let Some(owner) = controller_of(&pod.metadata).filter(|o| o.kind == "Job" && leaving && tracked(&pod)) else { return };
                let job = ObjectRef::<Job>::new(&owner.name).within(pod.metadata.namespace.as_deref().unwrap_or_default());
                if jobs.get(&job).is_some_and(|j| j.metadata.uid.as_ref() == Some(&owner.uid)) {
                    return;
                }
                let api: Api<Pod> = Api::namespaced(client, pod.metadata.namespace.as_deref().unwrap_or_default());
                if let Err(e) = remove_finalizer(&api, &pod).await {
                    tracing::debug!("releasing orphan {:?}: {e}", pod.metadata.name);
                }
            }
        })
        .await;
}

/// Whether the Job has a terminal condition (Complete or Failed).
pub fn finished_at(job: &Job) -> Option<DateTime<Utc>> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map_or_else(Utc::now, |t| t.0))
}

fn index_of(pod: &Pod) -> Option<i32> {
    pod.metadata.annotations.as_ref()?.get(INDEX)?.parse().ok()
}

fn tracked(pod: &Pod) -> bool {
    pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)
}

/// Upstream's `isPodFailed`: Failed, or deleted before it succeeded (an
/// orphan that will never report Failed), unless only failed pods are
/// replaced.
fn failed(pod: &Pod, spec: &JobSpec) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase == Some("Failed") {
        return true;
    }
    let only_failed = spec.pod_replacement_policy.as_deref() == Some("Failed") || spec.pod_failure_policy.is_some();
    !only_failed && pod.metadata.deletion_timestamp.is_some() && phase != Some("Succeeded")
}

fn succeeded(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
}

/// When the pod's containers finished, for the backoff clock.
fn finish_time(pod: &Pod) -> DateTime<Utc> {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
    statuses
        .iter()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0))
        .max()
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .unwrap_or_else(Utc::now)
}

/// What the pod failure policy makes of a failed pod: the matching rule's
/// action and upstream's message for it.
fn failure_policy_action(spec: &JobSpec, pod: &Pod) -> Option<(String, String)> {
    let rules = &spec.pod_failure_policy.as_ref()?.rules;
    let ns_name = format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default());
    rules.iter().enumerate().find_map(|(i, rule)| {
        let how = rule_matches(rule, pod, &ns_name)?;
        Some((rule.action.clone(), format!("{how} matching {} rule at index {i}", rule.action)))
    })
}

fn rule_matches(rule: &PodFailurePolicyRule, pod: &Pod, ns_name: &str) -> Option<String> {
    let status = pod.status.as_ref()?;
    if let Some(codes) = &rule.on_exit_codes {
        let statuses = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
        return statuses
            .filter(|c| codes.container_name.as_ref().is_none_or(|n| n == &c.name))
            .filter_map(|c| Some((c.name.clone(), c.state.as_ref()?.terminated.as_ref()?.exit_code)))
            .filter(|(_, code)| *code != 0)
            .find(|(_, code)| (codes.operator == "In") == codes.values.contains(code))
            .map(|(name, code)| format!("Container {name} for pod {ns_name} failed with exit code {code}"));
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    rule.on_pod_conditions.iter().flatten().find_map(|want| {
        let status = want.status.as_str();
        conditions.iter().find(|c| c.type_ == want.type_ && c.status == status).map(|c| format!("Pod {ns_name} has condition {}", c.type_))
    })
}

/// Absent, or a zero value the API server's JSON omits.
fn empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => n.as_i64() == Some(0),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.values().all(|v| empty(Some(v))),
        _ => false,
    }
}

/// Indexes as upstream writes them: `1,3-5,7`.
fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while end.checked_add(1).is_some_and(|next| iter.peek() == Some(&next)) {
            end = iter.next().unwrap_or(end);
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    out.join(",")
}

/// Indexes below `limit` (the completions): a hostile range such as
/// `0-2147483647` is not walked beyond them.
fn parse_indexes(text: &str, limit: i32) -> BTreeSet<i32> {
    text.split(',')
        .filter_map(|part| match part.split_once('-') {
            Some((a, b)) => Some(a.parse::<i32>().ok()?.max(0)..=b.parse::<i32>().ok()?.min(limit.saturating_sub(1))),
            None => part.parse().ok().map(|i| i..=i),
        })
        .flatten()
        .filter(|i| (0..limit).contains(i))
        .collect()
}

/// The pods' current view, split as the status counts them.
pub struct Census {
    /// Every pod of the Job the watch shows, by name.
    present: HashSet<String>,
    active: Vec<Arc<Pod>>,
    terminating: usize,
    /// Finished pods still carrying the finalizer: to be counted now.
    newly_succeeded: Vec<Arc<Pod>>,
    newly_failed: Vec<Arc<Pod>>,
    /// Failed pods still present, and when the latest finished: the
    /// backoff clock (the Job's own count may be stale in the cache).
    failures: i32,
    last_failure: Option<DateTime<Utc>>,
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    crate::informers::ready(&ctx.pods).await.map_err(|e| Error(e.to_string()))?;
    let meta = &job.metadata;
    let (ns, uid) = (meta.namespace.clone().unwrap_or_default(), meta.uid.clone().unwrap_or_default());
    let version = |v: Option<&String>| v.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    if lock(&ctx.written).get(&uid).is_some_and(|w| *w > version(meta.resource_version.as_ref())) {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let spec = job.spec.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owned = controlled_by(&ctx.pods, meta);
    let counted: HashSet<String> = {
        // Forget what the watch now shows released.
        let mut counted = lock(&ctx.counted);
        let still_tracked: HashSet<&str> = owned.iter().filter(|p| tracked(p)).filter_map(|p| p.metadata.uid.as_deref()).collect();
        let mine = counted.entry(uid.clone()).or_default();
        mine.retain(|u| still_tracked.contains(u.as_str()));
        mine.clone()
    };
    // A Job being deleted, or finished, lets go of its pods; nothing is
    // counted any more, so what guarded counting is forgotten.
    if meta.deletion_timestamp.is_some() || finished_at(&job).is_some() {
        release(&ctx, &uid, &pods_api, owned.iter().filter(|p| tracked(p)).collect()).await;
        lock(&ctx.counted).remove(&uid);
        lock(&ctx.written).remove(&uid);
        return Ok(Action::await_change());
    }
    let census = census(&owned, &spec, &counted);
    let resource_version = Mutex::new(meta.resource_version.clone());
    Sync { ctx: &ctx, job: &job, spec: &spec, pods_api: &pods_api, census, resource_version }.run().await
}

/// The Job's pods as the status counts them; `counted` are those whose
/// finish is counted already.
pub fn census(owned: &[Arc<Pod>], spec: &JobSpec, counted: &HashSet<String>) -> Census {
    let present = owned.iter().filter_map(|p| p.metadata.name.clone()).collect();
    let mut census = Census { present, active: vec![], terminating: 0, newly_succeeded: vec![], newly_failed: vec![], failures: 0, last_failure: None };
    for pod in owned {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let terminal = matches!(phase, Some("Succeeded" | "Failed"));
        if pod.metadata.deletion_timestamp.is_some() && !terminal {
            census.terminating += 1;
        }
        let uncounted = tracked(pod) && !counted.contains(pod.metadata.uid.as_deref().unwrap_or_default());
        if succeeded(pod) {
            if uncounted {
                census.newly_succeeded.push(pod.clone());
            }
        } else if failed(pod, spec) {
            census.failures = census.failures.saturating_add(1);
            census.last_failure = census.last_failure.max(Some(finish_time(pod)));
            if uncounted {
                census.newly_failed.push(pod.clone());
            }
        } else if is_active(pod) {
            census.active.push(pod.clone());
        }
    }
    census
}

/// Every decision of one sync, on the objects alone: for the fuzz targets.
pub fn fuzz(job: &Job, pods: Vec<Pod>, now: DateTime<Utc>) {
    let spec = job.spec.clone().unwrap_or_default();
    let owned: Vec<Arc<Pod>> = pods.into_iter().map(Arc::new).collect();
    let census = census(&owned, &spec, &HashSet::new());
    let _ = finished_at(job);
    let _ = decide(job, &spec, &census, now);
}

/// Removes the tracking finalizer from pods the Job no longer counts.
async fn release(ctx: &Context, job_uid: &str, pods_api: &Api<Pod>, pods: Vec<&Arc<Pod>>) {
    for pod in pods {
        if let Err(e) = remove_finalizer(pods_api, pod).await {
            tracing::debug!("releasing {:?}: {e}", pod.metadata.name);
        } else {
            lock(&ctx.counted).entry(job_uid.to_string()).or_default().insert(pod.metadata.uid.clone().unwrap_or_default());
        }
    }
}

async fn remove_finalizer(pods_api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let finalizers: Vec<&String> = pod.metadata.finalizers.iter().flatten().filter(|f| *f != TRACKING_FINALIZER).collect();
    // Null, not `[]`: upstream's metadata omits an empty list.
    let finalizers = if finalizers.is_empty() { Value::Null } else { json!(finalizers) };
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": pod.metadata.resource_version}});
    match pods_api.patch(pod.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(patch)).await {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}

struct Sync<'a> {
    ctx: &'a Context,
    job: &'a Job,
    spec: &'a JobSpec,
    pods_api: &'a Api<Pod>,
    census: Census,
    /// The Job's version as last read or written: status writes are
    /// conditional on it.
    resource_version: Mutex<Option<String>>,
}

/// What a sync decides, from the Job and its pods alone.
pub struct Decision {
    /// Failed, complete or suspended: every active pod goes.
    pub stop: bool,
    /// Otherwise, once earlier writes are seen: the pods to delete (too
    /// many run), or those to start (by completion index in Indexed mode),
    /// or how long the failure back-off still holds new pods.
    pub doomed: Vec<Arc<Pod>>,
    pub start: Vec<Option<i32>>,
    pub backoff: Option<Duration>,
    /// Until activeDeadlineSeconds passes, if it will.
    pub deadline_in: Option<Duration>,
    /// The next status, and whether it differs from the Job's.
    pub status: Value,
    pub changed: bool,
    /// Settled with pods still terminating: look again soon.
    pub terminating: bool,
}

/// Upstream's limit on pods created or deleted per sync
/// (`maxPodCreateDeletePerSync`).
const MAX_CHANGES: i32 = 500;
/// Upstream's limit on completions in Indexed mode: hostile completed
/// indexes (`0-2147483647`) are read no further.
const MAX_INDEXES: i32 = 100_000;

/// Counts what finished, then decides, as upstream's `syncJob`: the
/// counters (saturating: a hostile status may hold i32::MAX), whether the
/// Job failed (backoffLimit, activeDeadlineSeconds, the pod failure policy)
/// or completed, the pods to start or stop, and the status.
pub fn decide(job: &Job, spec: &JobSpec, census: &Census, now: DateTime<Utc>) -> Decision {
    let status = job.status.clone().unwrap_or_default();
    let suspended = spec.suspend == Some(true);
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let index_limit = spec.completions.unwrap_or(0).clamp(0, MAX_INDEXES);
    let mut completed: BTreeSet<i32> = status.completed_indexes.as_deref().map(|t| parse_indexes(t, index_limit)).unwrap_or_default();
    let mut succeeded = status.succeeded.unwrap_or(0);
    let mut failed_count = status.failed.unwrap_or(0);
    let mut failure: Option<(&str, String)> = None;
    if !census.newly_succeeded.is_empty() || !census.newly_failed.is_empty() {
        for pod in &census.newly_succeeded {
            match index_of(pod) {
                Some(i) if indexed => {
                    completed.insert(i);
                }
                _ => succeeded = succeeded.saturating_add(1),
            }
        }
        for pod in &census.newly_failed {
            match failure_policy_action(spec, pod) {
                Some((action, _)) if action == "Ignore" => {}
                Some((action, message)) if action == "FailJob" => {
                    failed_count = failed_count.saturating_add(1);
                    failure.get_or_insert(("PodFailurePolicy", message));
                }
                _ => failed_count = failed_count.saturating_add(1),
            }
        }
        if indexed {
            completed.retain(|i| (0..index_limit).contains(i));
            succeeded = completed.len() as i32;
        }
    }

    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let active = census.active.len() as i32;
    let mut start_time = status.start_time.as_ref().map(|t| t.0);
    if !suspended && start_time.is_none() {
        start_time = Some(now);
    }
    if failure.is_none() && failed_count > spec.backoff_limit.unwrap_or(6) {
        failure = Some(("BackoffLimitExceeded", "Job has reached the specified backoff limit".into()));
    }
    // A deadline past what a time can hold never passes.
    let deadline = spec.active_deadline_seconds.zip(start_time).and_then(|(s, t)| plus_seconds(t, s));
    if failure.is_none() && deadline.is_some_and(|d| now >= d) && !suspended {
        failure = Some(("DeadlineExceeded", "Job was active longer than specified deadline".into()));
    }
    let complete = failure.is_none()
        && match completions {
            Some(c) if indexed => (0..c.min(MAX_INDEXES)).all(|i| completed.contains(&i)),
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active == 0,
        };

    // Pods to start or stop.
    let stop = failure.is_some() || complete || suspended;
    let (mut doomed, mut start, mut backoff) = (Vec::new(), Vec::new(), None);
    if !stop {
        let want = match completions {
            Some(c) if indexed => parallelism.min(c.saturating_sub(completed.len() as i32)),
            Some(c) => parallelism.min(c.saturating_sub(succeeded)),
            None if succeeded > 0 => active,
            None => parallelism,
        }
        .max(0);
        if active > want {
            doomed = census.active.clone();
            doomed.sort_by_key(|p| (ready_since(p).is_some(), std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0))));
            doomed.truncate((active - want).min(MAX_CHANGES) as usize);
        } else if active < want {
            let wait = failure_backoff(census, failed_count, now);
            let more = (want - active).min(MAX_CHANGES) as usize;
            if wait.is_zero() {
                let running: HashSet<i32> = census.active.iter().filter_map(|p| index_of(p)).collect();
                start = if indexed {
                    (0..completions.unwrap_or(0).min(MAX_INDEXES)).filter(|i| !completed.contains(i) && !running.contains(i)).take(more).map(Some).collect()
                } else {
                    vec![None; more]
                };
            } else {
                backoff = Some(wait);
            }
        }
    }
    let deadline_in = deadline.filter(|_| failure.is_none() && !complete).map(|d| (d - now).to_std().unwrap_or_default() + Duration::from_millis(50));

    // Status: counters, conditions, times.
    let old: Vec<Value> = status.conditions.iter().flatten().filter_map(|c| serde_json::to_value(c).ok()).collect();
    let mut conditions = old.clone();
    let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut set = |kind: &str, state: &str, reason: &str, message: &str| {
        let current = conditions.iter().position(|c| c["type"] == kind);
        if current.is_some_and(|i| conditions[i]["status"] == state && conditions[i]["reason"] == reason) {
            return;
        }
        let c = json!({"type": kind, "status": state, "reason": reason, "message": message, "lastProbeTime": stamp, "lastTransitionTime": stamp});
        match current {
            Some(i) => conditions[i] = c,
            None => conditions.push(c),
        }
    };
    let terminating = (census.terminating as i32).saturating_add(if stop { active } else { 0 });
    let mut completion_time = None;
    if let Some((reason, message)) = &failure {
        set("FailureTarget", "True", reason, message);
        if terminating == 0 {
            set("Failed", "True", reason, message);
        }
    } else if complete {
        set("SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods");
        if terminating == 0 {
            set("Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods");
            completion_time = Some(stamp.clone());
        }
    } else if suspended {
        set("Suspended", "True", "JobSuspended", "Job suspended");
    } else if old.iter().any(|c| c["type"] == "Suspended" && c["status"] == "True") {
        set("Suspended", "False", "JobResumed", "Job resumed");
        start_time = Some(now);
    }
    let ready = census.active.iter().filter(|p| ready_since(p).is_some()).count();
    let mut next = json!({
        "active": if stop { 0 } else { active },
        "ready": if stop { 0 } else { ready as i32 },
        "terminating": terminating,
        "succeeded": succeeded,
        "failed": failed_count,
        // Counted now: cleared (in a merge patch only null removes a list).
        "uncountedTerminatedPods": {"succeeded": null, "failed": null},
        "conditions": conditions,
        "startTime": start_time.filter(|_| !suspended || status.start_time.is_some()).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    });
    // Upstream's omitempty counters: a zero is absent.
    for k in ["active", "succeeded", "failed"] {
        if next[k] == 0 {
            next[k] = Value::Null;
        }
    }
    if indexed {
        next["completedIndexes"] = json!(format_indexes(&completed));
    }
    if let Some(t) = completion_time {
        next["completionTime"] = json!(t);
    }
    let current = serde_json::to_value(&status).unwrap_or_default();
    let changed = next.as_object().into_iter().flatten().any(|(k, v)| current.get(k) != Some(v) && !(empty(current.get(k)) && empty(Some(v))));
    Decision { stop, doomed, start, backoff, deadline_in, status: next, changed, terminating: stop && terminating > 0 }
}

/// How long until the next pod may start after `failures` failures:
/// upstream's 10 s × 2^(n−1), at most 6 min, from the last failure.
fn failure_backoff(census: &Census, failures: i32, now: DateTime<Utc>) -> Duration {
    let failures = failures.max(census.failures);
    let Some(last) = census.last_failure.filter(|_| failures > 0) else { return Duration::ZERO };
    let delay = BACKOFF_BASE.saturating_mul(1 << (failures - 1).min(6) as u32).min(BACKOFF_MAX);
    let until = last.checked_add_signed(chrono::Duration::from_std(delay).unwrap_or_default()).unwrap_or(last);
    (until - now).to_std().unwrap_or_default()
}

impl Sync<'_> {
    async fn run(self) -> Result<Action, Error> {
        let now = Utc::now();
        // Count what finished: uncounted first, finalizers off, then counters.
        let finished: Vec<&Arc<Pod>> = self.census.newly_succeeded.iter().chain(self.census.newly_failed.iter()).collect();
        if !finished.is_empty() {
            let uids = |pods: &[Arc<Pod>]| pods.iter().filter_map(|p| p.metadata.uid.clone()).collect::<Vec<_>>();
            let uncounted = json!({"succeeded": uids(&self.census.newly_succeeded), "failed": uids(&self.census.newly_failed)});
            self.write_status(json!({"uncountedTerminatedPods": uncounted})).await?;
            release(self.ctx, self.job.metadata.uid.as_deref().unwrap_or_default(), self.pods_api, finished).await;
        }
        let decision = decide(self.job, self.spec, &self.census, now);

        let mut requeue = Duration::from_secs(30);
        let uid = self.job.metadata.uid.clone().unwrap_or_default();
        if decision.stop {
            self.delete(&self.census.active).await;
        } else if self.ctx.expectations.satisfied(&uid, &self.census.present) {
            if !decision.doomed.is_empty() {
                self.delete(&decision.doomed).await;
            } else if let Some(wait) = decision.backoff {
                requeue = wait;
            } else if !decision.start.is_empty() {
                self.create(&decision.start).await?;
            }
        }
        if let Some(left) = decision.deadline_in {
            requeue = requeue.min(left);
        }
        if decision.changed {
            self.write_status(decision.status).await?;
        }
        Ok(if decision.terminating { Action::requeue(Duration::from_secs(1)) } else { Action::requeue(requeue) })
    }

    async fn create(&self, indexes: &[Option<i32>]) -> Result<(), Error> {
        let meta = &self.job.metadata;
        let name = meta.name.clone().unwrap_or_default();
        let uid = meta.uid.clone().unwrap_or_default();
        let template = self.spec.template.clone();
        let pods: Vec<Pod> = indexes
            .iter()
            .map(|index| {
                let mut pod_meta = template.metadata.clone().unwrap_or_default();
                pod_meta.namespace = meta.namespace.clone();
                pod_meta.owner_references = Some(vec![owner_reference(meta, "batch/v1", "Job")]);
                pod_meta.finalizers.get_or_insert_with(Vec::new).push(TRACKING_FINALIZER.into());
                pod_meta.generate_name = Some(format!("{name}-"));
                let mut spec = template.spec.clone().unwrap_or_default();
                if let Some(i) = index {
                    pod_meta.generate_name = Some(format!("{name}-{i}-"));
                    pod_meta.annotations.get_or_insert_with(Default::default).insert(INDEX.into(), i.to_string());
                    pod_meta.labels.get_or_insert_with(Default::default).insert(INDEX.into(), i.to_string());
                    spec.hostname.get_or_insert_with(|| format!("{name}-{i}"));
                    let env = json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": format!("metadata.annotations['{INDEX}']")}}});
                    let env = serde_json::from_value(env).expect("an EnvVar");
                    for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
                        c.env.get_or_insert_with(Vec::new).push(Clone::clone(&env));
                    }
                }
                Pod { metadata: pod_meta, spec: Some(spec), status: None }
            })
            .collect();
        let params = PostParams::default();
        let creates: Vec<_> = pods.iter().map(|p| self.pods_api.create(&params, p)).collect();
        let results: Vec<Result<Pod, kube::Error>> = stream::iter(creates).buffer_unordered(PARALLEL_CREATES).collect().await;
        let created: Vec<String> = results.iter().filter_map(|r| r.as_ref().ok()).filter_map(|p| p.metadata.name.clone()).collect();
        self.ctx.expectations.expect(&uid, created, []);
        match results.into_iter().find_map(Result::err) {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    async fn delete(&self, pods: &[Arc<Pod>]) {
        let uid = self.job.metadata.uid.clone().unwrap_or_default();
        self.ctx.expectations.expect(&uid, [], pods.iter().filter_map(|p| p.metadata.name.clone()));
        for pod in pods {
            let params = DeleteParams { preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }), ..Default::default() };
            if let Err(e) = self.pods_api.delete(pod.metadata.name.as_deref().unwrap_or_default(), &params).await {
                tracing::debug!("deleting a pod of job {uid}: {e}");
            }
        }
    }

    /// A merge patch of the Job's status, conditional on the version read:
    /// counters must never be written from a stale copy.
    async fn write_status(&self, status: Value) -> Result<(), Error> {
        let api: Api<Job> = Api::namespaced(self.ctx.client.clone(), self.job.metadata.namespace.as_deref().unwrap_or_default());
        let version = lock(&self.resource_version).clone();
        let patch = json!({"metadata": {"resourceVersion": version}, "status": status});
        let written = api.patch_status(self.job.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        let version = written.metadata.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
        lock(&self.ctx.written).insert(self.job.metadata.uid.clone().unwrap_or_default(), version);
        *lock(&self.resource_version) = written.metadata.resource_version;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hostile values that panicked or ran away: a deadline past what a
    /// time holds, counters at i32::MAX, a completed range of two billion
    /// indexes, parallelism of two billion.
    #[test]
    fn hostile_counts_and_deadlines_are_survived() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "j", "namespace": "ns", "uid": "j"},
            "spec": {"activeDeadlineSeconds": i64::MAX, "parallelism": i32::MAX, "completions": i32::MAX, "completionMode": "Indexed", "template": {}},
            "status": {"succeeded": i32::MAX, "failed": i32::MAX, "completedIndexes": "0-2147483647", "startTime": "2026-01-01T00:00:00Z"},
        }))
        .unwrap();
        let spec = job.spec.clone().unwrap();
        let decision = decide(&job, &spec, &census(&[], &spec, &HashSet::new()), Utc::now());
        assert!(decision.start.len() <= MAX_CHANGES as usize && decision.deadline_in.is_none());
        assert_eq!(parse_indexes("0-2147483647", 3), BTreeSet::from([0, 1, 2]));
        assert_eq!(format_indexes(&BTreeSet::from([i32::MAX - 1, i32::MAX])), "2147483646-2147483647");
    }
}

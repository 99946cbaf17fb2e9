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

use crate::common::{controlled_by, controller_of, is_active, owner_reference, ready_since, Error, Expectations};
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
    let jobs = controller
        .owns_shared_stream(pods.subscribe())
        .run(reconcile, |_, e, _| {
            tracing::debug!("job: {e}");
            Action::requeue(Duration::from_secs(1))
        }, context)
        .for_each(|_| async {});
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
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    out.join(",")
}

fn parse_indexes(text: &str) -> BTreeSet<i32> {
    text.split(',')
        .filter_map(|part| match part.split_once('-') {
            Some((a, b)) => Some(a.parse().ok()?..=b.parse().ok()?),
            None => part.parse().ok().map(|i| i..=i),
        })
        .flatten()
        .collect()
}

/// The pods' current view, split as the status counts them.
struct Census {
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
    if ctx.written.lock().unwrap().get(&uid).is_some_and(|w| *w > version(meta.resource_version.as_ref())) {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let spec = job.spec.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owned = controlled_by(&ctx.pods, meta);
    let counted: HashSet<String> = {
        // Forget what the watch now shows released.
        let mut counted = ctx.counted.lock().unwrap();
        let still_tracked: HashSet<&str> = owned.iter().filter(|p| tracked(p)).filter_map(|p| p.metadata.uid.as_deref()).collect();
        let mine = counted.entry(uid.clone()).or_default();
        mine.retain(|u| still_tracked.contains(u.as_str()));
        mine.clone()
    };
    // A Job being deleted, or finished, lets go of its pods; nothing is
    // counted any more, so what guarded counting is forgotten.
    if meta.deletion_timestamp.is_some() || finished_at(&job).is_some() {
        release(&ctx, &uid, &pods_api, owned.iter().filter(|p| tracked(p)).collect()).await;
        ctx.counted.lock().unwrap().remove(&uid);
        ctx.written.lock().unwrap().remove(&uid);
        return Ok(Action::await_change());
    }
    let present = owned.iter().filter_map(|p| p.metadata.name.clone()).collect();
    let mut census = Census { present, active: vec![], terminating: 0, newly_succeeded: vec![], newly_failed: vec![], failures: 0, last_failure: None };
    for pod in &owned {
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
        } else if failed(pod, &spec) {
            census.failures += 1;
            census.last_failure = census.last_failure.max(Some(finish_time(pod)));
            if uncounted {
                census.newly_failed.push(pod.clone());
            }
        } else if is_active(pod) {
            census.active.push(pod.clone());
        }
    }
    let resource_version = Mutex::new(meta.resource_version.clone());
    Sync { ctx: &ctx, job: &job, spec: &spec, pods_api: &pods_api, census, resource_version }.run().await
}

/// Removes the tracking finalizer from pods the Job no longer counts.
async fn release(ctx: &Context, job_uid: &str, pods_api: &Api<Pod>, pods: Vec<&Arc<Pod>>) {
    for pod in pods {
        if let Err(e) = remove_finalizer(pods_api, pod).await {
            tracing::debug!("releasing {:?}: {e}", pod.metadata.name);
        } else {
            ctx.counted.lock().unwrap().entry(job_uid.to_string()).or_default().insert(pod.metadata.uid.clone().unwrap_or_default());
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

impl Sync<'_> {
    async fn run(self) -> Result<Action, Error> {
        let status = self.job.status.clone().unwrap_or_default();
        let now = Utc::now();
        let suspended = self.spec.suspend == Some(true);
        let indexed = self.spec.completion_mode.as_deref() == Some("Indexed");
        let mut completed: BTreeSet<i32> = status.completed_indexes.as_deref().map(parse_indexes).unwrap_or_default();
        let mut succeeded = status.succeeded.unwrap_or(0);
        let mut failed_count = status.failed.unwrap_or(0);
        let mut failure: Option<(&str, String)> = None;

        // Count what finished: uncounted first, finalizers off, then counters.
        let finished: Vec<&Arc<Pod>> = self.census.newly_succeeded.iter().chain(self.census.newly_failed.iter()).collect();
        if !finished.is_empty() {
            let uids = |pods: &[Arc<Pod>]| pods.iter().filter_map(|p| p.metadata.uid.clone()).collect::<Vec<_>>();
            let uncounted = json!({"succeeded": uids(&self.census.newly_succeeded), "failed": uids(&self.census.newly_failed)});
            self.write_status(json!({"uncountedTerminatedPods": uncounted})).await?;
            release(self.ctx, self.job.metadata.uid.as_deref().unwrap_or_default(), self.pods_api, finished).await;
            for pod in &self.census.newly_succeeded {
                match index_of(pod) {
                    Some(i) if indexed => {
                        completed.insert(i);
                    }
                    _ => succeeded += 1,
                }
            }
            for pod in &self.census.newly_failed {
                match failure_policy_action(self.spec, pod) {
                    Some((action, _)) if action == "Ignore" => {}
                    Some((action, message)) if action == "FailJob" => {
                        failed_count += 1;
                        failure.get_or_insert(("PodFailurePolicy", message));
                    }
                    _ => failed_count += 1,
                }
            }
            if indexed {
                completed.retain(|i| *i < self.spec.completions.unwrap_or(0));
                succeeded = completed.len() as i32;
            }
        }

        let completions = self.spec.completions;
        let parallelism = self.spec.parallelism.unwrap_or(1).max(0);
        let active = self.census.active.len() as i32;
        let mut start_time = status.start_time.as_ref().map(|t| t.0);
        if !suspended && start_time.is_none() {
            start_time = Some(now);
        }
        if failure.is_none() && failed_count > self.spec.backoff_limit.unwrap_or(6) {
            failure = Some(("BackoffLimitExceeded", "Job has reached the specified backoff limit".into()));
        }
        let deadline = self.spec.active_deadline_seconds.zip(start_time).map(|(s, t)| t + chrono::Duration::seconds(s));
        if failure.is_none() && deadline.is_some_and(|d| now >= d) && !suspended {
            failure = Some(("DeadlineExceeded", "Job was active longer than specified deadline".into()));
        }
        let complete = failure.is_none()
            && match completions {
                Some(c) if indexed => (0..c).all(|i| completed.contains(&i)),
                Some(c) => succeeded >= c,
                None => succeeded > 0 && active == 0,
            };

        // Pods to start or stop.
        let mut requeue = Duration::from_secs(30);
        let uid = self.job.metadata.uid.clone().unwrap_or_default();
        if failure.is_some() || complete || suspended {
            self.delete(&self.census.active).await;
        } else if self.ctx.expectations.satisfied(&uid, &self.census.present) {
            let want = match completions {
                Some(c) if indexed => parallelism.min(c - completed.len() as i32),
                Some(c) => parallelism.min(c - succeeded),
                None if succeeded > 0 => active,
                None => parallelism,
            }
            .max(0);
            if active > want {
                let mut doomed = self.census.active.clone();
                doomed.sort_by_key(|p| (ready_since(p).is_some(), std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0))));
                doomed.truncate((active - want) as usize);
                self.delete(&doomed).await;
            } else if active < want {
                let backoff = self.backoff(failed_count, now);
                if backoff.is_zero() {
                    let running: HashSet<i32> = self.census.active.iter().filter_map(|p| index_of(p)).collect();
                    let indexes: Vec<Option<i32>> = if indexed {
                        (0..completions.unwrap_or(0)).filter(|i| !completed.contains(i) && !running.contains(i)).take((want - active) as usize).map(Some).collect()
                    } else {
                        vec![None; (want - active) as usize]
                    };
                    self.create(&indexes).await?;
                } else {
                    requeue = backoff;
                }
            }
        }
        if let Some(d) = deadline.filter(|_| failure.is_none() && !complete) {
            requeue = requeue.min((d - now).to_std().unwrap_or_default() + Duration::from_millis(50));
        }

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
        let terminating = self.census.terminating as i32 + if failure.is_some() || complete || suspended { active } else { 0 };
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
        let settled = failure.is_some() || complete || suspended;
        let ready = self.census.active.iter().filter(|p| ready_since(p).is_some()).count();
        let mut next = json!({
            "active": if settled { 0 } else { active },
            "ready": if settled { 0 } else { ready as i32 },
            "terminating": terminating,
            "succeeded": succeeded,
            "failed": failed_count,
            "uncountedTerminatedPods": {},
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
        if changed {
            self.write_status(next).await?;
        }
        Ok(if settled && terminating > 0 { Action::requeue(Duration::from_secs(1)) } else { Action::requeue(requeue) })
    }

    /// How long until the next pod may start after `failures` failures:
    /// upstream's 10 s × 2^(n−1), at most 6 min, from the last failure.
    fn backoff(&self, failures: i32, now: DateTime<Utc>) -> Duration {
        let failures = failures.max(self.census.failures);
        let Some(last) = self.census.last_failure.filter(|_| failures > 0) else { return Duration::ZERO };
        let delay = BACKOFF_BASE.saturating_mul(1 << (failures - 1).min(6) as u32).min(BACKOFF_MAX);
        (last + chrono::Duration::from_std(delay).unwrap_or_default() - now).to_std().unwrap_or_default()
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
        let version = self.resource_version.lock().unwrap().clone();
        let patch = json!({"metadata": {"resourceVersion": version}, "status": status});
        let written = api.patch_status(self.job.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        let version = written.metadata.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
        self.ctx.written.lock().unwrap().insert(self.job.metadata.uid.clone().unwrap_or_default(), version);
        *self.resource_version.lock().unwrap() = written.metadata.resource_version;
        Ok(())
    }
}

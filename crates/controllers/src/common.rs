//! What the controllers share: the reconcile loop around kube-runtime's
//! `Controller` (panics caught, failures retried with back-off), owner
//! references, selectors, pod states, and "expectations" (writes made but
//! not yet seen in a watch).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::Resource;

/// A reconcile's failure, as the controller runtime wants it.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error(e.to_string())
    }
}

/// A failed object is tried again after upstream's rate-limited work
/// queue's per-item back-off: 5 ms, doubled per failure in a row, at most
/// 1000 s.
const RETRY_FIRST: Duration = Duration::from_millis(5);
const RETRY_MAX: Duration = Duration::from_secs(1000);

/// The wait before the attempt after `failures` failures in a row.
pub fn retry_after(failures: u32) -> Duration {
    RETRY_FIRST.saturating_mul(1u32.checked_shl(failures).unwrap_or(u32::MAX)).min(RETRY_MAX)
}

/// Failures in a row per object, and when the last was (to forget
/// objects deleted while failing).
type Failures<K> = Mutex<HashMap<ObjectRef<K>, (u32, Instant)>>;

/// Runs a controller until its watches end: each object is reconciled by
/// `reconcile`; a reconcile that fails or panics is logged and its object
/// tried again with per-object exponential back-off, and a panic is
/// counted (`controller_reconcile_panics_total{controller=name}`). One
/// object's panic never stops the controller.
pub async fn run<K, Ctx, F, Fut>(name: &'static str, controller: Controller<K>, reconcile: F, context: Arc<Ctx>)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    Ctx: Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Ctx>) -> Fut,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let failures: Arc<Failures<K>> = Arc::default();
    let forget = failures.clone();
    let guarded = move |object: Arc<K>, context: Arc<Ctx>| {
        let key = ObjectRef::from_obj(&*object);
        let what = describe(&*object);
        let forget = forget.clone();
        crate::metrics::work_started(name);
        let started = Instant::now();
        let reconciled = AssertUnwindSafe(reconcile(object, context)).catch_unwind();
        async move {
            let reconciled = reconciled.await;
            crate::metrics::work_done(name, started.elapsed());
            match reconciled {
                Ok(Ok(action)) => {
                    lock(&forget).remove(&key);
                    Ok(action)
                }
                Ok(Err(e)) => Err(e),
                Err(panic) => {
                    let message = skiff_scheduler::crash::message(&*panic);
                    tracing::error!(controller = name, "reconciling {what} panicked: {message}");
                    crate::metrics::reconcile_panicked(name);
                    Err(Error(format!("panic: {message}")))
                }
            }
        }
    };
    let error_policy = move |object: Arc<K>, error: &Error, _: Arc<Ctx>| {
        let mut failures = lock(&failures);
        // Objects deleted while failing are never reconciled again.
        if failures.len() > 1024 {
            failures.retain(|_, (_, at)| at.elapsed() < RETRY_MAX * 2);
        }
        let entry = failures.entry(ObjectRef::from_obj(&*object)).or_insert((0, Instant::now()));
        let delay = retry_after(entry.0);
        crate::metrics::retried(name);
        *entry = (entry.0.saturating_add(1), Instant::now());
        tracing::debug!(controller = name, "{}: {error}; retrying in {delay:?}", describe(&*object));
        Action::requeue(delay)
    };
    controller.run(guarded, error_policy, context).for_each(|_| async {}).await;
}

/// `Kind namespace/name`, for logs.
fn describe<K: Resource<DynamicType = ()>>(object: &K) -> String {
    let meta = object.meta();
    format!("{} {}/{}", K::kind(&()), meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
}

/// A mutex's contents, also after a panic caught while it was held: what
/// the controllers keep behind one (expectations, counters) stays usable.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The longest wait a reconcile asks for: kube-runtime's scheduler panics
/// on one past about two years (tokio-util's `DelayQueue`), and a far
/// deadline (a TTL of `i32::MAX` seconds) is better looked at again.
const MAX_REQUEUE: Duration = Duration::from_secs(3600);

pub fn requeue(after: Duration) -> Action {
    Action::requeue(after.min(MAX_REQUEUE))
}

/// `time` plus `seconds`, or None past what a time can hold (chrono
/// panics there; an `activeDeadlineSeconds` of `i64::MAX` never passes).
pub fn plus_seconds(time: DateTime<Utc>, seconds: i64) -> Option<DateTime<Utc>> {
    time.checked_add_signed(TimeDelta::try_seconds(seconds)?)
}

/// Upstream's `SafeEncodeString` of an FNV-1a hash of `value` (a pod
/// template, a revision): the hash is Skiff's own (upstream hashes Go's
/// printing of the struct), the alphabet and shape are upstream's.
pub fn hash_of(value: &impl serde::Serialize) -> String {
    let text = serde_json::to_string(value).expect("JSON serializes");
    let hash = text.bytes().fold(0x811c9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x01000193));
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string().bytes().map(|c| ALPHABET[c as usize % ALPHABET.len()] as char).collect()
}

/// The owner reference that marks `meta`'s controller, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|o| o.controller == Some(true))
}

/// The objects in `store` that `owner` controls (its namespace, its uid
/// in their controller reference).
pub fn controlled_by<K: kube::Resource<DynamicType = ()> + Clone + 'static>(store: &kube::runtime::reflector::Store<K>, owner: &ObjectMeta) -> Vec<std::sync::Arc<K>> {
    store
        .state()
        .into_iter()
        .filter(|o| o.meta().namespace == owner.namespace && controller_of(o.meta()).is_some_and(|c| Some(&c.uid) == owner.uid.as_ref()))
        .collect()
}

/// A controller owner reference to `owner` of `api_version`/`kind`.
pub fn owner_reference(meta: &ObjectMeta, api_version: &str, kind: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `labels` are selected by `selector` (an empty selector selects
/// nothing here, as workload controllers treat it).
pub fn selects(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty()) && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty());
    !empty && skiff_scheduler::selector_matches(Some(selector), labels)
}

/// An absolute or percentage IntOrString (or `default`, written the same
/// way: `25%`, `1`) against `total`. What validation refuses counts as
/// 0: a negative result, a percentage that is not a number (`abc%`).
pub fn resolve(value: Option<&IntOrString>, default: &str, total: i32, round_up: bool) -> i32 {
    let text = match value {
        Some(IntOrString::Int(i)) => return (*i).max(0),
        Some(IntOrString::String(s)) => s.as_str(),
        None => default,
    };
    let resolved = match text.strip_suffix('%') {
        Some(percent) => {
            // Float to int casts saturate (and NaN is 0): no overflow.
            let exact = percent.parse::<f64>().unwrap_or(0.0) * total as f64 / 100.0;
            (if round_up { exact.ceil() } else { exact.floor() }) as i32
        }
        None => text.parse().unwrap_or(0),
    };
    resolved.max(0)
}

/// Not finished and not being deleted: counts toward replicas.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// When the pod became Ready, if it is.
pub fn ready_since(pod: &Pod) -> Option<chrono::DateTime<chrono::Utc>> {
    let ready = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(ready.last_transition_time.as_ref().map_or_else(chrono::Utc::now, |t| t.0))
}

/// Ready for at least `min_ready_seconds`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32) -> bool {
    ready_since(pod).is_some_and(|t| plus_seconds(t, min_ready_seconds.into()).is_some_and(|t| t <= chrono::Utc::now()))
}

/// Writes a controller made that its watch has not shown yet, per owner
/// (upstream's "expectations"): until they show, counting what the watch
/// shows would create or delete the same pods twice.
#[derive(Default)]
pub struct Expectations {
    owners: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    created: HashSet<String>,
    deleted: HashSet<String>,
    since: Instant,
}

/// Expectations older than this are given up on (a write whose event was
/// lost), as upstream's five-minute TTL, shortened.
const EXPECTATION_TTL: Duration = Duration::from_secs(60);

impl Expectations {
    pub fn expect(&self, owner: &str, created: impl IntoIterator<Item = String>, deleted: impl IntoIterator<Item = String>) {
        let mut owners = lock(&self.owners);
        let pending = owners.entry(owner.to_string()).or_insert_with(|| Pending { created: HashSet::new(), deleted: HashSet::new(), since: Instant::now() });
        pending.created.extend(created);
        pending.deleted.extend(deleted);
        pending.since = Instant::now();
    }

    /// True when every write for `owner` has been seen: each created name
    /// is in `present`, each deleted one is not.
    pub fn satisfied(&self, owner: &str, present: &HashSet<String>) -> bool {
        let mut owners = lock(&self.owners);
        let Some(pending) = owners.get_mut(owner) else { return true };
        pending.created.retain(|n| !present.contains(n));
        pending.deleted.retain(|n| present.contains(n));
        let done = (pending.created.is_empty() && pending.deleted.is_empty()) || pending.since.elapsed() > EXPECTATION_TTL;
        if done {
            owners.remove(owner);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::Api;
    use kube::runtime::watcher;

    #[test]
    fn failures_back_off_as_upstreams_work_queue() {
        let waits: Vec<Duration> = [0, 1, 2, 10, 17, 18, 40].into_iter().map(retry_after).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(waits, [ms(5), ms(10), ms(20), ms(5120), ms(655_360), RETRY_MAX, RETRY_MAX]);
    }

    /// A fake API server holding two ConfigMaps, whose watch never says
    /// anything more.
    fn two_config_maps() -> kube::Client {
        use http_body_util::{BodyExt, Full, StreamBody};
        let service = tower::service_fn(|request: http::Request<kube::client::Body>| async move {
            let watch = request.uri().query().is_some_and(|q| q.contains("watch=true"));
            let body = if watch {
                BodyExt::boxed(StreamBody::new(futures::stream::pending::<Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>>()))
            } else {
                let list = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "1"}, "items": [
                    {"metadata": {"name": "hostile", "namespace": "ns", "uid": "1"}},
                    {"metadata": {"name": "fine", "namespace": "ns", "uid": "2"}},
                ]});
                BodyExt::boxed(Full::new(bytes::Bytes::from(list.to_string())))
            };
            Ok::<_, std::convert::Infallible>(http::Response::new(body))
        });
        kube::Client::new(service, "default")
    }

    /// The failure: one object's reconcile panics. It is retried
    /// with back-off and counted; the other objects are reconciled as
    /// usual, and the controller goes on.
    #[tokio::test]
    async fn a_panicking_reconcile_is_retried_and_the_controller_goes_on() {
        let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let controller = Controller::new(Api::<ConfigMap>::all(two_config_maps()), watcher::Config::default());
        let reconcile = |cm: Arc<ConfigMap>, calls: Arc<Mutex<HashMap<String, usize>>>| async move {
            let name = cm.metadata.name.clone().unwrap_or_default();
            *lock(&calls).entry(name.clone()).or_default() += 1;
            if name == "hostile" {
                panic!("i32::clamp with max < min");
            }
            Ok(Action::await_change())
        };
        let task = tokio::spawn(run("panic-test", controller, reconcile, calls.clone()));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let counts = lock(&calls).clone();
        assert!(!task.is_finished(), "the controller still runs");
        assert_eq!(counts.get("fine"), Some(&1));
        // 5, 10, 20, … 640 ms after each failure: 8 attempts in 1.3 s.
        let hostile = counts.get("hostile").copied().unwrap_or(0);
        assert!((5..=9).contains(&hostile), "retried with back-off: {counts:?}");
        let metrics = crate::metrics::render();
        assert!(metrics.contains(&format!("controller_reconcile_panics_total{{controller=\"panic-test\"}} {hostile}")), "{metrics}");
        task.abort();
    }
}

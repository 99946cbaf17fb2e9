//! What the controllers share: owner references, selectors, pod states,
//! and "expectations" (writes made but not yet seen in a watch).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

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
/// way: `25%`, `1`) against `total`.
pub fn resolve(value: Option<&IntOrString>, default: &str, total: i32, round_up: bool) -> i32 {
    let text = match value {
        Some(IntOrString::Int(i)) => return *i,
        Some(IntOrString::String(s)) => s.as_str(),
        None => default,
    };
    match text.strip_suffix('%') {
        Some(percent) => {
            let exact = percent.parse::<f64>().unwrap_or(0.0) * total as f64 / 100.0;
            (if round_up { exact.ceil() } else { exact.floor() }) as i32
        }
        None => text.parse().unwrap_or(0),
    }
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
    ready_since(pod).is_some_and(|t| t + chrono::Duration::seconds(min_ready_seconds as i64) <= chrono::Utc::now())
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
        let mut owners = self.owners.lock().unwrap();
        let pending = owners.entry(owner.to_string()).or_insert_with(|| Pending { created: HashSet::new(), deleted: HashSet::new(), since: Instant::now() });
        pending.created.extend(created);
        pending.deleted.extend(deleted);
        pending.since = Instant::now();
    }

    /// True when every write for `owner` has been seen: each created name
    /// is in `present`, each deleted one is not.
    pub fn satisfied(&self, owner: &str, present: &HashSet<String>) -> bool {
        let mut owners = self.owners.lock().unwrap();
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

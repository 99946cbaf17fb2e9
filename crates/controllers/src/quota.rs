//! The resource quota controller, as upstream's: each ResourceQuota's
//! `status.used` is recomputed from what its namespace holds, for every
//! resource in `spec.hard`: object counts (`pods`, `services`,
//! `count/deployments.apps`, …) and compute requests and limits of the
//! pods in the quota's scopes. Admission (the ResourceQuota plugin) keeps
//! `used` current between these passes.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::Discovery;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use serde_json::json;
use skiff_scheduler::quantity;

use crate::common::Error;
use crate::informers::{on_pods_in_namespace, Informer};

/// How often usage is recounted without a pod change (upstream resyncs
/// every 5 min; object deletions replenish sooner there).
const RESYNC: Duration = Duration::from_secs(10);

/// How long a lower count must hold before it is written.
const LOWER_AFTER: Duration = Duration::from_secs(1);

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    /// Lower usage seen once, by quota: written only when seen again a
    /// moment later (see `reconcile`).
    lower: std::sync::Mutex<std::collections::HashMap<(String, String), (BTreeMap<String, String>, std::time::Instant)>>,
}

pub fn run(client: kube::Client, pods: &Informer<Pod>) -> impl Future<Output = ()> + Send {
    let context = Arc::new(Context { client: client.clone(), pods: pods.store(), lower: Default::default() });
    crate::common::run("resourcequota", on_pods_in_namespace::<ResourceQuota>(&client, pods), reconcile, context)
}

/// A pod counts while it has not finished.
fn counts(pod: &Pod) -> bool {
    !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// Upstream's pod requests or limits: the larger of the containers' sum
/// and any one init container, plus the pod overhead.
pub fn pod_resources(pod: &Pod, limits: bool) -> BTreeMap<String, (i64, bool)> {
    let mut out: BTreeMap<String, (i64, bool)> = BTreeMap::new();
    let Some(spec) = pod.spec.as_ref() else { return out };
    let of = |c: &k8s_openapi::api::core::v1::Container| {
        let r = c.resources.as_ref();
        if limits { r.and_then(|r| r.limits.clone()) } else { r.and_then(|r| r.requests.clone()) }.unwrap_or_default()
    };
    let add = |out: &mut BTreeMap<String, (i64, bool)>, list: &BTreeMap<String, Quantity>| {
        for (k, q) in list {
            let e = out.entry(k.clone()).or_insert((0, quantity::is_binary(&q.0)));
            // Saturating: two containers asking `8Ei` must not overflow.
            e.0 = e.0.saturating_add(quantity::milli(&q.0).unwrap_or(0));
        }
    };
    for c in &spec.containers {
        add(&mut out, &of(c));
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, q) in of(c) {
            let v = quantity::milli(&q.0).unwrap_or(0);
            let e = out.entry(k).or_insert((0, quantity::is_binary(&q.0)));
            e.0 = e.0.max(v);
        }
    }
    add(&mut out, &spec.overhead.clone().unwrap_or_default());
    out
}

/// Whether a pod is in every one of the quota's scopes.
pub fn in_scopes(quota: &ResourceQuota, pod: &Pod) -> bool {
    let spec = quota.spec.as_ref();
    let terminating = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds).is_some();
    let best_effort = pod_resources(pod, false).is_empty() && pod_resources(pod, true).is_empty();
    let priority = pod.spec.as_ref().and_then(|s| s.priority_class_name.clone());
    let scope = |name: &str| match name {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        _ => true,
    };
    let scopes_hold = spec.and_then(|s| s.scopes.as_ref()).into_iter().flatten().all(|s| scope(s));
    let selector_holds = spec.and_then(|s| s.scope_selector.as_ref()).and_then(|s| s.match_expressions.as_ref()).into_iter().flatten().all(|e| {
        if e.scope_name != "PriorityClass" {
            return scope(&e.scope_name);
        }
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => priority.as_ref().is_some_and(|p| values.contains(p)),
            "NotIn" => priority.as_ref().is_none_or(|p| !values.contains(p)),
            "Exists" => priority.is_some(),
            "DoesNotExist" => priority.is_none(),
            _ => false,
        }
    });
    scopes_hold && selector_holds
}

/// How many objects of `count/<resource>[.<group>]` the namespace holds.
async fn count_objects(client: &kube::Client, ns: &str, resource: &str) -> Result<Option<i64>, Error> {
    let (plural, group) = resource.split_once('.').unwrap_or((resource, ""));
    let discovery = Discovery::new(client.clone()).filter(&[group]).run().await?;
    let found = discovery.groups().flat_map(|g| g.recommended_resources()).find(|(ar, _)| ar.plural == plural).map(|(ar, _)| ar);
    let Some(ar): Option<ApiResource> = found else { return Ok(None) };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    Ok(Some(api.list_metadata(&ListParams::default()).await?.items.len() as i64))
}

/// A sum of amounts written as a quantity (saturating, as the amounts
/// may be hostile), in binary suffixes if any amount or the limit is.
fn sum(lists: &[BTreeMap<String, (i64, bool)>], key: &str, hard: &Quantity) -> String {
    let total: i64 = lists.iter().filter_map(|l| l.get(key)).map(|(v, _)| *v).fold(0, i64::saturating_add);
    let binary = lists.iter().filter_map(|l| l.get(key)).any(|(_, b)| *b) || quantity::is_binary(&hard.0);
    quantity::format(total, binary)
}

/// What the quota's pods request and limit, each pod's summed.
pub struct PodAmounts {
    count: usize,
    requests: Vec<BTreeMap<String, (i64, bool)>>,
    limits: Vec<BTreeMap<String, (i64, bool)>>,
}

impl PodAmounts {
    pub fn of(pods: &[Arc<Pod>]) -> PodAmounts {
        PodAmounts { count: pods.len(), requests: pods.iter().map(|p| pod_resources(p, false)).collect(), limits: pods.iter().map(|p| pod_resources(p, true)).collect() }
    }

    /// The use of `key` (`pods`, `requests.cpu`, `limits.memory`, `cpu`,
    /// …) the pods make.
    pub fn used(&self, key: &str, limit: &Quantity) -> Option<String> {
        if key == "pods" || key == "count/pods" {
            return Some(self.count.to_string());
        }
        let (lists, resource) = match key.split_once('.') {
            Some(("requests", r)) => (&self.requests, r),
            Some(("limits", r)) => (&self.limits, r),
            _ => (&self.requests, key),
        };
        Some(sum(lists, resource, limit))
    }
}

async fn reconcile(quota: Arc<ResourceQuota>, ctx: Arc<Context>) -> Result<Action, Error> {
    crate::informers::ready(&ctx.pods).await.map_err(|e| Error(e.to_string()))?;
    let meta = &quota.metadata;
    let (ns, name) = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
    let hard = quota.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
    let pods: Vec<Arc<Pod>> = ctx.pods.state().into_iter().filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()) && counts(p) && in_scopes(&quota, p)).collect();
    let amounts = PodAmounts::of(&pods);
    let mut used: BTreeMap<String, String> = BTreeMap::new();
    for (key, limit) in &hard {
        let value = match key.as_str() {
            "pods" | "count/pods" => amounts.used(key, limit),
            "services" | "count/services" => Some(Api::<Service>::namespaced(ctx.client.clone(), &ns).list_metadata(&ListParams::default()).await?.items.len().to_string()),
            "services.nodeports" | "services.loadbalancers" => {
                let kind = if key.ends_with("nodeports") { "NodePort" } else { "LoadBalancer" };
                let services = Api::<Service>::namespaced(ctx.client.clone(), &ns).list(&ListParams::default()).await?.items;
                let count = services.iter().filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some(kind) || (kind == "NodePort" && s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))).map(|s| if kind == "NodePort" { s.spec.as_ref().and_then(|s| s.ports.as_ref()).map_or(0, |p| p.len()) } else { 1 }).sum::<usize>();
                Some(count.to_string())
            }
            "requests.storage" => {
                let claims = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns).list(&ListParams::default()).await?.items;
                let sizes: Vec<BTreeMap<String, (i64, bool)>> = claims
                    .iter()
                    .filter_map(|c| c.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?.get("storage"))
                    .map(|q| BTreeMap::from([("storage".to_string(), (quantity::milli(&q.0).unwrap_or(0), quantity::is_binary(&q.0)))]))
                    .collect();
                Some(sum(&sizes, "storage", limit))
            }
            k if k.starts_with("count/") => count_objects(&ctx.client, &ns, &k["count/".len()..]).await?.map(|n| n.to_string()),
            "configmaps" | "secrets" | "persistentvolumeclaims" | "replicationcontrollers" | "resourcequotas" => count_objects(&ctx.client, &ns, key).await?.map(|n| n.to_string()),
            _ => amounts.used(key, limit),
        };
        if let Some(v) = value {
            used.insert(key.clone(), v);
        }
    }
    let status = quota.status.clone().unwrap_or_default();
    let unchanged = status.hard.as_ref() == Some(&hard) && status.used.as_ref().is_some_and(|u| u.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect::<BTreeMap<_, _>>() == used);
    // Admission charges a quota before the object it admitted is stored
    // (and before this controller's informer sees it), so a count lower
    // than the charge may only mean a create in flight. Lowering waits
    // until the same count is seen a second later.
    let before = |k: &String| status.used.as_ref().and_then(|u| u.get(k)).and_then(|q| quantity::milli(&q.0));
    let lowers = used.iter().any(|(k, v)| before(k).is_some_and(|b| quantity::milli(v).is_some_and(|v| v < b)));
    if lowers && !unchanged {
        let key = (ns.clone(), name.clone());
        let mut lower = crate::common::lock(&ctx.lower);
        match lower.get(&key) {
            Some((seen, at)) if *seen == used && at.elapsed() >= LOWER_AFTER => {
                lower.remove(&key);
            }
            Some((seen, _)) if *seen == used => return Ok(Action::requeue(LOWER_AFTER)),
            _ => {
                lower.insert(key, (used, std::time::Instant::now()));
                return Ok(Action::requeue(LOWER_AFTER));
            }
        }
    }
    if !unchanged {
        let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
        // Conditional on the version read: admission charges `used` too.
        // Merge patches merge maps: what is no longer limited is removed.
        let mut patch = json!({"metadata": {"resourceVersion": meta.resource_version}, "status": {"hard": hard, "used": used}});
        for key in status.hard.iter().flatten().map(|(k, _)| k).chain(status.used.iter().flatten().map(|(k, _)| k)) {
            for field in ["hard", "used"] {
                if patch["status"][field].get(key).is_none() {
                    patch["status"][field][key] = serde_json::Value::Null;
                }
            }
        }
        if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
            tracing::debug!("quota {ns}/{name}: {e}");
            return Ok(Action::requeue(Duration::from_millis(200)));
        }
    }
    Ok(Action::requeue(RESYNC))
}

//! The DaemonSet controller, as upstream's: one pod on each node the
//! template's node selector, required node affinity and tolerations admit
//! (pinned there by node affinity on `metadata.name`, and placed by the
//! scheduler), rolled to a new template within maxUnavailable and
//! maxSurge, with its history in ControllerRevisions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec, Toleration};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::json;
use skiff_scheduler::{selects_node, tolerates};

use crate::common::{controlled_by, is_active, is_available, owner_reference, ready_since, resolve, Error, Expectations};
use crate::history::{self, REVISION_HASH};
use crate::informers::Informer;

const GENERATION_LABEL: &str = "pod-template-generation";

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    expectations: Expectations,
}

pub fn run(client: kube::Client, pods: &Informer<Pod>, nodes: &Informer<Node>, revisions: &Informer<ControllerRevision>) -> impl Future<Output = ()> + Send {
    let context = Arc::new(Context { client: client.clone(), pods: pods.store(), nodes: nodes.store(), revisions: revisions.store(), expectations: Expectations::default() });
    let controller = Controller::new(Api::<DaemonSet>::all(client), watcher::Config::default());
    // Any node change may change where every DaemonSet runs.
    let daemon_sets = controller.store();
    let controller = controller
        .owns_shared_stream(pods.subscribe())
        .owns_shared_stream(revisions.subscribe())
        .watches_shared_stream(nodes.subscribe(), move |_| daemon_sets.state().into_iter().map(|ds| ObjectRef::from_obj(&*ds)).collect::<Vec<_>>());
    crate::common::run("daemonset", controller, reconcile, context)
}

/// The tolerations upstream gives every daemon pod, so node conditions
/// and cordons do not evict or keep out what runs on every node.
fn daemon_tolerations(template: &mut PodTemplateSpec) {
    let spec = template.spec.get_or_insert_with(Default::default);
    let host_network = spec.host_network == Some(true);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let mut add = |key: &str, effect: &str| {
        if !tolerations.iter().any(|t| t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect)) {
            tolerations.push(Toleration { key: Some(key.into()), operator: Some("Exists".into()), effect: Some(effect.into()), ..Default::default() });
        }
    };
    add("node.kubernetes.io/not-ready", "NoExecute");
    add("node.kubernetes.io/unreachable", "NoExecute");
    for pressure in ["disk-pressure", "memory-pressure", "pid-pressure", "unschedulable"] {
        add(&format!("node.kubernetes.io/{pressure}"), "NoSchedule");
    }
    if host_network {
        add("node.kubernetes.io/network-unavailable", "NoSchedule");
    }
}

/// Upstream's `NodeShouldRunDaemonPod`: the node selector and affinity
/// admit the node, and every NoSchedule and NoExecute taint is tolerated.
fn should_run(pod: &Pod, node: &Node) -> bool {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let empty = BTreeMap::new();
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    selects_node(pod, name, node.metadata.labels.as_ref().unwrap_or(&empty))
        && taints.iter().filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute").all(|taint| tolerations.iter().any(|t| tolerates(t, taint)))
}

fn node_of(pod: &Pod) -> Option<String> {
    if let Some(name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
        return Some(name);
    }
    // Not bound yet: the node its affinity pins it to.
    let affinity = pod.spec.as_ref()?.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    let field = affinity.node_selector_terms.first()?.match_fields.as_ref()?.iter().find(|f| f.key == "metadata.name")?;
    field.values.as_ref()?.first().cloned()
}

/// What a sync does: the nodes to create a pod on, the pods to delete,
/// and the counts for the status.
pub struct Plan {
    pub create: Vec<String>,
    pub delete: Vec<Arc<Pod>>,
    pub status: Status,
}

/// Upstream's daemon pod placement and rolling update, from the nodes and
/// the set's pods; `template` is the pods' (with the daemon tolerations
/// and revision labels), `hash` its revision's.
pub fn plan(ds: &DaemonSet, template: &PodTemplateSpec, hash: &str, nodes: &[Arc<Node>], owned: &[Arc<Pod>]) -> Plan {
    let spec = ds.spec.clone().unwrap_or_default();
    let probe = Pod { metadata: Default::default(), spec: template.spec.clone(), status: None };
    let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for pod in owned {
        if let Some(node) = node_of(pod) {
            by_node.entry(node).or_default().push(pod.clone());
        }
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let updated = |p: &Pod| p.metadata.labels.as_ref().and_then(|l| l.get(REVISION_HASH)).map(String::as_str) == Some(hash);
    let (mut create, mut delete): (Vec<String>, Vec<Arc<Pod>>) = (vec![], vec![]);
    let mut status = Status::default();
    let rolling = spec.update_strategy.as_ref().is_none_or(|s| s.type_.as_deref() != Some("OnDelete"));
    let rolling_update = spec.update_strategy.as_ref().and_then(|s| s.rolling_update.clone()).unwrap_or_default();
    let desired = nodes.iter().filter(|n| should_run(&probe, n)).count() as i32;
    let surge = resolve(rolling_update.max_surge.as_ref(), "0", desired, true);
    let max_unavailable = match resolve(rolling_update.max_unavailable.as_ref(), "1", desired, true) {
        0 if surge == 0 => 1,
        n => n,
    };
    // Nodes whose old pod is to be replaced: (node, pod, available).
    let mut old_to_replace = vec![];
    let mut surging = 0;
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let run = should_run(&probe, node);
        let mut pods: Vec<Arc<Pod>> = by_node.remove(&name).unwrap_or_default();
        // Failed pods are deleted, to be recreated.
        pods.retain(|p| {
            let failed = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed") && p.metadata.deletion_timestamp.is_none();
            if failed {
                delete.push(p.clone());
            }
            !failed
        });
        let active: Vec<&Arc<Pod>> = pods.iter().filter(|p| is_active(p)).collect();
        if run {
            status.desired += 1;
            if active.is_empty() {
                if pods.is_empty() {
                    create.push(name);
                }
                continue;
            }
            status.scheduled += 1;
            // One pod per node: the oldest stays, unless a surge is in progress.
            let mut sorted = active.clone();
            sorted.sort_by_key(|p| (!updated(p), p.metadata.creation_timestamp.as_ref().map(|t| t.0)));
            let keep = sorted[0];
            if updated(keep) {
                status.updated += 1;
                // With a surge, the old pod waits for the new one to be available.
                if surge == 0 || is_available(keep, min_ready) {
                    delete.extend(sorted[1..].iter().map(|p| (*p).clone()));
                } else if sorted.len() > 1 {
                    surging += 1;
                }
            } else {
                old_to_replace.push((name, keep.clone(), is_available(keep, min_ready)));
                delete.extend(sorted[1..].iter().map(|p| (*p).clone()));
            }
            let ready = sorted.iter().any(|p| ready_since(p).is_some());
            status.ready += ready as i32;
            status.available += sorted.iter().any(|p| is_available(p, min_ready)) as i32;
        } else if !active.is_empty() {
            status.misscheduled += 1;
            delete.extend(active.into_iter().cloned());
        }
    }
    // Pods on nodes that are gone.
    delete.extend(by_node.into_values().flatten().filter(|p| is_active(p)));

    // Rolling update: an old pod that is not available goes at once; an
    // available one is replaced first (maxSurge), or goes while at most
    // maxUnavailable are down.
    if rolling {
        let mut surge_budget = surge - surging;
        let mut unavailable_budget = max_unavailable - (status.desired - status.available);
        for (node, pod, available) in old_to_replace {
            if !available {
                delete.push(pod);
            } else if surge_budget > 0 {
                surge_budget -= 1;
                create.push(node);
            } else if surge == 0 && unavailable_budget > 0 {
                unavailable_budget -= 1;
                delete.push(pod);
            }
        }
    }

    Plan { create, delete, status }
}

/// The set's next status from a plan's counts.
pub fn next_status(ds: &DaemonSet, status: &Status) -> serde_json::Value {
    json!({
        "currentNumberScheduled": status.scheduled,
        "numberMisscheduled": status.misscheduled,
        "desiredNumberScheduled": status.desired,
        "numberReady": status.ready,
        "updatedNumberScheduled": status.updated,
        "numberAvailable": status.available,
        // Pods still available on nodes that no longer want one make
        // available exceed desired for a while: none is unavailable then.
        "numberUnavailable": status.desired.saturating_sub(status.available).max(0),
        "observedGeneration": ds.metadata.generation,
    })
}

/// Every decision of one sync, on the objects alone: for the fuzz targets.
pub fn fuzz(ds: &DaemonSet, nodes: Vec<Node>, pods: Vec<Pod>) {
    let mut template = ds.spec.clone().unwrap_or_default().template;
    daemon_tolerations(&mut template);
    let nodes: Vec<Arc<Node>> = nodes.into_iter().map(Arc::new).collect();
    let pods: Vec<Arc<Pod>> = pods.into_iter().map(Arc::new).collect();
    let plan = plan(ds, &template, "hash", &nodes, &pods);
    let _ = next_status(ds, &plan.status);
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    for ready in [crate::informers::ready(&ctx.pods).await, crate::informers::ready(&ctx.nodes).await, crate::informers::ready(&ctx.revisions).await] {
        ready.map_err(|e| Error(e.to_string()))?;
    }
    let meta = &ds.metadata;
    if meta.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let (ns, uid) = (meta.namespace.clone().unwrap_or_default(), meta.uid.clone().unwrap_or_default());
    let spec = ds.spec.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let revisions_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);

    let owned_revisions = history::owned(&ctx.revisions, meta);
    let revision = history::current(&revisions_api, &owned_revisions, meta, "apps/v1", "DaemonSet", &spec.template).await?;
    let hash = history::hash(&revision);
    let mut template = spec.template.clone();
    daemon_tolerations(&mut template);
    let labels = template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(Default::default);
    labels.insert(REVISION_HASH.into(), hash.clone());
    labels.insert(GENERATION_LABEL.into(), meta.generation.unwrap_or(1).to_string());

    let owned = controlled_by(&ctx.pods, meta);
    let nodes = ctx.nodes.state();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let Plan { create, delete, status } = plan(&ds, &template, &hash, &nodes, &owned);

    let present: HashSet<String> = owned.iter().filter_map(|p| p.metadata.name.clone()).collect();
    if ctx.expectations.satisfied(&uid, &present) {
        let mut created = vec![];
        for node in &create {
            let mut pod_template = template.clone();
            let pod_spec = pod_template.spec.get_or_insert_with(Default::default);
            let affinity = pod_spec.affinity.get_or_insert_with(Default::default);
            let node_affinity = serde_json::from_value(json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}));
            affinity.node_affinity = node_affinity.ok();
            let mut pod_meta = pod_template.metadata.unwrap_or_default();
            pod_meta.generate_name = Some(format!("{}-", meta.name.as_deref().unwrap_or_default()));
            pod_meta.namespace = Some(ns.clone());
            pod_meta.owner_references = Some(vec![owner_reference(meta, "apps/v1", "DaemonSet")]);
            let pod = Pod { metadata: pod_meta, spec: pod_template.spec, status: None };
            match pods_api.create(&PostParams::default(), &pod).await {
                Ok(p) => created.extend(p.metadata.name),
                Err(e) => tracing::debug!("daemonset {ns}/{:?}: creating a pod: {e}", meta.name),
            }
        }
        ctx.expectations.expect(&uid, created, delete.iter().filter_map(|p| p.metadata.name.clone()));
        for pod in &delete {
            let params = DeleteParams { preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }), ..Default::default() };
            let _ = pods_api.delete(pod.metadata.name.as_deref().unwrap_or_default(), &params).await;
        }
    }

    let live: HashSet<String> = std::iter::once(revision.metadata.name.clone().unwrap_or_default())
        .chain(owned_revisions.iter().filter(|r| owned.iter().any(|p| p.metadata.labels.as_ref().and_then(|l| l.get(REVISION_HASH)) == Some(&history::hash(r)))).filter_map(|r| r.metadata.name.clone()))
        .collect();
    history::prune(&revisions_api, &owned_revisions, spec.revision_history_limit.unwrap_or(10), &live).await;

    let next = next_status(&ds, &status);
    let current = serde_json::to_value(ds.status.clone().unwrap_or_default()).unwrap_or_default();
    let zero = json!(0);
    if next.as_object().into_iter().flatten().any(|(k, v)| current.get(k).unwrap_or(&zero) != v) {
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(meta.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(json!({"status": next}))).await?;
    }
    Ok(Action::requeue(Duration::from_secs(if status.available < status.desired && min_ready > 0 { 1 } else { 30 })))
}

#[derive(Default)]
pub struct Status {
    desired: i32,
    scheduled: i32,
    misscheduled: i32,
    ready: i32,
    updated: i32,
    available: i32,
}

//! The garbage collector, as upstream's: every object's owner references
//! form a graph, watched (metadata only) for every resource the API serves.
//!
//! - An object whose owners are all gone is deleted (Background: it goes
//!   at once, its own dependents after it).
//! - An owner being deleted with the `orphan` finalizer (propagationPolicy
//!   Orphan) loses its dependents: their references to it are removed, then
//!   the finalizer.
//! - An owner being deleted with `foregroundDeletion` waits: its dependents
//!   are deleted (in the foreground too), and once none is left the
//!   finalizer goes and the API server removes the owner.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::PartialObjectMeta;
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::{metadata_watcher, watcher, WatchStreamExt};
use serde_json::json;

const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";
/// How often the graph is acted on, and resources rediscovered (CRDs).
const SWEEP: Duration = Duration::from_secs(1);
const REDISCOVER: Duration = Duration::from_secs(30);

struct Node {
    resource: usize,
    namespace: Option<String>,
    name: String,
    resource_version: Option<String>,
    owners: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    finalizers: Vec<String>,
    deleting: bool,
}

pub async fn run(client: kube::Client) {
    loop {
        let resources = match discover(&client).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("garbage collector: discovery failed: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        collect(&client, &resources).await;
    }
}

/// Every resource that can be listed, watched and deleted, by kind.
async fn discover(client: &kube::Client) -> Result<Vec<(ApiResource, bool)>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.supports_operation(verbs::WATCH) && caps.supports_operation(verbs::DELETE) && caps.supports_operation(verbs::PATCH) {
                out.push((ar, caps.scope == Scope::Namespaced));
            }
        }
    }
    out.sort_by(|a, b| (&a.0.group, &a.0.kind).cmp(&(&b.0.group, &b.0.kind)));
    Ok(out)
}

/// Watches every resource and keeps collecting until the set of
/// resources served changes.
async fn collect(client: &kube::Client, resources: &[(ApiResource, bool)]) {
    let streams = resources.iter().enumerate().map(|(i, (ar, _))| {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
        metadata_watcher(api, watcher::Config::default()).default_backoff().map(move |e| (i, e)).boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut graph: HashMap<String, Node> = HashMap::new();
    let mut synced: HashSet<usize> = HashSet::new();
    let mut sweep = tokio::time::interval(SWEEP);
    let mut rediscover = tokio::time::interval(REDISCOVER);
    rediscover.tick().await;
    loop {
        tokio::select! {
            Some((i, event)) = events.next() => match event {
                Ok(watcher::Event::InitDone) => { synced.insert(i); }
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => { observe(&mut graph, i, o); }
                Ok(watcher::Event::Delete(o)) => { graph.remove(o.metadata.uid.as_deref().unwrap_or_default()); }
                Ok(watcher::Event::Init) => {}
                Err(e) => tracing::debug!("garbage collector watch: {e}"),
            },
            _ = sweep.tick(), if synced.len() == resources.len() => act(client, resources, &mut graph).await,
            _ = rediscover.tick() => {
                if discover(client).await.is_ok_and(|now| now.iter().map(|r| &r.0).ne(resources.iter().map(|r| &r.0))) {
                    return;
                }
            }
        }
    }
}

fn observe(graph: &mut HashMap<String, Node>, resource: usize, object: PartialObjectMeta<DynamicObject>) {
    let meta = object.metadata;
    let Some(uid) = meta.uid else { return };
    graph.insert(uid, Node {
        resource,
        namespace: meta.namespace,
        name: meta.name.unwrap_or_default(),
        resource_version: meta.resource_version,
        owners: meta.owner_references.unwrap_or_default(),
        finalizers: meta.finalizers.unwrap_or_default(),
        deleting: meta.deletion_timestamp.is_some(),
    });
}

fn api_for(client: &kube::Client, resources: &[(ApiResource, bool)], node: &Node) -> Api<DynamicObject> {
    let (ar, namespaced) = &resources[node.resource];
    match (&node.namespace, namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, ar),
        _ => Api::all_with(client.clone(), ar),
    }
}

async fn delete(client: &kube::Client, resources: &[(ApiResource, bool)], uid: &str, node: &Node, policy: PropagationPolicy) {
    let params = DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
        ..Default::default()
    };
    if let Err(e) = api_for(client, resources, node).delete(&node.name, &params).await {
        tracing::debug!(name = %node.name, "garbage collector: delete: {e}");
    }
}

/// A merge patch made only onto the version seen: a conflict means the
/// object changed, and the next sweep looks again.
async fn patch_meta(client: &kube::Client, resources: &[(ApiResource, bool)], node: &Node, meta: serde_json::Value) {
    let mut meta = meta;
    // An emptied list goes (null), as Go's omitempty drops it.
    if let Some(fields) = meta.as_object_mut() {
        for value in fields.values_mut().filter(|v| v.as_array().is_some_and(|a| a.is_empty())) {
            *value = serde_json::Value::Null;
        }
    }
    meta["resourceVersion"] = json!(node.resource_version);
    if let Err(e) = api_for(client, resources, node).patch(&node.name, &PatchParams::default(), &Patch::Merge(json!({"metadata": meta}))).await {
        tracing::debug!(name = %node.name, "garbage collector: patch: {e}");
    }
}

async fn act(client: &kube::Client, resources: &[(ApiResource, bool)], graph: &mut HashMap<String, Node>) {
    let mut dependents: HashMap<&str, Vec<&str>> = HashMap::new();
    for (uid, node) in graph.iter() {
        for owner in &node.owners {
            dependents.entry(owner.uid.as_str()).or_default().push(uid.as_str());
        }
    }
    for (uid, node) in graph.iter() {
        // Owners being deleted, by policy.
        if node.deleting && node.finalizers.iter().any(|f| f == ORPHAN) {
            for dep in dependents.get(uid.as_str()).into_iter().flatten() {
                let d = &graph[*dep];
                let kept: Vec<_> = d.owners.iter().filter(|o| o.uid != *uid).collect();
                patch_meta(client, resources, d, json!({"ownerReferences": kept})).await;
            }
            if dependents.get(uid.as_str()).is_none_or(|d| d.is_empty()) {
                let kept: Vec<&String> = node.finalizers.iter().filter(|f| *f != ORPHAN).collect();
                patch_meta(client, resources, node, json!({"finalizers": kept})).await;
            }
            continue;
        }
        if node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND) {
            match dependents.get(uid.as_str()) {
                Some(deps) if !deps.is_empty() => {
                    for dep in deps {
                        let d = &graph[*dep];
                        if !d.deleting {
                            delete(client, resources, dep, d, PropagationPolicy::Foreground).await;
                        }
                    }
                }
                _ => {
                    let kept: Vec<&String> = node.finalizers.iter().filter(|f| *f != FOREGROUND).collect();
                    patch_meta(client, resources, node, json!({"finalizers": kept})).await;
                }
            }
            continue;
        }
        // Dependents whose owners are all gone. An owner not in the graph
        // may just be too new for its watch: confirm with a read.
        if node.deleting || node.owners.is_empty() || node.owners.iter().any(|o| graph.contains_key(&o.uid)) {
            continue;
        }
        let mut all_gone = true;
        for owner in &node.owners {
            if owner_exists(client, resources, node, owner).await {
                all_gone = false;
                break;
            }
        }
        if all_gone {
            delete(client, resources, uid, node, PropagationPolicy::Background).await;
        }
    }
}

async fn owner_exists(client: &kube::Client, resources: &[(ApiResource, bool)], node: &Node, owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> bool {
    let Some((ar, namespaced)) = resources.iter().find(|(ar, _)| ar.api_version == owner.api_version && ar.kind == owner.kind) else {
        // A kind not served (any more): nothing can own through it.
        return false;
    };
    let api: Api<DynamicObject> = match (&node.namespace, namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, ar),
        _ => Api::all_with(client.clone(), ar),
    };
    match api.get_metadata_opt(&owner.name).await {
        Ok(Some(found)) => found.metadata.uid.as_deref() == Some(owner.uid.as_str()),
        Ok(None) => false,
        // Unsure: keep the dependent.
        Err(_) => true,
    }
}

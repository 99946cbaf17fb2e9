//! The garbage collector, as upstream's: every object's owner references
//! form a graph, watched (metadata only) for every resource the API serves.
//!
//! - An object whose owners are all gone is deleted (Background: it goes
//!   at once, its own dependents after it).
//! - An owner being deleted with the `orphan` finalizer (propagationPolicy
//!   Orphan) loses its dependents: their references to it are removed, then
//!   the finalizer.
//! - An owner being deleted with `foregroundDeletion` waits: its dependents
//!   are deleted (in the foreground if they have dependents of their own),
//!   and once none that blocks it (`blockOwnerDeletion`) is left the
//!   finalizer goes and the API server removes the owner.
//! - A dependent that also has an owner not being deleted stays: only its
//!   references to the owners being deleted (or gone) are removed.
//! - A circle of blocking references (each owner waiting for the next) is
//!   broken as upstream's: a dependent whose own dependent waits too stops
//!   blocking its owners before it is deleted.

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
        let deps = dependents.get(uid.as_str()).map(Vec::as_slice).unwrap_or_default();
        // Owners being deleted, by policy.
        if node.deleting && node.finalizers.iter().any(|f| f == ORPHAN) {
            for dep in deps {
                let d = &graph[*dep];
                let kept: Vec<_> = d.owners.iter().filter(|o| o.uid != *uid).collect();
                patch_meta(client, resources, d, json!({"ownerReferences": kept})).await;
            }
            if deps.is_empty() {
                let kept: Vec<&String> = node.finalizers.iter().filter(|f| *f != ORPHAN).collect();
                patch_meta(client, resources, node, json!({"finalizers": kept})).await;
            }
            continue;
        }
        if waits_for_dependents(node) {
            // Its dependents are dealt with below (each sees it waiting);
            // it goes once none blocks it.
            let blocking = deps.iter().any(|d| graph[*d].owners.iter().any(|o| o.uid == *uid && o.block_owner_deletion == Some(true)));
            if !blocking {
                let kept: Vec<&String> = node.finalizers.iter().filter(|f| *f != FOREGROUND).collect();
                patch_meta(client, resources, node, json!({"finalizers": kept})).await;
            }
            continue;
        }
        if node.deleting || node.owners.is_empty() {
            continue;
        }
        // Its owners as the graph shows them. An owner not in the graph
        // may just be too new for its watch: read only when it matters (an
        // owner waits for its dependents, or none is known to be there).
        let mut owners: Vec<(&str, Owner)> = Vec::new();
        let mut unseen = Vec::new();
        for owner in &node.owners {
            match graph.get(&owner.uid) {
                Some(o) if waits_for_dependents(o) => owners.push((&owner.uid, Owner::Waiting)),
                Some(_) => owners.push((&owner.uid, Owner::Solid)),
                None => unseen.push(owner),
            }
        }
        let waiting = owners.iter().any(|(_, o)| *o == Owner::Waiting);
        if !waiting && owners.iter().any(|(_, o)| *o == Owner::Solid) {
            continue;
        }
        for owner in unseen {
            owners.push((&owner.uid, owner_state(client, resources, node, owner).await));
        }
        let dependent_waits = deps.iter().any(|d| waits_for_dependents(&graph[*d]));
        match decide(&owners, !deps.is_empty(), dependent_waits, &node.finalizers) {
            Verdict::Keep => {}
            Verdict::RemoveOwners(gone) => {
                let kept: Vec<_> = node.owners.iter().filter(|o| !gone.contains(&o.uid)).collect();
                patch_meta(client, resources, node, json!({"ownerReferences": kept})).await;
            }
            Verdict::Delete { unblock, policy } => {
                if unblock {
                    let unblocked: Vec<_> = node
                        .owners
                        .iter()
                        .map(|o| {
                            let mut o = o.clone();
                            if o.block_owner_deletion == Some(true) {
                                o.block_owner_deletion = Some(false);
                            }
                            o
                        })
                        .collect();
                    patch_meta(client, resources, node, json!({"ownerReferences": unblocked})).await;
                }
                delete(client, resources, uid, node, policy).await;
            }
        }
    }
}

/// Being deleted in the foreground: waiting for its dependents to go.
fn waits_for_dependents(node: &Node) -> bool {
    node.deleting && node.finalizers.iter().any(|f| f == FOREGROUND)
}

/// An owner as a dependent sees it (upstream's classifyReferences).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Owner {
    /// There, and not being deleted in the foreground.
    Solid,
    /// Gone (or another object by its name now).
    Dangling,
    /// Being deleted in the foreground, waiting for its dependents.
    Waiting,
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Keep,
    /// The references to these owners go; the object stays.
    RemoveOwners(Vec<String>),
    /// The object goes; first its references stop blocking their owners
    /// if `unblock` (a circle).
    Delete { unblock: bool, policy: PropagationPolicy },
}

/// What becomes of an object not being deleted, from its owners' states
/// (uid, state), whether it has dependents, whether one of those waits for
/// its own, and its finalizers: upstream's attemptToDeleteItem.
fn decide(owners: &[(&str, Owner)], has_dependents: bool, dependent_waits: bool, finalizers: &[String]) -> Verdict {
    let any = |state| owners.iter().any(|(_, o)| *o == state);
    if any(Owner::Solid) {
        let gone: Vec<String> = owners.iter().filter(|(_, o)| *o != Owner::Solid).map(|(uid, _)| uid.to_string()).collect();
        return if gone.is_empty() { Verdict::Keep } else { Verdict::RemoveOwners(gone) };
    }
    if any(Owner::Waiting) && has_dependents {
        // Deleted in the foreground so its own dependents go first; if one
        // of them waits too, the owners could be waiting on each other.
        return Verdict::Delete { unblock: dependent_waits, policy: PropagationPolicy::Foreground };
    }
    let policy = if finalizers.iter().any(|f| f == ORPHAN) {
        PropagationPolicy::Orphan
    } else if finalizers.iter().any(|f| f == FOREGROUND) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    };
    Verdict::Delete { unblock: false, policy }
}

async fn owner_state(client: &kube::Client, resources: &[(ApiResource, bool)], node: &Node, owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> Owner {
    let Some((ar, namespaced)) = resources.iter().find(|(ar, _)| ar.api_version == owner.api_version && ar.kind == owner.kind) else {
        // A kind not served (any more): nothing can own through it.
        return Owner::Dangling;
    };
    let api: Api<DynamicObject> = match (&node.namespace, namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, ar),
        _ => Api::all_with(client.clone(), ar),
    };
    match api.get_metadata_opt(&owner.name).await {
        Ok(Some(found)) if found.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
            let meta = found.metadata;
            let foreground = meta.finalizers.iter().flatten().any(|f| f == FOREGROUND);
            if meta.deletion_timestamp.is_some() && foreground {
                Owner::Waiting
            } else {
                Owner::Solid
            }
        }
        Ok(_) => Owner::Dangling,
        // Unsure: keep the dependent.
        Err(_) => Owner::Solid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[sig-api-machinery] Garbage collector should not delete dependents
    /// that have both valid owner and owner that's waiting for dependents
    /// to be deleted [Conformance]`: the dependent stays, without its
    /// reference to the waiting owner (nor to a gone one).
    #[test]
    fn a_dependent_with_a_solid_owner_only_loses_the_waiting_one() {
        let owners = [("rc1", Owner::Waiting), ("rc2", Owner::Solid), ("old", Owner::Dangling)];
        assert_eq!(decide(&owners, false, false, &[]), Verdict::RemoveOwners(vec!["rc1".into(), "old".into()]));
        assert_eq!(decide(&[("rc2", Owner::Solid)], false, false, &[]), Verdict::Keep);
        // Its only owner waits: it goes, in the background without
        // dependents of its own, else in the foreground.
        assert_eq!(decide(&[("rc1", Owner::Waiting)], false, false, &[]), Verdict::Delete { unblock: false, policy: PropagationPolicy::Background });
        assert_eq!(decide(&[("rc1", Owner::Waiting)], true, false, &[]), Verdict::Delete { unblock: false, policy: PropagationPolicy::Foreground });
        // Every owner gone: its own finalizers choose the policy.
        assert_eq!(decide(&[("x", Owner::Dangling)], false, false, &[ORPHAN.into()]), Verdict::Delete { unblock: false, policy: PropagationPolicy::Orphan });
    }

    /// `[sig-api-machinery] Garbage collector should not be blocked by
    /// dependency circle [Conformance]`: a dependent whose owner waits and
    /// whose own dependent waits too (pod3 in pod1 → pod2 → pod3 → pod1)
    /// stops blocking before it is deleted in the foreground.
    #[test]
    fn a_circle_of_waiting_owners_is_unblocked() {
        assert_eq!(decide(&[("pod2", Owner::Waiting)], true, true, &[]), Verdict::Delete { unblock: true, policy: PropagationPolicy::Foreground });
    }
}

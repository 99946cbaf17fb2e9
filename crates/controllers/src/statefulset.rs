//! The StatefulSet controller, as upstream's: pods with stable names
//! (`<set>-<ordinal>`), hostnames and claims (`<template>-<set>-<ordinal>`
//! from volumeClaimTemplates), started in order and each Ready before the
//! next (OrderedReady) or all at once (Parallel), removed from the highest
//! ordinal, and updated from the highest ordinal down to the partition,
//! one at a time, with history in ControllerRevisions.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec, Volume};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use serde_json::{json, Value};

use crate::common::{controlled_by, is_available, owner_reference, ready_since, Error};
use crate::history::{self, REVISION_HASH};
use crate::informers::Informer;

const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
}

pub fn run(client: kube::Client, pods: &Informer<Pod>, revisions: &Informer<ControllerRevision>) -> impl Future<Output = ()> + Send {
    let context = Arc::new(Context { client: client.clone(), pods: pods.store(), revisions: revisions.store() });
    let controller = Controller::new(Api::<StatefulSet>::all(client), watcher::Config::default()).owns_shared_stream(pods.subscribe()).owns_shared_stream(revisions.subscribe());
    crate::common::run("statefulset", controller, reconcile, context)
}

fn ordinal_of(set: &str, pod: &Pod) -> Option<i64> {
    pod.metadata.name.as_deref()?.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// Running and Ready, not being deleted: the next ordinal may start.
fn healthy(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && ready_since(pod).is_some()
}

fn revision_of(pod: &Pod) -> Option<&String> {
    pod.metadata.labels.as_ref()?.get(REVISION_HASH)
}

/// The template a revision stores.
fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

/// One step of a sync, in order.
pub enum Step {
    /// Create the pod of this ordinal, of the current revision (below the
    /// partition) or the update revision.
    Create { ordinal: i64, current: bool },
    /// Delete a failed pod, to be created again.
    Replace(Arc<Pod>),
    /// Delete a pod beyond the replicas (its claims first, by policy).
    Condemn(Arc<Pod>),
    /// Delete a pod of an old revision, to come back updated.
    Update(Arc<Pod>),
}

/// Pods created per sync at most (as the ReplicaSet controller's burst):
/// a hostile `replicas: 2147483647` must not plan two billion creates.
const BURST: usize = 500;

/// What the replicas, their order and the update strategy ask for, given
/// the set's pods by ordinal (sorted), and whether a step waits for a pod
/// to become healthy. Ordinals are i64: `start + replicas` of two int32s
/// overflows an i32.
pub fn plan(spec: &StatefulSetSpec, pods: &[(i64, Arc<Pod>)], update_name: &str) -> (Vec<Step>, bool) {
    let replicas = i64::from(spec.replicas.unwrap_or(1).max(0));
    // Validation refuses a negative start; it counts as 0.
    let start = i64::from(spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0).max(0));
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let rolling = spec.update_strategy.as_ref().is_none_or(|s| s.type_.as_deref() != Some("OnDelete"));
    let partition = i64::from(spec.update_strategy.as_ref().and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0));
    let in_range = |o: i64| o >= start && o < start + replicas;
    let mut steps = Vec::new();

    // Replicas in ordinal order: create what is missing, replace what failed.
    let mut waiting = false;
    let mut created = 0;
    for ordinal in start..start + replicas {
        let pod = pods.iter().find(|(o, _)| *o == ordinal).map(|(_, p)| p);
        match pod {
            None => {
                // Ordinals below the partition keep the current revision.
                steps.push(Step::Create { ordinal, current: rolling && ordinal - start < partition });
                created += 1;
                if !parallel || created >= BURST {
                    waiting = true;
                    break;
                }
            }
            Some(p) if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed") && p.metadata.deletion_timestamp.is_none() => {
                steps.push(Step::Replace(p.clone()));
                if !parallel {
                    waiting = true;
                    break;
                }
            }
            Some(p) if !parallel && !healthy(p) => {
                waiting = true;
                break;
            }
            Some(_) => {}
        }
    }

    // Condemned pods go from the highest ordinal; one at a time unless
    // Parallel, and only while every other pod is healthy.
    let condemned: Vec<&Arc<Pod>> = pods.iter().rev().filter(|(o, _)| !in_range(*o)).map(|(_, p)| p).collect();
    let all_healthy = pods.iter().filter(|(o, _)| in_range(*o)).all(|(_, p)| healthy(p));
    for pod in &condemned {
        if !parallel && (waiting || !all_healthy) {
            break;
        }
        if pod.metadata.deletion_timestamp.is_none() {
            steps.push(Step::Condemn((*pod).clone()));
        }
        if !parallel {
            waiting = true;
            break;
        }
    }

    // Rolling update from the highest ordinal down to the partition, one
    // pod at a time, each healthy before the next.
    if rolling && !waiting && condemned.is_empty() && all_healthy {
        let stale = pods.iter().rev().filter(|(o, _)| in_range(*o) && o - start >= partition).find(|(_, p)| revision_of(p).map(String::as_str) != Some(update_name));
        if let Some((_, pod)) = stale {
            steps.push(Step::Update(pod.clone()));
        }
    }
    (steps, waiting)
}

/// The set's next status from its pods.
pub fn next_status(set: &StatefulSet, pods: &[(i64, Arc<Pod>)], update_name: &str, current_name: &str) -> Value {
    let spec = set.spec.clone().unwrap_or_default();
    let replicas = i64::from(spec.replicas.unwrap_or(1).max(0));
    let start = i64::from(spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0).max(0));
    // Pods on their way out are no replicas, so neither ready nor available
    // ones (upstream refuses a status with more ready than replicas).
    let members: Vec<&Arc<Pod>> = pods.iter().filter(|(o, p)| *o >= start && *o < start + replicas && p.metadata.deletion_timestamp.is_none()).map(|(_, p)| p).collect();
    let count = |f: &dyn Fn(&Pod) -> bool| members.iter().filter(|p| f(p)).count() as i64;
    let updated = count(&|p| revision_of(p).map(String::as_str) == Some(update_name));
    let current_replicas = count(&|p| revision_of(p).map(String::as_str) == Some(current_name));
    // Once every replica runs the update, it is current.
    let (current_name, current_replicas) = if updated == replicas && members.len() as i64 == replicas { (update_name, updated) } else { (current_name, current_replicas) };
    json!({
        "observedGeneration": set.metadata.generation,
        "replicas": pods.iter().filter(|(_, p)| p.metadata.deletion_timestamp.is_none()).count(),
        "readyReplicas": count(&|p| ready_since(p).is_some()),
        "availableReplicas": count(&|p| is_available(p, spec.min_ready_seconds.unwrap_or(0))),
        "currentReplicas": current_replicas,
        "updatedReplicas": updated,
        "currentRevision": current_name,
        "updateRevision": update_name,
        "collisionCount": 0,
    })
}

/// The set's pods by ordinal, sorted.
fn by_ordinal(name: &str, pods: Vec<Arc<Pod>>) -> Vec<(i64, Arc<Pod>)> {
    let mut pods: Vec<(i64, Arc<Pod>)> = pods.into_iter().filter_map(|p| Some((ordinal_of(name, &p)?, p))).collect();
    pods.sort_by_key(|(o, _)| *o);
    pods
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    for ready in [crate::informers::ready(&ctx.pods).await, crate::informers::ready(&ctx.revisions).await] {
        ready.map_err(|e| Error(e.to_string()))?;
    }
    let meta = &set.metadata;
    if meta.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let (ns, name) = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
    let spec = set.spec.clone().unwrap_or_default();
    let status = set.status.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let revisions_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);

    let owned_revisions = history::owned(&ctx.revisions, meta);
    let update = history::current(&revisions_api, &owned_revisions, meta, "apps/v1", "StatefulSet", &spec.template).await?;
    let update_name = update.metadata.name.clone().unwrap_or_default();
    let current = status
        .current_revision
        .as_ref()
        .and_then(|n| owned_revisions.iter().find(|r| r.metadata.name.as_ref() == Some(n)))
        .map(|r| (**r).clone())
        .unwrap_or_else(|| update.clone());
    let current_name = current.metadata.name.clone().unwrap_or_default();
    let pods = by_ordinal(&name, controlled_by(&ctx.pods, meta));

    let (steps, waiting) = plan(&spec, &pods, &update_name);
    for step in steps {
        match step {
            Step::Create { ordinal, current: use_current } => {
                let (revision, revision_name) = if use_current { (&current, &current_name) } else { (&update, &update_name) };
                let template = template_of(revision).unwrap_or_else(|| spec.template.clone());
                create_pod(&ctx, &set, &pods_api, ordinal, template, revision_name).await?;
            }
            Step::Replace(pod) | Step::Update(pod) => delete_pod(&pods_api, &pod).await,
            Step::Condemn(pod) => {
                retain_claims_when_scaled(&ctx, &set, &pod).await;
                delete_pod(&pods_api, &pod).await;
            }
        }
    }

    // History: revisions no pod runs beyond the limit go.
    let mut live: HashSet<String> = pods.iter().filter_map(|(_, p)| revision_of(p).cloned()).collect();
    live.extend([update_name.clone(), current_name.clone()]);
    history::prune(&revisions_api, &owned_revisions, spec.revision_history_limit.unwrap_or(10), &live).await;

    let next = next_status(&set, &pods, &update_name, &current_name);
    let was = serde_json::to_value(&status).unwrap_or_default();
    if next.as_object().into_iter().flatten().any(|(k, v)| was.get(k).unwrap_or(&json!(0)) != v) {
        let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": next}))).await?;
    }
    Ok(Action::requeue(Duration::from_secs(if waiting { 1 } else { 30 })))
}

/// Every decision of one sync, on the objects alone: for the fuzz targets.
pub fn fuzz(set: &StatefulSet, pods: Vec<Pod>, revision: &ControllerRevision) {
    let name = set.metadata.name.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let pods = by_ordinal(&name, pods.into_iter().map(Arc::new).collect());
    let update_name = revision.metadata.name.clone().unwrap_or_default();
    let _ = template_of(revision);
    let (_steps, _waiting) = plan(&spec, &pods, &update_name);
    let _ = next_status(set, &pods, &update_name, "current");
}

async fn create_pod(ctx: &Context, set: &StatefulSet, pods_api: &Api<Pod>, ordinal: i64, template: PodTemplateSpec, revision: &str) -> Result<(), Error> {
    let meta = &set.metadata;
    let spec = set.spec.clone().unwrap_or_default();
    let set_name = meta.name.clone().unwrap_or_default();
    let pod_name = format!("{set_name}-{ordinal}");
    let mut pod_meta = template.metadata.unwrap_or_default();
    pod_meta.name = Some(pod_name.clone());
    pod_meta.namespace = meta.namespace.clone();
    pod_meta.owner_references = Some(vec![owner_reference(meta, "apps/v1", "StatefulSet")]);
    let labels = pod_meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_HASH.into(), revision.into());
    let mut pod_spec = template.spec.unwrap_or_default();
    pod_spec.hostname = Some(pod_name.clone());
    if !spec.service_name.is_empty() {
        pod_spec.subdomain = Some(spec.service_name.clone());
    }
    for claim in spec.volume_claim_templates.iter().flatten() {
        let template_name = claim.metadata.name.clone().unwrap_or_default();
        let claim_name = format!("{template_name}-{pod_name}");
        ensure_claim(ctx, set, claim, &claim_name).await?;
        let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
        volumes.retain(|v| v.name != template_name);
        volumes.push(serde_json::from_value::<Volume>(json!({"name": template_name, "persistentVolumeClaim": {"claimName": claim_name}})).map_err(|e| Error(e.to_string()))?);
    }
    let pod = Pod { metadata: pod_meta, spec: Some(pod_spec), status: None };
    match pods_api.create(&PostParams::default(), &pod).await {
        Ok(_) => Ok(()),
        // Made by an earlier sync the watch has not shown yet.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The claim a pod's volumeClaimTemplate names, created if missing and
/// owned by the set when `whenDeleted: Delete`.
async fn ensure_claim(ctx: &Context, set: &StatefulSet, template: &PersistentVolumeClaim, name: &str) -> Result<(), Error> {
    let meta = &set.metadata;
    let spec = set.spec.clone().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), meta.namespace.as_deref().unwrap_or_default());
    let delete_with_set = spec.persistent_volume_claim_retention_policy.as_ref().and_then(|p| p.when_deleted.as_deref()) == Some("Delete");
    if api.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let mut claim = template.clone();
    claim.metadata.name = Some(name.into());
    claim.metadata.namespace = meta.namespace.clone();
    let labels = claim.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
    if delete_with_set {
        let mut owner = owner_reference(meta, "apps/v1", "StatefulSet");
        owner.controller = None;
        claim.metadata.owner_references = Some(vec![owner]);
    }
    claim.status = None;
    match api.create(&PostParams::default(), &claim).await {
        Err(kube::Error::Api(e)) if e.code != 409 => Err(kube::Error::Api(e).into()),
        _ => Ok(()),
    }
}

/// `whenScaled: Delete`: a condemned pod's claims are handed to the pod,
/// so the garbage collector removes them with it.
async fn retain_claims_when_scaled(ctx: &Context, set: &StatefulSet, pod: &Pod) {
    let spec = set.spec.clone().unwrap_or_default();
    if spec.persistent_volume_claim_retention_policy.as_ref().and_then(|p| p.when_scaled.as_deref()) != Some("Delete") {
        return;
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), set.metadata.namespace.as_deref().unwrap_or_default());
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    for template in spec.volume_claim_templates.iter().flatten() {
        let claim = format!("{}-{pod_name}", template.metadata.name.as_deref().unwrap_or_default());
        let mut owner = owner_reference(&pod.metadata, "v1", "Pod");
        owner.controller = None;
        let patch: Value = json!({"metadata": {"ownerReferences": [owner]}});
        let _ = api.patch(&claim, &PatchParams::default(), &Patch::Merge(patch)).await;
    }
}

async fn delete_pod(pods_api: &Api<Pod>, pod: &Pod) {
    let params = DeleteParams { preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }), ..Default::default() };
    if let Err(e) = pods_api.delete(pod.metadata.name.as_deref().unwrap_or_default(), &params).await {
        tracing::debug!("deleting {:?}: {e}", pod.metadata.name);
    }
}

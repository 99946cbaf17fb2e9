//! The Deployment controller: one ReplicaSet per pod template (named by
//! the template's hash), rolled from the old ones to the new one as the
//! strategy says (RollingUpdate within maxSurge and maxUnavailable, or
//! Recreate), with upstream's revision annotations, history limit, status
//! and conditions, so `kubectl rollout status|history|undo` work.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

use crate::common::{controlled_by, hash_of, owner_reference, plus_seconds, resolve, Error};

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

struct Context {
    client: kube::Client,
    replica_sets: Store<ReplicaSet>,
}

pub async fn run(client: kube::Client) {
    let (replica_sets, writer) = reflector::store();
    let rs_events = watcher(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(writer).touched_objects();
    let context = Arc::new(Context { client: client.clone(), replica_sets });
    let controller = Controller::new(Api::<Deployment>::all(client), watcher::Config::default()).owns_stream(rs_events);
    crate::common::run("deployment", controller, reconcile, context).await;
}

/// The template without the hash label the controller adds.
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    t
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

// Counts are i64 here, each at least 0: sums and `replicas + surge` of
// hostile int32 values (replicas -3, i32::MAX) neither overflow nor go
// below zero. What is written back is an int32 again (`int32`).

fn replicas(rs: &ReplicaSet) -> i64 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0).max(0).into()
}

fn status_of(rs: &ReplicaSet, field: &str) -> i64 {
    let status = serde_json::to_value(rs.status.clone().unwrap_or_default()).unwrap_or_default();
    status.get(field).and_then(Value::as_i64).unwrap_or(0).clamp(0, i32::MAX.into())
}

fn int32(count: i64) -> i32 {
    count.clamp(0, i32::MAX.into()) as i32
}

/// What a Deployment's spec asks of the rollout: the replicas (a negative
/// count is 0, as upstream's controllers treat it), maxSurge and
/// maxUnavailable against them, and the strategy.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub wanted: i64,
    pub surge: i64,
    pub unavailable: i64,
    pub recreate: bool,
    pub paused: bool,
}

pub fn shape(spec: &DeploymentSpec) -> Shape {
    let wanted = spec.replicas.unwrap_or(1).max(0);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let rolling = spec.strategy.as_ref().and_then(|s| s.rolling_update.clone()).unwrap_or_default();
    let mut surge = resolve(rolling.max_surge.as_ref(), "25%", wanted, true);
    let mut unavailable = resolve(rolling.max_unavailable.as_ref(), "25%", wanted, false);
    if recreate {
        (surge, unavailable) = (0, wanted);
    } else if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Shape { wanted: wanted.into(), surge: surge.into(), unavailable: unavailable.into(), recreate, paused: spec.paused == Some(true) }
}

/// The ReplicaSet for the Deployment's template, when none has it: named
/// and labelled by the template's hash, the next revision, and as many
/// replicas as the surge leaves room for next to the old ones.
pub fn new_replica_set(d: &Deployment, shape: &Shape, olds: &[Arc<ReplicaSet>], max_revision: i64) -> Result<ReplicaSet, Error> {
    let meta = &d.metadata;
    let (ns, name) = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
    let spec = d.spec.clone().unwrap_or_default();
    let Shape { wanted, surge, recreate, .. } = *shape;
    let old_total: i64 = olds.iter().map(|rs| replicas(rs)).sum();
    let initial = if recreate { 0 } else { (wanted + surge - old_total).clamp(0, wanted) };
    let hash = hash_of(&spec.template);
    let mut template = spec.template.clone();
    template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(Default::default).insert(HASH_LABEL.into(), hash.clone());
    let mut selector = spec.selector.clone();
    selector.match_labels.get_or_insert_with(Default::default).insert(HASH_LABEL.into(), hash.clone());
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("{name}-{hash}"),
            "namespace": ns,
            "labels": template.metadata.as_ref().and_then(|m| m.labels.clone()),
            "annotations": {REVISION: max_revision.saturating_add(1).to_string(), DESIRED: wanted.to_string(), MAX_REPLICAS: (wanted + surge).to_string()},
            "ownerReferences": [owner_reference(meta, "apps/v1", "Deployment")],
        },
        "spec": {"replicas": int32(initial), "minReadySeconds": spec.min_ready_seconds.unwrap_or(0), "selector": selector, "template": template},
    }))
    .map_err(|e| Error(e.to_string()))
}

/// The sizes the rollout sets this sync: each ReplicaSet (by name) and
/// its new replica count. `proportional` when the Deployment was resized
/// mid-rollout: the change is shared first, and the rollout goes on next
/// sync.
#[derive(Debug, Default, PartialEq)]
pub struct Scaling {
    pub sizes: Vec<(String, i64)>,
    pub proportional: bool,
}

/// Upstream's rolling and recreate steps, from the ReplicaSets the
/// Deployment owns (`olds` are those other than `new`).
pub fn scaling(shape: &Shape, owned: &[Arc<ReplicaSet>], olds: &[Arc<ReplicaSet>], new: Option<&ReplicaSet>) -> Scaling {
    let Shape { wanted, surge, unavailable, recreate, paused } = *shape;
    let name = |rs: &ReplicaSet| rs.metadata.name.clone().unwrap_or_default();
    let mut out = Scaling::default();
    let all_replicas: i64 = owned.iter().map(|rs| replicas(rs)).sum::<i64>() + if owned.iter().any(|rs| Some(&rs.metadata.uid) == new.map(|n| &n.metadata.uid)) { 0 } else { new.map_or(0, replicas) };
    // Resized mid-rollout (upstream's scaling event): the change is shared
    // among the ReplicaSets that have pods, in proportion to their size,
    // before the rollout goes on.
    let active: Vec<&Arc<ReplicaSet>> = owned.iter().filter(|rs| replicas(rs) > 0).collect();
    let resized = active.iter().any(|rs| rs.metadata.annotations.as_ref().and_then(|a| a.get(DESIRED)).is_some_and(|d| d != &wanted.to_string()));
    if active.len() > 1 && resized && !recreate {
        out.sizes = proportional(&active, wanted + surge, all_replicas).into_iter().map(|(rs, to)| (name(rs), to)).collect();
        out.proportional = true;
        return out;
    }
    let Some(new) = new else { return out };
    let new_replicas = replicas(new);
    if paused || olds.iter().all(|rs| replicas(rs) == 0 && status_of(rs, "replicas") == 0) {
        // Nothing to roll: the new ReplicaSet simply has the count.
        if new_replicas != wanted && !(recreate && olds.iter().any(|rs| status_of(rs, "replicas") > 0)) {
            out.sizes.push((name(new), wanted));
        }
    } else if recreate {
        for old in olds.iter().filter(|rs| replicas(rs) > 0) {
            out.sizes.push((name(old), 0));
        }
    } else {
        // Up: new pods within maxSurge; the next sync scales down, as
        // upstream's (which returns after a scale-up).
        let room = wanted + surge - all_replicas;
        let scaled_up = room > 0 && new_replicas < wanted;
        if scaled_up {
            out.sizes.push((name(new), new_replicas + room.min(wanted - new_replicas)));
        }
        // Down, as upstream: first old pods that are not available
        // (within what the new ones leave room for), then available
        // ones while replicas − maxUnavailable stay available; nothing
        // while the new ones' unavailable pods use the whole allowance.
        let min_available = wanted - unavailable;
        let new_unavailable = (new_replicas - status_of(new, "availableReplicas")).max(0);
        let mut targets: Vec<i64> = olds.iter().map(|rs| replicas(rs)).collect();
        let mut cleanup = if scaled_up { 0 } else { (all_replicas - min_available - new_unavailable).max(0) };
        let allowed_down = cleanup > 0;
        for (target, old) in targets.iter_mut().zip(olds) {
            let cut = (*target - status_of(old, "availableReplicas")).max(0).min(cleanup);
            *target -= cut;
            cleanup -= cut;
        }
        let available: i64 = owned.iter().map(|rs| status_of(rs, "availableReplicas")).sum();
        let mut budget = if allowed_down { (available - min_available).max(0) } else { 0 };
        for target in targets.iter_mut() {
            let cut = budget.min(*target);
            *target -= cut;
            budget -= cut;
        }
        for (old, target) in olds.iter().zip(targets) {
            if target != replicas(old) {
                out.sizes.push((name(old), target));
            }
        }
    }
    out
}

/// History: old ReplicaSets with nothing left, beyond the limit, oldest
/// first (`olds` are sorted by creation).
pub fn beyond_history(spec: &DeploymentSpec, olds: &[Arc<ReplicaSet>]) -> Vec<String> {
    let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
    let empty: Vec<&Arc<ReplicaSet>> = olds.iter().filter(|rs| replicas(rs) == 0 && status_of(rs, "replicas") == 0).collect();
    empty.iter().take(empty.len().saturating_sub(limit)).map(|rs| rs.metadata.name.clone().unwrap_or_default()).collect()
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    crate::informers::ready(&ctx.replica_sets).await.map_err(|e| Error(e.to_string()))?;
    let meta = &d.metadata;
    if meta.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = meta.namespace.clone().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let shape = shape(&spec);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let mut owned = controlled_by(&ctx.replica_sets, meta);
    owned.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let max_revision = owned.iter().map(|rs| revision_of(rs)).max().unwrap_or(0);
    let current = owned.iter().find(|rs| rs.spec.as_ref().and_then(|s| s.template.as_ref()).map(without_hash).as_ref() == Some(&spec.template)).cloned();
    let olds: Vec<Arc<ReplicaSet>> = owned.iter().filter(|rs| Some(&rs.metadata.uid) != current.as_ref().map(|c| &c.metadata.uid)).cloned().collect();
    let mut progress_reason = "ReplicaSetUpdated";

    let new = match current {
        Some(rs) => {
            // Back to an older template (`rollout undo`): it is the newest revision again.
            if revision_of(&rs) < max_revision {
                let patch = json!({"metadata": {"annotations": {REVISION: max_revision.saturating_add(1).to_string()}}});
                rs_api.patch(rs.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(patch)).await?;
            }
            Some(rs)
        }
        None if shape.paused => None,
        None => {
            let rs = new_replica_set(&d, &shape, &olds, max_revision)?;
            progress_reason = "NewReplicaSetCreated";
            match rs_api.create(&PostParams::default(), &rs).await {
                Ok(created) => Some(Arc::new(created)),
                // Created by an earlier sync the watch has not shown yet.
                Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Action::requeue(Duration::from_millis(200))),
                Err(e) => return Err(e.into()),
            }
        }
    };

    let step = scaling(&shape, &owned, &olds, new.as_deref());
    for (rs_name, to) in &step.sizes {
        let annotations = json!({DESIRED: shape.wanted.to_string(), MAX_REPLICAS: (shape.wanted + shape.surge).to_string()});
        let patch = json!({"metadata": {"annotations": annotations}, "spec": {"replicas": int32(*to)}});
        rs_api.patch(rs_name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    }
    if step.proportional {
        update_status(&ctx, &d, &owned, new.as_deref(), &shape, progress_reason).await?;
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    for rs_name in beyond_history(&spec, &olds) {
        let _ = rs_api.delete(&rs_name, &DeleteParams::background()).await;
    }
    let deadline = update_status(&ctx, &d, &owned, new.as_deref(), &shape, progress_reason).await?;
    Ok(Action::requeue(deadline.map_or(Duration::from_secs(30), |d| d.min(Duration::from_secs(30)))))
}

/// Upstream's proportional scaling: each ReplicaSet gets its share of the
/// change (its size over the size it was sized for, the
/// `max-replicas` annotation), the largest first; what rounding leaves
/// goes to the largest. Every active ReplicaSet is listed, so each is
/// re-annotated with the new size.
fn proportional<'a>(active: &[&'a Arc<ReplicaSet>], allowed: i64, current: i64) -> Vec<(&'a Arc<ReplicaSet>, i64)> {
    let to_add = allowed - current;
    let mut sorted: Vec<&Arc<ReplicaSet>> = active.to_vec();
    sorted.sort_by_key(|rs| (std::cmp::Reverse(replicas(rs)), std::cmp::Reverse(rs.metadata.creation_timestamp.as_ref().map(|t| t.0))));
    let mut added = 0;
    let mut targets: Vec<(&Arc<ReplicaSet>, i64)> = sorted
        .iter()
        .map(|rs| {
            let annotated: i64 = rs.metadata.annotations.as_ref().and_then(|a| a.get(MAX_REPLICAS)).and_then(|m| m.parse().ok()).unwrap_or(current).max(1);
            // Float to int casts saturate; a hostile annotation cannot overflow.
            let share = ((replicas(rs) as f64 * allowed as f64 / annotated as f64).round() as i64).saturating_sub(replicas(rs));
            let share = if to_add > 0 { share.clamp(0, to_add - added) } else { share.clamp(to_add - added, 0) };
            added += share;
            (*rs, replicas(rs) + share)
        })
        .collect();
    if let Some(first) = targets.first_mut() {
        first.1 = (first.1 + to_add - added).max(0);
    }
    targets
}

/// The Deployment's next status: counts from its ReplicaSets, the
/// Available and Progressing conditions (kept as they were when nothing
/// changed), and how long until the progress deadline passes, if a
/// rollout is under way.
pub fn next_status(d: &Deployment, owned: &[Arc<ReplicaSet>], new: Option<&ReplicaSet>, shape: &Shape, reason: &str, now: chrono::DateTime<chrono::Utc>) -> (Value, Option<Duration>) {
    let Shape { wanted, unavailable, .. } = *shape;
    let sum = |field: &str| owned.iter().map(|rs| status_of(rs, field)).sum::<i64>();
    let (total, available) = (sum("replicas"), sum("availableReplicas"));
    let updated = new.map_or(0, |n| status_of(n, "replicas"));
    let new_name = new.and_then(|n| n.metadata.name.clone()).unwrap_or_default();
    let complete = updated == wanted && total == wanted && available == wanted && d.spec.as_ref().and_then(|s| s.paused) != Some(true);
    let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let old_conditions = d.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let condition = |kind: &str, status: &str, reason: &str, message: String| {
        let previous = old_conditions.iter().find(|c| c.type_ == kind);
        let transition = previous.filter(|c| c.status == status).and_then(|c| c.last_transition_time.as_ref()).map_or(stamp.clone(), |t| t.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let updated = previous.filter(|c| c.status == status && c.reason.as_deref() == Some(reason)).and_then(|c| c.last_update_time.as_ref()).map_or(stamp.clone(), |t| t.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        json!({"type": kind, "status": status, "reason": reason, "message": message, "lastUpdateTime": updated, "lastTransitionTime": transition})
    };
    let available_condition = if available >= wanted - unavailable {
        condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.".into())
    } else {
        condition("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.".into())
    };
    // Progress: the rollout's counts moved since the last status. Without
    // progress for progressDeadlineSeconds, the rollout has timed out.
    let old_status = d.status.clone().unwrap_or_default();
    let was = |v: Option<i32>| i64::from(v.unwrap_or(0));
    let moved = (was(old_status.updated_replicas), was(old_status.ready_replicas), was(old_status.available_replicas), was(old_status.replicas)) != (updated, sum("readyReplicas"), available, total);
    let previous = old_conditions.iter().find(|c| c.type_ == "Progressing");
    let last_progress = previous.filter(|c| c.status == "True" && !moved).and_then(|c| c.last_update_time.as_ref()).map(|t| t.0);
    let deadline = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).unwrap_or(600);
    // A deadline past what a time can hold never passes.
    let overdue = last_progress.and_then(|t| plus_seconds(t, deadline.into())).map(|t| t - now);
    let timed_out = previous.is_some_and(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded") && !moved) || overdue.is_some_and(|left| left <= chrono::Duration::zero());
    let mut remaining = None;
    let progressing = if d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
        condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into())
    } else if complete {
        condition("Progressing", "True", "NewReplicaSetAvailable", format!("ReplicaSet \"{new_name}\" has successfully progressed."))
    } else if timed_out {
        condition("Progressing", "False", "ProgressDeadlineExceeded", format!("ReplicaSet \"{new_name}\" has timed out progressing."))
    } else {
        remaining = Some(overdue.and_then(|left| left.to_std().ok()).unwrap_or(Duration::from_secs(deadline as u64)));
        let mut c = if reason == "NewReplicaSetCreated" {
            condition("Progressing", "True", reason, format!("Created new replica set \"{new_name}\""))
        } else {
            condition("Progressing", "True", reason, format!("ReplicaSet \"{new_name}\" is progressing."))
        };
        if moved {
            c["lastUpdateTime"] = json!(stamp);
        }
        c
    };
    let status = json!({
        "observedGeneration": d.metadata.generation,
        "replicas": int32(total),
        "updatedReplicas": int32(updated),
        "readyReplicas": int32(sum("readyReplicas")),
        "availableReplicas": int32(available),
        "unavailableReplicas": int32(wanted - available),
        "conditions": [available_condition, progressing],
    });
    (status, remaining)
}

/// Writes the status; returns how long until the progress deadline
/// passes, if a rollout is under way.
async fn update_status(ctx: &Context, d: &Deployment, owned: &[Arc<ReplicaSet>], new: Option<&ReplicaSet>, shape: &Shape, reason: &str) -> Result<Option<Duration>, Error> {
    let (status, remaining) = next_status(d, owned, new, shape, reason, chrono::Utc::now());
    let mut current = serde_json::to_value(d.status.clone().unwrap_or_default()).unwrap_or_default();
    let mut next = status.clone();
    // Zero counts are omitted in what was read; compare like with like.
    for v in [&mut current, &mut next] {
        if let Some(o) = v.as_object_mut() {
            o.retain(|_, x| x != &json!(0) && !x.is_null());
        }
    }
    if current == next {
        return Ok(remaining);
    }
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), d.metadata.namespace.as_deref().unwrap_or_default());
    let name = d.metadata.name.as_deref().unwrap_or_default();
    if let Some(revision) = new.map(revision_of).filter(|r| *r > 0) {
        let has = d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).map(String::as_str) == Some(revision.to_string().as_str());
        if !has {
            api.patch(name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {REVISION: revision.to_string()}}}))).await?;
        }
    }
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    Ok(remaining)
}

/// Every decision of one sync, on the objects alone (no API): for the
/// fuzz targets and property tests.
pub fn fuzz(d: &Deployment, replica_sets: &[ReplicaSet], now: chrono::DateTime<chrono::Utc>) {
    let spec = d.spec.clone().unwrap_or_default();
    let shape = shape(&spec);
    let mut owned: Vec<Arc<ReplicaSet>> = replica_sets.iter().cloned().map(Arc::new).collect();
    owned.sort_by_key(|rs| rs.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let max_revision = owned.iter().map(|rs| revision_of(rs)).max().unwrap_or(0);
    let current = owned.iter().find(|rs| rs.spec.as_ref().and_then(|s| s.template.as_ref()).map(without_hash).as_ref() == Some(&spec.template)).cloned();
    let olds: Vec<Arc<ReplicaSet>> = owned.iter().filter(|rs| Some(&rs.metadata.uid) != current.as_ref().map(|c| &c.metadata.uid)).cloned().collect();
    let new = match current {
        Some(rs) => Some(rs),
        None => new_replica_set(d, &shape, &olds, max_revision).ok().map(Arc::new),
    };
    let step = scaling(&shape, &owned, &olds, new.as_deref());
    for (_, to) in &step.sizes {
        let _ = int32(*to);
    }
    let _ = beyond_history(&spec, &olds);
    let _ = next_status(d, &owned, new.as_deref(), &shape, "ReplicaSetUpdated", now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn surge_and_unavailable_round_as_upstream() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(resolve(Some(&pct("25%")), "25%", 10, true), 3);
        assert_eq!(resolve(Some(&pct("25%")), "25%", 10, false), 2);
        assert_eq!(resolve(None, "25%", 1, true), 1);
        assert_eq!(resolve(None, "25%", 1, false), 0);
        assert_eq!(resolve(Some(&IntOrString::Int(2)), "25%", 10, true), 2);
        assert_eq!(resolve(None, "1", 10, true), 1, "a default may be absolute");
    }

    #[test]
    fn resizing_mid_rollout_is_shared_proportionally() {
        let rs = |name: &str, replicas: i32, max: i32| {
            Arc::new(serde_json::from_value::<ReplicaSet>(json!({
                "metadata": {"name": name, "annotations": {"deployment.kubernetes.io/max-replicas": max.to_string()}},
                "spec": {"replicas": replicas, "selector": {}},
            })).unwrap())
        };
        // Upstream's e2e: 10 replicas, surge 3, new stuck at 5 of 13; scaled to 30 (allowed 33).
        let (old, new) = (rs("old", 8, 13), rs("new", 5, 13));
        let targets = proportional(&[&old, &new], 33, 13);
        let by_name: Vec<(String, i64)> = targets.iter().map(|(r, t)| (r.metadata.name.clone().unwrap(), *t)).collect();
        assert_eq!(by_name, [("old".to_string(), 20), ("new".to_string(), 13)]);
        let down = proportional(&[&old, &new], 7, 13);
        assert_eq!(down.iter().map(|(_, t)| *t).sum::<i64>(), 7);
    }

    #[test]
    fn hashes_use_upstreams_alphabet() {
        let hash = hash_of(&PodTemplateSpec::default());
        assert!(!hash.is_empty() && hash.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{hash}");
    }

    /// The issue: `replicas: -3` made `clamp(0, -3)` panic, which stopped
    /// the controller for every Deployment. A negative count is 0.
    #[test]
    fn a_negative_replica_count_is_zero() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "d", "namespace": "ns"},
            "spec": {"replicas": -3, "selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "a"}}},
                "strategy": {"rollingUpdate": {"maxSurge": "2147483648%", "maxUnavailable": "-5%"}}},
        }))
        .unwrap();
        let shape = shape(d.spec.as_ref().unwrap());
        assert_eq!((shape.wanted, shape.surge, shape.unavailable), (0, 0, 1));
        let huge: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "old"}, "spec": {"replicas": 2147483647, "selector": {}}})).unwrap();
        let new = new_replica_set(&d, &shape, &[Arc::new(huge)], i64::MAX).unwrap();
        assert_eq!(new.spec.as_ref().and_then(|s| s.replicas), Some(0));
        fuzz(&d, &[], chrono::Utc::now());
    }
}

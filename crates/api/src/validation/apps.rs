//! The apps group: Deployments, ReplicaSets, StatefulSets, DaemonSets and
//! ControllerRevisions, as upstream's `pkg/apis/apps/validation`
//! (Kubernetes 1.32) checks them, plus the selector immutability its
//! registry strategies add for apps/v1.
//!
//! Values upstream prints with Go's `%#v` (selectors, label maps,
//! int-or-strings) are spelled out as Go prints them: they are part of the
//! message clients see.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, DeploymentStrategy, ReplicaSet, ReplicaSetSpec, RollingUpdateStatefulSetStrategy, StatefulSet,
    StatefulSetSpec,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::go::{go_int_or_string, go_pointer, go_selector, go_string_map, semantic, semantic_of};
use super::pod::{template_labels, NO_MATCH};
use super::{annotations, immutable, label_selector, labels, non_negative, selector_matches, Bad, Errors, Op, Path, IMMUTABLE};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    let errs = match kind {
        "Deployment" => op.run(deployment, deployment_update, deployment_status),
        "ReplicaSet" => op.run(replica_set, replica_set_update, replica_set_status),
        "StatefulSet" => op.run(stateful_set, stateful_set_update, stateful_set_status),
        "DaemonSet" => op.run(daemon_set, daemon_set_update, daemon_set_status),
        "ControllerRevision" => return Some(op.run(controller_revision, controller_revision_update, super::nothing)),
        _ => return None,
    };
    Some(missing_selector(kind, op, errs))
}

const NOT_ABOVE_REPLICAS: &str = "cannot be greater than status.replicas";

/// k8s-openapi decodes a missing `spec.selector` as an empty one, which
/// upstream tells apart: a nil selector is required (a DaemonSet's is not)
/// and selects nothing, so no template matches it.
fn missing_selector(kind: &str, op: Op<'_>, mut errs: Errors) -> Errors {
    let new = match op {
        Op::Create(new) | Op::Update { new, .. } => new,
        Op::Status { .. } => return errs,
    };
    if new.pointer("/spec/selector").is_some_and(|s| !s.is_null()) {
        return errs;
    }
    let template_labels: Option<BTreeMap<String, String>> = new
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect());
    let mut instead = Vec::new();
    if kind != "DaemonSet" {
        instead.push(Path::new("spec").child("selector").required(""));
    }
    instead.push(Path::new("spec.template.metadata.labels").invalid(Bad::raw(go_string_map(template_labels.as_ref())), NO_MATCH));
    match errs.iter().position(|e| e.field == "spec.selector" && e.message.contains("empty selector is invalid")) {
        Some(i) => {
            errs.splice(i..=i, instead);
        }
        None => errs.extend(instead),
    }
    errs
}

// ---- Deployments and ReplicaSets ----------------------------------------

fn deployment(d: &Deployment) -> Errors {
    let default = DeploymentSpec::default();
    let spec = d.spec.as_ref().unwrap_or(&default);
    let p = Path::new("spec");
    let mut errs = non_negative(spec.replicas.unwrap_or(1).into(), &p.child("replicas"));
    errs.extend(replicated(&spec.selector, &spec.template, &p));
    errs.extend(deployment_strategy(spec.strategy.as_ref(), &p.child("strategy")));
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    errs.extend(non_negative(min_ready.into(), &p.child("minReadySeconds")));
    if let Some(limit) = spec.revision_history_limit {
        errs.extend(non_negative(limit.into(), &p.child("revisionHistoryLimit")));
    }
    if let Some(deadline) = spec.progress_deadline_seconds {
        let at = p.child("progressDeadlineSeconds");
        errs.extend(non_negative(deadline.into(), &at));
        if deadline <= min_ready {
            errs.push(at.invalid(deadline, "must be greater than minReadySeconds"));
        }
    }
    errs
}

fn replica_set(rs: &ReplicaSet) -> Errors {
    let default = ReplicaSetSpec::default();
    let spec = rs.spec.as_ref().unwrap_or(&default);
    let p = Path::new("spec");
    let mut errs = non_negative(spec.replicas.unwrap_or(1).into(), &p.child("replicas"));
    errs.extend(non_negative(spec.min_ready_seconds.unwrap_or(0).into(), &p.child("minReadySeconds")));
    errs.extend(replicated(&spec.selector, &spec.template.clone().unwrap_or_default(), &p));
    errs
}

/// The selector and template rules Deployments and ReplicaSets share
/// (upstream's ReplicaSet says "deployment" too).
fn replicated(selector: &LabelSelector, template: &PodTemplateSpec, p: &Path) -> Errors {
    let at = p.child("selector");
    let mut errs = label_selector(selector, &at);
    let parses = errs.is_empty();
    if is_empty(selector) {
        errs.push(at.invalid(Bad::raw(go_selector(selector)), "empty selector is invalid for deployment"));
    }
    if !parses {
        errs.push(at.invalid(Bad::raw(go_selector(selector)), "invalid label selector"));
        return errs;
    }
    let t = p.child("template");
    if !is_empty(selector) && !selector_matches(selector, template_labels(template)) {
        errs.push(t.child("metadata").child("labels").invalid(Bad::raw(go_string_map(template_labels(template))), NO_MATCH));
    }
    errs.extend(super::pod::pod_template_spec(template, &t));
    errs.extend(always_restarts(template, &t, "ReplicaSet"));
    errs
}

/// Controllers of long-running pods: restartPolicy Always, no deadline.
fn always_restarts(template: &PodTemplateSpec, t: &Path, kind: &str) -> Errors {
    let mut errs = Vec::new();
    let policy = restart_policy(template);
    if policy != "Always" {
        errs.push(t.child("spec").child("restartPolicy").not_supported(policy, &["Always"]));
    }
    if template.spec.as_ref().is_some_and(|s| s.active_deadline_seconds.is_some()) {
        errs.push(t.child("spec").child("activeDeadlineSeconds").forbidden(&format!("activeDeadlineSeconds in {kind} is not Supported")));
    }
    errs
}

fn deployment_strategy(strategy: Option<&DeploymentStrategy>, p: &Path) -> Errors {
    let default = DeploymentStrategy::default();
    let strategy = strategy.unwrap_or(&default);
    match defaulted(strategy.type_.as_deref(), "RollingUpdate") {
        "Recreate" if strategy.rolling_update.is_some() => vec![p.child("rollingUpdate").forbidden("may not be specified when strategy `type` is 'Recreate'")],
        "Recreate" => vec![],
        "RollingUpdate" => {
            // Upstream defaults both to 25%, as Skiff does; a missing
            // `rollingUpdate` is one Skiff left out (a `type: ""`).
            let rolling = strategy.rolling_update.clone().unwrap_or_default();
            let max_unavailable = rolling.max_unavailable.unwrap_or(IntOrString::String("25%".into()));
            let max_surge = rolling.max_surge.unwrap_or(IntOrString::String("25%".into()));
            let r = p.child("rollingUpdate");
            let mut errs = int_or_percent(&max_unavailable, &r.child("maxUnavailable"));
            errs.extend(int_or_percent(&max_surge, &r.child("maxSurge")));
            if int_or_percent_value(&max_unavailable) == 0 && int_or_percent_value(&max_surge) == 0 {
                errs.push(r.child("maxUnavailable").invalid(Bad::raw(go_int_or_string(&max_unavailable)), "may not be 0 when `maxSurge` is 0"));
            }
            errs.extend(not_above_100_percent(&max_unavailable, &r.child("maxUnavailable")));
            errs
        }
        other => {
            let shown = format!("apps.DeploymentStrategy{{Type:{other:?}, RollingUpdate:{}}}", go_pointer("apps.RollingUpdateDeployment", strategy.rolling_update.is_some()));
            vec![p.not_supported(Bad::raw(shown), &["Recreate", "RollingUpdate"])]
        }
    }
}

fn deployment_update(new: &Deployment, old: &Deployment) -> Errors {
    let selector = |d: &Deployment| d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    selector_immutable(&selector(new), &selector(old))
}

fn replica_set_update(new: &ReplicaSet, old: &ReplicaSet) -> Errors {
    let selector = |rs: &ReplicaSet| rs.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    selector_immutable(&selector(new), &selector(old))
}

fn deployment_status(new: &Deployment, old: &Deployment) -> Errors {
    let s = new.status.clone().unwrap_or_default();
    let p = Path::new("status");
    let (replicas, updated, ready, available) = (s.replicas.unwrap_or(0), s.updated_replicas.unwrap_or(0), s.ready_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0));
    let mut errs = non_negative(s.observed_generation.unwrap_or(0), &p.child("observedGeneration"));
    for (field, value) in [("replicas", replicas), ("updatedReplicas", updated), ("readyReplicas", ready), ("availableReplicas", available), ("unavailableReplicas", s.unavailable_replicas.unwrap_or(0))] {
        errs.extend(non_negative(value.into(), &p.child(field)));
    }
    if let Some(collisions) = s.collision_count {
        errs.extend(non_negative(collisions.into(), &p.child("collisionCount")));
    }
    for (field, value) in [("updatedReplicas", updated), ("readyReplicas", ready), ("availableReplicas", available)] {
        if value > replicas {
            errs.push(p.child(field).invalid(value, NOT_ABOVE_REPLICAS));
        }
    }
    if available > ready {
        errs.push(p.child("availableReplicas").invalid(available, "cannot be greater than readyReplicas"));
    }
    errs.extend(collisions_kept(s.collision_count, old.status.as_ref().and_then(|s| s.collision_count)));
    errs
}

fn replica_set_status(new: &ReplicaSet, _old: &ReplicaSet) -> Errors {
    let s = new.status.clone().unwrap_or_default();
    let p = Path::new("status");
    let (labeled, ready, available) = (s.fully_labeled_replicas.unwrap_or(0), s.ready_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0));
    let mut errs = Vec::new();
    for (field, value) in [("replicas", s.replicas), ("fullyLabeledReplicas", labeled), ("readyReplicas", ready), ("availableReplicas", available)] {
        errs.extend(non_negative(value.into(), &p.child(field)));
    }
    errs.extend(non_negative(s.observed_generation.unwrap_or(0), &p.child("observedGeneration")));
    for (field, value) in [("fullyLabeledReplicas", labeled), ("readyReplicas", ready), ("availableReplicas", available)] {
        if value > s.replicas {
            errs.push(p.child(field).invalid(value, NOT_ABOVE_REPLICAS));
        }
    }
    if available > ready {
        errs.push(p.child("availableReplicas").invalid(available, "cannot be greater than readyReplicas"));
    }
    errs
}

// ---- StatefulSets ---------------------------------------------------------

fn stateful_set(ss: &StatefulSet) -> Errors {
    let default = StatefulSetSpec::default();
    let spec = ss.spec.as_ref().unwrap_or(&default);
    let p = Path::new("spec");
    let mut errs = Vec::new();
    // Upstream defaults an empty policy or strategy type as a missing one.
    match defaulted(spec.pod_management_policy.as_deref(), "OrderedReady") {
        "OrderedReady" | "Parallel" => {}
        other => errs.push(p.child("podManagementPolicy").invalid(other, "must be 'OrderedReady' or 'Parallel'")),
    }
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let at = p.child("updateStrategy");
    match defaulted(strategy.type_.as_deref(), "RollingUpdate") {
        "OnDelete" => {
            if let Some(rolling) = &strategy.rolling_update {
                errs.push(at.child("rollingUpdate").invalid(Bad::raw(go_stateful_rolling_update(rolling)), "only allowed for updateStrategy 'RollingUpdate'"));
            }
        }
        "RollingUpdate" => {
            if let Some(rolling) = &strategy.rolling_update {
                errs.extend(stateful_rolling_update(rolling, &at.child("rollingUpdate")));
            }
        }
        other => {
            let shown = format!("apps.StatefulSetUpdateStrategy{{Type:{other:?}, RollingUpdate:{}}}", go_pointer("apps.RollingUpdateStatefulSetStrategy", strategy.rolling_update.is_some()));
            errs.push(at.invalid(Bad::raw(shown), "must be 'RollingUpdate' or 'OnDelete'"));
        }
    }
    if let Some(retention) = &spec.persistent_volume_claim_retention_policy {
        let at = p.child("persistentVolumeClaimRetentionPolicy");
        for (field, value) in [("whenDeleted", &retention.when_deleted), ("whenScaled", &retention.when_scaled)] {
            let value = defaulted(value.as_deref(), "Retain");
            if !matches!(value, "Retain" | "Delete") {
                errs.push(at.child(field).not_supported(value, &["Retain", "Delete"]));
            }
        }
    }
    errs.extend(non_negative(spec.replicas.unwrap_or(1).into(), &p.child("replicas")));
    errs.extend(non_negative(spec.min_ready_seconds.unwrap_or(0).into(), &p.child("minReadySeconds")));
    if let Some(ordinals) = &spec.ordinals {
        errs.extend(non_negative(ordinals.start.unwrap_or(0).into(), &p.child("ordinals.start")));
    }
    let selector = &spec.selector;
    let at = p.child("selector");
    let selector_errs = label_selector(selector, &at);
    let parses = selector_errs.is_empty();
    errs.extend(selector_errs);
    if is_empty(selector) {
        errs.push(at.invalid(Bad::raw(go_selector(selector)), "empty selector is invalid for statefulset"));
    }
    let t = p.child("template");
    let template = &spec.template;
    if !parses {
        errs.push(at.invalid(Bad::raw(go_selector(selector)), ""));
    } else {
        // Upstream checks a StatefulSet's template labels and annotations
        // but not its pod spec (a TODO there since 1.5).
        if !is_empty(selector) && !selector_matches(selector, template_labels(template)) {
            errs.push(t.child("metadata").child("labels").invalid(Bad::raw(go_string_map(template_labels(template))), NO_MATCH));
        }
        errs.extend(labels(template_labels(template), &t.child("labels")));
        errs.extend(annotations(template.metadata.as_ref().and_then(|m| m.annotations.as_ref()), &t.child("annotations")));
    }
    errs.extend(always_restarts(template, &t, "StatefulSet"));
    errs
}

fn stateful_rolling_update(rolling: &RollingUpdateStatefulSetStrategy, p: &Path) -> Errors {
    let mut errs = non_negative(rolling.partition.unwrap_or(0).into(), &p.child("partition"));
    if let Some(max_unavailable) = &rolling.max_unavailable {
        let at = p.child("maxUnavailable");
        errs.extend(int_or_percent(max_unavailable, &at));
        if int_or_percent_value(max_unavailable) == 0 {
            errs.push(at.invalid(Bad::raw(go_int_or_string(max_unavailable)), "cannot be 0"));
        }
        errs.extend(not_above_100_percent(max_unavailable, &at));
    }
    errs
}

/// Only replicas, ordinals, template, updateStrategy, the PVC retention
/// policy and minReadySeconds may change.
fn stateful_set_update(new: &StatefulSet, old: &StatefulSet) -> Errors {
    let fixed = |ss: &StatefulSet| {
        let mut spec = serde_json::to_value(&ss.spec).unwrap_or(Value::Null);
        if let Some(fields) = spec.as_object_mut() {
            for field in ["replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy", "minReadySeconds"] {
                fields.remove(field);
            }
        }
        semantic(spec)
    };
    if fixed(new) == fixed(old) {
        return vec![];
    }
    vec![Path::new("spec").forbidden(
        "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
    )]
}

fn stateful_set_status(new: &StatefulSet, old: &StatefulSet) -> Errors {
    let s = new.status.clone().unwrap_or_default();
    let p = Path::new("status");
    let (ready, current, updated, available) = (s.ready_replicas.unwrap_or(0), s.current_replicas.unwrap_or(0), s.updated_replicas.unwrap_or(0), s.available_replicas.unwrap_or(0));
    let mut errs = Vec::new();
    for (field, value) in [("replicas", s.replicas), ("readyReplicas", ready), ("currentReplicas", current), ("updatedReplicas", updated), ("availableReplicas", available)] {
        errs.extend(non_negative(value.into(), &p.child(field)));
    }
    if let Some(generation) = s.observed_generation {
        errs.extend(non_negative(generation, &p.child("observedGeneration")));
    }
    if let Some(collisions) = s.collision_count {
        errs.extend(non_negative(collisions.into(), &p.child("collisionCount")));
    }
    for (field, value) in [("readyReplicas", ready), ("currentReplicas", current), ("updatedReplicas", updated), ("availableReplicas", available)] {
        if value > s.replicas {
            errs.push(p.child(field).invalid(value, NOT_ABOVE_REPLICAS));
        }
    }
    if available > ready {
        errs.push(p.child("availableReplicas").invalid(available, "cannot be greater than status.readyReplicas"));
    }
    errs.extend(collisions_kept(s.collision_count, old.status.as_ref().and_then(|s| s.collision_count)));
    errs
}

// ---- DaemonSets -----------------------------------------------------------

fn daemon_set(ds: &DaemonSet) -> Errors {
    let default = DaemonSetSpec::default();
    let spec = ds.spec.as_ref().unwrap_or(&default);
    let p = Path::new("spec");
    let selector = &spec.selector;
    let template = &spec.template;
    let t = p.child("template");
    let mut errs = label_selector(selector, &p.child("selector"));
    if errs.is_empty() && !selector_matches(selector, template_labels(template)) {
        errs.push(t.child("metadata").child("labels").invalid(Bad::raw(go_string_map(template_labels(template))), NO_MATCH));
    }
    if is_empty(selector) {
        errs.push(p.child("selector").invalid(Bad::raw(go_selector(selector)), "empty selector is invalid for daemonset"));
    }
    errs.extend(super::pod::pod_template_spec(template, &t));
    errs.extend(always_restarts(template, &t, "DaemonSet"));
    errs.extend(non_negative(spec.min_ready_seconds.unwrap_or(0).into(), &p.child("minReadySeconds")));
    let at = p.child("updateStrategy");
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    match defaulted(strategy.type_.as_deref(), "RollingUpdate") {
        "OnDelete" => {}
        "RollingUpdate" => {
            // Upstream defaults maxUnavailable to 1 and maxSurge to 0.
            let rolling = strategy.rolling_update.clone().unwrap_or_default();
            let max_unavailable = rolling.max_unavailable.unwrap_or(IntOrString::Int(1));
            let max_surge = rolling.max_surge.unwrap_or(IntOrString::Int(0));
            let r = at.child("rollingUpdate");
            errs.extend(int_or_percent(&max_unavailable, &r.child("maxUnavailable")));
            errs.extend(int_or_percent(&max_surge, &r.child("maxSurge")));
            errs.extend(not_above_100_percent(&max_unavailable, &r.child("maxUnavailable")));
            errs.extend(not_above_100_percent(&max_surge, &r.child("maxSurge")));
            match (int_or_percent_value(&max_unavailable) != 0, int_or_percent_value(&max_surge) != 0) {
                (true, true) => errs.push(r.child("maxSurge").invalid(Bad::raw(go_int_or_string(&max_surge)), "may not be set when maxUnavailable is non-zero")),
                (false, false) => errs.push(r.child("maxUnavailable").required("cannot be 0 when maxSurge is 0")),
                _ => {}
            }
        }
        other => {
            let shown = format!("apps.DaemonSetUpdateStrategy{{Type:{other:?}, RollingUpdate:{}}}", go_pointer("apps.RollingUpdateDaemonSet", strategy.rolling_update.is_some()));
            errs.push(at.not_supported(Bad::raw(shown), &["RollingUpdate", "OnDelete"]));
        }
    }
    if let Some(limit) = spec.revision_history_limit {
        errs.extend(non_negative(limit.into(), &p.child("revisionHistoryLimit")));
    }
    errs
}

fn daemon_set_update(new: &DaemonSet, old: &DaemonSet) -> Errors {
    let selector = |ds: &DaemonSet| ds.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    selector_immutable(&selector(new), &selector(old))
}

fn daemon_set_status(new: &DaemonSet, old: &DaemonSet) -> Errors {
    let s = new.status.clone().unwrap_or_default();
    let p = Path::new("status");
    let mut errs = Vec::new();
    for (field, value) in [
        ("currentNumberScheduled", i64::from(s.current_number_scheduled)),
        ("numberMisscheduled", s.number_misscheduled.into()),
        ("desiredNumberScheduled", s.desired_number_scheduled.into()),
        ("numberReady", s.number_ready.into()),
        ("observedGeneration", s.observed_generation.unwrap_or(0)),
        ("updatedNumberScheduled", s.updated_number_scheduled.unwrap_or(0).into()),
        ("numberAvailable", s.number_available.unwrap_or(0).into()),
        ("numberUnavailable", s.number_unavailable.unwrap_or(0).into()),
    ] {
        errs.extend(non_negative(value, &p.child(field)));
    }
    if let Some(collisions) = s.collision_count {
        errs.extend(non_negative(collisions.into(), &p.child("collisionCount")));
    }
    errs.extend(collisions_kept(s.collision_count, old.status.as_ref().and_then(|s| s.collision_count)));
    errs
}

// ---- ControllerRevisions ----------------------------------------------------

fn controller_revision(revision: &ControllerRevision) -> Errors {
    let mut errs = Vec::new();
    if revision.data.as_ref().is_none_or(|d| d.0.is_null()) {
        errs.push(Path::new("data").required("data is mandatory"));
    }
    errs.extend(non_negative(revision.revision, &Path::new("revision")));
    errs
}

fn controller_revision_update(new: &ControllerRevision, old: &ControllerRevision) -> Errors {
    immutable(&new.data, &old.data, &Path::new("data"))
}

// ---- shared rules -----------------------------------------------------------

/// A string field upstream's defaulting fills when empty (a non-pointer Go
/// string: missing and `""` are the same to it).
fn defaulted<'a>(value: Option<&'a str>, default: &'a str) -> &'a str {
    value.filter(|v| !v.is_empty()).unwrap_or(default)
}

fn restart_policy(template: &PodTemplateSpec) -> &str {
    defaulted(template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()), "Always")
}

fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty) && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// Upstream's `IsDecremented` on `status.collisionCount`.
fn collisions_kept(new: Option<i32>, old: Option<i32>) -> Errors {
    let decremented = match (new, old) {
        (None, Some(_)) => true,
        (Some(n), Some(o)) => n < o,
        _ => false,
    };
    if decremented {
        vec![Path::new("status").child("collisionCount").invalid(new.unwrap_or(0), "cannot be decremented")]
    } else {
        vec![]
    }
}

/// `spec.selector` may not change (the apps/v1 strategies' rule).
fn selector_immutable(new: &LabelSelector, old: &LabelSelector) -> Errors {
    if semantic_of(new) == semantic_of(old) {
        vec![]
    } else {
        vec![Path::new("spec").child("selector").invalid(Bad::raw(go_selector(new)), IMMUTABLE)]
    }
}

const PERCENT: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

fn is_percent(s: &str) -> bool {
    s.strip_suffix('%').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Upstream's `ValidatePositiveIntOrPercent`: a non-negative integer or
/// a percentage (PDBs' too).
pub(super) fn int_or_percent(value: &IntOrString, p: &Path) -> Errors {
    match value {
        IntOrString::Int(n) => non_negative((*n).into(), p),
        IntOrString::String(s) if !is_percent(s) => vec![p.invalid(Bad::raw(go_int_or_string(value)), PERCENT)],
        IntOrString::String(_) => vec![],
    }
}

/// Upstream's `getIntOrPercentValue`: a percentage's number, or the value
/// as an integer (a string that is not one counts as 0).
fn int_or_percent_value(value: &IntOrString) -> i64 {
    match value {
        IntOrString::Int(n) => (*n).into(),
        IntOrString::String(s) if is_percent(s) => s[..s.len() - 1].parse().unwrap_or(i64::MAX),
        IntOrString::String(s) => s.parse().unwrap_or(0),
    }
}

/// Upstream's `IsNotMoreThan100Percent` (PDBs' too).
pub(super) fn not_above_100_percent(value: &IntOrString, p: &Path) -> Errors {
    match value {
        IntOrString::String(s) if is_percent(s) && int_or_percent_value(value) > 100 => vec![p.invalid(Bad::raw(go_int_or_string(value)), "must not be greater than 100%")],
        _ => vec![],
    }
}

/// A StatefulSet's rolling update as Go's `%#v` prints it.
fn go_stateful_rolling_update(rolling: &RollingUpdateStatefulSetStrategy) -> String {
    let max_unavailable = match &rolling.max_unavailable {
        None => "(*intstr.IntOrString)(nil)".to_string(),
        Some(_) => go_pointer("intstr.IntOrString", true),
    };
    format!("apps.RollingUpdateStatefulSetStrategy{{Partition:{}, MaxUnavailable:{max_unavailable}}}", rolling.partition.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{messages, table, update_table, with};
    use super::super::Op;

    /// `obj` as Skiff stores it: after its defaulting.
    fn defaulted(plural: &str, mut obj: Value) -> Value {
        crate::defaults::apply(crate::resources::find("apps", "v1", plural).expect("served"), &mut obj);
        obj
    }

    /// What `kubectl create deployment web --image=nginx --replicas=3` sends.
    fn deployment() -> Value {
        defaulted(
            "deployments",
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web"}},
                    "strategy": {},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"image": "nginx", "name": "nginx", "resources": {}}]}}
                },
                "status": {}
            }),
        )
    }

    fn replica_set() -> Value {
        defaulted(
            "replicasets",
            json!({
                "metadata": {"name": "web-5d9c7b"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d9c7b"}},
                    "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "5d9c7b"}}, "spec": {"containers": [{"image": "nginx:1.27", "name": "nginx"}]}}
                }
            }),
        )
    }

    fn stateful_set() -> Value {
        defaulted(
            "statefulsets",
            json!({
                "metadata": {"name": "db"},
                "spec": {
                    "serviceName": "db",
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "db"}},
                    "template": {
                        "metadata": {"labels": {"app": "db"}},
                        "spec": {"containers": [{"name": "postgres", "image": "postgres:16", "ports": [{"containerPort": 5432, "name": "pg"}], "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]}]}
                    },
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
                }
            }),
        )
    }

    fn daemon_set() -> Value {
        defaulted(
            "daemonsets",
            json!({
                "metadata": {"name": "agent", "namespace": "kube-system"},
                "spec": {
                    "selector": {"matchLabels": {"app": "agent"}},
                    "template": {
                        "metadata": {"labels": {"app": "agent"}},
                        "spec": {"containers": [{"name": "agent", "image": "fluentd:v1"}], "tolerations": [{"operator": "Exists"}]}
                    }
                }
            }),
        )
    }

    fn controller_revision() -> Value {
        json!({"metadata": {"name": "agent-6f8b9"}, "data": {"spec": {"template": {"$patch": "replace"}}}, "revision": 1})
    }

    #[test]
    fn deployment_valid() {
        let d = deployment();
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%", "defaulted as Skiff stores it");
        table("apps", "Deployment", &[
            ("kubectl create deployment", d.clone(), ""),
            ("recreate", with(&d, json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}})), ""),
            ("zero replicas", with(&d, json!({"spec": {"replicas": 0}})), ""),
            ("surge above 100%", with(&d, json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "200%", "maxUnavailable": 0}}}})), ""),
            ("ints", with(&d, json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}})), ""),
            ("unavailable 100%", with(&d, json!({"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": "100%"}}}})), ""),
            ("expressions", with(&d, json!({"spec": {"selector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}, "template": {"metadata": {"labels": {"tier": "a"}}}}})), ""),
            ("zero revision history", with(&d, json!({"spec": {"revisionHistoryLimit": 0, "minReadySeconds": 10, "progressDeadlineSeconds": 11, "paused": true}})), ""),
            ("an empty strategy type is the default", with(&d, json!({"spec": {"strategy": {"type": "", "rollingUpdate": null}}})), ""),
        ]);
    }

    #[test]
    fn deployment_invalid() {
        let d = deployment();
        let intstr = |t: u8, i: i32, s: &str| format!("intstr.IntOrString{{Type:{t}, IntVal:{i}, StrVal:{s:?}}}");
        let cases: Vec<(&str, Value, String)> = vec![
            ("negative replicas", with(&d, json!({"spec": {"replicas": -3}})), "spec.replicas: Invalid value: -3: must be greater than or equal to 0".into()),
            ("empty selector", with(&d, json!({"spec": {"selector": {"matchLabels": null}}})), "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment".into()),
            ("selector not matching", with(&d, json!({"spec": {"template": {"metadata": {"labels": {"app": "x"}}}}})), "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`".into()),
            ("expression not matching", with(&d, json!({"spec": {"selector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}}})), "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`".into()),
            ("restartPolicy", with(&d, json!({"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}})), "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"".into()),
            ("active deadline", with(&d, json!({"spec": {"template": {"spec": {"activeDeadlineSeconds": 30}}}})), "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported".into()),
            ("strategy type", with(&d, json!({"spec": {"strategy": {"type": "BlueGreen", "rollingUpdate": null}}})), "spec.strategy: Unsupported value: apps.DeploymentStrategy{Type:\"BlueGreen\", RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: \"Recreate\", \"RollingUpdate\"".into()),
            ("recreate with rollingUpdate", with(&d, json!({"spec": {"strategy": {"type": "Recreate"}}})), "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'".into()),
            ("negative maxUnavailable", with(&d, json!({"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": -1}}}})), "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: -1: must be greater than or equal to 0".into()),
            ("negative maxSurge", with(&d, json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": -2}}}})), "spec.strategy.rollingUpdate.maxSurge: Invalid value: -2: must be greater than or equal to 0".into()),
            ("maxUnavailable not a percent", with(&d, json!({"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": "abc%"}}}})), format!("spec.strategy.rollingUpdate.maxUnavailable: Invalid value: {}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')", intstr(1, 0, "abc%"))),
            ("maxSurge a bare number string", with(&d, json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "5"}}}})), format!("spec.strategy.rollingUpdate.maxSurge: Invalid value: {}: a valid percent", intstr(1, 0, "5"))),
            ("maxUnavailable above 100%", with(&d, json!({"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": "110%"}}}})), format!("spec.strategy.rollingUpdate.maxUnavailable: Invalid value: {}: must not be greater than 100%", intstr(1, 0, "110%"))),
            ("both zero", with(&d, json!({"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}})), format!("spec.strategy.rollingUpdate.maxUnavailable: Invalid value: {}: may not be 0 when `maxSurge` is 0", intstr(0, 0, ""))),
            ("both zero percent", with(&d, json!({"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": "0%", "maxSurge": "0%"}}}})), format!("spec.strategy.rollingUpdate.maxUnavailable: Invalid value: {}: may not be 0 when `maxSurge` is 0", intstr(1, 0, "0%"))),
            ("negative minReadySeconds", with(&d, json!({"spec": {"minReadySeconds": -1}})), "spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0".into()),
            ("negative revisionHistoryLimit", with(&d, json!({"spec": {"revisionHistoryLimit": -1}})), "spec.revisionHistoryLimit: Invalid value: -1: must be greater than or equal to 0".into()),
            ("zero progress deadline", with(&d, json!({"spec": {"progressDeadlineSeconds": 0}})), "spec.progressDeadlineSeconds: Invalid value: 0: must be greater than minReadySeconds".into()),
            ("progress deadline below minReadySeconds", with(&d, json!({"spec": {"minReadySeconds": 700}})), "spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds".into()),
        ];
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        table("apps", "Deployment", &cases);
    }

    #[test]
    fn deployment_selector_errors_come_in_pairs() {
        let d = deployment();
        let missing = with(&d, json!({"spec": {"selector": null}}));
        assert_eq!(messages("apps", "Deployment", Op::Create(&missing)), vec![
            "spec.selector: Required value".to_string(),
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`".to_string(),
        ]);
        let bad_key = with(&d, json!({"spec": {"selector": {"matchLabels": {"bad key": "x"}}}}));
        let got = messages("apps", "Deployment", Op::Create(&bad_key));
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].starts_with("spec.selector.matchLabels: Invalid value: \"bad key\": name part must consist of"), "{got:#?}");
        assert!(got[1].ends_with(": invalid label selector") && got[1].starts_with("spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"bad key\":\"x\"}"), "{got:#?}");
        let no_values = with(&d, json!({"spec": {"selector": {"matchExpressions": [{"key": "tier", "operator": "In"}]}}}));
        let got = messages("apps", "Deployment", Op::Create(&no_values));
        assert_eq!(got[0], "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'");
        assert_eq!(got[1], "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\"}, MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"tier\", Operator:\"In\", Values:[]string(nil)}}}: invalid label selector");
    }

    #[test]
    fn deployment_update() {
        let old = deployment();
        update_table("apps", "Deployment", &old, &[
            ("scale", with(&old, json!({"spec": {"replicas": 10}})), ""),
            ("new image", with(&old, json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "resources": {}}]}}}})), ""),
            ("new strategy", with(&old, json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}})), ""),
            ("new template label", with(&old, json!({"spec": {"template": {"metadata": {"labels": {"version": "2"}}}}})), ""),
            ("selector changed", with(&old, json!({"spec": {"selector": {"matchLabels": {"tier": "x"}}, "template": {"metadata": {"labels": {"tier": "x"}}}}})),
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"tier\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"),
            ("still validated", with(&old, json!({"spec": {"replicas": -1}})), "spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
        ]);
    }

    fn status(group_kind: &str, old: &Value, status: Value) -> Vec<String> {
        let new = with(old, json!({"status": status}));
        messages("apps", group_kind, Op::Status { new: &new, old })
    }

    #[test]
    fn deployment_status() {
        let old = with(&deployment(), json!({"status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3, "collisionCount": 2}}));
        assert_eq!(status("Deployment", &old, json!({"replicas": 4, "readyReplicas": 2, "availableReplicas": 2, "unavailableReplicas": 2})), Vec::<String>::new());
        assert_eq!(status("Deployment", &old, json!({"observedGeneration": -1})), vec!["status.observedGeneration: Invalid value: -1: must be greater than or equal to 0"]);
        assert_eq!(status("Deployment", &old, json!({"unavailableReplicas": -1})), vec!["status.unavailableReplicas: Invalid value: -1: must be greater than or equal to 0"]);
        assert_eq!(status("Deployment", &old, json!({"updatedReplicas": 4})), vec!["status.updatedReplicas: Invalid value: 4: cannot be greater than status.replicas"]);
        assert_eq!(status("Deployment", &old, json!({"readyReplicas": 2})), vec!["status.availableReplicas: Invalid value: 3: cannot be greater than readyReplicas"]);
        assert_eq!(status("Deployment", &old, json!({"collisionCount": 1})), vec!["status.collisionCount: Invalid value: 1: cannot be decremented"]);
        assert_eq!(status("Deployment", &old, json!({"collisionCount": null})), vec!["status.collisionCount: Invalid value: 0: cannot be decremented"]);
        assert_eq!(status("Deployment", &old, json!({"collisionCount": -1})), vec![
            "status.collisionCount: Invalid value: -1: must be greater than or equal to 0",
            "status.collisionCount: Invalid value: -1: cannot be decremented",
        ]);
    }

    #[test]
    fn replica_set_valid() {
        table("apps", "ReplicaSet", &[("as a deployment makes it", replica_set(), ""), ("scaled to zero", with(&replica_set(), json!({"spec": {"replicas": 0}})), "")]);
    }

    #[test]
    fn replica_set_invalid() {
        let rs = replica_set();
        table("apps", "ReplicaSet", &[
            ("negative replicas", with(&rs, json!({"spec": {"replicas": -1}})), "spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
            ("negative minReadySeconds", with(&rs, json!({"spec": {"minReadySeconds": -5}})), "spec.minReadySeconds: Invalid value: -5: must be greater than or equal to 0"),
            ("empty selector", with(&with(&rs, json!({"spec": {"selector": {"matchLabels": null}}})), json!({"spec": {"selector": {"matchLabels": {}}}})), "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"),
            ("not matching", with(&rs, json!({"spec": {"template": {"metadata": {"labels": {"pod-template-hash": "other"}}}}})), "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\", \"pod-template-hash\":\"other\"}: `selector` does not match template `labels`"),
            ("restartPolicy", with(&rs, json!({"spec": {"template": {"spec": {"restartPolicy": "Never"}}}})), "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""),
            ("active deadline", with(&rs, json!({"spec": {"template": {"spec": {"activeDeadlineSeconds": 1}}}})), "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported"),
        ]);
        let missing = with(&rs, json!({"spec": {"selector": null}}));
        assert_eq!(messages("apps", "ReplicaSet", Op::Create(&missing))[0], "spec.selector: Required value");
    }

    #[test]
    fn replica_set_update() {
        let old = replica_set();
        update_table("apps", "ReplicaSet", &old, &[
            ("scale", with(&old, json!({"spec": {"replicas": 5}})), ""),
            ("selector changed", with(&old, json!({"spec": {"selector": {"matchLabels": {"pod-template-hash": "x"}}, "template": {"metadata": {"labels": {"pod-template-hash": "x"}}}}})), "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"pod-template-hash\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"),
            ("a missing map is an empty one", with(&old, json!({"spec": {"selector": {"matchExpressions": []}}})), ""),
        ]);
    }

    #[test]
    fn replica_set_status() {
        let old = with(&replica_set(), json!({"status": {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 2, "availableReplicas": 2, "observedGeneration": 1}}));
        assert_eq!(status("ReplicaSet", &old, json!({"replicas": 3})), Vec::<String>::new());
        assert_eq!(status("ReplicaSet", &old, json!({"replicas": -1, "fullyLabeledReplicas": 0, "readyReplicas": 0, "availableReplicas": 0})), vec![
            "status.replicas: Invalid value: -1: must be greater than or equal to 0",
            "status.fullyLabeledReplicas: Invalid value: 0: cannot be greater than status.replicas",
            "status.readyReplicas: Invalid value: 0: cannot be greater than status.replicas",
            "status.availableReplicas: Invalid value: 0: cannot be greater than status.replicas",
        ]);
        assert_eq!(status("ReplicaSet", &old, json!({"availableReplicas": -1})), vec!["status.availableReplicas: Invalid value: -1: must be greater than or equal to 0"]);
        assert_eq!(status("ReplicaSet", &old, json!({"fullyLabeledReplicas": 3})), vec!["status.fullyLabeledReplicas: Invalid value: 3: cannot be greater than status.replicas"]);
        assert_eq!(status("ReplicaSet", &old, json!({"readyReplicas": 1})), vec!["status.availableReplicas: Invalid value: 2: cannot be greater than readyReplicas"]);
        assert_eq!(status("ReplicaSet", &old, json!({"observedGeneration": -2})), vec!["status.observedGeneration: Invalid value: -2: must be greater than or equal to 0"]);
    }

    #[test]
    fn stateful_set_valid() {
        let ss = stateful_set();
        assert_eq!(ss["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 0, "defaulted as Skiff stores it");
        table("apps", "StatefulSet", &[
            ("with volumeClaimTemplates", ss.clone(), ""),
            ("parallel, on delete", with(&ss, json!({"spec": {"podManagementPolicy": "Parallel", "updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}})), ""),
            ("partition and maxUnavailable", with(&ss, json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2, "maxUnavailable": "50%"}}}})), ""),
            ("retention and ordinals", with(&ss, json!({"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"}, "ordinals": {"start": 5}, "minReadySeconds": 3}})), ""),
            ("no serviceName", with(&ss, json!({"spec": {"serviceName": null}})), ""),
            // Upstream does not validate a StatefulSet's pod spec.
            ("pod spec unchecked", with(&ss, json!({"spec": {"template": {"spec": {"containers": [{"name": "Bad Name"}]}}}})), ""),
        ]);
    }

    #[test]
    fn stateful_set_invalid() {
        let ss = stateful_set();
        table("apps", "StatefulSet", &[
            ("podManagementPolicy", with(&ss, json!({"spec": {"podManagementPolicy": "Random"}})), "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'"),
            ("updateStrategy type", with(&ss, json!({"spec": {"updateStrategy": {"type": "Canary", "rollingUpdate": null}}})), "spec.updateStrategy: Invalid value: apps.StatefulSetUpdateStrategy{Type:\"Canary\", RollingUpdate:(*apps.RollingUpdateStatefulSetStrategy)(nil)}: must be 'RollingUpdate' or 'OnDelete'"),
            ("OnDelete with rollingUpdate", with(&ss, json!({"spec": {"updateStrategy": {"type": "OnDelete"}}})), "spec.updateStrategy.rollingUpdate: Invalid value: apps.RollingUpdateStatefulSetStrategy{Partition:0, MaxUnavailable:(*intstr.IntOrString)(nil)}: only allowed for updateStrategy 'RollingUpdate'"),
            ("negative partition", with(&ss, json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": -1}}}})), "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: must be greater than or equal to 0"),
            ("zero maxUnavailable", with(&ss, json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0}}}})), "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: cannot be 0"),
            ("maxUnavailable above 100%", with(&ss, json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": "120%"}}}})), "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"120%\"}: must not be greater than 100%"),
            ("negative maxUnavailable", with(&ss, json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": -1}}}})), "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: -1: must be greater than or equal to 0"),
            ("whenDeleted", with(&ss, json!({"spec": {"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Keep"}}})), "spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Unsupported value: \"Keep\": supported values: \"Retain\", \"Delete\""),
            ("whenScaled", with(&ss, json!({"spec": {"persistentVolumeClaimRetentionPolicy": {"whenScaled": "Drop"}}})), "spec.persistentVolumeClaimRetentionPolicy.whenScaled: Unsupported value: \"Drop\": supported values: \"Retain\", \"Delete\""),
            ("negative replicas", with(&ss, json!({"spec": {"replicas": -1}})), "spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
            ("negative minReadySeconds", with(&ss, json!({"spec": {"minReadySeconds": -1}})), "spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0"),
            ("negative ordinals start", with(&ss, json!({"spec": {"ordinals": {"start": -1}}})), "spec.ordinals.start: Invalid value: -1: must be greater than or equal to 0"),
            ("empty selector", with(&ss, json!({"spec": {"selector": {"matchLabels": null}}})), "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for statefulset"),
            ("not matching", with(&ss, json!({"spec": {"template": {"metadata": {"labels": {"app": "cache"}}}}})), "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"cache\"}: `selector` does not match template `labels`"),
            ("template label", with(&ss, json!({"spec": {"template": {"metadata": {"labels": {"-bad": "x"}}}}})), "spec.template.labels: Invalid value: \"-bad\": name part must consist of"),
            ("template annotation", with(&ss, json!({"spec": {"template": {"metadata": {"annotations": {"bad key": "x"}}}}})), "spec.template.annotations: Invalid value: \"bad key\": name part must consist of"),
            ("restartPolicy", with(&ss, json!({"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}})), "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\""),
            ("active deadline", with(&ss, json!({"spec": {"template": {"spec": {"activeDeadlineSeconds": 5}}}})), "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in StatefulSet is not Supported"),
        ]);
        let bad_selector = with(&ss, json!({"spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Near", "values": ["db"]}]}}}));
        assert_eq!(messages("apps", "StatefulSet", Op::Create(&bad_selector)), vec![
            "spec.selector.matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator".to_string(),
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"db\"}, MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"app\", Operator:\"Near\", Values:[]string{\"db\"}}}}".to_string(),
        ]);
    }

    #[test]
    fn stateful_set_update() {
        let old = stateful_set();
        const FORBIDDEN: &str = "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";
        update_table("apps", "StatefulSet", &old, &[
            ("scale", with(&old, json!({"spec": {"replicas": 5}})), ""),
            ("template annotations", with(&old, json!({"spec": {"template": {"metadata": {"annotations": {"restartedAt": "now"}}}}})), ""),
            ("partition", with(&old, json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}}}})), ""),
            ("minReadySeconds and ordinals", with(&old, json!({"spec": {"minReadySeconds": 5, "ordinals": {"start": 1}}})), ""),
            ("retention", with(&old, json!({"spec": {"persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete"}}})), ""),
            ("serviceName", with(&old, json!({"spec": {"serviceName": "other"}})), FORBIDDEN),
            ("podManagementPolicy", with(&old, json!({"spec": {"podManagementPolicy": "Parallel"}})), FORBIDDEN),
            ("revisionHistoryLimit", with(&old, json!({"spec": {"revisionHistoryLimit": 3}})), FORBIDDEN),
            ("volumeClaimTemplates", with(&old, json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}}]}})), FORBIDDEN),
            ("selector", with(&old, json!({"spec": {"selector": {"matchLabels": {"tier": "x"}}, "template": {"metadata": {"labels": {"tier": "x"}}}}})), FORBIDDEN),
        ]);
    }

    #[test]
    fn stateful_set_status() {
        let old = with(&stateful_set(), json!({"status": {"replicas": 3, "readyReplicas": 3, "currentReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "collisionCount": 1, "observedGeneration": 1}}));
        assert_eq!(status("StatefulSet", &old, json!({"replicas": 4, "readyReplicas": 4})), Vec::<String>::new());
        assert_eq!(status("StatefulSet", &old, json!({"readyReplicas": 4, "availableReplicas": 4})), vec![
            "status.readyReplicas: Invalid value: 4: cannot be greater than status.replicas",
            "status.availableReplicas: Invalid value: 4: cannot be greater than status.replicas",
        ]);
        assert_eq!(status("StatefulSet", &old, json!({"readyReplicas": 2})), vec!["status.availableReplicas: Invalid value: 3: cannot be greater than status.readyReplicas"]);
        assert_eq!(status("StatefulSet", &old, json!({"currentReplicas": -1})), vec!["status.currentReplicas: Invalid value: -1: must be greater than or equal to 0"]);
        assert_eq!(status("StatefulSet", &old, json!({"observedGeneration": -1})), vec!["status.observedGeneration: Invalid value: -1: must be greater than or equal to 0"]);
        assert_eq!(status("StatefulSet", &old, json!({"collisionCount": 0})), vec!["status.collisionCount: Invalid value: 0: cannot be decremented"]);
    }

    #[test]
    fn daemon_set_valid() {
        let ds = daemon_set();
        assert_eq!(ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"], 1, "defaulted as Skiff stores it");
        table("apps", "DaemonSet", &[
            ("agent", ds.clone(), ""),
            ("on delete", with(&ds, json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}})), ""),
            ("surge instead", with(&ds, json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": "10%"}}}})), ""),
            ("percent unavailable", with(&ds, json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": "100%"}}, "minReadySeconds": 10}})), ""),
        ]);
    }

    #[test]
    fn daemon_set_invalid() {
        let ds = daemon_set();
        table("apps", "DaemonSet", &[
            ("empty selector", with(&ds, json!({"spec": {"selector": {"matchLabels": null}}})), "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for daemonset"),
            ("missing selector", with(&ds, json!({"spec": {"selector": null}})), "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"agent\"}: `selector` does not match template `labels`"),
            ("not matching", with(&ds, json!({"spec": {"template": {"metadata": {"labels": null}}}})), "spec.template.metadata.labels: Invalid value: map[string]string(nil): `selector` does not match template `labels`"),
            ("restartPolicy", with(&ds, json!({"spec": {"template": {"spec": {"restartPolicy": "Never"}}}})), "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""),
            ("active deadline", with(&ds, json!({"spec": {"template": {"spec": {"activeDeadlineSeconds": 5}}}})), "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in DaemonSet is not Supported"),
            ("negative minReadySeconds", with(&ds, json!({"spec": {"minReadySeconds": -1}})), "spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0"),
            ("strategy type", with(&ds, json!({"spec": {"updateStrategy": {"type": "Rolling", "rollingUpdate": null}}})), "spec.updateStrategy: Unsupported value: apps.DaemonSetUpdateStrategy{Type:\"Rolling\", RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: supported values: \"RollingUpdate\", \"OnDelete\""),
            ("both zero", with(&ds, json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0}}}})), "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"),
            ("both set", with(&ds, json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxSurge": 1}}}})), "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:0, IntVal:1, StrVal:\"\"}: may not be set when maxUnavailable is non-zero"),
            ("above 100%", with(&ds, json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": "150%"}}}})), "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%"),
            ("negative maxUnavailable", with(&ds, json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": -1}}}})), "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: -1: must be greater than or equal to 0"),
            ("not a percent", with(&ds, json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": "5"}}}})), "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"5\"}: a valid percent string"),
            ("negative revisionHistoryLimit", with(&ds, json!({"spec": {"revisionHistoryLimit": -1}})), "spec.revisionHistoryLimit: Invalid value: -1: must be greater than or equal to 0"),
        ]);
    }

    #[test]
    fn daemon_set_update() {
        let old = daemon_set();
        update_table("apps", "DaemonSet", &old, &[
            ("template", with(&old, json!({"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}})), ""),
            ("strategy", with(&old, json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}})), ""),
            ("selector changed", with(&old, json!({"spec": {"selector": {"matchLabels": {"app": "agent2"}}, "template": {"metadata": {"labels": {"app": "agent2"}}}}})), "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"agent2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"),
        ]);
    }

    #[test]
    fn daemon_set_status() {
        let old = with(&daemon_set(), json!({"status": {"currentNumberScheduled": 2, "numberMisscheduled": 0, "desiredNumberScheduled": 2, "numberReady": 2, "collisionCount": 3}}));
        assert_eq!(status("DaemonSet", &old, json!({"numberReady": 1, "numberAvailable": 1, "numberUnavailable": 1, "updatedNumberScheduled": 2, "observedGeneration": 2})), Vec::<String>::new());
        assert_eq!(status("DaemonSet", &old, json!({"numberReady": -1})), vec!["status.numberReady: Invalid value: -1: must be greater than or equal to 0"]);
        assert_eq!(status("DaemonSet", &old, json!({"numberMisscheduled": -1})), vec!["status.numberMisscheduled: Invalid value: -1: must be greater than or equal to 0"]);
        assert_eq!(status("DaemonSet", &old, json!({"observedGeneration": -1})), vec!["status.observedGeneration: Invalid value: -1: must be greater than or equal to 0"]);
        assert_eq!(status("DaemonSet", &old, json!({"numberUnavailable": -3})), vec!["status.numberUnavailable: Invalid value: -3: must be greater than or equal to 0"]);
        assert_eq!(status("DaemonSet", &old, json!({"collisionCount": 2})), vec!["status.collisionCount: Invalid value: 2: cannot be decremented"]);
    }

    #[test]
    fn controller_revision_valid() {
        table("apps", "ControllerRevision", &[("a DaemonSet's", controller_revision(), ""), ("revision zero", with(&controller_revision(), json!({"revision": 0})), "")]);
    }

    #[test]
    fn controller_revision_invalid() {
        let r = controller_revision();
        table("apps", "ControllerRevision", &[
            ("no data", with(&r, json!({"data": null})), "data: Required value: data is mandatory"),
            ("negative revision", with(&r, json!({"revision": -1})), "revision: Invalid value: -1: must be greater than or equal to 0"),
        ]);
        update_table("apps", "ControllerRevision", &r, &[
            ("new revision number", with(&r, json!({"revision": 2})), ""),
            ("new data", with(&r, json!({"data": {"spec": {"template": null}}})), "data: Invalid value: {\"spec\":{}}: field is immutable"),
        ]);
    }
}

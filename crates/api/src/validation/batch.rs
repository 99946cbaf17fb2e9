//! The batch group: Jobs and CronJobs, as upstream's
//! `pkg/apis/batch/validation` (Kubernetes 1.32) checks them with the
//! options its registry strategies pass (elastic indexed Jobs, prefixed
//! pod labels, the status rules of JobManagedBy).
//!
//! CronJob schedules are parsed as robfig/cron v3's `ParseStandard` does
//! (upstream's parser), for its error messages.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::batch::v1::{
    CronJob, CronJobSpec, Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule, SuccessPolicyRule,
};
use k8s_openapi::api::core::v1::Affinity;

use super::addresses::domain_prefixed_path;
use super::go::{go_int32s, go_quoted_list, go_selector, go_string_map, go_time, go_value, semantic_of};
use super::pod::{template_labels, NO_MATCH};
use super::{dns1123_label, immutable, label_selector, name_by, non_negative, qualified_name, selector_matches, semantic_immutable, Bad, Errors, FieldError, Op, Path, IMMUTABLE};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    // An update is validated with options taken from the old object, so
    // the update rule is the whole of it.
    let update = matches!(op, Op::Update { .. });
    Some(match kind {
        "Job" if update => op.run(|_: &Job| Vec::new(), job_update, job_status),
        "Job" => op.run(job, job_update, job_status),
        "CronJob" if update => op.run(|_: &CronJob| Vec::new(), cron_job_update, super::nothing),
        "CronJob" => op.run(cron_job, cron_job_update, super::nothing),
        _ => return None,
    })
}

const LEGACY_UID_LABEL: &str = "controller-uid";
const LEGACY_NAME_LABEL: &str = "job-name";
const UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
const NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// `Invalid value: detail`: upstream's `field.OmitValueType`, an error
/// that shows no value.
fn invalid_omitted(path: &Path, detail: &str) -> FieldError {
    FieldError { field: path.as_str().to_string(), reason: "FieldValueInvalid", message: format!("Invalid value: {detail}") }
}

// ---- Jobs -------------------------------------------------------------------

fn job(j: &Job) -> Errors {
    validate_job(j, true)
}

/// Upstream's `ValidateJob`; `prefixed_labels` asks for the
/// `batch.kubernetes.io/` pod labels too (always on create; on update only
/// if the old Job had them).
fn validate_job(j: &Job, prefixed_labels: bool) -> Errors {
    let default = JobSpec::default();
    let spec = j.spec.as_ref().unwrap_or(&default);
    let mut errs = generated_selector(j, spec, prefixed_labels);
    errs.extend(job_spec(spec, &Path::new("spec")));
    if spec.completion_mode.as_deref() == Some("Indexed") {
        if let Some(completions) = spec.completions.filter(|c| *c > 0) {
            // The last pod's hostname: the Job's name and its index.
            let name = j.metadata.name.as_deref().unwrap_or_default();
            let hostname = format!("{name}-{}", completions - 1);
            if dns1123_label(&hostname).is_err() {
                errs.push(Path::new("metadata").child("name").invalid(name, &format!("will not able to create pod with invalid DNS label: {hostname}")));
            }
        }
    }
    errs
}

/// Upstream's `validateGeneratedSelector`: unless the selector is manual,
/// the template carries the labels generated from the Job's uid and name,
/// and the selector selects them.
fn generated_selector(j: &Job, spec: &JobSpec, prefixed_labels: bool) -> Errors {
    if spec.manual_selector == Some(true) {
        return vec![];
    }
    let Some(selector) = &spec.selector else { return vec![] };
    let mut errs = Vec::new();
    let uid = j.metadata.uid.as_deref().unwrap_or_default();
    let name = j.metadata.name.as_deref().unwrap_or_default();
    if uid.is_empty() {
        errs.push(Path::new("metadata").child("uid").required(""));
    }
    let mut expected = vec![(LEGACY_UID_LABEL, uid), (LEGACY_NAME_LABEL, name)];
    if prefixed_labels {
        expected.extend([(UID_LABEL, uid), (NAME_LABEL, name)]);
    }
    let labels = template_labels(&spec.template);
    let at = Path::new("spec").child("template").child("metadata").child("labels");
    for (key, value) in &expected {
        let must = format!("must be '{value}'");
        match labels.and_then(|l| l.get(*key)) {
            None => errs.push(at.key(key).required(&must)),
            Some(v) if v != value => errs.push(at.key(key).invalid(Bad::raw(go_string_map(labels)), &must)),
            Some(_) => {}
        }
    }
    let expected: BTreeMap<String, String> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if parses(selector) && !selector_matches(selector, Some(&expected)) {
        errs.push(Path::new("spec").child("selector").invalid(Bad::raw(go_selector(selector)), "`selector` not auto-generated"));
    }
    errs
}

fn parses(selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> bool {
    label_selector(selector, &Path::new("")).is_empty()
}

/// Upstream's `ValidateJobSpec`: the spec and a selector that selects
/// the template.
fn job_spec(spec: &JobSpec, p: &Path) -> Errors {
    let mut errs = job_spec_fields(spec, p);
    let labels = template_labels(&spec.template);
    let no_match = || p.child("template").child("metadata").child("labels").invalid(Bad::raw(go_string_map(labels)), NO_MATCH);
    match &spec.selector {
        None => {
            errs.push(p.child("selector").required(""));
            // A nil selector selects nothing.
            errs.push(no_match());
        }
        Some(selector) => {
            let selector_errs = label_selector(selector, &p.child("selector"));
            let ok = selector_errs.is_empty();
            errs.extend(selector_errs);
            if ok && !selector_matches(selector, labels) {
                errs.push(no_match());
            }
        }
    }
    errs
}

const MAX_INDEXED_PARALLELISM: i32 = 100_000;
const MAX_FAILED_INDEXES: i32 = 100_000;
const COMPLETIONS_SOFT_LIMIT: i32 = 100_000;
const PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS: i32 = 10_000;
const MAX_FAILED_INDEXES_FOR_HIGH_COMPLETIONS: i32 = 10_000;

/// Upstream's `validateJobSpec`, shared by Jobs and CronJobs' templates.
fn job_spec_fields(spec: &JobSpec, p: &Path) -> Errors {
    let mut errs = Vec::new();
    for (field, value) in [
        ("parallelism", spec.parallelism.map(i64::from)),
        ("completions", spec.completions.map(i64::from)),
        ("activeDeadlineSeconds", spec.active_deadline_seconds),
        ("backoffLimit", spec.backoff_limit.map(i64::from)),
        ("ttlSecondsAfterFinished", spec.ttl_seconds_after_finished.map(i64::from)),
        ("backoffLimitPerIndex", spec.backoff_limit_per_index.map(i64::from)),
    ] {
        if let Some(value) = value {
            errs.extend(non_negative(value, &p.child(field)));
        }
    }
    if let Some(max_failed) = spec.max_failed_indexes {
        errs.extend(non_negative(max_failed.into(), &p.child("maxFailedIndexes")));
        if spec.backoff_limit_per_index.is_none() {
            errs.push(p.child("backoffLimitPerIndex").required("when maxFailedIndexes is specified"));
        }
    }
    if let Some(managed_by) = &spec.managed_by {
        let at = p.child("managedBy");
        errs.extend(domain_prefixed_path(managed_by, &at));
        if managed_by.len() > 63 {
            errs.push(at.too_long(63));
        }
    }
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    if let Some(mode) = &spec.completion_mode {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(p.child("completionMode").not_supported(mode, &["NonIndexed", "Indexed"]));
        }
    }
    if indexed {
        if spec.completions.is_none() {
            errs.push(p.child("completions").required("when completion mode is Indexed"));
        }
        if let Some(parallelism) = spec.parallelism.filter(|n| *n > MAX_INDEXED_PARALLELISM) {
            errs.push(p.child("parallelism").invalid(parallelism, &format!("must be less than or equal to {MAX_INDEXED_PARALLELISM} when completion mode is Indexed")));
        }
        if let (Some(completions), Some(max_failed)) = (spec.completions, spec.max_failed_indexes) {
            if max_failed > completions {
                errs.push(p.child("maxFailedIndexes").invalid(max_failed, "must be less than or equal to completions"));
            }
        }
        if let Some(max_failed) = spec.max_failed_indexes.filter(|n| *n > MAX_FAILED_INDEXES) {
            errs.push(p.child("maxFailedIndexes").invalid(max_failed, &format!("must be less than or equal to {MAX_FAILED_INDEXES}")));
        }
        if spec.completions.is_some_and(|c| c > COMPLETIONS_SOFT_LIMIT) && spec.backoff_limit_per_index.is_some() {
            let why = |limit: i32| format!("must be less than or equal to {limit} when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index");
            if spec.max_failed_indexes.is_none() {
                errs.push(p.child("maxFailedIndexes").required(&format!("must be specified when completions is above {COMPLETIONS_SOFT_LIMIT}")));
            }
            if let Some(parallelism) = spec.parallelism.filter(|n| *n > PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS) {
                errs.push(p.child("parallelism").invalid(parallelism, &why(PARALLELISM_LIMIT_FOR_HIGH_COMPLETIONS)));
            }
            if let Some(max_failed) = spec.max_failed_indexes.filter(|n| *n > MAX_FAILED_INDEXES_FOR_HIGH_COMPLETIONS) {
                errs.push(p.child("maxFailedIndexes").invalid(max_failed, &why(MAX_FAILED_INDEXES_FOR_HIGH_COMPLETIONS)));
            }
        }
    }
    if spec.completion_mode.as_deref().is_none_or(|m| m == "NonIndexed") {
        if let Some(limit) = spec.backoff_limit_per_index {
            errs.push(p.child("backoffLimitPerIndex").invalid(limit, "requires indexed completion mode"));
        }
        if let Some(max_failed) = spec.max_failed_indexes {
            errs.push(p.child("maxFailedIndexes").invalid(max_failed, "requires indexed completion mode"));
        }
    }
    if let Some(policy) = &spec.pod_failure_policy {
        errs.extend(pod_failure_policy(spec, policy, &p.child("podFailurePolicy")));
    }
    if let Some(policy) = &spec.success_policy {
        let at = p.child("successPolicy");
        if !indexed {
            errs.push(at.invalid(Bad::raw(go_value(policy)), "requires indexed completion mode"));
        } else {
            let rules = at.child("rules");
            if policy.rules.is_empty() {
                errs.push(rules.required("at least one rules must be specified when the successPolicy is specified"));
            }
            if policy.rules.len() > 20 {
                errs.push(rules.too_many(policy.rules.len(), 20));
            }
            for (i, rule) in policy.rules.iter().enumerate() {
                errs.extend(success_policy_rule(spec, rule, &rules.index(i)));
            }
        }
    }
    if let Some(policy) = &spec.pod_replacement_policy {
        let at = p.child("podReplacementPolicy");
        if spec.pod_failure_policy.is_some() {
            // Upstream defaults the policy to Failed when a pod failure
            // policy is given; Skiff defaults it to TerminatingOrFailed
            // regardless, so that value is taken as the default here.
            if policy != "Failed" && policy != "TerminatingOrFailed" {
                errs.push(at.not_supported(policy, &["Failed"]));
            }
        } else if policy != "Failed" && policy != "TerminatingOrFailed" {
            errs.push(at.not_supported(policy, &["Failed", "TerminatingOrFailed"]));
        }
    }
    let t = p.child("template");
    errs.extend(super::pod::pod_template_spec(&spec.template, &t));
    let restart = spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or_default();
    let at = t.child("spec").child("restartPolicy");
    if restart == "Always" || restart.is_empty() {
        errs.push(at.required("valid values: \"OnFailure\", \"Never\""));
    } else if restart != "OnFailure" && restart != "Never" {
        errs.push(at.not_supported(restart, &["OnFailure", "Never"]));
    } else if spec.pod_failure_policy.is_some() && restart != "Never" {
        errs.push(at.invalid(restart, "only \"Never\" is supported when podFailurePolicy is specified"));
    }
    errs
}

const ACTIONS: [&str; 4] = ["Count", "FailIndex", "FailJob", "Ignore"];

fn pod_failure_policy(spec: &JobSpec, policy: &PodFailurePolicy, p: &Path) -> Errors {
    let mut errs = Vec::new();
    let rules = p.child("rules");
    if policy.rules.len() > 20 {
        errs.push(rules.too_many(policy.rules.len(), 20));
    }
    let pod = spec.template.spec.clone().unwrap_or_default();
    let containers: BTreeSet<&str> = pod.containers.iter().chain(pod.init_containers.iter().flatten()).map(|c| c.name.as_str()).collect();
    for (i, rule) in policy.rules.iter().enumerate() {
        errs.extend(pod_failure_policy_rule(spec, rule, &rules.index(i), &containers));
    }
    errs
}

fn pod_failure_policy_rule(spec: &JobSpec, rule: &PodFailurePolicyRule, p: &Path, containers: &BTreeSet<&str>) -> Errors {
    let mut errs = Vec::new();
    let action = p.child("action");
    match rule.action.as_str() {
        "" => errs.push(action.required(&format!("valid values: {}", go_quoted_list(&ACTIONS)))),
        "FailIndex" if spec.backoff_limit_per_index.is_none() => errs.push(action.invalid("FailIndex", "requires the backoffLimitPerIndex to be set")),
        a if !ACTIONS.contains(&a) => errs.push(action.not_supported(a, &ACTIONS)),
        _ => {}
    }
    if let Some(on_exit_codes) = &rule.on_exit_codes {
        errs.extend(on_exit_codes_rule(on_exit_codes, &p.child("onExitCodes"), containers));
    }
    let conditions = rule.on_pod_conditions.as_deref().unwrap_or_default();
    if !conditions.is_empty() {
        errs.extend(on_pod_conditions_rule(conditions, &p.child("onPodConditions")));
    }
    match (rule.on_exit_codes.is_some(), !conditions.is_empty()) {
        (true, true) => errs.push(invalid_omitted(p, "specifying both OnExitCodes and OnPodConditions is not supported")),
        (false, false) => errs.push(invalid_omitted(p, "specifying one of OnExitCodes and OnPodConditions is required")),
        _ => {}
    }
    errs
}

fn on_exit_codes_rule(rule: &PodFailurePolicyOnExitCodesRequirement, p: &Path, containers: &BTreeSet<&str>) -> Errors {
    let mut errs = Vec::new();
    let operator = p.child("operator");
    match rule.operator.as_str() {
        "" => errs.push(operator.required(&format!("valid values: {}", go_quoted_list(&["In", "NotIn"])))),
        "In" | "NotIn" => {}
        other => errs.push(operator.not_supported(other, &["In", "NotIn"])),
    }
    if let Some(name) = rule.container_name.as_deref().filter(|n| !containers.contains(n)) {
        errs.push(p.child("containerName").invalid(name, "must be one of the container or initContainer names in the pod template"));
    }
    let at = p.child("values");
    if rule.values.is_empty() {
        errs.push(at.invalid(Bad::raw(go_int32s(&rule.values)), "at least one value is required"));
    } else if rule.values.len() > 255 {
        errs.push(at.too_many(rule.values.len(), 255));
    }
    let mut seen = BTreeSet::new();
    for (j, value) in rule.values.iter().enumerate() {
        if rule.operator == "In" && *value == 0 {
            errs.push(at.index(j).invalid(*value, "must not be 0 for the In operator"));
        }
        if !seen.insert(*value) {
            errs.push(at.index(j).duplicate(*value));
        }
    }
    if rule.values.windows(2).any(|w| w[0] > w[1]) {
        errs.push(at.invalid(Bad::raw(go_int32s(&rule.values)), "must be ordered"));
    }
    errs
}

fn on_pod_conditions_rule(patterns: &[PodFailurePolicyOnPodConditionsPattern], p: &Path) -> Errors {
    let mut errs = Vec::new();
    if patterns.len() > 20 {
        errs.push(p.too_many(patterns.len(), 20));
    }
    const STATUSES: [&str; 3] = ["False", "True", "Unknown"];
    for (j, pattern) in patterns.iter().enumerate() {
        let at = p.index(j);
        errs.extend(name_by(qualified_name, &pattern.type_, &at.child("type")));
        match pattern.status.as_str() {
            "" => errs.push(at.child("status").required(&format!("valid values: {}", go_quoted_list(&STATUSES)))),
            s if !STATUSES.contains(&s) => errs.push(at.child("status").not_supported(s, &STATUSES)),
            _ => {}
        }
    }
    errs
}

fn success_policy_rule(spec: &JobSpec, rule: &SuccessPolicyRule, p: &Path) -> Errors {
    let mut errs = Vec::new();
    if rule.succeeded_count.is_none() && rule.succeeded_indexes.is_none() {
        errs.push(p.required("at least one of succeededCount or succeededIndexes must be specified"));
    }
    // Without completions (already an error) upstream would fail on a nil
    // pointer; the checks against them are left out.
    let Some(completions) = spec.completions else { return errs };
    let mut total = 0;
    if let Some(indexes) = &rule.succeeded_indexes {
        let at = p.child("succeededIndexes");
        if indexes.len() > 64 * 1024 {
            errs.push(at.too_long(64 * 1024));
        }
        match indexes_format(indexes, completions) {
            Ok(n) => total = n,
            Err(why) => errs.push(at.invalid(indexes, &format!("error parsing succeededIndexes: {why}"))),
        }
    }
    if let Some(count) = rule.succeeded_count {
        let at = p.child("succeededCount");
        errs.extend(non_negative(count.into(), &at));
        if count > completions {
            errs.push(at.invalid(count, &format!("must be less than or equal to {completions} (the number of specified completions)")));
        }
        if rule.succeeded_indexes.is_some() && i64::from(count) > total {
            errs.push(at.invalid(count, &format!("must be less than or equal to {total} (the number of indexes in the specified succeededIndexes field)")));
        }
    }
    errs
}

/// Upstream's `validateIndexesFormat`: increasing intervals `a` or `a-b`
/// of indexes below `completions`; their number of indexes.
fn indexes_format(indexes: &str, completions: i32) -> Result<i64, String> {
    if indexes.is_empty() {
        return Ok(0);
    }
    let mut last: Option<i64> = None;
    let mut total = 0;
    for interval in indexes.split(',') {
        let (x, y) = index_interval(interval, completions)?;
        if let Some(last) = last.filter(|l| *l >= x) {
            return Err(format!("non-increasing order, previous: {last}, current: {x}"));
        }
        total += y - x + 1;
        last = Some(y);
    }
    Ok(total)
}

fn index_interval(interval: &str, completions: i32) -> Result<(i64, i64), String> {
    let limits: Vec<&str> = interval.split('-').collect();
    if limits.len() > 2 {
        return Err(format!("the fragment {interval:?} violates the requirement that an index interval can have at most two parts separated by '-'"));
    }
    let parse = |s: &str| -> Result<i64, String> {
        let n: i64 = s.parse().map_err(|_| format!("cannot convert string to integer for index: {s:?}"))?;
        if n >= completions.into() {
            return Err(format!("too large index: {s:?}"));
        }
        Ok(n)
    };
    let x = parse(limits[0])?;
    if limits.len() == 1 {
        return Ok((x, x));
    }
    let y = parse(limits[1])?;
    if x >= y {
        return Err(format!("non-increasing order, previous: {x}, current: {y}"));
    }
    Ok((x, y))
}

/// Upstream's `ValidateJob` and `ValidateJobUpdate`, with the options its
/// strategy takes from the old Job.
fn job_update(new: &Job, old: &Job) -> Errors {
    let default = JobSpec::default();
    let (spec, old_spec) = (new.spec.as_ref().unwrap_or(&default), old.spec.as_ref().unwrap_or(&default));
    let old_labels = template_labels(&old_spec.template);
    let prefixed = old_labels.is_some_and(|l| l.contains_key(NAME_LABEL) && l.contains_key(UID_LABEL));
    // Where a suspended Job that never started runs may still change.
    let suspended_unstarted = old_spec.suspend == Some(true) && old.status.as_ref().is_none_or(|s| s.start_time.is_none());
    let mut errs = validate_job(new, prefixed);
    let p = Path::new("spec");
    errs.extend(completions_update(spec, old_spec, &p.child("completions")));
    if semantic_of(&spec.selector) != semantic_of(&old_spec.selector) {
        let shown = spec.selector.as_ref().map_or("null".to_string(), go_selector);
        errs.push(p.child("selector").invalid(Bad::raw(shown), IMMUTABLE));
    }
    errs.extend(template_update(spec, old_spec, suspended_unstarted, &p.child("template")));
    errs.extend(semantic_immutable(&spec.completion_mode, &old_spec.completion_mode, &p.child("completionMode")));
    errs.extend(semantic_immutable(&spec.pod_failure_policy, &old_spec.pod_failure_policy, &p.child("podFailurePolicy")));
    errs.extend(semantic_immutable(&spec.backoff_limit_per_index, &old_spec.backoff_limit_per_index, &p.child("backoffLimitPerIndex")));
    errs.extend(semantic_immutable(&spec.managed_by, &old_spec.managed_by, &p.child("managedBy")));
    errs.extend(semantic_immutable(&spec.success_policy, &old_spec.success_policy, &p.child("successPolicy")));
    errs
}

/// Completions are fixed, but an Indexed Job's may change along with its
/// parallelism (elastic Indexed Jobs, GA in 1.31).
fn completions_update(new: &JobSpec, old: &JobSpec, at: &Path) -> Errors {
    if new.completion_mode.as_deref() != Some("Indexed") {
        return immutable(&new.completions, &old.completions, at);
    }
    match new.completions {
        Some(completions) if new.completions != old.completions && new.parallelism != Some(completions) => {
            vec![at.invalid(completions, "can only be modified in tandem with spec.parallelism")]
        }
        _ => vec![],
    }
}

/// The template is fixed, but where a suspended Job never started will
/// run may change: node affinity, node selector, tolerations, scheduling
/// gates, labels and annotations.
fn template_update(new: &JobSpec, old: &JobSpec, scheduling_mutable: bool, at: &Path) -> Errors {
    let mut old_template = old.template.clone();
    if scheduling_mutable {
        let new_pod = new.template.spec.clone().unwrap_or_default();
        let pod = old_template.spec.get_or_insert_with(Default::default);
        pod.affinity = match (&new_pod.affinity, pod.affinity.take()) {
            (None, Some(mut affinity)) => {
                affinity.node_affinity = None;
                (affinity != Affinity::default()).then_some(affinity)
            }
            (Some(new_affinity), None) => Some(Affinity { node_affinity: new_affinity.node_affinity.clone(), ..Default::default() }),
            (Some(new_affinity), Some(mut affinity)) => {
                affinity.node_affinity = new_affinity.node_affinity.clone();
                Some(affinity)
            }
            (None, None) => None,
        };
        pod.node_selector = new_pod.node_selector;
        pod.tolerations = new_pod.tolerations;
        pod.scheduling_gates = new_pod.scheduling_gates;
        let new_meta = new.template.metadata.clone().unwrap_or_default();
        let meta = old_template.metadata.get_or_insert_with(Default::default);
        meta.labels = new_meta.labels;
        meta.annotations = new_meta.annotations;
    }
    semantic_immutable(&new.template, &old_template, at)
}

fn condition_true(j: &Job, kind: &str) -> bool {
    j.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten().any(|c| c.type_ == kind && c.status == "True")
}

fn finished(j: &Job) -> bool {
    condition_true(j, "Complete") || condition_true(j, "Failed")
}

/// Upstream's `ValidateJobStatusUpdate` with the options its strategy
/// sets in 1.32 (JobManagedBy on): most rules apply only when the fields
/// they read change, so a status can be fixed a field at a time.
///
/// Not checked: "startTime cannot be removed for unsuspended job", as
/// Skiff's job controller keeps a suspended Job's startTime and resets it
/// on resume (upstream's clears it on suspend).
fn job_status(new: &Job, old: &Job) -> Errors {
    let (s, o) = (new.status.clone().unwrap_or_default(), old.status.clone().unwrap_or_default());
    let default = JobSpec::default();
    let spec = new.spec.as_ref().unwrap_or(&default);
    let p = Path::new("status");
    let conditions = p.child("conditions");
    let changed = |kind: &str| condition_true(new, kind) != condition_true(old, kind);
    let (complete, failed, failure_target, success_met) = (condition_true(new, "Complete"), condition_true(new, "Failed"), condition_true(new, "FailureTarget"), condition_true(new, "SuccessCriteriaMet"));
    let is_finished = finished(new);
    let finished_changed = finished(old) != is_finished;
    let completed_indexes = s.completed_indexes.clone().unwrap_or_default();
    let completed_indexes_changed = completed_indexes != o.completed_indexes.clone().unwrap_or_default();
    let failed_indexes_changed = s.failed_indexes != o.failed_indexes;
    let active = s.active.unwrap_or(0);
    let active_changed = active != o.active.unwrap_or(0);
    let start_changed = s.start_time != o.start_time;
    let completion_changed = s.completion_time != o.completion_time;
    let uncounted = |status: &k8s_openapi::api::batch::v1::JobStatus| semantic_of(&status.uncounted_terminated_pods);
    let uncounted_changed = uncounted(&s) != uncounted(&o);
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");

    let mut errs = Vec::new();
    for (field, value) in [("active", s.active), ("succeeded", s.succeeded), ("failed", s.failed)] {
        errs.extend(non_negative(value.unwrap_or(0).into(), &p.child(field)));
    }
    for (field, value) in [("ready", s.ready), ("terminating", s.terminating)] {
        if let Some(value) = value {
            errs.extend(non_negative(value.into(), &p.child(field)));
        }
    }
    let pods = s.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (field, uids) in [("succeeded", &pods.succeeded), ("failed", &pods.failed)] {
        for (i, uid) in uids.iter().flatten().enumerate() {
            let at = p.child("uncountedTerminatedPods").child(field).index(i);
            if uid.is_empty() {
                errs.push(at.invalid(uid, "must not be empty"));
            } else if !seen.insert(uid.clone()) {
                errs.push(at.duplicate(uid));
            }
        }
    }
    if (changed("Complete") || changed("Failed")) && complete && failed {
        errs.push(invalid_omitted(&conditions, "cannot set Complete=True and Failed=true conditions"));
    }
    if (changed("Complete") || changed("FailureTarget")) && complete && failure_target {
        errs.push(invalid_omitted(&conditions, "cannot set Complete=True and FailureTarget=true conditions"));
    }
    let completion_flag = changed("Complete") || completion_changed;
    if let Some(t) = s.completion_time.as_ref().filter(|_| completion_flag && !complete) {
        errs.push(p.child("completionTime").invalid(Bad::raw(go_time(t)), "cannot set completionTime when there is no Complete=True condition"));
    }
    if completion_flag && complete && s.completion_time.is_none() {
        errs.push(p.child("completionTime").required("completionTime is required for Complete jobs"));
    }
    if let (Some(start), Some(end)) = (&s.start_time, &s.completion_time) {
        if (start_changed || completion_changed) && end.0 < start.0 {
            errs.push(p.child("completionTime").invalid(Bad::raw(go_time(end)), "completionTime cannot be set before startTime"));
        }
    }
    if (changed("Failed") || failed_indexes_changed) && failed && !failure_target {
        errs.push(invalid_omitted(&conditions, "cannot set Failed=True condition without the FailureTarget=true condition"));
    }
    if (changed("Complete") || changed("SuccessCriteriaMet")) && complete && !success_met {
        errs.push(invalid_omitted(&conditions, "cannot set Complete=True condition without the SuccessCriteriaMet=true condition"));
    }
    if (finished_changed || active_changed) && active > 0 && is_finished {
        errs.push(p.child("active").invalid(active, "active>0 is invalid for finished job"));
    }
    if (finished_changed || start_changed) && s.start_time.is_none() && is_finished {
        errs.push(p.child("startTime").required("startTime is required for finished job"));
    }
    if (finished_changed || uncounted_changed) && is_finished && pods.succeeded.iter().chain(pods.failed.iter()).any(|l| !l.is_empty()) {
        errs.push(p.child("uncountedTerminatedPods").invalid(Bad::raw(go_uncounted(&pods.succeeded, &pods.failed)), "uncountedTerminatedPods needs to be empty for finished job"));
    }
    if let Some(completions) = spec.completions {
        if completed_indexes_changed {
            if let Err(why) = indexes_format(&completed_indexes, completions) {
                errs.push(p.child("completedIndexes").invalid(&completed_indexes, &format!("error parsing completedIndexes: {why}")));
            }
        }
        if let Some(failed_indexes) = s.failed_indexes.as_ref().filter(|_| failed_indexes_changed && spec.backoff_limit_per_index.is_some()) {
            if let Err(why) = indexes_format(failed_indexes, completions) {
                errs.push(p.child("failedIndexes").invalid(failed_indexes, &format!("error parsing failedIndexes: {why}")));
            }
        }
    }
    if completed_indexes_changed && !completed_indexes.is_empty() && !indexed {
        errs.push(p.child("completedIndexes").invalid(&completed_indexes, "cannot set non-empty completedIndexes when non-indexed completion mode"));
    }
    if let Some(failed_indexes) = s.failed_indexes.as_ref().filter(|_| failed_indexes_changed && spec.backoff_limit_per_index.is_none()) {
        errs.push(p.child("failedIndexes").invalid(failed_indexes, "cannot set non-null failedIndexes when backoffLimitPerIndex is null"));
    }
    if let (Some(completions), Some(failed_indexes)) = (spec.completions, s.failed_indexes.as_ref()) {
        if failed_indexes_changed || completed_indexes_changed {
            if let Some(index) = overlap(&completed_indexes, failed_indexes, completions) {
                errs.push(p.child("failedIndexes").invalid(failed_indexes, &format!("failedIndexes and completedIndexes overlap at index: {index}")));
            }
        }
    }
    let terminating = s.terminating.unwrap_or(0);
    if (finished_changed || s.terminating != o.terminating) && terminating > 0 && is_finished {
        errs.push(p.child("terminating").invalid(terminating, "terminating>0 is invalid for finished job"));
    }
    if let Some(ready) = s.ready.filter(|r| (s.ready != o.ready || active_changed) && *r > active) {
        errs.push(p.child("ready").invalid(ready, "cannot set more ready pods than active"));
    }
    if success_met && failed {
        errs.push(invalid_omitted(&conditions, "cannot set SuccessCriteriaMet=True and Failed=true conditions"));
    }
    if success_met && failure_target {
        errs.push(invalid_omitted(&conditions, "cannot set SuccessCriteriaMet=True and FailureTarget=true conditions"));
    }
    if spec.success_policy.is_some() && !success_met && complete {
        errs.push(invalid_omitted(&conditions, "cannot set Complete=True for Job with SuccessPolicy unless SuccessCriteriaMet=True"));
    }

    // What may not go back.
    for kind in ["Failed", "Complete", "FailureTarget"] {
        if condition_true(old, kind) && !condition_true(new, kind) {
            errs.push(invalid_omitted(&conditions, &format!("cannot disable the terminal {kind}=True condition")));
        }
    }
    let (failed_count, succeeded) = (s.failed.unwrap_or(0), s.succeeded.unwrap_or(0));
    if failed_count < o.failed.unwrap_or(0) {
        errs.push(p.child("failed").invalid(failed_count, "cannot decrease the failed counter"));
    }
    // An elastic Indexed Job's succeeded pods may drop as it scales down.
    let may_scale_down = indexed && spec.completions == spec.parallelism;
    if !may_scale_down && succeeded < o.succeeded.unwrap_or(0) {
        errs.push(p.child("succeeded").invalid(succeeded, "cannot decrease the succeeded counter"));
    }
    if let (Some(t), Some(old_t)) = (&s.completion_time, &o.completion_time) {
        if t != old_t {
            errs.push(p.child("completionTime").invalid(Bad::raw(go_time(t)), "completionTime cannot be mutated"));
        }
    }
    if condition_true(old, "SuccessCriteriaMet") && !success_met {
        errs.push(invalid_omitted(&conditions, "cannot disable the SuccessCriteriaMet=True condition"));
    }
    if condition_true(old, "Complete") && !condition_true(old, "SuccessCriteriaMet") && success_met {
        errs.push(invalid_omitted(&conditions, "cannot set SuccessCriteriaMet=True for Job already has Complete=true conditions"));
    }
    errs
}

fn go_uncounted(succeeded: &Option<Vec<String>>, failed: &Option<Vec<String>>) -> String {
    let uids = |l: &Option<Vec<String>>| match l {
        None => "[]types.UID(nil)".to_string(),
        Some(l) => format!("[]types.UID{{{}}}", l.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(", ")),
    };
    format!("batch.UncountedTerminatedPods{{Succeeded:{}, Failed:{}}}", uids(succeeded), uids(failed))
}

/// The first index both lists hold (upstream walks their intervals and
/// skips those that do not parse).
fn overlap(completed: &str, failed: &str, completions: i32) -> Option<i64> {
    if completed.is_empty() || failed.is_empty() {
        return None;
    }
    let intervals = |s: &str| -> Vec<(i64, i64)> { s.split(',').filter_map(|i| index_interval(i, completions).ok()).collect() };
    let (completed, failed) = (intervals(completed), intervals(failed));
    let (mut c, mut f) = (0, 0);
    while c < completed.len() && f < failed.len() {
        let ((cx, cy), (fx, fy)) = (completed[c], failed[f]);
        if cx <= fy && fx <= cy {
            return Some(cx.max(fx));
        }
        if cx <= fx {
            c += 1;
        } else {
            f += 1;
        }
    }
    None
}

// ---- CronJobs ---------------------------------------------------------------

fn cron_job(c: &CronJob) -> Errors {
    let mut errs = cron_job_spec(&c.spec.clone().unwrap_or_default(), None);
    // The controller names its Jobs `<name>-<11 characters>`, and a Job's
    // name must be a DNS-1035 label.
    let name = c.metadata.name.as_deref().unwrap_or_default();
    if name.len() > 52 {
        errs.push(Path::new("metadata").child("name").invalid(name, "must be no more than 52 characters"));
    }
    errs
}

fn cron_job_update(new: &CronJob, old: &CronJob) -> Errors {
    cron_job_spec(&new.spec.clone().unwrap_or_default(), Some(&old.spec.clone().unwrap_or_default()))
}

/// Upstream's `validateCronJobSpec`; an update (`old`) keeps a schedule
/// with a TZ it had and a time zone it had.
fn cron_job_spec(spec: &CronJobSpec, old: Option<&CronJobSpec>) -> Errors {
    let p = Path::new("spec");
    let mut errs = Vec::new();
    let at = p.child("schedule");
    if spec.schedule.is_empty() {
        errs.push(at.required(""));
    } else {
        if let Err(why) = parse_standard(&spec.schedule) {
            errs.push(at.invalid(&spec.schedule, &why));
        }
        let allow_tz = old.is_some_and(|o| o.schedule.contains("TZ"));
        if spec.schedule.contains("TZ") {
            if !allow_tz {
                errs.push(at.invalid(&spec.schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"));
            } else if spec.time_zone.is_some() {
                errs.push(at.invalid(&spec.schedule, "cannot use both timeZone field and TZ or CRON_TZ in schedule"));
            }
        }
    }
    if let Some(deadline) = spec.starting_deadline_seconds {
        errs.extend(non_negative(deadline, &p.child("startingDeadlineSeconds")));
    }
    if old.is_none_or(|o| o.time_zone != spec.time_zone) {
        errs.extend(time_zone(spec.time_zone.as_deref(), &p.child("timeZone")));
    }
    // Upstream defaults an empty policy to Allow.
    match spec.concurrency_policy.as_deref().unwrap_or_default() {
        "" | "Allow" | "Forbid" | "Replace" => {}
        other => errs.push(p.child("concurrencyPolicy").not_supported(other, &["Allow", "Forbid", "Replace"])),
    }
    let t = p.child("jobTemplate").child("spec");
    let job = spec.job_template.spec.clone().unwrap_or_default();
    errs.extend(job_spec_fields(&job, &t));
    if let Some(selector) = &job.selector {
        errs.push(t.child("selector").invalid(Bad::raw(go_selector(selector)), "`selector` will be auto-generated"));
    }
    if job.manual_selector == Some(true) {
        errs.push(t.child("manualSelector").not_supported(true, &["nil", "false"]));
    }
    for (field, value) in [("successfulJobsHistoryLimit", spec.successful_jobs_history_limit), ("failedJobsHistoryLimit", spec.failed_jobs_history_limit)] {
        if let Some(value) = value {
            errs.extend(non_negative(value.into(), &p.child(field)));
        }
    }
    errs
}

/// Upstream's `validateTimeZone`: an IANA name Go's `time.LoadLocation`
/// knows, never `Local`.
fn time_zone(zone: Option<&str>, at: &Path) -> Errors {
    let Some(zone) = zone else { return vec![] };
    if zone.is_empty() {
        return vec![at.invalid(zone, "timeZone must be nil or non-empty string")];
    }
    let part_ok = |part: &str| {
        part != "." && part != ".." && !part.starts_with('-') && (1..=14).contains(&part.len()) && part.chars().all(|c| c.is_ascii_alphanumeric() || ".-_+".contains(c))
    };
    if !zone.split('/').all(part_ok) {
        return vec![at.invalid(zone, &format!("unknown time zone {zone}"))];
    }
    let mut errs = Vec::new();
    if zone.eq_ignore_ascii_case("Local") {
        errs.push(at.invalid(zone, "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"));
    }
    if let Err(why) = load_location(zone) {
        errs.push(at.invalid(zone, &why));
    }
    errs
}

/// Go's `time.LoadLocation`, as far as whether a name loads.
fn load_location(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "UTC" || name == "Local" {
        return Ok(());
    }
    if name.contains("..") || name.starts_with('/') || name.starts_with('\\') {
        return Err("time: invalid location name".into());
    }
    name.parse::<chrono_tz::Tz>().map(|_| ()).map_err(|_| format!("unknown time zone {name}"))
}

// ---- robfig/cron v3's standard parser ------------------------------------------

/// Whether `spec` is a schedule robfig/cron v3's `ParseStandard` accepts:
/// five fields (minute, hour, day of month, month, day of week) or a
/// descriptor (`@hourly`, `@every 1h`), after an optional `TZ=` prefix;
/// its error message otherwise.
fn parse_standard(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut spec = spec;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or(0);
        // robfig/cron panics on a zone with nothing after it; this names it.
        let end = spec.find(' ').unwrap_or(spec.len());
        let zone = &spec[eq + 1..end];
        load_location(zone).map_err(|why| format!("provided bad location {zone}: {why}"))?;
        spec = spec[end..].trim();
    }
    if spec.starts_with('@') {
        return descriptor(spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" ")));
    }
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let bounds: [(u64, u64, &[&str], u64); 5] = [(0, 59, &[], 0), (0, 23, &[], 0), (1, 31, &[], 0), (1, 12, &MONTHS, 1), (0, 6, &DAYS, 0)];
    for (field, (min, max, names, first)) in fields.iter().zip(bounds) {
        for range in field.split(',').filter(|r| !r.is_empty()) {
            cron_range(range, min, max, names, first)?;
        }
    }
    Ok(())
}

/// One `*`, `n`, `n-m`, each with an optional `/step`; `names` are the
/// field's names (numbered from `first`).
fn cron_range(expr: &str, min: u64, max: u64, names: &[&str], first: u64) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let value = |s: &str| -> Result<u64, String> {
        match names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            Some(i) => Ok(i as u64 + first),
            None => cron_int(s),
        }
    };
    let (start, mut end) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (min, max)
    } else {
        let start = value(low_and_high[0])?;
        match low_and_high.len() {
            1 => (start, start),
            2 => (start, value(low_and_high[1])?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = cron_int(range_and_step[1])?;
            // `n/step` runs from n to the maximum.
            if low_and_high.len() == 1 {
                end = max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < min {
        return Err(format!("beginning of range ({start}) below minimum ({min}): {expr}"));
    }
    if end > max {
        return Err(format!("end of range ({end}) above maximum ({max}): {expr}"));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

/// robfig/cron's `mustParseInt`: Go's `strconv.Atoi`, not negative.
fn cron_int(s: &str) -> Result<u64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax"));
    }
    let n: i64 = s.parse().map_err(|_| format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: value out of range"))?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {s}"));
    }
    Ok(n as u64)
}

fn descriptor(spec: &str) -> Result<(), String> {
    match spec {
        "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight" | "@hourly" => Ok(()),
        _ => match spec.strip_prefix("@every ") {
            Some(duration) => go_duration(duration).map_err(|why| format!("failed to parse duration {spec}: {why}")),
            None => Err(format!("unrecognized descriptor: {spec}")),
        },
    }
}

/// A string as Go's time package quotes it in errors.
fn go_time_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if (c as u32) >= 0x80 || c < ' ' {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// Whether Go's `time.ParseDuration` accepts `orig` (`1h30m`, `.5s`); its
/// error otherwise.
fn go_duration(orig: &str) -> Result<(), String> {
    let invalid = || format!("time: invalid duration {}", go_time_quote(orig));
    let mut s = orig.strip_prefix(['-', '+']).unwrap_or(orig);
    if s == "0" {
        return Ok(());
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let limit: u128 = 1 << 63;
    let mut total: u128 = 0;
    while !s.is_empty() {
        if !(s.starts_with('.') || s.starts_with(|c: char| c.is_ascii_digit())) {
            return Err(invalid());
        }
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let whole = &s[..digits];
        s = &s[digits..];
        let mut fraction = "";
        if let Some(rest) = s.strip_prefix('.') {
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            fraction = &rest[..n];
            s = &rest[n..];
            if digits == 0 && n == 0 {
                return Err(invalid());
            }
        }
        let unit_len = s.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", go_time_quote(orig)));
        }
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit {} in duration {}", go_time_quote(unit), go_time_quote(orig))),
        };
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().unwrap_or(u128::MAX) };
        if whole > limit / scale {
            return Err(invalid());
        }
        let mut part = whole * scale;
        if !fraction.is_empty() {
            let digits = fraction.len().min(30) as u32;
            let numerator: u128 = fraction[..digits as usize].parse().unwrap_or(0);
            part += numerator * scale / 10u128.pow(digits);
        }
        total += part;
        if total > limit {
            return Err(invalid());
        }
    }
    if total == limit && !orig.starts_with('-') {
        return Err(invalid());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{messages, table, update_table, with};
    use super::super::Op;

    const UID: &str = "3a1f9c4e-7d2b-4c1a-9e8f-0b6d5c4a3b21";

    /// `obj` as Skiff stores a new Job: after its defaulting and, unless
    /// the selector is manual, with the selector and labels the API
    /// server generates (strategy.rs `select_own_pods`).
    fn created_job(mut obj: Value) -> Value {
        obj["metadata"]["uid"] = json!(UID);
        crate::defaults::apply(crate::resources::find("batch", "v1", "jobs").expect("served"), &mut obj);
        if obj.pointer("/spec/manualSelector") != Some(&json!(true)) {
            let name = obj["metadata"]["name"].clone();
            let labels = &mut obj["spec"]["template"]["metadata"]["labels"];
            for (key, value) in [("batch.kubernetes.io/controller-uid", json!(UID)), ("batch.kubernetes.io/job-name", name.clone()), ("controller-uid", json!(UID)), ("job-name", name)] {
                if labels.get(key).is_none() {
                    labels[key] = value;
                }
            }
            if obj.pointer("/spec/selector").is_none() {
                obj["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": UID}});
            }
        }
        obj
    }

    /// What `kubectl create job pi --image=perl` sends.
    fn kubectl_job() -> Value {
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi"},
            "spec": {"template": {"metadata": {}, "spec": {"containers": [{"image": "perl", "name": "pi", "resources": {}}], "restartPolicy": "Never"}}},
            "status": {}
        })
    }

    fn job() -> Value {
        created_job(kubectl_job())
    }

    fn indexed_job() -> Value {
        created_job(with(&kubectl_job(), json!({"spec": {"completionMode": "Indexed", "completions": 3, "parallelism": 3}})))
    }

    /// A rule of a pod failure policy on an otherwise valid Job.
    fn with_rule(rule: Value) -> Value {
        with(&job(), json!({"spec": {"podFailurePolicy": {"rules": [rule]}}}))
    }

    fn with_success_rule(rule: Value) -> Value {
        with(&indexed_job(), json!({"spec": {"successPolicy": {"rules": [rule]}}}))
    }

    #[test]
    fn job_valid() {
        let j = job();
        assert_eq!(j["spec"]["backoffLimit"], 6, "defaulted as Skiff stores it");
        let exit_codes = json!({"action": "FailJob", "onExitCodes": {"containerName": "pi", "operator": "In", "values": [1, 2, 42]}});
        table("batch", "Job", &[
            ("kubectl create job", j.clone(), ""),
            ("on failure", with(&j, json!({"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}})), ""),
            ("indexed", indexed_job(), ""),
            ("every counter", with(&j, json!({"spec": {"completions": 5, "parallelism": 2, "activeDeadlineSeconds": 100, "backoffLimit": 0, "ttlSecondsAfterFinished": 0, "suspend": true}})), ""),
            ("work queue", created_job(with(&kubectl_job(), json!({"spec": {"parallelism": 4}}))), ""),
            ("pod failure policy", with_rule(exit_codes.clone()), ""),
            ("pod failure policy, replaced when failed", with(&with_rule(exit_codes), json!({"spec": {"podReplacementPolicy": "Failed"}})), ""),
            ("pod conditions", with_rule(json!({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]})), ""),
            ("not-in zero", with_rule(json!({"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0]}})), ""),
            ("per-index backoff", with(&indexed_job(), json!({"spec": {"backoffLimitPerIndex": 1, "maxFailedIndexes": 2, "podFailurePolicy": {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [3]}}]}}})), ""),
            ("success policy", with_success_rule(json!({"succeededIndexes": "0,2", "succeededCount": 2})), ""),
            ("success count", with_success_rule(json!({"succeededCount": 3})), ""),
            ("managed by", with(&j, json!({"spec": {"managedBy": "kueue.x-k8s.io/multikueue"}})), ""),
            ("manual selector", created_job(with(&kubectl_job(), json!({"spec": {"manualSelector": true, "selector": {"matchLabels": {"app": "pi"}}, "template": {"metadata": {"labels": {"app": "pi"}}}}}))), ""),
            ("replacement policy", with(&j, json!({"spec": {"podReplacementPolicy": "Failed"}})), ""),
        ]);
    }

    #[test]
    fn job_invalid() {
        let j = job();
        let ix = indexed_job();
        let long = "a".repeat(62);
        let labels = format!("map[string]string{{\"batch.kubernetes.io/controller-uid\":{UID:?}, \"batch.kubernetes.io/job-name\":\"pi\", \"controller-uid\":\"other\", \"job-name\":\"pi\"}}");
        let cases: Vec<(&str, Value, String)> = vec![
            ("negative parallelism", with(&j, json!({"spec": {"parallelism": -1}})), "spec.parallelism: Invalid value: -1: must be greater than or equal to 0".into()),
            ("negative completions", with(&j, json!({"spec": {"completions": -1}})), "spec.completions: Invalid value: -1: must be greater than or equal to 0".into()),
            ("negative deadline", with(&j, json!({"spec": {"activeDeadlineSeconds": -1}})), "spec.activeDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0".into()),
            ("negative backoff", with(&j, json!({"spec": {"backoffLimit": -1}})), "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0".into()),
            ("negative ttl", with(&j, json!({"spec": {"ttlSecondsAfterFinished": -1}})), "spec.ttlSecondsAfterFinished: Invalid value: -1: must be greater than or equal to 0".into()),
            ("negative per-index backoff", with(&ix, json!({"spec": {"backoffLimitPerIndex": -1}})), "spec.backoffLimitPerIndex: Invalid value: -1: must be greater than or equal to 0".into()),
            ("negative max failed indexes", with(&ix, json!({"spec": {"backoffLimitPerIndex": 1, "maxFailedIndexes": -1}})), "spec.maxFailedIndexes: Invalid value: -1: must be greater than or equal to 0".into()),
            ("max failed indexes alone", with(&ix, json!({"spec": {"maxFailedIndexes": 1}})), "spec.backoffLimitPerIndex: Required value: when maxFailedIndexes is specified".into()),
            ("max failed indexes above completions", with(&ix, json!({"spec": {"backoffLimitPerIndex": 1, "maxFailedIndexes": 5}})), "spec.maxFailedIndexes: Invalid value: 5: must be less than or equal to completions".into()),
            ("per-index backoff not indexed", with(&j, json!({"spec": {"backoffLimitPerIndex": 1}})), "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode".into()),
            ("completion mode", with(&j, json!({"spec": {"completionMode": "Sometimes"}})), "spec.completionMode: Unsupported value: \"Sometimes\": supported values: \"NonIndexed\", \"Indexed\"".into()),
            ("indexed without completions", with(&ix, json!({"spec": {"completions": null}})), "spec.completions: Required value: when completion mode is Indexed".into()),
            ("indexed parallelism", with(&ix, json!({"spec": {"parallelism": 100_001}})), "spec.parallelism: Invalid value: 100001: must be less than or equal to 100000 when completion mode is Indexed".into()),
            ("indexed hostname", created_job(with(&kubectl_job(), json!({"metadata": {"name": long}, "spec": {"completionMode": "Indexed", "completions": 10, "parallelism": 1}}))), format!("metadata.name: Invalid value: \"{long}\": will not able to create pod with invalid DNS label: {long}-9")),
            ("restartPolicy Always", with(&j, json!({"spec": {"template": {"spec": {"restartPolicy": "Always"}}}})), "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"".into()),
            ("restartPolicy with pod failure policy", with(&with_rule(json!({"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}})), json!({"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}})), "spec.template.spec.restartPolicy: Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified".into()),
            ("no action", with_rule(json!({"action": "", "onExitCodes": {"operator": "In", "values": [1]}})), "spec.podFailurePolicy.rules[0].action: Required value: valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]".into()),
            ("unknown action", with_rule(json!({"action": "Retry", "onExitCodes": {"operator": "In", "values": [1]}})), "spec.podFailurePolicy.rules[0].action: Unsupported value: \"Retry\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\"".into()),
            ("fail index without per-index backoff", with(&ix, json!({"spec": {"podFailurePolicy": {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}}]}}})), "spec.podFailurePolicy.rules[0].action: Invalid value: \"FailIndex\": requires the backoffLimitPerIndex to be set".into()),
            ("no operator", with_rule(json!({"action": "Ignore", "onExitCodes": {"operator": "", "values": [1]}})), "spec.podFailurePolicy.rules[0].onExitCodes.operator: Required value: valid values: [\"In\" \"NotIn\"]".into()),
            ("unknown operator", with_rule(json!({"action": "Ignore", "onExitCodes": {"operator": "Above", "values": [1]}})), "spec.podFailurePolicy.rules[0].onExitCodes.operator: Unsupported value: \"Above\": supported values: \"In\", \"NotIn\"".into()),
            ("unknown container", with_rule(json!({"action": "Ignore", "onExitCodes": {"containerName": "sidecar", "operator": "In", "values": [1]}})), "spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: \"sidecar\": must be one of the container or initContainer names in the pod template".into()),
            ("no exit codes", with_rule(json!({"action": "Ignore", "onExitCodes": {"operator": "In", "values": []}})), "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: []int32{}: at least one value is required".into()),
            ("zero in", with_rule(json!({"action": "Ignore", "onExitCodes": {"operator": "In", "values": [0, 1]}})), "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator".into()),
            ("duplicate exit codes", with_rule(json!({"action": "Ignore", "onExitCodes": {"operator": "In", "values": [1, 1]}})), "spec.podFailurePolicy.rules[0].onExitCodes.values[1]: Duplicate value: 1".into()),
            ("unordered exit codes", with_rule(json!({"action": "Ignore", "onExitCodes": {"operator": "NotIn", "values": [3, 1]}})), "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: []int32{3, 1}: must be ordered".into()),
            ("too many exit codes", with_rule(json!({"action": "Ignore", "onExitCodes": {"operator": "In", "values": (1..=256).collect::<Vec<i32>>()}})), "spec.podFailurePolicy.rules[0].onExitCodes.values: Too many: 256: must have at most 255 items".into()),
            ("both requirements", with_rule(json!({"action": "Ignore", "onExitCodes": {"operator": "In", "values": [1]}, "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]})), "spec.podFailurePolicy.rules[0]: Invalid value: specifying both OnExitCodes and OnPodConditions is not supported".into()),
            ("no requirement", with_rule(json!({"action": "Ignore"})), "spec.podFailurePolicy.rules[0]: Invalid value: specifying one of OnExitCodes and OnPodConditions is required".into()),
            ("no condition status", with_rule(json!({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": ""}]})), "spec.podFailurePolicy.rules[0].onPodConditions[0].status: Required value: valid values: [\"False\" \"True\" \"Unknown\"]".into()),
            ("condition status", with_rule(json!({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "Maybe"}]})), "spec.podFailurePolicy.rules[0].onPodConditions[0].status: Unsupported value: \"Maybe\": supported values: \"False\", \"True\", \"Unknown\"".into()),
            ("condition type", with_rule(json!({"action": "Ignore", "onPodConditions": [{"type": "Disruption Target", "status": "True"}]})), "spec.podFailurePolicy.rules[0].onPodConditions[0].type: Invalid value: \"Disruption Target\": name part must consist of".into()),
            ("too many rules", with(&j, json!({"spec": {"podFailurePolicy": {"rules": vec![json!({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}); 21]}}})), "spec.podFailurePolicy.rules: Too many: 21: must have at most 20 items".into()),
            ("replacement policy", with(&j, json!({"spec": {"podReplacementPolicy": "Never"}})), "spec.podReplacementPolicy: Unsupported value: \"Never\": supported values: \"Failed\", \"TerminatingOrFailed\"".into()),
            ("replacement policy with pod failure policy", with(&with_rule(json!({"action": "Ignore", "onExitCodes": {"operator": "In", "values": [1]}})), json!({"spec": {"podReplacementPolicy": "Terminating"}})), "spec.podReplacementPolicy: Unsupported value: \"Terminating\": supported values: \"Failed\"".into()),
            ("success policy not indexed", with(&j, json!({"spec": {"successPolicy": {"rules": [{"succeededCount": 1}]}}})), "spec.successPolicy: Invalid value: {\"rules\":[{\"succeededCount\":1}]}: requires indexed completion mode".into()),
            ("no success rules", with(&ix, json!({"spec": {"successPolicy": {"rules": []}}})), "spec.successPolicy.rules: Required value: at least one rules must be specified when the successPolicy is specified".into()),
            ("empty success rule", with_success_rule(json!({})), "spec.successPolicy.rules[0]: Required value: at least one of succeededCount or succeededIndexes must be specified".into()),
            ("negative success count", with_success_rule(json!({"succeededCount": -1})), "spec.successPolicy.rules[0].succeededCount: Invalid value: -1: must be greater than or equal to 0".into()),
            ("success count above completions", with_success_rule(json!({"succeededCount": 4})), "spec.successPolicy.rules[0].succeededCount: Invalid value: 4: must be less than or equal to 3 (the number of specified completions)".into()),
            ("success count above indexes", with_success_rule(json!({"succeededCount": 2, "succeededIndexes": "1"})), "spec.successPolicy.rules[0].succeededCount: Invalid value: 2: must be less than or equal to 1 (the number of indexes in the specified succeededIndexes field)".into()),
            ("index too large", with_success_rule(json!({"succeededIndexes": "0-5"})), "spec.successPolicy.rules[0].succeededIndexes: Invalid value: \"0-5\": error parsing succeededIndexes: too large index: \"5\"".into()),
            ("indexes out of order", with_success_rule(json!({"succeededIndexes": "2,1"})), "spec.successPolicy.rules[0].succeededIndexes: Invalid value: \"2,1\": error parsing succeededIndexes: non-increasing order, previous: 2, current: 1".into()),
            ("interval backwards", with_success_rule(json!({"succeededIndexes": "2-1"})), "spec.successPolicy.rules[0].succeededIndexes: Invalid value: \"2-1\": error parsing succeededIndexes: non-increasing order, previous: 2, current: 1".into()),
            ("index not a number", with_success_rule(json!({"succeededIndexes": "one"})), "spec.successPolicy.rules[0].succeededIndexes: Invalid value: \"one\": error parsing succeededIndexes: cannot convert string to integer for index: \"one\"".into()),
            ("three-part interval", with_success_rule(json!({"succeededIndexes": "0-1-2"})), "spec.successPolicy.rules[0].succeededIndexes: Invalid value: \"0-1-2\": error parsing succeededIndexes: the fragment \"0-1-2\" violates the requirement that an index interval can have at most two parts separated by '-'".into()),
            ("managed by a name", with(&j, json!({"spec": {"managedBy": "kueue"}})), "spec.managedBy: Invalid value: \"kueue\": must be a domain-prefixed path (such as \"acme.io/foo\")".into()),
            ("managed by a bad host", with(&j, json!({"spec": {"managedBy": "Kueue_IO/x"}})), "spec.managedBy: Invalid value: \"Kueue_IO\": a lowercase RFC 1123 subdomain".into()),
            ("managed by a bad path", with(&j, json!({"spec": {"managedBy": "kueue.io/a b"}})), "spec.managedBy: Invalid value: \"a b\": Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')".into()),
            ("managed by too long", with(&j, json!({"spec": {"managedBy": format!("example.com/{}", "a".repeat(60))}})), "spec.managedBy: Too long: may not be more than 63 bytes".into()),
            ("generated label changed", with(&j, json!({"spec": {"template": {"metadata": {"labels": {"controller-uid": "other"}}}}})), format!("spec.template.metadata.labels[controller-uid]: Invalid value: {labels}: must be '{UID}'")),
            ("generated label removed", with(&j, json!({"spec": {"template": {"metadata": {"labels": {"batch.kubernetes.io/job-name": null}}}}})), "spec.template.metadata.labels[batch.kubernetes.io/job-name]: Required value: must be 'pi'".into()),
            ("selector not generated", with(&j, json!({"spec": {"selector": {"matchLabels": {"extra": "x"}}, "template": {"metadata": {"labels": {"extra": "x"}}}}})), format!("spec.selector: Invalid value: v1.LabelSelector{{MatchLabels:map[string]string{{\"batch.kubernetes.io/controller-uid\":{UID:?}, \"extra\":\"x\"}}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}}: `selector` not auto-generated")),
            ("manual selector not matching", created_job(with(&kubectl_job(), json!({"spec": {"manualSelector": true, "selector": {"matchLabels": {"app": "pi"}}, "template": {"metadata": {"labels": {"app": "e"}}}}}))), "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"e\"}: `selector` does not match template `labels`".into()),
        ];
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        table("batch", "Job", &cases);
    }

    #[test]
    fn job_selector_required() {
        let manual = created_job(with(&kubectl_job(), json!({"spec": {"manualSelector": true}})));
        assert_eq!(messages("batch", "Job", Op::Create(&manual)), vec!["spec.selector: Required value".to_string(), "spec.template.metadata.labels: Invalid value: map[string]string(nil): `selector` does not match template `labels`".to_string()]);
        let no_uid = with(&job(), json!({"metadata": {"uid": null}}));
        assert_eq!(messages("batch", "Job", Op::Create(&no_uid))[0], "metadata.uid: Required value");
    }

    #[test]
    fn job_update() {
        let old = job();
        let suspended = with(&old, json!({"spec": {"suspend": true}}));
        update_table("batch", "Job", &old, &[
            ("suspend", suspended.clone(), ""),
            ("parallelism", with(&old, json!({"spec": {"parallelism": 3, "activeDeadlineSeconds": 60, "ttlSecondsAfterFinished": 10, "backoffLimit": 1}})), ""),
            ("completions", with(&old, json!({"spec": {"completions": 2}})), "spec.completions: Invalid value: 2: field is immutable"),
            ("selector", with(&old, json!({"spec": {"selector": {"matchLabels": {"job-name": "pi"}}}})), "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"batch.kubernetes.io/controller-uid\":\"3a1f9c4e-7d2b-4c1a-9e8f-0b6d5c4a3b21\", \"job-name\":\"pi\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"),
            ("template", with(&old, json!({"spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.40"}]}}}})), "spec.template: Invalid value: "),
            ("scheduling of a running job", with(&old, json!({"spec": {"template": {"spec": {"nodeSelector": {"zone": "a"}}}}})), "spec.template: Invalid value: "),
            ("completion mode", with(&old, json!({"spec": {"completionMode": "Indexed"}})), "spec.completionMode: Invalid value: \"Indexed\": field is immutable"),
            ("pod failure policy", with(&old, json!({"spec": {"podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}}})), "spec.podFailurePolicy: Invalid value: {\"rules\":[{\"action\":\"Ignore\",\"onPodConditions\":[{\"status\":\"True\",\"type\":\"DisruptionTarget\"}]}]}: field is immutable"),
            ("managed by", with(&old, json!({"spec": {"managedBy": "example.com/x"}})), "spec.managedBy: Invalid value: \"example.com/x\": field is immutable"),
            ("still validated", with(&old, json!({"spec": {"parallelism": -1}})), "spec.parallelism: Invalid value: -1: must be greater than or equal to 0"),
        ]);
        // A suspended Job that never started may move.
        update_table("batch", "Job", &suspended, &[
            ("node selector", with(&suspended, json!({"spec": {"template": {"spec": {"nodeSelector": {"zone": "a"}, "tolerations": [{"key": "k", "operator": "Exists"}], "schedulingGates": [{"name": "wait"}]}}}})), ""),
            ("labels and annotations", with(&suspended, json!({"spec": {"template": {"metadata": {"labels": {"queue": "q"}, "annotations": {"a": "b"}}}}})), ""),
            ("node affinity", with(&suspended, json!({"spec": {"template": {"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}}}}})), ""),
            ("pod affinity", with(&suspended, json!({"spec": {"template": {"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone", "labelSelector": {"matchLabels": {"a": "b"}}}]}}}}}})), "spec.template: Invalid value: "),
            ("image", with(&suspended, json!({"spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.40"}]}}}})), "spec.template: Invalid value: "),
        ]);
        let started = with(&suspended, json!({"status": {"startTime": "2025-01-01T00:00:00Z"}}));
        update_table("batch", "Job", &started, &[("node selector after a start", with(&started, json!({"spec": {"template": {"spec": {"nodeSelector": {"zone": "a"}}}}})), "spec.template: Invalid value: ")]);
        // Elastic Indexed Jobs scale completions with parallelism.
        let ix = indexed_job();
        update_table("batch", "Job", &ix, &[
            ("scale", with(&ix, json!({"spec": {"completions": 5, "parallelism": 5}})), ""),
            ("completions alone", with(&ix, json!({"spec": {"completions": 5}})), "spec.completions: Invalid value: 5: can only be modified in tandem with spec.parallelism"),
            ("per-index backoff", with(&ix, json!({"spec": {"backoffLimitPerIndex": 2}})), "spec.backoffLimitPerIndex: Invalid value: 2: field is immutable"),
            ("success policy", with(&ix, json!({"spec": {"successPolicy": {"rules": [{"succeededCount": 1}]}}})), "spec.successPolicy: Invalid value: {\"rules\":[{\"succeededCount\":1}]}: field is immutable"),
        ]);
        // Jobs made before the prefixed labels need not carry them.
        let legacy = with(&old, json!({"spec": {
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": null, "controller-uid": UID}},
            "template": {"metadata": {"labels": {"batch.kubernetes.io/job-name": null, "batch.kubernetes.io/controller-uid": null}}}
        }}));
        update_table("batch", "Job", &legacy, &[("legacy labels", with(&legacy, json!({"spec": {"parallelism": 2}})), "")]);
    }

    fn condition(kind: &str) -> Value {
        json!({"type": kind, "status": "True", "reason": "R", "message": "m", "lastProbeTime": "2025-01-01T00:01:00Z", "lastTransitionTime": "2025-01-01T00:01:00Z"})
    }

    fn job_status(old: &Value, status: Value) -> Vec<String> {
        let new = with(old, json!({"status": status}));
        messages("batch", "Job", Op::Status { new: &new, old })
    }

    #[test]
    fn job_status_update() {
        let running = with(&job(), json!({"status": {"startTime": "2025-01-01T00:00:00Z", "active": 1, "ready": 1, "terminating": 0, "uncountedTerminatedPods": {}}}));
        let none: Vec<String> = vec![];
        // As Skiff's job controller writes them.
        assert_eq!(job_status(&running, json!({"uncountedTerminatedPods": {"succeeded": ["u1"]}})), none);
        let met = with(&running, json!({"status": {"active": null, "ready": 0, "succeeded": 1, "conditions": [condition("SuccessCriteriaMet")]}}));
        assert_eq!(job_status(&running, met["status"].clone()), none);
        assert_eq!(job_status(&met, json!({"conditions": [condition("SuccessCriteriaMet"), condition("Complete")], "completionTime": "2025-01-01T00:01:00Z"})), none);
        let target = with(&running, json!({"status": {"failed": 7, "conditions": [condition("FailureTarget")]}}));
        assert_eq!(job_status(&target, json!({"active": null, "ready": 0, "conditions": [condition("FailureTarget"), condition("Failed")]})), none);

        let one = |status: Value, expected: &str| assert_eq!(job_status(&running, status), vec![expected.to_string()]);
        one(json!({"active": -1, "ready": null}), "status.active: Invalid value: -1: must be greater than or equal to 0");
        one(json!({"ready": -1}), "status.ready: Invalid value: -1: must be greater than or equal to 0");
        one(json!({"terminating": -2}), "status.terminating: Invalid value: -2: must be greater than or equal to 0");
        one(json!({"ready": 2}), "status.ready: Invalid value: 2: cannot set more ready pods than active");
        one(json!({"uncountedTerminatedPods": {"succeeded": ["u1"], "failed": ["u1"]}}), "status.uncountedTerminatedPods.failed[0]: Duplicate value: \"u1\"");
        one(json!({"uncountedTerminatedPods": {"failed": [""]}}), "status.uncountedTerminatedPods.failed[0]: Invalid value: \"\": must not be empty");
        one(json!({"active": 0, "ready": 0, "conditions": [condition("Failed")]}), "status.conditions: Invalid value: cannot set Failed=True condition without the FailureTarget=true condition");
        one(json!({"active": 0, "ready": 0, "conditions": [condition("SuccessCriteriaMet"), condition("Complete")]}), "status.completionTime: Required value: completionTime is required for Complete jobs");
        one(json!({"active": 0, "ready": 0, "conditions": [condition("Complete")], "completionTime": "2025-01-01T00:01:00Z"}), "status.conditions: Invalid value: cannot set Complete=True condition without the SuccessCriteriaMet=true condition");
        one(json!({"completionTime": "2025-01-01T00:01:00Z"}), "status.completionTime: Invalid value: 2025-01-01 00:01:00 +0000 UTC: cannot set completionTime when there is no Complete=True condition");
        one(json!({"active": 1, "ready": 0, "conditions": [condition("FailureTarget"), condition("Failed")]}), "status.active: Invalid value: 1: active>0 is invalid for finished job");
        one(json!({"active": 0, "ready": 0, "terminating": 1, "conditions": [condition("FailureTarget"), condition("Failed")]}), "status.terminating: Invalid value: 1: terminating>0 is invalid for finished job");
        one(json!({"active": 0, "ready": 0, "uncountedTerminatedPods": {"failed": ["u2"]}, "conditions": [condition("FailureTarget"), condition("Failed")]}), "status.uncountedTerminatedPods: Invalid value: batch.UncountedTerminatedPods{Succeeded:[]types.UID(nil), Failed:[]types.UID{\"u2\"}}: uncountedTerminatedPods needs to be empty for finished job");
        one(json!({"conditions": [condition("SuccessCriteriaMet"), condition("FailureTarget")]}), "status.conditions: Invalid value: cannot set SuccessCriteriaMet=True and FailureTarget=true conditions");
        one(json!({"completedIndexes": "0"}), "status.completedIndexes: Invalid value: \"0\": cannot set non-empty completedIndexes when non-indexed completion mode");
        one(json!({"failedIndexes": "0"}), "status.failedIndexes: Invalid value: \"0\": cannot set non-null failedIndexes when backoffLimitPerIndex is null");

        let done = with(&met, json!({"status": {"conditions": [condition("SuccessCriteriaMet"), condition("Complete")], "completionTime": "2025-01-01T00:01:00Z"}}));
        assert_eq!(job_status(&done, json!({"conditions": [condition("SuccessCriteriaMet")], "completionTime": null})), vec!["status.conditions: Invalid value: cannot disable the terminal Complete=True condition"]);
        assert_eq!(job_status(&done, json!({"completionTime": "2025-01-01T00:02:00Z"})), vec!["status.completionTime: Invalid value: 2025-01-01 00:02:00 +0000 UTC: completionTime cannot be mutated"]);
        assert_eq!(job_status(&done, json!({"succeeded": 0})), vec!["status.succeeded: Invalid value: 0: cannot decrease the succeeded counter"]);
        assert_eq!(job_status(&target, json!({"failed": 6})), vec!["status.failed: Invalid value: 6: cannot decrease the failed counter"]);
        assert_eq!(job_status(&met, json!({"conditions": []})), vec!["status.conditions: Invalid value: cannot disable the SuccessCriteriaMet=True condition"]);
        let early = with(&met, json!({"status": {"startTime": "2025-01-01T00:05:00Z"}}));
        assert_eq!(job_status(&early, json!({"conditions": [condition("SuccessCriteriaMet"), condition("Complete")], "completionTime": "2025-01-01T00:01:00Z"})), vec!["status.completionTime: Invalid value: 2025-01-01 00:01:00 +0000 UTC: completionTime cannot be set before startTime"]);
        let unstarted = with(&job(), json!({"status": {}}));
        assert_eq!(job_status(&unstarted, json!({"conditions": [condition("FailureTarget"), condition("Failed")]})), vec!["status.startTime: Required value: startTime is required for finished job"]);

        // Indexed Jobs: indexes below completions, failed ones apart.
        let ix = with(&indexed_job(), json!({"spec": {"backoffLimitPerIndex": 1}, "status": {"startTime": "2025-01-01T00:00:00Z", "completedIndexes": "0"}}));
        assert_eq!(job_status(&ix, json!({"completedIndexes": "0-1", "succeeded": 2})), none);
        assert_eq!(job_status(&ix, json!({"completedIndexes": "0,3"})), vec!["status.completedIndexes: Invalid value: \"0,3\": error parsing completedIndexes: too large index: \"3\""]);
        assert_eq!(job_status(&ix, json!({"failedIndexes": "0,2"})), vec!["status.failedIndexes: Invalid value: \"0,2\": failedIndexes and completedIndexes overlap at index: 0"]);
        assert_eq!(job_status(&ix, json!({"failedIndexes": "x"})), vec!["status.failedIndexes: Invalid value: \"x\": error parsing failedIndexes: cannot convert string to integer for index: \"x\""]);
    }

    /// What `kubectl create cronjob tick --image=busybox --schedule="*/1 * * * *"` sends.
    fn cron_job() -> Value {
        let mut c = json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "tick"},
            "spec": {
                "jobTemplate": {"metadata": {"name": "tick"}, "spec": {"template": {"metadata": {}, "spec": {"containers": [{"image": "busybox", "name": "tick", "resources": {}}], "restartPolicy": "OnFailure"}}}},
                "schedule": "*/1 * * * *"
            },
            "status": {}
        });
        crate::defaults::apply(crate::resources::find("batch", "v1", "cronjobs").expect("served"), &mut c);
        c
    }

    fn schedule(s: &str) -> Value {
        with(&cron_job(), json!({"spec": {"schedule": s}}))
    }

    #[test]
    fn cron_job_valid() {
        let c = cron_job();
        assert_eq!(c["spec"]["concurrencyPolicy"], "Allow", "defaulted as Skiff stores it");
        table("batch", "CronJob", &[
            ("kubectl create cronjob", c.clone(), ""),
            ("hourly", schedule("@hourly"), ""),
            ("every", schedule("@every 1h30m"), ""),
            ("every fraction", schedule("@every 1.5s"), ""),
            ("names", schedule("0 9 * jan-jun MON-FRI"), ""),
            ("lists and steps", schedule("0,15,30,45 8-18/2 1,15 */3 ?"), ""),
            ("day of week six", schedule("0 0 * * 6"), ""),
            ("time zone", with(&c, json!({"spec": {"timeZone": "Europe/Berlin"}})), ""),
            ("deep time zone", with(&c, json!({"spec": {"timeZone": "America/Argentina/Buenos_Aires"}})), ""),
            ("utc", with(&c, json!({"spec": {"timeZone": "Etc/UTC"}})), ""),
            ("policies", with(&c, json!({"spec": {"concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 0, "successfulJobsHistoryLimit": 0, "failedJobsHistoryLimit": 0, "suspend": true}})), ""),
            ("indexed template", with(&c, json!({"spec": {"jobTemplate": {"spec": {"completionMode": "Indexed", "completions": 2, "parallelism": 2}}}})), ""),
            ("name of 52", with(&c, json!({"metadata": {"name": "a".repeat(52)}})), ""),
        ]);
    }

    #[test]
    fn cron_job_invalid() {
        let c = cron_job();
        table("batch", "CronJob", &[
            ("no schedule", schedule(""), "spec.schedule: Required value"),
            ("not a schedule", schedule("not a schedule"), "spec.schedule: Invalid value: \"not a schedule\": expected exactly 5 fields, found 3: [not a schedule]"),
            ("six fields", schedule("0 * * * * *"), "spec.schedule: Invalid value: \"0 * * * * *\": expected exactly 5 fields, found 6: [0 * * * * *]"),
            ("minute 60", schedule("60 * * * *"), "spec.schedule: Invalid value: \"60 * * * *\": end of range (60) above maximum (59): 60"),
            ("hour 24", schedule("0 24 * * *"), "spec.schedule: Invalid value: \"0 24 * * *\": end of range (24) above maximum (23): 24"),
            ("day 0", schedule("0 0 0 * *"), "spec.schedule: Invalid value: \"0 0 0 * *\": beginning of range (0) below minimum (1): 0"),
            ("month 13", schedule("0 0 * 13 *"), "spec.schedule: Invalid value: \"0 0 * 13 *\": end of range (13) above maximum (12): 13"),
            ("weekday 7", schedule("0 0 * * 7"), "spec.schedule: Invalid value: \"0 0 * * 7\": end of range (7) above maximum (6): 7"),
            ("zero step", schedule("*/0 * * * *"), "spec.schedule: Invalid value: \"*/0 * * * *\": step of range should be a positive number: */0"),
            ("backwards", schedule("5-1 * * * *"), "spec.schedule: Invalid value: \"5-1 * * * *\": beginning of range (5) beyond end of range (1): 5-1"),
            ("word", schedule("a * * * *"), "spec.schedule: Invalid value: \"a * * * *\": failed to parse int from a: strconv.Atoi: parsing \"a\": invalid syntax"),
            ("negative step", schedule("*/-1 * * * *"), "spec.schedule: Invalid value: \"*/-1 * * * *\": negative number (-1) not allowed: -1"),
            ("hyphens", schedule("1-2-3 * * * *"), "spec.schedule: Invalid value: \"1-2-3 * * * *\": too many hyphens: 1-2-3"),
            ("slashes", schedule("*/1/2 * * * *"), "spec.schedule: Invalid value: \"*/1/2 * * * *\": too many slashes: */1/2"),
            ("every unit", schedule("@every 1x"), "spec.schedule: Invalid value: \"@every 1x\": failed to parse duration @every 1x: time: unknown unit \"x\" in duration \"1x\""),
            ("every without unit", schedule("@every 10"), "spec.schedule: Invalid value: \"@every 10\": failed to parse duration @every 10: time: missing unit in duration \"10\""),
            ("every nothing", schedule("@every x"), "spec.schedule: Invalid value: \"@every x\": failed to parse duration @every x: time: invalid duration \"x\""),
            ("descriptor", schedule("@fortnightly"), "spec.schedule: Invalid value: \"@fortnightly\": unrecognized descriptor: @fortnightly"),
            ("TZ", schedule("TZ=UTC 0 * * * *"), "spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
            ("CRON_TZ", schedule("CRON_TZ=Europe/Paris 0 * * * *"), "spec.schedule: Invalid value: \"CRON_TZ=Europe/Paris 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
            ("empty time zone", with(&c, json!({"spec": {"timeZone": ""}})), "spec.timeZone: Invalid value: \"\": timeZone must be nil or non-empty string"),
            ("unknown time zone", with(&c, json!({"spec": {"timeZone": "Mars/Olympus"}})), "spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus"),
            ("dotted time zone", with(&c, json!({"spec": {"timeZone": "../etc/passwd"}})), "spec.timeZone: Invalid value: \"../etc/passwd\": unknown time zone ../etc/passwd"),
            ("long part", with(&c, json!({"spec": {"timeZone": "America/Argentina_Buenos_Aires"}})), "spec.timeZone: Invalid value: \"America/Argentina_Buenos_Aires\": unknown time zone America/Argentina_Buenos_Aires"),
            ("Local", with(&c, json!({"spec": {"timeZone": "Local"}})), "spec.timeZone: Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"),
            ("concurrency", with(&c, json!({"spec": {"concurrencyPolicy": "Sometimes"}})), "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\""),
            ("negative deadline", with(&c, json!({"spec": {"startingDeadlineSeconds": -1}})), "spec.startingDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0"),
            ("negative successful history", with(&c, json!({"spec": {"successfulJobsHistoryLimit": -1}})), "spec.successfulJobsHistoryLimit: Invalid value: -1: must be greater than or equal to 0"),
            ("negative failed history", with(&c, json!({"spec": {"failedJobsHistoryLimit": -1}})), "spec.failedJobsHistoryLimit: Invalid value: -1: must be greater than or equal to 0"),
            ("template selector", with(&c, json!({"spec": {"jobTemplate": {"spec": {"selector": {"matchLabels": {"a": "b"}}}}}})), "spec.jobTemplate.spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"a\":\"b\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` will be auto-generated"),
            ("template manual selector", with(&c, json!({"spec": {"jobTemplate": {"spec": {"manualSelector": true}}}})), "spec.jobTemplate.spec.manualSelector: Unsupported value: true: supported values: \"nil\", \"false\""),
            ("template restartPolicy", with(&c, json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Always"}}}}}})), "spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""),
            ("template completions", with(&c, json!({"spec": {"jobTemplate": {"spec": {"completions": -1}}}})), "spec.jobTemplate.spec.completions: Invalid value: -1: must be greater than or equal to 0"),
            ("template indexed", with(&c, json!({"spec": {"jobTemplate": {"spec": {"completionMode": "Indexed", "completions": null, "parallelism": 2}}}})), "spec.jobTemplate.spec.completions: Required value: when completion mode is Indexed"),
            ("name too long", with(&c, json!({"metadata": {"name": "a".repeat(53)}})), "metadata.name: Invalid value: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": must be no more than 52 characters"),
        ]);
        let bad_zone = schedule("TZ=Mars/Olympus 0 * * * *");
        assert_eq!(messages("batch", "CronJob", Op::Create(&bad_zone)), vec![
            "spec.schedule: Invalid value: \"TZ=Mars/Olympus 0 * * * *\": provided bad location Mars/Olympus: unknown time zone Mars/Olympus".to_string(),
            "spec.schedule: Invalid value: \"TZ=Mars/Olympus 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead".to_string(),
        ]);
    }

    #[test]
    fn cron_job_update() {
        let old = cron_job();
        let long = with(&old, json!({"metadata": {"name": "a".repeat(60)}}));
        let tz = schedule("TZ=UTC 0 * * * *");
        update_table("batch", "CronJob", &old, &[
            ("schedule", with(&old, json!({"spec": {"schedule": "@daily", "suspend": true}})), ""),
            ("bad schedule", with(&old, json!({"spec": {"schedule": "@sometimes"}})), "spec.schedule: Invalid value: \"@sometimes\": unrecognized descriptor: @sometimes"),
            ("TZ added", tz.clone(), "spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
            ("template", with(&old, json!({"spec": {"jobTemplate": {"spec": {"backoffLimit": -1}}}})), "spec.jobTemplate.spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0"),
        ]);
        // A name longer than 52 or a TZ in the schedule, from before those
        // rules, may stay.
        update_table("batch", "CronJob", &long, &[("long name kept", with(&long, json!({"spec": {"suspend": true}})), "")]);
        update_table("batch", "CronJob", &tz, &[
            ("TZ kept", with(&tz, json!({"spec": {"suspend": true}})), ""),
            ("TZ and time zone", with(&tz, json!({"spec": {"timeZone": "Etc/UTC"}})), "spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use both timeZone field and TZ or CRON_TZ in schedule"),
        ]);
    }

    #[test]
    fn durations_parse_as_go_does() {
        for ok in ["1h", "1h30m", "1.5s", ".5s", "300ms", "2h45m0.5s", "1us", "1\u{b5}s", "+5m", "0"] {
            assert_eq!(super::go_duration(ok), Ok(()), "{ok}");
        }
        assert_eq!(super::go_duration(""), Err("time: invalid duration \"\"".into()));
        assert_eq!(super::go_duration("."), Err("time: invalid duration \".\"".into()));
        assert_eq!(super::go_duration("1d"), Err("time: unknown unit \"d\" in duration \"1d\"".into()));
        assert_eq!(super::go_duration("9999999999999999999h"), Err("time: invalid duration \"9999999999999999999h\"".into()));
    }
}

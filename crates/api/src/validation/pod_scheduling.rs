//! Where a pod may run and how it is placed (affinity, tolerations,
//! topology spread, DNS, host aliases, gates, priority), and the rules of
//! pod updates, status writes and `/ephemeralcontainers` writes: the
//! parts of upstream's `ValidatePodSpec`, `ValidatePodUpdate`,
//! `ValidatePodStatusUpdate` and `ValidatePodEphemeralContainersUpdate`
//! that are not about what runs in the pod. Its node selector, toleration
//! and preemption rules serve PVs, StorageClasses, RuntimeClasses and
//! PriorityClasses too, as upstream's do.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    Affinity, ContainerStatus, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodAffinityTerm, PodDNSConfig, PodSpec, PodStatus,
    Toleration, TopologySelectorTerm, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;
use serde_json::Value;

use super::addresses::{is_ipv6, parse_ip_sloppy, valid_ip};
use super::go::{differences, go_string_map, go_strings, go_value};
use super::{dns1123_label, dns1123_subdomain, inclusive_range, label_selector, label_value, labels, name_by, qualified_name, Bad, Errors, Path, IMMUTABLE};

const DNS_POLICIES: [&str; 4] = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// The placement and naming parts of upstream's `ValidatePodSpec`, in its
/// order. `path` is where the spec is (`spec` for a Pod).
pub(super) fn pod_spec_placement(spec: &PodSpec, path: &Path) -> Errors {
    let mut errs = Vec::new();
    // An empty dnsPolicy is defaulted to ClusterFirst, as upstream does.
    let dns_policy = spec.dns_policy.as_deref().filter(|p| !p.is_empty()).unwrap_or("ClusterFirst");
    if !DNS_POLICIES.contains(&dns_policy) {
        errs.push(path.child("dnsPolicy").not_supported(dns_policy, &DNS_POLICIES));
    }
    errs.extend(labels(spec.node_selector.as_ref(), &path.child("nodeSelector")));
    if let Some(affinity) = &spec.affinity {
        errs.extend(affinity_rules(affinity, &path.child("affinity")));
    }
    errs.extend(dns_config(spec.dns_config.as_ref(), dns_policy, &path.child("dnsConfig")));
    for (i, gate) in spec.readiness_gates.iter().flatten().enumerate() {
        errs.extend(name_by(qualified_name, &gate.condition_type, &path.child("readinessGates").index(i).child("conditionType")));
    }
    let gates = spec.scheduling_gates.as_deref().unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (i, gate) in gates.iter().enumerate() {
        let at = path.child("schedulingGates").index(i);
        errs.extend(name_by(qualified_name, &gate.name, &at));
        if !seen.insert(gate.name.as_str()) {
            errs.push(at.duplicate(&gate.name));
        }
    }
    errs.extend(topology_spread_constraints(spec.topology_spread_constraints.as_deref().unwrap_or_default(), &path.child("topologySpreadConstraints")));
    let node_name = spec.node_name.as_deref().unwrap_or_default();
    if !node_name.is_empty() {
        errs.extend(name_by(dns1123_subdomain, node_name, &path.child("nodeName")));
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            errs.extend(name_by(dns1123_label, value, &path.child(field)));
        }
    }
    let value = |t: &Toleration| Bad::from(t.value.as_deref().unwrap_or_default());
    errs.extend(tolerations(spec.tolerations.as_deref().unwrap_or_default(), value, &path.child("tolerations")));
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        let at = path.child("hostAliases").index(i);
        errs.extend(valid_ip(&alias.ip, &at.child("ip")));
        for (j, hostname) in alias.hostnames.iter().flatten().enumerate() {
            errs.extend(name_by(dns1123_subdomain, hostname, &at.child("hostnames").index(j)));
        }
    }
    if let Some(class) = spec.priority_class_name.as_deref().filter(|c| !c.is_empty()) {
        errs.extend(name_by(dns1123_subdomain, class, &path.child("priorityClassName")));
    }
    if let Some(policy) = &spec.preemption_policy {
        errs.extend(preemption_policy(policy, &path.child("preemptionPolicy")));
    }
    // Upstream's ValidatePodCreate: a pod (not a template) is bound only
    // once ungated. (Binding changes nodeName later, never with gates.)
    if path.as_str() == "spec" && !node_name.is_empty() && !gates.is_empty() {
        errs.push(path.child("nodeName").forbidden("cannot be set until all schedulingGates have been cleared"));
    }
    errs
}

/// Upstream's `ValidatePreemptionPolicy` (pods and PriorityClasses).
pub(super) fn preemption_policy(policy: &str, path: &Path) -> Errors {
    match policy {
        "PreemptLowerPriority" | "Never" => vec![],
        "" => vec![path.required("")],
        other => vec![path.not_supported(other, &["PreemptLowerPriority", "Never"])],
    }
}

// ---- affinity ----------------------------------------------------------

fn affinity_rules(affinity: &Affinity, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if let Some(node) = &affinity.node_affinity {
        let path = path.child("nodeAffinity");
        if let Some(required) = &node.required_during_scheduling_ignored_during_execution {
            errs.extend(node_selector(required, false, &path.child("requiredDuringSchedulingIgnoredDuringExecution")));
        }
        for (i, term) in node.preferred_during_scheduling_ignored_during_execution.iter().flatten().enumerate() {
            let at = path.child("preferredDuringSchedulingIgnoredDuringExecution").index(i);
            errs.extend(weight(term.weight, &at.child("weight")));
            errs.extend(node_selector_term(&term.preference, false, &at.child("preference")));
        }
    }
    let pod_affinities = [
        ("podAffinity", affinity.pod_affinity.as_ref().map(|a| (&a.required_during_scheduling_ignored_during_execution, &a.preferred_during_scheduling_ignored_during_execution))),
        ("podAntiAffinity", affinity.pod_anti_affinity.as_ref().map(|a| (&a.required_during_scheduling_ignored_during_execution, &a.preferred_during_scheduling_ignored_during_execution))),
    ];
    for (field, terms) in pod_affinities {
        let Some((required, preferred)) = terms else { continue };
        let path = path.child(field);
        for (i, term) in required.iter().flatten().enumerate() {
            errs.extend(pod_affinity_term(term, &path.child("requiredDuringSchedulingIgnoredDuringExecution").index(i)));
        }
        for (i, weighted) in preferred.iter().flatten().enumerate() {
            let at = path.child("preferredDuringSchedulingIgnoredDuringExecution").index(i);
            errs.extend(weight(weighted.weight, &at.child("weight")));
            errs.extend(pod_affinity_term(&weighted.pod_affinity_term, &at.child("podAffinityTerm")));
        }
    }
    errs
}

fn weight(weight: i32, path: &Path) -> Errors {
    if (1..=100).contains(&weight) {
        vec![]
    } else {
        vec![path.invalid(weight, "must be in the range 1-100")]
    }
}

/// Upstream's `validatePodAffinityTerm`, field paths and all (a bad
/// namespace is reported at `namespace`, as upstream does).
fn pod_affinity_term(term: &PodAffinityTerm, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if let Some(selector) = &term.label_selector {
        errs.extend(label_selector(selector, &path.child("labelSelector")));
    }
    if let Some(selector) = &term.namespace_selector {
        errs.extend(label_selector(selector, &path.child("namespaceSelector")));
    }
    for namespace in term.namespaces.iter().flatten() {
        errs.extend(name_by(dns1123_label, namespace, &path.child("namespace")));
    }
    errs.extend(match_label_keys(path, term.match_label_keys.as_deref().unwrap_or_default(), term.mismatch_label_keys.as_deref().unwrap_or_default(), term.label_selector.as_ref()));
    if term.topology_key.is_empty() {
        errs.push(path.child("topologyKey").required("can not be empty"));
    }
    errs.extend(name_by(qualified_name, &term.topology_key, &path.child("topologyKey")));
    errs
}

/// Upstream's `validateMatchLabelKeysAndMismatchLabelKeys`. Upstream has
/// already merged each matchLabelKeys key into the selector (as an `In`
/// expression) when this runs on a new pod, so a key is refused when the
/// selector names it twice; the error's path is the term's, indexed.
fn match_label_keys(path: &Path, matching: &[String], mismatching: &[String], selector: Option<&LabelSelector>) -> Errors {
    let mut errs = Vec::new();
    for (field, keys) in [("matchLabelKeys", matching), ("mismatchLabelKeys", mismatching)] {
        if keys.is_empty() {
            continue;
        }
        if selector.is_none() {
            errs.push(path.child(field).forbidden("must not be specified when labelSelector is not set"));
            continue;
        }
        for (i, key) in keys.iter().enumerate() {
            errs.extend(name_by(qualified_name, key, &path.child(field).index(i)));
        }
    }
    if let Some(selector) = selector {
        let index: BTreeMap<&str, usize> = matching.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
        let mut seen: BTreeSet<&str> = selector.match_labels.iter().flatten().map(|(k, _)| k.as_str()).collect();
        for expression in selector.match_expressions.iter().flatten() {
            let key = expression.key.as_str();
            if let (Some(i), true) = (index.get(key), seen.contains(key)) {
                errs.push(path.index(*i).invalid(key, "exists in both matchLabelKeys and labelSelector"));
            }
            seen.insert(key);
        }
    }
    for (i, key) in matching.iter().enumerate() {
        if mismatching.contains(key) {
            errs.push(path.child("matchLabelKeys").index(i).invalid(key, "exists in both matchLabelKeys and mismatchLabelKeys"));
        }
    }
    errs
}

// ---- node selection (also a PV's node affinity) -------------------------

/// Upstream's `ValidateNodeSelector`. `check_values`: whether the values
/// of label expressions are checked (a PV's are; 1.32 does not check a
/// pod's, only field expressions name a node there).
pub(super) fn node_selector(selector: &NodeSelector, check_values: bool, path: &Path) -> Errors {
    let terms_path = path.child("nodeSelectorTerms");
    if selector.node_selector_terms.is_empty() {
        return vec![terms_path.required("must have at least one node selector term")];
    }
    selector.node_selector_terms.iter().enumerate().flat_map(|(i, term)| node_selector_term(term, check_values, &terms_path.index(i))).collect()
}

/// Upstream's `ValidateNodeSelectorTerm`.
fn node_selector_term(term: &NodeSelectorTerm, check_values: bool, path: &Path) -> Errors {
    let mut errs = Vec::new();
    for (j, req) in term.match_expressions.iter().flatten().enumerate() {
        errs.extend(node_selector_requirement(req, check_values, &path.child("matchExpressions").index(j)));
    }
    for (j, req) in term.match_fields.iter().flatten().enumerate() {
        errs.extend(node_field_selector_requirement(req, &path.child("matchFields").index(j)));
    }
    errs
}

/// Upstream's `ValidateNodeSelectorRequirement`.
fn node_selector_requirement(req: &NodeSelectorRequirement, check_values: bool, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => errs.push(path.child("values").required("must be specified when `operator` is 'In' or 'NotIn'")),
        "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(path.child("values").forbidden("may not be specified when `operator` is 'Exists' or 'DoesNotExist'")),
        "Gt" | "Lt" if values.len() != 1 => errs.push(path.child("values").required("must be specified single value when `operator` is 'Lt' or 'Gt'")),
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        op => errs.push(path.child("operator").invalid(op, "not a valid selector operator")),
    }
    errs.extend(name_by(qualified_name, &req.key, &path.child("key")));
    if check_values {
        for (i, v) in values.iter().enumerate() {
            if let Err(why) = label_value(v) {
                errs.push(path.child("values").index(i).invalid(v, &why));
            }
        }
    }
    errs
}

/// Upstream's `ValidateNodeFieldSelectorRequirement`: `metadata.name` only.
fn node_field_selector_requirement(req: &NodeSelectorRequirement, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" | "NotIn" if values.len() != 1 => errs.push(path.child("values").required("must be only one value when `operator` is 'In' or 'NotIn' for node field selector")),
        "In" | "NotIn" => {}
        op => errs.push(path.child("operator").invalid(op, "not a valid selector operator")),
    }
    if req.key == "metadata.name" {
        for (i, v) in values.iter().enumerate() {
            errs.extend(name_by(dns1123_subdomain, v, &path.child("values").index(i)));
        }
    } else {
        errs.push(path.child("key").invalid(&req.key, "not a valid field selector key"));
    }
    errs
}

/// The keys and values of a topology selector term, for comparing terms.
pub(super) type TermSet = BTreeMap<String, BTreeSet<String>>;

/// Upstream's `ValidateTopologySelectorTerm` (a StorageClass's allowed
/// topologies): keys are label names, each with at least one value, no
/// key or value twice.
pub(super) fn topology_selector_term(term: &TopologySelectorTerm, path: &Path) -> (TermSet, Errors) {
    let mut errs = Vec::new();
    let mut set = TermSet::new();
    for (i, req) in term.match_label_expressions.iter().flatten().enumerate() {
        let at = path.child("matchLabelExpressions").index(i);
        if req.values.is_empty() {
            errs.push(at.child("values").required(""));
        }
        let mut values = BTreeSet::new();
        for (j, v) in req.values.iter().enumerate() {
            if !values.insert(v.clone()) {
                errs.push(at.child("values").index(j).duplicate(v));
            }
        }
        errs.extend(name_by(qualified_name, &req.key, &at.child("key")));
        if set.contains_key(&req.key) {
            errs.push(at.child("key").duplicate(&req.key));
        }
        set.insert(req.key.clone(), values);
    }
    (set, errs)
}

// ---- tolerations, spread, DNS --------------------------------------------

/// Upstream's `ValidateTolerations` (a bad value is reported at
/// `operator`, as upstream does), for pods and RuntimeClasses. Upstream
/// shows the whole toleration when `Exists` has a value; `shown` says how
/// (pods' errors here show the value, as their tests have it).
pub(super) fn tolerations(tolerations: &[Toleration], shown: fn(&Toleration) -> Bad, path: &Path) -> Errors {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let at = path.index(i);
        let key = t.key.as_deref().unwrap_or_default();
        let operator = t.operator.as_deref().unwrap_or_default();
        let value = t.value.as_deref().unwrap_or_default();
        let effect = t.effect.as_deref().unwrap_or_default();
        if !key.is_empty() {
            errs.extend(name_by(qualified_name, key, &at.child("key")));
        }
        if key.is_empty() && operator != "Exists" {
            errs.push(at.child("operator").invalid(operator, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(at.child("effect").invalid(effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"));
        }
        match operator {
            "Equal" | "" => {
                if let Err(why) = label_value(value) {
                    errs.push(at.child("operator").invalid(value, &why));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(at.child("operator").invalid(shown(t), "value must be empty when `operator` is 'Exists'"));
                }
            }
            other => errs.push(at.child("operator").not_supported(other, &["Equal", "Exists"])),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(at.child("effect").not_supported(effect, &TAINT_EFFECTS));
        }
    }
    errs
}

fn topology_spread_constraints(constraints: &[TopologySpreadConstraint], path: &Path) -> Errors {
    let mut errs = Vec::new();
    for (i, c) in constraints.iter().enumerate() {
        let at = path.index(i);
        if c.max_skew <= 0 {
            errs.push(at.child("maxSkew").invalid(c.max_skew, "must be greater than zero"));
        }
        if c.topology_key.is_empty() {
            errs.push(at.child("topologyKey").required("can not be empty"));
        }
        if !matches!(c.when_unsatisfiable.as_str(), "DoNotSchedule" | "ScheduleAnyway") {
            errs.push(at.child("whenUnsatisfiable").not_supported(&c.when_unsatisfiable, &["DoNotSchedule", "ScheduleAnyway"]));
        }
        // {topologyKey, whenUnsatisfiable} is one kind of constraint: once each.
        if constraints[i + 1..].iter().any(|o| o.topology_key == c.topology_key && o.when_unsatisfiable == c.when_unsatisfiable) {
            errs.push(at.child("{topologyKey, whenUnsatisfiable}").duplicate(format!("{{{}, {}}}", c.topology_key, c.when_unsatisfiable)));
        }
        if let Some(min) = c.min_domains {
            if min <= 0 {
                errs.push(at.child("minDomains").invalid(min, "must be greater than zero"));
            }
            if c.when_unsatisfiable != "DoNotSchedule" {
                errs.push(at.child("minDomains").invalid(min, &format!("can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {}", c.when_unsatisfiable)));
            }
        }
        for (field, policy) in [("nodeAffinityPolicy", &c.node_affinity_policy), ("nodeTaintsPolicy", &c.node_taints_policy)] {
            if let Some(policy) = policy.as_deref().filter(|p| !matches!(*p, "Honor" | "Ignore")) {
                errs.push(at.child(field).not_supported(policy, &["Honor", "Ignore"]));
            }
        }
        let keys = c.match_label_keys.as_deref().unwrap_or_default();
        if !keys.is_empty() {
            let at = at.child("matchLabelKeys");
            let in_selector: BTreeSet<&str> = match &c.label_selector {
                Some(s) => s.match_labels.iter().flatten().map(|(k, _)| k.as_str()).chain(s.match_expressions.iter().flatten().map(|e| e.key.as_str())).collect(),
                None => {
                    errs.push(at.forbidden("must not be specified when labelSelector is not set"));
                    BTreeSet::new()
                }
            };
            for (j, key) in keys.iter().enumerate() {
                errs.extend(name_by(qualified_name, key, &at.index(j)));
                if in_selector.contains(key.as_str()) {
                    errs.push(at.index(j).invalid(key, "exists in both matchLabelKeys and labelSelector"));
                }
            }
        }
        if let Some(selector) = &c.label_selector {
            errs.extend(label_selector(selector, &at.child("labelSelector")));
        }
    }
    errs
}

/// Upstream's `validatePodDNSConfig` (strict search names, as 1.32 has
/// them without the RelaxedDNSSearchValidation gate).
fn dns_config(config: Option<&PodDNSConfig>, policy: &str, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let nameservers = config.and_then(|c| c.nameservers.as_deref()).unwrap_or_default();
    if policy == "None" {
        if config.is_none() {
            return vec![path.required("must provide `dnsConfig` when `dnsPolicy` is None")];
        }
        if nameservers.is_empty() {
            return vec![path.child("nameservers").required("must provide at least one DNS nameserver when `dnsPolicy` is None")];
        }
    }
    let Some(config) = config else { return errs };
    if nameservers.len() > MAX_DNS_NAMESERVERS {
        errs.push(path.child("nameservers").invalid(Bad::raw(go_strings(nameservers)), &format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers")));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        errs.extend(valid_ip(ns, &path.child("nameservers").index(i)));
    }
    let searches = config.searches.as_deref().unwrap_or_default();
    if searches.len() > MAX_DNS_SEARCH_PATHS {
        errs.push(path.child("searches").invalid(Bad::raw(go_strings(searches)), &format!("must not have more than {MAX_DNS_SEARCH_PATHS} search paths")));
    }
    if searches.join(" ").len() > MAX_DNS_SEARCH_LIST_CHARS {
        errs.push(path.child("searches").invalid(
            Bad::raw(go_strings(searches)),
            &format!("must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters (including spaces) in the search list"),
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        let search = search.strip_suffix('.').unwrap_or(search);
        errs.extend(name_by(dns1123_subdomain, search, &path.child("searches").index(i)));
    }
    for (i, option) in config.options.iter().flatten().enumerate() {
        if option.name.as_deref().unwrap_or_default().is_empty() {
            errs.push(path.child("options").index(i).required("must not be empty"));
        }
    }
    errs
}

// ---- IPs ---------------------------------------------------------------------

/// Upstream's check of a status IP list of more than one: one IP of each
/// family at most (`netutils.IsDualStackIPStrings`).
fn dual_stack(ips: &[&str], shown: &str, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let parsed: Result<Vec<IpAddr>, &str> = ips.iter().map(|ip| parse_ip_sloppy(ip).ok_or(*ip)).collect();
    let dual = match parsed {
        Ok(parsed) => parsed.iter().any(|ip| is_ipv6(*ip)) && parsed.iter().any(|ip| !is_ipv6(*ip)),
        Err(bad) => {
            errs.push(path.internal(&format!("failed to check for dual stack with error:failed to parse {bad} as an IP")));
            false
        }
    };
    if !dual || ips.len() > 2 {
        errs.push(path.invalid(Bad::raw(shown), "may specify no more than one IP for each IP family"));
    }
    errs
}

/// A one-string structure as Go's `%#v` prints it: `core.PodIP{IP:"…"}`.
fn go_ip_struct(kind: &str, ip: &str) -> String {
    format!("core.{kind}{{IP:{ip:?}}}")
}

// ---- updates -------------------------------------------------------------

const UPDATABLE_POD_SPEC_FIELDS: [&str; 5] = [
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];

/// Upstream's `ValidatePodUpdate`, less what `ValidatePod` already checks:
/// of a pod's spec an update changes only container images,
/// activeDeadlineSeconds (set or lowered), tolerations (added to, or their
/// tolerationSeconds), a negative terminationGracePeriodSeconds (to 1),
/// scheduling gates (removed) and, while the pod is gated, its
/// nodeSelector and node affinity (narrowed only).
pub(super) fn pod_update(new: &Pod, old: &Pod) -> Errors {
    let mut errs = pod_annotation_updates(new, old);
    let (new_spec, old_spec) = (new.spec.clone().unwrap_or_default(), old.spec.clone().unwrap_or_default());
    let path = Path::new("spec");

    let (new_init, old_init) = (new_spec.init_containers.as_deref().unwrap_or_default(), old_spec.init_containers.as_deref().unwrap_or_default());
    for (field, n, o) in [("containers", new_spec.containers.len(), old_spec.containers.len()), ("initContainers", new_init.len(), old_init.len())] {
        if n != o {
            errs.push(path.child(field).forbidden("pod updates may not add or remove containers"));
            return errs;
        }
    }

    let deadline = path.child("activeDeadlineSeconds");
    match (new_spec.active_deadline_seconds, old_spec.active_deadline_seconds) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.extend(inclusive_range(n, 0, i32::MAX.into(), &deadline));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(deadline.invalid(n, "must be less than or equal to previous value"));
            return errs;
        }
        (None, Some(_)) => errs.push(deadline.invalid("null", "must not update from a positive integer to nil value")),
        _ => {}
    }

    // Each existing toleration is kept, but for its tolerationSeconds.
    let same_but_seconds = |a: &Toleration, b: &Toleration| Toleration { toleration_seconds: b.toleration_seconds, ..normal_toleration(a) } == normal_toleration(b);
    let new_tolerations = new_spec.tolerations.as_deref().unwrap_or_default();
    if old_spec.tolerations.iter().flatten().any(|o| !new_tolerations.iter().any(|n| same_but_seconds(o, n))) {
        errs.push(path.child("tolerations").forbidden("existing toleration can not be modified except its tolerationSeconds"));
    }

    // Gates are only ever removed: a pod cannot be held back again.
    let old_gates: BTreeSet<&str> = old_spec.scheduling_gates.iter().flatten().map(|g| g.name.as_str()).collect();
    for (i, gate) in new_spec.scheduling_gates.iter().flatten().enumerate() {
        if !old_gates.contains(gate.name.as_str()) {
            errs.push(path.child("schedulingGates").index(i).child("name").forbidden(&format!("only deletion is allowed, but found new scheduling gate '{}'", gate.name)));
        }
    }

    // What is left once the changes allowed are undone must be unchanged.
    let mut munged = new_spec.clone();
    for (after, before) in munged.containers.iter_mut().zip(&old_spec.containers) {
        after.image = before.image.clone();
    }
    for (after, before) in munged.init_containers.iter_mut().flatten().zip(old_init) {
        after.image = before.image.clone();
    }
    munged.active_deadline_seconds = old_spec.active_deadline_seconds;
    munged.scheduling_gates = old_spec.scheduling_gates.clone();
    munged.tolerations = old_spec.tolerations.clone();
    if old_spec.termination_grace_period_seconds.is_some_and(|g| g < 0) && munged.termination_grace_period_seconds == Some(1) {
        munged.termination_grace_period_seconds = old_spec.termination_grace_period_seconds;
    }
    if !old_gates.is_empty() {
        errs.extend(gated_placement_update(&mut munged, &old_spec, &path));
    }

    let changed = differences("spec", &comparable(&old_spec), &comparable(&munged));
    if !changed.is_empty() {
        errs.push(path.forbidden(&format!("pod updates may not change fields other than {}\n{}", UPDATABLE_POD_SPEC_FIELDS.join(","), changed.join("\n"))));
    }
    errs
}

fn normal_toleration(t: &Toleration) -> Toleration {
    let text = |s: &Option<String>| Some(s.clone().unwrap_or_default());
    Toleration { key: text(&t.key), operator: text(&t.operator), value: text(&t.value), effect: text(&t.effect), toleration_seconds: t.toleration_seconds }
}

/// Upstream's rules for where a gated pod may go: nodeSelector entries
/// may be added but not changed or removed, and once there are required
/// node affinity terms, each may only gain expressions. Undoes in
/// `munged` what it has checked.
fn gated_placement_update(munged: &mut PodSpec, old: &PodSpec, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let (after, before) = (munged.node_selector.clone().unwrap_or_default(), old.node_selector.clone().unwrap_or_default());
    if after != before {
        if before.iter().any(|(k, v)| after.get(k) != Some(v)) {
            errs.push(path.child("nodeSelector").invalid(Bad::raw(go_string_map(Some(&after))), "only additions to spec.nodeSelector are allowed (no mutations or deletions)"));
        }
        munged.node_selector = old.node_selector.clone();
    }

    let old_node = old.affinity.as_ref().and_then(|a| a.node_affinity.clone());
    let new_node = munged.affinity.as_ref().and_then(|a| a.node_affinity.clone());
    if comparable(&old_node) != comparable(&new_node) {
        errs.extend(node_affinity_mutation(new_node.as_ref(), old_node.as_ref(), &path.child("affinity").child("nodeAffinity")));
        let only_node_affinity = munged.affinity.as_ref().is_some_and(|a| a.pod_affinity.is_none() && a.pod_anti_affinity.is_none());
        match munged.affinity.as_mut() {
            None if old_node.is_none() => {}
            None => munged.affinity = Some(Affinity { node_affinity: old_node, ..Affinity::default() }),
            Some(_) if old.affinity.is_none() && only_node_affinity => munged.affinity = None,
            Some(affinity) => affinity.node_affinity = old_node,
        }
    }
    // Pod (anti-)affinity stays as it is: its matchLabelKeys were merged
    // into its selectors when the pod was created.
    errs
}

fn node_affinity_mutation(new: Option<&NodeAffinity>, old: Option<&NodeAffinity>, path: &Path) -> Errors {
    let Some(old_required) = old.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()) else { return vec![] };
    let old_terms = &old_required.node_selector_terms;
    let new_terms = new.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()).map_or(&[][..], |r| r.node_selector_terms.as_slice());
    let terms_path = path.child("requiredDuringSchedulingIgnoredDuringExecution").child("nodeSelectorTerms");
    if !old_terms.is_empty() && old_terms.len() != new_terms.len() {
        return vec![terms_path.invalid(Bad::raw(go_value(&new_terms)), "no additions/deletions to non-empty NodeSelectorTerms list are allowed")];
    }
    let mut errs = Vec::new();
    for (i, (before, after)) in old_terms.iter().zip(new_terms).enumerate() {
        if !only_additions(after, before) {
            errs.push(terms_path.index(i).invalid(Bad::raw(go_value(after)), "only additions are allowed (no mutations or deletions)"));
        }
    }
    errs
}

/// Whether `new` is `old` with requirements appended: an empty term
/// stays empty.
fn only_additions(new: &NodeSelectorTerm, old: &NodeSelectorTerm) -> bool {
    let (old_exprs, old_fields) = (old.match_expressions.as_deref().unwrap_or_default(), old.match_fields.as_deref().unwrap_or_default());
    let (new_exprs, new_fields) = (new.match_expressions.as_deref().unwrap_or_default(), new.match_fields.as_deref().unwrap_or_default());
    if old_exprs.is_empty() && old_fields.is_empty() && !(new_exprs.is_empty() && new_fields.is_empty()) {
        return false;
    }
    let kept = |new: &[NodeSelectorRequirement], old: &[NodeSelectorRequirement]| new.len() >= old.len() && comparable(&new[..old.len()]) == comparable(old);
    kept(new_exprs, old_exprs) && kept(new_fields, old_fields)
}

/// Upstream's `ValidatePodSpecificAnnotationUpdates`: the mirror pod
/// annotation and AppArmor's beta annotations are fixed at creation.
fn pod_annotation_updates(new: &Pod, old: &Pod) -> Errors {
    let mut errs = Vec::new();
    let path = Path::new("metadata").child("annotations");
    let empty = BTreeMap::new();
    let (after, before) = (new.metadata.annotations.as_ref().unwrap_or(&empty), old.metadata.annotations.as_ref().unwrap_or(&empty));
    for (k, v) in before {
        if after.get(k) == Some(v) {
            continue;
        }
        if k.starts_with(APPARMOR_ANNOTATION_PREFIX) {
            errs.push(path.key(k).forbidden("may not remove or update AppArmor annotations"));
        }
        if k == MIRROR_POD_ANNOTATION {
            errs.push(path.key(k).forbidden("may not remove or update mirror pod annotation"));
        }
    }
    for k in after.keys().filter(|k| !before.contains_key(*k)) {
        if k.starts_with(APPARMOR_ANNOTATION_PREFIX) {
            errs.push(path.key(k).forbidden("may not add AppArmor annotations"));
        }
        if k == MIRROR_POD_ANNOTATION {
            errs.push(path.key(k).forbidden("may not add mirror pod annotation"));
        }
    }
    errs
}

// ---- status --------------------------------------------------------------

/// Upstream's `ValidatePodStatusUpdate`.
pub(super) fn pod_status_update(new: &Pod, old: &Pod) -> Errors {
    let mut errs = pod_annotation_updates(new, old);
    let (status, old_status) = (new.status.clone().unwrap_or_default(), old.status.clone().unwrap_or_default());
    let (spec, old_spec) = (new.spec.clone().unwrap_or_default(), old.spec.clone().unwrap_or_default());

    // Upstream reports condition types under `metadata.conditions`.
    const SYSTEM_CONDITIONS: [&str; 3] = ["PodScheduled", "Ready", "Initialized"];
    for (i, condition) in status.conditions.iter().flatten().enumerate() {
        if !SYSTEM_CONDITIONS.contains(&condition.type_.as_str()) {
            errs.extend(name_by(qualified_name, &condition.type_, &Path::new("metadata").child("conditions").index(i).child("Type")));
        }
    }

    let path = Path::new("status");
    if spec.node_name != old_spec.node_name {
        errs.push(path.child("nodeName").forbidden("may not be changed directly"));
    }
    let nominated = status.nominated_node_name.as_deref().unwrap_or_default();
    if nominated != old_status.nominated_node_name.as_deref().unwrap_or_default() && !nominated.is_empty() {
        errs.extend(name_by(dns1123_subdomain, nominated, &path.child("nominatedNodeName")));
    }
    // A status written without a QoS class keeps the old one (upstream's
    // status strategy fills it in before validating); it never changes.
    let qos = status.qos_class.as_deref().filter(|q| !q.is_empty());
    if let Some(qos) = qos {
        let before = old_status.qos_class.as_deref().unwrap_or_default();
        if qos != before {
            errs.push(path.child("qosClass").invalid(qos, IMMUTABLE));
        }
    }

    let restart_policy = old_spec.restart_policy.as_deref().filter(|p| !p.is_empty()).unwrap_or("Always");
    let list = |s: &Option<Vec<ContainerStatus>>| s.clone().unwrap_or_default();
    errs.extend(state_transitions(&list(&status.container_statuses), &list(&old_status.container_statuses), &path.child("containerStatuses"), restart_policy, |_| false));
    let restartable_init: BTreeSet<String> =
        old_spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always")).map(|c| c.name.clone()).collect();
    errs.extend(state_transitions(
        &list(&status.init_container_statuses),
        &list(&old_status.init_container_statuses),
        &path.child("initContainerStatuses"),
        restart_policy,
        |name| restartable_init.contains(name),
    ));
    // The kubelet never restarts ephemeral containers.
    errs.extend(state_transitions(&list(&status.ephemeral_container_statuses), &list(&old_status.ephemeral_container_statuses), &path.child("ephemeralContainerStatuses"), "Never", |_| false));

    errs.extend(resource_claim_statuses(&status, &spec, &path.child("resourceClaimStatuses")));
    errs.extend(status_ips(&status));
    errs
}

/// Upstream's `ValidateContainerStateTransition`: unless the pod restarts
/// its containers, a terminated one stays terminated.
fn state_transitions(new: &[ContainerStatus], old: &[ContainerStatus], path: &Path, restart_policy: &str, restartable: impl Fn(&str) -> bool) -> Errors {
    let mut errs = Vec::new();
    if restart_policy == "Always" {
        return errs;
    }
    let terminated = |s: &ContainerStatus| s.state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code);
    for (i, before) in old.iter().enumerate() {
        let Some(exit_code) = terminated(before) else { continue };
        if (exit_code != 0 && restart_policy == "OnFailure") || restartable(&before.name) {
            continue;
        }
        for _ in new.iter().filter(|s| s.name == before.name && terminated(s).is_none()) {
            errs.push(path.index(i).child("state").forbidden("may not be transitioned to non-terminated state"));
        }
    }
    errs
}

fn resource_claim_statuses(status: &PodStatus, spec: &PodSpec, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let claims: BTreeSet<&str> = spec.resource_claims.iter().flatten().map(|c| c.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    for (i, claim) in status.resource_claim_statuses.iter().flatten().enumerate() {
        let at = path.index(i).child("name");
        if !claims.contains(claim.name.as_str()) {
            errs.push(at.invalid(&claim.name, "must match the name of an entry in `spec.resourceClaims`"));
        }
        if !seen.insert(claim.name.as_str()) {
            errs.push(at.duplicate(&claim.name));
        }
        // Upstream reports a bad claim name at `name` too.
        if let Some(name) = &claim.resource_claim_name {
            errs.extend(name_by(dns1123_subdomain, name, &at));
        }
    }
    errs
}

/// Upstream's `validatePodIPs` and `validateHostIPs`.
fn status_ips(status: &PodStatus) -> Errors {
    let mut errs = Vec::new();
    let pod_ips: Vec<&str> = status.pod_ips.iter().flatten().map(|p| p.ip.as_str()).collect();
    let path = Path::new("status").child("podIPs");
    for (i, ip) in pod_ips.iter().enumerate() {
        errs.extend(valid_ip(ip, &path.index(i)));
    }
    if pod_ips.len() > 1 {
        let shown: Vec<String> = pod_ips.iter().map(|ip| go_ip_struct("PodIP", ip)).collect();
        errs.extend(dual_stack(&pod_ips, &format!("[]core.PodIP{{{}}}", shown.join(", ")), &path));
        for (i, ip) in pod_ips.iter().enumerate() {
            if pod_ips[..i].contains(ip) {
                errs.push(path.index(i).duplicate(Bad::raw(go_ip_struct("PodIP", ip))));
            }
        }
    }

    let host_ips: Vec<&str> = status.host_ips.iter().flatten().map(|p| p.ip.as_str()).collect();
    if host_ips.is_empty() {
        return errs;
    }
    let path = Path::new("status").child("hostIPs");
    if status.host_ip.as_deref().unwrap_or_default() != host_ips[0] {
        errs.push(path.index(0).child("ip").invalid(host_ips[0], "must be equal to `hostIP`"));
    }
    for (i, ip) in host_ips.iter().enumerate() {
        errs.extend(valid_ip(ip, &path.index(i)));
    }
    if host_ips.len() > 1 {
        for (i, ip) in host_ips.iter().enumerate() {
            if host_ips[..i].contains(ip) {
                errs.push(path.index(i).duplicate(Bad::raw(go_ip_struct("HostIP", ip))));
            }
        }
        let shown: Vec<String> = host_ips.iter().map(|ip| go_ip_struct("HostIP", ip)).collect();
        errs.extend(dual_stack(&host_ips, &format!("[]core.HostIP{{{}}}", shown.join(", ")), &path));
    }
    errs
}

// ---- ephemeral containers --------------------------------------------------

/// Upstream's `ValidatePodEphemeralContainersUpdate`, on whole pods:
/// ephemeral containers are added, never removed or changed, and a new
/// one's name is unused in the pod. Static pods have none.
pub fn ephemeral_containers_update(new: &Value, old: &Value) -> Errors {
    if old.pointer("/metadata/annotations").and_then(Value::as_object).is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION)) {
        return vec![Path::new("").forbidden("static pods do not support ephemeral containers")];
    }
    let list = |pod: &Value, field: &str| pod.pointer(&format!("/spec/{field}")).and_then(Value::as_array).cloned().unwrap_or_default();
    let (after, before) = (list(new, "ephemeralContainers"), list(old, "ephemeralContainers"));
    let path = Path::new("spec").child("ephemeralContainers");
    let mut errs = Vec::new();
    for b in &before {
        let name = b["name"].as_str().unwrap_or_default();
        let message = match after.iter().find(|a| a["name"] == b["name"]) {
            None => format!("existing ephemeral containers {name:?} may not be removed\n"),
            Some(a) if a != b => {
                let changed = differences(&format!("spec.ephemeralContainers[{name}]"), b, a);
                format!("existing ephemeral containers {name:?} may not be changed\n{}", changed.join("\n"))
            }
            Some(_) => continue,
        };
        errs.push(path.forbidden(&message));
    }
    // The new containers are checked with the rest of the pod (names
    // unique among all containers, no ports or probes, ...).
    match Pod::deserialize(new) {
        Ok(pod) => errs.extend(super::pod::pod_metadata_and_spec(&pod)),
        Err(e) => errs.push(Path::new("").internal(&e.to_string())),
    }
    errs
}

// ---- comparing specs -------------------------------------------------------

/// Fields that Go holds as maps or plain structures, where empty and
/// missing are the same (as for every list); an empty pointer to a
/// structure (`emptyDir: {}`) is not missing.
const EMPTY_AS_MISSING: [&str; 7] = ["nodeSelector", "limits", "requests", "overhead", "matchLabels", "volumeAttributes", "resources"];

/// `value` as JSON with empty lists and maps left out, so that equal
/// values compare equal as upstream's semantic equality has them.
fn comparable<T: serde::Serialize + ?Sized>(value: &T) -> Value {
    fn strip(v: Value) -> Value {
        match v {
            Value::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k, strip(v)))
                    .filter(|(k, v)| match v {
                        Value::Null => false,
                        Value::Array(a) => !a.is_empty(),
                        Value::Object(o) => !(o.is_empty() && EMPTY_AS_MISSING.contains(&k.as_str())),
                        _ => true,
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.into_iter().map(strip).collect()),
            other => other,
        }
    }
    strip(serde_json::to_value(value).unwrap_or(Value::Null))
}


#[cfg(test)]
mod tests {
    use super::super::testing::{messages, table, update_table, with};
    use super::super::Op;
    use super::*;
    use serde_json::json;

    /// A pod as stored: defaulted as Skiff defaults it.
    fn pod() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}, "spec": {
            "containers": [{"name": "web", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "resources": {}}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst", "securityContext": {}, "schedulerName": "default-scheduler", "enableServiceLinks": true}})
    }

    fn spec(change: Value) -> Value {
        with(&pod(), json!({"spec": change}))
    }

    fn required_terms(terms: Value) -> Value {
        spec(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
    }

    fn expressions(exprs: Value) -> Value {
        required_terms(json!([{"matchExpressions": exprs}]))
    }

    fn fields(reqs: Value) -> Value {
        required_terms(json!([{"matchFields": reqs}]))
    }

    fn pod_affinity(term: Value) -> Value {
        spec(json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}}))
    }

    fn spread(constraints: Value) -> Value {
        spec(json!({"topologySpreadConstraints": constraints}))
    }

    fn toleration(t: Value) -> Value {
        spec(json!({"tolerations": [t]}))
    }

    fn dns(config: Value) -> Value {
        spec(json!({"dnsPolicy": "None", "dnsConfig": config}))
    }

    const REQUIRED_TERMS: &str = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms";
    const POD_TERM: &str = "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]";

    #[test]
    fn pod_placement_valid() {
        let zone_spread = json!({"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}});
        table("", "Pod", &[
            ("plain", pod(), ""),
            ("undefaulted dnsPolicy", with(&pod(), json!({"spec": {"dnsPolicy": null}})), ""),
            ("empty dnsPolicy", spec(json!({"dnsPolicy": ""})), ""),
            ("real-world affinity", spec(json!({"affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                        {"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]}]},
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 1, "preference": {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-west-1a"]}]}},
                        {"weight": 100, "preference": {"matchExpressions": [{"key": "example.com/cpus", "operator": "Gt", "values": ["4"]}]}}]},
                "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "topology.kubernetes.io/zone", "namespaces": ["default", "cache"]}]},
                "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
                    "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
                    "topologyKey": "kubernetes.io/hostname", "matchLabelKeys": ["pod-template-hash"], "mismatchLabelKeys": ["tenant"], "namespaceSelector": {}}}]}}})), ""),
            ("daemonset's node affinity", fields(json!([{"key": "metadata.name", "operator": "In", "values": ["node-1"]}])), ""),
            ("an empty term", required_terms(json!([{}])), ""),
            ("Lt", expressions(json!([{"key": "example.com/gpus", "operator": "Lt", "values": ["2"]}])), ""),
            ("tolerations as admission and kubeadm add them", spec(json!({"tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "CriticalAddonsOnly", "operator": "Exists"},
                {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
                {"operator": "Exists"},
                {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "PreferNoSchedule"},
                {"key": "dedicated", "value": "gpu"}]})), ""),
            ("spread constraints", spread(json!([zone_spread, {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "minDomains": 3,
                "labelSelector": {"matchLabels": {"app": "web"}}, "matchLabelKeys": ["pod-template-hash"], "nodeAffinityPolicy": "Honor", "nodeTaintsPolicy": "Ignore"}])), ""),
            ("one key, both actions", spread(json!([zone_spread, with(&zone_spread, json!({"whenUnsatisfiable": "DoNotSchedule"}))])), ""),
            ("custom DNS", dns(json!({"nameservers": ["1.1.1.1", "2001:4860:4860::8888"], "searches": ["ns1.svc.cluster.local", "example.com."],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})), ""),
            ("DNS options with ClusterFirst", spec(json!({"dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}})), ""),
            ("host network DNS", spec(json!({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": true})), ""),
            ("node's DNS", spec(json!({"dnsPolicy": "Default"})), ""),
            ("stateful set's names", spec(json!({"hostname": "web-0", "subdomain": "web"})), ""),
            ("host aliases", spec(json!({"hostAliases": [{"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]}, {"ip": "::1", "hostnames": ["foo.remote"]},
                {"ip": "010.0.0.1", "hostnames": ["octal.looking"]}]})), ""),
            ("scheduling gates", spec(json!({"schedulingGates": [{"name": "example.com/foo"}, {"name": "bar"}]})), ""),
            ("readiness gates", spec(json!({"readinessGates": [{"conditionType": "target-health.elbv2.k8s.aws/k8s-default-web-0123456789"}]})), ""),
            ("priority", spec(json!({"priorityClassName": "system-node-critical", "priority": 2000001000, "preemptionPolicy": "PreemptLowerPriority"})), ""),
            ("never preempts", spec(json!({"preemptionPolicy": "Never"})), ""),
            ("bound", spec(json!({"nodeName": "node-1.example.com"})), ""),
            ("node selector", spec(json!({"nodeSelector": {"kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "m5.large"}})), ""),
        ]);
    }

    #[test]
    fn pod_placement_invalid() {
        let long_search = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61));
        let zone = json!({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}});
        let bad_spread = |change: Value| spread(json!([with(&zone, change)]));
        let sel = json!({"matchLabels": {"app": "web"}});
        let term = |change: Value| pod_affinity(with(&json!({"labelSelector": sel, "topologyKey": "kubernetes.io/hostname"}), change));
        let in_terms = |rest: &str| format!("{REQUIRED_TERMS}{rest}");
        let in_pod_term = |rest: &str| format!("{POD_TERM}{rest}");
        let cases: Vec<(&str, Value, String)> = vec![
            // node affinity
            ("no node selector terms", required_terms(json!([])), in_terms(": Required value: must have at least one node selector term")),
            ("node selector terms missing", spec(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}})), in_terms(": Required value: must have at least one node selector term")),
            ("In without values", expressions(json!([{"key": "a", "operator": "In"}])), in_terms("[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'")),
            ("NotIn with no values", expressions(json!([{"key": "a", "operator": "NotIn", "values": []}])), in_terms("[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'")),
            ("Exists with values", expressions(json!([{"key": "a", "operator": "Exists", "values": ["x"]}])), in_terms("[0].matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'")),
            ("DoesNotExist with values", expressions(json!([{"key": "a", "operator": "DoesNotExist", "values": ["x"]}])), in_terms("[0].matchExpressions[0].values: Forbidden: may not be specified")),
            ("Gt with two values", expressions(json!([{"key": "a", "operator": "Gt", "values": ["1", "2"]}])), in_terms("[0].matchExpressions[0].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'")),
            ("Lt without values", expressions(json!([{"key": "a", "operator": "Lt"}])), in_terms("[0].matchExpressions[0].values: Required value: must be specified single value")),
            ("unknown operator", expressions(json!([{"key": "a", "operator": "Equals", "values": ["x"]}])), in_terms("[0].matchExpressions[0].operator: Invalid value: \"Equals\": not a valid selector operator")),
            ("bad key", expressions(json!([{"key": "-bad", "operator": "Exists"}])), in_terms("[0].matchExpressions[0].key: Invalid value: \"-bad\": name part must consist of alphanumeric characters")),
            ("second expression", expressions(json!([{"key": "a", "operator": "Exists"}, {"key": "", "operator": "Exists"}])), in_terms("[0].matchExpressions[1].key: Invalid value: \"\": name part must be non-empty")),
            ("field other than the name", fields(json!([{"key": "metadata.namespace", "operator": "In", "values": ["x"]}])), in_terms("[0].matchFields[0].key: Invalid value: \"metadata.namespace\": not a valid field selector key")),
            ("field Exists", fields(json!([{"key": "metadata.name", "operator": "Exists"}])), in_terms("[0].matchFields[0].operator: Invalid value: \"Exists\": not a valid selector operator")),
            ("field with two names", fields(json!([{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}])), in_terms("[0].matchFields[0].values: Required value: must be only one value when `operator` is 'In' or 'NotIn' for node field selector")),
            ("field with a bad name", fields(json!([{"key": "metadata.name", "operator": "NotIn", "values": ["Node_1"]}])), in_terms("[0].matchFields[0].values[0]: Invalid value: \"Node_1\": a lowercase RFC 1123 subdomain")),
            ("preferred weight 0", spec(json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "preference": {}}]}}})),
                "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: must be in the range 1-100".into()),
            ("preferred weight 101", spec(json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 101, "preference": {}}]}}})),
                "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 101: must be in the range 1-100".into()),
            ("preferred preference", spec(json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "preference": {"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]}}]}}})),
                "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].preference.matchExpressions[0].operator: Invalid value: \"in\": not a valid selector operator".into()),
            // pod affinity
            ("bad topology key", term(json!({"topologyKey": "bad key"})), in_pod_term(".topologyKey: Invalid value: \"bad key\": name part must consist")),
            ("selector In without values", term(json!({"labelSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}})), in_pod_term(".labelSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'")),
            ("selector bad label value", term(json!({"labelSelector": {"matchLabels": {"app": "bad value"}}})), in_pod_term(".labelSelector.matchLabels: Invalid value: \"bad value\": a valid label must be")),
            ("namespace selector operator", term(json!({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Is", "values": ["a"]}]}})), in_pod_term(".namespaceSelector.matchExpressions[0].operator: Invalid value: \"Is\": not a valid selector operator")),
            ("bad namespace", term(json!({"namespaces": ["default", "Prod"]})), in_pod_term(".namespace: Invalid value: \"Prod\": a lowercase RFC 1123 label")),
            ("matchLabelKeys without selector", pod_affinity(json!({"topologyKey": "zone", "matchLabelKeys": ["app"]})), in_pod_term(".matchLabelKeys: Forbidden: must not be specified when labelSelector is not set")),
            ("mismatchLabelKeys without selector", pod_affinity(json!({"topologyKey": "zone", "mismatchLabelKeys": ["app"]})), in_pod_term(".mismatchLabelKeys: Forbidden: must not be specified when labelSelector is not set")),
            ("bad matchLabelKeys key", term(json!({"matchLabelKeys": ["a b"]})), in_pod_term(".matchLabelKeys[0]: Invalid value: \"a b\"")),
            ("bad mismatchLabelKeys key", term(json!({"mismatchLabelKeys": ["ok", "/x"]})), in_pod_term(".mismatchLabelKeys[1]: Invalid value: \"/x\": prefix part must be non-empty")),
            ("key both matched and mismatched", term(json!({"matchLabelKeys": ["tenant"], "mismatchLabelKeys": ["tenant"]})), in_pod_term(".matchLabelKeys[0]: Invalid value: \"tenant\": exists in both matchLabelKeys and mismatchLabelKeys")),
            ("matchLabelKeys key already selected", term(json!({"labelSelector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}, "matchLabelKeys": ["app"]})),
                in_pod_term("[0]: Invalid value: \"app\": exists in both matchLabelKeys and labelSelector")),
            ("anti-affinity weight", spec(json!({"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": -1, "podAffinityTerm": {"topologyKey": "zone"}}]}}})),
                "spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: -1: must be in the range 1-100".into()),
            ("anti-affinity topology key", spec(json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "a/b/c"}]}}})),
                "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters".into()),
            ("preferred pod affinity term", spec(json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": {"topologyKey": "zone", "namespaces": ["a_b"]}}]}}})),
                "spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.namespace: Invalid value: \"a_b\"".into()),
            // tolerations
            ("toleration key", toleration(json!({"key": "bad key", "operator": "Exists"})), "spec.tolerations[0].key: Invalid value: \"bad key\": name part must consist".into()),
            ("no key, Equal", toleration(json!({"operator": "Equal", "value": "x"})), "spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"".into()),
            ("no key, no operator", toleration(json!({"effect": "NoSchedule"})), "spec.tolerations[0].operator: Invalid value: \"\": operator must be Exists when `key` is empty".into()),
            ("seconds with NoSchedule", toleration(json!({"key": "a", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60})), "spec.tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set".into()),
            ("seconds with any effect", toleration(json!({"key": "a", "operator": "Exists", "tolerationSeconds": 60})), "spec.tolerations[0].effect: Invalid value: \"\": effect must be 'NoExecute' when `tolerationSeconds` is set".into()),
            ("Exists with a value", toleration(json!({"key": "dedicated", "operator": "Exists", "value": "gpu"})), "spec.tolerations[0].operator: Invalid value: \"gpu\": value must be empty when `operator` is 'Exists'".into()),
            ("Equal with a bad value", toleration(json!({"key": "dedicated", "operator": "Equal", "value": "not valid"})), "spec.tolerations[0].operator: Invalid value: \"not valid\": a valid label must be".into()),
            ("unknown operator", toleration(json!({"key": "a", "operator": "In"})), "spec.tolerations[0].operator: Unsupported value: \"In\": supported values: \"Equal\", \"Exists\"".into()),
            ("unknown effect", toleration(json!({"key": "a", "operator": "Exists", "effect": "NoRun"})), "spec.tolerations[0].effect: Unsupported value: \"NoRun\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"".into()),
            ("second toleration", spec(json!({"tolerations": [{"operator": "Exists"}, {"key": "a", "operator": "Exists", "effect": "noexecute"}]})), "spec.tolerations[1].effect: Unsupported value: \"noexecute\"".into()),
            // topology spread
            ("maxSkew 0", bad_spread(json!({"maxSkew": 0})), "spec.topologySpreadConstraints[0].maxSkew: Invalid value: 0: must be greater than zero".into()),
            ("maxSkew missing", with(&spread(json!([zone])), json!({"spec": {"topologySpreadConstraints": [{"topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}})), "spec.topologySpreadConstraints[0].maxSkew: Invalid value: 0: must be greater than zero".into()),
            ("negative maxSkew", bad_spread(json!({"maxSkew": -1})), "spec.topologySpreadConstraints[0].maxSkew: Invalid value: -1: must be greater than zero".into()),
            ("no topology key", bad_spread(json!({"topologyKey": ""})), "spec.topologySpreadConstraints[0].topologyKey: Required value: can not be empty".into()),
            ("unknown action", bad_spread(json!({"whenUnsatisfiable": "Never"})), "spec.topologySpreadConstraints[0].whenUnsatisfiable: Unsupported value: \"Never\": supported values: \"DoNotSchedule\", \"ScheduleAnyway\"".into()),
            ("no action", bad_spread(json!({"whenUnsatisfiable": null})), "spec.topologySpreadConstraints[0].whenUnsatisfiable: Unsupported value: \"\": supported values: \"DoNotSchedule\", \"ScheduleAnyway\"".into()),
            ("same key and action twice", spread(json!([zone, with(&zone, json!({"maxSkew": 2}))])), "spec.topologySpreadConstraints[0].{topologyKey, whenUnsatisfiable}: Duplicate value: \"{zone, DoNotSchedule}\"".into()),
            ("minDomains 0", bad_spread(json!({"minDomains": 0})), "spec.topologySpreadConstraints[0].minDomains: Invalid value: 0: must be greater than zero".into()),
            ("minDomains when scheduling anyway", bad_spread(json!({"minDomains": 2, "whenUnsatisfiable": "ScheduleAnyway"})), "spec.topologySpreadConstraints[0].minDomains: Invalid value: 2: can only use minDomains if whenUnsatisfiable=DoNotSchedule, not ScheduleAnyway".into()),
            ("node affinity policy", bad_spread(json!({"nodeAffinityPolicy": "Always"})), "spec.topologySpreadConstraints[0].nodeAffinityPolicy: Unsupported value: \"Always\": supported values: \"Honor\", \"Ignore\"".into()),
            ("node taints policy", bad_spread(json!({"nodeTaintsPolicy": "honor"})), "spec.topologySpreadConstraints[0].nodeTaintsPolicy: Unsupported value: \"honor\": supported values: \"Honor\", \"Ignore\"".into()),
            ("matchLabelKeys without selector", bad_spread(json!({"labelSelector": null, "matchLabelKeys": ["pod-template-hash"]})), "spec.topologySpreadConstraints[0].matchLabelKeys: Forbidden: must not be specified when labelSelector is not set".into()),
            ("matchLabelKeys key selected", bad_spread(json!({"matchLabelKeys": ["app"]})), "spec.topologySpreadConstraints[0].matchLabelKeys[0]: Invalid value: \"app\": exists in both matchLabelKeys and labelSelector".into()),
            ("bad matchLabelKeys key", bad_spread(json!({"matchLabelKeys": ["-x"]})), "spec.topologySpreadConstraints[0].matchLabelKeys[0]: Invalid value: \"-x\"".into()),
            ("bad selector", bad_spread(json!({"labelSelector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["web"]}]}})), "spec.topologySpreadConstraints[0].labelSelector.matchExpressions[0].values: Forbidden".into()),
            // DNS
            ("unknown DNS policy", spec(json!({"dnsPolicy": "Cluster"})), "spec.dnsPolicy: Unsupported value: \"Cluster\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"".into()),
            ("None without config", spec(json!({"dnsPolicy": "None"})), "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None".into()),
            ("None without nameservers", dns(json!({"searches": ["example.com"]})), "spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None".into()),
            ("four nameservers", dns(json!({"nameservers": ["1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4"]})), "spec.dnsConfig.nameservers: Invalid value: []string{\"1.1.1.1\", \"1.0.0.1\", \"8.8.8.8\", \"8.8.4.4\"}: must not have more than 3 nameservers".into()),
            ("bad nameserver", dns(json!({"nameservers": ["1.1.1"]})), "spec.dnsConfig.nameservers[0]: Invalid value: \"1.1.1\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()),
            ("33 searches", dns(json!({"nameservers": ["1.1.1.1"], "searches": (0..33).map(|i| format!("s{i}.example.com")).collect::<Vec<_>>()})), "spec.dnsConfig.searches: Invalid value: []string{\"s0.example.com\", ".into()),
            ("search list too long", dns(json!({"nameservers": ["1.1.1.1"], "searches": vec![long_search.clone(); 9]})), "spec.dnsConfig.searches: Invalid value: []string{".into()),
            ("bad search", dns(json!({"nameservers": ["1.1.1.1"], "searches": ["Example.com"]})), "spec.dnsConfig.searches[0]: Invalid value: \"Example.com\": a lowercase RFC 1123 subdomain".into()),
            ("search with an empty label", spec(json!({"dnsConfig": {"searches": ["ok.com", "bad..com."]}})), "spec.dnsConfig.searches[1]: Invalid value: \"bad..com\": a lowercase RFC 1123 subdomain".into()),
            ("nameless option", spec(json!({"dnsConfig": {"options": [{"value": "2"}]}})), "spec.dnsConfig.options[0]: Required value: must not be empty".into()),
            // names and the rest
            ("bad hostname", spec(json!({"hostname": "web_0"})), "spec.hostname: Invalid value: \"web_0\": a lowercase RFC 1123 label".into()),
            ("dotted subdomain", spec(json!({"subdomain": "a.b"})), "spec.subdomain: Invalid value: \"a.b\": a lowercase RFC 1123 label".into()),
            ("bad node name", spec(json!({"nodeName": "Node_1"})), "spec.nodeName: Invalid value: \"Node_1\": a lowercase RFC 1123 subdomain".into()),
            ("bad host alias IP", spec(json!({"hostAliases": [{"ip": "foo", "hostnames": ["a"]}]})), "spec.hostAliases[0].ip: Invalid value: \"foo\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()),
            ("host alias without IP", spec(json!({"hostAliases": [{"hostnames": ["a"]}]})), "spec.hostAliases[0].ip: Invalid value: \"\": must be a valid IP address".into()),
            ("host alias with a zone", spec(json!({"hostAliases": [{"ip": "fe80::1%eth0"}]})), "spec.hostAliases[0].ip: Invalid value: \"fe80::1%eth0\": must be a valid IP address".into()),
            ("bad host alias name", spec(json!({"hostAliases": [{"ip": "10.0.0.1", "hostnames": ["ok", "Foo_Bar"]}]})), "spec.hostAliases[0].hostnames[1]: Invalid value: \"Foo_Bar\": a lowercase RFC 1123 subdomain".into()),
            ("bad scheduling gate", spec(json!({"schedulingGates": [{"name": "bad gate"}]})), "spec.schedulingGates[0]: Invalid value: \"bad gate\": name part must consist".into()),
            ("scheduling gate twice", spec(json!({"schedulingGates": [{"name": "foo"}, {"name": "foo"}]})), "spec.schedulingGates[1]: Duplicate value: \"foo\"".into()),
            ("bound while gated", spec(json!({"schedulingGates": [{"name": "foo"}], "nodeName": "node-1"})), "spec.nodeName: Forbidden: cannot be set until all schedulingGates have been cleared".into()),
            ("bad readiness gate", spec(json!({"readinessGates": [{"conditionType": "bad type"}]})), "spec.readinessGates[0].conditionType: Invalid value: \"bad type\": name part must consist".into()),
            ("readiness gate without type", spec(json!({"readinessGates": [{}]})), "spec.readinessGates[0].conditionType: Invalid value: \"\": name part must be non-empty".into()),
            ("bad priority class", spec(json!({"priorityClassName": "High_Priority"})), "spec.priorityClassName: Invalid value: \"High_Priority\": a lowercase RFC 1123 subdomain".into()),
            ("unknown preemption policy", spec(json!({"preemptionPolicy": "Sometimes"})), "spec.preemptionPolicy: Unsupported value: \"Sometimes\": supported values: \"PreemptLowerPriority\", \"Never\"".into()),
            ("empty preemption policy", spec(json!({"preemptionPolicy": ""})), "spec.preemptionPolicy: Required value".into()),
            ("bad node selector value", spec(json!({"nodeSelector": {"disk": "fast ssd"}})), "spec.nodeSelector: Invalid value: \"fast ssd\": a valid label must be".into()),
            ("bad node selector key", spec(json!({"nodeSelector": {"disk type": "ssd"}})), "spec.nodeSelector: Invalid value: \"disk type\": name part must consist".into()),
        ];
        assert!(cases.len() >= 60, "{} cases", cases.len());
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        table("", "Pod", &cases);
    }

    #[test]
    fn pod_placement_reports_every_error() {
        let got = messages("", "Pod", Op::Create(&spec(json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {}}]}}}))));
        let at = "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey";
        assert_eq!(got, [format!("{at}: Required value: can not be empty"), format!("{at}: Invalid value: \"\": name part must be non-empty")]);
        let got = messages("", "Pod", Op::Create(&spec(json!({"hostname": "A", "tolerations": [{"key": "a", "operator": "Exists", "value": "b", "effect": "Never"}]}))));
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(got[0].starts_with("spec.hostname:") && got[1].starts_with("spec.tolerations[0].operator:") && got[2].starts_with("spec.tolerations[0].effect:"), "{got:#?}");
    }

    #[test]
    fn templates_may_be_bound_and_gated() {
        // Only a pod is refused a node while gated (upstream's ValidatePodCreate).
        let spec: PodSpec = serde_json::from_value(json!({"containers": [], "nodeName": "n", "schedulingGates": [{"name": "g"}]})).unwrap();
        assert!(pod_spec_placement(&spec, &Path::new("spec.template.spec")).is_empty());
        assert_eq!(pod_spec_placement(&spec, &Path::new("spec")).len(), 1);
    }

    fn typed(v: &Value) -> Pod {
        serde_json::from_value(v.clone()).unwrap()
    }

    fn update_messages(new: &Value, old: &Value) -> Vec<String> {
        pod_update(&typed(new), &typed(old)).iter().map(ToString::to_string).collect()
    }

    const NOT_OTHER_FIELDS: &str = "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n";

    fn running() -> Value {
        let init = json!({"name": "init", "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "resources": {}});
        spec(json!({"activeDeadlineSeconds": 600, "nodeName": "node-1", "initContainers": [init],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]}))
    }

    #[test]
    fn pod_update_rules() {
        let old = running();
        let not_ready = json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300});
        let container = old["spec"]["containers"][0].clone();
        let other_fields = |lines: &str| format!("{NOT_OTHER_FIELDS}{lines}");
        let cases: Vec<(&str, Value, String)> = vec![
            ("unchanged", old.clone(), String::new()),
            ("metadata", with(&old, json!({"metadata": {"labels": {"app": "web", "tier": "front"}, "annotations": {"note": "x"}}})), String::new()),
            ("image", with(&old, json!({"spec": {"containers": [with(&container, json!({"image": "nginx:1.28"}))]}})), String::new()),
            ("init image", with(&old, json!({"spec": {"initContainers": [with(&old["spec"]["initContainers"][0], json!({"image": "busybox:1.37"}))]}})), String::new()),
            ("deadline lowered", with(&old, json!({"spec": {"activeDeadlineSeconds": 60}})), String::new()),
            ("toleration added", with(&old, json!({"spec": {"tolerations": [not_ready, {"key": "example.com/spot", "operator": "Exists"}]}})), String::new()),
            ("tolerationSeconds changed", with(&old, json!({"spec": {"tolerations": [with(&not_ready, json!({"tolerationSeconds": 30}))]}})), String::new()),
            ("tolerationSeconds removed", with(&old, json!({"spec": {"tolerations": [with(&not_ready, json!({"tolerationSeconds": null}))]}})), String::new()),
            ("container added", with(&old, json!({"spec": {"containers": [container, with(&container, json!({"name": "sidecar"}))]}})), "spec.containers: Forbidden: pod updates may not add or remove containers".into()),
            ("init container removed", with(&old, json!({"spec": {"initContainers": null}})), "spec.initContainers: Forbidden: pod updates may not add or remove containers".into()),
            ("deadline raised", with(&old, json!({"spec": {"activeDeadlineSeconds": 700}})), "spec.activeDeadlineSeconds: Invalid value: 700: must be less than or equal to previous value".into()),
            ("deadline removed", with(&old, json!({"spec": {"activeDeadlineSeconds": null}})), "spec.activeDeadlineSeconds: Invalid value: \"null\": must not update from a positive integer to nil value".into()),
            ("toleration changed", with(&old, json!({"spec": {"tolerations": [with(&not_ready, json!({"effect": "NoSchedule", "tolerationSeconds": null}))]}})), "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds".into()),
            ("toleration removed", with(&old, json!({"spec": {"tolerations": [{"key": "example.com/spot", "operator": "Exists"}]}})), "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds".into()),
            ("container renamed", with(&old, json!({"spec": {"containers": [with(&container, json!({"name": "nginx"}))]}})), other_fields("  spec.containers[0].name: \"web\" → \"nginx\"")),
            ("env added", with(&old, json!({"spec": {"containers": [with(&container, json!({"env": [{"name": "A", "value": "1"}]}))]}})), other_fields("  spec.containers[0].env: null → [{\"name\":\"A\",\"value\":\"1\"}]")),
            ("restart policy", with(&old, json!({"spec": {"restartPolicy": "Never"}})), other_fields("  spec.restartPolicy: \"Always\" → \"Never\"")),
            ("grace period", with(&old, json!({"spec": {"terminationGracePeriodSeconds": 10}})), other_fields("  spec.terminationGracePeriodSeconds: 30 → 10")),
            ("node selector while ungated", with(&old, json!({"spec": {"nodeSelector": {"disk": "ssd"}}})), other_fields("  spec.nodeSelector: null → {\"disk\":\"ssd\"}")),
            ("node moved", with(&old, json!({"spec": {"nodeName": "node-2"}})), other_fields("  spec.nodeName: \"node-1\" → \"node-2\"")),
            ("DNS policy", with(&old, json!({"spec": {"dnsPolicy": "Default"}})), other_fields("  spec.dnsPolicy: \"ClusterFirst\" → \"Default\"")),
        ];
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        update_table("", "Pod", &old, &cases);
    }

    #[test]
    fn pod_update_edges() {
        let old = running();
        // Out of range: reported, and nothing after it.
        let got = update_messages(&with(&old, json!({"spec": {"activeDeadlineSeconds": -1, "restartPolicy": "Never"}})), &old);
        assert_eq!(got, ["spec.activeDeadlineSeconds: Invalid value: -1: must be between 0 and 2147483647, inclusive"]);
        // Set where there was none.
        assert_eq!(update_messages(&old, &with(&old, json!({"spec": {"activeDeadlineSeconds": null}}))), Vec::<String>::new());
        // A negative grace period may become 1, and nothing else.
        let negative = with(&old, json!({"spec": {"terminationGracePeriodSeconds": -1}}));
        assert_eq!(update_messages(&with(&old, json!({"spec": {"terminationGracePeriodSeconds": 1}})), &negative), Vec::<String>::new());
        assert!(update_messages(&with(&old, json!({"spec": {"terminationGracePeriodSeconds": 2}})), &negative)[0].starts_with(NOT_OTHER_FIELDS));
        // Empty lists and maps are as good as missing.
        assert_eq!(update_messages(&with(&old, json!({"spec": {"volumes": [], "nodeSelector": {}, "imagePullSecrets": []}})), &old), Vec::<String>::new());
        let container = with(&old["spec"]["containers"][0], json!({"resources": null, "env": []}));
        assert_eq!(update_messages(&with(&old, json!({"spec": {"containers": [container]}})), &old), Vec::<String>::new());
        // Every change is listed.
        let got = update_messages(&with(&old, json!({"spec": {"hostname": "h", "subdomain": "s"}})), &old);
        assert_eq!(got, [format!("{NOT_OTHER_FIELDS}  spec.hostname: null → \"h\"\n  spec.subdomain: null → \"s\"")]);
        // The mirror pod and AppArmor annotations are fixed.
        let annotated = |a: Value| with(&old, json!({"metadata": {"annotations": a}}));
        let mirror = annotated(json!({"kubernetes.io/config.mirror": "abc"}));
        assert_eq!(update_messages(&mirror, &old), ["metadata.annotations[kubernetes.io/config.mirror]: Forbidden: may not add mirror pod annotation"]);
        assert_eq!(update_messages(&old, &mirror), ["metadata.annotations[kubernetes.io/config.mirror]: Forbidden: may not remove or update mirror pod annotation"]);
        assert_eq!(update_messages(&mirror, &mirror), Vec::<String>::new());
        let apparmor = annotated(json!({"container.apparmor.security.beta.kubernetes.io/web": "runtime/default"}));
        assert_eq!(update_messages(&apparmor, &old), ["metadata.annotations[container.apparmor.security.beta.kubernetes.io/web]: Forbidden: may not add AppArmor annotations"]);
        let changed = annotated(json!({"container.apparmor.security.beta.kubernetes.io/web": "unconfined"}));
        assert_eq!(update_messages(&changed, &apparmor), ["metadata.annotations[container.apparmor.security.beta.kubernetes.io/web]: Forbidden: may not remove or update AppArmor annotations"]);
    }

    fn gated(selector: Value, terms: Value) -> Value {
        spec(json!({"schedulingGates": [{"name": "example.com/wait"}, {"name": "quota"}], "nodeSelector": selector,
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
    }

    /// The rules moved from the apiserver's strategy, and upstream's for
    /// gated pods.
    #[test]
    fn gated_pods_may_only_narrow_where_they_go() {
        let (a, b) = (json!({"key": "a", "operator": "Exists"}), json!({"key": "b", "operator": "Exists"}));
        let old = gated(json!({"x": "1"}), json!([{"matchExpressions": [a]}]));
        let ungated = with(&old, json!({"spec": {"schedulingGates": null}}));
        let cases = [
            ("a gate removed", with(&old, json!({"spec": {"schedulingGates": [{"name": "quota"}]}})), ""),
            ("all gates removed", ungated.clone(), ""),
            ("additions", gated(json!({"x": "1", "y": "2"}), json!([{"matchExpressions": [a, b]}])), ""),
            ("field requirement added", gated(json!({"x": "1"}), json!([{"matchExpressions": [a], "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}])), ""),
            ("preferred terms", with(&old, json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {"matchExpressions": [b]}}]}}}})), ""),
            ("a gate added", with(&old, json!({"spec": {"schedulingGates": [{"name": "example.com/wait"}, {"name": "quota"}, {"name": "other"}]}})),
                "spec.schedulingGates[2].name: Forbidden: only deletion is allowed, but found new scheduling gate 'other'"),
            ("a gate renamed", with(&old, json!({"spec": {"schedulingGates": [{"name": "example.com/wait"}, {"name": "quota2"}]}})),
                "spec.schedulingGates[1].name: Forbidden: only deletion is allowed, but found new scheduling gate 'quota2'"),
            ("node selector changed", gated(json!({"x": "2"}), json!([{"matchExpressions": [a]}])),
                r#"spec.nodeSelector: Invalid value: map[string]string{"x":"2"}: only additions to spec.nodeSelector are allowed (no mutations or deletions)"#),
            ("node selector removed", gated(json!({"y": "2"}), json!([{"matchExpressions": [a]}])),
                r#"spec.nodeSelector: Invalid value: map[string]string{"y":"2"}: only additions to spec.nodeSelector are allowed (no mutations or deletions)"#),
            ("expression replaced", gated(json!({"x": "1"}), json!([{"matchExpressions": [b]}])), &format!("{REQUIRED_TERMS}[0]: Invalid value: {{\"matchExpressions\":[{{\"key\":\"b\",\"operator\":\"Exists\"}}]}}: only additions are allowed (no mutations or deletions)")),
            ("expression inserted first", gated(json!({"x": "1"}), json!([{"matchExpressions": [b, a]}])), &format!("{REQUIRED_TERMS}[0]: Invalid value: ")),
            ("term added", gated(json!({"x": "1"}), json!([{"matchExpressions": [a]}, {"matchExpressions": [b]}])), &format!("{REQUIRED_TERMS}: Invalid value: [")),
            ("pod affinity added", with(&old, json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone"}]}}}})), NOT_OTHER_FIELDS),
            ("gated pod's container", with(&old, json!({"spec": {"containers": [with(&old["spec"]["containers"][0], json!({"workingDir": "/srv"}))]}})), NOT_OTHER_FIELDS),
        ];
        update_table("", "Pod", &old, &cases);
        let added = update_messages(&gated(json!({"x": "1"}), json!([{"matchExpressions": [a]}, {"matchExpressions": [b]}])), &old);
        assert!(added[0].ends_with("no additions/deletions to non-empty NodeSelectorTerms list are allowed"), "{added:?}");

        // Once ungated, where the pod goes is fixed.
        update_table("", "Pod", &ungated, &[("selector added when ungated", with(&ungated, json!({"spec": {"nodeSelector": {"x": "1", "y": "2"}}})), NOT_OTHER_FIELDS)]);
        // Without node affinity before, any may be set; an empty term stays empty.
        let bare = with(&old, json!({"spec": {"affinity": null}}));
        update_table("", "Pod", &bare, &[("affinity set", old.clone(), "")]);
        let empty_term = gated(json!({"x": "1"}), json!([{}]));
        update_table("", "Pod", &empty_term, &[("empty term narrowed", old.clone(), &format!("{REQUIRED_TERMS}[0]: Invalid value: "))]);
        let no_terms = with(&old, json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone"}]}, "nodeAffinity": null}}}));
        update_table("", "Pod", &no_terms, &[("node affinity beside pod affinity", with(&old, json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone"}]}}}})), "")]);
    }

    fn status_pod(restart_policy: &str) -> Value {
        let running = json!({"name": "web", "image": "nginx:1.27", "imageID": "docker.io/library/nginx@sha256:0", "ready": true, "restartCount": 0, "started": true,
            "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}});
        with(&running_spec(restart_policy), json!({"status": {"phase": "Running", "qosClass": "BestEffort", "hostIP": "10.0.0.5", "hostIPs": [{"ip": "10.0.0.5"}],
            "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}], "startTime": "2025-01-01T00:00:00Z",
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [running]}}))
    }

    fn running_spec(restart_policy: &str) -> Value {
        spec(json!({"restartPolicy": restart_policy, "nodeName": "node-1",
            "initContainers": [{"name": "init", "image": "busybox"}, {"name": "sidecar", "image": "envoy", "restartPolicy": "Always"}]}))
    }

    fn status_messages(new: &Value, old: &Value) -> Vec<String> {
        messages("", "Pod", Op::Status { new, old })
    }

    fn status(pod: &Value, change: Value) -> Value {
        with(pod, json!({"status": change}))
    }

    fn terminated(name: &str, exit_code: i32) -> Value {
        json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": exit_code}}})
    }

    fn restarted(name: &str) -> Value {
        json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "ContainerCreating"}}})
    }

    #[test]
    fn pod_status_update_rules() {
        let old = status_pod("Always");
        let valid = [
            ("unchanged", old.clone()),
            ("custom condition", status(&old, json!({"conditions": [{"type": "Ready", "status": "True"}, {"type": "example.com/warm", "status": "True"}, {"type": "DisruptionTarget", "status": "True"}]}))),
            ("nominated", status(&old, json!({"nominatedNodeName": "node-2.example.com"}))),
            ("dual stack", status(&old, json!({"podIPs": [{"ip": "10.244.0.7"}, {"ip": "fd00:10:244::7"}], "hostIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}]}))),
            ("QoS class left out", with(&old, json!({"status": {"qosClass": null}}))),
            ("restarted when always restarting", status(&old, json!({"containerStatuses": [restarted("web")]}))),
        ];
        for (name, new) in &valid {
            assert_eq!(status_messages(new, &old), Vec::<String>::new(), "{name}");
        }
        let was_terminated = status(&old, json!({"containerStatuses": [terminated("web", 0)]}));
        let never = status(&status_pod("Never"), json!({"containerStatuses": [terminated("web", 0)], "initContainerStatuses": [terminated("init", 0), terminated("sidecar", 0)]}));
        let on_failure = |code| status(&status_pod("OnFailure"), json!({"containerStatuses": [terminated("web", code)]}));
        let cases: Vec<(&str, Value, Value, &str)> = vec![
            ("bad nominated node", status(&old, json!({"nominatedNodeName": "Node_2"})), old.clone(), "status.nominatedNodeName: Invalid value: \"Node_2\": a lowercase RFC 1123 subdomain"),
            ("QoS class changed", status(&old, json!({"qosClass": "Guaranteed"})), old.clone(), "status.qosClass: Invalid value: \"Guaranteed\": field is immutable"),
            ("bad pod IP", status(&old, json!({"podIPs": [{"ip": "10.244.0"}]})), old.clone(), "status.podIPs[0]: Invalid value: \"10.244.0\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
            ("two IPv4 pod IPs", status(&old, json!({"podIPs": [{"ip": "10.244.0.7"}, {"ip": "10.244.0.8"}]})), old.clone(),
                r#"status.podIPs: Invalid value: []core.PodIP{core.PodIP{IP:"10.244.0.7"}, core.PodIP{IP:"10.244.0.8"}}: may specify no more than one IP for each IP family"#),
            ("three pod IPs", status(&old, json!({"podIPs": [{"ip": "10.244.0.7"}, {"ip": "fd00::7"}, {"ip": "fd00::8"}]})), old.clone(), "status.podIPs: Invalid value: []core.PodIP{"),
            ("host IP mismatch", status(&old, json!({"hostIPs": [{"ip": "10.0.0.6"}]})), old.clone(), "status.hostIPs[0].ip: Invalid value: \"10.0.0.6\": must be equal to `hostIP`"),
            ("bad host IP", status(&old, json!({"hostIP": "10.0.0", "hostIPs": [{"ip": "10.0.0"}]})), old.clone(), "status.hostIPs[0]: Invalid value: \"10.0.0\": must be a valid IP address"),
            ("two IPv6 host IPs", status(&old, json!({"hostIP": "fd00::5", "hostIPs": [{"ip": "fd00::5"}, {"ip": "fd00::6"}]})), old.clone(),
                r#"status.hostIPs: Invalid value: []core.HostIP{core.HostIP{IP:"fd00::5"}, core.HostIP{IP:"fd00::6"}}: may specify no more than one IP for each IP family"#),
            ("bad condition type", status(&old, json!({"conditions": [{"type": "Ready", "status": "True"}, {"type": "bad type", "status": "True"}]})), old.clone(),
                "metadata.conditions[1].Type: Invalid value: \"bad type\": name part must consist"),
            ("restarted when never restarting", status(&never, json!({"containerStatuses": [restarted("web")]})), never.clone(), "status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"),
            ("restarted after success on failure", status(&on_failure(0), json!({"containerStatuses": [restarted("web")]})), on_failure(0), "status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"),
            ("init container restarted", status(&never, json!({"initContainerStatuses": [restarted("init"), terminated("sidecar", 0)]})), never.clone(),
                "status.initContainerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"),
            ("ephemeral container restarted", status(&was_terminated, json!({"ephemeralContainerStatuses": [restarted("debug")]})),
                status(&was_terminated, json!({"ephemeralContainerStatuses": [terminated("debug", 1)]})), "status.ephemeralContainerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"),
            ("claim status without a claim", status(&old, json!({"resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "web-gpu"}]})), old.clone(),
                "status.resourceClaimStatuses[0].name: Invalid value: \"gpu\": must match the name of an entry in `spec.resourceClaims`"),
            ("node changed", with(&old, json!({"spec": {"nodeName": "node-2"}})), old.clone(), "status.nodeName: Forbidden: may not be changed directly"),
        ];
        for (name, new, before, expected) in &cases {
            let got = status_messages(new, before);
            assert!(got.len() == 1 && got[0].starts_with(expected), "{name}: expected one error starting {expected:?}, got {got:#?}");
        }
        // Restarts a pod's policy allows.
        assert_eq!(status_messages(&status(&on_failure(1), json!({"containerStatuses": [restarted("web")]})), &on_failure(1)), Vec::<String>::new());
        assert_eq!(status_messages(&status(&never, json!({"initContainerStatuses": [terminated("init", 0), restarted("sidecar")]})), &never), Vec::<String>::new());
        // A duplicate pod IP: one family twice, and the same IP twice.
        let got = status_messages(&status(&old, json!({"podIPs": [{"ip": "10.244.0.7"}, {"ip": "10.244.0.7"}]})), &old);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(got[1], r#"status.podIPs[1]: Duplicate value: core.PodIP{IP:"10.244.0.7"}"#);
        // A bad IP among several.
        let got = status_messages(&status(&old, json!({"podIPs": [{"ip": "10.244.0.7"}, {"ip": "x"}]})), &old);
        assert_eq!(got[1], "status.podIPs: Internal error: failed to check for dual stack with error:failed to parse x as an IP", "{got:#?}");
        // Status writes do not run the spec's rules.
        let bad_spec = with(&old, json!({"spec": {"dnsPolicy": "Cluster"}}));
        assert_eq!(status_messages(&bad_spec, &bad_spec), Vec::<String>::new());
    }

    #[test]
    fn ephemeral_containers() {
        let debug = json!({"name": "debugger", "image": "busybox", "targetContainerName": "web", "stdin": true, "tty": true});
        let old = with(&pod(), json!({"spec": {"ephemeralContainers": [debug]}}));
        let render = |errs: Errors| errs.iter().map(ToString::to_string).collect::<Vec<_>>();
        let added = with(&pod(), json!({"spec": {"ephemeralContainers": [debug, with(&debug, json!({"name": "debugger-2"}))]}}));
        assert_eq!(render(ephemeral_containers_update(&added, &old)), Vec::<String>::new());
        assert_eq!(render(ephemeral_containers_update(&old, &pod())), Vec::<String>::new(), "the first one");
        assert_eq!(render(ephemeral_containers_update(&pod(), &old)), ["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"debugger\" may not be removed\n"]);
        let changed = with(&pod(), json!({"spec": {"ephemeralContainers": [with(&debug, json!({"image": "alpine"}))]}}));
        assert_eq!(
            render(ephemeral_containers_update(&changed, &old)),
            ["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"debugger\" may not be changed\n  spec.ephemeralContainers[debugger].image: \"busybox\" → \"alpine\""]
        );
        let clash = with(&pod(), json!({"spec": {"ephemeralContainers": [debug, with(&debug, json!({"name": "web"})), with(&debug, json!({"name": "debugger"}))]}}));
        assert_eq!(render(ephemeral_containers_update(&clash, &old)), ["spec.ephemeralContainers[1].name: Duplicate value: \"web\"", "spec.ephemeralContainers[2].name: Duplicate value: \"debugger\""]);
        let mirror = with(&old, json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "abc"}}}));
        assert_eq!(render(ephemeral_containers_update(&with(&added, json!({"metadata": mirror["metadata"]})), &mirror)), [": Forbidden: static pods do not support ephemeral containers"]);
    }

    #[test]
    fn sloppy_ips() {
        for ok in ["10.0.0.1", "010.000.0.001", "::1", "fd00::1", "::ffff:10.0.0.1"] {
            assert!(parse_ip_sloppy(ok).is_some(), "{ok}");
        }
        for bad in ["", "10.0.0", "10.0.0.256", "1.2.3.4.5", "a.b.c.d", "fe80::1%eth0", "10.0.0.1/24", " 10.0.0.1"] {
            assert!(parse_ip_sloppy(bad).is_none(), "{bad}");
        }
        assert!(!is_ipv6("::ffff:10.0.0.1".parse().unwrap()));
    }
}

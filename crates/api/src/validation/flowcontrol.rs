//! flowcontrol.apiserver.k8s.io: FlowSchema and PriorityLevelConfiguration,
//! as upstream's `pkg/apis/flowcontrol/validation` checks them, with the
//! mandatory objects (`exempt`, `catch-all`) held to their fixed specs.

use std::collections::BTreeSet;

use k8s_openapi::api::flowcontrol::v1::{
    ExemptPriorityLevelConfiguration, FlowDistinguisherMethod, FlowSchema, FlowSchemaSpec, GroupSubject, LimitResponse,
    LimitedPriorityLevelConfiguration, NonResourcePolicyRule, PolicyRulesWithSubjects, PriorityLevelConfiguration,
    PriorityLevelConfigurationReference, PriorityLevelConfigurationSpec, QueuingConfiguration, ResourcePolicyRule, Subject,
};

use super::go::{go_strings, go_value};
use super::{dns1123_label, dns1123_subdomain, inclusive_range, name_by, Bad, Errors, Op, Path};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    Some(match kind {
        "FlowSchema" => op.run(flow_schema, super::nothing, flow_schema_status),
        "PriorityLevelConfiguration" => op.run(priority_level, super::nothing, priority_level_status),
        _ => return None,
    })
}

const MAX_MATCHING_PRECEDENCE: i32 = 10000;
/// Upstream's defaults (`pkg/apis/flowcontrol/v1/defaults.go`, which
/// `defaults.rs` writes): a missing (or, for these int32s, zero) field
/// still reads as the default, for objects stored before it did.
const DEFAULT_MATCHING_PRECEDENCE: i32 = 1000;
const DEFAULT_NOMINAL_CONCURRENCY_SHARES: i32 = 30;
const DEFAULT_QUEUES: i32 = 64;
const DEFAULT_HAND_SIZE: i32 = 8;
const DEFAULT_QUEUE_LENGTH_LIMIT: i32 = 50;
const MAX_QUEUES: i32 = 10_000_000;
/// shufflesharding's `MaxHashBits`.
const MAX_HASH_BITS: f64 = 60.0;
const DISTINGUISHER_METHODS: &[&str] = &["ByNamespace", "ByUser"];
const SUBJECT_KINDS: &[&str] = &["Group", "ServiceAccount", "User"];
const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "proxy", "update", "watch"];
const PRIORITY_LEVEL_TYPES: &[&str] = &["Exempt", "Limited"];
const LIMIT_RESPONSE_TYPES: &[&str] = &["Queue", "Reject"];
const NS_ERR_INTRO: &str = "each member of this list must be '*' or a DNS-1123 label; ";

fn has_wildcard(items: &[String]) -> bool {
    items.iter().any(|s| s == "*")
}

// ---- flow schemas ----------------------------------------------------------

fn flow_schema(fs: &FlowSchema) -> Errors {
    let name = fs.metadata.name.as_deref().unwrap_or("");
    let spec = fs.spec.clone().unwrap_or_default();
    let path = Path::new("spec");
    let mut errs = flow_schema_spec(name, &spec, &path);
    if let Some(fixed) = mandatory_flow_schema(name) {
        if normalized_flow_schema(&spec) != normalized_flow_schema(&fixed) {
            errs.push(path.invalid(Bad::raw(go_value(&spec)), &format!("spec of '{name}' must equal the fixed value")));
        }
    }
    errs.extend(flow_schema_conditions(fs, &Path::new("status")));
    errs
}

fn flow_schema_status(new: &FlowSchema, _old: &FlowSchema) -> Errors {
    flow_schema_conditions(new, &Path::new("status"))
}

fn flow_schema_conditions(fs: &FlowSchema, path: &Path) -> Errors {
    let types = fs.status.iter().flat_map(|s| s.conditions.iter().flatten()).map(|c| c.type_.as_deref().unwrap_or(""));
    condition_types(types, path)
}

/// Upstream's condition rules of both kinds (not metav1's): types present
/// and unique.
fn condition_types<'a>(types: impl Iterator<Item = &'a str>, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, t) in types.enumerate() {
        let at = path.child("conditions").index(i);
        if !seen.insert(t) {
            errs.push(at.child("type").duplicate(t));
        }
        if t.is_empty() {
            errs.push(at.child("type").required("must not be empty"));
        }
    }
    errs
}

fn flow_schema_spec(name: &str, spec: &FlowSchemaSpec, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let precedence = matching_precedence(spec);
    let at = path.child("matchingPrecedence");
    if precedence <= 0 {
        errs.push(at.invalid(precedence, "must be a positive value"));
    }
    if precedence > MAX_MATCHING_PRECEDENCE {
        errs.push(at.invalid(precedence, &format!("must not be greater than {MAX_MATCHING_PRECEDENCE}")));
    }
    if precedence == 1 && name != "exempt" {
        errs.push(at.invalid(precedence, "only the schema named 'exempt' may have matchingPrecedence 1"));
    }
    if let Some(method) = &spec.distinguisher_method {
        if !DISTINGUISHER_METHODS.contains(&method.type_.as_str()) {
            let shown = Bad::raw(format!("flowcontrol.FlowDistinguisherMethod{{Type:{:?}}}", method.type_));
            errs.push(path.child("distinguisherMethod").child("type").not_supported(shown, DISTINGUISHER_METHODS));
        }
    }
    let level = &spec.priority_level_configuration.name;
    let at = path.child("priorityLevelConfiguration").child("name");
    if level.is_empty() {
        errs.push(at.required("must reference a priority level"));
    } else {
        errs.extend(name_by(dns1123_subdomain, level, &at));
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        errs.extend(policy_rules_with_subjects(rule, &path.child("rules").index(i)));
    }
    errs
}

fn matching_precedence(spec: &FlowSchemaSpec) -> i32 {
    match spec.matching_precedence {
        None | Some(0) => DEFAULT_MATCHING_PRECEDENCE,
        Some(p) => p,
    }
}

fn policy_rules_with_subjects(rule: &PolicyRulesWithSubjects, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if rule.subjects.is_empty() {
        errs.push(path.child("subjects").required("subjects must contain at least one value"));
    }
    for (i, subject) in rule.subjects.iter().enumerate() {
        errs.extend(self::subject(subject, &path.child("subjects").index(i)));
    }
    let resource_rules = rule.resource_rules.as_deref().unwrap_or_default();
    let non_resource_rules = rule.non_resource_rules.as_deref().unwrap_or_default();
    if resource_rules.is_empty() && non_resource_rules.is_empty() {
        errs.push(path.required("at least one of resourceRules and nonResourceRules has to be non-empty"));
    }
    for (i, r) in resource_rules.iter().enumerate() {
        errs.extend(resource_rule(r, &path.child("resourceRules").index(i)));
    }
    for (i, r) in non_resource_rules.iter().enumerate() {
        errs.extend(non_resource_rule(r, &path.child("nonResourceRules").index(i)));
    }
    errs
}

fn subject(subject: &Subject, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let forbid_user = |errs: &mut Errors| {
        if subject.user.is_some() {
            errs.push(path.child("user").forbidden("user is forbidden when subject kind is not 'User'"));
        }
    };
    let forbid_group = |errs: &mut Errors| {
        if subject.group.is_some() {
            errs.push(path.child("group").forbidden("group is forbidden when subject kind is not 'Group'"));
        }
    };
    let forbid_service_account = |errs: &mut Errors| {
        if subject.service_account.is_some() {
            errs.push(path.child("serviceAccount").forbidden("serviceAccount is forbidden when subject kind is not 'ServiceAccount'"));
        }
    };
    match subject.kind.as_str() {
        "ServiceAccount" => {
            let at = path.child("serviceAccount");
            match &subject.service_account {
                None => errs.push(at.required("serviceAccount is required when subject kind is 'ServiceAccount'")),
                Some(sa) => {
                    if sa.name.is_empty() {
                        errs.push(at.child("name").required(""));
                    } else if sa.name != "*" {
                        errs.extend(name_by(dns1123_subdomain, &sa.name, &at.child("name")));
                    }
                    if sa.namespace.is_empty() {
                        errs.push(at.child("namespace").required("must specify namespace for service account"));
                    } else {
                        errs.extend(name_by(dns1123_label, &sa.namespace, &at.child("namespace")));
                    }
                }
            }
            forbid_user(&mut errs);
            forbid_group(&mut errs);
        }
        "User" => {
            match &subject.user {
                None => errs.push(path.child("user").required("user is required when subject kind is 'User'")),
                Some(u) if u.name.is_empty() => errs.push(path.child("user").child("name").required("")),
                Some(_) => {}
            }
            forbid_service_account(&mut errs);
            forbid_group(&mut errs);
        }
        "Group" => {
            match &subject.group {
                None => errs.push(path.child("group").required("group is required when subject kind is 'Group'")),
                Some(g) if g.name.is_empty() => errs.push(path.child("group").child("name").required("")),
                Some(_) => {}
            }
            forbid_service_account(&mut errs);
            forbid_user(&mut errs);
        }
        kind => errs.push(path.child("kind").not_supported(kind, SUBJECT_KINDS)),
    }
    errs
}

fn verbs(verbs: &[String], path: &Path) -> Errors {
    let at = path.child("verbs");
    if verbs.is_empty() {
        vec![at.required("verbs must contain at least one value")]
    } else if has_wildcard(verbs) {
        if verbs.len() > 1 {
            vec![at.invalid(Bad::raw(go_strings(verbs)), "if '*' is present, must not specify other verbs")]
        } else {
            vec![]
        }
    } else if !verbs.iter().all(|v| VERBS.contains(&v.as_str())) {
        vec![at.not_supported(Bad::raw(go_strings(verbs)), VERBS)]
    } else {
        vec![]
    }
}

fn resource_rule(rule: &ResourcePolicyRule, path: &Path) -> Errors {
    let mut errs = verbs(&rule.verbs, path);
    let groups = path.child("apiGroups");
    if rule.api_groups.is_empty() {
        errs.push(groups.required("resource rules must supply at least one api group"));
    } else if rule.api_groups.len() > 1 && has_wildcard(&rule.api_groups) {
        errs.push(groups.invalid(Bad::raw(go_strings(&rule.api_groups)), "if '*' is present, must not specify other api groups"));
    }
    let resources = path.child("resources");
    if rule.resources.is_empty() {
        errs.push(resources.required("resource rules must supply at least one resource"));
    } else if rule.resources.len() > 1 && has_wildcard(&rule.resources) {
        errs.push(resources.invalid(Bad::raw(go_strings(&rule.resources)), "if '*' is present, must not specify other resources"));
    }
    let namespaces = rule.namespaces.as_deref().unwrap_or_default();
    let at = path.child("namespaces");
    if namespaces.is_empty() && !rule.cluster_scope.unwrap_or(false) {
        errs.push(at.required("resource rules that are not cluster scoped must supply at least one namespace"));
    } else if has_wildcard(namespaces) {
        if namespaces.len() > 1 {
            errs.push(at.invalid(Bad::raw(go_strings(namespaces)), "if '*' is present, must not specify other namespaces"));
        }
    } else {
        for (i, ns) in namespaces.iter().enumerate() {
            if let Err(why) = dns1123_label(ns) {
                errs.push(at.index(i).invalid(ns, &format!("{NS_ERR_INTRO}{why}")));
            }
        }
    }
    errs
}

fn non_resource_rule(rule: &NonResourcePolicyRule, path: &Path) -> Errors {
    let mut errs = verbs(&rule.verbs, path);
    let at = path.child("nonResourceURLs");
    let urls = &rule.non_resource_urls;
    if urls.is_empty() {
        errs.push(at.required("nonResourceURLs must contain at least one value"));
    } else if has_wildcard(urls) {
        if urls.len() > 1 {
            errs.push(at.invalid(Bad::raw(go_strings(urls)), "if '*' is present, must not specify other non-resource URLs"));
        }
    } else {
        for (i, url) in urls.iter().enumerate() {
            if let Some(why) = non_resource_url_error(url) {
                errs.push(at.index(i).invalid(url, why));
            }
        }
    }
    errs
}

/// Upstream's `ValidateNonResourceURLPath`.
fn non_resource_url_error(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("must not be empty");
    }
    if path == "/" {
        return None;
    }
    if !path.starts_with('/') {
        return Some("must start with slash");
    }
    if path.contains(' ') {
        return Some("must not contain white-space");
    }
    if path.contains("//") {
        return Some("must not contain double slash");
    }
    let wildcards = path.matches('*').count();
    if wildcards > 1 || (wildcards == 1 && !path.ends_with("/*")) {
        return Some("wildcard can only do suffix matching");
    }
    None
}

fn group(name: &str) -> Subject {
    Subject { kind: "Group".into(), group: Some(GroupSubject { name: name.into() }), ..Subject::default() }
}

/// A rule matching every request of `subjects`, as both mandatory schemas
/// have.
fn everything(subjects: Vec<Subject>) -> PolicyRulesWithSubjects {
    let all = || vec!["*".to_string()];
    PolicyRulesWithSubjects {
        subjects,
        resource_rules: Some(vec![ResourcePolicyRule { verbs: all(), api_groups: all(), resources: all(), namespaces: Some(all()), cluster_scope: Some(true) }]),
        non_resource_rules: Some(vec![NonResourcePolicyRule { verbs: all(), non_resource_urls: all() }]),
    }
}

/// Upstream's mandatory flow schemas (apiserver's `bootstrap` package).
fn mandatory_flow_schema(name: &str) -> Option<FlowSchemaSpec> {
    let (precedence, distinguisher, subjects) = match name {
        "exempt" => (1, None, vec![group("system:masters")]),
        "catch-all" => (10000, Some("ByUser"), vec![group("system:unauthenticated"), group("system:authenticated")]),
        _ => return None,
    };
    Some(FlowSchemaSpec {
        matching_precedence: Some(precedence),
        priority_level_configuration: PriorityLevelConfigurationReference { name: name.into() },
        distinguisher_method: distinguisher.map(|t| FlowDistinguisherMethod { type_: t.into() }),
        rules: Some(vec![everything(subjects)]),
    })
}

/// `spec` defaulted, with missing lists as empty ones, for comparing as
/// upstream's semantic equality does.
fn normalized_flow_schema(spec: &FlowSchemaSpec) -> FlowSchemaSpec {
    let rules = spec.rules.iter().flatten().map(|r| PolicyRulesWithSubjects {
        subjects: r.subjects.clone(),
        resource_rules: Some(
            r.resource_rules
                .iter()
                .flatten()
                .map(|rr| ResourcePolicyRule {
                    cluster_scope: Some(rr.cluster_scope.unwrap_or(false)),
                    namespaces: Some(rr.namespaces.clone().unwrap_or_default()),
                    ..rr.clone()
                })
                .collect(),
        ),
        non_resource_rules: Some(r.non_resource_rules.clone().unwrap_or_default()),
    });
    FlowSchemaSpec { matching_precedence: Some(matching_precedence(spec)), rules: Some(rules.collect()), ..spec.clone() }
}

// ---- priority levels ---------------------------------------------------------

fn priority_level(pl: &PriorityLevelConfiguration) -> Errors {
    let name = pl.metadata.name.as_deref().unwrap_or("");
    let spec = pl.spec.clone().unwrap_or_default();
    let path = Path::new("spec");
    let mut errs = priority_level_spec(name, &spec, &path);
    errs.extend(mandatory_priority_level(name, &spec, &path));
    errs.extend(priority_level_conditions(pl, &Path::new("status")));
    errs
}

fn priority_level_status(new: &PriorityLevelConfiguration, _old: &PriorityLevelConfiguration) -> Errors {
    priority_level_conditions(new, &Path::new("status"))
}

fn priority_level_conditions(pl: &PriorityLevelConfiguration, path: &Path) -> Errors {
    let types = pl.status.iter().flat_map(|s| s.conditions.iter().flatten()).map(|c| c.type_.as_deref().unwrap_or(""));
    condition_types(types, path)
}

fn priority_level_spec(name: &str, spec: &PriorityLevelConfigurationSpec, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if (name == "exempt") != (spec.type_ == "Exempt") {
        errs.push(path.child("type").invalid(&spec.type_, "type must be 'Exempt' if and only if name is 'exempt'"));
    }
    match spec.type_.as_str() {
        "Exempt" => {
            if spec.limited.is_some() {
                errs.push(path.child("limited").forbidden("must be nil if the type is not Limited"));
            }
            if let Some(exempt) = &spec.exempt {
                errs.extend(exempt_config(exempt, &path.child("exempt")));
            }
        }
        "Limited" => {
            if spec.exempt.is_some() {
                errs.push(path.child("exempt").forbidden("must be nil if the type is Limited"));
            }
            match &spec.limited {
                None => errs.push(path.child("limited").required("must not be empty when type is Limited")),
                Some(limited) => errs.extend(limited_config(limited, &path.child("limited"))),
            }
        }
        other => errs.push(path.child("type").not_supported(other, PRIORITY_LEVEL_TYPES)),
    }
    errs
}

fn lendable_percent(percent: Option<i32>, path: &Path) -> Errors {
    percent.map_or_else(Vec::new, |p| inclusive_range(p.into(), 0, 100, &path.child("lendablePercent")))
}

fn exempt_config(exempt: &ExemptPriorityLevelConfiguration, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if let Some(n) = exempt.nominal_concurrency_shares.filter(|n| *n < 0) {
        errs.push(path.child("nominalConcurrencyShares").invalid(n, "must be a non-negative integer"));
    }
    errs.extend(lendable_percent(exempt.lendable_percent, path));
    errs
}

fn limited_config(limited: &LimitedPriorityLevelConfiguration, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let shares = limited.nominal_concurrency_shares.unwrap_or(DEFAULT_NOMINAL_CONCURRENCY_SHARES);
    if shares < 0 {
        errs.push(path.child("nominalConcurrencyShares").invalid(shares, "must be a non-negative integer"));
    }
    errs.extend(limit_response(&limited.limit_response.clone().unwrap_or_default(), &path.child("limitResponse")));
    errs.extend(lendable_percent(limited.lendable_percent, path));
    if let Some(b) = limited.borrowing_limit_percent.filter(|b| *b < 0) {
        errs.push(path.child("borrowingLimitPercent").invalid(b, "if specified, must be a non-negative integer"));
    }
    errs
}

fn limit_response(response: &LimitResponse, path: &Path) -> Errors {
    match response.type_.as_str() {
        "Reject" => match response.queuing {
            Some(_) => vec![path.child("queuing").forbidden("must be nil if limited.limitResponse.type is not Limited")],
            None => vec![],
        },
        "Queue" => match &response.queuing {
            None => vec![path.child("queuing").required("must not be empty if limited.limitResponse.type is Limited")],
            Some(q) => queuing(&defaulted_queuing(q), &path.child("queuing")),
        },
        other => vec![path.child("type").not_supported(other, LIMIT_RESPONSE_TYPES)],
    }
}

fn defaulted_queuing(q: &QueuingConfiguration) -> QueuingConfiguration {
    let or = |v: Option<i32>, default| Some(v.filter(|v| *v != 0).unwrap_or(default));
    QueuingConfiguration {
        queues: or(q.queues, DEFAULT_QUEUES),
        hand_size: or(q.hand_size, DEFAULT_HAND_SIZE),
        queue_length_limit: or(q.queue_length_limit, DEFAULT_QUEUE_LENGTH_LIMIT),
    }
}

fn queuing(q: &QueuingConfiguration, path: &Path) -> Errors {
    let (queues, hand_size, limit) = (q.queues.unwrap_or(0), q.hand_size.unwrap_or(0), q.queue_length_limit.unwrap_or(0));
    let mut errs = Vec::new();
    if limit <= 0 {
        errs.push(path.child("queueLengthLimit").invalid(limit, "must be positive"));
    }
    if queues <= 0 {
        errs.push(path.child("queues").invalid(queues, "must be positive"));
    } else if queues > MAX_QUEUES {
        errs.push(path.child("queues").invalid(queues, &format!("must not be greater than {MAX_QUEUES}")));
    }
    let at = path.child("handSize");
    if hand_size <= 0 {
        errs.push(at.invalid(hand_size, "must be positive"));
    } else if hand_size > queues {
        errs.push(at.invalid(hand_size, &format!("should not be greater than queues ({queues})")));
    } else if (f64::from(queues).log2() * f64::from(hand_size)).ceil() > MAX_HASH_BITS {
        errs.push(at.invalid(
            hand_size,
            &format!("required entropy bits of deckSize {queues} and handSize {hand_size} should not be greater than {}", MAX_HASH_BITS as i32),
        ));
    }
    errs
}

/// Upstream's `ValidateIfMandatoryPriorityLevelConfigurationObject`: the
/// `exempt` level may change only its `exempt` field, `catch-all` nothing.
fn mandatory_priority_level(name: &str, spec: &PriorityLevelConfigurationSpec, path: &Path) -> Errors {
    let shown = || Bad::raw(go_value(spec));
    match name {
        "exempt" if spec.type_ != "Exempt" || spec.limited.is_some() => {
            vec![path.invalid(shown(), "spec of 'exempt' except the 'spec.exempt' field must equal the fixed value")]
        }
        "catch-all" => {
            let fixed = PriorityLevelConfigurationSpec {
                type_: "Limited".into(),
                limited: Some(LimitedPriorityLevelConfiguration {
                    nominal_concurrency_shares: Some(5),
                    lendable_percent: Some(0),
                    borrowing_limit_percent: None,
                    limit_response: Some(LimitResponse { type_: "Reject".into(), queuing: None }),
                }),
                exempt: None,
            };
            if normalized_priority_level(spec) == fixed {
                vec![]
            } else {
                vec![path.invalid(shown(), "spec of 'catch-all' must equal the fixed value")]
            }
        }
        _ => vec![],
    }
}

/// `spec` with upstream's defaults applied, for comparing.
fn normalized_priority_level(spec: &PriorityLevelConfigurationSpec) -> PriorityLevelConfigurationSpec {
    let limited = spec.limited.as_ref().map(|l| LimitedPriorityLevelConfiguration {
        nominal_concurrency_shares: Some(l.nominal_concurrency_shares.unwrap_or(DEFAULT_NOMINAL_CONCURRENCY_SHARES)),
        lendable_percent: Some(l.lendable_percent.unwrap_or(0)),
        borrowing_limit_percent: l.borrowing_limit_percent,
        limit_response: Some(l.limit_response.clone().map_or_else(LimitResponse::default, |r| LimitResponse {
            queuing: r.queuing.as_ref().map(defaulted_queuing),
            ..r
        })),
    });
    let exempt = spec.exempt.as_ref().map(|e| ExemptPriorityLevelConfiguration {
        nominal_concurrency_shares: Some(e.nominal_concurrency_shares.unwrap_or(0)),
        lendable_percent: Some(e.lendable_percent.unwrap_or(0)),
    });
    PriorityLevelConfigurationSpec { type_: spec.type_.clone(), limited, exempt }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{messages, table, update_table, with};
    use super::super::Op;

    const G: &str = "flowcontrol.apiserver.k8s.io";
    const FS: &str = "FlowSchema";
    const PL: &str = "PriorityLevelConfiguration";

    fn all_rules(subjects: Value) -> Value {
        json!([{
            "subjects": subjects,
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"], "clusterScope": true}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
        }])
    }

    fn groups(names: &[&str]) -> Value {
        names.iter().map(|n| json!({"kind": "Group", "group": {"name": n}})).collect()
    }

    fn schema(name: &str, precedence: i64, level: &str, distinguisher: Option<&str>, rules: Value) -> Value {
        let mut spec = json!({"matchingPrecedence": precedence, "priorityLevelConfiguration": {"name": level}, "rules": rules});
        if let Some(d) = distinguisher {
            spec["distinguisherMethod"] = json!({"type": d});
        }
        json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": name}, "spec": spec})
    }

    /// Upstream's mandatory and suggested schemas, as its apiserver
    /// creates them.
    fn upstream_schemas() -> Vec<Value> {
        vec![
            schema("exempt", 1, "exempt", None, all_rules(groups(&["system:masters"]))),
            schema("catch-all", 10000, "catch-all", Some("ByUser"), all_rules(groups(&["system:unauthenticated", "system:authenticated"]))),
            schema("system-nodes", 500, "system", Some("ByUser"), all_rules(groups(&["system:nodes"]))),
            schema("probes", 2, "exempt", None, json!([{"subjects": groups(&["system:unauthenticated", "system:authenticated"]), "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"]}]}])),
            schema("system-leader-election", 100, "leader-election", Some("ByUser"), json!([{
                "subjects": [{"kind": "User", "user": {"name": "system:kube-controller-manager"}}, {"kind": "User", "user": {"name": "system:kube-scheduler"}}, {"kind": "ServiceAccount", "serviceAccount": {"namespace": "kube-system", "name": "*"}}],
                "resourceRules": [{"verbs": ["get", "create", "update"], "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "namespaces": ["*"], "clusterScope": true}]
            }])),
            schema("kube-system-service-accounts", 900, "workload-high", Some("ByNamespace"), json!([{
                "subjects": [{"kind": "ServiceAccount", "serviceAccount": {"namespace": "kube-system", "name": "*"}}],
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"], "clusterScope": true}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
            }])),
            schema("endpoint-controller", 150, "workload-high", Some("ByUser"), json!([{
                "subjects": [{"kind": "User", "user": {"name": "system:kube-controller-manager"}}, {"kind": "ServiceAccount", "serviceAccount": {"namespace": "kube-system", "name": "endpoint-controller"}}],
                "resourceRules": [{"verbs": ["get", "create", "update"], "apiGroups": [""], "resources": ["endpoints"], "namespaces": ["*"], "clusterScope": true}]
            }])),
            schema("service-accounts", 9000, "workload-low", Some("ByUser"), all_rules(groups(&["system:serviceaccounts"]))),
            schema("global-default", 9900, "global-default", Some("ByUser"), all_rules(groups(&["system:unauthenticated", "system:authenticated"]))),
        ]
    }

    fn valid_schema() -> Value {
        schema("team-a", 3000, "workload-low", Some("ByNamespace"), json!([{
            "subjects": [{"kind": "ServiceAccount", "serviceAccount": {"namespace": "team-a", "name": "builder"}}, {"kind": "User", "user": {"name": "alice@example.com"}}, {"kind": "Group", "group": {"name": "team-a"}}],
            "resourceRules": [{"verbs": ["get", "list", "watch"], "apiGroups": ["", "apps"], "resources": ["pods", "deployments"], "namespaces": ["team-a", "team-b"]}],
            "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/metrics", "/apis/*", "/"]}]
        }]))
    }

    #[test]
    fn flow_schema_valid() {
        let mut cases: Vec<(String, Value)> = upstream_schemas().into_iter().map(|s| (format!("upstream's {}", s["metadata"]["name"]), s)).collect();
        cases.push(("a team's schema".into(), valid_schema()));
        cases.push(("no precedence (defaults to 1000)".into(), with(&valid_schema(), json!({"spec": {"matchingPrecedence": null}}))));
        cases.push(("no rules".into(), with(&valid_schema(), json!({"spec": {"rules": null, "distinguisherMethod": null}}))));
        cases.push(("catch-all with a status".into(), with(&upstream_schemas()[1], json!({"status": {"conditions": [{"type": "Dangling", "status": "False", "reason": "Found"}]}}))));
        let named: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v)| (n.as_str(), v.clone(), "")).collect();
        table(G, FS, &named);
    }

    #[test]
    fn flow_schema_invalid() {
        let v = valid_schema();
        let rule = |change: Value| with(&v, json!({"spec": {"rules": [with(&v["spec"]["rules"][0], change)]}}));
        let resource_rule = |change: Value| rule(json!({"resourceRules": [with(&v["spec"]["rules"][0]["resourceRules"][0], change)]}));
        let non_resource_rule = |change: Value| rule(json!({"nonResourceRules": [with(&v["spec"]["rules"][0]["nonResourceRules"][0], change)]}));
        let subject = |s: Value| rule(json!({"subjects": [s]}));
        table(G, FS, &[
            ("a negative precedence", with(&v, json!({"spec": {"matchingPrecedence": -1}})), "spec.matchingPrecedence: Invalid value: -1: must be a positive value"),
            ("a precedence too high", with(&v, json!({"spec": {"matchingPrecedence": 10001}})), "spec.matchingPrecedence: Invalid value: 10001: must not be greater than 10000"),
            ("precedence 1 not for exempt", with(&v, json!({"spec": {"matchingPrecedence": 1}})), "spec.matchingPrecedence: Invalid value: 1: only the schema named 'exempt' may have matchingPrecedence 1"),
            ("an unknown distinguisher", with(&v, json!({"spec": {"distinguisherMethod": {"type": "ByGroup"}}})), r#"spec.distinguisherMethod.type: Unsupported value: flowcontrol.FlowDistinguisherMethod{Type:"ByGroup"}: supported values: "ByNamespace", "ByUser""#),
            ("no priority level", with(&v, json!({"spec": {"priorityLevelConfiguration": {"name": ""}}})), "spec.priorityLevelConfiguration.name: Required value: must reference a priority level"),
            ("a bad priority level name", with(&v, json!({"spec": {"priorityLevelConfiguration": {"name": "Workload Low"}}})), r#"spec.priorityLevelConfiguration.name: Invalid value: "Workload Low": a lowercase RFC 1123 subdomain"#),
            ("no subjects", rule(json!({"subjects": []})), "spec.rules[0].subjects: Required value: subjects must contain at least one value"),
            ("no rules in a rule", rule(json!({"resourceRules": [], "nonResourceRules": null})), "spec.rules[0]: Required value: at least one of resourceRules and nonResourceRules has to be non-empty"),
            ("an unknown subject kind", subject(json!({"kind": "Robot"})), r#"spec.rules[0].subjects[0].kind: Unsupported value: "Robot": supported values: "Group", "ServiceAccount", "User""#),
            ("a user subject without user", subject(json!({"kind": "User"})), "spec.rules[0].subjects[0].user: Required value: user is required when subject kind is 'User'"),
            ("a user without name", subject(json!({"kind": "User", "user": {"name": ""}})), "spec.rules[0].subjects[0].user.name: Required value"),
            ("a user subject with a group", subject(json!({"kind": "User", "user": {"name": "a"}, "group": {"name": "b"}})), "spec.rules[0].subjects[0].group: Forbidden: group is forbidden when subject kind is not 'Group'"),
            ("a group subject without group", subject(json!({"kind": "Group"})), "spec.rules[0].subjects[0].group: Required value: group is required when subject kind is 'Group'"),
            ("a group without name", subject(json!({"kind": "Group", "group": {"name": ""}})), "spec.rules[0].subjects[0].group.name: Required value"),
            ("a group subject with a service account", subject(json!({"kind": "Group", "group": {"name": "a"}, "serviceAccount": {"namespace": "a", "name": "b"}})), "spec.rules[0].subjects[0].serviceAccount: Forbidden: serviceAccount is forbidden when subject kind is not 'ServiceAccount'"),
            ("a service account subject without account", subject(json!({"kind": "ServiceAccount"})), "spec.rules[0].subjects[0].serviceAccount: Required value: serviceAccount is required when subject kind is 'ServiceAccount'"),
            ("a service account subject with a user", subject(json!({"kind": "ServiceAccount", "serviceAccount": {"namespace": "a", "name": "b"}, "user": {"name": "c"}})), "spec.rules[0].subjects[0].user: Forbidden: user is forbidden when subject kind is not 'User'"),
            ("a service account without name", subject(json!({"kind": "ServiceAccount", "serviceAccount": {"namespace": "a", "name": ""}})), "spec.rules[0].subjects[0].serviceAccount.name: Required value"),
            ("a bad service account name", subject(json!({"kind": "ServiceAccount", "serviceAccount": {"namespace": "a", "name": "Builder"}})), r#"spec.rules[0].subjects[0].serviceAccount.name: Invalid value: "Builder": a lowercase RFC 1123 subdomain"#),
            ("a service account without namespace", subject(json!({"kind": "ServiceAccount", "serviceAccount": {"namespace": "", "name": "b"}})), "spec.rules[0].subjects[0].serviceAccount.namespace: Required value: must specify namespace for service account"),
            ("a bad service account namespace", subject(json!({"kind": "ServiceAccount", "serviceAccount": {"namespace": "team.a", "name": "b"}})), r#"spec.rules[0].subjects[0].serviceAccount.namespace: Invalid value: "team.a": a lowercase RFC 1123 label"#),
            ("no verbs", resource_rule(json!({"verbs": []})), "spec.rules[0].resourceRules[0].verbs: Required value: verbs must contain at least one value"),
            ("'*' and another verb", resource_rule(json!({"verbs": ["*", "get"]})), r#"spec.rules[0].resourceRules[0].verbs: Invalid value: []string{"*", "get"}: if '*' is present, must not specify other verbs"#),
            ("an unknown verb", resource_rule(json!({"verbs": ["get", "escalate"]})), r#"spec.rules[0].resourceRules[0].verbs: Unsupported value: []string{"get", "escalate"}: supported values: "create", "delete", "deletecollection", "get", "list", "patch", "proxy", "update", "watch""#),
            ("no API groups", resource_rule(json!({"apiGroups": []})), "spec.rules[0].resourceRules[0].apiGroups: Required value: resource rules must supply at least one api group"),
            ("'*' and another group", resource_rule(json!({"apiGroups": ["*", "apps"]})), r#"spec.rules[0].resourceRules[0].apiGroups: Invalid value: []string{"*", "apps"}: if '*' is present, must not specify other api groups"#),
            ("no resources", resource_rule(json!({"resources": []})), "spec.rules[0].resourceRules[0].resources: Required value: resource rules must supply at least one resource"),
            ("'*' and another resource", resource_rule(json!({"resources": ["pods", "*"]})), r#"spec.rules[0].resourceRules[0].resources: Invalid value: []string{"pods", "*"}: if '*' is present, must not specify other resources"#),
            ("no namespaces, not cluster scoped", resource_rule(json!({"namespaces": null})), "spec.rules[0].resourceRules[0].namespaces: Required value: resource rules that are not cluster scoped must supply at least one namespace"),
            ("'*' and another namespace", resource_rule(json!({"namespaces": ["*", "team-a"]})), r#"spec.rules[0].resourceRules[0].namespaces: Invalid value: []string{"*", "team-a"}: if '*' is present, must not specify other namespaces"#),
            ("a bad namespace", resource_rule(json!({"namespaces": ["Team_A"]})), r#"spec.rules[0].resourceRules[0].namespaces[0]: Invalid value: "Team_A": each member of this list must be '*' or a DNS-1123 label; a lowercase RFC 1123 label"#),
            ("no non-resource URLs", non_resource_rule(json!({"nonResourceURLs": []})), "spec.rules[0].nonResourceRules[0].nonResourceURLs: Required value: nonResourceURLs must contain at least one value"),
            ("'*' and another URL", non_resource_rule(json!({"nonResourceURLs": ["*", "/healthz"]})), r#"spec.rules[0].nonResourceRules[0].nonResourceURLs: Invalid value: []string{"*", "/healthz"}: if '*' is present, must not specify other non-resource URLs"#),
            ("an empty URL", non_resource_rule(json!({"nonResourceURLs": [""]})), r#"spec.rules[0].nonResourceRules[0].nonResourceURLs[0]: Invalid value: "": must not be empty"#),
            ("a relative URL", non_resource_rule(json!({"nonResourceURLs": ["healthz"]})), r#"spec.rules[0].nonResourceRules[0].nonResourceURLs[0]: Invalid value: "healthz": must start with slash"#),
            ("a URL with a space", non_resource_rule(json!({"nonResourceURLs": ["/health z"]})), r#"spec.rules[0].nonResourceRules[0].nonResourceURLs[0]: Invalid value: "/health z": must not contain white-space"#),
            ("a URL with a double slash", non_resource_rule(json!({"nonResourceURLs": ["/apis//v1"]})), r#"spec.rules[0].nonResourceRules[0].nonResourceURLs[0]: Invalid value: "/apis//v1": must not contain double slash"#),
            ("a URL with an inner wildcard", non_resource_rule(json!({"nonResourceURLs": ["/apis/*/v1"]})), r#"spec.rules[0].nonResourceRules[0].nonResourceURLs[0]: Invalid value: "/apis/*/v1": wildcard can only do suffix matching"#),
            ("a non-resource verb unknown", non_resource_rule(json!({"verbs": ["post"]})), r#"spec.rules[0].nonResourceRules[0].verbs: Unsupported value: []string{"post"}"#),
            ("a condition without type", with(&v, json!({"status": {"conditions": [{"status": "True"}]}})), "status.conditions[0].type: Required value: must not be empty"),
            ("a duplicate condition", with(&v, json!({"status": {"conditions": [{"type": "Dangling"}, {"type": "Dangling"}]}})), r#"status.conditions[1].type: Duplicate value: "Dangling""#),
        ]);
    }

    #[test]
    fn flow_schema_mandatory() {
        let schemas = upstream_schemas();
        let exempt = &schemas[0];
        let catch_all = &schemas[1];
        let changed = with(catch_all, json!({"spec": {"matchingPrecedence": 9999}}));
        let got = messages(G, FS, Op::Create(&changed));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("spec: Invalid value: {") && got[0].ends_with(": spec of 'catch-all' must equal the fixed value"), "{got:?}");
        let narrowed = with(exempt, json!({"spec": {"rules": all_rules(groups(&["system:masters", "admins"]))}}));
        let got = messages(G, FS, Op::Create(&narrowed));
        assert!(got.len() == 1 && got[0].ends_with(": spec of 'exempt' must equal the fixed value"), "{got:?}");
    }

    #[test]
    fn flow_schema_update() {
        let old = valid_schema();
        update_table(G, FS, &old, &[
            ("precedence changes", with(&old, json!({"spec": {"matchingPrecedence": 4000}})), ""),
            ("the priority level changes", with(&old, json!({"spec": {"priorityLevelConfiguration": {"name": "global-default"}}})), ""),
            ("an update is validated as a create", with(&old, json!({"spec": {"matchingPrecedence": 20000}})), "spec.matchingPrecedence: Invalid value: 20000"),
        ]);
    }

    #[test]
    fn flow_schema_status() {
        let old = valid_schema();
        let status = |s: Value| messages(G, FS, Op::Status { new: &with(&old, json!({"status": s})), old: &old });
        assert_eq!(status(json!({"conditions": [{"type": "Dangling", "status": "False", "reason": "Found", "message": "This FlowSchema references the PriorityLevelConfiguration object named \"workload-low\" and it exists", "lastTransitionTime": "2024-05-01T10:00:00Z"}]})), Vec::<String>::new());
        assert_eq!(status(json!({"conditions": [{"status": "True"}]})), vec!["status.conditions[0].type: Required value: must not be empty"]);
        assert_eq!(status(json!({"conditions": [{"type": "Dangling"}, {"type": "Dangling"}]})), vec![r#"status.conditions[1].type: Duplicate value: "Dangling""#]);
        // A status write does not look at the spec.
        let bad_spec = with(&old, json!({"spec": {"matchingPrecedence": -5}}));
        assert_eq!(messages(G, FS, Op::Status { new: &bad_spec, old: &old }), Vec::<String>::new());
    }

    fn level(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration", "metadata": {"name": name}, "spec": spec})
    }

    fn queued(shares: i64, lendable: i64, queues: i64, hand: i64, limit: i64) -> Value {
        json!({"type": "Limited", "limited": {"nominalConcurrencyShares": shares, "lendablePercent": lendable, "limitResponse": {"type": "Queue", "queuing": {"queues": queues, "handSize": hand, "queueLengthLimit": limit}}}})
    }

    /// Upstream's mandatory and suggested levels.
    fn upstream_levels() -> Vec<Value> {
        vec![
            level("exempt", json!({"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}})),
            level("catch-all", json!({"type": "Limited", "limited": {"nominalConcurrencyShares": 5, "lendablePercent": 0, "limitResponse": {"type": "Reject"}}})),
            level("system", queued(30, 33, 64, 6, 50)),
            level("node-high", queued(40, 25, 64, 6, 50)),
            level("leader-election", queued(10, 0, 16, 4, 50)),
            level("workload-high", queued(40, 50, 128, 6, 50)),
            level("workload-low", queued(100, 90, 128, 6, 50)),
            level("global-default", queued(20, 50, 128, 6, 50)),
        ]
    }

    #[test]
    fn priority_level_configuration_valid() {
        let mut cases: Vec<(String, Value)> = upstream_levels().into_iter().map(|l| (format!("upstream's {}", l["metadata"]["name"]), l)).collect();
        let custom = level("team-a", queued(15, 10, 32, 4, 100));
        cases.push(("exempt with its own shares".into(), level("exempt", json!({"type": "Exempt", "exempt": {"nominalConcurrencyShares": 10, "lendablePercent": 50}}))));
        cases.push(("exempt, nothing set".into(), level("exempt", json!({"type": "Exempt"}))));
        cases.push(("catch-all with defaults left out".into(), level("catch-all", json!({"type": "Limited", "limited": {"nominalConcurrencyShares": 5, "limitResponse": {"type": "Reject"}}}))));
        cases.push(("queuing left to defaults".into(), level("team-a", json!({"type": "Limited", "limited": {"limitResponse": {"type": "Queue", "queuing": {}}}}))));
        cases.push(("zero shares (allowed since 1.30)".into(), with(&custom, json!({"spec": {"limited": {"nominalConcurrencyShares": 0}}}))));
        cases.push(("borrowing above 100%".into(), with(&custom, json!({"spec": {"limited": {"borrowingLimitPercent": 300}}}))));
        cases.push(("the largest hand for 128 queues".into(), with(&custom, json!({"spec": {"limited": {"limitResponse": {"queuing": {"queues": 128, "handSize": 8}}}}}))));
        cases.push(("a team's level".into(), custom));
        let named: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v)| (n.as_str(), v.clone(), "")).collect();
        table(G, PL, &named);
    }

    #[test]
    fn priority_level_configuration_invalid() {
        let v = level("team-a", queued(15, 10, 32, 4, 100));
        let limited = |change: Value| with(&v, json!({"spec": {"limited": change}}));
        let queuing = |change: Value| limited(json!({"limitResponse": {"queuing": change}}));
        table(G, PL, &[
            ("an unknown type", with(&v, json!({"spec": {"type": "Unlimited", "limited": null}})), r#"spec.type: Unsupported value: "Unlimited": supported values: "Exempt", "Limited""#),
            ("Exempt not named exempt", with(&v, json!({"spec": {"type": "Exempt", "limited": null}})), r#"spec.type: Invalid value: "Exempt": type must be 'Exempt' if and only if name is 'exempt'"#),
            ("Limited with exempt", with(&v, json!({"spec": {"exempt": {}}})), "spec.exempt: Forbidden: must be nil if the type is Limited"),
            ("Limited without limited", with(&v, json!({"spec": {"limited": null}})), "spec.limited: Required value: must not be empty when type is Limited"),
            ("negative exempt shares", level("exempt", json!({"type": "Exempt", "exempt": {"nominalConcurrencyShares": -1}})), "spec.exempt.nominalConcurrencyShares: Invalid value: -1: must be a non-negative integer"),
            ("exempt lendable above 100", level("exempt", json!({"type": "Exempt", "exempt": {"lendablePercent": 101}})), "spec.exempt.lendablePercent: Invalid value: 101: must be between 0 and 100, inclusive"),
            ("negative shares", limited(json!({"nominalConcurrencyShares": -1})), "spec.limited.nominalConcurrencyShares: Invalid value: -1: must be a non-negative integer"),
            ("negative lendable", limited(json!({"lendablePercent": -1})), "spec.limited.lendablePercent: Invalid value: -1: must be between 0 and 100, inclusive"),
            ("lendable above 100", limited(json!({"lendablePercent": 150})), "spec.limited.lendablePercent: Invalid value: 150: must be between 0 and 100, inclusive"),
            ("negative borrowing", limited(json!({"borrowingLimitPercent": -10})), "spec.limited.borrowingLimitPercent: Invalid value: -10: if specified, must be a non-negative integer"),
            ("no limit response", limited(json!({"limitResponse": null})), r#"spec.limited.limitResponse.type: Unsupported value: "": supported values: "Queue", "Reject""#),
            ("an unknown limit response", limited(json!({"limitResponse": {"type": "Drop"}})), r#"spec.limited.limitResponse.type: Unsupported value: "Drop": supported values: "Queue", "Reject""#),
            ("Reject with queuing", limited(json!({"limitResponse": {"type": "Reject"}})), "spec.limited.limitResponse.queuing: Forbidden: must be nil if limited.limitResponse.type is not Limited"),
            ("Queue without queuing", limited(json!({"limitResponse": {"queuing": null}})), "spec.limited.limitResponse.queuing: Required value: must not be empty if limited.limitResponse.type is Limited"),
            ("a negative queue length limit", queuing(json!({"queueLengthLimit": -1})), "spec.limited.limitResponse.queuing.queueLengthLimit: Invalid value: -1: must be positive"),
            ("too many queues", queuing(json!({"queues": 10_000_001, "handSize": 2})), "spec.limited.limitResponse.queuing.queues: Invalid value: 10000001: must not be greater than 10000000"),
            ("a negative hand", queuing(json!({"handSize": -2})), "spec.limited.limitResponse.queuing.handSize: Invalid value: -2: must be positive"),
            ("a hand larger than the queues", queuing(json!({"queues": 4, "handSize": 5})), "spec.limited.limitResponse.queuing.handSize: Invalid value: 5: should not be greater than queues (4)"),
            ("a hand needing too much entropy", queuing(json!({"queues": 128, "handSize": 9})), "spec.limited.limitResponse.queuing.handSize: Invalid value: 9: required entropy bits of deckSize 128 and handSize 9 should not be greater than 60"),
            ("a condition without type", with(&v, json!({"status": {"conditions": [{"status": "True"}]}})), "status.conditions[0].type: Required value: must not be empty"),
        ]);
        let got = messages(G, PL, Op::Create(&queuing(json!({"queues": -1, "handSize": 1}))));
        assert_eq!(got, vec![
            "spec.limited.limitResponse.queuing.queues: Invalid value: -1: must be positive",
            "spec.limited.limitResponse.queuing.handSize: Invalid value: 1: should not be greater than queues (-1)",
        ]);
    }

    #[test]
    fn priority_level_configuration_mandatory() {
        let levels = upstream_levels();
        let catch_all = &levels[1];
        for change in [
            json!({"spec": {"limited": {"nominalConcurrencyShares": 10}}}),
            json!({"spec": {"limited": {"borrowingLimitPercent": 50}}}),
            json!({"spec": {"limited": {"limitResponse": {"type": "Queue", "queuing": {"queues": 8, "handSize": 2, "queueLengthLimit": 10}}}}}),
        ] {
            let got = messages(G, PL, Op::Create(&with(catch_all, change.clone())));
            assert!(got.len() == 1 && got[0].starts_with("spec: Invalid value: {") && got[0].ends_with(": spec of 'catch-all' must equal the fixed value"), "{change}: {got:?}");
        }
        let with_limited = level("exempt", json!({"type": "Exempt", "limited": {"limitResponse": {"type": "Reject"}}}));
        let got = messages(G, PL, Op::Create(&with_limited));
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], "spec.limited: Forbidden: must be nil if the type is not Limited");
        assert!(got[1].ends_with(": spec of 'exempt' except the 'spec.exempt' field must equal the fixed value"), "{got:?}");
        let limited_exempt = level("exempt", queued(10, 0, 16, 4, 50));
        let got = messages(G, PL, Op::Create(&limited_exempt));
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], r#"spec.type: Invalid value: "Limited": type must be 'Exempt' if and only if name is 'exempt'"#);
        assert!(got[1].ends_with(": spec of 'exempt' except the 'spec.exempt' field must equal the fixed value"), "{got:?}");
    }

    #[test]
    fn priority_level_configuration_update() {
        let old = level("team-a", queued(15, 10, 32, 4, 100));
        update_table(G, PL, &old, &[
            ("shares change", with(&old, json!({"spec": {"limited": {"nominalConcurrencyShares": 50}}})), ""),
            ("to Reject", with(&old, json!({"spec": {"limited": {"limitResponse": {"type": "Reject", "queuing": null}}}})), ""),
            ("an update is validated as a create", with(&old, json!({"spec": {"limited": {"lendablePercent": 101}}})), "spec.limited.lendablePercent: Invalid value: 101"),
        ]);
    }

    #[test]
    fn priority_level_configuration_status() {
        let old = level("team-a", queued(15, 10, 32, 4, 100));
        let status = |s: Value| messages(G, PL, Op::Status { new: &with(&old, json!({"status": s})), old: &old });
        assert_eq!(status(json!({"conditions": [{"type": "ConcurrencyShared", "status": "True"}]})), Vec::<String>::new());
        assert_eq!(status(json!({"conditions": [{"type": ""}]})), vec!["status.conditions[0].type: Required value: must not be empty"]);
        assert_eq!(status(json!({"conditions": [{"type": "A"}, {"type": "A"}]})), vec![r#"status.conditions[1].type: Duplicate value: "A""#]);
    }
}

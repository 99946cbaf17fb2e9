//! admissionregistration.k8s.io: webhook configurations and validating
//! admission policies and bindings, as upstream's
//! `pkg/apis/admissionregistration/validation` checks them.
//!
//! CEL expressions (match conditions, validations, variables, audit
//! annotations) are checked for presence only: this crate has no CEL
//! compiler, so an expression that does not compile is accepted here and
//! fails when the policy or webhook runs.

use std::collections::BTreeSet;

use k8s_openapi::api::admissionregistration::v1::{
    AuditAnnotation, MatchCondition, MatchResources, MutatingWebhookConfiguration, NamedRuleWithOperations, ParamKind, ParamRef,
    RuleWithOperations, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyStatus,
    ValidatingWebhookConfiguration, Validation, Variable, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::addresses::fully_qualified_name;
use super::go::{go_slice, go_value};
use super::{dns1035_label, dns1123_subdomain, label_selector, path_segment, qualified_name, Bad, Errors, Op, Path};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    Some(match kind {
        "ValidatingWebhookConfiguration" => op.run(validating_webhook_configuration, super::nothing, super::nothing),
        "MutatingWebhookConfiguration" => op.run(mutating_webhook_configuration, super::nothing, super::nothing),
        "ValidatingAdmissionPolicy" => op.run(validating_admission_policy, super::nothing, policy_status),
        "ValidatingAdmissionPolicyBinding" => op.run(policy_binding, super::nothing, super::nothing),
        _ => return None,
    })
}

const FAILURE_POLICIES: &[&str] = &["Fail", "Ignore"];
const MATCH_POLICIES: &[&str] = &["Equivalent", "Exact"];
const NO_SIDE_EFFECTS: &[&str] = &["None", "NoneOnDryRun"];
const OPERATIONS: &[&str] = &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
const REINVOCATION_POLICIES: &[&str] = &["IfNeeded", "Never"];
const SCOPES: &[&str] = &["*", "Cluster", "Namespaced"];
const REASONS: &[&str] = &["Forbidden", "Invalid", "RequestEntityTooLarge"];
const VALIDATION_ACTIONS: &[&str] = &["Audit", "Deny", "Warn"];
const REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];
const MAX_AUDIT_ANNOTATIONS: usize = 20;
const MAX_AUDIT_ANNOTATION_EXPRESSION: usize = 5 * 1024;
const MAX_MATCH_CONDITIONS: usize = 64;

fn has_wildcard(items: &[String]) -> bool {
    items.iter().any(|s| s == "*")
}

// ---- webhooks ------------------------------------------------------------

/// The fields validating and mutating webhooks share (and mutating's
/// reinvocation policy).
struct Hook<'a> {
    name: &'a str,
    rules: &'a [RuleWithOperations],
    failure_policy: Option<&'a str>,
    match_policy: Option<&'a str>,
    side_effects: &'a str,
    timeout_seconds: Option<i32>,
    namespace_selector: Option<&'a LabelSelector>,
    object_selector: Option<&'a LabelSelector>,
    reinvocation_policy: Option<&'a str>,
    client_config: &'a WebhookClientConfig,
    match_conditions: &'a [MatchCondition],
    admission_review_versions: &'a [String],
}

/// A webhook of either kind as a `Hook`: the two types share these fields.
macro_rules! hook {
    ($h:expr, $reinvocation_policy:expr) => {
        Hook {
            name: &$h.name,
            rules: $h.rules.as_deref().unwrap_or_default(),
            failure_policy: $h.failure_policy.as_deref(),
            match_policy: $h.match_policy.as_deref(),
            side_effects: &$h.side_effects,
            timeout_seconds: $h.timeout_seconds,
            namespace_selector: $h.namespace_selector.as_ref(),
            object_selector: $h.object_selector.as_ref(),
            reinvocation_policy: $reinvocation_policy,
            client_config: &$h.client_config,
            match_conditions: $h.match_conditions.as_deref().unwrap_or_default(),
            admission_review_versions: &$h.admission_review_versions,
        }
    };
}

fn validating_webhook_configuration(c: &ValidatingWebhookConfiguration) -> Errors {
    webhooks(c.webhooks.iter().flatten().map(|h| hook!(h, None)))
}

fn mutating_webhook_configuration(c: &MutatingWebhookConfiguration) -> Errors {
    webhooks(c.webhooks.iter().flatten().map(|h| hook!(h, h.reinvocation_policy.as_deref())))
}

fn webhooks<'a>(hooks: impl Iterator<Item = Hook<'a>>) -> Errors {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, hook) in hooks.enumerate() {
        let at = Path::new("webhooks").index(i);
        errs.extend(webhook(&hook, &at));
        errs.extend(admission_review_versions(hook.admission_review_versions, &at.child("admissionReviewVersions")));
        if !hook.name.is_empty() && !names.insert(hook.name) {
            errs.push(at.child("name").duplicate(hook.name));
        }
    }
    errs
}

fn webhook(hook: &Hook<'_>, path: &Path) -> Errors {
    let mut errs = fully_qualified_name(hook.name, &path.child("name"));
    for (i, rule) in hook.rules.iter().enumerate() {
        errs.extend(rule_with_operations(rule, &path.child("rules").index(i)));
    }
    // Upstream defaults failurePolicy (Fail), matchPolicy (Equivalent),
    // the selectors (everything), timeoutSeconds (10) and mutating's
    // reinvocationPolicy (Never): missing is valid.
    if let Some(p) = hook.failure_policy.filter(|p| !FAILURE_POLICIES.contains(p)) {
        errs.push(path.child("failurePolicy").not_supported(p, FAILURE_POLICIES));
    }
    if let Some(p) = hook.match_policy.filter(|p| !MATCH_POLICIES.contains(p)) {
        errs.push(path.child("matchPolicy").not_supported(p, MATCH_POLICIES));
    }
    if hook.side_effects.is_empty() {
        errs.push(path.child("sideEffects").required("must specify one of None, NoneOnDryRun"));
    } else if !NO_SIDE_EFFECTS.contains(&hook.side_effects) {
        errs.push(path.child("sideEffects").not_supported(hook.side_effects, NO_SIDE_EFFECTS));
    }
    if let Some(t) = hook.timeout_seconds.filter(|t| !(1..=30).contains(t)) {
        errs.push(path.child("timeoutSeconds").invalid(t, "the timeout value must be between 1 and 30 seconds"));
    }
    if let Some(s) = hook.namespace_selector {
        errs.extend(label_selector(s, &path.child("namespaceSelector")));
    }
    if let Some(s) = hook.object_selector {
        errs.extend(label_selector(s, &path.child("objectSelector")));
    }
    if let Some(p) = hook.reinvocation_policy.filter(|p| !REINVOCATION_POLICIES.contains(p)) {
        errs.push(path.child("reinvocationPolicy").not_supported(p, REINVOCATION_POLICIES));
    }
    let cc = hook.client_config;
    let cc_path = path.child("clientConfig");
    match (&cc.url, &cc.service) {
        (Some(url), None) => errs.extend(webhook_url(url, &cc_path.child("url"))),
        (None, Some(service)) => {
            errs.extend(webhook_service(&service.name, &service.namespace, service.path.as_deref(), service.port.unwrap_or(443), &cc_path.child("service")))
        }
        _ => errs.push(cc_path.required("exactly one of url or service is required")),
    }
    errs.extend(match_conditions(hook.match_conditions, &path.child("matchConditions")));
    errs
}

fn admission_review_versions(versions: &[String], path: &Path) -> Errors {
    if versions.is_empty() {
        return vec![path.required("must specify one of v1, v1beta1")];
    }
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    let mut accepted = false;
    for (i, v) in versions.iter().enumerate() {
        if !seen.insert(v.as_str()) {
            errs.push(path.index(i).invalid(v, "duplicate version"));
            continue;
        }
        if let Err(why) = dns1035_label(v) {
            errs.push(path.index(i).invalid(v, &why));
        }
        accepted |= REVIEW_VERSIONS.contains(&v.as_str());
    }
    if !accepted {
        errs.push(path.invalid(Bad::raw(go_slice("[]string", Some(versions))), "must include at least one of v1, v1beta1"));
    }
    errs
}

fn rule_with_operations(rule: &RuleWithOperations, path: &Path) -> Errors {
    let mut errs = operations(rule.operations.as_deref().unwrap_or_default(), path);
    errs.extend(rule_fields(
        rule.api_groups.as_deref().unwrap_or_default(),
        rule.api_versions.as_deref().unwrap_or_default(),
        rule.resources.as_deref().unwrap_or_default(),
        rule.scope.as_deref(),
        path,
    ));
    errs
}

fn operations(ops: &[String], path: &Path) -> Errors {
    let mut errs = Vec::new();
    let at = path.child("operations");
    if ops.is_empty() {
        errs.push(at.required(""));
    }
    if ops.len() > 1 && has_wildcard(ops) {
        errs.push(at.invalid(Bad::raw(go_slice("[]admissionregistration.OperationType", Some(ops))), "if '*' is present, must not specify other operations"));
    }
    for (i, op) in ops.iter().enumerate() {
        if !OPERATIONS.contains(&op.as_str()) {
            errs.push(at.index(i).not_supported(op, OPERATIONS));
        }
    }
    errs
}

/// Upstream's `validateRule` (subresources allowed, as for every rule
/// with operations).
fn rule_fields(groups: &[String], versions: &[String], resources: &[String], scope: Option<&str>, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if groups.is_empty() {
        errs.push(path.child("apiGroups").required(""));
    }
    if groups.len() > 1 && has_wildcard(groups) {
        errs.push(path.child("apiGroups").invalid(Bad::raw(go_slice("[]string", Some(groups))), "if '*' is present, must not specify other API groups"));
    }
    if versions.is_empty() {
        errs.push(path.child("apiVersions").required(""));
    }
    if versions.len() > 1 && has_wildcard(versions) {
        errs.push(path.child("apiVersions").invalid(Bad::raw(go_slice("[]string", Some(versions))), "if '*' is present, must not specify other API versions"));
    }
    for (i, v) in versions.iter().enumerate() {
        if v.is_empty() {
            errs.push(path.child("apiVersions").index(i).required(""));
        }
    }
    errs.extend(self::resources(resources, &path.child("resources")));
    // A missing scope is upstream's default, "*".
    if let Some(s) = scope.filter(|s| !SCOPES.contains(s)) {
        errs.push(path.child("scope").not_supported(s, SCOPES));
    }
    errs
}

/// Upstream's `validateResources`: `*`, `*/*`, `pods/*`, `*/status`
/// wildcards, none overlapping another entry.
fn resources(resources: &[String], path: &Path) -> Errors {
    let mut errs = Vec::new();
    if resources.is_empty() {
        errs.push(path.required(""));
    }
    let mut with_any_sub = BTreeSet::new();
    let mut sub_of_any = BTreeSet::new();
    let (mut double_wildcard, mut single_wildcard, mut plain) = (false, false, false);
    for (i, res_sub) in resources.iter().enumerate() {
        if res_sub.is_empty() {
            errs.push(path.index(i).required(""));
            continue;
        }
        double_wildcard |= res_sub == "*/*";
        single_wildcard |= res_sub == "*";
        let Some((res, sub)) = res_sub.split_once('/') else {
            // As upstream: only the last entry without subresource counts.
            plain = res_sub != "*";
            continue;
        };
        if with_any_sub.contains(res) {
            errs.push(path.index(i).invalid(res_sub, &format!("if '{res}/*' is present, must not specify {res_sub}")));
        }
        if sub_of_any.contains(sub) {
            errs.push(path.index(i).invalid(res_sub, &format!("if '*/{sub}' is present, must not specify {res_sub}")));
        }
        if sub == "*" {
            with_any_sub.insert(res);
        }
        if res == "*" {
            sub_of_any.insert(sub);
        }
    }
    if resources.len() > 1 && double_wildcard {
        errs.push(path.invalid(Bad::raw(go_slice("[]string", Some(resources))), "if '*/*' is present, must not specify other resources"));
    }
    if single_wildcard && plain {
        errs.push(path.invalid(Bad::raw(go_slice("[]string", Some(resources))), "if '*' is present, must not specify other resources without subresources"));
    }
    errs
}

const URL_FORM: &str = "; desired format: https://host[/path]";

/// Upstream's `ValidateWebhookURL` (https only).
fn webhook_url(url: &str, path: &Path) -> Errors {
    let u = match parse_url(url) {
        Ok(u) => u,
        Err(why) => return vec![path.required(&format!("url must be a valid URL: parse {url:?}: {why}{URL_FORM}"))],
    };
    let mut errs = Vec::new();
    if u.scheme != "https" {
        errs.push(path.invalid(&u.scheme, &format!("'https' is the only allowed URL scheme{URL_FORM}")));
    }
    if u.host.is_empty() {
        errs.push(path.invalid(&u.host, &format!("host must be specified{URL_FORM}")));
    }
    if let Some(user) = &u.user {
        errs.push(path.invalid(user, "user information is not permitted in the URL"));
    }
    if !u.fragment.is_empty() {
        errs.push(path.invalid(&u.fragment, "fragments are not permitted in the URL"));
    }
    if !u.query.is_empty() {
        errs.push(path.invalid(&u.query, "query parameters are not permitted in the URL"));
    }
    errs
}

struct Url {
    scheme: String,
    user: Option<String>,
    host: String,
    query: String,
    fragment: String,
}

/// The parts of `s` Go's `url.Parse` finds, with its common errors.
fn parse_url(s: &str) -> Result<Url, String> {
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    let (rest, fragment) = s.split_once('#').unwrap_or((s, ""));
    let mut scheme = String::new();
    let mut rest = rest;
    if let Some(colon) = rest.find(':') {
        let candidate = &rest[..colon];
        if colon == 0 {
            return Err("missing protocol scheme".into());
        }
        let well_formed = candidate.as_bytes()[0].is_ascii_alphabetic()
            && candidate.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if well_formed {
            scheme = candidate.to_ascii_lowercase();
            rest = &rest[colon + 1..];
        }
    }
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, q),
        None => (rest, ""),
    };
    let mut url = Url { scheme, user: None, host: String::new(), query: query.to_string(), fragment: fragment.to_string() };
    if let Some(after) = rest.strip_prefix("//") {
        let authority = after.split('/').next().unwrap_or("");
        let host = match authority.rsplit_once('@') {
            Some((user, host)) => {
                url.user = Some(user.to_string());
                host
            }
            None => authority,
        };
        let port = match host.strip_prefix('[') {
            Some(v6) => v6.split_once(']').map(|(_, p)| p).ok_or("missing ']' in host")?,
            None => host.rfind(':').map_or("", |i| &host[i..]),
        };
        if let Some(digits) = port.strip_prefix(':') {
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("invalid port {port:?} after host"));
            }
        } else if !port.is_empty() {
            return Err(format!("invalid port {port:?} after host"));
        }
        url.host = host.to_string();
    } else if url.scheme.is_empty() && rest.split('/').next().is_some_and(|seg| seg.contains(':')) {
        return Err("first path segment in URL cannot contain colon".into());
    }
    Ok(url)
}

/// Upstream's `ValidateWebhookService`.
fn webhook_service(name: &str, namespace: &str, url_path: Option<&str>, port: i32, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if name.is_empty() {
        errs.push(path.child("name").required("service name is required"));
    }
    if namespace.is_empty() {
        errs.push(path.child("namespace").required("service namespace is required"));
    }
    if !(1..=65535).contains(&port) {
        errs.push(path.child("port").invalid(port, "port is not valid: must be between 1 and 65535, inclusive"));
    }
    let Some(url_path) = url_path.filter(|p| !p.is_empty() && *p != "/") else {
        return errs;
    };
    let at = path.child("path");
    if url_path == "//" {
        errs.push(at.invalid(url_path, "segment[0] may not be empty"));
        return errs;
    }
    if !url_path.starts_with('/') {
        errs.push(at.invalid(url_path, "must start with a '/'"));
    }
    let mut steps = url_path.get(1..).unwrap_or("");
    steps = steps.strip_suffix('/').unwrap_or(steps);
    for (i, step) in steps.split('/').enumerate() {
        if step.is_empty() {
            errs.push(at.invalid(url_path, &format!("segment[{i}] may not be empty")));
        } else if let Err(why) = dns1123_subdomain(step) {
            errs.push(at.invalid(url_path, &format!("segment[{i}]: {why}")));
        }
    }
    errs
}

fn match_conditions(conditions: &[MatchCondition], path: &Path) -> Errors {
    let mut errs = Vec::new();
    if conditions.len() > MAX_MATCH_CONDITIONS {
        errs.push(path.too_many(conditions.len(), MAX_MATCH_CONDITIONS));
    }
    let mut names = BTreeSet::new();
    for (i, c) in conditions.iter().enumerate() {
        let at = path.index(i);
        if c.expression.trim().is_empty() {
            errs.push(at.child("expression").required(""));
        }
        if c.name.is_empty() {
            errs.push(at.child("name").required(""));
        } else if let Err(why) = qualified_name(&c.name) {
            errs.push(at.child("name").invalid(&c.name, &why));
        }
        if !c.name.is_empty() && !names.insert(c.name.as_str()) {
            errs.push(at.child("name").duplicate(&c.name));
        }
    }
    errs
}

// ---- validating admission policies ---------------------------------------

fn validating_admission_policy(policy: &ValidatingAdmissionPolicy) -> Errors {
    let spec = policy.spec.clone().unwrap_or_default();
    let path = Path::new("spec");
    let mut errs = Vec::new();
    // A missing failurePolicy is upstream's default, Fail.
    if let Some(p) = spec.failure_policy.as_deref().filter(|p| !FAILURE_POLICIES.contains(p)) {
        errs.push(path.child("failurePolicy").not_supported(p, FAILURE_POLICIES));
    }
    if let Some(kind) = &spec.param_kind {
        errs.extend(param_kind(kind, &path.child("paramKind")));
    }
    match &spec.match_constraints {
        None => errs.push(path.child("matchConstraints").required("")),
        Some(mc) => {
            errs.extend(match_resources(mc, &path.child("matchConstraints")));
            if mc.resource_rules.as_ref().is_none_or(Vec::is_empty) {
                errs.push(path.child("matchConstraints").child("resourceRules").required(""));
            }
        }
    }
    errs.extend(match_conditions(spec.match_conditions.as_deref().unwrap_or_default(), &path.child("matchConditions")));
    for (i, v) in spec.variables.iter().flatten().enumerate() {
        errs.extend(variable(v, &path.child("variables").index(i)));
    }
    let validations = spec.validations.as_deref().unwrap_or_default();
    let annotations = spec.audit_annotations.as_deref().unwrap_or_default();
    if validations.is_empty() && annotations.is_empty() {
        errs.push(path.child("validations").required("validations or auditAnnotations must contain at least one item"));
        errs.push(path.child("auditAnnotations").required("validations or auditAnnotations must contain at least one item"));
        return errs;
    }
    for (i, v) in validations.iter().enumerate() {
        errs.extend(validation(v, &path.child("validations").index(i)));
    }
    if annotations.len() > MAX_AUDIT_ANNOTATIONS {
        errs.push(path.child("auditAnnotations").invalid(Bad::raw(go_value(annotations)), &format!("must not have more than {MAX_AUDIT_ANNOTATIONS} auditAnnotations")));
    }
    let mut keys = BTreeSet::new();
    let name = policy.metadata.name.as_deref().unwrap_or("");
    for (i, a) in annotations.iter().enumerate() {
        let at = path.child("auditAnnotations").index(i);
        errs.extend(audit_annotation(name, a, &at));
        if !keys.insert(a.key.as_str()) {
            errs.push(at.child("key").duplicate(&a.key));
        }
    }
    errs
}

fn param_kind(kind: &ParamKind, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let api_version = kind.api_version.as_deref().unwrap_or("");
    let at = path.child("apiVersion");
    if api_version.is_empty() {
        errs.push(at.required(""));
    } else if api_version.matches('/').count() > 1 {
        errs.push(at.invalid(api_version, &format!("unexpected GroupVersion string: {api_version}")));
    } else {
        let (group, version) = match api_version {
            "/" => ("", ""),
            gv => gv.split_once('/').unwrap_or(("", gv)),
        };
        if !group.is_empty() {
            if let Err(why) = dns1123_subdomain(group) {
                errs.push(at.invalid(group, &why));
            }
        }
        if version.is_empty() {
            errs.push(at.invalid(api_version, "version must be specified"));
        } else if let Err(why) = dns1035_label(version) {
            errs.push(at.invalid(version, &why));
        }
    }
    let kind_name = kind.kind.as_deref().unwrap_or("");
    if kind_name.is_empty() {
        errs.push(path.child("kind").required(""));
    } else if let Err(why) = dns1035_label(&kind_name.to_lowercase()) {
        errs.push(path.child("kind").invalid(kind_name, &format!("may have mixed case, but should otherwise match: {why}")));
    }
    errs
}

/// Upstream's `validateMatchResources`; a missing matchPolicy
/// (Equivalent) or selector (everything) is upstream's default.
fn match_resources(mc: &MatchResources, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if let Some(p) = mc.match_policy.as_deref().filter(|p| !MATCH_POLICIES.contains(p)) {
        errs.push(path.child("matchPolicy").not_supported(p, MATCH_POLICIES));
    }
    if let Some(s) = &mc.namespace_selector {
        errs.extend(label_selector(s, &path.child("namespaceSelector")));
    }
    if let Some(s) = &mc.object_selector {
        errs.extend(label_selector(s, &path.child("objectSelector")));
    }
    for (i, rule) in mc.resource_rules.iter().flatten().enumerate() {
        errs.extend(named_rule(rule, &path.child("resourceRules").index(i)));
    }
    for (i, rule) in mc.exclude_resource_rules.iter().flatten().enumerate() {
        errs.extend(named_rule(rule, &path.child("excludeResourceRules").index(i)));
    }
    errs
}

fn named_rule(rule: &NamedRuleWithOperations, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, name) in rule.resource_names.iter().flatten().enumerate() {
        let at = path.child("resourceNames").index(i);
        errs.extend(path_segment(name, &at));
        if !names.insert(name.as_str()) {
            errs.push(at.duplicate(name));
        }
    }
    errs.extend(operations(rule.operations.as_deref().unwrap_or_default(), path));
    errs.extend(rule_fields(
        rule.api_groups.as_deref().unwrap_or_default(),
        rule.api_versions.as_deref().unwrap_or_default(),
        rule.resources.as_deref().unwrap_or_default(),
        rule.scope.as_deref(),
        path,
    ));
    errs
}

/// CEL's identifiers: `[_a-zA-Z][_a-zA-Z0-9]*` but not a reserved word.
fn is_cel_identifier(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if", "import", "let", "loop",
        "package", "namespace", "return", "var", "void", "while",
    ];
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && !RESERVED.contains(&name)
}

fn variable(v: &Variable, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if v.name.trim().is_empty() {
        errs.push(path.child("name").required("name is not specified"));
    } else if !is_cel_identifier(&v.name) {
        errs.push(path.child("name").invalid(&v.name, "name is not a valid CEL identifier"));
    }
    if v.expression.trim().is_empty() {
        errs.push(path.child("expression").required("expression is not specified"));
    }
    errs
}

fn validation(v: &Validation, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if v.expression.trim().is_empty() {
        errs.push(path.child("expression").required("expression is not specified"));
    }
    let message_expression = v.message_expression.as_deref().unwrap_or("");
    if !message_expression.is_empty() && message_expression.trim().is_empty() {
        errs.push(path.child("messageExpression").invalid(message_expression, "must be non-empty if specified"));
    }
    let message = v.message.as_deref().unwrap_or("");
    if !message.is_empty() && message.trim().is_empty() {
        errs.push(path.child("message").invalid(message, "message must be non-empty if specified"));
    } else if message.trim().contains(['\n', '\r']) {
        errs.push(path.child("message").invalid(message, "message must not contain line breaks"));
    }
    if let Some(r) = v.reason.as_deref().filter(|r| !REASONS.contains(r)) {
        errs.push(path.child("reason").not_supported(r, REASONS));
    }
    errs
}

fn audit_annotation(policy_name: &str, a: &AuditAnnotation, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if policy_name.is_empty() {
        errs.push(path.child("key").invalid(&a.key, "requires metadata.name be non-empty"));
    } else {
        let qualified = format!("{policy_name}/{}", a.key);
        if let Err(why) = qualified_name(&qualified) {
            errs.push(path.child("key").invalid(&qualified, &why));
        }
    }
    let expression = a.value_expression.trim();
    if expression.is_empty() {
        errs.push(path.child("valueExpression").required("valueExpression is not specified"));
    } else if expression.len() > MAX_AUDIT_ANNOTATION_EXPRESSION {
        errs.push(path.child("valueExpression").required(&format!("must not exceed {MAX_AUDIT_ANNOTATION_EXPRESSION} bytes in length")));
    }
    errs
}

fn policy_status(new: &ValidatingAdmissionPolicy, _old: &ValidatingAdmissionPolicy) -> Errors {
    let status = new.status.clone().unwrap_or_default();
    policy_status_fields(&status, &Path::new("status"))
}

fn policy_status_fields(status: &ValidatingAdmissionPolicyStatus, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let warnings = status.type_checking.as_ref().and_then(|t| t.expression_warnings.as_deref()).unwrap_or_default();
    for (i, w) in warnings.iter().enumerate() {
        let at = path.child("typeChecking").child("expressionWarnings").index(i);
        if w.warning.is_empty() {
            errs.push(at.child("warning").required(""));
        }
        // Upstream also parses fieldRef as a JSONPath.
        if w.field_ref.trim().is_empty() {
            errs.push(at.child("fieldRef").required(""));
        }
    }
    errs.extend(super::conditions(status.conditions.as_deref().unwrap_or_default(), &path.child("conditions")));
    errs
}

// ---- bindings --------------------------------------------------------------

fn policy_binding(binding: &ValidatingAdmissionPolicyBinding) -> Errors {
    let spec = binding.spec.clone().unwrap_or_default();
    let path = Path::new("spec");
    let mut errs = Vec::new();
    let policy = spec.policy_name.as_deref().unwrap_or("");
    if policy.is_empty() {
        errs.push(path.child("policyName").required(""));
    } else if let Err(why) = dns1123_subdomain(policy) {
        errs.push(path.child("policyName").invalid(policy, &why));
    }
    if let Some(p) = &spec.param_ref {
        errs.extend(param_ref(p, &path.child("paramRef")));
    }
    if let Some(mr) = &spec.match_resources {
        // Upstream's path has this spelling.
        errs.extend(match_resources(mr, &path.child("matchResouces")));
    }
    errs.extend(validation_actions(spec.validation_actions.as_deref().unwrap_or_default(), &path.child("validationActions")));
    errs
}

fn param_ref(p: &ParamRef, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let name = p.name.as_deref().unwrap_or("");
    if !name.is_empty() {
        errs.extend(path_segment(name, &path.child("name")));
        if p.selector.is_some() {
            errs.push(path.child("name").forbidden("name and selector are mutually exclusive"));
        }
    }
    if let Some(selector) = &p.selector {
        errs.extend(label_selector(selector, &path.child("selector")));
        if !name.is_empty() {
            errs.push(path.child("selector").forbidden("name and selector are mutually exclusive"));
        }
    }
    if name.is_empty() && p.selector.is_none() {
        errs.push(path.required("one of name or selector must be specified"));
    }
    match p.parameter_not_found_action.as_deref().unwrap_or("") {
        "" => errs.push(path.child("parameterNotFoundAction").required("")),
        "Deny" | "Allow" => {}
        other => errs.push(path.child("parameterNotFoundAction").not_supported(other, &["Deny", "Allow"])),
    }
    errs
}

fn validation_actions(actions: &[String], path: &Path) -> Errors {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, a) in actions.iter().enumerate() {
        if !VALIDATION_ACTIONS.contains(&a.as_str()) {
            errs.push(path.index(i).not_supported(a, VALIDATION_ACTIONS));
        }
        if !seen.insert(a.as_str()) {
            errs.push(path.index(i).duplicate(a));
        }
    }
    if seen.contains("Deny") && seen.contains("Warn") {
        errs.push(path.invalid(
            Bad::raw(go_slice("[]admissionregistration.ValidationAction", Some(actions))),
            "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
        ));
    }
    if seen.is_empty() {
        errs.push(path.required("at least one validation action is required"));
    }
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{messages, table, update_table, with};
    use super::super::Op;

    const G: &str = "admissionregistration.k8s.io";
    const VWC: &str = "ValidatingWebhookConfiguration";
    const MWC: &str = "MutatingWebhookConfiguration";
    const VAP: &str = "ValidatingAdmissionPolicy";
    const VAPB: &str = "ValidatingAdmissionPolicyBinding";

    fn hook() -> Value {
        json!({
            "name": "pod-policy.example.com",
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["pods"], "scope": "Namespaced"}],
            "clientConfig": {"service": {"namespace": "example-namespace", "name": "example-service", "path": "/validate-pods", "port": 8443}, "caBundle": "Y2EtYnVuZGxl"},
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "timeoutSeconds": 5,
            "failurePolicy": "Fail",
            "matchPolicy": "Equivalent",
            "namespaceSelector": {"matchExpressions": [{"key": "runlevel", "operator": "NotIn", "values": ["0", "1"]}]},
            "objectSelector": {"matchLabels": {"app": "web"}},
            "matchConditions": [{"name": "exclude-leases", "expression": "!(request.resource.group == 'coordination.k8s.io' && request.resource.resource == 'leases')"}]
        })
    }

    fn vwc() -> Value {
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": VWC, "metadata": {"name": "pod-policy.example.com"}, "webhooks": [hook()]})
    }

    /// `vwc()` with its webhook changed by `change`.
    fn hooked(change: Value) -> Value {
        with(&vwc(), json!({"webhooks": [with(&hook(), change)]}))
    }

    fn rule(change: Value) -> Value {
        hooked(json!({"rules": [with(&hook()["rules"][0], change)]}))
    }

    fn service(change: Value) -> Value {
        hooked(json!({"clientConfig": {"service": change}}))
    }

    fn url(u: &str) -> Value {
        hooked(json!({"clientConfig": {"service": null, "url": u}}))
    }

    #[test]
    fn validating_webhook_configuration_valid() {
        table(G, VWC, &[
            ("upstream's example", vwc(), ""),
            ("no webhooks", with(&vwc(), json!({"webhooks": null})), ""),
            ("the minimum, defaults left out", json!({"metadata": {"name": "x"}, "webhooks": [{"name": "a.b.c", "clientConfig": {"url": "https://hooks.example.com/validate"}, "admissionReviewVersions": ["v1", "v1beta1"], "sideEffects": "NoneOnDryRun"}]}), ""),
            ("a service without path or port", service(json!({"path": null, "port": null})), ""),
            ("a url with port and path", url("https://10.0.0.5:9443/hooks/v1/validate"), ""),
            ("wildcard rules", rule(json!({"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*/*"], "scope": "*"})), ""),
            ("subresource rules", rule(json!({"resources": ["pods", "pods/status", "deployments/*", "*/scale"]})), ""),
            ("a final dot in the name", hooked(json!({"name": "pod-policy.example.com."})), ""),
            ("an unknown review version besides v1", hooked(json!({"admissionReviewVersions": ["v2", "v1"]})), ""),
            ("Skiff's integration-test webhook", json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": VWC, "metadata": {"name": "slow.skiff.test"}, "webhooks": [{
                "name": "slow.skiff.test", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                "clientConfig": {"url": "https://127.0.0.1:40123/slow", "caBundle": "Y2E="},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                "namespaceSelector": {"matchLabels": {"webhooks": "on"}}, "timeoutSeconds": 1, "failurePolicy": "Fail"}]}), ""),
            ("an IPv6 url", url("https://[fd00::5]:8443/validate"), ""),
        ]);
    }

    #[test]
    fn validating_webhook_configuration_invalid() {
        table(G, VWC, &[
            ("no name", hooked(json!({"name": ""})), "webhooks[0].name: Required value"),
            ("a two-segment name", hooked(json!({"name": "foo.com"})), r#"webhooks[0].name: Invalid value: "foo.com": should be a domain with at least three segments separated by dots"#),
            ("a one-segment name", hooked(json!({"name": "foo"})), r#"webhooks[0].name: Invalid value: "foo": should be a domain with at least three segments separated by dots"#),
            ("a name not a subdomain", hooked(json!({"name": "Pod_Policy.example.com"})), r#"webhooks[0].name: Invalid value: "Pod_Policy.example.com": a lowercase RFC 1123 subdomain"#),
            ("duplicate names", with(&vwc(), json!({"webhooks": [hook(), hook()]})), r#"webhooks[1].name: Duplicate value: "pod-policy.example.com""#),
            ("no operations", rule(json!({"operations": []})), "webhooks[0].rules[0].operations: Required value"),
            ("an unknown operation", rule(json!({"operations": ["PATCH"]})), r#"webhooks[0].rules[0].operations[0]: Unsupported value: "PATCH": supported values: "*", "CONNECT", "CREATE", "DELETE", "UPDATE""#),
            ("'*' and another operation", rule(json!({"operations": ["*", "CREATE"]})), r#"webhooks[0].rules[0].operations: Invalid value: []admissionregistration.OperationType{"*", "CREATE"}: if '*' is present, must not specify other operations"#),
            ("no API groups", rule(json!({"apiGroups": null})), "webhooks[0].rules[0].apiGroups: Required value"),
            ("'*' and another group", rule(json!({"apiGroups": ["*", "apps"]})), r#"webhooks[0].rules[0].apiGroups: Invalid value: []string{"*", "apps"}: if '*' is present, must not specify other API groups"#),
            ("no API versions", rule(json!({"apiVersions": []})), "webhooks[0].rules[0].apiVersions: Required value"),
            ("an empty API version", rule(json!({"apiVersions": ["v1", ""]})), "webhooks[0].rules[0].apiVersions[1]: Required value"),
            ("'*' and another version", rule(json!({"apiVersions": ["*", "v1"]})), r#"webhooks[0].rules[0].apiVersions: Invalid value: []string{"*", "v1"}: if '*' is present, must not specify other API versions"#),
            ("no resources", rule(json!({"resources": []})), "webhooks[0].rules[0].resources: Required value"),
            ("an empty resource", rule(json!({"resources": ["pods", ""]})), "webhooks[0].rules[0].resources[1]: Required value"),
            ("'*/*' and another", rule(json!({"resources": ["*/*", "pods"]})), r#"webhooks[0].rules[0].resources: Invalid value: []string{"*/*", "pods"}: if '*/*' is present, must not specify other resources"#),
            ("'*' and a plain resource", rule(json!({"resources": ["*", "pods"]})), r#"webhooks[0].rules[0].resources: Invalid value: []string{"*", "pods"}: if '*' is present, must not specify other resources without subresources"#),
            ("'pods/*' and 'pods/status'", rule(json!({"resources": ["pods/*", "pods/status"]})), r#"webhooks[0].rules[0].resources[1]: Invalid value: "pods/status": if 'pods/*' is present, must not specify pods/status"#),
            ("'*/status' and 'pods/status'", rule(json!({"resources": ["*/status", "pods/status"]})), r#"webhooks[0].rules[0].resources[1]: Invalid value: "pods/status": if '*/status' is present, must not specify pods/status"#),
            ("an unknown scope", rule(json!({"scope": "Global"})), r#"webhooks[0].rules[0].scope: Unsupported value: "Global": supported values: "*", "Cluster", "Namespaced""#),
            ("an unknown failure policy", hooked(json!({"failurePolicy": "Retry"})), r#"webhooks[0].failurePolicy: Unsupported value: "Retry": supported values: "Fail", "Ignore""#),
            ("an unknown match policy", hooked(json!({"matchPolicy": "Fuzzy"})), r#"webhooks[0].matchPolicy: Unsupported value: "Fuzzy": supported values: "Equivalent", "Exact""#),
            ("no side effects", hooked(json!({"sideEffects": null})), "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun"),
            ("side effects", hooked(json!({"sideEffects": "Some"})), r#"webhooks[0].sideEffects: Unsupported value: "Some": supported values: "None", "NoneOnDryRun""#),
            ("unknown side effects", hooked(json!({"sideEffects": "Unknown"})), r#"webhooks[0].sideEffects: Unsupported value: "Unknown""#),
            ("a zero timeout", hooked(json!({"timeoutSeconds": 0})), "webhooks[0].timeoutSeconds: Invalid value: 0: the timeout value must be between 1 and 30 seconds"),
            ("a long timeout", hooked(json!({"timeoutSeconds": 31})), "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds"),
            ("a bad namespace selector", hooked(json!({"namespaceSelector": {"matchExpressions": [{"key": "runlevel", "operator": "In"}]}})), "webhooks[0].namespaceSelector.matchExpressions[0].values: Required value"),
            ("a bad object selector", hooked(json!({"objectSelector": {"matchLabels": {"app": "a b"}}})), r#"webhooks[0].objectSelector.matchLabels: Invalid value: "a b""#),
            ("neither url nor service", hooked(json!({"clientConfig": {"service": null}})), "webhooks[0].clientConfig: Required value: exactly one of url or service is required"),
            ("both url and service", hooked(json!({"clientConfig": {"url": "https://a.example.com"}})), "webhooks[0].clientConfig: Required value: exactly one of url or service is required"),
            ("an http url", url("http://hooks.example.com/validate"), r#"webhooks[0].clientConfig.url: Invalid value: "http": 'https' is the only allowed URL scheme; desired format: https://host[/path]"#),
            ("a url without host", url("https:///validate"), r#"webhooks[0].clientConfig.url: Invalid value: "": host must be specified; desired format: https://host[/path]"#),
            ("a url with user", url("https://admin:secret@hooks.example.com/"), r#"webhooks[0].clientConfig.url: Invalid value: "admin:secret": user information is not permitted in the URL"#),
            ("a url with fragment", url("https://hooks.example.com/validate#frag"), r#"webhooks[0].clientConfig.url: Invalid value: "frag": fragments are not permitted in the URL"#),
            ("a url with query", url("https://hooks.example.com/validate?debug=1"), r#"webhooks[0].clientConfig.url: Invalid value: "debug=1": query parameters are not permitted in the URL"#),
            ("a url that does not parse", url("https://hooks.example.com:port/"), r#"webhooks[0].clientConfig.url: Required value: url must be a valid URL: parse "https://hooks.example.com:port/": invalid port ":port" after host; desired format: https://host[/path]"#),
            ("a service without name", service(json!({"name": ""})), "webhooks[0].clientConfig.service.name: Required value: service name is required"),
            ("a service without namespace", service(json!({"namespace": ""})), "webhooks[0].clientConfig.service.namespace: Required value: service namespace is required"),
            ("a service port out of range", service(json!({"port": 65536})), "webhooks[0].clientConfig.service.port: Invalid value: 65536: port is not valid: must be between 1 and 65535, inclusive"),
            ("a relative service path", service(json!({"path": "validate"})), r#"webhooks[0].clientConfig.service.path: Invalid value: "validate": must start with a '/'"#),
            ("an empty path segment", service(json!({"path": "/a//b"})), r#"webhooks[0].clientConfig.service.path: Invalid value: "/a//b": segment[1] may not be empty"#),
            ("'//' as path", service(json!({"path": "//"})), r#"webhooks[0].clientConfig.service.path: Invalid value: "//": segment[0] may not be empty"#),
            ("a path segment not a subdomain", service(json!({"path": "/Validate_Pods"})), r#"webhooks[0].clientConfig.service.path: Invalid value: "/Validate_Pods": segment[0]: a lowercase RFC 1123 subdomain"#),
            ("no review versions", hooked(json!({"admissionReviewVersions": []})), "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1"),
            ("no supported review version", hooked(json!({"admissionReviewVersions": ["v2"]})), r#"webhooks[0].admissionReviewVersions: Invalid value: []string{"v2"}: must include at least one of v1, v1beta1"#),
            ("a duplicate review version", hooked(json!({"admissionReviewVersions": ["v1", "v1"]})), r#"webhooks[0].admissionReviewVersions[1]: Invalid value: "v1": duplicate version"#),
            ("a bad review version", hooked(json!({"admissionReviewVersions": ["v1", "V2"]})), r#"webhooks[0].admissionReviewVersions[1]: Invalid value: "V2": a DNS-1035 label"#),
            ("a match condition without expression", hooked(json!({"matchConditions": [{"name": "a", "expression": "  "}]})), "webhooks[0].matchConditions[0].expression: Required value"),
            ("a match condition without name", hooked(json!({"matchConditions": [{"name": "", "expression": "true"}]})), "webhooks[0].matchConditions[0].name: Required value"),
            ("a bad match condition name", hooked(json!({"matchConditions": [{"name": "a b", "expression": "true"}]})), r#"webhooks[0].matchConditions[0].name: Invalid value: "a b": name part must consist of"#),
            ("duplicate match conditions", hooked(json!({"matchConditions": [{"name": "a", "expression": "true"}, {"name": "a", "expression": "false"}]})), r#"webhooks[0].matchConditions[1].name: Duplicate value: "a""#),
            ("65 match conditions", hooked(json!({"matchConditions": (0..65).map(|i| json!({"name": format!("c{i}"), "expression": "true"})).collect::<Vec<_>>()})), "webhooks[0].matchConditions: Too many: 65: must have at most 64 items"),
        ]);
    }

    #[test]
    fn validating_webhook_configuration_update() {
        let old = vwc();
        update_table(G, VWC, &old, &[
            ("a timeout change", hooked(json!({"timeoutSeconds": 10})), ""),
            ("an update is validated as a create", hooked(json!({"timeoutSeconds": 60})), "webhooks[0].timeoutSeconds: Invalid value: 60"),
        ]);
    }

    fn mwc() -> Value {
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": MWC,
            "metadata": {"name": "istio-sidecar-injector"},
            "webhooks": [with(&hook(), json!({"name": "namespace.sidecar-injector.istio.io", "reinvocationPolicy": "IfNeeded", "sideEffects": "None", "failurePolicy": "Ignore", "timeoutSeconds": 10}))]
        })
    }

    #[test]
    fn mutating_webhook_configuration_valid() {
        table(G, MWC, &[
            ("istio-like", mwc(), ""),
            ("no reinvocation policy (defaults to Never)", with(&mwc(), json!({"webhooks": [with(&mwc()["webhooks"][0], json!({"reinvocationPolicy": null}))]})), ""),
        ]);
    }

    #[test]
    fn mutating_webhook_configuration_invalid() {
        let m = mwc();
        let hooked = |change: Value| with(&m, json!({"webhooks": [with(&m["webhooks"][0], change)]}));
        table(G, MWC, &[
            ("an unknown reinvocation policy", hooked(json!({"reinvocationPolicy": "Always"})), r#"webhooks[0].reinvocationPolicy: Unsupported value: "Always": supported values: "IfNeeded", "Never""#),
            ("a two-segment name", hooked(json!({"name": "sidecar.io"})), r#"webhooks[0].name: Invalid value: "sidecar.io": should be a domain with at least three segments separated by dots"#),
            ("side effects", hooked(json!({"sideEffects": "Some"})), r#"webhooks[0].sideEffects: Unsupported value: "Some""#),
            ("duplicate names", with(&m, json!({"webhooks": [m["webhooks"][0].clone(), m["webhooks"][0].clone()]})), r#"webhooks[1].name: Duplicate value: "namespace.sidecar-injector.istio.io""#),
            ("an http url", hooked(json!({"clientConfig": {"service": null, "url": "http://inject.example.com"}})), r#"webhooks[0].clientConfig.url: Invalid value: "http": 'https' is the only allowed URL scheme"#),
        ]);
    }

    fn vap() -> Value {
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": VAP,
            "metadata": {"name": "demo-policy.example.com"},
            "spec": {
                "failurePolicy": "Fail",
                "paramKind": {"apiVersion": "rules.example.com/v1", "kind": "ReplicaLimit"},
                "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
                "matchConditions": [{"name": "not-system", "expression": "!object.metadata.namespace.startsWith('kube-')"}],
                "variables": [{"name": "replicas", "expression": "object.spec.replicas"}],
                "validations": [{"expression": "variables.replicas <= params.maxReplicas", "messageExpression": "'too many replicas: ' + string(variables.replicas)", "reason": "Invalid"}],
                "auditAnnotations": [{"key": "high-replica-count", "valueExpression": "'Deployment spec.replicas set to ' + string(object.spec.replicas)"}]
            }
        })
    }

    fn spec(change: Value) -> Value {
        with(&vap(), json!({"spec": change}))
    }

    #[test]
    fn validating_admission_policy_valid() {
        table(G, VAP, &[
            ("upstream-like", vap(), ""),
            ("the minimum", json!({"metadata": {"name": "p"}, "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"]}]}, "validations": [{"expression": "true"}]}}), ""),
            ("audit annotations only", spec(json!({"validations": null})), ""),
            ("a core paramKind", spec(json!({"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"}})), ""),
            ("resource names and exclusions", spec(json!({"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["DELETE"], "resources": ["configmaps"], "resourceNames": ["cfg-a", "cfg-b"]}], "excludeResourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["*"], "resources": ["secrets"]}], "matchPolicy": "Exact", "namespaceSelector": {}, "objectSelector": {}}})), ""),
        ]);
    }

    #[test]
    fn validating_admission_policy_invalid() {
        let v = vap();
        let validation = |change: Value| spec(json!({"validations": [with(&v["spec"]["validations"][0], change)]}));
        let resource_rule = |change: Value| spec(json!({"matchConstraints": {"resourceRules": [with(&v["spec"]["matchConstraints"]["resourceRules"][0], change)]}}));
        table(G, VAP, &[
            ("an unknown failure policy", spec(json!({"failurePolicy": "Retry"})), r#"spec.failurePolicy: Unsupported value: "Retry": supported values: "Fail", "Ignore""#),
            ("paramKind without apiVersion", spec(json!({"paramKind": {"apiVersion": null}})), "spec.paramKind.apiVersion: Required value"),
            ("paramKind with a bad group", spec(json!({"paramKind": {"apiVersion": "Rules.example.com/v1"}})), r#"spec.paramKind.apiVersion: Invalid value: "Rules.example.com": a lowercase RFC 1123 subdomain"#),
            ("paramKind without version", spec(json!({"paramKind": {"apiVersion": "rules.example.com/"}})), r#"spec.paramKind.apiVersion: Invalid value: "rules.example.com/": version must be specified"#),
            ("paramKind with two slashes", spec(json!({"paramKind": {"apiVersion": "a/b/c"}})), r#"spec.paramKind.apiVersion: Invalid value: "a/b/c": unexpected GroupVersion string: a/b/c"#),
            ("paramKind without kind", spec(json!({"paramKind": {"kind": ""}})), "spec.paramKind.kind: Required value"),
            ("paramKind with a bad kind", spec(json!({"paramKind": {"kind": "Replica_Limit"}})), r#"spec.paramKind.kind: Invalid value: "Replica_Limit": may have mixed case, but should otherwise match: a DNS-1035 label"#),
            ("no match constraints", spec(json!({"matchConstraints": null})), "spec.matchConstraints: Required value"),
            ("no resource rules", spec(json!({"matchConstraints": {"resourceRules": []}})), "spec.matchConstraints.resourceRules: Required value"),
            ("an unknown match policy", spec(json!({"matchConstraints": {"matchPolicy": "Fuzzy"}})), r#"spec.matchConstraints.matchPolicy: Unsupported value: "Fuzzy""#),
            ("a bad namespace selector", spec(json!({"matchConstraints": {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}})), r#"spec.matchConstraints.namespaceSelector.matchExpressions[0].operator: Invalid value: "Near": not a valid selector operator"#),
            ("a rule without operations", resource_rule(json!({"operations": null})), "spec.matchConstraints.resourceRules[0].operations: Required value"),
            ("a bad resource name", resource_rule(json!({"resourceNames": ["a/b"]})), r#"spec.matchConstraints.resourceRules[0].resourceNames[0]: Invalid value: "a/b": may not contain '/'"#),
            ("a duplicate resource name", resource_rule(json!({"resourceNames": ["a", "a"]})), r#"spec.matchConstraints.resourceRules[0].resourceNames[1]: Duplicate value: "a""#),
            ("a bad exclusion", spec(json!({"matchConstraints": {"excludeResourceRules": [{"apiGroups": [], "apiVersions": ["v1"], "operations": ["*"], "resources": ["secrets"]}]}})), "spec.matchConstraints.excludeResourceRules[0].apiGroups: Required value"),
            ("a match condition without name", spec(json!({"matchConditions": [{"name": "", "expression": "true"}]})), "spec.matchConditions[0].name: Required value"),
            ("a variable without name", spec(json!({"variables": [{"name": " ", "expression": "1"}]})), "spec.variables[0].name: Required value: name is not specified"),
            ("a variable not a CEL identifier", spec(json!({"variables": [{"name": "my-var", "expression": "1"}]})), r#"spec.variables[0].name: Invalid value: "my-var": name is not a valid CEL identifier"#),
            ("a variable named as a reserved word", spec(json!({"variables": [{"name": "namespace", "expression": "1"}]})), r#"spec.variables[0].name: Invalid value: "namespace": name is not a valid CEL identifier"#),
            ("a variable without expression", spec(json!({"variables": [{"name": "x", "expression": ""}]})), "spec.variables[0].expression: Required value: expression is not specified"),
            ("a validation without expression", validation(json!({"expression": " "})), "spec.validations[0].expression: Required value: expression is not specified"),
            ("a blank message expression", validation(json!({"messageExpression": "  "})), r#"spec.validations[0].messageExpression: Invalid value: "  ": must be non-empty if specified"#),
            ("a blank message", validation(json!({"message": " "})), r#"spec.validations[0].message: Invalid value: " ": message must be non-empty if specified"#),
            ("a message with a line break", validation(json!({"message": "too\nmany"})), r#"spec.validations[0].message: Invalid value: "too\nmany": message must not contain line breaks"#),
            ("an unknown reason", validation(json!({"reason": "Conflict"})), r#"spec.validations[0].reason: Unsupported value: "Conflict": supported values: "Forbidden", "Invalid", "RequestEntityTooLarge""#),
            ("a bad audit annotation key", spec(json!({"auditAnnotations": [{"key": "bad key", "valueExpression": "'x'"}]})), r#"spec.auditAnnotations[0].key: Invalid value: "demo-policy.example.com/bad key": name part must consist of"#),
            ("an audit annotation without expression", spec(json!({"auditAnnotations": [{"key": "k", "valueExpression": ""}]})), "spec.auditAnnotations[0].valueExpression: Required value: valueExpression is not specified"),
            ("a long audit annotation expression", spec(json!({"auditAnnotations": [{"key": "k", "valueExpression": "x".repeat(5121)}]})), "spec.auditAnnotations[0].valueExpression: Required value: must not exceed 5120 bytes in length"),
            ("duplicate audit annotations", spec(json!({"auditAnnotations": [{"key": "k", "valueExpression": "'a'"}, {"key": "k", "valueExpression": "'b'"}]})), r#"spec.auditAnnotations[1].key: Duplicate value: "k""#),
            ("21 audit annotations", spec(json!({"auditAnnotations": (0..21).map(|i| json!({"key": format!("k{i}"), "valueExpression": "'a'"})).collect::<Vec<_>>()})), "spec.auditAnnotations: Invalid value: "),
        ]);
        let nothing = spec(json!({"validations": null, "auditAnnotations": null}));
        assert_eq!(messages(G, VAP, Op::Create(&nothing)), vec![
            "spec.validations: Required value: validations or auditAnnotations must contain at least one item",
            "spec.auditAnnotations: Required value: validations or auditAnnotations must contain at least one item",
        ]);
    }

    #[test]
    fn validating_admission_policy_update() {
        let old = vap();
        update_table(G, VAP, &old, &[
            ("a new validation", spec(json!({"validations": [{"expression": "true"}, {"expression": "object.spec.replicas > 0"}]})), ""),
            ("an update is validated as a create", spec(json!({"matchConstraints": null})), "spec.matchConstraints: Required value"),
        ]);
    }

    #[test]
    fn validating_admission_policy_status() {
        let old = vap();
        let status = |s: Value| messages(G, VAP, Op::Status { new: &with(&old, json!({"status": s})), old: &old });
        let cond = json!({"type": "Ready", "status": "True", "reason": "TypeChecked", "message": "", "lastTransitionTime": "2024-05-01T10:00:00Z"});
        assert_eq!(status(json!({"observedGeneration": 1, "typeChecking": {"expressionWarnings": [{"fieldRef": "spec.validations[0].expression", "warning": "no such field"}]}, "conditions": [cond.clone()]})), Vec::<String>::new());
        assert_eq!(status(json!({"typeChecking": {"expressionWarnings": [{"fieldRef": "spec.validations[0].expression", "warning": ""}]}})), vec!["status.typeChecking.expressionWarnings[0].warning: Required value"]);
        assert_eq!(status(json!({"typeChecking": {"expressionWarnings": [{"fieldRef": " ", "warning": "w"}]}})), vec!["status.typeChecking.expressionWarnings[0].fieldRef: Required value"]);
        assert_eq!(status(json!({"conditions": [cond.clone(), cond.clone()]})), vec![r#"status.conditions[1].type: Duplicate value: "Ready""#]);
        assert_eq!(status(json!({"conditions": [with(&cond, json!({"status": "Yes"}))]})), vec![r#"status.conditions[0].status: Unsupported value: "Yes": supported values: "False", "True", "Unknown""#]);
        assert_eq!(status(json!({"conditions": [with(&cond, json!({"reason": ""}))]})), vec!["status.conditions[0].reason: Required value: must be set"]);
        assert!(status(json!({"conditions": [with(&cond, json!({"reason": "Type Checked"}))]}))[0].starts_with(r#"status.conditions[0].reason: Invalid value: "Type Checked": a condition reason must start with alphabetic character"#));
        assert_eq!(status(json!({"conditions": [with(&cond, json!({"observedGeneration": -1}))]})), vec!["status.conditions[0].observedGeneration: Invalid value: -1: must be greater than or equal to zero"]);
        assert!(status(json!({"conditions": [with(&cond, json!({"type": "is ready"}))]}))[0].starts_with(r#"status.conditions[0].type: Invalid value: "is ready""#));
    }

    fn binding() -> Value {
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": VAPB,
            "metadata": {"name": "demo-binding-test.example.com"},
            "spec": {
                "policyName": "demo-policy.example.com",
                "validationActions": ["Deny"],
                "paramRef": {"name": "replica-limit-test.example.com", "namespace": "default", "parameterNotFoundAction": "Deny"},
                "matchResources": {"namespaceSelector": {"matchLabels": {"environment": "test"}}}
            }
        })
    }

    fn bspec(change: Value) -> Value {
        with(&binding(), json!({"spec": change}))
    }

    #[test]
    fn validating_admission_policy_binding_valid() {
        table(G, VAPB, &[
            ("upstream-like", binding(), ""),
            ("the minimum", json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "validationActions": ["Warn", "Audit"]}}), ""),
            ("params by selector", bspec(json!({"paramRef": {"name": null, "selector": {"matchLabels": {"tier": "a"}}, "parameterNotFoundAction": "Allow"}})), ""),
        ]);
    }

    #[test]
    fn validating_admission_policy_binding_invalid() {
        let param_ref = |change: Value| bspec(json!({"paramRef": change}));
        table(G, VAPB, &[
            ("no policy", bspec(json!({"policyName": null})), "spec.policyName: Required value"),
            ("a bad policy name", bspec(json!({"policyName": "Demo Policy"})), r#"spec.policyName: Invalid value: "Demo Policy": a lowercase RFC 1123 subdomain"#),
            ("no validation actions", bspec(json!({"validationActions": []})), "spec.validationActions: Required value: at least one validation action is required"),
            ("an unknown action", bspec(json!({"validationActions": ["Block"]})), r#"spec.validationActions[0]: Unsupported value: "Block": supported values: "Audit", "Deny", "Warn""#),
            ("a duplicate action", bspec(json!({"validationActions": ["Audit", "Audit"]})), r#"spec.validationActions[1]: Duplicate value: "Audit""#),
            ("Deny and Warn", bspec(json!({"validationActions": ["Deny", "Warn"]})), r#"spec.validationActions: Invalid value: []admissionregistration.ValidationAction{"Deny", "Warn"}: must not contain both Deny and Warn"#),
            ("a paramRef with neither name nor selector", param_ref(json!({"name": null})), "spec.paramRef: Required value: one of name or selector must be specified"),
            ("a bad param name", param_ref(json!({"name": "a%b"})), r#"spec.paramRef.name: Invalid value: "a%b": may not contain '%'"#),
            ("a bad param selector", param_ref(json!({"name": null, "selector": {"matchLabels": {"a": "b c"}}})), r#"spec.paramRef.selector.matchLabels: Invalid value: "b c""#),
            ("no parameterNotFoundAction", param_ref(json!({"parameterNotFoundAction": null})), "spec.paramRef.parameterNotFoundAction: Required value"),
            ("an unknown parameterNotFoundAction", param_ref(json!({"parameterNotFoundAction": "Ignore"})), r#"spec.paramRef.parameterNotFoundAction: Unsupported value: "Ignore": supported values: "Deny", "Allow""#),
            ("an unknown match policy", bspec(json!({"matchResources": {"matchPolicy": "Fuzzy"}})), r#"spec.matchResouces.matchPolicy: Unsupported value: "Fuzzy""#),
            ("a bad match rule", bspec(json!({"matchResources": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": []}]}})), "spec.matchResouces.resourceRules[0].resources: Required value"),
        ]);
        let both = param_ref(json!({"selector": {}}));
        assert_eq!(messages(G, VAPB, Op::Create(&both)), vec![
            "spec.paramRef.name: Forbidden: name and selector are mutually exclusive",
            "spec.paramRef.selector: Forbidden: name and selector are mutually exclusive",
        ]);
    }

    #[test]
    fn validating_admission_policy_binding_update() {
        let old = binding();
        update_table(G, VAPB, &old, &[
            ("actions change", bspec(json!({"validationActions": ["Warn"]})), ""),
            ("the policy changes", bspec(json!({"policyName": "other.example.com"})), ""),
            ("an update is validated as a create", bspec(json!({"validationActions": null})), "spec.validationActions: Required value"),
        ]);
    }
}

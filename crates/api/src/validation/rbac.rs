//! rbac.authorization.k8s.io/v1: roles, cluster roles and their bindings,
//! as upstream's `pkg/apis/rbac/validation`. Object names are only
//! path-segment names (checked with the metadata); rules, role references
//! and subjects are checked here.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::go::go_strings;
use super::{label_selector, name_by, Bad, Errors, Op, Path};

const GROUP: &str = "rbac.authorization.k8s.io";

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    Some(match kind {
        "Role" => op.run(role, super::nothing, super::nothing),
        "ClusterRole" => op.run(cluster_role, super::nothing, super::nothing),
        "RoleBinding" => op.run(role_binding, role_binding_update, super::nothing),
        "ClusterRoleBinding" => op.run(cluster_role_binding, cluster_role_binding_update, super::nothing),
        _ => return None,
    })
}

fn rules(rules: Option<&Vec<PolicyRule>>, namespaced: bool) -> Errors {
    let path = Path::new("rules");
    rules.into_iter().flatten().enumerate().flat_map(|(i, rule)| policy_rule(rule, namespaced, &path.index(i))).collect()
}

fn role(role: &Role) -> Errors {
    rules(role.rules.as_ref(), true)
}

fn cluster_role(role: &ClusterRole) -> Errors {
    let mut errs = rules(role.rules.as_ref(), false);
    if let Some(aggregation) = &role.aggregation_rule {
        let path = Path::new("aggregationRule").child("clusterRoleSelectors");
        let selectors = aggregation.cluster_role_selectors.as_deref().unwrap_or_default();
        if selectors.is_empty() {
            errs.push(path.required("at least one clusterRoleSelector required if aggregationRule is non-nil"));
        }
        for (i, selector) in selectors.iter().enumerate() {
            let at = path.index(i);
            let selector_errs = label_selector(selector, &at);
            // Upstream also converts each selector, which fails on anything
            // the validation above refuses, and reports that too.
            let unconvertible = !selector_errs.is_empty();
            errs.extend(selector_errs);
            if unconvertible {
                errs.push(at.invalid("null", "invalid label selector."));
            }
        }
    }
    errs
}

/// Upstream's `ValidatePolicyRule`.
fn policy_rule(rule: &PolicyRule, namespaced: bool, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if rule.verbs.is_empty() {
        errs.push(path.child("verbs").required("verbs must contain at least one value"));
    }
    let set = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    if set(&rule.non_resource_urls) {
        let urls = Bad::raw(go_strings(rule.non_resource_urls.as_deref().unwrap_or_default()));
        if namespaced {
            errs.push(path.child("nonResourceURLs").invalid(urls.clone(), "namespaced rules cannot apply to non-resource URLs"));
        }
        if set(&rule.api_groups) || set(&rule.resources) || set(&rule.resource_names) {
            errs.push(path.child("nonResourceURLs").invalid(urls, "rules cannot apply to both regular resources and non-resource URLs"));
        }
        return errs;
    }
    if !set(&rule.api_groups) {
        errs.push(path.child("apiGroups").required("resource rules must supply at least one api group"));
    }
    if !set(&rule.resources) {
        errs.push(path.child("resources").required("resource rules must supply at least one resource"));
    }
    errs
}

/// A roleRef as upstream defaults it: an empty apiGroup is RBAC's own.
fn defaulted(role_ref: &RoleRef) -> RoleRef {
    let mut out = role_ref.clone();
    if out.api_group.is_empty() {
        out.api_group = GROUP.into();
    }
    out
}

fn role_ref(role_ref: &RoleRef, kinds: &[&str]) -> Errors {
    let mut errs = Vec::new();
    let path = Path::new("roleRef");
    let role_ref = defaulted(role_ref);
    if role_ref.api_group != GROUP {
        errs.push(path.child("apiGroup").not_supported(&role_ref.api_group, &[GROUP]));
    }
    if !kinds.contains(&role_ref.kind.as_str()) {
        errs.push(path.child("kind").not_supported(&role_ref.kind, kinds));
    }
    if role_ref.name.is_empty() {
        errs.push(path.child("name").required(""));
    } else {
        errs.extend(super::path_segment(&role_ref.name, &path.child("name")));
    }
    errs
}

/// Upstream's `ValidateRoleBindingSubject`. Subjects of a ClusterRoleBinding
/// that are service accounts must say their namespace.
fn subject(subject: &Subject, namespaced: bool, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if subject.name.is_empty() {
        errs.push(path.child("name").required(""));
    }
    let api_group = subject.api_group.as_deref().unwrap_or("");
    match subject.kind.as_str() {
        "ServiceAccount" => {
            if !subject.name.is_empty() {
                errs.extend(name_by(super::dns1123_subdomain, &subject.name, &path.child("name")));
            }
            if !api_group.is_empty() {
                errs.push(path.child("apiGroup").not_supported(api_group, &[""]));
            }
            if !namespaced && subject.namespace.as_deref().unwrap_or("").is_empty() {
                errs.push(path.child("namespace").required(""));
            }
        }
        "User" | "Group" => {
            // Upstream defaults an empty apiGroup of users and groups to RBAC's.
            if !api_group.is_empty() && api_group != GROUP {
                errs.push(path.child("apiGroup").not_supported(api_group, &[GROUP]));
            }
        }
        other => errs.push(path.child("kind").not_supported(other, &["ServiceAccount", "User", "Group"])),
    }
    errs
}

fn subjects(subjects: Option<&Vec<Subject>>, namespaced: bool) -> Errors {
    let path = Path::new("subjects");
    subjects.into_iter().flatten().enumerate().flat_map(|(i, s)| subject(s, namespaced, &path.index(i))).collect()
}

fn role_binding(binding: &RoleBinding) -> Errors {
    let mut errs = role_ref(&binding.role_ref, &["Role", "ClusterRole"]);
    errs.extend(subjects(binding.subjects.as_ref(), true));
    errs
}

fn cluster_role_binding(binding: &ClusterRoleBinding) -> Errors {
    let mut errs = role_ref(&binding.role_ref, &["ClusterRole"]);
    errs.extend(subjects(binding.subjects.as_ref(), false));
    errs
}

/// A binding's roleRef never changes: rebinding means a new binding.
fn role_ref_update(new: &RoleRef, old: &RoleRef) -> Errors {
    let new = defaulted(new);
    if new == defaulted(old) {
        return vec![];
    }
    let shown = format!("rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}", new.api_group, new.kind, new.name);
    vec![Path::new("roleRef").invalid(Bad::raw(shown), "cannot change roleRef")]
}

fn role_binding_update(new: &RoleBinding, old: &RoleBinding) -> Errors {
    role_ref_update(&new.role_ref, &old.role_ref)
}

fn cluster_role_binding_update(new: &ClusterRoleBinding, old: &ClusterRoleBinding) -> Errors {
    role_ref_update(&new.role_ref, &old.role_ref)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{messages, table, update_table, with};
    use super::super::Op;

    const G: &str = "rbac.authorization.k8s.io";

    /// What `kubectl create role pod-reader --verb=get --resource=pods` sends.
    fn pod_reader() -> Value {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "pod-reader", "namespace": "default"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        })
    }

    fn admin_role() -> Value {
        json!({
            "metadata": {"name": "system:controller:thing"},
            "rules": [
                {"apiGroups": ["", "apps"], "resources": ["pods", "deployments/scale"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["*"], "resources": ["*"], "resourceNames": ["one"], "verbs": ["*"]},
                {"nonResourceURLs": ["/healthz", "/metrics"], "verbs": ["get"]},
            ],
        })
    }

    /// `kubectl create rolebinding read-pods --role=pod-reader --user=jane --serviceaccount=default:robot`.
    fn role_binding() -> Value {
        json!({
            "metadata": {"name": "read-pods", "namespace": "default"},
            "roleRef": {"apiGroup": G, "kind": "Role", "name": "pod-reader"},
            "subjects": [
                {"apiGroup": G, "kind": "User", "name": "jane"},
                {"kind": "ServiceAccount", "name": "robot", "namespace": "default"},
            ],
        })
    }

    /// `kubectl create clusterrolebinding root --clusterrole=cluster-admin --user=root`.
    fn cluster_role_binding() -> Value {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "root"},
            "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": G, "kind": "User", "name": "root"}],
        })
    }

    #[test]
    fn role_valid() {
        table(G, "Role", &[
            ("kubectl create role", pod_reader(), ""),
            ("no rules", json!({"metadata": {"name": "empty", "namespace": "default"}}), ""),
            ("empty rules", with(&pod_reader(), json!({"rules": []})), ""),
            ("resource names", with(&pod_reader(), json!({"rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a", "b"], "verbs": ["get", "update"]}]})), ""),
            ("name with colon", with(&pod_reader(), json!({"metadata": {"name": "system:pod-reader"}})), ""),
        ]);
        table(G, "ClusterRole", &[
            ("admin-ish", admin_role(), ""),
            ("aggregated", json!({
                "metadata": {"name": "monitoring"},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}, {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}]},
                "rules": [],
            }), ""),
            ("aggregated with rules filled in by the controller", with(&admin_role(), json!({"aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}})), ""),
        ]);
    }

    #[test]
    fn role_invalid() {
        let r = pod_reader();
        table(G, "Role", &[
            ("no verbs", with(&r, json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": []}]})), "rules[0].verbs: Required value: verbs must contain at least one value"),
            ("verbs missing", with(&r, json!({"rules": [{"apiGroups": [""], "resources": ["pods"]}]})), "rules[0].verbs: Required value: verbs must contain at least one value"),
            ("no api groups", with(&r, json!({"rules": [{"resources": ["pods"], "verbs": ["get"]}]})), "rules[0].apiGroups: Required value: resource rules must supply at least one api group"),
            ("no resources", with(&r, json!({"rules": [{"apiGroups": [""], "verbs": ["get"]}]})), "rules[0].resources: Required value: resource rules must supply at least one resource"),
            ("non-resource URLs in a namespace", with(&r, json!({"rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]})), "rules[0].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs"),
            ("second rule", with(&r, json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, {"apiGroups": ["apps"], "verbs": ["get"]}]})), "rules[1].resources: Required value"),
        ]);
        // Both: namespaced and mixed.
        let both = with(&r, json!({"rules": [{"nonResourceURLs": ["/x"], "resources": ["pods"], "verbs": ["get"]}]}));
        assert_eq!(messages(G, "Role", Op::Create(&both)), vec![
            "rules[0].nonResourceURLs: Invalid value: []string{\"/x\"}: namespaced rules cannot apply to non-resource URLs",
            "rules[0].nonResourceURLs: Invalid value: []string{\"/x\"}: rules cannot apply to both regular resources and non-resource URLs",
        ]);
        // Every error of the object, not just the first.
        let bad = with(&r, json!({"rules": [{}]}));
        assert_eq!(messages(G, "Role", Op::Create(&bad)).len(), 3);
    }

    #[test]
    fn cluster_role_invalid() {
        let r = admin_role();
        table(G, "ClusterRole", &[
            ("URLs with resources", with(&r, json!({"rules": [{"nonResourceURLs": ["/healthz"], "resources": ["pods"], "verbs": ["get"]}]})), "rules[0].nonResourceURLs: Invalid value: []string{\"/healthz\"}: rules cannot apply to both regular resources and non-resource URLs"),
            ("URLs with api groups", with(&r, json!({"rules": [{"nonResourceURLs": ["/healthz"], "apiGroups": [""], "verbs": ["get"]}]})), "rules[0].nonResourceURLs: Invalid value: []string{\"/healthz\"}: rules cannot apply to both"),
            ("URLs with resource names", with(&r, json!({"rules": [{"nonResourceURLs": ["/healthz"], "resourceNames": ["x"], "verbs": ["get"]}]})), "rules[0].nonResourceURLs: Invalid value"),
            ("URLs without verbs", with(&r, json!({"rules": [{"nonResourceURLs": ["/healthz"], "verbs": []}]})), "rules[0].verbs: Required value: verbs must contain at least one value"),
            ("empty aggregation rule", with(&r, json!({"aggregationRule": {}})), "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"),
            ("empty selector list", with(&r, json!({"aggregationRule": {"clusterRoleSelectors": []}})), "aggregationRule.clusterRoleSelectors: Required value"),
        ]);
        let bad_selector = with(&r, json!({"aggregationRule": {"clusterRoleSelectors": [{"matchExpressions": [{"key": "a", "operator": "Near"}]}]}}));
        assert_eq!(messages(G, "ClusterRole", Op::Create(&bad_selector)), vec![
            "aggregationRule.clusterRoleSelectors[0].matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator",
            "aggregationRule.clusterRoleSelectors[0]: Invalid value: \"null\": invalid label selector.",
        ]);
        let bad_label = with(&r, json!({"aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b c"}}]}}));
        let got = messages(G, "ClusterRole", Op::Create(&bad_label));
        assert!(got[0].starts_with("aggregationRule.clusterRoleSelectors[0].matchLabels: Invalid value: \"b c\""), "{got:?}");
    }

    #[test]
    fn role_binding_invalid() {
        let b = role_binding();
        table(G, "RoleBinding", &[
            ("kubectl create rolebinding", b.clone(), ""),
            ("cluster role", with(&b, json!({"roleRef": {"kind": "ClusterRole", "name": "view"}})), ""),
            ("roleRef apiGroup defaulted", with(&b, json!({"roleRef": {"apiGroup": null}})), ""),
            ("user apiGroup defaulted", with(&b, json!({"subjects": [{"kind": "User", "name": "jane"}, {"kind": "Group", "name": "system:authenticated"}]})), ""),
            ("no subjects", with(&b, json!({"subjects": null})), ""),
            ("service account in another namespace", with(&b, json!({"subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "kube-system"}]})), ""),
            ("service account without namespace", with(&b, json!({"subjects": [{"kind": "ServiceAccount", "name": "robot"}]})), ""),
            ("bad roleRef group", with(&b, json!({"roleRef": {"apiGroup": "rbac"}})), "roleRef.apiGroup: Unsupported value: \"rbac\": supported values: \"rbac.authorization.k8s.io\""),
            ("bad roleRef kind", with(&b, json!({"roleRef": {"kind": "Group"}})), "roleRef.kind: Unsupported value: \"Group\": supported values: \"Role\", \"ClusterRole\""),
            ("roleRef name missing", with(&b, json!({"roleRef": {"name": ""}})), "roleRef.name: Required value"),
            ("roleRef name with slash", with(&b, json!({"roleRef": {"name": "a/b"}})), "roleRef.name: Invalid value: \"a/b\": may not contain '/'"),
            ("roleRef name dot-dot", with(&b, json!({"roleRef": {"name": ".."}})), "roleRef.name: Invalid value: \"..\": may not be '..'"),
            ("subject kind", with(&b, json!({"subjects": [{"kind": "Robot", "name": "r2d2"}]})), "subjects[0].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\""),
            ("subject without name", with(&b, json!({"subjects": [{"apiGroup": G, "kind": "User", "name": ""}]})), "subjects[0].name: Required value"),
            ("group without name", with(&b, json!({"subjects": [{"apiGroup": G, "kind": "Group", "name": ""}]})), "subjects[0].name: Required value"),
            ("service account name", with(&b, json!({"subjects": [{"kind": "ServiceAccount", "name": "Robot_1", "namespace": "default"}]})), "subjects[0].name: Invalid value: \"Robot_1\": a lowercase RFC 1123 subdomain"),
            ("service account api group", with(&b, json!({"subjects": [{"apiGroup": G, "kind": "ServiceAccount", "name": "robot"}]})), "subjects[0].apiGroup: Unsupported value: \"rbac.authorization.k8s.io\": supported values: \"\""),
            ("user api group", with(&b, json!({"subjects": [{"apiGroup": "v1", "kind": "User", "name": "jane"}]})), "subjects[0].apiGroup: Unsupported value: \"v1\": supported values: \"rbac.authorization.k8s.io\""),
            ("group api group", with(&b, json!({"subjects": [{"apiGroup": "x", "kind": "Group", "name": "devs"}]})), "subjects[0].apiGroup: Unsupported value: \"x\""),
        ]);
    }

    #[test]
    fn cluster_role_binding_invalid() {
        let b = cluster_role_binding();
        table(G, "ClusterRoleBinding", &[
            ("kubectl create clusterrolebinding", b.clone(), ""),
            ("service account", with(&b, json!({"subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}]})), ""),
            ("groups", with(&b, json!({"subjects": [{"apiGroup": G, "kind": "Group", "name": "system:masters"}, {"kind": "Group", "name": "system:nodes"}]})), ""),
            ("Role kind", with(&b, json!({"roleRef": {"kind": "Role"}})), "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\""),
            ("bad group", with(&b, json!({"roleRef": {"apiGroup": "authorization.k8s.io"}})), "roleRef.apiGroup: Unsupported value: \"authorization.k8s.io\""),
            ("roleRef without name", with(&b, json!({"roleRef": {"name": ""}})), "roleRef.name: Required value"),
            ("roleRef name with percent", with(&b, json!({"roleRef": {"name": "50%"}})), "roleRef.name: Invalid value: \"50%\": may not contain '%'"),
            ("service account without namespace", with(&b, json!({"subjects": [{"kind": "ServiceAccount", "name": "default"}]})), "subjects[0].namespace: Required value"),
            ("service account empty namespace", with(&b, json!({"subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ""}]})), "subjects[0].namespace: Required value"),
            ("second subject", with(&b, json!({"subjects": [{"kind": "User", "name": "a"}, {"kind": "user", "name": "b"}]})), "subjects[1].kind: Unsupported value: \"user\""),
        ]);
        let nameless = with(&b, json!({"subjects": [{"kind": "ServiceAccount", "name": ""}]}));
        assert_eq!(messages(G, "ClusterRoleBinding", Op::Create(&nameless)), vec!["subjects[0].name: Required value", "subjects[0].namespace: Required value"]);
    }

    #[test]
    fn role_binding_update() {
        let old = role_binding();
        update_table(G, "RoleBinding", &old, &[
            ("subjects change", with(&old, json!({"subjects": [{"apiGroup": G, "kind": "Group", "name": "devs"}]})), ""),
            ("apiGroup spelled out or defaulted", with(&old, json!({"roleRef": {"apiGroup": null}})), ""),
            ("labels change", with(&old, json!({"metadata": {"labels": {"a": "b"}}})), ""),
            ("other role", with(&old, json!({"roleRef": {"name": "pod-writer"}})), "roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"pod-writer\"}: cannot change roleRef"),
            ("other kind", with(&old, json!({"roleRef": {"kind": "ClusterRole"}})), "roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"pod-reader\"}: cannot change roleRef"),
        ]);
        let old = cluster_role_binding();
        update_table(G, "ClusterRoleBinding", &old, &[
            ("subjects change", with(&old, json!({"subjects": []})), ""),
            ("other cluster role", with(&old, json!({"roleRef": {"name": "view"}})), "roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"view\"}: cannot change roleRef"),
            ("invalid new subject", with(&old, json!({"subjects": [{"kind": "Nobody", "name": "x"}]})), "subjects[0].kind: Unsupported value: \"Nobody\""),
        ]);
        let role = pod_reader();
        update_table(G, "Role", &role, &[
            ("rules change", with(&role, json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})), ""),
            ("rules broken", with(&role, json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": []}]})), "rules[0].verbs: Required value"),
        ]);
    }
}

//! RBAC as upstream evaluates it: bindings grant the rules of their role to
//! subjects; ClusterRoleBindings everywhere, RoleBindings in their
//! namespace. Nothing is denied explicitly. The index is rebuilt whenever a
//! Role, ClusterRole or binding changes; requests only read it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};

use crate::authn::UserInfo;
use crate::authz::{Attributes, Decision};

/// Upstream's user name for a ServiceAccount.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

struct Binding {
    /// `None` for a ClusterRoleBinding.
    namespace: Option<String>,
    role: RoleRef,
}

/// Roles and bindings, indexed by subject.
#[derive(Default)]
pub struct Index {
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    by_user: HashMap<String, Vec<Arc<Binding>>>,
    by_group: HashMap<String, Vec<Arc<Binding>>>,
}

impl Index {
    pub fn build(cluster_roles: Vec<ClusterRole>, roles: Vec<Role>, cluster_bindings: Vec<ClusterRoleBinding>, bindings: Vec<RoleBinding>) -> Index {
        let mut index = Index::default();
        for role in cluster_roles {
            index.cluster_roles.insert(role.metadata.name.unwrap_or_default(), role.rules.unwrap_or_default());
        }
        for role in roles {
            let key = (role.metadata.namespace.unwrap_or_default(), role.metadata.name.unwrap_or_default());
            index.roles.insert(key, role.rules.unwrap_or_default());
        }
        for b in cluster_bindings {
            index.add(None, b.role_ref, b.subjects.unwrap_or_default());
        }
        for b in bindings {
            index.add(b.metadata.namespace, b.role_ref, b.subjects.unwrap_or_default());
        }
        index
    }

    fn add(&mut self, namespace: Option<String>, role: RoleRef, subjects: Vec<Subject>) {
        let binding = Arc::new(Binding { namespace: namespace.clone(), role });
        for s in subjects {
            match s.kind.as_str() {
                "User" => self.by_user.entry(s.name).or_default().push(binding.clone()),
                "Group" => self.by_group.entry(s.name).or_default().push(binding.clone()),
                "ServiceAccount" => {
                    let ns = s.namespace.filter(|n| !n.is_empty()).or_else(|| namespace.clone()).unwrap_or_default();
                    self.by_user.entry(service_account_user(&ns, &s.name)).or_default().push(binding.clone());
                }
                _ => {}
            }
        }
    }

    /// Calls `visit` with every rule granted to `user` in `namespace` (only
    /// cluster-wide ones for ""), until it returns true. Returns whether one
    /// did, and the bindings whose role is missing, worded as upstream.
    fn visit(&self, user: &UserInfo, namespace: &str, mut visit: impl FnMut(&PolicyRule) -> bool) -> (bool, Vec<String>) {
        let mut errors = Vec::new();
        let bindings = self
            .by_user
            .get(&user.name)
            .into_iter()
            .chain(user.groups.iter().filter_map(|g| self.by_group.get(g)))
            .flatten()
            .filter(|b| b.namespace.as_deref().is_none_or(|ns| ns == namespace && !namespace.is_empty()));
        for b in bindings {
            let rules = match (b.role.kind.as_str(), &b.namespace) {
                ("ClusterRole", _) => self.cluster_roles.get(&b.role.name),
                ("Role", Some(ns)) => self.roles.get(&(ns.clone(), b.role.name.clone())),
                _ => None,
            };
            let Some(rules) = rules else {
                let kind = b.role.kind.to_ascii_lowercase();
                errors.push(format!("{kind}.rbac.authorization.k8s.io {:?} not found", b.role.name));
                continue;
            };
            if rules.iter().any(&mut visit) {
                return (true, errors);
            }
        }
        (false, errors)
    }
}

/// The RBAC mode: the current index, swapped whole on every change.
#[derive(Default)]
pub struct Authorizer {
    index: RwLock<Arc<Index>>,
}

impl Authorizer {
    pub fn replace(&self, index: Index) {
        *self.index.write().expect("the RBAC index lock is never poisoned") = Arc::new(index);
    }

    fn current(&self) -> Arc<Index> {
        self.index.read().expect("the RBAC index lock is never poisoned").clone()
    }

    pub fn authorize(&self, a: &Attributes) -> Decision {
        let (allowed, errors) = self.current().visit(&a.user, &a.namespace, |rule| rule_allows(rule, a));
        match (allowed, errors.is_empty()) {
            (true, _) => Decision::Allow,
            (false, true) => Decision::NoOpinion(String::new()),
            (false, false) => Decision::NoOpinion(format!("RBAC: [{}]", errors.join(", "))),
        }
    }

    /// Every rule granted to `user` in `namespace` (cluster-wide ones
    /// included), for SelfSubjectRulesReview and escalation checks.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let (_, errors) = self.current().visit(user, namespace, |rule| {
            rules.push(rule.clone());
            false
        });
        (rules, errors)
    }
}

fn has(list: &[String], item: &str) -> bool {
    list.iter().any(|i| i == item)
}

fn matches(list: &[String], item: &str) -> bool {
    list.iter().any(|i| i == "*" || i == item)
}

fn url_matches(pattern: &str, path: &str) -> bool {
    pattern == "*" || pattern == path || pattern.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix))
}

/// Upstream's `RuleAllows`.
pub fn rule_allows(rule: &PolicyRule, a: &Attributes) -> bool {
    if !matches(&rule.verbs, &a.verb) {
        return false;
    }
    if !a.resource_request {
        return rule.non_resource_urls.iter().flatten().any(|u| url_matches(u, &a.path));
    }
    let combined = a.combined_resource();
    let resources = rule.resources.as_deref().unwrap_or_default();
    let resource_matches = resources.iter().any(|r| {
        r == "*" || *r == combined || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(a.subresource.as_str()))
    });
    let names = rule.resource_names.as_deref().unwrap_or_default();
    matches(rule.api_groups.as_deref().unwrap_or_default(), &a.api_group) && resource_matches && (names.is_empty() || has(names, &a.name))
}

/// Upstream's `ruleCovers`: whether `owner` grants everything `sub` does.
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let all = |owner: &Option<Vec<String>>, sub: &Option<Vec<String>>| {
        let owner = owner.as_deref().unwrap_or_default();
        has(owner, "*") || sub.iter().flatten().all(|s| has(owner, s))
    };
    let owner_resources = owner.resources.as_deref().unwrap_or_default();
    let resources = sub.resources.iter().flatten().all(|r| {
        has(owner_resources, "*") || has(owner_resources, r) || r.split_once('/').is_some_and(|(_, sub)| has(owner_resources, &format!("*/{sub}")))
    });
    let urls = sub.non_resource_urls.iter().flatten().all(|u| owner.non_resource_urls.iter().flatten().any(|o| o == u || o.strip_suffix('*').is_some_and(|p| u.starts_with(p))));
    let owner_names = owner.resource_names.as_deref().unwrap_or_default();
    let names = owner_names.is_empty() || (sub.resource_names.as_deref().is_some_and(|n| !n.is_empty()) && all(&owner.resource_names, &sub.resource_names));
    (has(&owner.verbs, "*") || sub.verbs.iter().all(|v| has(&owner.verbs, v)))
        && all(&owner.api_groups, &sub.api_groups)
        && resources
        && urls
        && names
}

/// Upstream's `BreakdownRule`: one rule per verb, group, resource and name.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| Some(vec![s.clone()]);
    let mut atoms = Vec::new();
    for verb in &rule.verbs {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                let names: Vec<Option<Vec<String>>> = match rule.resource_names.as_deref() {
                    Some(names) if !names.is_empty() => names.iter().map(one).collect(),
                    _ => vec![None],
                };
                for names in names {
                    atoms.push(PolicyRule { verbs: vec![verb.clone()], api_groups: one(group), resources: one(resource), resource_names: names, non_resource_urls: None });
                }
            }
        }
        for url in rule.non_resource_urls.iter().flatten() {
            atoms.push(PolicyRule { verbs: vec![verb.clone()], non_resource_urls: one(url), ..Default::default() });
        }
    }
    atoms
}

/// The parts of `requested` that `owned` does not grant (empty when covered).
pub fn uncovered(owned: &[PolicyRule], requested: &[PolicyRule]) -> Vec<PolicyRule> {
    requested.iter().flat_map(breakdown).filter(|atom| !owned.iter().any(|o| rule_covers(o, atom))).collect()
}

/// A rule as upstream prints it in escalation errors.
pub fn describe(rule: &PolicyRule) -> String {
    let list = |name: &str, items: &Option<Vec<String>>| match items.as_deref() {
        Some(items) if !items.is_empty() => format!("{name}:[{}], ", items.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>().join(" ")),
        _ => String::new(),
    };
    let text = format!(
        "{}{}{}{}Verbs:[{}]",
        list("APIGroups", &rule.api_groups),
        list("Resources", &rule.resources),
        list("ResourceNames", &rule.resource_names),
        list("NonResourceURLs", &rule.non_resource_urls),
        rule.verbs.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(" ")
    );
    format!("{{{text}}}")
}

/// Upstream's default ClusterRoles and ClusterRoleBindings, as objects,
/// marked as upstream marks them.
pub fn bootstrap_policy() -> Vec<serde_json::Value> {
    use serde_json::{json, Value};
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Policy {
        cluster_roles: Vec<Value>,
        cluster_role_bindings: Vec<Value>,
    }
    let policy: Policy = serde_yaml::from_str(include_str!("bootstrap-policy.yaml")).expect("the bootstrap policy parses");
    let metadata = |name: &Value, labels: &Value| {
        let mut labels = labels.as_object().cloned().unwrap_or_default();
        labels.insert("kubernetes.io/bootstrapping".into(), json!("rbac-defaults"));
        json!({"name": name, "labels": labels, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}})
    };
    let group = "rbac.authorization.k8s.io";
    let roles = policy.cluster_roles.iter().map(|r| {
        let mut role = json!({"apiVersion": format!("{group}/v1"), "kind": "ClusterRole", "metadata": metadata(&r["name"], &r["labels"]), "rules": r.get("rules").cloned().unwrap_or(json!([]))});
        if let Some(rule) = r.get("aggregationRule") {
            role["aggregationRule"] = rule.clone();
        }
        role
    });
    let bindings = policy.cluster_role_bindings.iter().map(|b| {
        let subjects: Vec<Value> = b["subjects"].as_array().into_iter().flatten().map(|s| {
            let mut s = s.clone();
            if s["kind"] != "ServiceAccount" {
                s["apiGroup"] = json!(group);
            }
            s
        }).collect();
        json!({"apiVersion": format!("{group}/v1"), "kind": "ClusterRoleBinding", "metadata": metadata(&b["name"], &Value::Null),
               "roleRef": {"apiGroup": group, "kind": "ClusterRole", "name": b["role"]}, "subjects": subjects})
    });
    roles.chain(bindings).collect()
}

/// What upstream's Node authorizer grants a kubelet without looking at its
/// pods (its `NodeRules`), as (groups, resources, verbs).
const NODE_RULES: &[(&[&str], &[&str], &[&str])] = &[
    (&[""], &["nodes"], &["get", "list", "watch", "create", "update", "patch", "delete"]),
    (&[""], &["nodes/status"], &["patch", "update"]),
    (&[""], &["pods"], &["get", "list", "watch", "create", "delete"]),
    (&[""], &["pods/status"], &["patch", "update"]),
    (&[""], &["pods/eviction"], &["create"]),
    (&[""], &["services", "endpoints"], &["get", "list", "watch"]),
    (&["", "events.k8s.io"], &["events"], &["create", "patch", "update"]),
    (&["coordination.k8s.io"], &["leases"], &["get", "create", "update", "patch", "delete"]),
    (&["certificates.k8s.io"], &["certificatesigningrequests"], &["create", "get", "list", "watch"]),
    (&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
    (&["authorization.k8s.io"], &["subjectaccessreviews", "localsubjectaccessreviews"], &["create"]),
    (&["storage.k8s.io"], &["csidrivers", "volumeattachments"], &["get", "list", "watch"]),
    (&["storage.k8s.io"], &["csinodes"], &["get", "list", "watch", "create", "update", "patch", "delete"]),
    (&["node.k8s.io"], &["runtimeclasses"], &["get", "list", "watch"]),
    // Skiff's node-deployment provisioner (skiff-csi): a node makes the
    // volumes of its own CSI drivers. NodeRestriction keeps it to CSI
    // volumes of drivers in its CSINode.
    (&[""], &["persistentvolumeclaims"], &["list", "watch"]),
    (&[""], &["persistentvolumeclaims/status"], &["patch"]),
    (&[""], &["persistentvolumes"], &["list", "watch", "create", "delete", "patch"]),
    (&["storage.k8s.io"], &["storageclasses"], &["get", "list", "watch"]),
    // ...and attaches them (external-attacher's job): NodeRestriction keeps
    // it to the attachments to itself.
    (&["storage.k8s.io"], &["volumeattachments", "volumeattachments/status"], &["patch"]),
    // ...and snapshots them (external-snapshotter's jobs): NodeRestriction
    // keeps contents to its own drivers'.
    (&["snapshot.storage.k8s.io"], &["volumesnapshots", "volumesnapshotclasses"], &["get", "list", "watch"]),
    (&["snapshot.storage.k8s.io"], &["volumesnapshots/status", "volumesnapshotcontents/status"], &["patch"]),
    (&["snapshot.storage.k8s.io"], &["volumesnapshotcontents"], &["get", "list", "watch", "create", "delete", "patch"]),
    // ...and says what capacity its drivers have left (NodeRestriction: only
    // the objects labelled as its own).
    (&["storage.k8s.io"], &["csistoragecapacities"], &["get", "list", "watch", "create", "update", "patch", "delete"]),
    // Skiff's policy enforcer on every node (as Calico's Felix reads them).
    (&["networking.k8s.io"], &["networkpolicies"], &["list", "watch"]),
    (&[""], &["namespaces"], &["list", "watch"]),
    // AppSafe's flow observer on every node: it reads the groups and
    // merges the connections it sees into their status.
    (&["appsafe.skiff.io"], &["appgroups"], &["get", "list", "watch"]),
    (&["appsafe.skiff.io"], &["appgroups/status"], &["get", "patch", "update"]),
];

/// The Node mode's rules. Reads of secrets, configmaps, volumes and service
/// account tokens depend on the node's pods: the API server answers those
/// from its pod graph when no mode allows them.
pub fn node_authorize(a: &Attributes) -> Decision {
    let Some(node) = a.user.name.strip_prefix("system:node:") else {
        return Decision::NoOpinion(String::new());
    };
    if !a.user.groups.iter().any(|g| g == "system:nodes") || !a.resource_request {
        return Decision::NoOpinion(String::new());
    }
    let resource = a.combined_resource();
    // Reads of single claims and volumes follow the node's pods (the graph).
    if ["secrets", "configmaps", "serviceaccounts/token"].contains(&resource.as_str()) || (a.verb == "get" && ["persistentvolumeclaims", "persistentvolumes"].contains(&resource.as_str())) {
        return Decision::NoOpinion(format!("no relationship found between node '{node}' and this object"));
    }
    let allowed = NODE_RULES.iter().any(|(groups, resources, verbs)| groups.contains(&a.api_group.as_str()) && resources.contains(&resource.as_str()) && verbs.contains(&a.verb.as_str()));
    if allowed {
        Decision::Allow
    } else {
        Decision::NoOpinion(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: serde_json::Value) -> PolicyRule {
        serde_json::from_value(v).unwrap()
    }

    fn request(user: &UserInfo, verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Attributes {
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn v<T: serde::de::DeserializeOwned>(j: serde_json::Value) -> T {
        serde_json::from_value(j).unwrap()
    }

    fn index() -> Index {
        Index::build(
            vec![v(json!({"metadata": {"name": "reader"}, "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]}))],
            vec![v(json!({"metadata": {"name": "scaler", "namespace": "a"}, "rules": [{"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]}, {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"], "verbs": ["*"]}]}))],
            vec![v(json!({"metadata": {"name": "readers"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"}, "subjects": [{"kind": "Group", "name": "dev"}]}))],
            vec![
                v(json!({"metadata": {"name": "s", "namespace": "a"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "scaler"}, "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "robot"}]})),
                v(json!({"metadata": {"name": "gone", "namespace": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "missing"}, "subjects": [{"kind": "User", "name": "alice"}]})),
            ],
        )
    }

    #[test]
    fn bindings_grant_rules_where_they_apply() {
        let rbac = Authorizer::default();
        rbac.replace(index());
        let alice = UserInfo::named("alice", &["system:authenticated"]);
        let dev = UserInfo::named("dan", &["dev"]);
        let robot = UserInfo::named("system:serviceaccount:a:robot", &[]);
        let allowed = |a: Attributes| rbac.authorize(&a) == Decision::Allow;
        assert!(allowed(request(&dev, "list", "", "pods", "", "x", "")));
        assert!(allowed(request(&dev, "list", "", "pods", "", "", "")));
        assert!(allowed(request(&dev, "get", "", "pods", "log", "x", "p")));
        assert!(!allowed(request(&dev, "delete", "", "pods", "", "x", "p")));
        assert!(!allowed(request(&dev, "get", "", "pods", "exec", "x", "p")));
        assert!(allowed(request(&alice, "update", "apps", "deployments", "scale", "a", "d")));
        assert!(allowed(request(&robot, "update", "apps", "statefulsets", "scale", "a", "d")));
        assert!(!allowed(request(&alice, "update", "apps", "deployments", "scale", "c", "d")));
        assert!(!allowed(request(&alice, "update", "apps", "deployments", "", "a", "d")));
        assert!(allowed(request(&alice, "delete", "", "configmaps", "", "a", "one")));
        assert!(!allowed(request(&alice, "delete", "", "configmaps", "", "a", "two")));
        assert_eq!(
            rbac.authorize(&request(&alice, "get", "", "pods", "", "b", "p")),
            Decision::NoOpinion(r#"RBAC: [role.rbac.authorization.k8s.io "missing" not found]"#.into())
        );
    }

    #[test]
    fn bootstrap_policy_is_well_formed() {
        let objects = bootstrap_policy();
        let roles: Vec<ClusterRole> = objects.iter().filter(|o| o["kind"] == "ClusterRole").map(|o| v(o.clone())).collect();
        let bindings: Vec<ClusterRoleBinding> = objects.iter().filter(|o| o["kind"] == "ClusterRoleBinding").map(|o| v(o.clone())).collect();
        for b in &bindings {
            assert!(roles.iter().any(|r| r.metadata.name.as_ref() == Some(&b.role_ref.name)), "{:?}", b.role_ref);
        }
        let rbac = Authorizer::default();
        rbac.replace(Index::build(roles, vec![], bindings, vec![]));
        let anonymous = UserInfo::anonymous();
        let path = |user: &UserInfo, p: &str| Attributes { user: user.clone(), verb: "get".into(), path: p.into(), ..Default::default() };
        assert_eq!(rbac.authorize(&path(&anonymous, "/version")), Decision::Allow);
        assert_ne!(rbac.authorize(&path(&anonymous, "/apis")), Decision::Allow);
        assert_ne!(rbac.authorize(&request(&anonymous, "create", "", "pods", "", "default", "")), Decision::Allow);
        let scheduler = UserInfo::named("system:kube-scheduler", &["system:authenticated"]);
        assert_eq!(rbac.authorize(&request(&scheduler, "create", "", "pods", "binding", "default", "p")), Decision::Allow);
        assert_eq!(rbac.authorize(&request(&scheduler, "get", "coordination.k8s.io", "leases", "", "kube-system", "kube-scheduler")), Decision::Allow);
        assert_ne!(rbac.authorize(&request(&scheduler, "get", "", "secrets", "", "default", "s")), Decision::Allow);
    }

    #[test]
    fn escalation_compares_atomic_rules() {
        let owned = [rule(json!({"apiGroups": [""], "resources": ["pods", "*/status"], "verbs": ["get", "list"]}))];
        assert!(uncovered(&owned, &[rule(json!({"apiGroups": [""], "resources": ["pods", "services/status"], "verbs": ["get"]}))]).is_empty());
        let missing = uncovered(&owned, &[rule(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}))]);
        assert_eq!(missing.iter().map(describe).collect::<Vec<_>>(), [r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#]);
        assert_eq!(uncovered(&owned, &[rule(json!({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}))]).len(), 1);
        let admin = [rule(json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})), rule(json!({"nonResourceURLs": ["*"], "verbs": ["*"]}))];
        assert!(uncovered(&admin, &[rule(json!({"nonResourceURLs": ["/metrics"], "verbs": ["get"]}))]).is_empty());
    }
}

//! ABAC (`--authorization-policy-file`): upstream's JSON-lines policy, one
//! `abac.authorization.kubernetes.io/v1beta1` Policy per line (lines without
//! an apiVersion are the legacy v0 form). A request is allowed when any
//! policy matches it.

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::authz::{Attributes, Decision};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Spec {
    user: String,
    group: String,
    readonly: bool,
    api_group: String,
    resource: String,
    namespace: String,
    non_resource_path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Line {
    api_version: String,
    kind: String,
    spec: Option<Spec>,
    // The v0 form: the spec's fields at the top.
    user: String,
    group: String,
    readonly: bool,
    resource: String,
    namespace: String,
}

pub struct Policy {
    rules: Vec<Spec>,
}

impl Policy {
    pub fn load(path: &std::path::Path) -> Result<Policy> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Policy::parse(&text).with_context(|| format!("{}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Policy> {
        let mut rules = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let parsed: Line = serde_json::from_str(line).with_context(|| format!("line {}", n + 1))?;
            rules.push(match parsed.api_version.as_str() {
                "abac.authorization.kubernetes.io/v1beta1" => {
                    if parsed.kind != "Policy" {
                        bail!("line {}: kind {:?} is not Policy", n + 1, parsed.kind);
                    }
                    parsed.spec.with_context(|| format!("line {}: a Policy needs a spec", n + 1))?
                }
                // v0 as upstream converts it: unset fields are wildcards.
                "" | "v0" => {
                    let any = |s: String| if s.is_empty() { "*".to_string() } else { s };
                    let everyone = parsed.user.is_empty() && parsed.group.is_empty();
                    Spec {
                        user: if everyone { "*".into() } else { parsed.user },
                        group: parsed.group,
                        readonly: parsed.readonly,
                        api_group: "*".into(),
                        resource: any(parsed.resource),
                        namespace: any(parsed.namespace),
                        non_resource_path: "*".into(),
                    }
                }
                other => bail!("line {}: unknown apiVersion {other:?}", n + 1),
            });
        }
        Ok(Policy { rules })
    }

    pub fn authorize(&self, a: &Attributes) -> Decision {
        if self.rules.iter().any(|p| matches(p, a)) {
            Decision::Allow
        } else {
            Decision::NoOpinion("No policy matched.".into())
        }
    }
}

/// Upstream's `matches`: subject, then verb, then resource or path.
fn matches(p: &Spec, a: &Attributes) -> bool {
    let mut subject = false;
    if !p.user.is_empty() {
        subject = p.user == "*" || p.user == a.user.name;
        if !subject {
            return false;
        }
    }
    if !p.group.is_empty() {
        subject = p.group == "*" || a.user.groups.contains(&p.group);
        if !subject {
            return false;
        }
    }
    if !subject || (p.readonly && !a.read_only()) {
        return false;
    }
    let wild = |pattern: &str, value: &str| pattern == "*" || pattern == value;
    if a.resource_request {
        wild(&p.namespace, &a.namespace) && wild(&p.resource, &a.resource) && wild(&p.api_group, &a.api_group)
    } else {
        let path = &p.non_resource_path;
        wild(path, &a.path) || path.strip_suffix('*').is_some_and(|prefix| !prefix.is_empty() && a.path.starts_with(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::UserInfo;

    const POLICY: &str = r#"
{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"user": "alice", "namespace": "*", "resource": "*", "apiGroup": "*", "nonResourcePath": "*"}}
{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"user": "bob", "namespace": "projectCaribou", "resource": "pods", "apiGroup": "*", "readonly": true}}
{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Policy", "spec": {"group": "system:authenticated", "readonly": true, "nonResourcePath": "/api*"}}
{"user": "legacy"}
"#;

    fn check(user: &str, groups: &[&str], verb: &str, resource: &str, ns: &str, path: &str) -> bool {
        let policy = Policy::parse(POLICY).unwrap();
        let a = Attributes {
            user: UserInfo::named(user, groups),
            verb: verb.into(),
            resource_request: path.is_empty(),
            resource: resource.into(),
            namespace: ns.into(),
            path: path.into(),
            ..Default::default()
        };
        policy.authorize(&a) == Decision::Allow
    }

    #[test]
    fn upstream_examples() {
        assert!(check("alice", &[], "delete", "nodes", "", ""));
        assert!(check("alice", &[], "get", "", "", "/metrics"));
        assert!(check("bob", &[], "list", "pods", "projectCaribou", ""));
        assert!(!check("bob", &[], "create", "pods", "projectCaribou", ""));
        assert!(!check("bob", &[], "list", "pods", "default", ""));
        assert!(!check("bob", &[], "list", "services", "projectCaribou", ""));
        assert!(check("carol", &["system:authenticated"], "get", "", "", "/apis/apps"));
        assert!(!check("carol", &["system:authenticated"], "get", "", "", "/metrics"));
        assert!(check("legacy", &[], "delete", "secrets", "kube-system", ""));
    }

    #[test]
    fn malformed_policies_are_refused() {
        assert!(Policy::parse("{not json").is_err());
        assert!(Policy::parse(r#"{"apiVersion": "abac.authorization.kubernetes.io/v1beta1", "kind": "Nope", "spec": {}}"#).is_err());
        assert!(Policy::parse(r#"{"apiVersion": "v9"}"#).is_err());
    }
}

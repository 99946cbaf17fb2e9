//! The audit log (`--audit-policy-file`, `--audit-log-path`): for each
//! request the policy's first matching rule picks a level (None, Metadata,
//! Request, RequestResponse), and upstream's `audit.k8s.io/v1` Events are
//! written as JSON lines at the RequestReceived and ResponseComplete stages
//! (ResponseStarted for watches), unless the rule omits them.

use std::io::Write;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use skiff_auth::authz::Attributes;

#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Deserialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct GroupResources {
    group: String,
    resources: Vec<String>,
    resource_names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    level: Level,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Policy {
    kind: String,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    omit_stages: Vec<String>,
}

impl Rule {
    /// Upstream's rule matching: every list given must match.
    fn matches(&self, a: &Attributes) -> bool {
        let listed = |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        if !listed(&self.users, &a.user.name) || !listed(&self.verbs, &a.verb) {
            return false;
        }
        if !self.user_groups.is_empty() && !a.user.groups.iter().any(|g| self.user_groups.contains(g)) {
            return false;
        }
        if !a.resource_request {
            // Rules about resources or namespaces do not match paths.
            if !self.resources.is_empty() || !self.namespaces.is_empty() {
                return false;
            }
            return self.non_resource_urls.is_empty()
                || self.non_resource_urls.iter().any(|u| u == &a.path || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p)));
        }
        if !self.non_resource_urls.is_empty() || !listed(&self.namespaces, &a.namespace) {
            return false;
        }
        let combined = a.combined_resource();
        self.resources.is_empty()
            || self.resources.iter().any(|gr| {
                gr.group == a.api_group
                    && (gr.resources.is_empty()
                        || gr.resources.iter().any(|r| {
                            *r == combined
                                || *r == a.resource && a.subresource.is_empty()
                                || r.strip_suffix("/*").is_some_and(|base| base == a.resource)
                                || r.strip_prefix("*/").is_some_and(|sub| sub == a.subresource)
                                || r == "*"
                        }))
                    && listed(&gr.resource_names, &a.name)
            })
    }
}

/// Where events go, and which.
pub struct Audit {
    policy: Policy,
    sink: Mutex<Box<dyn Write + Send>>,
}

/// What one request's events share, decided when it arrives.
pub struct Record {
    pub level: Level,
    omit: Vec<String>,
    event: Value,
}

impl Audit {
    pub fn open(policy_file: &std::path::Path, log_path: &std::path::Path) -> Result<Audit> {
        let text = std::fs::read_to_string(policy_file).with_context(|| format!("reading {}", policy_file.display()))?;
        let policy: Policy = serde_yaml::from_str(&text).with_context(|| format!("{}", policy_file.display()))?;
        if policy.kind != "Policy" {
            bail!("{}: kind must be Policy", policy_file.display());
        }
        let sink: Box<dyn Write + Send> = if log_path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(log_path).with_context(|| format!("opening {}", log_path.display()))?;
            Box::new(file)
        };
        Ok(Audit { policy, sink: Mutex::new(sink) })
    }

    /// The record for a request, or None when the policy says None.
    pub fn begin(&self, a: &Attributes, impersonator: Option<&skiff_auth::UserInfo>, uri: &str, source: Option<std::net::IpAddr>, user_agent: &str) -> Option<Record> {
        let rule = self.policy.rules.iter().find(|r| r.matches(a))?;
        if rule.level == Level::None {
            return None;
        }
        let mut event = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": format!("{:?}", rule.level),
            "auditID": uuid::Uuid::new_v4().to_string(),
            "requestURI": uri,
            "verb": a.verb,
            "user": crate::reviews::user_info(impersonator.unwrap_or(&a.user)),
            "sourceIPs": source.map(|ip| vec![ip.to_string()]).unwrap_or_default(),
            "userAgent": user_agent,
            "requestReceivedTimestamp": micro_now(),
        });
        if impersonator.is_some() {
            event["impersonatedUser"] = crate::reviews::user_info(&a.user);
        }
        if a.resource_request {
            let mut object = json!({"resource": a.resource, "namespace": a.namespace, "name": a.name, "apiGroup": a.api_group, "apiVersion": a.api_version, "subresource": a.subresource});
            for field in ["namespace", "name", "subresource"] {
                if object[field] == "" {
                    object.as_object_mut().expect("an object").remove(field);
                }
            }
            event["objectRef"] = object;
        }
        let omit = rule.omit_stages.iter().chain(&self.policy.omit_stages).cloned().collect();
        let record = Record { level: rule.level, omit, event };
        self.write(&record, "RequestReceived", |_| {});
        Some(record)
    }

    /// The closing event, with the response code, admission's annotations
    /// and, by level, the bodies.
    pub fn complete(&self, record: &Record, stage: &str, code: u16, request: Option<&Value>, response: Option<&Value>, annotations: &[(String, String)]) {
        self.write(record, stage, |event| {
            event["responseStatus"] = json!({"metadata": {}, "code": code});
            if !annotations.is_empty() {
                event["annotations"] = annotations.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>().into();
            }
            // A create names its object in the body, as upstream fills it in.
            let named = request.or(response).and_then(|o| o.pointer("/metadata/name")).filter(|n| n.is_string());
            if let (Some(object), Some(name)) = (event.get_mut("objectRef").and_then(Value::as_object_mut), named) {
                object.entry("name").or_insert(name.clone());
            }
            if record.level >= Level::Request {
                if let Some(body) = request {
                    event["requestObject"] = body.clone();
                }
            }
            if record.level >= Level::RequestResponse {
                if let Some(body) = response {
                    event["responseObject"] = body.clone();
                }
            }
        });
    }

    fn write(&self, record: &Record, stage: &str, fill: impl FnOnce(&mut Value)) {
        if record.omit.iter().any(|s| s == stage) {
            return;
        }
        let mut event = record.event.clone();
        event["stage"] = json!(stage);
        event["stageTimestamp"] = json!(micro_now());
        fill(&mut event);
        let mut line = serde_json::to_vec(&event).expect("JSON serializes");
        line.push(b'\n');
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = sink.write_all(&line).and_then(|_| sink.flush()) {
            tracing::warn!("writing the audit log: {e}");
        }
    }
}

fn micro_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(user: &str, verb: &str, group: &str, resource: &str, sub: &str, ns: &str) -> Attributes {
        Attributes {
            user: skiff_auth::UserInfo::named(user, &["system:authenticated"]),
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            ..Default::default()
        }
    }

    #[test]
    fn first_matching_rule_decides() {
        let policy: Policy = serde_yaml::from_str(
            r#"
kind: Policy
rules:
- level: None
  users: ["system:kube-scheduler"]
- level: RequestResponse
  resources: [{group: "", resources: ["secrets"]}]
- level: Request
  verbs: [create, update, patch]
  resources: [{group: apps, resources: ["deployments", "*/scale"]}]
- level: None
  nonResourceURLs: ["/healthz*"]
- level: Metadata
"#,
        )
        .unwrap();
        let level = |a: &Attributes| policy.rules.iter().find(|r| r.matches(a)).map(|r| r.level);
        assert_eq!(level(&attrs("system:kube-scheduler", "get", "", "secrets", "", "x")), Some(Level::None));
        assert_eq!(level(&attrs("alice", "get", "", "secrets", "", "x")), Some(Level::RequestResponse));
        assert_eq!(level(&attrs("alice", "patch", "apps", "deployments", "scale", "x")), Some(Level::Request));
        assert_eq!(level(&attrs("alice", "get", "apps", "deployments", "", "x")), Some(Level::Metadata));
        let path = Attributes { user: skiff_auth::UserInfo::named("alice", &[]), verb: "get".into(), path: "/healthz/etcd".into(), ..Default::default() };
        assert_eq!(level(&path), Some(Level::None));
    }
}

//! Dynamic admission: MutatingAdmissionWebhook and
//! ValidatingAdmissionWebhook. Each webhook of each
//! Mutating/ValidatingWebhookConfiguration whose rules, namespace selector
//! and object selector match a request is sent an `admission.k8s.io/v1`
//! AdmissionReview; it may refuse, and a mutating one may answer a JSON
//! patch. A webhook that cannot be reached (or times out) fails the
//! request unless its failurePolicy is Ignore.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde_json::{json, Value};

use crate::{Cluster, Operation, Plugin, Rejection, Request};

pub struct Webhooks {
    pub mutating: bool,
}

/// An operation as AdmissionReviews and rules spell it.
pub(crate) fn operation(op: Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

/// Upstream's rule matching (matchPolicy Exact).
pub(crate) fn rule_matches(rule: &Value, req: &Request<'_>) -> bool {
    let has = |field: &str, value: &str| strings(&rule[field]).iter().any(|v| *v == "*" || *v == value);
    let resource_matches = strings(&rule["resources"]).iter().any(|r| {
        let (base, sub) = r.split_once('/').unwrap_or((r, ""));
        let base_ok = base == "*" || base == req.resource;
        let sub_ok = if req.subresource.is_empty() { sub.is_empty() } else { sub == "*" || sub == req.subresource };
        base_ok && sub_ok
    });
    let scope_ok = match rule["scope"].as_str().unwrap_or("*") {
        "Cluster" => req.namespace.is_empty(),
        "Namespaced" => !req.namespace.is_empty(),
        _ => true,
    };
    has("operations", operation(req.operation)) && has("apiGroups", req.group) && has("apiVersions", req.version) && resource_matches && scope_ok
}

/// A LabelSelector against labels; an absent selector selects everything.
pub(crate) fn selects(selector: &Value, labels: &Value) -> bool {
    if selector.is_null() {
        return true;
    }
    let label = |k: &str| labels[k].as_str();
    let labels_match = selector["matchLabels"].as_object().into_iter().flatten().all(|(k, v)| label(k) == v.as_str());
    labels_match
        && selector["matchExpressions"].as_array().into_iter().flatten().all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let values = strings(&e["values"]);
            match e["operator"].as_str().unwrap_or_default() {
                "In" => label(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                _ => false,
            }
        })
}

async fn webhook_applies(hook: &Value, req: &Request<'_>, obj: &Value, cluster: &dyn Cluster) -> Result<bool, Rejection> {
    if !hook["rules"].as_array().into_iter().flatten().any(|r| rule_matches(r, req)) {
        return Ok(false);
    }
    let object = if obj.is_null() { req.old.unwrap_or(&Value::Null) } else { obj };
    if !selects(&hook["objectSelector"], &object["metadata"]["labels"]) {
        return Ok(false);
    }
    let namespace_labels = if req.group.is_empty() && req.resource == "namespaces" {
        object["metadata"]["labels"].clone()
    } else if req.namespace.is_empty() {
        return Ok(true);
    } else {
        let ns = cluster.get("", "namespaces", None, req.namespace).await.map_err(Rejection::internal)?;
        ns.map(|n| n["metadata"]["labels"].clone()).unwrap_or(Value::Null)
    };
    Ok(selects(&hook["namespaceSelector"], &namespace_labels))
}

fn review(req: &Request<'_>, obj: &Value, uid: &str) -> Value {
    let user = req.user;
    let (object, old) = match req.operation {
        Operation::Delete => (Value::Null, req.old.cloned().unwrap_or(Value::Null)),
        _ => (obj.clone(), req.old.cloned().unwrap_or(Value::Null)),
    };
    let kind = json!({"group": req.group, "version": req.version, "kind": req.kind});
    let resource = json!({"group": req.group, "version": req.version, "resource": req.resource});
    let mut request = json!({
        "uid": uid, "kind": kind, "resource": resource, "requestKind": kind, "requestResource": resource,
        "name": req.name, "operation": operation(req.operation),
        "userInfo": {"username": user.name, "uid": user.uid, "groups": user.groups, "extra": user.extra},
        "object": object, "oldObject": old, "dryRun": req.dry_run,
    });
    if !req.namespace.is_empty() {
        request["namespace"] = json!(req.namespace);
    }
    if !req.subresource.is_empty() {
        request["subResource"] = json!(req.subresource);
        request["requestSubResource"] = json!(req.subresource);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// Upstream's `ToStatusErr`: a refusal in the webhook's words.
fn denied(name: &str, status: &Value) -> Rejection {
    let by = format!("admission webhook {name:?} denied the request");
    let message = match (status["message"].as_str().filter(|m| !m.is_empty()), status["reason"].as_str().filter(|r| !r.is_empty())) {
        (Some(m), _) => format!("{by}: {m}"),
        (None, Some(r)) => format!("{by}: {r}"),
        _ => format!("{by} without explanation"),
    };
    let code = status["code"].as_u64().filter(|c| *c >= 400).unwrap_or(400) as u16;
    let reason = match code {
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        _ => "BadRequest",
    };
    Rejection { code, reason, message }
}

/// Calls one webhook; Ok(Some(patch)) for a mutating one's JSON patch.
async fn call(hook: &Value, req: &Request<'_>, obj: &Value, cluster: &dyn Cluster) -> Result<Option<Value>, Rejection> {
    let name = hook["name"].as_str().unwrap_or_default();
    let uid = format!("{:032x}", rand::random::<u128>());
    let body = serde_json::to_vec(&review(req, obj, &uid)).expect("JSON serializes");
    let timeout = Duration::from_secs(hook["timeoutSeconds"].as_u64().unwrap_or(10).clamp(1, 30));
    let failed = |why: String| Rejection::internal(format!("failed calling webhook {name:?}: {why}"));
    let answer = match cluster.call_webhook(&hook["clientConfig"], body, timeout).await {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes).map_err(|e| failed(format!("received invalid webhook response: {e}"))),
        Err(e) => Err(failed(format!("failed to call webhook: {e}"))),
    };
    let response = match answer {
        Ok(review) if review["response"]["uid"] == uid.as_str() => review["response"].clone(),
        Ok(_) => Err(failed("expected response.uid to match the request.uid".into()))?,
        Err(e) if hook["failurePolicy"] == "Ignore" => {
            tracing::warn!("{}: ignored (failurePolicy Ignore)", e.message);
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if response["allowed"] != true {
        return Err(denied(name, &response["status"]));
    }
    let Some(patch) = response["patch"].as_str() else { return Ok(None) };
    let bytes = base64::engine::general_purpose::STANDARD.decode(patch).map_err(|e| failed(format!("the patch is not base64: {e}")))?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| failed(format!("the patch is not JSON: {e}")))
}

impl Webhooks {
    async fn hooks(&self, cluster: &dyn Cluster) -> Result<Vec<Value>, Rejection> {
        let plural = if self.mutating { "mutatingwebhookconfigurations" } else { "validatingwebhookconfigurations" };
        let mut configs = cluster.list("admissionregistration.k8s.io", plural, None).await.map_err(Rejection::internal)?;
        configs.sort_by(|a, b| a["metadata"]["name"].as_str().cmp(&b["metadata"]["name"].as_str()));
        Ok(configs.iter().flat_map(|c| c["webhooks"].as_array().cloned().unwrap_or_default()).collect())
    }

    /// Calls the webhooks that apply, in order; each sees the object as the
    /// mutating ones before it patched it. Returns the patched object, if
    /// any webhook patched it (validating webhooks never do).
    async fn run(&self, req: &Request<'_>, obj: &Value, cluster: &dyn Cluster) -> Result<Option<Value>, Rejection> {
        // Webhook configurations are not themselves subject to webhooks.
        if req.group == "admissionregistration.k8s.io" {
            return Ok(None);
        }
        let mut patched: Option<Value> = None;
        for hook in self.hooks(cluster).await? {
            let current = patched.as_ref().unwrap_or(obj);
            if !webhook_applies(&hook, req, current, cluster).await? {
                continue;
            }
            if req.dry_run && !matches!(hook["sideEffects"].as_str(), Some("None" | "NoneOnDryRun")) {
                let name = hook["name"].as_str().unwrap_or_default();
                return Err(Rejection { code: 400, reason: "BadRequest", message: format!("admission webhook {name:?} does not support dry run") });
            }
            if let Some(patch) = call(&hook, req, current, cluster).await? {
                if self.mutating {
                    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(|e| Rejection::internal(format!("the webhook's patch: {e}")))?;
                    let mut next = current.clone();
                    json_patch::patch(&mut next, &patch).map_err(|e| Rejection::internal(format!("applying the webhook's patch: {e}")))?;
                    patched = Some(next);
                }
            }
        }
        Ok(patched)
    }
}

#[async_trait]
impl Plugin for Webhooks {
    fn name(&self) -> &'static str {
        if self.mutating {
            "MutatingAdmissionWebhook"
        } else {
            "ValidatingAdmissionWebhook"
        }
    }

    async fn mutate(&self, req: &Request<'_>, obj: &mut Value, cluster: &dyn Cluster) -> Result<(), Rejection> {
        if self.mutating {
            if let Some(patched) = self.run(req, obj, cluster).await? {
                *obj = patched;
            }
        }
        Ok(())
    }

    async fn validate(&self, req: &Request<'_>, obj: &Value, cluster: &dyn Cluster) -> Result<(), Rejection> {
        if !self.mutating {
            self.run(req, obj, cluster).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_selectors_match_as_upstream() {
        let user = skiff_auth::UserInfo::default();
        let req = |resource: &'static str, sub: &'static str| Request {
            operation: Operation::Create, group: "", version: "v1", kind: "Pod", resource, subresource: sub,
            namespace: "ns", name: "p", user: &user, dry_run: false, old: None,
        };
        let rule = json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]});
        assert!(rule_matches(&rule, &req("pods", "")));
        assert!(!rule_matches(&rule, &req("pods", "status")));
        assert!(rule_matches(&json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}), &req("pods", "status")));
        assert!(!rule_matches(&json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": "Cluster"}), &req("pods", "")));
        let selector = json!({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}], "matchLabels": {"env": "prod"}});
        assert!(selects(&selector, &json!({"team": "a", "env": "prod"})));
        assert!(!selects(&selector, &json!({"team": "b", "env": "prod"})));
        assert!(selects(&Value::Null, &Value::Null));
        let refused = denied("deny.example.com", &json!({"message": "no pods today", "code": 403}));
        assert_eq!((refused.code, refused.message.as_str()), (403, r#"admission webhook "deny.example.com" denied the request: no pods today"#));
        assert_eq!(denied("w", &Value::Null).message, r#"admission webhook "w" denied the request without explanation"#);
    }
}

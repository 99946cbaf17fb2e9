//! ValidatingAdmissionPolicy: CEL validations from
//! ValidatingAdmissionPolicies, applied where a
//! ValidatingAdmissionPolicyBinding says, with its validationActions
//! (Deny, Warn, and Audit through the audit event's annotations).
//! Expressions see `object`, `oldObject`, `request`, `params`,
//! `namespaceObject` and `variables`, as upstream's.

use async_trait::async_trait;
use cel_interpreter::{Context, Program};
use serde_json::{json, Value};

use crate::webhook::{operation, rule_matches, selects};
use crate::{Cluster, Operation, Plugin, Rejection, Request};

pub struct ValidatingAdmissionPolicy;

const GROUP: &str = "admissionregistration.k8s.io";

/// Whether `constraints` (matchConstraints or a binding's matchResources)
/// take this request; an absent one takes everything.
async fn constraints_match(constraints: &Value, req: &Request<'_>, object: &Value, namespace: &Value) -> bool {
    if constraints.is_null() {
        return true;
    }
    let rules = constraints["resourceRules"].as_array().cloned().unwrap_or_default();
    if !rules.is_empty() && !rules.iter().any(|r| rule_matches(r, req)) {
        return false;
    }
    if constraints["excludeResourceRules"].as_array().into_iter().flatten().any(|r| rule_matches(r, req)) {
        return false;
    }
    selects(&constraints["objectSelector"], &object["metadata"]["labels"]) && (namespace.is_null() || selects(&constraints["namespaceSelector"], &namespace["metadata"]["labels"]))
}

enum Outcome {
    Passed,
    Failed(String),
    Error(String),
}

/// A JSON value as CEL sees it in Kubernetes: integers are `int` (signed),
/// as upstream's unstructured conversion makes them; only integers beyond
/// `i64::MAX` stay `uint`. (The interpreter's own serde conversion makes every
/// non-negative integer a `uint`, so `object.spec.replicas % 2` would mix
/// `uint` and `int` and fail.)
fn to_cel(value: &Value) -> cel_interpreter::Value {
    use cel_interpreter::objects::{Key, Map};
    use cel_interpreter::Value as Cel;
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cel::String(std::sync::Arc::new(s.clone())),
        Value::Array(items) => Cel::List(std::sync::Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(fields) => Cel::Map(Map { map: std::sync::Arc::new(fields.iter().map(|(k, v)| (Key::from(k.clone()), to_cel(v))).collect()) }),
    }
}

fn evaluate(expression: &str, context: &Context) -> Result<cel_interpreter::Value, String> {
    let program = Program::compile(expression).map_err(|e| format!("compilation failed: {e:?}"))?;
    program.execute(context).map_err(|e| e.to_string())
}

fn check(validation: &Value, context: &Context) -> Outcome {
    let expression = validation["expression"].as_str().unwrap_or_default();
    match evaluate(expression, context) {
        Ok(cel_interpreter::Value::Bool(true)) => Outcome::Passed,
        Ok(cel_interpreter::Value::Bool(false)) => {
            let message = validation["messageExpression"]
                .as_str()
                .and_then(|m| match evaluate(m, context) {
                    Ok(cel_interpreter::Value::String(s)) => Some(s.to_string()),
                    _ => None,
                })
                .or_else(|| validation["message"].as_str().map(String::from))
                .unwrap_or_else(|| format!("failed expression: {expression}"));
            Outcome::Failed(message)
        }
        Ok(other) => Outcome::Error(format!("expression '{expression}' resulted in a non-boolean value: {other:?}")),
        Err(e) => Outcome::Error(format!("expression '{expression}' resulted in error: {e}")),
    }
}

fn code_of(reason: &str) -> (u16, &'static str) {
    match reason {
        "Unauthorized" => (401, "Unauthorized"),
        "Forbidden" => (403, "Forbidden"),
        "RequestEntityTooLarge" => (413, "RequestEntityTooLarge"),
        _ => (422, "Invalid"),
    }
}

#[async_trait]
impl Plugin for ValidatingAdmissionPolicy {
    fn name(&self) -> &'static str {
        "ValidatingAdmissionPolicy"
    }

    /// Ok with the warnings of Warn bindings; Err for a Deny binding's
    /// refusal. Audit bindings annotate the audit event.
    async fn check(&self, req: &Request<'_>, obj: &Value, cluster: &dyn Cluster) -> Result<Vec<String>, Rejection> {
        if req.group == GROUP || req.operation == Operation::Connect {
            return Ok(Vec::new());
        }
        let bindings = cluster.list(GROUP, "validatingadmissionpolicybindings", None).await.map_err(Rejection::internal)?;
        if bindings.is_empty() {
            return Ok(Vec::new());
        }
        let object = if req.operation == Operation::Delete { Value::Null } else { obj.clone() };
        let old = req.old.cloned().unwrap_or(Value::Null);
        let subject = if object.is_null() { &old } else { &object };
        let namespace = match req.namespace {
            "" => Value::Null,
            ns => cluster.get("", "namespaces", None, ns).await.map_err(Rejection::internal)?.map_or(Value::Null, |n| Value::clone(&n)),
        };
        let request = json!({
            "kind": {"group": req.group, "version": req.version, "kind": req.kind},
            "resource": {"group": req.group, "version": req.version, "resource": req.resource},
            "subResource": req.subresource, "name": req.name, "namespace": req.namespace, "operation": operation(req.operation), "dryRun": req.dry_run,
            "userInfo": {"username": req.user.name, "uid": req.user.uid, "groups": req.user.groups},
        });
        let mut warnings = Vec::new();
        for binding in &bindings {
            let (binding_name, spec) = (binding["metadata"]["name"].as_str().unwrap_or_default(), &binding["spec"]);
            let Some(policy) = cluster.get(GROUP, "validatingadmissionpolicies", None, spec["policyName"].as_str().unwrap_or_default()).await.map_err(Rejection::internal)? else { continue };
            let policy_name = policy["metadata"]["name"].as_str().unwrap_or_default();
            if !constraints_match(&policy["spec"]["matchConstraints"], req, subject, &namespace).await || !constraints_match(&spec["matchResources"], req, subject, &namespace).await {
                continue;
            }
            let params = match (spec["paramRef"]["name"].as_str(), policy["spec"]["paramKind"].is_null()) {
                (Some(name), false) => {
                    let kind = &policy["spec"]["paramKind"];
                    let (group, plural) = params_resource(kind["apiVersion"].as_str().unwrap_or_default(), kind["kind"].as_str().unwrap_or_default());
                    let ns = spec["paramRef"]["namespace"].as_str().or((!req.namespace.is_empty()).then_some(req.namespace));
                    cluster.get(&group, &plural, ns, name).await.map_err(Rejection::internal)?.map_or(Value::Null, |p| Value::clone(&p))
                }
                _ => Value::Null,
            };
            let mut context = Context::default();
            for (name, value) in [("object", &object), ("oldObject", &old), ("request", &request), ("params", &params), ("namespaceObject", &namespace)] {
                context.add_variable_from_value(name, to_cel(value));
            }
            let mut variables = serde_json::Map::new();
            for variable in policy["spec"]["variables"].as_array().into_iter().flatten() {
                context.add_variable_from_value("variables", to_cel(&Value::Object(variables.clone())));
                let value = evaluate(variable["expression"].as_str().unwrap_or_default(), &context).ok().and_then(|v| v.json().ok()).unwrap_or(Value::Null);
                variables.insert(variable["name"].as_str().unwrap_or_default().to_string(), value);
            }
            context.add_variable_from_value("variables", to_cel(&Value::Object(variables)));
            let ignore_errors = policy["spec"]["failurePolicy"] == "Ignore";
            let actions: Vec<&str> = spec["validationActions"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            for validation in policy["spec"]["validations"].as_array().into_iter().flatten() {
                let (message, reason) = match check(validation, &context) {
                    Outcome::Passed => continue,
                    Outcome::Error(_) if ignore_errors => continue,
                    Outcome::Error(e) => (e, "Invalid"),
                    Outcome::Failed(m) => (m, validation["reason"].as_str().unwrap_or("Invalid")),
                };
                if actions.contains(&"Audit") {
                    let failure = json!([{"message": message, "policy": policy_name, "binding": binding_name, "validationActions": actions}]);
                    crate::annotate("validation.policy.admission.k8s.io/validation_failure", failure.to_string());
                }
                if actions.contains(&"Warn") {
                    warnings.push(format!("Validation failed for ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}': {message}"));
                }
                if actions.contains(&"Deny") {
                    let (code, reason) = code_of(reason);
                    let message = format!("ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}' denied request: {message}");
                    return Err(Rejection { code, reason, message });
                }
            }
        }
        Ok(warnings)
    }
}

/// The group and plural of a paramKind (a lower-cased, pluralized kind, as
/// for the built-in kinds params usually are: ConfigMap → configmaps).
fn params_resource(api_version: &str, kind: &str) -> (String, String) {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g).to_string();
    let lower = kind.to_ascii_lowercase();
    let plural = if lower.ends_with('s') { format!("{lower}es") } else if lower.ends_with('y') { format!("{}ies", &lower[..lower.len() - 1]) } else { format!("{lower}s") };
    (group, plural)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cel_validations_pass_fail_and_err_without_panicking() {
        let mut context = Context::default();
        context.add_variable_from_value("object", to_cel(&json!({"spec": {"replicas": 7}, "metadata": {"name": "web"}})));
        assert!(matches!(check(&json!({"expression": "object.spec.replicas <= 10"}), &context), Outcome::Passed));
        let Outcome::Failed(m) = check(&json!({"expression": "object.spec.replicas <= 5"}), &context) else { panic!() };
        assert_eq!(m, "failed expression: object.spec.replicas <= 5");
        let Outcome::Failed(m) = check(&json!({"expression": "object.spec.replicas <= 5", "messageExpression": "'too many: ' + string(object.spec.replicas)"}), &context) else { panic!() };
        assert_eq!(m, "too many: 7");
        for broken in ["object.spec.replicas <= ", "object.spec.nope > 1", "1 + 'a'"] {
            assert!(matches!(check(&json!({"expression": broken}), &context), Outcome::Error(_)), "{broken}");
        }
        assert_eq!(params_resource("v1", "ConfigMap"), ("".to_string(), "configmaps".to_string()));
    }

    #[test]
    fn json_integers_are_cel_ints() {
        let mut context = Context::default();
        context.add_variable_from_value("object", to_cel(&json!({"spec": {"replicas": 3, "offset": -4, "huge": u64::MAX, "ratio": 0.5}})));
        let eval = |e: &str| evaluate(e, &context).unwrap();
        assert_eq!(eval("object.spec.replicas % 2"), cel_interpreter::Value::Int(1));
        assert_eq!(eval("object.spec.replicas % 2 == 1"), cel_interpreter::Value::Bool(true));
        assert_eq!(eval("object.spec.replicas - 5"), cel_interpreter::Value::Int(-2));
        assert_eq!(eval("object.spec.offset * object.spec.replicas"), cel_interpreter::Value::Int(-12));
        assert_eq!(eval("object.spec.huge"), cel_interpreter::Value::UInt(u64::MAX));
        assert_eq!(eval("object.spec.ratio"), cel_interpreter::Value::Float(0.5));
    }
}

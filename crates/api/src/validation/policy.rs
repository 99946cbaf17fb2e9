//! policy/v1: PodDisruptionBudget, as upstream's
//! `pkg/apis/policy/validation` (Kubernetes 1.32) checks it.

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::Value;

use super::apps::{int_or_percent, not_above_100_percent};
use super::go::go_value;
use super::{non_negative, selector_allowing, selector_is_invalid, Bad, Errors, Op, Path};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    if kind != "PodDisruptionBudget" {
        return None;
    }
    Some(match op {
        // The stored selector's leniency applies to the whole update.
        Op::Update { .. } => op.run(|_: &PodDisruptionBudget| vec![], pdb_update, super::nothing),
        Op::Status { new, old } => {
            let (new, old) = (with_zero_condition_times(new), with_zero_condition_times(old));
            Op::Status { new: &new, old: &old }.run(pdb, super::nothing, pdb_status)
        }
        Op::Create(_) => op.run(pdb, super::nothing, super::nothing),
    })
}

/// Go's zero time, which a missing or null `metav1.Time` decodes to.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// k8s-openapi refuses a condition without `lastTransitionTime`; upstream
/// decodes it as the zero time and reports it. Filled in so the condition
/// decodes and the check below sees the zero time.
fn with_zero_condition_times(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(conditions) = obj.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
        for c in conditions.iter_mut().filter(|c| c.is_object()) {
            if c.get("lastTransitionTime").is_none_or(Value::is_null) {
                c["lastTransitionTime"] = Value::String(ZERO_TIME.into());
            }
        }
    }
    obj
}

fn pdb(pdb: &PodDisruptionBudget) -> Errors {
    pdb_spec(pdb, false)
}

/// Upstream 1.32 validates an updated spec as a new one (spec updates are
/// allowed), keeping invalid selector values the stored object has.
fn pdb_update(new: &PodDisruptionBudget, old: &PodDisruptionBudget) -> Errors {
    pdb_spec(new, selector_is_invalid(old.spec.as_ref().and_then(|s| s.selector.as_ref())))
}

/// Upstream's `ValidatePodDisruptionBudgetSpec`.
fn pdb_spec(pdb: &PodDisruptionBudget, allow_invalid_selector_values: bool) -> Errors {
    let spec = pdb.spec.clone().unwrap_or_default();
    let path = Path::new("spec");
    let mut errs = Vec::new();
    if spec.min_available.is_some() && spec.max_unavailable.is_some() {
        errs.push(path.invalid(Bad::raw(go_value(&spec)), "minAvailable and maxUnavailable cannot be both set"));
    }
    for (field, value) in [("minAvailable", &spec.min_available), ("maxUnavailable", &spec.max_unavailable)] {
        if let Some(v) = value {
            errs.extend(int_or_percent(v, &path.child(field)));
            errs.extend(not_above_100_percent(v, &path.child(field)));
        }
    }
    if let Some(selector) = &spec.selector {
        errs.extend(selector_allowing(selector, allow_invalid_selector_values, &path.child("selector")));
    }
    if let Some(policy) = &spec.unhealthy_pod_eviction_policy {
        if policy != "IfHealthyBudget" && policy != "AlwaysAllow" {
            errs.push(path.child("unhealthyPodEvictionPolicy").not_supported(policy, &["AlwaysAllow", "IfHealthyBudget"]));
        }
    }
    errs
}

/// Upstream's `ValidatePodDisruptionBudgetStatusUpdate` (for policy/v1).
fn pdb_status(new: &PodDisruptionBudget, _old: &PodDisruptionBudget) -> Errors {
    let status = new.status.clone().unwrap_or_default();
    let path = Path::new("status");
    let mut errs = super::conditions(status.conditions.as_deref().unwrap_or_default(), &path.child("conditions"));
    errs.extend(non_negative(i64::from(status.disruptions_allowed), &path.child("disruptionsAllowed")));
    errs.extend(non_negative(i64::from(status.current_healthy), &path.child("currentHealthy")));
    errs.extend(non_negative(i64::from(status.desired_healthy), &path.child("desiredHealthy")));
    errs.extend(non_negative(i64::from(status.expected_pods), &path.child("expectedPods")));
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{messages, table, update_table, with};
    use super::super::Op;

    const G: &str = "policy";

    /// What `kubectl create pdb my-pdb --selector=app=rails --min-available=1` sends.
    fn pdb() -> Value {
        json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "my-pdb", "namespace": "default"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "rails"}}}
        })
    }

    fn spec(change: Value) -> Value {
        with(&pdb(), json!({"spec": change}))
    }

    fn expression(expr: Value) -> Value {
        spec(json!({"selector": {"matchExpressions": [expr]}}))
    }

    #[test]
    fn pod_disruption_budget_valid() {
        table(G, "PodDisruptionBudget", &[
            ("kubectl create pdb", pdb(), ""),
            ("max unavailable percent", spec(json!({"minAvailable": null, "maxUnavailable": "50%"})), ""),
            ("min available 100%", spec(json!({"minAvailable": "100%"})), ""),
            ("min available 0%", spec(json!({"minAvailable": "0%"})), ""),
            ("min available 0", spec(json!({"minAvailable": 0})), ""),
            ("min available above 100 as a number", spec(json!({"minAvailable": 150})), ""),
            ("neither set", spec(json!({"minAvailable": null})), ""),
            ("no selector", spec(json!({"selector": null})), ""),
            ("empty selector", spec(json!({"selector": {}})), ""),
            ("expression selector", expression(json!({"key": "tier", "operator": "NotIn", "values": ["cache"]})), ""),
            ("always allow unhealthy pods", spec(json!({"unhealthyPodEvictionPolicy": "AlwaysAllow"})), ""),
            ("if healthy budget", spec(json!({"unhealthyPodEvictionPolicy": "IfHealthyBudget"})), ""),
        ]);
    }

    #[test]
    fn pod_disruption_budget_invalid() {
        let percent = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";
        table(G, "PodDisruptionBudget", &[
            ("negative min available", spec(json!({"minAvailable": -1})), "spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"),
            ("min available above 100%", spec(json!({"minAvailable": "150%"})), "spec.minAvailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%"),
            ("min available 101%", spec(json!({"minAvailable": "101%"})), "spec.minAvailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"101%\"}: must not be greater than 100%"),
            ("huge percent", spec(json!({"minAvailable": "99999999999999999999%"})), "spec.minAvailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"99999999999999999999%\"}: must not be greater than 100%"),
            ("number as a string", spec(json!({"minAvailable": "50"})), &format!("spec.minAvailable: Invalid value: intstr.IntOrString{{Type:1, IntVal:0, StrVal:\"50\"}}: {percent}")),
            ("word percent", spec(json!({"minAvailable": "abc%"})), &format!("spec.minAvailable: Invalid value: intstr.IntOrString{{Type:1, IntVal:0, StrVal:\"abc%\"}}: {percent}")),
            ("negative percent", spec(json!({"minAvailable": "-10%"})), "spec.minAvailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"-10%\"}: a valid percent string"),
            ("negative max unavailable", spec(json!({"minAvailable": null, "maxUnavailable": -2})), "spec.maxUnavailable: Invalid value: -2: must be greater than or equal to 0"),
            ("max unavailable above 100%", spec(json!({"minAvailable": null, "maxUnavailable": "101%"})), "spec.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"101%\"}: must not be greater than 100%"),
            ("percent with a space", spec(json!({"minAvailable": null, "maxUnavailable": "5 %"})), "spec.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"5 %\"}: a valid percent string"),
            ("bad selector key", spec(json!({"selector": {"matchLabels": {"app/": "rails"}}})), "spec.selector.matchLabels: Invalid value: \"app/\": name part must be non-empty"),
            ("bad selector value", spec(json!({"selector": {"matchLabels": {"app": "ruby on rails"}}})), "spec.selector.matchLabels: Invalid value: \"ruby on rails\": a valid label must be"),
            ("bad operator", expression(json!({"key": "app", "operator": "Equals", "values": ["rails"]})), "spec.selector.matchExpressions[0].operator: Invalid value: \"Equals\": not a valid selector operator"),
            ("In without values", expression(json!({"key": "app", "operator": "In"})), "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"),
            ("Exists with values", expression(json!({"key": "app", "operator": "Exists", "values": ["rails"]})), "spec.selector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
            ("bad expression key", expression(json!({"key": "-app", "operator": "Exists"})), "spec.selector.matchExpressions[0].key: Invalid value: \"-app\""),
            ("bad expression value", expression(json!({"key": "app", "operator": "In", "values": ["rails!"]})), "spec.selector.matchExpressions[0].values[0]: Invalid value: \"rails!\": a valid label must be"),
            ("unknown eviction policy", spec(json!({"unhealthyPodEvictionPolicy": "Never"})), "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Never\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\""),
        ]);
        // Both set: upstream prints the whole spec (Go's %#v); Skiff its JSON.
        let both = spec(json!({"maxUnavailable": "10%"}));
        let got = messages(G, "PodDisruptionBudget", Op::Create(&both));
        assert!(got.len() == 1 && got[0].starts_with("spec: Invalid value: ") && got[0].ends_with(": minAvailable and maxUnavailable cannot be both set"), "{got:#?}");
        let all = spec(json!({"minAvailable": -1, "maxUnavailable": "200%"}));
        assert_eq!(messages(G, "PodDisruptionBudget", Op::Create(&all)).len(), 3);
    }

    #[test]
    fn pod_disruption_budget_update() {
        let valid = pdb();
        let stored_bad = expression(json!({"key": "app", "operator": "In", "values": ["bad value"]}));
        update_table(G, "PodDisruptionBudget", &valid, &[
            ("spec updates are allowed since 1.15", spec(json!({"minAvailable": null, "maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}})), ""),
            ("the new spec is validated", spec(json!({"minAvailable": "120%"})), "spec.minAvailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"120%\"}: must not be greater than 100%"),
            ("no new invalid selector values", stored_bad.clone(), "spec.selector.matchExpressions[0].values[0]: Invalid value: \"bad value\""),
        ]);
        update_table(G, "PodDisruptionBudget", &stored_bad, &[
            ("stored invalid selector values may stay", with(&stored_bad, json!({"spec": {"minAvailable": 2}})), ""),
            ("other selector rules still hold", expression(json!({"key": "app", "operator": "In"})), "spec.selector.matchExpressions[0].values: Required value"),
        ]);
    }

    fn condition(change: Value) -> Value {
        with(&json!({"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods", "message": "", "lastTransitionTime": "2024-05-01T10:00:00Z", "observedGeneration": 1}), change)
    }

    #[test]
    fn pod_disruption_budget_status() {
        let old = pdb();
        let status = |change: Value| {
            let base = json!({"status": {"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3,
                "disruptedPods": {"web-0": "2024-05-01T10:00:00Z"}, "conditions": [condition(json!({}))]}});
            with(&with(&old, base), json!({"status": change}))
        };
        let cases = [
            ("valid", status(json!({})), vec![]),
            ("no status", old.clone(), vec![]),
            ("negative disruptions allowed", status(json!({"disruptionsAllowed": -1})), vec!["status.disruptionsAllowed: Invalid value: -1: must be greater than or equal to 0"]),
            ("negative current healthy", status(json!({"currentHealthy": -1})), vec!["status.currentHealthy: Invalid value: -1: must be greater than or equal to 0"]),
            ("negative desired healthy", status(json!({"desiredHealthy": -1})), vec!["status.desiredHealthy: Invalid value: -1: must be greater than or equal to 0"]),
            ("negative expected pods", status(json!({"expectedPods": -5})), vec!["status.expectedPods: Invalid value: -5: must be greater than or equal to 0"]),
            ("duplicate condition", status(json!({"conditions": [condition(json!({})), condition(json!({"status": "False"}))]})), vec!["status.conditions[1].type: Duplicate value: \"DisruptionAllowed\""]),
            ("unknown condition status", status(json!({"conditions": [condition(json!({"status": "Maybe"}))]})), vec!["status.conditions[0].status: Unsupported value: \"Maybe\": supported values: \"False\", \"True\", \"Unknown\""]),
            ("no transition time", status(json!({"conditions": [condition(json!({"lastTransitionTime": null}))]})), vec!["status.conditions[0].lastTransitionTime: Required value: must be set"]),
            ("no reason", status(json!({"conditions": [condition(json!({"reason": null}))]})), vec!["status.conditions[0].reason: Required value: must be set"]),
            ("negative observed generation", status(json!({"conditions": [condition(json!({"observedGeneration": -1}))]})), vec!["status.conditions[0].observedGeneration: Invalid value: -1: must be greater than or equal to zero"]),
        ];
        for (name, new, expected) in cases {
            assert_eq!(messages(G, "PodDisruptionBudget", Op::Status { new: &new, old: &old }), expected, "{name}");
        }
        let bad_reason = status(json!({"conditions": [condition(json!({"reason": "Sufficient Pods"}))]}));
        let got = messages(G, "PodDisruptionBudget", Op::Status { new: &bad_reason, old: &old });
        assert!(got.len() == 1 && got[0].starts_with("status.conditions[0].reason: Invalid value: \"Sufficient Pods\": a condition reason must start with alphabetic character"), "{got:#?}");
        let bad_type = status(json!({"conditions": [condition(json!({"type": "Disruption Allowed"}))]}));
        let got = messages(G, "PodDisruptionBudget", Op::Status { new: &bad_type, old: &old });
        assert!(got.len() == 1 && got[0].starts_with("status.conditions[0].type: Invalid value: \"Disruption Allowed\": name part must consist of"), "{got:#?}");
        let long_message = status(json!({"conditions": [condition(json!({"message": "x".repeat(32 * 1024 + 1)}))]}));
        assert_eq!(messages(G, "PodDisruptionBudget", Op::Status { new: &long_message, old: &old }), ["status.conditions[0].message: Too long: may not be more than 32768 bytes"]);
        // A status write does not check the spec.
        let bad_spec = with(&status(json!({})), json!({"spec": {"minAvailable": -1}}));
        assert!(messages(G, "PodDisruptionBudget", Op::Status { new: &bad_spec, old: &old }).is_empty());
    }
}

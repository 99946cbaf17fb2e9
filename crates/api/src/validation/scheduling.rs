//! scheduling.k8s.io/v1: priority classes, as upstream's
//! `pkg/apis/scheduling/validation`.

use k8s_openapi::api::scheduling::v1::PriorityClass;

use super::pod_scheduling::preemption_policy;
use super::{immutable, Errors, Op, Path};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    Some(match kind {
        "PriorityClass" => op.run(priority_class, priority_class_update, super::nothing),
        _ => return None,
    })
}

/// The highest value a class not of the system's own may have.
const HIGHEST_USER_DEFINABLE: i32 = 1_000_000_000;
const SYSTEM_PREFIX: &str = "system-";

/// The system's own classes (name, value); neither is the global default.
const SYSTEM_CLASSES: [(&str, i32); 2] = [("system-node-critical", 2_000_001_000), ("system-cluster-critical", 2_000_000_000)];

/// Upstream's `IsKnownSystemPriorityClass`, with its reasons.
fn known_system_class(name: &str, value: i32, global_default: bool) -> Result<(), String> {
    match SYSTEM_CLASSES.iter().find(|(n, _)| *n == name) {
        Some((n, v)) if *v != value => Err(format!("value of {n} PriorityClass must be {v}")),
        Some((n, _)) if global_default => Err(format!("globalDefault of {n} PriorityClass must be false")),
        Some(_) => Ok(()),
        None => Err(format!("{name} is not a known system priority class")),
    }
}

fn priority_class(class: &PriorityClass) -> Errors {
    let mut errs = Vec::new();
    let name = class.metadata.name.as_deref().unwrap_or("");
    if name.starts_with(SYSTEM_PREFIX) {
        if let Err(why) = known_system_class(name, class.value, class.global_default.unwrap_or(false)) {
            errs.push(Path::new("metadata").child("name").forbidden(&format!("priority class names with '{SYSTEM_PREFIX}' prefix are reserved for system use only. error: {why}")));
        }
    } else if class.value > HIGHEST_USER_DEFINABLE {
        errs.push(Path::new("value").forbidden(&format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}")));
    }
    if let Some(policy) = &class.preemption_policy {
        errs.extend(preemption_policy(policy, &Path::new("preemptionPolicy")));
    }
    errs
}

/// A class's value and preemption policy are fixed: pods already carry
/// them. The policy is compared as upstream defaults it.
fn priority_class_update(new: &PriorityClass, old: &PriorityClass) -> Errors {
    let mut errs = Vec::new();
    if new.value != old.value {
        errs.push(Path::new("value").forbidden("may not be changed in an update."));
    }
    let policy = |c: &PriorityClass| c.preemption_policy.clone().unwrap_or_else(|| "PreemptLowerPriority".into());
    errs.extend(immutable(&policy(new), &policy(old), &Path::new("preemptionPolicy")));
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{table, update_table, with};

    const G: &str = "scheduling.k8s.io";

    /// What `kubectl create priorityclass high --value=1000` sends.
    fn high() -> Value {
        json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": "high"},
            "value": 1000, "globalDefault": false, "description": "", "preemptionPolicy": "PreemptLowerPriority",
        })
    }

    #[test]
    fn priority_class_valid() {
        table(G, "PriorityClass", &[
            ("kubectl create priorityclass", high(), ""),
            ("bare", json!({"metadata": {"name": "low"}, "value": -10}), ""),
            ("highest user value", with(&high(), json!({"value": 1_000_000_000})), ""),
            ("never preempts", with(&high(), json!({"preemptionPolicy": "Never", "globalDefault": true})), ""),
            ("system-node-critical", json!({"metadata": {"name": "system-node-critical"}, "value": 2_000_001_000, "description": "Used for system critical pods that must not be moved from their current node."}), ""),
            ("system-cluster-critical", json!({"metadata": {"name": "system-cluster-critical"}, "value": 2_000_000_000, "globalDefault": false}), ""),
        ]);
    }

    #[test]
    fn priority_class_invalid() {
        let pc = high();
        table(G, "PriorityClass", &[
            ("above user range", with(&pc, json!({"value": 1_000_000_001})), "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"),
            ("system value for a user class", with(&pc, json!({"value": 2_000_000_000})), "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"),
            ("reserved prefix", with(&pc, json!({"metadata": {"name": "system-high"}})), "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-high is not a known system priority class"),
            ("system class with another value", json!({"metadata": {"name": "system-node-critical"}, "value": 1000}), "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: value of system-node-critical PriorityClass must be 2000001000"),
            ("system class as default", json!({"metadata": {"name": "system-cluster-critical"}, "value": 2_000_000_000, "globalDefault": true}), "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: globalDefault of system-cluster-critical PriorityClass must be false"),
            ("preemption policy", with(&pc, json!({"preemptionPolicy": "Sometimes"})), "preemptionPolicy: Unsupported value: \"Sometimes\": supported values: \"PreemptLowerPriority\", \"Never\""),
            ("empty preemption policy", with(&pc, json!({"preemptionPolicy": ""})), "preemptionPolicy: Required value"),
            ("name", with(&pc, json!({"metadata": {"name": "High"}})), "metadata.name: Invalid value: \"High\""),
        ]);
    }

    #[test]
    fn priority_class_update() {
        let old = high();
        update_table(G, "PriorityClass", &old, &[
            ("description and default", with(&old, json!({"description": "for important things", "globalDefault": true})), ""),
            ("policy spelled out as its default", with(&old, json!({"preemptionPolicy": null})), ""),
            ("value", with(&old, json!({"value": 2000})), "value: Forbidden: may not be changed in an update."),
            ("preemption policy", with(&old, json!({"preemptionPolicy": "Never"})), "preemptionPolicy: Invalid value: \"Never\": field is immutable"),
        ]);
        let bare = json!({"metadata": {"name": "low"}, "value": 1});
        update_table(G, "PriorityClass", &bare, &[
            ("default spelled out", with(&bare, json!({"preemptionPolicy": "PreemptLowerPriority"})), ""),
            ("policy from its default", with(&bare, json!({"preemptionPolicy": "Never"})), "preemptionPolicy: Invalid value: \"Never\": field is immutable"),
        ]);
    }
}

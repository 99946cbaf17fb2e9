//! Resources served in more than one version, or in more than one group,
//! are stored in one form (upstream's storage version) and converted on the
//! way in and out:
//!
//! - HorizontalPodAutoscaler: autoscaling/v2 is stored, autoscaling/v1 is
//!   converted. As upstream, what v1 cannot express (metrics other than CPU
//!   utilization, behavior, conditions) travels in annotations so that a v1
//!   read-modify-write loses nothing.
//! - Event: core/v1 is stored, events.k8s.io/v1 is converted, so both APIs
//!   see the same events (`/registry/events/`), as upstream.

use serde_json::{json, Map, Value};

/// How a served version maps to the stored one.
#[derive(Debug)]
pub struct Conversion {
    /// The group objects are stored under (their key prefix).
    pub storage_group: &'static str,
    pub storage_version: &'static str,
    pub to_storage: fn(Value) -> Value,
    pub from_storage: fn(Value) -> Value,
}

pub static HPA_V1: Conversion = Conversion {
    storage_group: "autoscaling",
    storage_version: "v2",
    to_storage: hpa_v1_to_v2,
    from_storage: hpa_v2_to_v1,
};

pub static EVENTS_V1: Conversion = Conversion {
    storage_group: "",
    storage_version: "v1",
    to_storage: event_to_core,
    from_storage: event_from_core,
};

/// events.k8s.io/v1 field names and their core/v1 names.
const EVENT_FIELDS: [(&str, &str); 12] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("action", "action"),
    ("related", "related"),
];

fn rename_event_fields(mut obj: Value, to_core: bool, api_version: &str) -> Value {
    if let Some(fields) = obj.as_object_mut() {
        let moved: Vec<(&str, Value)> = EVENT_FIELDS
            .iter()
            .filter_map(|(events, core)| {
                let (from, to) = if to_core { (*events, *core) } else { (*core, *events) };
                fields.remove(from).map(|v| (to, v))
            })
            .collect();
        for (to, v) in moved {
            fields.insert(to.into(), v);
        }
    }
    obj["apiVersion"] = json!(api_version);
    obj
}

fn event_to_core(obj: Value) -> Value {
    rename_event_fields(obj, true, "v1")
}

fn event_from_core(obj: Value) -> Value {
    rename_event_fields(obj, false, "events.k8s.io/v1")
}

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource" && metric.pointer("/resource/name") == Some(&json!("cpu")) && metric.pointer("/resource/target/type") == Some(&json!("Utilization"))
}

fn annotations(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["annotations"].as_object_mut().expect("annotations are an object")
}

/// Moves `value` into annotation `key` as JSON, unless it is empty.
fn stash(obj: &mut Value, key: &str, value: Option<Value>) {
    match value {
        Some(v) if v.as_array().is_none_or(|a| !a.is_empty()) && !v.is_null() => {
            annotations(obj).insert(key.into(), Value::String(v.to_string()));
        }
        _ => {}
    }
}

/// Takes annotation `key` back out as JSON.
fn unstash(obj: &mut Value, key: &str) -> Option<Value> {
    let text = obj.pointer_mut("/metadata/annotations")?.as_object_mut()?.remove(key)?;
    serde_json::from_str(text.as_str()?).ok()
}

fn drop_empty_annotations(obj: &mut Value) {
    if obj.pointer("/metadata/annotations").and_then(Value::as_object).is_some_and(Map::is_empty) {
        obj["metadata"].as_object_mut().map(|m| m.remove("annotations"));
    }
}

fn hpa_v2_to_v1(mut obj: Value) -> Value {
    let spec = obj.get_mut("spec").map(Value::take).unwrap_or_default();
    let status = obj.get_mut("status").map(Value::take);
    let metrics = spec["metrics"].as_array().cloned().unwrap_or_default();
    let (cpu, other): (Vec<Value>, Vec<Value>) = metrics.into_iter().partition(is_cpu_utilization);
    let mut v1 = json!({"scaleTargetRef": spec["scaleTargetRef"], "maxReplicas": spec["maxReplicas"]});
    if let Some(min) = spec.get("minReplicas") {
        v1["minReplicas"] = min.clone();
    }
    if let Some(target) = cpu.first().and_then(|m| m.pointer("/resource/target/averageUtilization")) {
        v1["targetCPUUtilizationPercentage"] = target.clone();
    }
    stash(&mut obj, METRICS, Some(Value::Array(other)));
    stash(&mut obj, BEHAVIOR, spec.get("behavior").cloned());
    obj["spec"] = v1;
    if let Some(status) = status {
        let mut v1 = Map::new();
        for field in ["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"] {
            if let Some(v) = status.get(field) {
                v1.insert(field.into(), v.clone());
            }
        }
        let current = status["currentMetrics"].as_array().cloned().unwrap_or_default();
        let (cpu, other): (Vec<Value>, Vec<Value>) =
            current.into_iter().partition(|m| m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu")));
        if let Some(u) = cpu.first().and_then(|m| m.pointer("/resource/current/averageUtilization")) {
            v1.insert("currentCPUUtilizationPercentage".into(), u.clone());
        }
        stash(&mut obj, CURRENT_METRICS, Some(Value::Array(other)));
        stash(&mut obj, CONDITIONS, status.get("conditions").cloned());
        obj["status"] = Value::Object(v1);
    }
    obj["apiVersion"] = json!("autoscaling/v1");
    obj
}

fn hpa_v1_to_v2(mut obj: Value) -> Value {
    let spec = obj.get_mut("spec").map(Value::take).unwrap_or_default();
    let status = obj.get_mut("status").map(Value::take);
    let mut metrics: Vec<Value> = Vec::new();
    if let Some(target) = spec.get("targetCPUUtilizationPercentage") {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}));
    }
    if let Some(Value::Array(other)) = unstash(&mut obj, METRICS) {
        metrics.extend(other);
    }
    let mut v2 = json!({"scaleTargetRef": spec["scaleTargetRef"], "maxReplicas": spec["maxReplicas"]});
    if let Some(min) = spec.get("minReplicas") {
        v2["minReplicas"] = min.clone();
    }
    if !metrics.is_empty() {
        v2["metrics"] = Value::Array(metrics);
    }
    if let Some(behavior) = unstash(&mut obj, BEHAVIOR) {
        v2["behavior"] = behavior;
    }
    obj["spec"] = v2;
    let current_other = unstash(&mut obj, CURRENT_METRICS);
    let conditions = unstash(&mut obj, CONDITIONS);
    if let Some(status) = status {
        let mut v2 = Map::new();
        for field in ["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"] {
            if let Some(v) = status.get(field) {
                v2.insert(field.into(), v.clone());
            }
        }
        let mut current: Vec<Value> = Vec::new();
        if let Some(u) = status.get("currentCPUUtilizationPercentage") {
            current.push(json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u}}}));
        }
        if let Some(Value::Array(other)) = current_other {
            current.extend(other);
        }
        if !current.is_empty() {
            v2.insert("currentMetrics".into(), Value::Array(current));
        }
        if let Some(c) = conditions {
            v2.insert("conditions".into(), c);
        }
        obj["status"] = Value::Object(v2);
    }
    drop_empty_annotations(&mut obj);
    obj["apiVersion"] = json!("autoscaling/v2");
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_round_trips_through_v1_without_loss() {
        let v2 = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "minReplicas": 1, "maxReplicas": 5,
                     "metrics": [
                         {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                         {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}],
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
            "status": {"currentReplicas": 2, "desiredReplicas": 3,
                       "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40}}}],
                       "conditions": [{"type": "AbleToScale", "status": "True"}]},
        });
        let v1 = hpa_v2_to_v1(v2.clone());
        assert_eq!(v1["spec"], json!({"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 80}));
        assert_eq!(v1["status"], json!({"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 40}));
        assert!(v1["metadata"]["annotations"][METRICS].as_str().unwrap().contains("memory"));
        assert_eq!(hpa_v1_to_v2(v1), v2);
    }

    #[test]
    fn events_convert_both_ways() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"},
                          "message": "pulled", "reason": "Pulled", "type": "Normal", "count": 2, "source": {"component": "kubelet"},
                          "reportingComponent": "kubelet", "firstTimestamp": "2026-01-01T00:00:00Z"});
        let v1 = event_from_core(core.clone());
        assert_eq!(v1["regarding"]["name"], "p");
        assert_eq!((v1["note"].as_str(), v1["deprecatedCount"].as_i64(), v1["reportingController"].as_str()), (Some("pulled"), Some(2), Some("kubelet")));
        assert!(v1.get("message").is_none() && v1.get("involvedObject").is_none());
        assert_eq!(event_to_core(v1), core);
    }

    #[test]
    fn a_v1_hpa_without_a_target_has_no_metrics() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "metadata": {"name": "a"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "a"}, "maxReplicas": 3}});
        let v2 = hpa_v1_to_v2(v1);
        assert!(v2["spec"].get("metrics").is_none());
        assert!(v2["metadata"].get("annotations").is_none());
    }
}

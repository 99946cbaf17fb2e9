//! The `scale` subresource: an autoscaling/v1 `Scale` view of a workload's
//! replica count, read and written through the workload itself.

use serde_json::{json, Value};
use skiff_api::validation::FieldError;
use skiff_api::ResourceDef;

use crate::status::{ApiError, ApiResult};

/// The Scale a workload presents.
pub fn view(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let mut metadata = json!({});
    for field in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = meta.get(field) {
            metadata[field] = v.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(|r| r.as_i64()).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(|r| r.as_i64()).unwrap_or(0),
            "selector": selector_string(obj),
        },
    })
}

/// The workload with the replica count of `scale`.
pub fn apply(def: &ResourceDef, current: &Value, scale: &Value) -> ApiResult<Value> {
    let name = current.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or("");
    let replicas = scale.pointer("/spec/replicas").and_then(|r| r.as_i64());
    match replicas {
        Some(r) if r >= 0 => {
            let mut out = current.clone();
            out["spec"]["replicas"] = json!(r);
            Ok(out)
        }
        other => Err(ApiError::invalid(
            def,
            name,
            &[FieldError {
                field: "spec.replicas".into(),
                reason: "FieldValueInvalid",
                message: format!("Invalid value: {}: must be greater than or equal to 0", other.map_or("null".into(), |r| r.to_string())),
            }],
        )),
    }
}

/// `spec.selector` in label-selector syntax, as Scale's status reports it.
fn selector_string(obj: &Value) -> String {
    let selector = &obj["spec"]["selector"];
    // ReplicationControllers have a plain map; the others a LabelSelector.
    let selector = if selector.get("matchLabels").is_some() || selector.get("matchExpressions").is_some() {
        selector.clone()
    } else {
        serde_json::json!({"matchLabels": selector})
    };
    skiff_api::selector::LabelSelector::from_object(&selector).map(|s| s.to_string()).unwrap_or_default()
}

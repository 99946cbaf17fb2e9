//! Subresources that change one part of an object on behalf of a component:
//! `pods/binding` (the scheduler assigns a node) and `namespaces/finalize`
//! (the namespace controller removes its finalizer).

use serde_json::{json, Value};
use skiff_api::ResourceDef;

use crate::registry::{now, Registry};
use crate::status::{ApiError, ApiResult};

/// Binds a pod to the node a `Binding` names, once: a pod already bound,
/// or being deleted, cannot be bound again.
pub async fn bind(registry: &Registry, def: &ResourceDef, ns: Option<&str>, name: &str, binding: &Value, dry_run: bool) -> ApiResult<Value> {
    let node = binding.pointer("/target/name").and_then(|n| n.as_str()).filter(|n| !n.is_empty());
    let Some(node) = node else {
        return Err(ApiError::bad_request("a Binding needs target.name, the node to bind to"));
    };
    registry
        .guaranteed_update(def, ns, name, None, dry_run, |pod| {
            if pod.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(ApiError::conflict(def, name, &format!("pod {name} is being deleted, cannot be assigned to a host")));
            }
            if let Some(bound) = pod.pointer("/spec/nodeName").and_then(|n| n.as_str()).filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict(def, name, &format!("pod {name} is already assigned to node {bound:?}")));
            }
            let mut pod = pod.clone();
            pod["spec"]["nodeName"] = json!(node);
            let condition = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()});
            let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let mut conditions: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
            conditions.push(condition);
            pod["status"]["conditions"] = json!(conditions);
            Ok(pod)
        })
        .await
}

/// Replaces a namespace's `spec.finalizers`; with none left on a namespace
/// being deleted, the namespace goes.
pub async fn finalize(registry: &Registry, def: &ResourceDef, name: &str, body: &Value, dry_run: bool) -> ApiResult<Value> {
    let finalizers = body.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
    registry
        .guaranteed_update(def, None, name, None, dry_run, |ns| {
            let mut ns = ns.clone();
            ns["spec"]["finalizers"] = finalizers.clone();
            Ok(ns)
        })
        .await
}

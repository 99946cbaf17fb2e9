//! Subresources that act on an object on behalf of a component:
//! `pods/binding` (the scheduler assigns a node), `pods/eviction` (a
//! deletion that honours PodDisruptionBudgets, as `kubectl drain` uses it)
//! and `namespaces/finalize` (the namespace controller removes its
//! finalizer).

use serde_json::{json, Value};
use skiff_api::ResourceDef;

use axum::http::StatusCode;

use crate::registry::{now, DeleteOptions, ListQuery, Registry};
use crate::status::{ApiError, ApiResult};

/// Binds a pod to the node a `Binding` names, once: a pod already bound,
/// or being deleted, cannot be bound again.
pub async fn bind(registry: &Registry, def: &ResourceDef, ns: Option<&str>, name: &str, binding: &Value, dry_run: bool) -> ApiResult<Value> {
    let node = binding.pointer("/target/name").and_then(|n| n.as_str()).filter(|n| !n.is_empty());
    let Some(node) = node else {
        return Err(ApiError::bad_request("a Binding needs target.name, the node to bind to"));
    };
    registry
        .guaranteed_update(def, ns, name, None, dry_run, |mut pod| {
            if pod.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(ApiError::conflict(def, name, &format!("pod {name} is being deleted, cannot be assigned to a host")));
            }
            if let Some(bound) = pod.pointer("/spec/nodeName").and_then(|n| n.as_str()).filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict(def, name, &format!("pod {name} is already assigned to node {bound:?}")));
            }
            if pod.pointer("/spec/schedulingGates").and_then(Value::as_array).is_some_and(|g| !g.is_empty()) {
                // Upstream's plain error, hence its 500.
                return Err(ApiError::internal(format!("pod {name} has non-empty .spec.schedulingGates")));
            }
            pod["spec"]["nodeName"] = json!(node);
            let condition = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()});
            let conditions = &mut pod["status"]["conditions"];
            let mut kept = match conditions.take() {
                Value::Array(all) => all,
                _ => Vec::new(),
            };
            kept.retain(|c| c["type"] != "PodScheduled");
            kept.push(condition);
            *conditions = Value::Array(kept);
            Ok(pod)
        })
        .await
}

/// Replaces a namespace's `spec.finalizers`; with none left on a namespace
/// being deleted, the namespace goes.
pub async fn finalize(registry: &Registry, def: &ResourceDef, name: &str, body: &Value, dry_run: bool) -> ApiResult<Value> {
    let finalizers = body.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
    registry
        .guaranteed_update(def, None, name, None, dry_run, |mut ns| {
            ns["spec"]["finalizers"] = finalizers.clone();
            Ok(ns)
        })
        .await
}

fn budget_refusal(message: String) -> ApiError {
    ApiError {
        details: Some(json!({"causes": [{"reason": "DisruptionBudget", "message": message}], "retryAfterSeconds": 10})),
        ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.")
    }
}

/// Evicts a pod: deletes it unless its PodDisruptionBudget allows no more
/// disruptions (429, as upstream), taking one from the budget when it does.
/// Pods that are not running (pending, finished, being deleted) cost
/// nothing, as upstream.
pub async fn evict(registry: &Registry, pods: &ResourceDef, ns: Option<&str>, name: &str, eviction: &Value, dry_run: bool) -> ApiResult<()> {
    let pod = registry.get(pods, ns, name).await?;
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending");
    let costs_nothing = matches!(phase, "Pending" | "Succeeded" | "Failed") || pod.pointer("/metadata/deletionTimestamp").is_some();
    if !costs_nothing {
        let budgets_def = skiff_api::resources::find("policy", "v1", "poddisruptionbudgets").expect("PDBs are served");
        let labels: std::collections::BTreeMap<String, String> =
            pod.pointer("/metadata/labels").and_then(|l| serde_json::from_value(l.clone()).ok()).unwrap_or_default();
        let budgets: Vec<Value> = registry
            .list_objects(budgets_def, ns, &ListQuery::default())
            .await?
            .into_iter()
            .filter(|b| {
                let selector = b.pointer("/spec/selector").map(skiff_api::selector::LabelSelector::from_object);
                selector.is_some_and(|s| s.is_ok_and(|s| s.matches(&labels)))
            })
            .collect();
        if budgets.len() > 1 {
            return Err(ApiError::internal("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."));
        }
        if let Some(budget) = budgets.first() {
            let budget_name = crate::registry::name_of(budget).to_string();
            registry
                .guaranteed_update(budgets_def, ns, &budget_name, None, dry_run, |mut b| {
                    let observed = b.pointer("/status/observedGeneration").and_then(Value::as_i64).unwrap_or(-1);
                    if observed < b.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) {
                        return Err(budget_refusal(format!("The disruption budget {budget_name} is still being processed by the server.")));
                    }
                    let allowed = b.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0);
                    if allowed <= 0 {
                        let desired = b.pointer("/status/desiredHealthy").and_then(Value::as_i64).unwrap_or(0);
                        let current = b.pointer("/status/currentHealthy").and_then(Value::as_i64).unwrap_or(0);
                        return Err(budget_refusal(format!(
                            "The disruption budget {budget_name} needs {desired} healthy pods and has {current} currently"
                        )));
                    }
                    b["status"]["disruptionsAllowed"] = json!(allowed - 1);
                    b["status"]["disruptedPods"][name] = json!(now());
                    Ok(b)
                })
                .await?;
        }
    }
    let options = eviction.get("deleteOptions").cloned().unwrap_or(json!({}));
    let opts = DeleteOptions {
        propagation: options.get("propagationPolicy").and_then(Value::as_str).map(String::from),
        grace_seconds: options.get("gracePeriodSeconds").and_then(Value::as_i64),
        uid: options.pointer("/preconditions/uid").and_then(Value::as_str).map(String::from),
        resource_version: options.pointer("/preconditions/resourceVersion").and_then(Value::as_str).and_then(|v| v.parse().ok()),
        dry_run,
    };
    registry.delete(pods, ns, name, &opts).await.map(|_| ())
}

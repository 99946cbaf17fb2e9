//! ResourceQuota admission: an object is written only after every quota of
//! its namespace that limits what it uses has been charged for it. The
//! charge is a conditional write of the quota's `status.used`, so parallel
//! creates are serialized on the quota and can never exceed it; the quota
//! controller later recounts from what exists.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{json, Value};
use skiff_quantity::{format, is_binary, milli};

use crate::{Cluster, Operation, Plugin, Rejection, Request};

pub struct ResourceQuota;

/// What creating `obj` adds to each quota resource name, in milli-units.
fn usage(req: &Request<'_>, obj: &Value) -> BTreeMap<String, i64> {
    let mut used = BTreeMap::new();
    let count = if req.group.is_empty() { format!("count/{}", req.resource) } else { format!("count/{}.{}", req.resource, req.group) };
    used.insert(count, 1000);
    match (req.group, req.resource) {
        ("", "pods") => {
            used.insert("pods".into(), 1000);
            for (field, prefix) in [("requests", "requests."), ("limits", "limits.")] {
                for (resource, m) in pod_resources(&obj["spec"], field) {
                    if field == "requests" && !resource.contains('/') {
                        used.insert(resource.clone(), m);
                    }
                    used.insert(format!("{prefix}{resource}"), m);
                }
            }
        }
        ("", "services") => {
            used.insert("services".into(), 1000);
            let kind = obj["spec"]["type"].as_str().unwrap_or("ClusterIP");
            if matches!(kind, "NodePort" | "LoadBalancer") {
                used.insert("services.nodeports".into(), 1000 * obj["spec"]["ports"].as_array().map_or(0, |p| p.len() as i64));
            }
            if kind == "LoadBalancer" {
                used.insert("services.loadbalancers".into(), 1000);
            }
        }
        ("", "persistentvolumeclaims") => {
            used.insert("persistentvolumeclaims".into(), 1000);
            if let Some(size) = obj["spec"]["resources"]["requests"]["storage"].as_str().and_then(milli) {
                used.insert("requests.storage".into(), size);
            }
        }
        ("", plural @ ("configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas")) => {
            used.insert(plural.into(), 1000);
        }
        _ => {}
    }
    used
}

/// A pod's requests or limits as upstream's quota counts them: the pod's
/// totals plus its overhead.
fn pod_resources(spec: &Value, field: &str) -> BTreeMap<String, i64> {
    let mut out = crate::pods::pod_totals(spec, field);
    for (k, v) in spec["overhead"].as_object().into_iter().flatten() {
        *out.entry(k.clone()).or_default() += v.as_str().and_then(milli).unwrap_or(0);
    }
    out
}

/// Whether a quota's scopes admit the object (scoped quotas count pods only).
fn in_scopes(quota: &Value, req: &Request<'_>, obj: &Value) -> bool {
    let scopes: Vec<&str> = quota["spec"]["scopes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let selectors = quota["spec"]["scopeSelector"]["matchExpressions"].as_array().cloned().unwrap_or_default();
    if scopes.is_empty() && selectors.is_empty() {
        return true;
    }
    if !req.is("", "pods") {
        return false;
    }
    let spec = &obj["spec"];
    let terminating = !spec["activeDeadlineSeconds"].is_null();
    let best_effort = pod_resources(spec, "requests").is_empty() && pod_resources(spec, "limits").is_empty();
    let priority = spec["priorityClassName"].as_str();
    let scope = |name: &str| match name {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        _ => true,
    };
    scopes.iter().all(|s| scope(s))
        && selectors.iter().all(|e| {
            let name = e["scopeName"].as_str().unwrap_or_default();
            if name != "PriorityClass" {
                return scope(name);
            }
            let values: Vec<&str> = e["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            match e["operator"].as_str().unwrap_or_default() {
                "In" => priority.is_some_and(|p| values.contains(&p)),
                "NotIn" => priority.is_none_or(|p| !values.contains(&p)),
                "Exists" => priority.is_some(),
                "DoesNotExist" => priority.is_none(),
                _ => false,
            }
        })
}

/// `k=v,k=v` of the given resources, as upstream prints quota figures.
fn pretty(values: &BTreeMap<String, String>) -> String {
    values.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// The quota charged with `delta`, or why it cannot be.
fn charge(req: &Request<'_>, quota: &Value, delta: &BTreeMap<String, i64>) -> Result<Value, Rejection> {
    let name = quota["metadata"]["name"].as_str().unwrap_or_default();
    let hard = quota["spec"]["hard"].as_object().cloned().unwrap_or_default();
    let used = &quota["status"]["used"];
    let limited: Vec<&String> = delta.keys().filter(|k| hard.contains_key(*k)).collect();
    let unknown: Vec<&str> = limited.iter().filter(|k| used[k.as_str()].is_null()).map(|k| k.as_str()).collect();
    if !unknown.is_empty() {
        return Err(Rejection::forbidden(req, format!("status unknown for quota: {name}, resources: {}", unknown.join(","))));
    }
    let mut charged = quota.clone();
    let (mut requested, mut were, mut limits) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for key in limited {
        let (hard_text, used_text) = (hard[key].as_str().unwrap_or("0"), used[key].as_str().unwrap_or("0"));
        let binary = is_binary(hard_text) || is_binary(used_text);
        let counted = |m: i64| if key == "cpu" || key.ends_with(".cpu") { format(m, false) } else { format(m, binary) };
        let total = milli(used_text).unwrap_or(0) + delta[key];
        if total > milli(hard_text).unwrap_or(0) {
            requested.insert(key.clone(), counted(delta[key]));
            were.insert(key.clone(), used_text.to_string());
            limits.insert(key.clone(), hard_text.to_string());
        }
        charged["status"]["used"][key] = json!(counted(total));
    }
    if !requested.is_empty() {
        let why = format!("exceeded quota: {name}, requested: {}, used: {}, limited: {}", pretty(&requested), pretty(&were), pretty(&limits));
        return Err(Rejection::forbidden(req, why));
    }
    Ok(charged)
}

/// Upstream's pod constraint: when a quota limits a compute resource,
/// every container must say how much of it it requests (or limits).
fn missing_requirements(req: &Request<'_>, quota: &Value, pod: &Value) -> Option<Rejection> {
    if !req.is("", "pods") {
        return None;
    }
    let hard = quota["spec"]["hard"].as_object().cloned().unwrap_or_default();
    let compute = ["cpu", "memory", "ephemeral-storage"];
    let mut missing: Vec<&str> = Vec::new();
    for key in hard.keys() {
        let (field, resource) = match key.split_once('.') {
            Some(("requests", r)) => ("requests", r),
            Some(("limits", r)) => ("limits", r),
            _ => ("requests", key.as_str()),
        };
        if !compute.contains(&resource) {
            continue;
        }
        let lacking = ["initContainers", "containers"].iter().flat_map(|f| pod["spec"][f].as_array().into_iter().flatten()).any(|c| c["resources"][field][resource].is_null());
        if lacking {
            missing.push(key);
        }
    }
    missing.sort();
    let name = quota["metadata"]["name"].as_str().unwrap_or_default();
    (!missing.is_empty()).then(|| Rejection::forbidden(req, format!("failed quota: {name}: must specify {}", missing.join(","))))
}

#[async_trait]
impl Plugin for ResourceQuota {
    fn name(&self) -> &'static str {
        "ResourceQuota"
    }

    async fn validate(&self, req: &Request<'_>, obj: &Value, cluster: &dyn Cluster) -> Result<(), Rejection> {
        if req.operation != Operation::Create || req.namespace.is_empty() || !req.subresource.is_empty() {
            return Ok(());
        }
        let quotas = cluster.list("", "resourcequotas", Some(req.namespace)).await.map_err(Rejection::internal)?;
        if quotas.is_empty() {
            return Ok(());
        }
        let delta = usage(req, obj);
        for quota in quotas.iter().filter(|q| in_scopes(q, req, obj)) {
            if let Some(refusal) = missing_requirements(req, quota, obj) {
                return Err(refusal);
            }
            let hard = quota["spec"]["hard"].as_object().cloned().unwrap_or_default();
            if !delta.keys().any(|k| hard.contains_key(k)) {
                continue;
            }
            let name = quota["metadata"]["name"].as_str().unwrap_or_default();
            if req.dry_run {
                charge(req, quota, &delta)?;
            } else {
                cluster.update("", "resourcequotas", req.namespace, name, &|current| charge(req, current, &delta)).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(user: &'a skiff_auth::UserInfo) -> Request<'a> {
        Request { operation: Operation::Create, group: "", version: "v1", kind: "Pod", resource: "pods", subresource: "", namespace: "ns", name: "p", user, dry_run: false, old: None }
    }

    #[test]
    fn charges_until_the_hard_limit() {
        let user = skiff_auth::UserInfo::default();
        let pod = json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1"}}}]}});
        let delta = usage(&req(&user), &pod);
        let quota = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2", "requests.cpu": "1", "requests.memory": "2Gi"}}, "status": {"used": {"pods": "1", "requests.cpu": "500m", "requests.memory": "1Gi"}}});
        let charged = charge(&req(&user), &quota, &delta).unwrap();
        assert_eq!(charged["status"]["used"], json!({"pods": "2", "requests.cpu": "1", "requests.memory": "2Gi"}));
        let refused = charge(&req(&user), &charged, &delta).unwrap_err();
        assert_eq!(refused.message, r#"pods "p" is forbidden: exceeded quota: q, requested: pods=1,requests.cpu=500m,requests.memory=1Gi, used: pods=2,requests.cpu=1,requests.memory=2Gi, limited: pods=2,requests.cpu=1,requests.memory=2Gi"#);
        let memory = json!({"metadata": {"name": "q"}, "spec": {"hard": {"limits.memory": "1Gi", "requests.cpu": "1"}}});
        assert!(missing_requirements(&req(&user), &memory, &pod).unwrap().message.ends_with("failed quota: q: must specify limits.memory"));
        let fresh = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "2"}}});
        assert!(charge(&req(&user), &fresh, &delta).unwrap_err().message.ends_with("status unknown for quota: q, resources: pods"));
    }
}

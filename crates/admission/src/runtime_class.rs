//! RuntimeClass: a pod created with `spec.runtimeClassName` gets its
//! RuntimeClass's pod overhead and scheduling (node selector and
//! tolerations), and is refused if the class does not exist or the pod
//! states another overhead, as upstream's plugin
//! (`plugin/pkg/admission/runtimeclass`).

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::pods::creates_pod;
use crate::{Cluster, Plugin, Rejection, Request};

pub struct RuntimeClass;

/// The pod's RuntimeClass: None if it names none; refused if it names one
/// that does not exist.
async fn runtime_class(req: &Request<'_>, pod: &Value, cluster: &dyn Cluster) -> Result<Option<Value>, Rejection> {
    let Some(name) = pod["spec"]["runtimeClassName"].as_str() else { return Ok(None) };
    match cluster.get("node.k8s.io", "runtimeclasses", None, name).await.map_err(Rejection::internal)? {
        Some(class) => Ok(Some(Value::clone(&class))),
        None => Err(Rejection::forbidden(req, format!("pod rejected: RuntimeClass {name:?} not found"))),
    }
}

/// Upstream's semantic equality of two resource lists: the same resources
/// in equal quantities (`1` is `1000m`); absent and empty are equal.
fn same_resources(a: &Value, b: &Value) -> bool {
    let empty = Map::new();
    let (a, b) = (a.as_object().unwrap_or(&empty), b.as_object().unwrap_or(&empty));
    a.len() == b.len()
        && a.iter().all(|(k, qa)| {
            b.get(k).is_some_and(|qb| match (qa.as_str().and_then(skiff_quantity::milli), qb.as_str().and_then(skiff_quantity::milli)) {
                (Some(x), Some(y)) => x == y,
                _ => qa == qb,
            })
        })
}

/// The class's `overhead.podFixed`, if it has an overhead.
fn class_overhead(class: Option<&Value>) -> Option<&Value> {
    class.map(|c| &c["overhead"]).filter(|o| o.is_object()).map(|o| &o["podFixed"])
}

/// Unsets a field (upstream's nil).
fn remove(spec: &mut Value, field: &str) {
    if let Some(spec) = spec.as_object_mut() {
        spec.remove(field);
    }
}

fn set_overhead(req: &Request<'_>, pod: &mut Value, class: Option<&Value>) -> Result<(), Rejection> {
    let Some(fixed) = class_overhead(class) else { return Ok(()) };
    let spec = &mut pod["spec"];
    let stated = spec["overhead"].as_object().is_some_and(|o| !o.is_empty());
    if stated && !same_resources(fixed, &spec["overhead"]) {
        return Err(Rejection::forbidden(req, "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead"));
    }
    match fixed {
        Value::Null => remove(spec, "overhead"),
        fixed => spec["overhead"] = fixed.clone(),
    }
    Ok(())
}

fn set_scheduling(req: &Request<'_>, pod: &mut Value, class: Option<&Value>) -> Result<(), Rejection> {
    let Some(scheduling) = class.map(|c| &c["scheduling"]).filter(|s| s.is_object()) else { return Ok(()) };
    let spec = &mut pod["spec"];
    let class_selector = scheduling["nodeSelector"].as_object().cloned().unwrap_or_default();
    if let Some(selector) = spec["nodeSelector"].as_object_mut() {
        for (key, class_value) in class_selector {
            if let Some(pod_value) = selector.get(&key).filter(|v| **v != class_value) {
                let (cv, pv) = (class_value.as_str().unwrap_or_default(), pod_value.as_str().unwrap_or_default());
                return Err(Rejection::forbidden(req, format!("conflict: runtimeClass.scheduling.nodeSelector[{key}] = {cv}; pod.spec.nodeSelector[{key}] = {pv}")));
            }
            selector.insert(key, class_value);
        }
    } else if !class_selector.is_empty() {
        spec["nodeSelector"] = Value::Object(class_selector);
    }
    let mut all: Vec<Value> = spec["tolerations"].as_array().cloned().unwrap_or_default();
    all.extend(scheduling["tolerations"].as_array().cloned().unwrap_or_default());
    let merged = merge_tolerations(&all);
    if merged.is_empty() {
        remove(spec, "tolerations");
    } else {
        spec["tolerations"] = Value::Array(merged);
    }
    Ok(())
}

/// A toleration's fields, for comparison (absent strings are empty).
#[derive(PartialEq)]
struct Toleration<'v> {
    key: &'v str,
    operator: &'v str,
    value: &'v str,
    effect: &'v str,
    seconds: Option<i64>,
}

fn toleration(t: &Value) -> Toleration<'_> {
    let s = |f: &str| t[f].as_str().unwrap_or_default();
    Toleration { key: s("key"), operator: s("operator"), value: s("value"), effect: s("effect"), seconds: t["tolerationSeconds"].as_i64() }
}

/// Upstream's `isSuperset`: whether `ss` tolerates everything `t` does.
fn is_superset(ss: &Toleration<'_>, t: &Toleration<'_>) -> bool {
    if ss == t {
        return true;
    }
    // An empty key with Exists matches every key.
    if t.key != ss.key && (!ss.key.is_empty() || ss.operator != "Exists") {
        return false;
    }
    // An empty effect matches every effect.
    if t.effect != ss.effect && !ss.effect.is_empty() {
        return false;
    }
    if ss.effect == "NoExecute" {
        if let Some(limit) = ss.seconds {
            if t.seconds.is_none_or(|s| s > limit) {
                return false;
            }
        }
    }
    match ss.operator {
        "Equal" | "" => t.operator == "Equal" && t.value == ss.value,
        "Exists" => true,
        _ => false,
    }
}

/// Upstream's `MergeTolerations`: every toleration, in order, but those
/// another one tolerates a superset of (of equal ones, the first).
fn merge_tolerations(all: &[Value]) -> Vec<Value> {
    let parsed: Vec<Toleration<'_>> = all.iter().map(toleration).collect();
    let mut merged: Vec<usize> = Vec::new();
    for (i, t) in parsed.iter().enumerate() {
        let redundant = merged.iter().any(|&m| is_superset(&parsed[m], t)) || parsed[i + 1..].iter().any(|t2| t2 != t && is_superset(t2, t));
        if !redundant {
            merged.push(i);
        }
    }
    merged.into_iter().map(|i| all[i].clone()).collect()
}

#[async_trait]
impl Plugin for RuntimeClass {
    fn name(&self) -> &'static str {
        "RuntimeClass"
    }

    async fn mutate(&self, req: &Request<'_>, pod: &mut Value, cluster: &dyn Cluster) -> Result<(), Rejection> {
        if !creates_pod(req) {
            return Ok(());
        }
        let class = runtime_class(req, pod, cluster).await?;
        set_overhead(req, pod, class.as_ref())?;
        set_scheduling(req, pod, class.as_ref())
    }

    async fn validate(&self, req: &Request<'_>, pod: &Value, cluster: &dyn Cluster) -> Result<(), Rejection> {
        if !creates_pod(req) {
            return Ok(());
        }
        let class = runtime_class(req, pod, cluster).await?;
        match class_overhead(class.as_ref()) {
            Some(fixed) if !same_resources(fixed, &pod["spec"]["overhead"]) => Err(Rejection::forbidden(req, "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead")),
            None if !pod["spec"]["overhead"].is_null() => Err(Rejection::forbidden(req, "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead")),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Operation;
    use serde_json::json;
    use skiff_auth::UserInfo;
    use std::sync::Arc;

    /// A cluster holding RuntimeClasses only.
    struct Classes(Vec<Value>);

    #[async_trait]
    impl Cluster for Classes {
        async fn list(&self, _: &str, _: &str, _: Option<&str>) -> Result<Vec<Value>, String> {
            Ok(self.0.clone())
        }
        async fn get(&self, group: &str, resource: &str, _: Option<&str>, name: &str) -> Result<Option<Arc<Value>>, String> {
            assert_eq!((group, resource), ("node.k8s.io", "runtimeclasses"));
            Ok(self.0.iter().find(|c| c["metadata"]["name"] == name).cloned().map(Arc::new))
        }
        async fn update(&self, _: &str, _: &str, _: &str, _: &str, _: &(dyn for<'v> Fn(&'v Value) -> Result<Value, Rejection> + Send + Sync)) -> Result<(), Rejection> {
            unreachable!()
        }
        async fn call_webhook(&self, _: &Value, _: Vec<u8>, _: std::time::Duration) -> Result<Vec<u8>, String> {
            unreachable!()
        }
        fn allows(&self, _: &UserInfo, _: &str, _: &str, _: &str, _: &str) -> bool {
            true
        }
    }

    fn req(user: &UserInfo) -> Request<'_> {
        Request { operation: Operation::Create, group: "", version: "v1", kind: "Pod", resource: "pods", subresource: "", namespace: "ns", name: "p", user, dry_run: false, old: None }
    }

    fn cluster() -> Classes {
        Classes(vec![
            json!({"metadata": {"name": "plain"}, "handler": "runc"}),
            json!({"metadata": {"name": "kata"}, "handler": "kata", "overhead": {"podFixed": {"cpu": "250m", "memory": "120Mi"}}}),
            json!({"metadata": {"name": "gpu"}, "handler": "runc", "scheduling": {
                "nodeSelector": {"runtime": "gpu", "zone": "a"},
                "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}, {"key": "dedicated", "operator": "Equal", "value": "gpu"}]}}),
        ])
    }

    /// Admission as the chain runs it: mutate, then validate.
    async fn admit(pod: Value) -> Result<Value, String> {
        let (user, cluster) = (UserInfo::default(), cluster());
        let mut pod = pod;
        RuntimeClass.mutate(&req(&user), &mut pod, &cluster).await.map_err(|r| r.message)?;
        RuntimeClass.validate(&req(&user), &pod, &cluster).await.map_err(|r| r.message)?;
        Ok(pod)
    }

    fn pod(spec: Value) -> Value {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "pause"}]);
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[tokio::test]
    async fn a_missing_class_is_refused_as_upstream() {
        assert_eq!(admit(pod(json!({"runtimeClassName": "nope"}))).await.unwrap_err(), r#"pods "p" is forbidden: pod rejected: RuntimeClass "nope" not found"#);
        let plain = admit(pod(json!({"runtimeClassName": "plain"}))).await.unwrap();
        assert_eq!(plain, pod(json!({"runtimeClassName": "plain"})));
        // Without a class, nothing changes; an overhead without one is refused.
        assert_eq!(admit(pod(json!({}))).await.unwrap(), pod(json!({})));
        assert_eq!(admit(pod(json!({"overhead": {"cpu": "1"}}))).await.unwrap_err(), r#"pods "p" is forbidden: pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"#);
    }

    #[tokio::test]
    async fn the_class_overhead_is_set_and_another_refused() {
        let set = admit(pod(json!({"runtimeClassName": "kata"}))).await.unwrap();
        assert_eq!(set["spec"]["overhead"], json!({"cpu": "250m", "memory": "120Mi"}));
        // The same overhead, written otherwise, is admitted.
        assert!(admit(pod(json!({"runtimeClassName": "kata", "overhead": {"cpu": "0.25", "memory": "120Mi"}}))).await.is_ok());
        let other = admit(pod(json!({"runtimeClassName": "kata", "overhead": {"cpu": "1", "memory": "120Mi"}}))).await.unwrap_err();
        assert_eq!(other, r#"pods "p" is forbidden: pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead"#);
        // A class without overhead: the pod may not state one.
        assert!(admit(pod(json!({"runtimeClassName": "plain", "overhead": {"cpu": "1"}}))).await.unwrap_err().ends_with("Pod Overhead set without corresponding RuntimeClass defined Overhead"));
    }

    #[tokio::test]
    async fn scheduling_merges_node_selectors_and_appends_tolerations() {
        let merged = admit(pod(json!({"runtimeClassName": "gpu", "nodeSelector": {"zone": "a", "disk": "ssd"}, "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu"}]}))).await.unwrap();
        assert_eq!(merged["spec"]["nodeSelector"], json!({"disk": "ssd", "runtime": "gpu", "zone": "a"}));
        assert_eq!(merged["spec"]["tolerations"], json!([{"key": "dedicated", "operator": "Equal", "value": "gpu"}, {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]));
        let bare = admit(pod(json!({"runtimeClassName": "gpu"}))).await.unwrap();
        assert_eq!(bare["spec"]["nodeSelector"], json!({"runtime": "gpu", "zone": "a"}));
        assert_eq!(bare["spec"]["tolerations"].as_array().unwrap().len(), 2);
        // A pod toleration that already tolerates more keeps the class's out.
        let wide = admit(pod(json!({"runtimeClassName": "gpu", "tolerations": [{"operator": "Exists"}]}))).await.unwrap();
        assert_eq!(wide["spec"]["tolerations"], json!([{"operator": "Exists"}]));
        let conflict = admit(pod(json!({"runtimeClassName": "gpu", "nodeSelector": {"zone": "b"}}))).await.unwrap_err();
        assert_eq!(conflict, r#"pods "p" is forbidden: conflict: runtimeClass.scheduling.nodeSelector[zone] = a; pod.spec.nodeSelector[zone] = b"#);
    }

    #[tokio::test]
    async fn only_pod_creations_are_admitted_here() {
        let (user, cluster) = (UserInfo::default(), cluster());
        let mut update = req(&user);
        update.operation = Operation::Update;
        let mut p = pod(json!({"runtimeClassName": "nope"}));
        assert!(RuntimeClass.mutate(&update, &mut p, &cluster).await.is_ok());
        assert!(RuntimeClass.validate(&update, &p, &cluster).await.is_ok());
    }
}

//! Per-kind rules on top of the generic registry, as upstream's strategies
//! have them: what a new object starts with, what an update keeps, and
//! whether deletion waits. Validation is `skiff_api::validation`'s.

use base64::Engine;
use serde_json::{json, Value};
use skiff_api::ResourceDef;

fn is(def: &ResourceDef, group: &str, kind: &str) -> bool {
    def.group == group && def.kind == kind
}

pub fn prepare_create(def: &ResourceDef, obj: &mut Value) {
    // Status is the controllers' to write, through `/status`; except a
    // Node's, which its kubelet registers it with (as upstream keeps it).
    if def.has_status() && !is(def, "", "Node") {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }
    if is(def, "", "Namespace") {
        if obj.pointer("/spec/finalizers").is_none() {
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
        }
        obj["status"] = json!({"phase": "Active"});
        // Upstream labels every namespace with its own name.
        obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = obj["metadata"]["name"].clone();
    } else if is(def, "", "Pod") {
        obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(obj)});
        if !scheduling_gates(obj).is_empty() {
            obj["status"]["conditions"] = json!([{
                "type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
                "lastProbeTime": null, "lastTransitionTime": crate::registry::now(),
            }]);
        }
    } else if is(def, "", "PersistentVolumeClaim") {
        obj["status"] = json!({"phase": "Pending"});
    } else if is(def, "", "PersistentVolume") {
        obj["status"] = json!({"phase": "Pending", "lastPhaseTransitionTime": crate::registry::now()});
    } else if is(def, "", "Secret") {
        fold_string_data(obj);
    } else if is(def, "batch", "Job") && obj.pointer("/spec/manualSelector") != Some(&json!(true)) {
        select_own_pods(obj);
    } else if is(def, "apiextensions.k8s.io", "CustomResourceDefinition") {
        add_finalizer(obj, crate::crds::CLEANUP_FINALIZER);
    }
}

/// A Job selects its pods by its uid (upstream's `generateSelector`): the
/// template is labelled with it and the job name, new and legacy keys.
fn select_own_pods(job: &mut Value) {
    let uid = job["metadata"]["uid"].clone();
    let name = job["metadata"]["name"].clone();
    let labels = &mut job["spec"]["template"]["metadata"]["labels"];
    for (key, value) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        if labels.get(key).is_none() {
            labels[key] = value.clone();
        }
    }
    if job.pointer("/spec/selector").is_none() {
        job["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    }
}

pub fn prepare_update(def: &ResourceDef, current: &Value, new: &mut Value) {
    if is(def, "", "Secret") {
        fold_string_data(new);
    } else if is(def, "", "Namespace") {
        // Finalizers in spec change through `/finalize` only.
        match current.pointer("/spec/finalizers") {
            Some(f) => new["spec"]["finalizers"] = f.clone(),
            None => {
                if let Some(spec) = new.get_mut("spec").and_then(|s| s.as_object_mut()) {
                    spec.remove("finalizers");
                }
            }
        }
    }
    if is(def, "", "Namespace") {
        new["metadata"]["labels"]["kubernetes.io/metadata.name"] = current["metadata"]["name"].clone();
    }
    if is(def, "", "Service") {
        // Allocated fields an update leaves out are kept, as upstream does.
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            let missing = new.pointer(&format!("/spec/{field}")).is_none_or(|v| v.is_null() || v == "");
            if let (true, Some(v)) = (missing, current.pointer(&format!("/spec/{field}"))) {
                new["spec"][field] = v.clone();
            }
        }
        let old_ports = current.pointer("/spec/ports").and_then(|p| p.as_array()).cloned().unwrap_or_default();
        if let Some(ports) = new.pointer_mut("/spec/ports").and_then(|p| p.as_array_mut()) {
            for p in ports.iter_mut().filter(|p| p.get("nodePort").is_none()) {
                if let Some(n) = old_ports.iter().find(|o| o["port"] == p["port"]).and_then(|o| o.get("nodePort")) {
                    p["nodePort"] = n.clone();
                }
            }
        }
    }
}

/// A pod's scheduling gates, by name.
fn scheduling_gates(pod: &Value) -> Vec<&str> {
    pod.pointer("/spec/schedulingGates").and_then(Value::as_array).into_iter().flatten().map(|g| g["name"].as_str().unwrap_or_default()).collect()
}

/// `stringData` is write-only convenience: it is folded into `data`.
fn fold_string_data(obj: &mut Value) {
    let Some(string_data) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    if let Some(map) = string_data.as_object() {
        if !obj.get("data").is_some_and(|d| d.is_object()) {
            obj["data"] = json!({});
        }
        for (k, v) in map {
            let text = v.as_str().unwrap_or_default();
            obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }
}

/// Guaranteed, Burstable or BestEffort, as upstream computes a pod's QoS.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod.pointer(&format!("/spec/{f}")).and_then(|c| c.as_array()))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let requests = c.pointer("/resources/requests").and_then(|r| r.as_object());
        let limits = c.pointer("/resources/limits").and_then(|r| r.as_object());
        if requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(res));
            let request = requests.and_then(|r| r.get(res)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Deletion waits (the object is only marked) for namespaces, for objects
/// with finalizers, and for pods bound to a node, whose kubelet stops them.
pub fn deletes_gracefully(def: &ResourceDef, obj: &Value, grace: Option<i64>) -> bool {
    if is(def, "", "Namespace") {
        return true;
    }
    if obj.pointer("/metadata/finalizers").and_then(|f| f.as_array()).is_some_and(|f| !f.is_empty()) {
        return true;
    }
    is(def, "", "Pod") && obj.pointer("/spec/nodeName").is_some() && grace != Some(0)
}

/// Being deleted with no finalizer left: time to remove it from the store.
/// A namespace also waits for the finalizers in its spec.
pub fn is_finalized(def: &ResourceDef, obj: &Value) -> bool {
    let empty = |p: &str| obj.pointer(p).and_then(|f| f.as_array()).is_none_or(|f| f.is_empty());
    obj.pointer("/metadata/deletionTimestamp").is_some()
        && empty("/metadata/finalizers")
        && (!is(def, "", "Namespace") || empty("/spec/finalizers"))
}

/// Deleting with propagationPolicy Orphan: the garbage collector removes
/// the dependents' owner references, then this finalizer.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// Foreground: the garbage collector deletes the dependents first.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

pub fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let finalizers = &mut obj["metadata"]["finalizers"];
    match finalizers.as_array_mut() {
        Some(list) if list.iter().any(|f| f == finalizer) => {}
        Some(list) => list.push(json!(finalizer)),
        None => *finalizers = json!([finalizer]),
    }
}

pub fn mark_deleted(def: &ResourceDef, obj: &mut Value, grace: Option<i64>) {
    let grace = if is(def, "", "Pod") {
        grace.or_else(|| obj.pointer("/spec/terminationGracePeriodSeconds").and_then(|g| g.as_i64())).unwrap_or(30)
    } else {
        0
    };
    let at = chrono::Utc::now() + chrono::TimeDelta::seconds(grace);
    obj["metadata"]["deletionTimestamp"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    if is(def, "", "Namespace") {
        obj["status"]["phase"] = json!("Terminating");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos() {
        let pod = |res: Value| json!({"spec": {"containers": [{"name": "a", "image": "x", "resources": res}]}});
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))), "Guaranteed");
        assert_eq!(qos_class(&pod(json!({"requests": {"cpu": "1"}}))), "Burstable");
    }

    #[test]
    fn string_data_folds_into_data() {
        let mut s = json!({"stringData": {"user": "admin"}, "data": {"x": "eA=="}});
        fold_string_data(&mut s);
        assert_eq!(s, json!({"data": {"x": "eA==", "user": "YWRtaW4="}}));
    }
}

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
    } else if is(def, "", "Service") {
        service::drop_unread_fields(obj);
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
        service::prepare_update(current, new);
    }
}

/// Upstream's Service strategy and the pure parts of its REST update: what
/// a replacing Service keeps of the old one, and what a change of type
/// clears (the claims themselves are `services::Allocator`'s).
mod service {
    use serde_json::Value;

    use crate::services::{needs_cluster_ip, needs_node_port, node_ports, type_of};

    fn spec_field<'a>(svc: &'a Value, field: &str) -> Option<&'a Value> {
        svc.get("spec")?.get(field).filter(|v| !v.is_null())
    }

    fn text<'a>(svc: &'a Value, field: &str) -> &'a str {
        spec_field(svc, field).and_then(Value::as_str).unwrap_or("")
    }

    /// A list field as Go holds it: absent, null and empty are all nil.
    fn list<'a>(svc: &'a Value, field: &str) -> &'a [Value] {
        spec_field(svc, field).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
    }

    fn remove(svc: &mut Value, field: &str) {
        if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove(field);
        }
    }

    fn same_cluster_ips(old: &Value, new: &Value) -> bool {
        text(old, "clusterIP") == text(new, "clusterIP") && list(old, "clusterIPs") == list(new, "clusterIPs")
    }

    fn same(old: &Value, new: &Value, field: &str) -> bool {
        spec_field(old, field) == spec_field(new, field)
    }

    fn externally_accessible(svc: &Value) -> bool {
        matches!(type_of(svc), "LoadBalancer" | "NodePort") || (type_of(svc) == "ClusterIP" && !list(svc, "externalIPs").is_empty())
    }

    fn needs_health_check_node_port(svc: &Value) -> bool {
        type_of(svc) == "LoadBalancer" && text(svc, "externalTrafficPolicy") == "Local"
    }

    /// Upstream keeps an ExternalName Service's internalTrafficPolicy in
    /// storage but never shows it (`defaultOnReadInternalTrafficPolicy`);
    /// here it is not kept at all, which reads the same.
    pub fn drop_unread_fields(svc: &mut Value) {
        if !needs_cluster_ip(svc) {
            remove(svc, "internalTrafficPolicy");
        }
    }

    pub fn prepare_update(old: &Value, new: &mut Value) {
        patch_allocated_values(old, new);
        normalize_cluster_ips(old, new);
        drop_type_dependent_fields(old, new);
        drop_unread_fields(new);
    }

    /// Upstream's `patchAllocatedValues`: what was allocated and the new
    /// object leaves out is kept, while the type still needs it. Node
    /// ports are matched by port name, and not where the new object uses
    /// them for another port.
    fn patch_allocated_values(old: &Value, new: &mut Value) {
        if needs_cluster_ip(old) && needs_cluster_ip(new) {
            if text(new, "clusterIP").is_empty() && !text(old, "clusterIP").is_empty() {
                new["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
            }
            if list(new, "clusterIPs").is_empty() && !list(old, "clusterIPs").is_empty() {
                new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
            }
            // initIPFamilyFields: a policy left out is the old one (the
            // families follow the kept cluster IPs).
            for field in ["ipFamilyPolicy", "ipFamilies"] {
                let missing = spec_field(new, field).is_none_or(|v| v.as_array().is_some_and(|a| a.is_empty()));
                if let (true, Some(v)) = (missing, spec_field(old, field)) {
                    new["spec"][field] = v.clone();
                }
            }
        }
        if needs_node_port(old) && needs_node_port(new) {
            let new_ports = node_ports(new);
            let used: Vec<u16> = node_ports(old).into_iter().filter(|n| new_ports.contains(n)).collect();
            let by_name: Vec<(Value, Value)> = list(old, "ports").iter().map(|p| (p.get("name").cloned().unwrap_or(Value::from("")), p.get("nodePort").cloned().unwrap_or(Value::Null))).collect();
            if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter(|p| p.get("nodePort").and_then(Value::as_u64).unwrap_or(0) == 0) {
                    let name = p.get("name").cloned().unwrap_or(Value::from(""));
                    // As a Go map, the last port of a name wins.
                    let kept = by_name.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
                    if let Some(n) = kept.filter(|v| v.as_u64().is_some_and(|n| n > 0 && !used.contains(&(n as u16)))) {
                        p["nodePort"] = n;
                    }
                }
            }
        }
        if needs_health_check_node_port(old) && needs_health_check_node_port(new) && spec_field(new, "healthCheckNodePort").and_then(Value::as_u64).unwrap_or(0) == 0 {
            if let Some(port) = spec_field(old, "healthCheckNodePort").cloned() {
                new["spec"]["healthCheckNodePort"] = port;
            }
        }
    }

    /// Upstream's `normalizeClusterIPs` on update: clusterIPs follow a
    /// clusterIP the client changed or cleared, and an old client that
    /// sends only clusterIP keeps the rest of clusterIPs.
    fn normalize_cluster_ips(old: &Value, new: &mut Value) {
        if !list(old, "clusterIPs").is_empty() && list(new, "clusterIPs").is_empty() && text(old, "clusterIP") == text(new, "clusterIP") {
            new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
        }
        if text(old, "clusterIP") != text(new, "clusterIP") && same(old, new, "clusterIPs") {
            if text(new, "clusterIP").is_empty() {
                remove(new, "clusterIPs");
            } else {
                new["spec"]["clusterIPs"] = Value::from(vec![text(new, "clusterIP").to_string()]);
            }
        }
    }

    /// Upstream's `dropTypeDependentFields`: when the type changes, what
    /// only the old type used is cleared, unless the client changed it
    /// (then validation decides).
    fn drop_type_dependent_fields(old: &Value, new: &mut Value) {
        if type_of(old) == type_of(new) {
            return;
        }
        if needs_cluster_ip(old) && !needs_cluster_ip(new) {
            if same_cluster_ips(old, new) {
                remove(new, "clusterIP");
                remove(new, "clusterIPs");
            }
            for field in ["ipFamilies", "ipFamilyPolicy"] {
                if same(old, new, field) {
                    remove(new, field);
                }
            }
        }
        if needs_node_port(old) && !needs_node_port(new) {
            // The same ports, or fewer: none the client added.
            let old_ports = node_ports(old);
            if node_ports(new).iter().all(|n| old_ports.contains(n)) {
                for p in new.pointer_mut("/spec/ports").and_then(Value::as_array_mut).into_iter().flatten() {
                    if let Some(p) = p.as_object_mut() {
                        p.remove("nodePort");
                    }
                }
            }
        }
        if needs_health_check_node_port(old) && !needs_health_check_node_port(new) && same(old, new, "healthCheckNodePort") {
            remove(new, "healthCheckNodePort");
        }
        if type_of(old) == "LoadBalancer" && type_of(new) != "LoadBalancer" {
            let (o, n) = (spec_field(old, "allocateLoadBalancerNodePorts"), spec_field(new, "allocateLoadBalancerNodePorts"));
            if o.is_some() && o == n {
                remove(new, "allocateLoadBalancerNodePorts");
            }
            if same(old, new, "loadBalancerClass") {
                remove(new, "loadBalancerClass");
            }
        }
        if externally_accessible(old) && !externally_accessible(new) && same(old, new, "externalTrafficPolicy") {
            remove(new, "externalTrafficPolicy");
        }
        if type_of(new) != "LoadBalancer" {
            if let Some(status) = new.get_mut("status").and_then(Value::as_object_mut) {
                status.insert("loadBalancer".into(), Value::Object(Default::default()));
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use serde_json::json;

        fn svc(spec: Value) -> Value {
            json!({"metadata": {"name": "s"}, "spec": spec, "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}})
        }

        #[test]
        fn leaving_cluster_ip_for_external_name_clears_what_was_allocated() {
            let old = svc(json!({"type": "ClusterIP", "clusterIP": "10.43.0.7", "clusterIPs": ["10.43.0.7"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster", "ports": [{"port": 80}]}));
            // A read-modify-write (PUT) and a merge patch both send the old values.
            let mut new = old.clone();
            new["spec"]["type"] = json!("ExternalName");
            new["spec"]["externalName"] = json!("example.com");
            prepare_update(&old, &mut new);
            assert_eq!(new["spec"], json!({"type": "ExternalName", "externalName": "example.com", "ports": [{"port": 80}]}));
            assert_eq!(new["status"], json!({"loadBalancer": {}}));
            // A clusterIP the client changed is left for validation to refuse.
            let mut changed = old.clone();
            changed["spec"]["type"] = json!("ExternalName");
            changed["spec"]["clusterIP"] = json!("10.43.0.8");
            prepare_update(&old, &mut changed);
            assert_eq!(changed["spec"]["clusterIP"], json!("10.43.0.8"));
        }

        #[test]
        fn leaving_node_port_clears_node_ports_and_the_traffic_policy() {
            let old = svc(json!({"type": "NodePort", "clusterIP": "10.43.0.7", "clusterIPs": ["10.43.0.7"], "externalTrafficPolicy": "Cluster", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}));
            let mut to_cluster_ip = old.clone();
            to_cluster_ip["spec"]["type"] = json!("ClusterIP");
            prepare_update(&old, &mut to_cluster_ip);
            assert_eq!(to_cluster_ip["spec"], json!({"type": "ClusterIP", "clusterIP": "10.43.0.7", "clusterIPs": ["10.43.0.7"], "ports": [{"name": "http", "port": 80}]}));
            let mut to_external = old.clone();
            to_external["spec"]["type"] = json!("ExternalName");
            to_external["spec"]["externalName"] = json!("example.com");
            prepare_update(&old, &mut to_external);
            assert_eq!(to_external["spec"], json!({"type": "ExternalName", "externalName": "example.com", "ports": [{"name": "http", "port": 80}]}));
            // A node port the client adds while leaving NodePort stays (and is refused).
            let mut added = old.clone();
            added["spec"]["type"] = json!("ClusterIP");
            added["spec"]["ports"][0]["nodePort"] = json!(30081);
            prepare_update(&old, &mut added);
            assert_eq!(added["spec"]["ports"][0]["nodePort"], json!(30081));
        }

        #[test]
        fn an_update_that_leaves_allocated_values_out_keeps_them() {
            let old = svc(json!({"type": "NodePort", "clusterIP": "10.43.0.7", "clusterIPs": ["10.43.0.7"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "ports": [{"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81, "nodePort": 30081}]}));
            // By port name, whatever the number; not a port the client gave another.
            let mut new = svc(json!({"type": "NodePort", "ports": [{"name": "a", "port": 8080}, {"name": "b", "port": 81, "nodePort": 30080}]}));
            prepare_update(&old, &mut new);
            assert_eq!(new["spec"]["clusterIPs"], json!(["10.43.0.7"]));
            assert_eq!((new["spec"]["ipFamilies"].clone(), new["spec"]["ipFamilyPolicy"].clone()), (json!(["IPv4"]), json!("SingleStack")));
            assert_eq!(new["spec"]["ports"], json!([{"name": "a", "port": 8080}, {"name": "b", "port": 81, "nodePort": 30080}]));
            // An old client that sends only clusterIP.
            let mut old_client = svc(json!({"type": "ClusterIP", "clusterIP": "10.43.0.7", "ports": [{"port": 80}]}));
            prepare_update(&old, &mut old_client);
            assert_eq!(old_client["spec"]["clusterIPs"], json!(["10.43.0.7"]));
            // Nothing is carried into an ExternalName Service, nor out of one.
            let mut external = svc(json!({"type": "ExternalName", "externalName": "example.com"}));
            prepare_update(&old, &mut external);
            assert!(external["spec"].get("clusterIP").is_none() && external["spec"].get("ipFamilies").is_none());
        }

        #[test]
        fn external_name_services_show_no_internal_traffic_policy() {
            let mut s = svc(json!({"type": "ExternalName", "externalName": "example.com", "internalTrafficPolicy": "Cluster"}));
            drop_unread_fields(&mut s);
            assert!(s["spec"].get("internalTrafficPolicy").is_none());
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

//! Per-kind rules on top of the generic registry, as upstream's strategies
//! have them: what a new object starts with, what an update keeps, what
//! validation adds, and whether deletion waits.

use base64::Engine;
use serde_json::{json, Value};
use skiff_api::validation::{self, FieldError};
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
        if obj.get("type").is_none() {
            obj["type"] = json!("Opaque");
        }
    } else if is(def, "batch", "Job") && obj.pointer("/spec/manualSelector") != Some(&json!(true)) {
        select_own_pods(obj);
    } else if is(def, "apiextensions.k8s.io", "CustomResourceDefinition") {
        add_finalizer(obj, crate::crds::CLEANUP_FINALIZER);
    }
}

/// The rules upstream checks that matter to serving a CRD.
fn validate_crd(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let text = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or_default();
    let (group, plural) = (text("/spec/group"), text("/spec/names/plural"));
    let expected = format!("{plural}.{group}");
    if text("/metadata/name") != expected {
        errs.push(FieldError {
            field: "metadata.name".into(),
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {:?}: must be spec.names.plural+\".\"+spec.group", text("/metadata/name")),
        });
    }
    for (field, value) in [("spec.group", group), ("spec.names.plural", plural), ("spec.names.kind", text("/spec/names/kind"))] {
        if value.is_empty() {
            errs.push(validation::required(field, ""));
        }
    }
    if !matches!(text("/spec/scope"), "Namespaced" | "Cluster") {
        errs.push(FieldError {
            field: "spec.scope".into(),
            reason: "FieldValueNotSupported",
            message: format!("Unsupported value: {:?}: supported values: \"Cluster\", \"Namespaced\"", text("/spec/scope")),
        });
    }
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    if versions.iter().filter(|v| v["storage"] == true).count() != 1 {
        errs.push(FieldError {
            field: "spec.versions".into(),
            reason: "FieldValueInvalid",
            message: "Invalid value: []apiextensions.CustomResourceDefinitionVersion: must have exactly one version marked as storage version".into(),
        });
    }
    errs
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

/// What an update may not change.
pub fn validate_update(def: &ResourceDef, current: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if is(def, "", "Pod") {
        // Gates are only ever removed: a pod cannot be held back again.
        let old = scheduling_gates(current);
        if let Some(added) = scheduling_gates(new).into_iter().find(|g| !old.contains(g)) {
            errs.push(validation::forbidden("spec.schedulingGates", format!("only deletion is allowed, but found new scheduling gate '{added}'")));
        }
        errs.extend(pod_spec_update(&current["spec"], &new["spec"]));
    }
    if is(def, "", "Service") {
        let old = current.pointer("/spec/clusterIP").and_then(|v| v.as_str()).unwrap_or("");
        let now = new.pointer("/spec/clusterIP").and_then(|v| v.as_str()).unwrap_or("");
        if !old.is_empty() && old != now {
            errs.push(FieldError {
                field: "spec.clusterIPs[0]".into(),
                reason: "FieldValueInvalid",
                message: format!("Invalid value: {now:?}: may not change once set"),
            });
        }
    }
    if is(def, "scheduling.k8s.io", "PriorityClass") {
        for field in ["value", "preemptionPolicy"] {
            if current.get(field) != new.get(field) {
                errs.push(validation::forbidden(field, "may not be changed in an update."));
            }
        }
    }
    if (is(def, "", "ConfigMap") || is(def, "", "Secret")) && current.get("immutable") == Some(&json!(true)) {
        // Upstream's immutable ConfigMaps and Secrets: nothing but metadata changes.
        for field in ["immutable", "data", "binaryData", "type"] {
            if current.get(field) != new.get(field) && !(field == "type" && is(def, "", "ConfigMap")) {
                errs.push(validation::forbidden(field, "field is immutable when `immutable` is set"));
            }
        }
    }
    errs
}

/// Upstream's ValidatePodUpdate: of a running pod's spec, an update
/// changes only container images, activeDeadlineSeconds (set or lowered),
/// tolerations (added to, or their tolerationSeconds), a negative
/// terminationGracePeriodSeconds (to 1), scheduling gates (removed) and,
/// while the pod is gated, its nodeSelector and node affinity (narrowed:
/// see `gated_placement_update`).
fn pod_spec_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let count = |spec: &Value, list: &str| spec[list].as_array().map_or(0, Vec::len);
    if count(old, "containers") != count(new, "containers") {
        return vec![validation::forbidden("spec.containers", "pod updates may not add or remove containers")];
    }
    let mut errs = Vec::new();
    match (old["activeDeadlineSeconds"].as_i64(), &new["activeDeadlineSeconds"]) {
        (Some(_), Value::Null) => {
            errs.push(validation::invalid_value("spec.activeDeadlineSeconds", "\"null\"", "must not update from a positive integer to nil value"))
        }
        (Some(before), after) if after.as_i64().is_some_and(|after| after > before) => {
            errs.push(validation::invalid_value("spec.activeDeadlineSeconds", after, "must be less than or equal to previous value"))
        }
        _ => {}
    }
    // Each existing toleration is kept, but for its tolerationSeconds.
    let without_seconds = |t: &Value| {
        let mut t = t.clone();
        t.as_object_mut().map(|t| t.remove("tolerationSeconds"));
        t
    };
    let new_tolerations: Vec<Value> = new["tolerations"].as_array().into_iter().flatten().map(without_seconds).collect();
    if old["tolerations"].as_array().into_iter().flatten().any(|t| !new_tolerations.contains(&without_seconds(t))) {
        errs.push(validation::forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"));
    }

    // What is left once the changes allowed are undone must be unchanged.
    let mut munged = new.clone();
    for list in ["containers", "initContainers"] {
        if let (Some(before), Some(after)) = (old[list].as_array(), munged[list].as_array_mut()) {
            for (b, a) in before.iter().zip(after.iter_mut()) {
                a["image"] = b["image"].clone();
            }
        }
    }
    let gated = !old["schedulingGates"].as_array().is_none_or(Vec::is_empty);
    let mut kept = vec!["activeDeadlineSeconds", "tolerations", "schedulingGates"];
    if gated {
        errs.extend(gated_placement_update(old, new));
        kept.push("nodeSelector");
        // Of the affinity, only node affinity may change.
        let mut affinity = munged.get("affinity").and_then(Value::as_object).cloned().unwrap_or_default();
        match old.pointer("/affinity/nodeAffinity") {
            Some(before) => affinity.insert("nodeAffinity".into(), before.clone()),
            None => affinity.remove("nodeAffinity"),
        };
        if let Some(spec) = munged.as_object_mut() {
            match affinity.is_empty() && old.get("affinity").is_none() {
                true => spec.remove("affinity"),
                false => spec.insert("affinity".into(), Value::Object(affinity)),
            };
        }
    }
    let grace_to_one = old["terminationGracePeriodSeconds"].as_i64().is_some_and(|g| g < 0) && new["terminationGracePeriodSeconds"] == 1;
    if grace_to_one {
        kept.push("terminationGracePeriodSeconds");
    }
    for field in kept {
        match old.get(field) {
            Some(v) => munged[field] = v.clone(),
            None => {
                munged.as_object_mut().map(|m| m.remove(field));
            }
        }
    }
    let mut changed = Vec::new();
    differences("spec", old, &munged, &mut changed);
    if !changed.is_empty() {
        errs.push(validation::forbidden(
            "spec",
            format!(
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n{}",
                changed.join("\n")
            ),
        ));
    }
    errs
}

/// Upstream's rules for where a gated pod may go: nodeSelector entries
/// may be added but not changed or removed, and once there are required
/// node affinity terms, each may only gain expressions.
fn gated_placement_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let selector = |spec: &Value| spec["nodeSelector"].as_object().cloned().unwrap_or_default();
    let (before, after) = (selector(old), selector(new));
    if before.iter().any(|(k, v)| after.get(k) != Some(v)) {
        errs.push(validation::invalid_value("spec.nodeSelector", go_string_map(&after), "only additions to spec.nodeSelector are allowed (no mutations or deletions)"));
    }
    let terms = |spec: &Value| {
        let terms = spec.pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms");
        terms.and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let (before, after) = (terms(old), terms(new));
    let path = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms";
    if before.is_empty() {
        return errs;
    }
    if before.len() != after.len() {
        errs.push(validation::invalid_value(path, Value::from(after), "no additions/deletions to non-empty NodeSelectorTerms list are allowed"));
        return errs;
    }
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let only_added = |list: &str| {
            let (b, a) = (b[list].as_array().map_or(&[][..], Vec::as_slice), a[list].as_array().map_or(&[][..], Vec::as_slice));
            a.starts_with(b)
        };
        if !only_added("matchExpressions") || !only_added("matchFields") {
            errs.push(validation::invalid_value(&format!("{path}[{i}]"), a, "only additions are allowed (no mutations or deletions)"));
        }
    }
    errs
}

/// A string map as Go's `%#v` prints it, which is how upstream shows one
/// in a field error.
fn go_string_map(map: &serde_json::Map<String, Value>) -> String {
    let entries: Vec<String> = map.iter().map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or_default())).collect();
    format!("map[string]string{{{}}}", entries.join(", "))
}

/// Upstream's ValidatePodEphemeralContainersUpdate: ephemeral containers
/// are added, never removed or changed.
pub fn ephemeral_containers_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let named = |name: &Value| new["ephemeralContainers"].as_array().into_iter().flatten().find(|c| &c["name"] == name);
    let mut errs = Vec::new();
    for before in old["ephemeralContainers"].as_array().into_iter().flatten() {
        let name = before["name"].as_str().unwrap_or_default();
        let message = match named(&before["name"]) {
            None => format!("existing ephemeral containers {name:?} may not be removed"),
            Some(after) if after != before => {
                let mut changed = Vec::new();
                differences(&format!("spec.ephemeralContainers[{name}]"), before, after, &mut changed);
                format!("existing ephemeral containers {name:?} may not be changed\n{}", changed.join("\n"))
            }
            Some(_) => continue,
        };
        errs.push(validation::forbidden("spec.ephemeralContainers", message));
    }
    errs
}

/// Where two values differ, as `path: old → new` lines.
fn differences(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                differences(&format!("{path}.{k}"), a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ if old != new => out.push(format!("  {path}: {old} → {new}")),
        _ => {}
    }
}

pub fn validate(def: &ResourceDef, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(custom) = &def.custom {
        errs.extend(custom.validate(obj));
    }
    if is(def, "apiextensions.k8s.io", "CustomResourceDefinition") {
        errs.extend(validate_crd(obj));
    }
    if is(def, "", "ConfigMap") || is(def, "", "Secret") {
        for field in ["data", "binaryData"] {
            if let Some(data) = obj.get(field).and_then(|d| d.as_object()) {
                for key in data.keys() {
                    if !valid_config_key(key) {
                        errs.push(FieldError {
                            field: format!("{field}[{key}]"),
                            reason: "FieldValueInvalid",
                            message: format!(
                                "Invalid value: {key:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
                            ),
                        });
                    }
                }
            }
        }
    }
    if is(def, "", "Pod") {
        let containers = obj.pointer("/spec/containers").and_then(|c| c.as_array());
        if containers.is_none_or(|c| c.is_empty()) {
            errs.push(validation::required("spec.containers", ""));
        }
        for (i, c) in containers.into_iter().flatten().enumerate() {
            if c.get("name").and_then(|n| n.as_str()).is_none_or(str::is_empty) {
                errs.push(validation::required(&format!("spec.containers[{i}].name"), ""));
            }
            if c.get("image").and_then(|n| n.as_str()).is_none_or(str::is_empty) {
                errs.push(validation::required(&format!("spec.containers[{i}].image"), ""));
            }
        }
        let gates = scheduling_gates(obj);
        for (i, gate) in gates.iter().enumerate() {
            let field = format!("spec.schedulingGates[{i}].name");
            if gates[..i].contains(gate) {
                errs.push(FieldError { field, reason: "FieldValueDuplicate", message: format!("Duplicate value: {gate:?}") });
            } else if let Err(why) = validation::qualified_name(gate) {
                errs.push(FieldError { field, reason: "FieldValueInvalid", message: format!("Invalid value: {gate:?}: {why}") });
            }
        }
        if !gates.is_empty() && obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
            errs.push(validation::forbidden("spec.nodeName", "cannot be set until all schedulingGates have been cleared"));
        }
    }
    errs
}

fn valid_config_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 253 && key != "." && key != ".." && key.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
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
    fn gated_pods_may_only_narrow_where_they_go() {
        let (a, b) = (json!({"key": "a", "operator": "Exists"}), json!({"key": "b", "operator": "Exists"}));
        let spec = |selector: Value, terms: Value| {
            json!({"schedulingGates": [{"name": "g"}], "containers": [{"name": "c", "image": "i"}], "nodeSelector": selector,
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}})
        };
        let old = spec(json!({"x": "1"}), json!([{"matchExpressions": [a]}]));
        let messages = |new: &Value| pod_spec_update(&old, new).into_iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>();
        assert_eq!(messages(&spec(json!({"x": "1", "y": "2"}), json!([{"matchExpressions": [a, b]}]))), Vec::<String>::new(), "additions");
        assert_eq!(
            messages(&spec(json!({"x": "2"}), json!([{"matchExpressions": [a]}]))),
            [r#"spec.nodeSelector: Invalid value: map[string]string{"x":"2"}: only additions to spec.nodeSelector are allowed (no mutations or deletions)"#]
        );
        let terms = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms";
        let replaced = messages(&spec(json!({"x": "1"}), json!([{"matchExpressions": [b]}])));
        assert_eq!(replaced.len(), 1);
        assert!(replaced[0].starts_with(&format!("{terms}[0]: Invalid value: ")) && replaced[0].ends_with("only additions are allowed (no mutations or deletions)"), "{replaced:?}");
        let added = messages(&spec(json!({"x": "1"}), json!([{"matchExpressions": [a]}, {"matchExpressions": [b]}])));
        assert!(added[0].ends_with("no additions/deletions to non-empty NodeSelectorTerms list are allowed"), "{added:?}");
        // Other affinity stays fixed, and once ungated so does all of it.
        let mut pod_affinity = old.clone();
        pod_affinity["affinity"]["podAffinity"] = json!({});
        assert!(messages(&pod_affinity)[0].starts_with("spec: Forbidden: pod updates may not change fields"));
        let mut ungated = old.clone();
        ungated.as_object_mut().unwrap().remove("schedulingGates");
        let mut added = ungated.clone();
        added["nodeSelector"]["y"] = json!("2");
        assert!(pod_spec_update(&ungated, &added)[0].message.starts_with("Forbidden: pod updates may not change fields"));
        // Without node affinity before, any may be set.
        let mut bare = old.clone();
        bare.as_object_mut().unwrap().remove("affinity");
        assert_eq!(pod_spec_update(&bare, &old).len(), 0);
    }

    #[test]
    fn string_data_folds_into_data() {
        let mut s = json!({"stringData": {"user": "admin"}, "data": {"x": "eA=="}});
        fold_string_data(&mut s);
        assert_eq!(s, json!({"data": {"x": "eA==", "user": "YWRtaW4="}}));
    }
}

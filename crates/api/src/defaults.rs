//! Upstream's defaulting (the `SetDefaults_*` functions of each API group):
//! the values a field has when the client leaves it out. Applied to every
//! written object, as upstream applies them when decoding a request.

use serde_json::{json, Map, Value};

use crate::ResourceDef;

/// Sets `obj[key]` to `value` unless present (and not null).
fn or(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        match map.get(key) {
            Some(v) if !v.is_null() => {}
            _ => {
                map.insert(key.to_string(), value);
            }
        }
    }
}

/// The object at `obj[key]`, created empty if absent.
fn child<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    or(obj, key, Value::Object(Map::new()));
    &mut obj[key]
}

fn each<'a>(obj: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    obj.get_mut(key).and_then(|v| v.as_array_mut()).into_iter().flatten()
}

pub fn apply(def: &ResourceDef, obj: &mut Value) {
    let spec = match obj.get_mut("spec") {
        Some(s) if s.is_object() => s,
        _ => return,
    };
    match (def.group, def.kind) {
        ("", "Pod") => pod_spec(spec),
        ("", "PodTemplate") => pod_template(obj.get_mut("template")),
        ("", "ReplicationController") => {
            or(spec, "replicas", json!(1));
            pod_template(spec.get_mut("template"));
        }
        ("apps", "Deployment") => {
            or(spec, "replicas", json!(1));
            or(spec, "revisionHistoryLimit", json!(10));
            or(spec, "progressDeadlineSeconds", json!(600));
            if let Some(rolling) = rolling_update(spec, "strategy") {
                or(rolling, "maxUnavailable", json!("25%"));
                or(rolling, "maxSurge", json!("25%"));
            }
            pod_template(spec.get_mut("template"));
        }
        ("apps", "ReplicaSet") => {
            or(spec, "replicas", json!(1));
            pod_template(spec.get_mut("template"));
        }
        ("apps", "StatefulSet") => {
            or(spec, "replicas", json!(1));
            or(spec, "podManagementPolicy", json!("OrderedReady"));
            or(spec, "revisionHistoryLimit", json!(10));
            if let Some(rolling) = rolling_update(spec, "updateStrategy") {
                or(rolling, "partition", json!(0));
            }
            let retention = child(spec, "persistentVolumeClaimRetentionPolicy");
            or(retention, "whenDeleted", json!("Retain"));
            or(retention, "whenScaled", json!("Retain"));
            pod_template(spec.get_mut("template"));
        }
        ("apps", "DaemonSet") => {
            or(spec, "revisionHistoryLimit", json!(10));
            if let Some(rolling) = rolling_update(spec, "updateStrategy") {
                or(rolling, "maxUnavailable", json!(1));
                or(rolling, "maxSurge", json!(0));
            }
            pod_template(spec.get_mut("template"));
        }
        ("batch", "Job") => job_spec(spec),
        ("batch", "CronJob") => {
            or(spec, "concurrencyPolicy", json!("Allow"));
            or(spec, "suspend", json!(false));
            or(spec, "successfulJobsHistoryLimit", json!(3));
            or(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(job) = spec.pointer_mut("/jobTemplate/spec") {
                job_spec(job);
            }
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            or(spec, "minReplicas", json!(1));
            if def.version == "v2" {
                hpa_v2_spec(spec);
            }
        }
        ("", "PersistentVolume") => {
            or(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            or(spec, "volumeMode", json!("Filesystem"));
        }
        ("", "PersistentVolumeClaim") => or(spec, "volumeMode", json!("Filesystem")),
        _ => {}
    }
}

/// Upstream's autoscaling/v2 defaults: 80% CPU when no metric is given;
/// a behavior, when given, is completed with the default rules.
fn hpa_v2_spec(spec: &mut Value) {
    if spec.get("metrics").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        spec["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]);
    }
    let Some(behavior) = spec.get_mut("behavior").filter(|b| b.is_object()) else { return };
    let rules = [
        ("scaleUp", 0, json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}])),
        ("scaleDown", 300, json!([{"type": "Percent", "value": 100, "periodSeconds": 15}])),
    ];
    for (direction, window, policies) in rules {
        let rules = child(behavior, direction);
        or(rules, "stabilizationWindowSeconds", json!(window));
        or(rules, "selectPolicy", json!("Max"));
        or(rules, "policies", policies);
    }
}

/// Defaults a workload's update strategy (`spec[field]`) to RollingUpdate
/// and returns its `rollingUpdate` settings when it is one, for the kind's
/// own defaults.
fn rolling_update<'a>(spec: &'a mut Value, field: &str) -> Option<&'a mut Value> {
    let strategy = child(spec, field);
    or(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] != "RollingUpdate" {
        return None;
    }
    Some(child(strategy, "rollingUpdate"))
}

fn job_spec(spec: &mut Value) {
    if spec.get("completions").is_none_or(Value::is_null) && spec.get("parallelism").is_none_or(Value::is_null) {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    }
    or(spec, "parallelism", json!(1));
    or(spec, "backoffLimit", json!(6));
    or(spec, "completionMode", json!("NonIndexed"));
    or(spec, "suspend", json!(false));
    or(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    pod_template(spec.get_mut("template"));
}

fn pod_template(template: Option<&mut Value>) {
    if let Some(spec) = template.and_then(|t| t.get_mut("spec")).filter(|s| s.is_object()) {
        pod_spec(spec);
    }
}

fn pod_spec(spec: &mut Value) {
    or(spec, "restartPolicy", json!("Always"));
    or(spec, "terminationGracePeriodSeconds", json!(30));
    or(spec, "dnsPolicy", json!("ClusterFirst"));
    or(spec, "securityContext", json!({}));
    or(spec, "schedulerName", json!("default-scheduler"));
    or(spec, "enableServiceLinks", json!(true));
    for key in ["containers", "initContainers"] {
        for c in each(spec, key) {
            container(c);
        }
    }
    for v in each(spec, "volumes") {
        for (source, mode) in [("configMap", "defaultMode"), ("secret", "defaultMode"), ("downwardAPI", "defaultMode"), ("projected", "defaultMode")] {
            if let Some(s) = v.get_mut(source).filter(|s| s.is_object()) {
                or(s, mode, json!(420));
            }
        }
    }
}

fn container(c: &mut Value) {
    let image = c.get("image").and_then(|i| i.as_str()).unwrap_or("").to_string();
    or(c, "imagePullPolicy", json!(pull_policy(&image)));
    or(c, "terminationMessagePath", json!("/dev/termination-log"));
    or(c, "terminationMessagePolicy", json!("File"));
    or(c, "resources", json!({}));
    for p in each(c, "ports") {
        or(p, "protocol", json!("TCP"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            or(p, "timeoutSeconds", json!(1));
            or(p, "periodSeconds", json!(10));
            or(p, "successThreshold", json!(1));
            or(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").filter(|h| h.is_object()) {
                or(h, "scheme", json!("HTTP"));
            }
        }
    }
}

/// Always for `:latest` or no tag, IfNotPresent otherwise (digests too).
fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let name = image.rsplit('/').next().unwrap_or(image);
    match name.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    #[test]
    fn deployment_defaults() {
        let mut d = json!({"spec": {"selector": {}, "template": {"spec": {"containers": [
            {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}], "readinessProbe": {"httpGet": {"port": 80}}},
            {"name": "b", "image": "registry:5000/app:1.2"}]}}}});
        apply(find("apps", "v1", "deployments").unwrap(), &mut d);
        assert_eq!(d["spec"]["strategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}));
        assert_eq!(d["spec"]["replicas"], 1);
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["containers"][1]["imagePullPolicy"], "IfNotPresent", "a registry port is not a tag");
        assert_eq!(pod["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(pod["containers"][0]["readinessProbe"]["periodSeconds"], 10);
    }

    #[test]
    fn given_values_are_kept() {
        let mut d = json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}, "template": {"spec": {"restartPolicy": "Never", "containers": []}}}});
        apply(find("apps", "v1", "deployments").unwrap(), &mut d);
        assert_eq!(d["spec"]["replicas"], 0);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Never");
    }
}

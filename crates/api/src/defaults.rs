//! Upstream's defaulting (the `SetDefaults_*` functions of each API group):
//! the values a field has when the client leaves it out. Applied to every
//! written object, as upstream applies them when decoding a request.

use serde_json::{json, Map, Value};

use crate::ResourceDef;

/// Sets `obj[key]` to `value` unless present (not null, and not an empty
/// string: upstream's string fields are plain strings, "" is unset).
fn or(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        match map.get(key) {
            Some(v) if !v.is_null() && v != "" => {}
            _ => {
                map.insert(key.to_string(), value);
            }
        }
    }
}

/// As `or`, for upstream's plain integer fields, where 0 is unset too.
fn or_nonzero(obj: &mut Value, key: &str, value: i64) {
    if obj.get(key).is_some_and(|v| v == 0) {
        obj[key] = json!(value);
    }
    or(obj, key, json!(value));
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
    if !obj.is_object() {
        return;
    }
    match (def.group, def.kind) {
        ("", "PodTemplate") => pod_template(obj.get_mut("template")),
        ("", "Secret") => or(obj, "type", json!("Opaque")),
        ("", "Endpoints") => {
            for subset in each(obj, "subsets") {
                for port in each(subset, "ports") {
                    or(port, "protocol", json!("TCP"));
                }
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            for port in each(obj, "ports") {
                or(port, "name", json!(""));
                or(port, "protocol", json!("TCP"));
            }
        }
        ("storage.k8s.io", "StorageClass") => {
            or(obj, "reclaimPolicy", json!("Delete"));
            or(obj, "volumeBindingMode", json!("Immediate"));
        }
        ("scheduling.k8s.io", "PriorityClass") => or(obj, "preemptionPolicy", json!("PreemptLowerPriority")),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            const RBAC: &str = "rbac.authorization.k8s.io";
            or(child(obj, "roleRef"), "apiGroup", json!(RBAC));
            for subject in each(obj, "subjects") {
                if matches!(subject["kind"].as_str(), Some("User" | "Group")) {
                    or(subject, "apiGroup", json!(RBAC));
                }
            }
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration") => {
            let mutating = def.kind.starts_with("Mutating");
            for hook in each(obj, "webhooks") {
                webhook(hook, mutating);
            }
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            or(child(obj, "spec"), "failurePolicy", json!("Fail"));
            if let Some(m) = obj.pointer_mut("/spec/matchConstraints").filter(|m| m.is_object()) {
                match_resources(m);
            }
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            if let Some(m) = obj.pointer_mut("/spec/matchResources").filter(|m| m.is_object()) {
                match_resources(m);
            }
        }
        _ => {
            if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
                spec_defaults(def, spec);
            }
        }
    }
}

/// Upstream's `SetDefaults_Service`.
fn service_spec(spec: &mut Value) {
    or(spec, "sessionAffinity", json!("None"));
    match spec["sessionAffinity"].as_str() {
        Some("None") => {
            spec.as_object_mut().map(|s| s.remove("sessionAffinityConfig"));
        }
        Some("ClientIP") => {
            let timeout = spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds").filter(|t| !t.is_null());
            if timeout.is_none() {
                spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": 10800}});
            }
        }
        _ => {}
    }
    or(spec, "type", json!("ClusterIP"));
    for port in each(spec, "ports") {
        or(port, "protocol", json!("TCP"));
        if port.get("targetPort").is_none_or(|t| t.is_null() || t == 0 || t == "") {
            port["targetPort"] = port.get("port").cloned().unwrap_or(json!(0));
        }
    }
    let ty = spec["type"].as_str().unwrap_or_default().to_string();
    let external_ips = spec.get("externalIPs").and_then(Value::as_array).is_some_and(|ips| !ips.is_empty());
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") || (ty == "ClusterIP" && external_ips) {
        or(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        or(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        or(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

/// Upstream's admissionregistration/v1 webhook defaults.
fn webhook(hook: &mut Value, mutating: bool) {
    or(hook, "failurePolicy", json!("Fail"));
    or(hook, "matchPolicy", json!("Equivalent"));
    or(hook, "namespaceSelector", json!({}));
    or(hook, "objectSelector", json!({}));
    or(hook, "timeoutSeconds", json!(10));
    if mutating {
        or(hook, "reinvocationPolicy", json!("Never"));
    }
    for rule in each(hook, "rules") {
        or(rule, "scope", json!("*"));
    }
    if let Some(service) = hook.pointer_mut("/clientConfig/service").filter(|s| s.is_object()) {
        or(service, "port", json!(443));
    }
}

fn match_resources(m: &mut Value) {
    or(m, "matchPolicy", json!("Equivalent"));
    or(m, "namespaceSelector", json!({}));
    or(m, "objectSelector", json!({}));
}

/// Defaults of the kinds that keep them in `spec`.
fn spec_defaults(def: &ResourceDef, spec: &mut Value) {
    match (def.group, def.kind) {
        ("", "Pod") => pod_spec(spec),
        ("", "Service") => service_spec(spec),
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
        (crate::appsafe::GROUP, "AppGroup") => or(spec, "mode", json!(crate::appsafe::DISCOVER)),
        ("networking.k8s.io", "NetworkPolicy") => {
            for rule in ["ingress", "egress"] {
                for r in each(spec, rule) {
                    for port in each(r, "ports") {
                        or(port, "protocol", json!("TCP"));
                    }
                }
            }
            if spec.get("policyTypes").and_then(Value::as_array).is_none_or(Vec::is_empty) {
                let egress = spec.get("egress").and_then(Value::as_array).is_some_and(|e| !e.is_empty());
                spec["policyTypes"] = if egress { json!(["Ingress", "Egress"]) } else { json!(["Ingress"]) };
            }
        }
        ("networking.k8s.io", "IngressClass") => {
            if let Some(parameters) = spec.get_mut("parameters").filter(|p| p.is_object()) {
                or(parameters, "scope", json!("Cluster"));
            }
        }
        ("storage.k8s.io", "CSIDriver") => {
            or(spec, "attachRequired", json!(true));
            or(spec, "podInfoOnMount", json!(false));
            or(spec, "storageCapacity", json!(false));
            or(spec, "requiresRepublish", json!(false));
            or(spec, "seLinuxMount", json!(false));
            or(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
            or(spec, "volumeLifecycleModes", json!(["Persistent"]));
        }
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => or_nonzero(spec, "matchingPrecedence", 1000),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => priority_level(spec),
        _ => {}
    }
}

/// Upstream's flowcontrol/v1 priority level defaults.
fn priority_level(spec: &mut Value) {
    if let Some(exempt) = spec.get_mut("exempt").filter(|e| e.is_object()) {
        or(exempt, "nominalConcurrencyShares", json!(0));
        or(exempt, "lendablePercent", json!(0));
    }
    if let Some(limited) = spec.get_mut("limited").filter(|l| l.is_object()) {
        or(limited, "nominalConcurrencyShares", json!(30));
        or(limited, "lendablePercent", json!(0));
        if let Some(queuing) = limited.pointer_mut("/limitResponse/queuing").filter(|q| q.is_object()) {
            or_nonzero(queuing, "queues", 64);
            or_nonzero(queuing, "handSize", 8);
            or_nonzero(queuing, "queueLengthLimit", 50);
        }
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
    let host_network = spec.get("hostNetwork") == Some(&json!(true));
    for key in ["containers", "initContainers"] {
        for c in each(spec, key) {
            container(c, host_network);
        }
    }
    for v in each(spec, "volumes") {
        for (source, mode) in [("configMap", "defaultMode"), ("secret", "defaultMode"), ("downwardAPI", "defaultMode"), ("projected", "defaultMode")] {
            if let Some(s) = v.get_mut(source).filter(|s| s.is_object()) {
                or(s, mode, json!(420));
            }
        }
        if let Some(api) = v.get_mut("downwardAPI").filter(|s| s.is_object()) {
            for item in each(api, "items") {
                if let Some(field) = item.get_mut("fieldRef").filter(|f| f.is_object()) {
                    or(field, "apiVersion", json!("v1"));
                }
            }
        }
    }
}

fn container(c: &mut Value, host_network: bool) {
    let image = c.get("image").and_then(|i| i.as_str()).unwrap_or("").to_string();
    or(c, "imagePullPolicy", json!(pull_policy(&image)));
    or(c, "terminationMessagePath", json!("/dev/termination-log"));
    or(c, "terminationMessagePolicy", json!("File"));
    or(c, "resources", json!({}));
    // A limit without a request requests the limit (SetDefaults_Pod).
    if let Some(limits) = c.pointer("/resources/limits").and_then(Value::as_object).cloned() {
        let requests = child(&mut c["resources"], "requests");
        for (name, limit) in limits {
            or(requests, &name, limit);
        }
    }
    for p in each(c, "ports") {
        or(p, "protocol", json!("TCP"));
        if host_network {
            // On the host's network a container port is a host port.
            let port = p.get("containerPort").cloned().unwrap_or(Value::Null);
            or(p, "hostPort", port);
        }
    }
    for env in each(c, "env") {
        if let Some(field) = env.pointer_mut("/valueFrom/fieldRef").filter(|f| f.is_object()) {
            or(field, "apiVersion", json!("v1"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            or_nonzero(p, "timeoutSeconds", 1);
            or_nonzero(p, "periodSeconds", 10);
            or_nonzero(p, "successThreshold", 1);
            or_nonzero(p, "failureThreshold", 3);
            http_get(p);
        }
    }
    if let Some(lifecycle) = c.get_mut("lifecycle").filter(|l| l.is_object()) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lifecycle.get_mut(hook).filter(|h| h.is_object()) {
                http_get(h);
            }
        }
    }
}

fn http_get(handler: &mut Value) {
    if let Some(h) = handler.get_mut("httpGet").filter(|h| h.is_object()) {
        or(h, "path", json!("/"));
        or(h, "scheme", json!("HTTP"));
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
    fn unset_means_empty_too_and_limits_are_requested() {
        let mut pod = json!({"spec": {"restartPolicy": "", "hostNetwork": true, "containers": [{"name": "a", "image": "x:1",
            "resources": {"limits": {"cpu": "1"}}, "ports": [{"containerPort": 8080}], "livenessProbe": {"periodSeconds": 0, "httpGet": {"port": 80}}}]}});
        apply(find("", "v1", "pods").unwrap(), &mut pod);
        let c = &pod["spec"]["containers"][0];
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(c["resources"]["requests"], json!({"cpu": "1"}));
        assert_eq!(c["ports"][0]["hostPort"], 8080);
        assert_eq!((c["livenessProbe"]["periodSeconds"].as_i64(), c["livenessProbe"]["httpGet"]["path"].as_str()), (Some(10), Some("/")));
        let mut template = json!({"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}});
        apply(find("", "v1", "podtemplates").unwrap(), &mut template);
        assert_eq!(template["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        let mut policy = json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}});
        apply(find("networking.k8s.io", "v1", "networkpolicies").unwrap(), &mut policy);
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(policy["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
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

//! autoscaling/v2: HorizontalPodAutoscaler, as upstream's
//! `pkg/apis/autoscaling/validation` (Kubernetes 1.32) checks it. Skiff
//! stores v2; autoscaling/v1 objects are converted before they get here, so
//! their errors name v2's fields, as upstream's (which validates its
//! internal version, shaped as v2).

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricIdentifier, MetricSpec, MetricTarget,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::go::go_quantity;
use super::resources::{container_resource_name, Shown};
use super::{dns1123_label, name_by, non_negative, path_segment, quantity_error, Errors, Op, Path};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    if kind != "HorizontalPodAutoscaler" {
        return None;
    }
    Some(match op {
        // The lower bound of minReplicas depends on the old object.
        Op::Update { .. } => op.run(|_: &HorizontalPodAutoscaler| vec![], hpa_update, super::nothing),
        _ => op.run(hpa, super::nothing, hpa_status),
    })
}

/// Upstream's `MaxPeriodSeconds` and `MaxStabilizationWindowSeconds`.
const MAX_PERIOD_SECONDS: i32 = 1800;
const MAX_STABILIZATION_WINDOW_SECONDS: i32 = 3600;

/// Upstream's `ValidateHorizontalPodAutoscaler`, with the HPAScaleToZero
/// gate off (its default): at least one replica.
fn hpa(hpa: &HorizontalPodAutoscaler) -> Errors {
    hpa_spec(&hpa.spec.clone().unwrap_or_default(), &Path::new("spec"), 1)
}

/// Upstream's `ValidateHorizontalPodAutoscalerUpdate`: as a create, but an
/// autoscaler already at minReplicas 0 may stay there.
fn hpa_update(new: &HorizontalPodAutoscaler, old: &HorizontalPodAutoscaler) -> Errors {
    let lower = if old.spec.as_ref().and_then(|s| s.min_replicas) == Some(0) { 0 } else { 1 };
    hpa_spec(&new.spec.clone().unwrap_or_default(), &Path::new("spec"), lower)
}

/// Upstream's `ValidateHorizontalPodAutoscalerStatusUpdate`.
fn hpa_status(new: &HorizontalPodAutoscaler, _old: &HorizontalPodAutoscaler) -> Errors {
    let status = new.status.clone().unwrap_or_default();
    let path = Path::new("status");
    let mut errs = non_negative(i64::from(status.current_replicas.unwrap_or_default()), &path.child("currentReplicas"));
    errs.extend(non_negative(i64::from(status.desired_replicas), &path.child("desiredReplicas")));
    errs
}

fn hpa_spec(spec: &HorizontalPodAutoscalerSpec, path: &Path, min_replicas_lower_bound: i32) -> Errors {
    let mut errs = Vec::new();
    if let Some(min) = spec.min_replicas.filter(|m| *m < min_replicas_lower_bound) {
        errs.push(path.child("minReplicas").invalid(min, &format!("must be greater than or equal to {min_replicas_lower_bound}")));
    }
    if spec.max_replicas < 1 {
        errs.push(path.child("maxReplicas").invalid(spec.max_replicas, "must be greater than 0"));
    }
    if spec.min_replicas.is_some_and(|min| spec.max_replicas < min) {
        errs.push(path.child("maxReplicas").invalid(spec.max_replicas, "must be greater than or equal to `minReplicas`"));
    }
    errs.extend(cross_version_object_reference(&spec.scale_target_ref, &path.child("scaleTargetRef")));
    errs.extend(metrics(spec.metrics.as_deref().unwrap_or_default(), &path.child("metrics"), spec.min_replicas));
    if let Some(behavior) = &spec.behavior {
        let at = path.child("behavior");
        if let Some(rules) = &behavior.scale_up {
            errs.extend(scaling_rules(rules, &at.child("scaleUp")));
        }
        if let Some(rules) = &behavior.scale_down {
            errs.extend(scaling_rules(rules, &at.child("scaleDown")));
        }
    }
    errs
}

/// Upstream's `ValidateCrossVersionObjectReference`.
fn cross_version_object_reference(r: &CrossVersionObjectReference, path: &Path) -> Errors {
    let mut errs = Vec::new();
    for (value, field) in [(&r.kind, "kind"), (&r.name, "name")] {
        if value.is_empty() {
            errs.push(path.child(field).required(""));
        } else {
            errs.extend(path_segment(value, &path.child(field)));
        }
    }
    errs
}

fn metrics(metrics: &[MetricSpec], path: &Path, min_replicas: Option<i32>) -> Errors {
    let mut errs = Vec::new();
    for (i, metric) in metrics.iter().enumerate() {
        errs.extend(metric_spec(metric, &path.index(i)));
    }
    let object_or_external = metrics.iter().any(|m| m.type_ == "Object" || m.type_ == "External");
    if min_replicas == Some(0) && !object_or_external {
        errs.push(path.forbidden("must specify at least one Object or External metric to support scaling to zero replicas"));
    }
    errs
}

const METRIC_SOURCE_TYPES: [&str; 5] = ["ContainerResource", "External", "Object", "Pods", "Resource"];

/// Upstream's `validateMetricSpec`: a known type and exactly its source.
/// As upstream, an unknown type is reported twice (the set check, then the
/// switch's default).
fn metric_spec(spec: &MetricSpec, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if spec.type_.is_empty() {
        errs.push(path.child("type").required("must specify a metric source type"));
    }
    if !METRIC_SOURCE_TYPES.contains(&spec.type_.as_str()) {
        errs.push(path.child("type").not_supported(&spec.type_, &METRIC_SOURCE_TYPES));
    }
    // Only the first source present is checked, in upstream's order.
    let mut present: Vec<&str> = Vec::new();
    if let Some(src) = &spec.object {
        present.push("object");
        let at = path.child("object");
        errs.extend(cross_version_object_reference(&src.described_object, &at.child("describedObject")));
        errs.extend(metric_identifier(&src.metric, &at.child("metric")));
        errs.extend(metric_target(&src.target, &at.child("target")));
        if src.target.value.is_none() && src.target.average_value.is_none() {
            errs.push(at.child("target").child("averageValue").required("must set either a target value or averageValue"));
        }
    }
    if let Some(src) = &spec.external {
        present.push("external");
        if present.len() == 1 {
            let at = path.child("external");
            errs.extend(metric_identifier(&src.metric, &at.child("metric")));
            errs.extend(metric_target(&src.target, &at.child("target")));
            if src.target.value.is_none() && src.target.average_value.is_none() {
                errs.push(at.child("target").child("averageValue").required("must set either a target value for metric or a per-pod target"));
            }
            if src.target.value.is_some() && src.target.average_value.is_some() {
                errs.push(at.child("target").child("value").forbidden("may not set both a target value for metric and a per-pod target"));
            }
        }
    }
    if let Some(src) = &spec.pods {
        present.push("pods");
        if present.len() == 1 {
            let at = path.child("pods");
            errs.extend(metric_identifier(&src.metric, &at.child("metric")));
            errs.extend(metric_target(&src.target, &at.child("target")));
            if src.target.average_value.is_none() {
                errs.push(at.child("target").child("averageValue").required("must specify a positive target averageValue"));
            }
        }
    }
    if let Some(src) = &spec.resource {
        present.push("resource");
        if present.len() == 1 {
            let at = path.child("resource");
            if src.name.is_empty() {
                errs.push(at.child("name").required("must specify a resource name"));
            }
            errs.extend(metric_target(&src.target, &at.child("target")));
            errs.extend(utilization_or_value(&src.target, &at.child("target")));
        }
    }
    if let Some(src) = &spec.container_resource {
        present.push("containerResource");
        if present.len() == 1 {
            let at = path.child("containerResource");
            if src.name.is_empty() {
                errs.push(at.child("name").required("must specify a resource name"));
            } else {
                errs.extend(container_resource_name(&src.name, Shown::Quoted, &at.child("name")));
            }
            if src.container.is_empty() {
                errs.push(at.child("container").required("must specify a container"));
            } else {
                errs.extend(name_by(dns1123_label, &src.container, &at.child("container")));
            }
            errs.extend(metric_target(&src.target, &at.child("target")));
            errs.extend(utilization_or_value(&src.target, &at.child("target")));
        }
    }
    let expected = match spec.type_.as_str() {
        "Object" => Some(("object", spec.object.is_some())),
        "Pods" => Some(("pods", spec.pods.is_some())),
        "Resource" => Some(("resource", spec.resource.is_some())),
        "External" => Some(("external", spec.external.is_some())),
        "ContainerResource" => Some(("containerResource", spec.container_resource.is_some())),
        _ => None,
    };
    match expected {
        Some((field, set)) => {
            if !set {
                errs.push(path.child(field).required("must populate information for the given metric source"));
            }
        }
        None => errs.push(path.child("type").not_supported(&spec.type_, &METRIC_SOURCE_TYPES)),
    }
    if present.len() != 1 {
        let expected_field = expected.map(|(f, _)| f);
        let mut others: Vec<&str> = present.into_iter().filter(|f| Some(*f) != expected_field).collect();
        others.sort_unstable();
        for field in others {
            errs.push(path.child(field).forbidden("must populate the given metric source only"));
        }
    }
    errs
}

/// A Resource or ContainerResource target: a utilization or an average
/// value, not both.
fn utilization_or_value(target: &MetricTarget, path: &Path) -> Errors {
    match (&target.average_utilization, &target.average_value) {
        (None, None) => vec![path.child("averageUtilization").required("must set either a target raw value or a target utilization")],
        (Some(_), Some(_)) => vec![path.child("averageValue").forbidden("may not set both a target raw value and a target utilization")],
        _ => vec![],
    }
}

/// Upstream's `validateMetricIdentifier` (the selector is not checked).
fn metric_identifier(id: &MetricIdentifier, path: &Path) -> Errors {
    if id.name.is_empty() {
        return vec![path.child("name").required("must specify a metric name")];
    }
    path_segment(&id.name, &path.child("name"))
}

/// Upstream's `validateMetricTarget`.
fn metric_target(target: &MetricTarget, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if target.type_.is_empty() {
        errs.push(path.child("type").required("must specify a metric target type"));
    }
    if !matches!(target.type_.as_str(), "Utilization" | "Value" | "AverageValue") {
        errs.push(path.child("type").invalid(&target.type_, "must be either Utilization, Value, or AverageValue"));
    }
    for (value, field) in [(&target.value, "value"), (&target.average_value, "averageValue")] {
        if let Some(q) = value {
            errs.extend(sign_positive(q, &path.child(field)));
        }
    }
    if let Some(u) = target.average_utilization.filter(|u| *u < 1) {
        errs.push(path.child("averageUtilization").invalid(u, "must be greater than 0"));
    }
    errs
}

/// A metric target's `Sign() != 1` → "must be positive" (not core's
/// `ValidatePositiveQuantityValue`: other message, value shown as Go's
/// structure). Upstream refuses a malformed quantity when decoding the
/// request; here it is reported on its field.
fn sign_positive(q: &Quantity, path: &Path) -> Errors {
    let text = q.0.trim();
    if let Some(why) = quantity_error(text) {
        return vec![path.invalid(text, why)];
    }
    let negative = text.starts_with('-');
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let number = &unsigned[..unsigned.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(unsigned.len())];
    let zero = number.bytes().all(|b| b == b'0' || b == b'.');
    if zero || negative {
        vec![path.invalid(go_quantity(text), "must be positive")]
    } else {
        vec![]
    }
}

const SELECT_POLICIES: [&str; 3] = ["Disabled", "Max", "Min"];
const POLICY_TYPES: [&str; 2] = ["Percent", "Pods"];

/// Upstream's `validateScalingRules` and `validateScalingPolicy`. Skiff
/// fills in a given behavior's missing rules before this runs, as upstream.
fn scaling_rules(rules: &HPAScalingRules, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if let Some(window) = rules.stabilization_window_seconds {
        let at = path.child("stabilizationWindowSeconds");
        if window < 0 {
            errs.push(at.invalid(window, "must be greater than or equal to zero"));
        }
        if window > MAX_STABILIZATION_WINDOW_SECONDS {
            errs.push(at.invalid(window, &format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}")));
        }
    }
    if let Some(select) = rules.select_policy.as_ref().filter(|s| !SELECT_POLICIES.contains(&s.as_str())) {
        errs.push(path.child("selectPolicy").not_supported(select, &SELECT_POLICIES));
    }
    let policies = rules.policies.as_deref().unwrap_or_default();
    if policies.is_empty() {
        errs.push(path.child("policies").required("must specify at least one Policy"));
    }
    for (i, policy) in policies.iter().enumerate() {
        let at = path.child("policies").index(i);
        if !POLICY_TYPES.contains(&policy.type_.as_str()) {
            errs.push(at.child("type").not_supported(&policy.type_, &POLICY_TYPES));
        }
        if policy.value <= 0 {
            errs.push(at.child("value").invalid(policy.value, "must be greater than zero"));
        }
        if policy.period_seconds <= 0 {
            errs.push(at.child("periodSeconds").invalid(policy.period_seconds, "must be greater than zero"));
        }
        if policy.period_seconds > MAX_PERIOD_SECONDS {
            errs.push(at.child("periodSeconds").invalid(policy.period_seconds, &format!("must be less than or equal to {MAX_PERIOD_SECONDS}")));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{messages, table, update_table, with};
    use super::super::Op;

    const G: &str = "autoscaling";
    const K: &str = "HorizontalPodAutoscaler";

    /// What `kubectl autoscale deployment foo --min=2 --max=10` sends.
    fn kubectl_autoscale() -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "foo", "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "foo"}, "minReplicas": 2, "maxReplicas": 10}
        })
    }

    /// A v2 autoscaler as stored: defaulted, with a CPU target.
    fn hpa() -> Value {
        with(&kubectl_autoscale(), json!({"spec": {"metrics": [cpu(json!({"type": "Utilization", "averageUtilization": 80}))]}}))
    }

    fn cpu(target: Value) -> Value {
        json!({"type": "Resource", "resource": {"name": "cpu", "target": target}})
    }

    fn metric(m: Value) -> Value {
        with(&hpa(), json!({"spec": {"metrics": [m]}}))
    }

    fn external(target: Value) -> Value {
        json!({"type": "External", "external": {"metric": {"name": "queue_messages_ready", "selector": {"matchLabels": {"queue": "worker_tasks"}}}, "target": target}})
    }

    fn pods(m: Value) -> Value {
        metric(json!({"type": "Pods", "pods": m}))
    }

    fn object(m: Value) -> Value {
        metric(json!({"type": "Object", "object": m}))
    }

    fn container(m: Value) -> Value {
        metric(json!({"type": "ContainerResource", "containerResource": m}))
    }

    fn policy(p: Value) -> Value {
        scale_up(json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [p]}))
    }

    fn scale_up(rules: Value) -> Value {
        with(&hpa(), json!({"spec": {"behavior": {"scaleUp": rules}}}))
    }

    /// Validated as the API server does it: defaulted first.
    fn defaulted(group: &str, version: &str, mut obj: Value) -> Vec<String> {
        let def = crate::resources::BUILTIN.iter().find(|d| d.group == group && d.version == version && d.kind == K).expect("served");
        crate::defaults::apply(def, &mut obj);
        super::super::validate(def, Op::Create(&obj)).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn horizontal_pod_autoscaler_valid() {
        let all_metrics = with(&hpa(), json!({"spec": {
            "metrics": [
                cpu(json!({"type": "Utilization", "averageUtilization": 50})),
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                {"type": "Pods", "pods": {"metric": {"name": "packets-per-second"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                {"type": "Object", "object": {"metric": {"name": "requests-per-second"}, "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main-route"}, "target": {"type": "Value", "value": "10k"}}},
                external(json!({"type": "AverageValue", "averageValue": "30"})),
                {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "application", "target": {"type": "Utilization", "averageUtilization": 60}}},
                {"type": "ContainerResource", "containerResource": {"name": "example.com/gpu", "container": "app", "target": {"type": "AverageValue", "averageValue": "500m"}}}
            ],
            "behavior": {
                "scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Min", "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}, {"type": "Pods", "value": 5, "periodSeconds": 60}]},
                "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}, {"type": "Pods", "value": 4, "periodSeconds": 1800}]}
            }
        }}));
        table(G, K, &[
            ("stored form", hpa(), ""),
            ("kubectl autoscale, nothing defaulted", kubectl_autoscale(), ""),
            ("no minReplicas", with(&hpa(), json!({"spec": {"minReplicas": null}})), ""),
            ("min equals max", with(&hpa(), json!({"spec": {"minReplicas": 10}})), ""),
            ("every metric type, a behavior", all_metrics, ""),
            ("scaling disabled one way", scale_up(json!({"selectPolicy": "Disabled", "stabilizationWindowSeconds": 3600, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 1}]})), ""),
            ("external value target", metric(external(json!({"type": "Value", "value": "100"}))), ""),
            ("tiny positive quantity", metric(external(json!({"type": "Value", "value": "1n"}))), ""),
        ]);
        // As the API server sees them: defaulted (metrics, behavior rules).
        assert_eq!(defaulted(G, "v2", kubectl_autoscale()), Vec::<String>::new());
        let partial_behavior = with(&kubectl_autoscale(), json!({"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}));
        assert_eq!(defaulted(G, "v2", partial_behavior), Vec::<String>::new());
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "foo"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "foo"}, "minReplicas": 2, "maxReplicas": 10, "targetCPUUtilizationPercentage": 80}});
        assert_eq!(defaulted(G, "v1", v1.clone()), Vec::<String>::new());
        assert_eq!(defaulted(G, "v1", with(&v1, json!({"spec": {"targetCPUUtilizationPercentage": null, "minReplicas": null}}))), Vec::<String>::new());
    }

    #[test]
    fn horizontal_pod_autoscaler_invalid() {
        let m0 = "spec.metrics[0]";
        let zero = "resource.Quantity{i:resource.int64Amount{value:0, scale:0}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:\"0\", Format:\"DecimalSI\"}";
        let object_metric = |target: Value| object(json!({"metric": {"name": "requests-per-second"}, "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "web"}, "target": target}));
        let only_external = json!([external(json!({"type": "Value", "value": "10"}))]);
        table(G, K, &[
            ("negative maxReplicas", with(&hpa(), json!({"spec": {"maxReplicas": -1, "minReplicas": null}})), "spec.maxReplicas: Invalid value: -1: must be greater than 0"),
            ("zero maxReplicas", with(&hpa(), json!({"spec": {"maxReplicas": 0, "minReplicas": null}})), "spec.maxReplicas: Invalid value: 0: must be greater than 0"),
            ("maxReplicas missing", with(&hpa(), json!({"spec": {"maxReplicas": null, "minReplicas": null}})), "spec.maxReplicas: Invalid value: 0: must be greater than 0"),
            ("max below min", with(&hpa(), json!({"spec": {"minReplicas": 5, "maxReplicas": 3}})), "spec.maxReplicas: Invalid value: 3: must be greater than or equal to `minReplicas`"),
            ("minReplicas 0 without the gate", with(&hpa(), json!({"spec": {"minReplicas": 0, "metrics": only_external}})), "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1"),
            ("negative minReplicas", with(&hpa(), json!({"spec": {"minReplicas": -1, "metrics": only_external}})), "spec.minReplicas: Invalid value: -1: must be greater than or equal to 1"),
            ("target kind missing", with(&hpa(), json!({"spec": {"scaleTargetRef": {"kind": null}}})), "spec.scaleTargetRef.kind: Required value"),
            ("target name missing", with(&hpa(), json!({"spec": {"scaleTargetRef": {"name": ""}}})), "spec.scaleTargetRef.name: Required value"),
            ("target kind with a slash", with(&hpa(), json!({"spec": {"scaleTargetRef": {"kind": "apps/Deployment"}}})), "spec.scaleTargetRef.kind: Invalid value: \"apps/Deployment\": may not contain '/'"),
            ("target name ..", with(&hpa(), json!({"spec": {"scaleTargetRef": {"name": ".."}}})), "spec.scaleTargetRef.name: Invalid value: \"..\": may not be '..'"),
            ("target name with a percent", with(&hpa(), json!({"spec": {"scaleTargetRef": {"name": "a%b"}}})), "spec.scaleTargetRef.name: Invalid value: \"a%b\": may not contain '%'"),
            ("type without its source", metric(json!({"type": "Resource", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1"}}})), "spec.metrics[0].resource: Required value: must populate information for the given metric source"),
            ("a second source", metric(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}, "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1"}}})), "spec.metrics[0].pods: Forbidden: must populate the given metric source only"),
            ("resource name missing", metric(json!({"type": "Resource", "resource": {"target": {"type": "Utilization", "averageUtilization": 50}}})), "spec.metrics[0].resource.name: Required value: must specify a resource name"),
            ("unknown target type", metric(cpu(json!({"type": "Percent", "averageUtilization": 50}))), "spec.metrics[0].resource.target.type: Invalid value: \"Percent\": must be either Utilization, Value, or AverageValue"),
            ("zero utilization", metric(cpu(json!({"type": "Utilization", "averageUtilization": 0}))), "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0"),
            ("negative utilization", metric(cpu(json!({"type": "Utilization", "averageUtilization": -10}))), "spec.metrics[0].resource.target.averageUtilization: Invalid value: -10: must be greater than 0"),
            ("resource target empty", metric(cpu(json!({"type": "Value", "value": "1"}))), "spec.metrics[0].resource.target.averageUtilization: Required value: must set either a target raw value or a target utilization"),
            ("resource target both", metric(cpu(json!({"type": "Utilization", "averageUtilization": 50, "averageValue": "100m"}))), "spec.metrics[0].resource.target.averageValue: Forbidden: may not set both a target raw value and a target utilization"),
            ("zero average value", metric(cpu(json!({"type": "AverageValue", "averageValue": "0"}))), &format!("{m0}.resource.target.averageValue: Invalid value: {zero}: must be positive")),
            ("negative average value", metric(cpu(json!({"type": "AverageValue", "averageValue": "-100m"}))), &format!("{m0}.resource.target.averageValue: Invalid value: resource.Quantity{{i:resource.int64Amount{{value:-100, scale:-3}}, d:resource.infDecAmount{{Dec:(*inf.Dec)(nil)}}, s:\"-100m\", Format:\"DecimalSI\"}}: must be positive")),
            ("malformed quantity", metric(cpu(json!({"type": "AverageValue", "averageValue": "lots"}))), &format!("{m0}.resource.target.averageValue: Invalid value: \"lots\": quantities must match the regular expression")),
            ("pods target without average", pods(json!({"metric": {"name": "qps"}, "target": {"type": "Value", "value": "1"}})), "spec.metrics[0].pods.target.averageValue: Required value: must specify a positive target averageValue"),
            ("pods metric name missing", pods(json!({"metric": {}, "target": {"type": "AverageValue", "averageValue": "1"}})), "spec.metrics[0].pods.metric.name: Required value: must specify a metric name"),
            ("pods metric name with a slash", pods(json!({"metric": {"name": "a/b"}, "target": {"type": "AverageValue", "averageValue": "1"}})), "spec.metrics[0].pods.metric.name: Invalid value: \"a/b\": may not contain '/'"),
            ("negative pods average value", pods(json!({"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "-1"}})), &format!("{m0}.pods.target.averageValue: Invalid value: resource.Quantity{{i:resource.int64Amount{{value:-1, scale:0}}, d:resource.infDecAmount{{Dec:(*inf.Dec)(nil)}}, s:\"-1\", Format:\"DecimalSI\"}}: must be positive")),
            ("object described kind missing", object(json!({"metric": {"name": "rps"}, "describedObject": {"name": "web"}, "target": {"type": "Value", "value": "1"}})), "spec.metrics[0].object.describedObject.kind: Required value"),
            ("object target empty", object_metric(json!({"type": "Utilization", "averageUtilization": 50})), "spec.metrics[0].object.target.averageValue: Required value: must set either a target value or averageValue"),
            ("object zero value", object_metric(json!({"type": "Value", "value": "0.0"})), &format!("{m0}.object.target.value: Invalid value: resource.Quantity{{i:resource.int64Amount{{value:0, scale:-1}}, d:resource.infDecAmount{{Dec:(*inf.Dec)(nil)}}, s:\"\", Format:\"DecimalSI\"}}: must be positive")),
            ("external target both", metric(external(json!({"type": "Value", "value": "1", "averageValue": "1"}))), "spec.metrics[0].external.target.value: Forbidden: may not set both a target value for metric and a per-pod target"),
            ("external target empty", metric(external(json!({"type": "Value"}))), "spec.metrics[0].external.target.averageValue: Required value: must set either a target value for metric or a per-pod target"),
            ("external negative binary value", metric(external(json!({"type": "Value", "value": "-1Gi"}))), &format!("{m0}.external.target.value: Invalid value: resource.Quantity{{i:resource.int64Amount{{value:-1073741824, scale:0}}, d:resource.infDecAmount{{Dec:(*inf.Dec)(nil)}}, s:\"-1Gi\", Format:\"BinarySI\"}}: must be positive")),
            ("container missing", container(json!({"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}})), "spec.metrics[0].containerResource.container: Required value: must specify a container"),
            ("container name upper-case", container(json!({"name": "cpu", "container": "App", "target": {"type": "Utilization", "averageUtilization": 60}})), "spec.metrics[0].containerResource.container: Invalid value: \"App\": a lowercase RFC 1123 label"),
            ("container resource name missing", container(json!({"container": "app", "target": {"type": "Utilization", "averageUtilization": 60}})), "spec.metrics[0].containerResource.name: Required value: must specify a resource name"),
            ("container resource not for containers", container(json!({"name": "pods", "container": "app", "target": {"type": "AverageValue", "averageValue": "1"}})), "spec.metrics[0].containerResource.name: Invalid value: \"pods\": must be a standard resource for containers"),
            ("container resource not extended", container(json!({"name": "requests.example.com/gpu", "container": "app", "target": {"type": "AverageValue", "averageValue": "1"}})), "spec.metrics[0].containerResource.name: Invalid value: \"requests.example.com/gpu\": doesn't follow extended resource name standard"),
            ("container resource target both", container(json!({"name": "cpu", "container": "app", "target": {"type": "Utilization", "averageUtilization": 60, "averageValue": "1"}})), "spec.metrics[0].containerResource.target.averageValue: Forbidden: may not set both a target raw value and a target utilization"),
            ("no policies", scale_up(json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": []})), "spec.behavior.scaleUp.policies: Required value: must specify at least one Policy"),
            ("unknown policy type", policy(json!({"type": "Nodes", "value": 1, "periodSeconds": 15})), "spec.behavior.scaleUp.policies[0].type: Unsupported value: \"Nodes\": supported values: \"Percent\", \"Pods\""),
            ("zero policy value", policy(json!({"type": "Pods", "value": 0, "periodSeconds": 15})), "spec.behavior.scaleUp.policies[0].value: Invalid value: 0: must be greater than zero"),
            ("zero period", policy(json!({"type": "Pods", "value": 1, "periodSeconds": 0})), "spec.behavior.scaleUp.policies[0].periodSeconds: Invalid value: 0: must be greater than zero"),
            ("period too long", policy(json!({"type": "Percent", "value": 1, "periodSeconds": 1801})), "spec.behavior.scaleUp.policies[0].periodSeconds: Invalid value: 1801: must be less than or equal to 1800"),
            ("negative window", scale_up(json!({"stabilizationWindowSeconds": -1, "selectPolicy": "Max", "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]})), "spec.behavior.scaleUp.stabilizationWindowSeconds: Invalid value: -1: must be greater than or equal to zero"),
            ("window too long", scale_up(json!({"stabilizationWindowSeconds": 3601, "selectPolicy": "Max", "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]})), "spec.behavior.scaleUp.stabilizationWindowSeconds: Invalid value: 3601: must be less than or equal to 3600"),
            ("unknown select policy", scale_up(json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Average", "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]})), "spec.behavior.scaleUp.selectPolicy: Unsupported value: \"Average\": supported values: \"Disabled\", \"Max\", \"Min\""),
            ("scale down rules too", with(&hpa(), json!({"spec": {"behavior": {"scaleDown": {"policies": [{"type": "Percent", "value": -5, "periodSeconds": 60}]}}}})), "spec.behavior.scaleDown.policies[0].value: Invalid value: -5: must be greater than zero"),
        ]);
    }

    #[test]
    fn horizontal_pod_autoscaler_several_errors() {
        let got = |obj: &Value| messages(G, K, Op::Create(obj));
        // Scaling to zero needs an Object or External metric too.
        assert_eq!(got(&with(&hpa(), json!({"spec": {"minReplicas": 0}}))), [
            "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
            "spec.metrics: Forbidden: must specify at least one Object or External metric to support scaling to zero replicas",
        ]);
        // An empty type is required, unsupported, and (as upstream) unsupported again.
        let supported = "supported values: \"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\"";
        assert_eq!(got(&metric(json!({"resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}))), [
            "spec.metrics[0].type: Required value: must specify a metric source type".to_string(),
            format!("spec.metrics[0].type: Unsupported value: \"\": {supported}"),
            format!("spec.metrics[0].type: Unsupported value: \"\": {supported}"),
        ]);
        assert_eq!(got(&metric(json!({"type": "Custom"}))), [
            format!("spec.metrics[0].type: Unsupported value: \"Custom\": {supported}"),
            format!("spec.metrics[0].type: Unsupported value: \"Custom\": {supported}"),
        ]);
        // A target type left out is required and not one of the three.
        assert_eq!(got(&metric(cpu(json!({"averageUtilization": 50})))), [
            "spec.metrics[0].resource.target.type: Required value: must specify a metric target type",
            "spec.metrics[0].resource.target.type: Invalid value: \"\": must be either Utilization, Value, or AverageValue",
        ]);
        // An unqualified unknown resource is neither standard nor for containers.
        assert_eq!(got(&container(json!({"name": "gpu", "container": "app", "target": {"type": "AverageValue", "averageValue": "1"}}))), [
            "spec.metrics[0].containerResource.name: Invalid value: \"gpu\": must be a standard resource type or fully qualified",
            "spec.metrics[0].containerResource.name: Invalid value: \"gpu\": must be a standard resource for containers",
        ]);
        // Every error is reported.
        let many = with(&hpa(), json!({"spec": {"maxReplicas": 1, "minReplicas": 3, "scaleTargetRef": {"name": ""}, "metrics": [cpu(json!({"type": "Utilization", "averageUtilization": 0}))]}}));
        assert_eq!(got(&many).len(), 3, "{:#?}", got(&many));
    }

    #[test]
    fn horizontal_pod_autoscaler_update() {
        let valid = hpa();
        let object_metric = json!([{"type": "Object", "object": {"metric": {"name": "queue-length"}, "describedObject": {"kind": "Service", "name": "queue"}, "target": {"type": "Value", "value": "10"}}}]);
        let at_zero = with(&valid, json!({"spec": {"minReplicas": 0, "metrics": object_metric.clone()}}));
        update_table(G, K, &valid, &[
            ("new bounds", with(&valid, json!({"spec": {"minReplicas": 1, "maxReplicas": 20}})), ""),
            ("new target", with(&valid, json!({"spec": {"scaleTargetRef": {"kind": "StatefulSet", "name": "db"}}})), ""),
            ("scaling to zero needs the gate", at_zero.clone(), "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1"),
            ("validated as a create", with(&valid, json!({"spec": {"maxReplicas": 1}})), "spec.maxReplicas: Invalid value: 1: must be greater than or equal to `minReplicas`"),
        ]);
        update_table(G, K, &at_zero, &[
            ("an autoscaler at zero may stay there", with(&at_zero, json!({"spec": {"maxReplicas": 4}})), ""),
            ("but not below", with(&at_zero, json!({"spec": {"minReplicas": -1}})), "spec.minReplicas: Invalid value: -1: must be greater than or equal to 0"),
            ("and keeps an Object or External metric", with(&at_zero, json!({"spec": {"metrics": [cpu(json!({"type": "Utilization", "averageUtilization": 50}))]}})), "spec.metrics: Forbidden: must specify at least one Object or External metric to support scaling to zero replicas"),
        ]);
    }

    #[test]
    fn horizontal_pod_autoscaler_status() {
        let old = hpa();
        let status = |s: Value| with(&old, json!({"status": s}));
        let cases = [
            (status(json!({"currentReplicas": 3, "desiredReplicas": 4, "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40, "averageValue": "200m"}}}],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "lastTransitionTime": "2024-05-01T10:00:00Z"}]})), vec![]),
            (status(json!({"desiredReplicas": 0})), vec![]),
            (status(json!({"currentReplicas": -1, "desiredReplicas": 1})), vec!["status.currentReplicas: Invalid value: -1: must be greater than or equal to 0"]),
            (status(json!({"currentReplicas": 1, "desiredReplicas": -2})), vec!["status.desiredReplicas: Invalid value: -2: must be greater than or equal to 0"]),
            // The spec is not checked on a status write.
            (with(&status(json!({"desiredReplicas": 1})), json!({"spec": {"maxReplicas": -1}})), vec![]),
        ];
        for (new, expected) in cases {
            assert_eq!(messages(G, K, Op::Status { new: &new, old: &old }), expected);
        }
    }

    /// autoscaling/v1 objects are converted to v2 first: errors name v2's fields.
    #[test]
    fn horizontal_pod_autoscaler_v1() {
        let def = crate::resources::BUILTIN.iter().find(|d| d.group == G && d.version == "v1" && d.kind == K).expect("autoscaling/v1 is served");
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "foo"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "foo"}, "minReplicas": 2, "maxReplicas": 10, "targetCPUUtilizationPercentage": 80}});
        let run = |obj: &Value| super::super::validate(def, Op::Create(obj)).iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(run(&v1), Vec::<String>::new());
        assert_eq!(run(&with(&v1, json!({"spec": {"maxReplicas": -1, "minReplicas": null}}))), ["spec.maxReplicas: Invalid value: -1: must be greater than 0"]);
        assert_eq!(run(&with(&v1, json!({"spec": {"targetCPUUtilizationPercentage": 0}}))), ["spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0"]);
        assert_eq!(run(&with(&v1, json!({"spec": {"scaleTargetRef": {"kind": ""}}}))), ["spec.scaleTargetRef.kind: Required value"]);
        assert_eq!(run(&with(&v1, json!({"spec": {"minReplicas": 12}}))), ["spec.maxReplicas: Invalid value: 10: must be greater than or equal to `minReplicas`"]);
        // What v1 cannot express travels in annotations, and is validated too.
        let behavior = r#"{"scaleUp":{"policies":[{"type":"Pods","value":0,"periodSeconds":15}],"selectPolicy":"Max","stabilizationWindowSeconds":0}}"#;
        let annotated = with(&v1, json!({"metadata": {"annotations": {"autoscaling.alpha.kubernetes.io/behavior": behavior}}}));
        assert_eq!(run(&annotated), ["spec.behavior.scaleUp.policies[0].value: Invalid value: 0: must be greater than zero"]);
        let status = with(&v1, json!({"status": {"currentReplicas": -1, "desiredReplicas": 0}}));
        let errs: Vec<String> = super::super::validate(def, Op::Status { new: &status, old: &v1 }).iter().map(ToString::to_string).collect();
        assert_eq!(errs, ["status.currentReplicas: Invalid value: -1: must be greater than or equal to 0"]);
    }
}

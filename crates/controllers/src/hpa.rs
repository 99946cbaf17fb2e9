//! The HorizontalPodAutoscaler controller (autoscaling/v2), as upstream's
//! for resource and container resource metrics: every sync period it reads the target's scale,
//! the PodMetrics of its pods (metrics.k8s.io) and their requests, and
//! sets the replica count that brings each metric to its target:
//! `ceil(current × usage / target)`, unchanged within upstream's 10 %
//! tolerance, the highest over the metrics, between minReplicas and
//! maxReplicas, stabilized and rate-limited as upstream (`behavior`, in
//! `History::normalize`). Status, conditions and events are upstream's.
//!
//! ContainerResource metrics read one container of each pod. Pods and
//! Object metrics come from custom.metrics.k8s.io, External ones from
//! external.metrics.k8s.io (served when the server is given a
//! Prometheus), and become replicas as upstream's replica calculator
//! makes them. A metric that cannot be read fails with upstream's reason,
//! and, as upstream, the other metrics still scale unless that would scale
//! down.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscaler, HorizontalPodAutoscalerBehavior, MetricSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use serde_json::{json, Value};

use crate::common::{lock, Error};

const TOLERANCE: f64 = 0.1;

struct Context {
    client: kube::Client,
    sync_period: Duration,
    /// Recent recommendations and rescales per autoscaler (by uid).
    history: Mutex<HashMap<String, History>>,
}

pub async fn run(client: kube::Client, sync_period: Duration) {
    let context = Arc::new(Context { client: client.clone(), sync_period, history: Default::default() });
    let controller = Controller::new(Api::<HorizontalPodAutoscaler>::all(client), watcher::Config::default());
    crate::common::run("horizontalpodautoscaler", controller, reconcile, context).await;
}

/// The scale subresource's resource for a target kind upstream scales.
fn target_resource(api_version: &str, kind: &str) -> Option<ApiResource> {
    let plural = match (api_version, kind) {
        ("apps/v1", "Deployment") => "deployments",
        ("apps/v1", "ReplicaSet") => "replicasets",
        ("apps/v1", "StatefulSet") => "statefulsets",
        ("v1", "ReplicationController") => "replicationcontrollers",
        _ => return None,
    };
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Some(ApiResource { group: group.into(), version: version.into(), api_version: api_version.into(), kind: kind.into(), plural: plural.into() })
}

fn condition(kind: &str, status: bool, reason: &str, message: &str) -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({"type": kind, "status": if status { "True" } else { "False" }, "reason": reason, "message": message, "lastTransitionTime": now})
}

/// A resource metric's reading over the target's pods.
pub struct Reading {
    /// Replicas it asks for.
    replicas: i32,
    /// `currentMetrics` entry.
    current: Value,
    /// How it is described in events (`cpu resource utilization (percentage of request)`).
    description: String,
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, context: Arc<Context>) -> Result<Action, Error> {
    let ns = hpa.metadata.namespace.clone().unwrap_or_default();
    let name = hpa.metadata.name.clone().unwrap_or_default();
    let Some(spec) = hpa.spec.as_ref() else { return Ok(Action::await_change()) };
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(context.client.clone(), &ns);
    let target = &spec.scale_target_ref;
    let requeue = Action::requeue(context.sync_period);
    let mut conditions = Vec::new();
    let Some(resource) = target_resource(target.api_version.as_deref().unwrap_or(""), &target.kind) else {
        let message = format!("the HPA controller was unable to get the target's current scale: no scale for {}", target.kind);
        conditions.push(condition("AbleToScale", false, "FailedGetScale", &message));
        set_status(&hpas, &name, json!({"conditions": conditions, "currentReplicas": 0, "desiredReplicas": 0})).await?;
        return Ok(requeue);
    };
    let targets: Api<DynamicObject> = Api::namespaced_with(context.client.clone(), &ns, &resource);
    let scale = match targets.get_scale(&target.name).await {
        Ok(scale) => scale,
        Err(e) => {
            let message = format!("the HPA controller was unable to get the target's current scale: {e}");
            conditions.push(condition("AbleToScale", false, "FailedGetScale", &message));
            publish(&context, &hpa, EventType::Warning, "FailedGetScale", &message).await;
            set_status(&hpas, &name, json!({"conditions": conditions})).await?;
            return Ok(requeue);
        }
    };
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let selector = scale.status.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
    conditions.push(condition("AbleToScale", true, "SucceededGetScale", "the HPA controller was able to get the target's current scale"));
    if current == 0 {
        conditions.push(condition("ScalingActive", false, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero"));
        set_status(&hpas, &name, json!({"conditions": conditions, "currentReplicas": 0, "desiredReplicas": 0})).await?;
        return Ok(requeue);
    }
    let default_metric: MetricSpec = serde_json::from_value(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}})).expect("a valid metric");
    let metrics = spec.metrics.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| vec![default_metric]);
    let mut readings = Vec::new();
    let mut failures = Vec::new();
    for metric in &metrics {
        match read_metric(&context.client, &ns, &selector, metric, current).await {
            Ok(reading) => readings.push(reading),
            Err((reason, message)) => {
                publish(&context, &hpa, EventType::Warning, reason, &message).await;
                failures.push((reason, message));
            }
        }
    }
    let chosen = readings.iter().max_by_key(|r| r.replicas);
    // As upstream: metrics that fail are left out, unless none is left or
    // the others would scale down (a failing metric might have held the
    // replicas up).
    if let Some((reason, message)) = failures.first().filter(|_| chosen.is_none_or(|c| c.replicas < current)) {
        conditions.push(condition("ScalingActive", false, reason, &format!("the HPA was unable to compute the replica count: {message}")));
        let summary = format!("invalid metrics ({} invalid out of {}), first error is: {message}", failures.len(), metrics.len());
        publish(&context, &hpa, EventType::Warning, "FailedComputeMetricsReplicas", &summary).await;
        set_status(&hpas, &name, json!({"conditions": conditions, "currentReplicas": current})).await?;
        return Ok(requeue);
    }
    // Every metric is read or failed, and there is at least one.
    let Some(chosen) = chosen else { return Ok(requeue) };
    conditions.push(condition("ScalingActive", true, "ValidMetricFound", &format!("the HPA was able to successfully calculate a replica count from {}", chosen.description)));

    let (min, max) = (spec.min_replicas.unwrap_or(1), spec.max_replicas);
    let key = hpa.metadata.uid.clone().unwrap_or_default();
    // As upstream, a target outside min/maxReplicas is brought inside first.
    let (desired, rescale_reason) = if current > max {
        (max, "Current number of replicas above Spec.MaxReplicas".to_string())
    } else if current < min {
        (min, "Current number of replicas below Spec.MinReplicas".to_string())
    } else {
        let normalized = lock(&context.history).entry(key.clone()).or_default().normalize(current, chosen.replicas, min, max, spec.behavior.as_ref(), Instant::now());
        let (reason, message) = normalized.stabilization;
        conditions[0] = condition("AbleToScale", true, reason, message);
        let (reason, message) = normalized.limit;
        conditions.push(condition("ScalingLimited", reason != "DesiredWithinRange", reason, message));
        let why = match normalized.desired > current {
            true => format!("{} above target", chosen.description),
            false => "All metrics below target".to_string(),
        };
        (normalized.desired, why)
    };
    if desired != current {
        // The status is written only once the scale is.
        let rescaled = format!("the HPA controller was able to update the target scale to {desired}");
        conditions[0] = condition("AbleToScale", true, "SucceededRescale", &rescaled);
    }
    let mut status = json!({
        "currentReplicas": current,
        "desiredReplicas": desired,
        "currentMetrics": readings.iter().map(|r| r.current.clone()).collect::<Vec<_>>(),
        "conditions": conditions,
        "observedGeneration": hpa.metadata.generation,
    });
    if let Some(last) = hpa.status.as_ref().and_then(|s| s.last_scale_time.clone()) {
        status["lastScaleTime"] = json!(last);
    }
    if desired != current {
        lock(&context.history).entry(key).or_default().scaled(current, desired, Instant::now());
        targets.patch_scale(&target.name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": desired}}))).await?;
        publish(&context, &hpa, EventType::Normal, "SuccessfulRescale", &format!("New size: {desired}; reason: {rescale_reason}")).await;
        status["lastScaleTime"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    set_status(&hpas, &name, status).await?;
    Ok(requeue)
}

/// Every decision of one evaluation, on the objects alone: for the fuzz
/// targets. `current` is the target's scale.
pub fn fuzz(hpa: &HorizontalPodAutoscaler, current: i32, pods: &[Pod], metrics: &[DynamicObject]) {
    let Some(spec) = hpa.spec.as_ref() else { return };
    let (min, max) = (spec.min_replicas.unwrap_or(1), spec.max_replicas);
    let mut history = History::default();
    let now = Instant::now();
    for metric in spec.metrics.iter().flatten() {
        let (name, container, target) = match (&metric.resource, &metric.container_resource) {
            (Some(r), _) => (r.name.as_str(), None, &r.target),
            (_, Some(r)) => (r.name.as_str(), Some(r.container.as_str()), &r.target),
            _ => continue,
        };
        let Ok(reading) = reading(name, container, target, current, pods, metrics) else { continue };
        let first = history.normalize(current, reading.replicas, min, max, spec.behavior.as_ref(), now);
        history.scaled(current, first.desired, now);
        let _ = history.normalize(first.desired, reading.replicas, min, max, spec.behavior.as_ref(), now + Duration::from_secs(20));
    }
}

async fn set_status(hpas: &Api<HorizontalPodAutoscaler>, name: &str, status: Value) -> Result<(), Error> {
    hpas.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    Ok(())
}

/// Records an event. Written directly rather than through kube's
/// `Recorder`, which folds events of one reason into the first one's note,
/// while each rescale here says its own size.
async fn publish(context: &Context, hpa: &HorizontalPodAutoscaler, kind: EventType, reason: &str, note: &str) {
    let now = chrono::Utc::now();
    let ns = hpa.metadata.namespace.clone().unwrap_or_default();
    let event = json!({
        "metadata": {"name": format!("{}.{:x}", hpa.metadata.name.as_deref().unwrap_or("hpa"), now.timestamp_nanos_opt().unwrap_or_default()), "namespace": ns},
        "eventTime": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "type": if kind == EventType::Warning { "Warning" } else { "Normal" },
        "reason": reason, "action": reason, "note": note,
        "regarding": kube::Resource::object_ref(hpa, &()),
        "reportingController": "horizontal-pod-autoscaler", "reportingInstance": "horizontal-pod-autoscaler",
    });
    let result = match serde_json::from_value::<k8s_openapi::api::events::v1::Event>(event) {
        Ok(event) => Api::namespaced(context.client.clone(), &ns).create(&kube::api::PostParams::default(), &event).await.map(drop).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = result {
        tracing::debug!("publishing an event: {e}");
    }
}

/// A metric's reading; one that cannot be read fails with upstream's
/// reason for its type.
async fn read_metric(client: &kube::Client, ns: &str, selector: &str, metric: &MetricSpec, current: i32) -> Result<Reading, (&'static str, String)> {
    let (name, container, target) = match (metric.type_.as_str(), &metric.resource, &metric.container_resource) {
        ("Resource", Some(r), _) => (r.name.as_str(), None, &r.target),
        ("ContainerResource", _, Some(r)) => (r.name.as_str(), Some(r.container.as_str()), &r.target),
        ("Pods", ..) => return read_pods_metric(client, ns, selector, metric, current).await.map_err(|m| ("FailedGetPodsMetric", m)),
        ("Object", ..) => return read_object_metric(client, ns, selector, metric, current).await.map_err(|m| ("FailedGetObjectMetric", m)),
        ("External", ..) => return read_external_metric(client, ns, selector, metric, current).await.map_err(|m| ("FailedGetExternalMetric", m)),
        (other, ..) => return Err(("InvalidMetricSourceType", format!("unknown metric source type {other:?}"))),
    };
    let reason = if container.is_some() { "FailedGetContainerResourceMetric" } else { "FailedGetResourceMetric" };
    read_resource_metric(client, ns, selector, name, container, target, current).await.map_err(|message| (reason, message))
}

/// A Resource metric (cpu or memory, Utilization or AverageValue) over the
/// pods `selector` picks, from their PodMetrics and requests; or a
/// ContainerResource metric, the same over one container of each pod.
async fn read_resource_metric(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    name: &str,
    container: Option<&str>,
    target: &k8s_openapi::api::autoscaling::v2::MetricTarget,
    current: i32,
) -> Result<Reading, String> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns).list(&ListParams::default().labels(selector)).await.map_err(|e| e.to_string())?;
    let metrics_api = ApiResource { group: "metrics.k8s.io".into(), version: "v1beta1".into(), api_version: "metrics.k8s.io/v1beta1".into(), kind: "PodMetrics".into(), plural: "pods".into() };
    let listed = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &metrics_api)
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| format!("unable to get metrics for resource {name}: unable to fetch metrics from resource metrics API: {e}"))?;
    reading(name, container, target, current, &pods.items, &listed.items)
}

/// A resource metric's reading from the pods and their PodMetrics. Sums
/// saturate: usage and requests are quantities a hostile pod or metrics
/// source may make `i64::MAX`.
pub fn reading(name: &str, container: Option<&str>, target: &k8s_openapi::api::autoscaling::v2::MetricTarget, current: i32, pods: &[Pod], metrics: &[DynamicObject]) -> Result<Reading, String> {
    let counts = |c: &str| container.is_none_or(|only| only == c);
    let running: Vec<&Pod> = pods.iter().filter(|p| counted(p)).collect();
    let usage: HashMap<String, i64> = metrics
        .iter()
        .map(|m| {
            let total = m.data["containers"].as_array().into_iter().flatten().filter(|c| counts(c["name"].as_str().unwrap_or_default())).filter_map(|c| skiff_quantity::milli(c["usage"][name].as_str()?)).map(|u| u.max(0)).fold(0, i64::saturating_add);
            (m.metadata.name.clone().unwrap_or_default(), total)
        })
        .collect();
    let measured: Vec<(&Pod, i64)> = running.iter().filter_map(|p| Some((*p, *usage.get(p.metadata.name.as_deref()?)?))).collect();
    if measured.is_empty() {
        return Err(format!("unable to get metrics for resource {name}: no metrics returned from resource metrics API"));
    }
    let total_usage: i64 = measured.iter().map(|(_, u)| *u).fold(0, i64::saturating_add);
    let ready = measured.len() as f64;
    let (ratio, current_value) = match (target.type_.as_str(), target.average_utilization, target.average_value.as_ref()) {
        // Validation wants a positive target; another is not one.
        ("Utilization", Some(percent), _) if percent > 0 => {
            let mut requested: i64 = 0;
            for (pod, _) in &measured {
                let containers = &pod.spec.as_ref().map(|s| s.containers.clone()).unwrap_or_default();
                for c in containers.iter().filter(|c| counts(&c.name)) {
                    let request = c.resources.as_ref().and_then(|r| r.requests.as_ref()?.get(name)).and_then(|q| skiff_quantity::milli(&q.0));
                    let request = request.ok_or_else(|| format!("failed to get {name} utilization: missing request for {name} in container {} of Pod {}", c.name, pod.metadata.name.as_deref().unwrap_or("")))?;
                    requested = requested.saturating_add(request.max(0));
                }
            }
            let utilization = (total_usage as i128 * 100 / requested.max(1) as i128).clamp(0, i32::MAX as i128) as i32;
            (utilization as f64 / percent as f64, json!({"averageUtilization": utilization, "averageValue": quantity(name, total_usage / measured.len() as i64)}))
        }
        ("AverageValue", _, Some(value)) => {
            let per_pod = skiff_quantity::milli(&value.0).filter(|v| *v > 0).ok_or("an invalid averageValue")?;
            let average = total_usage as f64 / ready;
            (average / per_pod as f64, json!({"averageValue": quantity(name, average as i64)}))
        }
        _ => return Err(format!("invalid target for resource {name}")),
    };
    let replicas = if (ratio - 1.0).abs() <= TOLERANCE { current } else { (ratio * ready).ceil() as i32 };
    let kind = if container.is_some() { "container resource" } else { "resource" };
    let description = match target.type_.as_str() {
        "Utilization" => format!("{name} {kind} utilization (percentage of request)"),
        _ => format!("{name} {kind}"),
    };
    let current = match container {
        Some(c) => json!({"type": "ContainerResource", "containerResource": {"name": name, "container": c, "current": current_value}}),
        None => json!({"type": "Resource", "resource": {"name": name, "current": current_value}}),
    };
    Ok(Reading { replicas, current, description })
}

/// A label selector object in the selector syntax of a query parameter.
fn selector_string(selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>) -> String {
    let Some(selector) = selector else { return String::new() };
    let mut terms: Vec<String> = selector.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        terms.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    terms.join(",")
}

/// A custom or external metrics API's answer at `path`.
async fn metrics_api(client: &kube::Client, path: &str, query: &[(&str, String)]) -> Result<Value, String> {
    let query: Vec<&(&str, String)> = query.iter().filter(|(_, v)| !v.is_empty()).collect();
    let uri = match query.is_empty() {
        true => path.to_string(),
        false => format!("{path}?{}", serde_urlencoded::to_string(&query).map_err(|e| e.to_string())?),
    };
    let request = http::Request::get(uri).body(Vec::new()).map_err(|e| e.to_string())?;
    client.request::<Value>(request).await.map_err(|e| e.to_string())
}

/// A pod whose metrics count: running and not being deleted.
fn counted(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// The counted pods the selector picks, by name.
async fn running_pods(client: &kube::Client, ns: &str, selector: &str) -> Result<HashSet<String>, String> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns).list(&ListParams::default().labels(selector)).await.map_err(|e| e.to_string())?;
    Ok(pods.items.into_iter().filter(counted).filter_map(|p| p.metadata.name).collect())
}

/// Replicas for a usage `ratio` to the target over `count` pods: unchanged
/// within the tolerance, as upstream's replica calculator.
fn scaled(ratio: f64, count: f64, current: i32) -> i32 {
    if (ratio - 1.0).abs() <= TOLERANCE { current } else { (ratio * count).ceil().min(i32::MAX as f64) as i32 }
}

fn target_milli(target: &k8s_openapi::api::autoscaling::v2::MetricTarget, field: &str) -> Result<i64, String> {
    let quantity = match field {
        "value" => target.value.as_ref(),
        _ => target.average_value.as_ref(),
    };
    quantity.and_then(|q| skiff_quantity::milli(&q.0)).filter(|v| *v > 0).ok_or_else(|| format!("an invalid {field} target"))
}

/// A Pods metric: each pod's value from custom.metrics.k8s.io, averaged
/// against the target's averageValue.
async fn read_pods_metric(client: &kube::Client, ns: &str, selector: &str, metric: &MetricSpec, current: i32) -> Result<Reading, String> {
    let source = metric.pods.as_ref().ok_or("a Pods metric without its source")?;
    let name = &source.metric.name;
    let path = format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/pods/*/{name}");
    let answer = metrics_api(client, &path, &[("labelSelector", selector.to_string()), ("metricLabelSelector", selector_string(source.metric.selector.as_ref()))])
        .await
        .map_err(|e| format!("unable to get metric {name}: unable to fetch metrics from custom metrics API: {e}"))?;
    let running = running_pods(client, ns, selector).await?;
    let values: Vec<i64> = answer["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["describedObject"]["name"].as_str().is_some_and(|p| running.contains(p)))
        .filter_map(|i| skiff_quantity::milli(i["value"].as_str()?))
        .collect();
    if values.is_empty() {
        return Err(format!("unable to get metric {name}: no metrics returned from custom metrics API"));
    }
    let average = values.iter().fold(0i64, |a, v| a.saturating_add(*v)) as f64 / values.len() as f64;
    let ratio = average / target_milli(&source.target, "averageValue")? as f64;
    Ok(Reading {
        replicas: scaled(ratio, values.len() as f64, current),
        current: json!({"type": "Pods", "pods": {"metric": source.metric, "current": {"averageValue": format!("{}m", average.round() as i64)}}}),
        description: format!("pods metric {name}"),
    })
}

/// A usage against a Value target (spread over the ready pods) or an
/// AverageValue one (per replica), as upstream's Object and External
/// metrics; and the `current` it reports.
fn value_reading(usage: i64, target: &k8s_openapi::api::autoscaling::v2::MetricTarget, ready: usize, current: i32) -> Result<(i32, Value), String> {
    match target.type_.as_str() {
        "Value" => {
            let ratio = usage as f64 / target_milli(target, "value")? as f64;
            Ok((scaled(ratio, ready as f64, current), json!({"value": format!("{usage}m")})))
        }
        "AverageValue" => {
            let per_pod = target_milli(target, "averageValue")? as f64;
            let ratio = usage as f64 / (per_pod * current.max(1) as f64);
            let replicas = if (ratio - 1.0).abs() <= TOLERANCE { current } else { (usage as f64 / per_pod).ceil().min(i32::MAX as f64) as i32 };
            Ok((replicas, json!({"averageValue": format!("{}m", (usage as f64 / current.max(1) as f64).round() as i64)})))
        }
        other => Err(format!("invalid target type {other:?}")),
    }
}

/// An Object metric: one object's value from custom.metrics.k8s.io.
async fn read_object_metric(client: &kube::Client, ns: &str, selector: &str, metric: &MetricSpec, current: i32) -> Result<Reading, String> {
    let source = metric.object.as_ref().ok_or("an Object metric without its source")?;
    let (name, object) = (&source.metric.name, &source.described_object);
    let api_version = object.api_version.as_deref().unwrap_or("v1");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = kube::discovery::pinned_kind(client, &kube::core::GroupVersionKind::gvk(group, version, &object.kind))
        .await
        .map_err(|e| format!("unable to get metric {name}: {} is not a known kind: {e}", object.kind))?
        .0
        .plural;
    let path = format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/{resource}/{}/{name}", object.name);
    let answer = metrics_api(client, &path, &[("metricLabelSelector", selector_string(source.metric.selector.as_ref()))])
        .await
        .map_err(|e| format!("unable to get metric {name}: {} on {} {}/unable to fetch metrics from custom metrics API: {e}", object.kind, ns, object.name))?;
    let usage = answer["items"][0]["value"].as_str().and_then(skiff_quantity::milli).ok_or_else(|| format!("unable to get metric {name}: no metrics returned from custom metrics API"))?;
    let ready = running_pods(client, ns, selector).await?.len();
    let (replicas, value) = value_reading(usage, &source.target, ready, current)?;
    Ok(Reading {
        replicas,
        current: json!({"type": "Object", "object": {"describedObject": object, "metric": source.metric, "current": value}}),
        description: format!("{} metric {name}", object.kind),
    })
}

/// An External metric: the sum of what external.metrics.k8s.io returns.
async fn read_external_metric(client: &kube::Client, ns: &str, selector: &str, metric: &MetricSpec, current: i32) -> Result<Reading, String> {
    let source = metric.external.as_ref().ok_or("an External metric without its source")?;
    let name = &source.metric.name;
    let metric_selector = selector_string(source.metric.selector.as_ref());
    let path = format!("/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{name}");
    let answer = metrics_api(client, &path, &[("labelSelector", metric_selector.clone())])
        .await
        .map_err(|e| format!("unable to get external metric {ns}/{name}/{metric_selector}: unable to fetch metrics from external metrics API: {e}"))?;
    let values: Vec<i64> = answer["items"].as_array().into_iter().flatten().filter_map(|i| skiff_quantity::milli(i["value"].as_str()?)).collect();
    if values.is_empty() {
        return Err(format!("unable to get external metric {ns}/{name}/{metric_selector}: no metrics returned from external metrics API"));
    }
    let usage = values.iter().fold(0i64, |a, v| a.saturating_add(*v));
    let ready = running_pods(client, ns, selector).await?.len();
    let (replicas, value) = value_reading(usage, &source.target, ready, current)?;
    Ok(Reading {
        replicas,
        current: json!({"type": "External", "external": {"metric": source.metric, "current": value}}),
        description: format!("external metric {name}({metric_selector})"),
    })
}

/// A CPU amount in millicores, memory in bytes, as quantities.
fn quantity(name: &str, milli: i64) -> String {
    if name == "cpu" { format!("{milli}m") } else { (milli / 1000).to_string() }
}

/// One autoscaler's recent recommendations and rescales, which upstream's
/// stabilization windows and scaling policies look back on.
#[derive(Default)]
struct History {
    recommendations: Vec<(Instant, i32)>,
    /// Rescales: when, and the change in replicas (+ up, - down).
    changes: Vec<(Instant, i32)>,
}

/// The replica count to set, and why: the AbleToScale reason (how
/// stabilization changed the recommendation) and the ScalingLimited one.
#[derive(Debug, PartialEq)]
struct Normalized {
    desired: i32,
    stabilization: (&'static str, &'static str),
    limit: (&'static str, &'static str),
}

/// A direction's rules as upstream defaults them: stabilization window,
/// `selectPolicy`, and the policies (Pods or Percent per period).
struct Rules {
    window: Duration,
    select: String,
    policies: Vec<(bool, i32, Duration)>,
}

fn rules(given: Option<&HPAScalingRules>, up: bool) -> Rules {
    let policies = match given.and_then(|r| r.policies.as_ref()) {
        Some(p) => p.iter().map(|p| (p.type_ == "Pods", p.value, Duration::from_secs(p.period_seconds.max(0) as u64))).collect(),
        None if up => vec![(true, 4, Duration::from_secs(15)), (false, 100, Duration::from_secs(15))],
        None => vec![(false, 100, Duration::from_secs(15))],
    };
    Rules {
        window: Duration::from_secs(given.and_then(|r| r.stabilization_window_seconds).unwrap_or(if up { 0 } else { 300 }).max(0) as u64),
        select: given.and_then(|r| r.select_policy.clone()).unwrap_or_else(|| "Max".into()),
        policies,
    }
}

impl History {
    /// Upstream's `normalizeDesiredReplicas(WithBehaviors)`, for a target
    /// within min/maxReplicas: the recommendation held within the
    /// stabilization windows (without `behavior`, the highest of the
    /// scale-down window; with it, the lowest recent one caps a rise and
    /// the highest a fall), then limited by the scaling policies (without
    /// `behavior`: 2× or 4 pods up) and by min/maxReplicas.
    fn normalize(&mut self, current: i32, recommended: i32, min: i32, max: i32, behavior: Option<&HorizontalPodAutoscalerBehavior>, now: Instant) -> Normalized {
        let (up, down) = (rules(behavior.and_then(|b| b.scale_up.as_ref()), true), rules(behavior.and_then(|b| b.scale_down.as_ref()), false));
        let within = |at: &Instant, window: Duration| now.duration_since(*at) <= window;
        let lowest = self.recommendations.iter().filter(|(at, _)| within(at, up.window)).map(|(_, r)| *r).fold(recommended, i32::min);
        let highest = self.recommendations.iter().filter(|(at, _)| within(at, down.window)).map(|(_, r)| *r).fold(recommended, i32::max);
        self.recommendations.retain(|(at, _)| within(at, up.window.max(down.window)));
        self.recommendations.push((now, recommended));
        let stabilized = match behavior {
            None => highest,
            Some(_) => current.max(lowest).min(highest),
        };
        // Named by which window held the recommendation back.
        let stabilization = match stabilized.cmp(&recommended) {
            std::cmp::Ordering::Equal => ("ReadyForNewScale", "recommended size matches current size"),
            std::cmp::Ordering::Less => ("ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation"),
            std::cmp::Ordering::Greater => ("ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation"),
        };
        let (up_limit, down_limit) = match behavior {
            None => (current.saturating_mul(2).max(4), i32::MIN),
            Some(_) => (self.limit(current, &up, true, now).max(current), self.limit(current, &down, false, now).min(current)),
        };
        let (desired, limit) = if stabilized > current && stabilized > max.min(up_limit) {
            match max > up_limit {
                true => (up_limit, ("ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")),
                false => (max, ("TooManyReplicas", "the desired replica count is more than the maximum replica count")),
            }
        } else if stabilized < min.max(down_limit) {
            match min < down_limit {
                true => (down_limit, ("ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate")),
                false => (min, ("TooFewReplicas", "the desired replica count is less than the minimum replica count")),
            }
        } else {
            (stabilized, ("DesiredWithinRange", "the desired count is within the acceptable range"))
        };
        Normalized { desired, stabilization, limit }
    }

    /// Upstream's `calculateScaleUpLimitWithScalingRules` and
    /// `…ScaleDownLimitWithBehaviors`: each policy allows its change on
    /// the replicas at the start of its period; `Max` takes the largest
    /// change, `Min` the smallest, `Disabled` none.
    fn limit(&self, current: i32, rules: &Rules, up: bool, now: Instant) -> i32 {
        if rules.select == "Disabled" {
            return current;
        }
        let proposals = rules.policies.iter().map(|(pods, value, period)| {
            // Saturating: a hostile scale (i32::MAX replicas) or policy value must not overflow.
            let changed: i32 = self.changes.iter().filter(|(at, _)| now.duration_since(*at) <= *period).map(|(_, c)| *c).fold(0, i32::saturating_add);
            let start = current.saturating_sub(changed);
            match (up, pods) {
                (true, true) => start.saturating_add(*value),
                (true, false) => (start as f64 * (1.0 + *value as f64 / 100.0)).ceil() as i32,
                (false, true) => start.saturating_sub(*value),
                (false, false) => (start as f64 * (1.0 - *value as f64 / 100.0)) as i32,
            }
        });
        // The largest change: the highest limit up, the lowest down.
        match (rules.select == "Min") == up {
            true => proposals.min().unwrap_or(current),
            false => proposals.max().unwrap_or(current),
        }
    }

    /// Records a rescale, which later policies count against their periods.
    fn scaled(&mut self, from: i32, to: i32, now: Instant) {
        self.changes.retain(|(at, _)| now.duration_since(*at) <= Duration::from_secs(1800));
        self.changes.push((now, to.saturating_sub(from)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behavior(value: serde_json::Value) -> HorizontalPodAutoscalerBehavior {
        serde_json::from_value(value).unwrap()
    }

    fn target(value: serde_json::Value) -> k8s_openapi::api::autoscaling::v2::MetricTarget {
        serde_json::from_value(value).unwrap()
    }

    /// Object and External metrics as upstream's replica calculator: a
    /// Value target spreads the usage over the ready pods, an AverageValue
    /// one divides it per replica; within 10 % nothing changes.
    #[test]
    fn value_and_average_value_targets_give_upstreams_replicas() {
        let value = target(json!({"type": "Value", "value": "10"}));
        assert_eq!(value_reading(30_000, &value, 2, 2).unwrap(), (6, json!({"value": "30000m"})));
        assert_eq!(value_reading(10_500, &value, 2, 2).unwrap().0, 2, "within the tolerance");
        let average = target(json!({"type": "AverageValue", "averageValue": "10"}));
        assert_eq!(value_reading(30_000, &average, 1, 1).unwrap(), (3, json!({"averageValue": "30000m"})));
        assert_eq!(value_reading(30_000, &average, 3, 3).unwrap().0, 3, "at the target");
        assert_eq!(value_reading(5_000, &average, 3, 3).unwrap().0, 1);
        assert!(value_reading(1, &target(json!({"type": "Value", "value": "0"})), 1, 1).is_err(), "a zero target is none");
        assert_eq!(selector_string(Some(&serde_json::from_value(json!({"matchLabels": {"queue": "a"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["x", "y"]}, {"key": "gone", "operator": "DoesNotExist"}]})).unwrap())), "queue=a,tier in (x,y),!gone");
    }

    #[test]
    fn without_behavior_scale_up_doubles_at_most_and_scale_down_is_stabilized() {
        let mut h = History::default();
        let t = Instant::now();
        let up = h.normalize(3, 20, 1, 100, None, t);
        assert_eq!((up.desired, up.limit.0, up.stabilization.0), (6, "ScaleUpLimit", "ReadyForNewScale"));
        assert_eq!(History::default().normalize(3, 20, 1, 5, None, t).limit, ("TooManyReplicas", "the desired replica count is more than the maximum replica count"));
        // Five minutes of higher recommendations hold a fall back.
        let mut h = History::default();
        h.normalize(10, 10, 1, 100, None, t);
        let held = h.normalize(10, 2, 1, 100, None, t + Duration::from_secs(60));
        assert_eq!((held.desired, held.stabilization.0), (10, "ScaleDownStabilized"));
        assert_eq!(h.normalize(10, 2, 1, 100, None, t + Duration::from_secs(400)).desired, 2);
        assert_eq!(h.normalize(10, 0, 1, 100, None, t + Duration::from_secs(800)).limit.0, "TooFewReplicas");
    }

    #[test]
    fn behavior_policies_limit_the_rate_per_period() {
        let t = Instant::now();
        // Up by 2 pods per 60 s; down by 50 % per 60 s without a window.
        let b = behavior(serde_json::json!({
            "scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]},
            "scaleDown": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]},
        }));
        let mut h = History::default();
        let first = h.normalize(4, 10, 1, 100, Some(&b), t);
        assert_eq!((first.desired, first.limit.0), (6, "ScaleUpLimit"));
        h.scaled(4, 6, t);
        // Within the same period the two pods are spent.
        assert_eq!(h.normalize(6, 10, 1, 100, Some(&b), t + Duration::from_secs(30)).desired, 6);
        assert_eq!(h.normalize(6, 10, 1, 100, Some(&b), t + Duration::from_secs(61)).desired, 8);
        let down = History::default().normalize(10, 1, 1, 100, Some(&b), t);
        assert_eq!((down.desired, down.limit.0), (5, "ScaleDownLimit"));
        // selectPolicy Disabled: no change that way.
        let off = behavior(serde_json::json!({"scaleUp": {"selectPolicy": "Disabled"}}));
        assert_eq!(History::default().normalize(4, 10, 1, 100, Some(&off), t).desired, 4);
        // Defaults: 4 pods or 100 % per 15 s, the larger; a fall waits 300 s.
        let defaults = behavior(serde_json::json!({}));
        assert_eq!(History::default().normalize(10, 50, 1, 100, Some(&defaults), t).desired, 20);
        assert_eq!(History::default().normalize(1, 50, 1, 100, Some(&defaults), t).desired, 5);
        let mut h = History::default();
        h.normalize(8, 8, 1, 100, Some(&defaults), t);
        assert_eq!(h.normalize(8, 3, 1, 100, Some(&defaults), t + Duration::from_secs(100)).desired, 8);
        // scaleUp's window: a rise waits for the lowest recent recommendation.
        let slow = behavior(serde_json::json!({"scaleUp": {"stabilizationWindowSeconds": 120}}));
        let mut h = History::default();
        h.normalize(4, 4, 1, 100, Some(&slow), t);
        let held = h.normalize(4, 8, 1, 100, Some(&slow), t + Duration::from_secs(60));
        assert_eq!((held.desired, held.stabilization.0), (4, "ScaleUpStabilized"));
    }
}

//! The HorizontalPodAutoscaler controller (autoscaling/v2), as upstream's
//! for resource metrics: every sync period it reads the target's scale,
//! the PodMetrics of its pods (metrics.k8s.io) and their requests, and
//! sets the replica count that brings each metric to its target:
//! `ceil(current × usage / target)`, unchanged within upstream's 10 %
//! tolerance, the highest over the metrics, between minReplicas and
//! maxReplicas. Scaling down takes the highest recommendation of the
//! stabilization window (`behavior.scaleDown.stabilizationWindowSeconds`,
//! 300 s by default); scaling up is at most upstream's default rate, the
//! larger of 4 pods and 100 % per sync. Status, conditions and events are
//! upstream's.
//!
//! Not yet: Pods, Object, External and ContainerResource metrics, and the
//! rate-limit policies of `behavior` (their stabilization windows apply).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, MetricSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use serde_json::{json, Value};

use crate::common::Error;

const TOLERANCE: f64 = 0.1;

struct Context {
    client: kube::Client,
    sync_period: Duration,
    /// Recent recommendations per autoscaler, for the stabilization windows.
    recommendations: Mutex<HashMap<String, Vec<(Instant, i32)>>>,
}

pub async fn run(client: kube::Client, sync_period: Duration) {
    let context = Arc::new(Context { client: client.clone(), sync_period, recommendations: Default::default() });
    Controller::new(Api::<HorizontalPodAutoscaler>::all(client), watcher::Config::default())
        .run(reconcile, |_, e, _| {
            tracing::debug!("horizontal-pod-autoscaler: {e}");
            Action::requeue(Duration::from_secs(5))
        }, context)
        .for_each(|_| async {})
        .await;
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
struct Reading {
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
    for metric in &metrics {
        match read_metric(&context.client, &ns, &selector, metric, current).await {
            Ok(reading) => readings.push(reading),
            Err(message) => {
                conditions.push(condition("ScalingActive", false, "FailedGetResourceMetric", &message));
                publish(&context, &hpa, EventType::Warning, "FailedGetResourceMetric", &message).await;
                set_status(&hpas, &name, json!({"conditions": conditions, "currentReplicas": current})).await?;
                return Ok(requeue);
            }
        }
    }
    let chosen = readings.iter().max_by_key(|r| r.replicas).expect("at least one metric");
    conditions.push(condition("ScalingActive", true, "ValidMetricFound", &format!("the HPA was able to successfully calculate a replica count from {}", chosen.description)));

    let (min, max) = (spec.min_replicas.unwrap_or(1), spec.max_replicas);
    let recommended = chosen.replicas;
    // Scaling down waits out the stabilization window: the highest
    // recommendation within it wins.
    let key = hpa.metadata.uid.clone().unwrap_or_default();
    let window = |up: bool| {
        let rules = spec.behavior.as_ref().and_then(|b| if up { b.scale_up.clone() } else { b.scale_down.clone() });
        Duration::from_secs(rules.and_then(|r| r.stabilization_window_seconds).unwrap_or(if up { 0 } else { 300 }) as u64)
    };
    let stabilized = {
        let mut all = context.recommendations.lock().unwrap();
        let history = all.entry(key).or_default();
        history.push((Instant::now(), recommended));
        let longest = window(true).max(window(false));
        history.retain(|(at, _)| at.elapsed() <= longest);
        let down_floor = history.iter().filter(|(at, _)| at.elapsed() <= window(false)).map(|(_, r)| *r).max().unwrap_or(recommended);
        let up_ceiling = history.iter().filter(|(at, _)| at.elapsed() <= window(true)).map(|(_, r)| *r).min().unwrap_or(recommended);
        if recommended > current { up_ceiling.max(current) } else { down_floor.min(current) }
    };
    // Upstream's default scale-up rate: 4 pods or 100 %, whichever is more.
    let rate_limited = stabilized.min(current + (current).max(4));
    let desired = rate_limited.clamp(min, max);
    let limited = if desired != rate_limited {
        let (reason, message) = if rate_limited > max { ("TooManyReplicas", "the desired replica count is more than the maximum replica count") } else { ("TooFewReplicas", "the desired replica count is less than the minimum replica count") };
        condition("ScalingLimited", true, reason, message)
    } else {
        condition("ScalingLimited", false, "DesiredWithinRange", "the desired count is within the acceptable range")
    };
    conditions.push(limited);
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
        targets.patch_scale(&target.name, &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": desired}}))).await?;
        let reason = if desired > current { format!("{} above target", chosen.description) } else { "All metrics below target".to_string() };
        publish(&context, &hpa, EventType::Normal, "SuccessfulRescale", &format!("New size: {desired}; reason: {reason}")).await;
        status["lastScaleTime"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    set_status(&hpas, &name, status).await?;
    Ok(requeue)
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

/// A Resource metric (cpu or memory, Utilization or AverageValue) over the
/// pods `selector` picks, from their PodMetrics and requests.
async fn read_metric(client: &kube::Client, ns: &str, selector: &str, metric: &MetricSpec, current: i32) -> Result<Reading, String> {
    let resource = metric.resource.as_ref().filter(|_| metric.type_ == "Resource").ok_or_else(|| format!("metric type {:?} is not supported yet", metric.type_))?;
    let name = resource.name.as_str();
    let pods = Api::<Pod>::namespaced(client.clone(), ns).list(&ListParams::default().labels(selector)).await.map_err(|e| e.to_string())?;
    let running: Vec<&Pod> = pods.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none() && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).collect();
    let metrics_api = ApiResource { group: "metrics.k8s.io".into(), version: "v1beta1".into(), api_version: "metrics.k8s.io/v1beta1".into(), kind: "PodMetrics".into(), plural: "pods".into() };
    let listed = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &metrics_api)
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| format!("unable to get metrics for resource {name}: unable to fetch metrics from resource metrics API: {e}"))?;
    let usage: HashMap<String, i64> = listed
        .items
        .iter()
        .map(|m| {
            let total = m.data["containers"].as_array().into_iter().flatten().filter_map(|c| skiff_quantity::milli(c["usage"][name].as_str()?)).sum();
            (m.metadata.name.clone().unwrap_or_default(), total)
        })
        .collect();
    let measured: Vec<(&Pod, i64)> = running.iter().filter_map(|p| Some((*p, *usage.get(p.metadata.name.as_deref()?)?))).collect();
    if measured.is_empty() {
        return Err(format!("unable to get metrics for resource {name}: no metrics returned from resource metrics API"));
    }
    let total_usage: i64 = measured.iter().map(|(_, u)| u).sum();
    let ready = measured.len() as f64;
    let target = &resource.target;
    let (ratio, current_value) = match (target.type_.as_str(), target.average_utilization, target.average_value.as_ref()) {
        ("Utilization", Some(percent), _) => {
            let mut requested = 0;
            for (pod, _) in &measured {
                let containers = &pod.spec.as_ref().map(|s| s.containers.clone()).unwrap_or_default();
                for c in containers {
                    let request = c.resources.as_ref().and_then(|r| r.requests.as_ref()?.get(name)).and_then(|q| skiff_quantity::milli(&q.0));
                    requested += request.ok_or_else(|| format!("failed to get {name} utilization: missing request for {name} in container {} of Pod {}", c.name, pod.metadata.name.as_deref().unwrap_or("")))?;
                }
            }
            let utilization = (total_usage * 100 / requested.max(1)) as i32;
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
    let description = match target.type_.as_str() {
        "Utilization" => format!("{name} resource utilization (percentage of request)"),
        _ => format!("{name} resource"),
    };
    Ok(Reading { replicas, current: json!({"type": "Resource", "resource": {"name": name, "current": current_value}}), description })
}

/// A CPU amount in millicores, memory in bytes, as quantities.
fn quantity(name: &str, milli: i64) -> String {
    if name == "cpu" { format!("{milli}m") } else { (milli / 1000).to_string() }
}

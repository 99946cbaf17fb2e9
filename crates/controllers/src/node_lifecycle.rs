//! The node lifecycle controller, as upstream's: a node whose kubelet has
//! not renewed its Lease (nor posted status) within the grace period has
//! its conditions set to Unknown; nodes not Ready are tainted
//! `node.kubernetes.io/not-ready` or `unreachable` (NoSchedule and
//! NoExecute), and nodes under memory, disk or PID pressure
//! `node.kubernetes.io/*-pressure` (NoSchedule); and pods on a
//! NoExecute-tainted node are evicted once their toleration of the taint
//! runs out.
//!
//! Upstream's DefaultTolerationSeconds admission plugin gives every pod a
//! 300 s toleration of those two taints; until admission lands, a pod
//! without its own toleration of them gets the configured default here.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use serde_json::json;

use crate::Options;

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const PRESSURE_TAINTS: [(&str, &str); 3] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
];
/// How often nodes are looked at (upstream's nodeMonitorPeriod).
const MONITOR_PERIOD: Duration = Duration::from_secs(5);

pub async fn run(client: kube::Client, options: Options) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let pods: Api<Pod> = Api::all(client);
    let mut ticks = tokio::time::interval(MONITOR_PERIOD);
    loop {
        ticks.tick().await;
        if let Err(e) = monitor(&nodes, &leases, &pods, &options).await {
            tracing::debug!("node lifecycle: {e}");
        }
    }
}

/// What the node lifecycle makes of one node: its conditions set to
/// Unknown if its kubelet is silent past the grace period (`unknown`),
/// and its taints, as they are and as they should be.
pub struct NodeDecision {
    pub unknown: Option<Vec<serde_json::Value>>,
    pub taints: Vec<Taint>,
    pub next: Vec<Taint>,
}

/// One node's decision; `renewed` is when its Lease was last renewed.
pub fn node_decision(node: &Node, renewed: Option<DateTime<Utc>>, options: &Options, now: DateTime<Utc>) -> NodeDecision {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let heartbeat = conditions.iter().find(|c| c.type_ == "Ready").and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0);
    let probed = [renewed, heartbeat].into_iter().flatten().max();
    let silent = probed.is_none_or(|t| now - t > chrono::Duration::from_std(options.node_monitor_grace_period).unwrap_or_default());
    let mut ready = conditions.iter().find(|c| c.type_ == "Ready").map_or("Unknown", |c| c.status.as_str()).to_string();
    let mut unknown = None;
    if silent && ready != "Unknown" {
        let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        unknown = Some(
            conditions
                .iter()
                .map(|c| {
                    json!({"type": c.type_, "status": "Unknown", "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status.",
                           "lastHeartbeatTime": c.last_heartbeat_time, "lastTransitionTime": stamp})
                })
                .collect(),
        );
        ready = "Unknown".into();
    }
    let mut wanted: Vec<(&str, &str)> = match ready.as_str() {
        "True" => vec![],
        "False" => vec![(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")],
        _ => vec![(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")],
    };
    // Upstream's TaintNodesByCondition: a node under pressure takes no new pods.
    for (condition, key) in PRESSURE_TAINTS {
        if ready == "True" && conditions.iter().any(|c| c.type_ == condition && c.status == "True") {
            wanted.push((key, "NoSchedule"));
        }
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let ours = |t: &Taint| t.key == NOT_READY || t.key == UNREACHABLE || PRESSURE_TAINTS.iter().any(|(_, key)| t.key == *key);
    let mut next: Vec<Taint> = taints.iter().filter(|t| !ours(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str()))).cloned().collect();
    for (key, effect) in &wanted {
        if !next.iter().any(|t| t.key == *key && t.effect == *effect) {
            let added = (*effect == "NoExecute").then_some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
            next.push(Taint { key: key.to_string(), effect: effect.to_string(), time_added: added, value: None });
        }
    }
    NodeDecision { unknown, taints, next }
}

async fn monitor(nodes: &Api<Node>, leases: &Api<Lease>, pods: &Api<Pod>, options: &Options) -> Result<(), kube::Error> {
    let now = Utc::now();
    let renewed: HashMap<String, DateTime<Utc>> = leases
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|l| Some((l.metadata.name?, l.spec?.renew_time?.0)))
        .collect();
    let mut tainted: HashMap<String, Vec<Taint>> = HashMap::new();
    for node in nodes.list(&ListParams::default()).await?.items {
        let name = node.metadata.name.clone().unwrap_or_default();
        let NodeDecision { unknown, taints, next } = node_decision(&node, renewed.get(&name).copied(), options, now);
        if let Some(conditions) = unknown {
            nodes.patch_status(&name, &PatchParams::default(), &Patch::Strategic(json!({"status": {"conditions": conditions}}))).await?;
        }
        if next != taints {
            // No taints left: the field goes (null), as Go's omitempty drops it.
            let value = if next.is_empty() { json!(null) } else { json!(next) };
            let patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": value}});
            nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
        let no_execute: Vec<Taint> = next.into_iter().filter(|t| t.effect == "NoExecute").collect();
        if !no_execute.is_empty() {
            tainted.insert(name, no_execute);
        }
    }
    if !tainted.is_empty() {
        evict(pods, &tainted, options, now).await?;
    }
    Ok(())
}

/// Whether a pod on a node with these NoExecute taints is to go: a taint
/// it does not tolerate, or tolerates for a time that is over.
pub fn eviction_due(pod: &Pod, taints: &[Taint], options: &Options, now: DateTime<Utc>) -> bool {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    taints.iter().any(|taint| {
        let since = taint.time_added.as_ref().map_or(now, |t| t.0);
        let tolerated = tolerations.iter().filter(|t| skiff_scheduler::tolerates(t, taint)).map(|t| t.toleration_seconds).collect::<Vec<_>>();
        let seconds = match tolerated.as_slice() {
            // Not tolerated at all: the default admission would have added one.
            [] if taint.key == NOT_READY => Some(options.default_not_ready_toleration_seconds.max(0)),
            [] if taint.key == UNREACHABLE => Some(options.default_unreachable_toleration_seconds.max(0)),
            [] => Some(0),
            // Tolerated: for the shortest time a toleration gives (none: forever).
            some => some.iter().flatten().min().map(|s| (*s).max(0)),
        };
        // A toleration longer than a time can hold (i64::MAX seconds) never runs out.
        seconds.is_some_and(|s| crate::common::plus_seconds(since, s).is_some_and(|until| until <= now))
    })
}

/// Deletes the pods on NoExecute-tainted nodes whose tolerations ran out.
async fn evict(pods: &Api<Pod>, tainted: &HashMap<String, Vec<Taint>>, options: &Options, now: DateTime<Utc>) -> Result<(), kube::Error> {
    for pod in pods.list(&ListParams::default()).await?.items {
        let Some(taints) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).and_then(|n| tainted.get(n)) else { continue };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if eviction_due(&pod, taints, options, now) {
            let (ns, name) = (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default());
            tracing::info!(pod = %format!("{ns}/{name}"), "evicting from a tainted node");
            let params = DeleteParams { preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }), ..Default::default() };
            let _ = Api::<Pod>::namespaced(pods.clone().into_client(), &ns).delete(&name, &params).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Toleration seconds past what a time holds panicked in chrono; they
    /// never run out.
    #[test]
    fn endless_tolerations_never_run_out() {
        let pod: Pod = serde_json::from_value(json!({"spec": {"containers": [], "tolerations": [{"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": i64::MAX}]}})).unwrap();
        let taint = Taint { key: NOT_READY.into(), effect: "NoExecute".into(), time_added: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Utc::now())), value: None };
        let options = Options::default();
        assert!(!eviction_due(&pod, std::slice::from_ref(&taint), &options, Utc::now()));
        let options = Options { default_not_ready_toleration_seconds: i64::MIN, ..Options::default() };
        assert!(eviction_due(&Pod::default(), &[taint], &options, Utc::now()), "a negative default is no toleration");
    }
}

//! `metrics.k8s.io/v1beta1` (NodeMetrics, PodMetrics) for `kubectl top`
//! and the HorizontalPodAutoscaler, as metrics-server serves it, but in
//! process: every `--metric-resolution` the Summary API of each node with
//! an agent is read through the API server's kubelet client; CPU is the
//! rate between the last two readings, memory the working set. Labels are
//! the node's and the pod's, so label selectors work as upstream's.

use std::collections::HashMap;
use std::sync::{RwLock, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use futures::StreamExt;

use crate::handler::Api;
use crate::registry::ListQuery;

/// Nodes whose Summary API is read at once.
const PARALLEL_READS: usize = 16;

/// The latest NodeMetrics and PodMetrics, and the readings rates come from.
#[derive(Default)]
pub struct ResourceMetrics {
    latest: RwLock<Latest>,
}

#[derive(Default)]
struct Latest {
    nodes: Vec<Value>,
    pods: Vec<Value>,
    /// Cumulative CPU (ns) per node, pod container, at the time read.
    previous: HashMap<String, (DateTime<Utc>, u64)>,
}

/// What the scrape reads of a node: of thousands of nodes, most without
/// an agent (simulated ones), decoding only this is a fraction of the cost
/// of decoding each whole.
#[derive(serde::Deserialize)]
struct NodeView {
    metadata: NodeMeta,
    #[serde(default)]
    status: NodeStatus,
}

#[derive(serde::Deserialize)]
struct NodeMeta {
    name: String,
    #[serde(default)]
    labels: Value,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct NodeStatus {
    #[serde(default)]
    daemon_endpoints: DaemonEndpoints,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DaemonEndpoints {
    #[serde(default)]
    kubelet_endpoint: Endpoint,
}

#[derive(serde::Deserialize, Default)]
struct Endpoint {
    #[serde(rename = "Port", default)]
    port: u32,
}

/// `1234567n` cores as upstream formats a CPU quantity (nanocores), and
/// `Ki` for memory.
fn cpu(nano_cores: u64) -> String {
    format!("{nano_cores}n")
}

fn memory(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

fn go_duration(d: chrono::Duration) -> String {
    let ms = d.num_milliseconds().max(0);
    if ms % 1000 == 0 { format!("{}s", ms / 1000) } else { format!("{}.{:03}s", ms / 1000, ms % 1000) }
}

impl ResourceMetrics {
    /// NodeMetrics of every node read, or PodMetrics of every pod read in
    /// `namespace` (all when None).
    pub fn objects(&self, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let latest = self.latest.read().unwrap_or_else(|e| e.into_inner());
        match kind {
            "NodeMetrics" => latest.nodes.clone(),
            _ => latest.pods.iter().filter(|p| namespace.is_none_or(|ns| p["metadata"]["namespace"] == ns)).cloned().collect(),
        }
    }

    /// Reads every node's Summary API each `resolution`, for the server's life.
    pub async fn scrape(api: Weak<Api>, resolution: Duration) {
        loop {
            let Some(api) = api.upgrade() else { return };
            if let Err(e) = Self::scrape_once(&api).await {
                tracing::debug!("resource metrics: {e}");
            }
            drop(api);
            tokio::time::sleep(resolution).await;
        }
    }

    async fn scrape_once(api: &Api) -> Result<(), String> {
        let nodes_def = skiff_api::resources::find("", "v1", "nodes").ok_or("no nodes resource")?;
        let pods_def = skiff_api::resources::find("", "v1", "pods").ok_or("no pods resource")?;
        let listed = api.registry.list(nodes_def, None, &ListQuery::default()).await.map_err(|e| e.message)?;
        let nodes: Vec<NodeView> = listed.items.iter().filter_map(|raw| serde_json::from_slice(raw).ok()).collect();
        let reads = nodes.into_iter().filter(|n| n.status.daemon_endpoints.kubelet_endpoint.port > 0).map(|node| async move {
            let name = node.metadata.name.clone();
            let summary = tokio::time::timeout(Duration::from_secs(10), api.kubelets.get(&api.registry, &name, "/stats/summary")).await;
            let summary = match summary {
                Ok(Ok(response)) => axum::body::to_bytes(response.into_body(), 64 << 20).await.ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()),
                _ => None,
            };
            (node, summary)
        });
        // A few nodes at a time: a large cluster's reads must not crowd
        // out the API server's own work.
        let read: Vec<_> = futures::stream::iter(reads).buffer_unordered(PARALLEL_READS).collect().await;
        let metrics = &api.resource_metrics;
        let mut previous = std::mem::take(&mut metrics.latest.write().unwrap_or_else(|e| e.into_inner()).previous);
        let mut next = Latest::default();
        // The CPU rate since the last reading of `key`, and its window.
        let mut rate = |key: String, at: DateTime<Utc>, cumulative: u64| -> Option<(u64, chrono::Duration)> {
            next.previous.insert(key.clone(), (at, cumulative));
            let (then, before) = previous.remove(&key)?;
            let window = at - then;
            let ns = window.num_nanoseconds().filter(|n| *n > 0)? as u64;
            // In u128: a window's CPU seconds times 10^9 overflow u64 past 18 s.
            Some(((cumulative.checked_sub(before)? as u128 * 1_000_000_000 / ns as u128) as u64, window))
        };
        let mut nodes_out = Vec::new();
        let mut pods_out = Vec::new();
        for (node, summary) in read {
            let Some(summary) = summary else { continue };
            let name = &node.metadata.name;
            let stamp = |v: &Value| v["time"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc)).unwrap_or_else(Utc::now);
            let usage = |v: &Value| (v["cpu"]["usageCoreNanoSeconds"].as_u64(), v["memory"]["workingSetBytes"].as_u64(), stamp(&v["cpu"]));
            if let (Some(cumulative), Some(working_set), at) = usage(&summary["node"]) {
                if let Some((cores, window)) = rate(format!("node/{name}"), at, cumulative) {
                    nodes_out.push(json!({
                        "kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                        "metadata": {"name": name, "labels": node.metadata.labels, "creationTimestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)},
                        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "window": go_duration(window),
                        "usage": {"cpu": cpu(cores), "memory": memory(working_set)},
                    }));
                }
            }
            for pod in summary["pods"].as_array().into_iter().flatten() {
                let (namespace, pod_name) = (pod["podRef"]["namespace"].as_str().unwrap_or_default(), pod["podRef"]["name"].as_str().unwrap_or_default());
                let mut containers = Vec::new();
                let mut window = None;
                for c in pod["containers"].as_array().into_iter().flatten() {
                    let container = c["name"].as_str().unwrap_or_default();
                    let (Some(cumulative), Some(working_set), at) = usage(c) else { continue };
                    if let Some((cores, w)) = rate(format!("pod/{namespace}/{pod_name}/{container}"), at, cumulative) {
                        window.get_or_insert((at, w));
                        containers.push(json!({"name": container, "usage": {"cpu": cpu(cores), "memory": memory(working_set)}}));
                    }
                }
                let Some((at, window)) = window else { continue };
                let labels = api.registry.get(pods_def, Some(namespace), pod_name).await.ok().map(|p| p["metadata"]["labels"].clone()).unwrap_or(Value::Null);
                pods_out.push(json!({
                    "kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                    "metadata": {"name": pod_name, "namespace": namespace, "labels": labels, "creationTimestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)},
                    "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "window": go_duration(window),
                    "containers": containers,
                }));
            }
        }
        next.nodes = nodes_out;
        next.pods = pods_out;
        *metrics.latest.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }
}

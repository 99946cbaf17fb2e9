//! The agent's Prometheus endpoints, named and labelled as upstream's
//! kubelet serves them: `/metrics/resource` (what metrics-server reads),
//! `/metrics/cadvisor` (per-container CPU, memory, filesystem and the pods' network,
//! cAdvisor's names) and `/metrics` (the agent's own). Built per scrape
//! from one set of readings (`stats.rs`).

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::stats::{Readings, Usage};
use crate::Kubelet;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Latencies kept between scrapes.
pub(crate) struct Timings {
    /// From the agent first seeing a new pod to its phase Running.
    pub pod_start: Histogram,
    /// One pass of a pod's worker.
    pub pod_sync: Histogram,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            // Upstream's buckets for each.
            pod_start: Histogram::new([0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0]),
            pod_sync: Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        }
    }
}

/// One scrape's families, in the order registered.
#[derive(Default)]
struct Scrape(Registry);

impl Scrape {
    fn counter(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels, f64)>) {
        let family = Family::<Labels, Counter<f64, AtomicU64>>::default();
        for (labels, value) in samples {
            family.get_or_create(&labels).inc_by(value);
        }
        self.0.register(name, help, family);
    }

    fn gauge(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels, f64)>) {
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for (labels, value) in samples {
            family.get_or_create(&labels).set(value);
        }
        self.0.register(name, help, family);
    }

    fn text(self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.0).expect("writing to a String cannot fail");
        out
    }
}

fn seconds(usage: &Usage) -> f64 {
    usage.cpu_ns as f64 / 1e9
}

fn start_time(started_at: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(started_at).map(|t| t.timestamp() as f64).unwrap_or(0.0)
}

/// `/metrics/resource`
pub(crate) fn resource(readings: &Readings) -> String {
    let mut scrape = Scrape::default();
    let node = readings.node.iter();
    scrape.counter("node_cpu_usage_seconds", "Cumulative cpu time consumed by the node in core-seconds", node.clone().map(|u| (vec![], seconds(u))));
    scrape.gauge("node_memory_working_set_bytes", "Current working set of the node in bytes", node.map(|u| (vec![], u.working_set as f64)));
    let pods = || readings.pods.iter().filter_map(|p| Some((labels(&[("namespace", &p.namespace), ("pod", &p.name)]), p.usage?)));
    scrape.counter("pod_cpu_usage_seconds", "Cumulative cpu time consumed by the pod in core-seconds", pods().map(|(l, u)| (l, seconds(&u))));
    scrape.gauge("pod_memory_working_set_bytes", "Current working set of the pod in bytes", pods().map(|(l, u)| (l, u.working_set as f64)));
    let containers = || {
        readings.pods.iter().flat_map(|p| p.containers.iter().map(move |c| (labels(&[("container", &c.name), ("namespace", &p.namespace), ("pod", &p.name)]), c)))
    };
    scrape.counter("container_cpu_usage_seconds", "Cumulative cpu time consumed by the container in core-seconds", containers().filter_map(|(l, c)| Some((l, seconds(&c.usage?)))));
    scrape.gauge("container_memory_working_set_bytes", "Current working set of the container in bytes", containers().filter_map(|(l, c)| Some((l, c.usage?.working_set as f64))));
    scrape.gauge("container_start_time_seconds", "Start time of the container since unix epoch in seconds", containers().map(|(l, c)| (l, start_time(&c.started_at))));
    scrape.gauge("resource_scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", [(vec![], 0.0)]);
    scrape.text()
}

/// `/metrics/cadvisor`: each container, each pod's cgroup (`container=""`)
/// and the node's (`id="/"`), with cAdvisor's labels.
pub(crate) fn cadvisor(readings: &Readings) -> String {
    let mut series: Vec<(Labels, Usage, Option<f64>)> = Vec::new();
    let mut filesystems: Vec<(Labels, f64)> = Vec::new();
    if let Some(node) = readings.node {
        series.push((labels(&[("container", ""), ("id", "/"), ("image", ""), ("name", ""), ("namespace", ""), ("pod", "")]), node, None));
    }
    for p in &readings.pods {
        let pod_id = format!("/{}", crate::pods::cgroup_parent(&p.uid).trim_start_matches('/'));
        if let Some(usage) = p.usage {
            series.push((labels(&[("container", ""), ("id", &pod_id), ("image", ""), ("name", ""), ("namespace", &p.namespace), ("pod", &p.name)]), usage, None));
        }
        for c in &p.containers {
            let id = format!("{pod_id}/{}", c.id);
            if let Some(usage) = c.usage {
                let l = labels(&[("container", &c.name), ("id", &id), ("image", &c.image), ("name", &c.id), ("namespace", &p.namespace), ("pod", &p.name)]);
                filesystems.push((l.clone(), c.rootfs_bytes as f64));
                series.push((l, usage, Some(start_time(&c.started_at))));
            }
        }
    }
    let mut scrape = Scrape::default();
    scrape.counter("container_cpu_usage_seconds", "Cumulative cpu time consumed in seconds", series.iter().map(|(l, u, _)| (l.clone(), seconds(u))));
    scrape.gauge("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", series.iter().map(|(l, u, _)| (l.clone(), u.memory as f64)));
    scrape.gauge("container_memory_working_set_bytes", "Current working set in bytes", series.iter().map(|(l, u, _)| (l.clone(), u.working_set as f64)));
    scrape.gauge("container_memory_rss", "Size of RSS in bytes", series.iter().map(|(l, u, _)| (l.clone(), u.rss as f64)));
    scrape.gauge("container_start_time_seconds", "Start time of the container since unix epoch in seconds", series.iter().filter_map(|(l, _, s)| Some((l.clone(), (*s)?))));
    scrape.gauge("container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem", filesystems);
    // As cAdvisor: only cgroups with a CPU quota have CFS periods.
    let throttled = || series.iter().filter(|(_, u, _)| u.throttling.periods > 0).map(|(l, u, _)| (l.clone(), u.throttling));
    scrape.counter("container_cpu_cfs_periods", "Number of elapsed enforcement period intervals", throttled().map(|(l, t)| (l, t.periods as f64)));
    scrape.counter("container_cpu_cfs_throttled_periods", "Number of throttled period intervals", throttled().map(|(l, t)| (l, t.throttled_periods as f64)));
    scrape.counter("container_cpu_cfs_throttled_seconds", "Total time duration the container has been throttled", throttled().map(|(l, t)| (l, t.throttled_ns as f64 / 1e9)));
    let interfaces = || {
        readings.pods.iter().flat_map(|p| {
            let id = format!("/{}", crate::pods::cgroup_parent(&p.uid).trim_start_matches('/'));
            p.interfaces.iter().map(move |i| (labels(&[("container", ""), ("id", &id), ("image", ""), ("interface", &i.name), ("name", ""), ("namespace", &p.namespace), ("pod", &p.name)]), i))
        })
    };
    scrape.counter("container_network_receive_bytes", "Cumulative count of bytes received", interfaces().map(|(l, i)| (l, i.rx_bytes as f64)));
    scrape.counter("container_network_receive_packets", "Cumulative count of packets received", interfaces().map(|(l, i)| (l, i.rx_packets as f64)));
    scrape.counter("container_network_receive_errors", "Cumulative count of errors encountered while receiving", interfaces().map(|(l, i)| (l, i.rx_errors as f64)));
    scrape.counter("container_network_transmit_bytes", "Cumulative count of bytes transmitted", interfaces().map(|(l, i)| (l, i.tx_bytes as f64)));
    scrape.counter("container_network_transmit_packets", "Cumulative count of packets transmitted", interfaces().map(|(l, i)| (l, i.tx_packets as f64)));
    scrape.counter("container_network_transmit_errors", "Cumulative count of errors encountered while transmitting", interfaces().map(|(l, i)| (l, i.tx_errors as f64)));
    scrape.text()
}

impl Kubelet {
    /// `/metrics`: the agent's own. Counts only, so read from the
    /// runtime's records rather than every cgroup and disk.
    pub(crate) async fn own_metrics(&self) -> String {
        let containers = self.runtime.list(None).await.unwrap_or_default();
        let running: Vec<_> = containers.iter().filter(|c| matches!(c.state, crate::runtime::State::Running { .. })).collect();
        let pods: std::collections::HashSet<&str> = running.iter().map(|c| c.meta.pod_uid.as_str()).collect();
        let mut scrape = Scrape::default();
        scrape.gauge("kubelet_node_name", "The node's name. The count is always 1", [(labels(&[("node", &self.config.node_name)]), 1.0)]);
        scrape.gauge("kubelet_running_pods", "Number of pods that have a running pod sandbox", [(vec![], pods.len() as f64)]);
        scrape.gauge("kubelet_running_containers", "Number of containers currently running", [(labels(&[("container_state", "running")]), running.len() as f64)]);
        let panics = self.sync_panics.load(std::sync::atomic::Ordering::Relaxed) as f64;
        let claims = self.volumes.claim_usage().await;
        // One series per claim, however many pods here mount it.
        let mut seen = std::collections::HashSet::new();
        let claims: Vec<_> = claims.iter().filter(|(_, _, c, _)| seen.insert((c.namespace.clone(), c.claim.clone()))).collect();
        let per_claim = |figure: fn(&crate::volumes::ClaimUsage) -> Option<f64>| {
            claims.iter().filter_map(move |(_, _, c, u)| Some((labels(&[("namespace", &c.namespace), ("persistentvolumeclaim", &c.claim)]), figure(u)?)))
        };
        scrape.gauge("kubelet_volume_stats_capacity_bytes", "Capacity in bytes of the volume", per_claim(|u| Some(u.bytes.as_ref()?.total as f64)));
        scrape.gauge("kubelet_volume_stats_available_bytes", "Number of available bytes in the volume", per_claim(|u| Some(u.bytes.as_ref()?.available as f64)));
        scrape.gauge("kubelet_volume_stats_used_bytes", "Number of used bytes in the volume", per_claim(|u| Some(u.bytes.as_ref()?.used as f64)));
        scrape.gauge("kubelet_volume_stats_inodes", "Maximum number of inodes in the volume", per_claim(|u| Some(u.inodes.as_ref()?.total as f64)));
        scrape.gauge("kubelet_volume_stats_inodes_free", "Number of free inodes in the volume", per_claim(|u| Some(u.inodes.as_ref()?.available as f64)));
        scrape.gauge("kubelet_volume_stats_inodes_used", "Number of used inodes in the volume", per_claim(|u| Some(u.inodes.as_ref()?.used as f64)));
        let (pulls, failed) = *crate::lock(&self.pulls);
        let pull = || labels(&[("operation_type", "pull_image")]);
        scrape.counter("kubelet_runtime_operations", "Cumulative number of runtime operations by operation type", [(pull(), pulls as f64)]);
        scrape.counter("kubelet_runtime_operations_errors", "Cumulative number of runtime operation errors by operation type", [(pull(), failed as f64)]);
        scrape.counter("kubelet_pod_sync_panics", "Number of pod syncs that panicked; the pod gets a FailedSync event and is synced again after a back-off", [(vec![], panics)]);
        let restarts: Vec<(Labels, f64)> = crate::lock(&self.restarts).iter().map(|(task, n)| (labels(&[("task", task)]), *n as f64)).collect();
        scrape.counter("kubelet_task_restarts", "Number of times one of the agent's loops stopped or panicked and was started again", restarts);
        scrape.0.register("kubelet_pod_start_duration_seconds", "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run", self.timings.pod_start.clone());
        scrape.0.sub_registry_with_label(("operation_type".into(), "sync".into())).register(
            "kubelet_pod_worker_duration_seconds",
            "Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
            self.timings.pod_sync.clone(),
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &scrape.0).expect("writing to a String cannot fail");
        if let Some(more) = &self.config.more_metrics {
            out.push_str(&(more.0)());
        }
        prometheus_client::encoding::text::encode_eof(&mut out).expect("writing to a String cannot fail");
        out
    }
}

//! Node-pressure eviction and image garbage collection, as upstream's
//! kubelet does them. Every 10 s the eviction signals are read against
//! the hard thresholds (`--eviction-hard`, upstream's defaults
//! `memory.available<100Mi,nodefs.available<10%,imagefs.available<15%,nodefs.inodesFree<5%`):
//! a crossed one sets the node's MemoryPressure, DiskPressure or
//! PIDPressure condition. Under disk pressure unused images go first;
//! then, while pressure lasts, one pod at a time is evicted (phase Failed,
//! reason Evicted), ranked as upstream ranks them; critical pods never are.
//! While pressed, new pods are refused as upstream's admission refuses
//! them: BestEffort ones under memory pressure, all under disk or PID
//! pressure.
//!
//! Images are also collected when the disk holding them is fuller than
//! `--image-gc-high-threshold` (checked every 5 minutes, as upstream),
//! down to `--image-gc-low-threshold`, oldest used first, never one a
//! container uses or one used within `--image-minimum-gc-age`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::host::{disk, MemInfo};
use crate::Kubelet;

const HOUSEKEEPING: Duration = Duration::from_secs(10);
const IMAGE_GC_PERIOD: Duration = Duration::from_secs(300);
/// Upstream's `SystemCriticalPriority`: pods at or above it are never evicted.
const CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// A threshold: an amount, or a share of the capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Bytes(u64),
    Percent(f64),
}

impl Amount {
    pub fn of(&self, capacity: u64) -> u64 {
        match self {
            Amount::Bytes(b) => *b,
            Amount::Percent(p) => (capacity as f64 * p / 100.0) as u64,
        }
    }
}

/// The hard eviction thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub memory_available: Amount,
    pub nodefs_available: Amount,
    pub nodefs_inodes_free: Amount,
    pub imagefs_available: Amount,
    pub pid_available: Option<Amount>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            memory_available: Amount::Bytes(100 << 20),
            nodefs_available: Amount::Percent(10.0),
            nodefs_inodes_free: Amount::Percent(5.0),
            imagefs_available: Amount::Percent(15.0),
            pid_available: None,
        }
    }
}

impl std::str::FromStr for Thresholds {
    type Err = String;

    /// `memory.available<100Mi,nodefs.available<10%`; signals not named
    /// keep upstream's defaults.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut thresholds = Thresholds::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (signal, amount) = part.split_once('<').ok_or_else(|| format!("{part:?}: expected SIGNAL<AMOUNT"))?;
            let amount = match amount.strip_suffix('%') {
                Some(p) => Amount::Percent(p.parse::<f64>().ok().filter(|p| (0.0..=100.0).contains(p)).ok_or_else(|| format!("{part:?}: a percentage of 0 to 100"))?),
                None => Amount::Bytes(skiff_quantity::value(amount).and_then(|v| u64::try_from(v).ok()).ok_or_else(|| format!("{part:?}: not a quantity"))?),
            };
            match signal {
                "memory.available" => thresholds.memory_available = amount,
                "nodefs.available" => thresholds.nodefs_available = amount,
                "nodefs.inodesFree" => thresholds.nodefs_inodes_free = amount,
                "imagefs.available" => thresholds.imagefs_available = amount,
                "pid.available" => thresholds.pid_available = Some(amount),
                other => return Err(format!("unknown eviction signal {other:?}")),
            }
        }
        Ok(thresholds)
    }
}

/// Image garbage collection's settings.
#[derive(Debug, Clone)]
pub struct ImageGc {
    pub high_percent: u8,
    pub low_percent: u8,
    pub minimum_age: Duration,
}

impl Default for ImageGc {
    fn default() -> Self {
        ImageGc { high_percent: 85, low_percent: 80, minimum_age: Duration::from_secs(120) }
    }
}

/// Which conditions the node is under.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

/// One signal read against its threshold.
struct Signal {
    /// The resource upstream names in eviction messages.
    resource: &'static str,
    condition: &'static str,
    available: u64,
    threshold: u64,
    /// How the threshold was given, for messages (`100Mi`, `10%`).
    given: String,
}

impl Signal {
    fn crossed(&self) -> bool {
        self.available < self.threshold
    }
}

fn describe(amount: &Amount) -> String {
    match amount {
        Amount::Bytes(b) => skiff_quantity::format(*b as i64 * 1000, true),
        Amount::Percent(p) => format!("{p}%"),
    }
}

fn critical(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.priority).is_some_and(|p| p >= CRITICAL_PRIORITY)
}

fn best_effort(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.into_iter().flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten())).all(|c| {
        c.resources.as_ref().is_none_or(|r| r.requests.as_ref().is_none_or(|m| m.is_empty()) && r.limits.as_ref().is_none_or(|m| m.is_empty()))
    })
}

/// Bytes of memory a pod's containers request.
fn memory_request(pod: &Pod) -> u64 {
    let spec = pod.spec.as_ref();
    let requested = |c: &k8s_openapi::api::core::v1::Container| {
        let resources = c.resources.as_ref();
        let quantity = resources.and_then(|r| r.requests.as_ref().and_then(|m| m.get("memory")).or(r.limits.as_ref().and_then(|m| m.get("memory"))));
        quantity.and_then(|q| skiff_quantity::value(&q.0)).unwrap_or(0).max(0) as u64
    };
    spec.map(|s| s.containers.iter().map(requested).sum()).unwrap_or(0)
}

impl Kubelet {
    fn signals(&self) -> Vec<Signal> {
        let t = &self.config.eviction_hard;
        let mut signals = Vec::new();
        let memory = MemInfo::read();
        if let (Some(total), Some(available)) = (memory.bytes("MemTotal"), memory.bytes("MemAvailable")) {
            signals.push(Signal { resource: "memory", condition: "MemoryPressure", available, threshold: t.memory_available.of(total), given: describe(&t.memory_available) });
        }
        if let Some(d) = disk(&self.config.data_dir) {
            signals.push(Signal { resource: "ephemeral-storage", condition: "DiskPressure", available: d.available, threshold: t.nodefs_available.of(d.total), given: describe(&t.nodefs_available) });
            signals.push(Signal { resource: "inodes", condition: "DiskPressure", available: d.inodes_free, threshold: t.nodefs_inodes_free.of(d.inodes), given: describe(&t.nodefs_inodes_free) });
        }
        if let Some(d) = disk(self.images.root()) {
            signals.push(Signal { resource: "ephemeral-storage", condition: "DiskPressure", available: d.available, threshold: t.imagefs_available.of(d.total), given: describe(&t.imagefs_available) });
        }
        if let Some(threshold) = &t.pid_available {
            let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(32768);
            let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            let running: u64 = loadavg.split_whitespace().nth(3).and_then(|f| f.split('/').nth(1)?.parse().ok()).unwrap_or(0);
            signals.push(Signal { resource: "pids", condition: "PIDPressure", available: max.saturating_sub(running), threshold: threshold.of(max), given: describe(threshold) });
        }
        signals
    }

    /// The conditions the node is under now.
    pub(crate) fn pressure(&self) -> Pressure {
        let signals = self.signals();
        let under = |condition: &str| signals.iter().any(|s| s.condition == condition && s.crossed());
        Pressure { memory: under("MemoryPressure"), disk: under("DiskPressure"), pid: under("PIDPressure") }
    }

    /// Why a new pod may not start here now, in upstream's words.
    pub(crate) fn refusal(&self, pod: &Pod) -> Option<String> {
        if critical(pod) {
            return None;
        }
        let pressure = *crate::lock(&self.pressed);
        let condition = match pressure {
            Pressure { disk: true, .. } => "DiskPressure",
            Pressure { pid: true, .. } => "PIDPressure",
            Pressure { memory: true, .. } if best_effort(pod) => "MemoryPressure",
            _ => return None,
        };
        Some(format!("Pod was rejected: The node had condition: [{condition}]. "))
    }

    /// Reads the signals every 10 s and acts on them; runs for the
    /// agent's life.
    pub(crate) async fn housekeeping(self: Arc<Self>) {
        let mut last_gc: Option<Instant> = None;
        loop {
            let pressure = self.pressure();
            let changed = std::mem::replace(&mut *crate::lock(&self.pressed), pressure) != pressure;
            if changed {
                if let Err(e) = self.post_node_status().await {
                    tracing::warn!("posting the node's pressure: {e:#}");
                }
            }
            if pressure.disk || last_gc.is_none_or(|at| at.elapsed() >= IMAGE_GC_PERIOD) {
                last_gc = Some(Instant::now());
                self.collect_images(pressure.disk).await;
            }
            let crossed: Vec<Signal> = self.signals().into_iter().filter(Signal::crossed).collect();
            if let Some(signal) = crossed.first() {
                if crate::lock(&self.evictions).is_empty() {
                    if let Err(e) = self.evict_one(signal).await {
                        tracing::warn!("evicting a pod: {e:#}");
                    }
                }
            }
            tokio::time::sleep(HOUSEKEEPING).await;
        }
    }

    /// Removes unused images: all of them under disk pressure, else while
    /// the disk is fuller than the high threshold, down to the low one.
    async fn collect_images(&self, all: bool) {
        let gc = &self.config.image_gc;
        let usage = || disk(self.images.root()).map_or(0, |d| 100 - d.available * 100 / d.total.max(1));
        if !all && usage() <= gc.high_percent as u64 {
            return;
        }
        let containers = self.runtime.list(None).await.unwrap_or_default();
        let in_use: Vec<&str> = containers.iter().filter_map(|c| c.meta.image_id.rsplit_once('@').map(|(_, digest)| digest)).collect();
        let mut unused: Vec<_> = self.images.list().into_iter().filter(|i| !in_use.contains(&i.digest.as_str())).collect();
        unused.sort_by(|a, b| a.last_used.cmp(&b.last_used));
        for image in unused {
            if !all && usage() <= gc.low_percent as u64 {
                return;
            }
            let age = image.last_used.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| chrono::Utc::now() - t.with_timezone(&chrono::Utc));
            if age.is_some_and(|a| a.to_std().unwrap_or_default() < gc.minimum_age) {
                continue;
            }
            match self.images.remove(&image.digest) {
                Ok(_) => tracing::info!("image garbage collection removed {}", image.references.join(",")),
                Err(e) => tracing::warn!("removing image {}: {e:#}", image.digest),
            }
        }
    }

    /// Marks the pod to evict first for `signal`; its worker stops it and
    /// reports it Evicted.
    async fn evict_one(&self, signal: &Signal) -> anyhow::Result<()> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let listed = pods.list(&ListParams::default().fields(&format!("spec.nodeName={}", self.config.node_name))).await?;
        let readings = self.readings().await;
        let usage: HashMap<&str, u64> = readings.pods.iter().filter_map(|p| Some((p.uid.as_str(), p.usage?.working_set))).collect();
        let candidates = listed.items.iter().filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !critical(p) && p.metadata.deletion_timestamp.is_none() && matches!(phase, Some("Running") | Some("Pending") | None)
        });
        // Upstream's ranking: usage over requests first, then lower
        // priority, then (for memory) more usage over requests.
        let victim = candidates.max_by_key(|p| {
            let used = usage.get(p.metadata.uid.as_deref().unwrap_or("")).copied().unwrap_or(0);
            let over = used.saturating_sub(memory_request(p));
            let priority = p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
            (used > memory_request(p), -(priority as i64), if signal.resource == "memory" { over } else { 0 })
        });
        let Some(victim) = victim else { return Ok(()) };
        let kib = |b: u64| format!("{}Ki", b / 1024);
        let mut message = format!("The node was low on resource: {}. Threshold quantity: {}, available: {}. ", signal.resource, signal.given, if signal.resource == "inodes" || signal.resource == "pids" { signal.available.to_string() } else { kib(signal.available) });
        if signal.resource == "memory" {
            let uid = victim.metadata.uid.as_deref().unwrap_or("");
            for c in readings.pods.iter().filter(|p| p.uid == uid).flat_map(|p| &p.containers) {
                let request = victim.spec.as_ref().and_then(|s| s.containers.iter().find(|s| s.name == c.name)).and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("memory").map(|q| q.0.clone())).unwrap_or_else(|| "0".into());
                if let Some(u) = c.usage {
                    message.push_str(&format!("Container {} was using {}, request is {request}, has larger consumption of memory. ", c.name, kib(u.working_set)));
                }
            }
        }
        tracing::warn!("evicting pod {}/{}: {message}", victim.metadata.namespace.as_deref().unwrap_or(""), victim.metadata.name.as_deref().unwrap_or(""));
        crate::lock(&self.evictions).insert(victim.metadata.uid.clone().unwrap_or_default(), message);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_as_upstream_writes_them() {
        let t: Thresholds = "memory.available<1Gi, nodefs.available<5%".parse().unwrap();
        assert_eq!(t.memory_available, Amount::Bytes(1 << 30));
        assert_eq!(t.nodefs_available, Amount::Percent(5.0));
        assert_eq!(t.imagefs_available, Amount::Percent(15.0), "unnamed signals keep the defaults");
        assert!("memory.available>1Gi".parse::<Thresholds>().is_err());
        assert!("cpu.available<1".parse::<Thresholds>().is_err());
        assert!("nodefs.available<120%".parse::<Thresholds>().is_err());
        assert_eq!(Amount::Percent(10.0).of(1000), 100);
    }
}

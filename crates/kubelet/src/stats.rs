//! `/stats/summary`, upstream's Summary API (stats/v1alpha1): CPU and
//! memory of the node, and of each pod and container from its cgroup
//! (v1 `cpuacct` and `memory`, or v2), and each pod's network counters,
//! as metrics-server and `kubectl top` read them. CPU rates
//! (`usageNanoCores`) come from the previous reading. The same readings
//! feed the Prometheus endpoints (`metrics.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

use crate::runtime::State;
use crate::Kubelet;

/// The previous cumulative CPU reading per cgroup, for rates.
#[derive(Default)]
pub struct Rates(Mutex<HashMap<String, (Instant, u64)>>);

impl Rates {
    /// Nanocores used since the last reading of `key`, if there was one.
    fn nano_cores(&self, key: &str, usage_ns: u64) -> Option<u64> {
        let now = Instant::now();
        let previous = crate::lock(&self.0).insert(key.to_string(), (now, usage_ns));
        let (at, before) = previous?;
        let elapsed = now.duration_since(at).as_nanos();
        // In u128: a busy node uses more than 18 s of CPU between readings,
        // and that times 10^9 overflows u64.
        (elapsed > 0 && usage_ns >= before).then(|| ((usage_ns - before) as u128 * 1_000_000_000 / elapsed) as u64)
    }
}

fn read_u64(path: PathBuf) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn stat_field(path: PathBuf, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// CFS bandwidth control's counts: periods run with a quota, periods
/// throttled, and the time throttled (ns). All 0 without a CPU limit.
#[derive(Clone, Copy, Default)]
pub(crate) struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// Cumulative CPU (ns) and memory (usage, working set, rss) of a cgroup
/// path relative to the hierarchy roots ("" for the node), and its CPU
/// throttling.
fn cgroup(path: &str) -> Option<(u64, u64, u64, u64, Throttling)> {
    let path = path.trim_start_matches('/');
    let v1 = PathBuf::from("/sys/fs/cgroup/cpuacct").join(path);
    if v1.join("cpuacct.usage").exists() {
        let cpu = read_u64(v1.join("cpuacct.usage"))?;
        let memory = PathBuf::from("/sys/fs/cgroup/memory").join(path);
        let usage = read_u64(memory.join("memory.usage_in_bytes"))?;
        let stat = memory.join("memory.stat");
        let inactive = stat_field(stat.clone(), "total_inactive_file").unwrap_or(0);
        let rss = stat_field(stat, "total_rss").unwrap_or(0);
        let cpu_stat = PathBuf::from("/sys/fs/cgroup/cpu").join(path).join("cpu.stat");
        let throttling = Throttling {
            periods: stat_field(cpu_stat.clone(), "nr_periods").unwrap_or(0),
            throttled_periods: stat_field(cpu_stat.clone(), "nr_throttled").unwrap_or(0),
            throttled_ns: stat_field(cpu_stat, "throttled_time").unwrap_or(0),
        };
        return Some((cpu, usage, usage.saturating_sub(inactive), rss, throttling));
    }
    let v2 = PathBuf::from("/sys/fs/cgroup").join(path);
    let cpu = stat_field(v2.join("cpu.stat"), "usage_usec")? * 1000;
    let usage = read_u64(v2.join("memory.current"))?;
    let inactive = stat_field(v2.join("memory.stat"), "inactive_file").unwrap_or(0);
    let rss = stat_field(v2.join("memory.stat"), "anon").unwrap_or(0);
    let throttling = Throttling {
        periods: stat_field(v2.join("cpu.stat"), "nr_periods").unwrap_or(0),
        throttled_periods: stat_field(v2.join("cpu.stat"), "nr_throttled").unwrap_or(0),
        throttled_ns: stat_field(v2.join("cpu.stat"), "throttled_usec").unwrap_or(0) * 1000,
    };
    Some((cpu, usage, usage.saturating_sub(inactive), rss, throttling))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One cgroup's reading.
#[derive(Clone, Copy)]
pub(crate) struct Usage {
    pub cpu_ns: u64,
    pub nano_cores: Option<u64>,
    pub memory: u64,
    pub working_set: u64,
    pub rss: u64,
    pub throttling: Throttling,
}

fn usage(rates: &Rates, key: &str, path: &str) -> Option<Usage> {
    let (cpu_ns, memory, working_set, rss, throttling) = cgroup(path)?;
    Some(Usage { cpu_ns, nano_cores: rates.nano_cores(key, cpu_ns), memory, working_set, rss, throttling })
}

/// A network interface's counters, from `/proc/<pid>/net/dev`.
#[derive(Clone)]
pub(crate) struct Interface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
}

/// The interfaces a process sees, but loopback.
fn interfaces(pid: u32) -> Vec<Interface> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let n: Vec<u64> = counters.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            (n.len() >= 16 && name.trim() != "lo").then(|| Interface { name: name.trim().to_string(), rx_bytes: n[0], rx_packets: n[1], rx_errors: n[2], tx_bytes: n[8], tx_packets: n[9], tx_errors: n[10] })
        })
        .collect()
}

/// A process in a pod's cgroup, whose view of the network is the pod's.
fn process_of(cgroup_parent: &str) -> Option<u32> {
    let pod = PathBuf::from("/sys/fs/cgroup/memory").join(cgroup_parent.trim_start_matches('/'));
    let pod = if pod.exists() { pod } else { PathBuf::from("/sys/fs/cgroup").join(cgroup_parent.trim_start_matches('/')) };
    std::fs::read_dir(pod).ok()?.flatten().filter(|e| e.path().is_dir()).find_map(|e| {
        std::fs::read_to_string(e.path().join("cgroup.procs")).ok()?.lines().next()?.trim().parse().ok()
    })
}

pub(crate) struct ContainerReading {
    pub name: String,
    pub id: String,
    pub image: String,
    pub started_at: String,
    pub usage: Option<Usage>,
    /// Bytes its writable layer and its log take.
    pub rootfs_bytes: u64,
    pub log_bytes: u64,
}

pub(crate) struct PodReading {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub usage: Option<Usage>,
    pub interfaces: Vec<Interface>,
    pub containers: Vec<ContainerReading>,
}

/// What the Summary API and the metrics endpoints report, read once.
pub(crate) struct Readings {
    pub time: String,
    pub node: Option<Usage>,
    pub pods: Vec<PodReading>,
}

impl Kubelet {
    pub(crate) async fn readings(&self) -> Readings {
        let containers = self.runtime.list(None).await.unwrap_or_default();
        let mut pods: HashMap<String, PodReading> = HashMap::new();
        for c in containers.iter() {
            let State::Running { started_at } = &c.state else { continue };
            let uid = &c.meta.pod_uid;
            let parent = crate::pods::cgroup_parent(uid);
            let pod = pods.entry(uid.clone()).or_insert_with(|| PodReading {
                namespace: c.meta.pod_namespace.clone(),
                name: c.meta.pod_name.clone(),
                uid: uid.clone(),
                usage: usage(&self.rates, uid, &parent),
                interfaces: if self.sandboxes.namespace(uid, "net").exists() { process_of(&parent).map(interfaces).unwrap_or_default() } else { Vec::new() },
                containers: Vec::new(),
            });
            pod.containers.push(ContainerReading {
                name: c.meta.container.clone(),
                id: c.id.clone(),
                image: c.meta.image.clone(),
                started_at: crate::status::seconds(started_at),
                usage: usage(&self.rates, &c.id, &format!("{parent}/{}", c.id)),
                rootfs_bytes: crate::disk_usage(&self.runtime.writable_layer(&c.id)),
                log_bytes: crate::disk_usage(&c.meta.log_path),
            });
        }
        let mut pods: Vec<PodReading> = pods.into_values().collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Readings { time: now(), node: usage(&self.rates, "", ""), pods }
    }

    pub(crate) async fn summary(&self) -> Value {
        let readings = self.readings().await;
        let mut volumes: HashMap<String, Vec<Value>> = HashMap::new();
        for (uid, name, claim, usage) in self.volumes.claim_usage().await {
            let mut entry = json!({"time": readings.time, "name": name, "pvcRef": {"name": claim.claim, "namespace": claim.namespace}});
            if let Some(b) = usage.bytes {
                (entry["capacityBytes"], entry["availableBytes"], entry["usedBytes"]) = (json!(b.total), json!(b.available), json!(b.used));
            }
            if let Some(i) = usage.inodes {
                (entry["inodes"], entry["inodesFree"], entry["inodesUsed"]) = (json!(i.total), json!(i.available), json!(i.used));
            }
            volumes.entry(uid).or_default().push(entry);
        }
        let time = &readings.time;
        let cpu_and_memory = |usage: &Usage| {
            let mut cpu = json!({"time": time, "usageCoreNanoSeconds": usage.cpu_ns});
            if let Some(rate) = usage.nano_cores {
                cpu["usageNanoCores"] = json!(rate);
            }
            (cpu, json!({"time": time, "usageBytes": usage.memory, "workingSetBytes": usage.working_set, "rssBytes": usage.rss}))
        };
        let pods: Vec<Value> = readings
            .pods
            .iter()
            .map(|p| {
                let containers: Vec<Value> = p
                    .containers
                    .iter()
                    .map(|c| {
                        let mut entry = json!({
                            "name": c.name, "startTime": c.started_at,
                            "rootfs": {"time": time, "usedBytes": c.rootfs_bytes},
                            "logs": {"time": time, "usedBytes": c.log_bytes},
                        });
                        if let Some(usage) = &c.usage {
                            (entry["cpu"], entry["memory"]) = cpu_and_memory(usage);
                        }
                        entry
                    })
                    .collect();
                let mut pod = json!({"podRef": {"name": p.name, "namespace": p.namespace, "uid": p.uid}, "containers": containers});
                if let Some(usage) = &p.usage {
                    (pod["cpu"], pod["memory"]) = cpu_and_memory(usage);
                }
                let interfaces: Vec<Value> = p.interfaces.iter().map(|i| json!({"name": i.name, "rxBytes": i.rx_bytes, "rxErrors": i.rx_errors, "txBytes": i.tx_bytes, "txErrors": i.tx_errors})).collect();
                if let Some(volumes) = volumes.remove(&p.uid) {
                    pod["volume"] = json!(volumes);
                }
                if let Some(first) = interfaces.first() {
                    let mut network = first.clone();
                    network["time"] = json!(time);
                    network["interfaces"] = json!(interfaces);
                    pod["network"] = network;
                }
                pod
            })
            .collect();
        let mut node = json!({"nodeName": self.config.node_name, "startTime": self.started});
        if let Some(usage) = &readings.node {
            let (cpu, mut memory) = cpu_and_memory(usage);
            if let Some(available) = crate::host::MemInfo::read().bytes("MemAvailable") {
                memory["availableBytes"] = json!(available);
            }
            node["cpu"] = cpu;
            node["memory"] = memory;
        }
        json!({"node": node, "pods": pods})
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates_need_two_readings() {
        let rates = super::Rates::default();
        assert_eq!(rates.nano_cores("a", 1_000), None);
        std::thread::sleep(std::time::Duration::from_millis(10));
        let rate = rates.nano_cores("a", 1_000 + 5_000_000).unwrap();
        assert!(rate > 0 && rate <= 500_000_000, "{rate}");
        // A busy node: 40 s of CPU (several cores) since the last reading.
        std::thread::sleep(std::time::Duration::from_millis(10));
        let rate = rates.nano_cores("a", 1_000 + 5_000_000 + 40_000_000_000).unwrap();
        assert!(rate > 1_000_000_000_000, "{rate}");
    }
}

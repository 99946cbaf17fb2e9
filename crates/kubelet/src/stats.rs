//! `/stats/summary`, upstream's Summary API (stats/v1alpha1): CPU and
//! memory of the node, and of each pod and container from its cgroup
//! (v1 `cpuacct` and `memory`, or v2), as metrics-server and `kubectl top`
//! read them. CPU rates (`usageNanoCores`) come from the previous reading.

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
        let previous = self.0.lock().unwrap().insert(key.to_string(), (now, usage_ns));
        let (at, before) = previous?;
        let elapsed = now.duration_since(at).as_nanos() as u64;
        (elapsed > 0 && usage_ns >= before).then(|| (usage_ns - before) * 1_000_000_000 / elapsed)
    }
}

fn read_u64(path: PathBuf) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn stat_field(path: PathBuf, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Cumulative CPU (ns) and memory (usage, working set, rss) of a cgroup
/// path relative to the hierarchy roots ("" for the node).
fn cgroup(path: &str) -> Option<(u64, u64, u64, u64)> {
    let path = path.trim_start_matches('/');
    let v1 = PathBuf::from("/sys/fs/cgroup/cpuacct").join(path);
    if v1.join("cpuacct.usage").exists() {
        let cpu = read_u64(v1.join("cpuacct.usage"))?;
        let memory = PathBuf::from("/sys/fs/cgroup/memory").join(path);
        let usage = read_u64(memory.join("memory.usage_in_bytes"))?;
        let stat = memory.join("memory.stat");
        let inactive = stat_field(stat.clone(), "total_inactive_file").unwrap_or(0);
        let rss = stat_field(stat, "total_rss").unwrap_or(0);
        return Some((cpu, usage, usage.saturating_sub(inactive), rss));
    }
    let v2 = PathBuf::from("/sys/fs/cgroup").join(path);
    let cpu = stat_field(v2.join("cpu.stat"), "usage_usec")? * 1000;
    let usage = read_u64(v2.join("memory.current"))?;
    let inactive = stat_field(v2.join("memory.stat"), "inactive_file").unwrap_or(0);
    let rss = stat_field(v2.join("memory.stat"), "anon").unwrap_or(0);
    Some((cpu, usage, usage.saturating_sub(inactive), rss))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The `cpu` and `memory` objects of one cgroup, as upstream names them.
fn usage(rates: &Rates, key: &str, path: &str) -> Option<(Value, Value)> {
    let (cpu, memory, working_set, rss) = cgroup(path)?;
    let time = now();
    let mut cpu_stats = json!({"time": time, "usageCoreNanoSeconds": cpu});
    if let Some(rate) = rates.nano_cores(key, cpu) {
        cpu_stats["usageNanoCores"] = json!(rate);
    }
    Some((cpu_stats, json!({"time": time, "usageBytes": memory, "workingSetBytes": working_set, "rssBytes": rss})))
}

impl Kubelet {
    pub(crate) async fn summary(&self) -> Value {
        let containers = self.runtime.list(None).await.unwrap_or_default();
        let mut pods: HashMap<String, (Value, Vec<Value>)> = HashMap::new();
        for c in containers.iter() {
            let State::Running { started_at } = &c.state else { continue };
            let uid = &c.meta.pod_uid;
            let pod = pods.entry(uid.clone()).or_insert_with(|| (json!({"name": c.meta.pod_name, "namespace": c.meta.pod_namespace, "uid": uid}), Vec::new()));
            let mut entry = json!({"name": c.meta.container, "startTime": crate::status::seconds(started_at)});
            if let Some((cpu, memory)) = usage(&self.rates, &c.id, &format!("{}/{}", crate::pods::cgroup_parent(uid), c.id)) {
                entry["cpu"] = cpu;
                entry["memory"] = memory;
            }
            pod.1.push(entry);
        }
        let pods: Vec<Value> = pods
            .into_iter()
            .map(|(uid, (pod_ref, containers))| {
                let mut pod = json!({"podRef": pod_ref, "containers": containers});
                if let Some((cpu, memory)) = usage(&self.rates, &uid, &crate::pods::cgroup_parent(&uid)) {
                    pod["cpu"] = cpu;
                    pod["memory"] = memory;
                }
                pod
            })
            .collect();
        let mut node = json!({"nodeName": self.config.node_name, "startTime": self.started});
        if let Some((cpu, mut memory)) = usage(&self.rates, "", "") {
            let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemAvailable:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()));
            if let Some(kib) = available {
                memory["availableBytes"] = json!(kib * 1024);
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
    }
}

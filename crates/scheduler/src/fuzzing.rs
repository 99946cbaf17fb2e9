//! Hostile objects for the property tests and the cargo-fuzz targets
//! (`fuzz/`): valid seeds mutated, as driven by a byte string, into what
//! the API may hold (objects stored before validation, status written by
//! other components): negative and huge integers, `i32::MIN`/`MAX`, empty
//! and huge strings, missing fields, bad percentages and quantities, far
//! timestamps. The controllers' and the node agent's tests use it too.
//!
//! `schedule` runs one scheduling decision (every filter and score,
//! spreading, inter-pod affinity, volume binding, preemption) on such
//! objects; it must never panic.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::config::{Profile, Strategy};
use crate::model::PodInfo;
use crate::State;

/// Choices read from a byte string; zeros once it is used up.
pub struct Entropy<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Entropy<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Entropy { data, at: 0 }
    }

    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        let v = u16::from_le_bytes([self.byte(), self.byte()]) as usize;
        v.checked_rem(n).unwrap_or(0)
    }

    pub fn pick<'b, T>(&mut self, list: &'b [T]) -> &'b T {
        &list[self.below(list.len())]
    }
}

/// Integers at the edges of what Kubernetes' int32 and int64 fields hold.
const NUMBERS: &[i64] = &[
    0, 1, -1, 2, 3, 10, 100, 101, -100, 600, 86_400, 2_147_483_647, -2_147_483_648, 2_147_483_646, -2_147_483_647,
    2_147_483_648, -2_147_483_649, 9_223_372_036_854_775_807, -9_223_372_036_854_775_808, 9_223_372_036_854_775, 315_569_520_000, 1_000_000_000_000,
];

/// Strings that break parsers: percentages, quantities, times, schedules,
/// paths, operators and enum values (known and unknown).
const STRINGS: &[&str] = &[
    "", "0", "1", "-1", "0%", "25%", "100%", "150%", "-5%", "abc%", "%", "NaN%", "inf%", "1e400%", "2147483648%", "-0%", "99999999999999999999%",
    "2147483647", "-2147483648", "9223372036854775807", "-9223372036854775808", "18446744073709551616",
    "9Ei", "8Ei", "-9E", "8E", "1e2147483647", "1.5e-2147483648", "1e-2147483648", "170141183460469231731687303715884105727n", "9223372036854775807m",
    "0.0000000001", "1m", "-1m", "100Gi", "1e18", ".", "1.", "Ki",
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "not a time",
    "* * * * *", "*/1 * * * *", "0 0 30 2 *", "0 0 29 2 *", "0 0 31 4 *", "@every 1h", "@yearly", "@hourly", "TZ=UTC * * * * *", "59 23 31 12 *",
    "UTC", "Asia/Tokyo", "Not/AZone", "",
    "../../etc", "/", "..", "a/../../b", "/etc/../..", "$(A)", "$(", "$$", "\u{0}", "é", "name with spaces", "UPPER",
    "In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Equal", "Bogus",
    "Recreate", "RollingUpdate", "OnDelete", "Parallel", "OrderedReady", "Indexed", "NonIndexed", "Always", "Never", "OnFailure", "IfNotPresent",
    "Pending", "Running", "Succeeded", "Failed", "Unknown", "True", "False", "Ready", "Complete", "Suspended", "FailureTarget",
    "NoSchedule", "NoExecute", "PreferNoSchedule", "Honor", "Ignore", "ScheduleAnyway", "DoNotSchedule",
    "Allow", "Forbid", "Replace", "FailJob", "FailIndex", "Count", "Delete", "Retain",
    "Utilization", "AverageValue", "Value", "Resource", "ContainerResource", "Pods", "Object", "External", "cpu", "memory", "pods", "example.com/gpu",
    "Max", "Min", "Disabled", "Percent",
    "kubernetes.io/hostname", "topology.kubernetes.io/zone", "metadata.name", "a", "b",
];

fn hostile_string(e: &mut Entropy) -> String {
    const SUFFIXES: &[&str] = &["", "", "m", "n", "k", "Ki", "Mi", "Gi", "E", "Ei", "e3", "e-3", "%", ".5"];
    match e.below(16) {
        0 => "a".repeat(1 + e.below(5000)),
        1..=4 => format!("{}{}", e.pick(NUMBERS), e.pick(SUFFIXES)),
        _ => e.pick(STRINGS).to_string(),
    }
}

fn hostile_number(e: &mut Entropy) -> Value {
    match e.below(16) {
        0 => json!(0.5),
        1 => json!(u64::MAX),
        2 => json!(e.byte() as i64 - 128),
        _ => json!(e.pick(NUMBERS)),
    }
}

/// Every part of `value` as a JSON pointer.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(o) => {
            for (k, v) in o {
                pointers(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// One mutation of a part of `value` chosen at random (each part alike,
/// leaves and all): a leaf replaced by a hostile value of its kind (now
/// and then of another kind), a field or item removed, an item repeated,
/// or a part emptied.
pub fn mutate(value: &mut Value, e: &mut Entropy) {
    let mut all = Vec::new();
    pointers(value, String::new(), &mut all);
    let at = e.pick(&all).clone();
    let Some(node) = value.pointer_mut(&at) else { return };
    let other_kind = e.below(12) == 0;
    *node = match (&mut *node, other_kind) {
        (Value::Object(o), false) if !o.is_empty() => {
            let key = o.keys().nth(e.below(o.len())).cloned().unwrap_or_default();
            match e.below(3) {
                0 => {
                    o.insert(key, Value::Null);
                }
                _ => {
                    o.remove(&key);
                }
            }
            return;
        }
        (Value::Array(a), false) if !a.is_empty() => {
            let i = e.below(a.len());
            match e.below(3) {
                0 => {
                    a.remove(i);
                }
                1 => {
                    let copy = a[i].clone();
                    a.push(copy);
                }
                _ => a.clear(),
            }
            return;
        }
        (Value::Number(_), false) => hostile_number(e),
        (Value::String(_), false) => json!(hostile_string(e)),
        (Value::Bool(b), false) => json!(!*b),
        _ => match e.below(6) {
            0 => Value::Null,
            1 => json!({}),
            2 => json!([]),
            3 => hostile_number(e),
            4 => json!(e.below(2) == 0),
            _ => json!(hostile_string(e)),
        },
    };
}

/// `seed` after a few mutations, as `T`; mutations that do not decode are
/// tried again from the seed, and the seed itself is the last resort.
pub fn hostile<T: DeserializeOwned>(seed: &Value, e: &mut Entropy) -> T {
    for _ in 0..4 {
        let mut value = seed.clone();
        for _ in 0..1 + e.below(8) {
            mutate(&mut value, e);
        }
        if let Ok(t) = serde_json::from_value(value) {
            return t;
        }
    }
    serde_json::from_value(seed.clone()).expect("the seeds decode")
}

fn node_seed(i: usize) -> Value {
    json!({
        "metadata": {"name": format!("n{i}"), "labels": {"kubernetes.io/hostname": format!("n{i}"), "topology.kubernetes.io/zone": format!("z{}", i % 2), "rank": i.to_string()}},
        "spec": {"unschedulable": false, "taints": [{"key": "k", "value": "v", "effect": "PreferNoSchedule"}, {"key": "dedicated", "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi", "example.com/gpu": "2"},
            "images": [{"names": ["docker.io/library/nginx:latest", "nginx"], "sizeBytes": 150_000_000}],
        },
    })
}

/// A pod with every scheduling-relevant field, bound to `node` if given.
pub fn pod_seed(name: &str, node: Option<&str>) -> Value {
    let term = json!({"labelSelector": {"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}, "topologyKey": "kubernetes.io/hostname", "namespaces": ["ns"]});
    json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "a", "tier": "web"}, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "nodeName": node,
            "priority": 10,
            "containers": [{
                "name": "c", "image": "nginx",
                "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1Gi", "example.com/gpu": "1"}, "limits": {"cpu": "1", "memory": "2Gi"}},
            }],
            "initContainers": [
                {"name": "init", "image": "busybox", "resources": {"requests": {"cpu": "2", "memory": "64Mi"}}},
                {"name": "sidecar", "image": "envoy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
            ],
            "overhead": {"cpu": "10m"},
            "nodeSelector": {"kubernetes.io/hostname": "n0"},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}, {"key": "k", "operator": "Equal", "value": "v", "tolerationSeconds": 300}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "rank", "operator": "Lt", "values": ["10"]}], "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["x"]}]}]},
                    "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference": {"matchExpressions": [{"key": "rank", "operator": "Gt", "values": ["0"]}]}}],
                },
                "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "podAffinityTerm": term.clone()}]},
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [term.clone()],
                    "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}],
                },
            },
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "a"}}, "minDomains": 2, "matchLabelKeys": ["tier"], "nodeTaintsPolicy": "Honor"},
                {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "a"}}, "nodeAffinityPolicy": "Ignore"},
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}, {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}],
        },
        "status": {"phase": if node.is_some() { "Running" } else { "Pending" }, "startTime": "2026-01-01T00:00:00Z", "nominatedNodeName": "n1"},
    })
}

fn budget_seed() -> Value {
    json!({
        "metadata": {"name": "b", "namespace": "ns"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "a"}}},
        "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1, "disruptedPods": {"p0": "2026-01-01T00:00:00Z"}},
    })
}

fn claim_seed() -> Value {
    json!({"metadata": {"name": "data", "namespace": "ns", "uid": "c"}, "spec": {"storageClassName": "late", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

fn volume_seed() -> Value {
    json!({
        "metadata": {"name": "pv"},
        "spec": {
            "storageClassName": "late", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "10Gi"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["z0"]}]}]}},
        },
    })
}

fn class_seed() -> Value {
    json!({"metadata": {"name": "late"}, "provisioner": "example.com/csi", "volumeBindingMode": "WaitForFirstConsumer", "allowedTopologies": [{"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone", "values": ["z1"]}]}]})
}

fn profile(e: &mut Entropy) -> Profile {
    let mut profile = Profile::default_named("default-scheduler");
    profile.fit_strategy = match e.below(3) {
        0 => Strategy::LeastAllocated,
        1 => Strategy::MostAllocated,
        _ => Strategy::RequestedToCapacityRatio(vec![(0, 0), (50, 7), (100, 10)]),
    };
    if e.below(2) == 0 {
        profile.fit_resources.push(("example.com/gpu".into(), 3));
        profile.balanced_resources.push(("ephemeral-storage".into(), 1));
    }
    profile
}

/// One scheduling decision on hostile nodes, pods, budgets and storage:
/// the pod's placement or why it fits nowhere, with preemption's choice.
pub fn schedule(data: &[u8]) {
    let mut e = Entropy::new(data);
    let profile = Arc::new(profile(&mut e));
    let mut st = State { profiles: vec![profile.clone()], ..State::default() };
    let nodes = 1 + e.below(4);
    for i in 0..nodes {
        st.upsert_node(hostile::<Node>(&node_seed(i), &mut e));
    }
    for i in 0..e.below(6) {
        let node = format!("n{}", i % nodes);
        st.observe(hostile::<Pod>(&pod_seed(&format!("p{i}"), Some(&node)), &mut e));
    }
    for _ in 0..e.below(3) {
        let budget: PodDisruptionBudget = hostile(&budget_seed(), &mut e);
        st.budgets.insert(crate::key_of(&budget), Arc::new(budget));
    }
    let claim: PersistentVolumeClaim = hostile(&claim_seed(), &mut e);
    st.storage.claims.insert(crate::key_of(&claim), Arc::new(claim));
    let volume: PersistentVolume = hostile(&volume_seed(), &mut e);
    st.storage.volumes.insert(crate::key_of(&volume), Arc::new(volume));
    let class: StorageClass = hostile(&class_seed(), &mut e);
    st.storage.classes.insert(crate::key_of(&class), Arc::new(class));
    let pod = PodInfo::new(Arc::new(hostile::<Pod>(&pod_seed("incoming", None), &mut e)));
    let _ = st.attempt(&pod, &profile);
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{RngCore, SeedableRng};

    /// Seeded, so a failure reproduces; `fuzz/` runs the same entry point
    /// under libFuzzer for longer (as does `SKIFF_FUZZ_ROUNDS=100000 cargo test`).
    #[test]
    fn hostile_objects_never_panic_the_scheduler() {
        let rounds = std::env::var("SKIFF_FUZZ_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(1000);
        let mut rng = StdRng::seed_from_u64(1);
        let mut data = vec![0u8; 1024];
        for _ in 0..rounds {
            rng.fill_bytes(&mut data);
            super::schedule(&data);
        }
    }
}

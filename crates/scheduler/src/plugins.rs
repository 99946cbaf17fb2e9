//! Upstream's default filter and score plugins, each named as upstream
//! names it, with upstream's failure messages (`kubectl describe` shows
//! them in `FailedScheduling` events).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration};

use crate::config::{Plugin, Profile, Strategy};
use crate::model::{NodeInfo, PodInfo};

/// Why a node does not fit a pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reason {
    pub message: String,
    /// Evicting pods (preemption) cannot make the node fit.
    pub unresolvable: bool,
}

fn unresolvable(message: impl Into<String>) -> Vec<Reason> {
    vec![Reason { message: message.into(), unresolvable: true }]
}

/// Runs the profile's filters in upstream's order; the first that fails
/// decides. (NodeName has nothing to check: a pod with a node is bound.)
pub fn filter(pod: &PodInfo, node: &NodeInfo, profile: &Profile) -> Result<(), Vec<Reason>> {
    let spec = pod.pod.spec.as_ref();
    let tolerations: &[Toleration] = spec.and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    if profile.runs(Plugin::NodeUnschedulable) {
        node_unschedulable(node, tolerations)?;
    }
    if profile.runs(Plugin::TaintToleration) {
        taint_toleration(node, tolerations)?;
    }
    if profile.runs(Plugin::NodeAffinity) {
        node_affinity(&pod.pod, node)?;
    }
    if profile.runs(Plugin::NodePorts) {
        node_ports(pod, node)?;
    }
    match profile.runs(Plugin::NodeResourcesFit) {
        true => node_resources_fit(pod, node, profile),
        false => Ok(()),
    }
}

/// NodeUnschedulable: a cordoned node takes only pods tolerating that.
fn node_unschedulable(node: &NodeInfo, tolerations: &[Toleration]) -> Result<(), Vec<Reason>> {
    if !node.unschedulable {
        return Ok(());
    }
    let taint = Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Default::default() };
    match tolerations.iter().any(|t| tolerates(t, &taint)) {
        true => Ok(()),
        false => Err(unresolvable("node(s) were unschedulable")),
    }
}

/// TaintToleration: every NoSchedule and NoExecute taint must be tolerated.
fn taint_toleration(node: &NodeInfo, tolerations: &[Toleration]) -> Result<(), Vec<Reason>> {
    let untolerated = node
        .taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)));
    match untolerated {
        Some(t) => Err(unresolvable(format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value.as_deref().unwrap_or_default()))),
        None => Ok(()),
    }
}

/// Upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    if toleration.key.as_deref().is_some_and(|k| !k.is_empty() && k != taint.key) {
        return false;
    }
    match toleration.operator.as_deref() {
        None | Some("") | Some("Equal") => toleration.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default(),
        Some("Exists") => true,
        Some(_) => false,
    }
}

/// Whether the pod asks for particular nodes (a `nodeSelector` or node
/// affinity). Most pods do not, and for them a node's labels, in its
/// object and so a cache miss away, need not be read.
pub fn constrains_nodes(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| s.node_selector.is_some() || s.affinity.as_ref().is_some_and(|a| a.node_affinity.is_some()))
}

/// NodeAffinity: `nodeSelector` and the required node affinity.
fn node_affinity(pod: &Pod, node: &NodeInfo) -> Result<(), Vec<Reason>> {
    if !constrains_nodes(pod) {
        return Ok(());
    }
    match selects_node(pod, &node.name, node.labels()) {
        true => Ok(()),
        false => Err(unresolvable("node(s) didn't match Pod's node affinity/selector")),
    }
}

/// Whether the pod's `nodeSelector` and required node affinity admit the
/// node (upstream's `GetRequiredNodeAffinity(pod).Match(node)`).
pub fn selects_node(pod: &Pod, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let spec = pod.spec.as_ref();
    if let Some(selector) = spec.and_then(|s| s.node_selector.as_ref()) {
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, name, labels)))
}

/// A node selector term: every requirement holds (an empty term matches
/// nothing, as upstream).
pub fn term_matches(term: &NodeSelectorTerm, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name)))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |v: &str| v.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a > b),
        "Lt" => matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(b)) if a < b),
        _ => false,
    }
}

/// NodePorts: a host port (with its protocol) is free unless a pod on the
/// node holds it on the same IP or on every IP.
fn node_ports(pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
    let conflict = pod.ports.iter().any(|(proto, port, ip)| {
        node.ports.iter().any(|(p, n, i)| p == proto && n == port && (ip.is_empty() || i.is_empty() || ip == i))
    });
    if conflict {
        return Err(vec![Reason { message: "node(s) didn't have free ports for the requested pod ports".into(), unresolvable: false }]);
    }
    Ok(())
}

/// NodeResourcesFit: room for one more pod and for every resource it
/// requests (but the extended resources the profile ignores); each
/// shortfall is its own reason.
fn node_resources_fit(pod: &PodInfo, node: &NodeInfo, profile: &Profile) -> Result<(), Vec<Reason>> {
    let mut reasons = Vec::new();
    let mut short = |message: String| reasons.push(Reason { message, unresolvable: false });
    if node.pods.len() as i64 + 1 > node.allowed_pods {
        short("Too many pods".into());
    }
    let (want, used, free) = (&pod.requests, &node.requested, &node.allocatable);
    if want.milli_cpu > 0 && want.milli_cpu > free.milli_cpu.saturating_sub(used.milli_cpu) {
        short("Insufficient cpu".into());
    }
    if want.memory > 0 && want.memory > free.memory.saturating_sub(used.memory) {
        short("Insufficient memory".into());
    }
    if want.ephemeral_storage > 0 && want.ephemeral_storage > free.ephemeral_storage.saturating_sub(used.ephemeral_storage) {
        short("Insufficient ephemeral-storage".into());
    }
    let ignored = |name: &str| profile.fit_ignored.iter().any(|i| i == name) || name.split_once('/').is_some_and(|(group, _)| profile.fit_ignored_groups.iter().any(|g| g == group));
    for (name, amount) in want.scalar.iter().filter(|(name, _)| !ignored(name)) {
        let available = free.scalar.get(name).copied().unwrap_or(0).saturating_sub(used.scalar.get(name).copied().unwrap_or(0));
        if *amount > 0 && *amount > available {
            short(format!("Insufficient {name}"));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

const MAX_SCORE: i64 = 100;

/// Scores the feasible nodes by the profile's weights; higher is better.
/// `image_spread` tells on how many of all `total_nodes` nodes an image is
/// (ImageLocality).
pub fn score(pod: &PodInfo, nodes: &[&NodeInfo], image_spread: &dyn Fn(&str) -> usize, total_nodes: usize, profile: &Profile) -> Vec<i64> {
    let weight = |plugin| profile.weight(plugin);
    let spec = pod.pod.spec.as_ref();
    let tolerations: &[Toleration] = spec.and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    let preferred = spec
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref())
        .unwrap_or_default();
    let affinity: Vec<i64> = nodes
        .iter()
        .map(|n| preferred.iter().filter(|p| term_matches(&p.preference, &n.name, n.labels())).map(|p| p.weight as i64).sum())
        .collect();
    let intolerable: Vec<i64> = nodes
        .iter()
        .map(|n| {
            n.taints
                .iter()
                .filter(|t| t.effect == "PreferNoSchedule")
                .filter(|taint| !tolerations.iter().filter(|t| t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")).any(|t| tolerates(t, taint)))
                .count() as i64
        })
        .collect();
    let (max_affinity, max_intolerable) = (affinity.iter().copied().max().unwrap_or(0), intolerable.iter().copied().max().unwrap_or(0));
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let affinity = if max_affinity > 0 { affinity[i] * MAX_SCORE / max_affinity } else { 0 };
            let taints = if max_intolerable > 0 { MAX_SCORE - intolerable[i] * MAX_SCORE / max_intolerable } else { MAX_SCORE };
            let mut total = weight(Plugin::NodeAffinity) * affinity + weight(Plugin::TaintToleration) * taints;
            if weight(Plugin::NodeResourcesFit) > 0 {
                total += weight(Plugin::NodeResourcesFit) * resources_fit(pod, n, profile);
            }
            if weight(Plugin::NodeResourcesBalancedAllocation) > 0 {
                total += weight(Plugin::NodeResourcesBalancedAllocation) * balanced_allocation(pod, n, &profile.balanced_resources);
            }
            if weight(Plugin::ImageLocality) > 0 {
                total += weight(Plugin::ImageLocality) * image_locality(pod, n, image_spread, total_nodes);
            }
            total
        })
        .collect()
}

/// ImageLocality, as upstream: the sizes of the pod's images already on
/// the node, each scaled by the share of nodes that have it (so one node
/// holding a rare image does not attract everything), between 23 MB and
/// 1,000 MB per container.
fn image_locality(pod: &PodInfo, node: &NodeInfo, spread: &dyn Fn(&str) -> usize, total_nodes: usize) -> i64 {
    const MIN: i64 = 23 * 1024 * 1024;
    const MAX_PER_CONTAINER: i64 = 1000 * 1024 * 1024;
    if node.images.is_empty() || total_nodes == 0 {
        return 0;
    }
    let Some(spec) = pod.pod.spec.as_ref() else { return 0 };
    let images: Vec<String> = spec.init_containers.iter().flatten().chain(&spec.containers).filter_map(|c| c.image.as_deref()).map(crate::model::normalized_image).collect();
    // Without images the range below would be empty (clamp panics on it).
    if images.is_empty() {
        return 0;
    }
    let sum: i64 = images.iter().filter_map(|i| Some((node.images.get(i)?, spread(i)))).map(|(size, on)| (*size as f64 * on as f64 / total_nodes as f64) as i64).fold(0, i64::saturating_add);
    let max = MAX_PER_CONTAINER * images.len() as i64;
    MAX_SCORE * (sum.clamp(MIN, max) - MIN) / (max - MIN).max(1)
}

/// A resource's amount requested on the node once the pod is there, and
/// the node's allocatable amount; None when it is not scored (the node
/// has none, or it is an extended resource the pod does not ask for).
/// `nonzero` counts CPU and memory with upstream's defaults for pods
/// that request none.
fn usage(pod: &PodInfo, node: &NodeInfo, resource: &str, nonzero: bool) -> Option<(i64, i64)> {
    let (want, used, free) = (&pod.requests, &node.requested, &node.allocatable);
    let (used, total) = match resource {
        "cpu" if nonzero => (node.nonzero.0.saturating_add(pod.nonzero.0), free.milli_cpu),
        "memory" if nonzero => (node.nonzero.1.saturating_add(pod.nonzero.1), free.memory),
        "cpu" => (used.milli_cpu.saturating_add(want.milli_cpu), free.milli_cpu),
        "memory" => (used.memory.saturating_add(want.memory), free.memory),
        "ephemeral-storage" => (used.ephemeral_storage.saturating_add(want.ephemeral_storage), free.ephemeral_storage),
        name => {
            let asked = want.scalar.get(name).copied().filter(|a| *a > 0)?;
            (used.scalar.get(name).copied().unwrap_or(0).saturating_add(asked), free.scalar.get(name).copied().unwrap_or(0))
        }
    };
    (total > 0).then_some((used.max(0), total))
}

/// `part × scale / whole` without overflow (amounts reach i64::MAX).
fn scaled(part: i64, scale: i64, whole: i64) -> i64 {
    (part as i128 * scale as i128).checked_div(whole as i128).unwrap_or(0).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// NodeResourcesFit's score by the profile's strategy: each resource's
/// score, weighted, averaged over the resources the node has.
fn resources_fit(pod: &PodInfo, node: &NodeInfo, profile: &Profile) -> i64 {
    let (mut sum, mut weights) = (0, 0);
    for (resource, weight) in &profile.fit_resources {
        let Some((used, total)) = usage(pod, node, resource, true) else { continue };
        let score = match &profile.fit_strategy {
            Strategy::LeastAllocated => match used > total {
                true => 0,
                false => scaled(total - used, MAX_SCORE, total),
            },
            Strategy::MostAllocated => scaled(used.min(total), MAX_SCORE, total),
            Strategy::RequestedToCapacityRatio(shape) => {
                let score = broken_linear(shape, scaled(used.min(total), 100, total));
                // Upstream leaves out resources that score nothing.
                if score == 0 {
                    continue;
                }
                score
            }
        };
        sum += score * weight;
        weights += weight;
    }
    match (weights, &profile.fit_strategy) {
        (0, _) => 0,
        (w, Strategy::RequestedToCapacityRatio(_)) => (sum as f64 / w as f64).round() as i64,
        (w, _) => sum / w,
    }
}

/// RequestedToCapacityRatio's shape at a utilization, scaled from its
/// 0–10 points to 0–100.
fn broken_linear(shape: &[(i64, i64)], utilization: i64) -> i64 {
    let scaled = |score: i64| score * MAX_SCORE / 10;
    for (i, &(at, score)) in shape.iter().enumerate() {
        if utilization <= at {
            let Some(&(before, previous)) = i.checked_sub(1).map(|j| &shape[j]) else { return scaled(score) };
            return scaled(previous) + (scaled(score) - scaled(previous)) * (utilization - before) / (at - before);
        }
    }
    shape.last().map_or(0, |&(_, score)| scaled(score))
}

/// NodeResourcesBalancedAllocation: resources used alike is better (one
/// less the standard deviation of the fractions requested).
fn balanced_allocation(pod: &PodInfo, node: &NodeInfo, resources: &[(String, i64)]) -> i64 {
    // Runs for every pod on every scored node: the fractions are walked
    // twice rather than collected.
    let fractions = || resources.iter().filter_map(|(r, _)| usage(pod, node, r, false)).map(|(used, total)| (used as f64 / total as f64).min(1.0));
    let (count, sum) = fractions().fold((0usize, 0.0), |(n, s), f| (n + 1, s + f));
    let deviation = match count {
        2 => {
            let mut two = fractions();
            let (a, b) = (two.next().unwrap_or(0.0), two.next().unwrap_or(0.0));
            (a - b).abs() / 2.0
        }
        n if n > 2 => {
            let mean = sum / n as f64;
            (fractions().map(|f| (f - mean).powi(2)).sum::<f64>() / n as f64).sqrt()
        }
        _ => 0.0,
    };
    ((1.0 - deviation) * MAX_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn node(name: &str, images: serde_json::Value) -> NodeInfo {
        let node = serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "status": {"images": images}})).unwrap();
        NodeInfo::new(Arc::new(node))
    }

    #[test]
    fn resource_scoring_strategies_as_upstream() {
        let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}})).unwrap();
        let node = NodeInfo::new(Arc::new(node));
        let pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "2Gi"}}}]}})).unwrap();
        let pod = PodInfo::new(Arc::new(pod));
        let mut profile = Profile::default_named("p");
        assert_eq!(resources_fit(&pod, &node, &profile), 75, "a quarter used, three quarters free");
        profile.fit_strategy = Strategy::MostAllocated;
        assert_eq!(resources_fit(&pod, &node, &profile), 25);
        // Upstream's bin-packing shape: 0 at empty, 10 at full.
        profile.fit_strategy = Strategy::RequestedToCapacityRatio(vec![(0, 0), (100, 10)]);
        assert_eq!(resources_fit(&pod, &node, &profile), 25);
        assert_eq!(broken_linear(&[(20, 2), (60, 10)], 10), 20, "before the first point: its score");
        assert_eq!(broken_linear(&[(20, 2), (60, 10)], 40), 60, "between points: linear");
        assert_eq!(broken_linear(&[(20, 2), (60, 10)], 90), 100, "after the last point: its score");
        profile.fit_resources = vec![("cpu".into(), 3), ("memory".into(), 1), ("example.com/gpu".into(), 5)];
        profile.fit_strategy = Strategy::LeastAllocated;
        assert_eq!(resources_fit(&pod, &node, &profile), 75, "a resource the pod does not ask for is left out");
        assert_eq!(balanced_allocation(&pod, &node, &profile.balanced_resources), 100, "cpu and memory a quarter used alike");
    }

    #[test]
    fn image_locality_prefers_nodes_with_the_images() {
        let pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})).unwrap();
        let pod = PodInfo::new(Arc::new(pod));
        let big = serde_json::json!([{"names": ["docker.io/library/nginx:latest"], "sizeBytes": 500i64 << 20}]);
        let (with, without) = (node("a", big), node("b", serde_json::json!([])));
        let everywhere = |_: &str| 2;
        assert!(image_locality(&pod, &with, &everywhere, 2) > 40);
        assert_eq!(image_locality(&pod, &without, &everywhere, 2), 0);
        // On one node of a hundred, the image hardly counts.
        assert_eq!(image_locality(&pod, &with, &|_| 1, 100), 0);
        assert_eq!(crate::model::normalized_image("registry.local:5000/app"), "registry.local:5000/app:latest");
        assert_eq!(crate::model::normalized_image("team/app:1"), "docker.io/team/app:1");
    }

    /// Panics found by `fuzzing::schedule`: ImageLocality on a pod without
    /// images clamped into an empty range; scores multiplied amounts near
    /// i64::MAX (`8Ei` of memory) by 100.
    #[test]
    fn hostile_pods_and_nodes_score_without_panicking() {
        let bare = PodInfo::new(Arc::new(serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}})).unwrap()));
        let with = node("a", serde_json::json!([{"names": ["docker.io/library/nginx:latest"], "sizeBytes": 500i64 << 20}]));
        assert_eq!(image_locality(&bare, &with, &|_| 1, 1), 0);
        let huge: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "9223372036854775807m", "memory": "8Ei", "pods": "-1"}}})).unwrap();
        let huge = NodeInfo::new(Arc::new(huge));
        let greedy = PodInfo::new(Arc::new(serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "9223372036854775807m", "memory": "8Ei"}}},
            {"name": "b", "resources": {"requests": {"cpu": "9223372036854775807m", "memory": "-8Ei"}}},
        ]}})).unwrap()));
        for strategy in [Strategy::LeastAllocated, Strategy::MostAllocated, Strategy::RequestedToCapacityRatio(vec![(0, 0), (100, 10)])] {
            let mut profile = Profile::default_named("p");
            profile.fit_strategy = strategy;
            let _ = score(&greedy, &[&huge], &|_| 1, 1, &profile);
            assert!(filter(&greedy, &huge, &profile).is_err(), "no room for a pod on a node that takes none");
        }
    }
}

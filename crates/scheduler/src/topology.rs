//! The plugins that look at other pods by topology domain (the value of a
//! node label such as `kubernetes.io/hostname` or
//! `topology.kubernetes.io/zone`): PodTopologySpread and
//! InterPodAffinity. As upstream's PreFilter, the counts of matching pods
//! per domain are made once per pod; Filter and Score then read them per
//! node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::config::{Plugin, Profile};
use crate::model::{NodeInfo, PodInfo};
use crate::plugins::{constrains_nodes, selects_node, tolerates, Reason};

const SPREAD_MISMATCH: &str = "node(s) didn't match pod topology spread constraints";
const AFFINITY_MISMATCH: &str = "node(s) didn't match pod affinity rules";
const ANTI_AFFINITY_MISMATCH: &str = "node(s) didn't match pod anti-affinity rules";
const EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
const MAX_SCORE: i64 = 100;

/// Whether a pod uses either plugin: only such pods pay for PreFilter,
/// and only they wait for other pods to be placed.
pub fn depends_on_pods(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    let affinity = spec.affinity.as_ref();
    spec.topology_spread_constraints.as_ref().is_some_and(|c| !c.is_empty())
        || affinity.is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

/// Upstream's label selector semantics (`LabelSelectorAsSelector`): no
/// selector matches nothing, an empty one everything.
pub fn matches(selector: Option<&LabelSelector>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(selector) = selector else { return false };
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// A term's namespaces: those listed, or the pod's own. (A
/// namespaceSelector needs the namespaces' labels, which the scheduler does
/// not watch: an empty one means all namespaces, any other the listed ones.)
fn term_selects(term: &PodAffinityTerm, owner_ns: &str, pod: &Pod) -> bool {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let all = term.namespace_selector.as_ref().is_some_and(|s| s.match_labels.as_ref().is_none_or(|m| m.is_empty()) && s.match_expressions.as_ref().is_none_or(|e| e.is_empty()));
    let in_ns = all || match term.namespaces.as_ref().filter(|n| !n.is_empty()) {
        Some(list) => list.iter().any(|n| n == ns),
        None => term.namespace_selector.is_some() || ns == owner_ns,
    };
    in_ns && matches(term.label_selector.as_ref(), pod.metadata.labels.as_ref())
}

struct Spread {
    key: String,
    max_skew: i64,
    /// Matching pods per domain, every eligible domain present.
    counts: HashMap<String, i64>,
    min: i64,
    /// The pod matches its own selector: placing it adds one.
    own: i64,
    hard: bool,
}

struct Term {
    key: String,
    counts: HashMap<String, i64>,
    weight: i64,
}

/// PreFilter's state for one pod.
#[derive(Default)]
pub struct Cycle {
    spread: Vec<Spread>,
    affinity: Vec<Term>,
    /// No pod matches the required affinity terms, but the pod matches
    /// them itself: the first of a group may go anywhere.
    first_of_group: bool,
    anti_affinity: Vec<Term>,
    /// Domains existing pods' anti-affinity keeps this pod out of, by
    /// topology key.
    forbidden: HashMap<String, HashSet<String>>,
    preferred: Vec<Term>,
}

fn domain<'a>(node: &'a NodeInfo, key: &str) -> Option<&'a String> {
    node.labels().get(key)
}

/// One topology key's domains: each node's (by its index in the node
/// list) as a small number, and their names. Counting pods per domain
/// then needs no string hashing or label lookups.
pub struct Domains {
    of_node: Vec<Option<u32>>,
    names: Vec<String>,
}

impl Domains {
    pub fn new(nodes: &[NodeInfo], key: &str) -> Domains {
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let mut names = Vec::new();
        let of_node = nodes
            .iter()
            .map(|n| {
                let value = domain(n, key)?;
                Some(*ids.entry(value.as_str()).or_insert_with(|| {
                    names.push(value.clone());
                    names.len() as u32 - 1
                }))
            })
            .collect();
        Domains { of_node, names }
    }
}

/// Where placed pods are: each pod with its node's index.
type Placed<'a> = Vec<(&'a PodInfo, usize)>;

impl Cycle {
    /// Counts, per domain, the placed pods each rule of `pod` looks at.
    pub fn new<'a>(pod: &PodInfo, nodes: &'a [NodeInfo], index: &HashMap<String, usize>, domains: &dyn Fn(&str) -> Arc<Domains>, placed: impl Iterator<Item = &'a PodInfo>) -> Cycle {
        let mut cycle = Cycle::default();
        let incoming = &pod.pod;
        let ns = incoming.metadata.namespace.as_deref().unwrap_or_default();
        let spec = incoming.spec.as_ref();
        let live: Placed = placed
            .filter(|p| !p.terminal && p.pod.metadata.deletion_timestamp.is_none())
            .filter_map(|p| Some((p, *index.get(p.node.as_ref()?)?)))
            .collect();

        for c in spec.and_then(|s| s.topology_spread_constraints.as_ref()).into_iter().flatten() {
            cycle.spread.push(spread(c, incoming, nodes, &domains(&c.topology_key), &live));
        }
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let count = |term: &PodAffinityTerm, weight: i64| {
            let d = domains(&term.topology_key);
            let mut counts = vec![0i64; d.names.len()];
            for (p, node) in &live {
                if let Some(id) = d.of_node[*node].filter(|_| term_selects(term, ns, &p.pod)) {
                    counts[id as usize] += 1;
                }
            }
            let counts = counts.into_iter().enumerate().filter(|(_, n)| *n > 0).map(|(i, n)| (d.names[i].clone(), n)).collect();
            Term { key: term.topology_key.clone(), counts, weight }
        };
        if let Some(pa) = affinity.and_then(|a| a.pod_affinity.as_ref()) {
            let required = pa.required_during_scheduling_ignored_during_execution.as_deref().unwrap_or_default();
            cycle.affinity = required.iter().map(|t| count(t, 0)).collect();
            cycle.first_of_group = cycle.affinity.iter().all(|t| t.counts.is_empty()) && required.iter().all(|t| term_selects(t, ns, incoming));
            for w in pa.preferred_during_scheduling_ignored_during_execution.iter().flatten() {
                cycle.preferred.push(count(&w.pod_affinity_term, w.weight as i64));
            }
        }
        if let Some(anti) = affinity.and_then(|a| a.pod_anti_affinity.as_ref()) {
            cycle.anti_affinity = anti.required_during_scheduling_ignored_during_execution.iter().flatten().map(|t| count(t, 0)).collect();
            for w in anti.preferred_during_scheduling_ignored_during_execution.iter().flatten() {
                cycle.preferred.push(count(&w.pod_affinity_term, -(w.weight as i64)));
            }
        }
        // Existing pods whose required anti-affinity the incoming pod matches.
        for (p, node) in &live {
            if !p.repels {
                continue;
            }
            let terms = p.pod.spec.as_ref().and_then(|s| s.affinity.as_ref()).and_then(|a| a.pod_anti_affinity.as_ref()).and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
            let owner_ns = p.pod.metadata.namespace.as_deref().unwrap_or_default();
            for term in terms.into_iter().flatten().filter(|t| term_selects(t, owner_ns, incoming)) {
                if let Some(value) = domain(&nodes[*node], &term.topology_key) {
                    cycle.forbidden.entry(term.topology_key.clone()).or_default().insert(value.clone());
                }
            }
        }
        cycle
    }

    /// PodTopologySpread's and InterPodAffinity's Filter, those the
    /// profile runs.
    pub fn filter(&self, node: &NodeInfo, profile: &Profile) -> Result<(), Vec<Reason>> {
        let fail = |message: &str, unresolvable: bool| Err(vec![Reason { message: message.into(), unresolvable }]);
        let spread: &[Spread] = if profile.runs(Plugin::PodTopologySpread) { &self.spread } else { &[] };
        for s in spread.iter().filter(|s| s.hard) {
            let Some(value) = domain(node, &s.key) else { return fail(&format!("{SPREAD_MISMATCH} (missing required label)"), true) };
            let skew = s.counts.get(value).copied().unwrap_or(0) + s.own - s.min;
            if skew > s.max_skew {
                return fail(SPREAD_MISMATCH, false);
            }
        }
        if !profile.runs(Plugin::InterPodAffinity) {
            return Ok(());
        }
        for t in &self.affinity {
            let present = domain(node, &t.key).map(|v| t.counts.get(v).copied().unwrap_or(0));
            if present.is_none() || (present == Some(0) && !self.first_of_group) {
                return fail(AFFINITY_MISMATCH, true);
            }
        }
        for t in &self.anti_affinity {
            if domain(node, &t.key).is_some_and(|v| t.counts.get(v).copied().unwrap_or(0) > 0) {
                return fail(ANTI_AFFINITY_MISMATCH, false);
            }
        }
        let labels = node.labels();
        if self.forbidden.iter().any(|(k, values)| labels.get(k).is_some_and(|v| values.contains(v))) {
            return fail(EXISTING_ANTI_AFFINITY, false);
        }
        Ok(())
    }

    /// Both plugins' normalized scores for the feasible nodes, weighted
    /// as the profile weighs them.
    pub fn score(&self, nodes: &[&NodeInfo], profile: &Profile) -> Vec<i64> {
        let mut out = vec![0; nodes.len()];
        let (spread_weight, affinity_weight) = (profile.weight(Plugin::PodTopologySpread), profile.weight(Plugin::InterPodAffinity));
        // Spreading: fewer matching pods in the node's domains is better,
        // each constraint weighted by how many domains it has.
        let soft: Vec<&Spread> = self.spread.iter().filter(|s| !s.hard).collect();
        if !soft.is_empty() && spread_weight > 0 {
            let raw: Vec<f64> = nodes
                .iter()
                .map(|n| soft.iter().map(|s| domain(n, &s.key).map_or(0.0, |v| (s.counts.get(v).copied().unwrap_or(0) + s.own) as f64 * ((s.counts.len() + 2) as f64).ln())).sum())
                .collect();
            let (max, min) = raw.iter().fold((f64::MIN, f64::MAX), |(a, b), v| (a.max(*v), b.min(*v)));
            for (o, r) in out.iter_mut().zip(&raw) {
                *o += spread_weight * if max <= 0.0 { MAX_SCORE } else { (MAX_SCORE as f64 * (max + min - r) / max) as i64 };
            }
        }
        // Preferred (anti-)affinity: the weights of the terms the pods in
        // the node's domains satisfy.
        if !self.preferred.is_empty() && affinity_weight > 0 {
            // In i128: hostile weights (i32::MAX) times many pods overflow i64.
            let raw: Vec<i128> = nodes.iter().map(|n| self.preferred.iter().map(|t| domain(n, &t.key).map_or(0, |v| t.weight as i128 * t.counts.get(v).copied().unwrap_or(0) as i128)).sum()).collect();
            let (max, min) = (raw.iter().copied().max().unwrap_or(0), raw.iter().copied().min().unwrap_or(0));
            if max > min {
                for (o, r) in out.iter_mut().zip(&raw) {
                    *o += (affinity_weight as i128 * MAX_SCORE as i128 * (r - min) / (max - min)) as i64;
                }
            }
        }
        out
    }
}

/// One constraint's counts: the domains of the nodes it applies to (those
/// the pod's node affinity admits, as `nodeAffinityPolicy: Honor`, and
/// whose taints it tolerates if `nodeTaintsPolicy: Honor`), and the
/// matching pods on them.
fn spread(c: &TopologySpreadConstraint, pod: &Pod, nodes: &[NodeInfo], domains: &Domains, live: &Placed) -> Spread {
    let ns = pod.metadata.namespace.as_deref();
    let honor_taints = c.node_taints_policy.as_deref() == Some("Honor");
    let ignore_affinity = c.node_affinity_policy.as_deref() == Some("Ignore");
    let spec = pod.spec.as_ref();
    let constrained = constrains_nodes(pod);
    let tolerations = spec.and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    let eligible = |n: &NodeInfo| {
        (ignore_affinity || !constrained || selects_node(pod, &n.name, n.labels()))
            && (!honor_taints || n.taints.iter().filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute").all(|taint| tolerations.iter().any(|t| tolerates(t, taint))))
    };
    // matchLabelKeys: the pod's own values of those keys narrow the selector.
    let mut selector = c.label_selector.clone();
    if let (Some(s), Some(keys)) = (selector.as_mut(), c.match_label_keys.as_ref()) {
        let own = pod.metadata.labels.clone().unwrap_or_default();
        let labels = s.match_labels.get_or_insert_with(BTreeMap::new);
        for k in keys {
            if let Some(v) = own.get(k) {
                labels.insert(k.clone(), v.clone());
            }
        }
    }
    let mut counted = vec![false; domains.names.len()];
    for (i, node) in nodes.iter().enumerate() {
        if let Some(id) = domains.of_node[i] {
            if !counted[id as usize] && eligible(node) {
                counted[id as usize] = true;
            }
        }
    }
    let mut counts = vec![0i64; domains.names.len()];
    for (p, node) in live {
        if let Some(id) = domains.of_node[*node].filter(|id| counted[*id as usize]) {
            if p.pod.metadata.namespace.as_deref() == ns && matches(selector.as_ref(), p.pod.metadata.labels.as_ref()) {
                counts[id as usize] += 1;
            }
        }
    }
    let counts: HashMap<String, i64> = counts.into_iter().enumerate().filter(|(i, _)| counted[*i]).map(|(i, n)| (domains.names[i].clone(), n)).collect();
    let min_domains = c.min_domains.unwrap_or(1) as usize;
    let min = if counts.len() < min_domains { 0 } else { counts.values().copied().min().unwrap_or(0) };
    Spread {
        key: c.topology_key.clone(),
        max_skew: c.max_skew as i64,
        own: matches(selector.as_ref(), pod.metadata.labels.as_ref()) as i64,
        min,
        counts,
        hard: c.when_unsatisfiable != "ScheduleAnyway",
    }
}

//! The plugins that look at other pods by topology domain (the value of a
//! node label such as `kubernetes.io/hostname` or
//! `topology.kubernetes.io/zone`): PodTopologySpread and
//! InterPodAffinity. As upstream's PreFilter, the counts of matching pods
//! per domain are made once per pod; Filter and Score then read them per
//! node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// Which pods a term or constraint counts, per domain of its topology
/// key: those in its namespaces (`None`: all) whose labels its selector
/// matches.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Rule {
    namespaces: Option<Vec<String>>,
    /// The selector as JSON: what makes two rules the same.
    selector: String,
    key: String,
}

impl Rule {
    fn new(namespaces: Option<Vec<String>>, selector: Option<&LabelSelector>, key: &str) -> Rule {
        Rule { namespaces, selector: serde_json::to_string(&selector).unwrap_or_default(), key: key.to_string() }
    }

    /// A term's rule. Its namespaces: those listed, or the pod's own. (A
    /// namespaceSelector needs the namespaces' labels, which the scheduler
    /// does not watch: an empty one means all namespaces, any other the
    /// listed ones.)
    fn of_term(term: &PodAffinityTerm, owner_ns: &str) -> Rule {
        let all = term.namespace_selector.as_ref().is_some_and(|s| s.match_labels.as_ref().is_none_or(|m| m.is_empty()) && s.match_expressions.as_ref().is_none_or(|e| e.is_empty()));
        let namespaces = match term.namespaces.as_ref().filter(|n| !n.is_empty()) {
            _ if all => None,
            Some(list) => Some(list.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect()),
            None if term.namespace_selector.is_some() => None,
            None => Some(vec![owner_ns.to_string()]),
        };
        Rule::new(namespaces, term.label_selector.as_ref(), &term.topology_key)
    }

    fn selects(&self, selector: Option<&LabelSelector>, pod: &Pod) -> bool {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        self.namespaces.as_ref().is_none_or(|list| list.iter().any(|n| n == ns)) && matches(selector, pod.metadata.labels.as_ref())
    }
}

/// Live placed pods a rule selects, per domain; only domains with some.
type Counts = Arc<HashMap<String, i64>>;

struct Tally {
    selector: Option<LabelSelector>,
    counts: Counts,
}

impl Tally {
    fn add(&mut self, domain: &str, delta: i64) {
        let counts = Arc::make_mut(&mut self.counts);
        let n = counts.entry(domain.to_string()).or_default();
        *n += delta;
        if *n <= 0 {
            counts.remove(domain);
        }
    }
}

/// Placed pods counted per topology domain, kept up to date as pods are
/// placed and released, so that a pod's PreFilter reads counts instead of
/// walking every placed pod: for each rule a pending pod has asked about,
/// the pods it selects; for each required anti-affinity term of placed
/// pods, the pods that have it. Made again from the placed pods when the
/// nodes' domains change.
#[derive(Default)]
pub struct Tallies {
    /// The nodes' generation the counts are of.
    generation: u64,
    selected: HashMap<Rule, Tally>,
    repelling: HashMap<Rule, Tally>,
}

/// Pods counted are neither finished nor being deleted, on a known node.
fn live_domain<'a>(pod: &PodInfo, nodes: &'a [NodeInfo], index: &HashMap<String, usize>, key: &str) -> Option<&'a String> {
    if pod.terminal || pod.pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    domain(&nodes[*index.get(pod.node.as_ref()?)?], key)
}

/// A placed pod's required anti-affinity terms, with their rules.
fn repelling_terms(pod: &PodInfo) -> impl Iterator<Item = (Rule, &PodAffinityTerm)> {
    let owner_ns = pod.pod.metadata.namespace.as_deref().unwrap_or_default();
    let terms = pod.pod.spec.as_ref().and_then(|s| s.affinity.as_ref()).and_then(|a| a.pod_anti_affinity.as_ref()).and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    terms.into_iter().flatten().filter(|_| pod.repels).map(move |t| (Rule::of_term(t, owner_ns), t))
}

impl Tallies {
    /// Makes the counts again if the nodes' domains changed since.
    pub fn sync<'a>(&mut self, generation: u64, nodes: &[NodeInfo], index: &HashMap<String, usize>, placed: impl Iterator<Item = &'a PodInfo>) {
        if generation == self.generation {
            return;
        }
        *self = Tallies { generation, ..Default::default() };
        for pod in placed {
            self.count(pod, 1, generation, nodes, index);
        }
    }

    /// Counts a pod placed (`delta` 1) or released (-1).
    pub fn count(&mut self, pod: &PodInfo, delta: i64, generation: u64, nodes: &[NodeInfo], index: &HashMap<String, usize>) {
        if generation != self.generation {
            return; // counted again, from scratch, before they are read
        }
        for (rule, tally) in self.selected.iter_mut() {
            if let Some(domain) = live_domain(pod, nodes, index, &rule.key).filter(|_| rule.selects(tally.selector.as_ref(), &pod.pod)) {
                tally.add(domain, delta);
            }
        }
        for (rule, term) in repelling_terms(pod) {
            if let Some(domain) = live_domain(pod, nodes, index, &rule.key) {
                match self.repelling.get_mut(&rule) {
                    Some(tally) => {
                        tally.add(domain, delta);
                        if tally.counts.is_empty() {
                            // No placed pod carries the term any more.
                            self.repelling.remove(&rule);
                        }
                    }
                    None => {
                        let mut tally = Tally { selector: term.label_selector.clone(), counts: Default::default() };
                        tally.add(domain, delta);
                        if !tally.counts.is_empty() {
                            self.repelling.insert(rule, tally);
                        }
                    }
                }
            }
        }
    }

    /// The counts of a rule, made from the placed pods when first asked.
    fn selected<'a>(&mut self, rule: Rule, selector: Option<&LabelSelector>, nodes: &[NodeInfo], index: &HashMap<String, usize>, placed: impl Iterator<Item = &'a PodInfo>) -> Counts {
        // Rules no pending pod asks about any more are forgotten now and then.
        const MAX_RULES: usize = 4096;
        if self.selected.len() >= MAX_RULES && !self.selected.contains_key(&rule) {
            self.selected.clear();
        }
        let tally = self.selected.entry(rule).or_insert_with_key(|rule| {
            let mut tally = Tally { selector: selector.cloned(), counts: Default::default() };
            for pod in placed {
                if let Some(domain) = live_domain(pod, nodes, index, &rule.key).filter(|_| rule.selects(selector, &pod.pod)) {
                    tally.add(domain, 1);
                }
            }
            tally
        });
        tally.counts.clone()
    }
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
    counts: Counts,
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
    /// Domains existing pods' anti-affinity keeps this pod out of (those
    /// with a count), by topology key.
    forbidden: Vec<(String, Counts)>,
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

impl Cycle {
    /// Reads, per domain, the counts of placed pods each rule of `pod`
    /// looks at; `tallies` must be in sync with the nodes.
    pub fn new<'a>(pod: &PodInfo, nodes: &[NodeInfo], index: &HashMap<String, usize>, domains: &dyn Fn(&str) -> Arc<Domains>, tallies: &mut Tallies, placed: impl Iterator<Item = &'a PodInfo> + Clone) -> Cycle {
        let mut cycle = Cycle::default();
        let incoming = &pod.pod;
        let ns = incoming.metadata.namespace.as_deref().unwrap_or_default();
        let spec = incoming.spec.as_ref();
        for c in spec.and_then(|s| s.topology_spread_constraints.as_ref()).into_iter().flatten() {
            let selector = spread_selector(c, incoming);
            let rule = Rule::new(Some(vec![ns.to_string()]), selector.as_ref(), &c.topology_key);
            let counts = tallies.selected(rule, selector.as_ref(), nodes, index, placed.clone());
            cycle.spread.push(spread(c, incoming, selector.as_ref(), nodes, &domains(&c.topology_key), &counts));
        }
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let mut count = |term: &PodAffinityTerm, weight: i64| {
            let rule = Rule::of_term(term, ns);
            Term { key: term.topology_key.clone(), counts: tallies.selected(rule, term.label_selector.as_ref(), nodes, index, placed.clone()), weight }
        };
        if let Some(pa) = affinity.and_then(|a| a.pod_affinity.as_ref()) {
            let required = pa.required_during_scheduling_ignored_during_execution.as_deref().unwrap_or_default();
            cycle.affinity = required.iter().map(|t| count(t, 0)).collect();
            cycle.first_of_group = cycle.affinity.iter().all(|t| t.counts.is_empty()) && required.iter().all(|t| Rule::of_term(t, ns).selects(t.label_selector.as_ref(), incoming));
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
        for (rule, tally) in &tallies.repelling {
            if rule.selects(tally.selector.as_ref(), incoming) {
                cycle.forbidden.push((rule.key.clone(), tally.counts.clone()));
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
        if self.forbidden.iter().any(|(k, counts)| labels.get(k).is_some_and(|v| counts.contains_key(v))) {
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

/// A constraint's selector; matchLabelKeys: the pod's own values of those
/// keys narrow it.
fn spread_selector(c: &TopologySpreadConstraint, pod: &Pod) -> Option<LabelSelector> {
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
    selector
}

/// One constraint's counts: those of the domains of the nodes it applies
/// to (those the pod's node affinity admits, as `nodeAffinityPolicy:
/// Honor`, and whose taints it tolerates if `nodeTaintsPolicy: Honor`).
fn spread(c: &TopologySpreadConstraint, pod: &Pod, selector: Option<&LabelSelector>, nodes: &[NodeInfo], domains: &Domains, tally: &HashMap<String, i64>) -> Spread {
    let honor_taints = c.node_taints_policy.as_deref() == Some("Honor");
    let ignore_affinity = c.node_affinity_policy.as_deref() == Some("Ignore");
    let spec = pod.spec.as_ref();
    let constrained = constrains_nodes(pod);
    let tolerations = spec.and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    let eligible = |n: &NodeInfo| {
        (ignore_affinity || !constrained || selects_node(pod, &n.name, n.labels()))
            && (!honor_taints || n.taints.iter().filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute").all(|taint| tolerations.iter().any(|t| tolerates(t, taint))))
    };
    let mut counted = vec![false; domains.names.len()];
    for (i, node) in nodes.iter().enumerate() {
        if let Some(id) = domains.of_node[i] {
            if !counted[id as usize] && eligible(node) {
                counted[id as usize] = true;
            }
        }
    }
    let counts: HashMap<String, i64> = domains.names.iter().zip(&counted).filter(|(_, c)| **c).map(|(name, _)| (name.clone(), tally.get(name).copied().unwrap_or(0))).collect();
    let min_domains = c.min_domains.unwrap_or(1) as usize;
    let min = if counts.len() < min_domains { 0 } else { counts.values().copied().min().unwrap_or(0) };
    Spread {
        key: c.topology_key.clone(),
        max_skew: c.max_skew as i64,
        own: matches(selector, pod.metadata.labels.as_ref()) as i64,
        min,
        counts,
        hard: c.when_unsatisfiable != "ScheduleAnyway",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(i: usize) -> NodeInfo {
        let labels = json!({"kubernetes.io/hostname": format!("n{i}"), "zone": format!("z{}", i % 3)});
        NodeInfo::new(Arc::new(serde_json::from_value(json!({"metadata": {"name": format!("n{i}"), "labels": labels}})).unwrap()))
    }

    fn pod(i: usize, deleting: bool) -> PodInfo {
        let anti = json!({"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "a"}}, "topologyKey": "kubernetes.io/hostname"}]});
        let pod = json!({
            "metadata": {"name": format!("p{i}"), "uid": format!("u{i}"), "namespace": format!("ns{}", i % 2),
                "labels": {"app": if i.is_multiple_of(3) { "a" } else { "b" }},
                "deletionTimestamp": if deleting { json!("2026-01-01T00:00:00Z") } else { json!(null) }},
            "spec": {"nodeName": format!("n{}", i % 7), "containers": [{"name": "c"}],
                "affinity": if i.is_multiple_of(4) { json!({"podAntiAffinity": anti}) } else { json!(null) }},
        });
        PodInfo::new(Arc::new(serde_json::from_value(pod).unwrap()))
    }

    fn snapshot(t: &HashMap<Rule, Tally>) -> BTreeMap<String, BTreeMap<String, i64>> {
        t.iter().map(|(r, t)| (format!("{:?} {} {}", r.namespaces, r.selector, r.key), t.counts.iter().map(|(k, v)| (k.clone(), *v)).collect())).collect()
    }

    #[test]
    fn counts_kept_as_pods_come_and_go_equal_counts_made_again() {
        // Six nodes in three zones; pods on a seventh, unknown node are not counted.
        let nodes: Vec<NodeInfo> = (0..6).map(node).collect();
        let index: HashMap<String, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        let rules = || {
            let app_a = serde_json::from_value::<LabelSelector>(json!({"matchLabels": {"app": "a"}})).unwrap();
            let any = serde_json::from_value::<LabelSelector>(json!({})).unwrap();
            [(Rule::new(Some(vec!["ns0".into()]), Some(&app_a), "zone"), Some(app_a.clone())), (Rule::new(None, Some(&any), "kubernetes.io/hostname"), Some(any))]
        };
        let mut placed: HashMap<String, PodInfo> = HashMap::new();
        let mut kept = Tallies::default();
        for (rule, selector) in rules() {
            kept.selected(rule, selector.as_ref(), &nodes, &index, placed.values());
        }
        let place = |kept: &mut Tallies, placed: &mut HashMap<String, PodInfo>, p: PodInfo| {
            kept.count(&p, 1, 0, &nodes, &index);
            if let Some(old) = placed.insert(p.uid.clone(), p) {
                kept.count(&old, -1, 0, &nodes, &index);
            }
        };
        for i in 0..40 {
            place(&mut kept, &mut placed, pod(i, false));
        }
        for i in (0..40).step_by(5) {
            let gone = placed.remove(&format!("u{i}")).unwrap();
            kept.count(&gone, -1, 0, &nodes, &index);
        }
        for i in [1, 8, 12] {
            place(&mut kept, &mut placed, pod(i, true));
        }
        let mut again = Tallies::default();
        again.sync(1, &nodes, &index, placed.values());
        for (rule, selector) in rules() {
            again.selected(rule, selector.as_ref(), &nodes, &index, placed.values());
        }
        assert_eq!(snapshot(&kept.selected), snapshot(&again.selected));
        assert_eq!(snapshot(&kept.repelling), snapshot(&again.repelling));
        assert!(!kept.repelling.is_empty() && kept.selected.values().all(|t| !t.counts.is_empty()), "the case counts something");
    }
}

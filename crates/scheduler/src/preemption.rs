//! DefaultPreemption, as upstream's PostFilter: when a pod fits nowhere,
//! find the node where evicting the fewest, least important lower-priority
//! pods makes it fit; those pods are the victims, and the pod is nominated
//! to that node until they are gone.

use std::cmp::Reverse;
use std::collections::HashMap;

use crate::model::{NodeInfo, PodInfo};
use crate::plugins;

/// Upstream's PostFilter messages for pods that may not preempt.
pub const NEVER: &str = "not eligible due to preemptionPolicy=Never.";
pub const TERMINATING: &str = "not eligible due to a terminating pod on the nominated node.";

/// Whether the pod may preempt at all; the reason it may not.
pub fn eligible(pod: &PodInfo, nominated: Option<&String>, nodes: &HashMap<String, usize>, list: &[NodeInfo], placed: &HashMap<String, PodInfo>) -> Result<(), &'static str> {
    let Some(spec) = pod.pod.spec.as_ref() else { return Ok(()) };
    if spec.preemption_policy.as_deref() == Some("Never") {
        return Err(NEVER);
    }
    // Already nominated, and the victims are still on their way out.
    let nominated = nominated.or(pod.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_ref()));
    if let Some(node) = nominated.and_then(|n| nodes.get(n)).map(|i| &list[*i]) {
        let terminating = node.pods.iter().filter_map(|u| placed.get(u)).any(|p| p.priority < pod.priority && p.pod.metadata.deletion_timestamp.is_some());
        if terminating {
            return Err(TERMINATING);
        }
    }
    Ok(())
}

/// The victims on `node` that make room for `pod`: all lower-priority pods
/// removed, then each given back (most important first) if the pod still
/// fits without evicting it. None if even removing all does not help.
pub fn victims_on(pod: &PodInfo, node: &NodeInfo, placed: &HashMap<String, PodInfo>) -> Option<Vec<PodInfo>> {
    let mut lower: Vec<&PodInfo> = node.pods.iter().filter_map(|u| placed.get(u)).filter(|p| p.priority < pod.priority && p.pod.metadata.deletion_timestamp.is_none()).collect();
    if lower.is_empty() {
        return None;
    }
    let mut trial = node.clone();
    for victim in &lower {
        trial.remove_pod(victim);
    }
    if plugins::filter(pod, &trial).is_err() {
        return None;
    }
    // More important first: higher priority, then started earlier.
    lower.sort_by_key(|p| (Reverse(p.priority), p.pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0)));
    let mut victims = Vec::new();
    for candidate in lower {
        trial.add_pod(candidate);
        if plugins::filter(pod, &trial).is_err() {
            trial.remove_pod(candidate);
            victims.push(candidate.clone());
        }
    }
    Some(victims)
}

/// Upstream's choice among candidate nodes: the lowest highest-priority
/// victim, then the smallest sum of priorities, then the fewest victims.
pub fn best(candidates: Vec<(String, Vec<PodInfo>)>) -> Option<(String, Vec<PodInfo>)> {
    candidates.into_iter().min_by_key(|(_, victims)| {
        let highest = victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN);
        let sum: i64 = victims.iter().map(|v| v.priority as i64).sum();
        (highest, sum, victims.len())
    })
}

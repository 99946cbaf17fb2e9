//! DefaultPreemption, as upstream's PostFilter: when a pod fits nowhere,
//! find the node where evicting the fewest, least important lower-priority
//! pods makes it fit, breaking as few PodDisruptionBudgets as it can;
//! those pods are the victims, and the pod is nominated to that node until
//! they are gone.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::config::Profile;
use crate::model::{NodeInfo, PodInfo};
use crate::{plugins, topology};

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

/// The pods to evict from one node, and how many of them evicting breaks a
/// PodDisruptionBudget.
pub struct Victims {
    pub pods: Vec<PodInfo>,
    pub violating: usize,
}

/// Splits pods into those whose eviction would break a disruption budget
/// (its `disruptionsAllowed` used up, counting the others evicted before
/// them) and the rest, as upstream's filterPodsWithPDBViolation.
fn by_budget<'a>(pods: Vec<&'a PodInfo>, budgets: &[Arc<PodDisruptionBudget>]) -> (Vec<&'a PodInfo>, Vec<&'a PodInfo>) {
    let mut allowed: Vec<i32> = budgets.iter().map(|b| b.status.as_ref().map_or(0, |s| s.disruptions_allowed)).collect();
    pods.into_iter().partition(|pod| {
        let mut violates = false;
        for (budget, left) in budgets.iter().zip(allowed.iter_mut()) {
            let same_namespace = budget.metadata.namespace == pod.pod.metadata.namespace;
            let selector = budget.spec.as_ref().and_then(|s| s.selector.as_ref());
            // A null selector matches no pod; an empty one, every pod of the namespace.
            if !same_namespace || selector.is_none() || !topology::matches(selector, pod.pod.metadata.labels.as_ref()) {
                continue;
            }
            let disrupted = budget.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()).is_some_and(|d| pod.pod.metadata.name.as_ref().is_some_and(|n| d.contains_key(n)));
            if disrupted {
                continue;
            }
            // Saturating: the status may say i32::MIN.
            *left = left.saturating_sub(1);
            violates |= *left < 0;
        }
        violates
    })
}

/// The victims on `node` that make room for `pod`: all lower-priority pods
/// removed, then each given back if the pod still fits without evicting
/// it: first those whose eviction would break a disruption budget, then
/// the rest, most important first. None if even removing all does not help.
pub fn victims_on(pod: &PodInfo, node: &NodeInfo, placed: &HashMap<String, PodInfo>, budgets: &[Arc<PodDisruptionBudget>], profile: &Profile) -> Option<Victims> {
    let mut lower: Vec<&PodInfo> = node.pods.iter().filter_map(|u| placed.get(u)).filter(|p| p.priority < pod.priority && p.pod.metadata.deletion_timestamp.is_none()).collect();
    if lower.is_empty() {
        return None;
    }
    let mut trial = node.clone();
    for victim in &lower {
        trial.remove_pod(victim);
    }
    if plugins::filter(pod, &trial, profile).is_err() {
        return None;
    }
    // More important first: higher priority, then started earlier.
    lower.sort_by_key(|p| (Reverse(p.priority), p.pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0)));
    let (violating, rest) = by_budget(lower, budgets);
    let mut victims = Victims { pods: Vec::new(), violating: 0 };
    for (candidate, breaks_budget) in violating.into_iter().map(|p| (p, true)).chain(rest.into_iter().map(|p| (p, false))) {
        trial.add_pod(candidate);
        if plugins::filter(pod, &trial, profile).is_err() {
            trial.remove_pod(candidate);
            victims.pods.push(candidate.clone());
            victims.violating += usize::from(breaks_budget);
        }
    }
    Some(victims)
}

/// Upstream's choice among candidate nodes: the fewest disruption budgets
/// broken, then the lowest highest-priority victim, then the smallest sum
/// of priorities, then the fewest victims.
pub fn best(candidates: Vec<(String, Victims)>) -> Option<(String, Victims)> {
    candidates.into_iter().min_by_key(|(_, victims)| {
        let highest = victims.pods.iter().map(|v| v.priority).max().unwrap_or(i32::MIN);
        let sum: i64 = victims.pods.iter().map(|v| v.priority as i64).sum();
        (victims.violating, highest, sum, victims.pods.len())
    })
}

//! The scheduling queue, as upstream's: pods ready to try (highest
//! priority, then oldest, first), pods backing off after a failed attempt
//! (by default 1 s doubling to 10 s), and pods that fit nowhere, which wait for a
//! cluster event that could make them fit (or 5 minutes).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use crate::model::PodInfo;

const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Active,
    Backoff,
    Unschedulable,
    /// Popped: being scheduled or bound.
    InFlight,
}

struct Queued {
    info: PodInfo,
    stage: Stage,
    attempts: u32,
    last_failure: Option<Instant>,
    /// Matches the heap entry that is current.
    seq: u64,
    /// When it entered the queue, for the end-to-end latency.
    queued_at: Instant,
}

#[derive(PartialEq, Eq)]
struct Entry {
    priority: i32,
    seq: u64,
    uid: String,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // A max-heap: higher priority first, then the earlier arrival.
        self.priority.cmp(&other.priority).then(other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

pub struct Queue {
    heap: BinaryHeap<Entry>,
    pods: HashMap<String, Queued>,
    seq: u64,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl Default for Queue {
    fn default() -> Self {
        Queue::new(Duration::from_secs(1), Duration::from_secs(10))
    }
}

impl Queue {
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> Queue {
        Queue { heap: BinaryHeap::new(), pods: HashMap::new(), seq: 0, initial_backoff, max_backoff }
    }

    fn activate(&mut self, uid: &str) {
        self.seq += 1;
        if let Some(q) = self.pods.get_mut(uid) {
            q.stage = Stage::Active;
            q.seq = self.seq;
            self.heap.push(Entry { priority: q.info.priority, seq: self.seq, uid: uid.to_string() });
        }
    }

    /// A pending pod, new or changed. A changed pod that fit nowhere is
    /// tried again: the change may make it fit.
    pub fn add_or_update(&mut self, info: PodInfo) {
        let uid = info.uid.clone();
        match self.pods.get_mut(&uid) {
            Some(q) => {
                q.info = info;
                if q.stage == Stage::Unschedulable {
                    self.activate(&uid);
                }
            }
            None => {
                self.pods.insert(uid.clone(), Queued { info, stage: Stage::Active, attempts: 0, last_failure: None, seq: 0, queued_at: Instant::now() });
                self.activate(&uid);
            }
        }
    }

    pub fn remove(&mut self, uid: &str) {
        self.pods.remove(uid);
    }

    pub fn pop(&mut self) -> Option<PodInfo> {
        while let Some(entry) = self.heap.pop() {
            if let Some(q) = self.pods.get_mut(&entry.uid).filter(|q| q.stage == Stage::Active && q.seq == entry.seq) {
                q.stage = Stage::InFlight;
                return Some(q.info.clone());
            }
        }
        None
    }

    /// An attempt failed: the pod fit nowhere (`unschedulable`) or its
    /// binding failed.
    pub fn failed(&mut self, uid: &str, unschedulable: bool) {
        if let Some(q) = self.pods.get_mut(uid) {
            q.attempts += 1;
            q.last_failure = Some(Instant::now());
            q.stage = if unschedulable { Stage::Unschedulable } else { Stage::Backoff };
        }
    }

    /// Bound: no longer queued. How long since it was queued, and in how
    /// many attempts (this one included).
    pub fn done(&mut self, uid: &str) -> Option<(Duration, u32)> {
        self.pods.remove(uid).map(|q| (q.queued_at.elapsed(), q.attempts + 1))
    }

    /// How many pods are ready to try, backing off, and waiting for the
    /// cluster to change (`scheduler_pending_pods`). In flight is none.
    pub fn pending(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for q in self.pods.values() {
            match q.stage {
                Stage::Active => counts.0 += 1,
                Stage::Backoff => counts.1 += 1,
                Stage::Unschedulable => counts.2 += 1,
                Stage::InFlight => {}
            }
        }
        counts
    }

    fn backoff_over(&self, q: &Queued, now: Instant) -> bool {
        let backoff = self.initial_backoff.saturating_mul(1 << q.attempts.saturating_sub(1).min(8)).min(self.max_backoff);
        // A back-off too long to add to an instant never ends.
        q.last_failure.is_none_or(|t| t.checked_add(backoff).is_some_and(|due| now >= due))
    }

    /// Something changed that could make unschedulable pods fit: they go
    /// back to be tried, after their backoff.
    pub fn cluster_changed(&mut self) {
        for q in self.pods.values_mut().filter(|q| q.stage == Stage::Unschedulable) {
            q.stage = Stage::Backoff;
        }
        self.flush();
    }

    /// A pod was placed: pods waiting on other pods' placement (spread,
    /// affinity) may fit now, as upstream's AssignedPodAdd event says.
    pub fn pod_placed(&mut self) {
        let mut moved = false;
        for q in self.pods.values_mut().filter(|q| q.stage == Stage::Unschedulable && q.info.depends_on_pods) {
            q.stage = Stage::Backoff;
            moved = true;
        }
        if moved {
            self.flush();
        }
    }

    /// Moves pods whose backoff is over, and those unschedulable for too
    /// long, to be tried again. True if any were.
    pub fn flush(&mut self) -> bool {
        let now = Instant::now();
        let due: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, q)| match q.stage {
                Stage::Backoff => self.backoff_over(q, now),
                Stage::Unschedulable => q.last_failure.is_some_and(|t| now >= t + MAX_UNSCHEDULABLE),
                _ => false,
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &due {
            self.activate(uid);
        }
        !due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pod(uid: &str, priority: i32) -> PodInfo {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": uid, "namespace": "ns", "uid": uid},
            "spec": {"containers": [{"name": "c"}], "priority": priority},
        }))
        .unwrap();
        PodInfo::new(Arc::new(pod))
    }

    #[test]
    fn higher_priority_first_then_arrival() {
        let mut q = Queue::default();
        for (uid, priority) in [("a", 0), ("b", 10), ("c", 0), ("d", 10)] {
            q.add_or_update(pod(uid, priority));
        }
        let order: Vec<String> = std::iter::from_fn(|| q.pop().map(|p| p.uid)).collect();
        assert_eq!(order, ["b", "d", "a", "c"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_change_then_their_backoff() {
        let mut q = Queue::default();
        q.add_or_update(pod("a", 0));
        let a = q.pop().unwrap();
        q.failed(&a.uid, true);
        assert!(!q.flush() && q.pop().is_none(), "waits for a cluster change");
        q.cluster_changed();
        assert!(q.pop().is_none(), "still backing off (1 s after one failure)");
        std::thread::sleep(Duration::from_millis(1050));
        assert!(q.flush());
        assert_eq!(q.pop().unwrap().uid, "a");
        // A pod that changed is tried again at once.
        q.failed("a", true);
        q.add_or_update(pod("a", 0));
        assert_eq!(q.pop().unwrap().uid, "a");
        q.done("a");
        assert!(q.pop().is_none());
    }
}

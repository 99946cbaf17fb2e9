//! The scheduler's own Prometheus metrics, under upstream's names where
//! upstream has one: `scheduler_schedule_attempts_total{profile,result}`
//! (`result` is `scheduled`, `unschedulable` or `error`: an attempt that
//! panicked is an error), `scheduler_panics_total{task}` for every panic
//! caught (one pod's attempt or binding, one watched change), and
//! `scheduler_task_restarts_total{task}` for a long-running task that
//! stopped or panicked and was started again; `scheduler_pending_pods{queue}`
//! (`active`, `backoff`, `unschedulable`), the attempt's latency
//! `scheduler_scheduling_attempt_duration_seconds{profile,result}` (the
//! algorithm and the binding) and the end-to-end
//! `scheduler_pod_scheduling_sli_duration_seconds{attempts}`, from the
//! pod's entry in the queue to its binding.
//! Process-wide, as upstream's legacy registry is; `render` gives the text.

use std::sync::atomic::AtomicI64;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    profile: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptsLabels {
    attempts: String,
}

/// Upstream's buckets: 1 ms doubling to about 16 s for one attempt, 10 ms
/// doubling to about 87 minutes end to end.
#[derive(Clone)]
struct Buckets(f64, u16);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(self.0, 2.0, self.1))
    }
}

struct Metrics {
    registry: Registry,
    attempts: Family<AttemptLabels, Counter>,
    restarts: Family<TaskLabels, Counter>,
    panics: Family<TaskLabels, Counter>,
    pending: Family<QueueLabels, Gauge<i64, AtomicI64>>,
    attempt_duration: Family<AttemptLabels, Histogram, Buckets>,
    e2e_duration: Family<AttemptsLabels, Histogram, Buckets>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::default();
    let attempts = Family::<AttemptLabels, Counter>::default();
    let restarts = Family::<TaskLabels, Counter>::default();
    let panics = Family::<TaskLabels, Counter>::default();
    // prometheus-client appends `_total` to counters.
    registry.register("scheduler_schedule_attempts", "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.", attempts.clone());
    registry.register("scheduler_task_restarts", "Number of times a long-running scheduler task stopped or panicked and was started again.", restarts.clone());
    registry.register("scheduler_panics", "Number of panics caught in the scheduler, by the task they stopped (one pod's attempt or binding, one watched change).", panics.clone());
    let pending = Family::<QueueLabels, Gauge<i64, AtomicI64>>::default();
    let attempt_duration = Family::new_with_constructor(Buckets(0.001, 15));
    let e2e_duration = Family::new_with_constructor(Buckets(0.01, 20));
    registry.register("scheduler_pending_pods", "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods.", pending.clone());
    registry.register("scheduler_scheduling_attempt_duration_seconds", "Scheduling attempt latency in seconds (scheduling algorithm + binding)", attempt_duration.clone());
    registry.register("scheduler_pod_scheduling_sli_duration_seconds", "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue and might involve multiple scheduling attempts.", e2e_duration.clone());
    Metrics { registry, attempts, restarts, panics, pending, attempt_duration, e2e_duration }
});

/// One scheduling attempt's outcome, and how long it took.
pub fn attempt(profile: &str, result: &str, took: Duration) {
    let labels = AttemptLabels { profile: profile.into(), result: result.into() };
    METRICS.attempts.get_or_create(&labels).inc();
    METRICS.attempt_duration.get_or_create(&labels).observe(took.as_secs_f64());
}

/// A pod bound, `took` after it was first queued, in `attempts` attempts.
pub fn scheduled(took: Duration, attempts: u32) {
    // Upstream caps the label so its values stay few.
    let attempts = if attempts >= 15 { "15+".to_string() } else { attempts.to_string() };
    METRICS.e2e_duration.get_or_create(&AttemptsLabels { attempts }).observe(took.as_secs_f64());
}

/// The queue's pods by where they wait.
pub fn pending(active: usize, backoff: usize, unschedulable: usize) {
    for (queue, n) in [("active", active), ("backoff", backoff), ("unschedulable", unschedulable)] {
        METRICS.pending.get_or_create(&QueueLabels { queue }).set(n as i64);
    }
}

/// Shows a task's restarts at 0 from its start.
pub fn starting(task: &str) {
    let _ = METRICS.restarts.get_or_create(&TaskLabels { task: task.into() });
}

pub fn restarted(task: &str) {
    METRICS.restarts.get_or_create(&TaskLabels { task: task.into() }).inc();
}

pub fn panicked(task: &str) {
    METRICS.panics.get_or_create(&TaskLabels { task: task.into() }).inc();
}

/// The metric families in Prometheus text format, without OpenMetrics'
/// `# EOF`, so they can be appended to another component's page.
pub fn render() -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode_registry(&mut out, &METRICS.registry).expect("writing to a String cannot fail");
    out
}

//! The scheduler's own Prometheus metrics, under upstream's names where
//! upstream has one: `scheduler_schedule_attempts_total{profile,result}`
//! (`result` is `scheduled`, `unschedulable` or `error`: an attempt that
//! panicked is an error), `scheduler_panics_total{task}` for every panic
//! caught (one pod's attempt or binding, one watched change), and
//! `scheduler_task_restarts_total{task}` for a long-running task that
//! stopped or panicked and was started again.
//! Process-wide, as upstream's legacy registry is; `render` gives the text.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

struct Metrics {
    registry: Registry,
    attempts: Family<AttemptLabels, Counter>,
    restarts: Family<TaskLabels, Counter>,
    panics: Family<TaskLabels, Counter>,
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
    Metrics { registry, attempts, restarts, panics }
});

/// One scheduling attempt's outcome.
pub fn attempt(profile: &str, result: &str) {
    METRICS.attempts.get_or_create(&AttemptLabels { profile: profile.into(), result: result.into() }).inc();
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

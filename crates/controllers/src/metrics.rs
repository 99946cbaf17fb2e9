//! The controller manager's own Prometheus metrics:
//! `controller_reconcile_panics_total{controller}` (a reconcile that
//! panicked; its object is retried with back-off) and
//! `controller_restarts_total{controller}` (a controller that stopped or
//! panicked and was started again), and client-go's work queue series
//! per controller (`name`): `workqueue_adds_total` (reconciles begun),
//! `workqueue_work_duration_seconds` and `workqueue_retries_total`
//! (reconciles failed and requeued with back-off). The queue itself is
//! kube-runtime's, which shows neither its depth nor its waits, so
//! `workqueue_depth` and `workqueue_queue_duration_seconds` are not served.
//! Process-wide, as upstream's legacy registry is; `render` gives the text.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    name: String,
}

#[derive(Clone)]
struct WorkBuckets;

impl MetricConstructor<Histogram> for WorkBuckets {
    fn new_metric(&self) -> Histogram {
        // client-go's: 10 ns to 10 s, by tens.
        Histogram::new(exponential_buckets(10e-9, 10.0, 10))
    }
}

struct Metrics {
    registry: Registry,
    panics: Family<Labels, Counter>,
    restarts: Family<Labels, Counter>,
    adds: Family<QueueLabels, Counter>,
    retries: Family<QueueLabels, Counter>,
    work: Family<QueueLabels, Histogram, WorkBuckets>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::default();
    let panics = Family::<Labels, Counter>::default();
    let restarts = Family::<Labels, Counter>::default();
    // prometheus-client appends `_total` to counters.
    registry.register("controller_reconcile_panics", "Number of reconciles that panicked, per controller; each object is retried with back-off.", panics.clone());
    registry.register("controller_restarts", "Number of times a controller stopped or panicked and was started again.", restarts.clone());
    let adds = Family::<QueueLabels, Counter>::default();
    let retries = Family::<QueueLabels, Counter>::default();
    let work = Family::new_with_constructor(WorkBuckets);
    registry.register("workqueue_adds", "Total number of adds handled by workqueue", adds.clone());
    registry.register("workqueue_retries", "Total number of retries handled by workqueue", retries.clone());
    registry.register("workqueue_work_duration_seconds", "How long in seconds processing an item from workqueue takes.", work.clone());
    Metrics { registry, panics, restarts, adds, retries, work }
});

/// Shows a controller's counters at 0 from its start, so that a rate over
/// them is defined before the first panic.
pub(crate) fn starting(controller: &str) {
    let labels = Labels { controller: controller.into() };
    let _ = METRICS.panics.get_or_create(&labels);
    let _ = METRICS.restarts.get_or_create(&labels);
    let queue = QueueLabels { name: controller.into() };
    let _ = METRICS.adds.get_or_create(&queue);
    let _ = METRICS.retries.get_or_create(&queue);
}

/// A reconcile begun.
pub(crate) fn work_started(controller: &str) {
    METRICS.adds.get_or_create(&QueueLabels { name: controller.into() }).inc();
}

/// A reconcile done (or failed), `took` after it began.
pub(crate) fn work_done(controller: &str, took: Duration) {
    METRICS.work.get_or_create(&QueueLabels { name: controller.into() }).observe(took.as_secs_f64());
}

/// A failed reconcile, put back with back-off.
pub(crate) fn retried(controller: &str) {
    METRICS.retries.get_or_create(&QueueLabels { name: controller.into() }).inc();
}

pub(crate) fn reconcile_panicked(controller: &str) {
    METRICS.panics.get_or_create(&Labels { controller: controller.into() }).inc();
}

pub(crate) fn restarted(controller: &str) {
    METRICS.restarts.get_or_create(&Labels { controller: controller.into() }).inc();
}

/// The metric families in Prometheus text format, without OpenMetrics'
/// `# EOF`, so they can be appended to another component's page.
pub fn render() -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode_registry(&mut out, &METRICS.registry).expect("writing to a String cannot fail");
    out
}

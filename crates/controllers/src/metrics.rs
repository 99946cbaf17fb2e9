//! The controller manager's own Prometheus metrics:
//! `controller_reconcile_panics_total{controller}` (a reconcile that
//! panicked; its object is retried with back-off) and
//! `controller_restarts_total{controller}` (a controller that stopped or
//! panicked and was started again). Process-wide, as upstream's legacy
//! registry is; `render` gives the text.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    controller: String,
}

struct Metrics {
    registry: Registry,
    panics: Family<Labels, Counter>,
    restarts: Family<Labels, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::default();
    let panics = Family::<Labels, Counter>::default();
    let restarts = Family::<Labels, Counter>::default();
    // prometheus-client appends `_total` to counters.
    registry.register("controller_reconcile_panics", "Number of reconciles that panicked, per controller; each object is retried with back-off.", panics.clone());
    registry.register("controller_restarts", "Number of times a controller stopped or panicked and was started again.", restarts.clone());
    Metrics { registry, panics, restarts }
});

/// Shows a controller's counters at 0 from its start, so that a rate over
/// them is defined before the first panic.
pub(crate) fn starting(controller: &str) {
    let labels = Labels { controller: controller.into() };
    let _ = METRICS.panics.get_or_create(&labels);
    let _ = METRICS.restarts.get_or_create(&labels);
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

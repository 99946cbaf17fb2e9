//! `/metrics`: upstream's API server metrics in Prometheus text format,
//! under upstream's names and labels, so existing dashboards and alerts work.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A finished request: what it was and its HTTP code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    #[prometheus(flatten)]
    pub request: LatencyLabels,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InflightLabels {
    pub request_kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: String,
}

#[derive(Clone)]
struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        // Upstream's apiserver_request_duration_seconds buckets.
        Histogram::new([
            0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
        ])
    }
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram, LatencyBuckets>,
    pub inflight: Family<InflightLabels, Gauge<i64, AtomicI64>>,
    pub storage_objects: Family<ResourceLabels, Gauge<i64, AtomicI64>>,
    /// Seconds left on each request's client certificate.
    pub client_certificate_expiration: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::new_with_constructor(LatencyBuckets);
        let inflight = Family::<InflightLabels, Gauge<i64, AtomicI64>>::default();
        let storage_objects = Family::<ResourceLabels, Gauge<i64, AtomicI64>>::default();
        // prometheus-client appends `_total` to counters.
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
            latency.clone(),
        );
        registry.register(
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
            inflight.clone(),
        );
        registry.register(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind.",
            storage_objects.clone(),
        );
        // Upstream's buckets: half an hour to a year.
        let client_certificate_expiration = Histogram::new([
            0.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0, 86400.0, 172800.0, 345600.0, 604800.0, 2592000.0, 7776000.0, 15552000.0, 31104000.0,
        ]);
        registry.register(
            "apiserver_client_certificate_expiration_seconds",
            "Distribution of the remaining lifetime on the certificate used to authenticate a request.",
            client_certificate_expiration.clone(),
        );
        Metrics {
            registry,
            requests,
            client_certificate_expiration,
            latency,
            inflight,
            storage_objects,
        }
    }

    pub fn observe(&self, labels: LatencyLabels, code: u16, elapsed: Duration) {
        self.latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels { request: labels, code: code.to_string() })
            .inc();
    }

    /// The API server's families, then `components`' (each without an
    /// `# EOF`), then the one `# EOF` that ends the page.
    pub fn render_with(&self, components: &[fn() -> String]) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).expect("writing to a String cannot fail");
        for component in components {
            out.push_str(&component());
        }
        prometheus_client::encoding::text::encode_eof(&mut out).expect("writing to a String cannot fail");
        out
    }
}

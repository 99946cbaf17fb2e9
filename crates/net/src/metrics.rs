//! The node network's own Prometheus series, under the names of the parts
//! they stand in for, so existing dashboards read them: the service proxy
//! as kube-proxy (`kubeproxy_sync_proxy_rules_duration_seconds`,
//! `kubeproxy_sync_proxy_rules_last_timestamp_seconds`) and the cluster DNS
//! as CoreDNS (`coredns_dns_requests_total`, `coredns_dns_responses_total`,
//! `coredns_dns_request_duration_seconds`). Process-wide; `render` gives
//! the text.

use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// CoreDNS's server label for its one server block on port 53.
const DNS_SERVER: &str = "dns://:53";
/// The zone of that block (`.`): every name.
const DNS_ZONE: &str = ".";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    server: &'static str,
    zone: &'static str,
    proto: &'static str,
    family: &'static str,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    server: &'static str,
    zone: &'static str,
    rcode: &'static str,
    plugin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    server: &'static str,
    zone: &'static str,
    r#type: &'static str,
}

#[derive(Clone)]
struct DnsBuckets;

impl MetricConstructor<Histogram> for DnsBuckets {
    fn new_metric(&self) -> Histogram {
        // CoreDNS's buckets: 0.25 ms doubling to about 8 s.
        Histogram::new(exponential_buckets(0.00025, 2.0, 16))
    }
}

struct Metrics {
    registry: Registry,
    sync_duration: Histogram,
    last_sync: Gauge<f64, AtomicU64>,
    requests: Family<RequestLabels, Counter>,
    responses: Family<ResponseLabels, Counter>,
    request_duration: Family<DurationLabels, Histogram, DnsBuckets>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::default();
    // kube-proxy's buckets: 1 ms doubling to about 16 s.
    let sync_duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
    let last_sync = Gauge::<f64, AtomicU64>::default();
    let requests = Family::<RequestLabels, Counter>::default();
    let responses = Family::<ResponseLabels, Counter>::default();
    let request_duration = Family::new_with_constructor(DnsBuckets);
    registry.register("kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds", sync_duration.clone());
    registry.register("kubeproxy_sync_proxy_rules_last_timestamp_seconds", "The last time proxy rules were successfully synced", last_sync.clone());
    // prometheus-client appends `_total` to counters.
    registry.register("coredns_dns_requests", "Counter of DNS requests made per zone, protocol and family.", requests.clone());
    registry.register("coredns_dns_responses", "Counter of response status codes.", responses.clone());
    registry.register("coredns_dns_request_duration_seconds", "Histogram of the time (in seconds) each request took per zone.", request_duration.clone());
    Metrics { registry, sync_duration, last_sync, requests, responses, request_duration }
});

/// The service proxy wrote its rules, taking `took`.
pub(crate) fn proxy_synced(took: Duration) {
    METRICS.sync_duration.observe(took.as_secs_f64());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    METRICS.last_sync.set(now.as_secs_f64());
}

/// Where a DNS answer came from, as CoreDNS's `plugin` label says.
#[derive(Clone, Copy)]
pub(crate) enum DnsSource {
    /// The cluster's own names.
    Kubernetes,
    /// Asked of the host's resolvers.
    Forward,
    /// Refused before any lookup (malformed, unsupported).
    Server,
}

/// One DNS request answered: over TCP or UDP, its client address family
/// and question type, the answer's code (miekg/dns's name, as CoreDNS
/// gives it) and source, and how long it took. Labels are static strings:
/// this is on every query's path.
pub(crate) fn dns_answered(tcp: bool, ipv6: bool, qtype: &str, rcode: &'static str, source: DnsSource, took: Duration) {
    // CoreDNS names the common types and folds the rest into "other".
    const NAMED: [&str; 10] = ["A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "ANY"];
    let r#type = NAMED.into_iter().find(|t| *t == qtype).unwrap_or("other");
    let (proto, family) = (if tcp { "tcp" } else { "udp" }, if ipv6 { "2" } else { "1" });
    METRICS.requests.get_or_create(&RequestLabels { server: DNS_SERVER, zone: DNS_ZONE, proto, family, r#type }).inc();
    let plugin = match source {
        DnsSource::Kubernetes => "kubernetes",
        DnsSource::Forward => "forward",
        DnsSource::Server => "",
    };
    METRICS.responses.get_or_create(&ResponseLabels { server: DNS_SERVER, zone: DNS_ZONE, rcode, plugin }).inc();
    METRICS.request_duration.get_or_create(&DurationLabels { server: DNS_SERVER, zone: DNS_ZONE, r#type }).observe(took.as_secs_f64());
}

/// The metric families in Prometheus text format, without OpenMetrics'
/// `# EOF`, so they can be appended to the agent's page.
pub fn render() -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode_registry(&mut out, &METRICS.registry).expect("writing to a String cannot fail");
    out
}

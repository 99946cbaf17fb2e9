//! `custom.metrics.k8s.io/v1beta2` and `external.metrics.k8s.io/v1beta1`
//! from a Prometheus (`--prometheus-url`), as prometheus-adapter serves
//! them and in its rule format (`seriesQuery`, `seriesFilters`,
//! `resources`, `name`, `metricsQuery`), so the autoscaler's Pods, Object
//! and External metrics have a source without another process.
//!
//! The series each rule's `seriesQuery` finds are listed from Prometheus
//! (again at most every `RELIST`, and when a metric is asked for that the
//! last list lacked); a request becomes the rule's `metricsQuery` with
//! `<<.Series>>`, `<<.LabelMatchers>>` and `<<.GroupBy>>` filled in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use skiff_api::selector::{LabelSelector, Requirement};
use skiff_api::ResourceDef;

use crate::handler::{Api, Query};
use crate::registry::ListQuery;
use crate::status::{ApiError, ApiResult};

pub const CUSTOM_GROUP: &str = "custom.metrics.k8s.io";
pub const CUSTOM_VERSION: &str = "v1beta2";
pub const EXTERNAL_GROUP: &str = "external.metrics.k8s.io";
pub const EXTERNAL_VERSION: &str = "v1beta1";

/// How long a list of series is trusted (prometheus-adapter's
/// `--metrics-relist-interval` is minutes; a new pod's metric should not
/// wait that long).
const RELIST: Duration = Duration::from_secs(30);
/// A metric missing from the list is looked for again after this.
const MISS_RELIST: Duration = Duration::from_secs(2);
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// prometheus-adapter's default rules: every series with a namespace and a
/// pod (or other object) label; counters as per-second rates.
pub const DEFAULT_RULES: &str = r#"
rules:
- seriesQuery: '{__name__=~".+_total",namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
- seriesQuery: '{namespace!="",pod!=""}'
  seriesFilters: [{isNot: "^.*_total$"}]
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: '{__name__=~".+",job!=""}'
  resources: {overrides: {namespace: {resource: namespace}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
"#;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Rules {
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    external_rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Rule {
    series_query: String,
    #[serde(default)]
    series_filters: Vec<SeriesFilter>,
    #[serde(default)]
    resources: Resources,
    #[serde(default)]
    name: Naming,
    metrics_query: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SeriesFilter {
    is: Option<String>,
    is_not: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Resources {
    /// Label → the resource it names.
    #[serde(default)]
    overrides: BTreeMap<String, GroupResource>,
    /// A label name pattern for every resource (`<<.Resource>>`, `kube_<<.Resource>>`).
    template: Option<String>,
    /// External rules: whether the namespace label scopes the metric.
    namespaced: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupResource {
    #[serde(default)]
    group: String,
    resource: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Naming {
    #[serde(default)]
    matches: String,
    #[serde(default, rename = "as")]
    as_: String,
}

/// A rule, its regular expressions compiled.
struct Compiled {
    rule: Rule,
    name: regex::Regex,
    replacement: String,
    is: Vec<regex::Regex>,
    is_not: Vec<regex::Regex>,
}

/// A metric the rules make of a series: its name in the API, the series,
/// its rule, and the labels that name objects (by resource plural).
#[derive(Clone, Debug)]
struct Found {
    metric: String,
    series: String,
    rule: usize,
    labels: BTreeMap<String, String>,
}

#[derive(Default)]
struct Known {
    custom: Vec<Found>,
    external: Vec<Found>,
}

pub struct CustomMetrics {
    prometheus: String,
    custom: Vec<Compiled>,
    external: Vec<Compiled>,
    http: reqwest::Client,
    known: tokio::sync::Mutex<Option<(Instant, Known)>>,
}

fn compile(rule: Rule) -> Result<Compiled, String> {
    let regex = |r: &str| regex::Regex::new(r).map_err(|e| format!("{r:?}: {e}"));
    let name = regex(if rule.name.matches.is_empty() { "^(.*)$" } else { &rule.name.matches })?;
    // As the adapter: `$1` with a group to capture, else the whole name.
    let replacement = match (rule.name.as_.is_empty(), name.captures_len() > 1) {
        (false, _) => rule.name.as_.clone(),
        (true, true) => "${1}".to_string(),
        (true, false) => "${0}".to_string(),
    };
    let is = rule.series_filters.iter().filter_map(|f| f.is.as_deref()).map(regex).collect::<Result<_, _>>()?;
    let is_not = rule.series_filters.iter().filter_map(|f| f.is_not.as_deref()).map(regex).collect::<Result<_, _>>()?;
    if !rule.metrics_query.contains("<<.Series>>") {
        return Err(format!("metricsQuery {:?} has no <<.Series>>", rule.metrics_query));
    }
    Ok(Compiled { rule, name, replacement, is, is_not })
}

/// The resource a label names, by the rule's overrides or template.
fn resource_of(rule: &Rule, label: &str) -> Option<&'static ResourceDef> {
    let by_name = |group: &str, resource: &str| {
        skiff_api::resources::all().into_iter().find(|d| d.group == group && (d.plural == resource || d.singular == resource) && d.is_storage_version())
    };
    if let Some(named) = rule.resources.overrides.get(label) {
        return by_name(&named.group, &named.resource);
    }
    let template = rule.resources.template.as_deref()?;
    let (prefix, suffix) = template.split_once("<<.Resource>>")?;
    let resource = label.strip_prefix(prefix)?.strip_suffix(suffix)?;
    // `<<.Group>>` in a template is for names across groups; core first.
    by_name("", resource).or_else(|| skiff_api::resources::all().into_iter().find(|d| d.singular == resource && d.is_storage_version()))
}

/// A PromQL string literal (Go's quoting, which JSON's is a form of).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A label selector as PromQL matchers, as the adapter turns a metric
/// selector into its query's.
fn matchers(selector: &LabelSelector) -> ApiResult<Vec<String>> {
    let alternatives = |values: &[String]| quoted(&values.iter().map(|v| regex::escape(v)).collect::<Vec<_>>().join("|"));
    selector
        .requirements()
        .iter()
        .map(|r| {
            let (key, matcher) = match r {
                Requirement::Equals(k, v) => (k, format!("{k}={}", quoted(v))),
                Requirement::NotEquals(k, v) => (k, format!("{k}!={}", quoted(v))),
                Requirement::In(k, vs) => (k, format!("{k}=~{}", alternatives(vs))),
                Requirement::NotIn(k, vs) => (k, format!("{k}!~{}", alternatives(vs))),
                Requirement::Exists(k) => (k, format!("{k}!=\"\"")),
                Requirement::NotExists(k) => (k, format!("{k}=\"\"")),
            };
            if !is_label_name(key) {
                return Err(ApiError::bad_request(format!("unable to use {key:?} in a Prometheus query: not a valid label name")));
            }
            Ok(matcher)
        })
        .collect()
}

fn fill(template: &str, series: &str, matchers: &[String], group_by: &[String]) -> String {
    template.replace("<<.Series>>", series).replace("<<.LabelMatchers>>", &matchers.join(",")).replace("<<.GroupBy>>", &group_by.join(","))
}

/// A value as the adapter writes it: a milli-quantity.
fn quantity(value: f64) -> String {
    let milli = (value * 1000.0).round() as i64;
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

fn metric_not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NotFound", what.to_string())
}

impl CustomMetrics {
    /// `rules`: prometheus-adapter's configuration (YAML), or its defaults.
    pub fn new(prometheus: &str, rules: Option<&str>) -> Result<CustomMetrics, String> {
        let rules: Rules = serde_yaml::from_str(rules.unwrap_or(DEFAULT_RULES)).map_err(|e| format!("the metrics rules: {e}"))?;
        let compile_all = |list: Vec<Rule>| list.into_iter().map(compile).collect::<Result<Vec<_>, _>>();
        let custom = compile_all(rules.rules)?;
        let external = compile_all(rules.external_rules)?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().timeout(QUERY_TIMEOUT).build().map_err(|e| format!("an HTTP client for {prometheus}: {e}"))?;
        Ok(CustomMetrics { prometheus: prometheus.trim_end_matches('/').to_string(), custom, external, http, known: Default::default() })
    }

    async fn prometheus(&self, api: &str, form: &[(&str, String)]) -> ApiResult<Value> {
        let url = format!("{}/api/v1/{api}", self.prometheus);
        let unavailable = |e: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", format!("unable to fetch metrics from {url}: {e}"));
        let response = self.http.post(&url).form(form).send().await.map_err(|e| unavailable(e.to_string()))?;
        let status = response.status();
        let mut body: Value = response.json().await.map_err(|e| unavailable(e.to_string()))?;
        if body["status"] != "success" {
            let message = format!("{status}: {}", body["error"].as_str().unwrap_or_default());
            // A query the rules wrote that Prometheus refuses is the configuration's fault.
            return Err(if status == reqwest::StatusCode::BAD_REQUEST { ApiError::internal(message) } else { unavailable(message) });
        }
        Ok(body["data"].take())
    }

    /// An instant query's samples: each series' labels and value.
    async fn samples(&self, promql: String) -> ApiResult<Vec<(Value, f64)>> {
        let mut result = self.prometheus("query", &[("query", promql)]).await?;
        let Value::Array(samples) = result["result"].take() else { return Ok(Vec::new()) };
        Ok(samples
            .into_iter()
            .filter_map(|mut sample| {
                let value = sample["value"][1].as_str()?.parse().ok()?;
                Some((sample["metric"].take(), value))
            })
            .collect())
    }

    /// Lists the series of each rule and names the metrics they make.
    async fn list(&self) -> ApiResult<Known> {
        let since = (chrono::Utc::now() - chrono::Duration::minutes(10)).timestamp().to_string();
        let mut known = Known::default();
        for (external, rules) in [(false, &self.custom), (true, &self.external)] {
            let found = if external { &mut known.external } else { &mut known.custom };
            // A broad seriesQuery finds every series Prometheus has: each
            // metric and each label's resource is looked up once.
            let mut index_of: HashMap<String, usize> = HashMap::new();
            for (index, c) in rules.iter().enumerate() {
                let series = self.prometheus("series", &[("match[]", c.rule.series_query.clone()), ("start", since.clone())]).await?;
                let mut resources: HashMap<String, Option<&'static str>> = HashMap::new();
                for labels in series.as_array().into_iter().flatten() {
                    let Some(name) = labels["__name__"].as_str() else { continue };
                    if !c.is.iter().all(|r| r.is_match(name)) || c.is_not.iter().any(|r| r.is_match(name)) || !c.name.is_match(name) {
                        continue;
                    }
                    let metric = c.name.replace(name, c.replacement.as_str()).into_owned();
                    let labels: BTreeMap<String, String> = labels
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter_map(|(label, _)| {
                            let plural = *resources.entry(label.clone()).or_insert_with(|| resource_of(&c.rule, label).map(|d| d.plural));
                            Some((plural?.to_string(), label.clone()))
                        })
                        .collect();
                    // The first rule to name a metric owns it, as the adapter's.
                    match index_of.get(&metric) {
                        Some(&i) if found[i].rule == index => found[i].labels.extend(labels),
                        Some(_) => {}
                        None => {
                            index_of.insert(metric.clone(), found.len());
                            found.push(Found { metric, series: name.to_string(), rule: index, labels });
                        }
                    }
                }
            }
        }
        Ok(known)
    }

    /// The metrics known, listed again when stale or when `wanted` is missing.
    async fn known(&self, wanted: Option<(bool, &str)>) -> ApiResult<tokio::sync::MappedMutexGuard<'_, Known>> {
        let mut known = self.known.lock().await;
        let stale = match &*known {
            None => true,
            Some((at, k)) => {
                let missing = wanted.is_some_and(|(external, name)| !(if external { &k.external } else { &k.custom }).iter().any(|f| f.metric == name));
                at.elapsed() > RELIST || (missing && at.elapsed() > MISS_RELIST)
            }
        };
        if stale {
            *known = Some((Instant::now(), self.list().await?));
        }
        Ok(tokio::sync::MutexGuard::map(known, |k| &mut k.as_mut().expect("listed above").1))
    }

    /// `/apis/custom.metrics.k8s.io/v1beta2` and below.
    async fn custom(&self, api: &Api, rest: &[&str], query: &Query) -> ApiResult<Value> {
        // [namespaces/{ns}/]{resource}/{name}/{metric}
        let (namespace, rest) = match rest {
            ["namespaces", ns, resource, name, metric] => (Some(*ns), [*resource, *name, *metric]),
            [resource, name, metric] => (None, [*resource, *name, *metric]),
            [] => {
                let known = self.known(None).await?;
                let resources: Vec<Value> = known
                    .custom
                    .iter()
                    .flat_map(|f| f.labels.keys().filter(|r| *r != "namespaces").map(move |r| (r, &f.metric)))
                    .map(|(resource, metric)| {
                        let namespaced = skiff_api::resources::all().into_iter().any(|d| d.plural == resource && d.namespaced);
                        json!({"name": format!("{resource}/{metric}"), "singularName": "", "namespaced": namespaced, "kind": "MetricValueList", "verbs": ["get"]})
                    })
                    .collect();
                return Ok(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{CUSTOM_GROUP}/{CUSTOM_VERSION}"), "resources": resources}));
            }
            _ => return Err(ApiError::not_found_path()),
        };
        let [resource, name, metric] = rest;
        let found = {
            let known = self.known(Some((false, metric))).await?;
            known.custom.iter().find(|f| f.metric == metric && f.labels.contains_key(resource)).cloned()
        };
        let Some(found) = found else {
            return Err(metric_not_found(&format!("the server could not find the metric {metric} for {resource}")));
        };
        let def = skiff_api::resources::all().into_iter().find(|d| d.plural == resource && d.is_storage_version()).ok_or_else(ApiError::not_found_path)?;
        let label = &found.labels[resource];
        // The objects asked about: the one named, or those the selector picks.
        let names: Vec<String> = if name == "*" {
            let selector = LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or_default()).map_err(ApiError::bad_request)?;
            let listed = api.registry.list_objects(def, namespace.filter(|_| def.namespaced), &ListQuery { label: selector, ..Default::default() }).await?;
            listed.iter().filter_map(|o| o["metadata"]["name"].as_str().map(String::from)).collect()
        } else {
            vec![name.to_string()]
        };
        if names.is_empty() {
            return Ok(json!({"kind": "MetricValueList", "apiVersion": format!("{CUSTOM_GROUP}/{CUSTOM_VERSION}"), "metadata": {}, "items": []}));
        }
        let mut selectors = Vec::new();
        if let (Some(ns), Some(ns_label)) = (namespace, found.labels.get("namespaces")) {
            selectors.push(format!("{ns_label}={}", quoted(ns)));
        }
        selectors.push(format!("{label}=~{}", quoted(&names.iter().map(|n| regex::escape(n)).collect::<Vec<_>>().join("|"))));
        let metric_selector = LabelSelector::parse(query.get("metricLabelSelector").map(String::as_str).unwrap_or_default()).map_err(ApiError::bad_request)?;
        selectors.extend(matchers(&metric_selector)?);
        let rule = &self.custom[found.rule].rule;
        let promql = fill(&rule.metrics_query, &found.series, &selectors, std::slice::from_ref(label));
        let wanted: BTreeSet<&String> = names.iter().collect();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let items: Vec<Value> = self
            .samples(promql)
            .await?
            .into_iter()
            .filter_map(|(labels, value)| {
                let object = labels[label.as_str()].as_str()?.to_string();
                wanted.contains(&object).then(|| {
                    let mut described = json!({"kind": def.kind, "name": object, "apiVersion": if def.group.is_empty() { format!("/{}", def.version) } else { format!("{}/{}", def.group, def.version) }});
                    if let Some(ns) = namespace {
                        described["namespace"] = json!(ns);
                    }
                    json!({"describedObject": described, "metric": {"name": metric}, "timestamp": now, "value": quantity(value)})
                })
            })
            .collect();
        if name != "*" && items.is_empty() {
            return Err(metric_not_found(&format!("the server could not find the metric {metric} for {resource} {name}")));
        }
        Ok(json!({"kind": "MetricValueList", "apiVersion": format!("{CUSTOM_GROUP}/{CUSTOM_VERSION}"), "metadata": {}, "items": items}))
    }

    /// `/apis/external.metrics.k8s.io/v1beta1` and below.
    async fn external(&self, rest: &[&str], query: &Query) -> ApiResult<Value> {
        let (namespace, metric) = match rest {
            ["namespaces", ns, metric] => (*ns, *metric),
            [] => {
                let known = self.known(None).await?;
                let resources: Vec<Value> = known
                    .external
                    .iter()
                    .map(|f| json!({"name": f.metric, "singularName": "", "namespaced": true, "kind": "ExternalMetricValueList", "verbs": ["get"]}))
                    .collect();
                return Ok(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{EXTERNAL_GROUP}/{EXTERNAL_VERSION}"), "resources": resources}));
            }
            _ => return Err(ApiError::not_found_path()),
        };
        let found = {
            let known = self.known(Some((true, metric))).await?;
            known.external.iter().find(|f| f.metric == metric).cloned()
        };
        let Some(found) = found else {
            return Err(metric_not_found(&format!("the server could not find the requested resource (get {metric}.{EXTERNAL_GROUP})")));
        };
        let rule = &self.external[found.rule].rule;
        let selector = LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or_default()).map_err(ApiError::bad_request)?;
        let mut selectors = Vec::new();
        if let (true, Some(ns_label)) = (rule.resources.namespaced.unwrap_or(true), found.labels.get("namespaces")) {
            selectors.push(format!("{ns_label}={}", quoted(namespace)));
        }
        selectors.extend(matchers(&selector)?);
        // Grouped by what the selector names, as the adapter does.
        let group_by: BTreeSet<String> = selector.requirements().iter().map(|r| r.key().to_string()).collect();
        let promql = fill(&rule.metrics_query, &found.series, &selectors, &group_by.into_iter().collect::<Vec<_>>());
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let items: Vec<Value> = self
            .samples(promql)
            .await?
            .into_iter()
            .map(|(mut labels, value)| {
                if let Some(labels) = labels.as_object_mut() {
                    labels.remove("__name__");
                }
                json!({"metricName": metric, "metricLabels": labels, "timestamp": now, "value": quantity(value)})
            })
            .collect();
        Ok(json!({"kind": "ExternalMetricValueList", "apiVersion": format!("{EXTERNAL_GROUP}/{EXTERNAL_VERSION}"), "metadata": {}, "items": items}))
    }
}

/// The group version a path is under, and the rest of it, if it is one of these APIs.
fn split(path: &str) -> Option<(bool, Vec<&str>)> {
    let (external, rest) = if let Some(rest) = path.strip_prefix(&format!("/apis/{CUSTOM_GROUP}/{CUSTOM_VERSION}")) {
        (false, rest)
    } else {
        (true, path.strip_prefix(&format!("/apis/{EXTERNAL_GROUP}/{EXTERNAL_VERSION}"))?)
    };
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    Some((external, rest.split('/').filter(|s| !s.is_empty()).collect()))
}

/// Whether a path is one of these APIs' (served when configured).
pub fn serves(path: &str) -> bool {
    split(path).is_some() || path == format!("/apis/{CUSTOM_GROUP}") || path == format!("/apis/{EXTERNAL_GROUP}")
}

/// What authorization sees of a request here, as upstream's RequestInfo
/// parses it: the object's resource, its name, and the metric as the
/// subresource (custom); the metric as the resource (external).
pub fn attributes(user: &skiff_auth::UserInfo, method: &str, path: &str) -> Option<skiff_auth::authz::Attributes> {
    let (external, rest) = split(path)?;
    let (group, version) = if external { (EXTERNAL_GROUP, EXTERNAL_VERSION) } else { (CUSTOM_GROUP, CUSTOM_VERSION) };
    let (namespace, rest) = match rest.as_slice() {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest.to_vec()),
        _ => (String::new(), rest),
    };
    let (resource, name, subresource) = match rest.as_slice() {
        [resource] => (*resource, "", ""),
        [resource, name] => (*resource, *name, ""),
        [resource, name, sub] => (*resource, *name, *sub),
        _ => return None,
    };
    // A name of `*` lists, as upstream's RequestInfo has it.
    let verb = if name.is_empty() || name == "*" { "list" } else { "get" };
    Some(skiff_auth::authz::Attributes {
        user: user.clone(),
        verb: if method == "GET" { verb.to_string() } else { method.to_ascii_lowercase() },
        resource_request: true,
        api_group: group.to_string(),
        api_version: version.to_string(),
        resource: resource.to_string(),
        subresource: subresource.to_string(),
        namespace,
        name: if name == "*" { String::new() } else { name.to_string() },
        path: String::new(),
    })
}

/// The `/apis` entries of these groups.
pub fn groups() -> Vec<Value> {
    [(CUSTOM_GROUP, CUSTOM_VERSION), (EXTERNAL_GROUP, EXTERNAL_VERSION)]
        .iter()
        .map(|(g, v)| {
            let version = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [version], "preferredVersion": version})
        })
        .collect()
}

/// Serves a request under these APIs.
pub async fn serve(api: &Api, metrics: &CustomMetrics, method: &axum::http::Method, path: &str, query: &Query) -> Response {
    if method != axum::http::Method::GET {
        return ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "the server does not allow this method on the requested resource").into_response();
    }
    let answer = match split(path) {
        None => {
            let group = path.trim_start_matches("/apis/");
            groups().into_iter().find(|g| g["name"] == group).map(|mut g| {
                g["kind"] = json!("APIGroup");
                g["apiVersion"] = json!("v1");
                g
            }).ok_or_else(ApiError::not_found_path)
        }
        Some((false, rest)) => metrics.custom(api, &rest, query).await,
        Some((true, rest)) => metrics.external(&rest, query).await,
    };
    match answer {
        Ok(body) => (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_metrics_as_the_adapter_does() {
        let rules: Rules = serde_yaml::from_str(DEFAULT_RULES).unwrap();
        let counter = compile(rules.rules.into_iter().next().unwrap()).unwrap();
        assert_eq!(counter.name.replace("http_requests_total", counter.replacement.as_str()), "http_requests_per_second");
        let plain = compile(serde_yaml::from_str("seriesQuery: '{a!=\"\"}'\nmetricsQuery: '<<.Series>>'").unwrap()).unwrap();
        assert_eq!(plain.name.replace("queue_depth", plain.replacement.as_str()), "queue_depth");
        assert!(compile(serde_yaml::from_str("seriesQuery: x\nmetricsQuery: 'sum(up)'").unwrap()).is_err(), "a query without its series");
    }

    #[test]
    fn selectors_become_promql_matchers() {
        let selector = LabelSelector::parse("app=web,tier in (a,b.c),!gone,env!=dev").unwrap();
        assert_eq!(matchers(&selector).unwrap(), ["app=\"web\"", "tier=~\"a|b\\\\.c\"", "gone=\"\"", "env!=\"dev\""]);
        assert_eq!(matchers(&LabelSelector::parse("app.kubernetes.io/name=x").unwrap()).unwrap_err().code, StatusCode::BAD_REQUEST);
        assert_eq!(fill("sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)", "s", &["a=\"1\"".into(), "b=\"2\"".into()], &["pod".into()]), "sum(s{a=\"1\",b=\"2\"}) by (pod)");
    }

    #[test]
    fn values_are_milli_quantities() {
        assert_eq!((quantity(2.0), quantity(1.5), quantity(0.0004)), ("2".into(), "1500m".into(), "0".into()));
    }

    #[test]
    fn requests_are_authorized_as_upstream_parses_them() {
        let user = skiff_auth::UserInfo::named("hpa", &[]);
        let a = attributes(&user, "GET", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/requests_per_second").unwrap();
        assert_eq!((a.verb.as_str(), a.resource.as_str(), a.subresource.as_str(), a.namespace.as_str(), a.name.as_str()), ("list", "pods", "requests_per_second", "shop", ""));
        let a = attributes(&user, "GET", "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_depth").unwrap();
        assert_eq!((a.verb.as_str(), a.api_group.as_str(), a.resource.as_str(), a.namespace.as_str()), ("list", "external.metrics.k8s.io", "queue_depth", "shop"));
        assert!(attributes(&user, "GET", "/apis/custom.metrics.k8s.io/v1beta2x/pods").is_none());
    }
}

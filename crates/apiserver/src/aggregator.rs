//! The aggregation layer, as kube-aggregator serves it: an APIService
//! (`apiregistration.k8s.io/v1`) whose `spec.service` names a Service has
//! its group version served by that Service. Requests under
//! `/apis/{group}/{version}` are authenticated and authorized here, then
//! proxied over TLS (the server checked against `caBundle` as
//! `{service}.{namespace}.svc`, unless `insecureSkipTLSVerify`), with this
//! server's front-proxy client certificate and the user in `X-Remote-User`,
//! `X-Remote-Group` and `X-Remote-Extra-*`, which the extension server
//! trusts as `kube-system/extension-apiserver-authentication` says.
//!
//! Every APIService's `Available` condition is kept as upstream's
//! availability controller keeps it (`Local`, `ServiceNotFound`,
//! `MissingEndpoints`, `FailedDiscoveryCheck`, `Passed`), and the groups of
//! the available ones are merged into `/apis` and aggregated discovery,
//! with the resources each backend lists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use skiff_api::ResourceDef;
use skiff_auth::pki::CertPair;
use skiff_auth::UserInfo;

use crate::handler::Api;
use crate::status::{ApiError, ApiResult};

/// How often availability is checked (upstream's controller resyncs every
/// 30 s and on changes; a check is cheap, so this is sooner).
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long a backend may take to answer its discovery check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The APIService a request is for, found before authorization
/// (`Api::handle`), proxied after it (`Api::serve`).
#[derive(Clone)]
pub struct Aggregated(pub Value);

pub struct Aggregator {
    /// This server's client certificate to the backends (upstream's
    /// `--proxy-client-cert-file`).
    client: Option<CertPair>,
    /// Each available APIService's resources (its backend's
    /// APIResourceList), by APIService name.
    discovered: Mutex<HashMap<String, Value>>,
}

fn apiservices() -> &'static ResourceDef {
    skiff_api::resources::find("apiregistration.k8s.io", "v1", "apiservices").expect("apiservices are served")
}

fn core(plural: &str) -> &'static ResourceDef {
    skiff_api::resources::find("", "v1", plural).expect("a core resource")
}

fn unavailable(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", message)
}

/// An APIService's group and version.
fn group_version(apiservice: &Value) -> (&str, &str) {
    (apiservice.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default(), apiservice.pointer("/spec/version").and_then(Value::as_str).unwrap_or_default())
}

/// Where an APIService's Service is reached.
struct Backend {
    host: String,
    port: u16,
    /// The name the server's certificate must carry.
    server_name: String,
}

impl Aggregator {
    pub fn new(client: Option<CertPair>) -> Aggregator {
        Aggregator { client, discovered: Default::default() }
    }

    /// The APIService that serves `/apis/{group}/{version}/…` through a
    /// Service, if the path is under one and no built-in or custom
    /// resource serves that group version.
    pub async fn serving(api: &Api, path: &str) -> Option<Value> {
        let mut parts = path.trim_start_matches('/').split('/');
        let (Some("apis"), Some(group), Some(version)) = (parts.next(), parts.next(), parts.next()) else { return None };
        if group.is_empty() || version.is_empty() || crate::discovery::resource_list(group, version).is_some() {
            return None;
        }
        let apiservice = api.registry.get_cached(apiservices(), None, &format!("{version}.{group}")).await.ok()?;
        apiservice.pointer("/spec/service/name").is_some().then(|| Value::clone(&apiservice))
    }

    /// The Service's address: an ExternalName's host, else a ready
    /// endpoint of the Service port (upstream's `ResolveEndpoint`).
    async fn backend(api: &Api, apiservice: &Value) -> Result<Backend, (&'static str, String)> {
        let service_ref = &apiservice["spec"]["service"];
        let (ns, name) = (service_ref["namespace"].as_str().unwrap_or_default(), service_ref["name"].as_str().unwrap_or_default());
        let port = service_ref["port"].as_u64().unwrap_or(443);
        let server_name = format!("{name}.{ns}.svc");
        // From the watch cache, as upstream's aggregator reads its informer.
        let service = match api.registry.get_cached(core("services"), Some(ns), name).await {
            Ok(s) => s,
            Err(_) => return Err(("ServiceNotFound", format!("service/{name} in \"{ns}\" is not present"))),
        };
        if service.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName") {
            let host = service.pointer("/spec/externalName").and_then(Value::as_str).unwrap_or_default().to_string();
            return Ok(Backend { host, port: port as u16, server_name });
        }
        let ports = service.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
        let Some(service_port) = ports.iter().find(|p| p["port"].as_u64() == Some(port)) else {
            return Err(("ServiceNotFound", format!("service/{name} in \"{ns}\" is not listening on port {port}")));
        };
        let port_name = service_port["name"].as_str().unwrap_or_default();
        let slices_def = skiff_api::resources::find("discovery.k8s.io", "v1", "endpointslices").expect("endpointslices are served");
        let selector = skiff_api::selector::LabelSelector::parse(&format!("kubernetes.io/service-name={name}")).unwrap_or_default();
        let slices = api.registry.list_objects(slices_def, Some(ns), &crate::registry::ListQuery { label: selector, ..Default::default() }).await.unwrap_or_default();
        for slice in &slices {
            let Some(port) = slice["ports"].as_array().into_iter().flatten().find(|p| p["name"].as_str().unwrap_or_default() == port_name).and_then(|p| p["port"].as_u64()) else {
                continue;
            };
            let ready = slice["endpoints"].as_array().into_iter().flatten().find(|e| e.pointer("/conditions/ready") != Some(&Value::Bool(false)));
            if let Some(address) = ready.and_then(|e| e.pointer("/addresses/0")).and_then(Value::as_str) {
                return Ok(Backend { host: address.to_string(), port: port as u16, server_name });
            }
        }
        Err(("MissingEndpoints", format!("endpoints for service/{name} in \"{ns}\" have no addresses with port name {port_name:?}")))
    }

    /// The TLS client for an APIService: its caBundle (or none checked),
    /// this server's client certificate.
    fn tls(&self, apiservice: &Value) -> ApiResult<tokio_rustls::TlsConnector> {
        let spec = &apiservice["spec"];
        let builder = if spec["insecureSkipTLSVerify"].as_bool() == Some(true) {
            skiff_auth::pki::unverified_client_builder()
        } else {
            let bundle = spec["caBundle"].as_str().unwrap_or_default();
            let pem = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, bundle).map_err(|e| unavailable(format!("caBundle is not base64: {e}")))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
                let _ = roots.add(cert);
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().expect("ring supports the default versions").with_root_certificates(roots)
        };
        Ok(tokio_rustls::TlsConnector::from(Arc::new(self.with_client(builder)?)))
    }

    fn with_client(&self, builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>) -> ApiResult<rustls::ClientConfig> {
        let Some(client) = &self.client else { return Ok(builder.with_no_client_auth()) };
        let certs = rustls_pemfile::certs(&mut client.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().map_err(|e| ApiError::internal(e.to_string()))?;
        let key = rustls_pemfile::private_key(&mut client.key_pem.as_bytes()).ok().flatten().ok_or_else(|| ApiError::internal("the front-proxy client key is unreadable"))?;
        builder.with_client_auth_cert(certs, key).map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Sends one request to an APIService's backend, found by `backend`.
    async fn send(&self, backend: Backend, apiservice: &Value, request: hyper::Request<Body>) -> ApiResult<hyper::Response<hyper::body::Incoming>> {
        let address = format!("{}:{}", backend.host, backend.port);
        let tcp = crate::proxy::connect_tcp(&backend.host, backend.port).await.map_err(|e| unavailable(format!("error trying to reach service: dial tcp {address}: {e}")))?;
        let name = rustls::pki_types::ServerName::try_from(backend.server_name).map_err(|e| unavailable(e.to_string()))?;
        let tls = self.tls(apiservice)?.connect(name, tcp).await.map_err(|e| unavailable(format!("error trying to reach service: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| unavailable(format!("error trying to reach service: {e}")))?;
        tokio::spawn(connection.with_upgrades());
        sender.send_request(request).await.map_err(|e| unavailable(format!("error trying to reach service: {e}")))
    }

    /// Proxies an authorized request to the APIService's backend, as the
    /// user it is from.
    pub async fn proxy(&self, api: &Api, user: &UserInfo, apiservice: &Value, mut parts: axum::http::request::Parts, body: Body) -> Response {
        let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let upgrade = parts.headers.get(header::UPGRADE).is_some();
        let mut request = hyper::Request::builder().method(parts.method.clone()).uri(uri);
        let headers = request.headers_mut().expect("a new request builder");
        for (name, value) in parts.headers.iter() {
            let credential = name == header::AUTHORIZATION || name.as_str().starts_with("impersonate-") || name.as_str().starts_with("x-remote-");
            let hop = crate::proxy::is_hop_by_hop(name, &parts.headers) && !(upgrade && (name == header::CONNECTION || name == header::UPGRADE));
            if !credential && !hop {
                headers.append(name.clone(), value.clone());
            }
        }
        for (name, value) in identity_headers(user) {
            headers.append(name, value);
        }
        let request = match request.body(if upgrade { Body::empty() } else { body }) {
            Ok(r) => r,
            Err(e) => return ApiError::bad_request(e.to_string()).into_response(),
        };
        let sent = match Self::backend(api, apiservice).await {
            Ok(backend) => self.send(backend, apiservice, request).await,
            Err((_, message)) => Err(unavailable(message)),
        };
        let response = match sent {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
        if upgrade && response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // exec and port-forward of an aggregated API.
            return crate::proxy::spliced(&mut parts, response).unwrap_or_else(IntoResponse::into_response);
        }
        let (mut head, incoming) = response.into_parts();
        let connection_headers = head.headers.clone();
        let names: Vec<HeaderName> = head.headers.keys().cloned().collect();
        for name in names.iter().filter(|n| crate::proxy::is_hop_by_hop(n, &connection_headers)) {
            head.headers.remove(name);
        }
        Response::from_parts(head, Body::new(incoming))
    }

    /// Keeps every APIService's `Available` condition, and the resources
    /// of the available ones, until the server goes.
    pub async fn keep_available(api: Weak<Api>) {
        loop {
            let Some(api) = api.upgrade() else { return };
            api.aggregator.check_all(&api).await;
            drop(api);
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }

    async fn check_all(&self, api: &Api) {
        let Ok(listed) = api.registry.list_objects(apiservices(), None, &Default::default()).await else { return };
        let mut discovered = HashMap::new();
        for apiservice in &listed {
            let name = crate::registry::name_of(apiservice).to_string();
            let (status, reason, message) = match apiservice.pointer("/spec/service/name") {
                None => ("True", "Local", "Local APIServices are always available".to_string()),
                Some(_) => match self.discover(api, apiservice).await {
                    Ok(resources) => {
                        discovered.insert(name.clone(), resources);
                        ("True", "Passed", "all checks passed".to_string())
                    }
                    Err((reason, message)) => ("False", reason, message),
                },
            };
            self.set_available(api, apiservice, status, reason, &message).await;
        }
        *self.discovered.lock().unwrap_or_else(PoisonError::into_inner) = discovered;
    }

    /// The backend's resource list for the APIService's group version
    /// (upstream checks the same path for availability).
    async fn discover(&self, api: &Api, apiservice: &Value) -> Result<Value, (&'static str, String)> {
        // The Service and its endpoints first, for a precise reason.
        let backend = Self::backend(api, apiservice).await?;
        let (group, version) = group_version(apiservice);
        let path = format!("/apis/{group}/{version}");
        let failed = |why: String| ("FailedDiscoveryCheck", format!("failing or missing response from https://{}{path}: {why}", crate::registry::name_of(apiservice)));
        let request = hyper::Request::get(&path).header(header::ACCEPT, "application/json").body(Body::empty()).map_err(|e| failed(e.to_string()))?;
        let response = tokio::time::timeout(CHECK_TIMEOUT, self.send(backend, apiservice, request)).await.map_err(|_| failed("timed out".into()))?.map_err(|e| failed(e.message))?;
        if !response.status().is_success() {
            return Err(failed(format!("bad status from {path}: {}", response.status().as_u16())));
        }
        let bytes = tokio::time::timeout(CHECK_TIMEOUT, axum::body::to_bytes(Body::new(response.into_body()), crate::handler::MAX_BODY)).await.map_err(|_| failed("timed out".into()))?.map_err(|e| failed(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| failed(format!("the resource list is not JSON: {e}")))
    }

    /// Writes the `Available` condition when it changed.
    async fn set_available(&self, api: &Api, apiservice: &Value, status: &str, reason: &str, message: &str) {
        let available = |a: &Value| a.pointer("/status/conditions").and_then(Value::as_array).and_then(|c| c.iter().find(|c| c["type"] == "Available")).cloned();
        if available(apiservice).is_some_and(|c| c["status"] == status && c["reason"] == reason && c["message"] == message) {
            return;
        }
        let name = crate::registry::name_of(apiservice);
        let change = |mut current: Value| {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let since = available(&current).filter(|c| c["status"] == status).map_or(json!(now), |c| c["lastTransitionTime"].clone());
            let mut conditions: Vec<Value> = current.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().filter(|c| c["type"] != "Available").cloned().collect();
            conditions.push(json!({"type": "Available", "status": status, "reason": reason, "message": message, "lastTransitionTime": since}));
            current["status"] = json!({"conditions": conditions});
            Ok(current)
        };
        if let Err(e) = api.registry.guaranteed_update(apiservices(), None, name, None, false, change).await {
            tracing::debug!("APIService {name}: writing its availability: {}", e.message);
        }
    }

    /// `/apis` entries of the available APIServices' groups, their
    /// versions by priority (as upstream orders them).
    pub async fn groups(&self, api: &Api) -> Vec<Value> {
        let discovered: Vec<String> = self.discovered.lock().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect();
        let mut served: Vec<Value> = Vec::new();
        for name in discovered {
            if let Ok(a) = api.registry.get_cached(apiservices(), None, &name).await {
                served.push(Value::clone(&a));
            }
        }
        let priority = |a: &Value, field: &str| a.pointer(&format!("/spec/{field}")).and_then(Value::as_i64).unwrap_or(0);
        served.sort_by_key(|a| (-priority(a, "groupPriorityMinimum"), group_version(a).0.to_string(), -priority(a, "versionPriority")));
        let mut groups: Vec<Value> = Vec::new();
        for a in &served {
            let (group, version) = group_version(a);
            let entry = json!({"groupVersion": format!("{group}/{version}"), "version": version});
            match groups.iter_mut().find(|g| g["name"] == group) {
                Some(g) => g["versions"].as_array_mut().expect("versions are a list").push(entry),
                None => groups.push(json!({"name": group, "versions": [entry.clone()], "preferredVersion": entry})),
            }
        }
        groups
    }

    /// Aggregated discovery entries (`apidiscovery.k8s.io/v2`) of the
    /// available APIServices' groups, with the resources their backends list.
    pub async fn discovery_items(&self, api: &Api) -> Vec<Value> {
        let resources = self.discovered.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut items = Vec::new();
        for group in self.groups(api).await {
            let versions: Vec<Value> = group["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    let version = v["version"].as_str().unwrap_or_default();
                    let name = format!("{version}.{}", group["name"].as_str().unwrap_or_default());
                    let list = resources.get(&name).cloned().unwrap_or_default();
                    json!({"version": version, "resources": discovery_resources(&group["name"], version, &list), "freshness": "Current"})
                })
                .collect();
            items.push(json!({"metadata": {"name": group["name"], "creationTimestamp": null}, "versions": versions}));
        }
        items
    }
}

/// An APIResourceList's resources as aggregated discovery lists them:
/// subresources under their resource.
fn discovery_resources(group: &Value, version: &str, list: &Value) -> Vec<Value> {
    let all: Vec<&Value> = list["resources"].as_array().into_iter().flatten().collect();
    let (subs, tops): (Vec<&Value>, Vec<&Value>) = all.into_iter().partition(|r| r["name"].as_str().is_some_and(|n| n.contains('/')));
    tops.iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap_or_default();
            let kind = |r: &Value| json!({"group": r.get("group").cloned().unwrap_or_else(|| group.clone()), "version": r.get("version").cloned().unwrap_or_else(|| json!(version)), "kind": r["kind"]});
            let mut entry = json!({
                "resource": name,
                "responseKind": kind(r),
                "scope": if r["namespaced"] == true { "Namespaced" } else { "Cluster" },
                "singularResource": r["singularName"],
                "verbs": r["verbs"],
            });
            for field in ["shortNames", "categories"] {
                if r[field].as_array().is_some_and(|a| !a.is_empty()) {
                    entry[field] = r[field].clone();
                }
            }
            let own: Vec<Value> = subs
                .iter()
                .filter_map(|s| {
                    let sub = s["name"].as_str()?.strip_prefix(&format!("{name}/"))?;
                    Some(json!({"subresource": sub, "responseKind": kind(s), "verbs": s["verbs"]}))
                })
                .collect();
            if !own.is_empty() {
                entry["subresources"] = json!(own);
            }
            entry
        })
        .collect()
}

/// Who the request is from, as upstream's front proxy says it.
fn identity_headers(user: &UserInfo) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let mut add = |name: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
            out.push((n, v));
        }
    };
    add("x-remote-user", &user.name);
    if !user.uid.is_empty() {
        add("x-remote-uid", &user.uid);
    }
    for group in &user.groups {
        add("x-remote-group", group);
    }
    for (key, values) in &user.extra {
        // Keys are percent-encoded, as HTTP header names cannot carry all of
        // them (and, as names, are lowercased: the escapes read the same).
        let key: String = key.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
        for value in values {
            add(&format!("x-remote-extra-{key}"), value);
        }
    }
    out
}

/// What authorization sees of a request to an aggregated API, as upstream's
/// RequestInfo parses any resource path.
pub fn attributes(user: &UserInfo, method: &Method, path: &str, query: &crate::handler::Query) -> Option<skiff_auth::authz::Attributes> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let ["apis", group, version, rest @ ..] = parts.as_slice() else { return None };
    let (watch_prefix, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    // `namespaces/{ns}` alone is the namespace itself, in its namespace.
    let (namespace, rest) = match rest {
        ["namespaces", ns, more @ ..] if !more.is_empty() => (*ns, more),
        ["namespaces", ns] => (*ns, rest),
        _ => ("", rest),
    };
    let (resource, name, subresource) = match rest {
        [] => ("", "", ""),
        [resource] => (*resource, "", ""),
        [resource, name] => (*resource, *name, ""),
        [resource, name, sub, ..] => (*resource, *name, *sub),
    };
    let watch = watch_prefix || crate::handler::flag(query, "watch");
    let verb = match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if name.is_empty() => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if name.is_empty() => "deletecollection",
        Method::DELETE => "delete",
        _ => "",
    };
    Some(skiff_auth::authz::Attributes {
        user: user.clone(),
        verb: verb.to_string(),
        resource_request: !resource.is_empty(),
        api_group: group.to_string(),
        api_version: version.to_string(),
        resource: resource.to_string(),
        subresource: subresource.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        path: if resource.is_empty() { path.to_string() } else { String::new() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: Method, path: &str, query: &[(&str, &str)]) -> (String, String, String, String, String) {
        let query = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let a = attributes(&UserInfo::default(), &method, path, &query).expect("an API path");
        (a.verb, a.resource, a.namespace, a.name, a.subresource)
    }

    #[test]
    fn request_info_as_upstream_parses_it() {
        let s = |t: (&str, &str, &str, &str, &str)| (t.0.to_string(), t.1.to_string(), t.2.to_string(), t.3.to_string(), t.4.to_string());
        assert_eq!(attrs(Method::GET, "/apis/wardle.example.com/v1alpha1/namespaces/a/flunders", &[]), s(("list", "flunders", "a", "", "")));
        assert_eq!(attrs(Method::GET, "/apis/wardle.example.com/v1alpha1/namespaces/a/flunders/f", &[]), s(("get", "flunders", "a", "f", "")));
        assert_eq!(attrs(Method::GET, "/apis/wardle.example.com/v1alpha1/flunders", &[("watch", "true")]), s(("watch", "flunders", "", "", "")));
        assert_eq!(attrs(Method::GET, "/apis/wardle.example.com/v1alpha1/watch/namespaces/a/flunders", &[]), s(("watch", "flunders", "a", "", "")));
        assert_eq!(attrs(Method::PUT, "/apis/wardle.example.com/v1alpha1/namespaces/a/flunders/f/status", &[]), s(("update", "flunders", "a", "f", "status")));
        assert_eq!(attrs(Method::DELETE, "/apis/wardle.example.com/v1alpha1/namespaces/a/flunders", &[]), s(("deletecollection", "flunders", "a", "", "")));
        assert_eq!(attrs(Method::POST, "/apis/wardle.example.com/v1alpha1/fischers", &[]), s(("create", "fischers", "", "", "")));
    }

    #[test]
    fn identity_is_passed_in_front_proxy_headers() {
        let user = UserInfo { name: "jane".into(), groups: vec!["dev".into(), "system:authenticated".into()], extra: [("scopes.example/x y".to_string(), vec!["a".to_string()])].into(), ..Default::default() };
        let headers: Vec<(String, String)> = identity_headers(&user).into_iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string())).collect();
        assert!(headers.contains(&("x-remote-user".into(), "jane".into())));
        assert_eq!(headers.iter().filter(|(n, _)| n == "x-remote-group").count(), 2);
        assert!(headers.contains(&("x-remote-extra-scopes.example%2fx%20y".into(), "a".into())));
    }
}

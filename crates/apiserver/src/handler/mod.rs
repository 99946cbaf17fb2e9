//! One handler for every API request: authentication, authorization,
//! routing by path and content negotiation here, then one module per verb
//! (as upstream's `endpoints/handlers`), each reading top to bottom: the
//! body decoded once, then field validation, admission, managed fields and
//! the write, in that order. Watches are `crate::watch`.

mod admit;
mod create;
mod delete;
mod get;
mod patch;
mod subresource;
mod update;

pub use get::list_query;

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use skiff_api::{ResourceDef, Verbs};

use crate::registry::Registry;
use crate::route::{self, Route, Target};
use crate::status::{ApiError, ApiResult};
use crate::authorization::{self, Security};
use crate::{discovery, openapi, watch};
use skiff_auth::UserInfo;

/// Upstream's limit on request bodies.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// How much of a body over the limit is read and dropped, and for how
/// long, before the 413 goes out.
const DRAIN_MAX: usize = 64 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// A request body of at most `MAX_BODY` bytes, or upstream's 413. The rest
/// of a larger body is read and dropped first (within bounds): a client
/// that sends its whole body before it reads (curl, Python's urllib3)
/// would otherwise find the connection closed under it and never see the
/// answer.
pub async fn read_body(body: axum::body::Body) -> ApiResult<bytes::Bytes> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut kept = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        if kept.len() + chunk.len() <= MAX_BODY {
            kept.extend_from_slice(&chunk);
            continue;
        }
        let mut drained = kept.len() + chunk.len();
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            while let Some(Ok(chunk)) = stream.next().await {
                drained += chunk.len();
                if drained > DRAIN_MAX {
                    break;
                }
            }
        })
        .await;
        return Err(ApiError::too_large(MAX_BODY));
    }
    Ok(kept.freeze())
}

pub struct Api {
    pub registry: Registry,
    pub security: Security,
    pub admission: skiff_admission::Chain,
    pub audit: Option<crate::audit::Audit>,
    pub metrics: crate::metrics::Metrics,
    /// See `Config::component_metrics`.
    pub component_metrics: Vec<fn() -> String>,
    /// Upstream's `--max-requests-inflight` and
    /// `--max-mutating-requests-inflight`: beyond them requests get 429.
    pub read_slots: tokio::sync::Semaphore,
    pub write_slots: tokio::sync::Semaphore,
    pub kubelets: crate::kubelets::Kubelets,
    pub resource_metrics: crate::resource_metrics::ResourceMetrics,
    /// custom.metrics.k8s.io and external.metrics.k8s.io, when a Prometheus is given.
    pub custom_metrics: Option<crate::custom_metrics::CustomMetrics>,
    /// The group versions APIServices serve through Services.
    pub aggregator: crate::aggregator::Aggregator,
}

/// Upstream's verb for a resource request, the name authorization and
/// metrics use: GET splits into get, list and watch, DELETE into delete and
/// deletecollection. None for a method the path does not take.
fn verb_of(method: &Method, t: &Target, query: &Query) -> Option<&'static str> {
    let watch = t.legacy_watch || flag(query, "watch");
    if is_proxy(t) {
        // Every method passes through; HEAD is a get, others have no verb.
        return Some(match method.as_str() {
            "GET" | "HEAD" => "get",
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => return None,
        });
    }
    Some(match (method.as_str(), t.name.is_some(), watch) {
        ("GET", _, true) => "watch",
        ("GET", true, _) => "get",
        ("GET", false, _) => "list",
        ("POST", _, _) => "create",
        ("PUT", true, _) => "update",
        ("PATCH", true, _) => "patch",
        ("DELETE", true, _) => "delete",
        ("DELETE", false, _) => "deletecollection",
        _ => return None,
    })
}

/// `pods/…/proxy`, `services/…/proxy`, `nodes/…/proxy`.
fn is_proxy(t: &Target) -> bool {
    t.subresource.as_deref() == Some("proxy") && t.def.group.is_empty() && matches!(t.def.kind, "Pod" | "Service" | "Node") && t.name.is_some()
}

/// Upstream's metric labels for a resource request: the verb spelled as
/// its metrics spell it, and the scope (resource, namespace or cluster).
fn request_labels(method: &Method, t: &Target, query: &Query) -> crate::metrics::LatencyLabels {
    let verb = match verb_of(method, t, query) {
        Some("create") => "POST".to_string(),
        Some("update") => "PUT".to_string(),
        Some("patch") => "PATCH".to_string(),
        Some("delete") => "DELETE".to_string(),
        Some(v) => v.to_ascii_uppercase(),
        None => method.to_string(),
    };
    let scope = if t.name.is_some() || verb == "POST" {
        "resource"
    } else if t.namespace.is_some() {
        "namespace"
    } else {
        "cluster"
    };
    crate::metrics::LatencyLabels {
        verb,
        group: t.def.group.to_string(),
        version: t.def.version.to_string(),
        resource: t.def.plural.to_string(),
        subresource: t.subresource.clone().unwrap_or_default(),
        scope: scope.to_string(),
        component: "apiserver".to_string(),
    }
}

pub type Query = HashMap<String, String>;

/// A boolean query parameter as upstream reads it (Go's `strconv.ParseBool`).
pub fn flag(query: &Query, name: &str) -> bool {
    matches!(query.get(name).map(String::as_str), Some("1" | "t" | "T" | "true" | "TRUE" | "True"))
}

/// `dryRun=All`: validate and answer, store nothing.
fn dry_run(query: &Query) -> bool {
    query.get("dryRun").is_some_and(|v| v == "All")
}

fn query_of(uri: &axum::http::Uri) -> Query {
    uri.query()
        .map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default().into_iter().collect())
        .unwrap_or_default()
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(body).expect("JSON serializes")).into_response()
}

/// How the client wants objects back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    Object,
    Table,
    Metadata,
}

pub fn representation(headers: &HeaderMap) -> Representation {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    // Clients list their preferences in order; the first one we can serve wins.
    for choice in accept.split(',') {
        let choice = choice.trim();
        if choice.contains("as=Table") {
            return Representation::Table;
        }
        if choice.contains("as=PartialObjectMetadata") {
            return Representation::Metadata;
        }
        if choice.starts_with("application/json") || choice.starts_with("*/*") || choice.is_empty() {
            return Representation::Object;
        }
    }
    Representation::Object
}

/// Whether the client takes objects as they are, in any of its choices.
fn accepts_object(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.split(',').map(str::trim).any(|choice| !choice.contains("as=") && (choice.is_empty() || choice.starts_with("*/*") || choice.starts_with("application/")))
}

impl Api {
    /// Serves one request from a client whose TLS certificate (if any)
    /// named `certificate`.
    pub async fn handle(self: Arc<Self>, certificate: skiff_auth::PeerCertificate, peer: Option<std::net::IpAddr>, req: axum::extract::Request) -> Response {
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(crate::proxy::Peer(peer));
        let path = parts.uri.path().to_string();
        let query = query_of(&parts.uri);
        let route = route::parse(&path);
        let verb = match &route {
            Route::Resource(t) => verb_of(&parts.method, t, &query),
            _ => None,
        };
        let uri = parts.uri.to_string();
        let agent = parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let credentials = parts.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        let requester = match self.authenticate(&certificate, credentials).await {
            Ok(user) => user,
            Err(e) => {
                tracing::debug!(%path, "unauthenticated: {e}");
                if let Some(audit) = &self.audit {
                    // As upstream's failed-authentication audit: no user, the 401.
                    let attributes = authorization::attributes(&UserInfo::default(), &parts.method, &path, &route, verb, &query);
                    if let Some(record) = audit.begin(&attributes, None, &uri, peer, &agent) {
                        audit.complete(&record, "ResponseStarted", 401, None, None, &[]);
                    }
                }
                return ApiError::unauthorized().into_response();
            }
        };
        let user = match authorization::impersonate(&self.security, requester.clone(), &parts.headers) {
            Ok(user) => user,
            Err(e) => return e.into_response(),
        };
        // A group version an APIService serves through a Service: proxied, after authorization.
        let aggregated = match route {
            Route::Unknown | Route::ResourceList { .. } => crate::aggregator::Aggregator::serving(&self, &path).await,
            _ => None,
        };
        let attributes = match self.custom_metrics.is_some().then(|| crate::custom_metrics::attributes(&user, parts.method.as_str(), &path)).flatten() {
            Some(attributes) => attributes,
            None => match aggregated.as_ref().and_then(|_| crate::aggregator::attributes(&user, &parts.method, &path, &query)) {
                Some(attributes) => attributes,
                None => authorization::attributes(&user, &parts.method, &path, &route, verb, &query),
            },
        };
        if let Some(apiservice) = aggregated {
            parts.extensions.insert(crate::aggregator::Aggregated(apiservice));
        }
        let impersonator = (requester != user).then_some(&requester);
        let Some((audit, record)) = self.audit.as_ref().and_then(|a| Some((a, a.begin(&attributes, impersonator, &uri, peer, &agent)?))) else {
            return self.serve(&attributes, parts, body, query, route, path).await;
        };
        // Bodies are kept only for the levels that log them.
        let (body, request_object) = if record.level >= crate::audit::Level::Request {
            let bytes = match read_body(body).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    audit.complete(&record, "ResponseComplete", e.code.as_u16(), None, None, &[]);
                    return e.into_response();
                }
            };
            let object = (!bytes.is_empty()).then(|| decode_body(&parts.headers, &bytes).ok()).flatten();
            (axum::body::Body::from(bytes), object)
        } else {
            (body, None)
        };
        let annotations = std::cell::RefCell::new(Vec::new());
        let (response, annotations) = skiff_admission::AUDIT_ANNOTATIONS
            .scope(annotations, async {
                let response = self.serve(&attributes, parts, body, query, route, path).await;
                (response, skiff_admission::AUDIT_ANNOTATIONS.with(|a| a.take()))
            })
            .await;
        let code = response.status().as_u16();
        if attributes.verb == "watch" {
            audit.complete(&record, "ResponseStarted", code, request_object.as_ref(), None, &annotations);
            return response;
        }
        if record.level < crate::audit::Level::RequestResponse {
            audit.complete(&record, "ResponseComplete", code, request_object.as_ref(), None, &annotations);
            return response;
        }
        let (head, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
        audit.complete(&record, "ResponseComplete", code, request_object.as_ref(), serde_json::from_slice::<Value>(&bytes).ok().as_ref(), &annotations);
        Response::from_parts(head, axum::body::Body::from(bytes))
    }

    /// An authenticated request, from authorization on.
    async fn serve(&self, attributes: &skiff_auth::Attributes, mut parts: axum::http::request::Parts, body: axum::body::Body, query: Query, route: Route, path: String) -> Response {
        let user = &attributes.user;
        if let Err(denied) = self.security.authorize(attributes) {
            if !(self.security.node_graph && authorization::node_graph_allows(&self.registry, attributes).await) {
                return denied.into_response();
            }
        }
        if let Some(crate::aggregator::Aggregated(apiservice)) = parts.extensions.remove() {
            return self.aggregator.proxy(self, user, &apiservice, parts, body).await;
        }
        if let Route::Resource(t) = &route {
            if t.def.kind == "Pod" && matches!(t.subresource.as_deref(), Some("exec" | "attach" | "portforward")) {
                return self.connect(user, t, parts, &query).await.unwrap_or_else(IntoResponse::into_response);
            }
            if is_proxy(t) {
                // Long-running, as upstream counts it: outside the in-flight limits.
                return crate::proxy::serve(self, user, t, parts, body).await;
            }
        }
        if let Some(metrics) = self.custom_metrics.as_ref().filter(|_| crate::custom_metrics::serves(&path)) {
            return crate::custom_metrics::serve(self, metrics, &parts.method, &path, &query).await;
        }
        if let Some(response) = self.served_path(attributes, &parts, &path, &query).await {
            return response;
        }
        let started = std::time::Instant::now();
        let labels = match &route {
            Route::Resource(t) => Some((request_labels(&parts.method, t, &query), verb_of(&parts.method, t, &query) == Some("watch"))),
            _ => None,
        };
        // Long-running requests (watches) are not in flight in upstream's sense.
        let mut slot = None;
        let inflight = match &labels {
            Some((labels, false)) => {
                let read_only = parts.method == Method::GET;
                let slots = if read_only { &self.read_slots } else { &self.write_slots };
                match slots.try_acquire() {
                    Ok(permit) => slot = Some(permit),
                    Err(_) => {
                        let response = ApiError::too_many_requests().into_response();
                        self.metrics.observe(labels.clone(), response.status().as_u16(), started.elapsed());
                        return response;
                    }
                }
                let kind = if read_only { "readOnly" } else { "mutating" };
                let gauge = self.metrics.inflight.get_or_create(&crate::metrics::InflightLabels { request_kind: kind.into() }).clone();
                gauge.inc();
                Some(gauge)
            }
            _ => None,
        };
        let result = async {
            if let Some(response) = openapi_document(&path, &parts.headers) {
                return response;
            }
            let body = read_body(body).await?;
            self.dispatch(user, &parts.method, &parts.headers, &query, route, body).await
        }
        .await;
        let response = result.unwrap_or_else(IntoResponse::into_response);
        if let Some(gauge) = inflight {
            gauge.dec();
        }
        drop(slot);
        if let Some((labels, _)) = labels {
            self.metrics.observe(labels, response.status().as_u16(), started.elapsed());
        }
        response
    }

    /// The paths served before the in-flight limits: health, version,
    /// OIDC discovery and metrics.
    async fn served_path(&self, attributes: &skiff_auth::Attributes, parts: &axum::http::request::Parts, path: &str, query: &Query) -> Option<Response> {
        Some(match path {
            "/healthz" | "/livez" | "/readyz" => health(path, query),
            "/version" => json_response(StatusCode::OK, &discovery::version_info()),
            "/.well-known/openid-configuration" => json_response(StatusCode::OK, &self.security.tokens.openid_configuration(&self.security.jwks_uri)),
            "/openid/v1/jwks" => (StatusCode::OK, [(header::CONTENT_TYPE, "application/jwk-set+json")], self.security.tokens.jwks().to_string()).into_response(),
            "/metrics" => {
                (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], self.metrics.render_with(&self.component_metrics)).into_response()
            }
            "/metrics/targets" => {
                let role = parts.uri.query().into_iter().flat_map(|q| q.split('&')).find_map(|kv| kv.strip_prefix("role=")).unwrap_or_default();
                if !crate::service_discovery::ROLES.contains(&role) {
                    return Some(ApiError::bad_request(format!("role must be one of {}", crate::service_discovery::ROLES.join(", "))).into_response());
                }
                json_response(StatusCode::OK, &crate::service_discovery::targets(self, attributes, role).await)
            }
            "/metrics/cluster-state" => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::state_metrics::render(self).await).into_response(),
            _ => return None,
        })
    }

    /// ServiceAccount JWTs and bootstrap tokens first (they need the
    /// registry), then certificates, static tokens and passwords.
    async fn authenticate(&self, certificate: &skiff_auth::PeerCertificate, credentials: Option<&[u8]>) -> Result<UserInfo, skiff_auth::authn::Unauthenticated> {
        if let skiff_auth::PeerCertificate::Valid(_, Some(expiry)) = certificate {
            self.metrics.client_certificate_expiration.observe((*expiry - chrono::Utc::now().timestamp()) as f64);
        }
        let bearer = credentials.and_then(|c| std::str::from_utf8(c).ok()).and_then(|c| c.strip_prefix("Bearer ")).map(str::trim);
        if let (false, Some(token)) = (matches!(certificate, skiff_auth::PeerCertificate::Valid(..)), bearer) {
            if skiff_auth::serviceaccount::looks_like_jwt(token) {
                if let Some(user) = crate::tokens::authenticate(&self.registry, &self.security.tokens, token).await {
                    return Ok(user);
                }
            } else if let Some(user) = crate::tokens::authenticate_bootstrap(&self.registry, token).await {
                return Ok(user);
            }
        }
        self.security.authenticator.authenticate(certificate, credentials)
    }

    async fn dispatch(&self, user: &UserInfo, method: &Method, headers: &HeaderMap, query: &Query, route: Route, body: bytes::Bytes) -> ApiResult<Response> {
        if *method != Method::GET && !matches!(route, Route::Resource(_)) {
            return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "the server does not allow this method on the requested resource"));
        }
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        if let (Route::ApiVersions | Route::ApiGroupList, Some(version)) = (&route, discovery::wants_aggregated(accept)) {
            let mut doc = discovery::aggregated(matches!(route, Route::ApiVersions), version);
            if let (Route::ApiGroupList, Some(items)) = (&route, doc["items"].as_array_mut()) {
                if self.custom_metrics.is_some() {
                    // Resources named by what Prometheus holds: found on request, as the aggregator leaves them to their server.
                    items.extend(crate::custom_metrics::groups().into_iter().map(|g| json!({"metadata": {"name": g["name"], "creationTimestamp": null}, "versions": [{"version": g["preferredVersion"]["version"], "resources": [], "freshness": "Current"}]})));
                }
                items.extend(self.aggregator.discovery_items(self).await);
            }
            let media = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
            return Ok((StatusCode::OK, [(header::CONTENT_TYPE, media)], serde_json::to_vec(&doc).expect("JSON serializes")).into_response());
        }
        let doc = match route {
            Route::ApiVersions => Some(discovery::api_versions()),
            Route::ApiGroupList => {
                let mut list = discovery::api_group_list();
                if let Some(groups) = list["groups"].as_array_mut() {
                    if self.custom_metrics.is_some() {
                        groups.extend(crate::custom_metrics::groups());
                    }
                    groups.extend(self.aggregator.groups(self).await);
                }
                Some(list)
            }
            Route::ApiGroup(g) => match discovery::api_group(&g) {
                Some(doc) => Some(doc),
                None => self.aggregator.groups(self).await.into_iter().find(|a| a["name"] == g.as_str()).map(|mut doc| {
                    doc["kind"] = json!("APIGroup");
                    doc["apiVersion"] = json!("v1");
                    doc
                }),
            },
            Route::ResourceList { group, version } => discovery::resource_list(&group, &version),
            Route::Unknown => None,
            Route::Resource(target) => {
                let defines_resources = target.def.group == "apiextensions.k8s.io" && target.def.kind == "CustomResourceDefinition";
                let grants = target.def.group == authorization::RBAC_GROUP;
                let response = self.resource(user, method, headers, query, target, body).await;
                if defines_resources && *method != Method::GET && response.is_ok() {
                    // Serve (or stop serving) what the CRD defines before answering.
                    crate::crds::sync(&self.registry).await;
                }
                if let (true, Some(rbac), true) = (grants && *method != Method::GET, &self.security.rbac, response.is_ok()) {
                    // The writer's next request sees what it granted.
                    rbac.refresh(&self.registry).await;
                }
                return response;
            }
        };
        doc.map(|d| json_response(StatusCode::OK, &d)).ok_or_else(ApiError::not_found_path)
    }

    /// A resource request: a subresource's own handler, or its verb's.
    async fn resource(&self, user: &UserInfo, method: &Method, headers: &HeaderMap, query: &Query, t: Target, body: bytes::Bytes) -> ApiResult<Response> {
        let (def, ns) = (t.def, t.namespace.as_deref());
        let r = Request { user, target: &t, headers, query, body: &body, repr: representation(headers), dry_run: dry_run(query) };
        if let Some(sub) = t.subresource.as_deref() {
            if !def.subresources.contains(&sub) {
                return Err(ApiError::not_found_path());
            }
            if let Some(response) = self.subresource(method, &r, sub).await? {
                return Ok(response);
            }
        }
        // A name in the path takes no POST (subresources were handled above).
        let verb = match verb_of(method, &t, query) {
            Some("create") if t.name.is_some() => None,
            verb => verb,
        };
        let Some(verb) = verb else {
            return Err(ApiError::method_not_allowed(method.as_str(), def));
        };
        let allowed = match def.verbs {
            Verbs::All => true,
            Verbs::CreateOnly => verb == "create",
            Verbs::ReadOnly => verb == "get" || verb == "list",
        };
        if !allowed {
            return Err(ApiError::method_not_allowed(verb, def));
        }
        if def.verbs == Verbs::CreateOnly {
            // Reviews have no Table or metadata form, as upstream's
            // (Creater-only) storage: unless plain JSON is also accepted, 406.
            if !accepts_object(headers) {
                return Err(ApiError::new(
                    StatusCode::NOT_ACCEPTABLE,
                    "NotAcceptable",
                    "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf",
                ));
            }
            let reviewed = crate::reviews::review(&self.security, user, def, ns, decode_body(headers, &body)?)?;
            return Ok(json_response(StatusCode::CREATED, &reviewed));
        }
        if def.namespaced && ns.is_none() && !matches!(verb, "list" | "watch") {
            return Err(ApiError::not_found_path());
        }
        match verb {
            _ if def.verbs == Verbs::ReadOnly => self.computed(&r, verb).await,
            "get" => self.get(&r).await,
            "list" => self.list(&r).await,
            "watch" => watch::serve(&self.registry, def, ns, t.name.as_deref(), query, r.repr).await,
            "create" => self.create(&r).await,
            "update" => self.update(&r).await,
            "patch" => self.patch(&r).await,
            "delete" => self.delete(&r).await,
            "deletecollection" => self.delete_collection(&r).await,
            _ => unreachable!("verbs are matched above"),
        }
    }
}

/// A resource request as each verb's handler reads it; the body is decoded
/// by the handler, once, into what its verb needs.
struct Request<'a> {
    user: &'a UserInfo,
    target: &'a Target,
    headers: &'a HeaderMap,
    query: &'a Query,
    body: &'a [u8],
    repr: Representation,
    dry_run: bool,
}

impl Request<'_> {
    fn def(&self) -> &'static ResourceDef {
        self.target.def
    }

    fn ns(&self) -> Option<&str> {
        self.target.namespace.as_deref()
    }

    /// The name in the path ("" for none).
    fn name(&self) -> &str {
        self.target.name.as_deref().unwrap_or("")
    }
}

/// The OpenAPI documents (v3 per group version, v2 whole as JSON or
/// protobuf), or None for another path.
fn openapi_document(path: &str, headers: &HeaderMap) -> Option<ApiResult<Response>> {
    if let Some(rest) = path.strip_prefix("/openapi/v3") {
        return Some(openapi::v3(rest).map(|v| json_response(StatusCode::OK, &v)).ok_or_else(ApiError::not_found_path));
    }
    if path != "/openapi/v2" {
        return None;
    }
    // What kubectl asks for has an `@`, which Go's MIME parser refuses in a
    // response; upstream answers with a `.`.
    const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
    let accept = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).unwrap_or("");
    Some(if accept.contains("application/com.github.proto-openapi.spec.v2") {
        Ok((StatusCode::OK, [(header::CONTENT_TYPE, PROTOBUF)], crate::openapi_proto::encode(&openapi::v2())).into_response())
    } else if !(accept.is_empty() || accept.contains("json") || accept.contains("*/*")) {
        Err(ApiError::new(StatusCode::NOT_ACCEPTABLE, "NotAcceptable", format!("only the following media types are accepted: application/json, {PROTOBUF}")))
    } else {
        Ok(json_response(StatusCode::OK, &openapi::v2()))
    })
}

fn health(path: &str, query: &Query) -> Response {
    if query.contains_key("verbose") {
        let checks = ["ping", "log", "etcd", "informer-sync", "poststarthook/start-apiserver-admission-initializer"];
        let mut text = String::new();
        for c in checks {
            text.push_str(&format!("[+]{c} ok\n"));
        }
        text.push_str(&format!("{} check passed\n", path.trim_start_matches('/')));
        return (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok").into_response()
}

pub fn metadata_only(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

pub fn respond_object(def: &ResourceDef, code: StatusCode, obj: Value, repr: Representation, query: &Query) -> Response {
    let body = match repr {
        Representation::Object => obj,
        Representation::Metadata => metadata_only(&obj),
        Representation::Table => {
            let meta = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))});
            skiff_api::table::table(def, std::iter::once(obj), meta, query.get("includeObject").map_or("Metadata", String::as_str))
        }
    };
    json_response(code, &body)
}

/// A request body as JSON, from JSON, YAML or Kubernetes protobuf (which
/// Go clients such as kubectl's generator commands send).
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    match content_type.split(';').next().unwrap_or("").trim() {
        "application/json" | "" | "*/*" => {
            serde_json::from_slice(body).map_err(unrecognized)
        }
        // serde_yaml is the YAML parser kube-rs already brings in; it is
        // archived upstream, so a maintained fork can replace it in one place.
        "application/yaml" => serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}"))),
        "application/vnd.kubernetes.protobuf" => {
            skiff_api::protobuf::decode(body).map_err(|e| ApiError::bad_request(format!("the object provided is unrecognized: {e}")))
        }
        other => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({other}) - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
        ))),
    }
}

pub fn unrecognized(e: serde_json::Error) -> ApiError {
    ApiError::bad_request(format!("the object provided is unrecognized: {e}"))
}


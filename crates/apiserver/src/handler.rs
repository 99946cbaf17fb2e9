//! One handler for every API request: authentication, routing by path,
//! content negotiation, then the verb.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use skiff_api::selector::{selectable_fields, FieldSelector, LabelSelector};
use skiff_api::validation::FieldError;
use skiff_api::{ResourceDef, Verbs};

use crate::managed::{self, Manager};
use crate::registry::{Created, Deleted, DeleteOptions, ListQuery, Registry};
use crate::route::{self, Route, Target};
use crate::status::{qualified, ApiError, ApiResult};
use crate::authorization::{self, Security};
use crate::{discovery, fields, openapi, patch, watch};
use skiff_auth::UserInfo;

/// Admission of an update (PUT or patch): mutating plugins, then validating
/// ones, on the changed object; the last attempt's warnings are kept.
struct UpdateAdmission<'a> {
    api: &'a Api,
    user: &'a UserInfo,
    def: &'static ResourceDef,
    target: &'a Target,
    name: &'a str,
    dry_run: bool,
    warnings: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl crate::registry::Admit for UpdateAdmission<'_> {
    async fn admit(&self, old: &Value, new: &mut Value) -> ApiResult<()> {
        let cluster = crate::admission::RegistryCluster(&self.api.registry, &self.api.security);
        let base = admission_request(skiff_admission::Operation::Update, self.def, self.target, self.name, self.user, self.dry_run);
        let request = skiff_admission::Request { old: Some(old), ..base };
        let refused = |r| crate::admission::refused(r, self.def, self.name);
        if request.subresource == "scale" {
            // As upstream, plugins see the Scale objects; a mutated replica
            // count is written back to the object.
            let (old_scale, mut scale) = (crate::scale::view(old), crate::scale::view(new));
            let request = skiff_admission::Request { kind: "Scale", old: Some(&old_scale), ..request };
            self.api.admission.mutate(&request, &mut scale, &cluster).await.map_err(refused)?;
            *new = crate::scale::apply(self.def, new, &scale)?;
            *self.warnings.lock().unwrap() = self.api.admission.validate(&request, &scale, &cluster).await.map_err(refused)?;
            return Ok(());
        }
        self.api.admission.mutate(&request, new, &cluster).await.map_err(refused)?;
        *self.warnings.lock().unwrap() = self.api.admission.validate(&request, new, &cluster).await.map_err(refused)?;
        Ok(())
    }
}

fn admission_request<'a>(operation: skiff_admission::Operation, def: &'a ResourceDef, t: &'a Target, name: &'a str, user: &'a UserInfo, dry_run: bool) -> skiff_admission::Request<'a> {
    skiff_admission::Request {
        operation,
        group: def.group,
        version: def.version,
        kind: def.kind,
        resource: def.plural,
        subresource: t.subresource.as_deref().unwrap_or_default(),
        namespace: t.namespace.as_deref().unwrap_or_default(),
        name,
        user,
        dry_run,
        old: None,
    }
}

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
        let attributes = match self.custom_metrics.is_some().then(|| crate::custom_metrics::attributes(&user, parts.method.as_str(), &path)).flatten() {
            Some(attributes) => attributes,
            None => authorization::attributes(&user, &parts.method, &path, &route, verb, &query),
        };
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
    async fn serve(&self, attributes: &skiff_auth::Attributes, parts: axum::http::request::Parts, body: axum::body::Body, query: Query, route: Route, path: String) -> Response {
        let user = &attributes.user;
        if let Err(denied) = self.security.authorize(attributes) {
            if !(self.security.node_graph && authorization::node_graph_allows(&self.registry, attributes).await) {
                return denied.into_response();
            }
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
        match path.as_str() {
            "/healthz" | "/livez" | "/readyz" => return health(&path, &query),
            "/version" => return json_response(StatusCode::OK, &discovery::version_info()),
            "/.well-known/openid-configuration" => return json_response(StatusCode::OK, &self.security.tokens.openid_configuration(&self.security.jwks_uri)),
            "/openid/v1/jwks" => return (StatusCode::OK, [(header::CONTENT_TYPE, "application/jwk-set+json")], self.security.tokens.jwks().to_string()).into_response(),
            "/metrics" => {
                return (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], self.metrics.render_with(&self.component_metrics)).into_response()
            }
            "/metrics/targets" => {
                let role = parts.uri.query().into_iter().flat_map(|q| q.split('&')).find_map(|kv| kv.strip_prefix("role=")).unwrap_or_default();
                if !crate::service_discovery::ROLES.contains(&role) {
                    return ApiError::bad_request(format!("role must be one of {}", crate::service_discovery::ROLES.join(", "))).into_response();
                }
                return json_response(StatusCode::OK, &crate::service_discovery::targets(self, attributes, role).await);
            }
            "/metrics/cluster-state" => return (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::state_metrics::render(self).await).into_response(),
            _ => {}
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
            if let Some(rest) = path.strip_prefix("/openapi/v3") {
                return openapi::v3(rest).map(|v| json_response(StatusCode::OK, &v)).ok_or_else(ApiError::not_found_path);
            }
            if path == "/openapi/v2" {
                // What kubectl asks for has an `@`, which Go's MIME parser
                // refuses in a response; upstream answers with a `.`.
                const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
                let accept = parts.headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).unwrap_or("");
                if accept.contains("application/com.github.proto-openapi.spec.v2") {
                    return Ok((StatusCode::OK, [(header::CONTENT_TYPE, PROTOBUF)], crate::openapi_proto::encode(&openapi::v2())).into_response());
                }
                if !(accept.is_empty() || accept.contains("json") || accept.contains("*/*")) {
                    return Err(ApiError::new(
                        StatusCode::NOT_ACCEPTABLE,
                        "NotAcceptable",
                        format!("only the following media types are accepted: application/json, {PROTOBUF}"),
                    ));
                }
                return Ok(json_response(StatusCode::OK, &openapi::v2()));
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

    /// `pods/exec`, `pods/attach` and `pods/portforward`: admitted as
    /// CONNECT, then the upgraded stream is spliced to the pod's agent.
    async fn connect(&self, user: &UserInfo, t: &Target, mut parts: axum::http::request::Parts, query: &Query) -> ApiResult<Response> {
        let (def, ns) = (t.def, t.namespace.as_deref());
        let name = t.name.as_deref().ok_or_else(ApiError::not_found_path)?;
        let pod = self.registry.get(def, ns, name).await?;
        let request = admission_request(skiff_admission::Operation::Connect, def, t, name, user, false);
        let cluster = crate::admission::RegistryCluster(&self.registry, &self.security);
        self.admission.validate(&request, &pod, &cluster).await.map_err(|r| crate::admission::refused(r, def, name))?;
        crate::kubelets::connect(&self.kubelets, &self.registry, &pod, t.subresource.as_deref().unwrap_or_default(), &mut parts, query).await
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
            if let (Some(_), Route::ApiGroupList, Some(items)) = (&self.custom_metrics, &route, doc["items"].as_array_mut()) {
                // Resources named by what Prometheus holds: found on request, as the aggregator leaves them to their server.
                items.extend(crate::custom_metrics::groups().into_iter().map(|g| json!({"metadata": {"name": g["name"], "creationTimestamp": null}, "versions": [{"version": g["preferredVersion"]["version"], "resources": [], "freshness": "Current"}]})));
            }
            let media = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
            return Ok((StatusCode::OK, [(header::CONTENT_TYPE, media)], serde_json::to_vec(&doc).expect("JSON serializes")).into_response());
        }
        let doc = match route {
            Route::ApiVersions => Some(discovery::api_versions()),
            Route::ApiGroupList => {
                let mut list = discovery::api_group_list();
                if let (Some(_), Some(groups)) = (&self.custom_metrics, list["groups"].as_array_mut()) {
                    groups.extend(crate::custom_metrics::groups());
                }
                Some(list)
            }
            Route::ApiGroup(g) => discovery::api_group(&g),
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

    async fn resource(&self, user: &UserInfo, method: &Method, headers: &HeaderMap, query: &Query, t: Target, body: bytes::Bytes) -> ApiResult<Response> {
        let def = t.def;
        let ns = t.namespace.as_deref();
        let dry_run = dry_run(query);
        if let Some(sub) = t.subresource.as_deref() {
            if !def.subresources.contains(&sub) {
                return Err(ApiError::not_found_path());
            }
            if sub == "scale" {
                return self.scale(user, method, headers, query, &t, &body).await;
            }
            let created = || json_response(StatusCode::CREATED, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}));
            match (sub, method) {
                ("token", &Method::POST) => {
                    let name = t.name.as_deref().ok_or_else(ApiError::not_found_path)?;
                    let issued = crate::tokens::request(&self.registry, &self.security.tokens, ns.unwrap_or_default(), name, decode_body(headers, &body)?).await?;
                    return Ok(json_response(StatusCode::CREATED, &issued));
                }
                ("binding" | "eviction", &Method::POST) | ("finalize", &Method::PUT) => {
                    let name = t.name.as_deref().ok_or_else(ApiError::not_found_path)?;
                    let body = decode_body(headers, &body)?;
                    return match sub {
                        "binding" => {
                            crate::subresources::bind(&self.registry, def, ns, name, &body, dry_run).await?;
                            Ok(created())
                        }
                        "eviction" => {
                            crate::subresources::evict(&self.registry, def, ns, name, &body, dry_run).await?;
                            Ok(created())
                        }
                        _ => {
                            let ns_obj = crate::subresources::finalize(&self.registry, def, name, &body, dry_run).await?;
                            Ok(respond_object(def, StatusCode::OK, ns_obj, representation(headers), query))
                        }
                    };
                }
                _ => {}
            }
            if sub == "log" && *method == Method::GET {
                let name = t.name.as_deref().ok_or_else(ApiError::not_found_path)?;
                let pod = self.registry.get(def, ns, name).await?;
                return crate::kubelets::pod_log(&self.kubelets, &self.registry, &pod, query).await;
            }
            let ephemeral = sub == "ephemeralcontainers" && def.group.is_empty() && def.kind == "Pod";
            if sub != "status" && sub != "approval" && !ephemeral {
                return Err(ApiError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "NotImplemented",
                    format!("the {sub} subresource of {} is not served yet", qualified(def)),
                ));
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
            let reviewed = crate::reviews::review(&self.security, user, def, ns, decode_body(headers, &body)?)?;
            return Ok(json_response(StatusCode::CREATED, &reviewed));
        }
        if def.namespaced && ns.is_none() && !matches!(verb, "list" | "watch") {
            return Err(ApiError::not_found_path());
        }
        let repr = representation(headers);
        let name = t.name.as_deref().unwrap_or("");
        if def.verbs == Verbs::ReadOnly {
            // Computed, not stored: componentstatuses and metrics.k8s.io.
            let deprecated: Vec<String> = match def.group {
                "" => vec![format!("{} {} is deprecated in v1.19+", def.api_version(), def.kind)],
                _ => vec![],
            };
            let mut items = match def.group {
                "" => crate::components::statuses(&self.registry).await,
                _ => self.resource_metrics.objects(def.kind, ns),
            };
            if let Some(selector) = query.get("labelSelector").filter(|s| !s.is_empty()) {
                let selector = skiff_api::selector::LabelSelector::parse(selector).map_err(|e| ApiError::bad_request(&e))?;
                items.retain(|item| selector.matches(&serde_json::from_value(item["metadata"]["labels"].clone()).unwrap_or_default()));
            }
            let response = if verb == "get" {
                let at = items.iter().position(|c| c["metadata"]["name"] == name).ok_or_else(|| ApiError::not_found(def, name))?;
                respond_object(def, StatusCode::OK, items.swap_remove(at), repr, query)
            } else {
                let include = query.get("includeObject").map_or("Metadata", String::as_str);
                let body = match repr {
                    Representation::Table => skiff_api::table::table(def, items.into_iter(), json!({}), include),
                    _ => json!({"kind": format!("{}List", def.kind), "apiVersion": def.api_version(), "metadata": {}, "items": items}),
                };
                json_response(StatusCode::OK, &body)
            };
            return Ok(fields::with_warnings(response, &deprecated));
        }
        match verb {
            "get" => {
                let obj = self.registry.get(def, ns, name).await?;
                Ok(respond_object(def, StatusCode::OK, obj, repr, query))
            }
            "list" => self.list(def, ns, query, repr).await,
            "watch" => watch::serve(&self.registry, def, ns, t.name.as_deref(), query, repr).await,
            "create" => {
                let mut warnings = Vec::new();
                let obj = fields::check_body(def, headers, &body, fields::mode(query)?, &mut warnings)?;
                authorization::check_escalation(&self.security, &self.registry, user, def, ns, &obj).await?;
                let mut obj = obj;
                if def.group.is_empty() && def.plural == "secrets" {
                    crate::tokens::fill_legacy_secret(&self.registry, &self.security.tokens, &self.security.ca_pem, ns.unwrap_or_default(), &mut obj).await?;
                }
                let manager = Manager::of_request(query, headers, None, false)?;
                let (created, admission_warnings) = self.admitted_create(user, def, ns, obj, dry_run, &manager).await?;
                warnings.extend(admission_warnings);
                let response = match created.stored {
                    Some(kv) if repr == Representation::Object => (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/json")], crate::registry::stamp(def, &kv)?).into_response(),
                    _ => respond_object(def, StatusCode::CREATED, created.object, repr, query),
                };
                Ok(fields::with_warnings(response, &warnings))
            }
            "update" => {
                let mut warnings = Vec::new();
                let obj = fields::check_body(def, headers, &body, fields::mode(query)?, &mut warnings)?;
                authorization::check_escalation(&self.security, &self.registry, user, def, ns, &obj).await?;
                let manager = Manager::of_request(query, headers, t.subresource.as_deref(), false)?;
                let admit = UpdateAdmission { api: self, user, def, target: &t, name, dry_run, warnings: Default::default() };
                let updated = self.registry.update(def, ns, name, t.subresource.as_deref(), obj, dry_run, &manager, &admit).await?;
                warnings.extend(admit.warnings.into_inner().unwrap());
                Ok(fields::with_warnings(respond_object(def, StatusCode::OK, updated, repr, query), &warnings))
            }
            "patch" => {
                let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
                let kind = patch::PatchKind::from_content_type(content_type)?;
                let mode = fields::mode(query)?;
                let sub = t.subresource.as_deref();
                let manager = Manager::of_request(query, headers, sub, matches!(kind, patch::PatchKind::Apply))?;
                if def.group == authorization::RBAC_GROUP {
                    // What the patch would grant, checked before it is applied.
                    let intended = match kind {
                        patch::PatchKind::Apply => serde_yaml::from_slice(&body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
                        _ => patch::apply(&kind, &self.registry.get(def, ns, name).await?, &body)?,
                    };
                    authorization::check_escalation(&self.security, &self.registry, user, def, ns, &intended).await?;
                }
                if manager.apply {
                    return self.server_side_apply(user, t, headers, query, &body, &manager).await;
                }
                // The closure may run again on a conflict; keep the last run's warnings.
                let warnings = std::sync::Mutex::new(Vec::new());
                let admit = UpdateAdmission { api: self, user, def, target: &t, name, dry_run, warnings: Default::default() };
                let change = |current: &Value| {
                        let mut w = warnings.lock().unwrap();
                        w.clear();
                        let changed = fields::check(def, patch::apply(&kind, current, &body)?, mode, &mut w)?;
                        // A resourceVersion the patch sets is a precondition, as upstream.
                        let version = |o: &Value| o.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
                        if version(&changed).is_some_and(|v| !v.is_empty() && Some(&v) != version(current).as_ref()) {
                            return Err(ApiError::modified(def, name));
                        }
                        let mut updated = crate::registry::merge_update(def, current, changed, sub)?;
                        managed::record_update(def, Some(current), &mut updated, &manager);
                        Ok(updated)
                };
                let patched = self.registry.guaranteed_update_admitted(def, ns, name, None, dry_run, change, &admit).await?;
                let mut warnings = warnings.into_inner().unwrap();
                warnings.extend(admit.warnings.into_inner().unwrap());
                Ok(fields::with_warnings(respond_object(def, StatusCode::OK, patched, repr, query), &warnings))
            }
            "delete" => {
                let opts = delete_options(query, headers, &body, dry_run)?;
                let request = admission_request(skiff_admission::Operation::Delete, def, &t, name, user, dry_run);
                let cluster = crate::admission::RegistryCluster(&self.registry, &self.security);
                self.admission.validate(&request, &Value::Null, &cluster).await.map_err(|r| crate::admission::refused(r, def, name))?;
                match self.registry.delete(def, ns, name, &opts).await? {
                    Deleted::Pending(obj) => {
                        if def.group.is_empty() && def.kind == "Namespace" && !opts.dry_run {
                            tokio::spawn(crate::namespaces::finalize(self.registry.clone(), name.to_string()));
                        }
                        Ok(respond_object(def, StatusCode::OK, obj, repr, query))
                    }
                    Deleted::Now(obj) if returns_deleted_object(def) => Ok(respond_object(def, StatusCode::OK, obj, repr, query)),
                    Deleted::Now(obj) => Ok(json_response(StatusCode::OK, &success_status(def, &obj))),
                }
            }
            "deletecollection" => {
                let opts = delete_options(query, headers, &body, dry_run)?;
                let q = list_query(def, query)?;
                let listed = self.registry.list_objects(def, ns, &ListQuery { limit: None, continue_token: None, ..q }).await?;
                for obj in &listed {
                    let obj_ns = obj.pointer("/metadata/namespace").and_then(|v| v.as_str());
                    match self.registry.delete(def, obj_ns, crate::registry::name_of(obj), &opts).await {
                        Ok(_) => {}
                        Err(e) if e.code == StatusCode::NOT_FOUND => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(json_response(StatusCode::OK, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})))
            }
            _ => unreachable!("verbs are matched above"),
        }
    }

    /// Creates through admission: mutating plugins first, validating ones
    /// on the complete object just before it is stored.
    /// Returns the object and admission's warnings for the client.
    async fn admitted_create(&self, user: &UserInfo, def: &'static ResourceDef, ns: Option<&str>, mut obj: Value, dry_run: bool, manager: &Manager) -> ApiResult<(Created, Vec<String>)> {
        let name = crate::registry::name_of(&obj).to_string();
        if def.group == "certificates.k8s.io" && def.kind == "CertificateSigningRequest" {
            // Who asks is recorded by the server, never taken from the
            // request, as upstream's strategy does: approvers trust it.
            let spec = &mut obj["spec"];
            spec["username"] = json!(user.name);
            spec["groups"] = json!(user.groups);
            spec["uid"] = if user.uid.is_empty() { Value::Null } else { json!(user.uid) };
            spec["extra"] = if user.extra.is_empty() { Value::Null } else { json!(user.extra) };
            if let Some(spec) = spec.as_object_mut() {
                spec.retain(|_, v| !v.is_null());
            }
        }
        let cluster = crate::admission::RegistryCluster(&self.registry, &self.security);
        let request = skiff_admission::Request {
            operation: skiff_admission::Operation::Create,
            group: def.group,
            version: def.version,
            kind: def.kind,
            resource: def.plural,
            subresource: "",
            namespace: ns.unwrap_or_default(),
            name: &name,
            user,
            dry_run,
            old: None,
        };
        self.admission.mutate(&request, &mut obj, &cluster).await.map_err(|r| crate::admission::refused(r, def, &name))?;
        let mut warnings = Vec::new();
        let validate = async |complete: &Value| {
            let name = crate::registry::name_of(complete);
            let request = skiff_admission::Request { name, ..request };
            warnings = self.admission.validate(&request, complete, &cluster).await.map_err(|r| crate::admission::refused(r, def, name))?;
            Ok(())
        };
        let created = self.registry.create_admitted(def, ns, obj, dry_run, manager, validate).await?;
        Ok((created, warnings))
    }

    /// A whole list as JSON, read from one snapshot a page at a time and
    /// streamed out, so a list of any size holds about one page in memory.
    /// The first page is read before answering, so its errors get a proper
    /// Status; a failure later can only cut the response short.
    async fn streamed_list(&self, def: &'static ResourceDef, ns: Option<&str>, q: ListQuery, writer: ListWriter) -> ApiResult<Response> {
        // Written PAGE objects at a time: the encoded list is never whole in
        // memory, and the snapshot is the watch cache's own (shared) data.
        const PAGE: usize = 500;
        let snapshot = self.registry.snapshot(def, ns, &q).await?;
        let mut opening = writer.opening(json!({"resourceVersion": snapshot.revision.to_string()}));
        if snapshot.items.len() <= PAGE {
            writer.push(&mut opening, &crate::registry::selected(def, &q, &snapshot.items)?, true)?;
            opening.extend_from_slice(b"]}");
            return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], opening).into_response());
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(2);
        tokio::spawn(async move {
            if tx.send(Ok(bytes::Bytes::from(opening))).await.is_err() {
                return;
            }
            let mut first = true;
            for page in snapshot.items.chunks(PAGE) {
                let mut chunk = Vec::new();
                let written = crate::registry::selected(def, &q, page).and_then(|items| {
                    writer.push(&mut chunk, &items, first)?;
                    first &= items.is_empty();
                    Ok(())
                });
                if let Err(e) = written {
                    let _ = tx.send(Err(std::io::Error::other(e.message))).await;
                    return;
                }
                if tx.send(Ok(bytes::Bytes::from(chunk))).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Ok(bytes::Bytes::from_static(b"]}"))).await;
        });
        let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response())
    }

    /// PATCH with `application/apply-patch+yaml`: server-side apply, which
    /// creates the object when it does not exist.
    async fn server_side_apply(&self, user: &UserInfo, t: Target, headers: &HeaderMap, query: &Query, body: &[u8], manager: &Manager) -> ApiResult<Response> {
        let (def, ns, name) = (t.def, t.namespace.as_deref(), t.name.as_deref().unwrap_or(""));
        let sub = t.subresource.as_deref();
        let config: Value = serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if !config.is_object() {
            return Err(ApiError::bad_request("an apply configuration must be an object"));
        }
        let mut warnings = Vec::new();
        let config = fields::check(def, config, fields::mode(query)?, &mut warnings)?;
        if crate::registry::name_of(&config) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                crate::registry::name_of(&config)
            )));
        }
        let (dry_run, force) = (dry_run(query), flag(query, "force"));
        let repr = representation(headers);
        let admit = UpdateAdmission { api: self, user, def, target: &t, name, dry_run, warnings: Default::default() };
        let change = |current: &Value| {
            let merged = managed::apply(def, Some(current), &config, manager, force)?;
            let fields = merged["metadata"]["managedFields"].clone();
            let mut updated = crate::registry::merge_update(def, current, merged, sub)?;
            updated["metadata"]["managedFields"] = fields;
            Ok(updated)
        };
        let applied = self.registry.guaranteed_update_admitted(def, ns, name, None, dry_run, change, &admit).await;
        warnings.extend(admit.warnings.into_inner().unwrap());
        let (code, obj) = match applied {
            Err(e) if e.code == StatusCode::NOT_FOUND && sub.is_none() => {
                let (created, admission_warnings) = self.admitted_create(user, def, ns, config, dry_run, manager).await?;
                warnings.extend(admission_warnings);
                (StatusCode::CREATED, created.object)
            }
            other => (StatusCode::OK, other?),
        };
        Ok(fields::with_warnings(respond_object(def, code, obj, repr, query), &warnings))
    }

    /// GET, PUT and PATCH of `{workload}/scale`.
    async fn scale(&self, user: &UserInfo, method: &Method, headers: &HeaderMap, query: &Query, t: &Target, body: &[u8]) -> ApiResult<Response> {
        let (def, ns) = (t.def, t.namespace.as_deref());
        let name = t.name.as_deref().ok_or_else(ApiError::not_found_path)?;
        let dry_run = dry_run(query);
        let admit = UpdateAdmission { api: self, user, def, target: t, name, dry_run, warnings: Default::default() };
        let manager = Manager::of_request(query, headers, Some("scale"), false)?;
        let updated = match *method {
            Method::GET => self.registry.get(def, ns, name).await?,
            Method::PUT => {
                let scale = decode_body(headers, body)?;
                let precondition = match scale.pointer("/metadata/resourceVersion").and_then(|v| v.as_str()).filter(|v| !v.is_empty()) {
                    Some(rv) => Some(rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?),
                    None => None,
                };
                let change = |current: &Value| {
                    let mut updated = crate::registry::merge_update(def, current, crate::scale::apply(def, current, &scale)?, None)?;
                    managed::record_update(def, Some(current), &mut updated, &manager);
                    Ok(updated)
                };
                self.registry.guaranteed_update_admitted(def, ns, name, precondition, dry_run, change, &admit).await?
            }
            Method::PATCH => {
                let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
                let kind = patch::PatchKind::from_content_type(content_type)?;
                let change = |current: &Value| {
                    let scale = patch::apply(&kind, &crate::scale::view(current), body)?;
                    let mut updated = crate::registry::merge_update(def, current, crate::scale::apply(def, current, &scale)?, None)?;
                    managed::record_update(def, Some(current), &mut updated, &manager);
                    Ok(updated)
                };
                self.registry.guaranteed_update_admitted(def, ns, name, None, dry_run, change, &admit).await?
            }
            _ => return Err(ApiError::method_not_allowed(method.as_str(), def)),
        };
        Ok(json_response(StatusCode::OK, &crate::scale::view(&updated)))
    }

    async fn list(&self, def: &'static ResourceDef, ns: Option<&str>, query: &Query, repr: Representation) -> ApiResult<Response> {
        let q = list_query(def, query)?;
        let include = query.get("includeObject").map_or("Metadata", String::as_str);
        let writer = match repr {
            Representation::Object => ListWriter::Objects(def),
            Representation::Table => ListWriter::Table(skiff_api::table::TableWriter::new(def, include)),
            Representation::Metadata => ListWriter::Metadata,
        };
        if q.limit.is_none() && q.continue_token.is_none() {
            return self.streamed_list(def, ns, q, writer).await;
        }
        // A page asked for with `limit` or `continue`.
        let listed = self.registry.list(def, ns, &q).await?;
        let mut meta = json!({"resourceVersion": listed.revision.to_string()});
        if let Some(c) = &listed.continue_token {
            meta["continue"] = json!(c);
        }
        if let Some(r) = listed.remaining {
            meta["remainingItemCount"] = json!(r);
        }
        let mut out = writer.opening(meta);
        writer.push(&mut out, &listed.items, true)?;
        out.extend_from_slice(b"]}");
        Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], out).into_response())
    }
}

/// A JSON list up to its first item: `{"kind":"PodList",…,"items":[`.
/// Lists are written out directly: the items are usually the stored bytes
/// with their resourceVersion spliced in, unparsed.
/// How a list's items are written: as the objects themselves, as their
/// metadata, or as Table rows. Each writes `opening`, then pages of items
/// with `push`, then `]}`.
enum ListWriter {
    Objects(&'static ResourceDef),
    Metadata,
    Table(skiff_api::table::TableWriter),
}

impl ListWriter {
    fn opening(&self, meta: Value) -> Vec<u8> {
        let (kind, api_version) = match self {
            ListWriter::Table(table) => return table.opening(meta),
            ListWriter::Objects(def) => (format!("{}List", def.kind), def.api_version()),
            ListWriter::Metadata => ("PartialObjectMetadataList".to_string(), "meta.k8s.io/v1".to_string()),
        };
        let mut out = serde_json::to_vec(&json!({"kind": kind, "apiVersion": api_version, "metadata": meta})).expect("JSON serializes");
        out.pop(); // the closing brace
        out.extend_from_slice(b",\"items\":[");
        out
    }

    /// Appends `items` (objects' JSON), comma-separated, with a leading
    /// comma unless they are the list's `first`.
    fn push(&self, out: &mut Vec<u8>, items: &[bytes::Bytes], first: bool) -> ApiResult<()> {
        let unreadable = |e: serde_json::Error| ApiError::internal(format!("object is not JSON: {e}"));
        for (i, item) in items.iter().enumerate() {
            let first = first && i == 0;
            match self {
                ListWriter::Table(table) => table.push_row(out, item, first).map_err(unreadable)?,
                ListWriter::Objects(_) => {
                    if i == 0 {
                        // Sized once: growing a buffer of tens of MiB copies it again and again.
                        out.reserve(items.iter().map(|i| i.len() + 1).sum::<usize>() + 2);
                    }
                    if !first {
                        out.push(b',');
                    }
                    out.extend_from_slice(item);
                }
                ListWriter::Metadata => {
                    if !first {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut *out, &metadata_only(&crate::registry::parse(item)?)).expect("JSON serializes");
                }
            }
        }
        Ok(())
    }
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

/// Upstream returns the object for these kinds, a Success Status for the rest.
fn returns_deleted_object(def: &ResourceDef) -> bool {
    matches!((def.group, def.kind), ("", "Pod") | ("", "Service") | ("", "Namespace"))
}

fn success_status(def: &ResourceDef, obj: &Value) -> Value {
    let mut details = json!({"name": crate::registry::name_of(obj), "kind": def.plural});
    if !def.group.is_empty() {
        details["group"] = json!(def.group);
    }
    if let Some(uid) = obj.pointer("/metadata/uid") {
        details["uid"] = uid.clone();
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
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

fn delete_options(query: &Query, headers: &HeaderMap, body: &[u8], dry_run: bool) -> ApiResult<DeleteOptions> {
    let opts: Value = if body.is_empty() { json!({}) } else { decode_body(headers, body)? };
    let grace = match query.get("gracePeriodSeconds") {
        Some(g) => Some(g.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?),
        None => opts.get("gracePeriodSeconds").and_then(|g| g.as_i64()),
    };
    let resource_version = match opts.pointer("/preconditions/resourceVersion").and_then(|v| v.as_str()) {
        Some(rv) => Some(rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?),
        None => None,
    };
    let dry_run = dry_run || opts.get("dryRun").and_then(|d| d.as_array()).is_some_and(|d| d.iter().any(|v| v == "All"));
    let orphan_dependents = query.get("orphanDependents").map(|o| o == "true").or_else(|| opts.get("orphanDependents").and_then(Value::as_bool));
    let propagation = match query.get("propagationPolicy").cloned().or_else(|| opts.get("propagationPolicy").and_then(Value::as_str).map(String::from)) {
        Some(p) if matches!(p.as_str(), "Orphan" | "Background" | "Foreground") => Some(p),
        Some(p) => {
            return Err(ApiError::invalid_options("DeleteOptions", &[FieldError {
                field: "propagationPolicy".into(),
                reason: "FieldValueNotSupported",
                message: format!("Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""),
            }]))
        }
        // The deprecated flag, as upstream maps it.
        None => orphan_dependents.map(|o| if o { "Orphan".to_string() } else { "Background".to_string() }),
    };
    Ok(DeleteOptions {
        propagation,
        grace_seconds: grace,
        uid: opts.pointer("/preconditions/uid").and_then(|v| v.as_str()).map(String::from),
        resource_version,
        dry_run,
    })
}

pub fn list_query(def: &ResourceDef, query: &Query) -> ApiResult<ListQuery> {
    let label = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str)).map_err(ApiError::bad_request)?;
    let field = FieldSelector::parse(
        query.get("fieldSelector").map_or("", String::as_str),
        selectable_fields(def.group, def.kind),
        def.namespaced,
    )
    .map_err(ApiError::bad_request)?;
    let limit = match query.get("limit").map(|l| l.parse::<i64>()) {
        Some(Ok(l)) if l > 0 => Some(l as usize),
        Some(Ok(_)) | None => None,
        Some(Err(_)) => return Err(ApiError::bad_request("invalid limit")),
    };
    let continue_token = query.get("continue").filter(|c| !c.is_empty()).cloned();
    // "0" is any version at all: what the watch cache holds.
    let rv = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") => None,
        Some(rv) => Some(rv.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?),
    };
    if continue_token.is_some() && rv.is_some_and(|rv| rv != 0) {
        return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
    }
    let exact = query.get("resourceVersionMatch").map(String::as_str) == Some("Exact");
    let forbidden = |why: &str| (format!("Forbidden: {why}"), "FieldValueForbidden");
    let refusal = match query.get("resourceVersionMatch").map(String::as_str).filter(|m| !m.is_empty()) {
        None => None,
        Some(_) if rv.is_none() => Some(forbidden("resourceVersionMatch is forbidden unless resourceVersion is provided")),
        Some(_) if continue_token.is_some() => Some(forbidden("resourceVersionMatch is forbidden when continue is provided")),
        Some("Exact") if rv == Some(0) => Some(forbidden("resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"")),
        Some("Exact" | "NotOlderThan") => None,
        Some(other) => Some((format!("Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""), "FieldValueNotSupported")),
    };
    if let Some((message, reason)) = refusal {
        let error = FieldError { field: "resourceVersionMatch".into(), reason, message };
        return Err(ApiError::invalid_options("ListOptions", &[error]));
    }
    Ok(ListQuery {
        label,
        field,
        limit,
        min_revision: rv.filter(|_| !exact && continue_token.is_none()),
        continue_token,
        exact_revision: rv.filter(|_| exact),
    })
}

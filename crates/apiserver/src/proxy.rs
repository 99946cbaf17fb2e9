//! The proxy subresources, as upstream's `ProxyREST`s and its
//! `UpgradeAwareHandler` serve them: `pods/{[scheme:]name[:port]}/proxy/…`
//! to the pod's IP, `services/{[scheme:]name[:port]}/proxy/…` to a ready
//! endpoint of that service port, and `nodes/{name[:port]}/proxy/…` to the
//! node's agent (or to another port of the node). The request is passed on
//! with its method, query, headers (less the client's credentials) and
//! body; the answer comes back as the backend gave it, streamed, with
//! upstream's rewriting of redirects and of links in HTML pages so that they
//! stay behind the proxy. What cannot be reached is a 503 Status.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde_json::Value;
use skiff_auth::UserInfo;

use crate::handler::Api;
use crate::route::Target;
use crate::status::{ApiError, ApiResult};

/// The client's address, for `X-Forwarded-For` (set by `Api::handle`).
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub Option<IpAddr>);

/// How long a backend may take to accept the connection (Go's dialer's).
const DIAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A byte stream to a backend, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// How the backend is reached.
enum Via {
    Plain,
    /// HTTPS to a pod or an endpoint: its certificate is not checked
    /// (upstream's proxy transport: `InsecureSkipVerify`, IP-based).
    Tls,
    /// The node's agent, as `kubelets` calls it.
    Kubelet(Value),
}

struct Location {
    scheme: &'static str,
    host: String,
    /// A number, or as Go's dialer takes it, a service name (`http`).
    port: String,
    via: Via,
}

impl Location {
    fn authority(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port.is_empty() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Upstream's `SplitSchemeNamePort`: `name`, `name:port` or
/// `scheme:name:port`, the scheme http or https.
pub fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https")).then_some((scheme, name, port))
}

fn unavailable(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", message)
}

/// A dial or transport failure, worded as Go's (`dial tcp …: connect:
/// connection refused`), as upstream's 503 quotes it.
fn unreachable(address: &str, e: &std::io::Error) -> ApiError {
    use std::io::ErrorKind;
    let why = match e.kind() {
        ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        ErrorKind::TimedOut => "i/o timeout".to_string(),
        ErrorKind::HostUnreachable => "connect: no route to host".to_string(),
        ErrorKind::NetworkUnreachable => "connect: network is unreachable".to_string(),
        _ => e.to_string(),
    };
    unavailable(format!("error trying to reach service: dial tcp {address}: {why}"))
}

/// A TCP connection to `host:port`, given up after Go's dialer's timeout.
pub(crate) async fn connect_tcp(host: &str, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    match tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await {
        Ok(connected) => connected,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "i/o timeout")),
    }
}

fn core(plural: &str) -> &'static skiff_api::ResourceDef {
    skiff_api::resources::find("", "v1", plural).expect("core resources are served")
}

/// Upstream's pod `ResourceLocation`: the pod's IP and the port asked
/// for, else its first declared container port, else none (the scheme's).
async fn pod_location(api: &Api, ns: Option<&str>, id: &str) -> ApiResult<(Location, Value)> {
    let (scheme, name, mut port) = split_scheme_name_port(id).ok_or_else(|| ApiError::bad_request(format!("invalid pod request {id:?}")))?;
    let pod = api.registry.get(core("pods"), ns, name).await?;
    let first_port = pod.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten().find_map(|c| c.pointer("/ports/0/containerPort").and_then(Value::as_u64)).map(|p| p.to_string());
    let first_port = first_port.unwrap_or_default();
    if port.is_empty() {
        port = &first_port;
    }
    let ip = pod.pointer("/status/podIPs/0/ip").or_else(|| pod.pointer("/status/podIP")).and_then(Value::as_str).unwrap_or_default();
    if !ip.parse::<IpAddr>().is_ok_and(is_global_unicast) {
        return Err(ApiError::bad_request("address not allowed"));
    }
    let via = if scheme == "https" { Via::Tls } else { Via::Plain };
    Ok((Location { scheme: if scheme == "https" { "https" } else { "http" }, host: ip.to_string(), port: port.to_string(), via }, pod))
}

/// Go's `IP.IsGlobalUnicast`: not unspecified, loopback, link-local,
/// multicast or the IPv4 broadcast address.
fn is_global_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_loopback() || v4.is_link_local() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_loopback() || v6.is_multicast() || (v6.segments()[0] & 0xffc0) == 0xfe80),
    }
}

/// Upstream's service `ResourceLocation`, from the service's
/// EndpointSlices: a port given by number is the service port of that
/// number (named as its endpoints name it); a ready endpoint with that
/// port whose pod still has its address is picked at random.
async fn service_location(api: &Api, ns: Option<&str>, id: &str) -> ApiResult<(Location, Value)> {
    let (scheme, name, port) = split_scheme_name_port(id).ok_or_else(|| ApiError::bad_request(format!("invalid service request {id:?}")))?;
    let service = api.registry.get(core("services"), ns, name).await?;
    let mut port_name = port.to_string();
    if let Ok(number) = port.parse::<i64>() {
        let ports = service.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
        let found = ports.iter().find(|p| p["port"].as_i64() == Some(number)).ok_or_else(|| unavailable(format!("no service port {number} found for service {name:?}")))?;
        port_name = found["name"].as_str().unwrap_or_default().to_string();
    }
    let slices_def = skiff_api::resources::find("discovery.k8s.io", "v1", "endpointslices").expect("endpointslices are served");
    let selector = skiff_api::selector::LabelSelector::parse(&format!("kubernetes.io/service-name={name}")).map_err(ApiError::bad_request)?;
    let slices = api.registry.list_objects(slices_def, ns, &crate::registry::ListQuery { label: selector, ..Default::default() }).await?;
    let ready = |e: &Value| e.pointer("/conditions/ready") != Some(&Value::Bool(false));
    let mut candidates = Vec::new();
    for slice in &slices {
        let endpoints: Vec<&Value> = slice["endpoints"].as_array().into_iter().flatten().filter(|e| ready(e)).collect();
        let Some(port) = slice["ports"].as_array().into_iter().flatten().find(|p| p["name"].as_str().unwrap_or_default() == port_name).and_then(|p| p["port"].as_u64()) else {
            continue;
        };
        for endpoint in endpoints {
            if let Some(address) = endpoint.pointer("/addresses/0").and_then(Value::as_str) {
                candidates.push((address.to_string(), port, endpoint.get("targetRef").cloned()));
            }
        }
    }
    let any = slices.iter().any(|s| s["endpoints"].as_array().is_some_and(|e| e.iter().any(ready)));
    if !any {
        return Err(unavailable(format!("no endpoints available for service {name:?}")));
    }
    // Tried from a random start, as upstream tries them.
    let start = if candidates.is_empty() { 0 } else { rand::rng().random_range(0..candidates.len()) };
    for i in 0..candidates.len() {
        let (address, port, target) = &candidates[(start + i) % candidates.len()];
        if !is_valid_address(api, ns, address, target.as_ref()).await {
            continue;
        }
        let via = if scheme == "https" { Via::Tls } else { Via::Plain };
        let scheme = if scheme == "https" { "https" } else { "http" };
        return Ok((Location { scheme, host: address.clone(), port: port.to_string(), via }, service));
    }
    Err(unavailable(format!("no endpoints available for service {id:?}")))
}

/// Upstream's `isValidAddress`: the endpoint names a pod in the service's
/// namespace that still has this address.
async fn is_valid_address(api: &Api, ns: Option<&str>, address: &str, target: Option<&Value>) -> bool {
    let Some(target) = target.filter(|t| t["kind"].as_str().is_none_or(|k| k == "Pod")) else { return false };
    if target["namespace"].as_str() != ns {
        return false;
    }
    let Some(pod) = target["name"].as_str() else { return false };
    let Ok(pod) = api.registry.get(core("pods"), ns, pod).await else { return false };
    pod.pointer("/status/podIPs").and_then(Value::as_array).into_iter().flatten().any(|ip| ip["ip"].as_str() == Some(address))
}

/// Upstream's node `ResourceLocation`: the agent, unless another port of
/// the node is asked for.
async fn node_location(api: &Api, id: &str) -> ApiResult<(Location, Value)> {
    let (scheme, name, port) = split_scheme_name_port(id).ok_or_else(|| ApiError::bad_request(format!("invalid node request {id:?}")))?;
    let node = api.registry.get(core("nodes"), None, name).await?;
    let (address, kubelet_port) = crate::kubelets::endpoint(&node).ok_or_else(|| ApiError::internal(format!("node {name:?} has no address for its agent")))?;
    if port.is_empty() || port == kubelet_port.to_string() {
        return Ok((Location { scheme: "https", host: address, port: kubelet_port.to_string(), via: Via::Kubelet(node.clone()) }, node));
    }
    let via = if scheme == "https" { Via::Tls } else { Via::Plain };
    Ok((Location { scheme: if scheme == "https" { "https" } else { "http" }, host: address, port: port.to_string(), via }, node))
}

/// A TLS client that takes any server certificate: pods and endpoints are
/// reached by IP, with certificates nothing here could check.
fn unverified_tls() -> tokio_rustls::TlsConnector {
    static CONNECTOR: std::sync::OnceLock<tokio_rustls::TlsConnector> = std::sync::OnceLock::new();
    CONNECTOR.get_or_init(|| tokio_rustls::TlsConnector::from(Arc::new(skiff_auth::pki::unverified_client_config()))).clone()
}

/// A connection to the backend.
async fn dial(api: &Api, location: &Location) -> ApiResult<Box<dyn Stream>> {
    let address = location.authority();
    if let Via::Kubelet(node) = &location.via {
        let (stream, _) = api.kubelets.dial(node).await?.map_err(|e| unreachable(&address, &e))?;
        return Ok(Box::new(stream));
    }
    let port = match location.port.as_str() {
        "" => if location.scheme == "https" { 443 } else { 80 },
        // Service names Go's dialer knows without /etc/services.
        "http" => 80,
        "https" => 443,
        number => number.parse::<u16>().map_err(|_| unavailable(format!("error trying to reach service: dial tcp: lookup tcp/{number}: unknown port")))?,
    };
    let tcp = connect_tcp(&location.host, port).await.map_err(|e| unreachable(&address, &e))?;
    if matches!(location.via, Via::Plain) {
        return Ok(Box::new(tcp));
    }
    let name = match location.host.parse::<IpAddr>() {
        Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
        Err(_) => rustls::pki_types::ServerName::try_from(location.host.clone()).map_err(|e| unavailable(format!("error trying to reach service: {e}")))?,
    };
    let tls = unverified_tls().connect(name, tcp).await.map_err(|e| unavailable(format!("error trying to reach service: {e}")))?;
    Ok(Box::new(tls))
}

/// Go's `path.Join` of the path after `/proxy` (upstream's
/// `JoinPreservingTrailingSlash` of the `path` option): cleaned, with a
/// leading slash, and the request's trailing slash kept.
fn backend_path(proxy_path: &str, request_path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for segment in proxy_path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
    }
    let trailing = request_path.ends_with('/');
    if kept.is_empty() {
        return if trailing { "/".into() } else { String::new() };
    }
    let mut path = format!("/{}", kept.join("/"));
    if trailing {
        path.push('/');
    }
    path
}

/// Headers a proxy does not pass on (Go's `ReverseProxy` hop-by-hop list),
/// plus the client's own credentials, which upstream's authentication and
/// impersonation filters remove once they have read them.
pub(crate) fn is_hop_by_hop(name: &HeaderName, connection: &HeaderMap) -> bool {
    const HOP: [&str; 9] = ["connection", "proxy-connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"];
    let name = name.as_str();
    HOP.contains(&name) || connection.get_all(header::CONNECTION).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|token| token.trim().eq_ignore_ascii_case(name))
}

fn is_credential(name: &HeaderName) -> bool {
    name == header::AUTHORIZATION || name.as_str().starts_with("impersonate-")
}

/// Serves one proxy request, answering errors as Status objects.
pub async fn serve(api: &Api, user: &UserInfo, t: &Target, parts: axum::http::request::Parts, body: Body) -> Response {
    proxy(api, user, t, parts, body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn proxy(api: &Api, user: &UserInfo, t: &Target, mut parts: axum::http::request::Parts, body: Body) -> ApiResult<Response> {
    let id = t.name.as_deref().ok_or_else(ApiError::not_found_path)?;
    let ns = t.namespace.as_deref();
    let (location, object) = match t.def.kind {
        "Pod" => pod_location(api, ns, id).await?,
        "Service" => service_location(api, ns, id).await?,
        _ => node_location(api, id).await?,
    };
    // Admitted as upstream admits a Connecter's request: CONNECT.
    let request = skiff_admission::Request {
        operation: skiff_admission::Operation::Connect,
        group: t.def.group,
        version: t.def.version,
        kind: t.def.kind,
        resource: t.def.plural,
        subresource: "proxy",
        namespace: ns.unwrap_or_default(),
        name: id,
        user,
        dry_run: false,
        old: None,
    };
    let cluster = crate::admission::RegistryCluster(&api.registry, &api.security);
    api.admission.validate(&request, &object, &cluster).await.map_err(|r| crate::admission::refused(r, t.def, id))?;

    let request_path = parts.uri.path().to_string();
    let path = backend_path(&t.proxy_path, &request_path);
    let query = parts.uri.query().map(str::to_string);
    if path.is_empty() && matches!(parts.method, Method::GET | Method::HEAD) {
        // Upstream's redirect of the root to a path with a trailing slash.
        let target = format!("{request_path}/{}", query.as_deref().map(|q| format!("?{q}")).unwrap_or_default());
        return Ok((StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, target)]).into_response());
    }
    // What is before the backend's path: the prefix its links are given.
    let suffix = if request_path.ends_with('/') && !path.ends_with('/') { format!("{path}/") } else { path.clone() };
    let prefix = request_path.strip_suffix(suffix.as_str()).unwrap_or(&request_path).to_string();
    let backend_uri = format!("{}{}", if path.is_empty() { "/" } else { &path }, query.as_deref().map(|q| format!("?{q}")).unwrap_or_default());
    let client_host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string).or_else(|| parts.uri.authority().map(|a| a.to_string())).unwrap_or_default();
    let upgrade = parts.headers.get(header::UPGRADE).is_some() && parts.headers.get_all(header::CONNECTION).iter().any(|v| v.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("upgrade")));

    let mut request = hyper::Request::builder().method(parts.method.clone()).uri(&backend_uri);
    let headers = request.headers_mut().expect("a new request builder");
    for (name, value) in parts.headers.iter() {
        if is_credential(name) || name == header::HOST || (is_hop_by_hop(name, &parts.headers) && !(upgrade && (name == header::CONNECTION || name == header::UPGRADE))) {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    if !client_host.is_empty() {
        headers.insert(header::HOST, HeaderValue::from_str(&client_host).map_err(|e| ApiError::bad_request(e.to_string()))?);
    }
    if let Some(Peer(Some(ip))) = parts.extensions.get::<Peer>().copied() {
        let forwarded = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip.to_string(),
        };
        headers.insert("x-forwarded-for", HeaderValue::from_str(&forwarded).expect("an address is a header value"));
    }
    let mut forwarded_uri = join_paths(&prefix, &path);
    if path.ends_with('/') && !forwarded_uri.ends_with('/') {
        forwarded_uri.push('/');
    }
    if let Ok(value) = HeaderValue::from_str(&forwarded_uri) {
        headers.insert("x-forwarded-uri", value);
    }
    let request = request.body(if upgrade { Body::empty() } else { body }).map_err(|e| ApiError::bad_request(e.to_string()))?;

    let stream = dial(api, &location).await?;
    let address = location.authority();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unavailable(format!("error trying to reach service: {e}")))?;
    tokio::spawn(connection.with_upgrades());
    let response = sender.send_request(request).await.map_err(|e| unavailable(format!("error trying to reach service: {}", describe(&address, &e))))?;

    if upgrade && response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return spliced(&mut parts, response);
    }

    let (mut head, incoming) = response.into_parts();
    let connection_headers = head.headers.clone();
    let names: Vec<HeaderName> = head.headers.keys().cloned().collect();
    for name in names {
        if is_hop_by_hop(&name, &connection_headers) || CORS.contains(&name.as_str()) {
            head.headers.remove(&name);
        }
    }
    let rewriter = Rewriter { prefix, backend_host: address, client_host };
    if let Some(location) = head.headers.get(header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_string) {
        if let Ok(value) = HeaderValue::from_str(&rewriter.url(&location)) {
            head.headers.insert(header::LOCATION, value);
        }
        return Ok(Response::from_parts(head, Body::new(incoming)));
    }
    let html = head.headers.get(header::CONTENT_TYPE).and_then(|c| c.to_str().ok()).is_some_and(|c| c.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("text/html"));
    let encoding = head.headers.get(header::CONTENT_ENCODING).and_then(|e| e.to_str().ok()).unwrap_or("").to_string();
    if !html || parts.method == Method::HEAD || !matches!(encoding.as_str(), "" | "gzip" | "deflate") {
        return Ok(Response::from_parts(head, Body::new(incoming)));
    }
    // Links in a page are rewritten to stay behind the proxy: the page is
    // read whole, as upstream's rewriting reads it.
    let bytes = axum::body::to_bytes(Body::new(incoming), usize::MAX).await.map_err(|e| unavailable(format!("error trying to reach service: {e}")))?;
    let rewritten = rewrite_encoded(&bytes, &encoding, &|u| rewriter.url(u)).unwrap_or_else(|| bytes.to_vec());
    head.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
    Ok(Response::from_parts(head, Body::from(rewritten)))
}

/// The backend's 101 answer to an upgraded request, the client's stream
/// and the backend's spliced once both have switched.
pub(crate) fn spliced(parts: &mut axum::http::request::Parts, response: hyper::Response<hyper::body::Incoming>) -> ApiResult<Response> {
    let client = parts.extensions.remove::<hyper::upgrade::OnUpgrade>().ok_or_else(|| ApiError::bad_request("Upgrade request required"))?;
    let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in response.headers() {
        out = out.header(name, value);
    }
    let backend = hyper::upgrade::on(response);
    tokio::spawn(async move {
        let (Ok(client), Ok(backend)) = (client.await, backend.await) else { return };
        let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(backend)).await;
    });
    out.body(Body::empty()).map_err(|e| ApiError::internal(e.to_string()))
}

/// The response headers upstream's `corsRemovingTransport` drops: the API
/// server, not the backend, decides what browsers may do with it.
const CORS: [&str; 4] = ["access-control-allow-credentials", "access-control-allow-headers", "access-control-allow-methods", "access-control-allow-origin"];

/// A hyper error as Go words a failed round trip, where it can.
fn describe(address: &str, e: &hyper::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return format!("read tcp {address}: {io}");
        }
        source = s.source();
    }
    if e.is_incomplete_message() {
        return "EOF".to_string();
    }
    e.to_string()
}

/// Go's `path.Join` of two absolute paths.
fn join_paths(a: &str, b: &str) -> String {
    let joined = format!("{a}/{b}");
    let segments: Vec<&str> = joined.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", segments.join("/"))
}

/// Upstream's proxy `Transport.rewriteURL`, for the request whose
/// backend is `backend_host` and whose client named this server
/// `client_host`: a URL on the backend (or this server) with an absolute
/// path gets the proxy's prefix, and loses the backend's scheme and host.
struct Rewriter {
    prefix: String,
    backend_host: String,
    client_host: String,
}

impl Rewriter {
    fn url(&self, raw: &str) -> String {
        let url = GoUrl::parse(raw);
        let different_host = !url.host.is_empty() && url.host != self.backend_host && url.host != self.client_host;
        if different_host || !url.path.starts_with('/') || url.opaque {
            return raw.to_string();
        }
        // The server's own requests carry no scheme or host, so a URL on
        // the backend becomes a path on this server.
        let (scheme, host) = if url.host == self.client_host { (url.scheme.as_str(), url.host.as_str()) } else { ("", "") };
        let path = if url.path.starts_with(&self.prefix) {
            url.path.clone()
        } else {
            let mut joined = join_paths(&self.prefix, &url.path);
            if url.path.ends_with('/') && !joined.ends_with('/') {
                joined.push('/');
            }
            joined
        };
        let mut out = String::new();
        if !scheme.is_empty() {
            out.push_str(scheme);
            out.push(':');
        }
        if !host.is_empty() {
            out.push_str("//");
            out.push_str(host);
        }
        out.push_str(&path);
        if let Some(q) = &url.query {
            out.push('?');
            out.push_str(q);
        }
        if let Some(f) = &url.fragment {
            out.push('#');
            out.push_str(f);
        }
        out
    }
}

/// The parts of a URL as Go's `url.Parse` splits them.
#[derive(Debug, Default, PartialEq)]
struct GoUrl {
    scheme: String,
    host: String,
    path: String,
    query: Option<String>,
    fragment: Option<String>,
    /// `mailto:x`: a scheme without `//`, not a path.
    opaque: bool,
}

impl GoUrl {
    fn parse(raw: &str) -> GoUrl {
        let mut url = GoUrl::default();
        let (rest, fragment) = match raw.split_once('#') {
            Some((r, f)) => (r, Some(f.to_string())),
            None => (raw, None),
        };
        url.fragment = fragment;
        let (mut rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q.to_string())),
            None => (rest, None),
        };
        url.query = query;
        if let Some(colon) = rest.find(':') {
            let scheme = &rest[..colon];
            let valid = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if valid {
                url.scheme = scheme.to_ascii_lowercase();
                rest = &rest[colon + 1..];
                if !rest.starts_with('/') {
                    url.opaque = true;
                    return url;
                }
            }
        }
        if let Some(after) = rest.strip_prefix("//") {
            let end = after.find('/').unwrap_or(after.len());
            url.host = after[..end].to_string();
            rest = &after[end..];
        }
        url.path = rest.to_string();
        url
    }
}

/// A page's body rewritten, through its content encoding; None when it
/// cannot be read (it is then passed on as it came).
fn rewrite_encoded(body: &[u8], encoding: &str, rewrite: &dyn Fn(&str) -> String) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let text = match encoding {
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body).read_to_end(&mut out).ok()?;
            out
        }
        "deflate" => {
            let mut out = Vec::new();
            flate2::read::DeflateDecoder::new(body).read_to_end(&mut out).ok()?;
            out
        }
        _ => body.to_vec(),
    };
    let rewritten = rewrite_html(&String::from_utf8_lossy(&text), rewrite).into_bytes();
    match encoding {
        "gzip" => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&rewritten).ok()?;
            encoder.finish().ok()
        }
        "deflate" => {
            let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(&rewritten).ok()?;
            encoder.finish().ok()
        }
        _ => Some(rewritten),
    }
}

/// The attributes that hold URLs, by element (upstream's `atomsToAttrs`).
fn url_attributes(tag: &str) -> &'static [&'static str] {
    match tag {
        "a" | "area" | "base" | "link" => &["href"],
        "applet" => &["codebase"],
        "audio" | "embed" | "script" | "source" => &["src"],
        "blockquote" | "del" | "ins" | "q" => &["cite"],
        "body" => &["background"],
        "button" => &["formaction"],
        "command" => &["icon"],
        "form" => &["action"],
        "frame" | "iframe" => &["longdesc", "src"],
        "head" => &["profile"],
        "html" => &["manifest"],
        "img" => &["longdesc", "src", "usemap"],
        "input" => &["src", "usemap", "formaction"],
        "object" => &["classid", "codebase", "data", "usemap"],
        "video" => &["poster", "src"],
        _ => &[],
    }
}

/// Elements whose content is text, not markup, as Go's tokenizer reads them.
const RAW_TEXT: [&str; 10] = ["iframe", "noembed", "noframes", "noscript", "plaintext", "script", "style", "textarea", "title", "xmp"];

/// Upstream's `rewriteHTML`: every start tag is written again as Go's
/// tokenizer writes a token (lower-case names, double-quoted escaped
/// values), its URL-valued attributes rewritten; all else is kept byte for
/// byte.
pub fn rewrite_html(input: &str, rewrite: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(input.len() + 64);
    let mut at = 0;
    let mut raw_text: Option<String> = None;
    while let Some(offset) = input[at..].find('<') {
        let lt = at + offset;
        out.push_str(&input[at..lt]);
        let rest = &input[lt..];
        if let Some(tag) = &raw_text {
            let close = format!("</{tag}");
            if !rest.get(..close.len()).is_some_and(|s| s.eq_ignore_ascii_case(&close)) {
                out.push('<');
                at = lt + 1;
                continue;
            }
            raw_text = None;
        }
        let end = if let Some(comment) = rest.strip_prefix("<!--") {
            comment.find("-->").map(|e| e + 7).unwrap_or(rest.len())
        } else if rest.starts_with("<!") || rest.starts_with("<?") || rest.starts_with("</") {
            rest.find('>').map(|e| e + 1).unwrap_or(rest.len())
        } else if rest[1..].starts_with(|c: char| c.is_ascii_alphabetic()) {
            match StartTag::parse(rest) {
                Some((tag, len)) => {
                    out.push_str(&tag.render(rewrite));
                    if RAW_TEXT.contains(&tag.name.as_str()) && !tag.self_closing {
                        raw_text = Some(tag.name.clone());
                    }
                    at = lt + len;
                    continue;
                }
                None => rest.len(),
            }
        } else {
            1
        };
        out.push_str(&rest[..end]);
        at = lt + end;
    }
    out.push_str(&input[at..]);
    out
}

struct StartTag {
    name: String,
    attributes: Vec<(String, String)>,
    self_closing: bool,
}

impl StartTag {
    /// The start tag at the beginning of `text` and its length.
    fn parse(text: &str) -> Option<(StartTag, usize)> {
        let bytes = text.as_bytes();
        let mut i = 1;
        let word_end = |i: usize, stop: &dyn Fn(u8) -> bool| (i..bytes.len()).find(|&j| stop(bytes[j])).unwrap_or(bytes.len());
        let end = word_end(i, &|b| b.is_ascii_whitespace() || b == b'/' || b == b'>');
        let name = text[i..end].to_ascii_lowercase();
        i = end;
        let mut attributes = Vec::new();
        loop {
            while i < bytes.len() && (bytes[i].is_ascii_whitespace() || (bytes[i] == b'/' && bytes.get(i + 1) != Some(&b'>'))) {
                i += 1;
            }
            match bytes.get(i) {
                None => return None,
                Some(b'>') => return Some((StartTag { name, attributes, self_closing: false }, i + 1)),
                Some(b'/') => return Some((StartTag { name, attributes, self_closing: true }, i + 2)),
                Some(_) => {}
            }
            let key_end = word_end(i + 1, &|b| b.is_ascii_whitespace() || b == b'=' || b == b'>' || b == b'/');
            let key = text[i..key_end].to_ascii_lowercase();
            i = key_end;
            let mut j = i;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            let mut value = String::new();
            if bytes.get(j) == Some(&b'=') {
                j += 1;
                while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                    j += 1;
                }
                match bytes.get(j) {
                    Some(&quote @ (b'"' | b'\'')) => {
                        let close = text[j + 1..].find(quote as char)? + j + 1;
                        value = unescape(&text[j + 1..close]);
                        j = close + 1;
                    }
                    _ => {
                        let value_end = word_end(j, &|b| b.is_ascii_whitespace() || b == b'>');
                        value = unescape(&text[j..value_end]);
                        j = value_end;
                    }
                }
                i = j;
            }
            if !attributes.iter().any(|(k, _)| *k == key) {
                attributes.push((key, value));
            }
        }
    }

    fn render(&self, rewrite: &dyn Fn(&str) -> String) -> String {
        let rewritten = url_attributes(&self.name);
        let mut out = format!("<{}", self.name);
        for (key, value) in &self.attributes {
            let value = if rewritten.contains(&key.as_str()) { rewrite(value) } else { value.clone() };
            out.push_str(&format!(" {key}=\"{}\"", escape(&value)));
        }
        out.push_str(if self.self_closing { "/>" } else { ">" });
        out
    }
}

/// Go's `html.EscapeString` set, as its tokens are written.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// Character references in an attribute value: the named ones markup
/// escapes with, and numeric ones.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|s| *s <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            n if n.starts_with("#x") || n.starts_with("#X") => u32::from_str_radix(&n[2..], 16).ok().and_then(char::from_u32),
            n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_as_upstream_splits_them() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(split_scheme_name_port("web:8080"), Some(("", "web", "8080")));
        assert_eq!(split_scheme_name_port("https:web:443"), Some(("https", "web", "443")));
        assert_eq!(split_scheme_name_port("http:web:"), Some(("http", "web", "")));
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }

    #[test]
    fn backend_paths_keep_the_trailing_slash() {
        assert_eq!(backend_path("", "/api/v1/namespaces/n/pods/p/proxy"), "");
        assert_eq!(backend_path("", "/api/v1/namespaces/n/pods/p/proxy/"), "/");
        assert_eq!(backend_path("some/path", "/x/proxy/some/path"), "/some/path");
        assert_eq!(backend_path("some//path/../other", "/x/proxy/some//path/../other/"), "/some/other/");
    }

    fn rewriter() -> Rewriter {
        Rewriter { prefix: "/api/v1/namespaces/n/pods/p/proxy".into(), backend_host: "10.42.0.5:8080".into(), client_host: "127.0.0.1:6443".into() }
    }

    #[test]
    fn urls_on_the_backend_get_the_proxy_prefix() {
        let r = rewriter();
        assert_eq!(r.url("/rewriteme"), "/api/v1/namespaces/n/pods/p/proxy/rewriteme");
        assert_eq!(r.url("/dir/?a=1#top"), "/api/v1/namespaces/n/pods/p/proxy/dir/?a=1#top");
        assert_eq!(r.url("http://10.42.0.5:8080/x"), "/api/v1/namespaces/n/pods/p/proxy/x");
        assert_eq!(r.url("https://127.0.0.1:6443/x"), "https://127.0.0.1:6443/api/v1/namespaces/n/pods/p/proxy/x");
        assert_eq!(r.url("/api/v1/namespaces/n/pods/p/proxy/already"), "/api/v1/namespaces/n/pods/p/proxy/already");
        for unchanged in ["relative/x", "http://example.com/x", "mailto:someone@example.com", "#frag", ""] {
            assert_eq!(r.url(unchanged), unchanged);
        }
    }

    #[test]
    fn html_links_are_rewritten_as_upstream_rewrites_them() {
        let r = rewriter();
        let page = "<!doctype html>\n<HTML><body><A HREF='/rewriteme' class=x>test</A><img src=\"/i.png\" alt=\"a &amp; b\"><br/>\n<!-- <a href=\"/no\"> -->\n<script>if (a<b) document.write('<a href=\"/no\">')</script><a href=\"rel\">r</a></body></HTML>";
        let out = rewrite_html(page, &|u| r.url(u));
        assert_eq!(
            out,
            "<!doctype html>\n<html><body><a href=\"/api/v1/namespaces/n/pods/p/proxy/rewriteme\" class=\"x\">test</A><img src=\"/api/v1/namespaces/n/pods/p/proxy/i.png\" alt=\"a &amp; b\"><br/>\n<!-- <a href=\"/no\"> -->\n<script>if (a<b) document.write('<a href=\"/no\">')</script><a href=\"rel\">r</a></body></HTML>"
        );
        // The e2e test's page.
        assert_eq!(rewrite_html("<a href=\"/rewriteme\">test</a>", &|u| r.url(u)), "<a href=\"/api/v1/namespaces/n/pods/p/proxy/rewriteme\">test</a>");
        // Cut short: kept as it came.
        assert_eq!(rewrite_html("text <a href=\"/x", &|u| r.url(u)), "text <a href=\"/x");
    }

    #[test]
    fn compressed_pages_are_rewritten_inside_their_encoding() {
        use std::io::{Read, Write};
        let r = rewriter();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"<a href=\"/x\">x</a>").unwrap();
        let out = rewrite_encoded(&gz.finish().unwrap(), "gzip", &|u| r.url(u)).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&out[..]).read_to_string(&mut text).unwrap();
        assert_eq!(text, "<a href=\"/api/v1/namespaces/n/pods/p/proxy/x\">x</a>");
    }

    #[test]
    fn only_global_unicast_pod_addresses_are_proxied() {
        for (ip, ok) in [("10.42.0.5", true), ("127.0.0.1", false), ("169.254.169.254", false), ("0.0.0.0", false), ("224.0.0.1", false), ("fd00::5", true), ("fe80::1", false), ("::1", false)] {
            assert_eq!(is_global_unicast(ip.parse().unwrap()), ok, "{ip}");
        }
    }
}

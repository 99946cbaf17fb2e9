//! Calls to node agents for what only they hold (`pods/log`), as upstream's
//! API server makes them: HTTPS to the node's InternalIP and
//! `daemonEndpoints.kubeletEndpoint.Port`, the agent's certificate checked
//! against the cluster CA, with the API server's own client certificate.

use std::sync::Arc;

use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::registry::Registry;
use crate::status::ApiError;

pub struct Kubelets {
    connector: Option<tokio_rustls::TlsConnector>,
}

impl Kubelets {
    /// `identity` is (certificate, key) in PEM; without it no agent is called.
    pub fn new(ca_pem: &str, identity: Option<(&str, &str)>) -> anyhow::Result<Kubelets> {
        let Some((cert_pem, key_pem)) = identity else { return Ok(Kubelets { connector: None }) };
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())?.ok_or_else(|| anyhow::anyhow!("no key for the kubelet client certificate"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_root_certificates(roots).with_client_auth_cert(certs, key)?;
        Ok(Kubelets { connector: Some(tokio_rustls::TlsConnector::from(Arc::new(config))) })
    }

    /// A connection to the agent of `node`, and the Host to name it by.
    async fn open(&self, registry: &Registry, node: &str) -> Result<(hyper::client::conn::http1::SendRequest<axum::body::Body>, String), ApiError> {
        let node_obj = registry.get(nodes(), None, node).await?;
        let unreachable = |e: String| ApiError::internal(format!("dialing the agent of node {node:?}: {e}"));
        let (stream, host) = self.dial(&node_obj).await?.map_err(|e| unreachable(e.to_string()))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(connection.with_upgrades());
        Ok((sender, host))
    }

    /// A TLS connection to the agent of `node` (an object), with the
    /// cluster CA and the API server's client certificate, and the Host to
    /// name it by; the outer error is the API's (no agent to call), the
    /// inner one the network's.
    pub(crate) async fn dial(&self, node: &Value) -> Result<std::io::Result<(tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String)>, ApiError> {
        let connector = self.connector.as_ref().ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "this API server does not call node agents"))?;
        let name = node.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let (address, port) = endpoint(node).ok_or_else(|| ApiError::internal(format!("node {name:?} has no address for its agent")))?;
        Ok(async {
            let tcp = crate::proxy::connect_tcp(&address, port).await?;
            let server_name = match address.parse::<std::net::IpAddr>() {
                Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
                Err(_) => rustls::pki_types::ServerName::try_from(address.clone()).map_err(std::io::Error::other)?,
            };
            let stream = connector.connect(server_name, tcp).await?;
            Ok((stream, format!("{address}:{port}")))
        }
        .await)
    }

    /// GETs `path` from the agent of `node`, streaming its answer back.
    pub async fn get(&self, registry: &Registry, node: &str, path: &str) -> Result<Response, ApiError> {
        let (mut sender, host) = self.open(registry, node).await?;
        let request = hyper::Request::builder().method(Method::GET).uri(path).header(header::HOST, host).body(axum::body::Body::empty()).map_err(|e| ApiError::internal(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| ApiError::internal(format!("calling the agent of node {node:?}: {e}")))?;
        if response.status() != StatusCode::OK {
            return Err(refusal(response).await);
        }
        let mut out = Response::new(axum::body::Body::new(response.into_body()));
        out.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
        Ok(out)
    }
}

/// An agent's refusal as a Status with its words.
async fn refusal(response: hyper::Response<hyper::body::Incoming>) -> ApiError {
    let status = response.status();
    let text = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 64 * 1024).await.unwrap_or_default();
    let reason = if status == StatusCode::NOT_FOUND { "NotFound" } else if status.is_client_error() { "BadRequest" } else { "InternalError" };
    ApiError::new(status, reason, String::from_utf8_lossy(&text).trim().to_string())
}

/// The container a request names, or the pod's only one, as upstream picks it.
fn container_of(pod: &Value, query: &crate::handler::Query) -> Result<String, ApiError> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let names = |key: &str| -> Vec<String> { pod.pointer(&format!("/spec/{key}")).and_then(Value::as_array).into_iter().flatten().filter_map(|c| c["name"].as_str().map(str::to_string)).collect() };
    let (containers, init, ephemeral) = (names("containers"), names("initContainers"), names("ephemeralContainers"));
    match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if containers.contains(c) || init.contains(c) || ephemeral.contains(c) => Ok(c.clone()),
        Some(c) => Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}"))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut message = format!("a container name must be specified for pod {name}, choose one of: [{}]", containers.join(" "));
            if !init.is_empty() {
                message.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
            }
            if !ephemeral.is_empty() {
                message.push_str(&format!(" or one of the ephemeral containers: [{}]", ephemeral.join(" ")));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

fn node_of(pod: &Value) -> Result<&str, ApiError> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    pod.pointer("/spec/nodeName").and_then(Value::as_str).ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))
}

fn nodes() -> &'static skiff_api::ResourceDef {
    skiff_api::resources::find("", "v1", "nodes").expect("nodes are served")
}

/// The node's InternalIP (else its first address) and its agent's port.
pub(crate) fn endpoint(node: &Value) -> Option<(String, u16)> {
    let addresses = node.pointer("/status/addresses")?.as_array()?;
    let address = addresses.iter().find(|a| a["type"] == "InternalIP").or_else(|| addresses.first())?["address"].as_str()?.to_string();
    let port = node.pointer("/status/daemonEndpoints/kubeletEndpoint/Port")?.as_u64()? as u16;
    Some((address, port))
}

/// `pods/{name}/log`: the container named, or the only one, as upstream
/// picks it; the query passed on as the agent's.
pub async fn pod_log(kubelets: &Kubelets, registry: &Registry, pod: &Value, query: &crate::handler::Query) -> Result<Response, ApiError> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    let container = container_of(pod, query)?;
    let node = node_of(pod)?;
    let passed = ["follow", "previous", "timestamps", "tailLines", "sinceSeconds", "sinceTime", "limitBytes"];
    let encoded: Vec<String> = passed.iter().filter_map(|k| query.get(*k).map(|v| format!("{k}={}", percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)))).collect();
    let path = format!("/containerLogs/{namespace}/{name}/{container}?{}", encoded.join("&"));
    kubelets.get(registry, node, &path).await
}

/// `pods/exec`, `pods/attach`, `pods/portforward`: the upgrade request is
/// passed to the agent as is (WebSocket or SPDY); once both sides have
/// switched protocols, the two streams are spliced.
pub async fn connect(kubelets: &Kubelets, registry: &Registry, pod: &Value, subresource: &str, parts: &mut axum::http::request::Parts, query: &crate::handler::Query) -> Result<Response, ApiError> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    let node = node_of(pod)?;
    let raw_query = parts.uri.query().unwrap_or("");
    let path = match subresource {
        "portforward" => format!("/portForward/{namespace}/{name}?{raw_query}"),
        "exec" => format!("/exec/{namespace}/{name}/{}?{raw_query}", container_of(pod, query)?),
        _ => format!("/attach/{namespace}/{name}/{}?{raw_query}", container_of(pod, query)?),
    };
    let (mut sender, host) = kubelets.open(registry, node).await?;
    let mut request = hyper::Request::builder().method(parts.method.clone()).uri(path).header(header::HOST, host);
    for (key, value) in parts.headers.iter().filter(|(k, _)| is_upgrade_header(k)) {
        request = request.header(key, value);
    }
    let request = request.body(axum::body::Body::empty()).map_err(|e| ApiError::internal(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| ApiError::internal(format!("calling the agent of node {node:?}: {e}")))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(refusal(response).await);
    }
    let client = parts.extensions.remove::<hyper::upgrade::OnUpgrade>().ok_or_else(|| ApiError::bad_request("Upgrade request required"))?;
    let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (key, value) in response.headers().iter().filter(|(k, _)| is_upgrade_header(k)) {
        out = out.header(key, value);
    }
    let agent = hyper::upgrade::on(response);
    tokio::spawn(async move {
        let (Ok(client), Ok(agent)) = (client.await, agent.await) else { return };
        let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(agent)).await;
    });
    out.body(axum::body::Body::empty()).map_err(|e| ApiError::internal(e.to_string()))
}

/// The headers a protocol switch is negotiated with (WebSocket's, SPDY's).
fn is_upgrade_header(name: &header::HeaderName) -> bool {
    let name = name.as_str();
    name == "connection" || name == "upgrade" || name.starts_with("sec-websocket-") || name == "x-stream-protocol-version"
}

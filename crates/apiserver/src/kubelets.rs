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

    /// GETs `path` from the agent of `node`, streaming its answer back;
    /// an agent's refusal becomes a Status with its words.
    pub async fn get(&self, registry: &Registry, node: &str, path: &str) -> Result<Response, ApiError> {
        let connector = self.connector.as_ref().ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "this API server does not call node agents"))?;
        let nodes = skiff_api::resources::find("", "v1", "nodes").expect("nodes are served");
        let node_obj = registry.get(nodes, None, node).await?;
        let (address, port) = endpoint(&node_obj).ok_or_else(|| ApiError::internal(format!("node {node:?} has no address for its agent")))?;
        let unreachable = |e: String| ApiError::internal(format!("Get \"https://{address}:{port}{path}\": {e}"));
        let tcp = tokio::net::TcpStream::connect((address.as_str(), port)).await.map_err(|e| unreachable(e.to_string()))?;
        let name = match address.parse::<std::net::IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
            Err(_) => rustls::pki_types::ServerName::try_from(address.clone()).map_err(|e| unreachable(e.to_string()))?,
        };
        let stream = connector.connect(name, tcp).await.map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(connection);
        let request = hyper::Request::builder().method(Method::GET).uri(path).header(header::HOST, format!("{address}:{port}")).body(axum::body::Body::empty()).map_err(|e| unreachable(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        if status != StatusCode::OK {
            let text = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 64 * 1024).await.unwrap_or_default();
            let reason = if status == StatusCode::NOT_FOUND { "NotFound" } else if status.is_client_error() { "BadRequest" } else { "InternalError" };
            return Err(ApiError::new(status, reason, String::from_utf8_lossy(&text).trim().to_string()));
        }
        let mut out = Response::new(axum::body::Body::new(response.into_body()));
        out.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
        Ok(out)
    }
}

/// The node's InternalIP (else its first address) and its agent's port.
fn endpoint(node: &Value) -> Option<(String, u16)> {
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
    let names = |key: &str| -> Vec<String> { pod.pointer(&format!("/spec/{key}")).and_then(Value::as_array).into_iter().flatten().filter_map(|c| c["name"].as_str().map(str::to_string)).collect() };
    let (containers, init) = (names("containers"), names("initContainers"));
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if containers.contains(c) || init.contains(c) => c.clone(),
        Some(c) => return Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}"))),
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            let mut message = format!("a container name must be specified for pod {name}, choose one of: [{}]", containers.join(" "));
            if !init.is_empty() {
                message.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
            }
            return Err(ApiError::bad_request(message));
        }
    };
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))?;
    let passed = ["follow", "previous", "timestamps", "tailLines", "sinceSeconds", "sinceTime", "limitBytes"];
    let encoded: Vec<String> = passed.iter().filter_map(|k| query.get(*k).map(|v| format!("{k}={}", percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)))).collect();
    let path = format!("/containerLogs/{namespace}/{name}/{container}?{}", encoded.join("&"));
    kubelets.get(registry, node, &path).await
}

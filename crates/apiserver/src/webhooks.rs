//! Calling admission webhooks: HTTPS POSTs to a `clientConfig` URL, or to
//! a Service's first ready endpoint (verified as `<name>.<namespace>.svc`,
//! as upstream's service resolver does), trusting only the `caBundle`.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, Method, StatusCode};
use base64::Engine;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::registry::Registry;

/// Where to connect, and the name the server's certificate must have.
struct Target {
    host: String,
    port: u16,
    path: String,
    server_name: String,
    url: String,
}

async fn resolve(registry: &Registry, config: &Value) -> Result<Target, String> {
    if let Some(url) = config["url"].as_str() {
        let uri: axum::http::Uri = url.parse().map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("{url:?}: webhooks are called over https only"));
        }
        let host = uri.host().ok_or("the URL has no host")?.trim_matches(['[', ']']).to_string();
        let path = uri.path_and_query().map_or("/".to_string(), |p| p.to_string());
        return Ok(Target { server_name: host.clone(), port: uri.port_u16().unwrap_or(443), host, path, url: url.to_string() });
    }
    let service = &config["service"];
    let (ns, name) = (service["namespace"].as_str().unwrap_or_default(), service["name"].as_str().unwrap_or_default());
    let port = service["port"].as_u64().unwrap_or(443);
    let path = service["path"].as_str().unwrap_or("/").to_string();
    let find = |plural| skiff_api::resources::find("", "v1", plural).expect("core kinds are served");
    let svc = registry.get(find("services"), Some(ns), name).await.map_err(|e| e.message)?;
    let spec_port = svc["spec"]["ports"].as_array().into_iter().flatten().find(|p| p["port"].as_u64() == Some(port)).cloned().ok_or(format!("service {ns}/{name} has no port {port}"))?;
    let endpoints = registry.get(find("endpoints"), Some(ns), name).await.map_err(|e| e.message)?;
    let subset = endpoints["subsets"].as_array().and_then(|s| s.first()).cloned().ok_or(format!("service {ns}/{name} has no ready endpoints"))?;
    let ip = subset["addresses"][0]["ip"].as_str().ok_or(format!("service {ns}/{name} has no ready endpoints"))?.to_string();
    let target_port = match &spec_port["targetPort"] {
        Value::Number(n) => n.as_u64(),
        Value::String(named) => subset["ports"].as_array().into_iter().flatten().find(|p| p["name"] == named.as_str()).and_then(|p| p["port"].as_u64()),
        _ => Some(port),
    }
    .ok_or(format!("service {ns}/{name}: no endpoint port for {port}"))?;
    let server_name = format!("{name}.{ns}.svc");
    let url = format!("https://{server_name}:{port}{path}");
    Ok(Target { host: ip, port: target_port as u16, path, server_name, url })
}

fn tls(config: &Value) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(bundle) = config["caBundle"].as_str() {
        let pem = base64::engine::general_purpose::STANDARD.decode(bundle).map_err(|e| format!("caBundle is not base64: {e}"))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.map_err(|e| format!("caBundle: {e}"))?).map_err(|e| format!("caBundle: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

pub async fn call(registry: &Registry, config: &Value, body: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, String> {
    let target = resolve(registry, config).await?;
    let connector = tls(config)?;
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port)).await.map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from(target.server_name.clone()).map_err(|e| e.to_string())?;
        let stream = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = hyper::Request::builder()
            .method(Method::POST)
            .uri(format!("{}{}timeout={}s", target.path, if target.path.contains('?') { "&" } else { "?" }, timeout.as_secs()))
            .header(header::HOST, format!("{}:{}", target.server_name, target.port))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(axum::body::Body::from(body))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = axum::body::to_bytes(axum::body::Body::new(response.into_body()), crate::MAX_BODY).await.map_err(|e| e.to_string())?;
        if status != StatusCode::OK {
            return Err(format!("the server responded with {status}"));
        }
        Ok(bytes.to_vec())
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(format!("Post {:?}: {e}", target.url)),
        Err(_) => Err(format!("Post {:?}: context deadline exceeded", target.url)),
    }
}

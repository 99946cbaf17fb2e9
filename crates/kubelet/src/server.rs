//! The agent's own HTTPS endpoint, which the API server proxies to
//! (`kubectl logs`, `kubectl exec`, `nodes/{name}/proxy/stats/summary`): client certificates from the cluster CA only, and
//! only the API server's (`kube-apiserver-kubelet-client`) or a cluster
//! admin's (`system:masters`), since what it serves bypasses the API's
//! authorization.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::runtime::State as Run;
use crate::Kubelet;

/// The API server's identity when it calls agents.
pub const API_SERVER_USER: &str = "kube-apiserver-kubelet-client";

pub(crate) struct Server {
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    router: axum::Router,
}

fn tls_config(tls: &crate::Tls) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut tls.client_ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let certs = rustls_pemfile::certs(&mut tls.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut tls.key_pem.as_bytes())?.context("no private key in the agent's serving key")?;
    Ok(rustls::ServerConfig::builder_with_provider(provider).with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?.with_client_cert_verifier(verifier).with_single_cert(certs, key)?)
}

impl Server {
    pub async fn bind(kubelet: Arc<Kubelet>) -> Result<Server> {
        let tls = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&kubelet.config.tls)?));
        let listener = tokio::net::TcpListener::bind((kubelet.config.address, kubelet.config.port)).await.with_context(|| format!("binding the agent's port {}", kubelet.config.port))?;
        let router = axum::Router::new().route("/healthz", get(|| async { "ok" })).route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
            .route("/exec/{namespace}/{pod}/{container}", get(crate::exec::exec).post(crate::exec::exec))
            .route("/attach/{namespace}/{pod}/{container}", get(crate::exec::attach).post(crate::exec::attach))
            .route("/portForward/{namespace}/{pod}", get(crate::portforward::port_forward).post(crate::portforward::port_forward))
            .route("/logs", get(|| async { host_logs(String::new(), true).await }))
            .route("/logs/", get(|| async { host_logs(String::new(), false).await }))
            .route("/logs/{*path}", get(|Path(path): Path<String>| async move { host_logs(path, false).await }))
            .route("/stats/summary", get(|State(k): State<Arc<Kubelet>>| async move { axum::Json(k.summary().await) }))
            .route("/metrics", get(|State(k): State<Arc<Kubelet>>| async move { openmetrics(k.own_metrics().await) }))
            .route("/metrics/resource", get(|State(k): State<Arc<Kubelet>>| async move { openmetrics(crate::metrics::resource(&k.readings().await)) }))
            .route("/metrics/cadvisor", get(|State(k): State<Arc<Kubelet>>| async move { openmetrics(crate::metrics::cadvisor(&k.readings().await)) }))
            .merge(if kubelet.peers.is_some() { crate::peers::routes() } else { axum::Router::new() })
            .with_state(kubelet);
        Ok(Server { listener, tls, router })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub async fn run(&self) {
        loop {
            let Ok((tcp, peer)) = self.listener.accept().await else { continue };
            let (tls, router) = (self.tls.clone(), self.router.clone());
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(tcp).await else { return };
                let user = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|leaf| skiff_auth::UserInfo::from_certificate(leaf));
                let allowed = user.as_ref().is_some_and(|u| u.name == API_SERVER_USER || u.groups.iter().any(|g| g == "system:masters"));
                // Other nodes may read the images this one serves (the embedded registry), nothing else.
                let node = user.is_some_and(|u| u.groups.iter().any(|g| g == "system:nodes"));
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let router = router.clone();
                    async move {
                        if !(allowed || node && req.uri().path().starts_with("/v2/")) {
                            return Ok::<_, std::convert::Infallible>((StatusCode::FORBIDDEN, "Forbidden").into_response());
                        }
                        Ok(tower::ServiceExt::oneshot(router, req.map(axum::body::Body::new)).await.unwrap_or_else(|e| match e {}))
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await {
                    tracing::debug!(%peer, "agent connection ended: {e}");
                }
            });
        }
    }
}

fn openmetrics(text: String) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

/// `GET /containerLogs/{namespace}/{pod}/{container}`, with the query of
/// upstream's PodLogOptions.
async fn container_logs(State(kubelet): State<Arc<Kubelet>>, Path((namespace, pod, container)): Path<(String, String, String)>, Query(query): Query<HashMap<String, String>>) -> Response {
    let flag = |k: &str| query.get(k).is_some_and(|v| v == "true" || v == "1");
    let number = |k: &str| query.get(k).and_then(|v| v.parse::<i64>().ok());
    let since = query
        .get("sinceTime")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&chrono::Utc)))
        .or_else(|| number("sinceSeconds").map(|s| chrono::Utc::now() - chrono::TimeDelta::seconds(s)));
    let options = crate::logs::Options {
        follow: flag("follow"),
        tail_lines: number("tailLines").map(|n| n.max(0) as usize),
        since,
        timestamps: flag("timestamps"),
        limit_bytes: number("limitBytes").map(|n| n.max(0) as usize),
    };
    let mut runs: Vec<_> = kubelet.runtime.list(None).await.unwrap_or_default().into_iter().filter(|c| c.meta.pod_namespace == namespace && c.meta.pod_name == pod && c.meta.container == container).collect();
    runs.sort_by_key(|c| c.meta.attempt);
    let previous = flag("previous");
    let chosen = if previous { runs.len().checked_sub(2).map(|i| runs[i].clone()) } else { runs.last().cloned() };
    let Some(run) = chosen else {
        let message = if previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!("container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating")
        };
        return (StatusCode::BAD_REQUEST, message).into_response();
    };
    let id = run.id.clone();
    let runtime = kubelet.runtime.clone();
    let running = matches!(run.state, Run::Running { .. });
    let still_running = move || running && matches!(runtime.state(&id), Some(Run::Running { .. }));
    let body = axum::body::Body::from_stream(crate::logs::stream(run.meta.log_path.clone(), options, still_running));
    ([(axum::http::header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// What the agent serves at `/logs/`: the node's logs, as upstream's
/// kubelet serves them (Go's `http.FileServer` on `/var/log/`).
const HOST_LOG_DIR: &str = "/var/log";

/// `GET /logs/{path}`: a file under `/var/log`, or a directory's listing
/// as Go's file server writes it; `/logs` itself redirects to `/logs/`.
async fn host_logs(path: String, bare: bool) -> Response {
    if bare {
        return (StatusCode::MOVED_PERMANENTLY, [(axum::http::header::LOCATION, "/logs/")]).into_response();
    }
    let trailing = path.is_empty() || path.ends_with('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    if segments.contains(&"..") {
        return go_error(StatusCode::BAD_REQUEST, "invalid URL path");
    }
    let full = segments.iter().fold(std::path::PathBuf::from(HOST_LOG_DIR), |p, s| p.join(s));
    let meta = match tokio::fs::metadata(&full).await {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return go_error(StatusCode::FORBIDDEN, "403 Forbidden"),
        Err(_) => return go_error(StatusCode::NOT_FOUND, "404 page not found"),
    };
    let last = segments.last().copied().unwrap_or_default();
    if meta.is_dir() {
        if !trailing {
            return (StatusCode::MOVED_PERMANENTLY, [(axum::http::header::LOCATION, format!("{last}/"))]).into_response();
        }
        let Ok(mut entries) = tokio::fs::read_dir(&full).await else { return go_error(StatusCode::INTERNAL_SERVER_ERROR, "Error reading directory") };
        let mut names = Vec::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            let mut name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
                name.push('/');
            }
            names.push(name);
        }
        names.sort();
        return ([(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")], directory_listing(&names)).into_response();
    }
    if trailing {
        return (StatusCode::MOVED_PERMANENTLY, [(axum::http::header::LOCATION, format!("../{last}"))]).into_response();
    }
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = match tokio::fs::File::open(&full).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return go_error(StatusCode::FORBIDDEN, "403 Forbidden"),
        Err(_) => return go_error(StatusCode::NOT_FOUND, "404 page not found"),
    };
    let mut head = vec![0u8; 512];
    let n = file.read(&mut head).await.unwrap_or(0);
    head.truncate(n);
    if file.seek(std::io::SeekFrom::Start(0)).await.is_err() {
        return go_error(StatusCode::INTERNAL_SERVER_ERROR, "500 Internal Server Error");
    }
    let headers = [
        (axum::http::header::CONTENT_TYPE, content_type(last, &head).to_string()),
        (axum::http::header::CONTENT_LENGTH, meta.len().to_string()),
        (axum::http::header::ACCEPT_RANGES, "bytes".to_string()),
    ];
    // At most the length given: a log still being written grows meanwhile.
    let body = futures::stream::unfold((file.take(meta.len()), vec![0u8; 64 * 1024]), |(mut file, mut buf)| async move {
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => Some((Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(&buf[..n])), (file, buf))),
            Err(e) => Some((Err(e), (file, buf))),
        }
    });
    (headers, axum::body::Body::from_stream(body)).into_response()
}

/// Go's `http.Error`: the text and a newline, as plain text.
fn go_error(code: StatusCode, text: &str) -> Response {
    (code, [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8"), (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")], format!("{text}\n")).into_response()
}

/// Go's file server's directory listing (`dirList`).
fn directory_listing(names: &[String]) -> String {
    let mut out = String::from("<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n");
    for name in names {
        // As url.URL{Path: name}.String() writes a relative path.
        let mut href = percent_encoding::utf8_percent_encode(name, PATH_SEGMENT).to_string();
        if href.split('/').next().is_some_and(|first| first.contains(':')) {
            href = format!("./{href}");
        }
        let shown = name.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&#34;").replace('\'', "&#39;");
        out.push_str(&format!("<a href=\"{href}\">{shown}</a>\n"));
    }
    out.push_str("</pre>\n");
    out
}

/// What Go's URL path escaping escapes.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'#').add(b'%').add(b'<').add(b'>').add(b'?').add(b'`').add(b'{').add(b'}');

/// The Content-Type Go's file server gives a file: by extension, else by
/// its first bytes (text, gzip, or bytes).
fn content_type(name: &str, head: &[u8]) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).as_deref() {
        Some("html" | "htm") => return "text/html; charset=utf-8",
        Some("json") => return "application/json",
        Some("xml") => return "text/xml; charset=utf-8",
        Some("css") => return "text/css; charset=utf-8",
        Some("js" | "mjs") => return "text/javascript; charset=utf-8",
        _ => {}
    }
    if head.starts_with(&[0x1f, 0x8b, 0x08]) {
        return "application/x-gzip";
    }
    let binary = head.iter().any(|b| matches!(b, 0x00..=0x08 | 0x0b | 0x0e..=0x1a | 0x1c..=0x1f));
    if binary {
        "application/octet-stream"
    } else {
        "text/plain; charset=utf-8"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_listings_are_written_as_go_writes_them() {
        let names = ["apt/".to_string(), "a b.log".to_string(), "x:y".to_string(), "<odd>".to_string()];
        assert_eq!(
            directory_listing(&names),
            "<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n<a href=\"apt/\">apt/</a>\n<a href=\"a%20b.log\">a b.log</a>\n<a href=\"./x:y\">x:y</a>\n<a href=\"%3Codd%3E\">&lt;odd&gt;</a>\n</pre>\n"
        );
        assert_eq!(content_type("syslog", b"Jan 1 host: started\n"), "text/plain; charset=utf-8");
        assert_eq!(content_type("wtmp", b"\x07\x00\x00"), "application/octet-stream");
        assert_eq!(content_type("dpkg.log.2.gz", b"\x1f\x8b\x08\x00"), "application/x-gzip");
    }
}

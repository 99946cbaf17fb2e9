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
            .route("/stats/summary", get(|State(k): State<Arc<Kubelet>>| async move { axum::Json(k.summary().await) }))
            .route("/metrics", get(|State(k): State<Arc<Kubelet>>| async move { openmetrics(k.own_metrics().await) }))
            .route("/metrics/resource", get(|State(k): State<Arc<Kubelet>>| async move { openmetrics(crate::metrics::resource(&k.readings().await)) }))
            .route("/metrics/cadvisor", get(|State(k): State<Arc<Kubelet>>| async move { openmetrics(crate::metrics::cadvisor(&k.readings().await)) }))
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
                let allowed = user.is_some_and(|u| u.name == API_SERVER_USER || u.groups.iter().any(|g| g == "system:masters"));
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let router = router.clone();
                    async move {
                        if !allowed {
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

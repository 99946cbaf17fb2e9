//! What a running server offers the servers that join it, beside the
//! Kubernetes API on the same port (k3s's supervisor): the cluster CA,
//! unauthenticated, for the joiner to check against its token's hash; the
//! sealed bootstrap data; and, with embedded etcd, adding a member. All but
//! the CA need the cluster token, as the basic-auth user `server`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use base64::Engine;

use crate::bootstrap::JoinInfo;

pub struct Supervisor {
    pub ca_pem: String,
    pub secret: String,
    pub backend: Arc<dyn skiff_store::Backend>,
    pub datastore_endpoint: Option<String>,
    pub embedded_etcd: bool,
}

pub fn router(supervisor: Supervisor) -> axum::Router {
    axum::Router::new()
        .route("/cacerts", get(|State(s): State<Arc<Supervisor>>| async move { s.ca_pem.clone() }))
        .route("/v1-skiff/server-bootstrap", get(bootstrap))
        .route("/v1-skiff/etcd-members", post(add_member))
        .with_state(Arc::new(supervisor))
}

impl Supervisor {
    /// Whether the request carries the cluster token as `server:<secret>`;
    /// compared as digests, so the time taken tells nothing of the secret.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .unwrap_or_default();
        let wanted = format!("server:{}", self.secret);
        crate::bootstrap::sha256_hex(&given) == crate::bootstrap::sha256_hex(wanted.as_bytes())
    }
}

fn refused() -> Response {
    (StatusCode::UNAUTHORIZED, "the cluster token is needed, as user \"server\"\n").into_response()
}

fn failed(e: anyhow::Error) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response()
}

async fn bootstrap(State(s): State<Arc<Supervisor>>, headers: HeaderMap) -> Response {
    if !s.authorized(&headers) {
        return refused();
    }
    match crate::bootstrap::read(s.backend.as_ref()).await {
        Ok(Some(bootstrap)) => Json(JoinInfo { bootstrap, datastore_endpoint: s.datastore_endpoint.clone(), embedded_etcd: s.embedded_etcd }).into_response(),
        Ok(None) => failed(anyhow::anyhow!("this server has no bootstrap data yet")),
        Err(e) => failed(e),
    }
}

#[derive(serde::Deserialize)]
struct NewMember {
    name: String,
    #[serde(rename = "peerURL")]
    peer_url: String,
}

async fn add_member(State(s): State<Arc<Supervisor>>, headers: HeaderMap, Json(member): Json<NewMember>) -> Response {
    if !s.authorized(&headers) {
        return refused();
    }
    if !s.embedded_etcd {
        return (StatusCode::CONFLICT, "this cluster's datastore is not embedded etcd\n").into_response();
    }
    match crate::embedded_etcd::add_member(&member.name, &member.peer_url).await {
        Ok(initial) => Json(serde_json::json!({"initialCluster": initial})).into_response(),
        Err(e) => failed(e),
    }
}

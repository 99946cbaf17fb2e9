//! The embedded registry (k3s's, after Spegel): with `--embedded-registry`
//! every node serves the images it holds, read-only, over the OCI
//! distribution API on its agent port (TLS with the cluster's
//! certificates; nodes present their client certificates), and pulls from
//! a node that has an image before going to the registry. What a node
//! holds it already advertises in its Node's `status.images`; a pull looks
//! there for nodes that name the image, with its digest. Every manifest and
//! blob is checked against its digest, so a peer cannot serve another image.
//!
//! Repository names carry their registry as their first component
//! (`/v2/docker.io/library/busybox/manifests/sha256:…`), so one node serves
//! images from every registry.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Node;
use oci_client::manifest::OciDescriptor;
use oci_client::Reference;

use crate::images::Source;
use crate::Kubelet;

/// A node that says it holds the image, and its manifest's digest.
#[derive(Debug, Clone)]
pub struct Offer {
    pub node: String,
    pub address: std::net::SocketAddr,
    pub digest: String,
}

/// How this node reaches the others' registries.
pub struct Peers {
    api: kube::Client,
    node_name: String,
    tls: tokio_rustls::TlsConnector,
}

impl Peers {
    /// `identity` is this node's client certificate, `ca_pem` the cluster CA
    /// the peers' serving certificates are checked against.
    pub fn new(api: kube::Client, node_name: &str, ca_pem: &str, identity: &skiff_auth::pki::CertPair) -> Result<Peers> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let chain = rustls_pemfile::certs(&mut identity.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pemfile::private_key(&mut identity.key_pem.as_bytes())?.context("no private key in the node's client key")?;
        let config = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_root_certificates(roots).with_client_auth_cert(chain, key)?;
        Ok(Peers { api, node_name: node_name.to_string(), tls: tokio_rustls::TlsConnector::from(Arc::new(config)) })
    }

    /// Ready nodes other than this one whose `status.images` name the
    /// reference (by tag, or by digest when it has one).
    pub async fn offers(&self, wanted: &Reference) -> Vec<Offer> {
        let nodes: kube::Api<Node> = kube::Api::all(self.api.clone());
        let nodes = match nodes.list(&Default::default()).await {
            Ok(nodes) => nodes.items,
            Err(e) => {
                tracing::debug!("listing nodes for the embedded registry: {e}");
                return Vec::new();
            }
        };
        let whole = wanted.whole();
        let repository = format!("{}/{}", wanted.registry(), wanted.repository());
        let mut offers = Vec::new();
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let Some(status) = node.status.filter(|_| name != self.node_name) else { continue };
            let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
            let address = status.addresses.iter().flatten().find(|a| a.type_ == "InternalIP").and_then(|a| a.address.parse().ok());
            let port = status.daemon_endpoints.as_ref().and_then(|d| d.kubelet_endpoint.as_ref()).map(|e| e.port);
            let (Some(address), Some(port), true) = (address, port, ready) else { continue };
            for image in status.images.iter().flatten() {
                let names = image.names.clone().unwrap_or_default();
                // The entry's `repo@sha256:…` for this repository is its manifest digest.
                let Some(digest) = names.iter().filter_map(|n| n.strip_prefix(&format!("{repository}@"))).next() else { continue };
                let named = match wanted.digest() {
                    Some(wanted) => wanted == digest,
                    None => names.contains(&whole),
                };
                if named {
                    offers.push(Offer { node: name.clone(), address: std::net::SocketAddr::new(address, port as u16), digest: digest.to_string() });
                }
            }
        }
        offers
    }

    /// A GET to a peer over TLS with this node's certificate.
    async fn get(&self, offer: &Offer, path: &str) -> Result<hyper::Response<hyper::body::Incoming>> {
        let tcp = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::TcpStream::connect(offer.address)).await.context("connecting")??;
        let name = rustls::pki_types::ServerName::IpAddress(offer.address.ip().into());
        let tls = self.tls.connect(name, tcp).await.context("TLS with the peer")?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        let request = hyper::Request::get(path).header(header::HOST, offer.address.to_string()).body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let response = sender.send_request(request).await?;
        if !response.status().is_success() {
            bail!("{path}: {}", response.status());
        }
        Ok(response)
    }
}

/// A peer that holds the image.
pub(crate) struct PeerSource<'a> {
    pub peers: &'a Peers,
    pub offer: &'a Offer,
    /// `registry/repository`.
    pub name: String,
}

#[async_trait::async_trait]
impl Source for PeerSource<'_> {
    async fn manifest(&self) -> Result<(Vec<u8>, String)> {
        use http_body_util::BodyExt;
        let response = self.peers.get(self.offer, &format!("/v2/{}/manifests/{}", self.name, self.offer.digest)).await?;
        let raw = response.into_body().collect().await?.to_bytes().to_vec();
        Ok((raw, self.offer.digest.clone()))
    }

    async fn blob(&self, descriptor: &OciDescriptor, to: &Path) -> Result<()> {
        use http_body_util::BodyExt;
        use sha2::Digest;
        use tokio::io::AsyncWriteExt;
        let mut body = self.peers.get(self.offer, &format!("/v2/{}/blobs/{}", self.name, descriptor.digest)).await?.into_body();
        // Buffered: each write to a tokio file is a trip to a blocking thread.
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(to).await?);
        let mut hasher = sha2::Sha256::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                hasher.update(&data);
                file.write_all(&data).await?;
            }
        }
        file.flush().await?;
        let got = format!("sha256:{}", hasher.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>());
        if got != descriptor.digest {
            let _ = tokio::fs::remove_file(to).await;
            bail!("the peer served {got} for blob {}: refused", descriptor.digest);
        }
        Ok(())
    }
}

/// The distribution API's routes on the agent's port, read-only.
pub fn routes() -> axum::Router<Arc<Kubelet>> {
    axum::Router::new()
        .route("/v2/", axum::routing::get(|| async { axum::Json(serde_json::json!({})) }))
        .route("/v2/{*path}", axum::routing::get(serve).head(serve))
}

async fn serve(State(kubelet): State<Arc<Kubelet>>, UrlPath(path): UrlPath<String>) -> Response {
    let images = &kubelet.images;
    if let Some((name, reference)) = path.rsplit_once("/manifests/") {
        // By digest, or by a tag of an image this node holds.
        let digest = match reference.starts_with("sha256:") {
            true => Some(reference.to_string()),
            false => images.get(&format!("{name}:{reference}")).map(|i| i.digest),
        };
        return match digest.and_then(|d| Some((images.manifest(&d)?, d))) {
            Some((raw, digest)) => {
                let media_type = serde_json::from_slice::<serde_json::Value>(&raw).ok().and_then(|m| m["mediaType"].as_str().map(String::from)).unwrap_or_else(|| oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.into());
                ([(header::CONTENT_TYPE, media_type), ("docker-content-digest".parse().expect("a header name"), digest)], raw).into_response()
            }
            None => unknown("MANIFEST_UNKNOWN", "manifest unknown"),
        };
    }
    if let Some((_, digest)) = path.rsplit_once("/blobs/") {
        return match images.blob_path(digest) {
            Some(file) => match tokio::fs::File::open(&file).await {
                Ok(file) => {
                    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 256 << 10));
                    ([(header::CONTENT_TYPE, "application/octet-stream"), ("docker-content-digest".parse().expect("a header name"), digest)], body).into_response()
                }
                Err(_) => unknown("BLOB_UNKNOWN", "blob unknown"),
            },
            None => unknown("BLOB_UNKNOWN", "blob unknown"),
        };
    }
    unknown("NAME_UNKNOWN", "not a manifest or blob path")
}

/// The distribution API's error body.
fn unknown(code: &str, message: &str) -> Response {
    (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"errors": [{"code": code, "message": message}]}))).into_response()
}


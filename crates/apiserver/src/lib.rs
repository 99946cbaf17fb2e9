//! The Kubernetes REST API over HTTPS, on the store.
//!
//! Request path: TLS (rustls; a client certificate signed by the cluster CA
//! authenticates its CN as user and O as groups) → routing by path
//! (`route`) → the verb (`handler`) → the generic registry and the kind's
//! strategy (`registry`, `strategy`) → the store.

mod components;
mod crds;
mod discovery;
mod fields;
mod handler;
mod managed;
mod metrics;
mod namespaces;
mod openapi;
mod patch;
mod registry;
mod route;
mod scale;
mod services;
pub mod status;
mod strategy;
mod subresources;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use skiff_auth::pki::CertPair;
use skiff_store::Store;
use tokio::net::TcpListener;

pub use handler::MAX_BODY;
use registry::Registry;

/// Who sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

pub struct Config {
    pub bind: SocketAddr,
    pub serving: CertPair,
    /// Client certificates signed by this CA authenticate.
    pub client_ca_pem: String,
    pub store: Store,
    /// Service ClusterIPs come from this IPv4 network (address, prefix
    /// length); its first address is the `kubernetes` Service's.
    pub service_cidr: (std::net::Ipv4Addr, u8),
    /// Where the `kubernetes` Service's endpoints point.
    pub advertise: std::net::IpAddr,
    /// Requests served at once, reads and writes; beyond them, 429.
    pub max_requests_inflight: usize,
    pub max_mutating_requests_inflight: usize,
}

/// A bound server; `run` serves until the process ends.
pub struct Server {
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    api: Arc<handler::Api>,
}

impl Server {
    pub async fn bind(config: Config) -> Result<Server> {
        let tls = tls_config(&config)?;
        let (network, prefix) = config.service_cidr;
        let registry = Registry {
            store: config.store.clone(),
            services: Arc::new(services::Allocator::new(config.store.clone(), network, prefix)),
        };
        // Every kind's objects are cached from their first list on.
        for def in skiff_api::resources::all() {
            registry.store.cache(&def.key_prefix());
        }
        bootstrap(&registry, &config).await?;
        tokio::spawn(namespaces::resume(registry.clone()));
        crds::sync(&registry).await;
        tokio::spawn(crds::follow(registry.clone()));
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("listening on {}", config.bind))?;
        let api = Arc::new(handler::Api {
            registry,
            metrics: metrics::Metrics::new(),
            read_slots: tokio::sync::Semaphore::new(config.max_requests_inflight),
            write_slots: tokio::sync::Semaphore::new(config.max_mutating_requests_inflight),
        });
        tokio::spawn(count_objects(Arc::downgrade(&api)));
        Ok(Server {
            listener,
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            api,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub async fn run(self) -> Result<()> {
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    continue;
                }
            };
            let (tls, api) = (self.tls.clone(), self.api.clone());
            tokio::spawn(async move {
                let stream = match tls.accept(tcp).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                };
                let user = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| user_of(c));
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (api, user) = (api.clone(), user.clone());
                    async move { Ok::<_, std::convert::Infallible>(api.handle(user, req.map(axum::body::Body::new)).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            });
        }
    }
}

/// Keeps `apiserver_storage_objects` current, as upstream does, every 30 s.
async fn count_objects(api: std::sync::Weak<handler::Api>) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(30));
    loop {
        ticks.tick().await;
        let Some(api) = api.upgrade() else { return };
        for def in skiff_api::resources::all().into_iter().filter(|d| d.verbs == skiff_api::Verbs::All && d.is_storage_version()) {
            let opts = skiff_store::ListOptions { limit: Some(1), ..Default::default() };
            if let Ok(page) = api.registry.store.list(&def.key_prefix(), &opts).await {
                let count = page.items.len() as i64 + page.remaining.unwrap_or(0);
                let resource = if def.group.is_empty() { def.plural.to_string() } else { format!("{}.{}", def.plural, def.group) };
                api.metrics.storage_objects.get_or_create(&metrics::ResourceLabels { resource }).set(count);
            }
        }
    }
}

/// The user a verified client certificate names.
fn user_of(cert: &rustls::pki_types::CertificateDer<'_>) -> Option<User> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    groups.push("system:authenticated".into());
    Some(User { name, groups })
}

fn tls_config(config: &Config) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut config.client_ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    // Certificates are optional at the TLS layer so that unauthenticated
    // requests get upstream's 401 Status rather than a handshake failure.
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let certs = rustls_pemfile::certs(&mut config.serving.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut config.serving.key_pem.as_bytes())?.context("no private key in the serving key PEM")?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

/// What every cluster has from the start: the four system namespaces and
/// the `kubernetes` Service in `default` with its Endpoints and
/// EndpointSlice (kept pointing at this server, as upstream reconciles them).
async fn bootstrap(registry: &Registry, config: &Config) -> Result<()> {
    let find = |plural| skiff_api::resources::find("", "v1", plural).expect("core resources are served");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        create_if_absent(registry, find("namespaces"), None, obj).await?;
    }
    let (network, prefix) = config.service_cidr;
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    let first = std::net::Ipv4Addr::from((u32::from(network) & mask) + 1).to_string();
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": first,
            "clusterIPs": [first],
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": config.bind.port()}],
            "sessionAffinity": "None",
        },
    });
    create_if_absent(registry, find("services"), Some("default"), service).await?;
    let (ip, port) = (config.advertise.to_string(), config.bind.port());
    let address_type = if config.advertise.is_ipv4() { "IPv4" } else { "IPv6" };
    let ports = json!([{"name": "https", "port": port, "protocol": "TCP"}]);
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip}], "ports": ports}],
    });
    reconcile(registry, find("endpoints"), endpoints).await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": address_type,
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
        "ports": ports,
    });
    let slices = skiff_api::resources::find("discovery.k8s.io", "v1", "endpointslices").expect("endpointslices are served");
    reconcile(registry, slices, slice).await
}

/// Creates `obj`, or brings an existing one's content in line with it.
async fn reconcile(registry: &Registry, def: &skiff_api::ResourceDef, obj: serde_json::Value) -> Result<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    create_if_absent(registry, def, Some("default"), obj.clone()).await?;
    let manager = crate::managed::Manager::internal("kube-apiserver");
    registry
        .guaranteed_update(def, Some("default"), &name, None, false, |current| {
            let mut wanted = obj.clone();
            wanted["metadata"] = current["metadata"].clone();
            let mut updated = crate::registry::merge_update(def, current, wanted, None)?;
            crate::managed::record_update(def, Some(current), &mut updated, &manager);
            Ok(updated)
        })
        .await
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("updating {} {name}: {}", def.kind, e.message))
}

async fn create_if_absent(
    registry: &Registry,
    def: &skiff_api::ResourceDef,
    ns: Option<&str>,
    obj: serde_json::Value,
) -> Result<()> {
    match registry.create(def, ns, obj, false, &crate::managed::Manager::internal("kube-apiserver")).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(anyhow::anyhow!("creating {} at start: {}", def.kind, e.message)),
    }
}

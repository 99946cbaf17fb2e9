//! The Kubernetes REST API over HTTPS, on the store.
//!
//! Request path: TLS (rustls) → authentication (client certificate, token,
//! basic auth or anonymous; `skiff_auth`) → impersonation and
//! authorization (`authorization`) → routing by path (`route`) → the verb
//! (`handler`) → the generic registry and the kind's strategy (`registry`,
//! `strategy`) → the store.

mod admission;
pub mod audit;
mod authorization;
mod components;
mod crds;
pub mod encryption;
mod discovery;
mod endpoints;
mod fields;
mod handler;
mod kubelets;
mod managed;
mod metrics;
mod namespaces;
mod openapi;
mod openapi_proto;
mod patch;
mod proxy;
mod registry;
mod resource_metrics;
mod custom_metrics;
mod aggregator;
mod event_ttl;
mod service_discovery;
mod state_metrics;
mod reviews;
mod route;
mod scale;
mod services;
pub mod status;
mod tokens;
mod strategy;
mod subresources;
mod watch;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use skiff_auth::pki::CertPair;
use skiff_auth::PeerCertificate;
use skiff_store::Store;
use tokio::net::TcpListener;

pub use handler::MAX_BODY;

/// The name of the API server's front-proxy client certificate.
pub const PROXY_CLIENT: &str = "front-proxy-client";
use registry::Registry;

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
    /// Who a request is from, besides client certificates.
    pub authenticator: skiff_auth::Authenticator,
    /// `--authorization-mode`, in order.
    pub authorization_modes: Vec<String>,
    /// The ABAC policy, when ABAC is a mode.
    pub abac_policy: Option<skiff_auth::abac::Policy>,
    /// The admission plugins that are on.
    pub admission: skiff_admission::Chain,
    /// Where audit events go, and which (`--audit-policy-file`).
    pub audit: Option<audit::Audit>,
    /// Signs ServiceAccount tokens; its issuer is their `iss` and audience.
    pub service_account_issuer: Option<skiff_auth::serviceaccount::Issuer>,
    /// The API server's certificate for calling node agents (`kubectl logs`).
    pub kubelet_client: Option<CertPair>,
    /// Its certificate as the front proxy of aggregated APIs (upstream's
    /// `--proxy-client-cert-file`); extension servers trust it by its
    /// name, `front-proxy-client`, and the cluster CA.
    pub proxy_client: Option<CertPair>,
    /// How often metrics.k8s.io reads the nodes (metrics-server's `--metric-resolution`).
    pub metric_resolution: std::time::Duration,
    /// The metric families of the components this process also runs
    /// (controller manager, scheduler), served on the same `/metrics`.
    pub component_metrics: Vec<fn() -> String>,
    /// Events are deleted this long after their last write (`--event-ttl`).
    pub event_ttl: std::time::Duration,
    /// custom.metrics.k8s.io and external.metrics.k8s.io from this
    /// Prometheus (`--prometheus-url`), named by prometheus-adapter rules
    /// (YAML; its default rules when none are given).
    pub prometheus: Option<(String, Option<String>)>,
    /// Whether the built-in storage classes are made at start.
    pub local_storage: bool,
    /// Serves `/cacerts` and `/v1-skiff/…` on the same port, outside the
    /// Kubernetes API, as k3s's supervisor does: how other servers join.
    pub supervisor: Option<axum::Router>,
    /// Whether this server's address is kept in the `kubernetes` Service's
    /// endpoints with a lease, as upstream's `--endpoint-reconciler-type=lease`
    /// (else `none`: the endpoints are left as they are).
    pub endpoint_leases: bool,
}

/// A bound server; `run` serves until the process ends.
pub struct Server {
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    /// Verifies client certificates after the handshake (see `tls_config`).
    clients: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    api: Arc<handler::Api>,
    supervisor: Option<axum::Router>,
}

impl Server {
    pub async fn bind(mut config: Config) -> Result<Server> {
        let (tls, clients) = tls_config(&config)?;
        let (network, prefix) = config.service_cidr;
        let registry = Registry::new(config.store.clone(), services::Allocator::new(config.store.clone(), network, prefix));
        // Every kind's objects are cached from their first list on.
        for def in skiff_api::resources::all() {
            registry.store.cache(&def.key_prefix());
        }
        bootstrap(&registry, &config).await?;
        if config.endpoint_leases {
            tokio::spawn(endpoints::keep(registry.clone(), config.advertise, config.bind.port()));
        }
        let security = security(&registry, &mut config).await?;
        tokio::spawn(namespaces::resume(registry.clone()));
        crds::sync(&registry).await;
        tokio::spawn(crds::follow(registry.clone()));
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("listening on {}", config.bind))?;
        let api = Arc::new(handler::Api {
            registry,
            security,
            admission: config.admission,
            audit: config.audit,
            metrics: metrics::Metrics::new(),
            component_metrics: config.component_metrics,
            read_slots: tokio::sync::Semaphore::new(config.max_requests_inflight),
            write_slots: tokio::sync::Semaphore::new(config.max_mutating_requests_inflight),
            kubelets: kubelets::Kubelets::new(&config.client_ca_pem, config.kubelet_client.as_ref().map(|c| (c.cert_pem.as_str(), c.key_pem.as_str())))?,
            resource_metrics: Default::default(),
            aggregator: aggregator::Aggregator::new(config.proxy_client.clone()),
            custom_metrics: match &config.prometheus {
                Some((url, rules)) => Some(custom_metrics::CustomMetrics::new(url, rules.as_deref()).map_err(anyhow::Error::msg)?),
                None => None,
            },
        });
        tokio::spawn(count_objects(Arc::downgrade(&api)));
        tokio::spawn(resource_metrics::ResourceMetrics::scrape(Arc::downgrade(&api), config.metric_resolution));
        tokio::spawn(event_ttl::expire(Arc::downgrade(&api), config.event_ttl));
        tokio::spawn(aggregator::Aggregator::keep_available(Arc::downgrade(&api)));
        Ok(Server {
            listener,
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            clients,
            api,
            supervisor: config.supervisor,
        })
    }

    /// A way in for components of this process acting as `user`.
    pub fn in_process(&self, user: skiff_auth::UserInfo) -> InProcess {
        InProcess { api: self.api.clone(), user: PeerCertificate::Valid(user.with_authenticated_group(), None) }
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
            let (tls, api, clients, supervisor) = (self.tls.clone(), self.api.clone(), self.clients.clone(), self.supervisor.clone());
            tokio::spawn(async move {
                let stream = match tls.accept(tcp).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                };
                let user = match stream.get_ref().1.peer_certificates() {
                    Some([leaf, intermediates @ ..]) => match clients.verify_client_cert(leaf, intermediates, rustls::pki_types::UnixTime::now()) {
                        Ok(_) => skiff_auth::UserInfo::from_certificate(leaf).map_or(PeerCertificate::Invalid, |user| PeerCertificate::Valid(user, skiff_auth::UserInfo::certificate_expiry(leaf))),
                        Err(e) => {
                            tracing::debug!(%peer, "client certificate refused: {e}");
                            PeerCertificate::Invalid
                        }
                    },
                    _ => PeerCertificate::None,
                };
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (api, user, supervisor) = (api.clone(), user.clone(), supervisor.clone());
                    async move {
                        let req = req.map(axum::body::Body::new);
                        let path = req.uri().path();
                        if let Some(supervisor) = supervisor.filter(|_| path == "/cacerts" || path.starts_with("/v1-skiff/")) {
                            return tower::ServiceExt::oneshot(supervisor, req).await;
                        }
                        Ok::<_, std::convert::Infallible>(api.handle(user, Some(peer.ip()), req).await)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            });
        }
    }
}

/// Components running inside the server (scheduler, controller manager,
/// node agent) reach the API through this: each request goes straight to
/// the handler as an authenticated user, without TLS or TCP in between,
/// then through authorization, admission and the rest as any client's
/// would. They stay API clients; only the transport differs.
#[derive(Clone)]
pub struct InProcess {
    api: Arc<handler::Api>,
    user: PeerCertificate,
}

impl InProcess {
    pub async fn send<B>(&self, req: axum::http::Request<B>) -> axum::response::Response
    where
        B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Audited as coming from this host, as upstream's loopback clients are.
        let peer = Some(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        self.api.clone().handle(self.user.clone(), peer, req.map(axum::body::Body::new)).await
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

/// The authorizer `--authorization-mode` asks for. With RBAC, upstream's
/// default roles and bindings are written when absent and the rule index
/// follows the store.
async fn security(registry: &Registry, config: &mut Config) -> Result<authorization::Security> {
    use skiff_auth::authz::{Authorizer, Mode};
    let mut modes = Vec::new();
    let mut rbac = None;
    for mode in &config.authorization_modes {
        modes.push(match mode.as_str() {
            "AlwaysAllow" => Mode::AlwaysAllow,
            "AlwaysDeny" => Mode::AlwaysDeny,
            "Node" => Mode::Node,
            "ABAC" => Mode::Abac(config.abac_policy.take().context("authorization mode ABAC needs --authorization-policy-file")?),
            "RBAC" => {
                let role = |plural| skiff_api::resources::find(authorization::RBAC_GROUP, "v1", plural).expect("RBAC kinds are served");
                for obj in skiff_auth::rbac::bootstrap_policy() {
                    let plural = if obj["kind"] == "ClusterRole" { "clusterroles" } else { "clusterrolebindings" };
                    reconcile_default_policy(registry, role(plural), obj).await?;
                }
                let index = Arc::new(authorization::RbacIndex::default());
                index.refresh(registry).await;
                tokio::spawn(index.clone().follow(registry.clone()));
                rbac = Some(index.clone());
                Mode::Rbac(index.authorizer.clone())
            }
            other => anyhow::bail!("unknown authorization mode {other:?}"),
        });
    }
    let node_graph = config.authorization_modes.iter().any(|m| m == "Node");
    let jwks_uri = format!("https://{}/openid/v1/jwks", SocketAddr::new(config.advertise, config.bind.port()));
    Ok(authorization::Security {
        authenticator: std::mem::take(&mut config.authenticator),
        authorizer: Authorizer::new(modes),
        rbac,
        tokens: config.service_account_issuer.take().context("a ServiceAccount token issuer")?,
        jwks_uri,
        node_graph,
        ca_pem: config.client_ca_pem.clone(),
    })
}

fn tls_config(config: &Config) -> Result<(rustls::ServerConfig, Arc<dyn ClientCertVerifier>)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut config.client_ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let certs = rustls_pemfile::certs(&mut config.serving.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut config.serving.key_pem.as_bytes())?.context("no private key in the serving key PEM")?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(Arc::new(ChainCheckedLater(clients.clone())))
        .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((tls, clients))
}

/// Asks for a client certificate and checks that the client holds its key,
/// but leaves its chain to the request (`Server::run`): a certificate from
/// another CA, or an expired one, gets upstream's 401 Status rather than a
/// failed handshake, and a valid token can still authenticate.
#[derive(Debug)]
struct ChainCheckedLater(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for ChainCheckedLater {
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn verify_client_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: UnixTime) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &rustls::DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &rustls::DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// What every cluster has from the start: the four system namespaces and
/// the `kubernetes` Service in `default` with its Endpoints and
/// EndpointSlice (listing this server and the others alive).
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
    // What extension API servers read to trust the aggregator's requests
    // (upstream's `extension-apiserver-authentication`).
    let headers = |h: &[&str]| serde_json::to_string(h).expect("JSON serializes");
    let authentication = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {
            "client-ca-file": config.client_ca_pem,
            "requestheader-client-ca-file": config.client_ca_pem,
            "requestheader-allowed-names": headers(&[PROXY_CLIENT]),
            "requestheader-username-headers": headers(&["X-Remote-User"]),
            "requestheader-uid-headers": headers(&["X-Remote-Uid"]),
            "requestheader-group-headers": headers(&["X-Remote-Group"]),
            "requestheader-extra-headers-prefix": headers(&["X-Remote-Extra-"]),
        },
    });
    create_if_absent(registry, find("configmaps"), Some("kube-system"), authentication).await?;
    let priorities = skiff_api::resources::find("scheduling.k8s.io", "v1", "priorityclasses").expect("priorityclasses are served");
    for (name, value, description) in [
        ("system-node-critical", 2000001000, "Used for system critical pods that must not be moved from their current node."),
        ("system-cluster-critical", 2000000000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
    ] {
        let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value, "description": description});
        create_if_absent(registry, priorities, None, class).await?;
    }
    snapshot_kinds(registry).await?;
    if config.local_storage {
        storage_classes(registry).await?;
    }
    if config.endpoint_leases {
        // As upstream: the server serves whether or not its endpoints could be written.
        if let Err(e) = endpoints::renew(registry, config.advertise, config.bind.port()).await {
            tracing::warn!("the kubernetes Service's endpoints: {e:#}");
        }
    }
    Ok(())
}

/// The built-in storage, served by each node's `local.csi.skiff.io`
/// driver: `local-path` (the default class, a directory per volume) and
/// `local-disk` (a filesystem of exactly the size asked, that can grow);
/// and `subdir.csi.skiff.io`, for the classes an administrator makes of
/// a share. Made when absent, so an administrator's changes are kept.
async fn storage_classes(registry: &Registry) -> Result<()> {
    let drivers = skiff_api::resources::find("storage.k8s.io", "v1", "csidrivers").expect("csidrivers are served");
    // The local driver also makes inline volumes, told so with the pod's
    // details; its capacity is published per node, and the scheduler heeds it.
    for (name, modes, local) in [("local.csi.skiff.io", json!(["Persistent", "Ephemeral"]), true), ("subdir.csi.skiff.io", json!(["Persistent"]), false)] {
        let driver = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
            "metadata": {"name": name},
            "spec": {"attachRequired": false, "podInfoOnMount": local, "fsGroupPolicy": "File", "volumeLifecycleModes": modes, "storageCapacity": local, "requiresRepublish": false},
        });
        create_if_absent(registry, drivers, None, driver).await?;
    }
    let classes = skiff_api::resources::find("storage.k8s.io", "v1", "storageclasses").expect("storageclasses are served");
    let path = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "local.csi.skiff.io", "parameters": {"type": "path"},
        "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": false,
    });
    create_if_absent(registry, classes, None, path).await?;
    let disk = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local-disk"},
        "provisioner": "local.csi.skiff.io", "parameters": {"type": "disk", "csi.storage.k8s.io/fstype": "ext4"},
        "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true,
    });
    create_if_absent(registry, classes, None, disk).await?;
    // Snapshots of the local driver's volumes, the default for its claims.
    let snapshots = skiff_api::resources::find("snapshot.storage.k8s.io", "v1", "volumesnapshotclasses").context("the snapshot kinds are served")?;
    let snapshot_class = json!({
        "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
        "metadata": {"name": "local", "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
        "driver": "local.csi.skiff.io", "deletionPolicy": "Delete",
    });
    create_if_absent(registry, snapshots, None, snapshot_class).await
}

/// The snapshot.storage.k8s.io kinds, served as CustomResourceDefinitions
/// (as upstream clusters get them from external-snapshotter).
async fn snapshot_kinds(registry: &Registry) -> Result<()> {
    let crds: Vec<serde_json::Value> = serde_yaml::from_str(include_str!("snapshot-crds.yaml")).expect("the snapshot CRDs parse");
    let def = skiff_api::resources::find("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("CRDs are served");
    for crd in crds {
        create_if_absent(registry, def, None, crd).await?;
    }
    // Served before anything of theirs is made.
    crate::crds::sync(registry).await;
    Ok(())
}

/// Creates a default role or binding, or, when it is still marked
/// `autoupdate`, adds the rules or subjects it lacks (as upstream's
/// bootstrap reconciliation does, keeping what an administrator added).
async fn reconcile_default_policy(registry: &Registry, def: &skiff_api::ResourceDef, obj: serde_json::Value) -> Result<()> {
    create_if_absent(registry, def, None, obj.clone()).await?;
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let field = if def.kind == "ClusterRole" { "rules" } else { "subjects" };
    let manager = crate::managed::Manager::internal("kube-apiserver");
    registry
        .guaranteed_update(def, None, &name, None, false, |current| {
            let auto = current.pointer("/metadata/annotations/rbac.authorization.kubernetes.io~1autoupdate").and_then(|v| v.as_str()) != Some("false");
            let mut items = current[field].as_array().cloned().unwrap_or_default();
            let missing: Vec<_> = obj[field].as_array().into_iter().flatten().filter(|i| !items.contains(i)).cloned().collect();
            if !auto || missing.is_empty() {
                return Ok(current);
            }
            items.extend(missing);
            let mut updated = current.clone();
            updated[field] = serde_json::Value::Array(items);
            crate::managed::record_update(def, Some(&current), &mut updated, &manager);
            Ok(updated)
        })
        .await
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("reconciling {} {name}: {}", def.kind, e.message))
}

/// Creates `obj`, or brings an existing one's content in line with it.
pub(crate) async fn reconcile(registry: &Registry, def: &skiff_api::ResourceDef, obj: serde_json::Value) -> Result<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    create_if_absent(registry, def, Some("default"), obj.clone()).await?;
    let manager = crate::managed::Manager::internal("kube-apiserver");
    registry
        .guaranteed_update(def, Some("default"), &name, None, false, |current| {
            let mut wanted = obj.clone();
            wanted["metadata"] = current["metadata"].clone();
            let mut updated = crate::registry::merge_update(def, &current, wanted, None)?;
            crate::managed::record_update(def, Some(&current), &mut updated, &manager);
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

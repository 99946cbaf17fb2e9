//! The node agent (upstream's kubelet): registers its Node, renews its
//! Lease, and runs the pods bound to it as real containers through an
//! OCI runtime. An API client like every other component.

mod archive;
mod downward;
pub mod eviction;
mod host;
mod exec;
pub mod exec_shim;
#[doc(hidden)]
pub mod fuzzing;
pub mod images;
pub mod logs;
mod metrics;
mod node;
pub mod peers;
mod pods;
mod portforward;
pub mod probes;
pub mod registries;
pub mod resolv;
pub mod runtime;
pub mod sandbox;
pub mod seccomp;
mod service_env;
mod server;
pub mod shim;
pub mod spdy;
pub mod spec;
mod stats;
pub mod status;
pub mod volumes;

use std::net::IpAddr;
use std::path::PathBuf;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::FutureExt;
use kube::runtime::events::{Recorder, Reporter};

pub use node::KUBELET_VERSION;
pub use server::API_SERVER_USER;

#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    /// Images, containers and pod volumes (`/var/lib/skiff/agent`).
    pub data_dir: PathBuf,
    /// What does not outlive a reboot: runc's state, the pod sandboxes.
    pub run_dir: PathBuf,
    /// Container logs, `<ns>_<pod>_<uid>/<container>/<attempt>.log` (`/var/log/pods`).
    pub log_dir: PathBuf,
    /// The CNI plugins (`/usr/lib/cni`) and the bridge pods attach to.
    pub cni_bin_dir: PathBuf,
    pub bridge: String,
    /// The pods' MTU: the node's, less the pod network's overlay headers.
    pub pod_mtu: Option<u32>,
    /// Where pods' names resolve (`--cluster-dns`, `--cluster-domain`).
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// The node's InternalIP.
    pub address: IpAddr,
    /// The agent's HTTPS port (logs, exec, stats); 0 picks a free one.
    pub port: u16,
    /// The program run as `<shim> shim …` for each container.
    pub shim: PathBuf,
    /// The agent's serving certificate and key (PEM), and the CA whose
    /// client certificates it accepts (the API server's).
    pub tls: Tls,
    pub max_pods: u32,
    /// Container logs are rotated past this many bytes, keeping this many
    /// files (upstream's `containerLogMaxSize` and `containerLogMaxFiles`).
    pub container_log_max_size: u64,
    pub container_log_max_files: usize,
    /// Node-pressure eviction's hard thresholds, and image garbage collection.
    pub eviction_hard: eviction::Thresholds,
    pub image_gc: eviction::ImageGc,
    /// k3s's `registries.yaml` (`--private-registry`); read again when it changes.
    pub private_registry: PathBuf,
    /// This node's client certificate when the cluster runs the embedded
    /// registry: it pulls from other nodes with it and serves them its images.
    pub embedded_registry: Option<skiff_auth::pki::CertPair>,
    /// Told of each pod's address once its sandbox has one, and awaited
    /// before its first container starts (the node's NetworkPolicy).
    pub sandbox_ready: Option<SandboxHook>,
    /// More of the node's metrics for `/metrics` (AppSafe's flow
    /// observer's), in Prometheus' text format.
    pub more_metrics: Option<MoreMetrics>,
}

/// Metrics that other parts of the node keep, served with the agent's own.
#[derive(Clone)]
pub struct MoreMetrics(pub Arc<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for MoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MoreMetrics")
    }
}

/// What runs between a pod's sandbox and its containers.
#[derive(Clone)]
pub struct SandboxHook(pub Arc<dyn Fn(k8s_openapi::api::core::v1::Pod, IpAddr) -> futures::future::BoxFuture<'static, ()> + Send + Sync>);

impl std::fmt::Debug for SandboxHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SandboxHook")
    }
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_pem: String,
    pub key_pem: String,
    pub client_ca_pem: String,
}

/// Bytes a directory tree takes on disk (allocated blocks, as du counts
/// them), not following symlinks.
pub(crate) fn disk_usage(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    let own = meta.blocks() * 512;
    if !meta.is_dir() {
        return own;
    }
    own + std::fs::read_dir(path).into_iter().flatten().flatten().map(|e| disk_usage(&e.path())).sum::<u64>()
}

/// A mutex's contents, also after a panic caught while it was held (one
/// pod's sync): the agent goes on with what it holds.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a caught panic says.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".into(),
    }
}

/// Writes a file whole or not at all: a temporary sibling, then a rename.
pub(crate) fn write_file_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub struct Kubelet {
    client: kube::Client,
    config: Config,
    runtime: Arc<dyn runtime::ContainerRuntime>,
    images: images::ImageStore,
    sandboxes: sandbox::Sandboxes,
    volumes: volumes::Volumes,
    events: Recorder,
    port: AtomicU16,
    pod_cidr: tokio::sync::OnceCell<String>,
    allocatable: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    rates: stats::Rates,
    /// When the agent started, as the Summary API's node `startTime`.
    started: String,
    /// The pressure last observed, for the node's conditions and admission.
    pressed: std::sync::Mutex<eviction::Pressure>,
    /// Pods to evict, by UID, with the reason their status will give.
    evictions: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Panics caught while syncing a pod (`kubelet_pod_sync_panics_total`),
    /// and restarts of the agent's loops by loop
    /// (`kubelet_task_restarts_total{task}`).
    sync_panics: AtomicU64,
    restarts: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// The Services, for containers' environment.
    services: service_env::Services,
    registries: registries::Watched,
    /// Other nodes' images, with the embedded registry.
    peers: Option<peers::Peers>,
    /// Image pulls done and failed (`kubelet_runtime_operations_total`).
    pulls: Mutex<(u64, u64)>,
    timings: metrics::Timings,
}

/// A running agent; dropping it stops it (its containers keep running,
/// as a kubelet's do when it restarts).
pub struct Agent {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub port: u16,
    /// The CSI drivers registered on this node, and where plugins live.
    pub csi: skiff_csi::mounter::Mounter,
}

impl Agent {
    pub async fn wait(mut self) {
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

impl Kubelet {
    fn port(&self) -> u16 {
        self.port.load(Ordering::Relaxed)
    }

    /// Starts the agent: its HTTPS endpoint, its Node and Lease, and the
    /// pods bound to it.
    pub async fn start(client: kube::Client, config: Config) -> Result<Agent> {
        // The registry client (reqwest) takes the process's default provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let log_limits = (config.container_log_max_size, config.container_log_max_files);
        let runtime = runtime::Runc::new(&config.data_dir.join("containers"), &config.run_dir.join("runc"), &config.shim, log_limits)?;
        let network = sandbox::Network { bin_dir: config.cni_bin_dir.clone(), bridge: config.bridge.clone(), ipam_dir: config.data_dir.join("cni"), mtu: config.pod_mtu };
        let reporter = Reporter { controller: "kubelet".into(), instance: Some(config.node_name.clone()) };
        let (services, follow_services) = service_env::Services::follow(client.clone());
        let kubelet = Arc::new(Kubelet {
            events: Recorder::new(client.clone(), reporter),
            images: images::ImageStore::open(&config.data_dir.join("images"))?,
            sandboxes: sandbox::Sandboxes::new(&config.run_dir.join("pods"), network)?,
            volumes: volumes::Volumes::new(&config.data_dir, &config.node_name)?,
            runtime: Arc::new(runtime),
            port: AtomicU16::new(config.port),
            pod_cidr: Default::default(),
            allocatable: Default::default(),
            rates: Default::default(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            pressed: Default::default(),
            evictions: Default::default(),
            sync_panics: AtomicU64::new(0),
            restarts: Mutex::default(),
            services,
            registries: registries::Watched::open(&config.private_registry).context("--private-registry")?,
            peers: match &config.embedded_registry {
                Some(identity) => Some(peers::Peers::new(client.clone(), &config.node_name, &config.tls.client_ca_pem, identity)?),
                None => None,
            },
            pulls: Mutex::default(),
            timings: Default::default(),
            client,
            config,
        });
        *lock(&kubelet.pressed) = kubelet.pressure();
        // Archives left beside the image store are this node's to import at start.
        match kubelet.images.import_dir(kubelet.images.root()) {
            Ok(images) if !images.is_empty() => tracing::info!(count = images.len(), "imported the image archives in {}", kubelet.images.root().display()),
            Ok(_) => {}
            Err(e) => tracing::error!("{e:#}"),
        }
        std::fs::create_dir_all(&kubelet.config.log_dir).with_context(|| format!("creating {}", kubelet.config.log_dir.display()))?;
        let server = server::Server::bind(kubelet.clone()).await?;
        let port = server.port();
        kubelet.port.store(port, Ordering::Relaxed);
        kubelet.register().await?;
        // Each loop is started again if it ends or panics.
        let server = Arc::new(server);
        let k = kubelet.clone();
        // The watch retries by itself (back-off), so it is spawned once.
        let mut tasks = vec![tokio::spawn(follow_services)];
        let csi = kubelet.volumes.csi.clone();
        tasks.push(tokio::spawn(csi.registry.clone().watch(kubelet.client.clone(), kubelet.config.node_name.clone(), csi.paths.registry())));
        tasks.push(tokio::spawn(kubelet.clone().supervise("serve", move || {
            let server = server.clone();
            async move { server.run().await }
        })));
        tasks.push(tokio::spawn(kubelet.clone().supervise("heartbeat", move || {
            let k = k.clone();
            async move { k.heartbeat().await }
        })));
        let k = kubelet.clone();
        tasks.push(tokio::spawn(kubelet.clone().supervise("housekeeping", move || k.clone().housekeeping())));
        let k = kubelet.clone();
        tasks.push(tokio::spawn(kubelet.supervise("pods", move || pods::run(k.clone()))));
        Ok(Agent { tasks, port, csi })
    }

    /// Runs `start()` for ever, as upstream's `wait.Until` with
    /// `HandleCrash`: each time it ends or panics it is logged, counted and
    /// started again after a back-off (100 ms doubling to 30 s; from the
    /// start again after a minute without trouble).
    async fn supervise<F, Fut>(self: Arc<Self>, task: &'static str, mut start: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut delay = Duration::from_millis(100);
        loop {
            let began = tokio::time::Instant::now();
            let outcome = AssertUnwindSafe(start()).catch_unwind().await;
            if began.elapsed() >= Duration::from_secs(60) {
                delay = Duration::from_millis(100);
            }
            match outcome {
                Ok(()) => tracing::error!(task, "stopped; starting it again in {delay:?}"),
                Err(panic) => tracing::error!(task, "panicked: {}; starting it again in {delay:?}", panic_message(&*panic)),
            }
            *lock(&self.restarts).entry(task).or_default() += 1;
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
}

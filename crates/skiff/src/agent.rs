//! The node agent: its flags, its start inside `skiff server`, and
//! `skiff agent`, which joins a cluster from another host as upstream's
//! kubelet does with TLS bootstrap: a bootstrap token buys a client
//! certificate through a CertificateSigningRequest, and the node then asks
//! for its serving certificate as itself.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use skiff_auth::pki::{self, CertPair, Pki};
use skiff_net::ClusterNetwork;

/// Upstream's kubelet flags that Skiff takes, and where the pod network attaches.
#[derive(clap::Args, Clone)]
pub struct AgentFlags {
    /// This node's name; by default the host's name.
    #[arg(long)]
    node_name: Option<String>,
    /// This node's InternalIP; by default the address the API server advertises.
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// The agent's HTTPS port (logs, exec); 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// Runtime state that does not outlive a reboot: runc's, the pod sandboxes.
    #[arg(long, default_value = "/run/skiff/agent")]
    agent_run_dir: PathBuf,
    /// Container logs, as upstream lays them out.
    #[arg(long, default_value = "/var/log/pods")]
    pod_log_dir: PathBuf,
    /// Where the CNI plugins are (Debian's containernetworking-plugins).
    #[arg(long, default_value = "/usr/lib/cni")]
    cni_bin_dir: PathBuf,
    /// The bridge this node's pods attach to.
    #[arg(long, default_value = "skiff0")]
    cni_bridge: String,
    /// Where the built-in classes' volumes (`local-path`, `local-disk`) are
    /// made on this node; by default `<data-dir>/agent/local-volumes`.
    #[arg(long)]
    local_storage_dir: Option<PathBuf>,
    /// Pods this node takes at most.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// A container's log is rotated once it would grow past this.
    #[arg(long, default_value = "10Mi", value_parser = parse_bytes)]
    container_log_max_size: u64,
    /// The log files kept per container, the live one included.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..))]
    container_log_max_files: u16,
    /// Hard eviction thresholds (`memory.available<100Mi,nodefs.available<10%,…`);
    /// signals not named keep upstream's defaults.
    #[arg(long, default_value = "")]
    eviction_hard: skiff_kubelet::eviction::Thresholds,
    /// Unused images are collected when their disk is fuller than this (percent)...
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(0..=100))]
    image_gc_high_threshold: u8,
    /// ...down to this.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    image_gc_low_threshold: u8,
    /// Images used more recently than this are kept.
    #[arg(long, default_value = "2m", value_parser = crate::components::parse_duration)]
    image_minimum_gc_age: std::time::Duration,
    /// Registry mirrors, credentials and TLS, in k3s's `registries.yaml`
    /// format; read again whenever it changes.
    #[arg(long, default_value = "/etc/skiff/registries.yaml")]
    private_registry: PathBuf,
}

fn parse_bytes(text: &str) -> Result<u64, String> {
    skiff_quantity::value(text).and_then(|v| u64::try_from(v).ok()).filter(|v| *v > 0).ok_or_else(|| format!("{text:?} is not a size such as 10Mi"))
}

/// Starts the agent in this process, reaching the API through `client`.
pub async fn start_in_process(flags: AgentFlags, pki: Pki, data_dir: PathBuf, client: kube::Client, address: IpAddr, network: ClusterNetwork) -> Result<skiff_kubelet::Agent> {
    let node_name = flags.node_name()?;
    let address = flags.node_ip.unwrap_or(address);
    let serving = pki.serving("kubelet", &[node_name.clone(), "localhost".into()], &[address, IpAddr::from([127, 0, 0, 1])])?;
    let identity = pki.client(Some("kubelet-client"), &format!("system:node:{node_name}"), &["system:nodes"])?;
    start_node(&flags, client, network, node_name, &data_dir, address, Certificates { serving, identity, ca_pem: pki.ca_pem() }).await
}

/// The node's certificates: serving its port, and its client identity (for
/// other nodes' registries), and the cluster CA.
struct Certificates<'a> {
    serving: CertPair,
    identity: CertPair,
    ca_pem: &'a str,
}

/// The kubelet, then the node's network beside it: a network that cannot
/// be set up is reported and leaves the kubelet running.
async fn start_node(flags: &AgentFlags, client: kube::Client, network: ClusterNetwork, node_name: String, data_dir: &Path, address: IpAddr, certificates: Certificates<'_>) -> Result<skiff_kubelet::Agent> {
    let enforcer = std::sync::Arc::new(skiff_net::policy::Enforcer::default());
    let observer = std::sync::Arc::new(skiff_net::appsafe::Observer::default());
    let node = skiff_net::NodeConfig { name: node_name.clone(), address, run_dir: flags.agent_run_dir.join("net"), bridge: flags.cni_bridge.clone(), enforcer: enforcer.clone(), observer: observer.clone() };
    let pod_mtu = match network.backend {
        skiff_net::Backend::None => None,
        _ => skiff_net::pod_mtu(&network, &node).await.inspect_err(|e| tracing::error!("the pods' MTU: {e:#}")).ok(),
    };
    let mut config = flags.config(node_name.clone(), data_dir, address, certificates, &network, pod_mtu)?;
    // A pod that a policy selects is isolated before its first container runs.
    config.sandbox_ready = network.network_policy.then(|| {
        skiff_kubelet::SandboxHook(std::sync::Arc::new(move |pod, ip| {
            let enforcer = enforcer.clone();
            Box::pin(async move { enforcer.admit(&pod, ip).await })
        }))
    });
    // The agent's process, its service proxy and DNS, and AppSafe's observer.
    let observing = network.network_policy;
    config.more_metrics = Some(skiff_kubelet::MoreMetrics(std::sync::Arc::new(move || {
        let mut page = crate::process_metrics::render() + &skiff_net::metrics::render();
        if observing {
            page.push_str(&observer.metrics());
        }
        page
    })));
    let agent = skiff_kubelet::Kubelet::start(client.clone(), config).await?;
    // Skiff's own CSI drivers, found by the kubelet like any other, and
    // the provisioner and attacher for the drivers registered here.
    let local = flags.local_storage_dir.clone().unwrap_or_else(|| data_dir.join("agent/local-volumes"));
    skiff_csi::local::start(&agent.csi.paths, &node_name, &local).await.context("starting the local CSI driver")?;
    skiff_csi::subdir::start(&agent.csi.paths, &node_name).context("starting the subdir CSI driver")?;
    tokio::spawn(skiff_csi::provisioner::run(client.clone(), node_name.clone(), agent.csi.clone()));
    tokio::spawn(skiff_csi::attacher::run(client.clone(), node_name.clone(), agent.csi.registry.clone()));
    tokio::spawn(async move {
        match skiff_net::start(client, network, node).await {
            // Held for as long as the process runs.
            Ok(running) => {
                std::future::pending::<()>().await;
                drop(running)
            }
            Err(e) => tracing::error!("the node's network did not start: {e:#}"),
        }
    });
    Ok(agent)
}

impl AgentFlags {
    /// Refuses, before anything is done, what the agent could not run
    /// with: a registries file that does not parse.
    pub(crate) fn check(&self) -> Result<()> {
        skiff_kubelet::registries::Registries::load(&self.private_registry).context("--private-registry")?;
        Ok(())
    }

    pub(crate) fn node_name(&self) -> Result<String> {
        match &self.node_name {
            Some(name) => Ok(name.clone()),
            None => crate::server::hostname().context("the host has no usable name: give --node-name"),
        }
    }

    fn config(&self, node_name: String, data_dir: &Path, address: IpAddr, certificates: Certificates, network: &ClusterNetwork, pod_mtu: Option<u32>) -> Result<skiff_kubelet::Config> {
        let Certificates { serving, identity, ca_pem } = certificates;
        Ok(skiff_kubelet::Config {
            node_name,
            data_dir: data_dir.join("agent"),
            run_dir: self.agent_run_dir.clone(),
            log_dir: self.pod_log_dir.clone(),
            cni_bin_dir: self.cni_bin_dir.clone(),
            bridge: self.cni_bridge.clone(),
            pod_mtu,
            cluster_dns: vec![IpAddr::V4(network.cluster_dns)],
            cluster_domain: network.cluster_domain.clone(),
            address,
            port: self.kubelet_port,
            shim: std::env::current_exe().context("finding the skiff binary for the shim")?,
            tls: skiff_kubelet::Tls { cert_pem: serving.cert_pem, key_pem: serving.key_pem, client_ca_pem: ca_pem.to_string() },
            max_pods: self.max_pods,
            container_log_max_size: self.container_log_max_size,
            container_log_max_files: self.container_log_max_files.into(),
            eviction_hard: self.eviction_hard.clone(),
            image_gc: skiff_kubelet::eviction::ImageGc {
                high_percent: self.image_gc_high_threshold,
                low_percent: self.image_gc_low_threshold.min(self.image_gc_high_threshold),
                minimum_age: self.image_minimum_gc_age,
            },
            private_registry: self.private_registry.clone(),
            embedded_registry: network.embedded_registry.then_some(identity),
            sandbox_ready: None,
            more_metrics: None,
        })
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// The API server to join (`https://host:6443`).
    #[arg(long, required_unless_present = "cleanup")]
    server: Option<String>,
    /// A bootstrap token (`skiff token create`); needed only until the
    /// node holds its client certificate.
    #[arg(long, env = "SKIFF_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The cluster CA the server's certificate is checked against (the
    /// server's `<data-dir>/server/tls/ca.crt`).
    #[arg(long, required_unless_present = "cleanup")]
    ca_file: Option<PathBuf>,
    /// Remove every device, route and nftables rule the node's network
    /// made, then exit (pods on this host lose their network).
    #[arg(long)]
    cleanup: bool,
    /// The node's certificates, images, containers and pod volumes.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    #[command(flatten)]
    agent: AgentFlags,
}

/// Client certificates are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// `skiff agent`: joins the cluster at `--server` and runs its pods.
pub async fn run(args: Args) -> Result<()> {
    if args.cleanup {
        skiff_net::clean_up(&args.agent.cni_bridge, &args.agent.agent_run_dir.join("net")).await?;
        eprintln!("skiff agent: the node's network is removed");
        return Ok(());
    }
    args.agent.check()?;
    let (Some(server), Some(ca_file)) = (&args.server, &args.ca_file) else { bail!("--server and --ca-file are needed") };
    let ca_pem = std::fs::read_to_string(ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
    let node_name = args.agent.node_name()?;
    let address = match args.agent.node_ip {
        Some(ip) => ip,
        None => route_to(server).await?,
    };
    let dir = args.data_dir.join("agent/pki");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let user = format!("system:node:{node_name}");

    let identity = match pki::read_pair(&dir, "kubelet-client")? {
        Some(pair) if pki::current(&pair, RENEW_BEFORE, |_| true)? => pair,
        held => {
            // A node renews as itself; a new one pays with its token.
            let bootstrap = match (&held, &args.token) {
                (Some(pair), _) => crate::server::certificate_client(server, &ca_pem, &user, pair, "kubelet").await?,
                (None, Some(token)) => token_client(server, &ca_pem, token).await?,
                (None, None) => bail!("{} holds no client certificate yet: give --token", dir.display()),
            };
            let usages = ["digital signature", "key encipherment", "client auth"];
            let pair = request_certificate(&bootstrap, "kubernetes.io/kube-apiserver-client-kubelet", &user, &[], &usages).await?;
            pki::write_pair(&dir, "kubelet-client", &pair)?;
            pair
        }
    };
    // Every request from here on goes through the balancer, so the node
    // keeps its API when the server it started with goes away.
    let balancer = crate::balancer::Balancer::start(server_address(server).await?, Some(args.data_dir.join("agent/servers.json"))).await?;
    let client = crate::server::certificate_client(&balancer.url(), &ca_pem, &user, &identity, "kubelet").await?;
    tokio::spawn(balancer.clone().follow(client.clone()));
    let names = [node_name.clone(), "localhost".to_string()];
    let addresses = [address, IpAddr::from([127, 0, 0, 1])];
    let serving = match pki::read_pair(&dir, "kubelet-serving")? {
        Some(pair) if pki::current(&pair, RENEW_BEFORE, |cert| pki::same_sans(cert, &names, &addresses))? => pair,
        _ => {
            let usages = ["digital signature", "key encipherment", "server auth"];
            let sans: Vec<rcgen::SanType> = names.iter().map(|n| Ok(rcgen::SanType::DnsName(n.as_str().try_into()?))).chain(addresses.iter().map(|ip| Ok(rcgen::SanType::IpAddress(*ip)))).collect::<Result<_>>()?;
            let pair = request_certificate(&client, "kubernetes.io/kubelet-serving", &user, &sans, &usages).await?;
            pki::write_pair(&dir, "kubelet-serving", &pair)?;
            pair
        }
    };
    let network = ClusterNetwork::fetch(client.clone()).await?;
    let agent = start_node(&args.agent, client, network, node_name.clone(), &args.data_dir, address, Certificates { serving, identity, ca_pem: &ca_pem }).await?;
    eprintln!("skiff agent: node {node_name} ({address}) joined {server}");
    agent.wait().await;
    Ok(())
}

/// The address and port of the server at `url`.
async fn server_address(url: &str) -> Result<std::net::SocketAddr> {
    let parsed: http::Uri = url.parse().with_context(|| format!("--server {url:?}"))?;
    let host = parsed.host().context("--server names no host")?.trim_start_matches('[').trim_end_matches(']');
    let port = parsed.port_u16().unwrap_or(443);
    let found = tokio::net::lookup_host((host, port)).await?.next();
    found.context("--server resolves to no address")
}

/// The local address this host reaches the server from, as the node's
/// InternalIP.
async fn route_to(server: &str) -> Result<IpAddr> {
    let target = server_address(server).await?;
    let socket = std::net::UdpSocket::bind(if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    socket.connect(target)?;
    Ok(socket.local_addr()?.ip())
}

async fn token_client(server: &str, ca_pem: &str, token: &str) -> Result<kube::Client> {
    use base64::Engine;
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: {server:?}, certificate-authority-data: {ca}}}}}]\nusers: [{{name: u, user: {{token: {token:?}}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n",
        ca = base64::engine::general_purpose::STANDARD.encode(ca_pem),
    );
    let config = kube::Config::from_custom_kubeconfig(kube::config::Kubeconfig::from_yaml(&kubeconfig)?, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// A new key and a certificate for it from `signer`: a
/// CertificateSigningRequest, waited on until it is issued or refused.
async fn request_certificate(client: &kube::Client, signer: &str, user: &str, sans: &[rcgen::SanType], usages: &[&str]) -> Result<CertPair> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, user);
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:nodes");
    params.subject_alt_names = sans.to_vec();
    let request = params.serialize_request(&key)?.pem()?;
    let csr: CertificateSigningRequest = serde_json::from_value(serde_json::json!({
        "metadata": {"generateName": "node-csr-"},
        "spec": {"request": k8s_openapi::ByteString(request.into_bytes()), "signerName": signer, "usages": usages},
    }))?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let created = api.create(&PostParams::default(), &csr).await.with_context(|| format!("asking {signer} for a certificate"))?;
    let name = created.metadata.name.unwrap_or_default();
    eprintln!("skiff agent: waiting for CertificateSigningRequest {name} ({signer})");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while tokio::time::Instant::now() < deadline {
        let status = api.get(&name).await?.status.unwrap_or_default();
        if let Some(refused) = status.conditions.iter().flatten().find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True") {
            bail!("CertificateSigningRequest {name} was {}: {}", refused.type_.to_lowercase(), refused.message.as_deref().unwrap_or_default());
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            return Ok(CertPair { cert_pem: String::from_utf8(cert.0)?, key_pem: key.serialize_pem() });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("CertificateSigningRequest {name} was not approved and issued within 5 minutes")
}

//! `skiff server`: the control plane on this host.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use skiff_auth::pki::{self, Pki};
use skiff_auth::UserInfo;
use skiff_store::{Store, StoreConfig};

use crate::{bootstrap, embedded_etcd};

#[derive(clap::Args)]
pub struct Args {
    /// Where certificates and (with SQLite) the data live.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// The API server's HTTPS port.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// The address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// The address the `kubernetes` Service's endpoints point at; by
    /// default the bind address, or the host's primary address.
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// How often old revisions are compacted away, as upstream's flag
    /// (`5m0s`, `30s`, `0` for never). Continue tokens and watches stay
    /// valid for at least one interval.
    #[arg(long, default_value = "5m0s", value_parser = crate::components::parse_duration)]
    etcd_compaction_interval: std::time::Duration,
    /// Reads served at once; beyond them clients get 429 and retry.
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Writes served at once; beyond them clients get 429 and retry.
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// How often metrics.k8s.io (`kubectl top`) reads the nodes, as
    /// metrics-server's flag of the same name.
    #[arg(long, default_value = "15s", value_parser = crate::components::parse_duration)]
    metric_resolution: std::time::Duration,
    /// How long an Event is kept after its last write, as upstream's flag.
    #[arg(long, default_value = "1h", value_parser = crate::components::parse_duration)]
    event_ttl: std::time::Duration,
    /// A Prometheus (`http://host:9090`) to serve custom.metrics.k8s.io and
    /// external.metrics.k8s.io from, for the autoscaler.
    #[arg(long)]
    prometheus_url: Option<String>,
    /// prometheus-adapter's rules file naming those metrics (its default
    /// rules when absent).
    #[arg(long, requires = "prometheus_url")]
    metrics_rules: Option<PathBuf>,
    /// Where to write the admin kubeconfig.
    #[arg(long, default_value = "/etc/skiff/skiff.yaml")]
    write_kubeconfig: PathBuf,
    /// etcd endpoints (`http://HOST:2379[,…]`); SQLite in the data dir when absent.
    #[arg(long, conflicts_with = "cluster_init")]
    datastore_endpoint: Option<String>,
    /// The cluster token: every server of one cluster is started with the
    /// same (k3s's flag). A first server without one makes one and keeps it
    /// in `<data-dir>/server/token`, in the form other servers join with.
    #[arg(long, env = "SKIFF_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The cluster token, from a file.
    #[arg(long, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Join the cluster of the server at this URL (`https://HOST:6443`):
    /// its bootstrap data, its datastore, and with embedded etcd a member.
    #[arg(long)]
    server: Option<String>,
    /// Start a new cluster on embedded etcd, which other servers join
    /// with `--server` (k3s's flag).
    #[arg(long, conflicts_with = "server")]
    cluster_init: bool,
    /// More names and addresses for the serving certificate (a load
    /// balancer's), comma-separated.
    #[arg(long, value_delimiter = ',')]
    tls_san: Vec<String>,
    /// `lease`: every server keeps its address in the `kubernetes`
    /// Service's endpoints while it lives; `none`: they are left alone.
    #[arg(long, default_value = "lease", value_parser = ["lease", "none"])]
    endpoint_reconciler_type: String,
    /// Encrypt Secrets at rest with a key made for the cluster (k3s's
    /// flag), unless `--encryption-provider-config` gives the configuration.
    #[arg(long)]
    secrets_encryption: bool,
    /// Service ClusterIPs come from here; the first is the `kubernetes` Service's.
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: String,
    /// Pod IPs come from here, one slice per node.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// Run only the control plane, no node agent on this host.
    #[arg(long)]
    disable_agent: bool,
    /// Do not run the scheduler (another one is run instead).
    #[arg(long)]
    disable_scheduler: bool,
    /// The in-process scheduler's profiles (comma-separated `schedulerName`s),
    /// each with upstream's default plugins.
    #[arg(long, value_delimiter = ',', default_value = "default-scheduler")]
    scheduler_name: Vec<String>,
    /// The in-process scheduler's KubeSchedulerConfiguration (as
    /// kube-scheduler's `--config`; its clientConnection is not read).
    #[arg(long, conflicts_with = "scheduler_name")]
    scheduler_config: Option<PathBuf>,
    /// Do not run the controller manager.
    #[arg(long)]
    disable_controller_manager: bool,
    #[command(flatten)]
    controllers: crate::components::ControllerFlags,
    #[command(flatten)]
    agent: crate::agent::AgentFlags,
    #[command(flatten)]
    network: crate::network::NetworkFlags,
    #[command(flatten)]
    security: SecurityFlags,
    /// Audit policy (audit.k8s.io/v1 Policy); with `--audit-log-path`.
    #[arg(long, requires = "audit_log_path")]
    audit_policy_file: Option<PathBuf>,
    /// Where audit events go as JSON lines (`-` for stdout).
    #[arg(long, requires = "audit_policy_file")]
    audit_log_path: Option<PathBuf>,
    /// Encrypt resources at rest with upstream's EncryptionConfiguration
    /// (aesgcm, aescbc, secretbox, identity).
    #[arg(long)]
    encryption_provider_config: Option<PathBuf>,
}

/// The `iss` of ServiceAccount tokens, and the audience the API server
/// accepts (upstream's `--service-account-issuer` as kubeadm and k3s set it).
const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Upstream's authentication and authorization flags.
#[derive(clap::Args)]
struct SecurityFlags {
    /// Authorizers asked in order: AlwaysAllow, AlwaysDeny, ABAC, RBAC, Node.
    #[arg(long, default_value = "Node,RBAC")]
    authorization_mode: String,
    /// The ABAC policy (JSON lines), for `--authorization-mode=ABAC`.
    #[arg(long)]
    authorization_policy_file: Option<PathBuf>,
    /// Static bearer tokens: CSV lines `token,user,uid,"group1,group2"`.
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Passwords for basic auth: CSV lines `password,user,uid,"group1,group2"`.
    /// Off unless given; upstream removed it for sending passwords on every request.
    #[arg(long)]
    basic_auth_file: Option<PathBuf>,
    /// Requests without credentials act as `system:anonymous`, which RBAC
    /// lets read only the health and version endpoints.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    anonymous_auth: bool,
    /// Admission plugins to turn on besides the defaults (comma-separated).
    #[arg(long, value_delimiter = ',')]
    enable_admission_plugins: Vec<String>,
    /// Default admission plugins to turn off (comma-separated).
    #[arg(long, value_delimiter = ',')]
    disable_admission_plugins: Vec<String>,
}

/// The bind address when it is one, else the address the host's default
/// route leaves from: connecting a UDP socket picks it and sends nothing.
fn node_address(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    primary_address().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The API server's address in the `kubernetes` Service's endpoints: as
/// upstream's ResolveBindAddress, a loopback bind address is not one (an
/// endpoint may not be loopback), the host's primary address is.
fn advertised(bind: IpAddr) -> IpAddr {
    if bind.is_loopback() {
        return primary_address().unwrap_or(bind);
    }
    node_address(bind)
}

fn primary_address() -> Option<IpAddr> {
    let primary = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect("192.0.2.1:9").and_then(|_| s.local_addr()));
    primary.ok().map(|a| a.ip())
}

/// An IPv4 CIDR as (network address, prefix length).
pub(crate) fn parse_cidr(cidr: &str) -> Result<(Ipv4Addr, u8)> {
    let (net, bits) = cidr.split_once('/').with_context(|| format!("{cidr:?} is not a CIDR"))?;
    let net: Ipv4Addr = net.parse().with_context(|| format!("{cidr:?} is not an IPv4 CIDR"))?;
    let bits: u8 = bits.parse().with_context(|| format!("{cidr:?} has no prefix length"))?;
    if !(1..=30).contains(&bits) {
        bail!("{cidr:?}: the prefix length must be between 1 and 30");
    }
    let mask = u32::MAX << (32 - bits as u32);
    Ok((Ipv4Addr::from(u32::from(net) & mask), bits))
}

/// The first host address of an IPv4 CIDR.
fn first_address(cidr: &str) -> Result<Ipv4Addr> {
    let (net, _) = parse_cidr(cidr)?;
    Ok(Ipv4Addr::from(u32::from(net) + 1))
}

pub async fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let service_ip = IpAddr::V4(first_address(&args.service_cidr).context("--service-cidr")?);
    first_address(&args.cluster_cidr).context("--cluster-cidr")?;
    let network = args.network.cluster(&args.cluster_cidr, &args.service_cidr)?;
    let scheduler_config = crate::components::scheduler_config(args.scheduler_config.as_deref(), &args.scheduler_name).context("--scheduler-config")?;
    if !args.disable_agent {
        args.agent.check()?;
    }

    let address = args.advertise_address.unwrap_or_else(|| advertised(args.bind_address));
    let OneCluster { token, pki, secrets, backend, endpoint, embedded } = one_cluster(&args, address).await?;

    let host = hostname();
    let mut dns = vec!["localhost".to_string(), "kubernetes".into(), "kubernetes.default".into(), "kubernetes.default.svc".into()];
    dns.extend(host.clone());
    let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST), service_ip, address, node_address(args.bind_address)];
    if !args.bind_address.is_unspecified() {
        ips.push(args.bind_address);
    }
    for san in &args.tls_san {
        match san.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns.push(san.clone()),
        }
    }
    ips.sort();
    ips.dedup();
    dns.dedup();
    let serving = pki.serving("serving", &dns, &ips)?;
    let admin = pki.client(Some("admin"), "skiff-admin", &["system:masters"])?;

    let store = match &secrets.encryption_config {
        Some(config) => {
            let encryption = skiff_apiserver::encryption::Encryption::parse(config).context("the encryption configuration")?;
            Store::transformed(backend.clone(), std::sync::Arc::new(encryption))
        }
        None => Store::with_backend(backend.clone(), Default::default()),
    };
    if !args.etcd_compaction_interval.is_zero() {
        store.spawn_compactor(args.etcd_compaction_interval);
    }
    let supervisor = crate::supervisor::router(crate::supervisor::Supervisor {
        ca_pem: pki.ca_pem().to_string(),
        secret: token.secret.clone(),
        backend,
        datastore_endpoint: endpoint.clone().filter(|_| !embedded),
        embedded_etcd: embedded,
    });

    let sec = &args.security;
    let modes = skiff_auth::authz::Authorizer::parse_modes(&sec.authorization_mode).context("--authorization-mode")?;
    let abac_policy = match (&sec.authorization_policy_file, modes.iter().any(|m| m == "ABAC")) {
        (Some(path), true) => Some(skiff_auth::abac::Policy::load(path)?),
        (None, true) => bail!("--authorization-mode=ABAC needs --authorization-policy-file"),
        (_, false) => None,
    };
    if sec.basic_auth_file.is_some() {
        tracing::warn!("basic authentication is enabled (--basic-auth-file): passwords travel with every request");
    }
    let authenticator = skiff_auth::Authenticator::new(sec.token_auth_file.as_deref(), sec.basic_auth_file.as_deref(), sec.anonymous_auth)?;
    let server = skiff_apiserver::Server::bind(skiff_apiserver::Config {
        bind: SocketAddr::new(args.bind_address, args.https_listen_port),
        serving,
        client_ca_pem: pki.ca_pem().to_string(),
        store,
        service_cidr: parse_cidr(&args.service_cidr)?,
        advertise: address,
        max_requests_inflight: args.max_requests_inflight,
        max_mutating_requests_inflight: args.max_mutating_requests_inflight,
        authenticator,
        authorization_modes: modes,
        abac_policy,
        audit: match (&args.audit_policy_file, &args.audit_log_path) {
            (Some(policy), Some(log)) => Some(skiff_apiserver::audit::Audit::open(policy, log)?),
            _ => None,
        },
        service_account_issuer: Some(skiff_auth::serviceaccount::Issuer::new(SERVICE_ACCOUNT_ISSUER, &pki.service_account_key()?)?),
        admission: skiff_admission::Chain::new(&sec.enable_admission_plugins, &sec.disable_admission_plugins).context("admission plugins")?,
        kubelet_client: Some(pki.client(Some("apiserver-kubelet-client"), skiff_kubelet::API_SERVER_USER, &[])?),
        proxy_client: Some(pki.client(Some("front-proxy-client"), skiff_apiserver::PROXY_CLIENT, &[])?),
        metric_resolution: args.metric_resolution,
        event_ttl: args.event_ttl,
        prometheus: match &args.prometheus_url {
            Some(url) => Some((url.clone(), args.metrics_rules.as_ref().map(|f| std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))).transpose()?)),
            None => None,
        },
        local_storage: args.network.enabled(crate::network::Component::LocalStorage),
        component_metrics: [
            Some(crate::process_metrics::render as fn() -> String),
            (!args.disable_controller_manager).then_some(skiff_controllers::metrics::render as fn() -> String),
            (!args.disable_scheduler).then_some(skiff_scheduler::metrics::render as fn() -> String),
        ]
        .into_iter()
        .flatten()
        .collect(),
        supervisor: Some(supervisor),
        endpoint_leases: args.endpoint_reconciler_type == "lease",
    })
    .await?;
    let addr = server.local_addr();
    let url_host = if args.bind_address.is_unspecified() { "127.0.0.1".to_string() } else { args.bind_address.to_string() };
    let url = format!("https://{url_host}:{}", addr.port());
    if let Some(dir) = args.write_kubeconfig.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    pki::write_private(&args.write_kubeconfig, &pki::kubeconfig(&url, pki.ca_pem(), "skiff-admin", &admin))?;
    // The agents, this host's and others', learn the network from here.
    let client = in_process_client(&server, UserInfo::named("skiff-server", &["system:masters"]), "skiff-server")?;
    let publishing = network.clone();
    tokio::spawn(async move {
        if let Err(e) = publishing.publish(client).await {
            tracing::error!("the cluster's network settings: {e:#}");
        }
    });
    if embedded {
        let client = in_process_client(&server, UserInfo::named("skiff-server", &["system:masters"]), "skiff-server")?;
        tokio::spawn(embedded_etcd::remove_members_of_deleted_nodes(client));
    }
    if !args.disable_scheduler {
        // In-process, but an API client like any other, with its own identity.
        let client = in_process_client(&server, UserInfo::named("system:kube-scheduler", &[]), "kube-scheduler")?;
        tokio::spawn(crate::components::scheduler(client, scheduler_config));
    }
    if !args.disable_controller_manager {
        let client = in_process_client(&server, UserInfo::named("system:kube-controller-manager", &[]), "kube-controller-manager")?;
        let mut options = args.controllers.options(&args.cluster_cidr, pki.ca_pem().to_string(), Some(pki.clone()))?;
        options.service_lb = network.service_lb;
        tokio::spawn(crate::components::controller_manager(client, options));
    }
    if !args.disable_agent {
        // As a kubelet would be: the node's own user, `system:node:<name>` in `system:nodes`.
        let node = args.agent.node_name()?;
        let client = in_process_client(&server, UserInfo::named(&format!("system:node:{node}"), &["system:nodes"]), "kubelet")?;
        let address = args.advertise_address.unwrap_or_else(|| node_address(args.bind_address));
        let agent = crate::agent::start_in_process(args.agent.clone(), pki.clone(), args.data_dir.clone(), client, address, network);
        tokio::spawn(async move {
            match agent.await {
                Ok(agent) => agent.wait().await,
                Err(e) => tracing::error!("the node agent did not start: {e:#}"),
            }
        });
    }
    eprintln!(
        "skiff server ready at {url} in {} ms; kubeconfig: {}",
        started.elapsed().as_millis(),
        args.write_kubeconfig.display()
    );
    server.run().await
}

/// What makes this server one of its cluster's.
struct OneCluster {
    token: bootstrap::Token,
    pki: Pki,
    secrets: bootstrap::Secrets,
    backend: std::sync::Arc<dyn skiff_store::Backend>,
    /// The datastore's endpoint (SQLite when none).
    endpoint: Option<String>,
    embedded: bool,
}

/// Joins the cluster (through `--server`) or starts it, opens its
/// datastore (starting embedded etcd when it is the cluster's), and takes
/// the cluster's secrets from it, or stores this server's as the first.
async fn one_cluster(args: &Args, address: IpAddr) -> Result<OneCluster> {
    let tls_dir = args.data_dir.join("server/tls");
    let token_file = args.data_dir.join("server/token");
    let token = bootstrap::resolve(args.token.as_deref(), args.token_file.as_deref(), &token_file)?;
    // A server that joined once restarts from what it learned then (its
    // etcd member, or the external datastore's endpoint), without the
    // server it joined through.
    let learned_file = args.data_dir.join("server/datastore-endpoint");
    let learned = std::fs::read_to_string(&learned_file).ok().map(|e| e.trim().to_string());
    let joined = match &args.server {
        Some(url) if !embedded_etcd::exists(&args.data_dir) && learned.is_none() => Some(bootstrap::join(url, &token).await?),
        _ => None,
    };
    let embedded = args.cluster_init || embedded_etcd::exists(&args.data_dir) || joined.as_ref().is_some_and(|j| j.info.embedded_etcd);
    let endpoint = match (&args.datastore_endpoint, &joined) {
        (Some(endpoint), _) => Some(endpoint.clone()),
        _ if embedded => Some(embedded_etcd::CLIENT_URL.to_string()),
        (None, Some(joined)) => joined.info.datastore_endpoint.clone(),
        (None, None) => learned.filter(|_| args.server.is_some()),
    };
    if embedded {
        // The member's peer certificates come from the cluster's CA: the
        // one fetched when joining, else this server's own (a new cluster).
        let pki = match &joined {
            Some(joined) => Pki::adopt(&tls_dir, joined.secrets.ca(), Some(&joined.secrets.service_account_key))?,
            None => Pki::load_or_create(&tls_dir)?,
        };
        let member = embedded_etcd::start(&args.data_dir, &pki, address, joined.as_ref().map(|j| &j.supervisor)).await?;
        eprintln!("skiff server: embedded etcd member {} at {}", member.name, member.peer_url);
    }
    let store_config = StoreConfig::from_endpoint(endpoint.as_deref(), &args.data_dir.join("server"))?;
    let backend = Store::connect(&store_config).await.context("opening the datastore")?;
    let mut secrets = bootstrap::load_or_init(backend.as_ref(), &token.secret, || {
        let pki = Pki::load_or_create(&tls_dir)?;
        Ok(bootstrap::Secrets { ca_cert: pki.ca_pem().to_string(), ca_key: pki.ca().key_pem.clone(), service_account_key: pki.service_account_key()?, encryption_config: None })
    })
    .await?;
    // Encryption at rest: a configuration given here wins and is the
    // cluster's from now on; `--secrets-encryption` makes one if it has none.
    let local = args.encryption_provider_config.as_ref().map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))).transpose()?;
    let wanted = local.or_else(|| secrets.encryption_config.clone()).or_else(|| args.secrets_encryption.then(skiff_apiserver::encryption::generate));
    if wanted != secrets.encryption_config {
        secrets.encryption_config = wanted;
        bootstrap::store(backend.as_ref(), &secrets, &token.secret).await?;
    }
    let pki = Pki::adopt(&tls_dir, secrets.ca(), Some(&secrets.service_account_key))?;
    pki::write_private(&token_file, &format!("{}\n", token.full(pki.ca_pem())))?;
    if let Some(endpoint) = joined.as_ref().and_then(|j| j.info.datastore_endpoint.as_ref()) {
        pki::write_private(&learned_file, endpoint)?;
    }
    Ok(OneCluster { token, pki, secrets, backend, endpoint, embedded })
}

/// A client of this server for a component running inside it, acting as
/// `user` and named in its user agent as upstream's component is
/// (`kube-scheduler/…`), which is also the field manager its writes are
/// recorded under. Its requests reach the handler without TLS or TCP.
fn in_process_client(server: &skiff_apiserver::Server, user: UserInfo, component: &str) -> Result<kube::Client> {
    let api = server.in_process(user);
    let agent = user_agent(component)?;
    let service = tower::service_fn(move |mut req: http::Request<kube::client::Body>| {
        req.headers_mut().insert(http::header::USER_AGENT, agent.clone());
        let api = api.clone();
        async move { Ok::<_, std::convert::Infallible>(api.send(req).await) }
    });
    Ok(kube::Client::new(service, "default"))
}

/// A client of the server at `url` with a client certificate, named in
/// its user agent as upstream's component is (`kubelet/…`).
pub(crate) async fn certificate_client(url: &str, ca_pem: &str, user: &str, identity: &pki::CertPair, component: &str) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&pki::kubeconfig(url, ca_pem, user, identity))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    config.headers.push((http::header::USER_AGENT, user_agent(component)?));
    Ok(kube::Client::try_from(config)?)
}

fn user_agent(component: &str) -> Result<http::HeaderValue> {
    Ok(http::HeaderValue::from_str(&format!("{component}/skiff-{} (linux/amd64)", env!("CARGO_PKG_VERSION")))?)
}

pub(crate) fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty() && skiff_api_name_ok(h))
}

/// A host name usable as a certificate DNS name.
fn skiff_api_name_ok(h: &str) -> bool {
    h.split('.').all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn first_address_of_a_cidr() {
        assert_eq!(super::first_address("10.43.0.0/16").unwrap().to_string(), "10.43.0.1");
        assert_eq!(super::first_address("10.43.7.9/16").unwrap().to_string(), "10.43.0.1");
        assert!(super::first_address("10.43.0.0").is_err());
    }
}

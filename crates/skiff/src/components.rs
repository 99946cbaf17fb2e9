//! The scheduler and the controller manager: run inside `skiff server`,
//! or as their own processes (`skiff scheduler`, `skiff controller-manager`)
//! against any Skiff API server. Either way each is elected through its
//! Lease, so several servers never both act.

use std::path::PathBuf;

use anyhow::{Context, Result};
use base64::Engine;

use crate::leader;
use crate::server::{hostname, parse_cidr};

/// Upstream's controller manager flags that Skiff takes.
#[derive(clap::Args, Clone)]
pub struct ControllerFlags {
    /// A node whose kubelet is silent this long becomes NotReady (Unknown).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// Seconds pods stay on a not-ready node unless they tolerate it longer.
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// Seconds pods stay on an unreachable node unless they tolerate it longer.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
    /// The prefix length of each node's pod CIDR, cut from --cluster-cidr.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// Finished pods kept before the pod garbage collector deletes the oldest.
    #[arg(long, default_value_t = 12500)]
    terminated_pod_gc_threshold: usize,
    /// How often each HorizontalPodAutoscaler is evaluated.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    horizontal_pod_autoscaler_sync_period: std::time::Duration,
    /// The mode AppSafe's new groups start in, unless their namespace's
    /// `appsafe.skiff.io/mode` label names one.
    #[arg(long, default_value = "Discover", value_parser = clap::builder::PossibleValuesParser::new(skiff_api::appsafe::MODES))]
    appsafe_default_mode: String,
    /// No AppSafe groups are made or enforced.
    #[arg(long)]
    disable_appsafe: bool,
}

impl ControllerFlags {
    pub fn options(&self, cluster_cidr: &str, root_ca_pem: String, signer: Option<skiff_auth::pki::Pki>) -> Result<skiff_controllers::Options> {
        Ok(skiff_controllers::Options {
            node_monitor_grace_period: self.node_monitor_grace_period,
            default_not_ready_toleration_seconds: self.default_not_ready_toleration_seconds,
            default_unreachable_toleration_seconds: self.default_unreachable_toleration_seconds,
            cluster_cidr: Some(parse_cidr(cluster_cidr).context("--cluster-cidr")?),
            node_cidr_mask_size: self.node_cidr_mask_size,
            terminated_pod_gc_threshold: self.terminated_pod_gc_threshold,
            root_ca_pem,
            signer,
            hpa_sync_period: self.horizontal_pod_autoscaler_sync_period,
            // Set from the server's network settings.
            service_lb: false,
            appsafe_default_mode: (!self.disable_appsafe).then(|| self.appsafe_default_mode.clone()),
        })
    }
}

#[derive(clap::Args)]
pub struct SchedulerArgs {
    /// How to reach the API server (else the configuration's
    /// `clientConnection.kubeconfig`).
    #[arg(long, required_unless_present = "config")]
    kubeconfig: Option<PathBuf>,
    /// A KubeSchedulerConfiguration (`kubescheduler.config.k8s.io/v1`):
    /// profiles with their plugins and arguments, backoff, leader election.
    #[arg(long, conflicts_with = "scheduler_name")]
    config: Option<PathBuf>,
    /// The profiles (comma-separated), each with upstream's default
    /// plugins: pods whose `schedulerName` is one of these are this
    /// scheduler's.
    #[arg(long, value_delimiter = ',', default_value = "default-scheduler")]
    scheduler_name: Vec<String>,
}

/// A scheduler's configuration: the KubeSchedulerConfiguration file if
/// one is given, else a profile with upstream's default plugins per name.
pub fn scheduler_config(file: Option<&std::path::Path>, names: &[String]) -> Result<skiff_scheduler::config::Config> {
    let Some(path) = file else { return Ok(skiff_scheduler::config::Config::with_profiles(names)) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    skiff_scheduler::config::Config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

#[derive(clap::Args)]
pub struct ControllerManagerArgs {
    /// How to reach the API server.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Pod IPs come from here, one slice per node.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// The CA certificate that signs approved CertificateSigningRequests
    /// (the server's `<data-dir>/server/tls/ca.crt`); without it none are signed.
    #[arg(long, requires = "cluster_signing_key_file")]
    cluster_signing_cert_file: Option<PathBuf>,
    /// Its key.
    #[arg(long, requires = "cluster_signing_cert_file")]
    cluster_signing_key_file: Option<PathBuf>,
    #[command(flatten)]
    flags: ControllerFlags,
}

/// Upstream's holder identity: the host name and a unique suffix.
fn identity() -> String {
    format!("{}_{}", hostname().unwrap_or_else(|| "skiff".into()), uuid::Uuid::new_v4())
}

/// Runs the scheduler, while this process holds its Lease
/// (`kube-system/kube-scheduler` unless configured otherwise) or, with
/// leader election off, at once.
pub async fn scheduler(client: kube::Client, config: skiff_scheduler::config::Config) {
    let options = skiff_scheduler::Options::from_config(&config);
    let elector = client.clone();
    let run = move || {
        let (client, options) = (client.clone(), options.clone());
        async move {
            if let Err(e) = skiff_scheduler::run(client, options).await {
                tracing::error!("scheduler stopped: {e:#}");
            }
        }
    };
    match config.leader_elect {
        true => leader::lead(elector, &config.lease_namespace, &config.lease_name, identity(), run).await,
        false => run().await,
    }
}

/// Runs the controllers while this process holds
/// `kube-system/kube-controller-manager`.
pub async fn controller_manager(client: kube::Client, options: skiff_controllers::Options) {
    leader::lead(client.clone(), "kube-system", "kube-controller-manager", identity(), move || skiff_controllers::run(client.clone(), options.clone())).await;
}

pub async fn run_scheduler(args: SchedulerArgs) -> Result<()> {
    let config = scheduler_config(args.config.as_deref(), &args.scheduler_name)?;
    let kubeconfig = args.kubeconfig.or(config.kubeconfig.as_ref().map(PathBuf::from)).context("no --kubeconfig, and the configuration names no clientConnection.kubeconfig")?;
    let client = crate::sim::client(&kubeconfig).await?;
    scheduler(client, config).await;
    Ok(())
}

pub async fn run_controller_manager(args: ControllerManagerArgs) -> Result<()> {
    let client = crate::sim::client(&args.kubeconfig).await?;
    // The cluster CA, published in every namespace, is the one the
    // kubeconfig trusts.
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)?;
    let ca = kubeconfig.clusters.first().and_then(|c| c.cluster.as_ref()).and_then(|c| c.certificate_authority_data.clone()).context("the kubeconfig names no certificate-authority-data")?;
    let ca = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(ca.trim())?)?;
    let signer = match (&args.cluster_signing_cert_file, &args.cluster_signing_key_file) {
        (Some(cert), Some(key)) => Some(skiff_auth::pki::Pki::from_files(cert, key)?),
        _ => None,
    };
    let mut options = args.flags.options(&args.cluster_cidr, ca, signer)?;
    options.service_lb = service_lb_on(client.clone()).await;
    controller_manager(client, options).await;
    Ok(())
}

/// Whether the server has ServiceLB on (k3s's `--disable servicelb`), as
/// it publishes in the cluster's network settings; off if they cannot be read.
async fn service_lb_on(client: kube::Client) -> bool {
    match skiff_net::ClusterNetwork::read(client).await {
        Ok(network) => network.is_some_and(|n| n.service_lb),
        Err(e) => {
            tracing::warn!("{e:#}; ServiceLB stays off");
            false
        }
    }
}

/// A Go-style duration: `1h2m3s`, `90s`, `500ms`, `0`.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    if text == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(|| format!("{text:?}: missing unit"))?;
        let number: f64 = rest[..digits].parse().map_err(|_| format!("{text:?} is not a duration"))?;
        let unit_len = rest[digits..].find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len() - digits);
        let seconds = match &rest[digits..digits + unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            unit => return Err(format!("{text:?}: unknown unit {unit:?}")),
        };
        total += number * seconds;
        rest = &rest[digits + unit_len..];
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_go_durations() {
        use super::parse_duration;
        use std::time::Duration;
        assert_eq!(parse_duration("5m0s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5").is_err() && parse_duration("5d").is_err() && parse_duration("abc").is_err());
    }
}

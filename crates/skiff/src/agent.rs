//! The node agent's flags and its start inside `skiff server` (a remote
//! `skiff agent` follows with TLS bootstrap).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use skiff_auth::pki::Pki;

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
    /// Pods this node takes at most.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
}

/// Starts the agent in this process, with the node's own identity
/// (`system:node:<name>` in `system:nodes`), as a kubelet would have.
pub async fn start_in_process(flags: AgentFlags, pki: Pki, data_dir: PathBuf, url: String, address: IpAddr) -> Result<skiff_kubelet::Agent> {
    let node_name = match &flags.node_name {
        Some(name) => name.clone(),
        None => crate::server::hostname().context("the host has no usable name: give --node-name")?,
    };
    let address = flags.node_ip.unwrap_or(address);
    let user = format!("system:node:{node_name}");
    let identity = pki.client(None, &user, &["system:nodes"])?;
    let client = crate::server::in_process_client(&url, pki.ca_pem(), &user, &identity, "kubelet").await?;
    let serving = pki.serving("kubelet", &[node_name.clone(), "localhost".into()], &[address, IpAddr::from([127, 0, 0, 1])])?;
    let config = skiff_kubelet::Config {
        node_name,
        data_dir: data_dir.join("agent"),
        run_dir: flags.agent_run_dir.clone(),
        log_dir: flags.pod_log_dir.clone(),
        cni_bin_dir: flags.cni_bin_dir.clone(),
        bridge: flags.cni_bridge.clone(),
        address,
        port: flags.kubelet_port,
        shim: std::env::current_exe().context("finding the skiff binary for the shim")?,
        tls: skiff_kubelet::Tls { cert_pem: serving.cert_pem, key_pem: serving.key_pem, client_ca_pem: pki.ca_pem().to_string() },
        max_pods: flags.max_pods,
    };
    skiff_kubelet::Kubelet::start(client, config).await
}

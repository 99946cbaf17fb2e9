//! `skiff sim`: simulated nodes for a cluster (see `skiff_sim`).

use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    /// The cluster to join.
    #[arg(long, default_value = "/etc/skiff/skiff.yaml")]
    kubeconfig: PathBuf,
    /// How many nodes.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Each node's CPU capacity.
    #[arg(long, default_value = "32")]
    cpu: String,
    /// Each node's memory capacity.
    #[arg(long, default_value = "256Gi")]
    memory: String,
    /// Each node's pod capacity.
    #[arg(long, default_value = "110")]
    pods: String,
    /// Node names are this followed by 0, 1, ….
    #[arg(long, default_value = "sim-")]
    name_prefix: String,
    /// Label the nodes with this many zones (`topology.kubernetes.io/zone`).
    #[arg(long, default_value_t = 0)]
    zones: usize,
}

pub async fn client(kubeconfig: &std::path::Path) -> Result<kube::Client> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

pub async fn run(args: Args) -> Result<()> {
    let client = client(&args.kubeconfig).await?;
    let options = skiff_sim::Options { nodes: args.nodes, name_prefix: args.name_prefix, cpu: args.cpu, memory: args.memory, pods: args.pods, run_pods: true, zones: args.zones, heartbeats: true };
    let started = std::time::Instant::now();
    let sim = skiff_sim::Sim::start(client, options).await?;
    eprintln!("{} simulated nodes registered in {} ms", args.nodes, started.elapsed().as_millis());
    sim.wait().await;
    Ok(())
}

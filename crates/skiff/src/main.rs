//! `skiff`: one binary for the whole platform.

mod agent;
mod balancer;
mod bootstrap;
mod bench;
mod certs;
mod components;
mod embedded_etcd;
mod etcd_snapshot;
mod image;
mod leader;
mod monitoring;
mod network;
mod process_metrics;
mod server;
mod sim;
mod supervisor;
mod token;

use clap::{Parser, Subcommand};

// jemalloc returns freed memory to the system and keeps fragmentation low
// across many threads, where glibc's per-thread arenas keep RSS high after
// bursts (large lists, watch fan-out).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "skiff", version, about = "A Kubernetes-compatible container platform in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the control plane: API server and storage.
    Server(server::Args),
    /// Run a node agent that joins a cluster with a bootstrap token.
    Agent(agent::Args),
    /// Run the scheduler alone, against an API server.
    Scheduler(components::SchedulerArgs),
    /// Run the controller manager alone, against an API server.
    ControllerManager(components::ControllerManagerArgs),
    /// Simulated nodes that run pods without containers, for tests and benchmarks.
    Sim(sim::Args),
    /// Snapshots of the datastore: save, ls, restore.
    #[command(subcommand)]
    EtcdSnapshot(etcd_snapshot::EtcdSnapshot),
    /// Bootstrap tokens for joining nodes.
    #[command(subcommand)]
    Token(token::Token),
    /// The node's images: import, ls, rm.
    #[command(subcommand)]
    Image(image::Image),
    /// Issue a client certificate for a user and groups; prints a kubeconfig.
    Certs(certs::Args),
    /// Prometheus for this cluster: `skiff monitoring config`.
    #[command(subcommand)]
    Monitoring(monitoring::Monitoring),
    /// Measure a component; figures go to docs/BENCHMARKS.md.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// The process that holds one container (run by the agent).
    #[command(hide = true)]
    Shim(skiff_kubelet::shim::Args),
    /// The process behind one exec on a terminal (run by the agent).
    #[command(hide = true)]
    ExecShim(skiff_kubelet::exec_shim::Args),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Command::Shim(args) = cli.command {
        // It forks: no threads may exist yet, so no async runtime.
        skiff_kubelet::shim::main(args);
    }
    if let Command::ExecShim(args) = cli.command {
        skiff_kubelet::exec_shim::main(args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Server(args) => runtime.block_on(server::run(args)),
        Command::Agent(args) => runtime.block_on(agent::run(args)),
        Command::Scheduler(args) => runtime.block_on(components::run_scheduler(args)),
        Command::ControllerManager(args) => runtime.block_on(components::run_controller_manager(args)),
        Command::Sim(args) => runtime.block_on(sim::run(args)),
        Command::Certs(args) => certs::run(args),
        Command::Image(i) => i.run(),
        Command::Token(t) => runtime.block_on(t.run()),
        Command::EtcdSnapshot(s) => runtime.block_on(s.run()),
        Command::Bench(b) => runtime.block_on(b.run()),
        Command::Monitoring(m) => runtime.block_on(m.run()),
        Command::Shim(_) | Command::ExecShim(_) => unreachable!("handled before the runtime starts"),
    }
}

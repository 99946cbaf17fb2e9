//! The controller manager: workload controllers as API clients (the kube
//! crate's watchers, reflectors and controller runtime), run by whichever
//! server holds the `kube-controller-manager` Lease.

mod common;
mod deployment;
mod gc;
mod leader;
mod node_lifecycle;
mod replicaset;

use std::time::Duration;

/// Upstream's controller manager flags that Skiff takes.
#[derive(Debug, Clone)]
pub struct Options {
    /// A node silent this long is Unknown (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// How long pods stay on a not-ready or unreachable node without a
    /// toleration of their own (`--default-…-toleration-seconds`).
    pub default_not_ready_toleration_seconds: i64,
    pub default_unreachable_toleration_seconds: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            node_monitor_grace_period: Duration::from_secs(40),
            default_not_ready_toleration_seconds: 300,
            default_unreachable_toleration_seconds: 300,
        }
    }
}

/// Runs the controllers while this process leads; forever.
pub async fn run(client: kube::Client, identity: String, options: Options) {
    let elector = leader::Elector::new(client.clone(), "kube-controller-manager", identity);
    loop {
        elector.acquire().await;
        tracing::info!("leading: controllers started");
        let controllers = [
            tokio::spawn(replicaset::run(client.clone())),
            tokio::spawn(deployment::run(client.clone())),
            tokio::spawn(gc::run(client.clone())),
            tokio::spawn(node_lifecycle::run(client.clone(), options.clone())),
        ];
        elector.hold().await;
        tracing::warn!("lost leadership: controllers stopped");
        for c in controllers {
            c.abort();
        }
    }
}

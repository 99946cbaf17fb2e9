//! Simulated nodes, as KWOK does: `N` nodes registered with the capacity
//! asked for, their Leases renewed as a kubelet's would be, and the pods
//! bound to them moved to Running and Ready without any container, then on
//! to Succeeded or Failed after the time their annotations ask for. They
//! are what the scheduler and the controllers are tested and measured on,
//! so they must be cheap: thousands of nodes in one process.
//!
//! Only the API is used, like every other component. A node whose
//! annotation `sim.skiff.io/heartbeat` is `stopped` stops renewing its
//! Lease, which is how tests make a node fail.

mod nodes;
mod pods;

use std::sync::Arc;

use anyhow::Result;

pub use nodes::HEARTBEAT_ANNOTATION;
pub use pods::{EXIT_CODE, FAIL_AFTER, SUCCEED_AFTER};

/// What the simulated nodes look like.
#[derive(Debug, Clone)]
pub struct Options {
    pub nodes: usize,
    pub name_prefix: String,
    /// Capacity of each node, as quantities (`32`, `256Gi`, `110`).
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    /// Run the pods bound to the nodes; off, nodes only hold them (as
    /// upstream's scheduler_perf nodes do).
    pub run_pods: bool,
    /// Spread the nodes over this many zones (`topology.kubernetes.io/zone`
    /// `zone-0`, `zone-1`, …, round robin); 0 for no zone label.
    pub zones: usize,
    /// Renew each node's Lease every 10 s, as a kubelet does; off, nodes
    /// are registered once and left alone (as upstream's scheduler_perf
    /// nodes are), and the node lifecycle controller, if any, finds them
    /// unreachable.
    pub heartbeats: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { nodes: 1, name_prefix: "sim-".into(), cpu: "32".into(), memory: "256Gi".into(), pods: "110".into(), run_pods: true, zones: 0, heartbeats: true }
    }
}

impl Options {
    pub fn node_name(&self, i: usize) -> String {
        format!("{}{i}", self.name_prefix)
    }

    /// Which of this simulator's nodes `name` is, if any.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        let i: usize = name.strip_prefix(&self.name_prefix)?.parse().ok()?;
        (i < self.nodes && self.node_name(i) == name).then_some(i)
    }
}

/// Running simulated nodes; dropping it stops them (their Leases then
/// expire as a dead kubelet's would).
pub struct Sim {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Sim {
    /// Registers the nodes, then keeps them and their pods going.
    pub async fn start(client: kube::Client, options: Options) -> Result<Sim> {
        let options = Arc::new(options);
        nodes::register(&client, &options).await?;
        let mut tasks = Vec::new();
        if options.heartbeats {
            tasks.push(tokio::spawn(nodes::heartbeat(client.clone(), options.clone())));
        }
        if options.run_pods {
            tasks.push(tokio::spawn(pods::run(client, options)));
        }
        Ok(Sim { tasks })
    }

    /// Runs until the process ends.
    pub async fn wait(mut self) {
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

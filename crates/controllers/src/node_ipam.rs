//! Node IPAM, as upstream's range allocator: each node gets the next free
//! /24 (`--node-cidr-mask-size`) of the cluster CIDR as its `podCIDR`,
//! which its node agent's CNI hands pod addresses out of.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::Mutex;

use crate::common::Error;

struct Context {
    client: kube::Client,
    nodes: Store<Node>,
    cluster: (Ipv4Addr, u8),
    mask: u8,
    /// One allocation at a time: two nodes must never get one range.
    allocating: Mutex<HashSet<String>>,
}

pub async fn run(client: kube::Client, cluster: (Ipv4Addr, u8), mask: u8) {
    let controller = Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default());
    let context = Arc::new(Context { client, nodes: controller.store(), cluster, mask, allocating: Mutex::default() });
    controller
        .run(reconcile, |_, e, _| {
            tracing::warn!("node IPAM: {e}");
            Action::requeue(Duration::from_secs(5))
        }, context)
        .for_each(|_| async {})
        .await;
}

/// The `i`-th range of `mask` bits within the cluster CIDR, if it has one.
fn range(cluster: (Ipv4Addr, u8), mask: u8, i: u32) -> Option<String> {
    let (net, bits) = cluster;
    let count = 1u64 << (mask.saturating_sub(bits));
    if mask < bits || mask > 30 || i as u64 >= count {
        return None;
    }
    let base = u32::from(net) + (i << (32 - mask as u32));
    Some(format!("{}/{mask}", Ipv4Addr::from(base)))
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    if node.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some() {
        return Ok(Action::await_change());
    }
    let mut given = ctx.allocating.lock().await;
    let mut taken: HashSet<String> = ctx.nodes.state().iter().filter_map(|n| n.spec.as_ref()?.pod_cidr.clone()).collect();
    // Ranges the watch shows are no longer ours to remember; the others
    // are (a deleted node's range is then free again).
    given.retain(|c| !taken.contains(c));
    taken.extend(given.iter().cloned());
    let free = (0..).map_while(|i| range(ctx.cluster, ctx.mask, i)).find(|r| !taken.contains(r));
    let name = node.metadata.name.clone().unwrap_or_default();
    let Some(cidr) = free else {
        return Err(Error(format!("no pod CIDR left in the cluster CIDR for node {name}")));
    };
    let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
    Api::<Node>::all(ctx.client.clone()).patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    // Held until the watch shows it, so the next node skips it.
    given.insert(cidr);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_tile_the_cluster_cidr() {
        let cluster = (Ipv4Addr::new(10, 42, 0, 0), 16);
        assert_eq!(range(cluster, 24, 0).as_deref(), Some("10.42.0.0/24"));
        assert_eq!(range(cluster, 24, 255).as_deref(), Some("10.42.255.0/24"));
        assert_eq!(range(cluster, 24, 256), None);
        assert_eq!(range(cluster, 8, 0), None, "a range wider than the cluster");
    }
}

//! Node IPAM, as upstream's range allocator: each node gets the next free
//! /24 (`--node-cidr-mask-size`) of the cluster CIDR as its `podCIDR`,
//! which its node agent's CNI hands pod addresses out of.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

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
    crate::common::run("node-ipam", controller, reconcile, context).await;
}

/// The `i`-th range of `mask` bits within the cluster CIDR, if it has one.
fn range(cluster: (Ipv4Addr, u8), mask: u8, i: u32) -> Option<String> {
    let (net, bits) = cluster;
    // Checked: flags such as `--node-cidr-mask-size 0` must not overflow a shift.
    if mask < bits || mask > 30 || u64::from(i) >= 1u64 << (mask - bits) {
        return None;
    }
    let base = u32::from(net).checked_add(i.checked_shl(32 - u32::from(mask))?)?;
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
        assert_eq!(range((Ipv4Addr::new(0, 0, 0, 0), 0), 0, 0), None, "a /0 range");
        assert_eq!(range((Ipv4Addr::new(255, 255, 255, 0), 0), 24, 2), None, "past the last address");
    }
}

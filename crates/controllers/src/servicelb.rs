//! ServiceLB, as k3s's: a LoadBalancer Service without a
//! `loadBalancerClass` gets the InternalIPs of the Ready nodes as its
//! `status.loadBalancer.ingress`, and every node's service proxy answers
//! on them. A node joining or leaving changes every such Service.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::json;

use crate::common::Error;

struct Context {
    client: kube::Client,
    nodes: Store<Node>,
}

pub async fn run(client: kube::Client) {
    let nodes = Api::<Node>::all(client.clone());
    let services = Api::<Service>::all(client.clone());
    let (reader, writer) = kube::runtime::reflector::store();
    let node_stream = kube::runtime::reflector(writer, watcher(nodes, watcher::Config::default()));
    let controller = Controller::new(services, watcher::Config::default());
    let store = controller.store();
    // Any node change may change every LoadBalancer Service's addresses.
    let controller = controller.watches_stream(kube::runtime::WatchStreamExt::touched_objects(node_stream), move |_: Node| {
        store.state().into_iter().filter(|s| balanced(s)).map(|s| ObjectRef::from_obj(&*s)).collect::<Vec<_>>()
    });
    crate::common::run("servicelb", controller, reconcile, Arc::new(Context { client, nodes: reader })).await;
}

/// A Service this controller answers for.
fn balanced(service: &Service) -> bool {
    service.spec.as_ref().is_some_and(|s| s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none())
}

/// The Ready nodes' InternalIPs, sorted.
fn addresses(nodes: &[Arc<Node>]) -> Vec<String> {
    let mut ips: Vec<String> = nodes
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter(|n| n.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")))
        .filter_map(|n| n.status.as_ref()?.addresses.as_ref()?.iter().find(|a| a.type_ == "InternalIP").map(|a| a.address.clone()))
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !balanced(&service) || ctx.nodes.wait_until_ready().await.is_err() {
        return Ok(Action::await_change());
    }
    let wanted: Vec<serde_json::Value> = addresses(&ctx.nodes.state()).into_iter().map(|ip| json!({"ip": ip, "ipMode": "VIP"})).collect();
    let current = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.clone()).unwrap_or_default();
    if serde_json::to_value(&current).ok() == Some(json!(wanted)) {
        return Ok(Action::await_change());
    }
    let (Some(namespace), Some(name)) = (service.metadata.namespace.as_deref(), service.metadata.name.as_deref()) else { return Ok(Action::await_change()) };
    let patch = json!({"status": {"loadBalancer": {"ingress": wanted}}});
    Api::<Service>::namespaced(ctx.client.clone(), namespace).patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(Action::await_change())
}

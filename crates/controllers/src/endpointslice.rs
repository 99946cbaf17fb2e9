//! The EndpointSlice controller, as upstream's: a Service's endpoints in
//! slices of at most 100, one set of slices per port set, owned by the
//! Service and labelled with its name; terminating pods stay listed with
//! `terminating: true` so proxies can drain them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

use crate::common::{controller_of, owner_reference, Error};
use crate::endpoints::{backends, compact, Backend, Port};
use crate::informers::{on_pods_in_namespace, Informer};

pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpointslice-controller.k8s.io";
/// Endpoints per slice, upstream's default `--max-endpoints-per-slice`.
const PER_SLICE: usize = 100;

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
}

pub fn run(client: kube::Client, pods: &Informer<Pod>) -> impl Future<Output = ()> + Send {
    let (slices, writer) = reflector::store();
    let slice_events = watcher(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(writer).touched_objects();
    let context = Arc::new(Context { client: client.clone(), pods: pods.store(), slices });
    crate::common::run("endpointslice", on_pods_in_namespace::<Service>(&client, pods).owns_stream(slice_events), reconcile, context)
}

fn endpoint(b: &Backend) -> Value {
    let pod = &b.pod;
    let spec = pod.spec.as_ref();
    let hostname = spec.and_then(|s| s.hostname.clone()).filter(|_| spec.and_then(|s| s.subdomain.as_ref()).is_some());
    json!({
        "addresses": [b.ip],
        "conditions": {"ready": b.ready, "serving": b.serving, "terminating": b.terminating},
        "hostname": hostname,
        "nodeName": spec.and_then(|s| s.node_name.clone()),
        "targetRef": {"kind": "Pod", "namespace": pod.metadata.namespace, "name": pod.metadata.name, "uid": pod.metadata.uid},
    })
}

/// The slices a Service's endpoints make: per port set, chunks of
/// PER_SLICE endpoints (ports, endpoints), or one empty slice.
pub fn desired(service: &Service, backends: &[Backend]) -> Vec<(Vec<Value>, Vec<Value>)> {
    let mut by_ports: BTreeMap<&[Port], Vec<Value>> = BTreeMap::new();
    for b in backends {
        by_ports.entry(&b.ports).or_default().push(compact(endpoint(b)));
    }
    let port_json = |ports: &[Port]| -> Vec<Value> {
        ports.iter().map(|(name, port, protocol, app)| compact(json!({"name": name, "port": port, "protocol": protocol, "appProtocol": app}))).collect()
    };
    let mut desired_groups: Vec<(Vec<Value>, Vec<Value>)> = by_ports.into_iter().map(|(ports, endpoints)| (port_json(ports), endpoints)).collect();
    if desired_groups.is_empty() {
        // No endpoints: one empty slice with the service's ports, as upstream.
        let ports: Vec<Value> = service.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default().iter().map(|p| compact(json!({"name": p.name.clone().unwrap_or_default(), "protocol": p.protocol.clone().unwrap_or_else(|| "TCP".into())}))).collect();
        desired_groups.push((ports, vec![]));
    }
    desired_groups
        .into_iter()
        .flat_map(|(ports, endpoints)| {
            let chunks: Vec<Vec<Value>> = if endpoints.is_empty() { vec![vec![]] } else { endpoints.chunks(PER_SLICE).map(<[Value]>::to_vec).collect() };
            chunks.into_iter().map(move |c| (ports.clone(), c))
        })
        .collect()
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    for ready in [crate::informers::ready(&ctx.pods).await, crate::informers::ready(&ctx.slices).await] {
        ready.map_err(|e| Error(e.to_string()))?;
    }
    let meta = &service.metadata;
    let (ns, name) = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
    let selected = service.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|s| !s.is_empty());
    if meta.deletion_timestamp.is_some() || !selected {
        return Ok(Action::await_change());
    }
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let desired = desired(&service, &backends(&service, ctx.pods.state()));
    let mut existing: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .state()
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()) && controller_of(&s.metadata).is_some_and(|o| Some(&o.uid) == meta.uid.as_ref()))
        .collect();
    existing.sort_by_key(|s| s.metadata.name.clone());
    let mut labels = meta.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME.into(), name.clone());
    labels.insert(MANAGED_BY.into(), CONTROLLER.into());
    if service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    let mut unused = existing.clone();
    for (ports, endpoints) in desired {
        let body = |slice_meta: Value| json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": slice_meta,
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        });
        // Reuse a slice with the same ports, unchanged ones first.
        let same = |s: &EndpointSlice| compact(json!(s.ports.clone().unwrap_or_default())).as_array().cloned().unwrap_or_default() == ports;
        let unchanged = |s: &EndpointSlice| same(s) && compact(json!(s.endpoints)) == json!(endpoints) && s.metadata.labels.as_ref() == Some(&labels);
        if let Some(i) = unused.iter().position(|s| unchanged(s)) {
            unused.remove(i);
            continue;
        }
        let result = match unused.iter().position(|s| same(s)) {
            Some(i) => {
                let old = unused.remove(i);
                let slice_meta = json!({"name": old.metadata.name, "namespace": ns, "labels": labels, "ownerReferences": old.metadata.owner_references, "resourceVersion": old.metadata.resource_version});
                let slice: EndpointSlice = serde_json::from_value(body(slice_meta)).map_err(|e| Error(e.to_string()))?;
                api.replace(old.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &slice).await
            }
            None => {
                let slice_meta = json!({"generateName": format!("{name}-"), "namespace": ns, "labels": labels, "ownerReferences": [owner_reference(meta, "v1", "Service")]});
                let slice: EndpointSlice = serde_json::from_value(body(slice_meta)).map_err(|e| Error(e.to_string()))?;
                api.create(&PostParams::default(), &slice).await
            }
        };
        result?;
    }
    for old in unused {
        let _ = api.delete(old.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::default()).await;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

//! The Endpoints controller, as upstream's: every Service with a selector
//! gets an Endpoints object of the same name listing the selected pods'
//! addresses (ready ones in `addresses`, the rest in `notReadyAddresses`)
//! and the ports its service ports resolve to (a named target port by the
//! container port of that name), grouped into subsets by port set.
//!
//! `backends` is the shared reading of a Service's pods that the
//! EndpointSlice controller uses too.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

use crate::common::{ready_since, Error};
use crate::informers::{on_pods_in_namespace, Informer};

/// At most this many addresses in one Endpoints object, as upstream.
const MAX_ADDRESSES: usize = 1000;

/// One selected pod as a Service's endpoint.
pub struct Backend {
    pub pod: Arc<Pod>,
    pub ip: String,
    /// Ready (or published though not ready), serving (its Ready
    /// condition), terminating (being deleted).
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// The service ports this pod serves, resolved, sorted.
    pub ports: Vec<Port>,
}

/// A resolved service port: name, port, protocol, appProtocol.
pub type Port = (String, i32, String, Option<String>);

/// The pods a Service selects that have an address and have not finished,
/// with what each serves.
pub fn backends(service: &Service, pods: Vec<Arc<Pod>>) -> Vec<Backend> {
    let Some(spec) = service.spec.as_ref() else { return vec![] };
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else { return vec![] };
    let ns = service.metadata.namespace.as_deref();
    let publish = spec.publish_not_ready_addresses == Some(true);
    let mut out: Vec<Backend> = pods
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == ns)
        .filter(|p| p.metadata.labels.as_ref().is_some_and(|l| selector.iter().all(|(k, v)| l.get(k) == Some(v))))
        .filter(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
        .filter_map(|pod| {
            let ip = pod.status.as_ref()?.pod_ip.clone().filter(|ip| !ip.is_empty())?;
            let serving = ready_since(&pod).is_some();
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let mut ports: Vec<Port> = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|sp| {
                    let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
                    let port = match sp.target_port.as_ref() {
                        None => sp.port,
                        Some(IntOrString::Int(p)) => *p,
                        Some(IntOrString::String(name)) => pod
                            .spec
                            .as_ref()?
                            .containers
                            .iter()
                            .flat_map(|c| c.ports.iter().flatten())
                            .find(|cp| cp.name.as_deref() == Some(name.as_str()) && cp.protocol.as_deref().unwrap_or("TCP") == protocol)?
                            .container_port,
                    };
                    Some((sp.name.clone().unwrap_or_default(), port, protocol, sp.app_protocol.clone()))
                })
                .collect();
            ports.sort();
            // A pod serving none of the Service's ports is not its endpoint.
            if ports.is_empty() && spec.ports.as_ref().is_some_and(|p| !p.is_empty()) {
                return None;
            }
            Some(Backend { ip, ready: publish || (serving && !terminating), serving: publish || serving, terminating, ports, pod })
        })
        .collect();
    out.sort_by(|a, b| (&a.ip, &a.pod.metadata.name).cmp(&(&b.ip, &b.pod.metadata.name)));
    out
}

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
}

pub fn run(client: kube::Client, pods: &Informer<Pod>) -> impl Future<Output = ()> + Send {
    let context = Arc::new(Context { client: client.clone(), pods: pods.store() });
    let controller = on_pods_in_namespace::<Service>(&client, pods).watches(Api::<Endpoints>::all(client), watcher::Config::default(), |ep| {
        Some(ObjectRef::<Service>::new(ep.metadata.name.as_deref().unwrap_or_default()).within(ep.metadata.namespace.as_deref().unwrap_or_default()))
    });
    crate::common::run("endpoints", controller, reconcile, context)
}

/// The subsets upstream would write: addresses grouped by the port set
/// they serve.
pub fn subsets(backends: &[Backend]) -> Vec<Value> {
    let mut groups: BTreeMap<&[Port], (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    let mut count = 0;
    for b in backends {
        if b.terminating && !b.ready {
            continue;
        }
        count += 1;
        if count > MAX_ADDRESSES {
            break;
        }
        let pod = &b.pod;
        let spec = pod.spec.as_ref();
        let mut address = json!({
            "ip": b.ip,
            "nodeName": spec.and_then(|s| s.node_name.clone()),
            "targetRef": {"kind": "Pod", "namespace": pod.metadata.namespace, "name": pod.metadata.name, "uid": pod.metadata.uid},
        });
        if let Some(hostname) = spec.and_then(|s| s.hostname.clone()).filter(|_| spec.and_then(|s| s.subdomain.as_ref()).is_some()) {
            address["hostname"] = json!(hostname);
        }
        let group = groups.entry(&b.ports).or_default();
        if b.ready { group.0.push(address) } else { group.1.push(address) }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| {
            let ports: Vec<Value> = ports.iter().map(|(name, port, protocol, app)| json!({"name": name, "port": port, "protocol": protocol, "appProtocol": app})).collect();
            let mut subset = json!({"ports": ports});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready);
            }
            subset
        })
        .collect()
}

/// Drops nulls and empty strings, as the API server's JSON does, so what
/// is read compares equal to what was written.
pub fn compact(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(o.into_iter().filter(|(_, v)| !v.is_null() && v != "").map(|(k, v)| (k, compact(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(compact).collect()),
        v => v,
    }
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    crate::informers::ready(&ctx.pods).await.map_err(|e| Error(e.to_string()))?;
    let (ns, name) = (service.metadata.namespace.clone().unwrap_or_default(), service.metadata.name.clone().unwrap_or_default());
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let selected = service.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(|s| !s.is_empty());
    if service.metadata.deletion_timestamp.is_some() || !selected {
        // Endpoints of Services without a selector are their owners' to write.
        return Ok(Action::await_change());
    }
    let backends = backends(&service, ctx.pods.state());
    let subsets = compact(json!(subsets(&backends)));
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    let mut annotations = serde_json::Map::new();
    if backends.len() > MAX_ADDRESSES {
        annotations.insert("endpoints.kubernetes.io/over-capacity".into(), json!("truncated"));
    }
    let existing = api.get_opt(&name).await?;
    let current = existing.as_ref().map(|e| compact(serde_json::to_value(e.subsets.clone().unwrap_or_default()).unwrap_or_default()));
    let current_labels = existing.as_ref().and_then(|e| e.metadata.labels.clone()).unwrap_or_default();
    if current.as_ref() == Some(&subsets) && current_labels == labels {
        return Ok(Action::requeue(Duration::from_secs(300)));
    }
    let body = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": annotations},
        "subsets": subsets,
    });
    match existing {
        Some(e) => {
            let mut body = body;
            body["metadata"]["resourceVersion"] = json!(e.metadata.resource_version);
            let endpoints: Endpoints = serde_json::from_value(body).map_err(|e| Error(e.to_string()))?;
            api.replace(&name, &PostParams::default(), &endpoints).await?;
        }
        None => {
            let endpoints: Endpoints = serde_json::from_value(body).map_err(|e| Error(e.to_string()))?;
            api.create(&PostParams::default(), &endpoints).await?;
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// A Service's Endpoints go with it, as upstream's controller deletes
/// them when the Service is gone (they carry no owner reference for the
/// garbage collector to follow).
pub async fn remove_with_services(client: kube::Client) {
    let deletions = watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff();
    deletions
        .for_each(|event| {
            let client = client.clone();
            async move {
                if let Ok(watcher::Event::Delete(service)) = event {
                    let api: Api<Endpoints> = Api::namespaced(client, service.metadata.namespace.as_deref().unwrap_or_default());
                    let _ = api.delete(service.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::default()).await;
                }
            }
        })
        .await;
}

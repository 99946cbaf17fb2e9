//! The EndpointSlice mirroring controller, as upstream's: a Service
//! without a selector has its Endpoints written by someone else; those
//! Endpoints are mirrored into EndpointSlices (owned by the Endpoints,
//! labelled with the Service's name and managed by
//! `endpointslicemirroring-controller.k8s.io`), one set of slices per port
//! set and address type, at most 1000 endpoints each, kept as the Endpoints
//! change and removed with them (or when the Service gets a selector or
//! goes).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

use crate::common::{owner_reference, Error};
use crate::endpoints::compact;
use crate::endpointslice::SERVICE_NAME;

const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpointslicemirroring-controller.k8s.io";
/// Endpoints that say not to be mirrored, and leader-election records.
const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
const LEADER: &str = "control-plane.alpha.kubernetes.io/leader";
/// Annotations not copied onto the slices.
const NOT_COPIED: [&str; 2] = ["endpoints.kubernetes.io/last-change-trigger-time", "kubectl.kubernetes.io/last-applied-configuration"];
/// Endpoints per slice, upstream's default
/// `--mirroring-max-endpoints-per-subset`.
const PER_SLICE: usize = 1000;

struct Context {
    client: kube::Client,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
}

fn service_of(namespace: Option<&String>, name: Option<&String>) -> Option<ObjectRef<Service>> {
    Some(ObjectRef::new(name?).within(namespace?))
}

pub fn run(client: kube::Client) -> impl Future<Output = ()> + Send {
    let (endpoints, writer) = reflector::store();
    let endpoint_events = watcher(Api::<Endpoints>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(writer).touched_objects();
    let (slices, writer) = reflector::store();
    let mirrored = watcher::Config::default().labels(&format!("{MANAGED_BY}={CONTROLLER}"));
    let slice_events = watcher(Api::<EndpointSlice>::all(client.clone()), mirrored).default_backoff().reflect(writer).touched_objects();
    let context = Arc::new(Context { client: client.clone(), endpoints, slices });
    let controller = Controller::new(Api::<Service>::all(client), watcher::Config::default())
        .watches_stream(endpoint_events, |ep: Endpoints| service_of(ep.metadata.namespace.as_ref(), ep.metadata.name.as_ref()))
        .watches_stream(slice_events, |s: EndpointSlice| service_of(s.metadata.namespace.as_ref(), s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME))));
    crate::common::run("endpointslicemirroring", controller, reconcile, context)
}

/// Whether `endpoints` of `service` are mirrored: the Service has no
/// selector (else the EndpointSlice controller writes its slices) and the
/// Endpoints do not opt out.
pub fn mirrored(service: &Service, endpoints: &Endpoints) -> bool {
    let selector = service.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some();
    let skip = endpoints.metadata.labels.as_ref().and_then(|l| l.get(SKIP_MIRROR)).is_some_and(|v| v == "true");
    let leader = endpoints.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(LEADER));
    service.metadata.deletion_timestamp.is_none() && !selector && !skip && !leader
}

/// One slice: its address type, ports and endpoints.
type Slice = (&'static str, Vec<Value>, Vec<Value>);

/// The slices the Endpoints make, per port set and address type, in
/// chunks of PER_SLICE. Addresses that are not IPs are left out, as
/// upstream's.
pub fn desired(endpoints: &Endpoints) -> Vec<Slice> {
    // (ports as text, address type) → (ports, endpoints)
    type Members = (Vec<Value>, Vec<Value>);
    let mut groups: BTreeMap<(String, &'static str), Members> = BTreeMap::new();
    for subset in endpoints.subsets.iter().flatten() {
        let mut ports: Vec<Value> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| compact(json!({"name": p.name, "port": p.port, "protocol": p.protocol.clone().unwrap_or_else(|| "TCP".into()), "appProtocol": p.app_protocol})))
            .collect();
        ports.sort_by_key(|p| p.to_string());
        ports.dedup();
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let addresses = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset.not_ready_addresses.iter().flatten().map(|a| (a, false));
        for (address, ready) in addresses.chain(not_ready) {
            let family = match address.ip.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => "IPv4",
                Ok(IpAddr::V6(_)) => "IPv6",
                Err(_) => continue,
            };
            let group = groups.entry((key.clone(), family)).or_insert_with(|| (ports.clone(), vec![]));
            if group.1.iter().any(|e| e["addresses"][0] == json!(address.ip)) {
                continue;
            }
            group.1.push(compact(json!({
                "addresses": [address.ip],
                "conditions": {"ready": ready},
                "hostname": address.hostname,
                "nodeName": address.node_name,
                "targetRef": address.target_ref,
            })));
        }
    }
    groups
        .into_iter()
        .flat_map(|((_, family), (ports, endpoints))| endpoints.chunks(PER_SLICE).map(|c| (family, ports.clone(), c.to_vec())).collect::<Vec<_>>())
        .collect()
}

/// The slices' labels (the Endpoints', with the two of a mirrored slice)
/// and annotations (the Endpoints', but two).
fn metadata(endpoints: &Endpoints, service: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut labels = endpoints.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME.into(), service.into());
    labels.insert(MANAGED_BY.into(), CONTROLLER.into());
    let mut annotations = endpoints.metadata.annotations.clone().unwrap_or_default();
    annotations.retain(|k, _| !NOT_COPIED.contains(&k.as_str()));
    (labels, annotations)
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    for ready in [crate::informers::ready(&ctx.endpoints).await, crate::informers::ready(&ctx.slices).await] {
        ready.map_err(|e| Error(e.to_string()))?;
    }
    let (ns, name) = (service.metadata.namespace.clone().unwrap_or_default(), service.metadata.name.clone().unwrap_or_default());
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let endpoints = ctx.endpoints.get(&ObjectRef::new(&name).within(&ns)).filter(|ep| ep.metadata.deletion_timestamp.is_none() && mirrored(&service, ep));
    let mut unused: Vec<Arc<EndpointSlice>> = ctx
        .slices
        .state()
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()) && s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME)) == Some(&name))
        .collect();
    unused.sort_by_key(|s| s.metadata.name.clone());
    if let Some(endpoints) = endpoints {
        let (labels, annotations) = metadata(&endpoints, &name);
        let owner = owner_reference(&endpoints.metadata, "v1", "Endpoints");
        for (family, ports, members) in desired(&endpoints) {
            let body = |slice_meta: Value| json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": slice_meta,
                "addressType": family,
                "endpoints": members,
                "ports": ports,
            });
            // Reuse a slice of the same ports and address type, unchanged
            // ones first; one owned by an older Endpoints of that name is
            // not reused.
            let same = |s: &EndpointSlice| {
                s.address_type == family
                    && compact(json!(s.ports.clone().unwrap_or_default())).as_array().cloned().unwrap_or_default() == ports
                    && s.metadata.owner_references.as_ref().is_some_and(|o| o.iter().any(|o| o.uid == owner.uid))
            };
            let unchanged = |s: &EndpointSlice| {
                same(s)
                    && compact(json!(s.endpoints)) == json!(members)
                    && s.metadata.labels.as_ref() == Some(&labels)
                    && s.metadata.annotations.clone().unwrap_or_default() == annotations
            };
            if let Some(i) = unused.iter().position(|s| unchanged(s)) {
                unused.remove(i);
                continue;
            }
            let result = match unused.iter().position(|s| same(s)) {
                Some(i) => {
                    let old = unused.remove(i);
                    let slice_meta = json!({"name": old.metadata.name, "namespace": ns, "labels": labels, "annotations": annotations, "ownerReferences": old.metadata.owner_references, "resourceVersion": old.metadata.resource_version});
                    let slice: EndpointSlice = serde_json::from_value(body(slice_meta)).map_err(|e| Error(e.to_string()))?;
                    api.replace(old.metadata.name.as_deref().unwrap_or_default(), &PostParams::default(), &slice).await
                }
                None => {
                    let slice_meta = json!({"generateName": format!("{name}-"), "namespace": ns, "labels": labels, "annotations": annotations, "ownerReferences": [owner]});
                    let slice: EndpointSlice = serde_json::from_value(body(slice_meta)).map_err(|e| Error(e.to_string()))?;
                    api.create(&PostParams::default(), &slice).await
                }
            };
            result?;
        }
    }
    for old in unused {
        match api.delete(old.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(kube::error::ErrorResponse { code: 404, .. })) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(ip: &str) -> Endpoints {
        serde_json::from_value(json!({
            "metadata": {"name": "example-custom-endpoints", "namespace": "ns", "uid": "u1",
                         "labels": {"a": "b"}, "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "kept"}},
            "subsets": [{"ports": [{"port": 80}], "addresses": [{"ip": ip}], "notReadyAddresses": [{"ip": "10.9.9.9"}, {"ip": "not-an-ip"}]}],
        }))
        .unwrap()
    }

    /// `[sig-network] EndpointSliceMirroring should mirror a custom
    /// Endpoints resource through create update and delete [Conformance]`:
    /// a selector-less Service's Endpoints become one slice of their ports
    /// and addresses (ready or not), labelled and annotated as upstream's.
    #[test]
    fn custom_endpoints_are_mirrored_into_a_slice() {
        let ep = endpoints("10.1.2.3");
        let slices = desired(&ep);
        assert_eq!(slices.len(), 1);
        let (family, ports, members) = &slices[0];
        assert_eq!(*family, "IPv4");
        assert_eq!(ports, &vec![json!({"port": 80, "protocol": "TCP"})]);
        assert_eq!(members, &vec![
            json!({"addresses": ["10.1.2.3"], "conditions": {"ready": true}}),
            json!({"addresses": ["10.9.9.9"], "conditions": {"ready": false}}),
        ]);
        let (labels, annotations) = metadata(&ep, "example-custom-endpoints");
        assert_eq!(labels.get(SERVICE_NAME).map(String::as_str), Some("example-custom-endpoints"));
        assert_eq!(labels.get(MANAGED_BY).map(String::as_str), Some(CONTROLLER));
        assert_eq!(labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(annotations, BTreeMap::from([("note".to_string(), "kept".to_string())]));
        assert_eq!(desired(&endpoints("10.2.3.4"))[0].2[0]["addresses"], json!(["10.2.3.4"]));
    }

    /// Only the Endpoints of a Service without a selector are mirrored,
    /// and not those that opt out.
    #[test]
    fn only_selectorless_services_are_mirrored() {
        let service = |spec: Value| -> Service { serde_json::from_value(json!({"metadata": {"name": "s"}, "spec": spec})).unwrap() };
        let ep = endpoints("10.1.2.3");
        assert!(mirrored(&service(json!({"ports": [{"port": 80}]})), &ep));
        assert!(!mirrored(&service(json!({"selector": {"app": "x"}})), &ep));
        let mut skipped = ep.clone();
        skipped.metadata.labels.get_or_insert_with(BTreeMap::new).insert(SKIP_MIRROR.into(), "true".into());
        assert!(!mirrored(&service(json!({})), &skipped));
    }
}

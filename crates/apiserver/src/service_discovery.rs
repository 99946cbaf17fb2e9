//! Prometheus service discovery over HTTP (`http_sd_configs`), for the
//! Prometheus builds without `kubernetes_sd_configs` (Debian's 2.42): `GET
//! /metrics/targets?role=node|pod|service|endpoints|endpointslice` answers
//! the target groups kubernetes_sd would find, with its
//! `__meta_kubernetes_*` labels, limited to the objects the requester may
//! list.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use skiff_auth::Attributes;

use crate::handler::Api;
use crate::registry::ListQuery;

type Labels = BTreeMap<String, String>;

pub const ROLES: [&str; 5] = ["node", "pod", "service", "endpoints", "endpointslice"];

/// Prometheus' `strutil.SanitizeLabelName`.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// `<prefix>_label_<k>`, `<prefix>_labelpresent_<k>` and the same for annotations.
fn object_labels(out: &mut Labels, prefix: &str, meta: &ObjectMeta) {
    for (kind, map) in [("label", &meta.labels), ("annotation", &meta.annotations)] {
        for (k, v) in map.iter().flatten() {
            out.insert(format!("{prefix}_{kind}_{}", sanitize(k)), v.clone());
            out.insert(format!("{prefix}_{kind}present_{}", sanitize(k)), "true".into());
        }
    }
}

fn group(address: String, labels: Labels) -> Value {
    json!({"targets": [address], "labels": labels})
}

/// The objects of `plural` that `user` may list, each in its namespace.
async fn visible<K: DeserializeOwned>(api: &Api, user: &Attributes, group: &str, version: &str, plural: &str, namespaced: bool) -> Vec<K> {
    let Some(def) = skiff_api::resources::find(group, version, plural) else { return vec![] };
    let may_list = |namespace: &str| {
        api.security.allows(&Attributes {
            user: user.user.clone(),
            verb: "list".into(),
            resource_request: true,
            api_group: group.into(),
            api_version: version.into(),
            resource: plural.into(),
            namespace: namespace.into(),
            ..Default::default()
        })
    };
    let everywhere = may_list("");
    let Ok(listed) = api.registry.list(def, None, &ListQuery::default()).await else { return vec![] };
    let mut allowed: BTreeMap<String, bool> = BTreeMap::new();
    listed
        .items
        .iter()
        .filter_map(|raw| {
            let value: Value = serde_json::from_slice(raw).ok()?;
            if !everywhere {
                let namespace = value["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
                if !namespaced || !*allowed.entry(namespace.clone()).or_insert_with(|| may_list(&namespace)) {
                    return None;
                }
            }
            serde_json::from_value(value).ok()
        })
        .collect()
}

/// The target groups of `role` that `user` may see.
pub async fn targets(api: &Api, user: &Attributes, role: &str) -> Value {
    let groups = match role {
        "node" => visible::<Node>(api, user, "", "v1", "nodes", false).await.iter().filter_map(node).collect(),
        "pod" => visible::<Pod>(api, user, "", "v1", "pods", true).await.iter().flat_map(pod).collect(),
        "service" => visible::<Service>(api, user, "", "v1", "services", true).await.iter().flat_map(service).collect(),
        "endpoints" => {
            let services = services_by_name(api, user).await;
            visible::<Endpoints>(api, user, "", "v1", "endpoints", true).await.iter().flat_map(|e| endpoints(e, &services)).collect()
        }
        "endpointslice" => {
            let services = services_by_name(api, user).await;
            visible::<EndpointSlice>(api, user, "discovery.k8s.io", "v1", "endpointslices", true).await.iter().flat_map(|s| endpoint_slice(s, &services)).collect()
        }
        _ => Vec::new(),
    };
    Value::Array(groups)
}

fn node(node: &Node) -> Option<Value> {
    let status = node.status.as_ref()?;
    let port = status.daemon_endpoints.as_ref()?.kubelet_endpoint.as_ref()?.port;
    let addresses = status.addresses.clone().unwrap_or_default();
    // kubernetes_sd's order of preference.
    let host = ["InternalIP", "InternalDNS", "ExternalIP", "ExternalDNS", "Hostname"].iter().find_map(|t| addresses.iter().find(|a| a.type_ == *t))?.address.clone();
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut labels = Labels::from([("__meta_kubernetes_node_name".into(), name.clone()), ("instance".into(), name)]);
    labels.insert("__meta_kubernetes_node_provider_id".into(), node.spec.as_ref().and_then(|s| s.provider_id.clone()).unwrap_or_default());
    object_labels(&mut labels, "__meta_kubernetes_node", &node.metadata);
    for a in &addresses {
        labels.entry(format!("__meta_kubernetes_node_address_{}", a.type_)).or_insert_with(|| a.address.clone());
    }
    Some(group(format!("{}:{port}", bracket(&host)), labels))
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn pod_labels(pod: &Pod) -> Labels {
    let status = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let ready = status.conditions.iter().flatten().find(|c| c.type_ == "Ready").map_or("unknown".to_string(), |c| c.status.to_ascii_lowercase());
    let mut labels = Labels::from([
        ("__meta_kubernetes_namespace".to_string(), pod.metadata.namespace.clone().unwrap_or_default()),
        ("__meta_kubernetes_pod_name".into(), pod.metadata.name.clone().unwrap_or_default()),
        ("__meta_kubernetes_pod_ip".into(), status.pod_ip.clone().unwrap_or_default()),
        ("__meta_kubernetes_pod_ready".into(), ready),
        ("__meta_kubernetes_pod_phase".into(), status.phase.clone().unwrap_or_default()),
        ("__meta_kubernetes_pod_node_name".into(), spec.node_name.clone().unwrap_or_default()),
        ("__meta_kubernetes_pod_host_ip".into(), status.host_ip.clone().unwrap_or_default()),
        ("__meta_kubernetes_pod_uid".into(), pod.metadata.uid.clone().unwrap_or_default()),
    ]);
    if let Some(owner) = pod.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true)) {
        labels.insert("__meta_kubernetes_pod_controller_kind".into(), owner.kind.clone());
        labels.insert("__meta_kubernetes_pod_controller_name".into(), owner.name.clone());
    }
    object_labels(&mut labels, "__meta_kubernetes_pod", &pod.metadata);
    labels
}

/// A target per container port (a container without ports: one, at the
/// pod's address alone), as kubernetes_sd's pod role.
fn pod(pod: &Pod) -> Vec<Value> {
    let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()) else { return vec![] };
    let base = pod_labels(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    let statuses: BTreeMap<String, String> = pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten().chain(s.init_container_statuses.iter().flatten()))
        .filter_map(|c| Some((c.name.clone(), c.container_id.clone()?)))
        .collect();
    let containers = spec.containers.iter().map(|c| (c, false)).chain(spec.init_containers.iter().flatten().map(|c| (c, true)));
    let mut out = Vec::new();
    for (container, init) in containers {
        let mut labels = base.clone();
        labels.insert("__meta_kubernetes_pod_container_name".into(), container.name.clone());
        labels.insert("__meta_kubernetes_pod_container_image".into(), container.image.clone().unwrap_or_default());
        labels.insert("__meta_kubernetes_pod_container_init".into(), init.to_string());
        labels.insert("__meta_kubernetes_pod_container_id".into(), statuses.get(&container.name).cloned().unwrap_or_default());
        let ports = container.ports.clone().unwrap_or_default();
        if ports.is_empty() {
            out.push(group(bracket(&ip), labels));
            continue;
        }
        for port in ports {
            let mut labels = labels.clone();
            labels.insert("__meta_kubernetes_pod_container_port_name".into(), port.name.clone().unwrap_or_default());
            labels.insert("__meta_kubernetes_pod_container_port_number".into(), port.container_port.to_string());
            labels.insert("__meta_kubernetes_pod_container_port_protocol".into(), port.protocol.clone().unwrap_or_else(|| "TCP".into()));
            out.push(group(format!("{}:{}", bracket(&ip), port.container_port), labels));
        }
    }
    out
}

fn service_labels(service: &Service) -> Labels {
    let spec = service.spec.clone().unwrap_or_default();
    let kind = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
    let mut labels = Labels::from([
        ("__meta_kubernetes_namespace".to_string(), service.metadata.namespace.clone().unwrap_or_default()),
        ("__meta_kubernetes_service_name".into(), service.metadata.name.clone().unwrap_or_default()),
        ("__meta_kubernetes_service_type".into(), kind.clone()),
    ]);
    if kind == "ExternalName" {
        labels.insert("__meta_kubernetes_service_external_name".into(), spec.external_name.unwrap_or_default());
    } else {
        labels.insert("__meta_kubernetes_service_cluster_ip".into(), spec.cluster_ip.unwrap_or_default());
    }
    object_labels(&mut labels, "__meta_kubernetes_service", &service.metadata);
    labels
}

/// A target per Service port, at the Service's DNS name.
fn service(service: &Service) -> Vec<Value> {
    let base = service_labels(service);
    let host = format!("{}.{}.svc", service.metadata.name.as_deref().unwrap_or_default(), service.metadata.namespace.as_deref().unwrap_or_default());
    service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|port| {
            let mut labels = base.clone();
            labels.insert("__meta_kubernetes_service_port_name".into(), port.name.clone().unwrap_or_default());
            labels.insert("__meta_kubernetes_service_port_number".into(), port.port.to_string());
            labels.insert("__meta_kubernetes_service_port_protocol".into(), port.protocol.clone().unwrap_or_else(|| "TCP".into()));
            group(format!("{host}:{}", port.port), labels)
        })
        .collect()
}

async fn services_by_name(api: &Api, user: &Attributes) -> BTreeMap<(String, String), Service> {
    visible::<Service>(api, user, "", "v1", "services", true)
        .await
        .into_iter()
        .map(|s| ((s.metadata.namespace.clone().unwrap_or_default(), s.metadata.name.clone().unwrap_or_default()), s))
        .collect()
}

/// A target per address and port, with the Service's labels when it has one.
fn endpoints(e: &Endpoints, services: &BTreeMap<(String, String), Service>) -> Vec<Value> {
    let namespace = e.metadata.namespace.clone().unwrap_or_default();
    let name = e.metadata.name.clone().unwrap_or_default();
    let mut base = services.get(&(namespace.clone(), name.clone())).map(service_labels).unwrap_or_default();
    base.insert("__meta_kubernetes_namespace".into(), namespace);
    base.insert("__meta_kubernetes_endpoints_name".into(), name);
    object_labels(&mut base, "__meta_kubernetes_endpoints", &e.metadata);
    let mut out = Vec::new();
    for subset in e.subsets.iter().flatten() {
        let addresses = subset.addresses.iter().flatten().map(|a| (a, true)).chain(subset.not_ready_addresses.iter().flatten().map(|a| (a, false)));
        for (address, ready) in addresses {
            for port in subset.ports.iter().flatten() {
                let mut labels = base.clone();
                labels.insert("__meta_kubernetes_endpoint_ready".into(), ready.to_string());
                labels.insert("__meta_kubernetes_endpoint_port_name".into(), port.name.clone().unwrap_or_default());
                labels.insert("__meta_kubernetes_endpoint_port_protocol".into(), port.protocol.clone().unwrap_or_else(|| "TCP".into()));
                if let Some(host) = &address.hostname {
                    labels.insert("__meta_kubernetes_endpoint_hostname".into(), host.clone());
                }
                if let Some(node) = &address.node_name {
                    labels.insert("__meta_kubernetes_endpoint_node_name".into(), node.clone());
                }
                if let Some(target) = &address.target_ref {
                    labels.insert("__meta_kubernetes_endpoint_address_target_kind".into(), target.kind.clone().unwrap_or_default());
                    labels.insert("__meta_kubernetes_endpoint_address_target_name".into(), target.name.clone().unwrap_or_default());
                }
                out.push(group(format!("{}:{}", bracket(&address.ip), port.port), labels));
            }
        }
    }
    out
}

fn endpoint_slice(slice: &EndpointSlice, services: &BTreeMap<(String, String), Service>) -> Vec<Value> {
    let namespace = slice.metadata.namespace.clone().unwrap_or_default();
    let service = slice.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name")).cloned().unwrap_or_default();
    let mut base = services.get(&(namespace.clone(), service)).map(service_labels).unwrap_or_default();
    base.insert("__meta_kubernetes_namespace".into(), namespace);
    base.insert("__meta_kubernetes_endpointslice_name".into(), slice.metadata.name.clone().unwrap_or_default());
    base.insert("__meta_kubernetes_endpointslice_address_type".into(), slice.address_type.clone());
    object_labels(&mut base, "__meta_kubernetes_endpointslice", &slice.metadata);
    let mut out = Vec::new();
    for endpoint in &slice.endpoints {
        let conditions = endpoint.conditions.clone().unwrap_or_default();
        for address in &endpoint.addresses {
            for port in slice.ports.iter().flatten() {
                let Some(number) = port.port else { continue };
                let mut labels = base.clone();
                for (name, value) in [("ready", conditions.ready), ("serving", conditions.serving), ("terminating", conditions.terminating)] {
                    if let Some(value) = value {
                        labels.insert(format!("__meta_kubernetes_endpointslice_endpoint_conditions_{name}"), value.to_string());
                    }
                }
                let optional = [
                    ("__meta_kubernetes_endpointslice_endpoint_hostname", endpoint.hostname.clone()),
                    ("__meta_kubernetes_endpointslice_endpoint_node_name", endpoint.node_name.clone()),
                    ("__meta_kubernetes_endpointslice_endpoint_zone", endpoint.zone.clone()),
                    ("__meta_kubernetes_endpointslice_address_target_kind", endpoint.target_ref.as_ref().and_then(|t| t.kind.clone())),
                    ("__meta_kubernetes_endpointslice_address_target_name", endpoint.target_ref.as_ref().and_then(|t| t.name.clone())),
                    ("__meta_kubernetes_endpointslice_port_name", port.name.clone()),
                    ("__meta_kubernetes_endpointslice_port_app_protocol", port.app_protocol.clone()),
                ];
                for (name, value) in optional {
                    if let Some(value) = value {
                        labels.insert(name.into(), value);
                    }
                }
                labels.insert("__meta_kubernetes_endpointslice_port".into(), number.to_string());
                labels.insert("__meta_kubernetes_endpointslice_port_protocol".into(), port.protocol.clone().unwrap_or_else(|| "TCP".into()));
                out.push(group(format!("{}:{number}", bracket(address)), labels));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_give_a_target_per_port_with_kubernetes_sd_labels() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "labels": {"app.kubernetes.io/name": "web"},
                "annotations": {"prometheus.io/scrape": "true"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d", "uid": "r", "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [
                {"name": "app", "image": "web:1", "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9090, "protocol": "UDP"}]},
                {"name": "sidecar", "image": "proxy:2"}]},
            "status": {"podIP": "10.42.0.7", "hostIP": "192.0.2.1", "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "app", "image": "web:1", "imageID": "", "ready": true, "restartCount": 0, "containerID": "skiff://abc"}]},
        }))
        .unwrap();
        let groups = super::pod(&pod);
        let targets: Vec<&str> = groups.iter().map(|g| g["targets"][0].as_str().unwrap()).collect();
        assert_eq!(targets, ["10.42.0.7:8080", "10.42.0.7:9090", "10.42.0.7"]);
        let first = &groups[0]["labels"];
        assert_eq!(first["__meta_kubernetes_pod_label_app_kubernetes_io_name"], "web");
        assert_eq!(first["__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name"], "true");
        assert_eq!(first["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "true");
        assert_eq!(first["__meta_kubernetes_pod_container_port_name"], "http");
        assert_eq!(first["__meta_kubernetes_pod_container_id"], "skiff://abc");
        assert_eq!(first["__meta_kubernetes_pod_ready"], "true");
        assert_eq!(first["__meta_kubernetes_pod_controller_kind"], "ReplicaSet");
        assert_eq!(groups[1]["labels"]["__meta_kubernetes_pod_container_port_protocol"], "UDP");
        assert_eq!(groups[2]["labels"]["__meta_kubernetes_pod_container_name"], "sidecar");
    }

    #[test]
    fn nodes_are_found_at_their_kubelet() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
            "status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.0.2.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}},
        }))
        .unwrap();
        let group = super::node(&node).unwrap();
        assert_eq!(group["targets"], json!(["192.0.2.1:10250"]));
        assert_eq!(group["labels"]["__meta_kubernetes_node_address_InternalIP"], "192.0.2.1");
        assert_eq!(group["labels"]["__meta_kubernetes_node_label_kubernetes_io_hostname"], "n1");
        assert_eq!(group["labels"]["instance"], "n1");
    }
}

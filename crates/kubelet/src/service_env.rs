//! The Service environment variables every container gets, as upstream's
//! kubelet writes them (`getServiceEnvVarMap`, `envvars.FromServices`):
//! `FOO_SERVICE_HOST`, `FOO_SERVICE_PORT` and Docker's link variables, for
//! the `kubernetes` Service always and for the pod's namespace's Services
//! under `enableServiceLinks` (the default).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::{reflector, watcher, WatchStreamExt};

/// Where the API server's own Service lives.
const MASTER_NAMESPACE: &str = "default";
const MASTER_SERVICE: &str = "kubernetes";

/// Every Service, as a watch keeps them (upstream's kubelet holds an
/// informer for the same): a pod start reads them without asking the API.
pub struct Services {
    store: reflector::Store<Service>,
}

impl Services {
    /// The cache, and the watch that fills it, to be run for ever.
    pub fn follow(client: kube::Client) -> (Services, impl std::future::Future<Output = ()>) {
        let (store, writer) = reflector::store();
        let watch = reflector(writer, watcher(Api::<Service>::all(client), watcher::Config::default())).default_backoff();
        let run = watch.for_each(|event| async move {
            if let Err(e) = event {
                tracing::warn!("watching Services for pods' environment: {e}");
            }
        });
        (Services { store }, run)
    }

    /// The variables for a pod in `namespace`, sorted by name.
    pub async fn for_pod(&self, namespace: &str, service_links: bool) -> Result<Vec<(String, String)>> {
        if tokio::time::timeout(Duration::from_secs(5), self.store.wait_until_ready()).await.map(|r| r.is_ok()) != Ok(true) {
            bail!("the Services have not been read yet: the container's environment cannot be written");
        }
        let mut services: BTreeMap<String, std::sync::Arc<Service>> = BTreeMap::new();
        let mut master = None;
        for service in self.store.state() {
            let (Some(ns), Some(name)) = (service.metadata.namespace.as_deref(), service.metadata.name.as_deref()) else { continue };
            if ns == MASTER_NAMESPACE && name == MASTER_SERVICE {
                master = Some(service.clone());
            }
            if service_links && ns == namespace {
                services.insert(name.to_string(), service.clone());
            }
        }
        // The master Service always, unless the pod's namespace has its own of that name.
        if let Some(master) = master {
            services.entry(MASTER_SERVICE.to_string()).or_insert(master);
        }
        let mut env: Vec<(String, String)> = services.values().flat_map(|s| variables(s)).collect();
        env.sort();
        Ok(env)
    }
}

/// `my-svc` → `MY_SVC`.
fn env_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}

/// One Service's variables; none without a cluster IP (headless, ExternalName).
fn variables(service: &Service) -> Vec<(String, String)> {
    let Some(spec) = service.spec.as_ref() else { return Vec::new() };
    let ip = spec.cluster_ip.as_deref().unwrap_or("");
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ip.is_empty() || ip == "None" || ports.is_empty() {
        return Vec::new();
    }
    let prefix = env_name(service.metadata.name.as_deref().unwrap_or(""));
    // An IPv6 address is bracketed in URLs, as Go's JoinHostPort does.
    let host_port = |port: i32| if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
    let mut env = vec![(format!("{prefix}_SERVICE_HOST"), ip.to_string()), (format!("{prefix}_SERVICE_PORT"), ports[0].port.to_string())];
    for port in ports {
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            env.push((format!("{prefix}_SERVICE_PORT_{}", env_name(name)), port.port.to_string()));
        }
    }
    // Docker's link variables; the first port also as `FOO_PORT`.
    for (i, port) in ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let url = format!("{}://{}", protocol.to_lowercase(), host_port(port.port));
        if i == 0 {
            env.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
        env.push((format!("{port_prefix}_PROTO"), protocol.to_lowercase()));
        env.push((format!("{port_prefix}_PORT"), port.port.to_string()));
        env.push((format!("{port_prefix}_ADDR"), ip.to_string()));
        env.push((port_prefix, url));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_gives_upstreams_variables() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "foo-service"},
            "spec": {"clusterIP": "10.43.0.7", "ports": [{"port": 8765, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]}
        }))
        .unwrap();
        let env: BTreeMap<String, String> = variables(&service).into_iter().collect();
        let expected = [
            ("FOO_SERVICE_SERVICE_HOST", "10.43.0.7"),
            ("FOO_SERVICE_SERVICE_PORT", "8765"),
            ("FOO_SERVICE_SERVICE_PORT_DNS", "53"),
            ("FOO_SERVICE_PORT", "tcp://10.43.0.7:8765"),
            ("FOO_SERVICE_PORT_8765_TCP", "tcp://10.43.0.7:8765"),
            ("FOO_SERVICE_PORT_8765_TCP_PROTO", "tcp"),
            ("FOO_SERVICE_PORT_8765_TCP_PORT", "8765"),
            ("FOO_SERVICE_PORT_8765_TCP_ADDR", "10.43.0.7"),
            ("FOO_SERVICE_PORT_53_UDP", "udp://10.43.0.7:53"),
            ("FOO_SERVICE_PORT_53_UDP_PROTO", "udp"),
            ("FOO_SERVICE_PORT_53_UDP_PORT", "53"),
            ("FOO_SERVICE_PORT_53_UDP_ADDR", "10.43.0.7"),
        ];
        assert_eq!(env, expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let headless: Service = serde_json::from_value(serde_json::json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}})).unwrap();
        assert!(variables(&headless).is_empty());
    }
}

//! ClusterIP and NodePort allocation for Services. Each address or port is
//! claimed by creating a key under `/registry/skiff/` whose value names the
//! owning Service: the store's create-if-absent makes two Services never
//! share one, on SQLite and on etcd, across any number of API servers.
//! Deleting the Service releases its claims.

use std::net::Ipv4Addr;

use bytes::Bytes;
use rand::Rng;
use serde_json::{json, Value};
use skiff_store::{Error as StoreError, Store};

use crate::status::{ApiError, ApiResult};
use skiff_api::validation::FieldError;

/// Upstream's default `--service-node-port-range`.
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

pub struct Allocator {
    store: Store,
    network: u32,
    size: u32,
}

fn ip_key(ip: Ipv4Addr) -> String {
    format!("/registry/skiff/serviceips/{ip}")
}

fn port_key(port: u16) -> String {
    format!("/registry/skiff/nodeports/{port}")
}

fn invalid(field: &str, value: &str, why: &str) -> FieldError {
    FieldError {
        field: field.into(),
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {value}: {why}"),
    }
}

impl Allocator {
    /// `cidr` is the service CIDR, e.g. `10.43.0.0/16`.
    pub fn new(store: Store, network: Ipv4Addr, prefix: u8) -> Allocator {
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        Allocator {
            store,
            network: u32::from(network) & mask,
            size: 1u32 << (32 - prefix as u32),
        }
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip > self.network && ip < self.network + self.size - 1
    }

    /// Claims `key` for `owner`; a claim the owner already holds counts.
    async fn claim(&self, key: &str, owner: &str) -> ApiResult<bool> {
        match self.store.create(key, Bytes::from(owner.to_string())).await {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => match self.store.get(key, None).await {
                Ok(Some(kv)) => Ok(kv.value == owner.as_bytes()),
                Ok(None) => Box::pin(self.claim(key, owner)).await,
                Err(e) => Err(ApiError::internal(e.to_string())),
            },
            Err(e) => Err(ApiError::internal(e.to_string())),
        }
    }

    async fn release(&self, key: &str, owner: &str) {
        if let Ok(Some(kv)) = self.store.get(key, None).await {
            if kv.value == owner.as_bytes() {
                let _ = self.store.delete(key, Some(kv.mod_revision)).await;
            }
        }
    }

    /// Fills in a new Service's defaults, ClusterIP and NodePorts, claiming
    /// them for `owner` (`namespace/name`). Field errors are upstream's.
    pub async fn allocate(&self, svc: &mut Value, owner: &str) -> ApiResult<Vec<FieldError>> {
        let spec = svc.get_mut("spec").and_then(|s| s.as_object_mut());
        let Some(spec) = spec else {
            return Ok(vec![skiff_api::validation::required("spec", "")]);
        };
        let kind = spec.get("type").and_then(|t| t.as_str()).unwrap_or("ClusterIP").to_string();
        spec.insert("type".into(), json!(kind));
        spec.entry("sessionAffinity").or_insert(json!("None"));
        if let Some(ports) = spec.get_mut("ports").and_then(|p| p.as_array_mut()) {
            for p in ports.iter_mut() {
                p.as_object_mut().map(|o| o.entry("protocol").or_insert(json!("TCP")));
                if p.get("targetPort").is_none() {
                    p["targetPort"] = p["port"].clone();
                }
            }
        }
        if kind == "ExternalName" {
            return Ok(vec![]);
        }
        spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
        spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
        spec.entry("internalTrafficPolicy").or_insert(json!("Cluster"));
        let mut errs = Vec::new();
        match spec.get("clusterIP").and_then(|c| c.as_str()).unwrap_or("") {
            "None" => {
                spec.insert("clusterIPs".into(), json!(["None"]));
            }
            "" => {
                let ip = self.allocate_ip(owner).await?;
                spec.insert("clusterIP".into(), json!(ip.to_string()));
                spec.insert("clusterIPs".into(), json!([ip.to_string()]));
            }
            given => match given.parse::<Ipv4Addr>() {
                Ok(ip) if self.contains(ip) => {
                    if self.claim(&ip_key(ip), owner).await? {
                        spec.insert("clusterIPs".into(), json!([given]));
                    } else {
                        errs.push(invalid("spec.clusterIPs", &format!("[]string{{{given:?}}}"), &format!("failed to allocate IP {given}: provided IP is already allocated")));
                    }
                }
                _ => errs.push(invalid("spec.clusterIPs", &format!("[]string{{{given:?}}}"), &format!("failed to allocate IP {given}: the provided IP ({given}) is not in the valid range"))),
            },
        }
        if kind == "NodePort" || kind == "LoadBalancer" {
            let ports = spec.get_mut("ports").and_then(|p| p.as_array_mut()).map(std::mem::take).unwrap_or_default();
            let mut done = Vec::new();
            for (i, mut p) in ports.into_iter().enumerate() {
                match p.get("nodePort").and_then(|n| n.as_u64()).filter(|n| *n > 0) {
                    Some(n) => {
                        let taken = !(NODE_PORTS.contains(&(n as u16)) && n <= u16::MAX as u64 && self.claim(&port_key(n as u16), owner).await?);
                        if taken {
                            errs.push(invalid(&format!("spec.ports[{i}].nodePort"), &n.to_string(), "provided port is already allocated"));
                        }
                    }
                    None => p["nodePort"] = json!(self.allocate_port(owner).await?),
                }
                done.push(p);
            }
            spec.insert("ports".into(), json!(done));
        }
        if !errs.is_empty() {
            self.release_all(svc, owner).await;
        }
        Ok(errs)
    }

    async fn allocate_ip(&self, owner: &str) -> ApiResult<Ipv4Addr> {
        // Host addresses are network+1 … broadcast-1; network+1 belongs to
        // the `kubernetes` Service, which claims it explicitly.
        let usable = self.size.saturating_sub(3);
        let start = rand::rng().random_range(0..usable.max(1));
        for i in 0..usable {
            let ip = Ipv4Addr::from(self.network + 2 + (start + i) % usable);
            if self.claim(&ip_key(ip), owner).await? {
                return Ok(ip);
            }
        }
        Err(ApiError::internal("failed to allocate a service IP: range is full"))
    }

    async fn allocate_port(&self, owner: &str) -> ApiResult<u16> {
        let span = (NODE_PORTS.end() - NODE_PORTS.start() + 1) as u32;
        let start = rand::rng().random_range(0..span);
        for i in 0..span {
            let port = NODE_PORTS.start() + ((start + i) % span) as u16;
            if self.claim(&port_key(port), owner).await? {
                return Ok(port);
            }
        }
        Err(ApiError::internal("failed to allocate a node port: range is full"))
    }

    /// Releases every address and port `svc` holds for `owner`.
    pub async fn release_all(&self, svc: &Value, owner: &str) {
        for ip in svc.pointer("/spec/clusterIPs").and_then(|c| c.as_array()).into_iter().flatten() {
            if let Some(ip) = ip.as_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) {
                self.release(&ip_key(ip), owner).await;
            }
        }
        for p in svc.pointer("/spec/ports").and_then(|p| p.as_array()).into_iter().flatten() {
            if let Some(n) = p.get("nodePort").and_then(|n| n.as_u64()) {
                self.release(&port_key(n as u16), owner).await;
            }
        }
    }
}

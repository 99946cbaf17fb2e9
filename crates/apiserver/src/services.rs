//! ClusterIP and NodePort allocation for Services. Each address or port is
//! claimed by creating a key under `/registry/skiff/` whose value names the
//! owning Service: the store's create-if-absent makes two Services never
//! share one, on SQLite and on etcd, across any number of API servers.
//! Deleting the Service releases its claims; an update that changes its
//! type claims what the new type needs and gives up what it no longer
//! does (upstream's `allocateUpdate`).

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

/// What claiming a key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Claimed now.
    New,
    /// Already the owner's.
    Held,
    /// Another owner's.
    Taken,
}

/// What an update claimed and what it gives up once it is written
/// (upstream's allocation transaction): `commit` after the write releases
/// what the Service no longer uses, `revert` after a failed one releases
/// what was claimed for it.
#[derive(Debug, Default)]
#[must_use = "an update's claims are committed or reverted"]
pub struct Claims {
    owner: String,
    claimed: Vec<String>,
    released: Vec<String>,
}

/// The type of a Service as defaulted (ClusterIP when unset).
pub fn type_of(svc: &Value) -> &str {
    svc.pointer("/spec/type").and_then(Value::as_str).filter(|t| !t.is_empty()).unwrap_or("ClusterIP")
}

/// Every type but ExternalName has cluster IPs.
pub fn needs_cluster_ip(svc: &Value) -> bool {
    type_of(svc) != "ExternalName"
}

pub fn needs_node_port(svc: &Value) -> bool {
    matches!(type_of(svc), "NodePort" | "LoadBalancer")
}

/// New NodePorts are allocated for NodePort Services, and for
/// LoadBalancers unless `allocateLoadBalancerNodePorts` is false.
fn allocates_node_ports(svc: &Value) -> bool {
    match type_of(svc) {
        "NodePort" => true,
        "LoadBalancer" => svc.pointer("/spec/allocateLoadBalancerNodePorts") != Some(&json!(false)),
        _ => false,
    }
}

fn node_port_of(port: &Value) -> Option<u16> {
    port.get("nodePort").and_then(Value::as_u64).filter(|n| *n > 0).map(|n| n.min(u64::from(u16::MAX)) as u16)
}

/// The node ports a Service's spec names.
pub fn node_ports(svc: &Value) -> Vec<u16> {
    svc.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten().filter_map(node_port_of).collect()
}

fn cluster_ips(svc: &Value) -> Vec<Ipv4Addr> {
    svc.pointer("/spec/clusterIPs").and_then(Value::as_array).into_iter().flatten().filter_map(|ip| ip.as_str()?.parse().ok()).collect()
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

    /// Claims `key` for `owner`.
    async fn claim(&self, key: &str, owner: &str) -> ApiResult<Claim> {
        match self.store.create(key, Bytes::from(owner.to_string())).await {
            Ok(_) => Ok(Claim::New),
            Err(StoreError::AlreadyExists { .. }) => match self.store.get(key, None).await {
                Ok(Some(kv)) if kv.value == owner.as_bytes() => Ok(Claim::Held),
                Ok(Some(_)) => Ok(Claim::Taken),
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

    /// Fills in a new Service's ClusterIP and NodePorts (and the IP family
    /// fields), claiming them for `owner` (`namespace/name`). Field errors
    /// are upstream's; on any, nothing stays claimed.
    pub async fn allocate(&self, svc: &mut Value, owner: &str) -> ApiResult<Vec<FieldError>> {
        if !svc.get("spec").is_some_and(Value::is_object) {
            return Ok(vec![skiff_api::validation::required("spec", "")]);
        }
        let mut claims = Claims { owner: owner.to_string(), ..Default::default() };
        let result = self.allocate_new(svc, &mut claims).await;
        if !matches!(&result, Ok(errs) if errs.is_empty()) {
            self.release_all(svc, owner).await;
        }
        result
    }

    /// What `allocate` does, with what it claimed recorded in `claims`.
    async fn allocate_new(&self, svc: &mut Value, claims: &mut Claims) -> ApiResult<Vec<FieldError>> {
        if !needs_cluster_ip(svc) {
            return Ok(vec![]);
        }
        init_ip_families(svc, None);
        let mut errs = self.allocate_cluster_ip(svc, claims).await?;
        if errs.is_empty() && needs_node_port(svc) {
            errs = self.allocate_node_ports(svc, None, claims).await?;
        }
        Ok(errs)
    }

    /// The ClusterIP a Service without one gets, or the one it names,
    /// claimed; none for a headless Service.
    async fn allocate_cluster_ip(&self, svc: &mut Value, claims: &mut Claims) -> ApiResult<Vec<FieldError>> {
        let spec = &mut svc["spec"];
        let given = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
        match given.as_str() {
            "None" => {
                spec["clusterIPs"] = json!(["None"]);
            }
            "" => {
                let ip = self.allocate_ip(claims).await?;
                spec["clusterIP"] = json!(ip.to_string());
                spec["clusterIPs"] = json!([ip.to_string()]);
            }
            given => {
                let shown = format!("[]string{{{given:?}}}");
                let refused = |why: String| Ok(vec![invalid("spec.clusterIPs", &shown, &format!("failed to allocate IP {given}: {why}"))]);
                match given.parse::<Ipv4Addr>() {
                    Ok(ip) if self.contains(ip) => match self.claim(&ip_key(ip), &claims.owner).await? {
                        Claim::Taken => return refused("provided IP is already allocated".into()),
                        claim => {
                            if claim == Claim::New {
                                claims.claimed.push(ip_key(ip));
                            }
                            spec["clusterIPs"] = json!([given]);
                        }
                    },
                    _ => return refused(format!("the provided IP ({given}) is not in the valid range")),
                }
            }
        }
        Ok(vec![])
    }

    /// Upstream's `updateNodePorts` (`initNodePorts` on create): the ports
    /// a Service names are claimed unless it held them before, the others
    /// allocated; ports it held and no longer names are released later.
    async fn allocate_node_ports(&self, svc: &mut Value, old: Option<&Value>, claims: &mut Claims) -> ApiResult<Vec<FieldError>> {
        let held = old.map(node_ports).unwrap_or_default();
        let allocates = allocates_node_ports(svc);
        let mut ports = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut).map(std::mem::take).unwrap_or_default();
        let mut errs = Vec::new();
        // On create, ports with the same number (TCP and UDP, say) share
        // one node port, as upstream's `initNodePorts` gives them.
        let mut by_port: std::collections::HashMap<u64, u16> = Default::default();
        for (i, p) in ports.iter_mut().enumerate() {
            let key = p.get("port").and_then(Value::as_u64).unwrap_or(0);
            match node_port_of(p) {
                Some(n) if held.contains(&n) || claims.claimed.contains(&port_key(n)) => {}
                Some(n) => {
                    let claim = if NODE_PORTS.contains(&n) { self.claim(&port_key(n), &claims.owner).await? } else { Claim::Taken };
                    match claim {
                        Claim::Taken => {
                            let why = if NODE_PORTS.contains(&n) {
                                "provided port is already allocated".to_string()
                            } else {
                                format!("provided port is not in the valid range. The range of valid ports is {}-{}", NODE_PORTS.start(), NODE_PORTS.end())
                            };
                            errs.push(invalid(&format!("spec.ports[{i}].nodePort"), &n.to_string(), &why));
                        }
                        Claim::New => claims.claimed.push(port_key(n)),
                        Claim::Held => {}
                    }
                }
                None if !allocates => {}
                None => match by_port.get(&key).filter(|_| old.is_none()) {
                    Some(n) => p["nodePort"] = json!(n),
                    None => {
                        let n = self.allocate_port(claims).await?;
                        p["nodePort"] = json!(n);
                    }
                },
            }
            if let Some(n) = node_port_of(p) {
                by_port.entry(key).or_insert(n);
            }
        }
        svc["spec"]["ports"] = json!(ports);
        if errs.is_empty() {
            let kept = node_ports(svc);
            claims.released.extend(held.into_iter().filter(|n| !kept.contains(n)).map(port_key));
        }
        Ok(errs)
    }

    async fn allocate_ip(&self, claims: &mut Claims) -> ApiResult<Ipv4Addr> {
        // Host addresses are network+1 … broadcast-1; network+1 belongs to
        // the `kubernetes` Service, which claims it explicitly.
        let usable = self.size.saturating_sub(3);
        let start = rand::rng().random_range(0..usable.max(1));
        for i in 0..usable {
            let ip = Ipv4Addr::from(self.network + 2 + (start + i) % usable);
            if self.claim(&ip_key(ip), &claims.owner).await? == Claim::New {
                claims.claimed.push(ip_key(ip));
                return Ok(ip);
            }
        }
        Err(ApiError::internal("failed to allocate a serviceIP: range is full"))
    }

    async fn allocate_port(&self, claims: &mut Claims) -> ApiResult<u16> {
        let span = (NODE_PORTS.end() - NODE_PORTS.start() + 1) as u32;
        let start = rand::rng().random_range(0..span);
        for i in 0..span {
            let port = NODE_PORTS.start() + ((start + i) % span) as u16;
            if self.claim(&port_key(port), &claims.owner).await? == Claim::New {
                claims.claimed.push(port_key(port));
                return Ok(port);
            }
        }
        Err(ApiError::internal("failed to allocate a nodePort: range is full"))
    }

    /// Upstream's `allocateUpdate`, on a Service `new` replacing `old`
    /// (after the strategy's `prepare_update`): a Service leaving
    /// ExternalName gets cluster IPs, one becoming ExternalName gives its
    /// up; NodePort and LoadBalancer Services get node ports for the ports
    /// that lack one, and give up those they no longer name. Field errors
    /// come back as a 422 with nothing claimed.
    pub async fn update(&self, new: &mut Value, old: &Value, owner: &str) -> ApiResult<Claims> {
        let mut claims = Claims { owner: owner.to_string(), ..Default::default() };
        let outcome = self.update_claims(new, old, &mut claims).await;
        if matches!(&outcome, Ok(errs) if errs.is_empty()) {
            return Ok(claims);
        }
        self.revert(claims).await;
        let errs = outcome?;
        let name = new.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let services = skiff_api::resources::find("", "v1", "services").expect("services are served");
        Err(ApiError::invalid(services, name, &errs))
    }

    async fn update_claims(&self, new: &mut Value, old: &Value, claims: &mut Claims) -> ApiResult<Vec<FieldError>> {
        if needs_cluster_ip(new) {
            init_ip_families(new, Some(old));
            if !needs_cluster_ip(old) {
                let errs = self.allocate_cluster_ip(new, claims).await?;
                if !errs.is_empty() {
                    return Ok(errs);
                }
            }
        } else if needs_cluster_ip(old) {
            claims.released.extend(cluster_ips(old).into_iter().map(ip_key));
        }
        if needs_node_port(new) {
            return self.allocate_node_ports(new, Some(old), claims).await;
        }
        if needs_node_port(old) {
            claims.released.extend(node_ports(old).into_iter().map(port_key));
        }
        Ok(vec![])
    }

    /// After the update was written: what the Service no longer uses goes.
    pub async fn commit(&self, claims: Claims) {
        for key in &claims.released {
            self.release(key, &claims.owner).await;
        }
    }

    /// The update was not written: what was claimed for it goes.
    pub async fn revert(&self, claims: Claims) {
        for key in &claims.claimed {
            self.release(key, &claims.owner).await;
        }
    }

    /// Releases every address and port `svc` holds for `owner`.
    pub async fn release_all(&self, svc: &Value, owner: &str) {
        for ip in cluster_ips(svc) {
            self.release(&ip_key(ip), owner).await;
        }
        for n in node_ports(svc) {
            self.release(&port_key(n), owner).await;
        }
    }
}

/// Upstream's `initIPFamilyFields` on a single-stack IPv4 cluster: the
/// policy is the one given, else the old Service's, else SingleStack; the
/// families default to the cluster's.
fn init_ip_families(svc: &mut Value, old: Option<&Value>) {
    let spec = &mut svc["spec"];
    let unset = |v: Option<&Value>| v.is_none_or(|v| v.is_null() || v.as_array().is_some_and(|a| a.is_empty()));
    if unset(spec.get("ipFamilyPolicy")) {
        let policy = old.and_then(|o| o.pointer("/spec/ipFamilyPolicy")).filter(|p| !p.is_null()).cloned();
        spec["ipFamilyPolicy"] = policy.unwrap_or(json!("SingleStack"));
    }
    if unset(spec.get("ipFamilies")) {
        spec["ipFamilies"] = json!(["IPv4"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn allocator() -> (Allocator, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("skiff-services-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&skiff_store::StoreConfig::Sqlite { path: dir.join("state.db") }).await.unwrap();
        (Allocator::new(store, Ipv4Addr::new(10, 43, 0, 0), 24), dir)
    }

    async fn owner_of(a: &Allocator, key: &str) -> Option<String> {
        a.store.get(key, None).await.unwrap().map(|kv| String::from_utf8(kv.value.to_vec()).unwrap())
    }

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "s", "namespace": "ns"}, "spec": spec})
    }

    #[tokio::test]
    async fn external_name_to_cluster_ip_and_node_port_allocates_and_back_releases() {
        let (a, dir) = allocator().await;
        let external = svc(json!({"type": "ExternalName", "externalName": "example.com"}));
        let mut created = external.clone();
        assert!(a.allocate(&mut created, "ns/s").await.unwrap().is_empty());
        assert_eq!(created, external, "an ExternalName Service gets nothing");

        // ExternalName → NodePort: cluster IP, families, node ports.
        let mut node_port = svc(json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "https", "port": 443, "protocol": "TCP", "nodePort": 30443}]}));
        let claims = a.update(&mut node_port, &external, "ns/s").await.unwrap();
        a.commit(claims).await;
        let spec = &node_port["spec"];
        let ip: Ipv4Addr = spec["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(a.contains(ip));
        assert_eq!((spec["clusterIPs"].clone(), spec["ipFamilies"].clone(), spec["ipFamilyPolicy"].clone()), (json!([ip.to_string()]), json!(["IPv4"]), json!("SingleStack")));
        let http = spec["ports"][0]["nodePort"].as_u64().unwrap() as u16;
        assert!(NODE_PORTS.contains(&http));
        assert_eq!(spec["ports"][1]["nodePort"], json!(30443));
        for key in [ip_key(ip), port_key(http), port_key(30443)] {
            assert_eq!(owner_of(&a, &key).await.as_deref(), Some("ns/s"), "{key}");
        }

        // NodePort → ExternalName (the strategy has cleared the fields):
        // everything is released once the update is written.
        let back = svc(json!({"type": "ExternalName", "externalName": "example.com", "ports": [{"name": "http", "port": 80}]}));
        let mut to_external = back.clone();
        let claims = a.update(&mut to_external, &node_port, "ns/s").await.unwrap();
        assert_eq!(to_external, back);
        assert_eq!(owner_of(&a, &ip_key(ip)).await.as_deref(), Some("ns/s"), "held until the write");
        a.commit(claims).await;
        for key in [ip_key(ip), port_key(http), port_key(30443)] {
            assert_eq!(owner_of(&a, &key).await, None, "{key} released");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn node_port_to_cluster_ip_releases_the_node_ports_only() {
        let (a, dir) = allocator().await;
        let mut old = svc(json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}));
        assert!(a.allocate(&mut old, "ns/s").await.unwrap().is_empty());
        let ip: Ipv4Addr = old["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        let port = old["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16;
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        new["spec"]["ports"][0].as_object_mut().unwrap().remove("nodePort");
        let claims = a.update(&mut new, &old, "ns/s").await.unwrap();
        a.commit(claims).await;
        assert_eq!(owner_of(&a, &port_key(port)).await, None);
        assert_eq!(owner_of(&a, &ip_key(ip)).await.as_deref(), Some("ns/s"));
        // Back to NodePort: a new node port; a taken one is refused as upstream.
        let mut again = new.clone();
        again["spec"]["type"] = json!("NodePort");
        a.claim(&port_key(30999), "other/svc").await.unwrap();
        again["spec"]["ports"] = json!([{"port": 80, "protocol": "TCP"}, {"name": "b", "port": 81, "protocol": "TCP", "nodePort": 30999}]);
        let err = a.update(&mut again.clone(), &new, "ns/s").await.unwrap_err();
        assert_eq!((err.code.as_u16(), err.reason), (422, "Invalid"));
        assert!(err.message.contains("spec.ports[1].nodePort: Invalid value: 30999: provided port is already allocated"), "{}", err.message);
        let held = a.store.list("/registry/skiff/nodeports/", &Default::default()).await.unwrap().items;
        let owners: Vec<&[u8]> = held.iter().map(|kv| &kv.value[..]).collect();
        assert_eq!(owners, [b"other/svc"], "a refused update keeps nothing");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_reverted_update_releases_what_it_claimed_and_keeps_what_was_held() {
        let (a, dir) = allocator().await;
        let external = svc(json!({"type": "ExternalName", "externalName": "example.com"}));
        let mut new = svc(json!({"type": "ClusterIP", "clusterIP": "10.43.0.9", "ports": [{"port": 80}]}));
        let claims = a.update(&mut new, &external, "ns/s").await.unwrap();
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.43.0.9"]));
        a.revert(claims).await;
        assert_eq!(owner_of(&a, &ip_key(Ipv4Addr::new(10, 43, 0, 9))).await, None);
        // An unchanged NodePort Service claims and releases nothing.
        let mut old = svc(json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}));
        assert!(a.allocate(&mut old, "ns/s").await.unwrap().is_empty());
        let claims = a.update(&mut old.clone(), &old, "ns/s").await.unwrap();
        assert!(claims.claimed.is_empty() && claims.released.is_empty(), "{claims:?}");
        a.revert(claims).await;
        let _ = std::fs::remove_dir_all(dir);
    }
}

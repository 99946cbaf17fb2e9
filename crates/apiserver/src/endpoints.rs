//! The `kubernetes` Service's endpoints: every live API server, as
//! upstream's lease endpoint reconciler keeps them. Each server renews a
//! lease on its address in the datastore (`/masterleases/<ip>`, as
//! upstream's keys) and writes the Endpoints and EndpointSlice from the
//! leases still current, so a dead server drops out once its lease runs
//! out and any other server reconciles.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;

use crate::registry::Registry;

const PREFIX: &str = "/masterleases/";
/// Upstream's defaults: a 15 s lease; renewed more often than upstream's
/// 10 s so a dead server is gone from the endpoints within 20 s.
const LEASE: Duration = Duration::from_secs(15);
const RENEW_EVERY: Duration = Duration::from_secs(5);

/// Renews this server's lease and reconciles, for as long as it runs.
pub async fn keep(registry: Registry, me: IpAddr, port: u16) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        if let Err(e) = renew(&registry, me, port).await {
            tracing::warn!("the kubernetes Service's endpoints: {e:#}");
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One round: this server's lease renewed, expired ones removed, the
/// endpoints written from the rest.
pub async fn renew(registry: &Registry, me: IpAddr, port: u16) -> Result<()> {
    let store = &registry.store;
    let key = format!("{PREFIX}{me}");
    let lease = serde_json::to_vec(&json!({"renewTime": now_ms(), "leaseDurationSeconds": LEASE.as_secs()}))?;
    match store.update(&key, lease.clone().into(), None).await {
        Err(skiff_store::Error::NotFound { .. }) => store.create(&key, lease.into()).await.map(|_| ()),
        other => other.map(|_| ()),
    }
    .context("renewing this server's lease")?;
    let leases = store.list(PREFIX, &Default::default()).await.context("listing the servers' leases")?;
    let mut live: Vec<IpAddr> = Vec::new();
    for kv in leases.items {
        let lease: serde_json::Value = serde_json::from_slice(&kv.value).unwrap_or_default();
        let expires = lease["renewTime"].as_i64().unwrap_or(0) + lease["leaseDurationSeconds"].as_i64().unwrap_or(0) * 1000;
        match kv.key[PREFIX.len()..].parse::<IpAddr>() {
            Ok(ip) if expires > now_ms() => live.push(ip),
            // Conditional: a server renewing at the same moment keeps its lease.
            _ => drop(store.delete(&kv.key, Some(kv.mod_revision)).await),
        }
    }
    live.sort();
    write(registry, &live, port).await
}

async fn write(registry: &Registry, servers: &[IpAddr], port: u16) -> Result<()> {
    let find = |group, plural| skiff_api::resources::find(group, "v1", plural).expect("endpoints are served");
    let ports = json!([{"name": "https", "port": port, "protocol": "TCP"}]);
    let addresses: Vec<_> = servers.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": addresses, "ports": ports}],
    });
    crate::reconcile(registry, find("", "endpoints"), endpoints).await?;
    let ipv4 = servers.first().is_none_or(IpAddr::is_ipv4);
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": if ipv4 { "IPv4" } else { "IPv6" },
        "endpoints": servers.iter().map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}})).collect::<Vec<_>>(),
        "ports": ports,
    });
    crate::reconcile(registry, find("discovery.k8s.io", "endpointslices"), slice).await
}

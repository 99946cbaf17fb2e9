//! `hostPort` on pods, as CNI's portmap plugin does it: traffic to the
//! node's own addresses on a pod's host port is DNATed to the pod. Its own
//! small table, written whole whenever this node's mapped ports change.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::net::Ipv4Addr;

use anyhow::{bail, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{reflector, watcher, WatchStreamExt};

use crate::nft;

pub const TABLE: &str = "skiff-hostports";

/// One mapped port: (host IP or unspecified, protocol, host port) → pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mapping {
    pub host_ip: Option<Ipv4Addr>,
    pub protocol: &'static str,
    pub host_port: u16,
    pub pod_ip: Ipv4Addr,
    pub container_port: u16,
}

/// The host ports of the running pods.
pub fn mappings(pods: &[std::sync::Arc<Pod>]) -> BTreeSet<Mapping> {
    let mut found = BTreeSet::new();
    for pod in pods {
        let Some(status) = pod.status.as_ref() else { continue };
        if pod.metadata.deletion_timestamp.is_some() || status.phase.as_deref() != Some("Running") {
            continue;
        }
        let spec = pod.spec.as_ref();
        // A pod on the host's network has its ports there already.
        if spec.and_then(|s| s.host_network) == Some(true) {
            continue;
        }
        let Some(pod_ip) = status.pod_ip.as_ref().and_then(|ip| ip.parse().ok()) else { continue };
        for port in spec.into_iter().flat_map(|s| &s.containers).flat_map(|c| c.ports.iter().flatten()) {
            let Some(host_port) = port.host_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) else { continue };
            let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
                "UDP" => "udp",
                "SCTP" => "sctp",
                _ => "tcp",
            };
            let host_ip = port.host_ip.as_ref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()).filter(|ip| !ip.is_unspecified());
            let Ok(container_port) = u16::try_from(port.container_port) else { continue };
            found.insert(Mapping { host_ip, protocol, host_port, pod_ip, container_port });
        }
    }
    found
}

/// The table for these mappings, replacing any earlier one. Pods of this
/// node (`pod_cidr`) reaching a host port are masqueraded, so that the
/// answer comes back through the host and is un-DNATed (hairpin); so is
/// the node itself reaching a port bound to 127.0.0.1, since a pod cannot
/// answer a loopback address.
pub fn table(mappings: &BTreeSet<Mapping>, pod_cidr: ipnet::Ipv4Net) -> String {
    let t = TABLE;
    let mut s = format!("{}table ip {t} {{\n", nft::fresh_table("ip", t));
    s.push_str("  chain hostports {\n");
    for m in mappings {
        let destination = match m.host_ip {
            Some(ip) => format!("ip daddr {ip}"),
            None => "fib daddr type local".into(),
        };
        let _ = writeln!(s, "    {destination} {} dport {} dnat to {}:{}", m.protocol, m.host_port, m.pod_ip, m.container_port);
    }
    s.push_str("  }\n");
    s.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
    for m in mappings {
        let _ = writeln!(s, "    ct status dnat ip saddr {{ {pod_cidr}, 127.0.0.0/8 }} ip daddr {} {} dport {} masquerade", m.pod_ip, m.protocol, m.container_port);
    }
    s.push_str("  }\n");
    s.push_str("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    jump hostports\n  }\n");
    s.push_str("  chain output {\n    type nat hook output priority -100; policy accept;\n    jump hostports\n  }\n");
    s.push_str("}\n");
    s
}

/// Follows this node's pods for ever; `bridge` is the pods' bridge.
pub async fn run(client: kube::Client, node_name: &str, pod_cidr: ipnet::Ipv4Net, bridge: &str) -> Result<()> {
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let (reader, writer) = reflector::store();
    let mut stream = std::pin::pin!(reflector(writer, watcher(pods, config)).default_backoff());
    let mut written: Option<BTreeSet<Mapping>> = None;
    loop {
        match stream.next().await {
            Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!("host ports: watching pods: {e}");
                continue;
            }
            None => bail!("the host ports' pod watch ended"),
        }
        let wanted = mappings(&reader.state());
        if written.as_ref() == Some(&wanted) {
            continue;
        }
        if wanted.iter().any(|m| m.host_ip.is_some_and(|ip| ip.is_loopback())) {
            // A packet from 127.0.0.1, DNATed to a pod, may leave through the
            // bridge only with this (portmap does the same).
            let path = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
            if let Err(e) = std::fs::write(&path, "1") {
                tracing::warn!("host ports on 127.0.0.1: setting {path}: {e}");
            }
        }
        let script = table(&wanted, pod_cidr);
        match tokio::task::spawn_blocking(move || nft::apply(&script)).await? {
            Ok(()) => written = Some(wanted),
            Err(e) => tracing::error!("host ports: {e:#}"),
        }
    }
}

pub fn clean_up() -> Result<()> {
    nft::delete_table("ip", TABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_pods_host_ports_become_dnat_rules_nft_accepts() {
        let pod: Pod = serde_yaml::from_str(
            "
metadata: {name: p}
spec:
  containers:
  - name: c
    ports:
    - {containerPort: 8080, hostPort: 18080}
    - {containerPort: 53, hostPort: 1053, protocol: UDP, hostIP: 192.0.2.2}
    - {containerPort: 9090}
status: {phase: Running, podIP: 10.42.0.7}
",
        )
        .unwrap();
        let found = mappings(&[std::sync::Arc::new(pod.clone())]);
        assert_eq!(found.len(), 2);
        let script = table(&found, "10.42.0.0/24".parse().unwrap());
        assert!(script.contains("fib daddr type local tcp dport 18080 dnat to 10.42.0.7:8080"), "{script}");
        assert!(script.contains("ip daddr 192.0.2.2 udp dport 1053 dnat to 10.42.0.7:53"), "{script}");
        assert!(script.contains("ct status dnat ip saddr { 10.42.0.0/24, 127.0.0.0/8 } ip daddr 10.42.0.7 tcp dport 8080 masquerade"), "{script}");
        let mut pending = pod;
        pending.status.as_mut().unwrap().phase = Some("Pending".into());
        assert!(mappings(&[std::sync::Arc::new(pending)]).is_empty());
        if nft::run(&["--version"], None).is_ok() {
            nft::run(&["-c", "-f", "-"], Some(&script)).unwrap();
        }
    }
}

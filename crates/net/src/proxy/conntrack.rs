//! Stale UDP flows (kubernetes#59368): conntrack keeps sending a UDP
//! "connection" to the endpoint it was first DNATed to, or keeps refusing
//! it after a Service with no endpoints gets one, until the flow is deleted.
//! Deleted with conntrack-tools' `conntrack -D`, as upstream's kube-proxy
//! did before it spoke netlink itself.

use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use super::model::{Endpoint, Protocol, ServicePortRules};

/// `conntrack -D` filters, one deletion each.
pub type Flow = Vec<String>;

/// The flows to delete after a Service went from `old` to `new`.
pub fn stale_udp(old: &[ServicePortRules], new: &[ServicePortRules]) -> Vec<Flow> {
    let before: HashMap<String, &ServicePortRules> = old.iter().filter(|p| p.protocol == Protocol::Udp).map(|p| (p.id(), p)).collect();
    let mut flows = Vec::new();
    for port in new.iter().filter(|p| p.protocol == Protocol::Udp) {
        let previous = before.get(&port.id());
        let had = previous.map(|p| p.all_endpoints.clone()).unwrap_or_default();
        if had.is_empty() && !port.all_endpoints.is_empty() {
            // Refused until now: the refusals' flows would keep refusing.
            for ip in port.cluster_ips.iter().chain(&port.external_ips) {
                flows.push(args(&["--orig-dst", &ip.to_string()]));
            }
            if let Some(node_port) = port.node_port {
                flows.push(args(&["--orig-port-dst", &node_port.to_string()]));
            }
        }
        flows.extend(gone(port, &had.difference(&port.all_endpoints).cloned().collect()));
    }
    for (id, port) in &before {
        if !new.iter().any(|p| &p.id() == id) {
            flows.extend(gone(port, &port.all_endpoints));
        }
    }
    flows
}

/// Flows of `port` DNATed to endpoints that went away.
fn gone(port: &ServicePortRules, endpoints: &BTreeSet<Endpoint>) -> Vec<Flow> {
    let mut flows = Vec::new();
    for e in endpoints {
        for ip in port.cluster_ips.iter().chain(&port.external_ips) {
            flows.push(args(&["--orig-dst", &ip.to_string(), "--dst-nat", &e.ip.to_string()]));
        }
        if let Some(node_port) = port.node_port {
            flows.push(args(&["--orig-port-dst", &node_port.to_string(), "--dst-nat", &e.ip.to_string()]));
        }
    }
    flows
}

fn args(filter: &[&str]) -> Flow {
    ["-D", "-p", "udp"].iter().chain(filter).map(|s| s.to_string()).collect()
}

/// Deletes the flows; a missing `conntrack` binary is said once.
pub fn delete(flows: &[Flow]) {
    static MISSING: AtomicBool = AtomicBool::new(false);
    for flow in flows {
        // Exit status 1 means no flow matched: nothing to do.
        match Command::new("conntrack").args(flow).stdout(Stdio::null()).stderr(Stdio::null()).status() {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !MISSING.swap(true, Ordering::Relaxed) {
                    tracing::error!("the conntrack binary is missing (apt-get install conntrack): stale UDP flows to removed endpoints stay");
                }
                return;
            }
            Err(e) => tracing::warn!("conntrack {}: {e}", flow.join(" ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(endpoints: &[&str]) -> ServicePortRules {
        let eps: Vec<Endpoint> = endpoints.iter().map(|ip| Endpoint { ip: ip.parse().unwrap(), port: 53 }).collect();
        ServicePortRules {
            namespace: "ns".into(),
            name: "dns".into(),
            port_name: "".into(),
            protocol: Protocol::Udp,
            port: 53,
            cluster_ips: vec!["10.43.0.9".parse().unwrap()],
            node_port: None,
            external_ips: vec![],
            affinity: None,
            external_local: false,
            internal_local: false,
            cluster_endpoints: eps.clone(),
            local_endpoints: vec![],
            all_endpoints: eps.into_iter().collect(),
        }
    }

    #[test]
    fn flows_to_removed_endpoints_and_past_refusals_are_deleted() {
        let joined = |flows: Vec<Flow>| flows.into_iter().map(|f| f.join(" ")).collect::<Vec<_>>();
        assert_eq!(joined(stale_udp(&[port(&["10.42.0.2", "10.42.0.3"])], &[port(&["10.42.0.3"])])), ["-D -p udp --orig-dst 10.43.0.9 --dst-nat 10.42.0.2"]);
        assert_eq!(joined(stale_udp(&[port(&[])], &[port(&["10.42.0.3"])])), ["-D -p udp --orig-dst 10.43.0.9"]);
        assert_eq!(joined(stale_udp(&[port(&["10.42.0.3"])], &[])), ["-D -p udp --orig-dst 10.43.0.9 --dst-nat 10.42.0.3"]);
        assert!(stale_udp(&[port(&["10.42.0.3"])], &[port(&["10.42.0.3"])]).is_empty());
    }
}

//! The nftables content, in upstream kube-proxy's nftables shape: one
//! table; verdict maps keyed by `IP . protocol . port` send a packet to its
//! service port's chain; that chain picks an endpoint chain with `numgen
//! random` (or by the client's affinity set); the endpoint chain DNATs.
//! Each Service contributes a `Fragment`, so a change to one Service
//! rewrites only its own chains and map elements.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::model::{Endpoint, ServicePortRules};

pub const TABLE: &str = "skiff-proxy";
/// The packet mark that asks for masquerading on the way out.
const MASQUERADE_MARK: &str = "0x4000";

/// Map names and what they are keyed by.
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
pub const CLUSTER_IPS: &str = "cluster-ips";

/// What one Service adds to the table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Chain name → its rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// (map or set, element) pairs.
    pub elements: Vec<(&'static str, String)>,
    /// Affinity sets: name → timeout in seconds.
    pub sets: BTreeMap<String, u32>,
}

/// What the whole node needs to know besides the Services.
#[derive(Debug, Clone)]
pub struct NodeContext {
    pub cluster_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    /// Where NodePorts answer: the node's addresses.
    pub node_ips: Vec<Ipv4Addr>,
}

/// A short stable hash, so that chain names stay unique when cut.
fn hash(text: &str) -> String {
    // FNV-1a: stable across runs and builds, unlike std's SipHash keys.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{:08X}", h as u32)
}

fn service_chain(id: &str) -> String {
    format!("service-{}-{id}", hash(id))
}
fn external_chain(id: &str) -> String {
    format!("external-{}-{id}", hash(id))
}
fn local_chain(id: &str) -> String {
    format!("local-{}-{id}", hash(id))
}
fn endpoint_chain(id: &str, e: &Endpoint) -> String {
    let key = format!("{id}__{}/{}", e.ip, e.port);
    format!("endpoint-{}-{key}", hash(&key))
}
/// Named by its timeout too: a new timeout is a new set, never a set
/// changed while rules use it.
fn affinity_set(id: &str, e: &Endpoint, timeout: u32) -> String {
    let key = format!("{id}__{}/{}", e.ip, e.port);
    format!("affinity-{}-{key}", hash(&format!("{key}/{timeout}")))
}

/// The table's fixed part: base chains hooked into the kernel, the maps,
/// and the helper chains every Service's chains jump to.
pub fn base(node: &NodeContext) -> String {
    let t = TABLE;
    let node_ips: Vec<String> = node.node_ips.iter().map(|ip| ip.to_string()).collect();
    let mut s = String::new();
    let _ = writeln!(s, "add table ip {t}");
    let _ = writeln!(s, "add map ip {t} {SERVICE_IPS} {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}");
    let _ = writeln!(s, "add map ip {t} {SERVICE_NODEPORTS} {{ type inet_proto . inet_service : verdict ; }}");
    let _ = writeln!(s, "add map ip {t} {NO_ENDPOINT_SERVICES} {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}");
    let _ = writeln!(s, "add map ip {t} {NO_ENDPOINT_NODEPORTS} {{ type inet_proto . inet_service : verdict ; }}");
    let _ = writeln!(s, "add set ip {t} {CLUSTER_IPS} {{ type ipv4_addr ; }}");
    let _ = writeln!(s, "add set ip {t} nodeport-ips {{ type ipv4_addr ; }}");
    if !node_ips.is_empty() {
        let _ = writeln!(s, "add element ip {t} nodeport-ips {{ {} }}", node_ips.join(", "));
    }
    let chains: [(&str, Option<&str>, &[String]); 14] = [
        ("nat-prerouting", Some("type nat hook prerouting priority dstnat"), &["jump services".into()]),
        ("nat-output", Some("type nat hook output priority -100"), &["jump services".into()]),
        ("nat-postrouting", Some("type nat hook postrouting priority srcnat"), &["jump masquerading".into()]),
        ("filter-input", Some("type filter hook input priority -110"), &["ct state new jump nodeport-endpoints-check".into(), "ct state new jump service-endpoints-check".into()]),
        ("filter-forward", Some("type filter hook forward priority -110"), &["ct state new jump service-endpoints-check".into(), "ct state new jump cluster-ips-check".into()]),
        ("filter-output", Some("type filter hook output priority -110"), &["ct state new jump service-endpoints-check".into()]),
        ("filter-output-post-dnat", Some("type filter hook output priority -90"), &["ct state new jump cluster-ips-check".into()]),
        ("services", None, &[format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"), format!("ip daddr @nodeport-ips meta l4proto . th dport vmap @{SERVICE_NODEPORTS}")]),
        ("service-endpoints-check", None, &[format!("ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}")]),
        ("nodeport-endpoints-check", None, &[format!("ip daddr @nodeport-ips meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}")]),
        // A cluster IP's port nobody serves is refused; an address of the
        // range no Service has is dropped, as upstream does.
        // (Addresses this node holds, such as the cluster DNS IP, pass.)
        ("cluster-ips-check", None, &[format!("ip daddr @{CLUSTER_IPS} reject"), format!("ip daddr {} fib daddr type != local drop", node.service_cidr)]),
        ("mark-for-masquerade", None, &[format!("meta mark set meta mark or {MASQUERADE_MARK}")]),
        ("masquerading", None, &[format!("meta mark and {MASQUERADE_MARK} == 0 return"), format!("meta mark set meta mark xor {MASQUERADE_MARK}"), "masquerade fully-random".into()]),
        ("reject-chain", None, &["reject".into()]),
    ];
    // Chains before rules: a rule may only jump to a chain that exists.
    for (name, hook, _) in &chains {
        match hook {
            Some(hook) => {
                let _ = writeln!(s, "add chain ip {t} {name} {{ {hook} ; policy accept ; }}");
            }
            None => {
                let _ = writeln!(s, "add chain ip {t} {name}");
            }
        }
    }
    for (name, _, rules) in chains {
        for rule in rules {
            let _ = writeln!(s, "add rule ip {t} {name} {rule}");
        }
    }
    s
}

/// A Service's chains and map entries.
pub fn fragment(ports: &[ServicePortRules], node: &NodeContext) -> Fragment {
    let mut f = Fragment::default();
    for port in ports {
        add_port(&mut f, port, node);
    }
    f
}

fn add_port(f: &mut Fragment, p: &ServicePortRules, node: &NodeContext) {
    let id = p.id();
    let proto = p.protocol.nft();
    let (service, external, local) = (service_chain(&id), external_chain(&id), local_chain(&id));
    for ip in &p.cluster_ips {
        f.elements.push((CLUSTER_IPS, ip.to_string()));
    }

    // Traffic to a cluster IP.
    if p.cluster_endpoints.is_empty() {
        // Refused at once; under internalTrafficPolicy Local, dropped (upstream).
        let verdict = if p.internal_local { "drop" } else { "goto reject-chain" };
        for ip in &p.cluster_ips {
            f.elements.push((NO_ENDPOINT_SERVICES, format!("{ip} . {proto} . {} : {verdict}", p.port)));
        }
    } else {
        let mut rules = Vec::new();
        for ip in &p.cluster_ips {
            // From outside the pod network (a node's own processes): masqueraded,
            // so the answer comes back through this node.
            rules.push(format!("ip daddr {ip} {proto} dport {} ip saddr != {} jump mark-for-masquerade", p.port, node.cluster_cidr));
            f.elements.push((SERVICE_IPS, format!("{ip} . {proto} . {} : goto {service}", p.port)));
        }
        rules.extend(pick(f, &id, p, &p.cluster_endpoints));
        f.chains.insert(service.clone(), rules);
    }

    // Traffic from outside: NodePorts, externalIPs, LoadBalancer IPs.
    if !p.has_external() {
        return;
    }
    let reachable = if p.external_local { !p.local_endpoints.is_empty() } else { !p.cluster_endpoints.is_empty() };
    if !reachable {
        // No endpoint for it: refused, or dropped when only this node's
        // endpoints count (upstream: the client may try another node).
        let verdict = if p.external_local { "drop" } else { "goto reject-chain" };
        for ip in &p.external_ips {
            f.elements.push((NO_ENDPOINT_SERVICES, format!("{ip} . {proto} . {} : {verdict}", p.port)));
        }
        if let Some(node_port) = p.node_port {
            f.elements.push((NO_ENDPOINT_NODEPORTS, format!("{proto} . {node_port} : {verdict}")));
        }
        return;
    }
    let mut rules = Vec::new();
    if p.external_local {
        // Pods and the node itself reach it as its cluster IP would; others
        // keep their source address and reach only this node's endpoints.
        if !p.cluster_endpoints.is_empty() {
            rules.push(format!("ip saddr {} goto {service}", node.cluster_cidr));
            rules.push("fib saddr type local jump mark-for-masquerade".into());
            rules.push(format!("fib saddr type local goto {service}"));
        }
        rules.push(format!("goto {local}"));
        let chosen = pick(f, &id, p, &p.local_endpoints);
        f.chains.insert(local, chosen);
    } else {
        rules.push("jump mark-for-masquerade".into());
        rules.push(format!("goto {service}"));
    }
    f.chains.insert(external.clone(), rules);
    for ip in &p.external_ips {
        f.elements.push((SERVICE_IPS, format!("{ip} . {proto} . {} : goto {external}", p.port)));
    }
    if let Some(node_port) = p.node_port {
        f.elements.push((SERVICE_NODEPORTS, format!("{proto} . {node_port} : goto {external}")));
    }
}

/// The rules that choose an endpoint and the endpoints' own chains.
fn pick(f: &mut Fragment, id: &str, p: &ServicePortRules, endpoints: &[Endpoint]) -> Vec<String> {
    let mut rules = Vec::new();
    if let Some(timeout) = p.affinity {
        for e in endpoints {
            let set = affinity_set(id, e, timeout);
            rules.push(format!("ip saddr @{set} goto {}", endpoint_chain(id, e)));
            f.sets.insert(set, timeout);
        }
    }
    // Endpoint i of n is taken with probability 1/(n-i) when none before it
    // was: each one 1/n in all. (Upstream's single `numgen … vmap {…}`
    // makes an anonymous map per Service, whose creation and listing the
    // kernel does in quadratic time: 52 s for 10,000 Services here.)
    for (i, e) in endpoints.iter().enumerate() {
        let left = endpoints.len() - i;
        let chain = endpoint_chain(id, e);
        rules.push(if left > 1 { format!("numgen random mod {left} == 0 goto {chain}") } else { format!("goto {chain}") });
    }
    for e in endpoints {
        let mut chain = vec![format!("ip saddr {} jump mark-for-masquerade", e.ip)];
        if let Some(timeout) = p.affinity {
            chain.push(format!("update @{} {{ ip saddr }}", affinity_set(id, e, timeout)));
        }
        chain.push(format!("meta l4proto {} dnat to {}:{}", p.protocol.nft(), e.ip, e.port));
        f.chains.insert(endpoint_chain(id, e), chain);
    }
    rules
}

/// The nftables commands that turn `old` into `new`, in an order one
/// transaction accepts: chains and sets first, then rules, then map
/// elements, then what nothing refers to any more.
pub fn diff(old: &Fragment, new: &Fragment, out: &mut String) {
    let t = TABLE;
    for (set, timeout) in new.sets.iter().filter(|(set, _)| !old.sets.contains_key(*set)) {
        let _ = writeln!(out, "add set ip {t} {set} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}");
    }
    for chain in new.chains.keys().filter(|c| !old.chains.contains_key(*c)) {
        let _ = writeln!(out, "add chain ip {t} {chain}");
    }
    for (chain, rules) in &new.chains {
        match old.chains.get(chain) {
            Some(before) if before == rules => continue,
            Some(_) => {
                let _ = writeln!(out, "flush chain ip {t} {chain}");
            }
            None => {}
        }
        for rule in rules {
            let _ = writeln!(out, "add rule ip {t} {chain} {rule}");
        }
    }
    let keys = |f: &Fragment| -> BTreeMap<(&'static str, String), String> {
        f.elements.iter().map(|(map, element)| {
            let (key, verdict) = element.split_once(" : ").unwrap_or((element, ""));
            ((*map, key.to_string()), verdict.to_string())
        }).collect()
    };
    let (before, after) = (keys(old), keys(new));
    for ((map, key), verdict) in &before {
        if after.get(&(map, key.clone())) != Some(verdict) {
            let _ = writeln!(out, "delete element ip {t} {map} {{ {key} }}");
        }
    }
    for ((map, key), verdict) in &after {
        if before.get(&(map, key.clone())) != Some(verdict) {
            let element = if verdict.is_empty() { key.clone() } else { format!("{key} : {verdict}") };
            let _ = writeln!(out, "add element ip {t} {map} {{ {element} }}");
        }
    }
    for chain in old.chains.keys().filter(|c| !new.chains.contains_key(*c)) {
        let _ = writeln!(out, "flush chain ip {t} {chain}");
    }
    for chain in old.chains.keys().filter(|c| !new.chains.contains_key(*c)) {
        let _ = writeln!(out, "delete chain ip {t} {chain}");
    }
    for set in old.sets.keys().filter(|s| !new.sets.contains_key(*s)) {
        let _ = writeln!(out, "delete set ip {t} {set}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::model::{Endpoint, Protocol};

    fn node() -> NodeContext {
        NodeContext { cluster_cidr: "10.42.0.0/16".parse().unwrap(), service_cidr: "10.43.0.0/16".parse().unwrap(), node_ips: vec!["192.0.2.2".parse().unwrap()] }
    }

    fn port(endpoints: &[(&str, bool)], affinity: Option<u32>, external_local: bool) -> ServicePortRules {
        let all: Vec<Endpoint> = endpoints.iter().map(|(ip, _)| Endpoint { ip: ip.parse().unwrap(), port: 8080 }).collect();
        let local: Vec<Endpoint> = endpoints.iter().filter(|(_, local)| *local).map(|(ip, _)| Endpoint { ip: ip.parse().unwrap(), port: 8080 }).collect();
        ServicePortRules {
            namespace: "ns".into(),
            name: "web".into(),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            cluster_ips: vec!["10.43.0.5".parse().unwrap()],
            node_port: Some(30080),
            external_ips: vec!["192.0.2.9".parse().unwrap()],
            affinity,
            external_local,
            internal_local: false,
            all_endpoints: all.iter().cloned().collect(),
            cluster_endpoints: all,
            local_endpoints: local,
        }
    }

    #[test]
    fn a_service_is_one_chain_per_port_and_endpoint_reached_through_the_maps() {
        let f = fragment(&[port(&[("10.42.0.2", true), ("10.42.1.2", false)], None, false)], &node());
        let service = f.chains.iter().find(|(name, _)| name.starts_with("service-")).unwrap();
        assert!(service.0.ends_with("-ns/web/tcp/http"), "{}", service.0);
        assert!(service.1[1].starts_with("numgen random mod 2 == 0 goto endpoint-"), "{:?}", service.1);
        assert!(service.1[2].starts_with("goto endpoint-"), "{:?}", service.1);
        assert_eq!(f.chains.keys().filter(|c| c.starts_with("endpoint-")).count(), 2);
        let elements: Vec<String> = f.elements.iter().map(|(m, e)| format!("{m}: {e}")).collect();
        assert!(elements.iter().any(|e| e.starts_with("service-ips: 10.43.0.5 . tcp . 80 : goto service-")), "{elements:?}");
        assert!(elements.iter().any(|e| e.starts_with("service-nodeports: tcp . 30080 : goto external-")), "{elements:?}");
        assert!(elements.iter().any(|e| e.starts_with("service-ips: 192.0.2.9 . tcp . 80 : goto external-")), "{elements:?}");

        let none = fragment(&[port(&[], None, false)], &node());
        assert!(none.chains.is_empty());
        let elements: Vec<String> = none.elements.iter().map(|(m, e)| format!("{m}: {e}")).collect();
        assert!(elements.contains(&"no-endpoint-services: 10.43.0.5 . tcp . 80 : goto reject-chain".to_string()), "{elements:?}");
        assert!(elements.contains(&"no-endpoint-nodeports: tcp . 30080 : goto reject-chain".to_string()), "{elements:?}");
    }

    #[test]
    fn a_change_rewrites_only_what_changed() {
        let one = fragment(&[port(&[("10.42.0.2", true)], None, false)], &node());
        let two = fragment(&[port(&[("10.42.0.2", true), ("10.42.1.2", false)], None, false)], &node());
        let mut script = String::new();
        diff(&one, &two, &mut script);
        let lines: Vec<&str> = script.lines().collect();
        // The new endpoint's chain, and the service chain's new choice; no map is touched.
        assert!(lines.iter().any(|l| l.starts_with("add chain ip skiff-proxy endpoint-") && l.contains("10.42.1.2/8080")), "{script}");
        assert_eq!(lines.iter().filter(|l| l.starts_with("flush chain")).count(), 1, "{script}");
        assert!(!script.contains("element"), "{script}");
        let mut same = String::new();
        diff(&two, &two, &mut same);
        assert!(same.is_empty(), "{same}");
    }

    /// The real `nft` parses every kind of change in one transaction (`-c`:
    /// checked, not applied).
    #[test]
    fn nft_accepts_the_rules() {
        if crate::nft::run(&["--version"], None).is_err() {
            eprintln!("nft is not installed here; skipped");
            return;
        }
        let steps = [
            Fragment::default(),
            fragment(&[port(&[("10.42.0.2", true), ("10.42.1.2", false)], Some(10800), false)], &node()),
            fragment(&[port(&[("10.42.1.2", false)], Some(60), true)], &node()),
            fragment(&[port(&[("10.42.0.2", true)], None, true)], &node()),
            fragment(&[port(&[], None, false)], &node()),
            Fragment::default(),
        ];
        let mut script = format!("{}{}", crate::nft::fresh_table("ip", TABLE), base(&node()));
        for pair in steps.windows(2) {
            diff(&pair[0], &pair[1], &mut script);
        }
        if let Err(e) = crate::nft::run(&["-c", "-f", "-"], Some(&script)) {
            panic!("{e:#}\n{script}");
        }
    }
}

//! NetworkPolicy as nftables sets and rules: the pods a policy selects and
//! the peers and ports each of its rules allows become sets keyed by pod IP,
//! so the number of rules grows with the policies' rules, never with pods ×
//! policies. Pure: what the cluster holds in, a table's text out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const TABLE: &str = "skiff-netpol";

/// A pod as policies see it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub ip: Ipv4Addr,
    /// Its containers' named ports: name → (protocol, number).
    pub named_ports: Vec<(String, String, u16)>,
}

/// One direction of one rule of one policy, as sets.
#[derive(Debug, Default, PartialEq)]
struct Rule {
    /// None: every peer.
    peers: Option<Vec<(Ipv4Addr, Ipv4Addr)>>,
    /// None: every port.
    ports: Option<Ports>,
}

#[derive(Debug, Default, PartialEq)]
struct Ports {
    /// (protocol, first, last).
    numbered: Vec<(String, u16, u16)>,
    /// Named ports resolved per pod: (pod IP, protocol, port).
    named: Vec<(Ipv4Addr, String, u16)>,
}

#[derive(Debug, Default, PartialEq)]
struct Policy {
    pods: BTreeSet<Ipv4Addr>,
    ingress: Option<Vec<Rule>>,
    egress: Option<Vec<Rule>>,
}

/// A label selector, parsed once. One that does not parse (validation
/// refuses such) selects nothing.
struct Selector(Option<kube::core::Selector>);

impl Selector {
    fn new(selector: &LabelSelector) -> Selector {
        Selector(kube::core::Selector::try_from(selector.clone()).ok())
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        use kube::core::SelectorExt;
        self.0.as_ref().is_some_and(|s| s.matches(labels))
    }
}

/// The cluster's pods by namespace, and the namespaces' labels.
struct Cluster<'a> {
    pods: HashMap<&'a str, Vec<&'a PodInfo>>,
    namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
}

impl<'a> Cluster<'a> {
    /// The pods a peer (pod and/or namespace selector) names, for a
    /// policy in `namespace`.
    fn peers(&self, peer: &NetworkPolicyPeer, namespace: &str) -> Vec<&'a PodInfo> {
        let pods = peer.pod_selector.as_ref().map(Selector::new);
        let in_namespaces: Vec<&str> = match &peer.namespace_selector {
            Some(selector) => {
                let selector = Selector::new(selector);
                self.namespaces.iter().filter(|(_, labels)| selector.matches(labels)).map(|(name, _)| name.as_str()).collect()
            }
            None => vec![namespace],
        };
        in_namespaces.iter().flat_map(|ns| self.pods.get(ns).into_iter().flatten()).filter(|pod| pods.as_ref().is_none_or(|s| s.matches(&pod.labels))).copied().collect()
    }
}

/// The sets and rules for `policies` over `pods` in `namespaces` (name →
/// labels), as an nftables table.
pub fn render(policies: &[NetworkPolicy], pods: &[PodInfo], namespaces: &BTreeMap<String, BTreeMap<String, String>>) -> String {
    let mut by_namespace: HashMap<&str, Vec<&PodInfo>> = HashMap::new();
    for pod in pods {
        by_namespace.entry(pod.namespace.as_str()).or_default().push(pod);
    }
    let cluster = Cluster { pods: by_namespace, namespaces };
    let compiled: Vec<Policy> = policies.iter().filter_map(|p| compile(p, &cluster)).collect();
    let mut out = String::new();
    let mut sets = String::new();
    let (mut ingress_isolated, mut egress_isolated) = (BTreeSet::new(), BTreeSet::new());
    let (mut ingress_rules, mut egress_rules) = (String::new(), String::new());
    for (i, policy) in compiled.iter().enumerate() {
        if policy.pods.is_empty() {
            continue;
        }
        let pods_set = format!("p{i}-pods");
        set(&mut sets, &pods_set, "ipv4_addr", false, policy.pods.iter().map(|ip| ip.to_string()));
        for (direction, rules, isolated, text) in [("i", &policy.ingress, &mut ingress_isolated, &mut ingress_rules), ("e", &policy.egress, &mut egress_isolated, &mut egress_rules)] {
            let Some(rules) = rules else { continue };
            isolated.extend(policy.pods.iter().copied());
            // Ingress: the policy's pods are the destination, peers the source.
            let (own, peer) = if direction == "i" { ("daddr", "saddr") } else { ("saddr", "daddr") };
            for (k, rule) in rules.iter().enumerate() {
                let mut matcher = format!("ip {own} @{pods_set}");
                if let Some(peers) = &rule.peers {
                    if peers.is_empty() {
                        continue;
                    }
                    let name = format!("p{i}-{direction}{k}-peers");
                    set(&mut sets, &name, "ipv4_addr", true, peers.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }));
                    let _ = write!(matcher, " ip {peer} @{name}");
                }
                // Passing one direction returns to the next check; passing the last accepts.
                let verdict = if direction == "e" { "return" } else { "accept" };
                match &rule.ports {
                    None => {
                        let _ = writeln!(text, "    {matcher} {verdict}");
                    }
                    Some(Ports { numbered, named }) => {
                        if !numbered.is_empty() {
                            let name = format!("p{i}-{direction}{k}-ports");
                            set(&mut sets, &name, "inet_proto . inet_service", true, numbered.iter().map(|(proto, a, b)| if a == b { format!("{proto} . {a}") } else { format!("{proto} . {a}-{b}") }));
                            let _ = writeln!(text, "    {matcher} meta l4proto . th dport @{name} {verdict}");
                        }
                        if !named.is_empty() {
                            let name = format!("p{i}-{direction}{k}-named");
                            set(&mut sets, &name, "ipv4_addr . inet_proto . inet_service", false, named.iter().map(|(ip, proto, port)| format!("{ip} . {proto} . {port}")));
                            let _ = writeln!(text, "    {matcher} ip daddr . meta l4proto . th dport @{name} {verdict}");
                        }
                    }
                }
            }
        }
    }
    let _ = writeln!(out, "table inet {TABLE} {{");
    set(&mut out, "ingress-isolated", "ipv4_addr", false, ingress_isolated.iter().map(|ip| ip.to_string()));
    set(&mut out, "egress-isolated", "ipv4_addr", false, egress_isolated.iter().map(|ip| ip.to_string()));
    out.push_str(&sets);
    // Before the service proxy's and everyone's filters; connections already
    // allowed keep going whatever changes, as upstream's policies behave.
    let _ = writeln!(
        out,
        "  chain forward {{\n    type filter hook forward priority filter - 10; policy accept;\n    ct state established,related accept\n    ip saddr @egress-isolated jump egress\n    ip daddr @ingress-isolated jump ingress\n  }}"
    );
    // What is dropped is logged (at most 1,000 packets a second) for
    // AppSafe to report: NFLOG, since this kernel has no NFQUEUE.
    let drop = format!("    limit rate 1000/second burst 1000 packets log group {}\n    counter drop", crate::appsafe::LOG_GROUP);
    let _ = writeln!(out, "  chain egress {{\n{egress_rules}{drop}\n  }}");
    let _ = writeln!(out, "  chain ingress {{\n{ingress_rules}{drop}\n  }}");
    out.push_str("}\n");
    out
}

fn set(out: &mut String, name: &str, kind: &str, interval: bool, elements: impl Iterator<Item = String>) {
    let elements: Vec<String> = elements.collect();
    let _ = write!(out, "  set {name} {{\n    type {kind}\n");
    if interval {
        out.push_str("    flags interval\n    auto-merge\n");
    }
    if !elements.is_empty() {
        let _ = writeln!(out, "    elements = {{ {} }}", elements.join(", "));
    }
    out.push_str("  }\n");
}

fn compile(policy: &NetworkPolicy, cluster: &Cluster) -> Option<Policy> {
    let namespace = policy.metadata.namespace.as_deref()?;
    let spec = policy.spec.as_ref()?;
    let selector = Selector::new(&spec.pod_selector);
    let selected: Vec<&PodInfo> = cluster.pods.get(namespace).into_iter().flatten().filter(|p| selector.matches(&p.labels)).copied().collect();
    let types = spec.policy_types.clone().unwrap_or_else(|| {
        // As the API server defaults them, for a policy that predates it.
        let mut types = vec!["Ingress".to_string()];
        if spec.egress.is_some() {
            types.push("Egress".into());
        }
        types
    });
    let peers_of = |peers: &Option<Vec<NetworkPolicyPeer>>| -> Option<Vec<(Ipv4Addr, Ipv4Addr)>> {
        let peers = peers.as_ref().filter(|p| !p.is_empty())?;
        let mut ranges = Vec::new();
        for peer in peers {
            if let Some(block) = &peer.ip_block {
                ranges.extend(block_ranges(&block.cidr, block.except.as_deref().unwrap_or_default()));
                continue;
            }
            ranges.extend(cluster.peers(peer, namespace).iter().map(|pod| (pod.ip, pod.ip)));
        }
        Some(ranges)
    };
    let ports_of = |ports: &Option<Vec<NetworkPolicyPort>>, holders: &[&PodInfo]| -> Option<Ports> {
        let ports = ports.as_ref().filter(|p| !p.is_empty())?;
        let (mut numbered, mut named) = (Vec::new(), Vec::new());
        for port in ports {
            let proto = port.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            match &port.port {
                None => numbered.push((proto, 0, 65535)),
                Some(IntOrString::Int(n)) => {
                    let first = u16::try_from(*n).unwrap_or(0);
                    let last = port.end_port.and_then(|e| u16::try_from(e).ok()).unwrap_or(first).max(first);
                    numbered.push((proto, first, last));
                }
                Some(IntOrString::String(name)) => {
                    for pod in holders {
                        for (_, _, number) in pod.named_ports.iter().filter(|(n, p, _)| n == name && p.eq_ignore_ascii_case(&proto)) {
                            named.push((pod.ip, proto.clone(), *number));
                        }
                    }
                }
            }
        }
        Some(Ports { numbered, named })
    };
    let ingress = types.iter().any(|t| t == "Ingress").then(|| {
        spec.ingress.iter().flatten().map(|rule| Rule { peers: peers_of(&rule.from), ports: ports_of(&rule.ports, &selected) }).collect()
    });
    let egress = types.iter().any(|t| t == "Egress").then(|| {
        spec.egress
            .iter()
            .flatten()
            .map(|rule| {
                // A named port is the destination's: of the rule's peer pods, or any pod.
                let holders: Vec<&PodInfo> = match rule.to.as_ref().filter(|t| !t.is_empty()) {
                    Some(peers) => peers.iter().filter(|p| p.ip_block.is_none()).flat_map(|peer| cluster.peers(peer, namespace)).collect(),
                    None => cluster.pods.values().flatten().copied().collect(),
                };
                Rule { peers: peers_of(&rule.to), ports: ports_of(&rule.ports, &holders) }
            })
            .collect()
    });
    Some(Policy { pods: selected.iter().map(|p| p.ip).collect(), ingress, egress })
}

/// An ipBlock as address ranges: the CIDR less its exceptions.
fn block_ranges(cidr: &str, except: &[String]) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let Ok(net) = cidr.parse::<Ipv4Net>() else { return Vec::new() };
    let mut ranges = vec![(u32::from(net.network()), u32::from(net.broadcast()))];
    for hole in except.iter().filter_map(|e| e.parse::<Ipv4Net>().ok()) {
        let (lo, hi) = (u32::from(hole.network()), u32::from(hole.broadcast()));
        ranges = ranges
            .into_iter()
            .flat_map(|(a, b)| {
                if hi < a || lo > b {
                    return vec![(a, b)];
                }
                let mut kept = Vec::new();
                if lo > a {
                    kept.push((a, lo - 1));
                }
                if hi < b {
                    kept.push((hi + 1, b));
                }
                kept
            })
            .collect();
    }
    ranges.into_iter().map(|(a, b)| (Ipv4Addr::from(a), Ipv4Addr::from(b))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, app: &str, ip: &str) -> PodInfo {
        PodInfo { namespace: ns.into(), labels: BTreeMap::from([("app".into(), app.into())]), ip: ip.parse().unwrap(), named_ports: vec![("http".into(), "TCP".into(), 8080)] }
    }

    fn policy(ns: &str, spec: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "namespace": ns}, "spec": spec})).unwrap()
    }

    #[test]
    fn except_punches_holes_in_a_block() {
        let ranges = block_ranges("10.0.0.0/24", &["10.0.0.64/26".into()]);
        let text: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        assert_eq!(text, ["10.0.0.0-10.0.0.63", "10.0.0.128-10.0.0.255"]);
    }

    #[test]
    fn policies_become_sets_and_one_rule_per_policy_rule() {
        let pods = vec![pod("x", "a", "10.1.0.1"), pod("x", "b", "10.1.0.2"), pod("y", "a", "10.1.1.1")];
        let namespaces = BTreeMap::from([("x".to_string(), BTreeMap::from([("ns".to_string(), "x".to_string())])), ("y".to_string(), BTreeMap::from([("ns".to_string(), "y".to_string())]))]);
        let p = policy("x", serde_json::json!({
            "podSelector": {"matchLabels": {"app": "a"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": 80, "endPort": 90}, {"port": "http"}]}],
            "egress": [],
        }));
        let text = render(&[p], &pods, &namespaces);
        assert!(text.contains("set ingress-isolated {\n    type ipv4_addr\n    elements = { 10.1.0.1 }"), "{text}");
        assert!(text.contains("set egress-isolated {\n    type ipv4_addr\n    elements = { 10.1.0.1 }"), "{text}");
        assert!(text.contains("elements = { 10.1.1.1 }"), "the peer from namespace y: {text}");
        assert!(text.contains("tcp . 80-90") && text.contains("10.1.0.1 . tcp . 8080"), "{text}");
        assert!(text.contains("ip daddr @p0-pods ip saddr @p0-i0-peers meta l4proto . th dport @p0-i0-ports accept"), "{text}");
        // Egress with no rules: isolated, nothing allowed.
        assert!(!text.contains("ip saddr @p0-pods"), "{text}");
        // What nft itself makes of it (checked, not applied).
        let script = format!("{}{text}", crate::nft::fresh_table("inet", TABLE));
        crate::nft::run(&["-c", "-f", "-"], Some(&script)).unwrap();
    }
}

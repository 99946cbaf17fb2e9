//! The nftables content, in upstream kube-proxy's nftables shape: verdict
//! maps keyed by `IP . protocol . port` send a packet to its service
//! port's chain; that chain picks an endpoint chain with `numgen random`
//! (or by the client's affinity set); the endpoint chain DNATs. Each
//! Service contributes a `Fragment`, so a change to one Service rewrites
//! only its own chains and map elements.
//!
//! One change from upstream's single table: the Services' chains are
//! spread over `SHARDS` tables. At every change that adds a rule or a
//! jump, the kernel re-checks the whole table it lands in, walking every
//! chain reachable from each base chain (`nft_table_validate`): 44 ms for
//! one table of 10,000 Services, 2 ms for a sixteenth of it. A packet
//! meets at most one shard's entry for its address; a shard's nat hooks
//! cost a new connection two hash lookups.

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;

use super::model::{Endpoint, Protocol, ServicePortRules};
use crate::nft::netlink::{Batch, Expr, Header, Verdict};

/// What every Service shares: the filter hooks that refuse or drop what
/// no endpoint serves, and masquerading.
pub const TABLE: &str = "skiff-proxy";
/// Tables the Services' chains are spread over.
pub const SHARDS: u32 = 16;

/// The table that holds a Service's chains.
pub fn shard_table(namespace: &str, name: &str) -> String {
    let shard = u32::from_str_radix(&hash(&format!("{namespace}/{name}")), 16).expect("hex") % SHARDS;
    format!("{TABLE}-{shard:x}")
}

/// Every table the proxy writes.
pub fn tables() -> Vec<String> {
    std::iter::once(TABLE.to_string()).chain((0..SHARDS).map(|shard| format!("{TABLE}-{shard:x}"))).collect()
}

/// The table a set or map is in: Services' own maps are in their shard.
fn table_of<'a>(set: &str, shard: &'a str) -> &'a str {
    if set == SERVICE_IPS || set == SERVICE_NODEPORTS {
        shard
    } else {
        TABLE
    }
}
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
    pub chains: BTreeMap<String, Vec<Rule>>,
    pub elements: Vec<Element>,
    /// Affinity sets: name → timeout in seconds.
    pub sets: BTreeMap<String, u32>,
}

/// A packet test, one of the few the proxy's chains use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `ip daddr A`
    Daddr(Ipv4Addr),
    /// `tcp dport P`
    Dport(Protocol, u16),
    /// `meta l4proto tcp`
    L4Proto(Protocol),
    /// `ip saddr NET`, or `ip saddr != NET`
    Saddr { net: Ipv4Net, negated: bool },
    /// `ip saddr @SET`
    SaddrInSet(String),
    /// `numgen random mod N == 0`: true once in N.
    OneIn(u32),
    /// `fib saddr type local`: sent by this node itself.
    FromThisNode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    Verdict(Verdict),
    /// `update @SET { ip saddr }`: the client sticks to this endpoint.
    RememberClient(String),
    /// `dnat to A:P`
    Dnat(Ipv4Addr, u16),
}

/// One rule: its tests, then what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub statement: Statement,
}

impl Rule {
    fn new(matches: Vec<Match>, statement: Statement) -> Rule {
        Rule { matches, statement }
    }

    fn jump(matches: Vec<Match>, chain: &str) -> Rule {
        Rule::new(matches, Statement::Verdict(Verdict::Jump(chain.to_string())))
    }

    fn goto(matches: Vec<Match>, chain: &str) -> Rule {
        Rule::new(matches, Statement::Verdict(Verdict::Goto(chain.to_string())))
    }

    /// The kernel expressions `nft` would make of it.
    pub fn exprs(&self) -> Vec<Expr> {
        let eq = |data: &[u8]| Expr::Cmp { equal: true, data: data.to_vec() };
        let source = Expr::Payload { header: Header::Network, offset: 12, len: 4 };
        let mut out = Vec::new();
        for m in &self.matches {
            match m {
                Match::Daddr(ip) => out.extend([Expr::Payload { header: Header::Network, offset: 16, len: 4 }, eq(&ip.octets())]),
                Match::Dport(protocol, port) => out.extend([Expr::L4Proto, eq(&[protocol.number()]), Expr::Payload { header: Header::Transport, offset: 2, len: 2 }, eq(&port.to_be_bytes())]),
                Match::L4Proto(protocol) => out.extend([Expr::L4Proto, eq(&[protocol.number()])]),
                Match::Saddr { net, negated } => {
                    out.push(source.clone());
                    if net.prefix_len() < 32 {
                        out.push(Expr::Mask(net.netmask().octets().to_vec()));
                    }
                    out.push(Expr::Cmp { equal: !negated, data: net.network().octets().to_vec() });
                }
                Match::SaddrInSet(set) => out.extend([source.clone(), Expr::Lookup(set.clone())]),
                // Both results are host-order words in the register.
                Match::OneIn(n) => out.extend([Expr::Random { modulus: *n }, eq(&0u32.to_ne_bytes())]),
                Match::FromThisNode => out.extend([Expr::SourceAddressType, eq(&RTN_LOCAL.to_ne_bytes())]),
            }
        }
        match &self.statement {
            Statement::Verdict(verdict) => out.push(Expr::Verdict(verdict.clone())),
            Statement::RememberClient(set) => out.extend([source, Expr::UpdateSet(set.clone())]),
            Statement::Dnat(address, port) => out.push(Expr::Dnat { address: *address, port: *port }),
        }
        out
    }
}

/// The address type of a node's own address (`RTN_LOCAL`).
const RTN_LOCAL: u32 = 2;

/// As `nft` writes it.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.matches {
            match m {
                Match::Daddr(ip) => write!(f, "ip daddr {ip} ")?,
                Match::Dport(protocol, port) => write!(f, "{} dport {port} ", protocol.nft())?,
                Match::L4Proto(protocol) => write!(f, "meta l4proto {} ", protocol.nft())?,
                Match::Saddr { net, negated } => {
                    let not = if *negated { "!= " } else { "" };
                    if net.prefix_len() == 32 {
                        write!(f, "ip saddr {not}{} ", net.addr())?
                    } else {
                        write!(f, "ip saddr {not}{net} ")?
                    }
                }
                Match::SaddrInSet(set) => write!(f, "ip saddr @{set} ")?,
                Match::OneIn(n) => write!(f, "numgen random mod {n} == 0 ")?,
                Match::FromThisNode => write!(f, "fib saddr type local ")?,
            }
        }
        match &self.statement {
            Statement::Verdict(verdict) => write!(f, "{verdict}"),
            Statement::RememberClient(set) => write!(f, "update @{set} {{ ip saddr }}"),
            Statement::Dnat(address, port) => write!(f, "dnat to {address}:{port}"),
        }
    }
}

/// A member of one of the table's sets or maps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// `ipv4_addr`
    Address(Ipv4Addr),
    /// `ipv4_addr . inet_proto . inet_service`
    Service(Ipv4Addr, Protocol, u16),
    /// `inet_proto . inet_service`
    NodePort(Protocol, u16),
}

impl Key {
    /// The kernel's layout: each field of a concatenation padded to four bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let proto = |p: &Protocol| [p.number(), 0, 0, 0];
        let port = |p: &u16| { let [a, b] = p.to_be_bytes(); [a, b, 0, 0] };
        match self {
            Key::Address(ip) => ip.octets().to_vec(),
            Key::Service(ip, p, n) => [ip.octets(), proto(p), port(n)].concat(),
            Key::NodePort(p, n) => [proto(p), port(n)].concat(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Address(ip) => write!(f, "{ip}"),
            Key::Service(ip, p, n) => write!(f, "{ip} . {} . {n}", p.nft()),
            Key::NodePort(p, n) => write!(f, "{} . {n}", p.nft()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub set: &'static str,
    pub key: Key,
    /// For verdict maps.
    pub verdict: Option<Verdict>,
}

impl Element {
    fn new(set: &'static str, key: Key, verdict: Option<Verdict>) -> Element {
        Element { set, key, verdict }
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Some(verdict) => write!(f, "{} : {verdict}", self.key),
            None => write!(f, "{}", self.key),
        }
    }
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

/// Every table, written afresh in one transaction.
pub fn whole(node: &NodeContext) -> String {
    let mut s: String = tables().iter().map(|t| crate::nft::fresh_table("ip", t)).collect();
    let node_ips: Vec<String> = node.node_ips.iter().map(|ip| ip.to_string()).collect();
    let shared = [
        ("nat-postrouting", Some("type nat hook postrouting priority srcnat"), vec!["jump masquerading".into()]),
        ("filter-input", Some("type filter hook input priority -110"), vec!["ct state new jump nodeport-endpoints-check".into(), "ct state new jump service-endpoints-check".into()]),
        ("filter-forward", Some("type filter hook forward priority -110"), vec!["ct state new jump service-endpoints-check".into(), "ct state new jump cluster-ips-check".into()]),
        ("filter-output", Some("type filter hook output priority -110"), vec!["ct state new jump service-endpoints-check".into()]),
        ("filter-output-post-dnat", Some("type filter hook output priority -90"), vec!["ct state new jump cluster-ips-check".into()]),
        ("service-endpoints-check", None, vec![format!("ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}")]),
        ("nodeport-endpoints-check", None, vec![format!("ip daddr @nodeport-ips meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}")]),
        // A cluster IP's port nobody serves is refused; an address of the
        // range no Service has is dropped, as upstream does.
        // (Addresses this node holds, such as the cluster DNS IP, pass.)
        ("cluster-ips-check", None, vec![format!("ip daddr @{CLUSTER_IPS} reject"), format!("ip daddr {} fib daddr type != local drop", node.service_cidr)]),
        ("masquerading", None, vec![format!("meta mark and {MASQUERADE_MARK} == 0 return"), format!("meta mark set meta mark xor {MASQUERADE_MARK}"), "masquerade fully-random".into()]),
        ("reject-chain", None, vec!["reject".into()]),
    ];
    let maps = [(NO_ENDPOINT_SERVICES, "ipv4_addr . inet_proto . inet_service : verdict"), (NO_ENDPOINT_NODEPORTS, "inet_proto . inet_service : verdict"), (CLUSTER_IPS, "ipv4_addr"), ("nodeport-ips", "ipv4_addr")];
    table(&mut s, TABLE, &maps, &node_ips, &shared);
    let own = [
        ("nat-prerouting", Some("type nat hook prerouting priority dstnat"), vec!["jump services".into()]),
        ("nat-output", Some("type nat hook output priority -100"), vec!["jump services".into()]),
        ("services", None, vec![format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"), format!("ip daddr @nodeport-ips meta l4proto . th dport vmap @{SERVICE_NODEPORTS}")]),
        (MARK_FOR_MASQUERADE, None, vec![format!("meta mark set meta mark or {MASQUERADE_MARK}")]),
    ];
    let maps = [(SERVICE_IPS, "ipv4_addr . inet_proto . inet_service : verdict"), (SERVICE_NODEPORTS, "inet_proto . inet_service : verdict"), ("nodeport-ips", "ipv4_addr")];
    for shard in &tables()[1..] {
        table(&mut s, shard, &maps, &node_ips, &own);
    }
    s
}

/// A table's fixed part: its maps, the node's addresses, and its chains,
/// some hooked into the kernel.
fn table(s: &mut String, t: &str, maps: &[(&str, &str)], node_ips: &[String], chains: &[(&str, Option<&str>, Vec<String>)]) {
    let _ = writeln!(s, "add table ip {t}");
    for (name, kind) in maps {
        let word = if kind.contains(':') { "map" } else { "set" };
        let _ = writeln!(s, "add {word} ip {t} {name} {{ type {kind} ; }}");
    }
    if !node_ips.is_empty() {
        let _ = writeln!(s, "add element ip {t} nodeport-ips {{ {} }}", node_ips.join(", "));
    }
    // Chains before rules: a rule may only jump to a chain that exists.
    for (name, hook, _) in chains {
        let _ = match hook {
            Some(hook) => writeln!(s, "add chain ip {t} {name} {{ {hook} ; policy accept ; }}"),
            None => writeln!(s, "add chain ip {t} {name}"),
        };
    }
    for (name, _, rules) in chains {
        for rule in rules {
            let _ = writeln!(s, "add rule ip {t} {name} {rule}");
        }
    }
}

/// A Service's chains and map entries.
pub fn fragment(ports: &[ServicePortRules], node: &NodeContext) -> Fragment {
    let mut f = Fragment::default();
    for port in ports {
        add_port(&mut f, port, node);
    }
    f
}

const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";

fn add_port(f: &mut Fragment, p: &ServicePortRules, node: &NodeContext) {
    let id = p.id();
    let (service, external, local) = (service_chain(&id), external_chain(&id), local_chain(&id));
    let goto = |chain: &str| Some(Verdict::Goto(chain.to_string()));
    let from_pods = |negated| Match::Saddr { net: node.cluster_cidr, negated };
    for ip in &p.cluster_ips {
        f.elements.push(Element::new(CLUSTER_IPS, Key::Address(*ip), None));
    }

    // Traffic to a cluster IP.
    if p.cluster_endpoints.is_empty() {
        // Refused at once; under internalTrafficPolicy Local, dropped (upstream).
        let verdict = if p.internal_local { Verdict::Drop } else { Verdict::Goto("reject-chain".into()) };
        for ip in &p.cluster_ips {
            f.elements.push(Element::new(NO_ENDPOINT_SERVICES, Key::Service(*ip, p.protocol, p.port), Some(verdict.clone())));
        }
    } else {
        let mut rules = Vec::new();
        for ip in &p.cluster_ips {
            // From outside the pod network (a node's own processes): masqueraded,
            // so the answer comes back through this node.
            rules.push(Rule::jump(vec![Match::Daddr(*ip), Match::Dport(p.protocol, p.port), from_pods(true)], MARK_FOR_MASQUERADE));
            f.elements.push(Element::new(SERVICE_IPS, Key::Service(*ip, p.protocol, p.port), goto(&service)));
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
        let verdict = if p.external_local { Verdict::Drop } else { Verdict::Goto("reject-chain".into()) };
        for ip in &p.external_ips {
            f.elements.push(Element::new(NO_ENDPOINT_SERVICES, Key::Service(*ip, p.protocol, p.port), Some(verdict.clone())));
        }
        if let Some(node_port) = p.node_port {
            f.elements.push(Element::new(NO_ENDPOINT_NODEPORTS, Key::NodePort(p.protocol, node_port), Some(verdict)));
        }
        return;
    }
    let mut rules = Vec::new();
    if p.external_local {
        // Pods and the node itself reach it as its cluster IP would; others
        // keep their source address and reach only this node's endpoints.
        if !p.cluster_endpoints.is_empty() {
            rules.push(Rule::goto(vec![from_pods(false)], &service));
            rules.push(Rule::jump(vec![Match::FromThisNode], MARK_FOR_MASQUERADE));
            rules.push(Rule::goto(vec![Match::FromThisNode], &service));
        }
        rules.push(Rule::goto(vec![], &local));
        let chosen = pick(f, &id, p, &p.local_endpoints);
        f.chains.insert(local, chosen);
    } else {
        rules.push(Rule::jump(vec![], MARK_FOR_MASQUERADE));
        rules.push(Rule::goto(vec![], &service));
    }
    f.chains.insert(external.clone(), rules);
    for ip in &p.external_ips {
        f.elements.push(Element::new(SERVICE_IPS, Key::Service(*ip, p.protocol, p.port), goto(&external)));
    }
    if let Some(node_port) = p.node_port {
        f.elements.push(Element::new(SERVICE_NODEPORTS, Key::NodePort(p.protocol, node_port), goto(&external)));
    }
}

/// The rules that choose an endpoint and the endpoints' own chains.
fn pick(f: &mut Fragment, id: &str, p: &ServicePortRules, endpoints: &[Endpoint]) -> Vec<Rule> {
    let mut rules = Vec::new();
    if let Some(timeout) = p.affinity {
        for e in endpoints {
            let set = affinity_set(id, e, timeout);
            rules.push(Rule::goto(vec![Match::SaddrInSet(set.clone())], &endpoint_chain(id, e)));
            f.sets.insert(set, timeout);
        }
    }
    // Endpoint i of n is taken with probability 1/(n-i) when none before it
    // was: each one 1/n in all. (Upstream's single `numgen … vmap {…}`
    // makes an anonymous map per Service, whose creation and listing the
    // kernel does in quadratic time: 52 s for 10,000 Services here.)
    for (i, e) in endpoints.iter().enumerate() {
        let left = (endpoints.len() - i) as u32;
        let chain = endpoint_chain(id, e);
        rules.push(if left > 1 { Rule::goto(vec![Match::OneIn(left)], &chain) } else { Rule::goto(vec![], &chain) });
    }
    for e in endpoints {
        // Hairpin: a pod reaching itself through the Service.
        let mut chain = vec![Rule::jump(vec![Match::Saddr { net: Ipv4Net::from(e.ip), negated: false }], MARK_FOR_MASQUERADE)];
        if let Some(timeout) = p.affinity {
            chain.push(Rule::new(vec![], Statement::RememberClient(affinity_set(id, e, timeout))));
        }
        chain.push(Rule::new(vec![Match::L4Proto(p.protocol)], Statement::Dnat(e.ip, e.port)));
        f.chains.insert(endpoint_chain(id, e), chain);
    }
    rules
}

/// One step of turning a table's Service part into another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    AddSet(String, u32),
    AddChain(String),
    FlushChain(String),
    AddRule(String, Rule),
    DeleteElement(&'static str, Key),
    AddElement(Element),
    DeleteChain(String),
    DeleteSet(String),
}

/// What turns `old` into `new`, in an order one transaction accepts:
/// chains and sets first, then rules, then map elements, then what
/// nothing refers to any more. Chains and sets are in `shard`.
pub fn diff(shard: &str, old: &Fragment, new: &Fragment, out: &mut Vec<(String, Change)>) {
    let mut push = |table: &str, change| out.push((table.to_string(), change));
    for (set, timeout) in new.sets.iter().filter(|(set, _)| !old.sets.contains_key(*set)) {
        push(shard, Change::AddSet(set.clone(), *timeout));
    }
    for chain in new.chains.keys().filter(|c| !old.chains.contains_key(*c)) {
        push(shard, Change::AddChain(chain.clone()));
    }
    for (chain, rules) in &new.chains {
        match old.chains.get(chain) {
            Some(before) if before == rules => continue,
            Some(_) => push(shard, Change::FlushChain(chain.clone())),
            None => {}
        }
        for rule in rules {
            push(shard, Change::AddRule(chain.clone(), rule.clone()));
        }
    }
    let verdicts = |f: &Fragment| -> BTreeMap<(&'static str, Key), Option<Verdict>> { f.elements.iter().map(|e| ((e.set, e.key.clone()), e.verdict.clone())).collect() };
    let (before, after) = (verdicts(old), verdicts(new));
    for ((set, key), verdict) in &before {
        if after.get(&(*set, key.clone())) != Some(verdict) {
            push(table_of(set, shard), Change::DeleteElement(set, key.clone()));
        }
    }
    for ((set, key), verdict) in &after {
        if before.get(&(*set, key.clone())) != Some(verdict) {
            push(table_of(set, shard), Change::AddElement(Element::new(set, key.clone(), verdict.clone())));
        }
    }
    let gone: Vec<&String> = old.chains.keys().filter(|c| !new.chains.contains_key(*c)).collect();
    // Every rule first: a chain may go only when no rule jumps to it.
    for chain in &gone {
        push(shard, Change::FlushChain(chain.to_string()));
    }
    for chain in &gone {
        push(shard, Change::DeleteChain(chain.to_string()));
    }
    for set in old.sets.keys().filter(|s| !new.sets.contains_key(*s)) {
        push(shard, Change::DeleteSet(set.clone()));
    }
}

/// The changes as an `nft` script.
pub fn script(changes: &[(String, Change)], out: &mut String) {
    for (t, change) in changes {
        let _ = match change {
            Change::AddSet(set, timeout) => writeln!(out, "add set ip {t} {set} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}"),
            Change::AddChain(chain) => writeln!(out, "add chain ip {t} {chain}"),
            Change::FlushChain(chain) => writeln!(out, "flush chain ip {t} {chain}"),
            Change::AddRule(chain, rule) => writeln!(out, "add rule ip {t} {chain} {rule}"),
            Change::DeleteElement(set, key) => writeln!(out, "delete element ip {t} {set} {{ {key} }}"),
            Change::AddElement(element) => writeln!(out, "add element ip {t} {} {{ {element} }}", element.set),
            Change::DeleteChain(chain) => writeln!(out, "delete chain ip {t} {chain}"),
            Change::DeleteSet(set) => writeln!(out, "delete set ip {t} {set}"),
        };
    }
}

/// The changes as one netlink transaction.
pub fn batch(changes: &[(String, Change)]) -> Batch {
    let mut batch = Batch::new();
    for (t, change) in changes {
        match change {
            Change::AddSet(set, timeout) => batch.add_timeout_set(t, set, Duration::from_secs(*timeout as u64)),
            Change::AddChain(chain) => batch.add_chain(t, chain),
            Change::FlushChain(chain) => batch.flush_chain(t, chain),
            Change::AddRule(chain, rule) => batch.add_rule(t, chain, &rule.exprs()),
            Change::DeleteElement(set, key) => batch.delete_element(t, set, &key.bytes()),
            Change::AddElement(element) => batch.add_element(t, element.set, &element.key.bytes(), element.verdict.as_ref()),
            Change::DeleteChain(chain) => batch.delete_chain(t, chain),
            Change::DeleteSet(set) => batch.delete_set(t, set),
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::model::{Endpoint, Protocol};

    /// The table `ns/web` lands in.
    const SHARD: &str = "skiff-proxy-3";

    #[test]
    fn services_spread_over_the_shards() {
        assert_eq!(shard_table("ns", "web"), SHARD);
        let used: std::collections::BTreeSet<String> = (0..200).map(|i| shard_table("default", &format!("web-{i}"))).collect();
        assert_eq!(used.len(), SHARDS as usize);
        assert_eq!(tables().len(), SHARDS as usize + 1);
    }

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
        let rules: Vec<String> = service.1.iter().map(|r| r.to_string()).collect();
        assert_eq!(rules[0], "ip daddr 10.43.0.5 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade");
        assert!(rules[1].starts_with("numgen random mod 2 == 0 goto endpoint-"), "{rules:?}");
        assert!(rules[2].starts_with("goto endpoint-"), "{rules:?}");
        assert_eq!(f.chains.keys().filter(|c| c.starts_with("endpoint-")).count(), 2);
        let elements: Vec<String> = f.elements.iter().map(|e| format!("{}: {e}", e.set)).collect();
        assert!(elements.iter().any(|e| e.starts_with("service-ips: 10.43.0.5 . tcp . 80 : goto service-")), "{elements:?}");
        assert!(elements.iter().any(|e| e.starts_with("service-nodeports: tcp . 30080 : goto external-")), "{elements:?}");
        assert!(elements.iter().any(|e| e.starts_with("service-ips: 192.0.2.9 . tcp . 80 : goto external-")), "{elements:?}");

        let none = fragment(&[port(&[], None, false)], &node());
        assert!(none.chains.is_empty());
        let elements: Vec<String> = none.elements.iter().map(|e| format!("{}: {e}", e.set)).collect();
        assert!(elements.contains(&"no-endpoint-services: 10.43.0.5 . tcp . 80 : goto reject-chain".to_string()), "{elements:?}");
        assert!(elements.contains(&"no-endpoint-nodeports: tcp . 30080 : goto reject-chain".to_string()), "{elements:?}");
    }

    #[test]
    fn a_change_rewrites_only_what_changed() {
        let one = fragment(&[port(&[("10.42.0.2", true)], None, false)], &node());
        let two = fragment(&[port(&[("10.42.0.2", true), ("10.42.1.2", false)], None, false)], &node());
        let mut changes = Vec::new();
        diff(SHARD, &one, &two, &mut changes);
        let mut script = String::new();
        super::script(&changes, &mut script);
        let lines: Vec<&str> = script.lines().collect();
        // The new endpoint's chain, and the service chain's new choice; no map is touched.
        assert!(lines.iter().any(|l| l.starts_with("add chain ip skiff-proxy-3 endpoint-") && l.contains("10.42.1.2/8080")), "{script}");
        assert_eq!(lines.iter().filter(|l| l.starts_with("flush chain")).count(), 1, "{script}");
        assert!(!script.contains("element"), "{script}");
        let mut same = Vec::new();
        diff(SHARD, &two, &two, &mut same);
        assert!(same.is_empty(), "{same:?}");
    }

    /// A Service through every kind of change: endpoints added and gone,
    /// affinity on and off, Local traffic, no endpoint, gone.
    fn every_kind_of_change() -> Vec<Fragment> {
        vec![
            Fragment::default(),
            fragment(&[port(&[("10.42.0.2", true), ("10.42.1.2", false)], Some(10800), false)], &node()),
            fragment(&[port(&[("10.42.1.2", false)], Some(60), true)], &node()),
            fragment(&[port(&[("10.42.0.2", true)], None, true)], &node()),
            fragment(&[port(&[], None, false)], &node()),
            Fragment::default(),
        ]
    }

    /// Runs `f` on a thread of its own in a new, empty network namespace.
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            // SAFETY: unshare affects only this thread, which ends with `f`.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }

    /// Every kind of change, written straight over netlink, leaves the
    /// kernel holding exactly what `nft` makes of the same change as text.
    #[test]
    fn netlink_writes_what_nft_writes() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || crate::nft::run(&["--version"], None).is_err() {
            eprintln!("needs root and nft; skipped");
            return;
        }
        let steps = every_kind_of_change();
        let run = |over_netlink: bool, steps: Vec<Fragment>| {
            in_new_netns(move || {
                crate::nft::apply(&whole(&node())).unwrap();
                let mut listings = Vec::new();
                for pair in steps.windows(2) {
                    let mut changes = Vec::new();
                    diff(SHARD, &pair[0], &pair[1], &mut changes);
                    if over_netlink {
                        batch(&changes).commit().unwrap();
                    } else {
                        let mut script = String::new();
                        super::script(&changes, &mut script);
                        crate::nft::apply(&script).unwrap();
                    }
                    listings.push(crate::nft::run(&["list", "ruleset"], None).unwrap());
                }
                listings
            })
        };
        let (text, netlink) = (run(false, steps.clone()), run(true, steps));
        for (step, (a, b)) in text.iter().zip(&netlink).enumerate() {
            assert_eq!(a, b, "step {step}");
        }
        assert!(text[0].contains("dnat to 10.42.1.2:8080"), "{}", text[0]);
    }

    /// A refused change names what was refused, and nothing of it lands.
    #[test]
    fn a_refused_netlink_change_is_named_and_applies_nothing() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || crate::nft::run(&["--version"], None).is_err() {
            eprintln!("needs root and nft; skipped");
            return;
        }
        let listing = in_new_netns(|| {
            crate::nft::apply(&whole(&node())).unwrap();
            let before = crate::nft::run(&["list", "ruleset"], None).unwrap();
            let changes = vec![(SHARD.to_string(), Change::AddChain("fresh".into())), (SHARD.to_string(), Change::AddRule("no-such-chain".into(), Rule::goto(vec![], "fresh")))];
            let e = batch(&changes).commit().unwrap_err().to_string();
            assert!(e.starts_with("nftables refused to add rule to no-such-chain") && e.contains("No such file or directory"), "{e}");
            (before, crate::nft::run(&["list", "ruleset"], None).unwrap())
        });
        assert_eq!(listing.0, listing.1);
    }

    /// The real `nft` parses every kind of change in one transaction (`-c`:
    /// checked, not applied).
    #[test]
    fn nft_accepts_the_rules() {
        if crate::nft::run(&["--version"], None).is_err() {
            eprintln!("nft is not installed here; skipped");
            return;
        }
        let steps = every_kind_of_change();
        let mut script = whole(&node());
        for pair in steps.windows(2) {
            let mut changes = Vec::new();
            diff(SHARD, &pair[0], &pair[1], &mut changes);
            super::script(&changes, &mut script);
        }
        if let Err(e) = crate::nft::run(&["-c", "-f", "-"], Some(&script)) {
            panic!("{e:#}\n{script}");
        }
    }
}

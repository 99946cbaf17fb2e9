//! The cluster's names as CoreDNS's kubernetes plugin serves them (with
//! `pods insecure`, as k3s configures it), answered from a compact index of
//! Services, EndpointSlices and Namespaces. Pure: no sockets and no API;
//! the watch feeds it, the server asks it.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// TTL of every answer: CoreDNS's default (and minimum).
pub const TTL: u32 = 5;
/// `dns-version.<domain>`'s TTL and text, as CoreDNS serves them.
const VERSION_TTL: u32 = 28800;
const SCHEMA_VERSION: &str = "1.1.0";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The Service whose addresses `ns.dns.<domain>` and the apex's NS give:
/// CoreDNS gives those of the Service in front of itself.
const DNS_SERVICE: &str = "kube-dns.kube-system";
/// CNAMEs followed inside the cluster domain, as CoreDNS (it stops past 7).
const MAX_CNAMES: usize = 8;

/// What the index says of a question.
#[derive(Debug)]
pub enum Outcome {
    /// An authoritative answer: records, NXDOMAIN or NODATA.
    Answer(Answer),
    /// An ExternalName's CNAME to a name outside the cluster: the answer so
    /// far, to which the target's records, looked up upstream, are added.
    Chase(Answer, Name),
    /// Not a cluster name: for the upstream resolvers.
    Forward,
}

/// A response's code and sections.
#[derive(Debug, Default)]
pub struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// The index: a few hundred bytes a Service, keyed as CoreDNS's
/// (`name.namespace`), so that a question's labels are looked up as they
/// stand in the name, without building a key.
pub struct Records {
    /// The cluster domain, lower case, without the final dot.
    domain: Box<str>,
    zone: Name,
    namespaces: HashSet<Box<str>>,
    /// `name.namespace` → Service.
    services: HashMap<Key, Svc>,
    /// Service key → its slices (which may come before the Service).
    slices: HashMap<Key, Vec<Slice>>,
    /// `slice.namespace` → the key of the Service it belongs to.
    slice_owner: HashMap<Key, Key>,
    /// Cluster IP → Service key, for PTR.
    cluster_ips: HashMap<IpAddr, Key>,
    /// Endpoint address → keys of the slices listing it, for PTR.
    endpoint_ips: HashMap<IpAddr, Vec<Key>>,
    /// The SOA serial: when the index last changed, in Unix seconds, as CoreDNS's.
    serial: u32,
    /// Which of the three kinds have been listed once (bits), see `synced`.
    listed: u8,
}

struct Svc {
    kind: Kind,
    ports: Box<[Port]>,
}

enum Kind {
    ClusterIp(Box<[IpAddr]>),
    Headless,
    ExternalName(Box<str>),
}

struct Port {
    name: Box<str>,
    protocol: Protocol,
    /// -1 in a slice without ports: CoreDNS's sentinel, which makes
    /// addresses but no SRV records.
    port: i32,
}

#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    Tcp,
    Udp,
    Sctp,
    /// The sentinel port's, which only a question without protocol matches.
    None,
}

impl Protocol {
    fn parse(s: Option<&str>) -> Self {
        match s.unwrap_or("TCP") {
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            _ => Protocol::Tcp,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
            Protocol::None => "",
        }
    }
}

struct Slice {
    key: Key,
    ports: Box<[Port]>,
    /// Ready endpoints only (`conditions.ready` unset counts as ready).
    endpoints: Box<[Endpoint]>,
}

struct Endpoint {
    ip: IpAddr,
    hostname: Option<Box<str>>,
}

/// Index keys: shared, since a Service's or a slice's key is held by
/// several maps (and a slice's once more per address, for PTR).
type Key = Arc<str>;

/// A name that does not exist.
struct NxDomain;

/// Records found for a question, before they become an [`Answer`].
#[derive(Default)]
struct Found {
    answers: Vec<Record>,
    additionals: Vec<Record>,
    chase: Option<Name>,
}

/// What a cluster name stands for: an address or an ExternalName's
/// target, with the port and the name SRV records point to.
struct Entry<'a> {
    host: Host<'a>,
    port: i32,
    target: Target<'a>,
}

enum Host<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

enum Target<'a> {
    /// `<service key>.svc.<domain>`
    Service(&'a str),
    /// `<endpoint label>.<service key>.svc.<domain>`
    Endpoint(&'a Endpoint, &'a str),
    /// `<pod label>.<namespace>.pod.<domain>`
    Pod(&'a str, &'a str),
}

/// The index key of an object: `name.namespace`, as CoreDNS's.
pub fn key(namespace: &str, name: &str) -> String {
    format!("{name}.{namespace}").to_ascii_lowercase()
}

fn object_key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<String> {
    Some(key(meta.namespace.as_deref()?, meta.name.as_deref()?))
}

/// CoreDNS's name for an endpoint: its hostname, else its address with
/// dashes for dots (or colons).
fn endpoint_label(endpoint: &Endpoint) -> Cow<'_, str> {
    match &endpoint.hostname {
        Some(hostname) => Cow::Borrowed(hostname),
        None => Cow::Owned(endpoint.ip.to_string().replace(['.', ':'], "-")),
    }
}

/// Whether a port matches a question's `_port._protocol` labels; an absent
/// (or empty, as `_`) label matches any, as CoreDNS's.
fn port_matches(port: &Port, name: Option<&str>, protocol: Option<&str>) -> bool {
    name.is_none_or(|n| n.is_empty() || n == &*port.name) && protocol.is_none_or(|p| p.is_empty() || p == port.protocol.label())
}

fn strip_underscore(label: &str) -> &str {
    label.strip_prefix('_').unwrap_or(label)
}

/// `first` to `last`, both labels of `text`, as one slice of it.
fn span<'a>(text: &'a str, first: &str, last: &str) -> &'a str {
    let start = first.as_ptr() as usize - text.as_ptr() as usize;
    let end = last.as_ptr() as usize - text.as_ptr() as usize + last.len();
    &text[start..end]
}

fn fqdn(text: &str) -> Option<Name> {
    let mut name = Name::from_ascii(text).ok()?;
    name.set_fqdn(true);
    Some(name)
}

fn address(owner: Name, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::from_rdata(owner, TTL, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(owner, TTL, RData::AAAA(AAAA(v6))),
    }
}

fn family_matches(ip: IpAddr, qtype: RecordType) -> bool {
    matches!((ip, qtype), (IpAddr::V4(_), RecordType::A) | (IpAddr::V6(_), RecordType::AAAA))
}

/// `a-b-c-d` (or an IPv6 address with dashes for colons) as an address, as
/// CoreDNS reads pod names.
fn pod_ip(label: &str) -> Option<IpAddr> {
    let text = if label.matches('-').count() == 3 && !label.contains("--") { label.replace('-', ".") } else { label.replace('-', ":") };
    text.parse().ok()
}

fn now_serial() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

const LISTED_SERVICES: u8 = 1;
const LISTED_SLICES: u8 = 2;
const LISTED_NAMESPACES: u8 = 4;

/// The kinds the index is built from, for [`Records::mark_listed`].
#[derive(Clone, Copy, Debug)]
pub enum Listed {
    Services,
    EndpointSlices,
    Namespaces,
}

impl Records {
    /// An empty index for a cluster domain (`cluster.local`).
    pub fn new(domain: &str) -> Self {
        let domain: Box<str> = domain.trim_end_matches('.').to_ascii_lowercase().into();
        let zone = fqdn(&domain).unwrap_or_else(Name::root);
        Records {
            domain,
            zone,
            namespaces: HashSet::new(),
            services: HashMap::new(),
            slices: HashMap::new(),
            slice_owner: HashMap::new(),
            cluster_ips: HashMap::new(),
            endpoint_ips: HashMap::new(),
            serial: now_serial(),
            listed: 0,
        }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Services in the index.
    pub fn services(&self) -> usize {
        self.services.len()
    }

    /// Notes that a kind has been listed from the API once.
    pub fn mark_listed(&mut self, kind: Listed) {
        self.listed |= match kind {
            Listed::Services => LISTED_SERVICES,
            Listed::EndpointSlices => LISTED_SLICES,
            Listed::Namespaces => LISTED_NAMESPACES,
        };
    }

    /// Whether Services, EndpointSlices and Namespaces have all been listed:
    /// before that, a missing name may only be missing from the index.
    pub fn synced(&self) -> bool {
        self.listed == LISTED_SERVICES | LISTED_SLICES | LISTED_NAMESPACES
    }

    fn touch(&mut self) {
        self.serial = now_serial();
    }

    pub fn apply_namespace(&mut self, name: &str) {
        if self.namespaces.insert(name.to_ascii_lowercase().into()) {
            self.touch();
        }
    }

    pub fn delete_namespace(&mut self, name: &str) {
        if self.namespaces.remove(name.to_ascii_lowercase().as_str()) {
            self.touch();
        }
    }

    /// Keeps the namespaces for which `keep` is true: after a relist, those listed.
    pub fn retain_namespaces(&mut self, keep: impl Fn(&str) -> bool) {
        self.namespaces.retain(|n| keep(n));
        self.touch();
    }

    pub fn apply_service(&mut self, service: &Service) {
        let Some(key) = object_key(&service.metadata) else { return };
        let spec = service.spec.as_ref();
        let kind = if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
            Kind::ExternalName(spec.and_then(|s| s.external_name.as_deref()).unwrap_or("").trim_end_matches('.').into())
        } else {
            let listed = spec.and_then(|s| s.cluster_ips.clone()).filter(|ips| !ips.is_empty());
            let ips = listed.or_else(|| spec.and_then(|s| s.cluster_ip.clone()).map(|ip| vec![ip])).unwrap_or_default();
            if ips.first().is_some_and(|ip| ip == "None") {
                Kind::Headless
            } else {
                Kind::ClusterIp(ips.iter().filter_map(|ip| ip.parse().ok()).collect())
            }
        };
        let ports = spec
            .and_then(|s| s.ports.as_ref())
            .map(|ports| ports.iter().map(|p| Port { name: p.name.as_deref().unwrap_or("").to_ascii_lowercase().into(), protocol: Protocol::parse(p.protocol.as_deref()), port: p.port }).collect())
            .unwrap_or_default();
        self.remove_service(&key);
        let key: Key = key.into();
        if let Kind::ClusterIp(ips) = &kind {
            for ip in ips.iter() {
                self.cluster_ips.insert(*ip, key.clone());
            }
        }
        self.services.insert(key, Svc { kind, ports });
        self.touch();
    }

    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        self.remove_service(&key(namespace, name));
        self.touch();
    }

    fn remove_service(&mut self, key: &str) {
        if let Some(Svc { kind: Kind::ClusterIp(ips), .. }) = self.services.remove(key) {
            for ip in ips.iter() {
                if self.cluster_ips.get(ip).is_some_and(|k| &**k == key) {
                    self.cluster_ips.remove(ip);
                }
            }
        }
    }

    /// Keeps the Services whose key ([`key`]) `keep` accepts.
    pub fn retain_services(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<Key> = self.services.keys().filter(|k| !keep(k)).cloned().collect();
        for key in gone {
            self.remove_service(&key);
        }
        self.touch();
    }

    pub fn apply_endpoint_slice(&mut self, slice: &EndpointSlice) {
        let Some(key) = object_key(&slice.metadata) else { return };
        self.remove_slice(&key);
        let namespace = slice.metadata.namespace.as_deref().unwrap_or("");
        let Some(service) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else {
            self.touch();
            return;
        };
        let owner: Key = self::key(namespace, service).into();
        let key: Key = key.into();
        let mut ports: Vec<Port> = slice
            .ports
            .iter()
            .flatten()
            .map(|p| Port { name: p.name.as_deref().unwrap_or("").to_ascii_lowercase().into(), protocol: Protocol::parse(p.protocol.as_deref()), port: p.port.unwrap_or(-1) })
            .collect();
        if ports.is_empty() {
            ports.push(Port { name: "".into(), protocol: Protocol::None, port: -1 });
        }
        let mut endpoints = Vec::new();
        for endpoint in &slice.endpoints {
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for address in &endpoint.addresses {
                let Ok(ip) = address.parse::<IpAddr>() else { continue };
                self.endpoint_ips.entry(ip).or_insert_with(|| Vec::with_capacity(1)).push(key.clone());
                endpoints.push(Endpoint { ip, hostname: endpoint.hostname.as_deref().map(|h| h.to_ascii_lowercase().into()) });
            }
        }
        self.slices.entry(owner.clone()).or_insert_with(|| Vec::with_capacity(1)).push(Slice { key: key.clone(), ports: ports.into(), endpoints: endpoints.into() });
        self.slice_owner.insert(key, owner);
        self.touch();
    }

    pub fn delete_endpoint_slice(&mut self, namespace: &str, name: &str) {
        self.remove_slice(&key(namespace, name));
        self.touch();
    }

    fn remove_slice(&mut self, key: &str) {
        let Some(owner) = self.slice_owner.remove(key) else { return };
        let Some(slices) = self.slices.get_mut(&owner) else { return };
        let Some(at) = slices.iter().position(|s| &*s.key == key) else { return };
        let slice = slices.swap_remove(at);
        if slices.is_empty() {
            self.slices.remove(&owner);
        }
        for endpoint in slice.endpoints.iter() {
            if let Some(keys) = self.endpoint_ips.get_mut(&endpoint.ip) {
                keys.retain(|k| &**k != key);
                if keys.is_empty() {
                    self.endpoint_ips.remove(&endpoint.ip);
                }
            }
        }
    }

    /// Keeps the EndpointSlices whose key ([`key`]) `keep` accepts.
    pub fn retain_endpoint_slices(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<Key> = self.slice_owner.keys().filter(|k| !keep(k)).cloned().collect();
        for key in gone {
            self.remove_slice(&key);
        }
        self.touch();
    }

    /// The answer to a question, or [`Outcome::Forward`] for names that
    /// are not the cluster's. Case-insensitive; the answers' owner is the
    /// name as asked.
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> Outcome {
        let lower = qname.to_lowercase().to_ascii();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        let mut owner = qname.clone();
        owner.set_fqdn(true);
        if let Some(base) = self.relative(name) {
            return self.in_zone(owner, base, qtype);
        }
        // Reverse names: CoreDNS with `fallthrough in-addr.arpa ip6.arpa`
        // answers the addresses it knows and passes on the rest.
        if qtype == RecordType::PTR {
            if let Some(answer) = self.reverse(qname, owner) {
                return Outcome::Answer(answer);
            }
        }
        Outcome::Forward
    }

    /// A name's part before the cluster domain ("" for the domain itself),
    /// or None for a name outside it.
    fn relative<'a>(&self, name: &'a str) -> Option<&'a str> {
        if name == &*self.domain {
            return Some("");
        }
        name.strip_suffix(&*self.domain)?.strip_suffix('.')
    }

    fn in_zone(&self, owner: Name, base: &str, qtype: RecordType) -> Outcome {
        let found = match qtype {
            RecordType::A | RecordType::AAAA => self.addresses(&owner, base, qtype, 0),
            RecordType::SRV => self.srv(&owner, base),
            RecordType::CNAME => self.cname(&owner, base),
            RecordType::TXT if base == "dns-version" => Ok(Found { answers: vec![Record::from_rdata(owner, VERSION_TTL, RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])))], ..Found::default() }),
            RecordType::SOA if base.is_empty() => Ok(Found { answers: vec![self.soa()], ..Found::default() }),
            RecordType::NS if base.is_empty() => Ok(self.ns(&owner)),
            // Any other type: the name exists (NODATA) or not (NXDOMAIN).
            _ => self.entries(base).map(|_| Found::default()),
        };
        match found {
            Err(NxDomain) => Outcome::Answer(Answer { code: ResponseCode::NXDomain, authorities: vec![self.soa()], ..Answer::default() }),
            Ok(found) if found.answers.is_empty() => Outcome::Answer(Answer { authorities: vec![self.soa()], ..Answer::default() }),
            Ok(Found { answers, additionals, chase }) => {
                let answer = Answer { answers, additionals, ..Answer::default() };
                match chase {
                    Some(target) => Outcome::Chase(answer, target),
                    None => Outcome::Answer(answer),
                }
            }
        }
    }

    /// CoreDNS's SOA: `ns.dns.<domain>. hostmaster.<domain>.`, serial the
    /// time of the last change, 7200 1800 86400 5.
    fn soa(&self) -> Record {
        let mname = fqdn(&format!("ns.dns.{}", self.domain)).unwrap_or_else(Name::root);
        let rname = fqdn(&format!("hostmaster.{}", self.domain)).unwrap_or_else(Name::root);
        Record::from_rdata(self.zone.clone(), TTL, RData::SOA(SOA::new(mname, rname, self.serial, 7200, 1800, 86400, TTL)))
    }

    /// The DNS Service's addresses, `ns.dns.<domain>`'s.
    fn dns_ips(&self) -> &[IpAddr] {
        match self.services.get(DNS_SERVICE) {
            Some(Svc { kind: Kind::ClusterIp(ips), .. }) => ips,
            _ => &[],
        }
    }

    fn ns(&self, owner: &Name) -> Found {
        let Some(ns) = fqdn(&format!("ns.dns.{}", self.domain)) else { return Found::default() };
        let ips = self.dns_ips();
        if ips.is_empty() {
            return Found::default();
        }
        let additionals = ips.iter().map(|ip| address(ns.clone(), *ip)).collect();
        Found { answers: vec![Record::from_rdata(owner.clone(), TTL, RData::NS(NS(ns)))], additionals, chase: None }
    }

    /// What a name in the cluster domain stands for, as CoreDNS's
    /// `Records`: `[[_port._protocol.]|[endpoint.]]service.namespace.svc`
    /// or `pod.namespace.pod`. Ok with no entries for names that exist
    /// without records (the apex, `svc`, a namespace).
    fn entries<'a>(&'a self, base: &'a str) -> Result<Vec<Entry<'a>>, NxDomain> {
        if base.is_empty() || base == "svc" || base == "pod" || base == "ns.dns" {
            return Ok(Vec::new());
        }
        let mut labels = base.rsplit('.');
        let kind = labels.next().unwrap_or("");
        if kind != "svc" && kind != "pod" {
            return Err(NxDomain);
        }
        let Some(namespace) = labels.next() else { return Ok(Vec::new()) };
        if !self.namespaces.contains(namespace) {
            return Err(NxDomain);
        }
        let Some(service) = labels.next() else { return Ok(Vec::new()) };
        // Labels left of the service, nearest first.
        let rest: Vec<&str> = labels.collect();
        let (endpoint, port, protocol) = match rest[..] {
            [] => (None, None, None),
            [endpoint] => (Some(endpoint), None, None),
            [protocol, port] => (None, Some(strip_underscore(port)), Some(strip_underscore(protocol))),
            _ => return Err(NxDomain),
        };
        if kind == "pod" {
            // `pods insecure`: any well-formed address in an existing namespace.
            let ip = pod_ip(service).ok_or(NxDomain)?;
            return Ok(vec![Entry { host: Host::Ip(ip), port: 0, target: Target::Pod(service, namespace) }]);
        }
        let key = span(base, service, namespace);
        let (key, svc) = self.services.get_key_value(key).ok_or(NxDomain)?;
        let mut entries = Vec::new();
        match &svc.kind {
            Kind::ExternalName(target) => {
                // CoreDNS serves only names there, and no endpoints.
                if endpoint.is_some() || target.is_empty() || target.parse::<IpAddr>().is_ok() {
                    return Err(NxDomain);
                }
                entries.push(Entry { host: Host::Name(target), port: 0, target: Target::Service(key) });
            }
            Kind::ClusterIp(ips) if endpoint.is_none() => {
                // A port that matches makes the name exist, addresses or not.
                let mut matched = false;
                for p in svc.ports.iter().filter(|p| port_matches(p, port, protocol)) {
                    matched = true;
                    entries.extend(ips.iter().map(|ip| Entry { host: Host::Ip(*ip), port: p.port, target: Target::Service(key) }));
                }
                if !matched {
                    return Err(NxDomain);
                }
            }
            // Headless, or an endpoint's name under any Service.
            _ => {
                for slice in self.slices.get(key).into_iter().flatten() {
                    for ep in slice.endpoints.iter() {
                        if endpoint.is_some_and(|e| e != endpoint_label(ep)) {
                            continue;
                        }
                        for p in slice.ports.iter().filter(|p| port_matches(p, port, protocol)) {
                            entries.push(Entry { host: Host::Ip(ep.ip), port: p.port, target: Target::Endpoint(ep, key) });
                        }
                    }
                }
                if entries.is_empty() {
                    return Err(NxDomain);
                }
            }
        }
        Ok(entries)
    }

    fn target_name(&self, target: &Target) -> Option<Name> {
        let domain = &self.domain;
        match target {
            Target::Service(key) => fqdn(&format!("{key}.svc.{domain}")),
            Target::Endpoint(endpoint, key) => fqdn(&format!("{}.{key}.svc.{domain}", endpoint_label(endpoint))),
            Target::Pod(label, namespace) => fqdn(&format!("{label}.{namespace}.pod.{domain}")),
        }
    }

    /// A and AAAA records, following ExternalName CNAMEs: within the
    /// cluster domain here, outside it upstream (the `chase`).
    fn addresses(&self, owner: &Name, base: &str, qtype: RecordType, depth: usize) -> Result<Found, NxDomain> {
        if base == "ns.dns" {
            let answers = self.dns_ips().iter().filter(|ip| family_matches(**ip, qtype)).map(|ip| address(owner.clone(), *ip)).collect();
            return Ok(Found { answers, ..Found::default() });
        }
        let owner_text = owner.to_lowercase().to_ascii();
        let owner_text = owner_text.trim_end_matches('.');
        let mut found = Found::default();
        let mut seen = Vec::new();
        for entry in self.entries(base)? {
            match entry.host {
                Host::Ip(ip) => {
                    if family_matches(ip, qtype) && !seen.contains(&ip) {
                        seen.push(ip);
                        found.answers.push(address(owner.clone(), ip));
                    }
                }
                Host::Name(target) => {
                    let Some(target_name) = fqdn(target) else { continue };
                    let target_lower = target.to_ascii_lowercase();
                    // `x CNAME x` is a loop; so is a chain longer than CoreDNS follows.
                    if target_lower == owner_text || depth >= MAX_CNAMES {
                        continue;
                    }
                    let cname = Record::from_rdata(owner.clone(), TTL, RData::CNAME(CNAME(target_name.clone())));
                    match self.relative(&target_lower) {
                        Some(target_base) => {
                            if let Ok(next) = self.addresses(&target_name, target_base, qtype, depth + 1) {
                                if !next.answers.is_empty() {
                                    found.answers.push(cname);
                                    found.answers.extend(next.answers);
                                    found.chase = next.chase;
                                }
                            }
                        }
                        None => {
                            found.answers.push(cname);
                            found.chase = Some(target_name);
                        }
                    }
                }
            }
        }
        Ok(found)
    }

    /// SRV records with the targets' addresses as additionals, weights
    /// shared equally (100 / count, at least 1) as CoreDNS's.
    fn srv(&self, owner: &Name, base: &str) -> Result<Found, NxDomain> {
        // CoreDNS has no SRV records for ExternalName services.
        let entries: Vec<Entry> = self.entries(base)?.into_iter().filter(|e| matches!(e.host, Host::Ip(_))).collect();
        let weight = u16::try_from(100 / entries.len().max(1)).unwrap_or(1).max(1);
        let mut found = Found::default();
        let mut records_seen: Vec<(Name, i32)> = Vec::new();
        let mut addresses_seen: Vec<(Name, IpAddr)> = Vec::new();
        for entry in &entries {
            let Host::Ip(ip) = entry.host else { continue };
            let Ok(port) = u16::try_from(entry.port) else { continue };
            let Some(target) = self.target_name(&entry.target) else { continue };
            if !records_seen.contains(&(target.clone(), entry.port)) {
                records_seen.push((target.clone(), entry.port));
                found.answers.push(Record::from_rdata(owner.clone(), TTL, RData::SRV(SRV::new(0, weight, port, target.clone()))));
            }
            if !addresses_seen.contains(&(target.clone(), ip)) {
                addresses_seen.push((target.clone(), ip));
                found.additionals.push(address(target, ip));
            }
        }
        Ok(found)
    }

    fn cname(&self, owner: &Name, base: &str) -> Result<Found, NxDomain> {
        let entries = self.entries(base)?;
        let mut found = Found::default();
        if let Some(Entry { host: Host::Name(target), .. }) = entries.first() {
            if let Some(target) = fqdn(target) {
                found.answers.push(Record::from_rdata(owner.clone(), TTL, RData::CNAME(CNAME(target))));
            }
        }
        Ok(found)
    }

    /// PTR records for a cluster IP (its Service's name) or, failing that,
    /// for an endpoint address (a name per slice listing it).
    fn reverse(&self, qname: &Name, owner: Name) -> Option<Answer> {
        let net = qname.parse_arpa_name().ok()?;
        if net.prefix_len() != net.max_prefix_len() {
            return None;
        }
        let ip = net.addr();
        let domain = &self.domain;
        let mut targets: Vec<String> = Vec::new();
        if let Some(key) = self.cluster_ips.get(&ip) {
            targets.push(format!("{key}.svc.{domain}"));
        } else {
            for slice_key in self.endpoint_ips.get(&ip).into_iter().flatten() {
                let Some(owner_key) = self.slice_owner.get(slice_key) else { continue };
                let slice = self.slices.get(owner_key).and_then(|slices| slices.iter().find(|s| &s.key == slice_key));
                for endpoint in slice.into_iter().flat_map(|s| s.endpoints.iter()).filter(|e| e.ip == ip) {
                    let target = format!("{}.{owner_key}.svc.{domain}", endpoint_label(endpoint));
                    if !targets.contains(&target) {
                        targets.push(target);
                    }
                }
            }
        }
        let answers: Vec<Record> = targets.iter().filter_map(|t| fqdn(t)).map(|t| Record::from_rdata(owner.clone(), TTL, RData::PTR(PTR(t)))).collect();
        (!answers.is_empty()).then(|| Answer { answers, ..Answer::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn service(namespace: &str, name: &str, spec: Value) -> Service {
        serde_json::from_value(json!({"metadata": {"namespace": namespace, "name": name}, "spec": spec})).unwrap()
    }

    fn slice(namespace: &str, name: &str, service: &str, ports: Value, endpoints: Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"namespace": namespace, "name": name, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    /// A cluster with: web (ClusterIP, ports http/80 and dns/53 UDP and an
    /// unnamed 8080), db (headless: two ready endpoints, one with a
    /// hostname, one unready, over two slices), v6 (IPv6 only), dual
    /// (dual-stack), ext (ExternalName outside), alias (ExternalName to web),
    /// empty (headless, no endpoints), and kube-dns.
    fn cluster() -> Records {
        let mut r = Records::new("cluster.local");
        for ns in ["default", "kube-system", "prod"] {
            r.apply_namespace(ns);
        }
        r.apply_service(&service(
            "default",
            "web",
            json!({"clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}, {"port": 8080}]}),
        ));
        r.apply_endpoint_slice(&slice("default", "web-abc", "web", json!([{"name": "http", "port": 8080, "protocol": "TCP"}]), json!([{"addresses": ["10.42.0.9"], "hostname": "web-0"}])));
        r.apply_service(&service("default", "db", json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]})));
        r.apply_endpoint_slice(&slice(
            "default",
            "db-1",
            "db",
            json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]),
            json!([{"addresses": ["10.42.0.5"], "hostname": "db-0", "conditions": {"ready": true}}, {"addresses": ["10.42.0.6"], "conditions": {"ready": false}}]),
        ));
        r.apply_endpoint_slice(&slice("default", "db-2", "db", json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]), json!([{"addresses": ["10.42.1.7"]}])));
        r.apply_service(&service("default", "v6", json!({"clusterIP": "fd00:43::20", "clusterIPs": ["fd00:43::20"], "ports": [{"port": 80}]})));
        r.apply_service(&service("default", "dual", json!({"clusterIP": "10.43.0.21", "clusterIPs": ["10.43.0.21", "fd00:43::21"], "ports": [{"port": 80}]})));
        r.apply_service(&service("default", "ext", json!({"type": "ExternalName", "externalName": "example.com"})));
        r.apply_service(&service("prod", "alias", json!({"type": "ExternalName", "externalName": "web.default.svc.cluster.local."})));
        r.apply_service(&service("default", "empty", json!({"clusterIP": "None"})));
        r.apply_service(&service("kube-system", "kube-dns", json!({"clusterIP": "10.43.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]})));
        r
    }

    fn ask(records: &Records, name: &str, qtype: RecordType) -> Outcome {
        records.lookup(&Name::from_ascii(name).unwrap(), qtype)
    }

    /// The answer, with each section as text ("name ttl IN type data").
    fn answer(records: &Records, name: &str, qtype: RecordType) -> (ResponseCode, Vec<String>, Vec<String>, Vec<String>) {
        match ask(records, name, qtype) {
            Outcome::Answer(a) => {
                let text = |rs: &[Record]| rs.iter().map(|r| r.to_string()).collect::<Vec<_>>();
                (a.code, text(&a.answers), text(&a.authorities), text(&a.additionals))
            }
            other => panic!("{name} {qtype}: expected an answer, got {other:?}"),
        }
    }

    fn answers(records: &Records, name: &str, qtype: RecordType) -> Vec<String> {
        let (code, answers, authorities, _) = answer(records, name, qtype);
        assert_eq!(code, ResponseCode::NoError, "{name} {qtype}");
        assert!(authorities.is_empty(), "{name} {qtype}: {authorities:?}");
        answers
    }

    fn assert_nxdomain(records: &Records, name: &str, qtype: RecordType) {
        let (code, answers, authorities, _) = answer(records, name, qtype);
        assert_eq!((code, answers.len()), (ResponseCode::NXDomain, 0), "{name} {qtype}");
        assert_soa(&authorities);
    }

    fn assert_nodata(records: &Records, name: &str, qtype: RecordType) {
        let (code, answers, authorities, _) = answer(records, name, qtype);
        assert_eq!((code, answers), (ResponseCode::NoError, vec![]), "{name} {qtype}");
        assert_soa(&authorities);
    }

    fn assert_soa(authorities: &[String]) {
        assert_eq!(authorities.len(), 1, "{authorities:?}");
        let soa = &authorities[0];
        assert!(soa.starts_with("cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. "), "{soa}");
        assert!(soa.ends_with(" 7200 1800 86400 5"), "{soa}");
    }

    #[test]
    fn cluster_ip_service_has_an_a_record() {
        let r = cluster();
        assert_eq!(answers(&r, "web.default.svc.cluster.local.", RecordType::A), ["web.default.svc.cluster.local. 5 IN A 10.43.0.20"]);
    }

    #[test]
    fn v6_service_has_aaaa_and_no_a() {
        let r = cluster();
        assert_eq!(answers(&r, "v6.default.svc.cluster.local.", RecordType::AAAA), ["v6.default.svc.cluster.local. 5 IN AAAA fd00:43::20"]);
        assert_nodata(&r, "v6.default.svc.cluster.local.", RecordType::A);
        assert_nodata(&r, "web.default.svc.cluster.local.", RecordType::AAAA);
    }

    #[test]
    fn dual_stack_service_has_both() {
        let r = cluster();
        assert_eq!(answers(&r, "dual.default.svc.cluster.local.", RecordType::A), ["dual.default.svc.cluster.local. 5 IN A 10.43.0.21"]);
        assert_eq!(answers(&r, "dual.default.svc.cluster.local.", RecordType::AAAA), ["dual.default.svc.cluster.local. 5 IN AAAA fd00:43::21"]);
    }

    #[test]
    fn headless_service_answers_every_ready_endpoint() {
        let r = cluster();
        let mut got = answers(&r, "db.default.svc.cluster.local.", RecordType::A);
        got.sort();
        assert_eq!(got, ["db.default.svc.cluster.local. 5 IN A 10.42.0.5", "db.default.svc.cluster.local. 5 IN A 10.42.1.7"]);
    }

    #[test]
    fn headless_service_without_ready_endpoints_is_nxdomain() {
        let r = cluster();
        assert_nxdomain(&r, "empty.default.svc.cluster.local.", RecordType::A);
    }

    #[test]
    fn endpoints_have_names_by_hostname_or_dashed_address() {
        let r = cluster();
        assert_eq!(answers(&r, "db-0.db.default.svc.cluster.local.", RecordType::A), ["db-0.db.default.svc.cluster.local. 5 IN A 10.42.0.5"]);
        assert_eq!(answers(&r, "10-42-1-7.db.default.svc.cluster.local.", RecordType::A), ["10-42-1-7.db.default.svc.cluster.local. 5 IN A 10.42.1.7"]);
        // Unready endpoints have no name; neither do unknown ones.
        assert_nxdomain(&r, "10-42-0-6.db.default.svc.cluster.local.", RecordType::A);
        assert_nxdomain(&r, "db-9.db.default.svc.cluster.local.", RecordType::A);
        // An endpoint of a ClusterIP Service has a name too, as in CoreDNS.
        assert_eq!(answers(&r, "web-0.web.default.svc.cluster.local.", RecordType::A), ["web-0.web.default.svc.cluster.local. 5 IN A 10.42.0.9"]);
    }

    #[test]
    fn pod_with_hostname_and_subdomain_resolves() {
        // A pod with hostname web-0 and subdomain db is listed with that
        // hostname in the headless Service db's slice: web-0.db.<ns>.svc.
        let mut r = cluster();
        r.apply_endpoint_slice(&slice("default", "db-3", "db", json!([{"name": "pg", "port": 5432}]), json!([{"addresses": ["10.42.2.2"], "hostname": "web-0"}])));
        assert_eq!(answers(&r, "web-0.db.default.svc.cluster.local.", RecordType::A), ["web-0.db.default.svc.cluster.local. 5 IN A 10.42.2.2"]);
    }

    #[test]
    fn srv_for_a_named_port_of_a_cluster_ip_service() {
        let r = cluster();
        let (code, srv, _, additionals) = answer(&r, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(code, ResponseCode::NoError);
        assert_eq!(srv, ["_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."]);
        assert_eq!(additionals, ["web.default.svc.cluster.local. 5 IN A 10.43.0.20"]);
        assert_eq!(answers(&r, "_dns._udp.web.default.svc.cluster.local.", RecordType::SRV), ["_dns._udp.web.default.svc.cluster.local. 5 IN SRV 0 100 53 web.default.svc.cluster.local."]);
        // A records answer for the SRV name too, as CoreDNS's.
        assert_eq!(answers(&r, "_http._tcp.web.default.svc.cluster.local.", RecordType::A), ["_http._tcp.web.default.svc.cluster.local. 5 IN A 10.43.0.20"]);
    }

    #[test]
    fn srv_without_port_lists_every_port_and_wrong_ports_are_nxdomain() {
        let r = cluster();
        let got = answers(&r, "web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            got,
            [
                "web.default.svc.cluster.local. 5 IN SRV 0 33 80 web.default.svc.cluster.local.",
                "web.default.svc.cluster.local. 5 IN SRV 0 33 53 web.default.svc.cluster.local.",
                "web.default.svc.cluster.local. 5 IN SRV 0 33 8080 web.default.svc.cluster.local.",
            ]
        );
        assert_nxdomain(&r, "_https._tcp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_nxdomain(&r, "_http._udp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_nxdomain(&r, "_x._http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
    }

    #[test]
    fn srv_for_a_headless_service_names_each_endpoint() {
        let r = cluster();
        let (code, mut answers, _, mut additionals) = answer(&r, "_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV);
        answers.sort();
        additionals.sort();
        assert_eq!(code, ResponseCode::NoError);
        assert_eq!(
            answers,
            [
                "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 10-42-1-7.db.default.svc.cluster.local.",
                "_pg._tcp.db.default.svc.cluster.local. 5 IN SRV 0 50 5432 db-0.db.default.svc.cluster.local."
            ]
        );
        assert_eq!(additionals, ["10-42-1-7.db.default.svc.cluster.local. 5 IN A 10.42.1.7", "db-0.db.default.svc.cluster.local. 5 IN A 10.42.0.5"]);
    }

    #[test]
    fn external_name_is_a_cname() {
        let r = cluster();
        assert_eq!(answers(&r, "ext.default.svc.cluster.local.", RecordType::CNAME), ["ext.default.svc.cluster.local. 5 IN CNAME example.com."]);
        // Its A records are the target's, looked up upstream.
        match ask(&r, "ext.default.svc.cluster.local.", RecordType::A) {
            Outcome::Chase(a, target) => {
                assert_eq!(target.to_string(), "example.com.");
                assert_eq!(a.answers.iter().map(|r| r.to_string()).collect::<Vec<_>>(), ["ext.default.svc.cluster.local. 5 IN CNAME example.com."]);
            }
            other => panic!("expected a chase, got {other:?}"),
        }
        // No SRV for ExternalName services, nor endpoints.
        assert_nodata(&r, "ext.default.svc.cluster.local.", RecordType::SRV);
        assert_nxdomain(&r, "x.ext.default.svc.cluster.local.", RecordType::A);
    }

    #[test]
    fn external_name_inside_the_cluster_is_followed() {
        let r = cluster();
        assert_eq!(
            answers(&r, "alias.prod.svc.cluster.local.", RecordType::A),
            ["alias.prod.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.", "web.default.svc.cluster.local. 5 IN A 10.43.0.20"]
        );
        // Nothing to follow to: CoreDNS drops the CNAME, which leaves NODATA.
        assert_nodata(&r, "alias.prod.svc.cluster.local.", RecordType::AAAA);
    }

    #[test]
    fn external_name_loops_stop() {
        let mut r = cluster();
        r.apply_service(&service("default", "a", json!({"type": "ExternalName", "externalName": "b.default.svc.cluster.local"})));
        r.apply_service(&service("default", "b", json!({"type": "ExternalName", "externalName": "a.default.svc.cluster.local"})));
        assert_nodata(&r, "a.default.svc.cluster.local.", RecordType::A);
    }

    #[test]
    fn ptr_for_cluster_ips_and_endpoints() {
        let r = cluster();
        assert_eq!(answers(&r, "20.0.43.10.in-addr.arpa.", RecordType::PTR), ["20.0.43.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."]);
        assert_eq!(answers(&r, "5.0.42.10.in-addr.arpa.", RecordType::PTR), ["5.0.42.10.in-addr.arpa. 5 IN PTR db-0.db.default.svc.cluster.local."]);
        assert_eq!(answers(&r, "7.1.42.10.in-addr.arpa.", RecordType::PTR), ["7.1.42.10.in-addr.arpa. 5 IN PTR 10-42-1-7.db.default.svc.cluster.local."]);
        let v6 = "0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.3.4.0.0.0.0.d.f.ip6.arpa.";
        assert_eq!(answers(&r, v6, RecordType::PTR), [format!("{v6} 5 IN PTR v6.default.svc.cluster.local.")]);
        // Addresses it does not know, and partial names, go upstream.
        assert!(matches!(ask(&r, "6.0.42.10.in-addr.arpa.", RecordType::PTR), Outcome::Forward));
        assert!(matches!(ask(&r, "1.1.168.192.in-addr.arpa.", RecordType::PTR), Outcome::Forward));
        assert!(matches!(ask(&r, "43.10.in-addr.arpa.", RecordType::PTR), Outcome::Forward));
        assert!(matches!(ask(&r, "20.0.43.10.in-addr.arpa.", RecordType::A), Outcome::Forward));
    }

    #[test]
    fn pod_names_are_addresses_in_existing_namespaces() {
        let r = cluster();
        assert_eq!(answers(&r, "10-42-0-7.default.pod.cluster.local.", RecordType::A), ["10-42-0-7.default.pod.cluster.local. 5 IN A 10.42.0.7"]);
        assert_eq!(answers(&r, "fd00-42--7.prod.pod.cluster.local.", RecordType::AAAA), ["fd00-42--7.prod.pod.cluster.local. 5 IN AAAA fd00:42::7"]);
        assert_nodata(&r, "10-42-0-7.default.pod.cluster.local.", RecordType::AAAA);
        assert_nxdomain(&r, "10-42-0-7.nowhere.pod.cluster.local.", RecordType::A);
        assert_nxdomain(&r, "not-an-address.default.pod.cluster.local.", RecordType::A);
        assert_nxdomain(&r, "10-42-0-300.default.pod.cluster.local.", RecordType::A);
    }

    #[test]
    fn missing_names_are_nxdomain_with_the_soa() {
        let r = cluster();
        for name in [
            "nope.default.svc.cluster.local.",
            "web.nowhere.svc.cluster.local.",
            "nowhere.svc.cluster.local.",
            "web.default.cluster.local.",
            "foo.cluster.local.",
            "a.b.c.web.default.svc.cluster.local.",
        ] {
            for qtype in [RecordType::A, RecordType::AAAA, RecordType::SRV, RecordType::TXT, RecordType::MX] {
                assert_nxdomain(&r, name, qtype);
            }
        }
    }

    #[test]
    fn existing_names_without_records_of_the_type_are_nodata() {
        let r = cluster();
        assert_nodata(&r, "web.default.svc.cluster.local.", RecordType::MX);
        assert_nodata(&r, "web.default.svc.cluster.local.", RecordType::TXT);
        assert_nodata(&r, "web.default.svc.cluster.local.", RecordType::CNAME);
        assert_nodata(&r, "web.default.svc.cluster.local.", RecordType::PTR);
        assert_nodata(&r, "db.default.svc.cluster.local.", RecordType::AAAA);
        // The zone, `svc`, `pod` and namespaces exist.
        for name in ["cluster.local.", "svc.cluster.local.", "pod.cluster.local.", "default.svc.cluster.local.", "prod.pod.cluster.local."] {
            assert_nodata(&r, name, RecordType::A);
        }
    }

    #[test]
    fn apex_has_soa_and_ns() {
        let r = cluster();
        let soa = answers(&r, "cluster.local.", RecordType::SOA);
        assert_soa(&soa);
        let (code, ns, _, additionals) = answer(&r, "cluster.local.", RecordType::NS);
        assert_eq!(code, ResponseCode::NoError);
        assert_eq!(ns, ["cluster.local. 5 IN NS ns.dns.cluster.local."]);
        assert_eq!(additionals, ["ns.dns.cluster.local. 5 IN A 10.43.0.10"]);
        assert_eq!(answers(&r, "ns.dns.cluster.local.", RecordType::A), ["ns.dns.cluster.local. 5 IN A 10.43.0.10"]);
    }

    #[test]
    fn dns_version_txt() {
        let r = cluster();
        assert_eq!(answers(&r, "dns-version.cluster.local.", RecordType::TXT), ["dns-version.cluster.local. 28800 IN TXT 1.1.0"]);
    }

    #[test]
    fn names_are_case_insensitive_and_answered_as_asked() {
        let r = cluster();
        assert_eq!(answers(&r, "WEB.Default.SVC.Cluster.Local.", RecordType::A), ["WEB.Default.SVC.Cluster.Local. 5 IN A 10.43.0.20"]);
        assert_eq!(answers(&r, "_HTTP._Tcp.web.default.svc.cluster.local.", RecordType::SRV).len(), 1);
        assert_nxdomain(&r, "NOPE.default.svc.CLUSTER.local.", RecordType::A);
    }

    #[test]
    fn trailing_dot_is_optional() {
        let r = cluster();
        assert_eq!(answers(&r, "web.default.svc.cluster.local", RecordType::A), ["web.default.svc.cluster.local. 5 IN A 10.43.0.20"]);
        let dotted = Records::new("cluster.local.");
        assert_nodata(&dotted, "cluster.local", RecordType::A);
    }

    #[test]
    fn other_names_are_forwarded() {
        let r = cluster();
        for name in ["example.com.", "local.", "xcluster.local.", "cluster.local.example.com."] {
            assert!(matches!(ask(&r, name, RecordType::A), Outcome::Forward), "{name}");
        }
    }

    #[test]
    fn changes_show_in_the_next_answer() {
        let mut r = cluster();
        r.apply_service(&service("default", "web", json!({"clusterIP": "10.43.0.99", "ports": [{"name": "http", "port": 80}]})));
        assert_eq!(answers(&r, "web.default.svc.cluster.local.", RecordType::A), ["web.default.svc.cluster.local. 5 IN A 10.43.0.99"]);
        assert!(matches!(ask(&r, "20.0.43.10.in-addr.arpa.", RecordType::PTR), Outcome::Forward));
        assert_eq!(answers(&r, "99.0.43.10.in-addr.arpa.", RecordType::PTR), ["99.0.43.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."]);

        r.delete_endpoint_slice("default", "db-2");
        assert_eq!(answers(&r, "db.default.svc.cluster.local.", RecordType::A), ["db.default.svc.cluster.local. 5 IN A 10.42.0.5"]);
        assert!(matches!(ask(&r, "7.1.42.10.in-addr.arpa.", RecordType::PTR), Outcome::Forward));

        r.delete_service("default", "web");
        assert_nxdomain(&r, "web.default.svc.cluster.local.", RecordType::A);
        assert!(matches!(ask(&r, "99.0.43.10.in-addr.arpa.", RecordType::PTR), Outcome::Forward));

        r.delete_namespace("prod");
        assert_nxdomain(&r, "alias.prod.svc.cluster.local.", RecordType::A);
        assert_nxdomain(&r, "10-42-0-7.prod.pod.cluster.local.", RecordType::A);
    }

    #[test]
    fn a_relist_drops_what_it_did_not_list() {
        let mut r = cluster();
        r.retain_services(|k| k != "db.default");
        r.retain_endpoint_slices(|k| k != "web-abc.default");
        r.retain_namespaces(|n| n != "kube-system");
        assert_nxdomain(&r, "db.default.svc.cluster.local.", RecordType::A);
        assert_nxdomain(&r, "web-0.web.default.svc.cluster.local.", RecordType::A);
        assert_nxdomain(&r, "kube-dns.kube-system.svc.cluster.local.", RecordType::A);
        assert_eq!(answers(&r, "web.default.svc.cluster.local.", RecordType::A).len(), 1);
    }

    #[test]
    fn a_slice_moving_to_another_service_leaves_the_first() {
        let mut r = cluster();
        r.apply_endpoint_slice(&slice("default", "db-2", "web", json!([{"name": "http", "port": 80}]), json!([{"addresses": ["10.42.1.7"]}])));
        assert_eq!(answers(&r, "db.default.svc.cluster.local.", RecordType::A), ["db.default.svc.cluster.local. 5 IN A 10.42.0.5"]);
        assert_eq!(answers(&r, "7.1.42.10.in-addr.arpa.", RecordType::PTR), ["7.1.42.10.in-addr.arpa. 5 IN PTR 10-42-1-7.web.default.svc.cluster.local."]);
    }
}

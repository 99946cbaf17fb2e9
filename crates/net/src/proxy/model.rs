//! What the proxy makes of one Service and its EndpointSlices: per port,
//! where traffic arrives and which endpoints it may go to, chosen as
//! upstream's kube-proxy chooses them (`CategorizeEndpoints`).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(text: Option<&str>) -> Option<Protocol> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nftables' name for it.
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// Its IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// One port of one Service, as the proxy programs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortRules {
    pub namespace: String,
    pub name: String,
    pub port_name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub cluster_ips: Vec<Ipv4Addr>,
    pub node_port: Option<u16>,
    /// externalIPs and LoadBalancer ingress IPs: traffic from outside.
    pub external_ips: Vec<Ipv4Addr>,
    /// Seconds a client sticks to its endpoint (`sessionAffinity: ClientIP`).
    pub affinity: Option<u32>,
    /// `externalTrafficPolicy: Local`: outside traffic only to this node's
    /// endpoints, its source kept.
    pub external_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// Where traffic to a cluster IP goes, and where outside traffic goes
    /// under `externalTrafficPolicy: Local`.
    pub cluster_endpoints: Vec<Endpoint>,
    pub local_endpoints: Vec<Endpoint>,
    /// Every endpoint either list holds (for stale UDP flows).
    pub all_endpoints: BTreeSet<Endpoint>,
}

impl ServicePortRules {
    /// `ns/name/tcp/port-name`, as upstream names a service port's chains.
    pub fn id(&self) -> String {
        format!("{}/{}/{}/{}", self.namespace, self.name, self.protocol.nft(), self.port_name)
    }

    pub fn has_external(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty()
    }
}

/// One endpoint of a slice, as the categorising needs it.
struct Candidate {
    endpoint: Endpoint,
    ready: bool,
    serving: bool,
    terminating: bool,
    local: bool,
}

/// The rules for every port of `service`; none for headless, ExternalName
/// and non-IPv4 Services.
pub fn service_ports(service: &Service, slices: &[&EndpointSlice], node_name: &str, service_lb: bool) -> Vec<ServicePortRules> {
    let Some(spec) = service.spec.as_ref() else { return Vec::new() };
    let (Some(namespace), Some(name)) = (service.metadata.namespace.as_deref(), service.metadata.name.as_deref()) else { return Vec::new() };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let listed = spec.cluster_ips.clone().or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip])).unwrap_or_default();
    let cluster_ips: Vec<Ipv4Addr> = listed.iter().filter_map(|ip| ip.parse().ok()).collect();
    if cluster_ips.is_empty() {
        // Headless (clusterIP None): DNS only.
        return Vec::new();
    }
    let mut external_ips: Vec<Ipv4Addr> = spec.external_ips.iter().flatten().filter_map(|ip| ip.parse().ok()).collect();
    if service_lb && spec.type_.as_deref() == Some("LoadBalancer") {
        let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
        external_ips.extend(ingress.into_iter().flatten().filter_map(|i| i.ip.as_ref()?.parse::<Ipv4Addr>().ok()));
    }
    external_ips.sort();
    external_ips.dedup();
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref()).and_then(|c| c.timeout_seconds).map(|t| t.max(1) as u32).unwrap_or(10800)
    });
    // Only read for traffic from outside (`has_external`), as upstream's ExternalPolicyLocal.
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    spec.ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let protocol = Protocol::parse(port.protocol.as_deref())?;
            let candidates = candidates(slices, port, protocol, node_name);
            let cluster_endpoints = usable(candidates.iter().filter(|c| !internal_local || c.local));
            let local_endpoints = usable(candidates.iter().filter(|c| c.local));
            let all_endpoints = cluster_endpoints.iter().chain(&local_endpoints).cloned().collect();
            Some(ServicePortRules {
                namespace: namespace.to_string(),
                name: name.to_string(),
                port_name: port.name.clone().unwrap_or_default(),
                protocol,
                port: u16::try_from(port.port).ok()?,
                cluster_ips: cluster_ips.clone(),
                node_port: port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0),
                external_ips: external_ips.clone(),
                affinity,
                external_local,
                internal_local,
                cluster_endpoints,
                local_endpoints,
                all_endpoints,
            })
        })
        .collect()
}

/// The slices' endpoints for one service port, each once.
fn candidates(slices: &[&EndpointSlice], port: &ServicePort, protocol: Protocol, node_name: &str) -> Vec<Candidate> {
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for slice in slices.iter().filter(|s| s.address_type == "IPv4") {
        let target = slice.ports.iter().flatten().find(|p| p.name.as_deref().unwrap_or_default() == port.name.as_deref().unwrap_or_default() && Protocol::parse(p.protocol.as_deref()) == Some(protocol));
        let Some(number) = target.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok()) else { continue };
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.as_ref();
            // Unset conditions mean ready and serving, not terminating.
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            let local = endpoint.node_name.as_deref() == Some(node_name);
            for address in endpoint.addresses.iter().filter_map(|a| a.parse::<Ipv4Addr>().ok()) {
                let candidate = Endpoint { ip: address, port: number };
                if seen.insert(candidate.clone()) {
                    found.push(Candidate { endpoint: candidate, ready, serving, terminating, local });
                }
            }
        }
    }
    found
}

/// The ready endpoints, or, when none is, the serving terminating ones
/// (upstream's fallback, so that a rolling update never drops traffic).
fn usable<'a>(candidates: impl Iterator<Item = &'a Candidate> + Clone) -> Vec<Endpoint> {
    let mut ready: Vec<Endpoint> = candidates.clone().filter(|c| c.ready).map(|c| c.endpoint.clone()).collect();
    if ready.is_empty() {
        ready = candidates.filter(|c| c.serving && c.terminating).map(|c| c.endpoint.clone()).collect();
    }
    ready.sort();
    ready
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn slice(yaml: &str) -> EndpointSlice {
        serde_yaml::from_str(yaml).unwrap()
    }

    const WEB: &str = "
metadata: {name: web, namespace: ns}
spec:
  type: NodePort
  clusterIP: 10.43.0.5
  clusterIPs: [10.43.0.5]
  externalIPs: [192.0.2.9]
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080, protocol: TCP}]
";

    #[test]
    fn ready_endpoints_are_used_and_terminating_ones_only_when_none_is_ready() {
        let s = slice("
addressType: IPv4
metadata: {name: web-1}
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.42.0.2], conditions: {ready: true}, nodeName: me}
- {addresses: [10.42.1.2], conditions: {ready: false, serving: true, terminating: true}, nodeName: other}
- {addresses: [10.42.1.3], nodeName: other}
");
        let rules = service_ports(&service(WEB), &[&s], "me", true);
        assert_eq!(rules.len(), 1);
        let r = &rules[0];
        assert_eq!(r.id(), "ns/web/tcp/http");
        assert_eq!((r.port, r.node_port, r.external_ips.clone()), (80, Some(30080), vec!["192.0.2.9".parse().unwrap()]));
        let ips = |eps: &[Endpoint]| eps.iter().map(|e| format!("{}:{}", e.ip, e.port)).collect::<Vec<_>>();
        assert_eq!(ips(&r.cluster_endpoints), ["10.42.0.2:8080", "10.42.1.3:8080"]);
        assert_eq!(ips(&r.local_endpoints), ["10.42.0.2:8080"]);

        let terminating = slice("
addressType: IPv4
metadata: {name: web-1}
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.42.1.2], conditions: {ready: false, serving: true, terminating: true}}
- {addresses: [10.42.1.4], conditions: {ready: false, serving: false, terminating: true}}
");
        let r = &service_ports(&service(WEB), &[&terminating], "me", true)[0];
        assert_eq!(ips(&r.cluster_endpoints), ["10.42.1.2:8080"]);
    }

    #[test]
    fn headless_and_external_name_services_get_no_rules() {
        let headless = service("metadata: {name: h, namespace: ns}\nspec: {clusterIP: None, ports: [{port: 80}]}");
        assert!(service_ports(&headless, &[], "me", true).is_empty());
        let external = service("metadata: {name: e, namespace: ns}\nspec: {type: ExternalName, externalName: example.com}");
        assert!(service_ports(&external, &[], "me", true).is_empty());
    }

    #[test]
    fn affinity_and_traffic_policies() {
        let s = service("
metadata: {name: web, namespace: ns}
spec:
  type: LoadBalancer
  clusterIP: 10.43.0.5
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  externalTrafficPolicy: Local
  internalTrafficPolicy: Local
  ports: [{port: 80, nodePort: 30080}]
status: {loadBalancer: {ingress: [{ip: 192.0.2.2}]}}
");
        let r = &service_ports(&s, &[], "me", true)[0];
        assert_eq!((r.affinity, r.external_local, r.internal_local), (Some(60), true, true));
        assert_eq!(r.external_ips, vec!["192.0.2.2".parse::<Ipv4Addr>().unwrap()]);
        assert!(service_ports(&s, &[], "me", false)[0].external_ips.is_empty(), "--disable servicelb");
    }
}

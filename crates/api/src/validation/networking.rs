//! networking.k8s.io/v1: NetworkPolicy, Ingress and IngressClass, as
//! upstream's `pkg/apis/networking/validation` (Kubernetes 1.32) checks
//! them.

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, IPBlock, Ingress, IngressBackend, IngressClass, IngressClassParametersReference, IngressRule, IngressSpec,
    NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::addresses::{domain_prefixed_path, load_balancer_hostname, parse_ip_sloppy, valid_ip, Cidr, INVALID_CIDR};
use super::{dns1035_label, dns1123_label, dns1123_subdomain, immutable, name_by, path_segment, port_name, port_number, selector_allowing, selector_is_invalid, Bad, Errors, Op, Path};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    Some(match (kind, op) {
        // Updates relax some rules for what the old object already holds
        // (upstream's validation options), so the whole update is checked
        // against the old object in one function.
        ("NetworkPolicy", Op::Update { .. }) => op.run(|_: &NetworkPolicy| vec![], network_policy_update, super::nothing),
        ("NetworkPolicy", _) => op.run(network_policy, super::nothing, super::nothing),
        ("Ingress", Op::Update { .. }) => op.run(|_: &Ingress| vec![], ingress_update, ingress_status),
        ("Ingress", _) => op.run(ingress_create, super::nothing, ingress_status),
        ("IngressClass", _) => op.run(ingress_class, ingress_class_update, super::nothing),
        _ => return None,
    })
}

// ---- hosts ------------------------------------------------------------------

const WILDCARD_SUBDOMAIN_MSG: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// Upstream's `IsWildcardDNS1123Subdomain`: `*.` then a DNS subdomain.
fn wildcard_subdomain(host: &str, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if host.len() > 253 {
        errs.push(path.invalid(host, "must be no more than 253 characters"));
    }
    let well_formed = host.strip_prefix("*.").is_some_and(|rest| {
        rest.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
    });
    if !well_formed {
        errs.push(path.invalid(host, WILDCARD_SUBDOMAIN_MSG));
    }
    errs
}

// ---- NetworkPolicy ---------------------------------------------------------

fn network_policy(np: &NetworkPolicy) -> Errors {
    network_policy_spec(np, false)
}

/// Upstream validates an update as a create, but lets invalid label values
/// stay in the selectors when the stored pod selector already has them.
fn network_policy_update(new: &NetworkPolicy, old: &NetworkPolicy) -> Errors {
    let allow = selector_is_invalid(old.spec.as_ref().map(|s| &s.pod_selector));
    network_policy_spec(new, allow)
}

fn network_policy_spec(np: &NetworkPolicy, allow_invalid_values: bool) -> Errors {
    let spec = np.spec.clone().unwrap_or_default();
    let path = Path::new("spec");
    let mut errs = selector_allowing(&spec.pod_selector, allow_invalid_values, &path.child("podSelector"));
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        let at = path.child("ingress").index(i);
        for (j, port) in rule.ports.iter().flatten().enumerate() {
            errs.extend(network_policy_port(port, &at.child("ports").index(j)));
        }
        for (j, peer) in rule.from.iter().flatten().enumerate() {
            errs.extend(network_policy_peer(peer, allow_invalid_values, &at.child("from").index(j)));
        }
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        let at = path.child("egress").index(i);
        for (j, port) in rule.ports.iter().flatten().enumerate() {
            errs.extend(network_policy_port(port, &at.child("ports").index(j)));
        }
        for (j, peer) in rule.to.iter().flatten().enumerate() {
            errs.extend(network_policy_peer(peer, allow_invalid_values, &at.child("to").index(j)));
        }
    }
    let types = spec.policy_types.unwrap_or_default();
    if types.len() > 2 {
        let shown: Vec<String> = types.iter().map(|t| format!("{t:?}")).collect();
        errs.push(path.child("policyTypes").invalid(Bad::raw(format!("[]networking.PolicyType{{{}}}", shown.join(", "))), "may not specify more than two policyTypes"));
        return errs;
    }
    for (i, t) in types.iter().enumerate() {
        if t != "Ingress" && t != "Egress" {
            errs.push(path.child("policyTypes").index(i).not_supported(t, &["Ingress", "Egress"]));
        }
    }
    errs
}

/// Upstream's `ValidateNetworkPolicyPort`. A missing protocol is TCP
/// (upstream's default, which `defaults.rs` writes; older objects may lack it).
fn network_policy_port(port: &NetworkPolicyPort, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if let Some(protocol) = &port.protocol {
        if !matches!(protocol.as_str(), "TCP" | "UDP" | "SCTP") {
            errs.push(path.child("protocol").not_supported(protocol, &["TCP", "UDP", "SCTP"]));
        }
    }
    match &port.port {
        Some(IntOrString::Int(number)) => {
            errs.extend(port_number(i64::from(*number), &path.child("port")));
            if let Some(end) = port.end_port {
                if end < *number {
                    // 1.32 shows `port`'s value here.
                    errs.push(path.child("endPort").invalid(*number, "must be greater than or equal to `port`"));
                }
                errs.extend(port_number(i64::from(end), &path.child("endPort")));
            }
        }
        Some(IntOrString::String(name)) => {
            if let Some(end) = port.end_port {
                errs.push(path.child("endPort").invalid(end, "may not be specified when `port` is non-numeric"));
            }
            errs.extend(port_name(name, &path.child("port")));
        }
        None => {
            if let Some(end) = port.end_port {
                errs.push(path.child("endPort").invalid(end, "may not be specified when `port` is not specified"));
            }
        }
    }
    errs
}

/// Upstream's `ValidateNetworkPolicyPeer`: selectors (one or both), or an
/// IP block alone.
fn network_policy_peer(peer: &NetworkPolicyPeer, allow_invalid_values: bool, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let mut peers = 0;
    if let Some(selector) = &peer.pod_selector {
        peers += 1;
        errs.extend(selector_allowing(selector, allow_invalid_values, &path.child("podSelector")));
    }
    if let Some(selector) = &peer.namespace_selector {
        peers += 1;
        errs.extend(selector_allowing(selector, allow_invalid_values, &path.child("namespaceSelector")));
    }
    if let Some(block) = &peer.ip_block {
        peers += 1;
        errs.extend(ip_block(block, &path.child("ipBlock")));
    }
    if peers == 0 {
        errs.push(path.required("must specify a peer"));
    } else if peers > 1 && peer.ip_block.is_some() {
        errs.push(path.forbidden("may not specify both ipBlock and another peer"));
    }
    errs
}

/// Upstream's `ValidateIPBlock`: a CIDR, and exceptions strictly inside it.
fn ip_block(block: &IPBlock, path: &Path) -> Errors {
    if block.cidr.is_empty() {
        return vec![path.child("cidr").required("")];
    }
    let Some(cidr) = Cidr::parse(&block.cidr) else {
        return vec![path.child("cidr").invalid(&block.cidr, INVALID_CIDR)];
    };
    let mut errs = Vec::new();
    for (i, text) in block.except.iter().flatten().enumerate() {
        let at = path.child("except").index(i);
        match Cidr::parse(text) {
            None => errs.push(at.invalid(text, INVALID_CIDR)),
            Some(except) => {
                if !cidr.contains(&except) || cidr.prefix >= except.prefix {
                    errs.push(at.invalid(text, "must be a strict subset of `cidr`"));
                }
            }
        }
    }
    errs
}

// ---- Ingress ---------------------------------------------------------------

/// Upstream's `IngressValidationOptions`: leniencies an update keeps for
/// what the stored object already holds.
#[derive(Default, Clone, Copy)]
struct IngressOptions {
    allow_invalid_secret_name: bool,
    allow_invalid_wildcard_host_rule: bool,
}

const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// Upstream's `ValidateIngressCreate`.
fn ingress_create(ingress: &Ingress) -> Errors {
    let mut errs = ingress_spec(&ingress.spec.clone().unwrap_or_default(), &Path::new("spec"), IngressOptions::default());
    let annotation = ingress.metadata.annotations.as_ref().and_then(|a| a.get(INGRESS_CLASS_ANNOTATION));
    let class = ingress.spec.as_ref().and_then(|s| s.ingress_class_name.as_ref());
    if let (Some(annotation), Some(class)) = (annotation, class) {
        if annotation != class {
            errs.push(Path::new("annotations").child(INGRESS_CLASS_ANNOTATION).invalid(annotation, "must match `ingressClassName` when both are specified"));
        }
    }
    errs
}

/// Upstream's `ValidateIngressUpdate`: the spec rules, relaxed for a TLS
/// secret name or a wildcard rule the old object already got wrong.
fn ingress_update(new: &Ingress, old: &Ingress) -> Errors {
    let old_spec = old.spec.clone().unwrap_or_default();
    let opts = IngressOptions {
        allow_invalid_secret_name: old_spec.tls.iter().flatten().any(|tls| !tls_secret_name(tls.secret_name.as_deref().unwrap_or_default()).is_empty()),
        allow_invalid_wildcard_host_rule: old_spec.rules.iter().flatten().any(|rule| {
            rule.host.as_deref().unwrap_or_default().contains('*') && !ingress_rule_value(rule, &Path::new(""), IngressOptions::default()).is_empty()
        }),
    };
    ingress_spec(&new.spec.clone().unwrap_or_default(), &Path::new("spec"), opts)
}

fn tls_secret_name(name: &str) -> Errors {
    if name.is_empty() {
        return vec![];
    }
    name_by(dns1123_subdomain, name, &Path::new(""))
}

/// Upstream's `ValidateIngressSpec`.
fn ingress_spec(spec: &IngressSpec, path: &Path, opts: IngressOptions) -> Errors {
    let mut errs = Vec::new();
    let rules = spec.rules.as_deref().unwrap_or_default();
    if rules.is_empty() && spec.default_backend.is_none() {
        let shown = if spec.rules.is_some() { "[]networking.IngressRule{}" } else { "[]networking.IngressRule(nil)" };
        errs.push(path.invalid(Bad::raw(shown), "either `defaultBackend` or `rules` must be specified"));
    }
    if let Some(backend) = &spec.default_backend {
        errs.extend(ingress_backend(backend, &path.child("defaultBackend")));
    }
    for (i, rule) in rules.iter().enumerate() {
        errs.extend(ingress_rule(rule, &path.child("rules").index(i), opts));
    }
    for (i, tls) in spec.tls.iter().flatten().enumerate() {
        let at = path.child("tls").index(i);
        for (j, host) in tls.hosts.iter().flatten().enumerate() {
            let host_path = at.child("hosts").index(j);
            if host.contains('*') {
                errs.extend(wildcard_subdomain(host, &host_path));
            } else {
                errs.extend(name_by(dns1123_subdomain, host, &host_path));
            }
        }
        if !opts.allow_invalid_secret_name {
            let name = tls.secret_name.as_deref().unwrap_or_default();
            if !name.is_empty() {
                errs.extend(name_by(dns1123_subdomain, name, &at.child("secretName")));
            }
        }
    }
    if let Some(class) = &spec.ingress_class_name {
        errs.extend(name_by(dns1123_subdomain, class, &path.child("ingressClassName")));
    }
    errs
}

/// One rule: its host (a DNS name or a `*.` wildcard, never an IP) and,
/// unless a lenient update spares a wildcard rule, its paths.
fn ingress_rule(rule: &IngressRule, path: &Path, opts: IngressOptions) -> Errors {
    let mut errs = Vec::new();
    let host = rule.host.as_deref().unwrap_or_default();
    let mut wildcard = false;
    if !host.is_empty() {
        let host_path = path.child("host");
        if parse_ip_sloppy(host).is_some() {
            errs.push(host_path.invalid(host, "must be a DNS name, not an IP address"));
        }
        if host.contains('*') {
            errs.extend(wildcard_subdomain(host, &host_path));
            wildcard = true;
        } else {
            errs.extend(name_by(dns1123_subdomain, host, &host_path));
        }
    }
    if !wildcard || !opts.allow_invalid_wildcard_host_rule {
        errs.extend(ingress_rule_value(rule, path, opts));
    }
    errs
}

fn ingress_rule_value(rule: &IngressRule, path: &Path, _opts: IngressOptions) -> Errors {
    let mut errs = Vec::new();
    if let Some(http) = &rule.http {
        let at = path.child("http");
        if http.paths.is_empty() {
            errs.push(at.child("paths").required(""));
        }
        for (i, p) in http.paths.iter().enumerate() {
            errs.extend(http_ingress_path(p, &at.child("paths").index(i)));
        }
    }
    errs
}

const INVALID_PATH_SEQUENCES: [&str; 5] = ["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: [&str; 2] = ["/..", "/."];

/// Upstream's `validateHTTPIngressPath`. A missing `pathType` decodes as
/// "", which upstream sees as not set.
fn http_ingress_path(p: &HTTPIngressPath, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let at = path.child("path");
    let text = p.path.as_deref().unwrap_or_default();
    match p.path_type.as_str() {
        "" => return vec![path.child("pathType").required("pathType must be specified")],
        "Exact" | "Prefix" => {
            if !text.starts_with('/') {
                errs.push(at.invalid(text, "must be an absolute path"));
            }
            if !text.is_empty() {
                for bad in INVALID_PATH_SEQUENCES {
                    if text.contains(bad) {
                        errs.push(at.invalid(text, &format!("must not contain '{bad}'")));
                    }
                }
                for bad in INVALID_PATH_SUFFIXES {
                    if text.ends_with(bad) {
                        errs.push(at.invalid(text, &format!("cannot end with '{bad}'")));
                    }
                }
            }
        }
        "ImplementationSpecific" => {
            if !text.is_empty() && !text.starts_with('/') {
                errs.push(at.invalid(text, "must be an absolute path"));
            }
        }
        other => errs.push(path.child("pathType").not_supported(other, &["Exact", "ImplementationSpecific", "Prefix"])),
    }
    errs.extend(ingress_backend(&p.backend, &path.child("backend")));
    errs
}

/// Upstream's `validateIngressBackend`: a service (name and one port) or a
/// resource, exactly one.
fn ingress_backend(backend: &IngressBackend, path: &Path) -> Errors {
    let mut errs = Vec::new();
    match (&backend.resource, &backend.service) {
        (Some(_), Some(_)) => return vec![path.invalid("", "cannot set both resource and service backends")],
        (Some(resource), None) => errs.extend(typed_local_object_reference(resource, &path.child("resource"))),
        (None, Some(service)) => {
            let name_path = path.child("service").child("name");
            if service.name.is_empty() {
                errs.push(name_path.required(""));
            } else {
                errs.extend(name_by(dns1035_label, &service.name, &name_path));
            }
            let port = service.port.clone().unwrap_or_default();
            let name = port.name.unwrap_or_default();
            let number = port.number.unwrap_or_default();
            let port_path = path.child("service").child("port");
            match (!name.is_empty(), number != 0) {
                (true, true) => errs.push(path.invalid("", "cannot set both port name & port number")),
                (true, false) => errs.extend(port_name(&name, &port_path.child("name"))),
                (false, true) => errs.extend(port_number(i64::from(number), &port_path.child("number"))),
                (false, false) => errs.push(path.required("port name or number is required")),
            }
        }
        (None, None) => errs.push(path.invalid("", "resource or service backend is required")),
    }
    errs
}

/// Upstream's `validateIngressTypedLocalObjectReference`.
fn typed_local_object_reference(r: &TypedLocalObjectReference, path: &Path) -> Errors {
    object_reference(r.api_group.as_deref(), &r.kind, &r.name, path)
}

fn object_reference(api_group: Option<&str>, kind: &str, name: &str, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if let Some(group) = api_group {
        errs.extend(name_by(dns1123_subdomain, group, &path.child("apiGroup")));
    }
    if kind.is_empty() {
        errs.push(path.child("kind").required("kind is required"));
    } else {
        errs.extend(path_segment(kind, &path.child("kind")));
    }
    if name.is_empty() {
        errs.push(path.child("name").required("name is required"));
    } else {
        errs.extend(path_segment(name, &path.child("name")));
    }
    errs
}

/// Upstream's `ValidateIngressStatusUpdate`: load-balancer IPs and names.
fn ingress_status(new: &Ingress, _old: &Ingress) -> Errors {
    let mut errs = Vec::new();
    let path = Path::new("status").child("loadBalancer").child("ingress");
    let ingresses = new.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
    for (i, lb) in ingresses.into_iter().flatten().enumerate() {
        let at = path.index(i);
        let ip = lb.ip.as_deref().unwrap_or_default();
        if !ip.is_empty() {
            errs.extend(valid_ip(ip, &at.child("ip")));
        }
        let hostname = lb.hostname.as_deref().unwrap_or_default();
        if !hostname.is_empty() {
            errs.extend(load_balancer_hostname(hostname, &at.child("hostname")));
        }
    }
    errs
}

// ---- IngressClass ----------------------------------------------------------

const MAX_CONTROLLER_LEN: usize = 250;

/// Upstream's `validateIngressClassSpec`.
fn ingress_class(class: &IngressClass) -> Errors {
    let spec = class.spec.clone().unwrap_or_default();
    let path = Path::new("spec");
    let controller = spec.controller.unwrap_or_default();
    let mut errs = Vec::new();
    if controller.len() > MAX_CONTROLLER_LEN {
        errs.push(path.child("controller").too_long(MAX_CONTROLLER_LEN));
    }
    errs.extend(domain_prefixed_path(&controller, &path.child("controller")));
    if let Some(params) = &spec.parameters {
        errs.extend(ingress_class_parameters(params, &path.child("parameters")));
    }
    errs
}

/// Upstream's `validateIngressClassParametersReference`. A missing scope is
/// "Cluster" (upstream's default, which `defaults.rs` writes; older objects
/// may lack it).
fn ingress_class_parameters(params: &IngressClassParametersReference, path: &Path) -> Errors {
    let mut errs = object_reference(params.api_group.as_deref(), &params.kind, &params.name, path);
    let scope = params.scope.as_deref().unwrap_or("Cluster");
    match scope {
        "Namespace" => match &params.namespace {
            None => errs.push(path.child("namespace").required("`parameters.scope` is set to 'Namespace'")),
            Some(ns) => errs.extend(name_by(dns1123_label, ns, &path.child("namespace"))),
        },
        "Cluster" => {
            if params.namespace.is_some() {
                errs.push(path.child("namespace").forbidden("`parameters.scope` is set to 'Cluster'"));
            }
        }
        other => errs.push(path.child("scope").not_supported(other, &["Cluster", "Namespace"])),
    }
    errs
}

/// Upstream's `ValidateIngressClassUpdate`: the controller is fixed.
fn ingress_class_update(new: &IngressClass, old: &IngressClass) -> Errors {
    let controller = |c: &IngressClass| c.spec.as_ref().and_then(|s| s.controller.clone()).unwrap_or_default();
    immutable(&controller(new), &controller(old), &Path::new("spec").child("controller"))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{messages, table, update_table, with};
    use super::super::Op;

    const G: &str = "networking.k8s.io";

    fn network_policy() -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "test-network-policy", "namespace": "default"},
            "spec": {
                "podSelector": {"matchLabels": {"role": "db"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{
                    "from": [
                        {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                        {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                        {"podSelector": {"matchLabels": {"role": "frontend"}}}
                    ],
                    "ports": [{"protocol": "TCP", "port": 6379}]
                }],
                "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 5978}]}]
            }
        })
    }

    /// The policy with one ingress rule's ports replaced.
    fn ports(ports: Value) -> Value {
        with(&network_policy(), json!({"spec": {"ingress": [{"ports": ports}]}}))
    }

    /// The policy with one ingress rule's peers replaced.
    fn from(peers: Value) -> Value {
        with(&network_policy(), json!({"spec": {"ingress": [{"from": peers}]}}))
    }

    fn ip_block(cidr: &str, except: &[&str]) -> Value {
        from(json!([{"ipBlock": {"cidr": cidr, "except": except}}]))
    }

    #[test]
    fn network_policy_valid() {
        let valid = network_policy();
        table(G, "NetworkPolicy", &[
            ("upstream example", valid.clone(), ""),
            ("default deny all", json!({"metadata": {"name": "default-deny-all"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}), ""),
            ("default deny ingress, nothing defaulted", json!({"metadata": {"name": "default-deny-ingress"}, "spec": {"podSelector": {}}}), ""),
            ("allow all ingress", json!({"metadata": {"name": "allow-all"}, "spec": {"podSelector": {}, "ingress": [{}]}}), ""),
            ("port without protocol (TCP by default)", ports(json!([{"port": 80}])), ""),
            ("port range", ports(json!([{"protocol": "TCP", "port": 32000, "endPort": 32768}])), ""),
            ("equal port range", ports(json!([{"port": 80, "endPort": 80}])), ""),
            ("named port, UDP, SCTP", ports(json!([{"port": "dns", "protocol": "UDP"}, {"protocol": "SCTP"}])), ""),
            ("namespace and pod selector in one peer", from(json!([{"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}}])), ""),
            ("IPv6 block", ip_block("2001:db8::/64", &["2001:db8::/96"]), ""),
            ("leading zeros are still accepted in 1.32", ip_block("010.0.0.0/008", &["010.0.1.0/24"]), ""),
            ("host bits set", ip_block("10.0.0.1/24", &["10.0.0.128/25"]), ""),
            ("except by a /0 block", ip_block("0.0.0.0/0", &["10.0.0.0/8", "192.168.0.0/16"]), ""),
        ]);
    }

    #[test]
    fn network_policy_invalid() {
        let valid = network_policy();
        let port0 = "spec.ingress[0].ports[0]";
        let peer0 = "spec.ingress[0].from[0]";
        table(G, "NetworkPolicy", &[
            ("bad pod selector key", with(&valid, json!({"spec": {"podSelector": {"matchLabels": {"-role": "db"}}}})), "spec.podSelector.matchLabels: Invalid value: \"-role\": name part must consist of"),
            ("bad pod selector operator", with(&valid, json!({"spec": {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Maybe"}]}}})), "spec.podSelector.matchExpressions[0].operator: Invalid value: \"Maybe\": not a valid selector operator"),
            ("bad pod selector value", with(&valid, json!({"spec": {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["a b"]}]}}})), "spec.podSelector.matchExpressions[0].values[0]: Invalid value: \"a b\": a valid label must be"),
            ("unknown policy type", with(&valid, json!({"spec": {"policyTypes": ["Ingress", "Sideways"]}})), "spec.policyTypes[1]: Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\""),
            ("three policy types", with(&valid, json!({"spec": {"policyTypes": ["Ingress", "Egress", "Ingress"]}})), "spec.policyTypes: Invalid value: []networking.PolicyType{\"Ingress\", \"Egress\", \"Ingress\"}: may not specify more than two policyTypes"),
            ("port 0", ports(json!([{"port": 0}])), "spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
            ("port 70000", ports(json!([{"port": 70000}])), &format!("{port0}.port: Invalid value: 70000: must be between 1 and 65535, inclusive")),
            ("negative port", ports(json!([{"port": -80}])), &format!("{port0}.port: Invalid value: -80: must be between 1 and 65535, inclusive")),
            ("named port with underscore", ports(json!([{"port": "http_port"}])), &format!("{port0}.port: Invalid value: \"http_port\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")),
            ("named port too long", ports(json!([{"port": "abcdefghijklmnop"}])), &format!("{port0}.port: Invalid value: \"abcdefghijklmnop\": must be no more than 15 characters")),
            ("named port of digits", ports(json!([{"port": "8080"}])), &format!("{port0}.port: Invalid value: \"8080\": must contain at least one letter (a-z)")),
            ("endPort below port (1.32 shows port)", ports(json!([{"port": 100, "endPort": 50}])), &format!("{port0}.endPort: Invalid value: 100: must be greater than or equal to `port`")),
            ("endPort with a named port", ports(json!([{"port": "http", "endPort": 90}])), &format!("{port0}.endPort: Invalid value: 90: may not be specified when `port` is non-numeric")),
            ("endPort without port", ports(json!([{"endPort": 90}])), &format!("{port0}.endPort: Invalid value: 90: may not be specified when `port` is not specified")),
            ("endPort out of range", ports(json!([{"port": 100, "endPort": 70000}])), &format!("{port0}.endPort: Invalid value: 70000: must be between 1 and 65535, inclusive")),
            ("unknown protocol", ports(json!([{"port": 80, "protocol": "ICMP"}])), &format!("{port0}.protocol: Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\"")),
            ("lower-case protocol", ports(json!([{"port": 80, "protocol": "tcp"}])), &format!("{port0}.protocol: Unsupported value: \"tcp\"")),
            ("empty peer", from(json!([{}])), "spec.ingress[0].from[0]: Required value: must specify a peer"),
            ("ipBlock with a pod selector", from(json!([{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}])), &format!("{peer0}: Forbidden: may not specify both ipBlock and another peer")),
            ("ipBlock with a namespace selector", from(json!([{"ipBlock": {"cidr": "10.0.0.0/8"}, "namespaceSelector": {}}])), &format!("{peer0}: Forbidden: may not specify both ipBlock and another peer")),
            ("ipBlock without cidr", from(json!([{"ipBlock": {}}])), &format!("{peer0}.ipBlock.cidr: Required value")),
            ("cidr without prefix", ip_block("192.168.1.1", &[]), &format!("{peer0}.ipBlock.cidr: Invalid value: \"192.168.1.1\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")),
            ("cidr octet above 255", ip_block("300.0.0.0/8", &[]), &format!("{peer0}.ipBlock.cidr: Invalid value: \"300.0.0.0/8\": must be a valid CIDR value")),
            ("cidr prefix too long", ip_block("10.0.0.0/33", &[]), &format!("{peer0}.ipBlock.cidr: Invalid value: \"10.0.0.0/33\": must be a valid CIDR value")),
            ("cidr of words", ip_block("everything", &["10.0.0.0/8"]), &format!("{peer0}.ipBlock.cidr: Invalid value: \"everything\": must be a valid CIDR value")),
            ("except outside cidr", ip_block("10.0.0.0/24", &["192.168.0.0/24"]), &format!("{peer0}.ipBlock.except[0]: Invalid value: \"192.168.0.0/24\": must be a strict subset of `cidr`")),
            ("except equal to cidr", ip_block("10.0.0.0/24", &["10.0.0.0/24"]), &format!("{peer0}.ipBlock.except[0]: Invalid value: \"10.0.0.0/24\": must be a strict subset of `cidr`")),
            ("except wider than cidr", ip_block("10.0.0.0/24", &["10.0.0.0/25", "10.0.0.0/16"]), &format!("{peer0}.ipBlock.except[1]: Invalid value: \"10.0.0.0/16\": must be a strict subset of `cidr`")),
            ("except of another family", ip_block("10.0.0.0/8", &["2001:db8::/64"]), &format!("{peer0}.ipBlock.except[0]: Invalid value: \"2001:db8::/64\": must be a strict subset of `cidr`")),
            ("except not a CIDR", ip_block("10.0.0.0/8", &["10.0.0.1"]), &format!("{peer0}.ipBlock.except[0]: Invalid value: \"10.0.0.1\": must be a valid CIDR value")),
            ("bad namespace selector value", from(json!([{"namespaceSelector": {"matchLabels": {"project": "my project"}}}])), &format!("{peer0}.namespaceSelector.matchLabels: Invalid value: \"my project\"")),
            ("peer selector In without values", from(json!([{"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}])), &format!("{peer0}.podSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'")),
            ("peer selector Exists with values", from(json!([{"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}])), &format!("{peer0}.podSelector.matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'")),
            ("empty egress peer", with(&valid, json!({"spec": {"egress": [{"to": [{}]}]}})), "spec.egress[0].to[0]: Required value: must specify a peer"),
            ("egress port 0", with(&valid, json!({"spec": {"egress": [{"ports": [{"port": 0}]}]}})), "spec.egress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
            ("bad egress cidr", with(&valid, json!({"spec": {"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8/8"}}]}]}})), "spec.egress[0].to[0].ipBlock.cidr: Invalid value: \"10.0.0.0/8/8\""),
        ]);
        // Every error of a policy is reported, in upstream's order.
        let many = with(&valid, json!({"spec": {"podSelector": {"matchLabels": {"-x": "y"}}, "ingress": [{"ports": [{"port": 0, "protocol": "ICMP"}], "from": [{}]}], "policyTypes": ["Nope"]}}));
        let got = messages(G, "NetworkPolicy", Op::Create(&many));
        let fields: Vec<&str> = got.iter().map(|m| m.split(':').next().unwrap()).collect();
        assert_eq!(fields, ["spec.podSelector.matchLabels", "spec.ingress[0].ports[0].protocol", "spec.ingress[0].ports[0].port", "spec.ingress[0].from[0]", "spec.policyTypes[0]"], "{got:#?}");
    }

    #[test]
    fn network_policy_update() {
        let valid = network_policy();
        let bad_value = json!({"spec": {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["bad value"]}]}}});
        let stored_bad = with(&valid, bad_value.clone());
        update_table(G, "NetworkPolicy", &valid, &[
            ("any spec change", with(&valid, json!({"spec": {"podSelector": {"matchLabels": {"role": "cache"}}, "egress": null, "policyTypes": ["Ingress"]}})), ""),
            ("new invalid selector value", stored_bad.clone(), "spec.podSelector.matchExpressions[0].values[0]: Invalid value: \"bad value\""),
            ("the update is validated as a create", ports(json!([{"port": 0}])), "spec.ingress[0].ports[0].port: Invalid value: 0"),
        ]);
        update_table(G, "NetworkPolicy", &stored_bad, &[
            ("a stored invalid selector value may stay", with(&stored_bad, json!({"metadata": {"labels": {"x": "y"}}})), ""),
            ("and be used in peers", with(&stored_bad, json!({"spec": {"ingress": [{"from": [{"podSelector": {"matchExpressions": [{"key": "b", "operator": "NotIn", "values": ["other bad"]}]}}]}]}})), ""),
            ("other rules still hold", with(&stored_bad, json!({"spec": {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Maybe"}]}}})), "spec.podSelector.matchExpressions[0].operator: Invalid value: \"Maybe\""),
        ]);
    }

    /// What `kubectl create ingress simple --rule="foo.com/bar=svc1:8080,tls=my-cert"` sends.
    fn ingress() -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "simple", "namespace": "default"},
            "spec": {
                "rules": [{"host": "foo.com", "http": {"paths": [{"backend": {"service": {"name": "svc1", "port": {"number": 8080}}}, "path": "/bar", "pathType": "Exact"}]}}],
                "tls": [{"hosts": ["foo.com"], "secretName": "my-cert"}]
            }
        })
    }

    /// The ingress with its first rule's first path replaced.
    fn http_path(path: Value) -> Value {
        with(&ingress(), json!({"spec": {"rules": [{"host": "foo.com", "http": {"paths": [path]}}]}}))
    }

    fn backend(backend: Value) -> Value {
        http_path(json!({"path": "/", "pathType": "Prefix", "backend": backend}))
    }

    fn host(host: &str) -> Value {
        with(&ingress(), json!({"spec": {"rules": [{"host": host, "http": ingress()["spec"]["rules"][0]["http"].clone()}]}}))
    }

    #[test]
    fn ingress_valid() {
        let valid = ingress();
        table(G, "Ingress", &[
            ("kubectl create ingress", valid.clone(), ""),
            ("default backend only", json!({"metadata": {"name": "default"}, "spec": {"defaultBackend": {"service": {"name": "web", "port": {"name": "http"}}}}}), ""),
            ("wildcard host", host("*.foo.com"), ""),
            ("no host", with(&valid, json!({"spec": {"rules": [{"http": valid["spec"]["rules"][0]["http"].clone()}], "tls": null}})), ""),
            ("host without http", with(&valid, json!({"spec": {"rules": [{"host": "foo.com"}]}})), ""),
            ("implementation-specific without path", http_path(json!({"pathType": "ImplementationSpecific", "backend": {"service": {"name": "svc1", "port": {"number": 80}}}})), ""),
            ("implementation-specific regex path", http_path(json!({"path": "/foo/.*", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "svc1", "port": {"number": 80}}}})), ""),
            ("resource backend", backend(json!({"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "static-assets"}})), ""),
            ("named service port", backend(json!({"service": {"name": "svc1", "port": {"name": "http"}}})), ""),
            ("wildcard TLS host, no secret", with(&valid, json!({"spec": {"tls": [{"hosts": ["*.foo.com"]}]}})), ""),
            ("class and matching annotation", with(&valid, json!({"metadata": {"annotations": {"kubernetes.io/ingress.class": "nginx"}}, "spec": {"ingressClassName": "nginx"}})), ""),
            ("annotation alone", with(&valid, json!({"metadata": {"annotations": {"kubernetes.io/ingress.class": "Weird Class"}}})), ""),
        ]);
    }

    #[test]
    fn ingress_invalid() {
        let valid = ingress();
        let p0 = "spec.rules[0].http.paths[0]";
        let b0 = "spec.rules[0].http.paths[0].backend";
        let svc = |service: Value| backend(json!({"service": service}));
        table(G, "Ingress", &[
            ("neither rules nor default backend", with(&valid, json!({"spec": {"rules": null, "tls": null}})), "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified"),
            ("empty rules", with(&valid, json!({"spec": {"rules": [], "tls": null}})), "spec: Invalid value: []networking.IngressRule{}: either `defaultBackend` or `rules` must be specified"),
            ("IP host", host("1.2.3.4"), "spec.rules[0].host: Invalid value: \"1.2.3.4\": must be a DNS name, not an IP address"),
            ("wildcard in the middle", host("foo.*.com"), "spec.rules[0].host: Invalid value: \"foo.*.com\": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
            ("bare wildcard", host("*"), "spec.rules[0].host: Invalid value: \"*\": a wildcard DNS-1123 subdomain"),
            ("double wildcard", host("*.*.foo.com"), "spec.rules[0].host: Invalid value: \"*.*.foo.com\": a wildcard DNS-1123 subdomain"),
            ("upper-case host", host("Foo.com"), "spec.rules[0].host: Invalid value: \"Foo.com\": a lowercase RFC 1123 subdomain must consist of"),
            ("host with a port", host("foo.com:8080"), "spec.rules[0].host: Invalid value: \"foo.com:8080\": a lowercase RFC 1123 subdomain"),
            ("relative exact path", http_path(json!({"path": "foo", "pathType": "Exact", "backend": valid["spec"]["rules"][0]["http"]["paths"][0]["backend"].clone()})), "spec.rules[0].http.paths[0].path: Invalid value: \"foo\": must be an absolute path"),
            ("prefix path missing", http_path(json!({"pathType": "Prefix", "backend": {"service": {"name": "svc1", "port": {"number": 80}}}})), &format!("{p0}.path: Invalid value: \"\": must be an absolute path")),
            ("double slash", http_path(json!({"path": "/foo//bar", "pathType": "Prefix", "backend": {"service": {"name": "svc1", "port": {"number": 80}}}})), &format!("{p0}.path: Invalid value: \"/foo//bar\": must not contain '//'")),
            ("dot segment", http_path(json!({"path": "/a/./b", "pathType": "Exact", "backend": {"service": {"name": "svc1", "port": {"number": 80}}}})), &format!("{p0}.path: Invalid value: \"/a/./b\": must not contain '/./'")),
            ("dot-dot segment", http_path(json!({"path": "/a/../b", "pathType": "Exact", "backend": {"service": {"name": "svc1", "port": {"number": 80}}}})), &format!("{p0}.path: Invalid value: \"/a/../b\": must not contain '/../'")),
            ("encoded slash", http_path(json!({"path": "/a%2Fb", "pathType": "Prefix", "backend": {"service": {"name": "svc1", "port": {"number": 80}}}})), &format!("{p0}.path: Invalid value: \"/a%2Fb\": must not contain '%2F'")),
            ("ends with dot-dot", http_path(json!({"path": "/foo/..", "pathType": "Prefix", "backend": {"service": {"name": "svc1", "port": {"number": 80}}}})), &format!("{p0}.path: Invalid value: \"/foo/..\": cannot end with '/..'")),
            ("ends with dot", http_path(json!({"path": "/foo/.", "pathType": "Prefix", "backend": {"service": {"name": "svc1", "port": {"number": 80}}}})), &format!("{p0}.path: Invalid value: \"/foo/.\": cannot end with '/.'")),
            ("relative implementation-specific path", http_path(json!({"path": "foo", "pathType": "ImplementationSpecific", "backend": {"service": {"name": "svc1", "port": {"number": 80}}}})), &format!("{p0}.path: Invalid value: \"foo\": must be an absolute path")),
            ("pathType missing", http_path(json!({"path": "/", "backend": {"service": {"name": "svc1", "port": {"number": 80}}}})), &format!("{p0}.pathType: Required value: pathType must be specified")),
            ("unknown pathType", http_path(json!({"path": "/", "pathType": "Regex", "backend": {"service": {"name": "svc1", "port": {"number": 80}}}})), &format!("{p0}.pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"")),
            ("no paths", with(&valid, json!({"spec": {"rules": [{"host": "foo.com", "http": {"paths": []}}]}})), "spec.rules[0].http.paths: Required value"),
            ("upper-case service name", svc(json!({"name": "Svc1", "port": {"number": 80}})), &format!("{b0}.service.name: Invalid value: \"Svc1\": a DNS-1035 label must consist of")),
            ("service name starting with a digit", svc(json!({"name": "1svc", "port": {"number": 80}})), &format!("{b0}.service.name: Invalid value: \"1svc\": a DNS-1035 label")),
            ("dotted service name", svc(json!({"name": "svc.default", "port": {"number": 80}})), &format!("{b0}.service.name: Invalid value: \"svc.default\": a DNS-1035 label")),
            ("service name missing", svc(json!({"port": {"number": 80}})), &format!("{b0}.service.name: Required value")),
            ("port name and number", svc(json!({"name": "svc1", "port": {"name": "http", "number": 80}})), &format!("{b0}: Invalid value: \"\": cannot set both port name & port number")),
            ("no port", svc(json!({"name": "svc1"})), &format!("{b0}: Required value: port name or number is required")),
            ("port number out of range", svc(json!({"name": "svc1", "port": {"number": 70000}})), &format!("{b0}.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive")),
            ("negative port number", svc(json!({"name": "svc1", "port": {"number": -1}})), &format!("{b0}.service.port.number: Invalid value: -1: must be between 1 and 65535, inclusive")),
            ("upper-case port name", svc(json!({"name": "svc1", "port": {"name": "Http"}})), &format!("{b0}.service.port.name: Invalid value: \"Http\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")),
            ("resource and service", backend(json!({"service": {"name": "svc1", "port": {"number": 80}}, "resource": {"kind": "Bucket", "name": "b"}})), &format!("{b0}: Invalid value: \"\": cannot set both resource and service backends")),
            ("empty backend", backend(json!({})), &format!("{b0}: Invalid value: \"\": resource or service backend is required")),
            ("resource without kind", backend(json!({"resource": {"name": "b"}})), &format!("{b0}.resource.kind: Required value: kind is required")),
            ("resource without name", backend(json!({"resource": {"kind": "Bucket"}})), &format!("{b0}.resource.name: Required value: name is required")),
            ("resource name with a slash", backend(json!({"resource": {"kind": "Bucket", "name": "a/b"}})), &format!("{b0}.resource.name: Invalid value: \"a/b\": may not contain '/'")),
            ("resource kind ..", backend(json!({"resource": {"kind": "..", "name": "b"}})), &format!("{b0}.resource.kind: Invalid value: \"..\": may not be '..'")),
            ("resource API group", backend(json!({"resource": {"apiGroup": "Example_Group", "kind": "Bucket", "name": "b"}})), &format!("{b0}.resource.apiGroup: Invalid value: \"Example_Group\": a lowercase RFC 1123 subdomain")),
            ("default backend without port", with(&valid, json!({"spec": {"defaultBackend": {"service": {"name": "web"}}}})), "spec.defaultBackend: Required value: port name or number is required"),
            ("upper-case TLS host", with(&valid, json!({"spec": {"tls": [{"hosts": ["Foo.com"], "secretName": "my-cert"}]}})), "spec.tls[0].hosts[0]: Invalid value: \"Foo.com\": a lowercase RFC 1123 subdomain"),
            ("bad wildcard TLS host", with(&valid, json!({"spec": {"tls": [{"hosts": ["foo.com", "*.*.foo.com"]}]}})), "spec.tls[0].hosts[1]: Invalid value: \"*.*.foo.com\": a wildcard DNS-1123 subdomain"),
            ("bad TLS secret name", with(&valid, json!({"spec": {"tls": [{"hosts": ["foo.com"], "secretName": "My-Cert"}]}})), "spec.tls[0].secretName: Invalid value: \"My-Cert\": a lowercase RFC 1123 subdomain"),
            ("bad class name", with(&valid, json!({"spec": {"ingressClassName": "Nginx"}})), "spec.ingressClassName: Invalid value: \"Nginx\": a lowercase RFC 1123 subdomain"),
            ("annotation and class disagree", with(&valid, json!({"metadata": {"annotations": {"kubernetes.io/ingress.class": "nginx"}}, "spec": {"ingressClassName": "traefik"}})), "annotations.kubernetes.io/ingress.class: Invalid value: \"nginx\": must match `ingressClassName` when both are specified"),
        ]);
    }

    #[test]
    fn ingress_update() {
        let valid = ingress();
        let bad_secret = with(&valid, json!({"spec": {"tls": [{"hosts": ["foo.com"], "secretName": "My_Cert"}]}}));
        let wildcard_rule = |path: Value| with(&valid, json!({"spec": {"rules": [{"host": "*.foo.com", "http": {"paths": [path]}}]}}));
        let bad_wildcard = wildcard_rule(json!({"path": "foo", "pathType": "Prefix", "backend": {"service": {"name": "svc1", "port": {"number": 80}}}}));
        update_table(G, "Ingress", &valid, &[
            ("new path", http_path(json!({"path": "/baz", "pathType": "Prefix", "backend": {"service": {"name": "svc2", "port": {"name": "http"}}}})), ""),
            ("annotation and class disagreeing is only refused on create", with(&valid, json!({"metadata": {"annotations": {"kubernetes.io/ingress.class": "nginx"}}, "spec": {"ingressClassName": "traefik"}})), ""),
            ("new bad secret name", bad_secret.clone(), "spec.tls[0].secretName: Invalid value: \"My_Cert\""),
            ("new bad wildcard rule", bad_wildcard.clone(), "spec.rules[0].http.paths[0].path: Invalid value: \"foo\": must be an absolute path"),
        ]);
        update_table(G, "Ingress", &bad_secret, &[
            ("a stored bad secret name may stay", with(&bad_secret, json!({"metadata": {"labels": {"a": "b"}}})), ""),
            ("or change to another bad one", with(&bad_secret, json!({"spec": {"tls": [{"secretName": "Other_Cert"}]}})), ""),
        ]);
        update_table(G, "Ingress", &bad_wildcard, &[
            ("a stored bad wildcard rule may stay", with(&bad_wildcard, json!({"metadata": {"labels": {"a": "b"}}})), ""),
            ("its host is still checked", with(&bad_wildcard, json!({"spec": {"rules": [{"host": "*.Foo.com"}]}})), "spec.rules[0].host: Invalid value: \"*.Foo.com\": a wildcard DNS-1123 subdomain"),
            ("rules without a wildcard are checked", with(&bad_wildcard, json!({"spec": {"rules": [{"host": "foo.com", "http": {"paths": [{"path": "foo", "pathType": "Prefix", "backend": {"service": {"name": "svc1", "port": {"number": 80}}}}]}}]}})), "spec.rules[0].http.paths[0].path: Invalid value: \"foo\""),
        ]);
    }

    #[test]
    fn ingress_status() {
        let old = ingress();
        let status = |ingress: Value| with(&old, json!({"status": {"loadBalancer": {"ingress": ingress}}}));
        let cases = [
            (status(json!([{"ip": "10.0.0.1"}, {"ip": "2001:db8::1"}, {"hostname": "lb.example.com", "ports": [{"port": 80, "protocol": "TCP"}]}])), vec![]),
            (status(json!([{"ip": "1.2.3.256"}])), vec!["status.loadBalancer.ingress[0].ip: Invalid value: \"1.2.3.256\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]),
            (status(json!([{"ip": "10.0.0.1"}, {"ip": "lb.example.com"}])), vec!["status.loadBalancer.ingress[1].ip: Invalid value: \"lb.example.com\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]),
            (status(json!([{"hostname": "10.0.0.1"}])), vec!["status.loadBalancer.ingress[0].hostname: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"]),
        ];
        for (new, expected) in cases {
            assert_eq!(messages(G, "Ingress", Op::Status { new: &new, old: &old }), expected);
        }
        let bad_name = status(json!([{"hostname": "LB_1"}]));
        let got = messages(G, "Ingress", Op::Status { new: &bad_name, old: &old });
        assert!(got.len() == 1 && got[0].starts_with("status.loadBalancer.ingress[0].hostname: Invalid value: \"LB_1\": a lowercase RFC 1123 subdomain"), "{got:#?}");
        // The spec is not checked on a status write.
        let bad_spec = with(&status(json!([{"ip": "10.0.0.1"}])), json!({"spec": {"rules": null, "tls": null}}));
        assert!(messages(G, "Ingress", Op::Status { new: &bad_spec, old: &old }).is_empty());
    }

    fn ingress_class() -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "external-lb"},
            "spec": {"controller": "example.com/ingress-controller", "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}
        })
    }

    fn parameters(params: Value) -> Value {
        let bare = with(&ingress_class(), json!({"spec": {"parameters": null}}));
        with(&bare, json!({"spec": {"parameters": params}}))
    }

    #[test]
    fn ingress_class_valid() {
        let valid = ingress_class();
        table(G, "IngressClass", &[
            ("upstream example, scope left to its default", valid.clone(), ""),
            ("no parameters", with(&valid, json!({"spec": {"parameters": null}})), ""),
            ("nginx", json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}), ""),
            ("cluster scope", parameters(json!({"kind": "IngressParameters", "name": "p", "scope": "Cluster"})), ""),
            ("namespace scope", parameters(json!({"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p", "scope": "Namespace", "namespace": "external-configuration"})), ""),
            ("controller path with many characters", with(&valid, json!({"spec": {"controller": "acme.io/foo/bar-baz_1~x:y"}})), ""),
        ]);
    }

    #[test]
    fn ingress_class_invalid() {
        let valid = ingress_class();
        let controller = |c: &str| with(&valid, json!({"spec": {"controller": c}}));
        let long = format!("example.com/{}", "a".repeat(250));
        table(G, "IngressClass", &[
            ("controller missing", with(&valid, json!({"spec": {"controller": null}})), "spec.controller: Required value"),
            ("controller without domain", controller("nginx"), "spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path (such as \"acme.io/foo\")"),
            ("controller with empty path", controller("example.com/"), "spec.controller: Invalid value: \"example.com/\": must be a domain-prefixed path"),
            ("controller with empty domain", controller("/foo"), "spec.controller: Invalid value: \"/foo\": must be a domain-prefixed path"),
            ("controller with a bad domain", controller("Example.com/foo"), "spec.controller: Invalid value: \"Example.com\": a lowercase RFC 1123 subdomain"),
            ("controller with a bad path", controller("example.com/a b"), "spec.controller: Invalid value: \"a b\": Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')"),
            ("controller too long", controller(&long), "spec.controller: Too long: may not be more than 250 bytes"),
            ("parameters without kind", parameters(json!({"name": "p"})), "spec.parameters.kind: Required value: kind is required"),
            ("parameters without name", parameters(json!({"kind": "IngressParameters"})), "spec.parameters.name: Required value: name is required"),
            ("parameters name with a slash", parameters(json!({"kind": "IngressParameters", "name": "a/b"})), "spec.parameters.name: Invalid value: \"a/b\": may not contain '/'"),
            ("parameters kind with a percent", parameters(json!({"kind": "Ingress%Parameters", "name": "p"})), "spec.parameters.kind: Invalid value: \"Ingress%Parameters\": may not contain '%'"),
            ("parameters API group", parameters(json!({"apiGroup": "", "kind": "IngressParameters", "name": "p"})), "spec.parameters.apiGroup: Invalid value: \"\": a lowercase RFC 1123 subdomain"),
            ("unknown scope", parameters(json!({"kind": "IngressParameters", "name": "p", "scope": "Global"})), "spec.parameters.scope: Unsupported value: \"Global\": supported values: \"Cluster\", \"Namespace\""),
            ("namespace scope without namespace", parameters(json!({"kind": "IngressParameters", "name": "p", "scope": "Namespace"})), "spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"),
            ("cluster scope with namespace", parameters(json!({"kind": "IngressParameters", "name": "p", "scope": "Cluster", "namespace": "ns"})), "spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"),
            ("default scope with namespace", parameters(json!({"kind": "IngressParameters", "name": "p", "namespace": "ns"})), "spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"),
            ("bad namespace", parameters(json!({"kind": "IngressParameters", "name": "p", "scope": "Namespace", "namespace": "my.ns"})), "spec.parameters.namespace: Invalid value: \"my.ns\": a lowercase RFC 1123 label"),
        ]);
    }

    #[test]
    fn ingress_class_update() {
        let valid = ingress_class();
        update_table(G, "IngressClass", &valid, &[
            ("parameters may change", parameters(json!({"kind": "Other", "name": "q", "scope": "Namespace", "namespace": "ns"})), ""),
            ("controller is immutable", with(&valid, json!({"spec": {"controller": "example.com/other"}})), "spec.controller: Invalid value: \"example.com/other\": field is immutable"),
            ("and still validated", with(&valid, json!({"spec": {"parameters": {"kind": ""}}})), "spec.parameters.kind: Required value"),
        ]);
    }
}

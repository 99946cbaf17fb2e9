//! discovery.k8s.io: EndpointSlice, as upstream's
//! `pkg/apis/discovery/validation` checks it.

use std::collections::BTreeSet;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointHints, EndpointPort, EndpointSlice};

use super::addresses::{endpoint_ip, fully_qualified_domain_name, parse_ip_sloppy};
use super::{dns1123_label, dns1123_subdomain, immutable, label_value, labels, name_by, qualified_name, Errors, Op, Path};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    Some(match kind {
        "EndpointSlice" => op.run(endpoint_slice, endpoint_slice_update, super::nothing),
        _ => return None,
    })
}

const MAX_TOPOLOGY_LABELS: usize = 16;
const MAX_ADDRESSES: usize = 100;
const MAX_PORTS: usize = 20000;
const MAX_ENDPOINTS: usize = 1000;
const MAX_ZONE_HINTS: usize = 8;
const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
/// The topology key v1's `zone` replaced: conversion takes it out, so
/// upstream reports it as an internal error if it is still there.
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

fn endpoint_slice(slice: &EndpointSlice) -> Errors {
    let mut errs = Vec::new();
    let address_type = Path::new("addressType");
    if slice.address_type.is_empty() {
        errs.push(address_type.required(""));
    } else if !ADDRESS_TYPES.contains(&slice.address_type.as_str()) {
        errs.push(address_type.not_supported(&slice.address_type, ADDRESS_TYPES));
    }
    errs.extend(endpoints(&slice.endpoints, &slice.address_type, &Path::new("endpoints")));
    errs.extend(ports(slice.ports.as_deref().unwrap_or_default(), &Path::new("ports")));
    errs
}

fn endpoint_slice_update(new: &EndpointSlice, old: &EndpointSlice) -> Errors {
    immutable(&new.address_type, &old.address_type, &Path::new("addressType"))
}

fn endpoints(endpoints: &[Endpoint], address_type: &str, path: &Path) -> Errors {
    if endpoints.len() > MAX_ENDPOINTS {
        return vec![path.too_many(endpoints.len(), MAX_ENDPOINTS)];
    }
    let mut errs = Vec::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let at = path.index(i);
        let addresses = at.child("addresses");
        if endpoint.addresses.is_empty() {
            errs.push(addresses.required("must contain at least 1 address"));
        } else if endpoint.addresses.len() > MAX_ADDRESSES {
            errs.push(addresses.too_many(endpoint.addresses.len(), MAX_ADDRESSES));
        }
        for (j, address) in endpoint.addresses.iter().enumerate() {
            let path = addresses.index(j);
            // Unknown address types (already refused above) leave their
            // addresses unchecked, as upstream does.
            match address_type {
                "IPv4" => {
                    if !parse_ip_sloppy(address).is_some_and(|ip| ip.is_ipv4()) {
                        errs.push(path.invalid(address, "must be a valid IPv4 address"));
                    }
                    errs.extend(endpoint_ip(address, &path));
                }
                "IPv6" => {
                    if !parse_ip_sloppy(address).is_some_and(|ip| ip.is_ipv6()) {
                        errs.push(path.invalid(address, "must be a valid IPv6 address"));
                    }
                    errs.extend(endpoint_ip(address, &path));
                }
                "FQDN" => errs.extend(fully_qualified_domain_name(address, &path)),
                _ => {}
            }
        }
        if let Some(node) = &endpoint.node_name {
            errs.extend(name_by(dns1123_subdomain, node, &at.child("nodeName")));
        }
        let topology_path = at.child("deprecatedTopology");
        let topology = endpoint.deprecated_topology.as_ref();
        if let Some(t) = topology.filter(|t| t.len() > MAX_TOPOLOGY_LABELS) {
            errs.push(topology_path.too_many(t.len(), MAX_TOPOLOGY_LABELS));
        }
        errs.extend(labels(topology, &topology_path));
        if topology.is_some_and(|t| t.contains_key(ZONE_LABEL)) {
            errs.push(topology_path.key(ZONE_LABEL).internal("reserved key was not removed in conversion"));
        }
        if let Some(hostname) = &endpoint.hostname {
            errs.extend(name_by(dns1123_label, hostname, &at.child("hostname")));
        }
        if let Some(hints) = &endpoint.hints {
            errs.extend(self::hints(hints, &at.child("hints")));
        }
    }
    errs
}

fn hints(hints: &EndpointHints, path: &Path) -> Errors {
    let zones = hints.for_zones.as_deref().unwrap_or_default();
    let path = path.child("forZones");
    if zones.len() > MAX_ZONE_HINTS {
        return vec![path.too_many(zones.len(), MAX_ZONE_HINTS)];
    }
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, zone) in zones.iter().enumerate() {
        let at = path.index(i).child("name");
        if !seen.insert(zone.name.as_str()) {
            errs.push(at.duplicate(&zone.name));
        }
        if let Err(why) = label_value(&zone.name) {
            errs.push(at.invalid(&zone.name, &why));
        }
    }
    errs
}

fn ports(ports: &[EndpointPort], path: &Path) -> Errors {
    if ports.len() > MAX_PORTS {
        return vec![path.too_many(ports.len(), MAX_PORTS)];
    }
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = path.index(i);
        // Upstream defaults a missing name to "" and a missing protocol to TCP.
        let name = port.name.as_deref().unwrap_or("");
        if !name.is_empty() {
            errs.extend(name_by(dns1123_label, name, &at.child("name")));
        }
        if !names.insert(name) {
            errs.push(at.child("name").duplicate(name));
        }
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !PROTOCOLS.contains(&protocol) {
            errs.push(at.child("protocol").not_supported(protocol, PROTOCOLS));
        }
        if let Some(app) = &port.app_protocol {
            if let Err(why) = qualified_name(app) {
                errs.push(at.child("appProtocol").invalid(app, &why));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{messages, table, update_table, with};
    use super::super::Op;

    const G: &str = "discovery.k8s.io";

    fn valid() -> Value {
        json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-abc12", "namespace": "default", "labels": {"kubernetes.io/service-name": "web", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4",
            "endpoints": [{
                "addresses": ["10.244.1.5"],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "hostname": "web-0",
                "nodeName": "worker-1",
                "zone": "us-east-1a",
                "hints": {"forZones": [{"name": "us-east-1a"}]},
                "targetRef": {"kind": "Pod", "name": "web-0", "namespace": "default", "uid": "0b0e2c4a-1111-2222-3333-444455556666"}
            }],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]
        })
    }

    #[test]
    fn endpoint_slice_valid() {
        table(G, "EndpointSlice", &[
            ("as the controller writes it", valid(), ""),
            ("no endpoints or ports", with(&valid(), json!({"endpoints": [], "ports": null})), ""),
            ("a port without name, protocol or number (defaults)", with(&valid(), json!({"ports": [{}]})), ""),
            ("IPv6", with(&valid(), json!({"addressType": "IPv6", "endpoints": [{"addresses": ["2001:db8::5"]}]})), ""),
            ("IPv4 with leading zeros, as Go reads it", with(&valid(), json!({"endpoints": [{"addresses": ["010.001.002.003"]}]})), ""),
            ("IPv4-mapped IPv6 is IPv4", with(&valid(), json!({"endpoints": [{"addresses": ["::ffff:10.1.2.3"]}]})), ""),
            ("FQDN", with(&valid(), json!({"addressType": "FQDN", "endpoints": [{"addresses": ["db.example.com", "api.example.com."]}]})), ""),
            ("a custom app protocol", with(&valid(), json!({"ports": [{"name": "grpc", "port": 9000, "appProtocol": "kubernetes.io/h2c"}]})), ""),
            ("deprecated topology", with(&valid(), json!({"endpoints": [{"addresses": ["10.0.0.1"], "deprecatedTopology": {"kubernetes.io/hostname": "worker-1"}}]})), ""),
            ("ports named and unnamed", with(&valid(), json!({"ports": [{"name": "", "port": 80}, {"name": "https", "port": 443, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]})), ""),
        ]);
    }

    #[test]
    fn endpoint_slice_invalid() {
        let v = valid();
        let endpoint = |change: Value| with(&v, json!({"endpoints": [with(&v["endpoints"][0], change)]}));
        let port = |change: Value| with(&v, json!({"ports": [with(&v["ports"][0], change)]}));
        let link_local = "may not be in the link-local range (169.254.0.0/16, fe80::/10)";
        let loopback = "may not be in the loopback range (127.0.0.0/8, ::1/128)";
        let bad_hostname = r#"endpoints[0].hostname: Invalid value: "Web_0": a lowercase RFC 1123 label"#;
        let bad_fqdn_label = format!("endpoints[0].addresses[0]: Invalid value: \"{}\": must be no more than 63 characters", "a".repeat(64));
        let fqdn_long_label = format!("{}.example.com", "a".repeat(64));
        table(G, "EndpointSlice", &[
            ("no address type", with(&v, json!({"addressType": ""})), "addressType: Required value"),
            ("unknown address type", with(&v, json!({"addressType": "IP"})), r#"addressType: Unsupported value: "IP": supported values: "FQDN", "IPv4", "IPv6""#),
            ("an endpoint without address", endpoint(json!({"addresses": []})), "endpoints[0].addresses: Required value: must contain at least 1 address"),
            ("101 addresses", endpoint(json!({"addresses": (0..101).map(|i| format!("10.0.1.{}", i + 1)).collect::<Vec<_>>()})), "endpoints[0].addresses: Too many: 101: must have at most 100 items"),
            ("an IPv6 address in an IPv4 slice", endpoint(json!({"addresses": ["2001:db8::1"]})), r#"endpoints[0].addresses[0]: Invalid value: "2001:db8::1": must be a valid IPv4 address"#),
            ("an IPv4 address in an IPv6 slice", with(&v, json!({"addressType": "IPv6", "endpoints": [{"addresses": ["10.1.2.3"]}]})), r#"endpoints[0].addresses[0]: Invalid value: "10.1.2.3": must be a valid IPv6 address"#),
            ("unspecified", endpoint(json!({"addresses": ["0.0.0.0"]})), r#"endpoints[0].addresses[0]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)"#),
            ("link-local", endpoint(json!({"addresses": ["169.254.169.254"]})), &format!("endpoints[0].addresses[0]: Invalid value: \"169.254.169.254\": {link_local}")),
            ("IPv6 link-local", with(&v, json!({"addressType": "IPv6", "endpoints": [{"addresses": ["fe80::1"]}]})), &format!("endpoints[0].addresses[0]: Invalid value: \"fe80::1\": {link_local}")),
            ("link-local multicast", endpoint(json!({"addresses": ["224.0.0.251"]})), r#"endpoints[0].addresses[0]: Invalid value: "224.0.0.251": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"#),
            ("loopback", endpoint(json!({"addresses": ["127.0.0.1"]})), &format!("endpoints[0].addresses[0]: Invalid value: \"127.0.0.1\": {loopback}")),
            ("loopback, anywhere in 127/8", endpoint(json!({"addresses": ["127.1.2.3"]})), &format!("endpoints[0].addresses[0]: Invalid value: \"127.1.2.3\": {loopback}")),
            ("IPv6 loopback", with(&v, json!({"addressType": "IPv6", "endpoints": [{"addresses": ["::1"]}]})), &format!("endpoints[0].addresses[0]: Invalid value: \"::1\": {loopback}")),
            ("IPv4-mapped loopback", endpoint(json!({"addresses": ["::ffff:127.0.0.1"]})), &format!("endpoints[0].addresses[0]: Invalid value: \"::ffff:127.0.0.1\": {loopback}")),
            ("a one-label FQDN", with(&v, json!({"addressType": "FQDN", "endpoints": [{"addresses": ["localhost"]}]})), r#"endpoints[0].addresses[0]: Invalid value: "localhost": should be a domain with at least two segments separated by dots"#),
            ("an FQDN with a long label", with(&v, json!({"addressType": "FQDN", "endpoints": [{"addresses": [fqdn_long_label]}]})), &bad_fqdn_label),
            ("an FQDN not a subdomain", with(&v, json!({"addressType": "FQDN", "endpoints": [{"addresses": ["Db.Example.com"]}]})), r#"endpoints[0].addresses[0]: Invalid value: "Db.Example.com": a lowercase RFC 1123 subdomain"#),
            ("bad hostname", endpoint(json!({"hostname": "Web_0"})), bad_hostname),
            ("bad node name", endpoint(json!({"nodeName": "Worker 1"})), r#"endpoints[0].nodeName: Invalid value: "Worker 1": a lowercase RFC 1123 subdomain"#),
            ("bad topology value", endpoint(json!({"deprecatedTopology": {"rack": "a b"}})), r#"endpoints[0].deprecatedTopology: Invalid value: "a b": a valid label must be"#),
            ("topology's zone key", endpoint(json!({"deprecatedTopology": {"topology.kubernetes.io/zone": "a"}})), "endpoints[0].deprecatedTopology[topology.kubernetes.io/zone]: Internal error: reserved key was not removed in conversion"),
            ("17 topology labels", endpoint(json!({"deprecatedTopology": (0..17).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()})), "endpoints[0].deprecatedTopology: Too many: 17: must have at most 16 items"),
            ("duplicate zone hint", endpoint(json!({"hints": {"forZones": [{"name": "a"}, {"name": "a"}]}})), r#"endpoints[0].hints.forZones[1].name: Duplicate value: "a""#),
            ("bad zone hint", endpoint(json!({"hints": {"forZones": [{"name": "zone a"}]}})), r#"endpoints[0].hints.forZones[0].name: Invalid value: "zone a": a valid label must be"#),
            ("9 zone hints", endpoint(json!({"hints": {"forZones": (0..9).map(|i| json!({"name": format!("z{i}")})).collect::<Vec<_>>()}})), "endpoints[0].hints.forZones: Too many: 9: must have at most 8 items"),
            ("bad port name", port(json!({"name": "HTTP"})), r#"ports[0].name: Invalid value: "HTTP": a lowercase RFC 1123 label"#),
            ("duplicate port name", with(&v, json!({"ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]})), r#"ports[1].name: Duplicate value: "http""#),
            ("two unnamed ports", with(&v, json!({"ports": [{"port": 80}, {"port": 81}]})), r#"ports[1].name: Duplicate value: """#),
            ("bad protocol", port(json!({"protocol": "HTTP"})), r#"ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#),
            ("bad app protocol", port(json!({"appProtocol": "my protocol"})), r#"ports[0].appProtocol: Invalid value: "my protocol": name part must consist of"#),
            ("1001 endpoints", with(&v, json!({"endpoints": (0..1001).map(|_| json!({"addresses": ["10.0.0.1"]})).collect::<Vec<_>>()})), "endpoints: Too many: 1001: must have at most 1000 items"),
        ]);
    }

    #[test]
    fn endpoint_slice_invalid_reports_every_error() {
        let bad = with(&valid(), json!({"endpoints": [{"addresses": ["abc"]}], "ports": [{"protocol": "X"}]}));
        assert_eq!(messages(G, "EndpointSlice", Op::Create(&bad)), vec![
            r#"endpoints[0].addresses[0]: Invalid value: "abc": must be a valid IPv4 address"#,
            r#"endpoints[0].addresses[0]: Invalid value: "abc": must be a valid IP address"#,
            r#"ports[0].protocol: Unsupported value: "X": supported values: "SCTP", "TCP", "UDP""#,
        ]);
    }

    #[test]
    fn endpoint_slice_update() {
        let old = valid();
        update_table(G, "EndpointSlice", &old, &[
            ("endpoints change", with(&old, json!({"endpoints": [{"addresses": ["10.244.2.7"]}]})), ""),
            ("ports change", with(&old, json!({"ports": [{"name": "https", "port": 8443}]})), ""),
            ("address type changes", with(&old, json!({"addressType": "IPv6", "endpoints": []})), r#"addressType: Invalid value: "IPv6": field is immutable"#),
            ("an update is validated as a create", with(&old, json!({"endpoints": [{"addresses": []}]})), "endpoints[0].addresses: Required value: must contain at least 1 address"),
        ]);
    }
}

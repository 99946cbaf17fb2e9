//! appsafe.skiff.io/v1: the AppGroup. Its spec is checked as upstream
//! checks a workload's (a known mode, a well-formed selector); its status
//! as the flow observers write it (peers, ports and protocols that a
//! NetworkPolicy could hold, and no more entries than a group keeps).

use crate::appsafe::{AppGroup, LearnedFlow, MAX_LEARNED, MODES};

use super::addresses::Cidr;
use super::{label_selector, port_number, Errors, Op, Path};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    Some(match kind {
        "AppGroup" => op.run(app_group, super::nothing, |new: &AppGroup, _| status(new)),
        _ => return None,
    })
}

fn app_group(group: &AppGroup) -> Errors {
    let spec = Path::new("spec");
    let mut errs = Vec::new();
    if let Some(mode) = group.spec.mode.as_deref() {
        if !MODES.contains(&mode) {
            errs.push(spec.child("mode").not_supported(mode, &MODES));
        }
    }
    match &group.spec.selector {
        None => errs.push(spec.child("selector").required("")),
        Some(selector) => errs.extend(label_selector(selector, &spec.child("selector"))),
    }
    errs.extend(status(group));
    errs
}

fn status(group: &AppGroup) -> Errors {
    let Some(status) = &group.status else { return vec![] };
    let path = Path::new("status");
    let mut errs = Vec::new();
    if status.members < 0 {
        errs.push(path.child("members").invalid(status.members, super::NON_NEGATIVE));
    }
    for (direction, flows, peer) in [("ingress", &status.ingress, "from"), ("egress", &status.egress, "to")] {
        let at = path.child(direction);
        if flows.len() > MAX_LEARNED {
            errs.push(at.too_many(flows.len(), MAX_LEARNED));
        }
        for (i, flow) in flows.iter().enumerate() {
            errs.extend(learned(flow, peer, &at.index(i)));
        }
    }
    let at = path.child("processes");
    if status.processes.len() > MAX_LEARNED {
        errs.push(at.too_many(status.processes.len(), MAX_LEARNED));
    }
    for (i, process) in status.processes.iter().enumerate() {
        if process.name.is_empty() {
            errs.push(at.index(i).child("name").required(""));
        }
    }
    errs
}

fn learned(flow: &LearnedFlow, peer_field: &str, at: &Path) -> Errors {
    let mut errs = port_number(flow.port.into(), &at.child("port"));
    if !["TCP", "UDP", "SCTP"].contains(&flow.protocol.as_str()) {
        errs.push(at.child("protocol").not_supported(flow.protocol.as_str(), &["SCTP", "TCP", "UDP"]));
    }
    let peer = if peer_field == "from" { &flow.from } else { &flow.to };
    let path = at.child(peer_field);
    match peer {
        None => errs.push(path.required("")),
        Some(p) => match (&p.group, &p.cidr) {
            (Some(_), None) if p.namespace.is_some() => {}
            (Some(_), None) => errs.push(path.child("namespace").required("a group's namespace")),
            (None, Some(cidr)) => {
                if Cidr::parse(cidr).is_none() {
                    errs.push(path.child("cidr").invalid(cidr.as_str(), super::addresses::INVALID_CIDR));
                }
            }
            _ => errs.push(path.invalid(super::Bad::raw("{...}"), "must name either a group or a cidr")),
        },
    }
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{messages, table, with};
    use super::super::Op;

    const G: &str = "appsafe.skiff.io";

    /// A group as the controller manager makes it, with what was learned.
    fn web() -> Value {
        json!({
            "apiVersion": "appsafe.skiff.io/v1", "kind": "AppGroup",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"mode": "Discover", "selector": {"matchLabels": {"app": "web"}}},
            "status": {"members": 2,
                "ingress": [{"from": {"cidr": "192.0.2.0/24"}, "port": 80, "protocol": "TCP", "connections": 3}],
                "egress": [{"to": {"group": "db", "namespace": "shop"}, "port": 5432, "protocol": "TCP", "connections": 9}],
                "processes": [{"name": "nginx", "path": "/usr/sbin/nginx", "count": 4}]},
        })
    }

    #[test]
    fn app_group_valid() {
        table(G, "AppGroup", &[
            ("as made", web(), ""),
            ("monitor", with(&web(), json!({"spec": {"mode": "Monitor"}})), ""),
            ("protect", with(&web(), json!({"spec": {"mode": "Protect"}})), ""),
            ("no mode", with(&web(), json!({"spec": {"mode": null}})), ""),
            ("by expression", with(&web(), json!({"spec": {"selector": {"matchLabels": null, "matchExpressions": [{"key": "app", "operator": "Exists"}]}}})), ""),
            ("no status", with(&web(), json!({"status": null})), ""),
        ]);
    }

    #[test]
    fn app_group_invalid() {
        let g = web();
        let flow = |peer: Value, port: i64, protocol: &str| json!({"status": {"ingress": [{"from": peer, "port": port, "protocol": protocol}]}});
        table(G, "AppGroup", &[
            ("unknown mode", with(&g, json!({"spec": {"mode": "Paranoid"}})), "spec.mode: Unsupported value: \"Paranoid\": supported values: \"Discover\", \"Monitor\", \"Protect\""),
            ("no selector", with(&g, json!({"spec": {"selector": null}})), "spec.selector: Required value"),
            ("bad operator", with(&g, json!({"spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}}})), "spec.selector.matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator"),
            ("bad label", with(&g, json!({"spec": {"selector": {"matchLabels": {"app": "-web"}}}})), "spec.selector.matchLabels: Invalid value: \"-web\""),
            ("port 0", with(&g, flow(json!({"cidr": "192.0.2.0/24"}), 0, "TCP")), "status.ingress[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
            ("ICMP", with(&g, flow(json!({"cidr": "192.0.2.0/24"}), 80, "ICMP")), "status.ingress[0].protocol: Unsupported value: \"ICMP\""),
            ("no peer", with(&g, json!({"status": {"ingress": [{"port": 80, "protocol": "TCP"}]}})), "status.ingress[0].from: Required value"),
            ("group and cidr", with(&g, flow(json!({"group": "db", "namespace": "shop", "cidr": "192.0.2.0/24"}), 80, "TCP")), "status.ingress[0].from: Invalid value"),
            ("group without namespace", with(&g, flow(json!({"group": "db"}), 80, "TCP")), "status.ingress[0].from.namespace: Required value"),
            ("bad cidr", with(&g, flow(json!({"cidr": "192.0.2.0/33"}), 80, "TCP")), "status.ingress[0].from.cidr: Invalid value: \"192.0.2.0/33\""),
            ("negative members", with(&g, json!({"status": {"members": -1}})), "status.members: Invalid value: -1: must be greater than or equal to 0"),
            ("nameless process", with(&g, json!({"status": {"processes": [{"name": "", "path": "/bin/sh"}]}})), "status.processes[0].name: Required value"),
        ]);
        let many: Vec<Value> = (0..257).map(|i| json!({"from": {"cidr": format!("10.0.{}.{}/32", i / 256, i % 256)}, "port": 80, "protocol": "TCP"})).collect();
        let full = with(&g, json!({"status": {"ingress": many}}));
        assert_eq!(messages(G, "AppGroup", Op::Create(&full)), ["status.ingress: Too many: 257: must have at most 256 items"]);
    }

    #[test]
    fn app_group_status() {
        // Through /status, only the status is checked.
        let old = web();
        let new = with(&old, json!({"spec": {"mode": "Paranoid"}, "status": {"members": 3}}));
        assert!(messages(G, "AppGroup", Op::Status { new: &new, old: &old }).is_empty());
        let bad = with(&old, json!({"status": {"members": -3}}));
        assert_eq!(messages(G, "AppGroup", Op::Status { new: &bad, old: &old }), ["status.members: Invalid value: -3: must be greater than or equal to 0"]);
    }
}

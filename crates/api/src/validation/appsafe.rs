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

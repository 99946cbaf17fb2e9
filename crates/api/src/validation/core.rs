//! The core group's kinds other than pods and pod templates (`pod.rs`):
//! upstream's `pkg/apis/core/validation` for Services, Endpoints,
//! Namespaces, Nodes, PersistentVolumes and their claims, quotas, limit
//! ranges, ConfigMaps, Secrets, ServiceAccounts, ReplicationControllers
//! and Events.
//!
//! Skiff validates before filling in some of upstream's defaults (a
//! Service's type, protocols, target ports and allocated addresses, a
//! Secret's type...): a field those defaults would set is read here as its
//! default when missing.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, LimitRange, Namespace, Node, NodeConfigSource, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeSpec, ReplicationController, ResourceQuota, ResourceQuotaSpec, Secret, SecretReference, Service, ServiceAccount, ServicePort, ServiceSpec,
    VolumeNodeAffinity,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::addresses::{endpoint_ip, is_dual_stack, is_ipv6, load_balancer_hostname, parse_ip_sloppy, valid_cidr, valid_ip, Cidr};
use super::go::{differences, go_slice, go_string_map, go_value, semantic, semantic_of};
use super::pod::{self, iscsi_name, no_backsteps, NO_MATCH};
use super::pod_scheduling::node_selector;
use super::resources::{
    container_resource_name, is_native_resource, is_standard_quota_resource, overcommit_allowed, positive_quantity, quantity, resource_name, resource_quantity_value, Shown,
};
use super::{config_map_key, dns1123_label, dns1123_subdomain, immutable, inclusive_range, label_selector, label_value, labels, name_by, non_negative, port_name, port_number, qualified_name, required_text, Bad, Errors, FieldError, Op, Path, IMMUTABLE};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    Some(match kind {
        "Service" => op.run(service, service_update, service_status),
        "Endpoints" => op.run(endpoints, super::nothing, super::nothing),
        "Namespace" => op.run(namespace, super::nothing, namespace_status),
        "Node" => op.run(node, node_update, node_status),
        "PersistentVolume" => op.run(persistent_volume, persistent_volume_update, super::nothing),
        "PersistentVolumeClaim" => op.run(persistent_volume_claim, persistent_volume_claim_update, persistent_volume_claim_status),
        "ResourceQuota" => op.run(resource_quota, resource_quota_update, resource_quota_status),
        "LimitRange" => op.run(limit_range, super::nothing, super::nothing),
        "ConfigMap" => op.run(config_map, config_map_update, super::nothing),
        "Secret" => op.run(secret, secret_update, super::nothing),
        // Upstream checks only a ServiceAccount's metadata.
        "ServiceAccount" => op.run(|_: &ServiceAccount| vec![], super::nothing, super::nothing),
        "ReplicationController" => op.run(replication_controller, super::nothing, replication_controller_status),
        "Event" => op.run(event, super::nothing, super::nothing),
        _ => return None,
    })
}

// ---- values as Go prints them ---------------------------------------------

/// A pointer to a string as upstream shows it: its value, or null.
fn opt_bad(v: Option<&String>) -> Bad {
    v.map_or(Bad::raw("null"), Bad::from)
}

fn text(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

fn list<T>(v: &Option<Vec<T>>) -> &[T] {
    v.as_deref().unwrap_or_default()
}

/// Upstream's `ValidateLabelName` (`unversionedvalidation`).
fn label_name(key: &str, path: &Path) -> Errors {
    name_by(qualified_name, key, path)
}

/// Upstream's `ValidatePortNumOrName`.
fn port_num_or_name(port: &IntOrString, path: &Path) -> Errors {
    match port {
        IntOrString::Int(n) => port_number(i64::from(*n), path),
        IntOrString::String(s) => port_name(s, path),
    }
}

// ---- quantities and resource names ---------------------------------------------

/// Go's `Quantity.Value()`: whole units, rounded up.
fn whole(milli: i64) -> i64 {
    if milli >= 0 {
        milli / 1000 + i64::from(milli % 1000 != 0)
    } else {
        milli / 1000
    }
}

/// Upstream's `validateBasicResource`.
fn basic_resource(q: &Quantity, path: &Path) -> Errors {
    match quantity(q, path) {
        Err(e) => vec![e],
        Ok(m) if whole(m) < 0 => vec![path.invalid(whole(m), "must be a valid resource quantity")],
        Ok(_) => vec![],
    }
}

/// Upstream's `ValidateResourceQuotaResourceName`.
fn quota_resource_name(value: &str, path: &Path) -> Errors {
    let mut errs = resource_name(value, Shown::Quoted, path);
    if !value.contains('/') && !is_standard_quota_resource(value) {
        errs.push(path.invalid(value, "must be a standard resource for quota"));
    }
    errs
}

// ---- Service ---------------------------------------------------------------

const TOPOLOGY_MODE: &str = "service.kubernetes.io/topology-mode";
const TOPOLOGY_HINTS: &str = "service.kubernetes.io/topology-aware-hints";
const SOURCE_RANGES: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

/// A Service's spec as upstream validates it: after its defaults (type,
/// session affinity) and the strategy's `clusterIP` → `clusterIPs` copy.
struct Svc<'a> {
    spec: &'a ServiceSpec,
    ty: &'a str,
    cluster_ip: &'a str,
    cluster_ips: Vec<String>,
    headless: bool,
}

impl<'a> Svc<'a> {
    fn of(spec: &'a ServiceSpec) -> Svc<'a> {
        let ty = Some(text(&spec.type_)).filter(|t| !t.is_empty()).unwrap_or("ClusterIP");
        let cluster_ip = text(&spec.cluster_ip);
        let cluster_ips = match list(&spec.cluster_ips) {
            [] if !cluster_ip.is_empty() => vec![cluster_ip.to_string()],
            ips => ips.to_vec(),
        };
        let headless = cluster_ips.len() == 1 && cluster_ips[0] == "None";
        Svc { spec, ty, cluster_ip, cluster_ips, headless }
    }

    fn protocol(port: &ServicePort) -> &str {
        Some(text(&port.protocol)).filter(|p| !p.is_empty()).unwrap_or("TCP")
    }

    fn externally_accessible(&self) -> bool {
        matches!(self.ty, "LoadBalancer" | "NodePort") || (self.ty == "ClusterIP" && !list(&self.spec.external_ips).is_empty())
    }

    fn needs_health_check(&self) -> bool {
        self.ty == "LoadBalancer" && text(&self.spec.external_traffic_policy) == "Local"
    }
}

fn service(svc: &Service) -> Errors {
    let mut errs = Vec::new();
    let spec = svc.spec.clone().unwrap_or_default();
    let v = Svc::of(&spec);
    let sp = Path::new("spec");
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();
    if let (Some(mode), Some(hints)) = (annotations.get(TOPOLOGY_MODE), annotations.get(TOPOLOGY_HINTS)) {
        if mode != hints {
            errs.push(Path::new("metadata").child("annotations").key(TOPOLOGY_MODE).invalid(mode, &format!("must match annotations[{TOPOLOGY_HINTS}] when both are specified")));
        }
    }
    let ports = list(&spec.ports);
    if ports.is_empty() && !v.headless && v.ty != "ExternalName" {
        errs.push(sp.child("ports").required(""));
    }
    match v.ty {
        "LoadBalancer" | "NodePort" if v.headless => {
            errs.push(sp.child("clusterIPs").index(0).invalid("None", &format!("may not be set to 'None' for {} services", v.ty)));
        }
        "ExternalName" => {
            if !v.cluster_ips.is_empty() {
                errs.push(sp.child("clusterIPs").forbidden("may not be set for ExternalName services"));
            }
            if !list(&spec.ip_families).is_empty() {
                errs.push(sp.child("ipFamilies").forbidden("may not be set for ExternalName services"));
            }
            if spec.ip_family_policy.is_some() {
                errs.push(sp.child("ipFamilyPolicy").forbidden("may not be set for ExternalName services"));
            }
            // A CNAME may end in a dot, as fully qualified.
            let name = text(&spec.external_name);
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(sp.child("externalName").required(""));
            } else {
                errs.extend(name_by(dns1123_subdomain, cname, &sp.child("externalName")));
            }
        }
        _ => {}
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        errs.extend(service_port(port, ports.len() > 1, &mut names, &sp.child("ports").index(i)));
    }
    if spec.selector.is_some() {
        errs.extend(labels(spec.selector.as_ref(), &sp.child("selector")));
    }
    let affinity = Some(text(&spec.session_affinity)).filter(|a| !a.is_empty()).unwrap_or("None");
    match affinity {
        "ClientIP" => {
            // Missing parts are defaulted (10800 seconds).
            let timeout = spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref()).and_then(|c| c.timeout_seconds);
            if let Some(t) = timeout.filter(|t| *t <= 0 || *t > 86400) {
                errs.push(sp.child("sessionAffinityConfig").child("clientIP").child("timeoutSeconds").invalid(t, "must be greater than 0 and less than 86400"));
            }
        }
        "None" => {
            if spec.session_affinity_config.is_some() {
                errs.push(sp.child("sessionAffinityConfig").forbidden("must not be set when session affinity is None"));
            }
        }
        other => errs.push(sp.child("sessionAffinity").not_supported(other, &["ClientIP", "None"])),
    }
    errs.extend(cluster_ips_related(&v));
    for (i, ip) in list(&spec.external_ips).iter().enumerate() {
        let at = sp.child("externalIPs").index(i);
        match valid_ip(ip, &at) {
            e if !e.is_empty() => errs.extend(e),
            _ => errs.extend(endpoint_ip(ip, &at)),
        }
    }
    if !["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"].contains(&v.ty) {
        errs.push(sp.child("type").not_supported(v.ty, &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]));
    }
    let node_port = |p: &ServicePort| p.node_port.unwrap_or(0);
    if v.ty == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if node_port(p) != 0 {
                errs.push(sp.child("ports").index(i).child("nodePort").forbidden("may not be used when `type` is 'ClusterIP'"));
            }
        }
    }
    let mut node_ports = BTreeSet::new();
    for (i, p) in ports.iter().enumerate().filter(|(_, p)| node_port(p) != 0) {
        if !node_ports.insert((Svc::protocol(p), node_port(p))) {
            errs.push(sp.child("ports").index(i).child("nodePort").duplicate(node_port(p)));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let protocol = Svc::protocol(p);
        if !seen.insert((protocol, p.port)) {
            let shown = format!(
                "core.ServicePort{{Name:\"\", Protocol:{protocol:?}, AppProtocol:(*string)(nil), Port:{}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                p.port
            );
            errs.push(sp.child("ports").index(i).duplicate(Bad::raw(shown)));
        }
    }
    let ranges = list(&spec.load_balancer_source_ranges);
    if !ranges.is_empty() {
        // Sic: upstream names this field with a capital L.
        let at = sp.child("LoadBalancerSourceRanges");
        if v.ty != "LoadBalancer" {
            errs.push(at.forbidden("may only be used when `type` is 'LoadBalancer'"));
        }
        for (i, r) in ranges.iter().enumerate() {
            errs.extend(valid_cidr(r.trim(), &at.index(i)));
        }
    } else if let Some(value) = annotations.get(SOURCE_RANGES) {
        let at = Path::new("metadata").child("annotations").key(SOURCE_RANGES);
        if v.ty != "LoadBalancer" {
            errs.push(at.forbidden("may only be used when `type` is 'LoadBalancer'"));
        }
        let value = value.trim();
        if !value.is_empty() {
            for r in value.split(',') {
                errs.extend(valid_cidr(r.trim(), &at));
            }
        }
    }
    // A LoadBalancer's allocateLoadBalancerNodePorts defaults to true.
    if spec.allocate_load_balancer_node_ports.is_some() && v.ty != "LoadBalancer" {
        errs.push(sp.child("allocateLoadBalancerNodePorts").forbidden("may only be used when `type` is 'LoadBalancer'"));
    }
    errs.extend(load_balancer_class(None, &v));
    let etp = text(&spec.external_traffic_policy);
    if !v.externally_accessible() {
        if !etp.is_empty() {
            errs.push(sp.child("externalTrafficPolicy").invalid(etp, "may only be set for externally-accessible services"));
        }
    } else if !etp.is_empty() && !["Cluster", "Local"].contains(&etp) {
        // Empty defaults to Cluster.
        errs.push(sp.child("externalTrafficPolicy").not_supported(etp, &["Cluster", "Local"]));
    }
    let health = spec.health_check_node_port.unwrap_or(0);
    if !v.needs_health_check() {
        if health != 0 {
            errs.push(sp.child("healthCheckNodePort").invalid(health, "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"));
        }
    } else if health != 0 {
        // Zero is allocated later.
        errs.extend(port_number(i64::from(health), &sp.child("healthCheckNodePort")));
    }
    if let Some(itp) = spec.internal_traffic_policy.as_deref().filter(|p| !["Cluster", "Local"].contains(p)) {
        errs.push(sp.child("internalTrafficPolicy").not_supported(itp, &["Cluster", "Local"]));
    }
    if let Some(td) = spec.traffic_distribution.as_deref().filter(|t| *t != "PreferClose") {
        errs.push(sp.child("trafficDistribution").not_supported(td, &["PreferClose"]));
    }
    errs
}

/// Upstream's `validateServicePort`; the protocol defaults to TCP and the
/// target port to the port.
fn service_port(port: &ServicePort, require_name: bool, names: &mut BTreeSet<String>, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let name = text(&port.name);
    if require_name && name.is_empty() {
        errs.push(path.child("name").required(""));
    } else if !name.is_empty() {
        errs.extend(name_by(dns1123_label, name, &path.child("name")));
        if !names.insert(name.to_string()) {
            errs.push(path.child("name").duplicate(name));
        }
    }
    errs.extend(port_number(i64::from(port.port), &path.child("port")));
    let protocol = Svc::protocol(port);
    if !["SCTP", "TCP", "UDP"].contains(&protocol) {
        errs.push(path.child("protocol").not_supported(protocol, &["SCTP", "TCP", "UDP"]));
    }
    let target = match &port.target_port {
        None | Some(IntOrString::Int(0)) => IntOrString::Int(port.port),
        Some(IntOrString::String(s)) if s.is_empty() => IntOrString::Int(port.port),
        Some(t) => t.clone(),
    };
    errs.extend(port_num_or_name(&target, &path.child("targetPort")));
    if let Some(app) = &port.app_protocol {
        errs.extend(name_by(qualified_name, app, &path.child("appProtocol")));
    }
    errs
}

/// Upstream's `ValidateServiceClusterIPsRelatedFields`.
fn cluster_ips_related(v: &Svc<'_>) -> Errors {
    if v.ty == "ExternalName" {
        return vec![];
    }
    let mut errs = Vec::new();
    let ips_path = Path::new("spec").child("clusterIPs");
    let ips = &v.cluster_ips;
    let shown = || Bad::raw(go_slice("[]string", Some(ips)));
    if !v.cluster_ip.is_empty() {
        if ips[0] != v.cluster_ip {
            errs.push(ips_path.invalid(shown(), "first value must match `clusterIP`"));
        }
    } else if !ips.is_empty() {
        errs.push(ips_path.invalid(shown(), "must be empty when `clusterIP` is not specified"));
    }
    let families = list(&v.spec.ip_families);
    let mut seen = BTreeSet::new();
    for (i, family) in families.iter().enumerate() {
        let at = Path::new("spec").child("ipFamilies").index(i);
        if !["IPv4", "IPv6"].contains(&family.as_str()) {
            errs.push(at.not_supported(family, &["IPv4", "IPv6"]));
        }
        if !seen.insert(family) {
            errs.push(at.duplicate(family));
        }
    }
    if let Some(policy) = v.spec.ip_family_policy.as_deref().filter(|p| !["PreferDualStack", "RequireDualStack", "SingleStack"].contains(p)) {
        errs.push(Path::new("spec").child("ipFamilyPolicy").not_supported(policy, &["PreferDualStack", "RequireDualStack", "SingleStack"]));
    }
    let mut bad_ips = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                bad_ips = true;
                errs.push(ips_path.invalid(shown(), "'None' must be the first and only value"));
            }
            continue;
        }
        let e = valid_ip(ip, &ips_path.index(i));
        bad_ips |= !e.is_empty();
        errs.extend(e);
    }
    if ips.len() > 2 {
        errs.push(ips_path.invalid(shown(), "may only hold up to 2 values"));
    }
    if bad_ips {
        return errs;
    }
    if ips.len() > 1 && !is_dual_stack(ips.iter().filter_map(|ip| parse_ip_sloppy(ip))) {
        errs.push(ips_path.invalid(shown(), "may specify no more than one IP for each IP family"));
    }
    if !v.headless {
        let is_ipv6 = |ip: &str| parse_ip_sloppy(ip).is_some_and(is_ipv6);
        for (i, (ip, family)) in ips.iter().zip(families).enumerate() {
            if family == "IPv4" && is_ipv6(ip) {
                errs.push(ips_path.index(i).invalid(ip, &format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`")));
            }
            if family == "IPv6" && !is_ipv6(ip) {
                errs.push(ips_path.index(i).invalid(ip, &format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`")));
            }
        }
    }
    errs
}

/// Upstream's `validateLoadBalancerClassField`; `old` on updates.
fn load_balancer_class(old: Option<&Svc<'_>>, new: &Svc<'_>) -> Errors {
    let mut errs = Vec::new();
    let at = Path::new("spec").child("loadBalancerClass");
    let class = new.spec.load_balancer_class.as_ref();
    if let Some(old) = old {
        if old.ty == "LoadBalancer" && new.ty == "LoadBalancer" && old.spec.load_balancer_class.as_ref() != class {
            errs.push(at.invalid(opt_bad(class), "may not change once set"));
        }
    }
    match class {
        Some(c) if new.ty == "LoadBalancer" => errs.extend(name_by(qualified_name, c, &at)),
        Some(_) => errs.push(at.forbidden("may only be used when `type` is 'LoadBalancer'")),
        None => {}
    }
    errs
}

/// Upstream's `ValidateServiceUpdate`, less `ValidateService`.
fn service_update(new: &Service, old: &Service) -> Errors {
    let mut errs = Vec::new();
    let (new_spec, old_spec) = (new.spec.clone().unwrap_or_default(), old.spec.clone().unwrap_or_default());
    let (n, o) = (Svc::of(&new_spec), Svc::of(&old_spec));
    let sp = Path::new("spec");
    let single_stack = new_spec.ip_family_policy.as_deref() == Some("SingleStack");
    if n.ty != "ExternalName" && o.ty != "ExternalName" && !(n.headless && o.headless) {
        let mut ips = n.cluster_ips.clone();
        // Upstream's NormalizeClusterIPs: a new clusterIP with the old
        // clusterIPs left in place replaces them.
        if n.cluster_ip != o.cluster_ip && !n.cluster_ip.is_empty() && ips == o.cluster_ips {
            ips = vec![n.cluster_ip.to_string()];
        }
        let at = sp.child("clusterIPs");
        let changed = |i: usize| at.index(i).invalid(&ips[i], "may not change once set");
        let old_ips = &o.cluster_ips;
        if ips.len() == old_ips.len() {
            errs.extend((0..ips.len()).filter(|i| ips[*i] != old_ips[*i]).map(changed));
        } else if ips.len() < old_ips.len() {
            if ips.is_empty() {
                errs.push(at.index(0).invalid(Bad::raw(go_slice("[]string", None)), "primary clusterIP can not be unset"));
            } else if ips[0] != old_ips[0] {
                errs.push(changed(0));
            }
            if ips.len() == 1 && !single_stack {
                errs.push(sp.child("ipFamilyPolicy").invalid(opt_bad(new_spec.ip_family_policy.as_ref()), "must be set to 'SingleStack' when releasing the secondary clusterIP"));
            }
        } else if !old_ips.is_empty() && ips[0] != old_ips[0] {
            errs.push(changed(0));
        }
    }
    if n.ty != "ExternalName" && o.ty != "ExternalName" && !n.headless && !o.headless {
        let (fams, old_fams) = (list(&new_spec.ip_families), list(&old_spec.ip_families));
        let at = sp.child("ipFamilies").index(0);
        let shown = || Bad::raw(go_slice("[]core.IPFamily", new_spec.ip_families.as_deref()));
        let ips_shown = || Bad::raw(go_slice("[]string", new_spec.cluster_ips.as_deref()));
        if fams.len() == old_fams.len() {
            for (f, o) in fams.iter().zip(old_fams) {
                if f != o {
                    errs.push(at.invalid(shown(), "may not change once set"));
                }
            }
        } else if fams.len() < old_fams.len() {
            if n.cluster_ips.is_empty() {
                errs.push(at.invalid(shown(), "primary ipFamily can not be unset"));
            }
            if !fams.is_empty() && fams[0] != old_fams[0] {
                errs.push(at.invalid(ips_shown(), "may not change once set"));
            }
            if fams.len() == 1 && !single_stack {
                errs.push(sp.child("ipFamilyPolicy").invalid(opt_bad(new_spec.ip_family_policy.as_ref()), "must be set to 'SingleStack' when releasing the secondary ipFamily"));
            }
        } else if !old_fams.is_empty() && fams[0] != old_fams[0] {
            errs.push(at.invalid(ips_shown(), "may not change once set"));
        }
    }
    // The format was checked by ValidateService.
    errs.extend(load_balancer_class(Some(&o), &n).into_iter().filter(|e| e.message.ends_with("may not change once set")));
    if o.needs_health_check() && n.needs_health_check() && new_spec.health_check_node_port != old_spec.health_check_node_port {
        errs.push(sp.child("healthCheckNodePort").forbidden(IMMUTABLE));
    }
    errs
}

/// Upstream's `ValidateServiceStatusUpdate` (its load balancer status).
fn service_status(new: &Service, _old: &Service) -> Errors {
    let mut errs = Vec::new();
    let spec = new.spec.clone().unwrap_or_default();
    let ingress = new.status.as_ref().and_then(|s| s.load_balancer.as_ref()).map(|lb| list(&lb.ingress).to_vec()).unwrap_or_default();
    let path = Path::new("status").child("loadBalancer").child("ingress");
    if Svc::of(&spec).ty != "LoadBalancer" && !ingress.is_empty() {
        return vec![path.forbidden("may only be used when `spec.type` is 'LoadBalancer'")];
    }
    for (i, ing) in ingress.iter().enumerate() {
        let at = path.index(i);
        let ip = text(&ing.ip);
        if !ip.is_empty() {
            errs.extend(valid_ip(ip, &at.child("ip")));
        }
        // An ipMode left out with an ip defaults to VIP.
        match &ing.ip_mode {
            Some(_) if ip.is_empty() => errs.push(at.child("ipMode").forbidden("may not be specified when `ip` is not set")),
            Some(mode) if !["Proxy", "VIP"].contains(&mode.as_str()) => errs.push(at.child("ipMode").not_supported(mode, &["Proxy", "VIP"])),
            _ => {}
        }
        let hostname = text(&ing.hostname);
        if !hostname.is_empty() {
            errs.extend(load_balancer_hostname(hostname, &at.child("hostname")));
        }
    }
    errs
}

// ---- Endpoints ---------------------------------------------------------------

fn endpoints(ep: &Endpoints) -> Errors {
    let mut errs = Vec::new();
    for (i, subset) in list(&ep.subsets).iter().enumerate() {
        let at = Path::new("subsets").index(i);
        let (ready, not_ready) = (list(&subset.addresses), list(&subset.not_ready_addresses));
        if ready.is_empty() && not_ready.is_empty() {
            errs.push(at.required("must specify `addresses` or `notReadyAddresses`"));
        }
        for (field, addresses) in [("addresses", ready), ("notReadyAddresses", not_ready)] {
            for (j, addr) in addresses.iter().enumerate() {
                let at = at.child(field).index(j);
                errs.extend(valid_ip(&addr.ip, &at.child("ip")));
                if let Some(h) = addr.hostname.as_deref().filter(|h| !h.is_empty()) {
                    errs.extend(name_by(dns1123_label, h, &at.child("hostname")));
                }
                if let Some(node) = &addr.node_name {
                    errs.extend(name_by(dns1123_subdomain, node, &at.child("nodeName")));
                }
                errs.extend(endpoint_ip(&addr.ip, &at.child("ip")));
            }
        }
        let ports = list(&subset.ports);
        for (j, port) in ports.iter().enumerate() {
            let at = at.child("ports").index(j);
            let name = text(&port.name);
            if ports.len() > 1 && name.is_empty() {
                errs.push(at.child("name").required(""));
            } else if !name.is_empty() {
                errs.extend(name_by(dns1123_label, name, &at.child("name")));
            }
            errs.extend(port_number(i64::from(port.port), &at.child("port")));
            // The protocol defaults to TCP.
            let protocol = text(&port.protocol);
            if !protocol.is_empty() && !["SCTP", "TCP", "UDP"].contains(&protocol) {
                errs.push(at.child("protocol").not_supported(protocol, &["SCTP", "TCP", "UDP"]));
            }
            if let Some(app) = &port.app_protocol {
                errs.extend(name_by(qualified_name, app, &at.child("appProtocol")));
            }
        }
    }
    errs
}

// ---- Namespace ---------------------------------------------------------------

/// Upstream's `validateFinalizerName`: qualified, and a bare name only if
/// it is one of the standard ones.
fn finalizer_name(name: &str, path: &Path) -> Errors {
    let mut errs = name_by(qualified_name, name, path);
    if !name.contains('/') && !["kubernetes", "orphan", "foregroundDeletion"].contains(&name) {
        errs.push(path.invalid(name, "name is neither a standard finalizer name nor is it fully qualified"));
    }
    errs
}

fn namespace(ns: &Namespace) -> Errors {
    // Sic: upstream reports these without their index.
    let at = Path::new("spec").child("finalizers");
    ns.spec.as_ref().map(|s| list(&s.finalizers).iter().flat_map(|f| finalizer_name(f, &at)).collect()).unwrap_or_default()
}

fn namespace_status(new: &Namespace, _old: &Namespace) -> Errors {
    // The phase defaults to Active.
    let phase = new.status.as_ref().and_then(|s| s.phase.as_deref()).filter(|p| !p.is_empty()).unwrap_or("Active");
    let at = Path::new("status").child("Phase");
    match (new.metadata.deletion_timestamp.is_some(), phase) {
        (false, p) if p != "Active" => vec![at.invalid(p, "may only be 'Active' if `deletionTimestamp` is empty")],
        (true, p) if p != "Terminating" => vec![at.invalid(p, "may only be 'Terminating' if `deletionTimestamp` is not empty")],
        _ => vec![],
    }
}

// ---- Node ----------------------------------------------------------------------

/// A node's podCIDRs, `podCIDR` standing for them when they are missing.
fn pod_cidrs(node: &Node) -> Vec<String> {
    let spec = node.spec.clone().unwrap_or_default();
    match list(&spec.pod_cidrs) {
        [] => spec.pod_cidr.into_iter().filter(|c| !c.is_empty()).collect(),
        cidrs => cidrs.to_vec(),
    }
}

/// Upstream's `validateNodeTaints`. Sic: at `metadata.taints`, as upstream
/// reports a node's taints.
fn node_taints(node: &Node) -> Errors {
    let mut errs = Vec::new();
    let mut unique = BTreeSet::new();
    let taints = node.spec.as_ref().map(|s| list(&s.taints).to_vec()).unwrap_or_default();
    for (i, taint) in taints.iter().enumerate() {
        let at = Path::new("metadata").child("taints").index(i);
        errs.extend(label_name(&taint.key, &at.child("key")));
        let value = text(&taint.value);
        if let Err(why) = label_value(value) {
            errs.push(at.child("value").invalid(value, &why));
        }
        errs.extend(taint_effect(&taint.effect, &at.child("effect")));
        if !unique.insert((taint.effect.clone(), taint.key.clone())) {
            let time = if taint.time_added.is_some() { "(*v1.Time)(...)" } else { "(*v1.Time)(nil)" };
            let shown = format!("core.Taint{{Key:{:?}, Value:{value:?}, Effect:{:?}, TimeAdded:{time}}}", taint.key, taint.effect);
            errs.push(FieldError {
                field: at.as_str().to_string(),
                reason: "FieldValueDuplicate",
                message: format!("Duplicate value: {shown}: taints must be unique by key and effect pair"),
            });
        }
    }
    errs
}

fn taint_effect(effect: &str, path: &Path) -> Errors {
    match effect {
        "" => vec![path.required("")],
        "NoSchedule" | "PreferNoSchedule" | "NoExecute" => vec![],
        other => vec![path.not_supported(other, &["NoSchedule", "PreferNoSchedule", "NoExecute"])],
    }
}

/// Upstream's `ValidateNodeResources`.
fn node_resources(node: &Node) -> Errors {
    let mut errs = Vec::new();
    if let Some(status) = &node.status {
        for (field, resources) in [("capacity", &status.capacity), ("allocatable", &status.allocatable)] {
            for (name, q) in resources.iter().flatten() {
                errs.extend(resource_quantity_value(name, q, Shown::Quoted, &Path::new("status").child(field).child(name)));
            }
        }
    }
    errs
}

fn node(node: &Node) -> Errors {
    let mut errs = node_taints(node);
    errs.extend(node_resources(node));
    let cidrs = pod_cidrs(node);
    let at = Path::new("spec").child("podCIDRs");
    for (i, c) in cidrs.iter().enumerate() {
        errs.extend(valid_cidr(c, &at.index(i)));
    }
    if cidrs.len() > 1 {
        let parsed: Vec<Option<Cidr>> = cidrs.iter().map(|c| Cidr::parse(c)).collect();
        if parsed.iter().any(Option::is_none) {
            errs.push(at.internal("invalid PodCIDRs. failed to check with dual stack with error:invalid CIDR"));
        }
        let v6: Vec<bool> = parsed.iter().flatten().map(Cidr::is_ipv6).collect();
        if !(v6.contains(&true) && v6.contains(&false)) || cidrs.len() > 2 {
            errs.push(at.invalid(Bad::raw(go_slice("[]string", Some(&cidrs))), "may specify no more than one CIDR for each IP family"));
        }
        let mut seen = BTreeSet::new();
        for (i, c) in cidrs.iter().enumerate() {
            if !seen.insert(c) {
                errs.push(at.index(i).duplicate(c));
            }
        }
    }
    errs
}

/// What upstream's `ValidateNodeUpdate` adds to `ValidateNode`.
fn node_update(new: &Node, old: &Node) -> Errors {
    let mut errs = node_addresses(new);
    let (spec, old_spec) = (new.spec.clone().unwrap_or_default(), old.spec.clone().unwrap_or_default());
    let (cidrs, old_cidrs) = (pod_cidrs(new), pod_cidrs(old));
    if !old_cidrs.is_empty() {
        let changed = "node updates may not change podCIDR except from \"\" to valid";
        if cidrs.len() != old_cidrs.len() {
            errs.push(Path::new("spec").child("podCIDRs").forbidden(changed));
        } else {
            errs.extend(cidrs.iter().zip(&old_cidrs).filter(|(a, b)| a != b).map(|_| Path::new("spec").child("podCIDRs").forbidden(changed)));
        }
    }
    let provider = text(&old_spec.provider_id);
    if !provider.is_empty() && provider != text(&spec.provider_id) {
        errs.push(Path::new("spec").child("providerID").forbidden("node updates may not change providerID except from \"\" to valid"));
    }
    if let Some(source) = &spec.config_source {
        errs.extend(node_config_source(source, true, &Path::new("spec").child("configSource")));
    }
    errs.extend(node_config_status(new));
    if text(&spec.external_id) != text(&old_spec.external_id) {
        errs.push(Path::new("spec").child("externalID").forbidden("may not be updated"));
    }
    errs
}

/// Upstream's `ValidateNodeUpdate`, which node status writes go through.
fn node_status(new: &Node, old: &Node) -> Errors {
    let mut errs = node_resources(new);
    errs.extend(node_update(new, old));
    errs.extend(node_taints(new));
    errs
}

fn node_addresses(node: &Node) -> Errors {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, a) in node.status.as_ref().map(|s| list(&s.addresses).to_vec()).unwrap_or_default().iter().enumerate() {
        if !seen.insert((a.type_.clone(), a.address.clone())) {
            let shown = format!("core.NodeAddress{{Type:{:?}, Address:{:?}}}", a.type_, a.address);
            errs.push(Path::new("status").child("addresses").index(i).duplicate(Bad::raw(shown)));
        }
    }
    errs
}

fn node_config_status(node: &Node) -> Errors {
    let Some(config) = node.status.as_ref().and_then(|s| s.config.as_ref()) else { return vec![] };
    let at = Path::new("status").child("config");
    [("assigned", &config.assigned), ("active", &config.active), ("lastKnownGood", &config.last_known_good)]
        .into_iter()
        .filter_map(|(field, source)| source.as_ref().map(|s| node_config_source(s, false, &at.child(field))))
        .flatten()
        .collect()
}

/// Upstream's `validateNodeConfigSource{Spec,Status}`: in a spec, uid and
/// resourceVersion are the kubelet's to fill; in a status they must be.
fn node_config_source(source: &NodeConfigSource, in_spec: bool, path: &Path) -> Errors {
    let mut errs = Vec::new();
    match &source.config_map {
        Some(cm) => {
            let at = path.child("configMap");
            let (uid, version) = (text(&cm.uid), text(&cm.resource_version));
            if in_spec {
                if !uid.is_empty() {
                    errs.push(at.child("uid").forbidden("uid must not be set in spec"));
                }
                if !version.is_empty() {
                    errs.push(at.child("resourceVersion").forbidden("resourceVersion must not be set in spec"));
                }
            } else {
                if uid.is_empty() {
                    errs.push(at.child("uid").required("uid must be set in status"));
                }
                if version.is_empty() {
                    errs.push(at.child("resourceVersion").required("resourceVersion must be set in status"));
                }
            }
            if cm.namespace.is_empty() {
                errs.push(at.child("namespace").required("namespace must be set"));
            } else {
                errs.extend(name_by(dns1123_label, &cm.namespace, &at.child("namespace")));
            }
            if cm.name.is_empty() {
                errs.push(at.child("name").required("name must be set"));
            } else {
                errs.extend(name_by(dns1123_subdomain, &cm.name, &at.child("name")));
            }
            if cm.kubelet_config_key.is_empty() {
                errs.push(at.child("kubeletConfigKey").required("kubeletConfigKey must be set"));
            } else {
                errs.extend(config_map_key(&cm.kubelet_config_key, &at.child("kubeletConfigKey")));
            }
        }
        None => errs.push(path.invalid(Bad::raw("core.NodeConfigSource{ConfigMap:(*core.ConfigMapNodeConfigSource)(nil)}"), "exactly one reference subfield must be non-nil")),
    }
    errs
}

// ---- PersistentVolume ------------------------------------------------------------

const ACCESS_MODES: &[&str] = &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];

/// Upstream's access mode rules, shared by volumes (inline ones too) and
/// claims (claim templates too).
pub(super) fn access_modes(modes: &[String], path: &Path) -> Errors {
    let mut errs = Vec::new();
    let (mut once_pod, mut other) = (false, false);
    for mode in modes {
        if !ACCESS_MODES.contains(&mode.as_str()) {
            errs.push(path.not_supported(mode, ACCESS_MODES));
        } else if mode == "ReadWriteOncePod" {
            once_pod = true;
        } else {
            other = true;
        }
    }
    if once_pod && other {
        errs.push(path.forbidden("may not use ReadWriteOncePod with other access modes"));
    }
    errs
}

/// The source fields of a PersistentVolume, in upstream's order, as their
/// JSON names.
const PV_SOURCES: &[&str] = &[
    "hostPath", "gcePersistentDisk", "awsElasticBlockStore", "glusterfs", "flocker", "nfs", "rbd", "quobyte", "cephfs", "iscsi", "cinder", "fc", "flexVolume",
    "azureFile", "vsphereVolume", "photonPersistentDisk", "portworxVolume", "azureDisk", "scaleIO", "local", "storageos", "csi",
];

/// Upstream's `validatePVSecretReference`.
fn pv_secret_reference(secret: &SecretReference, path: &Path) -> Errors {
    let mut errs = Vec::new();
    match text(&secret.name) {
        "" => errs.push(path.child("name").required("")),
        name => errs.extend(name_by(dns1123_subdomain, name, &path.child("name"))),
    }
    match text(&secret.namespace) {
        "" => errs.push(path.child("namespace").required("")),
        ns => errs.extend(name_by(dns1123_label, ns, &path.child("namespace"))),
    }
    errs
}

/// Upstream's `ValidateCSIDriverName`: how a CSI driver is named where
/// it is referred to (volumes, CSI nodes, attachments).
pub(super) fn csi_driver_name(driver: &str, path: &Path) -> Errors {
    let mut errs = required_text(driver, path);
    if driver.len() > 63 {
        errs.push(path.too_long(63));
    }
    if let Err(why) = dns1123_subdomain(&driver.to_lowercase()) {
        errs.push(path.invalid(driver, &why));
    }
    errs
}

/// The rules of one volume source of a PersistentVolume.
fn pv_source(name: &str, spec: &PersistentVolumeSpec, pv_name: &str, path: &Path) -> Errors {
    let mut errs = Vec::new();
    match name {
        "hostPath" => errs.extend(pod::host_path(spec.host_path.as_ref().expect("present"), path)),
        "gcePersistentDisk" => errs.extend(pod::gce_persistent_disk(spec.gce_persistent_disk.as_ref().expect("present"), path)),
        "awsElasticBlockStore" => errs.extend(pod::aws_elastic_block_store(spec.aws_elastic_block_store.as_ref().expect("present"), path)),
        "glusterfs" => {
            let g = spec.glusterfs.as_ref().expect("present");
            errs.extend(required_text(&g.endpoints, &path.child("endpoints")));
            errs.extend(required_text(&g.path, &path.child("path")));
            match g.endpoints_namespace.as_deref() {
                Some("") => errs.push(path.child("endpointsNamespace").invalid("", "if the endpointnamespace is set, it must be a valid namespace name")),
                Some(ns) => errs.extend(name_by(dns1123_label, ns, &path.child("endpointsNamespace"))),
                None => {}
            }
        }
        "flocker" => errs.extend(pod::flocker(spec.flocker.as_ref().expect("present"), path)),
        "nfs" => errs.extend(pod::nfs(spec.nfs.as_ref().expect("present"), path)),
        "rbd" => {
            let rbd = spec.rbd.as_ref().expect("present");
            if rbd.monitors.is_empty() {
                errs.push(path.child("monitors").required(""));
            }
            errs.extend(required_text(&rbd.image, &path.child("image")));
        }
        "quobyte" => errs.extend(pod::quobyte(spec.quobyte.as_ref().expect("present"), path)),
        "cephfs" => {
            if spec.cephfs.as_ref().expect("present").monitors.is_empty() {
                errs.push(path.child("monitors").required(""));
            }
        }
        "iscsi" => {
            let iscsi = spec.iscsi.as_ref().expect("present");
            errs.extend(required_text(&iscsi.target_portal, &path.child("targetPortal")));
            if iscsi.initiator_name.is_some() && pv_name.len() + 1 + iscsi.target_portal.len() > 64 {
                let too_long = "Total length of <volume name>:<iscsi.targetPortal> must be under 64 characters if iscsi.initiatorName is specified.";
                errs.push(path.child("targetportal").invalid(&iscsi.target_portal, too_long));
            }
            if iscsi.iqn.is_empty() {
                errs.push(path.child("iqn").required(""));
            } else {
                errs.extend(iscsi_name(&iscsi.iqn, &path.child("iqn")));
            }
            errs.extend(inclusive_range(iscsi.lun.into(), 0, 255, &path.child("lun")));
            let chap = iscsi.chap_auth_discovery.unwrap_or(false) || iscsi.chap_auth_session.unwrap_or(false);
            if chap && iscsi.secret_ref.is_none() {
                errs.push(path.child("secretRef").required(""));
            }
            if iscsi.secret_ref.as_ref().is_some_and(|s| text(&s.name).is_empty()) {
                errs.push(path.child("secretRef").child("name").required(""));
            }
            if let Some(initiator) = &iscsi.initiator_name {
                errs.extend(iscsi_name(initiator, &path.child("initiatorname")));
            }
        }
        "cinder" => {
            let c = spec.cinder.as_ref().expect("present");
            errs.extend(required_text(&c.volume_id, &path.child("volumeID")));
            if let Some(secret) = &c.secret_ref {
                errs.extend(required_text(text(&secret.name), &path.child("secretRef").child("name")));
                errs.extend(required_text(text(&secret.namespace), &path.child("secretRef").child("namespace")));
            }
        }
        "fc" => errs.extend(pod::fc(spec.fc.as_ref().expect("present"), path)),
        "flexVolume" => {
            let flex = spec.flex_volume.as_ref().expect("present");
            errs.extend(required_text(&flex.driver, &path.child("driver")));
            for key in flex.options.iter().flat_map(|o| o.keys()) {
                if key.to_lowercase().starts_with("kubernetes.io/") {
                    errs.push(path.child("options").key(key).invalid(key, "kubernetes.io/ prefix is reserved for system options"));
                }
            }
        }
        "azureFile" => {
            let af = spec.azure_file.as_ref().expect("present");
            errs.extend(required_text(&af.secret_name, &path.child("secretName")));
            errs.extend(required_text(&af.share_name, &path.child("shareName")));
            if let Some(ns) = af.secret_namespace.as_deref().filter(|ns| !ns.is_empty()) {
                errs.extend(name_by(dns1123_label, ns, &path.child("secretNamespace")));
            }
        }
        "vsphereVolume" => errs.extend(required_text(&spec.vsphere_volume.as_ref().expect("present").volume_path, &path.child("volumePath"))),
        "photonPersistentDisk" => errs.extend(required_text(&spec.photon_persistent_disk.as_ref().expect("present").pd_id, &path.child("pdID"))),
        "portworxVolume" => errs.extend(required_text(&spec.portworx_volume.as_ref().expect("present").volume_id, &path.child("volumeID"))),
        "azureDisk" => errs.extend(pod::azure_disk(spec.azure_disk.as_ref().expect("present"), path)),
        "scaleIO" => {
            let sio = spec.scale_io.as_ref().expect("present");
            errs.extend(required_text(&sio.gateway, &path.child("gateway")));
            errs.extend(required_text(&sio.system, &path.child("system")));
            errs.extend(required_text(text(&sio.volume_name), &path.child("volumeName")));
        }
        "local" => {
            let local = spec.local.as_ref().expect("present");
            if local.path.is_empty() {
                return vec![path.child("path").required("")];
            }
            errs.extend(no_backsteps(&local.path, &path.child("path")));
        }
        "storageos" => {
            let s = spec.storageos.as_ref().expect("present");
            match text(&s.volume_name) {
                "" => errs.push(path.child("volumeName").required("")),
                name => errs.extend(name_by(dns1123_label, name, &path.child("volumeName"))),
            }
            if let Some(ns) = s.volume_namespace.as_deref().filter(|ns| !ns.is_empty()) {
                errs.extend(name_by(dns1123_label, ns, &path.child("volumeNamespace")));
            }
            if let Some(secret) = &s.secret_ref {
                errs.extend(required_text(text(&secret.name), &path.child("secretRef").child("name")));
                errs.extend(required_text(text(&secret.namespace), &path.child("secretRef").child("namespace")));
            }
        }
        "csi" => {
            let csi = spec.csi.as_ref().expect("present");
            errs.extend(csi_driver_name(&csi.driver, &path.child("driver")));
            errs.extend(required_text(&csi.volume_handle, &path.child("volumeHandle")));
            for (field, secret) in [
                ("controllerPublishSecretRef", &csi.controller_publish_secret_ref),
                ("controllerExpandSecretRef", &csi.controller_expand_secret_ref),
                ("nodePublishSecretRef", &csi.node_publish_secret_ref),
                ("nodeExpandSecretRef", &csi.node_expand_secret_ref),
            ] {
                if let Some(secret) = secret {
                    errs.extend(pv_secret_reference(secret, &path.child(field)));
                }
            }
        }
        _ => {}
    }
    errs
}

fn volume_node_affinity(affinity: &VolumeNodeAffinity, path: &Path) -> Errors {
    match &affinity.required {
        Some(required) => node_selector(required, true, &path.child("required")),
        None => vec![path.child("required").required("must specify required node constraints")],
    }
}

fn persistent_volume(pv: &PersistentVolume) -> Errors {
    let mut errs = Vec::new();
    let spec = pv.spec.clone().unwrap_or_default();
    let sp = Path::new("spec");
    let modes = list(&spec.access_modes);
    if modes.is_empty() {
        errs.push(sp.child("accessModes").required(""));
    }
    errs.extend(access_modes(modes, &sp.child("accessModes")));
    let capacity = spec.capacity.clone().unwrap_or_default();
    if capacity.is_empty() {
        errs.push(sp.child("capacity").required(""));
    }
    if !capacity.contains_key("storage") || capacity.len() > 1 {
        let shown = match &spec.capacity {
            None => "core.ResourceList(nil)".to_string(),
            Some(c) => format!("core.ResourceList{{{}}}", c.iter().map(|(k, q)| format!("{k:?}:{:?}", q.0)).collect::<Vec<_>>().join(", ")),
        };
        errs.push(sp.child("capacity").not_supported(Bad::raw(shown), &["storage"]));
    }
    for (name, q) in &capacity {
        let at = sp.child("capacity").key(name);
        match quantity(q, &at) {
            Err(e) => errs.push(e),
            Ok(_) => {
                errs.extend(basic_resource(q, &at));
                errs.extend(positive_quantity(q, &at));
            }
        }
    }
    // The reclaim policy defaults to Retain.
    const POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
    let policy = text(&spec.persistent_volume_reclaim_policy);
    if !policy.is_empty() && !POLICIES.contains(&policy) {
        errs.push(sp.child("persistentVolumeReclaimPolicy").not_supported(policy, POLICIES));
    }
    if let Some(affinity) = &spec.node_affinity {
        errs.extend(volume_node_affinity(affinity, &sp.child("nodeAffinity")));
    }
    let value = serde_json::to_value(&spec).unwrap_or(Value::Null);
    let mut sources = 0;
    let pv_name = pv.metadata.name.as_deref().unwrap_or("");
    for name in PV_SOURCES {
        if value.get(*name).is_none_or(Value::is_null) {
            continue;
        }
        // Sic: upstream counts a flexVolume without refusing a second source.
        if sources > 0 && *name != "flexVolume" {
            errs.push(sp.child(name).forbidden("may not specify more than 1 volume type"));
            continue;
        }
        sources += 1;
        // Sic: upstream reports a GCE disk's fields under `persistentDisk`.
        let at = if *name == "gcePersistentDisk" { sp.child("persistentDisk") } else { sp.child(name) };
        errs.extend(pv_source(name, &spec, pv_name, &at));
        if *name == "local" && spec.node_affinity.is_none() {
            errs.push(sp.child("nodeAffinity").required("Local volume requires node affinity"));
        }
    }
    if sources == 0 {
        errs.push(sp.required("must specify a volume type"));
    }
    if let Some(hp) = &spec.host_path {
        let clean = hp.path.trim_end_matches('/');
        if clean.is_empty() && hp.path.starts_with('/') && policy == "Recycle" {
            errs.push(sp.child("persistentVolumeReclaimPolicy").forbidden("may not be 'recycle' for a hostPath mount of '/'"));
        }
    }
    let class = text(&spec.storage_class_name);
    if !class.is_empty() {
        errs.extend(name_by(dns1123_subdomain, class, &sp.child("storageClassName")));
    }
    if let Some(mode) = spec.volume_mode.as_deref().filter(|m| !["Block", "Filesystem"].contains(m)) {
        errs.push(sp.child("volumeMode").not_supported(mode, &["Block", "Filesystem"]));
    }
    errs
}

/// Node affinity keys upstream lets a volume move from beta to GA labels.
const BETA_TO_GA: &[(&str, &str)] = &[
    ("failure-domain.beta.kubernetes.io/zone", "topology.kubernetes.io/zone"),
    ("failure-domain.beta.kubernetes.io/region", "topology.kubernetes.io/region"),
    ("beta.kubernetes.io/os", "kubernetes.io/os"),
    ("beta.kubernetes.io/arch", "kubernetes.io/arch"),
    ("beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type"),
];

fn persistent_volume_update(new: &PersistentVolume, old: &PersistentVolume) -> Errors {
    let mut errs = Vec::new();
    let (spec, old_spec) = (new.spec.clone().unwrap_or_default(), old.spec.clone().unwrap_or_default());
    let sources = |spec: &PersistentVolumeSpec, allow_expand_secret: bool| {
        let mut value = serde_json::to_value(spec).unwrap_or(Value::Null);
        // A CSI volume without an expansion secret may be given one.
        if allow_expand_secret {
            if let Some(csi) = value.get_mut("csi").and_then(Value::as_object_mut) {
                csi.remove("controllerExpandSecretRef");
            }
        }
        semantic(Value::Object(PV_SOURCES.iter().filter_map(|k| value.get(*k).map(|v| (k.to_string(), v.clone()))).collect()))
    };
    let allow = old_spec.csi.as_ref().is_some_and(|c| c.controller_expand_secret_ref.is_none()) && spec.csi.as_ref().is_some_and(|c| c.controller_expand_secret_ref.is_some());
    let (now, before) = (sources(&spec, allow), sources(&old_spec, false));
    if now != before {
        errs.push(Path::new("spec").child("persistentvolumesource").forbidden(&format!("spec.persistentvolumesource is immutable after creation\n{}", differences("", &before, &now).join("\n"))));
    }
    let mode = |m: &Option<String>| Some(m.clone().unwrap_or_else(|| "Filesystem".into()));
    errs.extend(immutable(&mode(&spec.volume_mode), &mode(&old_spec.volume_mode), &Path::new("volumeMode")));
    if let Some(old_affinity) = &old_spec.node_affinity {
        let mut masked = old_affinity.clone();
        let new_keys: Vec<Vec<String>> = spec
            .node_affinity
            .as_ref()
            .and_then(|a| a.required.as_ref())
            .map(|r| r.node_selector_terms.iter().map(|t| list(&t.match_expressions).iter().map(|e| e.key.clone()).collect()).collect())
            .unwrap_or_default();
        // Each beta key may have become its GA label.
        if let Some(required) = masked.required.as_mut() {
            for (i, term) in required.node_selector_terms.iter_mut().enumerate() {
                for (j, expr) in term.match_expressions.iter_mut().flatten().enumerate() {
                    let new_key = new_keys.get(i).and_then(|t| t.get(j));
                    if let (Some(new_key), Some((_, ga))) = (new_key, BETA_TO_GA.iter().find(|(beta, _)| *beta == expr.key)) {
                        if new_key == ga {
                            expr.key = new_key.clone();
                        }
                    }
                }
            }
        }
        if spec.node_affinity.as_ref() != Some(&masked) {
            errs.push(Path::new("nodeAffinity").invalid(Bad::raw(go_value(&spec.node_affinity)), &format!("{IMMUTABLE}, except for updating from beta label to GA")));
        }
    }
    if spec.volume_attributes_class_name != old_spec.volume_attributes_class_name {
        errs.push(Path::new("spec").child("volumeAttributesClassName").forbidden("update is forbidden when the VolumeAttributesClass feature gate is disabled"));
    }
    errs
}

// ---- PersistentVolumeClaim ---------------------------------------------------------

const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

fn persistent_volume_claim(pvc: &PersistentVolumeClaim) -> Errors {
    claim_spec(&pvc.spec.clone().unwrap_or_default(), &Path::new("spec"))
}

/// Upstream's `ValidatePersistentVolumeClaimSpec` (claims and pods' claim
/// templates).
pub(super) fn claim_spec(spec: &PersistentVolumeClaimSpec, sp: &Path) -> Errors {
    let mut errs = Vec::new();
    let modes = list(&spec.access_modes);
    if modes.is_empty() {
        errs.push(sp.child("accessModes").required("at least 1 access mode is required"));
    }
    if let Some(selector) = &spec.selector {
        errs.extend(label_selector(selector, &sp.child("selector")));
    }
    errs.extend(access_modes(modes, &sp.child("accessModes")));
    let storage_path = sp.child("resources").key("storage");
    match spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")) {
        None => errs.push(storage_path.required("")),
        Some(q) => match positive_quantity(q, &storage_path) {
            e if !e.is_empty() => errs.extend(e),
            _ => errs.extend(resource_quantity_value("storage", q, Shown::Quoted, &storage_path)),
        },
    }
    if let Some(class) = spec.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
        errs.extend(name_by(dns1123_subdomain, class, &sp.child("storageClassName")));
    }
    if let Some(mode) = spec.volume_mode.as_deref().filter(|m| !["Block", "Filesystem"].contains(m)) {
        errs.push(sp.child("volumeMode").not_supported(mode, &["Block", "Filesystem"]));
    }
    let data_source_rules = |name: &str, kind: &str, group: Option<&String>, path: &Path| {
        let mut errs = Vec::new();
        errs.extend(required_text(name, &path.child("name")));
        errs.extend(required_text(kind, &path.child("kind")));
        let group = group.map_or("", String::as_str);
        if group.is_empty() && kind != "PersistentVolumeClaim" {
            errs.push(path.invalid(kind, "must be 'PersistentVolumeClaim' when referencing the default apiGroup"));
        }
        if !group.is_empty() {
            errs.extend(name_by(dns1123_subdomain, group, &path.child("apiGroup")));
        }
        errs
    };
    if let Some(ds) = &spec.data_source {
        errs.extend(data_source_rules(&ds.name, &ds.kind, ds.api_group.as_ref(), &sp.child("dataSource")));
    }
    if let Some(r) = &spec.data_source_ref {
        errs.extend(data_source_rules(&r.name, &r.kind, r.api_group.as_ref(), &sp.child("dataSourceRef")));
        if let Some(ns) = r.namespace.as_deref().filter(|ns| !ns.is_empty()) {
            errs.extend(name_by(dns1123_label, ns, &sp.child("dataSourceRef").child("namespace")));
        }
    }
    // Either of dataSource and dataSourceRef left out is copied from the
    // other; both given must agree.
    match (&spec.data_source, &spec.data_source_ref) {
        (Some(_), Some(r)) if r.namespace.as_deref().is_some_and(|ns| !ns.is_empty()) => {
            errs.push(sp.invalid(Bad::raw(sp.child("dataSource").as_str()), "may not be specified when dataSourceRef.namespace is specified"));
        }
        (Some(ds), Some(r)) if !(ds.api_group == r.api_group && ds.kind == r.kind && ds.name == r.name) => {
            errs.push(sp.invalid(Bad::raw(sp.child("dataSource").as_str()), "must match dataSourceRef"));
        }
        _ => {}
    }
    errs
}

fn persistent_volume_claim_update(new: &PersistentVolumeClaim, old: &PersistentVolumeClaim) -> Errors {
    let mut errs = Vec::new();
    let (mut spec, mut old_spec) = (new.spec.clone().unwrap_or_default(), old.spec.clone().unwrap_or_default());
    for s in [&mut spec, &mut old_spec] {
        s.volume_mode.get_or_insert_with(|| "Filesystem".into());
    }
    let (new_volume_mode, old_volume_mode) = (spec.volume_mode.clone(), old_spec.volume_mode.clone());
    // A claim is bound once: its volumeName may be set when empty.
    if text(&old_spec.volume_name).is_empty() {
        old_spec.volume_name = spec.volume_name.clone();
    }
    let (annotations, old_annotations) = (new.metadata.annotations.clone().unwrap_or_default(), old.metadata.annotations.clone().unwrap_or_default());
    let old_beta = old_annotations.get(BETA_STORAGE_CLASS);
    let from_annotation = old_beta.is_some()
        && old_spec.storage_class_name.is_none()
        && spec.storage_class_name.as_ref().is_some_and(|c| Some(c) == old_beta)
        && annotations.get(BETA_STORAGE_CLASS).is_none_or(|a| Some(a) == old_beta);
    if from_annotation {
        spec.storage_class_name = None;
    } else {
        let (now, before) = (annotations.get(BETA_STORAGE_CLASS).map_or("", String::as_str), old_beta.map_or("", String::as_str));
        if now != before {
            errs.push(Path::new("metadata").child("annotations").child(BETA_STORAGE_CLASS).invalid(now, IMMUTABLE));
        }
        let from_nil = spec.storage_class_name.is_some() && old_spec.storage_class_name.is_none() && old_beta.is_none_or(|b| Some(b) == spec.storage_class_name.as_ref());
        if from_nil {
            spec.storage_class_name = old_spec.storage_class_name.clone();
        }
    }
    // A bound claim may ask for more storage or another attributes class.
    let bound = new.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let storage = |s: &k8s_openapi::api::core::v1::PersistentVolumeClaimSpec| s.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).cloned();
    let (new_size, old_size) = (storage(&spec), storage(&old_spec));
    if bound {
        if let Some(requests) = spec.resources.as_mut().and_then(|r| r.requests.as_mut()) {
            match &old_size {
                Some(q) => requests.insert("storage".into(), q.clone()),
                None => requests.remove("storage"),
            };
        }
        if spec.volume_attributes_class_name.is_some() {
            spec.volume_attributes_class_name = old_spec.volume_attributes_class_name.clone();
        }
    }
    let (now, before) = (semantic_of(&spec), semantic_of(&old_spec));
    if now != before {
        errs.push(Path::new("spec").forbidden(&format!(
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
            differences("", &before, &now).join("\n")
        )));
    }
    // Shrinking is allowed while above the capacity the volume has (upstream's
    // RecoverVolumeExpansionFailure, on by default in 1.32).
    let milli = |q: &Option<Quantity>| q.as_ref().and_then(|q| skiff_quantity::milli(&q.0)).unwrap_or(0);
    let status_size = old.status.as_ref().and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage")).cloned();
    if milli(&new_size) < milli(&old_size) && milli(&new_size) <= milli(&status_size) {
        errs.push(Path::new("spec").child("resources").child("requests").child("storage").forbidden("field can not be less than status.capacity"));
    }
    errs.extend(immutable(&new_volume_mode, &old_volume_mode, &Path::new("volumeMode")));
    let (class, old_class) = (&new.spec.as_ref().and_then(|s| s.volume_attributes_class_name.clone()), &old.spec.as_ref().and_then(|s| s.volume_attributes_class_name.clone()));
    if class != old_class {
        errs.push(Path::new("spec").child("volumeAttributesClassName").forbidden("update is forbidden when the VolumeAttributesClass feature gate is disabled"));
    }
    errs
}

/// Upstream's `validatePersistentVolumeClaimResourceKey`.
fn claim_resource_key(value: &str, path: &Path) -> Errors {
    let errs = name_by(qualified_name, value, path);
    if !errs.is_empty() {
        return errs;
    }
    if is_native_resource(value) && value != "storage" {
        return vec![path.not_supported(value, &["storage"])];
    }
    vec![]
}

fn persistent_volume_claim_status(new: &PersistentVolumeClaim, _old: &PersistentVolumeClaim) -> Errors {
    let mut errs = Vec::new();
    if new.spec.as_ref().is_none_or(|s| list(&s.access_modes).is_empty()) {
        // Sic: upstream capitalises this path.
        errs.push(Path::new("Spec").child("accessModes").required(""));
    }
    let Some(status) = &new.status else { return errs };
    for (name, q) in status.capacity.iter().flatten() {
        errs.extend(basic_resource(q, &Path::new("status").child("capacity").key(name)));
    }
    const RESIZE: &[&str] = &["ControllerResizeInProgress", "ControllerResizeInfeasible", "NodeResizeInProgress", "NodeResizeInfeasible", "NodeResizePending"];
    let resize_path = Path::new("status").child("allocatedResourceStatus");
    for (key, value) in status.allocated_resource_statuses.iter().flatten() {
        errs.extend(claim_resource_key(key, &resize_path));
        if !RESIZE.contains(&value.as_str()) {
            // Sic: upstream shows the key.
            errs.push(resize_path.not_supported(key, RESIZE));
        }
    }
    let alloc_path = Path::new("status").child("allocatedResources");
    for (name, q) in status.allocated_resources.iter().flatten() {
        let e = claim_resource_key(name, &alloc_path);
        if !e.is_empty() {
            errs.extend(e);
            continue;
        }
        match basic_resource(q, &alloc_path.key(name)) {
            e if !e.is_empty() => errs.extend(e),
            _ => errs.extend(resource_quantity_value("storage", q, Shown::Quoted, &alloc_path.key(name))),
        }
    }
    errs
}

// ---- ResourceQuota -------------------------------------------------------------------

const QUOTA_SCOPES: &[&str] = &["Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass", "CrossNamespacePodAffinity"];

/// Upstream's `IsResourceQuotaScopeValidForResource`.
fn scope_valid_for(scope: &str, resource: &str) -> bool {
    let pod_count = resource == "pods";
    let pod_compute = ["cpu", "memory", "limits.cpu", "limits.memory", "requests.cpu", "requests.memory"].contains(&resource);
    match scope {
        "Terminating" | "NotTerminating" | "NotBestEffort" | "PriorityClass" | "CrossNamespacePodAffinity" => pod_count || pod_compute,
        "BestEffort" => pod_count,
        _ => true,
    }
}

/// Upstream's `ValidateResourceQuotaSpec`.
fn resource_quota_spec(spec: &ResourceQuotaSpec) -> Errors {
    let mut errs = Vec::new();
    let sp = Path::new("spec");
    let hard = spec.hard.clone().unwrap_or_default();
    for (name, q) in &hard {
        let at = sp.child("hard").key(name);
        errs.extend(quota_resource_name(name, &at));
        errs.extend(resource_quantity_value(name, q, Shown::Quoted, &at));
    }
    let scopes = list(&spec.scopes);
    let conflicting = |set: &BTreeSet<&str>| [["BestEffort", "NotBestEffort"], ["Terminating", "NotTerminating"]].iter().filter(|pair| pair.iter().all(|s| set.contains(s))).count();
    let scopes_shown = || Bad::raw(go_slice("[]core.ResourceQuotaScope", spec.scopes.as_deref()));
    if !scopes.is_empty() {
        let at = sp.child("scopes");
        let mut set = BTreeSet::new();
        for scope in scopes {
            if !QUOTA_SCOPES.contains(&scope.as_str()) {
                errs.push(at.invalid(scopes_shown(), "unsupported scope"));
            }
            for name in hard.keys() {
                if is_standard_quota_resource(name) && !scope_valid_for(scope, name) {
                    errs.push(at.invalid(scopes_shown(), "unsupported scope applied to resource"));
                }
            }
            set.insert(scope.as_str());
        }
        errs.extend((0..conflicting(&set)).map(|_| at.invalid(scopes_shown(), "conflicting scopes")));
    }
    if let Some(selector) = &spec.scope_selector {
        let at = sp.child("scopeSelector").child("matchExpressions");
        let mut set = BTreeSet::new();
        for req in list(&selector.match_expressions) {
            let scope = req.scope_name.as_str();
            if !QUOTA_SCOPES.contains(&scope) {
                errs.push(at.child("scopeName").invalid(scope, "unsupported scope"));
            }
            for name in hard.keys() {
                if is_standard_quota_resource(name) && !scope_valid_for(scope, name) {
                    errs.push(at.invalid(Bad::raw(go_value(selector)), "unsupported scope applied to resource"));
                }
            }
            if ["BestEffort", "NotBestEffort", "Terminating", "NotTerminating", "CrossNamespacePodAffinity"].contains(&scope) && req.operator != "Exists" {
                errs.push(at.child("operator").invalid(
                    &req.operator,
                    "must be 'Exists' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
                ));
            }
            let values = list(&req.values);
            match req.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    errs.push(at.child("values").required("must be at least one value when `operator` is 'In' or 'NotIn' for scope selector"))
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(at.child("values").invalid(
                    Bad::raw(go_slice("[]string", Some(values))),
                    "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
                )),
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                op => errs.push(at.child("operator").invalid(op, "not a valid selector operator")),
            }
            set.insert(scope);
        }
        errs.extend((0..conflicting(&set)).map(|_| at.invalid(scopes_shown(), "conflicting scopes")));
    }
    errs
}

/// Upstream's `ValidateResourceQuotaStatus`.
fn resource_quota_status_rules(quota: &ResourceQuota) -> Errors {
    let mut errs = Vec::new();
    if let Some(status) = &quota.status {
        for (field, resources) in [("hard", &status.hard), ("used", &status.used)] {
            for (name, q) in resources.iter().flatten() {
                let at = Path::new("status").child(field).key(name);
                errs.extend(quota_resource_name(name, &at));
                errs.extend(resource_quantity_value(name, q, Shown::Quoted, &at));
            }
        }
    }
    errs
}

fn resource_quota(quota: &ResourceQuota) -> Errors {
    let mut errs = resource_quota_spec(&quota.spec.clone().unwrap_or_default());
    errs.extend(resource_quota_status_rules(quota));
    errs
}

fn resource_quota_update(new: &ResourceQuota, old: &ResourceQuota) -> Errors {
    let scopes = |q: &ResourceQuota| q.spec.as_ref().map(|s| list(&s.scopes).iter().cloned().collect::<BTreeSet<_>>()).unwrap_or_default();
    if scopes(new) != scopes(old) {
        return vec![Path::new("spec").child("scopes").invalid(Bad::raw(go_slice("[]core.ResourceQuotaScope", new.spec.as_ref().and_then(|s| s.scopes.as_deref()))), IMMUTABLE)];
    }
    vec![]
}

fn resource_quota_status(new: &ResourceQuota, _old: &ResourceQuota) -> Errors {
    resource_quota_status_rules(new)
}

// ---- LimitRange ----------------------------------------------------------------------

fn limit_range(lr: &LimitRange) -> Errors {
    let mut errs = Vec::new();
    let limits = lr.spec.as_ref().map(|s| s.limits.clone()).unwrap_or_default();
    let mut types = BTreeSet::new();
    for (i, limit) in limits.iter().enumerate() {
        let at = Path::new("spec").child("limits").index(i);
        let ty = limit.type_.as_str();
        let type_errs = name_by(qualified_name, ty, &at.child("type"));
        if !type_errs.is_empty() {
            errs.extend(type_errs);
        } else if !ty.contains('/') && !["Pod", "Container", "PersistentVolumeClaim"].contains(&ty) {
            errs.push(at.child("type").invalid(ty, "must be a standard limit type or fully qualified"));
        }
        if !types.insert(ty) {
            errs.push(at.child("type").duplicate(ty));
        }
        let name_rule = |name: &str, path: &Path| if ty == "Pod" || ty == "Container" { container_resource_name(name, Shown::Quoted, path) } else { resource_name(name, Shown::Quoted, path) };
        let get = |m: &Option<BTreeMap<String, Quantity>>| m.clone().unwrap_or_default();
        let (max, min, mut default, mut default_request, ratio) = (get(&limit.max), get(&limit.min), get(&limit.default), get(&limit.default_request), get(&limit.max_limit_request_ratio));
        let mut keys = BTreeSet::new();
        for (field, map) in [("max", &max), ("min", &min)] {
            for name in map.keys() {
                errs.extend(name_rule(name, &at.child(field).key(name)));
                keys.insert(name.clone());
            }
        }
        if ty == "Pod" {
            if !default.is_empty() {
                errs.push(at.child("default").forbidden("may not be specified when `type` is 'Pod'"));
            }
            if !default_request.is_empty() {
                errs.push(at.child("defaultRequest").forbidden("may not be specified when `type` is 'Pod'"));
            }
            default.clear();
            default_request.clear();
        } else {
            for (field, map) in [("default", &default), ("defaultRequest", &default_request)] {
                for name in map.keys() {
                    errs.extend(name_rule(name, &at.child(field).key(name)));
                    keys.insert(name.clone());
                }
            }
        }
        if ty == "PersistentVolumeClaim" && !min.contains_key("storage") && !max.contains_key("storage") {
            errs.push(at.child("limits").required("either minimum or maximum storage value is required, but neither was provided"));
        }
        for name in ratio.keys() {
            errs.extend(name_rule(name, &at.child("maxLimitRequestRatio").key(name)));
            keys.insert(name.clone());
        }
        let m = |q: &Quantity| skiff_quantity::milli(&q.0);
        for k in &keys {
            let (mn, mx, df, dr, rt) = (min.get(k), max.get(k), default.get(k), default_request.get(k), ratio.get(k));
            let gt = |a: Option<&Quantity>, b: Option<&Quantity>| matches!((a.and_then(m), b.and_then(m)), (Some(a), Some(b)) if a > b);
            if gt(mn, mx) {
                let (mn, mx) = (&mn.expect("present").0, &mx.expect("present").0);
                errs.push(at.child("min").key(k).invalid(mn, &format!("min value {mn} is greater than max value {mx}")));
            }
            if gt(mn, dr) {
                let (mn, dr) = (&mn.expect("present").0, &dr.expect("present").0);
                errs.push(at.child("defaultRequest").key(k).invalid(dr, &format!("min value {mn} is greater than default request value {dr}")));
            }
            if gt(dr, mx) {
                let (dr, mx) = (&dr.expect("present").0, &mx.expect("present").0);
                errs.push(at.child("defaultRequest").key(k).invalid(dr, &format!("default request value {dr} is greater than max value {mx}")));
            }
            if gt(dr, df) {
                let (dr, df) = (&dr.expect("present").0, &df.expect("present").0);
                errs.push(at.child("defaultRequest").key(k).invalid(dr, &format!("default request value {dr} is greater than default limit value {df}")));
            }
            if gt(mn, df) {
                // Sic: upstream shows the minimum.
                let (mn, df) = (&mn.expect("present").0, &df.expect("present").0);
                errs.push(at.child("default").key(k).invalid(mn, &format!("min value {mn} is greater than default value {df}")));
            }
            if gt(df, mx) {
                // Sic: upstream shows the maximum.
                let (df, mx) = (&df.expect("present").0, &mx.expect("present").0);
                errs.push(at.child("default").key(k).invalid(mx, &format!("default value {df} is greater than max value {mx}")));
            }
            if let Some(r) = rt {
                if r.0.starts_with('-') || m(r).is_some_and(|r| r < 1000) {
                    errs.push(at.child("maxLimitRequestRatio").key(k).invalid(&r.0, &format!("ratio {} is less than 1", r.0)));
                }
                if let (Some(r_m), Some(mn_m), Some(mx_m)) = (m(r), mn.and_then(m), mx.and_then(m)) {
                    let limit = mx_m as f64 / mn_m as f64;
                    if r_m as f64 / 1000.0 > limit {
                        errs.push(at.child("maxLimitRequestRatio").key(k).invalid(&r.0, &format!("ratio {} is greater than max/min = {limit:.6}", r.0)));
                    }
                }
            }
            if !overcommit_allowed(k) {
                if let (Some(df), Some(dr)) = (df, dr) {
                    if m(df) != m(dr) {
                        errs.push(at.child("defaultRequest").key(k).invalid(&dr.0, &format!("default value {} must equal to defaultRequest value {} in {k}", df.0, dr.0)));
                    }
                }
            }
        }
    }
    errs
}

// ---- ConfigMap and Secret ----------------------------------------------------------

/// The most data a ConfigMap or Secret holds (upstream's `MaxSecretSize`).
const MAX_DATA: usize = 1024 * 1024;

fn config_map(cm: &ConfigMap) -> Errors {
    let mut errs = Vec::new();
    let binary = cm.binary_data.clone().unwrap_or_default();
    let mut size = 0;
    for (key, value) in cm.data.iter().flatten() {
        let at = Path::new("data").key(key);
        errs.extend(config_map_key(key, &at));
        if binary.contains_key(key) {
            errs.push(at.invalid(key, "duplicate of key present in binaryData"));
        }
        size += value.len();
    }
    for (key, value) in &binary {
        errs.extend(config_map_key(key, &Path::new("binaryData").key(key)));
        size += value.0.len();
    }
    if size > MAX_DATA {
        // The whole object is too large: upstream names no field.
        errs.push(Path::new("").too_long(MAX_DATA));
    }
    errs
}

/// Upstream's rule for ConfigMaps and Secrets with `immutable` set: their
/// data stays as it is, and so does `immutable`.
fn frozen<T: PartialEq>(immutable: Option<bool>, old_immutable: Option<bool>, data: &[(&str, T, T)]) -> Errors {
    let mut errs = Vec::new();
    if old_immutable == Some(true) {
        if immutable != Some(true) {
            errs.push(Path::new("immutable").forbidden("field is immutable when `immutable` is set"));
        }
        for (field, new, old) in data {
            if new != old {
                errs.push(Path::new(field).forbidden("field is immutable when `immutable` is set"));
            }
        }
    }
    errs
}

fn config_map_update(new: &ConfigMap, old: &ConfigMap) -> Errors {
    let data = |cm: &ConfigMap| semantic_of(&cm.data);
    let binary = |cm: &ConfigMap| semantic_of(&cm.binary_data);
    frozen(new.immutable, old.immutable, &[("data", data(new), data(old)), ("binaryData", binary(new), binary(old))])
}

/// A secret's type, defaulted to Opaque as upstream does.
fn secret_type(s: &Secret) -> &str {
    Some(text(&s.type_)).filter(|t| !t.is_empty()).unwrap_or("Opaque")
}

/// Go's `json.Unmarshal` into a map: why `bytes` are not a JSON object.
fn json_object_error(bytes: &[u8]) -> Option<String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(_) | Value::Null) => None,
        Ok(v) => {
            let kind = match v {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                _ => "bool",
            };
            Some(format!("json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"))
        }
        Err(e) if e.is_eof() => Some("unexpected end of JSON input".into()),
        Err(e) => {
            let first = String::from_utf8_lossy(bytes).trim_start().chars().next();
            match first {
                Some(c) if !"{[\"-0123456789tfn".contains(c) => Some(format!("invalid character '{c}' looking for beginning of value")),
                _ => Some(e.to_string()),
            }
        }
    }
}

fn secret(s: &Secret) -> Errors {
    let mut errs = Vec::new();
    let data = s.data.clone().unwrap_or_default();
    let mut size = 0;
    for (key, value) in &data {
        errs.extend(config_map_key(key, &Path::new("data").key(key)));
        size += value.0.len();
    }
    if size > MAX_DATA {
        errs.push(Path::new("data").too_long(MAX_DATA));
    }
    let key = |k: &str| Path::new("data").key(k);
    match secret_type(s) {
        "kubernetes.io/service-account-token" => {
            let name = s.metadata.annotations.as_ref().and_then(|a| a.get("kubernetes.io/service-account.name"));
            if name.is_none_or(String::is_empty) {
                errs.push(Path::new("metadata").child("annotations").key("kubernetes.io/service-account.name").required(""));
            }
        }
        ty @ ("kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson") => {
            let field = if ty == "kubernetes.io/dockercfg" { ".dockercfg" } else { ".dockerconfigjson" };
            match data.get(field) {
                None => errs.push(key(field).required("")),
                Some(bytes) => {
                    if let Some(why) = json_object_error(&bytes.0) {
                        errs.push(key(field).invalid("<secret contents redacted>", &why));
                    }
                }
            }
        }
        "kubernetes.io/basic-auth" => {
            // Either may be empty, but one must be there.
            if !data.contains_key("username") && !data.contains_key("password") {
                errs.push(key("username").required(""));
                errs.push(key("password").required(""));
            }
        }
        "kubernetes.io/ssh-auth" => {
            if data.get("ssh-privatekey").is_none_or(|v| v.0.is_empty()) {
                errs.push(key("ssh-privatekey").required(""));
            }
        }
        "kubernetes.io/tls" => {
            for field in ["tls.crt", "tls.key"] {
                if !data.contains_key(field) {
                    errs.push(key(field).required(""));
                }
            }
        }
        _ => {}
    }
    errs
}

fn secret_update(new: &Secret, old: &Secret) -> Errors {
    let mut errs = immutable(&secret_type(new).to_string(), &secret_type(old).to_string(), &Path::new("type"));
    let data = |s: &Secret| semantic_of(&s.data);
    errs.extend(frozen(new.immutable, old.immutable, &[("data", data(new), data(old))]));
    errs
}

// ---- ReplicationController -------------------------------------------------------------

fn replication_controller(rc: &ReplicationController) -> Errors {
    let mut errs = Vec::new();
    let spec = rc.spec.clone().unwrap_or_default();
    let sp = Path::new("spec");
    errs.extend(non_negative(i64::from(spec.min_ready_seconds.unwrap_or(0)), &sp.child("minReadySeconds")));
    let template_labels = spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone());
    // A selector left out is the template's labels.
    let selector = spec.selector.clone().filter(|s| !s.is_empty()).or_else(|| template_labels.clone()).unwrap_or_default();
    if selector.is_empty() {
        errs.push(sp.child("selector").required(""));
    }
    errs.extend(non_negative(i64::from(spec.replicas.unwrap_or(1)), &sp.child("replicas")));
    let tp = sp.child("template");
    match &spec.template {
        None => errs.push(tp.required("")),
        Some(template) => {
            let labels = template_labels.unwrap_or_default();
            if !selector.is_empty() && !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                let shown = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
                errs.push(tp.child("metadata").child("labels").invalid(Bad::raw(go_string_map(shown)), NO_MATCH));
            }
            errs.extend(pod::pod_template_spec(template, &tp));
            let pod = template.spec.clone().unwrap_or_default();
            // The restart policy defaults to Always.
            let restart = pod.restart_policy.as_deref().filter(|p| !p.is_empty()).unwrap_or("Always");
            if restart != "Always" {
                errs.push(tp.child("spec").child("restartPolicy").not_supported(restart, &["Always"]));
            }
            if pod.active_deadline_seconds.is_some() {
                errs.push(tp.child("spec").child("activeDeadlineSeconds").forbidden("activeDeadlineSeconds in ReplicationController is not Supported"));
            }
        }
    }
    errs
}

fn replication_controller_status(new: &ReplicationController, _old: &ReplicationController) -> Errors {
    let mut errs = Vec::new();
    let status = new.status.clone().unwrap_or_default();
    let at = Path::new("status");
    let (replicas, labeled, ready, available) =
        (status.replicas, status.fully_labeled_replicas.unwrap_or(0), status.ready_replicas.unwrap_or(0), status.available_replicas.unwrap_or(0));
    for (field, value) in [("replicas", replicas), ("fullyLabeledReplicas", labeled), ("readyReplicas", ready), ("availableReplicas", available)] {
        errs.extend(non_negative(i64::from(value), &at.child(field)));
    }
    errs.extend(non_negative(status.observed_generation.unwrap_or(0), &at.child("observedGeneration")));
    let msg = "cannot be greater than status.replicas";
    for (field, value) in [("fullyLabeledReplicas", labeled), ("readyReplicas", ready), ("availableReplicas", available)] {
        if value > replicas {
            errs.push(at.child(field).invalid(value, msg));
        }
    }
    if available > ready {
        errs.push(at.child("availableReplicas").invalid(available, "cannot be greater than readyReplicas"));
    }
    errs
}

// ---- Event -------------------------------------------------------------------------------

/// Upstream's `legacyValidateEvent`, which is all a core/v1 Event gets.
/// Events of events.k8s.io/v1 are stored (and validated) as core ones here,
/// so their stricter rules are not applied.
fn event(e: &Event) -> Errors {
    let mut errs = Vec::new();
    let ns = e.metadata.namespace.as_deref().unwrap_or("");
    let involved = text(&e.involved_object.namespace);
    let mismatch = || Path::new("involvedObject").child("namespace").invalid(involved, "does not match event.namespace");
    if e.event_time.is_none() {
        // An old-style event: cluster-scoped objects' events may be in "default".
        if (involved.is_empty() && !ns.is_empty() && ns != "default") || (!involved.is_empty() && ns != involved) {
            errs.push(mismatch());
        }
    } else {
        if involved.is_empty() && ns != "default" && ns != "kube-system" {
            errs.push(mismatch());
        }
        let controller = text(&e.reporting_component);
        if controller.is_empty() {
            errs.push(Path::new("reportingComponent").required(""));
        }
        errs.extend(name_by(qualified_name, controller, &Path::new("reportingComponent")));
        for (field, value, max) in [("reportingInstance", text(&e.reporting_instance), 128), ("action", text(&e.action), 128), ("reason", text(&e.reason), 128)] {
            if value.is_empty() {
                errs.push(Path::new(field).required(""));
            }
            if value.len() > max {
                errs.push(Path::new(field).invalid("", &format!("can have at most {max} characters")));
            }
        }
        if text(&e.message).len() > 1024 {
            errs.push(Path::new("message").invalid("", "can have at most 1024 characters"));
        }
    }
    errs.extend(name_by(dns1123_subdomain, ns, &Path::new("namespace")));
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{messages, table, update_table, with};
    use super::super::Op;

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn service() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    }

    fn spec(change: Value) -> Value {
        with(&service(), json!({"spec": change}))
    }

    /// A Service as Skiff stores it, after allocation and defaults.
    fn stored_service() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
            "type": "ClusterIP", "selector": {"app": "web"}, "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster", "sessionAffinity": "None",
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]}})
    }

    #[test]
    fn service_valid() {
        let cases = [
            ("minimal", service()),
            ("stored form", stored_service()),
            // kubectl create service clusterip my-cs --tcp=5678:8080
            ("kubectl clusterip", json!({"kind": "Service", "apiVersion": "v1", "metadata": {"name": "my-cs", "creationTimestamp": null, "labels": {"app": "my-cs"}},
                "spec": {"ports": [{"name": "5678-8080", "protocol": "TCP", "port": 5678, "targetPort": 8080}], "selector": {"app": "my-cs"}, "type": "ClusterIP"},
                "status": {"loadBalancer": {}}})),
            // kubectl create service clusterip my-cs --clusterip=None
            ("kubectl headless", json!({"metadata": {"name": "my-cs", "labels": {"app": "my-cs"}}, "spec": {"selector": {"app": "my-cs"}, "clusterIP": "None", "type": "ClusterIP"}})),
            // kubectl create service nodeport my-ns --tcp=5678:8080
            ("kubectl nodeport", json!({"metadata": {"name": "my-ns", "labels": {"app": "my-ns"}},
                "spec": {"ports": [{"name": "5678-8080", "protocol": "TCP", "port": 5678, "targetPort": 8080, "nodePort": 0}], "selector": {"app": "my-ns"}, "type": "NodePort"}})),
            ("kubectl loadbalancer", json!({"metadata": {"name": "my-lbs", "labels": {"app": "my-lbs"}},
                "spec": {"ports": [{"name": "5678-8080", "protocol": "TCP", "port": 5678, "targetPort": 8080}], "selector": {"app": "my-lbs"}, "type": "LoadBalancer"}})),
            // kubectl create service externalname my-ns --external-name bar.com
            ("kubectl externalname", json!({"metadata": {"name": "my-ns", "labels": {"app": "my-ns"}}, "spec": {"selector": {"app": "my-ns"}, "type": "ExternalName", "externalName": "bar.com"}})),
            ("externalname with a trailing dot", spec(json!({"type": "ExternalName", "externalName": "bar.example.com."}))),
            ("named target port", spec(json!({"ports": [{"port": 80, "targetPort": "http"}]}))),
            ("no target port", spec(json!({"ports": [{"port": 80}]}))),
            ("one port, no name", spec(json!({"ports": [{"port": 53, "protocol": "UDP"}]}))),
            ("same port, two protocols", spec(json!({"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}))),
            ("sctp", spec(json!({"ports": [{"port": 9999, "protocol": "SCTP"}]}))),
            ("dual stack", spec(json!({"clusterIP": "10.43.0.5", "clusterIPs": ["10.43.0.5", "fd00::5"], "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack"}))),
            ("ipv6 only", spec(json!({"clusterIP": "fd00::5", "ipFamilies": ["IPv6"], "ipFamilyPolicy": "SingleStack"}))),
            ("client ip affinity", spec(json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}}))),
            ("client ip affinity defaulted", spec(json!({"sessionAffinity": "ClientIP"}))),
            ("external ips", spec(json!({"externalIPs": ["192.0.2.10", "2001:db8::10"]}))),
            ("external ips with a policy", spec(json!({"externalIPs": ["192.0.2.10"], "externalTrafficPolicy": "Local"}))),
            ("local lb", spec(json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30555, "loadBalancerClass": "example.com/lb",
                "loadBalancerSourceRanges": ["10.0.0.0/8", " 192.168.0.0/16 "], "allocateLoadBalancerNodePorts": false}))),
            ("local lb, health check port to allocate", spec(json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local"}))),
            ("source ranges annotation", with(&spec(json!({"type": "LoadBalancer"})), json!({"metadata": {"annotations": {"service.beta.kubernetes.io/load-balancer-source-ranges": "10.0.0.0/8, 192.168.0.0/16"}}}))),
            ("node ports", spec(json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30080}, {"name": "b", "port": 81, "nodePort": 30081}]}))),
            ("same node port, two protocols", spec(json!({"type": "NodePort", "ports": [{"name": "a", "port": 53, "nodePort": 30053, "protocol": "UDP"}, {"name": "b", "port": 53, "nodePort": 30053}]}))),
            ("traffic policies", spec(json!({"type": "NodePort", "internalTrafficPolicy": "Local", "externalTrafficPolicy": "Cluster", "trafficDistribution": "PreferClose"}))),
            ("app protocol", spec(json!({"ports": [{"port": 443, "appProtocol": "kubernetes.io/h2c"}]}))),
            ("topology annotations agree", with(&service(), json!({"metadata": {"annotations": {"service.kubernetes.io/topology-mode": "Auto", "service.kubernetes.io/topology-aware-hints": "Auto"}}}))),
            ("publish not ready", spec(json!({"clusterIP": "None", "publishNotReadyAddresses": true, "ports": null}))),
        ];
        table("", "Service", &cases.into_iter().map(|(n, v)| (n, v, "")).collect::<Vec<_>>());
    }

    #[test]
    fn service_invalid() {
        let two_ports = |a: Value, b: Value| spec(json!({"ports": [a, b]}));
        table("", "Service", &[
            ("port too large", spec(json!({"ports": [{"name": "http", "port": 70000, "targetPort": 8080}]})), "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"),
            ("port zero", spec(json!({"ports": [{"port": 0, "targetPort": 8080}]})), "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
            ("port negative", spec(json!({"ports": [{"port": -1, "targetPort": 8080}]})), "spec.ports[0].port: Invalid value: -1: must be between 1 and 65535, inclusive"),
            ("target port too large", spec(json!({"ports": [{"port": 80, "targetPort": 70000}]})), "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"),
            ("target port name", spec(json!({"ports": [{"port": 80, "targetPort": "Http_Bad"}]})), "spec.ports[0].targetPort: Invalid value: \"Http_Bad\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
            ("target port name too long", spec(json!({"ports": [{"port": 80, "targetPort": "a-very-long-port-name"}]})), "spec.ports[0].targetPort: Invalid value: \"a-very-long-port-name\": must be no more than 15 characters"),
            ("target port name without letters", spec(json!({"ports": [{"port": 80, "targetPort": "8080"}]})), "spec.ports[0].targetPort: Invalid value: \"8080\": must contain at least one letter (a-z)"),
            ("protocol", spec(json!({"ports": [{"port": 80, "protocol": "HTTP"}]})), "spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""),
            ("no ports", spec(json!({"ports": null})), "spec.ports: Required value"),
            ("empty ports", spec(json!({"ports": []})), "spec.ports: Required value"),
            ("second port unnamed", two_ports(json!({"name": "a", "port": 80}), json!({"port": 81})), "spec.ports[1].name: Required value"),
            ("first port unnamed", two_ports(json!({"port": 80}), json!({"name": "b", "port": 81})), "spec.ports[0].name: Required value"),
            ("port names repeat", two_ports(json!({"name": "a", "port": 80}), json!({"name": "a", "port": 81})), "spec.ports[1].name: Duplicate value: \"a\""),
            ("port name", spec(json!({"ports": [{"name": "HTTP", "port": 80}]})), "spec.ports[0].name: Invalid value: \"HTTP\": a lowercase RFC 1123 label must consist of"),
            ("port name with a dot", spec(json!({"ports": [{"name": "h.p", "port": 80}]})), "spec.ports[0].name: Invalid value: \"h.p\": a lowercase RFC 1123 label"),
            ("ports repeat", two_ports(json!({"name": "a", "port": 80}), json!({"name": "b", "port": 80, "targetPort": 9090})),
                "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}"),
            ("ports repeat, protocol defaulted", two_ports(json!({"name": "a", "port": 80, "protocol": "TCP"}), json!({"name": "b", "port": 80})), "spec.ports[1]: Duplicate value: core.ServicePort{"),
            ("app protocol", spec(json!({"ports": [{"port": 80, "appProtocol": "bad proto!"}]})), "spec.ports[0].appProtocol: Invalid value: \"bad proto!\": name part must consist of"),
            ("type", spec(json!({"type": "Foo"})), "spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""),
            ("node port on a cluster ip", spec(json!({"ports": [{"port": 80, "nodePort": 30080}]})), "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
            ("node ports repeat", spec(json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30001}, {"name": "b", "port": 81, "nodePort": 30001}]})), "spec.ports[1].nodePort: Duplicate value: 30001"),
            ("cluster ip", spec(json!({"clusterIP": "10.0.0.300"})), "spec.clusterIPs[0]: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
            ("cluster ip word", spec(json!({"clusterIP": "auto"})), "spec.clusterIPs[0]: Invalid value: \"auto\": must be a valid IP address"),
            ("cluster ips disagree", spec(json!({"clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.6"]})), "spec.clusterIPs: Invalid value: []string{\"10.0.0.6\"}: first value must match `clusterIP`"),
            ("cluster ips alone", spec(json!({"clusterIPs": ["10.0.0.6"]})), "spec.clusterIPs: Invalid value: []string{\"10.0.0.6\"}: must be empty when `clusterIP` is not specified"),
            ("three cluster ips", spec(json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "fd00::1", "10.0.0.2"]})), "spec.clusterIPs: Invalid value: []string{\"10.0.0.1\", \"fd00::1\", \"10.0.0.2\"}: may only hold up to 2 values"),
            ("two ipv4 cluster ips", spec(json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "10.0.0.2"]})), "spec.clusterIPs: Invalid value: []string{\"10.0.0.1\", \"10.0.0.2\"}: may specify no more than one IP for each IP family"),
            ("None and an ip", spec(json!({"clusterIP": "None", "clusterIPs": ["None", "10.0.0.1"]})), "spec.clusterIPs: Invalid value: []string{\"None\", \"10.0.0.1\"}: 'None' must be the first and only value"),
            ("ip family", spec(json!({"ipFamilies": ["IPv5"]})), "spec.ipFamilies[0]: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\""),
            ("ip families repeat", spec(json!({"ipFamilies": ["IPv4", "IPv4"]})), "spec.ipFamilies[1]: Duplicate value: \"IPv4\""),
            ("ip family policy", spec(json!({"ipFamilyPolicy": "DualStack"})), "spec.ipFamilyPolicy: Unsupported value: \"DualStack\": supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\""),
            ("ip of another family", spec(json!({"clusterIP": "fd00::5", "ipFamilies": ["IPv4"]})), "spec.clusterIPs[0]: Invalid value: \"fd00::5\": expected an IPv4 value as indicated by `ipFamilies[0]`"),
            ("ipv4 for ipv6", spec(json!({"clusterIP": "10.0.0.5", "ipFamilies": ["IPv6"]})), "spec.clusterIPs[0]: Invalid value: \"10.0.0.5\": expected an IPv6 value as indicated by `ipFamilies[0]`"),
            ("session affinity", spec(json!({"sessionAffinity": "Sticky"})), "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\""),
            ("affinity timeout zero", spec(json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}})), "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"),
            ("affinity timeout too long", spec(json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}})), "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400"),
            ("affinity config without affinity", spec(json!({"sessionAffinity": "None", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}})), "spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None"),
            ("affinity config, affinity defaulted", spec(json!({"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}})), "spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None"),
            ("external ip", spec(json!({"externalIPs": ["1.2.3"]})), "spec.externalIPs[0]: Invalid value: \"1.2.3\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
            ("external ip loopback", spec(json!({"externalIPs": ["127.0.0.1"]})), "spec.externalIPs[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"),
            ("external ip v6 loopback", spec(json!({"externalIPs": ["::1"]})), "spec.externalIPs[0]: Invalid value: \"::1\": may not be in the loopback range"),
            ("external ip link local", spec(json!({"externalIPs": ["192.0.2.1", "169.254.1.1"]})), "spec.externalIPs[1]: Invalid value: \"169.254.1.1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)"),
            ("external ip v6 link local", spec(json!({"externalIPs": ["fe80::1"]})), "spec.externalIPs[0]: Invalid value: \"fe80::1\": may not be in the link-local range"),
            ("external ip unspecified", spec(json!({"externalIPs": ["0.0.0.0"]})), "spec.externalIPs[0]: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0)"),
            ("external ip multicast", spec(json!({"externalIPs": ["224.0.0.5"]})), "spec.externalIPs[0]: Invalid value: \"224.0.0.5\": may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"),
            ("external name missing", spec(json!({"type": "ExternalName"})), "spec.externalName: Required value"),
            ("external name only a dot", spec(json!({"type": "ExternalName", "externalName": "."})), "spec.externalName: Required value"),
            ("external name", spec(json!({"type": "ExternalName", "externalName": "Bad_Name"})), "spec.externalName: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"),
            ("external name with a cluster ip", spec(json!({"type": "ExternalName", "externalName": "bar.com", "clusterIP": "10.0.0.1"})), "spec.clusterIPs: Forbidden: may not be set for ExternalName services"),
            ("external name headless", spec(json!({"type": "ExternalName", "externalName": "bar.com", "clusterIP": "None"})), "spec.clusterIPs: Forbidden: may not be set for ExternalName services"),
            ("external name with families", spec(json!({"type": "ExternalName", "externalName": "bar.com", "ipFamilies": ["IPv4"]})), "spec.ipFamilies: Forbidden: may not be set for ExternalName services"),
            ("external name with a policy", spec(json!({"type": "ExternalName", "externalName": "bar.com", "ipFamilyPolicy": "SingleStack"})), "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services"),
            ("headless load balancer", spec(json!({"type": "LoadBalancer", "clusterIP": "None"})), "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer services"),
            ("headless node port", spec(json!({"type": "NodePort", "clusterIP": "None"})), "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"),
            ("source ranges without a load balancer", spec(json!({"loadBalancerSourceRanges": ["10.0.0.0/8"]})), "spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"),
            ("source range", spec(json!({"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/33"]})), "spec.LoadBalancerSourceRanges[0]: Invalid value: \"10.0.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"),
            ("source range without a prefix", spec(json!({"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0"]})), "spec.LoadBalancerSourceRanges[0]: Invalid value: \"10.0.0.0\": must be a valid CIDR value"),
            ("source ranges annotation without a load balancer", with(&service(), json!({"metadata": {"annotations": {"service.beta.kubernetes.io/load-balancer-source-ranges": "10.0.0.0/8"}}})),
                "metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]: Forbidden: may only be used when `type` is 'LoadBalancer'"),
            ("source ranges annotation", with(&spec(json!({"type": "LoadBalancer"})), json!({"metadata": {"annotations": {"service.beta.kubernetes.io/load-balancer-source-ranges": "10.0.0.0/8,bad"}}})),
                "metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]: Invalid value: \"bad\": must be a valid CIDR value"),
            ("node port allocation without a load balancer", spec(json!({"type": "NodePort", "allocateLoadBalancerNodePorts": true})), "spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'"),
            ("load balancer class without a load balancer", spec(json!({"loadBalancerClass": "example.com/lb"})), "spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'"),
            ("load balancer class", spec(json!({"type": "LoadBalancer", "loadBalancerClass": "bad class!"})), "spec.loadBalancerClass: Invalid value: \"bad class!\": name part must consist of"),
            ("traffic policy on a cluster ip", spec(json!({"externalTrafficPolicy": "Local"})), "spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services"),
            ("traffic policy", spec(json!({"type": "NodePort", "externalTrafficPolicy": "Nearest"})), "spec.externalTrafficPolicy: Unsupported value: \"Nearest\": supported values: \"Cluster\", \"Local\""),
            ("health check port without local traffic", spec(json!({"type": "NodePort", "healthCheckNodePort": 30555})), "spec.healthCheckNodePort: Invalid value: 30555: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"),
            ("health check port, cluster traffic", spec(json!({"type": "LoadBalancer", "externalTrafficPolicy": "Cluster", "healthCheckNodePort": 30555})), "spec.healthCheckNodePort: Invalid value: 30555: may only be set when"),
            ("health check port", spec(json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 70000})), "spec.healthCheckNodePort: Invalid value: 70000: must be between 1 and 65535, inclusive"),
            ("internal traffic policy", spec(json!({"internalTrafficPolicy": "Nearest"})), "spec.internalTrafficPolicy: Unsupported value: \"Nearest\": supported values: \"Cluster\", \"Local\""),
            ("traffic distribution", spec(json!({"trafficDistribution": "Anywhere"})), "spec.trafficDistribution: Unsupported value: \"Anywhere\": supported values: \"PreferClose\""),
            ("selector key", spec(json!({"selector": {"bad key": "x"}})), "spec.selector: Invalid value: \"bad key\": name part must consist of"),
            ("selector value", spec(json!({"selector": {"app": "bad value"}})), "spec.selector: Invalid value: \"bad value\": a valid label must be an empty string or consist of"),
            ("topology annotations disagree", with(&service(), json!({"metadata": {"annotations": {"service.kubernetes.io/topology-mode": "Auto", "service.kubernetes.io/topology-aware-hints": "Disabled"}}})),
                "metadata.annotations[service.kubernetes.io/topology-mode]: Invalid value: \"Auto\": must match annotations[service.kubernetes.io/topology-aware-hints] when both are specified"),
        ]);
    }

    #[test]
    fn service_port_and_target_port_both_fail_when_the_target_is_defaulted() {
        // Upstream defaults targetPort to port before validating.
        let got = messages("", "Service", Op::Create(&spec(json!({"ports": [{"port": 70000}]}))));
        assert_eq!(got, vec![
            "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        ]);
    }

    #[test]
    fn service_update() {
        let old = stored_service();
        let lb = with(&old, json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30555, "loadBalancerClass": "a.example.com/lb",
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}]}}));
        let dual = with(&old, json!({"spec": {"clusterIPs": ["10.43.0.10", "fd00::10"], "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack"}}));
        update_table("", "Service", &old, &[
            ("selector", with(&old, json!({"spec": {"selector": {"app": "web2"}}})), ""),
            ("same address", old.clone(), ""),
            ("cluster ip", with(&old, json!({"spec": {"clusterIP": "10.43.9.9", "clusterIPs": ["10.43.9.9"]}})), "spec.clusterIPs[0]: Invalid value: \"10.43.9.9\": may not change once set"),
            ("to headless", with(&old, json!({"spec": {"clusterIP": "None", "clusterIPs": ["None"]}})), "spec.clusterIPs[0]: Invalid value: \"None\": may not change once set"),
            ("to external name", json!({"metadata": {"name": "web"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}), ""),
            ("upgrade to dual stack", with(&old, json!({"spec": {"clusterIPs": ["10.43.0.10", "fd00::10"], "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack"}})), ""),
        ]);
        update_table("", "Service", &dual, &[
            ("downgrade", with(&dual, json!({"spec": {"clusterIPs": ["10.43.0.10"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}})), ""),
            ("primary ip", with(&dual, json!({"spec": {"clusterIP": "10.43.0.11", "clusterIPs": ["10.43.0.11"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}})), "spec.clusterIPs[0]: Invalid value: \"10.43.0.11\": may not change once set"),
        ]);
        let got = messages("", "Service", Op::Update { new: &with(&dual, json!({"spec": {"clusterIPs": ["10.43.0.10"], "ipFamilies": ["IPv4"]}})), old: &dual });
        assert_eq!(got, vec![
            "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": must be set to 'SingleStack' when releasing the secondary clusterIP",
            "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": must be set to 'SingleStack' when releasing the secondary ipFamily",
        ]);
        update_table("", "Service", &lb, &[
            ("ports", with(&lb, json!({"spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 81, "targetPort": 8080, "nodePort": 30080}]}})), ""),
            ("load balancer class", with(&lb, json!({"spec": {"loadBalancerClass": "b.example.com/lb"}})), "spec.loadBalancerClass: Invalid value: \"b.example.com/lb\": may not change once set"),
            ("load balancer class removed", with(&lb, json!({"spec": {"loadBalancerClass": null}})), "spec.loadBalancerClass: Invalid value: null: may not change once set"),
            ("health check port", with(&lb, json!({"spec": {"healthCheckNodePort": 30556}})), "spec.healthCheckNodePort: Forbidden: field is immutable"),
            ("health check port, traffic made cluster-wide", with(&lb, json!({"spec": {"externalTrafficPolicy": "Cluster", "healthCheckNodePort": null}})), ""),
        ]);
        let got = messages("", "Service", Op::Update { new: &with(&old, json!({"spec": {"ipFamilies": ["IPv6"]}})), old: &old });
        assert_eq!(got, vec![
            "spec.clusterIPs[0]: Invalid value: \"10.43.0.10\": expected an IPv6 value as indicated by `ipFamilies[0]`",
            "spec.ipFamilies[0]: Invalid value: []core.IPFamily{\"IPv6\"}: may not change once set",
        ]);
        // `kubectl patch -p '{"spec":{"clusterIP":"10.43.9.9"}}'`: clusterIPs stay as stored.
        let got = messages("", "Service", Op::Update { new: &with(&old, json!({"spec": {"clusterIP": "10.43.9.9"}})), old: &old });
        assert!(got.contains(&"spec.clusterIPs[0]: Invalid value: \"10.43.9.9\": may not change once set".to_string()), "{got:#?}");
    }

    #[test]
    fn service_status() {
        let lb = with(&stored_service(), json!({"spec": {"type": "LoadBalancer"}}));
        let status = |svc: &Value, ingress: Value| {
            let new = with(svc, json!({"status": {"loadBalancer": {"ingress": ingress}}}));
            messages("", "Service", Op::Status { new: &new, old: svc })
        };
        assert!(status(&lb, json!([{"ip": "192.0.2.1", "ipMode": "VIP"}, {"ip": "192.0.2.2"}, {"hostname": "lb.example.com"}])).is_empty());
        assert_eq!(status(&stored_service(), json!([{"ip": "192.0.2.1"}])), vec!["status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"]);
        assert_eq!(status(&lb, json!([{"ip": "192.0.2"}])), vec!["status.loadBalancer.ingress[0].ip: Invalid value: \"192.0.2\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]);
        assert_eq!(status(&lb, json!([{"hostname": "lb.example.com", "ipMode": "VIP"}])), vec!["status.loadBalancer.ingress[0].ipMode: Forbidden: may not be specified when `ip` is not set"]);
        assert_eq!(status(&lb, json!([{"ip": "192.0.2.1", "ipMode": "Direct"}])), vec!["status.loadBalancer.ingress[0].ipMode: Unsupported value: \"Direct\": supported values: \"Proxy\", \"VIP\""]);
        assert_eq!(status(&lb, json!([{"hostname": "192.0.2.1"}])), vec!["status.loadBalancer.ingress[0].hostname: Invalid value: \"192.0.2.1\": must be a DNS name, not an IP address"]);
        assert_eq!(status(&lb, json!([{"hostname": "LB"}])).len(), 1);
    }

    fn endpoints() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "subsets": [{
            "addresses": [{"ip": "10.42.0.5", "hostname": "web-0", "nodeName": "node-1", "targetRef": {"kind": "Pod", "name": "web-0", "namespace": "default"}}],
            "notReadyAddresses": [{"ip": "fd00::6"}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "metrics", "port": 9090}]}]})
    }

    fn subset(change: Value) -> Value {
        let mut subset = endpoints()["subsets"][0].clone();
        for (k, v) in change.as_object().expect("an object") {
            subset[k] = v.clone();
        }
        with(&endpoints(), json!({"subsets": [subset]}))
    }

    #[test]
    fn endpoints_valid() {
        table("", "Endpoints", &[
            ("full", endpoints(), ""),
            ("no subsets", json!({"metadata": {"name": "web"}}), ""),
            ("headless, no ports", subset(json!({"ports": null})), ""),
            ("only not ready", subset(json!({"addresses": null})), ""),
            ("one unnamed port", subset(json!({"ports": [{"port": 53, "protocol": "UDP"}]})), ""),
        ]);
    }

    #[test]
    fn endpoints_invalid() {
        table("", "Endpoints", &[
            ("no addresses", subset(json!({"addresses": null, "notReadyAddresses": []})), "subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"),
            ("loopback", subset(json!({"addresses": [{"ip": "127.0.0.1"}]})), "subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"),
            ("link local", subset(json!({"notReadyAddresses": [{"ip": "169.254.169.254"}]})), "subsets[0].notReadyAddresses[0].ip: Invalid value: \"169.254.169.254\": may not be in the link-local range"),
            ("unspecified", subset(json!({"addresses": [{"ip": "::"}]})), "subsets[0].addresses[0].ip: Invalid value: \"::\": may not be unspecified (::)"),
            ("hostname", subset(json!({"addresses": [{"ip": "10.42.0.5", "hostname": "Web_0"}]})), "subsets[0].addresses[0].hostname: Invalid value: \"Web_0\": a lowercase RFC 1123 label"),
            ("node name", subset(json!({"addresses": [{"ip": "10.42.0.5", "nodeName": "Node_1"}]})), "subsets[0].addresses[0].nodeName: Invalid value: \"Node_1\": a lowercase RFC 1123 subdomain"),
            ("port", subset(json!({"ports": [{"port": 0}]})), "subsets[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
            ("port too large", subset(json!({"ports": [{"port": 65536}]})), "subsets[0].ports[0].port: Invalid value: 65536: must be between 1 and 65535, inclusive"),
            ("unnamed among two", subset(json!({"ports": [{"name": "a", "port": 80}, {"port": 81}]})), "subsets[0].ports[1].name: Required value"),
            ("port name", subset(json!({"ports": [{"name": "Http", "port": 80}]})), "subsets[0].ports[0].name: Invalid value: \"Http\": a lowercase RFC 1123 label"),
            ("protocol", subset(json!({"ports": [{"port": 80, "protocol": "ICMP"}]})), "subsets[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\""),
            ("app protocol", subset(json!({"ports": [{"port": 80, "appProtocol": "a/b/c"}]})), "subsets[0].ports[0].appProtocol: Invalid value: \"a/b/c\""),
        ]);
        // An unparseable address fails both of upstream's address checks.
        let got = messages("", "Endpoints", Op::Create(&subset(json!({"addresses": [{"ip": "10.42.0"}]}))));
        assert_eq!(got, vec![
            "subsets[0].addresses[0].ip: Invalid value: \"10.42.0\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            "subsets[0].addresses[0].ip: Invalid value: \"10.42.0\": must be a valid IP address",
        ]);
    }

    #[test]
    fn namespace() {
        let ns = json!({"metadata": {"name": "team-a"}, "spec": {"finalizers": ["kubernetes"]}});
        table("", "Namespace", &[
            ("valid", ns.clone(), ""),
            ("no spec", json!({"metadata": {"name": "team-a"}}), ""),
            ("qualified finalizer", with(&ns, json!({"spec": {"finalizers": ["kubernetes", "example.com/cleanup"]}})), ""),
            ("finalizer", with(&ns, json!({"spec": {"finalizers": ["cleanup"]}})), "spec.finalizers: Invalid value: \"cleanup\": name is neither a standard finalizer name nor is it fully qualified"),
            ("finalizer name part", with(&ns, json!({"spec": {"finalizers": ["example.com/"]}})), "spec.finalizers: Invalid value: \"example.com/\": name part must be non-empty"),
            ("finalizer prefix", with(&ns, json!({"spec": {"finalizers": ["Example.com/x"]}})), "spec.finalizers: Invalid value: \"Example.com/x\": prefix part a lowercase RFC 1123 subdomain"),
        ]);
        let status = |new: &Value| messages("", "Namespace", Op::Status { new, old: &ns });
        assert!(status(&with(&ns, json!({"status": {"phase": "Active"}}))).is_empty());
        assert!(status(&ns).is_empty(), "the phase defaults to Active");
        assert_eq!(status(&with(&ns, json!({"status": {"phase": "Terminating"}}))), vec!["status.Phase: Invalid value: \"Terminating\": may only be 'Active' if `deletionTimestamp` is empty"]);
        let deleted = with(&ns, json!({"metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"}}));
        assert!(status(&with(&deleted, json!({"status": {"phase": "Terminating"}}))).is_empty());
        assert_eq!(status(&with(&deleted, json!({"status": {"phase": "Active"}}))), vec!["status.Phase: Invalid value: \"Active\": may only be 'Terminating' if `deletionTimestamp` is not empty"]);
    }

    fn node() -> Value {
        json!({"metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}}, "spec": {
            "podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"], "providerID": "skiff://node-1",
            "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
            "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"},
                "allocatable": {"cpu": "3800m", "memory": "7Gi", "pods": "110"},
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "node-1"}]}})
    }

    fn node_spec(change: Value) -> Value {
        with(&node(), json!({"spec": change}))
    }

    #[test]
    fn node_valid() {
        table("", "Node", &[
            ("full", node(), ""),
            ("bare", json!({"metadata": {"name": "node-1"}}), ""),
            ("only podCIDR", node_spec(json!({"podCIDRs": null})), ""),
            ("dual stack", node_spec(json!({"podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"]})), ""),
            ("same key, two effects", node_spec(json!({"taints": [{"key": "k", "effect": "NoSchedule"}, {"key": "k", "value": "v", "effect": "NoExecute", "timeAdded": "2025-01-01T00:00:00Z"}]})), ""),
            ("unschedulable", node_spec(json!({"unschedulable": true})), ""),
        ]);
    }

    #[test]
    fn node_invalid() {
        let status = |change: Value| with(&node(), json!({"status": change}));
        table("", "Node", &[
            ("pod cidr", node_spec(json!({"podCIDRs": ["10.244.1.0/33"]})), "spec.podCIDRs[0]: Invalid value: \"10.244.1.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"),
            ("singular pod cidr", node_spec(json!({"podCIDR": "10.244.1.0", "podCIDRs": null})), "spec.podCIDRs[0]: Invalid value: \"10.244.1.0\": must be a valid CIDR value"),
            ("two ipv4 pod cidrs", node_spec(json!({"podCIDRs": ["10.244.1.0/24", "10.244.2.0/24"]})), "spec.podCIDRs: Invalid value: []string{\"10.244.1.0/24\", \"10.244.2.0/24\"}: may specify no more than one CIDR for each IP family"),
            ("three pod cidrs", node_spec(json!({"podCIDRs": ["10.244.1.0/24", "fd00::/64", "fd01::/64"]})), "spec.podCIDRs: Invalid value: []string{"),
            ("taint effect", node_spec(json!({"taints": [{"key": "k", "effect": "Never"}]})), "metadata.taints[0].effect: Unsupported value: \"Never\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""),
            ("taint without an effect", node_spec(json!({"taints": [{"key": "k"}]})), "metadata.taints[0].effect: Required value"),
            ("taint key", node_spec(json!({"taints": [{"key": "bad key", "effect": "NoSchedule"}]})), "metadata.taints[0].key: Invalid value: \"bad key\": name part must consist of"),
            ("taint value", node_spec(json!({"taints": [{"key": "k", "value": "bad value", "effect": "NoSchedule"}]})), "metadata.taints[0].value: Invalid value: \"bad value\": a valid label must be"),
            ("taints repeat", node_spec(json!({"taints": [{"key": "k", "effect": "NoSchedule"}, {"key": "k", "value": "v", "effect": "NoSchedule"}]})),
                "metadata.taints[1]: Duplicate value: core.Taint{Key:\"k\", Value:\"v\", Effect:\"NoSchedule\", TimeAdded:(*v1.Time)(nil)}: taints must be unique by key and effect pair"),
            ("negative capacity", status(json!({"capacity": {"cpu": "-1"}})), "status.capacity.cpu: Invalid value: \"-1\": must be greater than or equal to 0"),
            ("fractional pods", status(json!({"capacity": {"pods": "1.5"}})), "status.capacity.pods: Invalid value: \"1.5\": must be an integer"),
            ("allocatable quantity", status(json!({"allocatable": {"memory": "lots"}})), "status.allocatable.memory: Invalid value: \"lots\": quantities must match the regular expression"),
        ]);
    }

    #[test]
    fn node_update() {
        let old = node();
        let unassigned = node_spec(json!({"podCIDR": null, "podCIDRs": null, "providerID": null}));
        update_table("", "Node", &unassigned, &[
            ("pod cidr assigned", node(), ""),
        ]);
        update_table("", "Node", &old, &[
            ("labels", with(&old, json!({"metadata": {"labels": {"role": "worker"}}})), ""),
            ("taints", node_spec(json!({"taints": [{"key": "k", "effect": "NoExecute"}], "unschedulable": true})), ""),
            ("pod cidr", node_spec(json!({"podCIDR": "10.244.2.0/24", "podCIDRs": ["10.244.2.0/24"]})), "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"),
            ("pod cidr added", node_spec(json!({"podCIDRs": ["10.244.1.0/24", "fd00::/64"]})), "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"),
            ("provider id", node_spec(json!({"providerID": "aws://i-123"})), "spec.providerID: Forbidden: node updates may not change providerID except from \"\" to valid"),
            ("external id", node_spec(json!({"externalID": "i-123"})), "spec.externalID: Forbidden: may not be updated"),
            ("config source uid", node_spec(json!({"configSource": {"configMap": {"namespace": "kube-system", "name": "kubelet", "kubeletConfigKey": "kubelet", "uid": "abc"}}})),
                "spec.configSource.configMap.uid: Forbidden: uid must not be set in spec"),
            ("config source key", node_spec(json!({"configSource": {"configMap": {"namespace": "kube-system", "name": "kubelet", "kubeletConfigKey": "a b"}}})),
                "spec.configSource.configMap.kubeletConfigKey: Invalid value: \"a b\": a valid config key"),
            ("config source without a namespace", node_spec(json!({"configSource": {"configMap": {"namespace": "", "name": "kubelet", "kubeletConfigKey": "kubelet"}}})),
                "spec.configSource.configMap.namespace: Required value: namespace must be set"),
            ("empty config source", node_spec(json!({"configSource": {}})), "spec.configSource: Invalid value: core.NodeConfigSource{ConfigMap:(*core.ConfigMapNodeConfigSource)(nil)}: exactly one reference subfield must be non-nil"),
            ("addresses repeat", with(&old, json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "InternalIP", "address": "10.0.0.1"}]}})),
                "status.addresses[1]: Duplicate value: core.NodeAddress{Type:\"InternalIP\", Address:\"10.0.0.1\"}"),
        ]);
        let status = |new: &Value| messages("", "Node", Op::Status { new, old: &old });
        assert!(status(&with(&old, json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "capacity": {"cpu": "8"}}}))).is_empty());
        assert_eq!(status(&with(&old, json!({"status": {"capacity": {"memory": "-1Gi"}}}))), vec!["status.capacity.memory: Invalid value: \"-1Gi\": must be greater than or equal to 0"]);
        assert_eq!(status(&with(&old, json!({"status": {"config": {"active": {"configMap": {"namespace": "kube-system", "name": "kubelet", "kubeletConfigKey": "kubelet", "resourceVersion": "1"}}}}}))),
            vec!["status.config.active.configMap.uid: Required value: uid must be set in status"]);
    }

    fn pv() -> Value {
        json!({"metadata": {"name": "pv-1"}, "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "manual", "hostPath": {"path": "/mnt/data"}}})
    }

    fn pv_spec(change: Value) -> Value {
        with(&pv(), json!({"spec": change}))
    }

    fn local_pv() -> Value {
        pv_spec(json!({"hostPath": null, "local": {"path": "/mnt/disks/ssd1"}, "nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]}]}}}))
    }

    fn affinity(term: Value) -> Value {
        pv_spec(json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [term]}}}))
    }

    #[test]
    fn persistent_volume_valid() {
        table("", "PersistentVolume", &[
            ("host path", pv(), ""),
            ("local", local_pv(), ""),
            ("nfs", pv_spec(json!({"hostPath": null, "nfs": {"server": "nfs.example.com", "path": "/exports"}, "accessModes": ["ReadWriteMany", "ReadOnlyMany"]})), ""),
            ("csi", pv_spec(json!({"hostPath": null, "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-123", "nodePublishSecretRef": {"name": "creds", "namespace": "kube-system"}}})), ""),
            ("block", pv_spec(json!({"volumeMode": "Block", "persistentVolumeReclaimPolicy": "Delete"})), ""),
            ("host path type", pv_spec(json!({"hostPath": {"path": "/mnt/data", "type": "DirectoryOrCreate"}})), ""),
            ("iscsi", pv_spec(json!({"hostPath": null, "iscsi": {"targetPortal": "10.0.0.1:3260", "iqn": "iqn.2001-04.com.example:storage.disk1", "lun": 0}})), ""),
            ("bound", pv_spec(json!({"claimRef": {"namespace": "default", "name": "data"}})), ""),
            ("field selector", affinity(json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]})), ""),
            ("rwop", pv_spec(json!({"accessModes": ["ReadWriteOncePod"]})), ""),
        ]);
    }

    #[test]
    fn persistent_volume_invalid() {
        table("", "PersistentVolume", &[
            ("no access modes", pv_spec(json!({"accessModes": null})), "spec.accessModes: Required value"),
            ("access mode", pv_spec(json!({"accessModes": ["ReadWriteSometimes"]})), "spec.accessModes: Unsupported value: \"ReadWriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\""),
            ("rwop with others", pv_spec(json!({"accessModes": ["ReadWriteOncePod", "ReadWriteOnce"]})), "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"),
            ("capacity beyond storage", pv_spec(json!({"capacity": {"storage": "10Gi", "cpu": "1"}})), "spec.capacity: Unsupported value: core.ResourceList{"),
            ("zero capacity", pv_spec(json!({"capacity": {"storage": "0"}})), "spec.capacity[storage]: Invalid value: \"0\": must be greater than zero"),
            ("capacity quantity", pv_spec(json!({"capacity": {"storage": "ten"}})), "spec.capacity[storage]: Invalid value: \"ten\": quantities must match the regular expression"),
            ("reclaim policy", pv_spec(json!({"persistentVolumeReclaimPolicy": "Keep"})), "spec.persistentVolumeReclaimPolicy: Unsupported value: \"Keep\": supported values: \"Delete\", \"Recycle\", \"Retain\""),
            ("no source", pv_spec(json!({"hostPath": null})), "spec: Required value: must specify a volume type"),
            ("two sources", pv_spec(json!({"nfs": {"server": "nfs.example.com", "path": "/exports"}})), "spec.nfs: Forbidden: may not specify more than 1 volume type"),
            ("host path", pv_spec(json!({"hostPath": {"path": ""}})), "spec.hostPath.path: Required value"),
            ("host path backsteps", pv_spec(json!({"hostPath": {"path": "/mnt/../etc"}})), "spec.hostPath.path: Invalid value: \"/mnt/../etc\": must not contain '..'"),
            ("host path type", pv_spec(json!({"hostPath": {"path": "/mnt", "type": "Dir"}})), "spec.hostPath.type: Unsupported value: \"Dir\": supported values: \"\", \"BlockDevice\", \"CharDevice\", \"Directory\", \"DirectoryOrCreate\", \"File\", \"FileOrCreate\", \"Socket\""),
            ("recycling root", pv_spec(json!({"hostPath": {"path": "/"}, "persistentVolumeReclaimPolicy": "Recycle"})), "spec.persistentVolumeReclaimPolicy: Forbidden: may not be 'recycle' for a hostPath mount of '/'"),
            ("local without affinity", with(&local_pv(), json!({"spec": {"nodeAffinity": null}})), "spec.nodeAffinity: Required value: Local volume requires node affinity"),
            ("local path", with(&local_pv(), json!({"spec": {"local": {"path": ""}}})), "spec.local.path: Required value"),
            ("affinity without required", pv_spec(json!({"nodeAffinity": {}})), "spec.nodeAffinity.required: Required value: must specify required node constraints"),
            ("no terms", pv_spec(json!({"nodeAffinity": {"required": {"nodeSelectorTerms": []}}})), "spec.nodeAffinity.required.nodeSelectorTerms: Required value: must have at least one node selector term"),
            ("operator", affinity(json!({"matchExpressions": [{"key": "zone", "operator": "Has", "values": ["a"]}]})), "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].operator: Invalid value: \"Has\": not a valid selector operator"),
            ("in without values", affinity(json!({"matchExpressions": [{"key": "zone", "operator": "In"}]})), "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"),
            ("exists with values", affinity(json!({"matchExpressions": [{"key": "zone", "operator": "Exists", "values": ["a"]}]})), "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
            ("gt with two values", affinity(json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["1", "2"]}]})), "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'"),
            ("field selector key", affinity(json!({"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["x"]}]})), "spec.nodeAffinity.required.nodeSelectorTerms[0].matchFields[0].key: Invalid value: \"metadata.uid\": not a valid field selector key"),
            ("nfs path", pv_spec(json!({"hostPath": null, "nfs": {"server": "nfs.example.com", "path": "exports"}})), "spec.nfs.path: Invalid value: \"exports\": must be an absolute path"),
            ("nfs server", pv_spec(json!({"hostPath": null, "nfs": {"server": "", "path": "/exports"}})), "spec.nfs.server: Required value"),
            ("csi handle", pv_spec(json!({"hostPath": null, "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": ""}})), "spec.csi.volumeHandle: Required value"),
            ("csi driver", pv_spec(json!({"hostPath": null, "csi": {"driver": "Bad_Driver", "volumeHandle": "v"}})), "spec.csi.driver: Invalid value: \"Bad_Driver\": a lowercase RFC 1123 subdomain"),
            ("csi secret", pv_spec(json!({"hostPath": null, "csi": {"driver": "d.example.com", "volumeHandle": "v", "nodePublishSecretRef": {"name": "creds"}}})), "spec.csi.nodePublishSecretRef.namespace: Required value"),
            ("iscsi name", pv_spec(json!({"hostPath": null, "iscsi": {"targetPortal": "10.0.0.1:3260", "iqn": "foo", "lun": 0}})), "spec.iscsi.iqn: Invalid value: \"foo\": must be valid format starting with iqn, eui, or naa"),
            ("iscsi iqn", pv_spec(json!({"hostPath": null, "iscsi": {"targetPortal": "10.0.0.1:3260", "iqn": "iqn.2001-04.com.example", "lun": 0}})), "spec.iscsi.iqn: Invalid value: \"iqn.2001-04.com.example\": must be valid format"),
            ("iscsi lun", pv_spec(json!({"hostPath": null, "iscsi": {"targetPortal": "10.0.0.1:3260", "iqn": "eui.02004567A425678D", "lun": 256}})), "spec.iscsi.lun: Invalid value: 256: must be between 0 and 255, inclusive"),
            ("gce disk", pv_spec(json!({"hostPath": null, "gcePersistentDisk": {"pdName": ""}})), "spec.persistentDisk.pdName: Required value"),
            ("storage class", pv_spec(json!({"storageClassName": "Manual"})), "spec.storageClassName: Invalid value: \"Manual\": a lowercase RFC 1123 subdomain"),
            ("volume mode", pv_spec(json!({"volumeMode": "Raw"})), "spec.volumeMode: Unsupported value: \"Raw\": supported values: \"Block\", \"Filesystem\""),
        ]);
        let got = messages("", "PersistentVolume", Op::Create(&pv_spec(json!({"capacity": null}))));
        assert_eq!(got, vec!["spec.capacity: Required value", "spec.capacity: Unsupported value: core.ResourceList(nil): supported values: \"storage\""]);
        let got = messages("", "PersistentVolume", Op::Create(&pv_spec(json!({"capacity": {"storage": "-1Gi"}}))));
        assert_eq!(got, vec!["spec.capacity[storage]: Invalid value: -1073741824: must be a valid resource quantity", "spec.capacity[storage]: Invalid value: \"-1Gi\": must be greater than zero"]);
    }

    #[test]
    fn persistent_volume_update() {
        let old = local_pv();
        let term = |key: &str| json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": "In", "values": ["node-1"]}]}]}}}});
        let beta = with(&old, term("beta.kubernetes.io/os"));
        update_table("", "PersistentVolume", &old, &[
            ("capacity and policy", with(&old, json!({"spec": {"capacity": {"storage": "20Gi"}, "persistentVolumeReclaimPolicy": "Delete"}})), ""),
            ("claim ref", with(&old, json!({"spec": {"claimRef": {"namespace": "default", "name": "data", "uid": "123"}}})), ""),
            ("source", with(&old, json!({"spec": {"local": {"path": "/mnt/disks/ssd2"}}})), "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"),
            ("volume mode", with(&old, json!({"spec": {"volumeMode": "Block"}})), "volumeMode: Invalid value: \"Block\": field is immutable"),
            ("node affinity", with(&old, term("kubernetes.io/arch")), "nodeAffinity: Invalid value: {\"required\""),
            ("attributes class", with(&old, json!({"spec": {"volumeAttributesClassName": "gold"}})), "spec.volumeAttributesClassName: Forbidden: update is forbidden when the VolumeAttributesClass feature gate is disabled"),
        ]);
        update_table("", "PersistentVolume", &beta, &[("beta label to GA", with(&beta, term("kubernetes.io/os")), "")]);
        let csi = pv_spec(json!({"hostPath": null, "csi": {"driver": "d.example.com", "volumeHandle": "v"}}));
        update_table("", "PersistentVolume", &csi, &[
            ("expansion secret added", with(&csi, json!({"spec": {"csi": {"controllerExpandSecretRef": {"name": "s", "namespace": "kube-system"}}}})), ""),
        ]);
    }

    fn pvc() -> Value {
        json!({"metadata": {"name": "data", "namespace": "default"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    }

    fn pvc_spec(change: Value) -> Value {
        with(&pvc(), json!({"spec": change}))
    }

    #[test]
    fn persistent_volume_claim_valid() {
        table("", "PersistentVolumeClaim", &[
            ("minimal", pvc(), ""),
            ("class and mode", pvc_spec(json!({"storageClassName": "fast-ssd", "volumeMode": "Block", "volumeName": "pv-1"})), ""),
            ("empty class", pvc_spec(json!({"storageClassName": ""})), ""),
            ("selector", pvc_spec(json!({"selector": {"matchLabels": {"release": "stable"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}})), ""),
            ("snapshot source", pvc_spec(json!({"dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"}})), ""),
            ("claim source", pvc_spec(json!({"dataSource": {"kind": "PersistentVolumeClaim", "name": "other"}})), ""),
            ("source ref", pvc_spec(json!({"dataSourceRef": {"apiGroup": "example.com", "kind": "Populator", "name": "p"}})), ""),
            ("cross-namespace ref", pvc_spec(json!({"dataSourceRef": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap", "namespace": "other"}})), ""),
            ("both sources agree", pvc_spec(json!({"dataSource": {"kind": "PersistentVolumeClaim", "name": "other"}, "dataSourceRef": {"kind": "PersistentVolumeClaim", "name": "other"}})), ""),
            ("limits", pvc_spec(json!({"resources": {"requests": {"storage": "1Gi"}, "limits": {"storage": "2Gi"}}})), ""),
        ]);
    }

    #[test]
    fn persistent_volume_claim_invalid() {
        table("", "PersistentVolumeClaim", &[
            ("no access modes", pvc_spec(json!({"accessModes": null})), "spec.accessModes: Required value: at least 1 access mode is required"),
            ("access mode", pvc_spec(json!({"accessModes": ["ReadWriteAll"]})), "spec.accessModes: Unsupported value: \"ReadWriteAll\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\""),
            ("rwop with others", pvc_spec(json!({"accessModes": ["ReadWriteOnce", "ReadWriteOncePod"]})), "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"),
            ("no storage", pvc_spec(json!({"resources": null})), "spec.resources[storage]: Required value"),
            ("no storage request", pvc_spec(json!({"resources": {"requests": {"storage": null, "cpu": "1"}}})), "spec.resources[storage]: Required value"),
            ("zero storage", pvc_spec(json!({"resources": {"requests": {"storage": "0"}}})), "spec.resources[storage]: Invalid value: \"0\": must be greater than zero"),
            ("negative storage", pvc_spec(json!({"resources": {"requests": {"storage": "-1Gi"}}})), "spec.resources[storage]: Invalid value: \"-1Gi\": must be greater than zero"),
            ("storage quantity", pvc_spec(json!({"resources": {"requests": {"storage": "lots"}}})), "spec.resources[storage]: Invalid value: \"lots\": quantities must match the regular expression"),
            ("storage class", pvc_spec(json!({"storageClassName": "Fast_SSD"})), "spec.storageClassName: Invalid value: \"Fast_SSD\": a lowercase RFC 1123 subdomain"),
            ("volume mode", pvc_spec(json!({"volumeMode": "Raw"})), "spec.volumeMode: Unsupported value: \"Raw\": supported values: \"Block\", \"Filesystem\""),
            ("selector operator", pvc_spec(json!({"selector": {"matchExpressions": [{"key": "env", "operator": "Has"}]}})), "spec.selector.matchExpressions[0].operator: Invalid value: \"Has\": not a valid selector operator"),
            ("selector label", pvc_spec(json!({"selector": {"matchLabels": {"env": "a b"}}})), "spec.selector.matchLabels: Invalid value: \"a b\""),
            ("core source of another kind", pvc_spec(json!({"dataSource": {"kind": "Snapshot", "name": "snap"}})), "spec.dataSource: Invalid value: \"Snapshot\": must be 'PersistentVolumeClaim' when referencing the default apiGroup"),
            ("source without a name", pvc_spec(json!({"dataSource": {"kind": "PersistentVolumeClaim", "name": ""}})), "spec.dataSource.name: Required value"),
            ("source api group", pvc_spec(json!({"dataSource": {"apiGroup": "Snapshot.Storage", "kind": "VolumeSnapshot", "name": "snap"}})), "spec.dataSource.apiGroup: Invalid value: \"Snapshot.Storage\": a lowercase RFC 1123 subdomain"),
            ("ref without a kind", pvc_spec(json!({"dataSourceRef": {"apiGroup": "example.com", "kind": "", "name": "p"}})), "spec.dataSourceRef.kind: Required value"),
            ("ref namespace", pvc_spec(json!({"dataSourceRef": {"apiGroup": "example.com", "kind": "P", "name": "p", "namespace": "Other_NS"}})), "spec.dataSourceRef.namespace: Invalid value: \"Other_NS\": a lowercase RFC 1123 label"),
            ("sources disagree", pvc_spec(json!({"dataSource": {"kind": "PersistentVolumeClaim", "name": "a"}, "dataSourceRef": {"kind": "PersistentVolumeClaim", "name": "b"}})), "spec: Invalid value: spec.dataSource: must match dataSourceRef"),
            ("source with a cross-namespace ref", pvc_spec(json!({"dataSource": {"kind": "PersistentVolumeClaim", "name": "a"}, "dataSourceRef": {"kind": "PersistentVolumeClaim", "name": "a", "namespace": "other"}})),
                "spec: Invalid value: spec.dataSource: may not be specified when dataSourceRef.namespace is specified"),
        ]);
    }

    #[test]
    fn persistent_volume_claim_update() {
        let unbound = pvc_spec(json!({"storageClassName": "standard"}));
        let bound = with(&unbound, json!({"spec": {"volumeName": "pv-1", "resources": {"requests": {"storage": "2Gi"}}}, "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}}));
        let storage = |pvc: &Value, size: &str| with(pvc, json!({"spec": {"resources": {"requests": {"storage": size}}}}));
        update_table("", "PersistentVolumeClaim", &bound, &[
            ("labels", with(&bound, json!({"metadata": {"labels": {"a": "b"}}})), ""),
            ("grow", storage(&bound, "5Gi"), ""),
            ("shrink above capacity", storage(&bound, "1536Mi"), ""),
            ("shrink to capacity", storage(&bound, "1Gi"), "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"),
            ("access modes", with(&bound, json!({"spec": {"accessModes": ["ReadWriteMany"]}})), "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"),
            ("storage class", with(&bound, json!({"spec": {"storageClassName": "fast"}})), "spec: Forbidden: spec is immutable after creation except resources.requests"),
            ("volume name", with(&bound, json!({"spec": {"volumeName": "pv-2"}})), "spec: Forbidden: spec is immutable after creation"),
            ("attributes class", with(&bound, json!({"spec": {"volumeAttributesClassName": "gold"}})), "spec.volumeAttributesClassName: Forbidden: update is forbidden when the VolumeAttributesClass feature gate is disabled"),
        ]);
        update_table("", "PersistentVolumeClaim", &unbound, &[
            ("bound to a volume", with(&unbound, json!({"spec": {"volumeName": "pv-1"}})), ""),
            ("unbound grows", storage(&unbound, "2Gi"), "spec: Forbidden: spec is immutable after creation"),
        ]);
        update_table("", "PersistentVolumeClaim", &pvc(), &[
            ("storage class set", pvc_spec(json!({"storageClassName": "standard"})), ""),
        ]);
        let annotated = with(&pvc(), json!({"metadata": {"annotations": {"volume.beta.kubernetes.io/storage-class": "a"}}}));
        update_table("", "PersistentVolumeClaim", &annotated, &[
            ("class from its annotation", with(&annotated, json!({"spec": {"storageClassName": "a"}})), ""),
            ("annotation", with(&annotated, json!({"metadata": {"annotations": {"volume.beta.kubernetes.io/storage-class": "b"}}})), "metadata.annotations.volume.beta.kubernetes.io/storage-class: Invalid value: \"b\": field is immutable"),
        ]);
        let got = messages("", "PersistentVolumeClaim", Op::Update { new: &pvc_spec(json!({"volumeMode": "Block"})), old: &pvc() });
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(got[1], "volumeMode: Invalid value: \"Block\": field is immutable");
    }

    #[test]
    fn persistent_volume_claim_status() {
        let old = pvc();
        let status = |new: &Value| messages("", "PersistentVolumeClaim", Op::Status { new, old: &old });
        let bound = with(&old, json!({"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}}));
        assert!(status(&bound).is_empty());
        assert!(status(&with(&bound, json!({"status": {"allocatedResources": {"storage": "2Gi"}, "allocatedResourceStatuses": {"storage": "ControllerResizeInProgress"}}}))).is_empty());
        assert_eq!(status(&with(&bound, json!({"spec": {"accessModes": null}}))), vec!["Spec.accessModes: Required value"]);
        assert_eq!(status(&with(&bound, json!({"status": {"capacity": {"storage": "-1Gi"}}}))), vec!["status.capacity[storage]: Invalid value: -1073741824: must be a valid resource quantity"]);
        assert_eq!(status(&with(&bound, json!({"status": {"allocatedResourceStatuses": {"storage": "Resizing"}}}))),
            vec!["status.allocatedResourceStatus: Unsupported value: \"storage\": supported values: \"ControllerResizeInProgress\", \"ControllerResizeInfeasible\", \"NodeResizeInProgress\", \"NodeResizeInfeasible\", \"NodeResizePending\""]);
        assert_eq!(status(&with(&bound, json!({"status": {"allocatedResources": {"cpu": "1"}}}))), vec!["status.allocatedResources: Unsupported value: \"cpu\": supported values: \"storage\""]);
    }

    /// `kubectl create quota my-quota --hard=cpu=1,memory=1G,pods=2,services=3,replicationcontrollers=2,resourcequotas=1,secrets=5,persistentvolumeclaims=10`
    fn quota() -> Value {
        json!({"kind": "ResourceQuota", "apiVersion": "v1", "metadata": {"name": "my-quota", "creationTimestamp": null}, "spec": {"hard": {
            "cpu": "1", "memory": "1G", "pods": "2", "services": "3", "replicationcontrollers": "2", "resourcequotas": "1", "secrets": "5", "persistentvolumeclaims": "10"}},
            "status": {}})
    }

    fn small_quota(spec: Value) -> Value {
        json!({"metadata": {"name": "q"}, "spec": with(&json!({"hard": {"pods": "10"}}), spec)})
    }

    fn scope_selector(scope: &str, operator: &str, values: Value) -> Value {
        small_quota(json!({"scopeSelector": {"matchExpressions": [{"scopeName": scope, "operator": operator, "values": values}]}}))
    }

    #[test]
    fn resource_quota_valid() {
        table("", "ResourceQuota", &[
            ("kubectl create quota", quota(), ""),
            // kubectl create quota best-effort --hard=pods=100 --scopes=BestEffort
            ("best effort", json!({"metadata": {"name": "best-effort"}, "spec": {"hard": {"pods": "100"}, "scopes": ["BestEffort"]}}), ""),
            ("object counts", small_quota(json!({"hard": {"count/deployments.apps": "5", "requests.nvidia.com/gpu": "4", "requests.storage": "100Gi", "services.loadbalancers": "0", "hugepages-2Mi": "1Gi"}})), ""),
            ("priority class", scope_selector("PriorityClass", "In", json!(["high"])), ""),
            ("not terminating compute", small_quota(json!({"hard": {"requests.cpu": "2", "limits.memory": "4Gi"}, "scopes": ["NotTerminating", "NotBestEffort"]})), ""),
            ("cross namespace affinity", scope_selector("CrossNamespacePodAffinity", "Exists", Value::Null), ""),
        ]);
    }

    #[test]
    fn resource_quota_invalid() {
        let hard = |name: &str, value: &str| small_quota(json!({"hard": {name: value}}));
        table("", "ResourceQuota", &[
            ("negative pods", hard("pods", "-1"), "spec.hard[pods]: Invalid value: \"-1\": must be greater than or equal to 0"),
            ("negative cpu", with(&quota(), json!({"spec": {"hard": {"cpu": "-500m"}}})), "spec.hard[cpu]: Invalid value: \"-500m\": must be greater than or equal to 0"),
            ("fractional pods", hard("pods", "1.5"), "spec.hard[pods]: Invalid value: \"1.5\": must be an integer"),
            ("fractional object count", hard("count/deployments.apps", "500m"), "spec.hard[count/deployments.apps]: Invalid value: \"500m\": must be an integer"),
            ("quantity", hard("memory", "1GB"), "spec.hard[memory]: Invalid value: \"1GB\": quantities must match the regular expression"),
            ("resource name", hard("example.com/bad name", "1"), "spec.hard[example.com/bad name]: Invalid value: \"example.com/bad name\": name part must consist of"),
            ("not for quota", hard("storage", "1Gi"), "spec.hard[storage]: Invalid value: \"storage\": must be a standard resource for quota"),
            ("scope", small_quota(json!({"scopes": ["Forever"]})), "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"Forever\"}: unsupported scope"),
            ("scope for a resource", small_quota(json!({"hard": {"pods": "10", "cpu": "1"}, "scopes": ["BestEffort"]})), "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"BestEffort\"}: unsupported scope applied to resource"),
            ("scope for services", small_quota(json!({"hard": {"services": "1"}, "scopes": ["Terminating"]})), "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"Terminating\"}: unsupported scope applied to resource"),
            ("conflicting scopes", small_quota(json!({"scopes": ["Terminating", "NotTerminating"]})), "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"Terminating\", \"NotTerminating\"}: conflicting scopes"),
            ("conflicting selector scopes", small_quota(json!({"scopeSelector": {"matchExpressions": [{"scopeName": "BestEffort", "operator": "Exists"}, {"scopeName": "NotBestEffort", "operator": "Exists"}]}})),
                "spec.scopeSelector.matchExpressions: Invalid value: []core.ResourceQuotaScope(nil): conflicting scopes"),
            ("selector operator for best effort", scope_selector("BestEffort", "In", json!(["x"])), "spec.scopeSelector.matchExpressions.operator: Invalid value: \"In\": must be 'Exists' when scope is any of ResourceQuotaScopeTerminating"),
            ("selector without values", scope_selector("PriorityClass", "In", Value::Null), "spec.scopeSelector.matchExpressions.values: Required value: must be at least one value when `operator` is 'In' or 'NotIn' for scope selector"),
            ("selector with values", scope_selector("PriorityClass", "Exists", json!(["x"])), "spec.scopeSelector.matchExpressions.values: Invalid value: []string{\"x\"}: must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector"),
            ("selector operator", scope_selector("PriorityClass", "Has", json!(["x"])), "spec.scopeSelector.matchExpressions.operator: Invalid value: \"Has\": not a valid selector operator"),
            ("selector scope", scope_selector("Forever", "Exists", Value::Null), "spec.scopeSelector.matchExpressions.scopeName: Invalid value: \"Forever\": unsupported scope"),
            ("selector scope for a resource", with(&scope_selector("BestEffort", "Exists", Value::Null), json!({"spec": {"hard": {"memory": "1Gi"}}})),
                "spec.scopeSelector.matchExpressions: Invalid value: {\"matchExpressions\""),
        ]);
        // A bare name that is no resource at all fails both of upstream's checks.
        let got = messages("", "ResourceQuota", Op::Create(&hard("widgets", "1")));
        assert_eq!(got, vec![
            "spec.hard[widgets]: Invalid value: \"widgets\": must be a standard resource type or fully qualified",
            "spec.hard[widgets]: Invalid value: \"widgets\": must be a standard resource for quota",
        ]);
    }

    #[test]
    fn resource_quota_update_and_status() {
        let old = small_quota(json!({"scopes": ["BestEffort"]}));
        update_table("", "ResourceQuota", &old, &[
            ("hard", with(&old, json!({"spec": {"hard": {"pods": "20"}}})), ""),
            ("scopes", with(&old, json!({"spec": {"scopes": ["NotBestEffort"]}})), "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"NotBestEffort\"}: field is immutable"),
        ]);
        let status = |s: Value| messages("", "ResourceQuota", Op::Status { new: &with(&old, json!({"status": s})), old: &old });
        assert!(status(json!({"hard": {"pods": "10"}, "used": {"pods": "3"}})).is_empty());
        assert_eq!(status(json!({"used": {"pods": "-1"}})), vec!["status.used[pods]: Invalid value: \"-1\": must be greater than or equal to 0"]);
        assert_eq!(status(json!({"hard": {"secrets": "2.5"}})), vec!["status.hard[secrets]: Invalid value: \"2.5\": must be an integer"]);
        assert_eq!(status(json!({"used": {"storage": "1"}})), vec!["status.used[storage]: Invalid value: \"storage\": must be a standard resource for quota"]);
    }

    fn limit_range(limits: Value) -> Value {
        json!({"metadata": {"name": "limits", "namespace": "default"}, "spec": {"limits": limits}})
    }

    fn container_limit(item: Value) -> Value {
        limit_range(json!([with(&json!({"type": "Container"}), item)]))
    }

    #[test]
    fn limit_range_valid() {
        table("", "LimitRange", &[
            ("full", limit_range(json!([
                {"type": "Container", "max": {"cpu": "2", "memory": "1Gi"}, "min": {"cpu": "100m", "memory": "64Mi"}, "default": {"cpu": "500m", "memory": "256Mi"},
                 "defaultRequest": {"cpu": "200m", "memory": "128Mi"}, "maxLimitRequestRatio": {"cpu": "10"}},
                {"type": "Pod", "max": {"cpu": "4"}},
                {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}])), ""),
            ("no limits", limit_range(json!([])), ""),
            ("defaults only", container_limit(json!({"default": {"cpu": "1"}, "defaultRequest": {"cpu": "1"}})), ""),
            ("hugepages", container_limit(json!({"default": {"hugepages-2Mi": "4Mi", "cpu": "1"}, "defaultRequest": {"hugepages-2Mi": "4Mi", "cpu": "1"}})), ""),
            ("qualified type", limit_range(json!([{"type": "example.com/widget", "max": {"example.com/widgets": "3"}}])), ""),
            ("extended resource", container_limit(json!({"max": {"nvidia.com/gpu": "2"}})), ""),
        ]);
    }

    #[test]
    fn limit_range_invalid() {
        table("", "LimitRange", &[
            ("type", limit_range(json!([{"type": "Node"}])), "spec.limits[0].type: Invalid value: \"Node\": must be a standard limit type or fully qualified"),
            ("types repeat", limit_range(json!([{"type": "Container"}, {"type": "Container"}])), "spec.limits[1].type: Duplicate value: \"Container\""),
            ("min over max", container_limit(json!({"min": {"cpu": "2"}, "max": {"cpu": "1"}})), "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1"),
            ("request under min", container_limit(json!({"min": {"cpu": "500m"}, "defaultRequest": {"cpu": "200m"}})), "spec.limits[0].defaultRequest[cpu]: Invalid value: \"200m\": min value 500m is greater than default request value 200m"),
            ("request over max", container_limit(json!({"max": {"cpu": "1"}, "defaultRequest": {"cpu": "2"}})), "spec.limits[0].defaultRequest[cpu]: Invalid value: \"2\": default request value 2 is greater than max value 1"),
            ("request over default", container_limit(json!({"default": {"memory": "128Mi"}, "defaultRequest": {"memory": "256Mi"}})), "spec.limits[0].defaultRequest[memory]: Invalid value: \"256Mi\": default request value 256Mi is greater than default limit value 128Mi"),
            ("default under min", container_limit(json!({"min": {"cpu": "500m"}, "default": {"cpu": "200m"}})), "spec.limits[0].default[cpu]: Invalid value: \"500m\": min value 500m is greater than default value 200m"),
            ("default over max", container_limit(json!({"max": {"cpu": "1"}, "default": {"cpu": "2"}})), "spec.limits[0].default[cpu]: Invalid value: \"1\": default value 2 is greater than max value 1"),
            ("ratio under one", container_limit(json!({"maxLimitRequestRatio": {"cpu": "500m"}})), "spec.limits[0].maxLimitRequestRatio[cpu]: Invalid value: \"500m\": ratio 500m is less than 1"),
            ("ratio over max/min", container_limit(json!({"min": {"cpu": "1"}, "max": {"cpu": "2"}, "maxLimitRequestRatio": {"cpu": "3"}})), "spec.limits[0].maxLimitRequestRatio[cpu]: Invalid value: \"3\": ratio 3 is greater than max/min = 2.000000"),
            ("pod default", limit_range(json!([{"type": "Pod", "default": {"cpu": "1"}}])), "spec.limits[0].default: Forbidden: may not be specified when `type` is 'Pod'"),
            ("pod default request", limit_range(json!([{"type": "Pod", "defaultRequest": {"cpu": "1"}}])), "spec.limits[0].defaultRequest: Forbidden: may not be specified when `type` is 'Pod'"),
            ("claim without storage", limit_range(json!([{"type": "PersistentVolumeClaim", "max": {}}])), "spec.limits[0].limits: Required value: either minimum or maximum storage value is required, but neither was provided"),
            ("container resource", container_limit(json!({"max": {"pods": "1"}})), "spec.limits[0].max[pods]: Invalid value: \"pods\": must be a standard resource for containers"),
            ("unknown resource", limit_range(json!([{"type": "PersistentVolumeClaim", "max": {"storage": "1Gi", "example.com/bad name": "1"}}])), "spec.limits[0].max[example.com/bad name]: Invalid value: \"example.com/bad name\": name part must consist of"),
            ("not an extended resource", container_limit(json!({"max": {"requests.example.com/widgets": "1"}})), "spec.limits[0].max[requests.example.com/widgets]: Invalid value: \"requests.example.com/widgets\": doesn't follow extended resource name standard"),
            ("hugepages must not overcommit", container_limit(json!({"default": {"hugepages-2Mi": "4Mi"}, "defaultRequest": {"hugepages-2Mi": "2Mi"}})),
                "spec.limits[0].defaultRequest[hugepages-2Mi]: Invalid value: \"2Mi\": default value 4Mi must equal to defaultRequest value 2Mi in hugepages-2Mi"),
        ]);
    }

    #[test]
    fn config_map() {
        // kubectl create configmap my-config --from-literal=key1=config1
        let cm = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "my-config", "creationTimestamp": null}, "data": {"key1": "config1"}});
        let key = |k: &str| json!({"metadata": {"name": "c"}, "data": {k: "v"}});
        table("", "ConfigMap", &[
            ("kubectl create configmap", cm.clone(), ""),
            ("files and binary", json!({"metadata": {"name": "c"}, "data": {"app.properties": "a=b", ".env": "X=1", "KEY_NAME": ""}, "binaryData": {"logo.png": b64("PNG")}}), ""),
            ("nothing", json!({"metadata": {"name": "c"}}), ""),
            ("key", key("a b"), "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"),
            ("key with a slash", key("a/b"), "data[a/b]: Invalid value: \"a/b\": a valid config key must consist of"),
            ("dot", key("."), "data[.]: Invalid value: \".\": must not be '.'"),
            ("dot dot", key(".."), "data[..]: Invalid value: \"..\": must not be '..'"),
            ("dot dot prefix", key("..data"), "data[..data]: Invalid value: \"..data\": must not start with '..'"),
            ("long key", key(&"k".repeat(254)), "data[kkkk"),
            ("binary key", json!({"metadata": {"name": "c"}, "binaryData": {"a b": b64("x")}}), "binaryData[a b]: Invalid value: \"a b\": a valid config key"),
            ("key in both", json!({"metadata": {"name": "c"}, "data": {"k": "v"}, "binaryData": {"k": b64("x")}}), "data[k]: Invalid value: \"k\": duplicate of key present in binaryData"),
            ("too large", json!({"metadata": {"name": "c"}, "data": {"a": "x".repeat(1024 * 1024), "b": "y"}}), ": Too long: may not be more than 1048576 bytes"),
        ]);
        assert!(messages("", "ConfigMap", Op::Create(&key(&"k".repeat(254))))[0].ends_with("must be no more than 253 characters"));
        let frozen = with(&cm, json!({"immutable": true}));
        update_table("", "ConfigMap", &cm, &[
            ("data", with(&cm, json!({"data": {"key1": "config2"}})), ""),
            ("made immutable", frozen.clone(), ""),
        ]);
        update_table("", "ConfigMap", &frozen, &[
            ("labels", with(&frozen, json!({"metadata": {"labels": {"a": "b"}}})), ""),
            ("data", with(&frozen, json!({"data": {"key1": "config2"}})), "data: Forbidden: field is immutable when `immutable` is set"),
            ("binary data", with(&frozen, json!({"binaryData": {"b": b64("x")}})), "binaryData: Forbidden: field is immutable when `immutable` is set"),
            ("made mutable", with(&frozen, json!({"immutable": false})), "immutable: Forbidden: field is immutable when `immutable` is set"),
            ("immutable dropped", with(&frozen, json!({"immutable": null})), "immutable: Forbidden: field is immutable when `immutable` is set"),
        ]);
    }

    #[test]
    fn secret_valid() {
        let docker = r#"{"auths":{"DOCKER_REGISTRY_SERVER":{"username":"DOCKER_USER","password":"DOCKER_PASSWORD","email":"DOCKER_EMAIL","auth":"RE9DS0VSX1VTRVI6RE9DS0VSX1BBU1NXT1JE"}}}"#;
        table("", "Secret", &[
            // kubectl create secret generic my-secret --from-literal=key1=supersecret
            ("kubectl generic", json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "my-secret", "creationTimestamp": null}, "data": {"key1": b64("supersecret")}}), ""),
            ("opaque", json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": b64("b")}}), ""),
            // kubectl create secret tls tls-secret --cert=path/to/tls.crt --key=path/to/tls.key
            ("kubectl tls", json!({"metadata": {"name": "tls-secret"}, "type": "kubernetes.io/tls", "data": {"tls.crt": b64("-----BEGIN CERTIFICATE-----"), "tls.key": b64("-----BEGIN PRIVATE KEY-----")}}), ""),
            // kubectl create secret docker-registry my-secret --docker-server=... --docker-username=... --docker-password=... --docker-email=...
            ("kubectl docker-registry", json!({"metadata": {"name": "my-secret"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64(docker)}}), ""),
            ("dockercfg", json!({"metadata": {"name": "s"}, "type": "kubernetes.io/dockercfg", "data": {".dockercfg": b64(r#"{"registry.example.com":{"auth":"eA=="}}"#)}}), ""),
            ("basic auth, password only", json!({"metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth", "data": {"password": ""}}), ""),
            ("ssh", json!({"metadata": {"name": "s"}, "type": "kubernetes.io/ssh-auth", "data": {"ssh-privatekey": b64("KEY")}}), ""),
            ("token", json!({"metadata": {"name": "s", "annotations": {"kubernetes.io/service-account.name": "default"}}, "type": "kubernetes.io/service-account-token"}), ""),
            ("bootstrap token", json!({"metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"}, "type": "bootstrap.kubernetes.io/token", "data": {"token-id": b64("abcdef")}}), ""),
            ("empty", json!({"metadata": {"name": "s"}}), ""),
        ]);
    }

    #[test]
    fn secret_invalid() {
        let typed = |ty: &str, data: Value| json!({"metadata": {"name": "s"}, "type": ty, "data": data});
        let docker = |text: &str| typed("kubernetes.io/dockerconfigjson", json!({".dockerconfigjson": b64(text)}));
        table("", "Secret", &[
            ("key", json!({"metadata": {"name": "s"}, "data": {"a b": b64("x")}}), "data[a b]: Invalid value: \"a b\": a valid config key must consist of"),
            ("dot dot", json!({"metadata": {"name": "s"}, "data": {"..x": b64("x")}}), "data[..x]: Invalid value: \"..x\": must not start with '..'"),
            ("too large", json!({"metadata": {"name": "s"}, "data": {"a": b64(&"x".repeat(1024 * 1024 + 1))}}), "data: Too long: may not be more than 1048576 bytes"),
            ("token without its account", typed("kubernetes.io/service-account-token", json!({})), "metadata.annotations[kubernetes.io/service-account.name]: Required value"),
            ("docker config missing", typed("kubernetes.io/dockerconfigjson", json!({"config.json": b64("{}")})), "data[.dockerconfigjson]: Required value"),
            ("docker config", docker("xyz"), "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": invalid character 'x' looking for beginning of value"),
            ("docker config cut short", docker("{\"auths\":"), "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": unexpected end of JSON input"),
            ("docker config a list", docker("[]"), "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": json: cannot unmarshal array into Go value of type map[string]interface {}"),
            ("docker config not json", docker("not json"), "data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": "),
            ("dockercfg missing", typed("kubernetes.io/dockercfg", json!({})), "data[.dockercfg]: Required value"),
            ("ssh key missing", typed("kubernetes.io/ssh-auth", json!({})), "data[ssh-privatekey]: Required value"),
            ("ssh key empty", typed("kubernetes.io/ssh-auth", json!({"ssh-privatekey": ""})), "data[ssh-privatekey]: Required value"),
            ("tls key missing", typed("kubernetes.io/tls", json!({"tls.crt": b64("C")})), "data[tls.key]: Required value"),
            ("tls cert missing", typed("kubernetes.io/tls", json!({"tls.key": b64("K")})), "data[tls.crt]: Required value"),
        ]);
        let got = messages("", "Secret", Op::Create(&typed("kubernetes.io/basic-auth", json!({}))));
        assert_eq!(got, vec!["data[username]: Required value", "data[password]: Required value"]);
    }

    #[test]
    fn secret_update() {
        let old = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": b64("b")}});
        let frozen = with(&old, json!({"immutable": true}));
        update_table("", "Secret", &old, &[
            ("data", with(&old, json!({"data": {"a": b64("c")}})), ""),
            ("type left out", with(&old, json!({"type": null})), ""),
            ("type", with(&old, json!({"type": "kubernetes.io/basic-auth", "data": {"username": b64("u")}})), "type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"),
        ]);
        update_table("", "Secret", &frozen, &[
            ("annotations", with(&frozen, json!({"metadata": {"annotations": {"a": "b"}}})), ""),
            ("data", with(&frozen, json!({"data": {"a": b64("c")}})), "data: Forbidden: field is immutable when `immutable` is set"),
            ("made mutable", with(&frozen, json!({"immutable": false})), "immutable: Forbidden: field is immutable when `immutable` is set"),
        ]);
    }

    #[test]
    fn service_account() {
        table("", "ServiceAccount", &[
            ("valid", json!({"metadata": {"name": "builder"}, "secrets": [{"name": "builder-token"}], "imagePullSecrets": [{"name": "regcred"}], "automountServiceAccountToken": false}), ""),
        ]);
    }

    fn rc() -> Value {
        json!({"metadata": {"name": "nginx", "namespace": "default"}, "spec": {"replicas": 3, "selector": {"app": "nginx"},
            "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}})
    }

    fn rc_spec(change: Value) -> Value {
        with(&rc(), json!({"spec": change}))
    }

    #[test]
    fn replication_controller_valid() {
        table("", "ReplicationController", &[
            ("valid", rc(), ""),
            ("selector defaulted", rc_spec(json!({"selector": null})), ""),
            ("selector narrower than labels", with(&rc(), json!({"spec": {"template": {"metadata": {"labels": {"app": "nginx", "tier": "web"}}}}})), ""),
            ("no replicas", rc_spec(json!({"replicas": 0, "minReadySeconds": 10})), ""),
            ("always", with(&rc(), json!({"spec": {"template": {"spec": {"restartPolicy": "Always"}}}})), ""),
        ]);
    }

    #[test]
    fn replication_controller_invalid() {
        table("", "ReplicationController", &[
            ("replicas", rc_spec(json!({"replicas": -1})), "spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
            ("min ready seconds", rc_spec(json!({"minReadySeconds": -5})), "spec.minReadySeconds: Invalid value: -5: must be greater than or equal to 0"),
            ("selector", rc_spec(json!({"selector": {"app": "web"}})), "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"nginx\"}: `selector` does not match template `labels`"),
            ("selector wider than labels", rc_spec(json!({"selector": {"app": "nginx", "tier": "web"}})), "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"nginx\"}: `selector` does not match template `labels`"),
            ("no template", rc_spec(json!({"template": null})), "spec.template: Required value"),
            ("restart policy", with(&rc(), json!({"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}})), "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\""),
            ("active deadline", with(&rc(), json!({"spec": {"template": {"spec": {"activeDeadlineSeconds": 30}}}})), "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicationController is not Supported"),
        ]);
        let got = messages("", "ReplicationController", Op::Create(&rc_spec(json!({"selector": null, "template": {"metadata": {"labels": null}}}))));
        assert!(got.contains(&"spec.selector: Required value".to_string()), "{got:#?}");
    }

    #[test]
    fn replication_controller_status() {
        let old = rc();
        let status = |s: Value| messages("", "ReplicationController", Op::Status { new: &with(&old, json!({"status": s})), old: &old });
        assert!(status(json!({"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 2, "availableReplicas": 2, "observedGeneration": 1})).is_empty());
        assert_eq!(status(json!({"replicas": 3, "readyReplicas": 5, "availableReplicas": 3})), vec!["status.readyReplicas: Invalid value: 5: cannot be greater than status.replicas"]);
        assert_eq!(status(json!({"replicas": 3, "fullyLabeledReplicas": -1})), vec!["status.fullyLabeledReplicas: Invalid value: -1: must be greater than or equal to 0"]);
        assert_eq!(status(json!({"replicas": 3, "readyReplicas": 1, "availableReplicas": 2})), vec!["status.availableReplicas: Invalid value: 2: cannot be greater than readyReplicas"]);
        assert_eq!(status(json!({"replicas": 1, "observedGeneration": -1})), vec!["status.observedGeneration: Invalid value: -1: must be greater than or equal to 0"]);
        assert_eq!(status(json!({"replicas": 1, "fullyLabeledReplicas": 2})), vec!["status.fullyLabeledReplicas: Invalid value: 2: cannot be greater than status.replicas"]);
    }

    fn old_event() -> Value {
        json!({"metadata": {"name": "web-0.17a", "namespace": "default"}, "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default", "uid": "u"},
            "reason": "Scheduled", "message": "Successfully assigned default/web-0 to node-1", "type": "Normal", "source": {"component": "default-scheduler"},
            "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:00Z", "count": 1})
    }

    fn new_event() -> Value {
        json!({"metadata": {"name": "web-0.17b", "namespace": "default"}, "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default"},
            "eventTime": "2025-01-01T00:00:00.000000Z", "reportingComponent": "default-scheduler", "reportingInstance": "default-scheduler-node-1",
            "action": "Binding", "reason": "Scheduled", "type": "Normal", "message": "ok"})
    }

    #[test]
    fn event() {
        let node_event = json!({"metadata": {"name": "node-1.17c", "namespace": "default"}, "involvedObject": {"kind": "Node", "name": "node-1"}, "reason": "NodeReady"});
        table("", "Event", &[
            ("old style", old_event(), ""),
            ("new style", new_event(), ""),
            ("a node's", node_event.clone(), ""),
            ("a node's, new style", with(&new_event(), json!({"involvedObject": {"kind": "Node", "name": "node-1", "namespace": null}})), ""),
            ("a node's in kube-system", with(&new_event(), json!({"metadata": {"namespace": "kube-system"}, "involvedObject": {"kind": "Node", "namespace": null}})), ""),
            ("sparse", json!({"metadata": {"name": "e", "namespace": "default"}, "involvedObject": {}}), ""),
            ("other namespace", with(&old_event(), json!({"involvedObject": {"namespace": "other"}})), "involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"),
            ("a node's elsewhere", with(&node_event, json!({"metadata": {"namespace": "team-a"}})), "involvedObject.namespace: Invalid value: \"\": does not match event.namespace"),
            ("new style, a node's elsewhere", with(&new_event(), json!({"metadata": {"namespace": "team-a"}, "involvedObject": {"namespace": null}})), "involvedObject.namespace: Invalid value: \"\": does not match event.namespace"),
            ("no instance", with(&new_event(), json!({"reportingInstance": null})), "reportingInstance: Required value"),
            ("no action", with(&new_event(), json!({"action": null})), "action: Required value"),
            ("no reason", with(&new_event(), json!({"reason": null})), "reason: Required value"),
            ("reporter", with(&new_event(), json!({"reportingComponent": "bad reporter!"})), "reportingComponent: Invalid value: \"bad reporter!\": name part must consist of"),
            ("long reason", with(&new_event(), json!({"reason": "r".repeat(129)})), "reason: Invalid value: \"\": can have at most 128 characters"),
            ("long action", with(&new_event(), json!({"action": "a".repeat(129)})), "action: Invalid value: \"\": can have at most 128 characters"),
            ("long instance", with(&new_event(), json!({"reportingInstance": "i".repeat(129)})), "reportingInstance: Invalid value: \"\": can have at most 128 characters"),
            ("long message", with(&new_event(), json!({"message": "m".repeat(1025)})), "message: Invalid value: \"\": can have at most 1024 characters"),
        ]);
        let got = messages("", "Event", Op::Create(&with(&new_event(), json!({"reportingComponent": null}))));
        assert_eq!(got, vec!["reportingComponent: Required value", "reportingComponent: Invalid value: \"\": name part must be non-empty"]);
        update_table("", "Event", &old_event(), &[("count", with(&old_event(), json!({"count": 2})), "")]);
    }
}

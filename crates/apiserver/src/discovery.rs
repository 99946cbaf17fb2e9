//! Discovery documents, all derived from the resource table: `/api`,
//! `/apis`, `/apis/{group}`, and the resource list of each group version.

use serde_json::{json, Value};
use skiff_api::resources::{all, group_versions};
use skiff_api::ResourceDef;

pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    })
}

fn group_doc(group: &str) -> Option<Value> {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first()?.clone();
    Some(json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": preferred,
    }))
}

pub fn api_group_list() -> Value {
    let mut groups: Vec<&str> = Vec::new();
    for (g, _) in group_versions() {
        if !g.is_empty() && !groups.contains(&g) {
            groups.push(g);
        }
    }
    let groups: Vec<Value> = groups.into_iter().filter_map(group_doc).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(group: &str) -> Option<Value> {
    if group.is_empty() {
        return None;
    }
    group_doc(group)
}

/// Short names and categories, present only when a resource has some.
fn add_names(entry: &mut Value, r: &ResourceDef) {
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
}

/// A subresource's response kind and verbs, as discovery describes them.
fn subresource(def: &ResourceDef, sub: &str) -> (Value, &'static [&'static str]) {
    let gvk = |g: &str, v: &str, k: &str| json!({"group": g, "version": v, "kind": k});
    let own = gvk(def.group, def.version, def.kind);
    match sub {
        "status" => (own, &["get", "patch", "update"]),
        "scale" => (gvk("autoscaling", "v1", "Scale"), &["get", "patch", "update"]),
        "binding" => (gvk("", "v1", "Binding"), &["create"]),
        "eviction" => (gvk("policy", "v1", "Eviction"), &["create"]),
        "token" => (gvk("authentication.k8s.io", "v1", "TokenRequest"), &["create"]),
        "log" => (gvk("", "v1", "Pod"), &["get"]),
        "exec" | "attach" => (gvk("", "v1", "PodExecOptions"), &["create", "get"]),
        "portforward" => (gvk("", "v1", "PodPortForwardOptions"), &["create", "get"]),
        "ephemeralcontainers" => (gvk("", "v1", "Pod"), &["get", "patch", "update"]),
        "proxy" => (gvk("", "v1", &format!("{}ProxyOptions", def.kind)), &["create", "delete", "get", "patch", "update"]),
        "finalize" => (own, &["update"]),
        "approval" => (own, &["get", "patch", "update"]),
        _ => (own, &["get"]),
    }
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let defs: Vec<_> = all().into_iter().filter(|r| r.group == group && r.version == version).collect();
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for r in &defs {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs.names(),
        });
        add_names(&mut entry, r);
        resources.push(entry);
        for sub in r.subresources {
            let (kind, verbs) = subresource(r, sub);
            let mut entry = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind["kind"],
                "verbs": verbs,
            });
            // A subresource answering in another group version says which.
            if kind["group"] != r.group || kind["version"] != r.version {
                entry["group"] = kind["group"].clone();
                entry["version"] = kind["version"].clone();
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

/// The media type clients send for aggregated discovery, if they asked for it.
pub fn wants_aggregated(accept: &str) -> Option<&'static str> {
    for choice in accept.split(',') {
        if choice.contains("g=apidiscovery.k8s.io") && choice.contains("as=APIGroupDiscoveryList") {
            if choice.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if choice.contains("v=v2") {
                return Some("v2");
            }
        }
    }
    None
}

/// Aggregated discovery (`apidiscovery.k8s.io`): every group, version and
/// resource in one document, for `/api` (`core`) or `/apis`.
pub fn aggregated(core: bool, version: &str) -> Value {
    let mut items = Vec::new();
    let mut groups: Vec<&str> = Vec::new();
    for (g, _) in group_versions() {
        if g.is_empty() == core && !groups.contains(&g) {
            groups.push(g);
        }
    }
    for g in groups {
        let versions: Vec<Value> = group_versions()
            .into_iter()
            .filter(|(gg, _)| *gg == g)
            .map(|(_, v)| {
                let resources: Vec<Value> = all()
                    .iter()
                    .filter(|r| r.group == g && r.version == v)
                    .map(|r| {
                        let mut entry = json!({
                            "resource": r.plural,
                            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                            "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                            "singularResource": r.singular,
                            "verbs": r.verbs.names(),
                        });
                        add_names(&mut entry, r);
                        let subs: Vec<Value> = r
                            .subresources
                            .iter()
                            .map(|s| {
                                let (kind, verbs) = subresource(r, s);
                                json!({"subresource": s, "responseKind": kind, "verbs": verbs})
                            })
                            .collect();
                        if !subs.is_empty() {
                            entry["subresources"] = json!(subs);
                        }
                        entry
                    })
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        items.push(json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions}));
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

pub fn version_info() -> Value {
    let git_version = format!("{}-skiff{}", skiff_api::KUBERNETES_VERSION, env!("CARGO_PKG_VERSION"));
    let (major, minor) = {
        let v = skiff_api::KUBERNETES_VERSION.trim_start_matches('v');
        let mut it = v.split('.');
        (it.next().unwrap_or("1").to_string(), it.next().unwrap_or("0").to_string())
    };
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": env!("SKIFF_GIT_COMMIT"),
        "gitTreeState": env!("SKIFF_GIT_TREE_STATE"),
        "buildDate": env!("SKIFF_BUILD_DATE"),
        // Upstream names the Go toolchain here; Skiff's is rustc's.
        "goVersion": env!("SKIFF_RUSTC_VERSION"),
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

//! Discovery documents, all derived from the resource table: `/api`,
//! `/apis`, `/apis/{group}`, and the resource list of each group version.

use serde_json::{json, Value};
use skiff_api::resources::{group_versions, BUILTIN};

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

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let defs: Vec<_> = BUILTIN.iter().filter(|r| r.group == group && r.version == version).collect();
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
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in r.subresources {
            let (kind, verbs): (&str, &[&str]) = match *sub {
                "status" => (r.kind, &["get", "patch", "update"]),
                "scale" => ("Scale", &["get", "patch", "update"]),
                "binding" => ("Binding", &["create"]),
                "eviction" => ("Eviction", &["create"]),
                "token" => ("TokenRequest", &["create"]),
                "log" => ("Pod", &["get"]),
                "exec" | "attach" | "portforward" => ("PodExecOptions", &["create", "get"]),
                "ephemeralcontainers" => ("Pod", &["get", "patch", "update"]),
                "proxy" => ("NodeProxyOptions", &["create", "delete", "get", "patch", "update"]),
                "finalize" => ("Namespace", &["update"]),
                "approval" => (r.kind, &["get", "patch", "update"]),
                _ => (r.kind, &["get"]),
            };
            resources.push(json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            }));
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
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

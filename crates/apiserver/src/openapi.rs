//! OpenAPI v3 documents, derived from the resource table: `/openapi/v3`
//! lists one document per group version, each describing the resources'
//! paths and operations with the query parameters they accept and the
//! `x-kubernetes-group-version-kind` of each.
//!
//! kubectl reads them to learn that the server validates fields itself
//! (`fieldValidation` on PATCH) and, through the component schemas
//! (`skiff_api::schema`), to explain each kind's fields.

use serde_json::{json, Map, Value};
use skiff_api::resources::{group_versions, BUILTIN};
use skiff_api::schema;
use skiff_api::ResourceDef;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `rest` is what follows `/openapi/v3` in the request path.
pub fn v3(rest: &str) -> Option<Value> {
    let rest = rest.trim_matches('/');
    if rest.is_empty() {
        let mut paths = Map::new();
        for (g, v) in group_versions() {
            let p = gv_path(g, v);
            paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(g, v))}));
        }
        return Some(json!({"paths": paths}));
    }
    let (group, version) = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let defs: Vec<&ResourceDef> = BUILTIN.iter().filter(|r| r.group == group && r.version == version).collect();
    if defs.is_empty() {
        return None;
    }
    let schemas: Map<String, Value> = schema::closure(defs.iter().map(|d| (d.schema_name)()))
        .into_iter()
        .filter_map(|name| schema::DEFINITIONS.get(&name).map(|s| (name, s.clone())))
        .collect();
    let mut paths = Map::new();
    for def in defs {
        let base = if def.namespaced {
            format!("/{}/namespaces/{{namespace}}/{}", gv_path(group, version), def.plural)
        } else {
            format!("/{}/{}", gv_path(group, version), def.plural)
        };
        let gvk = json!({"group": def.group, "version": def.version, "kind": def.kind});
        let op = |action: &str, params: &[&str]| {
            json!({
                "operationId": format!("{action}{}", def.kind),
                "parameters": params.iter().map(|p| json!({"name": p, "in": "query", "schema": {"type": "string"}, "uniqueItems": true})).collect::<Vec<_>>(),
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        let write = ["dryRun", "fieldManager", "fieldValidation", "pretty"];
        paths.insert(
            base.clone(),
            json!({
                "get": op("list", &["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "resourceVersionMatch", "timeoutSeconds", "watch", "allowWatchBookmarks", "sendInitialEvents"]),
                "post": op("post", &write),
                "delete": op("deletecollection", &["labelSelector", "fieldSelector", "dryRun", "gracePeriodSeconds", "propagationPolicy"]),
            }),
        );
        paths.insert(
            format!("{base}/{{name}}"),
            json!({
                "get": op("get", &[]),
                "put": op("put", &write),
                "patch": op("patch", &["dryRun", "fieldManager", "fieldValidation", "force", "pretty"]),
                "delete": op("delete", &["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": skiff_api::KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// Changes whenever the documents could: with the server's version.
fn hash(group: &str, version: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (group, version, env!("CARGO_PKG_VERSION"), skiff_api::KUBERNETES_VERSION).hash(&mut h);
    format!("{:016X}", h.finish())
}

//! OpenAPI v3 documents, derived from the resource table: `/openapi/v3`
//! lists one document per group version, each describing the resources'
//! paths and operations with the query parameters they accept and the
//! `x-kubernetes-group-version-kind` of each.
//!
//! kubectl reads them to learn that the server validates fields itself
//! (`fieldValidation` on PATCH) and, through the component schemas
//! (`skiff_api::schema`), to explain each kind's fields.

use serde_json::{json, Map, Value};
use skiff_api::resources::{all, group_versions};
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
    let defs = served(group, version);
    if defs.is_empty() {
        return None;
    }
    let mut roots: Vec<String> = defs.iter().filter(|d| d.custom.is_none()).map(|d| (d.schema_name)()).collect();
    if defs.iter().any(|d| d.custom.is_some()) {
        roots.push("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".into());
    }
    let mut schemas: Map<String, Value> = schema::closure(roots)
        .into_iter()
        .filter_map(|name| schema::DEFINITIONS.get(&name).map(|s| (name, s.clone())))
        .collect();
    for def in &defs {
        if let Some(custom) = &def.custom {
            schemas.insert(custom_schema_name(def), custom_schema(def, &custom.schema));
        }
    }
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

fn served(group: &str, version: &str) -> Vec<&'static ResourceDef> {
    all().into_iter().filter(|r| r.group == group && r.version == version).collect()
}

/// Upstream names a custom kind's schema by its reversed group:
/// `com.example.v1.Widget` for `example.com/v1` Widget.
fn custom_schema_name(def: &ResourceDef) -> String {
    let reversed: Vec<&str> = def.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), def.version, def.kind)
}

/// A CRD's schema with what upstream adds: the standard fields and the GVK.
fn custom_schema(def: &ResourceDef, schema: &Value) -> Value {
    let mut out = schema.clone();
    let standard = json!({
        "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
        "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
        "metadata": {"allOf": [{"$ref": format!("{}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", schema::REF_PREFIX)}], "description": "Standard object's metadata."},
    });
    if let (Some(props), Value::Object(standard)) = (out.as_object_mut().map(|o| o.entry("properties").or_insert_with(|| json!({}))), standard) {
        if let Some(props) = props.as_object_mut() {
            for (k, v) in standard {
                props.entry(k).or_insert(v);
            }
        }
    }
    out["x-kubernetes-group-version-kind"] = json!([{"group": def.group, "version": def.version, "kind": def.kind}]);
    out
}

/// Changes whenever the documents could: with the server's version, and
/// with the schemas of the custom resources in the group version.
fn hash(group: &str, version: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (group, version, env!("CARGO_PKG_VERSION"), skiff_api::KUBERNETES_VERSION).hash(&mut h);
    for def in served(group, version) {
        if let Some(custom) = &def.custom {
            (def.kind, def.plural, custom.schema.to_string()).hash(&mut h);
        }
    }
    format!("{:016X}", h.finish())
}

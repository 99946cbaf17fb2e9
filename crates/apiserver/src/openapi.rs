//! OpenAPI documents, derived from the resource table: `/openapi/v3`
//! lists one document per group version, each describing the resources'
//! paths and operations with the query parameters they accept and the
//! `x-kubernetes-group-version-kind` of each; `/openapi/v2` is one Swagger
//! 2.0 document for all of them, for older clients.
//!
//! kubectl reads them to learn that the server validates fields itself
//! (`fieldValidation` on PATCH) and, through the component schemas
//! (`skiff_api::schema`), to explain each kind's fields.

use serde_json::{json, Map, Value};
use skiff_api::resources::{all, group_versions};
use skiff_api::schema;
use skiff_api::{ResourceDef, Verbs};

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
        paths.extend(resource_paths(def, |name, place, required| json!({"name": name, "in": place, "required": required, "schema": {"type": "string", "uniqueItems": true}})));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": skiff_api::KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// `/openapi/v2`: every group version in one Swagger 2.0 document, with
/// the same schemas under `definitions`. Only JSON: the protobuf form
/// client-go asks for (gnostic's `openapi_v2.Document`) has no Rust
/// implementation to build it with, so such a request gets 406.
pub fn v2() -> Value {
    let defs = all();
    let mut paths = Map::new();
    for def in &defs {
        paths.extend(resource_paths(def, |name, place, required| json!({"name": name, "in": place, "required": required, "type": "string", "uniqueItems": true})));
    }
    let roots: Vec<String> = defs.iter().filter(|d| d.custom.is_none()).map(|d| (d.schema_name)()).collect();
    let mut definitions: Map<String, Value> = schema::closure(roots)
        .into_iter()
        .filter_map(|name| schema::DEFINITIONS.get(&name).map(|s| (name, s.clone())))
        .collect();
    for def in defs.iter().filter(|d| d.custom.is_some() && d.is_storage_version()) {
        let custom = def.custom.as_ref().expect("filtered on custom");
        definitions.insert(custom_schema_name(def), custom_schema(def, &custom.schema));
    }
    let mut doc = json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": skiff_api::KUBERNETES_VERSION},
        "paths": paths,
        "definitions": definitions,
    });
    to_v2_refs(&mut doc);
    doc
}

/// Swagger 2.0 keeps schemas under `#/definitions/` and has no `oneOf`,
/// `anyOf`, `not` or `nullable` (upstream's v2 leaves those schemas
/// untyped, as its CRD conversion does for an int-or-string).
fn to_v2_refs(value: &mut Value) {
    to_v2(value, false)
}

/// `names` marks a map of names to schemas (`properties`, `definitions`):
/// its keys are names, not schema keywords, and stay.
fn to_v2(value: &mut Value, names: bool) {
    match value {
        Value::Object(map) => {
            if !names {
                for keyword in ["oneOf", "anyOf", "not", "nullable"] {
                    map.remove(keyword);
                }
            }
            for (key, v) in map.iter_mut() {
                match v {
                    Value::String(r) if key == "$ref" && !names => {
                        if let Some(name) = r.strip_prefix(schema::REF_PREFIX) {
                            *r = format!("#/definitions/{name}");
                        }
                    }
                    v => to_v2(v, !names && matches!(key.as_str(), "properties" | "definitions" | "patternProperties" | "paths")),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| to_v2(v, false)),
        _ => {}
    }
}

/// The collection and item paths of one resource with their operations;
/// `param` shapes a parameter (name, where, required) as the OpenAPI
/// version wants it.
fn resource_paths(def: &ResourceDef, param: impl Fn(&str, &str, bool) -> Value) -> Vec<(String, Value)> {
    let base = if def.namespaced {
        format!("/{}/namespaces/{{namespace}}/{}", gv_path(def.group, def.version), def.plural)
    } else {
        format!("/{}/{}", gv_path(def.group, def.version), def.plural)
    };
    let gvk = json!({"group": def.group, "version": def.version, "kind": def.kind});
    let scope = if def.namespaced { "Namespaced" } else { "" };
    let op = |action: &str, verb: &str, params: &[&str]| {
        json!({
            "operationId": format!("{verb}{}{scope}{}", operation_prefix(def), def.kind),
            "parameters": params.iter().map(|p| param(p, "query", false)).collect::<Vec<_>>(),
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        })
    };
    let namespace: &[&str] = if def.namespaced { &["namespace"] } else { &[] };
    let write = ["dryRun", "fieldManager", "fieldValidation", "pretty"];
    let list = op("list", "list", &["labelSelector", "fieldSelector", "limit", "continue", "resourceVersion", "resourceVersionMatch", "timeoutSeconds", "watch", "allowWatchBookmarks", "sendInitialEvents"]);
    let create = op("post", "create", &write);
    let (collection, item) = match def.verbs {
        Verbs::All => (
            json!({
                "get": list,
                "post": create,
                "delete": op("deletecollection", "deletecollection", &["labelSelector", "fieldSelector", "dryRun", "gracePeriodSeconds", "propagationPolicy"]),
            }),
            Some(json!({
                "get": op("get", "read", &[]),
                "put": op("put", "replace", &write),
                "patch": op("patch", "patch", &["dryRun", "fieldManager", "fieldValidation", "force", "pretty"]),
                "delete": op("delete", "delete", &["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
            })),
        ),
        Verbs::ReadOnly => (json!({"get": list}), Some(json!({"get": op("get", "read", &[])}))),
        Verbs::CreateOnly => (json!({"post": create}), None),
    };
    let with_params = |mut ops: Value, names: &[&str]| {
        ops["parameters"] = json!(names.iter().map(|n| param(n, "path", true)).collect::<Vec<_>>());
        ops
    };
    let mut paths = vec![(base.clone(), with_params(collection, namespace))];
    if let Some(item) = item {
        paths.push((format!("{base}/{{name}}"), with_params(item, &[&["name"], namespace].concat())));
    }
    paths
}

/// Upstream's operation IDs name the group and version: `CoreV1`,
/// `RbacAuthorizationV1`, `ExampleComV1` (`listCoreV1NamespacedPod`).
fn operation_prefix(def: &ResourceDef) -> String {
    let group = if def.group.is_empty() { "core" } else { def.group.trim_end_matches(".k8s.io") };
    let mut out = String::new();
    for part in group.split(['.', '-']).chain(std::iter::once(def.version)) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
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

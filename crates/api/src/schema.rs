//! The OpenAPI schemas of every served kind, as upstream names them
//! (`io.k8s.api.core.v1.Pod`), generated from k8s-openapi's types so they
//! cannot drift from the structs the server decodes with. They feed the
//! OpenAPI documents (`kubectl explain`) and the protobuf decoder (which
//! needs each message's JSON field names).

use std::sync::LazyLock;

use schemars::gen::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::resources::BUILTIN;

/// Adds a type's schema (and every schema it refers to) to a generator;
/// returns the type's definition name.
pub type SchemaFn = fn(&mut SchemaGenerator) -> String;

pub(crate) fn schema_of<K: JsonSchema>(gen: &mut SchemaGenerator) -> String {
    gen.subschema_for::<K>();
    K::schema_name()
}

/// Where definitions live in an OpenAPI v3 document.
pub const REF_PREFIX: &str = "#/components/schemas/";

/// Every definition reachable from a served kind, keyed by name; the
/// top-level kinds carry `x-kubernetes-group-version-kind` as upstream's.
pub static DEFINITIONS: LazyLock<Map<String, Value>> = LazyLock::new(|| {
    use k8s_openapi::api::{autoscaling, core, policy};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let mut settings = SchemaSettings::openapi3();
    settings.definitions_path = REF_PREFIX.to_string();
    let mut gen = settings.into_generator();
    let mut kinds: Vec<(String, Value)> = Vec::new();
    for r in BUILTIN.iter() {
        let name = (r.schema)(&mut gen);
        kinds.push((name, json!([{"group": r.group, "version": r.version, "kind": r.kind}])));
    }
    // Bodies of subresources and options.
    let extras: [(SchemaFn, &str, &str); 6] = [
        (schema_of::<meta::DeleteOptions>, "", "DeleteOptions"),
        (schema_of::<meta::Status>, "", "Status"),
        (schema_of::<policy::v1::Eviction>, "policy", "Eviction"),
        (schema_of::<autoscaling::v1::Scale>, "autoscaling", "Scale"),
        (schema_of::<core::v1::Binding>, "", "Binding"),
        (schema_of::<k8s_openapi::api::authentication::v1::TokenRequest>, "authentication.k8s.io", "TokenRequest"),
    ];
    for (f, group, kind) in extras {
        let name = f(&mut gen);
        kinds.push((name, json!([{"group": group, "version": "v1", "kind": kind}])));
    }
    let mut defs: Map<String, Value> = gen
        .take_definitions()
        .into_iter()
        .map(|(name, schema)| {
            let mut schema = serde_json::to_value(schema).unwrap_or_default();
            as_upstream(&mut schema);
            (name, schema)
        })
        .collect();
    for (name, gvk) in kinds {
        if let Some(Value::Object(def)) = defs.get_mut(&name) {
            def.insert("x-kubernetes-group-version-kind".into(), gvk);
        }
    }
    defs
});

/// Upstream's spelling of two things schemars writes differently: a field
/// that refers to a type and describes itself wraps the `$ref` in `allOf`
/// (OpenAPI ignores a `$ref`'s siblings, and so does `kubectl explain`);
/// `metadata` is never required.
fn as_upstream(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    if map.len() > 1 {
        if let Some(reference) = map.remove("$ref") {
            map.insert("allOf".into(), json!([{"$ref": reference}]));
        }
    }
    if let Some(Value::Array(required)) = map.get_mut("required") {
        required.retain(|r| r != "metadata");
        if required.is_empty() {
            map.remove("required");
        }
    }
    // Recurse into subschemas only: `properties` is a map of them (whose
    // keys may be anything, `$ref` included, as in JSONSchemaProps).
    for (key, value) in map.iter_mut() {
        match (key.as_str(), value) {
            ("properties", Value::Object(props)) => props.values_mut().for_each(as_upstream),
            ("items" | "additionalProperties" | "not", v) => as_upstream(v),
            ("allOf" | "oneOf" | "anyOf", Value::Array(items)) => items.iter_mut().for_each(as_upstream),
            _ => {}
        }
    }
}

/// The definition `reference` (`#/components/schemas/NAME`) points at.
pub fn resolve(reference: &str) -> Option<&'static Value> {
    DEFINITIONS.get(reference.strip_prefix(REF_PREFIX)?)
}

/// The definition names `schema` refers to, directly or through others.
pub fn closure(roots: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut todo: Vec<String> = roots.into_iter().collect();
    while let Some(name) = todo.pop() {
        if seen.contains(&name) {
            continue;
        }
        if let Some(def) = DEFINITIONS.get(&name) {
            refs(def, &mut todo);
        }
        seen.push(name);
    }
    seen
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                if let Some(name) = r.strip_prefix(REF_PREFIX) {
                    out.push(name.to_string());
                }
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_kinds_have_schemas_with_their_gvk() {
        let pod = &DEFINITIONS["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
        assert_eq!(pod["properties"]["spec"]["allOf"][0]["$ref"], "#/components/schemas/io.k8s.api.core.v1.PodSpec");
        assert!(pod["properties"]["spec"]["description"].is_string());
        assert!(pod.get("required").is_none(), "metadata is not required: {pod}");
        let spec = resolve("#/components/schemas/io.k8s.api.core.v1.PodSpec").unwrap();
        assert!(spec["properties"]["containers"]["description"].as_str().unwrap().contains("containers"));
        let names = closure(["io.k8s.api.apps.v1.Deployment".to_string()]);
        assert!(names.contains(&"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".to_string()));
        assert!(names.contains(&"io.k8s.api.core.v1.Container".to_string()));
    }
}

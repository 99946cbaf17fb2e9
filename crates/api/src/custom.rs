//! Custom resources: what a CustomResourceDefinition serves. Each served
//! version becomes a `ResourceDef` (see `resources::set_custom`) carrying
//! its structural schema, which prunes unknown fields, fills defaults and
//! validates values as upstream's apiextensions server does.

use serde_json::{Map, Value};

use crate::resources::{ResourceDef, Verbs};
use crate::validation::FieldError;

/// The versions a CRD serves (`spec.versions[]` with `served: true`).
pub fn served_versions(crd: &Value) -> impl Iterator<Item = &Value> {
    crd.pointer("/spec/versions").and_then(Value::as_array).into_iter().flatten().filter(|v| v["served"] == Value::Bool(true))
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn leak_list(v: &Value) -> &'static [&'static str] {
    let items: Vec<&'static str> = v.as_array().into_iter().flatten().filter_map(Value::as_str).map(leak).collect();
    Box::leak(items.into_boxed_slice())
}

/// The resource one served `version` of `crd` defines. Its strings are
/// leaked: see `resources::set_custom`, which makes each definition once.
pub fn definition(crd: &Value, version: &Value) -> ResourceDef {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let kind = text(&names["kind"]);
    let subresources: &'static [&'static str] = match (version.pointer("/subresources/status").is_some(), version.pointer("/subresources/scale").is_some()) {
        (true, true) => &["status", "scale"],
        (true, false) => &["status"],
        (false, true) => &["scale"],
        (false, false) => &[],
    };
    let schema = version.pointer("/schema/openAPIV3Schema").cloned().unwrap_or_else(|| serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    let singular = names["singular"].as_str().map_or_else(|| kind.to_lowercase(), String::from);
    ResourceDef {
        group: leak(&text(&spec["group"])),
        version: leak(&text(&version["name"])),
        kind: leak(&kind),
        plural: leak(&text(&names["plural"])),
        singular,
        short_names: leak_list(&names["shortNames"]),
        categories: leak_list(&names["categories"]),
        namespaced: spec["scope"] == "Namespaced",
        subresources,
        verbs: Verbs::All,
        typed: |v| Ok((v.clone(), Vec::new())),
        schema: |_| String::new(),
        schema_name: String::new,
        conversion: None,
        custom: Some(CustomResource {
            schema,
            columns: version["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
            qualified_kind: format!("{kind}.{}", text(&spec["group"])),
        }),
    }
}

/// What a custom resource version brings beyond a built-in resource.
#[derive(Debug, Clone)]
pub struct CustomResource {
    /// `openAPIV3Schema` of the version.
    pub schema: Value,
    /// `additionalPrinterColumns`.
    pub columns: Vec<Value>,
    /// The resource's qualified kind, as messages name it (`Widget.example.com`).
    pub qualified_kind: String,
}

impl CustomResource {
    /// `obj` pruned of fields the schema does not know (their paths
    /// returned) and with the schema's defaults filled in.
    pub fn prune(&self, obj: &Value) -> (Value, Vec<String>) {
        let mut unknown = Vec::new();
        let mut out = obj.clone();
        if let Some(meta) = out.get_mut("metadata") {
            prune_object_meta(meta, "metadata", &mut unknown);
        }
        if let Value::Object(fields) = &mut out {
            // apiVersion, kind and metadata are the server's, whatever the schema says.
            for (key, value) in fields.iter_mut().filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata")) {
                match property(&self.schema, key) {
                    Some(schema) => prune(schema, value, key, &mut unknown),
                    None if preserves_unknown(&self.schema) => {}
                    None => unknown.push(key.clone()),
                }
            }
            if !preserves_unknown(&self.schema) {
                fields.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata") || property(&self.schema, k).is_some());
            }
            default_missing(&self.schema, fields);
        }
        (out, unknown)
    }

    /// The schema's rules the object breaks.
    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(fields) = obj.as_object() {
            for (key, value) in fields.iter().filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata")) {
                if let Some(schema) = property(&self.schema, key) {
                    validate(schema, value, key, &mut errors);
                }
            }
            required(&self.schema, fields, "", &mut errors);
        }
        errors
    }
}

fn property<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema.get("properties").and_then(|p| p.get(key)).or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

fn preserves_unknown(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        || schema.get("additionalProperties") == Some(&Value::Bool(true))
        || (schema.get("properties").is_none() && schema.get("additionalProperties").is_none() && schema.get("type").is_none())
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

/// Metadata keeps what ObjectMeta has, at the root and in embedded objects.
fn prune_object_meta(meta: &mut Value, path: &str, unknown: &mut Vec<String>) {
    let mut dropped = Vec::new();
    let typed: Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, _> =
        serde_ignored::deserialize(&*meta, |p| dropped.push(p.to_string().replace(".?", "")));
    if let Ok(typed) = typed {
        if !dropped.is_empty() {
            unknown.extend(dropped.iter().map(|d| format!("{path}.{d}")));
            *meta = serde_json::to_value(typed).unwrap_or_default();
        }
    }
}

fn prune(schema: &Value, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    if schema.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true)) {
        if let Some(meta) = value.get_mut("metadata") {
            prune_object_meta(meta, &child(path, "metadata"), unknown);
        }
        if preserves_unknown(schema) {
            return;
        }
    }
    match value {
        Value::Object(fields) => {
            if preserves_unknown(schema) {
                for (k, v) in fields.iter_mut() {
                    if let Some(s) = property(schema, k) {
                        prune(s, v, &child(path, k), unknown);
                    }
                }
            } else {
                let embedded = schema.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true));
                fields.retain(|k, _| {
                    let known = property(schema, k).is_some() || (embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"));
                    if !known {
                        unknown.push(child(path, k));
                    }
                    known
                });
                for (k, v) in fields.iter_mut() {
                    if let Some(s) = property(schema, k) {
                        prune(s, v, &child(path, k), unknown);
                    }
                }
            }
            default_missing(schema, fields);
        }
        Value::Array(items) => {
            if let Some(items_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(items_schema, item, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

fn default_missing(schema: &Value, fields: &mut Map<String, Value>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, s) in props {
            if let (None, Some(default)) = (fields.get(k), s.get("default")) {
                fields.insert(k.clone(), default.clone());
            }
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn invalid(path: &str, value: &Value, why: String) -> FieldError {
    let shown = match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    FieldError { field: path.into(), reason: "FieldValueInvalid", message: format!("Invalid value: {shown}: {why}") }
}

fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let actual = type_name(value);
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) && schema.get("type").is_some() {
            errors.push(invalid(path, value, format!("{path} in body must be of type {}: \"null\"", schema["type"].as_str().unwrap_or("object"))));
        }
        return;
    }
    if let Some(wanted) = schema.get("type").and_then(Value::as_str) {
        let fits = wanted == actual || (wanted == "number" && actual == "integer") || (int_or_string && matches!(actual, "integer" | "string"));
        if !fits {
            errors.push(invalid(path, value, format!("{path} in body must be of type {wanted}: {actual:?}")));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            errors.push(FieldError {
                field: path.into(),
                reason: "FieldValueNotSupported",
                message: format!("Unsupported value: {value}: supported values: {}", list.join(", ")),
            });
        }
    }
    let limit = |key: &str| schema.get(key).and_then(Value::as_f64);
    if let Some(n) = value.as_f64() {
        if let Some(min) = limit("minimum").filter(|m| n < *m) {
            errors.push(invalid(path, value, format!("{path} in body should be greater than or equal to {min}")));
        }
        if let Some(max) = limit("maximum").filter(|m| n > *m) {
            errors.push(invalid(path, value, format!("{path} in body should be less than or equal to {max}")));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as f64;
        if let Some(min) = limit("minLength").filter(|m| len < *m) {
            errors.push(invalid(path, value, format!("{path} in body should be at least {min} chars long")));
        }
        if let Some(max) = limit("maxLength").filter(|m| len > *m) {
            errors.push(FieldError { field: path.into(), reason: "FieldValueTooLong", message: format!("Too long: may not be more than {max} bytes") });
        }
    }
    match value {
        Value::Object(fields) => {
            for (k, v) in fields {
                if let Some(s) = property(schema, k) {
                    validate(s, v, &child(path, k), errors);
                }
            }
            required(schema, fields, path, errors);
        }
        Value::Array(items) => {
            if let Some(max) = limit("maxItems").filter(|m| items.len() as f64 > *m) {
                errors.push(FieldError { field: path.into(), reason: "FieldValueTooMany", message: format!("Too many: {}: must have at most {max} items", items.len()) });
            }
            if let Some(min) = limit("minItems").filter(|m| (items.len() as f64) < *m) {
                errors.push(invalid(path, value, format!("{path} in body should have at least {min} items")));
            }
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(s, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

fn required(schema: &Value, fields: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    for name in schema.get("required").and_then(Value::as_array).map_or(&[][..], Vec::as_slice).iter().filter_map(Value::as_str) {
        if !fields.contains_key(name) {
            errors.push(FieldError { field: child(path, name), reason: "FieldValueRequired", message: "Required value".into() });
        }
    }
}

/// The value a printer column's JSONPath (`.spec.size`, `.status.items[0].name`)
/// picks out of an object.
pub fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut v = obj;
    for part in path.trim_start_matches('.').split('.').filter(|p| !p.is_empty()) {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !name.is_empty() {
            v = v.get(name)?;
        }
        if let Some(i) = index {
            v = v.get(i)?;
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn widget() -> CustomResource {
        CustomResource {
            schema: json!({"type": "object", "properties": {
                "spec": {"type": "object", "required": ["size"], "properties": {
                    "size": {"type": "integer", "minimum": 1, "maximum": 10},
                    "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                    "port": {"x-kubernetes-int-or-string": true},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}}),
            columns: vec![],
            qualified_kind: "Widget.example.com".into(),
        }
    }

    #[test]
    fn prunes_unknown_fields_and_fills_defaults() {
        let obj = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"size": 3, "bogus": 1, "extra": {"anything": {"goes": true}}, "port": "http"}, "top": 1});
        let (pruned, unknown) = widget().prune(&obj);
        assert_eq!(unknown, ["spec.bogus", "top"]);
        let with_meta = json!({"metadata": {"name": "w", "bogusMeta": 1}, "spec": {"size": 1}});
        let (meta_pruned, meta_unknown) = widget().prune(&with_meta);
        assert_eq!(meta_unknown, ["metadata.bogusMeta"]);
        assert_eq!(meta_pruned["metadata"], json!({"name": "w"}));
        assert_eq!(pruned["spec"], json!({"size": 3, "color": "red", "extra": {"anything": {"goes": true}}, "port": "http"}));
        assert!(pruned.get("top").is_none() && pruned["metadata"]["name"] == "w");
    }

    #[test]
    fn validates_types_ranges_enums_and_required_fields() {
        let errors = |spec: Value| -> Vec<String> { widget().validate(&json!({"spec": spec})).iter().map(|e| e.to_string()).collect() };
        assert!(errors(json!({"size": 3, "color": "blue", "tags": ["a"]})).is_empty());
        assert_eq!(errors(json!({"size": "big"})), ["spec.size: Invalid value: \"big\": spec.size in body must be of type integer: \"string\""]);
        assert_eq!(errors(json!({"size": 11})), ["spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"]);
        assert_eq!(errors(json!({"size": 1, "color": "green"})), ["spec.color: Unsupported value: \"green\": supported values: \"red\", \"blue\""]);
        assert_eq!(errors(json!({})), ["spec.size: Required value"]);
        assert_eq!(errors(json!({"size": 1, "tags": [1]})), ["spec.tags[0]: Invalid value: 1: spec.tags[0] in body must be of type string: \"integer\""]);
    }

    #[test]
    fn json_paths_pick_columns() {
        let obj = json!({"spec": {"size": 3, "items": [{"name": "a"}]}});
        assert_eq!(json_path(&obj, ".spec.size"), Some(&json!(3)));
        assert_eq!(json_path(&obj, ".spec.items[0].name"), Some(&json!("a")));
        assert_eq!(json_path(&obj, ".status.phase"), None);
    }
}

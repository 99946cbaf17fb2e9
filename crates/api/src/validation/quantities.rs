//! Quantities that do not parse. Upstream refuses them while decoding the
//! body (`resource.Quantity`'s UnmarshalJSON), before validation, so the
//! client gets a 400 with the parser's message; k8s-openapi keeps a
//! quantity as a plain string, so Skiff looks for them here, at the places
//! each kind's schema says hold one.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::Value;

use crate::schema::{resolve, DEFINITIONS, REF_PREFIX};

const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// Where quantities are inside one type: only the branches that lead to one.
#[derive(Debug)]
enum Node {
    Quantity,
    Fields(Vec<(String, Node)>),
    Items(Box<Node>),
    Values(Box<Node>),
}

/// Each definition that holds a quantity somewhere, by name.
static TREES: LazyLock<HashMap<&'static str, Node>> = LazyLock::new(|| {
    DEFINITIONS.iter().filter_map(|(name, schema)| Some((name.as_str(), tree(schema, &mut vec![name.as_str()])?))).collect()
});

fn tree<'a>(schema: &'a Value, expanding: &mut Vec<&'a str>) -> Option<Node> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.strip_prefix(REF_PREFIX)?;
        if name == QUANTITY {
            return Some(Node::Quantity);
        }
        // Recursive types (JSONSchemaProps) hold no quantity.
        if expanding.contains(&name) {
            return None;
        }
        expanding.push(name);
        let found = tree(resolve(reference)?, expanding);
        expanding.pop();
        return found;
    }
    if let Some(Value::Array(all)) = schema.get("allOf") {
        return all.iter().find_map(|s| tree(s, expanding));
    }
    if let Some(Value::Object(props)) = schema.get("properties") {
        let fields: Vec<(String, Node)> = props.iter().filter_map(|(k, s)| Some((k.clone(), tree(s, expanding)?))).collect();
        return (!fields.is_empty()).then_some(Node::Fields(fields));
    }
    if let Some(items) = schema.get("items") {
        return tree(items, expanding).map(|n| Node::Items(Box::new(n)));
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        return tree(values, expanding).map(|n| Node::Values(Box::new(n)));
    }
    None
}

/// Reads the quantities of `obj` (of the type named `schema_name`) as
/// upstream's Quantity decodes them: a JSON number (YAML's `cpu: 2`) is
/// taken as its text, which k8s-openapi's string quantity needs; a string
/// must parse. Fails with the parser's message for the first that does not.
pub fn decode(schema_name: &str, obj: &mut Value) -> Result<(), &'static str> {
    match TREES.get(schema_name) {
        Some(node) => walk(node, obj),
        None => Ok(()),
    }
}

fn walk(node: &Node, value: &mut Value) -> Result<(), &'static str> {
    match (node, value) {
        (Node::Quantity, v @ Value::Number(_)) => *v = Value::String(v.to_string()),
        (Node::Quantity, Value::String(text)) => super::quantity_error(text).map_or(Ok(()), Err)?,
        (Node::Quantity, Value::Null) => {}
        (Node::Quantity, _) => return Err(super::QUANTITY_FORMAT),
        (Node::Fields(fields), Value::Object(map)) => {
            for (k, n) in fields {
                if let Some(v) = map.get_mut(k) {
                    walk(n, v)?;
                }
            }
        }
        (Node::Items(n), Value::Array(items)) => items.iter_mut().try_for_each(|v| walk(n, v))?,
        (Node::Values(n), Value::Object(map)) => map.values_mut().try_for_each(|v| walk(n, v))?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quantities_are_found_where_the_schema_has_them() {
        let check = |schema: &str, mut obj: serde_json::Value| decode(&format!("io.k8s.api.{schema}"), &mut obj);
        let pod = |cpu: serde_json::Value| json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": cpu}}}], "overhead": {"memory": "1Mi"}}});
        assert_eq!(check("core.v1.Pod", pod(json!("100m"))), Ok(()));
        assert_eq!(check("core.v1.Pod", pod(json!("lots"))), Err(super::super::QUANTITY_FORMAT));
        assert_eq!(check("core.v1.Pod", pod(json!({"a": 1}))), Err(super::super::QUANTITY_FORMAT));
        assert!(check("core.v1.ResourceQuota", json!({"spec": {"hard": {"pods": "5x"}}})).is_err());
        assert_eq!(check("core.v1.PersistentVolumeClaim", json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}})), Ok(()));
        assert!(check("apps.v1.Deployment", json!({"spec": {"template": {"spec": {"containers": [{"resources": {"limits": {"memory": "1..5Gi"}}}]}}}})).is_err());
        let mut numeric = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": 2, "memory": 0.5}}}]}});
        assert_eq!(decode("io.k8s.api.core.v1.Pod", &mut numeric), Ok(()));
        assert_eq!(numeric["spec"]["containers"][0]["resources"]["requests"], json!({"cpu": "2", "memory": "0.5"}));
        // Kinds without quantities are not walked at all.
        assert_eq!(check("core.v1.ConfigMap", json!({"data": {"a": "lots"}})), Ok(()));
    }
}

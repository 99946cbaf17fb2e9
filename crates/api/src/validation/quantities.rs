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

/// The parser's message for the first quantity in `obj` (of the type
/// named `schema_name`) that does not parse.
pub fn unparsable(schema_name: &str, obj: &Value) -> Option<&'static str> {
    find(TREES.get(schema_name)?, obj)
}

/// Quantities written as JSON numbers (YAML's `cpu: 2`) as the strings
/// k8s-openapi decodes; upstream's Quantity decodes both.
pub fn numbers_as_text(schema_name: &str, obj: &mut Value) {
    if let Some(node) = TREES.get(schema_name) {
        stringify(node, obj);
    }
}

fn stringify(node: &Node, value: &mut Value) {
    match (node, value) {
        (Node::Quantity, v @ Value::Number(_)) => *v = Value::String(v.to_string()),
        (Node::Fields(fields), Value::Object(map)) => {
            for (k, n) in fields {
                if let Some(v) = map.get_mut(k) {
                    stringify(n, v);
                }
            }
        }
        (Node::Items(n), Value::Array(items)) => items.iter_mut().for_each(|v| stringify(n, v)),
        (Node::Values(n), Value::Object(map)) => map.values_mut().for_each(|v| stringify(n, v)),
        _ => {}
    }
}

fn find(node: &Node, value: &Value) -> Option<&'static str> {
    match (node, value) {
        (Node::Quantity, Value::String(text)) => super::quantity_error(text),
        (Node::Quantity, Value::Number(_) | Value::Null) => None,
        (Node::Quantity, _) => Some(super::QUANTITY_FORMAT),
        (Node::Fields(fields), Value::Object(map)) => fields.iter().find_map(|(k, n)| find(n, map.get(k)?)),
        (Node::Items(n), Value::Array(items)) => items.iter().find_map(|v| find(n, v)),
        (Node::Values(n), Value::Object(map)) => map.values().find_map(|v| find(n, v)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn quantities_are_found_where_the_schema_has_them() {
        let pod = |cpu: &str| json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": cpu}}}], "overhead": {"memory": "1Mi"}}});
        assert_eq!(unparsable("io.k8s.api.core.v1.Pod", &pod("100m")), None);
        assert_eq!(unparsable("io.k8s.api.core.v1.Pod", &pod("lots")), Some(super::super::QUANTITY_FORMAT));
        let quota = json!({"spec": {"hard": {"pods": "5x"}}});
        assert!(unparsable("io.k8s.api.core.v1.ResourceQuota", &quota).is_some());
        let claim = json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}});
        assert_eq!(unparsable("io.k8s.api.core.v1.PersistentVolumeClaim", &claim), None);
        let deployment = json!({"spec": {"template": {"spec": {"containers": [{"resources": {"limits": {"memory": "1..5Gi"}}}]}}}});
        assert!(unparsable("io.k8s.api.apps.v1.Deployment", &deployment).is_some());
        let mut numeric = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": 2, "memory": 0.5}}}]}});
        numbers_as_text("io.k8s.api.core.v1.Pod", &mut numeric);
        assert_eq!(numeric["spec"]["containers"][0]["resources"]["requests"], json!({"cpu": "2", "memory": "0.5"}));
        // Kinds without quantities are not walked at all.
        assert_eq!(unparsable("io.k8s.api.core.v1.ConfigMap", &json!({"data": {"a": "lots"}})), None);
    }
}

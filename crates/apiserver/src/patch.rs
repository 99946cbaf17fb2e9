//! PATCH bodies: JSON patch (RFC 6902) and JSON merge patch (RFC 7386)
//! through the `json-patch` crate, and strategic merge patch, which merges
//! lists of objects by their merge key instead of replacing them.
//!
//! The strategic merge keys come from upstream's API types
//! (`patchMergeKey`/`patchStrategy` tags); this covers the fields clients
//! patch in practice. Directives: `$patch` (replace, delete, merge),
//! `$retainKeys`, `$deleteFromPrimitiveList/<field>`; `$setElementOrder` is
//! accepted and ignored (order is kept from the target).

use serde_json::{Map, Value};

use crate::status::{ApiError, ApiResult};

/// What a PATCH request's content type says its body is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    /// Server-side apply (`managed`).
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> ApiResult<PatchKind> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" => Ok(PatchKind::Apply),
            other => Err(ApiError::unsupported_media_type(format!(
                "the server does not support the patch type {other:?}; supported: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
            ))),
        }
    }
}

/// A patch document, decoded once from a PATCH request's body.
pub enum Patch {
    Json(json_patch::Patch),
    Merge(Value),
    Strategic(Map<String, Value>),
    /// Server-side apply: the applied configuration (YAML or JSON), which
    /// `managed::apply` merges by field ownership.
    Apply(Value),
}

impl Patch {
    pub fn decode(kind: PatchKind, body: &[u8]) -> ApiResult<Patch> {
        let json = || serde_json::from_slice::<Value>(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")));
        match kind {
            PatchKind::Json => {
                let ops = serde_json::from_value(json()?).map_err(|e| ApiError::bad_request(format!("error decoding JSON patch: {e}")))?;
                Ok(Patch::Json(ops))
            }
            PatchKind::Merge => match json()? {
                patch @ Value::Object(_) => Ok(Patch::Merge(patch)),
                _ => Err(ApiError::bad_request("a merge patch must be a JSON object")),
            },
            PatchKind::Strategic => match json()? {
                Value::Object(patch) => Ok(Patch::Strategic(patch)),
                _ => Err(ApiError::bad_request("a strategic merge patch must be a JSON object")),
            },
            PatchKind::Apply => match serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))? {
                config @ Value::Object(_) => Ok(Patch::Apply(config)),
                _ => Err(ApiError::bad_request("an apply configuration must be an object")),
            },
        }
    }

    /// `target` patched; apply patches are merged by `managed::apply`.
    pub fn applied_to(&self, target: &Value) -> ApiResult<Value> {
        let mut out = target.clone();
        match self {
            Patch::Json(ops) => json_patch::patch(&mut out, ops)
                .map_err(|e| ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("the server rejected our request due to an error in our request: {e}")))?,
            Patch::Merge(patch) => json_patch::merge(&mut out, patch),
            Patch::Strategic(patch) => strategic_merge_object(&mut out, patch)?,
            Patch::Apply(_) => return Err(ApiError::unsupported_media_type("apply patches are not supported here")),
        }
        Ok(out)
    }
}

/// The key upstream merges list elements of `field` by, if any.
pub(crate) fn merge_key(field: &str, sample: &Value) -> Option<&'static str> {
    Some(match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets"
        | "resourceClaims" | "schedulingGates" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        // Container ports merge by containerPort, service ports by port.
        "ports" if sample.get("containerPort").is_some() => "containerPort",
        "ports" => "port",
        _ => return None,
    })
}

/// Lists of scalars upstream merges as sets instead of replacing.
pub(crate) fn merges_primitives(field: &str) -> bool {
    field == "finalizers"
}

fn strategic_merge_object(target: &mut Value, patch: &Map<String, Value>) -> ApiResult<()> {
    match patch.get("$patch").and_then(|v| v.as_str()) {
        Some("replace") => {
            let mut replacement = patch.clone();
            replacement.remove("$patch");
            *target = Value::Object(replacement);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(ApiError::bad_request(format!("unknown patch type: {other}"))),
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(|k| k.as_str()).collect();
        if let Some(obj) = target.as_object_mut() {
            obj.retain(|k, _| keep.contains(&k.as_str()) || patch.contains_key(k));
        }
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(remove)) = (target.get_mut(field), value) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        let obj = target.as_object_mut().expect("made an object above");
        match value {
            Value::Null => {
                obj.remove(key);
            }
            Value::Object(inner) => {
                let slot = obj.entry(key.clone()).or_insert(Value::Null);
                strategic_merge_object(slot, inner)?;
                if slot.is_null() {
                    obj.remove(key);
                }
            }
            Value::Array(items) => {
                let merged = match obj.get(key) {
                    Some(Value::Array(existing)) => merge_list(key, existing, items)?,
                    _ => items.iter().filter(|i| !is_delete_directive(i)).map(strip_directives).collect(),
                };
                obj.insert(key.clone(), Value::Array(merged));
            }
            scalar => {
                obj.insert(key.clone(), scalar.clone());
            }
        }
    }
    Ok(())
}

fn is_delete_directive(v: &Value) -> bool {
    v.get("$patch").and_then(|p| p.as_str()) == Some("delete")
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(o.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip_directives(v))).collect()),
        other => other.clone(),
    }
}

fn merge_list(field: &str, existing: &[Value], patch: &[Value]) -> ApiResult<Vec<Value>> {
    // A list-level `{"$patch": "replace"}` element replaces the whole list.
    if patch.iter().any(|p| p.get("$patch").and_then(|v| v.as_str()) == Some("replace") && p.as_object().is_some_and(|o| o.len() == 1)) {
        return Ok(patch.iter().filter(|p| p.get("$patch").is_none()).map(strip_directives).collect());
    }
    if merges_primitives(field) {
        let mut out = existing.to_vec();
        for p in patch {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        return Ok(out);
    }
    let Some(key) = patch.first().or(existing.first()).and_then(|s| merge_key(field, s)) else {
        return Ok(patch.iter().map(strip_directives).collect());
    };
    let mut out = existing.to_vec();
    for item in patch {
        let id = item.get(key);
        let position = id.and_then(|id| out.iter().position(|e| e.get(key) == Some(id)));
        match (position, is_delete_directive(item)) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                let Value::Object(inner) = item else {
                    return Err(ApiError::bad_request(format!("{field}: expected objects in a list merged by {key}")));
                };
                strategic_merge_object(&mut out[i], inner)?;
            }
            (None, false) => out.push(strip_directives(item)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(content_type: &str, target: &Value, body: &[u8]) -> ApiResult<Value> {
        Patch::decode(PatchKind::from_content_type(content_type)?, body)?.applied_to(target)
    }

    fn smp(target: Value, patch: Value) -> Value {
        patched("application/strategic-merge-patch+json", &target, patch.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn containers_merge_by_name() {
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "A", "value": "1"}]}, {"name": "b", "image": "y"}]}});
        let out = smp(pod.clone(), json!({"spec": {"containers": [{"name": "a", "image": "x2", "env": [{"name": "B", "value": "2"}]}]}}));
        assert_eq!(out["spec"]["containers"][0]["image"], "x2");
        assert_eq!(out["spec"]["containers"][0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(out["spec"]["containers"][1]["name"], "b");
        let out = smp(pod, json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}));
        assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn directives() {
        let obj = json!({"metadata": {"finalizers": ["a"], "labels": {"x": "1", "y": "2"}}, "data": {"k": "v"}});
        let out = smp(obj.clone(), json!({"metadata": {"finalizers": ["b"], "labels": {"y": null}}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(out["metadata"]["labels"], json!({"x": "1"}));
        let out = smp(obj.clone(), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!([]));
        let out = smp(obj, json!({"data": {"$patch": "replace", "n": "m"}}));
        assert_eq!(out["data"], json!({"n": "m"}));
    }

    #[test]
    fn json_and_merge_patches() {
        let obj = json!({"data": {"a": "1"}});
        let out = patched("application/json-patch+json", &obj, br#"[{"op":"add","path":"/data/b","value":"2"}]"#).unwrap();
        assert_eq!(out["data"], json!({"a": "1", "b": "2"}));
        let out = patched("application/merge-patch+json", &obj, br#"{"data":{"a":null}}"#).unwrap();
        assert_eq!(out["data"], json!({}));
        assert!(patched("application/json-patch+json", &obj, br#"[{"op":"test","path":"/data/a","value":"x"}]"#).is_err());
    }
}

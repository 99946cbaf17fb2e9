//! Table output (`meta.k8s.io/v1` Table), the server-side printing kubectl
//! uses for `kubectl get`; the columns are in `printers`.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::printers::Column;
use crate::resources::ResourceDef;

/// Upstream's `duration.HumanDuration`.
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds();
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let mins = secs / 60;
    if mins < 10 {
        let rem = secs % 60;
        return if rem == 0 { format!("{mins}m") } else { format!("{mins}m{rem}s") };
    }
    if mins < 3 * 60 {
        return format!("{mins}m");
    }
    let hours = mins / 60;
    if hours < 8 {
        let rem = mins % 60;
        return if rem == 0 { format!("{hours}h") } else { format!("{hours}h{rem}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 8 * 24 {
        let rem = hours % 24;
        return if rem == 0 { format!("{}d", hours / 24) } else { format!("{}d{rem}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = hours / 24;
        let rem = days % 365;
        return if rem == 0 { format!("{}y", days / 365) } else { format!("{}y{rem}d", days / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

/// A Table of `objects`; `include_object` is upstream's `includeObject`
/// (None, Metadata (default) or Object). Wide columns carry priority 1,
/// which kubectl shows only with `-o wide`.
pub fn table(def: &ResourceDef, objects: impl Iterator<Item = Value>, list_meta: Value, include_object: &str) -> Value {
    let now = Utc::now();
    let cols = crate::printers::for_resource(def);
    let rows: Vec<Value> = objects
        .map(|mut o| {
            let cells: Vec<Value> = cols.iter().map(|c| c.value(&o, now)).collect();
            let object = match include_object {
                "None" => Value::Null,
                "Object" => o,
                _ => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get_mut("metadata").map_or(json!({}), Value::take),
                }),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let mut out = opening(&cols, list_meta);
    out.insert("rows".into(), Value::Array(rows));
    Value::Object(out)
}

/// Everything of a Table but its rows.
fn opening(cols: &[Column], list_meta: Value) -> serde_json::Map<String, Value> {
    let definitions: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": if c.name == "Name" { "name" } else { "" },
                "description": "",
                "priority": if c.wide { 1 } else { 0 },
            })
        })
        .collect();
    let Value::Object(head) = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
    }) else {
        unreachable!("a JSON object literal")
    };
    head
}

/// A Table written row by row from the objects' JSON, as a list is
/// streamed: each object is parsed only as far as its columns need, and
/// what the row carries of it is copied, not encoded again.
pub struct TableWriter {
    cols: Vec<Column>,
    now: DateTime<Utc>,
    include: Include,
}

enum Include {
    None,
    Metadata,
    Object,
}

impl TableWriter {
    pub fn new(def: &ResourceDef, include_object: &str) -> TableWriter {
        let include = match include_object {
            "None" => Include::None,
            "Object" => Include::Object,
            _ => Include::Metadata,
        };
        TableWriter { cols: crate::printers::for_resource(def), now: Utc::now(), include }
    }

    /// The Table up to its first row: `{...,"rows":[`.
    pub fn opening(&self, list_meta: Value) -> Vec<u8> {
        let mut out = serde_json::to_vec(&opening(&self.cols, list_meta)).expect("JSON serializes");
        out.pop(); // the closing brace
        out.extend_from_slice(b",\"rows\":[");
        out
    }

    pub const CLOSING: &'static [u8] = b"]}";

    /// Appends the row of the object whose JSON is `object`, after a comma
    /// unless it is the `first`.
    pub fn push_row(&self, out: &mut Vec<u8>, object: &[u8], first: bool) -> serde_json::Result<()> {
        let (parsed, metadata) = parse_for_columns(object)?;
        let cells: Vec<Value> = self.cols.iter().map(|c| c.value(&parsed, self.now)).collect();
        if !first {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"cells\":");
        serde_json::to_writer(&mut *out, &cells)?;
        out.extend_from_slice(b",\"object\":");
        match self.include {
            Include::None => out.extend_from_slice(b"null"),
            Include::Object => out.extend_from_slice(object),
            Include::Metadata => {
                out.extend_from_slice(br#"{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":"#);
                out.extend_from_slice(&metadata);
                out.push(b'}');
            }
        }
        out.push(b'}');
        Ok(())
    }
}

/// An object's fields but `metadata.managedFields` (no column reads it,
/// and it is often the largest part of an object), and its metadata's raw
/// JSON.
fn parse_for_columns(object: &[u8]) -> serde_json::Result<(Value, Cow<'_, [u8]>)> {
    // Objects as stored (and stamped) start with their metadata: it is
    // parsed on its own, which also finds where it ends, then the rest.
    if let Some(rest) = object.strip_prefix(br#"{"metadata":"#) {
        let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<WithoutManagedFields>();
        if let Some(Ok(WithoutManagedFields(metadata))) = stream.next() {
            let (raw, after) = rest.split_at(stream.byte_offset());
            let mut others = Vec::with_capacity(after.len() + 1);
            others.push(b'{');
            others.extend_from_slice(after.strip_prefix(b",").unwrap_or(after));
            let mut fields: serde_json::Map<String, Value> = serde_json::from_slice(&others)?;
            fields.insert("metadata".into(), metadata);
            return Ok((Value::Object(fields), Cow::Borrowed(raw)));
        }
    }
    // Any other order (objects converted from another version): parsed
    // whole, the metadata encoded again for the row.
    let mut parsed: Value = serde_json::from_slice(object)?;
    let metadata = parsed.get("metadata").map_or(Ok(b"{}".to_vec()), serde_json::to_vec)?;
    if let Some(metadata) = parsed.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    Ok((parsed, Cow::Owned(metadata)))
}

/// Metadata without its managedFields, which are skipped unread.
struct WithoutManagedFields(Value);

impl<'de> serde::Deserialize<'de> for WithoutManagedFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = WithoutManagedFields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object's metadata")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "managedFields" {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    } else {
                        out.insert(key, map.next_value()?);
                    }
                }
                Ok(WithoutManagedFields(Value::Object(out)))
            }
        }
        d.deserialize_map(Fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_written_from_json_are_the_rows_of_the_parsed_objects() {
        let def = crate::resources::find("", "v1", "pods").expect("pods are served");
        let pod = json!({
            "metadata": {"name": "web", "namespace": "a", "creationTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]},
            "apiVersion": "v1", "kind": "Pod",
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [{"name": "c", "ready": true, "restartCount": 2}]},
        });
        // Any field order, and the stored one: metadata first.
        let any_order = serde_json::to_vec(&pod).unwrap();
        let stored = format!(r#"{{"metadata":{},"apiVersion":"v1","kind":"Pod","spec":{},"status":{}}}"#, pod["metadata"], pod["spec"], pod["status"]);
        for include in ["None", "Metadata", "Object"] {
            let writer = TableWriter::new(def, include);
            let mut streamed = writer.opening(json!({"resourceVersion": "7"}));
            writer.push_row(&mut streamed, stored.as_bytes(), true).unwrap();
            writer.push_row(&mut streamed, &any_order, false).unwrap();
            streamed.extend_from_slice(TableWriter::CLOSING);
            let streamed: Value = serde_json::from_slice(&streamed).unwrap();
            let whole = table(def, [pod.clone(), pod.clone()].into_iter(), json!({"resourceVersion": "7"}), include);
            // Ages differ only if the two were made a second apart.
            assert_eq!(streamed["rows"][1], whole["rows"][1], "includeObject={include}");
            if include != "Object" {
                assert_eq!(streamed["rows"][0], whole["rows"][0], "includeObject={include}, stored order");
            }
            assert_eq!(streamed["columnDefinitions"], whole["columnDefinitions"]);
        }
    }

    #[test]
    fn durations_read_like_kubectl() {
        let d = |s| human_duration(chrono::TimeDelta::seconds(s));
        assert_eq!(d(5), "5s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(150), "2m30s");
        assert_eq!(d(900), "15m");
        assert_eq!(d(4 * 3600 + 120), "4h2m");
        assert_eq!(d(30 * 3600), "30h");
        assert_eq!(d(3 * 86400 + 3600), "3d1h");
        assert_eq!(d(100 * 86400), "100d");
    }
}

//! Table output (`meta.k8s.io/v1` Table), the server-side printing kubectl
//! uses for `kubectl get`; the columns are in `printers`.

use chrono::Utc;
use serde_json::{json, Value};

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
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

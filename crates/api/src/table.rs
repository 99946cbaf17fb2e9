//! Table output (`meta.k8s.io/v1` Table), the server-side printing kubectl
//! uses for `kubectl get`. Columns follow upstream's printers for the kinds
//! covered here; every other kind gets upstream's default, NAME and AGE.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::resources::ResourceDef;

struct Column {
    name: &'static str,
    kind: &'static str,
    /// Shown only with `-o wide`.
    wide: bool,
    cell: fn(&Value, DateTime<Utc>) -> Value,
}

const fn col(name: &'static str, kind: &'static str, cell: fn(&Value, DateTime<Utc>) -> Value) -> Column {
    Column {
        name,
        kind,
        wide: false,
        cell,
    }
}

const fn wide(name: &'static str, kind: &'static str, cell: fn(&Value, DateTime<Utc>) -> Value) -> Column {
    Column {
        name,
        kind,
        wide: true,
        cell,
    }
}

fn s(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Null) | None => Value::String(String::new()),
        Some(other) => Value::String(other.to_string()),
    }
}

fn name(o: &Value, _: DateTime<Utc>) -> Value {
    s(o.pointer("/metadata/name"))
}

fn age(o: &Value, now: DateTime<Utc>) -> Value {
    let created = o
        .pointer("/metadata/creationTimestamp")
        .and_then(|v| v.as_str())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    match created {
        Some(t) => Value::String(human_duration(now - t.with_timezone(&Utc))),
        None => Value::String("<unknown>".into()),
    }
}

fn count(v: Option<&Value>) -> Value {
    json!(v.and_then(|v| v.as_object()).map_or(0, |m| m.len()))
}

fn or_none(v: Value) -> Value {
    match v.as_str() {
        Some("") => Value::String("<none>".into()),
        _ => v,
    }
}

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

fn pod_ready(o: &Value, _: DateTime<Utc>) -> Value {
    let statuses = o.pointer("/status/containerStatuses").and_then(|v| v.as_array());
    let total = o.pointer("/spec/containers").and_then(|v| v.as_array()).map_or(0, |c| c.len());
    let ready = statuses.map_or(0, |s| s.iter().filter(|c| c["ready"] == json!(true)).count());
    Value::String(format!("{ready}/{total}"))
}

fn pod_status(o: &Value, _: DateTime<Utc>) -> Value {
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        return Value::String("Terminating".into());
    }
    let waiting = o
        .pointer("/status/containerStatuses")
        .and_then(|v| v.as_array())
        .and_then(|cs| cs.iter().find_map(|c| c.pointer("/state/waiting/reason").and_then(|r| r.as_str())));
    if let Some(reason) = waiting {
        return Value::String(reason.into());
    }
    match o.pointer("/status/reason").or_else(|| o.pointer("/status/phase")) {
        Some(v) => s(Some(v)),
        None => Value::String("Pending".into()),
    }
}

fn pod_restarts(o: &Value, _: DateTime<Utc>) -> Value {
    let n: i64 = o
        .pointer("/status/containerStatuses")
        .and_then(|v| v.as_array())
        .map_or(0, |cs| cs.iter().filter_map(|c| c["restartCount"].as_i64()).sum());
    json!(n)
}

fn service_ports(o: &Value, _: DateTime<Utc>) -> Value {
    let ports = o.pointer("/spec/ports").and_then(|v| v.as_array());
    let text: Vec<String> = ports
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_i64() {
                        Some(np) => format!("{}:{np}/{proto}", p["port"]),
                        None => format!("{}/{proto}", p["port"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    or_none(Value::String(text.join(",")))
}

fn columns(def: &ResourceDef) -> Vec<Column> {
    let n = col("Name", "string", name);
    let a = col("Age", "string", age);
    match (def.group, def.kind) {
        ("", "Namespace") => vec![n, col("Status", "string", |o, _| s(o.pointer("/status/phase"))), a],
        ("", "ConfigMap") => vec![n, col("Data", "integer", |o, _| json!(o.get("data").and_then(|d| d.as_object()).map_or(0, |m| m.len()) + o.get("binaryData").and_then(|d| d.as_object()).map_or(0, |m| m.len()))), a],
        ("", "Secret") => vec![n, col("Type", "string", |o, _| s(o.get("type"))), col("Data", "integer", |o, _| count(o.get("data"))), a],
        ("", "ServiceAccount") => vec![n, col("Secrets", "integer", |o, _| json!(o.get("secrets").and_then(|s| s.as_array()).map_or(0, |a| a.len()))), a],
        ("", "Pod") => vec![
            n,
            col("Ready", "string", pod_ready),
            col("Status", "string", pod_status),
            col("Restarts", "string", pod_restarts),
            a,
            wide("IP", "string", |o, _| or_none(s(o.pointer("/status/podIP")))),
            wide("Node", "string", |o, _| or_none(s(o.pointer("/spec/nodeName")))),
            wide("Nominated Node", "string", |o, _| or_none(s(o.pointer("/status/nominatedNodeName")))),
            wide("Readiness Gates", "string", |_, _| Value::String("<none>".into())),
        ],
        ("", "Service") => vec![
            n,
            col("Type", "string", |o, _| s(o.pointer("/spec/type"))),
            col("Cluster-IP", "string", |o, _| or_none(s(o.pointer("/spec/clusterIP")))),
            col("External-IP", "string", |o, _| {
                let ips: Vec<String> = o.pointer("/spec/externalIPs").and_then(|v| v.as_array()).map(|a| a.iter().filter_map(|i| i.as_str().map(String::from)).collect()).unwrap_or_default();
                or_none(Value::String(ips.join(",")))
            }),
            col("Port(s)", "string", service_ports),
            a,
            wide("Selector", "string", |o, _| {
                let sel: Vec<String> = o.pointer("/spec/selector").and_then(|v| v.as_object()).map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect()).unwrap_or_default();
                or_none(Value::String(sel.join(",")))
            }),
        ],
        ("apps", "Deployment") => vec![
            n,
            col("Ready", "string", |o, _| Value::String(format!("{}/{}", o.pointer("/status/readyReplicas").and_then(|v| v.as_i64()).unwrap_or(0), o.pointer("/spec/replicas").and_then(|v| v.as_i64()).unwrap_or(0)))),
            col("Up-to-date", "integer", |o, _| json!(o.pointer("/status/updatedReplicas").and_then(|v| v.as_i64()).unwrap_or(0))),
            col("Available", "integer", |o, _| json!(o.pointer("/status/availableReplicas").and_then(|v| v.as_i64()).unwrap_or(0))),
            a,
        ],
        _ => vec![n, a],
    }
}

/// A Table of `objects`; `include_object` is upstream's `includeObject`
/// (None, Metadata (default) or Object). Wide columns carry priority 1,
/// which kubectl shows only with `-o wide`.
pub fn table(def: &ResourceDef, objects: impl Iterator<Item = Value>, list_meta: Value, include_object: &str) -> Value {
    let now = Utc::now();
    let cols: Vec<Column> = columns(def).into_iter().collect();
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
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|c| (c.cell)(&o, now)).collect();
            let object = match include_object {
                "None" => Value::Null,
                "Object" => o,
                _ => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
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

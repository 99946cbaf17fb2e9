//! The columns `kubectl get` shows for each built-in kind, as upstream's
//! printers (`pkg/printers/internalversion`) define them: names, types,
//! which are `-o wide` only, and how each cell is worded.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::table::human_duration;

type CellFn = fn(&Value, DateTime<Utc>) -> Value;

/// How a column's cells are computed.
pub enum Cell {
    /// By upstream's printer logic for a built-in kind.
    Printer(CellFn),
    /// By a custom resource's JSONPath; dates shown as ages, as upstream.
    Path { path: String, date: bool },
}

pub struct Column {
    pub name: Cow<'static, str>,
    pub kind: &'static str,
    /// Shown only with `-o wide` (priority 1).
    pub wide: bool,
    pub cell: Cell,
}

impl Column {
    pub fn value(&self, o: &Value, now: DateTime<Utc>) -> Value {
        match &self.cell {
            Cell::Printer(f) => f(o, now),
            Cell::Path { path, date } => match crate::custom::json_path(o, path) {
                Some(Value::String(t)) if *date => Value::String(since(DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc)), now)),
                Some(v) => v.clone(),
                None => Value::Null,
            },
        }
    }
}

const fn col(name: &'static str, kind: &'static str, cell: CellFn) -> Column {
    Column { name: Cow::Borrowed(name), kind, wide: false, cell: Cell::Printer(cell) }
}

const fn wide(name: &'static str, kind: &'static str, cell: CellFn) -> Column {
    Column { name: Cow::Borrowed(name), kind, wide: true, cell: Cell::Printer(cell) }
}

/// The columns of a resource: a custom resource's `additionalPrinterColumns`
/// after NAME (NAME and AGE without any), else the built-in kind's.
pub fn for_resource(def: &crate::ResourceDef) -> Vec<Column> {
    let Some(custom) = &def.custom else { return columns(def.group, def.kind) };
    if custom.columns.is_empty() {
        return vec![col("Name", "string", name), col("Age", "string", age)];
    }
    let mut out = vec![col("Name", "string", name)];
    for c in &custom.columns {
        let kind = match c["type"].as_str().unwrap_or("string") {
            "integer" => "integer",
            "number" => "number",
            "boolean" => "boolean",
            "date" => "date",
            _ => "string",
        };
        out.push(Column {
            name: Cow::Owned(c["name"].as_str().unwrap_or_default().to_string()),
            kind,
            wide: c["priority"].as_i64().unwrap_or(0) > 0,
            cell: Cell::Path { path: c["jsonPath"].as_str().unwrap_or_default().to_string(), date: kind == "date" },
        });
    }
    out
}

// Reading fields.

/// The value at a JSON pointer of plain field names and indexes, if not
/// null. (serde_json's `pointer` unescapes each token with allocating
/// replaces, a cost every cell of every row of a Table paid.)
fn at<'a>(o: &'a Value, pointer: &str) -> Option<&'a Value> {
    let found = pointer.split('/').skip(1).try_fold(o, |v, token| match v {
        Value::Object(fields) => fields.get(token),
        Value::Array(items) => items.get(token.parse::<usize>().ok()?),
        _ => None,
    });
    found.filter(|v| !v.is_null())
}

fn text(o: &Value, pointer: &str) -> String {
    match at(o, pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn int(o: &Value, pointer: &str) -> i64 {
    at(o, pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn list<'a>(o: &'a Value, pointer: &str) -> &'a [Value] {
    at(o, pointer).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn none_if_empty(s: String) -> Value {
    Value::String(if s.is_empty() { "<none>".into() } else { s })
}

fn time(o: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    at(o, pointer)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// How long ago, as kubectl words it; `<unknown>` when never.
fn since(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    t.map_or_else(|| "<unknown>".into(), |t| human_duration(now - t))
}

fn name(o: &Value, _: DateTime<Utc>) -> Value {
    Value::String(text(o, "/metadata/name"))
}

fn age(o: &Value, now: DateTime<Utc>) -> Value {
    Value::String(since(time(o, "/metadata/creationTimestamp"), now))
}

fn created_at(o: &Value, _: DateTime<Utc>) -> Value {
    Value::String(text(o, "/metadata/creationTimestamp"))
}

/// `k=v,k2=v2`, sorted by key, as `labels.FormatLabels`.
fn labels(map: Option<&Value>) -> String {
    let mut pairs: Vec<String> = map
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect())
        .unwrap_or_default();
    pairs.sort();
    pairs.join(",")
}

/// `metav1.FormatLabelSelector`: `app=web,tier in (a,b)`, `<none>` when
/// it selects everything.
fn selector(o: &Value, pointer: &str) -> Value {
    match at(o, pointer).map(crate::selector::LabelSelector::from_object) {
        Some(Ok(sel)) => none_if_empty(sel.to_string()),
        Some(Err(e)) => Value::String(e),
        None => none_if_empty(String::new()),
    }
}

fn containers_of(o: &Value, pod_spec: &str) -> Value {
    let names: Vec<String> = list(o, &format!("{pod_spec}/containers")).iter().map(|c| text(c, "/name")).collect();
    Value::String(names.join(","))
}

fn images_of(o: &Value, pod_spec: &str) -> Value {
    let images: Vec<String> = list(o, &format!("{pod_spec}/containers")).iter().map(|c| text(c, "/image")).collect();
    Value::String(images.join(","))
}

/// The wide Containers, Images and Selector columns of workloads.
macro_rules! workload_wide {
    ($spec:literal, $selector:literal) => {
        [
            wide("Containers", "string", |o, _| containers_of(o, $spec)),
            wide("Images", "string", |o, _| images_of(o, $spec)),
            wide("Selector", "string", |o, _| selector(o, $selector)),
        ]
    };
}

fn condition_true(o: &Value, pointer: &str, kind: &str) -> bool {
    list(o, pointer).iter().any(|c| c["type"] == kind && c["status"] == "True")
}

// Pods.

fn pod_ready(o: &Value, _: DateTime<Utc>) -> Value {
    let ready = list(o, "/status/containerStatuses").iter().filter(|c| c["ready"] == true).count();
    Value::String(format!("{ready}/{}", list(o, "/spec/containers").len()))
}

fn pod_status(o: &Value, _: DateTime<Utc>) -> Value {
    let mut reason = at(o, "/status/reason").or_else(|| at(o, "/status/phase")).and_then(Value::as_str).unwrap_or("Pending").to_string();
    if list(o, "/status/conditions").iter().any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated") {
        reason = "SchedulingGated".into();
    }
    let init = list(o, "/status/initContainerStatuses");
    for (i, c) in init.iter().enumerate() {
        if at(c, "/state/terminated/exitCode").and_then(Value::as_i64) == Some(0) {
            continue;
        }
        reason = if let Some(r) = at(c, "/state/terminated/reason").and_then(Value::as_str) {
            format!("Init:{r}")
        } else if let Some(r) = at(c, "/state/waiting/reason").and_then(Value::as_str).filter(|r| *r != "PodInitializing") {
            format!("Init:{r}")
        } else {
            format!("Init:{i}/{}", list(o, "/spec/initContainers").len())
        };
        return Value::String(reason);
    }
    for c in list(o, "/status/containerStatuses").iter().rev() {
        if let Some(r) = at(c, "/state/waiting/reason").and_then(Value::as_str) {
            reason = r.to_string();
        } else if let Some(t) = at(c, "/state/terminated") {
            reason = match t["reason"].as_str() {
                Some(r) => r.to_string(),
                None if t["signal"].as_i64().unwrap_or(0) != 0 => format!("Signal:{}", t["signal"]),
                None => format!("ExitCode:{}", t["exitCode"]),
            };
        }
    }
    if at(o, "/metadata/deletionTimestamp").is_some() {
        reason = if at(o, "/status/reason").and_then(Value::as_str) == Some("NodeLost") { "Unknown".into() } else { "Terminating".into() };
    }
    Value::String(reason)
}

fn pod_restarts(o: &Value, now: DateTime<Utc>) -> Value {
    let statuses = list(o, "/status/containerStatuses");
    let restarts: i64 = statuses.iter().map(|c| c["restartCount"].as_i64().unwrap_or(0)).sum();
    let last = statuses.iter().filter_map(|c| time(c, "/lastState/terminated/finishedAt")).max();
    Value::String(match last {
        Some(t) if restarts > 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    })
}

fn readiness_gates(o: &Value, _: DateTime<Utc>) -> Value {
    let gates = list(o, "/spec/readinessGates");
    if gates.is_empty() {
        return Value::String("<none>".into());
    }
    let ready = gates.iter().filter(|g| condition_true(o, "/status/conditions", g["conditionType"].as_str().unwrap_or_default())).count();
    Value::String(format!("{ready}/{}", gates.len()))
}

// Services and networking.

fn service_external_ip(o: &Value, _: DateTime<Utc>) -> Value {
    let external: Vec<String> = list(o, "/spec/externalIPs").iter().filter_map(|v| v.as_str().map(String::from)).collect();
    match text(o, "/spec/type").as_str() {
        "ExternalName" => Value::String(text(o, "/spec/externalName")),
        "LoadBalancer" => {
            let mut ips: Vec<String> = list(o, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| i["ip"].as_str().or(i["hostname"].as_str()).unwrap_or_default().to_string())
                .collect();
            ips.extend(external);
            Value::String(if ips.is_empty() { "<pending>".into() } else { ips.join(",") })
        }
        _ => none_if_empty(external.join(",")),
    }
}

fn service_ports(o: &Value, _: DateTime<Utc>) -> Value {
    let ports: Vec<String> = list(o, "/spec/ports")
        .iter()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64().filter(|n| *n != 0) {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    none_if_empty(ports.join(","))
}

fn load_balancer_addresses(o: &Value) -> String {
    let addrs: Vec<String> = list(o, "/status/loadBalancer/ingress")
        .iter()
        .map(|i| i["ip"].as_str().or(i["hostname"].as_str()).unwrap_or_default().to_string())
        .collect();
    addrs.join(",")
}

fn endpoints(o: &Value, _: DateTime<Utc>) -> Value {
    let mut all: Vec<String> = Vec::new();
    for subset in list(o, "/subsets") {
        let ports = list(subset, "/ports");
        for addr in list(subset, "/addresses") {
            let ip = text(addr, "/ip");
            if ports.is_empty() {
                all.push(ip.clone());
            }
            all.extend(ports.iter().map(|p| format!("{ip}:{}", p["port"])));
        }
    }
    abbreviate(all)
}

/// Upstream shows three entries, then `+ N more...`.
fn abbreviate(items: Vec<String>) -> Value {
    let n = items.len();
    if n > 3 {
        return Value::String(format!("{} + {} more...", items[..3].join(","), n - 3));
    }
    none_if_empty(items.join(","))
}

fn slice_ports(o: &Value, _: DateTime<Utc>) -> Value {
    let ports: Vec<String> = list(o, "/ports").iter().map(|p| p["port"].as_i64().map_or("<unset>".into(), |n| n.to_string())).collect();
    if ports.is_empty() && at(o, "/ports").is_some() {
        return Value::String("<unset>".into());
    }
    abbreviate(ports)
}

fn slice_endpoints(o: &Value, _: DateTime<Utc>) -> Value {
    abbreviate(list(o, "/endpoints").iter().flat_map(|e| list(e, "/addresses").iter().filter_map(|a| a.as_str().map(String::from))).collect())
}

fn ingress_hosts(o: &Value, _: DateTime<Utc>) -> Value {
    let hosts: Vec<String> = list(o, "/spec/rules").iter().map(|r| r["host"].as_str().unwrap_or("*").to_string()).collect();
    Value::String(if hosts.is_empty() { "*".into() } else { hosts.join(",") })
}

// Workloads.

fn job_status(o: &Value, _: DateTime<Utc>) -> Value {
    let conds = "/status/conditions";
    let status = if condition_true(o, conds, "Failed") {
        "Failed"
    } else if condition_true(o, conds, "Complete") {
        "Complete"
    } else if at(o, "/spec/suspend") == Some(&json!(true)) || condition_true(o, conds, "Suspended") {
        "Suspended"
    } else if condition_true(o, conds, "FailureTarget") {
        "FailureTarget"
    } else if condition_true(o, conds, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if int(o, "/status/terminating") > 0 && at(o, "/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        "Running"
    };
    Value::String(status.into())
}

fn job_completions(o: &Value, _: DateTime<Utc>) -> Value {
    let succeeded = int(o, "/status/succeeded");
    Value::String(match at(o, "/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(o, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    })
}

fn job_duration(o: &Value, now: DateTime<Utc>) -> Value {
    let Some(start) = time(o, "/status/startTime") else { return Value::String(String::new()) };
    let end = time(o, "/status/completionTime").unwrap_or(now);
    Value::String(human_duration(end - start))
}

fn hpa_targets(o: &Value, _: DateTime<Utc>) -> Value {
    let current = list(o, "/status/currentMetrics");
    let targets: Vec<String> = list(o, "/spec/metrics")
        .iter()
        .map(|m| {
            let Some(r) = at(m, "/resource").or_else(|| at(m, "/containerResource")) else { return "<unknown>".into() };
            let name = text(r, "/name");
            let now = current.iter().find_map(|c| at(c, "/resource").or_else(|| at(c, "/containerResource")).filter(|c| text(c, "/name") == name));
            if let Some(u) = at(r, "/target/averageUtilization") {
                let cur = now.and_then(|c| at(c, "/current/averageUtilization")).map_or("<unknown>".into(), |v| format!("{v}%"));
                format!("{name}: {cur}/{u}%")
            } else {
                let cur = now.and_then(|c| at(c, "/current/averageValue")).map_or("<unknown>".into(), |v| text(v, ""));
                format!("{name}: {cur}/{}", text(r, "/target/averageValue"))
            }
        })
        .collect();
    none_if_empty(targets.join(", "))
}

fn quota(o: &Value, limits: bool) -> Value {
    let mut entries: Vec<String> = at(o, "/spec/hard")
        .and_then(Value::as_object)
        .map(|hard| {
            hard.iter()
                .filter(|(k, _)| k.starts_with("limits.") == limits)
                .map(|(k, v)| {
                    let used = o.pointer(&format!("/status/used/{}", k.replace('~', "~0").replace('/', "~1"))).and_then(Value::as_str).unwrap_or("0");
                    format!("{k}: {used}/{}", v.as_str().unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    Value::String(entries.join(", "))
}

// Nodes, storage, events.

fn node_status(o: &Value, _: DateTime<Utc>) -> Value {
    let ready = list(o, "/status/conditions").iter().find(|c| c["type"] == "Ready");
    let mut status = match ready.and_then(|c| c["status"].as_str()) {
        Some("True") => "Ready".to_string(),
        Some("False") => "NotReady".into(),
        _ => "Unknown".into(),
    };
    if at(o, "/spec/unschedulable") == Some(&json!(true)) {
        status.push_str(",SchedulingDisabled");
    }
    Value::String(status)
}

fn node_roles(o: &Value, _: DateTime<Utc>) -> Value {
    let mut roles: Vec<String> = at(o, "/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
                    Some(role) if !role.is_empty() => Some(role.to_string()),
                    _ if k == "kubernetes.io/role" => v.as_str().map(String::from),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    none_if_empty(roles.join(","))
}

fn node_address(o: &Value, kind: &str) -> Value {
    let addr = list(o, "/status/addresses").iter().find(|a| a["type"] == kind).map(|a| text(a, "/address"));
    none_if_empty(addr.unwrap_or_default())
}

/// `RWO,ROX`, as upstream abbreviates access modes.
fn access_modes(o: &Value, pointer: &str) -> Value {
    let modes: Vec<&str> = list(o, pointer)
        .iter()
        .filter_map(|m| match m.as_str()? {
            "ReadWriteOnce" => Some("RWO"),
            "ReadOnlyMany" => Some("ROX"),
            "ReadWriteMany" => Some("RWX"),
            "ReadWriteOncePod" => Some("RWOP"),
            _ => None,
        })
        .collect();
    Value::String(modes.join(","))
}

fn event_last_seen(o: &Value, now: DateTime<Utc>) -> Value {
    let first = time(o, "/firstTimestamp").or_else(|| time(o, "/eventTime")).or_else(|| time(o, "/deprecatedFirstTimestamp"));
    let last = time(o, "/series/lastObservedTime")
        .or_else(|| time(o, "/lastTimestamp"))
        .or_else(|| time(o, "/deprecatedLastTimestamp"))
        .or(first);
    let count = at(o, "/series/count").or_else(|| at(o, "/count")).or_else(|| at(o, "/deprecatedCount")).and_then(Value::as_i64).unwrap_or(1);
    Value::String(if count > 1 {
        format!("{} (x{count} over {})", since(last, now), since(first, now))
    } else {
        since(last, now)
    })
}

fn event_object(o: &Value, _: DateTime<Utc>) -> Value {
    let obj = at(o, "/involvedObject").or_else(|| at(o, "/regarding")).cloned().unwrap_or_default();
    Value::String(format!("{}/{}", text(&obj, "/kind").to_lowercase(), text(&obj, "/name")))
}

fn message_of(o: &Value, _: DateTime<Utc>) -> Value {
    Value::String(at(o, "/message").or_else(|| at(o, "/note")).and_then(Value::as_str).unwrap_or_default().to_string())
}

fn storage_class_name(o: &Value, _: DateTime<Utc>) -> Value {
    let name = text(o, "/metadata/name");
    let annotations = ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"];
    let default = annotations.iter().any(|a| o.pointer("/metadata/annotations").and_then(|m| m.get(*a)) == Some(&json!("true")));
    Value::String(if default { format!("{name} (default)") } else { name })
}

fn role_ref(o: &Value, _: DateTime<Utc>) -> Value {
    Value::String(format!("{}/{}", text(o, "/roleRef/kind"), text(o, "/roleRef/name")))
}

fn subjects(o: &Value, kind: &str) -> Value {
    let names: Vec<String> = list(o, "/subjects")
        .iter()
        .filter(|s| s["kind"] == kind)
        .map(|s| if kind == "ServiceAccount" { format!("{}/{}", text(s, "/namespace"), text(s, "/name")) } else { text(s, "/name") })
        .collect();
    Value::String(names.join(", "))
}

fn bool_text(o: &Value, pointer: &str, default: bool) -> Value {
    Value::String(at(o, pointer).and_then(Value::as_bool).unwrap_or(default).to_string())
}

fn count_of(o: &Value, pointer: &str) -> Value {
    json!(list(o, pointer).len())
}

/// The columns for `kind` of `group`: upstream's, or NAME and AGE (and
/// CREATED AT for the kinds upstream prints so) for the rest.
pub fn columns(group: &str, kind: &str) -> Vec<Column> {
    let n = col("Name", "string", name);
    let a = col("Age", "string", age);
    let created = col("Created At", "date", created_at);
    match (group, kind) {
        ("", "Pod") => vec![
            n,
            col("Ready", "string", pod_ready),
            col("Status", "string", pod_status),
            col("Restarts", "string", pod_restarts),
            a,
            wide("IP", "string", |o, _| none_if_empty(text(o, "/status/podIP"))),
            wide("Node", "string", |o, _| none_if_empty(text(o, "/spec/nodeName"))),
            wide("Nominated Node", "string", |o, _| none_if_empty(text(o, "/status/nominatedNodeName"))),
            wide("Readiness Gates", "string", readiness_gates),
        ],
        ("", "PodTemplate") => vec![
            n,
            col("Containers", "string", |o, _| containers_of(o, "/template/spec")),
            col("Images", "string", |o, _| images_of(o, "/template/spec")),
            col("Pod Labels", "string", |o, _| Value::String(labels(at(o, "/template/metadata/labels")))),
        ],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => with_wide(
            vec![
                n,
                col("Desired", "integer", |o, _| json!(int(o, "/spec/replicas"))),
                col("Current", "integer", |o, _| json!(int(o, "/status/replicas"))),
                col("Ready", "integer", |o, _| json!(int(o, "/status/readyReplicas"))),
                a,
            ],
            workload_wide!("/spec/template/spec", "/spec/selector"),
        ),
        ("", "Service") => vec![
            n,
            col("Type", "string", |o, _| Value::String(text(o, "/spec/type"))),
            col("Cluster-IP", "string", |o, _| none_if_empty(text(o, "/spec/clusterIP"))),
            col("External-IP", "string", service_external_ip),
            col("Port(s)", "string", service_ports),
            a,
            wide("Selector", "string", |o, _| none_if_empty(labels(at(o, "/spec/selector")))),
        ],
        ("", "Endpoints") => vec![n, col("Endpoints", "string", endpoints), a],
        ("", "Node") => vec![
            n,
            col("Status", "string", node_status),
            col("Roles", "string", node_roles),
            a,
            col("Version", "string", |o, _| Value::String(text(o, "/status/nodeInfo/kubeletVersion"))),
            wide("Internal-IP", "string", |o, _| node_address(o, "InternalIP")),
            wide("External-IP", "string", |o, _| node_address(o, "ExternalIP")),
            wide("OS-Image", "string", |o, _| Value::String(text(o, "/status/nodeInfo/osImage"))),
            wide("Kernel-Version", "string", |o, _| Value::String(text(o, "/status/nodeInfo/kernelVersion"))),
            wide("Container-Runtime", "string", |o, _| Value::String(text(o, "/status/nodeInfo/containerRuntimeVersion"))),
        ],
        ("", "Event") | ("events.k8s.io", "Event") => vec![
            col("Last Seen", "string", event_last_seen),
            col("Type", "string", |o, _| Value::String(text(o, "/type"))),
            col("Reason", "string", |o, _| Value::String(text(o, "/reason"))),
            col("Object", "string", event_object),
            wide("Subobject", "string", |o, _| Value::String(text(o, "/involvedObject/fieldPath"))),
            wide("Source", "string", |o, _| Value::String(at(o, "/source/component").map_or_else(|| text(o, "/reportingController"), |_| text(o, "/source/component")))),
            col("Message", "string", message_of),
            wide("First Seen", "string", |o, now| Value::String(since(time(o, "/firstTimestamp").or_else(|| time(o, "/eventTime")), now))),
            wide("Count", "string", |o, _| Value::String(int(o, "/count").max(1).to_string())),
            wide("Name", "string", name),
        ],
        ("", "Namespace") => vec![n, col("Status", "string", |o, _| Value::String(text(o, "/status/phase"))), a],
        ("", "Secret") => vec![n, col("Type", "string", |o, _| Value::String(text(o, "/type"))), col("Data", "string", |o, _| json!(at(o, "/data").and_then(Value::as_object).map_or(0, |m| m.len()))), a],
        ("", "ServiceAccount") => vec![n, col("Secrets", "string", |o, _| count_of(o, "/secrets")), a],
        ("", "ConfigMap") => vec![
            n,
            col("Data", "string", |o, _| {
                let len = |p| at(o, p).and_then(Value::as_object).map_or(0, |m| m.len());
                json!(len("/data") + len("/binaryData"))
            }),
            a,
        ],
        ("", "PersistentVolume") => vec![
            n,
            col("Capacity", "string", |o, _| Value::String(text(o, "/spec/capacity/storage"))),
            col("Access Modes", "string", |o, _| access_modes(o, "/spec/accessModes")),
            col("Reclaim Policy", "string", |o, _| Value::String(text(o, "/spec/persistentVolumeReclaimPolicy"))),
            col("Status", "string", |o, _| Value::String(text(o, "/status/phase"))),
            col("Claim", "string", |o, _| {
                Value::String(at(o, "/spec/claimRef").map_or(String::new(), |c| format!("{}/{}", text(c, "/namespace"), text(c, "/name"))))
            }),
            col("StorageClass", "string", |o, _| Value::String(text(o, "/spec/storageClassName"))),
            col("VolumeAttributesClass", "string", |o, _| none_if_empty(text(o, "/spec/volumeAttributesClassName"))),
            col("Reason", "string", |o, _| Value::String(text(o, "/status/reason"))),
            a,
            wide("VolumeMode", "string", |o, _| Value::String(at(o, "/spec/volumeMode").map_or("Filesystem".into(), |_| text(o, "/spec/volumeMode")))),
        ],
        ("", "PersistentVolumeClaim") => vec![
            n,
            col("Status", "string", |o, _| Value::String(text(o, "/status/phase"))),
            col("Volume", "string", |o, _| Value::String(text(o, "/spec/volumeName"))),
            col("Capacity", "string", |o, _| Value::String(text(o, "/status/capacity/storage"))),
            col("Access Modes", "string", |o, _| access_modes(o, "/status/accessModes")),
            col("StorageClass", "string", |o, _| Value::String(text(o, "/spec/storageClassName"))),
            col("VolumeAttributesClass", "string", |o, _| none_if_empty(text(o, "/spec/volumeAttributesClassName"))),
            a,
            wide("VolumeMode", "string", |o, _| Value::String(at(o, "/spec/volumeMode").map_or("Filesystem".into(), |_| text(o, "/spec/volumeMode")))),
        ],
        ("", "ResourceQuota") => vec![n, a, col("Request", "string", |o, _| quota(o, false)), col("Limit", "string", |o, _| quota(o, true))],
        ("", "LimitRange") | ("rbac.authorization.k8s.io", "Role" | "ClusterRole") | ("apiextensions.k8s.io", "CustomResourceDefinition") => vec![n, created],
        ("", "ComponentStatus") => vec![
            n,
            col("Status", "string", |o, _| {
                let healthy = list(o, "/conditions").iter().any(|c| c["type"] == "Healthy" && c["status"] == "True");
                Value::String(if healthy { "Healthy" } else { "Unhealthy" }.into())
            }),
            col("Message", "string", |o, _| Value::String(list(o, "/conditions").first().map(|c| text(c, "/message")).unwrap_or_default())),
            col("Error", "string", |o, _| Value::String(list(o, "/conditions").first().map(|c| text(c, "/error")).unwrap_or_default())),
        ],
        ("apps", "Deployment") => with_wide(
            vec![
                n,
                col("Ready", "string", |o, _| Value::String(format!("{}/{}", int(o, "/status/readyReplicas"), int(o, "/spec/replicas")))),
                col("Up-to-date", "string", |o, _| json!(int(o, "/status/updatedReplicas"))),
                col("Available", "string", |o, _| json!(int(o, "/status/availableReplicas"))),
                a,
            ],
            workload_wide!("/spec/template/spec", "/spec/selector"),
        ),
        ("apps", "DaemonSet") => with_wide(
            vec![
                n,
                col("Desired", "integer", |o, _| json!(int(o, "/status/desiredNumberScheduled"))),
                col("Current", "integer", |o, _| json!(int(o, "/status/currentNumberScheduled"))),
                col("Ready", "integer", |o, _| json!(int(o, "/status/numberReady"))),
                col("Up-to-date", "integer", |o, _| json!(int(o, "/status/updatedNumberScheduled"))),
                col("Available", "integer", |o, _| json!(int(o, "/status/numberAvailable"))),
                col("Node Selector", "string", |o, _| none_if_empty(labels(at(o, "/spec/template/spec/nodeSelector")))),
                a,
            ],
            workload_wide!("/spec/template/spec", "/spec/selector"),
        ),
        ("apps", "StatefulSet") => vec![
            n,
            col("Ready", "string", |o, _| Value::String(format!("{}/{}", int(o, "/status/readyReplicas"), int(o, "/spec/replicas")))),
            a,
            wide("Containers", "string", |o, _| containers_of(o, "/spec/template/spec")),
            wide("Images", "string", |o, _| images_of(o, "/spec/template/spec")),
        ],
        ("apps", "ControllerRevision") => vec![
            n,
            col("Controller", "string", |o, _| {
                let owner = list(o, "/metadata/ownerReferences").iter().find(|r| r["controller"] == true);
                Value::String(owner.map_or("<none>".into(), |r| {
                    let group = r["apiVersion"].as_str().unwrap_or_default().split('/').rev().nth(1).unwrap_or_default();
                    let kind = r["kind"].as_str().unwrap_or_default().to_lowercase();
                    let kind = if group.is_empty() { kind } else { format!("{kind}.{group}") };
                    format!("{kind}/{}", r["name"].as_str().unwrap_or_default())
                }))
            }),
            col("Revision", "integer", |o, _| json!(int(o, "/revision"))),
            a,
        ],
        ("batch", "Job") => with_wide(
            vec![n, col("Status", "string", job_status), col("Completions", "string", job_completions), col("Duration", "string", job_duration), a],
            workload_wide!("/spec/template/spec", "/spec/selector"),
        ),
        ("batch", "CronJob") => with_wide(
            vec![
                n,
                col("Schedule", "string", |o, _| Value::String(text(o, "/spec/schedule"))),
                col("Timezone", "string", |o, _| none_if_empty(text(o, "/spec/timeZone"))),
                col("Suspend", "boolean", |o, _| bool_text(o, "/spec/suspend", false)),
                col("Active", "integer", |o, _| count_of(o, "/status/active")),
                col("Last Schedule", "string", |o, now| Value::String(since(time(o, "/status/lastScheduleTime"), now))),
                a,
            ],
            workload_wide!("/spec/jobTemplate/spec/template/spec", "/spec/jobTemplate/spec/selector"),
        ),
        ("autoscaling", "HorizontalPodAutoscaler") => vec![
            n,
            col("Reference", "string", |o, _| Value::String(format!("{}/{}", text(o, "/spec/scaleTargetRef/kind"), text(o, "/spec/scaleTargetRef/name")))),
            col("Targets", "string", hpa_targets),
            col("MinPods", "string", |o, _| Value::String(at(o, "/spec/minReplicas").map_or("<unset>".into(), |v| v.to_string()))),
            col("MaxPods", "integer", |o, _| json!(int(o, "/spec/maxReplicas"))),
            col("Replicas", "integer", |o, _| json!(int(o, "/status/currentReplicas"))),
            a,
        ],
        ("coordination.k8s.io", "Lease") => vec![n, col("Holder", "string", |o, _| Value::String(text(o, "/spec/holderIdentity"))), a],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            n,
            col("AddressType", "string", |o, _| Value::String(text(o, "/addressType"))),
            col("Ports", "string", slice_ports),
            col("Endpoints", "string", slice_endpoints),
            a,
        ],
        ("networking.k8s.io", "Ingress") => vec![
            n,
            col("Class", "string", |o, _| none_if_empty(text(o, "/spec/ingressClassName"))),
            col("Hosts", "string", ingress_hosts),
            col("Address", "string", |o, _| Value::String(load_balancer_addresses(o))),
            col("Ports", "string", |o, _| Value::String(if list(o, "/spec/tls").is_empty() { "80" } else { "80, 443" }.into())),
            a,
        ],
        ("networking.k8s.io", "IngressClass") => vec![
            n,
            col("Controller", "string", |o, _| Value::String(text(o, "/spec/controller"))),
            col("Parameters", "string", |o, _| {
                Value::String(at(o, "/spec/parameters").map_or("<none>".into(), |p| {
                    let group = at(p, "/apiGroup").map_or(String::new(), |_| format!(".{}", text(p, "/apiGroup")));
                    format!("{}{group}/{}", text(p, "/kind"), text(p, "/name"))
                }))
            }),
            a,
        ],
        ("appsafe.skiff.io", "AppGroup") => vec![
            n,
            col("Mode", "string", |o, _| Value::String(at(o, "/spec/mode").map_or(crate::appsafe::DISCOVER.into(), |m| text(m, "")))),
            col("Members", "integer", |o, _| json!(int(o, "/status/members"))),
            col("Ingress", "integer", |o, _| json!(list(o, "/status/ingress").len())),
            col("Egress", "integer", |o, _| json!(list(o, "/status/egress").len())),
            a,
            wide("Processes", "integer", |o, _| json!(list(o, "/status/processes").len())),
            wide("Selector", "string", |o, _| selector(o, "/spec/selector")),
        ],
        ("networking.k8s.io", "NetworkPolicy") => vec![n, col("Pod-Selector", "string", |o, _| selector(o, "/spec/podSelector")), a],
        ("policy", "PodDisruptionBudget") => vec![
            n,
            col("Min Available", "string", |o, _| Value::String(at(o, "/spec/minAvailable").map_or("N/A".into(), |v| text(v, "")))),
            col("Max Unavailable", "string", |o, _| Value::String(at(o, "/spec/maxUnavailable").map_or("N/A".into(), |v| text(v, "")))),
            col("Allowed Disruptions", "integer", |o, _| json!(int(o, "/status/disruptionsAllowed"))),
            a,
        ],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => vec![
            n,
            col("Role", "string", role_ref),
            a,
            wide("Users", "string", |o, _| subjects(o, "User")),
            wide("Groups", "string", |o, _| subjects(o, "Group")),
            wide("ServiceAccounts", "string", |o, _| subjects(o, "ServiceAccount")),
        ],
        ("scheduling.k8s.io", "PriorityClass") => vec![
            n,
            col("Value", "integer", |o, _| json!(int(o, "/value"))),
            col("Global-Default", "boolean", |o, _| bool_text(o, "/globalDefault", false)),
            a,
            col("PreemptionPolicy", "string", |o, _| Value::String(text(o, "/preemptionPolicy"))),
        ],
        ("storage.k8s.io", "StorageClass") => vec![
            col("Name", "string", storage_class_name),
            col("Provisioner", "string", |o, _| Value::String(text(o, "/provisioner"))),
            col("ReclaimPolicy", "string", |o, _| Value::String(text(o, "/reclaimPolicy"))),
            col("VolumeBindingMode", "string", |o, _| Value::String(text(o, "/volumeBindingMode"))),
            col("AllowVolumeExpansion", "string", |o, _| bool_text(o, "/allowVolumeExpansion", false)),
            a,
        ],
        ("storage.k8s.io", "VolumeAttachment") => vec![
            n,
            col("Attacher", "string", |o, _| Value::String(text(o, "/spec/attacher"))),
            col("PV", "string", |o, _| Value::String(text(o, "/spec/source/persistentVolumeName"))),
            col("Node", "string", |o, _| Value::String(text(o, "/spec/nodeName"))),
            col("Attached", "boolean", |o, _| bool_text(o, "/status/attached", false)),
            a,
        ],
        ("storage.k8s.io", "CSIDriver") => vec![
            n,
            col("AttachRequired", "boolean", |o, _| bool_text(o, "/spec/attachRequired", true)),
            col("PodInfoOnMount", "boolean", |o, _| bool_text(o, "/spec/podInfoOnMount", false)),
            col("StorageCapacity", "boolean", |o, _| bool_text(o, "/spec/storageCapacity", false)),
            col("TokenRequests", "string", |o, _| {
                let audiences: Vec<String> = list(o, "/spec/tokenRequests").iter().map(|t| text(t, "/audience")).collect();
                none_if_empty(audiences.join(","))
            }),
            col("RequiresRepublish", "boolean", |o, _| bool_text(o, "/spec/requiresRepublish", false)),
            col("Modes", "string", |o, _| {
                let modes: Vec<String> = list(o, "/spec/volumeLifecycleModes").iter().filter_map(|m| m.as_str().map(String::from)).collect();
                Value::String(if modes.is_empty() { "Persistent".into() } else { modes.join(",") })
            }),
            a,
        ],
        ("storage.k8s.io", "CSINode") => vec![n, col("Drivers", "integer", |o, _| count_of(o, "/spec/drivers")), a],
        ("storage.k8s.io", "CSIStorageCapacity") => vec![
            n,
            col("StorageClassName", "string", |o, _| Value::String(text(o, "/storageClassName"))),
            col("Capacity", "string", |o, _| Value::String(text(o, "/capacity"))),
        ],
        ("node.k8s.io", "RuntimeClass") => vec![n, col("Handler", "string", |o, _| Value::String(text(o, "/handler"))), a],
        ("certificates.k8s.io", "CertificateSigningRequest") => vec![
            n,
            a,
            col("SignerName", "string", |o, _| Value::String(text(o, "/spec/signerName"))),
            col("Requestor", "string", |o, _| Value::String(text(o, "/spec/username"))),
            col("RequestedDuration", "string", |o, _| {
                Value::String(at(o, "/spec/expirationSeconds").and_then(Value::as_i64).map_or("<none>".into(), |s| human_duration(chrono::TimeDelta::seconds(s))))
            }),
            col("Condition", "string", |o, _| {
                let mut conds: Vec<String> = list(o, "/status/conditions").iter().map(|c| text(c, "/type")).collect();
                if conds.is_empty() {
                    conds.push("Pending".into());
                }
                if at(o, "/status/certificate").is_some() {
                    conds.push("Issued".into());
                }
                Value::String(conds.join(","))
            }),
        ],
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration") => {
            vec![n, col("Webhooks", "integer", |o, _| count_of(o, "/webhooks")), a]
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => vec![
            n,
            col("Validations", "integer", |o, _| count_of(o, "/spec/validations")),
            col("ParamKind", "string", |o, _| {
                Value::String(at(o, "/spec/paramKind").map_or("<unset>".into(), |p| format!("{} {}", text(p, "/apiVersion"), text(p, "/kind"))))
            }),
            a,
        ],
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => vec![
            n,
            col("PolicyName", "string", |o, _| Value::String(text(o, "/spec/policyName"))),
            col("ParamRef", "string", |o, _| Value::String(at(o, "/spec/paramRef").map_or("<unset>".into(), |p| text(p, "/name")))),
            a,
        ],
        ("flowcontrol.apiserver.k8s.io", "FlowSchema") => vec![
            n,
            col("PriorityLevel", "string", |o, _| Value::String(text(o, "/spec/priorityLevelConfiguration/name"))),
            col("MatchingPrecedence", "string", |o, _| json!(int(o, "/spec/matchingPrecedence"))),
            col("DistinguisherMethod", "string", |o, _| Value::String(at(o, "/spec/distinguisherMethod").map_or("<none>".into(), |_| text(o, "/spec/distinguisherMethod/type")))),
            a,
            col("MissingPL", "string", |o, _| {
                let dangling = list(o, "/status/conditions").iter().find(|c| c["type"] == "Dangling");
                Value::String(dangling.map_or("?".into(), |c| text(c, "/status")))
            }),
        ],
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration") => vec![
            n,
            col("Type", "string", |o, _| Value::String(text(o, "/spec/type"))),
            col("NominalConcurrencyShares", "string", |o, _| none_or(o, "/spec/limited/nominalConcurrencyShares")),
            col("Queues", "string", |o, _| none_or(o, "/spec/limited/limitResponse/queuing/queues")),
            col("HandSize", "string", |o, _| none_or(o, "/spec/limited/limitResponse/queuing/handSize")),
            col("QueueLengthLimit", "string", |o, _| none_or(o, "/spec/limited/limitResponse/queuing/queueLengthLimit")),
            a,
        ],
        ("apiregistration.k8s.io", "APIService") => vec![
            n,
            col("Service", "string", |o, _| {
                Value::String(at(o, "/spec/service").map_or("Local".into(), |s| format!("{}/{}", text(s, "/namespace"), text(s, "/name"))))
            }),
            col("Available", "string", |o, _| {
                let c = list(o, "/status/conditions").iter().find(|c| c["type"] == "Available");
                Value::String(match c {
                    Some(c) if c["status"] == "True" => "True".into(),
                    Some(c) => format!("{} ({})", text(c, "/status"), text(c, "/reason")),
                    None => "Unknown".into(),
                })
            }),
            a,
        ],
        _ => vec![n, a],
    }
}

fn none_or(o: &Value, pointer: &str) -> Value {
    Value::String(at(o, pointer).map_or("<none>".into(), |v| text(v, "")))
}

fn with_wide(mut columns: Vec<Column>, wide: [Column; 3]) -> Vec<Column> {
    columns.extend(wide);
    columns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(group: &str, kind: &str, o: Value) -> Vec<(String, Value)> {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:10:00Z").unwrap().with_timezone(&Utc);
        columns(group, kind).iter().map(|c| (c.name.to_string(), c.value(&o, now))).collect()
    }

    fn cells(group: &str, kind: &str, o: Value) -> Vec<Value> {
        row(group, kind, o).into_iter().map(|(_, v)| v).collect()
    }

    #[test]
    fn pods_read_as_kubectl_prints_them() {
        let pod = json!({
            "metadata": {"name": "web-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.42.0.7", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "lastState": {"terminated": {"finishedAt": "2026-01-01T00:05:00Z"}}},
                {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]},
        });
        assert_eq!(
            cells("", "Pod", pod),
            [json!("web-1"), json!("1/2"), json!("CrashLoopBackOff"), json!("2 (5m ago)"), json!("10m"), json!("10.42.0.7"), json!("n1"), json!("<none>"), json!("<none>")]
        );
    }

    #[test]
    fn workloads_jobs_and_cronjobs() {
        let job = json!({
            "metadata": {"name": "once", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"completions": 3, "selector": {"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]}]},
                     "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
            "status": {"succeeded": 3, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:42Z",
                       "conditions": [{"type": "Complete", "status": "True"}]},
        });
        assert_eq!(
            cells("batch", "Job", job),
            [json!("once"), json!("Complete"), json!("3/3"), json!("42s"), json!("10m"), json!("c"), json!("busybox"), json!("a=1,b=2,t in (x,y)")]
        );
        let cron = json!({"metadata": {"name": "tick"}, "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}});
        let names: Vec<String> = row("batch", "CronJob", cron.clone()).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[..7], ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age"]);
        assert_eq!(cells("batch", "CronJob", cron)[1..6], [json!("*/1 * * * *"), json!("<none>"), json!("false"), json!(0), json!("<unknown>")]);
    }

    #[test]
    fn services_nodes_quotas_and_bindings() {
        let svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.43.0.10", "ports": [{"port": 443, "nodePort": 30443, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        let c = cells("", "Service", svc);
        assert_eq!(c[1..5], [json!("NodePort"), json!("10.43.0.10"), json!("<none>"), json!("443:30443/TCP,53/UDP")]);
        let lb = json!({"spec": {"type": "LoadBalancer", "ports": []}});
        assert_eq!(cells("", "Service", lb)[3], "<pending>");
        let node = json!({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}, "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.32.4-skiff"}}});
        assert_eq!(cells("", "Node", node)[1..5], [json!("Ready,SchedulingDisabled"), json!("control-plane"), json!("<unknown>"), json!("v1.32.4-skiff")]);
        let quota = json!({"spec": {"hard": {"pods": "10", "limits.cpu": "4", "requests.cpu": "2"}}, "status": {"used": {"pods": "1"}}});
        assert_eq!(cells("", "ResourceQuota", quota)[2..], [json!("pods: 1/10, requests.cpu: 0/2"), json!("limits.cpu: 0/4")]);
        let binding = json!({"roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [
            {"kind": "User", "name": "bob"}, {"kind": "ServiceAccount", "name": "robot", "namespace": "ci"}]});
        assert_eq!(cells("rbac.authorization.k8s.io", "RoleBinding", binding)[1..], [json!("ClusterRole/view"), json!("<unknown>"), json!("bob"), json!(""), json!("ci/robot")]);
    }
}

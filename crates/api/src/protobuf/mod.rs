//! Decodes Kubernetes protobuf request bodies into the JSON the rest of the
//! server works on. Go clients (kubectl's generator commands among them)
//! send `application/vnd.kubernetes.protobuf`; upstream's wire format is
//! the `k8s\0` magic, then a `runtime.Unknown` envelope holding the kind
//! and the object's own message.
//!
//! Messages are described by `messages.txt` (see `skiff-protogen`); JSON
//! field names come from the OpenAPI schemas, so `volumeID` and `podIP`
//! come out spelled as upstream spells them. Fields Go embeds inline
//! (`Volume.volumeSource`, `Probe.handler`) have no JSON name of their own
//! and are merged into their parent, as Go's JSON encoder does.
//!
//! Go writes its non-pointer fields even when empty (`hostPort: 0`,
//! `stdin: false`), and its JSON encoder leaves them out (`omitempty`), so
//! zeros, `false` and empty strings are dropped, except in the fields where
//! upstream's types are pointers whose zero means something other than
//! unset (`replicas: 0`, `runAsUser: 0`, `storageClassName: ""`), or where
//! a zero is required to be written (`value` of a PriorityClass).

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::schema::DEFINITIONS;


/// What every protobuf-encoded Kubernetes object starts with.
pub const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    Message,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Label {
    Optional,
    Repeated,
    Map,
}

#[derive(Debug)]
struct Field {
    label: Label,
    name: &'static str,
    kind: Kind,
    message: &'static str,
}

type Messages = HashMap<&'static str, HashMap<u32, Field>>;

static MESSAGES: LazyLock<Messages> = LazyLock::new(|| parse_table(include_str!("messages.txt")));

fn parse_table(text: &'static str) -> Messages {
    let mut out: Messages = HashMap::new();
    let mut current = "";
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("message ") {
            current = name;
            out.entry(name).or_default();
            continue;
        }
        let parts: Vec<&'static str> = line.split(' ').collect();
        let [tag, label, name, kind, rest @ ..] = parts.as_slice() else { continue };
        let kind = match *kind {
            "string" => Kind::String,
            "bytes" => Kind::Bytes,
            "bool" => Kind::Bool,
            "int32" => Kind::Int32,
            "int64" => Kind::Int64,
            "double" => Kind::Double,
            "message" => Kind::Message,
            other => panic!("messages.txt: unknown kind {other}"),
        };
        let label = match *label {
            "repeated" => Label::Repeated,
            "map" => Label::Map,
            _ => Label::Optional,
        };
        let field = Field { label, name, kind, message: rest.first().copied().unwrap_or("") };
        out.get_mut(current).unwrap().insert(tag.parse().expect("messages.txt: tag"), field);
    }
    out
}

/// The message upstream encodes `kind` of `api_version` with.
fn message_name(api_version: &str, kind: &str) -> Option<&'static str> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let package = match group {
        "" => format!("io.k8s.api.core.{version}"),
        "apiextensions.k8s.io" => format!("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{version}"),
        "apiregistration.k8s.io" => format!("io.k8s.kube-aggregator.pkg.apis.apiregistration.{version}"),
        g => format!("io.k8s.api.{}.{version}", g.split('.').next().unwrap_or(g)),
    };
    [format!("{package}.{kind}"), format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}")]
        .into_iter()
        .find_map(|name| MESSAGES.keys().find(|k| k.eq_ignore_ascii_case(&name)).copied())
}

/// The schema of a message. prost renames messages to its own casing
/// (`AWSElasticBlockStoreVolumeSource` is `AwsElasticBlockStoreVolumeSource`
/// in the table), so names match ignoring case.
fn definition(message: &str) -> Option<&'static Value> {
    static BY_LOWERCASE: LazyLock<HashMap<String, &'static Value>> =
        LazyLock::new(|| DEFINITIONS.iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect());
    BY_LOWERCASE.get(&message.to_ascii_lowercase()).copied()
}

/// Decodes a protobuf body (magic, envelope, object) into its JSON form.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let raw = body.strip_prefix(MAGIC).ok_or("the body does not start with the Kubernetes protobuf prefix")?;
    // runtime.Unknown: typeMeta (1), raw (2), contentEncoding (3).
    let envelope = fields_of(raw)?;
    let text = |p: Option<&Payload>| match p {
        Some(Payload::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    if !text(envelope.get(&3)).is_empty() {
        return Err("encoded protobuf bodies (contentEncoding) are not supported".into());
    }
    let type_meta = match envelope.get(&1) {
        Some(Payload::Bytes(b)) => fields_of(b)?,
        _ => HashMap::new(),
    };
    let (api_version, kind) = (text(type_meta.get(&1)), text(type_meta.get(&2)));
    let name = message_name(&api_version, &kind).ok_or_else(|| format!("no protobuf message is known for {api_version:?} {kind:?}"))?;
    let object = match envelope.get(&2) {
        Some(Payload::Bytes(b)) => *b,
        _ => &[],
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), api_version.into());
    out.insert("kind".into(), kind.into());
    if let Value::Object(fields) = decode_message(name, object)? {
        out.extend(fields);
    }
    Ok(Value::Object(out))
}

/// Protobuf wire format reading: just what proto2 messages use.
struct Wire<'a> {
    buf: &'a [u8],
}

enum Payload<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    /// Skipped: no Kubernetes field is fixed32.
    Fixed32,
}

impl<'a> Wire<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or("truncated varint")?;
            self.buf = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err("truncated field".into());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn next(&mut self) -> Result<Option<(u32, Payload<'a>)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| "field tag out of range")?;
        let payload = match key & 7 {
            0 => Payload::Varint(self.varint()?),
            1 => Payload::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().unwrap())),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
                Payload::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Payload::Fixed32
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok(Some((tag, payload)))
    }
}

fn decode_message(name: &str, buf: &[u8]) -> Result<Value, String> {
    decode_fields(name, buf, None)
}

/// `names`: the JSON names to resolve fields against; a message Go
/// embeds inline uses its parent's.
fn decode_fields(name: &str, buf: &[u8], names: Option<&[&str]>) -> Result<Value, String> {
    if let Some(v) = special(name, buf)? {
        return Ok(v);
    }
    let fields = MESSAGES.get(name).ok_or_else(|| format!("unknown protobuf message {name}"))?;
    let schema = definition(name);
    let own: Vec<&str> = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let props = names.unwrap_or(&own);
    // Wrappers that are plain lists in JSON (`ExtraValue`: `{items}`).
    let is_list = schema.is_none()
        && names.is_none()
        && fields.len() == 1
        && fields.values().all(|f| f.label == Label::Repeated && f.name == "items");
    let mut out = Map::new();
    let mut wire = Wire { buf };
    while let Some((tag, payload)) = wire.next()? {
        let Some(field) = fields.get(&tag) else { continue };
        let json_name = json_name(field.name, props);
        match field.label {
            Label::Optional => match payload {
                Payload::Bytes(b) if field.kind == Kind::Message && !props.is_empty() && !props.contains(&json_name.as_str()) => {
                    if let Value::Object(inner) = decode_fields(field.message, b, Some(props))? {
                        out.extend(inner);
                    }
                }
                p => {
                    out.insert(json_name, field_value(field, p)?);
                }
            },
            Label::Repeated => {
                let items = out.entry(json_name).or_insert_with(|| Value::Array(Vec::new()));
                let items = items.as_array_mut().ok_or("field is both repeated and singular")?;
                match payload {
                    // Packed scalars: many values in one length-delimited run.
                    Payload::Bytes(bytes) if !matches!(field.kind, Kind::String | Kind::Bytes | Kind::Message) => {
                        let mut packed = Wire { buf: bytes };
                        while !packed.buf.is_empty() {
                            let p = match field.kind {
                                Kind::Double => Payload::Fixed64(u64::from_le_bytes(packed.take(8)?.try_into().unwrap())),
                                _ => Payload::Varint(packed.varint()?),
                            };
                            items.push(field_value(field, p)?);
                        }
                    }
                    p => items.push(field_value(field, p)?),
                }
            }
            Label::Map => {
                let Payload::Bytes(entry) = payload else { return Err(format!("map field {} is not length-delimited", field.name)) };
                let (mut key, mut value) = (String::new(), Value::Null);
                let mut wire = Wire { buf: entry };
                while let Some((t, p)) = wire.next()? {
                    match (t, p) {
                        (1, Payload::Bytes(k)) => key = String::from_utf8(k.to_vec()).map_err(|e| e.to_string())?,
                        (2, p) => value = field_value(field, p)?,
                        _ => {}
                    }
                }
                if value.is_null() {
                    value = match field.kind {
                        Kind::String | Kind::Bytes => Value::String(String::new()),
                        _ => Value::Object(Map::new()),
                    };
                }
                let map = out.entry(json_name).or_insert_with(|| Value::Object(Map::new()));
                map.as_object_mut().ok_or("field is both a map and not")?.insert(key, value);
            }
        }
    }
    out.retain(|name, v| !is_zero(v) || KEEP_ZERO.contains(&name.as_str()));
    if is_list {
        return Ok(out.into_iter().next().map(|(_, v)| v).unwrap_or(Value::Array(Vec::new())));
    }
    Ok(Value::Object(out))
}

fn field_value(field: &Field, payload: Payload) -> Result<Value, String> {
    let mismatch = || format!("field {} has the wrong wire type", field.name);
    Ok(match (field.kind, payload) {
        (Kind::String, Payload::Bytes(b)) => Value::String(String::from_utf8(b.to_vec()).map_err(|_| format!("field {} is not UTF-8", field.name))?),
        (Kind::Bytes, Payload::Bytes(b)) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        (Kind::Message, Payload::Bytes(b)) => decode_message(field.message, b)?,
        (Kind::Bool, Payload::Varint(v)) => Value::Bool(v != 0),
        (Kind::Int32, Payload::Varint(v)) => Value::from(v as i64 as i32),
        (Kind::Int64, Payload::Varint(v)) => Value::from(v as i64),
        (Kind::Double, Payload::Fixed64(v)) => serde_json::Number::from_f64(f64::from_bits(v)).map(Value::Number).unwrap_or(Value::Null),
        _ => return Err(mismatch()),
    })
}

/// Messages whose JSON form is not an object of their fields.
fn special(name: &str, buf: &[u8]) -> Result<Option<Value>, String> {
    const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";
    const APIEXTENSIONS: &str = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.";
    let short = name.rsplit('.').next().unwrap_or(name);
    let (meta, apiextensions) = (name.strip_prefix(META), name.strip_prefix(APIEXTENSIONS));
    let raw_json = |raw: &[u8]| -> Result<Value, String> {
        if raw.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(raw).map_err(|e| format!("embedded object in {short} is not JSON: {e}"))
    };
    let varint = |f: &HashMap<u32, Payload>, tag| match f.get(&tag) {
        Some(Payload::Varint(v)) => *v,
        _ => 0,
    };
    let string = |f: &HashMap<u32, Payload>, tag| match f.get(&tag) {
        Some(Payload::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    Ok(Some(match name {
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => Value::String(string(&fields_of(buf)?, 1)),
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => {
            let f = fields_of(buf)?;
            if varint(&f, 1) == 1 {
                Value::String(string(&f, 3))
            } else {
                Value::from(varint(&f, 2) as i64 as i32)
            }
        }
        _ if matches!(meta, Some("Time" | "MicroTime")) => {
            let f = fields_of(buf)?;
            let (seconds, nanos) = (varint(&f, 1) as i64, varint(&f, 2) as i64 as i32);
            // Go's zero time (and an absent one) is JSON null.
            if (seconds == 0 || seconds == -62_135_596_800) && nanos == 0 {
                Value::Null
            } else {
                let t = chrono::DateTime::from_timestamp(seconds, nanos.max(0) as u32).ok_or("time out of range")?;
                let format = if short == "Time" { "%Y-%m-%dT%H:%M:%SZ" } else { "%Y-%m-%dT%H:%M:%S%.6fZ" };
                Value::String(t.format(format).to_string())
            }
        }
        _ if meta == Some("Duration") => Value::String(go_duration(varint(&fields_of(buf)?, 1) as i64)),
        _ if meta == Some("FieldsV1") || apiextensions == Some("JSON") || name == "io.k8s.apimachinery.pkg.runtime.RawExtension" => {
            match fields_of(buf)?.remove(&1) {
                Some(Payload::Bytes(raw)) => raw_json(raw)?,
                _ => Value::Null,
            }
        }
        _ if apiextensions.is_some_and(|n| n.starts_with("JSONSchemaPropsOr")) => {
            let props = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";
            let mut schema = None;
            let mut list = Vec::new();
            let mut allows = false;
            let mut wire = Wire { buf };
            while let Some((tag, p)) = wire.next()? {
                match (short, tag, p) {
                    ("JSONSchemaPropsOrBool", 1, Payload::Varint(v)) => allows = v != 0,
                    ("JSONSchemaPropsOrBool", 2, Payload::Bytes(b)) | (_, 1, Payload::Bytes(b)) => schema = Some(decode_message(props, b)?),
                    ("JSONSchemaPropsOrArray", 2, Payload::Bytes(b)) => list.push(decode_message(props, b)?),
                    ("JSONSchemaPropsOrStringArray", 2, Payload::Bytes(b)) => list.push(Value::String(String::from_utf8_lossy(b).into_owned())),
                    _ => {}
                }
            }
            match (schema, short) {
                (Some(s), _) => s,
                (None, "JSONSchemaPropsOrBool") => Value::Bool(allows),
                (None, _) => Value::Array(list),
            }
        }
        _ => return Ok(None),
    }))
}


/// Fields whose zero value is kept; see the module comment.
const KEEP_ZERO: &[&str] = &[
    "activeDeadlineSeconds",
    "allocateLoadBalancerNodePorts",
    "allowPrivilegeEscalation",
    "automountServiceAccountToken",
    "averageUtilization",
    "backoffLimit",
    "backoffLimitPerIndex",
    "completions",
    "defaultMode",
    "enableServiceLinks",
    "exitCode",
    "expirationSeconds",
    "failedJobsHistoryLimit",
    "fsGroup",
    "gracePeriodSeconds",
    "hostUsers",
    "leaseDurationSeconds",
    "maxFailedIndexes",
    "maxSurge",
    "maxUnavailable",
    "minAvailable",
    "minReplicas",
    "mode",
    "orphanDependents",
    "parallelism",
    "priority",
    "progressDeadlineSeconds",
    "replicas",
    "revisionHistoryLimit",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "startingDeadlineSeconds",
    "storageClassName",
    "successfulJobsHistoryLimit",
    "targetCPUUtilizationPercentage",
    "terminationGracePeriodSeconds",
    "ttlSecondsAfterFinished",
    "value",
];

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// A message's fields by tag, the last occurrence winning.
fn fields_of(buf: &[u8]) -> Result<HashMap<u32, Payload<'_>>, String> {
    let mut out = HashMap::new();
    let mut wire = Wire { buf };
    while let Some((tag, p)) = wire.next()? {
        out.insert(tag, p);
    }
    Ok(out)
}

/// The JSON name of a proto field: the schema property it spells (ignoring
/// case and underscores: `volume_id` is `volumeID`), else lowerCamelCase.
fn json_name(proto: &str, props: &[&str]) -> String {
    let squash = |s: &str| s.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect::<String>();
    let wanted = squash(proto);
    if let Some(p) = props.iter().find(|p| squash(p) == wanted) {
        return p.to_string();
    }
    let mut out = String::new();
    let mut upper = false;
    for c in proto.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `0s`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let (h, m) = (n / 3_600_000_000_000, n / 60_000_000_000 % 60);
    let s = (n % 60_000_000_000) as f64 / 1e9;
    let mut out = sign.to_string();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

#[cfg(test)]
mod tests;

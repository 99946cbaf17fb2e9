//! Field validation (`fieldValidation=Strict|Warn|Ignore`) and pruning for
//! built-in kinds: an object passes through its kind's typed struct, which
//! keeps what upstream's Go types would keep and names what it drops.

use std::cell::RefCell;

use axum::http::{header, HeaderMap, HeaderValue};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use axum::response::Response;
use serde_json::Value;
use skiff_api::ResourceDef;

use crate::handler::Query;
use crate::status::{ApiError, ApiResult};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Strict,
    Warn,
    Ignore,
}

/// The request's mode; upstream's default is Warn.
pub fn mode(query: &Query) -> ApiResult<Mode> {
    match query.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => Ok(Mode::Warn),
        Some("Strict") => Ok(Mode::Strict),
        Some("Ignore") => Ok(Mode::Ignore),
        Some(other) => Err(ApiError::bad_request(format!(
            "fieldValidation parameter unsupported: {other}, must be one of Ignore, Warn, Strict"
        ))),
    }
}

/// A request body decoded and checked as `check` does, also reporting keys
/// a JSON object repeats (upstream's strict decoding does; serde keeps the
/// last silently).
pub fn check_body(def: &ResourceDef, headers: &HeaderMap, body: &[u8], mode: Mode, warnings: &mut Vec<String>) -> ApiResult<Value> {
    let is_json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_none_or(|ct| ct.starts_with("application/json"));
    let (obj, duplicates) = if is_json && mode != Mode::Ignore {
        decode_json(body).map_err(crate::handler::unrecognized)?
    } else {
        (crate::handler::decode_body(headers, body)?, Vec::new())
    };
    check_with(def, obj, duplicates, mode, warnings)
}

/// `obj` without fields its kind does not have. Unknown fields are an error
/// in Strict mode and warnings in Warn mode; values of the wrong type are
/// an error in every mode, as upstream's decoding makes them.
pub fn check(def: &ResourceDef, obj: Value, mode: Mode, warnings: &mut Vec<String>) -> ApiResult<Value> {
    check_with(def, obj, Vec::new(), mode, warnings)
}

fn check_with(def: &ResourceDef, mut obj: Value, duplicates: Vec<String>, mode: Mode, warnings: &mut Vec<String>) -> ApiResult<Value> {
    // A body of another kind gets upstream's message, not a decoding error.
    crate::registry::check_type(def, &obj)?;
    let undecodable = |e: String| {
        ApiError::bad_request(format!("{kind} in version {version:?} cannot be handled as a {kind}: {e}", kind = def.kind, version = def.version))
    };
    // Quantities are parsed while decoding, as upstream's are.
    skiff_api::validation::decode_quantities(&(def.schema_name)(), &mut obj).map_err(|why| undecodable(why.to_string()))?;
    match def.prune(&obj) {
        Ok((pruned, unknown)) => {
            let mut found: Vec<String> = unknown.iter().map(|u| format!("unknown field {u:?}")).collect();
            found.extend(duplicates.iter().map(|d| format!("duplicate field {d:?}")));
            match mode {
                Mode::Strict if !found.is_empty() => return Err(undecodable(format!("strict decoding error: {}", found.join(", ")))),
                Mode::Warn => warnings.extend(found),
                _ => {}
            }
            Ok(pruned)
        }
        // A missing required field is validation's to report (422), as upstream.
        Err(e) if e.contains("missing field") => Ok(obj),
        Err(e) => Err(undecodable(e)),
    }
}

/// Adds upstream's `Warning: 299 - "…"` headers.
pub fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            response.headers_mut().append("Warning", v);
        }
    }
    response
}

/// A JSON body decoded in one pass that also notes the paths
/// (`spec.replicas`) of keys repeated within one object. The path is
/// built only for a repeated key, as almost no body has one.
pub fn decode_json(body: &[u8]) -> serde_json::Result<(Value, Vec<String>)> {
    let (path, found) = (RefCell::new(Vec::new()), RefCell::new(Vec::new()));
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = Decode { path: &path, found: &found }.deserialize(&mut de)?;
    de.end()?;
    Ok((value, found.into_inner()))
}

#[derive(Clone, Copy)]
struct Decode<'a> {
    /// Where the value being decoded is.
    path: &'a RefCell<Vec<Part>>,
    found: &'a RefCell<Vec<String>>,
}

enum Part {
    Key(String),
    Index(usize),
}

impl Decode<'_> {
    fn repeated(&self, key: &str) {
        let mut path = String::new();
        for part in self.path.borrow().iter() {
            match part {
                Part::Key(k) => path.push_str(&format!("{k}.")),
                Part::Index(i) => {
                    path.pop();
                    path.push_str(&format!("[{i}]."));
                }
            }
        }
        path.push_str(key);
        self.found.borrow_mut().push(path);
    }
}

impl<'de> DeserializeSeed<'de> for Decode<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Decode<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.path.borrow_mut().push(Part::Key(key));
            let value = map.next_value_seed(self);
            let Some(Part::Key(key)) = self.path.borrow_mut().pop() else { unreachable!("pushed above") };
            let value = value?;
            match object.entry(key) {
                // Upstream's non-strict decoding keeps the last, as serde does.
                serde_json::map::Entry::Occupied(mut repeated) => {
                    self.repeated(repeated.key());
                    repeated.insert(value);
                }
                serde_json::map::Entry::Vacant(new) => {
                    new.insert(value);
                }
            }
        }
        Ok(Value::Object(object))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            self.path.borrow_mut().push(Part::Index(items.len()));
            let item = seq.next_element_seed(self);
            self.path.borrow_mut().pop();
            match item? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_repeated_keys_at_any_depth() {
        let body = br#"{"spec":{"replicas":1,"paused":false,"replicas":2,"template":{"spec":{"containers":[{"name":"a","name":"b"}]}}},"spec2":{}}"#;
        let (value, repeated) = super::decode_json(body).unwrap();
        assert_eq!(repeated, ["spec.replicas", "spec.template.spec.containers[0].name"]);
        assert_eq!(value["spec"]["replicas"], 2, "the last is kept");
        let (value, repeated) = super::decode_json(br#"{"a":1,"b":{"a":2},"c":[1.5,-3,null,true,"x"]}"#).unwrap();
        assert!(repeated.is_empty());
        assert_eq!(value, serde_json::json!({"a":1,"b":{"a":2},"c":[1.5,-3,null,true,"x"]}));
        assert!(super::decode_json(br#"{"a":1} x"#).is_err(), "trailing characters");
    }
}

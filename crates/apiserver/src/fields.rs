//! Field validation (`fieldValidation=Strict|Warn|Ignore`) and pruning for
//! built-in kinds: an object passes through its kind's typed struct, which
//! keeps what upstream's Go types would keep and names what it drops.

use std::cell::RefCell;
use std::collections::HashSet;

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
    let obj = crate::handler::decode_body(headers, body)?;
    let is_json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_none_or(|ct| ct.starts_with("application/json"));
    let duplicates = if is_json && mode != Mode::Ignore { duplicate_fields(body) } else { Vec::new() };
    check_with(def, obj, duplicates, mode, warnings)
}

/// `obj` without fields its kind does not have. Unknown fields are an error
/// in Strict mode and warnings in Warn mode; values of the wrong type are
/// an error in every mode, as upstream's decoding makes them.
pub fn check(def: &ResourceDef, obj: Value, mode: Mode, warnings: &mut Vec<String>) -> ApiResult<Value> {
    check_with(def, obj, Vec::new(), mode, warnings)
}

fn check_with(def: &ResourceDef, obj: Value, duplicates: Vec<String>, mode: Mode, warnings: &mut Vec<String>) -> ApiResult<Value> {
    // A body of another kind gets upstream's message, not a decoding error.
    crate::registry::check_type(def, &obj)?;
    let undecodable = |e: String| {
        ApiError::bad_request(format!("{kind} in version {version:?} cannot be handled as a {kind}: {e}", kind = def.kind, version = def.version))
    };
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

/// The paths (`spec.replicas`) of keys repeated within one JSON object.
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    let found = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(body);
    // A body that is not JSON fails to decode elsewhere, with its own error.
    let _ = Duplicates { path: String::new(), found: &found }.deserialize(&mut de);
    found.into_inner()
}

struct Duplicates<'a> {
    path: String,
    found: &'a RefCell<Vec<String>>,
}

impl<'de> DeserializeSeed<'de> for Duplicates<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Duplicates<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() { key.clone() } else { format!("{}.{key}", self.path) };
            if !seen.insert(key) {
                self.found.borrow_mut().push(path.clone());
            }
            map.next_value_seed(Duplicates { path, found: self.found })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq.next_element_seed(Duplicates { path: format!("{}[{i}]", self.path), found: self.found })?.is_some() {
            i += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_repeated_keys_at_any_depth() {
        let body = br#"{"spec":{"replicas":1,"paused":false,"replicas":2,"template":{"spec":{"containers":[{"name":"a","name":"b"}]}}},"spec2":{}}"#;
        assert_eq!(super::duplicate_fields(body), ["spec.replicas", "spec.template.spec.containers[0].name"]);
        assert!(super::duplicate_fields(br#"{"a":1,"b":{"a":2}}"#).is_empty());
    }
}

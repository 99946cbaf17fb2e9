//! Field validation (`fieldValidation=Strict|Warn|Ignore`) and pruning for
//! built-in kinds: an object passes through its kind's typed struct, which
//! keeps what upstream's Go types would keep and names what it drops.

use axum::http::HeaderValue;
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

/// `obj` without fields its kind does not have. Unknown fields are an error
/// in Strict mode and warnings in Warn mode; values of the wrong type are
/// an error in every mode, as upstream's decoding makes them.
pub fn check(def: &ResourceDef, obj: Value, mode: Mode, warnings: &mut Vec<String>) -> ApiResult<Value> {
    // A body of another kind gets upstream's message, not a decoding error.
    crate::registry::check_type(def, &obj)?;
    let undecodable = |e: String| {
        ApiError::bad_request(format!("{kind} in version {version:?} cannot be handled as a {kind}: {e}", kind = def.kind, version = def.version))
    };
    match def.prune(&obj) {
        Ok((pruned, unknown)) => {
            let found: Vec<String> = unknown.iter().map(|u| format!("unknown field {u:?}")).collect();
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

//! Errors as upstream `Status` bodies: the code, reason, message and
//! details each failure has on a stock API server.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use skiff_api::validation::FieldError;
use skiff_api::ResourceDef;
use skiff_store::Error as StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// A continue token the Status carries (a list whose token expired).
    pub continue_token: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            continue_token: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn unauthorized() -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn not_found_path() -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource")
    }

    pub fn method_not_allowed(verb: &str, def: &ResourceDef) -> ApiError {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{verb} is not supported on resources of kind {:?}", qualified(def)),
        )
    }

    pub fn unsupported_media_type(what: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", what)
    }

    pub fn too_large(limit: usize) -> ApiError {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// Upstream's answer when its in-flight limit is reached.
    pub fn too_many_requests() -> ApiError {
        ApiError {
            details: Some(json!({"retryAfterSeconds": 1})),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "Too many requests, please try again later.")
        }
    }

    pub fn not_found(def: &ResourceDef, name: &str) -> ApiError {
        ApiError {
            details: Some(details(def, name)),
            ..Self::new(StatusCode::NOT_FOUND, "NotFound", format!("{} {name:?} not found", qualified(def)))
        }
    }

    pub fn already_exists(def: &ResourceDef, name: &str) -> ApiError {
        ApiError {
            details: Some(details(def, name)),
            ..Self::new(StatusCode::CONFLICT, "AlreadyExists", format!("{} {name:?} already exists", qualified(def)))
        }
    }

    pub fn conflict(def: &ResourceDef, name: &str, why: &str) -> ApiError {
        ApiError {
            details: Some(details(def, name)),
            ..Self::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!("Operation cannot be fulfilled on {} {name:?}: {why}", qualified(def)),
            )
        }
    }

    pub fn modified(def: &ResourceDef, name: &str) -> ApiError {
        Self::conflict(
            def,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn invalid(def: &ResourceDef, name: &str, errors: &[FieldError]) -> ApiError {
        let mut d = details(def, name);
        d["kind"] = json!(def.kind);
        Self::invalid_kind(&dotted(def.kind, def.group), d, errors)
    }

    /// Invalid query options (`ListOptions.meta.k8s.io ""`), as upstream.
    pub fn invalid_options(kind: &str, errors: &[FieldError]) -> ApiError {
        let d = json!({"group": "meta.k8s.io", "kind": kind, "name": ""});
        Self::invalid_kind(&dotted(kind, "meta.k8s.io"), d, errors)
    }

    /// A 422 naming the kind as upstream's messages do (`Deployment.apps`).
    fn invalid_kind(qualified: &str, mut d: Value, errors: &[FieldError]) -> ApiError {
        let name = d["name"].as_str().unwrap_or_default().to_string();
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
            .collect();
        let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let message = if list.len() == 1 {
            format!("{qualified} {name:?} is invalid: {}", list[0])
        } else {
            format!("{qualified} {name:?} is invalid: [{}]", list.join(", "))
        };
        d["causes"] = json!(causes);
        ApiError {
            details: Some(d),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
        }
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::GONE, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    /// A store failure while working on `name` of `def`.
    pub fn from_store(e: StoreError, def: &ResourceDef, name: &str) -> ApiError {
        match e {
            StoreError::AlreadyExists { .. } => Self::already_exists(def, name),
            StoreError::NotFound { .. } => Self::not_found(def, name),
            StoreError::Conflict { .. } => Self::modified(def, name),
            StoreError::Compacted { requested, compacted } => {
                Self::gone(format!("too old resource version: {requested} ({compacted})"))
            }
            StoreError::FutureRevision { requested, current } => ApiError {
                details: Some(json!({
                    "retryAfterSeconds": 1,
                    "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                })),
                ..Self::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Timeout",
                    format!("Too large resource version: {requested}, current: {current}"),
                )
            },
            StoreError::Expired => Self::gone("watch expired"),
            StoreError::TooLarge { limit, .. } => Self::too_large(limit),
            StoreError::InvalidArgument(m) => Self::bad_request(m),
            StoreError::Unavailable(m) => ApiError {
                details: Some(json!({"retryAfterSeconds": 1})),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", m)
            },
            e @ (StoreError::Corrupt(_) | StoreError::Internal(_)) => Self::internal(e.to_string()),
        }
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        if let Some(token) = &self.continue_token {
            status["metadata"]["continue"] = json!(token);
        }
        status
    }
}

/// `pods` for core kinds, `deployments.apps` for the others, as upstream
/// names a resource in messages.
pub fn qualified(def: &ResourceDef) -> String {
    dotted(def.plural, def.group)
}

fn details(def: &ResourceDef, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": def.plural});
    if !def.group.is_empty() {
        d["group"] = json!(def.group);
    }
    d
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.code, axum::Json(self.to_status())).into_response();
        if let Some(retry) = self.details.as_ref().and_then(|d| d.get("retryAfterSeconds")) {
            if let Ok(v) = retry.to_string().parse() {
                resp.headers_mut().insert("Retry-After", v);
            }
        }
        resp
    }
}

/// `name.group`, or `name` in the core group.
fn dotted(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

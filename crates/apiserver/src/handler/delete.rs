//! DELETE of one object (admitted, then graceful or at once, as the
//! registry decides) and of a collection.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use skiff_api::validation::FieldError;
use skiff_api::ResourceDef;

use super::admit::admission_request;
use super::{decode_body, get::list_query, json_response, respond_object, Api, Query, Request};
use crate::registry::{DeleteOptions, Deleted, ListQuery};
use crate::status::{ApiError, ApiResult};

impl Api {
    pub(super) async fn delete(&self, r: &Request<'_>) -> ApiResult<Response> {
        let (def, ns, name) = (r.def(), r.ns(), r.name());
        let opts = delete_options(r.query, r.headers, r.body, r.dry_run)?;
        let request = admission_request(skiff_admission::Operation::Delete, def, r.target, name, r.user, r.dry_run);
        let cluster = crate::admission::RegistryCluster(&self.registry, &self.security);
        self.admission.validate(&request, &Value::Null, &cluster).await.map_err(|refusal| crate::admission::refused(refusal, def, name))?;
        match self.registry.delete(def, ns, name, &opts).await? {
            Deleted::Pending(obj) => {
                if def.group.is_empty() && def.kind == "Namespace" && !opts.dry_run {
                    tokio::spawn(crate::namespaces::finalize(self.registry.clone(), name.to_string()));
                }
                Ok(respond_object(def, StatusCode::OK, obj, r.repr, r.query))
            }
            Deleted::Now(obj) if returns_deleted_object(def) => Ok(respond_object(def, StatusCode::OK, obj, r.repr, r.query)),
            Deleted::Now(obj) => Ok(json_response(StatusCode::OK, &success_status(def, &obj))),
        }
    }

    pub(super) async fn delete_collection(&self, r: &Request<'_>) -> ApiResult<Response> {
        let def = r.def();
        let opts = delete_options(r.query, r.headers, r.body, r.dry_run)?;
        let q = list_query(def, r.query)?;
        let listed = self.registry.list_objects(def, r.ns(), &ListQuery { limit: None, continue_token: None, ..q }).await?;
        for obj in &listed {
            let obj_ns = obj.pointer("/metadata/namespace").and_then(|v| v.as_str());
            match self.registry.delete(def, obj_ns, crate::registry::name_of(obj), &opts).await {
                Ok(_) => {}
                Err(e) if e.code == StatusCode::NOT_FOUND => {}
                Err(e) => return Err(e),
            }
        }
        Ok(json_response(StatusCode::OK, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})))
    }
}

/// Upstream returns the object for these kinds, a Success Status for the rest.
fn returns_deleted_object(def: &ResourceDef) -> bool {
    matches!((def.group, def.kind), ("", "Pod") | ("", "Service") | ("", "Namespace"))
}

fn success_status(def: &ResourceDef, obj: &Value) -> Value {
    let mut details = json!({"name": crate::registry::name_of(obj), "kind": def.plural});
    if !def.group.is_empty() {
        details["group"] = json!(def.group);
    }
    if let Some(uid) = obj.pointer("/metadata/uid") {
        details["uid"] = uid.clone();
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

fn delete_options(query: &Query, headers: &HeaderMap, body: &[u8], dry_run: bool) -> ApiResult<DeleteOptions> {
    let opts: Value = if body.is_empty() { json!({}) } else { decode_body(headers, body)? };
    let grace = match query.get("gracePeriodSeconds") {
        Some(g) => Some(g.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?),
        None => opts.get("gracePeriodSeconds").and_then(|g| g.as_i64()),
    };
    let resource_version = match opts.pointer("/preconditions/resourceVersion").and_then(|v| v.as_str()) {
        Some(rv) => Some(rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?),
        None => None,
    };
    let dry_run = dry_run || opts.get("dryRun").and_then(|d| d.as_array()).is_some_and(|d| d.iter().any(|v| v == "All"));
    let orphan_dependents = query.get("orphanDependents").map(|o| o == "true").or_else(|| opts.get("orphanDependents").and_then(Value::as_bool));
    let propagation = match query.get("propagationPolicy").cloned().or_else(|| opts.get("propagationPolicy").and_then(Value::as_str).map(String::from)) {
        Some(p) if matches!(p.as_str(), "Orphan" | "Background" | "Foreground") => Some(p),
        Some(p) => {
            return Err(ApiError::invalid_options("DeleteOptions", &[FieldError {
                field: "propagationPolicy".into(),
                reason: "FieldValueNotSupported",
                message: format!("Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""),
            }]))
        }
        // The deprecated flag, as upstream maps it.
        None => orphan_dependents.map(|o| if o { "Orphan".to_string() } else { "Background".to_string() }),
    };
    Ok(DeleteOptions {
        propagation,
        grace_seconds: grace,
        uid: opts.pointer("/preconditions/uid").and_then(|v| v.as_str()).map(String::from),
        resource_version,
        dry_run,
    })
}


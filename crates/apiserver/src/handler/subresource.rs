//! The subresources with handlers of their own: scale, a ServiceAccount's
//! token, a pod's binding, eviction and log, a namespace's finalize, and
//! the streams (exec, attach, portforward). status, approval and
//! ephemeralcontainers go through the verbs.

use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::admit::{admission_request, UpdateAdmission};
use super::{decode_body, json_response, respond_object, Api, Query, Request};
use crate::managed::{self, Manager};
use crate::patch::{Patch, PatchKind};
use crate::route::Target;
use crate::status::{qualified, ApiError, ApiResult};
use skiff_auth::UserInfo;

impl Api {
    /// The subresource's response, or None when the verbs serve it.
    pub(super) async fn subresource(&self, method: &Method, r: &Request<'_>, sub: &str) -> ApiResult<Option<Response>> {
        let (def, ns, dry_run) = (r.def(), r.ns(), r.dry_run);
        if sub == "scale" {
            return self.scale(method, r).await.map(Some);
        }
        let created = || json_response(StatusCode::CREATED, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}));
        let name = || r.target.name.as_deref().ok_or_else(ApiError::not_found_path);
        let response = match (sub, method) {
            ("token", &Method::POST) => {
                let issued = crate::tokens::request(&self.registry, &self.security.tokens, ns.unwrap_or_default(), name()?, decode_body(r.headers, r.body)?).await?;
                json_response(StatusCode::CREATED, &issued)
            }
            ("binding", &Method::POST) => {
                crate::subresources::bind(&self.registry, def, ns, name()?, &decode_body(r.headers, r.body)?, dry_run).await?;
                created()
            }
            ("eviction", &Method::POST) => {
                crate::subresources::evict(&self.registry, def, ns, name()?, &decode_body(r.headers, r.body)?, dry_run).await?;
                created()
            }
            ("finalize", &Method::PUT) => {
                let ns_obj = crate::subresources::finalize(&self.registry, def, name()?, &decode_body(r.headers, r.body)?, dry_run).await?;
                respond_object(def, StatusCode::OK, ns_obj, r.repr, r.query)
            }
            ("log", &Method::GET) => {
                let pod = self.registry.get(def, ns, name()?).await?;
                crate::kubelets::pod_log(&self.kubelets, &self.registry, &pod, r.query).await?
            }
            ("status" | "approval", _) => return Ok(None),
            ("ephemeralcontainers", _) if def.group.is_empty() && def.kind == "Pod" => return Ok(None),
            _ => {
                return Err(ApiError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "NotImplemented",
                    format!("the {sub} subresource of {} is not served yet", qualified(def)),
                ))
            }
        };
        Ok(Some(response))
    }

    /// GET, PUT and PATCH of `{workload}/scale`.
    async fn scale(&self, method: &Method, r: &Request<'_>) -> ApiResult<Response> {
        let (def, ns, dry_run) = (r.def(), r.ns(), r.dry_run);
        let name = r.target.name.as_deref().ok_or_else(ApiError::not_found_path)?;
        let admit = UpdateAdmission::of(self, r);
        let manager = Manager::of_request(r.query, r.headers, Some("scale"), false)?;
        let updated = match *method {
            Method::GET => self.registry.get(def, ns, name).await?,
            Method::PUT => {
                let scale = decode_body(r.headers, r.body)?;
                let precondition = match scale.pointer("/metadata/resourceVersion").and_then(|v| v.as_str()).filter(|v| !v.is_empty()) {
                    Some(rv) => Some(rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?),
                    None => None,
                };
                let change = |current: &Value| {
                    let mut updated = crate::registry::merge_update(def, current, crate::scale::apply(def, current, &scale)?, None)?;
                    managed::record_update(def, Some(current), &mut updated, &manager);
                    Ok(updated)
                };
                self.registry.guaranteed_update_admitted(def, ns, name, precondition, dry_run, change, &admit).await?
            }
            Method::PATCH => {
                let content_type = r.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
                let patch = Patch::decode(PatchKind::from_content_type(content_type)?, r.body);
                let change = |current: &Value| {
                    let scale = patch.as_ref().map_err(ApiError::clone)?.applied_to(&crate::scale::view(current))?;
                    let mut updated = crate::registry::merge_update(def, current, crate::scale::apply(def, current, &scale)?, None)?;
                    managed::record_update(def, Some(current), &mut updated, &manager);
                    Ok(updated)
                };
                self.registry.guaranteed_update_admitted(def, ns, name, None, dry_run, change, &admit).await?
            }
            _ => return Err(ApiError::method_not_allowed(method.as_str(), def)),
        };
        Ok(json_response(StatusCode::OK, &crate::scale::view(&updated)))
    }


    /// `pods/exec`, `pods/attach` and `pods/portforward`: admitted as
    /// CONNECT, then the upgraded stream is spliced to the pod's agent.
    pub(super) async fn connect(&self, user: &UserInfo, t: &Target, mut parts: axum::http::request::Parts, query: &Query) -> ApiResult<Response> {
        let (def, ns) = (t.def, t.namespace.as_deref());
        let name = t.name.as_deref().ok_or_else(ApiError::not_found_path)?;
        let pod = self.registry.get(def, ns, name).await?;
        let request = admission_request(skiff_admission::Operation::Connect, def, t, name, user, false);
        let cluster = crate::admission::RegistryCluster(&self.registry, &self.security);
        self.admission.validate(&request, &pod, &cluster).await.map_err(|r| crate::admission::refused(r, def, name))?;
        crate::kubelets::connect(&self.kubelets, &self.registry, &pod, t.subresource.as_deref().unwrap_or_default(), &mut parts, query).await
    }

}

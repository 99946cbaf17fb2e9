//! PUT of a whole object (or its status): decoded and field-checked,
//! escalation checked, then written through admission by the registry.

use axum::http::StatusCode;
use axum::response::Response;

use super::admit::UpdateAdmission;
use super::{respond_object, Api, Request};
use crate::managed::Manager;
use crate::status::ApiResult;
use crate::{authorization, fields};

impl Api {
    pub(super) async fn update(&self, r: &Request<'_>) -> ApiResult<Response> {
        let (def, ns, sub) = (r.def(), r.ns(), r.target.subresource.as_deref());
        let mut warnings = Vec::new();
        let obj = fields::check_body(def, r.headers, r.body, fields::mode(r.query)?, &mut warnings)?;
        authorization::check_escalation(&self.security, &self.registry, r.user, def, ns, &obj).await?;
        let manager = Manager::of_request(r.query, r.headers, sub, false)?;
        let admit = UpdateAdmission::of(self, r);
        let updated = self.registry.update(def, ns, r.name(), sub, obj, r.dry_run, &manager, &admit).await?;
        warnings.extend(admit.warnings());
        Ok(fields::with_warnings(respond_object(def, StatusCode::OK, updated, r.repr, r.query), &warnings))
    }
}

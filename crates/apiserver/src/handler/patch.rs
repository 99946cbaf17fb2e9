//! PATCH: JSON, merge and strategic merge patches applied to the stored
//! object (again on a conflict), and server-side apply. The patch is
//! decoded once; a decoding error is reported where upstream reports it
//! (after the object is found, but before anything for apply).

use axum::http::{header, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::admit::UpdateAdmission;
use super::{flag, respond_object, Api, Request};
use crate::managed::{self, Manager};
use crate::patch::{Patch, PatchKind};
use crate::status::{ApiError, ApiResult};
use crate::{authorization, fields};

impl Api {
    pub(super) async fn patch(&self, r: &Request<'_>) -> ApiResult<Response> {
        let (def, ns, name, sub) = (r.def(), r.ns(), r.name(), r.target.subresource.as_deref());
        let content_type = r.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let kind = PatchKind::from_content_type(content_type)?;
        let mode = fields::mode(r.query)?;
        let manager = Manager::of_request(r.query, r.headers, sub, kind == PatchKind::Apply)?;
        let patch = Patch::decode(kind, r.body);
        let decoded = || patch.as_ref().map_err(ApiError::clone);
        let applied = || match decoded()? {
            Patch::Apply(config) => Ok(config.clone()),
            _ => unreachable!("an apply patch decodes as one"),
        };
        if def.group == authorization::RBAC_GROUP {
            // What the patch would grant, checked before it is applied.
            let intended = match kind {
                PatchKind::Apply => applied()?,
                _ => decoded()?.applied_to(&self.registry.get(def, ns, name).await?)?,
            };
            authorization::check_escalation(&self.security, &self.registry, r.user, def, ns, &intended).await?;
        }
        if kind == PatchKind::Apply {
            return self.server_side_apply(r, applied()?, &manager).await;
        }
        // The closure may run again on a conflict; keep the last run's warnings.
        let warnings = std::sync::Mutex::new(Vec::new());
        let admit = UpdateAdmission::of(self, r);
        let change = |current: &Value| {
            let mut w = warnings.lock().unwrap();
            w.clear();
            let changed = fields::check(def, decoded()?.applied_to(current)?, mode, &mut w)?;
            // A resourceVersion the patch sets is a precondition, as upstream.
            let version = |o: &Value| o.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
            if version(&changed).is_some_and(|v| !v.is_empty() && Some(&v) != version(current).as_ref()) {
                return Err(ApiError::modified(def, name));
            }
            let mut updated = crate::registry::merge_update(def, current, changed, sub)?;
            managed::record_update(def, Some(current), &mut updated, &manager);
            Ok(updated)
        };
        let patched = self.registry.guaranteed_update_admitted(def, ns, name, None, r.dry_run, change, &admit).await?;
        let mut warnings = warnings.into_inner().unwrap();
        warnings.extend(admit.warnings());
        Ok(fields::with_warnings(respond_object(def, StatusCode::OK, patched, r.repr, r.query), &warnings))
    }

    /// PATCH with `application/apply-patch+yaml`: server-side apply, which
    /// creates the object when it does not exist.
    async fn server_side_apply(&self, r: &Request<'_>, config: Value, manager: &Manager) -> ApiResult<Response> {
        let (def, ns, name, sub) = (r.def(), r.ns(), r.name(), r.target.subresource.as_deref());
        let mut warnings = Vec::new();
        let config = fields::check(def, config, fields::mode(r.query)?, &mut warnings)?;
        if crate::registry::name_of(&config) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                crate::registry::name_of(&config)
            )));
        }
        let (dry_run, force) = (r.dry_run, flag(r.query, "force"));
        let admit = UpdateAdmission::of(self, r);
        let change = |current: &Value| {
            let merged = managed::apply(def, Some(current), &config, manager, force)?;
            let fields = merged["metadata"]["managedFields"].clone();
            let mut updated = crate::registry::merge_update(def, current, merged, sub)?;
            updated["metadata"]["managedFields"] = fields;
            Ok(updated)
        };
        let applied = self.registry.guaranteed_update_admitted(def, ns, name, None, dry_run, change, &admit).await;
        warnings.extend(admit.warnings());
        let (code, obj) = match applied {
            Err(e) if e.code == StatusCode::NOT_FOUND && sub.is_none() => {
                let (created, admission_warnings) = self.admitted_create(r.user, def, ns, config, dry_run, manager).await?;
                warnings.extend(admission_warnings);
                (StatusCode::CREATED, created.object)
            }
            other => (StatusCode::OK, other?),
        };
        Ok(fields::with_warnings(respond_object(def, code, obj, r.repr, r.query), &warnings))
    }

}

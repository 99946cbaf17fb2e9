//! Admission, as each write verb calls it: a create's in `create`, an
//! update's (PUT, patch, apply, scale) here, a delete's and a connect's
//! from the request's attributes.

use serde_json::Value;
use skiff_api::ResourceDef;
use skiff_auth::UserInfo;

use super::{Api, Request};
use crate::route::Target;
use crate::status::ApiResult;

/// Admission of an update (PUT or patch): mutating plugins, then validating
/// ones, on the changed object; the last attempt's warnings are kept.
pub(super) struct UpdateAdmission<'a> {
    api: &'a Api,
    user: &'a UserInfo,
    def: &'static ResourceDef,
    target: &'a Target,
    name: &'a str,
    dry_run: bool,
    warnings: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl crate::registry::Admit for UpdateAdmission<'_> {
    async fn admit(&self, old: &Value, new: &mut Value) -> ApiResult<()> {
        let cluster = crate::admission::RegistryCluster(&self.api.registry, &self.api.security);
        let base = admission_request(skiff_admission::Operation::Update, self.def, self.target, self.name, self.user, self.dry_run);
        let request = skiff_admission::Request { old: Some(old), ..base };
        let refused = |r| crate::admission::refused(r, self.def, self.name);
        if request.subresource == "scale" {
            // As upstream, plugins see the Scale objects; a mutated replica
            // count is written back to the object.
            let (old_scale, mut scale) = (crate::scale::view(old), crate::scale::view(new));
            let request = skiff_admission::Request { kind: "Scale", old: Some(&old_scale), ..request };
            self.api.admission.mutate(&request, &mut scale, &cluster).await.map_err(refused)?;
            *new = crate::scale::apply(self.def, new, &scale)?;
            *self.warnings.lock().unwrap() = self.api.admission.validate(&request, &scale, &cluster).await.map_err(refused)?;
            return Ok(());
        }
        self.api.admission.mutate(&request, new, &cluster).await.map_err(refused)?;
        *self.warnings.lock().unwrap() = self.api.admission.validate(&request, new, &cluster).await.map_err(refused)?;
        Ok(())
    }
}

pub(super) fn admission_request<'a>(operation: skiff_admission::Operation, def: &'a ResourceDef, t: &'a Target, name: &'a str, user: &'a UserInfo, dry_run: bool) -> skiff_admission::Request<'a> {
    skiff_admission::Request {
        operation,
        group: def.group,
        version: def.version,
        kind: def.kind,
        resource: def.plural,
        subresource: t.subresource.as_deref().unwrap_or_default(),
        namespace: t.namespace.as_deref().unwrap_or_default(),
        name,
        user,
        dry_run,
        old: None,
    }
}


impl<'a> UpdateAdmission<'a> {
    pub(super) fn of(api: &'a Api, r: &'a Request<'a>) -> UpdateAdmission<'a> {
        UpdateAdmission { api, user: r.user, def: r.def(), target: r.target, name: r.name(), dry_run: r.dry_run, warnings: Default::default() }
    }

    /// Admission's warnings of the last attempt.
    pub(super) fn warnings(self) -> Vec<String> {
        self.warnings.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

//! POST of a new object: decoded and field-checked, escalation checked,
//! admitted (mutating, then validating on the complete object), stored.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use skiff_api::ResourceDef;
use skiff_auth::UserInfo;

use super::{respond_object, Api, Representation, Request};
use crate::managed::Manager;
use crate::registry::Created;
use crate::status::ApiResult;
use crate::{authorization, fields};

impl Api {
    pub(super) async fn create(&self, r: &Request<'_>) -> ApiResult<Response> {
        let (def, ns) = (r.def(), r.ns());
        let mut warnings = Vec::new();
        let mut obj = fields::check_body(def, r.headers, r.body, fields::mode(r.query)?, &mut warnings)?;
        authorization::check_escalation(&self.security, &self.registry, r.user, def, ns, &obj).await?;
        if def.group.is_empty() && def.plural == "secrets" {
            crate::tokens::fill_legacy_secret(&self.registry, &self.security.tokens, &self.security.ca_pem, ns.unwrap_or_default(), &mut obj).await?;
        }
        let manager = Manager::of_request(r.query, r.headers, None, false)?;
        let (created, admission_warnings) = self.admitted_create(r.user, def, ns, obj, r.dry_run, &manager).await?;
        warnings.extend(admission_warnings);
        let response = match created.stored {
            Some(kv) if r.repr == Representation::Object => (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/json")], crate::registry::stamp(def, &kv)?).into_response(),
            _ => respond_object(def, StatusCode::CREATED, created.object, r.repr, r.query),
        };
        Ok(fields::with_warnings(response, &warnings))
    }

    /// Creates through admission: mutating plugins first, validating ones
    /// on the complete object just before it is stored.
    /// Returns the object and admission's warnings for the client.
    pub(super) async fn admitted_create(&self, user: &UserInfo, def: &'static ResourceDef, ns: Option<&str>, mut obj: Value, dry_run: bool, manager: &Manager) -> ApiResult<(Created, Vec<String>)> {
        let name = crate::registry::name_of(&obj).to_string();
        if def.group == "certificates.k8s.io" && def.kind == "CertificateSigningRequest" {
            // Who asks is recorded by the server, never taken from the
            // request, as upstream's strategy does: approvers trust it.
            let spec = &mut obj["spec"];
            spec["username"] = json!(user.name);
            spec["groups"] = json!(user.groups);
            spec["uid"] = if user.uid.is_empty() { Value::Null } else { json!(user.uid) };
            spec["extra"] = if user.extra.is_empty() { Value::Null } else { json!(user.extra) };
            if let Some(spec) = spec.as_object_mut() {
                spec.retain(|_, v| !v.is_null());
            }
        }
        let cluster = crate::admission::RegistryCluster(&self.registry, &self.security);
        let request = skiff_admission::Request {
            operation: skiff_admission::Operation::Create,
            group: def.group,
            version: def.version,
            kind: def.kind,
            resource: def.plural,
            subresource: "",
            namespace: ns.unwrap_or_default(),
            name: &name,
            user,
            dry_run,
            old: None,
        };
        self.admission.mutate(&request, &mut obj, &cluster).await.map_err(|r| crate::admission::refused(r, def, &name))?;
        let mut warnings = Vec::new();
        let validate = async |complete: &Value| {
            let name = crate::registry::name_of(complete);
            let request = skiff_admission::Request { name, ..request };
            warnings = self.admission.validate(&request, complete, &cluster).await.map_err(|r| crate::admission::refused(r, def, name))?;
            Ok(())
        };
        let created = self.registry.create_admitted(def, ns, obj, dry_run, manager, validate).await?;
        Ok((created, warnings))
    }

}

//! The admission step of the request path: `skiff_admission`'s plugins,
//! given the registry to read and charge (quota) what they need.

use async_trait::async_trait;
use axum::http::StatusCode;
use serde_json::{json, Value};
use skiff_admission::{Cluster, Rejection};

use crate::registry::{ListQuery, Registry};
use crate::status::ApiError;

pub struct RegistryCluster<'a>(pub &'a Registry, pub &'a crate::authorization::Security);

/// The stored version of a resource.
fn def(group: &str, resource: &str) -> Result<&'static skiff_api::ResourceDef, String> {
    skiff_api::resources::storage_version(group, resource)
        .ok_or_else(|| format!("{resource}.{group} is not served"))
}

#[async_trait]
impl Cluster for RegistryCluster<'_> {
    // Plugins read as upstream's read their informers: from the watch
    // cache, without waiting for it to catch up with the store (a
    // consistent read on every request halves the create rate).
    async fn list(&self, group: &str, resource: &str, namespace: Option<&str>) -> Result<Vec<Value>, String> {
        let cached = ListQuery { min_revision: Some(0), ..ListQuery::default() };
        self.0.list_objects(def(group, resource)?, namespace, &cached).await.map_err(|e| e.message)
    }

    async fn get(&self, group: &str, resource: &str, namespace: Option<&str>, name: &str) -> Result<Option<std::sync::Arc<Value>>, String> {
        match self.0.get_cached(def(group, resource)?, namespace, name).await {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if e.code == StatusCode::NOT_FOUND => Ok(None),
            Err(e) => Err(e.message),
        }
    }

    async fn update(&self, group: &str, resource: &str, namespace: &str, name: &str, change: &(dyn for<'v> Fn(&'v Value) -> Result<Value, Rejection> + Send + Sync)) -> Result<(), Rejection> {
        let def = def(group, resource).map_err(|e| Rejection { code: 500, reason: "InternalError", message: e })?;
        self.0
            .guaranteed_update(def, Some(namespace), name, None, false, |current| change(&current).map_err(to_api_error))
            .await
            .map(|_| ())
            .map_err(|e| Rejection { code: e.code.as_u16(), reason: e.reason, message: e.message })
    }

    async fn call_webhook(&self, client_config: &Value, body: Vec<u8>, timeout: std::time::Duration) -> Result<Vec<u8>, String> {
        crate::webhooks::call(self.0, client_config, body, timeout).await
    }

    fn allows(&self, user: &skiff_auth::authn::UserInfo, verb: &str, group: &str, resource: &str, name: &str) -> bool {
        self.1.allows(&skiff_auth::authz::Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            api_version: "*".into(),
            resource: resource.into(),
            name: name.into(),
            ..Default::default()
        })
    }
}

pub fn to_api_error(r: Rejection) -> ApiError {
    let code = StatusCode::from_u16(r.code).unwrap_or(StatusCode::FORBIDDEN);
    ApiError::new(code, r.reason, r.message)
}

/// The Status details upstream gives an admission refusal.
pub fn refused(r: Rejection, def: &skiff_api::ResourceDef, name: &str) -> ApiError {
    let invalid = r.code == 422;
    let message = r.message.clone();
    let mut e = to_api_error(r);
    e.details = Some(json!({"name": name, "group": def.group, "kind": def.plural}));
    if invalid {
        // kubectl prints an Invalid refusal from its causes, as upstream's
        // policy refusals carry it.
        e.details.as_mut().expect("set above")["causes"] = json!([{"message": message}]);
    }
    e
}

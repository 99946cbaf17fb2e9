//! The security layers of the request path, after authentication:
//! impersonation, then authorization of the request's attributes, as
//! upstream's `WithImpersonation` and `WithAuthorization` filters. Also the
//! RBAC rule index, rebuilt from the store whenever a role or binding
//! changes, and the escalation checks on writes to roles and bindings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::{json, Value};
use skiff_auth::authz::{Attributes, Authorizer, Decision};
use skiff_auth::{rbac, UserInfo};

use crate::registry::{ListQuery, Registry};
use crate::route::{Route, Target};
use crate::status::{ApiError, ApiResult};

/// Authentication and authorization, as configured by upstream's flags.
pub struct Security {
    pub authenticator: skiff_auth::Authenticator,
    pub authorizer: Authorizer,
    /// The RBAC mode's index, when RBAC is one of the modes.
    pub rbac: Option<Arc<RbacIndex>>,
    /// Signs and verifies ServiceAccount tokens.
    pub tokens: skiff_auth::serviceaccount::Issuer,
    /// Where the token keys are published (`/openid/v1/jwks` on this server).
    pub jwks_uri: String,
    /// Whether the Node mode is on, whose pod graph is asked last.
    pub node_graph: bool,
    /// The cluster CA, as legacy token Secrets carry it.
    pub ca_pem: String,
}

impl Security {
    pub fn authorize(&self, a: &Attributes) -> ApiResult<()> {
        match self.authorizer.authorize(a) {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) | Decision::NoOpinion(reason) => Err(forbidden(a, &reason)),
        }
    }

    pub fn allows(&self, a: &Attributes) -> bool {
        self.authorizer.authorize(a) == Decision::Allow
    }
}

/// Upstream's RequestInfo for a request, as authorization sees it.
pub fn attributes(user: &UserInfo, method: &Method, path: &str, route: &Route, verb: Option<&str>, query: &crate::handler::Query) -> Attributes {
    let Route::Resource(t) = route else {
        return Attributes { user: user.clone(), verb: method.as_str().to_ascii_lowercase(), path: path.to_string(), ..Default::default() };
    };
    let verb = verb.unwrap_or("").to_string();
    resource_attributes(user, t, verb, query)
}

fn resource_attributes(user: &UserInfo, t: &Target, verb: String, query: &crate::handler::Query) -> Attributes {
    let mut name = t.name.clone().unwrap_or_default();
    // A list or watch of one object by field selector is about that object.
    if name.is_empty() && matches!(verb.as_str(), "list" | "watch") {
        if let Some(selected) = query.get("fieldSelector").and_then(|f| f.strip_prefix("metadata.name=")).filter(|n| !n.contains(',')) {
            name = selected.to_string();
        }
    }
    // `/api/v1/namespaces/{name}` is in the namespace it names.
    let namespace = match &t.namespace {
        Some(ns) => ns.clone(),
        None if t.def.group.is_empty() && t.def.plural == "namespaces" => name.clone(),
        None => String::new(),
    };
    Attributes {
        user: user.clone(),
        verb,
        resource_request: true,
        api_group: t.def.group.to_string(),
        api_version: t.def.version.to_string(),
        resource: t.def.plural.to_string(),
        subresource: t.subresource.clone().unwrap_or_default(),
        namespace,
        name,
        path: String::new(),
    }
}

/// Upstream's 403: `<resource> "<name>" is forbidden: User … cannot …`.
pub fn forbidden(a: &Attributes, reason: &str) -> ApiError {
    let mut detail = a.forbidden_message();
    if !reason.is_empty() {
        detail = format!("{detail}: {reason}");
    }
    let resource = if a.api_group.is_empty() { a.resource.clone() } else { format!("{}.{}", a.resource, a.api_group) };
    let message = match (a.resource_request, a.name.as_str()) {
        (false, _) => format!("forbidden: {detail}"),
        (true, "") => format!("{resource} is forbidden: {detail}"),
        (true, name) => format!("{resource} {name:?} is forbidden: {detail}"),
    };
    let mut error = ApiError::forbidden(message);
    let mut details = json!({});
    if a.resource_request {
        details = json!({"group": a.api_group, "kind": a.resource});
    }
    if !a.name.is_empty() {
        details["name"] = json!(a.name);
    }
    error.details = Some(details);
    error
}

/// The user a request acts as: the authenticated one, or the one its
/// `Impersonate-*` headers name when that user may impersonate it.
pub fn impersonate(security: &Security, requester: UserInfo, headers: &HeaderMap) -> ApiResult<UserInfo> {
    let values = |name: &str| headers.get_all(name).iter().filter_map(|v| v.to_str().ok().map(String::from)).collect::<Vec<_>>();
    let user = values("impersonate-user").into_iter().next();
    let groups = values("impersonate-group");
    let uid = values("impersonate-uid").into_iter().next();
    let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (name, value) in headers {
        if let (Some(key), Ok(value)) = (name.as_str().strip_prefix("impersonate-extra-"), value.to_str()) {
            let key = percent_encoding::percent_decode_str(key).decode_utf8_lossy().to_ascii_lowercase();
            extra.entry(key).or_default().push(value.to_string());
        }
    }
    let Some(name) = user else {
        if !groups.is_empty() || uid.is_some() || !extra.is_empty() {
            return Err(ApiError::bad_request("requested impersonation of groups, uid or extra without impersonating a user"));
        }
        return Ok(requester);
    };
    let check = |group: &str, resource: &str, subresource: &str, namespace: &str, name: &str| {
        security.authorize(&Attributes {
            user: requester.clone(),
            verb: "impersonate".into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        })
    };
    let mut impersonated = UserInfo { name: name.clone(), uid: uid.clone().unwrap_or_default(), groups: groups.clone(), extra: extra.clone() };
    match name.strip_prefix("system:serviceaccount:").and_then(|rest| rest.split_once(':')) {
        Some((ns, sa)) => {
            check("", "serviceaccounts", "", ns, sa)?;
            if groups.is_empty() {
                impersonated.groups = vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}")];
            }
        }
        None => check("", "users", "", "", &name)?,
    }
    for group in &groups {
        check("", "groups", "", "", group)?;
    }
    if let Some(uid) = &uid {
        check("authentication.k8s.io", "uids", "", "", uid)?;
    }
    for (key, values) in &extra {
        for value in values {
            check("authentication.k8s.io", "userextras", key, "", value)?;
        }
    }
    if name != skiff_auth::authn::ANONYMOUS {
        impersonated = impersonated.with_authenticated_group();
    }
    Ok(impersonated)
}

pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn rbac_def(plural: &str) -> &'static skiff_api::ResourceDef {
    skiff_api::resources::find(RBAC_GROUP, "v1", plural).expect("RBAC kinds are served")
}

/// The RBAC mode's rule index and its rebuilds from the store. Rebuilds
/// are coalesced: a writer waits for one that began after its write, not
/// for one of its own, so a burst of writes costs a few rebuilds.
#[derive(Default)]
pub struct RbacIndex {
    pub authorizer: Arc<rbac::Authorizer>,
    turn: tokio::sync::Mutex<()>,
    /// Rebuilds begun, numbered from 1.
    begun: AtomicU64,
    /// The number of the last rebuild to finish.
    finished: AtomicU64,
}

impl RbacIndex {
    /// Returns once the index reflects every write completed before the call.
    pub async fn refresh(&self, registry: &Registry) {
        // Any rebuild numbered above this one lists after this point.
        let seen = self.begun.load(Ordering::SeqCst);
        let _turn = self.turn.lock().await;
        if self.finished.load(Ordering::SeqCst) > seen {
            return;
        }
        let number = self.begun.fetch_add(1, Ordering::SeqCst) + 1;
        async fn all<T: serde::de::DeserializeOwned>(registry: &Registry, plural: &str) -> Vec<T> {
            match registry.list_objects(rbac_def(plural), None, &ListQuery::default()).await {
                Ok(items) => items.into_iter().filter_map(|o| serde_json::from_value(o).ok()).collect(),
                Err(e) => {
                    tracing::warn!("listing {plural} for RBAC: {}", e.message);
                    Vec::new()
                }
            }
        }
        let index = rbac::Index::build(
            all(registry, "clusterroles").await,
            all(registry, "roles").await,
            all(registry, "clusterrolebindings").await,
            all(registry, "rolebindings").await,
        );
        self.authorizer.replace(index);
        self.finished.store(number, Ordering::SeqCst);
    }

    /// Keeps the index current with every change, whoever made it; changes
    /// that arrive together cost one rebuild.
    pub async fn follow(self: Arc<Self>, registry: Registry) {
        let prefix = format!("/registry/{RBAC_GROUP}/");
        loop {
            let Ok(from) = registry.store.current_revision().await else {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            };
            self.refresh(&registry).await;
            if let Ok(mut watch) = registry.store.watch(&prefix, from).await {
                while let Some(Ok(batch)) = watch.next().await {
                    let mut changed = !batch.events.is_empty();
                    while let Some(Some(Ok(more))) = watch.next().now_or_never() {
                        changed |= !more.events.is_empty();
                    }
                    if changed {
                        self.refresh(&registry).await;
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

/// Upstream's escalation check on creating or updating a role or binding:
/// only rules the user holds can be granted, unless RBAC lets the user
/// `escalate` (roles) or `bind` (bindings) explicitly.
pub async fn check_escalation(security: &Security, registry: &Registry, user: &UserInfo, def: &skiff_api::ResourceDef, ns: Option<&str>, obj: &Value) -> ApiResult<()> {
    let Some(rbac) = &security.rbac else { return Ok(()) };
    if def.group != RBAC_GROUP || user.groups.iter().any(|g| g == skiff_auth::authn::MASTERS) {
        return Ok(());
    }
    let namespace = ns.unwrap_or_default();
    let name = crate::registry::name_of(obj);
    let (special_verb, role_resource, role_name) = match def.kind {
        "Role" | "ClusterRole" => ("escalate", def.plural, name.to_string()),
        "RoleBinding" | "ClusterRoleBinding" => {
            let kind = obj.pointer("/roleRef/kind").and_then(Value::as_str).unwrap_or_default();
            let plural = if kind == "Role" { "roles" } else { "clusterroles" };
            ("bind", plural, obj.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or_default().to_string())
        }
        _ => return Ok(()),
    };
    let special = Attributes {
        user: user.clone(),
        verb: special_verb.into(),
        resource_request: true,
        api_group: RBAC_GROUP.into(),
        resource: role_resource.into(),
        // The object's own namespace, as upstream: a RoleBinding may bind
        // a ClusterRole where `bind` on it was granted.
        namespace: namespace.to_string(),
        name: role_name.clone(),
        ..Default::default()
    };
    if security.allows(&special) {
        return Ok(());
    }
    let requested: Vec<PolicyRule> = match def.kind {
        "Role" | "ClusterRole" => serde_json::from_value(obj.get("rules").cloned().unwrap_or(json!([]))).unwrap_or_default(),
        _ => {
            let role_ns = if role_resource == "roles" { Some(namespace) } else { None };
            let role = registry.get(rbac_def(role_resource), role_ns, &role_name).await?;
            serde_json::from_value(role.get("rules").cloned().unwrap_or(json!([]))).unwrap_or_default()
        }
    };
    let (owned, _) = rbac.authorizer.rules_for(user, namespace);
    let missing = rbac::uncovered(&owned, &requested);
    if missing.is_empty() {
        return Ok(());
    }
    let groups = user.groups.iter().map(|g| format!("{g:?}")).collect::<Vec<_>>().join(" ");
    let rules = missing.iter().map(rbac::describe).collect::<Vec<_>>().join("\n");
    let resource = format!("{}.{}", def.plural, def.group);
    Err(ApiError {
        details: Some(json!({"name": name, "group": def.group, "kind": def.plural})),
        ..ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("{resource} {name:?} is forbidden: user {:?} (groups=[{groups}]) is attempting to grant RBAC permissions not currently held:\n{rules}", user.name),
        )
    })
}

/// The pod graph half of upstream's Node authorizer: whether a pod bound
/// to the requesting node refers to the object it asks for (a secret,
/// configmap, claim or volume it mounts or reads, or its service account's
/// token). The rule half is `skiff_auth::rbac::node_authorize`.
pub async fn node_graph_allows(registry: &Registry, a: &Attributes) -> bool {
    let Some(node) = a.user.name.strip_prefix("system:node:") else { return false };
    let graph_verb = matches!(a.verb.as_str(), "get" | "list" | "watch") || (a.resource == "serviceaccounts" && a.subresource == "token" && a.verb == "create");
    if !a.user.groups.iter().any(|g| g == "system:nodes") || !a.resource_request || !a.api_group.is_empty() || a.name.is_empty() || !graph_verb {
        return false;
    }
    let pods = skiff_api::resources::find("", "v1", "pods").expect("pods are served");
    if a.resource == "persistentvolumes" {
        // A volume is reachable through a claim of one of the node's pods.
        let claims = skiff_api::resources::find("", "v1", "persistentvolumeclaims").expect("claims are served");
        let Ok(bound) = registry.list_objects(claims, None, &ListQuery::default()).await else { return false };
        for claim in bound.iter().filter(|c| c["spec"]["volumeName"] == a.name.as_str()) {
            let ns = claim["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = claim["metadata"]["name"].as_str().unwrap_or_default();
            let on_node = registry.list_objects(pods, Some(ns), &ListQuery::default()).await.unwrap_or_default();
            if on_node.iter().any(|p| p["spec"]["nodeName"] == node && refers(p, "persistentvolumeclaims", name)) {
                return true;
            }
        }
        return false;
    }
    let Ok(in_namespace) = registry.list_objects(pods, Some(&a.namespace), &ListQuery::default()).await else { return false };
    let kind = if a.subresource == "token" { "serviceaccounts/token" } else { a.resource.as_str() };
    in_namespace.iter().any(|p| p["spec"]["nodeName"] == node && refers(p, kind, &a.name))
}

/// Whether a pod refers to the object `name` of `kind`.
fn refers(pod: &Value, kind: &str, name: &str) -> bool {
    let spec = &pod["spec"];
    let is = |v: &Value| v.as_str() == Some(name);
    let containers = || ["initContainers", "containers", "ephemeralContainers"].into_iter().flat_map(|f| spec[f].as_array().cloned().unwrap_or_default());
    let volumes = || spec["volumes"].as_array().cloned().unwrap_or_default();
    let projected = |source: &str, field: &str| volumes().iter().any(|v| v["projected"]["sources"].as_array().into_iter().flatten().any(|s| is(&s[source][field])));
    match kind {
        "secrets" => {
            volumes().iter().any(|v| is(&v["secret"]["secretName"]) || is(&v["csi"]["nodePublishSecretRef"]["name"]))
                || projected("secret", "name")
                || spec["imagePullSecrets"].as_array().into_iter().flatten().any(|s| is(&s["name"]))
                || containers().any(|c| {
                    c["env"].as_array().into_iter().flatten().any(|e| is(&e["valueFrom"]["secretKeyRef"]["name"]))
                        || c["envFrom"].as_array().into_iter().flatten().any(|e| is(&e["secretRef"]["name"]))
                })
        }
        "configmaps" => {
            volumes().iter().any(|v| is(&v["configMap"]["name"]))
                || projected("configMap", "name")
                || containers().any(|c| {
                    c["env"].as_array().into_iter().flatten().any(|e| is(&e["valueFrom"]["configMapKeyRef"]["name"]))
                        || c["envFrom"].as_array().into_iter().flatten().any(|e| is(&e["configMapRef"]["name"]))
                })
        }
        "persistentvolumeclaims" => {
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
            volumes().iter().any(|v| is(&v["persistentVolumeClaim"]["claimName"]) || (!v["ephemeral"].is_null() && v["name"].as_str().is_some_and(|vol| format!("{pod_name}-{vol}") == name)))
        }
        "serviceaccounts/token" => is(&spec["serviceAccountName"]),
        _ => false,
    }
}

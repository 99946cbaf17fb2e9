//! ServiceAccount tokens in the request path: TokenRequest
//! (`serviceaccounts/<name>/token`, what `kubectl create token` and
//! projected token volumes use) and authenticating the JWTs it issues,
//! which needs the account, and the pod a token is bound to, to still exist.

use axum::http::StatusCode;
use serde_json::{json, Value};
use skiff_api::validation::FieldError;
use skiff_auth::serviceaccount::{Claims, Issuer, Private, Ref};
use skiff_auth::UserInfo;

use crate::registry::{now, Registry};
use crate::status::{ApiError, ApiResult};

fn core(plural: &str) -> &'static skiff_api::ResourceDef {
    skiff_api::resources::find("", "v1", plural).expect("core kinds are served")
}

fn uid(obj: &Value) -> String {
    obj["metadata"]["uid"].as_str().unwrap_or_default().to_string()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The ServiceAccount user a token names, if it verifies and what it is
/// bound to still exists (upstream's legacy and bound token validation).
pub async fn authenticate(registry: &Registry, issuer: &Issuer, token: &str) -> Option<UserInfo> {
    let Some(claims) = issuer.verify(token, std::slice::from_ref(&issuer.issuer)) else {
        return authenticate_legacy(registry, issuer, token).await;
    };
    let k = &claims.kubernetes;
    let account = registry.get(core("serviceaccounts"), Some(&k.namespace), &k.serviceaccount.name).await.ok()?;
    if uid(&account) != k.serviceaccount.uid {
        return None;
    }
    let mut extra = std::collections::BTreeMap::new();
    if let Some(pod) = &k.pod {
        let bound = registry.get(core("pods"), Some(&k.namespace), &pod.name).await.ok()?;
        if uid(&bound) != pod.uid || !bound["metadata"]["deletionTimestamp"].is_null() {
            return None;
        }
        extra.insert("authentication.kubernetes.io/pod-name".to_string(), vec![pod.name.clone()]);
        extra.insert("authentication.kubernetes.io/pod-uid".to_string(), vec![pod.uid.clone()]);
    }
    if let Some(secret) = &k.secret {
        let bound = registry.get(core("secrets"), Some(&k.namespace), &secret.name).await.ok()?;
        if uid(&bound) != secret.uid {
            return None;
        }
    }
    extra.insert("authentication.kubernetes.io/credential-id".to_string(), vec![format!("JTI={}", claims.jti)]);
    let name = skiff_auth::rbac::service_account_user(&k.namespace, &k.serviceaccount.name);
    let groups = vec!["system:serviceaccounts".to_string(), format!("system:serviceaccounts:{}", k.namespace), skiff_auth::authn::AUTHENTICATED.to_string()];
    Some(UserInfo { name, uid: k.serviceaccount.uid.clone(), groups, extra })
}

/// Answers a TokenRequest for the account `name`: the request, with a
/// signed token and its expiry in `status`.
pub async fn request(registry: &Registry, issuer: &Issuer, ns: &str, name: &str, mut body: Value) -> ApiResult<Value> {
    let account = registry.get(core("serviceaccounts"), Some(ns), name).await?;
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    let seconds = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    let invalid = |field: &str, message: String| {
        let error = FieldError { field: field.into(), reason: "FieldValueInvalid", message };
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", format!("TokenRequest.authentication.k8s.io {name:?} is invalid: {error}"));
        let cause = json!({"reason": error.reason, "message": error.message, "field": error.field});
        e.details = Some(json!({"name": name, "group": "authentication.k8s.io", "kind": "TokenRequest", "causes": [cause]}));
        e
    };
    if seconds < 600 {
        return Err(invalid("spec.expirationSeconds", format!("Invalid value: {seconds}: may not specify a duration less than 10 minutes")));
    }
    if seconds > 1 << 32 {
        return Err(invalid("spec.expirationSeconds", format!("Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds")));
    }
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(list) if !list.is_empty() => list.iter().filter_map(|a| a.as_str().map(String::from)).collect(),
        _ => vec![issuer.issuer.clone()],
    };
    let mut private = Private { namespace: ns.to_string(), serviceaccount: Ref { name: name.to_string(), uid: uid(&account) }, ..Default::default() };
    let bound = &spec["boundObjectRef"];
    if let Some(kind) = bound["kind"].as_str() {
        let object = bound["name"].as_str().unwrap_or_default();
        let plural = match kind {
            "Pod" => "pods",
            "Secret" => "secrets",
            other => return Err(invalid("spec.boundObjectRef.kind", format!("Unsupported value: {other:?}: supported values: \"Pod\", \"Secret\""))),
        };
        let target = registry.get(core(plural), Some(ns), object).await?;
        if bound["uid"].as_str().is_some_and(|u| !u.is_empty() && u != uid(&target)) {
            return Err(ApiError::new(StatusCode::CONFLICT, "Conflict", format!("the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated", bound["uid"].as_str().unwrap_or_default())));
        }
        let reference = Some(Ref { name: object.to_string(), uid: uid(&target) });
        if kind == "Pod" {
            private.pod = reference;
        } else {
            private.secret = reference;
        }
    }
    let issued = unix_now();
    let claims = Claims {
        iss: issuer.issuer.clone(),
        sub: skiff_auth::rbac::service_account_user(ns, name),
        aud: audiences.clone(),
        exp: issued + seconds,
        iat: issued,
        nbf: issued,
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes: private,
    };
    let token = issuer.sign(&claims).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", format!("signing the token: {e}")))?;
    let expires = chrono::DateTime::from_timestamp(claims.exp, 0).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(now);
    body["spec"]["audiences"] = json!(audiences);
    body["spec"]["expirationSeconds"] = json!(seconds);
    body["status"] = json!({"token": token, "expirationTimestamp": expires});
    body["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": now()});
    Ok(body)
}

/// A bootstrap token (`<id>.<secret>`, what `skiff token create` prints):
/// the Secret `kube-system/bootstrap-token-<id>` must hold that secret,
/// allow authentication and not have expired. The user is
/// `system:bootstrap:<id>` in `system:bootstrappers` and the token's extra
/// groups, as upstream's bootstrap token authenticator.
pub async fn authenticate_bootstrap(registry: &Registry, token: &str) -> Option<UserInfo> {
    let (id, secret) = token.split_once('.')?;
    let shaped = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !shaped(id, 6) || !shaped(secret, 16) {
        return None;
    }
    let stored = registry.get(core("secrets"), Some("kube-system"), &format!("bootstrap-token-{id}")).await.ok()?;
    if stored["type"] != "bootstrap.kubernetes.io/token" {
        return None;
    }
    let field = |k: &str| {
        use base64::Engine;
        stored["data"][k].as_str().and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok()).and_then(|v| String::from_utf8(v).ok())
    };
    let matches = field("token-secret").is_some_and(|s| skiff_auth::authn::constant_time_eq(s.as_bytes(), secret.as_bytes()));
    let expired = field("expiration").and_then(|e| chrono::DateTime::parse_from_rfc3339(&e).ok()).is_some_and(|e| e.timestamp() < unix_now());
    if field("token-id").as_deref() != Some(id) || !matches || expired || field("usage-bootstrap-authentication").as_deref() != Some("true") {
        return None;
    }
    let mut groups = vec!["system:bootstrappers".to_string()];
    groups.extend(field("auth-extra-groups").unwrap_or_default().split(',').map(str::trim).filter(|g| g.starts_with("system:bootstrappers:")).map(String::from));
    groups.push(skiff_auth::authn::AUTHENTICATED.to_string());
    Some(UserInfo { name: format!("system:bootstrap:{id}"), groups, ..Default::default() })
}

/// A legacy token: valid while its Secret holds it and its account exists.
async fn authenticate_legacy(registry: &Registry, issuer: &Issuer, token: &str) -> Option<UserInfo> {
    use base64::Engine;
    let (ns, account, secret) = issuer.verify_legacy(token)?;
    let stored = registry.get(core("secrets"), Some(&ns), &secret).await.ok()?;
    let held = stored["data"]["token"].as_str().and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())?;
    let current = registry.get(core("serviceaccounts"), Some(&ns), &account.name).await.ok()?;
    if held != token.as_bytes() || uid(&current) != account.uid {
        return None;
    }
    let name = skiff_auth::rbac::service_account_user(&ns, &account.name);
    let groups = vec!["system:serviceaccounts".to_string(), format!("system:serviceaccounts:{ns}"), skiff_auth::authn::AUTHENTICATED.to_string()];
    Some(UserInfo { name, uid: account.uid, groups, extra: Default::default() })
}

/// Fills a new `kubernetes.io/service-account-token` Secret with a legacy
/// token for the account its annotation names, the cluster CA and the
/// namespace, as upstream's token controller does just after it is created.
pub async fn fill_legacy_secret(registry: &Registry, issuer: &Issuer, ca_pem: &str, ns: &str, secret: &mut Value) -> ApiResult<()> {
    use base64::Engine;
    if secret["type"] != "kubernetes.io/service-account-token" {
        return Ok(());
    }
    let Some(account_name) = secret["metadata"]["annotations"]["kubernetes.io/service-account.name"].as_str().map(String::from) else {
        return Ok(());
    };
    let account = registry.get(core("serviceaccounts"), Some(ns), &account_name).await?;
    let name = secret["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let reference = Ref { name: account_name, uid: uid(&account) };
    let token = issuer.sign_legacy(ns, &reference, &name).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", format!("signing the token: {e}")))?;
    let encode = |s: &str| json!(base64::engine::general_purpose::STANDARD.encode(s));
    secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"] = json!(reference.uid);
    if !secret["data"].is_object() {
        secret["data"] = json!({});
    }
    secret["data"]["token"] = encode(&token);
    secret["data"]["ca.crt"] = encode(ca_pem);
    secret["data"]["namespace"] = encode(ns);
    Ok(())
}

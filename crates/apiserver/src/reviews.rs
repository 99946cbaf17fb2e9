//! The review APIs, answered by the authenticator and authorizer rather
//! than stored: TokenReview, SelfSubjectReview (`kubectl auth whoami`),
//! SubjectAccessReview and its local and self forms (`kubectl auth can-i`),
//! and SelfSubjectRulesReview (`can-i --list`).

use serde_json::{json, Value};
use skiff_api::ResourceDef;
use skiff_auth::authz::Attributes;
use skiff_auth::UserInfo;

use crate::authorization::Security;
use crate::status::{ApiError, ApiResult};

/// The review `body` answered for `user`, as upstream returns it (201).
pub fn review(security: &Security, user: &UserInfo, def: &ResourceDef, ns: Option<&str>, mut body: Value) -> ApiResult<Value> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the review is not an object"));
    }
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    let status = match def.kind {
        "SelfSubjectReview" => json!({"userInfo": user_info(user)}),
        "TokenReview" => {
            let token = spec["token"].as_str().unwrap_or_default();
            let header = format!("Bearer {token}");
            match security.authenticator.authenticate(&skiff_auth::PeerCertificate::None, Some(header.as_bytes())) {
                Ok(who) if !token.is_empty() => json!({"authenticated": true, "user": user_info(&who), "audiences": spec.get("audiences").cloned().unwrap_or(json!([]))}),
                _ => json!({"user": {}, "error": "invalid bearer token"}),
            }
        }
        "SelfSubjectRulesReview" => rules_review(security, user, spec["namespace"].as_str().unwrap_or_default()),
        _ => {
            let subject = match def.kind {
                "SelfSubjectAccessReview" => user.clone(),
                _ => subject_of(&spec)?,
            };
            let mut a = attributes_of(&spec, subject)?;
            if def.kind == "LocalSubjectAccessReview" {
                let ns = ns.unwrap_or_default();
                if a.namespace != ns || !a.resource_request {
                    return Err(invalid(def, "spec.resourceAttributes.namespace", "must match metadata.namespace"));
                }
                a.namespace = ns.to_string();
            }
            match security.authorizer.authorize(&a) {
                skiff_auth::Decision::Allow => json!({"allowed": true}),
                skiff_auth::Decision::Deny(reason) | skiff_auth::Decision::NoOpinion(reason) if reason.is_empty() => json!({"allowed": false}),
                skiff_auth::Decision::Deny(reason) | skiff_auth::Decision::NoOpinion(reason) => json!({"allowed": false, "reason": reason}),
            }
        }
    };
    body["status"] = status;
    if body.get("metadata").is_none_or(|m| !m.is_object()) {
        body["metadata"] = json!({});
    }
    body["metadata"]["creationTimestamp"] = Value::Null;
    Ok(body)
}

/// A user as the API writes one (authentication.k8s.io and audit.k8s.io alike).
pub(crate) fn user_info(user: &UserInfo) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

fn invalid(def: &ResourceDef, field: &str, detail: &str) -> ApiError {
    let mut e = ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("{}.{} \"\" is invalid: {field}: Invalid value: {detail}", def.kind, def.group),
    );
    e.details = Some(json!({"group": def.group, "kind": def.kind, "causes": [{"reason": "FieldValueInvalid", "message": format!("Invalid value: {detail}"), "field": field}]}));
    e
}

/// The user a SubjectAccessReview asks about.
fn subject_of(spec: &Value) -> ApiResult<UserInfo> {
    let strings = |v: &Value| v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect::<Vec<_>>();
    let user = UserInfo {
        name: spec["user"].as_str().unwrap_or_default().to_string(),
        uid: spec["uid"].as_str().unwrap_or_default().to_string(),
        groups: strings(&spec["groups"]),
        extra: spec["extra"].as_object().into_iter().flatten().map(|(k, v)| (k.clone(), strings(v))).collect(),
    };
    if user.name.is_empty() && user.groups.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "SubjectAccessReview.authorization.k8s.io \"\" is invalid: spec.user: Invalid value: \"\": at least one of user or group must be specified",
        ));
    }
    Ok(user)
}

fn attributes_of(spec: &Value, user: UserInfo) -> ApiResult<Attributes> {
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    match (spec.get("resourceAttributes"), spec.get("nonResourceAttributes")) {
        (Some(r), None) => Ok(Attributes {
            user,
            verb: text(r, "verb"),
            resource_request: true,
            api_group: text(r, "group"),
            api_version: text(r, "version"),
            resource: text(r, "resource"),
            subresource: text(r, "subresource"),
            namespace: text(r, "namespace"),
            name: text(r, "name"),
            path: String::new(),
        }),
        (None, Some(n)) => Ok(Attributes { user, verb: text(n, "verb"), path: text(n, "path"), ..Default::default() }),
        _ => Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
    }
}

fn rules_review(security: &Security, user: &UserInfo, namespace: &str) -> Value {
    let (rules, incomplete, errors) = security.authorizer.rules_for(user, namespace);
    let list = |v: &Option<Vec<String>>| json!(v.clone().unwrap_or_default());
    let resource_rules: Vec<Value> = rules
        .iter()
        .filter(|r| r.resources.as_ref().is_some_and(|r| !r.is_empty()))
        .map(|r| {
            let mut rule = json!({"verbs": r.verbs, "apiGroups": list(&r.api_groups), "resources": list(&r.resources)});
            if r.resource_names.as_ref().is_some_and(|n| !n.is_empty()) {
                rule["resourceNames"] = list(&r.resource_names);
            }
            rule
        })
        .collect();
    let non_resource_rules: Vec<Value> = rules
        .iter()
        .filter(|r| r.non_resource_urls.as_ref().is_some_and(|u| !u.is_empty()))
        .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": list(&r.non_resource_urls)}))
        .collect();
    let mut status = json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": incomplete});
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    status
}

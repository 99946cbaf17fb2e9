//! Admission control, as upstream's: after authorization, mutating plugins
//! may complete what is written (defaults from LimitRanges, the service
//! account, priorities), then validating plugins may refuse it (quota,
//! security rules). Plugins run in upstream's fixed order whatever order
//! `--enable-admission-plugins` names them in.

mod certificates;
mod limit_ranger;
mod node_restriction;
mod pod_security;
mod pods;
mod policy;
mod quota;
mod runtime_class;
mod service_account;
mod storage;
mod webhook;

use std::fmt::Display;

use anyhow::{bail, Result};
use async_trait::async_trait;
use serde_json::Value;
use skiff_auth::UserInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    /// exec, attach and port-forward.
    Connect,
}

/// What a request does, as upstream's `admission.Attributes`.
pub struct Request<'a> {
    pub operation: Operation,
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub user: &'a UserInfo,
    pub dry_run: bool,
    /// The stored object an update changes.
    pub old: Option<&'a Value>,
}

impl Request<'_> {
    fn is(&self, group: &str, resource: &str) -> bool {
        self.group == group && self.resource == resource && self.subresource.is_empty()
    }
}

/// A refusal, as the Status the client gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl Rejection {
    /// Upstream's `admission.NewForbidden`: `<resource> "<name>" is forbidden: <why>`.
    pub fn forbidden(req: &Request<'_>, why: impl Display) -> Rejection {
        let resource = if req.group.is_empty() { req.resource.to_string() } else { format!("{}.{}", req.resource, req.group) };
        let message = match req.name {
            "" => format!("{resource} is forbidden: {why}"),
            name => format!("{resource} {name:?} is forbidden: {why}"),
        };
        Rejection { code: 403, reason: "Forbidden", message }
    }

    fn internal(why: impl Display) -> Rejection {
        Rejection { code: 500, reason: "InternalError", message: format!("Internal error occurred: {why}") }
    }
}

tokio::task_local! {
    /// The audit annotations of the request being served (upstream's
    /// `AddAnnotation` on admission attributes); the API server scopes it
    /// around each request and writes them into its audit event.
    pub static AUDIT_ANNOTATIONS: std::cell::RefCell<Vec<(String, String)>>;
}

/// Adds an annotation to the request's audit event, if it is audited.
pub fn annotate(key: &str, value: String) {
    let _ = AUDIT_ANNOTATIONS.try_with(|a| a.borrow_mut().push((key.to_string(), value)));
}

/// Upstream's aggregate error text: one message as is, several in brackets.
fn aggregate(messages: &[String]) -> String {
    match messages {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// What plugins may read and write of the cluster (the API server's
/// registry; admission never talks to the store itself).
#[async_trait]
pub trait Cluster: Send + Sync {
    async fn list(&self, group: &str, resource: &str, namespace: Option<&str>) -> Result<Vec<Value>, String>;
    /// Shared: the cache may hand the same object to every request.
    async fn get(&self, group: &str, resource: &str, namespace: Option<&str>, name: &str) -> Result<Option<std::sync::Arc<Value>>, String>;
    /// Replaces the object with what `change` makes of the current one,
    /// retrying from a fresh read on conflicts; an error from `change` ends it.
    async fn update(&self, group: &str, resource: &str, namespace: &str, name: &str, change: &(dyn for<'v> Fn(&'v Value) -> Result<Value, Rejection> + Send + Sync)) -> Result<(), Rejection>;
    /// POSTs `body` to a webhook's `clientConfig` (a URL, or a Service),
    /// returning the response body of a 200 within `timeout`.
    async fn call_webhook(&self, client_config: &Value, body: Vec<u8>, timeout: std::time::Duration) -> Result<Vec<u8>, String>;
    /// Whether the authorizer allows `user` the verb on the named resource
    /// (cluster-wide), as upstream's plugins ask their authorizer.
    fn allows(&self, user: &UserInfo, verb: &str, group: &str, resource: &str, name: &str) -> bool;
}

#[async_trait]
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Completes `obj` (mutating plugins).
    async fn mutate(&self, _req: &Request<'_>, _obj: &mut Value, _cluster: &dyn Cluster) -> Result<(), Rejection> {
        Ok(())
    }

    /// Refuses what must not be written (validating plugins); `obj` is the
    /// object being written, or for Delete and Connect the stored one.
    async fn validate(&self, _req: &Request<'_>, _obj: &Value, _cluster: &dyn Cluster) -> Result<(), Rejection> {
        Ok(())
    }

    /// Validation as the chain runs it: the refusal, or warnings for the
    /// client about what is admitted anyway. Plugins that warn override
    /// this, so that one evaluation gives both; the others only `validate`.
    async fn check(&self, req: &Request<'_>, obj: &Value, cluster: &dyn Cluster) -> Result<Vec<String>, Rejection> {
        self.validate(req, obj, cluster).await.map(|()| Vec::new())
    }
}

/// Every plugin in upstream's order, which is the order they run in, and
/// whether it is on unless `--disable-admission-plugins` names it
/// (upstream's defaults among the plugins Skiff has).
const PLUGINS: &[(&str, bool)] = &[
    ("AlwaysAdmit", false),
    ("NamespaceLifecycle", true),
    ("SecurityContextDeny", false),
    ("DenyExecOnPrivileged", false),
    ("LimitRanger", true),
    ("ServiceAccount", true),
    ("NodeRestriction", true),
    ("AlwaysPullImages", false),
    ("PodSecurity", true),
    ("Priority", true),
    ("DefaultStorageClass", true),
    ("StorageObjectInUseProtection", true),
    ("PersistentVolumeClaimResize", true),
    ("RuntimeClass", true),
    ("CertificateApproval", true),
    ("CertificateSigning", true),
    ("CertificateSubjectRestriction", true),
    ("MutatingAdmissionWebhook", true),
    ("ValidatingAdmissionPolicy", true),
    ("ValidatingAdmissionWebhook", true),
    ("ResourceQuota", true),
    ("AlwaysDeny", false),
];

fn plugin(name: &str) -> Box<dyn Plugin> {
    match name {
        "AlwaysAdmit" => Box::new(pods::AlwaysAdmit),
        "AlwaysDeny" => Box::new(pods::AlwaysDeny),
        "NamespaceLifecycle" => Box::new(pods::NamespaceLifecycle),
        "SecurityContextDeny" => Box::new(pods::SecurityContextDeny),
        "DenyExecOnPrivileged" => Box::new(pods::DenyExecOnPrivileged),
        "AlwaysPullImages" => Box::new(pods::AlwaysPullImages),
        "Priority" => Box::new(pods::Priority),
        "PodSecurity" => Box::new(pod_security::PodSecurity),
        "DefaultStorageClass" => Box::new(storage::DefaultStorageClass),
        "StorageObjectInUseProtection" => Box::new(storage::StorageObjectInUseProtection),
        "PersistentVolumeClaimResize" => Box::new(storage::PersistentVolumeClaimResize),
        "RuntimeClass" => Box::new(runtime_class::RuntimeClass),
        "CertificateApproval" => Box::new(certificates::CertificateApproval),
        "CertificateSigning" => Box::new(certificates::CertificateSigning),
        "CertificateSubjectRestriction" => Box::new(certificates::CertificateSubjectRestriction),
        "LimitRanger" => Box::new(limit_ranger::LimitRanger),
        "ServiceAccount" => Box::new(service_account::ServiceAccount),
        "NodeRestriction" => Box::new(node_restriction::NodeRestriction),
        "ResourceQuota" => Box::new(quota::ResourceQuota),
        "MutatingAdmissionWebhook" => Box::new(webhook::Webhooks { mutating: true }),
        "ValidatingAdmissionWebhook" => Box::new(webhook::Webhooks { mutating: false }),
        "ValidatingAdmissionPolicy" => Box::new(policy::ValidatingAdmissionPolicy),
        other => unreachable!("{other} is in PLUGINS"),
    }
}

/// The enabled plugins, in order.
pub struct Chain {
    plugins: Vec<Box<dyn Plugin>>,
}

impl Chain {
    /// The defaults plus `enable`, minus `disable` (upstream's flags).
    pub fn new(enable: &[String], disable: &[String]) -> Result<Chain> {
        let names: Vec<&str> = PLUGINS.iter().map(|(name, _)| *name).collect();
        for name in enable.iter().chain(disable) {
            if !names.contains(&name.as_str()) {
                bail!("admission plugin {name:?} is unknown; Skiff has {}", names.join(", "));
            }
        }
        if let Some(both) = enable.iter().find(|n| disable.contains(n)) {
            bail!("admission plugin {both:?} is both enabled and disabled");
        }
        let on = |(name, default): &&(&str, bool)| (*default || enable.iter().any(|e| e == name)) && !disable.iter().any(|d| d == name);
        Ok(Chain { plugins: PLUGINS.iter().filter(on).map(|(name, _)| plugin(name)).collect() })
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|p| p.name()).collect()
    }

    pub async fn mutate(&self, req: &Request<'_>, obj: &mut Value, cluster: &dyn Cluster) -> Result<(), Rejection> {
        for p in &self.plugins {
            p.mutate(req, obj, cluster).await?;
        }
        Ok(())
    }

    /// Ok with the warnings for the client, or the first refusal.
    pub async fn validate(&self, req: &Request<'_>, obj: &Value, cluster: &dyn Cluster) -> Result<Vec<String>, Rejection> {
        let mut warnings = Vec::new();
        for p in &self.plugins {
            warnings.extend(p.check(req, obj, cluster).await?);
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_pick_plugins_in_upstream_order() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let chain = Chain::new(&s(&["AlwaysDeny", "AlwaysPullImages"]), &s(&["LimitRanger"])).unwrap();
        let names = ["NamespaceLifecycle", "ServiceAccount", "NodeRestriction", "AlwaysPullImages", "PodSecurity", "Priority", "DefaultStorageClass", "StorageObjectInUseProtection", "PersistentVolumeClaimResize", "RuntimeClass", "CertificateApproval", "CertificateSigning", "CertificateSubjectRestriction"];
        let rest = ["MutatingAdmissionWebhook", "ValidatingAdmissionPolicy", "ValidatingAdmissionWebhook", "ResourceQuota", "AlwaysDeny"];
        assert_eq!(chain.names(), [&names[..], &rest[..]].concat());
        assert!(Chain::new(&s(&["Nope"]), &[]).is_err());
        assert!(Chain::new(&s(&["AlwaysDeny"]), &s(&["AlwaysDeny"])).is_err());
    }
}

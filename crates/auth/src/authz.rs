//! Authorization: the request's attributes, and the modes of
//! `--authorization-mode`, asked in order until one decides.

use std::sync::Arc;

use anyhow::{bail, Result};

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::authn::{UserInfo, MASTERS};

/// What a request does, as upstream's `authorizer.Attributes`.
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    pub user: UserInfo,
    pub verb: String,
    /// A resource request names a resource; the others a path.
    pub resource_request: bool,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
}

impl Attributes {
    pub fn read_only(&self) -> bool {
        matches!(self.verb.as_str(), "get" | "list" | "watch")
    }

    /// `resource/subresource`, as rules name it.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// Upstream's wording of a denial, without the leading
    /// `<resource> is forbidden: ` that the Status adds.
    pub fn forbidden_message(&self) -> String {
        let user = &self.user.name;
        if !self.resource_request {
            return format!("User {user:?} cannot {} path {:?}", self.verb, self.path);
        }
        let resource = self.combined_resource();
        match self.namespace.as_str() {
            "" => format!("User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope", self.verb, self.api_group),
            ns => format!("User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {ns:?}", self.verb, self.api_group),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// An explicit denial: later modes are not asked.
    Deny(String),
    /// This mode has no opinion; the reason joins the denial if none allows.
    NoOpinion(String),
}

/// One mode of `--authorization-mode`.
pub enum Mode {
    AlwaysAllow,
    AlwaysDeny,
    Abac(crate::abac::Policy),
    Rbac(Arc<crate::rbac::Authorizer>),
    /// Nodes (`system:node:<name>` in `system:nodes`) get what a kubelet needs.
    Node,
}

/// The modes, in order.
pub struct Authorizer {
    modes: Vec<Mode>,
}

impl Authorizer {
    pub fn new(modes: Vec<Mode>) -> Authorizer {
        Authorizer { modes }
    }

    /// The modes `--authorization-mode` names; ABAC needs its policy file
    /// and RBAC its rule index.
    pub fn parse_modes(flag: &str) -> Result<Vec<String>> {
        let mut modes = Vec::new();
        for mode in flag.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            if !["AlwaysAllow", "AlwaysDeny", "ABAC", "RBAC", "Node", "Webhook"].contains(&mode) {
                bail!("authorization mode {mode:?} is not one of AlwaysAllow, AlwaysDeny, ABAC, RBAC, Node");
            }
            if mode == "Webhook" {
                bail!("authorization mode Webhook is not supported");
            }
            if modes.iter().any(|m| m == mode) {
                bail!("authorization mode {mode:?} is given twice");
            }
            modes.push(mode.to_string());
        }
        if modes.is_empty() {
            bail!("at least one authorization mode is needed");
        }
        Ok(modes)
    }

    pub fn authorize(&self, a: &Attributes) -> Decision {
        // As upstream's privileged-groups authorizer, asked before any mode.
        if a.user.groups.iter().any(|g| g == MASTERS) {
            return Decision::Allow;
        }
        let mut reasons = Vec::new();
        for mode in &self.modes {
            let decision = match mode {
                Mode::AlwaysAllow => Decision::Allow,
                Mode::AlwaysDeny => Decision::NoOpinion("Everything is forbidden.".into()),
                Mode::Abac(policy) => policy.authorize(a),
                Mode::Rbac(rbac) => rbac.authorize(a),
                Mode::Node => crate::rbac::node_authorize(a),
            };
            match decision {
                Decision::NoOpinion(reason) => {
                    if !reason.is_empty() {
                        reasons.push(reason);
                    }
                }
                decided => return decided,
            }
        }
        Decision::Deny(reasons.join("\n"))
    }

    /// What `user` may do in `namespace`, for SelfSubjectRulesReview: the
    /// rules, whether they are incomplete (a mode that cannot list them),
    /// and errors met on the way.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, bool, Vec<String>) {
        let everything = || {
            let all = vec!["*".to_string()];
            vec![
                PolicyRule { verbs: all.clone(), api_groups: Some(all.clone()), resources: Some(all.clone()), ..Default::default() },
                PolicyRule { verbs: all.clone(), non_resource_urls: Some(all), ..Default::default() },
            ]
        };
        if user.groups.iter().any(|g| g == MASTERS) {
            return (everything(), false, Vec::new());
        }
        let (mut rules, mut incomplete, mut errors) = (Vec::new(), false, Vec::new());
        for mode in &self.modes {
            match mode {
                Mode::AlwaysAllow => rules.extend(everything()),
                Mode::AlwaysDeny => {}
                Mode::Abac(_) => incomplete = true,
                Mode::Node => incomplete |= user.name.starts_with("system:node:"),
                Mode::Rbac(rbac) => {
                    let (granted, missing) = rbac.rules_for(user, namespace);
                    rules.extend(granted);
                    errors.extend(missing);
                }
            }
        }
        (rules, incomplete, errors)
    }
}

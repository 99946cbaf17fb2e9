//! CertificateSigningRequests, as upstream's csrapproving and csrsigning
//! controllers handle them: a kubelet's client certificate request is
//! approved once a SubjectAccessReview says its requester may ask for one
//! (`certificatesigningrequests/nodeclient`, or `selfnodeclient` for a node
//! renewing its own), and approved requests for the built-in signers are
//! signed with the cluster CA.
//!
//! Unlike upstream, a node's request for its own serving certificate
//! (`kubernetes.io/kubelet-serving`) is approved too, as k3s does: the API
//! server verifies kubelets' certificates, so a node cannot serve without
//! one, and its names are those the node already reports in its status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::common::Error;

const CLIENT_KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const CLIENT: &str = "kubernetes.io/kube-apiserver-client";
const SERVING: &str = "kubernetes.io/kubelet-serving";

struct Context {
    client: kube::Client,
    signer: Option<skiff_auth::pki::Pki>,
}

pub async fn run(client: kube::Client, signer: Option<skiff_auth::pki::Pki>) {
    let context = Arc::new(Context { client: client.clone(), signer });
    let controller = Controller::new(Api::<CertificateSigningRequest>::all(client), watcher::Config::default());
    crate::common::run("certificatesigningrequest", controller, reconcile, context).await;
}

/// The request's parsing and its signer's rules, on the object alone: for
/// the fuzz targets.
pub fn fuzz(csr: &CertificateSigningRequest) {
    if let Ok(request) = Request::parse(csr) {
        let _ = request.fits(&csr.spec.signer_name, &csr.spec.usages.clone().unwrap_or_default());
    }
}

fn condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    let conditions = csr.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, context: Arc<Context>) -> Result<Action, Error> {
    let issued = csr.status.as_ref().is_some_and(|s| s.certificate.as_ref().is_some_and(|c| !c.0.is_empty()));
    if issued || condition(&csr, "Denied") || condition(&csr, "Failed") {
        return Ok(Action::await_change());
    }
    let api: Api<CertificateSigningRequest> = Api::all(context.client.clone());
    let name = csr.metadata.name.clone().unwrap_or_default();
    let request = Request::parse(&csr);
    if !condition(&csr, "Approved") {
        if let Some(message) = approval(&csr, request.as_ref().ok(), &context.client).await? {
            let mut conditions = csr.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            conditions.push(new_condition("Approved", "AutoApproved", message));
            let patch = json!({"status": {"conditions": conditions}});
            api.patch_subresource("approval", &name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        return Ok(Action::await_change());
    }
    let Some(signer) = &context.signer else { return Ok(Action::await_change()) };
    let signer_name = csr.spec.signer_name.as_str();
    if ![CLIENT_KUBELET, CLIENT, SERVING].contains(&signer_name) {
        return Ok(Action::await_change());
    }
    let status = match request.and_then(|r| r.fits(signer_name, &csr.spec.usages.clone().unwrap_or_default()).map(|_| r)) {
        Ok(request) => {
            let lifetime = csr.spec.expiration_seconds.map(|s| Duration::from_secs(s.max(600) as u64));
            let usages = csr.spec.usages.clone().unwrap_or_default();
            let certificate = signer.sign_request(&request.pem, &usages, lifetime).map_err(|e| Error(format!("{e:#}")))?;
            json!({"certificate": k8s_openapi::ByteString(certificate.into_bytes())})
        }
        Err(why) => {
            let mut conditions = csr.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            conditions.push(new_condition("Failed", "SignerValidationFailure", why));
            json!({"conditions": conditions})
        }
    };
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await?;
    Ok(Action::await_change())
}

fn new_condition(kind: &str, reason: &str, message: String) -> CertificateSigningRequestCondition {
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(chrono::Utc::now());
    CertificateSigningRequestCondition {
        type_: kind.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// Why the request may be approved automatically, if it may.
async fn approval(csr: &CertificateSigningRequest, request: Option<&Request>, client: &kube::Client) -> Result<Option<String>, Error> {
    let (Some(request), Some(user)) = (request, csr.spec.username.as_deref()) else { return Ok(None) };
    let usages = csr.spec.usages.clone().unwrap_or_default();
    let signer = csr.spec.signer_name.as_str();
    if (signer != CLIENT_KUBELET && signer != SERVING) || request.fits(signer, &usages).is_err() {
        return Ok(None);
    }
    let own = request.common_name == user;
    if signer == SERVING {
        return Ok(own.then(|| "Auto approving kubelet serving certificate for its own node.".to_string()));
    }
    let (subresource, message) = match own {
        true => ("selfnodeclient", "Auto approving self kubelet client certificate after SubjectAccessReview."),
        false => ("nodeclient", "Auto approving kubelet client certificate after SubjectAccessReview."),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            uid: csr.spec.uid.clone(),
            groups: csr.spec.groups.clone(),
            extra: csr.spec.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                group: Some("certificates.k8s.io".into()),
                resource: Some("certificatesigningrequests".into()),
                subresource: Some(subresource.into()),
                verb: Some("create".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let reviewed = Api::<SubjectAccessReview>::all(client.clone()).create(&PostParams::default(), &review).await?;
    Ok(reviewed.status.is_some_and(|s| s.allowed).then(|| message.to_string()))
}

/// The PKCS#10 request inside a CSR, and what its signer's rules look at.
struct Request {
    pem: String,
    common_name: String,
    organizations: Vec<String>,
    dns_or_ip_names: usize,
    other_names: usize,
}

impl Request {
    fn parse(csr: &CertificateSigningRequest) -> Result<Request, String> {
        let pem = String::from_utf8(csr.spec.request.0.clone()).map_err(|_| "the request is not PEM".to_string())?;
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| "the request is not PEM".to_string())?;
        if block.label != "CERTIFICATE REQUEST" {
            return Err(format!("PEM block type must be CERTIFICATE REQUEST, not {}", block.label));
        }
        let (_, parsed) = X509CertificationRequest::from_der(&block.contents).map_err(|e| format!("parsing the request: {e}"))?;
        let subject = &parsed.certification_request_info.subject;
        let strings = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue>| -> Vec<String> {
            it.filter_map(|a| a.as_str().ok().map(String::from)).collect()
        };
        let mut request = Request {
            common_name: strings(&mut subject.iter_common_name()).join(","),
            organizations: strings(&mut subject.iter_organization()),
            dns_or_ip_names: 0,
            other_names: 0,
            pem,
        };
        for extension in parsed.requested_extensions().into_iter().flatten() {
            if let ParsedExtension::SubjectAlternativeName(san) = extension {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(_) | GeneralName::IPAddress(_) => request.dns_or_ip_names += 1,
                        _ => request.other_names += 1,
                    }
                }
            }
        }
        Ok(request)
    }

    /// Upstream's per-signer rules (certificates/v1 validation of the
    /// kubelet signers), in its words.
    fn fits(&self, signer: &str, usages: &[String]) -> Result<(), String> {
        let allowed: &[&str] = match signer {
            CLIENT_KUBELET => &["digital signature", "key encipherment", "client auth"],
            SERVING => &["digital signature", "key encipherment", "server auth"],
            _ => return Ok(()),
        };
        if !self.common_name.starts_with("system:node:") || self.common_name.len() == "system:node:".len() {
            return Err(format!("subject common name does not begin with system:node:: {:?}", self.common_name));
        }
        if self.organizations != ["system:nodes"] {
            return Err("subject organization is not system:nodes".into());
        }
        if let Some(bad) = usages.iter().find(|u| !allowed.contains(&u.as_str())) {
            return Err(format!("usages did not match {allowed:?}: {bad:?} is not allowed"));
        }
        let required = if signer == SERVING { "server auth" } else { "client auth" };
        if !usages.iter().any(|u| u == required) || !usages.iter().any(|u| u == "digital signature") {
            return Err(format!("usages must include \"digital signature\" and {required:?}"));
        }
        match signer {
            CLIENT_KUBELET if self.dns_or_ip_names + self.other_names > 0 => Err("subjectAltNames are not allowed".into()),
            SERVING if self.other_names > 0 => Err("email and URI subjectAltNames are not allowed".into()),
            SERVING if self.dns_or_ip_names == 0 => Err("DNS or IP subjectAltName is required".into()),
            _ => Ok(()),
        }
    }
}

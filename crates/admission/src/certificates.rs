//! Upstream's CertificateApproval, CertificateSigning and
//! CertificateSubjectRestriction: who may approve and sign a
//! CertificateSigningRequest is decided per signer (`approve` and `sign`
//! on `signers` in certificates.k8s.io, named by signerName or its
//! `domain/*`), and no request through the API server's client signer may
//! ask for `system:masters`.

use async_trait::async_trait;
use base64::Engine;
use serde_json::Value;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::{Cluster, Operation, Plugin, Rejection, Request};

const GROUP: &str = "certificates.k8s.io";
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

fn is_csr(req: &Request<'_>, subresource: &str) -> bool {
    req.group == GROUP && req.resource == "certificatesigningrequests" && req.subresource == subresource
}

/// Upstream's IsAuthorizedForSignerName: the verb on the signer, or on all
/// of its domain's signers.
fn require(req: &Request<'_>, cluster: &dyn Cluster, verb: &str, signer: &str) -> Result<(), Rejection> {
    let domain = format!("{}/*", signer.split('/').next().unwrap_or_default());
    if cluster.allows(req.user, verb, GROUP, "signers", signer) || cluster.allows(req.user, verb, GROUP, "signers", &domain) {
        return Ok(());
    }
    Err(Rejection::forbidden(req, format!("user not permitted to {verb} requests with signerName {signer:?}")))
}

fn signer_of(csr: &Value) -> &str {
    csr["spec"]["signerName"].as_str().unwrap_or_default()
}

pub struct CertificateApproval;

#[async_trait]
impl Plugin for CertificateApproval {
    fn name(&self) -> &'static str {
        "CertificateApproval"
    }

    async fn validate(&self, req: &Request<'_>, csr: &Value, cluster: &dyn Cluster) -> Result<(), Rejection> {
        if req.operation != Operation::Update || !is_csr(req, "approval") {
            return Ok(());
        }
        require(req, cluster, "approve", signer_of(csr))
    }
}

pub struct CertificateSigning;

#[async_trait]
impl Plugin for CertificateSigning {
    fn name(&self) -> &'static str {
        "CertificateSigning"
    }

    async fn validate(&self, req: &Request<'_>, csr: &Value, cluster: &dyn Cluster) -> Result<(), Rejection> {
        if req.operation != Operation::Update || !is_csr(req, "status") {
            return Ok(());
        }
        // Only issuing (or changing) the certificate is signing.
        let old = req.old.unwrap_or(&Value::Null);
        if old["status"]["certificate"] == csr["status"]["certificate"] {
            return Ok(());
        }
        require(req, cluster, "sign", signer_of(old))
    }
}

pub struct CertificateSubjectRestriction;

#[async_trait]
impl Plugin for CertificateSubjectRestriction {
    fn name(&self) -> &'static str {
        "CertificateSubjectRestriction"
    }

    async fn validate(&self, req: &Request<'_>, csr: &Value, _: &dyn Cluster) -> Result<(), Rejection> {
        if req.operation != Operation::Create || !is_csr(req, "") || signer_of(csr) != CLIENT_SIGNER {
            return Ok(());
        }
        let organizations = organizations(csr).map_err(|e| Rejection::forbidden(req, format!("failed to parse CSR: {e}")))?;
        if organizations.iter().any(|o| o == "system:masters") {
            return Err(Rejection::forbidden(req, format!("use of {CLIENT_SIGNER} signer with system:masters group is not allowed")));
        }
        Ok(())
    }
}

/// The subject organizations (groups, to the API server) a CSR asks for.
fn organizations(csr: &Value) -> Result<Vec<String>, String> {
    let encoded = csr["spec"]["request"].as_str().unwrap_or_default();
    let pem = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|e| e.to_string())?;
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).map_err(|_| "PEM block type must be CERTIFICATE REQUEST".to_string())?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    let (_, parsed) = X509CertificationRequest::from_der(&block.contents).map_err(|e| e.to_string())?;
    let subject = &parsed.certification_request_info.subject;
    Ok(subject.iter_organization().filter_map(|o| o.as_str().ok().map(String::from)).collect())
}

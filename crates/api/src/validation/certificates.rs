//! certificates.k8s.io: CertificateSigningRequest, as upstream's
//! `pkg/apis/certificates/validation` checks it.
//!
//! This crate has no X.509 parser: a request must be a `CERTIFICATE
//! REQUEST` PEM block whose DER has a CSR's outer shape (info, algorithm,
//! signature), and an issued certificate `CERTIFICATE` blocks of a
//! certificate's shape; signatures are not verified.

use std::collections::BTreeSet;

use base64::Engine;
use k8s_openapi::api::certificates::v1::{CertificateSigningRequest, CertificateSigningRequestCondition};

use super::go::go_bytes;
use super::{dns1123_label, dns1123_subdomain, immutable, Bad, Errors, Op, Path};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    Some(match kind {
        "CertificateSigningRequest" => op.run(csr_create, csr_update, csr_status),
        _ => return None,
    })
}

const LEGACY_SIGNER: &str = "kubernetes.io/legacy-unknown";
const TRUE_ONLY: &[&str] = &["True"];
const ALL_STATUSES: &[&str] = &["False", "True", "Unknown"];
/// Upstream's key usages, sorted as its error lists them.
const USAGES: &[&str] = &[
    "any", "cert sign", "client auth", "code signing", "content commitment", "crl sign", "data encipherment", "decipher only",
    "digital signature", "email protection", "encipher only", "ipsec end system", "ipsec tunnel", "ipsec user", "key agreement",
    "key encipherment", "microsoft sgc", "netscape sgc", "ocsp signing", "s/mime", "server auth", "signing", "timestamping",
];

/// What a write may do or get away with (upstream's
/// `certificateValidationOptions`): the `allow_*` tolerances keep data an
/// older server accepted updatable.
#[derive(Default)]
struct Options {
    setting_approval_conditions: bool,
    setting_certificate: bool,
    both_approved_and_denied: bool,
    legacy_signer_name: bool,
    duplicate_condition_types: bool,
    empty_condition_type: bool,
    arbitrary_certificate: bool,
    unknown_usages: bool,
    duplicate_usages: bool,
}

impl Options {
    fn for_update(new: &CertificateSigningRequest, old: &CertificateSigningRequest) -> Options {
        let old_conditions = conditions(old);
        let has = |t: &str| old_conditions.iter().any(|c| c.type_ == t);
        let mut types = BTreeSet::new();
        let old_usages = usages(old);
        let mut seen_usages = BTreeSet::new();
        Options {
            both_approved_and_denied: has("Approved") && has("Denied"),
            legacy_signer_name: old.spec.signer_name == LEGACY_SIGNER,
            duplicate_condition_types: !old_conditions.iter().all(|c| types.insert(c.type_.as_str())),
            empty_condition_type: old_conditions.iter().any(|c| c.type_.is_empty()),
            arbitrary_certificate: certificate(new) == certificate(old) || certificate_error(certificate(old)).is_some(),
            unknown_usages: old_usages.iter().any(|u| !USAGES.contains(&u.as_str())),
            duplicate_usages: !old_usages.iter().all(|u| seen_usages.insert(u.as_str())),
            ..Options::default()
        }
    }
}

fn conditions(csr: &CertificateSigningRequest) -> &[CertificateSigningRequestCondition] {
    csr.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default()
}

fn usages(csr: &CertificateSigningRequest) -> &[String] {
    csr.spec.usages.as_deref().unwrap_or_default()
}

fn certificate(csr: &CertificateSigningRequest) -> &[u8] {
    csr.status.as_ref().and_then(|s| s.certificate.as_ref()).map(|c| c.0.as_slice()).unwrap_or_default()
}

fn csr_create(csr: &CertificateSigningRequest) -> Errors {
    validate(csr, &Options::default())
}

/// A write of the main resource. Skiff keeps the stored status on such a
/// write, so only the spec can change here, and it may not: upstream
/// silently keeps the stored spec instead.
fn csr_update(new: &CertificateSigningRequest, old: &CertificateSigningRequest) -> Errors {
    let mut errs = update_rules(new, old, &Options::for_update(new, old));
    errs.extend(immutable(&new.spec, &old.spec, &Path::new("spec")));
    errs
}

/// `/status` and `/approval` writes: Skiff validates both as status
/// writes, so each may do what either may upstream (set the certificate,
/// add or change Approved/Denied conditions).
fn csr_status(new: &CertificateSigningRequest, old: &CertificateSigningRequest) -> Errors {
    let opts = Options { setting_approval_conditions: true, setting_certificate: true, ..Options::for_update(new, old) };
    let mut errs = validate(new, &opts);
    errs.extend(update_rules(new, old, &opts));
    errs
}

fn validate(csr: &CertificateSigningRequest, opts: &Options) -> Errors {
    let mut errs = Vec::new();
    let spec = Path::new("spec");
    if let Err(why) = request_error(&csr.spec.request.0) {
        errs.push(spec.child("request").invalid(Bad::raw(go_bytes(&csr.spec.request.0)), &why));
    }
    let usages = usages(csr);
    if usages.is_empty() {
        errs.push(spec.child("usages").required(""));
    }
    if !opts.unknown_usages {
        for (i, usage) in usages.iter().enumerate() {
            if !USAGES.contains(&usage.as_str()) {
                errs.push(spec.child("usages").index(i).not_supported(usage, USAGES));
            }
        }
    }
    if !opts.duplicate_usages {
        let mut seen = BTreeSet::new();
        for (i, usage) in usages.iter().enumerate() {
            if !seen.insert(usage.as_str()) {
                errs.push(spec.child("usages").index(i).duplicate(usage));
            }
        }
    }
    let signer = &csr.spec.signer_name;
    if !opts.legacy_signer_name && signer == LEGACY_SIGNER {
        errs.push(spec.child("signerName").invalid(signer, "the legacy signerName is not allowed via this API version"));
    } else {
        errs.extend(signer_name(signer, &spec.child("signerName")));
    }
    if let Some(seconds) = csr.spec.expiration_seconds.filter(|s| *s < 600) {
        errs.push(spec.child("expirationSeconds").invalid(seconds, "may not specify a duration less than 600 seconds (10 minutes)"));
    }
    errs.extend(validate_conditions(conditions(csr), opts, &Path::new("status").child("conditions")));
    if !opts.arbitrary_certificate {
        if let Some(why) = certificate_error(certificate(csr)) {
            errs.push(Path::new("status").child("certificate").invalid("<certificate data>", &why));
        }
    }
    errs
}

fn validate_conditions(conditions: &[CertificateSigningRequestCondition], opts: &Options, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    let (mut approved, mut denied) = (false, false);
    for (i, c) in conditions.iter().enumerate() {
        let at = path.index(i);
        if !opts.empty_condition_type && c.type_.is_empty() {
            errs.push(at.child("type").required(""));
        }
        let allowed = if matches!(c.type_.as_str(), "Approved" | "Denied" | "Failed") { TRUE_ONLY } else { ALL_STATUSES };
        if c.status.is_empty() {
            errs.push(at.child("status").required(""));
        } else if !allowed.contains(&c.status.as_str()) {
            errs.push(at.child("status").not_supported(&c.status, allowed));
        }
        if !opts.both_approved_and_denied {
            let conflict = match c.type_.as_str() {
                "Approved" => {
                    approved = true;
                    denied
                }
                "Denied" => {
                    denied = true;
                    approved
                }
                _ => false,
            };
            if conflict {
                errs.push(at.child("type").invalid(&c.type_, "Approved and Denied conditions are mutually exclusive"));
            }
        }
        if !opts.duplicate_condition_types && !seen.insert(c.type_.as_str()) {
            errs.push(at.child("type").duplicate(&c.type_));
        }
    }
    errs
}

/// What an update may not do to the status (upstream's
/// `validateCertificateSigningRequestUpdate` beyond `validate`).
fn update_rules(new: &CertificateSigningRequest, old: &CertificateSigningRequest, opts: &Options) -> Errors {
    let mut errs = Vec::new();
    let path = Path::new("status").child("conditions");
    let of_type = |csr, t: &str| -> Vec<CertificateSigningRequestCondition> { conditions(csr).iter().filter(|c| c.type_ == t).cloned().collect() };
    for t in ["Approved", "Denied", "Failed"] {
        if of_type(new, t).len() < of_type(old, t).len() {
            errs.push(path.forbidden(&format!("updates may not remove a condition of type {t:?}")));
        }
    }
    if !opts.setting_approval_conditions {
        for t in ["Approved", "Denied"] {
            let (was, now) = (of_type(old, t), of_type(new, t));
            if now.len() > was.len() {
                errs.push(path.forbidden(&format!("updates may not add a condition of type {t:?}")));
            } else if now.len() == was.len() && now != was {
                // Upstream appends a diff of the conditions to this message.
                errs.push(path.forbidden(&format!("updates may not modify a condition of type {t:?}")));
            }
        }
    }
    if certificate(new) != certificate(old) {
        let at = Path::new("status").child("certificate");
        if !opts.setting_certificate {
            errs.push(at.forbidden("updates may not set certificate content"));
        } else if !certificate(old).is_empty() {
            errs.push(at.forbidden("updates may not modify existing certificate content"));
        }
    }
    errs
}

/// Upstream's `ValidateSignerName`: `example.com/signer-name`, a domain of
/// DNS labels and a path of DNS subdomains.
pub(super) fn signer_name(name: &str, path: &Path) -> Errors {
    if name.is_empty() {
        return vec![path.required("")];
    }
    let segments: Vec<&str> = name.split('/').collect();
    if segments.len() != 2 {
        return vec![path.invalid(name, "must be a fully qualified domain and path of the form 'example.com/signer-name'")];
    }
    let (domain, rest) = (segments[0], segments[1]);
    let mut errs = Vec::new();
    if domain.len() > 253 {
        errs.push(path.too_long(253));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if let Some((label, why)) = labels.iter().find_map(|l| dns1123_label(l).err().map(|e| (l, e))) {
        errs.push(path.invalid(domain, &format!("validating label {label:?}: {why}")));
    }
    if labels.len() < 2 {
        errs.push(path.invalid(domain, "should be a domain with at least two segments separated by dots"));
    }
    if let Some((part, why)) = rest.split('.').find_map(|p| dns1123_subdomain(p).err().map(|e| (p, e))) {
        errs.push(path.invalid(rest, &format!("validating component {part:?}: {why}")));
    }
    let max = 253 + (253 + 63 + 1) + 1;
    if name.len() > max {
        errs.push(path.too_long(max));
    }
    errs
}

/// Why `pem` is not a PEM-encoded PKCS#10 request (upstream's
/// `certificates.ParseCSR`; the signature is not checked here).
fn request_error(pem: &[u8]) -> Result<(), String> {
    let block = pem_blocks(pem).into_iter().next();
    let Some(block) = block.filter(|b| b.label == "CERTIFICATE REQUEST") else {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    };
    let (tag, body, rest) = der(&block.bytes).map_err(asn1)?;
    if tag != 0x30 {
        return Err(asn1("tags don't match"));
    }
    if !rest.is_empty() {
        return Err(asn1("trailing data"));
    }
    let mut inner = body;
    for want in [0x30, 0x30, 0x03] {
        let (tag, _, rest) = der(inner).map_err(asn1)?;
        if tag != want {
            return Err(asn1("tags don't match"));
        }
        inner = rest;
    }
    Ok(())
}

/// Go's encoding/asn1 error texts: structure errors for wrong tags,
/// syntax errors otherwise.
fn asn1(what: &str) -> String {
    if what == "tags don't match" {
        format!("asn1: structure error: {what}")
    } else {
        format!("asn1: syntax error: {what}")
    }
}

/// Why `pem` is not an issued certificate chain (upstream's
/// `validateCertificate`): empty is fine, else only `CERTIFICATE` blocks
/// without headers, each holding certificates.
fn certificate_error(pem: &[u8]) -> Option<String> {
    if pem.is_empty() {
        return None;
    }
    let blocks = pem_blocks(pem);
    if blocks.is_empty() {
        return Some("must contain at least one CERTIFICATE PEM block".into());
    }
    for block in blocks {
        if block.label != "CERTIFICATE" {
            return Some(format!("only CERTIFICATE PEM blocks are allowed, found {:?}", block.label));
        }
        if block.headers {
            return Some("no PEM block headers are permitted".into());
        }
        if block.bytes.is_empty() {
            return Some("found CERTIFICATE PEM block containing 0 certificates".into());
        }
        let mut der_bytes = block.bytes.as_slice();
        while !der_bytes.is_empty() {
            match der(der_bytes) {
                Ok((0x30, body, rest)) => {
                    if !matches!(der(body), Ok((0x30, _, _))) {
                        return Some("x509: malformed tbs certificate".into());
                    }
                    der_bytes = rest;
                }
                _ => return Some("x509: malformed certificate".into()),
            }
        }
    }
    None
}

struct PemBlock {
    label: String,
    headers: bool,
    bytes: Vec<u8>,
}

/// The PEM blocks of `data` as Go's `pem.Decode` finds them one after
/// another: malformed blocks (bad base64, mismatched END) are skipped.
fn pem_blocks(data: &[u8]) -> Vec<PemBlock> {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches([' ', '\t', '\r'])).collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(label) = lines[i].strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) else {
            i += 1;
            continue;
        };
        let end = format!("-----END {label}-----");
        let Some(end_at) = lines[i + 1..].iter().position(|l| *l == end).map(|p| p + i + 1) else {
            i += 1;
            continue;
        };
        let mut body = &lines[i + 1..end_at];
        let headers = body.iter().take_while(|l| l.contains(':')).count();
        body = &body[headers..];
        let b64: String = body.concat().chars().filter(|c| !c.is_whitespace()).collect();
        match engine.decode(b64.as_bytes()) {
            Ok(bytes) => {
                blocks.push(PemBlock { label: label.to_string(), headers: headers > 0, bytes });
                i = end_at + 1;
            }
            Err(_) => i += 1,
        }
    }
    blocks
}

/// One DER element of `data`: its tag, contents and what follows it.
fn der(data: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    const TRUNCATED: &str = "data truncated";
    let (&tag, rest) = data.split_first().ok_or(TRUNCATED)?;
    let (&first, rest) = rest.split_first().ok_or(TRUNCATED)?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(TRUNCATED);
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize), &rest[n..])
    };
    if rest.len() < len {
        return Err(TRUNCATED);
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use serde_json::{json, Value};

    use super::super::testing::{messages, table, update_table, with};
    use super::super::Op;

    const G: &str = "certificates.k8s.io";
    const K: &str = "CertificateSigningRequest";

    /// An ECDSA P-256 request made by openssl.
    const CSR: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIHxMIGYAgEAMDYxHTAbBgNVBAMMFHN5c3RlbTpub2RlOndvcmtlci0xMRUwEwYD
VQQKDAxzeXN0ZW06bm9kZXMwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQBvypa
YeZXIOf0z6L0h8zjqbUlvca9HQF3Bun+rxCKBq1K0pvvlFHbCrIYxPbfDsLnNZlR
2s/CLiAeRZ/sBJxvoAAwCgYIKoZIzj0EAwIDSAAwRQIgSxK/eldySkyQMVZzK3Mn
qJdR6q0jQxII7XNJRu2yT84CIQCOeTzPo+YCVjiaSysIWSYUyzgy97QXoihE7to7
RdgNtQ==
-----END CERTIFICATE REQUEST-----
";

    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBezCCASGgAwIBAgIUZnnJUyho/13ZYE0irCo9pMTXPVEwCgYIKoZIzj0EAwIw
EzERMA8GA1UEAwwId29ya2VyLTEwHhcNMjYxMjA2MjIxMzA5WhcNMjcxMjA2MjIx
MzA5WjATMREwDwYDVQQDDAh3b3JrZXItMTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABAG/Klph5lcg5/TPovSHzOOptSW9xr0dAXcG6f6vEIoGrUrSm++UUdsKshjE
9t8Owuc1mVHaz8IuIB5Fn+wEnG+jUzBRMB0GA1UdDgQWBBRlPFp2zkrh6EgXutvB
TakdQffT9DAfBgNVHSMEGDAWgBRlPFp2zkrh6EgXutvBTakdQffT9DAPBgNVHRMB
Af8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIH6SA2Jp35RXvoZOFfhPgDSEvLAi
APBH4cVmkZ0pjHh8AiEA5vcDcvGQwkiq90lWHflJ+8+DIWDNm7IbPO261HubO3k=
-----END CERTIFICATE-----
";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn valid() -> Value {
        json!({
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": "node-csr-worker-1"},
            "spec": {
                "request": b64(CSR),
                "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                "usages": ["digital signature", "client auth"],
                "username": "system:bootstrap:abcdef",
                "groups": ["system:bootstrappers", "system:authenticated"]
            }
        })
    }

    fn approved() -> Value {
        with(&valid(), json!({"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "KubectlApprove", "message": "This CSR was approved by kubectl certificate approve.", "lastUpdateTime": "2024-01-01T00:00:00Z"}]}}))
    }

    fn spec(change: Value) -> Value {
        with(&valid(), json!({"spec": change}))
    }

    #[test]
    fn certificate_signing_request_valid() {
        table(G, K, &[
            ("kubelet client", valid(), ""),
            ("a custom signer with a long path", spec(json!({"signerName": "example.com/my-signer.team-a.prod", "usages": ["key encipherment", "digital signature", "server auth"], "expirationSeconds": 86400})), ""),
            ("the shortest expiration", spec(json!({"expirationSeconds": 600})), ""),
            ("a request with CRLF line ends", spec(json!({"request": b64(&CSR.replace('\n', "\r\n"))})), ""),
            ("an approved request with its certificate", with(&approved(), json!({"status": {"certificate": b64(CERT)}})), ""),
            ("a custom condition", with(&valid(), json!({"status": {"conditions": [{"type": "Reviewed", "status": "Unknown"}]}})), ""),
        ]);
    }

    #[test]
    fn certificate_signing_request_invalid() {
        let v = valid();
        let bad_request = "spec.request: Invalid value: []byte{0x6e, 0x6f, 0x74, 0x20, 0x61, 0x20, 0x63, 0x73, 0x72}: PEM block type must be CERTIFICATE REQUEST";
        let cert_as_request = spec(json!({"request": b64(CERT)}));
        let garbage_der = spec(json!({"request": b64("-----BEGIN CERTIFICATE REQUEST-----\nAgEA\n-----END CERTIFICATE REQUEST-----\n")}));
        let truncated_der = spec(json!({"request": b64("-----BEGIN CERTIFICATE REQUEST-----\nMIHxMIGY\n-----END CERTIFICATE REQUEST-----\n")}));
        table(G, K, &[
            ("a request that is not PEM", spec(json!({"request": b64("not a csr")})), bad_request),
            ("no request", spec(json!({"request": ""})), "spec.request: Invalid value: []byte{}: PEM block type must be CERTIFICATE REQUEST"),
            ("a certificate as request", cert_as_request, "spec.request: Invalid value: []byte{0x2d, 0x2d"),
            ("a request whose DER is not a sequence", garbage_der.clone(), "spec.request: Invalid value: []byte{"),
            ("a request whose DER is truncated", truncated_der.clone(), "spec.request: Invalid value: []byte{"),
            ("no usages", spec(json!({"usages": []})), "spec.usages: Required value"),
            ("an unknown usage", spec(json!({"usages": ["client auth", "flying"]})), r#"spec.usages[1]: Unsupported value: "flying": supported values: "any", "cert sign", "client auth""#),
            ("a duplicate usage", spec(json!({"usages": ["client auth", "client auth"]})), r#"spec.usages[1]: Duplicate value: "client auth""#),
            ("no signer", spec(json!({"signerName": ""})), "spec.signerName: Required value"),
            ("a signer without path", spec(json!({"signerName": "example.com"})), r#"spec.signerName: Invalid value: "example.com": must be a fully qualified domain and path of the form 'example.com/signer-name'"#),
            ("a signer with two slashes", spec(json!({"signerName": "example.com/a/b"})), r#"spec.signerName: Invalid value: "example.com/a/b": must be a fully qualified domain"#),
            ("a one-label signer domain", spec(json!({"signerName": "example/signer"})), r#"spec.signerName: Invalid value: "example": should be a domain with at least two segments separated by dots"#),
            ("a bad signer domain label", spec(json!({"signerName": "Example.com/signer"})), r#"spec.signerName: Invalid value: "Example.com": validating label "Example": a lowercase RFC 1123 label"#),
            ("a bad signer path", spec(json!({"signerName": "example.com/Signer"})), r#"spec.signerName: Invalid value: "Signer": validating component "Signer": a lowercase RFC 1123 subdomain"#),
            ("the legacy signer", spec(json!({"signerName": "kubernetes.io/legacy-unknown"})), r#"spec.signerName: Invalid value: "kubernetes.io/legacy-unknown": the legacy signerName is not allowed via this API version"#),
            ("a short expiration", spec(json!({"expirationSeconds": 599})), "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 600 seconds (10 minutes)"),
            ("a condition without type", with(&v, json!({"status": {"conditions": [{"type": "", "status": "True"}]}})), "status.conditions[0].type: Required value"),
            ("a condition without status", with(&v, json!({"status": {"conditions": [{"type": "Reviewed", "status": ""}]}})), "status.conditions[0].status: Required value"),
            ("Approved False", with(&v, json!({"status": {"conditions": [{"type": "Approved", "status": "False"}]}})), r#"status.conditions[0].status: Unsupported value: "False": supported values: "True""#),
            ("a custom condition Maybe", with(&v, json!({"status": {"conditions": [{"type": "Reviewed", "status": "Maybe"}]}})), r#"status.conditions[0].status: Unsupported value: "Maybe": supported values: "False", "True", "Unknown""#),
            ("a certificate that is not PEM", with(&approved(), json!({"status": {"certificate": b64("hello")}})), r#"status.certificate: Invalid value: "<certificate data>": must contain at least one CERTIFICATE PEM block"#),
            ("a request as certificate", with(&approved(), json!({"status": {"certificate": b64(CSR)}})), r#"status.certificate: Invalid value: "<certificate data>": only CERTIFICATE PEM blocks are allowed, found "CERTIFICATE REQUEST""#),
            ("a certificate with headers", with(&approved(), json!({"status": {"certificate": b64(&CERT.replacen("\n", "\nProc-Type: 4,ENCRYPTED\n\n", 1))}})), r#"status.certificate: Invalid value: "<certificate data>": no PEM block headers are permitted"#),
            ("a certificate that is not DER", with(&approved(), json!({"status": {"certificate": b64("-----BEGIN CERTIFICATE-----\nAgEA\n-----END CERTIFICATE-----\n")}})), r#"status.certificate: Invalid value: "<certificate data>": x509: malformed certificate"#),
        ]);
        assert_eq!(messages(G, K, Op::Create(&garbage_der))[0].rsplit(": ").next(), Some("tags don't match"));
        assert!(messages(G, K, Op::Create(&truncated_der))[0].ends_with("asn1: syntax error: data truncated"));
    }

    #[test]
    fn certificate_signing_request_approved_and_denied() {
        let both = with(&valid(), json!({"status": {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}}));
        assert_eq!(messages(G, K, Op::Create(&both)), vec![r#"status.conditions[1].type: Invalid value: "Denied": Approved and Denied conditions are mutually exclusive"#]);
        let twice = with(&valid(), json!({"status": {"conditions": [{"type": "Failed", "status": "True"}, {"type": "Failed", "status": "True"}]}}));
        assert_eq!(messages(G, K, Op::Create(&twice)), vec![r#"status.conditions[1].type: Duplicate value: "Failed""#]);
    }

    #[test]
    fn certificate_signing_request_update() {
        let old = valid();
        update_table(G, K, &old, &[
            ("labels change", with(&old, json!({"metadata": {"labels": {"team": "a"}}})), ""),
            ("the spec changes", with(&old, json!({"spec": {"usages": ["client auth"]}})), "spec: Invalid value: "),
            ("the signer changes", with(&old, json!({"spec": {"signerName": "example.com/other"}})), "spec: Invalid value: "),
        ]);
        // Data an older server accepted stays updatable.
        let legacy = with(&old, json!({"spec": {"signerName": "kubernetes.io/legacy-unknown"}}));
        let relabelled = with(&legacy, json!({"metadata": {"labels": {"team": "a"}}}));
        assert_eq!(messages(G, K, Op::Status { new: &relabelled, old: &legacy }), Vec::<String>::new());
    }

    #[test]
    fn certificate_signing_request_status() {
        let status = |new: &Value, old: &Value| messages(G, K, Op::Status { new, old });
        let pending = valid();
        let approved = approved();
        let issued = with(&approved, json!({"status": {"certificate": b64(CERT)}}));
        // kubectl certificate approve/deny (through `/approval`).
        assert_eq!(status(&approved, &pending), Vec::<String>::new());
        let denied = with(&pending, json!({"status": {"conditions": [{"type": "Denied", "status": "True", "reason": "KubectlDeny"}]}}));
        assert_eq!(status(&denied, &pending), Vec::<String>::new());
        // The signer issues the certificate.
        assert_eq!(status(&issued, &approved), Vec::<String>::new());
        let failed = with(&approved, json!({"status": {"conditions": [approved["status"]["conditions"][0].clone(), {"type": "Failed", "status": "True", "reason": "SignerError"}]}}));
        assert_eq!(status(&failed, &approved), Vec::<String>::new());
        assert_eq!(status(&with(&issued, json!({"status": {"certificate": b64(&CERT.replace("3k=", "3g="))}})), &issued), vec![
            "status.certificate: Forbidden: updates may not modify existing certificate content",
        ]);
        assert_eq!(status(&pending, &approved), vec![r#"status.conditions: Forbidden: updates may not remove a condition of type "Approved""#]);
        let both = with(&approved, json!({"status": {"conditions": [approved["status"]["conditions"][0].clone(), {"type": "Denied", "status": "True"}]}}));
        assert_eq!(status(&both, &approved), vec![r#"status.conditions[1].type: Invalid value: "Denied": Approved and Denied conditions are mutually exclusive"#]);
        assert_eq!(status(&with(&approved, json!({"status": {"certificate": b64("junk")}})), &approved), vec![
            r#"status.certificate: Invalid value: "<certificate data>": must contain at least one CERTIFICATE PEM block"#,
        ]);
        let unknown = with(&pending, json!({"status": {"conditions": [{"type": "Approved", "status": "Unknown"}]}}));
        assert_eq!(status(&unknown, &pending), vec![r#"status.conditions[0].status: Unsupported value: "Unknown": supported values: "True""#]);
    }
}

//! The cluster's certificates: one CA, created on first start and kept in
//! the data directory, which signs the API server's serving certificate and
//! client certificates (CN = user, O = groups, as upstream reads them).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Leaf certificates this close to expiry are issued anew at start.
const RENEW_BEFORE: Duration = Duration::from_secs(90 * 24 * 3600);

/// A certificate and its private key, PEM encoded.
#[derive(Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Without the key, which must not reach a log.
impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPair").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct Pki {
    dir: PathBuf,
    ca: CertPair,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads the CA from `dir`, creating it on first use.
    pub fn load_or_create(dir: &Path) -> Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca = match read_pair(dir, "ca")? {
            Some(ca) => ca,
            None => {
                let key = KeyPair::generate()?;
                let mut params = CertificateParams::default();
                params.distinguished_name = name("skiff-ca", &[]);
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
                validity(&mut params, CA_VALIDITY);
                let cert = params.self_signed(&key)?;
                let ca = CertPair {
                    cert_pem: cert.pem(),
                    key_pem: key.serialize_pem(),
                };
                write_pair(dir, "ca", &ca)?;
                ca
            }
        };
        Ok(Pki { dir: dir.to_path_buf(), ca })
    }

    /// Makes `ca` (and the ServiceAccount key, when given) this
    /// directory's, as a server of an existing cluster does with the
    /// cluster's own: certificates issued by a CA it held before are
    /// dropped, to be issued anew.
    pub fn adopt(dir: &Path, ca: CertPair, service_account_key: Option<&str>) -> Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let held = read_pair(dir, "ca")?;
        if held.as_ref().is_none_or(|h| h.cert_pem != ca.cert_pem || h.key_pem != ca.key_pem) {
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                if matches!(path.extension().and_then(|e| e.to_str()), Some("crt" | "key")) {
                    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                }
            }
            write_pair(dir, "ca", &ca)?;
        }
        let sa = dir.join("service-account.key");
        if let Some(key) = service_account_key.filter(|key| std::fs::read_to_string(&sa).ok().as_deref() != Some(key)) {
            write_private(&sa, key)?;
        }
        Ok(Pki { dir: dir.to_path_buf(), ca })
    }

    /// The CA and its key.
    pub fn ca(&self) -> &CertPair {
        &self.ca
    }

    /// The key ServiceAccount tokens are signed with (PKCS#8 PEM, P-256),
    /// created on first use and kept beside the CA.
    pub fn service_account_key(&self) -> Result<String> {
        let path = self.dir.join("service-account.key");
        if path.exists() {
            return std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()));
        }
        let key = KeyPair::generate()?.serialize_pem();
        write_private(&path, &key)?;
        Ok(key)
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// A certificate for a CertificateSigningRequest's PKCS#10 request
    /// (PEM), as upstream's csrsigning controller issues it: the requested
    /// subject, names and key, with the usages its approver checked and
    /// the lifetime asked for, at most the CA's default.
    pub fn sign_request(&self, request_pem: &str, usages: &[String], lifetime: Option<Duration>) -> Result<String> {
        let mut request = rcgen::CertificateSigningRequestParams::from_pem(request_pem).context("parsing the certificate request")?;
        let params = &mut request.params;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = usages
            .iter()
            .filter_map(|u| match u.as_str() {
                "digital signature" => Some(KeyUsagePurpose::DigitalSignature),
                "key encipherment" => Some(KeyUsagePurpose::KeyEncipherment),
                _ => None,
            })
            .collect();
        params.extended_key_usages = usages
            .iter()
            .filter_map(|u| match u.as_str() {
                "client auth" => Some(ExtendedKeyUsagePurpose::ClientAuth),
                "server auth" => Some(ExtendedKeyUsagePurpose::ServerAuth),
                _ => None,
            })
            .collect();
        validity(params, lifetime.unwrap_or(LEAF_VALIDITY).min(LEAF_VALIDITY));
        Ok(request.signed_by(&self.issuer()?)?.pem())
    }

    /// A CA read from upstream's `--cluster-signing-cert-file` and
    /// `--cluster-signing-key-file`, for a controller manager of its own.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Pki> {
        let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
        let ca = CertPair { cert_pem: read(cert)?, key_pem: read(key)? };
        KeyPair::from_pem(&ca.key_pem).context("the signing key")?;
        Ok(Pki { dir: cert.parent().unwrap_or(Path::new(".")).to_path_buf(), ca })
    }

    /// The CA, as what signs certificates.
    fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        Ok(Issuer::from_ca_cert_pem(&self.ca.cert_pem, KeyPair::from_pem(&self.ca.key_pem)?)?)
    }

    fn issue(&self, mut params: CertificateParams) -> Result<CertPair> {
        let key = KeyPair::generate()?;
        validity(&mut params, LEAF_VALIDITY);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let cert = params.signed_by(&key, &self.issuer()?)?;
        Ok(CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The serving certificate for these names and addresses, kept as
    /// `file` in the directory and issued anew when the names change or
    /// expiry nears.
    pub fn serving(&self, file: &str, dns: &[String], ips: &[IpAddr]) -> Result<CertPair> {
        self.named(file, "skiff-apiserver", dns, ips, vec![ExtendedKeyUsagePurpose::ServerAuth])
    }

    /// A certificate that both serves and authenticates as a client, for
    /// peers of one another (etcd members), kept as `file`.
    pub fn peer(&self, file: &str, common_name: &str, dns: &[String], ips: &[IpAddr]) -> Result<CertPair> {
        self.named(file, common_name, dns, ips, vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth])
    }

    /// A certificate for these names and addresses, kept as `file` and
    /// issued anew when the names change or expiry nears.
    fn named(&self, file: &str, common_name: &str, dns: &[String], ips: &[IpAddr], usages: Vec<ExtendedKeyUsagePurpose>) -> Result<CertPair> {
        let mut sans: Vec<SanType> = Vec::new();
        for d in dns {
            sans.push(SanType::DnsName(d.as_str().try_into()?));
        }
        sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        self.kept(file, |existing| same_sans(existing, dns, ips), || {
            let mut params = CertificateParams::default();
            params.distinguished_name = name(common_name, &[]);
            params.subject_alt_names = sans.clone();
            params.extended_key_usages = usages.clone();
            self.issue(params)
        })
    }

    /// A client certificate for `user` in `groups`, kept as `file` when given.
    pub fn client(&self, file: Option<&str>, user: &str, groups: &[&str]) -> Result<CertPair> {
        let make = || {
            let mut params = CertificateParams::default();
            params.distinguished_name = name(user, groups);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            self.issue(params)
        };
        match file {
            Some(file) => self.kept(file, |existing| same_subject(existing, user, groups), make),
            None => make(),
        }
    }

    /// Reuses the pair stored as `file` if `fits` and not near expiry.
    fn kept(
        &self,
        file: &str,
        fits: impl Fn(&x509_parser::certificate::X509Certificate) -> bool,
        make: impl Fn() -> Result<CertPair>,
    ) -> Result<CertPair> {
        if let Some(pair) = read_pair(&self.dir, file)? {
            if current(&pair, RENEW_BEFORE, fits)? {
                return Ok(pair);
            }
        }
        let pair = make()?;
        write_pair(&self.dir, file, &pair)?;
        Ok(pair)
    }
}

/// Whether a stored certificate still fits what it is for and outlives
/// `renew_before` from now.
pub fn current(pair: &CertPair, renew_before: Duration, fits: impl Fn(&x509_parser::certificate::X509Certificate) -> bool) -> Result<bool> {
    let der = pem_to_der(&pair.cert_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).context("parsing a stored certificate")?;
    let renew_at = SystemTime::now() + renew_before;
    let expires = SystemTime::UNIX_EPOCH + Duration::from_secs(cert.validity().not_after.timestamp().max(0) as u64);
    Ok(fits(&cert) && expires > renew_at)
}

fn name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    for o in organizations {
        dn.push(DnType::OrganizationName, *o);
    }
    dn
}

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = SystemTime::now();
    // A little slack for clocks that are slightly behind.
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + lifetime).into();
}

/// Whether a certificate names at least these DNS names and IPs.
pub fn same_sans(cert: &x509_parser::certificate::X509Certificate, dns: &[String], ips: &[IpAddr]) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    let mut have_dns: Vec<String> = Vec::new();
    let mut have_ips: Vec<IpAddr> = Vec::new();
    for n in &san.value.general_names {
        match n {
            GeneralName::DNSName(d) => have_dns.push(d.to_string()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => have_ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap())),
                16 => have_ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap())),
                _ => {}
            },
            _ => {}
        }
    }
    dns.iter().all(|d| have_dns.contains(d)) && ips.iter().all(|ip| have_ips.contains(ip))
}

fn same_subject(cert: &x509_parser::certificate::X509Certificate, user: &str, groups: &[&str]) -> bool {
    let subject = cert.subject();
    let cn: Vec<_> = subject.iter_common_name().filter_map(|a| a.as_str().ok()).collect();
    let orgs: Vec<_> = subject.iter_organization().filter_map(|a| a.as_str().ok()).collect();
    cn == [user] && orgs == groups
}

pub fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    let mut reader = pem.as_bytes();
    let cert = rustls_pemfile::certs(&mut reader)
        .next()
        .context("no certificate in PEM")??;
    Ok(cert.to_vec())
}

pub fn read_pair(dir: &Path, file: &str) -> Result<Option<CertPair>> {
    let (crt, key) = (dir.join(format!("{file}.crt")), dir.join(format!("{file}.key")));
    if !crt.exists() || !key.exists() {
        return Ok(None);
    }
    Ok(Some(CertPair {
        cert_pem: std::fs::read_to_string(&crt).with_context(|| format!("reading {}", crt.display()))?,
        key_pem: std::fs::read_to_string(&key).with_context(|| format!("reading {}", key.display()))?,
    }))
}

pub fn write_pair(dir: &Path, file: &str, pair: &CertPair) -> Result<()> {
    write_private(&dir.join(format!("{file}.key")), &pair.key_pem)?;
    write_private(&dir.join(format!("{file}.crt")), &pair.cert_pem)
}

/// Writes a file readable by its owner only, atomically (a crash leaves the
/// old file or the new one, never half of one).
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A kubeconfig for `user` with an embedded client certificate.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, client: &CertPair) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: skiff
  context:
    cluster: skiff
    user: {user}
current-context: skiff
",
        ca = STANDARD.encode(ca_pem),
        cert = STANDARD.encode(&client.cert_pem),
        key = STANDARD.encode(&client.key_pem),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_and_leaves_persist_and_renew_on_change() {
        let dir = tempfile_dir("persist");
        let pki = Pki::load_or_create(&dir).unwrap();
        let ca = pki.ca_pem().to_string();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let s1 = pki.serving("serving", &["localhost".into()], &[ip]).unwrap();
        let again = Pki::load_or_create(&dir).unwrap();
        assert_eq!(again.ca_pem(), ca, "the CA survives a restart");
        let s2 = again.serving("serving", &["localhost".into()], &[ip]).unwrap();
        assert_eq!(s1.cert_pem, s2.cert_pem, "same names: the certificate is kept");
        let s3 = again.serving("serving", &["localhost".into(), "example".into()], &[ip]).unwrap();
        assert_ne!(s2.cert_pem, s3.cert_pem, "new names: issued anew");

        let c = again.client(Some("admin"), "skiff-admin", &["system:masters"]).unwrap();
        let der = pem_to_der(&c.cert_pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(same_subject(&cert, "skiff-admin", &["system:masters"]));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn requests_are_signed_with_their_subject_and_the_approved_usages() {
        let dir = tempfile_dir("sign");
        let pki = Pki::load_or_create(&dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = name("system:node:n1", &["system:nodes"]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        let request = params.serialize_request(&key).unwrap().pem().unwrap();
        let usages = ["digital signature".to_string(), "client auth".to_string()];
        let pem = pki.sign_request(&request, &usages, Some(Duration::from_secs(3600))).unwrap();
        let der = pem_to_der(&pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(same_subject(&cert, "system:node:n1", &["system:nodes"]));
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.code_signing && !eku.server_auth, "only the approved usages");
        let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert!(lifetime <= 2 * 3600, "the asked lifetime (plus the backdating), not a year: {lifetime}");
        assert!(pki.sign_request("not a request", &usages, None).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("skiff-pki-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}

/// A TLS client configuration that takes any server certificate, still
/// checking the handshake's signatures: Go's `InsecureSkipVerify`, which
/// upstream uses where pods are reached by IP (HTTPS probes, the API
/// server's proxy), with certificates nothing could check.
pub fn unverified_client_config() -> rustls::ClientConfig {
    unverified_client_builder().with_no_client_auth()
}

/// `unverified_client_config` before its client certificate is chosen.
pub fn unverified_client_builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCertificate(provider)))
}

#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(&self, _: &rustls::pki_types::CertificateDer<'_>, _: &[rustls::pki_types::CertificateDer<'_>], _: &rustls::pki_types::ServerName<'_>, _: &[u8], _: rustls::pki_types::UnixTime) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &rustls::pki_types::CertificateDer<'_>, dss: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &rustls::pki_types::CertificateDer<'_>, dss: &rustls::DigitallySignedStruct) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

//! Authentication: client certificates, static tokens, basic auth and
//! anonymous requests, combined as upstream's union authenticator does. A
//! credential that is presented and fails is a 401, never anonymous.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::Engine;

pub const ANONYMOUS: &str = "system:anonymous";
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
pub const AUTHENTICATED: &str = "system:authenticated";
pub const MASTERS: &str = "system:masters";

/// Who sent a request, as upstream's `user.Info`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn named(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo { name: name.into(), groups: groups.iter().map(|g| g.to_string()).collect(), ..Default::default() }
    }

    pub fn anonymous() -> UserInfo {
        UserInfo::named(ANONYMOUS, &[UNAUTHENTICATED])
    }

    /// Upstream's group adder: everyone authenticated is in
    /// `system:authenticated`, unless already marked either way.
    pub fn with_authenticated_group(mut self) -> UserInfo {
        if !self.groups.iter().any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED) {
            self.groups.push(AUTHENTICATED.into());
        }
        self
    }

    /// When a certificate expires, in Unix seconds.
    pub fn certificate_expiry(der: &[u8]) -> Option<i64> {
        let (_, parsed) = x509_parser::parse_x509_certificate(der).ok()?;
        Some(parsed.validity().not_after.timestamp())
    }

    /// The user a verified client certificate names: CN, and O as groups.
    pub fn from_certificate(der: &[u8]) -> Option<UserInfo> {
        let (_, parsed) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = parsed.subject();
        let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
        let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(String::from)).collect();
        Some(UserInfo { name, groups, ..Default::default() }.with_authenticated_group())
    }
}

/// The client certificate of a connection, verified against the cluster CA
/// after the handshake, so that a bad one is a 401 as upstream's, not a
/// failed handshake.
#[derive(Debug, Clone)]
pub enum PeerCertificate {
    None,
    /// The user it names, and when it expires (Unix seconds).
    Valid(UserInfo, Option<i64>),
    Invalid,
}

/// Why a request is not authenticated: always a 401 to the client; the
/// reason is for the server's log.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unauthenticated(pub &'static str);

/// Static tokens (`--token-auth-file`), passwords (`--basic-auth-file`) and
/// whether a request with no credentials is `system:anonymous`.
#[derive(Default)]
pub struct Authenticator {
    tokens: HashMap<String, UserInfo>,
    passwords: HashMap<String, (String, UserInfo)>,
    pub anonymous: bool,
}

impl Authenticator {
    pub fn new(token_file: Option<&Path>, basic_auth_file: Option<&Path>, anonymous: bool) -> Result<Authenticator> {
        let read = |path: &Path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
        let mut auth = Authenticator { anonymous, ..Default::default() };
        if let Some(path) = token_file {
            for (secret, user) in parse_csv(&read(path)?).with_context(|| format!("{}", path.display()))? {
                auth.tokens.insert(secret, user);
            }
        }
        if let Some(path) = basic_auth_file {
            for (password, user) in parse_csv(&read(path)?).with_context(|| format!("{}", path.display()))? {
                auth.passwords.insert(user.name.clone(), (password, user));
            }
        }
        Ok(auth)
    }

    /// The user behind a request: the certificate's, else the
    /// `Authorization` header's, else anonymous when allowed and nothing
    /// failed.
    pub fn authenticate(&self, certificate: &PeerCertificate, authorization: Option<&[u8]>) -> Result<UserInfo, Unauthenticated> {
        match (certificate, authorization) {
            (PeerCertificate::Valid(user, _), _) => Ok(user.clone()),
            (PeerCertificate::Invalid, None) => Err(Unauthenticated("the client certificate is not signed by the cluster CA or has expired")),
            (PeerCertificate::None, None) if self.anonymous => Ok(UserInfo::anonymous()),
            (PeerCertificate::None, None) => Err(Unauthenticated("no credentials")),
            (_, Some(header)) => self.from_header(header),
        }
    }

    fn from_header(&self, header: &[u8]) -> Result<UserInfo, Unauthenticated> {
        let header = std::str::from_utf8(header).map_err(|_| Unauthenticated("the Authorization header is not text"))?;
        let (scheme, value) = header.trim().split_once(' ').ok_or(Unauthenticated("malformed Authorization header"))?;
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !value.is_empty() {
            return self.tokens.get(value).cloned().map(UserInfo::with_authenticated_group).ok_or(Unauthenticated("invalid bearer token"));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(value).map_err(|_| Unauthenticated("malformed basic credentials"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| Unauthenticated("malformed basic credentials"))?;
            let (name, password) = decoded.split_once(':').ok_or(Unauthenticated("malformed basic credentials"))?;
            return match self.passwords.get(name) {
                Some((expected, user)) if constant_time_eq(expected.as_bytes(), password.as_bytes()) => Ok(user.clone().with_authenticated_group()),
                _ => Err(Unauthenticated("invalid username/password combination")),
            };
        }
        Err(Unauthenticated("unsupported Authorization scheme"))
    }
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Upstream's credential CSV: `secret,user,uid[,"group1,group2"]`, where the
/// secret is a token or a password.
fn parse_csv(text: &str) -> Result<Vec<(String, UserInfo)>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut entries = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record?;
        if record.len() < 3 {
            bail!("line {}: expected secret,user,uid[,groups]", line + 1);
        }
        let field = |i: usize| record.get(i).unwrap_or_default().trim().to_string();
        if field(0).is_empty() || field(1).is_empty() {
            bail!("line {}: empty secret or user", line + 1);
        }
        let groups = field(3).split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect();
        entries.push((field(0), UserInfo { name: field(1), uid: field(2), groups, extra: BTreeMap::new() }));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        let mut a = Authenticator { anonymous: true, ..Default::default() };
        for (secret, user) in parse_csv("tok1,alice,1,\"dev,ops\"\ntok2,bob,2\n").unwrap() {
            a.tokens.insert(secret, user);
        }
        for (pw, user) in parse_csv("s3cret,carol,3,admins\n").unwrap() {
            a.passwords.insert(user.name.clone(), (pw, user));
        }
        a
    }

    #[test]
    fn tokens_passwords_and_anonymous() {
        let a = auth();
        let alice = a.authenticate(&PeerCertificate::None, Some(b"Bearer tok1")).unwrap();
        assert_eq!((alice.name.as_str(), alice.uid.as_str()), ("alice", "1"));
        assert_eq!(alice.groups, ["dev", "ops", AUTHENTICATED]);
        assert_eq!(a.authenticate(&PeerCertificate::None, Some(b"bearer tok2")).unwrap().groups, [AUTHENTICATED]);
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("carol:s3cret"));
        assert_eq!(a.authenticate(&PeerCertificate::None, Some(basic.as_bytes())).unwrap().groups, ["admins", AUTHENTICATED]);
        assert_eq!(a.authenticate(&PeerCertificate::None, None).unwrap(), UserInfo::anonymous());
    }

    #[test]
    fn presented_credentials_that_fail_are_never_anonymous() {
        let a = auth();
        let wrong = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("carol:nope"));
        for header in [b"Bearer nope".as_slice(), b"Bearer", b"Basic !!!", wrong.as_bytes(), b"Negotiate x", b"\xff\xfe", b""] {
            assert!(a.authenticate(&PeerCertificate::None, Some(header)).is_err(), "{header:?}");
        }
        assert!(a.authenticate(&PeerCertificate::Invalid, None).is_err());
        assert_eq!(a.authenticate(&PeerCertificate::Invalid, Some(b"Bearer tok2")).unwrap().name, "bob");
        let strict = Authenticator::default();
        assert!(strict.authenticate(&PeerCertificate::None, None).is_err());
    }

    #[test]
    fn malformed_files_are_refused() {
        assert!(parse_csv("only,two\n").is_err());
        assert!(parse_csv(",user,1\n").is_err());
    }
}

//! What makes several servers one cluster, as k3s's bootstrap data: the
//! cluster CA (which also checks client certificates), the ServiceAccount
//! signing key and the encryption-at-rest configuration. The first server
//! on an empty datastore makes them and stores them there sealed with a key
//! derived from the cluster token; every later server with the same token
//! opens them instead of making its own. A server joining through another
//! (`--server`) fetches the same sealed data over TLS, checked against the
//! CA hash its token carries.

use std::num::NonZeroU32;
use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use skiff_auth::pki::CertPair;

/// Where the sealed data lives in the datastore (outside `/registry/`,
/// so no API request can reach it).
pub const KEY: &str = "/bootstrap/skiff";

/// k3s's work factor is 4096 rounds of SHA-1; tokens are random, this only
/// slows guessing a weak one from a stolen datastore.
const PBKDF2_ROUNDS: u32 = 20_000;

/// The cluster's shared secrets.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Secrets {
    pub ca_cert: String,
    pub ca_key: String,
    pub service_account_key: String,
    /// An EncryptionConfiguration, when the cluster encrypts at rest.
    #[serde(default)]
    pub encryption_config: Option<String>,
}

impl Secrets {
    pub fn ca(&self) -> CertPair {
        CertPair { cert_pem: self.ca_cert.clone(), key_pem: self.ca_key.clone() }
    }
}

/// Secrets as stored: encrypted with AES-256-GCM under a key derived from
/// the token with PBKDF2-HMAC-SHA256 and a random salt.
#[derive(Serialize, Deserialize)]
pub struct Sealed {
    salt: String,
    nonce: String,
    data: String,
}

fn derive(secret: &str, salt: &[u8]) -> LessSafeKey {
    let mut key = [0u8; 32];
    let rounds = NonZeroU32::new(PBKDF2_ROUNDS).expect("non-zero");
    ring::pbkdf2::derive(ring::pbkdf2::PBKDF2_HMAC_SHA256, rounds, salt, secret.as_bytes(), &mut key);
    LessSafeKey::new(UnboundKey::new(&aead::AES_256_GCM, &key).expect("a 32-byte key"))
}

impl Sealed {
    pub fn seal(secrets: &Secrets, secret: &str) -> Result<Sealed> {
        let rng = SystemRandom::new();
        let (mut salt, mut nonce) = ([0u8; 16], [0u8; 12]);
        rng.fill(&mut salt).map_err(|_| anyhow::anyhow!("no randomness"))?;
        rng.fill(&mut nonce).map_err(|_| anyhow::anyhow!("no randomness"))?;
        let mut data = serde_json::to_vec(secrets)?;
        derive(secret, &salt)
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(KEY), &mut data)
            .map_err(|_| anyhow::anyhow!("sealing the bootstrap data"))?;
        Ok(Sealed { salt: B64.encode(salt), nonce: B64.encode(nonce), data: B64.encode(data) })
    }

    /// The secrets, or an error saying the token is not the cluster's.
    pub fn open(&self, secret: &str) -> Result<Secrets> {
        let salt = B64.decode(&self.salt).context("the bootstrap data's salt")?;
        let nonce: [u8; 12] = B64.decode(&self.nonce).ok().and_then(|n| n.try_into().ok()).context("the bootstrap data's nonce")?;
        let mut data = B64.decode(&self.data).context("the bootstrap data")?;
        let Ok(plain) = derive(secret, &salt).open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(KEY), &mut data) else {
            bail!("the token does not match the one this cluster was created with (its bootstrap data cannot be decrypted with it)");
        };
        serde_json::from_slice(plain).context("the bootstrap data is malformed")
    }
}

/// The cluster's secrets from the datastore; on an empty one, `fresh()`'s,
/// stored for every later server. Two first servers racing: one creates,
/// the other reads what it created.
pub async fn load_or_init(backend: &dyn skiff_store::Backend, secret: &str, fresh: impl FnOnce() -> Result<Secrets>) -> Result<Secrets> {
    if let Some(stored) = read(backend).await? {
        return stored.open(secret);
    }
    let secrets = fresh()?;
    let sealed = serde_json::to_vec(&Sealed::seal(&secrets, secret)?)?;
    match backend.create(KEY, sealed.into()).await {
        Ok(_) => Ok(secrets),
        Err(skiff_store::Error::AlreadyExists { .. }) => read(backend).await?.context("the bootstrap data vanished")?.open(secret),
        Err(e) => Err(e).context("storing the bootstrap data"),
    }
}

/// Replaces the stored secrets (a changed encryption configuration).
pub async fn store(backend: &dyn skiff_store::Backend, secrets: &Secrets, secret: &str) -> Result<()> {
    let sealed = serde_json::to_vec(&Sealed::seal(secrets, secret)?)?;
    backend.update(KEY, sealed.into(), None).await.context("updating the bootstrap data")?;
    Ok(())
}

pub async fn read(backend: &dyn skiff_store::Backend) -> Result<Option<Sealed>> {
    let Some(kv) = backend.get(KEY, None).await.context("reading the bootstrap data")? else { return Ok(None) };
    Ok(Some(serde_json::from_slice(&kv.value).context("the stored bootstrap data is malformed")?))
}

/// A cluster token: the secret, and in k3s's full form
/// (`K10<sha256 of the CA>::server:<secret>`) the hash that lets a
/// joining host trust the CA a server presents.
#[derive(Clone, Debug)]
pub struct Token {
    pub secret: String,
    pub ca_hash: Option<String>,
}

impl std::str::FromStr for Token {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Token> {
        let text = text.trim();
        let token = match text.strip_prefix("K10").and_then(|rest| rest.split_once("::")) {
            Some((hash, credentials)) => {
                if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                    bail!("the token's CA hash is not a SHA-256 in hex");
                }
                let secret = credentials.split_once(':').map_or(credentials, |(_, secret)| secret);
                Token { secret: secret.to_string(), ca_hash: Some(hash.to_ascii_lowercase()) }
            }
            None => Token { secret: text.to_string(), ca_hash: None },
        };
        if token.secret.is_empty() {
            bail!("the token is empty");
        }
        Ok(token)
    }
}

impl Token {
    pub fn generate() -> Token {
        let mut bytes = [0u8; 16];
        SystemRandom::new().fill(&mut bytes).expect("randomness");
        Token { secret: bytes.iter().map(|b| format!("{b:02x}")).collect(), ca_hash: None }
    }

    /// The full form, for other servers to join with.
    pub fn full(&self, ca_pem: &str) -> String {
        format!("K10{}::server:{}", ca_hash(ca_pem), self.secret)
    }
}

pub fn ca_hash(ca_pem: &str) -> String {
    sha256_hex(ca_pem.as_bytes())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The token from `--token`, `--token-file`, or the one this server kept
/// from an earlier start (`<data-dir>/server/token`); a new one for the
/// first start of a first server.
pub fn resolve(flag: Option<&str>, file: Option<&Path>, kept: &Path) -> Result<Token> {
    if let Some(token) = flag {
        return token.parse().context("--token");
    }
    if let Some(file) = file {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading --token-file {}", file.display()))?;
        return text.parse().with_context(|| format!("--token-file {}", file.display()));
    }
    match std::fs::read_to_string(kept) {
        Ok(text) => text.parse().with_context(|| format!("{}", kept.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Token::generate()),
        Err(e) => Err(e).with_context(|| format!("reading {}", kept.display())),
    }
}

/// What a joining server is given by a running one.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinInfo {
    pub bootstrap: Sealed,
    /// The external datastore the cluster uses, if not embedded etcd.
    #[serde(default)]
    pub datastore_endpoint: Option<String>,
    /// Whether the cluster's datastore is embedded etcd.
    #[serde(default)]
    pub embedded_etcd: bool,
}

/// What a server joining through another learns from it.
pub struct Joined {
    pub supervisor: Supervisor,
    pub info: JoinInfo,
    pub secrets: Secrets,
}

/// Fetches the cluster's bootstrap data from the server at `url`; a token
/// that is not the cluster's fails here, before anything is written.
pub async fn join(url: &str, token: &Token) -> Result<Joined> {
    let supervisor = Supervisor::connect(url, token).await?;
    let info = supervisor.join_info().await?;
    let secrets = info.bootstrap.open(&token.secret)?;
    Ok(Joined { supervisor, info, secrets })
}

/// An HTTPS client of a running server for a joining host: first the CA
/// it serves (`/cacerts`, unauthenticated, so taken without checking the
/// certificate), accepted only if it matches the token's hash; then
/// requests over TLS checked against that CA, as `server:<secret>`.
pub struct Supervisor {
    url: String,
    ca_pem: String,
    secret: String,
}

impl Supervisor {
    pub async fn connect(url: &str, token: &Token) -> Result<Supervisor> {
        let url = url.trim_end_matches('/').to_string();
        let config = kube::Config { accept_invalid_certs: true, ..kube::Config::new(url.parse().with_context(|| format!("--server {url:?}"))?) };
        let client = kube::Client::try_from(config)?;
        let ca_pem = client
            .request_text(http::Request::get("/cacerts").body(Vec::new())?)
            .await
            .with_context(|| format!("fetching the cluster CA from {url}"))?;
        match &token.ca_hash {
            Some(hash) if *hash != ca_hash(&ca_pem) => bail!("the CA {url} presents does not match the token's hash: not this cluster's server, or the token is another cluster's"),
            Some(_) => {}
            None => tracing::warn!("the token has no CA hash (K10<hash>::server:<secret>): trusting the CA {url} presents"),
        }
        Ok(Supervisor { url, ca_pem, secret: token.secret.clone() })
    }

    fn client(&self) -> Result<kube::Client> {
        let mut config = kube::Config::new(self.url.parse()?);
        config.root_cert = Some(vec![skiff_auth::pki::pem_to_der(&self.ca_pem)?]);
        config.auth_info.username = Some("server".into());
        config.auth_info.password = Some(self.secret.clone().into());
        Ok(kube::Client::try_from(config)?)
    }

    pub async fn join_info(&self) -> Result<JoinInfo> {
        let text = self
            .client()?
            .request_text(http::Request::get("/v1-skiff/server-bootstrap").body(Vec::new())?)
            .await
            .map_err(|e| match e {
                kube::Error::Api(status) if status.code == 401 => anyhow::anyhow!("{} refused the token: it is not this cluster's", self.url),
                e => anyhow::Error::new(e).context(format!("fetching the bootstrap data from {}", self.url)),
            })?;
        serde_json::from_str(&text).context("the server's bootstrap data")
    }

    /// Asks the server to add an etcd member; returns the cluster's
    /// members as etcd's `--initial-cluster`.
    /// etcd refuses a new member until the last one added is healthy
    /// (servers joining one after another): that is retried for a minute.
    pub async fn add_etcd_member(&self, name: &str, peer_url: &str) -> Result<String> {
        let body = serde_json::to_vec(&serde_json::json!({"name": name, "peerURL": peer_url}))?;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let reply = loop {
            let request = http::Request::post("/v1-skiff/etcd-members").header(http::header::CONTENT_TYPE, "application/json").body(body.clone())?;
            match self.client()?.request_text(request).await {
                Ok(reply) => break reply,
                Err(kube::Error::Api(status)) if status.code >= 500 && tokio::time::Instant::now() < deadline => {
                    tracing::info!("the etcd cluster cannot take a member yet: {}", status.message);
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                }
                Err(e) => return Err(e).context("adding this server's etcd member"),
            }
        };
        let reply: serde_json::Value = serde_json::from_str(&reply)?;
        reply["initialCluster"].as_str().map(str::to_string).context("the server named no etcd members")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        Secrets { ca_cert: "cert".into(), ca_key: "key".into(), service_account_key: "sa".into(), encryption_config: None }
    }

    #[test]
    fn sealed_secrets_open_with_their_token_only() {
        let sealed = Sealed::seal(&secrets(), "right").unwrap();
        let text = serde_json::to_string(&sealed).unwrap();
        assert!(!text.contains("cert") && !text.contains("\"sa\""), "nothing in clear: {text}");
        let back: Sealed = serde_json::from_str(&text).unwrap();
        assert!(back.open("right").unwrap() == secrets());
        let wrong = back.open("wrong").err().unwrap().to_string();
        assert!(wrong.contains("token does not match"), "{wrong}");
    }

    #[test]
    fn tokens_in_k3s_forms() {
        let hash = "a".repeat(64);
        let full: Token = format!("K10{hash}::server:s3cret").parse().unwrap();
        assert_eq!((full.secret.as_str(), full.ca_hash.as_deref()), ("s3cret", Some(hash.as_str())));
        let short: Token = "s3cret\n".parse().unwrap();
        assert_eq!((short.secret.as_str(), short.ca_hash), ("s3cret", None));
        assert!("K10abc::server:x".parse::<Token>().is_err(), "a hash that is not SHA-256");
        assert!("".parse::<Token>().is_err());
        let made = Token::generate();
        let again: Token = made.full("ca").parse().unwrap();
        assert_eq!(again.secret, made.secret);
        assert_eq!(again.ca_hash.unwrap(), ca_hash("ca"));
    }
}

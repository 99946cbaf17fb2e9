//! Encryption at rest (`--encryption-provider-config`), with upstream's
//! EncryptionConfiguration: per resource, a list of providers; the first
//! encrypts what is written, any of them may decrypt what is read
//! (recognised by its `k8s:enc:<provider>:v1:<key>:` prefix), so keys and
//! providers rotate by rewriting the objects. Values are transformed below
//! the watch cache: only the backend (SQLite or etcd) holds ciphertext.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use anyhow::{bail, Context, Result};
use base64::Engine;
use bytes::Bytes;
use rand::RngCore;
use serde_json::Value;

enum Cipher {
    // Boxed: their key schedules are most of a kilobyte.
    AesGcm(Box<aes_gcm::Aes256Gcm>),
    AesGcm128(Box<aes_gcm::Aes128Gcm>),
    AesCbc(Vec<u8>),
    Secretbox(crypto_secretbox::XSalsa20Poly1305),
}

struct Key {
    /// `k8s:enc:<provider>:v1:<name>:`
    prefix: Vec<u8>,
    cipher: Cipher,
}

enum Provider {
    Identity,
    Keys(Vec<Key>),
}

/// The resources a rule covers: plural names, `resource.group`, `*.group`
/// or `*.*`, matched against storage keys.
struct Rule {
    prefixes: Vec<String>,
    providers: Vec<Provider>,
}

pub struct Encryption {
    rules: Vec<Rule>,
}

/// A configuration with a new random key that encrypts Secrets with
/// AES-CBC, as k3s's `--secrets-encryption` makes; what was written in
/// clear stays readable.
pub fn generate() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!(
        "apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources: [secrets]
  providers:
  - aescbc:
      keys:
      - name: aescbckey
        secret: {}
  - identity: {{}}
",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

impl Encryption {
    pub fn load(path: &std::path::Path) -> Result<Encryption> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Encryption::parse(&text).with_context(|| format!("{}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Encryption> {
        let config: Value = serde_yaml::from_str(text)?;
        if config["kind"] != "EncryptionConfiguration" {
            bail!("kind must be EncryptionConfiguration");
        }
        let mut rules = Vec::new();
        for entry in config["resources"].as_array().context("no resources")? {
            let mut prefixes = Vec::new();
            for resource in entry["resources"].as_array().context("a rule without resources")? {
                let resource = resource.as_str().context("a resource is not a string")?;
                prefixes.push(match resource.split_once('.') {
                    Some(("*", "*")) => "/registry/".to_string(),
                    Some(("*", group)) => format!("/registry/{group}/"),
                    Some((plural, group)) => format!("/registry/{group}/{plural}/"),
                    None => format!("/registry/{resource}/"),
                });
            }
            let mut providers = Vec::new();
            for provider in entry["providers"].as_array().context("a rule without providers")? {
                let (kind, settings) = provider.as_object().and_then(|p| p.iter().next()).context("an empty provider")?;
                providers.push(match kind.as_str() {
                    "identity" => Provider::Identity,
                    "aesgcm" | "aescbc" | "secretbox" => Provider::Keys(keys(kind, settings)?),
                    other => bail!("provider {other:?} is not supported (aesgcm, aescbc, secretbox, identity)"),
                });
            }
            if providers.is_empty() {
                bail!("a rule needs at least one provider");
            }
            rules.push(Rule { prefixes, providers });
        }
        Ok(Encryption { rules })
    }

    fn rule(&self, key: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.prefixes.iter().any(|p| key.starts_with(p.as_str())))
    }
}

fn keys(kind: &str, settings: &Value) -> Result<Vec<Key>> {
    let mut keys = Vec::new();
    for key in settings["keys"].as_array().with_context(|| format!("{kind} needs keys"))? {
        let name = key["name"].as_str().context("a key needs a name")?;
        let secret = base64::engine::general_purpose::STANDARD.decode(key["secret"].as_str().context("a key needs a secret")?).context("a key's secret is not base64")?;
        // The lengths are checked by the match, so the constructors cannot fail.
        let length = "a key of a checked length";
        let cipher = match (kind, secret.len()) {
            ("aesgcm", 32) => Cipher::AesGcm(Box::new(aes_gcm::Aes256Gcm::new_from_slice(&secret).expect(length))),
            ("aesgcm", 16) => Cipher::AesGcm128(Box::new(aes_gcm::Aes128Gcm::new_from_slice(&secret).expect(length))),
            ("aescbc", 16 | 32) => Cipher::AesCbc(secret),
            ("secretbox", 32) => Cipher::Secretbox(crypto_secretbox::XSalsa20Poly1305::new_from_slice(&secret).expect(length)),
            (_, n) => bail!("{kind} key {name:?} is {n} bytes long"),
        };
        keys.push(Key { prefix: format!("k8s:enc:{kind}:v1:{name}:").into_bytes(), cipher });
    }
    if keys.is_empty() {
        bail!("{kind} needs at least one key");
    }
    Ok(keys)
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

impl Key {
    fn seal(&self, key: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = self.prefix.clone();
        let failed = |e| format!("encrypting: {e}");
        match &self.cipher {
            // The storage key is authenticated with the value, as upstream's.
            Cipher::AesGcm(c) => {
                let nonce = random::<12>();
                out.extend_from_slice(&nonce);
                out.extend(c.encrypt(&nonce.into(), Payload { msg: plain, aad: key.as_bytes() }).map_err(failed)?);
            }
            Cipher::AesGcm128(c) => {
                let nonce = random::<12>();
                out.extend_from_slice(&nonce);
                out.extend(c.encrypt(&nonce.into(), Payload { msg: plain, aad: key.as_bytes() }).map_err(failed)?);
            }
            Cipher::AesCbc(secret) => {
                use aes::cipher::{BlockEncryptMut, KeyIvInit};
                let iv = random::<16>();
                out.extend_from_slice(&iv);
                let sealed = match secret.len() {
                    32 => cbc::Encryptor::<aes::Aes256>::new_from_slices(secret, &iv).map_err(|e| e.to_string())?.encrypt_padded_vec_mut::<aes::cipher::block_padding::Pkcs7>(plain),
                    _ => cbc::Encryptor::<aes::Aes128>::new_from_slices(secret, &iv).map_err(|e| e.to_string())?.encrypt_padded_vec_mut::<aes::cipher::block_padding::Pkcs7>(plain),
                };
                out.extend(sealed);
            }
            Cipher::Secretbox(c) => {
                let nonce = random::<24>();
                out.extend_from_slice(&nonce);
                out.extend(c.encrypt(&nonce.into(), plain).map_err(failed)?);
            }
        }
        Ok(out)
    }

    fn open(&self, key: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let body = &sealed[self.prefix.len()..];
        let failed = |_| "the value does not decrypt with its key".to_string();
        let split = |n: usize| if body.len() < n { Err("the value is too short".to_string()) } else { Ok(body.split_at(n)) };
        match &self.cipher {
            Cipher::AesGcm(c) => {
                let (nonce, data) = split(12)?;
                c.decrypt(nonce.into(), Payload { msg: data, aad: key.as_bytes() }).map_err(failed)
            }
            Cipher::AesGcm128(c) => {
                let (nonce, data) = split(12)?;
                c.decrypt(nonce.into(), Payload { msg: data, aad: key.as_bytes() }).map_err(failed)
            }
            Cipher::AesCbc(secret) => {
                use aes::cipher::{BlockDecryptMut, KeyIvInit};
                let (iv, data) = split(16)?;
                let pkcs7 = |e: aes::cipher::block_padding::UnpadError| e.to_string();
                match secret.len() {
                    32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(secret, iv).map_err(|e| e.to_string())?.decrypt_padded_vec_mut::<aes::cipher::block_padding::Pkcs7>(data).map_err(pkcs7),
                    _ => cbc::Decryptor::<aes::Aes128>::new_from_slices(secret, iv).map_err(|e| e.to_string())?.decrypt_padded_vec_mut::<aes::cipher::block_padding::Pkcs7>(data).map_err(pkcs7),
                }
            }
            Cipher::Secretbox(c) => {
                let (nonce, data) = split(24)?;
                c.decrypt(nonce.into(), data).map_err(failed)
            }
        }
    }
}

impl skiff_store::Transformer for Encryption {
    fn to_storage(&self, key: &str, value: Bytes) -> Result<Bytes, String> {
        match self.rule(key).map(|r| &r.providers[0]) {
            Some(Provider::Keys(keys)) => keys[0].seal(key, &value).map(Bytes::from),
            _ => Ok(value),
        }
    }

    fn from_storage(&self, key: &str, value: Bytes) -> Result<Bytes, String> {
        let Some(rule) = self.rule(key) else { return Ok(value) };
        if value.starts_with(b"k8s:enc:") {
            let sealer = rule.providers.iter().filter_map(|p| match p {
                Provider::Keys(keys) => Some(keys),
                Provider::Identity => None,
            });
            for k in sealer.flatten() {
                if value.starts_with(&k.prefix) {
                    return k.open(key, &value).map(Bytes::from);
                }
            }
            return Err("no configured key decrypts this value".into());
        }
        // Plain values are read only where identity is a provider (as upstream).
        if rule.providers.iter().any(|p| matches!(p, Provider::Identity)) {
            Ok(value)
        } else {
            Err("the value is not encrypted and identity is not a provider".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_store::Transformer;

    fn config(providers: &str) -> Encryption {
        let key32 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let key16 = base64::engine::general_purpose::STANDARD.encode([9u8; 16]);
        let text = format!("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers: {}\n", providers.replace("K32", &key32).replace("K16", &key16));
        Encryption::parse(&text).unwrap()
    }

    #[test]
    fn each_provider_round_trips_and_hides_the_plaintext() {
        for provider in ["aesgcm: {keys: [{name: k, secret: K32}]}", "aesgcm: {keys: [{name: k, secret: K16}]}", "aescbc: {keys: [{name: k, secret: K32}]}", "secretbox: {keys: [{name: k, secret: K32}]}"] {
            let e = config(&format!("[{{{provider}}}, {{identity: {{}}}}]"));
            let plain = Bytes::from_static(b"{\"data\":{\"password\":\"hunter2\"}}");
            let sealed = e.to_storage("/registry/secrets/ns/s", plain.clone()).unwrap();
            assert!(sealed.starts_with(b"k8s:enc:") && !sealed.windows(7).any(|w| w == b"hunter2"), "{provider}");
            assert_eq!(e.from_storage("/registry/secrets/ns/s", sealed.clone()).unwrap(), plain, "{provider}");
            // Not for another resource; and plain values still read (identity listed).
            assert_eq!(e.to_storage("/registry/configmaps/ns/c", plain.clone()).unwrap(), plain);
            assert_eq!(e.from_storage("/registry/secrets/ns/s", plain.clone()).unwrap(), plain);
            if provider.starts_with("aesgcm") {
                // The key is authenticated: the value moved to another key does not decrypt.
                assert!(e.from_storage("/registry/secrets/ns/other", sealed).is_err());
            }
        }
    }

    #[test]
    fn rotation_reads_old_keys_and_writes_with_the_first() {
        let old = config("[{aescbc: {keys: [{name: old, secret: K32}]}}]");
        let sealed = old.to_storage("/registry/secrets/a/b", Bytes::from_static(b"x")).unwrap();
        let rotated = config("[{secretbox: {keys: [{name: new, secret: K32}]}}, {aescbc: {keys: [{name: old, secret: K32}]}}]");
        assert_eq!(rotated.from_storage("/registry/secrets/a/b", sealed).unwrap(), Bytes::from_static(b"x"));
        assert!(rotated.to_storage("/registry/secrets/a/b", Bytes::from_static(b"x")).unwrap().starts_with(b"k8s:enc:secretbox:v1:new:"));
        assert!(rotated.from_storage("/registry/secrets/a/b", Bytes::from_static(b"plain")).is_err());
        assert!(Encryption::parse("kind: EncryptionConfiguration\nresources: [{resources: [secrets], providers: [{aesgcm: {keys: [{name: k, secret: c2hvcnQ=}]}}]}]").is_err());
    }
}

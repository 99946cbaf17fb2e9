//! Where images come from, as k3s's `registries.yaml` says
//! (`--private-registry`): per registry host, `mirrors` tried in order
//! before the registry itself (`http://` allowed, repository paths
//! rewritten), with `"*"` for registries not named; per endpoint host,
//! `configs` with credentials and TLS settings. The file is read again
//! whenever it changes, so edits take effect without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Regular expression on the repository → replacement (`$1`…).
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    #[serde(default)]
    pub auth: Option<Auth>,
    #[serde(default)]
    pub tls: Option<Tls>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64 of `username:password`.
    pub auth: Option<String>,
    pub identity_token: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One place to try for an image: the registry's own, or a mirror's.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `host[:port]` as the reference names it.
    pub host: String,
    pub http: bool,
    /// The repository at this endpoint (rewritten for a mirror).
    pub repository: String,
    pub config: Option<RegistryConfigRef>,
}

/// The `configs` entry for an endpoint's host, with credentials resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryConfigRef {
    pub basic: Option<(String, String)>,
    pub bearer: Option<String>,
    pub ca_pem: Option<Vec<u8>>,
    pub insecure_skip_verify: bool,
}

impl Registries {
    pub fn parse(text: &str) -> Result<Registries> {
        if text.trim().is_empty() {
            return Ok(Registries::default());
        }
        let registries: Registries = serde_yaml::from_str(text).map_err(|e| match e.location() {
            Some(at) => anyhow::anyhow!("line {}, column {}: {e}", at.line(), at.column()),
            None => anyhow::anyhow!("{e}"),
        })?;
        for (registry, mirror) in &registries.mirrors {
            for endpoint in &mirror.endpoint {
                parse_endpoint(endpoint).with_context(|| format!("mirrors.{registry}.endpoint"))?;
            }
            for pattern in mirror.rewrite.keys() {
                regex::Regex::new(pattern).with_context(|| format!("mirrors.{registry}.rewrite: {pattern:?}"))?;
            }
        }
        for (host, config) in &registries.configs {
            if let Some(tls) = &config.tls {
                if tls.cert_file.is_some() || tls.key_file.is_some() {
                    bail!("configs.{host}.tls: client certificates (cert_file, key_file) are not supported yet");
                }
            }
        }
        Ok(registries)
    }

    pub fn load(path: &Path) -> Result<Registries> {
        match std::fs::read_to_string(path) {
            Ok(text) => Registries::parse(&text).with_context(|| format!("{}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registries::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Where to pull `repository` of `registry` from, in order: its
    /// mirrors (or `"*"`'s), then the registry itself.
    pub fn endpoints(&self, registry: &str, repository: &str) -> Result<Vec<Endpoint>> {
        let mut endpoints = Vec::new();
        if let Some(mirror) = self.mirrors.get(registry).or_else(|| self.mirrors.get("*")) {
            let mut rewritten = repository.to_string();
            for (pattern, replacement) in &mirror.rewrite {
                let re = regex::Regex::new(pattern)?;
                if re.is_match(&rewritten) {
                    rewritten = re.replace(&rewritten, replacement.as_str()).into_owned();
                    break;
                }
            }
            for endpoint in &mirror.endpoint {
                let (host, http) = parse_endpoint(endpoint)?;
                let config = self.config_for(&host)?;
                endpoints.push(Endpoint { host, http, repository: rewritten.clone(), config });
            }
        }
        if !endpoints.iter().any(|e| e.host == registry && e.repository == repository) {
            let config = self.config_for(registry)?;
            endpoints.push(Endpoint { host: registry.to_string(), http: is_loopback(registry), repository: repository.to_string(), config });
        }
        Ok(endpoints)
    }

    fn config_for(&self, host: &str) -> Result<Option<RegistryConfigRef>> {
        let Some(config) = self.configs.get(host) else { return Ok(None) };
        let mut basic = None;
        let mut bearer = None;
        if let Some(auth) = &config.auth {
            if let Some(token) = &auth.identity_token {
                bearer = Some(token.clone());
            } else if let Some(encoded) = &auth.auth {
                use base64::Engine;
                let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).with_context(|| format!("configs.{host}.auth.auth is not base64"))?;
                let text = String::from_utf8(decoded).with_context(|| format!("configs.{host}.auth.auth"))?;
                let (user, password) = text.split_once(':').with_context(|| format!("configs.{host}.auth.auth is not user:password"))?;
                basic = Some((user.to_string(), password.to_string()));
            } else if let (Some(user), Some(password)) = (&auth.username, &auth.password) {
                basic = Some((user.clone(), password.clone()));
            }
        }
        let tls = config.tls.clone().unwrap_or_default();
        let ca_pem = match &tls.ca_file {
            Some(file) => Some(std::fs::read(file).with_context(|| format!("configs.{host}.tls.ca_file {}", file.display()))?),
            None => None,
        };
        Ok(Some(RegistryConfigRef { basic, bearer, ca_pem, insecure_skip_verify: tls.insecure_skip_verify }))
    }
}

/// `http://host:port` or `https://host[:port][/]` → (`host[:port]`, is HTTP).
fn parse_endpoint(endpoint: &str) -> Result<(String, bool)> {
    let (http, rest) = if let Some(rest) = endpoint.strip_prefix("http://") {
        (true, rest)
    } else if let Some(rest) = endpoint.strip_prefix("https://") {
        (false, rest)
    } else {
        bail!("{endpoint:?} is not a URL (http://HOST[:PORT] or https://HOST[:PORT])");
    };
    let host = rest.trim_end_matches('/').trim_end_matches("/v2").trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
        bail!("{endpoint:?} is not a URL (http://HOST[:PORT] or https://HOST[:PORT])");
    }
    Ok((host.to_string(), http))
}

/// Registries on loopback are reached over plain HTTP, as Docker treats
/// `127.0.0.0/8` as insecure by default; every other registry over HTTPS.
pub fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map(|(h, _)| h).unwrap_or(registry);
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The file, read again when it changes; a file broken after start keeps
/// the last good one in force (and says so).
pub struct Watched {
    path: PathBuf,
    current: Mutex<(Option<SystemTime>, std::sync::Arc<Registries>)>,
}

impl Watched {
    /// Reads the file now: a malformed one is refused here, at start.
    pub fn open(path: &Path) -> Result<Watched> {
        let registries = Registries::load(path)?;
        Ok(Watched { path: path.to_path_buf(), current: Mutex::new((modified(path), std::sync::Arc::new(registries))) })
    }

    pub fn get(&self) -> std::sync::Arc<Registries> {
        let mut current = self.current.lock().expect("not poisoned");
        let stamp = modified(&self.path);
        if stamp != current.0 {
            match Registries::load(&self.path) {
                Ok(registries) => {
                    tracing::info!(file = %self.path.display(), "registries reloaded");
                    *current = (stamp, std::sync::Arc::new(registries));
                }
                Err(e) => tracing::error!("keeping the registries as they were: {e:#}"),
            }
        }
        current.1.clone()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_rewrite_and_configs_as_k3s() {
        let registries = Registries::parse(
            r#"
mirrors:
  docker.io:
    endpoint: ["http://10.0.0.1:5000", "https://mirror.example/v2"]
    rewrite:
      "^library/(.*)": "cache/$1"
  "*":
    endpoint: ["http://10.0.0.2:5000"]
configs:
  "10.0.0.1:5000":
    auth: {username: u, password: p}
  "mirror.example":
    auth: {auth: "dTI6cDI="}
    tls: {insecure_skip_verify: true}
"#,
        )
        .unwrap();
        let endpoints = registries.endpoints("docker.io", "library/busybox").unwrap();
        let hosts: Vec<_> = endpoints.iter().map(|e| (e.host.as_str(), e.http, e.repository.as_str())).collect();
        assert_eq!(hosts, [("10.0.0.1:5000", true, "cache/busybox"), ("mirror.example", false, "cache/busybox"), ("docker.io", false, "library/busybox")]);
        assert_eq!(endpoints[0].config.as_ref().unwrap().basic, Some(("u".into(), "p".into())));
        assert_eq!(endpoints[1].config.as_ref().unwrap().basic, Some(("u2".into(), "p2".into())));
        assert!(endpoints[1].config.as_ref().unwrap().insecure_skip_verify);
        let other = registries.endpoints("quay.io", "x/y").unwrap();
        assert_eq!(other.iter().map(|e| e.host.as_str()).collect::<Vec<_>>(), ["10.0.0.2:5000", "quay.io"], "\"*\" mirrors every other registry");
        assert!(registries.endpoints("127.0.0.1:5000", "a").unwrap().last().unwrap().http, "loopback over HTTP");
    }

    #[test]
    fn bad_files_are_refused_with_the_line_and_the_reason() {
        let err = Registries::parse("mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]\n").unwrap_err();
        assert!(format!("{err:#}").contains("is not a URL"), "{err:#}");
        let err = Registries::parse("mirrors: [unclosed\n").unwrap_err();
        assert!(format!("{err:#}").contains("line "), "{err:#}");
        let err = Registries::parse("mirrorz: {}\n").unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
        assert!(Registries::parse("").unwrap().mirrors.is_empty());
    }
}

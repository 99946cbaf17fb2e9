//! Images: pulled over the OCI distribution API (`oci-client`), kept
//! content-addressed, each layer unpacked once into its own directory so a
//! container's root is an overlay of them.
//!
//! Layout under the image root:
//! - `layers/<hex>/`: a layer unpacked, whiteouts as overlayfs expects them;
//! - `blobs/<hex>`: the layer as pulled (compressed), and
//!   `manifests/<hex>.json`: the manifest as pulled, kept so that other
//!   nodes can pull the image from this one (the embedded registry);
//! - `configs/<hex>.json`: an image configuration;
//! - `images.json`: every image, by reference and by manifest digest,
//!   changed under a lock on `images.lock` and read afresh, so `skiff image`
//!   can change it beside a running agent.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use crate::peers::Peers;
use crate::registries::{Endpoint, Registries};

/// One image on this node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Image {
    /// The references it was pulled or imported as, fully qualified
    /// (`docker.io/library/busybox:latest`).
    pub references: Vec<String>,
    /// `sha256:…` of its manifest: the image ID kubectl shows as `imageID`
    /// (with the repository in front).
    pub digest: String,
    pub config_digest: String,
    /// Layer digests, lowest first.
    pub layers: Vec<String>,
    /// Bytes of its compressed layers.
    pub size: u64,
    /// When a pull, an import or a container last used it (RFC 3339), for
    /// image garbage collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<String>,
}

impl Image {
    /// `repo@sha256:…`, as upstream reports `status.containerStatuses[].imageID`.
    pub fn id_for(&self, reference: &str) -> String {
        let repo = reference.rsplit_once('@').map(|(r, _)| r).unwrap_or(reference);
        let repo = match repo.rsplit_once(':') {
            Some((r, tag)) if !tag.contains('/') => r,
            _ => repo,
        };
        format!("{repo}@{}", self.digest)
    }
}

/// Credentials for one registry host, from imagePullSecrets.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Credentials from one `auths` entry of a Docker config: `auth`
/// (base64 `user:password`) or `username` and `password`.
pub fn credentials_from_docker_config(entry: &serde_json::Value) -> Option<Credentials> {
    use base64::Engine;
    if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD.decode(auth).ok()?;
        let (username, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        return Some(Credentials { username: username.into(), password: password.into() });
    }
    Some(Credentials { username: entry["username"].as_str()?.into(), password: entry["password"].as_str()?.into() })
}

pub struct ImageStore {
    root: PathBuf,
    /// One pull at a time per store: two pods asking for one image share
    /// the first pull instead of racing to unpack the same layers.
    pulling: tokio::sync::Mutex<()>,
}

/// The reference as upstream normalises it: `busybox` is
/// `docker.io/library/busybox:latest`.
pub fn normalize(reference: &str) -> Result<String> {
    let parsed: Reference = reference.parse().with_context(|| format!("invalid image reference {reference:?}"))?;
    Ok(parsed.whole())
}

impl ImageStore {
    pub fn open(root: &Path) -> Result<ImageStore> {
        for dir in ["layers", "blobs", "manifests", "configs", "tmp"] {
            std::fs::create_dir_all(root.join(dir)).with_context(|| format!("creating {}", root.display()))?;
        }
        let store = ImageStore { root: root.to_path_buf(), pulling: Default::default() };
        store.read()?;
        Ok(store)
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    fn read(&self) -> Result<Vec<Image>> {
        match std::fs::read(self.root.join("images.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).context("reading images.json"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).context("reading images.json"),
        }
    }

    /// Changes the image list under the store's lock.
    fn update<T>(&self, change: impl FnOnce(&mut Vec<Image>) -> Result<T>) -> Result<T> {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(self.root.join("images.lock"))?;
        let _locked = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e).context("locking the image store")?;
        let mut images = self.read()?;
        let out = change(&mut images)?;
        crate::write_file_atomically(&self.root.join("images.json"), &serde_json::to_vec_pretty(&images)?)?;
        Ok(out)
    }

    pub fn list(&self) -> Vec<Image> {
        self.read().unwrap_or_else(|e| {
            tracing::warn!("{e:#}");
            Vec::new()
        })
    }

    /// The image a reference names, if present.
    pub fn get(&self, reference: &str) -> Option<Image> {
        let wanted = normalize(reference).ok()?;
        let digest = wanted.rsplit_once('@').map(|(_, d)| d.to_string());
        self.list().into_iter().find(|i| i.references.contains(&wanted) || digest.as_ref() == Some(&i.digest))
    }

    pub fn config(&self, image: &Image) -> Result<ImageConfiguration> {
        let path = self.root.join("configs").join(format!("{}.json", hex(&image.config_digest)));
        ImageConfiguration::from_file(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Directories of the image's layers, highest first (overlayfs's
    /// `lowerdir` order).
    pub fn layer_dirs(&self, image: &Image) -> Vec<PathBuf> {
        image.layers.iter().rev().map(|d| self.root.join("layers").join(hex(d))).collect()
    }

    /// Pulls an image unless a pull already brought it; returns it. It is
    /// looked for first on peers that hold it (the embedded registry),
    /// then at each endpoint `registries` gives, in order; every manifest
    /// and blob is checked against its digest before it is kept.
    pub async fn pull(&self, reference: &str, credentials: Option<&Credentials>, registries: &Registries, peers: Option<&Peers>) -> Result<Image> {
        let parsed: Reference = reference.parse().with_context(|| format!("invalid image reference {reference:?}"))?;
        let _one_at_a_time = self.pulling.lock().await;
        let mut failures = Vec::new();
        if let Some(peers) = peers {
            for offer in peers.offers(&parsed).await {
                let source = crate::peers::PeerSource { peers, offer: &offer, name: format!("{}/{}", parsed.registry(), parsed.repository()) };
                match self.fetch(&source, &parsed.whole()).await {
                    Ok(image) => {
                        tracing::info!(image = %parsed.whole(), node = %offer.node, "pulled from another node");
                        return Ok(image);
                    }
                    Err(e) => failures.push(format!("from node {}: {e:#}", offer.node)),
                }
            }
        }
        for endpoint in registries.endpoints(parsed.registry(), parsed.repository())? {
            let source = RegistrySource::new(&endpoint, &parsed, credentials);
            match self.fetch(&source, &parsed.whole()).await {
                Ok(image) => {
                    tracing::info!(image = %parsed.whole(), endpoint = %endpoint.host, "pulled");
                    return Ok(image);
                }
                // The registry's own words when it was the only place to look.
                Err(e) if failures.is_empty() && endpoint.host == parsed.registry() => return Err(e),
                Err(e) => failures.push(format!("from {}: {e:#}", endpoint.host)),
            }
        }
        bail!("{}", failures.join("; "))
    }

    /// Takes the image from `source` into the store under `reference`.
    async fn fetch(&self, source: &dyn Source, reference: &str) -> Result<Image> {
        let (raw, digest) = source.manifest().await?;
        anyhow::ensure!(sha256_digest(&raw) == digest, "the manifest does not match its digest {digest}");
        if let Some(image) = self.list().into_iter().find(|i| i.digest == digest) {
            return self.remember(image, reference);
        }
        let manifest: OciImageManifest = serde_json::from_slice(&raw).context("the manifest")?;
        let config_digest = manifest.config.digest.clone();
        let config_path = self.root.join("configs").join(format!("{}.json", hex(&config_digest)));
        let staged = self.root.join("tmp").join(format!("{}.{}", hex(&config_digest), uuid::Uuid::new_v4().simple()));
        source.blob(&manifest.config, &staged).await.with_context(|| format!("pulling the config {config_digest}"))?;
        std::fs::rename(&staged, &config_path)?;
        for layer in &manifest.layers {
            let dir = self.root.join("layers").join(hex(&layer.digest));
            if dir.exists() && self.root.join("blobs").join(hex(&layer.digest)).exists() {
                continue;
            }
            let blob = self.root.join("tmp").join(format!("{}.{}", hex(&layer.digest), uuid::Uuid::new_v4().simple()));
            if let Err(e) = source.blob(layer, &blob).await {
                let _ = std::fs::remove_file(&blob);
                return Err(e.context(format!("pulling layer {}", layer.digest)));
            }
            let media_type = layer.media_type.clone();
            let root = self.root.clone();
            tokio::task::spawn_blocking(move || unpack_layer(&root, &blob, &media_type, &dir)).await??;
        }
        self.keep_manifest(&digest, &raw)?;
        let image = Image { references: vec![], digest, config_digest, layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(), size: size_of(&manifest), last_used: None };
        self.remember(image, reference)
    }

    pub(crate) fn keep_manifest(&self, digest: &str, raw: &[u8]) -> Result<()> {
        crate::write_file_atomically(&self.root.join("manifests").join(format!("{}.json", hex(digest))), raw)
    }

    /// A manifest as pulled, by digest.
    pub fn manifest(&self, digest: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join("manifests").join(format!("{}.json", hex(digest)))).ok()
    }

    /// Where a blob (a layer as pulled, or a config) is kept, by digest.
    pub fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = hex(digest);
        [self.root.join("blobs").join(&hex), self.root.join("configs").join(format!("{hex}.json"))].into_iter().find(|p| p.is_file())
    }

    /// Marks an image used now.
    pub fn touch(&self, digest: &str) -> Result<()> {
        self.update(|images| {
            images.iter_mut().filter(|i| i.digest == digest).for_each(|i| i.last_used = Some(now()));
            Ok(())
        })
    }

    /// Records the image under `reference` (moved from any image it named before).
    pub(crate) fn remember(&self, image: Image, reference: &str) -> Result<Image> {
        self.update(|images| {
            for other in images.iter_mut() {
                other.references.retain(|r| r != reference);
            }
            Ok(match images.iter_mut().find(|i| i.digest == image.digest) {
                Some(known) => {
                    known.references.push(reference.to_string());
                    known.last_used = Some(now());
                    known.clone()
                }
                None => {
                    let image = Image { references: vec![reference.to_string()], last_used: Some(now()), ..image };
                    images.push(image.clone());
                    image
                }
            })
        })
    }

    /// Removes an image and the layers no other image uses.
    pub fn remove(&self, reference: &str) -> Result<Image> {
        let (image, images) = self.update(|images| {
            // A reference, or an image's digest itself.
            let wanted = normalize(reference).unwrap_or_default();
            let digest = wanted.rsplit_once('@').map_or(reference, |(_, d)| d);
            let Some(image) = images.iter().find(|i| i.references.contains(&wanted) || i.digest == digest).cloned() else {
                bail!("image {reference} not found")
            };
            images.retain(|i| i.digest != image.digest);
            Ok((image, images.clone()))
        })?;
        for layer in &image.layers {
            if !images.iter().any(|i| i.layers.contains(layer)) {
                let _ = std::fs::remove_dir_all(self.root.join("layers").join(hex(layer)));
                let _ = std::fs::remove_file(self.root.join("blobs").join(hex(layer)));
            }
        }
        let _ = std::fs::remove_file(self.root.join("manifests").join(format!("{}.json", hex(&image.digest))));
        if !images.iter().any(|i| i.config_digest == image.config_digest) {
            let _ = std::fs::remove_file(self.root.join("configs").join(format!("{}.json", hex(&image.config_digest))));
        }
        Ok(image)
    }
}

/// Where an image's manifest and blobs come from.
#[async_trait::async_trait]
pub(crate) trait Source: Send + Sync {
    /// The manifest (of this platform, if the reference names an index)
    /// as served, and its digest.
    async fn manifest(&self) -> Result<(Vec<u8>, String)>;
    /// A blob into the file `to`, checked against its digest.
    async fn blob(&self, descriptor: &OciDescriptor, to: &Path) -> Result<()>;
}

/// A registry, or a mirror of it (`registries.yaml`).
struct RegistrySource {
    client: Client,
    reference: Reference,
    auth: RegistryAuth,
}

impl RegistrySource {
    fn new(endpoint: &Endpoint, wanted: &Reference, credentials: Option<&Credentials>) -> RegistrySource {
        let reference = match wanted.digest() {
            Some(digest) => Reference::with_digest(endpoint.host.clone(), endpoint.repository.clone(), digest.to_string()),
            None => Reference::with_tag(endpoint.host.clone(), endpoint.repository.clone(), wanted.tag().unwrap_or("latest").to_string()),
        };
        let mut config = oci_client::client::ClientConfig {
            protocol: if endpoint.http { oci_client::client::ClientProtocol::Http } else { oci_client::client::ClientProtocol::Https },
            ..Default::default()
        };
        // imagePullSecrets are for the registry they name, not its mirrors.
        let mut auth = match credentials {
            Some(c) if endpoint.host == wanted.registry() => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            _ => RegistryAuth::Anonymous,
        };
        if let Some(settings) = &endpoint.config {
            if let Some(ca) = &settings.ca_pem {
                config.extra_root_certificates.push(oci_client::client::Certificate { encoding: oci_client::client::CertificateEncoding::Pem, data: ca.clone() });
            }
            config.accept_invalid_certificates = settings.insecure_skip_verify;
            if let Some((user, password)) = &settings.basic {
                auth = RegistryAuth::Basic(user.clone(), password.clone());
            } else if let Some(token) = &settings.bearer {
                auth = RegistryAuth::Bearer(token.clone());
            }
        }
        RegistrySource { client: Client::new(config), reference, auth }
    }
}

#[async_trait::async_trait]
impl Source for RegistrySource {
    async fn manifest(&self) -> Result<(Vec<u8>, String)> {
        // The platform's manifest is found through an index if need be,
        // then read again by digest exactly as the registry holds it.
        let (_, digest) = self.client.pull_image_manifest(&self.reference, &self.auth).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let by_digest = Reference::with_digest(self.reference.registry().to_string(), self.reference.repository().to_string(), digest.clone());
        let accepted = [oci_client::manifest::OCI_IMAGE_MEDIA_TYPE, oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE];
        let (raw, _) = self.client.pull_manifest_raw(&by_digest, &self.auth, &accepted).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok((raw.to_vec(), digest))
    }

    async fn blob(&self, descriptor: &OciDescriptor, to: &Path) -> Result<()> {
        // oci-client checks the digest as the bytes arrive.
        let file = tokio::fs::File::create(to).await?;
        self.client.pull_blob(&self.reference, descriptor, file).await.map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// `sha256:<hex>` of some bytes.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn size_of(manifest: &OciImageManifest) -> u64 {
    manifest.layers.iter().map(|l| l.size.max(0) as u64).sum()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `sha256:abc…` → `abc…`; digests name files, so nothing else may pass.
pub(crate) fn hex(digest: &str) -> String {
    digest.rsplit(':').next().unwrap_or(digest).chars().filter(|c| c.is_ascii_hexdigit()).collect()
}

/// Unpacks a downloaded layer blob into `dir` (via a temporary sibling, so
/// a half-unpacked layer is never used), then keeps the blob in `blobs/`.
pub(crate) fn unpack_layer(root: &Path, blob: &Path, media_type: &str, dir: &Path) -> Result<()> {
    let file = std::fs::File::open(blob)?;
    let reader: Box<dyn Read> = if media_type.ends_with("+zstd") || media_type.ends_with(".zstd") {
        Box::new(ruzstd::decoding::StreamingDecoder::new(std::io::BufReader::new(file)).map_err(|e| anyhow::anyhow!("zstd: {e}"))?)
    } else if media_type.ends_with("gzip") || media_type.ends_with(".gzip") || media_type.ends_with("tar.gzip") {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else if media_type.ends_with(".tar") || media_type.ends_with("tar") {
        Box::new(std::io::BufReader::new(file))
    } else {
        bail!("unsupported layer media type {media_type}");
    };
    // Staged under a name of its own: `skiff image import` may unpack the
    // same layer beside the agent; the first to finish keeps it.
    let staging = root.join("tmp").join(format!("{}.{}.unpacking", dir.file_name().unwrap().to_string_lossy(), uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&staging)?;
    unpack_tar(reader, &staging).with_context(|| format!("unpacking layer {}", dir.display()))?;
    if let Err(e) = std::fs::rename(&staging, dir) {
        let _ = std::fs::remove_dir_all(&staging);
        if !dir.exists() {
            return Err(e.into());
        }
    }
    std::fs::rename(blob, root.join("blobs").join(hex(&dir.file_name().unwrap().to_string_lossy())))?;
    Ok(())
}

/// Unpacks one layer tar. OCI whiteouts become overlayfs's: `.wh.NAME` a
/// 0/0 character device NAME, `.wh..wh..opq` the `trusted.overlay.opaque`
/// attribute on its directory.
pub fn unpack_tar(reader: impl Read, dir: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let name = path.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            // Only plain names below the layer: no `..`, no root (`/etc/.wh.x` must not reach the host's /etc).
            if path.components().any(|c| !matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir)) {
                bail!("whiteout {} escapes the layer", path.display());
            }
            let parent = dir.join(path.parent().unwrap_or(Path::new("")));
            std::fs::create_dir_all(&parent)?;
            if hidden == b".wh..opq" {
                set_xattr(&parent, "trusted.overlay.opaque", b"y")?;
            } else {
                let target = parent.join(std::ffi::OsStr::from_bytes(hidden));
                nix::sys::stat::mknod(&target, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0)
                    .with_context(|| format!("whiteout {}", target.display()))?;
            }
            continue;
        }
        entry.unpack_in(dir)?;
    }
    Ok(())
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let c_name = std::ffi::CString::new(name)?;
    // SAFETY: both strings are NUL-terminated and live across the call.
    let rc = unsafe { libc::lsetxattr(c_path.as_ptr(), c_name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setting {name} on {}", path.display()));
    }
    Ok(())
}

/// Image references by name, for `kubectl get node -o yaml`'s
/// `status.images` (names and sizes).
pub fn node_images(images: &[Image]) -> Vec<BTreeMap<&'static str, serde_json::Value>> {
    images
        .iter()
        .map(|i| {
            let mut names: Vec<String> = i.references.iter().map(|r| i.id_for(r)).collect();
            names.sort();
            names.dedup();
            names.extend(i.references.iter().cloned());
            BTreeMap::from([("names", serde_json::json!(names)), ("sizeBytes", serde_json::json!(i.size))])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalized_as_upstream() {
        assert_eq!(normalize("busybox").unwrap(), "docker.io/library/busybox:latest");
        assert_eq!(normalize("127.0.0.1:5000/busybox:1").unwrap(), "127.0.0.1:5000/busybox:1");
        let image = Image { references: vec![], digest: "sha256:ab".into(), config_digest: String::new(), layers: vec![], size: 0, last_used: None };
        assert_eq!(image.id_for("127.0.0.1:5000/busybox:1"), "127.0.0.1:5000/busybox@sha256:ab");
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_cksum();
            builder.append_data(&mut header, path, data).unwrap();
        };
        add("etc/keep", b"kept");
        add("etc/.wh.gone", b"");
        add("var/.wh..wh..opq", b"");
        let bytes = builder.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        unpack_tar(&bytes[..], dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("etc/keep")).unwrap(), b"kept");
        let meta = std::fs::symlink_metadata(dir.path().join("etc/gone")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(&meta.file_type()));

        // A whiteout outside the layer is refused, not applied to the host.
        for escaping in ["../.wh.x", "a/../../.wh.x", "/skiff-whiteout-test/.wh.x"] {
            let mut evil = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(0);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_cksum();
            // Written raw: the builder itself refuses such paths.
            header.as_gnu_mut().unwrap().name[..escaping.len()].copy_from_slice(escaping.as_bytes());
            header.set_cksum();
            evil.append(&header, &b""[..]).unwrap();
            let bytes = evil.into_inner().unwrap();
            assert!(unpack_tar(&bytes[..], dir.path()).is_err(), "{escaping}");
        }
    }
}

//! Image archives into the image store (`skiff image import`), as `ctr
//! images import` takes them: an OCI image layout in a tar (`skopeo copy
//! … oci-archive:…`, `docker save` since Docker 25) or a Docker archive
//! (`docker save`: `manifest.json` and layer tars). Layers are stored as
//! pulled ones are, so an imported image and the same image pulled later
//! are one image.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::Digest;

use crate::images::{hex, normalize, sha256_digest, unpack_layer, Image, ImageStore};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The archive unpacked in a temporary directory, removed when dropped.
struct Unpacked(PathBuf);

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl ImageStore {
    /// Imports every image in `archive`; `name` names the image when the
    /// archive has one image and names it by tag only, or not at all.
    pub fn import(&self, archive: &Path, name: Option<&str>) -> Result<Vec<Image>> {
        let dir = Unpacked(self.root().join("tmp").join(format!("import-{}", uuid::Uuid::new_v4().simple())));
        std::fs::create_dir_all(&dir.0)?;
        let file = std::fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
        // `unpack` refuses entries that would land outside the directory.
        tar::Archive::new(std::io::BufReader::new(file)).unpack(&dir.0).with_context(|| format!("{} is not a tar archive", archive.display()))?;
        if dir.0.join("index.json").exists() {
            self.import_oci(&dir.0, name)
        } else if dir.0.join("manifest.json").exists() {
            self.import_docker(&dir.0, name)
        } else {
            bail!("{} holds neither an OCI image layout (index.json) nor a Docker archive (manifest.json)", archive.display())
        }
    }

    /// Imports every archive (`*.tar`) in `dir`, as k3s does with the
    /// archives in `agent/images/` when a node starts: an image ready on
    /// every node that has the directory, without any registry.
    pub fn import_dir(&self, dir: &Path) -> Result<Vec<Image>> {
        let mut archives: Vec<PathBuf> = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.flatten().map(|e| e.path()).filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "tar")).collect();
        archives.sort();
        let mut imported = Vec::new();
        for archive in archives {
            imported.extend(self.import(&archive, None).with_context(|| format!("importing {}", archive.display()))?);
        }
        Ok(imported)
    }

    fn import_oci(&self, dir: &Path, name: Option<&str>) -> Result<Vec<Image>> {
        let blob = |digest: &str| -> Result<PathBuf> {
            let (algorithm, hex) = digest.split_once(':').context("a descriptor without a digest")?;
            let path = dir.join("blobs").join(algorithm).join(hex);
            anyhow::ensure!(hex.bytes().all(|b| b.is_ascii_hexdigit()) && path.exists(), "blob {digest} is missing from the archive");
            Ok(path)
        };
        let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json"))?).context("index.json")?;
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        let mut imported = Vec::new();
        for descriptor in &manifests {
            let annotations = &descriptor["annotations"];
            let named = annotations["io.containerd.image.name"].as_str().or(annotations["org.opencontainers.image.ref.name"].as_str());
            let reference = reference(name.filter(|_| manifests.len() == 1).or(named))?;
            let mut digest = descriptor["digest"].as_str().unwrap_or_default().to_string();
            let mut manifest: Value = serde_json::from_slice(&std::fs::read(blob(&digest)?)?)?;
            let media_type = manifest["mediaType"].as_str().or(descriptor["mediaType"].as_str()).unwrap_or_default();
            if media_type == INDEX || media_type == DOCKER_LIST {
                let platform = manifest["manifests"].as_array().into_iter().flatten().find(|m| is_this_platform(&m["platform"])).context("the image has no manifest for this platform")?;
                digest = platform["digest"].as_str().unwrap_or_default().to_string();
                manifest = serde_json::from_slice(&std::fs::read(blob(&digest)?)?)?;
            }
            let config_digest = manifest["config"]["digest"].as_str().context("the manifest has no config")?.to_string();
            self.store_config(&config_digest, &std::fs::read(blob(&config_digest)?)?)?;
            self.keep_manifest(&digest, &std::fs::read(blob(&digest)?)?)?;
            let mut layers = Vec::new();
            let mut size = 0;
            for layer in manifest["layers"].as_array().into_iter().flatten() {
                let layer_digest = layer["digest"].as_str().context("a layer without a digest")?;
                self.store_layer(layer_digest, &blob(layer_digest)?, layer["mediaType"].as_str().unwrap_or("application/vnd.oci.image.layer.v1.tar"))?;
                layers.push(layer_digest.to_string());
                size += layer["size"].as_u64().unwrap_or(0);
            }
            imported.push(self.remember(Image { references: vec![], digest, config_digest, layers, size, last_used: None }, &reference)?);
        }
        Ok(imported)
    }

    fn import_docker(&self, dir: &Path, name: Option<&str>) -> Result<Vec<Image>> {
        let entries: Vec<Value> = serde_json::from_slice(&std::fs::read(dir.join("manifest.json"))?).context("manifest.json")?;
        let inside = |relative: &str| -> Result<PathBuf> {
            anyhow::ensure!(!relative.starts_with('/') && !relative.split('/').any(|p| p == ".."), "{relative:?} is outside the archive");
            Ok(dir.join(relative))
        };
        let mut imported = Vec::new();
        for entry in &entries {
            let config = std::fs::read(inside(entry["Config"].as_str().context("an entry without Config")?)?)?;
            let config_digest = sha256_digest(&config);
            self.store_config(&config_digest, &config)?;
            let mut descriptors = Vec::new();
            for path in entry["Layers"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                let path = inside(path)?;
                let (digest, size, gzip) = digest_of(&path)?;
                let media_type = if gzip { "application/vnd.oci.image.layer.v1.tar+gzip" } else { "application/vnd.oci.image.layer.v1.tar" };
                self.store_layer(&digest, &path, media_type)?;
                descriptors.push(json!({"mediaType": media_type, "digest": digest, "size": size}));
            }
            // A Docker archive has no manifest: the image is named by the
            // OCI manifest its parts make.
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
                "layers": descriptors,
            });
            let size = descriptors.iter().filter_map(|d| d["size"].as_u64()).sum();
            let layers = descriptors.iter().filter_map(|d| d["digest"].as_str().map(String::from)).collect();
            let raw = serde_json::to_vec(&manifest)?;
            let image = Image { references: vec![], digest: sha256_digest(&raw), config_digest, layers, size, last_used: None };
            self.keep_manifest(&image.digest, &raw)?;
            let tags: Vec<&str> = entry["RepoTags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let names: Vec<&str> = match (name.filter(|_| entries.len() == 1), tags.is_empty()) {
                (Some(name), _) => vec![name],
                (None, false) => tags,
                (None, true) => vec![],
            };
            anyhow::ensure!(!names.is_empty(), "the archive does not name its image: give --name");
            let mut recorded = image;
            for n in names {
                recorded = self.remember(recorded, &reference(Some(n))?)?;
            }
            imported.push(recorded);
        }
        Ok(imported)
    }

    fn store_config(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        anyhow::ensure!(sha256_digest(bytes) == digest, "the config does not match its digest {digest}");
        crate::write_file_atomically(&self.root().join("configs").join(format!("{}.json", hex(digest))), bytes)
    }

    fn store_layer(&self, digest: &str, blob: &Path, media_type: &str) -> Result<()> {
        let dir = self.root().join("layers").join(hex(digest));
        if dir.exists() {
            return Ok(());
        }
        // The blob is the archive's copy, unpacked, then kept as pulled ones are.
        unpack_layer(self.root(), blob, media_type, &dir)
    }
}

fn hex_digest(digest: &[u8]) -> String {
    format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A file's digest and size, read as a stream, and whether it is gzip.
fn digest_of(path: &Path) -> Result<(String, u64, bool)> {
    let mut file = std::fs::File::open(path)?;
    let mut magic = [0u8; 2];
    let gzip = std::io::Read::read_exact(&mut file, &mut magic).is_ok() && magic == [0x1f, 0x8b];
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let (mut size, mut buffer) = (0u64, vec![0u8; 1 << 16]);
    loop {
        let n = std::io::Read::read(&mut file, &mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((hex_digest(hasher.finalize().as_slice()), size, gzip))
}

/// The image's reference, normalized; a bare tag names no image.
fn reference(named: Option<&str>) -> Result<String> {
    match named {
        Some(n) if n.contains(':') || n.contains('/') || n.contains('@') => normalize(n),
        Some(tag) => bail!("the archive names its image only by the tag {tag:?}: give --name"),
        None => bail!("the archive does not name its image: give --name"),
    }
}

fn is_this_platform(platform: &Value) -> bool {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    platform["os"] == "linux" && platform["architecture"] == architecture
}

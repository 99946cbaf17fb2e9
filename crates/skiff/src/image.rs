//! `skiff image import|ls|rm`: the node's image store, as `ctr images` and
//! `crictl images` show it, changed beside a running agent.

use std::path::PathBuf;

use anyhow::{bail, Result};
use skiff_kubelet::images::{normalize, ImageStore};

#[derive(clap::Subcommand)]
pub enum Image {
    /// Import images from an OCI archive (a tar of an OCI image layout) or a
    /// Docker archive (`docker save`), or every `*.tar` in a directory.
    /// Archives in `<data-dir>/agent/images/` are imported by the agent
    /// whenever it starts (k3s's air-gap images).
    Import {
        archive: PathBuf,
        /// The image's name, when the archive names it by tag only or not at all.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
    },
    /// List the node's images.
    Ls {
        #[arg(long, default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
    },
    /// Remove images no container uses.
    Rm {
        #[arg(required = true)]
        references: Vec<String>,
        #[arg(long, default_value = "/var/lib/skiff")]
        data_dir: PathBuf,
    },
}

fn store(data_dir: &std::path::Path) -> Result<ImageStore> {
    ImageStore::open(&data_dir.join("agent/images"))
}

/// `1.2MB`, as crictl prints sizes (SI units).
fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{:.3}{}", value, units[unit]).replace(".000", "")
}

impl Image {
    pub fn run(self) -> Result<()> {
        match self {
            Image::Import { archive, name, data_dir } => {
                let store = store(&data_dir)?;
                let imported = match archive.is_dir() {
                    true => store.import_dir(&archive)?,
                    false => store.import(&archive, name.as_deref())?,
                };
                for image in imported {
                    println!("{} {}", image.references.join(","), image.digest);
                }
            }
            Image::Ls { data_dir } => {
                let mut rows = vec![["IMAGE".to_string(), "TAG".into(), "IMAGE ID".into(), "SIZE".into()]];
                for image in store(&data_dir)?.list() {
                    let id: String = image.config_digest.trim_start_matches("sha256:").chars().take(13).collect();
                    for reference in &image.references {
                        let (repository, tag) = match reference.rsplit_once(':') {
                            Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
                            _ => (reference.clone(), "<none>".into()),
                        };
                        rows.push([repository, tag, id.clone(), human(image.size)]);
                    }
                }
                let widths: Vec<usize> = (0..4).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
                for row in rows {
                    let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
                    println!("{}", cells.join("   ").trim_end());
                }
            }
            Image::Rm { references, data_dir } => {
                let store = store(&data_dir)?;
                for reference in references {
                    if let Some(container) = user_of(&data_dir, &reference)? {
                        bail!("image {reference} is in use by container {container}");
                    }
                    let image = store.remove(&reference)?;
                    println!("Deleted: {}", image.digest);
                }
            }
        }
        Ok(())
    }
}

/// A container on this node whose image is `reference`, if any.
fn user_of(data_dir: &std::path::Path, reference: &str) -> Result<Option<String>> {
    let wanted = normalize(reference)?;
    for entry in std::fs::read_dir(data_dir.join("agent/containers")).into_iter().flatten().flatten() {
        let meta: Option<serde_json::Value> = std::fs::read(entry.path().join("meta.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let image = meta.as_ref().and_then(|m| m["image"].as_str()).and_then(|i| normalize(i).ok());
        if image.as_deref() == Some(wanted.as_str()) {
            return Ok(Some(entry.file_name().to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

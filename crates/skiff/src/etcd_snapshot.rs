//! `skiff etcd-snapshot save|ls|restore`, k3s's command: snapshots of the
//! datastore kept in `<data-dir>/server/db/snapshots`. With etcd (embedded
//! or external) a snapshot is etcd's own, taken through its maintenance
//! API; with SQLite it is a consistent copy of the database file. Restoring
//! is for a stopped server: embedded etcd is rebuilt from the snapshot as a
//! cluster of this one member (others join it again), SQLite's file is
//! replaced; an external etcd is restored with its own tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::embedded_etcd;

#[derive(clap::Subcommand)]
pub enum EtcdSnapshot {
    /// Take a snapshot of the datastore now.
    Save(SaveArgs),
    /// List the snapshots kept.
    Ls(Common),
    /// Restore a snapshot into this (stopped) server's datastore.
    Restore(RestoreArgs),
}

#[derive(clap::Args)]
pub struct Common {
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// An external etcd (`http://HOST:2379[,…]`), as the server's flag.
    #[arg(long)]
    datastore_endpoint: Option<String>,
    /// Where snapshots are kept; `<data-dir>/server/db/snapshots` by default.
    #[arg(long)]
    snapshot_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct SaveArgs {
    #[command(flatten)]
    common: Common,
    /// The snapshot's name before `-<host>-<unix time>`.
    #[arg(long, default_value = "on-demand")]
    name: String,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    common: Common,
    /// The snapshot file (as `ls` lists them, or a path).
    snapshot: PathBuf,
}

enum Datastore {
    Etcd(Vec<String>),
    Sqlite(PathBuf),
}

impl Common {
    fn datastore(&self) -> Datastore {
        match &self.datastore_endpoint {
            Some(endpoints) => Datastore::Etcd(endpoints.split(',').map(|e| e.trim().to_string()).collect()),
            None if embedded_etcd::exists(&self.data_dir) => Datastore::Etcd(vec![embedded_etcd::CLIENT_URL.into()]),
            None => Datastore::Sqlite(self.data_dir.join("server/db/state.db")),
        }
    }

    fn snapshot_dir(&self) -> PathBuf {
        self.snapshot_dir.clone().unwrap_or_else(|| self.data_dir.join("server/db/snapshots"))
    }
}

impl EtcdSnapshot {
    pub async fn run(self) -> Result<()> {
        match self {
            EtcdSnapshot::Save(args) => save(&args).await,
            EtcdSnapshot::Ls(args) => list(&args),
            EtcdSnapshot::Restore(args) => restore(&args).await,
        }
    }
}

async fn save(args: &SaveArgs) -> Result<()> {
    let dir = args.common.snapshot_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let host = crate::server::hostname().unwrap_or_else(|| "server".into());
    let name = format!("{}-{host}-{}", args.name, chrono::Utc::now().timestamp());
    let (path, partial) = (dir.join(&name), dir.join(format!(".{name}.part")));
    match args.common.datastore() {
        Datastore::Etcd(endpoints) => {
            use tokio::io::AsyncWriteExt;
            let mut client = etcd_client::Client::connect(&endpoints, None).await.context("connecting to etcd")?;
            let mut stream = client.snapshot().await.context("starting the snapshot")?;
            let mut file = tokio::fs::File::create(&partial).await.with_context(|| format!("writing {}", partial.display()))?;
            while let Some(chunk) = stream.message().await.context("receiving the snapshot")? {
                file.write_all(chunk.blob()).await?;
            }
            file.sync_all().await?;
        }
        Datastore::Sqlite(db) => skiff_store::sqlite::backup(&db, &partial)?,
    }
    std::fs::rename(&partial, &path)?;
    let size = std::fs::metadata(&path)?.len();
    println!("Snapshot {name} saved: {} ({size} bytes)", path.display());
    Ok(())
}

fn list(args: &Common) -> Result<()> {
    let dir = args.snapshot_dir();
    let mut rows: Vec<(String, u64, String)> = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata()?;
        if name.starts_with('.') || !meta.is_file() {
            continue;
        }
        let created: chrono::DateTime<chrono::Utc> = meta.modified()?.into();
        rows.push((name, meta.len(), created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
    }
    rows.sort_by(|a, b| a.2.cmp(&b.2).then(a.0.cmp(&b.0)));
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
    println!("{:width$}  {:>12}  CREATED", "NAME", "SIZE");
    for (name, size, created) in rows {
        println!("{name:width$}  {size:>12}  {created}");
    }
    Ok(())
}

async fn restore(args: &RestoreArgs) -> Result<()> {
    let common = &args.common;
    let snapshot = if args.snapshot.exists() { args.snapshot.clone() } else { common.snapshot_dir().join(&args.snapshot) };
    if !snapshot.is_file() {
        bail!("no snapshot {}", args.snapshot.display());
    }
    let stamp = chrono::Utc::now().timestamp();
    match common.datastore() {
        Datastore::Etcd(_) if common.datastore_endpoint.is_some() => {
            bail!("an external etcd is restored with its own tools (etcdctl snapshot restore), on every member")
        }
        Datastore::Etcd(_) => {
            let answering = tokio::net::TcpStream::connect("127.0.0.1:2379").await.is_ok();
            if answering {
                bail!("etcd is running on this host: stop the server first");
            }
            let (name, peer_url) = embedded_etcd::identity(&common.data_dir)?;
            let dir = embedded_etcd::dir(&common.data_dir);
            let restored = dir.with_file_name("etcd-restore");
            let _ = std::fs::remove_dir_all(&restored);
            let out = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["snapshot", "restore"])
                .arg(&snapshot)
                .arg("--data-dir")
                .arg(&restored)
                .args(["--name", &name, "--initial-cluster", &format!("{name}={peer_url}"), "--initial-advertise-peer-urls", &peer_url, "--initial-cluster-token", "skiff"])
                .output()
                .context("running etcdctl (Debian's etcd-client package)")?;
            if !out.status.success() {
                bail!("etcdctl snapshot restore: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            set_aside(&dir, stamp)?;
            std::fs::rename(&restored, &dir)?;
            println!("Restored {} into {}: start this server; it is now the only etcd member, and every other server joins it again with --server (after removing its <data-dir>/server/db)", snapshot.display(), dir.display());
        }
        Datastore::Sqlite(db) => {
            let copy = db.with_extension("db.restore");
            std::fs::copy(&snapshot, &copy).with_context(|| format!("copying {}", snapshot.display()))?;
            // The write-ahead log goes with the file it belongs to.
            for suffix in ["", "-wal", "-shm"] {
                set_aside(Path::new(&format!("{}{suffix}", db.display())), stamp)?;
            }
            std::fs::rename(&copy, &db)?;
            println!("Restored {} into {}: start the server", snapshot.display(), db.display());
        }
    }
    Ok(())
}

/// Keeps what a restore replaces, as `<name>.old-<unix time>`.
fn set_aside(path: &Path, stamp: i64) -> Result<()> {
    if path.exists() {
        let old = PathBuf::from(format!("{}.old-{stamp}", path.display()));
        std::fs::rename(path, &old).with_context(|| format!("moving {} aside", path.display()))?;
        println!("The datastore it replaces is kept as {}", old.display());
    }
    Ok(())
}

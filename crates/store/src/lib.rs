//! Skiff's storage: a multi-version key-value store with Kubernetes' semantics.
//!
//! One cluster-wide revision only ever grows; every write stamps the key with
//! the next revision. Reads are consistent snapshots at one revision, writes
//! are conditional on the key's modification revision, and a watch delivers
//! every change after a revision exactly once and in order.
//!
//! Two backends keep this contract: embedded SQLite ([`sqlite`], the default)
//! and etcd v3 ([`etcd`], for high availability). [`Store`] wraps either with
//! the parts that are the same for both: continue tokens, watch fan-out and
//! the watch cache that serves lists from memory.

mod backend;
mod continuation;

pub use continuation::at_latest as continue_at_latest;
pub use transform::Transformer;
pub mod error;
pub mod etcd;
mod hub;
pub mod sqlite;
mod transform;
#[cfg(feature = "test-util")]
pub mod testing;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;

pub use backend::{Backend, Progress, RangeRequest, RangeResponse};
pub use error::{Error, Result};
pub use hub::HubConfig;

/// A position in the store's history. Revision 0 means "latest" where a
/// revision is optional; real revisions start at 1.
pub type Revision = i64;

/// The largest value the store accepts: etcd's default request limit.
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// One key at one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this incarnation of the key.
    pub create_revision: Revision,
    /// Revision of the write that produced this value.
    pub mod_revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change. For a delete, `kv` carries the key, the delete's revision as
/// `mod_revision` and an empty value; `prev` holds what was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
    pub memo: Memo,
}

/// What the consumers of one event derive from it once for all of them:
/// the clones of an event share it. The API server keeps there the
/// encodings its watchers send, as upstream's watch cache keeps a
/// `cachingObject` per event. Never part of an event's identity.
#[derive(Clone, Default)]
pub struct Memo(Arc<std::sync::OnceLock<Arc<dyn std::any::Any + Send + Sync>>>);

impl Memo {
    /// The memo, made by whoever asks first; `None` if it was made as
    /// another type.
    pub fn get<T: std::any::Any + Send + Sync + Default>(&self) -> Option<&T> {
        self.0.get_or_init(|| Arc::new(T::default())).downcast_ref()
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

impl PartialEq for Memo {
    fn eq(&self, _: &Memo) -> bool {
        true
    }
}

impl Eq for Memo {}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// What a watch yields: the events of one or more revisions in order, and
/// the revision up to which the watcher has now seen every change under its
/// prefix. A batch without events is a progress notification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchBatch {
    pub events: Vec<Event>,
    pub revision: Revision,
}

/// A watch: batches in revision order, ended by an error such as
/// [`Error::Expired`] or [`Error::Compacted`].
pub type Watch = BoxStream<'static, Result<WatchBatch>>;

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Read at exactly this revision; `None` reads the latest. Not allowed
    /// together with a continue token, which carries its own revision.
    pub revision: Option<Revision>,
    /// Without an exact revision: any snapshot at least this recent will do
    /// (0: any at all), so a watch cache can answer without asking the
    /// backend for the latest revision. Upstream's `NotOlderThan`.
    pub min_revision: Option<Revision>,
    /// At most this many items; `None` for all.
    pub limit: Option<usize>,
    /// The token a previous page returned.
    pub continue_token: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub items: Vec<KeyValue>,
    /// The snapshot the page was read at.
    pub revision: Revision,
    /// Present when more items follow; pass it back to get them.
    pub continue_token: Option<String>,
    /// How many items follow this page, when the backend can tell.
    pub remaining: Option<i64>,
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Sqlite {
        path: PathBuf,
    },
    Etcd {
        endpoints: Vec<String>,
        /// Prepended to every key in etcd, so clusters can share one etcd.
        prefix: String,
    },
}

impl StoreConfig {
    /// Follows k3s: no endpoint means SQLite in the data dir; an
    /// `http://host:2379[,http://host:2379…]` endpoint means etcd.
    pub fn from_endpoint(endpoint: Option<&str>, data_dir: &std::path::Path) -> Result<Self> {
        match endpoint {
            None => Ok(StoreConfig::Sqlite {
                path: data_dir.join("db").join("state.db"),
            }),
            Some(e) if e.starts_with("sqlite://") => Ok(StoreConfig::Sqlite {
                path: PathBuf::from(e.trim_start_matches("sqlite://")),
            }),
            Some(e) if e.starts_with("http://") || e.starts_with("https://") => {
                Ok(StoreConfig::Etcd {
                    endpoints: e.split(',').map(|s| s.trim().to_string()).collect(),
                    prefix: String::new(),
                })
            }
            Some(e) => Err(Error::InvalidArgument(format!(
                "unsupported datastore endpoint {e:?}: use http://HOST:2379[,…] for etcd or sqlite:///path"
            ))),
        }
    }
}

/// The store every component above uses.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    hub: Arc<hub::Hub>,
}

impl Store {
    pub async fn open(config: &StoreConfig) -> Result<Store> {
        Self::open_with(config, HubConfig::default()).await
    }

    pub async fn open_with(config: &StoreConfig, hub: HubConfig) -> Result<Store> {
        Ok(Self::with_backend(Self::connect(config).await?, hub))
    }

    /// The backend alone, for what is read before the store is (the
    /// cluster's bootstrap data, which holds the encryption configuration).
    pub async fn connect(config: &StoreConfig) -> Result<Arc<dyn Backend>> {
        Ok(match config {
            StoreConfig::Sqlite { path } => Arc::new(sqlite::SqliteBackend::open(path).await?),
            StoreConfig::Etcd { endpoints, prefix } => Arc::new(etcd::EtcdBackend::connect(endpoints, prefix).await?),
        })
    }

    /// A store whose values pass through `transformer` on their way to the
    /// backend and back (encryption at rest).
    pub async fn open_transformed(config: &StoreConfig, transformer: Arc<dyn Transformer>) -> Result<Store> {
        Ok(Self::transformed(Self::connect(config).await?, transformer))
    }

    pub fn transformed(backend: Arc<dyn Backend>, transformer: Arc<dyn Transformer>) -> Store {
        Self::with_backend(Arc::new(transform::Transformed { inner: backend, transformer }), HubConfig::default())
    }

    pub fn with_backend(backend: Arc<dyn Backend>, hub: HubConfig) -> Store {
        Store {
            hub: Arc::new(hub::Hub::new(backend.clone(), hub)),
            backend,
        }
    }

    /// The key's value at `revision`, or the latest when `None`.
    pub async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        check_key(key)?;
        self.backend.get(key, revision).await
    }

    /// Keeps every object under `prefix` (a directory: it ends in `/`) in
    /// memory from the first list below it on, so that lists there are
    /// served from memory (a *watch cache*), except those at an exact
    /// revision or continuing a page.
    pub fn cache(&self, prefix: &str) {
        self.hub.cache(prefix);
    }

    /// The key's value from the watch cache when one covers it, else from
    /// the backend. The cache can be a little behind: for reads that
    /// verify what they read, such as the first try of a conditional
    /// update, which re-reads the backend on a conflict.
    pub async fn get_recent(&self, key: &str) -> Result<Option<KeyValue>> {
        check_key(key)?;
        match self.hub.get_cached(key).await? {
            Some(cached) => Ok(cached),
            None => self.backend.get(key, None).await,
        }
    }

    /// Keys under `prefix` in key order, one consistent snapshot across pages.
    pub async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListPage> {
        check_key(prefix)?;
        if opts.revision.is_none() && opts.continue_token.is_none() {
            if let Some(range) = self.hub.range_cached(prefix, opts.min_revision, opts.limit).await? {
                return Ok(page(prefix, range));
            }
        }
        let end = prefix_end(prefix);
        let (start, revision) = match &opts.continue_token {
            Some(token) => {
                if opts.revision.is_some() {
                    return Err(Error::InvalidArgument(
                        "a revision cannot be given together with a continue token".into(),
                    ));
                }
                continuation::decode(token, prefix).map(|(rev, start)| (start, rev))?
            }
            None => (prefix.to_string(), opts.revision),
        };
        let resp = self
            .backend
            .range(RangeRequest {
                start: &start,
                end: &end,
                revision,
                limit: opts.limit,
            })
            .await?;
        if let Some(min) = opts.min_revision.filter(|min| *min > resp.revision) {
            return Err(Error::FutureRevision { requested: min, current: resp.revision });
        }
        Ok(page(prefix, resp))
    }

    /// Creates `key`; fails with [`Error::AlreadyExists`] if it exists.
    pub async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        check_key(key)?;
        check_value(&value)?;
        self.backend.create(key, value).await
    }

    /// Replaces the value of an existing key, if its modification revision is
    /// `expected` (when given). Returns the new revision.
    pub async fn update(&self, key: &str, value: Bytes, expected: Option<Revision>) -> Result<Revision> {
        check_key(key)?;
        check_value(&value)?;
        self.backend.update(key, value, expected).await
    }

    /// Deletes an existing key, if its modification revision is `expected`
    /// (when given). Returns the delete's revision and the deleted value.
    pub async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        check_key(key)?;
        self.backend.delete(key, expected).await
    }

    /// Every change under `prefix` after revision `after`, exactly once, in
    /// order. `after` below the compacted revision fails with
    /// [`Error::Compacted`]. One edge differs between backends: etcd also
    /// serves `after` = compacted revision − 1 (it keeps the events at the
    /// compacted revision), SQLite does not; from the compacted revision on
    /// both behave the same.
    pub async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        check_key(prefix)?;
        self.hub.watch(prefix, after).await
    }

    pub async fn current_revision(&self) -> Result<Revision> {
        self.backend.current_revision().await
    }

    /// Forgets history before `revision`: reads and watches below it fail
    /// with [`Error::Compacted`] from now on; space is freed in the background.
    pub async fn compact(&self, revision: Revision) -> Result<()> {
        self.backend.compact(revision).await
    }

    /// Compacts every `interval` to the revision seen one interval earlier,
    /// as upstream's apiserver does (every 5 minutes by default): watches
    /// and continue tokens stay valid for at least one interval. The task
    /// ends when the last clone of the store is dropped.
    pub fn spawn_compactor(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(&self.backend);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            let mut seen: Option<Revision> = None;
            loop {
                ticks.tick().await;
                let Some(backend) = store.upgrade() else { return };
                if let Some(rev) = seen.filter(|r| *r > 0) {
                    match backend.compact(rev).await {
                        Ok(()) => tracing::debug!(revision = rev, "compacted"),
                        Err(e) => tracing::warn!(revision = rev, "compaction failed: {e}"),
                    }
                }
                seen = backend.current_revision().await.ok();
            }
        })
    }

    /// How long a watch may stay silent before it gets a progress batch.
    pub fn progress_interval(&self) -> Duration {
        self.hub.progress_interval()
    }
}

/// A list page from a range under `prefix`, with the token for the rest.
fn page(prefix: &str, range: RangeResponse) -> ListPage {
    let continue_token = match (range.more, range.items.last()) {
        (true, Some(last)) => Some(continuation::encode(range.revision, prefix, &last.key)),
        _ => None,
    };
    ListPage {
        remaining: continue_token.as_ref().and(range.remaining),
        items: range.items,
        revision: range.revision,
        continue_token,
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "key {key:?} must be non-empty and must not contain NUL"
        )));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::TooLarge {
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// The smallest key greater than every key starting with `prefix`.
pub(crate) fn prefix_end(prefix: &str) -> String {
    // Keys compare bytewise. Bumping the last byte, as etcd does, keeps a
    // string valid UTF-8 only while that byte is ASCII (Skiff's keys are ASCII
    // paths). Otherwise append the largest scalar value: that bound misses
    // only keys continuing with U+10FFFF, a noncharacter.
    match prefix.as_bytes().last() {
        Some(&last) if last < 0x7f => {
            let mut end = prefix[..prefix.len() - 1].to_string();
            end.push((last + 1) as char);
            end
        }
        _ => format!("{prefix}\u{10FFFF}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bumps_last_byte() {
        assert_eq!(prefix_end("/registry/pods/"), "/registry/pods0");
        assert_eq!(prefix_end("a"), "b");
        let end = prefix_end("/x/\u{e9}");
        assert!(end.as_str() > "/x/\u{e9}zzz" && end.as_str() < "/x0");
    }

    #[test]
    fn keys_and_values_are_checked() {
        assert!(check_key("").is_err());
        assert!(check_key("/a\0b").is_err());
        assert!(check_key("/a/b").is_ok());
        assert!(check_value(&vec![0u8; MAX_VALUE_BYTES]).is_ok());
        assert!(matches!(
            check_value(&vec![0u8; MAX_VALUE_BYTES + 1]),
            Err(Error::TooLarge { .. })
        ));
    }
}

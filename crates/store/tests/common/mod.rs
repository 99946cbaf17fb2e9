//! A store under test, on either backend, that can be restarted.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::testing::EtcdServer;
use std::sync::Arc;

use skiff_store::etcd::EtcdBackend;
use skiff_store::sqlite::SqliteBackend;
use skiff_store::{Backend, Event, EventKind, HubConfig, Revision, Store, StoreConfig, Watch, WatchBatch};

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Sqlite,
    Etcd,
}

pub struct Harness {
    pub kind: Kind,
    pub store: Store,
    /// The backend under the store, for tests of the raw backend contract.
    pub backend: Arc<dyn Backend>,
    pub config: StoreConfig,
    pub hub: HubConfig,
    pub etcd: Option<EtcdServer>,
    _dir: tempfile::TempDir,
}

pub fn test_hub() -> HubConfig {
    HubConfig {
        progress_interval: Duration::from_millis(200),
        ..HubConfig::default()
    }
}

impl Harness {
    pub async fn new(kind: Kind) -> Harness {
        Self::with_hub(kind, test_hub()).await
    }

    pub async fn with_hub(kind: Kind, hub: HubConfig) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let (config, etcd) = match kind {
            Kind::Sqlite => (
                StoreConfig::Sqlite {
                    path: dir.path().join("state.db"),
                },
                None,
            ),
            Kind::Etcd => {
                let etcd = EtcdServer::start().expect("etcd starts (is etcd-server installed?)");
                (
                    StoreConfig::Etcd {
                        endpoints: vec![etcd.endpoint()],
                        // The default, as `skiff server` uses it.
                        prefix: String::new(),
                    },
                    Some(etcd),
                )
            }
        };
        let backend = open_backend(&config).await;
        let store = Store::with_backend(backend.clone(), hub.clone());
        Harness {
            kind,
            store,
            backend,
            config,
            hub,
            etcd,
            _dir: dir,
        }
    }

    /// Closes the store and opens it again on the same data; for etcd the
    /// etcd server itself is restarted too.
    pub async fn restart(&mut self) {
        if let Some(etcd) = &mut self.etcd {
            etcd.restart().unwrap();
        }
        self.backend = open_backend(&self.config).await;
        self.store = Store::with_backend(self.backend.clone(), self.hub.clone());
    }

    /// Another store on the same data (for etcd: another Skiff server).
    pub async fn second(&self) -> Store {
        Store::open_with(&self.config, self.hub.clone()).await.unwrap()
    }
}

async fn open_backend(config: &StoreConfig) -> Arc<dyn Backend> {
    match config {
        StoreConfig::Sqlite { path } => Arc::new(SqliteBackend::open(path).await.unwrap()),
        StoreConfig::Etcd { endpoints, prefix } => Arc::new(EtcdBackend::try_connect(endpoints, prefix).await.unwrap()),
    }
}

/// Declares one async test per backend for a `async fn(Kind)` body.
#[macro_export]
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() { super::$name($crate::common::Kind::Sqlite).await }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() { super::$name($crate::common::Kind::Etcd).await }
            )*
        }
    };
}

pub fn val(s: impl Into<String>) -> Bytes {
    Bytes::from(s.into())
}

/// A model of the key space built from acknowledged writes, to compare
/// reads and watches against.
#[derive(Default, Clone)]
pub struct Model {
    /// (revision, key, value after the write; None for a delete)
    pub ops: Vec<(Revision, String, Option<Bytes>)>,
}

impl Model {
    pub fn record(&mut self, rev: Revision, key: &str, value: Option<Bytes>) {
        self.ops.push((rev, key.to_string(), value));
    }

    pub fn sort(&mut self) {
        self.ops.sort_by_key(|o| o.0);
    }

    /// Key → value under `prefix` at revision `at`.
    pub fn state_at(&self, prefix: &str, at: Revision) -> BTreeMap<String, Bytes> {
        let mut ops: Vec<_> = self.ops.iter().filter(|o| o.0 <= at).collect();
        ops.sort_by_key(|o| o.0);
        let mut state = BTreeMap::new();
        for (_, key, value) in ops {
            if !key.starts_with(prefix) {
                continue;
            }
            match value {
                Some(v) => state.insert(key.clone(), v.clone()),
                None => state.remove(key),
            };
        }
        state
    }

    /// The events a watch of `prefix` after `after` must deliver, in order.
    pub fn events_after(&self, prefix: &str, after: Revision) -> Vec<(Revision, String, Option<Bytes>, Option<Bytes>)> {
        let mut ops = self.ops.clone();
        ops.sort_by_key(|o| o.0);
        let mut current: BTreeMap<String, Bytes> = BTreeMap::new();
        let mut out = Vec::new();
        for (rev, key, value) in ops {
            let prev = current.get(&key).cloned();
            match &value {
                Some(v) => current.insert(key.clone(), v.clone()),
                None => current.remove(&key),
            };
            if rev > after && key.starts_with(prefix) {
                out.push((rev, key, value, prev));
            }
        }
        out
    }
}

/// An event in the shape the model produces.
pub fn shape(e: &Event) -> (Revision, String, Option<Bytes>, Option<Bytes>) {
    (
        e.kv.mod_revision,
        e.kv.key.clone(),
        match e.kind {
            EventKind::Put => Some(e.kv.value.clone()),
            EventKind::Delete => None,
        },
        e.prev.as_ref().map(|p| p.value.clone()),
    )
}

/// Reads a watch until it has delivered everything up to `until`.
pub async fn collect_until(watch: &mut Watch, until: Revision) -> Vec<Event> {
    let mut events = Vec::new();
    let mut seen = 0;
    while seen < until {
        let next = tokio::time::timeout(Duration::from_secs(20), watch.next()).await;
        let batch: WatchBatch = match next {
            Ok(Some(Ok(b))) => b,
            Ok(Some(Err(e))) => panic!("watch failed after {seen}: {e}"),
            Ok(None) => panic!("watch ended at {seen}, wanted {until}"),
            Err(_) => panic!("watch stalled at {seen}, wanted {until}"),
        };
        for e in &batch.events {
            assert!(e.kv.mod_revision > seen, "event {} out of order after {seen}", e.kv.mod_revision);
            seen = e.kv.mod_revision;
        }
        seen = seen.max(batch.revision);
        events.extend(batch.events);
    }
    events
}

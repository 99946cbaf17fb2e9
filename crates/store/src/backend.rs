use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use crate::{KeyValue, Result, Revision, Watch};

/// A range read: keys in `[start, end)` at one revision.
#[derive(Debug, Clone, Copy)]
pub struct RangeRequest<'a> {
    pub start: &'a str,
    pub end: &'a str,
    /// `None` reads the latest revision.
    pub revision: Option<Revision>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct RangeResponse {
    pub items: Vec<KeyValue>,
    /// The revision the range was read at.
    pub revision: Revision,
    /// More keys follow the last item.
    pub more: bool,
    /// How many keys follow the last item, when known.
    pub remaining: Option<i64>,
}

/// What a storage engine must provide. Keys and values are validated by
/// [`crate::Store`] before they get here; fan-out of watches is done above
/// too, so `watch` is called about once per watched prefix.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>>;

    async fn range(&self, req: RangeRequest<'_>) -> Result<RangeResponse>;

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision>;

    async fn update(&self, key: &str, value: Bytes, expected: Option<Revision>) -> Result<Revision>;

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)>;

    async fn current_revision(&self) -> Result<Revision>;

    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Changes under `prefix` after `after`, in order, each exactly once,
    /// with progress batches (no events) as `progress` asks. Ends with
    /// [`crate::Error::Unavailable`] when the backend is lost; the caller
    /// reconnects from the last revision it saw.
    async fn watch(&self, prefix: &str, after: Revision, progress: Progress) -> Result<Watch>;

    /// Whether watches answer [`Progress::requested`] with a revision that
    /// covers every event sent before it. Without that, a watch cache
    /// cannot tell it is current and consistent lists skip it.
    fn answers_progress_requests(&self) -> bool;
}

/// When a watch sends progress batches: after `idle` without events, and
/// soon after each `requested` notification (as etcd's RequestProgress),
/// which the watch cache uses to learn that it has seen every change up to
/// a revision although none of them was under its prefix.
#[derive(Clone)]
pub struct Progress {
    pub idle: Duration,
    pub requested: Arc<Notify>,
}

impl Progress {
    pub fn every(idle: Duration) -> Progress {
        Progress { idle, requested: Arc::default() }
    }
}

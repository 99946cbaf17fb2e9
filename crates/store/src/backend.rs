use async_trait::async_trait;
use bytes::Bytes;

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
    /// with progress batches (no events) at least every `progress` while
    /// idle. Ends with [`crate::Error::Unavailable`] when the backend is lost;
    /// the caller reconnects from the last revision it saw.
    async fn watch(&self, prefix: &str, after: Revision, progress: std::time::Duration) -> Result<Watch>;
}

//! Values transformed on their way to and from the backend, under every
//! cache and watch: what encryption at rest plugs into, as upstream's
//! storage transformers sit below its watch cache.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::backend::{Backend, Progress, RangeRequest, RangeResponse};
use crate::{Error, KeyValue, Result, Revision, Watch};

/// Turns a value into what is stored under `key`, and back.
pub trait Transformer: Send + Sync + 'static {
    fn to_storage(&self, key: &str, value: Bytes) -> std::result::Result<Bytes, String>;
    fn from_storage(&self, key: &str, value: Bytes) -> std::result::Result<Bytes, String>;
}

pub(crate) struct Transformed {
    pub inner: Arc<dyn Backend>,
    pub transformer: Arc<dyn Transformer>,
}

impl Transformed {
    fn write(&self, key: &str, value: Bytes) -> Result<Bytes> {
        self.transformer.to_storage(key, value).map_err(|e| Error::Internal(format!("transforming {key:?} for storage: {e}")))
    }

    fn read(&self, mut kv: KeyValue) -> Result<KeyValue> {
        if !kv.value.is_empty() {
            kv.value = self.transformer.from_storage(&kv.key, kv.value).map_err(|e| Error::Internal(format!("reading {:?} from storage: {e}", kv.key)))?;
        }
        Ok(kv)
    }
}

#[async_trait]
impl Backend for Transformed {
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        self.inner.get(key, revision).await?.map(|kv| self.read(kv)).transpose()
    }

    async fn range(&self, req: RangeRequest<'_>) -> Result<RangeResponse> {
        let mut response = self.inner.range(req).await?;
        response.items = response.items.into_iter().map(|kv| self.read(kv)).collect::<Result<_>>()?;
        Ok(response)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        self.inner.create(key, self.write(key, value)?).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: Option<Revision>) -> Result<Revision> {
        self.inner.update(key, self.write(key, value)?, expected).await.map_err(|e| match e {
            Error::Conflict { key, expected, current } => match self.read(*current) {
                Ok(current) => Error::Conflict { key, expected, current: Box::new(current) },
                Err(e) => e,
            },
            other => other,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        let (revision, deleted) = self.inner.delete(key, expected).await?;
        Ok((revision, self.read(deleted)?))
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn watch(&self, prefix: &str, after: Revision, progress: Progress) -> Result<Watch> {
        let transformer = self.transformer.clone();
        let inner = self.inner.watch(prefix, after, progress).await?;
        let reader = Transformed { inner: self.inner.clone(), transformer };
        Ok(inner
            .map(move |batch| {
                let mut batch = batch?;
                for event in &mut batch.events {
                    event.kv = reader.read(std::mem::take(&mut event.kv))?;
                    if let Some(prev) = event.prev.take() {
                        event.prev = Some(reader.read(prev)?);
                    }
                }
                Ok(batch)
            })
            .boxed())
    }

    fn answers_progress_requests(&self) -> bool {
        self.inner.answers_progress_requests()
    }
}

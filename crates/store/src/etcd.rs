//! etcd v3 backend: revisions, compaction and watches are etcd's own; each
//! conditional write is one etcd transaction, as upstream's apiserver does.
//! Several Skiff servers can share one etcd, each seeing the others' writes
//! through its watches.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, KvClient, Txn, TxnOp,
    TxnOpResponse, TxnResponse, WatchClient, WatchOptions,
};

use crate::backend::{Backend, Progress, RangeRequest, RangeResponse};
use crate::{Error, Event, EventKind, KeyValue, Result, Revision, Watch, WatchBatch, MAX_VALUE_BYTES};

/// Responses can hold many values; like the upstream apiserver, do not cap them.
const MAX_MESSAGE: usize = i32::MAX as usize;

pub struct EtcdBackend {
    endpoints: Vec<String>,
    prefix: String,
    kv: KvClient,
    watch: WatchClient,
    /// The server orders requested progress after pending events.
    ordered_progress: bool,
}

impl EtcdBackend {
    /// Connects, waiting for etcd as long as it takes: each failed attempt is
    /// logged with the reason and retried with exponential backoff.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdBackend> {
        let mut backoff = Duration::from_millis(250);
        loop {
            match Self::try_connect(endpoints, prefix).await {
                Ok(backend) => return Ok(backend),
                Err(Error::Unavailable(e)) => {
                    tracing::error!("{e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt: connects and checks etcd answers.
    pub async fn try_connect(endpoints: &[String], prefix: &str) -> Result<EtcdBackend> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let unreachable = |e: etcd_client::Error| {
            Error::Unavailable(format!("cannot reach etcd at {}: {e}", endpoints.join(",")))
        };
        let mut client = Client::connect(endpoints, Some(options)).await.map_err(unreachable)?;
        // The member answering speaks for the cluster: members of one
        // cluster run one version outside of upgrades.
        let version = client.status().await.map_err(unreachable)?.version().to_string();
        let backend = EtcdBackend {
            endpoints: endpoints.to_vec(),
            prefix: prefix.to_string(),
            kv: client.kv_client().max_decoding_message_size(MAX_MESSAGE),
            watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
            ordered_progress: orders_progress(&version),
        };
        let mut kv = backend.kv.clone();
        kv.get(backend.full("/"), Some(GetOptions::new().with_count_only()))
            .await
            .map_err(unreachable)?;
        Ok(backend)
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn kv_of(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        decode_kv(&self.prefix, kv)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.kv.clone().txn(txn).await.map_err(|e| classify(e, None))
    }

    /// The key's value from the `else` branch of a failed transaction.
    fn current_from(&self, resp: &TxnResponse) -> Result<Option<KeyValue>> {
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                return get.kvs().first().map(|kv| self.kv_of(kv)).transpose();
            }
        }
        Ok(None)
    }

    /// A conditional write of an existing key: `then` runs if the key's
    /// modification revision is `expected` (or it merely exists).
    async fn write_existing(&self, key: &str, expected: Option<Revision>, then: TxnOp) -> Result<TxnResponse> {
        let full = self.full(key);
        let condition = match expected {
            Some(rev) => Compare::mod_revision(full.clone(), CompareOp::Equal, rev),
            None => Compare::mod_revision(full.clone(), CompareOp::Greater, 0),
        };
        let resp = self
            .txn(Txn::new().when([condition]).and_then([then]).or_else([TxnOp::get(full, None)]))
            .await?;
        if resp.succeeded() {
            return Ok(resp);
        }
        match (self.current_from(&resp)?, expected) {
            (None, _) => Err(Error::NotFound { key: key.into() }),
            (Some(current), Some(expected)) => Err(Error::Conflict {
                key: key.into(),
                expected,
                current: Box::new(current),
            }),
            (Some(_), None) => Err(Error::Internal("etcd transaction failed on an existing key".into())),
        }
    }
}

/// Whether etcd at `version` sends a requested progress notification only
/// after the events before it. Older servers can send it first (etcd issue
/// 15220), which would let a cache claim a revision it has not seen; these
/// are the releases upstream's apiserver requires for consistent lists from
/// its cache.
fn orders_progress(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    match (major, minor) {
        (3, 4) => patch >= 31,
        (3, 5) => patch >= 13,
        (3, m) => m >= 6,
        (m, _) => m > 3,
    }
}

fn decode_kv(prefix: &str, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = std::str::from_utf8(kv.key())
        .ok()
        .and_then(|k| k.strip_prefix(prefix))
        .ok_or_else(|| Error::Internal(format!("etcd returned a key outside {prefix:?}")))?;
    Ok(KeyValue {
        key: key.to_string(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn revision_of(resp: &TxnResponse) -> Result<Revision> {
    resp.header()
        .map(|h| h.revision())
        .ok_or_else(|| Error::Internal("etcd response without header".into()))
}

/// Maps an etcd client error; `requested` is the revision a read asked for.
fn classify(e: etcd_client::Error, requested: Option<Revision>) -> Error {
    use tonic::Code;
    let requested = requested.unwrap_or_default();
    match &e {
        etcd_client::Error::GRpcStatus(status) => {
            let msg = status.message();
            if msg.contains("required revision has been compacted") {
                Error::Compacted {
                    requested,
                    compacted: 0,
                }
            } else if msg.contains("required revision is a future revision") {
                Error::FutureRevision { requested, current: 0 }
            } else if msg.contains("request is too large") {
                Error::TooLarge {
                    size: 0,
                    limit: MAX_VALUE_BYTES,
                }
            } else {
                match status.code() {
                    Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::ResourceExhausted => {
                        Error::Unavailable(format!("etcd: {msg}"))
                    }
                    // tonic reports a refused, reset or broken connection as Unknown.
                    Code::Unknown if is_connection_failure(msg) => Error::Unavailable(format!("etcd: {msg}")),
                    _ => Error::Internal(format!("etcd: {e}")),
                }
            }
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) | etcd_client::Error::WatchError(_) => {
            Error::Unavailable(format!("etcd: {e}"))
        }
        _ => Error::Internal(format!("etcd: {e}")),
    }
}

fn is_connection_failure(msg: &str) -> bool {
    ["transport", "h2 protocol", "connection", "broken pipe"]
        .iter()
        .any(|m| msg.to_ascii_lowercase().contains(m))
}

#[async_trait]
impl Backend for EtcdBackend {
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        let resp = self
            .kv
            .clone()
            .get(self.full(key), Some(GetOptions::new().with_revision(revision.unwrap_or(0))))
            .await
            .map_err(|e| classify(e, revision))?;
        resp.kvs().first().map(|kv| self.kv_of(kv)).transpose()
    }

    async fn range(&self, req: RangeRequest<'_>) -> Result<RangeResponse> {
        let mut options = GetOptions::new()
            .with_range(self.full(req.end))
            .with_revision(req.revision.unwrap_or(0));
        if let Some(limit) = req.limit {
            // etcd treats a limit of 0 as "no limit".
            options = options.with_limit(limit.max(1) as i64);
        }
        let resp = self
            .kv
            .clone()
            .get(self.full(req.start), Some(options))
            .await
            .map_err(|e| classify(e, req.revision))?;
        let mut items = resp.kvs().iter().map(|kv| self.kv_of(kv)).collect::<Result<Vec<_>>>()?;
        let mut more = resp.more();
        if req.limit == Some(0) {
            more = !items.is_empty();
            items.clear();
        }
        let revision = match req.revision {
            Some(r) => r,
            None => resp.header().map(|h| h.revision()).unwrap_or_default(),
        };
        Ok(RangeResponse {
            remaining: more.then(|| resp.count() - items.len() as i64),
            items,
            revision,
            more,
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        let full = self.full(key);
        let resp = self
            .txn(
                Txn::new()
                    .when([Compare::mod_revision(full.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(full, value.to_vec(), None)]),
            )
            .await?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists { key: key.into() });
        }
        revision_of(&resp)
    }

    async fn update(&self, key: &str, value: Bytes, expected: Option<Revision>) -> Result<Revision> {
        let put = TxnOp::put(self.full(key), value.to_vec(), None);
        revision_of(&self.write_existing(key, expected, put).await?)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        let delete = TxnOp::delete(self.full(key), Some(DeleteOptions::new().with_prev_key()));
        let resp = self.write_existing(key, expected, delete).await?;
        let prev = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(d) => d.prev_kvs().first().cloned(),
            _ => None,
        });
        let prev = prev.ok_or_else(|| Error::Internal("etcd delete returned no previous value".into()))?;
        Ok((revision_of(&resp)?, self.kv_of(&prev)?))
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .kv
            .clone()
            .get(self.full("/"), Some(GetOptions::new().with_count_only()))
            .await
            .map_err(|e| classify(e, None))?;
        resp.header()
            .map(|h| h.revision())
            .ok_or_else(|| Error::Internal("etcd response without header".into()))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.kv.clone().compact(revision, None).await.map_err(|e| classify(e, Some(revision))) {
            // Compacting to a revision already compacted is a no-op, as on SQLite.
            Ok(_) | Err(Error::Compacted { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn answers_progress_requests(&self) -> bool {
        self.ordered_progress
    }

    async fn watch(&self, prefix: &str, after: Revision, progress: Progress) -> Result<Watch> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(after + 1)
            .with_prev_key()
            .with_progress_notify();
        let stream = self
            .watch
            .clone()
            .watch(self.full(prefix), Some(options))
            .await
            .map_err(|e| classify(e, Some(after)))?;
        let (mut requests, mut responses) = stream.split();
        let key_prefix = self.prefix.clone();
        let ordered_progress = self.ordered_progress;
        Ok(Box::pin(async_stream::try_stream! {
            let mut last = after;
            let mut idle = tokio::time::interval_at(tokio::time::Instant::now() + progress.idle, progress.idle);
            loop {
                // `?` is not rewritten inside select!, so pick first, act after.
                let message = tokio::select! {
                    m = responses.message() => Some(m),
                    _ = idle.tick() => None,
                    _ = progress.requested.notified(), if ordered_progress => None,
                };
                let Some(message) = message else {
                    requests.request_progress().await.map_err(|e| classify(e, None))?;
                    continue;
                };
                let resp = match message.map_err(|e| classify(e, Some(last)))? {
                    Some(resp) => resp,
                    None => Err(Error::Unavailable("etcd ended the watch".into()))?,
                };
                if resp.compact_revision() > 0 {
                    Err(Error::Compacted { requested: last, compacted: resp.compact_revision() })?;
                }
                if resp.canceled() {
                    Err(Error::Internal(format!("etcd cancelled the watch: {}", resp.cancel_reason())))?;
                }
                if resp.created() {
                    continue;
                }
                let mut events = Vec::with_capacity(resp.events().len());
                for e in resp.events() {
                    let kv = e.kv().ok_or_else(|| Error::Internal("etcd event without kv".into()))?;
                    events.push(Event {
                        kind: match e.event_type() {
                            EventType::Put => EventKind::Put,
                            EventType::Delete => EventKind::Delete,
                        },
                        kv: decode_kv(&key_prefix, kv)?,
                        prev: e.prev_kv().map(|p| decode_kv(&key_prefix, p)).transpose()?,
                        memo: Default::default(),
                    });
                }
                match events.last() {
                    Some(newest) => last = newest.revision(),
                    // A progress notification: nothing is pending up to its revision.
                    None => last = last.max(resp.header().map(|h| h.revision()).unwrap_or(0)),
                }
                idle.reset();
                yield WatchBatch { events, revision: last };
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_is_ordered_from_the_releases_upstream_names() {
        for (version, ordered) in [("3.4.23", false), ("3.4.31", true), ("3.5.12", false), ("3.5.13", true), ("3.6.0", true), ("3.3.27", false), ("4.0.0", true), ("garbage", false)] {
            assert_eq!(super::orders_progress(version), ordered, "{version}");
        }
    }
}

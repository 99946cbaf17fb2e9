//! Watch fan-out. Each watched prefix gets one backend watch (a *feed*),
//! shared by every watcher at or below that prefix:
//!
//! - the feed publishes each batch once into a bounded broadcast ring; every
//!   watcher reads it at its own pace, and one that falls more than the ring
//!   behind is ended with [`Error::Expired`] instead of holding up the feed
//!   or growing memory;
//! - the feed keeps a bounded history of recent batches, so a watcher that
//!   starts from a recent revision joins without a backend read;
//! - a watcher starting further back reads its own backend watch until it
//!   reaches the feed's history, then switches to the feed.
//!
//! A feed can also be a *watch cache*: it starts from a full read of its
//! prefix and keeps every object under it, so lists are served from memory.
//! A consistent list first learns the store's current revision, then waits
//! until the cache has seen it, asking the backend for progress (etcd's
//! RequestProgress) when no event under the prefix would tell.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::broadcast;

use crate::backend::{Backend, Progress, RangeRequest, RangeResponse};
use crate::{prefix_end, Error, EventKind, KeyValue, Result, Revision, Watch, WatchBatch};

/// How long a list waits for the cache to catch up before it reads the
/// backend instead (upstream waits as long).
const CATCH_UP: Duration = Duration::from_secs(3);
/// How often a waiting list asks the backend for progress again (etcd
/// answers a request only while the watch has nothing else pending).
const PROGRESS_RETRY: Duration = Duration::from_millis(100);
/// Keys read per backend request while a cache fills.
const FILL_PAGE: usize = 10_000;

#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Events of recent batches each feed keeps for watchers joining late.
    pub history_events: usize,
    /// Bytes of values those batches may hold.
    pub history_bytes: usize,
    /// Batches a watcher may be behind its feed before it is expired.
    pub watcher_buffer: usize,
    /// An idle watcher gets a progress batch this often.
    pub progress_interval: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            history_events: 10_000,
            history_bytes: 16 << 20,
            watcher_buffer: 1024,
            progress_interval: Duration::from_secs(1),
        }
    }
}

pub(crate) struct Hub {
    backend: Arc<dyn Backend>,
    config: HubConfig,
    feeds: Mutex<Vec<Weak<Feed>>>,
    /// Prefixes whose objects are cached, and each one's cache once started
    /// (the async lock keeps concurrent first lists from filling it twice).
    caches: Mutex<HashMap<String, CacheSlot>>,
}

/// A cache once started; the lock is held while it fills.
type CacheSlot = Arc<tokio::sync::Mutex<Option<Arc<Feed>>>>;

#[derive(Clone)]
enum FeedMsg {
    Batch(Arc<WatchBatch>),
    // Boxed: every slot of every ring is as big as the largest message.
    Failed(Box<Error>),
}

/// One backend watch and what it has delivered. Dropped (and its task
/// stopped) when the last watcher using it goes away.
struct Feed {
    prefix: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// What a feed's pump and its readers share.
struct Shared {
    state: Mutex<FeedState>,
    /// The feed's revision, for lists waiting on it.
    revision: tokio::sync::watch::Sender<Revision>,
    progress: Progress,
}

struct FeedState {
    ring: broadcast::Sender<FeedMsg>,
    /// Every batch after `base` is in `history`.
    history: VecDeque<Arc<WatchBatch>>,
    history_events: usize,
    history_bytes: usize,
    base: Revision,
    /// Every change up to here has been published.
    revision: Revision,
    failed: bool,
    /// Every object under the prefix as of `revision`, when the feed is a
    /// watch cache.
    objects: Option<BTreeMap<String, KeyValue>>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Feed {
    /// A receiver for new batches plus the history after `after`, if the
    /// history reaches back that far.
    fn join(&self, after: Revision) -> Option<(broadcast::Receiver<FeedMsg>, VecDeque<Arc<WatchBatch>>)> {
        let state = self.shared.state.lock().unwrap();
        if state.failed || after < state.base {
            return None;
        }
        let backlog = state.history.iter().filter(|b| b.revision > after).cloned().collect();
        Some((state.ring.subscribe(), backlog))
    }

    fn usable(&self) -> bool {
        !self.shared.state.lock().unwrap().failed
    }

    /// Waits until the feed has seen every change up to `target`; false if
    /// it has not within `patience` or has failed.
    async fn caught_up(&self, target: Revision, patience: Duration) -> bool {
        let mut revision = self.shared.revision.subscribe();
        let deadline = tokio::time::Instant::now() + patience;
        let mut retry = tokio::time::interval(PROGRESS_RETRY);
        loop {
            if *revision.borrow_and_update() >= target {
                return true;
            }
            if !self.usable() {
                return false;
            }
            tokio::select! {
                changed = revision.changed() => if changed.is_err() { return false },
                _ = retry.tick() => self.shared.progress.requested.notify_one(),
                _ = tokio::time::sleep_until(deadline) => return false,
            }
        }
    }

    /// The cached keys under `prefix`, at most `limit`, as a backend range
    /// at the cache's revision would return them.
    fn range(&self, prefix: &str, limit: Option<usize>) -> RangeResponse {
        let state = self.shared.state.lock().unwrap();
        let objects = state.objects.as_ref().expect("only caches are ranged");
        let mut keys = objects.range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Excluded(prefix_end(prefix).as_str())));
        let items: Vec<KeyValue> = keys.by_ref().take(limit.unwrap_or(usize::MAX)).map(|(_, kv)| kv.clone()).collect();
        let remaining = keys.count();
        RangeResponse {
            items,
            revision: state.revision,
            more: remaining > 0,
            remaining: Some(remaining as i64),
        }
    }
}

impl Hub {
    pub fn new(backend: Arc<dyn Backend>, config: HubConfig) -> Hub {
        Hub {
            backend,
            config,
            feeds: Mutex::new(Vec::new()),
            caches: Mutex::default(),
        }
    }

    /// Keeps the objects under `prefix` (a directory: it ends in `/`) in
    /// memory from its first list on.
    pub fn cache(&self, prefix: &str) {
        debug_assert!(prefix.ends_with('/'), "a cached prefix is a directory: {prefix}");
        self.caches.lock().unwrap().entry(prefix.to_string()).or_default();
    }

    /// Keys under `prefix` from memory, if a cache covers it: at least as
    /// recent as `min`, or (`None`) as recent as the store is now. `None`
    /// back means "read the backend": nothing is cached there, or the cache
    /// did not catch up in time.
    pub async fn range_cached(&self, prefix: &str, min: Option<Revision>, limit: Option<usize>) -> Result<Option<RangeResponse>> {
        let Some(cache) = self.cache_for(prefix).await? else {
            return Ok(None);
        };
        let cached = *cache.shared.revision.borrow();
        let target = match min {
            Some(min) if min <= cached => min,
            _ => {
                if !self.backend.answers_progress_requests() {
                    // Only events would tell the cache it is current: a
                    // read from the backend is quicker than waiting.
                    return Ok(None);
                }
                let current = self.backend.current_revision().await?;
                match min {
                    Some(min) if min > current => return Err(Error::FutureRevision { requested: min, current }),
                    Some(min) => min,
                    None => current,
                }
            }
        };
        if !cache.caught_up(target, CATCH_UP).await {
            tracing::warn!(%prefix, target, "watch cache behind; reading the store");
            return Ok(None);
        }
        Ok(Some(cache.range(prefix, limit)))
    }

    /// The key as the cache covering it holds it, which may be a little
    /// behind the store; `None` when no cache covers it. A key the cache
    /// does not hold is `Some(None)`.
    pub async fn get_cached(&self, key: &str) -> Result<Option<Option<KeyValue>>> {
        let Some(cache) = self.cache_for(key).await? else { return Ok(None) };
        let state = cache.shared.state.lock().unwrap();
        Ok(Some(state.objects.as_ref().and_then(|o| o.get(key)).cloned()))
    }

    /// The started cache covering `prefix`, starting it if need be.
    async fn cache_for(&self, prefix: &str) -> Result<Option<Arc<Feed>>> {
        let slot = {
            let caches = self.caches.lock().unwrap();
            // The cache's root is one of the directories `prefix` is in.
            let mut dirs = prefix.match_indices('/').map(|(i, _)| &prefix[..=i]);
            dirs.find_map(|dir| caches.get_key_value(dir)).map(|(root, slot)| (root.clone(), slot.clone()))
        };
        let Some((root, slot)) = slot else { return Ok(None) };
        let mut slot = slot.lock().await;
        if let Some(feed) = slot.as_ref().filter(|f| f.usable()) {
            return Ok(Some(feed.clone()));
        }
        let feed = self.fill(&root).await?;
        *slot = Some(feed.clone());
        Ok(Some(feed))
    }

    /// Reads every object under `prefix` at one revision and starts a feed
    /// from there that keeps them current.
    async fn fill(&self, prefix: &str) -> Result<Arc<Feed>> {
        let end = prefix_end(prefix);
        let mut objects = BTreeMap::new();
        let (mut start, mut revision) = (prefix.to_string(), None);
        loop {
            let page = self
                .backend
                .range(RangeRequest { start: &start, end: &end, revision, limit: Some(FILL_PAGE) })
                .await?;
            revision = Some(page.revision);
            if let (true, Some(last)) = (page.more, page.items.last()) {
                start = format!("{}\0", last.key);
            } else {
                start.clear();
            }
            objects.extend(page.items.into_iter().map(|kv| (kv.key.clone(), kv)));
            if start.is_empty() {
                break;
            }
        }
        let revision = revision.expect("read at least once");
        tracing::debug!(%prefix, revision, objects = objects.len(), "watch cache filled");
        self.start_feed(prefix, revision, Some(objects)).await
    }

    pub fn progress_interval(&self) -> Duration {
        self.config.progress_interval
    }

    pub async fn watch(&self, prefix: &str, after: Revision) -> Result<Watch> {
        let covering: Vec<Arc<Feed>> = {
            let mut feeds = self.feeds.lock().unwrap();
            feeds.retain(|f| f.upgrade().is_some_and(|f| f.usable()));
            feeds
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|f| prefix.starts_with(f.prefix.as_str()))
                .collect()
        };
        for feed in &covering {
            if let Some((ring, backlog)) = feed.join(after) {
                return Ok(self.watcher(feed.clone(), prefix, after, Source::Feed { ring, backlog }));
            }
        }
        let feed = match covering.into_iter().next() {
            Some(feed) => feed,
            None => {
                let feed = self.start_feed(prefix, after, None).await?;
                if let Some((ring, backlog)) = feed.join(after) {
                    return Ok(self.watcher(feed, prefix, after, Source::Feed { ring, backlog }));
                }
                // The new feed failed before it could be joined (its
                // revision was compacted, say): the watch of our own
                // below reports why.
                feed
            }
        };
        // Older than the feed remembers: catch up on a watch of our own.
        let direct = self.backend.watch(prefix, after, Progress::every(self.config.progress_interval)).await?;
        Ok(self.watcher(feed, prefix, after, Source::Direct(direct)))
    }

    async fn start_feed(&self, prefix: &str, after: Revision, objects: Option<BTreeMap<String, KeyValue>>) -> Result<Arc<Feed>> {
        let progress = Progress::every(self.config.progress_interval);
        let stream = self.backend.watch(prefix, after, progress.clone()).await?;
        let (ring, _) = broadcast::channel(self.config.watcher_buffer.max(1));
        let cached = objects.is_some();
        let shared = Arc::new(Shared {
            state: Mutex::new(FeedState {
                ring,
                history: VecDeque::new(),
                history_events: 0,
                history_bytes: 0,
                base: after,
                revision: after,
                failed: false,
                objects,
            }),
            revision: tokio::sync::watch::Sender::new(after),
            progress,
        });
        let task = tokio::spawn(run_feed(
            self.backend.clone(),
            prefix.to_string(),
            stream,
            shared.clone(),
            self.config.clone(),
        ));
        let feed = Arc::new(Feed {
            prefix: prefix.to_string(),
            shared,
            task,
        });
        let mut feeds = self.feeds.lock().unwrap();
        // Watchers join a cache's feed first: it outlives theirs.
        if cached {
            feeds.insert(0, Arc::downgrade(&feed));
        } else {
            feeds.push(Arc::downgrade(&feed));
        }
        Ok(feed)
    }

    fn watcher(&self, feed: Arc<Feed>, prefix: &str, after: Revision, source: Source) -> Watch {
        let prefix = prefix.to_string();
        let progress_interval = self.config.progress_interval;
        Box::pin(async_stream::try_stream! {
            let mut source = source;
            let mut last = after;
            let mut last_yield = Instant::now();
            loop {
                let batch = match &mut source {
                    Source::Feed { ring, backlog } => match backlog.pop_front() {
                        Some(b) => b,
                        None => match ring.recv().await {
                            Ok(FeedMsg::Batch(b)) => b,
                            Ok(FeedMsg::Failed(e)) => Err(*e)?,
                            Err(broadcast::error::RecvError::Lagged(_)) => Err(Error::Expired)?,
                            Err(broadcast::error::RecvError::Closed) => {
                                Err(Error::Unavailable("watch feed closed".into()))?
                            }
                        },
                    },
                    Source::Direct(stream) => match stream.next().await {
                        Some(b) => Arc::new(b?),
                        None => Err(Error::Unavailable("watch ended".into()))?,
                    },
                };
                if batch.revision <= last {
                    continue;
                }
                let events: Vec<_> = batch
                    .events
                    .iter()
                    .filter(|e| e.revision() > last && e.kv.key.starts_with(prefix.as_str()))
                    .cloned()
                    .collect();
                last = batch.revision;
                // Batches with nothing for this watcher count as progress now
                // and then. Progress from the backend goes through unless
                // the watcher just had some: caches ask for it on demand.
                let is_progress = batch.events.is_empty() && last_yield.elapsed() >= progress_interval / 2;
                if !events.is_empty() || is_progress || last_yield.elapsed() >= progress_interval {
                    last_yield = Instant::now();
                    yield WatchBatch { events, revision: last };
                }
                if matches!(source, Source::Direct(_)) {
                    if let Some((ring, backlog)) = feed.join(last) {
                        source = Source::Feed { ring, backlog };
                    }
                }
            }
        })
    }
}

enum Source {
    Feed {
        ring: broadcast::Receiver<FeedMsg>,
        backlog: VecDeque<Arc<WatchBatch>>,
    },
    Direct(Watch),
}

/// Pumps one backend watch into the feed; reconnects from the last revision
/// while the backend is unavailable, and fails the feed on anything else.
async fn run_feed(backend: Arc<dyn Backend>, prefix: String, mut stream: Watch, shared: Arc<Shared>, config: HubConfig) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let err = loop {
            match stream.next().await {
                Some(Ok(batch)) => {
                    backoff = Duration::from_millis(100);
                    publish(&shared, &config, batch);
                }
                Some(Err(e)) => break e,
                None => break Error::Unavailable("backend watch ended".into()),
            }
        };
        if !matches!(err, Error::Unavailable(_)) {
            return fail(&shared, err);
        }
        tracing::warn!(%prefix, "watch interrupted, reconnecting: {err}");
        loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            let from = shared.state.lock().unwrap().revision;
            match backend.watch(&prefix, from, shared.progress.clone()).await {
                Ok(s) => {
                    stream = s;
                    break;
                }
                Err(Error::Unavailable(e)) => tracing::warn!(%prefix, "watch reconnect failed: {e}"),
                Err(e) => return fail(&shared, e),
            }
        }
    }
}

fn publish(shared: &Shared, config: &HubConfig, batch: WatchBatch) {
    let mut st = shared.state.lock().unwrap();
    if batch.revision <= st.revision && !batch.events.is_empty() {
        // Replayed after a reconnect: already published.
        return;
    }
    st.revision = st.revision.max(batch.revision);
    if let Some(objects) = st.objects.as_mut() {
        for event in &batch.events {
            match event.kind {
                EventKind::Put => objects.insert(event.kv.key.clone(), event.kv.clone()),
                EventKind::Delete => objects.remove(&event.kv.key),
            };
        }
    }
    shared.revision.send_replace(st.revision);
    let batch = Arc::new(batch);
    if !batch.events.is_empty() {
        st.history_events += batch.events.len();
        st.history_bytes += batch_bytes(&batch);
        st.history.push_back(batch.clone());
        while st.history_events > config.history_events || st.history_bytes > config.history_bytes {
            let Some(old) = st.history.pop_front() else { break };
            st.history_events -= old.events.len();
            st.history_bytes -= batch_bytes(&old);
            st.base = old.revision;
        }
    }
    // No receivers just means nobody is listening right now.
    let _ = st.ring.send(FeedMsg::Batch(batch));
}

fn fail(shared: &Shared, err: Error) {
    let mut st = shared.state.lock().unwrap();
    st.failed = true;
    let _ = st.ring.send(FeedMsg::Failed(Box::new(err)));
}

fn batch_bytes(batch: &WatchBatch) -> usize {
    batch
        .events
        .iter()
        .map(|e| e.kv.key.len() + e.kv.value.len() + e.prev.as_ref().map_or(0, |p| p.value.len()))
        .sum()
}

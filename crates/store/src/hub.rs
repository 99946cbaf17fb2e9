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

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::broadcast;

use crate::backend::Backend;
use crate::{Error, Result, Revision, Watch, WatchBatch};

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
}

#[derive(Clone)]
enum FeedMsg {
    Batch(Arc<WatchBatch>),
    Failed(Error),
}

/// One backend watch and what it has delivered. Dropped (and its task
/// stopped) when the last watcher using it goes away.
struct Feed {
    prefix: String,
    state: Arc<Mutex<FeedState>>,
    task: tokio::task::JoinHandle<()>,
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
        let state = self.state.lock().unwrap();
        if state.failed || after < state.base {
            return None;
        }
        let backlog = state.history.iter().filter(|b| b.revision > after).cloned().collect();
        Some((state.ring.subscribe(), backlog))
    }

    fn usable(&self) -> bool {
        !self.state.lock().unwrap().failed
    }
}

impl Hub {
    pub fn new(backend: Arc<dyn Backend>, config: HubConfig) -> Hub {
        Hub {
            backend,
            config,
            feeds: Mutex::new(Vec::new()),
        }
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
        if let Some(feed) = covering.into_iter().next() {
            // Older than the feed remembers: catch up on a watch of our own.
            let direct = self.backend.watch(prefix, after, self.config.progress_interval).await?;
            return Ok(self.watcher(feed, prefix, after, Source::Direct(direct)));
        }
        let feed = self.start_feed(prefix, after).await?;
        let (ring, backlog) = feed.join(after).expect("a new feed starts at the watcher's revision");
        Ok(self.watcher(feed, prefix, after, Source::Feed { ring, backlog }))
    }

    async fn start_feed(&self, prefix: &str, after: Revision) -> Result<Arc<Feed>> {
        let stream = self.backend.watch(prefix, after, self.config.progress_interval).await?;
        let (ring, _) = broadcast::channel(self.config.watcher_buffer.max(1));
        let state = Arc::new(Mutex::new(FeedState {
            ring,
            history: VecDeque::new(),
            history_events: 0,
            history_bytes: 0,
            base: after,
            revision: after,
            failed: false,
        }));
        let task = tokio::spawn(run_feed(
            self.backend.clone(),
            prefix.to_string(),
            stream,
            state.clone(),
            self.config.clone(),
        ));
        let feed = Arc::new(Feed {
            prefix: prefix.to_string(),
            state,
            task,
        });
        self.feeds.lock().unwrap().push(Arc::downgrade(&feed));
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
                            Ok(FeedMsg::Failed(e)) => Err(e)?,
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
                // Progress from the backend always goes through; batches with
                // nothing for this watcher count as progress now and then.
                let is_progress = batch.events.is_empty();
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
async fn run_feed(
    backend: Arc<dyn Backend>,
    prefix: String,
    mut stream: Watch,
    state: Arc<Mutex<FeedState>>,
    config: HubConfig,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let err = loop {
            match stream.next().await {
                Some(Ok(batch)) => {
                    backoff = Duration::from_millis(100);
                    publish(&state, &config, batch);
                }
                Some(Err(e)) => break e,
                None => break Error::Unavailable("backend watch ended".into()),
            }
        };
        if !matches!(err, Error::Unavailable(_)) {
            return fail(&state, err);
        }
        tracing::warn!(%prefix, "watch interrupted, reconnecting: {err}");
        loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            let from = state.lock().unwrap().revision;
            match backend.watch(&prefix, from, config.progress_interval).await {
                Ok(s) => {
                    stream = s;
                    break;
                }
                Err(Error::Unavailable(e)) => tracing::warn!(%prefix, "watch reconnect failed: {e}"),
                Err(e) => return fail(&state, e),
            }
        }
    }
}

fn publish(state: &Mutex<FeedState>, config: &HubConfig, batch: WatchBatch) {
    let mut st = state.lock().unwrap();
    if batch.revision <= st.revision && !batch.events.is_empty() {
        // Replayed after a reconnect: already published.
        return;
    }
    st.revision = st.revision.max(batch.revision);
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

fn fail(state: &Mutex<FeedState>, err: Error) {
    let mut st = state.lock().unwrap();
    st.failed = true;
    let _ = st.ring.send(FeedMsg::Failed(err));
}

fn batch_bytes(batch: &WatchBatch) -> usize {
    batch
        .events
        .iter()
        .map(|e| e.kv.key.len() + e.kv.value.len() + e.prev.as_ref().map_or(0, |p| p.value.len()))
        .sum()
}

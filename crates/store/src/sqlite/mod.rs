//! Embedded SQLite backend: one file, WAL mode, one writer thread doing group
//! commits, pooled readers, and watches fed straight from the writer's
//! commits (with the log table to catch up from older revisions).

mod reader;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::backend::{Backend, Progress, RangeRequest, RangeResponse};
use crate::{prefix_end, Error, KeyValue, Result, Revision, Watch, WatchBatch};
use reader::Readers;
use writer::{Op, Outcome, Published, Request, Writer};

/// Requests waiting for the writer before senders have to wait.
const QUEUE: usize = 8192;
/// Commits kept for watch feeds that are momentarily behind; a feed further
/// behind catches up from the log table instead. The ring keeps each commit
/// until its slot is reused, so this also bounds the memory it holds.
const COMMIT_BUFFER: usize = 128;
/// Events read per query while a watch catches up from the log table.
const REPLAY_CHUNK: usize = 1000;

pub struct SqliteBackend {
    path: PathBuf,
    requests: mpsc::Sender<Request>,
    /// The writer and checkpointer threads, joined on drop.
    threads: Vec<std::thread::JoinHandle<()>>,
    readers: Arc<Readers>,
    commits: broadcast::Sender<Arc<WatchBatch>>,
    published: Arc<Published>,
}

impl SqliteBackend {
    /// Opens or creates the store at `path`. A file that is not a Skiff store,
    /// or one that is damaged, is refused with [`Error::Corrupt`].
    pub async fn open(path: &Path) -> Result<SqliteBackend> {
        let path = path.to_path_buf();
        let (conn, meta) = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || schema::open_writer(&path))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??
        };
        let (commits, _) = broadcast::channel(COMMIT_BUFFER);
        let published = Arc::new(Published::default());
        let (pokes, poked) = std::sync::mpsc::sync_channel(1);
        let checkpoint_conn = schema::open_checkpointer(&path)?;
        let writer = Writer::new(conn, meta, commits.clone(), published.clone(), pokes)?;
        let (requests, queue) = mpsc::channel(QUEUE);
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| Error::Internal(format!("starting the {name} thread: {e}")))
        };
        // The writer goes first so that, on drop, its exit closes the pokes
        // channel and with it the checkpointer.
        let threads = vec![
            spawn("store-writer", Box::new(move || writer.run(queue)))?,
            spawn("store-checkpoint", Box::new(move || writer::checkpointer(checkpoint_conn, poked)))?,
        ];
        Ok(SqliteBackend {
            readers: Readers::new(path.clone()),
            path,
            requests,
            threads,
            commits,
            published,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Compaction or vacuum work is still outstanding.
    pub fn maintenance_pending(&self) -> bool {
        self.published.maintenance.load(Ordering::Acquire)
    }

    async fn write(&self, op: Op) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        let stopped = || Error::Internal("the store writer has stopped".into());
        self.requests
            .send(Request { op, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// A consistent copy of the store at `path` written to `to` while the
/// store may be in use (SQLite's `VACUUM INTO`): the SQLite datastore's
/// backup, which `to` replaces `state.db` to restore.
pub fn backup(path: &Path, to: &Path) -> Result<()> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| Error::Internal(format!("opening {}: {e}", path.display())))?;
    conn.execute("VACUUM INTO ?1", [to.display().to_string()]).map_err(|e| Error::Internal(format!("copying {} to {}: {e}", path.display(), to.display())))?;
    Ok(())
}

impl Drop for SqliteBackend {
    /// Closes the queue and waits for the writer to finish what it accepted
    /// and both threads to close their connections, so the file can be
    /// reopened at once.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.requests, closed));
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.readers.run(move |c| reader::get(c, &key, revision)).await
    }

    async fn range(&self, req: RangeRequest<'_>) -> Result<RangeResponse> {
        let (start, end) = (req.start.to_string(), req.end.to_string());
        let (revision, limit) = (req.revision, req.limit);
        self.readers
            .run(move |c| {
                reader::range(
                    c,
                    &RangeRequest {
                        start: &start,
                        end: &end,
                        revision,
                        limit,
                    },
                )
            })
            .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        match self.write(Op::Create { key: key.into(), value }).await? {
            Outcome::Written(rev) => Ok(rev),
            _ => unreachable!("create answers with Written"),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: Option<Revision>) -> Result<Revision> {
        match self.write(Op::Update { key: key.into(), value, expected }).await? {
            Outcome::Written(rev) => Ok(rev),
            _ => unreachable!("update answers with Written"),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        match self.write(Op::Delete { key: key.into(), expected }).await? {
            Outcome::Deleted(rev, prev) => Ok((rev, prev)),
            _ => unreachable!("delete answers with Deleted"),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.published.revision.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.write(Op::Compact { revision }).await.map(|_| ())
    }

    fn answers_progress_requests(&self) -> bool {
        true
    }

    async fn watch(&self, prefix: &str, after: Revision, progress: Progress) -> Result<Watch> {
        let compacted = self.published.compact_rev.load(Ordering::Acquire);
        if after < compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted,
            });
        }
        let readers = self.readers.clone();
        let commits = self.commits.clone();
        let prefix = prefix.to_string();
        let end = prefix_end(&prefix);
        Ok(Box::pin(async_stream::try_stream! {
            let mut last = after;
            let mut idle = tokio::time::interval_at(tokio::time::Instant::now() + progress.idle, progress.idle);
            'subscribe: loop {
                // Subscribe before reading the log: every commit is then
                // either in the snapshot read below or in `live`, or both
                // (those are skipped by revision).
                let mut live = commits.subscribe();
                loop {
                    let (p, e) = (prefix.clone(), end.clone());
                    let (events, snapshot) = readers
                        .run(move |c| reader::events_after(c, &p, &e, last, REPLAY_CHUNK))
                        .await?;
                    let complete = events.len() < REPLAY_CHUNK;
                    if let Some(newest) = events.last() {
                        last = newest.revision();
                        idle.reset();
                        yield WatchBatch { events, revision: last };
                    }
                    if complete {
                        last = last.max(snapshot);
                        break;
                    }
                }
                loop {
                    // `?` is not rewritten inside select!, so pick first, act after.
                    let (commit, progress_due) = tokio::select! {
                        c = live.recv() => (Some(c), false),
                        _ = idle.tick() => (None, true),
                        // Asked for: take in every commit already published
                        // first, so the progress covers them.
                        _ = progress.requested.notified() => (None, true),
                    };
                    let commit = match commit {
                        Some(Ok(commit)) => Some(commit),
                        // Fell behind the commit buffer: catch up from the log.
                        Some(Err(broadcast::error::RecvError::Lagged(_))) => continue 'subscribe,
                        Some(Err(broadcast::error::RecvError::Closed)) => {
                            Err(Error::Unavailable("the store was closed".into()))?
                        }
                        None => None,
                    };
                    let mut pending: Vec<_> = commit.into_iter().collect();
                    if progress_due {
                        loop {
                            match live.try_recv() {
                                Ok(commit) => pending.push(commit),
                                Err(broadcast::error::TryRecvError::Lagged(_)) => continue 'subscribe,
                                Err(_) => break,
                            }
                        }
                    }
                    for commit in pending {
                        if commit.revision <= last {
                            continue;
                        }
                        let events: Vec<_> = commit
                            .events
                            .iter()
                            .filter(|e| e.revision() > last && e.kv.key.starts_with(prefix.as_str()))
                            .cloned()
                            .collect();
                        last = commit.revision;
                        if !events.is_empty() {
                            idle.reset();
                            yield WatchBatch { events, revision: last };
                        }
                    }
                    if progress_due {
                        idle.reset();
                        yield WatchBatch { events: Vec::new(), revision: last };
                    }
                }
            }
        }))
    }
}

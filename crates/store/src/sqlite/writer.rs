//! The single writer: every write goes through one thread that owns the
//! write connection, gathers whatever requests are waiting into one
//! transaction (group commit: one fsync for the lot), answers them after the
//! commit is durable, then publishes the batch's events to watchers.
//!
//! Between batches it does bounded slices of compaction and vacuum, so a
//! writer never waits behind more than one small slice of maintenance.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::schema::{write_meta, Meta};
use crate::{Error, Event, EventKind, KeyValue, Result, Revision, WatchBatch};

/// Most requests in one transaction.
const MAX_BATCH: usize = 1024;
/// Most value bytes in one transaction, so a burst of large values does not
/// build one huge commit.
const MAX_BATCH_BYTES: usize = 32 << 20;
/// How long one compaction slice may hold the writer. Slices are sized in
/// revisions, adapted to this budget: a revision range full of updates of
/// scattered keys costs far more than one of fresh creates.
const SLICE_BUDGET: Duration = Duration::from_millis(3);
const SLICE_REVISIONS: std::ops::RangeInclusive<i64> = 16..=8192;
/// After a maintenance slice the writer does no maintenance for this many
/// times the slice's duration. Compaction and vacuum rewrite many pages, and
/// on a shared disk a flood of page writes delays every commit's fsync; the
/// pause bounds their share of the disk (and of the writer) to a quarter.
const MAINTENANCE_PAUSE: u32 = 3;
/// Commits slower than this are logged (at debug level) with their phases.
const SLOW_COMMIT: Duration = Duration::from_millis(20);
/// Pages freed per vacuum slice (4 KiB each).
const VACUUM_SLICE: i64 = 256;
/// Under concurrent load (the last commit held at least `LINGER_AFTER`
/// writes) the writer waits, up to `LINGER`, for as many writes as the
/// last commit held before committing. Each commit costs an fsync (~100 µs
/// of CPU on a virtio disk, whatever its size) and rewrites the pages its
/// writes share; without the wait a busy writer commits whatever few
/// writes have arrived, and the rest pay another fsync right after. A lone
/// writer (batches of one) never waits, as PostgreSQL's commit_delay only
/// applies with commit_siblings.
const LINGER: Duration = Duration::from_micros(800);
const LINGER_AFTER: usize = 4;
/// How often a waiting writer looks for more writes.
const LINGER_STEP: Duration = Duration::from_micros(100);

pub(super) enum Op {
    Create { key: String, value: Bytes },
    Update { key: String, value: Bytes, expected: Option<Revision> },
    Delete { key: String, expected: Option<Revision> },
    Compact { revision: Revision },
}

pub(super) enum Outcome {
    Written(Revision),
    Deleted(Revision, KeyValue),
    Compacted,
}

pub(super) struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Outcome>>,
}

/// Moves the requests already waiting into `batch`, within the batch
/// limits; true once the batch is full.
fn take_waiting(requests: &mut mpsc::Receiver<Request>, batch: &mut Vec<Request>) -> bool {
    let mut bytes: usize = batch.iter().map(Request::value_len).sum();
    let full = |batch: &Vec<Request>, bytes| batch.len() >= MAX_BATCH || bytes >= MAX_BATCH_BYTES;
    while !full(batch, bytes) {
        match requests.try_recv() {
            Ok(r) => {
                bytes += r.value_len();
                batch.push(r);
            }
            Err(_) => break,
        }
    }
    full(batch, bytes)
}

impl Request {
    fn value_len(&self) -> usize {
        match &self.op {
            Op::Create { value, .. } | Op::Update { value, .. } => value.len(),
            _ => 0,
        }
    }
}

/// What the async side reads without a query.
#[derive(Default)]
pub(super) struct Published {
    pub revision: AtomicI64,
    pub compact_rev: AtomicI64,
    /// Compaction or vacuum work is outstanding.
    pub maintenance: AtomicBool,
}

pub(super) struct Writer {
    conn: Connection,
    meta: Meta,
    vacuum_pending: bool,
    /// Revisions the next compaction slice covers.
    slice: i64,
    /// No maintenance slice before this.
    maintenance_due: Instant,
    commits: broadcast::Sender<Arc<WatchBatch>>,
    published: Arc<Published>,
    /// Pokes the checkpointer after commits.
    checkpoint: std::sync::mpsc::SyncSender<()>,
}

impl Writer {
    pub fn new(
        conn: Connection,
        meta: Meta,
        commits: broadcast::Sender<Arc<WatchBatch>>,
        published: Arc<Published>,
        checkpoint: std::sync::mpsc::SyncSender<()>,
    ) -> Result<Writer> {
        // Checkpoints run on their own thread (see `checkpointer`), not inside
        // whichever commit happens to cross the threshold. Keep the WAL file
        // from staying large after a burst.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;")?;
        published.revision.store(meta.revision, Ordering::Release);
        published.compact_rev.store(meta.compact_rev, Ordering::Release);
        published.maintenance.store(true, Ordering::Release);
        Ok(Writer {
            conn,
            meta,
            vacuum_pending: true,
            slice: 256,
            maintenance_due: Instant::now(),
            commits,
            published,
            checkpoint,
        })
    }

    pub fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut last_batch = 0;
        loop {
            let first = if !self.maintenance_pending() {
                match requests.blocking_recv() {
                    Some(r) => Some(r),
                    None => return,
                }
            } else {
                match requests.try_recv() {
                    Ok(r) => Some(r),
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        // Nothing to write; wait out the maintenance pause
                        // in short steps so a new request is not kept waiting.
                        let wait = self.maintenance_due.saturating_duration_since(Instant::now());
                        if !wait.is_zero() {
                            std::thread::sleep(wait.min(Duration::from_millis(1)));
                            continue;
                        }
                        None
                    }
                }
            };
            if let Some(first) = first {
                let mut batch = vec![first];
                let mut full = take_waiting(&mut requests, &mut batch);
                if last_batch >= LINGER_AFTER {
                    // A full batch (by count or bytes) has nothing to wait for.
                    let until = Instant::now() + LINGER;
                    while !full && batch.len() < last_batch && Instant::now() < until {
                        std::thread::sleep(LINGER_STEP);
                        full = take_waiting(&mut requests, &mut batch);
                    }
                }
                last_batch = batch.len();
                self.commit(batch);
            }
            if self.maintenance_pending() && Instant::now() >= self.maintenance_due {
                let started = Instant::now();
                if let Err(e) = self.maintenance_slice() {
                    tracing::error!("store maintenance failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                self.maintenance_due = Instant::now() + started.elapsed() * MAINTENANCE_PAUSE;
            }
            self.published.maintenance.store(self.maintenance_pending(), Ordering::Release);
        }
    }

    fn commit(&mut self, batch: Vec<Request>) {
        let mut txn = Txn {
            revision: self.meta.revision,
            compact_rev: self.meta.compact_rev,
            events: Vec::new(),
        };
        let mut results = Vec::with_capacity(batch.len());
        let started = Instant::now();
        let mut phases = [Duration::ZERO; 2];
        let committed: Result<()> = (|| {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            phases[0] = started.elapsed();
            for req in &batch {
                results.push(txn.apply(&tx, &req.op)?);
            }
            if txn.revision != self.meta.revision {
                write_meta(&tx, "revision", txn.revision)?;
            }
            if txn.compact_rev != self.meta.compact_rev {
                write_meta(&tx, "compact_rev", txn.compact_rev)?;
            }
            phases[1] = started.elapsed();
            tx.commit()?;
            Ok(())
        })();
        let elapsed = started.elapsed();
        if elapsed > SLOW_COMMIT {
            tracing::debug!(
                writes = batch.len(),
                lock = ?phases[0],
                apply = ?(phases[1] - phases[0]),
                commit = ?(elapsed - phases[1]),
                "slow store commit"
            );
        }
        match committed {
            Ok(()) => {
                self.meta.revision = txn.revision;
                self.meta.compact_rev = txn.compact_rev;
                self.published.revision.store(txn.revision, Ordering::Release);
                self.published.compact_rev.store(txn.compact_rev, Ordering::Release);
                self.published.maintenance.store(self.maintenance_pending(), Ordering::Release);
                if !txn.events.is_empty() {
                    // No receivers is fine: nobody is watching.
                    let _ = self.commits.send(Arc::new(WatchBatch {
                        events: txn.events,
                        revision: txn.revision,
                    }));
                }
                for (req, result) in batch.into_iter().zip(results) {
                    let _ = req.reply.send(result);
                }
                // Full means a poke is already pending.
                let _ = self.checkpoint.try_send(());
            }
            Err(e) => {
                // The transaction rolled back: nothing of the batch happened.
                tracing::error!("store commit of {} writes failed: {e}", batch.len());
                for req in batch {
                    let _ = req.reply.send(Err(e.clone()));
                }
            }
        }
    }

    fn maintenance_pending(&self) -> bool {
        self.meta.compacted_upto < self.meta.compact_rev || self.vacuum_pending
    }

    /// One bounded step of compaction, or of giving freed pages back to the
    /// file system once compaction has caught up.
    fn maintenance_slice(&mut self) -> Result<()> {
        let started = Instant::now();
        if self.meta.compacted_upto < self.meta.compact_rev {
            let lo = self.meta.compacted_upto;
            let hi = (lo + self.slice).min(self.meta.compact_rev);
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // A row at or below the compacted revision supersedes its
            // predecessor, which no read at or above that revision can see.
            let superseded = tx
                .prepare_cached(
                    "DELETE FROM log WHERE rev IN
                       (SELECT prev_rev FROM log WHERE rev > ?1 AND rev <= ?2 AND prev_rev > 0)",
                )?
                .execute(params![lo, hi])?;
            // A deletion at or below it leaves nothing to see either.
            let tombstones = tx
                .prepare_cached("DELETE FROM log WHERE rev > ?1 AND rev <= ?2 AND deleted = 1")?
                .execute(params![lo, hi])?;
            write_meta(&tx, "compacted_upto", hi)?;
            tx.commit()?;
            let _ = self.checkpoint.try_send(());
            self.meta.compacted_upto = hi;
            if superseded + tombstones > 0 {
                self.vacuum_pending = true;
            }
            let elapsed = started.elapsed();
            if elapsed > SLICE_BUDGET {
                self.slice = (self.slice / 2).max(*SLICE_REVISIONS.start());
            } else if elapsed < SLICE_BUDGET / 3 {
                self.slice = (self.slice * 2).min(*SLICE_REVISIONS.end());
            }
            tracing::trace!(lo, hi, superseded, tombstones, elapsed = ?started.elapsed(), "compaction slice");
            return Ok(());
        }
        let free: i64 = self.conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        if free == 0 {
            self.vacuum_pending = false;
            return Ok(());
        }
        self.conn
            .execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_SLICE})"))?;
        let _ = self.checkpoint.try_send(());
        tracing::trace!(free, elapsed = ?started.elapsed(), "vacuum slice");
        Ok(())
    }
}

/// State of one group-commit transaction being built.
struct Txn {
    revision: Revision,
    compact_rev: Revision,
    events: Vec<Event>,
}

/// The live value of a key, as the writer needs it.
struct Current {
    rev: Revision,
    create_rev: Revision,
    value: Bytes,
}

impl Txn {
    /// Applies one request. The outer error is a database failure that aborts
    /// the whole batch; the inner one is this request's own answer.
    fn apply(&mut self, tx: &Connection, op: &Op) -> Result<Result<Outcome>> {
        Ok(match op {
            Op::Create { key, value } => {
                if live_revision(tx, key)?.is_some() {
                    return Ok(Err(Error::AlreadyExists { key: key.clone() }));
                }
                let rev = self.next();
                insert(tx, rev, key, rev, 0, false, value)?;
                self.events.push(Event {
                    kind: EventKind::Put,
                    kv: kv(key, value.clone(), rev, rev),
                    prev: None,
                    memo: Default::default(),
                });
                Ok(Outcome::Written(rev))
            }
            Op::Update { key, value, expected } => {
                let current = match writable(tx, key, *expected)? {
                    Ok(c) => c,
                    Err(e) => return Ok(Err(e)),
                };
                let rev = self.next();
                insert(tx, rev, key, current.create_rev, current.rev, false, value)?;
                self.events.push(Event {
                    kind: EventKind::Put,
                    kv: kv(key, value.clone(), current.create_rev, rev),
                    prev: Some(kv(key, current.value, current.create_rev, current.rev)),
                    memo: Default::default(),
                });
                Ok(Outcome::Written(rev))
            }
            Op::Delete { key, expected } => {
                let current = match writable(tx, key, *expected)? {
                    Ok(c) => c,
                    Err(e) => return Ok(Err(e)),
                };
                let rev = self.next();
                insert(tx, rev, key, current.create_rev, current.rev, true, &[])?;
                let prev = kv(key, current.value, current.create_rev, current.rev);
                self.events.push(Event {
                    kind: EventKind::Delete,
                    kv: kv(key, Bytes::new(), current.create_rev, rev),
                    prev: Some(prev.clone()),
                    memo: Default::default(),
                });
                Ok(Outcome::Deleted(rev, prev))
            }
            Op::Compact { revision } => {
                if *revision > self.revision {
                    Err(Error::FutureRevision {
                        requested: *revision,
                        current: self.revision,
                    })
                } else {
                    // Compacting to an older revision than already done is a no-op.
                    self.compact_rev = self.compact_rev.max(*revision);
                    Ok(Outcome::Compacted)
                }
            }
        })
    }

    fn next(&mut self) -> Revision {
        self.revision += 1;
        self.revision
    }
}

/// The key's live value, if it exists and its revision is `expected` (when
/// given): what an update or delete may replace. Outer error as in `apply`.
fn writable(tx: &Connection, key: &str, expected: Option<Revision>) -> Result<Result<Current>> {
    let Some(current) = current(tx, key)? else {
        return Ok(Err(Error::NotFound { key: key.to_string() }));
    };
    Ok(match expected {
        Some(expected) if expected != current.rev => Err(Error::Conflict {
            key: key.to_string(),
            expected,
            current: Box::new(kv(key, current.value.clone(), current.create_rev, current.rev)),
        }),
        _ => Ok(current),
    })
}

fn kv(key: &str, value: Bytes, create_revision: Revision, mod_revision: Revision) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value,
        create_revision,
        mod_revision,
    }
}

/// The revision of the key's live row, from the index alone.
fn live_revision(tx: &Connection, key: &str) -> Result<Option<Revision>> {
    let row: Option<(Revision, bool)> = tx
        .prepare_cached("SELECT rev, deleted FROM log WHERE key = ?1 ORDER BY rev DESC LIMIT 1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.and_then(|(rev, deleted)| (!deleted).then_some(rev)))
}

fn current(tx: &Connection, key: &str) -> Result<Option<Current>> {
    // One lookup for the key's latest row and its value, as
    // `live_revision` then a read by revision would take two.
    let row: Option<(Revision, bool, Revision, Vec<u8>)> = tx
        .prepare_cached("SELECT rev, deleted, create_rev, value FROM log WHERE key = ?1 ORDER BY rev DESC LIMIT 1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    Ok(row.filter(|(_, deleted, _, _)| !deleted).map(|(rev, _, create_rev, value)| Current { rev, create_rev, value: Bytes::from(value) }))
}

fn insert(
    tx: &Connection,
    rev: Revision,
    key: &str,
    create_rev: Revision,
    prev_rev: Revision,
    deleted: bool,
    value: &[u8],
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO log (rev, key, create_rev, prev_rev, deleted, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![rev, key, create_rev, prev_rev, deleted, value])?;
    Ok(())
}

/// Keeps the WAL short without ever checkpointing inside a commit:
/// - after commits, a PASSIVE checkpoint copies WAL frames into the database
///   file beside the writer (in WAL mode it blocks neither writers nor readers);
/// - once the WAL passes `RESTART_AT`, a RESTART checkpoint lets the next
///   commit start the WAL over. It holds writers only for the few frames the
///   passive pass had not copied yet, and gives up instead of waiting for
///   readers (busy timeout 0);
/// - when writes stop, a TRUNCATE checkpoint returns the WAL's space.
pub(super) fn checkpointer(conn: Connection, pokes: std::sync::mpsc::Receiver<()>) {
    use rusqlite::wal::CheckpointMode::{PASSIVE, RESTART, TRUNCATE};
    use std::sync::mpsc::RecvTimeoutError;
    const EVERY: Duration = Duration::from_millis(50);
    const IDLE: Duration = Duration::from_secs(1);
    const RESTART_AT: i32 = 16384; // frames, 64 MiB
    if let Err(e) = conn.busy_timeout(Duration::ZERO) {
        tracing::warn!("store checkpointer: {e}");
    }
    let checkpoint = |mode| conn.wal_checkpoint_v2(None::<&str>, mode);
    let mut wal_dirty = true;
    loop {
        let poked = if wal_dirty {
            pokes.recv_timeout(IDLE)
        } else {
            pokes.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        match poked {
            Ok(()) => {
                wal_dirty = true;
                if let Ok((frames, _)) = checkpoint(PASSIVE) {
                    if frames > RESTART_AT {
                        // Busy (a reader or the writer is active) just means later.
                        let _ = checkpoint(RESTART);
                    }
                }
                std::thread::sleep(EVERY);
            }
            Err(RecvTimeoutError::Timeout) => wal_dirty = checkpoint(TRUNCATE).is_err(),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

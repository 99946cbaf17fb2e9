//! Reads. Each runs in its own read transaction, so it sees one snapshot,
//! on a pooled connection that never blocks the writer (WAL mode).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};

use super::schema::{open_reader, read_meta, Meta};
use crate::{Error, Event, EventKind, KeyValue, RangeRequest, RangeResponse, Result, Revision};

/// Idle connections kept open; more are opened under load and closed after.
const POOL_SIZE: usize = 8;
/// Reads running at once; more wait. Bounds connections (and their page
/// caches) and blocking threads however many requests arrive.
const MAX_CONCURRENT_READS: usize = 32;

pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    slots: tokio::sync::Semaphore,
}

impl Readers {
    pub fn new(path: PathBuf) -> Arc<Readers> {
        Arc::new(Readers {
            path,
            idle: Mutex::new(Vec::new()),
            slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_READS),
        })
    }

    /// Runs `f` with a connection on the blocking pool.
    pub async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let _slot = self.slots.acquire().await.map_err(|_| Error::Internal("the reader pool is closed".into()))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = this.idle.lock().unwrap().pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => open_reader(&this.path)?,
            };
            let result = f(&mut conn);
            let mut idle = this.idle.lock().unwrap();
            if idle.len() < POOL_SIZE {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| Error::Internal(format!("read task failed: {e}")))?
    }
}

/// The revision a read at `requested` (None: latest) sees, if it can be served.
fn read_revision(meta: &Meta, requested: Option<Revision>) -> Result<Revision> {
    match requested {
        None => Ok(meta.revision),
        Some(r) if r < meta.compact_rev => Err(Error::Compacted {
            requested: r,
            compacted: meta.compact_rev,
        }),
        Some(r) if r > meta.revision => Err(Error::FutureRevision {
            requested: r,
            current: meta.revision,
        }),
        Some(r) => Ok(r),
    }
}

pub(super) fn get(conn: &mut Connection, key: &str, revision: Option<Revision>) -> Result<Option<KeyValue>> {
    let tx = conn.transaction()?;
    let at = read_revision(&read_meta(&tx)?, revision)?;
    let row = tx
        .prepare_cached(
            "SELECT rev, create_rev, deleted, value FROM log
             WHERE key = ?1 AND rev <= ?2 ORDER BY rev DESC LIMIT 1",
        )?
        .query_row(params![key, at], |r| {
            Ok((r.get::<_, Revision>(0)?, r.get(1)?, r.get::<_, bool>(2)?, r.get::<_, Vec<u8>>(3)?))
        })
        .optional()?;
    Ok(row.and_then(|(mod_revision, create_revision, deleted, value)| {
        (!deleted).then(|| KeyValue {
            key: key.to_string(),
            mod_revision,
            create_revision,
            value: Bytes::from(value),
        })
    }))
}

pub(super) fn range(conn: &mut Connection, req: &RangeRequest<'_>) -> Result<RangeResponse> {
    let tx = conn.transaction()?;
    let at = read_revision(&read_meta(&tx)?, req.revision)?;
    let limit = req.limit.unwrap_or(usize::MAX);
    let mut items = Vec::new();
    let mut more = false;
    {
        // Grouping by key walks the (key, rev, deleted) index in key order;
        // SQLite takes the other columns from the row holding max(rev), i.e.
        // each key's newest row at or below the read revision. Rows stream,
        // so stopping after `limit` live keys reads no further.
        let mut stmt = tx.prepare_cached(
            "SELECT key, max(rev), create_rev, deleted, value FROM log
             WHERE key >= ?1 AND key < ?2 AND rev <= ?3 GROUP BY key ORDER BY key",
        )?;
        let mut rows = stmt.query(params![req.start, req.end, at])?;
        while let Some(row) = rows.next()? {
            if row.get::<_, bool>(3)? {
                continue;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(KeyValue {
                key: row.get(0)?,
                mod_revision: row.get(1)?,
                create_revision: row.get(2)?,
                value: Bytes::from(row.get::<_, Vec<u8>>(4)?),
            });
        }
    }
    let remaining = match (more, items.last()) {
        (true, Some(last)) => Some(
            tx.prepare_cached(
                "SELECT count(*) FROM
                   (SELECT max(rev), deleted FROM log WHERE key > ?1 AND key < ?2 AND rev <= ?3 GROUP BY key)
                 WHERE deleted = 0",
            )?
            .query_row(params![last.key, req.end, at], |r| r.get(0))?,
        ),
        _ => None,
    };
    Ok(RangeResponse {
        items,
        revision: at,
        more,
        remaining,
    })
}

/// Up to `limit` changes to keys in `[start, end)` after `after`, and the
/// revision of the snapshot they were read from.
pub(super) fn events_after(
    conn: &mut Connection,
    start: &str,
    end: &str,
    after: Revision,
    limit: usize,
) -> Result<(Vec<Event>, Revision)> {
    let tx = conn.transaction()?;
    let meta = read_meta(&tx)?;
    if after < meta.compact_rev {
        return Err(Error::Compacted {
            requested: after,
            compacted: meta.compact_rev,
        });
    }
    let mut events = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT l.rev, l.key, l.create_rev, l.deleted, l.value, p.rev, p.create_rev, p.value
             FROM log l LEFT JOIN log p ON p.rev = l.prev_rev
             WHERE l.rev > ?1 AND l.key >= ?2 AND l.key < ?3
             ORDER BY l.rev LIMIT ?4",
        )?;
        let mut rows = stmt.query(params![after, start, end, limit as i64])?;
        while let Some(row) = rows.next()? {
            let key: String = row.get(1)?;
            let deleted: bool = row.get(3)?;
            let prev = match row.get::<_, Option<Revision>>(5)? {
                Some(prev_rev) => Some(KeyValue {
                    key: key.clone(),
                    mod_revision: prev_rev,
                    create_revision: row.get(6)?,
                    value: Bytes::from(row.get::<_, Vec<u8>>(7)?),
                }),
                None => None,
            };
            events.push(Event {
                kind: if deleted { EventKind::Delete } else { EventKind::Put },
                kv: KeyValue {
                    key,
                    mod_revision: row.get(0)?,
                    create_revision: row.get(2)?,
                    value: Bytes::from(row.get::<_, Vec<u8>>(4)?),
                },
                prev,
                memo: Default::default(),
            });
        }
    }
    Ok((events, meta.revision))
}

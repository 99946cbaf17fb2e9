//! The on-disk layout and the checks that refuse a file that is not ours.
//!
//! One table, `log`, holds every write as a row keyed by its revision: the
//! change log and, through the `(key, rev, deleted)` index, the multi-version
//! state (a key's value at revision R is its row with the largest rev ≤ R).
//! `prev_rev` links a row to the key's previous live row, which is what
//! compaction and watch events (previous value) need without searching.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::{Error, Result, Revision};

/// "SKIF": marks a SQLite file as a Skiff store.
const APPLICATION_ID: i32 = 0x534b_4946;
const SCHEMA_VERSION: i32 = 1;

const CREATE: &str = "
CREATE TABLE log (
    rev        INTEGER PRIMARY KEY,
    key        TEXT    NOT NULL,
    create_rev INTEGER NOT NULL,
    prev_rev   INTEGER NOT NULL,
    deleted    INTEGER NOT NULL,
    value      BLOB    NOT NULL
);
CREATE INDEX log_key ON log (key, rev, deleted);
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO meta VALUES ('revision', 0), ('compact_rev', 0), ('compacted_upto', 0);
";

/// Revision counters kept in `meta`, written in the same transaction as the
/// rows they describe so a crash can never leave them behind the data.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Meta {
    /// The last committed revision; never reused, even once compacted away.
    pub revision: Revision,
    /// Reads and watches below this revision fail with `Compacted`.
    pub compact_rev: Revision,
    /// Rows up to this revision have been physically compacted.
    pub compacted_upto: Revision,
}

pub(super) fn read_meta(conn: &Connection) -> Result<Meta> {
    let mut stmt = conn.prepare_cached("SELECT name, value FROM meta")?;
    let mut meta = Meta::default();
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        let value: i64 = row.get(1)?;
        match name.as_str() {
            "revision" => meta.revision = value,
            "compact_rev" => meta.compact_rev = value,
            "compacted_upto" => meta.compacted_upto = value,
            _ => {}
        }
    }
    Ok(meta)
}

pub(super) fn write_meta(conn: &Connection, name: &str, value: i64) -> Result<()> {
    conn.prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")?
        .execute(rusqlite::params![name, value])?;
    Ok(())
}

/// Settings every connection needs.
fn configure(conn: &Connection) -> Result<()> {
    // FULL: the WAL is fsynced at every commit, so an acknowledged write is
    // durable; group commit is what keeps this cheap.
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA busy_timeout = 10000;
         PRAGMA temp_store = MEMORY;",
    )?;
    // Without the query planner stability guarantee, SQLite re-prepares a
    // statement whose plan might depend on a bound value each time a new
    // value is bound: every `key = ? ORDER BY rev DESC` lookup the writer
    // makes was parsed and planned again (5 % of the server's CPU under
    // load). The plan never depends on the value here: there are no stats.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Page cache per connection, in KiB. The writer's holds the index pages
/// every write walks; readers stream through rows and share the OS page
/// cache, so a small one each keeps a pool of them cheap.
const WRITER_CACHE_KIB: i64 = 16 * 1024;
const READER_CACHE_KIB: i64 = 2 * 1024;

fn cache_size(conn: &Connection, kib: i64) -> Result<()> {
    conn.execute_batch(&format!("PRAGMA cache_size = -{kib};"))?;
    Ok(())
}

/// Opens (creating if absent) the store at `path` for writing and verifies
/// it is a healthy Skiff store. Returns the connection and its counters.
pub(super) fn open_writer(path: &Path) -> Result<(Connection, Meta)> {
    let describe = |e: Error| match e {
        Error::Corrupt(msg) => Error::Corrupt(format!("{}: {msg}", path.display())),
        other => other,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Internal(format!("creating {}: {e}", dir.display())))?;
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(Error::from)
    .map_err(describe)?;
    init(&conn).map_err(describe)?;
    cache_size(&conn, WRITER_CACHE_KIB)?;
    let meta = read_meta(&conn).map_err(describe)?;
    Ok((conn, meta))
}

fn init(conn: &Connection) -> Result<()> {
    // The first read of the header is where a file that is not SQLite fails.
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| match Error::from(e) {
            Error::Corrupt(_) => Error::Corrupt("not a SQLite database (refusing to touch it)".into()),
            other => other,
        })?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    if app_id == 0 && tables == 0 {
        // Fresh file. auto_vacuum must be chosen before the first table.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL;")?;
        configure(conn)?;
        conn.execute_batch(&format!(
            "BEGIN; {CREATE} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        ))?;
        return Ok(());
    }
    if app_id != APPLICATION_ID {
        return Err(Error::Corrupt(format!(
            "a SQLite database that is not a Skiff store (application_id {app_id:#x}); refusing to use it"
        )));
    }
    let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version != SCHEMA_VERSION {
        return Err(Error::Corrupt(format!(
            "store schema version {version}, this Skiff understands version {SCHEMA_VERSION}"
        )));
    }
    conn.execute_batch("PRAGMA journal_mode = WAL;")?;
    configure(conn)?;
    // Damage is found here, at start, instead of as a failed read later.
    let check: String = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(Error::Corrupt(format!("integrity check failed: {check}")));
    }
    let has_meta: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE name = 'revision'", [], |r| r.get(0))
        .optional()?;
    if has_meta.is_none() {
        return Err(Error::Corrupt("the revision counter is missing".into()));
    }
    Ok(())
}

/// A connection for reads; the writer has already created and checked the file.
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let conn = open_secondary(path)?;
    conn.execute_batch("PRAGMA query_only = ON;")?;
    Ok(conn)
}

/// A connection for the checkpointer thread.
pub(super) fn open_checkpointer(path: &Path) -> Result<Connection> {
    open_secondary(path)
}

/// A connection beside the writer's, to a file the writer has checked.
fn open_secondary(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    configure(&conn)?;
    cache_size(&conn, READER_CACHE_KIB)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    #[test]
    fn statements_are_not_prepared_again_for_each_value_bound() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _) = super::open_writer(&dir.path().join("store.db")).unwrap();
        let sql = "SELECT rev, deleted FROM log WHERE key = ?1 ORDER BY rev DESC LIMIT 1";
        for i in 0..10 {
            let mut stmt = conn.prepare_cached(sql).unwrap();
            let _ = stmt.query_row([format!("/registry/pods/default/p-{i}")], |r| r.get::<_, i64>(0));
        }
        let stmt = conn.prepare_cached(sql).unwrap();
        assert_eq!(stmt.get_status(StatementStatus::Run), 10);
        assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0);
    }
}

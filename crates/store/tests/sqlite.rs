//! What only the embedded SQLite backend has to get right: refusing files
//! that are not a healthy Skiff store, and giving compacted space back.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use skiff_store::sqlite::SqliteBackend;
use skiff_store::{Backend, Error};

async fn refused(path: &Path) -> String {
    let before = std::fs::read(path).unwrap();
    let err = match SqliteBackend::open(path).await {
        Err(Error::Corrupt(msg)) => msg,
        Err(e) => panic!("expected a corruption error, got {e}"),
        Ok(_) => panic!("opened {}", path.display()),
    };
    assert_eq!(std::fs::read(path).unwrap(), before, "a refused file is left untouched");
    assert!(err.contains(&path.display().to_string()), "the error names the file: {err}");
    err
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, "apiVersion: v1\nkind: Config\n".repeat(500)).unwrap();
    let err = refused(&path).await;
    assert!(err.contains("not a SQLite database"), "{err}");
}

#[tokio::test]
async fn a_foreign_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE kine (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO kine VALUES (1, 'x');")
        .unwrap();
    drop(conn);
    let err = refused(&path).await;
    assert!(err.contains("not a Skiff store"), "{err}");
}

#[tokio::test]
async fn a_damaged_store_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let backend = SqliteBackend::open(&path).await.unwrap();
        for i in 0..3000 {
            backend.create(&format!("/k/{i:05}"), Bytes::from(vec![b'v'; 200])).await.unwrap();
        }
    }
    // Closed cleanly: everything is in the main file. Scribble over a page
    // in the middle of the table.
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096 * (bytes.len() / 4096 / 2);
    for b in &mut bytes[page + 8..page + 1000] {
        *b = 0xA5;
    }
    std::fs::write(&path, bytes).unwrap();
    let err = refused(&path).await;
    assert!(err.contains("integrity") || err.contains("malformed"), "{err}");
}

#[tokio::test]
async fn an_empty_file_becomes_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, "").unwrap();
    let backend = SqliteBackend::open(&path).await.unwrap();
    assert_eq!(backend.create("/a", Bytes::from_static(b"x")).await.unwrap(), 1);
}

fn disk_bytes(path: &Path) -> u64 {
    let wal = path.with_extension("db-wal");
    std::fs::metadata(path).unwrap().len() + std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

/// Waits for maintenance to finish. Compaction is paced (a quarter of the
/// writer's time, in slices each with its own fsync), so the test host's
/// disk sets its speed: 50,000 revisions took 27–39 s on a slow one.
async fn settle(backend: &SqliteBackend) {
    for _ in 0..2400 {
        if !backend.maintenance_pending() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("compaction did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compaction_gives_space_back() {
    const KEYS: usize = 500;
    const VERSIONS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let backend = std::sync::Arc::new(SqliteBackend::open(&path).await.unwrap());
    let value = |v: usize| Bytes::from(format!("{v:04}").repeat(256));
    for k in 0..KEYS {
        backend.create(&format!("/k/{k:04}"), value(0)).await.unwrap();
    }
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let backend = backend.clone();
            tokio::spawn(async move {
                for v in 1..VERSIONS {
                    for k in (w..KEYS).step_by(16) {
                        backend.update(&format!("/k/{k:04}"), value(v), None).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    settle(&backend).await;
    let before = disk_bytes(&path);
    let revision = backend.current_revision().await.unwrap();
    backend.compact(revision).await.unwrap();
    settle(&backend).await;
    // The WAL is truncated once writes have been idle for a second.
    let mut after = disk_bytes(&path);
    for _ in 0..100 {
        if after * 20 < before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = disk_bytes(&path);
    }
    assert!(
        after * 20 < before,
        "{KEYS} keys × {VERSIONS} versions: {before} bytes before compaction, {after} after"
    );
    // Every key still reads its last version, at the compacted revision too.
    for k in 0..KEYS {
        let key = format!("/k/{k:04}");
        assert_eq!(backend.get(&key, None).await.unwrap().unwrap().value, value(VERSIONS - 1));
        assert_eq!(backend.get(&key, Some(revision)).await.unwrap().unwrap().value, value(VERSIONS - 1));
    }
}

//! An acknowledged write survives `kill -9`.
//!
//! The test re-runs this test binary as a child that writes continuously
//! from several tasks and prints each write as soon as the store
//! acknowledges it; the parent kills the child with SIGKILL at a random
//! moment, reopens the store and checks every acknowledged write is there
//! and that revisions never go back or get reused. Several rounds, on the
//! same data.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use skiff_store::testing::EtcdServer;
use skiff_store::{Store, StoreConfig};

const CHILD_ENV: &str = "SKIFF_CRASH_CHILD_CONFIG";
const ROUNDS: usize = 6;
const WRITERS: usize = 16;

fn config_to_env(config: &StoreConfig) -> String {
    match config {
        StoreConfig::Sqlite { path } => format!("sqlite:{}", path.display()),
        StoreConfig::Etcd { endpoints, prefix } => format!("etcd:{}|{prefix}", endpoints[0]),
    }
}

fn config_from_env(s: &str) -> StoreConfig {
    if let Some(path) = s.strip_prefix("sqlite:") {
        StoreConfig::Sqlite { path: path.into() }
    } else {
        let (endpoint, prefix) = s.strip_prefix("etcd:").unwrap().split_once('|').unwrap();
        StoreConfig::Etcd {
            endpoints: vec![endpoint.into()],
            prefix: prefix.into(),
        }
    }
}

/// The child: not a test on its own (returns at once without the variable).
#[test]
fn crash_child() {
    let Ok(config) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: usize = std::env::var("SKIFF_CRASH_ROUND").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let store = Store::open(&config_from_env(&config)).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        for w in 0..WRITERS {
            let (store, tx) = (store.clone(), tx.clone());
            tokio::spawn(async move {
                for seq in 0.. {
                    let key = format!("/crash/{round}/{w}/{seq}");
                    let rev = store.create(&key, Bytes::from(key.clone())).await.unwrap();
                    // Updates exercise the other write path too.
                    let rev2 = store.update(&key, Bytes::from(format!("{key}+")), Some(rev)).await.unwrap();
                    tx.send(format!("ack {key} {rev2}")).unwrap();
                }
            });
        }
        drop(tx);
        // One writer of stdout, flushed per line, so a kill loses no printed ack.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        while let Some(line) = rx.recv().await {
            writeln!(out, "{line}").unwrap();
            out.flush().unwrap();
        }
    });
}

async fn crash_rounds(config: StoreConfig) {
    let mut last_revision = 0;
    let mut total_acked = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, config_to_env(&config))
            .env("SKIFF_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    let mut parts = l.strip_prefix("ack ")?.split(' ');
                    Some((parts.next()?.to_string(), parts.next()?.parse::<i64>().ok()?))
                })
                .collect::<Vec<_>>()
        });
        let delay = rand::rng().random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        assert!(!acked.is_empty(), "round {round}: the child acknowledged nothing in {delay} ms");

        let store = Store::open(&config).await.unwrap();
        let revision = store.current_revision().await.unwrap();
        let max_acked = acked.iter().map(|a| a.1).max().unwrap();
        assert!(revision >= max_acked, "round {round}: revision {revision} is behind acknowledged {max_acked}");
        assert!(revision >= last_revision, "round {round}: revision went back from {last_revision} to {revision}");
        for (key, rev) in &acked {
            let kv = store.get(key, None).await.unwrap().unwrap_or_else(|| panic!("round {round}: lost {key}"));
            assert_eq!(kv.value, Bytes::from(format!("{key}+")), "round {round}: {key}");
            assert_eq!(kv.mod_revision, *rev, "round {round}: {key}");
        }
        // The next write gets a revision never handed out before.
        let next = store.create(&format!("/crash/after/{round}"), Bytes::from_static(b"x")).await.unwrap();
        assert!(next > revision, "round {round}: revision {next} reused");
        last_revision = next;
        total_acked += acked.len();
        drop(store);
    }
    eprintln!("{ROUNDS} kill -9 rounds, {total_acked} acknowledged writes, none lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    crash_rounds(StoreConfig::Sqlite {
        path: dir.path().join("state.db"),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_acknowledged_writes_survive_sigkill() {
    let etcd = EtcdServer::start().unwrap();
    crash_rounds(StoreConfig::Etcd {
        endpoints: vec![etcd.endpoint()],
        prefix: "/skiff-crash".into(),
    })
    .await;
}

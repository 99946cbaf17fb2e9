//! The storage contract (ARCHITECTURE.md, "Storage contract"), one suite run
//! against embedded SQLite and against a real etcd.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{collect_until, shape, val, Harness, Kind, Model};
use futures::StreamExt;
use rand::Rng;
use skiff_store::{Error, EventKind, HubConfig, ListOptions, Progress, Store, MAX_VALUE_BYTES};
use tokio::sync::Mutex;

contract!(
    create_get_update_delete,
    cas_under_contention,
    delete_preconditions,
    paged_list_is_one_snapshot_while_writers_run,
    list_prefixes_do_not_leak,
    watch_delivers_exactly_once_in_order_from_any_revision,
    watch_resumes_across_restart,
    compacted_revisions_are_gone,
    future_revisions_are_refused,
    bad_continue_tokens_are_refused,
    values_up_to_the_limit,
    hundred_thousand_keys,
    slow_watcher_expires_without_stalling_others,
    idle_watch_gets_progress,
    backend_watch_is_exactly_once_when_behind,
    compactor_keeps_one_interval_of_history,
    cached_lists_are_consistent_while_writers_run,
    cached_lists_honour_minimum_revisions,
    backend_watch_answers_progress_requests,
);

async fn create_get_update_delete(kind: Kind) {
    let h = Harness::new(kind).await;
    let s = &h.store;
    let r1 = s.create("/t/a", val("1")).await.unwrap();
    assert!(r1 > 0);
    assert!(matches!(s.create("/t/a", val("x")).await, Err(Error::AlreadyExists { .. })));

    let kv = s.get("/t/a", None).await.unwrap().unwrap();
    assert_eq!((kv.value.as_ref(), kv.create_revision, kv.mod_revision), (&b"1"[..], r1, r1));

    let r2 = s.update("/t/a", val("2"), Some(r1)).await.unwrap();
    assert!(r2 > r1);
    match s.update("/t/a", val("3"), Some(r1)).await {
        Err(Error::Conflict { expected, current, .. }) => {
            assert_eq!(expected, r1);
            assert_eq!((current.value.as_ref(), current.mod_revision), (&b"2"[..], r2));
        }
        other => panic!("stale update: {other:?}"),
    }
    let r3 = s.update("/t/a", val("3"), None).await.unwrap();
    let kv = s.get("/t/a", None).await.unwrap().unwrap();
    assert_eq!((kv.value.as_ref(), kv.create_revision, kv.mod_revision), (&b"3"[..], r1, r3));

    // Older revisions stay readable until compacted.
    assert_eq!(s.get("/t/a", Some(r1)).await.unwrap().unwrap().value, val("1"));
    assert_eq!(s.get("/t/a", Some(r2)).await.unwrap().unwrap().value, val("2"));

    assert!(matches!(s.update("/t/missing", val("x"), None).await, Err(Error::NotFound { .. })));
    assert!(matches!(s.delete("/t/missing", None).await, Err(Error::NotFound { .. })));

    let (r4, prev) = s.delete("/t/a", None).await.unwrap();
    assert!(r4 > r3);
    assert_eq!((prev.value.as_ref(), prev.mod_revision), (&b"3"[..], r3));
    assert_eq!(s.get("/t/a", None).await.unwrap(), None);
    assert_eq!(s.get("/t/a", Some(r3)).await.unwrap().unwrap().value, val("3"));
    assert_eq!(s.current_revision().await.unwrap(), r4);

    // A new incarnation has a new create revision.
    let r5 = s.create("/t/a", val("again")).await.unwrap();
    assert_eq!(s.get("/t/a", None).await.unwrap().unwrap().create_revision, r5);
    // Failed writes do not consume revisions.
    let _ = s.create("/t/a", val("dup")).await;
    assert_eq!(s.current_revision().await.unwrap(), r5);
}

async fn cas_under_contention(kind: Kind) {
    const TASKS: usize = 16;
    const EACH: usize = 50;
    let h = Harness::new(kind).await;
    h.store.create("/t/counter", val("0")).await.unwrap();
    let revisions = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = h.store.clone();
        let revisions = revisions.clone();
        tasks.push(tokio::spawn(async move {
            let mut current = store.get("/t/counter", None).await.unwrap().unwrap();
            for _ in 0..EACH {
                loop {
                    let n: u64 = std::str::from_utf8(&current.value).unwrap().parse().unwrap();
                    match store.update("/t/counter", val((n + 1).to_string()), Some(current.mod_revision)).await {
                        Ok(rev) => {
                            revisions.lock().await.push(rev);
                            current.value = val((n + 1).to_string());
                            current.mod_revision = rev;
                            break;
                        }
                        Err(Error::Conflict { current: latest, .. }) => current = *latest,
                        Err(e) => panic!("update failed: {e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let kv = h.store.get("/t/counter", None).await.unwrap().unwrap();
    assert_eq!(kv.value, val((TASKS * EACH).to_string()));
    let revisions = revisions.lock().await;
    let unique: BTreeSet<_> = revisions.iter().collect();
    assert_eq!(unique.len(), TASKS * EACH, "every successful update has its own revision");
}

async fn delete_preconditions(kind: Kind) {
    let h = Harness::new(kind).await;
    let s = &h.store;
    let r1 = s.create("/t/d", val("v")).await.unwrap();
    let r2 = s.update("/t/d", val("w"), None).await.unwrap();
    match s.delete("/t/d", Some(r1)).await {
        Err(Error::Conflict { current, .. }) => assert_eq!(current.mod_revision, r2),
        other => panic!("stale delete: {other:?}"),
    }
    assert!(s.get("/t/d", None).await.unwrap().is_some(), "a refused delete deletes nothing");
    let (_, prev) = s.delete("/t/d", Some(r2)).await.unwrap();
    assert_eq!(prev.value, val("w"));
    assert!(matches!(s.delete("/t/d", Some(r2)).await, Err(Error::NotFound { .. })));
}

/// Random writes to a few hundred keys, recorded in a model.
async fn random_writes(store: Store, model: Arc<Mutex<Model>>, prefix: &'static str, keys: usize, ops: usize) {
    for i in 0..ops {
        let key = format!("{prefix}k{:04}", rand::rng().random_range(0..keys));
        let value = val(format!("v{i}-{}", rand::rng().random::<u32>()));
        let (rev, v) = match store.get(&key, None).await.unwrap() {
            None => match store.create(&key, value.clone()).await {
                Ok(rev) => (rev, Some(value)),
                Err(Error::AlreadyExists { .. }) => continue,
                Err(e) => panic!("{e}"),
            },
            Some(kv) if rand::rng().random_bool(0.3) => match store.delete(&key, Some(kv.mod_revision)).await {
                Ok((rev, _)) => (rev, None),
                Err(Error::Conflict { .. }) | Err(Error::NotFound { .. }) => continue,
                Err(e) => panic!("{e}"),
            },
            Some(kv) => match store.update(&key, value.clone(), Some(kv.mod_revision)).await {
                Ok(rev) => (rev, Some(value)),
                Err(Error::Conflict { .. }) | Err(Error::NotFound { .. }) => continue,
                Err(e) => panic!("{e}"),
            },
        };
        model.lock().await.record(rev, &key, v);
    }
}

async fn seed(store: &Store, model: &Mutex<Model>, prefix: &str, n: usize) {
    for i in 0..n {
        let key = format!("{prefix}k{i:04}");
        let value = val(format!("seed{i}"));
        let rev = store.create(&key, value.clone()).await.unwrap();
        model.lock().await.record(rev, &key, Some(value));
    }
}

async fn paged_list_is_one_snapshot_while_writers_run(kind: Kind) {
    let h = Harness::new(kind).await;
    let model = Arc::new(Mutex::new(Model::default()));
    seed(&h.store, &model, "/t/p/", 300).await;
    let writers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(random_writes(h.store.clone(), model.clone(), "/t/p/", 400, 150)))
        .collect();

    let mut snapshots = Vec::new();
    for _ in 0..5 {
        let mut opts = ListOptions {
            limit: Some(17),
            ..Default::default()
        };
        let mut pages = Vec::new();
        let mut revision = None;
        loop {
            let page = h.store.list("/t/p/", &opts).await.unwrap();
            revision.get_or_insert(page.revision);
            assert_eq!(Some(page.revision), revision, "every page is read at the first page's revision");
            let listed_so_far: usize = pages.iter().map(|p: &Vec<_>| p.len()).sum::<usize>() + page.items.len();
            pages.push(page.items);
            match page.continue_token {
                Some(token) => {
                    let remaining = page.remaining.expect("a page with more items says how many");
                    let total = model_total(&h.store, "/t/p/", revision.unwrap()).await;
                    assert_eq!(remaining as usize, total - listed_so_far);
                    opts.continue_token = Some(token);
                }
                None => break,
            }
            tokio::task::yield_now().await;
        }
        let listed: Vec<_> = pages.into_iter().flatten().collect();
        let keys: Vec<_> = listed.iter().map(|kv| kv.key.clone()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(keys, sorted, "pages are in key order without repeats");

        // The same snapshot read whole must agree, and so must the model
        // once the writes acknowledged up to that revision are known.
        let at = revision.unwrap();
        let whole = h
            .store
            .list(
                "/t/p/",
                &ListOptions {
                    revision: Some(at),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(whole.items, listed);
        for kv in &listed {
            assert!(kv.mod_revision <= at);
        }
        snapshots.push((at, listed));
    }
    for w in writers {
        w.await.unwrap();
    }
    let model = model.lock().await;
    // Checked once every writer has reported what it wrote.
    for (at, listed) in snapshots {
        let got: Vec<_> = listed.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
        let want: Vec<_> = model.state_at("/t/p/", at).into_iter().collect();
        assert_eq!(got, want, "list at {at} matches every acknowledged write up to {at}");
    }
}

async fn model_total(store: &Store, prefix: &str, at: i64) -> usize {
    let opts = ListOptions {
        revision: Some(at),
        ..Default::default()
    };
    store.list(prefix, &opts).await.unwrap().items.len()
}

async fn list_prefixes_do_not_leak(kind: Kind) {
    let h = Harness::new(kind).await;
    for key in ["/t/a", "/t/a/x", "/t/a/y", "/t/ab/z", "/t/a0", "/t/b/x"] {
        h.store.create(key, val(key)).await.unwrap();
    }
    let keys = |items: Vec<skiff_store::KeyValue>| items.into_iter().map(|kv| kv.key).collect::<Vec<_>>();
    let page = h.store.list("/t/a/", &ListOptions::default()).await.unwrap();
    assert_eq!(keys(page.items), ["/t/a/x", "/t/a/y"]);
    assert!(page.continue_token.is_none() && page.remaining.is_none());
    let page = h.store.list("/t/", &ListOptions::default()).await.unwrap();
    assert_eq!(page.items.len(), 6);

    let mut watch = h.store.watch("/t/a/", page.revision).await.unwrap();
    h.store.create("/t/ab/w", val("no")).await.unwrap();
    let rev = h.store.create("/t/a/w", val("yes")).await.unwrap();
    let events = collect_until(&mut watch, rev).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kv.key, "/t/a/w");
}

async fn watch_delivers_exactly_once_in_order_from_any_revision(kind: Kind) {
    let h = Harness::new(kind).await;
    let model = Arc::new(Mutex::new(Model::default()));
    let start = h.store.current_revision().await.unwrap();
    seed(&h.store, &model, "/t/w/", 50).await;
    // Unrelated keys interleave with watched ones.
    seed(&h.store, &model, "/t/other/", 20).await;

    // Watchers started before the writers, from the start, from the middle,
    // and while the writers run.
    let mid = start + 30;
    let mut early = vec![
        (start, h.store.watch("/t/w/", start).await.unwrap()),
        (mid, h.store.watch("/t/w/", mid).await.unwrap()),
    ];
    let writers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(random_writes(h.store.clone(), model.clone(), "/t/w/", 60, 100)))
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let now = h.store.current_revision().await.unwrap();
    early.push((now, h.store.watch("/t/w/", now).await.unwrap()));
    early.push((start + 5, h.store.watch("/t/w/", start + 5).await.unwrap()));
    for w in writers {
        w.await.unwrap();
    }
    let end = h.store.current_revision().await.unwrap();
    // And after the writes, from an old revision.
    early.push((start + 60, h.store.watch("/t/w/", start + 60).await.unwrap()));

    let model = model.lock().await;
    for (after, mut watch) in early {
        let got: Vec<_> = collect_until(&mut watch, end).await.iter().map(shape).collect();
        let want = model.events_after("/t/w/", after);
        assert_eq!(got.len(), want.len(), "event count for a watch after {after}");
        assert_eq!(got, want, "events after {after}");
    }
}

async fn watch_resumes_across_restart(kind: Kind) {
    let mut h = Harness::new(kind).await;
    let model = Arc::new(Mutex::new(Model::default()));
    seed(&h.store, &model, "/t/r/", 20).await;
    let mark = h.store.current_revision().await.unwrap();
    random_writes(h.store.clone(), model.clone(), "/t/r/", 20, 40).await;
    h.restart().await;
    random_writes(h.store.clone(), model.clone(), "/t/r/", 20, 40).await;
    let end = h.store.current_revision().await.unwrap();
    assert!(end > mark, "revisions keep growing across a restart");

    let mut watch = h.store.watch("/t/r/", mark).await.unwrap();
    let got: Vec<_> = collect_until(&mut watch, end).await.iter().map(shape).collect();
    assert_eq!(got, model.lock().await.events_after("/t/r/", mark));
}

async fn compacted_revisions_are_gone(kind: Kind) {
    let h = Harness::new(kind).await;
    let s = &h.store;
    for i in 0..30 {
        s.create(&format!("/t/c/{i:02}"), val("v0")).await.unwrap();
    }
    let page = s
        .list(
            "/t/c/",
            &ListOptions {
                limit: Some(10),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let old = page.revision;
    for i in 0..30 {
        s.update(&format!("/t/c/{i:02}"), val("v1"), None).await.unwrap();
    }
    s.delete("/t/c/05", None).await.unwrap();
    let compact_at = s.current_revision().await.unwrap();
    s.compact(compact_at).await.unwrap();

    let gone = |r: Result<_, Error>| matches!(r, Err(Error::Compacted { .. }));
    let at_old = ListOptions {
        revision: Some(old),
        ..Default::default()
    };
    assert!(gone(s.list("/t/c/", &at_old).await.map(|_| ())), "list below the compacted revision");
    let cont = ListOptions {
        continue_token: page.continue_token.clone(),
        ..Default::default()
    };
    assert!(gone(s.list("/t/c/", &cont).await.map(|_| ())), "continue below the compacted revision");
    assert!(gone(s.get("/t/c/00", Some(old)).await.map(|_| ())), "get below the compacted revision");
    match s.watch("/t/c/", old).await {
        Err(Error::Compacted { .. }) => {}
        Ok(mut w) => match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Err(Error::Compacted { .. }))) => {}
            other => panic!("watch below the compacted revision: {other:?}"),
        },
        Err(e) => panic!("watch below the compacted revision: {e}"),
    }

    // At and above the compacted revision everything is intact.
    let latest = s.list("/t/c/", &ListOptions::default()).await.unwrap();
    assert_eq!(latest.items.len(), 29);
    assert!(latest.items.iter().all(|kv| kv.value == val("v1")));
    let at = ListOptions {
        revision: Some(compact_at),
        ..Default::default()
    };
    assert_eq!(s.list("/t/c/", &at).await.unwrap().items, latest.items);
    let mut w = s.watch("/t/c/", compact_at).await.unwrap();
    let rev = s.update("/t/c/00", val("v2"), None).await.unwrap();
    let events = collect_until(&mut w, rev).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].prev.as_ref().unwrap().value, val("v1"), "the previous value survives compaction");
    // Compacting again to an older revision is harmless.
    s.compact(old).await.unwrap();
}

async fn future_revisions_are_refused(kind: Kind) {
    let h = Harness::new(kind).await;
    let rev = h.store.create("/t/f", val("x")).await.unwrap();
    let future = rev + 1000;
    assert!(matches!(h.store.get("/t/f", Some(future)).await, Err(Error::FutureRevision { .. })));
    let opts = ListOptions {
        revision: Some(future),
        ..Default::default()
    };
    assert!(matches!(h.store.list("/t/", &opts).await, Err(Error::FutureRevision { .. })));
    assert!(matches!(h.store.compact(future).await, Err(Error::FutureRevision { .. })));
}

async fn bad_continue_tokens_are_refused(kind: Kind) {
    let h = Harness::new(kind).await;
    h.store.create("/t/x", val("x")).await.unwrap();
    for token in ["", "garbage", "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MCwic3RhcnQiOiJhIn0"] {
        let opts = ListOptions {
            continue_token: Some(token.into()),
            ..Default::default()
        };
        assert!(
            matches!(h.store.list("/t/", &opts).await, Err(Error::InvalidArgument(_))),
            "token {token:?}"
        );
    }
    let page = h
        .store
        .list(
            "/t/",
            &ListOptions {
                limit: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(page.continue_token.is_none(), "one key, limit one: nothing more");
    let opts = ListOptions {
        revision: Some(page.revision),
        continue_token: Some(token_at(page.revision)),
        ..Default::default()
    };
    assert!(matches!(h.store.list("/t/", &opts).await, Err(Error::InvalidArgument(_))));
}

fn token_at(rev: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!(r#"{{"v":"meta.k8s.io/v1","rv":{rev},"start":"x\u0000"}}"#))
}

async fn values_up_to_the_limit(kind: Kind) {
    let h = Harness::new(kind).await;
    let big = Bytes::from(vec![7u8; MAX_VALUE_BYTES]);
    let rev = h.store.create("/t/big", big.clone()).await.unwrap();
    assert_eq!(h.store.get("/t/big", None).await.unwrap().unwrap().value, big);
    let mut w = h.store.watch("/t/", rev - 1).await.unwrap();
    let events = collect_until(&mut w, rev).await;
    assert_eq!(events[0].kv.value.len(), MAX_VALUE_BYTES);

    let too_big = Bytes::from(vec![7u8; MAX_VALUE_BYTES + 1]);
    match h.store.create("/t/bigger", too_big.clone()).await {
        Err(Error::TooLarge { size, limit }) => assert_eq!((size, limit), (MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES)),
        other => panic!("oversized create: {other:?}"),
    }
    assert!(matches!(h.store.update("/t/big", too_big, None).await, Err(Error::TooLarge { .. })));
    assert_eq!(h.store.get("/t/bigger", None).await.unwrap(), None, "nothing was written");
    assert_eq!(h.store.get("/t/big", None).await.unwrap().unwrap().value, big);
    assert_eq!(h.store.current_revision().await.unwrap(), rev);
}

async fn hundred_thousand_keys(kind: Kind) {
    const N: usize = 100_000;
    const WRITERS: usize = 64;
    let h = Harness::new(kind).await;
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = h.store.clone();
            tokio::spawn(async move {
                for i in (w..N).step_by(WRITERS) {
                    store.create(&format!("/t/many/{i:06}"), val(format!("value {i}"))).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut opts = ListOptions {
        limit: Some(10_000),
        ..Default::default()
    };
    let mut count = 0;
    let mut pages = 0;
    loop {
        let page = h.store.list("/t/many/", &opts).await.unwrap();
        for kv in &page.items {
            assert_eq!(kv.value, val(format!("value {}", kv.key[8..].parse::<usize>().unwrap())));
        }
        count += page.items.len();
        pages += 1;
        match page.continue_token {
            Some(t) => opts.continue_token = Some(t),
            None => break,
        }
    }
    assert_eq!((count, pages), (N, 10));
}

async fn slow_watcher_expires_without_stalling_others(kind: Kind) {
    let hub = HubConfig {
        watcher_buffer: 8,
        ..common::test_hub()
    };
    let h = Harness::with_hub(kind, hub).await;
    let start = h.store.current_revision().await.unwrap();
    let mut slow = h.store.watch("/t/s/", start).await.unwrap();
    let mut fast = h.store.watch("/t/s/", start).await.unwrap();
    // Write in lockstep with the fast watcher, so it is never more than a
    // batch behind, while the slow one is never read.
    for i in 0..300 {
        let rev = h.store.create(&format!("/t/s/{i:03}"), val("x")).await.unwrap();
        loop {
            let batch = tokio::time::timeout(Duration::from_secs(20), fast.next()).await.unwrap().unwrap();
            let batch = batch.unwrap_or_else(|e| panic!("the fast watcher failed at {i}: {e}"));
            if batch.revision >= rev {
                assert_eq!(batch.events.last().unwrap().kv.mod_revision, rev);
                break;
            }
        }
    }
    let mut expired = false;
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(5), slow.next()).await {
        if let Err(e) = item {
            assert!(matches!(e, Error::Expired), "{e}");
            expired = true;
            break;
        }
    }
    assert!(expired, "a watcher more than its buffer behind is expired");
}

async fn idle_watch_gets_progress(kind: Kind) {
    let h = Harness::new(kind).await;
    h.store.create("/t/elsewhere/a", val("x")).await.unwrap();
    let rev = h.store.create("/t/elsewhere/b", val("x")).await.unwrap();
    let mut w = h.store.watch("/t/quiet/", rev - 1).await.unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(10), w.next()).await.unwrap().unwrap().unwrap();
    assert!(batch.events.is_empty());
    assert!(batch.revision >= rev, "progress {} reaches the current revision {rev}", batch.revision);
    // Events still follow after progress.
    let rev = h.store.create("/t/quiet/a", val("x")).await.unwrap();
    let events = collect_until(&mut w, rev).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Put);
}

/// The backend's own watch (below the fan-out) keeps the contract too, also
/// when its consumer falls behind the writers and it has to catch up.
async fn backend_watch_is_exactly_once_when_behind(kind: Kind) {
    const WRITES: usize = 3000;
    let h = Harness::new(kind).await;
    let start = h.store.current_revision().await.unwrap();
    let mut watch = h.backend.watch("/t/raw/", start, Progress::every(Duration::from_millis(200))).await.unwrap();
    // Start the watch (it subscribes lazily), then write one commit at a time.
    let _ = tokio::time::timeout(Duration::from_millis(50), watch.next()).await;
    let store = h.store.clone();
    let writer = tokio::spawn(async move {
        let mut last = 0;
        for i in 0..WRITES {
            last = store.create(&format!("/t/raw/{i:05}"), val("x")).await.unwrap();
        }
        last
    });
    // Read slowly at first so the watch falls behind and replays from storage
    // while commits keep arriving.
    let mut events = Vec::new();
    let mut last = start;
    let end = loop {
        if events.len() < 200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let batch = tokio::time::timeout(Duration::from_secs(20), watch.next()).await.unwrap().unwrap().unwrap();
        for e in &batch.events {
            assert!(e.revision() > last, "revision {} after {last}", e.revision());
            last = e.revision();
        }
        events.extend(batch.events);
        if events.len() >= WRITES {
            break writer.await.unwrap();
        }
    };
    assert_eq!(events.len(), WRITES);
    assert_eq!(events.last().unwrap().revision(), end);
}

async fn compactor_keeps_one_interval_of_history(kind: Kind) {
    let h = Harness::new(kind).await;
    let old = h.store.create("/t/comp/a", val("1")).await.unwrap();
    let task = h.store.spawn_compactor(Duration::from_millis(300));
    h.store.update("/t/comp/a", val("2"), None).await.unwrap();
    // Within one interval the old revision is readable; two intervals on,
    // the compactor has compacted to a revision past it.
    assert_eq!(h.store.get("/t/comp/a", Some(old)).await.unwrap().unwrap().value, val("1"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        h.store.update("/t/comp/a", val("3"), None).await.unwrap();
        match h.store.get("/t/comp/a", Some(old)).await {
            Err(Error::Compacted { .. }) => break,
            Ok(_) if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("history was not compacted: {other:?}"),
        }
    }
    assert_eq!(h.store.get("/t/comp/a", None).await.unwrap().unwrap().value, val("3"));
    task.abort();
}

/// A list served by the watch cache is the store's snapshot at the revision
/// it names, and a consistent one (no resourceVersion) reflects every write
/// acknowledged before it began, also writes outside the cached prefix.
async fn cached_lists_are_consistent_while_writers_run(kind: Kind) {
    let h = Harness::new(kind).await;
    let model = Arc::new(Mutex::new(Model::default()));
    seed(&h.store, &model, "/t/p/", 200).await;
    h.store.cache("/t/p/");
    let writers: Vec<_> = (0..3)
        .map(|_| tokio::spawn(random_writes(h.store.clone(), model.clone(), "/t/p/", 300, 150)))
        .collect();
    for i in 0..20 {
        // Written outside the cache: only progress tells the cache about it.
        let elsewhere = h.store.create(&format!("/t/q/{i}"), val("x")).await.unwrap();
        let listed = h.store.list("/t/p/", &ListOptions::default()).await.unwrap();
        assert!(listed.revision >= elsewhere, "a consistent list at {} misses write {elsewhere}", listed.revision);
        let exact = ListOptions { revision: Some(listed.revision), ..Default::default() };
        assert_eq!(listed.items, h.store.list("/t/p/", &exact).await.unwrap().items, "cache and store agree at {}", listed.revision);

        // A first page from the cache continues from the store at its revision.
        let first = h.store.list("/t/p/", &ListOptions { limit: Some(7), ..Default::default() }).await.unwrap();
        let rest = ListOptions { continue_token: first.continue_token.clone(), ..Default::default() };
        let rest = h.store.list("/t/p/", &rest).await.unwrap();
        assert_eq!(rest.revision, first.revision);
        let whole = ListOptions { revision: Some(first.revision), ..Default::default() };
        let whole = h.store.list("/t/p/", &whole).await.unwrap().items;
        assert_eq!(first.remaining, Some(whole.len() as i64 - 7));
        assert_eq!([first.items, rest.items].concat(), whole);
    }
    for w in writers {
        w.await.unwrap();
    }
    let listed = h.store.list("/t/p/", &ListOptions::default()).await.unwrap();
    let got: Vec<_> = listed.items.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
    let want: Vec<_> = model.lock().await.state_at("/t/p/", listed.revision).into_iter().collect();
    assert_eq!(got, want, "the cache holds every acknowledged write, deletes included");
}

async fn cached_lists_honour_minimum_revisions(kind: Kind) {
    let h = Harness::new(kind).await;
    h.store.cache("/t/m/");
    let rev = h.store.create("/t/m/a", val("1")).await.unwrap();
    let at_least = |min| ListOptions { min_revision: Some(min), ..Default::default() };
    let any = h.store.list("/t/m/", &at_least(0)).await.unwrap();
    assert!(any.revision >= rev && any.items.len() == 1);
    let rev = h.store.create("/t/m/b", val("2")).await.unwrap();
    let fresh = h.store.list("/t/m/", &at_least(rev)).await.unwrap();
    assert!(fresh.revision >= rev && fresh.items.len() == 2);
    match h.store.list("/t/m/", &at_least(rev + 1000)).await {
        Err(Error::FutureRevision { requested, current }) => assert_eq!((requested, current), (rev + 1000, rev)),
        other => panic!("a future minimum revision: {other:?}"),
    }
    // Below the cached prefix too, as a namespace's list is.
    let below = h.store.list("/t/m/a", &ListOptions::default()).await.unwrap();
    assert_eq!(below.items.len(), 1);
}

/// Asked for progress, a backend watch reports a revision covering every
/// write acknowledged before the request, long before its idle interval.
async fn backend_watch_answers_progress_requests(kind: Kind) {
    let h = Harness::new(kind).await;
    if !h.backend.answers_progress_requests() {
        // Debian 12's etcd 3.4.23 predates ordered progress; the caches
        // then serve only what events tell them (the other cache tests).
        assert!(matches!(kind, Kind::Etcd), "SQLite always answers");
        return;
    }
    let start = h.store.current_revision().await.unwrap();
    let progress = Progress::every(Duration::from_secs(3600));
    let mut watch = h.backend.watch("/t/silent/", start, progress.clone()).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(50), watch.next()).await;
    let rev = h.store.create("/t/loud/a", val("x")).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        progress.requested.notify_one();
        let batch = tokio::time::timeout_at(deadline, watch.next()).await.expect("progress within 5 s").unwrap().unwrap();
        assert!(batch.events.is_empty());
        if batch.revision >= rev {
            break;
        }
    }
}

//! What only the etcd backend has to get right: a clear error and patient
//! retries while etcd is away, recovery when it returns, and several Skiff
//! servers sharing one etcd.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{collect_until, Harness, Kind};
use futures::StreamExt;
use skiff_store::etcd::EtcdBackend;
use skiff_store::testing::EtcdServer;
use skiff_store::Error;

#[tokio::test]
async fn unreachable_etcd_is_a_clear_error() {
    let etcd = EtcdServer::stopped().unwrap();
    let started = Instant::now();
    match EtcdBackend::try_connect(&[etcd.endpoint()], "").await {
        Err(Error::Unavailable(msg)) => {
            assert!(msg.contains(&format!("cannot reach etcd at {}", etcd.endpoint())), "{msg}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("connected to nothing"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "the error comes promptly");
}

#[tokio::test]
async fn connect_retries_until_etcd_starts() {
    let mut etcd = EtcdServer::stopped().unwrap();
    let endpoint = etcd.endpoint();
    let connecting = tokio::spawn(async move { EtcdBackend::connect(&[endpoint], "/p").await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!connecting.is_finished(), "connect keeps retrying while etcd is down");
    etcd.restart().unwrap();
    let backend = tokio::time::timeout(Duration::from_secs(30), connecting)
        .await
        .expect("connect succeeds soon after etcd starts")
        .unwrap()
        .unwrap();
    use skiff_store::Backend;
    backend.create("/k", Bytes::from_static(b"v")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_recovers_when_etcd_returns() {
    let mut h = Harness::new(Kind::Etcd).await;
    let start = h.store.current_revision().await.unwrap();
    let mut watch = h.store.watch("/t/", start).await.unwrap();
    for i in 0..5 {
        h.store.create(&format!("/t/before/{i}"), Bytes::from_static(b"x")).await.unwrap();
    }
    let etcd = h.etcd.as_mut().unwrap();
    etcd.kill();
    match h.store.create("/t/during", Bytes::from_static(b"x")).await {
        Err(Error::Unavailable(msg)) => assert!(msg.contains("etcd"), "{msg}"),
        other => panic!("a write while etcd is down: {other:?}"),
    }
    etcd.restart().unwrap();
    // The client reconnects by itself; writes succeed again shortly.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = 0;
    for i in 0..5 {
        loop {
            match h.store.create(&format!("/t/after/{i}"), Bytes::from_static(b"y")).await {
                Ok(rev) => {
                    last = rev;
                    break;
                }
                Err(Error::Unavailable(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) => panic!("write after etcd returned: {e}"),
            }
        }
    }
    // The watch opened before the outage delivers everything, once.
    let keys: Vec<_> = collect_until(&mut watch, last).await.into_iter().map(|e| e.kv.key).collect();
    let want: Vec<_> = (0..5)
        .map(|i| format!("/t/before/{i}"))
        .chain((0..5).map(|i| format!("/t/after/{i}")))
        .collect();
    assert_eq!(keys, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_sharing_etcd_see_each_others_writes() {
    let h = Harness::new(Kind::Etcd).await;
    let other = h.second().await;
    let start = h.store.current_revision().await.unwrap();
    let mut on_other = other.watch("/t/shared/", start).await.unwrap();
    let mut latencies = Vec::new();
    for i in 0..50 {
        let written = Instant::now();
        let rev = h.store.create(&format!("/t/shared/{i}"), Bytes::from_static(b"v")).await.unwrap();
        loop {
            let batch = tokio::time::timeout(Duration::from_secs(10), on_other.next()).await.unwrap().unwrap().unwrap();
            if batch.events.iter().any(|e| e.kv.mod_revision == rev) {
                latencies.push(written.elapsed());
                break;
            }
        }
        // And the other server reads it directly.
        assert!(other.get(&format!("/t/shared/{i}"), None).await.unwrap().is_some());
    }
    latencies.sort();
    eprintln!("write on one server → event on the other: p50 {:?}, max {:?}", latencies[25], latencies[49]);
    // Conditional writes from both servers serialize through etcd.
    let rev = other.create("/t/shared/x", Bytes::from_static(b"1")).await.unwrap();
    h.store.update("/t/shared/x", Bytes::from_static(b"2"), Some(rev)).await.unwrap();
    assert!(matches!(
        other.update("/t/shared/x", Bytes::from_static(b"3"), Some(rev)).await,
        Err(Error::Conflict { .. })
    ));
}

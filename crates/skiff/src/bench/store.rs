//! `skiff bench store`: the two backends side by side in one run, with raw
//! etcd (the etcd client alone, and `etcdctl check perf`) as the reference.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use skiff_store::sqlite::SqliteBackend;
use skiff_store::testing::{dir_size, EtcdServer};
// `dir_size` weighs SQLite's file and its WAL; `EtcdServer::db_size` weighs
// etcd's database file (its WAL is preallocated in 64 MiB segments).
use skiff_store::{HubConfig, ListOptions, Store};

use super::{ms, percentile};

#[derive(clap::Args)]
pub struct Args {
    /// Which backends to measure.
    #[arg(long, value_enum, default_value = "both")]
    backend: Which,
    /// Use this etcd instead of starting a private one on loopback (its disk
    /// use is then not measured).
    #[arg(long)]
    etcd_endpoint: Option<String>,
    /// Seconds each throughput run lasts.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 1024)]
    value_bytes: usize,
    /// Watchers in the fan-out run.
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Events per second written during the fan-out run.
    #[arg(long, default_value_t = 1000)]
    watch_rate: u64,
    /// Skip `etcdctl check perf` (it takes a minute).
    #[arg(long)]
    skip_etcdctl: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Which {
    Sqlite,
    Etcd,
    Both,
}

const COLUMNS: [&str; 3] = ["SQLite", "etcd backend", "raw etcd"];
const SQLITE: usize = 0;
const ETCD: usize = 1;
const RAW: usize = 2;

#[derive(Default)]
struct Report {
    rows: Vec<(String, [String; 3])>,
}

impl Report {
    fn set(&mut self, metric: &str, column: usize, value: String) {
        println!("  {metric} [{}]: {value}", COLUMNS[column]);
        let row = match self.rows.iter().position(|r| r.0 == metric) {
            Some(i) => &mut self.rows[i],
            None => {
                self.rows.push((metric.to_string(), Default::default()));
                self.rows.last_mut().unwrap()
            }
        };
        row.1[column] = value;
    }

    fn print(&self) {
        println!("\n| metric | {} |", COLUMNS.join(" | "));
        println!("|---|---|---|---|");
        for (metric, values) in &self.rows {
            let cells: Vec<_> = values.iter().map(|v| if v.is_empty() { "–" } else { v.as_str() }).collect();
            println!("| {metric} | {} |", cells.join(" | "));
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut report = Report::default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("skiff bench store: {cores} cores, {} B values, {} s runs", args.value_bytes, args.seconds);

    if args.backend != Which::Etcd {
        println!("\n== SQLite (embedded)");
        let dir = tempfile::Builder::new().prefix("skiff-bench-").tempdir()?;
        let path = dir.path().join("state.db");
        let sqlite = Arc::new(SqliteBackend::open(&path).await?);
        let store = Store::with_backend(sqlite.clone(), HubConfig::default());
        measure(&store, SQLITE, &args, &mut report).await?;
        let settle = || async {
            while sqlite.maintenance_pending() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(())
        };
        // Vacuum is part of SQLite's compaction: nothing more to reclaim.
        let reclaim = || async { Ok(()) };
        disk_and_compaction(&store, SQLITE, &args, &mut report, || dir_size(dir.path()), settle, reclaim).await?;
    }

    if args.backend != Which::Sqlite {
        let server = match &args.etcd_endpoint {
            Some(_) => None,
            None => Some(EtcdServer::start().context("starting etcd (is etcd-server installed?)")?),
        };
        let endpoint = args
            .etcd_endpoint
            .clone()
            .unwrap_or_else(|| server.as_ref().unwrap().endpoint());
        println!("\n== etcd backend ({endpoint})");
        let backend = Arc::new(skiff_store::etcd::EtcdBackend::try_connect(std::slice::from_ref(&endpoint), "").await?);
        let store = Store::with_backend(backend, HubConfig::default());
        measure(&store, ETCD, &args, &mut report).await?;
        let client = etcd_client::Client::connect([endpoint.as_str()], None).await?;
        // etcd compacts in the background of its own accord.
        let settle = || async { Ok(()) };
        // etcd keeps freed pages until defragmented, which operators run
        // after compacting; it blocks writes, so it is not in the stall figure.
        let reclaim = || async {
            client.maintenance_client().defragment().await?;
            Ok(())
        };
        let db_size = || server.as_ref().map_or(0, |s| s.db_size());
        disk_and_compaction(&store, ETCD, &args, &mut report, db_size, settle, reclaim).await?;

        println!("\n== raw etcd (the etcd client alone, no Skiff)");
        for writers in [1, 16, 64] {
            // What a create costs etcd itself: the same compare-and-put
            // transaction the backend sends, and a plain put for reference.
            let (rate, mut lat) = raw_writes(&client, writers, &args, true).await?;
            report.set(&format!("creates/s, {writers} writers"), RAW, format!("{rate:.0}"));
            report.set(&format!("create p99, {writers} writers"), RAW, ms(percentile(&mut lat, 99.0)));
            let (rate, _) = raw_writes(&client, writers, &args, false).await?;
            report.set(&format!("plain puts/s, {writers} writers"), RAW, format!("{rate:.0}"));
        }
        if !args.skip_etcdctl {
            println!("  running `etcdctl check perf --load=l` (60 s)…");
            match etcdctl_check_perf(&endpoint) {
                Ok(line) => report.set("etcdctl check perf --load=l", RAW, line),
                Err(e) => println!("  etcdctl check perf failed: {e:#}"),
            }
        }
    }
    report.print();
    Ok(())
}

fn value(size: usize, stamp: u64) -> Bytes {
    let mut v = vec![b'x'; size.max(8)];
    v[..8].copy_from_slice(&stamp.to_le_bytes());
    Bytes::from(v)
}

async fn measure(store: &Store, column: usize, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    for writers in [1, 16, 64] {
        let (rate, mut lat) = creates(store, &format!("/bench/create/{writers}/"), writers, args).await?;
        report.set(&format!("creates/s, {writers} writers"), column, format!("{rate:.0}"));
        report.set(&format!("create p99, {writers} writers"), column, ms(percentile(&mut lat, 99.0)));
    }

    println!("  writing 10,000 keys to list…");
    fill(store, "/bench/list/", 10_000, args.value_bytes).await?;
    let mut whole = Vec::new();
    let mut paged = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let page = store.list("/bench/list/", &ListOptions::default()).await?;
        whole.push(t.elapsed());
        anyhow::ensure!(page.items.len() == 10_000, "listed {}", page.items.len());
        let t = Instant::now();
        let mut opts = ListOptions {
            limit: Some(500),
            ..Default::default()
        };
        let mut n = 0;
        loop {
            let page = store.list("/bench/list/", &opts).await?;
            n += page.items.len();
            match page.continue_token {
                Some(c) => opts.continue_token = Some(c),
                None => break,
            }
        }
        paged.push(t.elapsed());
        anyhow::ensure!(n == 10_000, "paged {n}");
    }
    report.set("list 10,000 keys (median)", column, ms(percentile(&mut whole, 50.0)));
    report.set("list 10,000 keys in pages of 500 (median)", column, ms(percentile(&mut paged, 50.0)));

    fan_out(store, column, args, report).await
}

/// Each writer creates keys back to back until the time is up.
async fn creates(store: &Store, prefix: &str, writers: usize, args: &Args) -> anyhow::Result<(f64, Vec<Duration>)> {
    let (store, prefix, v) = (store.clone(), prefix.to_string(), value(args.value_bytes, 0));
    timed_writers_for(writers, args.seconds, move |w, i| {
        let (store, key, v) = (store.clone(), format!("{prefix}{w}/{i}"), v.clone());
        async move { store.create(&key, v).await.map(|_| ()).map_err(Into::into) }
    })
    .await
}

/// `writers` tasks each running `op(writer, n)` back to back for `seconds`:
/// operations per second over all, and each operation's latency.
async fn timed_writers_for<F, Fut>(writers: usize, seconds: u64, op: F) -> anyhow::Result<(f64, Vec<Duration>)>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    op(w, lat.len()).await?;
                    lat.push(t.elapsed());
                }
                anyhow::Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all.len() as f64 / started.elapsed().as_secs_f64(), all))
}

async fn fill(store: &Store, prefix: &str, n: usize, size: usize) -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..64)
        .map(|w| {
            let (store, prefix, v) = (store.clone(), prefix.to_string(), value(size, 0));
            tokio::spawn(async move {
                for i in (w..n).step_by(64) {
                    store.create(&format!("{prefix}{i:06}"), v.clone()).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Many watchers on one prefix while writers produce events at a fixed rate;
/// each event carries its send time, each watcher notes the delay.
async fn fan_out(store: &Store, column: usize, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let prefix = "/bench/watch/";
    let events = (args.watch_rate * args.seconds) as usize;
    println!("  {} watchers, {events} events at {}/s…", args.watchers, args.watch_rate);
    let epoch = Instant::now();
    let from = store.current_revision().await?;
    let mut watchers = Vec::new();
    for _ in 0..args.watchers {
        let mut watch = store.watch(prefix, from).await?;
        watchers.push(tokio::spawn(async move {
            let mut delays = Vec::with_capacity(events);
            while delays.len() < events {
                let batch = watch.next().await.context("watch ended")??;
                let now = epoch.elapsed();
                for e in &batch.events {
                    let sent = u64::from_le_bytes(e.kv.value[..8].try_into().unwrap());
                    delays.push(now.saturating_sub(Duration::from_nanos(sent)));
                }
            }
            anyhow::Ok((delays, epoch.elapsed()))
        }));
    }
    const WRITERS: u64 = 8;
    let first_send = epoch.elapsed();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            let (size, per_writer) = (args.value_bytes, events as u64 / WRITERS);
            let period = Duration::from_secs_f64(WRITERS as f64 / args.watch_rate as f64);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                for i in 0..per_writer {
                    tick.tick().await;
                    let stamp = epoch.elapsed().as_nanos() as u64;
                    store.create(&format!("{prefix}{w}/{i}"), value(size, stamp)).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    let mut delays = Vec::new();
    let mut expired = 0;
    let mut last_receive = Duration::ZERO;
    for w in watchers {
        match w.await? {
            Ok((d, done)) => {
                delays.extend(d);
                last_receive = last_receive.max(done);
            }
            Err(_) => expired += 1,
        }
    }
    let delivered = delays.len() as f64;
    let rate = delivered / (last_receive - first_send).as_secs_f64();
    let label = format!("watch fan-out, {} watchers × {}/s", args.watchers, args.watch_rate);
    report.set(&format!("{label}: events delivered/s"), column, format!("{rate:.0}"));
    report.set(&format!("{label}: delay p50"), column, ms(percentile(&mut delays, 50.0)));
    report.set(&format!("{label}: delay p99"), column, ms(percentile(&mut delays, 99.0)));
    report.set(&format!("{label}: watchers expired"), column, expired.to_string());
    Ok(())
}

/// Bytes on disk per object after 100,000 updates and a compaction, and how
/// long writers wait while that compaction runs.
async fn disk_and_compaction<D, S, SF, R, RF>(
    store: &Store,
    column: usize,
    args: &Args,
    report: &mut Report,
    disk: D,
    settle: S,
    reclaim: R,
) -> anyhow::Result<()>
where
    D: Fn() -> u64,
    S: Fn() -> SF,
    SF: std::future::Future<Output = anyhow::Result<()>>,
    R: Fn() -> RF,
    RF: std::future::Future<Output = anyhow::Result<()>>,
{
    const OBJECTS: usize = 10_000;
    const UPDATES: usize = 100_000;
    let prefix = "/bench/disk/";
    println!("  {OBJECTS} objects, {UPDATES} updates…");
    fill(store, prefix, OBJECTS, args.value_bytes).await?;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (store, v) = (store.clone(), value(args.value_bytes, 1));
            tokio::spawn(async move {
                for _ in 0..UPDATES / 64 {
                    let key = format!("{prefix}{:06}", rand::rng().random_range(0..OBJECTS));
                    store.update(&key, v.clone(), None).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let before = disk();

    // Writers keep going while the compaction runs; their latency is the
    // stall. The same writers for the same time without a compaction are the
    // baseline, so the disk's own latency tail is not blamed on compaction.
    let mut baseline = timed_writers(store, "/bench/stall/base/", args.value_bytes, async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(())
    })
    .await?;
    let t = Instant::now();
    let mut during = timed_writers(store, "/bench/stall/compact/", args.value_bytes, async {
        store.compact(store.current_revision().await?).await?;
        settle().await
    })
    .await?;
    let compaction = t.elapsed();
    report.set("compaction of 100,000 revisions", column, ms(compaction));
    for (label, lat) in [("without", &mut baseline), ("during", &mut during)] {
        let p99 = percentile(lat, 99.0);
        let max = percentile(lat, 100.0);
        report.set(&format!("16 writers {label} compaction: p99 / max"), column, format!("{} / {}", ms(p99), ms(max)));
    }

    // Compact away the stall writers' history too, then weigh the files once
    // writes have been idle long enough for SQLite to truncate its WAL.
    store.compact(store.current_revision().await?).await?;
    settle().await?;
    reclaim().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = disk();
    if after > 0 {
        let objects = store.list("/bench/", &ListOptions::default()).await?.items.len();
        report.set("disk before compaction", column, format!("{:.1} MiB", before as f64 / 1048576.0));
        report.set(
            &format!("database bytes per object after compaction ({} B values)", args.value_bytes),
            column,
            format!("{} B", after / objects as u64),
        );
    }
    Ok(())
}

/// 16 writers creating keys until `work` is done; their latencies.
async fn timed_writers(
    store: &Store,
    prefix: &str,
    size: usize,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<Vec<Duration>> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let (store, stop, prefix, v) = (store.clone(), stop.clone(), prefix.to_string(), value(size, 2));
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = Instant::now();
                    store.create(&format!("{prefix}{w}/{}", lat.len()), v.clone()).await?;
                    lat.push(t.elapsed());
                }
                anyhow::Ok(lat)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let worked = work.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut lat = Vec::new();
    for w in writers {
        lat.extend(w.await??);
    }
    worked.map(|_| lat)
}

async fn raw_writes(
    client: &etcd_client::Client,
    writers: usize,
    args: &Args,
    transaction: bool,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let v = value(args.value_bytes, 0).to_vec();
    let kv = client.kv_client();
    timed_writers_for(writers, args.seconds, move |w, i| {
        let (mut kv, v) = (kv.clone(), v.clone());
        let key = format!("/bench/raw/{transaction}/{writers}/{w}/{i}");
        async move {
            if transaction {
                let txn = Txn::new()
                    .when([Compare::mod_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key, v, None)]);
                kv.txn(txn).await?;
            } else {
                kv.put(key, v, None).await?;
            }
            Ok(())
        }
    })
    .await
}

/// The throughput line of `etcdctl check perf --load=l`.
fn etcdctl_check_perf(endpoint: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "check", "perf", "--load", "l", "--auto-compact", "--auto-defrag"])
        .output()
        .context("running etcdctl")?;
    // Verdicts go to stderr when they pass and to stdout, after the progress
    // bar, when they fail.
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    text.split(['\n', '\r'])
        .find(|l| l.contains("Throughput"))
        .map(|l| l.trim().to_string())
        .with_context(|| format!("no throughput in etcdctl's output: {text}"))
}

//! `skiff bench api`: a real `skiff server` process (this binary) on a
//! fresh data directory, driven over HTTPS by the kube client.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

use super::{ms, percentile};

#[derive(clap::Args)]
pub struct Args {
    /// Clients creating pods concurrently.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds of the create-throughput run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Concurrent watches in the fan-out run.
    #[arg(long, default_value_t = 1000)]
    watches: usize,
    /// Pods created in one burst while the watches are open; each burst
    /// of the list gets watches of its own.
    #[arg(long, value_delimiter = ',', default_value = "50,1000")]
    burst: Vec<usize>,
    /// Create the watched pods at this many per second instead of all at
    /// once (0): delivery delay at a rate the machine can sustain.
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// Pods held when measuring memory at scale.
    #[arg(long, default_value_t = 100_000)]
    pods: usize,
}

pub(super) struct ServerProcess {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    pub(super) fn rss_mib(&self) -> f64 {
        super::rss_mib(&self.child.id().to_string())
    }

    pub(super) fn cpu_seconds(&self) -> f64 {
        super::cpu_seconds(&self.child.id().to_string())
    }

    pub(super) fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// A client of this server authenticating with a bearer token.
    pub(super) async fn client_with_token(&self, token: &str) -> Result<Client> {
        let kc = Kubeconfig::read_from(self._dir.path().join("kubeconfig.yaml"))?;
        let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
        config.auth_info = kube::config::AuthInfo { token: Some(token.to_string().into()), ..Default::default() };
        Ok(Client::try_from(config)?)
    }
}

/// A server with `extra` flags; the API bench measures the API server
/// alone (`--disable-scheduler --disable-controller-manager`).
pub(super) async fn start_server(extra: &[&str]) -> Result<(ServerProcess, Client, Duration)> {
    spawn_server(false, extra).await
}

/// A server that runs its node agent (node `bench-node`, a bridge and pod
/// CIDR of its own), for the benchmarks of real pods.
/// The control plane alone, and a `skiff agent` of its own (node
/// `bench-node`) joined to it with a bootstrap token, as a second node
/// would join.
pub(super) async fn start_server_and_agent() -> Result<(ServerProcess, ServerProcess, Client)> {
    let (server, client, _) = spawn_server(false, &["--cluster-cidr", "10.249.0.0/16", "--flannel-backend", "none", "--disable-kube-proxy", "--disable", "coredns"]).await?;
    let exe = std::env::current_exe()?;
    let created = Command::new(&exe).args(["token", "create", "--kubeconfig"]).arg(server.dir().join("kubeconfig.yaml")).output()?;
    anyhow::ensure!(created.status.success(), "skiff token create: {}", String::from_utf8_lossy(&created.stderr));
    let token = String::from_utf8(created.stdout)?.trim().to_string();
    let kubeconfig = std::fs::read_to_string(server.dir().join("kubeconfig.yaml"))?;
    let url = kubeconfig.lines().find_map(|l| l.trim().strip_prefix("server: ")).context("the kubeconfig names no server")?.to_string();
    let dir = tempfile::Builder::new().prefix("skiff-bench-agent-").tempdir()?;
    let child = Command::new(&exe)
        .args(["agent", "--server", &url, "--token", &token, "--node-name", "bench-node", "--kubelet-port", "0", "--cni-bridge", "skbench"])
        .arg("--ca-file")
        .arg(server.dir().join("data/server/tls/ca.crt"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--agent-run-dir")
        .arg(dir.path().join("run"))
        .arg("--pod-log-dir")
        .arg(dir.path().join("pod-logs"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok((server, ServerProcess { child, _dir: dir }, client))
}

async fn spawn_server(agent: bool, extra: &[&str]) -> Result<(ServerProcess, Client, Duration)> {
    let dir = tempfile::Builder::new().prefix("skiff-bench-").tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let started = Instant::now();
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["server", "--bind-address", "127.0.0.1"]);
    if agent {
        let run = dir.path().join("run");
        let logs = dir.path().join("pod-logs");
        command.args(["--node-name", "bench-node", "--kubelet-port", "0", "--cni-bridge", "skbench", "--cluster-cidr", "10.249.0.0/16"]);
        // Pods on one node's bridge: nothing of the cluster network is left on this host.
        command.args(["--flannel-backend", "none", "--disable-kube-proxy", "--disable", "coredns"]);
        command.arg("--agent-run-dir").arg(run).arg("--pod-log-dir").arg(logs);
    } else {
        command.arg("--disable-agent");
    }
    let child = command
        .arg("--https-listen-port")
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--write-kubeconfig")
        .arg(&kubeconfig)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let process = ServerProcess { child, _dir: dir };
    let client = loop {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("skiff server did not become ready");
        }
        if let Ok(client) = client_for(&kubeconfig).await {
            let req = http::Request::get("/readyz").body(Vec::new())?;
            if client.request_text(req).await.is_ok_and(|t| t == "ok") {
                break client;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    Ok((process, client, started.elapsed()))
}

async fn client_for(kubeconfig: &Path) -> Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// A pod of about 2 KiB of JSON, like a small real workload's.
fn pod(name: &str, stamp: u128) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {"app": "bench", "tier": "backend", "app.kubernetes.io/version": "1.2.3"},
            "annotations": {"bench/sent": stamp.to_string(), "bench/padding": "x".repeat(900)},
        },
        "spec": {
            "containers": [{
                "name": "main",
                "image": "registry.local/busybox:1.36",
                "command": ["sh", "-c", "sleep 3600"],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}, {"name": "MODE", "value": "production"}],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
        },
    }))
    .expect("a valid pod")
}

/// A namespace with its `default` ServiceAccount, which pods need
/// (ServiceAccount admission) and the controller manager would add.
pub(super) async fn namespace(client: &Client, name: &str) -> Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await?;
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "default"}}))?;
    match Api::<ServiceAccount>::namespaced(client.clone(), name).create(&PostParams::default(), &account).await {
        Ok(_) | Err(kube::Error::Api(kube::error::ErrorResponse { code: 409, .. })) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `clients` tasks creating pods named `{prefix}{task}-{n}`, until `until`
/// says stop (called with the total so far); returns latencies.
async fn create_pods(client: &Client, ns: &str, prefix: &str, clients: usize, until: Arc<dyn Fn(usize, Instant) -> bool + Send + Sync>) -> Result<Vec<Duration>> {
    let started = Instant::now();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|t| {
            let (pods, count, until, prefix) = (Api::<Pod>::namespaced(client.clone(), ns), count.clone(), until.clone(), prefix.to_string());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let n = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if until(n, started) {
                        return anyhow::Ok(lat);
                    }
                    let t0 = Instant::now();
                    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
                    pods.create(&PostParams::default(), &pod(&format!("{prefix}{t}-{n}"), stamp)).await?;
                    lat.push(t0.elapsed());
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// Creates `total` pods at `rate` per second, each stamped when sent.
async fn create_paced(client: &Client, ns: &str, total: usize, rate: u32) -> Result<()> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    let mut creating = tokio::task::JoinSet::new();
    for n in 0..total {
        tick.tick().await;
        let pods = pods.clone();
        creating.spawn(async move {
            let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
            pods.create(&PostParams::default(), &pod(&format!("paced-{n}"), stamp)).await?;
            anyhow::Ok(())
        });
    }
    while let Some(done) = creating.join_next().await {
        done??;
    }
    Ok(())
}

/// The `bench/sent` annotation of a watch event line.
fn sent_stamp(line: &str) -> Option<u128> {
    let at = line.find(r#""bench/sent":""#)? + r#""bench/sent":""#.len();
    line[at..].split('"').next()?.parse().ok()
}

async fn timed_get(client: &Client, path: &str, accept: &str) -> Result<(Duration, usize)> {
    let req = http::Request::get(path).header("Accept", accept).body(Vec::new())?;
    let t = Instant::now();
    let body = client.request_text(req).await?;
    Ok((t.elapsed(), body.len()))
}

/// A watcher's take: its events' delays from their send stamps, the bytes
/// it read, and when it had them all.
type Take = (Vec<Duration>, usize, Instant);

/// Opens `n` raw watches (`query` after `watch=true`) at once, each
/// reading until it has seen `events` stamped events. Raw streams: the
/// client only finds each event's stamp, so the figure is the server's
/// delivery, not the client's decoding.
async fn open_watches(client: &Client, ns: &str, n: usize, query: &str, events: usize) -> Result<Vec<tokio::task::JoinHandle<Result<Take>>>> {
    let opened = futures::future::try_join_all((0..n).map(|_| {
        let req = http::Request::get(format!("/api/v1/namespaces/{ns}/pods?watch=true{query}")).body(Vec::new());
        async move { client.request_stream(req?).await.map_err(anyhow::Error::from) }
    }))
    .await?;
    Ok(opened
        .into_iter()
        .map(|stream| {
            tokio::spawn(async move {
                use futures::AsyncBufReadExt;
                let mut lines = stream.lines();
                let (mut delays, mut bytes) = (Vec::with_capacity(events), 0);
                while delays.len() < events {
                    let Some(line) = lines.next().await else { bail!("watch ended") };
                    let line = line?;
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
                    bytes += line.len() + 1;
                    if let Some(sent) = sent_stamp(&line) {
                        delays.push(Duration::from_nanos(now.saturating_sub(sent) as u64));
                    }
                }
                anyhow::Ok((delays, bytes, Instant::now()))
            })
        })
        .collect())
}

/// All the watchers' takes together, the last one's end.
async fn collect(watchers: Vec<tokio::task::JoinHandle<Result<Take>>>, since: Instant) -> Result<Take> {
    let (mut delays, mut bytes, mut last) = (Vec::new(), 0, since);
    for w in watchers {
        let (d, b, done) = w.await.context("watcher")??;
        delays.extend(d);
        bytes += b;
        last = last.max(done);
    }
    Ok((delays, bytes, last))
}

/// Opens `args.watches` watches on a namespace of their own, creates
/// `burst` pods in it (at once, or at `args.rate`), and reports each
/// event's delay from its send time and the events delivered per second.
/// Then as many new watches, opened at once, get the same pods as their
/// initial state: a reconnect storm (TLS handshakes, a snapshot read and
/// written for each watcher).
async fn watch_burst(client: &Client, args: &Args, burst: usize, report: &mut impl FnMut(&str, String)) -> Result<()> {
    let ns = format!("watched-{burst}");
    namespace(client, &ns).await?;
    println!("  opening {} watches…", args.watches);
    let from = Api::<Pod>::namespaced(client.clone(), &ns).list(&Default::default()).await?.metadata.resource_version.unwrap_or_default();
    let watchers = open_watches(client, &ns, args.watches, &format!("&resourceVersion={from}"), burst).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    if args.rate > 0 {
        create_paced(client, &ns, burst, args.rate).await?;
    } else {
        create_pods(client, &ns, "w-", args.clients, Arc::new(move |n, _| n >= burst)).await?;
    }
    let (mut delays, bytes, last) = collect(watchers, t).await?;
    let took = (last - t).as_secs_f64();
    let creates = if args.rate > 0 { format!("{burst} creates at {}/s", args.rate) } else { format!("a burst of {burst} creates") };
    report(
        &format!("{} watches × {creates}: delivery p50 / p99", args.watches),
        format!("{} / {} ({} events in {took:.2} s)", ms(percentile(&mut delays, 50.0)), ms(percentile(&mut delays, 99.0)), delays.len()),
    );
    report(
        &format!("{} watches × {creates}: delivered", args.watches),
        format!("{:.0} events/s, {:.0} MB/s", delays.len() as f64 / took, bytes as f64 / took / 1e6),
    );
    let t = Instant::now();
    let watchers = open_watches(client, &ns, args.watches, "", burst).await?;
    let (delays, bytes, last) = collect(watchers, t).await?;
    let took = (last - t).as_secs_f64();
    report(
        &format!("{} new watches at once × the same {burst} as their initial state: delivered", args.watches),
        format!("{:.0} events/s, {:.0} MB/s ({} events in {took:.2} s)", delays.len() as f64 / took, bytes as f64 / took / 1e6, delays.len()),
    );
    Ok(())
}

/// What TLS costs this machine per byte, both ends together: one core
/// sealing and opening 16 KiB records with AES-256-GCM (rustls's first
/// TLS 1.3 suite, from the same ring). Delivery to watchers that is this
/// many bytes/s on 2 cores spends all of both cores on encryption alone.
fn tls_bytes_per_second() -> f64 {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).expect("a 32-byte key"));
    let mut record = vec![0u8; 16 * 1024];
    let rounds = 20_000;
    let t = Instant::now();
    for i in 0..rounds {
        let nonce = || Nonce::assume_unique_for_key([(i % 251) as u8; 12]);
        let tag = key.seal_in_place_separate_tag(nonce(), Aad::empty(), &mut record).expect("seals");
        let mut sealed = std::mem::take(&mut record);
        sealed.extend_from_slice(tag.as_ref());
        let plain_len = key.open_in_place(nonce(), Aad::empty(), &mut sealed).expect("opens").len();
        sealed.truncate(plain_len);
        record = sealed;
    }
    (rounds * record.len()) as f64 / t.elapsed().as_secs_f64()
}

pub async fn run(args: Args) -> Result<()> {
    println!("skiff bench api: {} clients, {} watches, {} pods", args.clients, args.watches, args.pods);
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut report = |k: &str, v: String| {
        println!("  {k}: {v}");
        rows.push((k.to_string(), v));
    };

    let (server, client, ready) = start_server(&["--disable-scheduler", "--disable-controller-manager"]).await?;
    report("start to /readyz 200 (fresh data dir)", ms(ready));
    tokio::time::sleep(Duration::from_secs(2)).await;
    report("idle RSS", format!("{:.1} MiB", server.rss_mib()));

    namespace(&client, "bench").await?;
    let secs = args.seconds;
    let mut lat = create_pods(&client, "bench", "tput-", args.clients, Arc::new(move |_, t| t.elapsed() >= Duration::from_secs(secs))).await?;
    let rate = lat.len() as f64 / secs as f64;
    report(&format!("pod creates/s, {} clients, ~2 KiB pods", args.clients), format!("{rate:.0}"));
    report("pod create p50 / p99", format!("{} / {}", ms(percentile(&mut lat, 50.0)), ms(percentile(&mut lat, 99.0))));

    report("RSS after the create run", format!("{:.1} MiB", server.rss_mib()));
    namespace(&client, "list").await?;
    let path = "/api/v1/namespaces/list/pods";
    let mut held = 0;
    for listed in [4_000, 10_000] {
        println!("  creating pods up to {listed} to list…");
        let more = listed - held;
        create_pods(&client, "list", &format!("l{listed}-"), args.clients, Arc::new(move |n, _| n >= more)).await?;
        held = listed;
        for (label, accept) in [("JSON", "application/json"), ("Table", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")] {
            let mut times = Vec::new();
            let mut size = 0;
            for _ in 0..5 {
                let (t, n) = timed_get(&client, path, accept).await?;
                times.push(t);
                size = n;
            }
            let (p50, mib) = (percentile(&mut times, 50.0), size as f64 / 1048576.0);
            report(&format!("list {listed} pods as {label} (median of 5)"), format!("{} ({mib:.1} MiB)", ms(p50)));
        }
    }

    report("RSS after the lists", format!("{:.1} MiB", server.rss_mib()));
    tokio::time::sleep(Duration::from_secs(12)).await;
    report("RSS 12 s after the lists", format!("{:.1} MiB", server.rss_mib()));
    for &burst in &args.burst {
        watch_burst(&client, &args, burst, &mut report).await?;
    }
    report("RSS after the watches", format!("{:.1} MiB", server.rss_mib()));
    report("AES-256-GCM seal + open on one core (TLS's own cost per byte, both ends)", format!("{:.0} MB/s", tls_bytes_per_second() / 1e6));

    if args.pods > 0 {
        namespace(&client, "scale").await?;
        println!("  creating {} pods…", args.pods);
        let total = args.pods;
        create_pods(&client, "scale", "s-", args.clients, Arc::new(move |n, _| n >= total)).await?;
        report(&format!("RSS holding {} pods (plus the above)", args.pods), format!("{:.1} MiB", server.rss_mib()));
    }

    println!("\n| metric | value |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(())
}

//! Embedded etcd (`--cluster-init`, k3s's): Debian's `etcd` run as a
//! supervised child of the server. Members talk to each other over TLS with
//! certificates from the cluster CA, checked both ways; the server reaches
//! its own member on loopback. A server joining through another
//! (`--server`) is added as a member by that server first.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use skiff_auth::pki::Pki;

pub const CLIENT_URL: &str = "http://127.0.0.1:2379";
const PEER_PORT: u16 = 2380;

/// The member this server runs.
pub struct Member {
    pub name: String,
    pub peer_url: String,
}

pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server/db/etcd")
}

/// Whether this server already runs a member (its data survives restarts).
pub fn exists(data_dir: &Path) -> bool {
    dir(data_dir).join("member").exists()
}

pub fn peer_url(address: IpAddr) -> String {
    match address {
        IpAddr::V6(ip) => format!("https://[{ip}]:{PEER_PORT}"),
        IpAddr::V4(ip) => format!("https://{ip}:{PEER_PORT}"),
    }
}

/// This server's member name: its host's, made unique once and kept.
fn member_name(data_dir: &Path) -> Result<String> {
    let file = data_dir.join("server/db/etcd-name");
    if let Ok(name) = std::fs::read_to_string(&file) {
        return Ok(name.trim().to_string());
    }
    let host = crate::server::hostname().unwrap_or_else(|| "server".into());
    let name = format!("{host}-{:08x}", rand::random::<u32>());
    std::fs::create_dir_all(file.parent().expect("a parent"))?;
    std::fs::write(&file, &name)?;
    Ok(name)
}

/// This server's member name and peer URL, as it last started.
pub fn identity(data_dir: &Path) -> Result<(String, String)> {
    let read = |file: &str| {
        let path = data_dir.join("server/db").join(file);
        std::fs::read_to_string(&path).map(|s| s.trim().to_string()).with_context(|| format!("reading {}", path.display()))
    };
    Ok((read("etcd-name")?, read("etcd-peer-url")?))
}

/// Starts (or restarts) this server's member and waits until it serves.
/// `initial_cluster` is given for a member joining an existing cluster
/// (its `--initial-cluster`, from the server that added it).
pub async fn start(data_dir: &Path, pki: &Pki, address: IpAddr, join: Option<&crate::bootstrap::Supervisor>) -> Result<Member> {
    let name = member_name(data_dir)?;
    let peer_url = peer_url(address);
    std::fs::write(data_dir.join("server/db/etcd-peer-url"), &peer_url)?;
    let tls = data_dir.join("server/tls/etcd");
    Pki::adopt(&tls, pki.ca().clone(), None)?.peer("peer", &format!("etcd-{name}"), &["localhost".into()], &[address, IpAddr::from([127, 0, 0, 1])])?;
    let (state, initial_cluster) = match join {
        _ if exists(data_dir) => ("existing", format!("{name}={peer_url}")),
        Some(supervisor) => ("existing", supervisor.add_etcd_member(&name, &peer_url).await?),
        None => ("new", format!("{name}={peer_url}")),
    };
    let args: Vec<String> = [
        "--name", &name,
        "--data-dir", &dir(data_dir).display().to_string(),
        "--listen-client-urls", CLIENT_URL,
        "--advertise-client-urls", CLIENT_URL,
        "--listen-peer-urls", &peer_url,
        "--initial-advertise-peer-urls", &peer_url,
        "--initial-cluster", &initial_cluster,
        "--initial-cluster-state", state,
        "--initial-cluster-token", "skiff",
        "--listen-metrics-urls", "http://127.0.0.1:2381",
        "--peer-client-cert-auth",
        "--peer-trusted-ca-file", &tls.join("ca.crt").display().to_string(),
        "--peer-cert-file", &tls.join("peer.crt").display().to_string(),
        "--peer-key-file", &tls.join("peer.key").display().to_string(),
        // Leaves room for a server's pause (a busy host) before a re-election.
        "--heartbeat-interval", "200",
        "--election-timeout", "2000",
        "--snapshot-count", "10000",
        // Room for Skiff's 1.5 MiB values plus the request around them.
        "--max-request-bytes", "2097152",
        "--quota-backend-bytes", "8589934592",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = data_dir.join("server/logs/etcd.log");
    std::fs::create_dir_all(log.parent().expect("a parent"))?;
    tokio::spawn(supervise(args, log));
    wait_serving().await.context("the embedded etcd did not start (see <data-dir>/server/logs/etcd.log)")?;
    Ok(Member { name, peer_url })
}

/// Runs etcd for as long as the server runs, restarting it if it exits; it
/// dies with the server (PR_SET_PDEATHSIG), even on kill -9.
async fn supervise(args: Vec<String>, log: PathBuf) {
    loop {
        let spawned = std::fs::OpenOptions::new().create(true).append(true).open(&log).and_then(|out| {
            let mut command = tokio::process::Command::new("etcd");
            command.args(&args).stdout(out.try_clone()?).stderr(out).kill_on_drop(true);
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            command.spawn()
        });
        match spawned {
            Ok(mut child) => match child.wait().await {
                Ok(status) => tracing::error!("the embedded etcd exited ({status}); restarting it"),
                Err(e) => tracing::error!("waiting for the embedded etcd: {e}"),
            },
            Err(e) => tracing::error!("starting etcd (Debian's etcd-server package): {e}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn wait_serving() -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let status = async {
            let mut client = etcd_client::Client::connect([CLIENT_URL], None).await?;
            client.get("health", None).await
        };
        match tokio::time::timeout(Duration::from_secs(5), status).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) if tokio::time::Instant::now() > deadline => bail!("{e}"),
            Err(_) if tokio::time::Instant::now() > deadline => bail!("no answer"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Adds a member (a joining server) to the cluster of this server's
/// member; returns the `--initial-cluster` it starts with. A member left
/// with the same peer address (a server that lost its data) goes first.
pub async fn add_member(name: &str, peer_url: &str) -> Result<String> {
    let mut client = etcd_client::Client::connect([CLIENT_URL], None).await?;
    let members = client.member_list().await?;
    for stale in members.members().iter().filter(|m| m.peer_urls().iter().any(|u| u == peer_url)) {
        client.member_remove(stale.id()).await.context("removing the stale member")?;
    }
    let added = client.member_add([peer_url.to_string()], None).await.context("adding the member")?;
    let initial: Vec<String> = added
        .member_list()
        .iter()
        .filter_map(|m| {
            let url = m.peer_urls().first()?;
            // The new member has no name until it starts.
            let member = if m.name().is_empty() { name } else { m.name() };
            Some(format!("{member}={url}"))
        })
        .collect();
    Ok(initial.join(","))
}

/// Removes the member of the server at `address` (k3s removes a server's
/// member when its node is deleted).
pub async fn remove_member_at(address: IpAddr) -> Result<bool> {
    let peer_url = peer_url(address);
    let mut client = etcd_client::Client::connect([CLIENT_URL], None).await?;
    let members = client.member_list().await?;
    let Some(member) = members.members().iter().find(|m| m.peer_urls().contains(&peer_url)) else { return Ok(false) };
    client.member_remove(member.id()).await?;
    Ok(true)
}

/// Removes a server's member when its Node is deleted, as k3s does: how a
/// server leaves the cluster for good. Every server does it; the first wins.
pub async fn remove_members_of_deleted_nodes(client: kube::Client) {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    let mut events = std::pin::pin!(watcher(nodes, watcher::Config::default()));
    while let Some(event) = events.next().await {
        let Ok(watcher::Event::Delete(node)) = event else { continue };
        let addresses = node.status.and_then(|s| s.addresses).unwrap_or_default();
        for ip in addresses.iter().filter(|a| a.type_ == "InternalIP").filter_map(|a| a.address.parse().ok()) {
            match remove_member_at(ip).await {
                Ok(true) => tracing::warn!(node = ?node.metadata.name, %ip, "removed the deleted node's etcd member"),
                Ok(false) => {}
                Err(e) => tracing::error!(node = ?node.metadata.name, "removing the deleted node's etcd member: {e:#}"),
            }
        }
    }
}

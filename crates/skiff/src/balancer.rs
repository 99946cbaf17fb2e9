//! The agent's way to the API: a TCP load balancer on loopback in front of
//! every server, as k3s's agent runs. Clients connect to it; it passes each
//! connection to the server in use, and when that one does not answer, to
//! the next that does, which becomes the one in use. The list of servers
//! follows the `kubernetes` Service's endpoints and is kept on disk, so a
//! restarted agent finds the servers even when the one it was started with
//! is gone; that one stays on the list as a last resort.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Endpoints;
use tokio::net::{TcpListener, TcpStream};

/// A server that does not accept a connection within this is taken as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REFRESH_EVERY: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Balancer {
    local: SocketAddr,
    servers: Arc<Mutex<Servers>>,
}

struct Servers {
    /// In the order tried; the first is the one in use.
    list: Vec<SocketAddr>,
    /// The server the agent was started with.
    default: SocketAddr,
    /// Where the list is kept.
    file: Option<PathBuf>,
}

impl Servers {
    /// Takes `list`, and keeps it on disk (in use first) for the next start.
    fn keep(&mut self, list: Vec<SocketAddr>) {
        if let Some(file) = &self.file {
            if let Err(e) = skiff_auth::pki::write_private(file, &serde_json::to_string(&list).expect("addresses serialize")) {
                tracing::warn!("keeping the API servers' list: {e:#}");
            }
        }
        self.list = list;
    }
}

impl Balancer {
    /// Listens on a free loopback port in front of `server` and the
    /// servers last kept in `file`.
    pub async fn start(server: SocketAddr, file: Option<PathBuf>) -> Result<Balancer> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("the API load balancer")?;
        let kept: Vec<SocketAddr> = file.as_ref().and_then(|f| serde_json::from_slice(&std::fs::read(f).ok()?).ok()).unwrap_or_default();
        let servers = Servers { list: vec![server], default: server, file };
        let balancer = Balancer { local: listener.local_addr()?, servers: Arc::new(Mutex::new(servers)) };
        if !kept.is_empty() {
            balancer.set_servers(kept);
        }
        tokio::spawn(balancer.clone().accept(listener));
        Ok(balancer)
    }

    /// Where clients connect: `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.local)
    }

    pub fn servers(&self) -> Vec<SocketAddr> {
        self.servers.lock().expect("not poisoned").list.clone()
    }

    /// Replaces the list, keeping the server in use first while it is on it.
    pub fn set_servers(&self, mut new: Vec<SocketAddr>) {
        let mut servers = self.servers.lock().expect("not poisoned");
        if !new.contains(&servers.default) {
            new.push(servers.default);
        }
        let current = servers.list[0];
        if let Some(i) = new.iter().position(|s| *s == current) {
            new[..=i].rotate_right(1);
        }
        if new != servers.list {
            tracing::info!(servers = ?new, "API servers");
            servers.keep(new);
        }
    }

    async fn accept(self, listener: TcpListener) {
        loop {
            let Ok((client, _)) = listener.accept().await else { continue };
            let balancer = self.clone();
            tokio::spawn(async move {
                if let Some(mut server) = balancer.connect().await {
                    let mut client = client;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    }

    /// A connection to the server in use, or the first after it that answers.
    async fn connect(&self) -> Option<TcpStream> {
        let list = self.servers();
        for server in &list {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    self.in_use(*server);
                    return Some(stream);
                }
                Ok(Err(e)) => tracing::debug!(%server, "API server refused: {e}"),
                Err(_) => tracing::debug!(%server, "API server did not answer"),
            }
        }
        tracing::warn!(servers = ?list, "no API server answers");
        None
    }

    fn in_use(&self, server: SocketAddr) {
        let mut servers = self.servers.lock().expect("not poisoned");
        if let Some(i) = servers.list.iter().position(|s| *s == server).filter(|i| *i > 0) {
            tracing::warn!(%server, "switching to another API server");
            let mut list = servers.list.clone();
            list[..=i].rotate_right(1);
            servers.keep(list);
        }
    }

    /// Follows the `kubernetes` Service's endpoints through `client` (which
    /// goes through this balancer).
    pub async fn follow(self, client: kube::Client) {
        let api: kube::Api<Endpoints> = kube::Api::namespaced(client, "default");
        loop {
            match api.get("kubernetes").await {
                Ok(endpoints) => {
                    let servers: Vec<SocketAddr> = endpoints
                        .subsets
                        .unwrap_or_default()
                        .iter()
                        .flat_map(|subset| {
                            let port = subset.ports.iter().flatten().find(|p| p.name.as_deref() == Some("https")).map(|p| p.port);
                            subset.addresses.iter().flatten().filter_map(move |a| Some(SocketAddr::new(a.ip.parse().ok()?, u16::try_from(port?).ok()?)))
                        })
                        .collect();
                    if !servers.is_empty() {
                        self.set_servers(servers);
                    }
                }
                Err(e) => tracing::debug!("reading the API servers: {e}"),
            }
            tokio::time::sleep(REFRESH_EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_go_to_the_first_server_that_answers_and_stay_there() {
        let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr = up.local_addr().unwrap();
        // A port nothing listens on: refused at once.
        let down_addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let balancer = Balancer::start(down_addr, None).await.unwrap();
        balancer.set_servers(vec![up_addr]);
        assert_eq!(balancer.servers(), vec![down_addr, up_addr], "the server in use stays first; the start server is kept");
        tokio::spawn(async move {
            loop {
                let (mut s, _) = up.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = TcpStream::connect(balancer.local).await.unwrap();
        conn.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        assert_eq!(balancer.servers()[0], up_addr, "the server that answered is now in use");
    }
}

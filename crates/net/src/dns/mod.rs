//! Cluster DNS, served by every node agent: the names CoreDNS's kubernetes
//! plugin serves (k3s's configuration), from watches of Services,
//! EndpointSlices and Namespaces, over UDP and TCP with EDNS0; other names
//! go to the host's resolvers, with a small cache.
//!
//! [`serve`] is the whole of it. Its parts can be used alone: a
//! [`Records`] index fed directly (tests, `skiff bench dns`) served by a
//! [`Server`], or fed from the API by [`watch`].

mod forward;
pub mod records;
mod server;
mod watch;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

pub use forward::{Forwarder, Reply};
/// The DNS types of the API ([`Records::lookup`] takes a hickory `Name`).
pub use hickory_server::proto;
pub use records::{Answer, Outcome, Records};
pub use server::{Listening, Server, Shared};
pub use watch::watch;

/// How long `serve` waits for the first lists before answering anyway
/// (CoreDNS waits 5 s for its caches too).
const SYNC_WAIT: Duration = Duration::from_secs(5);

pub struct Config {
    /// Where to answer, UDP and TCP: the kube-dns Service's address.
    pub listen: Vec<SocketAddr>,
    /// `cluster.local` unless configured.
    pub cluster_domain: String,
    /// Where other names are asked: the host's resolvers.
    pub upstreams: Vec<SocketAddr>,
}

/// The nameservers of a resolv.conf, on port 53, in order. Loopback ones
/// are kept: the agent runs in the host's network, where they answer.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some("nameserver")).then(|| fields.next()).flatten()
        })
        // An IPv6 nameserver may carry a zone (`fe80::1%eth0`), which SocketAddr cannot.
        .filter_map(|ip| ip.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Cluster DNS for ever: the watches feeding the index, and UDP and TCP
/// listeners on every `listen` address once the index has its first lists.
pub async fn serve(client: kube::Client, config: Config) -> anyhow::Result<()> {
    let records: Shared = Arc::new(RwLock::new(Records::new(&config.cluster_domain)));
    let mut watching = tokio::spawn(watch(client, records.clone()));
    let started = Instant::now();
    while !records.read().unwrap_or_else(PoisonError::into_inner).synced() && started.elapsed() < SYNC_WAIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listening = Server::new(records, &config.upstreams).bind(&config.listen).await?;
    tracing::info!(addrs = ?listening.addrs, domain = %config.cluster_domain, "cluster DNS listening");
    tokio::select! {
        result = listening.run() => result,
        result = &mut watching => result?,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_the_nameservers_in_order() {
        let text = "# generated\nsearch example.com\nnameserver 192.0.2.1\nnameserver  2001:db8::1\noptions ndots:2\nnameserver fe80::1%eth0\nnameserver 127.0.0.53\nnameserver\nnameserver bogus\n";
        let want: Vec<SocketAddr> = ["192.0.2.1:53", "[2001:db8::1]:53", "[fe80::1]:53", "127.0.0.53:53"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(upstreams_from_resolv_conf(text), want);
    }
}

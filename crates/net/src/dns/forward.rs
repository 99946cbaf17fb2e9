//! Names outside the cluster, asked of the host's resolvers (CoreDNS's
//! `forward . /etc/resolv.conf`) and kept for their TTL, at most 30 s
//! (k3s's `cache 30`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::net::tcp::TcpClientStream;
use hickory_server::net::udp::UdpClientStream;
use hickory_server::net::xfer::{DnsExchange, DnsHandle, FirstAnswer};
use hickory_server::proto::op::{DnsRequest, DnsRequestOptions, Message, Query, ResponseCode};
use hickory_server::proto::rr::{LowerName, Record, RecordType};

/// How long one upstream has to answer before the next is tried.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The longest an answer is kept, k3s's `cache 30`.
const MAX_TTL: u32 = 30;
/// Answers kept at most; past that expired ones go, then all.
const CACHE_ENTRIES: usize = 10_000;
/// The UDP payload asked of upstreams, the DNS flag day's.
const PAYLOAD: u16 = 1232;

/// An upstream's answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub code: ResponseCode,
    pub authoritative: bool,
    pub recursion_available: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Reply {
    fn from_message(message: Message) -> Self {
        Reply {
            code: message.metadata.response_code,
            authoritative: message.metadata.authoritative,
            recursion_available: message.metadata.recursion_available,
            answers: message.answers,
            authorities: message.authorities,
            // The OPT record is not among them: hickory keeps it as `edns`.
            additionals: message.additionals,
        }
    }

    /// How long it may be kept: the least TTL of its records, none for failures.
    fn ttl(&self) -> Option<u32> {
        if !matches!(self.code, ResponseCode::NoError | ResponseCode::NXDomain) {
            return None;
        }
        self.answers.iter().chain(&self.authorities).map(|r| r.ttl).min().map(|ttl| ttl.min(MAX_TTL))
    }

    fn aged(&self, seconds: u32) -> Self {
        let mut reply = self.clone();
        for record in reply.answers.iter_mut().chain(&mut reply.authorities).chain(&mut reply.additionals) {
            record.ttl = record.ttl.saturating_sub(seconds);
        }
        reply
    }
}

struct Cached {
    reply: Reply,
    stored: Instant,
    ttl: u32,
}

struct Upstream {
    addr: SocketAddr,
    udp: DnsExchange<TokioRuntimeProvider>,
}

/// The upstream resolvers and the cache of their answers.
pub struct Forwarder {
    upstreams: Vec<Upstream>,
    next: AtomicUsize,
    cache: Mutex<HashMap<(LowerName, RecordType), Cached>>,
}

impl Forwarder {
    /// Must be called in a Tokio runtime: each upstream's UDP client runs a task.
    pub fn new(upstreams: &[SocketAddr]) -> Self {
        let upstreams = upstreams.iter().map(|addr| Upstream { addr: *addr, udp: UdpClientStream::builder(*addr, TokioRuntimeProvider::default()).with_timeout(Some(TIMEOUT)).exchange() }).collect();
        Forwarder { upstreams, next: AtomicUsize::new(0), cache: Mutex::new(HashMap::new()) }
    }

    /// The answer to a question: from the cache, else from the upstreams
    /// in turn (starting with a different one each time), else an error.
    pub async fn resolve(&self, query: &Query) -> anyhow::Result<Reply> {
        let key = (LowerName::from(query.name()), query.query_type());
        if let Some(reply) = self.cached(&key) {
            return Ok(reply);
        }
        anyhow::ensure!(!self.upstreams.is_empty(), "no upstream resolvers");
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last_error = None;
        for i in 0..self.upstreams.len() {
            let upstream = &self.upstreams[(first + i) % self.upstreams.len()];
            match upstream.ask(query).await {
                Ok(reply) => {
                    self.store(key, &reply);
                    return Ok(reply);
                }
                Err(e) => {
                    tracing::debug!(upstream = %upstream.addr, error = %e, "upstream resolver failed");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no upstream answered")))
    }

    fn cached(&self, key: &(LowerName, RecordType)) -> Option<Reply> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = cache.get(key)?;
        let age = entry.stored.elapsed().as_secs() as u32;
        (age < entry.ttl).then(|| entry.reply.aged(age))
    }

    fn store(&self, key: (LowerName, RecordType), reply: &Reply) {
        let Some(ttl) = reply.ttl().filter(|ttl| *ttl > 0) else { return };
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, e| e.stored.elapsed().as_secs() < u64::from(e.ttl));
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, Cached { reply: reply.clone(), stored: Instant::now(), ttl });
    }

    /// Answers kept now, for tests and figures.
    pub fn cached_entries(&self) -> usize {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Upstream {
    /// Over UDP, then over TCP if the answer did not fit.
    async fn ask(&self, query: &Query) -> anyhow::Result<Reply> {
        let mut options = DnsRequestOptions::default();
        options.edns_payload_len = PAYLOAD;
        let response = self.udp.send(DnsRequest::from_query(query.clone(), options)).first_answer().await?;
        if !response.metadata.truncation {
            return Ok(Reply::from_message(response.into_message()));
        }
        // The connection's task lives in the provider's task set, which
        // goes with the last clone of the provider: keep one until answered.
        let provider = TokioRuntimeProvider::default();
        let tcp = TcpClientStream::exchange(self.addr, None, TIMEOUT, None, provider.clone()).await?;
        let response = tcp.send(DnsRequest::from_query(query.clone(), options)).first_answer().await?;
        drop(provider);
        Ok(Reply::from_message(response.into_message()))
    }
}

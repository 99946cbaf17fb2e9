//! The DNS server: hickory-server's UDP and TCP listeners with a handler
//! that answers cluster names from the index and forwards the rest.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::Record;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

use super::forward::Forwarder;
use crate::metrics::{self, DnsSource};
use super::records::{Answer, Outcome, Records};

/// The index as the watch and the server share it. Lookups hold the read
/// lock for microseconds and never across an await.
pub type Shared = Arc<RwLock<Records>>;

/// An idle TCP connection is closed after this.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_BUFFER: usize = 32;

/// The server for an index and upstream resolvers, not yet listening.
pub struct Server {
    handler: Handler,
}

/// A server bound to its addresses; [`Listening::run`] answers for ever.
pub struct Listening {
    /// The addresses bound, each for UDP and TCP (with the port chosen
    /// where 0 was asked).
    pub addrs: Vec<SocketAddr>,
    inner: hickory_server::Server<Handler>,
}

impl Server {
    /// Must be called in a Tokio runtime (the forwarder starts its clients).
    pub fn new(records: Shared, upstreams: &[SocketAddr]) -> Self {
        Server { handler: Handler { records, forwarder: Forwarder::new(upstreams) } }
    }

    /// Binds UDP and TCP on every address; with port 0, TCP takes the port UDP got.
    pub async fn bind(self, addrs: &[SocketAddr]) -> anyhow::Result<Listening> {
        let mut inner = hickory_server::Server::new(self.handler);
        let mut bound = Vec::new();
        for asked in addrs {
            // A port UDP got may be taken for TCP: then another is tried.
            let mut attempts = if asked.port() == 0 { 10 } else { 1 };
            let (udp, tcp, addr) = loop {
                let udp = UdpSocket::bind(asked).await.with_context(|| format!("binding DNS on udp {asked}"))?;
                let addr = udp.local_addr()?;
                attempts -= 1;
                match TcpListener::bind(addr).await {
                    Ok(tcp) => break (udp, tcp, addr),
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts > 0 => continue,
                    Err(e) => return Err(e).with_context(|| format!("binding DNS on tcp {addr}")),
                }
            };
            inner.register_socket(udp);
            inner.register_listener(tcp, TCP_TIMEOUT, TCP_BUFFER);
            bound.push(addr);
        }
        Ok(Listening { addrs: bound, inner })
    }
}

impl Listening {
    pub async fn run(mut self) -> anyhow::Result<()> {
        self.inner.block_until_done().await.context("DNS server stopped")
    }
}

struct Handler {
    records: Shared,
    forwarder: Forwarder,
}

impl Handler {
    /// The response to one question, its AA and RA flags, and where it came from.
    async fn answer(&self, query: &Query) -> (Answer, bool, bool, DnsSource) {
        let outcome = self.records.read().unwrap_or_else(PoisonError::into_inner).lookup(query.name(), query.query_type());
        match outcome {
            // CoreDNS sets RA on its answers but not on NXDOMAIN or NODATA.
            Outcome::Answer(answer) => {
                let found = !answer.answers.is_empty();
                (answer, true, found, DnsSource::Kubernetes)
            }
            Outcome::Chase(mut answer, target) => {
                // The target's records follow the CNAME; if upstream fails
                // the CNAME alone still tells the client where to look.
                if let Ok(reply) = self.forwarder.resolve(&Query::query(target, query.query_type())).await {
                    answer.answers.extend(reply.answers);
                }
                (answer, true, true, DnsSource::Kubernetes)
            }
            Outcome::Forward => match self.forwarder.resolve(query).await {
                Ok(reply) => {
                    let answer = Answer { code: reply.code, answers: reply.answers, authorities: reply.authorities, additionals: reply.additionals };
                    (answer, reply.authoritative, reply.recursion_available, DnsSource::Forward)
                }
                Err(e) => {
                    tracing::debug!(name = %query.name(), error = %e, "forwarding failed");
                    (Answer { code: ResponseCode::ServFail, ..Answer::default() }, false, true, DnsSource::Forward)
                }
            },
        }
    }
}

/// An answer's code as miekg/dns names it (CoreDNS's `rcode` label).
fn rcode_name(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response_handle: R) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        // EDNS0: answer with OPT when asked, and the client's payload size
        // (at least 512) is what a UDP response may fill before TC is set.
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().max(512)).set_version(0);
            edns
        });
        let started = Instant::now();
        let mut source = DnsSource::Server;
        let answer = if request.metadata.message_type != MessageType::Query || request.metadata.op_code != OpCode::Query {
            Answer { code: ResponseCode::NotImp, ..Answer::default() }
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Answer { code: ResponseCode::BADVERS, ..Answer::default() }
        } else {
            match request.request_info() {
                Ok(info) => {
                    let (answer, authoritative, recursion_available, from) = self.answer(info.query.original()).await;
                    source = from;
                    metadata.authoritative = authoritative;
                    metadata.recursion_available = recursion_available;
                    answer
                }
                // Not exactly one question.
                Err(_) => Answer { code: ResponseCode::FormErr, ..Answer::default() },
            }
        };
        metadata.response_code = answer.code;
        let qtype: &'static str = request.queries.queries().first().map_or("", |q| q.query_type().into());
        let tcp = request.protocol().as_str() == "tcp";
        metrics::dns_answered(tcp, request.src().is_ipv6(), qtype, rcode_name(answer.code), source, started.elapsed());
        let response =
            MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(metadata, answer.answers.iter(), answer.authorities.iter(), std::iter::empty::<&Record>(), answer.additionals.iter());
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "sending a DNS response failed");
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
            }
        }
    }
}

//! The DNS server over real sockets on loopback, asked with hickory's
//! client: UDP and TCP, EDNS0 and truncation, forwarding and its cache.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_server::net::client::{Client, ClientHandle};
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::net::tcp::TcpClientStream;
use hickory_server::net::udp::UdpClientStream;
use hickory_server::net::xfer::{DnsExchange, DnsHandle, FirstAnswer};
use hickory_server::proto::op::{DnsRequestOptions, DnsResponse, Query, ResponseCode};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_net::dns::{Records, Server, Shared};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A cluster of one namespace with web (ClusterIP, named port http) and
/// big (headless, 100 ready endpoints).
fn records(domain: &str) -> Shared {
    let mut r = Records::new(domain);
    r.apply_namespace("default");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }))
    .unwrap();
    r.apply_service(&service);
    let headless: Service = serde_json::from_value(json!({"metadata": {"namespace": "default", "name": "big"}, "spec": {"clusterIP": "None"}})).unwrap();
    r.apply_service(&headless);
    let endpoints: Vec<_> = (0..100).map(|i| json!({"addresses": [format!("10.42.{}.{}", i / 50, i % 50 + 1)]})).collect();
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "big-x", "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4",
        "endpoints": endpoints,
    }))
    .unwrap();
    r.apply_endpoint_slice(&slice);
    Arc::new(RwLock::new(r))
}

/// A server for `records` on 127.0.0.1 (a free port), running until the
/// returned task is aborted.
async fn start(records: Shared, upstreams: &[SocketAddr]) -> (SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let listening = Server::new(records, upstreams).bind(&["127.0.0.1:0".parse().unwrap()]).await.unwrap();
    let addr = listening.addrs[0];
    (addr, tokio::spawn(listening.run()))
}

fn udp_client(addr: SocketAddr) -> Client<TokioRuntimeProvider> {
    let stream = UdpClientStream::builder(addr, TokioRuntimeProvider::default()).with_timeout(Some(TIMEOUT)).build();
    let (client, background) = Client::from_sender(stream);
    tokio::spawn(background);
    client
}

/// A TCP client; its connection's task lives as long as the provider returned.
async fn tcp_exchange(addr: SocketAddr) -> (DnsExchange<TokioRuntimeProvider>, TokioRuntimeProvider) {
    let provider = TokioRuntimeProvider::default();
    (TcpClientStream::exchange(addr, None, TIMEOUT, None, provider.clone()).await.unwrap(), provider)
}

/// One question with EDNS0 at `payload` bytes, or without EDNS0.
async fn ask(exchange: &DnsExchange<TokioRuntimeProvider>, name: &str, qtype: RecordType, payload: Option<u16>) -> DnsResponse {
    let mut options = DnsRequestOptions::default();
    options.use_edns = payload.is_some();
    options.edns_payload_len = payload.unwrap_or(512);
    exchange.lookup(Query::query(Name::from_ascii(name).unwrap(), qtype), options).first_answer().await.unwrap()
}

fn a_records(records: &[Record]) -> Vec<String> {
    records.iter().filter_map(|r| if let RData::A(a) = &r.data { Some(a.0.to_string()) } else { None }).collect()
}

#[tokio::test]
async fn answers_cluster_names_over_udp_and_tcp() {
    let (addr, server) = start(records("cluster.local"), &[]).await;
    let mut client = udp_client(addr);

    let response = client.query(Name::from_ascii("web.default.svc.cluster.local.").unwrap(), DNSClass::IN, RecordType::A).await.unwrap();
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert!(response.metadata.authoritative);
    assert_eq!(a_records(&response.answers), ["10.43.0.20"]);
    assert_eq!(response.answers[0].ttl, 5);

    let response = client.query(Name::from_ascii("nope.default.svc.cluster.local.").unwrap(), DNSClass::IN, RecordType::A).await.unwrap();
    assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
    assert!(response.answers.is_empty());
    assert_eq!(response.authorities.len(), 1);
    assert_eq!(response.authorities[0].record_type(), RecordType::SOA);

    let response = client.query(Name::from_ascii("web.default.svc.cluster.local.").unwrap(), DNSClass::IN, RecordType::AAAA).await.unwrap();
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert!(response.answers.is_empty());
    assert_eq!(response.authorities[0].record_type(), RecordType::SOA);

    let (tcp, _provider) = tcp_exchange(addr).await;
    let response = ask(&tcp, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV, Some(1232)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    let RData::SRV(srv) = &response.answers[0].data else { panic!("not SRV: {:?}", response.answers) };
    assert_eq!((srv.port, srv.target.to_string().as_str()), (80, "web.default.svc.cluster.local."));
    assert_eq!(a_records(&response.additionals), ["10.43.0.20"]);
    server.abort();
}

#[tokio::test]
async fn large_answers_need_edns_or_tcp() {
    let (addr, server) = start(records("cluster.local"), &[]).await;
    let udp = UdpClientStream::builder(addr, TokioRuntimeProvider::default()).with_timeout(Some(TIMEOUT)).exchange();
    let name = "big.default.svc.cluster.local.";

    // EDNS0 with room for all: every endpoint, and OPT in the answer.
    let response = ask(&udp, name, RecordType::A, Some(4096)).await;
    assert!(!response.metadata.truncation);
    assert_eq!(a_records(&response.answers).len(), 100);
    assert_eq!(response.edns.as_ref().map(|e| e.max_payload()), Some(4096));

    // Without EDNS0 the answer must fit 512 bytes: truncated, TC set.
    let response = ask(&udp, name, RecordType::A, None).await;
    assert!(response.metadata.truncation);
    assert!(a_records(&response.answers).len() < 100);
    assert!(response.edns.is_none());

    // ... and over TCP it comes whole.
    let (tcp, _provider) = tcp_exchange(addr).await;
    let response = ask(&tcp, name, RecordType::A, None).await;
    assert!(!response.metadata.truncation);
    assert_eq!(a_records(&response.answers).len(), 100);
    server.abort();
}

#[tokio::test]
async fn forwards_other_names_and_keeps_their_answers() {
    // The upstream: another server, authoritative for `upstream.test`.
    let (upstream, upstream_server) = start(records("upstream.test"), &[]).await;
    let (addr, server) = start(records("cluster.local"), &[upstream]).await;
    let udp = UdpClientStream::builder(addr, TokioRuntimeProvider::default()).with_timeout(Some(TIMEOUT)).exchange();

    let response = ask(&udp, "web.default.svc.upstream.test.", RecordType::A, Some(1232)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&response.answers), ["10.43.0.20"]);
    let response = ask(&udp, "nope.default.svc.upstream.test.", RecordType::A, Some(1232)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(response.authorities[0].record_type(), RecordType::SOA);
    // Too big for the client's UDP payload: truncated here, whole over TCP.
    let response = ask(&udp, "big.default.svc.upstream.test.", RecordType::A, None).await;
    assert!(response.metadata.truncation);
    let (tcp, _provider) = tcp_exchange(addr).await;
    let response = ask(&tcp, "big.default.svc.upstream.test.", RecordType::A, None).await;
    assert_eq!(a_records(&response.answers).len(), 100);

    // With the upstream gone, its answers are still kept (TTL 5 s).
    upstream_server.abort();
    let _ = upstream_server.await;
    let response = ask(&udp, "web.default.svc.upstream.test.", RecordType::A, Some(1232)).await;
    assert_eq!(a_records(&response.answers), ["10.43.0.20"]);
    assert!(response.answers[0].ttl <= 5);
    // ... but not what was never asked: SERVFAIL.
    let response = ask(&udp, "other.default.svc.upstream.test.", RecordType::A, Some(1232)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
    server.abort();
}

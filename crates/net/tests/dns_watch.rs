//! The index fed by `watch` from a fake API server: listed objects answer,
//! and watch events show in the next answer.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{json, Value};
use skiff_net::dns::proto::op::ResponseCode;
use skiff_net::dns::proto::rr::{Name, RecordType};
use skiff_net::dns::{watch, Outcome, Records, Shared};
use tokio::sync::mpsc;

fn service(name: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "default", "name": name, "resourceVersion": "2"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}})
}

/// An API server listing one namespace, one Service and its slice, whose
/// Service watch sends what `events` gets (each a watch event's JSON).
fn fake_api(events: mpsc::UnboundedReceiver<Value>) -> kube::Client {
    let events = Arc::new(Mutex::new(Some(events)));
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let events = events.clone();
        async move {
            let path = request.uri().path().to_string();
            let watching = request.uri().query().is_some_and(|q| q.contains("watch=true"));
            let body = if watching {
                let taken = if path == "/api/v1/services" { events.lock().unwrap().take() } else { None };
                match taken {
                    // Each event on a line of its own, as the API server sends them.
                    Some(rx) => BodyExt::boxed(StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
                        let event = rx.recv().await?;
                        Some((Ok(http_body::Frame::data(Bytes::from(format!("{event}\n")))), rx))
                    }))),
                    None => BodyExt::boxed(StreamBody::new(futures::stream::pending())),
                }
            } else {
                let items = match path.as_str() {
                    "/api/v1/namespaces" => json!([{"metadata": {"name": "default"}}]),
                    "/api/v1/services" => json!([service("web", "10.43.0.20")]),
                    "/apis/discovery.k8s.io/v1/endpointslices" => json!([{
                        "metadata": {"namespace": "default", "name": "web-x", "labels": {"kubernetes.io/service-name": "web"}},
                        "addressType": "IPv4", "endpoints": [{"addresses": ["10.42.0.5"], "hostname": "web-0"}],
                    }]),
                    other => panic!("unexpected request for {other}"),
                };
                let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items});
                BodyExt::boxed(Full::new(Bytes::from(list.to_string())))
            };
            Ok::<_, Infallible>(http::Response::new(body))
        }
    });
    kube::Client::new(service, "default")
}

fn lookup(records: &Shared, name: &str) -> Outcome {
    records.read().unwrap().lookup(&Name::from_ascii(name).unwrap(), RecordType::A)
}

fn addresses(records: &Shared, name: &str) -> Option<Vec<String>> {
    match lookup(records, name) {
        Outcome::Answer(a) if a.code == ResponseCode::NoError => Some(a.answers.iter().map(|r| r.data.to_string()).collect()),
        _ => None,
    }
}

/// Waits up to `within` for `check`.
async fn eventually(within: Duration, check: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

#[tokio::test]
async fn watched_changes_show_within_a_second() {
    let (events, rx) = mpsc::unbounded_channel();
    let records: Shared = Arc::new(RwLock::new(Records::new("cluster.local")));
    let watching = tokio::spawn(watch(fake_api(rx), records.clone()));

    assert!(eventually(Duration::from_secs(5), || records.read().unwrap().synced()).await, "the first lists are in");
    assert_eq!(addresses(&records, "web.default.svc.cluster.local."), Some(vec!["10.43.0.20".to_string()]));
    assert_eq!(addresses(&records, "web-0.web.default.svc.cluster.local."), Some(vec!["10.42.0.5".to_string()]));

    events.send(json!({"type": "ADDED", "object": service("api", "10.43.0.30")})).unwrap();
    assert!(eventually(Duration::from_secs(1), || addresses(&records, "api.default.svc.cluster.local.") == Some(vec!["10.43.0.30".to_string()])).await, "an added Service answers");

    events.send(json!({"type": "MODIFIED", "object": service("web", "10.43.0.21")})).unwrap();
    assert!(eventually(Duration::from_secs(1), || addresses(&records, "web.default.svc.cluster.local.") == Some(vec!["10.43.0.21".to_string()])).await, "a changed Service answers anew");

    events.send(json!({"type": "DELETED", "object": service("web", "10.43.0.21")})).unwrap();
    let gone = || matches!(lookup(&records, "web.default.svc.cluster.local."), Outcome::Answer(a) if a.code == ResponseCode::NXDomain);
    assert!(eventually(Duration::from_secs(1), gone).await, "a deleted Service is NXDOMAIN");
    assert!(!watching.is_finished());
    watching.abort();
}

//! `kubectl port-forward` on the agent, in upstream's
//! `portforward.k8s.io` protocol: over SPDY (tunnelled through WebSocket,
//! kubectl's default, or plain), the client opens a pair of streams per
//! connection, `error` and `data`, sharing a `requestid` and naming the
//! `port`. The data stream is spliced to that port on the pod's loopback,
//! reached from inside the pod's network namespace as upstream's runtimes
//! do; a failure is written to the error stream.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::spdy::{self, Stream};
use crate::Kubelet;

const PROTOCOL: &str = "portforward.k8s.io";
const TUNNELLED: &str = "SPDY/3.1+portforward.k8s.io";

/// The pod connections go to.
struct Target {
    uid: String,
    /// Its network namespace; `None` on the host's network.
    netns: Option<PathBuf>,
}

/// `GET|POST /portForward/{namespace}/{pod}`
pub(crate) async fn port_forward(State(kubelet): State<Arc<Kubelet>>, Path((namespace, pod)): Path<(String, String)>, request: Request) -> Response {
    let runs = kubelet.runtime.list(None).await.unwrap_or_default();
    let Some(uid) = runs.into_iter().find(|c| c.meta.pod_namespace == namespace && c.meta.pod_name == pod).map(|c| c.meta.pod_uid) else {
        return (StatusCode::NOT_FOUND, format!("pod {namespace}/{pod} not found")).into_response();
    };
    let netns = kubelet.sandboxes.namespace(&uid, "net");
    let target = Arc::new(Target { netns: netns.exists().then_some(netns), uid });
    let (mut parts, body) = request.into_parts();
    if let Ok(ws) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        return ws.protocols([TUNNELLED]).on_upgrade(move |socket| forward(spdy::serve(spdy::tunnel(socket)), target)).into_response();
    }
    let mut request = Request::from_parts(parts, body);
    spdy::upgrade(&mut request, &[PROTOCOL], move |streams, _| forward(streams, target))
}

/// Pairs the streams by request and forwards each pair's connection.
async fn forward(mut streams: mpsc::Receiver<Stream>, target: Arc<Target>) {
    let mut halves: HashMap<String, (Option<Stream>, Option<Stream>)> = HashMap::new();
    while let Some(stream) = streams.recv().await {
        let request = stream.header("requestid").to_string();
        let pair = halves.entry(request.clone()).or_default();
        match stream.header("streamtype") {
            "error" => pair.0 = Some(stream),
            "data" => pair.1 = Some(stream),
            _ => {
                let _ = stream.writer.close().await;
                continue;
            }
        }
        if pair.0.is_some() && pair.1.is_some() {
            if let Some((Some(error), Some(data))) = halves.remove(&request) {
                tokio::spawn(connection(error, data, target.clone()));
            }
        }
    }
}

async fn connection(error: Stream, data: Stream, target: Arc<Target>) {
    let port = data.header("port").parse::<u16>().ok().filter(|p| *p > 0);
    let connected = match port {
        Some(port) => connect(target.netns.clone(), port).await.map_err(|e| {
            format!("error forwarding port {port} to pod {uid}, uid : failed to connect to localhost:{port} inside namespace \"{uid}\": {e}", uid = target.uid)
        }),
        None => Err(format!("invalid port: {:?}", data.header("port"))),
    };
    match connected {
        Ok(tcp) => splice(data, tcp).await,
        Err(message) => {
            let _ = error.writer.write(message.as_bytes()).await;
            let _ = data.writer.close().await;
        }
    }
    let _ = error.writer.close().await;
}

/// Copies both ways until both sides have finished.
async fn splice(data: Stream, tcp: tokio::net::TcpStream) {
    let (mut from_pod, mut to_pod) = tcp.into_split();
    let Stream { data: mut incoming, writer, .. } = data;
    let inbound = async move {
        while let Some(bytes) = incoming.recv().await {
            if to_pod.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to_pod.shutdown().await;
    };
    let outbound = async move {
        let mut buffer = vec![0u8; 32 * 1024];
        while let Ok(n @ 1..) = from_pod.read(&mut buffer).await {
            if writer.write(&buffer[..n]).await.is_err() {
                return;
            }
        }
        let _ = writer.close().await;
    };
    tokio::join!(inbound, outbound);
}

/// A connection to `localhost:port` as the pod sees it: made on a thread
/// of its own that enters the pod's network namespace (a socket stays in
/// the namespace it was made in), IPv4 first, then IPv6.
async fn connect(netns: Option<PathBuf>, port: u16) -> Result<tokio::net::TcpStream, String> {
    let made = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || -> Result<std::net::TcpStream, String> {
            if let Some(path) = netns {
                let file = std::fs::File::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| format!("entering the pod's network namespace: {e}"))?;
            }
            let timeout = Duration::from_secs(5);
            let v4 = std::net::TcpStream::connect_timeout(&(std::net::Ipv4Addr::LOCALHOST, port).into(), timeout);
            v4.or_else(|v4| {
                std::net::TcpStream::connect_timeout(&(std::net::Ipv6Addr::LOCALHOST, port).into(), timeout)
                    .map_err(|v6| format!("IPv4: dial tcp4 127.0.0.1:{port}: {v4} IPv6 dial tcp6 [::1]:{port}: {v6}"))
            })
        })
        .join()
        .map_err(|_| "the connecting thread panicked".to_string())?
    })
    .await
    .map_err(|e| e.to_string())??;
    made.set_nonblocking(true).map_err(|e| e.to_string())?;
    tokio::net::TcpStream::from_std(made).map_err(|e| e.to_string())
}

//! Probes and lifecycle hooks: exec, httpGet and tcpSocket handlers, and
//! upstream's probe bookkeeping (initial delay, period, timeout, success
//! and failure thresholds; startup gating liveness and readiness).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, ContainerPort, ExecAction, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::runtime::ContainerRuntime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }

    pub fn of(self, container: &Container) -> Option<&Probe> {
        match self {
            Kind::Startup => container.startup_probe.as_ref(),
            Kind::Liveness => container.liveness_probe.as_ref(),
            Kind::Readiness => container.readiness_probe.as_ref(),
        }
    }
}

/// One probe of one run of a container.
#[derive(Debug, Default, Clone)]
pub struct Tracker {
    last: Option<Instant>,
    successes: i32,
    failures: i32,
    /// The settled result: None until a threshold is reached.
    pub result: Option<bool>,
}

/// What a due probe concluded.
pub enum Outcome {
    /// Nothing settled, or the result stands.
    Unchanged,
    Succeeded,
    /// Failed its threshold; the message says why.
    Failed(String),
}

impl Tracker {
    /// Whether the probe should run now, `started` being when the container started.
    pub fn due(&self, probe: &Probe, started: Instant) -> bool {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        started.elapsed() >= delay && self.last.is_none_or(|at| at.elapsed() >= period)
    }

    /// Counts one probe result toward the thresholds.
    pub fn record(&mut self, probe: &Probe, passed: Result<(), String>) -> Outcome {
        self.last = Some(Instant::now());
        match passed {
            Ok(()) => {
                self.failures = 0;
                self.successes += 1;
                if self.successes >= probe.success_threshold.unwrap_or(1).max(1) && self.result != Some(true) {
                    self.result = Some(true);
                    return Outcome::Succeeded;
                }
            }
            Err(why) => {
                self.successes = 0;
                self.failures += 1;
                if self.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                    self.result = Some(false);
                    return Outcome::Failed(why);
                }
            }
        }
        Outcome::Unchanged
    }
}

/// Probe trackers of a pod, by container run and kind.
pub type Trackers = HashMap<(String, Kind), Tracker>;

/// Where a handler's network checks go.
pub struct Target<'a> {
    pub runtime: &'a dyn ContainerRuntime,
    pub container_id: &'a str,
    pub ip: Option<IpAddr>,
    pub ports: &'a [ContainerPort],
}

fn port(value: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    match value {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => ports.iter().find(|p| p.name.as_deref() == Some(name)).map(|p| p.container_port as u16).ok_or_else(|| format!("port {name:?} is not a container port")),
    }
}

pub async fn run_exec(target: &Target<'_>, action: &ExecAction, timeout: Duration) -> Result<(), String> {
    let command = action.command.clone().unwrap_or_default();
    let child = target.runtime.exec(target.container_id, &command, false).await.map_err(|e| format!("{e:#}"))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            Err(format!("command {command:?} exited with {}: {}", out.status.code().unwrap_or(-1), text.trim()))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("command {command:?} timed out")),
    }
}

pub async fn run_http(target: &Target<'_>, action: &HTTPGetAction, timeout: Duration) -> Result<(), String> {
    let port = port(&action.port, target.ports)?;
    let host = action.host.clone().filter(|h| !h.is_empty()).or(target.ip.map(|ip| ip.to_string())).ok_or("the pod has no IP")?;
    http_probe(&host, port, action, timeout).await
}

async fn http_probe(host: &str, port: u16, action: &HTTPGetAction, timeout: Duration) -> Result<(), String> {
    let path = action.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into());
    let https = action.scheme.as_deref() == Some("HTTPS");
    let url = format!("{}://{host}:{port}{path}", if https { "https" } else { "http" });
    let mut request = hyper::Request::get(path.as_str()).header("Host", format!("{host}:{port}")).header("User-Agent", "kube-probe/1.32");
    for h in action.http_headers.iter().flatten() {
        request = request.header(h.name.as_str(), h.value.as_str());
    }
    let request = request.body(axum::body::Body::empty()).map_err(|e| e.to_string())?;
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
        let status = if https {
            // As upstream's prober: the pod's certificate is not verified.
            let connector = tokio_rustls::TlsConnector::from(Arc::new(skiff_auth::pki::unverified_client_config()));
            let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
            let tls = connector.connect(name, tcp).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
            get(tls, request).await
        } else {
            get(tcp, request).await
        }
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
        if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {status}"))
        }
    };
    tokio::time::timeout(timeout, attempt).await.unwrap_or_else(|_| Err(format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")))
}

/// One HTTP/1.1 request over a connection; the response's status.
async fn get(io: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static, request: hyper::Request<axum::body::Body>) -> Result<u16, String> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender.send_request(request).await.map_err(|e| e.to_string())?.status().as_u16())
}

pub async fn run_tcp(target: &Target<'_>, action: &TCPSocketAction, timeout: Duration) -> Result<(), String> {
    let port = port(&action.port, target.ports)?;
    let host = action.host.clone().filter(|h| !h.is_empty()).or(target.ip.map(|ip| ip.to_string())).ok_or("the pod has no IP")?;
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
        Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
    }
}

/// The handler kinds probes and hooks share; None when none is set.
async fn act(target: &Target<'_>, exec: Option<&ExecAction>, http: Option<&HTTPGetAction>, tcp: Option<&TCPSocketAction>, timeout: Duration) -> Option<Result<(), String>> {
    Some(match (exec, http, tcp) {
        (Some(action), _, _) => run_exec(target, action, timeout).await,
        (None, Some(action), _) => run_http(target, action, timeout).await,
        (None, None, Some(action)) => run_tcp(target, action, timeout).await,
        (None, None, None) => return None,
    })
}

/// Runs a probe's handler once.
pub async fn check(target: &Target<'_>, probe: &Probe) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    act(target, probe.exec.as_ref(), probe.http_get.as_ref(), probe.tcp_socket.as_ref(), timeout).await.unwrap_or_else(|| Err("the probe has no handler this agent supports".into()))
}

/// Runs a lifecycle hook (postStart, preStop); `timeout` bounds it.
pub async fn hook(target: &Target<'_>, handler: &k8s_openapi::api::core::v1::LifecycleHandler, timeout: Duration) -> Result<(), String> {
    if let Some(done) = act(target, handler.exec.as_ref(), handler.http_get.as_ref(), handler.tcp_socket.as_ref(), timeout).await {
        return done;
    }
    match &handler.sleep {
        Some(sleep) => {
            tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout)).await;
            Ok(())
        }
        None => Err("the hook has no handler".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HTTPS probes take the pod's certificate, whoever signed it.
    #[tokio::test]
    async fn https_probes_skip_certificate_checks() {
        let cert = rcgen::generate_simple_self_signed(vec!["pod.local".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap().with_no_client_auth().with_single_cert(vec![cert.cert.der().clone()], key).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut tls = acceptor.accept(tcp).await.unwrap();
                    let mut buffer = [0u8; 1024];
                    let n = tls.read(&mut buffer).await.unwrap();
                    let status = if String::from_utf8_lossy(&buffer[..n]).starts_with("GET /healthz") { "200 OK" } else { "503 Service Unavailable" };
                    tls.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes()).await.unwrap();
                });
            }
        });
        let action = |path: &str| HTTPGetAction { scheme: Some("HTTPS".into()), path: Some(path.into()), port: IntOrString::Int(port.into()), ..Default::default() };
        http_probe("127.0.0.1", port, &action("/healthz"), Duration::from_secs(5)).await.unwrap();
        let failed = http_probe("127.0.0.1", port, &action("/other"), Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(failed, "HTTP probe failed with statuscode: 503");
    }

    #[test]
    fn thresholds_settle_results() {
        let probe = Probe { success_threshold: Some(2), failure_threshold: Some(2), ..Default::default() };
        let mut t = Tracker::default();
        assert!(matches!(t.record(&probe, Ok(())), Outcome::Unchanged));
        assert!(matches!(t.record(&probe, Ok(())), Outcome::Succeeded));
        assert_eq!(t.result, Some(true));
        assert!(matches!(t.record(&probe, Err("no".into())), Outcome::Unchanged));
        assert!(matches!(t.record(&probe, Err("no".into())), Outcome::Failed(_)));
        assert_eq!(t.result, Some(false));
        let named = [ContainerPort { name: Some("http".into()), container_port: 8080, ..Default::default() }];
        assert_eq!(port(&IntOrString::String("http".into()), &named), Ok(8080));
        assert!(port(&IntOrString::String("nope".into()), &named).is_err());
    }
}

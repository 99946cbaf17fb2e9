//! Probes and lifecycle hooks: exec, httpGet and tcpSocket handlers, and
//! upstream's probe bookkeeping (initial delay, period, timeout, success
//! and failure thresholds; startup gating liveness and readiness).

use std::collections::HashMap;
use std::net::IpAddr;
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
    let path = action.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into());
    let url = format!("http://{host}:{port}{path}");
    if action.scheme.as_deref() == Some("HTTPS") {
        return Err("HTTPS probes are not supported yet".into());
    }
    let attempt = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut request = hyper::Request::get(path.as_str()).header("Host", format!("{host}:{port}")).header("User-Agent", "kube-probe/1.32");
        for h in action.http_headers.iter().flatten() {
            request = request.header(h.name.as_str(), h.value.as_str());
        }
        let response = sender.send_request(request.body(axum::body::Body::empty()).map_err(|e| e.to_string())?).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
        let status = response.status().as_u16();
        if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {status}"))
        }
    };
    tokio::time::timeout(timeout, attempt).await.unwrap_or_else(|_| Err(format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")))
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

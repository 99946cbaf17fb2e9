//! Pods bound to simulated nodes: started (Running and Ready) as soon as
//! they are seen, finished when their annotations say, and removed once
//! deleted, as a kubelet finishes a graceful deletion.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::nodes::now;
use crate::Options;

/// A pod annotated with a duration (`2s`, `500ms`, `1m`) succeeds, or
/// fails, that long after it started.
pub const SUCCEED_AFTER: &str = "sim.skiff.io/succeed-after";
pub const FAIL_AFTER: &str = "sim.skiff.io/fail-after";
/// The exit code a failing pod's containers report (default 1).
pub const EXIT_CODE: &str = "sim.skiff.io/exit-code";
/// API requests in flight at once.
const PARALLEL: usize = 64;

struct State {
    options: Arc<Options>,
    pods: Api<Pod>,
    slots: Semaphore,
    /// Pods (by uid) started, or being finished or removed, by us.
    started: Mutex<HashSet<String>>,
    finishing: Mutex<HashSet<String>>,
    removing: Mutex<HashSet<String>>,
    /// Each node's pod CIDR, once known.
    cidrs: Mutex<HashMap<String, (Ipv4Addr, u8)>>,
}

pub(crate) async fn run(client: kube::Client, options: Arc<Options>) {
    let state = Arc::new(State {
        options,
        pods: Api::all(client),
        slots: Semaphore::new(PARALLEL),
        started: Mutex::default(),
        finishing: Mutex::default(),
        removing: Mutex::default(),
        cidrs: Mutex::default(),
    });
    let mut events = watcher(state.pods.clone(), watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => handle(&state, pod),
            Ok(watcher::Event::Delete(pod)) => {
                let uid = pod.metadata.uid.unwrap_or_default();
                for set in [&state.started, &state.finishing, &state.removing] {
                    set.lock().unwrap().remove(&uid);
                }
            }
            Ok(_) => {}
            // The watcher retries by itself; a pause keeps a dead server from spinning us.
            Err(e) => {
                tracing::warn!("watching pods: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Claims `uid` in `set`; false if it was already claimed.
fn claim(set: &Mutex<HashSet<String>>, uid: &str) -> bool {
    set.lock().unwrap().insert(uid.to_string())
}

fn handle(state: &Arc<State>, pod: Pod) {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else { return };
    let Some(index) = state.options.index_of(node) else { return };
    let (Some(uid), Some(name), Some(ns)) = (pod.metadata.uid.clone(), pod.metadata.name.clone(), pod.metadata.namespace.clone()) else {
        return;
    };
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let state = state.clone();
    if pod.metadata.deletion_timestamp.is_some() {
        if claim(&state.removing, &uid) {
            tokio::spawn(async move {
                let _slot = state.slots.acquire().await;
                let params = DeleteParams { grace_period_seconds: Some(0), preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }), ..Default::default() };
                if let Err(e) = Api::<Pod>::namespaced(state.pods.clone().into_client(), &ns).delete(&name, &params).await {
                    tracing::debug!("removing pod {ns}/{name}: {e}");
                }
            });
        }
        return;
    }
    if phase == "Pending" && claim(&state.started, &uid) {
        let node = node.to_string();
        tokio::spawn(async move {
            let _slot = state.slots.acquire().await;
            let cidr = pod_cidr(&state, &node).await;
            let status = running(&pod, index, cidr);
            let api = Api::<Pod>::namespaced(state.pods.clone().into_client(), &ns);
            // No event may come to try again (the pod does not change while
            // it waits), so a write refused under load is retried here.
            let mut pause = Duration::from_millis(200);
            loop {
                match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await {
                    Ok(_) => break,
                    Err(kube::Error::Api(e)) if e.code == 404 => break,
                    Err(e) => {
                        tracing::debug!("starting pod {ns}/{name}: {e}; again in {pause:?}");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        return;
    }
    if phase != "Running" {
        return;
    }
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let outcome = [(SUCCEED_AFTER, true), (FAIL_AFTER, false)]
        .into_iter()
        .find_map(|(key, ok)| annotations.get(key).and_then(|d| parse_duration(d)).map(|d| (d, ok)));
    let Some((after, succeeded)) = outcome else { return };
    if !claim(&state.finishing, &uid) {
        return;
    }
    let started = pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
    let elapsed = started.map_or(Duration::ZERO, |t| (chrono::Utc::now() - t).to_std().unwrap_or_default());
    tokio::spawn(async move {
        tokio::time::sleep(after.saturating_sub(elapsed)).await;
        let _slot = state.slots.acquire().await;
        let api = Api::<Pod>::namespaced(state.pods.clone().into_client(), &ns);
        if let Err(e) = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(finished(&pod, succeeded))).await {
            tracing::debug!("finishing pod {ns}/{name}: {e}");
        }
    });
}

/// The node's pod CIDR (from node IPAM), read once per node; None while
/// it has none.
async fn pod_cidr(state: &State, node: &str) -> Option<(Ipv4Addr, u8)> {
    if let Some(cidr) = state.cidrs.lock().unwrap().get(node) {
        return Some(*cidr);
    }
    let nodes: Api<Node> = Api::all(state.pods.clone().into_client());
    let text = nodes.get(node).await.ok()?.spec?.pod_cidr?;
    let (net, bits) = text.split_once('/')?;
    let cidr = (net.parse().ok()?, bits.parse().ok()?);
    state.cidrs.lock().unwrap().insert(node.to_string(), cidr);
    Some(cidr)
}

/// A pod IP from the node's pod CIDR (else from 10.128.<node>.0/24, for
/// clusters without node IPAM), picked by the pod's uid: like a CNI's
/// host-local allocation, though two pods may draw the same address.
fn pod_ip(node: usize, cidr: Option<(Ipv4Addr, u8)>, uid: &str) -> Ipv4Addr {
    // Wrapping: a node index or CIDR at the end of the range must not overflow.
    let (base, bits) = cidr.unwrap_or((Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)).wrapping_add((node as u32) << 8)), 24));
    let hosts = (1u32 << (32 - bits.clamp(8, 30) as u32)) - 2;
    let host = uid.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32)) % hosts + 1;
    Ipv4Addr::from(u32::from(base).wrapping_add(host))
}

fn condition(kind: &str, status: &str, reason: Option<&str>) -> Value {
    let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now()});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

fn container_status(c: &k8s_openapi::api::core::v1::Container, uid: &str, state: Value, ready: bool) -> Value {
    json!({
        "name": c.name,
        "image": c.image.clone().unwrap_or_default(),
        "imageID": format!("sim://{}", c.image.clone().unwrap_or_default()),
        "containerID": format!("sim://{uid}/{}", c.name),
        "ready": ready,
        "started": ready,
        "restartCount": 0,
        "state": state,
    })
}

/// The status a kubelet reports once every container runs and is ready.
fn running(pod: &Pod, node: usize, cidr: Option<(Ipv4Addr, u8)>) -> Value {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let now = now();
    let ip = pod_ip(node, cidr, uid).to_string();
    let ip = if spec.host_network == Some(true) { "127.0.0.1".to_string() } else { ip };
    let init: Vec<Value> = spec.init_containers.iter().flatten()
        .map(|c| container_status(c, uid, json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}), false))
        .collect();
    let containers: Vec<Value> = spec.containers.iter()
        .map(|c| container_status(c, uid, json!({"running": {"startedAt": now}}), true))
        .collect();
    let conditions = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"].map(|k| condition(k, "True", None));
    json!({"status": {
        "phase": "Running",
        "conditions": conditions,
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
        "initContainerStatuses": init,
        "containerStatuses": containers,
    }})
}

/// The status of a pod whose containers all exited, with 0 or with the
/// pod's exit code.
fn finished(pod: &Pod, succeeded: bool) -> Value {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let started = pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map_or_else(now, |t| t.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let failure: i32 = pod.metadata.annotations.as_ref().and_then(|a| a.get(EXIT_CODE)).and_then(|c| c.parse().ok()).unwrap_or(1);
    let (code, reason) = if succeeded { (0, "Completed") } else { (failure, "Error") };
    let containers: Vec<Value> = spec.containers.iter()
        .map(|c| container_status(c, uid, json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now()}}), false))
        .collect();
    json!({"status": {
        "phase": if succeeded { "Succeeded" } else { "Failed" },
        "conditions": [
            condition("PodReadyToStartContainers", "False", None),
            condition("Initialized", "True", Some("PodCompleted")),
            condition("Ready", "False", Some("PodCompleted")),
            condition("ContainersReady", "False", Some("PodCompleted")),
            condition("PodScheduled", "True", None),
        ],
        "containerStatuses": containers,
    }})
}

/// `2s`, `500ms`, `1m`, `1h`.
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let number: f64 = text[..split].parse().ok()?;
    let unit = match &text[split..] {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    // `try_`: an annotation of 1e30 hours must not panic the simulator.
    Duration::try_from_secs_f64(number * unit).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("99999999999999999999999999h"), None, "too long for a Duration");
    }

    #[test]
    fn pod_ips_fall_in_the_node_slice() {
        let ip = pod_ip(3, None, "some-uid").octets();
        assert_eq!((ip[0], ip[1], ip[2]), (10, 128, 3));
        assert!((1..=254).contains(&ip[3]));
        let ip = pod_ip(3, Some((Ipv4Addr::new(10, 42, 7, 0), 24)), "some-uid").octets();
        assert_eq!((ip[0], ip[1], ip[2]), (10, 42, 7), "from the node's podCIDR");
    }
}

//! A pod's status as upstream's kubelet words it, from what the runtime
//! says of its containers: container states and reasons, the phase, and
//! the conditions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container as ContainerSpec, Pod};
use serde_json::{json, Value};

use crate::runtime::{Container, State};

/// Why a container is not running, when the runtime cannot say
/// (`ErrImagePull`, `CrashLoopBackOff`, `CreateContainerConfigError`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// RFC 3339 to the second, as the API's timestamps are.
pub fn seconds(time: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(time).map(|t| t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_else(|_| time.to_string())
}

pub fn container_id(id: &str) -> String {
    format!("runc://{id}")
}

/// A terminated state from a run that ended (or never started).
fn terminated(c: &Container, message: Option<&str>) -> Option<Value> {
    let id = container_id(&c.id);
    match &c.state {
        State::Exited { started_at, finished_at, exit_code, oom_killed } => {
            let reason = if *oom_killed { "OOMKilled" } else if *exit_code == 0 { "Completed" } else { "Error" };
            let mut t = json!({"exitCode": exit_code, "reason": reason, "startedAt": seconds(started_at), "finishedAt": seconds(finished_at), "containerID": id});
            if let Some(m) = message.filter(|m| !m.is_empty()) {
                t["message"] = json!(m);
            }
            Some(t)
        }
        State::Created { error, failed_at } => {
            let mut t = json!({"exitCode": 128, "reason": "StartError", "message": error.clone().unwrap_or_default(), "containerID": id});
            if let Some(at) = failed_at {
                t["finishedAt"] = json!(seconds(at));
            }
            Some(t)
        }
        State::Running { .. } => None,
    }
}

/// One entry of `containerStatuses` (or `initContainerStatuses`).
/// `runs` are the container's runs, oldest first.
pub fn container_status(spec: &ContainerSpec, runs: &[&Container], waiting: Option<&Waiting>, messages: &BTreeMap<String, String>) -> Value {
    let latest = runs.last();
    let previous = runs.len().checked_sub(2).map(|i| runs[i]);
    let message = |c: &Container| messages.get(&c.id).map(String::as_str);
    let mut status = json!({
        "name": spec.name,
        "image": spec.image.clone().unwrap_or_default(),
        "imageID": latest.map(|c| c.meta.image_id.clone()).unwrap_or_default(),
        "ready": false,
        "started": false,
        "restartCount": latest.map(|c| c.meta.attempt).unwrap_or(0),
        "state": {"waiting": {"reason": "ContainerCreating"}},
        "lastState": {},
    });
    if let Some(c) = latest {
        status["containerID"] = json!(container_id(&c.id));
    }
    let last_state = |c: Option<&Container>| c.and_then(|c| terminated(c, message(c))).map(|t| json!({"terminated": t})).unwrap_or_else(|| json!({}));
    match (latest, waiting) {
        (Some(c), _) if matches!(c.state, State::Running { .. }) => {
            let State::Running { started_at } = &c.state else { unreachable!() };
            status["state"] = json!({"running": {"startedAt": seconds(started_at)}});
            status["ready"] = json!(true);
            status["started"] = json!(true);
            status["lastState"] = last_state(previous);
        }
        (latest, Some(w)) => {
            let mut waiting = json!({"reason": w.reason});
            if !w.message.is_empty() {
                waiting["message"] = json!(w.message);
            }
            status["state"] = json!({"waiting": waiting});
            status["lastState"] = last_state(latest.copied());
        }
        (Some(c), None) => {
            status["state"] = json!({"terminated": terminated(c, message(c))});
            status["lastState"] = last_state(previous);
        }
        (None, None) => {}
    }
    status
}

/// Upstream's phase rules (`getPhase`): Pending until the init containers
/// are done and every container has run; Running while any runs or will
/// be restarted; then Succeeded when all succeeded, else Failed.
pub fn phase(pod: &Pod, containers: &[Value], initialized: bool, init_failed: bool) -> &'static str {
    let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    if init_failed {
        return "Failed";
    }
    if !initialized {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in containers {
        let state = &c["state"];
        if state.get("running").is_some() {
            running += 1;
        } else if let Some(t) = state.get("terminated") {
            stopped += 1;
            if t["exitCode"] == 0 {
                succeeded += 1;
            }
        } else if c["lastState"].get("terminated").is_some() {
            stopped += 1;
            if c["lastState"]["terminated"]["exitCode"] == 0 {
                succeeded += 1;
            }
        } else {
            waiting += 1;
        }
    }
    match () {
        _ if waiting > 0 => "Pending",
        _ if running > 0 => "Running",
        _ if stopped > 0 && policy == "Always" => "Running",
        _ if stopped > 0 && stopped == succeeded => "Succeeded",
        _ if policy == "OnFailure" => "Running",
        _ if stopped > 0 => "Failed",
        _ => "Pending",
    }
}

/// The pod's conditions in upstream's order, each keeping its
/// `lastTransitionTime` while its status stays.
pub fn conditions(pod: &Pod, sandbox_ready: bool, initialized: Result<(), Vec<String>>, unready: Vec<String>, phase: &str) -> Vec<Value> {
    let old: BTreeMap<String, (String, Option<String>)> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| (c.type_.clone(), (c.status.clone(), c.last_transition_time.as_ref().map(|t| t.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))))
        .collect();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let condition = |kind: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let since = match old.get(kind) {
            Some((s, Some(t))) if s == status => t.clone(),
            _ => now.clone(),
        };
        let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        if let Some(m) = message {
            c["message"] = json!(m);
        }
        c
    };
    let finished = phase == "Succeeded" || phase == "Failed";
    let list = |names: &[String]| format!("[{}]", names.join(" "));
    let ready_reason = |names: &Vec<String>| {
        if finished {
            (Some("PodCompleted"), None)
        } else {
            (Some("ContainersNotReady"), Some(format!("containers with unready status: {}", list(names))))
        }
    };
    let mut out = vec![condition("PodReadyToStartContainers", sandbox_ready && !finished, None, None)];
    out.push(match &initialized {
        Ok(()) => condition("Initialized", true, finished.then_some("PodCompleted"), None),
        Err(pending) => condition("Initialized", false, Some("ContainersNotInitialized"), Some(format!("containers with incomplete status: {}", list(pending)))),
    });
    let ready = unready.is_empty() && !finished;
    let (reason, message) = if ready { (None, None) } else { ready_reason(&unready) };
    out.push(condition("Ready", ready, reason, message.clone()));
    out.push(condition("ContainersReady", ready, reason, message));
    let scheduled = pod.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    if let Some(s) = scheduled {
        out.push(serde_json::to_value(s).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Meta;

    fn run(attempt: u32, state: State) -> Container {
        let meta = Meta { pod_uid: "u".into(), pod_namespace: "ns".into(), pod_name: "p".into(), container: "c".into(), attempt, image: "i".into(), image_id: "i@sha256:1".into(), log_path: "/dev/null".into() };
        Container { id: format!("id{attempt}"), meta, state }
    }

    fn exited(code: i32) -> State {
        State::Exited { started_at: "2026-01-01T00:00:00.5Z".into(), finished_at: "2026-01-01T00:00:01Z".into(), exit_code: code, oom_killed: false }
    }

    #[test]
    fn container_states_are_worded_as_upstream() {
        let spec = ContainerSpec { name: "c".into(), image: Some("i".into()), ..Default::default() };
        let none = BTreeMap::new();
        let s = container_status(&spec, &[], None, &none);
        assert_eq!(s["state"]["waiting"]["reason"], "ContainerCreating");
        let (a, b) = (run(0, exited(1)), run(1, State::Running { started_at: "2026-01-01T00:00:02.25Z".into() }));
        let s = container_status(&spec, &[&a, &b], None, &none);
        assert_eq!(s["state"]["running"]["startedAt"], "2026-01-01T00:00:02Z");
        assert_eq!(s["lastState"]["terminated"]["reason"], "Error");
        assert_eq!(s["restartCount"], 1);
        let backoff = Waiting { reason: "CrashLoopBackOff".into(), message: "back-off 10s".into() };
        let c = run(1, exited(2));
        let s = container_status(&spec, &[&a, &c], Some(&backoff), &none);
        assert_eq!(s["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(s["lastState"]["terminated"]["exitCode"], 2);
        let oom = run(0, State::Exited { started_at: "2026-01-01T00:00:00Z".into(), finished_at: "2026-01-01T00:00:00Z".into(), exit_code: 137, oom_killed: true });
        assert_eq!(container_status(&spec, &[&oom], None, &none)["state"]["terminated"]["reason"], "OOMKilled");
    }

    #[test]
    fn phases_follow_upstream_rules() {
        let pod = |policy: &str| -> Pod { serde_json::from_value(json!({"spec": {"restartPolicy": policy, "containers": []}})).unwrap() };
        let spec = ContainerSpec { name: "c".into(), ..Default::default() };
        let none = BTreeMap::new();
        let ok = run(0, exited(0));
        let bad = run(0, exited(1));
        let done = [container_status(&spec, &[&ok], None, &none)];
        let failed = [container_status(&spec, &[&bad], None, &none)];
        assert_eq!(phase(&pod("Never"), &done, true, false), "Succeeded");
        assert_eq!(phase(&pod("Never"), &failed, true, false), "Failed");
        assert_eq!(phase(&pod("OnFailure"), &failed, true, false), "Running");
        assert_eq!(phase(&pod("Always"), &done, true, false), "Running");
        assert_eq!(phase(&pod("Always"), &done, false, false), "Pending");
        assert_eq!(phase(&pod("Never"), &[container_status(&spec, &[], None, &none)], true, false), "Pending");
    }
}

//! PodSecurity: the Pod Security Standards (privileged, baseline,
//! restricted) a namespace asks for with its `pod-security.kubernetes.io/
//! enforce|warn|audit` labels. `enforce` refuses violating pods, `warn`
//! answers with a warning and `audit` annotates the audit event, all in
//! upstream's words (the checks of its
//! `latest` policy version, without the Windows and AppArmor ones).

use async_trait::async_trait;
use serde_json::Value;

use crate::pods::containers;
use crate::{Cluster, Operation, Plugin, Rejection, Request};

pub struct PodSecurity;

#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn parse(label: Option<&str>) -> Level {
        match label {
            Some("restricted") => Level::Restricted,
            Some("baseline") => Level::Baseline,
            _ => Level::Privileged,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// Capabilities baseline allows containers to add (Docker's defaults).
const BASELINE_CAPABILITIES: &[&str] = &["AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"];

/// Volume types restricted allows.
const RESTRICTED_VOLUMES: &[&str] = &["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];

/// Sysctls baseline allows.
const SAFE_SYSCTLS: &[&str] = &["kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"];

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

/// "container" or "containers", as upstream words a list of them.
fn containers_word(names: &[String]) -> String {
    format!("{} {}", if names.len() == 1 { "container" } else { "containers" }, quoted(names))
}

/// The violations of `level` by a pod spec, in upstream's order and words.
fn violations(spec: &Value, level: Level) -> Vec<String> {
    let mut out = Vec::new();
    if level == Level::Privileged {
        return out;
    }
    let all: Vec<&Value> = containers(spec).collect();
    let name = |c: &&Value| c["name"].as_str().unwrap_or_default().to_string();
    let pod_sc = &spec["securityContext"];
    let names_where = |pred: &dyn Fn(&Value) -> bool| all.iter().filter(|c| pred(c)).map(name).collect::<Vec<_>>();

    // Baseline.
    let host: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"].iter().filter(|f| spec[**f] == true).map(|f| format!("{f}=true")).collect();
    if !host.is_empty() {
        out.push(format!("host namespaces ({})", host.join(", ")));
    }
    let privileged = names_where(&|c| c["securityContext"]["privileged"] == true);
    if !privileged.is_empty() {
        out.push(format!("privileged ({} must not set securityContext.privileged=true)", containers_word(&privileged)));
    }
    let mut added: Vec<String> = Vec::new();
    let adders = names_where(&|c| {
        c["securityContext"]["capabilities"]["add"].as_array().into_iter().flatten().filter_map(Value::as_str).any(|cap| !BASELINE_CAPABILITIES.contains(&cap))
    });
    for c in &all {
        for cap in c["securityContext"]["capabilities"]["add"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !BASELINE_CAPABILITIES.contains(&cap) && !added.contains(&cap.to_string()) {
                added.push(cap.to_string());
            }
        }
    }
    if !adders.is_empty() {
        out.push(format!("non-default capabilities ({} must not include {} in securityContext.capabilities.add)", containers_word(&adders), quoted(&added)));
    }
    let host_paths: Vec<String> = spec["volumes"].as_array().into_iter().flatten().filter(|v| !v["hostPath"].is_null()).map(|v| v["name"].as_str().unwrap_or_default().to_string()).collect();
    if !host_paths.is_empty() {
        let word = if host_paths.len() == 1 { "volume" } else { "volumes" };
        out.push(format!("hostPath volumes ({word} {})", quoted(&host_paths)));
    }
    let mut ports: Vec<String> = Vec::new();
    let port_users = names_where(&|c| c["ports"].as_array().into_iter().flatten().any(|p| p["hostPort"].as_i64().unwrap_or(0) != 0));
    for c in &all {
        for p in c["ports"].as_array().into_iter().flatten().filter_map(|p| p["hostPort"].as_i64()).filter(|p| *p != 0) {
            ports.push(p.to_string());
        }
    }
    if !port_users.is_empty() {
        let word = if ports.len() == 1 { "hostPort" } else { "hostPorts" };
        out.push(format!("hostPort ({} {} {word} {})", containers_word(&port_users), if port_users.len() == 1 { "uses" } else { "use" }, ports.join(", ")));
    }
    let unmasked = names_where(&|c| c["securityContext"]["procMount"] == "Unmasked");
    if !unmasked.is_empty() {
        out.push(format!("procMount ({} must not set securityContext.procMount to \"Unmasked\")", containers_word(&unmasked)));
    }
    let unconfined_pod = pod_sc["seccompProfile"]["type"] == "Unconfined";
    let unconfined = names_where(&|c| c["securityContext"]["seccompProfile"]["type"] == "Unconfined");
    if unconfined_pod || !unconfined.is_empty() {
        let who = match (unconfined_pod, unconfined.is_empty()) {
            (true, true) => "pod".to_string(),
            (true, false) => format!("pod and {}", containers_word(&unconfined)),
            _ => containers_word(&unconfined),
        };
        out.push(format!("seccompProfile ({who} must not set securityContext.seccompProfile.type to \"Unconfined\")"));
    }
    let unsafe_sysctls: Vec<String> = pod_sc["sysctls"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).filter(|n| !SAFE_SYSCTLS.contains(n)).map(String::from).collect();
    if !unsafe_sysctls.is_empty() {
        out.push(format!("forbidden sysctls ({})", unsafe_sysctls.join(", ")));
    }
    if level == Level::Baseline {
        return out;
    }

    // Restricted.
    let restricted_volumes: Vec<(String, String)> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let kind = v.as_object()?.keys().find(|k| *k != "name")?.clone();
            (!RESTRICTED_VOLUMES.contains(&kind.as_str())).then(|| (v["name"].as_str().unwrap_or_default().to_string(), kind))
        })
        .collect();
    if !restricted_volumes.is_empty() {
        let names: Vec<String> = restricted_volumes.iter().map(|(n, _)| n.clone()).collect();
        let mut kinds: Vec<String> = restricted_volumes.iter().map(|(_, k)| k.clone()).collect();
        kinds.dedup();
        let (vw, tw) = (if names.len() == 1 { "volume" } else { "volumes" }, if kinds.len() == 1 { "type" } else { "types" });
        out.push(format!("restricted volume types ({vw} {} {} restricted volume {tw} {})", quoted(&names), if names.len() == 1 { "uses" } else { "use" }, quoted(&kinds)));
    }
    let escalating = names_where(&|c| c["securityContext"]["allowPrivilegeEscalation"] != false);
    if !escalating.is_empty() {
        out.push(format!("allowPrivilegeEscalation != false ({} must set securityContext.allowPrivilegeEscalation=false)", containers_word(&escalating)));
    }
    let not_dropping = names_where(&|c| !c["securityContext"]["capabilities"]["drop"].as_array().into_iter().flatten().any(|d| d == "ALL"));
    let adding = names_where(&|c| c["securityContext"]["capabilities"]["add"].as_array().into_iter().flatten().any(|a| a != "NET_BIND_SERVICE"));
    if !not_dropping.is_empty() || !adding.is_empty() {
        let mut parts = Vec::new();
        if !not_dropping.is_empty() {
            parts.push(format!("{} must set securityContext.capabilities.drop=[\"ALL\"]", containers_word(&not_dropping)));
        }
        if !adding.is_empty() {
            parts.push(format!("{} must not include {} in securityContext.capabilities.add", containers_word(&adding), quoted(&added)));
        }
        out.push(format!("unrestricted capabilities ({})", parts.join("; ")));
    }
    let pod_non_root = pod_sc["runAsNonRoot"] == true;
    let not_non_root = names_where(&|c| c["securityContext"]["runAsNonRoot"] == false || (!pod_non_root && c["securityContext"]["runAsNonRoot"] != true));
    if !not_non_root.is_empty() {
        let who = if pod_non_root { containers_word(&not_non_root) } else { format!("pod or {}", containers_word(&not_non_root)) };
        out.push(format!("runAsNonRoot != true ({who} must set securityContext.runAsNonRoot=true)"));
    }
    let root_pod = pod_sc["runAsUser"] == 0;
    let root = names_where(&|c| c["securityContext"]["runAsUser"] == 0);
    if root_pod || !root.is_empty() {
        let who = match (root_pod, root.is_empty()) {
            (true, true) => "pod".to_string(),
            (true, false) => format!("pod and {}", containers_word(&root)),
            _ => containers_word(&root),
        };
        out.push(format!("runAsUser=0 ({who} must not set runAsUser=0)"));
    }
    let confined = |t: &Value| t == "RuntimeDefault" || t == "Localhost";
    let pod_confined = confined(&pod_sc["seccompProfile"]["type"]);
    let unset = names_where(&|c| {
        let t = &c["securityContext"]["seccompProfile"]["type"];
        if t.is_null() { !pod_confined } else { !confined(t) && t != "Unconfined" }
    });
    if !unset.is_empty() {
        let who = if pod_confined { containers_word(&unset) } else { format!("pod or {}", containers_word(&unset)) };
        out.push(format!("seccompProfile ({who} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"));
    }
    out
}

#[async_trait]
impl Plugin for PodSecurity {
    fn name(&self) -> &'static str {
        "PodSecurity"
    }

    /// Pods that violate the enforce level are refused. Pods, and the pod
    /// templates of workloads, get the warn level's warnings and the audit
    /// level's annotation (upstream enforces only on the pods workloads make).
    async fn check(&self, req: &Request<'_>, obj: &Value, cluster: &dyn Cluster) -> Result<Vec<String>, Rejection> {
        let is_pod = req.is("", "pods");
        let labels = match namespace_labels(req, obj, cluster).await {
            Ok(Some(labels)) => labels,
            Err(e) if is_pod => return Err(e),
            _ => return Ok(Vec::new()),
        };
        let Some(spec) = pod_spec(req, obj) else { return Ok(Vec::new()) };
        let judge = |mode: &str| {
            let level = Level::parse(labels[format!("pod-security.kubernetes.io/{mode}")].as_str());
            let found = violations(spec, level);
            (!found.is_empty()).then(|| format!("PodSecurity \"{}:latest\": {}", level.name(), found.join(", ")))
        };
        if let (true, Some(violated)) = (is_pod, judge("enforce")) {
            return Err(Rejection::forbidden(req, format!("violates {violated}")));
        }
        if let Some(violated) = judge("audit") {
            crate::annotate("pod-security.kubernetes.io/audit-violations", format!("would violate {violated}"));
        }
        Ok(judge("warn").map(|violated| format!("would violate {violated}")).into_iter().collect())
    }
}

/// The pod spec a pod or a workload's template carries.
fn pod_spec<'v>(req: &Request<'_>, obj: &'v Value) -> Option<&'v Value> {
    let template = match (req.group, req.resource) {
        ("", "pods") => return Some(&obj["spec"]),
        ("", "podtemplates") => &obj["template"],
        ("", "replicationcontrollers") | ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets") | ("batch", "jobs") => &obj["spec"]["template"],
        ("batch", "cronjobs") => &obj["spec"]["jobTemplate"]["spec"]["template"],
        _ => return None,
    };
    Some(&template["spec"])
}

/// The labels of the namespace of a pod or workload being created or
/// updated; None when there is nothing to judge.
async fn namespace_labels(req: &Request<'_>, obj: &Value, cluster: &dyn Cluster) -> Result<Option<Value>, Rejection> {
    let Some(spec) = pod_spec(req, obj) else { return Ok(None) };
    if !req.subresource.is_empty() || !matches!(req.operation, Operation::Create | Operation::Update) {
        return Ok(None);
    }
    // An update is judged only when it changes the pod spec (upstream
    // skips updates that cannot change what the pod may do).
    if req.old.is_some_and(|old| pod_spec(req, old) == Some(spec)) {
        return Ok(None);
    }
    let ns = cluster.get("", "namespaces", None, req.namespace).await.map_err(Rejection::internal)?;
    Ok(ns.map(|n| n["metadata"]["labels"].clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn upstream_words_for_the_usual_violations() {
        let plain = json!({"containers": [{"name": "c", "image": "i"}]});
        assert!(violations(&plain, Level::Baseline).is_empty());
        assert_eq!(violations(&plain, Level::Restricted), [
            r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false)"#,
            r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"])"#,
            r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)"#,
            r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
        ]);
        let bad = json!({"hostNetwork": true, "containers": [{"name": "c", "image": "i", "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN"]}}, "ports": [{"containerPort": 80, "hostPort": 80}]}], "volumes": [{"name": "root", "hostPath": {"path": "/"}}]});
        assert_eq!(violations(&bad, Level::Baseline), [
            "host namespaces (hostNetwork=true)",
            r#"privileged (container "c" must not set securityContext.privileged=true)"#,
            r#"non-default capabilities (container "c" must not include "NET_ADMIN" in securityContext.capabilities.add)"#,
            r#"hostPath volumes (volume "root")"#,
            r#"hostPort (container "c" uses hostPort 80)"#,
        ]);
        let good = json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}, "containers": [{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}], "volumes": [{"name": "t", "projected": {"sources": []}}]});
        assert!(violations(&good, Level::Restricted).is_empty(), "{:?}", violations(&good, Level::Restricted));
    }
}

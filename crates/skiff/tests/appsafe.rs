//! AppSafe end to end, on two hosts: groups appear for workloads, the
//! flows web → api → db are learned with the ports the pods serve (not the
//! Services'), a pod that never talked to the database is not in its rules;
//! Monitor lets that pod through and reports it, Protect blocks it while
//! the learned flows still pass both ways, and Discover opens it again.

mod common;

use std::time::Duration;

use common::hosts::Hosts;

/// A Service (port ≠ target port, so the learned port shows the reply
/// tuple was read) and a Deployment on `node` serving "ok" on `port`,
/// optionally calling `calls` (an env var holding a Service address, and
/// its port) every second.
fn app(hosts: &Hosts, name: &str, node: &str, port: u16, calls: Option<(&str, u16)>) {
    let image = common::test_image();
    hosts.cluster.ok_stdin(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}","namespace":"shop"}},"spec":{{"selector":{{"app":"{name}"}},"ports":[{{"port":1{port},"targetPort":{port}}}]}}}}"#
        )),
    );
    let call = calls.map_or(String::new(), |(var, port)| format!("while true; do echo | nc -w 1 ${var} 1{port} >/dev/null 2>&1; sleep 1; done & "));
    hosts.cluster.ok_stdin(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"{name}","namespace":"shop"}},"spec":{{"replicas":1,"selector":{{"matchLabels":{{"app":"{name}"}}}},"template":{{"metadata":{{"labels":{{"app":"{name}"}}}},"spec":{{"nodeSelector":{{"kubernetes.io/hostname":"{node}"}},"terminationGracePeriodSeconds":0,"containers":[{{"name":"c","image":"{image}","command":["sh","-c","{call}nc -ll -p {port} -e echo ok"]}}]}}}}}}}}"#
        )),
    );
}

/// Whether the intruder reaches the database through its Service.
fn intruder_reaches_db(hosts: &Hosts) -> bool {
    let out = hosts.cluster.kubectl(&["exec", "-n", "shop", "intruder", "--", "sh", "-c", "echo | nc -w 1 $DB_SERVICE_HOST 15432"]);
    String::from_utf8_lossy(&out.stdout).contains("ok")
}

fn learned(hosts: &Hosts, group: &str, direction: &str) -> Vec<String> {
    let json = hosts.cluster.json(&["get", "appgroup", group, "-n", "shop", "-o", "json"]);
    let peer_field = if direction == "ingress" { "from" } else { "to" };
    json["status"][direction]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            let peer = &f[peer_field];
            let who = peer["group"].as_str().map_or_else(|| peer["cidr"].as_str().unwrap_or("?").to_string(), |g| format!("{}/{g}", peer["namespace"].as_str().unwrap_or("")));
            format!("{who}:{}/{}", f["port"], f["protocol"].as_str().unwrap_or(""))
        })
        .collect()
}

fn set_mode(hosts: &Hosts, group: &str, mode: &str) {
    hosts.cluster.ok(&["patch", "appgroup", group, "-n", "shop", "--type", "merge", "-p", &format!(r#"{{"spec":{{"mode":"{mode}"}}}}"#)]);
}

/// The AppSafeViolation events on `group`: message and count.
fn violations(hosts: &Hosts, group: &str) -> Vec<(String, i64)> {
    let events = hosts.cluster.json(&["get", "events", "-n", "shop", "--field-selector", &format!("involvedObject.kind=AppGroup,involvedObject.name={group},reason=AppSafeViolation"), "-o", "json"]);
    events["items"].as_array().into_iter().flatten().map(|e| (e["message"].as_str().unwrap_or("").to_string(), e["count"].as_i64().unwrap_or(0))).collect()
}

#[test]
fn appsafe_learns_monitors_and_protects_across_hosts() {
    let hosts = Hosts::start(2, &[]);
    let cluster = &hosts.cluster;
    cluster.ok(&["create", "namespace", "shop"]);
    // Services first, so every pod has their addresses in its environment.
    app(&hosts, "db", "h1", 5432, None);
    app(&hosts, "api", "h2", 8080, Some(("DB_SERVICE_HOST", 5432)));
    app(&hosts, "web", "h1", 8000, Some(("API_SERVICE_HOST", 8080)));
    let image = common::test_image();
    cluster.ok_stdin(
        &["create", "-f", "-"],
        Some(&format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"intruder","namespace":"shop","labels":{{"run":"intruder"}}}},"spec":{{"nodeName":"h2","terminationGracePeriodSeconds":0,"containers":[{{"name":"c","image":"{image}","command":["sleep","3600"]}}]}}}}"#)),
    );

    // One group per workload, named after it, with its running members.
    hosts.wait("the groups to hold their pods", Duration::from_secs(120), || {
        let out = cluster.ok(&["get", "appgroups", "-n", "shop", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.members} {end}"]);
        ["api=1", "db=1", "intruder=1", "web=1"].iter().all(|g| out.split_whitespace().any(|w| w == *g))
    });
    let table = cluster.ok(&["get", "appgroups", "-n", "shop"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "MODE", "MEMBERS", "INGRESS", "EGRESS", "AGE"]);
    let db = cluster.json(&["get", "appgroup", "db", "-n", "shop", "-o", "json"]);
    assert_eq!(db["spec"]["mode"], "Discover");
    assert_eq!(db["spec"]["selector"], serde_json::json!({"matchLabels": {"app": "db"}}));
    assert_eq!(db["metadata"]["ownerReferences"][0]["kind"], "Deployment");

    // web → api (across hosts) → db (back across), learned at the pods' ports.
    hosts.wait("the flows web → api → db to be learned", Duration::from_secs(60), || {
        learned(&hosts, "web", "egress") == ["shop/api:8080/TCP"]
            && learned(&hosts, "api", "ingress") == ["shop/web:8080/TCP"]
            && learned(&hosts, "api", "egress") == ["shop/db:5432/TCP"]
            && learned(&hosts, "db", "ingress") == ["shop/api:5432/TCP"]
    });
    let flow = &cluster.json(&["get", "appgroup", "db", "-n", "shop", "-o", "json"])["status"]["ingress"][0];
    assert!(flow["connections"].as_i64().unwrap() >= 1 && flow["firstSeen"].is_string() && flow["lastSeen"].is_string(), "{flow}");
    // The intruder never talked to the database: not in its rules.
    assert!(!learned(&hosts, "db", "ingress").iter().any(|f| f.contains("intruder")));
    // And the executables each group runs: the db's listener.
    hosts.wait("the db's processes to be learned", Duration::from_secs(30), || {
        cluster.ok(&["get", "appgroup", "db", "-n", "shop", "-o", "jsonpath={range .status.processes[*]}{.name}={.path} {end}"]).split_whitespace().any(|p| p == "nc=/bin/busybox")
    });

    // Monitor: the intruder gets through, and is reported once, counted.
    set_mode(&hosts, "db", "Monitor");
    hosts.wait("the intruder to reach the db in Monitor", Duration::from_secs(30), || intruder_reaches_db(&hosts));
    hosts.wait("the violation to be reported", Duration::from_secs(30), || !violations(&hosts, "db").is_empty());
    assert!(intruder_reaches_db(&hosts));
    hosts.wait("the repeat to be counted on the same event", Duration::from_secs(30), || {
        let v = violations(&hosts, "db");
        v.len() == 1 && v[0].1 >= 2
    });
    let (message, _) = &violations(&hosts, "db")[0];
    assert!(message.contains("pod shop/intruder") && message.contains("pod shop/db-") && message.contains("TCP/5432") && message.contains("allowed"), "{message}");
    // Counted by the node that saw it: the intruder's.
    let metrics = cluster.ok(&["get", "--raw", "/api/v1/nodes/h2/proxy/metrics"]);
    assert!(metrics.lines().any(|l| l.starts_with("skiff_appsafe_violations_total{") && l.contains("group=\"db\"") && l.contains("mode=\"Monitor\"")), "{metrics}");
    // The group stopped learning.
    assert_eq!(learned(&hosts, "db", "ingress"), ["shop/api:5432/TCP"]);
    // A process it never ran is reported, and left running.
    let top = cluster.kubectl(&["exec", "-n", "shop", "deploy/db", "--", "sh", "-c", "top -b -d 1 >/dev/null & sleep 3; kill $!; echo survived"]);
    assert!(String::from_utf8_lossy(&top.stdout).contains("survived"));
    hosts.wait("the new process to be reported", Duration::from_secs(30), || violations(&hosts, "db").iter().any(|(m, _)| m.contains("process top (/bin/busybox) in pod shop/db-") && m.contains("Monitor: allowed")));

    // Protect, both ends: the intruder is blocked, the learned flows pass.
    set_mode(&hosts, "db", "Protect");
    set_mode(&hosts, "api", "Protect");
    hosts.wait("the groups' policies", Duration::from_secs(30), || {
        let names = cluster.ok(&["get", "networkpolicies", "-n", "shop", "-o", "jsonpath={.items[*].metadata.name}"]);
        names.split_whitespace().collect::<Vec<_>>() == ["appsafe-api", "appsafe-db"]
    });
    let policy = cluster.json(&["get", "networkpolicy", "appsafe-db", "-n", "shop", "-o", "json"]);
    assert_eq!(policy["metadata"]["ownerReferences"][0]["kind"], "AppGroup");
    assert_eq!(policy["spec"]["ingress"][0]["ports"], serde_json::json!([{"port": 5432, "protocol": "TCP"}]));
    hosts.wait("the intruder to be blocked", Duration::from_secs(30), || !intruder_reaches_db(&hosts));
    hosts.wait("the block to be reported", Duration::from_secs(30), || violations(&hosts, "db").iter().any(|(m, _)| m.contains("blocked")));
    // A process it never ran is killed.
    let started = std::time::Instant::now();
    let top = cluster.kubectl(&["exec", "-n", "shop", "deploy/db", "--", "top", "-b", "-d", "1"]);
    assert!(!top.status.success() && started.elapsed() < Duration::from_secs(30), "top should have been killed");
    hosts.wait("the kill to be reported", Duration::from_secs(30), || violations(&hosts, "db").iter().any(|(m, _)| m.contains("process top") && m.contains("Protect: killed")));
    // api still calls db (api egress, db ingress), web still calls api (api ingress).
    let api_reaches_db = || {
        let out = cluster.kubectl(&["exec", "-n", "shop", "deploy/api", "--", "sh", "-c", "echo | nc -w 1 $DB_SERVICE_HOST 15432"]);
        String::from_utf8_lossy(&out.stdout).contains("ok")
    };
    let web_reaches_api = || {
        let out = cluster.kubectl(&["exec", "-n", "shop", "deploy/web", "--", "sh", "-c", "echo | nc -w 1 $API_SERVICE_HOST 18080"]);
        String::from_utf8_lossy(&out.stdout).contains("ok")
    };
    assert!(api_reaches_db() && web_reaches_api(), "learned flows pass in Protect");
    // api may not make connections it never made (to the intruder's... or web's port).
    let api_to_web = cluster.kubectl(&["exec", "-n", "shop", "deploy/api", "--", "sh", "-c", "echo | nc -w 1 $WEB_SERVICE_HOST 18000"]);
    assert!(!String::from_utf8_lossy(&api_to_web.stdout).contains("ok"), "api's egress is limited to what it learned");

    // Back to Discover: the policies go and the intruder gets through again.
    set_mode(&hosts, "db", "Discover");
    set_mode(&hosts, "api", "Discover");
    hosts.wait("the policies to go", Duration::from_secs(30), || cluster.ok(&["get", "networkpolicies", "-n", "shop", "-o", "name"]).is_empty());
    hosts.wait("the intruder to reach the db again", Duration::from_secs(30), || intruder_reaches_db(&hosts));

    // Bad input, as upstream refuses it.
    let bad_mode = cluster.fails(&["patch", "appgroup", "db", "-n", "shop", "--type", "merge", "-p", r#"{"spec":{"mode":"Paranoid"}}"#], None);
    assert!(bad_mode.contains(r#"spec.mode: Unsupported value: "Paranoid": supported values: "Discover", "Monitor", "Protect""#), "{bad_mode}");
    let bad_selector = cluster.fails(
        &["create", "-f", "-"],
        Some(r#"{"apiVersion":"appsafe.skiff.io/v1","kind":"AppGroup","metadata":{"name":"odd","namespace":"shop"},"spec":{"selector":{"matchExpressions":[{"key":"app","operator":"Near"}]}}}"#),
    );
    assert!(bad_selector.contains("spec.selector.matchExpressions[0].operator"), "{bad_selector}");
    let members = cluster.ok(&["get", "appgroup", "db", "-n", "shop", "-o", "jsonpath={.status.members}"]);
    cluster.ok(&["patch", "appgroup", "db", "-n", "shop", "--type", "merge", "-p", r#"{"status":{"members":99}}"#]);
    assert_eq!(cluster.ok(&["get", "appgroup", "db", "-n", "shop", "-o", "jsonpath={.status.members}"]), members, "status is written only through /status");

    // A group goes with its workload.
    cluster.ok(&["delete", "deployment", "web", "-n", "shop"]);
    hosts.wait("the web group to go with its Deployment", Duration::from_secs(30), || !cluster.ok(&["get", "appgroups", "-n", "shop", "-o", "name"]).contains("web"));
}

//! Stock kubectl against a real `skiff server`. Tests that cover an upstream
//! conformance test carry its codename in their doc comment
//! (docs/conformance.md maps them).

mod common;

use std::time::Duration;

use common::Cluster;

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
  labels: {app: web}
data: {color: blue, size: "2"}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.local/busybox:1
        env: [{name: A, value: "1"}]
"#;

/// [sig-api-machinery] server version should find the server version [Conformance]
/// [sig-cli] Kubectl client Kubectl version should check is all data is printed [Conformance]
#[test]
fn server_version_should_find_the_server_version() {
    let c = Cluster::start();
    let v = c.json(&["version", "-o", "json"]);
    let server = &v["serverVersion"];
    assert_eq!(server["major"], "1");
    assert_eq!(server["minor"], "32");
    assert!(server["gitVersion"].as_str().unwrap().starts_with("v1.32."), "{server}");
    for field in ["gitCommit", "gitTreeState", "buildDate", "goVersion", "compiler", "platform"] {
        assert!(server[field].as_str().is_some_and(|s| !s.is_empty()), "{field} in {server}");
    }
    let text = c.ok(&["version"]);
    assert!(text.contains("Client Version: v1.32") && text.contains("Server Version: v1.32."), "{text}");
}

/// [sig-api-machinery] Discovery should validate PreferredVersion for each APIGroup [Conformance]
/// [sig-api-machinery] Discovery should locate the groupVersion and a resource within each APIGroup [Conformance]
/// [sig-cli] Kubectl client Kubectl api-versions should check if v1 is in available api versions [Conformance]
#[test]
fn discovery_serves_every_group_and_resource() {
    let c = Cluster::start();
    let groups = c.json(&["get", "--raw", "/apis"]);
    let groups = groups["groups"].as_array().unwrap();
    for g in groups {
        let preferred = &g["preferredVersion"]["groupVersion"];
        assert!(g["versions"].as_array().unwrap().iter().any(|v| &v["groupVersion"] == preferred), "{g}");
        let gv = preferred.as_str().unwrap();
        let list = c.json(&["get", "--raw", &format!("/apis/{gv}")]);
        assert_eq!(list["groupVersion"], gv);
        assert!(!list["resources"].as_array().unwrap().is_empty());
    }
    for name in ["apps", "batch", "rbac.authorization.k8s.io", "storage.k8s.io", "apiextensions.k8s.io", "flowcontrol.apiserver.k8s.io"] {
        assert!(groups.iter().any(|g| g["name"] == name), "group {name} is served");
    }
    let resources = c.ok(&["api-resources", "-o", "name"]);
    for r in ["pods", "deployments.apps", "cronjobs.batch", "leases.coordination.k8s.io", "customresourcedefinitions.apiextensions.k8s.io"] {
        assert!(resources.lines().any(|l| l == r), "{r} missing from api-resources");
    }
    let short = c.ok(&["api-resources", "--api-group=apps"]);
    assert!(short.contains("deploy") && short.contains("sts"), "{short}");
    let versions = c.ok(&["api-versions"]);
    assert!(versions.lines().any(|l| l == "v1") && versions.lines().any(|l| l == "networking.k8s.io/v1"), "{versions}");
    // componentstatuses are probed, not stored, and deprecated as upstream says.
    let out = c.kubectl(&["get", "componentstatuses"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().any(|l| l.split_whitespace().take(2).eq(["etcd-0", "Healthy"])), "{stdout}");
    assert!(stderr.contains("Warning: v1 ComponentStatus is deprecated in v1.19+"), "{stderr}");
    assert_eq!(c.json(&["get", "cs", "etcd-0", "-o", "json"])["conditions"][0]["status"], "True");
    // With a cold cache kubectl takes aggregated discovery: /api, /apis, then the list.
    let cache = c.data_dir().join("kube-cache");
    let out = c.kubectl(&["get", "cm", "-A", "-v=6", "--cache-dir", cache.to_str().unwrap()]);
    let gets = String::from_utf8_lossy(&out.stderr).matches("GET https").count();
    assert_eq!(gets, 3, "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn apply_edit_label_patch_and_delete() {
    let c = Cluster::start();
    let out = c.ok_stdin(&["apply", "-f", "-"], Some(MANIFESTS));
    assert!(out.contains("namespace/shop created") && out.contains("deployment.apps/web created"), "{out}");
    let out = c.ok_stdin(&["apply", "-f", "-"], Some(MANIFESTS));
    assert!(out.contains("configmap/settings unchanged"), "{out}");

    // Re-apply with a change: a strategic merge patch that merges env by name.
    let changed = MANIFESTS.replace("replicas: 2", "replicas: 3").replace(
        r#"env: [{name: A, value: "1"}]"#,
        r#"env: [{name: A, value: "1"}, {name: B, value: "2"}]"#,
    );
    let out = c.ok_stdin(&["apply", "-f", "-"], Some(&changed));
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let d = c.json(&["-n", "shop", "get", "deploy", "web", "-o", "json"]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["generation"], 2, "a spec change bumps generation");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap().len(), 2);
    // Upstream's defaults are filled in.
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(d["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");

    // Labels, annotations and the three patch types.
    c.ok(&["-n", "shop", "label", "cm", "settings", "tier=front"]);
    c.ok(&["-n", "shop", "annotate", "cm", "settings", "owner=team-a"]);
    let listed = c.ok(&["-n", "shop", "get", "cm", "-l", "tier in (front,back),app=web", "-o", "name"]);
    assert_eq!(listed.trim(), "configmap/settings");
    // `!=` also selects what lacks the label: here only the namespace's root CA.
    let others = c.ok(&["-n", "shop", "get", "cm", "-l", "tier!=front", "-o", "name"]);
    assert!(others.lines().all(|l| l == "configmap/kube-root-ca.crt"), "{others}");
    c.ok(&["-n", "shop", "patch", "cm", "settings", "--type", "merge", "-p", r#"{"data":{"shape":"round"}}"#]);
    c.ok(&["-n", "shop", "patch", "cm", "settings", "--type", "json", "-p", r#"[{"op":"remove","path":"/data/size"}]"#]);
    c.ok(&["-n", "shop", "patch", "cm", "settings", "-p", r#"{"metadata":{"labels":{"app":null}}}"#]);
    let cm = c.json(&["-n", "shop", "get", "cm", "settings", "-o", "json"]);
    assert_eq!(cm["data"], serde_json::json!({"color": "blue", "shape": "round"}));
    assert_eq!(cm["metadata"]["labels"], serde_json::json!({"tier": "front"}));
    assert_eq!(cm["metadata"]["annotations"]["owner"], "team-a");

    // A JSON patch whose test fails changes nothing.
    let err = c.fails(&["-n", "shop", "patch", "cm", "settings", "--type", "json", "-p", r#"[{"op":"test","path":"/data/color","value":"red"},{"op":"remove","path":"/data/color"}]"#], None);
    assert!(err.contains("Invalid") || err.contains("invalid") || err.contains("test"), "{err}");
    assert_eq!(c.json(&["-n", "shop", "get", "cm", "settings", "-o", "json"])["data"]["color"], "blue");

    // Output formats.
    assert_eq!(c.ok(&["-n", "shop", "get", "cm", "settings", "-o", "jsonpath={.data.color}"]), "blue");
    let table = c.ok(&["-n", "shop", "get", "deploy"]);
    assert!(table.starts_with("NAME") && table.contains("READY") && table.contains("web"), "{table}");
    let wide = c.ok(&["get", "cm", "-A"]);
    assert!(wide.starts_with("NAMESPACE"), "{wide}");
    let cols = c.ok(&["-n", "shop", "get", "cm", "settings", "-o", "custom-columns=N:.metadata.name,C:.data.color", "--no-headers"]);
    assert_eq!(cols.split_whitespace().collect::<Vec<_>>(), ["settings", "blue"]);

    // Delete by name, by label, and everything.
    c.ok(&["-n", "shop", "delete", "cm", "-l", "tier=front"]);
    assert!(c.ok(&["-n", "shop", "get", "cm", "-o", "name"]).lines().all(|l| l == "configmap/kube-root-ca.crt"));
    c.ok(&["-n", "shop", "delete", "deploy", "--all"]);
    assert!(c.ok(&["-n", "shop", "get", "deploy", "-o", "name"]).trim().is_empty());
}

/// [sig-api-machinery] Watchers should observe add, update, and delete watch notifications on configmaps [Conformance]
#[test]
fn watchers_observe_add_update_and_delete() {
    let c = Cluster::start();
    let mut watch = std::process::Command::new("kubectl")
        .args(["get", "cm", "-n", "default", "-w", "--output-watch-events", "-o", "custom-columns=E:.type,N:.object.metadata.name,V:.object.data.v", "--no-headers"])
        .env("KUBECONFIG", c.kubeconfig())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    c.ok_stdin(&["create", "-n", "default", "-f", "-"], Some(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"watched"},"data":{"v":"1"}}"#));
    c.ok(&["-n", "default", "patch", "cm", "watched", "--type", "merge", "-p", r#"{"data":{"v":"2"}}"#]);
    c.ok(&["-n", "default", "delete", "cm", "watched"]);
    std::thread::sleep(Duration::from_millis(700));
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let events: Vec<Vec<String>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .filter(|e: &Vec<String>| e.get(1).map(String::as_str) == Some("watched"))
        .collect();
    assert_eq!(
        events,
        [["ADDED", "watched", "1"], ["MODIFIED", "watched", "2"], ["DELETED", "watched", "2"]].map(|e| e.map(String::from).to_vec()),
    );
}

/// [sig-api-machinery] Servers with support for API chunking should return chunks of results for list calls [Conformance]
#[test]
fn servers_return_chunks_of_results_for_list_calls() {
    let c = Cluster::start();
    // Secrets: nothing else writes them, so the counts are the test's.
    let items: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"chunk-{i:02}"}}}}"#))
        .collect();
    c.ok_stdin(&["create", "-n", "default", "-f", "-"], Some(&items.join("\n")));
    let first = c.json(&["get", "--raw", "/api/v1/namespaces/default/secrets?limit=17"]);
    assert_eq!(first["items"].as_array().unwrap().len(), 17);
    assert_eq!(first["metadata"]["remainingItemCount"], 23);
    let token = first["metadata"]["continue"].as_str().unwrap();
    let second = c.json(&["get", "--raw", &format!("/api/v1/namespaces/default/secrets?limit=17&continue={token}")]);
    assert_eq!(second["items"][0]["metadata"]["name"], "chunk-17");
    assert_eq!(second["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"], "pages share one snapshot");
    // kubectl pages by itself and prints everything once.
    let names = c.ok(&["get", "secrets", "-n", "default", "--chunk-size=7", "-o", "name"]);
    assert_eq!(names.lines().filter(|l| l.contains("chunk-")).count(), 40);
}

/// [sig-api-machinery] Namespaces [Serial] should ensure that all services are removed when a namespace is deleted [Conformance]
#[test]
fn namespace_deletion_removes_its_contents() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "doomed", "--dry-run=client", "-o", "json"]);
    c.ok_stdin(&["create", "-f", "-"], Some(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"doomed"}}"#));
    c.ok_stdin(
        &["create", "-n", "doomed", "-f", "-"],
        Some(r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"svc"},"spec":{"ports":[{"port":80}]}}"#),
    );
    assert_eq!(c.json(&["get", "ns", "doomed", "-o", "json"])["status"]["phase"], "Active");
    c.ok(&["delete", "ns", "doomed", "--timeout=30s"]);
    let err = c.fails(&["get", "ns", "doomed"], None);
    assert!(err.contains(r#"namespaces "doomed" not found"#), "{err}");
    let err = c.fails(&["get", "svc", "svc", "-n", "doomed"], None);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn errors_are_upstream_statuses() {
    let c = Cluster::start();
    let err = c.fails(&["create", "-n", "default", "-f", "-"], Some(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}"#));
    assert!(err.contains(r#"ConfigMap "Not_Valid" is invalid: metadata.name: Invalid value: "Not_Valid": a lowercase RFC 1123 subdomain"#), "{err}");
    let err = c.fails(&["get", "cm", "missing", "-n", "default"], None);
    assert!(err.contains(r#"Error from server (NotFound): configmaps "missing" not found"#), "{err}");
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"twice"}}"#;
    c.ok_stdin(&["create", "-n", "default", "-f", "-"], Some(cm));
    let err = c.fails(&["create", "-n", "default", "-f", "-"], Some(cm));
    assert!(err.contains(r#"configmaps "twice" already exists"#), "{err}");
    let err = c.fails(&["create", "-n", "nowhere", "-f", "-"], Some(cm));
    assert!(err.contains(r#"namespaces "nowhere" not found"#), "{err}");

    // A stale resourceVersion is a conflict.
    let mut stale = c.json(&["get", "cm", "twice", "-n", "default", "-o", "json"]);
    c.ok(&["label", "cm", "twice", "-n", "default", "x=1"]);
    stale["metadata"]["labels"] = serde_json::json!({"x": "2"});
    let err = c.fails(&["replace", "-f", "-"], Some(&stale.to_string()));
    assert!(err.contains("the object has been modified; please apply your changes to the latest version and try again"), "{err}");

    // Malformed and oversized bodies.
    let dir = c.data_dir().to_path_buf();
    std::fs::write(dir.join("bad.json"), "{not json").unwrap();
    let err = c.fails(&["create", "--raw", "/api/v1/namespaces/default/configmaps", "-f", dir.join("bad.json").to_str().unwrap()], None);
    assert!(err.contains("BadRequest") || err.contains("unrecognized") || err.contains("400"), "{err}");
    let big = format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"x":"{}"}}}}"#, "a".repeat(4 << 20));
    std::fs::write(dir.join("big.json"), big).unwrap();
    let err = c.fails(&["create", "--raw", "/api/v1/namespaces/default/configmaps", "-f", dir.join("big.json").to_str().unwrap()], None);
    assert!(err.contains("Request entity too large: limit is 3145728"), "{err}");
    assert!(c.fails(&["get", "cm", "big", "-n", "default"], None).contains("not found"), "nothing was written");
}

#[test]
fn status_is_written_only_through_the_status_subresource() {
    // No controller may write the Deployment's status meanwhile.
    let c = Cluster::start_with(&["--disable-controller-manager"]);
    c.ok_stdin(
        &["create", "-n", "default", "-f", "-"],
        Some(r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i"}]}}},"status":{"replicas":9}}"#),
    );
    let d = c.json(&["get", "deploy", "d", "-n", "default", "-o", "json"]);
    assert!(d.get("status").is_none(), "status given at create is dropped: {d}");
    c.ok(&["patch", "deploy", "d", "-n", "default", "--type", "merge", "-p", r#"{"status":{"replicas":5}}"#]);
    assert!(c.json(&["get", "deploy", "d", "-n", "default", "-o", "json"]).get("status").is_none(), "the main resource ignores status");
    c.ok(&["patch", "deploy", "d", "-n", "default", "--subresource=status", "--type", "merge", "-p", r#"{"status":{"replicas":5},"spec":{"replicas":7}}"#]);
    let d = c.json(&["get", "deploy", "d", "-n", "default", "-o", "json"]);
    assert_eq!(d["status"]["replicas"], 5);
    assert_ne!(d["spec"]["replicas"], 7, "/status ignores everything but status");
    assert_eq!(d["metadata"]["generation"], 1, "a status write is not a spec change");
}

/// Upstream's ValidatePodUpdate and ValidatePodEphemeralContainersUpdate.
#[test]
fn pod_updates_change_only_what_upstream_allows() {
    let c = Cluster::start();
    c.ok_stdin(
        &["create", "-n", "default", "-f", "-"],
        Some(r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"activeDeadlineSeconds":100,
            "containers":[{"name":"c","image":"i1","resources":{"requests":{"cpu":"100m"}}}],
            "tolerations":[{"key":"a","operator":"Exists","effect":"NoExecute","tolerationSeconds":30}]}}"#),
    );
    let patch = |p: &str| c.kubectl(&["patch", "pod", "p", "-n", "default", "--type=json", "-p", p]);
    let refused = |p: &str| {
        let out = patch(p);
        assert!(!out.status.success(), "{p} was accepted");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let accepted = |p: &str| assert!(patch(p).status.success(), "{p} was refused");

    // What may change: metadata, images, a lower deadline, added tolerations and their seconds.
    c.ok(&["label", "pod", "p", "-n", "default", "tier=web"]);
    c.ok(&["set", "image", "pod/p", "-n", "default", "c=i2"]);
    accepted(r#"[{"op":"replace","path":"/spec/activeDeadlineSeconds","value":50}]"#);
    accepted(r#"[{"op":"add","path":"/spec/tolerations/-","value":{"key":"b","operator":"Exists"}}]"#);
    accepted(r#"[{"op":"replace","path":"/spec/tolerations/0/tolerationSeconds","value":10}]"#);
    let pod = c.json(&["get", "pod", "p", "-n", "default", "-o", "json"]);
    assert_eq!(pod["spec"]["containers"][0]["image"], "i2");
    assert_eq!(pod["spec"]["activeDeadlineSeconds"], 50);
    assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);

    // What may not.
    let raised = refused(r#"[{"op":"replace","path":"/spec/activeDeadlineSeconds","value":60}]"#);
    assert!(raised.contains("spec.activeDeadlineSeconds: Invalid value: 60: must be less than or equal to previous value"), "{raised}");
    let unset = refused(r#"[{"op":"remove","path":"/spec/activeDeadlineSeconds"}]"#);
    assert!(unset.contains("must not update from a positive integer to nil value"), "{unset}");
    let toleration = refused(r#"[{"op":"replace","path":"/spec/tolerations/0/key","value":"z"}]"#);
    assert!(toleration.contains("spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"), "{toleration}");
    let resources = refused(r#"[{"op":"replace","path":"/spec/containers/0/resources/requests/cpu","value":"200m"}]"#);
    assert!(resources.contains("The Pod \"p\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"), "{resources}");
    assert!(resources.contains("spec.containers[0].resources.requests.cpu: \"100m\" → \"200m\""), "the change is shown: {resources}");
    let added = refused(r#"[{"op":"add","path":"/spec/containers/-","value":{"name":"d","image":"i"}}]"#);
    assert!(added.contains("spec.containers: Forbidden: pod updates may not add or remove containers"), "{added}");

    // Ephemeral containers come through their subresource, which changes nothing else.
    c.ok(&["debug", "p", "-n", "default", "--image=busybox", "--container=dbg"]);
    let pod = c.json(&["get", "pod", "p", "-n", "default", "-o", "json"]);
    assert_eq!(pod["spec"]["ephemeralContainers"][0]["name"], "dbg", "{pod}");
    assert_eq!(pod["spec"]["ephemeralContainers"][0]["terminationMessagePolicy"], "File", "defaulted: {pod}");
    let sub = |p: &str| c.kubectl(&["patch", "pod", "p", "-n", "default", "--subresource=ephemeralcontainers", "--type=json", "-p", p]);
    let removed = sub(r#"[{"op":"remove","path":"/spec/ephemeralContainers/0"}]"#);
    let removed = String::from_utf8_lossy(&removed.stderr);
    assert!(removed.contains(r#"spec.ephemeralContainers: Forbidden: existing ephemeral containers "dbg" may not be removed"#), "{removed}");
    let out = sub(r#"[{"op":"replace","path":"/spec/containers/0/image","value":"i3"}]"#);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(c.ok(&["get", "pod", "p", "-n", "default", "-o", "jsonpath={.spec.containers[0].image}"]), "i2", "the subresource changes only ephemeral containers");

    // A gated pod may narrow where it goes: nodeSelector entries and node
    // affinity expressions added, nothing changed or taken away.
    c.ok_stdin(
        &["create", "-n", "default", "-f", "-"],
        Some(r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"gated"},"spec":{"schedulingGates":[{"name":"wait"}],
            "nodeSelector":{"disk":"ssd"},"containers":[{"name":"c","image":"i"}]}}"#),
    );
    let gated = |p: &str| c.kubectl(&["patch", "pod", "gated", "-n", "default", "--type=json", "-p", p]);
    let out = gated(r#"[{"op":"add","path":"/spec/nodeSelector/zone","value":"a"}]"#);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = gated(r#"[{"op":"replace","path":"/spec/nodeSelector/disk","value":"hdd"}]"#);
    let changed = String::from_utf8_lossy(&out.stderr);
    assert!(changed.contains(r#"spec.nodeSelector: Invalid value: map[string]string{"disk":"hdd", "zone":"a"}: only additions to spec.nodeSelector are allowed (no mutations or deletions)"#), "{changed}");
}

#[test]
fn restart_keeps_the_ca_and_every_object() {
    let mut c = Cluster::start();
    c.ok_stdin(&["create", "-n", "default", "-f", "-"], Some(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"kept"},"data":{"k":"v"}}"#));
    let before = std::fs::read_to_string(c.kubeconfig()).unwrap();
    let uid = c.json(&["get", "cm", "kept", "-n", "default", "-o", "json"])["metadata"]["uid"].clone();
    c.stop();
    c.boot();
    let after = std::fs::read_to_string(c.kubeconfig()).unwrap();
    assert_eq!(before, after, "same CA and admin certificate after a restart");
    let cm = c.json(&["get", "cm", "kept", "-n", "default", "-o", "json"]);
    assert_eq!((cm["metadata"]["uid"].clone(), cm["data"]["k"].clone()), (uid, serde_json::json!("v")));
}

#[test]
fn services_get_unique_cluster_ips_and_node_ports() {
    let mut c = Cluster::start();
    let k = c.json(&["get", "svc", "kubernetes", "-n", "default", "-o", "json"]);
    assert_eq!(k["spec"]["clusterIP"], "10.43.0.1");
    let svc = |name: &str, extra: &str| {
        format!(r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}"}},"spec":{{"selector":{{"app":"x"}},"ports":[{{"port":80}}]{extra}}}}}"#)
    };
    let mut ips = std::collections::BTreeSet::new();
    for i in 0..20 {
        c.ok_stdin(&["create", "-n", "default", "-f", "-"], Some(&svc(&format!("s{i}"), "")));
        let s = c.json(&["get", "svc", &format!("s{i}"), "-n", "default", "-o", "json"]);
        let ip = s["spec"]["clusterIP"].as_str().unwrap().to_string();
        assert!(ip.starts_with("10.43.") && ip != "10.43.0.1", "{ip}");
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert!(ips.insert(ip), "ClusterIPs are unique");
    }
    // A taken address is refused with upstream's message.
    let taken = c.json(&["get", "svc", "s0", "-n", "default", "-o", "json"])["spec"]["clusterIP"].as_str().unwrap().to_string();
    let err = c.fails(&["create", "-n", "default", "-f", "-"], Some(&svc("dup", &format!(r#","clusterIP":"{taken}""#))));
    assert!(err.contains("provided IP is already allocated"), "{err}");
    // Deleting a Service releases its address.
    c.ok(&["delete", "svc", "s0", "-n", "default"]);
    c.ok_stdin(&["create", "-n", "default", "-f", "-"], Some(&svc("reuse", &format!(r#","clusterIP":"{taken}""#))));
    // The address may not change once set.
    let err = c.fails(&["patch", "svc", "reuse", "-n", "default", "-p", r#"{"spec":{"clusterIP":"10.43.9.9"}}"#], None);
    assert!(err.contains("may not change once set"), "{err}");
    // NodePorts come from 30000-32767, unique too.
    c.ok_stdin(&["create", "-n", "default", "-f", "-"], Some(&svc("np", r#","type":"NodePort""#)));
    let np = c.json(&["get", "svc", "np", "-n", "default", "-o", "json"])["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&np), "{np}");
    let err = c.fails(&["create", "-n", "default", "-f", "-"], Some(&format!(r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"np2"}},"spec":{{"type":"NodePort","ports":[{{"port":81,"nodePort":{np}}}]}}}}"#)));
    assert!(err.contains("provided port is already allocated"), "{err}");
    // Headless Services get no address; restarts keep the kubernetes Service's.
    c.ok_stdin(&["create", "-n", "default", "-f", "-"], Some(&svc("headless", r#","clusterIP":"None""#)));
    assert_eq!(c.json(&["get", "svc", "headless", "-n", "default", "-o", "json"])["spec"]["clusterIPs"], serde_json::json!(["None"]));
    c.stop();
    c.boot();
    let err = c.fails(&["create", "-n", "default", "-f", "-"], Some(&svc("steal", r#","clusterIP":"10.43.0.1""#)));
    assert!(err.contains("provided IP is already allocated"), "{err}");
    let table = c.ok(&["get", "svc", "np", "-n", "default"]);
    assert!(table.contains(&format!("80:{np}/TCP")), "{table}");
}

#[test]
fn metrics_count_requests_as_upstream_names_them() {
    let c = Cluster::start();
    // PodTemplates: a kind no controller writes, so the counts are the test's.
    c.ok_stdin(&["create", "-n", "default", "-f", "-"], Some(r#"{"apiVersion":"v1","kind":"PodTemplate","metadata":{"name":"m"},"template":{"spec":{"containers":[{"name":"c","image":"i"}]}}}"#));
    c.ok(&["get", "podtemplate", "m", "-n", "default"]);
    c.fails(&["get", "podtemplate", "absent", "-n", "default"], None);
    let text = c.ok(&["get", "--raw", "/metrics"]);
    for want in [
        r#"apiserver_request_total{verb="POST",group="",version="v1",resource="podtemplates",subresource="",scope="resource",component="apiserver",code="201"} 1"#,
        r#"apiserver_request_total{verb="GET",group="",version="v1",resource="podtemplates",subresource="",scope="resource",component="apiserver",code="404"} 1"#,
        "# TYPE apiserver_request_duration_seconds histogram",
        "apiserver_current_inflight_requests",
        // The controller manager's and scheduler's, on the same page.
        r#"controller_reconcile_panics_total{controller="deployment"} 0"#,
        r#"controller_restarts_total{controller="deployment"} 0"#,
        "# TYPE scheduler_task_restarts counter",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    assert_eq!(text.matches("# EOF").count(), 1, "one page: {text}");
}

#[test]
fn scale_subresource_changes_replicas() {
    let c = Cluster::start();
    c.ok_stdin(
        &["create", "-n", "default", "-f", "-"],
        Some(r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}"#),
    );
    assert_eq!(c.json(&["get", "deploy", "web", "-n", "default", "-o", "json"])["spec"]["replicas"], 1, "replicas default to 1");
    let out = c.ok(&["scale", "deploy", "web", "-n", "default", "--replicas=5"]);
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    let d = c.json(&["get", "deploy", "web", "-n", "default", "-o", "json"]);
    assert_eq!((d["spec"]["replicas"].as_i64(), d["metadata"]["generation"].as_i64()), (Some(5), Some(2)));
    let scale = c.json(&["get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale"]);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["selector"], "app=web");
    // kubectl compares --resource-version with the Scale it reads.
    let err = c.fails(&["scale", "deploy", "web", "-n", "default", "--replicas=2", "--resource-version=1"], None);
    assert!(err.contains("Expected resource version to be 1"), "{err}");
    // The server refuses a negative count itself.
    let err = c.fails(&["patch", "deploy", "web", "-n", "default", "--subresource=scale", "--type=merge", "-p", r#"{"spec":{"replicas":-1}}"#], None);
    assert!(err.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"), "{err}");
    assert_eq!(c.json(&["get", "deploy", "web", "-n", "default", "-o", "json"])["spec"]["replicas"], 5);
}

/// [sig-api-machinery] FieldValidation should detect unknown metadata fields of a typed object [Conformance]
#[test]
fn field_validation_detects_unknown_fields_of_a_typed_object() {
    let c = Cluster::start();
    let deployment = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"fv","unknownMeta":"x"},"spec":{"replicas":1,"paused":false,"unknownSpec":"y","selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i","unknownContainerField":1}]}}}}"#;
    // kubectl asks for Strict by default: refused, naming every field.
    let err = c.fails(&["create", "-n", "default", "-f", "-"], Some(deployment));
    for field in ["metadata.unknownMeta", "spec.unknownSpec", "spec.template.spec.containers[0].unknownContainerField"] {
        assert!(err.contains(&format!(r#"unknown field \"{field}\""#)) || err.contains(&format!(r#"unknown field "{field}""#)), "{field} in {err}");
    }
    assert!(err.contains(r#"Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error"#) || err.contains(r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error"#), "{err}");
    // Warn: created, with warnings, and the unknown fields dropped.
    let out = c.kubectl_stdin(&["create", "-n", "default", "--validate=warn", "-f", "-"], Some(deployment));
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Warning: unknown field") && stderr.contains("spec.unknownSpec"), "{stderr}");
    let d = c.json(&["get", "deploy", "fv", "-n", "default", "-o", "json"]);
    assert!(d["metadata"].get("unknownMeta").is_none() && d["spec"].get("unknownSpec").is_none(), "{d}");
    // A value of the wrong type is refused in every mode.
    let err = c.fails(&["patch", "deploy", "fv", "-n", "default", "--type=merge", "-p", r#"{"spec":{"replicas":"three"}}"#], None);
    assert!(err.contains("cannot be handled as a Deployment"), "{err}");
}

/// The same API on etcd (`--datastore-endpoint`), across a server restart.
#[test]
fn kubectl_against_an_etcd_datastore() {
    let etcd = skiff_store::testing::EtcdServer::start().expect("etcd starts (is etcd-server installed?)");
    let mut c = Cluster::start_with(&["--datastore-endpoint", &etcd.endpoint()]);
    let out = c.ok_stdin(&["apply", "-f", "-"], Some(MANIFESTS));
    assert!(out.contains("deployment.apps/web created"), "{out}");
    c.ok(&["-n", "shop", "scale", "deploy", "web", "--replicas=4"]);
    let items: Vec<String> = (0..12).map(|i| format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"e{i:02}"}}}}"#)).collect();
    c.ok_stdin(&["create", "-n", "shop", "-f", "-"], Some(&items.join("\n")));
    let names = c.ok(&["get", "cm", "-n", "shop", "--chunk-size=5", "-o", "name"]);
    assert_eq!(names.lines().filter(|l| l.starts_with("configmap/e")).count(), 12);
    c.stop();
    c.boot();
    assert_eq!(c.json(&["-n", "shop", "get", "deploy", "web", "-o", "json"])["spec"]["replicas"], 4);
    c.ok(&["delete", "ns", "shop", "--timeout=30s"]);
    assert!(c.fails(&["get", "cm", "e00", "-n", "shop"], None).contains("not found"));
}

/// kubectl's generator commands build typed objects and send them as
/// Kubernetes protobuf; they must land exactly as the JSON path would.
#[test]
fn create_from_generators_sends_protobuf() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "gen"]);
    let n = ["-n", "gen"];
    let run = |args: &[&str]| c.ok(&[&n[..], args].concat());
    run(&["create", "configmap", "cm", "--from-literal=a=1", "--from-literal=b=two"]);
    run(&["create", "secret", "generic", "sec", "--from-literal=password=s3cr3t"]);
    run(&["create", "deployment", "web", "--image=registry.local/busybox:1", "--replicas=0", "--port=80"]);
    run(&["create", "service", "clusterip", "api", "--tcp=80:8080"]);
    run(&["create", "service", "nodeport", "edge", "--tcp=443:8443"]);
    run(&["create", "job", "once", "--image=registry.local/busybox:1", "--", "echo", "hi"]);
    run(&["create", "cronjob", "tick", "--image=registry.local/busybox:1", "--schedule=*/1 * * * *", "--", "date"]);
    run(&["create", "role", "reader", "--verb=get,list", "--resource=pods"]);
    run(&["create", "rolebinding", "read", "--role=reader", "--user=bob"]);
    run(&["create", "quota", "q", "--hard=pods=10,services=5"]);
    run(&["create", "serviceaccount", "robot"]);
    run(&["create", "poddisruptionbudget", "pdb", "--selector=app=web", "--min-available=0"]);
    run(&["run", "one", "--image=registry.local/busybox:1", "--labels=app=one", "--", "sleep", "1"]);
    run(&["expose", "pod", "one", "--port=8080", "--target-port=80", "--name=one"]);
    // autoscaling/v1, stored as v2 and served as both.
    run(&["autoscale", "deployment", "web", "--max=5", "--cpu-percent=70"]);
    let v1 = c.json(&["get", "--raw", "/apis/autoscaling/v1/namespaces/gen/horizontalpodautoscalers/web"]);
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 70);
    assert_eq!(v1["spec"]["minReplicas"], 1);
    let v2 = c.json(&["get", "--raw", "/apis/autoscaling/v2/namespaces/gen/horizontalpodautoscalers/web"]);
    assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"], serde_json::json!({"type": "Utilization", "averageUtilization": 70}));
    assert!(v2["metadata"].get("annotations").is_none(), "{v2}");
    let hpa = c.ok(&["-n", "gen", "get", "hpa", "web", "--no-headers"]);
    assert_eq!(hpa.split_whitespace().take(6).collect::<Vec<_>>(), ["web", "Deployment/web", "cpu:", "<unknown>/70%", "1", "5"]);

    let cm = c.json(&["-n", "gen", "get", "cm", "cm", "-o", "json"]);
    assert_eq!(cm["data"], serde_json::json!({"a": "1", "b": "two"}));
    let sec = c.json(&["-n", "gen", "get", "secret", "sec", "-o", "json"]);
    assert_eq!(sec["data"]["password"], "czNjcjN0");
    assert_eq!(sec["type"], "Opaque");
    let d = c.json(&["-n", "gen", "get", "deploy", "web", "-o", "json"]);
    assert_eq!(d["spec"]["replicas"], 0, "an explicit zero survives protobuf");
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["ports"], serde_json::json!([{"containerPort": 80, "protocol": "TCP"}]));
    assert!(container.get("stdin").is_none() && container.get("tty").is_none(), "Go's unset fields stay unset: {container}");
    let svc = c.json(&["-n", "gen", "get", "svc", "api", "-o", "json"]);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert!(svc["spec"]["ports"][0].get("nodePort").is_none());
    let edge = c.json(&["-n", "gen", "get", "svc", "edge", "-o", "json"]);
    let node_port = edge["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&node_port), "a NodePort is allocated: {node_port}");
    let job = c.json(&["-n", "gen", "get", "job", "once", "-o", "json"]);
    assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["command"], serde_json::json!(["echo", "hi"]));
    assert_eq!(job["spec"]["backoffLimit"], 6);
    let role = c.json(&["-n", "gen", "get", "role", "reader", "-o", "json"]);
    assert_eq!(role["rules"][0]["verbs"], serde_json::json!(["get", "list"]));
    let quota = c.json(&["-n", "gen", "get", "quota", "q", "-o", "json"]);
    assert_eq!(quota["spec"]["hard"], serde_json::json!({"pods": "10", "services": "5"}));
    let pdb = c.json(&["-n", "gen", "get", "pdb", "pdb", "-o", "json"]);
    assert_eq!(pdb["spec"]["minAvailable"], 0);
    let pod = c.json(&["-n", "gen", "get", "pod", "one", "-o", "json"]);
    assert_eq!(pod["metadata"]["labels"]["app"], "one");
    assert_eq!(pod["spec"]["containers"][0]["args"], serde_json::json!(["sleep", "1"]));
    let exposed = c.json(&["-n", "gen", "get", "svc", "one", "-o", "json"]);
    assert_eq!(exposed["spec"]["selector"], serde_json::json!({"app": "one"}));
    assert_eq!(exposed["spec"]["ports"][0]["targetPort"], 80);

    // Upstream's columns for each kind.
    let header = |kind: &str, wide: bool| {
        let mut args = vec!["-n", "gen", "get", kind];
        if wide {
            args.extend(["-o", "wide"]);
        }
        c.ok(&args).lines().next().unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ")
    };
    assert_eq!(header("job", true), "NAME STATUS COMPLETIONS DURATION AGE CONTAINERS IMAGES SELECTOR");
    assert_eq!(header("cronjob", false), "NAME SCHEDULE TIMEZONE SUSPEND ACTIVE LAST SCHEDULE AGE");
    assert_eq!(header("role", false), "NAME CREATED AT");
    assert_eq!(header("rolebinding", true), "NAME ROLE AGE USERS GROUPS SERVICEACCOUNTS");
    assert_eq!(header("quota", false), "NAME AGE REQUEST LIMIT");
    assert_eq!(header("pdb", false), "NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE");
    assert_eq!(header("deploy", true), "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR");
    let job_row = c.ok(&["-n", "gen", "get", "job", "once", "-o", "wide", "--no-headers"]);
    assert!(job_row.contains("batch.kubernetes.io/controller-uid="), "a Job selects its own pods by uid: {job_row}");
    let quota_row = c.ok(&["-n", "gen", "get", "quota", "q", "--no-headers"]);
    // The quota controller counts the namespace's pods (how many depends on
    // how far the Job and Deployment got) and its Services.
    assert!(quota_row.contains("/10, services: ") && quota_row.contains("/5"), "{quota_row}");

    // Every kind created above is listed in one go.
    let names = c.ok(&["-n", "gen", "get", "cm,secret,deploy,svc,job,cronjob,role,rolebinding,quota,sa,pdb,pod", "-o", "name"]);
    for want in ["configmap/cm", "secret/sec", "deployment.apps/web", "service/edge", "job.batch/once", "cronjob.batch/tick",
        "role.rbac.authorization.k8s.io/reader", "rolebinding.rbac.authorization.k8s.io/read", "resourcequota/q",
        "serviceaccount/robot", "poddisruptionbudget.policy/pdb", "pod/one"] {
        assert!(names.lines().any(|l| l == want), "{want} missing from {names}");
    }
}

/// `kubectl explain` reads the OpenAPI v3 component schemas.
#[test]
fn explain_reads_the_openapi_schemas() {
    let c = Cluster::start();
    let out = c.ok(&["explain", "pods"]);
    assert!(out.starts_with("KIND:       Pod\nVERSION:    v1\n"), "{out}");
    assert!(out.contains("Pod is a collection of containers that can run on a host."), "{out}");
    assert!(out.contains("metadata\t<ObjectMeta>\n") && out.contains("spec\t<PodSpec>\n"), "{out}");
    // A field's own description, not its type's.
    let out = c.ok(&["explain", "deployment.spec.strategy.rollingUpdate.maxSurge"]);
    assert!(out.contains("FIELD: maxSurge <IntOrString>") && out.contains("The maximum number of pods that can be scheduled"), "{out}");
    let out = c.ok(&["explain", "cronjobs.spec", "--recursive"]);
    assert!(out.contains("jobTemplate\t<JobTemplateSpec> -required-"), "{out}");
    for kind in ["networkpolicies", "clusterroles", "storageclasses.storage.k8s.io", "leases", "customresourcedefinitions"] {
        c.ok(&["explain", kind]);
    }
    let err = c.fails(&["explain", "pods.spec.nosuchfield"], None);
    assert!(err.contains("nosuchfield"), "{err}");
}

/// `kubectl apply --server-side`: twice, with fields changed and removed,
/// a conflict with another manager, and `--force-conflicts`.
#[test]
fn server_side_apply_owns_changes_and_removes_fields() {
    let c = Cluster::start();
    let out = c.ok_stdin(&["apply", "--server-side", "-f", "-"], Some(MANIFESTS));
    assert!(out.contains("deployment.apps/web serverside-applied"), "{out}");
    let out = c.ok_stdin(&["apply", "--server-side", "-f", "-"], Some(MANIFESTS));
    assert!(out.contains("configmap/settings serverside-applied"), "{out}");
    let d = c.json(&["-n", "shop", "get", "deploy", "web", "-o", "json", "--show-managed-fields"]);
    // kubectl's apply, and the controller manager's writes (revision
    // annotation, status), as upstream records them.
    let all = d["metadata"]["managedFields"].as_array().unwrap().clone();
    let (ours, theirs): (Vec<_>, Vec<_>) = all.iter().partition(|f| f["manager"] == "kubectl");
    assert!(theirs.iter().all(|f| f["manager"] == "kube-controller-manager"), "{all:?}");
    assert_eq!(ours.len(), 1, "{all:?}");
    let fields = ours[0];
    assert_eq!(fields["operation"], "Apply");
    assert!(fields["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:env"].is_object(), "{fields}");
    assert_eq!(d["metadata"]["generation"], 1, "re-applying the same manifest changes nothing");

    // Another manager takes replicas; applying a different value conflicts.
    c.ok(&["-n", "shop", "scale", "deploy", "web", "--replicas=5"]);
    let changed = MANIFESTS.replace("replicas: 2", "replicas: 3");
    let err = c.fails(&["apply", "--server-side", "-f", "-"], Some(&changed));
    assert!(err.contains("Apply failed with 1 conflict: conflict with") && err.contains(".spec.replicas"), "{err}");
    c.ok_stdin(&["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&changed));
    assert_eq!(c.json(&["-n", "shop", "get", "deploy", "web", "-o", "json"])["spec"]["replicas"], 3);

    // A field the manifest stops naming is removed; other fields stay.
    let removed = changed.replace(r#"        env: [{name: A, value: "1"}]"#, "").replace("data: {color: blue, size: \"2\"}", "data: {color: blue}");
    c.ok_stdin(&["apply", "--server-side", "-f", "-"], Some(&removed));
    let d = c.json(&["-n", "shop", "get", "deploy", "web", "-o", "json"]);
    assert!(d["spec"]["template"]["spec"]["containers"][0].get("env").is_none(), "{d}");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "registry.local/busybox:1");
    let cm = c.json(&["-n", "shop", "get", "cm", "settings", "-o", "json"]);
    assert_eq!(cm["data"], serde_json::json!({"color": "blue"}));

    // Client-side writes are recorded under their own managers.
    c.ok(&["-n", "shop", "label", "cm", "settings", "tier=front"]);
    let cm = c.json(&["-n", "shop", "get", "cm", "settings", "-o", "json", "--show-managed-fields"]);
    let label_owner = cm["metadata"]["managedFields"].as_array().unwrap().iter().find(|f| f["operation"] == "Update").unwrap();
    assert_eq!(label_owner["fieldsV1"], serde_json::json!({"f:metadata": {"f:labels": {"f:tier": {}}}}));
}

/// cluster-info, describe, diff, edit with a scripted editor, and wait.
/// [sig-cli] Kubectl client Kubectl cluster-info should check if Kubernetes control plane services is included in cluster-info [Conformance]
/// [sig-cli] Kubectl client Kubectl diff should check if kubectl diff finds a difference for Deployments [Conformance]
#[test]
fn describe_diff_edit_and_wait() {
    let c = Cluster::start();
    assert!(c.ok(&["cluster-info"]).contains("Kubernetes control plane is running at https://127.0.0.1:"));
    c.ok_stdin(&["apply", "-f", "-"], Some(MANIFESTS));

    let described = c.ok(&["-n", "shop", "describe", "deploy", "web"]);
    for line in ["Name:                   web", "Namespace:              shop", "Replicas:               2 desired", "StrategyType:           RollingUpdate"] {
        assert!(described.contains(line), "{line:?} missing from {described}");
    }
    assert!(described.lines().any(|l| l.trim_start().starts_with("Image:") && l.ends_with("registry.local/busybox:1")), "{described}");
    assert!(c.ok(&["-n", "shop", "describe", "cm", "settings"]).contains("color:\n----\nblue"));

    // diff: exit status 1 and the changed field when there is a difference, 0 when none.
    let changed = MANIFESTS.replace("replicas: 2", "replicas: 4");
    let out = c.kubectl_stdin(&["diff", "-f", "-"], Some(&changed));
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(diff.contains("-  replicas: 2") && diff.contains("+  replicas: 4"), "{diff}");
    assert_eq!(c.json(&["-n", "shop", "get", "deploy", "web", "-o", "json"])["spec"]["replicas"], 2, "diff changes nothing");
    let same = c.kubectl_stdin(&["diff", "-f", "-"], Some(MANIFESTS));
    assert_eq!(same.status.code(), Some(0), "{}", String::from_utf8_lossy(&same.stdout));

    // edit, with a script as the editor.
    let dir = tempfile::tempdir().unwrap();
    let editor = dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/color: blue/color: green/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("kubectl")
        .args(["-n", "shop", "edit", "cm", "settings"])
        .env("KUBECONFIG", c.kubeconfig())
        .env("KUBE_EDITOR", &editor)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(c.json(&["-n", "shop", "get", "cm", "settings", "-o", "json"])["data"]["color"], "green");

    // wait: for a field value, and for deletion.
    c.ok(&["-n", "shop", "wait", "--for=jsonpath={.data.color}=green", "cm/settings", "--timeout=10s"]);
    let waiter = std::process::Command::new("kubectl")
        .args(["-n", "shop", "wait", "--for=delete", "cm/settings", "--timeout=20s"])
        .env("KUBECONFIG", c.kubeconfig())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    c.ok(&["-n", "shop", "delete", "cm", "settings"]);
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("condition met"));
}

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd], categories: [all]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color, priority: 1}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            description: What the widget should be.
            required: [size]
            properties:
              size: {type: integer, minimum: 1, description: How big.}
              color: {type: string, enum: [red, blue], default: red}
          status:
            type: object
            properties:
              ready: {type: boolean}
"#;

/// [sig-api-machinery] CustomResourceDefinition resources [Privileged:ClusterAdmin] Simple CustomResourceDefinition creating/deleting custom resource definition objects works [Conformance]
/// [sig-api-machinery] CustomResourcePublishOpenAPI [Privileged:ClusterAdmin] works for CRD with validation schema [Conformance]
/// [sig-api-machinery] CustomResourceDefinition resources [Privileged:ClusterAdmin] should include custom resource definition resources in discovery documents [Conformance]
#[test]
fn custom_resources_are_served_validated_and_cleaned_up() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], Some(WIDGET_CRD));
    c.ok(&["wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=10s"]);
    let crd = c.json(&["get", "crd", "widgets.example.com", "-o", "json"]);
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");
    assert_eq!(crd["status"]["storedVersions"], serde_json::json!(["v1"]));
    let resources = c.ok(&["api-resources", "--api-group=example.com"]);
    assert!(resources.contains("widgets") && resources.contains("wd") && resources.contains("Widget"), "{resources}");

    c.ok_stdin(&["apply", "-f", "-"], Some("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: default}\nspec: {size: 3}\n"));
    let w = c.json(&["get", "wd", "w1", "-o", "json"]);
    assert_eq!(w["spec"], serde_json::json!({"size": 3, "color": "red"}), "the schema's default is filled in");
    let wide = c.ok(&["get", "widgets", "-o", "wide"]);
    assert_eq!(wide.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(), ["NAME", "SIZE", "COLOR", "AGE"]);
    assert!(c.ok(&["get", "all", "-o", "name"]).contains("widget.example.com/w1"));
    let explained = c.ok(&["explain", "widget.spec"]);
    assert!(explained.contains("What the widget should be.") && explained.contains("size\t<integer> -required-"), "{explained}");

    // The schema is enforced: unknown fields, types, ranges, enums.
    let w2 = |spec: &str| format!(r#"{{"apiVersion":"example.com/v1","kind":"Widget","metadata":{{"name":"w2","namespace":"default"}},"spec":{spec}}}"#);
    let err = c.fails(&["create", "-f", "-"], Some(&w2(r#"{"size":1,"bogus":1}"#)));
    assert!(err.contains(r#"unknown field "spec.bogus""#), "{err}");
    let err = c.fails(&["create", "-f", "-"], Some(&w2(r#"{"size":"big"}"#)));
    assert!(err.contains("spec.size in body must be of type integer"), "{err}");
    let err = c.fails(&["create", "-f", "-"], Some(&w2(r#"{"size":0}"#)));
    assert!(err.contains("spec.size in body should be greater than or equal to 1"), "{err}");
    let err = c.fails(&["create", "-f", "-"], Some(&w2(r#"{"size":1,"color":"green"}"#)));
    assert!(err.contains(r#"Unsupported value: "green""#), "{err}");

    // The status subresource: the main resource ignores status.
    c.ok(&["patch", "wd", "w1", "--subresource=status", "--type=merge", "-p", r#"{"status":{"ready":true}}"#]);
    c.ok(&["patch", "wd", "w1", "--type=merge", "-p", r#"{"status":{"ready":false},"spec":{"size":4}}"#]);
    let w = c.json(&["get", "wd", "w1", "-o", "json"]);
    assert_eq!((w["status"]["ready"].clone(), w["spec"]["size"].clone()), (serde_json::json!(true), serde_json::json!(4)));

    // Deleting the CRD deletes its objects, then stops serving the kind.
    c.ok(&["delete", "crd", "widgets.example.com"]);
    let err = c.fails(&["get", "--raw", "/apis/example.com/v1/namespaces/default/widgets"], None);
    assert!(err.contains("NotFound"), "{err}");
    c.ok_stdin(&["apply", "-f", "-"], Some(WIDGET_CRD));
    assert!(c.ok(&["get", "widgets", "-A", "-o", "name"]).trim().is_empty(), "objects of a deleted CRD do not come back");
}

/// `kubectl certificate approve|deny` through the CSR `approval`
/// subresource, which changes the conditions and nothing else; the
/// controller manager then signs the approved request.
#[test]
fn certificate_signing_requests_are_approved_and_denied() {
    let c = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let csr = |name: &str| {
        let pem = dir.path().join(format!("{name}.csr"));
        let out = std::process::Command::new("openssl")
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", &format!("/CN={name}/O=dev")])
            .args(["-keyout", dir.path().join(format!("{name}.key")).to_str().unwrap(), "-out", pem.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        use base64::Engine;
        let request = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&pem).unwrap());
        format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: {name}}}\nspec:\n  request: {request}\n  signerName: kubernetes.io/kube-apiserver-client\n  usages: [client auth]\n"
        )
    };
    c.ok_stdin(&["create", "-f", "-"], Some(&csr("alice")));
    c.ok_stdin(&["create", "-f", "-"], Some(&csr("mallory")));
    assert!(c.ok(&["get", "csr", "alice", "--no-headers"]).contains("Pending"));
    c.ok(&["certificate", "approve", "alice"]);
    c.ok(&["certificate", "deny", "mallory"]);
    let alice = c.json(&["get", "csr", "alice", "-o", "json"]);
    assert_eq!(alice["status"]["conditions"][0]["type"], "Approved");
    assert_eq!(alice["status"]["conditions"][0]["reason"], "KubectlApprove");
    assert_eq!(alice["spec"]["signerName"], "kubernetes.io/kube-apiserver-client", "approval leaves the spec alone");
    // The controller manager signs approved requests for the built-in
    // signers; a denied one gets nothing.
    let listed = c.wait_for(&["get", "csr", "--no-headers"], "alice's certificate", |l| l.lines().any(|l| l.starts_with("alice") && l.ends_with("Approved,Issued")));
    assert!(listed.lines().any(|l| l.starts_with("mallory") && l.ends_with("Denied")), "{listed}");
    let issued = c.ok(&["get", "csr", "alice", "-o", "jsonpath={.status.certificate}"]);
    use base64::Engine;
    let pem = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(issued).unwrap()).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert_eq!(c.ok(&["get", "csr", "mallory", "-o", "jsonpath={.status.certificate}"]), "");
}

/// kubectl validates Lists (and kinds without a PATCH operation) on the
/// client, against the OpenAPI v2 document in protobuf.
#[test]
fn kubectl_validates_lists_against_openapi_v2() {
    let c = Cluster::start();
    let list = |field: &str| format!(r#"{{"apiVersion": "v1", "kind": "List", "items": [{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "listed"}}, "{field}": {{"a": "b"}}}}]}}"#);
    let err = c.fails(&["create", "-f", "-"], Some(&list("bogus")));
    assert!(err.contains(r#"ValidationError(ConfigMap): unknown field "bogus" in io.k8s.api.core.v1.ConfigMap"#), "{err}");
    c.ok_stdin(&["create", "-f", "-"], Some(&list("data")));
    let all = c.ok(&["get", "configmaps", "-o", "json"]);
    assert!(c.ok_stdin(&["replace", "-f", "-"], Some(&all)).contains("configmap/listed replaced"));
}

/// The sample API server upstream's aggregator test deploys, written here
/// (its image cannot be pulled): `wardle.example.com/v1alpha1` flunders,
/// kept in memory, over HTTPS with a certificate for
/// `api.wardle.svc`. It takes only clients with a certificate from
/// `client_ca` (the aggregator's front-proxy certificate), and records who
/// each request says it is for (`X-Remote-User`). Returns its port, its CA
/// bundle (base64 PEM) and the users seen.
fn sample_api_server(client_ca: &str) -> (u16, String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use base64::Engine;
    use serde_json::{json, Value};
    use std::sync::{Arc, Mutex};
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = rcgen::CertificateParams::new(vec!["api.wardle.svc".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca.pem());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut client_ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(clients)
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let users = Arc::new(Mutex::new(Vec::new()));
    let seen = users.clone();
    let flunders: Arc<Mutex<std::collections::BTreeMap<String, Value>>> = Default::default();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, seen, flunders) = (acceptor.clone(), seen.clone(), flunders.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (seen, flunders) = (seen.clone(), flunders.clone());
                        async move {
                            use http_body_util::BodyExt;
                            let user = req.headers().get("x-remote-user").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                            seen.lock().unwrap().push(user);
                            let (method, path) = (req.method().clone(), req.uri().path().to_string());
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
                            let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
                            let (code, answer) = match (method.as_str(), parts.as_slice()) {
                                ("GET", ["apis", "wardle.example.com", "v1alpha1"]) => (200, json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "wardle.example.com/v1alpha1",
                                    "resources": [{"name": "flunders", "singularName": "flunder", "namespaced": true, "kind": "Flunder", "verbs": ["create", "delete", "get", "list"]}]})),
                                ("GET", ["apis", "wardle.example.com", "v1alpha1", "namespaces", ns, "flunders"]) => {
                                    let items: Vec<Value> = flunders.lock().unwrap().iter().filter(|(k, _)| k.starts_with(&format!("{ns}/"))).map(|(_, v)| v.clone()).collect();
                                    (200, json!({"kind": "FlunderList", "apiVersion": "wardle.example.com/v1alpha1", "metadata": {"resourceVersion": "1"}, "items": items}))
                                }
                                ("POST", ["apis", "wardle.example.com", "v1alpha1", "namespaces", ns, "flunders"]) => {
                                    let mut flunder: Value = serde_json::from_slice(&body).unwrap();
                                    flunder["metadata"]["namespace"] = json!(ns);
                                    flunder["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                                    let name = flunder["metadata"]["name"].as_str().unwrap_or_default().to_string();
                                    flunders.lock().unwrap().insert(format!("{ns}/{name}"), flunder.clone());
                                    (201, flunder)
                                }
                                ("GET", ["apis", "wardle.example.com", "v1alpha1", "namespaces", ns, "flunders", name]) => match flunders.lock().unwrap().get(&format!("{ns}/{name}")) {
                                    Some(f) => (200, f.clone()),
                                    None => (404, not_found),
                                },
                                ("DELETE", ["apis", "wardle.example.com", "v1alpha1", "namespaces", ns, "flunders", name]) => match flunders.lock().unwrap().remove(&format!("{ns}/{name}")) {
                                    Some(f) => (200, f),
                                    None => (404, not_found),
                                },
                                _ => (404, not_found),
                            };
                            let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(answer.to_string())));
                            *response.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
                            response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
                });
            }
        });
    });
    (port, bundle, users)
}

/// [sig-api-machinery] Aggregator Should be able to support the 1.17 Sample API Server using the current Aggregator [Conformance]
///
/// Upstream deploys its sample-apiserver image behind a Service; here the
/// server is `sample_api_server` above, reached through an ExternalName
/// Service, which the aggregator resolves as upstream's does.
#[test]
fn aggregator_serves_an_apiservice_from_its_service() {
    let c = Cluster::start();
    let client_ca = c.ok(&["get", "configmap", "extension-apiserver-authentication", "-n", "kube-system", "-o", "jsonpath={.data.requestheader-client-ca-file}"]);
    assert_eq!(c.ok(&["get", "configmap", "extension-apiserver-authentication", "-n", "kube-system", "-o", "jsonpath={.data.requestheader-allowed-names}"]), r#"["front-proxy-client"]"#);
    let (port, bundle, users) = sample_api_server(&client_ca);
    c.ok(&["create", "namespace", "wardle"]);
    c.ok(&["create", "service", "externalname", "api", "-n", "wardle", "--external-name", "localhost"]);
    let apiservice = format!(
        r#"{{"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {{"name": "v1alpha1.wardle.example.com"}},
            "spec": {{"group": "wardle.example.com", "version": "v1alpha1", "groupPriorityMinimum": 2000, "versionPriority": 200,
                     "service": {{"namespace": "wardle", "name": "api", "port": {port}}}, "caBundle": "{bundle}"}}}}"#
    );
    c.ok_stdin(&["create", "-f", "-"], Some(&apiservice));
    c.wait_for(&["get", "apiservice", "v1alpha1.wardle.example.com", "-o", "jsonpath={.status.conditions[?(@.type==\"Available\")].reason}"], "the APIService to pass its checks", |r| r == "Passed");

    // Discovery lists the group and its resources, so kubectl finds flunders.
    assert!(c.ok(&["api-versions"]).lines().any(|l| l == "wardle.example.com/v1alpha1"));
    assert!(c.ok(&["api-resources", "--api-group=wardle.example.com"]).contains("flunders"));
    let flunder = r#"{"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder", "metadata": {"name": "rest-flunder"}, "spec": {}}"#;
    c.ok_stdin(&["create", "-n", "default", "-f", "-"], Some(flunder));
    assert!(c.ok(&["get", "flunders", "-n", "default"]).contains("rest-flunder"));
    assert!(c.ok(&["get", "--raw", "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders/rest-flunder"]).contains("\"rest-flunder\""));
    c.ok(&["delete", "flunder", "rest-flunder", "-n", "default"]);
    let err = c.fails(&["get", "flunder", "rest-flunder", "-n", "default"], None);
    assert!(err.contains("NotFound") || err.contains("not found"), "{err}");
    // The backend was told who asked, by the front proxy only.
    assert!(users.lock().unwrap().iter().any(|u| u == "skiff-admin"), "{:?}", users.lock().unwrap());

    // Authorization is the API server's: a user with no rights is refused
    // before the backend hears of it.
    c.ok(&["create", "serviceaccount", "nobody"]);
    let token = c.ok(&["create", "token", "nobody"]);
    let nobody = c.kubeconfig_for("nobody", &format!("{{token: {}}}", token.trim()));
    let before = users.lock().unwrap().len();
    let out = common::kubectl_with(&nobody, &["get", "flunders", "-n", "default"], None);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("forbidden"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(users.lock().unwrap()[before..].iter().all(|u| !u.contains("nobody")), "{:?}", users.lock().unwrap());

    // A backend that goes away makes the APIService unavailable.
    c.ok(&["delete", "service", "api", "-n", "wardle"]);
    c.wait_for(&["get", "apiservice", "v1alpha1.wardle.example.com", "-o", "jsonpath={.status.conditions[?(@.type==\"Available\")].reason}"], "the APIService to lose its Service", |r| r == "ServiceNotFound");
    let err = c.fails(&["get", "--raw", "/apis/wardle.example.com/v1alpha1/namespaces/default/flunders"], None);
    assert!(err.contains("ServiceUnavailable") || err.contains("503") || err.contains("not present"), "{err}");
}

/// A plain HTTP/1.0 GET of `path` over `stream`; the whole answer.
fn http_get(mut stream: impl std::io::Read + std::io::Write, path: &str) -> String {
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// [sig-cli] Kubectl client Proxy server should support proxy with --port 0 [Conformance]
/// [sig-cli] Kubectl client Proxy server should support --unix-socket=/path [Conformance]
#[test]
fn kubectl_proxy_serves_the_api_on_port_zero_and_on_a_unix_socket() {
    use std::io::BufRead;
    let c = Cluster::start();
    let kubeconfig = c.kubeconfig().display().to_string();
    let mut on_port = std::process::Command::new("kubectl")
        .args(["--kubeconfig", &kubeconfig, "proxy", "--port=0", "--disable-filter"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(on_port.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(line.starts_with("Starting to serve on 127.0.0.1:"), "{line}");
    let answer = http_get(std::net::TcpStream::connect(&address).unwrap(), "/api/");
    assert!(answer.starts_with("HTTP/1.0 200") && answer.contains(r#""versions":["v1"]"#), "{answer}");
    on_port.kill().unwrap();
    on_port.wait().unwrap();

    let socket = c.dir.path().join("proxy.sock");
    let mut on_socket = std::process::Command::new("kubectl")
        .args(["--kubeconfig", &kubeconfig, "proxy", &format!("--unix-socket={}", socket.display())])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "kubectl proxy made no socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer = http_get(std::os::unix::net::UnixStream::connect(&socket).unwrap(), "/api/");
    assert!(answer.starts_with("HTTP/1.0 200") && answer.contains(r#""versions":["v1"]"#), "{answer}");
    on_socket.kill().unwrap();
    on_socket.wait().unwrap();
}

//! Monitoring: the cluster-state metrics (kube-state-metrics' names and
//! labels) that the API server serves at `/metrics/cluster-state`, read
//! by whoever holds the `system:monitoring` role; the HTTP service
//! discovery; `skiff monitoring config` driving Debian's real Prometheus,
//! push gateway and Alertmanager (targets, component series, alerts,
//! dashboards); and the custom and external metrics APIs that an HPA
//! scales on.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{kubectl_with, Cluster};

/// The value of the series `name{labels…}` whose labels include all of `having`.
fn series(page: &str, name: &str, having: &[(&str, &str)]) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (head, value) = line.rsplit_once(' ')?;
        let labels = head.strip_prefix(name)?.strip_prefix('{')?;
        having.iter().all(|(k, v)| labels.contains(&format!("{k}=\"{v}\""))).then(|| value.parse().ok())?
    })
}

#[test]
fn cluster_state_metrics_name_pods_workloads_and_nodes_as_kube_state_metrics() {
    let c = Cluster::start_node(&[]);
    let image = common::test_image();
    c.ok_stdin(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"web"}},"spec":{{"replicas":2,"selector":{{"matchLabels":{{"app":"web"}}}},"template":{{"metadata":{{"labels":{{"app":"web"}}}},"spec":{{"terminationGracePeriodSeconds":0,"containers":[{{"name":"main","image":"{image}","command":["sleep","3600"],"resources":{{"requests":{{"cpu":"100m","memory":"16Mi"}},"limits":{{"cpu":"200m","memory":"32Mi"}}}}}}]}}}}}}}}"#
        )),
    );
    c.ok_stdin(
        &["apply", "-f", "-"],
        Some(&format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"crasher"}},"spec":{{"terminationGracePeriodSeconds":0,"containers":[{{"name":"main","image":"{image}","command":["false"]}}]}}}}"#)),
    );
    let page = || c.ok(&["get", "--raw", "/metrics/cluster-state"]);
    c.wait_for(&["get", "deployment", "web", "-o", "jsonpath={.status.availableReplicas}"], "the Deployment to be available", |o| o == "2");
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut text = page();
    while series(&text, "kube_pod_container_status_waiting_reason", &[("pod", "crasher"), ("reason", "CrashLoopBackOff")]) != Some(1.0) {
        assert!(Instant::now() < deadline, "the crashing pod never showed as backing off:\n{text}");
        std::thread::sleep(Duration::from_millis(500));
        text = page();
    }
    let web = [("namespace", "default"), ("deployment", "web")];
    assert_eq!(series(&text, "kube_deployment_spec_replicas", &web), Some(2.0));
    assert_eq!(series(&text, "kube_deployment_status_replicas_available", &web), Some(2.0));
    assert_eq!(series(&text, "kube_deployment_status_condition", &[("deployment", "web"), ("condition", "Available"), ("status", "true")]), Some(1.0));
    assert_eq!(series(&text, "kube_node_status_condition", &[("node", "node-1"), ("condition", "Ready"), ("status", "true")]), Some(1.0));
    assert!(series(&text, "kube_node_status_allocatable", &[("node", "node-1"), ("resource", "cpu"), ("unit", "core")]).is_some_and(|v| v > 0.0));
    let pod = c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"]);
    assert_eq!(series(&text, "kube_pod_status_phase", &[("pod", &pod), ("phase", "Running")]), Some(1.0));
    assert_eq!(series(&text, "kube_pod_status_phase", &[("pod", &pod), ("phase", "Pending")]), Some(0.0));
    assert_eq!(series(&text, "kube_pod_status_ready", &[("pod", &pod), ("condition", "true")]), Some(1.0));
    assert_eq!(series(&text, "kube_pod_owner", &[("pod", &pod), ("owner_kind", "ReplicaSet"), ("owner_is_controller", "true")]), Some(1.0));
    assert_eq!(series(&text, "kube_pod_info", &[("pod", &pod), ("node", "node-1"), ("created_by_kind", "ReplicaSet")]), Some(1.0));
    assert_eq!(series(&text, "kube_pod_container_resource_requests", &[("pod", &pod), ("resource", "cpu"), ("unit", "core")]), Some(0.1));
    assert_eq!(series(&text, "kube_pod_container_resource_requests", &[("pod", &pod), ("resource", "memory"), ("unit", "byte")]), Some(16.0 * 1024.0 * 1024.0));
    assert_eq!(series(&text, "kube_pod_container_resource_limits", &[("pod", &pod), ("resource", "memory")]), Some(32.0 * 1024.0 * 1024.0));
    assert!(series(&text, "kube_pod_container_status_restarts_total", &[("pod", "crasher"), ("container", "main")]).is_some_and(|n| n >= 1.0));
    assert_eq!(series(&text, "kube_pod_container_status_last_terminated_reason", &[("pod", "crasher"), ("reason", "Error")]), Some(1.0));
    assert_eq!(series(&text, "kube_namespace_status_phase", &[("namespace", "default"), ("phase", "Active")]), Some(1.0));
    assert_eq!(series(&text, "kube_service_spec_type", &[("service", "kubernetes"), ("type", "ClusterIP")]), Some(1.0));

    // Series the mixin's alerts read beside the cluster state: CPU
    // throttling of a container with a CPU limit (cAdvisor's), and the
    // lifetime left on client certificates (the API server's).
    let cadvisor = c.ok(&["get", "--raw", "/api/v1/nodes/node-1/proxy/metrics/cadvisor"]);
    assert!(series(&cadvisor, "container_cpu_cfs_periods_total", &[("pod", &pod), ("container", "main")]).is_some_and(|n| n > 0.0), "no CFS periods for {pod}");
    assert!(series(&cadvisor, "container_cpu_cfs_throttled_periods_total", &[("pod", &pod)]).is_some());
    let apiserver = c.ok(&["get", "--raw", "/metrics"]);
    let seen = apiserver.lines().find_map(|l| l.strip_prefix("apiserver_client_certificate_expiration_seconds_count ")).and_then(|v| v.parse::<f64>().ok());
    assert!(seen.is_some_and(|n| n > 0.0), "kubectl's certificate is counted");

    // The page is well-formed exposition, as Prometheus' own linter reads it.
    if let Ok(mut lint) = Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() {
        use std::io::Write;
        lint.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let out = lint.wait_with_output().unwrap();
        assert!(out.status.success(), "promtool: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }

    // Readable with the system:monitoring role, and by no one without it.
    c.ok(&["create", "serviceaccount", "prometheus"]);
    c.ok(&["create", "serviceaccount", "nobody"]);
    c.ok(&["create", "clusterrolebinding", "prometheus-monitoring", "--clusterrole", "system:monitoring", "--serviceaccount", "default:prometheus"]);
    let as_account = |name: &str| {
        let token = c.ok(&["create", "token", name]);
        let kubeconfig = c.kubeconfig_for(name, &format!("{{token: {}}}", token.trim()));
        kubectl_with(&kubeconfig, &["get", "--raw", "/metrics/cluster-state"], None)
    };
    let allowed = as_account("prometheus");
    assert!(allowed.status.success() && String::from_utf8_lossy(&allowed.stdout).contains("kube_pod_info{"));
    let refused = as_account("nobody");
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("Forbidden"), "{}", String::from_utf8_lossy(&refused.stderr));
}

/// Prometheus' HTTP service discovery: the targets kubernetes_sd would
/// find, with its labels, only of what the requester may list.
#[test]
fn http_service_discovery_gives_kubernetes_sd_targets_the_requester_may_list() {
    let c = Cluster::start_node(&[]);
    let image = common::test_image();
    c.ok(&["create", "namespace", "shop"]);
    for ns in ["default", "shop"] {
        c.ok_stdin(
            &["apply", "-n", ns, "-f", "-"],
            Some(&format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"web","labels":{{"app":"web"}},"annotations":{{"prometheus.io/scrape":"true"}}}},"spec":{{"terminationGracePeriodSeconds":0,"containers":[{{"name":"main","image":"{image}","command":["sleep","3600"],"ports":[{{"name":"http","containerPort":8080}}]}}]}}}}"#)),
        );
    }
    c.ok_stdin(&["apply", "-f", "-"], Some(r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"selector":{"app":"web"},"ports":[{"name":"http","port":80,"targetPort":8080}]}}"#));
    for ns in ["default", "shop"] {
        c.wait_for(&["get", "pod", "web", "-n", ns, "-o", "jsonpath={.status.phase}"], "the pod to run", |o| o == "Running");
    }
    let sd = |role: &str| -> serde_json::Value { serde_json::from_str(&c.ok(&["get", "--raw", &format!("/metrics/targets?role={role}")])).unwrap() };
    let find = |groups: &serde_json::Value, key: &str, value: &str| groups.as_array().unwrap().iter().find(|g| g["labels"][key] == value).cloned();

    let pods = sd("pod");
    let ip = c.ok(&["get", "pod", "web", "-o", "jsonpath={.status.podIP}"]);
    let web = pods.as_array().unwrap().iter().find(|g| g["labels"]["__meta_kubernetes_pod_ip"] == ip.as_str()).expect("the pod is a target").clone();
    assert_eq!(web["targets"], serde_json::json!([format!("{ip}:8080")]));
    let labels = &web["labels"];
    assert_eq!((labels["__meta_kubernetes_namespace"].as_str(), labels["__meta_kubernetes_pod_name"].as_str()), (Some("default"), Some("web")));
    assert_eq!(labels["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "true");
    assert_eq!(labels["__meta_kubernetes_pod_container_port_name"], "http");
    assert_eq!(labels["__meta_kubernetes_pod_ready"], "true");
    let node = find(&sd("node"), "__meta_kubernetes_node_name", "node-1").expect("the node is a target");
    let port = c.ok(&["get", "node", "node-1", "-o", "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}"]);
    assert!(node["targets"][0].as_str().unwrap().ends_with(&format!(":{port}")));
    let service = find(&sd("service"), "__meta_kubernetes_service_name", "web").expect("the Service is a target");
    assert_eq!(service["targets"], serde_json::json!(["web.default.svc:80"]));
    // Endpoints follow the pod's readiness a moment later.
    let eventually = |role: &str, key: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(found) = find(&sd(role), key, "web").filter(|g| g["targets"][0].as_str().is_some_and(|t| t.starts_with(ip.as_str()))) {
                return found;
            }
            assert!(Instant::now() < deadline, "no {role} target for web");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let endpoint = eventually("endpoints", "__meta_kubernetes_endpoints_name");
    assert_eq!(endpoint["targets"], serde_json::json!([format!("{ip}:8080")]));
    assert_eq!(endpoint["labels"]["__meta_kubernetes_service_name"], "web");
    let slice = eventually("endpointslice", "__meta_kubernetes_service_name");
    assert_eq!(slice["labels"]["__meta_kubernetes_endpointslice_endpoint_conditions_ready"], "true");
    assert!(c.fails(&["get", "--raw", "/metrics/targets?role=ingress"], None).contains("role must be one of"));

    // The monitoring role reaches the URL; what it lists is its rights'.
    c.ok(&["create", "serviceaccount", "scraper", "-n", "shop"]);
    c.ok(&["create", "clusterrolebinding", "scraper-monitoring", "--clusterrole", "system:monitoring", "--serviceaccount", "shop:scraper"]);
    let token = c.ok(&["create", "token", "scraper", "-n", "shop"]);
    let kubeconfig = c.kubeconfig_for("scraper", &format!("{{token: {}}}", token.trim()));
    let pods_seen = || -> Vec<String> {
        let out = kubectl_with(&kubeconfig, &["get", "--raw", "/metrics/targets?role=pod"], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let groups: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        groups.as_array().unwrap().iter().map(|g| g["labels"]["__meta_kubernetes_namespace"].as_str().unwrap().to_string()).collect()
    };
    assert!(pods_seen().is_empty(), "no right to list pods: no pod targets");
    c.ok(&["create", "rolebinding", "scraper-view", "-n", "shop", "--clusterrole", "view", "--serviceaccount", "shop:scraper"]);
    let seen = pods_seen();
    assert!(!seen.is_empty() && seen.iter().all(|ns| ns == "shop"), "{seen:?}");
}

/// Every alert `skiff monitoring config` writes passes its unit test, as
/// Prometheus' own rule checker runs them.
#[test]
fn alert_rules_pass_their_promtool_unit_tests() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/monitoring");
    for args in [vec!["check", "rules", "rules/kubernetes.yml"], vec!["test", "rules", "rules-tests/kubernetes.yml"]] {
        let out = Command::new("promtool").args(&args).current_dir(&dir).output().expect("promtool (scripts/deps.sh installs prometheus)");
        assert!(out.status.success(), "promtool {}: {}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
}

/// Prometheus (Debian's), told to close when dropped.
struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get_json(url: &str) -> serde_json::Value {
    let out = Command::new("curl").args(["-sf", url]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `skiff monitoring config` for the cluster into `dir`, checked by promtool.
fn configure(c: &Cluster, dir: &std::path::Path, flags: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let kubeconfig = c.kubeconfig().display().to_string();
    let mut args = vec!["monitoring", "config", "--kubeconfig", &kubeconfig, "--dir", dir.to_str().unwrap()];
    args.extend_from_slice(flags);
    c.skiff(&args);
    let check = Command::new("promtool").arg("check").arg("config").arg(dir.join("prometheus.yml")).output().unwrap();
    assert!(check.status.success(), "promtool check config: {}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
}

/// `prometheus --config.file=DIR/prometheus.yml` on `port`, its log in DIR.
fn start_prometheus(dir: &std::path::Path, port: u16) -> Prometheus {
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus (scripts/deps.sh installs it)"),
    )
}

/// An instant query's series (`api`: Prometheus' `…/api/v1`).
fn query(api: &str, q: &str) -> Vec<serde_json::Value> {
    let out = Command::new("curl").args(["-sf", &format!("{api}/query"), "--data-urlencode", &format!("query={q}")]).output().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    body["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The query's series, once it has some (30 s at most).
fn wait_query(api: &str, q: &str) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = query(api, q);
        if !got.is_empty() {
            return got;
        }
        assert!(Instant::now() < deadline, "no series for {q}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `skiff monitoring config`, then `prometheus --config.file=…` and nothing
/// else: every target is up, and cluster state, containers, components
/// and an annotated pod are in Prometheus, the pod's series with its
/// namespace and name.
#[test]
fn prometheus_configured_by_skiff_scrapes_every_target() {
    let Ok(version) = Command::new("prometheus").arg("--version").output() else {
        panic!("prometheus is not installed (scripts/deps.sh installs it)");
    };
    assert!(version.status.success());
    let c = Cluster::start_node(&[]);
    let image = common::test_image();
    c.ok_stdin(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"exporter","annotations":{{"prometheus.io/scrape":"true","prometheus.io/port":"9100","prometheus.io/path":"/custom"}}}},"spec":{{"terminationGracePeriodSeconds":0,"containers":[{{"name":"main","image":"{image}","command":["sh","-c","mkdir -p /www && printf 'demo_requests_total 42\\n' > /www/custom && exec httpd -f -p 9100 -h /www"],"ports":[{{"containerPort":9100}}],"resources":{{"requests":{{"cpu":"10m"}}}}}}]}}}}"#
        )),
    );
    c.wait_for(&["get", "pod", "exporter", "-o", "jsonpath={.status.phase}"], "the exporter to run", |o| o == "Running");
    // Two things wrong, for the alerts: a pod that crashes as it starts,
    // and a Deployment whose pods fit no node.
    c.ok(&["run", "crasher", &format!("--image={image}"), "--restart=Always", "--", "sh", "-c", "exit 1"]);
    c.ok_stdin(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: stuck}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: stuck}}}}\n  template:\n    metadata: {{labels: {{app: stuck}}}}\n    spec:\n      nodeSelector: {{disk: none-has-it}}\n      containers: [{{name: main, image: {image}, command: [sleep, '3600']}}]\n"
        )),
    );
    let dir = c.dir.path().join("monitoring");
    std::fs::create_dir_all(&dir).unwrap();
    // A push gateway holding a batch job's metric, and an Alertmanager.
    let gateway = format!("127.0.0.1:{}", free_port());
    let _gateway = Prometheus(Command::new("prometheus-pushgateway").arg(format!("--web.listen-address={gateway}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let alertmanager = format!("127.0.0.1:{}", free_port());
    std::fs::write(dir.join("alertmanager.yml"), "route: {receiver: none}\nreceivers: [{name: none}]\n").unwrap();
    let _alertmanager = Prometheus(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", dir.join("alertmanager.yml").display()))
            .arg(format!("--storage.path={}", dir.join("alertmanager").display()))
            .arg(format!("--web.listen-address={alertmanager}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pushed = (0..50).any(|_| {
        let ok = Command::new("curl").args(["-sf", "--data-binary", "batch_records_processed 7\n", &format!("http://{gateway}/metrics/job/nightly")]).status().unwrap().success();
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(pushed, "the push gateway took no metric");
    let (pushgateway_url, alertmanager_url) = (format!("http://{gateway}"), format!("http://{alertmanager}"));
    configure(&c, &dir, &["--scrape-interval", "1s", "--pushgateway", &pushgateway_url, "--alertmanager", &alertmanager_url]);
    // The alerts' waits (15 minutes for most) are what `promtool test
    // rules` covers; here they are cut so the path to Alertmanager is seen.
    let rules = std::fs::read_to_string(dir.join("rules/kubernetes.yml")).unwrap();
    let hurried: Vec<String> = rules.lines().map(|l| match l.split_once("for: ") { Some((indent, _)) if indent.trim().is_empty() => format!("{indent}for: 0s"), _ => l.to_string() }).collect();
    std::fs::write(dir.join("rules/kubernetes.yml"), hurried.join("\n")).unwrap();
    let port = free_port();
    let _prometheus = start_prometheus(&dir, port);
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let wanted = ["apiserver", "kube-state-metrics", "kubelet", "kube-proxy", "coredns", "kube-scheduler", "kube-controller-manager", "kubernetes-pods", "pushgateway"];
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let targets = get_json(&format!("{api}/targets?state=active"));
        let active = targets["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
        let jobs: Vec<&str> = active.iter().filter_map(|t| t["labels"]["job"].as_str()).collect();
        let all_up = !active.is_empty() && active.iter().all(|t| t["health"] == "up");
        if all_up && wanted.iter().all(|j| jobs.contains(j)) {
            // The kubelet's three pages, under the one job.
            assert_eq!(active.iter().filter(|t| t["labels"]["job"] == "kubelet").count(), 3, "{active:#?}");
            break;
        }
        assert!(Instant::now() < deadline, "targets never all up: {active:#?}\nprometheus log: {}", std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(500));
    }
    let query = |q: &str| query(&api, q);
    let wait_query = |q: &str| wait_query(&api, q);
    let demo = wait_query(r#"demo_requests_total{job="kubernetes-pods"}"#);
    assert_eq!((demo[0]["metric"]["namespace"].as_str(), demo[0]["metric"]["pod"].as_str(), demo[0]["value"][1].as_str()), (Some("default"), Some("exporter"), Some("42")));
    assert!(!wait_query(r#"kube_pod_info{pod="exporter",namespace="default"}"#).is_empty());
    assert!(!wait_query(r#"container_cpu_usage_seconds_total{job="kubelet",metrics_path="/metrics/cadvisor",pod="exporter"}"#).is_empty());
    assert!(!wait_query(r#"kubelet_running_pods{job="kubelet",node="node-1"}"#).is_empty());
    assert!(!wait_query(r#"apiserver_request_total{job="apiserver"}"#).is_empty());
    assert!(!wait_query(r#"up{job="kube-controller-manager"} == 1"#).is_empty());
    // Each component's own series, and its process's.
    for series in [
        r#"scheduler_pending_pods{job="kube-scheduler",queue="unschedulable"}"#,
        r#"scheduler_scheduling_attempt_duration_seconds_count{job="kube-scheduler",result="scheduled"} > 0"#,
        r#"scheduler_pod_scheduling_sli_duration_seconds_count{job="kube-scheduler"} > 0"#,
        r#"workqueue_adds_total{job="kube-controller-manager",name="deployment"} > 0"#,
        r#"workqueue_work_duration_seconds_count{job="kube-controller-manager",name="replicaset"} > 0"#,
        r#"leader_election_master_status{job="kube-controller-manager",name="kube-controller-manager"} == 1"#,
        r#"kubelet_pod_start_duration_seconds_count{job="kubelet"} > 0"#,
        r#"kubelet_pod_worker_duration_seconds_count{job="kubelet",operation_type="sync"} > 0"#,
        r#"process_resident_memory_bytes{job="apiserver"} > 0"#,
        r#"process_open_fds{job="kube-scheduler"} > 0"#,
        r#"process_cpu_seconds_total{job="kubelet"} > 0"#,
    ] {
        assert!(!wait_query(series).is_empty());
    }
    // The pushed series keeps the job it was pushed under (honor_labels).
    let batch = wait_query("batch_records_processed");
    assert_eq!((batch[0]["metric"]["job"].as_str(), batch[0]["value"][1].as_str()), (Some("nightly"), Some("7")));
    // Alerts go to the Alertmanager given.
    let deadline = Instant::now() + Duration::from_secs(30);
    while get_json(&format!("{api}/alertmanagers"))["data"]["activeAlertmanagers"].as_array().is_none_or(|a| a.is_empty()) {
        assert!(Instant::now() < deadline, "Prometheus never found the Alertmanager");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The alert rules are loaded, and their recording rules evaluate.
    let rules = get_json(&format!("{api}/rules"));
    let groups: Vec<&str> = rules["data"]["groups"].as_array().unwrap().iter().filter_map(|g| g["name"].as_str()).collect();
    assert!(groups.contains(&"kubernetes-apps") && groups.contains(&"appsafe"), "{groups:?}");
    let requested = wait_query(r#"namespace_cpu:kube_pod_container_resource_requests:sum{namespace="default"}"#);
    assert_eq!(requested[0]["value"][1], "0.01");
    // The crash loop and the short Deployment fire, and reach Alertmanager.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let received = get_json(&format!("http://{alertmanager}/api/v2/alerts"));
        let names: Vec<(String, String)> = received
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| (a["labels"]["alertname"].as_str().unwrap_or_default().to_string(), a["labels"]["pod"].as_str().or(a["labels"]["deployment"].as_str()).unwrap_or_default().to_string()))
            .collect();
        let crash = names.iter().any(|(n, p)| n == "KubePodCrashLooping" && p == "crasher");
        let short = names.iter().any(|(n, d)| n == "KubeDeploymentReplicasMismatch" && d == "stuck");
        if crash && short {
            break;
        }
        let firing = query("ALERTS");
        assert!(Instant::now() < deadline, "Alertmanager holds {names:?}; Prometheus's alerts: {firing:#?}");
        std::thread::sleep(Duration::from_secs(1));
    }
    // Every dashboard query written evaluates here, its variables set to
    // this cluster's names, once rates have samples to work on.
    wait_query(r#"count_over_time(up{job="kubelet",metrics_path="/metrics"}[1m]) >= 10"#);
    let check = Command::new("python3")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check_dashboards.py"))
        .args(["--prometheus", &format!("http://127.0.0.1:{port}"), "--set", "namespace=default", "--set", "node=node-1", "--set", "pod=exporter"])
        .arg(dir.join("dashboards"))
        .output()
        .unwrap();
    assert!(check.status.success(), "dashboards: {}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    eprintln!("{}", String::from_utf8_lossy(&check.stdout));
}

/// custom.metrics.k8s.io and external.metrics.k8s.io from the Prometheus
/// the server is given, named by prometheus-adapter's default rules: an
/// HPA on a Pods metric that annotated pods export scales them up, then
/// down when the metric falls.
#[test]
fn hpa_scales_on_a_pods_metric_from_prometheus() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let c = Cluster::start_node(&["--prometheus-url", &url, "--horizontal-pod-autoscaler-sync-period", "2s"]);
    let image = common::test_image();
    // Each pod serves a gauge from a file that the test rewrites.
    c.ok_stdin(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"worker"}},"spec":{{"replicas":1,"selector":{{"matchLabels":{{"app":"worker"}}}},"template":{{"metadata":{{"labels":{{"app":"worker"}},"annotations":{{"prometheus.io/scrape":"true","prometheus.io/port":"9100"}}}},"spec":{{"terminationGracePeriodSeconds":0,"containers":[{{"name":"main","image":"{image}","command":["sh","-c","mkdir -p /www && printf 'jobs_waiting 30\n' > /www/metrics && exec httpd -f -p 9100 -h /www"],"ports":[{{"containerPort":9100}}]}}]}}}}}}}}"#
        )),
    );
    c.wait_for(&["get", "deployment", "worker", "-o", "jsonpath={.status.availableReplicas}"], "the worker to run", |o| o == "1");
    let dir = c.dir.path().join("monitoring");
    configure(&c, &dir, &["--scrape-interval", "1s"]);
    let _prometheus = start_prometheus(&dir, port);
    wait_query(&format!("{url}/api/v1"), r#"jobs_waiting{namespace="default"}"#);

    // The APIs, as prometheus-adapter answers them.
    let groups = c.ok(&["api-versions"]);
    assert!(groups.contains("custom.metrics.k8s.io/v1beta2") && groups.contains("external.metrics.k8s.io/v1beta1"), "{groups}");
    let pod = c.ok(&["get", "pods", "-l", "app=worker", "-o", "jsonpath={.items[0].metadata.name}"]);
    let one: serde_json::Value = serde_json::from_str(&c.ok(&["get", "--raw", &format!("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/{pod}/jobs_waiting")])).unwrap();
    assert_eq!((one["kind"].as_str(), one["items"][0]["describedObject"]["name"].as_str(), one["items"][0]["value"].as_str()), (Some("MetricValueList"), Some(pod.as_str()), Some("30")), "{one:#}");
    let listed = c.ok(&["get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2"]);
    assert!(listed.contains("pods/jobs_waiting"), "{listed}");
    let external: serde_json::Value = serde_json::from_str(&c.ok(&["get", "--raw", "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/jobs_waiting?labelSelector=job%3Dkubernetes-pods"])).unwrap();
    assert_eq!((external["kind"].as_str(), external["items"][0]["value"].as_str()), (Some("ExternalMetricValueList"), Some("30")), "{external:#}");
    let missing = c.fails(&["get", "--raw", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/no_such_metric"], None);
    assert!(missing.contains("NotFound") || missing.contains("not found"), "{missing}");

    // 30 waiting against 10 a pod: three pods.
    c.ok_stdin(
        &["apply", "-f", "-"],
        Some(r#"{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","metadata":{"name":"worker"},"spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"worker"},"minReplicas":1,"maxReplicas":3,"metrics":[{"type":"Pods","pods":{"metric":{"name":"jobs_waiting"},"target":{"type":"AverageValue","averageValue":"10"}}}],"behavior":{"scaleDown":{"stabilizationWindowSeconds":0}}}}"#),
    );
    c.wait_up_to(Duration::from_secs(90), &["get", "deployment", "worker", "-o", "jsonpath={.spec.replicas}"], "the HPA to scale up to 3", |o| o == "3");
    let status: serde_json::Value = serde_json::from_str(&c.ok(&["get", "hpa", "worker", "-o", "json"])).unwrap();
    let active = status["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "ScalingActive").cloned().unwrap();
    assert_eq!((active["status"].as_str(), active["reason"].as_str()), (Some("True"), Some("ValidMetricFound")), "{status:#}");
    assert_eq!(status["status"]["currentMetrics"][0]["pods"]["metric"]["name"], "jobs_waiting");

    // The work drains: every pod reports 1, and one pod is enough.
    c.wait_for(&["get", "deployment", "worker", "-o", "jsonpath={.status.availableReplicas}"], "three workers to run", |o| o == "3");
    let drain = || {
        for pod in c.ok(&["get", "pods", "-l", "app=worker", "-o", "jsonpath={.items[*].metadata.name}"]).split_whitespace() {
            let _ = c.kubectl(&["exec", pod, "--", "sh", "-c", "printf 'jobs_waiting 1\\n' > /www/metrics"]);
        }
    };
    drain();
    c.wait_up_to(Duration::from_secs(90), &["get", "deployment", "worker", "-o", "jsonpath={.spec.replicas}"], "the HPA to scale down to 1", |o| {
        drain();
        o == "1"
    });
}

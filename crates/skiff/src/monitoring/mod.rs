//! `skiff monitoring config`: a Prometheus configuration that works as
//! written. It makes the ServiceAccount Prometheus scrapes as (with only
//! the rights scraping needs) and writes, into one directory, its token and
//! the cluster CA, and `prometheus.yml` with a job per component under
//! upstream's job names: the API server, cluster state, the kubelets and
//! their cAdvisor (through the API server's node proxy, so Prometheus needs
//! to reach the API server only), the scheduler and the controller
//! manager, annotated pods, and a push gateway. Targets come from the API
//! server's HTTP service discovery (`/metrics/targets`), which Prometheus
//! builds without kubernetes_sd read. `rules/` holds the alerts a cluster
//! needs, under kubernetes-mixin's names; `dashboards/` Grafana's views of
//! them (checked by `scripts/check_dashboards.py`, also against a live
//! Prometheus in the monitoring test).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// kubernetes-mixin's alerts over Skiff's series (tested by
/// `rules-tests/kubernetes.yml` with `promtool test rules`).
const RULES: &str = include_str!("rules/kubernetes.yml");

/// Grafana dashboards over the same series, by file name.
const DASHBOARDS: [(&str, &str); 9] = [
    ("cluster.json", include_str!("dashboards/cluster.json")),
    ("namespace.json", include_str!("dashboards/namespace.json")),
    ("node.json", include_str!("dashboards/node.json")),
    ("pod.json", include_str!("dashboards/pod.json")),
    ("workload.json", include_str!("dashboards/workload.json")),
    ("apiserver.json", include_str!("dashboards/apiserver.json")),
    ("kubelet.json", include_str!("dashboards/kubelet.json")),
    ("networking.json", include_str!("dashboards/networking.json")),
    ("persistent-volumes.json", include_str!("dashboards/persistent-volumes.json")),
];

const NAMESPACE: &str = "kube-system";
const ACCOUNT: &str = "skiff-monitoring";
const MANAGER: &str = "skiff-monitoring";

#[derive(clap::Subcommand)]
pub enum Monitoring {
    /// Write a ready Prometheus configuration for this cluster into a directory.
    Config(ConfigArgs),
}

#[derive(clap::Args)]
pub struct ConfigArgs {
    /// The cluster to monitor (an admin's kubeconfig: the ServiceAccount and its role are made with it).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Where prometheus.yml, the token, the CA, rules/ and dashboards/ go.
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value = "15s")]
    scrape_interval: String,
    /// An Alertmanager to send alerts to (`http://host:9093`).
    #[arg(long)]
    alertmanager: Option<String>,
    /// A push gateway to scrape, its labels kept (`http://host:9091`).
    #[arg(long)]
    pushgateway: Option<String>,
}

impl Monitoring {
    pub async fn run(self) -> Result<()> {
        match self {
            Monitoring::Config(args) => config(args).await,
        }
    }
}

/// `host:port` of a URL, and whether it is https.
fn host_port(url: &str) -> Result<(String, bool)> {
    let (scheme, rest) = url.split_once("://").with_context(|| format!("{url:?} is not a URL"))?;
    let authority = rest.split('/').next().unwrap_or_default().to_string();
    anyhow::ensure!(!authority.is_empty(), "{url:?} names no host");
    Ok((authority, scheme == "https"))
}

async fn config(args: ConfigArgs) -> Result<()> {
    let client = crate::sim::client(&args.kubeconfig).await?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)?;
    let context = kubeconfig.current_context.clone().unwrap_or_default();
    let cluster_name = kubeconfig.contexts.iter().find(|c| c.name == context).and_then(|c| Some(c.context.as_ref()?.cluster.clone())).unwrap_or_default();
    let cluster = kubeconfig.clusters.iter().find(|c| c.name == cluster_name).and_then(|c| c.cluster.clone()).context("the kubeconfig's current context names no cluster")?;
    let server = cluster.server.clone().context("the kubeconfig names no server")?;
    let (api_address, https) = host_port(&server)?;
    anyhow::ensure!(https, "the API server must be reached over https");
    let ca_pem = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
        (Some(data), _) => String::from_utf8(base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data)?)?,
        (None, Some(file)) => std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?,
        (None, None) => bail!("the kubeconfig carries no CA for {server}"),
    };

    let token = account(&client).await?;
    let dir = &args.dir;
    for sub in ["rules", "dashboards"] {
        std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let dir = std::fs::canonicalize(dir)?;
    write_private(&dir.join("token"), &token)?;
    std::fs::write(dir.join("ca.crt"), ca_pem)?;
    std::fs::write(dir.join("rules/kubernetes.yml"), RULES)?;
    for (name, dashboard) in DASHBOARDS {
        std::fs::write(dir.join("dashboards").join(name), dashboard)?;
    }
    let yaml = prometheus_yml(&dir, &api_address, &args)?;
    std::fs::write(dir.join("prometheus.yml"), yaml)?;
    println!("wrote {}: run prometheus --config.file={}", dir.display(), dir.join("prometheus.yml").display());
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(path).with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    Ok(())
}

/// The ServiceAccount, its role and binding (applied, so running this again
/// is harmless), and a token that does not expire: a token Secret, as
/// long-running scrapers keep theirs.
async fn account(client: &kube::Client) -> Result<String> {
    let apply = PatchParams::apply(MANAGER).force();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    accounts.patch(ACCOUNT, &apply, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT}}))).await.context("the ServiceAccount")?;
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "skiff:monitoring"},
        "rules": [
            {"apiGroups": [""], "resources": ["nodes", "nodes/metrics", "nodes/proxy", "pods", "services", "endpoints"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
            {"nonResourceURLs": ["/metrics", "/metrics/cluster-state", "/metrics/targets"], "verbs": ["get"]},
        ],
    });
    Api::<ClusterRole>::all(client.clone()).patch("skiff:monitoring", &apply, &Patch::Apply(role)).await.context("the ClusterRole")?;
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "skiff:monitoring"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "skiff:monitoring"},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}],
    });
    Api::<ClusterRoleBinding>::all(client.clone()).patch("skiff:monitoring", &apply, &Patch::Apply(binding)).await.context("the ClusterRoleBinding")?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let name = format!("{ACCOUNT}-token");
    if secrets.get_opt(&name).await?.is_none() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": name, "annotations": {"kubernetes.io/service-account.name": ACCOUNT}}});
        secrets.create(&Default::default(), &serde_json::from_value(secret)?).await.context("the token Secret")?;
    }
    // Filled in as it is made (upstream's token controller does it just after).
    for _ in 0..100 {
        if let Some(token) = secrets.get(&format!("{ACCOUNT}-token")).await?.data.and_then(|d| d.get("token").cloned()) {
            return Ok(String::from_utf8(token.0)?);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the token Secret {NAMESPACE}/{ACCOUNT}-token was never filled in (is the controller manager running?)")
}

fn prometheus_yml(dir: &Path, api: &str, args: &ConfigArgs) -> Result<String> {
    let token = dir.join("token").display().to_string();
    let ca = dir.join("ca.crt").display().to_string();
    // `type` is spelled out: Prometheus 2.42 defaults it for scrapes but
    // sends a bare token from http_sd_configs without it.
    let auth = json!({"authorization": {"type": "Bearer", "credentials_file": token}, "tls_config": {"ca_file": ca}});
    let secured = |mut job: serde_json::Value| {
        job["scheme"] = json!("https");
        job["authorization"] = auth["authorization"].clone();
        job["tls_config"] = auth["tls_config"].clone();
        job
    };
    let discovery = |role: &str| json!([{"url": format!("https://{api}/metrics/targets?role={role}"), "authorization": auth["authorization"], "tls_config": auth["tls_config"], "refresh_interval": "30s"}]);
    // A node's metrics through the API server's proxy, labelled as the
    // kubelet's own path would be, and as the job given.
    let node_page = |job: &str, path: &str, named: &str| {
        secured(json!({
            "job_name": job,
            "http_sd_configs": discovery("node"),
            "relabel_configs": [
                {"source_labels": ["__meta_kubernetes_node_name"], "target_label": "__metrics_path__", "replacement": format!("/api/v1/nodes/${{1}}/proxy{path}")},
                {"target_label": "__address__", "replacement": api},
                {"source_labels": ["__meta_kubernetes_node_name"], "target_label": "node"},
                {"source_labels": ["__meta_kubernetes_node_name"], "target_label": "instance"},
                {"target_label": "metrics_path", "replacement": path},
                {"target_label": "job", "replacement": named},
            ],
        }))
    };
    let kubelet = |job: &str, path: &str| node_page(job, path, "kubelet");
    // A component's series on a page it shares with others: its own, its
    // process's, and its own lease's leader status.
    let keep = |series: &str, lease: &str| json!([{"source_labels": ["__name__", "name"], "regex": format!("({series}|process_.*);.*|leader_election_master_status;{lease}"), "action": "keep"}]);
    // Components that run inside the server: its page, their series.
    let component = |job: &str, series: &str| {
        secured(json!({
            "job_name": job,
            "static_configs": [{"targets": [api]}],
            "metric_relabel_configs": keep(series, job),
        }))
    };
    // The agent's service proxy and DNS, on its page.
    let node_component = |job: &str, series: &str| {
        let mut scrape = node_page(job, "/metrics", job);
        scrape["metric_relabel_configs"] = keep(series, job);
        scrape
    };
    let mut kubelet_own = kubelet("kubelet", "/metrics");
    kubelet_own["metric_relabel_configs"] = json!([{"source_labels": ["__name__"], "regex": "kubeproxy_.*|coredns_.*", "action": "drop"}]);
    let mut jobs = vec![
        secured(json!({"job_name": "apiserver", "static_configs": [{"targets": [api]}]})),
        secured(json!({"job_name": "kube-state-metrics", "honor_labels": true, "metrics_path": "/metrics/cluster-state", "static_configs": [{"targets": [api]}]})),
        kubelet_own,
        kubelet("kubelet-cadvisor", "/metrics/cadvisor"),
        kubelet("kubelet-resource", "/metrics/resource"),
        node_component("kube-proxy", "kubeproxy_.*"),
        node_component("coredns", "coredns_.*"),
        component("kube-scheduler", "scheduler_.*"),
        component("kube-controller-manager", "controller_.*|workqueue_.*"),
        // Pods that ask to be scraped, as the usual kubernetes-pods job.
        json!({
            "job_name": "kubernetes-pods",
            "http_sd_configs": discovery("pod"),
            "relabel_configs": [
                {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep", "regex": "true"},
                {"source_labels": ["__meta_kubernetes_pod_phase"], "action": "keep", "regex": "Running"},
                {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scheme"], "action": "replace", "regex": "(https?)", "target_label": "__scheme__"},
                {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"], "action": "replace", "regex": "(.+)", "target_label": "__metrics_path__"},
                {"source_labels": ["__meta_kubernetes_pod_ip", "__meta_kubernetes_pod_annotation_prometheus_io_port"], "action": "replace", "regex": "(.+);(\\d+)", "replacement": "$1:$2", "target_label": "__address__"},
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            ],
        }),
    ];
    if let Some(url) = &args.pushgateway {
        let (target, https) = host_port(url)?;
        jobs.push(json!({"job_name": "pushgateway", "honor_labels": true, "scheme": if https { "https" } else { "http" }, "static_configs": [{"targets": [target]}]}));
    }
    let mut config = json!({
        "global": {"scrape_interval": args.scrape_interval, "evaluation_interval": args.scrape_interval},
        "rule_files": [dir.join("rules/*.yml").display().to_string()],
        "scrape_configs": jobs,
    });
    if let Some(url) = &args.alertmanager {
        let (target, https) = host_port(url)?;
        config["alerting"] = json!({"alertmanagers": [{"scheme": if https { "https" } else { "http" }, "static_configs": [{"targets": [target]}]}]});
    }
    Ok(serde_yaml::to_string(&config)?)
}

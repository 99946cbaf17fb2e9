//! Workload controllers and the garbage collector, end to end with stock
//! kubectl on simulated nodes (`skiff sim`).

mod common;

use common::Cluster;

fn count(c: &Cluster, args: &[&str], needle: &str) -> usize {
    c.ok(args).lines().filter(|l| l.contains(needle)).count()
}

/// A Deployment scaled 1 → 50 → 0, rolled to a new image with `rollout
/// status`, back with `rollout undo`, old ReplicaSets kept as history.
/// [sig-apps] Deployment RollingUpdateDeployment should delete old pods and create new ones [Conformance]
/// [sig-apps] Deployment deployment should delete old replica sets [Conformance]
#[test]
fn deployments_scale_roll_and_undo() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "5"]);
    c.ok(&["create", "deployment", "web", "--image=nginx:1"]);
    c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    c.ok(&["scale", "deploy/web", "--replicas=50"]);
    let out = c.ok(&["rollout", "status", "deploy/web", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(count(&c, &["get", "pods", "--no-headers"], "Running"), 50);
    let ready = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}/{.status.availableReplicas}/{.status.updatedReplicas}"]);
    assert_eq!(ready, "50/50/50");

    c.ok(&["scale", "deploy/web", "--replicas=4"]);
    c.ok(&["set", "image", "deploy/web", "nginx=nginx:2"]);
    let out = c.ok(&["rollout", "status", "deploy/web", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let images = c.ok(&["get", "pods", "-o", "jsonpath={range .items[*]}{.spec.containers[0].image}{\"\\n\"}{end}"]);
    assert!(images.lines().all(|i| i == "nginx:2") && images.lines().count() == 4, "{images}");
    let history = c.ok(&["rollout", "history", "deploy/web"]);
    assert!(history.contains("1 ") && history.contains("2 "), "{history}");
    let rs = c.ok(&["get", "rs", "--no-headers"]);
    assert_eq!(rs.lines().count(), 2, "the old ReplicaSet stays, scaled to 0: {rs}");

    c.ok(&["rollout", "undo", "deploy/web"]);
    c.ok(&["rollout", "status", "deploy/web", "--timeout=120s"]);
    let image = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert_eq!(image, "nginx:1");
    let revision = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"]);
    assert_eq!(revision, "3", "undo makes the old template the newest revision");
    let conditions = c.ok(&["get", "deploy", "web", "-o", "jsonpath={range .status.conditions[*]}{.type}={.reason} {end}"]);
    assert_eq!(conditions.trim(), "Available=MinimumReplicasAvailable Progressing=NewReplicaSetAvailable");

    c.ok(&["scale", "deploy/web", "--replicas=0"]);
    c.wait_for(&["get", "pods", "--no-headers"], "every pod to go", |out| out.trim().is_empty());
}

/// Recreate stops every old pod before starting new ones.
/// [sig-apps] Deployment RecreateDeployment should delete old pods and create new ones [Conformance]
#[test]
fn recreate_deployments_replace_all_pods_at_once() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "2"]);
    c.ok(&["create", "deployment", "db", "--image=postgres:15", "--replicas=3"]);
    c.ok(&["patch", "deploy", "db", "-p", r#"{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}"#]);
    c.ok(&["rollout", "status", "deploy/db", "--timeout=60s"]);
    c.ok(&["set", "image", "deploy/db", "postgres=postgres:16"]);
    c.ok(&["rollout", "status", "deploy/db", "--timeout=60s"]);
    let images = c.ok(&["get", "pods", "-o", "jsonpath={range .items[*]}{.spec.containers[0].image} {end}"]);
    assert_eq!(images.trim(), "postgres:16 postgres:16 postgres:16");
}

/// The garbage collector with each propagation policy.
/// [sig-api-machinery] Garbage collector should delete RS created by deployment when not orphaning [Conformance]
/// [sig-api-machinery] Garbage collector should orphan RS created by deployment when deleteOptions.PropagationPolicy is Orphan [Conformance]
/// [sig-api-machinery] Garbage collector should keep the rc around until all its pods are deleted if the deleteOptions says so [Conformance]
#[test]
fn deletion_cascades_background_foreground_and_orphan() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "2"]);
    for name in ["bg", "fg", "orphan"] {
        c.ok(&["create", "deployment", name, "--image=nginx", "--replicas=2"]);
        c.ok(&["rollout", "status", &format!("deploy/{name}"), "--timeout=60s"]);
    }
    c.ok(&["delete", "deploy", "bg"]);
    c.wait_for(&["get", "rs,pods", "--no-headers"], "bg's ReplicaSet and pods to go", |out| !out.contains("bg-"));

    // Foreground: the owner stays, marked, until its dependents are gone.
    c.ok(&["delete", "deploy", "fg", "--cascade=foreground", "--wait=false"]);
    let finalizers = c.ok(&["get", "deploy", "fg", "-o", "jsonpath={.metadata.finalizers}"]);
    assert!(finalizers.contains("foregroundDeletion"), "{finalizers}");
    c.wait_for(&["get", "deploy,rs,pods", "--no-headers"], "fg and its dependents to go", |out| !out.contains("fg"));

    c.ok(&["delete", "deploy", "orphan", "--cascade=orphan"]);
    c.wait_for(&["get", "rs", "-o", "jsonpath={.items[*].metadata.ownerReferences}"], "the orphaned ReplicaSet to lose its owner", |out| !out.contains("Deployment"));
    assert_eq!(count(&c, &["get", "pods", "--no-headers"], "orphan-"), 2, "orphaned pods keep running");
    assert!(c.fails(&["get", "deploy", "orphan"], None).contains("NotFound"));
}

/// Node failure: a simulated node stops its heartbeats, goes Ready
/// Unknown with upstream's taints, and its pods are evicted (after the
/// default toleration) and replaced on the other nodes; once it beats
/// again it is Ready and untainted. Upstream's flags shorten the timings.
#[test]
fn a_silent_node_is_tainted_and_its_pods_replaced() {
    let c = Cluster::start_with(&["--node-monitor-grace-period", "5s", "--default-not-ready-toleration-seconds", "5", "--default-unreachable-toleration-seconds", "5"]);
    let _sim = c.sim(&["--nodes", "3"]);
    c.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=6"]);
    c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    // The node that fails is one holding pods (which one depends on when
    // the scheduler saw each node register).
    let victim = c.ok(&["get", "pods", "-o", "jsonpath={.items[0].spec.nodeName}"]);
    assert!(victim.starts_with("sim-"), "{victim}");
    let on_victim = format!("spec.nodeName={victim}");

    c.ok(&["annotate", "node", &victim, "sim.skiff.io/heartbeat=stopped"]);
    let ready = c.wait_for(&["get", "node", &victim, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"], "the node to go Unknown", |s| s == "Unknown");
    assert_eq!(ready, "Unknown");
    let taints = c.wait_for(&["get", "node", &victim, "-o", "jsonpath={range .spec.taints[*]}{.key}:{.effect} {end}"], "the unreachable taints", |t| t.contains("NoExecute"));
    assert_eq!(taints.trim(), "node.kubernetes.io/unreachable:NoSchedule node.kubernetes.io/unreachable:NoExecute");
    c.wait_for(&["get", "pods", "--field-selector", &on_victim, "--no-headers"], "the node's pods to be evicted", |out| out.trim().is_empty());
    c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert_eq!(c.ok(&["get", "pods", "--no-headers"]).lines().filter(|l| l.contains("Running")).count(), 6, "replaced on the other nodes");

    c.ok(&["annotate", "node", &victim, "sim.skiff.io/heartbeat-"]);
    c.wait_for(&["get", "node", &victim, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}/{.spec.taints}"], "the node to recover", |s| s == "True/");
}

/// Every namespace gets the `default` ServiceAccount and the
/// `kube-root-ca.crt` ConfigMap (put back when deleted); every node gets
/// its own pod CIDR from the cluster CIDR.
#[test]
fn namespaces_get_their_defaults_and_nodes_their_pod_cidrs() {
    let c = Cluster::start_with(&["--cluster-cidr", "10.42.0.0/16"]);
    let _sim = c.sim(&["--nodes", "3"]);
    c.ok(&["create", "namespace", "team"]);
    c.wait_for(&["get", "sa,cm", "-n", "team", "-o", "name"], "the namespace's defaults", |o| {
        o.contains("serviceaccount/default") && o.contains("configmap/kube-root-ca.crt")
    });
    let ca = c.ok(&["get", "cm", "kube-root-ca.crt", "-n", "team", "-o", "jsonpath={.data.ca\\.crt}"]);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    c.ok(&["delete", "sa", "default", "-n", "team"]);
    c.wait_for(&["get", "sa", "default", "-n", "team", "-o", "name"], "default to come back", |o| o.trim() == "serviceaccount/default");

    let cidrs = c.wait_for(&["get", "nodes", "-o", "jsonpath={range .items[*]}{.spec.podCIDR} {end}"], "pod CIDRs", |o| o.split_whitespace().count() == 3);
    let mut cidrs: Vec<&str> = cidrs.split_whitespace().collect();
    cidrs.sort();
    assert_eq!(cidrs, ["10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24"]);
}

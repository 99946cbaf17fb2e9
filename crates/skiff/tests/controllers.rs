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
    c.wait_for(&["get", "rs,pods", "--no-headers"], "bg's ReplicaSet and pods to go", |out| !out.contains("/bg-"));

    // Foreground: the owner stays, marked, until its dependents are gone.
    c.ok(&["delete", "deploy", "fg", "--cascade=foreground", "--wait=false"]);
    let finalizers = c.ok(&["get", "deploy", "fg", "-o", "jsonpath={.metadata.finalizers}"]);
    assert!(finalizers.contains("foregroundDeletion"), "{finalizers}");
    c.wait_for(&["get", "deploy,rs,pods", "--no-headers"], "fg and its dependents to go", |out| !out.contains("/fg"));

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

    // Pods get addresses from their node's CIDR.
    c.ok(&["run", "addressed", "--image=nginx"]);
    let placed = c.wait_for(&["get", "pod", "addressed", "-o", "jsonpath={.spec.nodeName} {.status.podIP}"], "the pod's IP", |o| o.split_whitespace().count() == 2);
    let (node, ip) = placed.split_once(' ').unwrap();
    let cidr = c.ok(&["get", "node", node, "-o", "jsonpath={.spec.podCIDR}"]);
    let prefix = cidr.trim_end_matches("0/24");
    assert!(ip.starts_with(prefix), "{ip} is in {cidr}");
}

/// A Job of 20 completions, 5 at a time, runs to Complete; an Indexed Job
/// runs each index once, with its hostname and JOB_COMPLETION_INDEX.
/// [sig-apps] Job should manage the lifecycle of a job [Conformance]
/// [sig-apps] Job should create pods for an Indexed job with completion indexes and specified hostname [Conformance]
#[test]
fn jobs_run_to_completion_in_parallel_and_by_index() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "3"]);
    let job = |name: &str, extra: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n{extra}\n  template:\n    metadata: {{annotations: {{sim.skiff.io/succeed-after: 300ms}}}}\n    spec:\n      restartPolicy: Never\n      containers: [{{name: work, image: busybox}}]\n"
        )
    };
    c.ok_stdin(&["apply", "-f", "-"], Some(&job("batch", "  completions: 20\n  parallelism: 5")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&job("indexed", "  completions: 3\n  parallelism: 3\n  completionMode: Indexed")));
    c.ok(&["wait", "--for=condition=complete", "job/batch", "job/indexed", "--timeout=90s"]);
    let status = c.ok(&["get", "job", "batch", "-o", "jsonpath={.status.succeeded}/{.status.failed}/{.status.active}/{.status.completionTime}"]);
    assert!(status.starts_with("20//") && status.len() > 6, "{status}");
    let row = c.ok(&["get", "job", "batch", "--no-headers"]);
    assert!(row.contains("Complete") && row.contains("20/20"), "{row}");
    let conditions = c.ok(&["get", "job", "batch", "-o", "jsonpath={range .status.conditions[*]}{.type}={.reason} {end}"]);
    assert_eq!(conditions.trim(), "SuccessCriteriaMet=CompletionsReached Complete=CompletionsReached");
    let finalizers = c.ok(&["get", "pods", "-l", "job-name=batch", "-o", "jsonpath={.items[*].metadata.finalizers}"]);
    assert!(finalizers.trim().is_empty(), "counted pods lose the tracking finalizer: {finalizers}");

    assert_eq!(c.ok(&["get", "job", "indexed", "-o", "jsonpath={.status.completedIndexes}"]), "0-2");
    let pods = c.ok(&["get", "pods", "-l", "job-name=indexed", "-o", "jsonpath={range .items[*]}{.metadata.annotations.batch\\.kubernetes\\.io/job-completion-index}:{.spec.hostname}:{.spec.containers[0].env[0].name} {end}"]);
    let mut pods: Vec<&str> = pods.split_whitespace().collect();
    pods.sort();
    assert_eq!(pods, ["0:indexed-0:JOB_COMPLETION_INDEX", "1:indexed-1:JOB_COMPLETION_INDEX", "2:indexed-2:JOB_COMPLETION_INDEX"]);
}

/// Failing pods are replaced after upstream's backoff until backoffLimit;
/// a pod failure policy fails the Job at once; activeDeadlineSeconds ends
/// a Job that runs too long; suspend stops its pods; a finished Job with
/// ttlSecondsAfterFinished is deleted.
/// [sig-apps] Job should delete a job [Conformance]
#[test]
fn jobs_fail_by_backoff_limit_policy_and_deadline() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "2"]);
    let job = |name: &str, spec: &str, annotations: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n{spec}\n  template:\n    metadata: {{annotations: {{{annotations}}}}}\n    spec:\n      restartPolicy: Never\n      containers: [{{name: work, image: busybox}}]\n"
        )
    };
    c.ok_stdin(&["apply", "-f", "-"], Some(&job("flaky", "  backoffLimit: 1", "sim.skiff.io/fail-after: 100ms")));
    let policy = "  backoffLimit: 6\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes: {containerName: work, operator: In, values: [42]}";
    c.ok_stdin(&["apply", "-f", "-"], Some(&job("fatal", policy, "sim.skiff.io/fail-after: 100ms, sim.skiff.io/exit-code: '42'")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&job("slow", "  activeDeadlineSeconds: 2", "")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&job("brief", "  ttlSecondsAfterFinished: 1", "sim.skiff.io/succeed-after: 100ms")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&job("paused", "  suspend: true", "")));

    let failed = r#"jsonpath={.status.conditions[?(@.type=="Failed")].reason}|{.status.conditions[?(@.type=="Failed")].message}|{.status.failed}"#;
    let out = c.wait_for(&["get", "job", "fatal", "-o", failed], "the policy to fail the job", |o| o.starts_with("PodFailurePolicy"));
    assert!(out.contains("Container work for pod default/fatal-") && out.ends_with("failed with exit code 42 matching FailJob rule at index 0|1"), "{out}");
    let out = c.wait_for(&["get", "job", "slow", "-o", failed], "the deadline", |o| !o.starts_with('|'));
    assert_eq!(out, "DeadlineExceeded|Job was active longer than specified deadline|1", "the killed pod counts as failed, as upstream");
    c.wait_for(&["get", "jobs", "-o", "name"], "the finished job's TTL to delete it", |o| !o.contains("job.batch/brief"));
    assert_eq!(c.ok(&["get", "pods", "-l", "job-name=paused", "-o", "name"]), "", "a suspended job starts nothing");
    // Deleted in the background, a Job's running pods go too: their
    // tracking finalizer is released once the Job is gone.
    c.ok_stdin(&["apply", "-f", "-"], Some(&job("dropped", "  parallelism: 2\n  completions: 2", "")));
    c.wait_for(&["get", "job", "dropped", "-o", "jsonpath={.status.active}"], "the dropped job's pods", |o| o == "2");
    c.ok(&["delete", "job", "dropped", "--cascade=background"]);
    c.wait_for(&["get", "pods", "-l", "job-name=dropped", "-o", "name"], "the dropped job's pods to go", |o| o.trim().is_empty());
    let suspended = c.ok(&["get", "job", "paused", "-o", "jsonpath={.status.conditions[0].type}={.status.conditions[0].reason}"]);
    assert_eq!(suspended, "Suspended=JobSuspended");
    c.ok(&["patch", "job", "paused", "-p", r#"{"spec":{"suspend":false}}"#]);
    c.wait_for(&["get", "job", "paused", "-o", "jsonpath={.status.active}"], "the resumed job's pod", |o| o == "1");

    // Two failures, the second after a 10 s backoff.
    let out = c.wait_for(&["get", "job", "flaky", "-o", failed], "the backoff limit", |o| !o.starts_with('|'));
    assert_eq!(out, "BackoffLimitExceeded|Job has reached the specified backoff limit|2");
    let starts = c.ok(&["get", "pods", "-l", "job-name=flaky", "-o", "jsonpath={range .items[*]}{.metadata.creationTimestamp} {end}"]);
    let mut starts: Vec<chrono::DateTime<chrono::Utc>> = starts.split_whitespace().map(|t| t.parse().unwrap()).collect();
    starts.sort();
    assert_eq!(starts.len(), 2);
    assert!(starts[1] - starts[0] >= chrono::Duration::seconds(9), "the replacement waits out the backoff: {starts:?}");
}

/// A CronJob fires at the minute: its Job is named after the scheduled
/// minute, it completes, and the CronJob records the times; a suspended
/// one starts nothing.
/// [sig-apps] CronJob should schedule multiple jobs concurrently [Conformance]
/// [sig-apps] CronJob should not schedule jobs when suspended [Slow] [Conformance]
#[test]
fn cronjobs_fire_each_minute() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "1"]);
    let cron = |name: &str, suspend: bool| {
        format!(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: {name}}}\nspec:\n  schedule: '*/1 * * * *'\n  suspend: {suspend}\n  jobTemplate:\n    spec:\n      template:\n        metadata: {{annotations: {{sim.skiff.io/succeed-after: 200ms}}}}\n        spec:\n          restartPolicy: OnFailure\n          containers: [{{name: tick, image: busybox}}]\n"
        )
    };
    c.ok_stdin(&["apply", "-f", "-"], Some(&cron("tick", false)));
    c.ok_stdin(&["apply", "-f", "-"], Some(&cron("idle", true)));
    let times = c.wait_up_to(std::time::Duration::from_secs(90), &["get", "cronjob", "tick", "-o", "jsonpath={.status.lastScheduleTime}|{.status.lastSuccessfulTime}"], "a run to complete", |o| !o.ends_with('|'));
    let scheduled: chrono::DateTime<chrono::Utc> = times.split('|').next().unwrap().parse().unwrap();
    assert_eq!(scheduled.timestamp() % 60, 0, "runs at the minute: {times}");
    let jobs = c.ok(&["get", "jobs", "-o", "name"]);
    assert!(jobs.contains(&format!("job.batch/tick-{}", scheduled.timestamp() / 60)), "{jobs}");
    assert!(!jobs.contains("idle"), "{jobs}");
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=tick", "-o", "jsonpath={range .items[*]}{.reason} {end}"]);
    assert!(events.contains("SuccessfulCreate") && events.contains("SawCompletedJob"), "{events}");
}

/// A DaemonSet runs one pod on each node it admits (a tainted node only
/// with a toleration, a node selector narrowing), follows nodes that join,
/// and rolls to a new template one node at a time, with history and undo.
/// [sig-apps] Daemon set [Serial] should run and stop simple daemon [Conformance]
/// [sig-apps] Daemon set [Serial] should update pod when spec was updated and update strategy is RollingUpdate [Conformance]
/// [sig-apps] Daemon set [Serial] should rollback without unnecessary restarts [Conformance]
/// [sig-apps] Daemon set [Serial] should run and stop complex daemon [Conformance]
#[test]
fn daemonsets_run_on_every_admitted_node_and_roll() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "3"]);
    c.wait_for(&["get", "nodes", "-o", "name"], "three nodes", |o| o.lines().count() == 3);
    c.ok(&["taint", "node", "sim-2", "dedicated=db:NoSchedule"]);
    let ds = |image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: agent}}\nspec:\n  selector: {{matchLabels: {{app: agent}}}}\n  template:\n    metadata: {{labels: {{app: agent}}}}\n    spec:\n      containers: [{{name: agent, image: {image}}}]\n"
        )
    };
    c.ok_stdin(&["apply", "-f", "-"], Some(&ds("agent:1")));
    c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    let placed = |c: &Cluster| {
        let out = c.ok(&["get", "pods", "-l", "app=agent", "-o", "jsonpath={range .items[*]}{.spec.nodeName} {end}"]);
        let mut nodes: Vec<String> = out.split_whitespace().map(String::from).collect();
        nodes.sort();
        nodes
    };
    assert_eq!(placed(&c), ["sim-0", "sim-1"], "the tainted node is left out");
    let row = c.ok(&["get", "ds", "agent", "--no-headers"]);
    assert_eq!(row.split_whitespace().take(6).collect::<Vec<_>>(), ["agent", "2", "2", "2", "2", "2"], "{row}");

    let _late = c.sim(&["--nodes", "1", "--name-prefix", "late-"]);
    c.wait_for(&["get", "pods", "-l", "app=agent", "-o", "jsonpath={.items[*].spec.nodeName}"], "a pod on the node that joined", |o| o.contains("late-0"));

    c.ok(&["set", "image", "ds/agent", "agent=agent:2"]);
    let out = c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let images = c.ok(&["get", "pods", "-l", "app=agent", "-o", "jsonpath={range .items[*]}{.spec.containers[0].image} {end}"]);
    assert_eq!(images.trim(), "agent:2 agent:2 agent:2");
    let history = c.ok(&["rollout", "history", "ds/agent"]);
    assert!(history.contains("1 ") && history.contains("2 "), "{history}");
    c.ok(&["rollout", "undo", "ds/agent"]);
    c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    c.wait_for(&["get", "pods", "-l", "app=agent", "-o", "jsonpath={range .items[*]}{.spec.containers[0].image} {end}"], "the undo", |o| o.trim() == "agent:1 agent:1 agent:1");

    // A node selector that admits no node empties the set.
    c.ok(&["patch", "ds", "agent", "-p", r#"{"spec":{"template":{"spec":{"nodeSelector":{"disk":"ssd"}}}}}"#]);
    c.wait_for(&["get", "pods", "-l", "app=agent", "-o", "name"], "the pods to go", |o| o.trim().is_empty());
    c.ok(&["label", "node", "sim-1", "disk=ssd"]);
    c.wait_for(&["get", "pods", "-l", "app=agent", "-o", "jsonpath={.items[*].spec.nodeName}"], "a pod on the labelled node", |o| o == "sim-1");
}

/// `n` hostPath PersistentVolumes of 1Gi, as an administrator provisions
/// them, for the claims of a StatefulSet's template.
/// Volumes made by hand, for claims of no class (`storageClassName: ''`):
/// the simulated nodes run no storage driver.
fn provision_volumes(c: &Cluster, n: usize) {
    for i in 0..n {
        let pv = format!("apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: pv-{i}}}\nspec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  hostPath: {{path: /tmp/pv-{i}}}\n");
        c.ok_stdin(&["apply", "-f", "-"], Some(&pv));
    }
}

/// A StatefulSet starts its pods in ordinal order, each Ready before the
/// next, with stable names, hostnames and claims; scales down from the
/// highest ordinal; updates from the highest ordinal down to the
/// partition; and rolls back.
/// [sig-apps] StatefulSet Basic StatefulSet functionality [StatefulSetBasic] Scaling should happen in predictable order and halt if any stateful pod is unhealthy [Slow] [Conformance]
/// [sig-apps] StatefulSet Basic StatefulSet functionality [StatefulSetBasic] should perform canary updates and phased rolling updates of template modifications [Conformance]
/// [sig-apps] StatefulSet Basic StatefulSet functionality [StatefulSetBasic] should perform rolling updates and roll backs of template modifications [Conformance]
#[test]
fn statefulsets_start_in_order_and_update_by_partition() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "2"]);
    let mut watch = std::process::Command::new("kubectl")
        .args(["get", "pods", "-l", "app=db", "-w", "--no-headers", "-o", "custom-columns=NAME:.metadata.name,READY:.status.conditions[?(@.type==\"Ready\")].status"])
        .env("KUBECONFIG", c.kubeconfig())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    provision_volumes(&c, 3);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let sts = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  serviceName: db\n  replicas: 3\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec:\n      containers: [{name: db, image: 'db:1'}]\n  volumeClaimTemplates:\n  - metadata: {name: data}\n    spec: {accessModes: [ReadWriteOnce], storageClassName: '', resources: {requests: {storage: 1Gi}}}\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(sts));
    c.ok(&["rollout", "status", "sts/db", "--timeout=60s"]);
    watch.kill().unwrap();
    let seen = String::from_utf8(watch.wait_with_output().unwrap().stdout).unwrap();
    let first = |line: &str| seen.lines().position(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == line).unwrap_or_else(|| panic!("{line} not in {seen}"));
    let first_of = |name: &str| seen.lines().position(|l| l.starts_with(name)).unwrap();
    assert!(first_of("db-1") > first("db-0 True") && first_of("db-2") > first("db-1 True"), "each pod starts once the one before is Ready:\n{seen}");

    let pvcs = c.ok(&["get", "pvc", "-o", "name"]);
    assert_eq!(pvcs.lines().collect::<Vec<_>>(), ["persistentvolumeclaim/data-db-0", "persistentvolumeclaim/data-db-1", "persistentvolumeclaim/data-db-2"]);
    let identity = c.ok(&["get", "pod", "db-1", "-o", "jsonpath={.spec.hostname}.{.spec.subdomain} {.spec.volumes[?(@.name==\"data\")].persistentVolumeClaim.claimName} {.metadata.labels.apps\\.kubernetes\\.io/pod-index}"]);
    assert_eq!(identity, "db-1.db data-db-1 1");

    // Canary: only ordinals at or above the partition take the update.
    c.ok(&["patch", "sts", "db", "-p", r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":2}}}}"#]);
    c.ok(&["set", "image", "sts/db", "db=db:2"]);
    let images = r#"jsonpath={range .items[*]}{.metadata.name}={.spec.containers[0].image} {end}"#;
    c.wait_for(&["get", "pods", "-l", "app=db", "-o", images], "the canary", |o| o.trim() == "db-0=db:1 db-1=db:1 db-2=db:2");
    let out = c.ok(&["rollout", "status", "sts/db", "--timeout=60s"]);
    assert!(out.contains("partitioned roll out complete: 1 new pods"), "{out}");
    c.ok(&["patch", "sts", "db", "-p", r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#]);
    // kubectl reports any RollingUpdate set (partition defaults to 0) as partitioned.
    let out = c.ok(&["rollout", "status", "sts/db", "--timeout=60s"]);
    assert!(out.contains("partitioned roll out complete: 3 new pods"), "{out}");
    assert_eq!(c.ok(&["get", "pods", "-l", "app=db", "-o", images]).trim(), "db-0=db:2 db-1=db:2 db-2=db:2");
    let revisions = c.ok(&["get", "sts", "db", "-o", "jsonpath={.status.currentRevision}={.status.updateRevision}"]);
    let (current, update) = revisions.split_once('=').unwrap();
    assert_eq!(current, update);

    c.ok(&["rollout", "undo", "sts/db"]);
    c.ok(&["rollout", "status", "sts/db", "--timeout=60s"]);
    c.wait_for(&["get", "pods", "-l", "app=db", "-o", images], "the rollback", |o| o.trim() == "db-0=db:1 db-1=db:1 db-2=db:1");

    c.ok(&["scale", "sts/db", "--replicas=1"]);
    c.wait_for(&["get", "pods", "-l", "app=db", "-o", "name"], "the scale down", |o| o.trim() == "pod/db-0");
    assert_eq!(c.ok(&["get", "pvc", "-o", "name"]).lines().count(), 3, "claims are retained by default");
}

/// Parallel pod management starts every pod at once; the claim retention
/// policy deletes claims with the pods scaled away and with the set.
#[test]
fn statefulsets_in_parallel_delete_claims_as_their_policy_says() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "2"]);
    provision_volumes(&c, 3);
    let sts = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: cache}\nspec:\n  serviceName: cache\n  replicas: 3\n  podManagementPolicy: Parallel\n  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete, whenScaled: Delete}\n  selector: {matchLabels: {app: cache}}\n  template:\n    metadata: {labels: {app: cache}}\n    spec:\n      containers: [{name: cache, image: 'cache:1'}]\n  volumeClaimTemplates:\n  - metadata: {name: data}\n    spec: {accessModes: [ReadWriteOnce], storageClassName: '', resources: {requests: {storage: 1Gi}}}\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(sts));
    c.ok(&["rollout", "status", "sts/cache", "--timeout=60s"]);
    assert_eq!(c.ok(&["get", "pvc", "-o", "name"]).lines().count(), 3);
    c.ok(&["scale", "sts/cache", "--replicas=1"]);
    c.wait_for(&["get", "pvc", "-o", "name"], "the scaled-away claims to go", |o| o.trim() == "persistentvolumeclaim/data-cache-0");
    c.ok(&["delete", "sts", "cache"]);
    c.wait_for(&["get", "pvc,pods", "-o", "name"], "the set's claim to go with it", |o| o.trim().is_empty());
    // Their volumes are kept, released.
    c.wait_for(&["get", "pv", "-o", "jsonpath={.items[*].status.phase}"], "the volumes to be released", |o| o == "Released Released Released");
}

/// The volume binder: a claim binds to the smallest volume that fits it
/// (both Bound, the claim with the volume's capacity), or to the volume it
/// names; a claim nothing fits stays Pending until a volume comes; a
/// volume whose claim is deleted is Released (or Failed, when nothing can
/// reclaim it), and a claim whose volume is gone is Lost.
#[test]
fn persistent_volumes_bind_to_claims_through_their_lifecycle() {
    let c = Cluster::start();
    let volume = |name: &str, size: &str| format!("apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  capacity: {{storage: {size}}}\n  accessModes: [ReadWriteOnce, ReadOnlyMany]\n  persistentVolumeReclaimPolicy: Retain\n  hostPath: {{path: /tmp/{name}}}\n");
    // `storageClassName: ""`: the volumes made by hand, not the default class's.
    let claim = |name: &str, size: &str, extra: &str| format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: \"\"\n  resources: {{requests: {{storage: {size}}}}}\n{extra}");
    for (name, size) in [("small", "1Gi"), ("large", "10Gi"), ("named", "5Gi")] {
        c.ok_stdin(&["apply", "-f", "-"], Some(&volume(name, size)));
    }
    c.wait_for(&["get", "pv", "-o", "jsonpath={.items[*].status.phase}"], "the volumes to be available", |o| o == "Available Available Available");
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("data", "500Mi", "")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("chosen", "1Gi", "  volumeName: named\n")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("huge", "50Gi", "")));
    let row = "jsonpath={.status.phase} {.spec.volumeName} {.status.capacity.storage}";
    c.wait_for(&["get", "pvc", "data", "-o", row], "the claim to bind", |o| o == "Bound small 1Gi");
    c.wait_for(&["get", "pvc", "chosen", "-o", row], "the claim to bind", |o| o == "Bound named 5Gi");
    let reference = c.ok(&["get", "pv", "small", "-o", "jsonpath={.status.phase} {.spec.claimRef.namespace}/{.spec.claimRef.name}"]);
    assert_eq!(reference, "Bound default/data");
    let columns = c.ok(&["get", "pvc", "data", "--no-headers"]);
    assert_eq!(columns.split_whitespace().take(5).collect::<Vec<_>>(), ["data", "Bound", "small", "1Gi", "RWO,ROX"], "{columns}");
    c.wait_for(&["get", "pvc", "huge", "-o", "jsonpath={.status.phase}"], "the claim to wait", |o| o == "Pending");
    c.ok_stdin(&["apply", "-f", "-"], Some(&volume("bigger", "100Gi")));
    c.wait_for(&["get", "pvc", "huge", "-o", row], "the new volume to bind", |o| o == "Bound bigger 100Gi");

    c.ok(&["delete", "pvc", "data"]);
    c.wait_for(&["get", "pv", "small", "-o", "jsonpath={.status.phase}"], "the volume to be released", |o| o == "Released");
    // A Bound volume outlives its deletion (pv-protection), its claim still
    // Bound; once an admin takes the finalizer off, it goes and the claim is Lost.
    c.ok(&["delete", "pv", "named", "--wait=false"]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(c.ok(&["get", "pvc", "chosen", "-o", "jsonpath={.status.phase}"]), "Bound");
    c.ok(&["patch", "pv", "named", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    c.wait_for(&["get", "pvc", "chosen", "-o", "jsonpath={.status.phase}"], "the claim to be lost", |o| o == "Lost");

    // Nothing reclaims a Recycle volume (deprecated upstream) or a Delete
    // volume no provisioner made: released, each is Failed, saying why.
    for (name, policy) in [("recycled", "Recycle"), ("deleted", "Delete")] {
        let pv = volume(name, "1Gi").replace("persistentVolumeReclaimPolicy: Retain", &format!("persistentVolumeReclaimPolicy: {policy}"));
        c.ok_stdin(&["apply", "-f", "-"], Some(&pv));
        c.ok_stdin(&["apply", "-f", "-"], Some(&claim(name, "1Gi", &format!("  volumeName: {name}\n"))));
        c.wait_for(&["get", "pvc", name, "-o", "jsonpath={.status.phase}"], "the claim to bind", |o| o == "Bound");
        c.ok(&["delete", "pvc", name]);
        c.wait_for(&["get", "pv", name, "-o", "jsonpath={.status.phase}"], "the volume to fail", |o| o == "Failed");
    }
    assert!(c.ok(&["get", "pv", "recycled", "-o", "jsonpath={.status.message}"]).starts_with("Recycle is deprecated and not supported"));
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=deleted", "-o", "jsonpath={.items[*].reason}: {.items[*].message}"]);
    assert_eq!(events, r#"VolumeFailedDelete: error getting deleter volume plugin for volume "deleted": no deletable volume plugin matched"#);
}

/// Services get Endpoints and EndpointSlices listing the ready pods they
/// select, with named target ports resolved per pod; pods that stop
/// matching leave; a Service without a selector keeps its own Endpoints;
/// deleting the Service removes both.
/// [sig-network] Services should serve a basic endpoint from pods [Conformance]
/// [sig-network] Services should serve multiport endpoints from pods [Conformance]
#[test]
fn services_get_endpoints_and_slices_of_their_pods() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "2"]);
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: nginx, ports: [{name: http, containerPort: 8080}, {name: metrics, containerPort: 9090}]}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web, labels: {tier: front}}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}, {name: metrics, port: 9000, targetPort: 9090}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: external}\nspec:\n  ports: [{port: 5432}]\n---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: external}\nsubsets: [{addresses: [{ip: 192.0.2.10}], ports: [{port: 5432}]}]\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(manifest));
    c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let ips = c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.podIP}"]);
    let mut ips: Vec<&str> = ips.split_whitespace().collect();
    ips.sort();
    let addresses = r#"jsonpath={range .subsets[*].addresses[*]}{.ip} {end}|{range .subsets[*].ports[*]}{.name}={.port} {end}"#;
    let out = c.wait_for(&["get", "endpoints", "web", "-o", addresses], "three addresses", |o| o.split('|').next().unwrap().split_whitespace().count() == 3);
    let (got, ports) = out.split_once('|').unwrap();
    let mut got: Vec<&str> = got.split_whitespace().collect();
    got.sort();
    assert_eq!(got, ips);
    let mut ports: Vec<&str> = ports.split_whitespace().collect();
    ports.sort();
    assert_eq!(ports, ["http=8080", "metrics=9090"]);

    let slices = c.ok(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "json"]);
    let slices: serde_json::Value = serde_json::from_str(&slices).unwrap();
    let items = slices["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{slices}");
    let slice = &items[0];
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"], "endpointslice-controller.k8s.io");
    assert_eq!(slice["metadata"]["labels"]["tier"], "front");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["endpoints"].as_array().unwrap().len(), 3);
    assert!(slice["endpoints"].as_array().unwrap().iter().all(|e| e["conditions"] == serde_json::json!({"ready": true, "serving": true, "terminating": false}) && e["targetRef"]["kind"] == "Pod"));

    // A pod relabelled out of the selector leaves; its replacement joins.
    let pod = c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"]);
    let ip = c.ok(&["get", "pod", &pod, "-o", "jsonpath={.status.podIP}"]);
    c.ok(&["label", "pod", &pod, "app=debug", "--overwrite"]);
    c.wait_for(&["get", "endpoints", "web", "-o", addresses], "the relabelled pod to leave", |o| !o.contains(&format!("{ip} ")) && o.split('|').next().unwrap().split_whitespace().count() == 3);
    c.ok(&["scale", "deploy/web", "--replicas=1"]);
    c.wait_for(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "jsonpath={.items[*].endpoints[*].addresses[0]}"], "the slice to shrink", |o| o.split_whitespace().count() == 1);

    assert_eq!(c.ok(&["get", "endpoints", "external", "-o", "jsonpath={.subsets[0].addresses[0].ip}"]), "192.0.2.10", "a Service without a selector keeps its own Endpoints");
    c.ok(&["delete", "service", "web"]);
    c.wait_for(&["get", "endpoints,endpointslices", "-o", "name"], "web's endpoints to go", |o| !o.contains("/web"));
}

/// ReplicaSets and ReplicationControllers adopt a matching orphan instead
/// of starting another pod, release a pod relabelled out of their selector
/// (and replace it), and scale.
/// [sig-apps] ReplicaSet should adopt matching pods on creation and release no longer matching pods [Conformance]
/// [sig-apps] ReplicationController should adopt matching pods on creation [Conformance]
/// [sig-apps] ReplicationController should release no longer matching pods [Conformance]
#[test]
fn replica_sets_and_controllers_adopt_and_release() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "2"]);
    for (kind, api, selector) in [("ReplicaSet", "apps/v1", "{matchLabels: {app: NAME}}"), ("ReplicationController", "v1", "{app: NAME}")] {
        let name = kind.to_lowercase();
        c.ok(&["run", &format!("{name}-orphan"), "--image=nginx", &format!("--labels=app={name}")]);
        let owner = format!("apiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n  replicas: 2\n  selector: {}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: c, image: nginx}}]\n", selector.replace("NAME", &name));
        c.ok_stdin(&["apply", "-f", "-"], Some(&owner));
        let owners = "jsonpath={range .items[*]}{.metadata.name}={.metadata.ownerReferences[0].kind} {end}";
        let out = c.wait_for(&["get", "pods", "-l", &format!("app={name}"), "-o", owners], "the orphan's adoption", |o| o.contains(&format!("{name}-orphan={kind}")) && o.split_whitespace().count() == 2);
        assert!(out.split_whitespace().all(|p| p.ends_with(&format!("={kind}"))), "{out}");

        c.ok(&["label", "pod", &format!("{name}-orphan"), "app=released", "--overwrite"]);
        c.wait_for(&["get", "pod", &format!("{name}-orphan"), "-o", "jsonpath={.metadata.ownerReferences}"], "the release", |o| o.is_empty());
        c.wait_for(&["get", "pods", "-l", &format!("app={name}"), "-o", "name"], "a replacement", |o| o.lines().count() == 2);
        c.ok(&["scale", &format!("{name}/{name}"), "--replicas=4"]);
        let ready = c.wait_for(&["get", &name, &name, "-o", "jsonpath={.status.readyReplicas}"], "four ready", |o| o == "4");
        assert_eq!(ready, "4");
    }
}

/// The pod garbage collector keeps at most `--terminated-pod-gc-threshold`
/// finished pods (the Job still counts every completion) and removes pods
/// bound to a node that does not exist.
#[test]
fn pod_gc_removes_excess_finished_and_orphaned_pods() {
    let c = Cluster::start_with(&["--terminated-pod-gc-threshold", "2"]);
    let _sim = c.sim(&["--nodes", "1"]);
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: five}\nspec:\n  completions: 5\n  parallelism: 5\n  template:\n    metadata: {annotations: {sim.skiff.io/succeed-after: 100ms}}\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(job));
    c.ok(&["wait", "--for=condition=complete", "job/five", "--timeout=60s"]);
    c.ok(&["run", "stranded", "--image=nginx", "--overrides", r#"{"spec":{"nodeName":"ghost"}}"#]);
    let limit = std::time::Duration::from_secs(70);
    // Columns that tell, should it fail, which step of deletion stalled.
    let columns = "custom-columns=NAME:.metadata.name,PHASE:.status.phase,DELETED:.metadata.deletionTimestamp,FINALIZERS:.metadata.finalizers,CREATED:.metadata.creationTimestamp";
    c.wait_up_to(limit, &["get", "pods", "-l", "job-name=five", "--no-headers", "-o", columns], "the oldest finished pods to go", |o| o.lines().count() == 2);
    c.wait_up_to(limit, &["get", "pods", "-o", "name"], "the pod on a missing node to go", |o| !o.contains("stranded"));
    assert_eq!(c.ok(&["get", "job", "five", "-o", "jsonpath={.status.succeeded}"]), "5");
}

/// PodDisruptionBudgets report their pods' health and the disruptions
/// allowed; the eviction API spends them
/// and refuses with 429 when none is left.
/// [sig-apps] DisruptionController should observe PodDisruptionBudget status updated [Conformance]
/// [sig-apps] DisruptionController should block an eviction until the PDB is updated to allow it [Conformance]
#[test]
fn disruption_budgets_guard_evictions() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "1"]);
    c.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=3"]);
    c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    c.ok(&["create", "pdb", "strict", "--selector=app=web", "--min-available=3"]);
    c.ok(&["create", "pdb", "loose", "--selector=app=other", "--max-unavailable=1"]);
    let status = "jsonpath={.status.currentHealthy}/{.status.desiredHealthy}/{.status.expectedPods}/{.status.disruptionsAllowed}";
    c.wait_for(&["get", "pdb", "strict", "-o", status], "the budget's status", |o| o == "3/3/3/0");
    let row = c.ok(&["get", "pdb", "strict", "--no-headers"]);
    assert_eq!(row.split_whitespace().take(4).collect::<Vec<_>>(), ["strict", "3", "N/A", "0"], "{row}");

    let pod = c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"]);
    let eviction = format!(r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"default"}}}}"#);
    let refused = c.fails(&["create", "--raw", &format!("/api/v1/namespaces/default/pods/{pod}/eviction"), "-f", "-"], Some(&eviction));
    assert!(refused.contains("Cannot evict pod as it would violate the pod's disruption budget"), "{refused}");

    c.ok(&["patch", "pdb", "strict", "--type=merge", "-p", r#"{"spec":{"minAvailable":2}}"#]);
    c.wait_for(&["get", "pdb", "strict", "-o", status], "the budget to allow one", |o| o == "3/2/3/1");
    c.ok_stdin(&["create", "--raw", &format!("/api/v1/namespaces/default/pods/{pod}/eviction"), "-f", "-"], Some(&eviction));
    c.wait_for(&["get", "pods", "-o", "name"], "the evicted pod to go", |o| !o.contains(&pod));
    c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
}

/// A ResourceQuota's `status.used` follows what its namespace holds:
/// object counts and the compute requests and limits of its pods, in the
/// quota's scopes, written as upstream canonicalizes quantities.
/// [sig-api-machinery] ResourceQuota should create a ResourceQuota and capture the life of a pod. [Conformance]
/// [sig-api-machinery] ResourceQuota should create a ResourceQuota and capture the life of a service. [Conformance]
#[test]
fn resource_quotas_track_usage() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "1"]);
    c.ok(&["create", "quota", "team", "--hard=pods=10,services=5,count/deployments.apps=3,configmaps=20,requests.cpu=4,requests.memory=4Gi,limits.memory=8Gi"]);
    c.ok(&["create", "namespace", "free"]);
    c.ok(&["create", "quota", "best-effort", "-n", "free", "--hard=pods=10", "--scopes=BestEffort"]);
    // Admission charges quotas only once the controller has counted them.
    c.wait_for(&["get", "quota", "team", "-o", "jsonpath={.status.used.pods}"], "the first count", |o| o == "0");
    c.wait_for(&["get", "quota", "best-effort", "-n", "free", "-o", "jsonpath={.status.used.pods}"], "the first count", |o| o == "0");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec:\n  containers: [{name: c, image: nginx, resources: {requests: {cpu: 250m, memory: 512Mi}, limits: {memory: 1Gi}}}]\n";
    for name in ["a", "b"] {
        c.ok_stdin(&["apply", "-f", "-"], Some(&pod.replace("NAME", name)));
    }
    // Where compute is limited, a pod must say what it needs (upstream's rule).
    let err = c.fails(&["run", "plain", "--image=nginx"], None);
    assert!(err.contains("failed quota: team: must specify limits.memory,requests.cpu,requests.memory"), "{err}");
    c.ok(&["run", "plain", "-n", "free", "--image=nginx"]);
    c.ok(&["create", "service", "clusterip", "web", "--tcp=80:80"]);
    c.ok(&["create", "deployment", "d", "--image=nginx", "--replicas=0"]);
    let used = "jsonpath={.status.used.pods} {.status.used.services} {.status.used.count/deployments\\.apps} {.status.used.requests\\.cpu} {.status.used.requests\\.memory} {.status.used.limits\\.memory}";
    c.wait_up_to(std::time::Duration::from_secs(40), &["get", "quota", "team", "-o", used], "the usage", |o| o == "2 2 1 500m 1Gi 2Gi");
    c.wait_for(&["get", "quota", "best-effort", "-n", "free", "-o", "jsonpath={.status.used.pods}"], "the scoped usage", |o| o == "1");
    let configmaps = c.ok(&["get", "quota", "team", "-o", "jsonpath={.status.used.configmaps}"]);
    assert_eq!(configmaps, "1", "the namespace's kube-root-ca.crt");
    c.ok(&["delete", "pod", "a", "--wait=false"]);
    c.wait_up_to(std::time::Duration::from_secs(40), &["get", "quota", "team", "-o", used], "the usage to drop", |o| o == "1 2 1 250m 512Mi 1Gi");
}

/// The scheduler and controller manager run as their own processes, each
/// elected through its Lease: of two schedulers one leads, and when it
/// stops the other takes over within the lease duration. The controller
/// manager runs ServiceLB as the server's would.
#[test]
fn components_run_as_their_own_processes_with_leader_election() {
    let c = Cluster::start_with(&["--disable-scheduler", "--disable-controller-manager"]);
    let _sim = c.sim(&["--nodes", "2"]);
    let _controllers = c.component("controller-manager", "controller-manager", &[]);
    let mut first = c.component("scheduler", "scheduler-1", &[]);
    let holder = |c: &Cluster| c.ok(&["get", "lease", "-n", "kube-system", "kube-scheduler", "-o", "jsonpath={.spec.holderIdentity}"]);
    c.wait_for(&["get", "lease", "-n", "kube-system", "kube-scheduler", "-o", "jsonpath={.spec.holderIdentity}"], "the first scheduler to lead", |h| !h.is_empty());
    let leader = holder(&c);
    let _second = c.component("scheduler", "scheduler-2", &[]);
    c.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=3"]);
    c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert_eq!(holder(&c), leader, "the second scheduler waits");

    first.kill();
    c.wait_up_to(std::time::Duration::from_secs(40), &["get", "lease", "-n", "kube-system", "kube-scheduler", "-o", "jsonpath={.spec.holderIdentity}"], "the second scheduler to take over", |h| !h.is_empty() && h != leader);
    c.ok(&["scale", "deploy/web", "--replicas=5"]);
    c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let controller = c.ok(&["get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "jsonpath={.spec.holderIdentity}"]);
    assert!(!controller.is_empty());
    // ServiceLB, on at the server, runs in the standalone controller manager
    // too. (Simulated nodes have no address of their own: one is given.)
    c.ok(&["patch", "node", "sim-0", "--subresource=status", "--type=merge", "-p", r#"{"status":{"addresses":[{"type":"InternalIP","address":"192.0.2.10"}]}}"#]);
    c.ok(&["create", "service", "loadbalancer", "lb", "--tcp=80:8080"]);
    c.wait_for(&["get", "service", "lb", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"], "ServiceLB to give the Service the node's address", |s| s == "192.0.2.10");
}

/// A rollout that makes no progress for progressDeadlineSeconds is marked
/// ProgressDeadlineExceeded, and `kubectl rollout status` says so.
#[test]
fn stalled_rollouts_exceed_their_progress_deadline() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "1"]);
    c.ok(&["create", "deployment", "stuck", "--image=nginx", "--replicas=2"]);
    c.ok(&["rollout", "status", "deploy/stuck", "--timeout=60s"]);
    // The new template's pods fit nowhere.
    c.ok(&["patch", "deploy", "stuck", "-p", r#"{"spec":{"progressDeadlineSeconds":3,"template":{"spec":{"nodeSelector":{"disk":"none"}}}}}"#]);
    let out = c.fails(&["rollout", "status", "deploy/stuck", "--timeout=60s"], None);
    assert!(out.contains("deployment \"stuck\" exceeded its progress deadline"), "{out}");
    let reason = c.ok(&["get", "deploy", "stuck", "-o", "jsonpath={.status.conditions[?(@.type=='Progressing')].reason}"]);
    assert_eq!(reason, "ProgressDeadlineExceeded");
    assert_eq!(c.ok(&["get", "deploy", "stuck", "-o", "jsonpath={.status.availableReplicas}"]), "2", "the old pods keep serving");
}

/// A Deployment resized in the middle of a rollout shares the change among
/// its ReplicaSets in proportion to their size, as upstream.
/// [sig-apps] Deployment deployment should support proportional scaling [Conformance]
#[test]
fn deployments_resized_mid_rollout_scale_proportionally() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "2"]);
    c.ok(&["create", "deployment", "web", "--image=nginx:1", "--replicas=10"]);
    c.ok(&["patch", "deploy", "web", "-p", r#"{"spec":{"strategy":{"rollingUpdate":{"maxSurge":3,"maxUnavailable":2}}}}"#]);
    c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    // The new template's pods fit nowhere: the rollout stops part way.
    c.ok(&["patch", "deploy", "web", "-p", r#"{"spec":{"template":{"spec":{"nodeSelector":{"disk":"none"}}}}}"#]);
    let sizes = "jsonpath={range .items[*]}{.spec.replicas} {end}";
    let stuck = c.wait_for(&["get", "rs", "-o", sizes], "the rollout to stall at 8 + 5", |o| {
        let mut v: Vec<i32> = o.split_whitespace().map(|n| n.parse().unwrap()).collect();
        v.sort();
        v == [5, 8]
    });
    assert!(!stuck.is_empty());
    c.ok(&["scale", "deploy/web", "--replicas=30"]);
    c.wait_for(&["get", "rs", "-o", sizes], "the proportional split 20 + 13", |o| {
        let mut v: Vec<i32> = o.split_whitespace().map(|n| n.parse().unwrap()).collect();
        v.sort();
        v == [13, 20]
    });
}

/// Claims and volumes in use outlive their deletion, as upstream's
/// StorageObjectInUseProtection admission and pvc/pv-protection
/// controllers keep them: a claim a pod uses stays Terminating until the
/// pod is gone, and a Bound volume until its claim is.
#[test]
fn claims_and_volumes_in_use_outlive_their_deletion() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "1"]);
    c.ok_stdin(&["apply", "-f", "-"], Some("apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: kept}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Retain\n  hostPath: {path: /tmp/kept}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: \"\"\n  volumeName: kept\n  resources: {requests: {storage: 1Gi}}\n"));
    c.wait_for(&["get", "pvc", "data", "-o", "jsonpath={.status.phase}"], "the claim to bind", |p| p == "Bound");
    assert_eq!(c.ok(&["get", "pvc", "data", "-o", "jsonpath={.metadata.finalizers}"]), r#"["kubernetes.io/pvc-protection"]"#);
    assert_eq!(c.ok(&["get", "pv", "kept", "-o", "jsonpath={.metadata.finalizers}"]), r#"["kubernetes.io/pv-protection"]"#);
    c.ok_stdin(&["apply", "-f", "-"], Some("apiVersion: v1\nkind: Pod\nmetadata: {name: user}\nspec:\n  containers: [{name: c, image: nginx}]\n  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]\n"));
    c.wait_for(&["get", "pod", "user", "-o", "jsonpath={.status.phase}"], "the pod to run", |p| p == "Running");

    c.ok(&["delete", "pvc", "data", "--wait=false"]);
    c.ok(&["delete", "pv", "kept", "--wait=false"]);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(c.ok(&["get", "pvc", "data", "-o", "jsonpath={.status.phase} {.metadata.finalizers}"]), r#"Bound ["kubernetes.io/pvc-protection"]"#, "in use: kept");
    assert!(!c.ok(&["get", "pv", "kept", "-o", "jsonpath={.metadata.deletionTimestamp}"]).is_empty());

    c.ok(&["delete", "pod", "user"]);
    c.wait_for(&["get", "pvc", "-o", "name"], "the claim to go with its last pod", |s| s.is_empty());
    c.wait_for(&["get", "pv", "-o", "name"], "the volume to go once Released", |s| s.is_empty());
}

/// Events expire `--event-ttl` after their last write, as upstream's do (an
/// etcd lease there, a sweep here, on either store): one written again
/// meanwhile stays, one left alone goes, from both Event APIs.
#[test]
fn events_expire_after_their_ttl() {
    let c = Cluster::start_with(&["--event-ttl", "4s"]);
    let event = |name: &str| format!(r#"{{"apiVersion":"v1","kind":"Event","metadata":{{"name":"{name}"}},"involvedObject":{{"kind":"Pod","name":"p","namespace":"default"}},"reason":"Test","message":"m","type":"Normal"}}"#);
    for name in ["left", "kept"] {
        c.ok_stdin(&["create", "-f", "-"], Some(&event(name)));
    }
    assert!(c.ok(&["get", "events.v1.events.k8s.io", "left", "-o", "name"]).contains("left"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut writes = 0;
    while c.kubectl(&["get", "events.v1.events.k8s.io", "left"]).status.success() {
        assert!(std::time::Instant::now() < deadline, "the event outlived its TTL");
        writes += 1;
        c.ok(&["patch", "event", "kept", "--type=merge", "-p", &format!(r#"{{"message":"write {writes}"}}"#)]);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(!c.kubectl(&["get", "event", "left"]).status.success(), "gone from core/v1 too");
    assert!(writes >= 4, "it lived about its TTL: {writes} half-seconds");
    assert!(c.ok(&["get", "event", "kept", "-o", "jsonpath={.message}"]).starts_with("write "), "an event written within its TTL stays");
}

//! The scheduler's rules, each test naming the upstream rule (plugin) it
//! checks, on simulated nodes (`skiff sim`) with stock kubectl.

mod common;

use common::Cluster;

/// A pod with a name, optional CPU request, and extra spec fields.
fn pod(name: &str, cpu: Option<&str>, spec: &str) -> String {
    let resources = cpu.map_or(String::new(), |c| format!(r#","resources":{{"requests":{{"cpu":"{c}"}}}}"#));
    let extra = if spec.is_empty() { String::new() } else { format!(",{spec}") };
    format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"containers":[{{"name":"c","image":"busybox"{resources}}}]{extra}}}}}"#)
}

fn node_of(c: &Cluster, name: &str) -> String {
    c.wait_for(&["get", "pod", name, "-o", "jsonpath={.spec.nodeName}"], &format!("{name} to be scheduled"), |n| !n.is_empty())
}

/// The FailedScheduling message a pending pod got.
fn failure_of(c: &Cluster, name: &str) -> String {
    let selector = format!("involvedObject.name={name},reason=FailedScheduling");
    c.wait_for(&["get", "events", "--field-selector", &selector, "-o", "jsonpath={.items[-1:].message}"], &format!("{name} to fail scheduling"), |m| !m.is_empty())
}

/// NodeResourcesFit: pods that ask for more than is left wait, with
/// upstream's message, and are placed once room is freed.
/// [sig-scheduling] SchedulerPredicates [Serial] validates resource limits of pods that are allowed to run [Conformance]
#[test]
fn node_resources_fit_waits_for_room() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "2", "--cpu", "2", "--pods", "3"]);
    for name in ["big-0", "big-1"] {
        c.ok_stdin(&["create", "-f", "-"], Some(&pod(name, Some("1500m"), "")));
    }
    let (a, b) = (node_of(&c, "big-0"), node_of(&c, "big-1"));
    assert_ne!(a, b, "LeastAllocated spreads the two pods");
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("big-2", Some("1"), "")));
    assert_eq!(
        failure_of(&c, "big-2"),
        "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
    );
    let condition = c.ok(&["get", "pod", "big-2", "-o", "jsonpath={.status.conditions[?(@.type=='PodScheduled')].reason}"]);
    assert_eq!(condition, "Unschedulable");
    c.ok(&["delete", "pod", "big-0"]);
    assert_eq!(node_of(&c, "big-2"), a, "the freed node takes the waiting pod");

    // "pods" capacity: three per node; two big pods and four small fill both.
    for i in 0..5 {
        c.ok_stdin(&["create", "-f", "-"], Some(&pod(&format!("small-{i}"), None, "")));
    }
    for i in 0..4 {
        node_of(&c, &format!("small-{i}"));
    }
    assert!(failure_of(&c, "small-4").starts_with("0/2 nodes are available: 2 Too many pods."), "{}", failure_of(&c, "small-4"));
}

/// NodeAffinity: nodeSelector and required node affinity terms.
/// [sig-scheduling] SchedulerPredicates [Serial] validates that NodeSelector is respected if matching [Conformance]
/// [sig-scheduling] SchedulerPredicates [Serial] validates that NodeSelector is respected if not matching [Conformance]
#[test]
fn node_affinity_and_node_selector_are_respected() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "3"]);
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("picky", None, r#""nodeSelector":{"disk":"ssd"}"#)));
    assert_eq!(
        failure_of(&c, "picky"),
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    c.ok(&["label", "node", "sim-1", "disk=ssd"]);
    assert_eq!(node_of(&c, "picky"), "sim-1");

    c.ok(&["label", "node", "sim-0", "gen=3"]);
    c.ok(&["label", "node", "sim-2", "gen=5"]);
    let affinity = r#""affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[
        {"matchExpressions":[{"key":"gen","operator":"Gt","values":["4"]}]},
        {"matchFields":[{"key":"metadata.name","operator":"In","values":["nowhere"]}]}]}}}"#;
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("newest", None, &affinity.replace('\n', ""))));
    assert_eq!(node_of(&c, "newest"), "sim-2");
    let not_in = r#""affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"kubernetes.io/hostname","operator":"NotIn","values":["sim-0","sim-1"]}]}]}}}"#;
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("not-in", None, not_in)));
    assert_eq!(node_of(&c, "not-in"), "sim-2");
    // Preferred terms weigh in the score.
    let preferred = r#""affinity":{"nodeAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":100,"preference":{"matchExpressions":[{"key":"gen","operator":"In","values":["3"]}]}}]}}"#;
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("prefers", None, preferred)));
    assert_eq!(node_of(&c, "prefers"), "sim-0");
}

/// TaintToleration and NodeUnschedulable: NoSchedule taints keep out pods
/// that do not tolerate them; a cordoned node takes no new pods.
#[test]
fn taints_tolerations_and_cordons() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "2"]);
    c.ok(&["taint", "node", "sim-0", "dedicated=gpu:NoSchedule"]);
    c.ok(&["cordon", "sim-1"]);
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("plain", None, "")));
    assert_eq!(
        failure_of(&c, "plain"),
        "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    let tolerates = r#""tolerations":[{"key":"dedicated","operator":"Equal","value":"gpu","effect":"NoSchedule"}]"#;
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("tolerant", None, tolerates)));
    assert_eq!(node_of(&c, "tolerant"), "sim-0");
    c.ok(&["uncordon", "sim-1"]);
    assert_eq!(node_of(&c, "plain"), "sim-1");
    // PreferNoSchedule only steers.
    c.ok(&["taint", "node", "sim-0", "dedicated=gpu:NoSchedule-"]);
    c.ok(&["taint", "node", "sim-1", "slow=yes:PreferNoSchedule"]);
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("steered", None, "")));
    assert_eq!(node_of(&c, "steered"), "sim-0");
}

/// NodePorts: a host port is taken per protocol and host IP, and 0.0.0.0
/// takes it on every IP.
/// [sig-scheduling] SchedulerPredicates [Serial] validates that there exists conflict between pods with same hostPort and protocol but one using 0.0.0.0 hostIP [Conformance]
#[test]
fn host_ports_conflict_as_upstream_says() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "1"]);
    let port = |name: &str, ip: &str, proto: &str| {
        let spec = format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{{"containers":[{{"name":"c","image":"busybox","ports":[{{"containerPort":80,"hostPort":54321,"hostIP":"{ip}","protocol":"{proto}"}}]}}]}}}}"#);
        c.ok_stdin(&["create", "-f", "-"], Some(&spec));
    };
    port("any-ip", "0.0.0.0", "TCP");
    node_of(&c, "any-ip");
    port("udp", "127.0.0.1", "UDP");
    node_of(&c, "udp");
    port("one-ip", "127.0.0.1", "TCP");
    assert_eq!(
        failure_of(&c, "one-ip"),
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
}

/// InterPodAffinity: required anti-affinity keeps replicas on separate
/// hosts (the one that fits nowhere gets upstream's message); required
/// affinity puts a pod beside the pods it names, and waits when there are
/// none; an existing pod's anti-affinity keeps matching pods away.
#[test]
fn inter_pod_affinity_and_anti_affinity() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "3"]);
    c.wait_for(&["get", "nodes", "-o", "name"], "three nodes", |o| o.lines().count() == 3);
    let anti = r#""affinity":{"podAntiAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[{"labelSelector":{"matchLabels":{"app":"db"}},"topologyKey":"kubernetes.io/hostname"}]}}"#;
    for i in 0..4 {
        let manifest = pod(&format!("db-{i}"), None, anti).replace(r#""metadata":{"name":"#, r#""metadata":{"labels":{"app":"db"},"name":"#);
        c.ok_stdin(&["create", "-f", "-"], Some(&manifest));
    }
    let mut hosts: Vec<String> = (0..3).map(|i| node_of(&c, &format!("db-{i}"))).collect();
    hosts.sort();
    assert_eq!(hosts, ["sim-0", "sim-1", "sim-2"], "one per host");
    assert_eq!(
        failure_of(&c, "db-3"),
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );

    let near = r#""affinity":{"podAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[{"labelSelector":{"matchLabels":{"app":"db"}},"topologyKey":"kubernetes.io/hostname"}]}}"#;
    c.ok(&["delete", "pod", "db-0", "db-1"]);
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("beside-db", None, near)));
    assert_eq!(node_of(&c, "beside-db"), node_of(&c, "db-2"));
    let nowhere = near.replace(r#""app":"db""#, r#""app":"none""#);
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("lonely", None, &nowhere)));
    assert_eq!(failure_of(&c, "lonely"), "0/3 nodes are available: 3 node(s) didn't match pod affinity rules. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.");

    // db-2's anti-affinity keeps a new db pod off its node.
    let plain_db = pod("db-late", None, "").replace(r#""metadata":{"name":"#, r#""metadata":{"labels":{"app":"db"},"name":"#);
    c.ok_stdin(&["create", "-f", "-"], Some(&plain_db));
    assert_ne!(node_of(&c, "db-late"), node_of(&c, "db-2"));
}

/// PodTopologySpread: a hard constraint (maxSkew 1 over hosts) spreads a
/// Deployment evenly, and a pod that would break it waits with upstream's
/// message; a node without the topology label does not count.
#[test]
fn pod_topology_spread_constraints() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "3"]);
    c.wait_for(&["get", "nodes", "-o", "name"], "three nodes", |o| o.lines().count() == 3);
    for (node, zone) in [("sim-0", "a"), ("sim-1", "a"), ("sim-2", "b")] {
        c.ok(&["label", "node", node, &format!("topology.kubernetes.io/zone={zone}")]);
    }
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 6\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      topologySpreadConstraints:\n      - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}\n      containers: [{name: web, image: nginx}]\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(deployment));
    c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let nodes = c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.nodeName} {end}"]);
    let in_b = nodes.split_whitespace().filter(|n| *n == "sim-2").count();
    assert_eq!(in_b, 3, "zone b has one node and half the pods: {nodes}");

    // Pods that must go to zone a: the first makes the skew 1, the second
    // would make it 2.
    let pinned = r#""nodeSelector":{"topology.kubernetes.io/zone":"a"},"topologySpreadConstraints":[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"DoNotSchedule","labelSelector":{"matchLabels":{"app":"web"}},"nodeAffinityPolicy":"Ignore"}]"#;
    for name in ["fits", "skewed"] {
        let manifest = pod(name, None, pinned).replace(r#""metadata":{"name":"#, r#""metadata":{"labels":{"app":"web"},"name":"#);
        c.ok_stdin(&["create", "-f", "-"], Some(&manifest));
        if name == "fits" {
            node_of(&c, "fits");
        }
    }
    assert_eq!(
        failure_of(&c, "skewed"),
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 node(s) didn't match pod topology spread constraints. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
    );
    // A node without the zone label is no domain: it takes no pod that
    // spreads by zone, and its pods no longer count, so zone a is the only
    // domain and the waiting pod fits.
    c.ok(&["label", "node", "sim-2", "topology.kubernetes.io/zone-"]);
    assert!(node_of(&c, "skewed") != "sim-2");
    c.ok(&["scale", "deploy/web", "--replicas=8"]);
    c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let nodes = c.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.nodeName} {end}"]);
    assert_eq!(nodes.split_whitespace().filter(|n| *n == "sim-2").count(), 3, "{nodes}");
}

/// DefaultPreemption: a high-priority pod that fits nowhere evicts the
/// fewest lower-priority pods on one node (with a Preempted event and a
/// DisruptionTarget condition), is nominated there, and is placed once
/// they are gone; `preemptionPolicy: Never` waits instead.
/// [sig-scheduling] SchedulerPreemption [Serial] validates basic preemption works [Conformance]
#[test]
fn preemption_evicts_lower_priority_pods() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "2", "--cpu", "2"]);
    c.wait_for(&["get", "nodes", "-o", "name"], "two nodes", |o| o.lines().count() == 2);
    // Priorities come from PriorityClasses, through the Priority admission plugin.
    c.ok(&["create", "priorityclass", "low", "--value=1"]);
    c.ok(&["create", "priorityclass", "high", "--value=1000"]);
    c.ok(&["create", "priorityclass", "high-polite", "--value=1000", "--preemption-policy=Never"]);
    for (name, cpu) in [("low-0", "1500m"), ("low-1", "1"), ("low-2", "500m")] {
        c.ok_stdin(&["create", "-f", "-"], Some(&pod(name, Some(cpu), r#""priorityClassName":"low""#)));
        node_of(&c, name);
    }
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("polite", Some("1500m"), r#""priorityClassName":"high-polite""#)));
    assert_eq!(failure_of(&c, "polite"), "0/2 nodes are available: 2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.");
    c.ok(&["delete", "pod", "polite"]);

    // Either node frees 1500m with one victim: low-0 alone, or low-1 on the
    // other node, where low-2 is given back (the reprieve).
    assert_eq!(node_of(&c, "low-2"), node_of(&c, "low-1"), "LeastAllocated put low-2 where more was free");
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("urgent", Some("1500m"), r#""priorityClassName":"high""#)));
    let placed = node_of(&c, "urgent");
    let pods = c.ok(&["get", "pods", "-o", "name"]);
    let evicted: Vec<&str> = ["low-0", "low-1", "low-2"].into_iter().filter(|p| !pods.contains(&format!("pod/{p}\n"))).collect();
    assert_eq!(evicted.len(), 1, "one victim: {pods}");
    let events = c.ok(&["get", "events", "--field-selector", &format!("involvedObject.name={},reason=Preempted", evicted[0]), "-o", "jsonpath={.items[*].message}"]);
    assert!(events.starts_with("Preempted by pod ") && events.ends_with(&format!("on node {placed}")), "{events}");
}

/// DefaultPreemption for a critical pod: a `system-cluster-critical` pod
/// that fits nowhere preempts a lower-priority one.
/// [sig-scheduling] SchedulerPreemption [Serial] validates lower priority pod preemption by critical pod [Conformance]
#[test]
fn preemption_makes_room_for_a_critical_pod() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "1", "--cpu", "2"]);
    c.wait_for(&["get", "nodes", "-o", "name"], "a node", |o| o.lines().count() == 1);
    c.ok(&["create", "priorityclass", "low", "--value=1"]);
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("ordinary", Some("1500m"), r#""priorityClassName":"low""#)));
    node_of(&c, "ordinary");
    let critical = pod("critical", Some("1"), r#""priorityClassName":"system-cluster-critical""#);
    c.ok_stdin(&["create", "-n", "kube-system", "-f", "-"], Some(&critical));
    let node = c.wait_for(&["get", "pod", "-n", "kube-system", "critical", "-o", "jsonpath={.spec.nodeName}"], "the critical pod to be scheduled", |n| !n.is_empty());
    assert_eq!(node, "sim-0");
    c.wait_for(&["get", "pods", "-o", "name"], "the ordinary pod to be preempted", |p| !p.contains("pod/ordinary"));
}

/// DefaultPreemption with ReplicaSets of four priorities on a node with
/// room for three: the fourth preempts the two least important, whose
/// ReplicaSets' replacements then wait, unschedulable; every ReplicaSet
/// still counts its one replica.
/// [sig-scheduling] SchedulerPreemption [Serial] PreemptionExecutionPath runs ReplicaSets to verify preemption running path [Conformance]
#[test]
fn preemption_runs_through_replica_sets() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "1", "--cpu", "1"]);
    c.wait_for(&["get", "nodes", "-o", "name"], "a node", |o| o.lines().count() == 1);
    let replica_set = |level: u32, cpu: &str| {
        format!(
            "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {{name: p{level}}}\nvalue: {level}\n---\n\
             apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: rs{level}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{rs: rs{level}}}}}\n  \
             template:\n    metadata: {{labels: {{rs: rs{level}}}}}\n    spec:\n      priorityClassName: p{level}\n      \
             containers: [{{name: c, image: busybox, resources: {{requests: {{cpu: {cpu}}}}}}}]\n"
        )
    };
    let scheduled = |rs: &str| {
        c.wait_for(&["get", "pods", "-l", &format!("rs={rs}"), "-o", "jsonpath={.items[*].spec.nodeName}"], &format!("{rs}'s pod to be scheduled"), |n| n == "sim-0");
    };
    for (level, cpu) in [(1, "200m"), (2, "300m"), (3, "450m")] {
        c.ok_stdin(&["apply", "-f", "-"], Some(&replica_set(level, cpu)));
        scheduled(&format!("rs{level}"));
    }
    c.ok_stdin(&["apply", "-f", "-"], Some(&replica_set(4, "500m")));
    scheduled("rs4");
    scheduled("rs3");
    for rs in ["rs1", "rs2"] {
        c.wait_for(&["get", "pods", "-l", &format!("rs={rs}"), "-o", "jsonpath={.items[*].status.conditions[?(@.type=='PodScheduled')].reason}"], &format!("{rs}'s replacement to wait"), |r| r == "Unschedulable");
    }
    for rs in ["rs1", "rs2", "rs3", "rs4"] {
        c.wait_for(&["get", "rs", rs, "-o", "jsonpath={.status.replicas}"], &format!("{rs} to count its replica"), |r| r == "1");
    }
    let preempted = c.ok(&["get", "events", "--field-selector", "reason=Preempted", "-o", "jsonpath={.items[*].involvedObject.name}"]);
    assert!(preempted.contains("rs1-") && preempted.contains("rs2-") && !preempted.contains("rs3-"), "{preempted}");
}

/// DefaultPreemption spares PodDisruptionBudgets: of two nodes where one
/// victim makes room, the one whose victim a budget protects
/// (`disruptionsAllowed: 0`) loses, though its victim has the lower
/// priority and would otherwise be chosen.
#[test]
fn preemption_spares_pods_a_disruption_budget_protects() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "2", "--cpu", "2"]);
    c.wait_for(&["get", "nodes", "-o", "name"], "two nodes", |o| o.lines().count() == 2);
    c.ok(&["create", "priorityclass", "lowest", "--value=1"]);
    c.ok(&["create", "priorityclass", "lower", "--value=2"]);
    c.ok(&["create", "priorityclass", "urgent", "--value=1000"]);
    let placed = |name: &str, node: &str, class: &str, app: &str| {
        format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","labels":{{"app":"{app}"}}}},"spec":{{"nodeName":"{node}","priorityClassName":"{class}","containers":[{{"name":"c","image":"busybox","resources":{{"requests":{{"cpu":"1500m"}}}}}}]}}}}"#)
    };
    c.ok_stdin(&["create", "-f", "-"], Some(&placed("guarded", "sim-0", "lowest", "guarded")));
    c.ok_stdin(&["create", "-f", "-"], Some(&placed("plain", "sim-1", "lower", "plain")));
    c.ok(&["create", "poddisruptionbudget", "guard", "--selector=app=guarded", "--min-available=1"]);
    c.wait_for(&["get", "pdb", "guard", "-o", "jsonpath={.status.currentHealthy}/{.status.disruptionsAllowed}"], "the budget's status", |s| s == "1/0");
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("urgent", Some("1500m"), r#""priorityClassName":"urgent""#)));
    assert_eq!(node_of(&c, "urgent"), "sim-1");
    let pods = c.ok(&["get", "pods", "-o", "name"]);
    assert!(pods.contains("pod/guarded") && !pods.contains("pod/plain"), "{pods}");
}

/// Scheduler profiles: one scheduler serves every `schedulerName` it is
/// given (`--scheduler-name default-scheduler,batch`) and reports events
/// under the pod's own; a pod asking for a scheduler nobody runs stays
/// unscheduled, with no event from this one.
#[test]
fn one_scheduler_serves_several_profiles() {
    let c = Cluster::start_with(&["--scheduler-name", "default-scheduler,batch"]);
    let _sim = c.sim(&["--nodes", "1"]);
    c.wait_for(&["get", "nodes", "-o", "name"], "a node", |o| o.lines().count() == 1);
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("plain", None, "")));
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("batched", None, r#""schedulerName":"batch""#)));
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("elsewhere", None, r#""schedulerName":"nobody""#)));
    assert_eq!(node_of(&c, "plain"), "sim-0");
    assert_eq!(node_of(&c, "batched"), "sim-0");
    let reporter = c.wait_for(&["get", "events.events.k8s.io", "--field-selector", "regarding.name=batched,reason=Scheduled", "-o", "jsonpath={.items[*].reportingController}"], "the Scheduled event", |r| !r.is_empty());
    assert_eq!(reporter, "batch");
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(c.ok(&["get", "pod", "elsewhere", "-o", "jsonpath={.spec.nodeName}"]), "");
    assert_eq!(c.ok(&["get", "events", "--field-selector", "involvedObject.name=elsewhere", "-o", "name"]), "");
}

/// VolumeBinding: an unbound `WaitForFirstConsumer` claim is matched to
/// the smallest volume that fits on the chosen node, which the scheduler
/// claims (`claimRef`); the pod is bound once the volume controller has
/// bound the claim to it. A claim whose class provisions gets the node as
/// `volume.kubernetes.io/selected-node`. A bound volume's node affinity
/// holds its pods; missing claims, unbound `Immediate` claims and claims
/// no volume fits keep pods out, in upstream's words.
#[test]
fn volume_binding_follows_claims_and_their_volumes() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "2"]);
    c.wait_for(&["get", "nodes", "-o", "name"], "two nodes", |o| o.lines().count() == 2);
    let classes = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: local}\nprovisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: WaitForFirstConsumer\n---\n\
        apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: now}\nprovisioner: kubernetes.io/no-provisioner\n---\n\
        apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: dynamic}\nprovisioner: example.com/disk\nvolumeBindingMode: WaitForFirstConsumer\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(classes));
    let volume = |name: &str, size: &str, node: &str| {
        format!("apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {name}}}\nspec:\n  capacity: {{storage: {size}}}\n  accessModes: [ReadWriteOnce]\n  storageClassName: local\n  local: {{path: /mnt/{name}}}\n  nodeAffinity: {{required: {{nodeSelectorTerms: [{{matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{node}]}}]}}]}}}}\n")
    };
    let claim = |name: &str, size: &str, class: &str| {
        format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: {class}\n  resources: {{requests: {{storage: {size}}}}}\n")
    };
    let user = |name: &str, claim: &str| pod(name, None, &format!(r#""volumes":[{{"name":"v","persistentVolumeClaim":{{"claimName":"{claim}"}}}}]"#));
    for v in [volume("big-1", "10Gi", "sim-1"), volume("small-1", "1Gi", "sim-1"), volume("only-0", "1Gi", "sim-0")] {
        c.ok_stdin(&["apply", "-f", "-"], Some(&v));
    }

    // Delayed binding: the 2Gi claim fits only big-1, so the pod goes to sim-1.
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("data", "2Gi", "local")));
    c.ok_stdin(&["create", "-f", "-"], Some(&user("writer", "data")));
    c.wait_for(&["get", "pv", "big-1", "-o", "jsonpath={.spec.claimRef.name}"], "the scheduler to claim big-1", |o| o == "data");
    let annotation = c.ok(&["get", "pv", "big-1", "-o", "jsonpath={.metadata.annotations.pv\\.kubernetes\\.io/bound-by-controller}"]);
    assert_eq!(annotation, "yes");
    // The volume controller completes the binding; then the pod is bound.
    assert_eq!(node_of(&c, "writer"), "sim-1");
    assert_eq!(c.ok(&["get", "pvc", "data", "-o", "jsonpath={.status.phase} {.spec.volumeName}"]), "Bound big-1");

    // A bound claim's volume decides the node.
    c.ok_stdin(&["apply", "-f", "-"], Some(&user("reader", "data")));
    assert_eq!(node_of(&c, "reader"), "sim-1");

    // A class that provisions: the claim is told the chosen node.
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("grown", "100Gi", "dynamic")));
    c.ok_stdin(&["create", "-f", "-"], Some(&user("grower", "grown")));
    let selected = c.wait_for(&["get", "pvc", "grown", "-o", "jsonpath={.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"], "the selected node", |o| !o.is_empty());
    assert!(selected.starts_with("sim-"), "{selected}");

    // Nothing fits: upstream's reasons.
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("huge", "50Gi", "local")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("eager", "1Gi", "now")));
    c.ok_stdin(&["create", "-f", "-"], Some(&user("too-big", "huge")));
    c.ok_stdin(&["create", "-f", "-"], Some(&user("eager-user", "eager")));
    c.ok_stdin(&["create", "-f", "-"], Some(&user("lost", "missing")));
    let unhelpful = "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.";
    assert_eq!(failure_of(&c, "too-big"), format!("0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind. {unhelpful}"));
    assert_eq!(failure_of(&c, "eager-user"), format!("0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. {unhelpful}"));
    assert_eq!(failure_of(&c, "lost"), format!("0/2 nodes are available: persistentvolumeclaim \"missing\" not found. {unhelpful}"));
    // The claim appearing is the change that lets the pod in.
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("missing", "1Gi", "local")));
    let claimed = r#"jsonpath={.items[?(@.spec.claimRef.name=="missing")].metadata.name}"#;
    c.wait_for(&["get", "pv", "-o", claimed], "the scheduler to claim a 1Gi volume", |o| o == "small-1" || o == "only-0");
}

/// A KubeSchedulerConfiguration (`skiff scheduler --config`, as
/// kube-scheduler's): each profile runs the plugins it enables, with its
/// weights and arguments. NodeResourcesFit's MostAllocated strategy packs
/// pods on one node; a profile without TaintToleration's filter ignores
/// taints; one without DefaultPreemption reports no preemption part. The
/// Lease is the one the file names.
#[test]
fn scheduler_configuration_profiles_choose_plugins() {
    let c = Cluster::start_with(&["--disable-scheduler"]);
    let config = c.data_dir().join("scheduler.yaml");
    std::fs::write(
        &config,
        r#"apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection: {leaderElect: true, resourceName: configured-scheduler}
profiles:
- schedulerName: default-scheduler
  plugins:
    postFilter: {disabled: [{name: DefaultPreemption}]}
- schedulerName: packer
  plugins:
    score:
      disabled: [{name: NodeResourcesBalancedAllocation}]
      enabled: [{name: NodeResourcesFit, weight: 5}]
  pluginConfig:
  - name: NodeResourcesFit
    args: {scoringStrategy: {type: MostAllocated, resources: [{name: cpu, weight: 1}]}}
- schedulerName: taint-blind
  plugins:
    filter: {disabled: [{name: TaintToleration}]}
"#,
    )
    .unwrap();
    let _scheduler = c.component("scheduler", "scheduler", &["--config", config.to_str().unwrap()]);
    let _sim = c.sim(&["--nodes", "3", "--cpu", "4"]);
    c.wait_for(&["get", "nodes", "-o", "name"], "three nodes", |o| o.lines().count() == 3);
    c.wait_for(&["get", "lease", "-n", "kube-system", "configured-scheduler", "-o", "jsonpath={.spec.holderIdentity}"], "the configured Lease", |h| !h.is_empty());

    for i in 0..3 {
        c.ok_stdin(&["create", "-f", "-"], Some(&pod(&format!("packed-{i}"), Some("500m"), r#""schedulerName":"packer""#)));
    }
    let nodes: Vec<String> = (0..3).map(|i| node_of(&c, &format!("packed-{i}"))).collect();
    assert!(nodes.iter().all(|n| *n == nodes[0]), "MostAllocated packs: {nodes:?}");

    c.ok(&["taint", "nodes", "--all", "dedicated=infra:NoSchedule"]);
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("blind", None, r#""schedulerName":"taint-blind""#)));
    node_of(&c, "blind");
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("kept-out", None, "")));
    assert_eq!(failure_of(&c, "kept-out"), "0/3 nodes are available: 3 node(s) had untolerated taint {dedicated: infra}.");
}

/// A configuration kube-scheduler would refuse is refused, naming the field.
#[test]
fn scheduler_configuration_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: a\n  plugins: {score: {enabled: [{name: NoSuchPlugin}]}}\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff")).args(["scheduler", "--config", config.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("profiles[0].plugins: plugin \"NoSuchPlugin\" does not exist"), "{stderr}");
}

/// SchedulingGates: a pod with gates is not scheduled (its PodScheduled
/// condition says SchedulingGated, as `kubectl get` does); gates can only
/// be removed, and once the last is gone the pod is scheduled.
#[test]
fn scheduling_gates_hold_pods_until_removed() {
    let c = Cluster::start();
    let _sim = c.sim(&["--nodes", "1"]);
    c.wait_for(&["get", "nodes", "-o", "name"], "a node", |o| o.lines().count() == 1);
    c.ok_stdin(&["create", "-f", "-"], Some(&pod("gated", None, r#""schedulingGates":[{"name":"example.com/quota"},{"name":"example.com/review"}]"#)));
    let condition = c.ok(&["get", "pod", "gated", "-o", "jsonpath={.status.conditions[?(@.type=='PodScheduled')].reason}"]);
    assert_eq!(condition, "SchedulingGated");
    assert!(c.ok(&["get", "pod", "gated", "--no-headers"]).contains("SchedulingGated"));
    let added = c.fails(&["patch", "pod", "gated", "--type=json", "-p", r#"[{"op":"add","path":"/spec/schedulingGates/-","value":{"name":"example.com/more"}}]"#], None);
    assert!(added.contains("spec.schedulingGates[2].name: Forbidden: only deletion is allowed, but found new scheduling gate 'example.com/more'"), "{added}");
    let bound = c.fails(&["create", "-f", "-"], Some(&pod("gated-bound", None, r#""nodeName":"sim-0","schedulingGates":[{"name":"example.com/quota"}]"#)));
    assert!(bound.contains("spec.nodeName: Forbidden: cannot be set until all schedulingGates have been cleared"), "{bound}");

    c.ok(&["patch", "pod", "gated", "--type=json", "-p", r#"[{"op":"remove","path":"/spec/schedulingGates/0"}]"#]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(c.ok(&["get", "pod", "gated", "-o", "jsonpath={.spec.nodeName}"]), "", "one gate is left");
    c.ok(&["patch", "pod", "gated", "--type=json", "-p", r#"[{"op":"remove","path":"/spec/schedulingGates"}]"#]);
    assert_eq!(node_of(&c, "gated"), "sim-0");
}

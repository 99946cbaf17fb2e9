//! The node agent end to end: `skiff server` with its agent runs pods as
//! real containers (runc) from a busybox image in the local registry, and
//! kubectl sees what upstream's kubelet would report.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;

fn pod(name: &str, image: &str, restart: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: {restart}\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {script:?}]\n"
    )
}

fn jsonpath(c: &Cluster, pod: &str, path: &str) -> String {
    c.ok(&["get", "pod", pod, "-o", &format!("jsonpath={path}")])
}

/// [sig-node] Kubelet when scheduling a busybox command in a pod should print the output to logs [NodeConformance] [Conformance]
/// [sig-node] Pods should get a host IP [NodeConformance] [Conformance]
/// A pod that runs to completion: Succeeded, its output in `kubectl logs`
/// with `--tail` and `--timestamps`, its IP from the node's pod CIDR.
#[test]
fn kubelet_when_scheduling_a_busybox_command_in_a_pod_should_print_the_output_to_logs() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    // stdout and stderr are separate pipes, so only each one's order is
    // kept; the pause makes `last` last.
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("hello", &image, "Never", "echo hello; echo to-stderr >&2; sleep 0.2; echo last")));
    c.wait_for(&["get", "pod", "hello", "-o", "jsonpath={.status.phase}"], "the pod to succeed", |p| p == "Succeeded");
    let logs = c.ok(&["logs", "hello"]);
    assert!(logs == "hello\nto-stderr\nlast\n" || logs == "to-stderr\nhello\nlast\n", "{logs}");
    assert_eq!(c.ok(&["logs", "hello", "--tail=1"]), "last\n");
    let stamped = c.ok(&["logs", "hello", "--timestamps", "--tail=1"]);
    let (time, text) = stamped.trim_end().split_once(' ').unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok() && text == "last", "{stamped}");
    let state = jsonpath(&c, "hello", "{.status.containerStatuses[0].state.terminated.reason}/{.status.containerStatuses[0].state.terminated.exitCode}");
    assert_eq!(state, "Completed/0");
    let cidr = format!("10.{}.0.", c.ok(&["get", "node", "node-1", "-o", "jsonpath={.spec.podCIDR}"]).split('.').nth(1).unwrap());
    assert!(jsonpath(&c, "hello", "{.status.podIP}").starts_with(&cidr));
    assert_eq!(jsonpath(&c, "hello", "{.status.hostIP}"), "127.0.0.1");
    let image_id = jsonpath(&c, "hello", "{.status.containerStatuses[0].imageID}");
    assert!(image_id.starts_with("127.0.0.1:5000/busybox@sha256:"), "{image_id}");
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=hello", "-o", "jsonpath={range .items[*]}{.reason} {end}"]);
    for reason in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(events.contains(reason), "{reason} in {events}");
    }
    // A container that is still to start is reported as upstream words it.
    let err = c.fails(&["logs", "nosuch"], None);
    assert!(err.contains("NotFound"), "{err}");
}

/// [sig-node] Container Runtime blackbox test when starting a container that exits should run with the expected status [NodeConformance] [Conformance]
/// [sig-node] Container Runtime blackbox test on terminated container should report termination message from log output if TerminationMessagePolicy FallbackToLogsOnError is set [NodeConformance] [Conformance]
/// [sig-node] Container Runtime blackbox test on terminated container should report termination message from file when pod succeeds and TerminationMessagePolicy FallbackToLogsOnError is set [NodeConformance] [Conformance]
/// [sig-node] Container Runtime blackbox test on terminated container should report termination message as empty when pod succeeds and TerminationMessagePolicy FallbackToLogsOnError is set [NodeConformance] [Conformance]
/// Restart policies, crash-loop back-off, termination messages, and `--previous`.
#[test]
fn containers_that_exit_get_the_expected_status() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("always", &image, "Always", "echo run; exit 1")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("onfailure", &image, "OnFailure", "exit 0")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("never", &image, "Never", "echo the reason >/dev/termination-log; exit 3")));
    let fallback = pod("fallback", &image, "Never", "echo from the log; exit 2") + "    terminationMessagePolicy: FallbackToLogsOnError\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(&fallback));
    let file_ok = pod("file-ok", &image, "Never", "echo OK >/dev/termination-log; echo noise") + "    terminationMessagePolicy: FallbackToLogsOnError\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(&file_ok));
    let quiet_ok = pod("quiet-ok", &image, "Never", "echo noise") + "    terminationMessagePolicy: FallbackToLogsOnError\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(&quiet_ok));

    c.wait_for(&["get", "pod", "onfailure", "-o", "jsonpath={.status.phase}"], "OnFailure exiting 0 to succeed", |p| p == "Succeeded");
    c.wait_for(&["get", "pod", "never", "-o", "jsonpath={.status.phase}"], "Never exiting 3 to fail", |p| p == "Failed");
    let terminated = jsonpath(&c, "never", "{.status.containerStatuses[0].state.terminated.reason}/{.status.containerStatuses[0].state.terminated.exitCode}/{.status.containerStatuses[0].state.terminated.message}");
    assert_eq!(terminated, "Error/3/the reason\n");
    c.wait_for(&["get", "pod", "fallback", "-o", "jsonpath={.status.phase}"], "the fallback pod to fail", |p| p == "Failed");
    assert_eq!(jsonpath(&c, "fallback", "{.status.containerStatuses[0].state.terminated.message}"), "from the log\n");
    for name in ["file-ok", "quiet-ok"] {
        c.wait_for(&["get", "pod", name, "-o", "jsonpath={.status.phase}"], "the pod to succeed", |p| p == "Succeeded");
    }
    assert_eq!(jsonpath(&c, "file-ok", "{.status.containerStatuses[0].state.terminated.message}"), "OK\n");
    assert_eq!(jsonpath(&c, "quiet-ok", "{.status.containerStatuses[0].state.terminated.message}"), "", "a success reports no log");

    // Always: restarted at once, then after 10 s of back-off.
    let waiting = c.wait_for(&["get", "pod", "always", "-o", "jsonpath={.status.containerStatuses[0].restartCount}/{.status.containerStatuses[0].state.waiting.reason}"], "a crash loop", |s| s.starts_with("1/CrashLoopBackOff"));
    assert_eq!(waiting, "1/CrashLoopBackOff");
    assert_eq!(jsonpath(&c, "always", "{.status.phase}/{.status.containerStatuses[0].lastState.terminated.exitCode}"), "Running/1");
    let table = c.ok(&["get", "pod", "always", "--no-headers"]);
    assert!(table.contains("CrashLoopBackOff"), "{table}");
    assert_eq!(c.ok(&["logs", "always", "--previous"]), "run\n");
    c.wait_up_to(Duration::from_secs(20), &["get", "pod", "always", "-o", "jsonpath={.status.containerStatuses[0].restartCount}"], "the restart after the back-off", |s| s == "2");
}

/// [sig-node] Pods should be updated [NodeConformance] [Conformance]
/// [sig-node] Pods should allow activeDeadlineSeconds to be updated [NodeConformance] [Conformance]
/// A running pod takes a new label, then a deadline: past it, the kubelet
/// stops the pod, Failed with upstream's DeadlineExceeded.
#[test]
fn running_pods_are_updated_and_stopped_past_their_deadline() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("deadline", &image, "Never", "sleep 3600")));
    c.wait_for(&["get", "pod", "deadline", "-o", "jsonpath={.status.phase}"], "the pod to run", |p| p == "Running");
    c.ok(&["label", "pod", "deadline", "time=updated"]);
    assert_eq!(c.ok(&["get", "pods", "-l", "time=updated", "-o", "name"]), "pod/deadline\n");
    let started = Instant::now();
    c.ok(&["patch", "pod", "deadline", "--type=merge", "-p", r#"{"spec":{"activeDeadlineSeconds":5}}"#]);
    let stopped = c.wait_up_to(Duration::from_secs(30), &["get", "pod", "deadline", "-o", "jsonpath={.status.phase}/{.status.reason}"], "the pod to pass its deadline", |s| s.starts_with("Failed"));
    assert_eq!(stopped, "Failed/DeadlineExceeded");
    assert!(started.elapsed() < Duration::from_secs(15), "stopped {:?} after the deadline was set", started.elapsed());
    assert_eq!(jsonpath(&c, "deadline", "{.status.message}"), "Pod was active on the node longer than the specified deadline");
    assert!(!jsonpath(&c, "deadline", "{.status.containerStatuses[0].state.terminated}").is_empty(), "its container is stopped");
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=deadline,reason=DeadlineExceeded", "-o", "name"]);
    assert!(!events.is_empty(), "a DeadlineExceeded event");
}

/// `hostPID`, `hostIPC` and `hostNetwork`: the pod's containers are in
/// the node's process, IPC and network namespaces; without them, in
/// namespaces of their own.
#[test]
fn host_namespace_pods_share_the_nodes_namespaces() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let kinds = ["pid", "ipc", "net"];
    let script = kinds.map(|ns| format!("readlink /proc/self/ns/{ns}")).join("; ");
    let host = pod("host", &image, "Never", &script).replace("  restartPolicy:", "  hostPID: true\n  hostIPC: true\n  hostNetwork: true\n  restartPolicy:");
    c.ok_stdin(&["apply", "-f", "-"], Some(&host));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("own", &image, "Never", &script)));
    for name in ["host", "own"] {
        c.wait_for(&["get", "pod", name, "-o", "jsonpath={.status.phase}"], "the pod to finish", |p| p == "Succeeded");
    }
    let node: String = kinds.map(|ns| format!("{}\n", std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap().display())).concat();
    assert_eq!(c.ok(&["logs", "host"]), node, "the node's namespaces");
    let own = c.ok(&["logs", "own"]);
    assert!(own.lines().count() == kinds.len() && own.lines().all(|l| !node.contains(l)), "namespaces of its own: {own} (the node's: {node})");
}

/// [sig-node] Ephemeral Containers [NodeConformance] will start an ephemeral container in an existing pod [Conformance]
/// [sig-node] Ephemeral Containers [NodeConformance] should update the ephemeral containers in an existing pod [Conformance]
/// `kubectl debug` adds ephemeral containers to a running pod; each runs
/// once, takes `kubectl exec`, and is reported apart from the app's.
#[test]
fn ephemeral_containers_join_a_running_pod() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("target", &image, "Always", "sleep 3600")));
    c.wait_for(&["get", "pod", "target", "-o", "jsonpath={.status.phase}"], "the pod to run", |p| p == "Running");
    c.ok(&["debug", "target", &format!("--image={image}"), "--container=debugger", "--", "sleep", "3600"]);
    c.ok(&["debug", "target", &format!("--image={image}"), "--container=once", "--", "sh", "-c", "echo done"]);
    let states = "{.status.ephemeralContainerStatuses[*].name}/{.status.ephemeralContainerStatuses[*].state.running.startedAt}";
    c.wait_for(&["get", "pod", "target", "-o", &format!("jsonpath={states}")], "the debugger to run", |s| s.starts_with("debugger once/") && !s.ends_with('/'));
    assert_eq!(c.ok(&["exec", "target", "-c", "debugger", "--", "echo", "polo"]), "polo\n");
    c.wait_for(&["get", "pod", "target", "-o", "jsonpath={.status.ephemeralContainerStatuses[1].state.terminated.reason}"], "the second to finish", |s| s == "Completed");
    assert_eq!(c.ok(&["logs", "target", "-c", "once"]), "done\n");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(jsonpath(&c, "target", "{.status.ephemeralContainerStatuses[1].restartCount}/{.status.ephemeralContainerStatuses[0].ready}"), "0/false", "never restarted, never ready");
    assert_eq!(jsonpath(&c, "target", "{.status.phase}/{.status.containerStatuses[*].name}"), "Running/main");
}

/// [sig-node] InitContainer [NodeConformance] should invoke init containers on a RestartNever pod [Conformance]
/// [sig-node] InitContainer [NodeConformance] should not start app containers and fail the pod if init containers fail on a RestartNever pod [Conformance]
/// [sig-node] InitContainer [NodeConformance] should invoke init containers on a RestartAlways pod [Conformance]
#[test]
fn init_containers_run_in_order_before_the_app() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let pod = |name: &str, restart: &str, second: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: {restart}\n  terminationGracePeriodSeconds: 1\n  volumes: [{{name: shared, emptyDir: {{}}}}]\n  initContainers:\n  - {{name: one, image: {image}, command: [sh, -c, 'echo one >> /shared/order'], volumeMounts: [{{name: shared, mountPath: /shared}}]}}\n  - {{name: two, image: {image}, command: [sh, -c, '{second}'], volumeMounts: [{{name: shared, mountPath: /shared}}]}}\n  containers:\n  - {{name: app, image: {image}, command: [sh, -c, 'echo app >> /shared/order; cat /shared/order; sleep 3600'], volumeMounts: [{{name: shared, mountPath: /shared}}]}}\n"
        )
    };
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("works", "Never", "echo two >> /shared/order")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("fails", "Never", "exit 1")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("retries", "Always", "exit 1")));
    c.wait_for(&["get", "pod", "works", "-o", "jsonpath={.status.phase}"], "the pod to run", |p| p == "Running");
    c.wait_for(&["logs", "works"], "the app's output", |l| l == "one\ntwo\napp\n");
    let init = jsonpath(&c, "works", "{range .status.initContainerStatuses[*]}{.name}:{.state.terminated.reason}:{.ready} {end}");
    assert_eq!(init.trim(), "one:Completed:true two:Completed:true");
    c.wait_for(&["get", "pod", "works", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"], "Ready", |s| s == "True");

    c.wait_for(&["get", "pod", "fails", "-o", "jsonpath={.status.phase}"], "a failed init to fail the pod", |p| p == "Failed");
    assert_eq!(jsonpath(&c, "fails", "{.status.containerStatuses[0].state.waiting.reason}"), "PodInitializing");
    let table = c.ok(&["get", "pod", "fails", "--no-headers"]);
    assert!(table.contains("Init:Error"), "{table}");

    c.wait_for(&["get", "pod", "retries", "-o", "jsonpath={.status.initContainerStatuses[1].restartCount}"], "the failing init container to restart", |n| n.parse::<u32>().unwrap_or(0) >= 1);
    assert_eq!(jsonpath(&c, "retries", "{.status.phase}"), "Pending");
    assert_eq!(jsonpath(&c, "retries", "{.status.conditions[?(@.type=='Initialized')].reason}"), "ContainersNotInitialized");
    let table = c.ok(&["get", "pod", "retries", "--no-headers"]);
    assert!(table.contains("Init:"), "{table}");
}

/// [sig-node] Downward API should provide pod name, namespace and IP address as env vars [NodeConformance] [Conformance]
/// [sig-node] Variable Expansion should allow composing env vars into new env vars [NodeConformance] [Conformance]
/// [sig-node] Variable Expansion should allow substituting values in a container's command [NodeConformance] [Conformance]
/// [sig-node] Variable Expansion should allow substituting values in a container's args [NodeConformance] [Conformance]
/// [sig-node] Variable Expansion should allow substituting values in a volume subpath [Conformance]
/// [sig-storage] ConfigMap should be consumable from pods in volume [NodeConformance] [Conformance]
/// [sig-storage] Secrets should be consumable from pods in volume [NodeConformance] [Conformance]
/// [sig-storage] Downward API volume should provide podname only [NodeConformance] [Conformance]
/// [sig-storage] Projected combined should project all components that make up the projection API [Projection] [NodeConformance] [Conformance]
/// Environment and volumes as a container sees them.
#[test]
fn environment_and_volumes_reach_the_container() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    c.ok(&["create", "configmap", "settings", "--from-literal=color=blue", "--from-literal=size=10"]);
    c.ok(&["create", "secret", "generic", "creds", "--from-literal=password=s3cret"]);
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: env, labels: {{app: env}}}}
spec:
  restartPolicy: Never
  volumes:
  - {{name: config, configMap: {{name: settings}}}}
  - {{name: secret, secret: {{secretName: creds, defaultMode: 0400}}}}
  - {{name: info, downwardAPI: {{items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}, {{path: name, fieldRef: {{fieldPath: metadata.name}}}}]}}}}
  - {{name: scratch, emptyDir: {{}}}}
  - name: all
    projected:
      sources:
      - configMap: {{name: settings, items: [{{key: color, path: color}}]}}
      - secret: {{name: creds}}
      - downwardAPI: {{items: [{{path: ns, fieldRef: {{fieldPath: metadata.namespace}}}}]}}
  containers:
  - name: main
    image: {image}
    command: [sh, -c, 'echo "$(GREETING) $0"; echo name=$POD_NAME ns=$POD_NAMESPACE ip=$POD_IP; echo color=$COLOR cfg_size=$cfg_size pw=$PASSWORD mem=$MEM; cat /config/color; echo; cat /secret/password; echo; stat -c %a /secret/..data/password; cat /info/labels; echo; cat /info/name; echo; cat /all/color /all/password /all/ns; echo; echo sub > /scratch/$(POD_NAME)/file; ls /scratch/env; cat /etc/hostname']
    args: [$(POD_NAME)]
    resources: {{limits: {{memory: 64Mi}}}}
    env:
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: POD_NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
    - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    - {{name: GREETING, value: "hi $(POD_NAME)"}}
    - {{name: COLOR, valueFrom: {{configMapKeyRef: {{name: settings, key: color}}}}}}
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}}}
    - {{name: MEM, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
    envFrom: [{{prefix: cfg_, configMapRef: {{name: settings}}}}]
    volumeMounts:
    - {{name: config, mountPath: /config}}
    - {{name: secret, mountPath: /secret}}
    - {{name: info, mountPath: /info}}
    - {{name: all, mountPath: /all}}
    - {{name: scratch, mountPath: /scratch/env, subPathExpr: $(POD_NAME)}}
"#
    );
    c.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    c.wait_for(&["get", "pod", "env", "-o", "jsonpath={.status.phase}"], "the pod to finish", |p| p == "Succeeded" || p == "Failed");
    let ip = jsonpath(&c, "env", "{.status.podIP}");
    let logs = c.ok(&["logs", "env"]);
    let expected = format!("hi env env\nname=env ns=default ip={ip}\ncolor=blue cfg_size=10 pw=s3cret mem=64\nblue\ns3cret\n400\napp=\"env\"\nenv\nblues3cretdefault\nfile\nenv\n");
    assert_eq!(logs, expected);
}

/// A container over its memory limit is killed by the kernel: OOMKilled, 137.
#[test]
fn containers_over_their_memory_limit_are_oom_killed() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let hog = pod("hog", &image, "Never", "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived") + "    resources: {limits: {memory: 16Mi}}\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(&hog));
    c.wait_for(&["get", "pod", "hog", "-o", "jsonpath={.status.phase}"], "the pod to fail", |p| p == "Failed");
    assert_eq!(jsonpath(&c, "hog", "{.status.containerStatuses[0].state.terminated.reason}/{.status.containerStatuses[0].state.terminated.exitCode}"), "OOMKilled/137");
}

/// Deleting a pod stops it gracefully: SIGTERM first, SIGKILL once
/// terminationGracePeriodSeconds has passed; then nothing of it is left
/// on the host (containers, mounts, namespaces, cgroups, veths, shims).
#[test]
fn deleted_pods_stop_gracefully_and_leave_nothing_behind() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("polite", &image, "Always", "trap 'exit 0' TERM; while true; do sleep 0.1; done")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("stubborn", &image, "Always", "trap '' TERM; while true; do sleep 0.1; done")));
    for p in ["polite", "stubborn"] {
        c.wait_for(&["get", "pod", p, "-o", "jsonpath={.status.containerStatuses[0].state.running.startedAt}"], "the pod to run", |s| !s.is_empty());
    }
    let uids = c.ok(&["get", "pods", "-o", "jsonpath={.items[*].metadata.uid}"]);
    let started = Instant::now();
    c.ok(&["delete", "pod", "polite"]);
    let polite = started.elapsed();
    let started = Instant::now();
    c.ok(&["delete", "pod", "stubborn"]);
    let stubborn = started.elapsed();
    assert!(polite < Duration::from_millis(1800), "a pod that exits on SIGTERM goes at once: {polite:?}");
    assert!(stubborn >= Duration::from_secs(2), "a pod that ignores SIGTERM is killed after its grace period: {stubborn:?}");

    let dir = c.dir.path();
    assert!(std::fs::read_dir(dir.join("data/agent/containers")).unwrap().next().is_none(), "no container is left");
    assert!(common::mounts_under(dir).is_empty(), "no mount is left: {:?}", common::mounts_under(dir));
    assert!(std::fs::read_dir(dir.join("run/pods")).unwrap().next().is_none(), "no sandbox is left");
    let veths = std::process::Command::new("ip").args(["-o", "link", "show", "master", &bridge_of(&c)]).output().unwrap();
    assert!(String::from_utf8_lossy(&veths.stdout).trim().is_empty(), "no veth is left on the bridge");
    let shims = std::process::Command::new("pgrep").args(["-f", &format!("shim --id .* --bundle {}", dir.display())]).output().unwrap();
    assert!(shims.stdout.is_empty(), "no shim is left");
    for uid in uids.split_whitespace() {
        for controller in ["memory", "cpu", "pids"] {
            let cgroup = std::path::PathBuf::from(format!("/sys/fs/cgroup/{controller}/kubepods/pod{uid}"));
            assert!(!cgroup.exists(), "{} is left", cgroup.display());
        }
    }
}

/// The bridge the cluster's pods attach to (named after its pod CIDR's second octet).
fn bridge_of(c: &Cluster) -> String {
    format!("skt{}", c.ok(&["get", "node", "node-1", "-o", "jsonpath={.spec.podCIDR}"]).split('.').nth(1).unwrap())
}

/// Twenty replicas of a Deployment Ready on the one node.
#[test]
fn a_deployment_of_twenty_replicas_runs_on_one_node() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    c.ok(&["create", "deployment", "web", &format!("--image={image}"), "--replicas=20", "--", "sleep", "3600"]);
    c.ok(&["rollout", "status", "deploy/web", "--timeout=120s"]);
    let ips = c.ok(&["get", "pods", "-o", "jsonpath={range .items[*]}{.status.podIP} {end}"]);
    let mut unique: Vec<&str> = ips.split_whitespace().collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 20, "every pod has its own IP: {ips}");
    c.ok(&["scale", "deploy/web", "--replicas=0"]);
    c.wait_up_to(Duration::from_secs(60), &["get", "pods", "--no-headers"], "the pods to go", |o| o.trim().is_empty());
}

/// Restarting the agent (here with its server) leaves running pods alone:
/// the same container, no restart; a pod deleted while it was away is
/// cleaned up when it returns.
#[test]
fn restarting_the_agent_keeps_running_pods() {
    let image = common::test_image();
    let mut c = Cluster::start_node(&[]);
    for name in ["keeper", "goner"] {
        c.ok_stdin(&["apply", "-f", "-"], Some(&pod(name, &image, "Always", "echo started; sleep 3600")));
        c.wait_for(&["get", "pod", name, "-o", "jsonpath={.status.containerStatuses[0].state.running.startedAt}"], "the pod to run", |s| !s.is_empty());
    }
    let id = jsonpath(&c, "keeper", "{.status.containerStatuses[0].containerID}");
    c.stop();
    c.boot();
    // Gone while no agent watched: only its record in the API is removed.
    c.ok(&["delete", "pod", "goner", "--grace-period=0", "--force"]);
    c.wait_for(&["get", "node", "node-1", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"], "the node to be back", |s| s == "True");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(jsonpath(&c, "keeper", "{.status.containerStatuses[0].containerID}/{.status.containerStatuses[0].restartCount}"), format!("{id}/0"));
    assert_eq!(c.ok(&["logs", "keeper"]), "started\n");
    c.wait_for(&["get", "pods", "-o", "name"], "only the keeper to be listed", |o| o.trim() == "pod/keeper");
    let containers = std::fs::read_dir(c.dir.path().join("data/agent/containers")).unwrap().count();
    assert_eq!(containers, 1, "the goner's container is removed");
}

/// Images that cannot be had: ErrImageNeverPull, then ErrImagePull backing
/// off as ImagePullBackOff.
#[test]
fn images_that_cannot_be_pulled_are_reported() {
    common::test_image(); // the registry to ask
    let c = Cluster::start_node(&[]);
    let never = pod("never", "127.0.0.1:5000/busybox:absent", "Never", "true").replace("    command:", "    imagePullPolicy: Never\n    command:");
    c.ok_stdin(&["apply", "-f", "-"], Some(&never));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("missing", "127.0.0.1:5000/nosuch:1", "Never", "true")));
    c.wait_for(&["get", "pod", "never", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}"], "ErrImageNeverPull", |r| r == "ErrImageNeverPull");
    let reason = c.wait_for(&["get", "pod", "missing", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}"], "a failed pull", |r| r == "ErrImagePull" || r == "ImagePullBackOff");
    assert!(reason == "ErrImagePull" || reason == "ImagePullBackOff");
    c.wait_for(&["get", "pod", "missing", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}"], "the back-off", |r| r == "ImagePullBackOff");
}

/// `kubectl exec` over WebSocket (`v5.channel.k8s.io`, kubectl 1.32's
/// default): output streams, stdin, a terminal, the command's exit code,
/// and `kubectl cp` both ways.
#[test]
fn exec_runs_commands_in_a_container() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("box", &image, "Always", "sleep 3600")));
    c.wait_for(&["get", "pod", "box", "-o", "jsonpath={.status.containerStatuses[0].state.running.startedAt}"], "the pod to run", |s| !s.is_empty());
    let out = c.kubectl(&["exec", "box", "--", "sh", "-c", "echo out; echo err >&2; cat /etc/hostname"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\nbox\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let failed = c.kubectl(&["exec", "box", "--", "sh", "-c", "exit 3"]);
    assert_eq!(failed.status.code(), Some(3), "{}", String::from_utf8_lossy(&failed.stderr));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("command terminated with exit code 3"));
    let echoed = c.kubectl_stdin(&["exec", "-i", "box", "--", "sh", "-c", "tr a-z A-Z"], Some("piped input\n"));
    assert_eq!(String::from_utf8_lossy(&echoed.stdout), "PIPED INPUT\n");
    // On a terminal (`-it`, run under script(1) so kubectl has one): the
    // container sees a tty of the client's size from the start, all that
    // a short command writes arrives, and the exit code comes back.
    let on_tty = |command: &str, typed: &str| {
        let kubectl_it = format!("stty cols 100 rows 30; kubectl --kubeconfig {} exec -it box -- {command}", c.kubeconfig().display());
        let mut script = std::process::Command::new("script").args(["-qec", &kubectl_it, "/dev/null"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(&mut script.stdin.take().unwrap(), typed.as_bytes()).unwrap();
        let out = script.wait_with_output().unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code())
    };
    let (text, code) = on_tty("sh -c 'tty; stty size; exit 4'", "");
    assert!(text.contains("/dev/pts/0") && text.contains("30 100"), "{text}");
    assert_eq!(code, Some(4), "{text}");
    let (text, code) = on_tty("sh", "echo typed-$((2+3))\nexit 5\n");
    assert!(text.contains("typed-5"), "{text}");
    assert_eq!(code, Some(5), "{text}");
    let (text, code) = on_tty("/nosuch", "");
    assert!(text.contains("exec failed: unable to start container process") && !text.contains("level=error"), "{text}");
    assert_ne!(code, Some(0), "{text}");
    // `kubectl cp` is tar over exec, both ways.
    let local = c.dir.path().join("copied.txt");
    std::fs::write(&local, "copied content\n").unwrap();
    c.ok(&["cp", local.to_str().unwrap(), "box:/tmp/copied.txt"]);
    assert_eq!(c.ok(&["exec", "box", "--", "cat", "/tmp/copied.txt"]), "copied content\n");
    let back = c.dir.path().join("back.txt");
    c.ok(&["cp", "box:/tmp/copied.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied content\n");
    let err = c.fails(&["exec", "box", "-c", "nosuch", "--", "true"], None);
    assert!(err.contains("container nosuch is not valid for pod box"), "{err}");
}

/// Probes and lifecycle hooks: readiness by httpGet (busybox httpd),
/// tcpSocket and exec; liveness failing restarts the container; postStart
/// runs before the container counts as started; preStop runs on deletion.
/// [sig-node] Probing container should be restarted with a exec "cat /tmp/health" liveness probe [NodeConformance] [Conformance]
/// [sig-node] Container Lifecycle Hook when create a pod with lifecycle hook should execute poststart exec hook properly [NodeConformance] [Conformance]
/// [sig-node] Container Lifecycle Hook when create a pod with lifecycle hook should execute prestop exec hook properly [NodeConformance] [Conformance]
#[test]
fn probes_and_hooks_decide_readiness_and_restarts() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let host_dir = c.dir.path().join("hooks");
    std::fs::create_dir_all(&host_dir).unwrap();
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  terminationGracePeriodSeconds: 5
  volumes: [{{name: host, hostPath: {{path: {host}, type: Directory}}}}]
  containers:
  - name: httpd
    image: {image}
    command: [httpd, -f, -p, "8080", -h, /var/www]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe: {{httpGet: {{path: /index.html, port: http}}, periodSeconds: 1}}
    volumeMounts: [{{name: host, mountPath: /host}}]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, "echo started > /var/www/hook.txt"]}}}}
      preStop: {{exec: {{command: [sh, -c, "echo bye > /host/bye"]}}}}
  - name: flag
    image: {image}
    command: [sleep, "3600"]
    readinessProbe: {{exec: {{command: [cat, /tmp/ready]}}, periodSeconds: 1}}
  - name: port
    image: {image}
    command: [sleep, "3600"]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: dying}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {image}
    command: [sh, -c, "touch /tmp/health; sleep 2; rm /tmp/health; sleep 3600"]
    livenessProbe: {{exec: {{command: [cat, /tmp/health]}}, periodSeconds: 1, failureThreshold: 1}}
"#,
        host = host_dir.display()
    );
    c.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    let ready = |name: &str| format!("{{.status.containerStatuses[?(@.name=='{name}')].ready}}");
    c.wait_for(&["get", "pod", "web", "-o", &format!("jsonpath={}", ready("httpd"))], "httpd to be ready", |r| r == "true");
    c.wait_for(&["get", "pod", "web", "-o", &format!("jsonpath={}", ready("port"))], "the tcp probe to pass", |r| r == "true");
    assert_eq!(jsonpath(&c, "web", &ready("flag")), "false", "an exec probe that fails keeps its container unready");
    assert_eq!(jsonpath(&c, "web", "{.status.conditions[?(@.type=='Ready')].status}"), "False");
    c.ok(&["exec", "web", "-c", "flag", "--", "touch", "/tmp/ready"]);
    c.wait_for(&["get", "pod", "web", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"], "the pod to be Ready", |r| r == "True");
    assert_eq!(c.ok(&["exec", "web", "-c", "httpd", "--", "cat", "/var/www/hook.txt"]), "started\n", "postStart ran");

    c.wait_up_to(Duration::from_secs(45), &["get", "pod", "dying", "-o", "jsonpath={.status.containerStatuses[0].restartCount}"], "the liveness probe to restart it", |n| n.parse::<u32>().unwrap_or(0) >= 1);
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=dying", "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}"]);
    assert!(events.contains("Unhealthy: Liveness probe failed"), "{events}");
    assert!(events.contains("failed liveness probe, will be restarted"), "{events}");

    c.ok(&["delete", "pod", "web"]);
    assert_eq!(std::fs::read_to_string(host_dir.join("bye")).unwrap(), "bye\n", "preStop ran");
}

/// The Summary API through the API server's node proxy: the node, and each
/// running pod and container with CPU and memory read from its cgroups;
/// CPU rates from the second reading on; the pod's network. Then the same
/// as Prometheus metrics (`/metrics/resource`, `/metrics/cadvisor`,
/// `/metrics`), and through metrics.k8s.io as `kubectl top` reads it.
#[test]
fn stats_summary_and_metrics_report_node_pods_and_containers() {
    let image = common::test_image();
    let c = Cluster::start_node(&["--metric-resolution", "1s"]);
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("busy", &image, "Always", "while true; do :; done")));
    c.wait_for(&["get", "pod", "busy", "-o", "jsonpath={.status.containerStatuses[0].state.running.startedAt}"], "the pod to run", |s| !s.is_empty());
    let summary = |c: &Cluster| -> serde_json::Value { serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1/nodes/node-1/proxy/stats/summary"])).unwrap() };
    summary(&c);
    std::thread::sleep(Duration::from_millis(500));
    let s = summary(&c);
    assert_eq!(s["node"]["nodeName"], "node-1");
    assert!(s["node"]["memory"]["availableBytes"].as_u64().unwrap() > 0, "{s}");
    let pod = s["pods"].as_array().unwrap().iter().find(|p| p["podRef"]["name"] == "busy").unwrap_or_else(|| panic!("{s}"));
    let container = &pod["containers"][0];
    assert_eq!(container["name"], "main");
    assert!(container["memory"]["workingSetBytes"].as_u64().unwrap() > 0, "{container}");
    let cores = container["cpu"]["usageNanoCores"].as_u64().unwrap_or_else(|| panic!("{container}"));
    assert!(cores > 100_000_000, "a busy loop uses a good part of a core: {cores}");
    assert!(pod["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0, "{pod}");
    assert_eq!(pod["network"]["name"], "eth0", "{pod}");
    assert!(container["rootfs"]["usedBytes"].is_u64() && container["logs"]["usedBytes"].is_u64(), "{container}");

    // The same readings in Prometheus form, as upstream names them.
    let resource = c.ok(&["get", "--raw", "/api/v1/nodes/node-1/proxy/metrics/resource"]);
    let sample = |text: &str, series: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(sample(&resource, "container_cpu_usage_seconds_total{container=\"main\",namespace=\"default\",pod=\"busy\"}") > 0.0);
    assert!(sample(&resource, "pod_memory_working_set_bytes{namespace=\"default\",pod=\"busy\"}") > 0.0);
    assert!(sample(&resource, "node_cpu_usage_seconds_total") > 0.0);
    let cadvisor = c.ok(&["get", "--raw", "/api/v1/nodes/node-1/proxy/metrics/cadvisor"]);
    let uid = jsonpath(&c, "busy", "{.metadata.uid}");
    assert!(sample(&cadvisor, &format!("container_network_transmit_bytes_total{{container=\"\",id=\"/kubepods/pod{uid}\"")) >= 0.0);
    assert!(cadvisor.lines().any(|l| l.starts_with("container_memory_working_set_bytes{container=\"main\"") && l.contains("image=\"127.0.0.1:5000/busybox:test\"")), "{cadvisor}");
    assert!(cadvisor.lines().any(|l| l.starts_with("container_fs_usage_bytes{container=\"main\"")), "{cadvisor}");
    let own = c.ok(&["get", "--raw", "/api/v1/nodes/node-1/proxy/metrics"]);
    assert_eq!(sample(&own, "kubelet_running_pods"), 1.0);

    // metrics.k8s.io, read from the Summary API every second: `kubectl top`.
    let top = c.wait_for(&["top", "pod", "busy", "--no-headers"], "kubectl top to see the pod", |o| o.starts_with("busy"));
    let millicores: u64 = top.split_whitespace().nth(1).and_then(|c| c.strip_suffix('m')).and_then(|m| m.parse().ok()).unwrap_or_else(|| panic!("{top}"));
    assert!(millicores > 100, "a busy loop uses a good part of a core: {top}");
    let nodes = c.wait_for(&["top", "node", "--no-headers"], "kubectl top to see the node", |o| o.starts_with("node-1"));
    assert!(nodes.contains('%'), "{nodes}");
    let metrics = c.json(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dnone"]);
    assert_eq!(metrics["items"], serde_json::json!([]), "label selectors apply");
}

/// The test image as an archive (skopeo's `oci-archive` or
/// `docker-archive`), named `example.com/imported:<tag>`.
fn archive_of(c: &Cluster, image: &str, transport: &str, tag: &str) -> std::path::PathBuf {
    let archive = c.dir.path().join(format!("{tag}.tar"));
    let destination = format!("{transport}:{}:example.com/imported:{tag}", archive.display());
    let copied = std::process::Command::new("skopeo").args(["copy", "-q", "--src-tls-verify=false", &format!("docker://{image}"), &destination]).output().unwrap();
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    archive
}

/// A pod placed on node-1 directly (a pressed node is tainted against the scheduler).
fn pod_on_node(name: &str, namespace: &str, image: &str, extra: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  nodeName: node-1\n  terminationGracePeriodSeconds: 1\n{extra}  containers:\n  - name: main\n    image: {image}\n    command: [sleep, '3600']\n")
}

fn status_of(c: &Cluster, namespace: &str, name: &str) -> String {
    c.ok(&["get", "pod", "-n", namespace, name, "-o", "jsonpath={.status.phase}/{.status.reason}/{.status.message}"])
}

/// Under memory pressure (`--eviction-hard memory.available<100%`, always
/// crossed): the node reports MemoryPressure and is tainted; a Burstable
/// pod is admitted, then evicted as upstream reports it; a BestEffort pod
/// is refused; a critical pod runs on.
#[test]
fn memory_pressure_evicts_and_refuses_pods() {
    let image = common::test_image();
    // Memory pressure alone: this host's own disk must not add disk pressure.
    let c = Cluster::start_node(&["--eviction-hard", "memory.available<100%,nodefs.available<1%,imagefs.available<1%"]);
    c.wait_for(&["get", "node", "node-1", "-o", "jsonpath={.status.conditions[?(@.type=='MemoryPressure')].status}"], "MemoryPressure", |s| s == "True");
    c.wait_for(&["get", "node", "node-1", "-o", "jsonpath={.spec.taints[*].key}"], "the pressure taint", |t| t.contains("node.kubernetes.io/memory-pressure"));
    let requests = "  priorityClassName: system-node-critical\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_on_node("critical", "kube-system", &image, requests)));
    let burstable = pod_on_node("burstable", "default", &image, "").replace("command: [sleep, '3600']", "command: [sleep, '3600']\n    resources: {requests: {memory: 1Mi}}");
    c.ok_stdin(&["apply", "-f", "-"], Some(&burstable));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_on_node("besteffort", "default", &image, "")));
    let refused = c.wait_for(&["get", "pod", "besteffort", "-o", "jsonpath={.status.phase}"], "the BestEffort pod to be refused", |p| p == "Failed");
    assert_eq!(refused, "Failed");
    assert_eq!(status_of(&c, "default", "besteffort"), "Failed/Evicted/Pod was rejected: The node had condition: [MemoryPressure]. ");
    c.wait_up_to(Duration::from_secs(40), &["get", "pod", "burstable", "-o", "jsonpath={.status.phase}"], "the Burstable pod to be evicted", |p| p == "Failed");
    let evicted = status_of(&c, "default", "burstable");
    assert!(evicted.starts_with("Failed/Evicted/The node was low on resource: memory. Threshold quantity: 100%, available: "), "{evicted}");
    let disruption = jsonpath(&c, "burstable", "{.status.conditions[?(@.type=='DisruptionTarget')].reason}");
    assert_eq!(disruption, "TerminationByKubelet");
    assert!(!jsonpath(&c, "burstable", "{.status.containerStatuses[0].state.terminated.reason}").is_empty(), "its container was stopped");
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(c.ok(&["get", "pod", "-n", "kube-system", "critical", "-o", "jsonpath={.status.phase}"]), "Running", "critical pods are never evicted");
}

/// A persistentVolumeClaim bound to a hostPath PersistentVolume mounts
/// the volume's directory (what the container writes is on the host);
/// with `fsGroup` the group owns the emptyDir (setgid) and the projected
/// files, as upstream's volume ownership does.
#[test]
fn claims_mount_their_volume_and_fs_group_owns_volumes() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let host_dir = c.dir.path().join("pv-data");
    let manifests = format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: pv-local}}\nspec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  hostPath: {{path: {dir}, type: DirectoryOrCreate}}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: claim}}\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: \"\"\n  volumeName: pv-local\n  resources: {{requests: {{storage: 1Gi}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: token}}\nstringData: {{key: value}}\n",
        dir = host_dir.display()
    );
    c.ok_stdin(&["apply", "-f", "-"], Some(&manifests));
    let script = "echo kept > /data/file; stat -c %g:%a /scratch; stat -L -c %g /secret/key; touch /scratch/new; stat -c %g /scratch/new; sleep 3600";
    let owner = pod("owner", &image, "Always", script)
        + "    securityContext: {runAsUser: 1000}\n    volumeMounts: [{name: data, mountPath: /data}, {name: scratch, mountPath: /scratch}, {name: secret, mountPath: /secret}]\n"
        + "  securityContext: {fsGroup: 2000}\n  volumes:\n  - {name: data, persistentVolumeClaim: {claimName: claim}}\n  - {name: scratch, emptyDir: {}}\n  - {name: secret, secret: {secretName: token}}\n";
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::set_permissions(&host_dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    c.ok_stdin(&["apply", "-f", "-"], Some(&owner));
    let logs = c.wait_for(&["logs", "owner"], "the pod to report", |l| l.lines().count() >= 3);
    assert_eq!(logs, "2000:2777\n2000\n2000\n", "the emptyDir, the secret and a new file belong to the fsGroup");
    assert_eq!(std::fs::read_to_string(host_dir.join("file")).unwrap(), "kept\n");
}

/// A disk-backed emptyDir grown past its `sizeLimit` evicts its pod, as
/// upstream's local storage eviction does.
#[test]
fn an_empty_dir_past_its_size_limit_evicts_the_pod() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let filler = pod("filler", &image, "Always", "dd if=/dev/zero of=/scratch/fill bs=1M count=3; sleep 3600")
        + "    volumeMounts: [{name: scratch, mountPath: /scratch}]\n  volumes: [{name: scratch, emptyDir: {sizeLimit: 1Mi}}]\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(&filler));
    c.wait_up_to(Duration::from_secs(40), &["get", "pod", "filler", "-o", "jsonpath={.status.phase}"], "the pod to be evicted", |p| p == "Failed");
    assert_eq!(status_of(&c, "default", "filler"), "Failed/Evicted/Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ");
}

/// Under disk pressure (`nodefs.available<100%`, always crossed): unused
/// images are collected first (an imported one goes, the one a running
/// pod uses stays); new pods are refused; critical ones still start.
#[test]
fn disk_pressure_collects_unused_images_and_refuses_pods() {
    let image = common::test_image();
    let c = Cluster::start_node(&["--eviction-hard", "nodefs.available<100%,imagefs.available<100%", "--image-minimum-gc-age", "0s"]);
    c.wait_for(&["get", "node", "node-1", "-o", "jsonpath={.status.conditions[?(@.type=='DiskPressure')].status}"], "DiskPressure", |s| s == "True");
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_on_node("critical", "kube-system", &image, "  priorityClassName: system-node-critical\n")));
    c.wait_for(&["get", "pod", "-n", "kube-system", "critical", "-o", "jsonpath={.status.phase}"], "the critical pod to run", |p| p == "Running");
    let archive = archive_of(&c, &image, "docker-archive", "unused");
    let imported = std::process::Command::new(env!("CARGO_BIN_EXE_skiff")).args(["image", "import"]).arg(&archive).arg("--data-dir").arg(c.dir.path().join("data")).output().unwrap();
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    let list = || String::from_utf8(std::process::Command::new(env!("CARGO_BIN_EXE_skiff")).args(["image", "ls", "--data-dir"]).arg(c.dir.path().join("data")).output().unwrap().stdout).unwrap();
    assert!(list().contains("example.com/imported"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while list().contains("example.com/imported") {
        assert!(Instant::now() < deadline, "the unused image was not collected: {}", list());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(list().contains("busybox"), "the image in use stays: {}", list());
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_on_node("ordinary", "default", &image, "")));
    c.wait_for(&["get", "pod", "ordinary", "-o", "jsonpath={.status.phase}"], "the pod to be refused", |p| p == "Failed");
    assert_eq!(status_of(&c, "default", "ordinary"), "Failed/Evicted/Pod was rejected: The node had condition: [DiskPressure]. ");
}

/// `skiff image import` of an OCI archive and a Docker archive (made by
/// skopeo from the test image) beside the running agent: pods run them
/// with `imagePullPolicy: Never`; `skiff image ls` lists them; `skiff
/// image rm` refuses an image a container uses, then removes it.
#[test]
fn images_are_imported_listed_and_removed() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let skiff = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff")).args(["image"]).args(args).arg("--data-dir").arg(c.dir.path().join("data")).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    for (transport, tag) in [("oci-archive", "oci"), ("docker-archive", "docker")] {
        let archive = archive_of(&c, &image, transport, tag);
        let (ok, out) = skiff(&["import", archive.to_str().unwrap()]);
        assert!(ok && out.starts_with(&format!("example.com/imported:{tag} sha256:")), "{out}");
        let manifest = pod(&format!("from-{tag}"), &format!("example.com/imported:{tag}"), "Always", "echo ran; sleep 3600") + "    imagePullPolicy: Never\n";
        c.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    }
    for tag in ["oci", "docker"] {
        c.wait_for(&["logs", &format!("from-{tag}")], "the imported image to run", |l| l == "ran\n");
    }
    let (_, listed) = skiff(&["ls"]);
    assert!(listed.lines().any(|l| l.starts_with("example.com/imported") && l.contains(" oci ")), "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("example.com/imported") && l.contains(" docker ")), "{listed}");
    let (ok, out) = skiff(&["rm", "example.com/imported:oci"]);
    assert!(!ok && out.contains("is in use by container"), "{out}");
    c.ok(&["delete", "pod", "from-oci", "--grace-period=1"]);
    let (ok, out) = skiff(&["rm", "example.com/imported:oci"]);
    assert!(ok && out.starts_with("Deleted: sha256:"), "{out}");
    let (_, listed) = skiff(&["ls"]);
    assert!(!listed.contains(" oci ") && listed.contains(" docker "), "{listed}");
    let (ok, out) = skiff(&["import", "/etc/hostname"]);
    assert!(!ok && out.contains("not a tar archive"), "{out}");
}

/// Container logs rotate by size (`--container-log-max-size`, keeping
/// `--container-log-max-files`): `kubectl logs` shows the live file,
/// `kubectl logs -f` follows across rotations and misses nothing.
#[test]
fn container_logs_rotate_by_size() {
    let image = common::test_image();
    let c = Cluster::start_node(&["--container-log-max-size", "4Ki", "--container-log-max-files", "3"]);
    let script = "sleep 1; i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); [ $((i % 50)) = 0 ] && sleep 0.1; done; sleep 3600";
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("chatty", &image, "Always", script)));
    c.wait_for(&["get", "pod", "chatty", "-o", "jsonpath={.status.containerStatuses[0].state.running.startedAt}"], "the pod to run", |s| !s.is_empty());
    let follow = std::process::Command::new("kubectl")
        .args(["logs", "-f", "chatty"])
        .env("KUBECONFIG", c.kubeconfig())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.wait_for(&["logs", "chatty", "--tail=1"], "the last line", |l| l == "line-399\n");
    let mut follow = follow;
    std::thread::sleep(Duration::from_millis(300));
    let _ = follow.kill();
    let followed = String::from_utf8(follow.wait_with_output().unwrap().stdout).unwrap();
    let expected: String = (0..400).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(followed, expected, "-f missed or repeated lines across rotations");
    let dir = std::fs::read_dir(c.dir.path().join("pod-logs")).unwrap().next().unwrap().unwrap().path().join("main");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files.len(), 3, "the live file and two rotated: {files:?}");
    assert!(std::fs::metadata(dir.join("0.log")).unwrap().len() <= 4096);
    let live = c.ok(&["logs", "chatty"]);
    assert!(live.ends_with("line-399\n") && !live.starts_with("line-0\n"), "{live}");
}

/// securityContext.seccompProfile: RuntimeDefault installs a filter that
/// refuses what upstream's default profile refuses (here `unshare`);
/// Unconfined, as no profile, installs none; a Localhost profile that is
/// not there keeps the container from being created.
#[test]
fn seccomp_profiles_filter_system_calls() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let script = "grep Seccomp: /proc/self/status; unshare -U true && echo unshared; sleep 3600";
    let confined = pod("confined", &image, "Always", script) + "    securityContext: {seccompProfile: {type: RuntimeDefault}}\n";
    let open = pod("open", &image, "Always", script) + "    securityContext: {seccompProfile: {type: Unconfined}}\n";
    let missing = pod("missing", &image, "Always", script) + "    securityContext: {seccompProfile: {type: Localhost, localhostProfile: nosuch.json}}\n";
    for manifest in [confined, open, missing] {
        c.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    }
    for name in ["confined", "open"] {
        c.wait_for(&["logs", name], "the pod to report", |l| l.contains("Seccomp:"));
    }
    std::thread::sleep(Duration::from_millis(300));
    let confined = c.ok(&["logs", "confined"]);
    assert!(confined.contains("Seccomp:\t2") && !confined.contains("unshared"), "{confined}");
    assert!(c.ok(&["logs", "open"]).contains("Seccomp:\t0"));
    let reason = c.wait_for(&["get", "pod", "missing", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}"], "the pod to fail creating", |r| r == "CreateContainerConfigError" || r == "CreateContainerError");
    assert!(!reason.is_empty());
    let message = jsonpath(&c, "missing", "{.status.containerStatuses[0].state.waiting.message}");
    assert!(message.contains("cannot load seccomp profile"), "{message}");
}

/// `kubectl attach -i` to a container with `stdin: true`, over WebSocket
/// and over SPDY: what is typed reaches the container's stdin, and its
/// stdout and stderr come back as it writes them.
#[test]
fn attach_reaches_a_running_container() {
    use std::io::{BufRead, Write};
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let talk = pod("talk", &image, "Always", "while read line; do echo got:$line; echo err:$line >&2; done") + "    stdin: true\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(&talk));
    c.wait_for(&["get", "pod", "talk", "-o", "jsonpath={.status.containerStatuses[0].state.running.startedAt}"], "the pod to run", |s| !s.is_empty());
    for websockets in ["true", "false"] {
        let mut attach = std::process::Command::new("kubectl")
            .args(["attach", "-i", "talk"])
            .env("KUBECONFIG", c.kubeconfig())
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = attach.stdin.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for output in [Box::new(attach.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, Box::new(attach.stderr.take().unwrap())] {
            let tx = tx.clone();
            std::thread::spawn(move || std::io::BufReader::new(output).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
        }
        // Typed until the session is up: what comes before is not attached.
        let (mut got, mut err) = (false, false);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(got && err) {
            assert!(Instant::now() < deadline, "attach over websockets={websockets} did not echo");
            writeln!(stdin, "hello").unwrap();
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
                got |= line == "got:hello";
                err |= line == "err:hello";
            }
        }
        let _ = attach.kill();
        let _ = attach.wait();
    }
}

/// `kubectl run -it --rm` (a pod with `tty: true` and `stdin: true`,
/// attached on a terminal, run under script(1)), over WebSocket and SPDY:
/// the container has a terminal of the client's size, takes what is
/// typed, and the pod goes when the shell exits.
#[test]
fn kubectl_run_it_attaches_to_a_container_terminal() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    for (n, websockets) in ["true", "false"].iter().enumerate() {
        let run = format!(
            "stty cols 90 rows 20; KUBECTL_REMOTE_COMMAND_WEBSOCKETS={websockets} kubectl --kubeconfig {} run shell-{n} --image={image} --restart=Never -it --rm -- sh",
            c.kubeconfig().display()
        );
        let mut script = std::process::Command::new("script").args(["-qec", &run, "/dev/null"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
        let mut stdin = script.stdin.take().unwrap();
        c.wait_for(&["get", "pod", &format!("shell-{n}"), "-o", "jsonpath={.status.phase}"], "the shell to run", |p| p == "Running");
        std::thread::sleep(Duration::from_secs(2));
        use std::io::Write;
        writeln!(stdin, "stty size; tty; echo typed-$((6*7)); exit").unwrap();
        let out = script.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("20 90") && text.contains("/dev/pts/0") && text.contains("typed-42"), "websockets={websockets}: {text}");
        c.wait_for(&["get", "pods", "-o", "name"], "--rm to delete the pod", |o| !o.contains(&format!("shell-{n}")));
    }
}

/// `kubectl port-forward` as it dials: the local port is read from its
/// "Forwarding from 127.0.0.1:N" line; the child is killed when dropped.
/// Its stdout is kept open: kubectl fails writing to a closed pipe.
struct PortForward(std::process::Child, u16, #[allow(dead_code)] std::io::BufReader<std::process::ChildStdout>);

impl PortForward {
    fn start(c: &Cluster, env: &[(&str, &str)], target: &str) -> PortForward {
        use std::io::BufRead;
        let mut child = std::process::Command::new("kubectl")
            .arg("port-forward")
            .args(target.split_whitespace())
            .env("KUBECONFIG", c.kubeconfig())
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(c.dir.path().join("port-forward.err")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let port = line.split("127.0.0.1:").nth(1).and_then(|r| r.split(' ').next()).and_then(|p| p.parse().ok());
        PortForward(child, port.unwrap_or_else(|| panic!("kubectl port-forward printed {line:?}")), stdout)
    }

    /// An HTTP GET through the forwarded port; the whole response.
    fn get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", self.1)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(tcp, "GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n").unwrap();
        let mut response = Vec::new();
        let _ = tcp.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kubectl port-forward` to busybox httpd, over SPDY tunnelled through
/// WebSocket (kubectl's default) and over plain SPDY; a port nothing
/// listens on is reported as upstream words it. `kubectl exec` over SPDY
/// (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false`): output streams, stdin,
/// exit codes and terminals, as over WebSocket.
#[test]
fn port_forward_and_exec_over_spdy() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let serve = "mkdir -p /www && echo served-from-the-pod > /www/index.html && dd if=/dev/zero of=/www/big bs=1k count=2048 2>/dev/null && exec httpd -f -p 127.0.0.1:80 -h /www";
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("web", &image, "Always", serve)));
    c.wait_for(&["get", "pod", "web", "-o", "jsonpath={.status.containerStatuses[0].state.running.startedAt}"], "the pod to run", |s| !s.is_empty());
    c.wait_for(&["exec", "web", "--", "sh", "-c", "netstat -ltn | grep -c 127.0.0.1:80 || true"], "httpd to listen", |n| n.trim() == "1");
    for env in [vec![], vec![("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")]] {
        // httpd listens on the pod's loopback only: reached from inside its network namespace.
        let forward = PortForward::start(&c, &env, "pod/web :80");
        for _ in 0..2 {
            let page = forward.get("/index.html");
            let err = std::fs::read_to_string(c.dir.path().join("port-forward.err")).unwrap();
            assert!(page.starts_with("HTTP/1.1 200 OK") && page.ends_with("served-from-the-pod\n"), "{env:?}: {page} {err}");
        }
        let big = forward.get("/big");
        assert!(big.len() > 2048 * 1024, "{env:?}: 2 MiB through the tunnel, got {}", big.len());
    }
    let refused = PortForward::start(&c, &[], "pod/web :81");
    assert_eq!(refused.get("/"), "", "nothing listens on 81");
    let mut refused = refused;
    let _ = refused.0.wait();
    let err = std::fs::read_to_string(c.dir.path().join("port-forward.err")).unwrap();
    assert!(err.contains("error forwarding port 81 to pod") && err.contains("connect"), "{err}");

    let spdy = [("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")];
    let exec = |args: &[&str], stdin: Option<&str>| common::kubectl_env(&c.kubeconfig(), &spdy, args, stdin);
    let out = exec(&["exec", "web", "--", "sh", "-c", "echo out; echo err >&2"], None);
    assert_eq!((String::from_utf8_lossy(&out.stdout).as_ref(), String::from_utf8_lossy(&out.stderr).as_ref()), ("out\n", "err\n"));
    let failed = exec(&["exec", "web", "--", "sh", "-c", "exit 3"], None);
    assert_eq!(failed.status.code(), Some(3), "{}", String::from_utf8_lossy(&failed.stderr));
    let echoed = exec(&["exec", "-i", "web", "--", "tr", "a-z", "A-Z"], Some("piped input\n"));
    assert_eq!(String::from_utf8_lossy(&echoed.stdout), "PIPED INPUT\n");
    let kubectl_it = format!("stty cols 90 rows 20; KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false kubectl --kubeconfig {} exec -it web -- sh -c 'stty size; exit 4'", c.kubeconfig().display());
    let on_tty = std::process::Command::new("script").args(["-qec", &kubectl_it, "/dev/null"]).output().unwrap();
    let text = String::from_utf8_lossy(&on_tty.stdout);
    assert!(text.contains("20 90"), "{text:?}");
    assert_eq!(on_tty.status.code(), Some(4), "{text}");
}

/// A HorizontalPodAutoscaler on CPU, from real usage through
/// metrics.k8s.io: pods capped at 50m that request 10m are at 500 % of
/// their request, so a 100 % target scales the Deployment up to its
/// maximum (ScalingLimited); a 2000 % target on the container's own CPU
/// (ContainerResource) with no stabilization window scales it back down;
/// events and status as upstream's; a Pods metric, with no custom metrics
/// API to read, fails as upstream's does.
#[test]
fn horizontal_pod_autoscaler_scales_on_cpu() {
    let image = common::test_image();
    let c = Cluster::start_node(&["--metric-resolution", "1s", "--horizontal-pod-autoscaler-sync-period", "2s"]);
    let burn = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: burn}}\nspec:\n  selector: {{matchLabels: {{app: burn}}}}\n  template:\n    metadata: {{labels: {{app: burn}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {image}\n        command: [sh, -c, 'while true; do :; done']\n        resources: {{requests: {{cpu: 10m}}, limits: {{cpu: 50m}}}}\n"
    );
    c.ok_stdin(&["apply", "-f", "-"], Some(&burn));
    c.ok(&["autoscale", "deployment", "burn", "--cpu-percent=100", "--min=1", "--max=3"]);
    c.wait_up_to(Duration::from_secs(60), &["get", "deploy", "burn", "-o", "jsonpath={.spec.replicas}"], "the autoscaler to scale up", |r| r == "3");
    let limited = c.ok(&["get", "hpa", "burn", "-o", "jsonpath={.status.conditions[?(@.type=='ScalingLimited')].reason}"]);
    assert_eq!(limited, "TooManyReplicas");
    // At its maximum, a lower reading since is held back by the
    // scale-down window; without `behavior` nothing holds a rise back.
    let able = c.ok(&["get", "hpa", "burn", "-o", "jsonpath={.status.conditions[?(@.type=='AbleToScale')].status} {.status.conditions[?(@.type=='AbleToScale')].reason}"]);
    // SucceededRescale while the sync that scaled up is the latest.
    assert!(["True ReadyForNewScale", "True ScaleDownStabilized", "True SucceededRescale"].contains(&able.as_str()), "{able}");
    let utilization: i64 = c.ok(&["get", "hpa", "burn", "-o", "jsonpath={.status.currentMetrics[0].resource.current.averageUtilization}"]).parse().unwrap();
    assert!(utilization > 100, "{utilization}");
    let events = ["get", "events", "--field-selector", "involvedObject.name=burn,involvedObject.kind=HorizontalPodAutoscaler", "-o", "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}"];
    c.wait_for(&events, "the scale-up event", |e| e.contains("New size: 3; reason: cpu resource utilization (percentage of request) above target"));

    // The container's own CPU (ContainerResource) against a 2000 % target.
    let lower = r#"{"spec":{"metrics":[{"type":"ContainerResource","containerResource":{"name":"cpu","container":"main","target":{"type":"Utilization","averageUtilization":2000}}}],"behavior":{"scaleDown":{"stabilizationWindowSeconds":0}}}}"#;
    c.ok(&["patch", "hpa", "burn", "--type=merge", "-p", lower]);
    c.wait_up_to(Duration::from_secs(60), &["get", "deploy", "burn", "-o", "jsonpath={.spec.replicas}"], "the autoscaler to scale down", |r| r == "1");
    c.wait_for(&events, "the scale-down event", |e| e.contains("New size: 1; reason: All metrics below target"));
    let active = c.ok(&["get", "hpa", "burn", "-o", "jsonpath={.status.conditions[?(@.type=='ScalingActive')].reason} {.status.currentMetrics[0].containerResource.container}"]);
    assert_eq!(active, "ValidMetricFound main");

    // A Pods metric has no custom metrics API to come from: it fails with
    // upstream's reason for its type, and as the only metric it stops
    // scaling (ScalingActive False).
    let pods_metric = r#"{"spec":{"metrics":[{"type":"Pods","pods":{"metric":{"name":"qps"},"target":{"type":"AverageValue","averageValue":"10"}}}]}}"#;
    c.ok(&["patch", "hpa", "burn", "--type=merge", "-p", pods_metric]);
    let scaling = ["get", "hpa", "burn", "-o", "jsonpath={.status.conditions[?(@.type=='ScalingActive')].status} {.status.conditions[?(@.type=='ScalingActive')].reason}"];
    c.wait_for(&scaling, "the Pods metric to fail", |r| r == "False FailedGetPodsMetric");
    c.wait_for(&events, "upstream's summary event", |e| e.contains("invalid metrics (1 invalid out of 1), first error is: unable to get metric qps"));
}

/// A node agent of its own process on this host, joined with `skiff
/// agent`; dropping it stops it and removes what its pods left.
struct JoinedAgent {
    child: std::process::Child,
    dir: std::path::PathBuf,
    bridge: String,
}

impl JoinedAgent {
    fn start(c: &Cluster, name: &str, token: Option<&str>) -> JoinedAgent {
        let dir = c.dir.path().join(name);
        let bridge = format!("{}{}", bridge_of(c), &name[name.len() - 1..]);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Self::spawn(c, name, &dir, &bridge, token);
        JoinedAgent { child, dir, bridge }
    }

    fn spawn(c: &Cluster, name: &str, dir: &std::path::Path, bridge: &str, token: Option<&str>) -> std::process::Child {
        let log = std::fs::File::options().create(true).append(true).open(dir.join("agent.log")).unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"));
        command.args(["agent", "--server", &c.url(), "--node-name", name, "--kubelet-port", "0", "--cni-bridge", bridge]);
        command.arg("--ca-file").arg(c.ca_file()).arg("--data-dir").arg(dir.join("data"));
        command.arg("--agent-run-dir").arg(dir.join("run")).arg("--pod-log-dir").arg(dir.join("pod-logs"));
        command.args(token.map(|t| ["--token", t]).into_iter().flatten()).args(common::LENIENT_EVICTION);
        command.stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap()
    }

    /// Kills the process, leaving its containers running (as a kubelet
    /// restart does), and starts it again without a token.
    fn restart(&mut self, c: &Cluster, name: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(c, name, &self.dir, &self.bridge, None);
    }
}

impl Drop for JoinedAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        common::remove_node_leftovers(&self.dir, Some(&self.bridge));
    }
}

fn node_ready(c: &Cluster, name: &str, what: &str) {
    let ready = "jsonpath={.status.conditions[?(@.type=='Ready')].status}";
    c.wait_for(&["get", "node", name, "-o", ready], what, |s| s == "True");
}

/// `skiff agent --server URL --token TOKEN` joins from its own process as
/// upstream's kubelet does with TLS bootstrap: the bootstrap token's CSR
/// for a client certificate is approved after a SubjectAccessReview and
/// signed; the node asks for its serving certificate as itself. Its pods
/// run, and their logs and exec reach it through the API server, which
/// checks that certificate. Restarted without a token it keeps its
/// identity; while the API server is away its pods run on, and their
/// status catches up when it returns; a token that is not the cluster's
/// gets nothing.
#[test]
fn an_agent_joins_with_a_bootstrap_token() {
    let image = common::test_image();
    let mut c = Cluster::start_node(&[]);
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_skiff")).args(["token", "create", "--kubeconfig"]).arg(c.kubeconfig()).output().unwrap();
    let token = String::from_utf8(created.stdout).unwrap().trim().to_string();
    let mut agent = JoinedAgent::start(&c, "node-b", Some(&token));
    node_ready(&c, "node-b", "node-b to join and be Ready");
    let csrs = c.ok(&["get", "csr", "-o", "jsonpath={range .items[*]}{.spec.signerName} {.spec.username} {.status.conditions[0].type}{\"\\n\"}{end}"]);
    let id = token.split('.').next().unwrap();
    assert!(csrs.contains(&format!("kubernetes.io/kube-apiserver-client-kubelet system:bootstrap:{id} Approved")), "{csrs}");
    assert!(csrs.contains("kubernetes.io/kubelet-serving system:node:node-b Approved"), "{csrs}");

    let on_b = pod("on-b", &image, "Always", "echo from node-b; sleep 3600") + "  nodeName: node-b\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(&on_b));
    c.wait_for(&["get", "pod", "on-b", "-o", "jsonpath={.status.phase}"], "the pod on node-b to run", |p| p == "Running");
    assert_eq!(c.ok(&["logs", "on-b"]), "from node-b\n");
    assert_eq!(c.ok(&["exec", "on-b", "--", "hostname"]), "on-b\n");
    let node_cidr = c.ok(&["get", "node", "node-b", "-o", "jsonpath={.spec.podCIDR}"]);
    let prefix = node_cidr.rsplit_once('.').unwrap().0;
    assert!(jsonpath(&c, "on-b", "{.status.podIP}").starts_with(prefix), "the pod's IP is from node-b's CIDR {node_cidr}");

    // Restarted with no token, it is still node-b, with the same container.
    let container = jsonpath(&c, "on-b", "{.status.containerStatuses[0].containerID}");
    agent.restart(&c, "node-b");
    std::thread::sleep(Duration::from_secs(2));
    node_ready(&c, "node-b", "node-b to be back");
    assert_eq!(jsonpath(&c, "on-b", "{.status.containerStatuses[0].containerID}/{.status.containerStatuses[0].restartCount}"), format!("{container}/0"));

    // The API server goes away and comes back: the node's pods run on, and
    // what happened meanwhile (a pod finishing) is reported on its return.
    let brief = pod("brief", &image, "Never", "sleep 3") + "  nodeName: node-b\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(&brief));
    c.wait_for(&["get", "pod", "brief", "-o", "jsonpath={.status.phase}"], "the brief pod to run", |p| p == "Running");
    c.stop();
    std::thread::sleep(Duration::from_secs(5));
    c.boot();
    c.wait_for(&["get", "pod", "brief", "-o", "jsonpath={.status.phase}"], "the brief pod's end to be reported", |p| p == "Succeeded");
    assert_eq!(jsonpath(&c, "on-b", "{.status.containerStatuses[0].containerID}/{.status.containerStatuses[0].restartCount}"), format!("{container}/0"));
    c.ok(&["delete", "pod", "on-b", "brief", "--grace-period=1"]);
    drop(agent);

    // A made-up token is refused and joins nothing.
    let mut stranger = JoinedAgent::start(&c, "node-c", Some("abcdef.0123456789abcdef"));
    assert!(!stranger.child.wait().unwrap().success());
    let log = std::fs::read_to_string(stranger.dir.join("agent.log")).unwrap();
    assert!(log.contains("Unauthorized"), "{log}");
    assert_eq!(c.kubectl(&["get", "node", "node-c"]).status.code(), Some(1));
}

/// The backend of the proxy tests: busybox httpd on 8080 whose CGI
/// script answers every method (upstream's agnhost porter, in busybox)
/// with what it was sent as JSON, plus a page with a link, and a second
/// httpd on 8081 answering `bar`. Labelled `app: web`; the `web`
/// Service's `portname1` is 8080 by name, `portname2` 8081 by number.
const PROXY_BACKEND: &str = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: web}
data:
  echo: |
    #!/bin/sh
    echo "Content-Type: application/json"
    echo
    body=$(cat)
    printf '{"Method":"%s","Body":"%s","Path":"%s","Query":"%s","ForwardedUri":"%s","ForwardedFor":"%s","Authorization":"%s"}\n' "$REQUEST_METHOD" "$body" "$PATH_INFO" "$QUERY_STRING" "$HTTP_X_FORWARDED_URI" "$HTTP_X_FORWARDED_FOR" "$HTTP_AUTHORIZATION"
  page.html: |
    <a href="/rewriteme">test</a>
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: portname1, port: 80, targetPort: http}
  - {name: portname2, port: 81, targetPort: 8081}
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 0
  volumes: [{name: files, configMap: {name: web}}]
  containers:
  - name: web
    image: IMAGE
    command: [sh, -c, 'mkdir -p /www/cgi-bin /other && for f in echo index.cgi; do cp /files/echo /www/cgi-bin/$f; done && chmod +x /www/cgi-bin/* && cp /files/page.html /www/ && echo bar > /other/index.html && httpd -p 8081 -h /other && exec httpd -f -p 8080 -h /www']
    ports: [{containerPort: 8080, name: http}, {containerPort: 8081, name: other}]
    volumeMounts: [{name: files, mountPath: /files}]
"#;

/// A node cluster running `PROXY_BACKEND`, once its Service has its endpoint.
fn proxy_backend() -> Cluster {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], Some(&PROXY_BACKEND.replace("IMAGE", &image)));
    c.wait_up_to(Duration::from_secs(60), &["get", "pod", "web", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"], "the backend to be ready", |s| s == "True");
    c.wait_for(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "jsonpath={.items[*].endpoints[*].addresses[0]}"], "the Service's endpoint", |s| !s.is_empty());
    c
}

async fn kube_client(c: &Cluster) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(c.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

/// One request through the API server with the kube crate's client (the
/// cluster admin's certificate): status, headers and body.
async fn send(client: &kube::Client, method: &str, path: &str, body: &str) -> (u16, http::HeaderMap, String) {
    // A bearer token besides the certificate: the backend must not see it.
    let request = http::Request::builder().method(method).uri(path).header("authorization", "Bearer not-for-the-backend").body(kube::client::Body::from(body.as_bytes().to_vec())).unwrap();
    let response = client.send(request).await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&bytes).into_owned())
}

/// [sig-network] Proxy version v1 A set of valid responses are returned for both pod and service Proxy [Conformance]
/// [sig-network] Proxy version v1 A set of valid responses are returned for both pod and service ProxyWithPath [Conformance]
/// Every method reaches the pod, through `pods/…/proxy` and through
/// `services/…/proxy`, with its path, query and body, and the answer
/// comes back; GET and HEAD of the bare proxy path are redirected to it
/// with a slash, as upstream does. The client's credentials stay with
/// the API server; the backend is told the path it is proxied under.
#[test]
fn pod_and_service_proxy_pass_every_method_path_query_and_body() {
    let c = proxy_backend();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = kube_client(&c).await;
        for base in ["/api/v1/namespaces/default/pods/web/proxy", "/api/v1/namespaces/default/services/web:portname1/proxy"] {
            for method in ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"] {
                // ProxyWithPath.
                let path = format!("{base}/cgi-bin/echo/some/path/with/{method}");
                let (status, _, body) = send(&client, method, &path, &format!("sent-{method}")).await;
                assert_eq!(status, 200, "{method} {path}: {body}");
                if method == "HEAD" {
                    assert_eq!(body, "", "no body for HEAD");
                    continue;
                }
                let echo: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"));
                assert_eq!(echo["Method"], method);
                assert_eq!(echo["Path"], format!("/some/path/with/{method}"));
                assert_eq!(echo["Body"], format!("sent-{method}"));
                assert_eq!(echo["ForwardedUri"], path);
                assert_eq!(echo["Authorization"], "", "the client's credentials are not passed on");
                assert_eq!(echo["ForwardedFor"], "127.0.0.1");
                // Proxy: the root, with the method in the query.
                if method == "GET" {
                    continue;
                }
                let (status, _, body) = send(&client, method, &format!("{base}?method={method}"), "").await;
                assert_eq!(status, 200, "{method} {base}: {body}");
                let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!((echo["Method"].as_str(), echo["Query"].as_str()), (Some(method), Some(format!("method={method}").as_str())));
            }
            for method in ["GET", "HEAD"] {
                let (status, headers, _) = send(&client, method, &format!("{base}?method={method}"), "").await;
                assert_eq!(status, 301, "{method} {base}");
                assert_eq!(headers["location"], format!("{base}/?method={method}").as_str());
            }
            let (status, _, body) = send(&client, "GET", &format!("{base}/?x=1"), "").await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["Query"], "x=1");
        }
    });
    // kubectl get --raw goes the same way.
    let raw = c.ok(&["get", "--raw", "/api/v1/namespaces/default/services/web:portname1/proxy/cgi-bin/echo/a/b?c=d"]);
    let echo: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!((echo["Method"].as_str(), echo["Path"].as_str(), echo["Query"].as_str()), (Some("GET"), Some("/a/b"), Some("c=d")));
}

/// The Status a GET of `path` is refused with.
fn status_of_raw(c: &Cluster, path: &str) -> serde_json::Value {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (code, headers, body) = runtime.block_on(async { send(&kube_client(c).await, "GET", path, "").await });
    assert_eq!(headers["content-type"], "application/json", "{path}: {body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    assert_eq!((status["kind"].as_str(), status["status"].as_str(), status["code"].as_u64()), (Some("Status"), Some("Failure"), Some(code as u64)), "{body}");
    status
}

/// [sig-network] Proxy version v1 should proxy through a service and a pod [Conformance]
/// Pods by name, name and port and scheme, name and port; services by
/// port name and port number, with and without a scheme; links in HTML
/// pages rewritten to stay behind the proxy; upstream's errors for what
/// cannot be reached; `kubectl proxy` in front; RBAC's `edit` may proxy
/// and `view` may not; and the node's agent through `nodes/…/proxy`,
/// whose `/logs/` lists the node's logs.
#[test]
fn proxy_through_a_service_and_a_pod_and_to_the_node() {
    let c = proxy_backend();
    let pods = "/api/v1/namespaces/default/pods";
    let services = "/api/v1/namespaces/default/services";
    let json = |path: &str| -> serde_json::Value { serde_json::from_str(&c.ok(&["get", "--raw", path])).unwrap_or_else(|e| panic!("{path}: {e}")) };
    let page = format!("<a href=\"{pods}/web/proxy/rewriteme\">test</a>\n");
    assert_eq!(c.ok(&["get", "--raw", &format!("{pods}/web/proxy/page.html")]), page, "the link is rewritten");
    assert_eq!(json(&format!("{pods}/web/proxy/"))["Method"], "GET", "the first container port");
    for id in ["web:8080", "http:web:8080"] {
        assert_eq!(json(&format!("{pods}/{id}/proxy/"))["Method"], "GET", "{id}");
        let rewritten = c.ok(&["get", "--raw", &format!("{pods}/{id}/proxy/page.html")]);
        assert_eq!(rewritten, format!("<a href=\"{pods}/{id}/proxy/rewriteme\">test</a>\n"));
    }
    for id in ["web:8081", "http:web:8081"] {
        assert_eq!(c.ok(&["get", "--raw", &format!("{pods}/{id}/proxy/")]), "bar\n", "{id}");
    }
    for id in ["web:portname1", "http:web:portname1", "web:80"] {
        assert_eq!(json(&format!("{services}/{id}/proxy/"))["Method"], "GET", "{id}");
    }
    for id in ["web:portname2", "http:web:portname2", "web:81"] {
        assert_eq!(c.ok(&["get", "--raw", &format!("{services}/{id}/proxy/")]), "bar\n", "{id}");
    }
    assert_eq!(c.ok(&["get", "--raw", &format!("{services}/web:portname1/proxy/page.html")]), format!("<a href=\"{services}/web:portname1/proxy/rewriteme\">test</a>\n"));

    // Errors, as upstream's Status objects.
    let status = status_of_raw(&c, &format!("{pods}/nosuch/proxy/"));
    assert_eq!((status["code"].as_i64(), status["reason"].as_str(), status["message"].as_str()), (Some(404), Some("NotFound"), Some("pods \"nosuch\" not found")));
    let unreachable = status_of_raw(&c, &format!("{pods}/web:9999/proxy/"));
    assert_eq!((unreachable["code"].as_i64(), unreachable["reason"].as_str()), (Some(503), Some("ServiceUnavailable")));
    let ip = c.ok(&["get", "pod", "web", "-o", "jsonpath={.status.podIP}"]);
    assert_eq!(unreachable["message"], format!("error trying to reach service: dial tcp {ip}:9999: connect: connection refused"));
    let status = status_of_raw(&c, &format!("{services}/web:82/proxy/"));
    assert_eq!((status["code"].as_i64(), status["message"].as_str()), (Some(503), Some("no service port 82 found for service \"web\"")));
    let status = status_of_raw(&c, &format!("{services}/web/proxy/"));
    assert_eq!((status["code"].as_i64(), status["message"].as_str()), (Some(503), Some("no endpoints available for service \"web\"")), "no port of that (empty) name");
    c.ok_stdin(&["apply", "-f", "-"], Some("apiVersion: v1\nkind: Service\nmetadata: {name: empty}\nspec: {selector: {app: none}, ports: [{port: 80}]}\n"));
    let status = status_of_raw(&c, &format!("{services}/empty/proxy/"));
    assert_eq!((status["code"].as_i64(), status["reason"].as_str(), status["message"].as_str()), (Some(503), Some("ServiceUnavailable"), Some("no endpoints available for service \"empty\"")));
    let image = common::test_image();
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("unscheduled", &image, "Never", "sleep 1").replace("spec:\n", "spec:\n  nodeSelector: {nowhere: \"true\"}\n")));
    let status = status_of_raw(&c, &format!("{pods}/unscheduled/proxy/"));
    assert_eq!((status["code"].as_i64(), status["message"].as_str()), (Some(400), Some("address not allowed")), "a pod without an address");

    // kubectl proxy in front of the API server.
    let mut proxy = std::process::Command::new("kubectl")
        .args(["proxy", "--port=0"])
        .env("KUBECONFIG", c.kubeconfig())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(proxy.stdout.as_mut().unwrap()), &mut line).unwrap();
    let port = line.trim().rsplit(':').next().unwrap().to_string();
    let curl = |path: &str| {
        let out = std::process::Command::new("curl").args(["-s", "-i", &format!("http://127.0.0.1:{port}{path}")]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
    };
    let through = curl(&format!("{pods}/web/proxy/page.html"));
    assert!(through.starts_with("HTTP/1.1 200") && through.ends_with(&page), "{through}");
    let echoed = curl(&format!("{services}/web:portname1/proxy/cgi-bin/echo/via/kubectl"));
    assert!(echoed.contains("\"Path\":\"/via/kubectl\""), "{echoed}");
    let _ = proxy.kill();
    let _ = proxy.wait();

    // RBAC: edit may proxy to pods and services, view may not.
    c.ok(&["create", "serviceaccount", "viewer"]);
    c.ok(&["create", "rolebinding", "viewer", "--clusterrole=view", "--serviceaccount=default:viewer"]);
    let token = c.ok(&["create", "token", "viewer"]);
    let viewer = c.kubeconfig_for("viewer", &format!("{{token: {}}}", token.trim()));
    for path in [format!("{pods}/web/proxy/"), format!("{services}/web:portname1/proxy/")] {
        let out = common::kubectl_with(&viewer, &["get", "--raw", &path], None);
        assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Forbidden"), "{}", String::from_utf8_lossy(&out.stderr));
    }
    c.ok(&["create", "rolebinding", "editor", "--clusterrole=edit", "--serviceaccount=default:viewer"]);
    c.wait_for(&["auth", "can-i", "get", "pods/proxy", "--as=system:serviceaccount:default:viewer"], "edit to take effect", |s| s.trim() == "yes");
    for path in [format!("{pods}/web/proxy/"), format!("{services}/web:portname1/proxy/")] {
        let out = common::kubectl_with(&viewer, &["get", "--raw", &path], None);
        assert!(out.status.success(), "{path}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // The node's agent: its /logs/ lists the node's /var/log.
    let kubelet_port = c.ok(&["get", "node", "node-1", "-o", "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}"]);
    for node in ["node-1".to_string(), format!("node-1:{kubelet_port}")] {
        let listing = c.ok(&["get", "--raw", &format!("/api/v1/nodes/{node}/proxy/logs/")]);
        assert!(listing.starts_with("<!doctype html>\n<meta name=\"viewport\" content=\"width=device-width\">\n<pre>\n") && listing.ends_with("</pre>\n"), "{listing}");
        let first = std::fs::read_dir("/var/log").unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).min().unwrap();
        assert!(listing.contains(&format!(">{first}")), "{first} in {listing}");
    }
    // A file, and a directory asked for without its slash: the agent's
    // redirect is rewritten to stay behind the proxy, and kubectl follows it.
    let dir = std::path::Path::new("/var/log").join(format!("skiff-proxy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("test.log"), "line one\n").unwrap();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let file = c.ok(&["get", "--raw", &format!("/api/v1/nodes/node-1/proxy/logs/{name}/test.log")]);
    let listing = c.ok(&["get", "--raw", &format!("/api/v1/nodes/node-1/proxy/logs/{name}")]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(file, "line one\n");
    assert!(listing.contains("<a href=\"test.log\">test.log</a>\n"), "{listing}");
    let summary: serde_json::Value = serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1/nodes/node-1/proxy/stats/summary"])).unwrap();
    assert_eq!(summary["node"]["nodeName"], "node-1");
    let status = status_of_raw(&c, "/api/v1/nodes/nosuch/proxy/logs/");
    assert_eq!((status["code"].as_i64(), status["message"].as_str()), (Some(404), Some("nodes \"nosuch\" not found")));
}

/// [sig-network] EndpointSlice should create and delete Endpoints and EndpointSlices for a Service with a selector specified [Conformance]
/// [sig-network] EndpointSlice should create Endpoints and EndpointSlices for Pods matching a Service [Conformance]
/// [sig-network] Service endpoints latency should not be very high [Conformance]
/// The endpoints controllers follow real pods: each Service's Endpoints
/// and EndpointSlice hold the ready pods it selects, by address, port,
/// node and reference, and go with the Service; 100 Services get their
/// endpoints well within upstream's bounds (p50 20 s, p90 50 s).
#[test]
fn endpoints_and_endpoint_slices_follow_pods_matching_a_service() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let slice_of = |service: &str, path: &str| c.ok(&["get", "endpointslices", "-l", &format!("kubernetes.io/service-name={service}"), "-o", &format!("jsonpath={{.items[*]{path}}}")]);

    // A selector nothing matches: both objects appear empty, and go with the Service.
    c.ok_stdin(&["apply", "-f", "-"], Some("apiVersion: v1\nkind: Service\nmetadata: {name: lonely}\nspec:\n  selector: {app: nobody}\n  ports: [{port: 80}]\n"));
    c.wait_for(&["get", "endpoints", "lonely", "-o", "jsonpath={.metadata.name}"], "the Endpoints", |s| s == "lonely");
    c.wait_for(&["get", "endpointslices", "-l", "kubernetes.io/service-name=lonely", "-o", "jsonpath={.items[*].addressType}"], "the EndpointSlice", |s| s == "IPv4");
    c.ok(&["delete", "service", "lonely"]);
    c.wait_for(&["get", "endpoints", "-o", "jsonpath={.items[*].metadata.name}"], "the Endpoints to go", |s| !s.split(' ').any(|n| n == "lonely"));
    c.wait_for(&["get", "endpointslices", "-l", "kubernetes.io/service-name=lonely", "-o", "name"], "the EndpointSlice to go", |s| s.is_empty());

    // Two pods, a Service for one of them by port name, one for both by number.
    for (name, app) in [("pod1", "one"), ("pod2", "two")] {
        let manifest = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {app}, both: \"yes\"}}}}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: main\n    image: {image}\n    command: [sleep, '3600']\n    ports: [{{name: example, containerPort: 3000}}]\n");
        c.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    }
    for name in ["pod1", "pod2"] {
        c.wait_for(&["get", "pod", name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"], "the pod to be ready", |s| s == "True");
    }
    let ip = |pod: &str| jsonpath(&c, pod, "{.status.podIP}");
    c.ok_stdin(&["apply", "-f", "-"], Some("apiVersion: v1\nkind: Service\nmetadata: {name: one}\nspec:\n  selector: {app: one}\n  ports: [{name: http, port: 80, targetPort: example}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: both}\nspec:\n  selector: {both: \"yes\"}\n  ports: [{name: http, port: 80, targetPort: 3000}]\n"));
    c.wait_for(&["get", "endpoints", "one", "-o", "jsonpath={.subsets[*].addresses[*].ip}:{.subsets[*].ports[*].port}"], "svc one's Endpoints", |s| *s == format!("{}:3000", ip("pod1")));
    assert_eq!(c.ok(&["get", "endpoints", "one", "-o", "jsonpath={.subsets[0].addresses[0].targetRef.kind}/{.subsets[0].addresses[0].targetRef.name} {.subsets[0].addresses[0].nodeName}"]), "Pod/pod1 node-1");
    c.wait_for(&["get", "endpointslices", "-l", "kubernetes.io/service-name=one", "-o", "jsonpath={.items[*].endpoints[*].addresses[*]}"], "svc one's EndpointSlice", |s| s == ip("pod1"));
    assert_eq!(slice_of("one", ".endpoints[0].targetRef.name"), "pod1");
    assert_eq!(slice_of("one", ".endpoints[0].nodeName"), "node-1");
    assert_eq!(slice_of("one", ".endpoints[0].conditions.ready"), "true");
    assert_eq!(slice_of("one", ".ports[0].name") + ":" + &slice_of("one", ".ports[0].port"), "http:3000");
    let mut both: Vec<String> = c.wait_for(&["get", "endpointslices", "-l", "kubernetes.io/service-name=both", "-o", "jsonpath={.items[*].endpoints[*].addresses[*]}"], "svc both's EndpointSlice", |s| s.split(' ').count() == 2).split(' ').map(str::to_string).collect();
    both.sort();
    let mut expected = vec![ip("pod1"), ip("pod2")];
    expected.sort();
    assert_eq!(both, expected);

    // Endpoints latency: 100 Services on the running pod, each measured
    // from its creation to its Endpoints' (the API's one-second clock).
    let services: String = (0..100).map(|i| format!("apiVersion: v1\nkind: Service\nmetadata: {{name: latency-{i}}}\nspec:\n  selector: {{app: one}}\n  ports: [{{port: 80, targetPort: 3000}}]\n---\n")).collect();
    c.ok_stdin(&["apply", "-f", "-"], Some(&services));
    let created = |kind: &str| -> std::collections::BTreeMap<String, String> {
        let listed = c.ok(&["get", kind, "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.creationTimestamp} {.subsets[0].addresses[0].ip}{\"\\n\"}{end}"]);
        listed.lines().filter(|l| l.starts_with("latency-")).filter_map(|l| {
            let mut f = l.split(' ');
            let (name, at) = (f.next()?, f.next()?);
            (kind == "services" || f.next().is_some_and(|a| !a.is_empty())).then(|| (name.to_string(), at.to_string()))
        }).collect()
    };
    c.wait_for(&["get", "endpoints", "-o", "jsonpath={.items[*].subsets[0].addresses[0].ip}"], "100 Services' endpoints", |s| s.split(' ').filter(|a| *a == ip("pod1")).count() >= 101);
    let (services, endpoints) = (created("services"), created("endpoints"));
    let secs = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp();
    let mut latency: Vec<i64> = services.iter().map(|(name, at)| secs(&endpoints[name]) - secs(at)).collect();
    latency.sort();
    assert_eq!(latency.len(), 100);
    let (p50, p90) = (latency[49], latency[89]);
    assert!(p50 < 20 && p90 < 50, "endpoints latency p50 {p50} s, p90 {p90} s");
}

/// [sig-node] Pods should contain environment variables for services [NodeConformance] [Conformance]
/// Containers get their namespace's Services as upstream's kubelet writes
/// them, and the `kubernetes` Service always; `enableServiceLinks: false`
/// leaves out all but the latter; a declared variable wins.
#[test]
fn pods_should_contain_environment_variables_for_services() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], Some("apiVersion: v1\nkind: Service\nmetadata: {name: fooservice}\nspec:\n  selector: {name: server}\n  ports: [{port: 8765, targetPort: 8080}]\n"));
    let ip = c.ok(&["get", "service", "fooservice", "-o", "jsonpath={.spec.clusterIP}"]);
    let env_pod = |name: &str, links: bool| format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  enableServiceLinks: {links}\n  containers:\n  - name: main\n    image: {image}\n    command: [env]\n    env: [{{name: FOOSERVICE_SERVICE_PORT, value: declared}}, {{name: EXPANDED, value: \"$(FOOSERVICE_SERVICE_HOST)\"}}]\n"
    );
    c.ok_stdin(&["apply", "-f", "-"], Some(&env_pod("client", true)));
    c.ok_stdin(&["apply", "-f", "-"], Some(&env_pod("unlinked", false)));
    for name in ["client", "unlinked"] {
        c.wait_for(&["get", "pod", name, "-o", "jsonpath={.status.phase}"], "the pod to finish", |p| p == "Succeeded");
    }
    let env = c.ok(&["logs", "client"]);
    let lines: std::collections::BTreeSet<&str> = env.lines().collect();
    for expected in [
        format!("FOOSERVICE_SERVICE_HOST={ip}"),
        "FOOSERVICE_SERVICE_PORT=declared".to_string(),
        format!("FOOSERVICE_PORT=tcp://{ip}:8765"),
        format!("FOOSERVICE_PORT_8765_TCP=tcp://{ip}:8765"),
        "FOOSERVICE_PORT_8765_TCP_PROTO=tcp".to_string(),
        "FOOSERVICE_PORT_8765_TCP_PORT=8765".to_string(),
        format!("FOOSERVICE_PORT_8765_TCP_ADDR={ip}"),
        format!("EXPANDED={ip}"),
        "KUBERNETES_SERVICE_PORT=443".to_string(),
    ] {
        assert!(lines.contains(expected.as_str()), "{expected} in\n{env}");
    }
    let unlinked = c.ok(&["logs", "unlinked"]);
    assert!(!unlinked.contains("FOOSERVICE_SERVICE_HOST=") && unlinked.contains("KUBERNETES_SERVICE_HOST="), "{unlinked}");
    // A reference to what is not there stays as written, as upstream.
    assert!(unlinked.contains("EXPANDED=$(FOOSERVICE_SERVICE_HOST)"), "{unlinked}");
}

/// A deleted namespace deletes its pods gracefully, as upstream's namespace
/// controller does: the namespace stays Terminating, and its pod visible
/// with a deletionTimestamp, until the kubelet has stopped the container;
/// then both go.
#[test]
fn deleted_namespaces_wait_for_their_pods_to_stop() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    c.ok(&["create", "namespace", "doomed"]);
    // It takes 3 s to stop once asked.
    let manifest = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: slow, namespace: doomed}}\nspec:\n  terminationGracePeriodSeconds: 30\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, \"trap 'sleep 3; exit 0' TERM; while true; do sleep 1; done\"]\n");
    c.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    c.wait_for(&["get", "pod", "slow", "-n", "doomed", "-o", "jsonpath={.status.phase}"], "the pod to run", |p| p == "Running");
    let asked = Instant::now();
    c.ok(&["delete", "namespace", "doomed", "--wait=false"]);
    assert_eq!(c.ok(&["get", "namespace", "doomed", "-o", "jsonpath={.status.phase}"]), "Terminating");
    c.wait_for(&["get", "pod", "slow", "-n", "doomed", "-o", "jsonpath={.metadata.deletionTimestamp}"], "the pod to be deleted gracefully", |t| !t.is_empty());
    c.wait_up_to(Duration::from_secs(40), &["get", "namespaces", "-o", "name"], "the namespace to go", |s| !s.lines().any(|l| l == "namespace/doomed"));
    assert!(asked.elapsed() >= Duration::from_secs(3), "gone after {:?}, before its pod could stop", asked.elapsed());
}

/// [sig-node] Container Lifecycle Hook when create a pod with lifecycle hook should execute poststart http hook properly [NodeConformance] [Conformance]
/// [sig-node] Container Lifecycle Hook when create a pod with lifecycle hook should execute prestop http hook properly [NodeConformance] [Conformance]
/// httpGet hooks reach a handler pod by its IP: postStart when the
/// container starts, preStop when the pod is deleted.
#[test]
fn lifecycle_hooks_call_a_handler_pod_over_http() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    // busybox httpd logs each request's path (`-vv`); both paths answer 200.
    let handler = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: handler}}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, 'mkdir -p /www && touch /www/poststart /www/prestop && exec httpd -f -vv -p 8080 -h /www']\n");
    c.ok_stdin(&["apply", "-f", "-"], Some(&handler));
    c.wait_for(&["get", "pod", "handler", "-o", "jsonpath={.status.phase}"], "the handler to run", |p| p == "Running");
    let ip = jsonpath(&c, "handler", "{.status.podIP}");
    let hooked = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: hooked}}\nspec:\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: main\n    image: {image}\n    command: [sleep, '3600']\n    lifecycle:\n      postStart: {{httpGet: {{host: '{ip}', port: 8080, path: /poststart}}}}\n      preStop: {{httpGet: {{host: '{ip}', port: 8080, path: /prestop}}}}\n"
    );
    c.ok_stdin(&["apply", "-f", "-"], Some(&hooked));
    c.wait_for(&["get", "pod", "hooked", "-o", "jsonpath={.status.phase}"], "the hooked pod to run", |p| p == "Running");
    c.wait_for(&["logs", "handler"], "the postStart request", |log| log.contains("url:/poststart"));
    c.ok(&["delete", "pod", "hooked", "--wait=true"]);
    let log = c.ok(&["logs", "handler"]);
    assert!(log.contains("url:/prestop"), "{log}");
}

/// [sig-apps] ReplicaSet should serve a basic image on each replica with a public image [Conformance]
/// [sig-apps] ReplicationController should serve a basic image on each replica with a public image [Conformance]
/// Each replica answers with its own name, reached through pods/proxy.
#[test]
fn replicas_each_serve_their_own_name() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let script = "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho\\nhostname\\n' > /www/cgi-bin/name && chmod +x /www/cgi-bin/name && exec httpd -f -p 8080 -h /www";
    let template = format!("    metadata: {{labels: {{app: NAME}}}}\n    spec:\n      terminationGracePeriodSeconds: 0\n      containers:\n      - name: serve\n        image: {image}\n        command: [sh, -c, {script:?}]\n        ports: [{{containerPort: 8080}}]\n");
    let rs = format!("apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: rs}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: rs}}}}\n  template:\n{}", template.replace("NAME", "rs"));
    let rc = format!("apiVersion: v1\nkind: ReplicationController\nmetadata: {{name: rc}}\nspec:\n  replicas: 2\n  selector: {{app: rc}}\n  template:\n{}", template.replace("NAME", "rc"));
    for (app, manifest) in [("rs", rs), ("rc", rc)] {
        c.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
        let names = c.wait_for(&["get", "pods", "-l", &format!("app={app}"), "-o", "jsonpath={range .items[?(@.status.phase==\"Running\")]}{.metadata.name} {end}"], "both replicas to run", |s| s.split_whitespace().count() == 2);
        for name in names.split_whitespace() {
            let path = format!("/api/v1/namespaces/default/pods/{name}:8080/proxy/cgi-bin/name");
            c.wait_for(&["get", "--raw", &path], "the replica to answer", |answer| answer.trim() == name);
        }
    }
}

/// A generic ephemeral volume: the pod's claim `<pod>-<volume>` is made
/// from its template, owned by the pod, bound and mounted; it goes with
/// the pod.
#[test]
fn generic_ephemeral_volumes_get_a_claim_that_lives_with_the_pod() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let dir = c.dir.path().join("ephemeral-pv");
    let manifest = format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: eph}}\nspec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteOnce]\n  hostPath: {{path: {dir}, type: DirectoryOrCreate}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: writer}}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, 'echo kept > /scratch/file && sleep 3600']\n    volumeMounts: [{{name: scratch, mountPath: /scratch}}]\n  volumes:\n  - name: scratch\n    ephemeral:\n      volumeClaimTemplate:\n        metadata: {{labels: {{made-for: writer}}}}\n        spec: {{accessModes: [ReadWriteOnce], storageClassName: '', resources: {{requests: {{storage: 1Gi}}}}}}\n",
        dir = dir.display()
    );
    c.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    c.wait_for(&["get", "pod", "writer", "-o", "jsonpath={.status.phase}"], "the pod to run", |p| p == "Running");
    assert_eq!(c.ok(&["get", "pvc", "writer-scratch", "-o", "jsonpath={.status.phase} {.spec.volumeName} {.metadata.labels.made-for}"]), "Bound eph writer");
    assert_eq!(c.ok(&["get", "pvc", "writer-scratch", "-o", "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}"]), "Pod/writer");
    c.wait_for(&["get", "pod", "writer", "-o", "name"], "the file", |_| dir.join("file").exists());
    assert_eq!(std::fs::read_to_string(dir.join("file")).unwrap(), "kept\n");
    c.ok(&["delete", "pod", "writer"]);
    c.wait_for(&["get", "pvc", "-o", "name"], "the claim to go with its pod", |s| s.is_empty());
    c.wait_for(&["get", "pv", "eph", "-o", "jsonpath={.status.phase}"], "the volume to be released", |p| p == "Released");
}

//! NetworkPolicy, enforced on every node, tested as upstream's netpol e2e
//! suite does it (test/e2e/network/netpol): pods a, b and c in namespaces
//! x, y and z, spread over two hosts, and the whole reachability matrix
//! probed after each policy. Probes are TCP connects from every pod to
//! every pod (busybox `nc`; UDP and SCTP are not probed: busybox's nc
//! speaks neither).

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::hosts::Hosts;

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Debug)]
struct Target {
    ns: &'static str,
    pod: &'static str,
    ip: String,
}

impl Target {
    fn name(&self) -> String {
        format!("{}/{}", self.ns, self.pod)
    }
}

/// The nine pods, each serving "ok" on TCP 80 and 81 (named `serve-80`,
/// `serve-81`), ready by a TCP probe from their node.
fn model(hosts: &Hosts) -> Vec<Target> {
    let image = common::test_image();
    for (i, ns) in NAMESPACES.iter().enumerate() {
        hosts.cluster.ok(&["create", "namespace", ns]);
        hosts.cluster.ok(&["label", "namespace", ns, &format!("ns={ns}")]);
        for (j, pod) in PODS.iter().enumerate() {
            let node = if (i + j) % 2 == 0 { "h1" } else { "h2" };
            let manifest = format!(
                r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{pod}","namespace":"{ns}","labels":{{"pod":"{pod}"}}}},"spec":{{"nodeName":"{node}","terminationGracePeriodSeconds":0,"containers":[{{"name":"c","image":"{image}","command":["sh","-c","nc -ll -p 80 -e echo ok & nc -ll -p 81 -e echo ok & nc -ll -p 82 -e cat & sleep 3600"],"ports":[{{"name":"serve-80","containerPort":80}},{{"name":"serve-81","containerPort":81}}],"readinessProbe":{{"tcpSocket":{{"port":80}},"periodSeconds":1}}}}]}}}}"#
            );
            hosts.cluster.ok_stdin(&["create", "-f", "-"], Some(&manifest));
        }
    }
    let mut targets = Vec::new();
    for ns in NAMESPACES {
        for pod in PODS {
            let mut ip = String::new();
            hosts.wait(&format!("{ns}/{pod} ready"), Duration::from_secs(120), || {
                let out = hosts.cluster.ok(&["get", "pod", pod, "-n", ns, "-o", "jsonpath={.status.podIP} {.status.conditions[?(@.type==\"Ready\")].status}"]);
                let (got, ready) = out.split_once(' ').unwrap_or_default();
                ip = got.to_string();
                ready == "True"
            });
            targets.push(Target { ns, pod, ip });
        }
    }
    targets
}

/// Who reaches whom on `port`: every pod probes every pod at once.
fn probe(hosts: &Hosts, targets: &[Target], port: u16) -> BTreeMap<(String, String), bool> {
    let script = targets.iter().map(|t| format!("(echo | nc -w 1 {ip} {port} 2>/dev/null | grep -q ok && echo {ip}=1 || echo {ip}=0) &", ip = t.ip)).collect::<Vec<_>>().join(" ") + " wait";
    let children: Vec<_> = targets
        .iter()
        .map(|from| {
            let kubeconfig = hosts.cluster.kubeconfig();
            let child = Command::new("kubectl").arg("--kubeconfig").arg(&kubeconfig).args(["exec", "-n", from.ns, from.pod, "--", "sh", "-c", &script]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
            (from, child)
        })
        .collect();
    let mut seen = BTreeMap::new();
    for (from, child) in children {
        let out = String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned();
        for to in targets {
            let reached = out.lines().any(|l| l == format!("{}=1", to.ip));
            seen.insert((from.name(), to.name()), reached);
        }
    }
    seen
}

/// Probes until the matrix is what `allowed` says (policies take a moment
/// to reach the nodes), and says where it differs if it never is. A pod
/// always reaches itself (its own loopback), as upstream's truth tables say.
///
/// A denial must hold in the latest round; a reach is proven by one
/// answer once every denial holds (the policy is in force). So a probe
/// that timed out on a loaded machine is probed again, not taken as a
/// verdict, while a pod the policy wrongly cuts off still fails.
fn expect(hosts: &Hosts, targets: &[Target], port: u16, case: &str, allowed: impl Fn(&Target, &Target) -> bool) {
    let want: BTreeMap<(String, String), bool> = targets.iter().flat_map(|f| targets.iter().map(move |t| (f, t))).map(|(f, t)| ((f.name(), t.name()), f.name() == t.name() || allowed(f, t))).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut reached: BTreeMap<(String, String), bool> = BTreeMap::new();
    loop {
        let got = probe(hosts, targets, port);
        let denials_hold = want.iter().all(|(key, &w)| w || !got[key]);
        if denials_hold {
            for (key, &g) in &got {
                *reached.entry(key.clone()).or_default() |= g;
            }
        } else {
            reached.clear();
        }
        let shown: BTreeMap<_, _> = got.keys().map(|key| (key.clone(), got[key] || reached.get(key).copied().unwrap_or(false))).collect();
        if shown == want {
            return;
        }
        if Instant::now() > deadline {
            let mut table = format!("{case}, port {port}: rows from, columns to; X where it differs\n      ");
            for t in targets {
                table.push_str(&format!("{:>5}", t.name()));
            }
            for f in targets {
                table.push_str(&format!("\n{:>5} ", f.name()));
                for t in targets {
                    let key = (f.name(), t.name());
                    let mark = match (shown[&key], want[&key]) {
                        (g, w) if g != w => "X",
                        (true, _) => ".",
                        (false, _) => "-",
                    };
                    table.push_str(&format!("{mark:>5}"));
                }
            }
            panic!("{table}");
        }
    }
}

fn apply(hosts: &Hosts, policy: &str) {
    hosts.cluster.ok_stdin(&["apply", "-f", "-"], Some(policy));
}

fn delete_policies(hosts: &Hosts) {
    for ns in NAMESPACES {
        hosts.cluster.ok(&["delete", "networkpolicy", "--all", "-n", ns]);
    }
}

/// Upstream's netpol cases over the x/y/z × a/b/c matrix, within a host
/// and across the two: default deny, namespace and pod selectors alone and
/// together, ports by number, range and name, egress, ipBlock with except,
/// several policies as a union, a Service's traffic after DNAT, probes
/// from the node through a deny-all, and the table gone with the policies.
#[test]
fn netpol_reachability_matrix_across_hosts() {
    let hosts = Hosts::start(2, &[]);
    let targets = model(&hosts);
    let ip = |name: &str| targets.iter().find(|t| t.name() == name).unwrap().ip.clone();

    // should support a 'default-deny-ingress' policy / allow all without policies
    expect(&hosts, &targets, 80, "no policy", |_, _| true);
    // A connection open before the policy keeps going (an echo server on 82).
    let open = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(hosts.cluster.kubeconfig())
        .args(["exec", "-n", "y", "b", "--", "sh", "-c", &format!("(echo first; sleep 4; echo second; sleep 1) | nc {} 82", ip("x/a"))])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    apply(&hosts, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-ingress, namespace: x}\nspec: {podSelector: {}}\n");
    expect(&hosts, &targets, 80, "default-deny-ingress in x", |_, to| to.ns != "x");
    let echoed = String::from_utf8_lossy(&open.wait_with_output().unwrap().stdout).into_owned();
    assert_eq!(echoed, "first\nsecond\n", "an established connection is not cut by a new policy");
    // The node's own probes still pass: every pod stays Ready.
    for pod in PODS {
        assert_eq!(hosts.cluster.ok(&["get", "pod", pod, "-n", "x", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]), "True");
    }

    // should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector,
    // and only on one port; several policies are a union
    apply(&hosts, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: from-y-to-a, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: 'y'}}}]\n    ports: [{port: 80}]\n");
    expect(&hosts, &targets, 80, "x/a from y on 80", |from, to| to.ns != "x" || (to.pod == "a" && from.ns == "y"));
    expect(&hosts, &targets, 81, "x/a from y on 80 (81 stays shut)", |_, to| to.ns != "x");

    // should enforce policy based on PodSelector and NamespaceSelector together, with a named port
    delete_policies(&hosts);
    apply(&hosts, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b-in-z, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: 'z'}}, podSelector: {matchLabels: {pod: b}}}]\n    ports: [{port: serve-81}]\n");
    expect(&hosts, &targets, 81, "x/a from z/b on serve-81", |from, to| to.name() != "x/a" || from.name() == "z/b");
    expect(&hosts, &targets, 80, "x/a from z/b on serve-81 (80 shut)", |_, to| to.name() != "x/a");

    // should enforce egress policy allowing traffic to a pod in another namespace, and a port range
    delete_policies(&hosts);
    apply(&hosts, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: egress-to-zc, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {ns: 'z'}}, podSelector: {matchLabels: {pod: c}}}]\n    ports: [{port: 79, endPort: 80}]\n");
    expect(&hosts, &targets, 80, "x egress to z/c on 79-80", |from, to| from.ns != "x" || to.name() == "z/c");
    expect(&hosts, &targets, 81, "x egress to z/c on 79-80 (81 shut)", |from, _| from.ns != "x");
    // A new pod the policy selects is isolated before its first container
    // runs: its very first connection, made as it starts, is refused.
    let image = common::test_image();
    let early = format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"early","namespace":"x"}},"spec":{{"nodeName":"h2","terminationGracePeriodSeconds":0,"restartPolicy":"Never","containers":[{{"name":"c","image":"{image}","command":["sh","-c","if echo | nc -w 1 {} 80 2>/dev/null | grep -q ok; then echo LEAKED; else echo BLOCKED; fi"]}}]}}}}"#,
        ip("y/a")
    );
    hosts.cluster.ok_stdin(&["create", "-f", "-"], Some(&early));
    hosts.wait("the early pod to finish", Duration::from_secs(60), || hosts.cluster.ok(&["get", "pod", "early", "-n", "x", "-o", "jsonpath={.status.phase}"]) == "Succeeded");
    assert_eq!(hosts.cluster.ok(&["logs", "early", "-n", "x"]).trim(), "BLOCKED");
    hosts.cluster.ok(&["delete", "pod", "early", "-n", "x"]);

    // should allow ingress access from an IP block with except
    delete_policies(&hosts);
    let cidr = format!("10.{}.0.0/16", hosts.n());
    apply(&hosts, &format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: block, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{pod: b}}}}\n  ingress:\n  - from: [{{ipBlock: {{cidr: '{cidr}', except: ['{}/32']}}}}]\n", ip("y/a")));
    expect(&hosts, &targets, 80, "x/b from the pod network except y/a", |from, to| to.name() != "x/b" || from.name() != "y/a");

    // should enforce policies for traffic through a Service (after DNAT)
    delete_policies(&hosts);
    hosts.cluster.ok(&["expose", "pod", "a", "-n", "x", "--port", "8080", "--target-port", "80", "--name", "a"]);
    let cluster_ip = hosts.cluster.ok(&["get", "svc", "a", "-n", "x", "-o", "jsonpath={.spec.clusterIP}"]);
    apply(&hosts, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: only-y, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {ns: 'y'}}}]\n");
    let through_service = |ns: &str, pod: &str| {
        let out = Command::new("kubectl").arg("--kubeconfig").arg(hosts.cluster.kubeconfig()).args(["exec", "-n", ns, pod, "--", "sh", "-c", &format!("echo | nc -w 1 {cluster_ip} 8080")]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("ok")
    };
    hosts.wait("y/b to reach x/a through its Service", Duration::from_secs(20), || through_service("y", "b"));
    hosts.wait("z/b to be refused at x/a behind its Service", Duration::from_secs(20), || !through_service("z", "b"));

    // Without policies every pod is open again, and nothing is left enforced.
    delete_policies(&hosts);
    expect(&hosts, &targets, 81, "policies deleted", |_, _| true);
}

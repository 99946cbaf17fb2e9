//! The pod network across hosts: agents in network namespaces of their own
//! on one bridge (`common::hosts`), real pods, real traffic.

mod common;

use std::time::Duration;

use common::hosts::Hosts;

/// A pod on `node` serving HTTP on 8080: its page, `/cgi-bin/ip`
/// answering with the address the request came from, and `/cgi-bin/name`
/// with the pod's name. Labelled `app: <name>` and `tier: web`.
fn web_pod(hosts: &Hosts, name: &str, node: &str) -> String {
    let image = common::test_image();
    let script = "mkdir -p /www/cgi-bin && echo hello from skiff > /www/index.html && printf '#!/bin/sh\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && printf '#!/bin/sh\\necho\\nhostname\\n' > /www/cgi-bin/name && chmod +x /www/cgi-bin/* && exec httpd -f -p 8080 -h /www";
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {name}, tier: web}}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: web\n    image: {image}\n    command: [sh, -c, {script:?}]\n    ports: [{{containerPort: 8080, name: http}}]\n"
    );
    hosts.cluster.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    hosts.cluster.wait_up_to(Duration::from_secs(60), &["get", "pod", name, "-o", "jsonpath={.status.phase} {.status.podIP}"], "the pod to run", |s| s.starts_with("Running ") && s.len() > 8);
    hosts.cluster.ok(&["get", "pod", name, "-o", "jsonpath={.status.podIP}"])
}

/// The client address busybox httpd saw, `[::ffff:10.42.1.2]`, as plain IPv4.
fn remote_addr(text: &str) -> String {
    text.trim_start_matches('[').trim_end_matches(']').trim_start_matches("::ffff:").to_string()
}

/// `wget -qO- URL` from inside a pod (busybox's `-T` crashes it: `timeout`).
fn fetch_from_pod(hosts: &Hosts, pod: &str, url: &str) -> String {
    hosts.cluster.ok(&["exec", pod, "--", "timeout", "10", "wget", "-qO-", url]).trim().to_string()
}

fn cross_host_pod_to_pod(backend: &str) {
    let hosts = Hosts::start(2, &["--flannel-backend", backend]);
    let ip1 = web_pod(&hosts, "one", "h1");
    let ip2 = web_pod(&hosts, "two", "h2");
    assert_eq!(fetch_from_pod(&hosts, "one", &format!("http://{ip2}:8080/")), "hello from skiff");
    // No NAT between pods: the server sees the client pod's own address.
    assert_eq!(remote_addr(&fetch_from_pod(&hosts, "two", &format!("http://{ip1}:8080/cgi-bin/ip"))), ip2);
    assert_eq!(remote_addr(&fetch_from_pod(&hosts, "one", &format!("http://{ip2}:8080/cgi-bin/ip"))), ip1);
    // A host reaches the pods of another host.
    let out = hosts.on("h1", "timeout", &["10", "busybox", "wget", "-qO-", &format!("http://{ip2}:8080/")]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello from skiff", "{}", String::from_utf8_lossy(&out.stderr));
}

/// "[sig-network] Networking Granular Checks: Pods should function for intra-pod communication: http [NodeConformance] [Conformance]",
/// "[sig-network] Networking Granular Checks: Pods should function for node-pod communication: http [LinuxOnly] [NodeConformance] [Conformance]":
/// pod to pod and host to pod, across hosts, over the VXLAN overlay.
#[test]
fn pods_reach_pods_across_hosts_over_vxlan() {
    cross_host_pod_to_pod("vxlan");
}

/// The same over host-gw's plain routes.
#[test]
fn pods_reach_pods_across_hosts_over_host_gw() {
    cross_host_pod_to_pod("host-gw");
}

/// A host-gw peer off the node's own segment gets no route, and the node
/// says so: a Warning event and a `PodRoutesIncomplete` condition naming
/// the peer. Back on the segment, the condition clears.
#[test]
fn host_gw_names_a_peer_off_its_segment() {
    let mut hosts = Hosts::start(2, &["--flannel-backend", "host-gw"]);
    let n = hosts.n();
    let h1 = hosts.host("h1").address.to_string();
    let condition = |hosts: &Hosts| hosts.cluster.ok(&["get", "node", "h1", "-o", "jsonpath={.status.conditions[?(@.type==\"PodRoutesIncomplete\")].status} {.status.conditions[?(@.type==\"PodRoutesIncomplete\")].message}"]);
    hosts.wait("h1 to route every peer", Duration::from_secs(30), || condition(&hosts).starts_with("False "));
    // h1's address alone on its link (a /32): h2 is reached through a route now, not on the segment.
    let set_prefix = |hosts: &Hosts, from: u8, to: u8| {
        for args in [vec!["addr", "del", &*format!("{h1}/{from}"), "dev", "eth0"], vec!["addr", "add", &*format!("{h1}/{to}"), "dev", "eth0"]] {
            let out = hosts.on("h1", "ip", &args);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        let lan = format!("10.255.{n}.0/24");
        let _ = hosts.on("h1", "ip", &["route", "replace", &lan, "dev", "eth0"]);
        let _ = hosts.on("h1", "ip", &["route", "replace", "default", "via", &format!("10.255.{n}.1")]);
    };
    set_prefix(&hosts, 24, 32);
    hosts.restart_agent("h1");
    hosts.wait("h1 to name h2 as off its segment", Duration::from_secs(30), || {
        let c = condition(&hosts);
        c.starts_with("True ") && c.contains("h2 (10.255.") && c.contains("host-gw")
    });
    let events = hosts.cluster.ok(&["get", "events", "-A", "--field-selector", "reason=PeerNotOnLink", "-o", "jsonpath={.items[*].message}"]);
    assert!(events.contains("node h2") && events.contains("use the vxlan or bgp backend"), "{events}");
    let routes = String::from_utf8_lossy(&hosts.on("h1", "ip", &["route", "show", "proto", "88"]).stdout).to_string();
    assert!(routes.trim().is_empty(), "no route through an off-segment peer: {routes}");

    set_prefix(&hosts, 32, 24);
    hosts.restart_agent("h1");
    hosts.wait("the condition to clear", Duration::from_secs(30), || condition(&hosts).starts_with("False "));
}

/// A Service in front of pods labelled `selector`; returns its ClusterIP.
fn service(hosts: &Hosts, name: &str, selector: &str, extra_spec: &str) -> String {
    let manifest = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{{selector}}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n{extra_spec}");
    hosts.cluster.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    hosts.cluster.ok(&["get", "service", name, "-o", "jsonpath={.spec.clusterIP}"])
}

/// Who answers `url` from `pod`, asked `times` times (none if any failed).
fn answers(hosts: &Hosts, pod: &str, url: &str, times: usize) -> std::collections::BTreeSet<String> {
    let script = format!("for i in $(seq {times}); do wget -qO- {url} || exit 1; done");
    let out = hosts.cluster.kubectl(&["exec", pod, "--", "timeout", "30", "sh", "-c", &script]);
    if !out.status.success() {
        return Default::default();
    }
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
}

/// Services load-balance over pods on several hosts, reached from pods
/// and hosts; a Service without endpoints refuses at once; a pod reaches
/// itself through its own Service; ClientIP affinity sticks, and can be
/// switched off and on.
/// "[sig-network] Services should serve a basic endpoint from pods [Conformance]",
/// "[sig-network] Services should have session affinity work for service with type clusterIP [LinuxOnly] [Conformance]",
/// "[sig-network] Services should be able to switch session affinity for service with type clusterIP [LinuxOnly] [Conformance]".
#[test]
fn services_balance_across_hosts_and_refuse_without_endpoints() {
    let hosts = Hosts::start(2, &[]);
    web_pod(&hosts, "one", "h1");
    web_pod(&hosts, "two", "h2");
    // The client is not behind the Service: its answers come from a pod on
    // its own bridge and from one across hosts.
    web_pod(&hosts, "client", "h1");
    let ip = service(&hosts, "web", "tier: web, backend: \"yes\"", "");
    hosts.cluster.ok(&["label", "pod", "one", "two", "backend=yes"]);
    let url = format!("http://{ip}/cgi-bin/name");
    hosts.wait("the Service's rules on h1", Duration::from_secs(10), || answers(&hosts, "client", &url, 1).len() == 1);
    assert_eq!(answers(&hosts, "client", &url, 30), ["one".to_string(), "two".to_string()].into(), "both endpoints answer");
    // From a host: masqueraded, so the answer comes back through it.
    for host in ["h1", "h2"] {
        let out = hosts.on(host, "timeout", &["10", "busybox", "wget", "-qO-", &format!("http://{ip}/")]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello from skiff", "from {host}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // Hairpin: a pod reaching its own Service lands on itself.
    let own = service(&hosts, "only-one", "app: one", "");
    hosts.wait("the hairpin Service", Duration::from_secs(10), || answers(&hosts, "one", &format!("http://{own}/cgi-bin/name"), 1) == ["one".to_string()].into());

    // No endpoints: connection refused, not a time-out.
    let empty = service(&hosts, "nobody", "app: nobody", "");
    hosts.wait("the empty Service's reject", Duration::from_secs(10), || {
        let out = hosts.cluster.kubectl(&["exec", "one", "--", "timeout", "5", "wget", "-qO-", &format!("http://{empty}/")]);
        String::from_utf8_lossy(&out.stderr).contains("Connection refused")
    });

    // Session affinity: one client, one endpoint.
    let sticky = service(&hosts, "sticky", "backend: \"yes\"", "  sessionAffinity: ClientIP\n");
    hosts.wait("the sticky Service", Duration::from_secs(10), || answers(&hosts, "client", &format!("http://{sticky}/cgi-bin/name"), 1).len() == 1);
    assert_eq!(answers(&hosts, "client", &format!("http://{sticky}/cgi-bin/name"), 20).len(), 1, "ClientIP affinity keeps one endpoint");
    hosts.cluster.ok(&["patch", "service", "sticky", "-p", r#"{"spec":{"sessionAffinity":"None"}}"#]);
    hosts.wait("affinity switched off", Duration::from_secs(10), || answers(&hosts, "client", &format!("http://{sticky}/cgi-bin/name"), 20).len() == 2);
    hosts.cluster.ok(&["patch", "service", "sticky", "-p", r#"{"spec":{"sessionAffinity":"ClientIP"}}"#]);
    hosts.wait("affinity switched on", Duration::from_secs(10), || answers(&hosts, "client", &format!("http://{sticky}/cgi-bin/name"), 20).len() == 1);

    // An endpoint going away is gone from the rules.
    hosts.cluster.ok(&["delete", "pod", "two", "--wait=true"]);
    hosts.wait("the deleted endpoint to leave", Duration::from_secs(10), || answers(&hosts, "client", &url, 10) == ["one".to_string()].into());
}

/// "[sig-network] Services should have session affinity work for NodePort service [LinuxOnly] [Conformance]",
/// "[sig-network] Services should be able to switch session affinity for NodePort service [LinuxOnly] [Conformance]":
/// a pod reaching another host's NodePort keeps one endpoint under
/// ClientIP affinity, and the affinity switches off and on.
#[test]
fn node_port_session_affinity_sticks_and_switches() {
    let hosts = Hosts::start(2, &[]);
    web_pod(&hosts, "one", "h1");
    web_pod(&hosts, "two", "h2");
    web_pod(&hosts, "client", "h1");
    hosts.cluster.ok(&["label", "pod", "one", "two", "backend=yes"]);
    service(&hosts, "sticky", "backend: \"yes\"", "  type: NodePort\n  sessionAffinity: ClientIP\n");
    let port = hosts.cluster.ok(&["get", "service", "sticky", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    let url = format!("http://{}:{port}/cgi-bin/name", hosts.host("h2").address);
    hosts.wait("the sticky NodePort", Duration::from_secs(10), || answers(&hosts, "client", &url, 1).len() == 1);
    assert_eq!(answers(&hosts, "client", &url, 20).len(), 1, "ClientIP affinity keeps one endpoint");
    hosts.cluster.ok(&["patch", "service", "sticky", "-p", r#"{"spec":{"sessionAffinity":"None"}}"#]);
    hosts.wait("affinity switched off", Duration::from_secs(10), || answers(&hosts, "client", &url, 20).len() == 2);
    hosts.cluster.ok(&["patch", "service", "sticky", "-p", r#"{"spec":{"sessionAffinity":"ClientIP"}}"#]);
    hosts.wait("affinity switched on", Duration::from_secs(10), || answers(&hosts, "client", &url, 20).len() == 1);
}

/// "[sig-network] Services should serve endpoints on same port and different protocols [Conformance]":
/// one Service port number over TCP and UDP, each to its own server in one pod.
#[test]
fn services_serve_one_port_over_tcp_and_udp() {
    let hosts = Hosts::start(1, &[]);
    let image = common::test_image();
    let udp = udp_echo_command("over udp");
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: dual, labels: {{app: dual}}}}\nspec:\n  nodeName: h1\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: tcp\n    image: {image}\n    command: [sh, -c, 'mkdir -p /www && echo over tcp > /www/index.html && exec httpd -f -p 8080 -h /www']\n  - name: udp\n    image: {image}\n    command: {udp}\n{UDP_ECHO_MOUNTS}"
    );
    hosts.cluster.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: dual}\nspec:\n  selector: {app: dual}\n  ports: [{name: tcp, port: 80, targetPort: 8080, protocol: TCP}, {name: udp, port: 80, targetPort: 8080, protocol: UDP}]\n";
    hosts.cluster.ok_stdin(&["apply", "-f", "-"], Some(service));
    hosts.cluster.wait_up_to(Duration::from_secs(60), &["get", "pod", "dual", "-o", "jsonpath={.status.phase}"], "the pod to run", |s| s == "Running");
    let ip = hosts.cluster.ok(&["get", "service", "dual", "-o", "jsonpath={.spec.clusterIP}"]);
    hosts.wait("TCP through the Service", Duration::from_secs(20), || {
        String::from_utf8_lossy(&hosts.on("h1", "timeout", &["5", "busybox", "wget", "-qO-", &format!("http://{ip}/")]).stdout).trim() == "over tcp"
    });
    hosts.wait("UDP through the Service", Duration::from_secs(20), || String::from_utf8_lossy(&hosts.on("h1", "python3", &["-c", &udp_ask(&ip, 80)]).stdout).trim() == "over udp");
}

/// NodePort answers on every host's address, from outside the cluster;
/// `externalTrafficPolicy: Local` keeps the client's address and answers
/// only where an endpoint runs; LoadBalancer answers on the nodes' addresses.
/// "[sig-network] Services should be able to create a functioning NodePort service [Conformance]".
#[test]
fn node_ports_answer_on_every_host() {
    let hosts = Hosts::start(2, &[]);
    web_pod(&hosts, "one", "h1");
    service(&hosts, "web", "app: one", "  type: NodePort\n");
    service(&hosts, "local", "app: one", "  type: NodePort\n  externalTrafficPolicy: Local\n");
    let node_port = |name: &str| hosts.cluster.ok(&["get", "service", name, "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    let (port, local_port) = (node_port("web"), node_port("local"));
    // The machine itself is outside the cluster: it reaches the hosts over the bridge.
    let get = |address: &std::net::Ipv4Addr, port: &str, path: &str| {
        let out = std::process::Command::new("timeout").args(["5", "busybox", "wget", "-qO-", &format!("http://{address}:{port}{path}")]).output().unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    for host in &hosts.hosts {
        hosts.wait(&format!("NodePort {port} on {}", host.name), Duration::from_secs(10), || get(&host.address, &port, "/").as_deref() == Some("hello from skiff"));
    }
    let (h1, h2) = (hosts.host("h1").address, hosts.host("h2").address);
    let gateway = format!("10.255.{}.1", h1.octets()[2]);
    hosts.wait("the Local NodePort on h1", Duration::from_secs(10), || get(&h1, &local_port, "/cgi-bin/ip").is_some());
    assert_eq!(remote_addr(&get(&h1, &local_port, "/cgi-bin/ip").unwrap()), gateway, "the client's own address reaches the pod");
    assert_eq!(get(&h2, &local_port, "/"), None, "no endpoint on h2: dropped");
    // Cluster policy: the source is the node's (masqueraded).
    assert_ne!(remote_addr(&get(&h2, &port, "/cgi-bin/ip").unwrap()), gateway);

    // LoadBalancer, as k3s's ServiceLB: the nodes' addresses, answering on the port.
    service(&hosts, "lb", "app: one", "  type: LoadBalancer\n");
    let ingress = hosts.cluster.wait_for(&["get", "service", "lb", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"], "the LoadBalancer's addresses", |s| s.split(' ').count() == 2);
    assert_eq!(ingress, format!("{h1} {h2}"));
    for address in [h1, h2] {
        hosts.wait(&format!("the LoadBalancer on {address}"), Duration::from_secs(10), || get(&address, "80", "/").as_deref() == Some("hello from skiff"));
    }
}

/// A container command answering every datagram on UDP 8080 with
/// `answer`. busybox has no UDP server: this is the host's python, in a
/// pod that mounts the host's /usr and libraries read-only (`UDP_ECHO_MOUNTS`).
fn udp_echo_command(answer: &str) -> String {
    format!("[/usr/bin/python3, -c, \"import socket\\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\\ns.bind(('0.0.0.0', 8080))\\nwhile True:\\n    _, peer = s.recvfrom(100)\\n    s.sendto(b'{answer}', peer)\"]")
}

const UDP_ECHO_MOUNTS: &str = "    volumeMounts: [{name: usr, mountPath: /usr, readOnly: true}, {name: lib, mountPath: /lib, readOnly: true}, {name: lib64, mountPath: /lib64, readOnly: true}]\n  volumes: [{name: usr, hostPath: {path: /usr}}, {name: lib, hostPath: {path: /lib}}, {name: lib64, hostPath: {path: /lib64}}]\n";

/// A python program that sends one datagram and prints the answer, or `none`.
fn udp_ask(address: &str, port: u16) -> String {
    format!("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(1)\ns.sendto(b'x', ('{address}', {port}))\ntry:\n    print(s.recvfrom(100)[0].decode())\nexcept Exception:\n    print('none')\n")
}

/// "[sig-network] Networking Granular Checks: Pods should function for intra-pod communication: udp [NodeConformance] [Conformance]",
/// "[sig-network] Networking Granular Checks: Pods should function for node-pod communication: udp [LinuxOnly] [NodeConformance] [Conformance]":
/// UDP from a pod and from a host to a pod on another host.
#[test]
fn pods_reach_pods_across_hosts_over_udp() {
    let hosts = Hosts::start(2, &[]);
    let image = common::test_image();
    let mut ips = Vec::new();
    for (name, node) in [("u1", "h1"), ("u2", "h2")] {
        let command = udp_echo_command(name);
        let manifest = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: {image}\n    command: {command}\n    ports: [{{containerPort: 8080, protocol: UDP}}]\n{UDP_ECHO_MOUNTS}");
        hosts.cluster.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
        hosts.cluster.wait_up_to(Duration::from_secs(60), &["get", "pod", name, "-o", "jsonpath={.status.phase} {.status.podIP}"], "the pod to run", |s| s.starts_with("Running ") && s.len() > 8);
        ips.push(hosts.cluster.ok(&["get", "pod", name, "-o", "jsonpath={.status.podIP}"]));
    }
    let from_pod = || hosts.cluster.ok(&["exec", "u1", "--", "/usr/bin/python3", "-c", &udp_ask(&ips[1], 8080)]).trim().to_string();
    hosts.wait("u1 to hear from u2", Duration::from_secs(20), || from_pod() == "u2");
    let from_host = String::from_utf8_lossy(&hosts.on("h1", "python3", &["-c", &udp_ask(&ips[1], 8080)]).stdout).trim().to_string();
    assert_eq!(from_host, "u2");
}

/// "[sig-network] HostPort validates that there is no conflict between pods with same hostPort but different hostIP and protocol [LinuxOnly] [Conformance]":
/// three pods on one node share host port 54323, told apart by host IP
/// (127.0.0.1 or the node's) and protocol; each is reached on its own.
#[test]
fn host_ports_differ_by_host_ip_and_protocol() {
    let hosts = Hosts::start(1, &[]);
    let image = common::test_image();
    let node_ip = hosts.host("h1").address.to_string();
    let pod = |name: &str, host_ip: &str, protocol: &str, command: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeSelector: {{kubernetes.io/hostname: h1}}\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: {image}\n    command: {command}\n    ports: [{{containerPort: 8080, hostPort: 54323, hostIP: '{host_ip}', protocol: {protocol}}}]\n{extra}"
        )
    };
    let http = |answer: &str| format!("[sh, -c, 'mkdir -p /www && echo {answer} > /www/index.html && exec httpd -f -p 8080 -h /www']");
    for manifest in [pod("pod1", "127.0.0.1", "TCP", &http("pod1"), ""), pod("pod2", &node_ip, "TCP", &http("pod2"), ""), pod("pod3", &node_ip, "UDP", &udp_echo_command("pod3"), UDP_ECHO_MOUNTS)] {
        hosts.cluster.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    }
    for name in ["pod1", "pod2", "pod3"] {
        hosts.cluster.wait_up_to(Duration::from_secs(60), &["get", "pod", name, "-o", "jsonpath={.status.phase}"], "the pod to run on h1", |s| s == "Running");
    }
    let fetch = |address: &str| {
        let out = hosts.on("h1", "timeout", &["5", "busybox", "wget", "-qO-", &format!("http://{address}:54323/")]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    hosts.wait("pod1 on 127.0.0.1", Duration::from_secs(20), || fetch("127.0.0.1") == "pod1");
    assert_eq!(fetch(&node_ip), "pod2");
    hosts.wait("pod3 over UDP", Duration::from_secs(20), || String::from_utf8_lossy(&hosts.on("h1", "python3", &["-c", &udp_ask(&node_ip, 54323)]).stdout).trim() == "pod3");
}

/// hostPort: the pod answers on its node's address.
#[test]
fn host_ports_reach_the_pod() {
    let hosts = Hosts::start(1, &[]);
    let image = common::test_image();
    let manifest = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: hp}}\nspec:\n  nodeName: h1\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: web\n    image: {image}\n    command: [httpd, -f, -p, '8080', -h, /var/www]\n    ports: [{{containerPort: 8080, hostPort: 18080}}]\n");
    hosts.cluster.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    hosts.cluster.wait_up_to(Duration::from_secs(60), &["get", "pod", "hp", "-o", "jsonpath={.status.phase}"], "the pod to run", |s| s == "Running");
    let address = hosts.host("h1").address;
    hosts.wait("the host port", Duration::from_secs(10), || {
        let out = std::process::Command::new("timeout").args(["5", "busybox", "wget", "-qO-", &format!("http://{address}:18080/")]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "hello from skiff"
    });
}

/// A BGP router outside the cluster (BIRD 2 in a namespace of its own on
/// the hosts' LAN, AS 64600), with a network behind it (172.31.{n}.0/24)
/// holding one more host, `outside`.
struct Router {
    netns: String,
    outside: String,
    dir: tempfile::TempDir,
    bird: std::process::Child,
}

impl Router {
    fn start(hosts: &Hosts) -> Router {
        let n = hosts.n();
        let (netns, outside) = (format!("sk{n}-r"), format!("sk{n}-o"));
        let sh = |args: &[&str]| {
            common::hosts::run("ip", args);
        };
        for ns in [&netns, &outside] {
            let _ = std::process::Command::new("ip").args(["netns", "del", ns]).output();
            sh(&["netns", "add", ns]);
            sh(&["-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&["link", "add", &format!("sk{n}r"), "type", "veth", "peer", "name", "eth0", "netns", &netns]);
        sh(&["link", "set", &format!("sk{n}r"), "master", &format!("skl{n}"), "up"]);
        sh(&["-n", &netns, "addr", "add", &format!("10.255.{n}.250/24"), "dev", "eth0"]);
        sh(&["-n", &netns, "link", "set", "eth0", "up"]);
        sh(&["-n", &netns, "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns", &outside]);
        sh(&["-n", &netns, "addr", "add", &format!("172.31.{n}.1/24"), "dev", "out0"]);
        sh(&["-n", &netns, "link", "set", "out0", "up"]);
        sh(&["-n", &outside, "addr", "add", &format!("172.31.{n}.2/24"), "dev", "eth0"]);
        sh(&["-n", &outside, "link", "set", "eth0", "up"]);
        sh(&["-n", &outside, "route", "add", "default", "via", &format!("172.31.{n}.1")]);
        let forwarding = std::process::Command::new("nsenter").args([&format!("--net=/run/netns/{netns}"), "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]).status().unwrap();
        assert!(forwarding.success());
        let dir = tempfile::tempdir().unwrap();
        let mut config = format!("router id 10.255.{n}.250;\nprotocol device {{}}\nprotocol direct outside {{ ipv4; interface \"out0\"; }}\nprotocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}\n");
        for host in &hosts.hosts {
            config.push_str(&format!(
                "protocol bgp {} {{ local 10.255.{n}.250 as 64600; neighbor {} as 64512; ipv4 {{ import all; export where proto = \"outside\"; }}; }}\n",
                host.name, host.address
            ));
        }
        std::fs::write(dir.path().join("bird.conf"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("bird.log")).unwrap();
        let bird = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args(["bird", "-f", "-c"])
            .arg(dir.path().join("bird.conf"))
            .arg("-s")
            .arg(dir.path().join("bird.ctl"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("bird (BIRD 2) is installed");
        Router { netns, outside, dir, bird }
    }

    /// `birdc show route`: what the router learned.
    fn routes(&self) -> String {
        let out = std::process::Command::new("birdc").arg("-s").arg(self.dir.path().join("bird.ctl")).args(["show", "route"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn on_outside_host(&self, program: &str, args: &[&str]) -> std::process::Output {
        std::process::Command::new("nsenter").arg(format!("--net=/run/netns/{}", self.outside)).arg(program).args(args).output().unwrap()
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.bird.kill();
        let _ = self.bird.wait();
        for ns in [&self.netns, &self.outside] {
            let _ = std::process::Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// The bgp backend: nodes announce their pod CIDRs to each other and to a
/// router outside the cluster, and a host behind that router reaches a pod
/// by its pod IP, without NAT.
#[test]
fn bgp_announces_pod_cidrs_to_nodes_and_an_outside_router() {
    let hosts = Hosts::start(2, &["--flannel-backend", "bgp", "--bgp-peer", "10.255.{n}.250:64600"]);
    let router = Router::start(&hosts);
    let cidrs: Vec<String> = ["h1", "h2"].iter().map(|h| hosts.cluster.ok(&["get", "node", h, "-o", "jsonpath={.spec.podCIDR}"])).collect();
    hosts.wait("the router to learn both pod CIDRs", Duration::from_secs(30), || {
        let routes = router.routes();
        cidrs.iter().all(|c| routes.contains(c.as_str()))
    });
    let ip1 = web_pod(&hosts, "one", "h1");
    let ip2 = web_pod(&hosts, "two", "h2");
    // Between nodes: routes learned over BGP, no encapsulation, no NAT.
    for (host, other) in [("h1", &cidrs[1]), ("h2", &cidrs[0])] {
        hosts.wait(&format!("{host}'s BGP route to {other}"), Duration::from_secs(30), || {
            let out = hosts.on(host, "ip", &["route", "show", "proto", "bird"]);
            String::from_utf8_lossy(&out.stdout).contains(other.as_str())
        });
    }
    assert_eq!(remote_addr(&fetch_from_pod(&hosts, "two", &format!("http://{ip1}:8080/cgi-bin/ip"))), ip2);
    // From behind the router, by pod IP; the pod sees the outside host's own address.
    let n = hosts.n();
    hosts.wait("the outside host to reach a pod", Duration::from_secs(30), || {
        let out = router.on_outside_host("timeout", &["5", "busybox", "wget", "-qO-", &format!("http://{ip2}:8080/cgi-bin/ip")]);
        remote_addr(String::from_utf8_lossy(&out.stdout).trim()) == format!("172.31.{n}.2")
    });
}

/// An agent restart leaves the overlay as it was (same device, same MAC:
/// running pods keep their traffic); a node gone takes its routes with it
/// on every other node; `skiff agent --cleanup` removes what the network made.
#[test]
fn routes_follow_nodes_and_cleanup_removes_everything() {
    let mut hosts = Hosts::start(2, &[]);
    let ip2 = web_pod(&hosts, "two", "h2");
    web_pod(&hosts, "one", "h1");
    let cidr2 = hosts.cluster.ok(&["get", "node", "h2", "-o", "jsonpath={.spec.podCIDR}"]);
    let link = |hosts: &Hosts, host: &str| String::from_utf8_lossy(&hosts.on(host, "ip", &["-o", "link", "show", "flannel.1"]).stdout).into_owned();
    let before = link(&hosts, "h1");
    assert!(before.contains("flannel.1"), "{before}");
    let programmed = |hosts: &Hosts| hosts.agent_log("h1").matches("programmed backend=vxlan peers=1").count();
    let runs = programmed(&hosts);
    hosts.restart_agent("h1");
    hosts.wait("the restarted agent to program its routes", Duration::from_secs(30), || programmed(&hosts) > runs);
    assert_eq!(link(&hosts, "h1"), before, "the restarted agent kept its VXLAN device");
    assert_eq!(fetch_from_pod(&hosts, "one", &format!("http://{ip2}:8080/")), "hello from skiff");

    // h2 goes away: h1 forgets its route, ARP and FDB entries.
    hosts.stop_agent("h2");
    hosts.cluster.ok(&["delete", "node", "h2"]);
    hosts.wait("h1 to drop the route to h2's pods", Duration::from_secs(10), || {
        let routes = String::from_utf8_lossy(&hosts.on("h1", "ip", &["route"]).stdout).into_owned();
        let neighbours = String::from_utf8_lossy(&hosts.on("h1", "ip", &["neigh", "show", "dev", "flannel.1"]).stdout).into_owned();
        !routes.contains(&cidr2) && neighbours.trim().is_empty()
    });

    // --cleanup: no device, route or table of ours is left.
    hosts.stop_agent("h1");
    let skiff = env!("CARGO_BIN_EXE_skiff");
    let out = hosts.on("h1", skiff, &["agent", "--cleanup"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let links = String::from_utf8_lossy(&hosts.on("h1", "ip", &["-o", "link"]).stdout).into_owned();
    assert!(!links.contains("flannel.1") && !links.contains("skiff0"), "{links}");
    let routes = String::from_utf8_lossy(&hosts.on("h1", "ip", &["route", "show", "proto", "88"]).stdout).into_owned();
    assert!(routes.trim().is_empty(), "{routes}");
    let tables = String::from_utf8_lossy(&hosts.on("h1", "nft", &["list", "tables"]).stdout).into_owned();
    assert!(!tables.contains("skiff"), "{tables}");
}

/// A UDP server on a host (the test image has none): answers each
/// datagram on 9999 with `reply`. Killed when dropped.
struct UdpServer(std::process::Child);

impl UdpServer {
    fn start(hosts: &Hosts, host: &str, reply: &str) -> UdpServer {
        let script = format!("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 9999))\nwhile True:\n    _, peer = s.recvfrom(100)\n    s.sendto(b'{reply}', peer)\n");
        let child = std::process::Command::new("nsenter").arg(format!("--net=/run/netns/{}", hosts.host(host).netns)).args(["python3", "-c", &script]).spawn().unwrap();
        UdpServer(child)
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// UDP Services, and their stale flows (kubernetes#59368): a client that
/// keeps its source port reaches the new endpoint once the old one is
/// gone, instead of sending into the void until conntrack forgets.
#[test]
fn udp_services_forget_flows_to_removed_endpoints() {
    let hosts = Hosts::start(2, &[]);
    let _a = UdpServer::start(&hosts, "h1", "a");
    let _b = UdpServer::start(&hosts, "h2", "b");
    let slice = |address: &std::net::Ipv4Addr| format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: udp-1, labels: {{kubernetes.io/service-name: udp}}}}\naddressType: IPv4\nports: [{{name: echo, port: 9999, protocol: UDP}}]\nendpoints: [{{addresses: [\"{address}\"], conditions: {{ready: true}}}}]\n"
    );
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: udp}\nspec:\n  ports: [{name: echo, port: 9999, protocol: UDP}]\n";
    hosts.cluster.ok_stdin(&["apply", "-f", "-"], Some(service));
    hosts.cluster.ok_stdin(&["apply", "-f", "-"], Some(&slice(&hosts.host("h1").address)));
    let ip = hosts.cluster.ok(&["get", "service", "udp", "-o", "jsonpath={.spec.clusterIP}"]);
    // From h1, always from source port 40000: one conntrack flow.
    let client = format!("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('0.0.0.0', 40000))\ns.settimeout(1)\ns.sendto(b'x', ('{ip}', 9999))\ntry:\n    print(s.recvfrom(100)[0].decode())\nexcept Exception:\n    print('none')\n");
    let ask = || String::from_utf8_lossy(&hosts.on("h1", "python3", &["-c", &client]).stdout).trim().to_string();
    hosts.wait("endpoint a to answer", Duration::from_secs(20), || ask() == "a");
    hosts.cluster.ok_stdin(&["apply", "-f", "-"], Some(&slice(&hosts.host("h2").address)));
    hosts.wait("endpoint b to answer the same flow", Duration::from_secs(10), || ask() == "b");
}

/// "[sig-network] Services should serve multiport endpoints from pods [Conformance]":
/// each port of a Service reaches its own container port.
#[test]
fn services_serve_multiport_endpoints_from_pods() {
    let hosts = Hosts::start(1, &[]);
    let image = common::test_image();
    let script = "mkdir -p /a /b && echo port-a > /a/index.html && echo port-b > /b/index.html && httpd -p 8080 -h /a && exec httpd -f -p 8081 -h /b";
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: multi, labels: {{app: multi}}}}\nspec:\n  nodeName: h1\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: web\n    image: {image}\n    command: [sh, -c, {script:?}]\n    ports: [{{containerPort: 8080, name: a}}, {{containerPort: 8081, name: b}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: multi}}\nspec:\n  selector: {{app: multi}}\n  ports: [{{name: a, port: 80, targetPort: a}}, {{name: b, port: 81, targetPort: b}}]\n"
    );
    hosts.cluster.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    hosts.cluster.wait_up_to(Duration::from_secs(60), &["get", "pod", "multi", "-o", "jsonpath={.status.phase}"], "the pod to run", |s| s == "Running");
    let ip = hosts.cluster.ok(&["get", "service", "multi", "-o", "jsonpath={.spec.clusterIP}"]);
    for (port, page) in [("80", "port-a"), ("81", "port-b")] {
        hosts.wait(&format!("port {port}"), Duration::from_secs(10), || {
            let out = hosts.on("h1", "timeout", &["5", "busybox", "wget", "-qO-", &format!("http://{ip}:{port}/")]);
            String::from_utf8_lossy(&out.stdout).trim() == page
        });
    }
}

/// `nslookup` from a pod: its output, and whether it succeeded.
fn nslookup(hosts: &Hosts, pod: &str, args: &[&str]) -> (bool, String) {
    let mut command = vec!["exec", pod, "--", "nslookup"];
    command.extend_from_slice(args);
    let out = hosts.cluster.kubectl(&command);
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Cluster DNS, answered by every node at the kube-dns Service's address,
/// with CoreDNS's records; pods get upstream's resolv.conf and hosts file.
/// "[sig-network] DNS should provide DNS for the cluster [Conformance]",
/// "[sig-network] DNS should provide DNS for services [Conformance]",
/// "[sig-network] DNS should provide DNS for pods for Hostname [Conformance]",
/// "[sig-network] DNS should provide DNS for pods for Subdomain [Conformance]",
/// "[sig-network] DNS should provide DNS for ExternalName services [Conformance]",
/// "[sig-network] DNS should resolve DNS of partial qualified names for services [LinuxOnly] [Conformance]",
/// "[sig-network] DNS should support configurable pod DNS nameservers [Conformance]",
/// "[sig-network] DNS should provide /etc/hosts entries for the cluster [Conformance]".
#[test]
fn cluster_dns_answers_coredns_records_on_every_host() {
    let hosts = Hosts::start(2, &[]);
    let dns_service = hosts.cluster.ok(&["get", "service", "-n", "kube-system", "kube-dns", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_eq!(dns_service, "10.43.0.10");
    web_pod(&hosts, "client", "h2");
    let resolv = hosts.cluster.ok(&["exec", "client", "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(resolv, "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n");

    hosts.wait("the cluster's own name", Duration::from_secs(20), || {
        let (ok, out) = nslookup(&hosts, "client", &["kubernetes.default.svc.cluster.local"]);
        ok && out.contains("Address: 10.43.0.1")
    });
    // A Service, its SRV record for a named port, a partial name.
    let ip = service(&hosts, "web", "app: client", "");
    hosts.wait("the Service's A record", Duration::from_secs(10), || nslookup(&hosts, "client", &["web.default.svc.cluster.local"]).1.contains(&format!("Address: {ip}")));
    hosts.wait("the named port's SRV record", Duration::from_secs(10), || nslookup(&hosts, "client", &["-type=SRV", "_http._tcp.web.default.svc.cluster.local"]).1.contains("80 web.default.svc.cluster.local"));
    // The C library's resolver applies the search list (busybox's nslookup does not).
    assert_eq!(fetch_from_pod(&hosts, "client", "http://web/"), "hello from skiff");
    assert_eq!(fetch_from_pod(&hosts, "client", "http://web.default/"), "hello from skiff");

    // A pod with hostname and subdomain, behind a headless Service of that name.
    let image = common::test_image();
    let manifest = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: sub}}\nspec:\n  clusterIP: None\n  selector: {{app: named}}\n  ports: [{{name: http, port: 8080}}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: named, labels: {{app: named}}}}\nspec:\n  nodeName: h1\n  hostname: host-a\n  subdomain: sub\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: {image}\n    command: [sleep, '3600']\n"
    );
    hosts.cluster.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    hosts.cluster.wait_up_to(Duration::from_secs(60), &["get", "pod", "named", "-o", "jsonpath={.status.phase}"], "the named pod to run", |s| s == "Running");
    let named_ip = hosts.cluster.ok(&["get", "pod", "named", "-o", "jsonpath={.status.podIP}"]);
    hosts.wait("the pod's hostname record", Duration::from_secs(20), || nslookup(&hosts, "client", &["host-a.sub.default.svc.cluster.local"]).1.contains(&format!("Address: {named_ip}")));
    assert!(nslookup(&hosts, "client", &["sub.default.svc.cluster.local"]).1.contains(&format!("Address: {named_ip}")), "the headless Service's endpoints");
    let etc_hosts = hosts.cluster.ok(&["exec", "named", "--", "cat", "/etc/hosts"]);
    assert!(etc_hosts.contains(&format!("{named_ip}\thost-a.sub.default.svc.cluster.local\thost-a")), "{etc_hosts}");
    let dashed = named_ip.replace('.', "-");
    assert!(nslookup(&hosts, "client", &[&format!("{dashed}.default.pod.cluster.local")]).1.contains(&format!("Address: {named_ip}")));

    // ExternalName: a CNAME.
    hosts.cluster.ok_stdin(&["apply", "-f", "-"], Some("apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec: {type: ExternalName, externalName: web.default.svc.cluster.local}\n"));
    hosts.wait("the ExternalName's CNAME", Duration::from_secs(10), || nslookup(&hosts, "client", &["-type=CNAME", "ext.default.svc.cluster.local"]).1.contains("canonical name = web.default.svc.cluster.local"));

    // A name that does not exist: NXDOMAIN.
    let (ok, missing) = nslookup(&hosts, "client", &["nobody.default.svc.cluster.local"]);
    assert!(!ok && missing.contains("NXDOMAIN"), "{missing}");
    // The client's node counted its questions and answers as CoreDNS
    // would, and its service proxy its syncs as kube-proxy would.
    let page = hosts.cluster.ok(&["get", "--raw", "/api/v1/nodes/h2/proxy/metrics"]);
    let value = |prefix: &str| -> f64 { page.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum() };
    assert!(value(r#"coredns_dns_responses_total{server="dns://:53",zone=".",rcode="NXDOMAIN",plugin="kubernetes"}"#) >= 1.0, "{page}");
    assert!(value(r#"coredns_dns_requests_total{server="dns://:53",zone=".",proto="udp",family="1",type="A"}"#) >= 1.0, "{page}");
    assert!(value("coredns_dns_request_duration_seconds_count") >= 1.0, "{page}");
    assert!(value("kubeproxy_sync_proxy_rules_last_timestamp_seconds ") > 0.0 && value("kubeproxy_sync_proxy_rules_duration_seconds_count ") >= 1.0, "{page}");

    // dnsPolicy None with its own dnsConfig.
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: custom}}\nspec:\n  nodeName: h1\n  dnsPolicy: None\n  dnsConfig: {{nameservers: [1.1.1.1], searches: [resolv.conf.local], options: [{{name: ndots, value: '2'}}]}}\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: {image}\n    command: [sleep, '3600']\n"
    );
    hosts.cluster.ok_stdin(&["apply", "-f", "-"], Some(&manifest));
    hosts.cluster.wait_up_to(Duration::from_secs(60), &["get", "pod", "custom", "-o", "jsonpath={.status.phase}"], "the custom pod to run", |s| s == "Running");
    assert_eq!(hosts.cluster.ok(&["exec", "custom", "--", "cat", "/etc/resolv.conf"]), "search resolv.conf.local\nnameserver 1.1.1.1\noptions ndots:2\n");
}

//! The pod network across hosts: agents in network namespaces of their own
//! on one bridge (`common::hosts`), real pods, real traffic.

mod common;

use std::time::Duration;

use common::hosts::Hosts;

/// A pod on `node` serving HTTP on 8080: its page, and `/cgi-bin/ip`
/// answering with the address the request came from.
fn web_pod(hosts: &Hosts, name: &str, node: &str) -> String {
    let image = common::test_image();
    let script = "mkdir -p /www/cgi-bin && echo hello from skiff > /www/index.html && printf '#!/bin/sh\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www";
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {name}}}}}\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: web\n    image: {image}\n    command: [sh, -c, {script:?}]\n    ports: [{{containerPort: 8080, name: http}}]\n"
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

#[test]
fn pods_reach_pods_across_hosts_over_vxlan() {
    cross_host_pod_to_pod("vxlan");
}

#[test]
fn pods_reach_pods_across_hosts_over_host_gw() {
    cross_host_pod_to_pod("host-gw");
}

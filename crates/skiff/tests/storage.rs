//! Persistent storage end to end: the built-in classes (`local-path`,
//! `local-disk`) served by the node's own CSI driver over its socket, the
//! node-deployment provisioner, and real pods writing and reading data.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::Cluster;

fn pod_with_claim(name: &str, image: &str, claim: &str, script: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n{extra_spec}  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {script:?}]\n    volumeMounts: [{{name: data, mountPath: /data}}]\n  volumes: [{{name: data, persistentVolumeClaim: {{claimName: {claim}}}}}]\n"
    )
}

fn claim(name: &str, size: &str, extra: &str) -> String {
    format!("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: {size}}}}}\n{extra}")
}

fn local_volumes(c: &Cluster) -> PathBuf {
    c.dir.path().join("data/agent/local-volumes")
}

fn wait_phase(c: &Cluster, pod: &str, phase: &str) {
    c.wait_up_to(Duration::from_secs(60), &["get", "pod", pod, "-o", "jsonpath={.status.phase}"], &format!("pod {pod} to be {phase}"), |p| p == phase);
}

/// A claim with no class gets the default one, `local-path`, and waits for
/// its first consumer; the pod's node provisions it through CSI, the claim
/// binds, and what the pod writes outlives the pod. Deleting the claim
/// deletes its volume and the data (reclaim policy Delete).
#[test]
fn a_claim_of_the_default_class_waits_for_its_pod_then_keeps_its_data() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let classes = c.ok(&["get", "storageclass"]);
    assert!(classes.contains("local-path (default)") && classes.contains("local-disk"), "{classes}");
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("data", "64Mi", "")));
    assert_eq!(c.ok(&["get", "pvc", "data", "-o", "jsonpath={.spec.storageClassName}"]), "local-path");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.ok(&["get", "pvc", "data", "-o", "jsonpath={.status.phase}"]), "Pending", "no pod uses it yet");

    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim("writer", &image, "data", "echo kept > /data/file", "")));
    wait_phase(&c, "writer", "Succeeded");
    let pv = c.ok(&["get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}"]);
    assert_eq!(c.ok(&["get", "pvc", "data", "-o", "jsonpath={.status.phase}"]), "Bound");
    let volume = c.json(&["get", "pv", &pv, "-o", "json"]);
    assert_eq!(volume["spec"]["csi"]["driver"], "local.csi.skiff.io");
    assert_eq!(volume["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"], "local.csi.skiff.io");
    assert_eq!(volume["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0], "node-1");
    let csinode = c.json(&["get", "csinode", "node-1", "-o", "json"]);
    assert_eq!(csinode["spec"]["drivers"][0]["name"], "local.csi.skiff.io", "{csinode}");
    assert_eq!(std::fs::read_to_string(local_volumes(&c).join(&pv).join("file")).unwrap(), "kept\n");

    c.ok(&["delete", "pod", "writer"]);
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim("reader", &image, "data", "cat /data/file", "")));
    wait_phase(&c, "reader", "Succeeded");
    assert_eq!(c.ok(&["logs", "reader"]), "kept\n");
    assert!(common::mounts_under(c.dir.path()).iter().all(|m| !m.contains("kubernetes.io~csi")) || c.ok(&["get", "pod", "reader", "-o", "jsonpath={.status.phase}"]) == "Succeeded");

    c.ok(&["delete", "pod", "reader"]);
    c.ok(&["delete", "pvc", "data"]);
    c.wait_up_to(Duration::from_secs(30), &["get", "pv", "-o", "name"], "the volume to be deleted", |o| o.is_empty());
    assert!(!local_volumes(&c).join(&pv).exists(), "its directory goes with it");
    assert!(common::mounts_under(c.dir.path()).is_empty(), "nothing stays mounted: {:?}", common::mounts_under(c.dir.path()));
}

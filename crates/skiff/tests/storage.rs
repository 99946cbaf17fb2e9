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

/// `local-disk`: each volume its own filesystem of the size asked, so a pod
/// cannot write past it; growing the claim grows the mounted filesystem
/// online (ControllerExpandVolume, then NodeExpandVolume), and `kubectl get
/// pvc` shows the new capacity. Shrinking is refused, as upstream. Online
/// growth is shown on xfs: growing a mounted ext4 needs CAP_SYS_RESOURCE,
/// which the machines this suite runs on do not grant even to root.
#[test]
fn a_local_disk_refuses_writes_past_its_size_and_grows_online() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("disk", "32Mi", "  storageClassName: local-disk\n")));
    let script = "dd if=/dev/zero of=/data/big bs=1M count=64 2>/dev/null || echo full; rm /data/big; sleep 3600";
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim("filler", &image, "disk", script, "")));
    wait_phase(&c, "filler", "Running");
    c.wait_for(&["logs", "filler"], "the write past the size to fail", |l| l.trim() == "full");
    let size_of_data = |pod: &str| c.ok(&["exec", pod, "--", "df", "-k", "/data"]).lines().nth(1).and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<u64>().ok()).unwrap();
    let size = size_of_data("filler");
    assert!((24_000..=33_000).contains(&size), "a 32Mi filesystem, less its own overhead: {size} KiB");
    let pv = c.ok(&["get", "pvc", "disk", "-o", "jsonpath={.spec.volumeName}"]);
    assert_eq!(c.ok(&["get", "pv", &pv, "-o", "jsonpath={.spec.csi.fsType} {.spec.capacity.storage}"]), "ext4 32Mi");
    let shrink = c.fails(&["patch", "pvc", "disk", "-p", r#"{"spec":{"resources":{"requests":{"storage":"16Mi"}}}}"#], None);
    assert!(shrink.contains("spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"), "{shrink}");

    let xfs = "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: local-xfs}\nprovisioner: local.csi.skiff.io\nparameters: {type: disk, csi.storage.k8s.io/fstype: xfs}\nvolumeBindingMode: WaitForFirstConsumer\nallowVolumeExpansion: true\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(xfs));
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("growing", "300Mi", "  storageClassName: local-xfs\n")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim("grower", &image, "growing", "sleep 3600", "")));
    wait_phase(&c, "grower", "Running");
    let before = size_of_data("grower");
    c.ok(&["patch", "pvc", "growing", "-p", r#"{"spec":{"resources":{"requests":{"storage":"400Mi"}}}}"#]);
    c.wait_up_to(Duration::from_secs(60), &["get", "pvc", "growing", "-o", "jsonpath={.status.capacity.storage}"], "the claim to grow", |s| s == "400Mi");
    let grown = c.ok(&["get", "pvc", "growing", "-o", "jsonpath={.spec.volumeName}"]);
    assert_eq!(c.ok(&["get", "pv", &grown, "-o", "jsonpath={.spec.capacity.storage}"]), "400Mi");
    let after = size_of_data("grower");
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=growing", "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}"]);
    assert!(after > before + 90_000, "the mounted filesystem grew: {before} → {after} KiB\n{events}\n{}", c.log());
    let columns = c.ok(&["get", "pvc", "growing", "--no-headers"]);
    assert_eq!(columns.split_whitespace().take(6).collect::<Vec<_>>(), ["growing", "Bound", grown.as_str(), "400Mi", "RWO", "local-xfs"], "{columns}");
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=growing", "-o", "jsonpath={.items[*].reason}"]);
    assert!(events.contains("ProvisioningSucceeded") && events.contains("Resizing") && events.contains("FileSystemResizeSuccessful"), "{events}");

    // The volumes, their loop devices and their mounts go with the pods and claims.
    c.ok(&["delete", "pod", "filler", "grower", "--grace-period=1"]);
    c.ok(&["delete", "pvc", "disk", "growing"]);
    c.wait_up_to(Duration::from_secs(30), &["get", "pv", "-o", "name"], "the volumes to be deleted", |o| o.is_empty());
    for volume in [&pv, &grown] {
        assert!(!local_volumes(&c).join(format!("{volume}.img")).exists());
        let loops = std::process::Command::new("losetup").arg("-a").output().unwrap();
        assert!(!String::from_utf8_lossy(&loops.stdout).contains(volume.as_str()), "no loop device is left");
    }
    assert!(common::mounts_under(c.dir.path()).is_empty(), "nothing stays mounted: {:?}", common::mounts_under(c.dir.path()));
}

/// What a class cannot give is refused where upstream refuses it: growing
/// a claim of a class without `allowVolumeExpansion` (Forbidden), a
/// ReadWriteMany claim of a local class (ProvisioningFailed, the claim
/// stays Pending, no volume is made), a class that does not exist (the
/// pod stays Pending, FailedScheduling), a size that is not a quantity.
#[test]
fn what_a_class_cannot_give_is_refused_and_nothing_is_left() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("plain", "8Mi", "")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim("user", &image, "plain", "sleep 3600", "")));
    wait_phase(&c, "user", "Running");
    let grow = c.fails(&["patch", "pvc", "plain", "-p", r#"{"spec":{"resources":{"requests":{"storage":"16Mi"}}}}"#], None);
    assert!(grow.contains("only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"), "{grow}");

    let shared = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: shared}\nspec:\n  accessModes: [ReadWriteMany]\n  resources: {requests: {storage: 8Mi}}\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(shared));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim("sharer", &image, "shared", "sleep 3600", "")));
    let failed = c.wait_up_to(Duration::from_secs(30), &["get", "events", "--field-selector", "involvedObject.name=shared,reason=ProvisioningFailed", "-o", "jsonpath={.items[*].message}"], "ProvisioningFailed", |m| !m.is_empty());
    assert!(failed.contains("access mode MULTI_NODE_MULTI_WRITER is not supported"), "{failed}");
    assert_eq!(c.ok(&["get", "pvc", "shared", "-o", "jsonpath={.status.phase}"]), "Pending");
    assert_eq!(c.ok(&["get", "pod", "sharer", "-o", "jsonpath={.status.phase}"]), "Pending");

    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("nowhere", "8Mi", "  storageClassName: nope\n")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim("lost", &image, "nowhere", "sleep 3600", "")));
    let reason = c.wait_for(&["get", "events", "--field-selector", "involvedObject.name=lost,reason=FailedScheduling", "-o", "jsonpath={.items[*].message}"], "FailedScheduling", |m| !m.is_empty());
    assert!(reason.contains("storageclass.storage.k8s.io \"nope\" not found"), "{reason}");

    let bad = c.fails(&["apply", "-f", "-"], Some(&claim("bad", "lots", "")));
    assert!(bad.contains("quantities must match the regular expression"), "{bad}");
    assert_eq!(c.ok(&["get", "pv", "-o", "name"]).lines().count(), 1, "only the plain claim's volume was made");
}

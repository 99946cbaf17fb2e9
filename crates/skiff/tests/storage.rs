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
/// its first consumer (upstream's event says so); the pod's node
/// provisions it through CSI (the claim names its provisioner), binds, and what the pod writes outlives the pod. Deleting the claim
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
    let waiting = c.ok(&["get", "events", "--field-selector", "involvedObject.name=data", "-o", "jsonpath={.items[*].reason}: {.items[*].message}"]);
    assert_eq!(waiting, "WaitForFirstConsumer: waiting for first consumer to be created before binding");

    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim("writer", &image, "data", "echo kept > /data/file", "")));
    wait_phase(&c, "writer", "Succeeded");
    let pv = c.ok(&["get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}"]);
    assert_eq!(c.ok(&["get", "pvc", "data", "-o", "jsonpath={.status.phase}"]), "Bound");
    assert_eq!(c.ok(&["get", "pvc", "data", "-o", "jsonpath={.metadata.annotations.volume\\.kubernetes\\.io/storage-provisioner}"]), "local.csi.skiff.io");
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
    // Its usage, per claim, in the agent's metrics and its Summary API.
    let metrics = c.ok(&["get", "--raw", "/api/v1/nodes/node-1/proxy/metrics"]);
    let capacity = metrics.lines().find_map(|l| l.strip_prefix(r#"kubelet_volume_stats_capacity_bytes{namespace="default",persistentvolumeclaim="disk"} "#)).unwrap_or_else(|| panic!("{metrics}"));
    let capacity: f64 = capacity.parse().unwrap();
    assert!((24e6..=33.6e6).contains(&capacity), "{capacity}");
    assert!(metrics.contains(r#"kubelet_volume_stats_inodes_used{namespace="default",persistentvolumeclaim="disk"}"#), "{metrics}");
    let summary = c.json(&["get", "--raw", "/api/v1/nodes/node-1/proxy/stats/summary"]);
    let pods = summary["pods"].as_array().unwrap();
    let filler = pods.iter().find(|p| p["podRef"]["name"] == "filler").unwrap();
    assert_eq!(filler["volume"][0]["pvcRef"]["name"], "disk", "{filler}");
    assert!(filler["volume"][0]["availableBytes"].as_u64().unwrap() > 0, "{filler}");
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

/// `volumeMode: Block` on `local-disk`: the pod gets the raw device, of
/// the size asked, at its `volumeDevices` path; what one pod writes to it
/// the next reads; nothing is left when the claim goes.
#[test]
fn a_block_claim_gives_the_pod_its_raw_device() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("raw", "16Mi", "  storageClassName: local-disk\n  volumeMode: Block\n")));
    let pod = |name: &str, script: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {script:?}]\n    volumeDevices: [{{name: data, devicePath: /dev/xvda}}]\n  volumes: [{{name: data, persistentVolumeClaim: {{claimName: raw}}}}]\n"
        )
    };
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("writer", "printf raw | dd of=/dev/xvda conv=notrunc 2>/dev/null && wc -c < /dev/xvda")));
    wait_phase(&c, "writer", "Succeeded");
    assert_eq!(c.ok(&["logs", "writer"]).trim(), "16777216", "the device is exactly the size asked");
    let pv = c.ok(&["get", "pvc", "raw", "-o", "jsonpath={.spec.volumeName}"]);
    assert_eq!(c.ok(&["get", "pv", &pv, "-o", "jsonpath={.spec.volumeMode}"]), "Block");
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("reader", "head -c 3 /dev/xvda")));
    wait_phase(&c, "reader", "Succeeded");
    assert_eq!(c.ok(&["logs", "reader"]).trim(), "raw");

    c.ok(&["delete", "pod", "writer", "reader"]);
    c.ok(&["delete", "pvc", "raw"]);
    c.wait_up_to(Duration::from_secs(30), &["get", "pv", "-o", "name"], "the volume to be deleted", |o| o.is_empty());
    let loops = std::process::Command::new("losetup").arg("-a").output().unwrap();
    assert!(!String::from_utf8_lossy(&loops.stdout).contains(pv.as_str()), "no loop device is left");
    assert!(common::mounts_under(c.dir.path()).is_empty(), "nothing stays mounted: {:?}", common::mounts_under(c.dir.path()));
}

/// An inline CSI volume (`volumes[].csi`) of `local.csi.skiff.io`: made
/// when the pod starts, told the pod's details (`podInfoOnMount`), gone
/// with the pod. A driver whose CSIDriver lists only `Persistent` is
/// refused with upstream's FailedMount message. Such pods are created,
/// read, listed, patched and deleted as any other.
/// [sig-storage] CSIInlineVolumes should support CSIVolumeSource in Pod API [Conformance]
#[test]
fn an_inline_csi_volume_lives_and_goes_with_its_pod() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let pod = |name: &str, driver: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, 'echo scratch > /scratch/file; sleep 3600']\n    volumeMounts: [{{name: scratch, mountPath: /scratch}}]\n  volumes: [{{name: scratch, csi: {{driver: {driver}}}}}]\n"
        )
    };
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("inline", "local.csi.skiff.io")));
    wait_phase(&c, "inline", "Running");
    let ephemeral = local_volumes(&c).join("ephemeral");
    c.wait_for(&["get", "pod", "inline", "-o", "name"], "the pod's file", |_| std::fs::read_dir(&ephemeral).into_iter().flatten().flatten().any(|v| v.path().join("file").exists()));
    let volumes: Vec<_> = std::fs::read_dir(&ephemeral).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(volumes.len() == 1 && volumes[0].starts_with("csi-"), "{volumes:?}");
    assert!(c.ok(&["get", "pv", "-o", "name"]).is_empty(), "no PersistentVolume for an inline volume");
    c.ok(&["patch", "pod", "inline", "-p", r#"{"metadata":{"labels":{"patched":"yes"}}}"#]);
    assert_eq!(c.ok(&["get", "pods", "-l", "patched=yes", "-o", "jsonpath={.items[*].spec.volumes[0].csi.driver}"]), "local.csi.skiff.io");

    c.ok_stdin(&["apply", "-f", "-"], Some(&pod("refused", "subdir.csi.skiff.io")));
    let events = c.wait_for(&["get", "events", "--field-selector", "involvedObject.name=refused,reason=FailedMount", "-o", "jsonpath={.items[*].message}"], "a FailedMount event", |e| !e.is_empty());
    assert!(events.contains(r#"volume mode "Ephemeral" not supported by driver subdir.csi.skiff.io (only supports ["Persistent"])"#), "{events}");

    c.ok(&["delete", "pod", "inline", "refused"]);
    c.wait_for(&["get", "pods", "-o", "name"], "the volume to go with its pod", |_| std::fs::read_dir(&ephemeral).unwrap().count() == 0);
    assert!(common::mounts_under(c.dir.path()).is_empty(), "{:?}", common::mounts_under(c.dir.path()));
}

/// A driver whose CSIDriver says `attachRequired: true`: a pod's volume
/// gets a VolumeAttachment to the pod's node (upstream's name), the
/// node's attacher takes it (the driver's finalizer) and attaches it, and
/// only then does the kubelet mount the volume; the attachment goes with
/// the pod.
#[test]
fn volumes_of_a_driver_that_attaches_wait_for_their_attachment() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    c.ok(&["delete", "csidriver", "local.csi.skiff.io"]);
    let driver = "apiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata: {name: local.csi.skiff.io}\nspec: {attachRequired: true, podInfoOnMount: true, fsGroupPolicy: File, volumeLifecycleModes: [Persistent, Ephemeral]}\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(driver));
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("attached", "16Mi", "  storageClassName: local-disk\n")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim("user", &image, "attached", "echo ok > /data/f; sleep 3600", "")));
    wait_phase(&c, "user", "Running");
    let pv = c.ok(&["get", "pvc", "attached", "-o", "jsonpath={.spec.volumeName}"]);
    let handle = c.ok(&["get", "pv", &pv, "-o", "jsonpath={.spec.csi.volumeHandle}"]);
    let name = skiff_csi::attachment_name(&handle, "local.csi.skiff.io", "node-1");
    let attachment = c.json(&["get", "volumeattachment", &name, "-o", "json"]);
    assert_eq!(attachment["spec"]["attacher"], "local.csi.skiff.io");
    assert_eq!(attachment["spec"]["source"]["persistentVolumeName"], pv.as_str());
    assert_eq!(attachment["status"]["attached"], true, "{attachment}");
    assert_eq!(attachment["metadata"]["finalizers"][0], "external-attacher/local-csi-skiff-io");
    let row = c.ok(&["get", "volumeattachment", "--no-headers"]);
    assert_eq!(row.split_whitespace().take(5).collect::<Vec<_>>(), [name.as_str(), "local.csi.skiff.io", pv.as_str(), "node-1", "true"], "{row}");

    c.ok(&["delete", "pod", "user", "--grace-period=1"]);
    c.wait_up_to(Duration::from_secs(30), &["get", "volumeattachment", "-o", "name"], "the attachment to go with the pod", |o| o.is_empty());
}

/// `local-disk` snapshots, restores and clones: a VolumeSnapshot of a
/// claim (the driver's default class) gets its content and is ready; a
/// claim restored from it holds what the volume held then, a claim cloned
/// from the volume what it holds now; deleting the snapshot deletes its
/// content and its copy on the node.
#[test]
fn a_local_disk_is_snapshotted_restored_and_cloned() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let disk = "  storageClassName: local-disk\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("orig", "32Mi", disk)));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim("first", &image, "orig", "echo v1 > /data/f", "")));
    wait_phase(&c, "first", "Succeeded");
    c.ok_stdin(&["apply", "-f", "-"], Some("apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\nmetadata: {name: snap}\nspec: {source: {persistentVolumeClaimName: orig}}\n"));
    c.wait_for(&["get", "volumesnapshot", "snap", "-o", "jsonpath={.status.readyToUse}"], "the snapshot to be ready", |r| r == "true");
    let snapshot = c.json(&["get", "volumesnapshot", "snap", "-o", "json"]);
    assert_eq!(snapshot["spec"]["volumeSnapshotClassName"], serde_json::Value::Null, "the default class was used: {snapshot}");
    assert_eq!(snapshot["status"]["restoreSize"], "32Mi");
    let content = snapshot["status"]["boundVolumeSnapshotContentName"].as_str().unwrap().to_string();
    let row = c.ok(&["get", "volumesnapshotcontent", &content, "--no-headers"]);
    assert_eq!(row.split_whitespace().take(5).collect::<Vec<_>>(), [content.as_str(), "true", "33554432", "Delete", "local.csi.skiff.io"], "{row}");

    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim("second", &image, "orig", "echo v2 > /data/f", "")));
    wait_phase(&c, "second", "Succeeded");
    let from_snapshot = format!("{disk}  dataSource: {{apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: snap}}\n");
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("restored", "32Mi", &from_snapshot)));
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("cloned", "32Mi", &format!("{disk}  dataSource: {{kind: PersistentVolumeClaim, name: orig}}\n"))));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim("old", &image, "restored", "cat /data/f", "")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim("new", &image, "cloned", "cat /data/f", "")));
    wait_phase(&c, "old", "Succeeded");
    wait_phase(&c, "new", "Succeeded");
    assert_eq!(c.ok(&["logs", "old"]).trim(), "v1", "the snapshot holds what the volume held when it was taken");
    assert_eq!(c.ok(&["logs", "new"]).trim(), "v2", "the clone holds what the volume holds");
    let bigger = c.ok_stdin(&["apply", "-f", "-"], Some(&claim("bigger", "64Mi", &from_snapshot)));
    assert!(bigger.contains("created"));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim("big", &image, "bigger", "true", "")));
    let failed = c.wait_for(&["get", "events", "--field-selector", "involvedObject.name=bigger,reason=ProvisioningFailed", "-o", "jsonpath={.items[*].message}"], "the bigger restore to be refused", |e| !e.is_empty());
    assert!(failed.contains("restores and clones at the source's size"), "{failed}");

    c.ok(&["delete", "volumesnapshot", "snap"]);
    c.wait_for(&["get", "volumesnapshotcontent", "-o", "name"], "the content to go with its snapshot", |o| o.is_empty());
    assert_eq!(std::fs::read_dir(local_volumes(&c).join("snapshots")).unwrap().count(), 0, "the copy on the node is gone");
    c.ok(&["delete", "pods", "--all", "--grace-period=1"]);
    c.ok(&["delete", "pvc", "--all"]);
    c.wait_up_to(Duration::from_secs(60), &["get", "pv", "-o", "name"], "the volumes to be deleted", |o| o.is_empty());
    assert!(loops_under(c.dir.path()).is_empty(), "{:?}", loops_under(c.dir.path()));
}

/// A StatefulSet's replicas each get their own provisioned volume and
/// keep their own data: each writes its first pod's UID, and the pods
/// made again after a delete find it.
#[test]
fn statefulset_replicas_keep_their_own_data() {
    let image = common::test_image();
    let c = Cluster::start_node(&[]);
    let script = "[ -f /data/id ] || echo $POD_UID > /data/id; cat /data/id; sleep 3600";
    let set = format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db}}\nspec:\n  serviceName: db\n  replicas: 2\n  selector: {{matchLabels: {{app: db}}}}\n  template:\n    metadata: {{labels: {{app: db}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: db\n        image: '{image}'\n        command: [sh, -c, '{script}']\n        env: [{{name: POD_UID, valueFrom: {{fieldRef: {{fieldPath: metadata.uid}}}}}}]\n        volumeMounts: [{{name: data, mountPath: /data}}]\n  volumeClaimTemplates:\n  - metadata: {{name: data}}\n    spec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 16Mi}}}}}}\n"
    );
    c.ok_stdin(&["apply", "-f", "-"], Some(&set));
    c.ok(&["rollout", "status", "sts/db", "--timeout=60s"]);
    let classes = c.ok(&["get", "pvc", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.storageClassName}/{.status.phase} {end}"]);
    assert_eq!(classes.trim(), "data-db-0=local-path/Bound data-db-1=local-path/Bound");
    let first: Vec<String> = ["db-0", "db-1"].iter().map(|p| c.ok(&["get", "pod", p, "-o", "jsonpath={.metadata.uid}"])).collect();
    for (pod, uid) in ["db-0", "db-1"].iter().zip(&first) {
        c.wait_for(&["logs", pod], "the replica to write its id", |l| l.trim() == uid);
    }
    c.ok(&["delete", "pod", "db-0", "db-1"]);
    c.ok(&["rollout", "status", "sts/db", "--timeout=60s"]);
    for (pod, uid) in ["db-0", "db-1"].iter().zip(&first) {
        assert_ne!(&c.ok(&["get", "pod", pod, "-o", "jsonpath={.metadata.uid}"]), uid, "a new pod");
        c.wait_for(&["logs", pod], "the replica's own data", |l| l.trim() == uid);
    }
}

/// Loop devices backed by files under `dir`, as `losetup` lists them.
fn loops_under(dir: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("losetup").args(["--list", "--noheadings", "--raw", "--output", "NAME,BACK-FILE"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.split_once(' ').is_some_and(|(_, f)| std::path::Path::new(f).starts_with(dir))).map(str::to_string).collect()
}

/// kill -9 in the middle of provisioning and mounting `local-disk`
/// volumes, then start again: every claim still comes up, each volume
/// has one file, one loop device and one staging mount, and once the
/// pods and claims are deleted nothing is left: no loop device, mount,
/// file or directory.
#[test]
fn a_node_killed_while_provisioning_and_mounting_leaks_nothing() {
    let image = common::test_image();
    let mut c = Cluster::start_node(&[]);
    const N: usize = 8;
    for i in 0..N {
        c.ok_stdin(&["apply", "-f", "-"], Some(&claim(&format!("d{i}"), "16Mi", "  storageClassName: local-disk\n")));
        c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim(&format!("p{i}"), &image, &format!("d{i}"), "echo ok > /data/f; sleep 3600", "")));
    }
    c.wait_for(&["get", "pv", "-o", "name"], "some volumes to be made", |o| o.lines().count() >= 2);
    c.stop();
    let made = std::fs::read_dir(local_volumes(&c)).unwrap().count();
    eprintln!("killed with {made} volume files (finished or not) on the node");
    c.boot();
    let running = "jsonpath={range .items[*]}{.status.phase} {end}";
    c.wait_up_to(Duration::from_secs(90), &["get", "pods", "-o", running], "every pod to run after the restart", |o| o.split_whitespace().filter(|p| *p == "Running").count() == N);
    let files: Vec<String> = std::fs::read_dir(local_volumes(&c)).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files.len(), N, "one file per volume, no half-made one: {files:?}");
    assert!(files.iter().all(|f| f.ends_with(".img")), "{files:?}");
    assert_eq!(loops_under(c.dir.path()).len(), N, "one loop device per volume: {:?}", loops_under(c.dir.path()));
    let staged = common::mounts_under(c.dir.path()).into_iter().filter(|m| m.ends_with("/globalmount")).count();
    assert_eq!(staged, N, "each volume staged once");

    c.ok(&["delete", "pods", "--all", "--grace-period=1"]);
    c.ok(&["delete", "pvc", "--all"]);
    c.wait_up_to(Duration::from_secs(60), &["get", "pv", "-o", "name"], "the volumes to be deleted", |o| o.is_empty());
    assert!(loops_under(c.dir.path()).is_empty(), "{:?}", loops_under(c.dir.path()));
    assert!(common::mounts_under(c.dir.path()).is_empty(), "{:?}", common::mounts_under(c.dir.path()));
    assert_eq!(std::fs::read_dir(local_volumes(&c)).unwrap().count(), 0);
}

/// What a class cannot give is refused where upstream refuses it: growing
/// a claim of a class without `allowVolumeExpansion` (Forbidden), a
/// ReadWriteMany claim of a local class (ProvisioningFailed, the claim
/// stays Pending, no volume is made), a class that does not exist (the
/// pod stays Pending, FailedScheduling), more than the node's disk holds
/// (FailedScheduling, from the capacity the node publishes), a size that
/// is not a quantity.
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

    // More than the node's disk holds: the node publishes what its driver
    // has left (CSIStorageCapacity), and the scheduler says there is no room.
    let capacities = c.ok(&["get", "csistoragecapacities", "-n", "kube-system", "-o", "jsonpath={range .items[*]}{.storageClassName}={.nodeTopology.matchLabels.topology\\.local\\.csi\\.skiff\\.io/node} {end}"]);
    assert!(capacities.contains("local-disk=node-1") && capacities.contains("local-path=node-1"), "{capacities}");
    c.ok_stdin(&["apply", "-f", "-"], Some(&claim("vast", "100Ti", "  storageClassName: local-disk\n")));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_with_claim("vast", &image, "vast", "sleep 3600", "")));
    let reason = c.wait_for(&["get", "events", "--field-selector", "involvedObject.name=vast,involvedObject.kind=Pod,reason=FailedScheduling", "-o", "jsonpath={.items[*].message}"], "FailedScheduling", |m| !m.is_empty());
    assert!(reason.contains("node(s) did not have enough free storage"), "{reason}");

    let bad = c.fails(&["apply", "-f", "-"], Some(&claim("bad", "lots", "")));
    assert!(bad.contains("quantities must match the regular expression"), "{bad}");
    assert_eq!(c.ok(&["get", "pv", "-o", "name"]).lines().count(), 1, "only the plain claim's volume was made");
}

/// A GlusterFS server in a network namespace of its own on the hosts'
/// segment (10.255.{n}.240), serving volume `gv0` from a brick in a
/// temporary directory. Its state and its command socket are in that
/// directory too, apart from any glusterd the machine runs.
struct GlusterServer {
    netns: String,
    address: String,
    dir: tempfile::TempDir,
    glusterd: std::process::Child,
}

impl GlusterServer {
    fn start(hosts: &common::hosts::Hosts) -> GlusterServer {
        let n = hosts.n();
        let (netns, address) = (format!("sk{n}-gfs"), format!("10.255.{n}.240"));
        hosts.plug_in(&netns, &format!("sk{n}gfs"), &address);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("state")).unwrap();
        std::fs::create_dir_all(d.join("brick")).unwrap();
        let config = format!(
            "volume management\n    type mgmt/glusterd\n    option working-directory {}\n    option glusterd-sockfile {}\n    option transport-type socket\n    option transport.socket.bind-address {address}\n    option ping-timeout 0\n    option event-threads 1\nend-volume\n",
            d.join("state").display(),
            d.join("glusterd.socket").display()
        );
        std::fs::write(d.join("glusterd.vol"), config).unwrap();
        let glusterd = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args(["glusterd", "-N", "-f"])
            .arg(d.join("glusterd.vol"))
            .arg(format!("--log-file={}", d.join("glusterd.log").display()))
            .spawn()
            .expect("glusterd (glusterfs-server) is installed");
        let server = GlusterServer { netns, address: address.clone(), dir, glusterd };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !server.gluster(&["volume", "list"]).status.success() {
            assert!(std::time::Instant::now() < deadline, "glusterd did not start: {}", std::fs::read_to_string(server.dir.path().join("glusterd.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(200));
        }
        let brick = format!("{address}:{}", server.brick().display());
        for args in [&["volume", "create", "gv0", &brick, "force"][..], &["volume", "start", "gv0"]] {
            let out = server.gluster(args);
            assert!(out.status.success(), "gluster {}: {}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        server
    }

    fn gluster(&self, args: &[&str]) -> std::process::Output {
        let socket = format!("--glusterd-sock={}", self.dir.path().join("glusterd.socket").display());
        std::process::Command::new("gluster").args([socket.as_str(), "--mode=script"]).args(args).output().unwrap()
    }

    /// The volume's files, as the server keeps them.
    fn brick(&self) -> PathBuf {
        self.dir.path().join("brick")
    }
}

impl Drop for GlusterServer {
    fn drop(&mut self) {
        let _ = self.gluster(&["volume", "stop", "gv0"]);
        let _ = self.glusterd.kill();
        let _ = self.glusterd.wait();
        // The brick's own process, and anything else glusterd started there.
        let pids = std::process::Command::new("ip").args(["netns", "pids", &self.netns]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = std::process::Command::new("kill").args(["-9", pid]).output();
        }
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.netns]).output();
    }
}

fn pod_on(host: &str, name: &str, image: &str, claim: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: {host}\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {script:?}]\n    volumeMounts: [{{name: data, mountPath: /data}}]\n  volumes: [{{name: data, persistentVolumeClaim: {{claimName: {claim}}}}}]\n"
    )
}

/// Cross-node ReadWriteMany volumes on a GlusterFS server of their own,
/// with agents on two hosts: an in-tree `glusterfs` PersistentVolume
/// (servers from an Endpoints object) and a claim of a
/// `subdir.csi.skiff.io` class, provisioned as a subdirectory of the
/// share; what a pod on one host writes, a pod on the other reads. The
/// class's `onDelete: archive` keeps a deleted claim's data aside.
/// NFS takes the same path through the kernel's client; a kernel without
/// one (this suite's) gets the mount's error as a FailedMount event.
#[test]
fn read_write_many_volumes_are_shared_across_hosts() {
    let image = common::test_image();
    let hosts = common::hosts::Hosts::start(2, &[]);
    let c = &hosts.cluster;
    let gluster = GlusterServer::start(&hosts);
    let address = gluster.address.clone();

    // In-tree: a PersistentVolume naming the server through Endpoints.
    let in_tree = format!(
        "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: glusterfs-cluster}}\nsubsets: [{{addresses: [{{ip: {address}}}], ports: [{{port: 1}}]}}]\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: gluster-pv}}\nspec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteMany]\n  glusterfs: {{endpoints: glusterfs-cluster, path: gv0}}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: in-tree}}\nspec:\n  accessModes: [ReadWriteMany]\n  storageClassName: ''\n  volumeName: gluster-pv\n  resources: {{requests: {{storage: 1Gi}}}}\n"
    );
    c.ok_stdin(&["apply", "-f", "-"], Some(&in_tree));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_on("h1", "tree-writer", &image, "in-tree", "echo from-h1 > /data/tree")));
    wait_phase(c, "tree-writer", "Succeeded");
    assert_eq!(std::fs::read_to_string(gluster.brick().join("tree")).unwrap(), "from-h1\n", "the file is on the server");
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_on("h2", "tree-reader", &image, "in-tree", "cat /data/tree")));
    wait_phase(c, "tree-reader", "Succeeded");
    assert_eq!(c.ok(&["logs", "tree-reader"]).trim(), "from-h1");

    // Dynamic: a subdirectory of the share per claim.
    let class = format!(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: shared}}\nprovisioner: subdir.csi.skiff.io\nparameters: {{type: glusterfs, server: '{address}', share: gv0, subDir: '${{pvc.metadata.namespace}}-${{pvc.metadata.name}}', onDelete: archive}}\nreclaimPolicy: Delete\nvolumeBindingMode: Immediate\n"
    );
    c.ok_stdin(&["apply", "-f", "-"], Some(&class));
    let shared = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteMany]\n  storageClassName: shared\n  resources: {requests: {storage: 1Gi}}\n";
    c.ok_stdin(&["apply", "-f", "-"], Some(shared));
    c.wait_up_to(Duration::from_secs(60), &["get", "pvc", "data", "-o", "jsonpath={.status.phase}"], "the claim to bind", |p| p == "Bound");
    assert!(gluster.brick().join("default-data").is_dir(), "the claim's subdirectory is made on the share");
    let pv = c.ok(&["get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}"]);
    assert_eq!(c.ok(&["get", "pv", &pv, "-o", "jsonpath={.spec.csi.driver} {.spec.accessModes[0]}"]), "subdir.csi.skiff.io ReadWriteMany");
    // Both hosts at once: each writes its file, then waits for the other's.
    let both = |me: &str, other: &str| format!("echo {me} > /data/{me}; for i in $(seq 100); do [ -f /data/{other} ] && break; sleep 0.2; done; cat /data/{other}; sleep 1");
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_on("h1", "left", &image, "data", &both("h1", "h2"))));
    c.ok_stdin(&["apply", "-f", "-"], Some(&pod_on("h2", "right", &image, "data", &both("h2", "h1"))));
    wait_phase(c, "left", "Succeeded");
    wait_phase(c, "right", "Succeeded");
    assert_eq!(c.ok(&["logs", "left"]).trim(), "h2");
    assert_eq!(c.ok(&["logs", "right"]).trim(), "h1");
    assert_eq!(std::fs::read_to_string(gluster.brick().join("default-data/h1")).unwrap(), "h1\n");

    c.ok(&["delete", "pod", "left", "right", "tree-writer", "tree-reader"]);
    c.ok(&["delete", "pvc", "data"]);
    c.wait_up_to(Duration::from_secs(30), &["get", "pv", &pv, "-o", "name", "--ignore-not-found"], "the volume to be deleted", |o| o.is_empty());
    assert!(!gluster.brick().join("default-data").exists() && gluster.brick().join("archived-default-data/h2").is_file(), "onDelete: archive keeps the data aside");
    for host in ["h1", "h2"] {
        let mounts = common::mounts_under(&hosts.host(host).dir);
        assert!(mounts.is_empty(), "nothing stays mounted on {host}: {mounts:?}");
    }

    // NFS: the same path, through the kernel's client.
    let nfs = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: nfs-user}}\nspec:\n  nodeName: h1\n  containers:\n  - name: main\n    image: {image}\n    command: [ls, /data]\n    volumeMounts: [{{name: data, mountPath: /data}}]\n  volumes: [{{name: data, nfs: {{server: '{address}', path: /exports}}}}]\n"
    );
    c.ok_stdin(&["apply", "-f", "-"], Some(&nfs));
    if std::fs::read_to_string("/proc/filesystems").unwrap_or_default().contains("\tnfs\n") {
        eprintln!("NFS: this kernel has a client, but no NFS server runs here to mount from: only the error path is checked");
    } else {
        eprintln!("NFS: skipped mounting: this kernel has no NFS client; checking that the pod says so");
    }
    let events = c.wait_for(&["get", "events", "--field-selector", "involvedObject.name=nfs-user,reason=FailedMount", "-o", "jsonpath={.items[*].message}"], "a FailedMount event", |e| !e.is_empty());
    assert!(events.contains("MountVolume.SetUp failed for volume \"data\"") && events.contains("mount"), "{events}");
}

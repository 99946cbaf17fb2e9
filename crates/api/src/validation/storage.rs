//! storage.k8s.io/v1: storage classes, CSI drivers and nodes, storage
//! capacities and volume attachments, as upstream's
//! `pkg/apis/storage/validation`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{PersistentVolumeSpec, TopologySelectorTerm};
use k8s_openapi::api::storage::v1::{
    CSIDriver, CSINode, CSIStorageCapacity, StorageClass, VolumeAttachment, VolumeAttachmentSpec, VolumeError,
};

use super::core::{access_modes, csi_driver_name};
use super::pod_scheduling::{topology_selector_term, TermSet};
use super::resources::nonnegative_quantity;
use super::{dns1123_subdomain, immutable, label_selector, name_by, non_negative, qualified_name, semantic_immutable, Bad, Errors, Op, Path};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    Some(match kind {
        "StorageClass" => op.run(storage_class, storage_class_update, super::nothing),
        "CSIDriver" => op.run(csi_driver, csi_driver_update, super::nothing),
        "CSINode" => op.run(csi_node, csi_node_update, super::nothing),
        "CSIStorageCapacity" => op.run(csi_storage_capacity, csi_storage_capacity_update, super::nothing),
        "VolumeAttachment" => op.run(volume_attachment, volume_attachment_update, volume_attachment_status),
        _ => return None,
    })
}

// ---- StorageClass ------------------------------------------------------

const MAX_PARAMETERS: usize = 512;
const MAX_PARAMETERS_SIZE: usize = 256 * 1024;

/// What upstream's defaulting puts in a class that leaves these out.
const DEFAULT_RECLAIM_POLICY: &str = "Delete";
const DEFAULT_BINDING_MODE: &str = "Immediate";

fn storage_class(class: &StorageClass) -> Errors {
    let mut errs = provisioner(&class.provisioner, &Path::new("provisioner"));
    errs.extend(parameters(class.parameters.as_ref(), &Path::new("parameters")));
    if let Some(policy) = class.reclaim_policy.as_deref().filter(|p| !p.is_empty()) {
        if !["Delete", "Retain"].contains(&policy) {
            errs.push(Path::new("reclaimPolicy").not_supported(policy, &["Delete", "Retain"]));
        }
    }
    if let Some(mode) = class.volume_binding_mode.as_deref() {
        if !["Immediate", "WaitForFirstConsumer"].contains(&mode) {
            errs.push(Path::new("volumeBindingMode").not_supported(mode, &["Immediate", "WaitForFirstConsumer"]));
        }
    }
    errs.extend(allowed_topologies(class.allowed_topologies.as_deref().unwrap_or_default(), &Path::new("allowedTopologies")));
    errs
}

fn storage_class_update(new: &StorageClass, old: &StorageClass) -> Errors {
    let mut errs = Vec::new();
    if new.parameters.clone().unwrap_or_default() != old.parameters.clone().unwrap_or_default() {
        errs.push(Path::new("parameters").forbidden("updates to parameters are forbidden."));
    }
    if new.provisioner != old.provisioner {
        errs.push(Path::new("provisioner").forbidden("updates to provisioner are forbidden."));
    }
    let reclaim = |c: &StorageClass| c.reclaim_policy.clone().unwrap_or_else(|| DEFAULT_RECLAIM_POLICY.into());
    if reclaim(new) != reclaim(old) {
        errs.push(Path::new("reclaimPolicy").forbidden("updates to reclaimPolicy are forbidden."));
    }
    let mode = |c: &StorageClass| c.volume_binding_mode.clone().unwrap_or_else(|| DEFAULT_BINDING_MODE.into());
    errs.extend(immutable(&mode(new), &mode(old), &Path::new("volumeBindingMode")));
    errs
}

/// A provisioner (or driver) name: a qualified name, in any case.
fn provisioner(name: &str, path: &Path) -> Errors {
    if name.is_empty() {
        return vec![path.required("")];
    }
    match qualified_name(&name.to_lowercase()) {
        Ok(()) => vec![],
        Err(why) => vec![path.invalid(name, &why)],
    }
}

fn parameters(params: Option<&BTreeMap<String, String>>, path: &Path) -> Errors {
    let params = match params {
        Some(p) => p,
        None => return vec![],
    };
    if params.len() > MAX_PARAMETERS {
        return vec![path.too_long(MAX_PARAMETERS)];
    }
    let mut errs = Vec::new();
    let mut size = 0;
    for (k, v) in params {
        if k.is_empty() {
            errs.push(path.invalid(k, "field can not be empty."));
        }
        size += k.len() + v.len();
    }
    if size > MAX_PARAMETERS_SIZE {
        errs.push(path.too_long(MAX_PARAMETERS_SIZE));
    }
    errs
}

/// Upstream's `validateAllowedTopologies`: each term valid, no two terms
/// alike. Upstream seeds its list of seen terms with one empty term per
/// term (a quirk kept here), so a term with no expressions is always a
/// duplicate.
fn allowed_topologies(terms: &[TopologySelectorTerm], path: &Path) -> Errors {
    let mut errs = Vec::new();
    let mut seen: Vec<TermSet> = vec![TermSet::new(); terms.len()];
    for (i, term) in terms.iter().enumerate() {
        let at = path.index(i);
        let (set, term_errs) = topology_selector_term(term, &at);
        errs.extend(term_errs);
        for earlier in &seen {
            if *earlier == set {
                errs.push(at.child("matchLabelExpressions").duplicate(""));
            }
        }
        seen.push(set);
    }
    errs
}

// ---- CSIDriver and CSINode -------------------------------------------

const LIFECYCLE_MODES: [&str; 2] = ["Persistent", "Ephemeral"];

/// The CSIDriver's name is its metadata.name (a DNS subdomain, checked
/// with the metadata). Upstream's `Required` checks of attachRequired,
/// podInfoOnMount, storageCapacity and seLinuxMount never fire there,
/// as its defaulting fills them in: so they are not made here.
fn csi_driver(driver: &CSIDriver) -> Errors {
    let spec = &driver.spec;
    let path = Path::new("spec");
    let mut errs = Vec::new();
    if let Some(policy) = spec.fs_group_policy.as_deref() {
        let supported = ["File", "None", "ReadWriteOnceWithFSType"];
        if !supported.contains(&policy) {
            errs.push(path.child("fsGroupPolicy").not_supported(policy, &supported));
        }
    }
    let mut audiences = BTreeSet::new();
    for (i, request) in spec.token_requests.iter().flatten().enumerate() {
        let at = path.child("tokenRequests").index(i);
        if !audiences.insert(request.audience.as_str()) {
            errs.push(at.child("audience").duplicate(&request.audience));
            continue;
        }
        if let Some(seconds) = request.expiration_seconds {
            if seconds < 600 {
                errs.push(at.child("expirationSeconds").invalid(seconds, "may not specify a duration less than 10 minutes"));
            }
            if seconds > 1 << 32 {
                errs.push(at.child("expirationSeconds").invalid(seconds, "may not specify a duration larger than 2^32 seconds"));
            }
        }
    }
    for mode in spec.volume_lifecycle_modes.iter().flatten() {
        if !LIFECYCLE_MODES.contains(&mode.as_str()) {
            errs.push(path.child("volumeLifecycleModes").not_supported(mode, &LIFECYCLE_MODES));
        }
    }
    errs
}

/// attachRequired (upstream's path says `attachedRequired`) and the
/// lifecycle modes are fixed; the rest of the spec may change. Both are
/// compared as upstream defaults them.
fn csi_driver_update(new: &CSIDriver, old: &CSIDriver) -> Errors {
    let mut errs = Vec::new();
    let attach = |d: &CSIDriver| d.spec.attach_required.unwrap_or(true);
    if attach(new) != attach(old) {
        errs.push(Path::new("spec").child("attachedRequired").invalid(attach(new), super::IMMUTABLE));
    }
    let modes = |d: &CSIDriver| match d.spec.volume_lifecycle_modes.as_deref() {
        Some(m) if !m.is_empty() => m.to_vec(),
        _ => vec!["Persistent".to_string()],
    };
    if modes(new) != modes(old) {
        let shown: Vec<String> = modes(new).iter().map(|m| format!("{m:?}")).collect();
        let shown = format!("[]storage.VolumeLifecycleMode{{{}}}", shown.join(", "));
        errs.push(Path::new("spec").child("volumeLifecycleModes").invalid(Bad::raw(shown), super::IMMUTABLE));
    }
    errs
}

/// The longest node ID upstream accepts (it allows the longer of its two
/// limits in the API).
const MAX_NODE_ID: usize = 256;

fn csi_node(node: &CSINode) -> Errors {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    let path = Path::new("spec").child("drivers");
    for (i, driver) in node.spec.drivers.iter().enumerate() {
        let at = path.index(i);
        errs.extend(csi_driver_name(&driver.name, &at.child("name")));
        if driver.node_id.is_empty() {
            errs.push(at.child("nodeID").required(""));
        }
        if driver.node_id.len() > MAX_NODE_ID {
            errs.push(at.child("nodeID").invalid(&driver.node_id, &format!("must be {MAX_NODE_ID} characters or less")));
        }
        if let Some(count) = driver.allocatable.as_ref().and_then(|a| a.count) {
            errs.extend(non_negative(count.into(), &at.child("allocatable").child("count")));
        }
        if !names.insert(driver.name.as_str()) {
            errs.push(at.child("name").duplicate(&driver.name));
        }
        // Upstream reports topology key errors on the driver itself.
        let mut keys = BTreeSet::new();
        for key in driver.topology_keys.iter().flatten() {
            if key.is_empty() {
                errs.push(at.required(""));
            }
            if !keys.insert(key.as_str()) {
                errs.push(at.duplicate(key));
            }
            if let Err(why) = qualified_name(key) {
                errs.push(at.invalid(key, &why));
            }
        }
    }
    errs
}

/// A driver, once registered on a node, stays as it is until removed.
fn csi_node_update(new: &CSINode, old: &CSINode) -> Errors {
    let mut errs = Vec::new();
    for before in &old.spec.drivers {
        for after in new.spec.drivers.iter().filter(|d| d.name == before.name) {
            errs.extend(immutable(after, before, &Path::new("spec").child("drivers")));
        }
    }
    errs
}

// ---- CSIStorageCapacity ----------------------------------------------

fn csi_storage_capacity(capacity: &CSIStorageCapacity) -> Errors {
    let mut errs = Vec::new();
    if let Some(selector) = &capacity.node_topology {
        errs.extend(label_selector(selector, &Path::new("nodeTopology")));
    }
    errs.extend(name_by(dns1123_subdomain, &capacity.storage_class_name, &Path::new("storageClassName")));
    if let Some(q) = &capacity.capacity {
        errs.extend(nonnegative_quantity(q, &Path::new("capacity")));
    }
    errs
}

/// What the driver was asked about (topology, class) is fixed; only the
/// answers (capacity, maximumVolumeSize) change.
fn csi_storage_capacity_update(new: &CSIStorageCapacity, old: &CSIStorageCapacity) -> Errors {
    let mut errs = semantic_immutable(&new.node_topology, &old.node_topology, &Path::new("nodeTopology"));
    errs.extend(immutable(&new.storage_class_name, &old.storage_class_name, &Path::new("storageClassName")));
    errs
}

// ---- VolumeAttachment --------------------------------------------------

const MAX_ATTACHMENT_METADATA: usize = 256 * 1024;
const MAX_VOLUME_ERROR_MESSAGE: usize = 1024;

/// Upstream's `ValidateVolumeAttachment` (spec and status).
fn volume_attachment_base(attachment: &VolumeAttachment) -> Errors {
    let spec = &attachment.spec;
    let path = Path::new("spec");
    let mut errs = Vec::new();
    if spec.attacher.is_empty() {
        errs.push(path.child("attacher").required(""));
    }
    let source = &spec.source;
    let at = path.child("source");
    const ONE_OF: &str = "must specify exactly one of inlineVolumeSpec and persistentVolumeName";
    match (&source.inline_volume_spec, &source.persistent_volume_name) {
        (None, None) => errs.push(at.required(ONE_OF)),
        (Some(_), Some(_)) => errs.push(at.forbidden(ONE_OF)),
        (None, Some(pv)) => {
            if pv.is_empty() {
                errs.push(at.child("persistentVolumeName").required("must specify non empty persistentVolumeName"));
            }
        }
        (Some(inline), None) => errs.extend(inline_volume_spec(inline, &at.child("inlineVolumeSpec"))),
    }
    errs.extend(name_by(dns1123_subdomain, &spec.node_name, &path.child("nodeName")));
    if let Some(status) = &attachment.status {
        let path = Path::new("status");
        let size: usize = status.attachment_metadata.iter().flatten().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_ATTACHMENT_METADATA {
            errs.push(path.child("attachmentMetadata").too_long(MAX_ATTACHMENT_METADATA));
        }
        errs.extend(volume_error(status.attach_error.as_ref(), &path.child("attachError")));
        errs.extend(volume_error(status.detach_error.as_ref(), &path.child("detachError")));
    }
    errs
}

fn volume_error(error: Option<&VolumeError>, path: &Path) -> Errors {
    match error.and_then(|e| e.message.as_deref()) {
        // Upstream names the metadata limit here, not the message's own.
        Some(message) if message.len() > MAX_VOLUME_ERROR_MESSAGE => vec![path.child("message").too_long(MAX_ATTACHMENT_METADATA)],
        _ => vec![],
    }
}

/// On create through v1, upstream's `ValidateVolumeAttachmentV1` adds the
/// attacher's and the volume's names.
fn volume_attachment(attachment: &VolumeAttachment) -> Errors {
    let mut errs = volume_attachment_base(attachment);
    errs.extend(csi_driver_name(&attachment.spec.attacher, &Path::new("spec.attacher")));
    if let Some(pv) = &attachment.spec.source.persistent_volume_name {
        errs.extend(name_by(dns1123_subdomain, pv, &Path::new("spec.source.persistentVolumeName")));
    }
    errs
}

fn volume_attachment_update(new: &VolumeAttachment, old: &VolumeAttachment) -> Errors {
    spec_unchanged(&new.spec, &old.spec)
}

fn spec_unchanged(new: &VolumeAttachmentSpec, old: &VolumeAttachmentSpec) -> Errors {
    immutable(new, old, &Path::new("spec"))
}

/// A status write is validated as a whole object (upstream's status
/// strategy keeps the old spec, so only the status can be at fault).
fn volume_attachment_status(new: &VolumeAttachment, old: &VolumeAttachment) -> Errors {
    let mut errs = volume_attachment_base(new);
    errs.extend(spec_unchanged(&new.spec, &old.spec));
    errs
}

/// Volume sources of a persistent volume spec, in upstream's order.
const VOLUME_SOURCES: [&str; 22] = [
    "hostPath", "gcePersistentDisk", "awsElasticBlockStore", "glusterfs", "flocker", "flexVolume", "nfs", "rbd", "quobyte", "cinder", "cephfs", "iscsi", "fc",
    "azureFile", "vsphereVolume", "photonPersistentDisk", "portworxVolume", "azureDisk", "scaleIO", "local", "storageos", "csi",
];

/// The parts of upstream's `ValidatePersistentVolumeSpec` that matter for
/// an inline volume (which must be a CSI volume): no claim, no capacity,
/// access modes, class, volume mode and the CSI source's driver and handle.
fn inline_volume_spec(spec: &PersistentVolumeSpec, path: &Path) -> Errors {
    let mut errs = Vec::new();
    const INLINE: &str = "may not be specified in the context of inline volumes";
    if spec.claim_ref.is_some() {
        errs.push(path.child("claimRef").forbidden(INLINE));
    }
    if spec.capacity.as_ref().is_some_and(|c| !c.is_empty()) {
        errs.push(path.child("capacity").forbidden(INLINE));
    }
    if spec.csi.is_none() {
        errs.push(path.child("csi").required("has to be specified in the context of inline volumes"));
    }
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    if modes.is_empty() {
        errs.push(path.child("accessModes").required(""));
    }
    errs.extend(access_modes(modes, &path.child("accessModes")));
    if let Some(class) = spec.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
        errs.extend(name_by(dns1123_subdomain, class, &path.child("storageClassName")));
    }
    if let Some(mode) = spec.volume_mode.as_deref() {
        if !["Block", "Filesystem"].contains(&mode) {
            errs.push(path.child("volumeMode").not_supported(mode, &["Block", "Filesystem"]));
        }
    }
    let as_json = serde_json::to_value(spec).unwrap_or_default();
    let mut sources = VOLUME_SOURCES.iter().filter(|s| as_json.get(**s).is_some_and(|v| !v.is_null()));
    let first = sources.next();
    if first.is_none() {
        errs.push(path.required("must specify a volume type"));
    }
    for extra in sources {
        errs.push(path.child(extra).forbidden("may not specify more than 1 volume type"));
    }
    if let (Some(&"csi"), Some(csi)) = (first, &spec.csi) {
        let at = path.child("csi");
        errs.extend(csi_driver_name(&csi.driver, &at.child("driver")));
        if csi.volume_handle.is_empty() {
            errs.push(at.child("volumeHandle").required(""));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{messages, table, update_table, with};
    use super::super::Op;

    const G: &str = "storage.k8s.io";

    /// The class k3s ships.
    fn local_path() -> Value {
        json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
        })
    }

    fn zones(terms: Value) -> Value {
        with(&local_path(), json!({"allowedTopologies": terms}))
    }

    #[test]
    fn storage_class_valid() {
        table(G, "StorageClass", &[
            ("k3s local-path", local_path(), ""),
            ("defaults left out", json!({"metadata": {"name": "plain"}, "provisioner": "kubernetes.io/no-provisioner"}), ""),
            ("upper case provisioner", with(&local_path(), json!({"provisioner": "Example.COM/Fast"})), ""),
            ("aws ebs", json!({
                "metadata": {"name": "gp3"}, "provisioner": "ebs.csi.aws.com", "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate",
                "allowVolumeExpansion": true, "mountOptions": ["debug"],
                "parameters": {"type": "gp3", "csi.storage.k8s.io/fstype": "ext4"},
                "allowedTopologies": [{"matchLabelExpressions": [{"key": "topology.ebs.csi.aws.com/zone", "values": ["us-east-1a", "us-east-1b"]}]}],
            }), ""),
            ("two different terms", zones(json!([
                {"matchLabelExpressions": [{"key": "zone", "values": ["a"]}]},
                {"matchLabelExpressions": [{"key": "zone", "values": ["b"]}]},
            ])), ""),
        ]);
    }

    #[test]
    fn storage_class_invalid() {
        let sc = local_path();
        let many: serde_json::Map<String, Value> = (0..513).map(|i| (format!("k{i}"), json!("v"))).collect();
        table(G, "StorageClass", &[
            ("no provisioner", with(&sc, json!({"provisioner": null})), "provisioner: Required value"),
            ("empty provisioner", with(&sc, json!({"provisioner": ""})), "provisioner: Required value"),
            ("provisioner with spaces", with(&sc, json!({"provisioner": "my provisioner"})), "provisioner: Invalid value: \"my provisioner\": name part must consist of alphanumeric characters"),
            ("provisioner bad prefix", with(&sc, json!({"provisioner": "-x-/local"})), "provisioner: Invalid value: \"-x-/local\": prefix part a lowercase RFC 1123 subdomain"),
            ("provisioner too long", with(&sc, json!({"provisioner": "a".repeat(64)})), "provisioner: Invalid value: \"aaaa"),
            ("empty parameter key", with(&sc, json!({"parameters": {"": "x"}})), "parameters: Invalid value: \"\": field can not be empty."),
            ("too many parameters", with(&sc, json!({"parameters": many})), "parameters: Too long: may not be more than 512 bytes"),
            ("parameters too big", with(&sc, json!({"parameters": {"big": "x".repeat(256 * 1024)}})), "parameters: Too long: may not be more than 262144 bytes"),
            ("Recycle", with(&sc, json!({"reclaimPolicy": "Recycle"})), "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\""),
            ("binding mode", with(&sc, json!({"volumeBindingMode": "Later"})), "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\""),
            ("topology without values", zones(json!([{"matchLabelExpressions": [{"key": "zone", "values": []}]}])), "allowedTopologies[0].matchLabelExpressions[0].values: Required value"),
            ("topology duplicate value", zones(json!([{"matchLabelExpressions": [{"key": "zone", "values": ["a", "a"]}]}])), "allowedTopologies[0].matchLabelExpressions[0].values[1]: Duplicate value: \"a\""),
            ("topology bad key", zones(json!([{"matchLabelExpressions": [{"key": "a zone", "values": ["a"]}]}])), "allowedTopologies[0].matchLabelExpressions[0].key: Invalid value: \"a zone\""),
            ("topology duplicate key", zones(json!([{"matchLabelExpressions": [{"key": "zone", "values": ["a"]}, {"key": "zone", "values": ["b"]}]}])), "allowedTopologies[0].matchLabelExpressions[1].key: Duplicate value: \"zone\""),
            ("duplicate terms", zones(json!([
                {"matchLabelExpressions": [{"key": "zone", "values": ["a", "b"]}]},
                {"matchLabelExpressions": [{"key": "zone", "values": ["b", "a"]}]},
            ])), "allowedTopologies[1].matchLabelExpressions: Duplicate value: \"\""),
            ("empty term", zones(json!([{}])), "allowedTopologies[0].matchLabelExpressions: Duplicate value: \"\""),
        ]);
    }

    #[test]
    fn storage_class_update() {
        let old = local_path();
        update_table(G, "StorageClass", &old, &[
            ("annotations", with(&old, json!({"metadata": {"annotations": {"storageclass.kubernetes.io/is-default-class": "false"}}})), ""),
            ("expansion and mount options", with(&old, json!({"allowVolumeExpansion": true, "mountOptions": ["ro"]})), ""),
            ("reclaim policy spelled out as its default", with(&old, json!({"reclaimPolicy": null})), ""),
            ("parameters", with(&old, json!({"parameters": {"a": "b"}})), "parameters: Forbidden: updates to parameters are forbidden."),
            ("provisioner", with(&old, json!({"provisioner": "example.com/other"})), "provisioner: Forbidden: updates to provisioner are forbidden."),
            ("reclaim policy", with(&old, json!({"reclaimPolicy": "Retain"})), "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden."),
            ("binding mode", with(&old, json!({"volumeBindingMode": "Immediate"})), "volumeBindingMode: Invalid value: \"Immediate\": field is immutable"),
        ]);
        let bare = json!({"metadata": {"name": "plain"}, "provisioner": "example.com/p"});
        update_table(G, "StorageClass", &bare, &[
            ("defaults spelled out", with(&bare, json!({"reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"})), ""),
            ("binding mode from its default", with(&bare, json!({"volumeBindingMode": "WaitForFirstConsumer"})), "volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable"),
        ]);
    }

    fn csi_driver() -> Value {
        json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
            "metadata": {"name": "ebs.csi.aws.com"},
            "spec": {"attachRequired": true, "podInfoOnMount": false, "fsGroupPolicy": "File", "volumeLifecycleModes": ["Persistent"]},
        })
    }

    #[test]
    fn csi_driver_invalid() {
        let d = csi_driver();
        table(G, "CSIDriver", &[
            ("valid", d.clone(), ""),
            ("empty spec", json!({"metadata": {"name": "hostpath.csi.k8s.io"}, "spec": {}}), ""),
            ("everything", with(&d, json!({"spec": {
                "storageCapacity": true, "requiresRepublish": true, "seLinuxMount": true, "fsGroupPolicy": "ReadWriteOnceWithFSType",
                "volumeLifecycleModes": ["Persistent", "Ephemeral"],
                "tokenRequests": [{"audience": "vault"}, {"audience": "", "expirationSeconds": 600}, {"audience": "max", "expirationSeconds": 4294967296_i64}],
            }})), ""),
            ("fsGroupPolicy", with(&d, json!({"spec": {"fsGroupPolicy": "Always"}})), "spec.fsGroupPolicy: Unsupported value: \"Always\": supported values: \"File\", \"None\", \"ReadWriteOnceWithFSType\""),
            ("lifecycle mode", with(&d, json!({"spec": {"volumeLifecycleModes": ["Persistent", "Forever"]}})), "spec.volumeLifecycleModes: Unsupported value: \"Forever\": supported values: \"Persistent\", \"Ephemeral\""),
            ("duplicate audience", with(&d, json!({"spec": {"tokenRequests": [{"audience": "a"}, {"audience": "a", "expirationSeconds": 1}]}})), "spec.tokenRequests[1].audience: Duplicate value: \"a\""),
            ("two empty audiences", with(&d, json!({"spec": {"tokenRequests": [{"audience": ""}, {"audience": ""}]}})), "spec.tokenRequests[1].audience: Duplicate value: \"\""),
            ("short token", with(&d, json!({"spec": {"tokenRequests": [{"audience": "a", "expirationSeconds": 599}]}})), "spec.tokenRequests[0].expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"),
            ("long token", with(&d, json!({"spec": {"tokenRequests": [{"audience": "a", "expirationSeconds": 4294967297_i64}]}})), "spec.tokenRequests[0].expirationSeconds: Invalid value: 4294967297: may not specify a duration larger than 2^32 seconds"),
            ("name", with(&d, json!({"metadata": {"name": "Bad_Driver"}})), "metadata.name: Invalid value: \"Bad_Driver\""),
        ]);
    }

    #[test]
    fn csi_driver_update() {
        let old = csi_driver();
        update_table(G, "CSIDriver", &old, &[
            ("podInfoOnMount and fsGroupPolicy may change", with(&old, json!({"spec": {"podInfoOnMount": true, "fsGroupPolicy": "None"}})), ""),
            ("storage capacity, republish, tokens", with(&old, json!({"spec": {"storageCapacity": true, "requiresRepublish": true, "tokenRequests": [{"audience": "x"}]}})), ""),
            ("defaults left out", with(&old, json!({"spec": {"attachRequired": null, "volumeLifecycleModes": null}})), ""),
            ("attachRequired", with(&old, json!({"spec": {"attachRequired": false}})), "spec.attachedRequired: Invalid value: false: field is immutable"),
            ("lifecycle modes", with(&old, json!({"spec": {"volumeLifecycleModes": ["Persistent", "Ephemeral"]}})), "spec.volumeLifecycleModes: Invalid value: []storage.VolumeLifecycleMode{\"Persistent\", \"Ephemeral\"}: field is immutable"),
        ]);
    }

    fn csi_node() -> Value {
        json!({
            "metadata": {"name": "node-1"},
            "spec": {"drivers": [
                {"name": "ebs.csi.aws.com", "nodeID": "i-0123456789abcdef0", "topologyKeys": ["topology.ebs.csi.aws.com/zone"], "allocatable": {"count": 25}},
                {"name": "Example.Driver-x", "nodeID": "node-1"},
            ]},
        })
    }

    fn driver(d: Value) -> Value {
        with(&csi_node(), json!({"spec": {"drivers": [d]}}))
    }

    #[test]
    fn csi_node_invalid() {
        table(G, "CSINode", &[
            ("valid", csi_node(), ""),
            ("no drivers", json!({"metadata": {"name": "node-2"}, "spec": {"drivers": []}}), ""),
            ("long node id", driver(json!({"name": "d.example.com", "nodeID": "n".repeat(256)})), ""),
            ("driver name too long", driver(json!({"name": "d".repeat(64), "nodeID": "n"})), "spec.drivers[0].name: Too long: may not be more than 63 bytes"),
            ("driver name", driver(json!({"name": "d@example", "nodeID": "n"})), "spec.drivers[0].name: Invalid value: \"d@example\": a lowercase RFC 1123 subdomain"),
            ("no node id", driver(json!({"name": "d.example.com", "nodeID": ""})), "spec.drivers[0].nodeID: Required value"),
            ("node id too long", driver(json!({"name": "d.example.com", "nodeID": "n".repeat(257)})), "spec.drivers[0].nodeID: Invalid value: \"nnnn"),
            ("negative count", driver(json!({"name": "d.example.com", "nodeID": "n", "allocatable": {"count": -1}})), "spec.drivers[0].allocatable.count: Invalid value: -1: must be greater than or equal to 0"),
            ("duplicate driver", with(&csi_node(), json!({"spec": {"drivers": [{"name": "a.b", "nodeID": "1"}, {"name": "a.b", "nodeID": "2"}]}})), "spec.drivers[1].name: Duplicate value: \"a.b\""),
            ("duplicate topology key", driver(json!({"name": "d.example.com", "nodeID": "n", "topologyKeys": ["zone", "zone"]})), "spec.drivers[0]: Duplicate value: \"zone\""),
            ("bad topology key", driver(json!({"name": "d.example.com", "nodeID": "n", "topologyKeys": ["my zone"]})), "spec.drivers[0]: Invalid value: \"my zone\""),
        ]);
        let nameless = driver(json!({"name": "", "nodeID": "n", "topologyKeys": [""]}));
        let got = messages(G, "CSINode", Op::Create(&nameless));
        assert_eq!(got[0], "spec.drivers[0].name: Required value");
        assert!(got[1].starts_with("spec.drivers[0].name: Invalid value: \"\": a lowercase RFC 1123 subdomain"), "{got:?}");
        assert_eq!(got[2], "spec.drivers[0]: Required value");
        assert!(got[3].starts_with("spec.drivers[0]: Invalid value: \"\": name part must be non-empty"), "{got:?}");
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn csi_node_update() {
        let old = csi_node();
        let drivers = old["spec"]["drivers"].clone();
        update_table(G, "CSINode", &old, &[
            ("driver added", with(&old, json!({"spec": {"drivers": [drivers[0], drivers[1], {"name": "new.example.com", "nodeID": "x"}]}})), ""),
            ("driver removed", with(&old, json!({"spec": {"drivers": [drivers[1]]}})), ""),
            ("driver changed", with(&old, json!({"spec": {"drivers": [drivers[0], {"name": "Example.Driver-x", "nodeID": "node-one"}]}})), "spec.drivers: Invalid value: "),
        ]);
    }

    fn capacity() -> Value {
        json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "CSIStorageCapacity",
            "metadata": {"name": "csisc-abcde", "namespace": "kube-system"},
            "storageClassName": "fast",
            "nodeTopology": {"matchLabels": {"topology.hostpath.csi/node": "node-1"}},
            "capacity": "100Gi",
            "maximumVolumeSize": "10Gi",
        })
    }

    #[test]
    fn csi_storage_capacity_invalid() {
        let c = capacity();
        table(G, "CSIStorageCapacity", &[
            ("valid", c.clone(), ""),
            ("minimal", json!({"metadata": {"name": "x", "namespace": "ns"}, "storageClassName": "sc"}), ""),
            ("zero", with(&c, json!({"capacity": "0"})), ""),
            ("class name", with(&c, json!({"storageClassName": "Fast!"})), "storageClassName: Invalid value: \"Fast!\": a lowercase RFC 1123 subdomain"),
            ("no class", with(&c, json!({"storageClassName": ""})), "storageClassName: Invalid value: \"\""),
            ("negative capacity", with(&c, json!({"capacity": "-1Gi"})), "capacity: Invalid value: \"-1Gi\": must be greater than or equal to 0"),
            ("capacity not a quantity", with(&c, json!({"capacity": "lots"})), "capacity: Invalid value: \"lots\": quantities must match"),
            ("selector operator", with(&c, json!({"nodeTopology": {"matchExpressions": [{"key": "zone", "operator": "Within", "values": ["a"]}]}})), "nodeTopology.matchExpressions[0].operator: Invalid value: \"Within\": not a valid selector operator"),
            ("selector label", with(&c, json!({"nodeTopology": {"matchLabels": {"topology.hostpath.csi/node": "node 1"}}})), "nodeTopology.matchLabels: Invalid value: \"node 1\""),
        ]);
    }

    #[test]
    fn csi_storage_capacity_update() {
        let old = capacity();
        update_table(G, "CSIStorageCapacity", &old, &[
            ("capacity", with(&old, json!({"capacity": "50Gi", "maximumVolumeSize": "5Gi"})), ""),
            ("labels", with(&old, json!({"metadata": {"labels": {"a": "b"}}})), ""),
            ("class", with(&old, json!({"storageClassName": "slow"})), "storageClassName: Invalid value: \"slow\": field is immutable"),
            ("topology", with(&old, json!({"nodeTopology": {"matchLabels": {"topology.hostpath.csi/node": "node-2"}}})), "nodeTopology: Invalid value: "),
            ("topology dropped", with(&old, json!({"nodeTopology": null})), "nodeTopology: Invalid value: null: field is immutable"),
        ]);
    }

    fn attachment() -> Value {
        json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
            "metadata": {"name": "csi-0123456789abcdef"},
            "spec": {"attacher": "ebs.csi.aws.com", "nodeName": "node-1", "source": {"persistentVolumeName": "pvc-1234"}},
        })
    }

    fn inline(spec: Value) -> Value {
        with(&attachment(), json!({"spec": {"source": {"persistentVolumeName": null, "inlineVolumeSpec": spec}}}))
    }

    fn inline_csi() -> Value {
        json!({"accessModes": ["ReadWriteOnce"], "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}})
    }

    #[test]
    fn volume_attachment_invalid() {
        let a = attachment();
        table(G, "VolumeAttachment", &[
            ("valid", a.clone(), ""),
            ("inline", inline(inline_csi()), ""),
            ("with status", with(&a, json!({"status": {"attached": true, "attachmentMetadata": {"devicePath": "/dev/xvdba"}, "attachError": {"message": "oops", "time": "2024-01-01T00:00:00Z"}}})), ""),
            ("no source", with(&a, json!({"spec": {"source": {"persistentVolumeName": null}}})), "spec.source: Required value: must specify exactly one of inlineVolumeSpec and persistentVolumeName"),
            ("both sources", with(&a, json!({"spec": {"source": {"inlineVolumeSpec": inline_csi()}}})), "spec.source: Forbidden: must specify exactly one of inlineVolumeSpec and persistentVolumeName"),
            ("no node", with(&a, json!({"spec": {"nodeName": ""}})), "spec.nodeName: Invalid value: \"\": a lowercase RFC 1123 subdomain"),
            ("bad node", with(&a, json!({"spec": {"nodeName": "Node_1"}})), "spec.nodeName: Invalid value: \"Node_1\""),
            ("attacher too long", with(&a, json!({"spec": {"attacher": "a".repeat(64)}})), "spec.attacher: Too long: may not be more than 63 bytes"),
            ("attacher with space", with(&a, json!({"spec": {"attacher": "my attacher"}})), "spec.attacher: Invalid value: \"my attacher\""),
            ("pv name", with(&a, json!({"spec": {"source": {"persistentVolumeName": "PV_1"}}})), "spec.source.persistentVolumeName: Invalid value: \"PV_1\""),
            ("error message too long", with(&a, json!({"status": {"attached": false, "detachError": {"message": "x".repeat(1025)}}})), "status.detachError.message: Too long: may not be more than 262144 bytes"),
            ("metadata too big", with(&a, json!({"status": {"attached": true, "attachmentMetadata": {"k": "x".repeat(256 * 1024)}}})), "status.attachmentMetadata: Too long: may not be more than 262144 bytes"),
            ("inline claimRef", inline(with(&inline_csi(), json!({"claimRef": {"name": "c", "namespace": "d"}}))), "spec.source.inlineVolumeSpec.claimRef: Forbidden: may not be specified in the context of inline volumes"),
            ("inline capacity", inline(with(&inline_csi(), json!({"capacity": {"storage": "1Gi"}}))), "spec.source.inlineVolumeSpec.capacity: Forbidden: may not be specified in the context of inline volumes"),
            ("inline access modes", inline(with(&inline_csi(), json!({"accessModes": []}))), "spec.source.inlineVolumeSpec.accessModes: Required value"),
            ("inline access mode", inline(with(&inline_csi(), json!({"accessModes": ["ReadWriteSometimes"]}))), "spec.source.inlineVolumeSpec.accessModes: Unsupported value: \"ReadWriteSometimes\""),
            ("inline RWOP mixed", inline(with(&inline_csi(), json!({"accessModes": ["ReadWriteOncePod", "ReadOnlyMany"]}))), "spec.source.inlineVolumeSpec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"),
            ("inline volume handle", inline(with(&inline_csi(), json!({"csi": {"volumeHandle": ""}}))), "spec.source.inlineVolumeSpec.csi.volumeHandle: Required value"),
            ("inline extra source", inline(with(&inline_csi(), json!({"hostPath": {"path": "/x"}}))), "spec.source.inlineVolumeSpec.csi: Forbidden: may not specify more than 1 volume type"),
        ]);
        let no_pv = with(&a, json!({"spec": {"source": {"persistentVolumeName": ""}}}));
        let got = messages(G, "VolumeAttachment", Op::Create(&no_pv));
        assert_eq!(got[0], "spec.source.persistentVolumeName: Required value: must specify non empty persistentVolumeName");
        assert!(got[1].starts_with("spec.source.persistentVolumeName: Invalid value: \"\""), "{got:?}");
        let no_attacher = with(&a, json!({"spec": {"attacher": ""}}));
        let got = messages(G, "VolumeAttachment", Op::Create(&no_attacher));
        assert_eq!(&got[..2], ["spec.attacher: Required value", "spec.attacher: Required value"]);
        assert!(got[2].starts_with("spec.attacher: Invalid value: \"\""), "{got:?}");
        let not_csi = inline(json!({"accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/x"}}));
        assert_eq!(messages(G, "VolumeAttachment", Op::Create(&not_csi)), ["spec.source.inlineVolumeSpec.csi: Required value: has to be specified in the context of inline volumes"]);
    }

    #[test]
    fn volume_attachment_update() {
        let old = attachment();
        update_table(G, "VolumeAttachment", &old, &[
            ("labels", with(&old, json!({"metadata": {"labels": {"a": "b"}}})), ""),
            ("status through the main resource", with(&old, json!({"status": {"attached": true}})), ""),
            ("node", with(&old, json!({"spec": {"nodeName": "node-2"}})), "spec: Invalid value: "),
            ("source", with(&old, json!({"spec": {"source": {"persistentVolumeName": "pvc-5678"}}})), "spec: Invalid value: "),
        ]);
        let attached = with(&old, json!({"status": {"attached": true, "attachmentMetadata": {"devicePath": "/dev/xvdba"}}}));
        assert!(messages(G, "VolumeAttachment", Op::Status { new: &attached, old: &old }).is_empty());
        let failed = with(&old, json!({"status": {"attached": false, "attachError": {"message": "e".repeat(2000)}}}));
        assert_eq!(messages(G, "VolumeAttachment", Op::Status { new: &failed, old: &old }), ["status.attachError.message: Too long: may not be more than 262144 bytes"]);
    }
}

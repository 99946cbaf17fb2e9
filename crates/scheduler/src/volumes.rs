//! VolumeBinding, as upstream's: a pod's PersistentVolumeClaims decide
//! where it may run.
//!
//! - PreFilter: every claim must exist and not be being deleted, and a
//!   claim of an `Immediate` class must already be bound (the volume
//!   controller binds those, without the scheduler).
//! - Filter: a bound claim's volume must admit the node (its
//!   `nodeAffinity`); an unbound `WaitForFirstConsumer` claim needs an
//!   unclaimed volume that matches it and admits the node, or a class
//!   that provisions one.
//! - PreBind: the chosen volumes are claimed (`spec.claimRef`) and the
//!   claims to provision are told the node (`volume.kubernetes.io/selected-node`);
//!   the pod is bound only once the volume controller has finished
//!   binding every claim.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{CSIDriver, CSIStorageCapacity, StorageClass};

use crate::key_of;
use crate::model::NodeInfo;
use crate::plugins::{term_matches, Reason};

const BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
const NOT_ENOUGH_SPACE: &str = "node(s) did not have enough free storage";
const PV_NOT_EXIST: &str = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";

/// The claims a pod's volumes name, as `namespace/name`, and whether each
/// is an ephemeral volume's (made by the ephemeral volume controller).
pub fn claims_of(pod: &Pod) -> Vec<(String, bool)> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or_default();
    volumes
        .iter()
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(claim), _) => Some((format!("{ns}/{}", claim.claim_name), false)),
            (None, Some(_)) => Some((format!("{ns}/{}", ephemeral_claim_name(name, &v.name)), true)),
            _ => None,
        })
        .collect()
}

/// The claim a pod's generic ephemeral volume gets: `<pod>-<volume>`.
pub fn ephemeral_claim_name(pod: &str, volume: &str) -> String {
    format!("{pod}-{volume}")
}

/// The storage objects the scheduler follows, and the volumes it has
/// chosen for claims whose binding is in flight.
#[derive(Default)]
pub struct Storage {
    pub claims: HashMap<String, Arc<PersistentVolumeClaim>>,
    pub volumes: HashMap<String, Arc<PersistentVolume>>,
    pub classes: HashMap<String, Arc<StorageClass>>,
    /// CSI drivers (whether they publish capacity) and the capacities published.
    pub drivers: HashMap<String, Arc<CSIDriver>>,
    pub capacities: HashMap<String, Arc<CSIStorageCapacity>>,
    /// Volume name → the claim (`namespace/name`) it was chosen for.
    assumed: HashMap<String, String>,
}

/// What PreFilter found: the volumes of the bound claims, and the claims
/// still to bind on the chosen node.
#[derive(Debug, Default)]
pub struct PodClaims {
    bound: Vec<Arc<PersistentVolume>>,
    unbound: Vec<Arc<PersistentVolumeClaim>>,
    /// Bound claims whose volume is not known.
    missing_volume: bool,
}

/// What binding a pod's volumes takes on its node.
#[derive(Debug, Clone)]
pub enum Choice {
    /// Claim this existing volume for the claim.
    Volume { claim: Arc<PersistentVolumeClaim>, volume: Arc<PersistentVolume> },
    /// Have the claim's class provision a volume on the node.
    Provision { claim: Arc<PersistentVolumeClaim> },
}

impl Choice {
    pub fn claim(&self) -> &Arc<PersistentVolumeClaim> {
        match self {
            Choice::Volume { claim, .. } | Choice::Provision { claim } => claim,
        }
    }
}

fn class_of_claim(claim: &PersistentVolumeClaim) -> &str {
    claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or_default()
}

fn requested(claim: &PersistentVolumeClaim) -> i64 {
    let storage = claim.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage"));
    storage.and_then(|q| crate::quantity::value(&q.0)).unwrap_or(0)
}

pub fn capacity(volume: &PersistentVolume) -> i64 {
    let storage = volume.spec.as_ref().and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage"));
    storage.and_then(|q| crate::quantity::value(&q.0)).unwrap_or(0)
}

/// Whether a volume's `nodeAffinity` admits the node (none admits all).
fn admits(volume: &PersistentVolume, node: &NodeInfo) -> bool {
    let required = volume.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref());
    required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, &node.name, node.labels())))
}

/// Upstream's `IsVolumeBoundToClaim`: the volume's claimRef names the
/// claim (and its uid, when it gives one).
pub fn claimed_by(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else { return false };
    r.name == claim.metadata.name && r.namespace == claim.metadata.namespace && (r.uid.is_none() || r.uid == claim.metadata.uid)
}

/// Upstream's `FindMatchingVolume` check for one volume, node aside:
/// unclaimed (or claimed for this claim), same class and volume mode,
/// every access mode the claim asks for, the claim's selector, and room.
pub fn matches(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let (Some(v), Some(c)) = (volume.spec.as_ref(), claim.spec.as_ref()) else { return false };
    if volume.metadata.deletion_timestamp.is_some() {
        return false;
    }
    if v.claim_ref.is_some() && !claimed_by(volume, claim) {
        return false;
    }
    let filesystem = |m: &Option<String>| m.clone().unwrap_or_else(|| "Filesystem".into());
    if filesystem(&v.volume_mode) != filesystem(&c.volume_mode) {
        return false;
    }
    if v.storage_class_name.as_deref().unwrap_or_default() != class_of_claim(claim) {
        return false;
    }
    let offered = v.access_modes.as_deref().unwrap_or_default();
    if !c.access_modes.iter().flatten().all(|m| offered.contains(m)) {
        return false;
    }
    if c.selector.is_some() && !crate::topology::matches(c.selector.as_ref(), volume.metadata.labels.as_ref()) {
        return false;
    }
    capacity(volume) >= requested(claim)
}

/// Upstream's `FindMatchingVolume` choice among `candidates`: the volume
/// already claimed for the claim, else the smallest that matches it (ties
/// broken by name, so the choice is stable).
pub fn best_match<'a>(candidates: impl Iterator<Item = &'a Arc<PersistentVolume>>, claim: &PersistentVolumeClaim) -> Option<&'a Arc<PersistentVolume>> {
    candidates.filter(|v| matches(v, claim)).min_by_key(|v| (!claimed_by(v, claim), capacity(v), v.metadata.name.clone()))
}

/// The merge patch that claims `volume` for `claim` (upstream's
/// `GetBindVolumeToClaim`: `bound-by-controller` only when the volume was
/// not reserved for the claim already), or None when the volume already
/// names the claim with its uid.
pub fn claim_ref_patch(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Option<serde_json::Value> {
    let reference = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    if reference.is_some_and(|r| r.uid.is_some()) {
        return None;
    }
    let meta = &claim.metadata;
    let mut patch = serde_json::json!({
        "metadata": {"resourceVersion": volume.metadata.resource_version},
        "spec": {"claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": meta.namespace, "name": meta.name, "uid": meta.uid, "resourceVersion": meta.resource_version}},
    });
    if reference.is_none() {
        patch["metadata"]["annotations"] = serde_json::json!({BOUND_BY_CONTROLLER: "yes"});
    }
    Some(patch)
}

impl Storage {
    fn delays_binding(&self, claim: &PersistentVolumeClaim) -> Result<bool, String> {
        let class = class_of_claim(claim);
        if class.is_empty() {
            return Ok(false);
        }
        let class = self.classes.get(class).ok_or_else(|| format!("storageclass.storage.k8s.io \"{class}\" not found"))?;
        Ok(class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
    }

    /// PreFilter: the pod's claims, or why no node can take the pod.
    pub fn prefilter(&self, claims: &[(String, bool)]) -> Result<PodClaims, String> {
        let mut found = PodClaims::default();
        let mut unbound_immediate = false;
        for (key, ephemeral) in claims {
            let name = key.split_once('/').map_or(key.as_str(), |(_, n)| n);
            let Some(claim) = self.claims.get(key) else {
                return Err(match ephemeral {
                    true => format!("waiting for ephemeral volume controller to create the persistentvolumeclaim \"{name}\""),
                    false => format!("persistentvolumeclaim \"{name}\" not found"),
                });
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
            }
            match claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).filter(|v| !v.is_empty()) {
                Some(volume) => match self.volumes.get(volume) {
                    Some(v) => found.bound.push(v.clone()),
                    None => found.missing_volume = true,
                },
                None if self.delays_binding(claim)? => found.unbound.push(claim.clone()),
                None => unbound_immediate = true,
            }
        }
        if unbound_immediate {
            return Err("pod has unbound immediate PersistentVolumeClaims".into());
        }
        // The smallest claims choose first, so each gets the smallest
        // volume that fits (upstream sorts them so too).
        found.unbound.sort_by_key(|c| requested(c));
        Ok(found)
    }

    /// Filter: how the pod's unbound claims would be bound on `node`, or
    /// why they cannot be.
    pub fn choose(&self, claims: &PodClaims, node: &NodeInfo) -> Result<Vec<Choice>, Vec<Reason>> {
        let mut reasons = Vec::new();
        if claims.missing_volume {
            reasons.push(PV_NOT_EXIST);
        } else if !claims.bound.iter().all(|v| admits(v, node)) {
            reasons.push(NODE_CONFLICT);
        }
        let mut choices = Vec::new();
        let mut taken: HashSet<&str> = HashSet::new();
        for claim in &claims.unbound {
            let key = key_of(&**claim);
            let free = |v: &&Arc<PersistentVolume>| {
                let name = v.metadata.name.as_deref().unwrap_or_default();
                !taken.contains(name) && self.assumed.get(name).is_none_or(|k| *k == key) && admits(v, node)
            };
            match best_match(self.volumes.values().filter(free), claim) {
                Some(volume) => {
                    taken.insert(volume.metadata.name.as_deref().unwrap_or_default());
                    choices.push(Choice::Volume { claim: claim.clone(), volume: volume.clone() });
                }
                None => match self.provisions(claim, node) {
                    Ok(()) => choices.push(Choice::Provision { claim: claim.clone() }),
                    Err(reason) => {
                        reasons.push(reason);
                        break;
                    }
                },
            }
        }
        if reasons.is_empty() {
            Ok(choices)
        } else {
            Err(reasons.into_iter().map(|m| Reason { message: m.into(), unresolvable: true }).collect())
        }
    }

    /// Whether the claim's class can provision a volume reachable from
    /// the node (its `allowedTopologies`) and, for a driver that publishes
    /// its capacity (CSIDriver `storageCapacity`), with room for it there.
    fn provisions(&self, claim: &PersistentVolumeClaim, node: &NodeInfo) -> Result<(), &'static str> {
        let class = self.classes.get(class_of_claim(claim)).ok_or(BIND_CONFLICT)?;
        if class.provisioner == NO_PROVISIONER {
            return Err(BIND_CONFLICT);
        }
        let terms = class.allowed_topologies.as_deref().unwrap_or_default();
        let reachable = terms.is_empty()
            || terms.iter().any(|t| {
                t.match_label_expressions.iter().flatten().all(|e| node.labels().get(&e.key).is_some_and(|v| e.values.contains(v)))
            });
        if !reachable {
            return Err(BIND_CONFLICT);
        }
        let tracked = self.drivers.get(&class.provisioner).is_some_and(|d| d.spec.storage_capacity == Some(true));
        if tracked && !self.has_room(class.metadata.name.as_deref().unwrap_or_default(), requested(claim), node) {
            return Err(NOT_ENOUGH_SPACE);
        }
        Ok(())
    }

    /// Upstream's capacity check: a CSIStorageCapacity of the class whose
    /// topology selects the node, with capacity (or, when set, its largest
    /// volume) of at least what the claim asks.
    fn has_room(&self, class: &str, wanted: i64, node: &NodeInfo) -> bool {
        let labels = node.labels();
        self.capacities.values().any(|c| {
            let size = c.maximum_volume_size.as_ref().or(c.capacity.as_ref()).and_then(|q| skiff_quantity::value(&q.0)).unwrap_or(0);
            c.storage_class_name == class && crate::topology::matches(c.node_topology.as_ref(), Some(labels)) && size >= wanted
        })
    }

    /// Reserve: the chosen volumes are kept from other pods' claims until
    /// the binding ends.
    pub fn assume(&mut self, choices: &[Choice]) {
        for choice in choices {
            if let Choice::Volume { claim, volume } = choice {
                self.assumed.insert(volume.metadata.name.clone().unwrap_or_default(), key_of(&**claim));
            }
        }
    }

    /// Unreserve, once the binding succeeded or failed.
    pub fn forget(&mut self, choices: &[Choice]) {
        for choice in choices {
            if let Choice::Volume { volume, .. } = choice {
                self.assumed.remove(volume.metadata.name.as_deref().unwrap_or_default());
            }
        }
    }

    /// Whether the volume controller has finished binding each chosen
    /// claim (upstream's `checkBindings`): the claim names its volume, is
    /// marked bind-completed, and the volume names the claim.
    pub fn all_bound(&self, choices: &[Choice]) -> Result<bool, String> {
        for choice in choices {
            let key = key_of(&**choice.claim());
            let Some(claim) = self.claims.get(&key) else { return Err(format!("persistentvolumeclaim \"{key}\" was deleted")) };
            if claim.metadata.uid != choice.claim().metadata.uid {
                return Err(format!("persistentvolumeclaim \"{key}\" was recreated"));
            }
            let annotations = claim.metadata.annotations.as_ref();
            if let Choice::Provision { .. } = choice {
                if claim.spec.as_ref().and_then(|s| s.volume_name.as_ref()).is_none() && annotations.is_none_or(|a| !a.contains_key(SELECTED_NODE)) {
                    return Err(format!("selectedNode annotation reset for PVC \"{key}\""));
                }
            }
            let volume = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).and_then(|v| self.volumes.get(v));
            let done = annotations.is_some_and(|a| a.contains_key(BIND_COMPLETED)) && volume.is_some_and(|v| claimed_by(v, claim));
            if !done {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The API writes of PreBind for one choice: the volume's claimRef, or
/// the claim's selected node.
pub async fn write(client: &kube::Client, choice: &Choice, node: &str) -> Result<(), kube::Error> {
    use kube::api::{Api, Patch, PatchParams};
    use serde_json::json;
    match choice {
        Choice::Volume { claim, volume } => {
            if let Some(patch) = claim_ref_patch(volume, claim) {
                let api: Api<PersistentVolume> = Api::all(client.clone());
                api.patch(volume.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(patch)).await?;
            }
        }
        Choice::Provision { claim } => {
            let meta = &claim.metadata;
            let patch = json!({"metadata": {"resourceVersion": meta.resource_version, "annotations": {SELECTED_NODE: node}}});
            let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), meta.namespace.as_deref().unwrap_or_default());
            api.patch(meta.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, zone: &str) -> NodeInfo {
        let node = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"zone": zone}}})).unwrap();
        NodeInfo::new(Arc::new(node))
    }

    fn volume(name: &str, size: &str, zone: Option<&str>) -> (String, Arc<PersistentVolume>) {
        let mut spec = json!({"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local", "hostPath": {"path": "/x"}});
        if let Some(zone) = zone {
            spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": [zone]}]}]}});
        }
        (name.into(), Arc::new(serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()))
    }

    fn bound_b() -> (String, Arc<PersistentVolume>) {
        let (name, v) = volume("bound-b", "1Gi", Some("b"));
        let mut v = (*v).clone();
        v.spec.as_mut().unwrap().claim_ref = Some(serde_json::from_value(json!({"namespace": "ns", "name": "on-b", "uid": "on-b"})).unwrap());
        (name, Arc::new(v))
    }

    fn claim(name: &str, size: &str, class: &str, volume: Option<&str>) -> (String, Arc<PersistentVolumeClaim>) {
        let spec = json!({"accessModes": ["ReadWriteOnce"], "storageClassName": class, "volumeName": volume, "resources": {"requests": {"storage": size}}});
        (format!("ns/{name}"), Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns", "uid": name}, "spec": spec})).unwrap()))
    }

    fn class(name: &str, provisioner: &str, mode: &str) -> (String, Arc<StorageClass>) {
        (name.into(), Arc::new(serde_json::from_value(json!({"metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode})).unwrap()))
    }

    fn storage() -> Storage {
        Storage {
            classes: [class("local", NO_PROVISIONER, "WaitForFirstConsumer"), class("now", NO_PROVISIONER, "Immediate"), class("dynamic", "example.com/disk", "WaitForFirstConsumer")].into(),
            volumes: [volume("small-a", "1Gi", Some("a")), volume("big-a", "10Gi", Some("a")), bound_b()].into(),
            claims: [claim("late", "1Gi", "local", None), claim("now", "1Gi", "now", None), claim("on-b", "1Gi", "local", Some("bound-b")), claim("gone", "1Gi", "local", Some("nowhere")), claim("dyn", "1Gi", "dynamic", None), claim("huge", "50Gi", "local", None)].into(),
            ..Default::default()
        }
    }

    fn messages(result: Result<Vec<Choice>, Vec<Reason>>) -> Vec<String> {
        result.err().unwrap_or_default().into_iter().map(|r| r.message).collect()
    }

    #[test]
    fn prefilter_needs_every_claim_and_immediate_ones_bound() {
        let s = storage();
        assert_eq!(s.prefilter(&[("ns/missing".into(), false)]).unwrap_err(), "persistentvolumeclaim \"missing\" not found");
        assert_eq!(s.prefilter(&[("ns/p-scratch".into(), true)]).unwrap_err(), "waiting for ephemeral volume controller to create the persistentvolumeclaim \"p-scratch\"");
        assert_eq!(s.prefilter(&[("ns/now".into(), false)]).unwrap_err(), "pod has unbound immediate PersistentVolumeClaims");
        assert!(s.prefilter(&[("ns/late".into(), false), ("ns/on-b".into(), false)]).is_ok());
    }

    #[test]
    fn filter_follows_volume_node_affinity_and_picks_the_smallest_fit() {
        let mut s = storage();
        let (a, b) = (node("n-a", "a"), node("n-b", "b"));
        let bound = s.prefilter(&[("ns/on-b".into(), false)]).unwrap();
        assert_eq!(messages(s.choose(&bound, &a)), [NODE_CONFLICT]);
        assert!(s.choose(&bound, &b).is_ok());
        let gone = s.prefilter(&[("ns/gone".into(), false)]).unwrap();
        assert_eq!(messages(s.choose(&gone, &b)), [PV_NOT_EXIST]);

        let late = s.prefilter(&[("ns/late".into(), false)]).unwrap();
        assert_eq!(messages(s.choose(&late, &b)), [BIND_CONFLICT]);
        let choices = s.choose(&late, &a).unwrap();
        assert!(matches!(&choices[..], [Choice::Volume { volume, .. }] if volume.metadata.name.as_deref() == Some("small-a")));
        // Chosen for one claim, a volume is not offered to another.
        s.assume(&choices);
        s.claims.extend([claim("other", "1Gi", "local", None)]);
        let other = s.prefilter(&[("ns/other".into(), false)]).unwrap();
        assert!(matches!(&s.choose(&other, &a).unwrap()[..], [Choice::Volume { volume, .. }] if volume.metadata.name.as_deref() == Some("big-a")));
        s.forget(&choices);

        let huge = s.prefilter(&[("ns/huge".into(), false)]).unwrap();
        assert_eq!(messages(s.choose(&huge, &a)), [BIND_CONFLICT]);
        let dynamic = s.prefilter(&[("ns/dyn".into(), false)]).unwrap();
        assert!(matches!(&s.choose(&dynamic, &b).unwrap()[..], [Choice::Provision { .. }]));
    }

    /// A driver that publishes its capacity provisions only where a
    /// CSIStorageCapacity of the class, for the node's topology, has room.
    #[test]
    fn provisioning_heeds_the_capacity_a_driver_publishes() {
        let mut s = storage();
        let (a, b) = (node("n-a", "a"), node("n-b", "b"));
        let driver: CSIDriver = serde_json::from_value(json!({"metadata": {"name": "example.com/disk"}, "spec": {"storageCapacity": true}})).unwrap();
        s.drivers.insert("example.com/disk".into(), Arc::new(driver));
        let capacity = |name: &str, zone: &str, size: &str| -> (String, Arc<CSIStorageCapacity>) {
            let object = json!({"metadata": {"name": name, "namespace": "kube-system"}, "storageClassName": "dynamic", "nodeTopology": {"matchLabels": {"zone": zone}}, "capacity": size});
            (format!("kube-system/{name}"), Arc::new(serde_json::from_value(object).unwrap()))
        };
        let dynamic = s.prefilter(&[("ns/dyn".into(), false)]).unwrap();
        assert_eq!(messages(s.choose(&dynamic, &a)), [NOT_ENOUGH_SPACE], "no capacity published: no room known");
        s.capacities.extend([capacity("on-a", "a", "512Mi"), capacity("on-b", "b", "2Gi")]);
        assert_eq!(messages(s.choose(&dynamic, &a)), [NOT_ENOUGH_SPACE]);
        assert!(matches!(&s.choose(&dynamic, &b).unwrap()[..], [Choice::Provision { .. }]));
    }
}

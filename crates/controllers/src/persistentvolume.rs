//! The PersistentVolume binder, upstream's persistentvolume controller:
//! it binds claims to volumes and keeps both phases; CSI provisioners
//! (`skiff_csi::provisioner`, or a driver's own) make the volumes.
//!
//! - A pending claim of an `Immediate` class (or none) is bound to the
//!   smallest unclaimed volume that matches it, or to the volume it names.
//! - A `WaitForFirstConsumer` claim is bound only once the scheduler has
//!   chosen its volume (the volume's `claimRef`, VolumeBinding's PreBind).
//! - Binding writes the volume's `claimRef` and phase Bound, then the
//!   claim's `volumeName`, `pv.kubernetes.io/bind-completed`, and phase
//!   Bound with the volume's capacity and access modes.
//! - A claim nothing fits waits, and says for what as upstream does: a
//!   class with a provisioner marks it `volume.kubernetes.io/storage-provisioner`
//!   (event ExternalProvisioning); a `WaitForFirstConsumer` claim no pod
//!   has chosen a node for gets event WaitForFirstConsumer.
//! - A volume whose claim is gone is Released (a provisioner deletes it
//!   under reclaim policy Delete), or Failed when nothing can reclaim it
//!   (Recycle, or Delete of a volume no provisioner made); a volume nobody
//!   claims is Available; a bound claim whose volume is gone is Lost.
//!
//! Every change to a claim, volume or class, and a resync every 15 s, runs
//! one pass over all of them (there are few, next to pods).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use serde_json::json;
use skiff_scheduler::volume_rules::{best_match, claim_ref_patch, claimed_by, BIND_COMPLETED, BOUND_BY_CONTROLLER};

use crate::informers::Informer;

const RESYNC: Duration = Duration::from_secs(15);
/// Which provisioner a claim waits for (both names, as upstream writes them).
const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
const STORAGE_PROVISIONER_BETA: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// The scheduler's choice of node for a delayed claim.
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

pub fn run(client: kube::Client, claims: &Informer<PersistentVolumeClaim>, volumes: &Informer<PersistentVolume>) -> impl std::future::Future<Output = ()> + Send {
    let changes = futures::stream::select(claims.subscribe().map(drop), volumes.subscribe().map(drop));
    let (claims, volumes) = (claims.store(), volumes.store());
    async move {
        let classes = Informer::<StorageClass>::start(Api::all(client.clone()));
        let ticks = futures::stream::unfold(tokio::time::interval(RESYNC), |mut t| async move {
            t.tick().await;
            Some(((), t))
        });
        let mut triggers = futures::stream::select(futures::stream::select(changes, classes.subscribe().map(drop)), ticks).ready_chunks(1024).boxed();
        let events = Recorder::new(client.clone(), Reporter { controller: "persistentvolume-controller".into(), instance: None });
        let binder = Binder { client, claims, volumes, classes: classes.store(), events, told_to_wait: Default::default() };
        while triggers.next().await.is_some() {
            if crate::informers::ready(&binder.claims).await.is_err() || crate::informers::ready(&binder.volumes).await.is_err() || crate::informers::ready(&binder.classes).await.is_err() {
                continue;
            }
            binder.sync().await;
        }
    }
}

struct Binder {
    client: kube::Client,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    events: Recorder,
    /// Claims (by uid) already told they wait for their first consumer.
    told_to_wait: std::sync::Mutex<std::collections::HashSet<String>>,
}

fn name_of<K: kube::Resource>(o: &K) -> &str {
    o.meta().name.as_deref().unwrap_or_default()
}

/// A volume's new phase, stamped with when it changed (upstream's
/// `lastPhaseTransitionTime`).
fn volume_phase(phase: &str) -> serde_json::Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({"status": {"phase": phase, "lastPhaseTransitionTime": now}})
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> &str {
    c.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

fn phase_of_volume(v: &PersistentVolume) -> &str {
    v.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

impl Binder {
    async fn sync(&self) {
        let volumes: HashMap<String, Arc<PersistentVolume>> = self.volumes.state().into_iter().map(|v| (name_of(&*v).to_string(), v)).collect();
        let uids: std::collections::HashSet<String> = self.claims.state().iter().filter_map(|c| c.metadata.uid.clone()).collect();
        crate::common::lock(&self.told_to_wait).retain(|uid| uids.contains(uid));
        for claim in self.claims.state() {
            if claim.metadata.deletion_timestamp.is_none() {
                if let Err(e) = self.sync_claim(&claim, &volumes).await {
                    tracing::debug!(claim = name_of(&*claim), "persistentvolume binder: {e}");
                }
            }
        }
        let claims: HashMap<String, Arc<PersistentVolumeClaim>> = self.claims.state().into_iter().map(|c| (format!("{}/{}", c.metadata.namespace.as_deref().unwrap_or_default(), name_of(&*c)), c)).collect();
        for volume in volumes.values() {
            if let Err(e) = self.sync_volume(volume, &claims).await {
                tracing::debug!(volume = name_of(&**volume), "persistentvolume binder: {e}");
            }
        }
    }

    /// upstream's `syncClaim`.
    async fn sync_claim(&self, claim: &PersistentVolumeClaim, volumes: &HashMap<String, Arc<PersistentVolume>>) -> Result<(), kube::Error> {
        let named = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).filter(|v| !v.is_empty());
        let volume = match named {
            Some(name) => match volumes.get(name) {
                Some(v) if v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_none() || claimed_by(v, claim) => v.clone(),
                Some(_) => return self.claim_phase(claim, "Pending").await,
                // Bound once, its volume gone: the data is lost.
                None if claim.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(BIND_COMPLETED)) => return self.claim_phase(claim, "Lost").await,
                None => return self.claim_phase(claim, "Pending").await,
            },
            None => {
                // The scheduler chooses volumes for delayed claims.
                let delayed = self.delays_binding(claim);
                match best_match(volumes.values().filter(|v| !delayed || claimed_by(v, claim)), claim) {
                    Some(v) => v.clone(),
                    None => {
                        self.say_what_it_waits_for(claim, delayed).await?;
                        return self.claim_phase(claim, "Pending").await;
                    }
                }
            }
        };
        self.bind(&volume, claim).await
    }

    /// Upstream's word on a claim nothing fits yet, once.
    async fn say_what_it_waits_for(&self, claim: &PersistentVolumeClaim, delayed: bool) -> Result<(), kube::Error> {
        use kube::Resource;
        let class_name = claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or_default();
        let Some(class) = self.classes.state().into_iter().find(|c| !class_name.is_empty() && name_of(&**c) == class_name) else { return Ok(()) };
        if class.provisioner == "kubernetes.io/no-provisioner" {
            return Ok(());
        }
        let annotations = claim.metadata.annotations.clone().unwrap_or_default();
        let (reason, note) = if delayed && !annotations.contains_key(SELECTED_NODE) {
            if !crate::common::lock(&self.told_to_wait).insert(claim.metadata.uid.clone().unwrap_or_default()) {
                return Ok(());
            }
            ("WaitForFirstConsumer", "waiting for first consumer to be created before binding".to_string())
        } else {
            let provisioner = &class.provisioner;
            if annotations.get(STORAGE_PROVISIONER) == Some(provisioner) {
                return Ok(());
            }
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), claim.metadata.namespace.as_deref().unwrap_or_default());
            let patch = json!({"metadata": {"annotations": {STORAGE_PROVISIONER: provisioner, STORAGE_PROVISIONER_BETA: provisioner}}});
            claims.patch(name_of(claim), &PatchParams::default(), &Patch::Merge(patch)).await?;
            let note = format!("Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.");
            ("ExternalProvisioning", note)
        };
        let event = Event { type_: EventType::Normal, reason: reason.into(), note: Some(note), action: "Binding".into(), secondary: None };
        if let Err(e) = self.events.publish(&event, &claim.object_ref(&())).await {
            tracing::debug!("event for claim {}: {e}", name_of(claim));
        }
        Ok(())
    }

    fn delays_binding(&self, claim: &PersistentVolumeClaim) -> bool {
        let class = claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or_default();
        !class.is_empty() && self.classes.state().iter().any(|c| name_of(&**c) == class && c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
    }

    /// Upstream's `bind`: the volume first, then the claim, each written
    /// only where it differs.
    async fn bind(&self, volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Result<(), kube::Error> {
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        if let Some(patch) = claim_ref_patch(volume, claim) {
            volumes.patch(name_of(volume), &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
        if phase_of_volume(volume) != "Bound" {
            volumes.patch_status(name_of(volume), &PatchParams::default(), &Patch::Merge(volume_phase("Bound"))).await?;
        }
        let annotations = claim.metadata.annotations.clone().unwrap_or_default();
        let named = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(name_of(volume));
        if !named || !annotations.contains_key(BIND_COMPLETED) {
            let mut patch = json!({"metadata": {"resourceVersion": claim.metadata.resource_version, "annotations": {BIND_COMPLETED: "yes"}}, "spec": {"volumeName": name_of(volume)}});
            if !named {
                patch["metadata"]["annotations"][BOUND_BY_CONTROLLER] = json!("yes");
            }
            claims.patch(name_of(claim), &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
        let spec = volume.spec.as_ref();
        let status = json!({"status": {"phase": "Bound", "accessModes": spec.and_then(|s| s.access_modes.clone()), "capacity": spec.and_then(|s| s.capacity.clone())}});
        // The capacity is the volume's when binding; later, an expansion's
        // resizer moves it, once the filesystem has grown.
        if phase_of_claim(claim) != "Bound" {
            claims.patch_status(name_of(claim), &PatchParams::default(), &Patch::Merge(status)).await?;
        }
        Ok(())
    }

    async fn claim_phase(&self, claim: &PersistentVolumeClaim, phase: &str) -> Result<(), kube::Error> {
        if phase_of_claim(claim) == phase {
            return Ok(());
        }
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), claim.metadata.namespace.as_deref().unwrap_or_default());
        claims.patch_status(name_of(claim), &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": phase}}))).await?;
        Ok(())
    }

    /// upstream's `syncVolume`: the phase its claim reference implies.
    async fn sync_volume(&self, volume: &PersistentVolume, claims: &HashMap<String, Arc<PersistentVolumeClaim>>) -> Result<(), kube::Error> {
        let reference = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        let phase = match reference {
            None => "Available",
            // Reserved for a claim (by its user) that has not bound yet.
            Some(r) if r.uid.is_none() => "Available",
            Some(r) => {
                let key = format!("{}/{}", r.namespace.as_deref().unwrap_or_default(), r.name.as_deref().unwrap_or_default());
                match claims.get(&key).filter(|c| c.metadata.uid == r.uid) {
                    Some(c) if c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(name_of(volume)) => "Bound",
                    // Being bound (the claim's half follows).
                    Some(_) => return Ok(()),
                    None if phase_of_volume(volume) == "Failed" => return Ok(()),
                    None => "Released",
                }
            }
        };
        if phase == "Released" {
            if let Some((reason, message)) = unreclaimable(volume) {
                return self.fail(volume, reason, message).await;
            }
        }
        if phase_of_volume(volume) != phase {
            let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
            volumes.patch_status(name_of(volume), &PatchParams::default(), &Patch::Merge(volume_phase(phase))).await?;
        }
        Ok(())
    }

    /// A released volume nothing can reclaim: Failed, with why, as upstream.
    async fn fail(&self, volume: &PersistentVolume, reason: &str, message: String) -> Result<(), kube::Error> {
        use kube::Resource;
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let mut status = volume_phase("Failed");
        status["status"]["message"] = json!(message);
        volumes.patch_status(name_of(volume), &PatchParams::default(), &Patch::Merge(status)).await?;
        let event = Event { type_: EventType::Warning, reason: reason.into(), note: Some(message), action: "Reclaim".into(), secondary: None };
        if let Err(e) = self.events.publish(&event, &volume.object_ref(&())).await {
            tracing::debug!("event for volume {}: {e}", name_of(volume));
        }
        Ok(())
    }
}

/// Why a released volume cannot be reclaimed: `Recycle` (deprecated
/// upstream; Skiff has no recycler), or `Delete` of a volume no
/// provisioner made (upstream has no deleter for it either).
fn unreclaimable(volume: &PersistentVolume) -> Option<(&'static str, String)> {
    let policy = volume.spec.as_ref()?.persistent_volume_reclaim_policy.as_deref()?;
    let provisioned = volume.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("pv.kubernetes.io/provisioned-by"));
    match policy {
        "Recycle" => Some(("VolumeFailedRecycle", "Recycle is deprecated and not supported: delete the volume's data yourself, or use Retain or Delete".into())),
        "Delete" if !provisioned => Some(("VolumeFailedDelete", format!("error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched", name_of(volume)))),
        _ => None,
    }
}

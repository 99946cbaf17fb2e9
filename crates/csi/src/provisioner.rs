//! external-provisioner's job, run by each node for the drivers registered
//! on it (upstream's `--node-deployment` mode, which node-local drivers
//! need: only the node that holds a volume can make it).
//!
//! - A pending claim whose class names a driver registered here, and whose
//!   node is this one (the scheduler's `volume.kubernetes.io/selected-node`
//!   for `WaitForFirstConsumer`; for `Immediate`, the first node by name
//!   that has the driver), gets `CreateVolume` and a PersistentVolume
//!   reserved for it (`claimRef`). The PV binder then binds the two.
//! - A volume this driver made here that is Released with reclaim policy
//!   `Delete` gets `DeleteVolume`, then its PersistentVolume goes.
//! - external-resizer's job, and the kubelet's half of it: a bound claim
//!   asking for more than its volume has gets `ControllerExpandVolume` and
//!   the volume's new capacity; then, where a pod has the volume published,
//!   `NodeExpandVolume` grows the filesystem online and the claim's
//!   capacity follows (condition `FileSystemResizePending` in between).
//!
//! Every change to claims, volumes and classes, and a resync every 10 s,
//! runs one pass; each claim's provisioning runs on its own, at most
//! [`PARALLEL`] at a time.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{CSIDriver, CSINode, CSIStorageCapacity, StorageClass};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

use crate::pb::csi;
use crate::mounter::Mounter;
use crate::registry::{Driver, Registry};

pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const RESYNC: Duration = Duration::from_secs(10);
const PARALLEL: usize = 16;
/// Class parameters meant for the CO, not the driver.
const CO_PARAMETER_PREFIX: &str = "csi.storage.k8s.io/";
/// What CreateVolume is told of the claim and its volume-to-be, as
/// external-provisioner's `--extra-create-metadata` tells it.
pub const PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";
pub const PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";
pub const PV_NAME: &str = "csi.storage.k8s.io/pv/name";
/// Where the nodes publish their CSIStorageCapacity objects.
const CAPACITY_NAMESPACE: &str = "kube-system";
/// How often the capacity left is asked again.
const CAPACITY_PERIOD: Duration = Duration::from_secs(10);

/// What the capacity publisher has done.
#[derive(Default)]
struct Capacities {
    /// The capacity last published, by CSIStorageCapacity name.
    published: BTreeMap<String, String>,
    /// The (driver, class) pairs looked at, published or not.
    seen: HashSet<(String, String)>,
    /// When the drivers were last asked.
    asked: Option<std::time::Instant>,
}

pub(crate) struct Provisioner {
    pub(crate) client: kube::Client,
    pub(crate) node: String,
    pub(crate) registry: Registry,
    mounter: Mounter,
    pub(crate) claims: Store<PersistentVolumeClaim>,
    pub(crate) volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    csinodes: Store<CSINode>,
    pub(crate) snapshot_stores: crate::snapshots::Stores,
    capacities: Mutex<Capacities>,
    /// Claims (by uid) and volumes (by name) being worked on.
    busy: Mutex<HashSet<String>>,
    permits: tokio::sync::Semaphore,
    recorder: Recorder,
}

/// Runs for as long as the process does.
pub async fn run(client: kube::Client, node: String, mounter: Mounter) {
    let registry = mounter.registry.clone();
    let (claims, claims_writer) = reflector::store();
    let (volumes, volumes_writer) = reflector::store();
    let (classes, classes_writer) = reflector::store();
    let (csinodes, csinodes_writer) = reflector::store();
    let dynamic = |resource: kube::api::ApiResource| {
        let writer = reflector::store::Writer::<kube::api::DynamicObject>::new(resource.clone());
        let reader = writer.as_reader();
        let changes = reflector::reflector(writer, watcher(Api::<kube::api::DynamicObject>::all_with(client.clone(), &resource), watcher::Config::default())).default_backoff().map(drop).boxed();
        (reader, changes)
    };
    let (snapshots, snapshot_changes) = dynamic(crate::snapshots::snapshots());
    let (contents, content_changes) = dynamic(crate::snapshots::contents());
    let (snapshot_classes, snapshot_class_changes) = dynamic(crate::snapshots::classes());
    let snapshot_stores = crate::snapshots::Stores { snapshots, contents, classes: snapshot_classes };
    let changes = futures::stream::select_all([
        snapshot_changes,
        content_changes,
        snapshot_class_changes,
        reflector::reflector(claims_writer, watcher(Api::<PersistentVolumeClaim>::all(client.clone()), watcher::Config::default())).default_backoff().map(drop).boxed(),
        reflector::reflector(volumes_writer, watcher(Api::<PersistentVolume>::all(client.clone()), watcher::Config::default())).default_backoff().map(drop).boxed(),
        reflector::reflector(classes_writer, watcher(Api::<StorageClass>::all(client.clone()), watcher::Config::default())).default_backoff().map(drop).boxed(),
        reflector::reflector(csinodes_writer, watcher(Api::<CSINode>::all(client.clone()), watcher::Config::default())).default_backoff().map(drop).boxed(),
    ]);
    let ticks = futures::stream::unfold(tokio::time::interval(RESYNC), |mut t| async move {
        t.tick().await;
        Some(((), t))
    });
    let mut triggers = futures::stream::select(changes, ticks.boxed()).ready_chunks(1024);
    let reporter = Reporter { controller: "skiff-csi-provisioner".into(), instance: Some(node.clone()) };
    let recorder = Recorder::new(client.clone(), reporter);
    let me = Arc::new(Provisioner { client, node, registry, mounter, claims, volumes, classes, csinodes, snapshot_stores, capacities: Mutex::default(), busy: Mutex::default(), permits: tokio::sync::Semaphore::new(PARALLEL), recorder });
    while triggers.next().await.is_some() {
        if !(me.claims.listed() && me.volumes.listed() && me.classes.listed() && me.csinodes.listed()) {
            continue;
        }
        // Snapshots wait only for their own lists (their kinds may be served late).
        let snapshots = &me.snapshot_stores;
        if snapshots.snapshots.listed() && snapshots.contents.listed() && snapshots.classes.listed() {
            me.snapshot_pass();
        }
        me.clone().pass().await;
    }
}

trait Listed {
    fn listed(&self) -> bool;
}

impl<K: kube::Resource + Clone + 'static> Listed for Store<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// Whether the first list is in (a store is not ready until then).
    fn listed(&self) -> bool {
        futures::FutureExt::now_or_never(self.wait_until_ready()).is_some()
    }
}

fn name_of<K: kube::Resource>(o: &K) -> &str {
    o.meta().name.as_deref().unwrap_or_default()
}

impl Provisioner {
    pub(crate) fn claim_busy(&self, key: &str) -> bool {
        !self.busy.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string())
    }

    pub(crate) fn done(&self, key: &str) {
        self.busy.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Whether the drivers are to be asked their capacity now: every
    /// [`CAPACITY_PERIOD`], and at once for a class or driver not looked at
    /// yet (the scheduler places none of its claims until then).
    fn capacity_due(&self) -> bool {
        let mut capacities = self.capacities.lock().unwrap_or_else(|e| e.into_inner());
        let drivers = self.registry.all();
        let reports = |class: &StorageClass| drivers.iter().any(|d| d.reports_capacity && d.name == class.provisioner);
        let new = self.classes.state().iter().any(|c| reports(c) && !capacities.seen.contains(&(c.provisioner.clone(), name_of(&**c).to_string())));
        let due = new || capacities.asked.is_none_or(|at| at.elapsed() >= CAPACITY_PERIOD);
        if due {
            capacities.asked = Some(std::time::Instant::now());
        }
        due
    }

    async fn pass(self: Arc<Self>) {
        if self.capacity_due() && !self.claim_busy("capacity") {
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.publish_capacity().await {
                    tracing::warn!("publishing storage capacity: {e:#}");
                }
                me.done("capacity");
            });
        }
        for claim in self.claims.state() {
            let Some(class) = self.class_to_provision(&claim) else { continue };
            let Some(driver) = self.registry.get(&class.provisioner).filter(|d| d.controller) else { continue };
            let selected = claim.metadata.annotations.as_ref().and_then(|a| a.get(SELECTED_NODE));
            let mine = match selected {
                Some(node) => *node == self.node,
                None if class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer") => false,
                None => self.first_node(&driver.name).as_deref() == Some(self.node.as_str()),
            };
            let pv_name = format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or_default());
            if !mine || self.volumes.get(&reflector::ObjectRef::new(&pv_name)).is_some() || self.claim_busy(&pv_name) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                let _permit = me.permits.acquire().await;
                if let Err(e) = me.provision(&claim, &class, &driver, &pv_name).await {
                    let message = format!("failed to provision volume with StorageClass \"{}\": {e:#}", name_of(&*class));
                    tracing::warn!(claim = name_of(&*claim), "{message}");
                    me.event(&claim, EventType::Warning, "ProvisioningFailed", message).await;
                    // Tried again on a later pass, not at once.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                me.done(&pv_name);
            });
        }
        for claim in self.claims.state() {
            let Some((volume, driver, wanted)) = self.to_expand(&claim) else { continue };
            let key = format!("expand/{}", name_of(&*volume));
            if self.claim_busy(&key) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                let _permit = me.permits.acquire().await;
                if let Err(e) = me.expand(&claim, &volume, &driver, wanted).await {
                    let message = format!("resize volume \"{}\" by resizer \"{}\" failed: {e:#}", name_of(&*volume), driver.name);
                    tracing::warn!(claim = name_of(&*claim), "{message}");
                    me.event(&claim, EventType::Warning, "VolumeResizeFailed", message).await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                me.done(&key);
            });
        }
        for volume in self.volumes.state() {
            let Some(driver) = self.to_delete(&volume) else { continue };
            let name = name_of(&*volume).to_string();
            if self.claim_busy(&name) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                let _permit = me.permits.acquire().await;
                if let Err(e) = me.delete(&volume, &driver).await {
                    tracing::warn!(volume = name, "deleting a released volume: {e:#}");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                me.done(&name);
            });
        }
    }

    /// The class of a claim waiting for a volume from a provisioner.
    fn class_to_provision(&self, claim: &PersistentVolumeClaim) -> Option<Arc<StorageClass>> {
        let spec = claim.spec.as_ref()?;
        if claim.metadata.deletion_timestamp.is_some() || spec.volume_name.as_deref().is_some_and(|v| !v.is_empty()) {
            return None;
        }
        let class = spec.storage_class_name.as_deref().filter(|c| !c.is_empty())?;
        self.classes.get(&reflector::ObjectRef::new(class))
    }

    /// external-provisioner's `--enable-capacity`, for a node: each class
    /// of a driver here that reports capacity, and whose CSIDriver says
    /// `storageCapacity: true`, gets a CSIStorageCapacity for this node's
    /// topology, which the scheduler reads before it picks a node for a
    /// claim to provision.
    async fn publish_capacity(&self) -> Result<()> {
        let drivers = Api::<CSIDriver>::all(self.client.clone()).list(&Default::default()).await?;
        let tracked = |name: &str| drivers.items.iter().any(|d| name_of(d) == name && d.spec.storage_capacity == Some(true));
        let api: Api<CSIStorageCapacity> = Api::namespaced(self.client.clone(), CAPACITY_NAMESPACE);
        for driver in self.registry.all().into_iter().filter(|d| d.reports_capacity) {
            for class in self.classes.state().into_iter().filter(|c| c.provisioner == driver.name) {
                self.capacities.lock().unwrap_or_else(|e| e.into_inner()).seen.insert((driver.name.clone(), name_of(&*class).to_string()));
                if driver.topology.is_empty() || !tracked(&driver.name) {
                    continue;
                }
                let parameters: BTreeMap<String, String> = class.parameters.clone().unwrap_or_default();
                let fs_type = parameters.get("csi.storage.k8s.io/fstype").cloned().unwrap_or_default();
                let request = csi::GetCapacityRequest {
                    volume_capabilities: vec![capability("ReadWriteOnce", false, &fs_type, vec![])?],
                    parameters: parameters.into_iter().filter(|(k, _)| !k.starts_with(CO_PARAMETER_PREFIX)).collect(),
                    accessible_topology: Some(csi::Topology { segments: driver.topology.clone().into_iter().collect() }),
                    mutable_parameters: Default::default(),
                };
                let available = driver.controller().get_capacity(request).await.map_err(crate::mounter::rpc_error)?.into_inner().available_capacity;
                let capacity = skiff_quantity::format(available * 1000, true);
                let name = format!("csisc-{}", &crate::sha256_hex(&format!("{}/{}/{}", driver.name, name_of(&*class), self.node))[..16]);
                if self.capacities.lock().unwrap_or_else(|e| e.into_inner()).published.get(&name) == Some(&capacity) {
                    continue;
                }
                let object = json!({
                    "apiVersion": "storage.k8s.io/v1", "kind": "CSIStorageCapacity",
                    "metadata": {"name": name, "namespace": CAPACITY_NAMESPACE, "labels": {"csi.storage.k8s.io/drivername": driver.name, "csi.storage.k8s.io/managed-by": managed_by(&self.node)}},
                    "nodeTopology": {"matchLabels": driver.topology},
                    "storageClassName": name_of(&*class),
                    "capacity": capacity,
                });
                api.patch(&name, &PatchParams::apply("skiff-csi-provisioner").force(), &Patch::Apply(object)).await?;
                self.capacities.lock().unwrap_or_else(|e| e.into_inner()).published.insert(name, capacity);
            }
        }
        Ok(())
    }

    /// The first node by name whose CSINode lists the driver: the one that
    /// provisions its `Immediate` claims, and deletes the volumes of a
    /// driver without topology (any node could; one must).
    fn first_node(&self, driver: &str) -> Option<String> {
        self.csinodes.state().iter().filter(|n| n.spec.drivers.iter().any(|d| d.name == driver)).map(|n| name_of(&**n).to_string()).min()
    }

    async fn provision(&self, claim: &PersistentVolumeClaim, class: &StorageClass, driver: &Driver, pv_name: &str) -> Result<()> {
        let spec = claim.spec.clone().unwrap_or_default();
        let quantity = |key: &str| spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get(key)).and_then(|q| skiff_quantity::value(&q.0));
        let limit = spec.resources.as_ref().and_then(|r| r.limits.as_ref()).and_then(|r| r.get("storage")).and_then(|q| skiff_quantity::value(&q.0));
        let block = spec.volume_mode.as_deref() == Some("Block");
        let parameters: BTreeMap<String, String> = class.parameters.clone().unwrap_or_default();
        let fs_type = parameters.get("csi.storage.k8s.io/fstype").cloned().unwrap_or_default();
        let modes = spec.access_modes.clone().unwrap_or_default();
        let capabilities = modes.iter().map(|m| capability(m, block, &fs_type, class.mount_options.clone().unwrap_or_default())).collect::<Result<Vec<_>>>()?;
        let mut driver_parameters: std::collections::HashMap<String, String> = parameters.iter().filter(|(k, _)| !k.starts_with(CO_PARAMETER_PREFIX)).map(|(k, v)| (k.clone(), v.clone())).collect();
        driver_parameters.insert(PVC_NAME.into(), name_of(claim).into());
        driver_parameters.insert(PVC_NAMESPACE.into(), claim.metadata.namespace.clone().unwrap_or_default());
        driver_parameters.insert(PV_NAME.into(), pv_name.into());
        // The volume must be reachable from the node the pod was scheduled to.
        let requisite = if driver.topology.is_empty() { vec![] } else { vec![csi::Topology { segments: driver.topology.clone().into_iter().collect() }] };
        let accessibility = (!requisite.is_empty()).then(|| csi::TopologyRequirement { preferred: requisite.clone(), requisite });
        let request = csi::CreateVolumeRequest {
            name: pv_name.to_string(),
            capacity_range: Some(csi::CapacityRange { required_bytes: quantity("storage").unwrap_or(0), limit_bytes: limit.unwrap_or(0) }),
            volume_capabilities: capabilities,
            parameters: driver_parameters,
            accessibility_requirements: accessibility,
            volume_content_source: self.content_source(claim, &driver.name).await?,
            ..Default::default()
        };
        let created = driver.controller().create_volume(request).await.map_err(|s| anyhow::anyhow!("rpc error: code = {:?} desc = {}", s.code(), s.message()))?.into_inner();
        let volume = created.volume.context("the driver answered CreateVolume without a volume")?;
        let capacity = if volume.capacity_bytes > 0 { volume.capacity_bytes } else { quantity("storage").unwrap_or(0) };
        let terms: Vec<serde_json::Value> = volume
            .accessible_topology
            .iter()
            .map(|t| json!({"matchExpressions": t.segments.iter().map(|(k, v)| json!({"key": k, "operator": "In", "values": [v]})).collect::<Vec<_>>()}))
            .collect();
        let claim_ref = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: claim.metadata.namespace.clone(),
            name: claim.metadata.name.clone(),
            uid: claim.metadata.uid.clone(),
            resource_version: claim.metadata.resource_version.clone(),
            ..Default::default()
        };
        let mut pv = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "annotations": {PROVISIONED_BY: driver.name}},
            "spec": {
                "capacity": {"storage": skiff_quantity::format(capacity * 1000, true)},
                "accessModes": modes,
                "claimRef": claim_ref,
                "persistentVolumeReclaimPolicy": class.reclaim_policy.as_deref().unwrap_or("Delete"),
                "storageClassName": name_of(class),
                "volumeMode": if block { "Block" } else { "Filesystem" },
                "csi": {"driver": driver.name, "volumeHandle": volume.volume_id, "volumeAttributes": volume.volume_context},
            },
        });
        if !fs_type.is_empty() {
            pv["spec"]["csi"]["fsType"] = json!(fs_type);
        }
        if let Some(options) = &class.mount_options {
            pv["spec"]["mountOptions"] = json!(options);
        }
        if !terms.is_empty() {
            pv["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": terms}});
        }
        let pv: PersistentVolume = serde_json::from_value(pv)?;
        match Api::<PersistentVolume>::all(self.client.clone()).create(&PostParams::default(), &pv).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).context("creating the PersistentVolume"),
        }
        self.event(claim, EventType::Normal, "ProvisioningSucceeded", format!("Successfully provisioned volume {pv_name}")).await;
        Ok(())
    }

    /// The driver that must delete this volume, if it is this node's to
    /// delete now: Released, reclaim Delete, made by a driver registered
    /// here, and (for a driver with topology) on this node.
    fn to_delete(&self, volume: &PersistentVolume) -> Option<Driver> {
        let spec = volume.spec.as_ref()?;
        let released = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        if !released || spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete") || volume.metadata.deletion_timestamp.is_some() {
            return None;
        }
        self.maker_here(volume)
    }

    /// The driver registered here that made this volume, if the volume is
    /// this node's to manage (a driver with topology: the volume's node
    /// affinity names this node).
    pub(crate) fn maker_here(&self, volume: &PersistentVolume) -> Option<Driver> {
        let spec = volume.spec.as_ref()?;
        let made_by = volume.metadata.annotations.as_ref()?.get(PROVISIONED_BY)?;
        let driver = self.registry.get(made_by).filter(|d| d.controller)?;
        let here = (driver.topology.is_empty() && self.first_node(&driver.name).as_deref() == Some(self.node.as_str()))
            || spec.node_affinity.as_ref().and_then(|a| a.required.as_ref()).is_some_and(|r| {
                r.node_selector_terms.iter().any(|t| {
                    t.match_expressions.iter().flatten().all(|e| e.operator == "In" && driver.topology.get(&e.key).is_some_and(|v| e.values.iter().flatten().any(|x| x == v)))
                })
            });
        here.then_some(driver)
    }

    async fn delete(&self, volume: &PersistentVolume, driver: &Driver) -> Result<()> {
        let handle = volume.spec.as_ref().and_then(|s| s.csi.as_ref()).map(|c| c.volume_handle.clone()).context("not a CSI volume")?;
        driver.controller().delete_volume(csi::DeleteVolumeRequest { volume_id: handle, secrets: Default::default() }).await.map_err(|s| anyhow::anyhow!("rpc error: code = {:?} desc = {}", s.code(), s.message()))?;
        let params = DeleteParams { preconditions: Some(kube::api::Preconditions { uid: volume.metadata.uid.clone(), resource_version: None }), ..Default::default() };
        match Api::<PersistentVolume>::all(self.client.clone()).delete(name_of(volume), &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A bound claim that wants more than it has, with its volume, the
    /// volume's driver (registered here) and the bytes wanted.
    fn to_expand(&self, claim: &PersistentVolumeClaim) -> Option<(Arc<PersistentVolume>, Driver, i64)> {
        let spec = claim.spec.as_ref()?;
        let bytes = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>| q.and_then(|q| skiff_quantity::value(&q.0));
        let wanted = bytes(spec.resources.as_ref()?.requests.as_ref()?.get("storage"))?;
        let status = claim.status.as_ref()?;
        let has = bytes(status.capacity.as_ref()?.get("storage"))?;
        if status.phase.as_deref() != Some("Bound") || wanted <= has || claim.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let volume = self.volumes.get(&reflector::ObjectRef::new(spec.volume_name.as_deref()?))?;
        let driver = self.maker_here(&volume)?;
        Some((volume, driver, wanted))
    }

    /// One step of an expansion: the controller's, until the volume has
    /// the size; then the node's, where the volume is published.
    async fn expand(&self, claim: &PersistentVolumeClaim, volume: &PersistentVolume, driver: &Driver, wanted: i64) -> Result<()> {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), claim.metadata.namespace.as_deref().unwrap_or_default());
        let spec = volume.spec.as_ref().context("a volume without spec")?;
        let source = spec.csi.as_ref().context("not a CSI volume")?;
        let capacity = spec.capacity.as_ref().and_then(|c| c.get("storage")).and_then(|q| skiff_quantity::value(&q.0)).unwrap_or(0);
        let size = skiff_quantity::format(wanted * 1000, true);
        let mode = spec.access_modes.as_ref().and_then(|m| m.first().cloned()).unwrap_or_else(|| "ReadWriteOnce".into());
        if capacity < wanted {
            self.event(claim, EventType::Normal, "Resizing", format!("External resizer is resizing volume {}", name_of(volume))).await;
            let block = spec.volume_mode.as_deref() == Some("Block");
            let request = csi::ControllerExpandVolumeRequest {
                volume_id: source.volume_handle.clone(),
                capacity_range: Some(csi::CapacityRange { required_bytes: wanted, limit_bytes: 0 }),
                volume_capability: Some(capability(&mode, block, source.fs_type.as_deref().unwrap_or_default(), vec![])?),
                secrets: Default::default(),
            };
            let expanded = driver.controller().controller_expand_volume(request).await.map_err(crate::mounter::rpc_error)?.into_inner();
            let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
            volumes.patch(name_of(volume), &PatchParams::default(), &Patch::Merge(json!({"spec": {"capacity": {"storage": size}}}))).await.context("recording the volume's new capacity")?;
            let status = if expanded.node_expansion_required {
                self.event(claim, EventType::Normal, "FileSystemResizeRequired", "Require file system resize of volume on node".into()).await;
                json!({"status": {"conditions": [{"type": "FileSystemResizePending", "status": "True", "lastTransitionTime": now(),
                    "message": "Waiting for user to (re-)start a pod to finish file system resize of volume on node."}]}})
            } else {
                self.event(claim, EventType::Normal, "VolumeResizeSuccessful", "Resize volume succeeded".into()).await;
                json!({"status": {"capacity": {"storage": size}, "conditions": null}})
            };
            claims.patch_status(name_of(claim), &PatchParams::default(), &Patch::Merge(status)).await?;
            return Ok(());
        }
        // The node's half: only where a pod has it published.
        if self.mounter.published(&source.driver, &source.volume_handle).is_none() {
            return Ok(());
        }
        self.mounter.expand(source, &mode, wanted).await?;
        claims.patch_status(name_of(claim), &PatchParams::default(), &Patch::Merge(json!({"status": {"capacity": {"storage": size}, "conditions": null}}))).await?;
        self.event(claim, EventType::Normal, "FileSystemResizeSuccessful", format!("MountVolume.NodeExpandVolume succeeded for volume \"{}\" {}", name_of(volume), self.node)).await;
        Ok(())
    }

    async fn event(&self, claim: &PersistentVolumeClaim, type_: EventType, reason: &str, note: String) {
        use kube::Resource;
        let event = Event { type_, reason: reason.into(), note: Some(note), action: "Provision".into(), secondary: None };
        let _ = self.recorder.publish(&event, &claim.object_ref(&())).await;
    }
}

/// The label that says which node publishes a CSIStorageCapacity, as
/// external-provisioner's node deployment writes it.
pub fn managed_by(node: &str) -> String {
    format!("external-provisioner-{node}")
}

/// Now, as the API writes times.
pub(crate) fn now() -> String {
    k8s_openapi::chrono::Utc::now().to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true)
}

/// A claim's access mode and volume mode as a CSI volume capability.
pub fn capability(mode: &str, block: bool, fs_type: &str, mount_flags: Vec<String>) -> Result<csi::VolumeCapability> {
    use csi::volume_capability::{access_mode::Mode, AccessMode, AccessType, BlockVolume, MountVolume};
    let mode = match mode {
        "ReadWriteOnce" => Mode::SingleNodeWriter,
        "ReadWriteOncePod" => Mode::SingleNodeSingleWriter,
        "ReadOnlyMany" => Mode::MultiNodeReaderOnly,
        "ReadWriteMany" => Mode::MultiNodeMultiWriter,
        other => anyhow::bail!("unknown access mode {other:?}"),
    };
    let access_type = if block { AccessType::Block(BlockVolume {}) } else { AccessType::Mount(MountVolume { fs_type: fs_type.to_string(), mount_flags, volume_mount_group: String::new() }) };
    Ok(csi::VolumeCapability { access_type: Some(access_type), access_mode: Some(AccessMode { mode: mode as i32 }) })
}

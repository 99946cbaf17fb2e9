//! external-snapshotter's jobs (the snapshot controller's and its CSI
//! sidecar's), done by the node that holds the volume, for the drivers
//! registered there:
//!
//! - A VolumeSnapshot of a claim whose volume this node's driver made gets
//!   a VolumeSnapshotContent (`snapcontent-<uid>`, of the snapshot's class
//!   or the driver's default one), `CreateSnapshot`, and both statuses:
//!   the content's handle, size and time, the snapshot's bound content,
//!   `readyToUse` and `restoreSize`.
//! - A content whose snapshot is gone goes too under `deletionPolicy:
//!   Delete`; a content being deleted gets `DeleteSnapshot` on the node
//!   that holds it, then loses its finalizer.
//!
//! Restoring and cloning are the provisioner's (`provisioner::source`).
//! Only dynamically made snapshots: a content made by hand for an existing
//! snapshot (`source.snapshotHandle`) is not bound to its snapshot yet.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{json, Value};

use crate::pb::csi;
use crate::provisioner::Provisioner;
use crate::registry::Driver;

pub const GROUP: &str = "snapshot.storage.k8s.io";
/// Keeps a content until its snapshot is deleted from the driver.
pub const CONTENT_FINALIZER: &str = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection";
/// The node holding a snapshot of a driver whose volumes live on one node.
pub const NODE_ANNOTATION: &str = "snapshot.csi.skiff.io/node";
const DEFAULT_CLASS: &str = "snapshot.storage.kubernetes.io/is-default-class";

pub fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource { group: GROUP.into(), version: "v1".into(), api_version: format!("{GROUP}/v1"), kind: kind.into(), plural: plural.into() }
}

pub fn snapshots() -> ApiResource {
    resource("VolumeSnapshot", "volumesnapshots")
}

pub fn contents() -> ApiResource {
    resource("VolumeSnapshotContent", "volumesnapshotcontents")
}

pub fn classes() -> ApiResource {
    resource("VolumeSnapshotClass", "volumesnapshotclasses")
}

/// The snapshot objects the provisioner follows.
pub struct Stores {
    pub snapshots: Store<DynamicObject>,
    pub contents: Store<DynamicObject>,
    pub classes: Store<DynamicObject>,
}

fn rpc(status: tonic::Status) -> anyhow::Error {
    crate::mounter::rpc_error(status)
}

fn text<'a>(object: &'a DynamicObject, pointer: &str) -> Option<&'a str> {
    object.data.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty())
}

impl Provisioner {
    /// Starts what the snapshots and contents need now; each on its own task.
    pub(crate) fn snapshot_pass(self: &Arc<Self>) {
        for snapshot in self.snapshot_stores.snapshots.state() {
            if snapshot.metadata.deletion_timestamp.is_some() || snapshot.data.pointer("/status/readyToUse") == Some(&json!(true)) {
                continue;
            }
            let Some((volume, driver)) = self.snapshot_source(&snapshot) else { continue };
            let key = format!("snapshot/{}", snapshot.metadata.uid.as_deref().unwrap_or_default());
            if self.claim_busy(&key) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.take_snapshot(&snapshot, &volume, &driver).await {
                    tracing::warn!(snapshot = snapshot.metadata.name.as_deref().unwrap_or_default(), "{e:#}");
                    me.snapshot_error(&snapshot, &format!("{e:#}")).await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                me.done(&key);
            });
        }
        for content in self.snapshot_stores.contents.state() {
            let Some(driver) = self.content_here(&content) else { continue };
            let key = format!("content/{}", content.metadata.name.as_deref().unwrap_or_default());
            if self.claim_busy(&key) {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.reclaim_content(&content, &driver).await {
                    tracing::warn!(content = content.metadata.name.as_deref().unwrap_or_default(), "{e:#}");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                me.done(&key);
            });
        }
    }

    /// The volume a snapshot is of, and its driver, when this node holds it.
    fn snapshot_source(&self, snapshot: &DynamicObject) -> Option<(Arc<PersistentVolume>, Driver)> {
        let claim = text(snapshot, "/spec/source/persistentVolumeClaimName")?;
        let ns = snapshot.metadata.namespace.as_deref()?;
        let claim = self.claims.get(&ObjectRef::new(claim).within(ns))?;
        let volume = self.volumes.get(&ObjectRef::new(claim.spec.as_ref()?.volume_name.as_deref()?))?;
        volume.spec.as_ref()?.csi.as_ref()?;
        let driver = self.maker_here(&volume)?;
        Some((volume, driver))
    }

    /// The class a snapshot names, or its driver's default one.
    fn snapshot_class(&self, snapshot: &DynamicObject, driver: &str) -> Result<Arc<DynamicObject>> {
        let classes = self.snapshot_stores.classes.state();
        match text(snapshot, "/spec/volumeSnapshotClassName") {
            Some(name) => classes.into_iter().find(|c| c.metadata.name.as_deref() == Some(name)).with_context(|| format!("volumesnapshotclass {name:?} not found")),
            None => classes
                .into_iter()
                .find(|c| text(c, "/driver") == Some(driver) && c.metadata.annotations.as_ref().and_then(|a| a.get(DEFAULT_CLASS)).is_some_and(|v| v == "true"))
                .with_context(|| format!("no default VolumeSnapshotClass for driver {driver}: name one in spec.volumeSnapshotClassName")),
        }
    }

    async fn take_snapshot(&self, snapshot: &DynamicObject, volume: &PersistentVolume, driver: &Driver) -> Result<()> {
        let uid = snapshot.metadata.uid.as_deref().context("a snapshot without uid")?;
        let ns = snapshot.metadata.namespace.as_deref().unwrap_or_default();
        let name = snapshot.metadata.name.as_deref().unwrap_or_default();
        let class = self.snapshot_class(snapshot, &driver.name)?;
        let source = volume.spec.as_ref().and_then(|s| s.csi.as_ref()).context("not a CSI volume")?;
        let content_name = format!("snapcontent-{uid}");
        let contents: Api<DynamicObject> = Api::all_with(self.client.clone(), &contents());
        let content = json!({
            "apiVersion": format!("{GROUP}/v1"), "kind": "VolumeSnapshotContent",
            "metadata": {"name": content_name, "finalizers": [CONTENT_FINALIZER], "annotations": {NODE_ANNOTATION: self.node}},
            "spec": {
                "deletionPolicy": text(&class, "/deletionPolicy").unwrap_or("Delete"),
                "driver": driver.name,
                "source": {"volumeHandle": source.volume_handle},
                "sourceVolumeMode": volume.spec.as_ref().and_then(|s| s.volume_mode.clone()).unwrap_or_else(|| "Filesystem".into()),
                "volumeSnapshotClassName": class.metadata.name,
                "volumeSnapshotRef": {"apiVersion": format!("{GROUP}/v1"), "kind": "VolumeSnapshot", "namespace": ns, "name": name, "uid": uid},
            },
        });
        match contents.create(&PostParams::default(), &serde_json::from_value(content)?).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).context("creating the VolumeSnapshotContent"),
        }
        let parameters = class.data.get("parameters").and_then(Value::as_object).map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()).unwrap_or_default();
        let request = csi::CreateSnapshotRequest { source_volume_id: source.volume_handle.clone(), name: format!("snapshot-{uid}"), secrets: Default::default(), parameters };
        let made = driver.controller().create_snapshot(request).await.map_err(rpc)?.into_inner().snapshot.context("CreateSnapshot answered without a snapshot")?;
        let created = made.creation_time.unwrap_or_default();
        let nanos = created.seconds * 1_000_000_000 + i64::from(created.nanos);
        let content_status = json!({"status": {"snapshotHandle": made.snapshot_id, "creationTime": nanos, "readyToUse": made.ready_to_use, "restoreSize": made.size_bytes}});
        contents.patch_status(&content_name, &PatchParams::default(), &Patch::Merge(content_status)).await.context("the content's status")?;
        let when = k8s_openapi::chrono::DateTime::from_timestamp(created.seconds, 0).unwrap_or_default().to_rfc3339_opts(k8s_openapi::chrono::SecondsFormat::Secs, true);
        let status = json!({"status": {
            "boundVolumeSnapshotContentName": content_name, "creationTime": when, "readyToUse": made.ready_to_use,
            "restoreSize": skiff_quantity::format(made.size_bytes * 1000, true), "error": null,
        }});
        let snapshots: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &snapshots());
        snapshots.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.context("the snapshot's status")?;
        Ok(())
    }

    async fn snapshot_error(&self, snapshot: &DynamicObject, message: &str) {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), snapshot.metadata.namespace.as_deref().unwrap_or_default(), &snapshots());
        let status = json!({"status": {"readyToUse": false, "error": {"message": message, "time": crate::provisioner::now()}}});
        let _ = api.patch_status(snapshot.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(status)).await;
    }

    /// The driver of a content this node holds that needs reclaiming:
    /// being deleted, or whose snapshot is gone under `deletionPolicy: Delete`.
    fn content_here(&self, content: &DynamicObject) -> Option<Driver> {
        let driver = self.registry.get(text(content, "/spec/driver")?)?;
        let holder = content.metadata.annotations.as_ref().and_then(|a| a.get(NODE_ANNOTATION));
        if holder != Some(&self.node) {
            return None;
        }
        let deleting = content.metadata.deletion_timestamp.is_some() && content.metadata.finalizers.iter().flatten().any(|f| f == CONTENT_FINALIZER);
        let bound = text(content, "/status/snapshotHandle").is_some();
        let orphan = bound && text(content, "/spec/deletionPolicy") == Some("Delete") && content.metadata.deletion_timestamp.is_none() && !self.snapshot_exists(content);
        (deleting || orphan).then_some(driver)
    }

    fn snapshot_exists(&self, content: &DynamicObject) -> bool {
        let (Some(ns), Some(name)) = (text(content, "/spec/volumeSnapshotRef/namespace"), text(content, "/spec/volumeSnapshotRef/name")) else { return false };
        let found = self.snapshot_stores.snapshots.get(&ObjectRef::new_with(name, snapshots()).within(ns));
        found.is_some_and(|s| s.metadata.uid.as_deref() == text(content, "/spec/volumeSnapshotRef/uid"))
    }

    async fn reclaim_content(&self, content: &DynamicObject, driver: &Driver) -> Result<()> {
        let name = content.metadata.name.as_deref().unwrap_or_default();
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &contents());
        if content.metadata.deletion_timestamp.is_none() {
            // Its snapshot is gone (the store may lag a new one: ask the API).
            let (ns, snapshot) = (text(content, "/spec/volumeSnapshotRef/namespace").unwrap_or_default(), text(content, "/spec/volumeSnapshotRef/name").unwrap_or_default());
            let live = Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, &snapshots()).get_opt(snapshot).await?;
            if live.is_some_and(|s| s.metadata.uid.as_deref() == text(content, "/spec/volumeSnapshotRef/uid")) {
                return Ok(());
            }
            return match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(e.into()),
            };
        }
        if text(content, "/spec/deletionPolicy") == Some("Delete") {
            if let Some(handle) = text(content, "/status/snapshotHandle") {
                driver.controller().delete_snapshot(csi::DeleteSnapshotRequest { snapshot_id: handle.to_string(), secrets: Default::default() }).await.map_err(rpc)?;
            }
        }
        let kept: Vec<&String> = content.metadata.finalizers.iter().flatten().filter(|f| *f != CONTENT_FINALIZER).collect();
        let patch = json!({"metadata": {"finalizers": kept, "resourceVersion": content.metadata.resource_version}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        Ok(())
    }

    /// What a claim's `dataSource` asks its new volume to start from: a
    /// VolumeSnapshot of the same namespace that is ready, or another
    /// claim of the same driver.
    pub(crate) async fn content_source(&self, claim: &k8s_openapi::api::core::v1::PersistentVolumeClaim, driver: &str) -> Result<Option<csi::VolumeContentSource>> {
        use csi::volume_content_source::{SnapshotSource, Type, VolumeSource};
        let spec = claim.spec.as_ref();
        let source = spec.and_then(|s| s.data_source_ref.as_ref().map(|r| (r.api_group.clone(), r.kind.clone(), r.name.clone())).or_else(|| s.data_source.as_ref().map(|r| (r.api_group.clone(), r.kind.clone(), r.name.clone()))));
        let Some((group, kind, name)) = source else { return Ok(None) };
        let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
        let source = match (group.as_deref().unwrap_or_default(), kind.as_str()) {
            (GROUP, "VolumeSnapshot") => {
                let snapshot = Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, &snapshots()).get(&name).await.with_context(|| format!("volumesnapshot {ns}/{name}"))?;
                anyhow::ensure!(snapshot.data.pointer("/status/readyToUse") == Some(&json!(true)), "volumesnapshot {ns}/{name} is not ready to use yet");
                let content = text(&snapshot, "/status/boundVolumeSnapshotContentName").context("the snapshot has no content")?;
                let content = Api::<DynamicObject>::all_with(self.client.clone(), &contents()).get(content).await?;
                anyhow::ensure!(text(&content, "/spec/driver") == Some(driver), "volumesnapshot {ns}/{name} was made by another driver");
                Type::Snapshot(SnapshotSource { snapshot_id: text(&content, "/status/snapshotHandle").context("the content has no snapshot handle")?.to_string() })
            }
            ("", "PersistentVolumeClaim") => {
                // From the stores: a node may get only the claims its own pods use.
                let source = self.claims.get(&ObjectRef::new(&name).within(ns)).with_context(|| format!("persistentvolumeclaim \"{name}\" not found"))?;
                let volume = source.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty()).with_context(|| format!("persistentvolumeclaim {ns}/{name} is not bound"))?;
                let volume = self.volumes.get(&ObjectRef::new(&volume)).with_context(|| format!("persistentvolume {volume} not found"))?;
                let csi = volume.spec.as_ref().and_then(|s| s.csi.as_ref()).filter(|c| c.driver == driver).with_context(|| format!("persistentvolumeclaim {ns}/{name} is not a volume of {driver}"))?;
                Type::Volume(VolumeSource { volume_id: csi.volume_handle.clone() })
            }
            (group, kind) => anyhow::bail!("dataSource {group}/{kind} is not a VolumeSnapshot or a PersistentVolumeClaim"),
        };
        Ok(Some(csi::VolumeContentSource { r#type: Some(source) }))
    }
}

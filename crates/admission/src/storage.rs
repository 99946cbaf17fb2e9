//! The storage admission plugins: a claim's default class, the in-use
//! protection finalizers, and upstream's PersistentVolumeClaimResize.

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::{Cluster, Operation, Plugin, Rejection, Request};

/// upstream's StorageObjectInUseProtection: new claims and volumes carry
/// the finalizers that keep them while in use (the storage-protection
/// controllers remove them once they are not).
pub struct StorageObjectInUseProtection;

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

#[async_trait]
impl Plugin for StorageObjectInUseProtection {
    fn name(&self) -> &'static str {
        "StorageObjectInUseProtection"
    }

    async fn mutate(&self, req: &Request<'_>, obj: &mut Value, _cluster: &dyn Cluster) -> Result<(), Rejection> {
        let finalizer = match () {
            _ if req.operation != Operation::Create => return Ok(()),
            _ if req.is("", "persistentvolumeclaims") => PVC_PROTECTION,
            _ if req.is("", "persistentvolumes") => PV_PROTECTION,
            _ => return Ok(()),
        };
        let finalizers = obj["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
        if !finalizers.iter().any(|f| f == finalizer) {
            let mut all = finalizers;
            all.push(Value::from(finalizer));
            obj["metadata"]["finalizers"] = Value::Array(all);
        }
        Ok(())
    }
}

/// A claim that names no StorageClass gets the default one.
pub struct DefaultStorageClass;

#[async_trait]
impl Plugin for DefaultStorageClass {
    fn name(&self) -> &'static str {
        "DefaultStorageClass"
    }

    async fn mutate(&self, req: &Request<'_>, claim: &mut Value, cluster: &dyn Cluster) -> Result<(), Rejection> {
        if req.operation != Operation::Create || !req.is("", "persistentvolumeclaims") || !claim["spec"]["storageClassName"].is_null() {
            return Ok(());
        }
        let classes = cluster.list("storage.k8s.io", "storageclasses", None).await.map_err(Rejection::internal)?;
        let default = |c: &&Value| c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true";
        // Several defaults: the newest, as upstream; of those made in the
        // same second, the first by name.
        let key = |c: &&Value| (c["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_string(), std::cmp::Reverse(c["metadata"]["name"].as_str().unwrap_or_default().to_string()));
        if let Some(class) = classes.iter().filter(default).max_by_key(key) {
            claim["spec"]["storageClassName"] = class["metadata"]["name"].clone();
        }
        Ok(())
    }
}

/// upstream's PersistentVolumeClaimResize: a claim may ask for more only
/// once bound, and only if its class allows expansion.
pub struct PersistentVolumeClaimResize;

#[async_trait]
impl Plugin for PersistentVolumeClaimResize {
    fn name(&self) -> &'static str {
        "PersistentVolumeClaimResize"
    }

    async fn validate(&self, req: &Request<'_>, claim: &Value, cluster: &dyn Cluster) -> Result<(), Rejection> {
        let Some(old) = req.old.filter(|_| req.operation == Operation::Update && req.is("", "persistentvolumeclaims")) else { return Ok(()) };
        let size = |c: &Value| c["spec"]["resources"]["requests"]["storage"].as_str().and_then(skiff_quantity::milli);
        if size(claim) <= size(old) {
            return Ok(());
        }
        if old["status"]["phase"] != "Bound" {
            return Err(Rejection::forbidden(req, "Only bound persistent volume claims can be expanded"));
        }
        let class = old["spec"]["storageClassName"].as_str().unwrap_or_default();
        let class = if class.is_empty() { None } else { cluster.get("storage.k8s.io", "storageclasses", None, class).await.map_err(Rejection::internal)? };
        if class.is_none_or(|c| c["allowVolumeExpansion"] != json!(true)) {
            return Err(Rejection::forbidden(req, "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"));
        }
        Ok(())
    }
}

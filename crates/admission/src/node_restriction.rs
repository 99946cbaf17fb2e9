//! NodeRestriction: a kubelet (`system:node:<name>` in `system:nodes`) may
//! change only its own Node and Lease, only mirror pods bound to itself,
//! and only the status of pods bound to itself, in upstream's words. With
//! the Node authorizer this confines a node to what its own pods need.

use async_trait::async_trait;
use serde_json::Value;

use crate::{Cluster, Operation, Plugin, Rejection, Request};

pub struct NodeRestriction;

const MIRROR: &str = "kubernetes.io/config.mirror";

/// A PersistentVolume's source fields.
const VOLUME_SOURCES: &[&str] = &[
    "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi", "fc", "flexVolume", "flocker", "gcePersistentDisk", "glusterfs", "hostPath", "iscsi",
    "local", "nfs", "photonPersistentDisk", "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos", "vsphereVolume",
];

fn node_of<'a>(req: &Request<'a>) -> Option<&'a str> {
    let name = req.user.name.strip_prefix("system:node:")?;
    req.user.groups.iter().any(|g| g == "system:nodes").then_some(name)
}

#[async_trait]
impl Plugin for NodeRestriction {
    fn name(&self) -> &'static str {
        "NodeRestriction"
    }

    async fn validate(&self, req: &Request<'_>, obj: &Value, cluster: &dyn Cluster) -> Result<(), Rejection> {
        let Some(node) = node_of(req) else { return Ok(()) };
        let refuse = |why: String| Err(Rejection::forbidden(req, why));
        match (req.group, req.resource, req.subresource, req.operation) {
            ("", "nodes", _, Operation::Connect) => Ok(()),
            ("", "nodes", _, _) => {
                let name = if req.name.is_empty() { obj["metadata"]["name"].as_str().unwrap_or_default() } else { req.name };
                if name != node {
                    return refuse(format!("node {node:?} is not allowed to modify node {name:?}"));
                }
                let labels = obj["metadata"]["labels"].as_object().cloned().unwrap_or_default();
                let old_labels = req.old.and_then(|o| o["metadata"]["labels"].as_object().cloned()).unwrap_or_default();
                let mut changed: Vec<&String> = labels.keys().chain(old_labels.keys()).filter(|k| k.starts_with("node-restriction.kubernetes.io/") && labels.get(*k) != old_labels.get(*k)).collect();
                changed.dedup();
                if !changed.is_empty() {
                    let list: Vec<&str> = changed.iter().map(|s| s.as_str()).collect();
                    return refuse(format!("is not allowed to modify labels: {}", list.join(", ")));
                }
                Ok(())
            }
            ("", "pods", "", Operation::Create) => {
                if obj["metadata"]["annotations"][MIRROR].is_null() {
                    return refuse(format!("pod does not have {MIRROR:?} annotation, node {node:?} can only create mirror pods"));
                }
                if obj["spec"]["nodeName"] != node {
                    return refuse(format!("node {node:?} can only create pods with spec.nodeName set to itself"));
                }
                Ok(())
            }
            ("", "pods", sub, operation) if matches!(operation, Operation::Delete | Operation::Update) || sub == "eviction" => {
                let pod = match req.old {
                    Some(old) => Some(old.clone()),
                    None => cluster.get("", "pods", Some(req.namespace), req.name).await.map_err(Rejection::internal)?.map(|p| Value::clone(&p)),
                };
                let Some(pod) = pod else { return Ok(()) };
                if pod["spec"]["nodeName"] == node {
                    return Ok(());
                }
                let what = match (sub, operation) {
                    ("status", _) => "update pod status for",
                    ("eviction", _) => "evict",
                    (_, Operation::Delete) => "delete",
                    _ => "update",
                };
                refuse(format!("node {node:?} can only {what} pods with spec.nodeName set to itself"))
            }
            ("storage.k8s.io", "csinodes", _, _) => {
                let name = if req.name.is_empty() { obj["metadata"]["name"].as_str().unwrap_or_default() } else { req.name };
                if name != node {
                    return refuse(format!("node {node:?} is not allowed to modify CSINode {name:?}"));
                }
                Ok(())
            }
            // Skiff's node-deployment provisioner: only CSI volumes of the
            // drivers this node registered, made or deleted by it.
            ("", "persistentvolumes", "", Operation::Update) => {
                // The capacity an expansion reached, and nothing else.
                let (mut new, mut old) = (obj.clone(), req.old.cloned().unwrap_or(Value::Null));
                for v in [&mut new, &mut old] {
                    v["metadata"] = Value::Null;
                    v["spec"]["capacity"] = Value::Null;
                    v["status"] = Value::Null;
                }
                if new != old || !csi_volume_of_node(obj, node, cluster).await? {
                    return refuse(format!("node {node:?} can only change the capacity of CSI persistentvolumes of drivers registered on it"));
                }
                Ok(())
            }
            ("", "persistentvolumes", "", Operation::Create | Operation::Delete) => {
                let volume = match req.operation {
                    Operation::Delete => match cluster.get("", "persistentvolumes", None, req.name).await.map_err(Rejection::internal)? {
                        Some(old) => Value::clone(&old),
                        None => return Ok(()),
                    },
                    _ => obj.clone(),
                };
                if !csi_volume_of_node(&volume, node, cluster).await? {
                    return refuse(format!("node {node:?} can only create or delete CSI persistentvolumes of drivers registered on it"));
                }
                Ok(())
            }
            ("snapshot.storage.k8s.io", "volumesnapshotcontents", _, _) => {
                let content = match (req.operation, req.old) {
                    (_, Some(old)) => old.clone(),
                    (Operation::Delete, None) => match cluster.get("snapshot.storage.k8s.io", "volumesnapshotcontents", None, req.name).await.map_err(Rejection::internal)? {
                        Some(old) => Value::clone(&old),
                        None => return Ok(()),
                    },
                    _ => obj.clone(),
                };
                let driver = content["spec"]["driver"].as_str().unwrap_or_default();
                if !driver_of_node(driver, node, cluster).await? {
                    return refuse(format!("node {node:?} can only change volumesnapshotcontents of drivers registered on it"));
                }
                Ok(())
            }
            ("storage.k8s.io", "csistoragecapacities", _, _) => {
                let mine = format!("external-provisioner-{node}");
                let labelled = |o: &Value| o["metadata"]["labels"]["csi.storage.k8s.io/managed-by"] == mine.as_str();
                let old = match (req.operation, req.old) {
                    (_, Some(old)) => Some(old.clone()),
                    (Operation::Delete, None) => cluster.get("storage.k8s.io", "csistoragecapacities", Some(req.namespace), req.name).await.map_err(Rejection::internal)?.map(|o| Value::clone(&o)),
                    _ => None,
                };
                let new_ok = req.operation == Operation::Delete || labelled(obj);
                if !new_ok || old.is_some_and(|o| !labelled(&o)) {
                    return refuse(format!("node {node:?} can only change csistoragecapacities labelled csi.storage.k8s.io/managed-by={mine}"));
                }
                Ok(())
            }
            ("storage.k8s.io", "volumeattachments", _, _) => {
                let attached_to = req.old.map(|o| &o["spec"]["nodeName"]).unwrap_or(&obj["spec"]["nodeName"]);
                if attached_to != node {
                    return refuse(format!("node {node:?} can only change volumeattachments to itself"));
                }
                Ok(())
            }
            ("coordination.k8s.io", "leases", _, _) => {
                let name = if req.name.is_empty() { obj["metadata"]["name"].as_str().unwrap_or_default() } else { req.name };
                if req.namespace != "kube-node-lease" || name != node {
                    return refuse("can only access node lease with the same name as the requesting node".into());
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Whether a PersistentVolume is a CSI volume (and nothing else) of a
/// driver the node registered in its CSINode.
async fn csi_volume_of_node(volume: &Value, node: &str, cluster: &dyn Cluster) -> Result<bool, Rejection> {
    let driver = volume["spec"]["csi"]["driver"].as_str().unwrap_or_default();
    let sources = volume["spec"].as_object().map(|s| s.keys().filter(|k| VOLUME_SOURCES.contains(&k.as_str())).count()).unwrap_or(0);
    Ok(sources == 1 && driver_of_node(driver, node, cluster).await?)
}

/// Whether the node registered the CSI driver in its CSINode.
async fn driver_of_node(driver: &str, node: &str, cluster: &dyn Cluster) -> Result<bool, Rejection> {
    let csinode = cluster.get("storage.k8s.io", "csinodes", None, node).await.map_err(Rejection::internal)?;
    Ok(!driver.is_empty() && csinode.is_some_and(|c| c["spec"]["drivers"].as_array().into_iter().flatten().any(|d| d["name"] == driver)))
}

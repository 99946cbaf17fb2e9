//! Every pod runs as a ServiceAccount that exists (`default` unless it
//! names one), and unless automounting is off gets a projected volume with
//! a token for it, the cluster CA and its namespace, mounted where client
//! libraries look (`/var/run/secrets/kubernetes.io/serviceaccount`).

use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use serde_json::{json, Value};

use crate::pods::containers_mut;
use crate::{Cluster, Operation, Plugin, Rejection, Request};

const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub struct ServiceAccount;

#[async_trait]
impl Plugin for ServiceAccount {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    async fn mutate(&self, req: &Request<'_>, pod: &mut Value, cluster: &dyn Cluster) -> Result<(), Rejection> {
        if req.operation != Operation::Create || !req.is("", "pods") || !pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_null() {
            return Ok(());
        }
        let spec = &mut pod["spec"];
        let name = spec["serviceAccountName"].as_str().or(spec["serviceAccount"].as_str()).filter(|n| !n.is_empty()).unwrap_or("default").to_string();
        spec["serviceAccountName"] = json!(name);
        let account = find(cluster, req.namespace, &name).await?;
        let Some(account) = account else {
            let why = format!("error looking up service account {}/{name}: serviceaccount {name:?} not found", req.namespace);
            return Err(Rejection::forbidden(req, why));
        };
        let automount = spec["automountServiceAccountToken"].as_bool().or(account["automountServiceAccountToken"].as_bool()).unwrap_or(true);
        let mounted = super::pods::containers(spec).any(|c| c["volumeMounts"].as_array().into_iter().flatten().any(|m| m["mountPath"] == MOUNT_PATH));
        if !automount || mounted {
            return Ok(());
        }
        let suffix: String = (0..5).map(|_| b"bcdfghjklmnpqrstvwxz2456789"[rand::rng().random_range(0..27)] as char).collect();
        let volume = format!("kube-api-access-{suffix}");
        let projected = json!({
            "name": volume,
            "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]},
        });
        match spec["volumes"].as_array_mut() {
            Some(volumes) => volumes.push(projected),
            None => spec["volumes"] = json!([projected]),
        }
        let mount = json!({"name": volume, "readOnly": true, "mountPath": MOUNT_PATH});
        for c in containers_mut(spec) {
            match c["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount.clone()),
                None => c["volumeMounts"] = json!([mount]),
            }
        }
        Ok(())
    }
}

/// The account, waiting briefly for `default`: the controller manager
/// creates it moments after its namespace (upstream's plugin also retries
/// a live lookup before refusing).
async fn find(cluster: &dyn Cluster, ns: &str, name: &str) -> Result<Option<std::sync::Arc<Value>>, Rejection> {
    let attempts = if name == "default" { 40 } else { 1 };
    for attempt in 0..attempts {
        if let Some(account) = cluster.get("", "serviceaccounts", Some(ns), name).await.map_err(Rejection::internal)? {
            return Ok(Some(account));
        }
        if attempt + 1 < attempts {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(None)
}

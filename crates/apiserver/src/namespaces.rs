//! Namespace deletion: a deleted namespace is marked Terminating, its
//! contents are deleted, then its `kubernetes` finalizer is removed and the
//! namespace goes. Upstream's namespace controller does this; it runs here
//! until the controller manager lands.

use std::time::Duration;

use serde_json::json;
use skiff_api::resources::{all, find};
use skiff_api::Verbs;

use crate::registry::{DeleteOptions, ListQuery, Registry};

pub async fn finalize(registry: Registry, name: String) {
    let namespaces = find("", "v1", "namespaces").expect("namespaces are served");
    loop {
        match empty_namespace(&registry, &name).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(namespace = %name, "deleting namespace contents: {}", e.message),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let result = crate::subresources::finalize(&registry, namespaces, &name, &json!({"spec": {"finalizers": []}}), false).await;
    if let Err(e) = result {
        if e.code != axum::http::StatusCode::NOT_FOUND {
            tracing::warn!(namespace = %name, "finalizing namespace: {}", e.message);
        }
    }
}

/// Deletes what is left in the namespace; true once nothing is.
async fn empty_namespace(registry: &Registry, ns: &str) -> Result<bool, crate::status::ApiError> {
    let mut empty = true;
    // Each object's own grace: a pod on a node stays until its kubelet has
    // stopped its containers, and the namespace waits for it, as upstream.
    let opts = DeleteOptions {
        propagation: None,
        grace_seconds: None,
        uid: None,
        resource_version: None,
        dry_run: false,
    };
    for def in all().into_iter().filter(|d| d.namespaced && d.verbs == Verbs::All && d.is_storage_version()) {
        for obj in &registry.list_objects(def, Some(ns), &ListQuery::default()).await? {
            empty = false;
            let name = crate::registry::name_of(obj);
            if let Err(e) = registry.delete(def, Some(ns), name, &opts).await {
                if e.code != axum::http::StatusCode::NOT_FOUND {
                    return Err(e);
                }
            }
        }
    }
    Ok(empty)
}

/// Finishes deleting namespaces left Terminating by an earlier run.
pub async fn resume(registry: Registry) {
    let namespaces = find("", "v1", "namespaces").expect("namespaces are served");
    match registry.list_objects(namespaces, None, &ListQuery::default()).await {
        Ok(listed) => {
            for ns in listed {
                if ns.pointer("/metadata/deletionTimestamp").is_some() {
                    tokio::spawn(finalize(registry.clone(), crate::registry::name_of(&ns).to_string()));
                }
            }
        }
        Err(e) => tracing::warn!("listing namespaces to finish deleting: {}", e.message),
    }
}

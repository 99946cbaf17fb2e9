//! CustomResourceDefinitions, as upstream's apiextensions server handles
//! them: the resources they define are served as soon as they are written
//! (`skiff_api::resources::set_custom`), their status says so (names
//! accepted, established), and deleting one first deletes every object of
//! its kind (the `customresourcecleanup` finalizer).

use futures::StreamExt;
use serde_json::{json, Value};
use skiff_api::resources::{find, set_custom};
use skiff_api::ResourceDef;

use crate::registry::{name_of, now, ListQuery, Registry};

pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn crds() -> &'static ResourceDef {
    find("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("CRDs are served")
}

/// Brings what is served in line with the stored CRDs. Runs at start, after
/// every write to a CRD through this server, and on every change another
/// server makes (`follow`).
pub async fn sync(registry: &Registry) {
    let listed = match registry.list_objects(crds(), None, &ListQuery::default()).await {
        Ok(listed) => listed,
        Err(e) => {
            tracing::warn!("listing CustomResourceDefinitions: {}", e.message);
            return;
        }
    };
    let (terminating, active): (Vec<Value>, Vec<Value>) = listed.into_iter().partition(|c| c.pointer("/metadata/deletionTimestamp").is_some());
    set_custom(&active);
    for def in skiff_api::resources::all().into_iter().filter(|d| d.custom.is_some()) {
        registry.store.cache(&def.key_prefix());
    }
    for crd in &active {
        if let Err(e) = establish(registry, crd).await {
            tracing::warn!(crd = name_of(crd), "establishing: {}", e.message);
        }
    }
    for crd in &terminating {
        if let Err(e) = clean_up(registry, crd).await {
            tracing::warn!(crd = name_of(crd), "deleting its objects: {}", e.message);
        }
    }
}

/// Re-syncs whenever the stored CRDs change, whoever changed them.
pub async fn follow(registry: Registry) {
    loop {
        let Ok(from) = registry.store.current_revision().await else {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        };
        sync(&registry).await;
        if let Ok(mut watch) = registry.store.watch(&crds().key_prefix(), from).await {
            while let Some(Ok(batch)) = watch.next().await {
                if !batch.events.is_empty() {
                    sync(&registry).await;
                }
            }
        }
        // The watch ended (compaction, a store outage): start over, unhurried.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The status upstream's controllers give a CRD whose names are free.
fn established_status(crd: &Value) -> Value {
    let condition = |kind: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": "True", "lastTransitionTime": now(), "reason": reason, "message": message})
    };
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == true)
        .map(|v| v["name"].clone())
        .collect();
    json!({
        "acceptedNames": crd["spec"]["names"],
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    })
}

async fn establish(registry: &Registry, crd: &Value) -> crate::status::ApiResult<()> {
    let established = crd.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|c| c.iter().any(|c| c["type"] == "Established" && c["status"] == "True"));
    if established && crd.pointer("/status/acceptedNames") == crd.pointer("/spec/names") {
        return Ok(());
    }
    registry
        .guaranteed_update(crds(), None, name_of(crd), None, false, |mut crd| {
            crd["status"] = established_status(&crd);
            Ok(crd)
        })
        .await
        .map(|_| ())
}

/// Deletes every object of a terminating CRD's kind, then lets it go.
async fn clean_up(registry: &Registry, crd: &Value) -> crate::status::ApiResult<()> {
    let has_finalizer = crd.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| f.iter().any(|f| f == CLEANUP_FINALIZER));
    if !has_finalizer {
        return Ok(());
    }
    let group = crd.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
    let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default();
    let prefix = format!("/registry/{group}/{plural}/");
    let page = registry.store.list(&prefix, &Default::default()).await.map_err(|e| crate::status::ApiError::internal(e.to_string()))?;
    for kv in page.items {
        // The objects go now, without their own finalizers, as upstream's cleanup does.
        let _ = registry.store.delete(&kv.key, None).await;
    }
    registry
        .guaranteed_update(crds(), None, name_of(crd), None, false, |mut crd| {
            if let Some(f) = crd.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
                f.retain(|f| f != CLEANUP_FINALIZER);
            }
            Ok(crd)
        })
        .await
        .map(|_| ())
}

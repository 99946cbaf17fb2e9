//! ControllerRevisions, as DaemonSets and StatefulSets keep their history
//! upstream: one revision per pod template, holding the patch that puts
//! the template back (`kubectl rollout undo` applies it), numbered in the
//! order the templates were last current.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use serde_json::{json, Value};

use crate::common::{controlled_by, hash_of, owner_reference};

/// The label naming a pod's revision.
pub const REVISION_HASH: &str = "controller-revision-hash";

/// What a revision stores: the patch that restores its template.
fn data(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).expect("JSON serializes");
    template["$patch"] = json!("replace");
    json!({"spec": {"template": template}})
}

/// The revisions `owner` controls, oldest number first.
pub fn owned(revisions: &Store<ControllerRevision>, owner: &ObjectMeta) -> Vec<Arc<ControllerRevision>> {
    let mut out = controlled_by(revisions, owner);
    out.sort_by_key(|r| r.revision);
    out
}

/// The revision for `template`: an existing one with the same data (made
/// the newest if an older template came back), or a new one.
pub async fn current(api: &Api<ControllerRevision>, owned: &[Arc<ControllerRevision>], owner: &ObjectMeta, api_version: &str, kind: &str, template: &PodTemplateSpec) -> Result<ControllerRevision, kube::Error> {
    let data = data(template);
    let newest = owned.iter().map(|r| r.revision).max().unwrap_or(0);
    if let Some(found) = owned.iter().find(|r| r.data.as_ref().map(|d| &d.0) == Some(&data)) {
        if found.revision == newest {
            return Ok((**found).clone());
        }
        let patch = json!({"revision": newest.saturating_add(1)});
        return api.patch(found.metadata.name.as_deref().unwrap_or_default(), &PatchParams::default(), &Patch::Merge(patch)).await;
    }
    let hash = hash_of(&data);
    let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(REVISION_HASH.into(), hash.clone());
    let revision = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", owner.name.as_deref().unwrap_or_default())),
            namespace: owner.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![owner_reference(owner, api_version, kind)]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision: newest.saturating_add(1),
    };
    match api.create(&PostParams::default(), &revision).await {
        // Made by an earlier sync the watch has not shown yet.
        Err(kube::Error::Api(e)) if e.code == 409 => api.get(revision.metadata.name.as_deref().unwrap_or_default()).await,
        other => other,
    }
}

/// The hash a revision's pods are labelled with.
pub fn hash(revision: &ControllerRevision) -> String {
    revision.metadata.labels.as_ref().and_then(|l| l.get(REVISION_HASH)).cloned().unwrap_or_default()
}

/// Deletes the oldest revisions beyond `limit`, except those named in
/// `live` (the current one, and any a pod still runs).
pub async fn prune(api: &Api<ControllerRevision>, owned: &[Arc<ControllerRevision>], limit: i32, live: &HashSet<String>) {
    let old: Vec<&Arc<ControllerRevision>> = owned.iter().filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or_default())).collect();
    for r in old.iter().take(old.len().saturating_sub(limit.max(0) as usize)) {
        let _ = api.delete(r.metadata.name.as_deref().unwrap_or_default(), &DeleteParams::background()).await;
    }
}

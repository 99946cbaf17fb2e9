//! What upstream puts in every namespace: the `default` ServiceAccount
//! (the ServiceAccount controller) and the `kube-root-ca.crt` ConfigMap
//! holding the cluster CA, for pods to trust the API server (the root CA
//! publisher). Each is put back if deleted; the ConfigMap's data and its
//! description annotation are also put back if changed, as upstream's.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use std::collections::BTreeMap;

use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;

use crate::common::Error;

const ROOT_CA: &str = "kube-root-ca.crt";
/// Upstream's annotation on the ConfigMap, word for word.
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. \
                           No other usage is guaranteed across distributions of Kubernetes clusters.";

struct Context {
    client: kube::Client,
    ca_pem: String,
}

pub async fn run(client: kube::Client, ca_pem: String) {
    let context = Arc::new(Context { client: client.clone(), ca_pem });
    let in_namespace = |ns: Option<String>| ns.map(|ns| ObjectRef::<Namespace>::new(&ns));
    let controller = Controller::new(Api::<Namespace>::all(client.clone()), watcher::Config::default())
        .watches(Api::<ServiceAccount>::all(client.clone()), watcher::Config::default().fields("metadata.name=default"), move |sa| in_namespace(sa.metadata.namespace))
        .watches(Api::<ConfigMap>::all(client), watcher::Config::default().fields(&format!("metadata.name={ROOT_CA}")), move |cm| in_namespace(cm.metadata.namespace));
    crate::common::run("namespace-defaults", controller, reconcile, context).await;
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let active = ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating") && ns.metadata.deletion_timestamp.is_none();
    if !active {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "default", "namespace": name}})).map_err(|e| Error(e.to_string()))?;
    ensure(&Api::namespaced(ctx.client.clone(), &name), &sa).await?;
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    match cms.get_opt(ROOT_CA).await? {
        None => {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": ROOT_CA, "namespace": name, "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                "data": {"ca.crt": ctx.ca_pem},
            }))
            .map_err(|e| Error(e.to_string()))?;
            ensure(&cms, &cm).await?;
        }
        Some(cm) => {
            if let Some(cm) = restored(&cm, &ctx.ca_pem) {
                // A conflict is retried; a ConfigMap deleted meanwhile
                // comes back through its delete event.
                match cms.replace(ROOT_CA, &PostParams::default(), &cm).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// The root CA ConfigMap as upstream's publisher leaves it, if `cm` is not
/// so already: its data exactly `ca.crt` (the cluster CA) and the
/// description annotation set; everything else kept.
fn restored(cm: &ConfigMap, ca_pem: &str) -> Option<ConfigMap> {
    let data = BTreeMap::from([("ca.crt".to_string(), ca_pem.to_string())]);
    let described = cm.metadata.annotations.as_ref().and_then(|a| a.get(DESCRIPTION_ANNOTATION)).is_some_and(|d| !d.is_empty());
    if cm.data.as_ref() == Some(&data) && described {
        return None;
    }
    let mut cm = cm.clone();
    cm.data = Some(data);
    cm.metadata.annotations.get_or_insert_with(BTreeMap::new).insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
    Some(cm)
}

/// Creates `object` unless it exists; a namespace being deleted meanwhile
/// refuses it (403), which is fine.
async fn ensure<K>(api: &Api<K>, object: &K) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[sig-auth] ServiceAccounts should guarantee kube-root-ca.crt exist
    /// in any namespace [Conformance]`'s third step: a changed ConfigMap is
    /// put back (data and annotation), other metadata kept; one as it
    /// should be is left alone.
    #[test]
    fn a_changed_root_ca_config_map_is_restored() {
        let changed: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": ROOT_CA, "namespace": "ns", "resourceVersion": "7", "labels": {"a": "b"}},
            "data": {"ca.crt": "", "extra": "x"},
        }))
        .unwrap();
        let fixed = restored(&changed, "PEM").expect("changed");
        assert_eq!(fixed.data, Some(BTreeMap::from([("ca.crt".to_string(), "PEM".to_string())])));
        assert_eq!(fixed.metadata.annotations.as_ref().and_then(|a| a.get(DESCRIPTION_ANNOTATION)).map(String::as_str), Some(DESCRIPTION));
        assert_eq!(fixed.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(fixed.metadata.labels, changed.metadata.labels);
        assert!(restored(&fixed, "PEM").is_none(), "as it should be: left alone");
        assert!(restored(&fixed, "OTHER").is_some(), "another CA: put back");
    }
}

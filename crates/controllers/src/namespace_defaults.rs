//! What upstream puts in every namespace: the `default` ServiceAccount
//! (the ServiceAccount controller) and the `kube-root-ca.crt` ConfigMap
//! holding the cluster CA, for pods to trust the API server (the root CA
//! publisher). Each is put back if deleted.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;

use crate::common::Error;

const ROOT_CA: &str = "kube-root-ca.crt";

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
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": ROOT_CA, "namespace": name}, "data": {"ca.crt": ctx.ca_pem}})).map_err(|e| Error(e.to_string()))?;
    ensure(&Api::namespaced(ctx.client.clone(), &name), &cm).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
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

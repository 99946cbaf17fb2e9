//! The TTL-after-finished controller, as upstream's: a finished Job with
//! `ttlSecondsAfterFinished` is deleted (its pods in the foreground with
//! it) that long after it finished.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use crate::common::Error;
use crate::job::finished_at;

pub async fn run(client: kube::Client) {
    Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .run(reconcile, |_, e, _| {
            tracing::debug!("ttl-after-finished: {e}");
            Action::requeue(Duration::from_secs(1))
        }, Arc::new(client))
        .for_each(|_| async {})
        .await;
}

async fn reconcile(job: Arc<Job>, client: Arc<kube::Client>) -> Result<Action, Error> {
    let ttl = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished);
    let (Some(ttl), Some(finished)) = (ttl, finished_at(&job)) else { return Ok(Action::await_change()) };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let expires = finished + chrono::Duration::seconds(ttl.into());
    let left = expires - chrono::Utc::now();
    if left > chrono::Duration::zero() {
        return Ok(Action::requeue(left.to_std().unwrap_or_default()));
    }
    let api: Api<Job> = Api::namespaced((*client).clone(), job.metadata.namespace.as_deref().unwrap_or_default());
    let params = DeleteParams { preconditions: Some(Preconditions { uid: job.metadata.uid.clone(), resource_version: job.metadata.resource_version.clone() }), ..DeleteParams::foreground() };
    match api.delete(job.metadata.name.as_deref().unwrap_or_default(), &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(Action::requeue(Duration::from_secs(1))),
        Err(e) => Err(e.into()),
    }
}

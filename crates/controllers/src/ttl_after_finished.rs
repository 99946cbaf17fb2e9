//! The TTL-after-finished controller, as upstream's: a finished Job with
//! `ttlSecondsAfterFinished` is deleted (its pods in the foreground with
//! it) that long after it finished.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use crate::common::{plus_seconds, requeue, Error};
use crate::job::finished_at;

pub async fn run(client: kube::Client) {
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default());
    crate::common::run("ttl-after-finished", controller, reconcile, Arc::new(client)).await;
}

/// When a finished Job with a TTL expires: None if it never does (not
/// finished, no TTL, being deleted), zero once it has.
pub fn left(job: &Job, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let ttl = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished)?;
    let finished = finished_at(job)?;
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    // Beyond what a time can hold: never.
    let expires = plus_seconds(finished, ttl.into())?;
    Some((expires - now).to_std().unwrap_or_default())
}

async fn reconcile(job: Arc<Job>, client: Arc<kube::Client>) -> Result<Action, Error> {
    let Some(left) = left(&job, chrono::Utc::now()) else { return Ok(Action::await_change()) };
    if !left.is_zero() {
        // A TTL of years is looked at again sooner (kube-runtime cannot wait that long).
        return Ok(requeue(left));
    }
    let api: Api<Job> = Api::namespaced((*client).clone(), job.metadata.namespace.as_deref().unwrap_or_default());
    let params = DeleteParams { preconditions: Some(Preconditions { uid: job.metadata.uid.clone(), resource_version: job.metadata.resource_version.clone() }), ..DeleteParams::foreground() };
    match api.delete(job.metadata.name.as_deref().unwrap_or_default(), &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(Action::requeue(Duration::from_secs(1))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TTL of i32::MAX seconds is 68 years: kube-runtime's scheduler
    /// panics on a wait past about two years, so it is looked at hourly.
    #[test]
    fn far_expiries_are_looked_at_again_sooner() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "spec": {"ttlSecondsAfterFinished": i32::MAX, "template": {}},
            "status": {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "9999-12-31T23:59:59Z"}]},
        }))
        .unwrap();
        let left = left(&job, chrono::Utc::now()).unwrap();
        assert!(left > Duration::from_secs(86400 * 365 * 60));
        assert_eq!(requeue(left), Action::requeue(Duration::from_secs(3600)));
    }
}

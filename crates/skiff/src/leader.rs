//! Leader election through a Lease, as upstream's scheduler and controller
//! manager do (`kube-system/kube-scheduler`, `kube-system/kube-controller-manager`;
//! 15 s lease, renewed every 2 s): of several servers sharing one store,
//! only the holder runs the component.
//! The kube crate has no leader election; this is the small Lease protocol
//! client-go's `leaderelection` implements, with optimistic concurrency on
//! the Lease's resourceVersion.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use serde_json::json;

const LEASE_SECONDS: i64 = 15;
const RETRY: Duration = Duration::from_secs(2);

/// Runs `component` while this process holds the Lease `namespace/name`,
/// stops it when leadership is lost, and competes again; forever.
pub async fn lead<F, Fut>(client: kube::Client, namespace: &str, name: &str, identity: String, component: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let elector = Elector::new(client, namespace, name, identity);
    loop {
        crate::process_metrics::leading(name, false);
        elector.acquire().await;
        crate::process_metrics::leading(name, true);
        tracing::info!(lease = name, identity = %elector.identity, "leading: started");
        let running = tokio::spawn(component());
        elector.hold().await;
        tracing::warn!(lease = name, "lost leadership: stopped");
        running.abort();
    }
}

struct Elector {
    leases: Api<Lease>,
    name: String,
    identity: String,
}

impl Elector {
    fn new(client: kube::Client, namespace: &str, name: &str, identity: String) -> Elector {
        Elector { leases: Api::namespaced(client, namespace), name: name.to_string(), identity }
    }

    /// Returns once this process holds the lease.
    async fn acquire(&self) {
        loop {
            match self.try_hold().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::debug!(lease = %self.name, "leader election: {e}"),
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Renews the lease until it is lost (another holder took it, or it
    /// could not be renewed within its duration); then returns.
    async fn hold(&self) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RETRY).await;
            match self.try_hold().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(lease = %self.name, "renewing leadership: {e}");
                    if last_renewed.elapsed() > Duration::from_secs(LEASE_SECONDS as u64) {
                        return;
                    }
                }
            }
        }
    }

    /// Takes or renews the lease if it is free, expired or ours.
    async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = chrono::Utc::now();
        let current = match self.leases.get_opt(&self.name).await? {
            Some(lease) => lease,
            None => {
                let lease: Lease = serde_json::from_value(json!({
                    "metadata": {"name": self.name},
                    "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": LEASE_SECONDS,
                             "acquireTime": MicroTime(now), "renewTime": MicroTime(now), "leaseTransitions": 0},
                }))
                .expect("a valid lease");
                return match self.leases.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                };
            }
        };
        let spec = current.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = spec.renew_time.as_ref().is_none_or(|t| {
            t.0 + chrono::Duration::seconds(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS as i32) as i64) < now
        });
        if !ours && !expired {
            return Ok(false);
        }
        let mut lease = current;
        let spec = lease.spec.get_or_insert_with(Default::default);
        if !ours {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.identity.clone());
            spec.lease_duration_seconds = Some(LEASE_SECONDS as i32);
        }
        spec.renew_time = Some(MicroTime(now));
        // The resourceVersion it was read at makes a concurrent taker fail.
        match self.leases.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

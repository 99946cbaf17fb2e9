//! The controller manager: workload controllers as API clients (the kube
//! crate's watchers, reflectors and controller runtime).

mod appsafe;
mod attachdetach;
mod certificates;
mod common;
mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod endpointslice;
mod endpointslice_mirroring;
mod ephemeral;
#[doc(hidden)]
pub mod fuzzing;
mod gc;
mod history;
mod hpa;
mod informers;
mod job;
pub mod metrics;
mod namespace_defaults;
mod clusterrole_aggregation;
mod node_ipam;
mod node_lifecycle;
mod persistentvolume;
mod podgc;
mod quota;
mod replicaset;
mod servicelb;
mod statefulset;
mod storage_protection;
mod ttl_after_finished;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController};
use kube::Api;

/// Upstream's controller manager flags that Skiff takes.
#[derive(Debug, Clone)]
pub struct Options {
    /// A node silent this long is Unknown (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// How long pods stay on a not-ready or unreachable node without a
    /// toleration of their own (`--default-…-toleration-seconds`).
    pub default_not_ready_toleration_seconds: i64,
    pub default_unreachable_toleration_seconds: i64,
    /// Node IPAM: pod CIDRs come from here (`--cluster-cidr`), each of
    /// this prefix length (`--node-cidr-mask-size`).
    pub cluster_cidr: Option<(std::net::Ipv4Addr, u8)>,
    pub node_cidr_mask_size: u8,
    /// Finished pods kept before the oldest are deleted
    /// (`--terminated-pod-gc-threshold`).
    pub terminated_pod_gc_threshold: usize,
    /// The cluster CA, published in every namespace as `kube-root-ca.crt`.
    pub root_ca_pem: String,
    /// The CA that signs approved CertificateSigningRequests, if this
    /// controller manager holds its key.
    pub signer: Option<skiff_auth::pki::Pki>,
    /// How often each HorizontalPodAutoscaler is evaluated.
    pub hpa_sync_period: Duration,
    /// LoadBalancer Services get the nodes' addresses (k3s's ServiceLB).
    pub service_lb: bool,
    /// AppSafe groups each workload, new groups in this mode unless their
    /// namespace says otherwise; None turns AppSafe off.
    pub appsafe_default_mode: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            node_monitor_grace_period: Duration::from_secs(40),
            default_not_ready_toleration_seconds: 300,
            default_unreachable_toleration_seconds: 300,
            cluster_cidr: None,
            node_cidr_mask_size: 24,
            terminated_pod_gc_threshold: 12500,
            root_ca_pem: String::new(),
            signer: None,
            hpa_sync_period: Duration::from_secs(15),
            service_lb: false,
            appsafe_default_mode: Some(skiff_api::appsafe::DISCOVER.into()),
        }
    }
}

/// Runs every controller until dropped (each runs as its own task, all
/// stopped with it; a controller that ends or panics is started again
/// after a back-off, as upstream's `wait.Until` with `HandleCrash`). Only
/// one controller manager may run per cluster: the caller elects it
/// (upstream's Lease `kube-system/kube-controller-manager`).
pub async fn run(client: kube::Client, options: Options) {
    // Every pod of the cluster, without what no controller reads.
    let pods = Arc::new(informers::Informer::<Pod>::start_trimmed(Api::all(client.clone()), skiff_scheduler::drop_unread));
    let nodes = Arc::new(informers::Informer::<Node>::start(Api::all(client.clone())));
    let revisions = Arc::new(informers::Informer::<ControllerRevision>::start(Api::all(client.clone())));
    // Claims and volumes, for the binder and the storage protection.
    let claims = Arc::new(informers::Informer::<PersistentVolumeClaim>::start(Api::all(client.clone())));
    let volumes = Arc::new(informers::Informer::<PersistentVolume>::start(Api::all(client.clone())));
    let mut controllers = tokio::task::JoinSet::new();
    let (c, p) = (client.clone(), pods.clone());
    controllers.spawn(supervise("replicaset", move || replicaset::run::<ReplicaSet>(c.clone(), &p)));
    let (c, p) = (client.clone(), pods.clone());
    controllers.spawn(supervise("replicationcontroller", move || replicaset::run::<ReplicationController>(c.clone(), &p)));
    let c = client.clone();
    controllers.spawn(supervise("deployment", move || deployment::run(c.clone())));
    let (c, p) = (client.clone(), pods.clone());
    controllers.spawn(supervise("job", move || job::run(c.clone(), &p)));
    let c = client.clone();
    controllers.spawn(supervise("ttl-after-finished", move || ttl_after_finished::run(c.clone())));
    let c = client.clone();
    controllers.spawn(supervise("cronjob", move || cronjob::run(c.clone())));
    let (c, p, n, r) = (client.clone(), pods.clone(), nodes.clone(), revisions.clone());
    controllers.spawn(supervise("daemonset", move || daemonset::run(c.clone(), &p, &n, &r)));
    let (c, p, r) = (client.clone(), pods.clone(), revisions.clone());
    controllers.spawn(supervise("statefulset", move || statefulset::run(c.clone(), &p, &r)));
    let (c, p) = (client.clone(), pods.clone());
    controllers.spawn(supervise("endpoints", move || endpoints::run(c.clone(), &p)));
    let c = client.clone();
    controllers.spawn(supervise("endpoints-cleanup", move || endpoints::remove_with_services(c.clone())));
    let (c, p) = (client.clone(), pods.clone());
    controllers.spawn(supervise("endpointslice", move || endpointslice::run(c.clone(), &p)));
    let c = client.clone();
    controllers.spawn(supervise("endpointslicemirroring", move || endpointslice_mirroring::run(c.clone())));
    let (c, p) = (client.clone(), pods.clone());
    controllers.spawn(supervise("disruption", move || disruption::run(c.clone(), &p)));
    let (c, p) = (client.clone(), pods.clone());
    controllers.spawn(supervise("resourcequota", move || quota::run(c.clone(), &p)));
    let (c, pvc, pv) = (client.clone(), claims.clone(), volumes.clone());
    controllers.spawn(supervise("persistentvolume-binder", move || persistentvolume::run(c.clone(), &pvc, &pv)));
    let (c, p, pvc, pv) = (client.clone(), pods.clone(), claims.clone(), volumes.clone());
    controllers.spawn(supervise("storage-protection", move || storage_protection::run(c.clone(), &p, &pvc, &pv)));
    let (c, p, pvc, pv) = (client.clone(), pods.clone(), claims.clone(), volumes.clone());
    controllers.spawn(supervise("attachdetach", move || attachdetach::run(c.clone(), &p, &pvc, &pv)));
    let (c, p) = (client.clone(), pods.clone());
    controllers.spawn(supervise("ephemeral-volume", move || ephemeral::run(c.clone(), &p)));
    let (c, p, n, threshold) = (client.clone(), pods.clone(), nodes.clone(), options.terminated_pod_gc_threshold);
    controllers.spawn(supervise("pod-garbage-collector", move || podgc::run(c.clone(), p.store(), n.store(), threshold)));
    let (c, ca) = (client.clone(), options.root_ca_pem.clone());
    controllers.spawn(supervise("namespace-defaults", move || namespace_defaults::run(c.clone(), ca.clone())));
    let c = client.clone();
    controllers.spawn(supervise("garbage-collector", move || gc::run(c.clone())));
    let c = client.clone();
    controllers.spawn(supervise("clusterrole-aggregation", move || clusterrole_aggregation::run(c.clone())));
    let (c, signer) = (client.clone(), options.signer.clone());
    controllers.spawn(supervise("certificatesigningrequest", move || certificates::run(c.clone(), signer.clone())));
    let (c, period) = (client.clone(), options.hpa_sync_period);
    controllers.spawn(supervise("horizontalpodautoscaler", move || hpa::run(c.clone(), period)));
    let (c, o) = (client.clone(), options.clone());
    controllers.spawn(supervise("node-lifecycle", move || node_lifecycle::run(c.clone(), o.clone())));
    if options.service_lb {
        let c = client.clone();
        controllers.spawn(supervise("servicelb", move || servicelb::run(c.clone())));
    }
    if let Some(mode) = options.appsafe_default_mode.clone() {
        let (c, p) = (client.clone(), pods.clone());
        controllers.spawn(supervise("appsafe", move || {
            let (c, p, mode) = (c.clone(), p.clone(), mode.clone());
            async move { appsafe::run(c, &p, mode).await }
        }));
    }
    if let Some(cluster) = options.cluster_cidr {
        let (c, mask) = (client.clone(), options.node_cidr_mask_size);
        controllers.spawn(supervise("node-ipam", move || node_ipam::run(c.clone(), cluster, mask)));
    }
    // The tasks never end; this keeps them (and the informers) alive.
    while let Some(done) = controllers.join_next().await {
        if let Err(e) = done {
            tracing::error!("a controller's supervisor stopped: {e}");
        }
    }
}

/// Runs a controller for ever: started again after a back-off whenever
/// it ends or panics, each time logged and counted
/// (`controller_restarts_total{controller=name}`).
fn supervise<F, Fut>(name: &'static str, start: F) -> impl Future<Output = ()> + Send
where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = ()> + Send,
{
    metrics::starting(name);
    skiff_scheduler::crash::supervise(name, start, move || metrics::restarted(name))
}

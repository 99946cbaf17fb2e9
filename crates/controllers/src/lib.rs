//! The controller manager: workload controllers as API clients (the kube
//! crate's watchers, reflectors and controller runtime).

mod certificates;
mod common;
mod cronjob;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod endpointslice;
mod gc;
mod history;
mod hpa;
mod informers;
mod job;
mod namespace_defaults;
mod clusterrole_aggregation;
mod node_ipam;
mod node_lifecycle;
mod persistentvolume;
mod podgc;
mod quota;
mod replicaset;
mod statefulset;
mod ttl_after_finished;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod, ReplicationController};
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
        }
    }
}

/// Runs every controller until dropped (each runs as its own task, all
/// stopped with it). Only one controller manager may run per cluster: the
/// caller elects it (upstream's Lease `kube-system/kube-controller-manager`).
pub async fn run(client: kube::Client, options: Options) {
    // Every pod of the cluster, without what no controller reads.
    let pods = informers::Informer::<Pod>::start_trimmed(Api::all(client.clone()), skiff_scheduler::drop_unread);
    let nodes = informers::Informer::<Node>::start(Api::all(client.clone()));
    let revisions = informers::Informer::<ControllerRevision>::start(Api::all(client.clone()));
    let mut controllers = tokio::task::JoinSet::new();
    controllers.spawn(replicaset::run::<ReplicaSet>(client.clone(), &pods));
    controllers.spawn(replicaset::run::<ReplicationController>(client.clone(), &pods));
    controllers.spawn(deployment::run(client.clone()));
    controllers.spawn(job::run(client.clone(), &pods));
    controllers.spawn(ttl_after_finished::run(client.clone()));
    controllers.spawn(cronjob::run(client.clone()));
    controllers.spawn(daemonset::run(client.clone(), &pods, &nodes, &revisions));
    controllers.spawn(statefulset::run(client.clone(), &pods, &revisions));
    controllers.spawn(endpoints::run(client.clone(), &pods));
    controllers.spawn(endpoints::remove_with_services(client.clone()));
    controllers.spawn(endpointslice::run(client.clone(), &pods));
    controllers.spawn(disruption::run(client.clone(), &pods));
    controllers.spawn(quota::run(client.clone(), &pods));
    controllers.spawn(persistentvolume::run(client.clone()));
    controllers.spawn(podgc::run(client.clone(), pods.store(), nodes.store(), options.terminated_pod_gc_threshold));
    controllers.spawn(namespace_defaults::run(client.clone(), options.root_ca_pem.clone()));
    controllers.spawn(gc::run(client.clone()));
    controllers.spawn(clusterrole_aggregation::run(client.clone()));
    controllers.spawn(certificates::run(client.clone(), options.signer.clone()));
    controllers.spawn(hpa::run(client.clone(), options.hpa_sync_period));
    controllers.spawn(node_lifecycle::run(client.clone(), options.clone()));
    if let Some(cluster) = options.cluster_cidr {
        controllers.spawn(node_ipam::run(client.clone(), cluster, options.node_cidr_mask_size));
    }
    while let Some(done) = controllers.join_next().await {
        if let Err(e) = done {
            tracing::error!("a controller stopped: {e}");
        }
    }
}

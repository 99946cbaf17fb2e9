//! Node registration and heartbeats.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::Options;

/// Set to `stopped` on a node to stop its heartbeats.
pub const HEARTBEAT_ANNOTATION: &str = "sim.skiff.io/heartbeat";
/// Marks the nodes this simulator runs.
pub const SIMULATED_LABEL: &str = "node.skiff.io/simulated";
/// As upstream's kubelet: a Lease lasts 40 s and is renewed every 10 s.
const LEASE_SECONDS: i32 = 40;
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// Requests in flight at once while registering or renewing.
const PARALLEL: usize = 32;

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn micro_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn node(options: &Options, name: &str) -> Result<Node> {
    let now = now();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let resources = json!({"cpu": options.cpu, "memory": options.memory, "pods": options.pods, "ephemeral-storage": "1Ti"});
    let mut node: Node = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                SIMULATED_LABEL: "true",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "Hostname", "address": name}],
            // No kubelet answers for a simulated node: port 0 says so, and
            // keeps the API server from reading its metrics or logs.
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": "simulated", "osImage": "simulated", "containerRuntimeVersion": "sim://1",
                "kubeletVersion": "v1.32.0-skiff-sim", "kubeProxyVersion": "",
                "operatingSystem": "linux", "architecture": "amd64",
            },
        },
    }))?;
    if let Some(i) = options.index_of(name).filter(|_| options.zones > 0) {
        node.metadata.labels.get_or_insert_with(Default::default).insert("topology.kubernetes.io/zone".into(), format!("zone-{}", i % options.zones));
    }
    Ok(node)
}

fn lease(name: &str) -> Result<Lease> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": micro_now()},
    }))?)
}

/// Creates every node and its Lease; nodes left from an earlier run are
/// marked Ready again, as a restarted kubelet does.
pub(crate) async fn register(client: &kube::Client, options: &Options) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    stream::iter(0..options.nodes)
        .map(|i| {
            let (nodes, leases) = (nodes.clone(), leases.clone());
            async move {
                let name = options.node_name(i);
                let node = node(options, &name)?;
                match nodes.create(&PostParams::default(), &node).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        let status = json!({"status": node.status});
                        nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await?;
                    }
                    Err(e) => return Err(e).with_context(|| format!("registering node {name}")),
                }
                renew(&leases, &name).await
            }
        })
        .buffer_unordered(PARALLEL)
        .try_collect::<()>()
        .await
}

async fn renew(leases: &Api<Lease>, name: &str) -> Result<()> {
    let patch = json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": micro_now()}});
    match leases.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            leases.create(&PostParams::default(), &lease(name)?).await?;
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("renewing the lease of {name}")),
    }
}

/// Renews each running node's Lease every 10 s. A node whose heartbeat is
/// stopped is skipped; when it resumes and its Ready condition was changed
/// meanwhile (by the node lifecycle controller), it is posted Ready again.
pub(crate) async fn heartbeat(client: kube::Client, options: Arc<Options>) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let mut ticks = tokio::time::interval(RENEW_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let listed = match nodes.list(&ListParams::default().labels(&format!("{SIMULATED_LABEL}=true"))).await {
            Ok(l) => l.items,
            Err(e) => {
                tracing::warn!("listing simulated nodes: {e}");
                continue;
            }
        };
        let ours: BTreeMap<String, Node> = listed
            .into_iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, n)))
            .filter(|(name, _)| options.index_of(name).is_some())
            .collect();
        stream::iter(ours)
            .for_each_concurrent(PARALLEL, |(name, node)| {
                let (nodes, leases, options) = (nodes.clone(), leases.clone(), options.clone());
                async move {
                    let stopped = node.metadata.annotations.as_ref().and_then(|a| a.get(HEARTBEAT_ANNOTATION)).is_some_and(|v| v == "stopped");
                    if stopped {
                        return;
                    }
                    if let Err(e) = renew(&leases, &name).await {
                        tracing::warn!("{e:#}");
                    }
                    let ready = node.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready")).is_some_and(|c| c.status == "True");
                    if !ready {
                        if let Ok(fresh) = self::node(&options, &name) {
                            let status = json!({"status": {"conditions": fresh.status.and_then(|s| s.conditions)}});
                            if let Err(e) = nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await {
                                tracing::warn!("posting {name} Ready: {e}");
                            }
                        }
                    }
                }
            })
            .await;
    }
}

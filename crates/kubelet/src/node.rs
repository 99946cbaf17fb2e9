//! This node in the API: its Node object (capacity read from the host,
//! conditions from the eviction signals) and its Lease.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::Kubelet;

/// As upstream: a Lease lasts 40 s and is renewed every 10 s.
const LEASE_SECONDS: i32 = 40;
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often the Node's status is posted when nothing urgent changed.
const STATUS_EVERY: Duration = Duration::from_secs(60);

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Readings of the host.
struct Host {
    cpus: usize,
    memory_total: u64,
    disk_total: u64,
}

fn read_host(data_dir: &std::path::Path) -> Host {
    Host {
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        memory_total: crate::host::MemInfo::read().bytes("MemTotal").unwrap_or(0),
        disk_total: crate::host::disk(data_dir).map_or(0, |d| d.total),
    }
}

fn os_image() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    release.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string()).unwrap_or_else(|| "Linux".into())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl Kubelet {
    /// The Node's status now: capacity, allocatable, conditions, images.
    fn node_status(&self) -> Value {
        let host = read_host(&self.config.data_dir);
        let kib = |bytes: u64| format!("{}Ki", bytes / 1024);
        let capacity = json!({
            "cpu": host.cpus.to_string(),
            "memory": kib(host.memory_total),
            "ephemeral-storage": kib(host.disk_total),
            "pods": self.config.max_pods.to_string(),
        });
        let allocatable = json!({
            "cpu": host.cpus.to_string(),
            // Allocatable is capacity less the hard eviction thresholds, as upstream's.
            "memory": kib(host.memory_total.saturating_sub(self.config.eviction_hard.memory_available.of(host.memory_total))),
            "ephemeral-storage": host.disk_total.saturating_sub(self.config.eviction_hard.nodefs_available.of(host.disk_total)).to_string(),
            "pods": self.config.max_pods.to_string(),
        });
        let now = now();
        let condition = |kind: &str, pressed: bool, yes: (&str, &str), no: (&str, &str)| {
            let (reason, message) = if pressed { yes } else { no };
            json!({"type": kind, "status": if pressed { "True" } else { "False" }, "reason": reason, "message": message, "lastHeartbeatTime": now, "lastTransitionTime": now})
        };
        let pressure = *crate::lock(&self.pressed);
        let (memory_pressure, disk_pressure, pid_pressure) = (pressure.memory, pressure.disk, pressure.pid);
        let uname = nix::sys::utsname::uname().ok();
        json!({
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": [
                condition("MemoryPressure", memory_pressure, ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"), ("KubeletHasSufficientMemory", "kubelet has sufficient memory available")),
                condition("DiskPressure", disk_pressure, ("KubeletHasDiskPressure", "kubelet has disk pressure"), ("KubeletHasNoDiskPressure", "kubelet has no disk pressure")),
                condition("PIDPressure", pid_pressure, ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"), ("KubeletHasSufficientPID", "kubelet has sufficient PID available")),
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now},
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.config.address.to_string()},
                {"type": "Hostname", "address": self.config.node_name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port()}},
            "nodeInfo": {
                "machineID": read_trimmed("/etc/machine-id"),
                "systemUUID": read_trimmed("/sys/class/dmi/id/product_uuid"),
                "bootID": read_trimmed("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": uname.as_ref().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default(),
                "osImage": os_image(),
                "containerRuntimeVersion": self.runtime.version(),
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": arch(),
            },
            "images": crate::images::node_images(&self.images.list()),
        })
    }

    /// Creates the Node, or brings an existing one up to date, and its Lease.
    pub(crate) async fn register(&self) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let name = &self.config.node_name;
        let labels: BTreeMap<&str, &str> = BTreeMap::from([
            ("kubernetes.io/hostname", name.as_str()),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", arch()),
            ("beta.kubernetes.io/os", "linux"),
            ("beta.kubernetes.io/arch", arch()),
        ]);
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels, "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
            "status": self.node_status(),
        }))?;
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                nodes.patch(name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": labels}}))).await?;
                self.post_node_status().await?;
            }
            Err(e) => return Err(e).with_context(|| format!("registering node {name}")),
        }
        self.renew_lease().await
    }

    pub(crate) async fn post_node_status(&self) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut status = self.node_status();
        // A condition whose status stays keeps the time it last changed.
        let current = nodes.get(&self.config.node_name).await?;
        for old in current.status.and_then(|s| s.conditions).unwrap_or_default() {
            let fresh = status["conditions"].as_array_mut().and_then(|c| c.iter_mut().find(|c| c["type"] == old.type_.as_str()));
            if let (Some(fresh), Some(since)) = (fresh, old.last_transition_time) {
                if fresh["status"] == old.status.as_str() {
                    fresh["lastTransitionTime"] = json!(since.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                }
            }
        }
        // Merged by condition type, as upstream's kubelet patches: conditions
        // others own (the network's) stay.
        nodes.patch_status(&self.config.node_name, &PatchParams::default(), &Patch::Strategic(json!({"status": status}))).await?;
        Ok(())
    }

    async fn renew_lease(&self) -> Result<()> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let name = &self.config.node_name;
        let renew = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let spec = json!({"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": renew});
        match leases.patch(name, &PatchParams::default(), &Patch::Merge(json!({"spec": spec}))).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => {
                let lease: Lease = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "kube-node-lease"}, "spec": spec}))?;
                leases.create(&PostParams::default(), &lease).await?;
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("renewing the lease of {name}")),
        }
    }

    /// Renews the Lease every 10 s and posts the Node's status every
    /// minute, or at the next renewal when its images changed (other nodes
    /// find images to pull from there, with the embedded registry).
    pub(crate) async fn heartbeat(&self) {
        let mut renew = tokio::time::interval(RENEW_EVERY);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = tokio::time::Instant::now();
        let mut posted_images = crate::images::node_images(&self.images.list());
        loop {
            renew.tick().await;
            if let Err(e) = self.renew_lease().await {
                tracing::warn!("{e:#}");
            }
            let images = crate::images::node_images(&self.images.list());
            if last_status.elapsed() >= STATUS_EVERY || images != posted_images {
                last_status = tokio::time::Instant::now();
                posted_images = images;
                if let Err(e) = self.post_node_status().await {
                    tracing::warn!("posting the node's status: {e:#}");
                }
            }
        }
    }
}

pub const KUBELET_VERSION: &str = concat!("v1.32.0-skiff-", env!("CARGO_PKG_VERSION"));

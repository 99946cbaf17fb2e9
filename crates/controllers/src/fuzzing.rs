//! The controllers' decisions on hostile objects, for the property tests
//! and the cargo-fuzz targets (`fuzz/`): each entry point reads a byte
//! string as the choices that mutate valid seeds (see
//! `skiff_scheduler::fuzzing`) into objects the API may hold, and runs
//! the controller's pure decision on them. None may panic.

use std::sync::Arc;

use chrono::Utc;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Pod, ReplicationController, ResourceQuota, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::DynamicObject;
use serde_json::{json, Value};
use skiff_scheduler::fuzzing::{hostile, Entropy};

/// A pod of an owner: labels, owner reference, readiness, statuses with
/// exit codes, a completion index, finalizers.
fn pod_seed(name: &str, owner_kind: &str) -> Value {
    json!({
        "metadata": {
            "name": name, "namespace": "ns", "uid": format!("uid-{name}"), "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "a", "pod-template-hash": "h", "controller-revision-hash": "web-1"},
            "annotations": {"batch.kubernetes.io/job-completion-index": "1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": "owner", "uid": "owner", "controller": true}],
            "finalizers": ["batch.kubernetes.io/job-tracking"],
        },
        "spec": {
            "nodeName": "n0", "hostname": name, "subdomain": "svc",
            "containers": [{"name": "c", "image": "nginx", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}}],
            "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "2"}}}],
            "overhead": {"cpu": "10m"},
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "activeDeadlineSeconds": 30, "priorityClassName": "high",
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n0"]}]}]}}},
        },
        "status": {
            "phase": "Running", "podIP": "10.0.0.1", "startTime": "2026-01-01T00:00:00Z",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}, {"type": "DisruptionTarget", "status": "True"}],
            "containerStatuses": [{"name": "c", "image": "nginx", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"terminated": {"exitCode": 3, "finishedAt": "2026-01-01T00:00:05Z"}}}],
        },
    })
}

fn pods(e: &mut Entropy, owner_kind: &str, name: impl Fn(usize) -> String) -> Vec<Pod> {
    (0..e.below(6)).map(|i| hostile(&pod_seed(&name(i), owner_kind), e)).collect()
}

fn template() -> Value {
    json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
}

pub fn deployment(data: &[u8]) {
    let mut e = Entropy::new(data);
    let d: Deployment = hostile(
        &json!({
            "metadata": {"name": "d", "namespace": "ns", "uid": "owner", "generation": 3, "annotations": {"deployment.kubernetes.io/revision": "2"}},
            "spec": {
                "replicas": 10, "minReadySeconds": 5, "revisionHistoryLimit": 2, "progressDeadlineSeconds": 600, "paused": false,
                "selector": {"matchLabels": {"app": "a"}}, "template": template(),
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            },
            "status": {"replicas": 10, "updatedReplicas": 5, "readyReplicas": 9, "availableReplicas": 9, "observedGeneration": 2,
                "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        }),
        &mut e,
    );
    let replica_sets: Vec<ReplicaSet> = (0..e.below(5))
        .map(|i| {
            let template = if i == 0 { json!(d.spec.as_ref().map(|s| s.template.clone())) } else { template() };
            let seed = json!({
                "metadata": {"name": format!("d-{i}"), "namespace": "ns", "uid": format!("rs{i}"), "creationTimestamp": format!("2026-01-0{}T00:00:00Z", i + 1),
                    "annotations": {"deployment.kubernetes.io/revision": i.to_string(), "deployment.kubernetes.io/desired-replicas": "8", "deployment.kubernetes.io/max-replicas": "11"}},
                "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "a"}}, "template": template},
                "status": {"replicas": 5, "readyReplicas": 4, "availableReplicas": 3},
            });
            hostile(&seed, &mut e)
        })
        .collect();
    crate::deployment::fuzz(&d, &replica_sets, Utc::now());
}

pub fn replicaset(data: &[u8]) {
    let mut e = Entropy::new(data);
    let seed = json!({
        "metadata": {"name": "owner", "namespace": "ns", "uid": "owner", "generation": 1},
        "spec": {"replicas": 3, "minReadySeconds": 10, "selector": {"matchLabels": {"app": "a"}}, "template": template()},
        "status": {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 1, "availableReplicas": 1},
    });
    let rs: ReplicaSet = hostile(&seed, &mut e);
    let pods: Vec<Arc<Pod>> = pods(&mut e, "ReplicaSet", |i| format!("owner-{i}")).into_iter().map(Arc::new).collect();
    crate::replicaset::fuzz(&rs, &pods);
    let mut rc_seed = seed;
    rc_seed["spec"]["selector"] = json!({"app": "a"});
    let rc: ReplicationController = hostile(&rc_seed, &mut e);
    crate::replicaset::fuzz(&rc, &pods);
}

pub fn statefulset(data: &[u8]) {
    let mut e = Entropy::new(data);
    let set: StatefulSet = hostile(
        &json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "owner", "generation": 2},
            "spec": {
                "replicas": 3, "serviceName": "svc", "podManagementPolicy": "OrderedReady", "minReadySeconds": 0, "revisionHistoryLimit": 10,
                "ordinals": {"start": 0}, "selector": {"matchLabels": {"app": "a"}}, "template": template(),
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1, "maxUnavailable": 1}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}],
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"},
            },
            "status": {"replicas": 3, "currentRevision": "web-1", "updateRevision": "web-2"},
        }),
        &mut e,
    );
    let pods = pods(&mut e, "StatefulSet", |i| format!("web-{i}"));
    let revision: ControllerRevision = hostile(&json!({"metadata": {"name": "web-2"}, "revision": 2, "data": {"spec": {"template": {"$patch": "replace", "spec": {"containers": [{"name": "c"}]}}}}}), &mut e);
    crate::statefulset::fuzz(&set, pods, &revision);
}

pub fn daemonset(data: &[u8]) {
    let mut e = Entropy::new(data);
    let ds: DaemonSet = hostile(
        &json!({
            "metadata": {"name": "ds", "namespace": "ns", "uid": "owner", "generation": 4},
            "spec": {
                "selector": {"matchLabels": {"app": "a"}}, "minReadySeconds": 3, "revisionHistoryLimit": 10,
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"hostNetwork": true, "nodeSelector": {"role": "edge"}, "containers": [{"name": "c"}],
                    "tolerations": [{"key": "dedicated", "operator": "Exists"}]}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "10%", "maxUnavailable": "50%"}},
            },
        }),
        &mut e,
    );
    let nodes: Vec<Node> = (0..e.below(5))
        .map(|i| {
            let seed = json!({"metadata": {"name": format!("n{i}"), "labels": {"role": "edge"}}, "spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}, {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}});
            hostile(&seed, &mut e)
        })
        .collect();
    let pods = pods(&mut e, "DaemonSet", |i| format!("ds-{i}"));
    crate::daemonset::fuzz(&ds, nodes, pods);
}

pub fn job(data: &[u8]) {
    let mut e = Entropy::new(data);
    let job: Job = hostile(
        &json!({
            "metadata": {"name": "owner", "namespace": "ns", "uid": "owner", "resourceVersion": "5"},
            "spec": {
                "completions": 5, "parallelism": 2, "backoffLimit": 6, "activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 100,
                "completionMode": "Indexed", "suspend": false, "podReplacementPolicy": "TerminatingOrFailed", "template": template(),
                "podFailurePolicy": {"rules": [
                    {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [3, 42]}},
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]},
            },
            "status": {"active": 1, "succeeded": 2, "failed": 1, "completedIndexes": "0,2-3", "startTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                    {"type": "Complete", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        }),
        &mut e,
    );
    let pods = pods(&mut e, "Job", |i| format!("owner-{i}"));
    crate::job::fuzz(&job, pods, Utc::now());
    let _ = crate::ttl_after_finished::left(&job, Utc::now());
}

pub fn cronjob(data: &[u8]) {
    let mut e = Entropy::new(data);
    let cj: CronJob = hostile(
        &json!({
            "metadata": {"name": "cj", "namespace": "ns", "uid": "owner", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"schedule": "*/5 * * * *", "timeZone": "Asia/Tokyo", "startingDeadlineSeconds": 200, "concurrencyPolicy": "Forbid", "suspend": false,
                "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1, "jobTemplate": {"spec": {"template": template()}}},
            "status": {"lastScheduleTime": "2026-01-01T00:00:00Z", "lastSuccessfulTime": "2026-01-01T00:00:00Z", "active": [{"uid": "j0"}]},
        }),
        &mut e,
    );
    let jobs: Vec<Job> = (0..e.below(4))
        .map(|i| {
            let seed = json!({"metadata": {"name": format!("cj-{i}"), "uid": format!("j{i}"), "creationTimestamp": "2026-01-01T00:00:00Z"},
                "status": {"completionTime": "2026-01-01T00:01:00Z", "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:01:00Z"}]}});
            hostile(&seed, &mut e)
        })
        .collect();
    crate::cronjob::fuzz(&cj, &jobs, Utc::now());
}

pub fn hpa(data: &[u8]) {
    let mut e = Entropy::new(data);
    let hpa: HorizontalPodAutoscaler = hostile(
        &json!({
            "metadata": {"name": "h", "namespace": "ns", "uid": "h"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"}, "minReplicas": 1, "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "ContainerResource", "containerResource": {"name": "memory", "container": "c", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                ],
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]},
                    "scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Min", "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]},
                },
            },
        }),
        &mut e,
    );
    let current = *e.pick(&[0, 1, 3, 10, -1, i32::MAX, i32::MIN]);
    let pods = pods(&mut e, "ReplicaSet", |i| format!("p{i}"));
    let metrics: Vec<DynamicObject> = (0..e.below(5))
        .map(|i| {
            let seed = json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics", "metadata": {"name": format!("p{i}"), "namespace": "ns"},
                "containers": [{"name": "c", "usage": {"cpu": "250m", "memory": "80Mi"}}]});
            hostile(&seed, &mut e)
        })
        .collect();
    crate::hpa::fuzz(&hpa, current, &pods, &metrics);
}

/// The controllers with smaller decisions, one chosen by the first byte:
/// disruption budgets, endpoints and slices, quotas, node lifecycle,
/// certificate requests.
pub fn others(data: &[u8]) {
    let mut e = Entropy::new(data);
    match e.byte() % 5 {
        0 => {
            let budget: PodDisruptionBudget = hostile(
                &json!({"metadata": {"name": "b", "namespace": "ns", "generation": 1}, "spec": {"minAvailable": "50%", "maxUnavailable": 1, "selector": {"matchLabels": {"app": "a"}}},
                    "status": {"disruptionsAllowed": 1, "disruptedPods": {"p0": "2026-01-01T00:00:00Z"}, "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
                &mut e,
            );
            let pods: Vec<Arc<Pod>> = pods(&mut e, "ReplicaSet", |i| format!("p{i}")).into_iter().map(Arc::new).collect();
            let scale = *e.pick(&[None, Some(0), Some(3), Some(-5), Some(i32::MAX), Some(i32::MIN)]);
            let _ = crate::disruption::next_status(&budget, &pods, scale, Utc::now());
        }
        1 => {
            let service: Service = hostile(
                &json!({"metadata": {"name": "svc", "namespace": "ns", "uid": "s"}, "spec": {"selector": {"app": "a"}, "clusterIP": "None", "publishNotReadyAddresses": false,
                    "ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}, {"name": "raw", "port": 81, "targetPort": 9090}]}}),
                &mut e,
            );
            let pods: Vec<Arc<Pod>> = pods(&mut e, "ReplicaSet", |i| format!("p{i}")).into_iter().map(Arc::new).collect();
            let backends = crate::endpoints::backends(&service, pods);
            let _ = crate::endpoints::compact(json!(crate::endpoints::subsets(&backends)));
            let _ = crate::endpointslice::desired(&service, &backends);
        }
        2 => {
            let quota: ResourceQuota = hostile(
                &json!({"metadata": {"name": "q", "namespace": "ns"}, "spec": {
                    "hard": {"pods": "10", "requests.cpu": "4", "limits.memory": "8Gi", "memory": "1Gi", "requests.example.com/gpu": "1"},
                    "scopes": ["NotTerminating", "NotBestEffort"],
                    "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}}),
                &mut e,
            );
            let pods: Vec<Arc<Pod>> = pods(&mut e, "ReplicaSet", |i| format!("p{i}")).into_iter().map(Arc::new).filter(|p| crate::quota::in_scopes(&quota, p)).collect();
            let amounts = crate::quota::PodAmounts::of(&pods);
            for (key, limit) in quota.spec.iter().flat_map(|s| s.hard.iter().flatten()) {
                let _ = amounts.used(key, limit);
            }
        }
        3 => {
            let node: Node = hostile(
                &json!({"metadata": {"name": "n0"}, "spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}, {"key": "other", "effect": "NoSchedule"}]},
                    "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z"}, {"type": "MemoryPressure", "status": "True"}]}}),
                &mut e,
            );
            let options = crate::Options { default_not_ready_toleration_seconds: *e.pick(&[300, 0, -1, i64::MAX, i64::MIN]), ..Default::default() };
            let decision = crate::node_lifecycle::node_decision(&node, None, &options, Utc::now());
            for pod in pods(&mut e, "ReplicaSet", |i| format!("p{i}")) {
                let _ = crate::node_lifecycle::eviction_due(&pod, &decision.next, &options, Utc::now());
            }
        }
        _ => {
            let csr: CertificateSigningRequest = hostile(
                &json!({"metadata": {"name": "csr"}, "spec": {"request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KTUlJPQotLS0tLUVORCBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
                    "signerName": "kubernetes.io/kubelet-serving", "usages": ["digital signature", "server auth"], "username": "system:node:n0", "expirationSeconds": 3600}}),
                &mut e,
            );
            crate::certificates::fuzz(&csr);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{RngCore, SeedableRng};

    /// Each entry point on seeded random choices: a failure reproduces,
    /// and `fuzz/` runs the same entry points under libFuzzer for longer
    /// (as does `SKIFF_FUZZ_ROUNDS=100000 cargo test`).
    fn never_panics(seed: u64, rounds: usize, entry: fn(&[u8])) {
        let rounds = std::env::var("SKIFF_FUZZ_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(rounds);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut data = vec![0u8; 1024];
        for _ in 0..rounds {
            rng.fill_bytes(&mut data);
            entry(&data);
        }
    }

    #[test]
    fn deployments_never_panic() {
        never_panics(1, 1000, super::deployment);
    }

    #[test]
    fn replica_sets_never_panic() {
        never_panics(2, 1000, super::replicaset);
    }

    #[test]
    fn stateful_sets_never_panic() {
        never_panics(3, 1000, super::statefulset);
    }

    #[test]
    fn daemon_sets_never_panic() {
        never_panics(4, 1000, super::daemonset);
    }

    #[test]
    fn jobs_never_panic() {
        never_panics(5, 1000, super::job);
    }

    #[test]
    fn cron_jobs_never_panic() {
        never_panics(6, 1000, super::cronjob);
    }

    #[test]
    fn autoscalers_never_panic() {
        never_panics(7, 1000, super::hpa);
    }

    #[test]
    fn budgets_endpoints_quotas_nodes_and_requests_never_panic() {
        never_panics(8, 1500, super::others);
    }
}

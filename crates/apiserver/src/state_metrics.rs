//! Cluster-state metrics, as kube-state-metrics v2 names and labels them,
//! served by the API server itself at `/metrics/cluster-state` from what it
//! already holds (its store's cache), so no extra process watches the
//! cluster. Every server of a cluster answers alike: a scrape of any one
//! is the whole cluster.

use std::collections::BTreeMap;
use std::fmt::Write;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, ResourceQuota, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::de::DeserializeOwned;

use crate::registry::ListQuery;
use crate::handler::Api;

type Labels = Vec<(&'static str, String)>;

/// One exposition page, family by family.
#[derive(Default)]
struct Page {
    out: String,
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Page {
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: impl IntoIterator<Item = (Labels, f64)>) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let _ = writeln!(self.out, "{name}{{{}}} {value}", labels.join(","));
        }
    }

    fn gauge(&mut self, name: &str, help: &str, samples: impl IntoIterator<Item = (Labels, f64)>) {
        self.family(name, "gauge", help, samples);
    }
}

fn seconds(t: &Option<Time>) -> Option<f64> {
    t.as_ref().map(|t| t.0.timestamp() as f64)
}

fn created(meta: &ObjectMeta) -> Option<f64> {
    seconds(&meta.creation_timestamp)
}

fn name(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn namespace(meta: &ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_default()
}

fn uid(meta: &ObjectMeta) -> String {
    meta.uid.clone().unwrap_or_default()
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// A quantity in kube-state-metrics' units: cores, bytes, or a count.
fn resource_value(resource: &str, q: &Quantity) -> Option<(f64, &'static str)> {
    let milli = skiff_quantity::milli(&q.0)? as f64 / 1000.0;
    let unit = match resource {
        "cpu" => "core",
        "memory" | "ephemeral-storage" | "storage" => "byte",
        r if r.starts_with("hugepages-") => "byte",
        _ => "integer",
    };
    Some((milli, unit))
}

/// One series per value of a condition's status, 1 for the current one.
fn condition_series(base: &Labels, condition: &str, status: &str) -> Vec<(Labels, f64)> {
    ["true", "false", "unknown"]
        .iter()
        .map(|s| {
            let mut labels = base.clone();
            labels.push(("condition", condition.to_string()));
            labels.push(("status", s.to_string()));
            (labels, flag(status.eq_ignore_ascii_case(s)))
        })
        .collect()
}

fn with(base: &Labels, more: &[(&'static str, String)]) -> Labels {
    let mut labels = base.clone();
    labels.extend(more.iter().cloned());
    labels
}

async fn list<K: DeserializeOwned>(api: &Api, group: &str, version: &str, plural: &str) -> Vec<K> {
    let Some(def) = skiff_api::resources::find(group, version, plural) else { return vec![] };
    match api.registry.list(def, None, &ListQuery::default()).await {
        Ok(listed) => listed.items.iter().filter_map(|raw| serde_json::from_slice(raw).ok()).collect(),
        Err(e) => {
            tracing::debug!("cluster-state metrics: listing {plural}: {}", e.message);
            vec![]
        }
    }
}

/// The page, in Prometheus' text format.
pub async fn render(api: &Api) -> String {
    let mut page = Page::default();
    pods(&mut page, &list(api, "", "v1", "pods").await);
    nodes(&mut page, &list(api, "", "v1", "nodes").await);
    deployments(&mut page, &list(api, "apps", "v1", "deployments").await);
    replicasets(&mut page, &list(api, "apps", "v1", "replicasets").await);
    statefulsets(&mut page, &list(api, "apps", "v1", "statefulsets").await);
    daemonsets(&mut page, &list(api, "apps", "v1", "daemonsets").await);
    jobs(&mut page, &list(api, "batch", "v1", "jobs").await);
    cronjobs(&mut page, &list(api, "batch", "v1", "cronjobs").await);
    hpas(&mut page, &list(api, "autoscaling", "v2", "horizontalpodautoscalers").await);
    namespaces(&mut page, &list(api, "", "v1", "namespaces").await);
    services(&mut page, &list(api, "", "v1", "services").await);
    endpoints(&mut page, &list(api, "", "v1", "endpoints").await);
    claims(&mut page, &list(api, "", "v1", "persistentvolumeclaims").await);
    volumes(&mut page, &list(api, "", "v1", "persistentvolumes").await);
    quotas(&mut page, &list(api, "", "v1", "resourcequotas").await);
    budgets(&mut page, &list(api, "policy", "v1", "poddisruptionbudgets").await);
    page.out
}

fn pods(page: &mut Page, pods: &[Pod]) {
    let base = |p: &Pod| -> Labels { vec![("namespace", namespace(&p.metadata)), ("pod", name(&p.metadata)), ("uid", uid(&p.metadata))] };
    page.gauge(
        "kube_pod_info",
        "Information about pod.",
        pods.iter().map(|p| {
            let spec = p.spec.clone().unwrap_or_default();
            let status = p.status.clone().unwrap_or_default();
            let owner = p.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true));
            let labels = with(&base(p), &[
                ("host_ip", status.host_ip.unwrap_or_default()),
                ("pod_ip", status.pod_ip.unwrap_or_default()),
                ("node", spec.node_name.unwrap_or_default()),
                ("created_by_kind", owner.map(|o| o.kind.clone()).unwrap_or_default()),
                ("created_by_name", owner.map(|o| o.name.clone()).unwrap_or_default()),
                ("priority_class", spec.priority_class_name.unwrap_or_default()),
                ("host_network", spec.host_network.unwrap_or(false).to_string()),
            ]);
            (labels, 1.0)
        }),
    );
    page.gauge(
        "kube_pod_owner",
        "Information about the Pod's owner.",
        pods.iter().flat_map(|p| {
            let owners = p.metadata.owner_references.clone().unwrap_or_default();
            let none = owners.is_empty().then(|| with(&base(p), &[("owner_kind", "<none>".into()), ("owner_name", "<none>".into()), ("owner_is_controller", "<none>".into())]));
            owners
                .iter()
                .map(|o| with(&base(p), &[("owner_kind", o.kind.clone()), ("owner_name", o.name.clone()), ("owner_is_controller", o.controller.unwrap_or(false).to_string())]))
                .chain(none)
                .map(|l| (l, 1.0))
                .collect::<Vec<_>>()
        }),
    );
    page.gauge("kube_pod_created", "Unix creation timestamp", pods.iter().filter_map(|p| Some((base(p), created(&p.metadata)?))));
    page.gauge("kube_pod_start_time", "Start time in unix timestamp for a pod.", pods.iter().filter_map(|p| Some((base(p), seconds(&p.status.as_ref()?.start_time)?))));
    page.gauge(
        "kube_pod_status_phase",
        "The pods current phase.",
        pods.iter().flat_map(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            ["Pending", "Succeeded", "Failed", "Unknown", "Running"].map(|each| (with(&base(p), &[("phase", each.into())]), flag(phase == each)))
        }),
    );
    let condition = |p: &Pod, kind: &str| p.status.as_ref().and_then(|s| s.conditions.as_ref()?.iter().find(|c| c.type_ == kind).map(|c| c.status.clone()));
    for (metric, kind, help) in [("kube_pod_status_ready", "Ready", "Describes whether the pod is ready to serve requests."), ("kube_pod_status_scheduled", "PodScheduled", "Describes the status of the scheduling process for the pod.")] {
        page.gauge(
            metric,
            help,
            pods.iter().filter_map(|p| Some((p, condition(p, kind)?))).flat_map(|(p, status)| {
                ["true", "false", "unknown"].map(|s| (with(&base(p), &[("condition", s.into())]), flag(status.eq_ignore_ascii_case(s))))
            }),
        );
    }
    page.gauge(
        "kube_pod_status_scheduled_time",
        "Unix timestamp when pod moved into scheduled status",
        pods.iter().filter_map(|p| {
            let c = p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "PodScheduled" && c.status == "True")?;
            Some((base(p), seconds(&c.last_transition_time)?))
        }),
    );
    // Containers, with their pod's labels and the container's name.
    let statuses = |p: &Pod| -> Vec<(Labels, k8s_openapi::api::core::v1::ContainerStatus)> {
        p.status.iter().flat_map(|s| s.container_statuses.iter().flatten()).map(|c| (with(&base(p), &[("container", c.name.clone())]), c.clone())).collect()
    };
    page.gauge(
        "kube_pod_container_info",
        "Information about a container in a pod.",
        pods.iter().flat_map(statuses).map(|(l, c)| (with(&l, &[("image_spec", c.image.clone()), ("image", c.image.clone()), ("image_id", c.image_id.clone()), ("container_id", c.container_id.clone().unwrap_or_default())]), 1.0)),
    );
    page.gauge("kube_pod_container_status_ready", "Describes whether the containers readiness check succeeded.", pods.iter().flat_map(statuses).map(|(l, c)| (l, flag(c.ready))));
    let state = |c: &k8s_openapi::api::core::v1::ContainerStatus| c.state.clone().unwrap_or_default();
    page.gauge("kube_pod_container_status_running", "Describes whether the container is currently in running state.", pods.iter().flat_map(statuses).map(|(l, c)| (l, flag(state(&c).running.is_some()))));
    page.gauge("kube_pod_container_status_waiting", "Describes whether the container is currently in waiting state.", pods.iter().flat_map(statuses).map(|(l, c)| (l, flag(state(&c).waiting.is_some()))));
    page.gauge("kube_pod_container_status_terminated", "Describes whether the container is currently in terminated state.", pods.iter().flat_map(statuses).map(|(l, c)| (l, flag(state(&c).terminated.is_some()))));
    page.gauge(
        "kube_pod_container_status_waiting_reason",
        "Describes the reason the container is currently in waiting state.",
        pods.iter().flat_map(statuses).filter_map(|(l, c)| Some((with(&l, &[("reason", state(&c).waiting?.reason?)]), 1.0))),
    );
    page.gauge(
        "kube_pod_container_status_terminated_reason",
        "Describes the reason the container is currently in terminated state.",
        pods.iter().flat_map(statuses).filter_map(|(l, c)| Some((with(&l, &[("reason", state(&c).terminated?.reason?)]), 1.0))),
    );
    page.gauge(
        "kube_pod_container_status_last_terminated_reason",
        "Describes the last reason the container was in terminated state.",
        pods.iter().flat_map(statuses).filter_map(|(l, c)| Some((with(&l, &[("reason", c.last_state?.terminated?.reason?)]), 1.0))),
    );
    page.family(
        "kube_pod_container_status_restarts_total",
        "counter",
        "The number of container restarts per container.",
        pods.iter().flat_map(statuses).map(|(l, c)| (l, f64::from(c.restart_count))),
    );
    for (metric, limits, help) in [("kube_pod_container_resource_requests", false, "The number of requested request resource by a container."), ("kube_pod_container_resource_limits", true, "The number of requested limit resource by a container.")] {
        page.gauge(
            metric,
            help,
            pods.iter().flat_map(|p| {
                let node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
                p.spec.iter().flat_map(|s| s.containers.iter()).flat_map(move |c| {
                    let resources = c.resources.clone().unwrap_or_default();
                    let amounts = if limits { resources.limits } else { resources.requests }.unwrap_or_default();
                    let base = with(&base(p), &[("container", c.name.clone()), ("node", node.clone())]);
                    amounts.into_iter().filter_map(move |(resource, q)| {
                        let (value, unit) = resource_value(&resource, &q)?;
                        Some((with(&base, &[("resource", resource.replace(['.', '/', '-'], "_")), ("unit", unit.into())]), value))
                    })
                })
            }),
        );
    }
}

fn nodes(page: &mut Page, nodes: &[Node]) {
    let base = |n: &Node| -> Labels { vec![("node", name(&n.metadata))] };
    page.gauge(
        "kube_node_info",
        "Information about a cluster node.",
        nodes.iter().map(|n| {
            let info = n.status.as_ref().and_then(|s| s.node_info.clone()).unwrap_or_default();
            let spec = n.spec.clone().unwrap_or_default();
            let internal = n.status.iter().flat_map(|s| s.addresses.iter().flatten()).find(|a| a.type_ == "InternalIP").map(|a| a.address.clone()).unwrap_or_default();
            (
                with(&base(n), &[
                    ("kernel_version", info.kernel_version),
                    ("os_image", info.os_image),
                    ("container_runtime_version", info.container_runtime_version),
                    ("kubelet_version", info.kubelet_version),
                    ("kubeproxy_version", info.kube_proxy_version),
                    ("provider_id", spec.provider_id.unwrap_or_default()),
                    ("pod_cidr", spec.pod_cidr.unwrap_or_default()),
                    ("system_uuid", info.system_uuid),
                    ("internal_ip", internal),
                ]),
                1.0,
            )
        }),
    );
    page.gauge("kube_node_created", "Unix creation timestamp", nodes.iter().filter_map(|n| Some((base(n), created(&n.metadata)?))));
    page.gauge("kube_node_spec_unschedulable", "Whether a node can schedule new pods.", nodes.iter().map(|n| (base(n), flag(n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true)))));
    page.gauge(
        "kube_node_spec_taint",
        "The taint of a cluster node.",
        nodes.iter().flat_map(|n| n.spec.iter().flat_map(|s| s.taints.iter().flatten()).map(|t| (with(&base(n), &[("key", t.key.clone()), ("value", t.value.clone().unwrap_or_default()), ("effect", t.effect.clone())]), 1.0)).collect::<Vec<_>>()),
    );
    page.gauge(
        "kube_node_status_condition",
        "The condition of a cluster node.",
        nodes.iter().flat_map(|n| n.status.iter().flat_map(|s| s.conditions.iter().flatten()).flat_map(|c| condition_series(&base(n), &c.type_, &c.status)).collect::<Vec<_>>()),
    );
    for (metric, allocatable, help) in [("kube_node_status_capacity", false, "The capacity for different resources of a node."), ("kube_node_status_allocatable", true, "The allocatable for different resources of a node that are available for scheduling.")] {
        page.gauge(
            metric,
            help,
            nodes.iter().flat_map(|n| {
                let amounts = n.status.as_ref().and_then(|s| if allocatable { s.allocatable.clone() } else { s.capacity.clone() }).unwrap_or_default();
                amounts
                    .into_iter()
                    .filter_map(|(resource, q)| {
                        let (value, unit) = resource_value(&resource, &q)?;
                        Some((with(&base(n), &[("resource", resource.replace(['.', '/', '-'], "_")), ("unit", unit.into())]), value))
                    })
                    .collect::<Vec<_>>()
            }),
        );
    }
}

fn deployments(page: &mut Page, items: &[Deployment]) {
    let base = |d: &Deployment| -> Labels { vec![("namespace", namespace(&d.metadata)), ("deployment", name(&d.metadata))] };
    let status = |d: &Deployment| d.status.clone().unwrap_or_default();
    page.gauge("kube_deployment_created", "Unix creation timestamp", items.iter().filter_map(|d| Some((base(d), created(&d.metadata)?))));
    page.gauge("kube_deployment_spec_replicas", "Number of desired pods for a deployment.", items.iter().map(|d| (base(d), f64::from(d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)))));
    page.gauge("kube_deployment_spec_paused", "Whether the deployment is paused and will not be processed by the deployment controller.", items.iter().map(|d| (base(d), flag(d.spec.as_ref().and_then(|s| s.paused) == Some(true)))));
    page.gauge("kube_deployment_status_replicas", "The number of replicas per deployment.", items.iter().map(|d| (base(d), f64::from(status(d).replicas.unwrap_or(0)))));
    page.gauge("kube_deployment_status_replicas_ready", "The number of ready replicas per deployment.", items.iter().map(|d| (base(d), f64::from(status(d).ready_replicas.unwrap_or(0)))));
    page.gauge("kube_deployment_status_replicas_available", "The number of available replicas per deployment.", items.iter().map(|d| (base(d), f64::from(status(d).available_replicas.unwrap_or(0)))));
    page.gauge("kube_deployment_status_replicas_unavailable", "The number of unavailable replicas per deployment.", items.iter().map(|d| (base(d), f64::from(status(d).unavailable_replicas.unwrap_or(0)))));
    page.gauge("kube_deployment_status_replicas_updated", "The number of updated replicas per deployment.", items.iter().map(|d| (base(d), f64::from(status(d).updated_replicas.unwrap_or(0)))));
    page.gauge("kube_deployment_status_observed_generation", "The generation observed by the deployment controller.", items.iter().map(|d| (base(d), status(d).observed_generation.unwrap_or(0) as f64)));
    page.gauge("kube_deployment_metadata_generation", "Sequence number representing a specific generation of the desired state.", items.iter().map(|d| (base(d), d.metadata.generation.unwrap_or(0) as f64)));
    page.gauge(
        "kube_deployment_status_condition",
        "The current status conditions of a deployment.",
        items.iter().flat_map(|d| status(d).conditions.unwrap_or_default().iter().flat_map(|c| with_reason(condition_series(&base(d), &c.type_, &c.status), c.reason.clone())).collect::<Vec<_>>()),
    );
}

/// kube-state-metrics' deployment conditions also carry the reason.
fn with_reason(series: Vec<(Labels, f64)>, reason: Option<String>) -> Vec<(Labels, f64)> {
    series.into_iter().map(|(l, v)| (with(&l, &[("reason", reason.clone().unwrap_or_default())]), v)).collect()
}

fn replicasets(page: &mut Page, items: &[ReplicaSet]) {
    let base = |r: &ReplicaSet| -> Labels { vec![("namespace", namespace(&r.metadata)), ("replicaset", name(&r.metadata))] };
    let status = |r: &ReplicaSet| r.status.clone().unwrap_or_default();
    page.gauge("kube_replicaset_spec_replicas", "Number of desired pods for a ReplicaSet.", items.iter().map(|r| (base(r), f64::from(r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)))));
    page.gauge("kube_replicaset_status_replicas", "The number of replicas per ReplicaSet.", items.iter().map(|r| (base(r), f64::from(status(r).replicas))));
    page.gauge("kube_replicaset_status_ready_replicas", "The number of ready replicas per ReplicaSet.", items.iter().map(|r| (base(r), f64::from(status(r).ready_replicas.unwrap_or(0)))));
    page.gauge(
        "kube_replicaset_owner",
        "Information about the ReplicaSet's owner.",
        items.iter().flat_map(|r| r.metadata.owner_references.iter().flatten().map(|o| (with(&base(r), &[("owner_kind", o.kind.clone()), ("owner_name", o.name.clone()), ("owner_is_controller", o.controller.unwrap_or(false).to_string())]), 1.0)).collect::<Vec<_>>()),
    );
}

fn statefulsets(page: &mut Page, items: &[StatefulSet]) {
    let base = |s: &StatefulSet| -> Labels { vec![("namespace", namespace(&s.metadata)), ("statefulset", name(&s.metadata))] };
    let status = |s: &StatefulSet| s.status.clone().unwrap_or_default();
    page.gauge("kube_statefulset_replicas", "Number of desired pods for a StatefulSet.", items.iter().map(|s| (base(s), f64::from(s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)))));
    page.gauge("kube_statefulset_status_replicas", "The number of replicas per StatefulSet.", items.iter().map(|s| (base(s), f64::from(status(s).replicas))));
    page.gauge("kube_statefulset_status_replicas_ready", "The number of ready replicas per StatefulSet.", items.iter().map(|s| (base(s), f64::from(status(s).ready_replicas.unwrap_or(0)))));
    page.gauge("kube_statefulset_status_replicas_current", "The number of current replicas per StatefulSet.", items.iter().map(|s| (base(s), f64::from(status(s).current_replicas.unwrap_or(0)))));
    page.gauge("kube_statefulset_status_replicas_updated", "The number of updated replicas per StatefulSet.", items.iter().map(|s| (base(s), f64::from(status(s).updated_replicas.unwrap_or(0)))));
    page.gauge("kube_statefulset_status_observed_generation", "The generation observed by the StatefulSet controller.", items.iter().map(|s| (base(s), status(s).observed_generation.unwrap_or(0) as f64)));
    page.gauge("kube_statefulset_metadata_generation", "Sequence number representing a specific generation of the desired state for the StatefulSet.", items.iter().map(|s| (base(s), s.metadata.generation.unwrap_or(0) as f64)));
    page.gauge("kube_statefulset_status_current_revision", "Indicates the version of the StatefulSet used to generate Pods in the sequence [0,currentReplicas).", items.iter().map(|s| (with(&base(s), &[("revision", status(s).current_revision.unwrap_or_default())]), 1.0)));
    page.gauge("kube_statefulset_status_update_revision", "Indicates the version of the StatefulSet used to generate Pods in the sequence [replicas-updatedReplicas,replicas)", items.iter().map(|s| (with(&base(s), &[("revision", status(s).update_revision.unwrap_or_default())]), 1.0)));
}

fn daemonsets(page: &mut Page, items: &[DaemonSet]) {
    let base = |d: &DaemonSet| -> Labels { vec![("namespace", namespace(&d.metadata)), ("daemonset", name(&d.metadata))] };
    let status = |d: &DaemonSet| d.status.clone().unwrap_or_default();
    page.gauge("kube_daemonset_status_current_number_scheduled", "The number of nodes running at least one daemon pod and are supposed to.", items.iter().map(|d| (base(d), f64::from(status(d).current_number_scheduled))));
    page.gauge("kube_daemonset_status_desired_number_scheduled", "The number of nodes that should be running the daemon pod.", items.iter().map(|d| (base(d), f64::from(status(d).desired_number_scheduled))));
    page.gauge("kube_daemonset_status_number_available", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available", items.iter().map(|d| (base(d), f64::from(status(d).number_available.unwrap_or(0)))));
    page.gauge("kube_daemonset_status_number_misscheduled", "The number of nodes running a daemon pod but are not supposed to.", items.iter().map(|d| (base(d), f64::from(status(d).number_misscheduled))));
    page.gauge("kube_daemonset_status_number_ready", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.", items.iter().map(|d| (base(d), f64::from(status(d).number_ready))));
    page.gauge("kube_daemonset_status_number_unavailable", "The number of nodes that should be running the daemon pod and have none of the daemon pod running and available", items.iter().map(|d| (base(d), f64::from(status(d).number_unavailable.unwrap_or(0)))));
    page.gauge("kube_daemonset_status_updated_number_scheduled", "The total number of nodes that are running updated daemon pod", items.iter().map(|d| (base(d), f64::from(status(d).updated_number_scheduled.unwrap_or(0)))));
    page.gauge("kube_daemonset_status_observed_generation", "The most recent generation observed by the daemon set controller.", items.iter().map(|d| (base(d), status(d).observed_generation.unwrap_or(0) as f64)));
    page.gauge("kube_daemonset_metadata_generation", "Sequence number representing a specific generation of the desired state.", items.iter().map(|d| (base(d), d.metadata.generation.unwrap_or(0) as f64)));
}

fn jobs(page: &mut Page, items: &[Job]) {
    let base = |j: &Job| -> Labels { vec![("namespace", namespace(&j.metadata)), ("job_name", name(&j.metadata))] };
    let status = |j: &Job| j.status.clone().unwrap_or_default();
    page.gauge("kube_job_info", "Information about job.", items.iter().map(|j| (base(j), 1.0)));
    page.gauge(
        "kube_job_owner",
        "Information about the Job's owner.",
        items.iter().flat_map(|j| {
            let owners = j.metadata.owner_references.clone().unwrap_or_default();
            let none = owners.is_empty().then(|| with(&base(j), &[("owner_kind", "<none>".into()), ("owner_name", "<none>".into()), ("owner_is_controller", "<none>".into())]));
            owners.iter().map(|o| with(&base(j), &[("owner_kind", o.kind.clone()), ("owner_name", o.name.clone()), ("owner_is_controller", o.controller.unwrap_or(false).to_string())])).chain(none).map(|l| (l, 1.0)).collect::<Vec<_>>()
        }),
    );
    page.gauge("kube_job_created", "Unix creation timestamp", items.iter().filter_map(|j| Some((base(j), created(&j.metadata)?))));
    page.gauge("kube_job_spec_completions", "The desired number of successfully finished pods the job should be run with.", items.iter().filter_map(|j| Some((base(j), f64::from(j.spec.as_ref()?.completions?)))));
    page.gauge("kube_job_spec_parallelism", "The maximum desired number of pods the job should run at any given time.", items.iter().filter_map(|j| Some((base(j), f64::from(j.spec.as_ref()?.parallelism?)))));
    page.gauge("kube_job_status_active", "The number of actively running pods.", items.iter().map(|j| (base(j), f64::from(status(j).active.unwrap_or(0)))));
    page.gauge("kube_job_status_succeeded", "The number of pods which reached Phase Succeeded.", items.iter().map(|j| (base(j), f64::from(status(j).succeeded.unwrap_or(0)))));
    page.gauge("kube_job_status_failed", "The number of pods which reached Phase Failed and the reason for failure.", items.iter().map(|j| (base(j), f64::from(status(j).failed.unwrap_or(0)))));
    page.gauge("kube_job_status_start_time", "StartTime represents time when the job was acknowledged by the Job Manager.", items.iter().filter_map(|j| Some((base(j), seconds(&status(j).start_time)?))));
    page.gauge("kube_job_status_completion_time", "CompletionTime represents time when the job was completed.", items.iter().filter_map(|j| Some((base(j), seconds(&status(j).completion_time)?))));
    for (metric, kind, help) in [("kube_job_complete", "Complete", "The job has completed its execution."), ("kube_job_failed", "Failed", "The job has failed its execution.")] {
        page.gauge(
            metric,
            help,
            items.iter().flat_map(|j| {
                status(j).conditions.unwrap_or_default().iter().filter(|c| c.type_ == kind).flat_map(|c| ["true", "false", "unknown"].map(|s| (with(&base(j), &[("condition", s.into())]), flag(c.status.eq_ignore_ascii_case(s))))).collect::<Vec<_>>()
            }),
        );
    }
}

fn cronjobs(page: &mut Page, items: &[CronJob]) {
    let base = |c: &CronJob| -> Labels { vec![("namespace", namespace(&c.metadata)), ("cronjob", name(&c.metadata))] };
    page.gauge(
        "kube_cronjob_info",
        "Info about cronjob.",
        items.iter().map(|c| {
            let spec = c.spec.clone().unwrap_or_default();
            (with(&base(c), &[("schedule", spec.schedule), ("concurrency_policy", spec.concurrency_policy.unwrap_or_else(|| "Allow".into()))]), 1.0)
        }),
    );
    page.gauge("kube_cronjob_created", "Unix creation timestamp", items.iter().filter_map(|c| Some((base(c), created(&c.metadata)?))));
    page.gauge("kube_cronjob_spec_suspend", "Suspend flag tells the controller to suspend subsequent executions.", items.iter().map(|c| (base(c), flag(c.spec.as_ref().and_then(|s| s.suspend) == Some(true)))));
    page.gauge("kube_cronjob_status_active", "Active holds pointers to currently running jobs.", items.iter().map(|c| (base(c), c.status.as_ref().and_then(|s| s.active.as_ref()).map_or(0, Vec::len) as f64)));
    page.gauge("kube_cronjob_status_last_schedule_time", "LastScheduleTime keeps information of when was the last time the job was successfully scheduled.", items.iter().filter_map(|c| Some((base(c), seconds(&c.status.as_ref()?.last_schedule_time)?))));
}

fn hpas(page: &mut Page, items: &[HorizontalPodAutoscaler]) {
    let base = |h: &HorizontalPodAutoscaler| -> Labels { vec![("namespace", namespace(&h.metadata)), ("horizontalpodautoscaler", name(&h.metadata))] };
    let status = |h: &HorizontalPodAutoscaler| h.status.clone().unwrap_or_default();
    page.gauge(
        "kube_horizontalpodautoscaler_info",
        "Information about this autoscaler.",
        items.iter().map(|h| {
            let target = h.spec.as_ref().map(|s| s.scale_target_ref.clone()).unwrap_or_default();
            (with(&base(h), &[("scaletargetref_api_version", target.api_version.unwrap_or_default()), ("scaletargetref_kind", target.kind), ("scaletargetref_name", target.name)]), 1.0)
        }),
    );
    page.gauge("kube_horizontalpodautoscaler_spec_max_replicas", "Upper limit for the number of pods that can be set by the autoscaler; cannot be smaller than MinReplicas.", items.iter().filter_map(|h| Some((base(h), f64::from(h.spec.as_ref()?.max_replicas)))));
    page.gauge("kube_horizontalpodautoscaler_spec_min_replicas", "Lower limit for the number of pods that can be set by the autoscaler, default 1.", items.iter().map(|h| (base(h), f64::from(h.spec.as_ref().and_then(|s| s.min_replicas).unwrap_or(1)))));
    page.gauge("kube_horizontalpodautoscaler_status_current_replicas", "Current number of replicas of pods managed by this autoscaler.", items.iter().map(|h| (base(h), f64::from(status(h).current_replicas.unwrap_or(0)))));
    page.gauge("kube_horizontalpodautoscaler_status_desired_replicas", "Desired number of replicas of pods managed by this autoscaler.", items.iter().map(|h| (base(h), f64::from(status(h).desired_replicas))));
    page.gauge(
        "kube_horizontalpodautoscaler_status_condition",
        "The condition of this autoscaler.",
        items.iter().flat_map(|h| status(h).conditions.unwrap_or_default().iter().flat_map(|c| condition_series(&base(h), &c.type_, &c.status)).collect::<Vec<_>>()),
    );
}

fn namespaces(page: &mut Page, items: &[Namespace]) {
    let base = |n: &Namespace| -> Labels { vec![("namespace", name(&n.metadata))] };
    page.gauge("kube_namespace_created", "Unix creation timestamp", items.iter().filter_map(|n| Some((base(n), created(&n.metadata)?))));
    page.gauge(
        "kube_namespace_status_phase",
        "kubernetes namespace status phase.",
        items.iter().flat_map(|n| {
            let phase = n.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Active".into());
            ["Active", "Terminating"].map(|each| (with(&base(n), &[("phase", each.into())]), flag(phase == each)))
        }),
    );
}

fn services(page: &mut Page, items: &[Service]) {
    let base = |s: &Service| -> Labels { vec![("namespace", namespace(&s.metadata)), ("service", name(&s.metadata)), ("uid", uid(&s.metadata))] };
    page.gauge(
        "kube_service_info",
        "Information about service.",
        items.iter().map(|s| {
            let spec = s.spec.clone().unwrap_or_default();
            (with(&base(s), &[("cluster_ip", spec.cluster_ip.unwrap_or_default()), ("external_name", spec.external_name.unwrap_or_default()), ("load_balancer_ip", spec.load_balancer_ip.unwrap_or_default())]), 1.0)
        }),
    );
    page.gauge("kube_service_created", "Unix creation timestamp", items.iter().filter_map(|s| Some((base(s), created(&s.metadata)?))));
    page.gauge("kube_service_spec_type", "Type about service.", items.iter().map(|s| (with(&base(s), &[("type", s.spec.as_ref().and_then(|s| s.type_.clone()).unwrap_or_else(|| "ClusterIP".into()))]), 1.0)));
}

fn endpoints(page: &mut Page, items: &[Endpoints]) {
    let base = |e: &Endpoints| -> Labels { vec![("namespace", namespace(&e.metadata)), ("endpoint", name(&e.metadata))] };
    page.gauge("kube_endpoint_info", "Information about endpoint.", items.iter().map(|e| (base(e), 1.0)));
    page.gauge("kube_endpoint_created", "Unix creation timestamp", items.iter().filter_map(|e| Some((base(e), created(&e.metadata)?))));
    page.gauge(
        "kube_endpoint_address",
        "Information about Endpoint available and non available addresses.",
        items.iter().flat_map(|e| {
            e.subsets.iter().flatten().flat_map(|s| {
                let ready = s.addresses.iter().flatten().map(|a| (a.ip.clone(), "true"));
                let not_ready = s.not_ready_addresses.iter().flatten().map(|a| (a.ip.clone(), "false"));
                ready.chain(not_ready).map(|(ip, r)| (with(&base(e), &[("ip", ip), ("ready", r.into())]), 1.0)).collect::<Vec<_>>()
            }).collect::<Vec<_>>()
        }),
    );
}

fn claims(page: &mut Page, items: &[PersistentVolumeClaim]) {
    let base = |c: &PersistentVolumeClaim| -> Labels { vec![("namespace", namespace(&c.metadata)), ("persistentvolumeclaim", name(&c.metadata))] };
    page.gauge(
        "kube_persistentvolumeclaim_info",
        "Information about persistent volume claim.",
        items.iter().map(|c| {
            let spec = c.spec.clone().unwrap_or_default();
            (with(&base(c), &[("storageclass", spec.storage_class_name.unwrap_or_default()), ("volumename", spec.volume_name.unwrap_or_default()), ("volumemode", spec.volume_mode.unwrap_or_else(|| "Filesystem".into()))]), 1.0)
        }),
    );
    page.gauge(
        "kube_persistentvolumeclaim_status_phase",
        "The phase the persistent volume claim is currently in.",
        items.iter().flat_map(|c| {
            let phase = c.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            ["Lost", "Bound", "Pending"].map(|each| (with(&base(c), &[("phase", each.into())]), flag(phase == each)))
        }),
    );
    page.gauge(
        "kube_persistentvolumeclaim_resource_requests_storage_bytes",
        "The capacity of storage requested by the persistent volume claim.",
        items.iter().filter_map(|c| Some((base(c), resource_value("storage", c.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?.get("storage")?)?.0))),
    );
    page.gauge(
        "kube_persistentvolumeclaim_access_mode",
        "The access mode(s) specified by the persistent volume claim.",
        items.iter().flat_map(|c| c.spec.iter().flat_map(|s| s.access_modes.iter().flatten()).map(|m| (with(&base(c), &[("access_mode", m.clone())]), 1.0)).collect::<Vec<_>>()),
    );
}

fn volumes(page: &mut Page, items: &[PersistentVolume]) {
    let base = |v: &PersistentVolume| -> Labels { vec![("persistentvolume", name(&v.metadata))] };
    page.gauge(
        "kube_persistentvolume_info",
        "Information about persistentvolume.",
        items.iter().map(|v| {
            let spec = v.spec.clone().unwrap_or_default();
            let csi = spec.csi.clone().unwrap_or_default();
            (with(&base(v), &[("storageclass", spec.storage_class_name.unwrap_or_default()), ("csi_driver", csi.driver), ("csi_volume_handle", csi.volume_handle)]), 1.0)
        }),
    );
    page.gauge(
        "kube_persistentvolume_status_phase",
        "The phase indicates if a volume is available, bound to a claim, or released by a claim.",
        items.iter().flat_map(|v| {
            let phase = v.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            ["Pending", "Available", "Bound", "Released", "Failed"].map(|each| (with(&base(v), &[("phase", each.into())]), flag(phase == each)))
        }),
    );
    page.gauge("kube_persistentvolume_capacity_bytes", "Persistentvolume capacity in bytes.", items.iter().filter_map(|v| Some((base(v), resource_value("storage", v.spec.as_ref()?.capacity.as_ref()?.get("storage")?)?.0))));
    page.gauge(
        "kube_persistentvolume_claim_ref",
        "Information about the Persistent Volume Claim Reference.",
        items.iter().filter_map(|v| {
            let claim = v.spec.as_ref()?.claim_ref.clone()?;
            Some((with(&base(v), &[("name", claim.name.unwrap_or_default()), ("claim_namespace", claim.namespace.unwrap_or_default())]), 1.0))
        }),
    );
}

fn quotas(page: &mut Page, items: &[ResourceQuota]) {
    let base = |q: &ResourceQuota| -> Labels { vec![("namespace", namespace(&q.metadata)), ("resourcequota", name(&q.metadata))] };
    page.gauge("kube_resourcequota_created", "Unix creation timestamp", items.iter().filter_map(|q| Some((base(q), created(&q.metadata)?))));
    page.gauge(
        "kube_resourcequota",
        "Information about resource quota.",
        items.iter().flat_map(|q| {
            let status = q.status.clone().unwrap_or_default();
            let hard: BTreeMap<String, Quantity> = status.hard.unwrap_or_default();
            let used: BTreeMap<String, Quantity> = status.used.unwrap_or_default();
            let series = |kind: &'static str, amounts: BTreeMap<String, Quantity>| {
                let base = base(q);
                amounts.into_iter().filter_map(move |(resource, amount)| Some((with(&base, &[("resource", resource.clone()), ("type", kind.into())]), skiff_quantity::milli(&amount.0)? as f64 / 1000.0)))
            };
            series("hard", hard).chain(series("used", used)).collect::<Vec<_>>()
        }),
    );
}

fn budgets(page: &mut Page, items: &[PodDisruptionBudget]) {
    let base = |b: &PodDisruptionBudget| -> Labels { vec![("namespace", namespace(&b.metadata)), ("poddisruptionbudget", name(&b.metadata))] };
    let status = |b: &PodDisruptionBudget| b.status.clone().unwrap_or_default();
    page.gauge("kube_poddisruptionbudget_created", "Unix creation timestamp", items.iter().filter_map(|b| Some((base(b), created(&b.metadata)?))));
    page.gauge("kube_poddisruptionbudget_status_current_healthy", "Current number of healthy pods", items.iter().map(|b| (base(b), f64::from(status(b).current_healthy))));
    page.gauge("kube_poddisruptionbudget_status_desired_healthy", "Minimum desired number of healthy pods", items.iter().map(|b| (base(b), f64::from(status(b).desired_healthy))));
    page.gauge("kube_poddisruptionbudget_status_expected_pods", "Total number of pods counted by this disruption budget", items.iter().map(|b| (base(b), f64::from(status(b).expected_pods))));
    page.gauge("kube_poddisruptionbudget_status_pod_disruptions_allowed", "Number of pod disruptions that are currently allowed", items.iter().map(|b| (base(b), f64::from(status(b).disruptions_allowed))));
    page.gauge("kube_poddisruptionbudget_status_observed_generation", "Most recent generation observed when updating this PDB status", items.iter().map(|b| (base(b), status(b).observed_generation.unwrap_or(0) as f64)));
}

//! AppSafe's controller: one AppGroup per workload, named after its top
//! owner (a Deployment's pods make the group named after the Deployment,
//! not its ReplicaSet), with the mode its namespace asks for; each group's
//! running members counted; and a group in Protect enforced as an ordinary
//! NetworkPolicy it owns, written from what it learned, so
//! `kubectl get networkpolicy` shows exactly what is enforced. Learning
//! itself is the node agents' (their flow observers merge what they see
//! into the groups' status).
//!
//! Everything is reconciled in one pass over the cluster's pods and groups
//! whenever any of them changes (changes that come together are taken
//! together): the pass is linear in pods plus groups.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use serde_json::{json, Value};
use skiff_api::appsafe::{AppGroup, GroupKey, LearnedFlow, Peer, MODES, MODE_LABEL, PROTECT};

use crate::common::{controller_of, selects};
use crate::informers::{ready, Informer};

/// Labels that differ between the pods of one workload: left out of the
/// selector a group is made with.
const PER_POD_LABELS: [&str; 8] = [
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-completion-index",
];

/// ...and, for a CronJob's pods, the name of each run's Job.
const PER_JOB_LABELS: [&str; 2] = ["job-name", "batch.kubernetes.io/job-name"];

/// The label on the NetworkPolicy a group in Protect owns.
const GROUP_LABEL: &str = "appsafe.skiff.io/group";

/// Changes this close together are reconciled in one pass...
const SETTLE: Duration = Duration::from_millis(250);
/// ...gathered for this long at most.
const MAX_SETTLE: Duration = Duration::from_secs(2);

struct Stores {
    pods: Store<Pod>,
    replicasets: Store<ReplicaSet>,
    jobs: Store<Job>,
    namespaces: Store<Namespace>,
    groups: Store<AppGroup>,
    policies: Store<NetworkPolicy>,
}

pub async fn run(client: kube::Client, pods: &Informer<Pod>, default_mode: String) {
    let replicasets = Informer::<ReplicaSet>::start(Api::all(client.clone()));
    let jobs = Informer::<Job>::start(Api::all(client.clone()));
    let namespaces = Informer::<Namespace>::start(Api::all(client.clone()));
    let groups = Informer::<AppGroup>::start(Api::all(client.clone()));
    let policies = Informer::<NetworkPolicy>::start(Api::all(client.clone()));
    let stores = Stores { pods: pods.store(), replicasets: replicasets.store(), jobs: jobs.store(), namespaces: namespaces.store(), groups: groups.store(), policies: policies.store() };
    let mut changes = futures::stream::select_all([
        pods.subscribe().map(|_| ()).boxed(),
        replicasets.subscribe().map(|_| ()).boxed(),
        jobs.subscribe().map(|_| ()).boxed(),
        namespaces.subscribe().map(|_| ()).boxed(),
        groups.subscribe().map(|_| ()).boxed(),
        policies.subscribe().map(|_| ()).boxed(),
    ]);
    // Nothing is made or removed from a partial view of the cluster.
    let listed = ready(&stores.pods).await.is_ok()
        && ready(&stores.replicasets).await.is_ok()
        && ready(&stores.jobs).await.is_ok()
        && ready(&stores.namespaces).await.is_ok()
        && ready(&stores.groups).await.is_ok()
        && ready(&stores.policies).await.is_ok();
    if !listed {
        return;
    }
    let mut dns = None;
    loop {
        if dns.is_none() {
            dns = cluster_dns(&client).await;
        }
        if let Err(e) = reconcile(&client, &stores, &default_mode, dns.as_deref()).await {
            tracing::warn!("appsafe: {e}");
        }
        // The next change (or a retry of what failed), then those close behind it.
        if tokio::time::timeout(Duration::from_secs(30), changes.next()).await.is_ok_and(|c| c.is_none()) {
            return;
        }
        // Bounded, so that a cluster that never stops changing is still reconciled.
        let until = tokio::time::Instant::now() + MAX_SETTLE;
        while tokio::time::Instant::now() < until {
            if !matches!(tokio::time::timeout(SETTLE, changes.next()).await, Ok(Some(()))) {
                break;
            }
        }
    }
}

/// The cluster DNS Service's address, which a group in Protect may always reach.
async fn cluster_dns(client: &kube::Client) -> Option<String> {
    let service = Api::<Service>::namespaced(client.clone(), "kube-system").get_opt("kube-dns").await.ok()??;
    service.spec?.cluster_ip.filter(|ip| ip != "None")
}

/// The group a pod belongs in: its top owner's kind and name (the pod
/// itself when it has none), and the selector that holds its siblings.
#[derive(Debug, PartialEq)]
struct Workload {
    name: String,
    owner: OwnerReference,
    selector: BTreeMap<String, String>,
}

fn workload_of(pod: &Pod, replicasets: &Store<ReplicaSet>, jobs: &Store<Job>) -> Option<Workload> {
    let namespace = pod.metadata.namespace.as_deref()?;
    let mut owner = controller_of(&pod.metadata).cloned();
    let mut cronjob = false;
    // One step up: a ReplicaSet's Deployment, a Job's CronJob.
    if let Some(o) = &owner {
        let parent = match o.kind.as_str() {
            "ReplicaSet" => replicasets.get(&kube::runtime::reflector::ObjectRef::new(&o.name).within(namespace)).and_then(|rs| controller_of(&rs.metadata).cloned()),
            "Job" => jobs.get(&kube::runtime::reflector::ObjectRef::new(&o.name).within(namespace)).and_then(|job| controller_of(&job.metadata).cloned()),
            _ => None,
        };
        if let Some(parent) = parent {
            cronjob = parent.kind == "CronJob";
            owner = Some(parent);
        }
    }
    let owner = match owner {
        Some(o) => o,
        None => OwnerReference { api_version: "v1".into(), kind: "Pod".into(), name: pod.metadata.name.clone()?, uid: pod.metadata.uid.clone()?, ..Default::default() },
    };
    let mut selector = pod.metadata.labels.clone().unwrap_or_default();
    selector.retain(|k, _| !(PER_POD_LABELS.contains(&k.as_str()) || cronjob && PER_JOB_LABELS.contains(&k.as_str())));
    // Nothing a selector could tell this workload's pods by.
    if selector.is_empty() {
        return None;
    }
    Some(Workload { name: owner.name.clone(), owner: OwnerReference { controller: None, block_owner_deletion: None, ..owner }, selector })
}

fn namespaced_key(meta: &ObjectMeta) -> (String, String) {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

async fn reconcile(client: &kube::Client, stores: &Stores, default_mode: &str, dns: Option<&str>) -> Result<(), kube::Error> {
    let namespaces: BTreeMap<String, Arc<Namespace>> = stores.namespaces.state().into_iter().filter_map(|n| Some((n.metadata.name.clone()?, n))).collect();
    let groups: BTreeMap<GroupKey, Arc<AppGroup>> = stores.groups.state().into_iter().map(|g| (namespaced_key(&g.metadata), g)).collect();
    let pods = stores.pods.state();
    // A write that fails is tried again on the next pass; the others go on.
    let mut failed = None;
    // Groups for the workloads that have none.
    let mut made = BTreeSet::new();
    for pod in &pods {
        let Some(namespace) = pod.metadata.namespace.as_deref() else { continue };
        let asked = namespaces.get(namespace).and_then(|n| n.metadata.labels.as_ref()?.get(MODE_LABEL)).cloned();
        if pod.metadata.deletion_timestamp.is_some() || (namespace == "kube-system" && asked.is_none()) {
            continue;
        }
        let Some(workload) = workload_of(pod, &stores.replicasets, &stores.jobs) else { continue };
        let key = (namespace.to_string(), workload.name.clone());
        if groups.contains_key(&key) || !made.insert(key) {
            continue;
        }
        let mode = asked.filter(|m| MODES.contains(&m.as_str())).unwrap_or_else(|| default_mode.to_string());
        let group = json!({
            "apiVersion": skiff_api::appsafe::API_VERSION, "kind": "AppGroup",
            "metadata": {"name": workload.name, "namespace": namespace, "ownerReferences": [workload.owner]},
            "spec": {"mode": mode, "selector": {"matchLabels": workload.selector}},
        });
        let group: AppGroup = serde_json::from_value(group).expect("an AppGroup");
        match Api::<AppGroup>::namespaced(client.clone(), namespace).create(&PostParams::default(), &group).await {
            Ok(_) => tracing::info!(namespace, group = %workload.name, mode = %group.mode(), "appsafe: a new group"),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            // One namespace's refusal (it is terminating) holds no other back.
            Err(e) => failed = Some(e),
        }
    }
    // Members, and the policies of the groups in Protect.
    let mut owned: BTreeMap<(String, String), Arc<NetworkPolicy>> = stores
        .policies
        .state()
        .into_iter()
        .filter(|p| p.metadata.labels.as_ref().is_some_and(|l| l.contains_key(GROUP_LABEL)))
        .map(|p| (namespaced_key(&p.metadata), p))
        .collect();
    let members = count_members(&groups, &pods);
    for (key, group) in &groups {
        let held = owned.remove(&(key.0.clone(), format!("appsafe-{}", key.1)));
        let members = members.get(key).copied().unwrap_or(0);
        if let Err(e) = sync_group(client, key, group, members, held, &groups, dns).await {
            tracing::debug!(namespace = %key.0, group = %key.1, "appsafe: {e}");
            failed = Some(e);
        }
    }
    // Policies left by groups gone (the garbage collector also takes them).
    for held in owned.values() {
        if let Err(e) = delete(&Api::namespaced(client.clone(), held.metadata.namespace.as_deref().unwrap_or_default()), held).await {
            failed = Some(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

/// One group's member count, and its policy: written in Protect, removed
/// in the other modes.
async fn sync_group(
    client: &kube::Client,
    (namespace, name): &GroupKey,
    group: &AppGroup,
    members: i32,
    held: Option<Arc<NetworkPolicy>>,
    groups: &BTreeMap<GroupKey, Arc<AppGroup>>,
    dns: Option<&str>,
) -> Result<(), kube::Error> {
    if group.status.as_ref().map(|s| s.members) != Some(members) {
        let patch = Patch::Merge(json!({"status": {"members": members}}));
        Api::<AppGroup>::namespaced(client.clone(), namespace).patch_status(name, &PatchParams::default(), &patch).await?;
    }
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), namespace);
    if group.mode() != PROTECT {
        if let Some(held) = held {
            delete(&policies, &held).await?;
        }
        return Ok(());
    }
    let wanted = protect_policy(group, groups, dns);
    match held {
        None => {
            policies.create(&PostParams::default(), &wanted).await?;
        }
        Some(held) if held.spec != wanted.spec => {
            let mut replaced = wanted;
            replaced.metadata.resource_version = held.metadata.resource_version.clone();
            policies.replace(&format!("appsafe-{name}"), &PostParams::default(), &replaced).await?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// Each group's running pods, in one pass over the pods: a group is
/// looked up by one of its `matchLabels` pairs (every group Skiff makes has
/// them), so the cost is pods × their labels, not pods × groups. Groups
/// selecting by expressions alone are checked against every pod of their
/// namespace.
fn count_members(groups: &BTreeMap<GroupKey, Arc<AppGroup>>, pods: &[Arc<Pod>]) -> BTreeMap<GroupKey, i32> {
    let mut by_label: BTreeMap<(&str, &str, &str), Vec<&GroupKey>> = BTreeMap::new();
    let mut by_expression: BTreeMap<&str, Vec<&GroupKey>> = BTreeMap::new();
    for (key, group) in groups {
        let first = group.spec.selector.as_ref().and_then(|s| s.match_labels.as_ref()?.iter().next());
        match first {
            Some((k, v)) => by_label.entry((key.0.as_str(), k.as_str(), v.as_str())).or_default().push(key),
            None => by_expression.entry(key.0.as_str()).or_default().push(key),
        }
    }
    let mut members = BTreeMap::new();
    for pod in pods.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")) {
        let Some(namespace) = pod.metadata.namespace.as_deref() else { continue };
        let labels = pod.metadata.labels.as_ref();
        let by_its_labels = labels.into_iter().flatten().flat_map(|(k, v)| by_label.get(&(namespace, k.as_str(), v.as_str())).into_iter().flatten());
        for key in by_its_labels.chain(by_expression.get(namespace).into_iter().flatten()) {
            if groups[*key].spec.selector.as_ref().is_some_and(|s| selects(s, labels)) {
                *members.entry((*key).clone()).or_insert(0) += 1;
            }
        }
    }
    members
}

async fn delete(policies: &Api<NetworkPolicy>, held: &NetworkPolicy) -> Result<(), kube::Error> {
    match policies.delete(held.metadata.name.as_deref().unwrap_or_default(), &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// What a group in Protect may do, as a NetworkPolicy: its pods take the
/// connections it learned in and make those it learned out, and reach
/// the cluster DNS; nothing else.
fn protect_policy(group: &AppGroup, groups: &BTreeMap<GroupKey, Arc<AppGroup>>, dns: Option<&str>) -> NetworkPolicy {
    let namespace = group.metadata.namespace.clone().unwrap_or_default();
    let name = group.metadata.name.clone().unwrap_or_default();
    let status = group.status.clone().unwrap_or_default();
    let peer = |p: &Peer| -> Option<Value> {
        if let Some(cidr) = &p.cidr {
            return Some(json!({"ipBlock": {"cidr": cidr}}));
        }
        let namespace = p.namespace.clone().unwrap_or_else(|| namespace.clone());
        let other = groups.get(&(namespace.clone(), p.group.clone()?))?;
        Some(json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}, "podSelector": other.spec.selector.clone().unwrap_or_default()}))
    };
    // One rule per peer, with every port learned with it.
    let rules = |flows: &[LearnedFlow], side: &str| -> Vec<Value> {
        let mut by_peer: BTreeMap<Peer, BTreeSet<(i32, String)>> = BTreeMap::new();
        for flow in flows {
            if let Some(p) = flow.peer() {
                by_peer.entry(p.clone()).or_default().insert((flow.port, flow.protocol.clone()));
            }
        }
        by_peer
            .iter()
            .filter_map(|(p, ports)| {
                let ports: Vec<Value> = ports.iter().map(|(port, protocol)| json!({"port": port, "protocol": protocol})).collect();
                Some(json!({side: [peer(p)?], "ports": ports}))
            })
            .collect()
    };
    let mut egress = rules(&status.egress, "to");
    if let Some(dns) = dns {
        egress.push(json!({"to": [{"ipBlock": {"cidr": format!("{dns}/32")}}], "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}));
    }
    let owner = OwnerReference {
        api_version: skiff_api::appsafe::API_VERSION.into(),
        kind: "AppGroup".into(),
        name: name.clone(),
        uid: group.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("appsafe-{name}"), "namespace": namespace, "labels": {GROUP_LABEL: name}, "ownerReferences": [owner]},
        "spec": {
            "podSelector": group.spec.selector.clone().unwrap_or_default(),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": rules(&status.ingress, "from"),
            "egress": egress,
        },
    }))
    .expect("a NetworkPolicy")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(namespace: &str, name: &str, labels: Value, status: Value) -> Arc<AppGroup> {
        Arc::new(serde_json::from_value(json!({"metadata": {"name": name, "namespace": namespace, "uid": "u"}, "spec": {"mode": PROTECT, "selector": {"matchLabels": labels}}, "status": status})).unwrap())
    }

    #[test]
    fn protect_policies_allow_what_was_learned_and_dns() {
        let web = group("shop", "web", json!({"app": "web"}), json!({"members": 1,
            "ingress": [{"from": {"cidr": "192.0.2.7/32"}, "port": 80, "protocol": "TCP", "connections": 3}],
            "egress": [{"to": {"group": "db", "namespace": "data"}, "port": 5432, "protocol": "TCP", "connections": 9},
                       {"to": {"group": "db", "namespace": "data"}, "port": 5433, "protocol": "TCP", "connections": 1},
                       {"to": {"group": "gone", "namespace": "data"}, "port": 1, "protocol": "TCP", "connections": 1}]}));
        let db = group("data", "db", json!({"app": "db"}), json!({}));
        let groups: BTreeMap<_, _> = [(("shop".into(), "web".into()), web.clone()), (("data".into(), "db".into()), db)].into();
        let policy = serde_json::to_value(protect_policy(&web, &groups, Some("10.43.0.10"))).unwrap();
        assert_eq!(policy["metadata"]["name"], "appsafe-web");
        assert_eq!(policy["metadata"]["ownerReferences"][0]["kind"], "AppGroup");
        assert_eq!(policy["spec"]["podSelector"], json!({"matchLabels": {"app": "web"}}));
        assert_eq!(policy["spec"]["ingress"], json!([{"from": [{"ipBlock": {"cidr": "192.0.2.7/32"}}], "ports": [{"port": 80, "protocol": "TCP"}]}]));
        assert_eq!(
            policy["spec"]["egress"],
            json!([
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "data"}}, "podSelector": {"matchLabels": {"app": "db"}}}],
                 "ports": [{"port": 5432, "protocol": "TCP"}, {"port": 5433, "protocol": "TCP"}]},
                {"to": [{"ipBlock": {"cidr": "10.43.0.10/32"}}], "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            ])
        );
    }

    #[test]
    fn members_are_running_pods_the_selector_holds() {
        let by_expression: Arc<AppGroup> = Arc::new(serde_json::from_value(json!({"metadata": {"name": "any-web", "namespace": "shop"},
            "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}}})).unwrap());
        let groups: BTreeMap<_, _> = [
            (("shop".into(), "web".into()), group("shop", "web", json!({"app": "web", "tier": "front"}), json!({}))),
            (("shop".into(), "any-web".into()), by_expression),
            (("other".into(), "web".into()), group("other", "web", json!({"app": "web"}), json!({}))),
        ]
        .into();
        let pod = |ns: &str, labels: Value, phase: &str| Arc::new(serde_json::from_value::<Pod>(json!({"metadata": {"namespace": ns, "labels": labels}, "status": {"phase": phase}})).unwrap());
        let pods = [
            pod("shop", json!({"app": "web", "tier": "front"}), "Running"),
            pod("shop", json!({"app": "web"}), "Running"),
            pod("shop", json!({"app": "web", "tier": "front"}), "Pending"),
            pod("other", json!({"app": "web"}), "Running"),
        ];
        let members = count_members(&groups, &pods);
        assert_eq!(members.get(&("shop".to_string(), "web".to_string())), Some(&1));
        assert_eq!(members.get(&("shop".to_string(), "any-web".to_string())), Some(&2));
        assert_eq!(members.get(&("other".to_string(), "web".to_string())), Some(&1));
    }

    #[test]
    fn a_deployment_pod_makes_the_deployment_group_without_per_pod_labels() {
        let (rs_store, mut rs_writer) = kube::runtime::reflector::store::<ReplicaSet>();
        let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "web-5d8f", "namespace": "shop",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d1", "controller": true}]}})).unwrap();
        rs_writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(rs));
        let (jobs, _) = kube::runtime::reflector::store::<Job>();
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web-5d8f-x", "namespace": "shop", "uid": "p1",
            "labels": {"app": "web", "pod-template-hash": "5d8f"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f", "uid": "r1", "controller": true}]}})).unwrap();
        let w = workload_of(&pod, &rs_store, &jobs).unwrap();
        assert_eq!((w.name.as_str(), w.owner.kind.as_str(), w.owner.uid.as_str(), w.owner.controller), ("web", "Deployment", "d1", None));
        assert_eq!(w.selector, BTreeMap::from([("app".to_string(), "web".to_string())]));
        // A bare pod is its own group; one without labels cannot be told apart.
        let bare: Pod = serde_json::from_value(json!({"metadata": {"name": "tool", "namespace": "shop", "uid": "p2", "labels": {"run": "tool"}}})).unwrap();
        assert_eq!(workload_of(&bare, &rs_store, &jobs).unwrap().owner.kind, "Pod");
        let unlabelled: Pod = serde_json::from_value(json!({"metadata": {"name": "x", "namespace": "shop", "uid": "p3"}})).unwrap();
        assert!(workload_of(&unlabelled, &rs_store, &jobs).is_none());
    }
}

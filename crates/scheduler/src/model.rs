//! What the scheduler knows of pods and nodes: each object's scheduling
//! facts, computed once when it is seen.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, PodStatus, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity;

/// Amounts of resources: CPU in millicores, the rest in units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended resources (`example.com/gpu`) and hugepages.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// A request or allocatable list; an amount that is not a quantity,
    /// or is negative (which validation refuses), counts as none.
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let mut out = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            let milli = || quantity::milli(&q.0).unwrap_or(0).max(0);
            let units = || quantity::value(&q.0).unwrap_or(0).max(0);
            match name.as_str() {
                "cpu" => out.milli_cpu = milli(),
                "memory" => out.memory = units(),
                "ephemeral-storage" => out.ephemeral_storage = units(),
                "pods" => {}
                other => {
                    out.scalar.insert(other.to_string(), units());
                }
            }
        }
        out
    }

    // Saturating: amounts near i64::MAX (`8Ei` of memory) must not
    // overflow when summed.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = e.saturating_add(*v);
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_sub(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = e.saturating_sub(*v);
        }
    }

    /// The larger of each amount.
    fn max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

/// Upstream's scoring counts a container without requests as asking for
/// 100m CPU and 200 MiB, so empty pods still spread.
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 << 20;

/// A host port a pod takes: protocol, port, host IP ("" for all).
pub type HostPort = (String, i32, String);

#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub uid: String,
    pub key: String,
    pub node: Option<String>,
    pub requests: Resources,
    /// Requests with upstream's defaults for scoring.
    pub nonzero: (i64, i64),
    pub ports: Vec<HostPort>,
    pub priority: i32,
    /// Succeeded or Failed: holds no resources.
    pub terminal: bool,
    /// Has topology spread constraints or inter-pod (anti-)affinity.
    pub depends_on_pods: bool,
    /// Has required anti-affinity: other pods must keep out of its domains.
    pub repels: bool,
    /// The PersistentVolumeClaims its volumes use (VolumeBinding).
    pub claims: Vec<(String, bool)>,
}

/// Drops from a pod what neither scheduling nor any controller reads,
/// before the pod is kept in a cache of every pod: a pod's typed form is
/// about 16 KiB with a service account's token volume and the kubelet's
/// status, and the scheduler and the controller manager each hold every
/// pod of the cluster. Dropped: managedFields; the volumes that are not
/// claims (VolumeBinding and StatefulSets read those); of each container
/// all but its name, image, ports and resources (fit, ImageLocality, named
/// target ports, quotas, the autoscaler) and restart policy (sidecars).
pub fn drop_unread(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    let Some(spec) = pod.spec.as_mut() else { return };
    let mut volumes = spec.volumes.take().unwrap_or_default();
    volumes.retain(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some());
    // A volume is 3 KiB inline: no room is kept for those dropped.
    volumes.shrink_to_fit();
    spec.volumes = Some(volumes).filter(|v| !v.is_empty());
    spec.ephemeral_containers = None;
    for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        *c = Container { name: std::mem::take(&mut c.name), image: c.image.take(), ports: c.ports.take(), resources: c.resources.take(), restart_policy: c.restart_policy.take(), ..Container::default() };
    }
}

/// A pod as the scheduler's watch decodes it: without managedFields,
/// which scheduling never reads and which cost about as much to decode as
/// the rest of the pod's metadata (every pod is decoded at least twice:
/// created, then bound).
#[derive(Clone, Debug)]
pub struct WatchedPod(pub Pod);

impl<'de> serde::Deserialize<'de> for WatchedPod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
        #[derive(serde::Deserialize)]
        struct Wire {
            #[serde(default)]
            metadata: Meta,
            spec: Option<PodSpec>,
            status: Option<PodStatus>,
        }
        /// ObjectMeta's fields but managedFields, which are skipped unparsed.
        #[derive(serde::Deserialize, Default)]
        #[serde(default, rename_all = "camelCase")]
        struct Meta {
            annotations: Option<BTreeMap<String, String>>,
            creation_timestamp: Option<Time>,
            deletion_grace_period_seconds: Option<i64>,
            deletion_timestamp: Option<Time>,
            finalizers: Option<Vec<String>>,
            generate_name: Option<String>,
            generation: Option<i64>,
            labels: Option<BTreeMap<String, String>>,
            name: Option<String>,
            namespace: Option<String>,
            owner_references: Option<Vec<OwnerReference>>,
            resource_version: Option<String>,
            self_link: Option<String>,
            uid: Option<String>,
        }
        let Wire { metadata: m, spec, status } = Wire::deserialize(d)?;
        let metadata = ObjectMeta {
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp,
            finalizers: m.finalizers,
            generate_name: m.generate_name,
            generation: m.generation,
            labels: m.labels,
            managed_fields: None,
            name: m.name,
            namespace: m.namespace,
            owner_references: m.owner_references,
            resource_version: m.resource_version,
            self_link: m.self_link,
            uid: m.uid,
        };
        Ok(WatchedPod(Pod { metadata, spec, status }))
    }
}

impl k8s_openapi::Resource for WatchedPod {
    const API_VERSION: &'static str = Pod::API_VERSION;
    const GROUP: &'static str = Pod::GROUP;
    const KIND: &'static str = Pod::KIND;
    const VERSION: &'static str = Pod::VERSION;
    const URL_PATH_SEGMENT: &'static str = Pod::URL_PATH_SEGMENT;
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for WatchedPod {
    type Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    fn metadata(&self) -> &Self::Ty {
        &self.0.metadata
    }
    fn metadata_mut(&mut self) -> &mut Self::Ty {
        &mut self.0.metadata
    }
}

/// Keeps of a pod what scheduling reads: what `drop_unread` keeps, and of
/// its status only the phase, nominated node and start time (preemption's
/// order).
pub fn keep_what_scheduling_reads(pod: &mut Pod) {
    drop_unread(pod);
    if let Some(status) = pod.status.as_mut() {
        *status = PodStatus { phase: status.phase.take(), nominated_node_name: status.nominated_node_name.take(), start_time: status.start_time.take(), ..PodStatus::default() };
    }
}

fn requests_of(c: &Container) -> Resources {
    Resources::from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let no_spec = PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&no_spec);
        // Upstream: the containers' sum (with restartable init containers,
        // which keep running) or the largest init container plus the
        // sidecars started before it, whichever is larger; plus overhead.
        let mut running = Resources::default();
        for c in &spec.containers {
            running.add(&requests_of(c));
        }
        let mut sidecars = Resources::default();
        let mut init_peak = Resources::default();
        for c in spec.init_containers.iter().flatten() {
            if c.restart_policy.as_deref() == Some("Always") {
                sidecars.add(&requests_of(c));
            } else {
                let mut step = requests_of(c);
                step.add(&sidecars);
                init_peak.max(&step);
            }
        }
        running.add(&sidecars);
        running.max(&init_peak);
        running.add(&Resources::from_list(spec.overhead.as_ref()));
        let nonzero = spec.containers.iter().fold((0, 0), |(cpu, mem), c| {
            let r = requests_of(c);
            let has = |name: &str| c.resources.as_ref().and_then(|r| r.requests.as_ref()).is_some_and(|q| q.contains_key(name));
            (
                i64::saturating_add(cpu, if has("cpu") { r.milli_cpu } else { DEFAULT_MILLI_CPU }),
                i64::saturating_add(mem, if has("memory") { r.memory } else { DEFAULT_MEMORY }),
            )
        });
        let ports = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let host = p.host_port.filter(|h| *h > 0)?;
                let ip = p.host_ip.clone().filter(|ip| ip != "0.0.0.0").unwrap_or_default();
                Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), host, ip))
            })
            .collect();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        PodInfo {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            key: format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default()),
            node: spec.node_name.clone().filter(|n| !n.is_empty()),
            requests: running,
            nonzero,
            ports,
            priority: spec.priority.unwrap_or(0),
            terminal: matches!(phase, Some("Succeeded" | "Failed")),
            depends_on_pods: crate::topology::depends_on_pods(&pod),
            claims: crate::volumes::claims_of(&pod),
            repels: spec.affinity.as_ref().and_then(|a| a.pod_anti_affinity.as_ref()).is_some_and(|a| a.required_during_scheduling_ignored_during_execution.as_ref().is_some_and(|t| !t.is_empty())),
            pod,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub name: String,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub requested: Resources,
    /// Requests with upstream's scoring defaults.
    pub nonzero: (i64, i64),
    pub pods: HashSet<String>,
    pub ports: Vec<HostPort>,
    /// The images the node reports, by normalized name, with their size.
    pub images: HashMap<String, i64>,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            allocatable: Resources::from_list(allocatable),
            allowed_pods: allocatable.and_then(|a| a.get("pods")).and_then(|q| quantity::value(&q.0)).unwrap_or(0),
            taints: node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default(),
            unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
            requested: Resources::default(),
            nonzero: (0, 0),
            pods: HashSet::new(),
            ports: Vec::new(),
            images: node
                .status
                .iter()
                .flat_map(|s| s.images.iter().flatten())
                .flat_map(|i| i.names.iter().flatten().map(move |n| (normalized_image(n), i.size_bytes.unwrap_or(0))))
                .collect(),
            node,
        }
    }

    /// The same node with a newer object, keeping what its pods use.
    pub fn refreshed(&self, node: Arc<Node>) -> NodeInfo {
        NodeInfo {
            requested: self.requested.clone(),
            nonzero: self.nonzero,
            pods: self.pods.clone(),
            ports: self.ports.clone(),
            ..NodeInfo::new(node)
        }
    }

    pub fn add_pod(&mut self, pod: &PodInfo) {
        if self.pods.insert(pod.uid.clone()) {
            self.requested.add(&pod.requests);
            self.nonzero.0 = self.nonzero.0.saturating_add(pod.nonzero.0);
            self.nonzero.1 = self.nonzero.1.saturating_add(pod.nonzero.1);
            self.ports.extend(pod.ports.iter().cloned());
        }
    }

    pub fn remove_pod(&mut self, pod: &PodInfo) {
        if self.pods.remove(&pod.uid) {
            self.requested.sub(&pod.requests);
            self.nonzero.0 = self.nonzero.0.saturating_sub(pod.nonzero.0);
            self.nonzero.1 = self.nonzero.1.saturating_sub(pod.nonzero.1);
            for port in &pod.ports {
                if let Some(i) = self.ports.iter().position(|p| p == port) {
                    self.ports.swap_remove(i);
                }
            }
        }
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.node.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }
}

/// An image name as a registry would resolve it (upstream's
/// `normalizedImageName` via the docker reference rules): `nginx` is
/// `docker.io/library/nginx:latest`.
pub fn normalized_image(name: &str) -> String {
    let (path, tagged) = match name.split_once('@') {
        Some(_) => (name.to_string(), true),
        None => {
            let last = name.rsplit('/').next().unwrap_or(name);
            (name.to_string(), last.contains(':'))
        }
    };
    let first = path.split('/').next().unwrap_or_default();
    let has_registry = path.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_registry {
        path
    } else if path.contains('/') {
        format!("docker.io/{path}")
    } else {
        format!("docker.io/library/{path}")
    };
    if tagged { full } else { format!("{full}:latest") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_pods_decode_as_pods_without_managed_fields() {
        let json = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7", "generateName": "p-", "generation": 1,
                "creationTimestamp": "2026-01-01T00:00:00Z", "deletionTimestamp": "2026-01-02T00:00:00Z", "deletionGracePeriodSeconds": 30,
                "labels": {"app": "a"}, "annotations": {"k": "v"}, "finalizers": ["f"],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "r", "controller": true}],
                "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"},
        });
        let mut expected: Pod = serde_json::from_value(json.clone()).unwrap();
        expected.metadata.managed_fields = None;
        let WatchedPod(pod) = serde_json::from_value(json).unwrap();
        assert_eq!(pod, expected, "every field but managedFields");
    }

    #[test]
    fn cached_pods_keep_what_scheduling_reads() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"app": "a"}, "managedFields": [{"manager": "kubectl"}]},
            "spec": {
                "containers": [{"name": "c", "image": "i", "env": [{"name": "E", "value": "v"}], "ports": [{"containerPort": 80, "hostPort": 8080}],
                    "resources": {"requests": {"cpu": "1"}}, "volumeMounts": [{"name": "token", "mountPath": "/t"}]}],
                "volumes": [{"name": "token", "projected": {"sources": []}}, {"name": "data", "persistentVolumeClaim": {"claimName": "d"}}],
                "affinity": {"podAntiAffinity": {}}
            },
            "status": {"phase": "Running", "nominatedNodeName": "n", "startTime": "2026-01-01T00:00:00Z", "podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let before = PodInfo::new(Arc::new(pod.clone()));
        keep_what_scheduling_reads(&mut pod);
        let after = PodInfo::new(Arc::new(pod.clone()));
        assert_eq!((before.requests, before.ports, before.claims), (after.requests, after.ports, after.claims));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.volumes.as_ref().unwrap().iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["data"]);
        assert!(spec.containers[0].env.is_none() && spec.containers[0].volume_mounts.is_none() && spec.affinity.is_some());
        let status = pod.status.unwrap();
        assert_eq!((status.phase.as_deref(), status.nominated_node_name.as_deref()), (Some("Running"), Some("n")));
        assert!(status.start_time.is_some() && status.conditions.is_none() && status.pod_ip.is_none() && pod.metadata.managed_fields.is_none());
    }
}

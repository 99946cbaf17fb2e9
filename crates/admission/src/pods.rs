//! The small plugins: each one rule about pods (or one other kind).

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::{Cluster, Operation, Plugin, Rejection, Request};

/// Every container list of a pod spec, with its field path.
pub(crate) fn containers_mut(spec: &mut Value) -> impl Iterator<Item = &mut Value> {
    let Some(spec) = spec.as_object_mut() else { return Vec::new().into_iter() };
    let mut all = Vec::new();
    for (field, list) in spec.iter_mut() {
        if matches!(field.as_str(), "initContainers" | "containers" | "ephemeralContainers") {
            all.extend(list.as_array_mut().into_iter().flatten());
        }
    }
    all.into_iter()
}

pub(crate) fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"].into_iter().flat_map(move |f| spec[f].as_array().into_iter().flatten())
}

/// A pod's requests or limits (`field`) as upstream totals them, in
/// milli-units: the containers' sum, or the largest init container if that
/// is more.
pub(crate) fn pod_totals(spec: &Value, field: &str) -> std::collections::BTreeMap<String, i64> {
    let mut out: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    let list = |c: &Value| c["resources"][field].as_object().cloned().unwrap_or_default();
    for c in spec["containers"].as_array().into_iter().flatten() {
        for (k, v) in list(c) {
            *out.entry(k).or_default() += v.as_str().and_then(skiff_quantity::milli).unwrap_or(0);
        }
    }
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        for (k, v) in list(c) {
            let e = out.entry(k).or_default();
            *e = (*e).max(v.as_str().and_then(skiff_quantity::milli).unwrap_or(0));
        }
    }
    out
}

pub(crate) fn creates_pod(req: &Request<'_>) -> bool {
    req.operation == Operation::Create && req.is("", "pods")
}

pub struct AlwaysAdmit;

#[async_trait]
impl Plugin for AlwaysAdmit {
    fn name(&self) -> &'static str {
        "AlwaysAdmit"
    }
}

pub struct AlwaysDeny;

#[async_trait]
impl Plugin for AlwaysDeny {
    fn name(&self) -> &'static str {
        "AlwaysDeny"
    }

    async fn validate(&self, req: &Request<'_>, _: &Value, _: &dyn Cluster) -> Result<(), Rejection> {
        Err(Rejection::forbidden(req, "admission control is denying all modifications"))
    }
}

/// The namespaces every cluster needs may not be deleted. (New content in
/// a missing or terminating namespace is refused by the registry itself,
/// which every create passes through.)
pub struct NamespaceLifecycle;

#[async_trait]
impl Plugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    async fn validate(&self, req: &Request<'_>, _: &Value, _: &dyn Cluster) -> Result<(), Rejection> {
        if req.operation == Operation::Delete && req.is("", "namespaces") && ["default", "kube-system", "kube-public"].contains(&req.name) {
            return Err(Rejection::forbidden(req, "this namespace may not be deleted"));
        }
        Ok(())
    }
}

/// Pods may not set the security context fields that choose who they run as.
pub struct SecurityContextDeny;

#[async_trait]
impl Plugin for SecurityContextDeny {
    fn name(&self) -> &'static str {
        "SecurityContextDeny"
    }

    async fn validate(&self, req: &Request<'_>, pod: &Value, _: &dyn Cluster) -> Result<(), Rejection> {
        if !req.is("", "pods") || !matches!(req.operation, Operation::Create | Operation::Update) {
            return Ok(());
        }
        let spec = &pod["spec"];
        let pod_level = &spec["securityContext"];
        for (field, name) in [("supplementalGroups", "SupplementalGroups"), ("seLinuxOptions", "SELinuxOptions"), ("runAsUser", "RunAsUser"), ("runAsGroup", "RunAsGroup"), ("fsGroup", "FSGroup")] {
            if !pod_level[field].is_null() {
                return Err(Rejection::forbidden(req, format!("pod.Spec.SecurityContext.{name} is forbidden")));
            }
        }
        for c in containers(spec) {
            for (field, name) in [("seLinuxOptions", "SELinuxOptions"), ("runAsUser", "RunAsUser"), ("runAsGroup", "RunAsGroup")] {
                if !c["securityContext"][field].is_null() {
                    return Err(Rejection::forbidden(req, format!("SecurityContext.{name} is forbidden")));
                }
            }
        }
        Ok(())
    }
}

/// No exec or attach into a pod that is privileged or shares the host's
/// PID or IPC namespace (upstream's DenyEscalatingExec).
pub struct DenyExecOnPrivileged;

#[async_trait]
impl Plugin for DenyExecOnPrivileged {
    fn name(&self) -> &'static str {
        "DenyExecOnPrivileged"
    }

    async fn validate(&self, req: &Request<'_>, pod: &Value, _: &dyn Cluster) -> Result<(), Rejection> {
        if req.operation != Operation::Connect || req.resource != "pods" || !matches!(req.subresource, "exec" | "attach") {
            return Ok(());
        }
        let spec = &pod["spec"];
        let why = if spec["hostPID"] == true {
            "cannot exec into or attach to a container using host pid"
        } else if spec["hostIPC"] == true {
            "cannot exec into or attach to a container using host ipc"
        } else if containers(spec).any(|c| c["securityContext"]["privileged"] == true) {
            "cannot exec into or attach to a privileged container"
        } else {
            return Ok(());
        };
        Err(Rejection::forbidden(req, why))
    }
}

/// Every container pulls its image, so a pod cannot use an image another
/// tenant pulled onto the node without the credentials for it.
pub struct AlwaysPullImages;

#[async_trait]
impl Plugin for AlwaysPullImages {
    fn name(&self) -> &'static str {
        "AlwaysPullImages"
    }

    async fn mutate(&self, req: &Request<'_>, pod: &mut Value, _: &dyn Cluster) -> Result<(), Rejection> {
        if req.is("", "pods") && matches!(req.operation, Operation::Create | Operation::Update) {
            for c in containers_mut(&mut pod["spec"]) {
                c["imagePullPolicy"] = json!("Always");
            }
        }
        Ok(())
    }

    async fn validate(&self, req: &Request<'_>, pod: &Value, _: &dyn Cluster) -> Result<(), Rejection> {
        if !req.is("", "pods") || !matches!(req.operation, Operation::Create | Operation::Update) {
            return Ok(());
        }
        for (field, list) in [("initContainers", &pod["spec"]["initContainers"]), ("containers", &pod["spec"]["containers"])] {
            for (i, c) in list.as_array().into_iter().flatten().enumerate() {
                if c["imagePullPolicy"] != "Always" {
                    let value = c["imagePullPolicy"].as_str().unwrap_or_default();
                    return Err(Rejection::forbidden(req, format!("spec.{field}[{i}].imagePullPolicy: Unsupported value: {value:?}: supported values: \"Always\"")));
                }
            }
        }
        Ok(())
    }
}

/// A pod's priority comes from its PriorityClass (or the global default).
pub struct Priority;

#[async_trait]
impl Plugin for Priority {
    fn name(&self) -> &'static str {
        "Priority"
    }

    async fn mutate(&self, req: &Request<'_>, pod: &mut Value, cluster: &dyn Cluster) -> Result<(), Rejection> {
        if !creates_pod(req) {
            return Ok(());
        }
        let spec = &mut pod["spec"];
        let class = match spec["priorityClassName"].as_str().filter(|n| !n.is_empty()) {
            Some(name) => match cluster.get("scheduling.k8s.io", "priorityclasses", None, name).await.map_err(Rejection::internal)? {
                Some(class) => Some(Value::clone(&class)),
                None => return Err(Rejection::forbidden(req, format!("no PriorityClass with name {name} was found"))),
            },
            None => {
                let classes = cluster.list("scheduling.k8s.io", "priorityclasses", None).await.map_err(Rejection::internal)?;
                classes.into_iter().filter(|c| c["globalDefault"] == true).min_by_key(|c| c["value"].as_i64())
            }
        };
        let value = class.as_ref().and_then(|c| c["value"].as_i64()).unwrap_or(0);
        if let Some(given) = spec["priority"].as_i64().filter(|p| *p != value) {
            return Err(Rejection::forbidden(req, format!("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name")));
        }
        spec["priority"] = json!(value);
        if let Some(class) = class {
            spec["priorityClassName"] = class["metadata"]["name"].clone();
            let policy = class["preemptionPolicy"].as_str().unwrap_or("PreemptLowerPriority");
            spec["preemptionPolicy"] = json!(policy);
        }
        Ok(())
    }
}


//! The resource table: every built-in API resource Skiff serves, one entry
//! each. Discovery, routing, storage keys and Table output are derived from
//! it. Kind, group, version, plural and scope come from k8s-openapi's types
//! so they cannot drift from upstream; short names, categories and
//! subresources are upstream's, as `kubectl api-resources` shows them.

use std::any::TypeId;
use std::sync::{LazyLock, Mutex, RwLock};

use k8s_openapi::{NamespaceResourceScope, Resource};

/// What a resource answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbs {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    All,
    /// Review kinds: create only, nothing stored.
    CreateOnly,
    /// get and list only (componentstatuses).
    ReadOnly,
}

impl Verbs {
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Verbs::All => &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            Verbs::CreateOnly => &["create"],
            Verbs::ReadOnly => &["get", "list"],
        }
    }
}

/// Decodes an object through the kind's typed struct: the object as the
/// struct keeps it (unknown fields dropped) and the paths of those dropped.
pub type TypedCheck = fn(&serde_json::Value) -> Result<(serde_json::Value, Vec<String>), String>;

#[derive(Debug, Clone)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: String,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    /// Subresources served under `{name}/{sub}`.
    pub subresources: &'static [&'static str],
    pub verbs: Verbs,
    pub typed: TypedCheck,
    /// Adds the kind's OpenAPI schema to a generator.
    pub schema: crate::schema::SchemaFn,
    /// The name of the kind's OpenAPI definition (`io.k8s.api.core.v1.Pod`).
    pub schema_name: fn() -> String,
    /// Set when objects are stored in another version of the resource.
    pub conversion: Option<&'static crate::conversion::Conversion>,
    /// Set for the resources CustomResourceDefinitions serve.
    pub custom: Option<crate::custom::CustomResource>,
}

/// `TypedCheck` for the k8s-openapi type `K`. Paths read as upstream
/// writes them: `spec.containers[0].foo`.
fn typed<K: serde::de::DeserializeOwned + serde::Serialize>(v: &serde_json::Value) -> Result<(serde_json::Value, Vec<String>), String> {
    let mut unknown = Vec::new();
    let obj: K = serde_ignored::deserialize(v, |path| unknown.push(upstream_path(&path.to_string())))
        .map_err(|e| e.to_string())?;
    Ok((serde_json::to_value(&obj).map_err(|e| e.to_string())?, unknown))
}

fn upstream_path(path: &str) -> String {
    let mut out = String::new();
    // serde_ignored writes `?` for each Option it passes through.
    for part in path.split('.').filter(|p| *p != "?") {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// A resource is identified by its group, version and plural.
impl PartialEq for ResourceDef {
    fn eq(&self, other: &Self) -> bool {
        (self.group, self.version, self.plural) == (other.group, other.version, other.plural)
    }
}

impl Eq for ResourceDef {}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Decodes an object as the resource's type does: unknown fields
    /// dropped (their paths returned), values of the wrong type refused.
    pub fn prune(&self, obj: &serde_json::Value) -> Result<(serde_json::Value, Vec<String>), String> {
        match &self.custom {
            Some(custom) => Ok(custom.prune(obj)),
            None => (self.typed)(obj),
        }
    }

    /// Whether objects are stored in this version (not converted).
    pub fn is_storage_version(&self) -> bool {
        self.conversion.is_none()
    }

    pub fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }

    /// The storage prefix for all objects of this resource (shared by the
    /// versions and groups that serve the same objects).
    pub fn key_prefix(&self) -> String {
        let group = self.conversion.map_or(self.group, |c| c.storage_group);
        if group.is_empty() {
            format!("/registry/{}/", self.plural)
        } else {
            format!("/registry/{group}/{}/", self.plural)
        }
    }

    /// Where one object lives in the store.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) => format!("{}{ns}/{name}", self.key_prefix()),
            None => format!("{}{name}", self.key_prefix()),
        }
    }

    /// The prefix listing one namespace, or everything.
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) => format!("{}{ns}/", self.key_prefix()),
            None => self.key_prefix(),
        }
    }
}

#[derive(Clone, Copy)]
struct Extra {
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [&'static str],
    verbs: Verbs,
}

const fn extra(short_names: &'static [&'static str], categories: &'static [&'static str], subresources: &'static [&'static str]) -> Extra {
    Extra {
        short_names,
        categories,
        subresources,
        verbs: Verbs::All,
    }
}

const NONE: &[&str] = &[];
const ALL: &[&str] = &["all"];
const STATUS: &[&str] = &["status"];

fn def<K: Resource + serde::de::DeserializeOwned + serde::Serialize + schemars::JsonSchema + 'static>(e: Extra) -> ResourceDef {
    ResourceDef {
        group: K::GROUP,
        version: K::VERSION,
        kind: K::KIND,
        plural: K::URL_PATH_SEGMENT,
        singular: K::KIND.to_ascii_lowercase(),
        short_names: e.short_names,
        categories: e.categories,
        namespaced: TypeId::of::<K::Scope>() == TypeId::of::<NamespaceResourceScope>(),
        subresources: e.subresources,
        verbs: e.verbs,
        typed: typed::<K>,
        schema: crate::schema::schema_of::<K>,
        schema_name: K::schema_name,
        conversion: None,
        custom: None,
    }
}

/// Every built-in resource, in discovery order.
pub static BUILTIN: LazyLock<Vec<ResourceDef>> = LazyLock::new(|| {
    use k8s_openapi::api::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
    let create_only = Extra {
        verbs: Verbs::CreateOnly,
        ..extra(NONE, NONE, NONE)
    };
    let pod_subresources: &'static [&'static str] =
        &["status", "binding", "eviction", "log", "exec", "attach", "portforward", "ephemeralcontainers", "proxy"];
    vec![
        // core/v1
        def::<core::v1::ComponentStatus>(Extra {
            verbs: Verbs::ReadOnly,
            ..extra(&["cs"], NONE, NONE)
        }),
        def::<core::v1::ConfigMap>(extra(&["cm"], NONE, NONE)),
        def::<core::v1::Endpoints>(extra(&["ep"], NONE, NONE)),
        def::<core::v1::Event>(extra(&["ev"], NONE, NONE)),
        def::<core::v1::LimitRange>(extra(&["limits"], NONE, NONE)),
        def::<core::v1::Namespace>(extra(&["ns"], NONE, &["status", "finalize"])),
        def::<core::v1::Node>(extra(&["no"], NONE, &["status", "proxy"])),
        def::<core::v1::PersistentVolumeClaim>(extra(&["pvc"], NONE, STATUS)),
        def::<core::v1::PersistentVolume>(extra(&["pv"], NONE, STATUS)),
        def::<core::v1::Pod>(extra(&["po"], ALL, pod_subresources)),
        def::<core::v1::PodTemplate>(extra(NONE, NONE, NONE)),
        def::<core::v1::ReplicationController>(extra(&["rc"], ALL, &["status", "scale"])),
        def::<core::v1::ResourceQuota>(extra(&["quota"], NONE, STATUS)),
        def::<core::v1::Secret>(extra(NONE, NONE, NONE)),
        def::<core::v1::ServiceAccount>(extra(&["sa"], NONE, &["token"])),
        def::<core::v1::Service>(extra(&["svc"], ALL, &["status", "proxy"])),
        // apps/v1
        def::<apps::v1::ControllerRevision>(extra(NONE, NONE, NONE)),
        def::<apps::v1::DaemonSet>(extra(&["ds"], ALL, STATUS)),
        def::<apps::v1::Deployment>(extra(&["deploy"], ALL, &["status", "scale"])),
        def::<apps::v1::ReplicaSet>(extra(&["rs"], ALL, &["status", "scale"])),
        def::<apps::v1::StatefulSet>(extra(&["sts"], ALL, &["status", "scale"])),
        // batch/v1
        def::<batch::v1::CronJob>(extra(&["cj"], ALL, STATUS)),
        def::<batch::v1::Job>(extra(NONE, ALL, STATUS)),
        // autoscaling
        def::<autoscaling::v2::HorizontalPodAutoscaler>(extra(&["hpa"], ALL, STATUS)),
        ResourceDef {
            conversion: Some(&crate::conversion::HPA_V1),
            ..def::<autoscaling::v1::HorizontalPodAutoscaler>(extra(&["hpa"], ALL, STATUS))
        },
        def::<coordination::v1::Lease>(extra(NONE, NONE, NONE)),
        def::<discovery::v1::EndpointSlice>(extra(NONE, NONE, NONE)),
        ResourceDef {
            conversion: Some(&crate::conversion::EVENTS_V1),
            ..def::<events::v1::Event>(extra(&["ev"], NONE, NONE))
        },
        // networking.k8s.io/v1
        def::<networking::v1::IngressClass>(extra(NONE, NONE, NONE)),
        def::<networking::v1::Ingress>(extra(&["ing"], NONE, STATUS)),
        def::<networking::v1::NetworkPolicy>(extra(&["netpol"], NONE, NONE)),
        def::<policy::v1::PodDisruptionBudget>(extra(&["pdb"], NONE, STATUS)),
        // rbac.authorization.k8s.io/v1
        def::<rbac::v1::ClusterRoleBinding>(extra(NONE, NONE, NONE)),
        def::<rbac::v1::ClusterRole>(extra(NONE, NONE, NONE)),
        def::<rbac::v1::RoleBinding>(extra(NONE, NONE, NONE)),
        def::<rbac::v1::Role>(extra(NONE, NONE, NONE)),
        def::<scheduling::v1::PriorityClass>(extra(&["pc"], NONE, NONE)),
        // storage.k8s.io/v1
        def::<storage::v1::CSIDriver>(extra(NONE, NONE, NONE)),
        def::<storage::v1::CSINode>(extra(NONE, NONE, NONE)),
        def::<storage::v1::CSIStorageCapacity>(extra(NONE, NONE, NONE)),
        def::<storage::v1::StorageClass>(extra(&["sc"], NONE, NONE)),
        def::<storage::v1::VolumeAttachment>(extra(NONE, NONE, STATUS)),
        def::<node::v1::RuntimeClass>(extra(NONE, NONE, NONE)),
        def::<certificates::v1::CertificateSigningRequest>(extra(&["csr"], NONE, &["status", "approval"])),
        // admissionregistration.k8s.io/v1
        def::<admissionregistration::v1::MutatingWebhookConfiguration>(extra(NONE, &["api-extensions"], NONE)),
        def::<admissionregistration::v1::ValidatingWebhookConfiguration>(extra(NONE, &["api-extensions"], NONE)),
        def::<admissionregistration::v1::ValidatingAdmissionPolicy>(extra(NONE, &["api-extensions"], STATUS)),
        def::<admissionregistration::v1::ValidatingAdmissionPolicyBinding>(extra(NONE, &["api-extensions"], NONE)),
        // flowcontrol.apiserver.k8s.io/v1
        def::<flowcontrol::v1::FlowSchema>(extra(NONE, NONE, STATUS)),
        def::<flowcontrol::v1::PriorityLevelConfiguration>(extra(NONE, NONE, STATUS)),
        def::<apiextensions::CustomResourceDefinition>(extra(&["crd", "crds"], &["api-extensions"], STATUS)),
        def::<apiregistration::APIService>(extra(NONE, &["api-extensions"], STATUS)),
        // Reviews: answered, never stored.
        def::<authentication::v1::TokenReview>(create_only),
        def::<authentication::v1::SelfSubjectReview>(create_only),
        def::<authorization::v1::LocalSubjectAccessReview>(create_only),
        def::<authorization::v1::SelfSubjectAccessReview>(create_only),
        def::<authorization::v1::SelfSubjectRulesReview>(create_only),
        def::<authorization::v1::SubjectAccessReview>(create_only),
        // appsafe.skiff.io/v1: Skiff's own.
        def::<crate::appsafe::AppGroup>(extra(&["ag"], NONE, STATUS)),
        // metrics.k8s.io: computed from the nodes' Summary API, not stored.
        def::<crate::metrics::NodeMetrics>(Extra { verbs: Verbs::ReadOnly, ..extra(NONE, NONE, NONE) }),
        def::<crate::metrics::PodMetrics>(Extra { verbs: Verbs::ReadOnly, ..extra(NONE, NONE, NONE) }),
    ]
});

/// The resources CustomResourceDefinitions serve now.
static CUSTOM: RwLock<Vec<&'static ResourceDef>> = RwLock::new(Vec::new());

/// Every resource served now: the built-in ones, then the custom ones.
pub fn all() -> Vec<&'static ResourceDef> {
    let custom = CUSTOM.read().unwrap_or_else(|e| e.into_inner());
    BUILTIN.iter().chain(custom.iter().copied()).collect()
}

/// Serves what `crds` (CustomResourceDefinition objects) define, and
/// nothing else custom. Definitions live for the rest of the process
/// (handlers hold `&'static` ones), so each distinct one is made once and
/// reused: memory grows with the distinct CRD versions ever served, not
/// with the number of updates.
pub fn set_custom(crds: &[serde_json::Value]) {
    static MADE: Mutex<Vec<(String, &'static ResourceDef)>> = Mutex::new(Vec::new());
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    let mut served = Vec::new();
    for crd in crds {
        for version in crate::custom::served_versions(crd) {
            let fingerprint = serde_json::json!([crd["spec"]["group"], crd["spec"]["names"], crd["spec"]["scope"], version]).to_string();
            let existing = made.iter().find(|(f, _)| *f == fingerprint).map(|(_, d)| *d);
            served.push(existing.unwrap_or_else(|| {
                let def: &'static ResourceDef = Box::leak(Box::new(crate::custom::definition(crd, version)));
                made.push((fingerprint, def));
                def
            }));
        }
    }
    *CUSTOM.write().unwrap_or_else(|e| e.into_inner()) = served;
}

/// The group versions served, in discovery order, with their resources.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in all() {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// The resource served as `plural` in `group`/`version`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    find_by(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The stored version of `plural` in `group`.
pub fn storage_version(group: &str, plural: &str) -> Option<&'static ResourceDef> {
    find_by(|r| r.group == group && r.plural == plural && r.is_storage_version())
}

/// The first definition that `is`, without collecting them all (this is
/// on every request's path).
fn find_by(is: impl Fn(&ResourceDef) -> bool) -> Option<&'static ResourceDef> {
    BUILTIN.iter().find(|r| is(r)).or_else(|| CUSTOM.read().unwrap_or_else(|e| e.into_inner()).iter().copied().find(|r| is(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_check_finds_and_drops_unknown_fields() {
        let pods = find("", "v1", "pods").unwrap();
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicyy": "x"}]},
        });
        let (pruned, unknown) = (pods.typed)(&pod).unwrap();
        assert_eq!(unknown, ["metadata.bogus", "spec.containers[0].imagePullPolicyy"]);
        assert!(pruned["metadata"].get("bogus").is_none());
        assert_eq!(pruned["spec"]["containers"][0]["image"], "i");
        let bad = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": "three", "selector": {}, "template": {}}});
        assert!((find("apps", "v1", "deployments").unwrap().typed)(&bad).is_err());
    }

    #[test]
    fn table_is_consistent() {
        let pods = find("", "v1", "pods").unwrap();
        assert!(pods.namespaced && pods.has_status());
        assert_eq!(pods.key(Some("default"), "web"), "/registry/pods/default/web");
        let ns = find("", "v1", "namespaces").unwrap();
        assert!(!ns.namespaced);
        let deploy = find("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.key_prefix(), "/registry/apps/deployments/");
        assert_eq!(deploy.api_version(), "apps/v1");
        // Plurals are unique within a group version.
        for r in BUILTIN.iter() {
            let same = BUILTIN
                .iter()
                .filter(|o| o.group == r.group && o.version == r.version && o.plural == r.plural)
                .count();
            assert_eq!(same, 1, "{} {}", r.api_version(), r.plural);
        }
    }
}

//! `appsafe.skiff.io/v1`: the AppGroup, Skiff's own built-in kind. A group
//! is one application (a workload's pods); its status holds the connections
//! learned while it was in Discover, and its mode says what happens to the
//! ones not learned: nothing (Discover, still learning), a report (Monitor)
//! or a block and a report (Protect).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, ObjectMeta, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "appsafe.skiff.io";
pub const API_VERSION: &str = "appsafe.skiff.io/v1";

pub const DISCOVER: &str = "Discover";
pub const MONITOR: &str = "Monitor";
pub const PROTECT: &str = "Protect";
pub const MODES: [&str; 3] = [DISCOVER, MONITOR, PROTECT];

/// A group by namespace and name.
pub type GroupKey = (String, String);

/// A namespace's label naming the mode its new groups start in.
pub const MODE_LABEL: &str = "appsafe.skiff.io/mode";

/// Learned connections kept per direction, and processes; past this a
/// group's `LearningFull` condition is True and nothing new is learned.
pub const MAX_LEARNED: usize = 256;

/// One application and what it was seen to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "io.skiff.appsafe.v1.AppGroup")]
pub struct AppGroup {
    /// Always written, as k8s-openapi's kinds write theirs.
    #[serde(rename = "apiVersion", default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: AppGroupSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AppGroupStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "io.skiff.appsafe.v1.AppGroupSpec")]
#[serde(rename_all = "camelCase")]
pub struct AppGroupSpec {
    /// Discover (the default), Monitor or Protect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The pods the group holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "io.skiff.appsafe.v1.AppGroupStatus")]
#[serde(rename_all = "camelCase")]
pub struct AppGroupStatus {
    /// Running pods the selector holds.
    #[serde(default)]
    pub members: i32,
    /// Connections learned into the group's pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<LearnedFlow>,
    /// Connections learned out of the group's pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<LearnedFlow>,
    /// Executables learned running in the group's pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<LearnedProcess>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A process the group's pods run: its name (as `ps` shows it) and the
/// executable's path inside the container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "io.skiff.appsafe.v1.LearnedProcess")]
#[serde(rename_all = "camelCase")]
pub struct LearnedProcess {
    pub name: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    /// Processes seen starting.
    #[serde(default)]
    pub count: i64,
}

/// A connection the group makes or takes: the peer (`from` on ingress,
/// `to` on egress), the destination port and protocol, and how often.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "io.skiff.appsafe.v1.LearnedFlow")]
#[serde(rename_all = "camelCase")]
pub struct LearnedFlow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Peer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Peer>,
    pub port: i32,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    #[serde(default)]
    pub connections: i64,
}

/// Another group (by name and namespace), or addresses outside the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "io.skiff.appsafe.v1.Peer")]
pub struct Peer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
}

fn api_version() -> String {
    API_VERSION.into()
}

fn kind() -> String {
    "AppGroup".into()
}

impl Default for AppGroup {
    fn default() -> Self {
        AppGroup { api_version: api_version(), kind: kind(), metadata: ObjectMeta::default(), spec: AppGroupSpec::default(), status: None }
    }
}

impl LearnedFlow {
    /// The other end: `from` on ingress, `to` on egress.
    pub fn peer(&self) -> Option<&Peer> {
        self.from.as_ref().or(self.to.as_ref())
    }
}

impl AppGroup {
    /// The group's mode, Discover when unset.
    pub fn mode(&self) -> &str {
        self.spec.mode.as_deref().unwrap_or(DISCOVER)
    }
}

impl k8s_openapi::Resource for AppGroup {
    const API_VERSION: &'static str = API_VERSION;
    const GROUP: &'static str = GROUP;
    const KIND: &'static str = "AppGroup";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "appgroups";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::ListableResource for AppGroup {
    const LIST_KIND: &'static str = "AppGroupList";
}

impl k8s_openapi::Metadata for AppGroup {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

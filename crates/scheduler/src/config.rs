//! The scheduler's configuration file, upstream's KubeSchedulerConfiguration
//! (`kubescheduler.config.k8s.io/v1`), read strictly as kube-scheduler reads
//! it (an unknown field is an error), and each profile's plugins merged as
//! upstream merges them: the default plugins (all `multiPoint`), less what
//! the profile disables, plus what it enables, per extension point.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

/// The plugins skiff runs, by upstream's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    SchedulingGates,
    NodeUnschedulable,
    NodeName,
    TaintToleration,
    NodeAffinity,
    NodePorts,
    NodeResourcesFit,
    VolumeBinding,
    PodTopologySpread,
    InterPodAffinity,
    DefaultPreemption,
    NodeResourcesBalancedAllocation,
    ImageLocality,
}

const PLUGINS: usize = 13;

/// The extension points a profile can turn a plugin on or off at. A
/// plugin's PreFilter runs with its Filter and its PreScore with its
/// Score, so `preFilter` and `preScore` configure those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    PreEnqueue,
    Filter,
    PostFilter,
    Score,
}

impl Point {
    fn name(self) -> &'static str {
        match self {
            Point::PreEnqueue => "PreEnqueue",
            Point::Filter => "Filter",
            Point::PostFilter => "PostFilter",
            Point::Score => "Score",
        }
    }
}

/// Each plugin: its name, the points it extends, its weight as a score in
/// the default profile (0: it does not score).
const KNOWN: [(Plugin, &str, &[Point], i64); PLUGINS] = {
    use Point::*;
    [
        (Plugin::SchedulingGates, "SchedulingGates", &[PreEnqueue], 0),
        (Plugin::NodeUnschedulable, "NodeUnschedulable", &[Filter], 0),
        (Plugin::NodeName, "NodeName", &[Filter], 0),
        (Plugin::TaintToleration, "TaintToleration", &[Filter, Score], 3),
        (Plugin::NodeAffinity, "NodeAffinity", &[Filter, Score], 2),
        (Plugin::NodePorts, "NodePorts", &[Filter], 0),
        (Plugin::NodeResourcesFit, "NodeResourcesFit", &[Filter, Score], 1),
        (Plugin::VolumeBinding, "VolumeBinding", &[Filter], 0),
        (Plugin::PodTopologySpread, "PodTopologySpread", &[Filter, Score], 2),
        (Plugin::InterPodAffinity, "InterPodAffinity", &[Filter, Score], 2),
        (Plugin::DefaultPreemption, "DefaultPreemption", &[PostFilter], 0),
        (Plugin::NodeResourcesBalancedAllocation, "NodeResourcesBalancedAllocation", &[Score], 1),
        (Plugin::ImageLocality, "ImageLocality", &[Score], 1),
    ]
};

/// Upstream plugins skiff does not run (volume limits per cloud disk type,
/// volume zones, dynamic resources): a profile may disable them, not
/// enable them.
const NOT_RUN: [&str; 7] = ["VolumeRestrictions", "NodeVolumeLimits", "EBSLimits", "GCEPDLimits", "AzureDiskLimits", "VolumeZone", "DynamicResources"];

impl Plugin {
    /// Its name; `KNOWN` lists the plugins in the enum's order.
    fn name(self) -> &'static str {
        KNOWN[self as usize].1
    }
}

/// How NodeResourcesFit scores a node (`scoringStrategy`).
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// Favours nodes with more left free (spreading).
    LeastAllocated,
    /// Favours nodes with less left free (bin packing).
    MostAllocated,
    /// A score for each utilization (0–100 %), linear between the points
    /// given, on upstream's 0–10 scale.
    RequestedToCapacityRatio(Vec<(i64, i64)>),
}

/// One profile, as the scheduler runs it.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Pods whose `schedulerName` is this are this profile's.
    pub name: String,
    /// Which plugins run at their pre-enqueue, filter or post-filter point.
    runs: [bool; PLUGINS],
    weights: [i64; PLUGINS],
    /// Share of the nodes to find feasible before scoring (1–100); None
    /// adapts to the cluster's size, as upstream.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// NodeResourcesFit's scoring, and the resources it weighs.
    pub fit_strategy: Strategy,
    pub fit_resources: Vec<(String, i64)>,
    /// Extended resources NodeResourcesFit does not check: by name, and by
    /// the group before their `/`.
    pub fit_ignored: Vec<String>,
    pub fit_ignored_groups: Vec<String>,
    /// The resources NodeResourcesBalancedAllocation balances.
    pub balanced_resources: Vec<(String, i64)>,
    /// How long VolumeBinding waits for a pod's volumes to bind.
    pub bind_timeout: Duration,
}

fn cpu_and_memory() -> Vec<(String, i64)> {
    vec![("cpu".into(), 1), ("memory".into(), 1)]
}

impl Profile {
    /// A profile with upstream's default plugins and arguments.
    pub fn default_named(name: &str) -> Profile {
        let mut profile = Profile {
            name: name.to_string(),
            runs: [true; PLUGINS],
            weights: [0; PLUGINS],
            percentage_of_nodes_to_score: None,
            fit_strategy: Strategy::LeastAllocated,
            fit_resources: cpu_and_memory(),
            fit_ignored: Vec::new(),
            fit_ignored_groups: Vec::new(),
            balanced_resources: cpu_and_memory(),
            bind_timeout: Duration::from_secs(600),
        };
        for (plugin, _, _, weight) in KNOWN {
            profile.weights[plugin as usize] = weight;
        }
        profile
    }

    /// Whether the plugin runs at its pre-enqueue, filter or post-filter
    /// point (SchedulingGates, a filter, DefaultPreemption).
    pub fn runs(&self, plugin: Plugin) -> bool {
        self.runs[plugin as usize]
    }

    /// The plugin's score weight; 0 when it does not score.
    pub fn weight(&self, plugin: Plugin) -> i64 {
        self.weights[plugin as usize]
    }
}

/// Everything the configuration sets.
#[derive(Debug, Clone)]
pub struct Config {
    pub profiles: Vec<Profile>,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Whether to hold a Lease before scheduling, and which.
    pub leader_elect: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    /// `clientConnection.kubeconfig`.
    pub kubeconfig: Option<String>,
}

impl Config {
    /// Upstream's defaults, with one default profile per name.
    pub fn with_profiles(names: &[String]) -> Config {
        Config {
            profiles: names.iter().map(|n| Profile::default_named(n)).collect(),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            leader_elect: true,
            lease_name: "kube-scheduler".into(),
            lease_namespace: "kube-system".into(),
            kubeconfig: None,
        }
    }

    /// Reads a KubeSchedulerConfiguration (YAML or JSON). Errors name the
    /// field at fault, as upstream's validation does.
    pub fn parse(text: &str) -> Result<Config, String> {
        let file: File = serde_yaml::from_str(text).map_err(|e| format!("strict decoding error: {e}"))?;
        if file.api_version != "kubescheduler.config.k8s.io/v1" || file.kind != "KubeSchedulerConfiguration" {
            return Err(format!("no kind \"{}\" is registered for version \"{}\": skiff reads kind KubeSchedulerConfiguration of kubescheduler.config.k8s.io/v1", file.kind, file.api_version));
        }
        let mut config = Config::with_profiles(&[]);
        if let Some(extenders) = file.extenders.filter(|e| !e.is_empty()) {
            return Err(format!("extenders: Forbidden: skiff calls no scheduler extenders ({} given)", extenders.len()));
        }
        let global = percentage(file.percentage_of_nodes_to_score, "percentageOfNodesToScore")?;
        config.initial_backoff = Duration::from_secs(file.pod_initial_backoff_seconds.unwrap_or(1));
        config.max_backoff = Duration::from_secs(file.pod_max_backoff_seconds.unwrap_or(10));
        if config.initial_backoff.is_zero() || config.max_backoff < config.initial_backoff {
            return Err("podMaxBackoffSeconds: Invalid value: must be greater than or equal to podInitialBackoffSeconds, which must be greater than 0".into());
        }
        if let Some(election) = file.leader_election {
            if election.resource_lock.as_deref().is_some_and(|l| l != "leases") {
                return Err("leaderElection.resourceLock: Unsupported value: skiff elects through \"leases\"".into());
            }
            config.leader_elect = election.leader_elect.unwrap_or(true);
            config.lease_name = election.resource_name.unwrap_or(config.lease_name);
            config.lease_namespace = election.resource_namespace.unwrap_or(config.lease_namespace);
        }
        config.kubeconfig = file.client_connection.and_then(|c| c.kubeconfig).filter(|k| !k.is_empty());
        let mut profiles = file.profiles.unwrap_or_default();
        if profiles.is_empty() {
            profiles.push(ProfileFile::default());
        }
        let single = profiles.len() == 1;
        let mut names = HashSet::new();
        for (i, p) in profiles.into_iter().enumerate() {
            let at = format!("profiles[{i}]");
            let name = match p.scheduler_name.clone() {
                Some(name) if !name.is_empty() => name,
                None if single => "default-scheduler".into(),
                _ => return Err(format!("{at}.schedulerName: Required value")),
            };
            if !names.insert(name.clone()) {
                return Err(format!("{at}.schedulerName: Duplicate value: \"{name}\""));
            }
            let mut profile = Profile::default_named(&name);
            profile.percentage_of_nodes_to_score = percentage(p.percentage_of_nodes_to_score, &format!("{at}.percentageOfNodesToScore"))?.or(global);
            if let Some(plugins) = &p.plugins {
                plugins.apply(&mut profile).map_err(|e| format!("{at}.plugins: {e}"))?;
            }
            let mut configured = HashSet::new();
            for (j, c) in p.plugin_config.iter().enumerate() {
                let at = format!("{at}.pluginConfig[{j}]");
                if !configured.insert(c.name.as_str()) {
                    return Err(format!("{at}: Duplicate value: \"{}\"", c.name));
                }
                apply_args(&mut profile, &c.name, &c.args).map_err(|e| format!("{at}.args{e}"))?;
            }
            config.profiles.push(profile);
        }
        Ok(config)
    }
}

fn percentage(value: Option<u32>, field: &str) -> Result<Option<u32>, String> {
    match value {
        Some(p) if p > 100 => Err(format!("{field}: Invalid value: {p}: not in valid range [0-100]")),
        Some(0) | None => Ok(None),
        Some(p) => Ok(Some(p)),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    api_version: String,
    kind: String,
    /// Upstream's worker count for filtering and scoring: skiff's
    /// scheduling loop is one task, so any value is accepted.
    #[serde(default)]
    #[allow(dead_code)]
    parallelism: Option<i32>,
    percentage_of_nodes_to_score: Option<u32>,
    pod_initial_backoff_seconds: Option<u64>,
    pod_max_backoff_seconds: Option<u64>,
    leader_election: Option<LeaderElection>,
    client_connection: Option<ClientConnection>,
    profiles: Option<Vec<ProfileFile>>,
    extenders: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LeaderElection {
    leader_elect: Option<bool>,
    resource_lock: Option<String>,
    resource_name: Option<String>,
    resource_namespace: Option<String>,
}

/// How the scheduler reaches the API server. Only the kubeconfig is read:
/// skiff's client does not throttle itself, so `qps` and `burst` are
/// accepted as limits it never exceeds.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClientConnection {
    kubeconfig: Option<String>,
    #[allow(dead_code)]
    qps: Option<f64>,
    #[allow(dead_code)]
    burst: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProfileFile {
    scheduler_name: Option<String>,
    percentage_of_nodes_to_score: Option<u32>,
    plugins: Option<Plugins>,
    #[serde(default)]
    plugin_config: Vec<PluginConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Plugins {
    #[serde(default)]
    multi_point: PluginSet,
    #[serde(default)]
    pre_enqueue: PluginSet,
    #[serde(default)]
    pre_filter: PluginSet,
    #[serde(default)]
    filter: PluginSet,
    #[serde(default)]
    post_filter: PluginSet,
    #[serde(default)]
    pre_score: PluginSet,
    #[serde(default)]
    score: PluginSet,
    // Points where skiff runs a fixed plugin: queue sorting by priority,
    // VolumeBinding's reserve and pre-bind, binding through `pods/binding`.
    #[serde(default)]
    queue_sort: PluginSet,
    #[serde(default)]
    reserve: PluginSet,
    #[serde(default)]
    permit: PluginSet,
    #[serde(default)]
    pre_bind: PluginSet,
    #[serde(default)]
    bind: PluginSet,
    #[serde(default)]
    post_bind: PluginSet,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PluginSet {
    #[serde(default)]
    enabled: Vec<PluginRef>,
    #[serde(default)]
    disabled: Vec<PluginRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginRef {
    name: String,
    weight: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginConfig {
    name: String,
    #[serde(default)]
    args: serde_json::Value,
}

impl PluginSet {
    fn is_empty(&self) -> bool {
        self.enabled.is_empty() && self.disabled.is_empty()
    }

    fn disables(&self, name: &str) -> bool {
        self.disabled.iter().any(|d| d.name == name || d.name == "*")
    }
}

/// A named plugin skiff runs (None for one it does not), or why it
/// cannot be named.
fn resolve(name: &str) -> Result<Option<(Plugin, &'static [Point], i64)>, String> {
    match KNOWN.iter().find(|k| k.1 == name) {
        Some(&(plugin, _, points, weight)) => Ok(Some((plugin, points, weight))),
        None if NOT_RUN.contains(&name) => Ok(None),
        None => Err(format!("plugin \"{name}\" does not exist")),
    }
}

impl Plugins {
    /// Upstream's merge: `multiPoint` first (the defaults, less those it
    /// disables, plus those it enables), then each point's own list, which
    /// overrides `multiPoint` for the plugins it names.
    fn apply(&self, profile: &mut Profile) -> Result<(), String> {
        for (set, point) in [(&self.queue_sort, "queueSort"), (&self.reserve, "reserve"), (&self.permit, "permit"), (&self.pre_bind, "preBind"), (&self.bind, "bind"), (&self.post_bind, "postBind")] {
            if !set.is_empty() {
                return Err(format!("{point}: Forbidden: skiff runs fixed plugins here (PrioritySort, VolumeBinding, DefaultBinder)"));
            }
        }
        let mut multi: Vec<(Plugin, &'static [Point], i64)> = Vec::new();
        for (plugin, _, points, weight) in KNOWN {
            if !self.multi_point.disables(plugin.name()) {
                multi.push((plugin, points, weight));
            }
        }
        for r in &self.multi_point.enabled {
            let Some((plugin, points, _)) = resolve(&r.name)? else { return Err(not_run(&r.name)) };
            let weight = weight_of(r)?;
            match multi.iter_mut().find(|m| m.0 == plugin) {
                Some(m) => m.2 = weight,
                None => multi.push((plugin, points, weight)),
            }
        }
        for d in self.multi_point.disabled.iter().chain(self.lists().flat_map(|(_, _, s)| &s.disabled)) {
            if d.name != "*" {
                resolve(&d.name)?;
            }
        }
        let mut runs = [false; PLUGINS];
        let mut weights = [0; PLUGINS];
        let mut enabled_at = |point: Point, plugin: Plugin, weight: i64| match point {
            Point::Score => weights[plugin as usize] = weight,
            _ => runs[plugin as usize] = true,
        };
        for point in [Point::PreEnqueue, Point::Filter, Point::PostFilter, Point::Score] {
            let sets: Vec<(bool, &PluginSet)> = self.lists().filter(|(p, _, _)| *p == point).map(|(_, pre, s)| (pre, s)).collect();
            let disabled = |name: &str| sets.iter().any(|(_, s)| s.disables(name));
            let mut named = HashSet::new();
            // Pre-point lists first: a weight is the score list's to give.
            for (pre, r) in sets.iter().flat_map(|(pre, s)| s.enabled.iter().map(move |r| (*pre, r))) {
                let Some((plugin, points, _)) = resolve(&r.name)? else { return Err(not_run(&r.name)) };
                if !points.contains(&point) {
                    return Err(format!("plugin \"{}\" does not extend {} plugin", r.name, point.name()));
                }
                // A pre-point entry does not undo its point's disabling.
                if pre && disabled(plugin.name()) {
                    continue;
                }
                named.insert(plugin as usize);
                let weight = match pre {
                    true => multi.iter().find(|m| m.0 == plugin).map_or(1, |m| m.2),
                    false => weight_of(r)?,
                };
                enabled_at(point, plugin, weight);
            }
            for (plugin, points, weight) in &multi {
                if points.contains(&point) && !disabled(plugin.name()) && !named.contains(&(*plugin as usize)) {
                    enabled_at(point, *plugin, *weight);
                }
            }
        }
        profile.runs = runs;
        profile.weights = weights;
        Ok(())
    }

    /// The lists each point reads, and whether each is a pre-point's.
    fn lists(&self) -> impl Iterator<Item = (Point, bool, &PluginSet)> {
        [
            (Point::PreEnqueue, false, &self.pre_enqueue),
            (Point::Filter, true, &self.pre_filter),
            (Point::Filter, false, &self.filter),
            (Point::PostFilter, false, &self.post_filter),
            (Point::Score, true, &self.pre_score),
            (Point::Score, false, &self.score),
        ]
        .into_iter()
    }
}

fn not_run(name: &str) -> String {
    format!("plugin \"{name}\" is not run by skiff; it may only be disabled")
}

/// A score weight: upstream counts an unset or zero weight as 1.
fn weight_of(r: &PluginRef) -> Result<i64, String> {
    match r.weight {
        Some(w) if w < 0 => Err(format!("plugin \"{}\": Invalid value: {w}: weight must not be negative", r.name)),
        Some(0) | None => Ok(1),
        Some(w) => Ok(w),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FitArgs {
    /// Allowed, as in upstream's files; the arguments' version is v1.
    #[allow(dead_code)]
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    ignored_resources: Vec<String>,
    #[serde(default)]
    ignored_resource_groups: Vec<String>,
    scoring_strategy: Option<ScoringStrategy>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ScoringStrategy {
    r#type: Option<String>,
    resources: Option<Vec<ResourceWeight>>,
    requested_to_capacity_ratio: Option<Shape>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceWeight {
    name: String,
    weight: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Shape {
    shape: Vec<ShapePoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShapePoint {
    utilization: i64,
    score: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BalancedArgs {
    /// Allowed, as in upstream's files; the arguments' version is v1.
    #[allow(dead_code)]
    api_version: Option<String>,
    kind: Option<String>,
    resources: Option<Vec<ResourceWeight>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VolumeBindingArgs {
    /// Allowed, as in upstream's files; the arguments' version is v1.
    #[allow(dead_code)]
    api_version: Option<String>,
    kind: Option<String>,
    bind_timeout_seconds: Option<u64>,
}

/// Resource weights, each 1–100 as upstream validates them.
fn resource_weights(list: Vec<ResourceWeight>, at: &str) -> Result<Vec<(String, i64)>, String> {
    list.into_iter()
        .enumerate()
        .map(|(i, r)| match r.weight {
            1..=100 => Ok((r.name, r.weight)),
            w => Err(format!("{at}[{i}].weight: Invalid value: {w}: resource weight of {} not in valid range [1, 100]", r.name)),
        })
        .collect()
}

/// A plugin's `args`; errors start with the field's path below `args`.
fn apply_args(profile: &mut Profile, plugin: &str, args: &serde_json::Value) -> Result<(), String> {
    fn decode<T: serde::de::DeserializeOwned>(args: &serde_json::Value) -> Result<T, String> {
        serde_json::from_value(args.clone()).map_err(|e| format!(": strict decoding error: {e}"))
    }
    let kind_is = |kind: &Option<String>, expected: &str| match kind {
        Some(k) if k != expected => Err(format!(".kind: Invalid value: \"{k}\": the arguments of {plugin} are {expected}")),
        _ => Ok(()),
    };
    match plugin {
        "NodeResourcesFit" => {
            let args: FitArgs = decode(args)?;
            kind_is(&args.kind, "NodeResourcesFitArgs")?;
            profile.fit_ignored = args.ignored_resources;
            profile.fit_ignored_groups = args.ignored_resource_groups;
            let Some(strategy) = args.scoring_strategy else { return Ok(()) };
            if let Some(resources) = strategy.resources {
                profile.fit_resources = resource_weights(resources, ".scoringStrategy.resources")?;
            }
            profile.fit_strategy = match strategy.r#type.as_deref().unwrap_or("LeastAllocated") {
                "LeastAllocated" => Strategy::LeastAllocated,
                "MostAllocated" => Strategy::MostAllocated,
                "RequestedToCapacityRatio" => Strategy::RequestedToCapacityRatio(shape(strategy.requested_to_capacity_ratio)?),
                other => return Err(format!(".scoringStrategy.type: Unsupported value: \"{other}\": supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\"")),
            };
        }
        "NodeResourcesBalancedAllocation" => {
            let args: BalancedArgs = decode(args)?;
            kind_is(&args.kind, "NodeResourcesBalancedAllocationArgs")?;
            if let Some(resources) = args.resources {
                profile.balanced_resources = resource_weights(resources, ".resources")?;
            }
        }
        "VolumeBinding" => {
            let args: VolumeBindingArgs = decode(args)?;
            kind_is(&args.kind, "VolumeBindingArgs")?;
            profile.bind_timeout = Duration::from_secs(args.bind_timeout_seconds.unwrap_or(600));
        }
        other => {
            resolve(other).map_err(|e| format!(": {e}"))?;
            return Err(format!(": Forbidden: skiff takes no arguments for {other}; it runs with upstream's defaults"));
        }
    }
    Ok(())
}

/// RequestedToCapacityRatio's shape: utilization 0–100 rising, score 0–10.
fn shape(ratio: Option<Shape>) -> Result<Vec<(i64, i64)>, String> {
    let at = ".scoringStrategy.requestedToCapacityRatio.shape";
    let points = ratio.map(|r| r.shape).unwrap_or_default();
    if points.is_empty() {
        return Err(format!("{at}: Required value: at least one point must be specified"));
    }
    for (i, p) in points.iter().enumerate() {
        if !(0..=100).contains(&p.utilization) {
            return Err(format!("{at}[{i}].utilization: Invalid value: {}: not in valid range [0, 100]", p.utilization));
        }
        if !(0..=10).contains(&p.score) {
            return Err(format!("{at}[{i}].score: Invalid value: {}: not in valid range [0, 10]", p.score));
        }
        if i > 0 && p.utilization <= points[i - 1].utilization {
            return Err(format!("{at}[{i}].utilization: Invalid value: {}: utilization values must be sorted in increasing order", p.utilization));
        }
    }
    Ok(points.into_iter().map(|p| (p.utilization, p.score)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, String> {
        Config::parse(&format!("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n{yaml}"))
    }

    #[test]
    fn an_empty_configuration_is_one_default_profile() {
        let config = parse("").unwrap();
        assert_eq!(config.profiles.len(), 1);
        let p = &config.profiles[0];
        assert_eq!(p.name, "default-scheduler");
        assert!(p.runs(Plugin::NodeResourcesFit) && p.runs(Plugin::PodTopologySpread) && p.runs(Plugin::DefaultPreemption) && p.runs(Plugin::SchedulingGates));
        assert_eq!((p.weight(Plugin::TaintToleration), p.weight(Plugin::NodeAffinity), p.weight(Plugin::ImageLocality)), (3, 2, 1));
        assert_eq!(p.weight(Plugin::NodePorts), 0);
        assert!(KNOWN.iter().enumerate().all(|(i, k)| k.0 as usize == i), "KNOWN is in the enum's order");
    }

    #[test]
    fn profiles_disable_and_enable_per_extension_point() {
        let config = parse(
            r#"
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  percentageOfNodesToScore: 50
  plugins:
    score:
      disabled: [{name: NodeResourcesBalancedAllocation}, {name: PodTopologySpread}]
      enabled: [{name: NodeResourcesFit, weight: 5}]
    preFilter:
      disabled: [{name: InterPodAffinity}]
    preScore:
      enabled: [{name: PodTopologySpread}, {name: InterPodAffinity}]
    postFilter:
      disabled: [{name: "*"}]
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources: [{name: cpu, weight: 2}, {name: memory, weight: 1}]
- schedulerName: bare
  plugins:
    multiPoint:
      disabled: [{name: "*"}]
      enabled: [{name: NodeResourcesFit}]
"#,
        )
        .unwrap();
        let packer = &config.profiles[1];
        assert_eq!(packer.percentage_of_nodes_to_score, Some(50));
        assert_eq!((packer.weight(Plugin::NodeResourcesFit), packer.weight(Plugin::NodeResourcesBalancedAllocation), packer.weight(Plugin::PodTopologySpread)), (5, 0, 0));
        assert!(packer.runs(Plugin::PodTopologySpread) && !packer.runs(Plugin::InterPodAffinity) && !packer.runs(Plugin::DefaultPreemption));
        assert_eq!(packer.weight(Plugin::TaintToleration), 3, "defaults not named stay");
        assert_eq!(packer.weight(Plugin::InterPodAffinity), 2, "a preScore entry keeps the default weight");
        assert_eq!(packer.fit_strategy, Strategy::MostAllocated);
        assert_eq!(packer.fit_resources, [("cpu".to_string(), 2), ("memory".to_string(), 1)]);
        let bare = &config.profiles[2];
        assert!(bare.runs(Plugin::NodeResourcesFit) && !bare.runs(Plugin::TaintToleration) && !bare.runs(Plugin::SchedulingGates));
        assert_eq!((bare.weight(Plugin::NodeResourcesFit), bare.weight(Plugin::ImageLocality)), (1, 0));
    }

    #[test]
    fn bad_configurations_name_the_field() {
        let cases = [
            ("bogus: 1", "unknown field `bogus`"),
            ("profiles: [{schedulerName: a}, {schedulerName: a}]", "profiles[1].schedulerName: Duplicate value: \"a\""),
            ("profiles: [{schedulerName: a}, {}]", "profiles[1].schedulerName: Required value"),
            ("profiles: [{plugins: {score: {enabled: [{name: NoSuch}]}}}]", "plugin \"NoSuch\" does not exist"),
            ("profiles: [{plugins: {score: {enabled: [{name: NodePorts}]}}}]", "plugin \"NodePorts\" does not extend Score plugin"),
            ("profiles: [{plugins: {filter: {enabled: [{name: VolumeZone}]}}}]", "plugin \"VolumeZone\" is not run by skiff"),
            ("profiles: [{plugins: {bind: {disabled: [{name: DefaultBinder}]}}}]", "bind: Forbidden"),
            ("percentageOfNodesToScore: 101", "percentageOfNodesToScore: Invalid value: 101"),
            ("profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: Random}}}]}]", "profiles[0].pluginConfig[0].args.scoringStrategy.type: Unsupported value: \"Random\""),
            ("profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: RequestedToCapacityRatio}}}]}]", "shape: Required value"),
            ("profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {resources: [{name: cpu, weight: 0}]}}}]}]", "resources[0].weight: Invalid value: 0"),
            ("profiles: [{pluginConfig: [{name: InterPodAffinity, args: {hardPodAffinityWeight: 1}}]}]", "skiff takes no arguments for InterPodAffinity"),
            ("extenders: [{urlPrefix: http://x}]", "extenders: Forbidden"),
        ];
        for (yaml, expected) in cases {
            let error = parse(yaml).map(|_| ()).unwrap_err();
            assert!(error.contains(expected), "{yaml}: {error}");
        }
        assert!(Config::parse("apiVersion: v1\nkind: KubeSchedulerConfiguration").unwrap_err().contains("no kind"));
    }
}

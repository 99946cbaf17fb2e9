//! The pod spec wherever it appears (pods, pod templates, every workload's
//! template, ephemeral containers): upstream's `ValidatePod`,
//! `ValidatePodSpec`, `ValidatePodTemplateSpec` and `ValidatePodTemplate`
//! with the container, volume and security-context rules under them.
//! Placement (affinity, tolerations, DNS, node selection, gates, priority)
//! is `pod_scheduling`'s, called from `pod_spec`. The volume sources a PV
//! shares with pods, and resource requirements (a RuntimeClass's overhead
//! too), are checked here for both.
//!
//! Skiff validates some objects undefaulted (pod templates, ephemeral
//! containers, fields sent as `""` or `0`), so where upstream's defaulting
//! would have filled a field in, the default is assumed here.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    AWSElasticBlockStoreVolumeSource, AppArmorProfile, AzureDiskVolumeSource, Container, ContainerPort, DownwardAPIVolumeFile, EnvFromSource, EnvVar, EphemeralContainer, ExecAction, FCVolumeSource, FlockerVolumeSource, GCEPersistentDiskVolumeSource, HTTPGetAction, HostPathVolumeSource, KeyToPath, Lifecycle,
    LifecycleHandler, NFSVolumeSource, ObjectFieldSelector, PersistentVolumeClaimTemplate, Pod, PodSecurityContext, PodSpec, PodTemplate, PodTemplateSpec,
    Probe, QuobyteVolumeSource, ResourceClaim, ResourceFieldSelector, SeccompProfile, SecurityContext, Volume, VolumeDevice, VolumeMount, WindowsSecurityContextOptions,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::addresses::host_port_pair;
use super::go::{go_strings, go_value};
use super::resources::{canonical, container_resource_name, hugepages_quantity, is_hugepages, overcommit_allowed, resource_quantity_value, Shown};
use super::{annotations, config_map_key, dns1123_label, dns1123_subdomain, dns1123_subdomain_prefix, inclusive_range, label_selector, labels, name_by, non_negative, port_name, port_number, qualified_name, quantity_error, required_text, Bad, Errors, FieldError, Op, Path};

pub(super) fn check(kind: &str, op: Op<'_>) -> Option<Errors> {
    Some(match (kind, op) {
        // Only a create runs `ValidatePodCreate`'s extra rules; an update
        // runs `validatePodMetadataAndSpec` and pod_scheduling's rules.
        ("Pod", Op::Create(_)) => op.run(pod_create, super::nothing, super::nothing),
        ("Pod", _) => op.run(pod, super::pod_scheduling::pod_update, super::pod_scheduling::pod_status_update),
        // Upstream's ValidatePodTemplateUpdate adds nothing to ValidatePodTemplate.
        ("PodTemplate", _) => op.run(pod_template, super::nothing, super::nothing),
        _ => return None,
    })
}

const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";
const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";
const APPARMOR_CONTAINER_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
const FILE_MODE: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const NOT_INIT_ALWAYS: &str = "may not be set for init containers without restartPolicy=Always";
const EPHEMERAL_FIELD: &str = "cannot be set for an Ephemeral Container";
const TOO_MANY_VOLUME_TYPES: &str = "may not specify more than 1 volume type";
const DEFAULT_GRACE_PERIOD: i64 = 30;

/// Upstream's `ValidatePodCreate`: what every pod write checks, and that a
/// new pod has no ephemeral containers and no annotation contradicting a
/// security profile field. (Its nodeName/gates rule is pod_scheduling's.)
fn pod_create(pod: &Pod) -> Errors {
    let mut errs = pod_metadata_and_spec(pod);
    let default = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default);
    let path = Path::new("spec");
    if spec.ephemeral_containers.as_ref().is_some_and(|e| !e.is_empty()) {
        errs.push(path.child("ephemeralContainers").forbidden("cannot be set on create"));
    }
    let annotations = pod.metadata.annotations.as_ref();
    errs.extend(seccomp_annotations_match(annotations, spec, &path));
    errs.extend(apparmor_annotations_match(annotations, spec, &path));
    errs
}

/// A pod on update: upstream's `validatePodMetadataAndSpec`.
fn pod(pod: &Pod) -> Errors {
    pod_metadata_and_spec(pod)
}

/// Upstream's `validatePodMetadataAndSpec` (less ObjectMeta, checked by
/// `meta`): the pod's own annotations, its spec, and what only a pod (not
/// a template) must satisfy. Also what `/ephemeralcontainers` writes check
/// on the new pod.
pub(super) fn pod_metadata_and_spec(pod: &Pod) -> Errors {
    let default = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&default);
    let path = Path::new("spec");
    let mut errs = pod_annotations(pod.metadata.annotations.as_ref(), spec, &Path::new("metadata").child("annotations"));
    errs.extend(spec_checks(spec, &path, pod.metadata.name.as_deref(), true));
    if service_account_name(spec).is_empty() {
        for (vi, volume) in spec.volumes.iter().flatten().enumerate() {
            let Some(projected) = &volume.projected else { continue };
            for (si, source) in projected.sources.iter().flatten().enumerate() {
                if source.service_account_token.is_some() {
                    let at = path.child("volumes").index(vi).child("projected").child("sources").index(si).child("serviceAccountToken");
                    errs.push(at.forbidden("must not be specified when serviceAccountName is not set"));
                }
            }
        }
    }
    for (field, list) in [("containers", &spec.containers[..]), ("initContainers", spec.init_containers.as_deref().unwrap_or_default())] {
        for (i, c) in list.iter().enumerate() {
            errs.extend(image_whitespace(c, &path.child(field).index(i)));
        }
    }
    errs
}

/// Upstream's `ValidatePodTemplate`: the template is validated as any pod
/// template (a missing one as an empty one, as Go decodes it).
fn pod_template(template: &PodTemplate) -> Errors {
    let default = PodTemplateSpec::default();
    pod_template_spec(template.template.as_ref().unwrap_or(&default), &Path::new("template"))
}

/// What a workload says when its selector does not select its template.
pub(super) const NO_MATCH: &str = "`selector` does not match template `labels`";

/// A pod template's labels.
pub(super) fn template_labels(template: &PodTemplateSpec) -> Option<&BTreeMap<String, String>> {
    template.metadata.as_ref().and_then(|m| m.labels.as_ref())
}

/// Upstream's `ValidatePodTemplateSpec`: the template's labels and
/// annotations and its pod spec. Each workload checks its own restart
/// policy and selector on top.
pub(crate) fn pod_template_spec(template: &PodTemplateSpec, path: &Path) -> Errors {
    let default_meta = ObjectMeta::default();
    let meta = template.metadata.as_ref().unwrap_or(&default_meta);
    let default_spec = PodSpec::default();
    let spec = template.spec.as_ref().unwrap_or(&default_spec);
    // Upstream's paths here are `template.labels`, not `template.metadata.labels`.
    let mut errs = labels(meta.labels.as_ref(), &path.child("labels"));
    errs.extend(annotations(meta.annotations.as_ref(), &path.child("annotations")));
    errs.extend(pod_annotations(meta.annotations.as_ref(), spec, &path.child("annotations")));
    let spec_path = path.child("spec");
    errs.extend(pod_spec(spec, &spec_path));
    errs.extend(seccomp_annotations_match(meta.annotations.as_ref(), spec, &spec_path));
    errs.extend(apparmor_annotations_match(meta.annotations.as_ref(), spec, &spec_path));
    if spec.ephemeral_containers.as_ref().is_some_and(|e| !e.is_empty()) {
        errs.push(spec_path.child("ephemeralContainers").forbidden("ephemeral containers not allowed in pod template"));
    }
    errs
}

/// Upstream's `ValidatePodSpec` of a spec embedded in another object.
pub(crate) fn pod_spec(spec: &PodSpec, path: &Path) -> Errors {
    spec_checks(spec, path, None, false)
}

/// What the checks of one spec depend on.
struct Ctx<'a> {
    /// The spec is a pod's (upstream's `opts.ResourceIsPod`).
    is_pod: bool,
    grace_period: i64,
    host_users: bool,
    restart_policy: &'a str,
}

/// Upstream's `ValidatePodSpec`. `pod_name` is the pod's, for the PVCs of
/// its ephemeral volumes.
fn spec_checks(spec: &PodSpec, path: &Path, pod_name: Option<&str>, is_pod: bool) -> Errors {
    let ctx = Ctx {
        is_pod,
        grace_period: spec.termination_grace_period_seconds.unwrap_or(DEFAULT_GRACE_PERIOD),
        host_users: spec.host_users.unwrap_or(true),
        restart_policy: spec.restart_policy.as_deref().filter(|p| !p.is_empty()).unwrap_or("Always"),
    };
    let (vols, mut errs) = volumes(spec.volumes.as_deref().unwrap_or_default(), pod_name, &path.child("volumes"), &ctx);
    let claims: BTreeSet<&str> = spec.resource_claims.iter().flatten().map(|c| c.name.as_str()).filter(|n| !n.is_empty()).collect();
    errs.extend(pod_resource_claims(spec, &path.child("resourceClaims")));
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    errs.extend(containers(&spec.containers, &vols, &claims, &path.child("containers"), &ctx));
    errs.extend(init_containers(inits, &spec.containers, &vols, &claims, &path.child("initContainers"), &ctx));
    errs.extend(ephemeral_containers(spec.ephemeral_containers.as_deref().unwrap_or_default(), &spec.containers, inits, &vols, &claims, &path.child("ephemeralContainers"), &ctx));
    errs.extend(host_network_ports(spec, path));
    match spec.restart_policy.as_deref().unwrap_or_default() {
        "" | "Always" | "OnFailure" | "Never" => {}
        other => errs.push(path.child("restartPolicy").not_supported(other, &["Always", "OnFailure", "Never"])),
    }
    errs.extend(pod_security_context(spec, path));
    errs.extend(super::pod_scheduling::pod_spec_placement(spec, path));
    errs.extend(windows_host_process(spec, path));
    if spec.host_users == Some(false) {
        // Upstream's paths, capitals included.
        for (on, field) in [(spec.host_network, "hostNetwork"), (spec.host_pid, "HostPID"), (spec.host_ipc, "HostIPC")] {
            if on == Some(true) {
                errs.push(path.child(field).forbidden("when `pod.Spec.HostUsers` is false"));
            }
        }
    }
    let account = service_account_name(spec);
    if !account.is_empty() {
        errs.extend(name_by(dns1123_subdomain, account, &path.child("serviceAccountName")));
    }
    if let Some(deadline) = spec.active_deadline_seconds {
        errs.extend(inclusive_range(deadline, 1, i32::MAX.into(), &path.child("activeDeadlineSeconds")));
    }
    if let Some(class) = &spec.runtime_class_name {
        errs.extend(name_by(dns1123_subdomain, class, &path.child("runtimeClassName")));
    }
    if let Some(overhead) = &spec.overhead {
        errs.extend(resource_requirements(Some(overhead), None, None, &BTreeSet::new(), Shown::Bare, &path.child("overhead")));
    }
    if let Some(os) = &spec.os {
        let os_path = path.child("os");
        match os.name.as_str() {
            "" => errs.push(os_path.child("name").required("cannot be empty")),
            "linux" => errs.extend(linux_only(spec, path)),
            "windows" => errs.extend(windows_only(spec, path)),
            other => errs.push(os_path.not_supported(other, &["linux", "windows"])),
        }
    }
    errs
}

/// `serviceAccountName`, or the deprecated `serviceAccount` it is
/// converted from when unset.
fn service_account_name(spec: &PodSpec) -> &str {
    spec.service_account_name.as_deref().filter(|n| !n.is_empty()).or(spec.service_account.as_deref()).unwrap_or_default()
}

fn image_whitespace(c: &Container, path: &Path) -> Errors {
    let image = c.image.as_deref().unwrap_or_default();
    if image.trim() != image {
        vec![path.child("image").invalid(image, "must not have leading or trailing whitespace")]
    } else {
        vec![]
    }
}

/// Every container of a spec with its path, in upstream's visiting order
/// (init, regular, ephemeral).
fn all_containers<'a>(spec: &'a PodSpec, path: &Path) -> Vec<(Cow<'a, Container>, Path)> {
    let mut out = Vec::new();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        out.push((Cow::Borrowed(c), path.child("initContainers").index(i)));
    }
    for (i, c) in spec.containers.iter().enumerate() {
        out.push((Cow::Borrowed(c), path.child("containers").index(i)));
    }
    for (i, c) in spec.ephemeral_containers.iter().flatten().enumerate() {
        out.push((Cow::Owned(as_container(c)), path.child("ephemeralContainers").index(i)));
    }
    out
}

/// An ephemeral container as the container it is validated as.
fn as_container(ec: &EphemeralContainer) -> Container {
    Container {
        args: ec.args.clone(),
        command: ec.command.clone(),
        env: ec.env.clone(),
        env_from: ec.env_from.clone(),
        image: ec.image.clone(),
        image_pull_policy: ec.image_pull_policy.clone(),
        lifecycle: ec.lifecycle.clone(),
        liveness_probe: ec.liveness_probe.clone(),
        name: ec.name.clone(),
        ports: ec.ports.clone(),
        readiness_probe: ec.readiness_probe.clone(),
        resize_policy: ec.resize_policy.clone(),
        resources: ec.resources.clone(),
        restart_policy: ec.restart_policy.clone(),
        security_context: ec.security_context.clone(),
        startup_probe: ec.startup_probe.clone(),
        stdin: ec.stdin,
        stdin_once: ec.stdin_once,
        termination_message_path: ec.termination_message_path.clone(),
        termination_message_policy: ec.termination_message_policy.clone(),
        tty: ec.tty,
        volume_devices: ec.volume_devices.clone(),
        volume_mounts: ec.volume_mounts.clone(),
        working_dir: ec.working_dir.clone(),
    }
}

// ---- pod annotations -------------------------------------------------------

/// Upstream's `ValidatePodSpecificAnnotations`: a mirror pod is bound, the
/// deletion cost is a 32-bit integer, and the deprecated seccomp and
/// AppArmor annotations name profiles (and containers) that exist.
fn pod_annotations(annotations: Option<&BTreeMap<String, String>>, spec: &PodSpec, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let Some(annotations) = annotations else { return errs };
    if let Some(value) = annotations.get(MIRROR_POD_ANNOTATION) {
        if spec.node_name.as_deref().unwrap_or_default().is_empty() {
            errs.push(path.key(MIRROR_POD_ANNOTATION).invalid(value, "must set spec.nodeName if mirror pod annotation is set"));
        }
    }
    if let Some(cost) = annotations.get(DELETION_COST_ANNOTATION) {
        if !valid_deletion_cost(cost) {
            errs.push(path.key(DELETION_COST_ANNOTATION).invalid(cost, "must be a 32bit integer"));
        }
    }
    for (k, profile) in annotations {
        if k == SECCOMP_POD_ANNOTATION || k.starts_with(SECCOMP_CONTAINER_PREFIX) {
            errs.extend(seccomp_annotation_profile(profile, &path.child(k)));
        }
    }
    for (k, profile) in annotations {
        let Some(container) = k.strip_prefix(APPARMOR_CONTAINER_PREFIX) else { continue };
        if !all_containers(spec, &Path::new("spec")).iter().any(|(c, _)| c.name == container) {
            errs.push(path.key(k).invalid(container, "container not found"));
        }
        if !(profile.is_empty() || profile == "runtime/default" || profile == "unconfined" || profile.starts_with("localhost/")) {
            errs.push(path.key(k).invalid(profile, &format!("invalid AppArmor profile name: {profile:?}")));
        }
    }
    errs
}

/// Upstream's `GetDeletionCostFromPodAnnotations`: a decimal int32 without
/// a plus sign or leading zeros.
fn valid_deletion_cost(value: &str) -> bool {
    let first_ok = match value.as_bytes().first() {
        Some(b'-') => true,
        Some(b'0') => value == "0",
        Some(b'1'..=b'9') => true,
        _ => false,
    };
    first_ok && value.parse::<i32>().is_ok()
}

fn seccomp_annotation_profile(profile: &str, path: &Path) -> Errors {
    match profile {
        "runtime/default" | "docker/default" | "unconfined" => vec![],
        _ => match profile.strip_prefix("localhost/") {
            Some(local) => local_descending_path(local, path),
            None => vec![path.invalid(profile, "must be a valid seccomp profile")],
        },
    }
}

/// Upstream's `validateSeccompAnnotationsAndFields`: where both a
/// seccompProfile field and its deprecated annotation are set, they agree.
fn seccomp_annotations_match(annotations: Option<&BTreeMap<String, String>>, spec: &PodSpec, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let Some(annotations) = annotations else { return errs };
    let agree = |annotation: &str, field: &SeccompProfile, at: &Path| -> Option<FieldError> {
        let type_mismatch = || Some(at.child("type").forbidden("seccomp type in annotation and field must match"));
        match field.type_.as_str() {
            "Unconfined" if annotation != "unconfined" => type_mismatch(),
            "RuntimeDefault" if annotation != "runtime/default" && annotation != "docker/default" => type_mismatch(),
            "Localhost" => match annotation.strip_prefix("localhost/") {
                None => type_mismatch(),
                Some(local) if field.localhost_profile.as_deref() != Some(local) => {
                    Some(at.child("localhostProfile").forbidden("seccomp profile in annotation and field must match"))
                }
                Some(_) => None,
            },
            _ => None,
        }
    };
    if let Some(field) = spec.security_context.as_ref().and_then(|sc| sc.seccomp_profile.as_ref()) {
        if let Some(annotation) = annotations.get(SECCOMP_POD_ANNOTATION) {
            errs.extend(agree(annotation, field, &path.child("securityContext").child("seccompProfile")));
        }
    }
    for (c, at) in all_containers(spec, path) {
        let Some(field) = c.security_context.as_ref().and_then(|sc| sc.seccomp_profile.as_ref()) else { continue };
        if let Some(annotation) = annotations.get(&format!("{SECCOMP_CONTAINER_PREFIX}{}", c.name)) {
            errs.extend(agree(annotation, field, &at.child("securityContext").child("seccompProfile")));
        }
    }
    errs
}

/// Upstream's `validateAppArmorAnnotationsAndFieldsMatchOnCreate`.
fn apparmor_annotations_match(annotations: Option<&BTreeMap<String, String>>, spec: &PodSpec, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let Some(annotations) = annotations else { return errs };
    if spec.os.as_ref().is_some_and(|os| os.name == "windows") {
        return errs;
    }
    let pod_profile = spec.security_context.as_ref().and_then(|sc| sc.app_armor_profile.as_ref());
    for (c, at) in all_containers(spec, path) {
        let Some(profile) = c.security_context.as_ref().and_then(|sc| sc.app_armor_profile.as_ref()).or(pod_profile) else { continue };
        let Some(annotation) = annotations.get(&format!("{APPARMOR_CONTAINER_PREFIX}{}", c.name)) else { continue };
        let at = at.child("securityContext").child("appArmorProfile");
        let type_mismatch = at.child("type").forbidden("apparmor type in annotation and field must match");
        match profile.type_.as_str() {
            "Unconfined" if annotation != "unconfined" => errs.push(type_mismatch),
            "RuntimeDefault" if annotation != "runtime/default" => errs.push(type_mismatch),
            "Localhost" => match annotation.strip_prefix("localhost/") {
                None => errs.push(type_mismatch),
                Some(local) if profile.localhost_profile.as_deref() != Some(local) => {
                    errs.push(at.child("localhostProfile").forbidden("apparmor profile in annotation and field must match"))
                }
                Some(_) => {}
            },
            _ => {}
        }
    }
    errs
}

// ---- containers ------------------------------------------------------------

/// The volumes a container may use, by name: only those that validated.
type Vols<'a> = BTreeMap<&'a str, &'a Volume>;

/// Upstream's `validateContainers`.
fn containers(list: &[Container], vols: &Vols, claims: &BTreeSet<&str>, path: &Path, ctx: &Ctx) -> Errors {
    if list.is_empty() {
        return vec![path.required("")];
    }
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, c) in list.iter().enumerate() {
        let at = path.index(i);
        errs.extend(container_common(c, vols, claims, &at, ctx));
        if !names.insert(c.name.as_str()) {
            errs.push(at.child("name").duplicate(&c.name));
        }
        errs.extend(lifecycle_and_probes(c, &at, ctx));
        if c.restart_policy.is_some() {
            errs.push(at.child("restartPolicy").forbidden("may not be set for non-init containers"));
        }
    }
    errs.extend(host_port_conflicts(list, path));
    errs
}

/// Upstream's `validateInitContainers`: as regular containers, but only a
/// restartable one (a sidecar, `restartPolicy: Always`) has probes and
/// lifecycle hooks; names are unique among all containers.
fn init_containers(list: &[Container], regular: &[Container], vols: &Vols, claims: &BTreeSet<&str>, path: &Path, ctx: &Ctx) -> Errors {
    let mut errs = Vec::new();
    let mut names: BTreeSet<&str> = regular.iter().map(|c| c.name.as_str()).collect();
    for (i, c) in list.iter().enumerate() {
        let at = path.index(i);
        errs.extend(container_common(c, vols, claims, &at, ctx));
        let mut sidecar = false;
        if let Some(policy) = &c.restart_policy {
            if policy != "Always" {
                errs.push(at.child("restartPolicy").not_supported(policy, &["Always"]));
            }
            sidecar = policy == "Always";
        }
        if names.contains(c.name.as_str()) {
            errs.push(at.child("name").duplicate(&c.name));
        } else if !c.name.is_empty() {
            names.insert(&c.name);
        }
        // Init containers run one at a time: only one's own ports can
        // conflict. (Upstream reports them at index 0 whatever the index.)
        errs.extend(host_port_conflicts(std::slice::from_ref(c), path));
        if sidecar {
            errs.extend(lifecycle_and_probes(c, &at, ctx));
        } else {
            let set = [("lifecycle", c.lifecycle.is_some()), ("livenessProbe", c.liveness_probe.is_some()), ("readinessProbe", c.readiness_probe.is_some()), ("startupProbe", c.startup_probe.is_some())];
            for (field, _) in set.iter().filter(|(_, set)| *set) {
                errs.push(at.child(field).forbidden(NOT_INIT_ALWAYS));
            }
        }
        if let Some(policy) = c.resize_policy.as_ref().filter(|p| !p.is_empty()) {
            errs.push(at.child("resizePolicy").invalid(Bad::raw(go_value(policy)), "must not be set for init containers"));
        }
    }
    errs
}

/// Upstream's `validateEphemeralContainers`: containers for debugging,
/// without ports, probes, hooks or resources, named uniquely in the pod.
fn ephemeral_containers(list: &[EphemeralContainer], regular: &[Container], inits: &[Container], vols: &Vols, claims: &BTreeSet<&str>, path: &Path, ctx: &Ctx) -> Errors {
    let mut errs = Vec::new();
    if list.is_empty() {
        return errs;
    }
    let others: BTreeSet<&str> = regular.iter().chain(inits).map(|c| c.name.as_str()).collect();
    let mut names = others.clone();
    for (i, ec) in list.iter().enumerate() {
        let at = path.index(i);
        let c = as_container(ec);
        errs.extend(container_common(&c, vols, claims, &at, ctx));
        errs.extend(image_whitespace(&c, &at));
        if !names.insert(ec.name.as_str()) {
            errs.push(at.child("name").duplicate(&ec.name));
        }
        if let Some(target) = ec.target_container_name.as_deref().filter(|t| !t.is_empty()) {
            if !others.contains(target) {
                errs.push(at.child("targetContainerName").not_found(target));
            }
        }
        // Upstream's allow-list, in the order of the Go structure's fields.
        let resources_set = ec.resources.as_ref().is_some_and(|r| r.limits.is_some() || r.requests.is_some() || r.claims.is_some());
        let disallowed = [
            ("ports", ec.ports.as_ref().is_some_and(|p| !p.is_empty())),
            ("resources", resources_set),
            ("resizePolicy", ec.resize_policy.as_ref().is_some_and(|p| !p.is_empty())),
            ("restartPolicy", ec.restart_policy.is_some()),
            ("livenessProbe", ec.liveness_probe.is_some()),
            ("readinessProbe", ec.readiness_probe.is_some()),
            ("startupProbe", ec.startup_probe.is_some()),
            ("lifecycle", ec.lifecycle.is_some()),
        ];
        for (field, _) in disallowed.iter().filter(|(_, set)| *set) {
            errs.push(at.child(field).forbidden(EPHEMERAL_FIELD));
        }
        for (j, mount) in ec.volume_mounts.iter().flatten().enumerate() {
            let mount_path = at.child("volumeMounts").index(j);
            if mount.sub_path.as_deref().is_some_and(|s| !s.is_empty()) {
                errs.push(mount_path.child("subPath").forbidden(EPHEMERAL_FIELD));
            }
            if mount.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty()) {
                errs.push(mount_path.child("subPathExpr").forbidden(EPHEMERAL_FIELD));
            }
        }
    }
    errs
}

/// Upstream's `validateContainerCommon`: what every kind of container
/// satisfies.
fn container_common(c: &Container, vols: &Vols, claims: &BTreeSet<&str>, path: &Path, ctx: &Ctx) -> Errors {
    let mut errs = Vec::new();
    let name_path = path.child("name");
    if c.name.is_empty() {
        errs.push(name_path.required(""));
    } else {
        errs.extend(name_by(dns1123_label, &c.name, &name_path));
    }
    if c.image.as_deref().unwrap_or_default().is_empty() {
        errs.push(path.child("image").required(""));
    }
    match c.termination_message_policy.as_deref().unwrap_or_default() {
        "" | "File" | "FallbackToLogsOnError" => {}
        other => errs.push(path.child("terminationMessagePolicy").not_supported(other, &["File", "FallbackToLogsOnError"])),
    }
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    let devices = c.volume_devices.as_deref().unwrap_or_default();
    errs.extend(container_ports(c.ports.as_deref().unwrap_or_default(), &path.child("ports")));
    errs.extend(env(c.env.as_deref().unwrap_or_default(), &path.child("env")));
    errs.extend(env_from(c.env_from.as_deref().unwrap_or_default(), &path.child("envFrom")));
    let privileged = c.security_context.as_ref().and_then(|sc| sc.privileged).unwrap_or(false);
    errs.extend(volume_mounts(mounts, devices, vols, privileged, &path.child("volumeMounts")));
    errs.extend(volume_devices(devices, mounts, vols, &path.child("volumeDevices")));
    match c.image_pull_policy.as_deref().unwrap_or_default() {
        "" | "Always" | "IfNotPresent" | "Never" => {}
        other => errs.push(path.child("imagePullPolicy").not_supported(other, &["Always", "IfNotPresent", "Never"])),
    }
    if let Some(r) = &c.resources {
        errs.extend(resource_requirements(r.limits.as_ref(), r.requests.as_ref(), r.claims.as_deref(), claims, Shown::Bare, &path.child("resources")));
    }
    errs.extend(resize_policy(c, &path.child("resizePolicy"), ctx));
    if let Some(sc) = &c.security_context {
        errs.extend(security_context(sc, &path.child("securityContext"), ctx.host_users));
    }
    errs
}

/// Upstream's `validateResizePolicy`.
fn resize_policy(c: &Container, path: &Path, ctx: &Ctx) -> Errors {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, p) in c.resize_policy.iter().flatten().enumerate() {
        if !seen.insert(p.resource_name.as_str()) {
            errs.push(path.index(i).duplicate(Bad::raw(&p.resource_name)));
        }
        match p.resource_name.as_str() {
            "cpu" | "memory" => {}
            "" => errs.push(path.required("")),
            other => errs.push(path.not_supported(Bad::raw(other), &["cpu", "memory"])),
        }
        match p.restart_policy.as_str() {
            "NotRequired" | "RestartContainer" => {}
            "" => errs.push(path.required("")),
            other => errs.push(path.not_supported(other, &["NotRequired", "RestartContainer"])),
        }
        if ctx.restart_policy == "Never" && p.restart_policy != "NotRequired" {
            errs.push(path.invalid(p.restart_policy.as_str(), "must be 'NotRequired' when `restartPolicy` is 'Never'"));
        }
    }
    errs
}

/// The probes and hooks of a container that may have them.
fn lifecycle_and_probes(c: &Container, path: &Path, ctx: &Ctx) -> Errors {
    let mut errs = Vec::new();
    if let Some(lifecycle) = &c.lifecycle {
        errs.extend(lifecycle_hooks(lifecycle, ctx.grace_period, &path.child("lifecycle")));
    }
    if let Some(p) = &c.liveness_probe {
        let at = path.child("livenessProbe");
        errs.extend(probe(p, ctx.grace_period, &at));
        errs.extend(success_threshold_one(p, &at));
    }
    if let Some(p) = &c.readiness_probe {
        let at = path.child("readinessProbe");
        errs.extend(probe(p, ctx.grace_period, &at));
        if let Some(grace) = p.termination_grace_period_seconds {
            errs.push(at.child("terminationGracePeriodSeconds").invalid(grace, "must not be set for readinessProbes"));
        }
    }
    if let Some(p) = &c.startup_probe {
        let at = path.child("startupProbe");
        errs.extend(probe(p, ctx.grace_period, &at));
        errs.extend(success_threshold_one(p, &at));
    }
    errs
}

/// A probe's setting as upstream's `SetDefaults_Probe` leaves it: unset
/// and 0 both mean the default.
fn probe_setting(value: Option<i32>, default: i32) -> i32 {
    value.filter(|v| *v != 0).unwrap_or(default)
}

fn success_threshold_one(p: &Probe, path: &Path) -> Errors {
    let success = probe_setting(p.success_threshold, 1);
    if success != 1 {
        vec![path.child("successThreshold").invalid(success, "must be 1")]
    } else {
        vec![]
    }
}

/// Upstream's `validateProbe`.
fn probe(p: &Probe, grace_period: i64, path: &Path) -> Errors {
    let handler = Handler { exec: p.exec.as_ref(), http_get: p.http_get.as_ref(), tcp_socket: p.tcp_socket.as_ref().map(|t| &t.port), grpc: p.grpc.as_ref().map(|g| g.port), sleep: None };
    let mut errs = handler.check(grace_period, path);
    errs.extend(non_negative(p.initial_delay_seconds.unwrap_or(0).into(), &path.child("initialDelaySeconds")));
    errs.extend(non_negative(probe_setting(p.timeout_seconds, 1).into(), &path.child("timeoutSeconds")));
    errs.extend(non_negative(probe_setting(p.period_seconds, 10).into(), &path.child("periodSeconds")));
    errs.extend(non_negative(probe_setting(p.success_threshold, 1).into(), &path.child("successThreshold")));
    errs.extend(non_negative(probe_setting(p.failure_threshold, 3).into(), &path.child("failureThreshold")));
    if let Some(grace) = p.termination_grace_period_seconds.filter(|g| *g <= 0) {
        errs.push(path.child("terminationGracePeriodSeconds").invalid(grace, "must be greater than 0"));
    }
    errs
}

fn lifecycle_hooks(lifecycle: &Lifecycle, grace_period: i64, path: &Path) -> Errors {
    let mut errs = Vec::new();
    for (field, hook) in [("postStart", &lifecycle.post_start), ("preStop", &lifecycle.pre_stop)] {
        if let Some(h) = hook {
            errs.extend(Handler::of_hook(h).check(grace_period, &path.child(field)));
        }
    }
    errs
}

/// Upstream's `commonHandler`: the ways a probe or hook acts.
struct Handler<'a> {
    exec: Option<&'a ExecAction>,
    http_get: Option<&'a HTTPGetAction>,
    tcp_socket: Option<&'a IntOrString>,
    grpc: Option<i32>,
    sleep: Option<i64>,
}

impl<'a> Handler<'a> {
    fn of_hook(h: &'a LifecycleHandler) -> Handler<'a> {
        Handler { exec: h.exec.as_ref(), http_get: h.http_get.as_ref(), tcp_socket: h.tcp_socket.as_ref().map(|t| &t.port), grpc: None, sleep: h.sleep.as_ref().map(|s| s.seconds) }
    }

    /// Upstream's `validateHandler`: exactly one action, each valid.
    fn check(&self, grace_period: i64, path: &Path) -> Errors {
        let mut errs = Vec::new();
        let mut count = 0;
        let mut one = |field: &str, set: bool, errs: &mut Errors| -> bool {
            if !set {
                return false;
            }
            if count > 0 {
                errs.push(path.child(field).forbidden("may not specify more than 1 handler type"));
                return false;
            }
            count += 1;
            true
        };
        if one("exec", self.exec.is_some(), &mut errs) && self.exec.is_some_and(|e| e.command.as_ref().is_none_or(Vec::is_empty)) {
            errs.push(path.child("exec").child("command").required(""));
        }
        if one("httpGet", self.http_get.is_some(), &mut errs) {
            errs.extend(http_get(self.http_get.expect("set"), &path.child("httpGet")));
        }
        if one("tcpSocket", self.tcp_socket.is_some(), &mut errs) {
            errs.extend(port_number_or_name(self.tcp_socket.expect("set"), &path.child("tcpSocket").child("port")));
        }
        if one("grpc", self.grpc.is_some(), &mut errs) {
            errs.extend(port_number(self.grpc.expect("set").into(), &path.child("grpc").child("port")));
        }
        if one("sleep", self.sleep.is_some(), &mut errs) {
            let seconds = self.sleep.expect("set");
            if seconds <= 0 || seconds > grace_period {
                let why = format!("must be greater than 0 and less than terminationGracePeriodSeconds ({grace_period}). Enable AllowPodLifecycleSleepActionZeroValue feature gate for zero sleep.");
                errs.push(path.child("sleep").invalid(seconds, &why));
            }
        }
        if count == 0 {
            errs.push(path.required("must specify a handler type"));
        }
        errs
    }
}

/// Upstream's `validateHTTPGetAction`. The path and scheme default to
/// `/` and `HTTP` (upstream's `SetDefaults_HTTPGetAction`).
fn http_get(action: &HTTPGetAction, path: &Path) -> Errors {
    let mut errs = port_number_or_name(&action.port, &path.child("port"));
    match action.scheme.as_deref().unwrap_or_default() {
        "" | "HTTP" | "HTTPS" => {}
        other => errs.push(path.child("scheme").not_supported(other, &["HTTP", "HTTPS"])),
    }
    for header in action.http_headers.iter().flatten() {
        if header.name.is_empty() || !header.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            errs.push(path.child("httpHeaders").invalid(
                &header.name,
                "a valid HTTP header must consist of alphanumeric characters or '-' (e.g. 'X-Header-Name', regex used for validation is '[-A-Za-z0-9]+')",
            ));
        }
    }
    errs
}

/// Upstream's `ValidatePortNumOrName`.
fn port_number_or_name(port: &IntOrString, path: &Path) -> Errors {
    match port {
        IntOrString::Int(n) => port_number((*n).into(), path),
        IntOrString::String(name) => port_name(name, path),
    }
}

/// Upstream's `validateContainerPorts`.
fn container_ports(ports: &[ContainerPort], path: &Path) -> Errors {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let at = path.index(i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let name_errs = port_name(name, &at.child("name"));
            if !name_errs.is_empty() {
                errs.extend(name_errs);
            } else if !names.insert(name) {
                errs.push(at.child("name").duplicate(name));
            }
        }
        if port.container_port == 0 {
            errs.push(at.child("containerPort").required(""));
        } else {
            errs.extend(port_number(port.container_port.into(), &at.child("containerPort")));
        }
        if let Some(host_port) = port.host_port.filter(|p| *p != 0) {
            errs.extend(port_number(host_port.into(), &at.child("hostPort")));
        }
        match port.protocol.as_deref().unwrap_or_default() {
            "" | "TCP" | "UDP" | "SCTP" => {}
            other => errs.push(at.child("protocol").not_supported(other, &["SCTP", "TCP", "UDP"])),
        }
    }
    errs
}

/// Upstream's `AccumulateUniqueHostPorts` over `list`: a host port is
/// used once per protocol and host IP.
fn host_port_conflicts(list: &[Container], path: &Path) -> Errors {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (ci, c) in list.iter().enumerate() {
        for (pi, port) in c.ports.iter().flatten().enumerate() {
            let Some(host_port) = port.host_port.filter(|p| *p != 0) else { continue };
            let protocol = port.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP");
            let key = format!("{protocol}/{}/{host_port}", port.host_ip.as_deref().unwrap_or_default());
            if seen.contains(&key) {
                errs.push(path.index(ci).child("ports").index(pi).child("hostPort").duplicate(&key));
            } else {
                seen.insert(key);
            }
        }
    }
    errs
}

/// Upstream's `validatePodHostNetworkDeps`: with the host's network a
/// container's port is the host's. A hostPort left unset is defaulted to
/// the containerPort in pods (upstream's `SetDefaults_Pod`), so only a
/// different one set is wrong.
fn host_network_ports(spec: &PodSpec, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if spec.host_network != Some(true) {
        return errs;
    }
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, port) in c.ports.iter().flatten().enumerate() {
            let host_port = port.host_port.unwrap_or(0);
            if host_port != 0 && host_port != port.container_port {
                errs.push(path.child("containers").index(i).child("ports").index(j).child("hostPort").invalid(host_port, "must match `containerPort` when `hostNetwork` is true"));
            }
        }
    }
    errs
}

// ---- environment -------------------------------------------------------------

const ENV_VAR_NAME: &str = "a valid environment variable name must consist only of printable ASCII characters other than '='";

/// Upstream's `IsRelaxedEnvVarName` (RelaxedEnvironmentVariableValidation).
fn env_var_name(name: &str, path: &Path) -> Errors {
    if name.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'=') {
        vec![]
    } else {
        vec![path.invalid(name, ENV_VAR_NAME)]
    }
}

/// Upstream's `ValidateEnv`.
fn env(vars: &[EnvVar], path: &Path) -> Errors {
    let mut errs = Vec::new();
    for (i, var) in vars.iter().enumerate() {
        let at = path.index(i);
        if var.name.is_empty() {
            errs.push(at.child("name").required(""));
        } else {
            errs.extend(env_var_name(&var.name, &at.child("name")));
        }
        let Some(from) = &var.value_from else { continue };
        let from_path = at.child("valueFrom");
        let mut sources = 0;
        if let Some(field_ref) = &from.field_ref {
            sources += 1;
            errs.extend(object_field_selector(field_ref, &ENV_FIELD_PATHS, &from_path.child("fieldRef")));
        }
        if let Some(resource_ref) = &from.resource_field_ref {
            sources += 1;
            errs.extend(resource_field_selector(resource_ref, false, &from_path.child("resourceFieldRef")));
        }
        if let Some(key_ref) = &from.config_map_key_ref {
            sources += 1;
            errs.extend(key_selector(&key_ref.name, &key_ref.key, &from_path.child("configMapKeyRef")));
        }
        if let Some(key_ref) = &from.secret_key_ref {
            sources += 1;
            errs.extend(key_selector(&key_ref.name, &key_ref.key, &from_path.child("secretKeyRef")));
        }
        if sources == 0 {
            errs.push(from_path.invalid("", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"));
        } else if !var.value.as_deref().unwrap_or_default().is_empty() {
            errs.push(from_path.invalid("", "may not be specified when `value` is not empty"));
        } else if sources > 1 {
            errs.push(from_path.invalid("", "may not have more than one field specified at a time"));
        }
    }
    errs
}

/// The pod fields an environment variable may hold (upstream's
/// `validEnvDownwardAPIFieldPathExpressions`), sorted.
const ENV_FIELD_PATHS: [&str; 9] =
    ["metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"];
/// The pod fields a downward API volume file may hold.
const VOLUME_FIELD_PATHS: [&str; 5] = ["metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid"];
/// The fields `ConvertDownwardAPIFieldLabel` knows for pods.
const POD_FIELD_LABELS: [&str; 14] = [
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// Upstream's `SplitMaybeSubscriptedPath`: `metadata.labels['app']`.
fn split_subscript(field_path: &str) -> Option<(&str, &str)> {
    let inner = field_path.strip_suffix("']")?;
    let (path, subscript) = inner.split_once("['")?;
    (!path.is_empty()).then_some((path, subscript))
}

/// Upstream's `validateObjectFieldSelector`. The apiVersion defaults to
/// `v1` (upstream's `SetDefaults_ObjectFieldSelector`).
fn object_field_selector(selector: &ObjectFieldSelector, allowed: &[&str], path: &Path) -> Errors {
    let version = selector.api_version.as_deref().filter(|v| !v.is_empty()).unwrap_or("v1");
    let field_path = selector.field_path.as_str();
    if field_path.is_empty() {
        return vec![path.child("fieldPath").required("")];
    }
    let conversion = if version != "v1" {
        Err(format!("unsupported pod version: {version}"))
    } else if let Some((base, _)) = split_subscript(field_path) {
        if base == "metadata.annotations" || base == "metadata.labels" {
            Ok(field_path)
        } else {
            Err(format!("field label does not support subscript: {field_path}"))
        }
    } else if POD_FIELD_LABELS.contains(&field_path) {
        Ok(field_path)
    } else if field_path == "spec.host" {
        Ok("spec.nodeName")
    } else {
        Err(format!("field label not supported: {field_path}"))
    };
    let internal = match conversion {
        Ok(p) => p,
        Err(e) => return vec![path.child("fieldPath").invalid(field_path, &format!("error converting fieldPath: {e}"))],
    };
    match split_subscript(internal) {
        Some(("metadata.annotations", key)) => name_by(qualified_name, &key.to_ascii_lowercase(), path),
        Some((_, key)) => name_by(qualified_name, key, path),
        None if !allowed.contains(&internal) => vec![path.child("fieldPath").not_supported(internal, allowed)],
        None => vec![],
    }
}

/// Upstream's `validateContainerResourceFieldSelector`; a volume's file
/// also names its container.
fn resource_field_selector(selector: &ResourceFieldSelector, volume: bool, path: &Path) -> Errors {
    const RESOURCES: [&str; 6] = ["limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu", "requests.ephemeral-storage", "requests.memory"];
    let mut errs = Vec::new();
    let resource = selector.resource.as_str();
    if volume && selector.container_name.as_deref().unwrap_or_default().is_empty() {
        errs.push(path.child("containerName").required(""));
    } else if resource.is_empty() {
        errs.push(path.child("resource").required(""));
    } else if !RESOURCES.contains(&resource) && !resource.starts_with("requests.hugepages-") && !resource.starts_with("limits.hugepages-") {
        errs.push(path.child("resource").not_supported(resource, &RESOURCES));
    }
    let Some(divisor) = selector.divisor.as_ref().filter(|d| super::milli(d) != 0) else { return errs };
    const SIZES: [&str; 13] = ["1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei"];
    const SIZE_LIST: &str = "1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei";
    let shown = canonical(divisor);
    let why = match resource {
        "limits.cpu" | "requests.cpu" if !["1m", "1"].contains(&shown.as_str()) => Some("only divisor's values 1m and 1 are supported with the cpu resource".to_string()),
        "limits.memory" | "requests.memory" if !SIZES.contains(&shown.as_str()) => Some(format!("only divisor's values {SIZE_LIST} are supported with the memory resource")),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" if !SIZES.contains(&shown.as_str()) => {
            Some(format!("only divisor's values {SIZE_LIST} are supported with the local ephemeral storage resource"))
        }
        r if (r.starts_with("requests.hugepages-") || r.starts_with("limits.hugepages-")) && !SIZES.contains(&shown.as_str()) => {
            Some(format!("only divisor's values {SIZE_LIST} are supported with the hugepages resource"))
        }
        _ => None,
    };
    if let Some(why) = why {
        errs.push(path.child("divisor").invalid(resource, &why));
    }
    errs
}

/// Upstream's `validateConfigMapKeySelector` and `validateSecretKeySelector`.
fn key_selector(name: &str, key: &str, path: &Path) -> Errors {
    let mut errs = name_by(dns1123_subdomain, name, &path.child("name"));
    if key.is_empty() {
        errs.push(path.child("key").required(""));
    } else {
        errs.extend(config_map_key(key, &path.child("key")));
    }
    errs
}

/// Upstream's `ValidateEnvFrom`.
fn env_from(sources: &[EnvFromSource], path: &Path) -> Errors {
    let mut errs = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let at = path.index(i);
        if let Some(prefix) = source.prefix.as_deref().filter(|p| !p.is_empty()) {
            errs.extend(env_var_name(prefix, &at.child("prefix")));
        }
        let mut count = 0;
        for (field, name) in [("configMapRef", source.config_map_ref.as_ref().map(|r| &r.name)), ("secretRef", source.secret_ref.as_ref().map(|r| &r.name))] {
            let Some(name) = name else { continue };
            count += 1;
            let name_path = at.child(field).child("name");
            if name.is_empty() {
                errs.push(name_path.required(""));
            } else {
                errs.extend(name_by(dns1123_subdomain_prefix, name, &name_path));
            }
        }
        if count == 0 {
            errs.push(path.invalid("", "must specify one of: `configMapRef` or `secretRef`"));
        } else if count > 1 {
            errs.push(path.invalid("", "may not have more than one field specified at a time"));
        }
    }
    errs
}

// ---- volume mounts and devices -------------------------------------------------

/// Upstream's `ValidateVolumeMounts`. (Upstream's paths for subPath,
/// mountPropagation and recursiveReadOnly lack the mount's index.)
fn volume_mounts(mounts: &[VolumeMount], devices: &[VolumeDevice], vols: &Vols, privileged: bool, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let mut mount_points = BTreeSet::new();
    for (i, mount) in mounts.iter().enumerate() {
        let at = path.index(i);
        if mount.name.is_empty() {
            errs.push(at.child("name").required(""));
        }
        if !vols.contains_key(mount.name.as_str()) {
            errs.push(at.child("name").not_found(&mount.name));
        }
        if mount.mount_path.is_empty() {
            errs.push(at.child("mountPath").required(""));
        }
        if !mount_points.insert(mount.mount_path.as_str()) {
            errs.push(at.child("mountPath").invalid(&mount.mount_path, "must be unique"));
        }
        if devices.iter().any(|d| d.name == mount.name) {
            errs.push(at.child("name").invalid(&mount.name, "must not already exist in volumeDevices"));
        }
        if devices.iter().any(|d| d.device_path == mount.mount_path) {
            errs.push(at.child("mountPath").invalid(&mount.mount_path, "must not already exist as a path in volumeDevices"));
        }
        let sub_path = mount.sub_path.as_deref().unwrap_or_default();
        let sub_path_expr = mount.sub_path_expr.as_deref().unwrap_or_default();
        if vols.get(mount.name.as_str()).is_some_and(|v| v.image.is_some()) {
            if !sub_path.is_empty() {
                errs.push(at.child("subPath").invalid(sub_path, "not allowed in image volume sources"));
            }
            if !sub_path_expr.is_empty() {
                errs.push(at.child("subPathExpr").invalid(sub_path_expr, "not allowed in image volume sources"));
            }
        }
        if !sub_path.is_empty() {
            errs.extend(local_descending_path(sub_path, &path.child("subPath")));
        }
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(at.child("subPathExpr").invalid(sub_path_expr, "subPathExpr and subPath are mutually exclusive"));
            }
            errs.extend(local_descending_path(sub_path_expr, &path.child("subPathExpr")));
        }
        if let Some(propagation) = &mount.mount_propagation {
            let at = path.child("mountPropagation");
            match propagation.as_str() {
                "Bidirectional" | "HostToContainer" | "None" => {}
                other => errs.push(at.not_supported(other, &["Bidirectional", "HostToContainer", "None"])),
            }
            if propagation == "Bidirectional" && !privileged {
                errs.push(at.forbidden("Bidirectional mount propagation is available only to privileged containers"));
            }
        }
        if let Some(rro) = &mount.recursive_read_only {
            let at = path.child("recursiveReadOnly");
            match rro.as_str() {
                "Disabled" => {}
                "Enabled" | "IfPossible" => {
                    if mount.read_only != Some(true) {
                        errs.push(at.forbidden("may only be specified when readOnly is true"));
                    }
                    if mount.mount_propagation.as_deref().is_some_and(|p| p != "None") {
                        errs.push(at.forbidden("may only be specified when mountPropagation is None or not specified"));
                    }
                }
                other => errs.push(at.not_supported(other, &["Disabled", "Enabled", "IfPossible"])),
            }
        }
    }
    errs
}

/// Upstream's `ValidateVolumeDevices`: block devices come from claims.
fn volume_devices(devices: &[VolumeDevice], mounts: &[VolumeMount], vols: &Vols, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let (mut paths, mut names) = (BTreeSet::new(), BTreeSet::new());
    for (i, device) in devices.iter().enumerate() {
        let at = path.index(i);
        let (name, device_path) = (device.name.as_str(), device.device_path.as_str());
        let volume = vols.get(name);
        if name.is_empty() {
            errs.push(at.child("name").required(""));
        }
        if names.contains(name) {
            errs.push(at.child("name").invalid(name, "must be unique"));
        }
        match volume {
            Some(v) if v.persistent_volume_claim.is_none() && v.ephemeral.is_none() => {
                errs.push(at.child("name").invalid(name, "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode"))
            }
            Some(_) => {}
            None => errs.push(at.child("name").not_found(name)),
        }
        if device_path.is_empty() {
            errs.push(at.child("devicePath").required(""));
        }
        if paths.contains(device_path) {
            errs.push(at.child("devicePath").invalid(device_path, "must be unique"));
        }
        if !device_path.is_empty() && device_path.split('/').any(|part| part == "..") {
            errs.push(at.child("devicePath").invalid(device_path, "can not contain backsteps ('..')"));
        } else {
            paths.insert(device_path);
        }
        if mounts.iter().any(|m| m.name == name) {
            errs.push(at.child("name").invalid(name, "must not already exist in volumeMounts"));
        }
        if mounts.iter().any(|m| m.mount_path == device_path) {
            errs.push(at.child("devicePath").invalid(device_path, "must not already exist as a path in volumeMounts"));
        }
        if !name.is_empty() {
            names.insert(name);
        }
    }
    errs
}

// ---- paths -------------------------------------------------------------------

/// Upstream's `validatePathNoBacksteps` (on Linux: `\` is no separator).
pub(super) fn no_backsteps(target: &str, path: &Path) -> Errors {
    if target.split('/').any(|part| part == "..") {
        vec![path.invalid(target, "must not contain '..'")]
    } else {
        vec![]
    }
}

/// Upstream's `validateLocalDescendingPath`: relative, without `..`.
fn local_descending_path(target: &str, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if target.starts_with('/') {
        errs.push(path.invalid(target, "must be a relative path"));
    }
    errs.extend(no_backsteps(target, path));
    errs
}

/// Upstream's `ValidateLocalNonReservedPath`: also not starting `..`.
fn local_non_reserved_path(target: &str, path: &Path) -> Errors {
    let mut errs = local_descending_path(target, path);
    if target.starts_with("..") && !target.starts_with("../") {
        errs.push(path.invalid(target, "must not start with '..'"));
    }
    errs
}

// ---- resources -----------------------------------------------------------------

/// Upstream's `ValidateContainerResourceRequirements` (and, with limits
/// only, `validateOverhead`, which RuntimeClasses use too).
pub(super) fn resource_requirements(
    limits: Option<&BTreeMap<String, Quantity>>,
    requests: Option<&BTreeMap<String, Quantity>>,
    claims: Option<&[ResourceClaim]>,
    pod_claims: &BTreeSet<&str>,
    shown: Shown,
    path: &Path,
) -> Errors {
    let mut errs = Vec::new();
    let (lim_path, req_path) = (path.child("limits"), path.child("requests"));
    let empty = BTreeMap::new();
    let (limits, requests) = (limits.unwrap_or(&empty), requests.unwrap_or(&empty));
    let compute = |name: &str| name == "cpu" || name == "memory";
    for (name, q) in limits {
        let at = lim_path.key(name);
        errs.extend(container_resource_name(name, shown, &at));
        errs.extend(resource_quantity_value(name, q, shown, &at));
        if is_hugepages(name) && quantity_error(&q.0).is_none() {
            errs.extend(hugepages_quantity(name, q, &at));
        }
    }
    for (name, q) in requests {
        let at = req_path.key(name);
        errs.extend(container_resource_name(name, shown, &at));
        errs.extend(resource_quantity_value(name, q, shown, &at));
        match limits.get(name) {
            Some(limit) if super::milli(q) != super::milli(limit) && !overcommit_allowed(name) => {
                errs.push(req_path.invalid(canonical(q), &format!("must be equal to {name} limit of {}", canonical(limit))))
            }
            Some(limit) if super::milli(q) > super::milli(limit) => {
                errs.push(req_path.invalid(canonical(q), &format!("must be less than or equal to {name} limit of {}", canonical(limit))))
            }
            Some(_) => {}
            None if !overcommit_allowed(name) => errs.push(lim_path.required("Limit must be set for non overcommitable resources")),
            None => {}
        }
        if is_hugepages(name) && quantity_error(&q.0).is_none() {
            errs.extend(hugepages_quantity(name, q, &at));
        }
    }
    let hugepages = limits.keys().chain(requests.keys()).any(|n| is_hugepages(n));
    if hugepages && !limits.keys().chain(requests.keys()).any(|n| compute(n)) {
        errs.push(path.forbidden("HugePages require cpu or memory"));
    }
    errs.extend(resource_claim_names(claims.unwrap_or_default(), pod_claims, &path.child("claims")));
    errs
}

/// Upstream's `validateResourceClaimNames`: a container's claims are the
/// pod's, each used once.
fn resource_claim_names(claims: &[ResourceClaim], pod_claims: &BTreeSet<&str>, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    for (i, claim) in claims.iter().enumerate() {
        let at = path.index(i);
        let name = claim.name.as_str();
        if name.is_empty() {
            errs.push(at.required(""));
            continue;
        }
        if names.contains(name) {
            errs.push(at.duplicate(name));
        } else {
            let request = claim.request.as_deref().unwrap_or_default();
            let mut key = name.to_string();
            if !request.is_empty() {
                errs.extend(name_by(dns1123_label, request, &at.child("request")));
                key = format!("{name}/{request}");
            }
            if names.contains(&key) {
                errs.push(at.duplicate(&key));
            } else if request.is_empty() && names.iter().any(|k| k.split_once('/').is_some_and(|(n, _)| n == name)) {
                errs.push(at.duplicate(name));
            }
            names.insert(key);
        }
        if !pod_claims.contains(name) {
            let known = if pod_claims.is_empty() { " which is empty".to_string() } else { format!(": {}", pod_claims.iter().copied().collect::<Vec<_>>().join(", ")) };
            let mut e = at.not_found(name);
            e.message = format!("{}: must be one of the names in pod.spec.resourceClaims{known}", e.message);
            errs.push(e);
        }
    }
    errs
}

/// Upstream's `validatePodResourceClaims`.
fn pod_resource_claims(spec: &PodSpec, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, claim) in spec.resource_claims.iter().flatten().enumerate() {
        let at = path.index(i);
        if claim.name.is_empty() {
            errs.push(at.child("name").required(""));
        } else if names.contains(claim.name.as_str()) {
            errs.push(at.child("name").duplicate(&claim.name));
        } else {
            errs.extend(name_by(dns1123_label, &claim.name, &at.child("name")));
            names.insert(claim.name.as_str());
        }
        match (&claim.resource_claim_name, &claim.resource_claim_template_name) {
            (Some(_), Some(_)) => errs.push(at.invalid(Bad::raw(go_value(claim)), "at most one of `resourceClaimName` or `resourceClaimTemplateName` may be specified")),
            (None, None) => errs.push(at.invalid(Bad::raw(go_value(claim)), "must specify one of: `resourceClaimName`, `resourceClaimTemplateName`")),
            _ => {}
        }
        if let Some(name) = &claim.resource_claim_name {
            errs.extend(name_by(dns1123_subdomain, name, &at.child("resourceClaimName")));
        }
        if let Some(name) = &claim.resource_claim_template_name {
            errs.extend(name_by(dns1123_subdomain, name, &at.child("resourceClaimTemplateName")));
        }
    }
    errs
}

// ---- security contexts -------------------------------------------------------------

/// Upstream's `IsValidUserID` / `IsValidGroupID` (1.32's int32 range).
fn id(value: i64, path: &Path) -> Errors {
    inclusive_range(value, 0, i32::MAX.into(), path)
}

/// Upstream's `ValidateSecurityContext` (a container's).
fn security_context(sc: &SecurityContext, path: &Path, host_users: bool) -> Errors {
    let mut errs = Vec::new();
    if let Some(user) = sc.run_as_user {
        errs.extend(id(user, &path.child("runAsUser")));
    }
    if let Some(group) = sc.run_as_group {
        errs.extend(id(group, &path.child("runAsGroup")));
    }
    if let Some(proc_mount) = &sc.proc_mount {
        if proc_mount != "Default" && proc_mount != "Unmasked" {
            errs.push(path.child("procMount").not_supported(proc_mount, &["Default", "Unmasked"]));
        }
        if host_users && proc_mount == "Unmasked" {
            errs.push(path.child("procMount").invalid(proc_mount, "`hostUsers` must be false to use `Unmasked`"));
        }
    }
    if let Some(profile) = &sc.seccomp_profile {
        errs.extend(seccomp_profile(profile, &path.child("seccompProfile")));
    }
    if sc.allow_privilege_escalation == Some(false) {
        if sc.privileged == Some(true) {
            errs.push(path.invalid(Bad::raw(go_value(sc)), "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"));
        }
        for cap in sc.capabilities.iter().flat_map(|c| c.add.iter().flatten()) {
            if cap == "CAP_SYS_ADMIN" {
                errs.push(path.invalid(Bad::raw(go_value(sc)), "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"));
            }
        }
    }
    if let Some(options) = &sc.windows_options {
        errs.extend(windows_options(options, &path.child("windowsOptions")));
    }
    if let Some(profile) = &sc.app_armor_profile {
        errs.extend(apparmor_profile(profile, &path.child("appArmorProfile")));
    }
    errs
}

/// Upstream's `validatePodSpecSecurityContext`. Upstream keeps the host
/// namespaces and shareProcessNamespace in the pod's security context,
/// hence the path of the one rule about them.
fn pod_security_context(spec: &PodSpec, spec_path: &Path) -> Errors {
    let mut errs = Vec::new();
    let path = spec_path.child("securityContext");
    let default = PodSecurityContext::default();
    let sc = spec.security_context.as_ref().unwrap_or(&default);
    for (field, value) in [("fsGroup", sc.fs_group), ("runAsUser", sc.run_as_user), ("runAsGroup", sc.run_as_group)] {
        if let Some(value) = value {
            errs.extend(id(value, &path.child(field)));
        }
    }
    for (i, group) in sc.supplemental_groups.iter().flatten().enumerate() {
        errs.extend(id(*group, &path.child("supplementalGroups").index(i)));
    }
    if spec.share_process_namespace == Some(true) && spec.host_pid == Some(true) {
        errs.push(path.child("shareProcessNamespace").invalid(true, "ShareProcessNamespace and HostPID cannot both be enabled"));
    }
    errs.extend(sysctls(spec, sc, &path.child("sysctls")));
    if let Some(policy) = &sc.fs_group_change_policy {
        if policy != "OnRootMismatch" && policy != "Always" {
            errs.push(path.child("fsGroupChangePolicy").not_supported(policy, &["Always", "OnRootMismatch"]));
        }
    }
    if let Some(profile) = &sc.seccomp_profile {
        errs.extend(seccomp_profile(profile, &path.child("seccompProfile")));
    }
    if let Some(options) = &sc.windows_options {
        errs.extend(windows_options(options, &path.child("windowsOptions")));
    }
    if let Some(profile) = &sc.app_armor_profile {
        errs.extend(apparmor_profile(profile, &path.child("appArmorProfile")));
    }
    if let Some(policy) = &sc.supplemental_groups_policy {
        if policy != "Merge" && policy != "Strict" {
            errs.push(path.child("supplementalGroupsPolicy").not_supported(policy, &["Merge", "Strict"]));
        }
    }
    if let Some(policy) = &sc.se_linux_change_policy {
        if policy != "MountOption" && policy != "Recursive" {
            errs.push(path.child("seLinuxChangePolicy").not_supported(policy, &["MountOption", "Recursive"]));
        }
    }
    errs
}

/// Upstream's `validateSysctls`: well-formed, once each, and not of a
/// namespace the pod shares with its host.
fn sysctls(spec: &PodSpec, sc: &PodSecurityContext, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, sysctl) in sc.sysctls.iter().flatten().enumerate() {
        let at = path.index(i).child("name");
        let name = sysctl.name.as_str();
        if name.is_empty() {
            errs.push(at.required(""));
        } else if !valid_sysctl_name(name) {
            errs.push(at.invalid(name, "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$"));
        } else if names.contains(name) {
            errs.push(at.duplicate(name));
        }
        // Upstream's utilsysctl.GetNamespace, on the name written with dots.
        let normal: String = if name.find(['.', '/']).is_some_and(|i| name.as_bytes()[i] == b'/') {
            name.chars().map(|c| match c { '.' => '/', '/' => '.', c => c }).collect()
        } else {
            name.to_string()
        };
        let ipc = ["kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced", "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem"].contains(&normal.as_str())
            || normal.starts_with("fs.mqueue.");
        if spec.host_network == Some(true) && normal.starts_with("net.") {
            errs.push(at.invalid(name, "may not be specified when 'hostNetwork' is true"));
        } else if spec.host_ipc == Some(true) && ipc {
            errs.push(at.invalid(name, "may not be specified when 'hostIPC' is true"));
        }
        names.insert(name);
    }
    errs
}

/// Upstream's `IsValidSysctlName`.
fn valid_sysctl_name(name: &str) -> bool {
    let segment = |s: &str| {
        let b = s.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
    };
    name.len() <= 253 && name.split(['.', '/']).all(segment)
}

/// Upstream's `validateSeccompProfileField`.
fn seccomp_profile(profile: &SeccompProfile, path: &Path) -> Errors {
    let mut errs = Vec::new();
    match profile.type_.as_str() {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => errs.push(path.child("type").required("type is required when seccompProfile is set")),
        other => errs.push(path.child("type").not_supported(other, &["Localhost", "RuntimeDefault", "Unconfined"])),
    }
    match (&profile.localhost_profile, profile.type_ == "Localhost") {
        (None, true) => errs.push(path.child("localhostProfile").required("must be set when seccomp type is Localhost")),
        (Some(local), true) => errs.extend(local_descending_path(local, &path.child("localhostProfile"))),
        (Some(_), false) => errs.push(path.child("localhostProfile").invalid(Bad::raw(go_value(profile)), "can only be set when seccomp type is Localhost")),
        (None, false) => {}
    }
    errs
}

/// Upstream's `ValidateAppArmorProfileField`.
fn apparmor_profile(profile: &AppArmorProfile, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let local_path = path.child("localhostProfile");
    match profile.type_.as_str() {
        "Localhost" => match &profile.localhost_profile {
            None => errs.push(local_path.required("must be set when AppArmor type is Localhost")),
            Some(local) => {
                if local.trim() != local {
                    errs.push(local_path.invalid(local, "must not be padded with whitespace"));
                } else if local.is_empty() {
                    errs.push(local_path.required("must be set when AppArmor type is Localhost"));
                }
                if local.len() > 4095 {
                    errs.push(local_path.too_long(4095));
                }
            }
        },
        "RuntimeDefault" | "Unconfined" => {
            if let Some(local) = &profile.localhost_profile {
                errs.push(local_path.invalid(local, "can only be set when AppArmor type is Localhost"));
            }
        }
        "" => errs.push(path.child("type").required("type is required when appArmorProfile is set")),
        other => errs.push(path.child("type").not_supported(other, &["Localhost", "RuntimeDefault", "Unconfined"])),
    }
    errs
}

/// Upstream's `validateWindowsSecurityContextOptions`.
fn windows_options(options: &WindowsSecurityContextOptions, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if let Some(name) = &options.gmsa_credential_spec_name {
        errs.extend(name_by(dns1123_subdomain, name, &path.child("gmsaCredentialSpecName")));
    }
    if let Some(spec) = &options.gmsa_credential_spec {
        if spec.is_empty() {
            errs.push(path.child("gmsaCredentialSpec").invalid(spec, "gmsaCredentialSpec cannot be an empty string"));
        } else if spec.len() > 64 * 1024 {
            errs.push(path.child("gmsaCredentialSpec").invalid(spec, "gmsaCredentialSpec size must be under 64 KiB"));
        }
    }
    let Some(user_name) = &options.run_as_user_name else { return errs };
    let at = path.child("runAsUserName");
    let mut bad = |why: &str| errs.push(at.invalid(user_name, why));
    let parts: Vec<&str> = user_name.split('\\').collect();
    if user_name.is_empty() {
        bad("runAsUserName cannot be an empty string");
    } else if user_name.chars().any(|c| c.is_ascii_control()) {
        bad("runAsUserName cannot contain control characters");
    } else if parts.len() > 2 {
        bad("runAsUserName cannot contain more than one backslash");
    } else {
        let (domain, user) = if parts.len() == 1 { (None, parts[0]) } else { (Some(parts[0]), parts[1]) };
        if domain.is_some_and(|d| d.len() >= 256) {
            bad("runAsUserName's Domain length must be under 256 characters");
        }
        if domain.is_some_and(|d| !netbios_domain(d) && !dns_domain(d)) {
            bad("runAsUserName's Domain doesn't match the NetBios nor the DNS format");
        }
        if user.is_empty() {
            bad("runAsUserName's User cannot be empty");
        } else if user.len() > 104 {
            bad("runAsUserName's User length must not be longer than 104 characters");
        }
        if !user.is_empty() && user.chars().all(|c| c == '.' || c == ' ') {
            bad("runAsUserName's User cannot contain only periods or spaces");
        }
        if user.chars().any(|c| "\"/\\:;|=,+*?<>@[]".contains(c)) {
            bad("runAsUserName's User cannot contain the following characters: \"/\\:;|=,+*?<>@[]");
        }
    }
    errs
}

/// A NetBIOS domain: 1 to 15 characters, none of `\/:*?"<>|`, not
/// starting with a dot.
fn netbios_domain(domain: &str) -> bool {
    let forbidden = |c: char| "\\/:*?\"<>|".contains(c);
    let mut chars = domain.chars();
    let Some(first) = chars.next() else { return false };
    !forbidden(first) && first != '.' && domain.chars().count() <= 15 && chars.all(|c| !forbidden(c))
}

/// A DNS domain of letters (either case), digits and dashes.
fn dns_domain(domain: &str) -> bool {
    domain.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty() && b.len() <= 63 && b[0].is_ascii_alphanumeric() && b[b.len() - 1].is_ascii_alphanumeric() && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    })
}

/// Upstream's `validateWindowsHostProcessPod`: all of a pod's containers
/// are host processes or none, on the host's network.
fn windows_host_process(spec: &PodSpec, path: &Path) -> Errors {
    let mut errs = Vec::new();
    let pod_host_process = spec.security_context.as_ref().and_then(|sc| sc.windows_options.as_ref()).and_then(|w| w.host_process);
    let (mut count, mut host_processes) = (0, 0);
    for (c, at) in all_containers(spec, path) {
        count += 1;
        let own = c.security_context.as_ref().and_then(|sc| sc.windows_options.as_ref()).and_then(|w| w.host_process);
        if let (Some(pod), Some(own)) = (pod_host_process, own) {
            if pod != own {
                let at = at.child("securityContext").child("windowsOptions").child("hostProcess");
                errs.push(at.invalid(own, &format!("pod hostProcess value must be identical if both are specified, was {pod}")));
            }
        }
        if own.or(pod_host_process) == Some(true) {
            host_processes += 1;
        }
    }
    if host_processes > 0 {
        if host_processes != count {
            errs.push(path.invalid("", "If pod contains any hostProcess containers then all containers must be HostProcess containers"));
        }
        if spec.host_network != Some(true) {
            errs.push(path.child("hostNetwork").invalid(false, "hostNetwork must be true if pod contains any hostProcess containers"));
        }
    }
    errs
}

/// Upstream's `validateLinux`: no Windows options in a Linux pod.
fn linux_only(spec: &PodSpec, path: &Path) -> Errors {
    let mut errs = Vec::new();
    if spec.security_context.as_ref().is_some_and(|sc| sc.windows_options.is_some()) {
        errs.push(path.child("securityContext").child("windowsOptions").forbidden("windows options cannot be set for a linux pod"));
    }
    for (c, at) in all_containers(spec, path) {
        if c.security_context.as_ref().is_some_and(|sc| sc.windows_options.is_some()) {
            errs.push(at.child("securityContext").child("windowsOptions").forbidden("windows options cannot be set for a linux pod"));
        }
    }
    errs
}

/// Upstream's `validateWindows`: no Linux-only settings in a Windows pod.
fn windows_only(spec: &PodSpec, path: &Path) -> Errors {
    const WHY: &str = "cannot be set for a windows pod";
    let mut errs = Vec::new();
    let sc_path = path.child("securityContext");
    let default = PodSecurityContext::default();
    let sc = spec.security_context.as_ref().unwrap_or(&default);
    let pod_fields = [
        (sc_path.child("appArmorProfile"), sc.app_armor_profile.is_some()),
        (sc_path.child("seLinuxOptions"), sc.se_linux_options.is_some()),
        (path.child("hostUsers"), spec.host_users.is_some()),
        (path.child("hostPID"), spec.host_pid == Some(true)),
        (path.child("hostIPC"), spec.host_ipc == Some(true)),
        (sc_path.child("seccompProfile"), sc.seccomp_profile.is_some()),
        (sc_path.child("fsGroup"), sc.fs_group.is_some()),
        (sc_path.child("fsGroupChangePolicy"), sc.fs_group_change_policy.is_some()),
        (sc_path.child("sysctls"), sc.sysctls.as_ref().is_some_and(|s| !s.is_empty())),
        (path.child("shareProcessNamespace"), spec.share_process_namespace.is_some()),
        (sc_path.child("runAsUser"), sc.run_as_user.is_some()),
        (sc_path.child("runAsGroup"), sc.run_as_group.is_some()),
        (sc_path.child("supplementalGroups"), sc.supplemental_groups.is_some()),
        (sc_path.child("supplementalGroupsPolicy"), sc.supplemental_groups_policy.is_some()),
        (sc_path.child("seLinuxChangePolicy"), sc.se_linux_change_policy.is_some()),
    ];
    errs.extend(pod_fields.iter().filter(|(_, set)| *set).map(|(at, _)| at.forbidden(WHY)));
    for (c, at) in all_containers(spec, path) {
        let Some(sc) = &c.security_context else { continue };
        let at = at.child("securityContext");
        let fields = [
            ("appArmorProfile", sc.app_armor_profile.is_some()),
            ("seLinuxOptions", sc.se_linux_options.is_some()),
            ("seccompProfile", sc.seccomp_profile.is_some()),
            ("capabilities", sc.capabilities.is_some()),
            ("readOnlyRootFilesystem", sc.read_only_root_filesystem.is_some()),
            ("privileged", sc.privileged.is_some()),
            ("allowPrivilegeEscalation", sc.allow_privilege_escalation.is_some()),
            ("procMount", sc.proc_mount.is_some()),
            ("runAsUser", sc.run_as_user.is_some()),
            ("runAsGroup", sc.run_as_group.is_some()),
        ];
        errs.extend(fields.iter().filter(|(_, set)| *set).map(|(field, _)| at.child(field).forbidden(WHY)));
    }
    errs
}

// ---- volumes -------------------------------------------------------------------

/// Upstream's `ValidateVolumes`: the volumes that validated, by name, and
/// the errors of the others.
fn volumes<'a>(list: &'a [Volume], pod_name: Option<&str>, path: &Path, ctx: &Ctx) -> (Vols<'a>, Errors) {
    let mut errs = Vec::new();
    let mut vols = Vols::new();
    // The claims a pod's ephemeral volumes create: never named by a volume.
    let created: BTreeSet<String> = match pod_name.filter(|n| !n.is_empty()) {
        Some(pod) => list.iter().filter(|v| v.ephemeral.is_some()).map(|v| format!("{pod}-{}", v.name)).collect(),
        None => BTreeSet::new(),
    };
    for (i, volume) in list.iter().enumerate() {
        let at = path.index(i);
        let name_path = at.child("name");
        let mut own = volume_source(volume, &at, pod_name, ctx);
        if volume.name.is_empty() {
            own.push(name_path.required(""));
        } else {
            own.extend(name_by(dns1123_label, &volume.name, &name_path));
        }
        if vols.contains_key(volume.name.as_str()) {
            own.push(name_path.duplicate(&volume.name));
        }
        if own.is_empty() {
            vols.insert(volume.name.as_str(), volume);
        } else {
            errs.extend(own);
        }
        if let Some(claim) = volume.persistent_volume_claim.as_ref().filter(|c| created.contains(&c.claim_name)) {
            errs.push(at.child("persistentVolumeClaim").child("claimName").invalid(&claim.claim_name, "must not reference a PVC that gets created for an ephemeral volume"));
        }
    }
    (vols, errs)
}

/// Upstream's `validateVolumeSource`: exactly one source, and it valid.
fn volume_source(v: &Volume, path: &Path, pod_name: Option<&str>, ctx: &Ctx) -> Errors {
    let mut errs = Vec::new();
    // Each source upstream knows, in its order: the field named when it is
    // one too many, whether it is set, and its own rules.
    type Rules<'b> = Box<dyn Fn() -> Errors + 'b>;
    let sources: Vec<(&str, bool, Rules)> = vec![
        ("emptyDir", v.empty_dir.is_some(), Box::new(|| empty_dir(v, path))),
        ("hostPath", v.host_path.is_some(), Box::new(|| host_path(v.host_path.as_ref().expect("set"), &path.child("hostPath")))),
        ("gitRepo", v.git_repo.is_some(), Box::new(|| git_repo(v, &path.child("gitRepo")))),
        // Upstream validates gcePersistentDisk under the path `persistentDisk`.
        ("gcePersistentDisk", v.gce_persistent_disk.is_some(), Box::new(|| gce_persistent_disk(v.gce_persistent_disk.as_ref().expect("set"), &path.child("persistentDisk")))),
        ("awsElasticBlockStore", v.aws_elastic_block_store.is_some(), Box::new(|| aws_elastic_block_store(v.aws_elastic_block_store.as_ref().expect("set"), &path.child("awsElasticBlockStore")))),
        ("secret", v.secret.is_some(), Box::new(|| secret_volume(v, &path.child("secret")))),
        ("nfs", v.nfs.is_some(), Box::new(|| nfs(v.nfs.as_ref().expect("set"), &path.child("nfs")))),
        ("iscsi", v.iscsi.is_some(), Box::new(|| iscsi(v, &path.child("iscsi")))),
        ("glusterfs", v.glusterfs.is_some(), Box::new(|| glusterfs(v, &path.child("glusterfs")))),
        ("flocker", v.flocker.is_some(), Box::new(|| flocker(v.flocker.as_ref().expect("set"), &path.child("flocker")))),
        ("persistentVolumeClaim", v.persistent_volume_claim.is_some(), Box::new(|| claim_volume(v, &path.child("persistentVolumeClaim")))),
        ("rbd", v.rbd.is_some(), Box::new(|| rbd(v, &path.child("rbd")))),
        ("cinder", v.cinder.is_some(), Box::new(|| cinder(v, &path.child("cinder")))),
        ("cephFS", v.cephfs.is_some(), Box::new(|| cephfs(v, &path.child("cephfs")))),
        ("quobyte", v.quobyte.is_some(), Box::new(|| quobyte(v.quobyte.as_ref().expect("set"), &path.child("quobyte")))),
        // Upstream's misspelling, in the one error that names it so.
        ("downwarAPI", v.downward_api.is_some(), Box::new(|| downward_api_volume(v, &path.child("downwardAPI")))),
        ("fc", v.fc.is_some(), Box::new(|| fc(v.fc.as_ref().expect("set"), &path.child("fc")))),
        ("flexVolume", v.flex_volume.is_some(), Box::new(|| flex_volume(v, &path.child("flexVolume")))),
        ("configMap", v.config_map.is_some(), Box::new(|| config_map_volume(v, &path.child("configMap")))),
        ("azureFile", v.azure_file.is_some(), Box::new(|| azure_file(v, &path.child("azureFile")))),
        ("vsphereVolume", v.vsphere_volume.is_some(), Box::new(|| required_text(v.vsphere_volume.as_ref().map(|s| s.volume_path.as_str()).unwrap_or_default(), &path.child("vsphereVolume").child("volumePath")))),
        ("photonPersistentDisk", v.photon_persistent_disk.is_some(), Box::new(|| required_text(v.photon_persistent_disk.as_ref().map(|s| s.pd_id.as_str()).unwrap_or_default(), &path.child("photonPersistentDisk").child("pdID")))),
        ("portworxVolume", v.portworx_volume.is_some(), Box::new(|| required_text(v.portworx_volume.as_ref().map(|s| s.volume_id.as_str()).unwrap_or_default(), &path.child("portworxVolume").child("volumeID")))),
        ("azureDisk", v.azure_disk.is_some(), Box::new(|| azure_disk(v.azure_disk.as_ref().expect("set"), &path.child("azureDisk")))),
        ("storageos", v.storageos.is_some(), Box::new(|| storageos(v, &path.child("storageos")))),
        ("projected", v.projected.is_some(), Box::new(|| projected(v, &path.child("projected")))),
        ("scaleIO", v.scale_io.is_some(), Box::new(|| scale_io(v, &path.child("scaleIO")))),
        ("csi", v.csi.is_some(), Box::new(|| csi(v, &path.child("csi")))),
        ("ephemeral", v.ephemeral.is_some(), Box::new(|| ephemeral(v, path, pod_name))),
        ("image", v.image.is_some(), Box::new(|| image_volume(v, &path.child("image"), ctx))),
    ];
    let mut count = 0;
    for (field, set, rules) in &sources {
        if !set {
            continue;
        }
        if count > 0 {
            errs.push(path.child(field).forbidden(TOO_MANY_VOLUME_TYPES));
        } else {
            count += 1;
            errs.extend(rules());
        }
        // Checked whether or not iscsi is the source counted.
        if *field == "iscsi" {
            let iscsi = v.iscsi.as_ref().expect("set");
            if iscsi.initiator_name.is_some() && v.name.len() + 1 + iscsi.target_portal.len() > 64 {
                errs.push(path.child("name").invalid(
                    &v.name,
                    "Total length of <volume name>:<iscsi.targetPortal> must be under 64 characters if iscsi.initiatorName is specified.",
                ));
            }
        }
    }
    if count == 0 {
        errs.push(path.required("must specify a volume type"));
    }
    errs
}

fn file_mode(mode: Option<i32>, path: &Path) -> Errors {
    match mode {
        Some(m) if !(0..=0o777).contains(&m) => vec![path.invalid(m, FILE_MODE)],
        _ => vec![],
    }
}

fn empty_dir(v: &Volume, path: &Path) -> Errors {
    match v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) {
        Some(limit) if super::milli(limit) < 0 => vec![path.child("emptyDir").child("sizeLimit").forbidden("SizeLimit field must be a valid resource quantity")],
        _ => vec![],
    }
}

pub(super) fn host_path(source: &HostPathVolumeSource, path: &Path) -> Errors {
    const TYPES: [&str; 8] = ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"];
    if source.path.is_empty() {
        return vec![path.child("path").required("")];
    }
    let mut errs = no_backsteps(&source.path, &path.child("path"));
    if let Some(kind) = source.type_.as_deref().filter(|t| !TYPES.contains(t)) {
        errs.push(path.child("type").not_supported(kind, &TYPES));
    }
    errs
}

fn git_repo(v: &Volume, path: &Path) -> Errors {
    let source = v.git_repo.as_ref().expect("set");
    let mut errs = required_text(&source.repository, &path.child("repository"));
    errs.extend(local_descending_path(source.directory.as_deref().unwrap_or_default(), &path.child("directory")));
    errs
}

/// Upstream's `pdPartitionErrorMsg` (sic: it says 1, checks 0), for
/// volumes and PVs.
pub(super) fn partition(value: Option<i32>, path: &Path) -> Errors {
    match value {
        Some(p) if !(0..=255).contains(&p) => vec![path.invalid(p, "must be between 1 and 255, inclusive")],
        _ => vec![],
    }
}

pub(super) fn gce_persistent_disk(source: &GCEPersistentDiskVolumeSource, path: &Path) -> Errors {
    let mut errs = required_text(&source.pd_name, &path.child("pdName"));
    errs.extend(partition(source.partition, &path.child("partition")));
    errs
}

pub(super) fn aws_elastic_block_store(source: &AWSElasticBlockStoreVolumeSource, path: &Path) -> Errors {
    let mut errs = required_text(&source.volume_id, &path.child("volumeID"));
    errs.extend(partition(source.partition, &path.child("partition")));
    errs
}

/// Upstream's `validateKeyToPath`.
fn key_to_path(item: &KeyToPath, path: &Path) -> Errors {
    let mut errs = required_text(&item.key, &path.child("key"));
    errs.extend(required_text(&item.path, &path.child("path")));
    errs.extend(local_non_reserved_path(&item.path, &path.child("path")));
    errs.extend(file_mode(item.mode, &path.child("mode")));
    errs
}

fn secret_volume(v: &Volume, path: &Path) -> Errors {
    let source = v.secret.as_ref().expect("set");
    let mut errs = required_text(source.secret_name.as_deref().unwrap_or_default(), &path.child("secretName"));
    errs.extend(file_mode(source.default_mode, &path.child("defaultMode")));
    for (i, item) in source.items.iter().flatten().enumerate() {
        errs.extend(key_to_path(item, &path.child("items").index(i)));
    }
    errs
}

fn config_map_volume(v: &Volume, path: &Path) -> Errors {
    let source = v.config_map.as_ref().expect("set");
    let mut errs = required_text(&source.name, &path.child("name"));
    errs.extend(file_mode(source.default_mode, &path.child("defaultMode")));
    for (i, item) in source.items.iter().flatten().enumerate() {
        errs.extend(key_to_path(item, &path.child("items").index(i)));
    }
    errs
}

pub(super) fn nfs(source: &NFSVolumeSource, path: &Path) -> Errors {
    let mut errs = required_text(&source.server, &path.child("server"));
    errs.extend(required_text(&source.path, &path.child("path")));
    if !source.path.starts_with('/') {
        errs.push(path.child("path").invalid(&source.path, "must be an absolute path"));
    }
    errs
}

/// Upstream's `iscsiInitiatorIqnRegex` (`iqn.yyyy-mm.domain:name`,
/// anchored at the end only).
fn iqn_format(value: &str) -> bool {
    (0..value.len()).filter(|i| value.is_char_boundary(*i) && value[*i..].starts_with("iqn.")).any(|i| {
        let rest = &value[i + 4..];
        let date_ok = rest.len() > 8 && rest.as_bytes()[..4].iter().all(u8::is_ascii_digit) && rest.as_bytes()[4] == b'-' && rest.as_bytes()[5..7].iter().all(u8::is_ascii_digit) && rest.as_bytes()[7] == b'.';
        if !date_ok {
            return false;
        }
        let Some((domain, name)) = rest[8..].split_once(':') else { return false };
        !domain.is_empty()
            && domain.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !name.is_empty()
            && name.chars().all(|c| !",;*&$|".contains(c) && !c.is_whitespace())
    })
}

/// Upstream's `eui.` and `naa.` formats: a prefix, any character, then
/// `digits` alphanumerics.
fn prefixed_alnum(value: &str, prefix: &str, digits: usize) -> bool {
    let Some(rest) = value.strip_prefix(prefix) else { return false };
    let mut chars = rest.chars();
    chars.next().is_some() && chars.clone().count() == digits && chars.all(|c| c.is_ascii_alphanumeric())
}

/// An iSCSI qualified name or initiator name: IQN, EUI or NAA (PVs' too).
pub(super) fn iscsi_name(value: &str, path: &Path) -> Errors {
    if !value.starts_with("iqn") && !value.starts_with("eui") && !value.starts_with("naa") {
        return vec![path.invalid(value, "must be valid format starting with iqn, eui, or naa")];
    }
    let ok = if value.starts_with("iqn") {
        iqn_format(value)
    } else if value.starts_with("eui") {
        prefixed_alnum(value, "eui", 16)
    } else {
        prefixed_alnum(value, "naa", 32)
    };
    if ok {
        vec![]
    } else {
        vec![path.invalid(value, "must be valid format")]
    }
}

fn iscsi(v: &Volume, path: &Path) -> Errors {
    let source = v.iscsi.as_ref().expect("set");
    let mut errs = required_text(&source.target_portal, &path.child("targetPortal"));
    if source.iqn.is_empty() {
        errs.push(path.child("iqn").required(""));
    } else {
        errs.extend(iscsi_name(&source.iqn, &path.child("iqn")));
    }
    errs.extend(inclusive_range(source.lun.into(), 0, 255, &path.child("lun")));
    if (source.chap_auth_discovery == Some(true) || source.chap_auth_session == Some(true)) && source.secret_ref.is_none() {
        errs.push(path.child("secretRef").required(""));
    }
    if let Some(initiator) = &source.initiator_name {
        errs.extend(iscsi_name(initiator, &path.child("initiatorname")));
    }
    errs
}

fn glusterfs(v: &Volume, path: &Path) -> Errors {
    let source = v.glusterfs.as_ref().expect("set");
    let mut errs = required_text(&source.endpoints, &path.child("endpoints"));
    errs.extend(required_text(&source.path, &path.child("path")));
    errs
}

pub(super) fn flocker(source: &FlockerVolumeSource, path: &Path) -> Errors {
    let (name, uuid) = (source.dataset_name.as_deref().unwrap_or_default(), source.dataset_uuid.as_deref().unwrap_or_default());
    let mut errs = Vec::new();
    if name.is_empty() && uuid.is_empty() {
        errs.push(path.required("one of datasetName and datasetUUID is required"));
    }
    if !name.is_empty() && !uuid.is_empty() {
        errs.push(path.invalid("resource", "datasetName and datasetUUID can not be specified simultaneously"));
    }
    if name.contains('/') {
        errs.push(path.child("datasetName").invalid(name, "must not contain '/'"));
    }
    errs
}

fn claim_volume(v: &Volume, path: &Path) -> Errors {
    required_text(v.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()).unwrap_or_default(), &path.child("claimName"))
}

fn rbd(v: &Volume, path: &Path) -> Errors {
    let source = v.rbd.as_ref().expect("set");
    let mut errs = Vec::new();
    if source.monitors.is_empty() {
        errs.push(path.child("monitors").required(""));
    }
    errs.extend(required_text(&source.image, &path.child("image")));
    errs
}

fn cinder(v: &Volume, path: &Path) -> Errors {
    let source = v.cinder.as_ref().expect("set");
    let mut errs = required_text(&source.volume_id, &path.child("volumeID"));
    if let Some(secret) = &source.secret_ref {
        errs.extend(required_text(&secret.name, &path.child("secretRef").child("name")));
    }
    errs
}

fn cephfs(v: &Volume, path: &Path) -> Errors {
    if v.cephfs.as_ref().is_some_and(|c| c.monitors.is_empty()) {
        vec![path.child("monitors").required("")]
    } else {
        vec![]
    }
}

pub(super) fn quobyte(source: &QuobyteVolumeSource, path: &Path) -> Errors {
    const REGISTRY: &str = "must be a host:port pair or multiple pairs separated by commas";
    let mut errs = Vec::new();
    if source.registry.is_empty() {
        errs.push(path.child("registry").required(REGISTRY));
    } else if source.tenant.as_deref().unwrap_or_default().len() >= 65 {
        errs.push(path.child("tenant").required("must be a UUID and may not exceed a length of 64 characters"));
    } else {
        for pair in source.registry.split(',') {
            if !host_port_pair(pair) {
                errs.push(path.child("registry").invalid(&source.registry, REGISTRY));
            }
        }
    }
    errs.extend(required_text(&source.volume, &path.child("volume")));
    errs
}

/// Upstream's `validateDownwardAPIVolumeFile`. (Upstream reports a file's
/// errors under the source's path, without the item's index.)
fn downward_api_file(file: &DownwardAPIVolumeFile, path: &Path) -> Errors {
    let mut errs = required_text(&file.path, &path.child("path"));
    errs.extend(local_non_reserved_path(&file.path, &path.child("path")));
    match (&file.field_ref, &file.resource_field_ref) {
        (Some(field_ref), resource_ref) => {
            errs.extend(object_field_selector(field_ref, &VOLUME_FIELD_PATHS, &path.child("fieldRef")));
            if resource_ref.is_some() {
                errs.push(path.invalid("resource", "fieldRef and resourceFieldRef can not be specified simultaneously"));
            }
        }
        (None, Some(resource_ref)) => errs.extend(resource_field_selector(resource_ref, true, &path.child("resourceFieldRef"))),
        (None, None) => errs.push(path.required("one of fieldRef and resourceFieldRef is required")),
    }
    errs.extend(file_mode(file.mode, &path.child("mode")));
    errs
}

fn downward_api_volume(v: &Volume, path: &Path) -> Errors {
    let source = v.downward_api.as_ref().expect("set");
    let mut errs = file_mode(source.default_mode, &path.child("defaultMode"));
    for file in source.items.iter().flatten() {
        errs.extend(downward_api_file(file, path));
    }
    errs
}

pub(super) fn fc(source: &FCVolumeSource, path: &Path) -> Errors {
    let wwns = source.target_wwns.as_deref().unwrap_or_default();
    let wwids = source.wwids.as_deref().unwrap_or_default();
    let mut errs = Vec::new();
    if wwns.is_empty() && wwids.is_empty() {
        errs.push(path.child("targetWWNs").required("must specify either targetWWNs or wwids, but not both"));
    }
    if !wwns.is_empty() && !wwids.is_empty() {
        errs.push(path.child("targetWWNs").invalid(Bad::raw(go_strings(wwns)), "targetWWNs and wwids can not be specified simultaneously"));
    }
    if !wwns.is_empty() {
        match source.lun {
            None => errs.push(path.child("lun").required("lun is required if targetWWNs is specified")),
            Some(lun) => errs.extend(inclusive_range(lun.into(), 0, 255, &path.child("lun"))),
        }
    }
    errs
}

fn flex_volume(v: &Volume, path: &Path) -> Errors {
    let source = v.flex_volume.as_ref().expect("set");
    let mut errs = required_text(&source.driver, &path.child("driver"));
    for k in source.options.iter().flat_map(|o| o.keys()) {
        let namespace = k.split_once('/').map_or(k.as_str(), |(ns, _)| ns);
        let normalized = format!(".{}", namespace.to_lowercase());
        if normalized.ends_with(".kubernetes.io") || normalized.ends_with(".k8s.io") {
            errs.push(path.child("options").key(k).invalid(k, "kubernetes.io and k8s.io namespaces are reserved"));
        }
    }
    errs
}

fn azure_file(v: &Volume, path: &Path) -> Errors {
    let source = v.azure_file.as_ref().expect("set");
    let mut errs = required_text(&source.secret_name, &path.child("secretName"));
    errs.extend(required_text(&source.share_name, &path.child("shareName")));
    errs
}

/// The disk's kind defaults to `Shared` (upstream's
/// `SetDefaults_AzureDiskVolumeSource`), a blob disk with an https URI.
pub(super) fn azure_disk(source: &AzureDiskVolumeSource, path: &Path) -> Errors {
    let mut errs = required_text(&source.disk_name, &path.child("diskName"));
    errs.extend(required_text(&source.disk_uri, &path.child("diskURI")));
    if let Some(mode) = source.caching_mode.as_deref().filter(|m| !["None", "ReadOnly", "ReadWrite"].contains(m)) {
        errs.push(path.child("cachingMode").not_supported(mode, &["None", "ReadOnly", "ReadWrite"]));
    }
    if let Some(kind) = source.kind.as_deref().filter(|k| !["Dedicated", "Managed", "Shared"].contains(k)) {
        errs.push(path.child("kind").not_supported(kind, &["Dedicated", "Managed", "Shared"]));
    }
    let kind = source.kind.as_deref().unwrap_or("Shared");
    if kind == "Managed" && !source.disk_uri.starts_with("/subscriptions/") {
        errs.push(path.child("diskURI").not_supported(source.disk_uri.as_str(), &["/subscriptions/{sub-id}/resourcegroups/{group-name}/providers/microsoft.compute/disks/{disk-id}"]));
    }
    if kind != "Managed" && !source.disk_uri.starts_with("https://") {
        errs.push(path.child("diskURI").not_supported(source.disk_uri.as_str(), &["https://{account-name}.blob.core.windows.net/{container-name}/{disk-name}.vhd"]));
    }
    errs
}

fn storageos(v: &Volume, path: &Path) -> Errors {
    let source = v.storageos.as_ref().expect("set");
    let mut errs = Vec::new();
    match source.volume_name.as_deref().unwrap_or_default() {
        "" => errs.push(path.child("volumeName").required("")),
        name => errs.extend(name_by(dns1123_label, name, &path.child("volumeName"))),
    }
    if let Some(namespace) = source.volume_namespace.as_deref().filter(|n| !n.is_empty()) {
        errs.extend(name_by(dns1123_label, namespace, &path.child("volumeNamespace")));
    }
    if let Some(secret) = &source.secret_ref {
        errs.extend(required_text(&secret.name, &path.child("secretRef").child("name")));
    }
    errs
}

fn scale_io(v: &Volume, path: &Path) -> Errors {
    let source = v.scale_io.as_ref().expect("set");
    let mut errs = required_text(&source.gateway, &path.child("gateway"));
    errs.extend(required_text(&source.system, &path.child("system")));
    errs.extend(required_text(source.volume_name.as_deref().unwrap_or_default(), &path.child("volumeName")));
    errs
}

fn csi(v: &Volume, path: &Path) -> Errors {
    let source = v.csi.as_ref().expect("set");
    let mut errs = super::core::csi_driver_name(&source.driver, &path.child("driver"));
    if let Some(secret) = &source.node_publish_secret_ref {
        if secret.name.is_empty() {
            errs.push(path.child("nodePublishSecretRef").child("name").required(""));
        } else {
            // Upstream's path, without nodePublishSecretRef.
            errs.extend(name_by(dns1123_subdomain, &secret.name, &path.child("name")));
        }
    }
    errs
}

/// The image's pull policy defaults as a container's does, so an unset
/// one is accepted.
fn image_volume(v: &Volume, path: &Path, ctx: &Ctx) -> Errors {
    let source = v.image.as_ref().expect("set");
    let mut errs = Vec::new();
    if ctx.is_pod && source.reference.as_deref().unwrap_or_default().is_empty() {
        errs.push(path.child("reference").required(""));
    }
    match source.pull_policy.as_deref().unwrap_or_default() {
        "" | "Always" | "IfNotPresent" | "Never" => {}
        other => errs.push(path.child("pullPolicy").not_supported(other, &["Always", "IfNotPresent", "Never"])),
    }
    errs
}

/// Upstream's `validateProjectedVolumeSource` and `validateProjectionSources`.
fn projected(v: &Volume, path: &Path) -> Errors {
    let source = v.projected.as_ref().expect("set");
    let mut errs = file_mode(source.default_mode, &path.child("defaultMode"));
    let mut paths = BTreeSet::new();
    for (i, projection) in source.sources.iter().flatten().enumerate() {
        let at = path.child("sources").index(i);
        let mut count = 0;
        for (field, projected) in [("secret", projection.secret.as_ref().map(|s| (&s.name, &s.items))), ("configMap", projection.config_map.as_ref().map(|c| (&c.name, &c.items)))] {
            let Some((name, items)) = projected else { continue };
            count += 1;
            let at = at.child(field);
            errs.extend(required_text(name, &at.child("name")));
            for (j, item) in items.iter().flatten().enumerate() {
                errs.extend(key_to_path(item, &at.child("items").index(j)));
                if !item.path.is_empty() && !paths.insert(item.path.clone()) {
                    errs.push(path.invalid(name, "conflicting duplicate paths"));
                }
            }
        }
        if let Some(downward) = &projection.downward_api {
            count += 1;
            for file in downward.items.iter().flatten() {
                errs.extend(downward_api_file(file, &at.child("downwardAPI")));
                if !file.path.is_empty() && !paths.insert(file.path.clone()) {
                    errs.push(path.invalid(&file.path, "conflicting duplicate paths"));
                }
            }
        }
        if let Some(token) = &projection.service_account_token {
            count += 1;
            // Defaulted to an hour (upstream's SetDefaults_ServiceAccountTokenProjection).
            let expiration = token.expiration_seconds.unwrap_or(3600);
            let at = at.child("serviceAccountToken").child("expirationSeconds");
            if expiration < 600 {
                errs.push(at.invalid(expiration, "may not specify a duration less than 10 minutes"));
            }
            if expiration > 1 << 32 {
                errs.push(at.invalid(expiration, "may not specify a duration larger than 2^32 seconds"));
            }
            // Upstream's path is the projected volume's, not the source's.
            if token.path.is_empty() {
                errs.push(path.child("path").required(""));
            } else {
                errs.extend(local_non_reserved_path(&token.path, &path.child("path")));
            }
        }
        if let Some(bundle) = &projection.cluster_trust_bundle {
            count += 1;
            let at = at.child("clusterTrustBundle");
            match (&bundle.name, &bundle.signer_name) {
                (Some(_), Some(_)) => errs.push(at.invalid(Bad::raw(go_value(bundle)), "only one of name and signerName may be used")),
                (Some(name), None) => {
                    if name.is_empty() {
                        errs.push(at.child("name").required("must be a valid object name"));
                    }
                    if let Some(selector) = &bundle.label_selector {
                        errs.push(at.child("labelSelector").invalid(Bad::raw(go_value(selector)), "labelSelector must be unset if name is specified"));
                    }
                }
                (None, Some(signer)) => {
                    if signer.is_empty() {
                        errs.push(at.child("signerName").required("must be a valid signer name"));
                    }
                    if let Some(selector) = &bundle.label_selector {
                        errs.extend(label_selector(selector, &at.child("labelSelector")));
                    }
                }
                (None, None) => errs.push(at.required("either name or signerName must be specified")),
            }
            if bundle.path.is_empty() {
                errs.push(at.child("path").required(""));
            }
            errs.extend(local_non_reserved_path(&bundle.path, &at.child("path")));
            if !paths.insert(bundle.path.clone()) {
                errs.push(path.invalid(&bundle.path, "conflicting duplicate paths"));
            }
        }
        if count > 1 {
            errs.push(at.forbidden("may not specify more than 1 volume type per source"));
        }
    }
    errs
}

/// Upstream's `validateEphemeralVolumeSource`, and the name of the claim
/// the pod's volume creates (`<pod>-<volume>`).
fn ephemeral(v: &Volume, path: &Path, pod_name: Option<&str>) -> Errors {
    let source = v.ephemeral.as_ref().expect("set");
    let at = path.child("ephemeral").child("volumeClaimTemplate");
    let mut errs = match &source.volume_claim_template {
        None => vec![at.required("")],
        Some(template) => claim_template(template, &at),
    };
    if let Some(pod) = pod_name.filter(|p| !p.is_empty() && !v.name.is_empty()) {
        let claim = format!("{pod}-{}", v.name);
        if let Err(why) = dns1123_subdomain(&claim) {
            errs.push(path.child("name").invalid(&v.name, &format!("PVC name {claim:?}: {why}")));
        }
    }
    errs
}

/// Upstream's `ValidatePersistentVolumeClaimTemplate`: labels and
/// annotations only in its metadata, and a valid claim spec.
fn claim_template(template: &PersistentVolumeClaimTemplate, path: &Path) -> Errors {
    let meta_path = path.child("metadata");
    let mut errs = Vec::new();
    if let Some(meta) = &template.metadata {
        errs.extend(annotations(meta.annotations.as_ref(), &meta_path.child("annotations")));
        errs.extend(labels(meta.labels.as_ref(), &meta_path.child("labels")));
        // Other fields, in the Go structure's order with its lowercased names.
        let fields = [
            ("name", "name"),
            ("generateName", "generateName"),
            ("namespace", "namespace"),
            ("selfLink", "selfLink"),
            ("uid", "uID"),
            ("resourceVersion", "resourceVersion"),
            ("generation", "generation"),
            ("creationTimestamp", "creationTimestamp"),
            ("deletionTimestamp", "deletionTimestamp"),
            ("deletionGracePeriodSeconds", "deletionGracePeriodSeconds"),
            ("ownerReferences", "ownerReferences"),
            ("finalizers", "finalizers"),
            ("managedFields", "managedFields"),
        ];
        let value = serde_json::to_value(meta).unwrap_or_default();
        for (json, go) in fields {
            let set = match value.get(json) {
                None | Some(Value::Null) => false,
                Some(Value::String(s)) => !s.is_empty(),
                Some(Value::Array(a)) => !a.is_empty(),
                Some(Value::Number(n)) => n.as_i64() != Some(0),
                Some(_) => true,
            };
            if set {
                errs.push(meta_path.child(go).forbidden("cannot be set"));
            }
        }
    }
    errs.extend(super::core::claim_spec(&template.spec, &path.child("spec")));
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testing::{messages, table, update_table, with};
    use super::super::Op;
    use super::*;

    fn container() -> Value {
        json!({"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80, "name": "http"}]})
    }

    /// A pod as a client writes it, with a few volumes to mount.
    fn valid() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "containers": [container()],
                "volumes": [
                    {"name": "data", "emptyDir": {}},
                    {"name": "config", "configMap": {"name": "web-config"}},
                    {"name": "claim", "persistentVolumeClaim": {"claimName": "web-data"}},
                ],
                "restartPolicy": "Always",
                "serviceAccountName": "default",
            },
        })
    }

    fn spec(change: Value) -> Value {
        with(&valid(), json!({"spec": change}))
    }

    /// The pod with its container changed.
    fn ctr(change: Value) -> Value {
        spec(json!({"containers": [with(&container(), change)]}))
    }

    fn vols(list: Value) -> Value {
        spec(json!({"volumes": list}))
    }

    fn init(c: Value) -> Value {
        spec(json!({"initContainers": [c]}))
    }

    fn sc(change: Value) -> Value {
        ctr(json!({"securityContext": change}))
    }

    fn pod_sc(change: Value) -> Value {
        spec(json!({"securityContext": change}))
    }

    fn annotated(annotations: Value) -> Value {
        with(&valid(), json!({"metadata": {"annotations": annotations}}))
    }

    fn env(var: Value) -> Value {
        ctr(json!({"env": [var]}))
    }

    fn value_from(source: Value) -> Value {
        env(json!({"name": "X", "valueFrom": source}))
    }

    fn probe(field: &str, probe: Value) -> Value {
        ctr(json!({field: probe}))
    }

    fn resources(r: Value) -> Value {
        ctr(json!({"resources": r}))
    }

    /// Each case's errors from `pod_spec` alone, as a workload's template
    /// spec is checked (ephemeral containers included).
    fn spec_table(cases: &[(&str, Value, &str)]) {
        for (name, spec, expected) in cases {
            let decoded: PodSpec = serde_json::from_value(spec.clone()).expect("a pod spec");
            let got: Vec<String> = pod_spec(&decoded, &Path::new("spec")).iter().map(ToString::to_string).collect();
            if expected.is_empty() {
                assert!(got.is_empty(), "{name}: expected no error, got {got:#?}");
            } else {
                assert!(got.len() == 1 && got[0].starts_with(expected), "{name}: expected one error starting {expected:?}, got {got:#?}");
            }
        }
    }

    #[test]
    fn pod_valid() {
        // What `kubectl run web --image=busybox` sends.
        let kubectl_run = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"run": "web"}, "name": "web"},
            "spec": {"containers": [{"image": "busybox", "name": "web", "resources": {}}], "dnsPolicy": "ClusterFirst", "restartPolicy": "Always"}, "status": {}});
        // The same pod as stored: defaulted, with the service account's token volume.
        let stored = json!({"metadata": {"name": "web", "namespace": "default", "labels": {"run": "web"}}, "spec": {
            "containers": [{"image": "busybox", "name": "web", "resources": {}, "imagePullPolicy": "Always", "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File", "volumeMounts": [{"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]}],
            "dnsPolicy": "ClusterFirst", "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority", "priority": 0, "restartPolicy": "Always",
            "schedulerName": "default-scheduler", "securityContext": {}, "serviceAccount": "default", "serviceAccountName": "default", "terminationGracePeriodSeconds": 30,
            "tolerations": [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300}],
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}}]}}]}});
        // Sidecars: restartable init containers with probes and hooks.
        let sidecars = spec(json!({"initContainers": [
            {"name": "migrate", "image": "migrate:1", "command": ["./migrate"]},
            {"name": "proxy", "image": "envoy:1.30", "restartPolicy": "Always", "ports": [{"containerPort": 9901}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 9901}}, "startupProbe": {"tcpSocket": {"port": 9901}, "failureThreshold": 30},
                "lifecycle": {"preStop": {"sleep": {"seconds": 5}}}},
            {"name": "logs", "image": "fluent-bit:3", "restartPolicy": "Always", "volumeMounts": [{"name": "data", "mountPath": "/logs", "readOnly": true}]}]}));
        // Every common volume, mounted.
        let volumes = spec(json!({
            "containers": [with(&container(), json!({"volumeMounts": [
                {"name": "scratch", "mountPath": "/scratch"}, {"name": "host", "mountPath": "/host", "readOnly": true, "recursiveReadOnly": "IfPossible"},
                {"name": "config", "mountPath": "/etc/app", "subPath": "app.conf"}, {"name": "secret", "mountPath": "/etc/tls"}, {"name": "claim", "mountPath": "/data"},
                {"name": "shared", "mountPath": "/shared", "mountPropagation": "HostToContainer"}, {"name": "info", "mountPath": "/info"},
                {"name": "all", "mountPath": "/all"}, {"name": "csi", "mountPath": "/csi"}, {"name": "cache", "mountPath": "/cache", "subPathExpr": "$(POD_NAME)"},
                {"name": "memory", "mountPath": "/dev/shm"}]}))],
            "volumes": [
                {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "memory", "emptyDir": {"medium": "Memory"}},
                {"name": "host", "hostPath": {"path": "/var/log", "type": "Directory"}},
                {"name": "config", "configMap": {"name": "app", "defaultMode": 0o644, "items": [{"key": "app.conf", "path": "app.conf", "mode": 0o400}], "optional": true}},
                {"name": "secret", "secret": {"secretName": "tls", "defaultMode": 0o400}},
                {"name": "claim", "persistentVolumeClaim": {"claimName": "web-data", "readOnly": false}},
                {"name": "shared", "nfs": {"server": "nfs.example.com", "path": "/exports/shared"}},
                {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "cpu", "resourceFieldRef": {"containerName": "web", "resource": "limits.cpu", "divisor": "1m"}}]}},
                {"name": "all", "projected": {"sources": [{"secret": {"name": "tls", "items": [{"key": "tls.crt", "path": "tls.crt"}]}},
                    {"configMap": {"name": "app", "items": [{"key": "app.conf", "path": "app.conf"}]}},
                    {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                    {"serviceAccountToken": {"path": "token", "audience": "vault"}}]}},
                {"name": "csi", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": true, "volumeAttributes": {"secretProviderClass": "vault"}}},
                {"name": "cache", "ephemeral": {"volumeClaimTemplate": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}}}},
                {"name": "iscsi", "iscsi": {"targetPortal": "10.0.0.1:3260", "iqn": "iqn.2001-04.com.example:storage.disk1", "lun": 0}},
                {"name": "rbd", "rbd": {"monitors": ["10.0.0.2:6789"], "image": "foo"}},
                {"name": "gce", "gcePersistentDisk": {"pdName": "disk", "partition": 1}},
                {"name": "azure", "azureDisk": {"diskName": "d", "diskURI": "https://account.blob.core.windows.net/vhds/d.vhd"}},
                {"name": "git", "gitRepo": {"repository": "https://example.com/repo.git", "directory": "."}},
                {"name": "image", "image": {"reference": "registry.example.com/data:1", "pullPolicy": "IfNotPresent"}},
            ]}));
        // Probes, hooks, environment, resources and security settings.
        let full = with(&valid(), json!({
            "metadata": {"annotations": {
                "controller.kubernetes.io/pod-deletion-cost": "-5",
                "seccomp.security.alpha.kubernetes.io/pod": "runtime/default",
                "container.apparmor.security.beta.kubernetes.io/web": "localhost/web-profile"}},
            "spec": {
                "terminationGracePeriodSeconds": 60, "activeDeadlineSeconds": 3600, "runtimeClassName": "gvisor", "overhead": {"cpu": "250m", "memory": "120Mi"},
                "os": {"name": "linux"}, "shareProcessNamespace": true,
                "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000], "fsGroupChangePolicy": "OnRootMismatch",
                    "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}, "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}, {"name": "kernel/shm_rmid_forced", "value": "1"}]},
                "containers": [with(&container(), json!({
                    "command": ["nginx"], "args": ["-g", "daemon off;"], "workingDir": "/srv", "imagePullPolicy": "IfNotPresent", "terminationMessagePolicy": "FallbackToLogsOnError",
                    "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https", "protocol": "TCP", "hostPort": 8443}, {"containerPort": 53, "protocol": "UDP"}],
                    "env": [{"name": "PLAIN", "value": "x"}, {"name": "my.relaxed-name 1", "value": "y"}, {"name": "EMPTY"},
                        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                        {"name": "APP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels['app']"}}},
                        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                        {"name": "HUGE", "valueFrom": {"resourceFieldRef": {"resource": "requests.hugepages-2Mi"}}},
                        {"name": "CONF", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "log.level", "optional": true}}},
                        {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "db", "key": "PASSWORD"}}}],
                    "envFrom": [{"configMapRef": {"name": "app"}, "prefix": "APP_"}, {"secretRef": {"name": "db"}}],
                    "resources": {"limits": {"cpu": "1", "memory": "512Mi", "example.com/gpu": "1", "hugepages-2Mi": "4Mi", "ephemeral-storage": "2Gi"},
                        "requests": {"cpu": "250m", "memory": "256Mi", "example.com/gpu": "1", "hugepages-2Mi": "4Mi"}},
                    "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}, {"resourceName": "memory", "restartPolicy": "RestartContainer"}],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTPS", "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                        "initialDelaySeconds": 5, "periodSeconds": 0, "successThreshold": 0, "terminationGracePeriodSeconds": 10},
                    "readinessProbe": {"exec": {"command": ["cat", "/ready"]}, "timeoutSeconds": 2},
                    "startupProbe": {"grpc": {"port": 9090}, "failureThreshold": 60},
                    "lifecycle": {"postStart": {"exec": {"command": ["/bin/init"]}}, "preStop": {"httpGet": {"port": 80}}},
                    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                        "procMount": "Default", "appArmorProfile": {"type": "Localhost", "localhostProfile": "web-profile"},
                        "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/web.json"}},
                    "stdin": true, "tty": true}))]}}));
        let host_network = spec(json!({"hostNetwork": true, "containers": [with(&container(), json!({"ports": [{"containerPort": 80}, {"containerPort": 443, "hostPort": 443}]}))]}));
        let windows = spec(json!({"os": {"name": "windows"}, "hostNetwork": true, "securityContext": {"windowsOptions": {"hostProcess": true, "runAsUserName": "NT AUTHORITY\\SYSTEM"}},
            "containers": [with(&container(), json!({"ports": null, "securityContext": {"windowsOptions": {"hostProcess": true, "gmsaCredentialSpecName": "gmsa-web"}}}))]}));
        let block = spec(json!({"containers": [with(&container(), json!({"volumeDevices": [{"name": "claim", "devicePath": "/dev/xvda"}, {"name": "raw", "devicePath": "/dev/xvdb"}]}))],
            "volumes": [{"name": "claim", "persistentVolumeClaim": {"claimName": "block"}},
                {"name": "raw", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOncePod"], "volumeMode": "Block", "resources": {"requests": {"storage": "10Gi"}}}}}}]}));
        let claims = spec(json!({"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "single-gpu"}],
            "containers": [with(&container(), json!({"resources": {"claims": [{"name": "gpu"}]}}))]}));
        let never = spec(json!({"restartPolicy": "Never", "containers": [with(&container(), json!({"resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]}))]}));
        table("", "Pod", &[
            ("the valid pod", valid(), ""),
            ("kubectl run", kubectl_run, ""),
            ("as stored", stored, ""),
            ("sidecars", sidecars, ""),
            ("volumes", volumes, ""),
            ("everything", full, ""),
            ("host network, host port defaulted or equal", host_network, ""),
            ("windows host process", windows, ""),
            ("block devices", block, ""),
            ("resource claims", claims, ""),
            ("restartPolicy Never, resize NotRequired", never, ""),
            ("deprecated serviceAccount names the account", spec(json!({"serviceAccountName": null, "serviceAccount": "builder",
                "volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]})), ""),
            ("empty strings take the defaults", spec(json!({"restartPolicy": "", "containers": [with(&container(), json!({"imagePullPolicy": "", "terminationMessagePolicy": "",
                "ports": [{"containerPort": 80, "protocol": ""}]}))]})), ""),
            ("probe defaults", probe("livenessProbe", json!({"tcpSocket": {"port": 80}, "successThreshold": 0, "timeoutSeconds": 0})), ""),
            ("init containers run one at a time", spec(json!({"initContainers": [
                {"name": "a", "image": "a", "ports": [{"containerPort": 9000, "hostPort": 9000}]},
                {"name": "b", "image": "b", "ports": [{"containerPort": 9000, "hostPort": 9000}]}]})), ""),
            ("host ports of other protocols and IPs", ctr(json!({"ports": [{"containerPort": 53, "hostPort": 53}, {"containerPort": 53, "hostPort": 53, "protocol": "UDP"},
                {"containerPort": 80, "hostPort": 53, "hostIP": "10.0.0.1"}]})), ""),
            ("seccomp annotation matching the field", with(&pod_sc(json!({"seccompProfile": {"type": "Unconfined"}})),
                json!({"metadata": {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}})), ""),
            ("deletion cost zero", annotated(json!({"controller.kubernetes.io/pod-deletion-cost": "0"})), ""),
            ("mirror pod on its node", with(&spec(json!({"nodeName": "node-1"})), json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "abc"}}})), ""),
            ("privileged with bidirectional propagation", ctr(json!({"securityContext": {"privileged": true},
                "volumeMounts": [{"name": "data", "mountPath": "/data", "mountPropagation": "Bidirectional"}]})), ""),
            ("unmasked proc without host users", spec(json!({"hostUsers": false, "containers": [with(&container(), json!({"securityContext": {"procMount": "Unmasked"}}))]})), ""),
        ]);
    }

    #[test]
    fn pod_containers_invalid() {
        let c = "spec.containers[0]";
        let two = |second: Value| spec(json!({"containers": [container(), second]}));
        let cases = [
            ("no containers", spec(json!({"containers": []})), "spec.containers: Required value".to_string()),
            ("no name", ctr(json!({"name": ""})), format!("{c}.name: Required value")),
            ("name not a label", ctr(json!({"name": "Web"})), format!("{c}.name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of")),
            ("name too long", ctr(json!({"name": "a".repeat(64)})), format!("{c}.name: Invalid value: \"{}\": must be no more than 63 characters", "a".repeat(64))),
            ("same name twice", two(json!({"name": "web", "image": "busybox"})), "spec.containers[1].name: Duplicate value: \"web\"".to_string()),
            ("no image", ctr(json!({"image": null})), format!("{c}.image: Required value")),
            ("empty image", ctr(json!({"image": ""})), format!("{c}.image: Required value")),
            ("image with spaces", ctr(json!({"image": " nginx"})), format!("{c}.image: Invalid value: \" nginx\": must not have leading or trailing whitespace")),
            ("pull policy", ctr(json!({"imagePullPolicy": "Sometimes"})), format!("{c}.imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"")),
            ("termination message policy", ctr(json!({"terminationMessagePolicy": "Maybe"})),
                format!("{c}.terminationMessagePolicy: Unsupported value: \"Maybe\": supported values: \"File\", \"FallbackToLogsOnError\"")),
            ("restartPolicy on a container", ctr(json!({"restartPolicy": "Always"})), format!("{c}.restartPolicy: Forbidden: may not be set for non-init containers")),
            ("resize of an unknown resource", ctr(json!({"resizePolicy": [{"resourceName": "gpu", "restartPolicy": "NotRequired"}]})),
                format!("{c}.resizePolicy: Unsupported value: gpu: supported values: \"cpu\", \"memory\"")),
            ("resize policy twice", ctr(json!({"resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}, {"resourceName": "cpu", "restartPolicy": "NotRequired"}]})),
                format!("{c}.resizePolicy[1]: Duplicate value: cpu")),
            ("resize restart policy", ctr(json!({"resizePolicy": [{"resourceName": "memory", "restartPolicy": "Sometimes"}]})),
                format!("{c}.resizePolicy: Unsupported value: \"Sometimes\": supported values: \"NotRequired\", \"RestartContainer\"")),
            ("resize restarting a Never pod", spec(json!({"restartPolicy": "Never", "containers": [with(&container(), json!({"resizePolicy": [{"resourceName": "memory", "restartPolicy": "RestartContainer"}]}))]})),
                format!("{c}.resizePolicy: Invalid value: \"RestartContainer\": must be 'NotRequired' when `restartPolicy` is 'Never'")),
        ];
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        table("", "Pod", &cases);
    }

    #[test]
    fn pod_ports_invalid() {
        let p = "spec.containers[0].ports";
        let ports = |list: Value| ctr(json!({"ports": list}));
        let cases = [
            ("no containerPort", ports(json!([{"name": "http"}])), format!("{p}[0].containerPort: Required value")),
            ("containerPort too big", ports(json!([{"containerPort": 70000}])), format!("{p}[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive")),
            ("negative containerPort", ports(json!([{"containerPort": -80}])), format!("{p}[0].containerPort: Invalid value: -80: must be between 1 and 65535, inclusive")),
            ("hostPort too big", ports(json!([{"containerPort": 80, "hostPort": 70000}])), format!("{p}[0].hostPort: Invalid value: 70000: must be between 1 and 65535, inclusive")),
            ("negative hostPort", ports(json!([{"containerPort": 80, "hostPort": -1}])), format!("{p}[0].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive")),
            ("protocol", ports(json!([{"containerPort": 80, "protocol": "HTTP"}])), format!("{p}[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"")),
            ("lowercase protocol", ports(json!([{"containerPort": 80, "protocol": "tcp"}])), format!("{p}[0].protocol: Unsupported value: \"tcp\"")),
            ("name too long", ports(json!([{"containerPort": 80, "name": "toolongportname1"}])), format!("{p}[0].name: Invalid value: \"toolongportname1\": must be no more than 15 characters")),
            ("name with underscore", ports(json!([{"containerPort": 80, "name": "a_b"}])),
                format!("{p}[0].name: Invalid value: \"a_b\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")),
            ("name of digits", ports(json!([{"containerPort": 80, "name": "8080"}])), format!("{p}[0].name: Invalid value: \"8080\": must contain at least one letter (a-z)")),
            ("name twice", ports(json!([{"containerPort": 80, "name": "http"}, {"containerPort": 81, "name": "http"}])), format!("{p}[1].name: Duplicate value: \"http\"")),
            ("host port twice in a container", ports(json!([{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": 8080}])),
                format!("{p}[1].hostPort: Duplicate value: \"TCP//8080\"")),
            ("host port twice across containers", spec(json!({"containers": [with(&container(), json!({"ports": [{"containerPort": 80, "hostPort": 8080}]})),
                {"name": "b", "image": "b", "ports": [{"containerPort": 81, "hostPort": 8080, "protocol": "TCP"}]}]})),
                "spec.containers[1].ports[0].hostPort: Duplicate value: \"TCP//8080\"".to_string()),
            ("host port twice on one IP", ports(json!([{"containerPort": 80, "hostPort": 53, "hostIP": "10.0.0.1", "protocol": "UDP"}, {"containerPort": 81, "hostPort": 53, "hostIP": "10.0.0.1", "protocol": "UDP"}])),
                format!("{p}[1].hostPort: Duplicate value: \"UDP/10.0.0.1/53\"")),
            ("host network, other host port", spec(json!({"hostNetwork": true, "containers": [with(&container(), json!({"ports": [{"containerPort": 80, "hostPort": 8080}]}))]})),
                format!("{p}[0].hostPort: Invalid value: 8080: must match `containerPort` when `hostNetwork` is true")),
        ];
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        table("", "Pod", &cases);
    }

    #[test]
    fn pod_env_invalid() {
        let e = "spec.containers[0].env[0]";
        let f = "spec.containers[0].envFrom";
        let cases = [
            ("no name", env(json!({"value": "x"})), format!("{e}.name: Required value")),
            ("name with =", env(json!({"name": "A=B"})), format!("{e}.name: Invalid value: \"A=B\": {ENV_VAR_NAME}")),
            ("name not ASCII", env(json!({"name": "naïve"})), format!("{e}.name: Invalid value: \"naïve\": {ENV_VAR_NAME}")),
            ("name with a tab", env(json!({"name": "A\tB"})), format!("{e}.name: Invalid value: \"A\\tB\": {ENV_VAR_NAME}")),
            ("no source", value_from(json!({})), format!("{e}.valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`")),
            ("source and value", env(json!({"name": "X", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})),
                format!("{e}.valueFrom: Invalid value: \"\": may not be specified when `value` is not empty")),
            ("two sources", value_from(json!({"fieldRef": {"fieldPath": "metadata.name"}, "secretKeyRef": {"name": "s", "key": "k"}})),
                format!("{e}.valueFrom: Invalid value: \"\": may not have more than one field specified at a time")),
            ("no fieldPath", value_from(json!({"fieldRef": {"fieldPath": ""}})), format!("{e}.valueFrom.fieldRef.fieldPath: Required value")),
            ("labels without a key", value_from(json!({"fieldRef": {"fieldPath": "metadata.labels"}})),
                format!("{e}.valueFrom.fieldRef.fieldPath: Unsupported value: \"metadata.labels\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\"")),
            ("status.phase", value_from(json!({"fieldRef": {"fieldPath": "status.phase"}})), format!("{e}.valueFrom.fieldRef.fieldPath: Unsupported value: \"status.phase\"")),
            ("unknown field", value_from(json!({"fieldRef": {"fieldPath": "spec.foo"}})),
                format!("{e}.valueFrom.fieldRef.fieldPath: Invalid value: \"spec.foo\": error converting fieldPath: field label not supported: spec.foo")),
            ("other version", value_from(json!({"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}})),
                format!("{e}.valueFrom.fieldRef.fieldPath: Invalid value: \"metadata.name\": error converting fieldPath: unsupported pod version: v2")),
            ("subscript of a scalar", value_from(json!({"fieldRef": {"fieldPath": "spec.nodeName['x']"}})),
                format!("{e}.valueFrom.fieldRef.fieldPath: Invalid value: \"spec.nodeName['x']\": error converting fieldPath: field label does not support subscript: spec.nodeName['x']")),
            ("label key", value_from(json!({"fieldRef": {"fieldPath": "metadata.labels['bad key']"}})), format!("{e}.valueFrom.fieldRef: Invalid value: \"bad key\": name part must consist")),
            ("no resource", value_from(json!({"resourceFieldRef": {"resource": ""}})), format!("{e}.valueFrom.resourceFieldRef.resource: Required value")),
            ("resource", value_from(json!({"resourceFieldRef": {"resource": "limits.gpu"}})),
                format!("{e}.valueFrom.resourceFieldRef.resource: Unsupported value: \"limits.gpu\": supported values: \"limits.cpu\", \"limits.ephemeral-storage\"")),
            ("cpu divisor", value_from(json!({"resourceFieldRef": {"resource": "limits.cpu", "divisor": "2"}})),
                format!("{e}.valueFrom.resourceFieldRef.divisor: Invalid value: \"limits.cpu\": only divisor's values 1m and 1 are supported with the cpu resource")),
            ("memory divisor", value_from(json!({"resourceFieldRef": {"resource": "requests.memory", "divisor": "3Mi"}})),
                format!("{e}.valueFrom.resourceFieldRef.divisor: Invalid value: \"requests.memory\": only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource")),
            ("config map name", value_from(json!({"configMapKeyRef": {"name": "", "key": "k"}})), format!("{e}.valueFrom.configMapKeyRef.name: Invalid value: \"\": a lowercase RFC 1123 subdomain")),
            ("config map key", value_from(json!({"configMapKeyRef": {"name": "app", "key": ""}})), format!("{e}.valueFrom.configMapKeyRef.key: Required value")),
            ("secret key with space", value_from(json!({"secretKeyRef": {"name": "db", "key": "a b"}})),
                format!("{e}.valueFrom.secretKeyRef.key: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'")),
            ("secret key ..", value_from(json!({"secretKeyRef": {"name": "db", "key": ".."}})), format!("{e}.valueFrom.secretKeyRef.key: Invalid value: \"..\": must not be '..'")),
            ("secret name", value_from(json!({"secretKeyRef": {"name": "DB", "key": "k"}})), format!("{e}.valueFrom.secretKeyRef.name: Invalid value: \"DB\"")),
            ("envFrom without source", ctr(json!({"envFrom": [{"prefix": "A_"}]})), format!("{f}: Invalid value: \"\": must specify one of: `configMapRef` or `secretRef`")),
            ("envFrom with both", ctr(json!({"envFrom": [{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]})),
                format!("{f}: Invalid value: \"\": may not have more than one field specified at a time")),
            ("envFrom config map without name", ctr(json!({"envFrom": [{"configMapRef": {"name": ""}}]})), format!("{f}[0].configMapRef.name: Required value")),
            ("envFrom secret name", ctr(json!({"envFrom": [{"secretRef": {"name": "Bad"}}]})), format!("{f}[0].secretRef.name: Invalid value: \"Bad\": a lowercase RFC 1123 subdomain")),
            ("envFrom prefix", ctr(json!({"envFrom": [{"secretRef": {"name": "db"}, "prefix": "A="}]})), format!("{f}[0].prefix: Invalid value: \"A=\": {ENV_VAR_NAME}")),
        ];
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        table("", "Pod", &cases);
    }

    #[test]
    fn pod_volume_mounts_invalid() {
        let m = "spec.containers[0].volumeMounts";
        let d = "spec.containers[0].volumeDevices";
        let mounts = |list: Value| ctr(json!({"volumeMounts": list}));
        let devices = |list: Value| ctr(json!({"volumeDevices": list}));
        let cases = [
            ("unknown volume", mounts(json!([{"name": "nope", "mountPath": "/x"}])), format!("{m}[0].name: Not found: \"nope\"")),
            ("no mountPath", mounts(json!([{"name": "data", "mountPath": ""}])), format!("{m}[0].mountPath: Required value")),
            ("mountPath twice", mounts(json!([{"name": "data", "mountPath": "/data"}, {"name": "config", "mountPath": "/data"}])),
                format!("{m}[1].mountPath: Invalid value: \"/data\": must be unique")),
            ("absolute subPath", mounts(json!([{"name": "data", "mountPath": "/d", "subPath": "/abs"}])), format!("{m}.subPath: Invalid value: \"/abs\": must be a relative path")),
            ("subPath with ..", mounts(json!([{"name": "data", "mountPath": "/d", "subPath": "a/../b"}])), format!("{m}.subPath: Invalid value: \"a/../b\": must not contain '..'")),
            ("subPathExpr with ..", mounts(json!([{"name": "data", "mountPath": "/d", "subPathExpr": "../$(X)"}])), format!("{m}.subPathExpr: Invalid value: \"../$(X)\": must not contain '..'")),
            ("subPath and subPathExpr", mounts(json!([{"name": "data", "mountPath": "/d", "subPath": "a", "subPathExpr": "$(X)"}])),
                format!("{m}[0].subPathExpr: Invalid value: \"$(X)\": subPathExpr and subPath are mutually exclusive")),
            ("propagation", mounts(json!([{"name": "data", "mountPath": "/d", "mountPropagation": "Sideways"}])),
                format!("{m}.mountPropagation: Unsupported value: \"Sideways\": supported values: \"Bidirectional\", \"HostToContainer\", \"None\"")),
            ("bidirectional unprivileged", mounts(json!([{"name": "data", "mountPath": "/d", "mountPropagation": "Bidirectional"}])),
                format!("{m}.mountPropagation: Forbidden: Bidirectional mount propagation is available only to privileged containers")),
            ("recursive read-only, writable", mounts(json!([{"name": "data", "mountPath": "/d", "recursiveReadOnly": "Enabled"}])),
                format!("{m}.recursiveReadOnly: Forbidden: may only be specified when readOnly is true")),
            ("recursive read-only, propagated", mounts(json!([{"name": "data", "mountPath": "/d", "readOnly": true, "recursiveReadOnly": "IfPossible", "mountPropagation": "HostToContainer"}])),
                format!("{m}.recursiveReadOnly: Forbidden: may only be specified when mountPropagation is None or not specified")),
            ("recursive read-only value", mounts(json!([{"name": "data", "mountPath": "/d", "readOnly": true, "recursiveReadOnly": "Always"}])),
                format!("{m}.recursiveReadOnly: Unsupported value: \"Always\": supported values: \"Disabled\", \"Enabled\", \"IfPossible\"")),
            ("mount of an invalid volume", spec(json!({"volumes": [{"name": "data", "emptyDir": {}}, {"name": "bad"}],
                "containers": [with(&container(), json!({"volumeMounts": [{"name": "data", "mountPath": "/d"}]}))]})), "spec.volumes[1]: Required value: must specify a volume type".to_string()),
            ("device of an emptyDir", devices(json!([{"name": "data", "devicePath": "/dev/x"}])),
                format!("{d}[0].name: Invalid value: \"data\": can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode")),
            ("device of no volume", devices(json!([{"name": "nope", "devicePath": "/dev/x"}])), format!("{d}[0].name: Not found: \"nope\"")),
            ("device without path", devices(json!([{"name": "claim", "devicePath": ""}])), format!("{d}[0].devicePath: Required value")),
            ("device path with ..", devices(json!([{"name": "claim", "devicePath": "/dev/../x"}])), format!("{d}[0].devicePath: Invalid value: \"/dev/../x\": can not contain backsteps ('..')")),
            ("device path twice", spec(json!({"volumes": [{"name": "a", "persistentVolumeClaim": {"claimName": "a"}}, {"name": "b", "persistentVolumeClaim": {"claimName": "b"}}],
                "containers": [with(&container(), json!({"volumeDevices": [{"name": "a", "devicePath": "/dev/x"}, {"name": "b", "devicePath": "/dev/x"}]}))]})),
                format!("{d}[1].devicePath: Invalid value: \"/dev/x\": must be unique")),
        ];
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        table("", "Pod", &cases);
        // A volume both mounted and a device: both sides say so.
        let both = ctr(json!({"volumeMounts": [{"name": "claim", "mountPath": "/c"}], "volumeDevices": [{"name": "claim", "devicePath": "/dev/c"}]}));
        assert_eq!(messages("", "Pod", Op::Create(&both)), [
            format!("{m}[0].name: Invalid value: \"claim\": must not already exist in volumeDevices"),
            format!("{d}[0].name: Invalid value: \"claim\": must not already exist in volumeMounts"),
        ]);
        let same_path = ctr(json!({"volumeMounts": [{"name": "data", "mountPath": "/dev/x"}], "volumeDevices": [{"name": "claim", "devicePath": "/dev/x"}]}));
        assert_eq!(messages("", "Pod", Op::Create(&same_path)), [
            format!("{m}[0].mountPath: Invalid value: \"/dev/x\": must not already exist as a path in volumeDevices"),
            format!("{d}[0].devicePath: Invalid value: \"/dev/x\": must not already exist as a path in volumeMounts"),
        ]);
    }

    #[test]
    fn pod_probes_invalid() {
        let c = "spec.containers[0]";
        let http = json!({"httpGet": {"port": 80}});
        let cases = [
            ("no handler", probe("livenessProbe", json!({"periodSeconds": 5})), format!("{c}.livenessProbe: Required value: must specify a handler type")),
            ("two handlers", probe("livenessProbe", json!({"httpGet": {"port": 80}, "tcpSocket": {"port": 80}})),
                format!("{c}.livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type")),
            ("exec without command", probe("livenessProbe", json!({"exec": {}})), format!("{c}.livenessProbe.exec.command: Required value")),
            ("exec with no command", probe("startupProbe", json!({"exec": {"command": []}})), format!("{c}.startupProbe.exec.command: Required value")),
            ("httpGet port 0", probe("livenessProbe", json!({"httpGet": {"port": 0}})), format!("{c}.livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive")),
            ("httpGet port name", probe("livenessProbe", json!({"httpGet": {"port": "web_port"}})),
                format!("{c}.livenessProbe.httpGet.port: Invalid value: \"web_port\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")),
            ("httpGet scheme", probe("livenessProbe", json!({"httpGet": {"port": 80, "scheme": "FTP"}})),
                format!("{c}.livenessProbe.httpGet.scheme: Unsupported value: \"FTP\": supported values: \"HTTP\", \"HTTPS\"")),
            ("httpGet header", probe("livenessProbe", json!({"httpGet": {"port": 80, "httpHeaders": [{"name": "Bad Header", "value": "x"}]}})),
                format!("{c}.livenessProbe.httpGet.httpHeaders: Invalid value: \"Bad Header\": a valid HTTP header must consist of alphanumeric characters or '-'")),
            ("tcpSocket port", probe("readinessProbe", json!({"tcpSocket": {"port": 70000}})), format!("{c}.readinessProbe.tcpSocket.port: Invalid value: 70000: must be between 1 and 65535, inclusive")),
            ("grpc port", probe("livenessProbe", json!({"grpc": {"port": 0}})), format!("{c}.livenessProbe.grpc.port: Invalid value: 0: must be between 1 and 65535, inclusive")),
            ("initial delay", probe("livenessProbe", with(&http, json!({"initialDelaySeconds": -1}))), format!("{c}.livenessProbe.initialDelaySeconds: Invalid value: -1: must be greater than or equal to 0")),
            ("timeout", probe("readinessProbe", with(&http, json!({"timeoutSeconds": -1}))), format!("{c}.readinessProbe.timeoutSeconds: Invalid value: -1: must be greater than or equal to 0")),
            ("period", probe("startupProbe", with(&http, json!({"periodSeconds": -10}))), format!("{c}.startupProbe.periodSeconds: Invalid value: -10: must be greater than or equal to 0")),
            ("failure threshold", probe("livenessProbe", with(&http, json!({"failureThreshold": -3}))), format!("{c}.livenessProbe.failureThreshold: Invalid value: -3: must be greater than or equal to 0")),
            ("readiness success threshold", probe("readinessProbe", with(&http, json!({"successThreshold": -1}))),
                format!("{c}.readinessProbe.successThreshold: Invalid value: -1: must be greater than or equal to 0")),
            ("liveness success threshold", probe("livenessProbe", with(&http, json!({"successThreshold": 2}))), format!("{c}.livenessProbe.successThreshold: Invalid value: 2: must be 1")),
            ("startup success threshold", probe("startupProbe", with(&http, json!({"successThreshold": 3}))), format!("{c}.startupProbe.successThreshold: Invalid value: 3: must be 1")),
            ("readiness grace period", probe("readinessProbe", with(&http, json!({"terminationGracePeriodSeconds": 10}))),
                format!("{c}.readinessProbe.terminationGracePeriodSeconds: Invalid value: 10: must not be set for readinessProbes")),
            ("liveness grace period", probe("livenessProbe", with(&http, json!({"terminationGracePeriodSeconds": 0}))),
                format!("{c}.livenessProbe.terminationGracePeriodSeconds: Invalid value: 0: must be greater than 0")),
        ];
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        table("", "Pod", &cases);
        // Each handler past the first is reported.
        let three = probe("readinessProbe", json!({"exec": {"command": ["true"]}, "httpGet": {"port": 80}, "grpc": {"port": 80}}));
        assert_eq!(messages("", "Pod", Op::Create(&three)), [
            format!("{c}.readinessProbe.httpGet: Forbidden: may not specify more than 1 handler type"),
            format!("{c}.readinessProbe.grpc: Forbidden: may not specify more than 1 handler type"),
        ]);
    }

    #[test]
    fn pod_lifecycle_invalid() {
        let l = "spec.containers[0].lifecycle";
        let hook = |field: &str, handler: Value| ctr(json!({"lifecycle": {field: handler}}));
        let cases = [
            ("no handler", hook("preStop", json!({})), format!("{l}.preStop: Required value: must specify a handler type")),
            ("two handlers", hook("postStart", json!({"exec": {"command": ["a"]}, "sleep": {"seconds": 1}})), format!("{l}.postStart.sleep: Forbidden: may not specify more than 1 handler type")),
            ("httpGet port", hook("postStart", json!({"httpGet": {"port": 0}})), format!("{l}.postStart.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive")),
            ("exec without command", hook("preStop", json!({"exec": {}})), format!("{l}.preStop.exec.command: Required value")),
            ("tcpSocket port name", hook("preStop", json!({"tcpSocket": {"port": "-http"}})), format!("{l}.preStop.tcpSocket.port: Invalid value: \"-http\": must not begin or end with a hyphen")),
            ("sleep zero", hook("preStop", json!({"sleep": {"seconds": 0}})),
                format!("{l}.preStop.sleep: Invalid value: 0: must be greater than 0 and less than terminationGracePeriodSeconds (30). Enable AllowPodLifecycleSleepActionZeroValue feature gate for zero sleep.")),
            ("sleep past the grace period", hook("preStop", json!({"sleep": {"seconds": 60}})), format!("{l}.preStop.sleep: Invalid value: 60: must be greater than 0 and less than terminationGracePeriodSeconds (30)")),
            ("sleep past a set grace period", spec(json!({"terminationGracePeriodSeconds": 5, "containers": [with(&container(), json!({"lifecycle": {"preStop": {"sleep": {"seconds": 10}}}}))]})),
                format!("{l}.preStop.sleep: Invalid value: 10: must be greater than 0 and less than terminationGracePeriodSeconds (5)")),
        ];
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        table("", "Pod", &cases);
    }

    #[test]
    fn pod_resources_invalid() {
        let r = "spec.containers[0].resources";
        let cases = [
            ("cpu request over limit", resources(json!({"limits": {"cpu": "1"}, "requests": {"cpu": "2"}})), format!("{r}.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1")),
            ("memory request over limit", resources(json!({"limits": {"memory": "1Gi"}, "requests": {"memory": "1.5Gi"}})),
                format!("{r}.requests: Invalid value: \"1536Mi\": must be less than or equal to memory limit of 1Gi")),
            ("milli cpu over limit", resources(json!({"limits": {"cpu": "500m"}, "requests": {"cpu": "0.6"}})), format!("{r}.requests: Invalid value: \"600m\": must be less than or equal to cpu limit of 500m")),
            ("negative limit", resources(json!({"limits": {"cpu": "-1"}})), format!("{r}.limits[cpu]: Invalid value: \"-1\": must be greater than or equal to 0")),
            ("negative request", resources(json!({"requests": {"memory": "-128Mi"}})), format!("{r}.requests[memory]: Invalid value: \"-128Mi\": must be greater than or equal to 0")),
            ("not a container resource", resources(json!({"limits": {"pods": "1"}})), format!("{r}.limits[pods]: Invalid value: pods: must be a standard resource for containers")),
            ("storage", resources(json!({"requests": {"storage": "1Gi"}})), format!("{r}.requests[storage]: Invalid value: storage: must be a standard resource for containers")),
            ("not an extended resource", resources(json!({"limits": {"requests.example.com/gpu": "1"}})),
                format!("{r}.limits[requests.example.com/gpu]: Invalid value: requests.example.com/gpu: doesn't follow extended resource name standard")),
            ("fraction of a device", resources(json!({"limits": {"example.com/gpu": "500m"}})), format!("{r}.limits[example.com/gpu]: Invalid value: 500m: must be an integer")),
            ("device request below limit", resources(json!({"limits": {"example.com/gpu": "2"}, "requests": {"example.com/gpu": "1"}})),
                format!("{r}.requests: Invalid value: \"1\": must be equal to example.com/gpu limit of 2")),
            ("device request without limit", resources(json!({"requests": {"example.com/gpu": "1"}})), format!("{r}.limits: Required value: Limit must be set for non overcommitable resources")),
            ("hugepages not whole pages", resources(json!({"limits": {"hugepages-2Mi": "3Mi", "memory": "1Gi"}, "requests": {"memory": "1Gi"}})),
                format!("{r}.limits[hugepages-2Mi]: Invalid value: \"3Mi\": 3Mi is not positive integer multiple of hugepages-2Mi")),
            ("hugepages alone", resources(json!({"limits": {"hugepages-1Gi": "2Gi"}})), format!("{r}: Forbidden: HugePages require cpu or memory")),
            ("hugepages request below limit", resources(json!({"limits": {"hugepages-2Mi": "4Mi", "cpu": "1"}, "requests": {"hugepages-2Mi": "2Mi"}})),
                format!("{r}.requests: Invalid value: \"2Mi\": must be equal to hugepages-2Mi limit of 4Mi")),
            ("claim not in the pod", resources(json!({"claims": [{"name": "gpu"}]})),
                format!("{r}.claims[0]: Not found: \"gpu\": must be one of the names in pod.spec.resourceClaims which is empty")),
            ("claim twice", spec(json!({"resourceClaims": [{"name": "gpu", "resourceClaimName": "gpu-1"}],
                "containers": [with(&container(), json!({"resources": {"claims": [{"name": "gpu"}, {"name": "gpu"}]}}))]})), format!("{r}.claims[1]: Duplicate value: \"gpu\"")),
            ("claim without name", resources(json!({"claims": [{"name": ""}]})), format!("{r}.claims[0]: Required value")),
            ("overhead", spec(json!({"overhead": {"cpu": "-1"}})), "spec.overhead.limits[cpu]: Invalid value: \"-1\": must be greater than or equal to 0".to_string()),
            ("overhead of pods", spec(json!({"overhead": {"pods": "1"}})), "spec.overhead.limits[pods]: Invalid value: pods: must be a standard resource for containers".to_string()),
        ];
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        table("", "Pod", &cases);
    }

    #[test]
    fn pod_security_context_invalid() {
        let s = "spec.containers[0].securityContext";
        let p = "spec.securityContext";
        let cases = [
            ("runAsUser", sc(json!({"runAsUser": -1})), format!("{s}.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive")),
            ("runAsGroup", sc(json!({"runAsGroup": 2147483648i64})), format!("{s}.runAsGroup: Invalid value: 2147483648: must be between 0 and 2147483647, inclusive")),
            ("privileged without escalation", sc(json!({"privileged": true, "allowPrivilegeEscalation": false})), format!("{s}: Invalid value: ")),
            ("CAP_SYS_ADMIN without escalation", sc(json!({"allowPrivilegeEscalation": false, "capabilities": {"add": ["CAP_SYS_ADMIN"]}})), format!("{s}: Invalid value: ")),
            ("procMount", sc(json!({"procMount": "Weird"})), format!("{s}.procMount: Unsupported value: \"Weird\": supported values: \"Default\", \"Unmasked\"")),
            ("unmasked with host users", sc(json!({"procMount": "Unmasked"})), format!("{s}.procMount: Invalid value: \"Unmasked\": `hostUsers` must be false to use `Unmasked`")),
            ("seccomp without type", sc(json!({"seccompProfile": {}})), format!("{s}.seccompProfile.type: Required value: type is required when seccompProfile is set")),
            ("seccomp type", sc(json!({"seccompProfile": {"type": "Custom"}})),
                format!("{s}.seccompProfile.type: Unsupported value: \"Custom\": supported values: \"Localhost\", \"RuntimeDefault\", \"Unconfined\"")),
            ("seccomp localhost without profile", sc(json!({"seccompProfile": {"type": "Localhost"}})), format!("{s}.seccompProfile.localhostProfile: Required value: must be set when seccomp type is Localhost")),
            ("seccomp profile not local", sc(json!({"seccompProfile": {"type": "RuntimeDefault", "localhostProfile": "x.json"}})), format!("{s}.seccompProfile.localhostProfile: Invalid value: ")),
            ("seccomp profile outside", sc(json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "../x.json"}})),
                format!("{s}.seccompProfile.localhostProfile: Invalid value: \"../x.json\": must not contain '..'")),
            ("seccomp profile absolute", pod_sc(json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "/x.json"}})),
                format!("{p}.seccompProfile.localhostProfile: Invalid value: \"/x.json\": must be a relative path")),
            ("apparmor localhost without profile", sc(json!({"appArmorProfile": {"type": "Localhost"}})), format!("{s}.appArmorProfile.localhostProfile: Required value: must be set when AppArmor type is Localhost")),
            ("apparmor profile padded", sc(json!({"appArmorProfile": {"type": "Localhost", "localhostProfile": " web "}})),
                format!("{s}.appArmorProfile.localhostProfile: Invalid value: \" web \": must not be padded with whitespace")),
            ("apparmor profile not local", pod_sc(json!({"appArmorProfile": {"type": "Unconfined", "localhostProfile": "web"}})),
                format!("{p}.appArmorProfile.localhostProfile: Invalid value: \"web\": can only be set when AppArmor type is Localhost")),
            ("apparmor without type", sc(json!({"appArmorProfile": {"type": ""}})), format!("{s}.appArmorProfile.type: Required value: type is required when appArmorProfile is set")),
            ("apparmor type", sc(json!({"appArmorProfile": {"type": "Complain"}})), format!("{s}.appArmorProfile.type: Unsupported value: \"Complain\"")),
            ("windows user empty", sc(json!({"windowsOptions": {"runAsUserName": ""}})), format!("{s}.windowsOptions.runAsUserName: Invalid value: \"\": runAsUserName cannot be an empty string")),
            ("windows user backslashes", sc(json!({"windowsOptions": {"runAsUserName": "a\\b\\c"}})),
                format!("{s}.windowsOptions.runAsUserName: Invalid value: \"a\\\\b\\\\c\": runAsUserName cannot contain more than one backslash")),
            ("windows user characters", sc(json!({"windowsOptions": {"runAsUserName": "us:er"}})),
                format!("{s}.windowsOptions.runAsUserName: Invalid value: \"us:er\": runAsUserName's User cannot contain the following characters")),
            ("windows domain", sc(json!({"windowsOptions": {"runAsUserName": ".bad domain\\user"}})),
                format!("{s}.windowsOptions.runAsUserName: Invalid value: \".bad domain\\\\user\": runAsUserName's Domain doesn't match the NetBios nor the DNS format")),
            ("windows user of dots", sc(json!({"windowsOptions": {"runAsUserName": "..."}})), format!("{s}.windowsOptions.runAsUserName: Invalid value: \"...\": runAsUserName's User cannot contain only periods or spaces")),
            ("gMSA spec name", sc(json!({"windowsOptions": {"gmsaCredentialSpecName": "Bad"}})), format!("{s}.windowsOptions.gmsaCredentialSpecName: Invalid value: \"Bad\"")),
            ("gMSA spec empty", pod_sc(json!({"windowsOptions": {"gmsaCredentialSpec": ""}})), format!("{p}.windowsOptions.gmsaCredentialSpec: Invalid value: \"\": gmsaCredentialSpec cannot be an empty string")),
            ("fsGroup", pod_sc(json!({"fsGroup": -1})), format!("{p}.fsGroup: Invalid value: -1: must be between 0 and 2147483647, inclusive")),
            ("pod runAsUser", pod_sc(json!({"runAsUser": -5})), format!("{p}.runAsUser: Invalid value: -5")),
            ("pod runAsGroup", pod_sc(json!({"runAsGroup": 4294967296i64})), format!("{p}.runAsGroup: Invalid value: 4294967296")),
            ("supplemental group", pod_sc(json!({"supplementalGroups": [1, -1]})), format!("{p}.supplementalGroups[1]: Invalid value: -1: must be between 0 and 2147483647, inclusive")),
            ("fsGroupChangePolicy", pod_sc(json!({"fsGroupChangePolicy": "Sometimes"})), format!("{p}.fsGroupChangePolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnRootMismatch\"")),
            ("supplementalGroupsPolicy", pod_sc(json!({"supplementalGroupsPolicy": "Loose"})), format!("{p}.supplementalGroupsPolicy: Unsupported value: \"Loose\": supported values: \"Merge\", \"Strict\"")),
            ("seLinuxChangePolicy", pod_sc(json!({"seLinuxChangePolicy": "Never"})), format!("{p}.seLinuxChangePolicy: Unsupported value: \"Never\": supported values: \"MountOption\", \"Recursive\"")),
            ("sysctl without name", pod_sc(json!({"sysctls": [{"name": "", "value": "1"}]})), format!("{p}.sysctls[0].name: Required value")),
            ("sysctl name", pod_sc(json!({"sysctls": [{"name": "Net.Bad", "value": "1"}]})),
                format!("{p}.sysctls[0].name: Invalid value: \"Net.Bad\": must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$")),
            ("sysctl twice", pod_sc(json!({"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"}, {"name": "kernel.shm_rmid_forced", "value": "0"}]})),
                format!("{p}.sysctls[1].name: Duplicate value: \"kernel.shm_rmid_forced\"")),
            ("net sysctl on the host network", spec(json!({"hostNetwork": true, "securityContext": {"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]}})),
                format!("{p}.sysctls[0].name: Invalid value: \"net.core.somaxconn\": may not be specified when 'hostNetwork' is true")),
            ("ipc sysctl with the host's IPC", spec(json!({"hostIPC": true, "securityContext": {"sysctls": [{"name": "kernel/shmmax", "value": "1"}]}})),
                format!("{p}.sysctls[0].name: Invalid value: \"kernel/shmmax\": may not be specified when 'hostIPC' is true")),
            ("shared process namespace and host PID", spec(json!({"shareProcessNamespace": true, "hostPID": true})),
                format!("{p}.shareProcessNamespace: Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled")),
        ];
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        table("", "Pod", &cases);
    }

    #[test]
    fn pod_spec_invalid() {
        let hp = |container_value: Value, pod: Value| spec(with(&pod, json!({"containers": [with(&container(), json!({"securityContext": {"windowsOptions": container_value}}))]})));
        let cases = [
            ("restartPolicy", spec(json!({"restartPolicy": "Sometimes"})), "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""),
            ("activeDeadlineSeconds zero", spec(json!({"activeDeadlineSeconds": 0})), "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"),
            ("activeDeadlineSeconds negative", spec(json!({"activeDeadlineSeconds": -5})), "spec.activeDeadlineSeconds: Invalid value: -5: must be between 1 and 2147483647, inclusive"),
            ("activeDeadlineSeconds too long", spec(json!({"activeDeadlineSeconds": 2147483648i64})), "spec.activeDeadlineSeconds: Invalid value: 2147483648"),
            ("serviceAccountName", spec(json!({"serviceAccountName": "Bad_SA"})), "spec.serviceAccountName: Invalid value: \"Bad_SA\": a lowercase RFC 1123 subdomain"),
            ("runtimeClassName", spec(json!({"runtimeClassName": "GVisor"})), "spec.runtimeClassName: Invalid value: \"GVisor\": a lowercase RFC 1123 subdomain"),
            ("os without name", spec(json!({"os": {"name": ""}})), "spec.os.name: Required value: cannot be empty"),
            ("os", spec(json!({"os": {"name": "plan9"}})), "spec.os: Unsupported value: \"plan9\": supported values: \"linux\", \"windows\""),
            ("windows options on linux", spec(json!({"os": {"name": "linux"}, "securityContext": {"windowsOptions": {"runAsUserName": "x"}}})),
                "spec.securityContext.windowsOptions: Forbidden: windows options cannot be set for a linux pod"),
            ("container windows options on linux", spec(json!({"os": {"name": "linux"}, "containers": [with(&container(), json!({"securityContext": {"windowsOptions": {"runAsUserName": "x"}}}))]})),
                "spec.containers[0].securityContext.windowsOptions: Forbidden: windows options cannot be set for a linux pod"),
            ("runAsUser on windows", spec(json!({"os": {"name": "windows"}, "securityContext": {"runAsUser": 1000}})), "spec.securityContext.runAsUser: Forbidden: cannot be set for a windows pod"),
            ("sysctls on windows", spec(json!({"os": {"name": "windows"}, "securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}})), "spec.securityContext.sysctls: Forbidden: cannot be set for a windows pod"),
            ("hostPID on windows", spec(json!({"os": {"name": "windows"}, "hostPID": true})), "spec.hostPID: Forbidden: cannot be set for a windows pod"),
            ("hostUsers on windows", spec(json!({"os": {"name": "windows"}, "hostUsers": true})), "spec.hostUsers: Forbidden: cannot be set for a windows pod"),
            ("privileged on windows", spec(json!({"os": {"name": "windows"}, "containers": [with(&container(), json!({"securityContext": {"privileged": false}}))]})),
                "spec.containers[0].securityContext.privileged: Forbidden: cannot be set for a windows pod"),
            ("capabilities on windows", spec(json!({"os": {"name": "windows"}, "containers": [with(&container(), json!({"securityContext": {"capabilities": {}}}))]})),
                "spec.containers[0].securityContext.capabilities: Forbidden: cannot be set for a windows pod"),
            ("host process off the host network", hp(json!({"hostProcess": true}), json!({})), "spec.hostNetwork: Invalid value: false: hostNetwork must be true if pod contains any hostProcess containers"),
            ("host process disagreeing", hp(json!({"hostProcess": false}), json!({"securityContext": {"windowsOptions": {"hostProcess": true}}})),
                "spec.containers[0].securityContext.windowsOptions.hostProcess: Invalid value: false: pod hostProcess value must be identical if both are specified, was true"),
            ("host process containers mixed", spec(json!({"hostNetwork": true, "containers": [
                with(&container(), json!({"ports": null, "securityContext": {"windowsOptions": {"hostProcess": true}}})), {"name": "b", "image": "b"}]})),
                "spec: Invalid value: \"\": If pod contains any hostProcess containers then all containers must be HostProcess containers"),
            ("user namespace with the host network", spec(json!({"hostUsers": false, "hostNetwork": true, "containers": [with(&container(), json!({"ports": null}))]})),
                "spec.hostNetwork: Forbidden: when `pod.Spec.HostUsers` is false"),
            ("user namespace with the host PIDs", spec(json!({"hostUsers": false, "hostPID": true})), "spec.HostPID: Forbidden: when `pod.Spec.HostUsers` is false"),
            ("user namespace with the host IPC", spec(json!({"hostUsers": false, "hostIPC": true})), "spec.HostIPC: Forbidden: when `pod.Spec.HostUsers` is false"),
            ("ephemeral containers on create", spec(json!({"ephemeralContainers": [{"name": "debug", "image": "busybox"}]})), "spec.ephemeralContainers: Forbidden: cannot be set on create"),
            ("token without service account", spec(json!({"serviceAccountName": null, "volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]})),
                "spec.volumes[0].projected.sources[0].serviceAccountToken: Forbidden: must not be specified when serviceAccountName is not set"),
            ("resource claim without source", spec(json!({"resourceClaims": [{"name": "gpu"}]})), "spec.resourceClaims[0]: Invalid value: "),
            ("resource claim with two sources", spec(json!({"resourceClaims": [{"name": "gpu", "resourceClaimName": "a", "resourceClaimTemplateName": "b"}]})), "spec.resourceClaims[0]: Invalid value: "),
            ("resource claim twice", spec(json!({"resourceClaims": [{"name": "gpu", "resourceClaimName": "a"}, {"name": "gpu", "resourceClaimName": "b"}]})),
                "spec.resourceClaims[1].name: Duplicate value: \"gpu\""),
            ("resource claim name", spec(json!({"resourceClaims": [{"name": "GPU", "resourceClaimName": "a"}]})), "spec.resourceClaims[0].name: Invalid value: \"GPU\": a lowercase RFC 1123 label"),
            ("resource claim template name", spec(json!({"resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "A"}]})),
                "spec.resourceClaims[0].resourceClaimTemplateName: Invalid value: \"A\""),
        ];
        table("", "Pod", &cases);
    }

    #[test]
    fn pod_init_containers_invalid() {
        let i = "spec.initContainers[0]";
        let sidecar = |change: Value| init(with(&json!({"name": "proxy", "image": "envoy", "restartPolicy": "Always"}), change));
        let plain = |change: Value| init(with(&json!({"name": "setup", "image": "busybox"}), change));
        let cases = [
            ("restartPolicy", plain(json!({"restartPolicy": "Never"})), format!("{i}.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"")),
            ("liveness probe", plain(json!({"livenessProbe": {"tcpSocket": {"port": 80}}})), format!("{i}.livenessProbe: Forbidden: {NOT_INIT_ALWAYS}")),
            ("readiness probe", plain(json!({"readinessProbe": {"tcpSocket": {"port": 80}}})), format!("{i}.readinessProbe: Forbidden: {NOT_INIT_ALWAYS}")),
            ("startup probe", plain(json!({"startupProbe": {"tcpSocket": {"port": 80}}})), format!("{i}.startupProbe: Forbidden: {NOT_INIT_ALWAYS}")),
            ("lifecycle", plain(json!({"lifecycle": {"preStop": {"exec": {"command": ["x"]}}}})), format!("{i}.lifecycle: Forbidden: {NOT_INIT_ALWAYS}")),
            ("name of a container", plain(json!({"name": "web"})), format!("{i}.name: Duplicate value: \"web\"")),
            ("name twice", spec(json!({"initContainers": [{"name": "a", "image": "a"}, {"name": "a", "image": "a"}]})), "spec.initContainers[1].name: Duplicate value: \"a\"".to_string()),
            ("no image", plain(json!({"image": null})), format!("{i}.image: Required value")),
            ("image with spaces", plain(json!({"image": "busybox "})), format!("{i}.image: Invalid value: \"busybox \": must not have leading or trailing whitespace")),
            ("name", plain(json!({"name": "Setup"})), format!("{i}.name: Invalid value: \"Setup\"")),
            ("resize policy", plain(json!({"resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]})), format!("{i}.resizePolicy: Invalid value: ")),
            ("host port twice", spec(json!({"initContainers": [{"name": "a", "image": "a"}, {"name": "b", "image": "b",
                "ports": [{"containerPort": 1, "hostPort": 9000}, {"containerPort": 2, "hostPort": 9000}]}]})),
                // Upstream's index, whichever init container it is.
                "spec.initContainers[0].ports[1].hostPort: Duplicate value: \"TCP//9000\"".to_string()),
            ("sidecar liveness success threshold", sidecar(json!({"livenessProbe": {"tcpSocket": {"port": 80}, "successThreshold": 2}})),
                format!("{i}.livenessProbe.successThreshold: Invalid value: 2: must be 1")),
            ("sidecar hook without handler", sidecar(json!({"lifecycle": {"postStart": {}}})), format!("{i}.lifecycle.postStart: Required value: must specify a handler type")),
            ("sidecar readiness grace period", sidecar(json!({"readinessProbe": {"exec": {"command": ["x"]}, "terminationGracePeriodSeconds": 1}})),
                format!("{i}.readinessProbe.terminationGracePeriodSeconds: Invalid value: 1: must not be set for readinessProbes")),
            ("env", plain(json!({"env": [{"name": ""}]})), format!("{i}.env[0].name: Required value")),
        ];
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        table("", "Pod", &cases);
    }

    #[test]
    fn pod_annotations_invalid() {
        let a = "metadata.annotations";
        let cases = [
            ("deletion cost", annotated(json!({"controller.kubernetes.io/pod-deletion-cost": "abc"})),
                format!("{a}[controller.kubernetes.io/pod-deletion-cost]: Invalid value: \"abc\": must be a 32bit integer")),
            ("deletion cost with plus", annotated(json!({"controller.kubernetes.io/pod-deletion-cost": "+10"})), format!("{a}[controller.kubernetes.io/pod-deletion-cost]: Invalid value: \"+10\"")),
            ("deletion cost with zeros", annotated(json!({"controller.kubernetes.io/pod-deletion-cost": "007"})), format!("{a}[controller.kubernetes.io/pod-deletion-cost]: Invalid value: \"007\"")),
            ("deletion cost too big", annotated(json!({"controller.kubernetes.io/pod-deletion-cost": "2147483648"})), format!("{a}[controller.kubernetes.io/pod-deletion-cost]: Invalid value: \"2147483648\"")),
            ("mirror pod unbound", annotated(json!({"kubernetes.io/config.mirror": "abc"})),
                format!("{a}[kubernetes.io/config.mirror]: Invalid value: \"abc\": must set spec.nodeName if mirror pod annotation is set")),
            ("seccomp annotation", annotated(json!({"seccomp.security.alpha.kubernetes.io/pod": "bogus"})),
                format!("{a}.seccomp.security.alpha.kubernetes.io/pod: Invalid value: \"bogus\": must be a valid seccomp profile")),
            ("container seccomp annotation", annotated(json!({"container.seccomp.security.alpha.kubernetes.io/web": "localhost/../x"})),
                format!("{a}.container.seccomp.security.alpha.kubernetes.io/web: Invalid value: \"../x\": must not contain '..'")),
            ("apparmor of no container", annotated(json!({"container.apparmor.security.beta.kubernetes.io/nope": "runtime/default"})),
                format!("{a}[container.apparmor.security.beta.kubernetes.io/nope]: Invalid value: \"nope\": container not found")),
            ("apparmor profile", annotated(json!({"container.apparmor.security.beta.kubernetes.io/web": "bogus"})),
                format!("{a}[container.apparmor.security.beta.kubernetes.io/web]: Invalid value: \"bogus\": invalid AppArmor profile name: \"bogus\"")),
            ("seccomp field and annotation", with(&pod_sc(json!({"seccompProfile": {"type": "Unconfined"}})), json!({"metadata": {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "runtime/default"}}})),
                "spec.securityContext.seccompProfile.type: Forbidden: seccomp type in annotation and field must match".to_string()),
            ("seccomp local profiles", with(&sc(json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "a.json"}})),
                json!({"metadata": {"annotations": {"container.seccomp.security.alpha.kubernetes.io/web": "localhost/b.json"}}})),
                "spec.containers[0].securityContext.seccompProfile.localhostProfile: Forbidden: seccomp profile in annotation and field must match".to_string()),
            ("apparmor field and annotation", with(&sc(json!({"appArmorProfile": {"type": "RuntimeDefault"}})), json!({"metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/web": "unconfined"}}})),
                "spec.containers[0].securityContext.appArmorProfile.type: Forbidden: apparmor type in annotation and field must match".to_string()),
            ("apparmor pod field and annotation", with(&pod_sc(json!({"appArmorProfile": {"type": "Localhost", "localhostProfile": "a"}})),
                json!({"metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/web": "localhost/b"}}})),
                "spec.containers[0].securityContext.appArmorProfile.localhostProfile: Forbidden: apparmor profile in annotation and field must match".to_string()),
        ];
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        table("", "Pod", &cases);
    }

    #[test]
    fn pod_volumes_invalid() {
        let v = "spec.volumes[0]";
        let one = |volume: Value| vols(json!([with(&json!({"name": "v"}), volume)]));
        let claim_template = |change: Value| one(json!({"ephemeral": {"volumeClaimTemplate": with(&json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}), change)}}));
        let cases = [
            ("no source", one(json!({})), format!("{v}: Required value: must specify a volume type")),
            ("two sources", one(json!({"emptyDir": {}, "configMap": {"name": "a"}})), format!("{v}.configMap: Forbidden: may not specify more than 1 volume type")),
            ("downward API as a second source", one(json!({"emptyDir": {}, "downwardAPI": {}})), format!("{v}.downwarAPI: Forbidden: may not specify more than 1 volume type")),
            ("no name", vols(json!([{"name": "", "emptyDir": {}}])), format!("{v}.name: Required value")),
            ("name", vols(json!([{"name": "Data", "emptyDir": {}}])), format!("{v}.name: Invalid value: \"Data\": a lowercase RFC 1123 label")),
            ("name twice", vols(json!([{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}])), "spec.volumes[1].name: Duplicate value: \"data\"".to_string()),
            ("emptyDir size", one(json!({"emptyDir": {"sizeLimit": "-1Gi"}})), format!("{v}.emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid resource quantity")),
            ("hostPath without path", one(json!({"hostPath": {"path": ""}})), format!("{v}.hostPath.path: Required value")),
            ("hostPath with ..", one(json!({"hostPath": {"path": "/a/../etc"}})), format!("{v}.hostPath.path: Invalid value: \"/a/../etc\": must not contain '..'")),
            ("hostPath type", one(json!({"hostPath": {"path": "/a", "type": "Folder"}})),
                format!("{v}.hostPath.type: Unsupported value: \"Folder\": supported values: \"\", \"BlockDevice\", \"CharDevice\", \"Directory\", \"DirectoryOrCreate\", \"File\", \"FileOrCreate\", \"Socket\"")),
            ("configMap without name", one(json!({"configMap": {"name": ""}})), format!("{v}.configMap.name: Required value")),
            ("configMap mode", one(json!({"configMap": {"name": "a", "defaultMode": 0o1000}})), format!("{v}.configMap.defaultMode: Invalid value: 512: {FILE_MODE}")),
            ("configMap item key", one(json!({"configMap": {"name": "a", "items": [{"key": "", "path": "p"}]}})), format!("{v}.configMap.items[0].key: Required value")),
            ("configMap item path", one(json!({"configMap": {"name": "a", "items": [{"key": "k", "path": ""}]}})), format!("{v}.configMap.items[0].path: Required value")),
            ("configMap item absolute path", one(json!({"configMap": {"name": "a", "items": [{"key": "k", "path": "/etc/x"}]}})),
                format!("{v}.configMap.items[0].path: Invalid value: \"/etc/x\": must be a relative path")),
            ("configMap item path ..x", one(json!({"configMap": {"name": "a", "items": [{"key": "k", "path": "..data"}]}})),
                format!("{v}.configMap.items[0].path: Invalid value: \"..data\": must not start with '..'")),
            ("configMap item mode", one(json!({"configMap": {"name": "a", "items": [{"key": "k", "path": "p", "mode": -1}]}})), format!("{v}.configMap.items[0].mode: Invalid value: -1: {FILE_MODE}")),
            ("secret without name", one(json!({"secret": {}})), format!("{v}.secret.secretName: Required value")),
            ("secret mode", one(json!({"secret": {"secretName": "s", "defaultMode": 1000}})), format!("{v}.secret.defaultMode: Invalid value: 1000: {FILE_MODE}")),
            ("secret item path with ..", one(json!({"secret": {"secretName": "s", "items": [{"key": "k", "path": "a/../../b"}]}})),
                format!("{v}.secret.items[0].path: Invalid value: \"a/../../b\": must not contain '..'")),
            ("claim without name", one(json!({"persistentVolumeClaim": {"claimName": ""}})), format!("{v}.persistentVolumeClaim.claimName: Required value")),
            ("nfs without server", one(json!({"nfs": {"server": "", "path": "/x"}})), format!("{v}.nfs.server: Required value")),
            ("nfs relative path", one(json!({"nfs": {"server": "s", "path": "x"}})), format!("{v}.nfs.path: Invalid value: \"x\": must be an absolute path")),
            ("csi driver", one(json!({"csi": {"driver": "Bad_Driver"}})), format!("{v}.csi.driver: Invalid value: \"Bad_Driver\": a lowercase RFC 1123 subdomain")),
            ("csi secret without name", one(json!({"csi": {"driver": "d.example.com", "nodePublishSecretRef": {"name": ""}}})), format!("{v}.csi.nodePublishSecretRef.name: Required value")),
            ("ephemeral without template", one(json!({"ephemeral": {}})), format!("{v}.ephemeral.volumeClaimTemplate: Required value")),
            ("ephemeral without access mode", claim_template(json!({"spec": {"accessModes": []}})),
                format!("{v}.ephemeral.volumeClaimTemplate.spec.accessModes: Required value: at least 1 access mode is required")),
            ("ephemeral access mode", claim_template(json!({"spec": {"accessModes": ["ReadWriteSometimes"]}})),
                format!("{v}.ephemeral.volumeClaimTemplate.spec.accessModes: Unsupported value: \"ReadWriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"")),
            ("ephemeral ReadWriteOncePod and more", claim_template(json!({"spec": {"accessModes": ["ReadWriteOncePod", "ReadWriteOnce"]}})),
                format!("{v}.ephemeral.volumeClaimTemplate.spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes")),
            ("ephemeral without size", claim_template(json!({"spec": {"resources": null}})), format!("{v}.ephemeral.volumeClaimTemplate.spec.resources[storage]: Required value")),
            ("ephemeral size zero", claim_template(json!({"spec": {"resources": {"requests": {"storage": "0"}}}})),
                format!("{v}.ephemeral.volumeClaimTemplate.spec.resources[storage]: Invalid value: \"0\": must be greater than zero")),
            ("ephemeral volume mode", claim_template(json!({"spec": {"volumeMode": "Raw"}})), format!("{v}.ephemeral.volumeClaimTemplate.spec.volumeMode: Unsupported value: \"Raw\"")),
            ("ephemeral storage class", claim_template(json!({"spec": {"storageClassName": "Fast"}})), format!("{v}.ephemeral.volumeClaimTemplate.spec.storageClassName: Invalid value: \"Fast\"")),
            ("ephemeral template name", claim_template(json!({"metadata": {"name": "x"}})), format!("{v}.ephemeral.volumeClaimTemplate.metadata.name: Forbidden: cannot be set")),
            ("ephemeral template label", claim_template(json!({"metadata": {"labels": {"bad key": "x"}}})), format!("{v}.ephemeral.volumeClaimTemplate.metadata.labels: Invalid value: \"bad key\"")),
            ("ephemeral data source", claim_template(json!({"spec": {"dataSource": {"kind": "Snapshot", "name": "s"}}})),
                format!("{v}.ephemeral.volumeClaimTemplate.spec.dataSource: Invalid value: \"Snapshot\": must be 'PersistentVolumeClaim' when referencing the default apiGroup")),
            ("ephemeral claim name too long", with(&one(json!({"ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}})),
                json!({"metadata": {"name": "p".repeat(252)}})), format!("{v}.name: Invalid value: \"v\": PVC name \"{}-v\": must be no more than 253 characters", "p".repeat(252))),
            ("claim of an ephemeral volume", vols(json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}},
                {"name": "again", "persistentVolumeClaim": {"claimName": "web-scratch"}}])),
                "spec.volumes[1].persistentVolumeClaim.claimName: Invalid value: \"web-scratch\": must not reference a PVC that gets created for an ephemeral volume".to_string()),
            ("projected paths twice", one(json!({"projected": {"sources": [{"configMap": {"name": "a", "items": [{"key": "k", "path": "x"}]}}, {"secret": {"name": "b", "items": [{"key": "k", "path": "x"}]}}]}})),
                format!("{v}.projected: Invalid value: \"b\": conflicting duplicate paths")),
            ("projected source of two kinds", one(json!({"projected": {"sources": [{"configMap": {"name": "a"}, "secret": {"name": "b"}}]}})),
                format!("{v}.projected.sources[0]: Forbidden: may not specify more than 1 volume type per source")),
            ("projected token too short", one(json!({"projected": {"sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 60}}]}})),
                format!("{v}.projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes")),
            ("projected token too long", one(json!({"projected": {"sources": [{"serviceAccountToken": {"path": "t", "expirationSeconds": 5000000000i64}}]}})),
                format!("{v}.projected.sources[0].serviceAccountToken.expirationSeconds: Invalid value: 5000000000: may not specify a duration larger than 2^32 seconds")),
            ("projected token path", one(json!({"projected": {"sources": [{"serviceAccountToken": {"path": ""}}]}})), format!("{v}.projected.path: Required value")),
            ("projected token absolute path", one(json!({"projected": {"sources": [{"serviceAccountToken": {"path": "/t"}}]}})), format!("{v}.projected.path: Invalid value: \"/t\": must be a relative path")),
            ("projected config map name", one(json!({"projected": {"sources": [{"configMap": {"name": ""}}]}})), format!("{v}.projected.sources[0].configMap.name: Required value")),
            ("projected mode", one(json!({"projected": {"defaultMode": 4096, "sources": []}})), format!("{v}.projected.defaultMode: Invalid value: 4096")),
            ("trust bundle by name and signer", one(json!({"projected": {"sources": [{"clusterTrustBundle": {"name": "a", "signerName": "example.com/s", "path": "ca.crt"}}]}})),
                format!("{v}.projected.sources[0].clusterTrustBundle: Invalid value: ")),
            ("trust bundle by nothing", one(json!({"projected": {"sources": [{"clusterTrustBundle": {"path": "ca.crt"}}]}})),
                format!("{v}.projected.sources[0].clusterTrustBundle: Required value: either name or signerName must be specified")),
            ("downward API field", one(json!({"downwardAPI": {"items": [{"path": "node", "fieldRef": {"fieldPath": "spec.nodeName"}}]}})),
                format!("{v}.downwardAPI.fieldRef.fieldPath: Unsupported value: \"spec.nodeName\": supported values: \"metadata.annotations\", \"metadata.labels\"")),
            ("downward API resource without container", one(json!({"downwardAPI": {"items": [{"path": "cpu", "resourceFieldRef": {"resource": "limits.cpu"}}]}})),
                format!("{v}.downwardAPI.resourceFieldRef.containerName: Required value")),
            ("downward API item of nothing", one(json!({"downwardAPI": {"items": [{"path": "x"}]}})), format!("{v}.downwardAPI: Required value: one of fieldRef and resourceFieldRef is required")),
            ("downward API item of both", one(json!({"downwardAPI": {"items": [{"path": "x", "fieldRef": {"fieldPath": "metadata.name"}, "resourceFieldRef": {"containerName": "web", "resource": "limits.cpu"}}]}})),
                format!("{v}.downwardAPI: Invalid value: \"resource\": fieldRef and resourceFieldRef can not be specified simultaneously")),
            ("downward API item path", one(json!({"downwardAPI": {"items": [{"path": "", "fieldRef": {"fieldPath": "metadata.name"}}]}})), format!("{v}.downwardAPI.path: Required value")),
            ("iscsi iqn", one(json!({"iscsi": {"targetPortal": "t:3260", "iqn": "bogus", "lun": 0}})), format!("{v}.iscsi.iqn: Invalid value: \"bogus\": must be valid format starting with iqn, eui, or naa")),
            ("iscsi iqn format", one(json!({"iscsi": {"targetPortal": "t:3260", "iqn": "iqn.20-01.x:y", "lun": 0}})), format!("{v}.iscsi.iqn: Invalid value: \"iqn.20-01.x:y\": must be valid format")),
            ("iscsi eui", one(json!({"iscsi": {"targetPortal": "t:3260", "iqn": "eui.0123", "lun": 0}})), format!("{v}.iscsi.iqn: Invalid value: \"eui.0123\": must be valid format")),
            ("iscsi lun", one(json!({"iscsi": {"targetPortal": "t:3260", "iqn": "iqn.2001-04.com.example:disk", "lun": 300}})), format!("{v}.iscsi.lun: Invalid value: 300: must be between 0 and 255, inclusive")),
            ("iscsi chap without secret", one(json!({"iscsi": {"targetPortal": "t:3260", "iqn": "iqn.2001-04.com.example:disk", "lun": 0, "chapAuthSession": true}})), format!("{v}.iscsi.secretRef: Required value")),
            ("iscsi initiator and long names", one(json!({"iscsi": {"targetPortal": "t".repeat(70), "iqn": "iqn.2001-04.com.example:disk", "lun": 0, "initiatorName": "iqn.2001-04.com.example:init"}})),
                format!("{v}.name: Invalid value: \"v\": Total length of <volume name>:<iscsi.targetPortal> must be under 64 characters if iscsi.initiatorName is specified.")),
            ("rbd without monitors", one(json!({"rbd": {"monitors": [], "image": "i"}})), format!("{v}.rbd.monitors: Required value")),
            ("cephfs without monitors", one(json!({"cephfs": {"monitors": []}})), format!("{v}.cephfs.monitors: Required value")),
            ("gce disk name", one(json!({"gcePersistentDisk": {"pdName": ""}})), format!("{v}.persistentDisk.pdName: Required value")),
            ("gce partition", one(json!({"gcePersistentDisk": {"pdName": "d", "partition": 256}})), format!("{v}.persistentDisk.partition: Invalid value: 256: must be between 1 and 255, inclusive")),
            ("aws volume id", one(json!({"awsElasticBlockStore": {"volumeID": ""}})), format!("{v}.awsElasticBlockStore.volumeID: Required value")),
            ("azure managed disk uri", one(json!({"azureDisk": {"diskName": "d", "diskURI": "https://x/d.vhd", "kind": "Managed"}})),
                format!("{v}.azureDisk.diskURI: Unsupported value: \"https://x/d.vhd\": supported values: \"/subscriptions/{{sub-id}}/resourcegroups/{{group-name}}/providers/microsoft.compute/disks/{{disk-id}}\"")),
            ("azure blob disk uri", one(json!({"azureDisk": {"diskName": "d", "diskURI": "/subscriptions/x"}})), format!("{v}.azureDisk.diskURI: Unsupported value: \"/subscriptions/x\"")),
            ("azure caching mode", one(json!({"azureDisk": {"diskName": "d", "diskURI": "https://x/d.vhd", "cachingMode": "Always"}})),
                format!("{v}.azureDisk.cachingMode: Unsupported value: \"Always\": supported values: \"None\", \"ReadOnly\", \"ReadWrite\"")),
            ("azure file share", one(json!({"azureFile": {"secretName": "s", "shareName": ""}})), format!("{v}.azureFile.shareName: Required value")),
            ("flex reserved option", one(json!({"flexVolume": {"driver": "d", "options": {"kubernetes.io/x": "y"}}})),
                format!("{v}.flexVolume.options[kubernetes.io/x]: Invalid value: \"kubernetes.io/x\": kubernetes.io and k8s.io namespaces are reserved")),
            ("flex without driver", one(json!({"flexVolume": {"driver": ""}})), format!("{v}.flexVolume.driver: Required value")),
            ("fc without targets", one(json!({"fc": {}})), format!("{v}.fc.targetWWNs: Required value: must specify either targetWWNs or wwids, but not both")),
            ("fc without lun", one(json!({"fc": {"targetWWNs": ["500a0982991b8dc5"]}})), format!("{v}.fc.lun: Required value: lun is required if targetWWNs is specified")),
            ("flocker of nothing", one(json!({"flocker": {}})), format!("{v}.flocker: Required value: one of datasetName and datasetUUID is required")),
            ("gitRepo without repository", one(json!({"gitRepo": {"repository": ""}})), format!("{v}.gitRepo.repository: Required value")),
            ("gitRepo directory", one(json!({"gitRepo": {"repository": "r", "directory": "../x"}})), format!("{v}.gitRepo.directory: Invalid value: \"../x\": must not contain '..'")),
            ("glusterfs without endpoints", one(json!({"glusterfs": {"endpoints": "", "path": "p"}})), format!("{v}.glusterfs.endpoints: Required value")),
            ("quobyte registry", one(json!({"quobyte": {"registry": "nohostport", "volume": "v"}})),
                format!("{v}.quobyte.registry: Invalid value: \"nohostport\": must be a host:port pair or multiple pairs separated by commas")),
            ("storageos volume name", one(json!({"storageos": {"volumeName": "Bad"}})), format!("{v}.storageos.volumeName: Invalid value: \"Bad\"")),
            ("scaleIO system", one(json!({"scaleIO": {"gateway": "g", "system": "", "volumeName": "v", "secretRef": {"name": "s"}}})), format!("{v}.scaleIO.system: Required value")),
            ("vsphere path", one(json!({"vsphereVolume": {"volumePath": ""}})), format!("{v}.vsphereVolume.volumePath: Required value")),
            ("portworx id", one(json!({"portworxVolume": {"volumeID": ""}})), format!("{v}.portworxVolume.volumeID: Required value")),
            ("image without reference", one(json!({"image": {}})), format!("{v}.image.reference: Required value")),
            ("image pull policy", one(json!({"image": {"reference": "r", "pullPolicy": "Sometimes"}})), format!("{v}.image.pullPolicy: Unsupported value: \"Sometimes\"")),
            ("image subPath", spec(json!({"volumes": [{"name": "img", "image": {"reference": "r"}}],
                "containers": [with(&container(), json!({"volumeMounts": [{"name": "img", "mountPath": "/img", "subPath": "x"}]}))]})),
                "spec.containers[0].volumeMounts[0].subPath: Invalid value: \"x\": not allowed in image volume sources".to_string()),
        ];
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        table("", "Pod", &cases);
    }

    #[test]
    fn pod_ephemeral_containers_invalid() {
        let e = "spec.ephemeralContainers[0]";
        let base = json!({"containers": [container()], "volumes": [{"name": "data", "emptyDir": {}}]});
        let debug = |change: Value| with(&base, json!({"ephemeralContainers": [with(&json!({"name": "debug", "image": "busybox", "targetContainerName": "web"}), change)]}));
        let cases = [
            ("a debug container", debug(json!({"stdin": true, "tty": true, "volumeMounts": [{"name": "data", "mountPath": "/data"}]})), String::new()),
            ("ports", debug(json!({"ports": [{"containerPort": 80}]})), format!("{e}.ports: Forbidden: {EPHEMERAL_FIELD}")),
            ("resources", debug(json!({"resources": {"limits": {"cpu": "1"}}})), format!("{e}.resources: Forbidden: {EPHEMERAL_FIELD}")),
            ("liveness probe", debug(json!({"livenessProbe": {"tcpSocket": {"port": 80}}})), format!("{e}.livenessProbe: Forbidden: {EPHEMERAL_FIELD}")),
            ("readiness probe", debug(json!({"readinessProbe": {"tcpSocket": {"port": 80}}})), format!("{e}.readinessProbe: Forbidden: {EPHEMERAL_FIELD}")),
            ("startup probe", debug(json!({"startupProbe": {"tcpSocket": {"port": 80}}})), format!("{e}.startupProbe: Forbidden: {EPHEMERAL_FIELD}")),
            ("lifecycle", debug(json!({"lifecycle": {"preStop": {"exec": {"command": ["x"]}}}})), format!("{e}.lifecycle: Forbidden: {EPHEMERAL_FIELD}")),
            ("restartPolicy", debug(json!({"restartPolicy": "Always"})), format!("{e}.restartPolicy: Forbidden: {EPHEMERAL_FIELD}")),
            ("subPath", debug(json!({"volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "x"}]})), format!("{e}.volumeMounts[0].subPath: Forbidden: {EPHEMERAL_FIELD}")),
            ("subPathExpr", debug(json!({"volumeMounts": [{"name": "data", "mountPath": "/data", "subPathExpr": "$(X)"}]})), format!("{e}.volumeMounts[0].subPathExpr: Forbidden: {EPHEMERAL_FIELD}")),
            ("name of a container", debug(json!({"name": "web"})), format!("{e}.name: Duplicate value: \"web\"")),
            ("unknown target", debug(json!({"targetContainerName": "db"})), format!("{e}.targetContainerName: Not found: \"db\"")),
            ("image with spaces", debug(json!({"image": "busybox\n"})), format!("{e}.image: Invalid value: \"busybox\\n\": must not have leading or trailing whitespace")),
            ("no image", debug(json!({"image": null})), format!("{e}.image: Required value")),
            ("name", debug(json!({"name": "Debug"})), format!("{e}.name: Invalid value: \"Debug\"")),
            ("env", debug(json!({"env": [{"name": "A=1"}]})), format!("{e}.env[0].name: Invalid value: \"A=1\"")),
            ("mount of no volume", debug(json!({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]})), format!("{e}.volumeMounts[0].name: Not found: \"nope\"")),
        ];
        let cases: Vec<(&str, Value, &str)> = cases.iter().map(|(n, v, e)| (*n, v.clone(), e.as_str())).collect();
        spec_table(&cases);
        let twice = with(&base, json!({"ephemeralContainers": [{"name": "debug", "image": "busybox"}, {"name": "debug", "image": "busybox"}]}));
        spec_table(&[("two of one name", twice, "spec.ephemeralContainers[1].name: Duplicate value: \"debug\"")]);
    }

    #[test]
    fn pod_update_runs_the_pod_rules_not_the_create_ones() {
        let old = spec(json!({"ephemeralContainers": [{"name": "debug", "image": "busybox", "targetContainerName": "web", "terminationMessagePolicy": "File", "imagePullPolicy": "Always"}]}));
        update_table("", "Pod", &old, &[
            ("relabelled, ephemeral containers kept", with(&old, json!({"metadata": {"labels": {"tier": "front"}}})), ""),
            ("new deletion cost", with(&old, json!({"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "x"}}})),
                "metadata.annotations[controller.kubernetes.io/pod-deletion-cost]: Invalid value: \"x\": must be a 32bit integer"),
        ]);
        // The pod's own rules hold on update, as on create.
        let got = messages("", "Pod", Op::Update { new: &with(&old, json!({"spec": {"restartPolicy": "Sometimes"}})), old: &old });
        assert!(got.iter().any(|e| e.starts_with("spec.restartPolicy: Unsupported value: \"Sometimes\"")), "{got:#?}");
    }

    fn template() -> Value {
        json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "web"},
            "template": {"metadata": {"labels": {"app": "web"}, "annotations": {"example.com/owner": "team-a"}}, "spec": {"containers": [container()]}}})
    }

    #[test]
    fn pod_template_valid() {
        table("", "PodTemplate", &[
            ("a template", template(), ""),
            // Only a pod's images must be trimmed, only a pod's image volumes name an image.
            ("template rules are looser", with(&template(), json!({"template": {"spec": {"containers": [with(&container(), json!({"image": " nginx "}))],
                "volumes": [{"name": "img", "image": {}}]}}})), ""),
            ("a projected token without service account", with(&template(), json!({"template": {"spec": {
                "volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]}}})), ""),
        ]);
    }

    #[test]
    fn pod_template_invalid() {
        table("", "PodTemplate", &[
            ("no template", with(&template(), json!({"template": null})), "template.spec.containers: Required value"),
            ("no containers", with(&template(), json!({"template": {"spec": {"containers": []}}})), "template.spec.containers: Required value"),
            ("label", with(&template(), json!({"template": {"metadata": {"labels": {"bad key": "x"}}}})), "template.labels: Invalid value: \"bad key\": name part must consist"),
            ("label value", with(&template(), json!({"template": {"metadata": {"labels": {"app": "-web"}}}})), "template.labels: Invalid value: \"-web\": a valid label must be"),
            ("annotation", with(&template(), json!({"template": {"metadata": {"annotations": {"bad key": "x"}}}})), "template.annotations: Invalid value: \"bad key\": name part must consist"),
            ("annotations too big", with(&template(), json!({"template": {"metadata": {"annotations": {"big": "x".repeat(256 * 1024)}}}})),
                "template.annotations: Too long: may not be more than 262144 bytes"),
            ("deletion cost", with(&template(), json!({"template": {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "many"}}}})),
                "template.annotations[controller.kubernetes.io/pod-deletion-cost]: Invalid value: \"many\": must be a 32bit integer"),
            ("restartPolicy", with(&template(), json!({"template": {"spec": {"restartPolicy": "Sometimes"}}})), "template.spec.restartPolicy: Unsupported value: \"Sometimes\""),
            ("container", with(&template(), json!({"template": {"spec": {"containers": [with(&container(), json!({"name": "Web"}))]}}})), "template.spec.containers[0].name: Invalid value: \"Web\""),
            ("ephemeral containers", with(&template(), json!({"template": {"spec": {"ephemeralContainers": [{"name": "debug", "image": "busybox"}]}}})),
                "template.spec.ephemeralContainers: Forbidden: ephemeral containers not allowed in pod template"),
            ("apparmor annotation and field", with(&template(), json!({"template": {"metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/web": "runtime/default"}},
                "spec": {"securityContext": {"appArmorProfile": {"type": "Unconfined"}}}}})),
                "template.spec.containers[0].securityContext.appArmorProfile.type: Forbidden: apparmor type in annotation and field must match"),
            ("host network, other host port", with(&template(), json!({"template": {"spec": {"hostNetwork": true,
                "containers": [with(&container(), json!({"ports": [{"containerPort": 80, "hostPort": 81}]}))]}}})),
                "template.spec.containers[0].ports[0].hostPort: Invalid value: 81: must match `containerPort` when `hostNetwork` is true"),
        ]);
    }

    #[test]
    fn pod_template_update() {
        // Upstream's ValidatePodTemplateUpdate adds nothing: a template changes freely.
        update_table("", "PodTemplate", &template(), &[
            ("new image", with(&template(), json!({"template": {"spec": {"containers": [with(&container(), json!({"image": "nginx:1.28"}))]}}})), ""),
            ("new restart policy", with(&template(), json!({"template": {"spec": {"restartPolicy": "Never"}}})), ""),
            ("still validated", with(&template(), json!({"template": {"spec": {"containers": []}}})), "template.spec.containers: Required value"),
        ]);
    }

    #[test]
    fn helpers_read_as_upstream() {
        assert!(valid_deletion_cost("-2147483648") && valid_deletion_cost("0") && !valid_deletion_cost("-") && !valid_deletion_cost(""));
        assert!(iqn_format("iqn.2015-02.example.com:test") && !iqn_format("iqn.2015-02.example.com") && !iqn_format("iqn.2015-02.:x"));
        assert!(prefixed_alnum("eui.02004567A425678D", "eui", 16) && prefixed_alnum(&format!("naa.{}", "A".repeat(32)), "naa", 32));
        assert!(valid_sysctl_name("net.ipv4.conf.eno2/100.rp_filter") && valid_sysctl_name("kernel.shm_rmid_forced") && !valid_sysctl_name("net..x") && !valid_sysctl_name("_x"));
        assert!(host_port_pair("a:1") && host_port_pair("[::1]:1") && !host_port_pair("a") && !host_port_pair("::1:1"));
        assert_eq!(dns1123_subdomain_prefix("web-"), Ok(()));
        assert!(netbios_domain("CONTOSO") && !netbios_domain(".x") && dns_domain("corp.Example.com") && !dns_domain("a..b"));
        assert_eq!(canonical(&Quantity("1.5Gi".into())), "1536Mi");
        assert_eq!(canonical(&Quantity("0.5".into())), "500m");
    }
}

//! A pod's container as an OCI runtime spec: what containerd's CRI plugin
//! does with a CRI container config, from the pod, the image's config and
//! the paths the kubelet prepared.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, Spec, UserBuilder,
};

/// A bind mount into the container.
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// A block volume given to the container as a device node (`volumeDevices`).
pub struct BlockDevice {
    /// The device on the host (or a bind mount of it).
    pub source: PathBuf,
    /// Where the container sees it.
    pub path: String,
}

/// Everything besides the pod and the image that goes into a spec.
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub image: &'a ImageConfiguration,
    /// Environment from `env` and `envFrom`, resolved, in order.
    pub env: Vec<(String, String)>,
    pub mounts: Vec<BindMount>,
    pub devices: Vec<BlockDevice>,
    /// The sandbox's namespaces, by OCI name (`net`, `ipc`, `uts`).
    pub namespaces: Vec<(&'static str, PathBuf)>,
    pub hostname: String,
    /// Where `Localhost` seccomp profiles are.
    pub seccomp_dir: &'a std::path::Path,
    /// The image's layer directories, highest first, where its `USER`
    /// names are looked up.
    pub layers: &'a [PathBuf],
}

/// Upstream's default capabilities for containers (containerd's and CRI-O's set).
const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// `build`, with a panic (a bug on hostile input) as its error: the
/// container then waits with `CreateContainerConfigError`, as for any
/// other configuration the agent cannot make, and the agent goes on.
pub fn build_guarded(inputs: Inputs) -> Result<Spec> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build(inputs))).unwrap_or_else(|panic| anyhow::bail!("building the container's configuration failed: {}", crate::panic_message(&*panic)))
}

/// A container's or volume's name, which becomes a path on the node:
/// validation wants an RFC 1123 label, and an object stored before
/// validation may not have one.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let label = !name.is_empty() && name.len() <= 63 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !name.starts_with('-') && !name.ends_with('-');
    anyhow::ensure!(
        label,
        "invalid {what} name {name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    );
    Ok(())
}

/// The container's mount paths as validation wants them: given, unique,
/// and without `..` (which would climb out of where it is meant to go).
pub fn check_mount_paths(container: &Container) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for m in container.volume_mounts.iter().flatten() {
        let path = m.mount_path.as_str();
        anyhow::ensure!(!path.is_empty(), "volumeMounts[{}].mountPath: Required value", m.name);
        anyhow::ensure!(!std::path::Path::new(path).components().any(|c| c == std::path::Component::ParentDir), "volumeMounts[{}].mountPath {path:?} must not contain '..'", m.name);
        anyhow::ensure!(seen.insert(path), "volumeMounts[{}].mountPath {path:?} must be unique", m.name);
    }
    Ok(())
}

/// A user or group ID as validation wants it: 0 to 2147483647.
fn id(what: &str, value: i64) -> Result<u32> {
    u32::try_from(value).ok().filter(|v| *v <= i32::MAX as u32).with_context(|| format!("{what} {value} must be between 0 and 2147483647, inclusive"))
}

pub fn build(inputs: Inputs) -> Result<Spec> {
    let Inputs { pod, container, image, env, mounts, devices, namespaces, hostname, seccomp_dir, layers } = inputs;
    let image_config = image.config().clone().unwrap_or_default();
    let mut environment: Vec<(String, String)> = image_config.env().clone().unwrap_or_default().iter().filter_map(|e| e.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    if !environment.iter().any(|(k, _)| k == "PATH") {
        environment.insert(0, ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()));
    }
    environment.push(("HOSTNAME".into(), hostname.clone()));
    for (name, value) in env {
        let value = expand(&value, &environment);
        environment.retain(|(k, _)| *k != name);
        environment.push((name, value));
    }
    let args = command_line(container, &image_config, &environment);
    anyhow::ensure!(!args.is_empty(), "no command specified");

    let security = container.security_context.clone().unwrap_or_default();
    let pod_security = pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let (image_uid, image_gid) = image_user(image_config.user().as_deref(), layers)?;
    let uid = security.run_as_user.or(pod_security.run_as_user).map(|u| id("runAsUser", u)).transpose()?.unwrap_or(image_uid);
    let gid = security.run_as_group.or(pod_security.run_as_group).map(|g| id("runAsGroup", g)).transpose()?.unwrap_or(image_gid);
    if security.run_as_non_root.or(pod_security.run_as_non_root) == Some(true) && uid == 0 {
        anyhow::bail!("container has runAsNonRoot and image will run as root (pod: \"{}\", container: {})", pod_label(pod), container.name);
    }
    let mut groups: Vec<u32> = pod_security.supplemental_groups.clone().unwrap_or_default().iter().map(|g| id("supplementalGroups", *g)).collect::<Result<_>>()?;
    groups.extend(pod_security.fs_group.map(|g| id("fsGroup", g)).transpose()?);
    let privileged = security.privileged == Some(true);
    let mut capabilities: Vec<Capability> = if privileged { all_capabilities() } else { DEFAULT_CAPABILITIES.to_vec() };
    if let Some(caps) = &security.capabilities {
        for add in caps.add.iter().flatten() {
            if add == "ALL" {
                capabilities = all_capabilities();
            } else if let Some(c) = capability(add) {
                capabilities.push(c);
            }
        }
        for drop in caps.drop.iter().flatten() {
            if drop == "ALL" {
                capabilities.clear();
            } else if let Some(c) = capability(drop) {
                capabilities.retain(|x| *x != c);
            }
        }
    }
    capabilities.sort_by_key(|c| c.to_string());
    capabilities.dedup();
    let seccomp = crate::seccomp::filter(security.seccomp_profile.as_ref(), pod_security.seccomp_profile.as_ref(), privileged, &capabilities, seccomp_dir)?;
    let caps: oci_spec::runtime::Capabilities = capabilities.into_iter().collect();
    // As many open files as the agent may have (containerd passes its own on).
    let open_files = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(_, hard)| hard).unwrap_or(1024);
    let process = ProcessBuilder::default()
        .terminal(container.tty == Some(true))
        .args(args)
        .env(environment.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>())
        .cwd(container.working_dir.clone().or_else(|| image_config.working_dir().clone()).filter(|d| !d.is_empty()).unwrap_or_else(|| "/".into()))
        .user(UserBuilder::default().uid(uid).gid(gid).additional_gids(groups).build()?)
        .no_new_privileges(security.allow_privilege_escalation == Some(false))
        .capabilities(
            oci_spec::runtime::LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .build()?,
        )
        .rlimits(vec![oci_spec::runtime::PosixRlimitBuilder::default().typ(oci_spec::runtime::PosixRlimitType::RlimitNofile).hard(open_files).soft(open_files).build()?])
        .build()?;

    // The defaults; /sys is read-only unless privileged.
    let mut all_mounts: Vec<Mount> = oci_spec::runtime::get_default_mounts();
    for m in all_mounts.iter_mut().filter(|m| m.destination().starts_with("/sys")) {
        let mut options: Vec<String> = m.options().clone().unwrap_or_default().into_iter().filter(|o| o != "ro" && o != "rw").collect();
        options.push(if privileged { "rw" } else { "ro" }.into());
        m.set_options(Some(options));
    }
    for m in mounts {
        let mut options = vec!["rbind".to_string(), "rprivate".into()];
        options.push(if m.read_only { "ro" } else { "rw" }.into());
        all_mounts.push(MountBuilder::default().destination(m.destination).typ("bind").source(m.source).options(options).build()?);
    }

    // A namespace left out is the host's: so `hostPID`.
    let host_pid = pod.spec.as_ref().and_then(|s| s.host_pid).unwrap_or(false);
    let own = [LinuxNamespaceType::Mount, LinuxNamespaceType::Cgroup].into_iter().chain((!host_pid).then_some(LinuxNamespaceType::Pid));
    let mut linux_namespaces = own.map(|typ| LinuxNamespaceBuilder::default().typ(typ).build()).collect::<Result<Vec<_>, _>>()?;
    // A pod on the host's network is in its UTS namespace too, whose
    // hostname is the node's and cannot be set.
    let own_uts = namespaces.iter().any(|(kind, _)| *kind == "uts");
    for (kind, path) in namespaces {
        let typ = match kind {
            "net" => LinuxNamespaceType::Network,
            "ipc" => LinuxNamespaceType::Ipc,
            _ => LinuxNamespaceType::Uts,
        };
        linux_namespaces.push(LinuxNamespaceBuilder::default().typ(typ).path(path).build()?);
    }
    let mut resources = resources(container)?;
    let (nodes, rules) = device_nodes(&devices)?;
    let mut allowed = resources.devices().clone().unwrap_or_default();
    allowed.extend(rules);
    resources.set_devices(Some(allowed));
    let mut linux = LinuxBuilder::default().namespaces(linux_namespaces).resources(resources).devices(nodes);
    if let Some(seccomp) = seccomp {
        linux = linux.seccomp(seccomp);
    }
    if !privileged {
        let defaults = oci_spec::runtime::Linux::default();
        linux = linux.masked_paths(defaults.masked_paths().clone().unwrap_or_default()).readonly_paths(defaults.readonly_paths().clone().unwrap_or_default());
    }
    let mut spec = Spec::default();
    spec.set_hostname(own_uts.then_some(hostname)).set_process(Some(process)).set_mounts(Some(all_mounts)).set_linux(Some(linux.build()?));
    spec.set_root(Some(oci_spec::runtime::RootBuilder::default().path("rootfs").readonly(security.read_only_root_filesystem == Some(true)).build()?));
    Ok(spec)
}

/// The container's block devices, as nodes runc makes in it and the
/// cgroup rules that let it use them (what containerd does for a CRI
/// container's devices).
fn device_nodes(devices: &[BlockDevice]) -> Result<(Vec<oci_spec::runtime::LinuxDevice>, Vec<oci_spec::runtime::LinuxDeviceCgroup>)> {
    use nix::sys::stat::{major, minor, stat, SFlag};
    use oci_spec::runtime::{LinuxDeviceBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType};
    let (mut nodes, mut rules) = (Vec::new(), Vec::new());
    for device in devices {
        let found = stat(&device.source).with_context(|| format!("block device {}", device.source.display()))?;
        anyhow::ensure!(SFlag::from_bits_truncate(found.st_mode) & SFlag::S_IFMT == SFlag::S_IFBLK, "{} is not a block device", device.source.display());
        let (major, minor) = (major(found.st_rdev) as i64, minor(found.st_rdev) as i64);
        nodes.push(LinuxDeviceBuilder::default().path(&device.path).typ(LinuxDeviceType::B).major(major).minor(minor).file_mode(0o660u32).uid(0u32).gid(0u32).build()?);
        rules.push(LinuxDeviceCgroupBuilder::default().allow(true).typ(LinuxDeviceType::B).major(major).minor(minor).access("rwm").build()?);
    }
    Ok((nodes, rules))
}

fn pod_label(pod: &Pod) -> String {
    format!("{}_{}({})", pod.metadata.name.as_deref().unwrap_or(""), pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.uid.as_deref().unwrap_or(""))
}

/// Every capability, for privileged containers and `add: [ALL]`.
fn all_capabilities() -> Vec<Capability> {
    const ALL: &str = "AUDIT_CONTROL AUDIT_READ AUDIT_WRITE BLOCK_SUSPEND BPF CHECKPOINT_RESTORE CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID IPC_LOCK IPC_OWNER KILL LEASE LINUX_IMMUTABLE MAC_ADMIN MAC_OVERRIDE MKNOD NET_ADMIN NET_BIND_SERVICE NET_BROADCAST NET_RAW PERFMON SETGID SETFCAP SETPCAP SETUID SYS_ADMIN SYS_BOOT SYS_CHROOT SYS_MODULE SYS_NICE SYS_PACCT SYS_PTRACE SYS_RAWIO SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG SYSLOG WAKE_ALARM";
    ALL.split(' ').filter_map(|c| c.parse().ok()).collect()
}

/// `NET_ADMIN` or `CAP_NET_ADMIN`, as a capability.
fn capability(name: &str) -> Option<Capability> {
    name.trim_start_matches("CAP_").parse().ok()
}

/// Upstream's rules: `command` replaces the image's entrypoint (and drops
/// its cmd), `args` replaces its cmd; `$(VAR)` expands from the environment.
fn command_line(container: &Container, image: &oci_spec::image::Config, env: &[(String, String)]) -> Vec<String> {
    let entrypoint = image.entrypoint().clone().unwrap_or_default();
    let cmd = image.cmd().clone().unwrap_or_default();
    let (command, args) = match (&container.command, &container.args) {
        (Some(command), args) => (command.clone(), args.clone().unwrap_or_default()),
        (None, Some(args)) => (entrypoint, args.clone()),
        (None, None) => (entrypoint, cmd),
    };
    command.into_iter().chain(args).map(|s| expand(&s, env)).collect()
}

/// `$(VAR)` → its value when defined, `$$` → `$`; anything else is kept,
/// as upstream's expansion does.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(name_end) = after.strip_prefix('(').and_then(|a| a.find(')')) {
            let name = &after[1..=name_end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&rest[i..i + name_end + 3]),
            }
            rest = &after[name_end + 2..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The image's `User` when numeric (`uid` or `uid:gid`); names would need
/// the image's /etc/passwd and run as root until then.
/// The image's `USER` (`name`, `uid`, `name:group`, `uid:gid`) as IDs:
/// names from the image's own `/etc/passwd` and `/etc/group`, as
/// containerd resolves them; the user's primary group unless one is given
/// (0 for a UID the image does not list).
fn image_user(user: Option<&str>, layers: &[PathBuf]) -> Result<(u32, u32)> {
    let Some(user) = user.filter(|u| !u.is_empty()) else { return Ok((0, 0)) };
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    // The file as the container sees it: from the highest layer that has it.
    let file = |path: &str| layers.iter().map(|l| l.join(path)).find(|p| p.is_file()).and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
    // `name:x:id:…` entries; `field` 0 matches the name, 2 the ID.
    let entry = |text: &str, field: usize, key: &str| -> Option<Vec<String>> {
        text.lines().map(|l| l.split(':').map(String::from).collect::<Vec<_>>()).find(|f| f.len() >= 3 && f[field] == key)
    };
    let passwd = file("etc/passwd");
    let (uid, primary) = match u.parse::<u32>() {
        Ok(uid) => (uid, entry(&passwd, 2, u).and_then(|f| f.get(3)?.parse().ok())),
        Err(_) => {
            let f = entry(&passwd, 0, u).with_context(|| format!("unable to find user {u}: no matching entries in passwd file"))?;
            (f[2].parse().with_context(|| format!("user {u} has no numeric ID"))?, f.get(3).and_then(|g| g.parse().ok()))
        }
    };
    let gid = match g {
        None => primary.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => entry(&file("etc/group"), 0, g).and_then(|f| f[2].parse().ok()).with_context(|| format!("unable to find group {g}: no matching entries in group file"))?,
        },
    };
    Ok((uid, gid))
}

/// CPU shares from requests, CFS quota and the memory limit from limits,
/// as upstream's kubelet maps them (`MilliCPUToShares`, `MilliCPUToQuota`),
/// without overflow on amounts near i64::MAX.
fn resources(container: &Container) -> Result<oci_spec::runtime::LinuxResources> {
    // In milli-units; validation refuses negative amounts, and so does this.
    let get = |map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, key: &str| -> Result<Option<i64>> {
        let Some(q) = map.and_then(|m| m.get(key)) else { return Ok(None) };
        let milli = skiff_quantity::milli(&q.0).with_context(|| format!("{key}: {:?} is not a quantity", q.0))?;
        anyhow::ensure!(milli >= 0, "{key}: {:?} must be greater than or equal to 0", q.0);
        Ok(Some(milli))
    };
    let requests = container.resources.as_ref().and_then(|r| r.requests.as_ref());
    let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
    let cpu_request = get(requests, "cpu")?.or(get(limits, "cpu")?);
    // Upstream's bounds: 2 to 262144 shares.
    let shares = cpu_request.map(|m| (m / 1000).saturating_mul(1024).saturating_add(m % 1000 * 1024 / 1000).clamp(2, 262_144) as u64).unwrap_or(2);
    let mut cpu = LinuxCpuBuilder::default().shares(shares);
    if let Some(limit) = get(limits, "cpu")? {
        cpu = cpu.quota(limit.saturating_mul(100).max(1000)).period(100_000u64);
    }
    let mut builder = LinuxResourcesBuilder::default().cpu(cpu.build()?);
    if let Some(memory) = get(limits, "memory")? {
        // Bytes, rounded up.
        builder = builder.memory(LinuxMemoryBuilder::default().limit(memory / 1000 + i64::from(memory % 1000 != 0)).build()?);
    }
    builder.build().context("container resources")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_users_resolve_in_the_image_s_own_files() {
        let top = tempfile::tempdir().unwrap();
        let bottom = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(bottom.path().join("etc")).unwrap();
        std::fs::write(bottom.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nweb:x:33:44::/:/bin/false\n").unwrap();
        std::fs::write(bottom.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let layers = [top.path().to_path_buf(), bottom.path().to_path_buf()];
        assert_eq!(image_user(None, &layers).unwrap(), (0, 0));
        assert_eq!(image_user(Some("web"), &layers).unwrap(), (33, 44));
        assert_eq!(image_user(Some("web:staff"), &layers).unwrap(), (33, 50));
        assert_eq!(image_user(Some("33"), &layers).unwrap(), (33, 44), "a listed UID takes its primary group");
        assert_eq!(image_user(Some("1000"), &layers).unwrap(), (1000, 0));
        assert_eq!(image_user(Some("1000:7"), &layers).unwrap(), (1000, 7));
        let missing = image_user(Some("nobody"), &layers).unwrap_err().to_string();
        assert_eq!(missing, "unable to find user nobody: no matching entries in passwd file");
        assert!(image_user(Some("web:nogroup"), &layers).is_err());
    }

    #[test]
    fn expansion_follows_upstream() {
        let env = vec![("A".to_string(), "x".to_string())];
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &env), "x-$(B)-$(A)-$");
    }

    #[test]
    fn command_and_args_replace_the_image_s() {
        let image: oci_spec::image::Config = serde_json::from_value(serde_json::json!({"Entrypoint": ["/ep"], "Cmd": ["c"]})).unwrap();
        let mut c = Container { name: "c".into(), ..Default::default() };
        assert_eq!(command_line(&c, &image, &[]), ["/ep", "c"]);
        c.args = Some(vec!["a".into()]);
        assert_eq!(command_line(&c, &image, &[]), ["/ep", "a"]);
        c.command = Some(vec!["/bin/sh".into()]);
        assert_eq!(command_line(&c, &image, &[]), ["/bin/sh", "a"]);
    }
}

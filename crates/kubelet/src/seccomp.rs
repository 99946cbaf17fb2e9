//! `securityContext.seccompProfile` as a runtime's seccomp filter:
//! `Unconfined` (upstream's default when none is set), `RuntimeDefault`,
//! and `Localhost` profiles read from the agent's seccomp directory
//! (upstream's `/var/lib/kubelet/seccomp`), in the OCI (and Docker) JSON
//! form.
//!
//! `RuntimeDefault` refuses, with EPERM, the system calls that Docker's and
//! containerd's default profile refuses to a container without the
//! capability that makes them safe (mount, ptrace, kexec, module loading,
//! clock setting, namespaces, keyrings, BPF, …), and allows the rest. It
//! is that profile written as a deny list, which needs no per-architecture
//! table of every allowed call.

use std::path::Path;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::SeccompProfile;
use oci_spec::runtime::{Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder};

/// Calls refused unless the container holds the capability named.
const GUARDED: &[(Option<Capability>, &[&str])] = &[
    (None, &[
        "add_key", "keyctl", "request_key", "kcmp", "lookup_dcookie", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl",
        "vm86", "vm86old", "create_module", "get_kernel_syms", "query_module", "userfaultfd", "io_uring_setup",
        "io_uring_enter", "io_uring_register", "perf_event_open", "open_by_handle_at",
    ]),
    (Some(Capability::SysAdmin), &[
        "mount", "umount", "umount2", "pivot_root", "setns", "unshare", "name_to_handle_at", "quotactl", "swapon",
        "swapoff", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "bpf", "setdomainname",
        "sethostname", "syslog", "vhangup",
    ]),
    (Some(Capability::SysBoot), &["reboot", "kexec_load", "kexec_file_load"]),
    (Some(Capability::SysModule), &["init_module", "finit_module", "delete_module"]),
    (Some(Capability::SysPtrace), &["ptrace", "process_vm_readv", "process_vm_writev"]),
    (Some(Capability::SysTime), &["settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex"]),
    (Some(Capability::SysPacct), &["acct"]),
    (Some(Capability::SysRawio), &["iopl", "ioperm"]),
    (Some(Capability::SysNice), &["mbind", "set_mempolicy", "get_mempolicy", "move_pages"]),
];

/// The filter for a container: its own profile, else the pod's; none for
/// `Unconfined`, no profile, or a privileged container (as upstream).
pub fn filter(container: Option<&SeccompProfile>, pod: Option<&SeccompProfile>, privileged: bool, capabilities: &[Capability], dir: &Path) -> Result<Option<LinuxSeccomp>> {
    let Some(profile) = container.or(pod) else { return Ok(None) };
    match profile.type_.as_str() {
        "Unconfined" => Ok(None),
        _ if privileged => Ok(None),
        "RuntimeDefault" => Ok(Some(runtime_default(capabilities)?)),
        "Localhost" => {
            let name = profile.localhost_profile.as_deref().filter(|n| !n.is_empty()).context("seccompProfile type Localhost names no localhostProfile")?;
            if Path::new(name).is_absolute() || name.split('/').any(|part| part == "..") {
                bail!("localhostProfile {name:?} must be a path below the seccomp directory");
            }
            let path = dir.join(name);
            let text = std::fs::read(&path).with_context(|| format!("cannot load seccomp profile {:?}", path.display()))?;
            Ok(Some(serde_json::from_slice(&text).with_context(|| format!("seccomp profile {:?}", path.display()))?))
        }
        other => bail!("unknown seccomp profile type {other:?}"),
    }
}

fn runtime_default(capabilities: &[Capability]) -> Result<LinuxSeccomp> {
    let refused: Vec<String> = GUARDED
        .iter()
        .filter(|(capability, _)| capability.is_none_or(|c| !capabilities.contains(&c)))
        .flat_map(|(_, names)| names.iter().map(|n| n.to_string()))
        .collect();
    let eperm = LinuxSyscallBuilder::default().names(refused).action(LinuxSeccompAction::ScmpActErrno).errno_ret(libc::EPERM as u32).build()?;
    Ok(LinuxSeccompBuilder::default().default_action(LinuxSeccompAction::ScmpActAllow).syscalls(vec![eperm]).build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(kind: &str) -> SeccompProfile {
        SeccompProfile { type_: kind.into(), localhost_profile: None }
    }

    #[test]
    fn profiles_follow_the_container_then_the_pod() {
        let dir = Path::new("/nonexistent");
        assert!(filter(None, None, false, &[], dir).unwrap().is_none(), "none set: unconfined, as upstream");
        assert!(filter(Some(&profile("Unconfined")), Some(&profile("RuntimeDefault")), false, &[], dir).unwrap().is_none());
        assert!(filter(None, Some(&profile("RuntimeDefault")), true, &[], dir).unwrap().is_none(), "privileged: unconfined");
        let plain = filter(None, Some(&profile("RuntimeDefault")), false, &[], dir).unwrap().unwrap();
        let names = plain.syscalls().as_ref().unwrap()[0].names().clone();
        assert!(names.contains(&"mount".to_string()) && names.contains(&"ptrace".to_string()) && !names.contains(&"read".to_string()));
        let admin = filter(None, Some(&profile("RuntimeDefault")), false, &[Capability::SysAdmin], dir).unwrap().unwrap();
        let names = admin.syscalls().as_ref().unwrap()[0].names().clone();
        assert!(!names.contains(&"mount".to_string()) && names.contains(&"ptrace".to_string()), "CAP_SYS_ADMIN allows mount");
        let climbing = SeccompProfile { type_: "Localhost".into(), localhost_profile: Some("../etc/shadow".into()) };
        assert!(filter(Some(&climbing), None, false, &[], dir).is_err());
    }
}

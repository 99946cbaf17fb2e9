//! The processes running in a pod, from its cgroup: every process of a
//! pod's containers is in `kubepods/pod<uid>` (the kubelet's layout), on
//! cgroup v1's pids hierarchy or the unified one. Read on each look, so a
//! process is seen if it lives through one (the proc connector would see
//! every exec, but it answers only in the host's first network namespace,
//! and agents run in others).

use std::path::{Path, PathBuf};

/// A process in a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    /// Its name, as `ps` shows it (`/proc/<pid>/comm`).
    pub name: String,
    /// Its executable, as the container sees its own files.
    pub path: String,
}

fn pod_cgroup(uid: &str) -> Option<PathBuf> {
    ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"].iter().map(|root| Path::new(root).join(format!("kubepods/pod{uid}"))).find(|p| p.is_dir())
}

fn pids_below(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            pids_below(&entry.path(), out);
        }
    }
}

/// The pids in the pod's cgroup now.
pub fn pids(uid: &str) -> Vec<i32> {
    let mut out = Vec::new();
    if let Some(dir) = pod_cgroup(uid) {
        pids_below(&dir, &mut out);
    }
    out
}

/// What `pid` is; None once it is gone.
pub fn describe(pid: i32) -> Option<Process> {
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim_end().to_string();
    let path = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?.to_string_lossy().trim_end_matches(" (deleted)").to_string();
    Some(Process { pid, name, path })
}

/// Stops a process Protect does not allow, if its pid still names it.
pub fn kill(process: &Process) {
    // SAFETY: plain syscalls on a pidfd this function owns. The pidfd pins
    // the process it was opened on; killing through it only after the pid
    // is seen to be the same process keeps a reused pid safe.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, process.pid, 0);
        if fd < 0 {
            return;
        }
        if describe(process.pid).as_ref() == Some(process) {
            libc::syscall(libc::SYS_pidfd_send_signal, fd, libc::SIGKILL, std::ptr::null::<libc::siginfo_t>(), 0);
        }
        libc::close(fd as i32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_describes_itself() {
        let me = describe(std::process::id() as i32).unwrap();
        assert!(!me.name.is_empty() && me.path.starts_with('/'), "{me:?}");
        assert!(pids("no-such-pod").is_empty());
    }
}

//! The host side of volumes: running mount tools, what is mounted where,
//! bind mounts, and a mounted filesystem's usage.

use std::path::Path;

use tonic::Status;

use crate::pb::csi;

pub fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// Runs a host tool; its stderr becomes the error.
pub async fn run(program: &str, args: &[&str]) -> Result<String, Status> {
    // A caller that gives up (a mount past its timeout) takes the tool with it.
    let output = tokio::process::Command::new(program).args(args).kill_on_drop(true).output().await.map_err(|e| Status::internal(format!("{program}: {e}")))?;
    if !output.status.success() {
        return Err(Status::internal(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether something is mounted at `path` (its own mount, not the one it is on).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let mounted = mount_points(&info).any(|p| Path::new(&p) == path);
    mounted
}

/// The mount points of a mountinfo table, unescaped (`\040` is a space).
pub fn mount_points(info: &str) -> impl Iterator<Item = String> + '_ {
    info.lines().filter_map(|line| line.split(' ').nth(4)).map(unescape)
}

fn unescape(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            out.push(u8::from_str_radix(&field[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn bind(source: &Path, target: &Path, read_only: bool) -> Result<(), Status> {
    use nix::mount::{mount, MsFlags};
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| Status::internal(format!("bind-mounting {} at {}: {e}", source.display(), target.display())))?;
    if read_only {
        mount(None::<&str>, target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None::<&str>).map_err(|e| Status::internal(format!("making {} read-only: {e}", target.display())))?;
    }
    Ok(())
}

pub fn unmount(path: &Path) -> Result<(), Status> {
    if !is_mounted(path) {
        return Ok(());
    }
    nix::mount::umount2(path, nix::mount::MntFlags::empty()).map_err(|e| Status::internal(format!("unmounting {}: {e}", path.display())))
}

/// statvfs of a mounted volume, as CSI's usage (bytes, then inodes).
pub fn usage(path: &Path) -> Result<Vec<csi::VolumeUsage>, Status> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| Status::not_found(format!("{}: {e}", path.display())))?;
    let block = s.fragment_size() as i64;
    let (total, free, available) = (s.blocks() as i64 * block, s.blocks_free() as i64 * block, s.blocks_available() as i64 * block);
    let (inodes, inodes_free) = (s.files() as i64, s.files_free() as i64);
    Ok(vec![
        csi::VolumeUsage { total, available, used: total - free, unit: csi::volume_usage::Unit::Bytes as i32 },
        csi::VolumeUsage { total: inodes, available: inodes_free, used: inodes - inodes_free, unit: csi::volume_usage::Unit::Inodes as i32 },
    ])
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        let info = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n37 35 98:0 / /data rw - ext4 /dev/x rw\n";
        assert_eq!(mount_points(info).collect::<Vec<_>>(), vec!["/mnt/a b", "/data"]);
    }
}

//! Readings of the host the node status, the eviction signals and the
//! Summary API share.

use std::path::Path;

/// `/proc/meminfo`, read once.
pub(crate) struct MemInfo(String);

impl MemInfo {
    pub fn read() -> MemInfo {
        MemInfo(std::fs::read_to_string("/proc/meminfo").unwrap_or_default())
    }

    /// A field (`MemTotal`, `MemAvailable`) in bytes.
    pub fn bytes(&self, key: &str) -> Option<u64> {
        self.0.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()).map(|kib| kib * 1024)
    }
}

/// The filesystem holding a path.
pub(crate) struct Disk {
    pub available: u64,
    pub total: u64,
    pub inodes_free: u64,
    pub inodes: u64,
}

pub(crate) fn disk(path: &Path) -> Option<Disk> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let block = s.fragment_size() as u64;
    Some(Disk { available: s.blocks_available() as u64 * block, total: s.blocks() as u64 * block, inodes_free: s.files_available() as u64, inodes: s.files() as u64 })
}

#[cfg(test)]
mod tests {
    #[test]
    fn meminfo_fields_are_bytes() {
        let info = super::MemInfo("MemTotal:       24575736 kB\nMemAvailable:    7460904 kB\nHugePages_Total:       0\n".into());
        assert_eq!(info.bytes("MemTotal"), Some(24575736 * 1024));
        assert_eq!(info.bytes("MemAvailable"), Some(7460904 * 1024));
        assert_eq!(info.bytes("Mem"), None, "a field is named whole");
        assert_eq!(info.bytes("HugePages_Total"), None);
    }
}

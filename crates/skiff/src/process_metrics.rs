//! The series every Skiff process serves about itself, under client_golang's
//! names so the usual dashboards read them: `process_*` (CPU, resident and
//! virtual memory, open and allowed descriptors, start time) and
//! `leader_election_master_status{name}` for each Lease this process
//! competes for. Read when scraped; `render` gives the text.

use std::sync::atomic::AtomicI64;
use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabels {
    name: String,
}

static LEADING: LazyLock<Family<LeaseLabels, Gauge<i64, AtomicI64>>> = LazyLock::new(Family::default);

/// Whether this process holds the Lease `name` (as upstream: 1 leading, 0 not).
pub fn leading(name: &str, holds: bool) {
    LEADING.get_or_create(&LeaseLabels { name: name.into() }).set(holds as i64);
}

/// The page, without `# EOF`, to be appended to a component's.
pub fn render() -> String {
    let mut registry = Registry::default();
    // Read fresh: the figures are the kernel's, not counted here.
    if let Ok(me) = procfs::process::Process::myself() {
        let gauge = |value: f64| {
            let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
            g.set(value);
            g
        };
        if let Ok(stat) = me.stat() {
            let ticks = procfs::ticks_per_second() as f64;
            let cpu = prometheus_client::metrics::counter::Counter::<f64, std::sync::atomic::AtomicU64>::default();
            cpu.inc_by((stat.utime + stat.stime) as f64 / ticks);
            // prometheus-client appends `_total` to counters.
            registry.register("process_cpu_seconds", "Total user and system CPU time spent in seconds.", cpu);
            registry.register("process_resident_memory_bytes", "Resident memory size in bytes.", gauge((stat.rss * procfs::page_size()) as f64));
            registry.register("process_virtual_memory_bytes", "Virtual memory size in bytes.", gauge(stat.vsize as f64));
            if let Ok(boot) = procfs::boot_time_secs() {
                registry.register("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", gauge(boot as f64 + stat.starttime as f64 / ticks));
            }
        }
        if let Ok(fds) = me.fd_count() {
            registry.register("process_open_fds", "Number of open file descriptors.", gauge(fds as f64));
        }
        if let Ok(procfs::process::LimitValue::Value(max)) = me.limits().map(|l| l.max_open_files.soft_limit) {
            registry.register("process_max_fds", "Maximum number of open file descriptors.", gauge(max as f64));
        }
    }
    registry.register("leader_election_master_status", "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease.", LEADING.clone());
    let mut out = String::new();
    prometheus_client::encoding::text::encode_registry(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_names_this_process_figures_and_leases() {
        super::leading("kube-scheduler", true);
        let page = super::render();
        for name in ["process_cpu_seconds_total ", "process_resident_memory_bytes ", "process_open_fds ", "process_max_fds ", "process_start_time_seconds ", "leader_election_master_status{name=\"kube-scheduler\"} 1"] {
            assert!(page.contains(name), "{name} missing from:\n{page}");
        }
        let rss: f64 = page.lines().find_map(|l| l.strip_prefix("process_resident_memory_bytes ")).unwrap().parse().unwrap();
        assert!(rss > 1e6, "{rss}");
    }
}

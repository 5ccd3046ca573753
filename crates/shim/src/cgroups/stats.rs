//! Cgroup files → containerd's metrics messages (the fields `ctr task metrics` shows, and the
//! rest that the files give cheaply). A file that is missing (a controller not mounted, a kernel
//! without swap accounting) leaves its fields zero.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use containerd_shim_protos::cgroups::metrics as m1;
use containerd_shim_protos::cgroups_v2::metrics as m2;
use containerd_shim_protos::protobuf::MessageField;

/// `USER_HZ`: the unit of `cpuacct.stat`.
const CLOCK_TICKS: u64 = 100;

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap_or_default()
}

/// A number file (`max` and garbage read as 0, as containerd does for "no limit").
fn num(dir: &Path, file: &str) -> u64 {
    read(dir, file).trim().parse().unwrap_or(0)
}

/// `key value` lines.
fn flat(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k, v.trim().parse().ok()?))
        })
        .collect()
}

/// The value of `key` in a `key value` file's text.
pub fn keyed(text: &str, key: &str) -> u64 {
    flat(text).get(key).copied().unwrap_or(0)
}

/// containerd's `io.containerd.cgroups.v1.Metrics` from v1 controller directories.
pub fn v1(dirs: &HashMap<String, PathBuf>) -> m1::Metrics {
    let mut out = m1::Metrics::new();
    if let Some(d) = dirs.get("pids") {
        out.pids = MessageField::some(m1::PidsStat {
            current: num(d, "pids.current"),
            limit: num(d, "pids.max"),
            ..Default::default()
        });
    }
    let mut cpu = m1::CPUStat::new();
    if let Some(d) = dirs.get("cpuacct") {
        let stat = read(d, "cpuacct.stat");
        let ticks = flat(&stat);
        let ns = |k| ticks.get(k).copied().unwrap_or(0) * (1_000_000_000 / CLOCK_TICKS);
        cpu.usage = MessageField::some(m1::CPUUsage {
            total: num(d, "cpuacct.usage"),
            kernel: ns("system"),
            user: ns("user"),
            per_cpu: read(d, "cpuacct.usage_percpu")
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect(),
            ..Default::default()
        });
    }
    if let Some(d) = dirs.get("cpu") {
        let stat = read(d, "cpu.stat");
        let t = flat(&stat);
        let get = |k| t.get(k).copied().unwrap_or(0);
        cpu.throttling = MessageField::some(m1::Throttle {
            periods: get("nr_periods"),
            throttled_periods: get("nr_throttled"),
            throttled_time: get("throttled_time"),
            ..Default::default()
        });
    }
    if cpu.usage.is_some() || cpu.throttling.is_some() {
        out.cpu = MessageField::some(cpu);
    }
    if let Some(d) = dirs.get("memory") {
        out.memory = MessageField::some(memory_v1(d));
        let oom = read(d, "memory.oom_control");
        let o = flat(&oom);
        let get = |k| o.get(k).copied().unwrap_or(0);
        out.memory_oom_control = MessageField::some(m1::MemoryOomControl {
            oom_kill_disable: get("oom_kill_disable"),
            under_oom: get("under_oom"),
            oom_kill: get("oom_kill"),
            ..Default::default()
        });
    }
    if let Some(d) = dirs.get("blkio") {
        let entries = |file: &str| blkio_entries(&read(d, file));
        let mut b = m1::BlkIOStat::new();
        b.io_service_bytes_recursive = entries("blkio.throttle.io_service_bytes_recursive");
        b.io_serviced_recursive = entries("blkio.throttle.io_serviced_recursive");
        if b.io_service_bytes_recursive.is_empty() {
            b.io_service_bytes_recursive = entries("blkio.io_service_bytes_recursive");
            b.io_serviced_recursive = entries("blkio.io_serviced_recursive");
        }
        b.io_queued_recursive = entries("blkio.io_queued_recursive");
        b.io_service_time_recursive = entries("blkio.io_service_time_recursive");
        b.io_wait_time_recursive = entries("blkio.io_wait_time_recursive");
        b.io_merged_recursive = entries("blkio.io_merged_recursive");
        b.io_time_recursive = entries("blkio.time_recursive");
        b.sectors_recursive = entries("blkio.sectors_recursive");
        out.blkio = MessageField::some(b);
    }
    if let Some(d) = dirs.get("hugetlb") {
        for size in hugepage_sizes(d, "hugetlb.", ".usage_in_bytes") {
            out.hugetlb.push(m1::HugetlbStat {
                usage: num(d, &format!("hugetlb.{size}.usage_in_bytes")),
                max: num(d, &format!("hugetlb.{size}.max_usage_in_bytes")),
                failcnt: num(d, &format!("hugetlb.{size}.failcnt")),
                pagesize: size,
                ..Default::default()
            });
        }
    }
    out
}

fn memory_v1(d: &Path) -> m1::MemoryStat {
    let stat = read(d, "memory.stat");
    let s = flat(&stat);
    let get = |k: &str| s.get(k).copied().unwrap_or(0);
    let entry = |prefix: &str| {
        MessageField::some(m1::MemoryEntry {
            limit: num(d, &format!("{prefix}.limit_in_bytes")),
            usage: num(d, &format!("{prefix}.usage_in_bytes")),
            max: num(d, &format!("{prefix}.max_usage_in_bytes")),
            failcnt: num(d, &format!("{prefix}.failcnt")),
            ..Default::default()
        })
    };
    m1::MemoryStat {
        cache: get("cache"),
        rss: get("rss"),
        rss_huge: get("rss_huge"),
        mapped_file: get("mapped_file"),
        dirty: get("dirty"),
        writeback: get("writeback"),
        pg_pg_in: get("pgpgin"),
        pg_pg_out: get("pgpgout"),
        pg_fault: get("pgfault"),
        pg_maj_fault: get("pgmajfault"),
        inactive_anon: get("inactive_anon"),
        active_anon: get("active_anon"),
        inactive_file: get("inactive_file"),
        active_file: get("active_file"),
        unevictable: get("unevictable"),
        hierarchical_memory_limit: get("hierarchical_memory_limit"),
        hierarchical_swap_limit: get("hierarchical_memsw_limit"),
        total_cache: get("total_cache"),
        total_rss: get("total_rss"),
        total_rss_huge: get("total_rss_huge"),
        total_mapped_file: get("total_mapped_file"),
        total_dirty: get("total_dirty"),
        total_writeback: get("total_writeback"),
        total_pg_pg_in: get("total_pgpgin"),
        total_pg_pg_out: get("total_pgpgout"),
        total_pg_fault: get("total_pgfault"),
        total_pg_maj_fault: get("total_pgmajfault"),
        total_inactive_anon: get("total_inactive_anon"),
        total_active_anon: get("total_active_anon"),
        total_inactive_file: get("total_inactive_file"),
        total_active_file: get("total_active_file"),
        total_unevictable: get("total_unevictable"),
        usage: entry("memory"),
        swap: entry("memory.memsw"),
        kernel: entry("memory.kmem"),
        kernel_tcp: entry("memory.kmem.tcp"),
        ..Default::default()
    }
}

/// `8:0 Read 4096` lines (the `Total` line has no device and is left out, as in containerd).
fn blkio_entries(text: &str) -> Vec<m1::BlkIOEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dev, op, value) = match f.as_slice() {
                [dev, op, value] => (*dev, *op, *value),
                [dev, value] => (*dev, "", *value),
                _ => return None,
            };
            let (major, minor) = dev.split_once(':')?;
            Some(m1::BlkIOEntry {
                op: op.to_string(),
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                value: value.parse().ok()?,
                ..Default::default()
            })
        })
        .collect()
}

/// Page sizes (`2MB`, `1GB`) that have files `<prefix><size><suffix>` in `dir`.
fn hugepage_sizes(dir: &Path, prefix: &str, suffix: &str) -> Vec<String> {
    let mut sizes: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    sizes
}

/// containerd's `io.containerd.cgroups.v2.Metrics` from a unified cgroup directory.
pub fn v2(d: &Path) -> m2::Metrics {
    let mut out = m2::Metrics::new();
    out.pids = MessageField::some(m2::PidsStat {
        current: num(d, "pids.current"),
        limit: num(d, "pids.max"),
        ..Default::default()
    });
    let stat = read(d, "cpu.stat");
    let c = flat(&stat);
    let get = |k: &str| c.get(k).copied().unwrap_or(0);
    out.cpu = MessageField::some(m2::CPUStat {
        usage_usec: get("usage_usec"),
        user_usec: get("user_usec"),
        system_usec: get("system_usec"),
        nr_periods: get("nr_periods"),
        nr_throttled: get("nr_throttled"),
        throttled_usec: get("throttled_usec"),
        ..Default::default()
    });
    let stat = read(d, "memory.stat");
    let s = flat(&stat);
    let get = |k: &str| s.get(k).copied().unwrap_or(0);
    out.memory = MessageField::some(m2::MemoryStat {
        anon: get("anon"),
        file: get("file"),
        kernel_stack: get("kernel_stack"),
        slab: get("slab"),
        sock: get("sock"),
        shmem: get("shmem"),
        file_mapped: get("file_mapped"),
        file_dirty: get("file_dirty"),
        file_writeback: get("file_writeback"),
        anon_thp: get("anon_thp"),
        inactive_anon: get("inactive_anon"),
        active_anon: get("active_anon"),
        inactive_file: get("inactive_file"),
        active_file: get("active_file"),
        unevictable: get("unevictable"),
        slab_reclaimable: get("slab_reclaimable"),
        slab_unreclaimable: get("slab_unreclaimable"),
        pgfault: get("pgfault"),
        pgmajfault: get("pgmajfault"),
        workingset_refault: get("workingset_refault"),
        workingset_activate: get("workingset_activate"),
        workingset_nodereclaim: get("workingset_nodereclaim"),
        pgrefill: get("pgrefill"),
        pgscan: get("pgscan"),
        pgsteal: get("pgsteal"),
        pgactivate: get("pgactivate"),
        pgdeactivate: get("pgdeactivate"),
        pglazyfree: get("pglazyfree"),
        pglazyfreed: get("pglazyfreed"),
        thp_fault_alloc: get("thp_fault_alloc"),
        thp_collapse_alloc: get("thp_collapse_alloc"),
        usage: num(d, "memory.current"),
        usage_limit: num(d, "memory.max"),
        swap_usage: num(d, "memory.swap.current"),
        swap_limit: num(d, "memory.swap.max"),
        max_usage: num(d, "memory.peak"),
        ..Default::default()
    });
    let events = read(d, "memory.events");
    let e = flat(&events);
    let get = |k: &str| e.get(k).copied().unwrap_or(0);
    out.memory_events = MessageField::some(m2::MemoryEvents {
        low: get("low"),
        high: get("high"),
        max: get("max"),
        oom: get("oom"),
        oom_kill: get("oom_kill"),
        oom_group_kill: get("oom_group_kill"),
        ..Default::default()
    });
    // io.stat: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0`
    let usage: Vec<m2::IOEntry> = read(d, "io.stat")
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (major, minor) = f.next()?.split_once(':')?;
            let kv: HashMap<&str, u64> = f
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k, v.parse().ok()?))
                })
                .collect();
            let get = |k: &str| kv.get(k).copied().unwrap_or(0);
            Some(m2::IOEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                rbytes: get("rbytes"),
                wbytes: get("wbytes"),
                rios: get("rios"),
                wios: get("wios"),
                ..Default::default()
            })
        })
        .collect();
    out.io = MessageField::some(m2::IOStat {
        usage,
        ..Default::default()
    });
    for size in hugepage_sizes(d, "hugetlb.", ".current") {
        out.hugetlb.push(m2::HugeTlbStat {
            current: num(d, &format!("hugetlb.{size}.current")),
            max: num(d, &format!("hugetlb.{size}.max")),
            pagesize: size,
            ..Default::default()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(d.path().join(name), text).unwrap();
        }
        d
    }

    #[test]
    fn v1_metrics_from_controller_files() {
        let mem = dir(&[
            ("memory.stat", "cache 4096\nrss 8192\ntotal_cache 4096\n"),
            ("memory.usage_in_bytes", "12288\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            ),
        ]);
        let cpu = dir(&[
            ("cpuacct.usage", "5000000\n"),
            ("cpuacct.usage_percpu", "3000000 2000000 \n"),
            ("cpuacct.stat", "user 3\nsystem 1\n"),
        ]);
        let pids = dir(&[("pids.current", "2\n"), ("pids.max", "max\n")]);
        let blkio = dir(&[(
            "blkio.throttle.io_service_bytes_recursive",
            "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
        )]);
        let dirs: HashMap<String, PathBuf> = [
            ("memory", &mem),
            ("cpuacct", &cpu),
            ("pids", &pids),
            ("blkio", &blkio),
        ]
        .into_iter()
        .map(|(k, d)| (k.to_string(), d.path().to_path_buf()))
        .collect();
        let m = v1(&dirs);
        assert_eq!(m.memory.cache, 4096);
        assert_eq!(m.memory.usage.usage, 12288);
        assert_eq!(m.memory.usage.limit, 9223372036854771712);
        assert_eq!(m.memory_oom_control.oom_kill, 2);
        assert_eq!(m.cpu.usage.total, 5_000_000);
        assert_eq!(m.cpu.usage.per_cpu, vec![3_000_000, 2_000_000]);
        assert_eq!(m.cpu.usage.user, 30_000_000);
        assert_eq!(m.cpu.usage.kernel, 10_000_000);
        assert!(m.cpu.throttling.is_none());
        assert_eq!((m.pids.current, m.pids.limit), (2, 0));
        let rd = &m.blkio.io_service_bytes_recursive;
        assert_eq!(rd.len(), 2);
        assert_eq!(
            (rd[0].major, rd[0].minor, rd[0].op.as_str(), rd[0].value),
            (8, 0, "Read", 4096)
        );
        assert!(m.hugetlb.is_empty());
    }

    #[test]
    fn v2_metrics_from_unified_files() {
        let d = dir(&[
            ("pids.current", "3\n"),
            ("pids.max", "100\n"),
            ("cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\n"),
            ("memory.stat", "anon 4096\nfile 8192\n"),
            ("memory.current", "16384\n"),
            ("memory.max", "max\n"),
            ("memory.events", "low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\n"),
            (
                "io.stat",
                "8:0 rbytes=512 wbytes=1024 rios=1 wios=2 dbytes=0 dios=0\n",
            ),
            ("hugetlb.2MB.current", "0\n"),
            ("hugetlb.2MB.max", "max\n"),
        ]);
        let m = v2(d.path());
        assert_eq!((m.pids.current, m.pids.limit), (3, 100));
        assert_eq!(m.cpu.usage_usec, 10);
        assert_eq!(
            (m.memory.anon, m.memory.usage, m.memory.usage_limit),
            (4096, 16384, 0)
        );
        assert_eq!(m.memory_events.oom_kill, 1);
        assert_eq!(m.io.usage[0].wbytes, 1024);
        assert_eq!(m.hugetlb[0].pagesize, "2MB");
    }
}

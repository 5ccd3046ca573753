//! The safe defaults of a container, as containerd's `oci.WithDefaultSpec` (and nerdctl) give
//! them: which capabilities root keeps, which kernel files are hidden or read-only, what is
//! mounted where, which namespaces are new.

use std::str::FromStr;

use oci_spec::runtime::{
    Capabilities, Capability, LinuxNamespace, LinuxNamespaceType, Mount, PosixRlimit,
    PosixRlimitBuilder, PosixRlimitType,
};

use crate::error::{OciError, Result};

/// The runtime spec version berth writes (what runc 1.1 and containerd 1.6 write).
pub const SPEC_VERSION: &str = "1.0.2-dev";

/// `PATH` when the image sets none (containerd's `defaultUnixEnv`).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The capabilities a container's root keeps by default (containerd's `defaultUnixCaps`, the
/// same as Docker's): enough to own files, switch users, bind low ports and send signals;
/// not `CAP_SYS_ADMIN`, `CAP_NET_ADMIN`, `CAP_SYS_MODULE`, `CAP_SYS_TIME`…
pub const DEFAULT_CAPABILITIES: &[Capability] = &[
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

/// Every capability, for `--cap-add ALL`.
pub const ALL_CAPABILITIES: &[Capability] = &[
    Capability::AuditControl,
    Capability::AuditRead,
    Capability::AuditWrite,
    Capability::BlockSuspend,
    Capability::Bpf,
    Capability::CheckpointRestore,
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::Kill,
    Capability::Lease,
    Capability::LinuxImmutable,
    Capability::MacAdmin,
    Capability::MacOverride,
    Capability::Mknod,
    Capability::NetAdmin,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetRaw,
    Capability::Perfmon,
    Capability::Setgid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysChroot,
    Capability::SysModule,
    Capability::SysNice,
    Capability::SysPacct,
    Capability::SysPtrace,
    Capability::SysRawio,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Syslog,
    Capability::WakeAlarm,
];

/// Kernel files hidden from the container (a `/dev/null` or an empty tmpfs over them): they
/// leak host information or are dangerous to read.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// Kernel files the container may read but not write (they act on the whole host).
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(destination.into());
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source.into()));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// The filesystems every container gets (containerd's `defaultMounts`, plus the cgroup
/// filesystem read-only as nerdctl and Docker mount it).
pub fn default_mounts() -> Vec<Mount> {
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
        mount(
            "/run",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
    ]
}

/// A bind mount of the host's `source` at `destination`, read-only or not.
pub fn bind_mount(source: &str, destination: &str, read_only: bool) -> Mount {
    let rw = if read_only { "ro" } else { "rw" };
    mount(destination, "bind", source, &["rbind", "rprivate", rw])
}

/// The namespaces a container gets its own of: pid, ipc, uts, mount, and network unless it
/// shares the host's; cgroup when asked (private cgroup namespaces are the default on
/// cgroup v2 hosts, as in Docker).
pub fn namespaces(network: bool, cgroup: bool) -> Vec<LinuxNamespace> {
    let mut types = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    if network {
        types.push(LinuxNamespaceType::Network);
    }
    if cgroup {
        types.push(LinuxNamespaceType::Cgroup);
    }
    types
        .into_iter()
        .map(|t| {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(t);
            ns
        })
        .collect()
}

/// `RLIMIT_NOFILE` 1024:1024, as containerd sets it.
pub fn rlimits() -> Vec<PosixRlimit> {
    let r = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(1024u64)
        .soft(1024u64)
        .build()
        .expect("a complete rlimit");
    vec![r]
}

/// A capability name as users write it (`NET_ADMIN`, `CAP_NET_ADMIN`, `net_admin`).
pub fn parse_capability(name: &str) -> Result<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare).map_err(|_| OciError::invalid(format!("capability {name:?}")))
}

fn is_all(name: &str) -> bool {
    name.eq_ignore_ascii_case("all")
}

/// The capabilities after `--cap-add` and `--cap-drop`, as Docker computes them: `ALL` in
/// `add` starts from every capability, `ALL` in `drop` from none; otherwise from the defaults;
/// then `add` is added and `drop` removed (`add` wins over `drop ALL`).
pub fn capabilities(add: &[String], drop: &[String]) -> Result<Capabilities> {
    let parse_all = |names: &[String]| -> Result<Vec<Capability>> {
        names
            .iter()
            .filter(|n| !is_all(n))
            .map(|n| parse_capability(n))
            .collect()
    };
    let adds = parse_all(add)?;
    let drops = parse_all(drop)?;
    let mut caps: Capabilities = if add.iter().any(|n| is_all(n)) {
        ALL_CAPABILITIES.iter().copied().collect()
    } else if drop.iter().any(|n| is_all(n)) {
        return Ok(adds.into_iter().collect());
    } else {
        DEFAULT_CAPABILITIES.iter().copied().collect()
    };
    caps.extend(adds.iter().copied());
    for d in drops {
        if !adds.contains(&d) {
            caps.remove(&d);
        }
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_are_containerds_fourteen() {
        let caps = capabilities(&[], &[]).unwrap();
        assert_eq!(caps.len(), 14);
        assert!(caps.contains(&Capability::NetBindService));
        assert!(!caps.contains(&Capability::SysAdmin));
        assert_eq!(ALL_CAPABILITIES.len(), 41);
    }

    #[test]
    fn add_and_drop_follow_docker() {
        let caps =
            capabilities(&names(&["NET_ADMIN", "cap_sys_time"]), &names(&["chown"])).unwrap();
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(caps.contains(&Capability::SysTime));
        assert!(!caps.contains(&Capability::Chown));
        assert_eq!(caps.len(), 15);
        let caps = capabilities(&names(&["KILL"]), &names(&["ALL"])).unwrap();
        assert_eq!(caps.into_iter().collect::<Vec<_>>(), [Capability::Kill]);
        let caps = capabilities(&names(&["all"]), &names(&["SYS_ADMIN"])).unwrap();
        assert_eq!(caps.len(), 40);
        let e = capabilities(&names(&["FLY"]), &[]).unwrap_err();
        assert_eq!(e.to_string(), "capability \"FLY\": invalid argument");
    }

    #[test]
    fn mounts_are_containerds_plus_cgroup() {
        let m = default_mounts();
        let dests: Vec<String> = m
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/run"
            ]
        );
        let sys = serde_json::to_value(&m[5]).unwrap();
        assert_eq!(sys["type"], "sysfs");
        assert!(sys["options"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("ro")));
        let b = serde_json::to_value(bind_mount("/data", "/mnt", true)).unwrap();
        assert_eq!(
            b,
            serde_json::json!({"destination": "/mnt", "type": "bind", "source": "/data",
                "options": ["rbind", "rprivate", "ro"]})
        );
    }

    #[test]
    fn namespaces_follow_network_and_cgroup_modes() {
        let v = serde_json::to_value(namespaces(true, true)).unwrap();
        let types: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["pid", "ipc", "uts", "mount", "network", "cgroup"]);
        assert_eq!(namespaces(false, false).len(), 4);
    }
}

//! The default seccomp profile: containerd's (and Docker's) `DefaultProfile`, as data.
//!
//! **seccomp** filters a process's system calls in the kernel. The profile is an **allowlist**:
//! a call not listed fails with `EPERM` (the default action, `SCMP_ACT_ERRNO`), which is how a
//! container is kept from `mount`, `reboot`, `kexec_load`, `init_module`, `keyctl`, `bpf` and
//! the like even when running as root. Some calls are allowed only with the **capability** that
//! governs them (with `CAP_SYS_ADMIN`: `mount`, `unshare`, `setns`…); `clone` is allowed without
//! `CAP_SYS_ADMIN` only when it creates no namespace (an argument filter on its flags), and
//! `clone3`, whose flags cannot be filtered, then fails with `ENOSYS` so that libc falls back to
//! `clone`. The profile covers the host's architecture and its compat modes (x86_64 with x86 and
//! x32).
//!
//! The table follows containerd 1.7's `contrib/seccomp` (with `ptrace` allowed unconditionally:
//! it is safe on kernels since 4.8, older than any berth runs on).

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg,
    LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall,
};

/// Calls every container may make.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "capget", "capset",
    "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres",
    "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat",
    "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old",
    "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
    "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64",
    "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown",
    "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock",
    "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs",
    "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_time64", "futex_waitv",
    "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32",
    "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer",
    "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom",
    "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list",
    "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area", "gettid",
    "gettimeofday", "getuid", "getuid32", "getxattr", "inotify_add_watch", "inotify_init",
    "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy", "io_getevents",
    "io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set", "io_setup",
    "io_submit", "io_uring_enter", "io_uring_register", "io_uring_setup", "ipc", "kill",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
    "lchown32", "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "_llseek",
    "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise", "membarrier",
    "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock",
    "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr", "mq_notify", "mq_open",
    "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64",
    "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock",
    "munlockall", "munmap", "nanosleep", "newfstatat", "_newselect", "open", "openat",
    "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "poll", "ppoll",
    "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease",
    "pselect6", "pselect6_time64", "ptrace", "pwrite64", "pwritev", "pwritev2", "read",
    "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg",
    "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename", "renameat",
    "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity",
    "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select",
    "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile",
    "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid",
    "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid",
    "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
    "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid",
    "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr",
    "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4",
    "sigprocmask", "sigreturn", "socket", "socketcall", "socketpair", "splice", "stat",
    "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range",
    "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete",
    "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
    "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask",
    "uname", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vfork",
    "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
];

/// The `personality(2)` personas allowed (argument 0 equal to one of these): `PER_LINUX`,
/// `PER_LINUX32`, `UNAME26`, `UNAME26 | PER_LINUX32`, and the query `0xffffffff`.
const PERSONAS: &[u64] = &[0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// Calls allowed only with a capability (in the bounding set).
#[rustfmt::skip]
const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (
        Capability::SysAdmin,
        &[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
            "lookup_dcookie", "mount", "mount_setattr", "move_mount", "name_to_handle_at",
            "open_tree", "perf_event_open", "quotactl", "quotactl_fd", "setdomainname",
            "sethostname", "setns", "syslog", "umount", "umount2", "unshare",
        ],
    ),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (
        Capability::SysModule,
        &["delete_module", "init_module", "finit_module"],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (
        Capability::SysTime,
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// The namespace flags of `clone(2)` (`CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC |
/// CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP`): without `CAP_SYS_ADMIN`,
/// `clone` is allowed only when none of them is set.
const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000 | 0x0200_0000;

/// `ENOSYS`, what `clone3` returns without `CAP_SYS_ADMIN`.
const ENOSYS: u32 = 38;

/// The seccomp architectures of `arch` (Rust's `std::env::consts::ARCH` names): the native one
/// and those its compat modes run.
pub fn architectures(arch: &str) -> Vec<Arch> {
    match arch {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "aarch64" => vec![Arch::ScmpArchArm, Arch::ScmpArchAarch64],
        "x86" => vec![Arch::ScmpArchX86],
        "arm" => vec![Arch::ScmpArchArm],
        "s390x" => vec![Arch::ScmpArchS390, Arch::ScmpArchS390x],
        "powerpc64" => vec![Arch::ScmpArchPpc64le],
        _ => Vec::new(),
    }
}

/// The calls only `arch` has that the profile allows.
fn arch_syscalls(arch: &str) -> &'static [&'static str] {
    match arch {
        "x86_64" => &["arch_prctl", "modify_ldt"],
        "x86" => &["modify_ldt"],
        "arm" | "aarch64" => &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
        "powerpc64" => &["sync_file_range2", "swapcontext"],
        "s390x" => &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
        "riscv64" => &["riscv_flush_icache"],
        _ => &[],
    }
}

fn allow(names: &[&str], args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(LinuxSeccompAction::ScmpActAllow);
    if !args.is_empty() {
        s.set_args(Some(args));
    }
    s
}

fn arg(index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    let mut b = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    if op == LinuxSeccompOperator::ScmpCmpMaskedEq {
        b = b.value_two(0u64);
    }
    b.build().expect("a complete seccomp argument")
}

/// The default profile for a process whose bounding set is `caps`, on the host's architecture.
pub fn default_profile(caps: &Capabilities) -> LinuxSeccomp {
    profile_for(caps, std::env::consts::ARCH)
}

/// The default profile for `caps` on `arch` (a `std::env::consts::ARCH` name).
pub fn profile_for(caps: &Capabilities, arch: &str) -> LinuxSeccomp {
    let mut syscalls = vec![allow(ALLOWED, Vec::new())];
    for persona in PERSONAS {
        syscalls.push(allow(
            &["personality"],
            vec![arg(0, *persona, LinuxSeccompOperator::ScmpCmpEq)],
        ));
    }
    let extra = arch_syscalls(arch);
    if !extra.is_empty() {
        syscalls.push(allow(extra, Vec::new()));
    }
    for (cap, names) in BY_CAPABILITY {
        if caps.contains(cap) {
            syscalls.push(allow(names, Vec::new()));
        }
    }
    if !caps.contains(&Capability::SysAdmin) {
        // On s390 the flags are clone's second argument.
        let index = if arch == "s390x" { 1 } else { 0 };
        syscalls.push(allow(
            &["clone"],
            vec![arg(
                index,
                CLONE_NAMESPACE_FLAGS,
                LinuxSeccompOperator::ScmpCmpMaskedEq,
            )],
        ));
        let mut clone3 = LinuxSyscall::default();
        clone3.set_names(vec!["clone3".to_string()]);
        clone3.set_action(LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(ENOSYS));
        syscalls.push(clone3);
    }
    let mut s = LinuxSeccomp::default();
    s.set_default_action(LinuxSeccompAction::ScmpActErrno);
    s.set_architectures(Some(architectures(arch)));
    s.set_syscalls(Some(syscalls));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn allowed(p: &LinuxSeccomp, name: &str) -> bool {
        p.syscalls().as_ref().unwrap().iter().any(|s| {
            s.action() == LinuxSeccompAction::ScmpActAllow
                && s.args().is_none()
                && s.names().iter().any(|n| n == name)
        })
    }

    #[test]
    fn the_allowlist_has_no_duplicates_and_no_dangerous_calls() {
        let set: HashSet<&str> = ALLOWED.iter().copied().collect();
        assert_eq!(set.len(), ALLOWED.len());
        for bad in [
            "mount",
            "umount2",
            "reboot",
            "kexec_load",
            "init_module",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "bpf",
            "clone",
            "clone3",
            "chroot",
            "swapon",
            "pivot_root",
        ] {
            assert!(!set.contains(bad), "{bad} must not be allowed by default");
        }
    }

    #[test]
    fn default_action_is_errno_and_arches_cover_compat_modes() {
        let p = profile_for(&HashSet::new(), "x86_64");
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(
            v["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        assert!(allowed(&p, "arch_prctl"));
        let arm = profile_for(&HashSet::new(), "aarch64");
        assert!(allowed(&arm, "set_tls"));
        assert!(!allowed(&arm, "arch_prctl"));
    }

    #[test]
    fn clone_is_filtered_without_sys_admin_and_clone3_gets_enosys() {
        let p = profile_for(&HashSet::from([Capability::Chown]), "x86_64");
        let v = serde_json::to_value(&p).unwrap();
        let calls = v["syscalls"].as_array().unwrap();
        let clone = calls
            .iter()
            .find(|s| s["names"] == serde_json::json!(["clone"]))
            .unwrap();
        assert_eq!(clone["action"], "SCMP_ACT_ALLOW");
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone["args"][0]["value"], 0x7e02_0000u64);
        assert_eq!(clone["args"][0]["valueTwo"], 0);
        let clone3 = calls
            .iter()
            .find(|s| s["names"] == serde_json::json!(["clone3"]))
            .unwrap();
        assert_eq!(clone3["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3["errnoRet"], 38);
        assert!(!allowed(&p, "mount"));
        let personas = calls
            .iter()
            .filter(|s| s["names"] == serde_json::json!(["personality"]))
            .count();
        assert_eq!(personas, 5);
    }

    #[test]
    fn capabilities_open_their_calls() {
        let caps = HashSet::from([Capability::SysAdmin, Capability::SysPtrace]);
        let p = profile_for(&caps, "x86_64");
        for call in ["mount", "unshare", "clone", "clone3", "process_vm_readv"] {
            assert!(allowed(&p, call), "{call}");
        }
        let v = serde_json::to_value(&p).unwrap();
        assert!(
            !v["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["action"] == "SCMP_ACT_ERRNO"),
            "no clone3 errno rule with CAP_SYS_ADMIN"
        );
        let p = profile_for(&HashSet::from([Capability::SysChroot]), "x86_64");
        assert!(allowed(&p, "chroot"));
        assert!(!allowed(&p, "reboot"));
    }
}

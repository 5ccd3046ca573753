//! berth-oci: the OCI runtime spec of a container, made from its image and the options of `run`.
//!
//! Vocabulary (the OCI runtime spec's and containerd's):
//! - the **runtime spec** (`config.json` in a bundle) tells an OCI runtime (runc, crun) how to
//!   run a container: the **process** (arguments, environment, working directory, user,
//!   capabilities, rlimits, terminal), the **root** filesystem (the bundle's `rootfs`, maybe
//!   read-only), **mounts**, and for Linux the **namespaces** to create, the **cgroup** path
//!   and **resources** (memory, CPU, pids limits), **masked** and **read-only paths** and a
//!   **seccomp** profile. containerd stores it in the container record as an `Any` of type
//!   [`SPEC_TYPE_URL`], JSON-encoded; an exec's process travels as [`PROCESS_TYPE_URL`];
//! - the **image config** gives the defaults ([`ImageDefaults`]): entrypoint and cmd,
//!   environment, working directory, user. A user given by name is looked up in the image's own
//!   `/etc/passwd` and `/etc/group` ([`UserDb`]), read from the mounted root filesystem;
//! - the **safe defaults** ([`defaults`]) are containerd's `oci.WithDefaultSpec`: 14
//!   capabilities, `no_new_privileges`, masked `/proc` files, the default mounts, new
//!   pid/ipc/uts/mount/network namespaces, `RLIMIT_NOFILE` 1024, and Docker's default
//!   [`seccomp`] allowlist.
//!
//! [`generate`] puts them together with the [`RunOptions`]. The spec types are the `oci-spec`
//! crate's (`oci_spec::runtime`), re-exported as [`runtime`]. Nothing here needs root or a
//! daemon: the only I/O is reading an image's user database ([`UserDb::read`]), writing the
//! per-container `/etc` files ([`write_etc_files`]) and reading `oom_score_adj`.

pub mod defaults;
mod error;
mod etc;
mod image;
mod options;
pub mod seccomp;
mod spec;
mod user;

pub use error::{OciError, Result};
pub use etc::{hosts_for, write_etc_files, EtcFiles};
pub use image::ImageDefaults;
pub use oci_spec::runtime;
pub use options::{
    parse_cpus, parse_memory, parse_size, BindMount, NetworkMode, Resources, CPU_PERIOD, MIN_MEMORY,
};
pub use spec::{exec_process, generate, merge_env, RunOptions};
pub use user::{needs_lookup, GroupEntry, PasswdEntry, ResolvedUser, UserDb};

use oci_spec::runtime::{Process, Spec};

/// The type URL of a runtime spec in a container record (containerd's, for JSON specs).
pub const SPEC_TYPE_URL: &str = berth_core::type_urls::RUNTIME_SPEC;
/// The type URL of an exec's process spec.
pub const PROCESS_TYPE_URL: &str = berth_core::type_urls::PROCESS_SPEC;

/// The JSON of `spec`, as a container record carries it.
pub fn spec_to_json(spec: &Spec) -> Vec<u8> {
    serde_json::to_vec(spec).expect("a runtime spec always serializes")
}

/// A runtime spec from its JSON.
pub fn spec_from_json(data: &[u8]) -> Result<Spec> {
    serde_json::from_slice(data).map_err(|source| OciError::Json {
        what: "runtime spec",
        source,
    })
}

/// The JSON of an exec's `process`.
pub fn process_to_json(process: &Process) -> Vec<u8> {
    serde_json::to_vec(process).expect("a process spec always serializes")
}

/// containerd's `restrictOOMScoreAdj`: the `oom_score_adj` a container may ask for is no lower
/// than `current`, the score of the process it starts under (berthd's, which the shims
/// inherit). Lowering a score below one's own needs `CAP_SYS_RESOURCE`, which root may not have
/// (in a user namespace or a restricted VM), and runc would then fail to start the container.
pub fn restrict_oom_score_adj(preferred: i32, current: i32) -> i32 {
    preferred.max(current)
}

/// The `oom_score_adj` of process `pid` (`None`: this process), from `/proc`.
pub fn read_oom_score_adj(pid: Option<u32>) -> Result<i32> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/oom_score_adj"),
        None => "/proc/self/oom_score_adj".to_string(),
    };
    let text = std::fs::read_to_string(&path).map_err(OciError::io(&path))?;
    text.trim()
        .parse()
        .map_err(|_| OciError::invalid(format!("{path}: {:?}", text.trim())))
}

#[cfg(test)]
mod tests;

//! The type URLs of the `Any` messages containerd puts on the wire (runtime options, specs,
//! metrics), defined once: the daemon, the shim and the clients must spell them the same.

/// A runtime spec in a container record (JSON; containerd's `typeurl` registration).
pub const RUNTIME_SPEC: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// An exec's process spec (JSON).
pub const PROCESS_SPEC: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// runc's options (`containerd.runc.v1.Options`) in a container's runtime options.
pub const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
/// containerd's cgroup v1 metrics, as a shim reports them.
pub const CGROUPS_V1_METRICS: &str = "io.containerd.cgroups.v1.Metrics";
/// containerd's cgroup v2 metrics, as a shim reports them.
pub const CGROUPS_V2_METRICS: &str = "io.containerd.cgroups.v2.Metrics";

//! berth-shim: `containerd-shim-berth-v2`, a **runtime v2 shim**.
//!
//! A shim is the small process that stays beside one running container: the daemon (containerd,
//! or berthd later) starts it with the `start` command, then drives the container through it
//! over **ttrpc** (containerd's lightweight gRPC: protobuf messages on a unix socket, no HTTP/2),
//! speaking the **task API v2** (`containerd.task.v2.Task`: Create, Start, Exec, Kill, Wait,
//! Delete, …). The shim in turn runs an **OCI runtime** binary (runc, or crun) for each operation,
//! keeps the container's stdio flowing, is the **sub-reaper** that collects the exit status of the
//! container's processes, and sends **task events** (`/tasks/exit`, `/tasks/oom`, …) back to the
//! daemon. Because the shim, not the daemon, is the container's parent, the daemon can restart
//! without disturbing running containers; it finds the shim again through the `address` file in
//! the task's bundle.
//!
//! The contract with the daemon is in [`contract`]; the task service in [`service`] over the
//! process table in [`process`]; the runtime binary in [`runtime`]; stdio (FIFOs, files, logging
//! binaries, terminals) in [`stdio`]; exits in [`reaper`]; events in [`events`]; cgroup
//! statistics and OOM notification in [`cgroups`].
//!
//! ## Why not the `containerd-shim` crate
//!
//! The shim is written on `containerd-shim-protos` and `ttrpc` (0.11 / 0.9: task API v2, which
//! containerd 1.6 and 1.7 speak; 0.12 speaks v3 only) rather than on the `containerd-shim` crate
//! of the same family. That crate's `start`/`delete` plumbing and publisher are a few hundred
//! lines here, while it brings `nix`, `oci-spec`, `cgroups-rs`, `signal-hook`, `which`, `time`
//! and a logger of its own into a process that runs once per container; and its reaper and
//! process monitor would still leave the runc handling, stdio and exit bookkeeping to write. Doing
//! the contract directly keeps the shim to one dependency family plus `rustix`, with no `unsafe`
//! (placing a logging binary's fds at 3, 4, 5 goes through a re-exec of this binary instead of a
//! `pre_exec` hook), and its idle memory small.

pub mod args;
pub mod cgroups;
pub mod contract;
pub mod error;
pub mod events;
pub mod logger;
pub mod process;
pub mod reaper;
pub mod runtime;
pub mod service;
pub mod stdio;

pub use error::{Result, ShimError};

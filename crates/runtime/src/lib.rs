//! berth-runtime: containerd's runtime v2, the daemon side. Tasks run in shims.
//!
//! A **task** is a container's running state: its init process and any processes **exec**'d
//! into it. berthd never runs a container itself (it never execs runc): each task has its own
//! **shim**, a small long-running process that owns the container's processes (it is their
//! parent, reaps them, keeps their stdio and exit status) and serves containerd's task API over
//! **ttrpc** (protobuf RPC on a unix socket, lighter than gRPC). Shims outlive the daemon, so a
//! restarted berthd finds its tasks still running and reconnects.
//!
//! - [`binary`]: which shim binary a runtime name means (`io.containerd.runc.v2` →
//!   `containerd-shim-runc-v2`), and the binary's `start` and `delete` subcommands;
//! - [`bundle`]: the task's directory (`config.json`, `rootfs/`, the shim's `address`), the only
//!   record of a task;
//! - [`ShimTask`]: a connected shim, with the task API (start, state, kill, exec, pause, …);
//! - [`TaskManager`]: every task, created, found again after a restart, cleaned up after a dead
//!   shim;
//! - [`ShimEventsServer`]: the daemon's ttrpc socket where shims forward their events.
//!
//! The root filesystem reaches the shim as mounts in the create request: the shim mounts them,
//! berthd does not.

pub mod binary;
pub mod bundle;
mod error;
mod events;
mod manager;
mod shim;
mod types;
mod watch;

pub use bundle::Bundle;
pub use error::RuntimeError;
pub use events::{events_service, ShimEventsServer};
pub use manager::{LoadReport, RuntimeConfig, TaskManager};
pub use shim::{ShimTask, STATE_TIMEOUT};
pub use types::{CreateOpts, Event, Publisher};

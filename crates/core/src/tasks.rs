//! Tasks: a container's processes, running.
//!
//! A **task** is the running side of a container (a container record is only what to run): its
//! **init process**, named by the container id (an empty exec id in every call), and any
//! processes **exec**'d into it, each named by an **exec id** the client chooses. A task is made
//! from a container record and a root filesystem (mounts), then started; a shim owns its
//! processes. Each process has **stdio**: FIFO paths the client created, log URIs
//! (`file:///path`, `binary:///path`), or, with `terminal`, a pty the shim allocates. When a
//! process ends its **exit** status (the code, or 128 + the signal) is kept until the process is
//! deleted; the task is deleted after its init process exited.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::SystemTime;

use crate::containers::Any;
use crate::error::Result;
use crate::mount::Mount;

/// What a process is doing (containerd's `task.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Unknown,
    /// Created, not started.
    Created,
    Running,
    /// Exited; its exit status is kept until the task (or exec) is deleted.
    Stopped,
    /// Frozen by `pause`.
    Paused,
    Pausing,
}

impl Status {
    /// containerd's name, as `ctr task ls` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "UNKNOWN",
            Status::Created => "CREATED",
            Status::Running => "RUNNING",
            Status::Stopped => "STOPPED",
            Status::Paused => "PAUSED",
            Status::Pausing => "PAUSING",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a process's standard streams go: FIFO paths or log URIs (empty: none), and whether it
/// gets a terminal (then stdout carries both streams).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// A process of a task, as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStatus {
    pub container_id: String,
    /// The exec id, or the container id for the init process.
    pub id: String,
    pub pid: u32,
    pub status: Status,
    pub stdio: Stdio,
    /// Meaningful once stopped.
    pub exit_status: u32,
    pub exited_at: Option<SystemTime>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub pid: u32,
    /// The exit code, or 128 + the signal that killed it.
    pub code: u32,
    pub exited_at: SystemTime,
}

/// A process in a task's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidInfo {
    /// The host pid.
    pub pid: u32,
    /// The exec id, for processes the runtime knows as execs.
    pub exec_id: Option<String>,
    /// The runtime's opaque details of the process (for runc, `containerd.runc.v1.ProcessDetails`).
    pub info: Option<Any>,
}

/// One task's metrics: cgroup statistics as an `Any` (`io.containerd.cgroups.v1.Metrics` or
/// `io.containerd.cgroups.v2.Metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// The container id.
    pub id: String,
    pub timestamp: SystemTime,
    pub data: Option<Any>,
}

/// What creating a task needs besides the container record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateTask {
    pub container_id: String,
    /// The root filesystem as mounts; empty: the container's snapshot's mounts.
    pub rootfs: Vec<Mount>,
    pub stdio: Stdio,
    /// Runtime options for this task (none: the container's).
    pub options: Option<Any>,
    /// A shim binary to use instead of the container's runtime (empty: the container's).
    pub runtime_path: String,
}

/// Runs tasks, per namespace; every call names the container (and, for a process, the exec id:
/// empty for the init process).
pub trait Tasks: Send + Sync {
    /// Create the task of a container (not started); returns the init process's pid.
    fn create(&self, ns: &str, req: CreateTask) -> impl Future<Output = Result<u32>> + Send;
    /// Start the init process (`exec_id` empty) or an exec; returns its pid.
    fn start(&self, ns: &str, id: &str, exec_id: &str) -> impl Future<Output = Result<u32>> + Send;
    /// Delete the task of container `id` (its init process must have exited); returns how it
    /// exited.
    fn delete(&self, ns: &str, id: &str) -> impl Future<Output = Result<ExitStatus>> + Send;
    /// Delete the exited exec `exec_id`; returns how it exited.
    fn delete_process(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
    ) -> impl Future<Output = Result<ExitStatus>> + Send;
    /// The state of the init process (`exec_id` empty) or an exec.
    fn get(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
    ) -> impl Future<Output = Result<ProcessStatus>> + Send;
    /// The init processes of every task in `ns`.
    fn list(&self, ns: &str) -> impl Future<Output = Result<Vec<ProcessStatus>>> + Send;
    /// Send `signal` to the init process (`exec_id` empty) or an exec; with `all`, to every
    /// process of the task.
    fn kill(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Add the exec `exec_id` running `process` (an OCI process spec, as an `Any`) with
    /// `stdio`; start it with [`Tasks::start`].
    fn exec(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        stdio: &Stdio,
        process: Any,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Resize the terminal of a process.
    fn resize_pty(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Close a process's stdin (it reads end-of-file).
    fn close_stdin(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Freeze every process of the task.
    fn pause(&self, ns: &str, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// Thaw a paused task.
    fn resume(&self, ns: &str, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// The processes in the task's cgroup.
    fn pids(&self, ns: &str, id: &str) -> impl Future<Output = Result<Vec<PidInfo>>> + Send;
    /// Change the task's resources (an `Any` of the runtime's resources type) and annotations.
    fn update(
        &self,
        ns: &str,
        id: &str,
        resources: Option<Any>,
        annotations: BTreeMap<String, String>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Metrics of the tasks of `ns` matching `filters` (`id==<container>`; empty: all).
    fn metrics(
        &self,
        ns: &str,
        filters: &[String],
    ) -> impl Future<Output = Result<Vec<Metric>>> + Send;
    /// Wait for the init process (`exec_id` empty) or an exec to exit; returns at once if it
    /// already has.
    fn wait(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
    ) -> impl Future<Output = Result<ExitStatus>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_like_ctr() {
        assert_eq!(Status::Running.to_string(), "RUNNING");
        assert_eq!(Status::Pausing.as_str(), "PAUSING");
    }
}

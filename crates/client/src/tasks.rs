//! Tasks over containerd's Tasks service: running a container's processes.
//!
//! A **task** is the running side of a container: its **init process** (named by the container
//! id; `exec_id` empty) and any processes **exec**'d into it (named by an exec id). Each
//! process's stdio is named by the client, as FIFO paths or log URIs (`file:///path`,
//! `binary:///path`), or, with `terminal`, a pty that the shim allocates.

use std::fmt;
use std::time::SystemTime;

use berth_core::containers::Any;
use berth_core::snapshots::Mount;
use berth_core::{Error, Result};
use containerd_client::services::v1::{
    tasks_client::TasksClient, CloseIoRequest, CreateTaskRequest, DeleteProcessRequest,
    DeleteTaskRequest, ExecProcessRequest, GetRequest, KillRequest, ListPidsRequest,
    ListTasksRequest, MetricsRequest, PauseTaskRequest, ResizePtyRequest, ResumeTaskRequest,
    StartRequest, WaitRequest,
};
use containerd_client::types::v1::{Process as PbProcess, Status as PbStatus};
use tonic::transport::Channel;

use crate::containers::{any_from_pb, any_to_pb};
use crate::{request, status_to_error, to_time};

/// The status of a task's process (containerd's `task.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
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

impl TaskStatus {
    fn from_pb(v: i32) -> TaskStatus {
        match PbStatus::try_from(v).unwrap_or(PbStatus::Unknown) {
            PbStatus::Unknown => TaskStatus::Unknown,
            PbStatus::Created => TaskStatus::Created,
            PbStatus::Running => TaskStatus::Running,
            PbStatus::Stopped => TaskStatus::Stopped,
            PbStatus::Paused => TaskStatus::Paused,
            PbStatus::Pausing => TaskStatus::Pausing,
        }
    }
}

/// `RUNNING`, `STOPPED`…: what `ctr task ls` prints.
impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskStatus::Unknown => "UNKNOWN",
            TaskStatus::Created => "CREATED",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Stopped => "STOPPED",
            TaskStatus::Paused => "PAUSED",
            TaskStatus::Pausing => "PAUSING",
        })
    }
}

/// Where a process's stdio goes: FIFO paths or log URIs, empty for none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskIo {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// A process of a task, as the service reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStatus {
    pub container_id: String,
    /// The exec id, or the container id for the init process.
    pub id: String,
    pub pid: u32,
    pub status: TaskStatus,
    pub io: TaskIo,
    /// Meaningful once stopped.
    pub exit_status: u32,
    pub exited_at: Option<SystemTime>,
}

fn process_from_pb(p: PbProcess) -> ProcessStatus {
    ProcessStatus {
        container_id: p.container_id,
        id: p.id,
        pid: p.pid,
        status: TaskStatus::from_pb(p.status),
        io: TaskIo {
            stdin: p.stdin,
            stdout: p.stdout,
            stderr: p.stderr,
            terminal: p.terminal,
        },
        exit_status: p.exit_status,
        exited_at: p.exited_at.map(|t| to_time(Some(t))),
    }
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
pub struct TaskPid {
    pub pid: u32,
    /// The exec id, for processes the runtime knows as execs.
    pub exec_id: Option<String>,
}

/// One task's metrics: cgroup statistics as an `Any` (`io.containerd.cgroups.v1.Metrics` or
/// `io.containerd.cgroups.v2.Metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMetric {
    pub id: String,
    pub timestamp: SystemTime,
    pub data: Option<Any>,
}

/// containerd's `containerd.runc.v1.ProcessDetails`, the info of a pid that is an exec.
#[derive(Clone, PartialEq, prost::Message)]
struct ProcessDetails {
    #[prost(string, tag = "1")]
    exec_id: String,
}

fn exec_id_of(info: Option<prost_types::Any>) -> Option<String> {
    let info = info?;
    if !info.type_url.ends_with("ProcessDetails") {
        return None;
    }
    <ProcessDetails as prost::Message>::decode(info.value.as_slice())
        .ok()
        .map(|d| d.exec_id)
        .filter(|id| !id.is_empty())
}

/// The Tasks service of berthd or containerd. Every call names the namespace and container.
///
/// Cloning is cheap: clones share the channel.
#[derive(Debug, Clone)]
pub struct RemoteTasks {
    channel: Channel,
}

impl RemoteTasks {
    /// A tasks client speaking over `channel` (see [`crate::connect`]).
    pub fn new(channel: Channel) -> Self {
        RemoteTasks { channel }
    }

    fn client(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone()).max_decoding_message_size(crate::MAX_MESSAGE_SIZE)
    }

    /// Create the task of container `id` (not started) on the root filesystem `rootfs` with
    /// stdio `io` and runtime `options` (none: the container's); returns the init process's
    /// pid.
    pub async fn create(
        &self,
        ns: &str,
        id: &str,
        rootfs: Vec<Mount>,
        io: &TaskIo,
        options: Option<Any>,
    ) -> Result<u32> {
        let req = CreateTaskRequest {
            container_id: id.to_string(),
            rootfs: berth_api::convert::mounts_msg(rootfs),
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            terminal: io.terminal,
            checkpoint: None,
            options: options.map(any_to_pb),
            runtime_path: String::new(),
        };
        let resp = self
            .client()
            .create(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(resp.into_inner().pid)
    }

    /// Start the init process (`exec_id` empty) or an exec; returns its pid.
    pub async fn start(&self, ns: &str, id: &str, exec_id: &str) -> Result<u32> {
        let req = StartRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
        };
        let resp = self
            .client()
            .start(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(resp.into_inner().pid)
    }

    /// Delete the task of container `id` (its init process must have exited); returns how it
    /// exited.
    pub async fn delete(&self, ns: &str, id: &str) -> Result<ExitStatus> {
        let req = DeleteTaskRequest {
            container_id: id.to_string(),
        };
        let r = self
            .client()
            .delete(request(req, ns, None))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(ExitStatus {
            pid: r.pid,
            code: r.exit_status,
            exited_at: to_time(r.exited_at),
        })
    }

    /// Delete the exited exec `exec_id`; returns how it exited.
    pub async fn delete_process(&self, ns: &str, id: &str, exec_id: &str) -> Result<ExitStatus> {
        let req = DeleteProcessRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
        };
        let r = self
            .client()
            .delete_process(request(req, ns, None))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(ExitStatus {
            pid: r.pid,
            code: r.exit_status,
            exited_at: to_time(r.exited_at),
        })
    }

    /// The state of the init process (`exec_id` empty) or an exec.
    pub async fn get(&self, ns: &str, id: &str, exec_id: &str) -> Result<ProcessStatus> {
        let req = GetRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
        };
        let resp = self
            .client()
            .get(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        resp.into_inner()
            .process
            .map(process_from_pb)
            .ok_or_else(|| Error::internal("server response lacks process"))
    }

    /// The init processes of every task in `ns`.
    pub async fn list(&self, ns: &str) -> Result<Vec<ProcessStatus>> {
        let req = ListTasksRequest {
            filter: String::new(),
        };
        let resp = self
            .client()
            .list(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(resp
            .into_inner()
            .tasks
            .into_iter()
            .map(process_from_pb)
            .collect())
    }

    /// Send `signal` to the init process (`exec_id` empty) or an exec; with `all`, to every
    /// process of the task.
    pub async fn kill(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<()> {
        let req = KillRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            signal,
            all,
        };
        self.client()
            .kill(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    /// Add the exec `exec_id` running `process` (an OCI process spec, as an `Any`) with stdio
    /// `io`; start it with [`RemoteTasks::start`].
    pub async fn exec(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        io: &TaskIo,
        process: Any,
    ) -> Result<()> {
        let req = ExecProcessRequest {
            container_id: id.to_string(),
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            terminal: io.terminal,
            spec: Some(any_to_pb(process)),
            exec_id: exec_id.to_string(),
        };
        self.client()
            .exec(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    /// Resize the terminal of a process.
    pub async fn resize_pty(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<()> {
        let req = ResizePtyRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            width,
            height,
        };
        self.client()
            .resize_pty(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    /// Close a process's stdin (it reads end-of-file).
    pub async fn close_stdin(&self, ns: &str, id: &str, exec_id: &str) -> Result<()> {
        let req = CloseIoRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            stdin: true,
        };
        self.client()
            .close_io(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    /// Freeze every process of the task.
    pub async fn pause(&self, ns: &str, id: &str) -> Result<()> {
        let req = PauseTaskRequest {
            container_id: id.to_string(),
        };
        self.client()
            .pause(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    /// Thaw a paused task.
    pub async fn resume(&self, ns: &str, id: &str) -> Result<()> {
        let req = ResumeTaskRequest {
            container_id: id.to_string(),
        };
        self.client()
            .resume(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    /// The processes in the task's cgroup (host pids).
    pub async fn pids(&self, ns: &str, id: &str) -> Result<Vec<TaskPid>> {
        let req = ListPidsRequest {
            container_id: id.to_string(),
        };
        let resp = self
            .client()
            .list_pids(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(resp
            .into_inner()
            .processes
            .into_iter()
            .map(|p| TaskPid {
                pid: p.pid,
                exec_id: exec_id_of(p.info),
            })
            .collect())
    }

    /// Metrics of the tasks of `ns` matching `filters` (`id==<container>`; empty: all).
    pub async fn metrics(&self, ns: &str, filters: &[String]) -> Result<Vec<TaskMetric>> {
        let req = MetricsRequest {
            filters: filters.to_vec(),
        };
        let resp = self
            .client()
            .metrics(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(resp
            .into_inner()
            .metrics
            .into_iter()
            .map(|m| TaskMetric {
                id: m.id,
                timestamp: to_time(m.timestamp),
                data: m.data.map(any_from_pb),
            })
            .collect())
    }

    /// Wait for the init process (`exec_id` empty) or an exec to exit; returns at once if it
    /// already has.
    pub async fn wait(&self, ns: &str, id: &str, exec_id: &str) -> Result<ExitStatus> {
        let req = WaitRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
        };
        let r = self
            .client()
            .wait(request(req, ns, None))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(ExitStatus {
            pid: 0,
            code: r.exit_status,
            exited_at: to_time(r.exited_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_like_ctr() {
        assert_eq!(TaskStatus::from_pb(2).to_string(), "RUNNING");
        assert_eq!(TaskStatus::from_pb(3), TaskStatus::Stopped);
        assert_eq!(TaskStatus::from_pb(4), TaskStatus::Paused);
        assert_eq!(TaskStatus::from_pb(99), TaskStatus::Unknown);
    }

    #[test]
    fn processes_convert() {
        let p = process_from_pb(PbProcess {
            container_id: "c1".into(),
            id: "c1".into(),
            pid: 42,
            status: PbStatus::Stopped as i32,
            stdout: "/tmp/out".into(),
            terminal: true,
            exit_status: 7,
            exited_at: Some(prost_types::Timestamp {
                seconds: 10,
                nanos: 0,
            }),
            ..Default::default()
        });
        assert_eq!(p.status, TaskStatus::Stopped);
        assert_eq!(p.exit_status, 7);
        assert!(p.io.terminal);
        assert_eq!(p.io.stdout, "/tmp/out");
        assert!(p.exited_at.is_some());
    }

    #[test]
    fn exec_pids_carry_their_exec_id() {
        let details = ProcessDetails {
            exec_id: "x1".into(),
        };
        let info = prost_types::Any {
            type_url: "containerd.runc.v1.ProcessDetails".into(),
            value: prost::Message::encode_to_vec(&details),
        };
        assert_eq!(exec_id_of(Some(info)).as_deref(), Some("x1"));
        assert_eq!(exec_id_of(None), None);
        let other = prost_types::Any {
            type_url: "something.Else".into(),
            value: vec![],
        };
        assert_eq!(exec_id_of(Some(other)), None);
    }
}

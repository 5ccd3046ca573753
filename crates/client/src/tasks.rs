//! Tasks over containerd's Tasks service: running a container's processes.
//!
//! [`RemoteTasks`] implements berth-core's [`Tasks`] (see [`berth_core::tasks`] for the
//! vocabulary: task, init process, exec, stdio, exit) over gRPC.

use std::collections::BTreeMap;

use berth_core::containers::Any;
use berth_core::tasks::{
    CreateTask, ExitStatus, Metric, PidInfo, ProcessStatus, Status, Stdio, Tasks,
};
use berth_core::{Error, Result};
use containerd_client::services::v1::{
    tasks_client::TasksClient, CloseIoRequest, CreateTaskRequest, DeleteProcessRequest,
    DeleteTaskRequest, ExecProcessRequest, GetRequest, KillRequest, ListPidsRequest,
    ListTasksRequest, MetricsRequest, PauseTaskRequest, ResizePtyRequest, ResumeTaskRequest,
    StartRequest, UpdateTaskRequest, WaitRequest,
};
use containerd_client::types::v1::{Process as PbProcess, Status as PbStatus};
use tonic::transport::Channel;

use crate::containers::{any_from_pb, any_to_pb};
use crate::{request, status_to_error, to_time};

fn status_from_pb(v: i32) -> Status {
    match PbStatus::try_from(v).unwrap_or(PbStatus::Unknown) {
        PbStatus::Unknown => Status::Unknown,
        PbStatus::Created => Status::Created,
        PbStatus::Running => Status::Running,
        PbStatus::Stopped => Status::Stopped,
        PbStatus::Paused => Status::Paused,
        PbStatus::Pausing => Status::Pausing,
    }
}

fn process_from_pb(p: PbProcess) -> ProcessStatus {
    ProcessStatus {
        container_id: p.container_id,
        id: p.id,
        pid: p.pid,
        status: status_from_pb(p.status),
        stdio: Stdio {
            stdin: p.stdin,
            stdout: p.stdout,
            stderr: p.stderr,
            terminal: p.terminal,
        },
        exit_status: p.exit_status,
        exited_at: p.exited_at.map(|t| to_time(Some(t))),
    }
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
}

impl Tasks for RemoteTasks {
    async fn create(&self, ns: &str, req: CreateTask) -> Result<u32> {
        let stdio = req.stdio;
        let req = CreateTaskRequest {
            container_id: req.container_id,
            rootfs: berth_api::convert::mounts_msg(req.rootfs),
            stdin: stdio.stdin,
            stdout: stdio.stdout,
            stderr: stdio.stderr,
            terminal: stdio.terminal,
            checkpoint: None,
            options: req.options.map(any_to_pb),
            runtime_path: req.runtime_path,
        };
        let resp = self
            .client()
            .create(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(resp.into_inner().pid)
    }

    /// Start the init process (`exec_id` empty) or an exec; returns its pid.
    async fn start(&self, ns: &str, id: &str, exec_id: &str) -> Result<u32> {
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
    async fn delete(&self, ns: &str, id: &str) -> Result<ExitStatus> {
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
    async fn delete_process(&self, ns: &str, id: &str, exec_id: &str) -> Result<ExitStatus> {
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
    async fn get(&self, ns: &str, id: &str, exec_id: &str) -> Result<ProcessStatus> {
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
    async fn list(&self, ns: &str) -> Result<Vec<ProcessStatus>> {
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
    async fn kill(&self, ns: &str, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
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
    /// `io`; start it with [`Tasks::start`].
    async fn exec(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        stdio: &Stdio,
        process: Any,
    ) -> Result<()> {
        let req = ExecProcessRequest {
            container_id: id.to_string(),
            stdin: stdio.stdin.clone(),
            stdout: stdio.stdout.clone(),
            stderr: stdio.stderr.clone(),
            terminal: stdio.terminal,
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
    async fn resize_pty(
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
    async fn close_stdin(&self, ns: &str, id: &str, exec_id: &str) -> Result<()> {
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
    async fn pause(&self, ns: &str, id: &str) -> Result<()> {
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
    async fn resume(&self, ns: &str, id: &str) -> Result<()> {
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
    async fn pids(&self, ns: &str, id: &str) -> Result<Vec<PidInfo>> {
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
            .map(|p| PidInfo {
                pid: p.pid,
                exec_id: exec_id_of(p.info.clone()),
                info: p.info.map(any_from_pb),
            })
            .collect())
    }

    async fn update(
        &self,
        ns: &str,
        id: &str,
        resources: Option<Any>,
        annotations: BTreeMap<String, String>,
    ) -> Result<()> {
        let req = UpdateTaskRequest {
            container_id: id.to_string(),
            resources: resources.map(any_to_pb),
            annotations: annotations.into_iter().collect(),
        };
        self.client()
            .update(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    /// Metrics of the tasks of `ns` matching `filters` (`id==<container>`; empty: all).
    async fn metrics(&self, ns: &str, filters: &[String]) -> Result<Vec<Metric>> {
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
            .map(|m| Metric {
                id: m.id,
                timestamp: to_time(m.timestamp),
                data: m.data.map(any_from_pb),
            })
            .collect())
    }

    /// Wait for the init process (`exec_id` empty) or an exec to exit; returns at once if it
    /// already has.
    async fn wait(&self, ns: &str, id: &str, exec_id: &str) -> Result<ExitStatus> {
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
        assert_eq!(status_from_pb(2).to_string(), "RUNNING");
        assert_eq!(status_from_pb(3), Status::Stopped);
        assert_eq!(status_from_pb(4), Status::Paused);
        assert_eq!(status_from_pb(99), Status::Unknown);
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
        assert_eq!(p.status, Status::Stopped);
        assert_eq!(p.exit_status, 7);
        assert!(p.stdio.terminal);
        assert_eq!(p.stdio.stdout, "/tmp/out");
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

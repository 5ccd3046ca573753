//! containerd.services.tasks.v1: [`LocalTasks`], berth-core's [`Tasks`] in-process over the
//! container records and berth-runtime's [`TaskManager`], and [`TasksService`], the gRPC
//! adapter over it.
//!
//! A request names a container; its record (from the metadata store) gives the runtime, the spec
//! and the snapshot, and the runtime runs the task in a shim. Task events (`/tasks/create`,
//! `/tasks/start`, `/tasks/exit`, `/tasks/exec-added`, `/tasks/exec-started`, `/tasks/paused`,
//! `/tasks/resumed`, `/tasks/oom`, `/tasks/delete`) come from the shims, which forward them over
//! ttrpc into the same [`Exchange`] (see [`Exchange`]'s [`Publisher`] implementation here); this
//! service publishes none itself, as in containerd. Checkpoints are not supported.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use berth_api::services::v1::{
    CheckpointTaskRequest, CheckpointTaskResponse, CloseIoRequest, CreateTaskRequest,
    CreateTaskResponse, DeleteProcessRequest, DeleteResponse, DeleteTaskRequest,
    ExecProcessRequest, GetRequest, GetResponse, KillRequest, ListPidsRequest, ListPidsResponse,
    ListTasksRequest, ListTasksResponse, MetricsRequest, MetricsResponse, PauseTaskRequest,
    ResizePtyRequest, ResumeTaskRequest, StartRequest, StartResponse, UpdateTaskRequest,
    WaitRequest, WaitResponse,
};
use berth_api::tasks::tasks_server::Tasks as TasksServer;
use berth_api::types::v1::{Process, ProcessInfo as ProcessInfoMsg, Status as StatusMsg};
use berth_api::types::{Envelope, Metric as MetricMsg};
use berth_core::containers::{Any, Container, ContainerStore};
use berth_core::filters::Filter;
use berth_core::snapshots::Snapshotter;
use berth_core::tasks::{
    CreateTask, ExitStatus, Metric, PidInfo, ProcessStatus, Status, Stdio, Tasks,
};
use berth_core::{Error, ErrorKind, Result};
use berth_metadata::Metadata;
use berth_runtime::{CreateOpts, Event, Publisher, ShimTask, TaskManager, STATE_TIMEOUT};

use crate::containers::{any_from_msg, any_msg};
use crate::events::{validate_topic, Exchange};
use crate::request::namespace;
use crate::status::{GrpcResult, IntoStatus};

/// Tasks in-process: what the Tasks service does, without gRPC, for berthd's own callers (the
/// CRI server, berth-ops workflows run in the daemon). Cloning is cheap.
#[derive(Debug, Clone)]
pub struct LocalTasks {
    /// Container records and snapshots.
    pub meta: Metadata,
    pub runtime: TaskManager,
}

/// Shims' events (and the runtime's own) go onto the exchange, checked as `Forward` checks them.
impl Publisher for Exchange {
    fn publish(&self, ev: Event) -> berth_core::Result<()> {
        validate_topic(&ev.topic)?;
        berth_core::identifiers::validate(&ev.namespace)?;
        self.forward(Envelope {
            timestamp: Some(ev.timestamp.into()),
            namespace: ev.namespace,
            topic: ev.topic,
            event: Some(any_msg(ev.event)),
        });
        Ok(())
    }
}

fn exec_id_required(exec_id: &str) -> Result<()> {
    if exec_id.is_empty() {
        return Err(Error::invalid_argument("exec id cannot be empty"));
    }
    Ok(())
}

impl LocalTasks {
    /// Tasks of the containers in `meta`, run by `runtime`.
    pub fn new(meta: Metadata, runtime: TaskManager) -> Self {
        LocalTasks { meta, runtime }
    }

    async fn container(&self, ns: &str, id: &str) -> Result<Container> {
        ContainerStore::get(&self.meta, ns, id).await
    }

    /// The task of container `id`: the container must exist, then its task.
    async fn task(&self, ns: &str, id: &str) -> Result<Arc<ShimTask>> {
        self.container(ns, id).await?;
        Ok(self.runtime.get(ns, id)?)
    }
}

impl Tasks for LocalTasks {
    async fn create(&self, ns: &str, req: CreateTask) -> Result<u32> {
        let container = self.container(ns, &req.container_id).await?;
        let rootfs = if !req.rootfs.is_empty() {
            req.rootfs
        } else if !container.snapshot_key.is_empty() {
            // containerd's clients send the mounts; look them up for those that do not.
            self.meta
                .snapshotter(ns, &container.snapshotter, None)?
                .mounts(&container.snapshot_key)
                .await?
        } else {
            Vec::new()
        };
        let spec = container.spec.ok_or_else(|| {
            Error::failed_precondition(format!("container {:?} has no spec", container.id))
        })?;
        let runtime = if req.runtime_path.is_empty() {
            container.runtime.name
        } else {
            req.runtime_path
        };
        let opts = CreateOpts {
            id: container.id.clone(),
            runtime,
            runtime_options: container.runtime.options,
            task_options: req.options,
            spec,
            rootfs,
            stdio: req.stdio,
        };
        let (_, pid) = self.runtime.create(ns, opts).await?;
        Ok(pid)
    }

    async fn start(&self, ns: &str, id: &str, exec_id: &str) -> Result<u32> {
        Ok(self.task(ns, id).await?.start(exec_id).await?)
    }

    async fn delete(&self, ns: &str, id: &str) -> Result<ExitStatus> {
        self.task(ns, id).await?;
        Ok(self.runtime.delete(ns, id).await?)
    }

    async fn delete_process(&self, ns: &str, id: &str, exec_id: &str) -> Result<ExitStatus> {
        exec_id_required(exec_id)?;
        Ok(self.task(ns, id).await?.delete_exec(exec_id).await?)
    }

    async fn get(&self, ns: &str, id: &str, exec_id: &str) -> Result<ProcessStatus> {
        let task = self.task(ns, id).await?;
        Ok(task.state(exec_id, Some(STATE_TIMEOUT)).await?)
    }

    /// The state of every task of `ns`; those whose shim does not answer are left out, those
    /// that fail otherwise are listed as `Unknown`.
    async fn list(&self, ns: &str) -> Result<Vec<ProcessStatus>> {
        let mut out = Vec::new();
        for t in self.runtime.list(ns) {
            match t.state("", Some(STATE_TIMEOUT)).await {
                Ok(s) => out.push(s),
                Err(e) if e.kind() == ErrorKind::NotFound || e.is_connection() => {}
                Err(e) => {
                    tracing::error!(namespace = ns, id = %t.id(), error = %e, "get state");
                    out.push(ProcessStatus {
                        container_id: t.id().to_string(),
                        id: t.id().to_string(),
                        pid: 0,
                        status: Status::Unknown,
                        stdio: Stdio::default(),
                        exit_status: 0,
                        exited_at: None,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn kill(&self, ns: &str, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        Ok(self.task(ns, id).await?.kill(exec_id, signal, all).await?)
    }

    async fn exec(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        stdio: &Stdio,
        process: Any,
    ) -> Result<()> {
        exec_id_required(exec_id)?;
        let task = self.task(ns, id).await?;
        Ok(task.exec(exec_id, stdio, Some(&process)).await?)
    }

    async fn resize_pty(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<()> {
        let task = self.task(ns, id).await?;
        Ok(task.resize_pty(exec_id, width, height).await?)
    }

    async fn close_stdin(&self, ns: &str, id: &str, exec_id: &str) -> Result<()> {
        Ok(self.task(ns, id).await?.close_io(exec_id).await?)
    }

    async fn pause(&self, ns: &str, id: &str) -> Result<()> {
        Ok(self.task(ns, id).await?.pause().await?)
    }

    async fn resume(&self, ns: &str, id: &str) -> Result<()> {
        Ok(self.task(ns, id).await?.resume().await?)
    }

    async fn pids(&self, ns: &str, id: &str) -> Result<Vec<PidInfo>> {
        Ok(self.task(ns, id).await?.pids().await?)
    }

    async fn update(
        &self,
        ns: &str,
        id: &str,
        resources: Option<Any>,
        annotations: BTreeMap<String, String>,
    ) -> Result<()> {
        let task = self.task(ns, id).await?;
        let annotations = annotations.into_iter().collect();
        Ok(task.update(resources.as_ref(), annotations).await?)
    }

    async fn metrics(&self, ns: &str, filters: &[String]) -> Result<Vec<Metric>> {
        let filter = Filter::parse_all(filters)?;
        let mut metrics = Vec::new();
        for t in self.runtime.list(ns) {
            let fields = |path: &[String]| -> Option<String> {
                match path.first().map(String::as_str)? {
                    "id" => Some(t.id().to_string()),
                    "namespace" => Some(t.namespace().to_string()),
                    _ => None,
                }
            };
            if !filter.matches(&fields) {
                continue;
            }
            let collected = SystemTime::now();
            match t.stats(Some(STATE_TIMEOUT)).await {
                Ok(data) => metrics.push(Metric {
                    id: t.id().to_string(),
                    timestamp: collected,
                    data,
                }),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(namespace = %ns, id = %t.id(), error = %e, "collecting metrics")
                }
            }
        }
        Ok(metrics)
    }

    async fn wait(&self, ns: &str, id: &str, exec_id: &str) -> Result<ExitStatus> {
        Ok(self.task(ns, id).await?.wait(exec_id).await?)
    }
}

/// The Tasks service: requests to [`LocalTasks`] calls, errors to statuses.
#[derive(Debug)]
pub struct TasksService {
    pub tasks: LocalTasks,
}

fn status_msg(s: Status) -> StatusMsg {
    match s {
        Status::Unknown => StatusMsg::Unknown,
        Status::Created => StatusMsg::Created,
        Status::Running => StatusMsg::Running,
        Status::Stopped => StatusMsg::Stopped,
        Status::Paused => StatusMsg::Paused,
        Status::Pausing => StatusMsg::Pausing,
    }
}

fn process_msg(s: ProcessStatus) -> Process {
    Process {
        container_id: s.container_id,
        id: s.id,
        pid: s.pid,
        status: status_msg(s.status) as i32,
        stdin: s.stdio.stdin,
        stdout: s.stdio.stdout,
        stderr: s.stdio.stderr,
        terminal: s.stdio.terminal,
        exit_status: s.exit_status,
        exited_at: s.exited_at.map(Into::into),
    }
}

fn stdio(stdin: String, stdout: String, stderr: String, terminal: bool) -> Stdio {
    Stdio {
        stdin,
        stdout,
        stderr,
        terminal,
    }
}

#[tonic::async_trait]
impl TasksServer for TasksService {
    async fn create(
        &self,
        req: tonic::Request<CreateTaskRequest>,
    ) -> GrpcResult<CreateTaskResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        if r.checkpoint.is_some() {
            // containerd looks the container up first: a missing one is NotFound.
            self.tasks.container(&ns, &r.container_id).await.grpc()?;
            return Err(tonic::Status::unimplemented(
                "restoring a task from a checkpoint is not supported",
            ));
        }
        let container_id = r.container_id.clone();
        let create = CreateTask {
            container_id: r.container_id,
            rootfs: berth_api::convert::mounts_from_msg(r.rootfs),
            stdio: stdio(r.stdin, r.stdout, r.stderr, r.terminal),
            options: r.options.map(any_from_msg),
            runtime_path: r.runtime_path,
        };
        let pid = self.tasks.create(&ns, create).await.grpc()?;
        Ok(tonic::Response::new(CreateTaskResponse {
            container_id,
            pid,
        }))
    }

    async fn start(&self, req: tonic::Request<StartRequest>) -> GrpcResult<StartResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let pid = self
            .tasks
            .start(&ns, &r.container_id, &r.exec_id)
            .await
            .grpc()?;
        Ok(tonic::Response::new(StartResponse { pid }))
    }

    async fn delete(&self, req: tonic::Request<DeleteTaskRequest>) -> GrpcResult<DeleteResponse> {
        let ns = namespace(&req)?;
        let id = req.into_inner().container_id;
        let exit = self.tasks.delete(&ns, &id).await.grpc()?;
        Ok(tonic::Response::new(DeleteResponse {
            id: String::new(),
            pid: exit.pid,
            exit_status: exit.code,
            exited_at: Some(exit.exited_at.into()),
        }))
    }

    async fn delete_process(
        &self,
        req: tonic::Request<DeleteProcessRequest>,
    ) -> GrpcResult<DeleteResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let exit = self
            .tasks
            .delete_process(&ns, &r.container_id, &r.exec_id)
            .await
            .grpc()?;
        Ok(tonic::Response::new(DeleteResponse {
            id: r.exec_id,
            pid: exit.pid,
            exit_status: exit.code,
            exited_at: Some(exit.exited_at.into()),
        }))
    }

    async fn get(&self, req: tonic::Request<GetRequest>) -> GrpcResult<GetResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let state = self
            .tasks
            .get(&ns, &r.container_id, &r.exec_id)
            .await
            .grpc()?;
        Ok(tonic::Response::new(GetResponse {
            process: Some(process_msg(state)),
        }))
    }

    async fn list(&self, req: tonic::Request<ListTasksRequest>) -> GrpcResult<ListTasksResponse> {
        let ns = namespace(&req)?;
        let tasks = self.tasks.list(&ns).await.grpc()?;
        Ok(tonic::Response::new(ListTasksResponse {
            tasks: tasks.into_iter().map(process_msg).collect(),
        }))
    }

    async fn kill(&self, req: tonic::Request<KillRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        self.tasks
            .kill(&ns, &r.container_id, &r.exec_id, r.signal, r.all)
            .await
            .grpc()?;
        Ok(tonic::Response::new(()))
    }

    async fn exec(&self, req: tonic::Request<ExecProcessRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        exec_id_required(&r.exec_id).grpc()?;
        let spec = r
            .spec
            .map(any_from_msg)
            .ok_or_else(|| tonic::Status::invalid_argument("exec spec must be provided"))?;
        let io = stdio(r.stdin, r.stdout, r.stderr, r.terminal);
        self.tasks
            .exec(&ns, &r.container_id, &r.exec_id, &io, spec)
            .await
            .grpc()?;
        Ok(tonic::Response::new(()))
    }

    async fn resize_pty(&self, req: tonic::Request<ResizePtyRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        self.tasks
            .resize_pty(&ns, &r.container_id, &r.exec_id, r.width, r.height)
            .await
            .grpc()?;
        Ok(tonic::Response::new(()))
    }

    async fn close_io(&self, req: tonic::Request<CloseIoRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        if r.stdin {
            self.tasks
                .close_stdin(&ns, &r.container_id, &r.exec_id)
                .await
                .grpc()?;
        } else {
            // containerd checks the task exists even when there is nothing to close.
            self.tasks.task(&ns, &r.container_id).await.grpc()?;
        }
        Ok(tonic::Response::new(()))
    }

    async fn pause(&self, req: tonic::Request<PauseTaskRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let id = req.into_inner().container_id;
        self.tasks.pause(&ns, &id).await.grpc()?;
        Ok(tonic::Response::new(()))
    }

    async fn resume(&self, req: tonic::Request<ResumeTaskRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let id = req.into_inner().container_id;
        self.tasks.resume(&ns, &id).await.grpc()?;
        Ok(tonic::Response::new(()))
    }

    async fn list_pids(
        &self,
        req: tonic::Request<ListPidsRequest>,
    ) -> GrpcResult<ListPidsResponse> {
        let ns = namespace(&req)?;
        let id = req.into_inner().container_id;
        let processes = self
            .tasks
            .pids(&ns, &id)
            .await
            .grpc()?
            .into_iter()
            .map(|p| ProcessInfoMsg {
                pid: p.pid,
                info: p.info.map(any_msg),
            })
            .collect();
        Ok(tonic::Response::new(ListPidsResponse { processes }))
    }

    async fn checkpoint(
        &self,
        _req: tonic::Request<CheckpointTaskRequest>,
    ) -> GrpcResult<CheckpointTaskResponse> {
        Err(tonic::Status::unimplemented(
            "checkpointing tasks is not supported",
        ))
    }

    async fn update(&self, req: tonic::Request<UpdateTaskRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let resources = r.resources.map(any_from_msg);
        let annotations = r.annotations.into_iter().collect();
        self.tasks
            .update(&ns, &r.container_id, resources, annotations)
            .await
            .grpc()?;
        Ok(tonic::Response::new(()))
    }

    async fn metrics(&self, req: tonic::Request<MetricsRequest>) -> GrpcResult<MetricsResponse> {
        let ns = namespace(&req)?;
        let filters = req.into_inner().filters;
        let metrics = self
            .tasks
            .metrics(&ns, &filters)
            .await
            .grpc()?
            .into_iter()
            .map(|m| MetricMsg {
                timestamp: Some(m.timestamp.into()),
                id: m.id,
                data: m.data.map(any_msg),
            })
            .collect();
        Ok(tonic::Response::new(MetricsResponse { metrics }))
    }

    async fn wait(&self, req: tonic::Request<WaitRequest>) -> GrpcResult<WaitResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let exit = self
            .tasks
            .wait(&ns, &r.container_id, &r.exec_id)
            .await
            .grpc()?;
        Ok(tonic::Response::new(WaitResponse {
            exit_status: exit.code,
            exited_at: Some(exit.exited_at.into()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::containers::Any;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn shim_events_reach_subscribers_checked() {
        let ex = Exchange::new();
        let mut sub = Box::pin(ex.subscribe(Filter::always()));
        let ev = Event {
            namespace: "default".into(),
            topic: "/tasks/exit".into(),
            timestamp: SystemTime::now(),
            event: Any {
                type_url: "containerd.events.TaskExit".into(),
                value: vec![],
            },
        };
        Publisher::publish(&ex, ev.clone()).unwrap();
        let env = sub.next().await.unwrap();
        assert_eq!(env.topic, "/tasks/exit");
        assert_eq!(env.namespace, "default");
        assert_eq!(env.event.unwrap().type_url, "containerd.events.TaskExit");
        let bad = Event {
            topic: "tasks".into(),
            ..ev.clone()
        };
        assert!(Publisher::publish(&ex, bad).is_err());
        let bad = Event {
            namespace: "a/b".into(),
            ..ev
        };
        assert!(Publisher::publish(&ex, bad).is_err());
    }

    #[test]
    fn statuses_map_to_containerds() {
        assert_eq!(status_msg(Status::Running) as i32, 2);
        assert_eq!(status_msg(Status::Stopped) as i32, 3);
        assert_eq!(status_msg(Status::Paused) as i32, 4);
    }
}

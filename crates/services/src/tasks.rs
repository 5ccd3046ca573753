//! containerd.services.tasks.v1 over berth-runtime's [`TaskManager`].
//!
//! A request names a container; its record (from the metadata store) gives the runtime, the spec
//! and the snapshot, and the runtime runs the task in a shim. Task events (`/tasks/create`,
//! `/tasks/start`, `/tasks/exit`, `/tasks/exec-added`, `/tasks/exec-started`, `/tasks/paused`,
//! `/tasks/resumed`, `/tasks/oom`, `/tasks/delete`) come from the shims, which forward them over
//! ttrpc into the same [`Exchange`] (see [`Exchange`]'s [`Publisher`] implementation here); this
//! service publishes none itself, as in containerd. Checkpoints are not supported.

use std::collections::HashMap;
use std::time::SystemTime;

use berth_api::services::v1::{
    CheckpointTaskRequest, CheckpointTaskResponse, CloseIoRequest, CreateTaskRequest,
    CreateTaskResponse, DeleteProcessRequest, DeleteResponse, DeleteTaskRequest,
    ExecProcessRequest, GetRequest, GetResponse, KillRequest, ListPidsRequest, ListPidsResponse,
    ListTasksRequest, ListTasksResponse, MetricsRequest, MetricsResponse, PauseTaskRequest,
    ResizePtyRequest, ResumeTaskRequest, StartRequest, StartResponse, UpdateTaskRequest,
    WaitRequest, WaitResponse,
};
use berth_api::tasks::tasks_server::Tasks;
use berth_api::types::v1::{Process, ProcessInfo as ProcessInfoMsg, Status as StatusMsg};
use berth_api::types::{Envelope, Metric};
use berth_core::containers::{Container, ContainerStore};
use berth_core::filters::Filter;
use berth_core::snapshots::Snapshotter;
use berth_core::ErrorKind;
use berth_metadata::Metadata;
use berth_runtime::{
    CreateOpts, Event, ProcessState, Publisher, ShimTask, Status, Stdio, TaskManager, STATE_TIMEOUT,
};
use std::sync::Arc;

use crate::containers::{any_from_msg, any_msg};
use crate::events::{validate_topic, Exchange};
use crate::request::namespace;
use crate::status::{GrpcResult, IntoStatus};

/// The Tasks service.
#[derive(Debug)]
pub struct TasksService {
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

fn process_msg(container_id: &str, s: ProcessState) -> Process {
    Process {
        container_id: container_id.to_string(),
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

fn exec_id_required(exec_id: &str) -> Result<(), tonic::Status> {
    if exec_id.is_empty() {
        return Err(tonic::Status::invalid_argument("exec id cannot be empty"));
    }
    Ok(())
}

impl TasksService {
    async fn container(&self, ns: &str, id: &str) -> Result<Container, tonic::Status> {
        ContainerStore::get(&self.meta, ns, id).await.grpc()
    }

    /// The task of container `id`: the container must exist, then its task.
    async fn task(&self, ns: &str, id: &str) -> Result<Arc<ShimTask>, tonic::Status> {
        self.container(ns, id).await?;
        self.runtime.get(ns, id).grpc()
    }

    /// The state of every task of `ns` (those whose shim does not answer are left out).
    async fn states(&self, ns: &str) -> Vec<Process> {
        let mut out = Vec::new();
        for t in self.runtime.list(ns) {
            match t.state("", Some(STATE_TIMEOUT)).await {
                Ok(s) => out.push(process_msg(t.id(), s)),
                Err(e) if e.kind() == ErrorKind::NotFound || e.is_connection() => {}
                Err(e) => {
                    tracing::error!(namespace = ns, id = %t.id(), error = %e, "get state");
                    out.push(Process {
                        container_id: t.id().to_string(),
                        id: t.id().to_string(),
                        status: StatusMsg::Unknown as i32,
                        ..Default::default()
                    });
                }
            }
        }
        out
    }
}

#[tonic::async_trait]
impl Tasks for TasksService {
    async fn create(
        &self,
        req: tonic::Request<CreateTaskRequest>,
    ) -> GrpcResult<CreateTaskResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let container = self.container(&ns, &r.container_id).await?;
        if r.checkpoint.is_some() {
            return Err(tonic::Status::unimplemented(
                "restoring a task from a checkpoint is not supported",
            ));
        }
        let rootfs = if !r.rootfs.is_empty() {
            berth_api::convert::mounts_from_msg(r.rootfs)
        } else if !container.snapshot_key.is_empty() {
            // containerd's clients send the mounts; look them up for those that do not.
            self.meta
                .snapshotter(&ns, &container.snapshotter, None)
                .grpc()?
                .mounts(&container.snapshot_key)
                .await
                .grpc()?
        } else {
            Vec::new()
        };
        let spec = container.spec.ok_or_else(|| {
            tonic::Status::failed_precondition(format!("container {:?} has no spec", container.id))
        })?;
        let runtime = if r.runtime_path.is_empty() {
            container.runtime.name
        } else {
            r.runtime_path
        };
        let opts = CreateOpts {
            id: container.id.clone(),
            runtime,
            runtime_options: container.runtime.options,
            task_options: r.options.map(any_from_msg),
            spec,
            rootfs,
            stdio: stdio(r.stdin, r.stdout, r.stderr, r.terminal),
        };
        let (_, pid) = self.runtime.create(&ns, opts).await.grpc()?;
        Ok(tonic::Response::new(CreateTaskResponse {
            container_id: container.id,
            pid,
        }))
    }

    async fn start(&self, req: tonic::Request<StartRequest>) -> GrpcResult<StartResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let task = self.task(&ns, &r.container_id).await?;
        let pid = task.start(&r.exec_id).await.grpc()?;
        Ok(tonic::Response::new(StartResponse { pid }))
    }

    async fn delete(&self, req: tonic::Request<DeleteTaskRequest>) -> GrpcResult<DeleteResponse> {
        let ns = namespace(&req)?;
        let id = req.into_inner().container_id;
        self.task(&ns, &id).await?;
        let exit = self.runtime.delete(&ns, &id).await.grpc()?;
        Ok(tonic::Response::new(DeleteResponse {
            id: String::new(),
            pid: exit.pid,
            exit_status: exit.status,
            exited_at: Some(exit.timestamp.into()),
        }))
    }

    async fn delete_process(
        &self,
        req: tonic::Request<DeleteProcessRequest>,
    ) -> GrpcResult<DeleteResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        exec_id_required(&r.exec_id)?;
        let task = self.task(&ns, &r.container_id).await?;
        let exit = task.delete_exec(&r.exec_id).await.grpc()?;
        Ok(tonic::Response::new(DeleteResponse {
            id: r.exec_id,
            pid: exit.pid,
            exit_status: exit.status,
            exited_at: Some(exit.timestamp.into()),
        }))
    }

    async fn get(&self, req: tonic::Request<GetRequest>) -> GrpcResult<GetResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let task = self.task(&ns, &r.container_id).await?;
        let state = task.state(&r.exec_id, Some(STATE_TIMEOUT)).await.grpc()?;
        Ok(tonic::Response::new(GetResponse {
            process: Some(process_msg(&r.container_id, state)),
        }))
    }

    async fn list(&self, req: tonic::Request<ListTasksRequest>) -> GrpcResult<ListTasksResponse> {
        let ns = namespace(&req)?;
        let tasks = self.states(&ns).await;
        Ok(tonic::Response::new(ListTasksResponse { tasks }))
    }

    async fn kill(&self, req: tonic::Request<KillRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let task = self.task(&ns, &r.container_id).await?;
        task.kill(&r.exec_id, r.signal, r.all).await.grpc()?;
        Ok(tonic::Response::new(()))
    }

    async fn exec(&self, req: tonic::Request<ExecProcessRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        exec_id_required(&r.exec_id)?;
        let task = self.task(&ns, &r.container_id).await?;
        let spec = r.spec.map(any_from_msg);
        let io = stdio(r.stdin, r.stdout, r.stderr, r.terminal);
        task.exec(&r.exec_id, &io, spec.as_ref()).await.grpc()?;
        Ok(tonic::Response::new(()))
    }

    async fn resize_pty(&self, req: tonic::Request<ResizePtyRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let task = self.task(&ns, &r.container_id).await?;
        task.resize_pty(&r.exec_id, r.width, r.height)
            .await
            .grpc()?;
        Ok(tonic::Response::new(()))
    }

    async fn close_io(&self, req: tonic::Request<CloseIoRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let task = self.task(&ns, &r.container_id).await?;
        if r.stdin {
            task.close_io(&r.exec_id).await.grpc()?;
        }
        Ok(tonic::Response::new(()))
    }

    async fn pause(&self, req: tonic::Request<PauseTaskRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let task = self.task(&ns, &req.into_inner().container_id).await?;
        task.pause().await.grpc()?;
        Ok(tonic::Response::new(()))
    }

    async fn resume(&self, req: tonic::Request<ResumeTaskRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let task = self.task(&ns, &req.into_inner().container_id).await?;
        task.resume().await.grpc()?;
        Ok(tonic::Response::new(()))
    }

    async fn list_pids(
        &self,
        req: tonic::Request<ListPidsRequest>,
    ) -> GrpcResult<ListPidsResponse> {
        let ns = namespace(&req)?;
        let task = self.task(&ns, &req.into_inner().container_id).await?;
        let processes = task
            .pids()
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
        let task = self.task(&ns, &r.container_id).await?;
        let resources = r.resources.map(any_from_msg);
        let annotations: HashMap<String, String> = r.annotations.into_iter().collect();
        task.update(resources.as_ref(), annotations).await.grpc()?;
        Ok(tonic::Response::new(()))
    }

    async fn metrics(&self, req: tonic::Request<MetricsRequest>) -> GrpcResult<MetricsResponse> {
        let ns = namespace(&req)?;
        let filter = Filter::parse_all(&req.into_inner().filters).grpc()?;
        let mut metrics = Vec::new();
        for t in self.runtime.list(&ns) {
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
                    timestamp: Some(collected.into()),
                    id: t.id().to_string(),
                    data: data.map(any_msg),
                }),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(namespace = %ns, id = %t.id(), error = %e, "collecting metrics")
                }
            }
        }
        Ok(tonic::Response::new(MetricsResponse { metrics }))
    }

    async fn wait(&self, req: tonic::Request<WaitRequest>) -> GrpcResult<WaitResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let task = self.task(&ns, &r.container_id).await?;
        let exit = task.wait(&r.exec_id).await.grpc()?;
        Ok(tonic::Response::new(WaitResponse {
            exit_status: exit.status,
            exited_at: Some(exit.timestamp.into()),
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

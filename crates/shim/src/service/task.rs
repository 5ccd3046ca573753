//! The ttrpc face of [`Service`]: each `containerd.task.v2.Task` method, logged and with its
//! error turned into a ttrpc status (see [`crate::error::code`]).

use containerd_shim_protos::api::{
    CheckpointTaskRequest, CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest,
    CreateTaskResponse, DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest,
    PauseRequest, PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest,
    StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::Task;
use ttrpc::TtrpcContext;

use super::Service;
use crate::error::ShimError;

macro_rules! rpc {
    ($name:literal, $body:expr) => {{
        log::debug!("rpc {}", $name);
        $body.map_err(|e: ShimError| {
            log::info!("rpc {} failed: {e}", $name);
            ttrpc::Error::from(e)
        })
    }};
}

impl Task for Service {
    fn state(&self, _: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        rpc!("state", self.state(&req.exec_id))
    }

    fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        rpc!("create", self.create_task(req))
    }

    fn start(&self, _: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        if req.exec_id.is_empty() {
            rpc!("start", self.start_init())
        } else {
            rpc!("start exec", self.start_exec(&req.exec_id))
        }
    }

    fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        if req.exec_id.is_empty() {
            rpc!("delete", self.delete_init())
        } else {
            rpc!("delete exec", self.delete_exec(&req.exec_id))
        }
    }

    fn pids(&self, _: &TtrpcContext, _: PidsRequest) -> ttrpc::Result<PidsResponse> {
        rpc!("pids", self.pids())
    }

    fn pause(&self, _: &TtrpcContext, _: PauseRequest) -> ttrpc::Result<Empty> {
        rpc!("pause", self.freeze(true).map(|()| Empty::new()))
    }

    fn resume(&self, _: &TtrpcContext, _: ResumeRequest) -> ttrpc::Result<Empty> {
        rpc!("resume", self.freeze(false).map(|()| Empty::new()))
    }

    fn checkpoint(&self, _: &TtrpcContext, _: CheckpointTaskRequest) -> ttrpc::Result<Empty> {
        rpc!(
            "checkpoint",
            Err::<Empty, _>(ShimError::NotImplemented("checkpoint".into()))
        )
    }

    fn kill(&self, _: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        rpc!("kill", self.kill(&req).map(|()| Empty::new()))
    }

    fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        rpc!("exec", self.add_exec(req).map(|()| Empty::new()))
    }

    fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        rpc!("resize pty", {
            let io = self.lock().process(&self.id, &req.exec_id)?.io.clone();
            match io {
                Some(io) => io.resize(req.width, req.height).map(|()| Empty::new()),
                None => Ok(Empty::new()),
            }
        })
    }

    fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        rpc!("close io", {
            let io = self.lock().process(&self.id, &req.exec_id)?.io.clone();
            if let (Some(io), true) = (io, req.stdin) {
                io.close_stdin();
            }
            Ok(Empty::new())
        })
    }

    fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        rpc!("update", {
            let runtime = self.lock().init(&self.id)?.runtime.clone();
            runtime
                .update(&self.reaper, &self.id, &req.resources.value)
                .map(|()| Empty::new())
        })
    }

    fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        rpc!("wait", self.wait(&req.exec_id))
    }

    fn stats(&self, _: &TtrpcContext, _: StatsRequest) -> ttrpc::Result<StatsResponse> {
        rpc!("stats", {
            let cgroup = self.lock().init(&self.id)?.cgroup.clone();
            let cgroup =
                cgroup.ok_or_else(|| ShimError::NotFound(format!("cgroup of task {}", self.id)))?;
            cgroup.stats().map(|stats| StatsResponse {
                stats: MessageField::some(stats),
                ..Default::default()
            })
        })
    }

    fn connect(&self, _: &TtrpcContext, _: ConnectRequest) -> ttrpc::Result<ConnectResponse> {
        let task_pid = self
            .lock()
            .init
            .as_ref()
            .map(|i| i.process.pid)
            .unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    fn shutdown(&self, _: &TtrpcContext, req: ShutdownRequest) -> ttrpc::Result<Empty> {
        // Only once the task is deleted (or when told to go now) does the shim exit.
        if req.now || self.lock().init.is_none() {
            log::info!("shutdown requested");
            let _ = self.shutdown.send(());
        }
        Ok(Empty::new())
    }
}

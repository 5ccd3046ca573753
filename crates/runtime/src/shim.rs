//! One running shim and the task it serves, over ttrpc (containerd's task API v2,
//! `containerd.task.v2.Task`).
//!
//! A [`ShimTask`] is a connected ttrpc client plus the bundle it belongs to. Every call names the
//! task by its id (and a process by its **exec id**; empty means the task's init process) and
//! carries the namespace in the `containerd-namespace-ttrpc` metadata, as containerd sends it.
//! Errors the shim returns keep their class and message ([`RuntimeError::Shim`]); a closed
//! connection is [`RuntimeError::Connection`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use berth_core::containers::Any;
use containerd_shim_protos::api;
use containerd_shim_protos::shim_async::TaskClient;
use tokio::task::JoinHandle;

use crate::bundle::Bundle;
use crate::error::{Result, RuntimeError};
use berth_core::tasks::{ExitStatus, PidInfo, ProcessStatus, Stdio};

use crate::types::{any_from_pb, pb_any_field, pb_mount, status_from_pb, time_from_pb, CreateOpts};

/// The ttrpc metadata key of the namespace (containerd's `namespaces.TTRPCHeader`).
/// How long connecting to a shim after a restart may take (containerd's shim load timeout).
pub(crate) const LOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a state query may take when listing (containerd's task state timeout).
pub const STATE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a shim may take to shut down.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// A connected shim serving one task.
pub struct ShimTask {
    bundle: Bundle,
    address: String,
    client: TaskClient,
    shim_pid: u32,
    /// Copies the shim's log into berthd's; stopped when the task goes.
    log_pump: Mutex<Option<JoinHandle<()>>>,
    /// Waits for the shim process to exit; stopped when the task is deleted.
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ShimTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShimTask")
            .field("namespace", &self.bundle.namespace)
            .field("id", &self.bundle.id)
            .field("address", &self.address)
            .field("shim_pid", &self.shim_pid)
            .finish_non_exhaustive()
    }
}

fn ctx(ns: &str, timeout: Option<Duration>) -> ttrpc::context::Context {
    let nanos = timeout.map_or(0, |t| t.as_nanos() as i64);
    let mut c = ttrpc::context::with_timeout(nanos);
    c.add(
        berth_core::namespaces::TTRPC_HEADER.to_string(),
        ns.to_string(),
    );
    c
}

impl ShimTask {
    /// Connect to the shim at `address` and ask who it is (`Connect`).
    pub(crate) async fn connect(bundle: Bundle, address: &str) -> Result<ShimTask> {
        let id = bundle.id.clone();
        let conn = |reason: String| RuntimeError::Connection {
            op: "connect",
            id: id.clone(),
            reason,
        };
        let client =
            tokio::time::timeout(LOAD_TIMEOUT, ttrpc::asynchronous::Client::connect(address))
                .await
                .map_err(|_| conn(format!("{address}: timed out")))?
                .map_err(|e| conn(format!("{address}: {e}")))?;
        let client = TaskClient::new(client);
        let mut req = api::ConnectRequest::new();
        req.id = bundle.id.clone();
        let resp = client
            .connect(ctx(&bundle.namespace, Some(LOAD_TIMEOUT)), &req)
            .await
            .map_err(|e| RuntimeError::ttrpc("connect", &bundle.id, e))?;
        Ok(ShimTask {
            bundle,
            address: address.to_string(),
            client,
            shim_pid: resp.shim_pid,
            log_pump: Mutex::new(None),
            watcher: Mutex::new(None),
        })
    }

    /// The task (and container) id.
    pub fn id(&self) -> &str {
        &self.bundle.id
    }

    pub fn namespace(&self) -> &str {
        &self.bundle.namespace
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The shim's ttrpc address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The shim process's pid (0 if the shim did not say).
    pub fn shim_pid(&self) -> u32 {
        self.shim_pid
    }

    pub(crate) fn set_log_pump(&self, h: JoinHandle<()>) {
        if let Some(old) = self.log_pump.lock().expect("log pump poisoned").replace(h) {
            old.abort();
        }
    }

    pub(crate) fn set_watcher(&self, h: JoinHandle<()>) {
        if let Some(old) = self.watcher.lock().expect("watcher poisoned").replace(h) {
            old.abort();
        }
    }

    pub(crate) fn stop_log_pump(&self) {
        if let Some(h) = self.log_pump.lock().expect("log pump poisoned").take() {
            h.abort();
        }
    }

    /// Stop watching for the shim's exit and reading its log (the task is being deleted).
    pub(crate) fn stop_background(&self) {
        if let Some(h) = self.watcher.lock().expect("watcher poisoned").take() {
            h.abort();
        }
        self.stop_log_pump();
    }

    fn ctx(&self, timeout: Option<Duration>) -> ttrpc::context::Context {
        ctx(&self.bundle.namespace, timeout)
    }

    fn err(&self, op: &'static str) -> impl FnOnce(ttrpc::Error) -> RuntimeError + '_ {
        move |e| RuntimeError::ttrpc(op, &self.bundle.id, e)
    }

    /// Create the task in the shim (which mounts `opts.rootfs` on the bundle's rootfs and runs
    /// `runc create`); returns the init process's pid.
    pub(crate) async fn create(&self, opts: &CreateOpts) -> Result<u32> {
        let mut req = api::CreateTaskRequest::new();
        req.id = self.bundle.id.clone();
        req.bundle = self.bundle.path.display().to_string();
        req.rootfs = opts.rootfs.iter().map(pb_mount).collect();
        req.terminal = opts.stdio.terminal;
        req.stdin = opts.stdio.stdin.clone();
        req.stdout = opts.stdio.stdout.clone();
        req.stderr = opts.stdio.stderr.clone();
        req.options = pb_any_field(opts.task_options.as_ref().or(opts.runtime_options.as_ref()));
        let resp = self
            .client
            .create(self.ctx(None), &req)
            .await
            .map_err(self.err("create"))?;
        Ok(resp.pid)
    }

    /// Start the init process (`exec_id` empty) or an exec'd one; returns its pid.
    pub async fn start(&self, exec_id: &str) -> Result<u32> {
        let mut req = api::StartRequest::new();
        req.id = self.bundle.id.clone();
        req.exec_id = exec_id.to_string();
        let resp = self
            .client
            .start(self.ctx(None), &req)
            .await
            .map_err(self.err("start"))?;
        Ok(resp.pid)
    }

    /// The state of a process; `timeout` bounds the call.
    pub async fn state(&self, exec_id: &str, timeout: Option<Duration>) -> Result<ProcessStatus> {
        let mut req = api::StateRequest::new();
        req.id = self.bundle.id.clone();
        req.exec_id = exec_id.to_string();
        let r = self
            .client
            .state(self.ctx(timeout), &req)
            .await
            .map_err(self.err("state"))?;
        Ok(ProcessStatus {
            container_id: self.bundle.id.clone(),
            id: if exec_id.is_empty() {
                self.bundle.id.clone()
            } else {
                exec_id.to_string()
            },
            pid: r.pid,
            status: status_from_pb(r.status.enum_value_or_default()),
            stdio: Stdio {
                stdin: r.stdin.clone(),
                stdout: r.stdout.clone(),
                stderr: r.stderr.clone(),
                terminal: r.terminal,
            },
            exit_status: r.exit_status,
            exited_at: time_from_pb(&r.exited_at),
        })
    }

    /// Send `signal` to a process (to every process of the task with `all`).
    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let mut req = api::KillRequest::new();
        req.id = self.bundle.id.clone();
        req.exec_id = exec_id.to_string();
        req.signal = signal;
        req.all = all;
        self.client
            .kill(self.ctx(None), &req)
            .await
            .map_err(self.err("kill"))?;
        Ok(())
    }

    /// Add a process to the task (not started yet): `spec` is its OCI process spec (JSON).
    pub async fn exec(&self, exec_id: &str, stdio: &Stdio, spec: Option<&Any>) -> Result<()> {
        berth_core::identifiers::validate(exec_id).map_err(|e| RuntimeError::InvalidExecId {
            id: exec_id.to_string(),
            reason: e.message().to_string(),
        })?;
        let mut req = api::ExecProcessRequest::new();
        req.id = self.bundle.id.clone();
        req.exec_id = exec_id.to_string();
        req.terminal = stdio.terminal;
        req.stdin = stdio.stdin.clone();
        req.stdout = stdio.stdout.clone();
        req.stderr = stdio.stderr.clone();
        req.spec = pb_any_field(spec);
        self.client
            .exec(self.ctx(None), &req)
            .await
            .map_err(self.err("exec"))?;
        Ok(())
    }

    /// Resize a process's terminal.
    pub async fn resize_pty(&self, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let mut req = api::ResizePtyRequest::new();
        req.id = self.bundle.id.clone();
        req.exec_id = exec_id.to_string();
        req.width = width;
        req.height = height;
        self.client
            .resize_pty(self.ctx(None), &req)
            .await
            .map_err(self.err("resize pty"))?;
        Ok(())
    }

    /// Close a process's stdin.
    pub async fn close_io(&self, exec_id: &str) -> Result<()> {
        let mut req = api::CloseIORequest::new();
        req.id = self.bundle.id.clone();
        req.exec_id = exec_id.to_string();
        req.stdin = true;
        self.client
            .close_io(self.ctx(None), &req)
            .await
            .map_err(self.err("close io"))?;
        Ok(())
    }

    /// Freeze every process of the task.
    pub async fn pause(&self) -> Result<()> {
        let mut req = api::PauseRequest::new();
        req.id = self.bundle.id.clone();
        self.client
            .pause(self.ctx(None), &req)
            .await
            .map_err(self.err("pause"))?;
        Ok(())
    }

    /// Thaw a paused task.
    pub async fn resume(&self) -> Result<()> {
        let mut req = api::ResumeRequest::new();
        req.id = self.bundle.id.clone();
        self.client
            .resume(self.ctx(None), &req)
            .await
            .map_err(self.err("resume"))?;
        Ok(())
    }

    /// The processes in the task's container.
    pub async fn pids(&self) -> Result<Vec<PidInfo>> {
        let mut req = api::PidsRequest::new();
        req.id = self.bundle.id.clone();
        let resp = self
            .client
            .pids(self.ctx(None), &req)
            .await
            .map_err(self.err("pids"))?;
        Ok(resp
            .processes
            .iter()
            .map(|p| PidInfo {
                pid: p.pid,
                exec_id: exec_id_of(&p.info),
                info: any_from_pb(&p.info),
            })
            .collect())
    }

    /// Change the task's resources (an OCI `LinuxResources`, opaque here) and annotations.
    pub async fn update(
        &self,
        resources: Option<&Any>,
        annotations: HashMap<String, String>,
    ) -> Result<()> {
        let mut req = api::UpdateTaskRequest::new();
        req.id = self.bundle.id.clone();
        req.resources = pb_any_field(resources);
        req.annotations = annotations;
        self.client
            .update(self.ctx(None), &req)
            .await
            .map_err(self.err("update"))?;
        Ok(())
    }

    /// The task's resource usage (for runc, cgroup metrics), opaque here.
    pub async fn stats(&self, timeout: Option<Duration>) -> Result<Option<Any>> {
        let mut req = api::StatsRequest::new();
        req.id = self.bundle.id.clone();
        let resp = self
            .client
            .stats(self.ctx(timeout), &req)
            .await
            .map_err(self.err("stats"))?;
        Ok(any_from_pb(&resp.stats))
    }

    /// Wait for a process to exit (returns at once if it has).
    pub async fn wait(&self, exec_id: &str) -> Result<ExitStatus> {
        let mut req = api::WaitRequest::new();
        req.id = self.bundle.id.clone();
        req.exec_id = exec_id.to_string();
        let resp = self
            .client
            .wait(self.ctx(None), &req)
            .await
            .map_err(self.err("wait"))?;
        Ok(ExitStatus {
            pid: 0,
            code: resp.exit_status,
            exited_at: time_from_pb(&resp.exited_at).unwrap_or_else(SystemTime::now),
        })
    }

    /// Delete an exec'd process that has exited; returns how it ended.
    pub async fn delete_exec(&self, exec_id: &str) -> Result<ExitStatus> {
        if exec_id.is_empty() {
            return Err(RuntimeError::InvalidExecId {
                id: String::new(),
                reason: "exec id cannot be empty".into(),
            });
        }
        self.delete_process(exec_id).await
    }

    /// Delete a process that has exited (for the init process: the task's container).
    pub(crate) async fn delete_process(&self, exec_id: &str) -> Result<ExitStatus> {
        let mut req = api::DeleteRequest::new();
        req.id = self.bundle.id.clone();
        req.exec_id = exec_id.to_string();
        let resp = self
            .client
            .delete(self.ctx(None), &req)
            .await
            .map_err(self.err("delete"))?;
        Ok(ExitStatus {
            pid: resp.pid,
            code: resp.exit_status,
            exited_at: time_from_pb(&resp.exited_at).unwrap_or_else(SystemTime::now),
        })
    }

    /// Ask the shim to exit (it does once it serves no task); a closed connection is fine.
    pub(crate) async fn shutdown(&self) {
        let mut req = api::ShutdownRequest::new();
        req.id = self.bundle.id.clone();
        match self
            .client
            .shutdown(self.ctx(Some(SHUTDOWN_TIMEOUT)), &req)
            .await
        {
            Ok(_) => {}
            Err(ttrpc::Error::RpcStatus(s)) => {
                tracing::warn!(id = %self.bundle.id, error = %s.message(), "shim shutdown")
            }
            // The shim exits while answering: the connection closing is the normal outcome.
            Err(_) => {}
        }
    }
}

/// The exec id in runc's `containerd.runc.v1.ProcessDetails`, the info of a pid that is an exec.
fn exec_id_of(
    info: &containerd_shim_protos::protobuf::MessageField<
        containerd_shim_protos::protobuf::well_known_types::any::Any,
    >,
) -> Option<String> {
    use containerd_shim_protos::protobuf::Message;
    let info = info.as_ref()?;
    if !info.type_url.ends_with("ProcessDetails") {
        return None;
    }
    containerd_shim_protos::shim::oci::ProcessDetails::parse_from_bytes(&info.value)
        .ok()
        .map(|d| d.exec_id)
        .filter(|id| !id.is_empty())
}

//! The task service (`containerd.task.v2.Task`) that containerd calls over ttrpc.
//!
//! One shim serves one task. Rule that keeps the shim deadlock-free: the process table's lock is
//! never held while a runtime command runs (the reaper must be able to take it to record exits
//! meanwhile); handlers read what they need, release it, run the command, and take it again.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use berth_core::mount::Mount;
use containerd_shim_protos::api::{
    CreateTaskRequest, CreateTaskResponse, DeleteResponse, ExecProcessRequest, KillRequest,
    PidsResponse, StartResponse, StateResponse, WaitResponse,
};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim::oci::ProcessDetails;
use containerd_shim_protos::types::task::ProcessInfo;

use crate::cgroups::Cgroup;
use crate::error::{Result, ShimError};
use crate::events::{any, timestamp, Publisher};
use crate::process::{Init, Process, Status, Table};
use crate::reaper::{Exit, Reaper};
use crate::runtime::{Runtime, RuntimeOptions};
use crate::stdio::{PreparedIo, StdioSpec};

mod task;

/// How long `Delete` waits for a process's output to be copied out.
const IO_DRAIN: Duration = Duration::from_secs(2);

/// The shim's task service.
#[derive(Debug)]
pub struct Service {
    id: String,
    namespace: String,
    reaper: Reaper,
    publisher: Arc<Publisher>,
    table: Mutex<Table>,
    /// Notified on every exit and delete.
    changed: Condvar,
    shutdown: Sender<()>,
}

impl Service {
    pub fn new(
        id: &str,
        namespace: &str,
        reaper: Reaper,
        publisher: Arc<Publisher>,
        shutdown: Sender<()>,
    ) -> Service {
        Service {
            id: id.to_string(),
            namespace: namespace.to_string(),
            reaper,
            publisher,
            table: Mutex::new(Table::default()),
            changed: Condvar::new(),
            shutdown,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record the exit of a child the reaper did not hand to a runtime command.
    pub fn on_exit(&self, exit: Exit) {
        let mut t = self.lock();
        match t.by_pid_mut(exit.pid) {
            Some(p) if p.starting => p.held_exit = Some(exit),
            Some(p) => {
                let id = p.id.clone();
                self.record_exit(&mut t, &id, exit);
            }
            None => t.stash(exit),
        }
    }

    /// Mark process `id` (the container id for init) stopped and announce it, once.
    fn record_exit(&self, t: &mut Table, id: &str, exit: Exit) {
        let is_init = id == self.id;
        let p = if is_init {
            t.init.as_mut().map(|i| &mut i.process)
        } else {
            t.execs.get_mut(id)
        };
        let Some(p) = p.filter(|p| p.exit.is_none()) else {
            return;
        };
        p.exit = Some(exit);
        p.status = Status::Stopped;
        log::debug!(
            "process {id} (pid {}) exited with {}",
            exit.pid,
            exit.status
        );
        self.publisher.publish(TaskExit {
            container_id: self.id.clone(),
            id: id.to_string(),
            pid: exit.pid,
            exit_status: exit.status,
            exited_at: timestamp(exit.at),
            ..Default::default()
        });
        self.changed.notify_all();
        if let Some(init) = t.init.as_ref().filter(|i| is_init && i.shared_pid_ns) {
            // Without a pid namespace of its own, the container's other processes outlive init.
            let (runtime, reaper, cid) =
                (init.runtime.clone(), self.reaper.clone(), self.id.clone());
            thread::spawn(move || runtime.kill(&reaper, &cid, 9, true));
        }
    }

    fn create_task(&self, req: CreateTaskRequest) -> Result<CreateTaskResponse> {
        if !req.checkpoint.is_empty() {
            return Err(ShimError::NotImplemented(
                "restore from a checkpoint".into(),
            ));
        }
        if req.id != self.id {
            return Err(ShimError::InvalidArgument(format!(
                "task {} in the shim of task {}",
                req.id, self.id
            )));
        }
        if self.lock().init.is_some() {
            return Err(ShimError::AlreadyExists(format!("task {}", req.id)));
        }
        let bundle = PathBuf::from(&req.bundle);
        let opts = RuntimeOptions::from_any(req.options.as_ref())?;
        let runtime = Runtime::new(&opts, &self.namespace, &bundle)?;
        runtime.save(&bundle)?;
        let rootfs = mount_rootfs(&bundle, &req)?;
        let created = self.create_container(&req, &bundle, &runtime, &opts);
        let (process, cgroup, shared_pid_ns, since) = match created {
            Ok(c) => c,
            Err(e) => {
                if let Some(r) = &rootfs {
                    // Nothing may use it any more; the dead container's mount namespace can
                    // keep it busy for seconds.
                    let _ = berth_mount::unmount_all(r, berth_mount::UnmountFlags::DETACH);
                }
                return Err(e);
            }
        };
        let pid = process.pid;
        if let Some(cg) = &cgroup {
            let (publisher, id) = (self.publisher.clone(), self.id.clone());
            let watched = cg.watch_oom(move || {
                log::info!("oom in task {id}");
                publisher.publish(TaskOOM {
                    container_id: id.clone(),
                    ..Default::default()
                });
            });
            if let Err(e) = watched {
                log::warn!("no oom events for task {}: {e}", self.id);
            }
        }
        let mut t = self.lock();
        t.init = Some(Init {
            process,
            bundle,
            runtime,
            rootfs,
            cgroup,
            shared_pid_ns,
            io_owner: (opts.io_uid, opts.io_gid),
        });
        self.publisher.publish(TaskCreate {
            container_id: self.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(TaskIO {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                ..Default::default()
            }),
            pid,
            ..Default::default()
        });
        if let Some(exit) = t.claim(pid, since) {
            let id = self.id.clone();
            self.record_exit(&mut t, &id, exit);
        }
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    /// Run the runtime's `create`: stdio, pid file, cgroup.
    fn create_container(
        &self,
        req: &CreateTaskRequest,
        bundle: &Path,
        runtime: &Runtime,
        opts: &RuntimeOptions,
    ) -> Result<(Process, Option<Cgroup>, bool, u64)> {
        let shared_pid_ns = shares_pid_namespace(bundle)?;
        let stdio = StdioSpec {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let owner = (opts.io_uid, opts.io_gid);
        let mut io = PreparedIo::new(&stdio, owner, &self.reaper, &self.id, &self.namespace)?;
        let pid_file = bundle.join("init.pid");
        let since = runtime.create(&self.reaper, &self.id, bundle, &pid_file, io.take_stdio())?;
        let started = read_pid(&pid_file).and_then(|pid| Ok((pid, io.start()?)));
        let (pid, io) = match started {
            Ok(s) => s,
            Err(e) => {
                let _ = runtime.delete(&self.reaper, &self.id, true);
                return Err(e);
            }
        };
        let cgroup = Cgroup::of_pid(pid)
            .inspect_err(|e| log::warn!("no cgroup for task {}: {e}", self.id))
            .ok();
        let mut process = Process::new(&self.id, stdio);
        process.pid = pid;
        process.io = Some(Arc::new(io));
        Ok((process, cgroup, shared_pid_ns, since))
    }

    fn start_init(&self) -> Result<StartResponse> {
        let runtime = {
            let mut t = self.lock();
            let init = t.init_mut(&self.id)?;
            if init.process.status != Status::Created {
                return Err(ShimError::FailedPrecondition(format!(
                    "task {} is {}",
                    self.id, init.process.status
                )));
            }
            init.process.starting = true;
            init.runtime.clone()
        };
        let started = runtime.start(&self.reaper, &self.id);
        let mut t = self.lock();
        let p = &mut t.init_mut(&self.id)?.process;
        p.starting = false;
        let pid = p.pid;
        let held = p.held_exit.take();
        if started.is_ok() {
            p.status = Status::Running;
            self.publisher.publish(TaskStart {
                container_id: self.id.clone(),
                pid,
                ..Default::default()
            });
        }
        if let Some(exit) = held {
            let id = self.id.clone();
            self.record_exit(&mut t, &id, exit);
        }
        started.map(|()| StartResponse {
            pid,
            ..Default::default()
        })
    }

    /// Register an exec (`Exec`): it runs on its `Start`.
    fn add_exec(&self, req: ExecProcessRequest) -> Result<()> {
        if req.exec_id.is_empty() {
            return Err(ShimError::InvalidArgument("empty exec id".into()));
        }
        let mut t = self.lock();
        t.process(&self.id, "")?.check_alive()?;
        if t.execs.contains_key(&req.exec_id) {
            return Err(ShimError::AlreadyExists(format!("exec {}", req.exec_id)));
        }
        let stdio = StdioSpec {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let mut p = Process::new(&req.exec_id, stdio);
        p.spec = req.spec.value.clone();
        t.execs.insert(req.exec_id.clone(), p);
        self.publisher.publish(TaskExecAdded {
            container_id: self.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        });
        Ok(())
    }

    fn start_exec(&self, exec_id: &str) -> Result<StartResponse> {
        let (runtime, bundle, owner, stdio, spec) = {
            let mut t = self.lock();
            let init = t.init(&self.id)?;
            if init.process.status != Status::Running {
                return Err(ShimError::FailedPrecondition(format!(
                    "task {} is {}: cannot start exec {exec_id}",
                    self.id, init.process.status
                )));
            }
            let (runtime, bundle, owner) =
                (init.runtime.clone(), init.bundle.clone(), init.io_owner);
            let p = t.process_mut(&self.id, exec_id)?;
            if p.status != Status::Created || p.starting {
                return Err(ShimError::FailedPrecondition(format!(
                    "exec {exec_id} is {}",
                    p.status
                )));
            }
            p.starting = true;
            (runtime, bundle, owner, p.stdio.clone(), p.spec.clone())
        };
        let started = self.run_exec(exec_id, (&runtime, &bundle, owner), &stdio, &spec);
        let mut t = self.lock();
        let p = t.process_mut(&self.id, exec_id)?;
        p.starting = false;
        let (pid, io, since) = started?;
        p.pid = pid;
        p.io = Some(Arc::new(io));
        p.status = Status::Running;
        self.publisher.publish(TaskExecStarted {
            container_id: self.id.clone(),
            exec_id: exec_id.to_string(),
            pid,
            ..Default::default()
        });
        if let Some(exit) = t.claim(pid, since) {
            self.record_exit(&mut t, exec_id, exit);
        }
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn run_exec(
        &self,
        exec_id: &str,
        (runtime, bundle, owner): (&Runtime, &Path, (u32, u32)),
        stdio: &StdioSpec,
        spec: &[u8],
    ) -> Result<(u32, crate::stdio::ProcessIo, u64)> {
        let spec_file = tempfile::Builder::new()
            .prefix(".exec-")
            .suffix(".json")
            .tempfile_in(bundle)
            .map_err(|e| ShimError::io("create exec process file", e))?;
        fs::write(spec_file.path(), spec)
            .map_err(|e| ShimError::io("write exec process file", e))?;
        let pid_file = bundle.join(format!("{exec_id}.pid"));
        let mut io = PreparedIo::new(stdio, owner, &self.reaper, &self.id, &self.namespace)?;
        let since = runtime.exec(
            &self.reaper,
            &self.id,
            spec_file.path(),
            &pid_file,
            io.take_stdio(),
        )?;
        let pid = read_pid(&pid_file)?;
        Ok((pid, io.start()?, since))
    }

    fn delete_init(&self) -> Result<DeleteResponse> {
        let (runtime, rootfs, io) = {
            let t = self.lock();
            let init = t.init(&self.id)?;
            init.process.check_deletable()?;
            (
                init.runtime.clone(),
                init.rootfs.clone(),
                init.process.io.clone(),
            )
        };
        if let Some(io) = io {
            io.wait(IO_DRAIN);
        }
        runtime.delete(&self.reaper, &self.id, false)?;
        if let Some(r) = &rootfs {
            unmount_rootfs(r)?;
        }
        let mut t = self.lock();
        let init = t
            .init
            .take()
            .ok_or_else(|| ShimError::NotFound(format!("task {}", self.id)))?;
        self.changed.notify_all();
        let p = init.process;
        let (status, at) = p
            .exit
            .map(|e| (e.status, e.at))
            .unwrap_or((0, std::time::SystemTime::now()));
        self.publisher.publish(TaskDelete {
            container_id: self.id.clone(),
            pid: p.pid,
            exit_status: status,
            exited_at: timestamp(at),
            ..Default::default()
        });
        Ok(DeleteResponse {
            pid: p.pid,
            exit_status: status,
            exited_at: timestamp(at),
            ..Default::default()
        })
    }

    fn delete_exec(&self, exec_id: &str) -> Result<DeleteResponse> {
        let p = {
            let mut t = self.lock();
            t.process(&self.id, exec_id)?.check_deletable()?;
            let p = t
                .execs
                .remove(exec_id)
                .ok_or_else(|| ShimError::NotFound(format!("exec {exec_id}")))?;
            let _ = fs::remove_file(t.init(&self.id)?.bundle.join(format!("{exec_id}.pid")));
            p
        };
        self.changed.notify_all();
        if let Some(io) = &p.io {
            io.wait(IO_DRAIN);
        }
        let (status, at) = p
            .exit
            .map(|e| (e.status, e.at))
            .unwrap_or((0, std::time::SystemTime::now()));
        Ok(DeleteResponse {
            pid: p.pid,
            exit_status: status,
            exited_at: timestamp(at),
            ..Default::default()
        })
    }

    fn kill(&self, req: &KillRequest) -> Result<()> {
        if req.exec_id.is_empty() {
            let runtime = {
                let t = self.lock();
                let init = t.init(&self.id)?;
                init.process.check_alive()?;
                init.runtime.clone()
            };
            return runtime.kill(&self.reaper, &self.id, req.signal, req.all);
        }
        let t = self.lock();
        let p = t.process(&self.id, &req.exec_id)?;
        p.check_alive()?;
        if p.pid == 0 {
            return Err(ShimError::FailedPrecondition(format!(
                "exec {} is not started",
                p.id
            )));
        }
        let signal = rustix::process::Signal::from_raw(req.signal as i32)
            .ok_or_else(|| ShimError::InvalidArgument(format!("signal {}", req.signal)))?;
        let pid = rustix::process::Pid::from_raw(p.pid as i32)
            .ok_or_else(|| ShimError::InvalidArgument(format!("pid {}", p.pid)))?;
        rustix::process::kill_process(pid, signal).map_err(|e| match e {
            rustix::io::Errno::SRCH => ShimError::NotFound("process already finished".into()),
            e => ShimError::io(format!("kill exec {}", p.id), e.into()),
        })
    }

    /// Pause or resume the container (the runtime freezes its cgroup).
    fn freeze(&self, pause: bool) -> Result<()> {
        let runtime = {
            let t = self.lock();
            let init = t.init(&self.id)?;
            let want = if pause {
                Status::Running
            } else {
                Status::Paused
            };
            if init.process.status != want {
                return Err(ShimError::FailedPrecondition(format!(
                    "task {} is {}",
                    self.id, init.process.status
                )));
            }
            init.runtime.clone()
        };
        if pause {
            runtime.pause(&self.reaper, &self.id)?;
        } else {
            runtime.resume(&self.reaper, &self.id)?;
        }
        let mut t = self.lock();
        let p = &mut t.init_mut(&self.id)?.process;
        if p.status != Status::Stopped {
            p.status = if pause {
                Status::Paused
            } else {
                Status::Running
            };
        }
        let id = self.id.clone();
        if pause {
            self.publisher.publish(TaskPaused {
                container_id: id,
                ..Default::default()
            });
        } else {
            self.publisher.publish(TaskResumed {
                container_id: id,
                ..Default::default()
            });
        }
        Ok(())
    }

    fn wait(&self, exec_id: &str) -> Result<WaitResponse> {
        let mut t = self.lock();
        loop {
            if let Some(exit) = t.process(&self.id, exec_id)?.exit {
                return Ok(WaitResponse {
                    exit_status: exit.status,
                    exited_at: timestamp(exit.at),
                    ..Default::default()
                });
            }
            t = self.changed.wait(t).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn state(&self, exec_id: &str) -> Result<StateResponse> {
        let t = self.lock();
        let init = t.init(&self.id)?;
        let p = t.process(&self.id, exec_id)?;
        Ok(StateResponse {
            id: p.id.clone(),
            bundle: init.bundle.display().to_string(),
            pid: p.pid,
            status: p.status.proto().into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status: p.exit.map(|e| e.status).unwrap_or(0),
            exited_at: p.exit.map(|e| timestamp(e.at)).unwrap_or_default(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        })
    }

    fn pids(&self) -> Result<PidsResponse> {
        let runtime = self.lock().init(&self.id)?.runtime.clone();
        let pids = runtime.ps(&self.reaper, &self.id)?;
        let t = self.lock();
        let processes = pids
            .into_iter()
            .map(|pid| {
                let exec = t.execs.values().find(|p| p.pid == pid && pid != 0);
                ProcessInfo {
                    pid,
                    info: exec
                        .map(|p| {
                            let details = ProcessDetails {
                                exec_id: p.id.clone(),
                                ..Default::default()
                            };
                            any("containerd.runc.v1.ProcessDetails", &details)
                        })
                        .into(),
                    ..Default::default()
                }
            })
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }
}

fn read_pid(path: &Path) -> Result<u32> {
    let text = fs::read_to_string(path)
        .map_err(|e| ShimError::io(format!("read {}", path.display()), e))?;
    text.trim().parse().map_err(|_| ShimError::BadFile {
        path: path.to_path_buf(),
        message: format!("not a pid: {text:?}"),
    })
}

/// Unmount a task's rootfs; if it stays busy (a container's mount namespace going away),
/// detach it: the task is gone, nothing may use it any more.
pub fn unmount_rootfs(rootfs: &Path) -> Result<()> {
    if let Err(e) = berth_mount::unmount_all(rootfs, berth_mount::UnmountFlags::empty()) {
        log::warn!("{e}: detaching it");
        berth_mount::unmount_all(rootfs, berth_mount::UnmountFlags::DETACH)?;
    }
    Ok(())
}

/// Mount the request's rootfs on `<bundle>/rootfs`; nothing when it has none (the bundle's
/// config then names its own root).
fn mount_rootfs(bundle: &Path, req: &CreateTaskRequest) -> Result<Option<PathBuf>> {
    if req.rootfs.is_empty() {
        return Ok(None);
    }
    let target = bundle.join("rootfs");
    fs::create_dir_all(&target)
        .map_err(|e| ShimError::io(format!("create {}", target.display()), e))?;
    let mounts: Vec<Mount> = req
        .rootfs
        .iter()
        .map(|m| Mount {
            kind: m.type_.clone(),
            source: m.source.clone(),
            target: (!m.target.is_empty()).then(|| m.target.clone()),
            options: m.options.clone(),
        })
        .collect();
    if let Err(e) = berth_mount::mount_all(&mounts, &target) {
        let _ = berth_mount::unmount_all(&target, berth_mount::UnmountFlags::empty());
        return Err(e.into());
    }
    Ok(Some(target))
}

/// True when the bundle's config gives the container no pid namespace of its own.
fn shares_pid_namespace(bundle: &Path) -> Result<bool> {
    let path = bundle.join("config.json");
    let text = fs::read(&path).map_err(|e| ShimError::io(format!("read {}", path.display()), e))?;
    let spec: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| ShimError::BadFile {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let own = spec["linux"]["namespaces"].as_array().is_some_and(|ns| {
        ns.iter()
            .any(|n| n["type"] == "pid" && n["path"].as_str().unwrap_or("").is_empty())
    });
    Ok(!own)
}

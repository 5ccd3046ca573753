//! The task manager: every task of every namespace, each served by its own shim.
//!
//! [`TaskManager::create`] makes the bundle, starts the shim with its binary's `start`, connects
//! to it and creates the task in it. The manager keeps only connections in memory; the record of
//! a task is its bundle ([`crate::bundle`]), so on start-up [`TaskManager::load_existing`] finds
//! every task again by scanning the bundles and reconnecting to each shim. A shim that is gone
//! (it crashed, or was killed while berthd was down) is **cleaned up after**: its binary's
//! `delete` removes what it left, `/tasks/exit` and `/tasks/delete` are published with the exit
//! status the binary reports, and the bundle is removed. The same happens when a shim dies while
//! berthd runs (the manager watches every shim process).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use containerd_shim_protos::events::task::{TaskDelete, TaskExit};
use containerd_shim_protos::protobuf::MessageFull;

use crate::binary::{self, ShimBinary};
use crate::bundle::{Bundle, ShimRecord, TASK_DIR};
use crate::error::{Result, RuntimeError};
use crate::shim::ShimTask;
use crate::types::{pb_time, CreateOpts, Event, Publisher};
use crate::watch;
use berth_core::containers::Any;
use berth_core::tasks::ExitStatus;
use berth_core::ErrorKind;

/// Where things are, for the manager and the shims it starts.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// berthd's state directory (tmpfs); bundles live under `<state>/io.containerd.runtime.v2.task`.
    pub state: PathBuf,
    /// berthd's root directory; work directories live under `<root>/io.containerd.runtime.v2.task`.
    pub root: PathBuf,
    /// berthd's gRPC socket, given to shims as `-address`.
    pub grpc_address: PathBuf,
    /// berthd's ttrpc socket (the Events service), given to shims as `TTRPC_ADDRESS`.
    pub ttrpc_address: PathBuf,
    /// berthd's executable, given to shims as `-publish-binary`.
    pub publish_binary: PathBuf,
    /// Where to look for shim binaries after `PATH` (berthd's own directory).
    pub shim_dirs: Vec<PathBuf>,
}

/// What [`TaskManager::load_existing`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Tasks whose shim answered: (namespace, id).
    pub reconnected: Vec<(String, String)>,
    /// Tasks whose shim was gone, with the exit their binary's `delete` reported.
    pub cleaned_up: Vec<(String, String, ExitStatus)>,
}

#[derive(Debug, Clone)]
enum Slot {
    /// Being created: the id is taken.
    Creating,
    Ready(Arc<ShimTask>),
}

#[derive(Debug)]
struct Inner {
    config: RuntimeConfig,
    publisher: Arc<dyn Publisher>,
    tasks: Mutex<BTreeMap<(String, String), Slot>>,
}

/// The tasks and their shims. Cheap to clone (a handle).
#[derive(Debug, Clone)]
pub struct TaskManager {
    inner: Arc<Inner>,
}

fn key(ns: &str, id: &str) -> (String, String) {
    (ns.to_string(), id.to_string())
}

/// `err`, with its class, behind `prefix`.
fn context(prefix: &str, err: RuntimeError) -> RuntimeError {
    RuntimeError::Shim {
        kind: err.kind(),
        message: format!("{prefix}: {err}"),
    }
}

fn event_any<M: MessageFull>(m: &M) -> Any {
    Any {
        type_url: M::descriptor().full_name().to_string(),
        value: m.write_to_bytes().expect("event encodes"),
    }
}

impl TaskManager {
    /// A manager with no tasks yet; events it makes go to `publisher`.
    pub fn new(config: RuntimeConfig, publisher: Arc<dyn Publisher>) -> TaskManager {
        TaskManager {
            inner: Arc::new(Inner {
                config,
                publisher,
                tasks: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Slot>> {
        self.inner.tasks.lock().expect("task table poisoned")
    }

    fn binary(&self, path: PathBuf) -> ShimBinary {
        let c = &self.inner.config;
        ShimBinary {
            path,
            grpc_address: c.grpc_address.clone(),
            ttrpc_address: c.ttrpc_address.clone(),
            publish_binary: c.publish_binary.clone(),
        }
    }

    /// Create task `opts.id` in `ns`: bundle, shim, task. Returns it and its init pid.
    pub async fn create(&self, ns: &str, opts: CreateOpts) -> Result<(Arc<ShimTask>, u32)> {
        let k = key(ns, &opts.id);
        {
            let mut tasks = self.tasks();
            if tasks.contains_key(&k) {
                return Err(RuntimeError::TaskExists(opts.id));
            }
            tasks.insert(k.clone(), Slot::Creating);
        }
        let made = self.create_task(ns, &opts).await;
        let mut tasks = self.tasks();
        match made {
            Ok((task, pid)) => {
                tasks.insert(k, Slot::Ready(task.clone()));
                drop(tasks);
                self.watch(&task);
                Ok((task, pid))
            }
            Err(e) => {
                tasks.remove(&k);
                Err(e)
            }
        }
    }

    async fn create_task(&self, ns: &str, opts: &CreateOpts) -> Result<(Arc<ShimTask>, u32)> {
        let c = &self.inner.config;
        let binary_path = binary::resolve(&opts.runtime, &c.shim_dirs)
            .map_err(|e| context("failed to resolve runtime path", e))?;
        let stale = Bundle::at(&c.state, &c.root, ns, &opts.id);
        if stale.path.exists() {
            // No task has it (the id is ours now): left over from a failed cleanup.
            tracing::warn!(bundle = %stale.path.display(), "removing stale bundle");
            stale.delete()?;
        }
        let bundle = Bundle::create(&c.state, &c.root, ns, &opts.id, &opts.spec.value)?;
        let task = match self.start_shim(&bundle, opts, binary_path).await {
            Ok(t) => t,
            Err(e) => {
                if let Err(de) = bundle.delete() {
                    tracing::warn!(error = %de, "remove bundle after failed start");
                }
                return Err(context("start failed", e));
            }
        };
        match task.create(opts).await {
            Ok(pid) => Ok((Arc::new(task), pid)),
            Err(e) => {
                // As containerd: take the task out of the shim, stop the shim, drop the bundle.
                let _ = task.delete_process("").await;
                task.shutdown().await;
                task.stop_background();
                if let Err(de) = bundle.delete() {
                    tracing::warn!(error = %de, "remove bundle after failed create");
                }
                Err(context("failed to create shim task", e))
            }
        }
    }

    async fn start_shim(
        &self,
        bundle: &Bundle,
        opts: &CreateOpts,
        binary_path: PathBuf,
    ) -> Result<ShimTask> {
        bundle.write_shim_record(&ShimRecord {
            runtime: opts.runtime.clone(),
            binary: binary_path.clone(),
        })?;
        let pump = watch::pump_log(bundle)?;
        let started = async {
            let address = self
                .binary(binary_path)
                .start(bundle, opts.runtime_options.as_ref())
                .await?;
            ShimTask::connect(bundle.clone(), &address).await
        }
        .await;
        match started {
            Ok(task) => {
                task.set_log_pump(pump);
                Ok(task)
            }
            Err(e) => {
                pump.abort();
                Err(e)
            }
        }
    }

    /// The task `id` of `ns`.
    pub fn get(&self, ns: &str, id: &str) -> Result<Arc<ShimTask>> {
        match self.tasks().get(&key(ns, id)) {
            Some(Slot::Ready(t)) => Ok(t.clone()),
            _ => Err(RuntimeError::TaskNotFound(id.to_string())),
        }
    }

    /// Every task of `ns`, by id.
    pub fn list(&self, ns: &str) -> Vec<Arc<ShimTask>> {
        self.tasks()
            .iter()
            .filter(|((n, _), _)| n == ns)
            .filter_map(|(_, s)| match s {
                Slot::Ready(t) => Some(t.clone()),
                Slot::Creating => None,
            })
            .collect()
    }

    /// Take `task` out of the table if it is still the one there; true if this call did.
    fn remove_slot(&self, task: &Arc<ShimTask>) -> bool {
        let mut tasks = self.tasks();
        let k = key(task.namespace(), task.id());
        match tasks.get(&k) {
            Some(Slot::Ready(t)) if Arc::ptr_eq(t, task) => {
                tasks.remove(&k);
                true
            }
            _ => false,
        }
    }

    /// Delete task `id` of `ns`: the shim deletes its container (refused while it runs), then
    /// the shim is shut down and the bundle removed. Returns how the init process ended.
    pub async fn delete(&self, ns: &str, id: &str) -> Result<ExitStatus> {
        let task = self.get(ns, id)?;
        match task.delete_process("").await {
            Ok(exit) => {
                if self.remove_slot(&task) {
                    task.stop_background();
                    task.shutdown().await;
                    if let Err(e) = task.bundle().delete() {
                        tracing::warn!(namespace = ns, id, error = %e, "remove bundle");
                    }
                }
                Ok(exit)
            }
            Err(e) if e.is_connection() => {
                // The shim is gone: clean up after it, as its watcher would have.
                if !self.remove_slot(&task) {
                    return Err(RuntimeError::TaskNotFound(id.to_string()));
                }
                task.stop_background();
                Ok(self.cleanup_dead(task.bundle(), true).await)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if self.remove_slot(&task) {
                    task.stop_background();
                    task.shutdown().await;
                    if let Err(be) = task.bundle().delete() {
                        tracing::warn!(namespace = ns, id, error = %be, "remove bundle");
                    }
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Watch `task`'s shim process; when it exits on its own, clean up after it.
    fn watch(&self, task: &Arc<ShimTask>) {
        let pid = task.shim_pid();
        if pid == 0 {
            return;
        }
        let mgr = self.clone();
        let t = task.clone();
        task.set_watcher(tokio::spawn(async move {
            if let Err(e) = watch::wait_for_exit(pid).await {
                tracing::warn!(id = %t.id(), pid, error = %e, "cannot watch shim");
                return;
            }
            if !mgr.remove_slot(&t) {
                return;
            }
            tracing::warn!(namespace = %t.namespace(), id = %t.id(), "shim disconnected");
            t.stop_log_pump();
            mgr.cleanup_dead(t.bundle(), true).await;
        }));
    }

    /// Clean up after the dead shim of `bundle`: its binary's `delete`, the events (with
    /// `publish`), the bundle. Returns the exit the binary reported (255 if it could not).
    async fn cleanup_dead(&self, bundle: &Bundle, publish: bool) -> ExitStatus {
        let (ns, id) = (&bundle.namespace, &bundle.id);
        let unknown = ExitStatus {
            pid: 0,
            code: 255,
            exited_at: SystemTime::now(),
        };
        let exit = match bundle.shim_record() {
            Some(rec) => match self.binary(rec.binary).delete(bundle).await {
                Ok(exit) => exit,
                Err(e) => {
                    tracing::warn!(namespace = %ns, id = %id, error = %e, "cleanup after dead shim");
                    unknown
                }
            },
            None => unknown,
        };
        if publish {
            let mut te = TaskExit::new();
            te.container_id = id.clone();
            te.id = id.clone();
            te.pid = exit.pid;
            te.exit_status = exit.code;
            te.exited_at = Some(pb_time(exit.exited_at)).into();
            self.publish(ns, "/tasks/exit", event_any(&te));
            let mut td = TaskDelete::new();
            td.container_id = id.clone();
            td.pid = exit.pid;
            td.exit_status = exit.code;
            td.exited_at = Some(pb_time(exit.exited_at)).into();
            self.publish(ns, "/tasks/delete", event_any(&td));
        }
        if let Err(e) = bundle.delete() {
            tracing::warn!(namespace = %ns, id = %id, error = %e, "remove bundle of dead shim");
        }
        tracing::warn!(
            namespace = %ns,
            id = %id,
            pid = exit.pid,
            exit_status = exit.code,
            "cleaned up after dead shim"
        );
        exit
    }

    fn publish(&self, ns: &str, topic: &str, event: Any) {
        let ev = Event {
            namespace: ns.to_string(),
            topic: topic.to_string(),
            timestamp: SystemTime::now(),
            event,
        };
        if let Err(e) = self.inner.publisher.publish(ev) {
            tracing::warn!(namespace = ns, topic, error = %e, "publish event");
        }
    }

    /// Find every task again after a restart: reconnect to each bundle's shim, clean up after
    /// those that are gone, and remove work directories no bundle uses (a reboot emptied the
    /// state directory).
    pub async fn load_existing(&self) -> LoadReport {
        let c = &self.inner.config;
        let mut report = LoadReport::default();
        for (ns, id) in Bundle::list(&c.state) {
            let bundle = Bundle::at(&c.state, &c.root, &ns, &id);
            let Some(address) = bundle.address() else {
                // The shim never started: nothing ran, nothing to report.
                tracing::warn!(namespace = %ns, id = %id, "removing bundle without a shim");
                self.cleanup_dead(&bundle, false).await;
                continue;
            };
            let pump = watch::pump_log(&bundle);
            match ShimTask::connect(bundle.clone(), &address).await {
                Ok(task) => {
                    if let Ok(p) = pump {
                        task.set_log_pump(p);
                    }
                    let task = Arc::new(task);
                    self.tasks()
                        .insert(key(&ns, &id), Slot::Ready(task.clone()));
                    self.watch(&task);
                    tracing::info!(namespace = %ns, id = %id, address = %address, "reconnected to shim");
                    report.reconnected.push((ns, id));
                }
                Err(e) => {
                    if let Ok(p) = pump {
                        p.abort();
                    }
                    tracing::warn!(namespace = %ns, id = %id, error = %e, "shim is gone");
                    let exit = self.cleanup_dead(&bundle, true).await;
                    report.cleaned_up.push((ns, id, exit));
                }
            }
        }
        let live: Vec<(String, String)> = self.tasks().keys().cloned().collect();
        for (ns, id) in Bundle::list_work(&c.root) {
            if !live.contains(&(ns.clone(), id.clone())) {
                let dir = c.root.join(TASK_DIR).join(&ns).join(&id);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "remove work directory");
                }
            }
        }
        report
    }
}

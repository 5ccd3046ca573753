//! A container's task: started detached, stopped, reaped, removed; its state; OOM kills.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_core::containers::{Container, ContainerStore};
use berth_core::tasks::{CreateTask, ExitStatus, ProcessStatus, Status, Stdio, Tasks};
use berth_core::ErrorKind;
use berth_images::SnapshotterProvider;

use super::{
    container_dir, log_path, make_private_dir, LABEL_EXITED_AT, LABEL_EXIT_CODE, LABEL_OOM_KILLED,
    LABEL_STOP_SIGNAL,
};
use crate::error::{OpsError, Result};
use crate::signals::{self, SIGKILL, SIGTERM};
use crate::Stores;

/// How long `stop` and `remove` wait for a process to die after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(30);

/// What a container is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// No task, and none has run (or its end was not recorded).
    Created,
    /// A task whose init process runs (or is frozen, `paused`).
    Running { pid: u32, paused: bool },
    /// A task that has not been started.
    TaskCreated { pid: u32 },
    /// Its init process exited: the task is stopped but not deleted, or was reaped and its
    /// end recorded in the labels.
    Exited {
        code: u32,
        at: Option<SystemTime>,
        oom: bool,
    },
}

impl State {
    /// Running or paused.
    pub fn is_up(&self) -> bool {
        matches!(self, State::Running { .. })
    }

    /// A word for JSON: `created`, `running`, `paused`, `exited`.
    pub fn word(&self) -> &'static str {
        match self {
            State::Created | State::TaskCreated { .. } => "created",
            State::Running { paused: false, .. } => "running",
            State::Running { paused: true, .. } => "paused",
            State::Exited { .. } => "exited",
        }
    }
}

/// The state of `c`, given its task's init process if it has a task.
pub fn state_of(c: &Container, task: Option<&ProcessStatus>) -> State {
    let oom = c.labels.get(LABEL_OOM_KILLED).is_some_and(|v| v == "true");
    if let Some(t) = task {
        return match t.status {
            Status::Running | Status::Pausing => State::Running {
                pid: t.pid,
                paused: false,
            },
            Status::Paused => State::Running {
                pid: t.pid,
                paused: true,
            },
            Status::Created => State::TaskCreated { pid: t.pid },
            Status::Stopped | Status::Unknown => State::Exited {
                code: t.exit_status,
                at: t.exited_at,
                oom,
            },
        };
    }
    match c
        .labels
        .get(LABEL_EXIT_CODE)
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(code) => State::Exited {
            code,
            at: c
                .labels
                .get(LABEL_EXITED_AT)
                .and_then(|t| humantime::parse_rfc3339(t).ok()),
            oom,
        },
        None => State::Created,
    }
}

/// The init process of container `id`'s task, if it has a task.
pub async fn task_of<S: Stores>(stores: &S, ns: &str, id: &str) -> Result<Option<ProcessStatus>> {
    match stores.tasks().get(ns, id, "").await {
        Ok(p) => Ok(Some(p)),
        Err(e) if e.is(ErrorKind::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Delete the exited task of `container` and record how it ended in its labels: the exit
/// code, when, and whether it was OOM-killed (`oom`, or an OOM kill counted in its cgroup).
pub async fn reap<S: Stores>(
    stores: &S,
    ns: &str,
    container: &Container,
    oom: bool,
) -> Result<ExitStatus> {
    let oom = oom
        || crate::stats::oom_kills(stores.tasks(), ns, &container.id)
            .await
            .is_some_and(|n| n > 0);
    let exit = stores.tasks().delete(ns, &container.id).await?;
    let mut update = Container::new(&container.id);
    update.labels = BTreeMap::from([
        (LABEL_EXIT_CODE.to_string(), exit.code.to_string()),
        (
            LABEL_EXITED_AT.to_string(),
            humantime::format_rfc3339(exit.exited_at).to_string(),
        ),
        (LABEL_OOM_KILLED.to_string(), oom.to_string()),
    ]);
    let paths: Vec<String> = update
        .labels
        .keys()
        .map(|k| format!("labels.{k}"))
        .collect();
    stores.containers().update(ns, update, &paths).await?;
    Ok(exit)
}

/// Wait up to `timeout` for the init process of `id` to exit; whether it did.
async fn wait_exit<S: Stores>(stores: &S, ns: &str, id: &str, timeout: Duration) -> Result<bool> {
    match tokio::time::timeout(timeout, stores.tasks().wait(ns, id, "")).await {
        Ok(r) => {
            r?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

/// Remove `container`: its task (with `force`, a running one is killed first; without, a
/// running one is refused), its record, its snapshot and its directory under `state_dir`.
pub async fn remove<S: Stores>(
    stores: &S,
    ns: &str,
    container: &Container,
    force: bool,
    state_dir: &Path,
) -> Result<()> {
    let id = &container.id;
    let dir = container_dir(state_dir, ns, id)?;
    if let Some(task) = task_of(stores, ns, id).await? {
        if task.status != Status::Stopped && task.status != Status::Created {
            if !force {
                return Err(OpsError::from(berth_core::Error::new(
                    ErrorKind::FailedPrecondition,
                    format!(
                        "container {id} is {}: stop it first, or remove it with -f",
                        task.status.as_str().to_lowercase()
                    ),
                )));
            }
            if task.status == Status::Paused {
                let _ = stores.tasks().resume(ns, id).await;
            }
            stores
                .tasks()
                .kill(ns, id, "", SIGKILL as u32, true)
                .await?;
            wait_exit(stores, ns, id, KILL_WAIT).await?;
        }
        stores.tasks().delete(ns, id).await?;
    }
    stores.containers().delete(ns, id).await?;
    if !container.snapshot_key.is_empty() {
        let sn = stores
            .snapshotters()
            .snapshotter(ns, &container.snapshotter, None)?;
        match sn.remove(&container.snapshot_key).await {
            Err(e) if !e.is(ErrorKind::NotFound) => {
                return Err(OpsError::from(e)
                    .context(format!("remove snapshot {}", container.snapshot_key)))
            }
            _ => {}
        }
    }
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(OpsError::io(format!("remove {}", dir.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Start `container` detached, as `berth start` does: a task whose stdout and stderr are
/// appended to the container's log (`file://` URI, which both containerd's runc shim and
/// berth's honour). A stopped task is reaped first; a created one is started; a running one
/// is refused. Returns the init process's pid.
pub async fn start<S: Stores>(
    stores: &S,
    ns: &str,
    container: &Container,
    state_dir: &Path,
) -> Result<u32> {
    let id = &container.id;
    match task_of(stores, ns, id).await? {
        Some(t) if t.status == Status::Stopped => {
            reap(stores, ns, container, false).await?;
        }
        Some(t) if t.status == Status::Created => {
            return Ok(stores.tasks().start(ns, id, "").await?);
        }
        Some(_) => {
            return Err(OpsError::from(berth_core::Error::new(
                ErrorKind::FailedPrecondition,
                format!("container {id} is already running"),
            )))
        }
        None => {}
    }
    let log = log_path(state_dir, ns, id)?;
    if let Some(dir) = log.parent() {
        make_private_dir(dir)?;
    }
    open_log(&log)?;
    let uri = format!("file://{}", log.display());
    let stdio = Stdio {
        stdin: String::new(),
        stdout: uri.clone(),
        stderr: uri,
        terminal: false,
    };
    let rootfs = if container.snapshot_key.is_empty() {
        Vec::new()
    } else {
        stores
            .snapshotters()
            .snapshotter(ns, &container.snapshotter, None)?
            .mounts(&container.snapshot_key)
            .await?
    };
    let create = CreateTask {
        container_id: id.clone(),
        rootfs,
        stdio,
        ..Default::default()
    };
    stores.tasks().create(ns, create).await?;
    match stores.tasks().start(ns, id, "").await {
        Ok(pid) => Ok(pid),
        Err(e) => {
            let _ = stores.tasks().delete(ns, id).await;
            Err(e.into())
        }
    }
}

/// Open (create, mode 0600) the log file at `path` for appending.
pub fn open_log(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(OpsError::io(format!("open {}", path.display())))
}

/// Stop `container`: its stop signal (the image's, else SIGTERM), then after `grace` SIGKILL
/// to every process; then reap the task. A container without a task is left as it is.
pub async fn stop<S: Stores>(
    stores: &S,
    ns: &str,
    container: &Container,
    grace: Duration,
) -> Result<()> {
    let id = &container.id;
    let Some(task) = task_of(stores, ns, id).await? else {
        return Ok(());
    };
    if task.status == Status::Paused {
        stores.tasks().resume(ns, id).await?;
    }
    if task.status != Status::Stopped {
        let signal = container
            .labels
            .get(LABEL_STOP_SIGNAL)
            .and_then(|s| signals::parse(s).ok())
            .unwrap_or(SIGTERM);
        let _ = stores.tasks().kill(ns, id, "", signal as u32, false).await;
        if !wait_exit(stores, ns, id, grace).await? {
            stores
                .tasks()
                .kill(ns, id, "", SIGKILL as u32, true)
                .await?;
            if !wait_exit(stores, ns, id, KILL_WAIT).await? {
                return Err(OpsError::from(berth_core::Error::internal(format!(
                    "container {id} did not exit after SIGKILL"
                ))));
            }
        }
    }
    reap(stores, ns, container, false).await?;
    Ok(())
}

/// A subscription to `/tasks/oom` events: the CLI's over the Events service, berthd's on its
/// own exchange.
pub trait OomEvents: Send + 'static {
    /// The container id of the next OOM event; `None` when the subscription ended.
    fn next_oom(&mut self) -> impl Future<Output = Option<String>> + Send;
}

/// A watch for an OOM event of one container, in the background.
#[derive(Debug)]
pub struct OomWatch {
    seen: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl OomWatch {
    /// Watch for OOM events of container `id` from the subscription `subscribe` makes. The
    /// subscription is made in the background too: containerd answers a subscription only with
    /// its first event.
    pub fn start<F, Fut, E>(id: &str, subscribe: F) -> OomWatch
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Option<E>> + Send,
        E: OomEvents,
    {
        let seen = Arc::new(AtomicBool::new(false));
        let flag = seen.clone();
        let id = id.to_string();
        let task = tokio::spawn(async move {
            let Some(mut events) = subscribe().await else {
                return;
            };
            while let Some(c) = events.next_oom().await {
                if c == id {
                    flag.store(true, Ordering::SeqCst);
                }
            }
        });
        OomWatch { seen, task }
    }

    /// Whether an OOM event of the container came.
    pub fn seen(&self) -> bool {
        self.seen.load(Ordering::SeqCst)
    }
}

impl Drop for OomWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the kernel's OOM killer ended container `id`: an OOM event (which may come just
/// after the exit), or an OOM kill counted in its cgroup; asked for up to a second.
pub async fn oom_killed<S: Stores>(stores: &S, ns: &str, id: &str, watch: &OomWatch) -> bool {
    for _ in 0..10 {
        if watch.seen() {
            return true;
        }
        if crate::stats::oom_kills(stores.tasks(), ns, id)
            .await
            .is_some_and(|n| n > 0)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: Status, code: u32) -> ProcessStatus {
        ProcessStatus {
            container_id: "c1".into(),
            id: "c1".into(),
            pid: 42,
            status,
            stdio: Stdio::default(),
            exit_status: code,
            exited_at: None,
        }
    }

    #[test]
    fn states_come_from_the_task_or_the_recorded_exit() {
        let mut c = Container::new("c1");
        assert_eq!(state_of(&c, None), State::Created);
        let s = state_of(&c, Some(&task(Status::Running, 0)));
        assert!(s.is_up());
        assert_eq!(s.word(), "running");
        let s = state_of(&c, Some(&task(Status::Paused, 0)));
        assert_eq!(s.word(), "paused");
        let s = state_of(&c, Some(&task(Status::Stopped, 7)));
        assert_eq!(
            s,
            State::Exited {
                code: 7,
                at: None,
                oom: false
            }
        );
        c.labels.insert(LABEL_EXIT_CODE.into(), "137".into());
        c.labels.insert(LABEL_OOM_KILLED.into(), "true".into());
        assert!(matches!(
            state_of(&c, None),
            State::Exited {
                code: 137,
                oom: true,
                ..
            }
        ));
    }
}

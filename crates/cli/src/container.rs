//! The container commands besides `run`, `exec`, `logs`, `stats` and `events`: `ps`, `start`,
//! `stop`, `kill`, `rm`, `pause`, `unpause`, `inspect`, `top`; and what they share.
//!
//! A container made by `berth run` is a container record (the spec, the snapshot whose key is
//! the container id) plus at most one task. berth keeps a little more in the record's labels:
//! `berth/dir`, the container's directory on this host (its `/etc` files and its log, under
//! the state directory: `<state>/containers/<namespace>/<id>/`); `berth/log`, the log file the
//! task's stdout and stderr go to; `berth/stop-signal` from the image; and once a task has been
//! reaped (deleted after it exited), `berth/exit-code`, `berth/exited-at` and
//! `berth/oom-killed`, so that `ps -a` still shows how it ended.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use berth_client::{RemoteContainers, RemoteSnapshotter, RemoteTasks};
use berth_core::containers::{Container, ContainerStore};
use berth_core::snapshots::Snapshotter;
use berth_core::tasks::{ExitStatus, ProcessStatus, Status as TaskStatus, Stdio as TaskIo, Tasks};
use berth_core::ErrorKind;
use clap::Subcommand;
use serde::Serialize;

use crate::output::{self, Table};
use crate::stdio::{libc_sig, parse_signal};
use crate::{Ctx, Format};

/// The container's directory on this host.
pub const LABEL_DIR: &str = "berth/dir";
/// The file the task's stdout and stderr are appended to.
pub const LABEL_LOG: &str = "berth/log";
/// The signal `stop` sends first (the image's `StopSignal`).
pub const LABEL_STOP_SIGNAL: &str = "berth/stop-signal";
/// How the last task ended, recorded when it was reaped.
pub const LABEL_EXIT_CODE: &str = "berth/exit-code";
pub const LABEL_EXITED_AT: &str = "berth/exited-at";
pub const LABEL_OOM_KILLED: &str = "berth/oom-killed";

/// The container commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List containers (running ones; all with -a).
    #[command(alias = "ls")]
    Ps {
        /// Show all containers, not only running ones.
        #[arg(short, long)]
        all: bool,
        /// Print only the ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Start stopped or created containers, detached (output to their log).
    Start {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Stop running containers: the stop signal (SIGTERM), then SIGKILL after the grace time.
    Stop {
        /// Seconds to wait before killing.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Send a signal to running containers' init processes.
    Kill {
        /// Signal, by name or number.
        #[arg(short, long, default_value = "SIGKILL")]
        signal: String,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove containers: their task, record, root filesystem snapshot and directory.
    #[command(alias = "remove")]
    Rm {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Freeze every process of containers.
    Pause {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Thaw paused containers.
    Unpause {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Show containers: record, state and runtime spec.
    Inspect {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List the processes of a container.
    Top { id: String },
}

/// The clients the container commands use.
#[derive(Debug, Clone)]
pub struct Clients {
    pub containers: RemoteContainers,
    pub tasks: RemoteTasks,
    pub channel: tonic::transport::Channel,
}

impl Clients {
    pub async fn new(ctx: &Ctx) -> Result<Clients> {
        let channel = ctx.channel().await?;
        Ok(Clients {
            containers: RemoteContainers::new(channel.clone()),
            tasks: RemoteTasks::new(channel.clone()),
            channel,
        })
    }
}

/// The container `id`, or the only one whose id starts with `id`.
pub async fn find(c: &Clients, ns: &str, id: &str) -> Result<Container> {
    match c.containers.get(ns, id).await {
        Ok(found) => return Ok(found),
        Err(e) if !e.is(ErrorKind::NotFound) => return Err(e.into()),
        Err(_) => {}
    }
    let all = c.containers.list(ns, &[]).await?;
    let mut matching = all.into_iter().filter(|x| x.id.starts_with(id));
    match (matching.next(), matching.next()) {
        (Some(one), None) if !id.is_empty() => Ok(one),
        (Some(_), Some(_)) => bail!("container id prefix {id:?} is ambiguous"),
        _ => bail!("container {id:?} in namespace {ns:?}: not found"),
    }
}

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

    /// `ps`'s STATUS column, in Docker's words.
    pub fn describe(&self) -> String {
        match self {
            State::Created | State::TaskCreated { .. } => "Created".into(),
            State::Running { paused: false, .. } => "Up".into(),
            State::Running { paused: true, .. } => "Up (Paused)".into(),
            State::Exited { code, at, oom } => {
                let mut s = format!("Exited ({code})");
                if let Some(at) = at {
                    s.push_str(&format!(" {} ago", output::age(*at)));
                }
                if *oom {
                    s.push_str(" (OOM-killed)");
                }
                s
            }
        }
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

/// The state of `c`, given its task's process if it has a task.
pub fn state_of(c: &Container, task: Option<&ProcessStatus>) -> State {
    if let Some(t) = task {
        return match t.status {
            TaskStatus::Running | TaskStatus::Pausing => State::Running {
                pid: t.pid,
                paused: false,
            },
            TaskStatus::Paused => State::Running {
                pid: t.pid,
                paused: true,
            },
            TaskStatus::Created => State::TaskCreated { pid: t.pid },
            TaskStatus::Stopped | TaskStatus::Unknown => State::Exited {
                code: t.exit_status,
                at: t.exited_at,
                oom: c.labels.get(LABEL_OOM_KILLED).is_some_and(|v| v == "true"),
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
            oom: c.labels.get(LABEL_OOM_KILLED).is_some_and(|v| v == "true"),
        },
        None => State::Created,
    }
}

/// The task's init process of container `id`, if it has a task.
pub async fn task_of(c: &Clients, ns: &str, id: &str) -> Result<Option<ProcessStatus>> {
    match c.tasks.get(ns, id, "").await {
        Ok(p) => Ok(Some(p)),
        Err(e) if e.is(ErrorKind::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Delete the exited task of `c` and record how it ended in the container's labels: its exit
/// code, when, and whether it was OOM-killed (`oom`, or an OOM kill counted in its cgroup).
pub async fn reap(c: &Clients, ns: &str, container: &Container, oom: bool) -> Result<ExitStatus> {
    let oom = oom
        || crate::stats::oom_kills(c, ns, &container.id)
            .await
            .is_some_and(|n| n > 0);
    let exit = c.tasks.delete(ns, &container.id).await?;
    let mut update = Container::new(&container.id);
    update.labels = BTreeMap::from([
        (LABEL_EXIT_CODE.to_string(), exit.code.to_string()),
        (
            LABEL_EXITED_AT.to_string(),
            output::time_precise(exit.exited_at),
        ),
        (LABEL_OOM_KILLED.to_string(), oom.to_string()),
    ]);
    let paths: Vec<String> = update
        .labels
        .keys()
        .map(|k| format!("labels.{k}"))
        .collect();
    c.containers.update(ns, update, &paths).await?;
    Ok(exit)
}

/// Remove the record of `container`, its snapshot and its directory (its task is gone).
pub async fn remove(c: &Clients, ns: &str, container: &Container) -> Result<()> {
    c.containers.delete(ns, &container.id).await?;
    if !container.snapshot_key.is_empty() {
        let sn = RemoteSnapshotter::new(c.channel.clone(), ns, &container.snapshotter);
        match sn.remove(&container.snapshot_key).await {
            Err(e) if !e.is(ErrorKind::NotFound) => {
                return Err(e).context(format!("remove snapshot {}", container.snapshot_key))
            }
            _ => {}
        }
    }
    if let Some(dir) = container.labels.get(LABEL_DIR) {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// The log file of `container` (its `berth/log` label, else `<dir>/log`).
pub fn log_path(container: &Container) -> Option<PathBuf> {
    container
        .labels
        .get(LABEL_LOG)
        .map(PathBuf::from)
        .or_else(|| {
            container
                .labels
                .get(LABEL_DIR)
                .map(|d| Path::new(d).join("log"))
        })
}

/// Create and start a task for `container` whose stdout and stderr are appended to its log
/// (`file://` URI, which both containerd's runc shim and berth's honour); returns the pid.
pub async fn start_detached(c: &Clients, ns: &str, container: &Container) -> Result<u32> {
    let io = match log_path(container) {
        Some(log) => {
            let uri = format!("file://{}", log.display());
            TaskIo {
                stdin: String::new(),
                stdout: uri.clone(),
                stderr: uri,
                terminal: false,
            }
        }
        None => TaskIo::default(),
    };
    let mounts = if container.snapshot_key.is_empty() {
        Vec::new()
    } else {
        RemoteSnapshotter::new(c.channel.clone(), ns, &container.snapshotter)
            .mounts(&container.snapshot_key)
            .await?
    };
    c.tasks
        .create(
            ns,
            berth_core::tasks::CreateTask {
                container_id: container.id.clone(),
                rootfs: mounts,
                stdio: io,
                ..Default::default()
            },
        )
        .await?;
    match c.tasks.start(ns, &container.id, "").await {
        Ok(pid) => Ok(pid),
        Err(e) => {
            let _ = c.tasks.delete(ns, &container.id).await;
            Err(e.into())
        }
    }
}

/// Wait up to `timeout` for the init process of `id` to exit.
async fn wait_exit(c: &Clients, ns: &str, id: &str, timeout: Duration) -> Result<bool> {
    match tokio::time::timeout(timeout, c.tasks.wait(ns, id, "")).await {
        Ok(r) => {
            r?;
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

async fn start(c: &Clients, ns: &str, id: &str) -> Result<()> {
    let container = find(c, ns, id).await?;
    match task_of(c, ns, &container.id).await? {
        Some(t) if t.status == TaskStatus::Stopped => {
            reap(c, ns, &container, false).await?;
        }
        Some(t) if t.status == TaskStatus::Created => {
            c.tasks.start(ns, &container.id, "").await?;
            return Ok(());
        }
        Some(_) => bail!("container {} is already running", container.id),
        None => {}
    }
    start_detached(c, ns, &container).await?;
    Ok(())
}

async fn stop(c: &Clients, ns: &str, id: &str, grace: Duration) -> Result<()> {
    let container = find(c, ns, id).await?;
    let Some(task) = task_of(c, ns, &container.id).await? else {
        return Ok(());
    };
    if task.status == TaskStatus::Paused {
        c.tasks.resume(ns, &container.id).await?;
    }
    if task.status != TaskStatus::Stopped {
        let signal = container
            .labels
            .get(LABEL_STOP_SIGNAL)
            .and_then(|s| parse_signal(s).ok())
            .unwrap_or(libc_sig::SIGTERM);
        let _ = c
            .tasks
            .kill(ns, &container.id, "", signal as u32, false)
            .await;
        if !wait_exit(c, ns, &container.id, grace).await? {
            c.tasks
                .kill(ns, &container.id, "", libc_sig::SIGKILL as u32, true)
                .await?;
            if !wait_exit(c, ns, &container.id, Duration::from_secs(30)).await? {
                bail!("container {} did not exit after SIGKILL", container.id);
            }
        }
    }
    reap(c, ns, &container, false).await?;
    Ok(())
}

async fn kill(c: &Clients, ns: &str, id: &str, signal: i32) -> Result<()> {
    let container = find(c, ns, id).await?;
    c.tasks
        .kill(ns, &container.id, "", signal as u32, false)
        .await
        .with_context(|| format!("kill container {}", container.id))?;
    Ok(())
}

async fn rm(c: &Clients, ns: &str, id: &str, force: bool) -> Result<()> {
    let container = find(c, ns, id).await?;
    if let Some(task) = task_of(c, ns, &container.id).await? {
        if task.status != TaskStatus::Stopped && task.status != TaskStatus::Created {
            if !force {
                bail!(
                    "container {} is {}: stop it first, or remove it with -f",
                    container.id,
                    task.status.to_string().to_lowercase()
                );
            }
            if task.status == TaskStatus::Paused {
                let _ = c.tasks.resume(ns, &container.id).await;
            }
            c.tasks
                .kill(ns, &container.id, "", libc_sig::SIGKILL as u32, true)
                .await?;
            wait_exit(c, ns, &container.id, Duration::from_secs(30)).await?;
        }
        c.tasks.delete(ns, &container.id).await?;
    }
    remove(c, ns, &container).await
}

/// Run a container command.
pub async fn run(ctx: &Ctx, command: Command) -> Result<()> {
    let c = Clients::new(ctx).await?;
    let ns = ctx.namespace.as_str();
    match command {
        Command::Ps { all, quiet } => ps(ctx, &c, all, quiet).await,
        Command::Start { ids } => {
            crate::for_each_reporting(&ids, |id| {
                let c = c.clone();
                async move { start(&c, ns, &id).await }
            })
            .await
        }
        Command::Stop { time, ids } => {
            crate::for_each_reporting(&ids, |id| {
                let c = c.clone();
                async move { stop(&c, ns, &id, Duration::from_secs(time)).await }
            })
            .await
        }
        Command::Kill { signal, ids } => {
            let signal = parse_signal(&signal)?;
            crate::for_each_reporting(&ids, |id| {
                let c = c.clone();
                async move { kill(&c, ns, &id, signal).await }
            })
            .await
        }
        Command::Rm { force, ids } => {
            crate::for_each_reporting(&ids, |id| {
                let c = c.clone();
                async move { rm(&c, ns, &id, force).await }
            })
            .await
        }
        Command::Pause { ids } => {
            crate::for_each_reporting(&ids, |id| {
                let c = c.clone();
                async move {
                    let container = find(&c, ns, &id).await?;
                    Ok(c.tasks.pause(ns, &container.id).await?)
                }
            })
            .await
        }
        Command::Unpause { ids } => {
            crate::for_each_reporting(&ids, |id| {
                let c = c.clone();
                async move {
                    let container = find(&c, ns, &id).await?;
                    Ok(c.tasks.resume(ns, &container.id).await?)
                }
            })
            .await
        }
        Command::Inspect { ids } => crate::inspect::inspect(ctx, &c, &ids).await,
        Command::Top { id } => crate::inspect::top(ctx, &c, &id).await,
    }
}

/// A container as `ps --format json` prints it.
#[derive(Debug, Serialize, PartialEq)]
pub struct PsJson {
    pub id: String,
    pub image: String,
    pub command: Vec<String>,
    pub created_at: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u32>,
    pub runtime: String,
    pub labels: BTreeMap<String, String>,
}

/// The process arguments in a container's spec.
pub fn command_of(c: &Container) -> Vec<String> {
    c.spec
        .as_ref()
        .and_then(|s| serde_json::from_slice::<serde_json::Value>(&s.value).ok())
        .and_then(|v| {
            v["process"]["args"].as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// `ps`'s table: CONTAINER ID, IMAGE, COMMAND, CREATED, STATUS, RUNTIME.
pub fn ps_table(rows: &[(Container, State)]) -> Table {
    let mut t = Table::new(&[
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "RUNTIME",
    ]);
    for (c, s) in rows {
        let mut cmd = command_of(c).join(" ");
        if cmd.chars().count() > 30 {
            cmd = cmd.chars().take(29).collect::<String>() + "…";
        }
        t.row(vec![
            c.id.clone(),
            c.image.clone(),
            format!("\"{cmd}\""),
            format!("{} ago", output::age(c.created_at)),
            s.describe(),
            c.runtime.name.clone(),
        ]);
    }
    t
}

async fn ps(ctx: &Ctx, c: &Clients, all: bool, quiet: bool) -> Result<()> {
    let ns = ctx.namespace.as_str();
    let mut containers = c.containers.list(ns, &[]).await?;
    containers.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let tasks = c.tasks.list(ns).await?;
    let rows: Vec<(Container, State)> = containers
        .into_iter()
        .map(|x| {
            let s = state_of(&x, tasks.iter().find(|t| t.container_id == x.id));
            (x, s)
        })
        .filter(|(_, s)| all || s.is_up())
        .collect();
    if quiet {
        return output::print_lines(rows.iter().map(|(x, _)| &x.id));
    }
    match ctx.format {
        Format::Table => ps_table(&rows).print(),
        Format::Json => output::print_json(
            &rows
                .iter()
                .map(|(x, s)| PsJson {
                    id: x.id.clone(),
                    image: x.image.clone(),
                    command: command_of(x),
                    created_at: output::time_precise(x.created_at),
                    status: s.word().to_string(),
                    pid: match s {
                        State::Running { pid, .. } | State::TaskCreated { pid } => Some(*pid),
                        _ => None,
                    },
                    exit_code: match s {
                        State::Exited { code, .. } => Some(*code),
                        _ => None,
                    },
                    runtime: x.runtime.name.clone(),
                    labels: x.labels.clone(),
                })
                .collect::<Vec<_>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::containers::Any;

    fn container() -> Container {
        let mut c = Container::new("c1");
        c.image = "docker.io/library/busybox:latest".into();
        c.runtime.name = "io.containerd.runc.v2".into();
        c.spec = Some(Any {
            type_url: berth_oci::SPEC_TYPE_URL.into(),
            value: br#"{"process":{"args":["sh","-c","sleep 1000"]}}"#.to_vec(),
        });
        c.created_at = SystemTime::now();
        c
    }

    fn task(status: TaskStatus, code: u32) -> ProcessStatus {
        ProcessStatus {
            container_id: "c1".into(),
            id: "c1".into(),
            pid: 42,
            status,
            stdio: TaskIo::default(),
            exit_status: code,
            exited_at: None,
        }
    }

    #[test]
    fn states_come_from_the_task_or_the_labels() {
        let mut c = container();
        assert_eq!(state_of(&c, None), State::Created);
        let s = state_of(&c, Some(&task(TaskStatus::Running, 0)));
        assert_eq!(s.describe(), "Up");
        assert!(s.is_up());
        let s = state_of(&c, Some(&task(TaskStatus::Paused, 0)));
        assert_eq!((s.describe().as_str(), s.word()), ("Up (Paused)", "paused"));
        let s = state_of(&c, Some(&task(TaskStatus::Stopped, 7)));
        assert_eq!(s.describe(), "Exited (7)");
        c.labels.insert(LABEL_EXIT_CODE.into(), "137".into());
        c.labels.insert(LABEL_OOM_KILLED.into(), "true".into());
        c.labels
            .insert(LABEL_EXITED_AT.into(), "2024-01-01T00:00:00Z".into());
        let s = state_of(&c, None);
        assert!(!s.is_up());
        let d = s.describe();
        assert!(d.starts_with("Exited (137) "), "{d}");
        assert!(d.ends_with(" ago (OOM-killed)"), "{d}");
    }

    #[test]
    fn ps_shows_the_command_quoted_and_short() {
        let text = ps_table(&[(container(), State::Created)]).render();
        let line = text.lines().nth(1).unwrap();
        assert!(line.starts_with("c1 "), "{line}");
        assert!(line.contains("\"sh -c sleep 1000\""), "{line}");
        assert!(line.contains("Created"), "{line}");
        assert_eq!(command_of(&Container::new("x")), Vec::<String>::new());
    }

    #[test]
    fn logs_live_in_the_container_dir() {
        let mut c = container();
        assert_eq!(log_path(&c), None);
        c.labels
            .insert(LABEL_DIR.into(), "/run/berth/containers/default/c1".into());
        assert_eq!(
            log_path(&c).unwrap(),
            Path::new("/run/berth/containers/default/c1/log")
        );
        c.labels.insert(LABEL_LOG.into(), "/elsewhere/log".into());
        assert_eq!(log_path(&c).unwrap(), Path::new("/elsewhere/log"));
    }
}

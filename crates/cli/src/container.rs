//! The container commands besides `run`, `exec`, `logs`, `stats` and `events`: `ps`, `start`,
//! `stop`, `kill`, `rm`, `pause`, `unpause`, `inspect`, `top`; and what they share.
//!
//! What a container is, and what starting, stopping, reaping and removing one does, is
//! berth-ops' ([`berth_ops::containers`]); this module has the flags and the output.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_client::{RemoteContainers, RemoteStores, RemoteTasks};
use berth_core::containers::{Container, ContainerStore};
use berth_core::tasks::{ProcessStatus, Tasks};
use berth_core::ErrorKind;
use berth_ops::containers::{self as ops, State};
use clap::Subcommand;
use serde::Serialize;

use crate::output::{self, Table};
use crate::stdio::parse_signal;
use crate::{Ctx, Format};

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
    /// The same, as the stores berth-ops' workflows run over.
    pub stores: RemoteStores,
    pub channel: tonic::transport::Channel,
}

impl Clients {
    pub async fn new(ctx: &Ctx) -> Result<Clients> {
        let channel = ctx.channel().await?;
        Ok(Clients {
            containers: RemoteContainers::new(channel.clone()),
            tasks: RemoteTasks::new(channel.clone()),
            stores: RemoteStores::new(channel.clone()),
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

/// `ps`'s STATUS column, in Docker's words.
pub fn describe(s: &State) -> String {
    match s {
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

/// The task's init process of container `id`, if it has a task.
pub async fn task_of(c: &Clients, ns: &str, id: &str) -> Result<Option<ProcessStatus>> {
    Ok(ops::task_of(&c.stores, ns, id).await?)
}

/// The directory of `container` on this host, if berth made one for it.
pub fn dir_of(ctx: &Ctx, container: &Container) -> Option<PathBuf> {
    ops::container_dir(&ctx.state_dir(), &ctx.namespace, &container.id)
        .ok()
        .filter(|d| d.is_dir())
}

/// The log file of `container`, if berth made a directory for it.
pub fn log_path(ctx: &Ctx, container: &Container) -> Option<PathBuf> {
    dir_of(ctx, container).map(|d| d.join("log"))
}

async fn start(ctx: &Ctx, c: &Clients, id: &str) -> Result<()> {
    let container = find(c, &ctx.namespace, id).await?;
    ops::start(&c.stores, &ctx.namespace, &container, &ctx.state_dir()).await?;
    Ok(())
}

async fn stop(c: &Clients, ns: &str, id: &str, grace: Duration) -> Result<()> {
    let container = find(c, ns, id).await?;
    Ok(ops::stop(&c.stores, ns, &container, grace).await?)
}

async fn kill(c: &Clients, ns: &str, id: &str, signal: i32) -> Result<()> {
    let container = find(c, ns, id).await?;
    c.tasks
        .kill(ns, &container.id, "", signal as u32, false)
        .await
        .with_context(|| format!("kill container {}", container.id))?;
    Ok(())
}

async fn rm(ctx: &Ctx, c: &Clients, id: &str, force: bool) -> Result<()> {
    let ns = ctx.namespace.as_str();
    let container = find(c, ns, id).await?;
    Ok(ops::remove(&c.stores, ns, &container, force, &ctx.state_dir()).await?)
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
                async move { start(ctx, &c, &id).await }
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
                async move { rm(ctx, &c, &id, force).await }
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
            describe(s),
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
            let s = ops::state_of(&x, tasks.iter().find(|t| t.container_id == x.id));
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
    use std::time::SystemTime;

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

    #[test]
    fn states_read_like_docker() {
        assert_eq!(
            describe(&State::Running {
                pid: 1,
                paused: false
            }),
            "Up"
        );
        assert_eq!(
            describe(&State::Running {
                pid: 1,
                paused: true
            }),
            "Up (Paused)"
        );
        let exited = State::Exited {
            code: 137,
            at: Some(SystemTime::now()),
            oom: true,
        };
        let d = describe(&exited);
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
}

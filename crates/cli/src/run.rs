//! `berth run`: a new container from an image, run in the foreground (exiting with the
//! container's exit code) or detached.
//!
//! The container is made by berth-ops ([`berth_ops::containers::new_container`]: image, spec,
//! user lookup, `/etc` files, snapshot and record, under a lease); this module turns the flags
//! into its options and runs the task: with FIFOs (or a pty) in the foreground, or detached
//! with its output in the container's log.

use berth_core::tasks::Tasks;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_client::{EventStream, RemoteImages};
use berth_core::images::Image;
use berth_core::tasks::CreateTask;
use berth_images::Platform;
use berth_oci::{BindMount, NetworkMode, Resources, RunOptions};
use berth_ops::containers::{self as ops, Created, HostFacts, NewContainer, OomEvents, OomWatch};
use clap::Args;

use crate::container::Clients;
use crate::stdio::{follow_terminal_size, forward_signals, Copies, Fifos, RawTerminal};
use crate::{output, Ctx};

/// `berth run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container (task, record, snapshot, files) when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container id; output goes to its log.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep stdin open and pass it to the container.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the container a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// The container id (default: 12 random hex digits).
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (KEY=value; KEY alone takes this shell's value).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from files, one KEY=value a line.
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Working directory in the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User: name, uid, name:group or uid:gid (names from the image's /etc/passwd).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Bind mount a host path: SRC:DST[:ro|rw].
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// Memory limit (e.g. 20m, 1g); the container gets no swap beyond it.
    #[arg(short = 'm', long, value_parser = parse_memory)]
    pub memory: Option<i64>,
    /// CPUs the container may use (e.g. 0.5).
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<f64>,
    /// Most processes at once (0 or less: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Network: none (own namespace, loopback only) or host.
    #[arg(long = "net", alias = "network", default_value = "none", value_parser = parse_net)]
    pub net: NetworkMode,
    /// The container's hostname (default: its id, or the host's with --net host).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Runtime (shim) to run it with, e.g. io.containerd.berth.v2.
    #[arg(long, env = "BERTH_RUNTIME", default_value = "io.containerd.runc.v2")]
    pub runtime: String,
    /// Add capabilities (e.g. NET_ADMIN, ALL).
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop capabilities (e.g. CHOWN, ALL).
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// OOM score adjustment (never below berthd's own).
    #[arg(long, allow_hyphen_values = true)]
    pub oom_score_adj: Option<i32>,
    /// Snapshotter for the root filesystem.
    #[arg(long, env = "BERTH_SNAPSHOTTER", default_value = "overlayfs")]
    pub snapshotter: String,
    /// Platform of the image to run (default: the host's).
    #[arg(long)]
    pub platform: Option<String>,
    /// The image (e.g. busybox, docker.io/library/busybox:latest).
    pub image: String,
    /// The command and its arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn parse_memory(s: &str) -> Result<i64, String> {
    berth_oci::parse_memory(s).map_err(|e| e.to_string())
}

fn parse_cpus(s: &str) -> Result<f64, String> {
    berth_oci::parse_cpus(s).map_err(|e| e.to_string())
}

fn parse_net(s: &str) -> Result<NetworkMode, String> {
    s.parse().map_err(|e: berth_oci::OciError| e.to_string())
}

/// Environment entries from `-e` and `--env-file`: `KEY=value` as is, `KEY` alone with this
/// process's value (left out when unset); blank and `#` lines of files skipped.
pub fn resolve_env(env: &[String], files: &[PathBuf]) -> Result<Vec<String>> {
    let mut entries: Vec<String> = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("read env file {}", f.display()))?;
        entries.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    entries.extend(env.iter().cloned());
    let mut out = Vec::new();
    for e in entries {
        match e.split_once('=') {
            Some(("", _)) => bail!("invalid environment entry {e:?}: empty name"),
            Some(_) => out.push(e),
            None => {
                if let Ok(v) = std::env::var(&e) {
                    out.push(format!("{e}={v}"));
                }
            }
        }
    }
    Ok(out)
}

/// berthd's `oom_score_adj` (the process at the other end of the socket), or ours when it
/// cannot be read.
fn daemon_oom_score_adj(address: &Path) -> i32 {
    let pid = std::os::unix::net::UnixStream::connect(address)
        .ok()
        .and_then(|s| rustix::net::sockopt::get_socket_peercred(&s).ok())
        .map(|cred| cred.pid.as_raw_nonzero().get() as u32);
    pid.and_then(|p| berth_oci::read_oom_score_adj(Some(p)).ok())
        .or_else(|| berth_oci::read_oom_score_adj(None).ok())
        .unwrap_or(0)
}

/// The image `reference`, as given or normalized (for `push` and `export`).
pub(crate) async fn find_image(images: &RemoteImages, ns: &str, reference: &str) -> Result<Image> {
    Ok(ops::find_image(images, ns, reference).await?)
}

/// What the flags say the spec should have beyond the image.
fn run_options(a: &RunArgs) -> Result<RunOptions> {
    let mut mounts = Vec::new();
    for v in &a.volumes {
        // A relative source is taken from the current directory (berth-ops makes it if missing).
        let (src, rest) = v.split_once(':').unwrap_or((v.as_str(), ""));
        let src = std::path::absolute(src).with_context(|| format!("volume {v:?}"))?;
        let m: BindMount = format!("{}:{rest}", src.display()).parse()?;
        mounts.push(m);
    }
    Ok(RunOptions {
        args: a.command.clone(),
        entrypoint: a.entrypoint.as_ref().map(|e| vec![e.clone()]),
        env: resolve_env(&a.env, &a.env_file)?,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        tty: a.tty,
        mounts,
        resources: Resources {
            memory: a.memory,
            memory_swap: None,
            cpus: a.cpus,
            pids_limit: a.pids_limit,
        },
        read_only: a.read_only,
        network: a.net,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        hostname: a.hostname.clone().unwrap_or_default(),
        oom_score_adj: a.oom_score_adj,
        ..Default::default()
    })
}

/// Run `run`.
pub async fn run(ctx: &Ctx, a: RunArgs) -> Result<()> {
    if a.detach && (a.tty || a.interactive) {
        bail!("-d cannot be combined with -i or -t: attach with berth exec -it instead");
    }
    if a.detach && a.rm {
        bail!("--rm needs a foreground run: remove a detached container with berth rm");
    }
    let id = a
        .name
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    berth_core::identifiers::validate(&id).map_err(|e| e.context("container name"))?;
    let c = Clients::new(ctx).await?;
    let ns = ctx.namespace.as_str();
    let platform = match &a.platform {
        Some(p) => p.parse::<Platform>()?,
        None => Platform::host(),
    };
    let req = NewContainer {
        id: id.clone(),
        image: a.image.clone(),
        snapshotter: a.snapshotter.clone(),
        runtime: a.runtime.clone(),
        labels: BTreeMap::new(),
        run: run_options(&a)?,
        platform,
    };
    let host = HostFacts::detect(ctx.state_dir(), daemon_oom_score_adj(ctx.address()));
    let made = ops::new_container(&c.stores, ns, req, &host).await?;
    if a.detach {
        ops::start(&c.stores, ns, &made.container, &ctx.state_dir()).await?;
        return output::print_lines([&id]);
    }
    foreground(ctx, &c, &a, made).await
}

/// `/tasks/oom` events from the Events service.
struct OomStream(EventStream);

impl OomEvents for OomStream {
    async fn next_oom(&mut self) -> Option<String> {
        loop {
            let e = self.0.next().await.ok()??;
            if let Some(id) = e.event.as_ref().and_then(crate::events::container_of) {
                return Some(id);
            }
        }
    }
}

/// Watch for an OOM event of container `id` of `ns`, in the background.
fn watch_oom(c: &Clients, ns: &str, id: &str) -> OomWatch {
    let filter = format!("topic==\"/tasks/oom\",namespace=={ns}");
    let events = berth_client::RemoteEvents::new(c.channel.clone());
    OomWatch::start(id, move || async move {
        events.subscribe(&[filter]).await.ok().map(OomStream)
    })
}

async fn foreground(ctx: &Ctx, c: &Clients, a: &RunArgs, made: Created) -> Result<()> {
    let ns = ctx.namespace.as_str();
    let id = made.container.id.clone();
    let oom_watch = watch_oom(c, ns, &id);
    let fifos = Fifos::new(&ctx.state_dir().join("fifo"), &id, a.interactive, a.tty)?;
    let tee = ops::log_path(&ctx.state_dir(), ns, &id)
        .and_then(|p| ops::open_log(&p))
        .ok()
        .map(|f| Arc::new(Mutex::new(f)));
    let mut copies = Copies::start(&fifos, tee);
    let started = async {
        c.tasks
            .create(
                ns,
                CreateTask {
                    container_id: id.clone(),
                    rootfs: made.rootfs.clone(),
                    stdio: fifos.io(a.tty),
                    ..Default::default()
                },
            )
            .await?;
        if let Err(e) = c.tasks.start(ns, &id, "").await {
            let _ = c.tasks.delete(ns, &id).await;
            return Err(e);
        }
        Ok(())
    };
    let raw = if a.tty { RawTerminal::enable() } else { None };
    if let Err(e) = started.await {
        drop(raw);
        if a.rm {
            let _ = ops::remove(&c.stores, ns, &made.container, true, &ctx.state_dir()).await;
        }
        return Err(e.into());
    }
    let (ns_s, id_s) = (ns.to_string(), id.clone());
    let helper = if a.tty {
        follow_terminal_size(c.tasks.clone(), ns_s.clone(), id_s.clone(), String::new()).await
    } else {
        forward_signals(c.tasks.clone(), ns_s.clone(), id_s.clone(), String::new())
    };
    let closer = copies.stdin_done.take().map(|done| {
        let tasks = c.tasks.clone();
        tokio::spawn(async move {
            if done.await.is_ok() {
                let _ = tasks.close_stdin(&ns_s, &id_s, "").await;
            }
        })
    });
    let waited = c.tasks.wait(ns, &id, "").await;
    helper.abort();
    if let Some(h) = closer {
        h.abort();
    }
    let exit = waited?;
    let oom = exit.code == 137 && ops::oom_killed(&c.stores, ns, &id, &oom_watch).await;
    drop(oom_watch);
    tokio::task::spawn_blocking(move || copies.wait_outputs(Duration::from_secs(10))).await?;
    drop(raw);
    drop(fifos);
    if a.rm {
        ops::remove(&c.stores, ns, &made.container, false, &ctx.state_dir()).await?;
    } else {
        ops::reap(&c.stores, ns, &made.container, oom).await?;
    }
    if oom {
        let limit = a
            .memory
            .map(|m| format!(" (memory limit {})", crate::stats::binary_size(m as u64)))
            .unwrap_or_default();
        eprintln!("berth: container {id} was OOM-killed{limit}");
    }
    crate::exit_with(exit.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_comes_from_flags_files_and_this_shell() {
        let dir = std::env::temp_dir().join(format!("berth-env-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("env");
        std::fs::write(&f, "# comment\nA=1\n\nB=from file\n").unwrap();
        let env = resolve_env(
            &[
                "B=2".to_string(),
                "PATH".to_string(),
                "BERTH_SURELY_UNSET_VAR".to_string(),
            ],
            &[f],
        )
        .unwrap();
        assert_eq!(env[0], "A=1");
        assert_eq!(env[1], "B=from file");
        assert_eq!(env[2], "B=2");
        assert!(env[3].starts_with("PATH="), "{env:?}");
        assert_eq!(env.len(), 4);
        assert!(resolve_env(&["=x".to_string()], &[]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

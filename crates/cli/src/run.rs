//! `berth run`: a new container from an image, run in the foreground (exiting with the
//! container's exit code) or detached.
//!
//! As `ctr run` and `nerdctl run` do it: the image is resolved for this platform and unpacked
//! if needed; the runtime spec is generated from the image config and the options
//! ([`berth_oci`]), with a user name looked up in the image's own `/etc/passwd` (read through
//! a read-only view of the image's top snapshot, mounted for a moment); an active snapshot
//! keyed by the container id is prepared on the image's top chain ID; the container record
//! (spec as an `Any` of containerd's spec type) is created, which from then on keeps the
//! snapshot from the collector; a temporary lease holds everything until then. The task gets
//! FIFOs (or a pty) in the foreground and the container's log file (`file://`) when detached.

use berth_core::tasks::Tasks;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use berth_client::{RemoteImages, RemoteLeases, RemoteSnapshotter};
use berth_core::containers::{Any, Container, ContainerStore, Runtime};
use berth_core::images::{Image, ImageStore};
use berth_core::labels::GC_EXPIRE;
use berth_core::leases::LeaseManager;
use berth_core::snapshots::{Mount, Snapshotter};
use berth_core::ErrorKind;
use berth_images::{Platform, UnpackOptions};
use berth_oci::{BindMount, ImageDefaults, NetworkMode, Resources, RunOptions, UserDb};
use clap::Args;

use crate::container::{
    self, reap, start_detached, Clients, LABEL_DIR, LABEL_LOG, LABEL_STOP_SIGNAL,
};
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

/// The name Docker would give `reference`: `busybox` is `docker.io/library/busybox:latest`,
/// `me/app` is `docker.io/me/app:latest`, a name with a registry keeps it; no tag means
/// `latest` (unless there is a digest).
pub fn normalize_reference(reference: &str) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tagged = last.contains(':');
    let first = name.split('/').next().unwrap_or(name);
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_domain {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    if !tagged && digest.is_none() {
        full.push_str(":latest");
    }
    if let Some(d) = digest {
        full.push('@');
        full.push_str(d);
    }
    full
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

/// True when `/sys/fs/cgroup` is the unified (v2) hierarchy.
// `f_type`'s width differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn host_cgroup_v2() -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    rustix::fs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.f_type as i64 == CGROUP2_SUPER_MAGIC)
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

pub(crate) async fn find_image(images: &RemoteImages, ns: &str, reference: &str) -> Result<Image> {
    match images.get(ns, reference).await {
        Ok(i) => Ok(i),
        Err(e) if e.is(ErrorKind::NotFound) => {
            let full = normalize_reference(reference);
            images
                .get(ns, &full)
                .await
                .with_context(|| format!("image {reference:?} (pull or import it first)"))
        }
        Err(e) => Err(e.into()),
    }
}

/// The image's user database, read through a read-only view of `chain` (under `lease`).
async fn read_users(sn: &RemoteSnapshotter, id: &str, chain: Option<&str>) -> Result<UserDb> {
    let key = format!("berth-run-{id}-users");
    let mounts = sn.view(&key, chain, BTreeMap::new()).await?;
    let read =
        tokio::task::spawn_blocking(move || berth_mount::with_temp_mount(&mounts, UserDb::read))
            .await;
    let _ = sn.remove(&key).await;
    let db = read?.context("mount the image to read its /etc/passwd")??;
    Ok(db)
}

/// Everything made for a container before its task: the record and its rootfs mounts.
struct Made {
    container: Container,
    mounts: Vec<Mount>,
    memory: Option<i64>,
}

async fn create(ctx: &Ctx, c: &Clients, a: &RunArgs, id: &str) -> Result<Made> {
    let ns = ctx.namespace.as_str();
    let image = find_image(&RemoteImages::new(c.channel.clone()), ns, &a.image).await?;
    let platform = match &a.platform {
        Some(p) => p.parse::<Platform>()?,
        None => Platform::host(),
    };
    let unpacker = berth_client::remote_unpacker(c.channel.clone());
    let resolved = unpacker.resolve(ns, &image.target, &platform).await?;
    let defaults = ImageDefaults::from_config(resolved.config.config.as_ref())?;

    let leases = RemoteLeases::new(c.channel.clone());
    let lease = format!("berth-run-{id}");
    let expire = output::time_seconds(SystemTime::now() + Duration::from_secs(3600));
    leases
        .create(
            ns,
            &lease,
            BTreeMap::from([(GC_EXPIRE.to_string(), expire)]),
        )
        .await
        .with_context(|| format!("create lease {lease}"))?;
    let made = create_under_lease(
        ctx, c, a, id, &image, &unpacker, &platform, &defaults, &lease,
    )
    .await;
    let _ = leases.delete(ns, &lease, false).await;
    made
}

#[allow(clippy::too_many_arguments)]
async fn create_under_lease(
    ctx: &Ctx,
    c: &Clients,
    a: &RunArgs,
    id: &str,
    image: &Image,
    unpacker: &berth_client::RemoteUnpacker,
    platform: &Platform,
    defaults: &ImageDefaults,
    lease: &str,
) -> Result<Made> {
    let ns = ctx.namespace.as_str();
    let opts = UnpackOptions {
        lease: Some(lease.to_string()),
        platform: platform.clone(),
        ..UnpackOptions::new(&a.snapshotter)
    };
    let unpacked = unpacker
        .unpack(ns, &image.target, &opts)
        .await
        .with_context(|| format!("unpack image {}", image.name))?;
    let chain = unpacked.chain_id.as_ref().map(ToString::to_string);
    let sn = RemoteSnapshotter::new(c.channel.clone(), ns, &a.snapshotter).with_lease(Some(lease));
    let user = a.user.as_deref().unwrap_or(&defaults.user);
    let users = if berth_oci::needs_lookup(user) {
        read_users(&sn, id, chain.as_deref()).await?
    } else {
        UserDb::default()
    };

    let dir = ctx.container_dir(id);
    let hostname = match (&a.hostname, a.net) {
        (Some(h), _) => h.clone(),
        (None, NetworkMode::Host) => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| id.to_string()),
        (None, NetworkMode::None) => id.chars().take(12).collect(),
    };
    let etc = berth_oci::write_etc_files(&dir, &hostname, a.net, Path::new("/etc"))?;
    let result = create_container(
        ctx, c, a, id, image, defaults, &users, &sn, chain, etc, &dir, &hostname,
    )
    .await;
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn create_container(
    ctx: &Ctx,
    c: &Clients,
    a: &RunArgs,
    id: &str,
    image: &Image,
    defaults: &ImageDefaults,
    users: &UserDb,
    sn: &RemoteSnapshotter,
    chain: Option<String>,
    etc: berth_oci::EtcFiles,
    dir: &Path,
    hostname: &str,
) -> Result<Made> {
    let ns = ctx.namespace.as_str();
    let mut mounts = Vec::new();
    for v in &a.volumes {
        // A relative source is taken from the current directory, and made if missing (as -v).
        let (src, rest) = v.split_once(':').unwrap_or((v.as_str(), ""));
        let src = std::path::absolute(src).with_context(|| format!("volume {v:?}"))?;
        let m: BindMount = format!("{}:{rest}", src.display()).parse()?;
        if !src.exists() {
            std::fs::create_dir_all(&src).with_context(|| format!("create {}", src.display()))?;
        }
        mounts.push(m);
    }
    let memory_swap = a
        .memory
        .filter(|_| Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists());
    let opts = RunOptions {
        id: id.to_string(),
        namespace: ns.to_string(),
        args: a.command.clone(),
        entrypoint: a.entrypoint.as_ref().map(|e| vec![e.clone()]),
        env: resolve_env(&a.env, &a.env_file)?,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        tty: a.tty,
        mounts,
        resources: Resources {
            memory: a.memory,
            memory_swap,
            cpus: a.cpus,
            pids_limit: a.pids_limit,
        },
        read_only: a.read_only,
        network: a.net,
        cgroup_ns: host_cgroup_v2(),
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        hostname: hostname.to_string(),
        etc_files: Some(etc),
        oom_score_adj: Some(berth_oci::restrict_oom_score_adj(
            a.oom_score_adj.unwrap_or(0),
            daemon_oom_score_adj(ctx.address()),
        )),
        cgroups_path: None,
    };
    let spec = berth_oci::generate(defaults, users, &opts)?;
    let rootfs = sn
        .prepare(id, chain.as_deref(), BTreeMap::new())
        .await
        .with_context(|| format!("prepare snapshot {id}"))?;
    let mut labels = BTreeMap::from([
        (LABEL_DIR.to_string(), dir.display().to_string()),
        (LABEL_LOG.to_string(), dir.join("log").display().to_string()),
    ]);
    if !defaults.stop_signal.is_empty() {
        labels.insert(LABEL_STOP_SIGNAL.to_string(), defaults.stop_signal.clone());
    }
    let mut record = Container::new(id);
    record.labels = labels;
    record.image = image.name.clone();
    record.runtime = Runtime {
        name: a.runtime.clone(),
        options: None,
    };
    record.spec = Some(Any {
        type_url: berth_oci::SPEC_TYPE_URL.to_string(),
        value: berth_oci::spec_to_json(&spec),
    });
    record.snapshotter = a.snapshotter.clone();
    record.snapshot_key = id.to_string();
    match c.containers.create(ns, record).await {
        Ok(container) => Ok(Made {
            container,
            mounts: rootfs,
            memory: a.memory,
        }),
        Err(e) => {
            let _ = sn.remove(id).await;
            Err(e).with_context(|| format!("create container {id}"))
        }
    }
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
    let made = create(ctx, &c, &a, &id).await?;
    if a.detach {
        let ns = ctx.namespace.as_str();
        start_detached(&c, ns, &made.container).await?;
        return output::print_lines([&id]);
    }
    foreground(ctx, &c, &a, made).await
}

/// Watch for a `/tasks/oom` event for `id` in the background; the flag is set when one comes.
/// The subscription is made in the background too: containerd answers a subscription only
/// with its first event.
fn watch_oom(c: &Clients, ns: &str, id: &str) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let filter = format!("topic==\"/tasks/oom\",namespace=={ns}");
    let events = berth_client::RemoteEvents::new(c.channel.clone());
    let seen = Arc::new(AtomicBool::new(false));
    let flag = seen.clone();
    let id = id.to_string();
    let task = tokio::spawn(async move {
        let Ok(mut stream) = events.subscribe(&[filter]).await else {
            return;
        };
        while let Ok(Some(e)) = stream.next().await {
            if e.event.as_ref().and_then(crate::events::container_of) == Some(id.clone()) {
                flag.store(true, Ordering::SeqCst);
            }
        }
    });
    (seen, task)
}

async fn foreground(ctx: &Ctx, c: &Clients, a: &RunArgs, made: Made) -> Result<()> {
    let ns = ctx.namespace.as_str();
    let id = made.container.id.clone();
    let (oom_seen, oom_watch) = watch_oom(c, ns, &id);
    let fifos = Fifos::new(&ctx.state_dir().join("fifo"), &id, a.interactive, a.tty)?;
    let tee = container::log_path(&made.container).and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
            .map(|f| Arc::new(Mutex::new(f)))
    });
    let mut copies = Copies::start(&fifos, tee);
    let started = async {
        c.tasks
            .create(
                ns,
                berth_core::tasks::CreateTask {
                    container_id: id.clone(),
                    rootfs: made.mounts.clone(),
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
            let _ = container::remove(c, ns, &made.container).await;
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
    let oom = exit.code == 137 && oom_killed(c, ns, &id, &oom_seen).await;
    oom_watch.abort();
    tokio::task::spawn_blocking(move || copies.wait_outputs(Duration::from_secs(10))).await?;
    drop(raw);
    drop(fifos);
    if a.rm {
        c.tasks.delete(ns, &id).await?;
        container::remove(c, ns, &made.container).await?;
    } else {
        reap(c, ns, &made.container, oom).await?;
    }
    if oom {
        let limit = made
            .memory
            .map(|m| format!(" (memory limit {})", crate::stats::binary_size(m as u64)))
            .unwrap_or_default();
        eprintln!("berth: container {id} was OOM-killed{limit}");
    }
    crate::exit_with(exit.code)
}

/// Whether the kernel's OOM killer ended container `id`: a `/tasks/oom` event (which may come
/// just after the exit), or an OOM kill counted in its cgroup.
async fn oom_killed(c: &Clients, ns: &str, id: &str, seen: &AtomicBool) -> bool {
    for _ in 0..10 {
        if seen.load(Ordering::SeqCst) {
            return true;
        }
        if crate::stats::oom_kills(c, ns, id)
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

    #[test]
    fn references_normalize_like_docker() {
        assert_eq!(
            normalize_reference("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize_reference("busybox:1.36"),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(normalize_reference("me/app"), "docker.io/me/app:latest");
        assert_eq!(
            normalize_reference("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(normalize_reference("ghcr.io/o/app:v1"), "ghcr.io/o/app:v1");
        assert_eq!(
            normalize_reference("busybox@sha256:abc"),
            "docker.io/library/busybox@sha256:abc"
        );
    }

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

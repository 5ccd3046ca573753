//! `new_container`: a container record, its snapshot and its directory, from an image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_core::containers::{Any, Container, ContainerStore, Runtime};
use berth_core::images::{Image, ImageStore};
use berth_core::snapshots::{Mount, Snapshotter};
use berth_core::ErrorKind;
use berth_images::{Platform, SnapshotterProvider, UnpackOptions, Unpacker};
use berth_oci::{ImageDefaults, NetworkMode, RunOptions, UserDb};

use super::{container_dir, make_private_dir, LABEL_STOP_SIGNAL};
use crate::error::{OpsError, Result};
use crate::leases::{with_lease, DEFAULT_EXPIRY};
use crate::Stores;

/// What to make a container of.
#[derive(Debug, Clone)]
pub struct NewContainer {
    /// The container id (an identifier).
    pub id: String,
    /// The image, by name as given (`busybox`, `docker.io/library/busybox:latest`).
    pub image: String,
    /// The snapshotter of the root filesystem (`overlayfs`).
    pub snapshotter: String,
    /// The runtime (`io.containerd.runc.v2`).
    pub runtime: String,
    /// The record's labels (the workflow adds `berth/stop-signal`).
    pub labels: BTreeMap<String, String>,
    /// What the spec says beyond the image. `id`, `namespace`, `etc_files` and `cgroup_ns` are
    /// set here; an empty `hostname` means the default (the id's first 12 characters, or the
    /// host's name with the host's network); `oom_score_adj` is clamped to the daemon's; bind
    /// mount sources must be absolute and are made when missing.
    pub run: RunOptions,
    /// The platform of the image to run.
    pub platform: Platform,
}

/// What a workflow needs to know of the host the container runs on.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// berthd's `oom_score_adj`: no container gets a lower one.
    pub oom_score_adj: i32,
    /// `/sys/fs/cgroup` is the unified (v2) hierarchy (containers get a cgroup namespace).
    pub cgroup_v2: bool,
    /// cgroup v1 swap accounting is on (a memory limit also limits swap).
    pub swap_accounting: bool,
    /// The host's name (a container on the host's network takes it).
    pub hostname: String,
    /// The host's `/etc`, where `hosts` and `resolv.conf` are copied from.
    pub etc: PathBuf,
    /// The directory under which containers' directories live.
    pub state_dir: PathBuf,
}

impl HostFacts {
    /// The facts of this host, with containers' directories under `state_dir` and berthd's
    /// `oom_score_adj` as given.
    pub fn detect(state_dir: PathBuf, oom_score_adj: i32) -> HostFacts {
        HostFacts {
            oom_score_adj,
            cgroup_v2: host_cgroup_v2(),
            swap_accounting: Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
                .exists(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
            etc: PathBuf::from("/etc"),
            state_dir,
        }
    }
}

/// True when `/sys/fs/cgroup` is the unified (v2) hierarchy.
// `f_type`'s width differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn host_cgroup_v2() -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    rustix::fs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.f_type as i64 == CGROUP2_SUPER_MAGIC)
}

/// A container made: its record and its root filesystem's mounts (for the task).
#[derive(Debug, Clone)]
pub struct Created {
    pub container: Container,
    pub rootfs: Vec<Mount>,
}

/// The image `reference`, as given or normalized.
pub async fn find_image<I: ImageStore>(images: &I, ns: &str, reference: &str) -> Result<Image> {
    match images.get(ns, reference).await {
        Ok(i) => Ok(i),
        Err(e) if e.is(ErrorKind::NotFound) => {
            // A reference that does not parse is looked up only as typed.
            let full = berth_core::reference::normalize(reference)
                .unwrap_or_else(|_| reference.to_string());
            images.get(ns, &full).await.map_err(|e| {
                OpsError::from(e).context(format!("image {reference:?} (pull or import it first)"))
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The image's user database, read through a read-only view of `chain` mounted for a moment.
async fn read_users(sn: &dyn Snapshotter, id: &str, chain: Option<&str>) -> Result<UserDb> {
    let key = format!("berth-run-{id}-users");
    let mounts = sn.view(&key, chain, BTreeMap::new()).await?;
    let read =
        tokio::task::spawn_blocking(move || berth_mount::with_temp_mount(&mounts, UserDb::read))
            .await;
    if let Err(e) = sn.remove(&key).await {
        tracing::warn!(key, error = %e, "remove view");
    }
    let read =
        read.map_err(|e| OpsError::from(berth_core::Error::internal(format!("read users: {e}"))))?;
    let db =
        read.map_err(|e| OpsError::from(e).context("mount the image to read its /etc/passwd"))??;
    Ok(db)
}

/// Make container `req.id` in `ns` from its image, as `berth run` does: find the image,
/// resolve it for the platform, unpack it, look the user up in its `/etc/passwd` and
/// `/etc/group`, write the container's `/etc` files in its directory, make the spec, prepare
/// the snapshot and create the record. All of it happens under a temporary lease, and what was
/// made is removed again when a step fails.
pub async fn new_container<S: Stores>(
    stores: &S,
    ns: &str,
    req: NewContainer,
    host: &HostFacts,
) -> Result<Created> {
    let id = req.id.clone();
    let dir = container_dir(&host.state_dir, ns, &id)?;
    match stores.containers().get(ns, &id).await {
        Ok(_) => {
            return Err(OpsError::from(berth_core::Error::already_exists(format!(
                "container {id}"
            ))))
        }
        Err(e) if e.is(ErrorKind::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    let image = find_image(stores.images(), ns, &req.image).await?;
    let unpacker = Unpacker::new(
        stores.content().clone(),
        stores.leases().clone(),
        stores.snapshotters().clone(),
        stores.applier().clone(),
    );
    let resolved = unpacker.resolve(ns, &image.target, &req.platform).await?;
    let defaults = ImageDefaults::from_config(resolved.config.config.as_ref())?;
    let lease = format!("berth-run-{id}");
    with_lease(
        stores.leases(),
        ns,
        &lease,
        DEFAULT_EXPIRY,
        |lease| async move {
            let opts = UnpackOptions {
                lease: Some(lease.clone()),
                platform: req.platform.clone(),
                ..UnpackOptions::new(&req.snapshotter)
            };
            let unpacked = unpacker
                .unpack(ns, &image.target, &opts)
                .await
                .map_err(|e| OpsError::from(e).context(format!("unpack image {}", image.name)))?;
            let chain = unpacked.chain_id.as_ref().map(ToString::to_string);
            let sn = stores
                .snapshotters()
                .snapshotter(ns, &req.snapshotter, Some(&lease))?;
            let user = req.run.user.as_deref().unwrap_or(&defaults.user);
            let users = if berth_oci::needs_lookup(user) {
                read_users(&*sn, &id, chain.as_deref()).await?
            } else {
                UserDb::default()
            };
            make_private_dir(&dir)?;
            let made = create(
                stores, ns, req, &image, &defaults, &users, &*sn, chain, &dir, host,
            )
            .await;
            if made.is_err() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            made
        },
    )
    .await
}

/// The spec, the snapshot and the record (the directory exists).
#[allow(clippy::too_many_arguments)]
async fn create<S: Stores>(
    stores: &S,
    ns: &str,
    req: NewContainer,
    image: &Image,
    defaults: &ImageDefaults,
    users: &UserDb,
    sn: &dyn Snapshotter,
    chain: Option<String>,
    dir: &Path,
    host: &HostFacts,
) -> Result<Created> {
    let id = req.id;
    let mut run = req.run;
    if run.hostname.is_empty() {
        run.hostname = match run.network {
            NetworkMode::Host if !host.hostname.is_empty() => host.hostname.clone(),
            _ => id.chars().take(12).collect(),
        };
    }
    run.etc_files = Some(berth_oci::write_etc_files(
        dir,
        &run.hostname,
        run.network,
        &host.etc,
    )?);
    for m in &run.mounts {
        let source = Path::new(&m.source);
        if !source.is_absolute() {
            return Err(OpsError::from(berth_core::Error::invalid_argument(
                format!("volume source {:?} is not absolute", m.source),
            )));
        }
        if !source.exists() {
            std::fs::create_dir_all(source)
                .map_err(OpsError::io(format!("create {}", m.source)))?;
        }
    }
    if run.resources.memory_swap.is_none() && host.swap_accounting {
        run.resources.memory_swap = run.resources.memory;
    }
    run.id = id.clone();
    run.namespace = ns.to_string();
    run.cgroup_ns = host.cgroup_v2;
    run.oom_score_adj = Some(berth_oci::restrict_oom_score_adj(
        run.oom_score_adj.unwrap_or(0),
        host.oom_score_adj,
    ));
    let spec = berth_oci::generate(defaults, users, &run)?;
    let rootfs = sn
        .prepare(&id, chain.as_deref(), BTreeMap::new())
        .await
        .map_err(|e| OpsError::from(e).context(format!("prepare snapshot {id}")))?;
    let mut labels = req.labels;
    if !defaults.stop_signal.is_empty() {
        labels.insert(LABEL_STOP_SIGNAL.to_string(), defaults.stop_signal.clone());
    }
    let mut record = Container::new(&id);
    record.labels = labels;
    record.image = image.name.clone();
    record.runtime = Runtime {
        name: req.runtime,
        options: None,
    };
    record.spec = Some(Any {
        type_url: berth_oci::SPEC_TYPE_URL.to_string(),
        value: berth_oci::spec_to_json(&spec),
    });
    record.snapshotter = req.snapshotter;
    record.snapshot_key = id.clone();
    match stores.containers().create(ns, record).await {
        Ok(container) => Ok(Created { container, rootfs }),
        Err(e) => {
            if let Err(re) = sn.remove(&id).await {
                tracing::warn!(id, error = %re, "remove snapshot after failed create");
            }
            Err(OpsError::from(e).context(format!("create container {id}")))
        }
    }
}

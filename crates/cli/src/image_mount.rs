//! `berth image mount|unmount`, as `ctr images mount|unmount` do it: the image is unpacked if
//! needed, a view (or with `--rw` an active snapshot) of its top chain ID is made under the key
//! TARGET, held by a lease also named TARGET that expires after 24 hours and is labelled
//! `containerd.io/gc.ref.snapshot.<snapshotter>=TARGET`, and mounted on TARGET. Unmounting
//! undoes all three. TARGET is made absolute first, so the key does not depend on the directory
//! the command runs in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use berth_client::{RemoteImages, RemoteLeases, RemoteSnapshotter, RemoteUnpacker};
use berth_core::images::ImageStore;
use berth_core::leases::LeaseManager;
use berth_core::snapshots::Snapshotter;
use berth_core::ErrorKind;
use berth_images::{gc_snapshot_label, Platform, UnpackOptions};
use berth_mount::UnmountFlags;
use serde::Serialize;
use tonic::transport::Channel;

use crate::output;
use crate::{Ctx, Format};

/// What `image mount` was asked.
#[derive(Debug, Clone)]
pub struct MountRequest {
    pub name: String,
    pub target: PathBuf,
    pub rw: bool,
    pub platform: Platform,
    pub snapshotter: String,
}

/// `image mount --format json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct MountJson {
    pub target: String,
    pub snapshotter: String,
    /// The snapshot key, which is also the lease ID.
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<String>,
    pub rw: bool,
}

/// The absolute form of `target` as a string: the snapshot key and the lease ID.
pub fn mount_key(target: &Path) -> Result<String> {
    let abs = std::path::absolute(target)
        .with_context(|| format!("resolve target {}", target.display()))?;
    abs.to_str()
        .map(str::to_string)
        .with_context(|| format!("target {} is not valid UTF-8", abs.display()))
}

/// The labels of the lease that holds a mount's snapshot `key` of `snapshotter`.
pub fn mount_lease_labels(
    snapshotter: &str,
    key: &str,
    now: SystemTime,
) -> BTreeMap<String, String> {
    // Lives as long as a workflow's lease (24 hours, as ctr's) if it is never unmounted.
    BTreeMap::from([
        berth_ops::leases::expire_label(now, berth_ops::leases::DEFAULT_EXPIRY),
        (gc_snapshot_label(snapshotter), key.to_string()),
    ])
}

/// Mount the image `req.name` on `req.target`.
pub async fn mount(
    ctx: &Ctx,
    channel: Channel,
    unpacker: &RemoteUnpacker,
    req: MountRequest,
) -> Result<()> {
    let ns = ctx.namespace.as_str();
    if !req.target.is_dir() {
        bail!("mount target {}: not a directory", req.target.display());
    }
    let key = mount_key(&req.target)?;
    let leases = RemoteLeases::new(channel.clone());
    let labels = mount_lease_labels(&req.snapshotter, &key, SystemTime::now());
    // A lease left by an earlier mount of the same target is reused, as ctr does.
    let created = match leases.create(ns, &key, labels).await {
        Ok(_) => true,
        Err(e) if e.is(ErrorKind::AlreadyExists) => false,
        Err(e) => return Err(e).context(format!("create lease {key}")),
    };
    let result = mount_under_lease(ns, channel, unpacker, &req, &key).await;
    match result {
        Ok(chain_id) => match ctx.format {
            Format::Table => output::print_lines([&key]),
            Format::Json => output::print_raw(&format!(
                "{}\n",
                serde_json::to_string_pretty(&MountJson {
                    target: key.clone(),
                    snapshotter: req.snapshotter.clone(),
                    key: key.clone(),
                    chain_id,
                    rw: req.rw,
                })?
            )),
        },
        Err(e) => {
            if created {
                let _ = leases.delete(ns, &key, false).await;
            }
            Err(e)
        }
    }
}

/// Unpack, make the snapshot and mount it; on failure the snapshot is removed again. Returns the
/// top chain ID.
async fn mount_under_lease(
    ns: &str,
    channel: Channel,
    unpacker: &RemoteUnpacker,
    req: &MountRequest,
    key: &str,
) -> Result<Option<String>> {
    let image = RemoteImages::new(channel.clone())
        .get(ns, &req.name)
        .await?;
    let opts = UnpackOptions {
        lease: Some(key.to_string()),
        platform: req.platform.clone(),
        ..UnpackOptions::new(&req.snapshotter)
    };
    let unpacked = unpacker
        .unpack(ns, &image.target, &opts)
        .await
        .with_context(|| format!("unpack image {}", req.name))?;
    let chain_id = unpacked.chain_id.as_ref().map(ToString::to_string);
    let sn = RemoteSnapshotter::new(channel, ns, &req.snapshotter).with_lease(Some(key));
    let parent = chain_id.as_deref();
    let made = if req.rw {
        sn.prepare(key, parent, BTreeMap::new()).await
    } else {
        sn.view(key, parent, BTreeMap::new()).await
    };
    let mounts = match made {
        Ok(m) => m,
        // Already made by an earlier, unmounted, mount of this target.
        Err(e) if e.is(ErrorKind::AlreadyExists) => sn.mounts(key).await?,
        Err(e) => return Err(e.into()),
    };
    let target = req.target.clone();
    let mounted = tokio::task::spawn_blocking(move || {
        let r = berth_mount::mount_all(&mounts, &target);
        if r.is_err() {
            let _ = berth_mount::unmount_all(&target, UnmountFlags::DETACH);
        }
        r
    })
    .await?;
    if let Err(e) = mounted {
        let _ = sn.remove(key).await;
        return Err(e.into());
    }
    Ok(chain_id)
}

/// Unmount `target` and remove its snapshot and lease.
pub async fn unmount(ctx: &Ctx, channel: Channel, snapshotter: &str, target: &Path) -> Result<()> {
    let ns = ctx.namespace.as_str();
    let key = mount_key(target)?;
    let path = PathBuf::from(&key);
    tokio::task::spawn_blocking(move || berth_mount::unmount_all(&path, UnmountFlags::empty()))
        .await??;
    let sn = RemoteSnapshotter::new(channel.clone(), ns, snapshotter);
    match sn.remove(&key).await {
        Err(e) if !e.is(ErrorKind::NotFound) => {
            return Err(e).context(format!("remove snapshot {key}"))
        }
        _ => {}
    }
    match RemoteLeases::new(channel).delete(ns, &key, false).await {
        Err(e) if !e.is(ErrorKind::NotFound) => {
            return Err(e).context(format!("delete lease {key}"))
        }
        _ => {}
    }
    output::print_lines([&key])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_absolute_targets() {
        assert_eq!(mount_key(Path::new("/mnt/x")).unwrap(), "/mnt/x");
        let rel = mount_key(Path::new("rootfs")).unwrap();
        assert!(rel.starts_with('/'), "{rel}");
        assert!(rel.ends_with("/rootfs"), "{rel}");
    }

    #[test]
    fn lease_labels_expire_in_a_day_and_hold_the_snapshot() {
        use berth_core::labels::GC_EXPIRE;
        use std::time::Duration;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let labels = mount_lease_labels("overlayfs", "/mnt/x", now);
        assert_eq!(labels[GC_EXPIRE], "2023-11-15T22:13:20Z");
        assert_eq!(labels["containerd.io/gc.ref.snapshot.overlayfs"], "/mnt/x");
        assert_eq!(labels.len(), 2);
    }
}

//! Pulling: fetch an image from its registry into the content store, record it, unpack it
//! (containerd's `client.Pull` with `WithPullUnpack`).
//!
//! Everything happens under a temporary lease: the blobs are safe from the collector from
//! their commit until the image record holds them, and the snapshots until the config's
//! `gc.ref.snapshot` label does. A failed pull leaves nothing behind but its ingests, which
//! stay so that pulling again resumes them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use berth_core::images::{Image, ImageStore};
use berth_core::{Descriptor, ErrorKind};
use berth_distribution::{CredentialProvider, PullProgress, Puller};
use berth_images::{Platform, UnpackOptions, Unpacked, Unpacker};

use crate::leases::{temporary_id, with_lease, DEFAULT_EXPIRY};
use crate::{OpsError, Result, Stores};

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to fetch from a multi-platform image and to unpack; None: this machine's.
    pub platform: Option<Platform>,
    /// Fetch the manifests of every platform (only `platform`'s is unpacked).
    pub all_platforms: bool,
    /// The snapshotter to unpack into; None: fetch only.
    pub snapshotter: Option<String>,
    /// Who gives the registry credentials for a host; None: anonymous. berth-ops never reads a
    /// docker config file by itself: a caller that wants one passes
    /// [`berth_distribution::DockerConfig`].
    pub credentials: Option<Arc<dyn CredentialProvider>>,
    /// Where `<host>/hosts.toml` files name mirrors (containerd's `config_path`); None: none.
    pub hosts_dir: Option<PathBuf>,
    /// Speak plain HTTP to the registry even when it is not this machine.
    pub plain_http: bool,
    /// How many blobs of one manifest download at once.
    pub max_concurrent_downloads: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            all_platforms: false,
            snapshotter: None,
            credentials: None,
            hosts_dir: None,
            plain_http: false,
            max_concurrent_downloads: berth_distribution::PullOptions::default()
                .max_concurrent_downloads,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image record's name (the normalized reference).
    pub name: String,
    /// What was fetched: the record's target, blobs downloaded and already there.
    pub fetched: berth_distribution::Pulled,
    /// What was unpacked, when a snapshotter was given.
    pub unpacked: Option<UnpackedImage>,
}

/// An image unpacked for one platform into one snapshotter.
#[derive(Debug, Clone)]
pub struct UnpackedImage {
    pub platform: Platform,
    pub snapshotter: String,
    pub unpacked: Unpacked,
}

/// Pull `reference` into namespace `ns` of `stores`: fetch it (see [`PullOptions`]), create
/// or update its image record, and unpack it when `opts.snapshotter` is set. `progress` hears
/// about each blob.
pub async fn pull<S: Stores>(
    stores: &S,
    ns: &str,
    reference: &str,
    opts: PullOptions,
    progress: &dyn PullProgress,
) -> Result<Pulled> {
    let name = berth_core::reference::normalize(reference)?;
    let lease = temporary_id("pull");
    with_lease(stores.leases(), ns, &lease, DEFAULT_EXPIRY, |lease| {
        pull_under(stores, ns, reference, &name, &opts, progress, lease)
    })
    .await
}

async fn pull_under<S: Stores>(
    stores: &S,
    ns: &str,
    reference: &str,
    name: &str,
    opts: &PullOptions,
    progress: &dyn PullProgress,
    lease: String,
) -> Result<Pulled> {
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let fetch = berth_distribution::PullOptions {
        platform: (!opts.all_platforms).then(|| platform.clone()),
        plain_http: opts.plain_http,
        credentials: opts.credentials.clone(),
        lease: Some(lease.clone()),
        max_concurrent_downloads: opts.max_concurrent_downloads,
        hosts_dir: opts.hosts_dir.clone(),
    };
    let fetched = Puller::new(stores.content())
        .pull(ns, reference, &fetch, progress)
        .await?;
    record_image(stores.images(), ns, name, &fetched.target).await?;
    let unpacked = match &opts.snapshotter {
        None => None,
        Some(snapshotter) => {
            let unpack = UnpackOptions {
                platform: platform.clone(),
                lease: Some(lease),
                ..UnpackOptions::new(snapshotter)
            };
            let unpacked = unpacker(stores)
                .unpack(ns, &fetched.target, &unpack)
                .await
                .map_err(|e| OpsError::from(e).context(format!("unpack {name} for {platform}")))?;
            Some(UnpackedImage {
                platform,
                snapshotter: snapshotter.clone(),
                unpacked,
            })
        }
    };
    Ok(Pulled {
        name: name.to_string(),
        fetched,
        unpacked,
    })
}

/// An unpacker over `stores`.
pub(crate) fn unpacker<S: Stores>(
    stores: &S,
) -> Unpacker<&S::Content, &S::Leases, &S::Snapshotters, &S::Applier> {
    Unpacker::new(
        stores.content(),
        stores.leases(),
        stores.snapshotters(),
        stores.applier(),
    )
}

/// Create the image record `name` -> `target`, or point the existing one at `target`.
pub async fn record_image<I: ImageStore>(
    images: &I,
    ns: &str,
    name: &str,
    target: &Descriptor,
) -> Result<()> {
    let image = Image {
        name: name.to_string(),
        labels: BTreeMap::new(),
        target: target.clone(),
        created_at: SystemTime::now(),
        updated_at: SystemTime::now(),
    };
    match images.create(ns, image.clone()).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            images
                .update(ns, image, &["target".to_string()])
                .await
                .map_err(|e| OpsError::from(e).context(format!("update image {name}")))?;
            Ok(())
        }
        Err(e) => Err(OpsError::from(e).context(format!("create image {name}"))),
    }
}

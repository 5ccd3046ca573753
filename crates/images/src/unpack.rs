//! Unpacking: turning an image's layers into committed snapshots, as containerd's `Unpack` does.
//!
//! For each layer, bottom first, the snapshot named by its chain ID is looked up (`stat`); when
//! it exists (an earlier unpack, or another image sharing the layer) the layer is skipped.
//! Otherwise an **extract snapshot** is prepared on the previous chain ID under a unique key
//! (`extract-<nanos>-<random>-<chain id>`), the layer blob is **applied** onto its mounts by a
//! [`LayerApplier`] (the Diff service), the digest of the applied tar is checked against the
//! config's diff ID, and the snapshot is committed under the chain ID. If that commit says
//! `AlreadyExists`, a concurrent unpack of the same layer won the race: the extract snapshot is
//! removed and its work dropped, which is success.
//!
//! Everything happens under a **lease** (a temporary one with an expiry, unless the caller gives
//! one), so the garbage collector leaves half-done work alone. Before the lease goes, the image's
//! config blob is labelled `containerd.io/gc.ref.snapshot.<snapshotter>=<top chain id>`: from
//! then on the snapshots live as long as the image that reaches the config does.
//!
//! Unpacking is idempotent (a second unpack applies nothing) and safe to run concurrently (two
//! unpacks of one image both succeed, each layer applied and committed once).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_core::content::{ContentStore, Info as ContentInfo};
pub use berth_core::diff::LayerApplier;
use berth_core::labels::{GC_EXPIRE, GC_REF_SNAPSHOT_PREFIX, UNCOMPRESSED};
use berth_core::leases::{LeaseManager, Resource};
use berth_core::snapshots::{Mount, Snapshotter};
use berth_core::{Descriptor, Digest, Error, ErrorKind};

use crate::error::{ImageError, Result};
use crate::platform::Platform;
use crate::resolve::{resolve, Layer, ResolvedImage};

/// How long the temporary lease of an unpack protects its work if the unpacker dies (containerd's
/// `WithLease` default).
pub const DEFAULT_LEASE_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// How many fresh extract keys are tried when a prepare says the key exists.
const KEY_ATTEMPTS: usize = 3;

/// Gives the snapshotter `name` as seen from a namespace, with what it creates joining a lease.
///
/// Snapshotters are bound to a namespace and a lease when they are made (berthd's
/// `Metadata::snapshotter`, the client's `RemoteSnapshotter::new(..).with_lease(..)`); the
/// unpacker needs one bound to the lease it creates, so it asks for it. Use [`snapshotter_fn`] to
/// make one from a closure.
pub trait SnapshotterProvider: Send + Sync {
    /// The snapshotter `name` in namespace `ns`; the snapshots it creates join `lease` if set.
    fn snapshotter(
        &self,
        ns: &str,
        name: &str,
        lease: Option<&str>,
    ) -> berth_core::Result<Arc<dyn Snapshotter>>;
}

impl<T: SnapshotterProvider> SnapshotterProvider for &T {
    fn snapshotter(
        &self,
        ns: &str,
        name: &str,
        lease: Option<&str>,
    ) -> berth_core::Result<Arc<dyn Snapshotter>> {
        (**self).snapshotter(ns, name, lease)
    }
}

/// A [`SnapshotterProvider`] made of a closure; see [`snapshotter_fn`].
#[derive(Clone)]
pub struct SnapshotterFn<F>(F);

impl<F> std::fmt::Debug for SnapshotterFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotterFn")
    }
}

/// A [`SnapshotterProvider`] calling `f(ns, name, lease)`, e.g.
/// `snapshotter_fn(|ns, name, lease| meta.snapshotter(ns, name, lease))`.
pub fn snapshotter_fn<F, S>(f: F) -> SnapshotterFn<F>
where
    F: Fn(&str, &str, Option<&str>) -> berth_core::Result<S> + Send + Sync,
    S: Snapshotter + 'static,
{
    SnapshotterFn(f)
}

impl<F, S> SnapshotterProvider for SnapshotterFn<F>
where
    F: Fn(&str, &str, Option<&str>) -> berth_core::Result<S> + Send + Sync,
    S: Snapshotter + 'static,
{
    fn snapshotter(
        &self,
        ns: &str,
        name: &str,
        lease: Option<&str>,
    ) -> berth_core::Result<Arc<dyn Snapshotter>> {
        Ok(Arc::new((self.0)(ns, name, lease)?))
    }
}

/// The label on an image's config blob that keeps its unpacked snapshots of `snapshotter` alive:
/// `containerd.io/gc.ref.snapshot.<snapshotter>`.
pub fn gc_snapshot_label(snapshotter: &str) -> String {
    format!("{GC_REF_SNAPSHOT_PREFIX}{snapshotter}")
}

/// How to unpack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackOptions {
    /// The snapshotter to unpack into (`overlayfs`, `native`).
    pub snapshotter: String,
    /// The platform whose manifest is unpacked when the image is an index.
    pub platform: Platform,
    /// A lease to work under; when `None`, a temporary lease is created and deleted at the end.
    pub lease: Option<String>,
    /// Expiry of the temporary lease.
    pub lease_expiry: Duration,
}

impl UnpackOptions {
    /// Unpack into `snapshotter` for the host's platform, under a temporary lease.
    pub fn new(snapshotter: &str) -> UnpackOptions {
        UnpackOptions {
            snapshotter: snapshotter.to_string(),
            platform: Platform::host(),
            lease: None,
            lease_expiry: DEFAULT_LEASE_EXPIRY,
        }
    }
}

/// What became of one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedLayer {
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// True when this unpack applied and committed the layer; false when its snapshot existed
    /// (or a concurrent unpack committed it first).
    pub applied: bool,
}

/// The result of an unpack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// The config blob, now labelled with the top chain ID.
    pub config: Descriptor,
    /// The top chain ID: the snapshot to prepare a rootfs on (`None` for an image without layers).
    pub chain_id: Option<Digest>,
    /// The layers, bottom first.
    pub layers: Vec<UnpackedLayer>,
}

impl Unpacked {
    /// How many layers this unpack applied.
    pub fn applied(&self) -> usize {
        self.layers.iter().filter(|l| l.applied).count()
    }
}

/// Unpacks images, generic over the stores it works with: the metadata store inside berthd, or
/// the remote clients in the CLI.
#[derive(Debug, Clone)]
pub struct Unpacker<C, L, P, A> {
    content: C,
    leases: L,
    snapshotters: P,
    applier: A,
}

/// A unique extract key for the layer `chain_id` (unique across processes and concurrent calls).
fn extract_key(chain_id: &Digest) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("extract-{nanos}-{}-{chain_id}", &random[..8])
}

/// A lease ID in the manner of containerd's `leases.WithRandomID`.
fn lease_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("unpack-{nanos}-{}", &random[..8])
}

impl<C, L, P, A> Unpacker<C, L, P, A>
where
    C: ContentStore,
    L: LeaseManager,
    P: SnapshotterProvider,
    A: LayerApplier,
{
    /// An unpacker reading blobs from `content`, taking leases from `leases`, snapshotters from
    /// `snapshotters`, and applying layers with `applier`.
    pub fn new(content: C, leases: L, snapshotters: P, applier: A) -> Self {
        Unpacker {
            content,
            leases,
            snapshotters,
            applier,
        }
    }

    /// The content store this unpacker reads.
    pub fn content(&self) -> &C {
        &self.content
    }

    /// Resolve the image whose target is `target` for `platform` (see [`resolve`]).
    pub async fn resolve(
        &self,
        ns: &str,
        target: &Descriptor,
        platform: &Platform,
    ) -> Result<ResolvedImage> {
        resolve(&self.content, ns, target, platform).await
    }

    /// True when the image whose target is `target` is unpacked in `snapshotter` for `platform`:
    /// the snapshot named by its top chain ID exists (always true for an image without layers).
    pub async fn is_unpacked(
        &self,
        ns: &str,
        target: &Descriptor,
        snapshotter: &str,
        platform: &Platform,
    ) -> Result<bool> {
        let image = self.resolve(ns, target, platform).await?;
        let Some(top) = image.chain_id() else {
            return Ok(true);
        };
        let sn = self.snapshotters.snapshotter(ns, snapshotter, None)?;
        exists(&*sn, top).await
    }

    /// Unpack the image whose target is `target` into `opts.snapshotter` (see the module docs).
    pub async fn unpack(
        &self,
        ns: &str,
        target: &Descriptor,
        opts: &UnpackOptions,
    ) -> Result<Unpacked> {
        let image = self.resolve(ns, target, &opts.platform).await?;
        let label = gc_snapshot_label(&opts.snapshotter);
        if let Some(done) = self.already_unpacked(ns, &image, opts, &label).await? {
            return Ok(done);
        }
        let (lease, temporary) = match &opts.lease {
            Some(l) => (l.clone(), false),
            None => (self.create_lease(ns, opts.lease_expiry).await?, true),
        };
        let result = self.unpack_under(ns, &image, opts, &label, &lease).await;
        if temporary {
            // What the lease held is referenced from the config now (or was removed on failure);
            // a lease that cannot be deleted expires by itself.
            let _ = self.leases.delete(ns, &lease, false).await;
        }
        result
    }

    /// The result of an unpack that has nothing to do: the top snapshot exists and the config
    /// already carries the label naming it.
    async fn already_unpacked(
        &self,
        ns: &str,
        image: &ResolvedImage,
        opts: &UnpackOptions,
        label: &str,
    ) -> Result<Option<Unpacked>> {
        let top = image.chain_id().map(Digest::to_string);
        let info = self
            .content
            .info(ns, &image.config_desc.digest)
            .await
            .map_err(ImageError::context(format!(
                "config {}",
                image.config_desc.digest
            )))?;
        if info.labels.get(label) != top.as_ref() {
            return Ok(None);
        }
        if let Some(top) = image.chain_id() {
            let sn = self.snapshotters.snapshotter(ns, &opts.snapshotter, None)?;
            if !exists(&*sn, top).await? {
                return Ok(None);
            }
        }
        Ok(Some(unpacked(image, vec![false; image.layers.len()])))
    }

    async fn create_lease(&self, ns: &str, expiry: Duration) -> Result<String> {
        let id = lease_id();
        let expires = humantime::format_rfc3339_seconds(SystemTime::now() + expiry).to_string();
        let labels = BTreeMap::from([(GC_EXPIRE.to_string(), expires)]);
        self.leases
            .create(ns, &id, labels)
            .await
            .map_err(ImageError::context("create unpack lease"))?;
        Ok(id)
    }

    async fn unpack_under(
        &self,
        ns: &str,
        image: &ResolvedImage,
        opts: &UnpackOptions,
        label: &str,
        lease: &str,
    ) -> Result<Unpacked> {
        let sn = self
            .snapshotters
            .snapshotter(ns, &opts.snapshotter, Some(lease))?;
        let resource_kind = format!("snapshots/{}", opts.snapshotter);
        let mut applied = Vec::with_capacity(image.layers.len());
        let mut parent: Option<&Digest> = None;
        for layer in &image.layers {
            // Hold the layer's snapshot in the lease before looking at it, so that a collection
            // between this stat and the prepare of the next layer cannot take it away.
            let resource = Resource {
                id: layer.chain_id.to_string(),
                kind: resource_kind.clone(),
            };
            self.leases
                .add_resource(ns, lease, resource)
                .await
                .map_err(ImageError::context(format!("lease {lease}")))?;
            let done = if exists(&*sn, &layer.chain_id).await? {
                false
            } else {
                self.apply_layer(ns, &*sn, layer, parent).await?
            };
            if done {
                self.label_uncompressed(ns, layer).await?;
            }
            applied.push(done);
            parent = Some(&layer.chain_id);
        }
        if let Some(top) = image.chain_id() {
            let info = ContentInfo {
                digest: image.config_desc.digest.clone(),
                size: image.config_desc.size,
                created_at: SystemTime::UNIX_EPOCH,
                updated_at: SystemTime::UNIX_EPOCH,
                labels: BTreeMap::from([(label.to_string(), top.to_string())]),
            };
            self.content
                .update(ns, info, &[format!("labels.{label}")])
                .await
                .map_err(ImageError::context(format!(
                    "label config {}",
                    image.config_desc.digest
                )))?;
        }
        Ok(unpacked(image, applied))
    }

    /// Label an applied layer's blob with its diff ID (`containerd.io/uncompressed`), as
    /// containerd's unpacker does.
    async fn label_uncompressed(&self, ns: &str, layer: &Layer) -> Result<()> {
        let info = ContentInfo {
            digest: layer.blob.digest.clone(),
            size: layer.blob.size,
            created_at: SystemTime::UNIX_EPOCH,
            updated_at: SystemTime::UNIX_EPOCH,
            labels: BTreeMap::from([(UNCOMPRESSED.to_string(), layer.diff_id.to_string())]),
        };
        self.content
            .update(ns, info, &[format!("labels.{UNCOMPRESSED}")])
            .await
            .map_err(ImageError::context(format!(
                "label layer {}",
                layer.blob.digest
            )))?;
        Ok(())
    }

    /// Apply one layer on `parent` and commit it under its chain ID. False when a concurrent
    /// unpack committed it first.
    async fn apply_layer(
        &self,
        ns: &str,
        sn: &dyn Snapshotter,
        layer: &Layer,
        parent: Option<&Digest>,
    ) -> Result<bool> {
        let name = layer.chain_id.to_string();
        let parent = parent.map(Digest::to_string);
        let ctx = || format!("unpack layer {} ({name})", layer.blob.digest);
        for _ in 0..KEY_ATTEMPTS {
            let key = extract_key(&layer.chain_id);
            let mounts = match sn.prepare(&key, parent.as_deref(), BTreeMap::new()).await {
                Ok(m) => m,
                Err(e) if e.is(ErrorKind::AlreadyExists) => continue,
                Err(e) => return Err(ImageError::Core(e.context(ctx()))),
            };
            let outcome = self
                .apply_and_commit(ns, sn, layer, &key, &name, mounts)
                .await;
            if outcome.is_err() {
                // The extract snapshot is this call's alone: never leave it behind.
                let _ = sn.remove(&key).await;
            }
            return match outcome {
                Ok(()) => Ok(true),
                Err(Step::Commit(e)) if e.is(ErrorKind::AlreadyExists) => Ok(false),
                Err(Step::Commit(e)) | Err(Step::Apply(e)) => {
                    Err(ImageError::Core(e.context(ctx())))
                }
                Err(Step::DiffId(e)) => Err(e),
            };
        }
        Err(ImageError::Core(Error::unavailable(format!(
            "{}: no free extract key after {KEY_ATTEMPTS} attempts",
            ctx()
        ))))
    }

    async fn apply_and_commit(
        &self,
        ns: &str,
        sn: &dyn Snapshotter,
        layer: &Layer,
        key: &str,
        name: &str,
        mounts: Vec<Mount>,
    ) -> std::result::Result<(), Step> {
        let applied = self
            .applier
            .apply(ns, layer.blob.clone(), mounts)
            .await
            .map_err(Step::Apply)?;
        if applied.digest != layer.diff_id {
            return Err(Step::DiffId(ImageError::WrongDiffId {
                layer: layer.blob.digest.clone(),
                expected: layer.diff_id.clone(),
                applied: applied.digest,
            }));
        }
        sn.commit(name, key, BTreeMap::new())
            .await
            .map_err(Step::Commit)
    }
}

/// Which step of a layer's unpack failed (only a commit's `AlreadyExists` is benign).
enum Step {
    Apply(Error),
    DiffId(ImageError),
    Commit(Error),
}

async fn exists(sn: &dyn Snapshotter, chain_id: &Digest) -> Result<bool> {
    match sn.stat(&chain_id.to_string()).await {
        Ok(_) => Ok(true),
        Err(e) if e.is(ErrorKind::NotFound) => Ok(false),
        Err(e) => Err(ImageError::Core(e.context(format!("stat {chain_id}")))),
    }
}

fn unpacked(image: &ResolvedImage, applied: Vec<bool>) -> Unpacked {
    Unpacked {
        config: image.config_desc.clone(),
        chain_id: image.chain_id().cloned(),
        layers: image
            .layers
            .iter()
            .zip(applied)
            .map(|(l, applied)| UnpackedLayer {
                diff_id: l.diff_id.clone(),
                chain_id: l.chain_id.clone(),
                applied,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_keys_are_unique_and_name_the_chain() {
        let chain = Digest::sha256_of(b"x");
        let a = extract_key(&chain);
        let b = extract_key(&chain);
        assert_ne!(a, b);
        assert!(a.starts_with("extract-"), "{a}");
        assert!(a.ends_with(&format!("-{chain}")), "{a}");
    }

    #[test]
    fn lease_ids_are_identifiers() {
        for _ in 0..50 {
            berth_core::identifiers::validate(&lease_id()).unwrap();
        }
    }

    #[test]
    fn gc_label_names_the_snapshotter() {
        assert_eq!(
            gc_snapshot_label("overlayfs"),
            "containerd.io/gc.ref.snapshot.overlayfs"
        );
    }
}

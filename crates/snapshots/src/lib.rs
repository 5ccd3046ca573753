//! berth-snapshots: the snapshotter backends.
//!
//! Two implementations of [`berth_core::snapshots::Snapshotter`] (read its docs for the
//! vocabulary: keys and names, parents, active/committed/view):
//!
//! - [`OverlaySnapshotter`] (`overlayfs`, the default): each snapshot stores only its own changes
//!   and the parents are stacked by overlayfs at mount time;
//! - [`NativeSnapshotter`] (`native`): each active snapshot is a full copy of its parent, mounted
//!   with a bind mount; slower and bigger, but needs nothing from the kernel.
//!
//! Each backend owns a root directory with its own redb metastore, `<root>/metadata.db` (layout
//! in [`metastore`]), and `<root>/snapshots/<id>/` per snapshot. Backends are not namespaced:
//! the metadata layer maps namespaced keys onto backend keys.
//!
//! Every operation is one metastore write transaction, with the filesystem step ordered so that
//! a crash leaves at worst an unreferenced directory, removed by `cleanup`.
//!
//! The work is disk-bound and blocking. Both backends are one generic type,
//! [`LocalSnapshotter`], over the blocking engine they share and their own directory layout; its
//! [`Snapshotter`] implementation runs each call on tokio's blocking pool. A daemon choosing a
//! backend at run time holds it as `Arc<dyn Snapshotter>`.

mod engine;
mod error;
mod fsutil;
pub mod metastore;
mod native;
pub mod overlay;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use berth_core::snapshots::{Info, Kind, Mount, Snapshotter, Usage};
use berth_core::Result;

use engine::{Engine, Layout};
pub use error::SnapshotError;
pub use fsutil::{copy_dir, disk_usage};
pub use native::NativeLayout;
pub use overlay::{supported as overlay_supported, OverlayLayout};

/// The overlayfs snapshotter (see [`overlay`]).
pub type OverlaySnapshotter = LocalSnapshotter<OverlayLayout>;
/// The native, copying snapshotter.
pub type NativeSnapshotter = LocalSnapshotter<NativeLayout>;

/// A snapshotter keeping its snapshots in a local directory, in the layout `L` (overlayfs or
/// native). The engine's work blocks on the disk; this is the one adapter that makes it an async
/// [`Snapshotter`], each call on tokio's blocking pool. Cheap to clone.
pub struct LocalSnapshotter<L> {
    engine: Arc<Engine<L>>,
}

impl<L> Clone for LocalSnapshotter<L> {
    fn clone(&self) -> Self {
        LocalSnapshotter {
            engine: self.engine.clone(),
        }
    }
}

impl<L: fmt::Debug> fmt::Debug for LocalSnapshotter<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSnapshotter")
            .field("engine", &self.engine)
            .finish()
    }
}

impl<L: Layout> LocalSnapshotter<L> {
    fn new(engine: Engine<L>) -> Self {
        LocalSnapshotter {
            engine: Arc::new(engine),
        }
    }

    /// The snapshotter's root directory.
    pub fn root(&self) -> &Path {
        self.engine.paths.root()
    }

    /// Run `f` on the engine on tokio's blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine<L>) -> error::Result<T> + Send + 'static,
    ) -> Result<T> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || f(&engine))
            .await
            .map_err(|e| berth_core::Error::internal(format!("snapshotter task failed: {e}")))?
            .map_err(Into::into)
    }
}

#[async_trait::async_trait]
impl<L: Layout> Snapshotter for LocalSnapshotter<L> {
    async fn stat(&self, key: &str) -> Result<Info> {
        let key = key.to_string();
        self.blocking(move |e| e.stat(&key)).await
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let paths = fieldpaths.to_vec();
        self.blocking(move |e| e.update(info, &paths)).await
    }

    async fn usage(&self, key: &str) -> Result<Usage> {
        let key = key.to_string();
        self.blocking(move |e| e.usage(&key)).await
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let key = key.to_string();
        self.blocking(move |e| e.mounts(&key)).await
    }

    async fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        let (key, parent) = (key.to_string(), parent.map(str::to_string));
        self.blocking(move |e| e.create(Kind::Active, &key, parent.as_deref(), labels))
            .await
    }

    async fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        let (key, parent) = (key.to_string(), parent.map(str::to_string));
        self.blocking(move |e| e.create(Kind::View, &key, parent.as_deref(), labels))
            .await
    }

    async fn commit(&self, name: &str, key: &str, labels: BTreeMap<String, String>) -> Result<()> {
        let (name, key) = (name.to_string(), key.to_string());
        self.blocking(move |e| e.commit(&name, &key, labels)).await
    }

    async fn remove(&self, key: &str) -> Result<()> {
        let key = key.to_string();
        self.blocking(move |e| e.remove(&key)).await
    }

    async fn walk(&self, filters: &[String]) -> Result<Vec<Info>> {
        let filters = filters.to_vec();
        self.blocking(move |e| e.walk(&filters)).await
    }

    async fn cleanup(&self) -> Result<()> {
        self.blocking(|e| e.cleanup()).await
    }
}

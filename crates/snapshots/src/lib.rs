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
//! The work is disk-bound and blocking. Both backends implement [`BlockingSnapshotter`] (the
//! same operations, synchronous and object-safe, for callers already on a blocking thread, such
//! as the garbage collector, or for choosing a backend at run time through
//! [`SharedSnapshotter`]); their async [`Snapshotter`] implementation runs each call on tokio's
//! blocking pool.

mod engine;
mod error;
mod fsutil;
pub mod metastore;
mod native;
pub mod overlay;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use berth_core::snapshots::{Info, Kind, Mount, Snapshotter, Usage};
use berth_core::Result;

pub use error::SnapshotError;
pub use fsutil::{copy_dir, disk_usage};
pub use native::NativeSnapshotter;
pub use overlay::{supported as overlay_supported, OverlaySnapshotter};

/// The operations of [`Snapshotter`], synchronous: each call blocks on disk I/O (and, for the
/// native backend's `prepare`, on copying a whole tree). Object-safe, so a daemon can hold
/// `Arc<dyn BlockingSnapshotter>` per configured backend. Semantics and errors are those of
/// [`Snapshotter`].
pub trait BlockingSnapshotter: Send + Sync + fmt::Debug + 'static {
    fn stat(&self, key: &str) -> Result<Info>;
    fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info>;
    fn usage(&self, key: &str) -> Result<Usage>;
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;
    fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>>;
    fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>>;
    fn commit(&self, name: &str, key: &str, labels: BTreeMap<String, String>) -> Result<()>;
    fn remove(&self, key: &str) -> Result<()>;
    fn walk(&self, filters: &[String]) -> Result<Vec<Info>>;
    fn cleanup(&self) -> Result<()>;
}

macro_rules! impl_blocking {
    ($t:ty) => {
        impl BlockingSnapshotter for $t {
            fn stat(&self, key: &str) -> Result<Info> {
                Ok(self.inner.stat(key)?)
            }
            fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
                Ok(self.inner.update(info, fieldpaths)?)
            }
            fn usage(&self, key: &str) -> Result<Usage> {
                Ok(self.inner.usage(key)?)
            }
            fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
                Ok(self.inner.mounts(key)?)
            }
            fn prepare(
                &self,
                key: &str,
                parent: Option<&str>,
                labels: BTreeMap<String, String>,
            ) -> Result<Vec<Mount>> {
                Ok(self.inner.create(Kind::Active, key, parent, labels)?)
            }
            fn view(
                &self,
                key: &str,
                parent: Option<&str>,
                labels: BTreeMap<String, String>,
            ) -> Result<Vec<Mount>> {
                Ok(self.inner.create(Kind::View, key, parent, labels)?)
            }
            fn commit(
                &self,
                name: &str,
                key: &str,
                labels: BTreeMap<String, String>,
            ) -> Result<()> {
                Ok(self.inner.commit(name, key, labels)?)
            }
            fn remove(&self, key: &str) -> Result<()> {
                Ok(self.inner.remove(key)?)
            }
            fn walk(&self, filters: &[String]) -> Result<Vec<Info>> {
                Ok(self.inner.walk(filters)?)
            }
            fn cleanup(&self) -> Result<()> {
                Ok(self.inner.cleanup()?)
            }
        }
    };
}

impl_blocking!(OverlaySnapshotter);
impl_blocking!(NativeSnapshotter);

/// Any [`BlockingSnapshotter`] behind an `Arc`, usable as an async [`Snapshotter`]: what a
/// daemon keeps per configured backend when the backend is chosen at run time.
#[derive(Debug, Clone)]
pub struct SharedSnapshotter {
    inner: Arc<dyn BlockingSnapshotter>,
}

impl SharedSnapshotter {
    pub fn new(backend: impl BlockingSnapshotter) -> SharedSnapshotter {
        SharedSnapshotter {
            inner: Arc::new(backend),
        }
    }

    /// The backend, for synchronous calls.
    pub fn blocking(&self) -> &dyn BlockingSnapshotter {
        &*self.inner
    }
}

impl BlockingSnapshotter for SharedSnapshotter {
    fn stat(&self, key: &str) -> Result<Info> {
        self.inner.stat(key)
    }
    fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        self.inner.update(info, fieldpaths)
    }
    fn usage(&self, key: &str) -> Result<Usage> {
        self.inner.usage(key)
    }
    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        self.inner.mounts(key)
    }
    fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.inner.prepare(key, parent, labels)
    }
    fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.inner.view(key, parent, labels)
    }
    fn commit(&self, name: &str, key: &str, labels: BTreeMap<String, String>) -> Result<()> {
        self.inner.commit(name, key, labels)
    }
    fn remove(&self, key: &str) -> Result<()> {
        self.inner.remove(key)
    }
    fn walk(&self, filters: &[String]) -> Result<Vec<Info>> {
        self.inner.walk(filters)
    }
    fn cleanup(&self) -> Result<()> {
        self.inner.cleanup()
    }
}

/// Run a blocking snapshotter call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| berth_core::Error::internal(format!("snapshotter task failed: {e}")))?
}

macro_rules! impl_async {
    ($t:ty) => {
        impl Snapshotter for $t {
            async fn stat(&self, key: &str) -> Result<Info> {
                let (this, key) = (self.clone(), key.to_string());
                blocking(move || BlockingSnapshotter::stat(&this, &key)).await
            }
            async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
                let (this, paths) = (self.clone(), fieldpaths.to_vec());
                blocking(move || BlockingSnapshotter::update(&this, info, &paths)).await
            }
            async fn usage(&self, key: &str) -> Result<Usage> {
                let (this, key) = (self.clone(), key.to_string());
                blocking(move || BlockingSnapshotter::usage(&this, &key)).await
            }
            async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
                let (this, key) = (self.clone(), key.to_string());
                blocking(move || BlockingSnapshotter::mounts(&this, &key)).await
            }
            async fn prepare(
                &self,
                key: &str,
                parent: Option<&str>,
                labels: BTreeMap<String, String>,
            ) -> Result<Vec<Mount>> {
                let (this, key) = (self.clone(), key.to_string());
                let parent = parent.map(str::to_string);
                blocking(move || {
                    BlockingSnapshotter::prepare(&this, &key, parent.as_deref(), labels)
                })
                .await
            }
            async fn view(
                &self,
                key: &str,
                parent: Option<&str>,
                labels: BTreeMap<String, String>,
            ) -> Result<Vec<Mount>> {
                let (this, key) = (self.clone(), key.to_string());
                let parent = parent.map(str::to_string);
                blocking(move || BlockingSnapshotter::view(&this, &key, parent.as_deref(), labels))
                    .await
            }
            async fn commit(
                &self,
                name: &str,
                key: &str,
                labels: BTreeMap<String, String>,
            ) -> Result<()> {
                let (this, name, key) = (self.clone(), name.to_string(), key.to_string());
                blocking(move || BlockingSnapshotter::commit(&this, &name, &key, labels)).await
            }
            async fn remove(&self, key: &str) -> Result<()> {
                let (this, key) = (self.clone(), key.to_string());
                blocking(move || BlockingSnapshotter::remove(&this, &key)).await
            }
            async fn walk(&self, filters: &[String]) -> Result<Vec<Info>> {
                let (this, filters) = (self.clone(), filters.to_vec());
                blocking(move || BlockingSnapshotter::walk(&this, &filters)).await
            }
            async fn cleanup(&self) -> Result<()> {
                let this = self.clone();
                blocking(move || BlockingSnapshotter::cleanup(&this)).await
            }
        }
    };
}

impl_async!(OverlaySnapshotter);
impl_async!(NativeSnapshotter);
impl_async!(SharedSnapshotter);

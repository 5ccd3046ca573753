//! [`LocalStores`]: berth-ops' [`Stores`] in-process, for berthd's own workflows (the CRI
//! server, the Transfer service): the metadata store's content, leases, images, containers and
//! snapshotters, the in-process layer applier, and [`LocalTasks`]. No gRPC on the way.

use std::sync::Arc;

use berth_images::SnapshotterProvider;
use berth_metadata::{Metadata, NamespacedSnapshotter};
use berth_ops::Stores;

use crate::diff::DiffService;
use crate::tasks::LocalTasks;

/// The metadata store's snapshotters, bound to a namespace and a lease on request.
#[derive(Debug, Clone)]
pub struct LocalSnapshotters {
    meta: Metadata,
}

impl SnapshotterProvider for LocalSnapshotters {
    type Snapshotter = NamespacedSnapshotter;

    fn snapshotter(
        &self,
        ns: &str,
        name: &str,
        lease: Option<&str>,
    ) -> berth_core::Result<NamespacedSnapshotter> {
        self.meta.snapshotter(ns, name, lease)
    }
}

/// The stores of berthd, in-process. Cloning is cheap (handles).
#[derive(Debug, Clone)]
pub struct LocalStores {
    meta: Metadata,
    snapshotters: LocalSnapshotters,
    applier: Arc<DiffService>,
    tasks: LocalTasks,
}

impl LocalStores {
    /// The stores over `meta` whose tasks are run by `tasks`.
    pub fn new(meta: Metadata, tasks: LocalTasks) -> Self {
        LocalStores {
            snapshotters: LocalSnapshotters { meta: meta.clone() },
            applier: Arc::new(DiffService { meta: meta.clone() }),
            meta,
            tasks,
        }
    }
}

impl Stores for LocalStores {
    type Content = Metadata;
    type Leases = Metadata;
    type Images = Metadata;
    type Containers = Metadata;
    type Snapshotters = LocalSnapshotters;
    type Applier = Arc<DiffService>;
    type Tasks = LocalTasks;

    fn content(&self) -> &Metadata {
        &self.meta
    }
    fn leases(&self) -> &Metadata {
        &self.meta
    }
    fn images(&self) -> &Metadata {
        &self.meta
    }
    fn containers(&self) -> &Metadata {
        &self.meta
    }
    fn snapshotters(&self) -> &LocalSnapshotters {
        &self.snapshotters
    }
    fn applier(&self) -> &Arc<DiffService> {
        &self.applier
    }
    fn tasks(&self) -> &LocalTasks {
        &self.tasks
    }
}

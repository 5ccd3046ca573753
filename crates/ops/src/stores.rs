//! The stores a workflow runs over, bundled once per caller.

use berth_core::containers::ContainerStore;
use berth_core::content::ContentStore;
use berth_core::images::ImageStore;
use berth_core::leases::LeaseManager;
use berth_core::tasks::Tasks;
use berth_images::{LayerApplier, SnapshotterProvider};

/// Everything a workflow may touch, as berth-core's traits.
///
/// berth-client's remote stores implement it over gRPC (for the CLI); berth-services' local
/// stores implement it in-process (for berthd's CRI and Transfer services). Each store takes the
/// namespace as a parameter; nothing here is bound to one.
pub trait Stores: Send + Sync {
    // Clone (a handle), so that an unpacker can be made over them.
    type Content: ContentStore + Clone;
    type Leases: LeaseManager + Clone;
    type Images: ImageStore;
    type Containers: ContainerStore;
    type Snapshotters: SnapshotterProvider + Clone;
    type Applier: LayerApplier + Clone;
    type Tasks: Tasks;

    /// Blobs: manifests, configs, layers.
    fn content(&self) -> &Self::Content;
    /// Leases that keep what a workflow makes from the collector until it is done.
    fn leases(&self) -> &Self::Leases;
    /// Image records (name -> target descriptor).
    fn images(&self) -> &Self::Images;
    /// Container records.
    fn containers(&self) -> &Self::Containers;
    /// Snapshotters by name, bound to a namespace and a lease.
    fn snapshotters(&self) -> &Self::Snapshotters;
    /// Applies layer blobs onto mounts.
    fn applier(&self) -> &Self::Applier;
    /// Tasks: containers' processes, running.
    fn tasks(&self) -> &Self::Tasks;
}

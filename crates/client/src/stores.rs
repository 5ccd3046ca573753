//! [`RemoteStores`]: berth-ops' [`Stores`] over gRPC, for the CLI: every store is a client of
//! the daemon's service of the same name.

use berth_ops::Stores;
use tonic::transport::Channel;

use crate::{
    RemoteContainers, RemoteContentStore, RemoteDiff, RemoteImages, RemoteLeases,
    RemoteSnapshotters, RemoteTasks,
};

/// The daemon's stores, reached over one channel. Cloning is cheap (clones share it).
#[derive(Debug, Clone)]
pub struct RemoteStores {
    content: RemoteContentStore,
    leases: RemoteLeases,
    images: RemoteImages,
    containers: RemoteContainers,
    snapshotters: RemoteSnapshotters,
    applier: RemoteDiff,
    tasks: RemoteTasks,
}

impl RemoteStores {
    /// The stores over `channel` (see [`crate::connect`]).
    pub fn new(channel: Channel) -> Self {
        RemoteStores {
            content: RemoteContentStore::new(channel.clone()),
            leases: RemoteLeases::new(channel.clone()),
            images: RemoteImages::new(channel.clone()),
            containers: RemoteContainers::new(channel.clone()),
            snapshotters: RemoteSnapshotters::new(channel.clone()),
            applier: RemoteDiff::new(channel.clone()),
            tasks: RemoteTasks::new(channel),
        }
    }
}

impl Stores for RemoteStores {
    type Content = RemoteContentStore;
    type Leases = RemoteLeases;
    type Images = RemoteImages;
    type Containers = RemoteContainers;
    type Snapshotters = RemoteSnapshotters;
    type Applier = RemoteDiff;
    type Tasks = RemoteTasks;

    fn content(&self) -> &RemoteContentStore {
        &self.content
    }
    fn leases(&self) -> &RemoteLeases {
        &self.leases
    }
    fn images(&self) -> &RemoteImages {
        &self.images
    }
    fn containers(&self) -> &RemoteContainers {
        &self.containers
    }
    fn snapshotters(&self) -> &RemoteSnapshotters {
        &self.snapshotters
    }
    fn applier(&self) -> &RemoteDiff {
        &self.applier
    }
    fn tasks(&self) -> &RemoteTasks {
        &self.tasks
    }
}

//! berth-ops' stores over berthd's gRPC API: what the CLI's workflows run on.
//!
//! Integrator: a-containers' branch may bring its own remote `Stores` (with `Tasks`); keep one.

use berth_client::{
    RemoteContainers, RemoteContentStore, RemoteDiff, RemoteImages, RemoteLeases,
    RemoteSnapshotters,
};
use tonic::transport::Channel;

/// The remote stores of one connection to berthd.
#[derive(Debug, Clone)]
pub struct RemoteStores {
    content: RemoteContentStore,
    leases: RemoteLeases,
    images: RemoteImages,
    containers: RemoteContainers,
    snapshotters: RemoteSnapshotters,
    applier: RemoteDiff,
}

impl RemoteStores {
    pub fn new(channel: Channel) -> RemoteStores {
        RemoteStores {
            content: RemoteContentStore::new(channel.clone()),
            leases: RemoteLeases::new(channel.clone()),
            images: RemoteImages::new(channel.clone()),
            containers: RemoteContainers::new(channel.clone()),
            snapshotters: RemoteSnapshotters::new(channel.clone()),
            applier: RemoteDiff::new(channel),
        }
    }
}

impl berth_ops::Stores for RemoteStores {
    type Content = RemoteContentStore;
    type Leases = RemoteLeases;
    type Images = RemoteImages;
    type Containers = RemoteContainers;
    type Snapshotters = RemoteSnapshotters;
    type Applier = RemoteDiff;

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
}

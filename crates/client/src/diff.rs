//! Applying and computing layers over containerd's Diff service, and unpacking images from a
//! client with it.

use std::collections::BTreeMap;

use berth_core::snapshots::Mount;
use berth_core::{Descriptor, Error, Result};
use containerd_client::services::v1::{diff_client::DiffClient, ApplyRequest, DiffRequest};
use tonic::transport::Channel;

use berth_api::convert::{descriptor_msg, mounts_msg};

use crate::images::descriptor_from_pb;
use crate::{
    from_labels, request, status_to_error, RemoteContentStore, RemoteLeases, RemoteSnapshotter,
};

/// The Diff service of berthd or containerd: applies layer blobs onto mounts, and writes the
/// layer between two mounted trees into the content store.
///
/// Cloning is cheap: clones share the channel.
#[derive(Debug, Clone)]
pub struct RemoteDiff {
    channel: Channel,
}

/// What `diff` writes, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// Media type of the layer blob to write (the server picks, gzip, when empty).
    pub media_type: String,
    /// Ingest ref to write it under (the server picks when empty).
    pub reference: String,
    /// Labels of the committed blob (the server adds `containerd.io/uncompressed`).
    pub labels: BTreeMap<String, String>,
    /// Lease that holds the blob written.
    pub lease: Option<String>,
}

impl RemoteDiff {
    /// A diff client speaking over `channel` (see [`crate::connect`]).
    pub fn new(channel: Channel) -> Self {
        RemoteDiff { channel }
    }

    fn client(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone()).max_decoding_message_size(crate::MAX_MESSAGE_SIZE)
    }

    /// Apply the layer blob `desc` of namespace `ns` onto the filesystem `mounts` assemble; the
    /// answer describes the uncompressed tar applied (its digest is the layer's diff ID).
    pub async fn apply(
        &self,
        ns: &str,
        desc: Descriptor,
        mounts: Vec<Mount>,
    ) -> Result<Descriptor> {
        let req = ApplyRequest {
            diff: Some(descriptor_msg(desc)),
            mounts: mounts_msg(mounts),
            payloads: Default::default(),
            sync_fs: false,
        };
        let resp = self
            .client()
            .apply(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        descriptor_from_pb(
            resp.into_inner()
                .applied
                .ok_or_else(|| Error::internal("server response lacks applied descriptor"))?,
        )
    }

    /// Write the layer that turns the tree `lower` mounts into the tree `upper` mounts into the
    /// content store of `ns`, and return the blob's descriptor.
    pub async fn diff(
        &self,
        ns: &str,
        lower: Vec<Mount>,
        upper: Vec<Mount>,
        opts: DiffOptions,
    ) -> Result<Descriptor> {
        let req = DiffRequest {
            left: mounts_msg(lower),
            right: mounts_msg(upper),
            media_type: opts.media_type,
            r#ref: opts.reference,
            labels: from_labels(opts.labels),
            source_date_epoch: None,
        };
        let resp = self
            .client()
            .diff(request(req, ns, opts.lease.as_deref()))
            .await
            .map_err(status_to_error)?;
        descriptor_from_pb(
            resp.into_inner()
                .diff
                .ok_or_else(|| Error::internal("server response lacks diff descriptor"))?,
        )
    }
}

impl berth_images::LayerApplier for RemoteDiff {
    async fn apply(&self, ns: &str, desc: Descriptor, mounts: Vec<Mount>) -> Result<Descriptor> {
        RemoteDiff::apply(self, ns, desc, mounts).await
    }
}

/// The snapshotters of berthd or containerd, as the [`berth_images::SnapshotterProvider`] an
/// unpack asks for one bound to its namespace and lease.
#[derive(Debug, Clone)]
pub struct RemoteSnapshotters {
    channel: Channel,
}

impl RemoteSnapshotters {
    /// The snapshotters reached over `channel`.
    pub fn new(channel: Channel) -> Self {
        RemoteSnapshotters { channel }
    }
}

impl berth_images::SnapshotterProvider for RemoteSnapshotters {
    fn snapshotter(
        &self,
        ns: &str,
        name: &str,
        lease: Option<&str>,
    ) -> Result<std::sync::Arc<dyn berth_core::snapshots::Snapshotter>> {
        Ok(std::sync::Arc::new(
            RemoteSnapshotter::new(self.channel.clone(), ns, name).with_lease(lease),
        ))
    }
}

/// The unpacker of a client: blobs, leases, snapshots and layer application all through the
/// daemon's services.
pub type RemoteUnpacker =
    berth_images::Unpacker<RemoteContentStore, RemoteLeases, RemoteSnapshotters, RemoteDiff>;

/// An unpacker working over `channel`.
pub fn remote_unpacker(channel: Channel) -> RemoteUnpacker {
    berth_images::Unpacker::new(
        RemoteContentStore::new(channel.clone()),
        RemoteLeases::new(channel.clone()),
        RemoteSnapshotters::new(channel.clone()),
        RemoteDiff::new(channel),
    )
}

//! Snapshots over containerd's Snapshots service.

use std::collections::BTreeMap;

use berth_api::convert::mounts_from_msg;
use berth_core::snapshots::{Info, Kind, Mount, Snapshotter, Usage};
use berth_core::{Error, Result};
use containerd_client::services::v1::snapshots::{
    snapshots_client::SnapshotsClient, CleanupRequest, CommitSnapshotRequest, Info as PbInfo,
    Kind as PbKind, ListSnapshotsRequest, MountsRequest, PrepareSnapshotRequest,
    RemoveSnapshotRequest, StatSnapshotRequest, UpdateSnapshotRequest, UsageRequest,
    ViewSnapshotRequest,
};
use tonic::transport::Channel;

use crate::{from_labels, request, status_to_error, to_labels, to_time};

/// One snapshotter of berthd or containerd, seen from one namespace (and optionally under a
/// lease, which the server adds what prepare, view and commit create to).
#[derive(Debug, Clone)]
pub struct RemoteSnapshotter {
    channel: Channel,
    ns: String,
    snapshotter: String,
    lease: Option<String>,
}

impl RemoteSnapshotter {
    /// The snapshotter `snapshotter` (e.g. `overlayfs`) in namespace `ns`, over `channel`.
    pub fn new(channel: Channel, ns: &str, snapshotter: &str) -> Self {
        RemoteSnapshotter {
            channel,
            ns: ns.to_string(),
            snapshotter: snapshotter.to_string(),
            lease: None,
        }
    }

    /// The same snapshotter, with requests made under `lease`.
    pub fn with_lease(mut self, lease: Option<&str>) -> Self {
        self.lease = lease.map(str::to_string);
        self
    }

    fn client(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
            .max_decoding_message_size(crate::MAX_MESSAGE_SIZE)
    }

    fn req<T>(&self, msg: T) -> tonic::Request<T> {
        request(msg, &self.ns, self.lease.as_deref())
    }
}

fn info_from_pb(i: PbInfo) -> Info {
    let kind = match PbKind::try_from(i.kind).unwrap_or(PbKind::Unknown) {
        PbKind::View => Kind::View,
        PbKind::Committed => Kind::Committed,
        PbKind::Active | PbKind::Unknown => Kind::Active,
    };
    Info {
        kind,
        name: i.name,
        parent: Some(i.parent).filter(|p| !p.is_empty()),
        labels: to_labels(i.labels),
        created: to_time(i.created_at),
        updated: to_time(i.updated_at),
    }
}

fn parent_of(parent: Option<&str>) -> String {
    parent.unwrap_or_default().to_string()
}

#[async_trait::async_trait]
impl Snapshotter for RemoteSnapshotter {
    async fn stat(&self, key: &str) -> Result<Info> {
        let req = StatSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
        };
        let resp = self
            .client()
            .stat(self.req(req))
            .await
            .map_err(status_to_error)?;
        resp.into_inner()
            .info
            .map(info_from_pb)
            .ok_or_else(|| Error::internal("server response lacks info"))
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let req = UpdateSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            info: Some(PbInfo {
                name: info.name,
                labels: from_labels(info.labels),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: fieldpaths.to_vec(),
            }),
        };
        let resp = self
            .client()
            .update(self.req(req))
            .await
            .map_err(status_to_error)?;
        resp.into_inner()
            .info
            .map(info_from_pb)
            .ok_or_else(|| Error::internal("server response lacks info"))
    }

    async fn usage(&self, key: &str) -> Result<Usage> {
        let req = UsageRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
        };
        let u = self
            .client()
            .usage(self.req(req))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(Usage {
            size: u.size,
            inodes: u.inodes,
        })
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let req = MountsRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
        };
        let resp = self
            .client()
            .mounts(self.req(req))
            .await
            .map_err(status_to_error)?;
        Ok(mounts_from_msg(resp.into_inner().mounts))
    }

    async fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        let req = PrepareSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
            parent: parent_of(parent),
            labels: from_labels(labels),
        };
        let resp = self
            .client()
            .prepare(self.req(req))
            .await
            .map_err(status_to_error)?;
        Ok(mounts_from_msg(resp.into_inner().mounts))
    }

    async fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        let req = ViewSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
            parent: parent_of(parent),
            labels: from_labels(labels),
        };
        let resp = self
            .client()
            .view(self.req(req))
            .await
            .map_err(status_to_error)?;
        Ok(mounts_from_msg(resp.into_inner().mounts))
    }

    async fn commit(&self, name: &str, key: &str, labels: BTreeMap<String, String>) -> Result<()> {
        let req = CommitSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            name: name.to_string(),
            key: key.to_string(),
            labels: from_labels(labels),
        };
        self.client()
            .commit(self.req(req))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<()> {
        let req = RemoveSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
        };
        self.client()
            .remove(self.req(req))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn walk(&self, filters: &[String]) -> Result<Vec<Info>> {
        let req = ListSnapshotsRequest {
            snapshotter: self.snapshotter.clone(),
            filters: filters.to_vec(),
        };
        let mut stream = self
            .client()
            .list(self.req(req))
            .await
            .map_err(status_to_error)?
            .into_inner();
        let mut out = Vec::new();
        while let Some(batch) = stream.message().await.map_err(status_to_error)? {
            out.extend(batch.info.into_iter().map(info_from_pb));
        }
        Ok(out)
    }

    async fn cleanup(&self) -> Result<()> {
        let req = CleanupRequest {
            snapshotter: self.snapshotter.clone(),
        };
        self.client()
            .cleanup(self.req(req))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }
}

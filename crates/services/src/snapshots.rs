//! containerd.services.snapshots.v1 over the metadata layer's namespaced snapshotters, publishing
//! `/snapshot/{prepare,commit,remove}`. Requests name their snapshotter; the `containerd-lease`
//! header adds what prepare, view and commit create to that lease.

use std::pin::Pin;

use berth_api::convert::mounts_msg;
use berth_api::events::{SnapshotCommit, SnapshotPrepare, SnapshotRemove};
use berth_api::services::v1::snapshots::{
    CleanupRequest, CommitSnapshotRequest, Info as InfoMsg, Kind as KindMsg, ListSnapshotsRequest,
    ListSnapshotsResponse, MountsRequest, MountsResponse, PrepareSnapshotRequest,
    PrepareSnapshotResponse, RemoveSnapshotRequest, StatSnapshotRequest, StatSnapshotResponse,
    UpdateSnapshotRequest, UpdateSnapshotResponse, UsageRequest, UsageResponse,
    ViewSnapshotRequest, ViewSnapshotResponse,
};
use berth_api::snapshots::snapshots_server::Snapshots;
use berth_core::snapshots::{Info, Kind, Snapshotter};
use berth_metadata::{Metadata, NamespacedSnapshotter};
use tokio_stream::Stream;

use crate::events::Exchange;
use crate::request::{lease, namespace};
use crate::status::{GrpcResult, IntoStatus};

const LIST_BATCH: usize = 100;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, tonic::Status>> + Send>>;

/// The Snapshots service.
#[derive(Debug)]
pub struct SnapshotsService {
    pub meta: Metadata,
    pub exchange: Exchange,
}

fn info_msg(i: Info) -> InfoMsg {
    let kind = match i.kind {
        Kind::View => KindMsg::View,
        Kind::Active => KindMsg::Active,
        Kind::Committed => KindMsg::Committed,
    };
    InfoMsg {
        name: i.name,
        parent: i.parent.unwrap_or_default(),
        kind: kind as i32,
        created_at: Some(i.created.into()),
        updated_at: Some(i.updated.into()),
        labels: i.labels.into_iter().collect(),
    }
}

impl SnapshotsService {
    fn snapshotter<T>(
        &self,
        req: &tonic::Request<T>,
        name: &str,
    ) -> Result<(String, NamespacedSnapshotter), tonic::Status> {
        let ns = namespace(req)?;
        let lease = lease(req);
        let s = self.meta.snapshotter(&ns, name, lease.as_deref()).grpc()?;
        Ok((ns, s))
    }
}

#[tonic::async_trait]
impl Snapshots for SnapshotsService {
    async fn prepare(
        &self,
        req: tonic::Request<PrepareSnapshotRequest>,
    ) -> GrpcResult<PrepareSnapshotResponse> {
        let (ns, s) = self.snapshotter(&req, &req.get_ref().snapshotter)?;
        let r = req.into_inner();
        let parent = Some(r.parent.as_str()).filter(|p| !p.is_empty());
        let mounts = s
            .prepare(&r.key, parent, r.labels.into_iter().collect())
            .await
            .grpc()?;
        self.exchange.publish(
            &ns,
            "/snapshot/prepare",
            &SnapshotPrepare {
                key: r.key,
                parent: r.parent,
                snapshotter: r.snapshotter,
            },
        );
        Ok(tonic::Response::new(PrepareSnapshotResponse {
            mounts: mounts_msg(mounts),
        }))
    }

    async fn view(
        &self,
        req: tonic::Request<ViewSnapshotRequest>,
    ) -> GrpcResult<ViewSnapshotResponse> {
        let (_, s) = self.snapshotter(&req, &req.get_ref().snapshotter)?;
        let r = req.into_inner();
        let parent = Some(r.parent.as_str()).filter(|p| !p.is_empty());
        let mounts = s
            .view(&r.key, parent, r.labels.into_iter().collect())
            .await
            .grpc()?;
        Ok(tonic::Response::new(ViewSnapshotResponse {
            mounts: mounts_msg(mounts),
        }))
    }

    async fn mounts(&self, req: tonic::Request<MountsRequest>) -> GrpcResult<MountsResponse> {
        let (_, s) = self.snapshotter(&req, &req.get_ref().snapshotter)?;
        let mounts = s.mounts(&req.into_inner().key).await.grpc()?;
        Ok(tonic::Response::new(MountsResponse {
            mounts: mounts_msg(mounts),
        }))
    }

    async fn commit(&self, req: tonic::Request<CommitSnapshotRequest>) -> GrpcResult<()> {
        let (ns, s) = self.snapshotter(&req, &req.get_ref().snapshotter)?;
        let r = req.into_inner();
        s.commit(&r.name, &r.key, r.labels.into_iter().collect())
            .await
            .grpc()?;
        self.exchange.publish(
            &ns,
            "/snapshot/commit",
            &SnapshotCommit {
                key: r.key,
                name: r.name,
                snapshotter: r.snapshotter,
            },
        );
        Ok(tonic::Response::new(()))
    }

    async fn remove(&self, req: tonic::Request<RemoveSnapshotRequest>) -> GrpcResult<()> {
        let (ns, s) = self.snapshotter(&req, &req.get_ref().snapshotter)?;
        let r = req.into_inner();
        s.remove(&r.key).await.grpc()?;
        self.exchange.publish(
            &ns,
            "/snapshot/remove",
            &SnapshotRemove {
                key: r.key,
                snapshotter: r.snapshotter,
            },
        );
        Ok(tonic::Response::new(()))
    }

    async fn stat(
        &self,
        req: tonic::Request<StatSnapshotRequest>,
    ) -> GrpcResult<StatSnapshotResponse> {
        let (_, s) = self.snapshotter(&req, &req.get_ref().snapshotter)?;
        let info = s.stat(&req.into_inner().key).await.grpc()?;
        Ok(tonic::Response::new(StatSnapshotResponse {
            info: Some(info_msg(info)),
        }))
    }

    async fn update(
        &self,
        req: tonic::Request<UpdateSnapshotRequest>,
    ) -> GrpcResult<UpdateSnapshotResponse> {
        let (_, s) = self.snapshotter(&req, &req.get_ref().snapshotter)?;
        let r = req.into_inner();
        let info = r
            .info
            .ok_or_else(|| tonic::Status::invalid_argument("info must not be empty"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let info = s
            .update(
                Info::named(info.name, info.labels.into_iter().collect()),
                &paths,
            )
            .await
            .grpc()?;
        Ok(tonic::Response::new(UpdateSnapshotResponse {
            info: Some(info_msg(info)),
        }))
    }

    type ListStream = BoxStream<ListSnapshotsResponse>;

    async fn list(
        &self,
        req: tonic::Request<ListSnapshotsRequest>,
    ) -> GrpcResult<Self::ListStream> {
        let (_, s) = self.snapshotter(&req, &req.get_ref().snapshotter)?;
        let infos = s.walk(&req.into_inner().filters).await.grpc()?;
        let batches: Vec<Result<ListSnapshotsResponse, tonic::Status>> = infos
            .chunks(LIST_BATCH)
            .map(|c| {
                Ok(ListSnapshotsResponse {
                    info: c.iter().cloned().map(info_msg).collect(),
                })
            })
            .collect();
        Ok(tonic::Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn usage(&self, req: tonic::Request<UsageRequest>) -> GrpcResult<UsageResponse> {
        let (_, s) = self.snapshotter(&req, &req.get_ref().snapshotter)?;
        let u = s.usage(&req.into_inner().key).await.grpc()?;
        Ok(tonic::Response::new(UsageResponse {
            size: u.size,
            inodes: u.inodes,
        }))
    }

    async fn cleanup(&self, req: tonic::Request<CleanupRequest>) -> GrpcResult<()> {
        let (_, s) = self.snapshotter(&req, &req.get_ref().snapshotter)?;
        s.cleanup().await.grpc()?;
        Ok(tonic::Response::new(()))
    }
}

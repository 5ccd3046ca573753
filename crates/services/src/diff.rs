//! containerd.services.diff.v1: apply a layer from the content store onto a snapshot's mounts,
//! and compute the layer between two snapshots into the content store. A thin adapter over
//! berth-diff's [`WalkingDiff`], which berthd's own pulls use in-process.

use std::path::Path;

use berth_api::convert::{descriptor_from_msg, descriptor_msg, mounts_from_msg};
use berth_api::diff::diff_server::Diff;
use berth_api::services::v1::{ApplyRequest, ApplyResponse, DiffRequest, DiffResponse};
use berth_diff::{DiffParams, WalkingDiff};
use berth_metadata::Metadata;

use crate::request::{lease, namespace};
use crate::status::{GrpcResult, IntoStatus};

/// The Diff service.
#[derive(Debug)]
pub struct DiffService {
    pub meta: Metadata,
}

impl DiffService {
    /// The applier and differ over berthd's content store; diffs are staged beside it.
    pub fn walking(&self) -> WalkingDiff<Metadata> {
        let scratch = self
            .meta
            .blobs()
            .root()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        WalkingDiff::new(self.meta.clone(), scratch)
    }
}

#[tonic::async_trait]
impl Diff for DiffService {
    async fn apply(&self, req: tonic::Request<ApplyRequest>) -> GrpcResult<ApplyResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        if !r.payloads.is_empty() {
            return Err(tonic::Status::unimplemented(
                "stream processors (payloads) are not supported",
            ));
        }
        let desc = descriptor_from_msg(
            r.diff
                .ok_or_else(|| tonic::Status::invalid_argument("diff must not be empty"))?,
        )
        .grpc()?;
        let applied = self
            .walking()
            .apply(&ns, desc, mounts_from_msg(r.mounts))
            .await
            .grpc()?;
        Ok(tonic::Response::new(ApplyResponse {
            applied: Some(descriptor_msg(applied)),
        }))
    }

    async fn diff(&self, req: tonic::Request<DiffRequest>) -> GrpcResult<DiffResponse> {
        let ns = namespace(&req)?;
        let lease = lease(&req);
        let r = req.into_inner();
        let reference = if r.r#ref.is_empty() {
            format!("diff-{}", uuid::Uuid::new_v4())
        } else {
            r.r#ref
        };
        let params = DiffParams {
            lower: mounts_from_msg(r.left),
            upper: mounts_from_msg(r.right),
            media_type: r.media_type,
            reference,
            labels: r.labels.into_iter().collect(),
        };
        let desc = self.walking().diff(&ns, lease, params).await.grpc()?;
        Ok(tonic::Response::new(DiffResponse {
            diff: Some(descriptor_msg(desc)),
        }))
    }
}

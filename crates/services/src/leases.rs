//! containerd.services.leases.v1 over any [`LeaseManager`].

use std::sync::Arc;

use berth_api::leases::leases_server::Leases;
use berth_api::services::v1::{
    AddResourceRequest, CreateRequest, CreateResponse, DeleteRequest, DeleteResourceRequest,
    Lease as LeaseMsg, ListRequest, ListResourcesRequest, ListResourcesResponse, ListResponse,
    Resource as ResourceMsg,
};
use berth_core::leases::{Lease, LeaseManager, Resource};

use crate::request::namespace;
use crate::status::{GrpcResult, IntoStatus};

/// The Leases service.
#[derive(Debug)]
pub struct LeasesService<L> {
    pub leases: Arc<L>,
}

/// A fresh lease ID: the clock's nanoseconds and random bytes, like containerd's `WithRandomID`.
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(nanos);
    format!("{nanos}-{:06x}", h.finish() & 0xff_ffff)
}

fn lease_msg(l: Lease) -> LeaseMsg {
    LeaseMsg {
        id: l.id,
        created_at: Some(l.created_at.into()),
        labels: l.labels.into_iter().collect(),
    }
}

fn resource(r: Option<ResourceMsg>) -> Result<Resource, tonic::Status> {
    let r = r.ok_or_else(|| tonic::Status::invalid_argument("resource must not be empty"))?;
    Ok(Resource {
        id: r.id,
        kind: r.r#type,
    })
}

#[tonic::async_trait]
impl<L: LeaseManager + 'static> Leases for LeasesService<L> {
    async fn create(&self, req: tonic::Request<CreateRequest>) -> GrpcResult<CreateResponse> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        // As containerd's lease service: no ID asked for means a random one.
        let id = if req.id.is_empty() {
            random_id()
        } else {
            req.id
        };
        let lease = self
            .leases
            .create(&ns, &id, req.labels.into_iter().collect())
            .await
            .grpc()?;
        Ok(tonic::Response::new(CreateResponse {
            lease: Some(lease_msg(lease)),
        }))
    }

    async fn delete(&self, req: tonic::Request<DeleteRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        self.leases.delete(&ns, &req.id, req.sync).await.grpc()?;
        Ok(tonic::Response::new(()))
    }

    async fn list(&self, req: tonic::Request<ListRequest>) -> GrpcResult<ListResponse> {
        let ns = namespace(&req)?;
        let leases = self
            .leases
            .list(&ns, &req.into_inner().filters)
            .await
            .grpc()?;
        Ok(tonic::Response::new(ListResponse {
            leases: leases.into_iter().map(lease_msg).collect(),
        }))
    }

    async fn add_resource(&self, req: tonic::Request<AddResourceRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        let r = resource(req.resource)?;
        self.leases.add_resource(&ns, &req.id, r).await.grpc()?;
        Ok(tonic::Response::new(()))
    }

    async fn delete_resource(&self, req: tonic::Request<DeleteResourceRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        let r = resource(req.resource)?;
        self.leases.delete_resource(&ns, &req.id, r).await.grpc()?;
        Ok(tonic::Response::new(()))
    }

    async fn list_resources(
        &self,
        req: tonic::Request<ListResourcesRequest>,
    ) -> GrpcResult<ListResourcesResponse> {
        let ns = namespace(&req)?;
        let resources = self
            .leases
            .list_resources(&ns, &req.into_inner().id)
            .await
            .grpc()?;
        Ok(tonic::Response::new(ListResourcesResponse {
            resources: resources
                .into_iter()
                .map(|r| ResourceMsg {
                    id: r.id,
                    r#type: r.kind,
                })
                .collect(),
        }))
    }
}

//! containerd.services.containers.v1 over any [`ContainerStore`], publishing
//! `/containers/{create,update,delete}`.
//!
//! Container records are metadata only: creating one starts nothing (that is the Tasks service's
//! job) and deleting one does not look at tasks, as in containerd, whose clients check first.

use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use berth_api::containers::containers_server::Containers;
use berth_api::events::{container_create, ContainerCreate, ContainerDelete, ContainerUpdate};
use berth_api::prost_types;
use berth_api::services::v1::{
    container, Container as ContainerMsg, CreateContainerRequest, CreateContainerResponse,
    DeleteContainerRequest, GetContainerRequest, GetContainerResponse, ListContainerMessage,
    ListContainersRequest, ListContainersResponse, UpdateContainerRequest, UpdateContainerResponse,
};
use berth_core::containers::{Any, Container, ContainerStore, Runtime};
use tokio_stream::Stream;

use crate::events::Exchange;
use crate::request::namespace;
use crate::status::{GrpcResult, IntoStatus};

/// The Containers service.
#[derive(Debug)]
pub struct ContainersService<S> {
    pub store: Arc<S>,
    pub exchange: Exchange,
}

/// A protobuf `Any` as berth's.
pub fn any_from_msg(a: prost_types::Any) -> Any {
    Any {
        type_url: a.type_url,
        value: a.value,
    }
}

/// berth's `Any` as protobuf's.
pub fn any_msg(a: Any) -> prost_types::Any {
    prost_types::Any {
        type_url: a.type_url,
        value: a.value,
    }
}

/// A container message as berth's record (times are the store's business).
pub fn container_from_msg(m: ContainerMsg) -> Container {
    let runtime = m.runtime.unwrap_or_default();
    Container {
        id: m.id,
        labels: m.labels.into_iter().collect(),
        image: m.image,
        runtime: Runtime {
            name: runtime.name,
            options: runtime.options.map(any_from_msg),
        },
        spec: m.spec.map(any_from_msg),
        snapshotter: m.snapshotter,
        snapshot_key: m.snapshot_key,
        extensions: m
            .extensions
            .into_iter()
            .map(|(k, v)| (k, any_from_msg(v)))
            .collect(),
        sandbox: m.sandbox,
        created_at: SystemTime::UNIX_EPOCH,
        updated_at: SystemTime::UNIX_EPOCH,
    }
}

/// berth's container record as a message.
pub fn container_msg(c: Container) -> ContainerMsg {
    ContainerMsg {
        id: c.id,
        labels: c.labels.into_iter().collect(),
        image: c.image,
        runtime: Some(container::Runtime {
            name: c.runtime.name,
            options: c.runtime.options.map(any_msg),
        }),
        spec: c.spec.map(any_msg),
        snapshotter: c.snapshotter,
        snapshot_key: c.snapshot_key,
        created_at: Some(c.created_at.into()),
        updated_at: Some(c.updated_at.into()),
        extensions: c
            .extensions
            .into_iter()
            .map(|(k, v)| (k, any_msg(v)))
            .collect(),
        sandbox: c.sandbox,
    }
}

type ListStream = Pin<Box<dyn Stream<Item = Result<ListContainerMessage, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl<S: ContainerStore + 'static> Containers for ContainersService<S> {
    async fn get(
        &self,
        req: tonic::Request<GetContainerRequest>,
    ) -> GrpcResult<GetContainerResponse> {
        let ns = namespace(&req)?;
        let c = self.store.get(&ns, &req.into_inner().id).await.grpc()?;
        Ok(tonic::Response::new(GetContainerResponse {
            container: Some(container_msg(c)),
        }))
    }

    async fn list(
        &self,
        req: tonic::Request<ListContainersRequest>,
    ) -> GrpcResult<ListContainersResponse> {
        let ns = namespace(&req)?;
        let containers = self
            .store
            .list(&ns, &req.into_inner().filters)
            .await
            .grpc()?
            .into_iter()
            .map(container_msg)
            .collect();
        Ok(tonic::Response::new(ListContainersResponse { containers }))
    }

    type ListStreamStream = ListStream;

    async fn list_stream(
        &self,
        req: tonic::Request<ListContainersRequest>,
    ) -> GrpcResult<Self::ListStreamStream> {
        let ns = namespace(&req)?;
        let containers = self
            .store
            .list(&ns, &req.into_inner().filters)
            .await
            .grpc()?;
        let stream = tokio_stream::iter(containers.into_iter().map(|c| {
            Ok(ListContainerMessage {
                container: Some(container_msg(c)),
            })
        }));
        Ok(tonic::Response::new(Box::pin(stream)))
    }

    async fn create(
        &self,
        req: tonic::Request<CreateContainerRequest>,
    ) -> GrpcResult<CreateContainerResponse> {
        let ns = namespace(&req)?;
        let m = req
            .into_inner()
            .container
            .ok_or_else(|| tonic::Status::invalid_argument("container must not be empty"))?;
        let created = self.store.create(&ns, container_from_msg(m)).await.grpc()?;
        self.exchange.publish(
            &ns,
            "/containers/create",
            &ContainerCreate {
                id: created.id.clone(),
                image: created.image.clone(),
                runtime: Some(container_create::Runtime {
                    name: created.runtime.name.clone(),
                    options: created.runtime.options.clone().map(any_msg),
                }),
            },
        );
        Ok(tonic::Response::new(CreateContainerResponse {
            container: Some(container_msg(created)),
        }))
    }

    async fn update(
        &self,
        req: tonic::Request<UpdateContainerRequest>,
    ) -> GrpcResult<UpdateContainerResponse> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        let m = req.container.unwrap_or_default();
        if m.id.is_empty() {
            return Err(tonic::Status::invalid_argument("Container.ID required"));
        }
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let updated = self
            .store
            .update(&ns, container_from_msg(m), &paths)
            .await
            .grpc()?;
        self.exchange.publish(
            &ns,
            "/containers/update",
            &ContainerUpdate {
                id: updated.id.clone(),
                image: updated.image.clone(),
                labels: updated.labels.clone().into_iter().collect(),
                snapshot_key: updated.snapshot_key.clone(),
            },
        );
        Ok(tonic::Response::new(UpdateContainerResponse {
            container: Some(container_msg(updated)),
        }))
    }

    async fn delete(&self, req: tonic::Request<DeleteContainerRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let id = req.into_inner().id;
        self.store.delete(&ns, &id).await.grpc()?;
        self.exchange
            .publish(&ns, "/containers/delete", &ContainerDelete { id });
        Ok(tonic::Response::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_messages_round_trip() {
        let mut c = Container::new("c1");
        c.runtime.name = "io.containerd.runc.v2".into();
        c.runtime.options = Some(Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: vec![1, 2],
        });
        c.spec = Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: b"{}".to_vec(),
        });
        c.snapshotter = "overlayfs".into();
        c.snapshot_key = "c1".into();
        c.extensions.insert("x".into(), Any::default());
        c.labels.insert("a".into(), "b".into());
        assert_eq!(container_from_msg(container_msg(c.clone())), c);
    }
}

//! Container records over containerd's Containers service.

use std::time::SystemTime;

use berth_core::containers::{Any, Container, ContainerStore, Runtime};
use berth_core::{Error, Result};
use containerd_client::services::v1::{
    container, containers_client::ContainersClient, Container as PbContainer,
    CreateContainerRequest, DeleteContainerRequest, GetContainerRequest, ListContainersRequest,
    UpdateContainerRequest,
};
use tonic::transport::Channel;

use crate::{from_labels, from_time, request, status_to_error, to_labels, to_time};

/// A [`ContainerStore`] reached through the Containers service of berthd or containerd.
///
/// Cloning is cheap: clones share the channel.
#[derive(Debug, Clone)]
pub struct RemoteContainers {
    channel: Channel,
}

impl RemoteContainers {
    /// A container store speaking over `channel` (see [`crate::connect`]).
    pub fn new(channel: Channel) -> Self {
        RemoteContainers { channel }
    }

    fn client(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
            .max_decoding_message_size(crate::MAX_MESSAGE_SIZE)
    }
}

/// A protobuf `Any` as berth's.
pub(crate) fn any_from_pb(a: prost_types::Any) -> Any {
    Any {
        type_url: a.type_url,
        value: a.value,
    }
}

/// berth's `Any` as protobuf's.
pub(crate) fn any_to_pb(a: Any) -> prost_types::Any {
    prost_types::Any {
        type_url: a.type_url,
        value: a.value,
    }
}

fn container_from_pb(c: PbContainer) -> Container {
    let runtime = c.runtime.unwrap_or_default();
    Container {
        id: c.id,
        labels: to_labels(c.labels),
        image: c.image,
        runtime: Runtime {
            name: runtime.name,
            options: runtime.options.map(any_from_pb),
        },
        spec: c.spec.map(any_from_pb),
        snapshotter: c.snapshotter,
        snapshot_key: c.snapshot_key,
        extensions: c
            .extensions
            .into_iter()
            .map(|(k, v)| (k, any_from_pb(v)))
            .collect(),
        sandbox: c.sandbox,
        created_at: to_time(c.created_at),
        updated_at: to_time(c.updated_at),
    }
}

fn container_to_pb(c: Container) -> PbContainer {
    let time = |t: SystemTime| {
        (t != SystemTime::UNIX_EPOCH)
            .then(|| from_time(t))
            .flatten()
    };
    PbContainer {
        id: c.id,
        labels: from_labels(c.labels),
        image: c.image,
        runtime: Some(container::Runtime {
            name: c.runtime.name,
            options: c.runtime.options.map(any_to_pb),
        }),
        spec: c.spec.map(any_to_pb),
        snapshotter: c.snapshotter,
        snapshot_key: c.snapshot_key,
        created_at: time(c.created_at),
        updated_at: time(c.updated_at),
        extensions: c
            .extensions
            .into_iter()
            .map(|(k, v)| (k, any_to_pb(v)))
            .collect(),
        sandbox: c.sandbox,
    }
}

fn container_of(c: Option<PbContainer>) -> Result<Container> {
    c.map(container_from_pb)
        .ok_or_else(|| Error::internal("server response lacks container"))
}

impl ContainerStore for RemoteContainers {
    async fn get(&self, ns: &str, id: &str) -> Result<Container> {
        let req = GetContainerRequest { id: id.to_string() };
        let resp = self
            .client()
            .get(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        container_of(resp.into_inner().container)
    }

    async fn list(&self, ns: &str, filters: &[String]) -> Result<Vec<Container>> {
        let req = ListContainersRequest {
            filters: filters.to_vec(),
        };
        let resp = self
            .client()
            .list(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(resp
            .into_inner()
            .containers
            .into_iter()
            .map(container_from_pb)
            .collect())
    }

    async fn create(&self, ns: &str, container: Container) -> Result<Container> {
        let req = CreateContainerRequest {
            container: Some(container_to_pb(container)),
        };
        let resp = self
            .client()
            .create(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        container_of(resp.into_inner().container)
    }

    async fn update(
        &self,
        ns: &str,
        container: Container,
        fieldpaths: &[String],
    ) -> Result<Container> {
        let req = UpdateContainerRequest {
            container: Some(container_to_pb(container)),
            // As containerd's client: no mask at all when no paths are given.
            update_mask: (!fieldpaths.is_empty()).then(|| prost_types::FieldMask {
                paths: fieldpaths.to_vec(),
            }),
        };
        let resp = self
            .client()
            .update(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        container_of(resp.into_inner().container)
    }

    async fn delete(&self, ns: &str, id: &str) -> Result<()> {
        let req = DeleteContainerRequest { id: id.to_string() };
        self.client()
            .delete(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn containers_round_trip_through_messages() {
        let mut c = Container::new("c1");
        c.image = "docker.io/library/busybox:latest".into();
        c.runtime.name = "io.containerd.runc.v2".into();
        c.runtime.options = Some(Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: vec![1],
        });
        c.spec = Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: b"{}".to_vec(),
        });
        c.snapshotter = "overlayfs".into();
        c.snapshot_key = "c1".into();
        c.labels.insert("a".into(), "b".into());
        c.extensions.insert("x".into(), Any::default());
        c.created_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let pb = container_to_pb(c.clone());
        assert!(pb.updated_at.is_none(), "unset times are left out");
        assert_eq!(container_from_pb(pb), c);
        assert!(container_of(None).is_err());
    }
}

//! Leases over containerd's Leases service.

use std::collections::BTreeMap;

use berth_core::leases::{Lease, LeaseManager, Resource};
use berth_core::{Error, Result};
use containerd_client::services::v1::{
    leases_client::LeasesClient, AddResourceRequest, CreateRequest, DeleteRequest,
    DeleteResourceRequest, Lease as PbLease, ListRequest, ListResourcesRequest,
    Resource as PbResource,
};
use tonic::transport::Channel;

use crate::{from_labels, request, status_to_error, to_labels, to_time};

/// A [`LeaseManager`] reached through the Leases service of berthd or containerd.
///
/// Cloning is cheap: clones share the channel.
#[derive(Debug, Clone)]
pub struct RemoteLeases {
    channel: Channel,
}

impl RemoteLeases {
    /// A lease manager speaking over `channel` (see [`crate::connect`]).
    pub fn new(channel: Channel) -> Self {
        RemoteLeases { channel }
    }

    fn client(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone()).max_decoding_message_size(crate::MAX_MESSAGE_SIZE)
    }
}

fn lease_from_pb(l: PbLease) -> Lease {
    Lease {
        id: l.id,
        created_at: to_time(l.created_at),
        labels: to_labels(l.labels),
    }
}

fn resource_to_pb(r: Resource) -> PbResource {
    PbResource {
        id: r.id,
        r#type: r.kind,
    }
}

impl LeaseManager for RemoteLeases {
    async fn create(&self, ns: &str, id: &str, labels: BTreeMap<String, String>) -> Result<Lease> {
        let req = CreateRequest {
            id: id.to_string(),
            labels: from_labels(labels),
        };
        let resp = self
            .client()
            .create(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        let lease = resp
            .into_inner()
            .lease
            .ok_or_else(|| Error::internal("server response lacks lease"))?;
        Ok(lease_from_pb(lease))
    }

    async fn delete(&self, ns: &str, id: &str, sync: bool) -> Result<()> {
        let req = DeleteRequest {
            id: id.to_string(),
            sync,
        };
        self.client()
            .delete(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn list(&self, ns: &str, filters: &[String]) -> Result<Vec<Lease>> {
        let req = ListRequest {
            filters: filters.to_vec(),
        };
        let resp = self
            .client()
            .list(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(resp
            .into_inner()
            .leases
            .into_iter()
            .map(lease_from_pb)
            .collect())
    }

    async fn add_resource(&self, ns: &str, lease: &str, resource: Resource) -> Result<()> {
        let req = AddResourceRequest {
            id: lease.to_string(),
            resource: Some(resource_to_pb(resource)),
        };
        self.client()
            .add_resource(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn delete_resource(&self, ns: &str, lease: &str, resource: Resource) -> Result<()> {
        let req = DeleteResourceRequest {
            id: lease.to_string(),
            resource: Some(resource_to_pb(resource)),
        };
        self.client()
            .delete_resource(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }

    async fn list_resources(&self, ns: &str, lease: &str) -> Result<Vec<Resource>> {
        let req = ListResourcesRequest {
            id: lease.to_string(),
        };
        let resp = self
            .client()
            .list_resources(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(resp
            .into_inner()
            .resources
            .into_iter()
            .map(|r| Resource {
                id: r.id,
                kind: r.r#type,
            })
            .collect())
    }
}

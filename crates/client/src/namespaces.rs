//! Namespaces, Version and Introspection services.

use std::collections::BTreeMap;

use berth_core::{Error, Result};
use containerd_client::services::v1::{
    introspection_client::IntrospectionClient, namespaces_client::NamespacesClient,
    version_client::VersionClient, CreateNamespaceRequest, DeleteNamespaceRequest,
    GetNamespaceRequest, ListNamespacesRequest, Namespace, UpdateNamespaceRequest,
};
use tonic::transport::Channel;

use crate::{from_labels, status_to_error, to_labels};

/// The Namespaces service of berthd or containerd. Namespaces are global: these calls carry no
/// namespace header.
///
/// Cloning is cheap: clones share the channel.
#[derive(Debug, Clone)]
pub struct RemoteNamespaces {
    channel: Channel,
}

fn missing() -> Error {
    Error::internal("server response lacks namespace")
}

impl RemoteNamespaces {
    /// A namespaces client speaking over `channel` (see [`crate::connect`]).
    pub fn new(channel: Channel) -> Self {
        RemoteNamespaces { channel }
    }

    fn client(&self) -> NamespacesClient<Channel> {
        NamespacesClient::new(self.channel.clone())
            .max_decoding_message_size(crate::MAX_MESSAGE_SIZE)
    }

    /// The labels of namespace `name`; `NotFound` if it does not exist.
    pub async fn get(&self, name: &str) -> Result<BTreeMap<String, String>> {
        let req = GetNamespaceRequest {
            name: name.to_string(),
        };
        let resp = self
            .client()
            .get(req)
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(to_labels(resp.namespace.ok_or_else(missing)?.labels))
    }

    /// Every namespace with its labels, sorted by name.
    pub async fn list(&self) -> Result<Vec<(String, BTreeMap<String, String>)>> {
        let resp = self
            .client()
            .list(ListNamespacesRequest::default())
            .await
            .map_err(status_to_error)?
            .into_inner();
        let mut out: Vec<_> = resp
            .namespaces
            .into_iter()
            .map(|n| (n.name, to_labels(n.labels)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Create namespace `name` with `labels`; `AlreadyExists` if it is there.
    pub async fn create(&self, name: &str, labels: BTreeMap<String, String>) -> Result<()> {
        let req = CreateNamespaceRequest {
            namespace: Some(Namespace {
                name: name.to_string(),
                labels: from_labels(labels),
            }),
        };
        self.client().create(req).await.map_err(status_to_error)?;
        Ok(())
    }

    /// Update the labels of `name` under containerd's field-mask rules (`labels`,
    /// `labels.<key>`; no paths replaces every label) and return the resulting labels.
    pub async fn update(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        fieldpaths: &[String],
    ) -> Result<BTreeMap<String, String>> {
        let req = UpdateNamespaceRequest {
            namespace: Some(Namespace {
                name: name.to_string(),
                labels: from_labels(labels),
            }),
            update_mask: (!fieldpaths.is_empty()).then(|| prost_types::FieldMask {
                paths: fieldpaths.to_vec(),
            }),
        };
        let resp = self
            .client()
            .update(req)
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(to_labels(resp.namespace.ok_or_else(missing)?.labels))
    }

    /// Delete the namespace `name`; `FailedPrecondition` when it is not empty.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let req = DeleteNamespaceRequest {
            name: name.to_string(),
        };
        self.client().delete(req).await.map_err(status_to_error)?;
        Ok(())
    }
}

/// What the Version service reports of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// The daemon's version, e.g. `0.1.0` or containerd's `v2.0.0`.
    pub version: String,
    /// The source revision it was built from.
    pub revision: String,
}

/// Ask the daemon for its version.
pub async fn server_version(channel: Channel) -> Result<ServerVersion> {
    let resp = VersionClient::new(channel)
        .version(())
        .await
        .map_err(status_to_error)?
        .into_inner();
    Ok(ServerVersion {
        version: resp.version,
        revision: resp.revision,
    })
}

/// Ask the daemon for its UUID (Introspection's `Server` call).
pub async fn server_uuid(channel: Channel) -> Result<String> {
    let resp = IntrospectionClient::new(channel)
        .server(())
        .await
        .map_err(status_to_error)?
        .into_inner();
    Ok(resp.uuid)
}

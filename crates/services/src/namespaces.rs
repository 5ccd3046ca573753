//! containerd.services.namespaces.v1, publishing `/namespaces/{create,update,delete}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::events::{NamespaceCreate, NamespaceDelete, NamespaceUpdate};
use berth_api::namespaces::namespaces_server::Namespaces;
use berth_api::services::v1::{
    CreateNamespaceRequest, CreateNamespaceResponse, DeleteNamespaceRequest, GetNamespaceRequest,
    GetNamespaceResponse, ListNamespacesRequest, ListNamespacesResponse, Namespace,
    UpdateNamespaceRequest, UpdateNamespaceResponse,
};
use berth_core::namespaces::NamespaceStore;

use crate::events::Exchange;
use crate::status::{GrpcResult, IntoStatus};

/// The Namespaces service over any [`NamespaceStore`].
#[derive(Debug)]
pub struct NamespacesService<S> {
    pub store: Arc<S>,
    pub exchange: Exchange,
}

/// Namespace events go out in the caller's namespace, as containerd publishes them; a caller
/// without one gets them in the namespace concerned.
fn event_namespace<T>(req: &tonic::Request<T>) -> Option<String> {
    crate::request::namespace(req).ok()
}

fn msg(name: String, labels: BTreeMap<String, String>) -> Namespace {
    Namespace {
        name,
        labels: labels.into_iter().collect(),
    }
}

#[tonic::async_trait]
impl<S: NamespaceStore + 'static> Namespaces for NamespacesService<S> {
    async fn get(
        &self,
        req: tonic::Request<GetNamespaceRequest>,
    ) -> GrpcResult<GetNamespaceResponse> {
        let name = req.into_inner().name;
        let labels = self.store.get(&name).grpc()?;
        Ok(tonic::Response::new(GetNamespaceResponse {
            namespace: Some(msg(name, labels)),
        }))
    }

    async fn list(
        &self,
        _req: tonic::Request<ListNamespacesRequest>,
    ) -> GrpcResult<ListNamespacesResponse> {
        let namespaces = self
            .store
            .list()
            .grpc()?
            .into_iter()
            .map(|(n, l)| msg(n, l))
            .collect();
        Ok(tonic::Response::new(ListNamespacesResponse { namespaces }))
    }

    async fn create(
        &self,
        req: tonic::Request<CreateNamespaceRequest>,
    ) -> GrpcResult<CreateNamespaceResponse> {
        let from = event_namespace(&req);
        let ns = req
            .into_inner()
            .namespace
            .ok_or_else(|| tonic::Status::invalid_argument("namespace must not be empty"))?;
        let labels: BTreeMap<_, _> = ns.labels.into_iter().collect();
        self.store.create(&ns.name, labels.clone()).grpc()?;
        self.exchange.publish(
            from.as_deref().unwrap_or(&ns.name),
            "/namespaces/create",
            &NamespaceCreate {
                name: ns.name.clone(),
                labels: labels.clone().into_iter().collect(),
            },
        );
        Ok(tonic::Response::new(CreateNamespaceResponse {
            namespace: Some(msg(ns.name, labels)),
        }))
    }

    async fn update(
        &self,
        req: tonic::Request<UpdateNamespaceRequest>,
    ) -> GrpcResult<UpdateNamespaceResponse> {
        let from = event_namespace(&req);
        let req = req.into_inner();
        let ns = req
            .namespace
            .ok_or_else(|| tonic::Status::invalid_argument("namespace must not be empty"))?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let labels = self
            .store
            .update(&ns.name, ns.labels.into_iter().collect(), &paths)
            .grpc()?;
        self.exchange.publish(
            from.as_deref().unwrap_or(&ns.name),
            "/namespaces/update",
            &NamespaceUpdate {
                name: ns.name.clone(),
                labels: labels.clone().into_iter().collect(),
            },
        );
        Ok(tonic::Response::new(UpdateNamespaceResponse {
            namespace: Some(msg(ns.name, labels)),
        }))
    }

    async fn delete(&self, req: tonic::Request<DeleteNamespaceRequest>) -> GrpcResult<()> {
        let name = req.into_inner().name;
        self.store.delete(&name).grpc()?;
        // containerd publishes the deletion in the deleted namespace itself.
        self.exchange.publish(
            &name,
            "/namespaces/delete",
            &NamespaceDelete { name: name.clone() },
        );
        Ok(tonic::Response::new(()))
    }
}

//! Leases: named, optionally expiring holds that keep resources from garbage collection.
//!
//! A client takes a lease before writing content or preparing snapshots that nothing refers to
//! yet (an image pull in progress), adds those **resources** to it, and deletes the lease when the
//! resources are referenced from a root (an image record). An expired lease (label
//! [`crate::labels::GC_EXPIRE`]) protects nothing.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::SystemTime;

use crate::error::Result;
use crate::filters::Adaptor;

/// The gRPC metadata header carrying the lease a client works under (containerd's
/// `leases.WithLease`): what it creates joins that lease.
pub const GRPC_HEADER: &str = "containerd-lease";

/// A lease in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: String,
    pub created_at: SystemTime,
    pub labels: BTreeMap<String, String>,
}

impl Adaptor for Lease {
    fn field(&self, fieldpath: &[String]) -> Option<String> {
        match fieldpath.first().map(String::as_str)? {
            "id" => Some(self.id.clone()),
            "labels" => crate::filters::map_field(&fieldpath[1..], &self.labels),
            _ => None,
        }
    }
}

/// Something a lease holds: `kind` is `content`, `ingests` or `snapshots/<snapshotter>`, `id` the
/// digest, ingest ref or snapshot key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resource {
    pub id: String,
    pub kind: String,
}

impl Resource {
    /// Check the resource kind is one berth knows, as containerd does.
    pub fn validate(&self) -> Result<()> {
        let known = matches!(self.kind.as_str(), "content" | "ingests")
            || self
                .kind
                .strip_prefix("snapshots/")
                .is_some_and(|s| !s.is_empty());
        if !known {
            return Err(crate::Error::invalid_argument(format!(
                "resource type {:?} not supported",
                self.kind
            )));
        }
        if self.id.is_empty() {
            return Err(crate::Error::invalid_argument(
                "resource id must not be empty",
            ));
        }
        if self.kind == "content" {
            crate::Digest::parse(&self.id)?;
        }
        Ok(())
    }
}

/// Creates, lists and deletes leases and their resources, per namespace.
pub trait LeaseManager: Send + Sync {
    fn create(
        &self,
        ns: &str,
        id: &str,
        labels: BTreeMap<String, String>,
    ) -> impl Future<Output = Result<Lease>> + Send;
    /// Delete a lease; with `sync`, garbage collection has run before this returns.
    fn delete(&self, ns: &str, id: &str, sync: bool) -> impl Future<Output = Result<()>> + Send;
    fn list(&self, ns: &str, filters: &[String])
        -> impl Future<Output = Result<Vec<Lease>>> + Send;
    fn add_resource(
        &self,
        ns: &str,
        lease: &str,
        resource: Resource,
    ) -> impl Future<Output = Result<()>> + Send;
    fn delete_resource(
        &self,
        ns: &str,
        lease: &str,
        resource: Resource,
    ) -> impl Future<Output = Result<()>> + Send;
    fn list_resources(
        &self,
        ns: &str,
        lease: &str,
    ) -> impl Future<Output = Result<Vec<Resource>>> + Send;
}

/// A borrowed lease manager is one (workflows hold their stores by reference).
impl<T: LeaseManager> LeaseManager for &T {
    fn create(
        &self,
        ns: &str,
        id: &str,
        labels: BTreeMap<String, String>,
    ) -> impl Future<Output = Result<Lease>> + Send {
        (**self).create(ns, id, labels)
    }
    fn delete(&self, ns: &str, id: &str, sync: bool) -> impl Future<Output = Result<()>> + Send {
        (**self).delete(ns, id, sync)
    }
    fn list(
        &self,
        ns: &str,
        filters: &[String],
    ) -> impl Future<Output = Result<Vec<Lease>>> + Send {
        (**self).list(ns, filters)
    }
    fn add_resource(
        &self,
        ns: &str,
        lease: &str,
        resource: Resource,
    ) -> impl Future<Output = Result<()>> + Send {
        (**self).add_resource(ns, lease, resource)
    }
    fn delete_resource(
        &self,
        ns: &str,
        lease: &str,
        resource: Resource,
    ) -> impl Future<Output = Result<()>> + Send {
        (**self).delete_resource(ns, lease, resource)
    }
    fn list_resources(
        &self,
        ns: &str,
        lease: &str,
    ) -> impl Future<Output = Result<Vec<Resource>>> + Send {
        (**self).list_resources(ns, lease)
    }
}

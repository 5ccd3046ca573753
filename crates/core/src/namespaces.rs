//! Namespaces: the top-level partition of every object. Two namespaces never see each other's
//! images, containers, leases or content records (blobs may be shared underneath).

use std::collections::BTreeMap;

use crate::error::Result;

/// The gRPC metadata header (and ttrpc header) that carries the namespace, as containerd reads it.
pub const GRPC_HEADER: &str = "containerd-namespace";
/// The ttrpc variant of the header, used between daemon and shims.
pub const TTRPC_HEADER: &str = "containerd-namespace-ttrpc";

/// Creates, lists, labels and deletes namespaces.
pub trait NamespaceStore: Send + Sync {
    /// Create a namespace; `AlreadyExists` if it is there.
    fn create(&self, name: &str, labels: BTreeMap<String, String>) -> Result<()>;
    /// The labels of a namespace; `NotFound` if it is not there.
    fn get(&self, name: &str) -> Result<BTreeMap<String, String>>;
    /// Every namespace with its labels, sorted by name.
    fn list(&self) -> Result<Vec<(String, BTreeMap<String, String>)>>;
    /// Update labels under containerd's field-mask rules (see [`crate::labels::apply_label_mask`]).
    /// As containerd's `SetLabel`, an update that sets labels on a missing namespace creates it.
    fn update(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        fieldpaths: &[String],
    ) -> Result<BTreeMap<String, String>>;
    /// Delete an empty namespace; `FailedPrecondition` naming what is left when it is not empty.
    fn delete(&self, name: &str) -> Result<()>;
}

//! Images: named references to content.
//!
//! An **image** is a record in a namespace that gives a human name (`docker.io/library/busybox:latest`)
//! to a **target** descriptor, usually an OCI image index or manifest in the content store. The
//! record holds only the name, the target and labels: the manifest, config and layers are blobs,
//! kept alive by the garbage collector because an image is a root and its target's blobs reference
//! each other through `containerd.io/gc.ref.content.*` labels. Unpacked snapshots are kept the same
//! way, through `containerd.io/gc.ref.snapshot.<snapshotter>` labels on the config blob.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::SystemTime;

use crate::digest::Descriptor;
use crate::error::{Error, Result};
use crate::filters::{map_field, Adaptor};

/// An image record in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Unique within the namespace; by convention a normalized reference.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The root of the image's content graph (index or manifest).
    pub target: Descriptor,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

impl Image {
    /// Check the fields a store keeps, with containerd's messages.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::invalid_argument("image name must not be empty"));
        }
        crate::labels::validate_all(&self.labels)?;
        validate_target(&self.target)
    }
}

/// Check an image target: a valid digest, a positive size and a media type.
pub fn validate_target(target: &Descriptor) -> Result<()> {
    if target.size <= 0 {
        return Err(Error::invalid_argument(
            "Target.Size must be greater than zero",
        ));
    }
    if target.media_type.is_empty() {
        return Err(Error::invalid_argument("Target.MediaType must be set"));
    }
    Ok(())
}

impl Adaptor for Image {
    fn field(&self, fieldpath: &[String]) -> Option<String> {
        match fieldpath.first().map(String::as_str)? {
            "name" => Some(self.name.clone()),
            "target" => match fieldpath.get(1).map(String::as_str)? {
                "digest" => Some(self.target.digest.to_string()),
                "mediatype" => Some(self.target.media_type.clone()),
                _ => None,
            },
            "labels" => map_field(&fieldpath[1..], &self.labels),
            "annotations" => map_field(&fieldpath[1..], &self.target.annotations),
            _ => None,
        }
    }
}

/// Stores image records per namespace.
pub trait ImageStore: Send + Sync {
    fn get(&self, ns: &str, name: &str) -> impl Future<Output = Result<Image>> + Send;
    /// Images of `ns` matching any of `filters` (containerd's filter syntax; empty: all).
    fn list(&self, ns: &str, filters: &[String])
        -> impl Future<Output = Result<Vec<Image>>> + Send;
    /// Create a new image; `AlreadyExists` if the name is taken.
    fn create(&self, ns: &str, image: Image) -> impl Future<Output = Result<Image>> + Send;
    /// Update the fields named by `fieldpaths` (`labels`, `labels.<key>`, `target`,
    /// `annotations`, `annotations.<key>`); all of labels and target when empty.
    fn update(
        &self,
        ns: &str,
        image: Image,
        fieldpaths: &[String],
    ) -> impl Future<Output = Result<Image>> + Send;
    /// Delete an image record; what it kept alive becomes garbage. With `sync`, garbage
    /// collection has run before this returns.
    fn delete(&self, ns: &str, name: &str, sync: bool) -> impl Future<Output = Result<()>> + Send;
}

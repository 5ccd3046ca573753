//! Containers: the metadata of what to run, apart from any running of it.
//!
//! A **container** is a record in a namespace, named by an identifier (`redis-1`): which
//! **image** it came from (a name, for reference only), which **runtime** runs it (a name such as
//! `io.containerd.runc.v2`, which names a shim binary, and opaque runtime options), its **spec**
//! (the OCI runtime spec, `config.json`, carried as an opaque [`Any`]), and the **snapshot** that
//! is its root filesystem (a snapshotter name and a snapshot key in that snapshotter). Labels are
//! free-form; **extensions** are opaque values that clients attach by name.
//!
//! A container is not a process. Running it makes a **task** (the runtime's business, see
//! `berth-runtime`); a container record can exist with no task, and outlives its tasks. The
//! collector treats every container as a root: it keeps the container's snapshot, and the content
//! of its image.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::filters::{map_field, Adaptor};

/// An opaque, typed value, as protobuf's `google.protobuf.Any`: the `type_url` says how to read
/// `value`. berth stores and forwards these without reading them (an OCI spec is JSON under the
/// type `types.containerd.io/opencontainers/runtime-spec/1/Spec`; runtime options are protobuf).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Any {
    pub type_url: String,
    pub value: Vec<u8>,
}

/// Which runtime runs a container's tasks, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runtime {
    /// `io.containerd.runc.v2` (which resolves to the shim binary `containerd-shim-runc-v2`) or
    /// the absolute path of a shim binary.
    pub name: String,
    /// Options for the shim (for runc, `io.containerd.runc.v1.Options`), opaque to berth.
    pub options: Option<Any>,
}

/// A container record in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Unique within the namespace; an identifier (see [`crate::identifiers`]).
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// The image the container was made from, by name; informative (nothing resolves it).
    pub image: String,
    pub runtime: Runtime,
    /// The OCI runtime spec; required.
    pub spec: Option<Any>,
    /// The snapshotter holding the root filesystem; required when `snapshot_key` is set.
    pub snapshotter: String,
    /// The key of the active snapshot that is the root filesystem, in `snapshotter`.
    pub snapshot_key: String,
    /// Opaque values attached by clients, by name.
    pub extensions: BTreeMap<String, Any>,
    /// The sandbox this container belongs to (containerd 2's sandbox API), if any.
    pub sandbox: String,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

impl Container {
    /// An empty record named `id` (times at the epoch; stores set them).
    pub fn new(id: impl Into<String>) -> Container {
        Container {
            id: id.into(),
            labels: BTreeMap::new(),
            image: String::new(),
            runtime: Runtime::default(),
            spec: None,
            snapshotter: String::new(),
            snapshot_key: String::new(),
            extensions: BTreeMap::new(),
            sandbox: String::new(),
            created_at: SystemTime::UNIX_EPOCH,
            updated_at: SystemTime::UNIX_EPOCH,
        }
    }

    /// Check the record as containerd's metadata store does, with its messages.
    pub fn validate(&self) -> Result<()> {
        crate::identifiers::validate(&self.id).map_err(|e| e.context("container.ID"))?;
        if self.extensions.keys().any(String::is_empty) {
            return Err(Error::invalid_argument(
                "container.Extension keys must not be zero-length",
            ));
        }
        crate::labels::validate_all(&self.labels).map_err(|e| e.context("containers.Labels"))?;
        if self.runtime.name.is_empty() {
            return Err(Error::invalid_argument(
                "container.Runtime.Name must be set",
            ));
        }
        if self.spec.is_none() {
            return Err(Error::invalid_argument("container.Spec must be set"));
        }
        if !self.snapshot_key.is_empty() && self.snapshotter.is_empty() {
            return Err(Error::invalid_argument(
                "container.Snapshotter must be set if container.SnapshotKey is set",
            ));
        }
        Ok(())
    }

    /// Apply an update to this (stored) record as containerd does: `fieldpaths` name what to take
    /// from `update` (`labels`, `labels.<key>`, `spec`, `extensions`, `extensions.<key>`,
    /// `image`, `snapshotkey`). With no paths, all of those are replaced, and a change of
    /// snapshotter or runtime name is refused (they are immutable). The result is validated.
    pub fn apply_update(&mut self, update: &Container, fieldpaths: &[String]) -> Result<()> {
        const FULL: [&str; 5] = ["labels", "spec", "extensions", "image", "snapshotkey"];
        let full: Vec<String>;
        let paths = if fieldpaths.is_empty() {
            if self.snapshotter != update.snapshotter {
                return Err(Error::invalid_argument(
                    "container.Snapshotter field is immutable",
                ));
            }
            if self.runtime.name != update.runtime.name {
                return Err(Error::invalid_argument(
                    "container.Runtime.Name field is immutable",
                ));
            }
            full = FULL.iter().map(|s| s.to_string()).collect();
            &full[..]
        } else {
            fieldpaths
        };
        for path in paths {
            if let Some(key) = path.strip_prefix("labels.") {
                let v = update.labels.get(key).cloned().unwrap_or_default();
                self.labels.insert(key.to_string(), v);
                continue;
            }
            if let Some(key) = path.strip_prefix("extensions.") {
                let v = update.extensions.get(key).cloned().unwrap_or_default();
                self.extensions.insert(key.to_string(), v);
                continue;
            }
            match path.as_str() {
                "labels" => self.labels = update.labels.clone(),
                "spec" => self.spec = update.spec.clone(),
                "extensions" => self.extensions = update.extensions.clone(),
                "image" => self.image = update.image.clone(),
                "snapshotkey" => self.snapshot_key = update.snapshot_key.clone(),
                _ => {
                    return Err(Error::invalid_argument(format!(
                        "cannot update {path:?} field on {:?}",
                        self.id
                    )))
                }
            }
        }
        self.validate()
            .map_err(|e| e.context("update failed validation"))
    }
}

impl Adaptor for Container {
    fn field(&self, fieldpath: &[String]) -> Option<String> {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        match fieldpath.first().map(String::as_str)? {
            "id" => non_empty(&self.id),
            "image" => non_empty(&self.image),
            "runtime" => match fieldpath.get(1).map(String::as_str)? {
                "name" => non_empty(&self.runtime.name),
                _ => None,
            },
            "labels" => map_field(&fieldpath[1..], &self.labels),
            _ => None,
        }
    }
}

/// Stores container records per namespace.
pub trait ContainerStore: Send + Sync {
    /// The container `id`; `NotFound` naming it and the namespace.
    fn get(&self, ns: &str, id: &str) -> impl Future<Output = Result<Container>> + Send;
    /// Containers of `ns` matching any of `filters` (fields `id`, `image`, `runtime.name`,
    /// `labels.*`; empty: all).
    fn list(
        &self,
        ns: &str,
        filters: &[String],
    ) -> impl Future<Output = Result<Vec<Container>>> + Send;
    /// Create a record (validated; times set); `AlreadyExists` if the id is taken.
    fn create(
        &self,
        ns: &str,
        container: Container,
    ) -> impl Future<Output = Result<Container>> + Send;
    /// Update the fields named by `fieldpaths` (see [`Container::apply_update`]).
    fn update(
        &self,
        ns: &str,
        container: Container,
        fieldpaths: &[String],
    ) -> impl Future<Output = Result<Container>> + Send;
    /// Delete a record; its snapshot and image content become garbage unless something else
    /// holds them.
    fn delete(&self, ns: &str, id: &str) -> impl Future<Output = Result<()>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::Filter;
    use crate::ErrorKind;

    fn valid() -> Container {
        let mut c = Container::new("c1");
        c.runtime.name = "io.containerd.runc.v2".into();
        c.spec = Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: b"{}".to_vec(),
        });
        c
    }

    #[test]
    fn validation_uses_containerds_messages() {
        valid().validate().unwrap();
        let mut c = valid();
        c.id = "a/b".into();
        let e = c.validate().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().starts_with("container.ID: identifier \"a/b\""));
        let mut c = valid();
        c.spec = None;
        assert_eq!(
            c.validate().unwrap_err().message(),
            "container.Spec must be set: invalid argument"
        );
        let mut c = valid();
        c.runtime.name.clear();
        assert_eq!(
            c.validate().unwrap_err().message(),
            "container.Runtime.Name must be set: invalid argument"
        );
        let mut c = valid();
        c.snapshot_key = "k".into();
        assert!(c
            .validate()
            .unwrap_err()
            .message()
            .starts_with("container.Snapshotter must be set"));
        let mut c = valid();
        c.extensions.insert(String::new(), Any::default());
        assert!(c.validate().is_err());
    }

    #[test]
    fn updates_follow_field_masks() {
        let mut stored = valid();
        stored.labels.insert("a".into(), "1".into());
        stored.snapshotter = "overlayfs".into();
        let mut upd = valid();
        upd.labels.insert("b".into(), "2".into());
        upd.image = "busybox".into();
        // Full replace: immutable fields must match.
        let err = stored.clone().apply_update(&upd, &[]).unwrap_err();
        assert_eq!(
            err.message(),
            "container.Snapshotter field is immutable: invalid argument"
        );
        upd.snapshotter = "overlayfs".into();
        let mut s = stored.clone();
        s.apply_update(&upd, &[]).unwrap();
        assert_eq!(s.labels.len(), 1);
        assert_eq!(s.image, "busybox");
        // A label path merges.
        let mut s = stored.clone();
        s.apply_update(&upd, &["labels.b".into()]).unwrap();
        assert_eq!(s.labels.len(), 2);
        assert_eq!(s.image, "");
        let err = stored
            .clone()
            .apply_update(&upd, &["runtime".into()])
            .unwrap_err();
        assert_eq!(
            err.message(),
            "cannot update \"runtime\" field on \"c1\": invalid argument"
        );
    }

    #[test]
    fn filters_see_containerds_fields() {
        let mut c = valid();
        c.image = "docker.io/library/busybox:latest".into();
        c.labels.insert("app".into(), "web".into());
        for (f, want) in [
            ("id==c1", true),
            ("runtime.name==io.containerd.runc.v2", true),
            ("image~=busybox", true),
            ("labels.app==web", true),
            ("labels.app==db", false),
            ("snapshotter==overlayfs", false),
        ] {
            assert_eq!(Filter::parse(f).unwrap().matches(&c), want, "{f}");
        }
    }
}

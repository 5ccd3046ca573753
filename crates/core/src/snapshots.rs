//! Snapshotters: layered filesystems, after containerd's `snapshots.Snapshotter`.
//!
//! Vocabulary (containerd's):
//! - a **snapshot** is a filesystem tree kept by a snapshotter. It is never handed out as a path:
//!   the snapshotter answers with [`Mount`]s that assemble it wherever the caller wants;
//! - a snapshot has a **kind** ([`Kind`]): **active** snapshots are writable and in progress,
//!   **committed** snapshots are immutable and can be parents, **views** are read-only (their
//!   writes, if the mounts allow any, are discarded with the view);
//! - an active snapshot or a view is named by a **key**, chosen by the client (e.g. an ingest id
//!   or a container id); a committed snapshot is named by a **name** (e.g. an image layer's chain
//!   id). Keys and names share one namespace per snapshotter: a string names at most one
//!   snapshot, of whatever kind. [`Info::name`] holds the key or the name;
//! - a snapshot may have a **parent**, a committed snapshot it starts from: its content is the
//!   parent's (and the parent's parent's…), with its own changes on top. The parents form a
//!   **chain**; a snapshot with children cannot be removed;
//! - the life of a layer: [`Snapshotter::prepare`] an active snapshot on the previous layer,
//!   mount it and write the layer's changes (unpack a tar), then [`Snapshotter::commit`] it under
//!   its name: the active key is gone, the committed name now names the same content. A
//!   container's rootfs is a `prepare` on the image's top layer that is never committed; a
//!   [`Snapshotter::view`] is for looking at a committed snapshot read-only.
//!
//! A snapshotter is not namespaced: the metadata layer binds a namespace and maps the client's
//! keys to the backend's. Every call of this trait is one atomic operation on the snapshotter's
//! own metadata; a crash leaves either all of it or none of it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::filters::Adaptor;
pub use crate::mount::Mount;

/// The kind of a snapshot (containerd's `snapshots.Kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Read-only; created by [`Snapshotter::view`], named by a key, never committed.
    View,
    /// Writable and in progress; created by [`Snapshotter::prepare`], named by a key, becomes
    /// committed on [`Snapshotter::commit`].
    Active,
    /// Immutable, named by a name; the only kind that can be a parent.
    Committed,
}

impl Kind {
    /// The lowercase word used by filters (`kind==committed`) and by [`Kind::from_str`].
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }
}

/// containerd's `Kind.String()`: `View`, `Active`, `Committed` (what `ctr snapshots ls` shows).
impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::View => "View",
            Kind::Active => "Active",
            Kind::Committed => "Committed",
        })
    }
}

/// Parses containerd's `ParseKind` spellings, case-insensitively.
impl FromStr for Kind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "view" => Ok(Kind::View),
            "active" => Ok(Kind::Active),
            "committed" => Ok(Kind::Committed),
            _ => Err(Error::invalid_argument(format!("snapshot kind {s:?}"))),
        }
    }
}

/// What is known of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub kind: Kind,
    /// The key (active, view) or name (committed) of the snapshot.
    pub name: String,
    /// The name of the committed snapshot this one is based on, if any.
    pub parent: Option<String>,
    /// The only mutable part, through [`Snapshotter::update`].
    pub labels: BTreeMap<String, String>,
    /// When the snapshot was created; for a committed snapshot, when it was committed.
    pub created: SystemTime,
    /// When the snapshot was last changed (created, committed or updated).
    pub updated: SystemTime,
}

impl Info {
    /// An info with only a name and labels, as a client sends to [`Snapshotter::update`].
    pub fn named(name: impl Into<String>, labels: BTreeMap<String, String>) -> Info {
        Info {
            kind: Kind::Active,
            name: name.into(),
            parent: None,
            labels,
            created: SystemTime::UNIX_EPOCH,
            updated: SystemTime::UNIX_EPOCH,
        }
    }
}

/// Filter fields of a snapshot, as containerd's snapshot adaptor: `kind` (`active`, `view`,
/// `committed`), `name`, `parent` (present even when empty) and `labels.<key>`.
impl Adaptor for Info {
    fn field(&self, fieldpath: &[String]) -> Option<String> {
        match fieldpath.first().map(String::as_str)? {
            "kind" => Some(self.kind.as_str().to_string()),
            "name" => Some(self.name.clone()),
            "parent" => Some(self.parent.clone().unwrap_or_default()),
            "labels" => crate::filters::map_field(&fieldpath[1..], &self.labels),
            _ => None,
        }
    }
}

/// The disk resources a snapshot takes by itself (not counting its parents).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes allocated on disk (blocks × 512, each inode counted once, as `du`).
    pub size: i64,
    /// Number of distinct inodes, the snapshot's root directory included.
    pub inodes: i64,
}

/// A snapshotter (see the module docs for the vocabulary).
///
/// Errors use containerd's classes: a key or name that does not exist is `NotFound`; creating
/// one that exists is `AlreadyExists`; a parent that is not committed is `InvalidArgument`;
/// committing what is not active, asking mounts of a committed snapshot, or removing a snapshot
/// that has children is `FailedPrecondition`.
///
/// The trait is object-safe: a daemon keeps its backends as `Arc<dyn Snapshotter>`, chosen by
/// name at run time. Implement it with `#[async_trait::async_trait]` on the `impl` block; each
/// call's future is boxed. A backend whose work blocks (disk I/O, copying trees) runs it on a
/// blocking thread (berth-snapshots' `LocalSnapshotter`), never on the caller's executor.
#[async_trait::async_trait]
pub trait Snapshotter: Send + Sync + fmt::Debug {
    /// Info of the snapshot `key` (a key or a committed name).
    async fn stat(&self, key: &str) -> Result<Info>;

    /// Update the mutable fields of the snapshot `info.name` and return its new info. Only labels
    /// are mutable; `fieldpaths` follow containerd: empty or `labels` (replace all labels),
    /// `labels.<key>` (set that label from `info`, or remove it when `info` lacks it). Any other
    /// path is `InvalidArgument`; `kind`, `parent` and times of `info` are ignored.
    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info>;

    /// Disk usage of the snapshot `key` alone. For an active snapshot it is measured now (and
    /// may take time); for a committed one it is what was measured at commit.
    async fn usage(&self, key: &str) -> Result<Usage>;

    /// The mounts of the active snapshot or view `key` (the same as `prepare`/`view` returned).
    /// `FailedPrecondition` for a committed snapshot: commit it no more, view it.
    async fn mounts(&self, key: &str) -> Result<Vec<Mount>>;

    /// Create the active snapshot `key` on the committed snapshot `parent` (or empty) and return
    /// its mounts, writable.
    async fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>>;

    /// Create the view `key` of the committed snapshot `parent` (or empty) and return its mounts,
    /// read-only.
    async fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>>;

    /// Turn the active snapshot `key` into the committed snapshot `name`, with `labels` (they
    /// replace the active snapshot's labels). `key` no longer exists afterwards; unmount it
    /// first, its content is now immutable.
    async fn commit(&self, name: &str, key: &str, labels: BTreeMap<String, String>) -> Result<()>;

    /// Remove the snapshot `key` (of any kind) and its content. `FailedPrecondition` while it has
    /// children.
    async fn remove(&self, key: &str) -> Result<()>;

    /// Infos of the snapshots matching any of `filters` (containerd's filter syntax on `name`,
    /// `parent`, `kind`, `labels.<key>`), ordered by name.
    async fn walk(&self, filters: &[String]) -> Result<Vec<Info>>;

    /// Reclaim disk space: remove whatever lies in the snapshotter's directory that its metadata
    /// does not reference (leftovers of removals and of operations interrupted by a crash).
    async fn cleanup(&self) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::Snapshotter;

    /// Backends are held as `Arc<dyn Snapshotter>`: the trait must stay object-safe.
    #[test]
    fn snapshotter_is_object_safe() {
        let none: Option<std::sync::Arc<dyn Snapshotter>> = None;
        assert!(none.is_none());
    }
}

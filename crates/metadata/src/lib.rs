//! berth-metadata: everything berthd knows about its objects, namespaced, in one redb database.
//!
//! [`Metadata`] wraps the local blob store ([`berth_content::LocalStore`]) and gives it
//! namespaces, labels and leases, implementing [`berth_core::content::ContentStore`] and
//! [`berth_core::leases::LeaseManager`]. It also owns the garbage collector ([`gc`]), which removes
//! what no root reaches, following containerd's `docs/garbage-collection.md`.
//!
//! # Database layout (schema version 1)
//!
//! | table             | key                               | value                                   |
//! |-------------------|-----------------------------------|-----------------------------------------|
//! | `meta`            | `"schema_version"`, `"uuid"`      | u32 (LE) / the server's UUID string     |
//! | `meta`            | `"snapshot_sequence"`             | u64 (LE): the last backend-key sequence given |
//! | `namespaces`      | name                              | JSON `{labels}`                          |
//! | `content`         | (namespace, digest)               | JSON `{size, created_at, updated_at, labels}` |
//! | `leases`          | (namespace, lease id)             | JSON `{created_at, labels}`              |
//! | `lease_resources` | (namespace, lease, kind, id)      | ()                                      |
//! | `snapshots`       | (namespace, snapshotter, key)     | JSON `{kind, backend, parent, labels, created_at, updated_at}` |
//! | `images`          | (namespace, name)                 | JSON `{media_type, digest, size, annotations, labels, created_at, updated_at}` |
//! | `containers`      | (namespace, id)                   | JSON `{image, runtime, runtime_options, spec, snapshotter, snapshot_key, labels, extensions, sandbox, created_at, updated_at}` (opaque values as `{type_url, value: hex}`) |
//!
//! Times are nanoseconds since the Unix epoch. Architecture invariant: every change that touches
//! more than one record is one redb write transaction, so a crash (even `kill -9`) leaves either all
//! of it or none; blobs on disk are written before their record and removed only by the collector,
//! so a crash between the two leaves at worst an unreferenced blob that the next collection removes.

mod containers;
mod content;
mod db;
mod error;
pub mod gc;
mod images;
mod leases;
mod namespaces;
pub mod snapshots;

pub use content::MetaWriter;
pub use db::{Metadata, SCHEMA_VERSION};
pub use error::MetadataError;
pub use snapshots::NamespacedSnapshotter;

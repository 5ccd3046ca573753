//! berth-services: containerd's v1 gRPC services, served by berthd.
//!
//! Each module implements one generated server trait from `berth-api` on top of a store trait of
//! `berth-core` (so the same service runs over any implementation). This crate is the *edge*:
//!
//! Architecture invariant: berth errors become gRPC statuses only here, in [`status`], through one
//! mapping from [`berth_core::ErrorKind`] to [`tonic::Code`]. The namespace of every request is read
//! here, from the `containerd-namespace` header ([`request`]), and passed explicitly below.

pub mod containers;
pub mod content;
pub mod diff;
pub mod events;
pub mod images;
pub mod introspection;
pub mod leases;
pub mod namespaces;
pub mod plugins;
pub mod request;
pub mod snapshots;
pub mod status;
pub mod stores;
pub mod tasks;
pub mod version;

pub use events::Exchange;
pub use plugins::{Plugin, PluginRegistry};
pub use stores::LocalStores;
pub use tasks::LocalTasks;

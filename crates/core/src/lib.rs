//! berth-core: the vocabulary of berth.
//!
//! This crate holds the domain types and traits that every other crate speaks:
//! [`Digest`] and [`Descriptor`] (how content is named), [`Error`] and [`ErrorKind`] (how failures
//! are classified, after containerd's `errdefs`), [`filters`] (containerd's filter syntax),
//! [`identifiers`] (what a valid namespace or lease name is), and the store traits:
//! [`content::ContentStore`], [`leases::LeaseManager`], [`namespaces::NamespaceStore`],
//! [`snapshots::Snapshotter`], [`tasks::Tasks`] (with [`mount::Mount`], how a snapshot is assembled, as data),
//! [`diff::LayerApplier`]; and [`reference`] (image names normalized as Docker does).
//! The containerd wire strings are defined here once: headers ([`namespaces::GRPC_HEADER`],
//! [`namespaces::TTRPC_HEADER`], [`leases::GRPC_HEADER`]), labels ([`labels`]) and `Any` type
//! URLs ([`type_urls`]).
//!
//! Architecture invariant: this crate knows nothing of gRPC, redb or syscalls. It is pure data
//! and logic, so it can be tested without a daemon, a database or root.

pub mod containers;
pub mod content;
pub mod diff;
pub mod digest;
pub mod error;
pub mod filters;
pub mod identifiers;
pub mod images;
pub mod labels;
pub mod leases;
pub mod mount;
pub mod namespaces;
pub mod reference;
pub mod snapshots;
pub mod tasks;
pub mod type_urls;

pub use digest::{Descriptor, Digest, DigestAlgorithm, Digester};
pub use error::{Error, ErrorKind, Result};

//! berth-ops: what a client of berth does, as one library, in the role of containerd's Go
//! `client` package.
//!
//! The CLI runs it over gRPC (berth-client's remote stores) and berthd runs it in-process (over
//! its metadata store, its runtime manager and its layer applier), so `berth run`, the CRI server
//! and the Transfer service build containers and pull images with the same code.
//!
//! Vocabulary:
//! - the **stores** ([`Stores`]) are the core traits a workflow needs (content, leases, images,
//!   containers, snapshotters, a layer applier, tasks), bundled once per caller;
//! - a workflow that creates several objects runs **under a lease** ([`leases`]), so the garbage
//!   collector leaves half-done work alone, and **rolls back** what it made when it fails.
//! - a **container** ([`containers`]) is made from an image (record, snapshot, and a directory
//!   of its own under the state directory), then **started** (a task), **stopped**, **reaped**
//!   (its task deleted, its end recorded) and **removed**; [`stats`] reads a task's metrics.
//!
//! Architecture invariant: this crate depends on berth-core's traits and on the libraries below
//! them (images, oci, distribution), never on gRPC, redb or the daemon; flags, terminals and
//! output stay in the CLI.

mod error;

pub use error::{OpsError, Result};

pub mod containers;
pub mod leases;
pub mod signals;
pub mod stats;
mod stores;

pub use leases::with_lease;
pub use stores::Stores;

pub mod import;
pub mod pull;

pub use import::{import, ImportOptions, Imported};
pub use pull::{pull, record_image, PullOptions, Pulled, UnpackedImage};

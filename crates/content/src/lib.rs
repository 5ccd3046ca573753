//! berth-content: the local content store, blobs on disk named by digest.
//!
//! On-disk layout under the store's root (`<root>/io.containerd.content.v1.content`):
//!
//! ```text
//! blobs/<algorithm>/<hex>         committed blobs, read-only (0444)
//! ingest/<sha256(ref)>/data       bytes written so far to an ingest
//! ingest/<sha256(ref)>/ref.json   {ref, total, expected, started_at}
//! ```
//!
//! This store is not namespaced: it holds the bytes. Which namespace sees which blob, labels, and
//! leases are the metadata layer's business (`berth-metadata`), which wraps this store.
//!
//! Architecture invariant: a blob path only ever appears through `rename(2)` of a fully written,
//! fsynced and verified ingest, so a blob file is always complete and matches its name.

mod error;
mod store;
mod writer;

pub use error::ContentError;
pub use store::{BlobInfo, IngestStatus, LocalStore};
pub use writer::LocalWriter;

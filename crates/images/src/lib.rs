//! berth-images: OCI and Docker images, from the blobs in the content store to unpacked
//! snapshots.
//!
//! Vocabulary (the OCI image spec's and containerd's):
//! - an image record's **target** is a **manifest** or an **index** ([`spec`]). An index (Docker:
//!   manifest list) lists manifests, usually one per **platform** ([`Platform`]); a manifest lists
//!   one **config** and the **layers**, bottom first;
//! - a **layer** is a tar of filesystem changes, usually compressed; its **diff ID** is the digest
//!   of the uncompressed tar, listed in the config's `rootfs.diff_ids`;
//! - a **chain ID** ([`chain`]) names a stack of layers: the snapshot holding layers `0..=n`
//!   applied in order is committed under `ChainID(0..=n)`;
//! - **resolving** ([`mod@resolve`]) picks the manifest for a platform and pairs each layer blob with
//!   its diff ID and chain ID; **unpacking** ([`Unpacker`]) applies the layers into a
//!   snapshotter, skipping those whose snapshot exists.
//!
//! Everything is generic over berth-core's traits (`ContentStore`, `LeaseManager`,
//! `Snapshotter`) plus [`LayerApplier`], so the same code runs inside berthd (over the metadata
//! store) and in the CLI (over the remote clients). Nothing here performs a mount or touches a
//! file: the applier does that.

pub mod chain;
mod error;
pub mod image_archive;
pub mod platform;
pub mod resolve;
pub mod spec;
pub mod unpack;

pub use chain::{chain_id, chain_ids};
pub use error::{ImageError, Result};
pub use platform::Platform;
pub use resolve::{platforms, read_blob, resolve, resolve_manifest, Layer, ResolvedImage};
pub use unpack::{
    gc_snapshot_label, snapshotter_fn, LayerApplier, SnapshotterFn, SnapshotterProvider,
    UnpackOptions, Unpacked, UnpackedLayer, Unpacker, DEFAULT_LEASE_EXPIRY,
};

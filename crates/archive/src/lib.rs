//! berth-archive: layers in and out of snapshot directories.
//!
//! A *layer* is a tar stream (plain, gzip or zstd) holding the changes between two filesystem
//! trees; an image's root filesystem is its layers applied in order. A *whiteout* records a
//! deletion: the entry `.wh.<name>` removes `<name>` from the layers below, and the entry
//! `.wh..wh..opq` makes its directory *opaque*: nothing below shows through it. The *diff_id* of a
//! layer is the sha256 of its uncompressed tar; its *digest* is the sha256 of the blob as stored.
//!
//! - [`apply_layer`] streams a layer onto a directory, verifying the diff_id as it goes, with
//!   whiteouts either turned into overlayfs' on-disk form ([`WhiteoutMode::Overlay`], for an
//!   overlay upperdir) or carried out as deletions ([`WhiteoutMode::Delete`], for a directory
//!   that already holds the lower layers). It is built for hostile input: see [`Containment`]
//!   and [`ApplyLimits`].
//! - [`write_diff`] walks a lower and an upper tree and writes the layer between them, as
//!   containerd's walking differ does.
//!
//! Architecture invariant: this crate knows directories, not mounts or content stores. The Diff
//! service mounts snapshots, hands the directories here, and moves the bytes to and from the
//! content store.

mod apply;
mod compression;
mod diff;
mod error;
mod hash;
mod root;
mod tar_reader;

pub use apply::{apply_layer, Applied, ApplyLimits, ApplyOptions, WhiteoutMode};
pub use compression::{
    Compression, MEDIA_TYPE_DOCKER_FOREIGN_LAYER, MEDIA_TYPE_DOCKER_LAYER, MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP, MEDIA_TYPE_OCI_LAYER_ZSTD,
};
pub use diff::{write_diff, DiffOptions, Diffed};
pub use error::ArchiveError;
pub use root::Containment;

/// The prefix of a whiteout entry's name: `.wh.<name>` deletes `<name>`.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The prefix of aufs metadata entries (`.wh..wh.plnk`, …), which appliers skip.
pub const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// The entry that marks its directory opaque.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

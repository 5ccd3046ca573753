//! Layers onto filesystems: the **applier** (containerd's `diff.Applier`).
//!
//! Vocabulary:
//! - a **layer** is a tar of filesystem changes (usually compressed) kept as a blob in the
//!   content store; whiteout entries (`.wh.<name>`) delete what lower layers had;
//! - **applying** a layer writes its changes onto the filesystem a set of [`Mount`]s assembles
//!   (a snapshot's mounts); the applier returns the descriptor of the *uncompressed* tar it
//!   read, whose digest is the layer's **diff ID**, so the caller can check it against the
//!   image config;
//! - the opposite, **diffing** two filesystems into a new layer blob, is the differ's (berth-diff).
//!
//! berth-diff implements the applier in-process (berthd, tests); berth-client implements it
//! over containerd's Diff service (the CLI). berth-images' unpacker and berth-ops' workflows
//! take any implementation.

use std::future::Future;
use std::sync::Arc;

use crate::digest::Descriptor;
use crate::error::Result;
use crate::mount::Mount;

/// Applies a layer blob onto a filesystem given as mounts (containerd's `diff.Applier`).
pub trait LayerApplier: Send + Sync {
    /// Apply the layer `desc` (a blob of namespace `ns`'s content store, compressed or not) onto
    /// the filesystem `mounts` assemble, and return the descriptor of the *uncompressed* tar that
    /// was applied: its digest is the layer's diff ID.
    fn apply(
        &self,
        ns: &str,
        desc: Descriptor,
        mounts: Vec<Mount>,
    ) -> impl Future<Output = Result<Descriptor>> + Send;
}

impl<T: LayerApplier> LayerApplier for &T {
    fn apply(
        &self,
        ns: &str,
        desc: Descriptor,
        mounts: Vec<Mount>,
    ) -> impl Future<Output = Result<Descriptor>> + Send {
        (**self).apply(ns, desc, mounts)
    }
}

impl<T: LayerApplier> LayerApplier for Arc<T> {
    fn apply(
        &self,
        ns: &str,
        desc: Descriptor,
        mounts: Vec<Mount>,
    ) -> impl Future<Output = Result<Descriptor>> + Send {
        (**self).apply(ns, desc, mounts)
    }
}

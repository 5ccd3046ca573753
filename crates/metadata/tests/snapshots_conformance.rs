//! The snapshotter conformance suite against the namespaced metadata layer over each backend:
//! namespacing, backend keys and record keeping must not change any behaviour.

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use berth_content::LocalStore;
use berth_metadata::{Metadata, NamespacedSnapshotter};
use berth_snapshots::{NativeSnapshotter, OverlaySnapshotter};
use tempfile::TempDir;

fn open(dir: &TempDir) -> Metadata {
    let blobs = LocalStore::open(dir.path().join("content")).unwrap();
    Metadata::open(dir.path().join("meta.redb"), blobs).unwrap()
}

mod overlayfs {
    use super::*;

    async fn setup() -> (NamespacedSnapshotter, TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let m = open(&dir);
        let backend = OverlaySnapshotter::open(dir.path().join("overlayfs")).unwrap();
        m.register_snapshotter("overlayfs", Arc::new(backend));
        (
            m.snapshotter("conformance", "overlayfs", None).unwrap(),
            dir,
        )
    }
    berth_conformance::snapshotter_suite!(setup);
}

mod native {
    use super::*;

    async fn setup() -> (NamespacedSnapshotter, TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let m = open(&dir);
        let backend = NativeSnapshotter::open(dir.path().join("native")).unwrap();
        m.register_snapshotter("native", Arc::new(backend));
        (m.snapshotter("conformance", "native", None).unwrap(), dir)
    }
    berth_conformance::snapshotter_suite!(setup);
}

//! The snapshotter conformance suite against the overlayfs backend.

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use berth_snapshots::OverlaySnapshotter;
use tempfile::TempDir;

async fn setup() -> (OverlaySnapshotter, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = OverlaySnapshotter::open(dir.path().join("overlayfs")).unwrap();
    (s, dir)
}

berth_conformance::snapshotter_suite!(setup);

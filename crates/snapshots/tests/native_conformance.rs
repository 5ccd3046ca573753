//! The snapshotter conformance suite against the native (copying) backend.

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use berth_snapshots::NativeSnapshotter;
use tempfile::TempDir;

async fn setup() -> (NativeSnapshotter, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = NativeSnapshotter::open(dir.path().join("native")).unwrap();
    (s, dir)
}

berth_conformance::snapshotter_suite!(setup);

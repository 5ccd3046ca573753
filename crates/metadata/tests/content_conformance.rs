//! The content-store conformance suite against the in-process store (local blobs + redb metadata).

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use berth_content::LocalStore;
use berth_metadata::Metadata;
use tempfile::TempDir;

async fn setup() -> (Metadata, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let blobs = LocalStore::open(dir.path().join("content")).unwrap();
    let meta = Metadata::open(dir.path().join("meta.redb"), blobs).unwrap();
    (meta, dir)
}

berth_conformance::content_store_suite!(setup);

//! berth-ops' import in process, without root: an OCI layout archive built here (one image
//! named only by the tag `latest`, one layer) into the metadata store, unpacked into the native
//! snapshotter through berth-diff's applier. Without a base name the image cannot be named: the
//! import fails and leaves no lease; with one it is recorded as Docker would name it, unpacked,
//! and kept by a collection.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns panic on purpose

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_archive::{write_diff, Compression, DiffOptions};
use berth_content::LocalStore;
use berth_core::images::ImageStore;
use berth_core::leases::LeaseManager;
use berth_core::snapshots::Snapshotter;
use berth_core::{Digest, ErrorKind};
use berth_metadata::Metadata;
use berth_ops::{import, ImportOptions};
use berth_runtime::{RuntimeConfig, TaskManager};
use berth_services::{Exchange, LocalStores, LocalTasks};
use berth_snapshots::NativeSnapshotter;

const NS: &str = "ops-import";

fn add(tar: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, path, data).unwrap();
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.encoded())
}

/// An OCI layout tar holding one image (one layer adding `/hello`) named only `latest`; and
/// the layer's diff ID.
fn archive() -> (Vec<u8>, Digest) {
    let empty = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("hello"), b"world").unwrap();
    let mut layer = Vec::new();
    let diffed = write_diff(
        empty.path(),
        tree.path(),
        &mut layer,
        &DiffOptions {
            compression: Compression::Gzip,
        },
    )
    .unwrap();
    let layer_digest = Digest::sha256_of(&layer);
    let config = format!(
        r#"{{"architecture":"{}","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}},"config":{{}}}}"#,
        berth_images::Platform::host().architecture,
        diffed.diff_id
    );
    let config_digest = Digest::sha256_of(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_digest}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let manifest_digest = Digest::sha256_of(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"latest"}}}}]}}"#,
        manifest.len()
    );
    let mut tar = tar::Builder::new(Vec::new());
    add(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add(&mut tar, &blob_path(&layer_digest), &layer);
    add(&mut tar, &blob_path(&config_digest), config.as_bytes());
    add(&mut tar, &blob_path(&manifest_digest), manifest.as_bytes());
    add(&mut tar, "index.json", index.as_bytes());
    (tar.into_inner().unwrap(), diffed.diff_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_names_and_unpacks_under_a_lease_it_removes() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Metadata::open(
        dir.path().join("meta.redb"),
        LocalStore::open(dir.path().join("content")).unwrap(),
    )
    .unwrap();
    meta.register_snapshotter(
        "native",
        Arc::new(NativeSnapshotter::open(dir.path().join("native")).unwrap()),
    );
    let runtime = TaskManager::new(
        RuntimeConfig {
            state: dir.path().join("run"),
            root: dir.path().join("root"),
            grpc_address: dir.path().join("berthd.sock"),
            ttrpc_address: dir.path().join("berthd.sock.ttrpc"),
            publish_binary: "/bin/false".into(),
            shim_dirs: Vec::new(),
        },
        Arc::new(Exchange::new()),
    );
    let stores = LocalStores::new(meta.clone(), LocalTasks::new(meta.clone(), runtime));
    let (tar, diff_id) = archive();

    // Only a tag, no base name: nothing to call the image.
    let opts = ImportOptions {
        snapshotter: Some("native".into()),
        ..ImportOptions::default()
    };
    let err = import(&stores, NS, tar.as_slice(), &opts)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("base name"), "{err}");
    assert!(LeaseManager::list(&meta, NS, &[]).await.unwrap().is_empty());

    let opts = ImportOptions {
        base_name: Some("app".into()),
        ..opts
    };
    let imported = import(&stores, NS, tar.as_slice(), &opts).await.unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].name, "docker.io/library/app:latest");
    let image = ImageStore::get(&meta, NS, "docker.io/library/app:latest")
        .await
        .unwrap();
    assert_eq!(image.target, imported[0].target);
    assert!(LeaseManager::list(&meta, NS, &[]).await.unwrap().is_empty());

    // The layer's snapshot (its chain ID is its diff ID) outlives the lease and a collection.
    meta.collect_garbage_async().await.unwrap();
    let sn = meta.snapshotter(NS, "native", None).unwrap();
    sn.stat(&diff_id.to_string()).await.unwrap();
    let mounts = sn
        .view("look", Some(&diff_id.to_string()), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(std::path::Path::new(&mounts[0].source).join("hello")).unwrap(),
        b"world"
    );
    sn.remove("look").await.unwrap();
}

//! berthd's in-process unpack: berth-images' `Unpacker` over the metadata store, the native
//! snapshotter and berth-diff's applier (reading layers through the content store), on an image built here (two layers written by
//! berth-archive's differ, the second deleting a file of the first). No mounts are needed: the
//! native snapshotter's mounts are bind mounts, applied to and read from their directories.

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use berth_archive::{write_diff, Compression, DiffOptions};
use berth_content::LocalStore;
use berth_core::content::{ContentStore, ContentWriter, WriterOptions};
use berth_core::images::{Image, ImageStore};
use berth_core::snapshots::Snapshotter;
use berth_core::{Descriptor, Digest};
use berth_diff::WalkingDiff;
use berth_images::{snapshotter_fn, UnpackOptions, Unpacker};
use berth_metadata::Metadata;
use berth_snapshots::NativeSnapshotter;

const NS: &str = "unpack";

async fn put(m: &Metadata, media_type: &str, data: &[u8]) -> Descriptor {
    put_labelled(m, media_type, data, BTreeMap::new()).await
}

async fn put_labelled(
    m: &Metadata,
    media_type: &str,
    data: &[u8],
    labels: BTreeMap<String, String>,
) -> Descriptor {
    let digest = Digest::sha256_of(data);
    let mut w = m
        .writer(
            NS,
            WriterOptions {
                reference: format!("put-{}", digest.encoded()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.write(data).await.unwrap();
    w.commit(data.len() as i64, Some(digest.clone()), labels)
        .await
        .unwrap();
    Descriptor {
        media_type: media_type.into(),
        digest,
        size: data.len() as i64,
        annotations: BTreeMap::new(),
    }
}

/// The gzip layer from `lower` to `upper` and its diff ID.
fn layer(lower: &Path, upper: &Path) -> (Vec<u8>, Digest) {
    let mut out = Vec::new();
    let d = write_diff(
        lower,
        upper,
        &mut out,
        &DiffOptions {
            compression: Compression::Gzip,
        },
    )
    .unwrap();
    (out, d.diff_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpacks_an_image_into_native_snapshots_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let m = Metadata::open(
        dir.path().join("meta.redb"),
        LocalStore::open(dir.path().join("content")).unwrap(),
    )
    .unwrap();
    m.register_snapshotter(
        "native",
        Arc::new(NativeSnapshotter::open(dir.path().join("native")).unwrap()),
    );

    // Two trees: the second adds b and deletes a.
    let t0 = tempfile::tempdir().unwrap();
    let t1 = tempfile::tempdir().unwrap();
    let t2 = tempfile::tempdir().unwrap();
    std::fs::write(t1.path().join("a"), b"first").unwrap();
    std::fs::write(t2.path().join("b"), b"second").unwrap();
    let (l1, d1) = layer(t0.path(), t1.path());
    let (l2, d2) = layer(t1.path(), t2.path());
    let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
    let l1 = put(&m, gz, &l1).await;
    let l2 = put(&m, gz, &l2).await;
    let config = format!(
        r#"{{"architecture":"{}","os":"linux","rootfs":{{"type":"layers","diff_ids":["{d1}","{d2}"]}},"config":{{}}}}"#,
        berth_images::Platform::host().architecture
    );
    let config = put(
        &m,
        "application/vnd.oci.image.config.v1+json",
        config.as_bytes(),
    )
    .await;
    let desc = |d: &Descriptor| {
        format!(
            r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
            d.media_type, d.digest, d.size
        )
    };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{},{}]}}"#,
        desc(&config),
        desc(&l1),
        desc(&l2)
    );
    // As a pull does, the manifest references its config and layers for the collector.
    let refs = BTreeMap::from([
        (
            "containerd.io/gc.ref.content.config".to_string(),
            config.digest.to_string(),
        ),
        (
            "containerd.io/gc.ref.content.l.0".to_string(),
            l1.digest.to_string(),
        ),
        (
            "containerd.io/gc.ref.content.l.1".to_string(),
            l2.digest.to_string(),
        ),
    ]);
    let manifest = put_labelled(
        &m,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
        refs,
    )
    .await;
    ImageStore::create(
        &m,
        NS,
        Image {
            name: "example.com/two:latest".into(),
            labels: BTreeMap::new(),
            target: manifest.clone(),
            created_at: std::time::SystemTime::UNIX_EPOCH,
            updated_at: std::time::SystemTime::UNIX_EPOCH,
        },
    )
    .await
    .unwrap();

    let meta = m.clone();
    let unpacker = Unpacker::new(
        m.clone(),
        m.clone(),
        snapshotter_fn(move |ns: &str, name: &str, lease: Option<&str>| {
            meta.snapshotter(ns, name, lease)
        }),
        WalkingDiff::new(m.clone(), dir.path()),
    );
    let opts = UnpackOptions::new("native");
    let first = unpacker.unpack(NS, &manifest, &opts).await.unwrap();
    assert_eq!(first.applied(), 2);
    let again = unpacker.unpack(NS, &manifest, &opts).await.unwrap();
    assert_eq!(again.applied(), 0, "a second unpack applies nothing");

    // The top snapshot holds b and not a; the image survives a collection with its snapshots.
    let top = first.chain_id.unwrap().to_string();
    m.collect_garbage_async().await.unwrap();
    let s = m.snapshotter(NS, "native", None).unwrap();
    let mounts = s.view("look", Some(&top), BTreeMap::new()).await.unwrap();
    let root = Path::new(&mounts[0].source);
    assert_eq!(std::fs::read(root.join("b")).unwrap(), b"second");
    assert!(!root.join("a").exists());
    s.remove("look").await.unwrap();

    // Deleting the image frees its blobs and its snapshots.
    ImageStore::delete(&m, NS, "example.com/two:latest", true)
        .await
        .unwrap();
    assert!(s.walk(&[]).await.unwrap().is_empty());
    assert!(m.blobs().walk().unwrap().is_empty());
}

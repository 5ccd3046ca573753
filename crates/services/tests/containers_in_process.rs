//! berthd's own container workflow, in-process, as the CRI server will run it: berth-ops'
//! `new_container`, `start`, `reap` and `remove` over `LocalStores` (the metadata store, the
//! native snapshotter, the in-process layer applier and `LocalTasks` over a real runtime
//! manager), no gRPC anywhere. The image (busybox in one layer) is built here. Needs root and
//! Debian's runc shim: the harness's gate decides (skips recorded; `BERTH_ROOT_TESTS=require` fails).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns panic on purpose

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_archive::{write_diff, Compression, DiffOptions};
use berth_content::LocalStore;
use berth_core::containers::ContainerStore;
use berth_core::content::{ContentStore, ContentWriter, WriterOptions};
use berth_core::images::{Image, ImageStore};
use berth_core::tasks::Tasks;
use berth_core::{Descriptor, Digest};
use berth_images::Platform;
use berth_metadata::Metadata;
use berth_ops::containers::{self, HostFacts, NewContainer};
use berth_ops::Stores;
use berth_runtime::{RuntimeConfig, TaskManager};
use berth_services::{Exchange, LocalStores, LocalTasks};
use berth_snapshots::NativeSnapshotter;

const NS: &str = "in-process";

async fn put(
    m: &Metadata,
    media_type: &str,
    data: &[u8],
    labels: &[(&str, &Digest)],
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
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
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

/// An image `example.com/hi:latest`: /bin/busybox in one layer.
async fn busybox_image(m: &Metadata) {
    let empty = tempfile::tempdir().unwrap();
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir(tree.path().join("bin")).unwrap();
    std::fs::copy("/bin/busybox", tree.path().join("bin/busybox")).unwrap();
    let mut layer = Vec::new();
    let d = write_diff(
        empty.path(),
        tree.path(),
        &mut layer,
        &DiffOptions {
            compression: Compression::Gzip,
        },
    )
    .unwrap();
    let layer = put(
        m,
        "application/vnd.oci.image.layer.v1.tar+gzip",
        &layer,
        &[],
    )
    .await;
    let config = format!(
        r#"{{"architecture":"{}","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}},"config":{{"Cmd":["/bin/busybox","echo","hi"]}}}}"#,
        Platform::host().architecture,
        d.diff_id
    );
    let config = put(
        m,
        "application/vnd.oci.image.config.v1+json",
        config.as_bytes(),
        &[],
    )
    .await;
    let desc = |d: &Descriptor| {
        format!(
            r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
            d.media_type, d.digest, d.size
        )
    };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
        desc(&config),
        desc(&layer)
    );
    let manifest = put(
        m,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
        &[
            ("containerd.io/gc.ref.content.config", &config.digest),
            ("containerd.io/gc.ref.content.l.0", &layer.digest),
        ],
    )
    .await;
    ImageStore::create(
        m,
        NS,
        Image {
            name: "example.com/hi:latest".into(),
            labels: BTreeMap::new(),
            target: manifest,
            created_at: std::time::SystemTime::UNIX_EPOCH,
            updated_at: std::time::SystemTime::UNIX_EPOCH,
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_is_made_run_and_removed_in_process() {
    if berth_integration_tests::gate::setup(
        "a_container_is_made_run_and_removed_in_process",
        &["runc", "containerd-shim-runc-v2"],
    )
    .is_none()
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let meta = Metadata::open(
        tmp.path().join("meta.redb"),
        LocalStore::open(tmp.path().join("content")).unwrap(),
    )
    .unwrap();
    meta.register_snapshotter(
        "native",
        Arc::new(NativeSnapshotter::open(tmp.path().join("native")).unwrap()),
    );
    let runtime = TaskManager::new(
        RuntimeConfig {
            state: tmp.path().join("run"),
            root: tmp.path().join("root"),
            grpc_address: tmp.path().join("berthd.sock"),
            ttrpc_address: tmp.path().join("berthd.sock.ttrpc"),
            publish_binary: "/bin/true".into(),
            shim_dirs: Vec::new(),
        },
        Arc::new(Exchange::new()),
    );
    let stores = LocalStores::new(meta.clone(), LocalTasks::new(meta.clone(), runtime));
    busybox_image(&meta).await;

    let host = HostFacts::detect(tmp.path().join("state"), 0);
    let req = NewContainer {
        id: "c1".into(),
        image: "example.com/hi:latest".into(),
        snapshotter: "native".into(),
        runtime: "io.containerd.runc.v2".into(),
        labels: BTreeMap::new(),
        run: berth_oci::RunOptions {
            user: Some("0:0".into()),
            ..Default::default()
        },
        platform: Platform::host(),
    };
    let created = containers::new_container(&stores, NS, req, &host)
        .await
        .unwrap();
    let c = created.container;
    assert_eq!(c.snapshot_key, "c1");

    containers::start(&stores, NS, &c, &host.state_dir)
        .await
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), stores.tasks().wait(NS, "c1", ""))
        .await
        .expect("the task exits")
        .unwrap();
    assert_eq!(exit.code, 0);
    let reaped = containers::reap(&stores, NS, &c, false).await.unwrap();
    assert_eq!(reaped.code, 0);
    let log = containers::log_path(&host.state_dir, NS, "c1").unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "hi\n");
    let c = ContainerStore::get(&meta, NS, "c1").await.unwrap();
    assert!(matches!(
        containers::state_of(&c, None),
        containers::State::Exited { code: 0, .. }
    ));

    containers::remove(&stores, NS, &c, false, &host.state_dir)
        .await
        .unwrap();
    assert!(!log.parent().unwrap().exists());
    assert!(ContainerStore::get(&meta, NS, "c1").await.is_err());
}

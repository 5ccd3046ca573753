//! berthd's own workflows, as the CRI will run them: berth-ops over berthd's stores in this
//! process (berth-services' `LocalStores`: the metadata store with the overlayfs snapshotter
//! registered, berth-diff's applier, `LocalTasks` over a real runtime manager and Debian's runc
//! shim), from a real local registry (Debian's docker-registry, the test images pushed by
//! skopeo). No gRPC and no berthd process.
//!
//! - `pulls_and_unpacks_in_process_through_berth_ops`: the image record against the registry's
//!   digest, every blob in the content store, the unpacked chain of snapshots (which survives a
//!   collection, with no lease left) and its exact tree;
//! - `pulls_creates_and_runs_a_container_in_process`: pull busybox, then `new_container` (the
//!   user looked up in the pulled image's /etc/passwd), `start`, wait, `reap`, `remove`.
//!
//! Root tests: the harness's gate decides (skips recorded, `BERTH_ROOT_TESTS=require` fails).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns panic on purpose

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_content::LocalStore;
use berth_core::containers::ContainerStore;
use berth_core::content::ContentStore;
use berth_core::images::ImageStore;
use berth_core::leases::LeaseManager;
use berth_core::snapshots::Snapshotter;
use berth_core::tasks::Tasks;
use berth_images::Platform;
use berth_integration_tests::gate;
use berth_integration_tests::registry::check_tree;
use berth_metadata::Metadata;
use berth_ops::containers::{self, HostFacts, NewContainer};
use berth_ops::Stores;
use berth_runtime::{RuntimeConfig, TaskManager};
use berth_services::{Exchange, LocalStores, LocalTasks};
use berth_snapshots::OverlaySnapshotter;

const NS: &str = "pull-in-process";
const SNAPSHOTTER: &str = "overlayfs";

/// berthd's stores under `root`, laid out as berthd lays them out, and its metadata handle.
fn open_stores(root: &Path) -> (LocalStores, Metadata) {
    let meta = Metadata::open(
        root.join("io.containerd.metadata.v1.redb/meta.redb"),
        LocalStore::open(root.join("io.containerd.content.v1.content")).unwrap(),
    )
    .unwrap();
    meta.register_snapshotter(
        SNAPSHOTTER,
        Arc::new(
            OverlaySnapshotter::open(root.join("io.containerd.snapshotter.v1.overlayfs")).unwrap(),
        ),
    );
    let runtime = TaskManager::new(
        RuntimeConfig {
            state: root.join("run"),
            root: root.join("runtime"),
            grpc_address: root.join("berthd.sock"),
            ttrpc_address: root.join("berthd.sock.ttrpc"),
            publish_binary: "/bin/true".into(),
            shim_dirs: Vec::new(),
        },
        Arc::new(Exchange::new()),
    );
    let stores = LocalStores::new(meta.clone(), LocalTasks::new(meta.clone(), runtime));
    (stores, meta)
}

fn pull_options() -> berth_ops::PullOptions {
    berth_ops::PullOptions {
        snapshotter: Some(SNAPSHOTTER.into()),
        // No credentials, no hosts dir: a local registry over plain HTTP.
        hosts_dir: Some(PathBuf::from("/nonexistent/berth/certs.d")),
        ..berth_ops::PullOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_and_unpacks_in_process_through_berth_ops() {
    let Some(setup) = gate::setup(
        "pulls_and_unpacks_in_process_through_berth_ops",
        &["docker-registry", "skopeo"],
    ) else {
        return;
    };
    let registry = setup.registry();
    // berthd installs it in main; this test is its own process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let images = setup.images;
    let reference = registry.push_oci_layout(&images.layout("layers"), "layers:latest");
    let want = registry
        .manifest_digest("layers", "latest")
        .expect("the registry has layers:latest");

    let root = tempfile::Builder::new()
        .prefix("berth-pull-in-process-")
        .tempdir()
        .unwrap();
    let (stores, meta) = open_stores(root.path());
    let opts = pull_options();
    let pulled = berth_ops::pull(
        &stores,
        NS,
        &reference,
        opts.clone(),
        &berth_distribution::NoProgress,
    )
    .await
    .unwrap();

    // The image record: the normalized name, the registry's manifest.
    assert_eq!(pulled.name, reference);
    let image = ImageStore::get(&meta, NS, &reference).await.unwrap();
    assert_eq!(image.target.digest.to_string(), want);
    assert_eq!(pulled.fetched.target, image.target);

    // Every blob of the image is in the namespace's content store.
    let resolved = berth_images::resolve(&meta, NS, &image.target, &Platform::host())
        .await
        .unwrap();
    let mut blobs = vec![image.target.clone(), resolved.config_desc.clone()];
    blobs.extend(resolved.layers.iter().map(|l| l.blob.clone()));
    for b in &blobs {
        let info = ContentStore::info(&meta, NS, &b.digest).await.unwrap();
        assert_eq!(info.size, b.size, "{}", b.digest);
    }

    // The chain: one committed snapshot per layer, named by chain ID, the top one the pull's.
    let unpacked = pulled.unpacked.expect("unpacked").unpacked;
    assert_eq!(unpacked.layers.len(), resolved.layers.len());
    assert_eq!(unpacked.applied(), resolved.layers.len());
    let top = unpacked.chain_id.clone().expect("a top chain id");
    assert_eq!(Some(&top), resolved.chain_id());

    // Nothing is left under a lease, and a collection keeps everything the image reaches.
    assert!(LeaseManager::list(&meta, NS, &[]).await.unwrap().is_empty());
    meta.collect_garbage_async().await.unwrap();
    let sn = meta.snapshotter(NS, SNAPSHOTTER, None).unwrap();
    for l in &unpacked.layers {
        sn.stat(&l.chain_id.to_string())
            .await
            .unwrap_or_else(|e| panic!("snapshot {} after a collection: {e}", l.chain_id));
    }
    for b in &blobs {
        ContentStore::info(&meta, NS, &b.digest).await.unwrap();
    }

    // The top snapshot holds exactly the tree the image describes.
    let gc_root = BTreeMap::from([("containerd.io/gc.root".to_string(), "test".to_string())]);
    let mounts = sn
        .view("check", Some(&top.to_string()), gc_root)
        .await
        .unwrap();
    let checked =
        berth_mount::with_temp_mount(&mounts, |dir| check_tree(dir, &images.expected())).unwrap();
    sn.remove("check").await.unwrap();
    if let Err(e) = checked {
        panic!("unpacked tree differs:\n{e}");
    }

    // Pulling again downloads nothing and applies nothing.
    let again = berth_ops::pull(
        &stores,
        NS,
        &reference,
        opts,
        &berth_distribution::NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(again.fetched.downloaded, 0);
    assert_eq!(again.unpacked.expect("unpacked").unpacked.applied(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_creates_and_runs_a_container_in_process() {
    let test = "pulls_creates_and_runs_a_container_in_process";
    let Some(setup) = gate::setup(
        test,
        &[
            "docker-registry",
            "skopeo",
            "runc",
            "containerd-shim-runc-v2",
        ],
    ) else {
        return;
    };
    let registry = setup.registry();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let reference = registry.push_oci_layout(&setup.images.layout("busybox"), "busybox:latest");
    let root = tempfile::Builder::new()
        .prefix("berth-run-in-process-")
        .tempdir()
        .unwrap();
    let (stores, meta) = open_stores(root.path());
    berth_ops::pull(
        &stores,
        NS,
        &reference,
        pull_options(),
        &berth_distribution::NoProgress,
    )
    .await
    .unwrap();

    // As the CRI will: a container from the pulled image, its user looked up in the image's own
    // /etc/passwd, run detached with its output in its log.
    let host = HostFacts::detect(root.path().join("state"), 0);
    let req = NewContainer {
        id: "c1".into(),
        image: reference.clone(),
        snapshotter: SNAPSHOTTER.into(),
        runtime: "io.containerd.runc.v2".into(),
        labels: BTreeMap::new(),
        run: berth_oci::RunOptions {
            args: vec!["sh".into(), "-c".into(), "echo hi from $(id -un)".into()],
            user: Some("nobody".into()),
            ..Default::default()
        },
        platform: Platform::host(),
    };
    let c = containers::new_container(&stores, NS, req, &host)
        .await
        .unwrap()
        .container;
    assert_eq!(c.image, reference);
    containers::start(&stores, NS, &c, &host.state_dir)
        .await
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), stores.tasks().wait(NS, "c1", ""))
        .await
        .expect("the task exits within 30 s")
        .unwrap();
    assert_eq!(exit.code, 0);
    containers::reap(&stores, NS, &c, false).await.unwrap();
    let log = containers::log_path(&host.state_dir, NS, "c1").unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "hi from nobody\n");

    // Removed: record, snapshot and directory; a collection then leaves only the image's.
    let c = ContainerStore::get(&meta, NS, "c1").await.unwrap();
    containers::remove(&stores, NS, &c, false, &host.state_dir)
        .await
        .unwrap();
    assert!(!log.parent().unwrap().exists());
    assert!(ContainerStore::get(&meta, NS, "c1").await.is_err());
    let sn = meta.snapshotter(NS, SNAPSHOTTER, None).unwrap();
    assert!(
        sn.stat("c1").await.is_err(),
        "the container's snapshot is gone"
    );
}

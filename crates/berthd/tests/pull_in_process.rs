//! berthd's own pull, as the CRI will run it: berth-ops' `pull` in-process over berthd's stores
//! (the metadata store with the overlayfs snapshotter registered, berth-diff's applier), from a
//! real local registry (Debian's docker-registry with the `layers` test image pushed by
//! skopeo). No gRPC and no berthd process. Checks the image record against the registry's
//! digest, every blob of the image in the content store, the unpacked chain of snapshots (which
//! survives a collection, with no lease left) and its exact tree.
//!
//! Root-gated (overlayfs snapshots and a mount to look at the tree): without
//! `BERTH_ROOT_TESTS=1` as root it prints `SKIP` and why.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use berth_content::LocalStore;
use berth_core::content::ContentStore;
use berth_core::images::ImageStore;
use berth_core::leases::LeaseManager;
use berth_core::snapshots::Snapshotter;
use berth_diff::WalkingDiff;
use berth_images::{Platform, SnapshotterProvider};
use berth_integration_tests::registry::{check_tree, Registry, TestImages};
use berth_metadata::{Metadata, NamespacedSnapshotter};
use berth_snapshots::OverlaySnapshotter;

const NS: &str = "pull-in-process";
const SNAPSHOTTER: &str = "overlayfs";

/// berthd's stores in this process. Integrator: berth-services' `LocalStores` replaces this.
#[derive(Debug)]
struct TestStores {
    meta: Metadata,
    snapshotters: MetaSnapshotters,
    applier: WalkingDiff<Metadata>,
}

#[derive(Debug)]
struct MetaSnapshotters(Metadata);

impl SnapshotterProvider for MetaSnapshotters {
    type Snapshotter = NamespacedSnapshotter;

    fn snapshotter(
        &self,
        ns: &str,
        name: &str,
        lease: Option<&str>,
    ) -> berth_core::Result<NamespacedSnapshotter> {
        self.0.snapshotter(ns, name, lease)
    }
}

impl berth_ops::Stores for TestStores {
    type Content = Metadata;
    type Leases = Metadata;
    type Images = Metadata;
    type Containers = Metadata;
    type Snapshotters = MetaSnapshotters;
    type Applier = WalkingDiff<Metadata>;

    fn content(&self) -> &Metadata {
        &self.meta
    }
    fn leases(&self) -> &Metadata {
        &self.meta
    }
    fn images(&self) -> &Metadata {
        &self.meta
    }
    fn containers(&self) -> &Metadata {
        &self.meta
    }
    fn snapshotters(&self) -> &MetaSnapshotters {
        &self.snapshotters
    }
    fn applier(&self) -> &WalkingDiff<Metadata> {
        &self.applier
    }
}

/// berthd's layout under `root`: content, metadata, the overlayfs snapshotter.
fn open_stores(root: &std::path::Path) -> TestStores {
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
    TestStores {
        snapshotters: MetaSnapshotters(meta.clone()),
        applier: WalkingDiff::new(meta.clone(), root.to_path_buf()),
        meta,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_and_unpacks_in_process_through_berth_ops() {
    if !berth_integration_tests::enabled("pulls_and_unpacks_in_process_through_berth_ops") {
        return;
    }
    let Some(registry) = Registry::start() else {
        eprintln!("SKIP pulls_and_unpacks_in_process_through_berth_ops: no docker-registry");
        return;
    };
    // berthd installs it in main; this test is its own process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let images = TestImages::get();
    let reference = registry.push_oci_layout(&images.layout("layers"), "layers:latest");
    let want = registry
        .manifest_digest("layers", "latest")
        .expect("the registry has layers:latest");

    let root = tempfile::Builder::new()
        .prefix("berth-pull-in-process-")
        .tempdir()
        .unwrap();
    let stores = open_stores(root.path());
    let opts = berth_ops::PullOptions {
        snapshotter: Some(SNAPSHOTTER.into()),
        // No credentials, no hosts dir: a local registry over plain HTTP.
        hosts_dir: Some(PathBuf::from("/nonexistent/berth/certs.d")),
        ..berth_ops::PullOptions::default()
    };
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
    let image = ImageStore::get(&stores.meta, NS, &reference).await.unwrap();
    assert_eq!(image.target.digest.to_string(), want);
    assert_eq!(pulled.fetched.target, image.target);

    // Every blob of the image is in the namespace's content store.
    let resolved = berth_images::resolve(&stores.meta, NS, &image.target, &Platform::host())
        .await
        .unwrap();
    let mut blobs = vec![image.target.clone(), resolved.config_desc.clone()];
    blobs.extend(resolved.layers.iter().map(|l| l.blob.clone()));
    for b in &blobs {
        let info = ContentStore::info(&stores.meta, NS, &b.digest)
            .await
            .unwrap();
        assert_eq!(info.size, b.size, "{}", b.digest);
    }

    // The chain: one committed snapshot per layer, named by chain ID, the top one the pull's.
    let unpacked = pulled.unpacked.expect("unpacked").unpacked;
    assert_eq!(unpacked.layers.len(), resolved.layers.len());
    assert_eq!(unpacked.applied(), resolved.layers.len());
    let top = unpacked.chain_id.clone().expect("a top chain id");
    assert_eq!(Some(&top), resolved.chain_id());

    // Nothing is left under a lease, and a collection keeps everything the image reaches.
    assert!(LeaseManager::list(&stores.meta, NS, &[])
        .await
        .unwrap()
        .is_empty());
    stores.meta.collect_garbage_async().await.unwrap();
    let sn = stores.meta.snapshotter(NS, SNAPSHOTTER, None).unwrap();
    for l in &unpacked.layers {
        sn.stat(&l.chain_id.to_string())
            .await
            .unwrap_or_else(|e| panic!("snapshot {} after a collection: {e}", l.chain_id));
    }
    for b in &blobs {
        ContentStore::info(&stores.meta, NS, &b.digest)
            .await
            .unwrap();
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

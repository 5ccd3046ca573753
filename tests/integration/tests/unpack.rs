//! berth-images' unpack run from a client (berth-client's remote stores and Diff service) against
//! berthd, and side by side against Debian's containerd: images imported with
//! `ctr images import --no-unpack` are unpacked twice (the second applies nothing), then twice
//! at once in a fresh namespace (both succeed, each layer committed once), and the result is
//! checked with `ctr snapshots ls`, the config's gc label, the leases left, the snapshots
//! containerd's own unpack makes, and the mounted tree of the `layers` image.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use berth_client::{RemoteContentStore, RemoteImages, RemoteSnapshotter};
use berth_core::content::ContentStore;
use berth_core::images::ImageStore;
use berth_core::snapshots::Snapshotter;
use berth_images::{gc_snapshot_label, UnpackOptions, Unpacked};
use berth_integration_tests::registry::{check_tree, TestImages};
use berth_integration_tests::{ctr, ok, setup, Containerd};
use tonic::transport::Channel;

const SNAPSHOTTER: &str = "overlayfs";
const IMAGES: [&str; 2] = ["busybox", "layers"];

/// A daemon under test: its socket and a name for messages.
struct Daemon<'a> {
    name: &'static str,
    address: &'a Path,
}

impl Daemon<'_> {
    fn ctr(&self, ns: &str, args: &[&str]) -> Output {
        ctr(self.address, ns, args, None)
    }

    fn import(&self, ns: &str, images: &TestImages, name: &str, unpack: bool) {
        let archive = images.archive(name);
        let archive = archive.to_str().unwrap();
        let mut args = vec!["images", "import"];
        if unpack {
            args.extend(["--snapshotter", SNAPSHOTTER]);
        } else {
            args.push("--no-unpack");
        }
        args.push(archive);
        ok(
            self.ctr(ns, &args),
            &format!("{}: ctr images import", self.name),
        );
    }

    /// `ctr snapshots ls` as key → (parent, kind).
    fn snapshots(&self, ns: &str) -> BTreeMap<String, (String, String)> {
        let out = ok(
            self.ctr(ns, &["snapshots", "--snapshotter", SNAPSHOTTER, "ls"]),
            "ctr snapshots ls",
        );
        out.lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|w| !w.is_empty())
            .map(|w| match w.as_slice() {
                [key, kind] => (key.to_string(), (String::new(), kind.to_string())),
                [key, parent, kind] => (key.to_string(), (parent.to_string(), kind.to_string())),
                other => panic!("unexpected snapshots row {other:?}"),
            })
            .collect()
    }

    async fn channel(&self) -> Channel {
        berth_client::connect(self.address)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    async fn unpack(&self, ns: &str, name: &str) -> Unpacked {
        let channel = self.channel().await;
        let image = RemoteImages::new(channel.clone())
            .get(ns, &TestImages::import_name(name))
            .await
            .unwrap();
        berth_client::remote_unpacker(channel)
            .unpack(ns, &image.target, &UnpackOptions::new(SNAPSHOTTER))
            .await
            .unwrap_or_else(|e| panic!("{}: unpack {name}: {e}", self.name))
    }

    async fn is_unpacked(&self, ns: &str, name: &str) -> bool {
        let channel = self.channel().await;
        let image = RemoteImages::new(channel.clone())
            .get(ns, &TestImages::import_name(name))
            .await
            .unwrap();
        let opts = UnpackOptions::new(SNAPSHOTTER);
        berth_client::remote_unpacker(channel)
            .is_unpacked(ns, &image.target, SNAPSHOTTER, &opts.platform)
            .await
            .unwrap()
    }

    /// The committed chain of `unpacked` is in `ctr snapshots ls`, each on the one below, with
    /// no extract snapshot left; the config names the top; no lease is left.
    async fn check_unpacked(&self, ns: &str, unpacked: &Unpacked) {
        let snaps = self.snapshots(ns);
        let mut parent = String::new();
        for layer in &unpacked.layers {
            let key = layer.chain_id.to_string();
            let (p, kind) = snaps
                .get(&key)
                .unwrap_or_else(|| panic!("{}: snapshot {key} missing: {snaps:?}", self.name));
            assert_eq!(kind, "Committed", "{}: {key}", self.name);
            assert_eq!(*p, parent, "{}: parent of {key}", self.name);
            parent = key;
        }
        assert!(
            !snaps.keys().any(|k| k.starts_with("extract-")),
            "{}: extract snapshots left: {snaps:?}",
            self.name
        );
        let content = RemoteContentStore::new(self.channel().await);
        let info = content.info(ns, &unpacked.config.digest).await.unwrap();
        let top = unpacked.chain_id.as_ref().map(ToString::to_string);
        assert_eq!(
            info.labels.get(&gc_snapshot_label(SNAPSHOTTER)),
            top.as_ref(),
            "{}: config label",
            self.name
        );
        let leases = ok(self.ctr(ns, &["leases", "ls", "-q"]), "ctr leases ls");
        assert!(
            leases.trim().is_empty(),
            "{}: leases left: {leases}",
            self.name
        );
    }
}

async fn exercise(d: &Daemon<'_>, images: &TestImages) {
    // Sequential: the second unpack applies nothing.
    let ns = "unpack";
    for name in IMAGES {
        d.import(ns, images, name, false);
        assert!(!d.is_unpacked(ns, name).await, "{}: {name}", d.name);
        let first = d.unpack(ns, name).await;
        assert_eq!(first.applied(), first.layers.len(), "{}: {name}", d.name);
        assert!(!first.layers.is_empty());
        let second = d.unpack(ns, name).await;
        assert_eq!(second.applied(), 0, "{}: second unpack of {name}", d.name);
        assert_eq!(second.chain_id, first.chain_id);
        assert!(d.is_unpacked(ns, name).await, "{}: {name}", d.name);
        d.check_unpacked(ns, &first).await;
    }

    // Concurrent, in a namespace of its own: both succeed, each layer is committed once.
    let ns = "concurrent";
    d.import(ns, images, "layers", false);
    let (a, b) = tokio::join!(d.unpack(ns, "layers"), d.unpack(ns, "layers"));
    for (i, (la, lb)) in a.layers.iter().zip(&b.layers).enumerate() {
        assert!(
            la.applied != lb.applied,
            "{}: layer {i} applied by {} unpacks",
            d.name,
            u8::from(la.applied) + u8::from(lb.applied)
        );
    }
    d.check_unpacked(ns, &a).await;

    // The daemon's own unpack (`ctr images import`) names the same snapshots.
    let ns = "by-ctr";
    d.import(ns, images, "layers", true);
    let ours: Vec<String> = a.layers.iter().map(|l| l.chain_id.to_string()).collect();
    let theirs: Vec<String> = d
        .snapshots(ns)
        .into_iter()
        .filter(|(_, (_, kind))| kind == "Committed")
        .map(|(k, _)| k)
        .collect();
    let mut sorted = ours.clone();
    sorted.sort();
    assert_eq!(theirs, sorted, "{}: ctr's unpack and ours differ", d.name);

    // The unpacked `layers` image has exactly the tree it describes.
    let top = a.chain_id.as_ref().unwrap().to_string();
    let sn = RemoteSnapshotter::new(d.channel().await, "concurrent", SNAPSHOTTER);
    // A view no lease holds is garbage to the collector, which containerd runs on its own
    // after deletions (the `by-ctr` import's lease just went): keep it as a root.
    let root = BTreeMap::from([("containerd.io/gc.root".to_string(), "test".to_string())]);
    let mounts = sn.view("check-view", Some(&top), root).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    berth_mount::mount_all(&mounts, dir.path()).unwrap();
    let checked = check_tree(dir.path(), &images.expected());
    berth_mount::unmount_all(dir.path(), berth_mount::UnmountFlags::empty()).unwrap();
    sn.remove("check-view").await.unwrap();
    if let Err(e) = checked {
        panic!("{}: unpacked tree differs:\n{e}", d.name);
    }
}

#[tokio::test]
async fn unpack_through_berthd() {
    let Some(s) = setup("unpack_through_berthd", &["ctr"]) else {
        return;
    };
    let images = s.images;
    let berthd = s.berthd();
    let address = berthd.address();
    let d = Daemon {
        name: "berthd",
        address: &address,
    };
    exercise(&d, images).await;
}

#[tokio::test]
async fn unpack_through_containerd() {
    let Some(s) = setup("unpack_through_containerd", &["ctr", "containerd"]) else {
        return;
    };
    let Some(containerd) = Containerd::start() else {
        return;
    };
    let images = s.images;
    let address = containerd.address();
    let d = Daemon {
        name: "containerd",
        address: &address,
    };
    exercise(&d, images).await;
}

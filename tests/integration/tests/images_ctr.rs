//! Images through berthd, driven by Debian's `ctr` as a user would: pull from a real registry
//! (plain HTTP on 127.0.0.1) and unpack, list images and snapshots, mount an image and check its
//! tree exactly, export and re-import into another namespace with identical digests, and remove
//! an image so that garbage collection frees its content and snapshots, on disk too.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use berth_integration_tests::registry::{check_tree, Registry, TestImages};
use berth_integration_tests::{ok, setup as harness_setup, Berthd};

/// The gate (root tests on; ctr, skopeo and docker-registry installed), a berthd, and a
/// registry holding busybox and layers.
fn setup(test: &str) -> Option<(Berthd, Registry, &'static TestImages)> {
    let s = harness_setup(test, &["ctr", "skopeo", "docker-registry"])?;
    let registry = s.registry();
    registry.push_oci_layout(&s.images.layout("busybox"), "busybox:latest");
    registry.push_oci_layout(&s.images.layout("layers"), "layers:latest");
    Some((s.berthd(), registry, s.images))
}

/// `ctr images mount` on a temp dir; unmounted (snapshot and lease removed) when dropped.
struct Mounted<'a> {
    b: &'a Berthd,
    ns: &'a str,
    dir: tempfile::TempDir,
}

impl<'a> Mounted<'a> {
    fn new(b: &'a Berthd, ns: &'a str, reference: &str) -> Mounted<'a> {
        let dir = tempfile::Builder::new()
            .prefix("berth-mount-")
            .tempdir()
            .unwrap();
        let target = dir.path().to_str().unwrap().to_string();
        ok(
            b.ctr(ns, &["images", "mount", reference, &target]),
            "ctr images mount",
        );
        Mounted { b, ns, dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let target = self.dir.path().to_str().unwrap().to_string();
        let out = self.b.ctr(self.ns, &["images", "unmount", "--rm", &target]);
        if !out.status.success() {
            let _ = Command::new("umount").arg("-l").arg(&target).status();
        }
    }
}

fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .filter(|r: &Vec<String>| !r.is_empty())
        .collect()
}

/// Run a garbage collection and wait for it: delete a fresh lease with `--sync`.
fn sync_gc(b: &Berthd) {
    ok(
        b.ctr("default", &["leases", "create", "--id", "gc-now"]),
        "ctr leases create",
    );
    ok(
        b.ctr("default", &["leases", "rm", "--sync", "gc-now"]),
        "ctr leases rm --sync",
    );
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[test]
fn pull_unpack_list_and_mount_like_containerd() {
    let Some((b, reg, images)) = setup("pull_unpack_list_and_mount_like_containerd") else {
        return;
    };
    let busybox = reg.reference("busybox:latest");
    let layers = reg.reference("layers:latest");
    for r in [&busybox, &layers] {
        ok(
            b.ctr("default", &["images", "pull", "--plain-http", r]),
            "ctr images pull",
        );
    }
    let ls = ok(b.ctr("default", &["images", "ls"]), "ctr images ls");
    assert!(ls.contains(&busybox) && ls.contains(&layers), "{ls}");
    assert!(
        ls.contains(&images.manifest_digest("busybox")),
        "busybox digest differs from the layout's: {ls}"
    );
    let check = ok(b.ctr("default", &["images", "check"]), "ctr images check");
    for line in check.lines().skip(1) {
        assert!(
            line.contains("complete") && line.trim_end().ends_with("true"),
            "not complete and unpacked: {line}"
        );
    }

    // One committed snapshot per layer (busybox: 1, layers: 3), named by chain IDs.
    let snaps = ok(b.ctr("default", &["snapshots", "ls"]), "ctr snapshots ls");
    let committed: Vec<Vec<String>> = rows(&snaps)
        .into_iter()
        .filter(|r| r.last().map(String::as_str) == Some("Committed"))
        .collect();
    assert_eq!(committed.len(), 4, "{snaps}");
    let tree = ok(
        b.ctr("default", &["snapshots", "tree"]),
        "ctr snapshots tree",
    );
    let top = committed
        .iter()
        .find(|r| r.len() == 3)
        .map(|r| r[0].clone())
        .expect("a snapshot with a parent");
    assert!(tree.contains(&top), "{tree}");
    let info = ok(
        b.ctr("default", &["snapshots", "info", &top]),
        "ctr snapshots info",
    );
    assert!(info.contains("\"Kind\": \"Committed\""), "{info}");
    assert!(info.contains("\"Parent\": \"sha256:"), "{info}");

    // The mounted trees are exactly right.
    {
        let m = Mounted::new(&b, "default", &busybox);
        let bin = std::fs::read(m.path().join("bin/busybox")).expect("bin/busybox");
        assert_eq!(bin, std::fs::read("/bin/busybox").unwrap());
        assert_eq!(
            std::fs::read_link(m.path().join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
    }
    {
        let m = Mounted::new(&b, "default", &layers);
        if let Err(diff) = check_tree(m.path(), &images.expected()) {
            panic!("mounted layers image differs from EXPECTED.json:\n{diff}");
        }
    }
    // Unmount removed the mount snapshots: only the committed chain is left.
    let snaps = ok(b.ctr("default", &["snapshots", "ls"]), "ctr snapshots ls");
    assert_eq!(rows(&snaps).len(), 4, "{snaps}");
}

#[test]
fn export_import_round_trip_and_rm_frees_everything() {
    let Some((b, reg, _)) = setup("export_import_round_trip_and_rm_frees_everything") else {
        return;
    };
    let layers = reg.reference("layers:latest");
    ok(
        b.ctr("default", &["images", "pull", "--plain-http", &layers]),
        "ctr images pull",
    );
    let archive = b.dir.path().join("layers-export.tar");
    ok(
        b.ctr(
            "default",
            &["images", "export", archive.to_str().unwrap(), &layers],
        ),
        "ctr images export",
    );
    ok(
        b.ctr("other", &["images", "import", archive.to_str().unwrap()]),
        "ctr images import",
    );
    // The import also wrote the archive's own index blob under its (now released) lease;
    // nothing references it, so a collection removes it. Run one synchronously.
    sync_gc(&b);
    let digests = |ns: &str| -> BTreeSet<String> {
        let ls = ok(b.ctr(ns, &["content", "ls", "-q"]), "ctr content ls -q");
        ls.lines().map(str::to_string).collect()
    };
    assert_eq!(digests("default"), digests("other"));
    let img = |ns: &str| {
        let ls = ok(b.ctr(ns, &["images", "ls"]), "ctr images ls");
        rows(&ls)
            .into_iter()
            .find(|r| r[0] == layers)
            .map(|r| r[2].clone())
            .unwrap_or_else(|| panic!("{layers} not in {ns}: {ls}"))
    };
    assert_eq!(img("default"), img("other"));
    let snaps = |ns: &str| rows(&ok(b.ctr(ns, &["snapshots", "ls"]), "snapshots ls")).len();
    assert_eq!(snaps("other"), 3, "import unpacks into the other namespace");

    // Remove the image in both namespaces: GC frees content records, blobs and snapshots.
    for ns in ["default", "other"] {
        ok(
            b.ctr(ns, &["images", "rm", "--sync", &layers]),
            "ctr images rm --sync",
        );
    }
    for ns in ["default", "other"] {
        assert!(digests(ns).is_empty(), "content left in {ns}");
        assert_eq!(snaps(ns), 0, "snapshots left in {ns}");
    }
    let root = b.root();
    let blobs = root.join("io.containerd.content.v1.content/blobs/sha256");
    assert!(files_under(&blobs).is_empty(), "blobs left on disk");
    let overlay = root.join("io.containerd.snapshotter.v1.overlayfs/snapshots");
    assert!(
        files_under(&overlay).is_empty(),
        "snapshot dirs left on disk: {:?}",
        files_under(&overlay)
    );
    // ctr only warns about an image that is not there (NotFound from the server).
    let out = b.ctr("default", &["images", "rm", &layers]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not found"), "{stderr}");
}

#[test]
fn native_snapshotter_unpacks_the_same_tree() {
    let Some((b, reg, images)) = setup("native_snapshotter_unpacks_the_same_tree") else {
        return;
    };
    let layers = reg.reference("layers:latest");
    ok(
        b.ctr(
            "default",
            &[
                "images",
                "pull",
                "--plain-http",
                "--snapshotter",
                "native",
                &layers,
            ],
        ),
        "ctr images pull --snapshotter native",
    );
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().to_str().unwrap();
    ok(
        b.ctr(
            "default",
            &[
                "images",
                "mount",
                "--snapshotter",
                "native",
                &layers,
                target,
            ],
        ),
        "ctr images mount --snapshotter native",
    );
    let result = check_tree(dir.path(), &images.expected());
    let _ = b.ctr(
        "default",
        &[
            "images",
            "unmount",
            "--snapshotter",
            "native",
            "--rm",
            target,
        ],
    );
    if let Err(diff) = result {
        panic!("native tree differs from EXPECTED.json:\n{diff}");
    }
}

#[test]
fn snapshot_diff_writes_a_layer_with_whiteouts() {
    let Some((b, reg, _)) = setup("snapshot_diff_writes_a_layer_with_whiteouts") else {
        return;
    };
    let busybox = reg.reference("busybox:latest");
    ok(
        b.ctr("default", &["images", "pull", "--plain-http", &busybox]),
        "ctr images pull",
    );
    let snaps = ok(b.ctr("default", &["snapshots", "ls"]), "ctr snapshots ls");
    let top = rows(&snaps)[0][0].clone();
    // Prepare a writable snapshot on the image, change it through its mounts, diff it.
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().to_str().unwrap();
    let mount = ok(
        b.ctr(
            "default",
            &["snapshots", "prepare", "--target", target, "work", &top],
        ),
        "ctr snapshots prepare --target",
    );
    let status = Command::new("sh")
        .arg("-c")
        .arg(mount.trim())
        .status()
        .unwrap();
    assert!(status.success(), "{mount}");
    std::fs::write(dir.path().join("etc/added"), b"new file\n").unwrap();
    std::fs::remove_file(dir.path().join("etc/group")).unwrap();
    let _ = Command::new("umount").arg(target).status();
    let out = b.ctr("default", &["snapshots", "diff", "--keep", "work"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layer = dir.path().with_extension("tar.gz");
    std::fs::write(&layer, &out.stdout).unwrap();
    let list = Command::new("tar")
        .arg("-tzf")
        .arg(&layer)
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&list.stdout).into_owned();
    let _ = std::fs::remove_file(&layer);
    assert!(names.lines().any(|l| l == "etc/added"), "{names}");
    assert!(names.lines().any(|l| l == "etc/.wh.group"), "{names}");
    assert!(
        !names.contains("bin/busybox"),
        "unchanged files are not in the diff: {names}"
    );
    // The layer is in the content store, labelled with its diff ID.
    let content = ok(b.ctr("default", &["content", "ls"]), "ctr content ls");
    assert!(
        content.contains("containerd.io/uncompressed=sha256:"),
        "{content}"
    );
}

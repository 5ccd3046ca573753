//! The `berth` CLI's image and snapshot commands against berthd, as a user runs them after
//! `ctr images import --no-unpack`: unpack, list, inspect, tree, mount (exact tree), unmount,
//! remove with sync (content and snapshots freed).

use berth_integration_tests::cli::berth;
use berth_integration_tests::registry::{check_tree, TestImages};
use berth_integration_tests::{ok, setup};
use std::path::Path;

#[test]
fn image_and_snapshot_commands() {
    let Some(s) = setup("image_and_snapshot_commands", &["ctr"]) else {
        return;
    };
    let images = s.images;
    let b = s.berthd();
    let archive = images.archive("layers");
    ok(
        b.ctr(
            "default",
            &["images", "import", "--no-unpack", archive.to_str().unwrap()],
        ),
        "ctr images import --no-unpack",
    );
    let name = TestImages::import_name("layers");

    let ls = ok(berth(&b, "default", &["image", "ls"]), "berth image ls");
    assert!(ls.contains(&name), "{ls}");
    ok(
        berth(&b, "default", &["image", "unpack", &name]),
        "berth image unpack",
    );
    let json = ok(
        berth(&b, "default", &["--format", "json", "snapshot", "ls"]),
        "berth snapshot ls --format json",
    );
    assert_eq!(json.matches("\"committed\"").count(), 3, "{json}");
    let tree = ok(
        berth(&b, "default", &["snapshot", "tree"]),
        "berth snapshot tree",
    );
    assert_eq!(
        tree.lines().filter(|l| l.contains("sha256:")).count(),
        3,
        "{tree}"
    );
    let inspect = ok(
        berth(&b, "default", &["image", "inspect", &name]),
        "berth image inspect",
    );
    assert!(
        inspect.contains(&images.manifest_digest("layers")),
        "{inspect}"
    );

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().to_str().unwrap();
    ok(
        berth(&b, "default", &["image", "mount", &name, target]),
        "berth image mount",
    );
    let tree_ok = check_tree(Path::new(target), &images.expected());
    ok(
        berth(&b, "default", &["image", "unmount", target]),
        "berth image unmount",
    );
    if let Err(diff) = tree_ok {
        panic!("berth image mount gave a different tree:\n{diff}");
    }

    ok(
        berth(&b, "default", &["image", "rm", "--sync", &name]),
        "berth image rm --sync",
    );
    let content = ok(b.ctr("default", &["content", "ls", "-q"]), "ctr content ls");
    assert!(content.trim().is_empty(), "content left: {content}");
    let snaps = ok(
        berth(&b, "default", &["snapshot", "ls", "-q"]),
        "berth snapshot ls -q",
    );
    assert!(snaps.trim().is_empty(), "snapshots left: {snaps}");
}

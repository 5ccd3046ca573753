//! The `berth` CLI's image and snapshot commands against berthd, as a user runs them after
//! `ctr images import --no-unpack`: unpack, list, inspect, tree, mount (exact tree), unmount,
//! remove with sync (content and snapshots freed).

use std::path::Path;
use std::process::{Command, Output};

use berth_integration_tests::registry::{check_tree, TestImages};
use berth_integration_tests::{enabled, ok, workspace_bin, Berthd};

fn berth(b: &Berthd, args: &[&str]) -> Output {
    Command::new(workspace_bin("berth"))
        .arg("--address")
        .arg(b.address())
        .args(args)
        .output()
        .expect("run berth")
}

#[test]
fn image_and_snapshot_commands() {
    if !enabled("image_and_snapshot_commands") {
        return;
    }
    let images = TestImages::get();
    let b = Berthd::start();
    let archive = images.archive("layers");
    ok(
        b.ctr(
            "default",
            &["images", "import", "--no-unpack", archive.to_str().unwrap()],
        ),
        "ctr images import --no-unpack",
    );
    let name = TestImages::import_name("layers");

    let ls = ok(berth(&b, &["image", "ls"]), "berth image ls");
    assert!(ls.contains(&name), "{ls}");
    ok(berth(&b, &["image", "unpack", &name]), "berth image unpack");
    let json = ok(
        berth(&b, &["--format", "json", "snapshot", "ls"]),
        "berth snapshot ls --format json",
    );
    assert_eq!(json.matches("\"committed\"").count(), 3, "{json}");
    let tree = ok(berth(&b, &["snapshot", "tree"]), "berth snapshot tree");
    assert_eq!(
        tree.lines().filter(|l| l.contains("sha256:")).count(),
        3,
        "{tree}"
    );
    let inspect = ok(
        berth(&b, &["image", "inspect", &name]),
        "berth image inspect",
    );
    assert!(
        inspect.contains(&images.manifest_digest("layers")),
        "{inspect}"
    );

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().to_str().unwrap();
    ok(
        berth(&b, &["image", "mount", &name, target]),
        "berth image mount",
    );
    let tree_ok = check_tree(Path::new(target), &images.expected());
    ok(
        berth(&b, &["image", "unmount", target]),
        "berth image unmount",
    );
    if let Err(diff) = tree_ok {
        panic!("berth image mount gave a different tree:\n{diff}");
    }

    ok(
        berth(&b, &["image", "rm", "--sync", &name]),
        "berth image rm --sync",
    );
    let content = ok(b.ctr("default", &["content", "ls", "-q"]), "ctr content ls");
    assert!(content.trim().is_empty(), "content left: {content}");
    let snaps = ok(berth(&b, &["snapshot", "ls", "-q"]), "berth snapshot ls -q");
    assert!(snaps.trim().is_empty(), "snapshots left: {snaps}");
}

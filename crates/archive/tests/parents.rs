//! Symlinked parent directories, as real images have them: Debian's base layer holds
//! `var/run -> /run` (and `var/lock -> /run/lock`), and later layers (or the same one) list
//! entries under `var/run/`. With the default options every parent is resolved inside the root
//! as containerd's `fs.RootPath` does: an absolute target or `..` is taken relative to the layer
//! root, never the host's, so `var/run/foo` lands in `run/foo`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns panic on purpose

mod common;

use std::path::Path;

use berth_archive::{apply_layer, ApplyOptions, WhiteoutMode};
use common::{layer, E};

/// The shape of debian:bookworm's base layer around /run.
fn debian_base() -> Vec<E> {
    vec![
        E::dir("run/"),
        E::dir("run/lock/").mode(0o1777),
        E::dir("var/"),
        E::symlink("var/run", "/run"),
        E::symlink("var/lock", "/run/lock"),
    ]
}

fn delete_mode() -> ApplyOptions {
    ApplyOptions::default()
}

fn overlay_mode() -> ApplyOptions {
    ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        overlay_userxattr: !common::is_root(),
        ..ApplyOptions::default()
    }
}

fn is_link(p: &Path) -> bool {
    std::fs::symlink_metadata(p)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

#[test]
fn writes_through_an_absolute_link_of_the_same_layer() {
    for opts in [delete_mode(), overlay_mode()] {
        let t = tempfile::tempdir().unwrap();
        let mut entries = debian_base();
        entries.push(E::file("var/run/foo", b"pid"));
        entries.push(E::dir("var/run/sub/"));
        entries.push(E::file("var/lock/l", b"lock"));
        apply_layer(t.path(), &layer(&entries)[..], &opts).unwrap();
        let r = t.path();
        assert_eq!(std::fs::read(r.join("run/foo")).unwrap(), b"pid");
        assert!(r.join("run/sub").is_dir());
        assert_eq!(std::fs::read(r.join("run/lock/l")).unwrap(), b"lock");
        assert!(is_link(&r.join("var/run")), "var/run must stay a symlink");
        assert!(is_link(&r.join("var/lock")));
    }
}

#[test]
fn creates_the_missing_target_of_a_dangling_link_inside_the_root() {
    // The link's target does not exist yet: containerd creates `run/` (and below) in the root.
    for opts in [delete_mode(), overlay_mode()] {
        let t = tempfile::tempdir().unwrap();
        let entries = [
            E::dir("var/"),
            E::symlink("var/run", "/run"),
            E::symlink("var/up", "../../../../elsewhere"),
            E::file("var/run/lock/foo", b"x"),
            E::file("var/up/bar", b"y"),
        ];
        apply_layer(t.path(), &layer(&entries)[..], &opts).unwrap();
        let r = t.path();
        assert_eq!(std::fs::read(r.join("run/lock/foo")).unwrap(), b"x");
        // `..` stops at the root, as for a chrooted process.
        assert_eq!(std::fs::read(r.join("elsewhere/bar")).unwrap(), b"y");
        assert!(is_link(&r.join("var/run")));
        assert!(is_link(&r.join("var/up")));
    }
}

#[test]
fn writes_through_a_link_from_a_lower_layer_applied_on_the_same_tree() {
    // Delete mode: the directory holds the lower layers (a native snapshot, a mounted view),
    // so the upper layer sees the link and writes through it.
    let t = tempfile::tempdir().unwrap();
    apply_layer(t.path(), &layer(&debian_base())[..], &delete_mode()).unwrap();
    // (A `var/run/` directory entry would replace the link, in containerd too: an entry's own
    // name is never followed.)
    let upper = [
        E::file("var/run/foo", b"pid"),
        E::file("var/lock/l", b"lock"),
        E::whiteout("var/run/.wh.gone"),
    ];
    std::fs::write(t.path().join("run/gone"), b"old").unwrap();
    apply_layer(t.path(), &layer(&upper)[..], &delete_mode()).unwrap();
    let r = t.path();
    assert_eq!(std::fs::read(r.join("run/foo")).unwrap(), b"pid");
    assert_eq!(std::fs::read(r.join("run/lock/l")).unwrap(), b"lock");
    assert!(
        !r.join("run/gone").exists(),
        "the whiteout applies through the link"
    );
    assert!(is_link(&r.join("var/run")), "var/run must stay a symlink");
}

#[test]
fn overlay_upper_of_a_layer_writing_under_a_lower_link() {
    // Overlay mode applies into an upperdir that holds this layer only; like containerd's overlay
    // apply (`archive.Apply` on the upperdir, parents resolved in it), the link of the lower
    // layer is not seen and `var/run` becomes a directory of the upper.
    let lower = tempfile::tempdir().unwrap();
    apply_layer(lower.path(), &layer(&debian_base())[..], &delete_mode()).unwrap();
    let upper = tempfile::tempdir().unwrap();
    apply_layer(
        upper.path(),
        &layer(&[E::file("var/run/foo", b"pid")])[..],
        &overlay_mode(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(upper.path().join("var/run/foo")).unwrap(),
        b"pid"
    );
    assert!(is_link(&lower.path().join("var/run")), "lower untouched");
}

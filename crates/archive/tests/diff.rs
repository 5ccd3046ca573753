//! The differ: diff(lower, upper) applied onto a copy of lower reproduces upper.

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_archive::{
    apply_layer, write_diff, ApplyOptions, Compression, DiffOptions, WhiteoutMode,
};
use berth_core::Digest;
use common::{layer, set_mtime, snapshot, E};

const T: i64 = 1_600_000_000;

/// The base tree, built by applying a layer (so two copies are identical, mtimes included).
fn base(root: &Path) {
    let bytes = layer(&[
        E::dir("etc/"),
        E::file("etc/hostname", b"box\n"),
        E::file("etc/motd", b"hello\n"),
        E::file("etc/mode", b"m"),
        E::dir("var/"),
        E::dir("var/lib/"),
        E::dir("var/lib/old/"),
        E::file("var/lib/old/a", b"a"),
        E::dir("var/lib/old/deeper/"),
        E::file("var/lib/old/deeper/b", b"b"),
        E::file("file2dir", b"f"),
        E::dir("dir2link/"),
        E::file("dir2link/x", b"x"),
        E::symlink("link", "etc/hostname"),
        E::file("same-size", b"aaaa"),
        E::dir("untouched/"),
        E::file("untouched/u", b"u"),
    ]);
    apply_layer(root, &bytes[..], &ApplyOptions::default()).unwrap();
}

/// The changes a container might make.
fn mutate(u: &Path) {
    std::fs::write(u.join("etc/hostname"), b"other\n").unwrap();
    set_mtime(&u.join("etc/hostname"), T + 10);
    std::fs::remove_file(u.join("etc/motd")).unwrap();
    std::fs::set_permissions(u.join("etc/mode"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_dir_all(u.join("var/lib/old")).unwrap();
    std::fs::remove_file(u.join("file2dir")).unwrap();
    std::fs::create_dir(u.join("file2dir")).unwrap();
    std::fs::write(u.join("file2dir/inside"), b"i").unwrap();
    std::fs::remove_dir_all(u.join("dir2link")).unwrap();
    symlink("etc", u.join("dir2link")).unwrap();
    std::fs::remove_file(u.join("link")).unwrap();
    symlink("etc/motd-gone", u.join("link")).unwrap();
    // Same size and same whole-second mtime: only the content says it changed.
    std::fs::write(u.join("same-size"), b"bbbb").unwrap();
    set_mtime(&u.join("same-size"), T);
    std::fs::create_dir_all(u.join("new/deep/er")).unwrap();
    std::fs::write(u.join("new/deep/er/file"), b"new").unwrap();
    std::fs::write(u.join("new/h1"), b"linked").unwrap();
    std::fs::hard_link(u.join("new/h1"), u.join("new/h2")).unwrap();
    std::fs::write(u.join("new/setuid"), b"s").unwrap();
    std::fs::set_permissions(
        u.join("new/setuid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    let long = u.join(format!("new/{}", "l".repeat(150)));
    std::fs::write(&long, b"long name").unwrap();
    symlink("t".repeat(150), u.join("new/longlink")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        u.join("new/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_bits_truncate(0o640),
        0,
    )
    .unwrap();
    std::fs::set_permissions(u.join("new/fifo"), std::fs::Permissions::from_mode(0o640)).unwrap();
    common::set_xattr(&u.join("new/h1"), "user.note", b"xattr carried");
    common::set_xattr(&u.join("etc"), "user.dir", b"changed dir metadata");
    // Whole-second times everywhere new, so the comparison below can include them.
    for p in [
        "new/deep/er/file",
        "new/deep/er",
        "new/deep",
        "new/h1",
        "new/setuid",
        "new/fifo",
        "new/longlink",
        "file2dir/inside",
        "file2dir",
        "dir2link",
        "link",
        "new",
        "etc",
        "var/lib",
        "var",
    ] {
        set_mtime(&u.join(p), T + 20);
    }
    set_mtime(&long, T + 20);
}

struct Trees {
    _t: tempfile::TempDir,
    lower: PathBuf,
    upper: PathBuf,
    target: PathBuf,
}

fn trees() -> Trees {
    let t = tempfile::tempdir().unwrap();
    let (lower, upper, target) = (t.path().join("l"), t.path().join("u"), t.path().join("t"));
    for d in [&lower, &upper, &target] {
        std::fs::create_dir(d).unwrap();
        base(d);
    }
    mutate(&upper);
    Trees {
        _t: t,
        lower,
        upper,
        target,
    }
}

fn diff(lower: &Path, upper: &Path, compression: Compression) -> (Vec<u8>, berth_archive::Diffed) {
    let mut out = Vec::new();
    let d = write_diff(lower, upper, &mut out, &DiffOptions { compression }).unwrap();
    (out, d)
}

fn names(tar: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

#[test]
fn diff_applied_to_lower_reproduces_upper() {
    let t = trees();
    let (bytes, d) = diff(&t.lower, &t.upper, Compression::Uncompressed);
    assert_eq!(d.diff_id, Digest::sha256_of(&bytes));
    assert_eq!(d.digest, d.diff_id);
    assert_eq!(d.size, bytes.len() as u64);
    let applied = apply_layer(
        &t.target,
        &bytes[..],
        &ApplyOptions {
            expected_diff_id: Some(d.diff_id.clone()),
            ..ApplyOptions::default()
        },
    )
    .unwrap();
    assert_eq!(applied.diff_id, d.diff_id);
    assert_eq!(snapshot(&t.target, true), snapshot(&t.upper, true));
    let h1 = std::fs::metadata(t.target.join("new/h1")).unwrap();
    let h2 = std::fs::metadata(t.target.join("new/h2")).unwrap();
    assert_eq!(h1.ino(), h2.ino(), "hardlinks preserved");
}

#[test]
fn diff_emits_whiteouts_changes_and_parents_only() {
    let t = trees();
    let (bytes, _) = diff(&t.lower, &t.upper, Compression::Uncompressed);
    let names = names(&bytes);
    let expect = [
        "dir2link",
        "etc/",
        "etc/hostname",
        "etc/mode",
        "etc/.wh.motd",
        "file2dir/",
        "file2dir/inside",
        "link",
        "new/",
        "new/deep/",
        "new/deep/er/",
        "new/deep/er/file",
        "new/fifo",
        "new/h1",
        "new/h2",
    ];
    assert_eq!(&names[..expect.len()], expect, "{names:#?}");
    assert!(names.contains(&"same-size".to_string()));
    assert!(names.contains(&"var/".to_string()), "parent of a whiteout");
    assert!(names.contains(&"var/lib/".to_string()));
    assert!(names.contains(&"var/lib/.wh.old".to_string()));
    assert!(
        !names.iter().any(|n| n.starts_with("var/lib/old/")),
        "one whiteout for a deleted directory"
    );
    assert!(!names.iter().any(|n| n.starts_with("untouched")));

    let mut a = tar::Archive::new(&bytes[..]);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        if e.path().unwrap() == Path::new("new/h2") {
            assert_eq!(e.header().entry_type(), tar::EntryType::Link);
            assert_eq!(e.link_name().unwrap().unwrap(), Path::new("new/h1"));
        }
    }
}

#[test]
fn diff_is_deterministic_and_empty_for_equal_trees() {
    let t = trees();
    let (a, _) = diff(&t.lower, &t.upper, Compression::Uncompressed);
    let (b, _) = diff(&t.lower, &t.upper, Compression::Uncompressed);
    assert_eq!(a, b);
    let (empty, d) = diff(&t.lower, &t.target, Compression::Uncompressed);
    assert_eq!(empty, vec![0u8; 1024], "{:?}", names(&empty));
    assert_eq!(d.diff_id, Digest::sha256_of(&[0u8; 1024]));
}

#[test]
fn compressed_diffs_apply_with_the_same_diff_id() {
    for compression in [Compression::Gzip, Compression::Zstd] {
        let t = trees();
        let (plain, p) = diff(&t.lower, &t.upper, Compression::Uncompressed);
        let (blob, d) = diff(&t.lower, &t.upper, compression);
        assert_eq!(d.diff_id, p.diff_id);
        assert_eq!(d.uncompressed_size, plain.len() as u64);
        assert_eq!(d.digest, Digest::sha256_of(&blob));
        assert_ne!(d.digest, d.diff_id);
        assert_eq!(d.descriptor().media_type, compression.oci_media_type());
        let applied = apply_layer(&t.target, &blob[..], &ApplyOptions::default()).unwrap();
        assert_eq!(applied.diff_id, d.diff_id);
        assert_eq!(applied.digest, d.digest);
        assert_eq!(snapshot(&t.target, true), snapshot(&t.upper, true));
    }
}

#[test]
fn ownership_and_devices_round_trip_as_root() {
    require_root!("chown and mknod");
    let t = trees();
    let u = &t.upper;
    std::os::unix::fs::chown(u.join("etc/hostname"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::lchown(u.join("link"), Some(42), Some(43)).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        u.join("new/null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_bits_truncate(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    std::fs::set_permissions(u.join("new/null"), std::fs::Permissions::from_mode(0o666)).unwrap();
    common::set_xattr(&u.join("new/setuid"), "trusted.t", b"trusted");
    std::os::unix::fs::chown(u.join("new/setuid"), Some(0), Some(0)).unwrap();
    std::fs::set_permissions(
        u.join("new/setuid"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    for p in ["new/null", "new", "etc/hostname", "link", "new/setuid"] {
        set_mtime(&u.join(p), T + 30);
    }
    let (bytes, _) = diff(&t.lower, u, Compression::Uncompressed);
    apply_layer(&t.target, &bytes[..], &ApplyOptions::default()).unwrap();
    assert_eq!(snapshot(&t.target, true), snapshot(u, true));
}

/// The diff applied in overlay mode into an empty upperdir and mounted over lower shows upper.
#[test]
fn diff_applied_as_overlay_upperdir_mounts_to_upper() {
    require_root!("mounting overlayfs");
    let t = trees();
    let root = t.target.parent().unwrap();
    let (ovl_upper, work, merged) = (root.join("ou"), root.join("w"), root.join("m"));
    for d in [&ovl_upper, &work, &merged] {
        std::fs::create_dir(d).unwrap();
    }
    let (bytes, _) = diff(&t.lower, &t.upper, Compression::Uncompressed);
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        ..ApplyOptions::default()
    };
    apply_layer(&ovl_upper, &bytes[..], &opts).unwrap();
    let mount_opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        t.lower.display(),
        ovl_upper.display(),
        work.display()
    );
    let st = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &mount_opts])
        .arg(&merged)
        .status()
        .unwrap();
    if !st.success() {
        berth_conformance::skip::record("overlay mount failed here");
        return;
    }
    let seen = snapshot(&merged, false);
    let _ = std::process::Command::new("umount").arg(&merged).status();
    // Hardlinks across an overlay mount keep their inode grouping; compare everything else.
    let strip = |m: std::collections::BTreeMap<PathBuf, common::Node>| {
        m.into_iter()
            .map(|(k, mut v)| {
                v.links.clear();
                (k, v)
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(strip(seen), strip(snapshot(&t.upper, false)));
}

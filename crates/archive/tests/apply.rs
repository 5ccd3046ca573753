//! The applier on well-formed layers: every entry type, metadata, whiteouts in both modes,
//! compressions, diff_id verification, limits.

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use berth_archive::{
    apply_layer, ApplyLimits, ApplyOptions, ArchiveError, Compression, WhiteoutMode,
};
use berth_core::{Digest, ErrorKind};
use common::{gzip, layer, zstd, E};

fn apply(
    root: &Path,
    bytes: &[u8],
    opts: &ApplyOptions,
) -> Result<berth_archive::Applied, ArchiveError> {
    apply_layer(root, bytes, opts)
}

fn delete_mode() -> ApplyOptions {
    ApplyOptions::default()
}

fn overlay_mode() -> ApplyOptions {
    ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        ..ApplyOptions::default()
    }
}

#[test]
fn applies_files_dirs_symlinks_hardlinks_fifos_with_modes_and_times() {
    let t = tempfile::tempdir().unwrap();
    let bytes = layer(&[
        E::dir("etc/").mtime(1_500_000_000),
        E::file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n").mtime(1_500_000_001),
        E::dir("bin/").mode(0o750).mtime(1_500_000_002),
        E::file("bin/busybox", b"\x7fELF...").mode(0o4755),
        E::file("bin/sgid", b"g").mode(0o2711),
        E::symlink("bin/sh", "busybox").mtime(1_500_000_003),
        E::hardlink("bin/ls", "bin/busybox"),
        E::dir("tmp/").mode(0o1777),
        E::fifo("run/initctl").mode(0o600),
        E::file("usr/lib/deep/file", b"implicit parents"),
        E::file("./dot/slash", b"leading ./ is cleaned"),
        E::dir("./"),
    ]);
    let applied = apply(t.path(), &bytes, &delete_mode()).unwrap();
    assert_eq!(applied.entries, 12);
    assert_eq!(applied.diff_id, Digest::sha256_of(&bytes));
    assert_eq!(applied.uncompressed_size, bytes.len() as u64);
    assert_eq!(applied.compression, Compression::Uncompressed);
    assert_eq!(applied.digest, applied.diff_id);

    let r = t.path();
    let m = |p: &str| std::fs::symlink_metadata(r.join(p)).unwrap();
    assert_eq!(
        std::fs::read(r.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(m("etc/passwd").mode() & 0o7777, 0o644);
    assert_eq!(m("etc/passwd").mtime(), 1_500_000_001);
    assert_eq!(
        m("etc").mtime(),
        1_500_000_000,
        "directory mtime set after its children"
    );
    assert_eq!(m("bin").mode() & 0o7777, 0o750);
    assert_eq!(m("bin").mtime(), 1_500_000_002);
    assert_eq!(m("bin/busybox").mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(m("bin/sgid").mode() & 0o7777, 0o2711, "setgid kept");
    assert!(m("bin/sh").file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(r.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        m("bin/sh").mtime(),
        1_500_000_003,
        "symlink mtime, not its target's"
    );
    assert_eq!(
        m("bin/ls").ino(),
        m("bin/busybox").ino(),
        "hardlink shares the inode"
    );
    assert_eq!(m("bin/busybox").nlink(), 2);
    assert_eq!(m("tmp").mode() & 0o7777, 0o1777, "sticky bit kept");
    assert!(m("run/initctl").file_type().is_fifo());
    assert_eq!(m("run/initctl").mode() & 0o7777, 0o600);
    assert_eq!(
        m("usr/lib/deep").mode() & 0o7777,
        0o755,
        "implicit parents are 0755"
    );
    assert_eq!(
        std::fs::read(r.join("dot/slash")).unwrap(),
        b"leading ./ is cleaned"
    );
}

#[test]
fn ownership_is_applied_as_root() {
    require_root!("chown to arbitrary ids");
    let t = tempfile::tempdir().unwrap();
    let bytes = layer(&[
        E::dir("home/").owner(1000, 1000),
        E::file("home/f", b"x").owner(1234, 5678).mode(0o4750),
        E::symlink("home/l", "f").owner(42, 43),
        E::fifo("home/p").owner(7, 8),
    ]);
    apply(t.path(), &bytes, &delete_mode()).unwrap();
    let m = |p: &str| std::fs::symlink_metadata(t.path().join(p)).unwrap();
    assert_eq!((m("home").uid(), m("home").gid()), (1000, 1000));
    assert_eq!((m("home/f").uid(), m("home/f").gid()), (1234, 5678));
    assert_eq!(
        m("home/f").mode() & 0o7777,
        0o4750,
        "setuid survives the chown"
    );
    assert_eq!(
        (m("home/l").uid(), m("home/l").gid()),
        (42, 43),
        "lchown, not chown"
    );
    assert_eq!((m("home/p").uid(), m("home/p").gid()), (7, 8));
}

#[test]
fn ownership_is_skipped_when_not_preserved() {
    let t = tempfile::tempdir().unwrap();
    let bytes = layer(&[E::file("f", b"x").owner(1234, 5678)]);
    let opts = ApplyOptions {
        preserve_ownership: false,
        ..ApplyOptions::default()
    };
    apply(t.path(), &bytes, &opts).unwrap();
    let m = std::fs::metadata(t.path().join("f")).unwrap();
    assert_eq!(m.uid(), rustix::process::geteuid().as_raw());
}

#[test]
fn device_nodes_are_created_as_root_and_skipped_otherwise() {
    let t = tempfile::tempdir().unwrap();
    let bytes = layer(&[
        E::chardev("dev/null", 1, 3).mode(0o666),
        E::blockdev("dev/loop0", 7, 0).mode(0o660),
        E::file("dev/after", b"still applied"),
    ]);
    let applied = apply(t.path(), &bytes, &delete_mode()).unwrap();
    assert_eq!(applied.entries, 3);
    assert!(t.path().join("dev/after").exists());
    if !common::is_root() {
        assert!(
            !t.path().join("dev/null").exists(),
            "devices skipped as non-root"
        );
        berth_conformance::skip::record("device node creation (needs root)");
        return;
    }
    let null = std::fs::symlink_metadata(t.path().join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    let lp = std::fs::symlink_metadata(t.path().join("dev/loop0")).unwrap();
    assert!(lp.file_type().is_block_device());
    assert_eq!(lp.rdev(), rustix::fs::makedev(7, 0));
}

#[test]
fn user_xattrs_are_applied() {
    let t = tempfile::tempdir().unwrap();
    let bytes = layer(&[
        E::dir("d/").xattr("user.dir", b"on a dir"),
        E::file("d/f", b"x")
            .xattr("user.one", b"1")
            .xattr("user.bin", b"\x00\xff"),
        // A layer cannot forge overlay metadata: ignored.
        E::file("d/g", b"y").xattr("user.overlay.opaque", b"y"),
    ]);
    apply(t.path(), &bytes, &delete_mode()).unwrap();
    let x = common::xattrs(&t.path().join("d/f"));
    assert_eq!(
        x,
        vec![
            ("user.bin".to_string(), b"\x00\xff".to_vec()),
            ("user.one".to_string(), b"1".to_vec())
        ]
    );
    assert_eq!(
        common::xattrs(&t.path().join("d")),
        vec![("user.dir".to_string(), b"on a dir".to_vec())]
    );
    assert!(common::xattrs(&t.path().join("d/g")).is_empty());
}

#[test]
fn trusted_and_capability_xattrs_as_root() {
    require_root!("trusted.* and security.capability xattrs");
    let t = tempfile::tempdir().unwrap();
    // VFS_CAP_REVISION_2 with cap_net_bind_service (bit 10) permitted and effective.
    let cap = [
        0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    let bytes = layer(&[
        E::file("bin/ping", b"x")
            .mode(0o755)
            .xattr("security.capability", &cap),
        E::symlink("l", "bin/ping").xattr("trusted.note", b"on a symlink"),
        E::file("t", b"x").xattr("trusted.overlay.opaque", b"y"),
    ]);
    apply(t.path(), &bytes, &delete_mode()).unwrap();
    assert_eq!(
        common::xattrs(&t.path().join("bin/ping")),
        vec![("security.capability".to_string(), cap.to_vec())]
    );
    assert_eq!(
        common::xattrs(&t.path().join("l")),
        vec![("trusted.note".to_string(), b"on a symlink".to_vec())]
    );
    assert!(
        common::xattrs(&t.path().join("t")).is_empty(),
        "forged trusted.overlay.* ignored"
    );
}

fn lower_tree(root: &Path) {
    let bytes = layer(&[
        E::dir("a/"),
        E::file("a/keep", b"k"),
        E::file("a/gone", b"g"),
        E::dir("b/"),
        E::file("b/child", b"c"),
        E::dir("b/sub/"),
        E::file("b/sub/deep", b"d"),
        E::dir("d/"),
        E::file("d/old1", b"o"),
        E::dir("d/sub/"),
        E::file("d/sub/old2", b"o"),
        E::file("d/sub/keepme", b"lower version"),
    ]);
    apply(root, &bytes, &delete_mode()).unwrap();
}

fn whiteout_layer() -> Vec<u8> {
    let mut entries = whiteout_entries();
    entries.push(E::whiteout("nodir/.wh.x"));
    layer(&entries)
}

fn whiteout_entries() -> Vec<E> {
    vec![
        E::whiteout("a/.wh.gone"),
        E::whiteout(".wh.b"),
        E::whiteout(".wh.never-existed"),
        E::whiteout("a/.wh..wh.plnk"),
        // Opaque directory, with entries of this layer on both sides of the marker.
        E::dir("d/"),
        E::dir("d/sub/"),
        E::file("d/sub/new2", b"n"),
        E::whiteout("d/.wh..wh..opq"),
        E::file("d/new", b"n"),
    ]
}

#[test]
fn whiteouts_delete_paths_in_delete_mode() {
    let t = tempfile::tempdir().unwrap();
    lower_tree(t.path());
    apply(t.path(), &whiteout_layer(), &delete_mode()).unwrap();
    let names: Vec<String> = common::listing(t.path())
        .into_iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        names,
        ["a", "a/keep", "d", "d/new", "d/sub", "d/sub/new2", "nodir"],
        "gone, b (recursively) and everything of d from below removed; parents made as containerd does"
    );
}

#[test]
fn whiteouts_become_char_devices_and_opaque_xattrs_in_overlay_mode() {
    let t = tempfile::tempdir().unwrap();
    let mut opts = overlay_mode();
    opts.overlay_userxattr = !common::is_root();
    match apply(t.path(), &whiteout_layer(), &opts) {
        Err(e) if !common::is_root() && e.to_string().contains("create overlay whiteout") => {
            berth_conformance::skip::record(&format!(
                "unprivileged whiteout creation refused by this kernel: {e}"
            ));
            return;
        }
        r => {
            r.unwrap();
        }
    }
    let r = t.path();
    for wh in ["a/gone", "b", "never-existed", "nodir/x"] {
        let m = std::fs::symlink_metadata(r.join(wh)).unwrap();
        assert!(m.file_type().is_char_device(), "{wh}");
        assert_eq!(m.rdev(), 0, "{wh} is a 0/0 whiteout");
    }
    assert!(!r.join("a/.wh..wh.plnk").exists());
    assert!(!r.join("d/.wh..wh..opq").exists());
    let key = if common::is_root() {
        "trusted.overlay.opaque"
    } else {
        "user.overlay.opaque"
    };
    assert_eq!(
        common::xattrs(&r.join("d")),
        vec![(key.to_string(), b"y".to_vec())]
    );
    assert!(r.join("d/sub/new2").exists() && r.join("d/new").exists());
}

/// The overlay-mode upperdir, mounted over the lower, shows what delete mode produces.
#[test]
fn overlay_mode_upperdir_mounts_to_the_delete_mode_result() {
    require_root!("mounting overlayfs");
    let t = tempfile::tempdir().unwrap();
    let (lower, upper, work, merged, naive) = (
        t.path().join("lower"),
        t.path().join("upper"),
        t.path().join("work"),
        t.path().join("merged"),
        t.path().join("naive"),
    );
    for d in [&lower, &upper, &work, &merged, &naive] {
        std::fs::create_dir(d).unwrap();
    }
    lower_tree(&lower);
    lower_tree(&naive);
    // (No whiteout in a directory the lower lacks: overlayfs lists those in pure-upper dirs.)
    let layer = layer(&whiteout_entries());
    apply(&upper, &layer, &overlay_mode()).unwrap();
    apply(&naive, &layer, &delete_mode()).unwrap();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let st = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .status()
        .unwrap();
    if !st.success() {
        berth_conformance::skip::record("overlay mount failed here");
        return;
    }
    let seen = common::snapshot(&merged, false);
    let _ = std::process::Command::new("umount").arg(&merged).status();
    assert_eq!(seen, common::snapshot(&naive, false));
}

#[test]
fn existing_paths_are_replaced_and_directories_merged() {
    let t = tempfile::tempdir().unwrap();
    let first = layer(&[
        E::dir("x/"),
        E::file("x/kept", b"k"),
        E::file("f2d", b"file becomes dir"),
        E::dir("d2f/"),
        E::file("d2f/child", b"dir becomes file"),
        E::symlink("s", "/etc/passwd"),
    ]);
    apply(t.path(), &first, &delete_mode()).unwrap();
    let second = layer(&[
        E::dir("x/").mode(0o700),
        E::file("x/new", b"n"),
        E::dir("f2d/"),
        E::file("d2f", b"now a file"),
        E::file("s", b"replaces the symlink, does not write through it"),
    ]);
    apply(t.path(), &second, &delete_mode()).unwrap();
    let r = t.path();
    assert!(r.join("x/kept").exists(), "directories merge");
    assert_eq!(
        std::fs::metadata(r.join("x")).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    assert!(r.join("f2d").is_dir());
    assert_eq!(std::fs::read(r.join("d2f")).unwrap(), b"now a file");
    assert!(!std::fs::symlink_metadata(r.join("s"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn long_names_via_pax_and_gnu_extensions() {
    let t = tempfile::tempdir().unwrap();
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
    let target = format!("{}/{}", "d".repeat(120), "t".repeat(140));
    let mut bytes = layer(&[
        E::file(&target, b"target"),
        E::file(&long, b"pax path"),
        E::symlink("short", &target),
        E::hardlink("h", &target),
    ]);
    // And GNU `L` long names, as the tar crate's builder writes them.
    bytes.truncate(bytes.len() - 1024);
    let mut b = tar::Builder::new(bytes);
    let gnu = format!("{}/gnu-{}", "g".repeat(100), "n".repeat(100));
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    b.append_data(&mut h, &gnu, &b"gnu"[..]).unwrap();
    let bytes = b.into_inner().unwrap();
    apply(t.path(), &bytes, &delete_mode()).unwrap();
    assert_eq!(std::fs::read(t.path().join(&long)).unwrap(), b"pax path");
    assert_eq!(std::fs::read(t.path().join("short")).unwrap(), b"target");
    assert_eq!(std::fs::read(t.path().join("h")).unwrap(), b"target");
    assert_eq!(std::fs::read(t.path().join(&gnu)).unwrap(), b"gnu");
}

#[test]
fn plain_gzip_and_zstd_layers_have_the_same_diff_id() {
    let bytes = layer(&[E::dir("a/"), E::file("a/b", &vec![b'z'; 100_000])]);
    let diff_id = Digest::sha256_of(&bytes);
    for (compression, blob) in [
        (Compression::Uncompressed, bytes.clone()),
        (Compression::Gzip, gzip(&bytes)),
        (Compression::Zstd, zstd(&bytes)),
    ] {
        let t = tempfile::tempdir().unwrap();
        let media_type = compression.oci_media_type();
        let opts = ApplyOptions {
            compression: Some(Compression::from_media_type(media_type).unwrap()),
            expected_diff_id: Some(diff_id.clone()),
            ..ApplyOptions::default()
        };
        let applied = apply(t.path(), &blob, &opts).unwrap();
        assert_eq!(applied.compression, compression);
        assert_eq!(applied.diff_id, diff_id, "{compression}");
        assert_eq!(applied.digest, Digest::sha256_of(&blob), "{compression}");
        assert_eq!(applied.size, blob.len() as u64);
        assert_eq!(applied.uncompressed_size, bytes.len() as u64);
        assert_eq!(applied.descriptor().digest, diff_id);
        assert_eq!(std::fs::read(t.path().join("a/b")).unwrap().len(), 100_000);
    }
}

#[test]
fn declared_compression_must_match_the_bytes() {
    let bytes = layer(&[E::file("a", b"x")]);
    let t = tempfile::tempdir().unwrap();
    let opts = ApplyOptions {
        compression: Some(Compression::Gzip),
        ..ApplyOptions::default()
    };
    let err = apply(t.path(), &bytes, &opts).unwrap_err();
    assert!(
        matches!(err, ArchiveError::CompressionMismatch { .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn diff_id_covers_padding_after_the_end_marker_and_mismatch_fails() {
    let mut bytes = layer(&[E::file("a", b"x")]);
    bytes.resize(10240, 0); // a full tar record, as GNU tar pads
    let t = tempfile::tempdir().unwrap();
    let applied = apply(t.path(), &bytes, &delete_mode()).unwrap();
    assert_eq!(applied.diff_id, Digest::sha256_of(&bytes));
    assert_eq!(applied.uncompressed_size, 10240);

    let wrong = Digest::sha256_of(b"something else");
    let opts = ApplyOptions {
        expected_diff_id: Some(wrong.clone()),
        ..ApplyOptions::default()
    };
    let t = tempfile::tempdir().unwrap();
    let err = apply(t.path(), &gzip(&bytes), &opts).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    let msg = err.to_string();
    assert!(
        msg.contains(&wrong.to_string()) && msg.contains(&Digest::sha256_of(&bytes).to_string()),
        "{msg}"
    );
}

#[test]
fn limits_bound_entries_names_and_bytes() {
    let many: Vec<E> = (0..20).map(|i| E::file(&format!("f{i}"), b"x")).collect();
    let bytes = layer(&many);
    let small = |l: ApplyLimits| ApplyOptions {
        limits: l,
        ..ApplyOptions::default()
    };

    let t = tempfile::tempdir().unwrap();
    let err = apply(
        t.path(),
        &bytes,
        &small(ApplyLimits {
            max_entries: 10,
            ..ApplyLimits::default()
        }),
    )
    .unwrap_err();
    assert!(
        matches!(err, ArchiveError::TooManyEntries { limit: 10 }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::OutOfRange);

    let t = tempfile::tempdir().unwrap();
    let err = apply(
        t.path(),
        &bytes,
        &small(ApplyLimits {
            max_uncompressed_bytes: 4096,
            ..ApplyLimits::default()
        }),
    )
    .unwrap_err();
    assert!(
        matches!(err, ArchiveError::TooLarge { limit: 4096 }),
        "{err}"
    );

    let t = tempfile::tempdir().unwrap();
    let long = layer(&[E::file(&"n".repeat(300), b"x")]);
    let err = apply(
        t.path(),
        &long,
        &small(ApplyLimits {
            max_name_len: 255,
            ..ApplyLimits::default()
        }),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("exceeds the limit of 255"),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn malformed_and_unsupported_archives_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let mut bad = layer(&[E::file("a", b"x")]);
    bad[0] ^= 0x01; // breaks the checksum
    let err = apply(t.path(), &bad, &delete_mode()).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    let mut truncated = layer(&[E::file("a", &[1u8; 4000])]);
    truncated.truncate(1500);
    let err = apply(t.path(), &truncated, &delete_mode()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");

    let mut sparse = E::file("s", b"");
    sparse.kind = tar::EntryType::GNUSparse;
    let err = apply(t.path(), &layer(&[sparse]), &delete_mode()).unwrap_err();
    assert!(
        matches!(err, ArchiveError::UnsupportedEntry { .. }),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::NotImplemented);

    let err = apply(t.path(), b"BZh91AY&SY", &delete_mode()).unwrap_err();
    assert!(err.to_string().contains("bzip2"), "{err}");
}

#[test]
fn header_only_types_carry_no_data_as_in_go() {
    // A directory whose size field claims 512 bytes: Go ignores the size, so the next block is
    // the next header, not data.
    let t = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    common::append(&mut bytes, &E::dir("d/").declared_size(512));
    common::append(&mut bytes, &E::file("d/f", b"after"));
    bytes.extend_from_slice(&[0u8; 1024]);
    apply(t.path(), &bytes, &delete_mode()).unwrap();
    assert_eq!(std::fs::read(t.path().join("d/f")).unwrap(), b"after");
}

#[test]
fn deep_trees_are_created_and_removed_without_recursion() {
    // 2000 levels, the most a 4096-byte name allows; created, cleared as opaque, whited out.
    let deep = format!("d/{}f", "a/".repeat(1999));
    let t = tempfile::tempdir().unwrap();
    apply(t.path(), &layer(&[E::file(&deep, b"deep")]), &delete_mode()).unwrap();
    assert_eq!(std::fs::read(t.path().join(&deep)).unwrap(), b"deep");
    apply(
        t.path(),
        &layer(&[E::whiteout("d/.wh..wh..opq")]),
        &delete_mode(),
    )
    .unwrap();
    assert!(t.path().join("d").exists() && !t.path().join("d/a").exists());
    apply(
        t.path(),
        &layer(&[E::file(&deep, b"again")]),
        &delete_mode(),
    )
    .unwrap();
    apply(t.path(), &layer(&[E::whiteout(".wh.d")]), &delete_mode()).unwrap();
    assert!(!t.path().join("d").exists());
}

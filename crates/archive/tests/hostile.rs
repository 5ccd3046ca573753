//! Hostile layers: each is rejected with a clear error, and nothing is written outside the root.
//!
//! The root sits at `<tmp>/x/y/root`, with a victim file beside it, so a `..` escape of one to
//! three levels, or a symlink to a parent, would land somewhere the tests look.

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_archive::{
    apply_layer, ApplyLimits, ApplyOptions, ArchiveError, Containment, WhiteoutMode,
};
use berth_core::ErrorKind;
use common::{layer, E};

struct Sandbox {
    _tmp: tempfile::TempDir,
    outer: PathBuf,
    root: PathBuf,
    before: Vec<PathBuf>,
    passwd: Vec<u8>,
}

impl Sandbox {
    fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let outer = tmp.path().to_path_buf();
        let root = outer.join("x/y/root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(outer.join("x/y/victim"), b"victim").unwrap();
        std::fs::create_dir(outer.join("x/etc")).unwrap();
        std::fs::write(outer.join("x/etc/passwd"), b"outer passwd").unwrap();
        let before = outside(&outer);
        Sandbox {
            _tmp: tmp,
            outer,
            root,
            before,
            passwd: std::fs::read("/etc/passwd").unwrap_or_default(),
        }
    }

    fn apply(&self, bytes: &[u8], opts: &ApplyOptions) -> Result<(), ArchiveError> {
        apply_layer(&self.root, bytes, opts).map(|_| ())
    }

    /// Nothing outside the root changed: same paths, victims intact, the host's passwd intact.
    fn assert_contained(&self) {
        assert_eq!(
            outside(&self.outer),
            self.before,
            "paths outside the root changed"
        );
        assert_eq!(
            std::fs::read(self.outer.join("x/y/victim")).unwrap(),
            b"victim"
        );
        assert_eq!(
            std::fs::read(self.outer.join("x/etc/passwd")).unwrap(),
            b"outer passwd"
        );
        assert_eq!(
            std::fs::read("/etc/passwd").unwrap_or_default(),
            self.passwd,
            "host /etc/passwd changed"
        );
    }
}

/// Paths under `outer` that are not under the root.
fn outside(outer: &Path) -> Vec<PathBuf> {
    common::listing(outer)
        .into_iter()
        .filter(|p| !p.starts_with("x/y/root/"))
        .collect()
}

/// A hostile layer's entries, which may need the sandbox's absolute paths.
type Layer = Box<dyn Fn(&Sandbox) -> Vec<E>>;

fn opts(containment: Containment, whiteouts: WhiteoutMode) -> ApplyOptions {
    ApplyOptions {
        containment,
        whiteouts,
        overlay_userxattr: !common::is_root(),
        ..ApplyOptions::default()
    }
}

fn all_modes() -> Vec<ApplyOptions> {
    let mut v = Vec::new();
    for c in [Containment::Reject, Containment::InRoot] {
        for w in [WhiteoutMode::Delete, WhiteoutMode::Overlay] {
            v.push(opts(c, w));
        }
    }
    v
}

fn expect(err: ArchiveError, kind: ErrorKind, words: &[&str]) {
    let msg = err.to_string();
    assert_eq!(err.kind(), kind, "{msg}");
    for w in words {
        assert!(msg.contains(w), "{msg:?} should mention {w:?}");
    }
}

#[test]
fn dotdot_names_are_rejected() {
    for name in [
        "../../etc/passwd",
        "a/../../../etc/passwd",
        "./../victim",
        "..",
    ] {
        for o in all_modes() {
            let s = Sandbox::new();
            let err = s.apply(&layer(&[E::file(name, b"pwned")]), &o).unwrap_err();
            expect(err, ErrorKind::InvalidArgument, &[name, "escapes the root"]);
            s.assert_contained();
        }
    }
    // `..` that stays inside is cleaned, as containerd's filepath.Clean does.
    let s = Sandbox::new();
    s.apply(
        &layer(&[E::file("a/../b", b"ok")]),
        &ApplyOptions::default(),
    )
    .unwrap();
    assert_eq!(std::fs::read(s.root.join("b")).unwrap(), b"ok");
    s.assert_contained();
}

#[test]
fn absolute_names_are_rejected() {
    for e in [
        E::file("/etc/passwd", b"pwned"),
        E::dir("/tmp/"),
        E::symlink("/evil", "/"),
        // A long absolute name, carried in a PAX path record.
        E::file(&format!("/{}", "a".repeat(200)), b"pwned"),
    ] {
        let s = Sandbox::new();
        let err = s.apply(&layer(&[e]), &ApplyOptions::default()).unwrap_err();
        assert!(matches!(err, ArchiveError::AbsoluteName { .. }), "{err}");
        expect(err, ErrorKind::InvalidArgument, &["absolute name rejected"]);
        s.assert_contained();
    }
}

#[test]
fn writing_through_a_planted_symlink_is_rejected() {
    let outer_abs = |s: &Sandbox| s.outer.join("x").display().to_string();
    let cases: Vec<Layer> = vec![
        // Relative symlink climbing out, then a file through it.
        Box::new(|_| vec![E::symlink("evil", "../.."), E::file("evil/pwned", b"x")]),
        // Absolute symlink to a real directory outside, then a file through it.
        Box::new(move |s| {
            vec![
                E::symlink("evil", &outer_abs(s)),
                E::file("evil/etc/passwd", b"x"),
            ]
        }),
        // A chain of symlinks.
        Box::new(|_| {
            vec![
                E::symlink("l1", "l2"),
                E::symlink("l2", "sub/../../.."),
                E::dir("sub/"),
                E::dir("l1/newdir/"),
            ]
        }),
        // The host's /etc.
        Box::new(|_| vec![E::symlink("etc", "/etc"), E::file("etc/passwd", b"x")]),
        // A magic link.
        Box::new(|_| {
            vec![
                E::symlink("p", "/proc/self/root/etc"),
                E::file("p/passwd", b"x"),
            ]
        }),
        // A whiteout and an opaque marker through the symlink.
        Box::new(|_| vec![E::symlink("evil", ".."), E::whiteout("evil/.wh.victim")]),
        Box::new(|_| vec![E::symlink("evil", ".."), E::whiteout("evil/.wh..wh..opq")]),
    ];
    for (i, case) in cases.iter().enumerate() {
        for w in [WhiteoutMode::Delete, WhiteoutMode::Overlay] {
            let s = Sandbox::new();
            let err = s
                .apply(&layer(&case(&s)), &opts(Containment::Reject, w))
                .unwrap_err();
            assert!(
                matches!(err, ArchiveError::SymlinkEscape { .. }),
                "case {i}: {err}"
            );
            expect(
                err,
                ErrorKind::InvalidArgument,
                &["resolves outside the root through a symlink"],
            );
            s.assert_contained();

            // Contained mode resolves the symlink as if the root were `/`: whatever happens
            // (success or an error for a missing directory), it happens inside the root.
            let s = Sandbox::new();
            let _ = s.apply(&layer(&case(&s)), &opts(Containment::InRoot, w));
            s.assert_contained();
        }
    }
}

#[test]
fn replacing_a_planted_symlink_does_not_follow_it() {
    // Not hostile-rejected, but safe: a file entry over a symlink replaces the link.
    let s = Sandbox::new();
    let victim = s.outer.join("x/y/victim").display().to_string();
    s.apply(
        &layer(&[E::symlink("v", &victim), E::file("v", b"replaced")]),
        &ApplyOptions::default(),
    )
    .unwrap();
    assert_eq!(std::fs::read(s.root.join("v")).unwrap(), b"replaced");
    s.assert_contained();
}

#[test]
fn hardlinks_to_outside_are_rejected() {
    let victim = |s: &Sandbox| s.outer.join("x/y/victim").display().to_string();
    type Case = (Layer, &'static str);
    let cases: Vec<Case> = vec![
        (
            Box::new(|_| vec![E::hardlink("h", "../victim")]),
            "escapes the root",
        ),
        (
            Box::new(|_| vec![E::hardlink("h", "../../../../../../etc/passwd")]),
            "escapes the root",
        ),
        (
            Box::new(move |s| vec![E::hardlink("h", &victim(s))]),
            "absolute name rejected",
        ),
        (
            Box::new(|_| vec![E::symlink("s", ".."), E::hardlink("h", "s/victim")]),
            "resolves outside the root through a symlink",
        ),
        (
            Box::new(|_| vec![E::symlink("s", "/etc"), E::hardlink("h", "s/passwd")]),
            "resolves outside the root through a symlink",
        ),
        (Box::new(|_| vec![E::hardlink("h", "h")]), "entry itself"),
    ];
    for (case, words) in &cases {
        let s = Sandbox::new();
        let err = s
            .apply(
                &layer(&case(&s)),
                &opts(Containment::Reject, WhiteoutMode::Delete),
            )
            .unwrap_err();
        expect(err, ErrorKind::InvalidArgument, &[words]);
        s.assert_contained();
        // Contained (the default): the symlinks re-root inside, so the target is missing there.
        let s = Sandbox::new();
        let err = s
            .apply(&layer(&case(&s)), &ApplyOptions::default())
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        s.assert_contained();
    }
    // A hardlink to a symlink that points outside links the symlink itself, never its target.
    let s = Sandbox::new();
    let v = victim(&s);
    s.apply(
        &layer(&[E::symlink("s", &v), E::hardlink("h", "s")]),
        &ApplyOptions::default(),
    )
    .unwrap();
    let m = std::fs::symlink_metadata(s.root.join("h")).unwrap();
    assert!(m.file_type().is_symlink());
    s.assert_contained();
}

#[test]
fn whiteouts_of_dot_and_dotdot_are_rejected() {
    for name in [".wh...", "a/.wh...", ".wh..", "a/.wh..", ".wh."] {
        for o in all_modes() {
            let s = Sandbox::new();
            std::fs::create_dir(s.root.join("a")).unwrap();
            std::fs::write(s.root.join("a/keep"), b"k").unwrap();
            let err = s.apply(&layer(&[E::whiteout(name)]), &o).unwrap_err();
            assert!(
                matches!(err, ArchiveError::InvalidWhiteout { .. }),
                "{name}: {err}"
            );
            expect(err, ErrorKind::InvalidArgument, &["invalid whiteout", name]);
            assert!(s.root.join("a/keep").exists(), "{name}");
            s.assert_contained();
        }
    }
    // Whiteouts whose directory escapes.
    for name in ["../.wh.victim", "../.wh..wh..opq"] {
        for o in all_modes() {
            let s = Sandbox::new();
            let err = s.apply(&layer(&[E::whiteout(name)]), &o).unwrap_err();
            expect(err, ErrorKind::InvalidArgument, &["escapes the root"]);
            s.assert_contained();
        }
    }
}

/// `n` bytes of zeros as a multi-member gzip stream (a valid gzip file; Go and flate2 read all
/// members), built from one compressed 16 MiB member.
fn gzip_zeros(n: u64) -> Vec<u8> {
    const CHUNK: u64 = 16 << 20;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![0u8; CHUNK as usize]).unwrap();
    let member = e.finish().unwrap();
    let mut out = Vec::new();
    for _ in 0..n / CHUNK {
        out.extend_from_slice(&member);
    }
    out
}

#[test]
fn gzip_bomb_is_stopped_at_the_limit() {
    let limit = 100 << 20;
    let limits = ApplyLimits {
        max_uncompressed_bytes: limit,
        ..ApplyLimits::default()
    };
    // 1 GiB of zeros (about 1 MiB compressed): a zero block is an end marker, so this is read
    // to the limit while draining.
    let zeros = gzip_zeros(1 << 30);
    // 1 GiB of zeros behind a header announcing a 1 GiB file: written to the limit, inside.
    let mut header = Vec::new();
    common::append(&mut header, &E::file("big", b"").declared_size(1 << 30));
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&header).unwrap();
    let mut with_header = e.finish().unwrap();
    with_header.extend_from_slice(&zeros);
    assert!(zeros.len() < 4 << 20, "{} bytes compressed", zeros.len());

    for bomb in [zeros, with_header] {
        let s = Sandbox::new();
        let start = Instant::now();
        let err = s
            .apply(
                &bomb,
                &ApplyOptions {
                    limits,
                    ..ApplyOptions::default()
                },
            )
            .unwrap_err();
        let took = start.elapsed();
        assert!(
            matches!(err, ArchiveError::TooLarge { limit: l } if l == limit),
            "{err}"
        );
        expect(
            err,
            ErrorKind::OutOfRange,
            &["exceeds the limit of 104857600 uncompressed bytes"],
        );
        assert!(took < Duration::from_secs(60), "took {took:?}");
        let written = std::fs::metadata(s.root.join("big")).map_or(0, |m| m.len());
        assert!(written <= limit, "{written} bytes written");
        s.assert_contained();
    }
}

#[test]
fn oversized_extension_headers_are_refused_before_being_read() {
    // A PAX header claiming 1 GiB: refused from its header alone, no memory spent.
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(1 << 30);
    h.set_cksum();
    let s = Sandbox::new();
    let err = s.apply(h.as_bytes(), &ApplyOptions::default()).unwrap_err();
    expect(
        err,
        ErrorKind::InvalidArgument,
        &["PAX header of 1073741824 bytes"],
    );
    s.assert_contained();
}

#[test]
fn entry_bombs_are_bounded() {
    let entries: Vec<E> = (0..2000).map(|i| E::fifo(&format!("f{i}"))).collect();
    let s = Sandbox::new();
    let err = s
        .apply(
            &layer(&entries),
            &ApplyOptions {
                limits: ApplyLimits {
                    max_entries: 1000,
                    ..ApplyLimits::default()
                },
                ..ApplyOptions::default()
            },
        )
        .unwrap_err();
    expect(err, ErrorKind::OutOfRange, &["limit of 1000 entries"]);
    s.assert_contained();
}

#[test]
fn nul_bytes_in_names_are_rejected() {
    let s = Sandbox::new();
    let mut e = E::file("a", b"x");
    e.name = b"a\0b".to_vec(); // a NUL inside a PAX path
    e.name.extend(std::iter::repeat_n(b'c', 120));
    let err = s.apply(&layer(&[e]), &ApplyOptions::default()).unwrap_err();
    expect(err, ErrorKind::InvalidArgument, &["NUL"]);
    s.assert_contained();
}

#[test]
fn symlinks_inside_the_root_are_followed_in_both_modes() {
    // `lib -> usr/lib` is how real images look; writing through it stays inside and works.
    for c in [Containment::Reject, Containment::InRoot] {
        let s = Sandbox::new();
        let entries = [
            E::dir("usr/lib/"),
            E::symlink("lib", "usr/lib"),
            E::symlink("lib64", "./usr/../usr/lib"),
            E::file("lib/x", b"x"),
            E::file("lib64/y", b"y"),
            E::hardlink("usr/h", "lib/x"),
        ];
        s.apply(&layer(&entries), &opts(c, WhiteoutMode::Delete))
            .unwrap();
        assert_eq!(std::fs::read(s.root.join("usr/lib/x")).unwrap(), b"x");
        assert_eq!(std::fs::read(s.root.join("usr/lib/y")).unwrap(), b"y");
        assert_eq!(std::fs::read(s.root.join("usr/h")).unwrap(), b"x");
        s.assert_contained();
    }
}

#[test]
fn contained_mode_re_roots_absolute_symlinks() {
    // `/var/run -> /run` style: absolute targets mean the image's own root.
    let s = Sandbox::new();
    let entries = [
        E::dir("run/"),
        E::dir("var/"),
        E::symlink("var/run", "/run"),
        E::file("var/run/pid", b"1"),
    ];
    let err = s
        .apply(
            &layer(&entries),
            &opts(Containment::Reject, WhiteoutMode::Delete),
        )
        .unwrap_err();
    assert!(matches!(err, ArchiveError::SymlinkEscape { .. }), "{err}");
    let s = Sandbox::new();
    s.apply(
        &layer(&entries),
        &opts(Containment::InRoot, WhiteoutMode::Delete),
    )
    .unwrap();
    assert_eq!(std::fs::read(s.root.join("run/pid")).unwrap(), b"1");
    s.assert_contained();
}

#[test]
fn name_components_over_255_bytes_are_invalid() {
    // Linux's NAME_MAX: the kernel would answer ENAMETOOLONG; the layer is invalid input.
    let long = "n".repeat(256);
    for name in [
        format!("dir/{long}"),
        format!("{long}/file"),
        format!("a/{long}/b/c"),
    ] {
        for o in all_modes() {
            let s = Sandbox::new();
            let err = s.apply(&layer(&[E::file(&name, b"x")]), &o).unwrap_err();
            expect(
                err,
                ErrorKind::InvalidArgument,
                &["component of 256 bytes exceeds the limit of 255"],
            );
            s.assert_contained();
        }
    }
    // A hardlink target with such a component too.
    let s = Sandbox::new();
    let err = s
        .apply(
            &layer(&[E::hardlink("h", &format!("d/{long}"))]),
            &ApplyOptions::default(),
        )
        .unwrap_err();
    expect(err, ErrorKind::InvalidArgument, &["255"]);
    // 255 bytes is fine.
    let s = Sandbox::new();
    let ok = "n".repeat(255);
    s.apply(
        &layer(&[E::file(&format!("d/{ok}"), b"x")]),
        &ApplyOptions::default(),
    )
    .unwrap();
    assert_eq!(std::fs::read(s.root.join("d").join(&ok)).unwrap(), b"x");
}

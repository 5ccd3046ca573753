//! Snapshotter cases that write and read files through the returned mounts, performed with
//! `berth-mount` on temporary directories. They need root (`CAP_SYS_ADMIN`); without it each
//! records a skip (`crate::skip`) and returns.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use berth_core::snapshots::{Mount, Snapshotter};

use super::no_labels;

/// Why mounting is impossible here, or `None` when it works: not root, or the kernel refused
/// a probe mount (a container without `CAP_SYS_ADMIN`).
pub fn mount_unavailable() -> Option<&'static str> {
    static WHY: OnceLock<Option<String>> = OnceLock::new();
    WHY.get_or_init(|| {
        if !rustix::process::geteuid().is_root() {
            return Some("mounting needs root".to_string());
        }
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => return Some(format!("no temporary directory: {e}")),
        };
        let probe = Mount::new("tmpfs", "tmpfs", ["size=64k"]);
        match berth_mount::mount(&probe, dir.path()) {
            Ok(()) => {
                let _ = berth_mount::unmount_all(dir.path(), berth_mount::UnmountFlags::DETACH);
                None
            }
            Err(e) => Some(format!("the kernel refuses mounts: {e}")),
        }
    })
    .as_deref()
}

/// True (after printing why) when the case must be skipped.
fn skip(case: &str) -> bool {
    match mount_unavailable() {
        Some(why) => {
            crate::skip::record(&format!("case {case}: {why}"));
            true
        }
        None => false,
    }
}

fn mounted<R>(mounts: &[Mount], f: impl FnOnce(&Path) -> R) -> R {
    berth_mount::with_temp_mount(mounts, f).unwrap_or_else(|e| panic!("mount {mounts:?}: {e}"))
}

/// Prepare `<name>-active` on `parent`, run `f` on its mounted root, commit it as `name`.
async fn layer<S: Snapshotter + ?Sized>(
    s: &S,
    name: &str,
    parent: Option<&str>,
    f: impl FnOnce(&Path),
) {
    let key = format!("{name}-active");
    let mounts = s.prepare(&key, parent, no_labels()).await.unwrap();
    mounted(&mounts, f);
    s.commit(name, &key, no_labels()).await.unwrap();
}

/// Run `f` on a mounted view of `parent`; the view is removed afterwards.
async fn look<S: Snapshotter + ?Sized, R>(s: &S, parent: &str, f: impl FnOnce(&Path) -> R) -> R {
    static N: AtomicU64 = AtomicU64::new(0);
    let key = format!("look-{}", N.fetch_add(1, Ordering::Relaxed));
    let mounts = s.view(&key, Some(parent), no_labels()).await.unwrap();
    let out = mounted(&mounts, f);
    s.remove(&key).await.unwrap();
    out
}

fn write(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir).unwrap();
    }
    fs::write(&p, data).unwrap_or_else(|e| panic!("write {rel}: {e}"));
}

fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn exists(root: &Path, rel: &str) -> bool {
    fs::symlink_metadata(root.join(rel)).is_ok()
}

pub async fn files_flow_down_the_chain<S: Snapshotter + ?Sized>(s: &S) {
    if skip("files_flow_down_the_chain") {
        return;
    }
    layer(s, "l1", None, |r| {
        write(r, "a", "one");
        write(r, "dir/b", "bee");
    })
    .await;
    layer(s, "l2", Some("l1"), |r| {
        assert_eq!(read(r, "a"), "one", "the parent's files are visible");
        write(r, "c", "see");
        write(r, "a", "one v2");
    })
    .await;
    let top = s.prepare("top", Some("l2"), no_labels()).await.unwrap();
    mounted(&top, |r| {
        assert_eq!(read(r, "a"), "one v2");
        assert_eq!(read(r, "dir/b"), "bee");
        assert_eq!(read(r, "c"), "see");
    });
    look(s, "l1", |r| {
        assert_eq!(read(r, "a"), "one", "a committed layer never changes");
        assert!(!exists(r, "c"));
    })
    .await;
}

pub async fn deletions_in_a_layer_hide_parent_files<S: Snapshotter + ?Sized>(s: &S) {
    if skip("deletions_in_a_layer_hide_parent_files") {
        return;
    }
    layer(s, "l1", None, |r| {
        for f in ["a", "b", "dir/x", "dir/y", "keep/z"] {
            write(r, f, f);
        }
    })
    .await;
    layer(s, "l2", Some("l1"), |r| {
        fs::remove_file(r.join("a")).unwrap();
        fs::remove_dir_all(r.join("dir")).unwrap();
        // Replace a directory: its old entries must not show through.
        fs::remove_dir_all(r.join("keep")).unwrap();
        write(r, "keep/new", "new");
    })
    .await;
    let check = |r: &Path| {
        assert!(!exists(r, "a"), "deleted file");
        assert!(!exists(r, "dir"), "deleted directory");
        assert!(!exists(r, "keep/z"), "entry of a replaced directory");
        assert_eq!(read(r, "keep/new"), "new");
        assert_eq!(read(r, "b"), "b");
    };
    look(s, "l2", check).await;
    let top = s.prepare("top", Some("l2"), no_labels()).await.unwrap();
    mounted(&top, |r| {
        check(r);
        write(r, "a", "back");
        assert_eq!(read(r, "a"), "back");
    });
    look(s, "l1", |r| assert_eq!(read(r, "dir/x"), "dir/x")).await;
}

pub async fn active_snapshots_are_isolated<S: Snapshotter + ?Sized>(s: &S) {
    if skip("active_snapshots_are_isolated") {
        return;
    }
    layer(s, "base", None, |r| write(r, "f", "base")).await;
    let one = s.prepare("one", Some("base"), no_labels()).await.unwrap();
    let two = s.prepare("two", Some("base"), no_labels()).await.unwrap();
    mounted(&one, |r| {
        write(r, "f", "one");
        write(r, "only-one", "1");
    });
    mounted(&two, |r| {
        assert_eq!(read(r, "f"), "base");
        assert!(!exists(r, "only-one"));
    });
    mounted(&one, |r| {
        assert_eq!(read(r, "f"), "one", "kept between mounts")
    });
    look(s, "base", |r| assert_eq!(read(r, "f"), "base")).await;
}

pub async fn views_refuse_writes<S: Snapshotter + ?Sized>(s: &S) {
    if skip("views_refuse_writes") {
        return;
    }
    layer(s, "l1", None, |r| write(r, "f", "1")).await;
    layer(s, "l2", Some("l1"), |r| write(r, "g", "2")).await;
    let rofs = rustix::io::Errno::ROFS.raw_os_error();
    for (key, parent) in [("v0", None), ("v1", Some("l1")), ("v2", Some("l2"))] {
        let mounts = s.view(key, parent, no_labels()).await.unwrap();
        mounted(&mounts, |r| {
            if parent.is_some() {
                assert_eq!(read(r, "f"), "1", "{key}");
            }
            if parent == Some("l2") {
                assert_eq!(read(r, "g"), "2", "{key}");
            }
            let err = fs::write(r.join("new"), "x").expect_err("a view is read-only");
            assert_eq!(err.raw_os_error(), Some(rofs), "{key}: {err}");
        });
    }
}

pub async fn usage_measures_written_data<S: Snapshotter + ?Sized>(s: &S) {
    if skip("usage_measures_written_data") {
        return;
    }
    let mounts = s.prepare("a", None, no_labels()).await.unwrap();
    let before = s.usage("a").await.unwrap();
    mounted(&mounts, |r| {
        fs::write(r.join("big"), vec![7u8; 1 << 20]).unwrap();
        for i in 0..10 {
            write(r, &format!("small/{i}"), "x");
        }
    });
    let after = s.usage("a").await.unwrap();
    assert!(
        after.size >= before.size + (1 << 20),
        "{before:?} -> {after:?}"
    );
    assert!(
        after.inodes >= before.inodes + 12,
        "{before:?} -> {after:?}"
    );
    s.commit("c", "a", no_labels()).await.unwrap();
    let committed = s.usage("c").await.unwrap();
    assert_eq!(committed.inodes, after.inodes, "measured at commit");
    assert!(committed.size >= 1 << 20);
}

/// Enough layers that the overlay's `lowerdir=` exceeds the kernel's page of mount data.
pub const DEEP_CHAIN: usize = 130;

pub async fn deep_chains_mount<S: Snapshotter + ?Sized>(s: &S) {
    if skip("deep_chains_mount") {
        return;
    }
    let mut parent: Option<String> = None;
    for i in 0..DEEP_CHAIN {
        let name = format!("layer-{i:03}");
        layer(s, &name, parent.as_deref(), |r| {
            write(r, &format!("f{i}"), &i.to_string());
            write(r, "top", &i.to_string());
        })
        .await;
        parent = Some(name);
    }
    let last = parent.expect("layers");
    let check = |r: &Path| {
        for i in 0..DEEP_CHAIN {
            assert_eq!(read(r, &format!("f{i}")), i.to_string());
        }
        assert_eq!(read(r, "top"), (DEEP_CHAIN - 1).to_string());
    };
    let top = s.prepare("top", Some(&last), no_labels()).await.unwrap();
    mounted(&top, |r| {
        check(r);
        write(r, "new", "x");
    });
    look(s, &last, check).await;
}

pub async fn file_metadata_survives_layers<S: Snapshotter + ?Sized>(s: &S) {
    if skip("file_metadata_survives_layers") {
        return;
    }
    let mtime = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 0,
        },
    };
    let mut xattrs = true;
    layer(s, "l1", None, |r| {
        write(r, "f", "data");
        std::os::unix::fs::chown(r.join("f"), Some(1234), Some(5678)).unwrap();
        fs::set_permissions(r.join("f"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::create_dir(r.join("d")).unwrap();
        fs::set_permissions(r.join("d"), fs::Permissions::from_mode(0o1777)).unwrap();
        std::os::unix::fs::symlink("f", r.join("l")).unwrap();
        fs::hard_link(r.join("f"), r.join("h")).unwrap();
        let cwd = rustix::fs::CWD;
        let (fifo, chr) = (
            rustix::fs::FileType::Fifo,
            rustix::fs::FileType::CharacterDevice,
        );
        let mode = rustix::fs::Mode::from_raw_mode(0o644);
        rustix::fs::mknodat(cwd, r.join("p"), fifo, mode, 0).unwrap();
        let dev = rustix::fs::makedev(1, 3);
        rustix::fs::mknodat(cwd, r.join("c"), chr, mode, dev).unwrap();
        let set = rustix::fs::lsetxattr(
            r.join("f"),
            "user.berth",
            b"value",
            rustix::fs::XattrFlags::empty(),
        );
        if set.is_err() {
            println!("note: user xattrs unsupported here, not checked");
            xattrs = false;
        }
        rustix::fs::utimensat(cwd, r.join("f"), &mtime, rustix::fs::AtFlags::empty()).unwrap();
    })
    .await;
    layer(s, "l2", Some("l1"), |r| write(r, "other", "o")).await;
    let top = s.prepare("top", Some("l2"), no_labels()).await.unwrap();
    mounted(&top, |r| {
        let f = fs::symlink_metadata(r.join("f")).unwrap();
        assert_eq!(read(r, "f"), "data");
        assert_eq!(f.mode() & 0o7777, 0o4755, "mode with setuid");
        assert_eq!((f.uid(), f.gid()), (1234, 5678), "ownership");
        assert_eq!(f.mtime(), 1_000_000_000, "mtime");
        let d = fs::symlink_metadata(r.join("d")).unwrap();
        assert!(d.is_dir());
        assert_eq!(d.mode() & 0o7777, 0o1777, "sticky directory");
        assert_eq!(fs::read_link(r.join("l")).unwrap(), Path::new("f"));
        let h = fs::symlink_metadata(r.join("h")).unwrap();
        assert_eq!(h.ino(), f.ino(), "hard link");
        assert!(f.nlink() >= 2);
        let p = fs::symlink_metadata(r.join("p")).unwrap();
        assert!(p.file_type().is_fifo(), "fifo");
        let c = fs::symlink_metadata(r.join("c")).unwrap();
        assert!(c.file_type().is_char_device(), "character device");
        assert_eq!(c.rdev(), rustix::fs::makedev(1, 3));
        if xattrs {
            let mut buf = [0u8; 16];
            let n = rustix::fs::lgetxattr(r.join("f"), "user.berth", &mut buf).unwrap();
            assert_eq!(&buf[..n], b"value", "xattr");
        }
    });
}

pub async fn cleanup_keeps_data<S: Snapshotter + ?Sized>(s: &S) {
    if skip("cleanup_keeps_data") {
        return;
    }
    layer(s, "l1", None, |r| write(r, "f", "1")).await;
    layer(s, "l2", Some("l1"), |r| write(r, "g", "2")).await;
    let a = s.prepare("a", Some("l2"), no_labels()).await.unwrap();
    mounted(&a, |r| write(r, "h", "3"));
    layer(s, "gone", Some("l2"), |r| write(r, "x", "x")).await;
    s.remove("gone").await.unwrap();
    s.cleanup().await.unwrap();
    mounted(&a, |r| {
        assert_eq!(read(r, "f"), "1");
        assert_eq!(read(r, "g"), "2");
        assert_eq!(read(r, "h"), "3");
    });
    look(s, "l2", |r| assert!(!exists(r, "h"))).await;
}

pub async fn removed_snapshots_take_their_files<S: Snapshotter + ?Sized>(s: &S) {
    if skip("removed_snapshots_take_their_files") {
        return;
    }
    let m = s.prepare("k", None, no_labels()).await.unwrap();
    mounted(&m, |r| write(r, "f", "old"));
    s.remove("k").await.unwrap();
    let m = s.prepare("k", None, no_labels()).await.unwrap();
    mounted(&m, |r| {
        assert!(
            !exists(r, "f"),
            "a new snapshot under an old key starts empty"
        )
    });
}

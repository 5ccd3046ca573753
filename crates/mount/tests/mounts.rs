//! Real mounts: these need root (CAP_SYS_ADMIN) and record a skip (berth-conformance's `skip`) otherwise.

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use berth_mount::{mount, mount_all, unmount, unmount_all, with_temp_mount, Mount, UnmountFlags};

fn can_mount(case: &str) -> bool {
    if !rustix::process::geteuid().is_root() {
        berth_conformance::skip::record_as(case, "mounting needs root");
        return false;
    }
    true
}

fn is_mount_point(path: &Path) -> bool {
    let path = fs::canonicalize(path).unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

#[test]
fn read_only_bind_refuses_writes() {
    if !can_mount("read_only_bind_refuses_writes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let dst = dir.path().join("dst");
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&dst).unwrap();
    fs::write(src.join("f"), b"hello").unwrap();
    let m = Mount::new("bind", src.to_str().unwrap(), ["ro", "rbind"]);
    mount(&m, &dst).unwrap();
    assert_eq!(fs::read(dst.join("f")).unwrap(), b"hello");
    let err = fs::write(dst.join("g"), b"x").unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::ROFS.raw_os_error())
    );
    unmount(&dst, UnmountFlags::empty()).unwrap();
    assert!(!is_mount_point(&dst));
    // Unmounting what is not a mount point is fine, as in containerd.
    unmount(&dst, UnmountFlags::empty()).unwrap();
}

#[test]
fn stacked_mounts_are_all_unmounted() {
    if !can_mount("stacked_mounts_are_all_unmounted") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("t");
    fs::create_dir(&target).unwrap();
    let tmpfs = Mount::new("tmpfs", "tmpfs", ["nosuid", "size=1m"]);
    mount_all(&[tmpfs.clone(), tmpfs], &target).unwrap();
    assert!(is_mount_point(&target));
    unmount_all(&target, UnmountFlags::empty()).unwrap();
    assert!(!is_mount_point(&target));
    unmount_all(&dir.path().join("missing"), UnmountFlags::empty()).unwrap();
}

#[test]
fn mount_targets_are_relative_to_the_root() {
    if !can_mount("mount_targets_are_relative_to_the_root") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("sub")).unwrap();
    let mut m = Mount::new("tmpfs", "tmpfs", ["size=1m"]);
    m.target = Some("sub".into());
    mount(&m, &root).unwrap();
    assert!(is_mount_point(&root.join("sub")));
    unmount_all(&root.join("sub"), UnmountFlags::empty()).unwrap();
}

#[test]
fn overlay_of_many_layers_is_compacted_past_the_page_limit() {
    if !can_mount("overlay_of_many_layers_is_compacted_past_the_page_limit") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Long layer paths, as under /var/lib/berth/io.containerd.snapshotter.v1.overlayfs/snapshots.
    let base = dir
        .path()
        .join("io.containerd.snapshotter.v1.overlayfs/snapshots");
    let mut lowers = Vec::new();
    for i in 0..150 {
        let fs_dir = base.join(i.to_string()).join("fs");
        fs::create_dir_all(&fs_dir).unwrap();
        fs::write(fs_dir.join(format!("layer-{i}")), i.to_string()).unwrap();
        fs::write(fs_dir.join("top"), i.to_string()).unwrap();
        lowers.push(fs_dir.to_str().unwrap().to_string());
    }
    lowers.reverse(); // nearest first
    let lowerdir = format!("lowerdir={}", lowers.join(":"));
    assert!(lowerdir.len() > 4096, "the case must exceed a page");
    let upper = base.join("150/fs");
    let work = base.join("150/work");
    fs::create_dir_all(&upper).unwrap();
    fs::create_dir_all(&work).unwrap();
    let m = Mount::new(
        "overlay",
        "overlay",
        [
            format!("workdir={}", work.display()),
            format!("upperdir={}", upper.display()),
            lowerdir,
        ],
    );
    let cwd = std::env::current_dir().unwrap();
    with_temp_mount(&[m], |root| {
        for i in 0..150 {
            assert_eq!(
                fs::read_to_string(root.join(format!("layer-{i}"))).unwrap(),
                i.to_string()
            );
        }
        assert_eq!(fs::read_to_string(root.join("top")).unwrap(), "149");
        fs::write(root.join("new"), b"x").unwrap();
    })
    .unwrap();
    assert_eq!(fs::read(upper.join("new")).unwrap(), b"x");
    // The process's working directory did not move.
    assert_eq!(std::env::current_dir().unwrap(), cwd);
}

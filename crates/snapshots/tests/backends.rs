//! What is particular to each backend: the shape of its mounts, its directories, and recovery
//! from what a crash leaves behind.

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use berth_core::snapshots::Mount;
use berth_core::ErrorKind;
use berth_snapshots::{overlay_supported, NativeSnapshotter, OverlaySnapshotter, Snapshotter};

fn none() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn fs_of(root: &Path, id: u64) -> String {
    root.join("snapshots")
        .join(id.to_string())
        .join("fs")
        .display()
        .to_string()
}

fn bind(source: String, ro: bool) -> Vec<Mount> {
    vec![Mount::new(
        "bind",
        source,
        [if ro { "ro" } else { "rw" }, "rbind"],
    )]
}

fn index_off() -> Vec<String> {
    if Path::new("/sys/module/overlay/parameters/index").exists() {
        vec!["index=off".to_string()]
    } else {
        Vec::new()
    }
}

async fn commit_empty(s: &impl Snapshotter, name: &str, parent: Option<&str>) {
    let key = format!("{name}-active");
    s.prepare(&key, parent, none()).await.unwrap();
    s.commit(name, &key, none()).await.unwrap();
}

#[tokio::test]
async fn overlay_mounts_have_containerds_shape() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("overlayfs");
    let s = OverlaySnapshotter::open(&root).unwrap();
    assert!(root.join("metadata.db").is_file());

    // Ids in order: l1=1, l2=2, then the snapshots below.
    commit_empty(&s, "l1", None).await;
    commit_empty(&s, "l2", Some("l1")).await;
    assert_eq!(
        s.prepare("a0", None, none()).await.unwrap(),
        bind(fs_of(&root, 3), false)
    );
    assert_eq!(
        s.view("v0", None, none()).await.unwrap(),
        bind(fs_of(&root, 4), true)
    );
    assert_eq!(
        s.view("v1", Some("l1"), none()).await.unwrap(),
        bind(fs_of(&root, 1), true)
    );

    let mut lower_only = index_off();
    lower_only.push(format!("lowerdir={}:{}", fs_of(&root, 2), fs_of(&root, 1)));
    assert_eq!(
        s.view("v2", Some("l2"), none()).await.unwrap(),
        vec![Mount::new("overlay", "overlay", lower_only)]
    );

    let mut rw = index_off();
    rw.push(format!(
        "workdir={}",
        root.join("snapshots/7/work").display()
    ));
    rw.push(format!("upperdir={}", fs_of(&root, 7)));
    rw.push(format!("lowerdir={}", fs_of(&root, 1)));
    assert_eq!(
        s.prepare("a1", Some("l1"), none()).await.unwrap(),
        vec![Mount::new("overlay", "overlay", rw)]
    );
    assert!(
        root.join("snapshots/7/work").is_dir(),
        "active snapshots get a work dir"
    );
    assert!(!root.join("snapshots/6/work").exists(), "views do not");
}

#[tokio::test]
async fn native_mounts_are_binds() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("native");
    let s = NativeSnapshotter::open(&root).unwrap();
    commit_empty(&s, "l1", None).await;
    commit_empty(&s, "l2", Some("l1")).await;
    assert_eq!(
        s.prepare("a", Some("l2"), none()).await.unwrap(),
        bind(fs_of(&root, 3), false)
    );
    // A view binds the parent's own tree, read-only: nothing is copied.
    assert_eq!(
        s.view("v", Some("l2"), none()).await.unwrap(),
        bind(fs_of(&root, 2), true)
    );
    assert_eq!(
        s.view("v0", None, none()).await.unwrap(),
        bind(fs_of(&root, 5), true)
    );
}

#[tokio::test]
async fn native_prepare_copies_the_parent_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("native");
    let s = NativeSnapshotter::open(&root).unwrap();
    s.prepare("k", None, none()).await.unwrap();
    // Write straight into the snapshot's tree (no mount needed for this backend).
    fs::create_dir(root.join("snapshots/1/fs/etc")).unwrap();
    fs::write(root.join("snapshots/1/fs/etc/hostname"), "berth").unwrap();
    s.commit("base", "k", none()).await.unwrap();
    s.prepare("child", Some("base"), none()).await.unwrap();
    assert_eq!(
        fs::read_to_string(root.join("snapshots/2/fs/etc/hostname")).unwrap(),
        "berth"
    );
    let usage = s.usage("child").await.unwrap();
    assert!(usage.inodes >= 3, "root, etc, hostname: {usage:?}");
}

#[tokio::test]
async fn cleanup_removes_only_unreferenced_directories() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("overlayfs");
    let s = OverlaySnapshotter::open(&root).unwrap();
    commit_empty(&s, "l1", None).await;
    s.prepare("a", Some("l1"), none()).await.unwrap();
    commit_empty(&s, "gone", None).await;
    s.remove("gone").await.unwrap();
    assert!(
        !root.join("snapshots/3").exists(),
        "remove takes the directory"
    );
    // What crashes leave: an unrecorded id, a half-built snapshot, a half-removed one.
    for junk in [
        "snapshots/77/fs",
        "snapshots/new-deadbeef/fs",
        "snapshots/rm-9-0/fs",
    ] {
        fs::create_dir_all(root.join(junk)).unwrap();
        fs::write(root.join(junk).join("file"), "x").unwrap();
    }
    s.cleanup().await.unwrap();
    let mut left: Vec<String> = fs::read_dir(root.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["1", "2"]);
}

#[tokio::test]
async fn a_directory_left_at_the_next_id_is_replaced() {
    // A crash between moving a new snapshot's directory into place and recording it leaves
    // `snapshots/<id>` unrecorded; the id is given again by the next prepare.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("native");
    let s = NativeSnapshotter::open(&root).unwrap();
    fs::create_dir_all(root.join("snapshots/1/fs")).unwrap();
    fs::write(root.join("snapshots/1/fs/stale"), "x").unwrap();
    assert_eq!(
        s.prepare("k", None, none()).await.unwrap(),
        bind(fs_of(&root, 1), false)
    );
    assert!(!root.join("snapshots/1/fs/stale").exists());
}

#[tokio::test]
async fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("overlayfs");
    {
        let s = OverlaySnapshotter::open(&root).unwrap();
        commit_empty(&s, "l1", None).await;
        s.prepare("a", Some("l1"), none()).await.unwrap();
    }
    let s = OverlaySnapshotter::open(&root).unwrap();
    assert_eq!(s.stat("a").await.unwrap().parent.as_deref(), Some("l1"));
    assert_eq!(s.walk(&[]).await.unwrap().len(), 2);
    let e = s.remove("l1").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
    // New ids continue after the old ones.
    assert_eq!(
        s.prepare("b", None, none()).await.unwrap(),
        bind(fs_of(&root, 3), false)
    );
}

#[test]
fn one_root_is_one_snapshotter() {
    let dir = tempfile::tempdir().unwrap();
    let _s = NativeSnapshotter::open(dir.path()).unwrap();
    let e = NativeSnapshotter::open(dir.path()).unwrap_err();
    assert!(e.to_string().contains("metadata database"), "{e}");
}

#[tokio::test]
async fn backends_are_chosen_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let backends: [Arc<dyn Snapshotter>; 2] = [
        Arc::new(OverlaySnapshotter::open(dir.path().join("o")).unwrap()),
        Arc::new(NativeSnapshotter::open(dir.path().join("n")).unwrap()),
    ];
    for s in &backends {
        s.prepare("k", None, none()).await.unwrap();
        s.commit("c", "k", none()).await.unwrap();
        assert_eq!(s.walk(&[]).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn overlay_mounts_past_a_page_of_options() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("io.containerd.snapshotter.v1.overlayfs");
    let s = OverlaySnapshotter::open(&root).unwrap();
    let mut parent: Option<String> = None;
    for i in 0..130 {
        let name = format!("layer-{i}");
        commit_empty(&s, &name, parent.as_deref()).await;
        parent = Some(name);
    }
    let mounts = s.prepare("top", parent.as_deref(), none()).await.unwrap();
    let data: usize = mounts[0].options.iter().map(|o| o.len() + 1).sum();
    assert!(
        data > 4096,
        "the chain must not fit in a page ({data} bytes)"
    );
    if !rustix::process::geteuid().is_root() {
        berth_conformance::skip::record("mounting needs root");
        return;
    }
    berth_mount::with_temp_mount(&mounts, |r| fs::write(r.join("f"), "x").unwrap()).unwrap();
}

#[test]
fn overlay_is_supported_here() {
    if !rustix::process::geteuid().is_root() {
        berth_conformance::skip::record("the check mounts, which needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    overlay_supported(dir.path()).unwrap();
    let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "the check cleans up after itself");
}

#[test]
fn overlay_is_refused_where_it_cannot_work() {
    if !rustix::process::geteuid().is_root() {
        berth_conformance::skip::record("needs root to build the case");
        return;
    }
    // An overlay cannot be the upper layer of another overlay: a root on an overlay mount.
    let dir = tempfile::tempdir().unwrap();
    for d in ["lower", "upper", "work", "merged"] {
        fs::create_dir(dir.path().join(d)).unwrap();
    }
    let p = |d: &str| dir.path().join(d).display().to_string();
    let m = Mount::new(
        "overlay",
        "overlay",
        [
            format!("lowerdir={}", p("lower")),
            format!("upperdir={}", p("upper")),
            format!("workdir={}", p("work")),
        ],
    );
    let merged = dir.path().join("merged");
    berth_mount::mount(&m, &merged).unwrap();
    let result = overlay_supported(merged.join("root"));
    berth_mount::unmount_all(&merged, berth_mount::UnmountFlags::DETACH).unwrap();
    match result {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::NotImplemented, "{e}");
            assert!(e.to_string().contains("overlayfs is not supported"), "{e}");
        }
        // Some kernels stack overlays; then there is nothing to refuse.
        Ok(()) => println!("note: this kernel mounts overlay on overlay"),
    }
}

#[tokio::test]
async fn an_empty_parent_is_no_parent() {
    // containerd's wire format: parent "" means none.
    let dir = tempfile::tempdir().unwrap();
    let s = NativeSnapshotter::open(dir.path()).unwrap();
    s.prepare("k", Some(""), none()).await.unwrap();
    assert_eq!(s.stat("k").await.unwrap().parent, None);
}

#[test]
fn backend_roots_and_metastores_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let dir = tempfile::tempdir().unwrap();
    let native = dir.path().join("native");
    drop(NativeSnapshotter::open(&native).unwrap());
    let overlay = dir.path().join("overlay");
    drop(OverlaySnapshotter::open(&overlay).unwrap());
    for root in [native, overlay] {
        assert_eq!(mode(&root), 0o700, "{}", root.display());
        assert_eq!(mode(&root.join("snapshots")), 0o700);
        assert_eq!(mode(&root.join("metadata.db")), 0o600);
    }
}

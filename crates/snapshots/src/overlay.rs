//! The overlayfs snapshotter (containerd's `overlayfs`, the default).
//!
//! Each snapshot owns one directory, `snapshots/<id>/fs`, holding only its own changes; its
//! parents' directories are stacked beneath it by overlayfs at mount time, so preparing a
//! snapshot is instant whatever the size of its parents. Deletions are recorded in `fs` the way
//! overlayfs records them: a whiteout (a 0/0 character device) for a removed file, an opaque
//! directory (`trusted.overlay.opaque=y`) for a replaced one.
//!
//! Mounts:
//! - no parent: a bind mount of `fs` (`rw`, or `ro` for a view) — overlayfs needs a lower layer;
//! - active with parents: `overlay` with `upperdir=fs`, `workdir=work` and `lowerdir=` the
//!   parents' `fs`, nearest first;
//! - view of one layer: a read-only bind of the parent's `fs`;
//! - view of more layers: `overlay` with only `lowerdir=` (read-only by construction).
//!
//! `index=off` is added when the kernel knows the option: berth never relies on overlay's
//! inode index, and leaving it on ties an upper directory to its lower directories forever.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_core::snapshots::{Kind, Mount};

use crate::engine::{Engine, Layout, Paths};
use crate::error::{Result, SnapshotError};
use crate::metastore::Snapshot;
use crate::OverlaySnapshotter;

/// The directory layout and mounts of the overlayfs snapshotter (see the module docs).
#[derive(Debug)]
pub struct OverlayLayout {
    /// Options added to every overlay mount (`index=off` where the kernel has it).
    options: Vec<String>,
}

impl OverlaySnapshotter {
    /// Open (creating if needed) the snapshotter rooted at `root`.
    ///
    /// Fails when the filesystem of `root` does not report file types in directory entries
    /// (`d_type`), without which overlayfs misbehaves. Whether overlayfs mounts at all is
    /// checked by [`supported`], which needs root; call it first where that matters.
    pub fn open(root: impl AsRef<Path>) -> Result<OverlaySnapshotter> {
        let root = root.as_ref();
        crate::engine::mkdir_private_all(root)?;
        check_d_type(root)?;
        let mut options = Vec::new();
        if Path::new("/sys/module/overlay/parameters/index").exists() {
            options.push("index=off".to_string());
        }
        Ok(OverlaySnapshotter::new(Engine::open(
            root,
            OverlayLayout { options },
        )?))
    }
}

impl Layout for OverlayLayout {
    fn populate(&self, paths: &Paths, kind: Kind, dir: &Path, parent_ids: &[u64]) -> Result<()> {
        let fs_dir = dir.join("fs");
        mkdir(&fs_dir, 0o755)?;
        if kind == Kind::Active {
            mkdir(&dir.join("work"), 0o711)?;
        }
        // The upper directory becomes the mount's root: give it the owner of the layer below.
        if let Some(&parent) = parent_ids.first() {
            let parent_fs = paths.fs(parent);
            let meta = fs::metadata(&parent_fs).map_err(SnapshotError::io(format!(
                "stat parent {}",
                parent_fs.display()
            )))?;
            std::os::unix::fs::lchown(&fs_dir, Some(meta.uid()), Some(meta.gid()))
                .map_err(SnapshotError::io(format!("chown {}", fs_dir.display())))?;
        }
        Ok(())
    }

    fn mounts(&self, paths: &Paths, s: &Snapshot) -> Vec<Mount> {
        let bind = |source: String, ro: bool| {
            vec![Mount::new(
                "bind",
                source,
                [if ro { "ro" } else { "rw" }, "rbind"],
            )]
        };
        if s.parent_ids.is_empty() {
            return bind(paths.fs_str(s.id), s.kind == Kind::View);
        }
        let mut options = self.options.clone();
        if s.kind == Kind::Active {
            options.push(format!("workdir={}", paths.work(s.id).display()));
            options.push(format!("upperdir={}", paths.fs(s.id).display()));
        } else if s.parent_ids.len() == 1 {
            return bind(paths.fs_str(s.parent_ids[0]), true);
        }
        let lower: Vec<String> = s.parent_ids.iter().map(|&id| paths.fs_str(id)).collect();
        options.push(format!("lowerdir={}", lower.join(":")));
        vec![Mount::new("overlay", "overlay", options)]
    }
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(SnapshotError::io(format!("create {}", path.display())))?;
    // Not subject to the umask.
    fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(SnapshotError::io(format!("chmod {}", path.display())))
}

fn unsupported(root: &Path, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::OverlayUnsupported {
        root: root.display().to_string(),
        reason: reason.into(),
    }
}

/// A scratch directory under the root, removed on drop (unmounting what may be left on it).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = berth_mount::unmount_all(&self.0.join("merged"), berth_mount::UnmountFlags::DETACH);
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn scratch(root: &Path, prefix: &str) -> Result<Scratch> {
    let dir = root.join(format!("{prefix}-{:016x}", rand::random::<u64>()));
    fs::create_dir(&dir).map_err(SnapshotError::io(format!("create {}", dir.display())))?;
    Ok(Scratch(dir))
}

/// containerd's `fs.SupportsDType`: overlayfs needs directory entries that carry the file type.
fn check_d_type(root: &Path) -> Result<()> {
    let dir = scratch(root, "d_type-check")?;
    let probe = dir.0.join("probe");
    fs::write(&probe, b"").map_err(SnapshotError::io(format!("create {}", probe.display())))?;
    let fd = rustix::fs::open(
        &dir.0,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| SnapshotError::io(format!("open {}", dir.0.display()))(e.into()))?;
    let entries = rustix::fs::Dir::read_from(&fd)
        .map_err(|e| SnapshotError::io(format!("read {}", dir.0.display()))(e.into()))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| SnapshotError::io(format!("read {}", dir.0.display()))(e.into()))?;
        if entry.file_name().to_bytes() == b"probe"
            && entry.file_type() == rustix::fs::FileType::Unknown
        {
            return Err(unsupported(
                root,
                "the filesystem does not support d_type; if it is xfs, reformat it with ftype=1",
            ));
        }
    }
    Ok(())
}

/// Check that overlayfs works on the filesystem of `root` (containerd's
/// `overlayutils.Supported`): `d_type` support, and a real overlay mount with two lower
/// directories. Needs root; the error says what failed.
pub fn supported(root: impl AsRef<Path>) -> Result<()> {
    let root = root.as_ref();
    fs::create_dir_all(root).map_err(SnapshotError::io(format!("create {}", root.display())))?;
    check_d_type(root)?;
    let dir = scratch(root, "multiple-lowerdir-check")?;
    for sub in ["lower1", "lower2", "upper", "work", "merged"] {
        let p = dir.0.join(sub);
        fs::create_dir(&p).map_err(SnapshotError::io(format!("create {}", p.display())))?;
    }
    let p = |s: &str| dir.0.join(s).display().to_string();
    let m = Mount::new(
        "overlay",
        "overlay",
        [format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            p("lower2"),
            p("lower1"),
            p("upper"),
            p("work")
        )],
    );
    let merged = dir.0.join("merged");
    berth_mount::mount(&m, &merged)
        .map_err(|e| unsupported(root, format!("failed to mount overlay: {e}")))?;
    berth_mount::unmount_all(&merged, berth_mount::UnmountFlags::empty())
        .map_err(|e| unsupported(root, e.to_string()))?;
    Ok(())
}

//! The native snapshotter (containerd's `native`): plain directories and copies.
//!
//! Each active snapshot owns a complete tree, `snapshots/<id>/fs`: preparing on a parent copies
//! the parent's whole tree (modes, ownership, extended attributes, symlinks, hard links, device
//! nodes, fifos and times kept). It needs nothing from the kernel but bind mounts, so it works
//! on any filesystem, at the price of disk space and prepare time. Deletions are real deletions.
//!
//! Mounts are always one bind mount (`rbind`, plus `rw`, or `ro` for a view): of the snapshot's
//! own tree, or, for a view of a committed snapshot, of the parent's tree (nothing is copied).

use std::fs;
use std::path::Path;

use berth_core::snapshots::{Kind, Mount};

use crate::engine::{Engine, Layout, Paths};
use crate::error::{Result, SnapshotError};
use crate::fsutil::copy_dir;
use crate::metastore::Snapshot;
use crate::NativeSnapshotter;

/// The directory layout and mounts of the native, copying snapshotter (see the module docs).
#[derive(Debug)]
pub struct NativeLayout;

impl NativeSnapshotter {
    /// Open (creating if needed) the snapshotter rooted at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<NativeSnapshotter> {
        Ok(NativeSnapshotter::new(Engine::open(
            root.as_ref(),
            NativeLayout,
        )?))
    }
}

impl Layout for NativeLayout {
    fn populate(&self, paths: &Paths, kind: Kind, dir: &Path, parent_ids: &[u64]) -> Result<()> {
        let fs_dir = dir.join("fs");
        fs::create_dir(&fs_dir)
            .map_err(SnapshotError::io(format!("create {}", fs_dir.display())))?;
        fs::set_permissions(&fs_dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(SnapshotError::io(format!("chmod {}", fs_dir.display())))?;
        match parent_ids.first() {
            // A view of a parent binds the parent's tree itself: nothing to copy.
            Some(&parent) if kind == Kind::Active => {
                let src = paths.fs(parent);
                copy_dir(&src, &fs_dir).map_err(SnapshotError::io(format!(
                    "copy {} to {}",
                    src.display(),
                    fs_dir.display()
                )))
            }
            _ => Ok(()),
        }
    }

    fn mounts(&self, paths: &Paths, s: &Snapshot) -> Vec<Mount> {
        let source = match s.parent_ids.first() {
            Some(&parent) if s.kind == Kind::View => paths.fs_str(parent),
            _ => paths.fs_str(s.id),
        };
        let ro = if s.kind == Kind::View { "ro" } else { "rw" };
        vec![Mount::new("bind", source, [ro, "rbind"])]
    }
}

//! The usage of the image filesystem (the snapshotter's root), for `ImageFsInfo`: bytes as
//! `du` counts them (allocated blocks) and inodes, each hard-linked inode counted once, as
//! containerd's `fs.DiskUsage` (berth-snapshots' `disk_usage`, which snapshot usage uses too).
//! Symbolic links are not followed.

use std::io::ErrorKind;
use std::path::Path;

/// Bytes and inodes used under a directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

/// The usage of everything under `root` (the root included); a missing root uses nothing.
/// Entries that vanish during the walk are skipped (snapshots come and go).
pub fn disk_usage(root: &Path) -> std::io::Result<Usage> {
    match berth_snapshots::disk_usage(root) {
        Ok(u) => Ok(Usage {
            bytes: u.size.max(0) as u64,
            inodes: u.inodes.max(0) as u64,
        }),
        Err(e) if e.kind() == ErrorKind::NotFound && !root.exists() => Ok(Usage::default()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_dirs_and_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        let empty = disk_usage(dir.path()).unwrap();
        assert_eq!(empty.inodes, 1);
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f"), vec![7u8; 64 * 1024]).unwrap();
        std::fs::hard_link(dir.path().join("d/f"), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("sym")).unwrap();
        let u = disk_usage(dir.path()).unwrap();
        assert_eq!(u.inodes, 4, "root, d, f (twice linked), sym");
        assert!(u.bytes >= empty.bytes + 64 * 1024, "{u:?}");
        assert!(
            u.bytes < empty.bytes + 4 * 64 * 1024,
            "{u:?}: the link counted once"
        );
        assert_eq!(
            disk_usage(&dir.path().join("missing")).unwrap(),
            Usage::default()
        );
    }
}

//! The usage of the image filesystem (the snapshotter's root), for `ImageFsInfo`: bytes as
//! `du` counts them (allocated blocks) and inodes, each hard-linked inode counted once, as
//! containerd's `fs.DiskUsage`. Symbolic links are not followed; the walk stays on the root's
//! filesystem.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Bytes and inodes used under a directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

/// The usage of everything under `root` (the root included); a missing root uses nothing.
/// Entries that vanish during the walk are skipped (snapshots come and go).
pub fn disk_usage(root: &Path) -> std::io::Result<Usage> {
    let meta = match std::fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Usage::default()),
        Err(e) => return Err(e),
    };
    let dev = meta.dev();
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let mut count = |m: &std::fs::Metadata, usage: &mut Usage| {
        if seen.insert(m.ino()) {
            usage.inodes += 1;
            usage.bytes = usage.bytes.saturating_add(m.blocks().saturating_mul(512));
        }
    };
    count(&meta, &mut usage);
    let mut dirs: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let m = match std::fs::symlink_metadata(entry.path()) {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if m.dev() != dev {
                continue;
            }
            count(&m, &mut usage);
            if m.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(usage)
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

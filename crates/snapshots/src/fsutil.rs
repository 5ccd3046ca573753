//! Filesystem helpers: disk usage (containerd's `fs.DiskUsage`) and a faithful tree copy
//! (containerd's `fs.CopyDir`), used by the native snapshotter to seed a snapshot from its parent.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_core::snapshots::Usage;
use rustix::fs::{FileType, Mode, Timestamps, CWD};
use rustix::io::Errno;

/// Disk usage of the tree at `root`: blocks × 512 of each distinct inode, and the number of
/// distinct inodes (the root included). Symlinks are not followed; hard links count once.
/// Entries below `root` that vanish during the walk are skipped (a live tree changes); a
/// missing `root` is an error.
pub fn disk_usage(root: &Path) -> io::Result<Usage> {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut size: i64 = 0;
    let mut stack = vec![root.to_path_buf()];
    let gone = |e: &io::Error, path: &Path| e.kind() == io::ErrorKind::NotFound && path != root;
    while let Some(path) = stack.pop() {
        let meta = match fs::symlink_metadata(&path) {
            Err(e) if gone(&e, &path) => continue,
            m => m?,
        };
        if seen.insert((meta.dev(), meta.ino())) {
            size = size.saturating_add((meta.blocks() as i64).saturating_mul(512));
        }
        if meta.is_dir() {
            let entries = match fs::read_dir(&path) {
                Err(e) if gone(&e, &path) => continue,
                entries => entries?,
            };
            for entry in entries {
                match entry {
                    Ok(entry) => stack.push(entry.path()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(Usage {
        size,
        inodes: seen.len() as i64,
    })
}

/// Copy the tree at `src` into the existing directory `dst`, preserving file types (regular,
/// directory, symlink, fifo, socket, character and block devices), hard links within the tree,
/// modes (setuid/setgid/sticky included), ownership, extended attributes and times. `dst`'s own
/// metadata is set from `src`'s.
///
/// Ownership and device nodes need root; without it ownership is kept only where it is the
/// caller's, and copying a device node fails.
pub fn copy_dir(src: &Path, dst: &Path) -> io::Result<()> {
    let mut links = HashMap::new();
    copy_tree(src, dst, &mut links)
}

fn context(what: &str, path: &Path) -> impl FnOnce(io::Error) -> io::Error {
    let msg = format!("{what} {}", path.display());
    move |e| io::Error::new(e.kind(), format!("{msg}: {e}"))
}

fn copy_tree(src: &Path, dst: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(src).map_err(context("read directory", src))? {
        let entry = entry?;
        let s = entry.path();
        let d = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&s).map_err(context("stat", &s))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(&d).map_err(context("create directory", &d))?;
            copy_tree(&s, &d, links)?;
            continue;
        }
        if meta.nlink() > 1 {
            let id = (meta.dev(), meta.ino());
            if let Some(first) = links.get(&id) {
                fs::hard_link(first, &d).map_err(context("link", &d))?;
                continue;
            }
            links.insert(id, d.clone());
        }
        if ft.is_file() {
            fs::copy(&s, &d).map_err(context("copy", &s))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&s).map_err(context("read link", &s))?;
            symlink(&target, &d).map_err(context("create symlink", &d))?;
        } else {
            // fifo, socket, character or block device: the same node type, mode and device.
            rustix::fs::mknodat(
                CWD,
                &d,
                FileType::from_raw_mode(meta.mode()),
                Mode::from_raw_mode(meta.mode()),
                meta.rdev(),
            )
            .map_err(|e| context("create node", &d)(e.into()))?;
        }
        copy_metadata(&s, &d, &meta)?;
    }
    // Last, so that creating the children does not bump the directory's times.
    let meta = fs::symlink_metadata(src).map_err(context("stat", src))?;
    copy_metadata(src, dst, &meta)
}

fn copy_metadata(src: &Path, dst: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let is_symlink = meta.file_type().is_symlink();
    match std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid())) {
        Ok(()) => {}
        // Without privilege, files keep the caller's ownership.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
        Err(e) => return Err(context("chown", dst)(e)),
    }
    copy_xattrs(src, dst)?;
    // After chown, which clears setuid/setgid bits.
    if !is_symlink {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(context("chmod", dst))?;
    }
    let times = Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec() as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(CWD, dst, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| context("set times of", dst)(e.into()))
}

fn copy_xattrs(src: &Path, dst: &Path) -> io::Result<()> {
    let names = match list_xattrs(src) {
        Ok(names) => names,
        Err(Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(context("list xattrs of", src)(e.into())),
    };
    for name in names {
        let value = match get_xattr(src, &name) {
            Ok(v) => v,
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(context("get xattr of", src)(e.into())),
        };
        match rustix::fs::lsetxattr(
            dst,
            name.as_slice(),
            &value,
            rustix::fs::XattrFlags::empty(),
        ) {
            Ok(()) => {}
            // Not supported on the destination, or a namespace (trusted.*, security.*) the
            // caller may not write: leave it out, as containerd does for unprivileged copies.
            Err(Errno::NOTSUP | Errno::PERM) => {
                tracing::debug!(path = %dst.display(), xattr = %String::from_utf8_lossy(&name), "xattr not copied");
            }
            Err(e) => return Err(context("set xattr of", dst)(e.into())),
        }
    }
    Ok(())
}

fn list_xattrs(path: &Path) -> Result<Vec<Vec<u8>>, Errno> {
    loop {
        let len = rustix::fs::llistxattr(path, &mut [])?;
        if len == 0 {
            return Ok(Vec::new());
        }
        // The element type is the backend's `c_char` (u8 or i8).
        let mut buf = vec![0; len];
        match rustix::fs::llistxattr(path, &mut buf) {
            Ok(n) => {
                #[allow(clippy::unnecessary_cast)]
                let bytes: Vec<u8> = buf[..n].iter().map(|&c| c as u8).collect();
                return Ok(bytes
                    .split(|&b| b == 0)
                    .filter(|n| !n.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect());
            }
            // The list grew between the two calls: ask again.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn get_xattr(path: &Path, name: &[u8]) -> Result<Vec<u8>, Errno> {
    loop {
        let len = rustix::fs::lgetxattr(path, name, &mut [])?;
        let mut buf = vec![0u8; len];
        match rustix::fs::lgetxattr(path, name, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn usage_counts_blocks_and_distinct_inodes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("a"), vec![1u8; 10_000]).unwrap();
        fs::hard_link(root.join("a"), root.join("b")).unwrap();
        fs::create_dir(root.join("d")).unwrap();
        symlink("a", root.join("l")).unwrap();
        let u = disk_usage(root).unwrap();
        assert_eq!(u.inodes, 4, "root, a (=b), d, l");
        assert!(u.size >= 10_000, "{u:?}");
    }

    #[test]
    fn copy_keeps_links_modes_times_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let dst = dir.path().join("dst");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::create_dir(&dst).unwrap();
        fs::write(src.join("sub/f"), b"data").unwrap();
        fs::set_permissions(src.join("sub/f"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::hard_link(src.join("sub/f"), src.join("hard")).unwrap();
        symlink("sub/f", src.join("link")).unwrap();
        rustix::fs::mknodat(
            CWD,
            src.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let old = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1_000_000,
                tv_nsec: 5,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 2_000_000,
                tv_nsec: 7,
            },
        };
        rustix::fs::utimensat(CWD, src.join("sub"), &old, rustix::fs::AtFlags::empty()).unwrap();

        copy_dir(&src, &dst).unwrap();

        assert_eq!(fs::read(dst.join("sub/f")).unwrap(), b"data");
        let f = fs::metadata(dst.join("sub/f")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o640);
        assert_eq!(f.ino(), fs::metadata(dst.join("hard")).unwrap().ino());
        assert_eq!(fs::read_link(dst.join("link")).unwrap(), Path::new("sub/f"));
        assert!(fs::symlink_metadata(dst.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        let sub = fs::metadata(dst.join("sub")).unwrap();
        assert_eq!((sub.mtime(), sub.mtime_nsec()), (2_000_000, 7));
    }
}

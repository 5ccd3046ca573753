//! Path operations confined to a root directory.
//!
//! Every lookup starts at the root's file descriptor and is resolved by the kernel with
//! `openat2(2)`: with [`Containment::Reject`] under `RESOLVE_BENEATH` (a symlink that would lead
//! out of the root, absolute or through `..`, fails with `EXDEV`), with
//! [`Containment::InRoot`] under `RESOLVE_IN_ROOT` (the root acts as `/`, as for a chrooted
//! process). Both add `RESOLVE_NO_MAGICLINKS`, so `/proc/self/...` links cannot be used either.
//! Only the *parent* of an entry is ever resolved that way; the entry's own name is a single
//! component that is never followed (`O_NOFOLLOW`, `O_EXCL`, `AT_SYMLINK_NOFOLLOW`).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// How symlinks met while resolving an entry's parent directory are confined to the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Containment {
    /// A path whose resolution would leave the root (an absolute symlink, or `..` in a symlink
    /// climbing above the root) is rejected. Layers produced by a differ never write through a
    /// symlink, so this only refuses hand-crafted ones. The default.
    #[default]
    Reject,
    /// Symlinks are resolved as if the root were `/` (absolute targets re-rooted, `..` stopping at
    /// the root), like containerd's `fs.RootPath` or a chroot: nothing escapes, nothing is refused.
    InRoot,
}

/// An open root directory and the way paths are resolved under it.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
    resolve: ResolveFlags,
}

pub(crate) fn errno(e: &io::Error) -> Option<Errno> {
    e.raw_os_error().map(Errno::from_raw_os_error)
}

/// Splits a cleaned relative path into its parent and its last component.
pub(crate) fn split(rel: &Path) -> (&Path, &OsStr) {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let base = rel.file_name().unwrap_or(OsStr::new(""));
    (parent, base)
}

/// `/proc/self/fd/<dirfd>/<name>`: the way to name `name` inside an already resolved directory
/// for the few calls that have no `*at` form (`lsetxattr`, `lchown`). The fd link is followed (it
/// is the directory itself); `name` is the last component and is not.
pub(crate) fn proc_path(dir: &OwnedFd, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(name);
    p
}

impl Root {
    pub(crate) fn open(path: &Path, containment: Containment) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let scope = match containment {
            Containment::Reject => ResolveFlags::BENEATH,
            Containment::InRoot => ResolveFlags::IN_ROOT,
        };
        Ok(Root {
            fd,
            resolve: scope | ResolveFlags::NO_MAGICLINKS,
        })
    }

    fn openat2(&self, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        // The kernel answers EAGAIN when a concurrent rename made the scoped lookup unsure.
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(
                &self.fd,
                rel,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                self.resolve,
            ) {
                Err(Errno::AGAIN) if tries < 16 => tries += 1,
                r => return r.map_err(io::Error::from),
            }
        }
    }

    /// The directory `rel` (symlinks resolved in scope), as an `O_PATH` descriptor usable as the
    /// `dirfd` of `*at` calls.
    pub(crate) fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.openat2(rel, OFlags::PATH | OFlags::DIRECTORY)
    }

    /// The directory `rel` (symlinks resolved in scope), opened for reading, e.g. for
    /// `fsetxattr`.
    pub(crate) fn open_dir_rdonly(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.openat2(rel, OFlags::RDONLY | OFlags::DIRECTORY)
    }

    /// Like [`Root::open_dir`], creating missing directories (mode 0755, as containerd does for
    /// parents a layer does not list).
    pub(crate) fn mkdir_all(&self, rel: &Path) -> io::Result<OwnedFd> {
        match self.open_dir(rel) {
            Err(e) if errno(&e) == Some(Errno::NOENT) && !rel.as_os_str().is_empty() => {
                let (parent, base) = split(rel);
                let pfd = self.mkdir_all(parent)?;
                match rustix::fs::mkdirat(&pfd, base, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                self.open_dir(rel)
            }
            r => r,
        }
    }

    /// The names in directory `name` of `dir` (not following a symlink there), without `.`/`..`.
    pub(crate) fn list_at(dir: &OwnedFd, name: &OsStr) -> io::Result<Vec<OsString>> {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        let mut d = rustix::fs::Dir::new(fd)?;
        while let Some(ent) = d.read() {
            let ent = ent?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(OsStr::from_bytes(n).to_os_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Removes `rel` and everything under it, if it exists (like `os.RemoveAll`). A symlink is
    /// removed, never followed.
    pub(crate) fn remove_all(&self, rel: &Path) -> io::Result<()> {
        let (parent, base) = split(rel);
        if base.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "refusing to remove the root",
            ));
        }
        let pfd = match self.open_dir(parent) {
            Ok(fd) => fd,
            Err(e) if matches!(errno(&e), Some(Errno::NOENT | Errno::NOTDIR)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.remove_at(&pfd, rel, base)
    }

    /// Removes `base` in the directory `pfd` (which is `rel`'s parent) and everything under it.
    /// The recursion re-resolves each child from the root instead of holding a descriptor per
    /// level, so depth is not bounded by the descriptor limit.
    pub(crate) fn remove_at(&self, pfd: &OwnedFd, rel: &Path, base: &OsStr) -> io::Result<()> {
        match rustix::fs::unlinkat(pfd, base, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => return Ok(()),
            Err(Errno::ISDIR) | Err(Errno::PERM) => {}
            Err(e) => return Err(e.into()),
        }
        for name in Self::list_at(pfd, base)? {
            self.remove_all(&rel.join(name))?;
        }
        match rustix::fs::unlinkat(pfd, base, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// `lstat` of `name` in `dir`, or `None` if it does not exist.
    pub(crate) fn lstat_at(dir: &OwnedFd, name: &OsStr) -> io::Result<Option<rustix::fs::Stat>> {
        match rustix::fs::statat(dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

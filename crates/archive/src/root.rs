//! Path operations confined to a root directory.
//!
//! Every lookup starts at the root's file descriptor and is resolved by the kernel with
//! `openat2(2)`: with [`Containment::InRoot`] under `RESOLVE_IN_ROOT` (the root acts as `/`, as
//! for a chrooted process), with [`Containment::Reject`] under `RESOLVE_BENEATH` (a symlink that
//! would lead out of the root, absolute or through `..`, fails with `EXDEV`). Both add `RESOLVE_NO_MAGICLINKS`, so `/proc/self/...` links cannot be used either.
//! Only the *parent* of an entry is ever resolved that way; the entry's own name is a single
//! component that is never followed (`O_NOFOLLOW`, `O_EXCL`, `AT_SYMLINK_NOFOLLOW`).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// How symlinks met while resolving an entry's parent directory are confined to the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Containment {
    /// Symlinks are resolved as if the root were `/` (absolute targets re-rooted, `..` stopping at
    /// the root), like containerd's `fs.RootPath` or a chroot: nothing escapes, nothing is
    /// refused. A parent that is a dangling symlink has its target created inside the root, as
    /// containerd does, so Debian's `var/run -> /run` followed by `var/run/foo` writes `run/foo`.
    /// The default, because real images write through such links.
    #[default]
    InRoot,
    /// A path whose resolution would leave the root (an absolute symlink, or `..` in a symlink
    /// climbing above the root) is rejected. Stricter than containerd: it refuses images whose
    /// layers write under an absolute link such as `var/run -> /run`.
    Reject,
}

/// The most symlinks followed while resolving one path (the kernel's limit is 40).
const MAX_LINKS: usize = 40;

/// An open root directory and the way paths are resolved under it.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
    resolve: ResolveFlags,
    containment: Containment,
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
            containment,
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
    ///
    /// Iterative, and cheap for deep paths: the deepest existing ancestor is found by binary
    /// search (existence is monotone along a path), then the missing components are created one
    /// by one below it.
    pub(crate) fn mkdir_all(&self, rel: &Path) -> io::Result<OwnedFd> {
        let missing = |e: &io::Error| errno(e) == Some(Errno::NOENT);
        match self.open_dir(rel) {
            Err(e) if missing(&e) && !rel.as_os_str().is_empty() => {}
            r => return r,
        }
        if self.containment == Containment::InRoot {
            return self.create_in_root(rel);
        }
        let comps: Vec<&OsStr> = rel.iter().collect();
        let prefix = |n: usize| comps[..n].iter().collect::<PathBuf>();
        // Invariant: prefix(lo) exists, prefix(hi) does not.
        let (mut lo, mut hi) = (0, comps.len());
        let mut fd = self.open_dir(Path::new(""))?;
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            match self.open_dir(&prefix(mid)) {
                Ok(f) => {
                    lo = mid;
                    fd = f;
                }
                Err(e) if missing(&e) => hi = mid,
                Err(e) => return Err(e),
            }
        }
        for (i, comp) in comps.iter().enumerate().skip(lo) {
            match rustix::fs::mkdirat(&fd, *comp, Mode::from_bits_truncate(0o755)) {
                Ok(()) => {
                    fd = rustix::fs::openat(
                        &fd,
                        *comp,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                }
                // Something is there already (a symlink, say): resolve it in scope.
                Err(Errno::EXIST) => fd = self.open_dir(&prefix(i + 1))?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(fd)
    }

    /// Resolves `rel` one component at a time as `RESOLVE_IN_ROOT` would, creating what is
    /// missing: a missing directory, or the missing target of a dangling symlink (containerd's
    /// `fs.RootPath` followed by `mkparent`). Only directories are entered with `O_NOFOLLOW`;
    /// a symlink's target is spliced in front of the remaining components (an absolute one
    /// restarting from the root), and `..` never climbs above the root.
    fn create_in_root(&self, rel: &Path) -> io::Result<OwnedFd> {
        let mut todo: Vec<OsString> = rel.iter().rev().map(OsStr::to_os_string).collect();
        let mut done = PathBuf::new();
        let mut fd = self.open_dir(Path::new(""))?;
        let mut links = 0;
        while let Some(comp) = todo.pop() {
            match comp.as_bytes() {
                b"" | b"." | b"/" => continue,
                b".." => {
                    done.pop();
                    fd = self.open_dir(&done)?;
                    continue;
                }
                _ => {}
            }
            match Root::lstat_at(&fd, &comp)?.map(|st| FileType::from_raw_mode(st.st_mode)) {
                Some(FileType::Directory) => {}
                Some(FileType::Symlink) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Errno::LOOP.into());
                    }
                    let target = rustix::fs::readlinkat(&fd, &comp, Vec::new())?;
                    let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                    if target.has_root() {
                        done.clear();
                        fd = self.open_dir(Path::new(""))?;
                    }
                    todo.extend(target.iter().rev().map(OsStr::to_os_string));
                    continue;
                }
                Some(_) => return Err(Errno::NOTDIR.into()),
                None => match rustix::fs::mkdirat(&fd, &comp, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                },
            }
            fd = rustix::fs::openat(
                &fd,
                &comp,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            done.push(&comp);
        }
        Ok(fd)
    }

    /// Removes `base` in the directory `pfd` and everything under it,
    /// like `os.RemoveAll`; a symlink is removed, never followed.
    pub(crate) fn remove_at(pfd: &OwnedFd, base: &OsStr) -> io::Result<()> {
        match rustix::fs::unlinkat(pfd, base, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => return Ok(()),
            Err(Errno::ISDIR) | Err(Errno::PERM) => {}
            Err(e) => return Err(e.into()),
        }
        let unlink = |dir: &OwnedFd, _: &Path, name: &OsStr| match rustix::fs::unlinkat(
            dir,
            name,
            AtFlags::empty(),
        ) {
            Ok(()) | Err(Errno::NOENT) => Ok(Visit::Skip),
            Err(Errno::ISDIR) | Err(Errno::PERM) => Ok(Visit::Descend),
            Err(e) => Err(e.into()),
        };
        let rmdir =
            |dir: &OwnedFd, name: &OsStr| match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
            {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(e.into()),
            };
        match walk_at(pfd, base, unlink, rmdir) {
            // unlinkat said EPERM about something that is not a directory after all.
            Err(e) if errno(&e) == Some(Errno::NOTDIR) => Err(Errno::PERM.into()),
            r => r,
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

/// What [`walk_at`] does with a child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Visit {
    Skip,
    Descend,
}

/// Directories kept open on the way down; the ones above are reopened through `..` (checked
/// against the device and inode seen on the way down) when the walk climbs back.
const HELD_FDS: usize = 32;

struct Frame {
    fd: Option<OwnedFd>,
    id: (u64, u64),
    name: OsString,
    /// Children still to visit, last first.
    todo: Vec<OsString>,
}

fn open_frame(dir: &OwnedFd, name: &OsStr) -> io::Result<Frame> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    let mut todo = Vec::new();
    let mut d = rustix::fs::Dir::read_from(&fd)?;
    while let Some(ent) = d.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            todo.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    todo.sort_by(|a, b| b.cmp(a));
    Ok(Frame {
        fd: Some(fd),
        id: (st.st_dev, st.st_ino),
        name: name.to_os_string(),
        todo,
    })
}

/// Walks the tree below directory `name` of `dir` depth first, without recursion and in time
/// linear in its size, never following symlinks. `visit(parent, rel, child)` is called for each
/// child (`rel` is the parent's path below the start) and says whether to descend into it;
/// `leave(parent, name)` is called after a directory's children (the start directory last, with
/// `dir` and `name`).
pub(crate) fn walk_at(
    dir: &OwnedFd,
    name: &OsStr,
    mut visit: impl FnMut(&OwnedFd, &Path, &OsStr) -> io::Result<Visit>,
    mut leave: impl FnMut(&OwnedFd, &OsStr) -> io::Result<()>,
) -> io::Result<()> {
    let mut stack = vec![open_frame(dir, name)?];
    let mut rel = PathBuf::new();
    loop {
        let depth = stack.len();
        let top = stack.last_mut().expect("walk stack is never empty here");
        let fd = top.fd.as_ref().expect("the top frame is open");
        if let Some(child) = top.todo.pop() {
            if visit(fd, &rel, &child)? == Visit::Descend {
                let frame = open_frame(fd, &child)?;
                rel.push(&child);
                stack.push(frame);
                if depth >= HELD_FDS {
                    stack[depth - HELD_FDS].fd = None;
                }
            }
            continue;
        }
        let done = stack.pop().expect("walk stack is never empty here");
        rel.pop();
        let Some(parent) = stack.last_mut() else {
            drop(done.fd);
            return leave(dir, name);
        };
        if parent.fd.is_none() {
            let child_fd = done.fd.as_ref().expect("the top frame is open");
            let up = rustix::fs::openat(
                child_fd,
                "..",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let st = rustix::fs::fstat(&up)?;
            if (st.st_dev, st.st_ino) != parent.id {
                return Err(io::Error::other("directory moved during the walk"));
            }
            parent.fd = Some(up);
        }
        drop(done.fd);
        leave(parent.fd.as_ref().expect("just reopened"), &done.name)?;
    }
}

//! The layer applier: an OCI/Docker layer tar, streamed onto a directory.
//!
//! The pipeline is `layer bytes → sha256 (digest) → gzip/zstd decoder → sha256 + byte limit
//! (diff_id) → tar entries → filesystem`. Every byte of the stream is read and hashed, through
//! the end-of-archive blocks and any padding after them, so the diff_id covers the whole blob.
//!
//! Hostile layers: entry names are cleaned lexically (`.` and empty components dropped);
//! absolute names and `..` that would climb above the root are rejected. Each entry's parent is
//! then resolved by the kernel inside the root (see [`Containment`]), and the entry's own name is
//! never followed. Hardlink targets get the same treatment. On any error the directory is left
//! half-applied: the caller discards the snapshot, as containerd does.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_core::{Descriptor, Digest};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::compression::{peek, Compression, MEDIA_TYPE_OCI_LAYER};
use crate::error::ArchiveError;
use crate::hash::HashingReader;
use crate::root::{errno, proc_path, split, walk_at, Containment, Root, Visit};
use crate::tar_reader::{Kind, TarEntry, TarReader, Timestamp};
use crate::{OPAQUE_WHITEOUT, WHITEOUT_META_PREFIX, WHITEOUT_PREFIX};

/// What a whiteout in the layer becomes on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// The whited-out path is removed; an opaque directory loses every child this layer did not
    /// itself create. For applying onto a directory that already holds the lower layers (a
    /// mounted overlay view, or a copy of the parent for a naive snapshotter). The default.
    #[default]
    Delete,
    /// Whiteouts become what overlayfs reads in an upperdir: `.wh.<name>` a 0/0 character device
    /// `<name>`, `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` (or `user.overlay.opaque`
    /// with [`ApplyOptions::overlay_userxattr`]) on its directory. For applying straight into an
    /// overlay snapshot's upperdir, which holds this layer only. Parents are resolved in the
    /// upperdir alone, as containerd's overlay apply does: an entry under a lower layer's
    /// symlink (`var/run/foo` over a lower `var/run -> /run`) makes `var/run` a directory of
    /// the upper, which hides the link.
    Overlay,
}

/// Bounds that keep a hostile layer from exhausting disk, memory or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyLimits {
    /// The most bytes the decompressed stream may have (a decompression bomb's bound).
    pub max_uncompressed_bytes: u64,
    /// The most tar entries (not counting extension headers).
    pub max_entries: u64,
    /// The longest entry name or link target, in bytes.
    pub max_name_len: usize,
}

impl Default for ApplyLimits {
    /// 64 GiB, 10 million entries, 4096-byte names.
    fn default() -> Self {
        ApplyLimits {
            max_uncompressed_bytes: 64 << 30,
            max_entries: 10_000_000,
            max_name_len: 4096,
        }
    }
}

/// How to apply a layer.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// See [`WhiteoutMode`].
    pub whiteouts: WhiteoutMode,
    /// In [`WhiteoutMode::Overlay`], mark opaque directories with `user.overlay.opaque` (for an
    /// overlay mounted with `userxattr`, e.g. rootless) instead of `trusted.overlay.opaque`.
    pub overlay_userxattr: bool,
    /// How symlinks met on the way to an entry are confined; see [`Containment`].
    pub containment: Containment,
    /// See [`ApplyLimits`].
    pub limits: ApplyLimits,
    /// The diff_id the layer must have; a mismatch fails the apply (after the whole stream has
    /// been read, so the caller must discard the directory).
    pub expected_diff_id: Option<Digest>,
    /// The compression the caller expects (from the media type). `None` detects it from the
    /// magic bytes, as containerd does; `Some` additionally requires the bytes to agree.
    pub compression: Option<Compression>,
    /// Apply tar uids/gids with `lchown`. Defaults to whether the process runs as root; without
    /// it files belong to the applier.
    pub preserve_ownership: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            whiteouts: WhiteoutMode::default(),
            overlay_userxattr: false,
            containment: Containment::default(),
            limits: ApplyLimits::default(),
            expected_diff_id: None,
            compression: None,
            preserve_ownership: rustix::process::geteuid().is_root(),
        }
    }
}

/// The outcome of a successful apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// sha256 of the uncompressed tar stream: the layer's diff_id.
    pub diff_id: Digest,
    /// Bytes in the uncompressed stream.
    pub uncompressed_size: u64,
    /// sha256 of the bytes as read (compressed): the layer blob's digest.
    pub digest: Digest,
    /// Bytes read (compressed).
    pub size: u64,
    /// The compression the stream turned out to have.
    pub compression: Compression,
    /// Tar entries applied (or skipped as unsupported by this process, e.g. devices as non-root).
    pub entries: u64,
}

impl Applied {
    /// The descriptor containerd's Diff service returns from `Apply`: the uncompressed layer
    /// (`application/vnd.oci.image.layer.v1.tar`, the diff_id, the uncompressed size).
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: MEDIA_TYPE_OCI_LAYER.to_string(),
            digest: self.diff_id.clone(),
            size: self.uncompressed_size as i64,
            annotations: Default::default(),
        }
    }
}

/// Applies the layer read from `layer` onto the directory `root`.
///
/// This is blocking I/O; call it from a blocking thread.
pub fn apply_layer<R: Read>(
    root: &Path,
    layer: R,
    opts: &ApplyOptions,
) -> Result<Applied, ArchiveError> {
    let dir = Root::open(root, opts.containment)
        .map_err(ArchiveError::io(format!("open root {}", root.display())))?;
    let mut compressed = HashingReader::new(layer, u64::MAX);
    // Buffered here so a plain tar is not read 512 bytes per syscall.
    let buffered = io::BufReader::with_capacity(128 << 10, &mut compressed);
    let (prefix, stream) = peek(buffered, 6).map_err(|source| ArchiveError::Read { source })?;
    let compression = Compression::detect(&prefix)?;
    if let Some(declared) = opts.compression {
        if declared != compression {
            return Err(ArchiveError::CompressionMismatch {
                declared: declared.as_str(),
                detected: compression.as_str(),
            });
        }
    }
    let mut plain = HashingReader::new(
        compression.decoder(stream)?,
        opts.limits.max_uncompressed_bytes,
    );
    let mut applier = Applier::new(&dir, opts);
    let result = applier.run(&mut plain).and_then(|()| {
        plain
            .drain()
            .map_err(|source| ArchiveError::Read { source })
    });
    if let Err(e) = result {
        if plain.exceeded() {
            return Err(ArchiveError::TooLarge {
                limit: opts.limits.max_uncompressed_bytes,
            });
        }
        return Err(e);
    }
    let entries = applier.entries;
    let (diff_id, uncompressed_size) = plain.finish();
    compressed
        .drain()
        .map_err(|source| ArchiveError::Read { source })?;
    let (digest, size) = compressed.finish();
    if let Some(expected) = &opts.expected_diff_id {
        if *expected != diff_id {
            return Err(ArchiveError::DiffIdMismatch {
                actual: diff_id,
                expected: expected.clone(),
            });
        }
    }
    Ok(Applied {
        diff_id,
        uncompressed_size,
        digest,
        size,
        compression,
        entries,
    })
}

/// Mode and times of a directory, set once every entry is in place (creating children changes
/// a directory's mtime; a read-only mode would stop a non-root applier from filling it).
#[derive(Debug)]
struct DirMeta {
    rel: PathBuf,
    mode: u32,
    times: Timestamps,
}

struct Applier<'a> {
    root: &'a Root,
    opts: &'a ApplyOptions,
    euid_root: bool,
    entries: u64,
    /// Paths this layer created (and their parents), for opaque directories in delete mode.
    unpacked: HashSet<PathBuf>,
    dirs: Vec<DirMeta>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn to_timespec(t: Timestamp) -> Timespec {
    Timespec {
        tv_sec: t.secs,
        tv_nsec: i64::from(t.nanos),
    }
}

fn timestamps(e: &TarEntry) -> Timestamps {
    Timestamps {
        last_access: to_timespec(e.atime.unwrap_or(e.mtime)),
        last_modification: to_timespec(e.mtime),
    }
}

/// The longest name of one directory entry (Linux's `NAME_MAX`).
const NAME_MAX: usize = 255;

/// Cleans an entry name (or hardlink target) to a relative path inside the root; `None` is the
/// root itself.
pub(crate) fn clean_name(
    raw: &[u8],
    entry: &[u8],
    what: &'static str,
    limits: &ApplyLimits,
) -> Result<Option<PathBuf>, ArchiveError> {
    let invalid = |reason: String| ArchiveError::InvalidName {
        name: lossy(entry),
        reason,
    };
    if raw.is_empty() {
        return Err(invalid(format!("empty {what}")));
    }
    if raw.len() > limits.max_name_len {
        return Err(invalid(format!(
            "{what} of {} bytes exceeds the limit of {}",
            raw.len(),
            limits.max_name_len
        )));
    }
    if raw.contains(&0) {
        return Err(invalid(format!("{what} contains a NUL byte")));
    }
    if raw[0] == b'/' {
        return Err(ArchiveError::AbsoluteName { name: lossy(raw) });
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        if c.len() > NAME_MAX {
            return Err(invalid(format!(
                "{what} component of {} bytes exceeds the limit of {NAME_MAX}",
                c.len()
            )));
        }
        match c {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err(ArchiveError::PathEscape {
                        name: lossy(entry),
                        what,
                    });
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Ok(Some(PathBuf::from(OsStr::from_bytes(&parts.join(&b'/')))))
}

impl<'a> Applier<'a> {
    fn new(root: &'a Root, opts: &'a ApplyOptions) -> Self {
        Applier {
            root,
            opts,
            euid_root: rustix::process::geteuid().is_root(),
            entries: 0,
            unpacked: HashSet::new(),
            dirs: Vec::new(),
        }
    }

    fn run<R: Read>(&mut self, stream: R) -> Result<(), ArchiveError> {
        let mut tar = TarReader::new(stream);
        while let Some(entry) = tar.next_entry()? {
            self.entries += 1;
            if self.entries > self.opts.limits.max_entries {
                return Err(ArchiveError::TooManyEntries {
                    limit: self.opts.limits.max_entries,
                });
            }
            self.apply_entry(&entry, &mut tar.data())?;
        }
        self.finish_dirs()
    }

    /// An I/O error about entry `e`.
    fn fail(e: &TarEntry, op: &str) -> impl FnOnce(io::Error) -> ArchiveError {
        ArchiveError::io(format!("layer entry {:?}: {op}", lossy(&e.path)))
    }

    /// Maps a failed scoped lookup: `EXDEV` means the kernel refused to leave the root.
    fn resolve_fail(e: &TarEntry, what: &'static str) -> impl FnOnce(io::Error) -> ArchiveError {
        let name = lossy(&e.path);
        move |err| {
            if errno(&err) == Some(Errno::XDEV) {
                ArchiveError::SymlinkEscape { name, what }
            } else {
                ArchiveError::Io {
                    context: format!("layer entry {name:?}: resolve {what}"),
                    source: err,
                }
            }
        }
    }

    fn mark_unpacked(&mut self, rel: &Path) {
        if self.opts.whiteouts != WhiteoutMode::Delete {
            return;
        }
        let mut p = Some(rel);
        while let Some(cur) = p {
            if cur.as_os_str().is_empty() || !self.unpacked.insert(cur.to_path_buf()) {
                break;
            }
            p = cur.parent();
        }
    }

    fn apply_entry(&mut self, e: &TarEntry, data: &mut impl Read) -> Result<(), ArchiveError> {
        let limits = &self.opts.limits;
        let Some(rel) = clean_name(&e.path, &e.path, "name", limits)? else {
            tracing::debug!(name = %lossy(&e.path), "layer entry resolves to the root, ignored");
            return Ok(());
        };
        let (parent, base) = split(&rel);
        if base.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(e, &rel);
        }
        let target = if e.kind == Kind::Hardlink {
            let t = clean_name(&e.link, &e.path, "hardlink target", limits)?;
            match t {
                Some(t) if t != rel => Some(t),
                _ => {
                    return Err(ArchiveError::InvalidHardlink {
                        name: lossy(&e.path),
                        target: lossy(&e.link),
                        reason: "target is the entry itself or the root".into(),
                    })
                }
            }
        } else {
            if e.link.len() > limits.max_name_len {
                return Err(ArchiveError::InvalidName {
                    name: lossy(&e.path),
                    reason: format!("link target of {} bytes exceeds the limit", e.link.len()),
                });
            }
            None
        };
        let pfd = self
            .root
            .mkdir_all(parent)
            .map_err(Self::resolve_fail(e, "parent directory"))?;
        if let Some(st) = Root::lstat_at(&pfd, base).map_err(Self::fail(e, "lstat"))? {
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            if !(is_dir && e.kind == Kind::Dir) {
                Root::remove_at(&pfd, base).map_err(Self::fail(e, "remove existing"))?;
            }
        }
        match e.kind {
            Kind::Regular => self.regular(e, &pfd, base, data)?,
            Kind::Dir => self.directory(e, &pfd, &rel, base)?,
            Kind::Symlink => {
                rustix::fs::symlinkat(OsStr::from_bytes(&e.link), &pfd, base)
                    .map_err(|x| Self::fail(e, "symlink")(x.into()))?;
                self.node_meta(e, &pfd, base, false)?;
            }
            Kind::Hardlink => self.hardlink(e, &pfd, base, target.as_deref().unwrap_or(&rel))?,
            Kind::Char | Kind::Block | Kind::Fifo => {
                if !self.special(e, &pfd, base)? {
                    return Ok(());
                }
            }
        }
        self.mark_unpacked(&rel);
        Ok(())
    }

    fn regular(
        &mut self,
        e: &TarEntry,
        pfd: &OwnedFd,
        base: &OsStr,
        data: &mut impl Read,
    ) -> Result<(), ArchiveError> {
        let fd = rustix::fs::openat(
            pfd,
            base,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|x| Self::fail(e, "create")(x.into()))?;
        let mut file = File::from(fd);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(ArchiveError::Read { source }),
            };
            file.write_all(&buf[..n]).map_err(Self::fail(e, "write"))?;
        }
        let fd = OwnedFd::from(file);
        if self.opts.preserve_ownership {
            let (uid, gid) = ids(e)?;
            std::os::unix::fs::fchown(&fd, Some(uid), Some(gid)).map_err(Self::fail(e, "chown"))?;
        }
        rustix::fs::fchmod(&fd, Mode::from_bits_truncate(e.mode & 0o7777))
            .map_err(|x| Self::fail(e, "chmod")(x.into()))?;
        self.xattrs(e, XattrTarget::Fd(&fd))?;
        rustix::fs::futimens(&fd, &timestamps(e))
            .map_err(|x| Self::fail(e, "set times")(x.into()))?;
        Ok(())
    }

    fn directory(
        &mut self,
        e: &TarEntry,
        pfd: &OwnedFd,
        rel: &Path,
        base: &OsStr,
    ) -> Result<(), ArchiveError> {
        match rustix::fs::mkdirat(pfd, base, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(x) => return Err(Self::fail(e, "mkdir")(x.into())),
        }
        let fd = rustix::fs::openat(
            pfd,
            base,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|x| Self::fail(e, "open directory")(x.into()))?;
        if self.opts.preserve_ownership {
            let (uid, gid) = ids(e)?;
            std::os::unix::fs::fchown(&fd, Some(uid), Some(gid)).map_err(Self::fail(e, "chown"))?;
        }
        self.xattrs(e, XattrTarget::Fd(&fd))?;
        self.dirs.push(DirMeta {
            rel: rel.to_path_buf(),
            mode: e.mode & 0o7777,
            times: timestamps(e),
        });
        Ok(())
    }

    fn hardlink(
        &mut self,
        e: &TarEntry,
        pfd: &OwnedFd,
        base: &OsStr,
        target: &Path,
    ) -> Result<(), ArchiveError> {
        let invalid = |reason: &str| ArchiveError::InvalidHardlink {
            name: lossy(&e.path),
            target: lossy(&e.link),
            reason: reason.into(),
        };
        let (tparent, tbase) = split(target);
        let tpfd = match self.root.open_dir(tparent) {
            Ok(fd) => fd,
            Err(err) if matches!(errno(&err), Some(Errno::NOENT | Errno::NOTDIR)) => {
                return Err(invalid("target does not exist"))
            }
            Err(err) => return Err(Self::resolve_fail(e, "hardlink target")(err)),
        };
        // Flags 0: a symlink target is linked itself, never followed.
        match rustix::fs::linkat(&tpfd, tbase, pfd, base, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::NOENT) => Err(invalid("target does not exist")),
            Err(Errno::PERM) if is_dir_at(&tpfd, tbase) => Err(invalid("target is a directory")),
            Err(x) => Err(Self::fail(e, "link")(x.into())),
        }
    }

    /// Devices and fifos; `Ok(false)` when skipped (devices without privilege, as containerd
    /// does in user namespaces).
    fn special(&mut self, e: &TarEntry, pfd: &OwnedFd, base: &OsStr) -> Result<bool, ArchiveError> {
        let (ft, dev) = match e.kind {
            Kind::Char => (
                FileType::CharacterDevice,
                rustix::fs::makedev(e.dev_major, e.dev_minor),
            ),
            Kind::Block => (
                FileType::BlockDevice,
                rustix::fs::makedev(e.dev_major, e.dev_minor),
            ),
            _ => (FileType::Fifo, 0),
        };
        let device = ft != FileType::Fifo;
        if device && !self.euid_root {
            tracing::warn!(name = %lossy(&e.path), "device node skipped: not running as root");
            return Ok(false);
        }
        match rustix::fs::mknodat(pfd, base, ft, Mode::from_bits_truncate(0o600), dev) {
            Ok(()) => {}
            Err(Errno::PERM) if device => {
                tracing::warn!(name = %lossy(&e.path), "device node skipped: mknod not permitted");
                return Ok(false);
            }
            Err(x) => return Err(Self::fail(e, "mknod")(x.into())),
        }
        self.node_meta(e, pfd, base, true)?;
        Ok(true)
    }

    /// Ownership, mode (unless a symlink), xattrs and times of a node named by its parent fd.
    fn node_meta(
        &mut self,
        e: &TarEntry,
        pfd: &OwnedFd,
        base: &OsStr,
        chmod: bool,
    ) -> Result<(), ArchiveError> {
        let path = proc_path(pfd, base);
        if self.opts.preserve_ownership {
            let (uid, gid) = ids(e)?;
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                .map_err(Self::fail(e, "chown"))?;
        }
        if chmod {
            rustix::fs::chmodat(
                pfd,
                base,
                Mode::from_bits_truncate(e.mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(|x| Self::fail(e, "chmod")(x.into()))?;
        }
        self.xattrs(e, XattrTarget::Path(&path))?;
        rustix::fs::utimensat(pfd, base, &timestamps(e), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|x| Self::fail(e, "set times")(x.into()))?;
        Ok(())
    }

    fn xattrs(&self, e: &TarEntry, target: XattrTarget<'_>) -> Result<(), ArchiveError> {
        for (key, value) in &e.xattrs {
            let Ok(key) = std::str::from_utf8(key) else {
                tracing::warn!(name = %lossy(&e.path), "xattr with a non-UTF-8 name ignored");
                continue;
            };
            if key.starts_with("trusted.overlay.") || key.starts_with("user.overlay.") {
                // Overlay metadata comes from whiteout entries only, never forged by a layer.
                tracing::warn!(name = %lossy(&e.path), key, "overlay xattr in layer ignored");
                continue;
            }
            let r = match target {
                XattrTarget::Fd(fd) => rustix::fs::fsetxattr(fd, key, value, XattrFlags::empty()),
                XattrTarget::Path(p) => rustix::fs::lsetxattr(p, key, value, XattrFlags::empty()),
            };
            match r {
                Ok(()) => {}
                Err(Errno::NOTSUP) => {
                    tracing::warn!(name = %lossy(&e.path), key, "xattr ignored: not supported");
                }
                Err(Errno::PERM)
                    if key.starts_with("security.")
                        || (!self.euid_root && key.starts_with("trusted.")) =>
                {
                    tracing::warn!(name = %lossy(&e.path), key, "xattr ignored: not permitted");
                }
                Err(x) => return Err(Self::fail(e, &format!("set xattr {key}"))(x.into())),
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, e: &TarEntry, rel: &Path) -> Result<(), ArchiveError> {
        let (parent, base) = split(rel);
        let base = base.as_bytes();
        if base == OPAQUE_WHITEOUT.as_bytes() {
            return self.opaque(e, parent);
        }
        let name = &base[WHITEOUT_PREFIX.len()..];
        if base.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
            tracing::debug!(name = %lossy(&e.path), "aufs metadata entry ignored");
            return Ok(());
        }
        if name.is_empty() || name == b"." || name == b".." {
            return Err(ArchiveError::InvalidWhiteout {
                name: lossy(&e.path),
            });
        }
        let name = OsStr::from_bytes(name);
        // Missing parents are created in both modes, as containerd does before converting.
        let pfd = self
            .root
            .mkdir_all(parent)
            .map_err(Self::resolve_fail(e, "whiteout directory"))?;
        self.mark_unpacked(parent);
        Root::remove_at(&pfd, name).map_err(Self::fail(e, "remove whited-out path"))?;
        if self.opts.whiteouts == WhiteoutMode::Overlay {
            rustix::fs::mknodat(&pfd, name, FileType::CharacterDevice, Mode::empty(), 0)
                .map_err(|x| Self::fail(e, "create overlay whiteout")(x.into()))?;
            if self.opts.preserve_ownership {
                let (uid, gid) = ids(e)?;
                std::os::unix::fs::lchown(proc_path(&pfd, name), Some(uid), Some(gid))
                    .map_err(Self::fail(e, "chown whiteout"))?;
            }
        }
        Ok(())
    }

    fn opaque(&mut self, e: &TarEntry, dir: &Path) -> Result<(), ArchiveError> {
        self.root
            .mkdir_all(dir)
            .map_err(Self::resolve_fail(e, "opaque directory"))?;
        self.mark_unpacked(dir);
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                let fd = self
                    .root
                    .open_dir_rdonly(dir)
                    .map_err(Self::resolve_fail(e, "opaque directory"))?;
                let key = if self.opts.overlay_userxattr {
                    "user.overlay.opaque"
                } else {
                    "trusted.overlay.opaque"
                };
                rustix::fs::fsetxattr(&fd, key, b"y", XattrFlags::empty())
                    .map_err(|x| Self::fail(e, &format!("set {key}"))(x.into()))
            }
            WhiteoutMode::Delete => self.clear_opaque(e, dir),
        }
    }

    /// Removes everything under `dir` that this layer did not create.
    fn clear_opaque(&mut self, e: &TarEntry, dir: &Path) -> Result<(), ArchiveError> {
        let (parent, base) = split(dir);
        let pfd = self
            .root
            .open_dir(parent)
            .map_err(Self::resolve_fail(e, "opaque directory"))?;
        let base = if base.is_empty() {
            OsStr::new(".")
        } else {
            base
        };
        let unpacked = &self.unpacked;
        let visit = |dfd: &OwnedFd, rel: &Path, name: &OsStr| {
            let child = dir.join(rel).join(name);
            if !unpacked.contains(&child) {
                Root::remove_at(dfd, name)?;
                Ok(Visit::Skip)
            } else if is_dir_at(dfd, name) {
                Ok(Visit::Descend)
            } else {
                Ok(Visit::Skip)
            }
        };
        walk_at(&pfd, base, visit, |_, _| Ok(())).map_err(Self::fail(e, "clear opaque directory"))
    }

    fn finish_dirs(&mut self) -> Result<(), ArchiveError> {
        let mut done = HashSet::new();
        let dirs = std::mem::take(&mut self.dirs);
        // Deepest (latest) first, and the last record of a directory listed twice wins.
        let mut last: HashMap<&Path, usize> = HashMap::new();
        for (i, d) in dirs.iter().enumerate() {
            last.insert(&d.rel, i);
        }
        for (i, d) in dirs.iter().enumerate().rev() {
            if last.get(d.rel.as_path()) != Some(&i) || !done.insert(&d.rel) {
                continue;
            }
            let ctx = || format!("layer directory {:?}", d.rel.display().to_string());
            let (parent, base) = split(&d.rel);
            let Ok(pfd) = self.root.open_dir(parent) else {
                continue; // replaced or removed by a later entry
            };
            let fd = match rustix::fs::openat(
                &pfd,
                base,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(x) => return Err(ArchiveError::io(ctx())(x.into())),
            };
            rustix::fs::fchmod(&fd, Mode::from_bits_truncate(d.mode))
                .map_err(|x| ArchiveError::io(ctx())(x.into()))?;
            rustix::fs::futimens(&fd, &d.times).map_err(|x| ArchiveError::io(ctx())(x.into()))?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum XattrTarget<'a> {
    Fd(&'a OwnedFd),
    Path(&'a Path),
}

fn is_dir_at(dir: &OwnedFd, name: &OsStr) -> bool {
    matches!(Root::lstat_at(dir, name), Ok(Some(st))
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory)
}

fn ids(e: &TarEntry) -> Result<(u32, u32), ArchiveError> {
    // u32::MAX is chown's "leave unchanged"; refuse it like any other out-of-range id.
    let id = |v: u64, what: &str| {
        u32::try_from(v)
            .ok()
            .filter(|v| *v != u32::MAX)
            .ok_or_else(|| ArchiveError::InvalidName {
                name: lossy(&e.path),
                reason: format!("{what} {v} out of range"),
            })
    };
    Ok((id(e.uid, "uid")?, id(e.gid, "gid")?))
}

//! The differ: two directory trees (a lower and an upper view of a snapshot) into a layer tar,
//! after containerd's "double walking" diff.
//!
//! Both trees are walked together, each directory's names in byte order, depth first, so the
//! output is a pure function of the two trees. For each name:
//!
//! - only in lower: a whiteout `.wh.<name>` (a deleted directory is one whiteout, not one per
//!   child);
//! - only in upper, or a directory replacing a non-directory: the entry and its whole subtree;
//! - in both: emitted when it changed (type, mode, owner, device number, xattrs; for
//!   non-directories also size and mtime, and content or link target when both mtimes have whole
//!   seconds and so may have been truncated), and directories present in both are descended.
//!
//! Parent directories of every emitted entry are emitted first (with the upper's metadata), as
//! containerd's `ChangeWriter` does, so an applier never has to invent them. Files with several
//! links are written once, later names as hardlinks to the first. Sockets are skipped. Xattrs go
//! in PAX `SCHILY.xattr.*` records, except overlayfs' own and `security.selinux` (a host label).
//! Times are whole seconds; whiteouts carry mtime 0.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_core::{Descriptor, Digest};
use rustix::fs::{Mode, OFlags};
use tar::{EntryType, Header};

use crate::compression::{Compression, Encoder};
use crate::error::ArchiveError;
use crate::hash::HashingWriter;
use crate::WHITEOUT_PREFIX;

/// How to write a diff.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Compression of the written layer.
    pub compression: Compression,
}

/// The outcome of writing a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diffed {
    /// sha256 of the uncompressed tar: the layer's diff_id (containerd's label
    /// `containerd.io/uncompressed`).
    pub diff_id: Digest,
    /// Bytes of uncompressed tar.
    pub uncompressed_size: u64,
    /// sha256 of the bytes written (after compression): the layer blob's digest.
    pub digest: Digest,
    /// Bytes written.
    pub size: u64,
    /// The compression used.
    pub compression: Compression,
}

impl Diffed {
    /// The layer blob's descriptor (OCI media type for the compression used).
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.compression.oci_media_type().to_string(),
            digest: self.digest.clone(),
            size: self.size as i64,
            annotations: Default::default(),
        }
    }
}

/// Writes to `out` the layer that turns `lower` into `upper`.
///
/// Blocking I/O; call it from a blocking thread. The trees should not change while it runs
/// (diff committed snapshots, or mounts no container writes to).
pub fn write_diff<W: Write>(
    lower: &Path,
    upper: &Path,
    out: W,
    opts: &DiffOptions,
) -> Result<Diffed, ArchiveError> {
    for (what, p) in [("lower", lower), ("upper", upper)] {
        let m = std::fs::metadata(p)
            .map_err(ArchiveError::io(format!("diff {what} {}", p.display())))?;
        if !m.is_dir() {
            return Err(ArchiveError::Io {
                context: format!("diff {what} {}", p.display()),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a directory"),
            });
        }
    }
    let ctx = || ArchiveError::io("write diff");
    let compressed = HashingWriter::new(out);
    let encoder = Encoder::new(opts.compression, compressed).map_err(ctx())?;
    let plain = HashingWriter::new(encoder);
    let mut differ = Differ {
        lower,
        upper,
        w: plain,
        pending: Vec::new(),
        inodes: HashMap::new(),
    };
    differ.diff_dir(Path::new(""))?;
    differ.w.write_all(&[0u8; 1024]).map_err(ctx())?;
    let (encoder, diff_id, uncompressed_size) = differ.w.finish();
    let mut compressed = encoder.finish().map_err(ctx())?;
    compressed.flush().map_err(ctx())?;
    let (_, digest, size) = compressed.finish();
    Ok(Diffed {
        diff_id,
        uncompressed_size,
        digest,
        size,
        compression: opts.compression,
    })
}

struct Differ<'a, W: Write> {
    lower: &'a Path,
    upper: &'a Path,
    w: W,
    /// The directories above the current one, and whether each has been written yet.
    pending: Vec<(PathBuf, bool)>,
    /// (dev, ino) of written multiply-linked files → the name written first.
    inodes: HashMap<(u64, u64), PathBuf>,
}

fn list(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

fn lstat(p: &Path) -> Result<Metadata, ArchiveError> {
    std::fs::symlink_metadata(p).map_err(ArchiveError::io(format!("lstat {}", p.display())))
}

/// Xattrs worth carrying in a layer, sorted by name.
pub(crate) fn read_xattrs(p: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut list = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(p, &mut list) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => {
                let need = rustix::fs::llistxattr(p, &mut [])?;
                list.resize(need.max(list.len() * 2), 0);
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let names = &list[..n];
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if name.starts_with("trusted.overlay.")
            || name.starts_with("user.overlay.")
            || name == "security.selinux"
        {
            continue;
        }
        let mut value = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(p, name, &mut value) {
                Ok(n) => break Some(n),
                Err(rustix::io::Errno::RANGE) => {
                    let need = rustix::fs::lgetxattr(p, name, &mut [])?;
                    value.resize(need.max(value.len() * 2), 0);
                }
                Err(rustix::io::Errno::NODATA) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(len) = len {
            value.truncate(len);
            out.push((name.to_string(), value));
        }
    }
    out.sort();
    Ok(out)
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<len> <key>=<value>\n", where <len> counts itself.
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    loop {
        let l = body + len.to_string().len();
        if l == len {
            break;
        }
        len = l;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

impl<W: Write> Differ<'_, W> {
    fn diff_dir(&mut self, rel: &Path) -> Result<(), ArchiveError> {
        let (lower_dir, upper_dir) = (self.lower.join(rel), self.upper.join(rel));
        let unames =
            list(&upper_dir).map_err(ArchiveError::io(format!("list {}", upper_dir.display())))?;
        let lnames =
            list(&lower_dir).map_err(ArchiveError::io(format!("list {}", lower_dir.display())))?;
        let (mut li, mut ui) = (0, 0);
        while li < lnames.len() || ui < unames.len() {
            let (name, in_lower, in_upper) = match (lnames.get(li), unames.get(ui)) {
                (Some(l), Some(u)) if l == u => (l.clone(), true, true),
                (Some(l), Some(u)) if l < u => (l.clone(), true, false),
                (Some(l), None) => (l.clone(), true, false),
                (_, Some(u)) => (u.clone(), false, true),
                (None, None) => unreachable!(),
            };
            li += usize::from(in_lower);
            ui += usize::from(in_upper);
            let child = rel.join(&name);
            if !in_upper {
                self.flush_parents()?;
                self.whiteout(&child)?;
                continue;
            }
            let umeta = lstat(&self.upper.join(&child))?;
            if !in_lower {
                self.flush_parents()?;
                self.add_tree(&child, &umeta)?;
                continue;
            }
            let lmeta = lstat(&self.lower.join(&child))?;
            match (lmeta.is_dir(), umeta.is_dir()) {
                (true, true) => {
                    let changed = !self.same(&child, &lmeta, &umeta)?;
                    if changed {
                        self.flush_parents()?;
                        self.emit(&child, &umeta)?;
                    }
                    self.pending.push((child.clone(), changed));
                    let r = self.diff_dir(&child);
                    self.pending.pop();
                    r?;
                }
                (false, true) => {
                    self.flush_parents()?;
                    self.add_tree(&child, &umeta)?;
                }
                _ => {
                    if !self.same(&child, &lmeta, &umeta)? {
                        self.flush_parents()?;
                        self.emit(&child, &umeta)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the headers of enclosing directories not written yet.
    fn flush_parents(&mut self) -> Result<(), ArchiveError> {
        for i in 0..self.pending.len() {
            if !self.pending[i].1 {
                let rel = self.pending[i].0.clone();
                let meta = lstat(&self.upper.join(&rel))?;
                self.emit(&rel, &meta)?;
                self.pending[i].1 = true;
            }
        }
        Ok(())
    }

    fn add_tree(&mut self, rel: &Path, meta: &Metadata) -> Result<(), ArchiveError> {
        self.emit(rel, meta)?;
        if meta.is_dir() {
            let dir = self.upper.join(rel);
            let names = list(&dir).map_err(ArchiveError::io(format!("list {}", dir.display())))?;
            for name in names {
                let child = rel.join(name);
                let m = lstat(&self.upper.join(&child))?;
                self.add_tree(&child, &m)?;
            }
        }
        Ok(())
    }

    fn same(&self, rel: &Path, l: &Metadata, u: &Metadata) -> Result<bool, ArchiveError> {
        let (lp, up) = (self.lower.join(rel), self.upper.join(rel));
        let ctx = || ArchiveError::io(format!("compare {}", up.display()));
        if l.mode() != u.mode() || l.uid() != u.uid() || l.gid() != u.gid() {
            return Ok(false);
        }
        let ft = u.file_type();
        if (ft.is_char_device() || ft.is_block_device()) && l.rdev() != u.rdev() {
            return Ok(false);
        }
        if read_xattrs(&lp).map_err(ctx())? != read_xattrs(&up).map_err(ctx())? {
            return Ok(false);
        }
        if ft.is_dir() {
            return Ok(true);
        }
        if l.size() != u.size() || l.mtime() != u.mtime() {
            return Ok(false);
        }
        if l.mtime_nsec() != u.mtime_nsec() {
            return Ok(false);
        }
        if l.mtime_nsec() == 0 {
            // Both times may have been truncated to seconds: look at what is inside.
            if ft.is_symlink() {
                let lt = std::fs::read_link(&lp).map_err(ctx())?;
                let ut = std::fs::read_link(&up).map_err(ctx())?;
                return Ok(lt == ut);
            }
            if ft.is_file() && u.size() > 0 {
                return same_content(&lp, &up).map_err(ctx());
            }
        }
        Ok(true)
    }

    fn whiteout(&mut self, rel: &Path) -> Result<(), ArchiveError> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let mut wh = OsString::from(WHITEOUT_PREFIX);
        wh.push(rel.file_name().unwrap_or_default());
        let name = parent.join(wh);
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0);
        h.set_mtime(0);
        h.set_size(0);
        self.write_entry(h, name.as_os_str().as_bytes(), None, Vec::new(), None)
    }

    fn emit(&mut self, rel: &Path, meta: &Metadata) -> Result<(), ArchiveError> {
        let path = self.upper.join(rel);
        let ctx = || ArchiveError::io(format!("diff {}", path.display()));
        let ft = meta.file_type();
        let mut h = Header::new_ustar();
        let mut name = rel.as_os_str().as_bytes().to_vec();
        let mut link = None;
        let mut data = None;
        h.set_size(0);
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            name.push(b'/');
        } else if ft.is_symlink() {
            h.set_entry_type(EntryType::Symlink);
            let target = std::fs::read_link(&path).map_err(ctx())?;
            link = Some(target.into_os_string().into_vec());
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            match self.inodes.get(&key) {
                Some(first) if meta.nlink() > 1 => {
                    h.set_entry_type(EntryType::Link);
                    link = Some(first.as_os_str().as_bytes().to_vec());
                }
                _ => {
                    if meta.nlink() > 1 {
                        self.inodes.insert(key, rel.to_path_buf());
                    }
                    h.set_entry_type(EntryType::Regular);
                    h.set_size(meta.size());
                    let fd = rustix::fs::open(
                        &path,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| ctx()(e.into()))?;
                    data = Some((File::from(fd), meta.size()));
                }
            }
        } else if ft.is_char_device() || ft.is_block_device() {
            h.set_entry_type(if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            });
            let rdev = meta.rdev();
            h.set_device_major(rustix::fs::major(rdev)).map_err(ctx())?;
            h.set_device_minor(rustix::fs::minor(rdev)).map_err(ctx())?;
        } else if ft.is_fifo() {
            h.set_entry_type(EntryType::Fifo);
        } else {
            tracing::warn!(path = %path.display(), "socket skipped in diff");
            return Ok(());
        }
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(u64::from(meta.uid()));
        h.set_gid(u64::from(meta.gid()));
        let mut pax = Vec::new();
        let mtime = meta.mtime();
        if mtime < 0 {
            pax.push(pax_record("mtime", mtime.to_string().as_bytes()));
        }
        h.set_mtime(mtime.max(0) as u64);
        for (k, v) in read_xattrs(&path).map_err(ctx())? {
            pax.push(pax_record(&format!("SCHILY.xattr.{k}"), &v));
        }
        self.write_entry(h, &name, link.as_deref(), pax, data)
    }

    /// Writes one entry (and its PAX header when needed): a name or link target over 100 bytes,
    /// a size over the octal field, xattrs.
    fn write_entry(
        &mut self,
        mut h: Header,
        name: &[u8],
        link: Option<&[u8]>,
        mut pax: Vec<Vec<u8>>,
        data: Option<(File, u64)>,
    ) -> Result<(), ArchiveError> {
        let ctx = || ArchiveError::io(format!("write diff entry {:?}", OsStr::from_bytes(name)));
        let old = h.as_old_mut();
        if name.len() <= old.name.len() {
            old.name[..name.len()].copy_from_slice(name);
        } else {
            pax.push(pax_record("path", name));
            let n = old.name.len();
            old.name.copy_from_slice(&name[..n]);
        }
        if let Some(link) = link {
            if link.len() <= old.linkname.len() {
                old.linkname[..link.len()].copy_from_slice(link);
            } else {
                pax.push(pax_record("linkpath", link));
                let n = old.linkname.len();
                old.linkname.copy_from_slice(&link[..n]);
            }
        }
        let size = data.as_ref().map_or(0, |d| d.1);
        if size > 0o77777777777 {
            pax.push(pax_record("size", size.to_string().as_bytes()));
        }
        if h.uid().unwrap_or(0) > 0o7777777 || h.gid().unwrap_or(0) > 0o7777777 {
            pax.push(pax_record(
                "uid",
                h.uid().unwrap_or(0).to_string().as_bytes(),
            ));
            pax.push(pax_record(
                "gid",
                h.gid().unwrap_or(0).to_string().as_bytes(),
            ));
        }
        if !pax.is_empty() {
            let records: Vec<u8> = pax.concat();
            let mut ph = Header::new_ustar();
            ph.set_entry_type(EntryType::XHeader);
            let pname = b"././@PaxHeader";
            ph.as_old_mut().name[..pname.len()].copy_from_slice(pname);
            ph.set_mode(0o644);
            ph.set_mtime(0);
            ph.set_size(records.len() as u64);
            ph.set_cksum();
            self.w.write_all(ph.as_bytes()).map_err(ctx())?;
            self.w.write_all(&records).map_err(ctx())?;
            self.pad(records.len() as u64).map_err(ctx())?;
        }
        h.set_cksum();
        self.w.write_all(h.as_bytes()).map_err(ctx())?;
        if let Some((file, size)) = data {
            let copied = io::copy(&mut file.take(size), &mut self.w).map_err(ctx())?;
            if copied != size {
                return Err(ctx()(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while diffing",
                )));
            }
            self.pad(size).map_err(ctx())?;
        }
        Ok(())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let pad = ((512 - size % 512) % 512) as usize;
        self.w.write_all(&[0u8; 512][..pad])
    }
}

//! Test helpers: a tar builder that writes any name (hostile ones included), compressors, and a
//! tree snapshot to compare directories with.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Records a skip (berth-conformance's `skip`) and returns from the test unless running as root.
#[macro_export]
macro_rules! require_root {
    ($why:expr) => {
        if !common::is_root() {
            berth_conformance::skip::record(&format!("{} (needs root)", $why));
            return;
        }
    };
}

/// One tar entry to write.
#[derive(Debug, Clone)]
pub struct E {
    pub kind: EntryType,
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub data: Vec<u8>,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub dev: (u32, u32),
    /// Declared size, when it should differ from `data.len()`.
    pub size: Option<u64>,
}

impl E {
    fn new(kind: EntryType, name: &str) -> E {
        E {
            kind,
            name: name.as_bytes().to_vec(),
            link: Vec::new(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            data: Vec::new(),
            xattrs: Vec::new(),
            dev: (0, 0),
            size: None,
        }
    }
    pub fn file(name: &str, data: &[u8]) -> E {
        E {
            data: data.to_vec(),
            ..E::new(EntryType::Regular, name)
        }
    }
    pub fn dir(name: &str) -> E {
        E {
            mode: 0o755,
            ..E::new(EntryType::Directory, name)
        }
    }
    pub fn symlink(name: &str, target: &str) -> E {
        E {
            link: target.as_bytes().to_vec(),
            mode: 0o777,
            ..E::new(EntryType::Symlink, name)
        }
    }
    pub fn hardlink(name: &str, target: &str) -> E {
        E {
            link: target.as_bytes().to_vec(),
            ..E::new(EntryType::Link, name)
        }
    }
    pub fn fifo(name: &str) -> E {
        E::new(EntryType::Fifo, name)
    }
    pub fn chardev(name: &str, major: u32, minor: u32) -> E {
        E {
            dev: (major, minor),
            ..E::new(EntryType::Char, name)
        }
    }
    pub fn blockdev(name: &str, major: u32, minor: u32) -> E {
        E {
            dev: (major, minor),
            ..E::new(EntryType::Block, name)
        }
    }
    pub fn whiteout(name: &str) -> E {
        E::file(name, b"")
    }
    pub fn mode(mut self, mode: u32) -> E {
        self.mode = mode;
        self
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> E {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn mtime(mut self, mtime: u64) -> E {
        self.mtime = mtime;
        self
    }
    pub fn xattr(mut self, key: &str, value: &[u8]) -> E {
        self.xattrs.push((key.to_string(), value.to_vec()));
        self
    }
    pub fn declared_size(mut self, size: u64) -> E {
        self.size = Some(size);
        self
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while body + len.to_string().len() != len {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn pad(out: &mut Vec<u8>) {
    let pad = (512 - out.len() % 512) % 512;
    out.resize(out.len() + pad, 0);
}

/// Appends one entry (with a PAX header for long names and xattrs) to `out`.
pub fn append(out: &mut Vec<u8>, e: &E) {
    let mut pax = Vec::new();
    for (k, v) in &e.xattrs {
        pax.extend(pax_record(&format!("SCHILY.xattr.{k}"), v));
    }
    let mut h = Header::new_ustar();
    {
        let old = h.as_old_mut();
        if e.name.len() <= 100 {
            old.name[..e.name.len()].copy_from_slice(&e.name);
        } else {
            pax.extend(pax_record("path", &e.name));
        }
        if e.link.len() <= 100 {
            old.linkname[..e.link.len()].copy_from_slice(&e.link);
        } else {
            pax.extend(pax_record("linkpath", &e.link));
        }
    }
    if !pax.is_empty() {
        let mut ph = Header::new_ustar();
        ph.set_entry_type(EntryType::XHeader);
        ph.set_size(pax.len() as u64);
        ph.set_mode(0o644);
        ph.set_cksum();
        out.extend_from_slice(ph.as_bytes());
        out.extend_from_slice(&pax);
        pad(out);
    }
    h.set_entry_type(e.kind);
    h.set_mode(e.mode);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mtime(e.mtime);
    h.set_size(e.size.unwrap_or(e.data.len() as u64));
    if matches!(e.kind, EntryType::Char | EntryType::Block) {
        h.set_device_major(e.dev.0).unwrap();
        h.set_device_minor(e.dev.1).unwrap();
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&e.data);
    pad(out);
}

/// A whole tar: the entries and the end-of-archive blocks.
pub fn layer(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        append(&mut out, e);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

/// What a test cares about of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Option<i64>,
    pub content: Vec<u8>,
    pub rdev: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// Other paths sharing the inode (regular files only), sorted.
    pub links: Vec<PathBuf>,
}

pub fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let mut list = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(p, &mut list).unwrap_or(0);
    let mut out = Vec::new();
    for name in list[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8(name.to_vec()).unwrap();
        if name == "security.selinux" {
            continue;
        }
        let mut v = vec![0u8; 4096];
        if let Ok(len) = rustix::fs::lgetxattr(p, name.as_str(), &mut v) {
            v.truncate(len);
            out.push((name, v));
        }
    }
    out.sort();
    out
}

/// Every path under `root` (not `root` itself) with its [`Node`]; directory mtimes included only
/// when `dir_mtimes`.
pub fn snapshot(root: &Path, dir_mtimes: bool) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    walk(root, Path::new(""), dir_mtimes, &mut out, &mut inodes);
    for paths in inodes.values() {
        if paths.len() > 1 {
            for p in paths {
                let others = paths.iter().filter(|q| *q != p).cloned().collect();
                out.get_mut(p).unwrap().links = others;
            }
        }
    }
    out
}

fn walk(
    root: &Path,
    rel: &Path,
    dir_mtimes: bool,
    out: &mut BTreeMap<PathBuf, Node>,
    inodes: &mut BTreeMap<(u64, u64), Vec<PathBuf>>,
) {
    let mut names: Vec<_> = std::fs::read_dir(root.join(rel))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let p = root.join(&rel);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let (kind, content) = if ft.is_dir() {
            ("dir", Vec::new())
        } else if ft.is_symlink() {
            (
                "symlink",
                std::fs::read_link(&p)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            )
        } else if ft.is_file() {
            inodes
                .entry((m.dev(), m.ino()))
                .or_default()
                .push(rel.clone());
            ("file", std::fs::read(&p).unwrap())
        } else if ft.is_char_device() {
            ("char", Vec::new())
        } else if ft.is_block_device() {
            ("block", Vec::new())
        } else if ft.is_fifo() {
            ("fifo", Vec::new())
        } else {
            ("socket", Vec::new())
        };
        let node = Node {
            kind,
            mode: if ft.is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            },
            uid: m.uid(),
            gid: m.gid(),
            mtime: if ft.is_dir() && !dir_mtimes {
                None
            } else {
                Some(m.mtime())
            },
            content,
            rdev: m.rdev(),
            xattrs: xattrs(&p),
            links: Vec::new(),
        };
        out.insert(rel.clone(), node);
        if ft.is_dir() {
            walk(root, &rel, dir_mtimes, out, inodes);
        }
    }
}

/// Sets mtime (and atime) of `p` without following a symlink.
pub fn set_mtime(p: &Path, secs: i64) {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &ts,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

pub fn set_xattr(p: &Path, key: &str, value: &[u8]) {
    rustix::fs::lsetxattr(p, key, value, rustix::fs::XattrFlags::empty()).unwrap();
}

/// Every path under `dir`, relative, sorted (to check nothing appeared outside a root).
pub fn listing(dir: &Path) -> Vec<PathBuf> {
    snapshot(dir, false).into_keys().collect()
}

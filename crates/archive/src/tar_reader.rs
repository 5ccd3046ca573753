//! A bounded, streaming tar entry reader.
//!
//! Headers and PAX records are parsed by the `tar` crate ([`tar::Header`],
//! [`tar::PaxExtensions`]); the framing (which block is a header, how far an entry's data runs,
//! and how big an extension header may be) is done here, after Go's `archive/tar`, which is what
//! containerd applies layers with:
//!
//! - extension headers (PAX `x`/`g`, GNU `L`/`K`) are held in memory only up to 1 MiB, like Go's
//!   `maxSpecialFileSize`; the `tar` crate's own iterator would read them whole, which a hostile
//!   layer could use to exhaust memory;
//! - a PAX `size` record overrides the header's size field (files over 8 GiB);
//! - header-only types (links, devices, fifos, directories) carry no data whatever their size
//!   field says, so Go and berth agree on where the next header starts;
//! - the header checksum is accepted in its unsigned or signed form.

use std::io::{self, Read};

use tar::{EntryType, Header, PaxExtensions};

use crate::error::ArchiveError;

const BLOCK: u64 = 512;

/// The most bytes of one extension header (PAX records, a GNU long name) held in memory.
pub(crate) const MAX_SPECIAL_SIZE: u64 = 1 << 20;

/// What an entry is, after Go's normalisation (`'\0'` and `'7'` are regular files; a `'\0'` entry
/// whose name ends in `/` is a directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Regular,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

/// A point in time as a tar header or PAX record gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Timestamp {
    pub(crate) secs: i64,
    pub(crate) nanos: u32,
}

/// One member of the archive, with PAX and GNU extensions folded in.
#[derive(Debug, Clone)]
pub(crate) struct TarEntry {
    pub(crate) kind: Kind,
    pub(crate) path: Vec<u8>,
    pub(crate) link: Vec<u8>,
    pub(crate) size: u64,
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) mtime: Timestamp,
    pub(crate) atime: Option<Timestamp>,
    pub(crate) dev_major: u32,
    pub(crate) dev_minor: u32,
    /// `SCHILY.xattr.<name>` records, in archive order.
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Reads [`TarEntry`]s one after another; the current entry's data is read with
/// [`TarReader::data`], and whatever is left of it is skipped by the next call to
/// [`TarReader::next_entry`].
pub(crate) struct TarReader<R> {
    inner: R,
    /// Data bytes of the current entry not yet read.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    finished: bool,
}

fn malformed(reason: impl Into<String>) -> ArchiveError {
    ArchiveError::Malformed {
        reason: reason.into(),
    }
}

fn read_err(source: io::Error) -> ArchiveError {
    ArchiveError::Read { source }
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

impl<R: Read> TarReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        TarReader {
            inner,
            remaining: 0,
            padding: 0,
            finished: false,
        }
    }

    /// A reader of the current entry's data.
    pub(crate) fn data(&mut self) -> DataReader<'_, R> {
        DataReader { tar: self }
    }

    fn skip(&mut self, n: u64) -> Result<(), ArchiveError> {
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink()).map_err(read_err)?;
        if copied != n {
            return Err(malformed("truncated entry data"));
        }
        Ok(())
    }

    /// Fills `block`; `Ok(false)` at a clean end of stream.
    fn read_block(&mut self, block: &mut [u8; BLOCK as usize]) -> Result<bool, ArchiveError> {
        let mut got = 0;
        while got < block.len() {
            match self.inner.read(&mut block[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(malformed("truncated header block")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_err(e)),
            }
        }
        Ok(true)
    }

    fn read_special(&mut self, size: u64, what: &str) -> Result<Vec<u8>, ArchiveError> {
        if size > MAX_SPECIAL_SIZE {
            return Err(malformed(format!(
                "{what} of {size} bytes exceeds {MAX_SPECIAL_SIZE} bytes"
            )));
        }
        let mut data = Vec::with_capacity(size as usize);
        (&mut self.inner)
            .take(size)
            .read_to_end(&mut data)
            .map_err(read_err)?;
        if data.len() as u64 != size {
            return Err(malformed(format!("truncated {what}")));
        }
        self.skip(padding(size))?;
        Ok(data)
    }

    /// The next entry, or `None` at the end-of-archive marker or a clean end of stream.
    pub(crate) fn next_entry(&mut self) -> Result<Option<TarEntry>, ArchiveError> {
        if self.finished {
            return Ok(None);
        }
        let rest = self.remaining + self.padding;
        self.remaining = 0;
        self.padding = 0;
        self.skip(rest)?;

        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Option<Vec<u8>> = None;
        let mut block = [0u8; BLOCK as usize];
        loop {
            let pending = long_name.is_some() || long_link.is_some() || pax.is_some();
            if !self.read_block(&mut block)? || block.iter().all(|b| *b == 0) {
                self.finished = true;
                if pending {
                    return Err(malformed("extension header describes no entry"));
                }
                return Ok(None);
            }
            let header = Header::from_byte_slice(&block);
            check_checksum(header)?;
            let ty = header.entry_type();
            let size = header
                .entry_size()
                .map_err(|e| malformed(format!("bad size field: {e}")))?;
            match ty {
                EntryType::GNULongName => {
                    if long_name.is_some() {
                        return Err(malformed("two GNU long names for one entry"));
                    }
                    long_name = Some(trim_nul(self.read_special(size, "GNU long name")?));
                }
                EntryType::GNULongLink => {
                    if long_link.is_some() {
                        return Err(malformed("two GNU long link names for one entry"));
                    }
                    long_link = Some(trim_nul(self.read_special(size, "GNU long link name")?));
                }
                EntryType::XHeader => {
                    if pax.is_some() {
                        return Err(malformed("two PAX headers for one entry"));
                    }
                    pax = Some(self.read_special(size, "PAX header")?);
                }
                EntryType::XGlobalHeader => {
                    // Read (bounded) and ignored, as containerd does.
                    self.read_special(size, "PAX global header")?;
                }
                _ => {
                    let entry = self.build(header, long_name, long_link, pax.as_deref())?;
                    self.remaining = entry.size;
                    self.padding = padding(entry.size);
                    return Ok(Some(entry));
                }
            }
        }
    }

    fn build(
        &self,
        header: &Header,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
        pax: Option<&[u8]>,
    ) -> Result<TarEntry, ArchiveError> {
        let mut path = long_name.unwrap_or_else(|| header.path_bytes().into_owned());
        let mut link = long_link.unwrap_or_else(|| {
            header
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default()
        });
        let old = header.as_old();
        let mut size = numeric(&old.size, header.entry_size(), "size")?;
        let mut uid = numeric(&old.uid, header.uid(), "uid")?;
        let mut gid = numeric(&old.gid, header.gid(), "gid")?;
        let mode = numeric(&old.mode, header.mode().map(u64::from), "mode")? as u32;
        let mtime_secs = numeric(&old.mtime, header.mtime(), "mtime")?;
        let mut mtime = Timestamp {
            secs: i64::try_from(mtime_secs).unwrap_or(i64::MAX),
            nanos: 0,
        };
        let mut atime = None;
        let mut xattrs = Vec::new();
        let mut sparse = false;
        if let Some(pax) = pax {
            for rec in PaxExtensions::new(pax) {
                let rec = rec.map_err(|e| malformed(format!("bad PAX record: {e}")))?;
                let key = rec.key_bytes();
                let value = rec.value_bytes();
                match key {
                    b"path" => path = value.to_vec(),
                    b"linkpath" => link = value.to_vec(),
                    b"size" => size = pax_u64(value, "size")?,
                    b"uid" => uid = pax_u64(value, "uid")?,
                    b"gid" => gid = pax_u64(value, "gid")?,
                    b"mtime" => mtime = pax_time(value, "mtime")?,
                    b"atime" => atime = Some(pax_time(value, "atime")?),
                    _ if key.starts_with(b"SCHILY.xattr.") => {
                        xattrs.push((key[b"SCHILY.xattr.".len()..].to_vec(), value.to_vec()))
                    }
                    _ if key.starts_with(b"GNU.sparse.") => sparse = true,
                    _ => {}
                }
            }
        }
        let name = || String::from_utf8_lossy(&path).into_owned();
        if sparse {
            return Err(ArchiveError::UnsupportedEntry {
                name: name(),
                kind: "PAX sparse file".into(),
            });
        }
        let kind = match header.entry_type() {
            EntryType::Regular | EntryType::Continuous => {
                if header.as_old().linkflag[0] == b'\0' && path.ends_with(b"/") {
                    Kind::Dir
                } else {
                    Kind::Regular
                }
            }
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::Hardlink,
            EntryType::Char => Kind::Char,
            EntryType::Block => Kind::Block,
            EntryType::Fifo => Kind::Fifo,
            EntryType::GNUSparse => {
                return Err(ArchiveError::UnsupportedEntry {
                    name: name(),
                    kind: "GNU sparse file".into(),
                })
            }
            other => {
                return Err(ArchiveError::UnsupportedEntry {
                    name: name(),
                    kind: format!("{:?}", other.as_byte() as char),
                })
            }
        };
        if kind != Kind::Regular {
            // Header-only types carry no data, whatever the size field says (as in Go).
            size = 0;
        }
        let (dev_major, dev_minor) = match (kind, header.as_ustar(), header.as_gnu()) {
            (Kind::Char | Kind::Block, Some(h), _) => (
                device(&h.dev_major, header.device_major())?,
                device(&h.dev_minor, header.device_minor())?,
            ),
            (Kind::Char | Kind::Block, None, Some(h)) => (
                device(&h.dev_major, header.device_major())?,
                device(&h.dev_minor, header.device_minor())?,
            ),
            _ => (0, 0),
        };
        Ok(TarEntry {
            kind,
            path,
            link,
            size,
            mode,
            uid,
            gid,
            mtime,
            atime,
            dev_major,
            dev_minor,
            xattrs,
        })
    }
}

fn check_checksum(header: &Header) -> Result<(), ArchiveError> {
    let bytes = header.as_bytes();
    let stored = header
        .cksum()
        .map_err(|e| malformed(format!("bad checksum field: {e}")))?;
    let (mut unsigned, mut signed) = (0u32, 0i64);
    for (i, b) in bytes.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { *b };
        unsigned += u32::from(b);
        signed += i64::from(b as i8);
    }
    if stored == unsigned || i64::from(stored) == signed {
        Ok(())
    } else {
        Err(malformed("header checksum mismatch"))
    }
}

/// A numeric header field; empty (all NUL or space) reads as 0, as in Go.
fn numeric(raw: &[u8], parsed: io::Result<u64>, what: &str) -> Result<u64, ArchiveError> {
    if raw.iter().all(|b| *b == 0 || *b == b' ') {
        return Ok(0);
    }
    parsed.map_err(|e| malformed(format!("bad {what} field: {e}")))
}

fn device(raw: &[u8], parsed: io::Result<Option<u32>>) -> Result<u32, ArchiveError> {
    let v = numeric(
        raw,
        parsed.map(|v| u64::from(v.unwrap_or(0))),
        "device number",
    )?;
    u32::try_from(v).map_err(|_| malformed("device number out of range"))
}

fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

fn pax_u64(value: &[u8], what: &str) -> Result<u64, ArchiveError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed(format!("bad PAX {what} record")))
}

/// `secs[.fraction]`, possibly negative, as PAX writes times.
fn pax_time(value: &[u8], what: &str) -> Result<Timestamp, ArchiveError> {
    let bad = || malformed(format!("bad PAX {what} record"));
    let s = std::str::from_utf8(value).map_err(|_| bad())?;
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let negative = int.starts_with('-');
    let secs: i64 = int.parse().map_err(|_| bad())?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: u32 = digits.parse().map_err(|_| bad())?;
    if negative && nanos > 0 {
        Ok(Timestamp {
            secs: secs - 1,
            nanos: 1_000_000_000 - nanos,
        })
    } else {
        Ok(Timestamp { secs, nanos })
    }
}

/// The current entry's data; ends after exactly the entry's size, and fails if the stream ends
/// first.
pub(crate) struct DataReader<'a, R> {
    tar: &'a mut TarReader<R>,
}

impl<R: Read> Read for DataReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tar.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.tar.remaining).unwrap_or(usize::MAX));
        let n = self.tar.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated entry data",
            ));
        }
        self.tar.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_parse() {
        assert_eq!(
            pax_time(b"1700000000.5", "mtime").unwrap(),
            Timestamp {
                secs: 1_700_000_000,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            pax_time(b"-1.25", "mtime").unwrap(),
            Timestamp {
                secs: -2,
                nanos: 750_000_000
            }
        );
        assert!(pax_time(b"x", "mtime").is_err());
    }

    #[test]
    fn oversized_pax_header_is_refused_without_reading_it() {
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_size(1 << 40);
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend_from_slice(&[0u8; 4096]);
        let err = TarReader::new(&data[..]).next_entry().unwrap_err();
        assert!(err.to_string().contains("PAX header of"), "{err}");
    }
}

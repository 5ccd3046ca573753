//! Readers and writers that count and sha256 the bytes passing through them.

use std::io::{self, Read, Write};

use berth_core::{Digest, DigestAlgorithm, Digester};

/// Counts and hashes what is read through it, and refuses to yield more than `limit` bytes: the
/// guard against decompression bombs sits on the decompressed side of the pipeline.
pub(crate) struct HashingReader<R> {
    inner: R,
    digester: Digester,
    count: u64,
    limit: u64,
    exceeded: bool,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R, limit: u64) -> Self {
        HashingReader {
            inner,
            digester: DigestAlgorithm::Sha256.digester(),
            count: 0,
            limit,
            exceeded: false,
        }
    }

    /// True once a read would have passed the limit.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// Reads and hashes everything left, to the end of the stream.
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }

    /// The digest and size of everything read.
    pub(crate) fn finish(self) -> (Digest, u64) {
        (self.digester.finish(), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.exceeded {
            return Err(limit_error(self.limit));
        }
        // Ask for at most one byte past the limit, so a bomb is caught without reading further.
        let room = self.limit - self.count;
        let want = buf
            .len()
            .min(usize::try_from(room.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > room {
            self.exceeded = true;
            return Err(limit_error(self.limit));
        }
        self.digester.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

fn limit_error(limit: u64) -> io::Error {
    io::Error::other(format!(
        "layer exceeds the limit of {limit} uncompressed bytes"
    ))
}

/// Counts and hashes what is written through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    digester: Digester,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            digester: DigestAlgorithm::Sha256.digester(),
            count: 0,
        }
    }

    /// The writer, the digest and the size of everything written.
    pub(crate) fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.digester.finish(), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_one_byte_past_the_limit() {
        let data = vec![7u8; 100];
        let mut r = HashingReader::new(&data[..], 99);
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert!(r.exceeded(), "{err}");

        let mut r = HashingReader::new(&data[..], 100);
        r.drain().unwrap();
        let (d, n) = r.finish();
        assert_eq!(n, 100);
        assert_eq!(d, Digest::sha256_of(&data));
    }
}

//! Layer compression: which one a layer uses (by media type or by its magic bytes), and the
//! streaming decoders and encoders for each.

use std::fmt;
use std::io::{self, Read, Write};

use crate::error::ArchiveError;

/// OCI layer, uncompressed tar.
pub const MEDIA_TYPE_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip-compressed tar.
pub const MEDIA_TYPE_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd-compressed tar.
pub const MEDIA_TYPE_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema 2 layer (always gzip).
pub const MEDIA_TYPE_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker schema 2 "foreign" (non-distributable) layer (always gzip).
pub const MEDIA_TYPE_DOCKER_FOREIGN_LAYER: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// How a layer's tar stream is compressed.
///
/// The *diff_id* of a layer is the digest of its uncompressed tar; the layer's *digest* is the
/// digest of the bytes as stored (compressed or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// A plain tar stream.
    #[default]
    Uncompressed,
    /// gzip (RFC 1952); multi-member streams are decoded whole, as Go's reader does.
    Gzip,
    /// Zstandard; multi-frame streams are decoded whole.
    Zstd,
}

impl Compression {
    /// The compression a layer media type declares: OCI (`…layer.v1.tar`, `+gzip`, `+zstd`, and
    /// their `nondistributable` variants) and Docker schema 2 (`…rootfs.diff.tar.gzip`, its
    /// `foreign` variant, and the uncompressed `…rootfs.diff.tar`).
    pub fn from_media_type(media_type: &str) -> Result<Compression, ArchiveError> {
        match media_type {
            MEDIA_TYPE_OCI_LAYER
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::Uncompressed),
            MEDIA_TYPE_OCI_LAYER_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | MEDIA_TYPE_DOCKER_LAYER
            | MEDIA_TYPE_DOCKER_FOREIGN_LAYER => Ok(Compression::Gzip),
            MEDIA_TYPE_OCI_LAYER_ZSTD
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Ok(Compression::Zstd)
            }
            other => Err(ArchiveError::UnsupportedMediaType(other.to_string())),
        }
    }

    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::Uncompressed => MEDIA_TYPE_OCI_LAYER,
            Compression::Gzip => MEDIA_TYPE_OCI_LAYER_GZIP,
            Compression::Zstd => MEDIA_TYPE_OCI_LAYER_ZSTD,
        }
    }

    /// The compression whose magic bytes begin `prefix`, as containerd's `DetectCompression`
    /// does; anything unrecognised is taken as a plain tar. bzip2 and xz are recognised only to be
    /// refused with a clear error.
    pub fn detect(prefix: &[u8]) -> Result<Compression, ArchiveError> {
        if prefix.starts_with(&[0x1f, 0x8b, 0x08]) {
            Ok(Compression::Gzip)
        } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Ok(Compression::Zstd)
        } else if prefix.starts_with(b"BZh") {
            Err(ArchiveError::UnsupportedCompression("bzip2"))
        } else if prefix.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Err(ArchiveError::UnsupportedCompression("xz"))
        } else {
            Ok(Compression::Uncompressed)
        }
    }

    /// A short name: `uncompressed`, `gzip` or `zstd`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Uncompressed => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// A streaming decoder of `reader`.
    pub(crate) fn decoder<'a, R: Read + 'a>(
        self,
        reader: R,
    ) -> Result<Box<dyn Read + 'a>, ArchiveError> {
        Ok(match self {
            Compression::Uncompressed => Box::new(reader),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(reader)
                    .map_err(|source| ArchiveError::Read { source })?,
            ),
        })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stream whose first bytes were peeked: those bytes again, then the rest.
pub(crate) type Peeked<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Reads up to `n` bytes from `reader` without losing them: returns the bytes read and a reader
/// that yields them again followed by the rest of the stream.
pub(crate) fn peek<R: Read>(mut reader: R, n: usize) -> io::Result<(Vec<u8>, Peeked<R>)> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    let prefix = buf.clone();
    Ok((prefix, io::Cursor::new(buf).chain(reader)))
}

/// A compressing writer for the differ; `finish` flushes the compressor's trailer.
pub(crate) enum Encoder<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(compression: Compression, w: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::Uncompressed => Encoder::Plain(w),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(w, 3)?),
        })
    }

    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_map_to_compressions() {
        for (mt, c) in [
            (MEDIA_TYPE_OCI_LAYER, Compression::Uncompressed),
            (MEDIA_TYPE_OCI_LAYER_GZIP, Compression::Gzip),
            (MEDIA_TYPE_OCI_LAYER_ZSTD, Compression::Zstd),
            (MEDIA_TYPE_DOCKER_LAYER, Compression::Gzip),
            (MEDIA_TYPE_DOCKER_FOREIGN_LAYER, Compression::Gzip),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Compression::Zstd,
            ),
        ] {
            assert_eq!(Compression::from_media_type(mt).unwrap(), c, "{mt}");
        }
        let err = Compression::from_media_type("application/json").unwrap_err();
        assert_eq!(err.kind(), berth_core::ErrorKind::NotImplemented);
    }

    #[test]
    fn magic_bytes_are_detected() {
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 0x08, 0]).unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]).unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(b"etc/\0\0").unwrap(),
            Compression::Uncompressed
        );
        assert_eq!(Compression::detect(b"").unwrap(), Compression::Uncompressed);
        assert!(Compression::detect(b"BZh91AY").is_err());
    }
}

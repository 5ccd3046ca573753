use berth_core::{Digest, ErrorKind};

/// Failures of applying a layer or writing a diff.
///
/// The hostile-layer variants ([`ArchiveError::AbsoluteName`], [`ArchiveError::PathEscape`],
/// [`ArchiveError::SymlinkEscape`], [`ArchiveError::InvalidWhiteout`]) name the offending tar entry,
/// so a rejected layer says exactly which entry tried what.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The entry's name starts with `/`. Layers are relative to the snapshot root; berth rejects
    /// absolute names instead of silently re-rooting them.
    #[error("layer entry {name:?}: absolute name rejected: invalid argument")]
    AbsoluteName { name: String },
    /// A `..` in the entry's name (or in a hardlink's target) climbs above the root.
    #[error("layer entry {name:?}: {what} escapes the root through '..': invalid argument")]
    PathEscape { name: String, what: &'static str },
    /// Resolving the entry's parent directory (or a hardlink's target) goes through a symlink
    /// that points outside the root, e.g. one planted by an earlier entry.
    #[error("layer entry {name:?}: {what} resolves outside the root through a symlink: invalid argument")]
    SymlinkEscape { name: String, what: &'static str },
    /// A whiteout whose target is empty, `.` or `..`.
    #[error("layer entry {name:?}: invalid whiteout: invalid argument")]
    InvalidWhiteout { name: String },
    /// A name that cannot be a path: empty, containing NUL, or longer than the limit.
    #[error("layer entry {name:?}: {reason}: invalid argument")]
    InvalidName { name: String, reason: String },
    /// A hardlink whose target is the entry itself, a directory, or missing.
    #[error("layer entry {name:?}: invalid hardlink to {target:?}: {reason}: invalid argument")]
    InvalidHardlink {
        name: String,
        target: String,
        reason: String,
    },
    /// The tar stream is not a well-formed archive.
    #[error("malformed layer: {reason}: invalid argument")]
    Malformed { reason: String },
    /// An entry type berth does not apply (GNU sparse files, volume headers, unknown types).
    #[error("layer entry {name:?}: unsupported entry type {kind}: not implemented")]
    UnsupportedEntry { name: String, kind: String },
    /// The uncompressed stream (or the bytes it would write) is larger than the limit: a
    /// decompression bomb, or a limit set too low.
    #[error("layer exceeds the limit of {limit} uncompressed bytes: out of range")]
    TooLarge { limit: u64 },
    /// The layer has more entries than the limit.
    #[error("layer exceeds the limit of {limit} entries: out of range")]
    TooManyEntries { limit: u64 },
    /// The sha256 of the uncompressed stream is not the diff_id the caller expected.
    #[error("unexpected diff_id {actual}, expected {expected}: failed precondition")]
    DiffIdMismatch { actual: Digest, expected: Digest },
    /// A media type that names no layer format berth knows.
    #[error("media type {0:?}: unsupported layer media type: not implemented")]
    UnsupportedMediaType(String),
    /// A compression berth does not decode (bzip2, xz).
    #[error("layer compressed with {0}: unsupported compression: not implemented")]
    UnsupportedCompression(&'static str),
    /// The caller said the layer is compressed one way; its magic bytes say another.
    #[error("layer declared {declared} but its bytes are {detected}: invalid argument")]
    CompressionMismatch {
        declared: &'static str,
        detected: &'static str,
    },
    /// Reading the layer stream failed (including corrupt gzip or zstd data).
    #[error("reading layer: {source}")]
    Read {
        #[source]
        source: std::io::Error,
    },
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ArchiveError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ArchiveError {
        let context = context.into();
        move |source| ArchiveError::Io { context, source }
    }

    /// The errdefs class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ArchiveError::AbsoluteName { .. }
            | ArchiveError::PathEscape { .. }
            | ArchiveError::SymlinkEscape { .. }
            | ArchiveError::InvalidWhiteout { .. }
            | ArchiveError::InvalidName { .. }
            | ArchiveError::InvalidHardlink { .. }
            | ArchiveError::Malformed { .. }
            | ArchiveError::CompressionMismatch { .. } => ErrorKind::InvalidArgument,
            ArchiveError::UnsupportedEntry { .. }
            | ArchiveError::UnsupportedMediaType(_)
            | ArchiveError::UnsupportedCompression(_) => ErrorKind::NotImplemented,
            ArchiveError::TooLarge { .. } | ArchiveError::TooManyEntries { .. } => {
                ErrorKind::OutOfRange
            }
            ArchiveError::DiffIdMismatch { .. } => ErrorKind::FailedPrecondition,
            ArchiveError::Read { source } => match source.kind() {
                std::io::ErrorKind::InvalidData
                | std::io::ErrorKind::InvalidInput
                | std::io::ErrorKind::UnexpectedEof => ErrorKind::InvalidArgument,
                _ => ErrorKind::Internal,
            },
            // A name the filesystem refuses as too long is invalid input, whatever the limit.
            ArchiveError::Io { source, .. }
                if source.raw_os_error() == Some(rustix::io::Errno::NAMETOOLONG.raw_os_error()) =>
            {
                ErrorKind::InvalidArgument
            }
            ArchiveError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                _ => ErrorKind::Internal,
            },
        }
    }
}

impl From<ArchiveError> for berth_core::Error {
    fn from(e: ArchiveError) -> Self {
        berth_core::Error::new(e.kind(), e.to_string())
    }
}

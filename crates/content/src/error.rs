use berth_core::{Digest, ErrorKind};

/// Failures of the local content store.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("content {0}: not found")]
    BlobNotFound(Digest),
    #[error("content {0}: already exists")]
    BlobExists(Digest),
    #[error("ref {0}: not found")]
    IngestNotFound(String),
    #[error("ref {0} locked by another writer: unavailable")]
    RefLocked(String),
    #[error("unexpected commit size {actual}, expected {expected}: failed precondition")]
    SizeMismatch { actual: i64, expected: i64 },
    #[error("unexpected commit digest {actual}, expected {expected}: failed precondition")]
    DigestMismatch { actual: Digest, expected: Digest },
    #[error("read at offset {offset} of content {digest} beyond its size {size}: out of range")]
    ReadOutOfRange {
        digest: Digest,
        offset: i64,
        size: i64,
    },
    #[error("ref must not be empty: invalid argument")]
    EmptyRef,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ContentError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContentError {
        let context = context.into();
        move |source| ContentError::Io { context, source }
    }

    /// The errdefs class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ContentError::BlobNotFound(_) | ContentError::IngestNotFound(_) => ErrorKind::NotFound,
            ContentError::BlobExists(_) => ErrorKind::AlreadyExists,
            ContentError::RefLocked(_) => ErrorKind::Unavailable,
            ContentError::SizeMismatch { .. } | ContentError::DigestMismatch { .. } => {
                ErrorKind::FailedPrecondition
            }
            ContentError::ReadOutOfRange { .. } => ErrorKind::OutOfRange,
            ContentError::EmptyRef => ErrorKind::InvalidArgument,
            ContentError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                _ => ErrorKind::Internal,
            },
        }
    }
}

impl From<ContentError> for berth_core::Error {
    fn from(e: ContentError) -> Self {
        // The message keeps containerd's shape; strip our trailing class words, the kind carries them.
        berth_core::Error::new(e.kind(), e.to_string())
    }
}

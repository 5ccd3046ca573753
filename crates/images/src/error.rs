use berth_core::{Digest, ErrorKind};

/// Failures of reading, resolving and unpacking images.
///
/// Messages name the blob or layer concerned and end with the errdefs class, as containerd's do
/// (`unexpected media type … for sha256:…: not implemented`).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A descriptor's media type is not one this crate reads in that position.
    #[error("unexpected media type {media_type} for {digest}: not implemented")]
    UnexpectedMediaType { media_type: String, digest: Digest },
    /// Docker's schema 1 manifests predate content addressing of layers; they are refused.
    #[error("manifest {0}: docker schema 1 manifests are not supported: not implemented")]
    Schema1(Digest),
    /// A manifest, index or config blob is not the JSON it should be.
    #[error("{what} {digest}: {reason}: invalid argument")]
    Malformed {
        what: &'static str,
        digest: Digest,
        reason: String,
    },
    /// A manifest, index or config is larger than a sane JSON document.
    #[error("{what} {digest}: size {size} exceeds the limit of {limit} bytes: invalid argument")]
    TooLarge {
        what: &'static str,
        digest: Digest,
        size: i64,
        limit: i64,
    },
    /// The bytes read do not have the digest or size of their descriptor.
    #[error("content {digest}: read {size} bytes with digest {actual}, expected {expected_size} bytes: data loss")]
    Corrupt {
        digest: Digest,
        actual: Digest,
        size: usize,
        expected_size: i64,
    },
    /// No manifest of an index is for the wanted platform.
    #[error("no match for platform {platform} in manifest {digest}: not found")]
    NoMatchingPlatform { platform: String, digest: Digest },
    /// Indexes nested deeper than any real image nests them (or a cycle).
    #[error("index {0}: indexes nested too deeply: invalid argument")]
    TooDeep(Digest),
    /// The config lists a different number of diff IDs than the manifest has layers.
    #[error("mismatched image rootfs and manifest layers: manifest {manifest} has {layers} layers, its config {diff_ids} diff ids: invalid argument")]
    LayerCount {
        manifest: Digest,
        layers: usize,
        diff_ids: usize,
    },
    /// Applying a layer produced a tar whose digest is not the diff ID the config promises.
    #[error("wrong diff id calculated on extraction of layer {layer}: got {applied}, config says {expected}: failed precondition")]
    WrongDiffId {
        layer: Digest,
        expected: Digest,
        applied: Digest,
    },
    /// A store, snapshotter or applier failed; the message carries its context.
    #[error(transparent)]
    Core(#[from] berth_core::Error),
}

impl ImageError {
    /// The errdefs class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::UnexpectedMediaType { .. } | ImageError::Schema1(_) => {
                ErrorKind::NotImplemented
            }
            ImageError::Malformed { .. }
            | ImageError::TooLarge { .. }
            | ImageError::TooDeep(_)
            | ImageError::LayerCount { .. } => ErrorKind::InvalidArgument,
            ImageError::Corrupt { .. } => ErrorKind::DataLoss,
            ImageError::NoMatchingPlatform { .. } => ErrorKind::NotFound,
            ImageError::WrongDiffId { .. } => ErrorKind::FailedPrecondition,
            ImageError::Core(e) => e.kind(),
        }
    }

    /// True when the error is of `kind`.
    pub fn is(&self, kind: ErrorKind) -> bool {
        self.kind() == kind
    }

    /// Wrap a store error with context (`unpack layer sha256:…: <error>`), keeping its kind.
    pub(crate) fn context(ctx: impl std::fmt::Display) -> impl FnOnce(berth_core::Error) -> Self {
        move |e| ImageError::Core(e.context(ctx))
    }
}

impl From<ImageError> for berth_core::Error {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::Core(e) => e,
            other => berth_core::Error::new(other.kind(), other.to_string()),
        }
    }
}

/// Result with an [`ImageError`].
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

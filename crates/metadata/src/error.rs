use berth_core::{Digest, ErrorKind};

/// Failures of the metadata layer.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("namespace {0:?}: not found")]
    NamespaceNotFound(String),
    #[error("namespace {0:?}: already exists")]
    NamespaceExists(String),
    #[error("namespace {name:?} must be empty, but it still has {left}: failed precondition")]
    NamespaceNotEmpty { name: String, left: String },
    #[error("content digest {0}: not found")]
    ContentNotFound(Digest),
    #[error("content {0}: already exists")]
    ContentExists(Digest),
    #[error("lease {0:?}: not found")]
    LeaseNotFound(String),
    #[error("lease {0:?}: already exists")]
    LeaseExists(String),
    #[error("image {0:?}: not found")]
    ImageNotFound(String),
    #[error("image {0:?}: already exists")]
    ImageExists(String),
    #[error("container {id:?} in namespace {namespace:?}: not found")]
    ContainerNotFound { id: String, namespace: String },
    #[error("container {0:?}: already exists")]
    ContainerExists(String),
    #[error("snapshot {0} does not exist: not found")]
    SnapshotNotFound(String),
    #[error("snapshot {0:?}: already exists")]
    SnapshotExists(String),
    #[error("metadata {0}")]
    Store(#[from] berth_redb::StoreError),
    #[error(transparent)]
    Content(#[from] berth_content::ContentError),
    #[error(transparent)]
    Core(#[from] berth_core::Error),
}

impl MetadataError {
    /// The errdefs class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MetadataError::NamespaceNotFound(_)
            | MetadataError::ContentNotFound(_)
            | MetadataError::LeaseNotFound(_)
            | MetadataError::ImageNotFound(_)
            | MetadataError::ContainerNotFound { .. }
            | MetadataError::SnapshotNotFound(_) => ErrorKind::NotFound,
            MetadataError::NamespaceExists(_)
            | MetadataError::ContentExists(_)
            | MetadataError::LeaseExists(_)
            | MetadataError::ImageExists(_)
            | MetadataError::ContainerExists(_)
            | MetadataError::SnapshotExists(_) => ErrorKind::AlreadyExists,
            MetadataError::NamespaceNotEmpty { .. } => ErrorKind::FailedPrecondition,
            MetadataError::Store(e) => e.kind(),
            MetadataError::Content(e) => e.kind(),
            MetadataError::Core(e) => e.kind(),
        }
    }
}

impl From<MetadataError> for berth_core::Error {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::Core(e) => e,
            other => berth_core::Error::new(other.kind(), other.to_string()),
        }
    }
}

berth_redb::from_redb!(MetadataError);

pub(crate) type Result<T, E = MetadataError> = std::result::Result<T, E>;

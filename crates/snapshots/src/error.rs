use berth_core::ErrorKind;

/// Failures of the snapshotters and their metastore.
///
/// Messages follow containerd's `snapshots/storage` where it has one.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {0}: not found")]
    NotFound(String),
    #[error("snapshot {0}: already exists")]
    AlreadyExists(String),
    #[error("committed snapshot {0}: already exists")]
    CommittedExists(String),
    #[error("missing parent {0:?} bucket: not found")]
    ParentNotFound(String),
    #[error("parent {0:?} is not committed snapshot: invalid argument")]
    ParentNotCommitted(String),
    #[error("cannot remove snapshot with child: failed precondition")]
    HasChildren(String),
    #[error("snapshot {0:?} is not active: failed precondition")]
    NotActive(String),
    #[error("requested snapshot {0} not active or view: failed precondition")]
    NotActiveOrView(String),
    #[error("cannot update {path:?} field on snapshot {name:?}: invalid argument")]
    BadFieldPath { path: String, name: String },
    #[error("snapshot key must not be empty: invalid argument")]
    EmptyKey,
    #[error("parent {0:?} changed while preparing its child, retry: aborted")]
    ParentChanged(String),
    #[error("overlayfs is not supported on {root}: {reason}")]
    OverlayUnsupported { root: String, reason: String },
    #[error("snapshot metadata {0}")]
    Store(#[from] berth_redb::StoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Core(#[from] berth_core::Error),
}

impl SnapshotError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SnapshotError {
        let context = context.into();
        move |source| SnapshotError::Io { context, source }
    }

    /// The errdefs class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SnapshotError::NotFound(_) | SnapshotError::ParentNotFound(_) => ErrorKind::NotFound,
            SnapshotError::AlreadyExists(_) | SnapshotError::CommittedExists(_) => {
                ErrorKind::AlreadyExists
            }
            SnapshotError::ParentNotCommitted(_)
            | SnapshotError::BadFieldPath { .. }
            | SnapshotError::EmptyKey => ErrorKind::InvalidArgument,
            SnapshotError::HasChildren(_)
            | SnapshotError::NotActive(_)
            | SnapshotError::NotActiveOrView(_) => ErrorKind::FailedPrecondition,
            SnapshotError::ParentChanged(_) => ErrorKind::Aborted,
            SnapshotError::OverlayUnsupported { .. } => ErrorKind::NotImplemented,
            SnapshotError::Store(e) => e.kind(),
            SnapshotError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                _ => ErrorKind::Internal,
            },
            SnapshotError::Core(e) => e.kind(),
        }
    }
}

impl From<SnapshotError> for berth_core::Error {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::Core(e) => e,
            other => berth_core::Error::new(other.kind(), other.to_string()),
        }
    }
}

berth_redb::from_redb!(SnapshotError);

pub(crate) type Result<T, E = SnapshotError> = std::result::Result<T, E>;

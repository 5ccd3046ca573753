use std::io;
use std::path::PathBuf;

use berth_core::ErrorKind;

/// Failures of mounting and unmounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount {src} ({kind}) on {}: {err}", target.display())]
    Mount {
        kind: String,
        src: String,
        target: PathBuf,
        #[source]
        err: io::Error,
    },
    #[error("remount {} read-only: {err}", target.display())]
    RemountReadOnly {
        target: PathBuf,
        #[source]
        err: io::Error,
    },
    #[error("change mount propagation of {}: {err}", target.display())]
    Propagation {
        target: PathBuf,
        #[source]
        err: io::Error,
    },
    #[error("unmount {}: {err}", target.display())]
    Unmount {
        target: PathBuf,
        #[source]
        err: io::Error,
    },
    #[error("mount options is too long ({len} bytes, the kernel takes less than {limit}): invalid argument")]
    OptionsTooLong { len: usize, limit: usize },
    #[error(
        "mount target {0:?} must be relative and stay inside the mount root: invalid argument"
    )]
    BadTarget(String),
    #[error("mount option {0:?}: not implemented")]
    Unsupported(String),
    #[error("{context}: {err}")]
    Io {
        context: String,
        #[source]
        err: io::Error,
    },
}

impl MountError {
    /// The errdefs class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            MountError::OptionsTooLong { .. } | MountError::BadTarget(_) => {
                ErrorKind::InvalidArgument
            }
            MountError::Unsupported(_) => ErrorKind::NotImplemented,
            MountError::Mount { err, .. }
            | MountError::RemountReadOnly { err, .. }
            | MountError::Propagation { err, .. }
            | MountError::Unmount { err, .. }
            | MountError::Io { err, .. } => errno_kind(err),
        }
    }

    /// The OS error underneath, if any (e.g. to tell `EPERM` from the rest).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            MountError::Mount { err, .. }
            | MountError::RemountReadOnly { err, .. }
            | MountError::Propagation { err, .. }
            | MountError::Unmount { err, .. }
            | MountError::Io { err, .. } => err.raw_os_error(),
            _ => None,
        }
    }
}

fn errno_kind(err: &io::Error) -> ErrorKind {
    match err.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
        io::ErrorKind::ResourceBusy => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

impl From<MountError> for berth_core::Error {
    fn from(e: MountError) -> Self {
        berth_core::Error::new(e.kind(), e.to_string())
    }
}

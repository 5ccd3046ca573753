//! The shim's errors, their errdefs class, and how they cross the ttrpc edge.

use std::io;
use std::path::PathBuf;

use berth_core::ErrorKind;
use berth_mount::MountError;
use ttrpc::Code;

/// Failures of the shim's task service and of its `start`/`delete` commands.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// A process (the task, or an exec by its id) that the shim does not know, or that is gone.
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0}: already exists")]
    AlreadyExists(String),
    #[error("{0}: invalid argument")]
    InvalidArgument(String),
    /// The process is not in a state where the request makes sense (e.g. delete while running).
    #[error("{0}: failed precondition")]
    FailedPrecondition(String),
    #[error("{0}: not implemented")]
    NotImplemented(String),
    /// The OCI runtime (runc, crun) refused or failed; `message` is its own error when it gave one.
    #[error("{action} failed: {message}")]
    Runtime { action: String, message: String },
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("{context}: {err}")]
    Io {
        context: String,
        #[source]
        err: io::Error,
    },
    #[error("{}: {message}", path.display())]
    BadFile { path: PathBuf, message: String },
}

impl ShimError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, err: io::Error) -> ShimError {
        ShimError::Io {
            context: context.into(),
            err,
        }
    }

    /// The errdefs class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ShimError::NotFound(_) => ErrorKind::NotFound,
            ShimError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            ShimError::InvalidArgument(_) | ShimError::BadFile { .. } => ErrorKind::InvalidArgument,
            ShimError::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            ShimError::NotImplemented(_) => ErrorKind::NotImplemented,
            ShimError::Runtime { .. } => ErrorKind::Internal,
            ShimError::Mount(e) => e.kind(),
            ShimError::Io { err, .. } => match err.kind() {
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
                _ => ErrorKind::Internal,
            },
        }
    }
}

impl From<ShimError> for berth_core::Error {
    fn from(e: ShimError) -> Self {
        berth_core::Error::new(e.kind(), e.to_string())
    }
}

/// The ttrpc status code for an errdefs class, as containerd's `errdefs.ToGRPC`: containerd turns
/// the code back into the class (`errdefs.FromGRPC`). Errors without a class (runtime failures,
/// I/O) are `Unknown` there, as in containerd's own shim.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NOT_FOUND,
        ErrorKind::AlreadyExists => Code::ALREADY_EXISTS,
        ErrorKind::InvalidArgument => Code::INVALID_ARGUMENT,
        ErrorKind::FailedPrecondition => Code::FAILED_PRECONDITION,
        ErrorKind::Unavailable => Code::UNAVAILABLE,
        ErrorKind::OutOfRange => Code::OUT_OF_RANGE,
        ErrorKind::Aborted => Code::ABORTED,
        ErrorKind::NotImplemented => Code::UNIMPLEMENTED,
        ErrorKind::Canceled => Code::CANCELLED,
        ErrorKind::DataLoss => Code::DATA_LOSS,
        ErrorKind::PermissionDenied => Code::PERMISSION_DENIED,
        ErrorKind::Internal => Code::UNKNOWN,
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(code(e.kind()), e.to_string()))
    }
}

/// Result with a [`ShimError`].
pub type Result<T, E = ShimError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_reach_containerd_as_grpc_codes() {
        let e = ShimError::NotFound("exec x".into());
        assert_eq!(e.to_string(), "exec x: not found");
        match ttrpc::Error::from(e) {
            ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.code(), Code::NOT_FOUND);
                assert_eq!(s.message(), "exec x: not found");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(code(ErrorKind::NotImplemented), Code::UNIMPLEMENTED);
    }
}

//! The one mapping from berth errors to gRPC statuses (containerd's `errdefs.ToGRPC`).

use berth_core::{Error, ErrorKind};
use tonic::{Code, Status};

/// The gRPC code containerd uses for an error class.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::OutOfRange => Code::OutOfRange,
        ErrorKind::Aborted => Code::Aborted,
        ErrorKind::NotImplemented => Code::Unimplemented,
        ErrorKind::Canceled => Code::Cancelled,
        ErrorKind::DataLoss => Code::DataLoss,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Internal => Code::Internal,
    }
}

/// Turn a berth error into the status a containerd client expects.
pub fn to_status(e: impl Into<Error>) -> Status {
    let e = e.into();
    if e.kind() == ErrorKind::Internal {
        tracing::error!(error = %e, "internal error");
    }
    Status::new(code(e.kind()), e.message().to_string())
}

/// Shorthand for service results.
pub type GrpcResult<T> = Result<tonic::Response<T>, Status>;

/// Extension to map any berth result into a gRPC one.
pub trait IntoStatus<T> {
    /// Map the error with [`to_status`].
    fn grpc(self) -> Result<T, Status>;
}

impl<T, E: Into<Error>> IntoStatus<T> for Result<T, E> {
    fn grpc(self) -> Result<T, Status> {
        self.map_err(to_status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_containerd_codes() {
        let s = to_status(Error::not_found("content digest sha256:x"));
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "content digest sha256:x: not found");
        assert_eq!(
            code(ErrorKind::FailedPrecondition),
            Code::FailedPrecondition
        );
        assert_eq!(code(ErrorKind::NotImplemented), Code::Unimplemented);
    }
}

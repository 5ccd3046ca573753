use berth_core::ErrorKind;

/// Failures of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime name is neither `<prefix>.<name>.<version>` nor an absolute path.
    #[error("invalid runtime name {0}, correct runtime name should be either format like `io.containerd.runc.v1` or a full path to the binary: invalid argument")]
    InvalidRuntimeName(String),
    #[error("runtime {runtime:?} binary not installed {binary:?}: not found")]
    ShimNotInstalled { runtime: String, binary: String },
    /// containerd's v1 runtime (`io.containerd.runtime.v1.linux`): berthd runs v2 shims only.
    #[error("runtime {0:?} is containerd's v1 runtime, which berthd does not serve: use a v2 runtime such as io.containerd.runc.v2 or io.containerd.berth.v2: failed precondition")]
    LegacyRuntime(String),
    #[error("task {0}: already exists")]
    TaskExists(String),
    #[error("task {0} not found")]
    TaskNotFound(String),
    #[error("invalid exec id {id}: {reason}")]
    InvalidExecId { id: String, reason: String },
    /// The shim binary's `start` failed or printed no address.
    #[error("start shim {id}: {reason}")]
    ShimStart { id: String, reason: String },
    /// The shim binary's `delete` (cleanup after a dead shim) failed.
    #[error("shim delete {id}: {reason}")]
    ShimDelete { id: String, reason: String },
    /// The shim answered with an error status; its message already names the object and class.
    #[error("{message}")]
    Shim { kind: ErrorKind, message: String },
    /// The ttrpc connection to the shim failed or closed.
    #[error("{op} {id}: ttrpc: {reason}: unavailable")]
    Connection {
        op: &'static str,
        id: String,
        reason: String,
    },
    #[error("bundle {path}: {source}")]
    Bundle {
        path: String,
        source: std::io::Error,
    },
    #[error("events socket {path}: {reason}")]
    EventsSocket { path: String, reason: String },
    #[error(transparent)]
    Core(#[from] berth_core::Error),
}

impl RuntimeError {
    /// The errdefs class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::InvalidRuntimeName(_) | RuntimeError::InvalidExecId { .. } => {
                ErrorKind::InvalidArgument
            }
            RuntimeError::ShimNotInstalled { .. } | RuntimeError::TaskNotFound(_) => {
                ErrorKind::NotFound
            }
            RuntimeError::TaskExists(_) => ErrorKind::AlreadyExists,
            RuntimeError::LegacyRuntime(_) => ErrorKind::FailedPrecondition,
            RuntimeError::Shim { kind, .. } => *kind,
            RuntimeError::Connection { .. } => ErrorKind::Unavailable,
            RuntimeError::ShimStart { .. }
            | RuntimeError::ShimDelete { .. }
            | RuntimeError::Bundle { .. }
            | RuntimeError::EventsSocket { .. } => ErrorKind::Internal,
            RuntimeError::Core(e) => e.kind(),
        }
    }

    /// True when the shim is gone (its connection closed): the task is as good as not found.
    pub fn is_connection(&self) -> bool {
        matches!(self, RuntimeError::Connection { .. })
    }

    /// Map a ttrpc error of operation `op` on task `id`.
    pub(crate) fn ttrpc(op: &'static str, id: &str, e: ttrpc::Error) -> RuntimeError {
        match e {
            ttrpc::Error::RpcStatus(s) => RuntimeError::Shim {
                kind: kind_of_code(s.code()),
                message: s.message().to_string(),
            },
            other => RuntimeError::Connection {
                op,
                id: id.to_string(),
                reason: other.to_string(),
            },
        }
    }
}

/// containerd's `errdefs.FromGRPC`: a status code as an error class.
fn kind_of_code(code: ttrpc::Code) -> ErrorKind {
    use ttrpc::Code;
    match code {
        Code::NOT_FOUND => ErrorKind::NotFound,
        Code::ALREADY_EXISTS => ErrorKind::AlreadyExists,
        Code::INVALID_ARGUMENT => ErrorKind::InvalidArgument,
        Code::FAILED_PRECONDITION => ErrorKind::FailedPrecondition,
        Code::UNAVAILABLE => ErrorKind::Unavailable,
        Code::OUT_OF_RANGE => ErrorKind::OutOfRange,
        Code::ABORTED => ErrorKind::Aborted,
        Code::UNIMPLEMENTED => ErrorKind::NotImplemented,
        Code::CANCELLED | Code::DEADLINE_EXCEEDED => ErrorKind::Canceled,
        Code::DATA_LOSS => ErrorKind::DataLoss,
        Code::PERMISSION_DENIED | Code::UNAUTHENTICATED => ErrorKind::PermissionDenied,
        _ => ErrorKind::Internal,
    }
}

impl From<RuntimeError> for berth_core::Error {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Core(e) => e,
            other => berth_core::Error::new(other.kind(), other.to_string()),
        }
    }
}

pub(crate) type Result<T, E = RuntimeError> = std::result::Result<T, E>;

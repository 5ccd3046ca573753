//! Error classification shared by every berth crate.
//!
//! Each subsystem crate has its own error type; each of those maps onto an [`ErrorKind`], the
//! same classes as containerd's `errdefs`. The gRPC edge maps an [`ErrorKind`] onto a status code,
//! once, in one place.

use std::fmt;

/// The class of a failure, as containerd's `errdefs` defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The object asked for does not exist.
    NotFound,
    /// An object with that identity already exists.
    AlreadyExists,
    /// The request is malformed: bad identifier, bad filter, bad field path.
    InvalidArgument,
    /// The system is not in a state where the request can succeed (e.g. a namespace not empty,
    /// a commit whose digest does not match).
    FailedPrecondition,
    /// The resource is busy right now (e.g. an ingest ref locked by another writer); retrying may help.
    Unavailable,
    /// A write or read beyond the current range.
    OutOfRange,
    /// The operation was aborted, e.g. by a conflict.
    Aborted,
    /// The operation is not implemented.
    NotImplemented,
    /// The caller gave up.
    Canceled,
    /// Data was lost or corrupted.
    DataLoss,
    /// The caller lacks permission.
    PermissionDenied,
    /// A bug or an unexpected condition in berth or below it (I/O errors land here).
    Internal,
}

impl ErrorKind {
    /// The word containerd appends to messages of this class (`"... : not found"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::FailedPrecondition => "failed precondition",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::OutOfRange => "out of range",
            ErrorKind::Aborted => "aborted",
            ErrorKind::NotImplemented => "not implemented",
            ErrorKind::Canceled => "canceled",
            ErrorKind::DataLoss => "data loss",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error that crosses crate boundaries: a kind and a message naming the object concerned.
///
/// Messages follow containerd's habit: lowercase, the identifier first, the class last, e.g.
/// `content sha256:abc…: not found`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind` with `message`; the message should name the object concerned.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// `"<what>: not found"`.
    pub fn not_found(what: impl fmt::Display) -> Self {
        Error::new(ErrorKind::NotFound, format!("{what}: not found"))
    }

    /// `"<what>: already exists"`.
    pub fn already_exists(what: impl fmt::Display) -> Self {
        Error::new(ErrorKind::AlreadyExists, format!("{what}: already exists"))
    }

    /// `"<what>: invalid argument"`.
    pub fn invalid_argument(what: impl fmt::Display) -> Self {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{what}: invalid argument"),
        )
    }

    /// `"<what>: failed precondition"`.
    pub fn failed_precondition(what: impl fmt::Display) -> Self {
        Error::new(
            ErrorKind::FailedPrecondition,
            format!("{what}: failed precondition"),
        )
    }

    /// `"<what>: unavailable"`.
    pub fn unavailable(what: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Unavailable, format!("{what}: unavailable"))
    }

    /// An internal error whose message is `what`.
    pub fn internal(what: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Internal, what.to_string())
    }

    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the class.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True when the error is of `kind`.
    pub fn is(&self, kind: ErrorKind) -> bool {
        self.kind == kind
    }

    /// Prefix the message with context, keeping the kind.
    pub fn context(self, ctx: impl fmt::Display) -> Self {
        Error {
            kind: self.kind,
            message: format!("{ctx}: {}", self.message),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            std::io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, e.to_string())
    }
}

/// Result with a berth [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

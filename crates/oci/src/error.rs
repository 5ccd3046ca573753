use berth_core::ErrorKind;

/// Failures of building a runtime spec.
///
/// Messages name what was wrong (the option, the user, the file) and end with the errdefs class,
/// as containerd's do (`user "www": not found in the image's /etc/passwd: not found`).
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// An option or an image config value that cannot be turned into a spec.
    #[error("{0}: invalid argument")]
    InvalidArgument(String),
    /// A user or group that the image's `/etc/passwd` or `/etc/group` does not name.
    #[error("{0}: not found")]
    NotFound(String),
    /// Reading or writing a file (the image's user database, the per-container files).
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A spec or process document that is not the JSON of a runtime spec.
    #[error("{what}: {source}: invalid argument")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    /// The spec types refused a value (e.g. a mount without a destination).
    #[error("build runtime spec: {0}: invalid argument")]
    Spec(#[from] oci_spec::OciSpecError),
}

impl OciError {
    /// The errdefs class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            OciError::InvalidArgument(_) | OciError::Json { .. } | OciError::Spec(_) => {
                ErrorKind::InvalidArgument
            }
            OciError::NotFound(_) => ErrorKind::NotFound,
            OciError::Io { source, .. } => berth_core::Error::from(clone_io(source)).kind(),
        }
    }

    /// True when the error is of `kind`.
    pub fn is(&self, kind: ErrorKind) -> bool {
        self.kind() == kind
    }

    /// An I/O error on `what` (a path, usually).
    pub(crate) fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> OciError {
        move |source| OciError::Io {
            what: what.to_string(),
            source,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> OciError {
        OciError::InvalidArgument(msg.into())
    }
}

fn clone_io(e: &std::io::Error) -> std::io::Error {
    std::io::Error::from(e.kind())
}

impl From<OciError> for berth_core::Error {
    fn from(e: OciError) -> Self {
        berth_core::Error::new(e.kind(), e.to_string())
    }
}

/// Result with an [`OciError`].
pub type Result<T, E = OciError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_their_class() {
        let e = OciError::invalid("memory \"lots\"");
        assert_eq!(e.to_string(), "memory \"lots\": invalid argument");
        assert!(e.is(ErrorKind::InvalidArgument));
        let e = OciError::io("/x/etc/passwd")(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(e.is(ErrorKind::NotFound));
        assert!(e.to_string().starts_with("/x/etc/passwd: "), "{e}");
        let core: berth_core::Error = OciError::NotFound("user \"x\"".into()).into();
        assert_eq!(core.kind(), ErrorKind::NotFound);
        assert_eq!(core.message(), "user \"x\": not found");
    }
}

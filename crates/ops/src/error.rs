use berth_core::ErrorKind;

/// Failures of a workflow: the error of the store, image, spec or registry step that failed,
/// with what the workflow was doing.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A store (content, leases, images, containers, snapshots, tasks) failed.
    #[error(transparent)]
    Core(#[from] berth_core::Error),
    /// Reading, resolving or unpacking an image failed.
    #[error(transparent)]
    Image(#[from] berth_images::ImageError),
    /// The runtime spec could not be made.
    #[error(transparent)]
    Oci(#[from] berth_oci::OciError),
    /// A registry request failed.
    #[error(transparent)]
    Distribution(#[from] berth_distribution::DistributionError),
    /// Mounting a snapshot for a moment (to read the image's users) failed.
    #[error(transparent)]
    Mount(#[from] berth_mount::MountError),
    /// Reading or writing a file of the host (a container's directory, its log).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A step failed; `context` says which (e.g. `create container c1`).
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<OpsError>,
    },
}

impl OpsError {
    /// The errdefs class of the failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            OpsError::Core(e) => e.kind(),
            OpsError::Image(e) => e.kind(),
            OpsError::Oci(e) => e.kind(),
            OpsError::Distribution(e) => e.kind(),
            OpsError::Mount(e) => e.kind(),
            OpsError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            OpsError::Io { .. } => ErrorKind::Internal,
            OpsError::Context { source, .. } => source.kind(),
        }
    }

    /// Whether the failure is of class `kind`.
    pub fn is(&self, kind: ErrorKind) -> bool {
        self.kind() == kind
    }

    /// An I/O error on `what` (a path, said as the message should say it).
    pub fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> OpsError {
        let what = what.to_string();
        move |source| OpsError::Io { what, source }
    }

    /// This error, saying that it happened while doing `context`.
    pub fn context(self, context: impl Into<String>) -> OpsError {
        OpsError::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }
}

impl From<OpsError> for berth_core::Error {
    fn from(e: OpsError) -> berth_core::Error {
        berth_core::Error::new(e.kind(), e.to_string())
    }
}

/// Results of this crate.
pub type Result<T, E = OpsError> = std::result::Result<T, E>;

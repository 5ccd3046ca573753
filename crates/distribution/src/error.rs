use berth_core::ErrorKind;
use berth_images::ImageError;
use oci_client::errors::OciDistributionError;

/// Failures of talking to a registry and of storing what it sent.
///
/// Messages name the reference or blob concerned and end with the errdefs class, as
/// containerd's do (`127.0.0.1:5000/busybox:nosuchtag: not found`).
#[derive(Debug, thiserror::Error)]
pub enum DistributionError {
    /// The image reference does not parse (`Busybox`, `a//b`, a bad digest).
    #[error("invalid reference {reference:?}: {reason}: invalid argument")]
    InvalidReference { reference: String, reason: String },
    /// A `hosts.toml` file cannot be read or does not say what it should.
    #[error("hosts config {path}: {reason}: invalid argument")]
    HostsConfig { path: String, reason: String },
    /// The registry has no manifest for the tag or digest.
    #[error("{reference}: not found")]
    NotFound { reference: String },
    /// The registry refused our credentials, or wants some and we have none.
    #[error("{reference}: {reason}: permission denied")]
    Unauthorized { reference: String, reason: String },
    /// The registry could not be reached or answered with something other than what the
    /// distribution protocol promises.
    #[error("{reference}: {reason}: unavailable")]
    Registry { reference: String, reason: String },
    /// A manifest or index the registry sent cannot be used.
    #[error("{reference}: {reason}: {}", kind.as_str())]
    Manifest {
        reference: String,
        reason: String,
        kind: ErrorKind,
    },
    /// Reading or checking a manifest, index or config failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The content store or lease manager failed; the message carries its context.
    #[error(transparent)]
    Core(#[from] berth_core::Error),
}

impl DistributionError {
    /// The errdefs class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DistributionError::InvalidReference { .. } | DistributionError::HostsConfig { .. } => {
                ErrorKind::InvalidArgument
            }
            DistributionError::NotFound { .. } => ErrorKind::NotFound,
            DistributionError::Unauthorized { .. } => ErrorKind::PermissionDenied,
            DistributionError::Registry { .. } => ErrorKind::Unavailable,
            DistributionError::Manifest { kind, .. } => *kind,
            DistributionError::Image(e) => e.kind(),
            DistributionError::Core(e) => e.kind(),
        }
    }

    /// Classify an error of the registry client met doing `action` (`fetch manifest`, `push
    /// blob sha256:…`) for `reference`.
    pub(crate) fn registry(reference: &str, action: &str, e: OciDistributionError) -> Self {
        let reference = reference.to_string();
        match e {
            OciDistributionError::ImageManifestNotFoundError(_) => {
                DistributionError::NotFound { reference }
            }
            OciDistributionError::RegistryError { envelope, .. }
                if envelope.errors.iter().any(|e| {
                    use oci_client::errors::OciErrorCode::*;
                    matches!(
                        e.code,
                        ManifestUnknown | NameUnknown | NotFound | BlobUnknown
                    )
                }) =>
            {
                DistributionError::NotFound { reference }
            }
            OciDistributionError::AuthenticationFailure(reason) => {
                DistributionError::Unauthorized { reference, reason }
            }
            OciDistributionError::UnauthorizedError { url } => DistributionError::Unauthorized {
                reference,
                reason: format!("{action}: {url} answered 401 unauthorized"),
            },
            OciDistributionError::ServerError { code: 404, .. } => {
                DistributionError::NotFound { reference }
            }
            OciDistributionError::RequestError(e)
                if e.status()
                    .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403) =>
            {
                DistributionError::Unauthorized {
                    reference,
                    reason: format!("{action}: {}", chain(&e)),
                }
            }
            other => DistributionError::Registry {
                reference,
                reason: format!("{action}: {}", chain(&other)),
            },
        }
    }
}

/// An error and its sources, `a: b: c` (reqwest hides the useful part, e.g. "connection
/// refused", in the source chain).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl From<DistributionError> for berth_core::Error {
    fn from(e: DistributionError) -> Self {
        match e {
            DistributionError::Core(e) => e,
            other => berth_core::Error::new(other.kind(), other.to_string()),
        }
    }
}

pub(crate) type Result<T, E = DistributionError> = std::result::Result<T, E>;

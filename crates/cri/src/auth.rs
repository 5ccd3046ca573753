//! The CRI's `AuthConfig` (what a kubelet read from an image pull secret) as a
//! [`CredentialProvider`] for one pull, as containerd's CRI `ParseAuth`: a user name and
//! password, or `auth` (base64 of `user:password`); an identity token is a refresh token with
//! no user name. When `server_address` is set, the credentials are only for that host.

use std::sync::Arc;

use base64::Engine as _;
use berth_core::Error;
use berth_distribution::{CredentialProvider, Credentials};
use futures::future::BoxFuture;

use crate::api::AuthConfig;

/// Credentials for the hosts an `AuthConfig` allows.
#[derive(Debug, Clone)]
pub struct CriCredentials {
    /// The only host they are for (None: any host the pull talks to).
    pub host: Option<String>,
    pub credentials: Credentials,
}

impl CredentialProvider for CriCredentials {
    fn credentials<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Option<Credentials>> {
        let allowed = self.host.as_deref().is_none_or(|h| h == host);
        Box::pin(std::future::ready(
            allowed.then(|| self.credentials.clone()),
        ))
    }
}

/// The host of a `server_address` (`https://r.example:5000/v1/` is `r.example:5000`; Docker
/// Hub's `index.docker.io` is `docker.io`).
pub fn server_host(address: &str) -> String {
    let a = address
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = a.split('/').next().unwrap_or(a);
    if host == "index.docker.io" || host == "registry-1.docker.io" {
        "docker.io".to_string()
    } else {
        host.to_string()
    }
}

/// The provider for an `AuthConfig`; None when it holds no credentials (an anonymous pull). A
/// malformed `auth` is `InvalidArgument`.
pub fn provider(auth: Option<&AuthConfig>) -> Result<Option<Arc<dyn CredentialProvider>>, Error> {
    let Some(auth) = auth else { return Ok(None) };
    let credentials = if !auth.username.is_empty() {
        Credentials {
            username: auth.username.clone(),
            password: auth.password.clone(),
        }
    } else if !auth.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.trim())
            .map_err(|e| {
                Error::invalid_argument(format!("auth config: auth is not base64: {e}"))
            })?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| Error::invalid_argument("auth config: auth is not utf-8"))?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| {
            Error::invalid_argument("auth config: auth is not of the form user:password")
        })?;
        Credentials {
            username: user.to_string(),
            password: password.to_string(),
        }
    } else if !auth.identity_token.is_empty() {
        Credentials {
            username: String::new(),
            password: auth.identity_token.clone(),
        }
    } else if !auth.registry_token.is_empty() {
        Credentials {
            username: String::new(),
            password: auth.registry_token.clone(),
        }
    } else {
        return Ok(None);
    };
    let host = (!auth.server_address.is_empty()).then(|| server_host(&auth.server_address));
    Ok(Some(Arc::new(CriCredentials { host, credentials })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(p: &Arc<dyn CredentialProvider>, host: &str) -> Option<Credentials> {
        futures::executor::block_on(p.credentials(host))
    }

    #[test]
    fn user_and_password_are_given_to_every_host_without_a_server_address() {
        let p = provider(Some(&AuthConfig {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        }))
        .unwrap()
        .unwrap();
        let c = ask(&p, "any.example").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
    }

    #[test]
    fn auth_is_base64_of_user_and_password_and_bound_to_its_server() {
        let p = provider(Some(&AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("alice:s3:cret"),
            server_address: "https://r.example:5000/v2/".into(),
            ..Default::default()
        }))
        .unwrap()
        .unwrap();
        let c = ask(&p, "r.example:5000").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3:cret")
        );
        assert!(ask(&p, "other.example").is_none());
        assert_eq!(server_host("index.docker.io"), "docker.io");
    }

    #[test]
    fn no_credentials_is_anonymous_and_bad_auth_is_invalid() {
        assert!(provider(None).unwrap().is_none());
        assert!(provider(Some(&AuthConfig::default())).unwrap().is_none());
        for bad in ["%%%", "bm9jb2xvbg=="] {
            let e = provider(Some(&AuthConfig {
                auth: bad.into(),
                ..Default::default()
            }))
            .unwrap_err();
            assert_eq!(e.kind(), berth_core::ErrorKind::InvalidArgument, "{bad}");
        }
        let p = provider(Some(&AuthConfig {
            identity_token: "tok".into(),
            ..Default::default()
        }))
        .unwrap()
        .unwrap();
        assert_eq!(ask(&p, "h").unwrap().password, "tok");
    }
}

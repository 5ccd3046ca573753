//! Registry credentials, always given by the caller through a [`CredentialProvider`]: this
//! crate never looks for them by itself (inside berthd, `$HOME/.docker/config.json` would be
//! root's file, not the user's who asked for the pull).
//!
//! Providers: [`StaticCredentials`] (one user and password for every host, the CLI's `--user`),
//! [`DockerConfig`] (the docker CLI's config file, which the CLI reads explicitly), and, later,
//! the CRI's `AuthConfig` and the Transfer service's credential callback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use futures::future::BoxFuture;
use serde::Deserialize;

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Gives the credentials for a registry host (`registry.example:5000`, `docker.io`, a
/// mirror's host), or None for anonymous access.
///
/// A pull or push asks it once per endpoint it talks to: first for the endpoint's host, then
/// (for a mirror) for the image's own host. The answer may take a round trip (the Transfer
/// service asks its client), hence the future.
pub trait CredentialProvider: Send + Sync + std::fmt::Debug {
    /// The credentials for `host`, if any.
    fn credentials<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Option<Credentials>>;
}

/// The same credentials for every host (`berth pull --user`).
#[derive(Debug, Clone)]
pub struct StaticCredentials(pub Credentials);

impl CredentialProvider for StaticCredentials {
    fn credentials<'a>(&'a self, _host: &'a str) -> BoxFuture<'a, Option<Credentials>> {
        Box::pin(std::future::ready(Some(self.0.clone())))
    }
}

/// The credentials of a docker CLI config file (`docker login`, `nerdctl login`), read when
/// asked (credential helpers are not consulted).
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
}

impl DockerConfig {
    /// The config file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> DockerConfig {
        DockerConfig { path: path.into() }
    }

    /// The config file of the user running this process (see [`docker_config_path`]); None
    /// when neither `DOCKER_CONFIG` nor `HOME` is set.
    pub fn of_this_user() -> Option<DockerConfig> {
        docker_config_path().map(DockerConfig::new)
    }
}

impl CredentialProvider for DockerConfig {
    fn credentials<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Option<Credentials>> {
        Box::pin(std::future::ready(docker_config_credentials(
            &self.path, host,
        )))
    }
}

/// The docker CLI's config file (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`),
/// where `docker login` and `nerdctl login` keep credentials.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// The credentials the docker config file at `path` holds for `host` (`docker.io` also matches
/// Docker Hub's historical key `https://index.docker.io/v1/`). Credential helpers are not
/// consulted. None when the file, the host or the entry is missing or unreadable.
pub fn docker_config_credentials(path: &Path, host: &str) -> Option<Credentials> {
    let text = std::fs::read_to_string(path).ok()?;
    let config: DockerConfigFile = serde_json::from_str(&text).ok()?;
    let wanted = |key: &str| {
        let key = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let key = key.split('/').next().unwrap_or(key);
        key == host || (host == "docker.io" && key == "index.docker.io")
    };
    let entry = config
        .auths
        .iter()
        .find(|(k, _)| wanted(k))
        .map(|(_, v)| v)?;
    if !entry.auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(entry.auth.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (username, password) = decoded.split_once(':')?;
        return Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    (!entry.username.is_empty()).then(|| Credentials {
        username: entry.username.clone(),
        password: entry.password.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths": {{
                    "registry.example:5000": {{"auth": "{auth}"}},
                    "https://index.docker.io/v1/": {{"username": "bob", "password": "pw"}}
                }}}}"#
            ),
        )
        .unwrap();
        let c = docker_config_credentials(&path, "registry.example:5000").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cr:et")
        );
        let c = docker_config_credentials(&path, "docker.io").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "pw"));
        assert!(docker_config_credentials(&path, "other.example").is_none());
        assert!(docker_config_credentials(&dir.path().join("missing"), "docker.io").is_none());
        assert!(
            !format!("{c:?}").contains("pw"),
            "debug output hides the password"
        );
    }

    #[tokio::test]
    async fn providers_answer_per_host() {
        let c = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        let s = StaticCredentials(c.clone());
        assert_eq!(s.credentials("any.example").await, Some(c));
        let d = DockerConfig::new("/nonexistent/config.json");
        assert_eq!(d.credentials("docker.io").await, None);
    }
}

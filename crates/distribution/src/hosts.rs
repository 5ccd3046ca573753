//! How to reach a registry host: the scheme, and the credentials.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;

/// A registry client for one image's host: the scheme and the credentials settled.
pub(crate) struct Remote {
    pub client: Client,
    pub auth: RegistryAuth,
}

impl Remote {
    /// Plain HTTP when asked or for a host on this machine, HTTPS otherwise; `credentials`,
    /// else the docker config file's for the host, else anonymous.
    pub fn new(
        image: &Reference,
        plain_http: bool,
        credentials: Option<Credentials>,
        max_concurrent: usize,
    ) -> Remote {
        let host = image.registry();
        let protocol = if plain_http {
            ClientProtocol::Http
        } else if is_local_host(host) {
            ClientProtocol::HttpsExcept(vec![
                host.to_string(),
                image.resolve_registry().to_string(),
            ])
        } else {
            ClientProtocol::Https
        };
        let credentials = credentials
            .or_else(|| docker_config_path().and_then(|p| docker_config_credentials(&p, host)));
        let auth = match credentials {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        // reqwest is built without a crypto provider of its own: use ring's, process-wide,
        // unless the program chose one already (then this does nothing).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::new(ClientConfig {
            protocol,
            max_concurrent_download: max_concurrent.max(1),
            max_concurrent_upload: max_concurrent.max(1),
            ..Default::default()
        });
        Remote { client, auth }
    }
}

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

/// `host[:port]` without the port (`[::1]:5000` is `::1`), as Go's `url.URL.Hostname`.
pub fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

/// True for hosts that are this machine (`localhost`, `127.0.0.0/8`, `::1`, with or without
/// a port): like Docker, these are spoken to over plain HTTP without being asked.
pub fn is_local_host(host: &str) -> bool {
    let name = host_name(host);
    name == "localhost"
        || name == "::1"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
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
struct DockerConfig {
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
    let config: DockerConfig = serde_json::from_str(&text).ok()?;
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
    fn host_names_lose_their_port() {
        assert_eq!(host_name("127.0.0.1:5000"), "127.0.0.1");
        assert_eq!(host_name("docker.io"), "docker.io");
        assert_eq!(host_name("[::1]:5000"), "::1");
        assert_eq!(host_name("registry.example:443"), "registry.example");
    }

    #[test]
    fn local_hosts_are_recognised() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.1:36789",
            "127.1.2.3:80",
            "[::1]:5000",
        ] {
            assert!(is_local_host(h), "{h}");
        }
        for h in [
            "docker.io",
            "registry.example:5000",
            "10.0.0.1:5000",
            "localhost.example",
            "[2001:db8::1]:5000",
        ] {
            assert!(!is_local_host(h), "{h}");
        }
    }

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
}

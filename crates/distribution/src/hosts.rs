//! How to reach a registry host: its endpoints (mirrors from containerd-style `hosts.toml`
//! files, then the upstream), the scheme, and the credentials asked of the caller's provider.

use std::path::Path;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::credentials::CredentialProvider;
use crate::error::{DistributionError, Result};

/// One place to reach a registry at: the upstream host itself, or a mirror of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` the requests go to.
    pub host: String,
    /// Speak plain HTTP rather than HTTPS.
    pub plain_http: bool,
    /// Accept any TLS certificate (hosts.toml's `skip_verify`).
    pub skip_verify: bool,
    /// What it may be used for: `pull`, `resolve`, `push` (containerd's capabilities).
    pub capabilities: Vec<String>,
}

impl Endpoint {
    /// True when the endpoint may serve `capability`.
    pub fn can(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }
}

/// The endpoints for `host`, in the order to try them: the mirrors of
/// `<hosts_dir>/<host>/hosts.toml` (else `<hosts_dir>/_default/hosts.toml`) in file order,
/// then the upstream (its `server`, else `host` itself), as containerd's `config_path`
/// reads them. `plain_http` (or a host on this machine) makes the upstream plain HTTP.
pub fn endpoints(hosts_dir: Option<&Path>, host: &str, plain_http: bool) -> Result<Vec<Endpoint>> {
    let upstream_host = if host == "docker.io" {
        "index.docker.io"
    } else {
        host
    };
    let mut upstream = Endpoint {
        host: upstream_host.to_string(),
        plain_http: plain_http || is_local_host(host),
        skip_verify: false,
        capabilities: vec!["pull".into(), "resolve".into(), "push".into()],
    };
    let Some(dir) = hosts_dir else {
        return Ok(vec![upstream]);
    };
    let file = [host, "_default"]
        .iter()
        .map(|h| dir.join(h).join("hosts.toml"))
        .find(|p| p.is_file());
    let Some(file) = file else {
        return Ok(vec![upstream]);
    };
    let bad = |reason: String| DistributionError::HostsConfig {
        path: file.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(&file).map_err(|e| bad(e.to_string()))?;
    let doc: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    if let Some(hosts) = doc.get("host") {
        let hosts = hosts
            .as_table()
            .ok_or_else(|| bad("host: want a table of hosts".into()))?;
        for (url, settings) in hosts {
            let mut e = parse_url(url).map_err(&bad)?;
            e.capabilities = vec!["pull".into(), "resolve".into()];
            if let Some(t) = settings.as_table() {
                if let Some(caps) = t.get("capabilities").and_then(|c| c.as_array()) {
                    e.capabilities = caps
                        .iter()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect();
                }
                e.skip_verify = t.get("skip_verify").and_then(|v| v.as_bool()) == Some(true);
            }
            out.push(e);
        }
    }
    if let Some(server) = doc.get("server").and_then(|s| s.as_str()) {
        let e = parse_url(server).map_err(&bad)?;
        upstream.host = e.host;
        upstream.plain_http = e.plain_http;
    }
    upstream.skip_verify = doc.get("skip_verify").and_then(|v| v.as_bool()) == Some(true);
    out.push(upstream);
    Ok(out)
}

/// `http://host:port` or `https://host` (a path of `/` or `/v2` at most; oci-client builds
/// the `/v2/...` paths itself).
fn parse_url(url: &str) -> std::result::Result<Endpoint, String> {
    let (plain_http, rest) = if let Some(r) = url.strip_prefix("http://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (false, r)
    } else {
        (false, url)
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() || !matches!(path.trim_end_matches('/'), "" | "v2") {
        return Err(format!(
            "host {url:?}: want scheme://host[:port] (a path prefix is not supported)"
        ));
    }
    Ok(Endpoint {
        host: host.to_string(),
        plain_http,
        skip_verify: false,
        capabilities: Vec::new(),
    })
}

/// A registry client for one endpoint, with the reference pointed at it and the credentials
/// settled.
pub(crate) struct Remote {
    pub client: Client,
    pub auth: RegistryAuth,
    /// The image, its requests sent to the endpoint (a mirror keeps the upstream name and
    /// adds `?ns=<upstream>`, as containerd does).
    pub image: Reference,
}

impl Remote {
    /// A client for `endpoint`, with the credentials `provider` gives for the endpoint, else
    /// for the image's host (a mirror may share the upstream's), else anonymous.
    pub async fn new(
        endpoint: &Endpoint,
        image: &Reference,
        provider: Option<&dyn CredentialProvider>,
        max_concurrent: usize,
    ) -> Remote {
        let mut image = image.clone();
        if endpoint.host != image.resolve_registry() {
            image.set_mirror_registry(endpoint.host.clone());
        }
        let protocol = if endpoint.plain_http {
            ClientProtocol::HttpsExcept(vec![endpoint.host.clone()])
        } else {
            ClientProtocol::Https
        };
        let credentials = match provider {
            Some(p) => match p.credentials(&endpoint.host).await {
                Some(c) => Some(c),
                None => p.credentials(image.registry()).await,
            },
            None => None,
        };
        let auth = match credentials {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        // TLS is rustls with ring, installed as the process's default crypto provider by each
        // binary's main (tests install it themselves).
        let client = Client::new(ClientConfig {
            protocol,
            accept_invalid_certificates: endpoint.skip_verify,
            max_concurrent_download: max_concurrent.max(1),
            max_concurrent_upload: max_concurrent.max(1),
            ..Default::default()
        });
        Remote {
            client,
            auth,
            image,
        }
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
    fn hosts_toml_lists_mirrors_in_file_order_then_the_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let none = endpoints(Some(dir.path()), "registry.example", false).unwrap();
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].host, "registry.example");
        assert!(!none[0].plain_http && none[0].can("push"));
        let local = endpoints(None, "127.0.0.1:5000", false).unwrap();
        assert!(local[0].plain_http, "a host on this machine is plain HTTP");

        std::fs::create_dir_all(dir.path().join("registry.example")).unwrap();
        std::fs::write(
            dir.path().join("registry.example/hosts.toml"),
            r#"
server = "https://upstream.example:8443"
[host."http://127.0.0.1:5001"]
  capabilities = ["pull", "resolve"]
[host."https://mirror.example/v2"]
  capabilities = ["pull"]
  skip_verify = true
"#,
        )
        .unwrap();
        let e = endpoints(Some(dir.path()), "registry.example", false).unwrap();
        let hosts: Vec<&str> = e.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(
            hosts,
            ["127.0.0.1:5001", "mirror.example", "upstream.example:8443"]
        );
        assert!(e[0].plain_http && e[0].can("resolve") && !e[0].can("push"));
        assert!(!e[1].plain_http && e[1].skip_verify && !e[1].can("resolve"));
        assert!(e[2].can("push"));

        std::fs::create_dir_all(dir.path().join("_default")).unwrap();
        std::fs::write(
            dir.path().join("_default/hosts.toml"),
            "[host.\"http://10.0.0.1:5000\"]\n",
        )
        .unwrap();
        let d = endpoints(Some(dir.path()), "other.example", false).unwrap();
        assert_eq!(d[0].host, "10.0.0.1:5000");
        assert_eq!(d[1].host, "other.example");

        std::fs::write(
            dir.path().join("_default/hosts.toml"),
            "[host.\"http://x/prefix\"]\n",
        )
        .unwrap();
        let err = endpoints(Some(dir.path()), "other.example", false).unwrap_err();
        assert!(err.to_string().contains("hosts.toml"), "{err}");
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
}

//! The container's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`: files written in a
//! per-container directory on the host and bind-mounted over the image's (as Docker and
//! nerdctl do), so that the image is never written to and the files go away with the container.

use std::path::{Path, PathBuf};

use crate::error::{OciError, Result};
use crate::options::NetworkMode;

/// The host paths of a container's network identity files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFiles {
    pub hostname: PathBuf,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
}

impl EtcFiles {
    /// The files in `dir` (whether they exist or not).
    pub fn in_dir(dir: &Path) -> EtcFiles {
        EtcFiles {
            hostname: dir.join("hostname"),
            hosts: dir.join("hosts"),
            resolv_conf: dir.join("resolv.conf"),
        }
    }
}

/// `/etc/hosts` of a container in its own network namespace: loopback names, and its hostname
/// on the loopback address (it has no other).
pub fn hosts_for(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.0.1\t{hostname}\n"
    )
}

/// Write the files into `dir` (created if needed, mode 0755; files 0644): the hostname, and
/// `hosts` and `resolv.conf` for `network`: with the host's network, copies of `host_etc`'s
/// `hosts` and `resolv.conf`; otherwise loopback-only hosts and a copy of the host's
/// `resolv.conf` (empty when the host has none).
pub fn write_etc_files(
    dir: &Path,
    hostname: &str,
    network: NetworkMode,
    host_etc: &Path,
) -> Result<EtcFiles> {
    if hostname.is_empty() || hostname.len() > 64 || hostname.contains(['/', '\n', ' ']) {
        return Err(OciError::invalid(format!("hostname {hostname:?}")));
    }
    std::fs::create_dir_all(dir).map_err(OciError::io(dir.display()))?;
    let files = EtcFiles::in_dir(dir);
    let read_host = |name: &str| -> Result<String> {
        let p = host_etc.join(name);
        match std::fs::read_to_string(&p) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(OciError::io(p.display())(e)),
        }
    };
    let hosts = match network {
        NetworkMode::Host => read_host("hosts")?,
        NetworkMode::None => hosts_for(hostname),
    };
    let resolv = read_host("resolv.conf")?;
    for (path, text) in [
        (&files.hostname, format!("{hostname}\n")),
        (&files.hosts, hosts),
        (&files.resolv_conf, resolv),
    ] {
        std::fs::write(path, text).map_err(OciError::io(path.display()))?;
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_follow_the_network_mode() {
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("hosts"), "10.0.0.1 db\n").unwrap();
        std::fs::write(host.path().join("resolv.conf"), "nameserver 10.0.0.53\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("c1");
        let f = write_etc_files(&c, "c1", NetworkMode::None, host.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&f.hostname).unwrap(), "c1\n");
        let hosts = std::fs::read_to_string(&f.hosts).unwrap();
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
        assert!(hosts.ends_with("127.0.0.1\tc1\n"), "{hosts}");
        assert_eq!(
            std::fs::read_to_string(&f.resolv_conf).unwrap(),
            "nameserver 10.0.0.53\n"
        );
        let f = write_etc_files(&c, "myhost", NetworkMode::Host, host.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&f.hosts).unwrap(), "10.0.0.1 db\n");
        let empty = tempfile::tempdir().unwrap();
        let f = write_etc_files(&c, "c1", NetworkMode::None, empty.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&f.resolv_conf).unwrap(), "");
        assert!(write_etc_files(&c, "a/b", NetworkMode::None, host.path()).is_err());
    }
}

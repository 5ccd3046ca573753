//! Image references, normalized as Docker does: the one place berth turns what a user types
//! into the name an image record gets.
//!
//! Vocabulary (Docker's `distribution/reference`):
//! - a **reference** is `[domain/]path[:tag][@digest]`;
//! - the **domain** is the registry host (`registry.example:5000`, `localhost`, `[::1]:5000`);
//!   without one (the first path component has no `.` or `:`, is not `localhost` and is
//!   lowercase) it is Docker Hub, `docker.io` (`index.docker.io` is spelled `docker.io`);
//! - the **path** is the repository, lowercase components; on Docker Hub a one-component path is
//!   an official image, under `library/`;
//! - a reference with neither **tag** nor **digest** gets the tag `latest`; one with a digest
//!   keeps what it has (`busybox@sha256:…` stays untagged, `busybox:1.36@sha256:…` keeps both).
//!
//! The digest is checked for its shape (`algorithm:hex`) only; whoever uses it (a pull, a
//! lookup) checks that it is a digest of a known algorithm and length.

use std::fmt;

use crate::error::{Error, Result};

/// Docker Hub's domain.
pub const DOCKER_HUB: &str = "docker.io";
/// The tag a reference without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";
/// The longest `domain/path` Docker accepts.
const NAME_MAX: usize = 255;

/// A normalized reference; `to_string()` is its full form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host, with its port if any (`docker.io`, `127.0.0.1:5000`).
    pub domain: String,
    /// Repository within the registry (`library/busybox`).
    pub path: String,
    pub tag: Option<String>,
    /// `algorithm:hex`, shape checked only.
    pub digest: Option<String>,
}

impl Reference {
    /// Parse `reference` and normalize it as Docker's `ParseDockerRef` does.
    pub fn parse(reference: &str) -> Result<Reference> {
        let bad =
            |reason: &str| Error::invalid_argument(format!("reference {reference:?}: {reason}"));
        if reference.is_empty() {
            return Err(bad("empty"));
        }
        if reference.len() == 64
            && reference
                .bytes()
                .all(|c| matches!(c, b'a'..=b'f' | b'0'..=b'9'))
        {
            return Err(bad(
                "an image id is not a reference (repository names cannot be 64 hex digits)",
            ));
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((r, d)) => {
                if !is_digest(d) {
                    return Err(bad("invalid digest"));
                }
                (r, Some(d.to_string()))
            }
            None => (reference, None),
        };
        // A tag follows the last ':' after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let (n, t) = rest.split_at(last_slash + i);
                (n, Some(t[1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            if !is_tag(t) {
                return Err(bad("invalid tag"));
            }
        }
        let (mut domain, mut path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.to_lowercase() != first =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if domain == "index.docker.io" {
            domain = DOCKER_HUB.to_string();
        }
        if !is_domain(&domain) {
            return Err(bad("invalid registry host"));
        }
        if domain == DOCKER_HUB && !path.contains('/') {
            path = format!("library/{path}");
        }
        if !is_path(&path) {
            return Err(if is_path(&path.to_lowercase()) {
                bad("repository name must be lowercase")
            } else {
                bad("invalid repository name")
            });
        }
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(bad("name longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `domain/path`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `reference` in its full form: `busybox` is `docker.io/library/busybox:latest`,
/// `busybox@sha256:…` is `docker.io/library/busybox@sha256:…`.
pub fn normalize(reference: &str) -> Result<String> {
    Reference::parse(reference).map(|r| r.to_string())
}

// The grammar of Docker's `distribution/reference`, by hand.

/// `component(/component)*`, each `[a-z0-9]+` runs joined by `.`, `_`, `__` or `-`s.
fn is_path(path: &str) -> bool {
    path.split('/').all(is_path_component)
}

fn is_path_component(c: &str) -> bool {
    let lower_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) if lower_alnum(first) && lower_alnum(last) => {}
        _ => return false,
    }
    // Between the runs of `[a-z0-9]`: the separators.
    c.split(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
        .filter(|sep| !sep.is_empty())
        .all(|sep| matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-'))
}

/// `host[:port]`: dot-separated labels of letters, digits and inner `-`s, or `[ipv6]`.
fn is_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        if ip.is_empty() || !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", port),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, p),
            None => (domain, "0"),
        }
    };
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        match (b.first(), b.last()) {
            (Some(f), Some(e)) if f.is_ascii_alphanumeric() && e.is_ascii_alphanumeric() => {
                b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            }
            _ => false,
        }
    };
    let host_ok = host.is_empty() && domain.starts_with('[') || host.split('.').all(label_ok);
    host_ok && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm:hex`, the algorithm letters and digits with `-_+.` between components that start
/// with a letter.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        b.first().is_some_and(|f| f.is_ascii_alphabetic())
            && b.iter().all(|c| c.is_ascii_alphanumeric())
    };
    !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && algorithm.split(['-', '_', '+', '.']).all(component_ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn n(s: &str) -> String {
        normalize(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn names_get_docker_hub_library_and_latest() {
        assert_eq!(n("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(n("me/app"), "docker.io/me/app:latest");
        assert_eq!(n("docker.io/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("index.docker.io/me/app:v1"), "docker.io/me/app:v1");
        assert_eq!(n("localhost/app"), "localhost/app:latest");
        assert_eq!(n("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(n("127.0.0.1:5000/a/b:v1"), "127.0.0.1:5000/a/b:v1");
        assert_eq!(n("ghcr.io/o/app:v1"), "ghcr.io/o/app:v1");
        assert_eq!(n("[::1]:5000/app"), "[::1]:5000/app:latest");
        assert_eq!(n("Registry.Example/app"), "Registry.Example/app:latest");
        assert_eq!(
            n("a__b/c-d--e.f_g:T_1.x-y"),
            "docker.io/a__b/c-d--e.f_g:T_1.x-y"
        );
    }

    #[test]
    fn a_digest_adds_no_latest_and_keeps_a_tag() {
        assert_eq!(
            n("busybox@sha256:abc"),
            "docker.io/library/busybox@sha256:abc"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            n(&format!("busybox:1.36@{d}")),
            format!("docker.io/library/busybox:1.36@{d}")
        );
        assert_eq!(
            n(&format!("localhost:5000/app@{d}")),
            format!("localhost:5000/app@{d}")
        );
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!((r.tag, r.digest), (None, Some(d)));
    }

    #[test]
    fn malformed_references_are_invalid_arguments_naming_the_reference() {
        for bad in [
            "",
            "Busybox",
            "a//b",
            "busybox:",
            "busybox@",
            "busybox@sha256",
            "busybox@sha256:xyz",
            "/busybox",
            "busybox/",
            "-busybox",
            "bad host.example/app",
            "a.-b",
            "a..b",
            "host.example:/app",
            "host.example:5x/app",
            "[::1/app",
            "[zz]:5000/app",
            "-host.example/app",
            "busybox@-sha256:abcd",
            "busybox:t\u{e9}",
            ":tag",
            &"a".repeat(64),
            &format!("x/{}", "a".repeat(260)),
            &format!("busybox:{}", "t".repeat(129)),
        ] {
            let e = normalize(bad).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}: {e}");
            assert!(e.message().contains(&format!("{bad:?}")), "{e}");
        }
        let e = normalize("docker.io/Me/app").unwrap_err();
        assert!(e.message().contains("lowercase"), "{e}");
    }
}

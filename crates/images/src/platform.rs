//! Platforms: which OS and CPU an image (or one manifest of a multi-platform index) is for.
//!
//! A **platform** is an OS, an architecture and an optional CPU **variant** (`linux/arm/v7`),
//! spelled with Go's names (`amd64`, not `x86_64`). Spellings are **normalized** first, as
//! containerd's `platforms.Normalize` does (`aarch64` → `arm64`, `arm64/v8` → `arm64`, `arm` →
//! `arm/v7`). A wanted platform **matches** its own normalized form and, like containerd's
//! `platforms.Only`, the older variants its CPU can run (`arm/v7` runs `arm/v6` and `arm/v5`;
//! `arm64` runs `arm/v8` down to `arm/v5`), preferring the closest.

use std::fmt;
use std::str::FromStr;

use berth_core::{Error, ErrorKind};
use serde::{Deserialize, Serialize};

/// An OS and CPU, as OCI descriptors and configs write them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub os_version: String,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

/// OS names `Platform::from_str` recognizes when a platform is given as one word.
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
];

impl Platform {
    /// `os/architecture[/variant]`, not normalized.
    pub fn new(os: &str, architecture: &str, variant: &str) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.to_string(),
            ..Platform::default()
        }
    }

    /// The platform of the running host, normalized (e.g. `linux/amd64`), containerd's
    /// `platforms.DefaultSpec`.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform::new(std::env::consts::OS, arch, "").normalize()
    }

    /// containerd's `platforms.Normalize`: lowercase, Go's architecture names, default variants
    /// made explicit (`arm` → `arm/v7`) or dropped (`amd64/v1`, `arm64/v8`), an empty OS taken
    /// as the host's.
    pub fn normalize(&self) -> Platform {
        let mut os = self.os.to_ascii_lowercase();
        if os.is_empty() {
            os = std::env::consts::OS.to_string();
        } else if os == "macos" {
            os = "darwin".to_string();
        }
        let arch = self.architecture.to_ascii_lowercase();
        let variant = self.variant.to_ascii_lowercase();
        let (arch, variant) = match arch.as_str() {
            "i386" => ("386".to_string(), String::new()),
            "x86_64" | "x86-64" | "amd64" => (
                "amd64".to_string(),
                if variant == "v1" {
                    String::new()
                } else {
                    variant
                },
            ),
            "aarch64" | "arm64" => (
                "arm64".to_string(),
                if variant == "8" || variant == "v8" {
                    String::new()
                } else {
                    variant
                },
            ),
            "armhf" => ("arm".to_string(), "v7".to_string()),
            "armel" => ("arm".to_string(), "v6".to_string()),
            "arm" => (
                arch,
                match variant.as_str() {
                    "" | "7" => "v7".to_string(),
                    "5" | "6" | "8" => format!("v{variant}"),
                    _ => variant,
                },
            ),
            _ => (arch, variant),
        };
        Platform {
            os,
            architecture: arch,
            variant,
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
        }
    }

    /// The platforms this one can run, best first (containerd's `platformVector`): itself, then
    /// for `arm/vN` the lower arm variants, for `arm64` the 32-bit arm variants from v8 down.
    fn compatible(&self) -> Vec<Platform> {
        let me = self.normalize();
        let plain = |arch: &str, variant: &str| Platform::new(&me.os, arch, variant);
        let mut out = vec![plain(&me.architecture, &me.variant)];
        let arm_down_from = |n: u32, out: &mut Vec<Platform>| {
            for v in (5..=n).rev() {
                out.push(plain("arm", &format!("v{v}")));
            }
        };
        match me.architecture.as_str() {
            "arm" => {
                if let Some(n) = me.variant.strip_prefix('v').and_then(|n| n.parse().ok()) {
                    arm_down_from(n, &mut out);
                    out.dedup();
                }
            }
            "arm64" if me.variant.is_empty() => arm_down_from(8, &mut out),
            _ => {}
        }
        out
    }

    /// How well this wanted platform fits `candidate`: `Some(0)` for its own platform, higher
    /// for older compatible variants, `None` when it cannot run it.
    pub fn rank(&self, candidate: &Platform) -> Option<usize> {
        let c = candidate.normalize();
        let c = Platform::new(&c.os, &c.architecture, &c.variant);
        self.compatible().iter().position(|p| *p == c)
    }

    /// True when this wanted platform can run `candidate`.
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.rank(candidate).is_some()
    }
}

/// `os/architecture[/variant]`.
impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = if self.os.is_empty() {
            "unknown"
        } else {
            &self.os
        };
        let arch = if self.architecture.is_empty() {
            "unknown"
        } else {
            &self.architecture
        };
        write!(f, "{os}/{arch}")?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// Parses containerd's platform specifiers: `os`, `arch` (one word: an OS name gets the host's
/// architecture, anything else is an architecture on the host's OS), `os/arch`,
/// `os/arch/variant`. The result is normalized.
impl FromStr for Platform {
    type Err = Error;

    fn from_str(s: &str) -> Result<Platform, Error> {
        let invalid = |why: &str| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("{s:?}: {why}: invalid argument"),
            )
        };
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !parts.iter().all(valid) {
            return Err(invalid("invalid platform component"));
        }
        let p = match parts.as_slice() {
            [one] => {
                let lower = one.to_ascii_lowercase();
                if KNOWN_OS.contains(&lower.as_str()) {
                    let host = Platform::host();
                    Platform::new(&lower, &host.architecture, &host.variant)
                } else {
                    Platform::new(std::env::consts::OS, &lower, "")
                }
            }
            [os, arch] => Platform::new(os, arch, ""),
            [os, arch, variant] => Platform::new(os, arch, variant),
            _ => return Err(invalid("cannot parse platform specifier")),
        };
        Ok(p.normalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn normalizes_like_containerd() {
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/amd64/v1").to_string(), "linux/amd64");
        assert_eq!(p("linux/aarch64").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm64/v8").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/armel").to_string(), "linux/arm/v6");
        assert_eq!(p("linux/arm/6").to_string(), "linux/arm/v6");
        assert_eq!(p("Linux/i386").to_string(), "linux/386");
        assert_eq!(p("windows/amd64").to_string(), "windows/amd64");
    }

    #[test]
    fn one_word_is_an_os_or_an_architecture() {
        let host = Platform::host();
        assert_eq!(p("linux").architecture, host.architecture);
        assert_eq!(p("s390x").os, std::env::consts::OS);
        assert_eq!(p("s390x").architecture, "s390x");
        for bad in ["", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            let e = bad.parse::<Platform>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn host_is_normalized_go_naming() {
        let host = Platform::host();
        assert_eq!(host, host.normalize());
        assert!(!host.architecture.contains('_'), "{host}");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.to_string(), "linux/amd64");
        }
    }

    #[test]
    fn matching_prefers_the_exact_platform() {
        let amd64 = p("linux/amd64");
        assert_eq!(amd64.rank(&Platform::new("linux", "amd64", "")), Some(0));
        assert_eq!(amd64.rank(&Platform::new("Linux", "x86_64", "")), Some(0));
        assert!(!amd64.matches(&p("linux/arm64")));
        assert!(!amd64.matches(&p("windows/amd64")));
        assert!(!amd64.matches(&Platform::new("unknown", "unknown", "")));

        let arm64 = p("linux/arm64");
        assert_eq!(arm64.rank(&Platform::new("linux", "arm64", "v8")), Some(0));
        assert_eq!(arm64.rank(&p("linux/arm/v8")), Some(1));
        assert_eq!(arm64.rank(&p("linux/arm/v7")), Some(2));

        let armv7 = p("linux/arm/v7");
        assert_eq!(armv7.rank(&p("linux/arm/v7")), Some(0));
        assert_eq!(armv7.rank(&p("linux/arm/v6")), Some(1));
        assert!(!armv7.matches(&p("linux/arm/v8")));
        assert!(!armv7.matches(&p("linux/arm64")));
    }

    #[test]
    fn json_uses_oci_field_names() {
        let json = r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1","os.features":["win32k"]}"#;
        let plat: Platform = serde_json::from_str(json).unwrap();
        assert_eq!(plat.os_version, "10.0.17763.1");
        assert_eq!(serde_json::to_string(&plat).unwrap(), json);
        assert_eq!(
            Platform::new("", "", "").to_string(),
            "unknown/unknown",
            "empty fields print as unknown"
        );
    }
}

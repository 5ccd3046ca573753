//! berthd's TOML configuration. Every field is optional; command-line flags override the file.
//!
//! ```toml
//! root = "/var/lib/berth"
//! state = "/run/berth"
//!
//! [grpc]
//! address = "/run/berth/berthd.sock"
//! gid = 0                 # group owning the socket (mode 0660)
//!
//! [debug]
//! level = "info"          # tracing filter, e.g. "debug" or "berth_metadata=debug"
//! format = "text"         # or "json"
//!
//! [gc]
//! schedule_interval = "10m"
//! schedule_delay = "0s"
//! startup_delay = "100ms"
//! pause_threshold = 0.02
//!
//! [metrics]
//! address = "127.0.0.1:1338"   # Prometheus text on GET /v1/metrics; off when unset or empty
//!
//! [registry]
//! config_path = "/etc/berth/certs.d"   # <host>/hosts.toml mirror files for berthd's own pulls
//!
//! [cri]
//! enabled = true                                # serve the Kubernetes CRI on the socket
//! sandbox_image = "registry.k8s.io/pause:3.9"   # pods' pause image (no pods yet)
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

pub const DEFAULT_CONFIG: &str = "/etc/berth/config.toml";
pub const DEFAULT_ROOT: &str = "/var/lib/berth";
pub const DEFAULT_STATE: &str = "/run/berth";
pub const DEFAULT_ADDRESS: &str = "/run/berth/berthd.sock";
/// Where `<host>/hosts.toml` files are, unless `[registry] config_path` says otherwise (the
/// CLI's `--hosts-dir` default too).
pub const DEFAULT_HOSTS_DIR: &str = "/etc/berth/certs.d";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Config file format version (accepted for containerd familiarity; only 1 and 2 are known).
    pub version: Option<u32>,
    pub root: Option<PathBuf>,
    pub state: Option<PathBuf>,
    #[serde(default)]
    pub grpc: Grpc,
    #[serde(default)]
    pub debug: Debug,
    #[serde(default)]
    pub gc: Gc,
    #[serde(default)]
    pub registry: Registry,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub cri: Cri,
}

/// containerd's `[metrics]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// `host:port` serving Prometheus metrics on `GET /v1/metrics`, unauthenticated: keep it
    /// on loopback. Unset or empty: no metrics listener (the default).
    pub address: Option<String>,
}

impl Metrics {
    /// The address to serve metrics on, if metrics are on.
    pub fn address(&self) -> Option<&str> {
        self.address
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grpc {
    pub address: Option<PathBuf>,
    pub gid: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debug {
    pub level: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gc {
    pub schedule_interval: Option<String>,
    pub schedule_delay: Option<String>,
    pub startup_delay: Option<String>,
    pub pause_threshold: Option<f64>,
}

/// How berthd's own pulls (CRI, Transfer) reach registries.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// The hosts directory (containerd CRI's `config_path`): `<host>/hosts.toml` files naming
    /// mirrors, read at each pull.
    pub config_path: Option<PathBuf>,
}

impl Registry {
    /// The hosts directory daemon-side pulls use.
    pub fn hosts_dir(&self) -> PathBuf {
        self.config_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_HOSTS_DIR))
    }
}

/// The Kubernetes CRI server (berth-cri), on berthd's socket as containerd's `cri` plugin.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cri {
    /// Serve the CRI (default true).
    pub enabled: Option<bool>,
    /// The pause image of pod sandboxes (default `registry.k8s.io/pause:3.9`; not used yet).
    pub sandbox_image: Option<String>,
}

impl Cri {
    /// Whether berthd serves the CRI.
    pub fn enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// The pods' pause image.
    pub fn sandbox_image(&self) -> String {
        self.sandbox_image
            .clone()
            .unwrap_or_else(|| berth_cri::DEFAULT_SANDBOX_IMAGE.to_string())
    }
}

impl Config {
    /// Load `path`; a missing file is an empty config only when it is the default path.
    pub fn load(path: &Path, explicit: bool) -> anyhow::Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default())
            }
            Err(e) => return Err(e).with_context(|| format!("read config {}", path.display())),
        };
        let cfg: Config =
            toml::from_str(&text).with_context(|| format!("parse config {}", path.display()))?;
        if let Some(v) = cfg.version {
            anyhow::ensure!(v <= 2, "config {}: unsupported version {v}", path.display());
        }
        Ok(cfg)
    }

    /// The collector's schedule from the `[gc]` table.
    pub fn gc_config(&self) -> anyhow::Result<berth_metadata::gc::GcConfig> {
        let mut c = berth_metadata::gc::GcConfig::default();
        let dur = |name: &str, v: &Option<String>, into: &mut Duration| -> anyhow::Result<()> {
            if let Some(s) = v {
                *into = humantime::parse_duration(s)
                    .with_context(|| format!("config gc.{name} {s:?}"))?;
            }
            Ok(())
        };
        dur(
            "schedule_interval",
            &self.gc.schedule_interval,
            &mut c.schedule_interval,
        )?;
        dur(
            "schedule_delay",
            &self.gc.schedule_delay,
            &mut c.schedule_delay,
        )?;
        dur(
            "startup_delay",
            &self.gc.startup_delay,
            &mut c.startup_delay,
        )?;
        if let Some(p) = self.gc.pause_threshold {
            c.pause_threshold = p;
        }
        anyhow::ensure!(
            c.schedule_interval > Duration::ZERO,
            "config gc.schedule_interval must be positive"
        );
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_config_and_rejects_unknown_keys() {
        let cfg: Config = toml::from_str(
            "root = \"/r\"\n[grpc]\naddress = \"/s.sock\"\n[gc]\nschedule_interval = \"1m\"\n",
        )
        .unwrap();
        assert_eq!(cfg.root.as_deref(), Some(Path::new("/r")));
        assert_eq!(
            cfg.gc_config().unwrap().schedule_interval,
            Duration::from_secs(60)
        );
        assert!(toml::from_str::<Config>("rooot = \"/r\"").is_err());
    }

    #[test]
    fn the_hosts_dir_comes_from_the_registry_table() {
        let cfg: Config = toml::from_str("[registry]\nconfig_path = \"/etc/x/certs.d\"\n").unwrap();
        assert_eq!(cfg.registry.hosts_dir(), Path::new("/etc/x/certs.d"));
        let cfg: Config = toml::from_str("").unwrap();
        assert_eq!(cfg.registry.hosts_dir(), Path::new(DEFAULT_HOSTS_DIR));
        assert!(toml::from_str::<Config>("[registry]\nmirrors = 1\n").is_err());
    }

    #[test]
    fn metrics_are_off_unless_an_address_is_given() {
        assert_eq!(Config::default().metrics.address(), None);
        let cfg: Config = toml::from_str("[metrics]\naddress = \"\"\n").unwrap();
        assert_eq!(cfg.metrics.address(), None);
        let cfg: Config = toml::from_str("[metrics]\naddress = \"127.0.0.1:1338\"\n").unwrap();
        assert_eq!(cfg.metrics.address(), Some("127.0.0.1:1338"));
        assert!(toml::from_str::<Config>("[metrics]\nport = 1\n").is_err());
    }

    #[test]
    fn the_cri_is_on_by_default_with_containerds_pause_image() {
        let cfg: Config = toml::from_str("").unwrap();
        assert!(cfg.cri.enabled());
        assert_eq!(cfg.cri.sandbox_image(), "registry.k8s.io/pause:3.9");
        let cfg: Config =
            toml::from_str("[cri]\nenabled = false\nsandbox_image = \"r.example/pause:1\"\n")
                .unwrap();
        assert!(!cfg.cri.enabled());
        assert_eq!(cfg.cri.sandbox_image(), "r.example/pause:1");
        assert!(toml::from_str::<Config>("[cri]\nsandbox = \"x\"\n").is_err());
    }

    #[test]
    fn missing_default_config_is_empty_but_missing_explicit_is_an_error() {
        let p = Path::new("/nonexistent/berth/config.toml");
        assert!(Config::load(p, false).unwrap().root.is_none());
        assert!(Config::load(p, true).is_err());
    }
}

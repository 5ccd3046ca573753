//! The options of `run` that shape a spec, and their parsing from command-line strings.

use std::fmt;
use std::str::FromStr;

use crate::error::{OciError, Result};

/// Which network a container is in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// Its own network namespace with only a loopback interface (what `ctr run` gives).
    #[default]
    None,
    /// The host's network namespace: the host's interfaces, and copies of its `/etc/hosts` and
    /// `/etc/resolv.conf`.
    Host,
}

impl FromStr for NetworkMode {
    type Err = OciError;

    fn from_str(s: &str) -> Result<NetworkMode> {
        match s {
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            _ => Err(OciError::invalid(format!(
                "network {s:?} (berth knows \"none\" and \"host\")"
            ))),
        }
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        })
    }
}

/// A `-v SRC:DST[:ro|rw]` bind mount of a host path into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Absolute path on the host.
    pub source: String,
    /// Absolute path in the container.
    pub destination: String,
    pub read_only: bool,
}

impl FromStr for BindMount {
    type Err = OciError;

    /// `SRC:DST`, `SRC:DST:ro`, `SRC:DST:rw`; both paths absolute.
    fn from_str(s: &str) -> Result<BindMount> {
        let bad = |why: &str| OciError::invalid(format!("volume {s:?}: {why}"));
        let parts: Vec<&str> = s.split(':').collect();
        let (source, destination, read_only) = match parts[..] {
            [src, dst] => (src, dst, false),
            [src, dst, "ro"] => (src, dst, true),
            [src, dst, "rw"] => (src, dst, false),
            [_, _, mode] => return Err(bad(&format!("unknown mode {mode:?} (ro or rw)"))),
            _ => return Err(bad("want SRC:DST[:ro|rw]")),
        };
        if !source.starts_with('/') {
            return Err(bad("the source must be an absolute path"));
        }
        if !destination.starts_with('/') {
            return Err(bad("the destination must be an absolute path"));
        }
        if destination == "/" {
            return Err(bad("cannot mount over the root"));
        }
        Ok(BindMount {
            source: source.to_string(),
            destination: destination.to_string(),
            read_only,
        })
    }
}

/// Resource limits (`linux.resources`), enforced by cgroups.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    /// Memory limit in bytes; beyond it the kernel's OOM killer kills in the container.
    pub memory: Option<i64>,
    /// Memory plus swap limit in bytes (equal to `memory`: no swap).
    pub memory_swap: Option<i64>,
    /// CPUs the container may use, as a CFS quota over a 100 ms period (`1.5`: 150 ms per
    /// 100 ms).
    pub cpus: Option<f64>,
    /// Most processes (threads included) at once; 0 or less: unlimited.
    pub pids_limit: Option<i64>,
}

/// The CFS period berth uses for `cpus`, in microseconds (Docker's).
pub const CPU_PERIOD: u64 = 100_000;

impl Resources {
    /// The CFS quota in microseconds per [`CPU_PERIOD`] for `cpus`.
    pub fn cpu_quota(cpus: f64) -> i64 {
        (cpus * CPU_PERIOD as f64).round() as i64
    }
}

/// A size as Docker's `RAMInBytes` reads it: a number with an optional binary unit (`b`, `k`,
/// `m`, `g`, `t`, `p`, each optionally followed by `b` or `ib`, any case): `20m` is 20 MiB.
pub fn parse_size(s: &str) -> Result<i64> {
    let bad = || OciError::invalid(format!("size {s:?}"));
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b').filter(|u| !u.is_empty()))
        .unwrap_or(&unit);
    let shift = match unit {
        "" | "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(bad()),
    };
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

/// A `--cpus` value: a positive number of CPUs, fractions allowed.
pub fn parse_cpus(s: &str) -> Result<f64> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && Resources::cpu_quota(v) >= 1000 => Ok(v),
        _ => Err(OciError::invalid(format!(
            "cpus {s:?} (a positive number, at least 0.01)"
        ))),
    }
}

/// The memory limits below which a container cannot even start (Docker's minimum).
pub const MIN_MEMORY: i64 = 6 << 20;

/// A `--memory` value, at least [`MIN_MEMORY`].
pub fn parse_memory(s: &str) -> Result<i64> {
    let v = parse_size(s)?;
    if v < MIN_MEMORY {
        return Err(OciError::invalid(format!(
            "memory {s:?}: the minimum is 6m"
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(parse_size("20m").unwrap(), 20 << 20);
        assert_eq!(parse_size("20M").unwrap(), 20 << 20);
        assert_eq!(parse_size("20MiB").unwrap(), 20 << 20);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("512b").unwrap(), 512);
        assert_eq!(parse_size("1kb").unwrap(), 1024);
        for bad in ["", "m", "20x", "-1m", "1e3"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_memory("1m").is_err());
        assert_eq!(parse_memory("6m").unwrap(), MIN_MEMORY);
    }

    #[test]
    fn cpus_are_positive_fractions() {
        assert_eq!(parse_cpus("1.5").unwrap(), 1.5);
        assert_eq!(Resources::cpu_quota(0.5), 50_000);
        for bad in ["0", "-1", "x", "0.001", "inf"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volumes_parse_with_modes() {
        let v: BindMount = "/data:/mnt:ro".parse().unwrap();
        assert_eq!(
            v,
            BindMount {
                source: "/data".into(),
                destination: "/mnt".into(),
                read_only: true
            }
        );
        assert!(!"/a:/b".parse::<BindMount>().unwrap().read_only);
        assert!(!"/a:/b:rw".parse::<BindMount>().unwrap().read_only);
        let e = "/a:/b:rx".parse::<BindMount>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "volume \"/a:/b:rx\": unknown mode \"rx\" (ro or rw): invalid argument"
        );
        assert!("rel:/b".parse::<BindMount>().is_err());
        assert!("/a:rel".parse::<BindMount>().is_err());
        assert!("/a".parse::<BindMount>().is_err());
        assert!("/a:/".parse::<BindMount>().is_err());
    }

    #[test]
    fn network_modes() {
        assert_eq!("host".parse::<NetworkMode>().unwrap(), NetworkMode::Host);
        assert_eq!(NetworkMode::default().to_string(), "none");
        assert!("bridge".parse::<NetworkMode>().is_err());
    }
}

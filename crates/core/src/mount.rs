//! Mounts as data.
//!
//! A snapshotter does not mount anything: it answers with a list of [`Mount`]s that describe how
//! to assemble a snapshot's filesystem (containerd's `mount.Mount`). Whoever needs the files (the
//! tar applier, a task's rootfs) performs them with `berth-mount`, or hands them on over gRPC.
//!
//! A mount is the four arguments of `mount(8)`: a filesystem **type** (`kind` here, `"bind"`,
//! `"overlay"`, `"tmpfs"`…), a **source** (a directory for a bind, a device, or just a name for
//! overlay), **options** (`ro`, `rbind`, `nosuid`… become mount flags; anything else, such as
//! `lowerdir=…`, is filesystem data), and an optional **target**, the path inside the mount root
//! where this mount goes (empty: the root itself). Several mounts are applied in order, each on
//! top of the previous ones.

use serde::{Deserialize, Serialize};

/// One mount, as data (containerd's `Mount`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mount {
    /// The filesystem type (`"bind"`, `"overlay"`, …), containerd's `Mount.Type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What is mounted: a directory for a bind mount, `"overlay"` for overlay, a device, …
    pub source: String,
    /// Where inside the mount root this mount goes, relative to it; `None` for the root itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `mount -o` options: flags (`ro`, `rbind`, `nosuid`, …) and filesystem data (`lowerdir=…`).
    #[serde(default)]
    pub options: Vec<String>,
}

impl Mount {
    /// A mount of `kind` from `source` with `options`, on the root.
    pub fn new(
        kind: impl Into<String>,
        source: impl Into<String>,
        options: impl IntoIterator<Item = impl Into<String>>,
    ) -> Mount {
        Mount {
            kind: kind.into(),
            source: source.into(),
            target: None,
            options: options.into_iter().map(Into::into).collect(),
        }
    }

    /// True when the mount is read-only: it has the `ro` option, or it is an overlay without an
    /// `upperdir` (overlayfs is then read-only by construction).
    pub fn is_read_only(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
            || (self.kind == "overlay" && self.option_value("upperdir").is_none())
    }

    /// The value of the `key=value` option `key`, if present (the last one wins, as for the kernel).
    pub fn option_value(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find_map(|o| o.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_detection() {
        assert!(Mount::new("bind", "/a", ["ro", "rbind"]).is_read_only());
        assert!(!Mount::new("bind", "/a", ["rw", "rbind"]).is_read_only());
        assert!(Mount::new("overlay", "overlay", ["lowerdir=/a:/b"]).is_read_only());
        let rw = Mount::new(
            "overlay",
            "overlay",
            ["workdir=/w", "upperdir=/u", "lowerdir=/a"],
        );
        assert!(!rw.is_read_only());
        assert_eq!(rw.option_value("upperdir"), Some("/u"));
        assert_eq!(rw.option_value("upper"), None);
    }
}

//! Mount options: which are flags for `mount(2)` and which are filesystem data, as containerd's
//! `parseMountOptions`; and the lowerdir compaction that lets overlays of many layers fit in a page.

use std::path::PathBuf;

use rustix::mount::{MountFlags, MountPropagationFlags};

use crate::error::MountError;

/// Options sorted into what `mount(2)` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedOptions {
    /// `MS_*` flags (without `MS_REMOUNT` and propagation flags, which are applied separately).
    pub flags: MountFlags,
    /// The `remount` option was given: change the flags or data of an existing mount.
    pub remount: bool,
    /// Propagation change (`private`, `rshared`, …) applied after the mount, if not empty.
    pub propagation: MountPropagationFlags,
    /// Everything that is not a flag: filesystem data, joined with `,` for the kernel.
    pub data: Vec<String>,
}

/// Flag options: name, whether the option clears the flag (`rw` clears `MS_RDONLY`), the flag.
const FLAGS: &[(&str, bool, MountFlags)] = &[
    ("async", true, MountFlags::SYNCHRONOUS),
    ("atime", true, MountFlags::NOATIME),
    ("bind", false, MountFlags::BIND),
    ("defaults", false, MountFlags::empty()),
    ("dev", true, MountFlags::NODEV),
    ("diratime", true, MountFlags::NODIRATIME),
    ("dirsync", false, MountFlags::DIRSYNC),
    ("exec", true, MountFlags::NOEXEC),
    ("mand", false, MountFlags::PERMIT_MANDATORY_FILE_LOCKING),
    ("noatime", false, MountFlags::NOATIME),
    ("nodev", false, MountFlags::NODEV),
    ("nodiratime", false, MountFlags::NODIRATIME),
    ("noexec", false, MountFlags::NOEXEC),
    ("nomand", true, MountFlags::PERMIT_MANDATORY_FILE_LOCKING),
    ("norelatime", true, MountFlags::RELATIME),
    ("nostrictatime", true, MountFlags::STRICTATIME),
    ("nosuid", false, MountFlags::NOSUID),
    ("nosymfollow", false, MountFlags::NOSYMFOLLOW),
    ("rbind", false, MountFlags::BIND.union(MountFlags::REC)),
    ("relatime", false, MountFlags::RELATIME),
    ("ro", false, MountFlags::RDONLY),
    ("rw", true, MountFlags::RDONLY),
    ("strictatime", false, MountFlags::STRICTATIME),
    ("suid", true, MountFlags::NOSUID),
    ("sync", false, MountFlags::SYNCHRONOUS),
];

/// Propagation options and their flags (the `r` forms add `MS_REC`).
const PROPAGATION: &[(&str, MountPropagationFlags)] = &[
    ("private", MountPropagationFlags::PRIVATE),
    (
        "rprivate",
        MountPropagationFlags::PRIVATE.union(MountPropagationFlags::REC),
    ),
    ("shared", MountPropagationFlags::SHARED),
    (
        "rshared",
        MountPropagationFlags::SHARED.union(MountPropagationFlags::REC),
    ),
    ("slave", MountPropagationFlags::SLAVE),
    (
        "rslave",
        MountPropagationFlags::SLAVE.union(MountPropagationFlags::REC),
    ),
    ("unbindable", MountPropagationFlags::UNBINDABLE),
    (
        "runbindable",
        MountPropagationFlags::UNBINDABLE.union(MountPropagationFlags::REC),
    ),
];

/// Sort `options` into flags and data, in order (a later `rw` undoes an earlier `ro`).
///
/// `loop` (attach a loop device to a file source) is not supported and is refused.
pub fn parse_options(options: &[String]) -> Result<ParsedOptions, MountError> {
    let mut parsed = ParsedOptions {
        flags: MountFlags::empty(),
        remount: false,
        propagation: MountPropagationFlags::empty(),
        data: Vec::new(),
    };
    for option in options {
        if let Some((_, clear, flag)) = FLAGS.iter().find(|(name, _, _)| name == option) {
            if *clear {
                parsed.flags.remove(*flag);
            } else {
                parsed.flags.insert(*flag);
            }
        } else if let Some((_, flag)) = PROPAGATION.iter().find(|(name, _)| name == option) {
            parsed.propagation.insert(*flag);
        } else if option == "remount" {
            parsed.remount = true;
        } else if option == "loop" {
            return Err(MountError::Unsupported(option.clone()));
        } else {
            parsed.data.push(option.clone());
        }
    }
    Ok(parsed)
}

/// Shorten an overlay's `lowerdir=` by making its layers relative to their common parent
/// directory, as containerd's `compactLowerdirOption` does.
///
/// The kernel takes at most a page of mount data; an overlay of a hundred layers under
/// `/var/lib/…/snapshots/<id>/fs` does not fit. Layers of one snapshotter share the
/// `…/snapshots/` prefix, so `lowerdir=12/fs:11/fs:…` with the mounting thread's working directory
/// in `…/snapshots/` names the same directories in far fewer bytes.
///
/// Returns the directory to mount from and the new options (the `lowerdir=` option moves to the
/// end), or `None` when there is nothing to gain (one layer, no common directory but `/`).
pub fn compact_lowerdir(options: &[String]) -> Option<(PathBuf, Vec<String>)> {
    let idx = options.iter().position(|o| o.starts_with("lowerdir="))?;
    let dirs: Vec<&str> = options[idx]["lowerdir=".len()..].split(':').collect();
    if dirs.len() < 2 {
        return None;
    }
    let common = longest_common_prefix(&dirs);
    // Back up to a whole directory: the prefix of `…/snapshots/1` and `…/snapshots/12` is
    // `…/snapshots/1`, whose directory part is `…/snapshots`.
    let common_dir = &common[..common.rfind('/')?];
    if common_dir.is_empty() || !common_dir.starts_with('/') {
        return None;
    }
    let strip = common_dir.len() + 1;
    if dirs.iter().any(|d| d.len() <= strip) {
        return None;
    }
    let relative: Vec<&str> = dirs.iter().map(|d| &d[strip..]).collect();
    let mut new_options: Vec<String> = options
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != idx)
        .map(|(_, o)| o.clone())
        .collect();
    new_options.push(format!("lowerdir={}", relative.join(":")));
    Some((PathBuf::from(common_dir), new_options))
}

fn longest_common_prefix<'a>(strs: &[&'a str]) -> &'a str {
    let Some(first) = strs.first() else {
        return "";
    };
    let mut len = first.len();
    for s in &strs[1..] {
        len = first
            .bytes()
            .zip(s.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    // Stay on a character boundary.
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    &first[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_and_data_are_sorted_in_order() {
        let p = parse_options(&strings(&[
            "ro",
            "rbind",
            "nosuid",
            "rw",
            "rprivate",
            "lowerdir=/a",
            "index=off",
        ]))
        .unwrap();
        assert_eq!(
            p.flags,
            MountFlags::BIND | MountFlags::REC | MountFlags::NOSUID
        );
        assert_eq!(
            p.propagation,
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC
        );
        assert_eq!(p.data, strings(&["lowerdir=/a", "index=off"]));
        assert!(!p.remount);
        assert!(parse_options(&strings(&["remount", "ro"])).unwrap().remount);
        assert!(parse_options(&strings(&["loop"])).is_err());
    }

    #[test]
    fn compaction_makes_layers_relative_to_their_common_dir() {
        let opts = strings(&[
            "index=off",
            "lowerdir=/r/snapshots/12/fs:/r/snapshots/1/fs:/r/snapshots/100/fs",
            "workdir=/r/snapshots/13/work",
        ]);
        let (dir, new) = compact_lowerdir(&opts).unwrap();
        assert_eq!(dir, PathBuf::from("/r/snapshots"));
        assert_eq!(
            new,
            strings(&[
                "index=off",
                "workdir=/r/snapshots/13/work",
                "lowerdir=12/fs:1/fs:100/fs"
            ])
        );
    }

    #[test]
    fn compaction_declines_when_nothing_is_gained() {
        assert!(compact_lowerdir(&strings(&["lowerdir=/r/s/1/fs"])).is_none());
        assert!(compact_lowerdir(&strings(&["lowerdir=/a/x:/b/y"])).is_none());
        assert!(compact_lowerdir(&strings(&["upperdir=/a"])).is_none());
        assert!(compact_lowerdir(&strings(&["lowerdir=/x:/y"])).is_none());
    }
}

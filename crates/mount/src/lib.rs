//! berth-mount: performs [`Mount`] data on the host.
//!
//! Snapshotters describe filesystems as [`Mount`]s (see [`berth_core::mount`]); this crate is
//! where they become `mount(2)` calls, following containerd's `mount_linux.go`:
//!
//! - options are sorted into `MS_*` flags and filesystem data ([`parse_options`]); `rbind` is
//!   `MS_BIND|MS_REC`, `ro` on a bind is applied by a second, remounting call (the kernel ignores
//!   `MS_RDONLY` on the first bind call), propagation options (`rprivate`, …) by a third;
//! - an overlay whose data does not fit in a page (a hundred layers or so) is mounted with its
//!   `lowerdir=` paths made relative to their common directory ([`compact_lowerdir`]), from a
//!   thread that has its own working directory there (`unshare(CLONE_FS)` + `chdir`), so the rest
//!   of the process keeps its own;
//! - [`unmount`] retries while the target is busy; [`unmount_all`] peels every mount stacked on a
//!   target.
//!
//! Mounting needs `CAP_SYS_ADMIN` (root). Architecture invariant: besides the runtime's own
//! rootfs handling, this is the only crate that mounts.

mod error;
mod options;

use std::ffi::CString;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::thread;
use std::time::Duration;

pub use berth_core::mount::Mount;
use rustix::io::Errno;
pub use rustix::mount::UnmountFlags;
use rustix::mount::{MountFlags, MountPropagationFlags};

pub use error::MountError;
pub use options::{compact_lowerdir, parse_options, ParsedOptions};

/// Mount data must be shorter than a page; past `page - 512` bytes an overlay is compacted first
/// (containerd's margin).
fn page_size() -> usize {
    rustix::param::page_size()
}

/// Mount each of `mounts`, in order, on `target` (or on `target/<mount.target>`).
///
/// On failure the mounts already made are left in place; [`unmount_all`] undoes them.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<(), MountError> {
    mounts.iter().try_for_each(|m| mount(m, target))
}

/// Perform one mount on `target` (or on `target/<m.target>` when the mount names a target).
pub fn mount(m: &Mount, target: &Path) -> Result<(), MountError> {
    let target = match m.target.as_deref() {
        Some(sub) if !sub.is_empty() => join_inside(target, sub)?,
        _ => target.to_path_buf(),
    };
    // The mount may happen from another working directory: make the target absolute first.
    let target = std::path::absolute(&target).map_err(|err| MountError::Io {
        context: format!("resolve mount target {}", target.display()),
        err,
    })?;
    let parsed = parse_options(&m.options)?;
    let mut data_options = parsed.data.clone();
    let mut chdir = None;
    let limit = page_size();
    if m.kind == "overlay" && data_options.join(",").len() >= limit - 512 {
        if let Some((dir, compacted)) = compact_lowerdir(&data_options) {
            chdir = Some(dir);
            data_options = compacted;
        }
    }
    let data = data_options.join(",");
    if data.len() >= limit {
        return Err(MountError::OptionsTooLong {
            len: data.len(),
            limit,
        });
    }
    let mount_err = |err: Errno| MountError::Mount {
        kind: m.kind.clone(),
        src: m.source.clone(),
        target: target.clone(),
        err: io::Error::from(err),
    };

    // A remount without data only changes flags; that happens below for binds, and here
    // otherwise (containerd: "remounting with changed data needs the mount call").
    if !parsed.remount || !data.is_empty() {
        let cdata = CString::new(data.clone()).map_err(|_| MountError::Io {
            context: format!("mount data {data:?}"),
            err: io::Error::new(io::ErrorKind::InvalidInput, "contains a NUL byte"),
        })?;
        let flags = parsed.flags;
        if parsed.remount {
            rustix::mount::mount_remount(&target, flags, cdata.as_c_str()).map_err(mount_err)?;
        } else {
            let call = || {
                rustix::mount::mount2(
                    Some(m.source.as_str()),
                    &target,
                    Some(m.kind.as_str()),
                    flags,
                    (!data.is_empty()).then_some(cdata.as_c_str()),
                )
            };
            match &chdir {
                None => call().map_err(mount_err)?,
                Some(dir) => in_directory(dir, call)
                    .map_err(|err| MountError::Io {
                        context: format!("mount from {}", dir.display()),
                        err,
                    })?
                    .map_err(mount_err)?,
            }
        }
    }

    if !parsed.propagation.is_empty() {
        rustix::mount::mount_change(&target, parsed.propagation | MountPropagationFlags::SILENT)
            .map_err(|err| MountError::Propagation {
                target: target.clone(),
                err: err.into(),
            })?;
    }

    // The kernel ignores MS_RDONLY when creating a bind mount: remount it read-only.
    let bind_ro = MountFlags::BIND | MountFlags::RDONLY;
    if parsed.flags.contains(bind_ro) {
        let flags = parsed.flags.difference(MountFlags::REC);
        rustix::mount::mount_remount(&target, flags, c"").map_err(|err| {
            MountError::RemountReadOnly {
                target: target.clone(),
                err: err.into(),
            }
        })?;
    }
    Ok(())
}

/// Run `f` on a thread whose working directory is `dir`, without changing the process's.
fn in_directory<R: Send>(dir: &Path, f: impl FnOnce() -> R + Send) -> io::Result<R> {
    thread::scope(|s| {
        s.spawn(|| -> io::Result<R> {
            // After this the thread has its own cwd/root/umask: chdir does not leak.
            rustix::thread::unshare(rustix::thread::UnshareFlags::FS)?;
            rustix::process::chdir(dir)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("mount thread panicked")))
    })
}

/// `root/sub` where `sub` must be relative and may not climb out of `root`.
fn join_inside(root: &Path, sub: &str) -> Result<PathBuf, MountError> {
    let sub_path = Path::new(sub);
    let mut out = root.to_path_buf();
    for c in sub_path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return Err(MountError::BadTarget(sub.to_string())),
        }
    }
    Ok(out)
}

/// Unmount `target`, retrying for a while (50 × 50 ms) when it is busy. A target that is not a
/// mount point (`EINVAL`) is not an error, as in containerd.
pub fn unmount(target: &Path, flags: UnmountFlags) -> Result<(), MountError> {
    match unmount_once(target, flags) {
        Err(Errno::INVAL) => Ok(()),
        other => other.map_err(|err| MountError::Unmount {
            target: target.to_path_buf(),
            err: err.into(),
        }),
    }
}

fn unmount_once(target: &Path, flags: UnmountFlags) -> Result<(), Errno> {
    for _ in 0..50 {
        match rustix::mount::unmount(target, flags) {
            Err(Errno::BUSY) => thread::sleep(Duration::from_millis(50)),
            other => return other,
        }
    }
    Err(Errno::BUSY)
}

/// Unmount everything stacked on `target`, until it is no mount point any more. A target that
/// does not exist is fine.
pub fn unmount_all(target: &Path, flags: UnmountFlags) -> Result<(), MountError> {
    if !target.exists() {
        return Ok(());
    }
    loop {
        match unmount_once(target, flags) {
            Ok(()) => continue,
            Err(Errno::INVAL) => return Ok(()),
            Err(err) => {
                return Err(MountError::Unmount {
                    target: target.to_path_buf(),
                    err: err.into(),
                })
            }
        }
    }
}

/// Mount `mounts` on a fresh temporary directory, run `f` on it, then unmount and remove the
/// directory (even if `f` panics), as containerd's `mount.WithTempMount`.
pub fn with_temp_mount<R>(mounts: &[Mount], f: impl FnOnce(&Path) -> R) -> Result<R, MountError> {
    let dir = tempfile::Builder::new()
        .prefix("berth-mount-")
        .tempdir()
        .map_err(|err| MountError::Io {
            context: "create temporary mount point".into(),
            err,
        })?;
    let guard = TempMount {
        path: dir.path().to_path_buf(),
        armed: true,
    };
    mount_all(mounts, &guard.path)?;
    let out = f(&guard.path);
    guard.release()?;
    Ok(out)
}

/// Unmounts its path when dropped, unless released (which reports the unmount's error).
struct TempMount {
    path: PathBuf,
    armed: bool,
}

impl TempMount {
    fn release(mut self) -> Result<(), MountError> {
        self.armed = false;
        unmount_all(&self.path, UnmountFlags::empty())
    }
}

impl Drop for TempMount {
    fn drop(&mut self) {
        if self.armed {
            let _ = unmount_all(&self.path, UnmountFlags::DETACH);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_stay_inside_the_root() {
        let root = Path::new("/r");
        assert_eq!(join_inside(root, "a/./b").unwrap(), PathBuf::from("/r/a/b"));
        assert!(join_inside(root, "../x").is_err());
        assert!(join_inside(root, "/etc").is_err());
    }

    #[test]
    fn too_long_data_is_refused_before_any_syscall() {
        let long = format!("lowerdir=/{}", "x".repeat(8192));
        let m = Mount::new("tmpfs", "tmpfs", [long]);
        let err = mount(&m, Path::new("/nonexistent-berth-target")).unwrap_err();
        assert!(matches!(err, MountError::OptionsTooLong { .. }), "{err}");
        assert_eq!(err.kind(), berth_core::ErrorKind::InvalidArgument);
    }
}

//! Containers made from images, and their lifecycle: what `berth run`, `start`, `stop`, `rm`
//! do, and what the CRI server will do inside berthd.
//!
//! A container made here is a container record (the spec, made from the image's config and the
//! run options; the snapshot whose key is the container id) plus at most one task. It also has
//! a **directory** on the host, `<state>/containers/<namespace>/<id>/` (mode 0700), holding its
//! `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` (bind-mounted into it) and its **log**
//! (the detached task's stdout and stderr). The directory and the log are derived from the
//! namespace and the container id, both validated identifiers, never read from a label: any
//! API client can set labels. A few labels record what the image said (`berth/stop-signal`)
//! and, once a task has been **reaped** (deleted after it exited), how it ended
//! (`berth/exit-code`, `berth/exited-at`, `berth/oom-killed`), so that `ps -a` still shows it.

mod lifecycle;
mod new;

use std::path::{Path, PathBuf};

pub use lifecycle::{
    oom_killed, open_log, reap, remove, start, state_of, stop, task_of, OomEvents, OomWatch, State,
};
pub use new::{find_image, new_container, Created, HostFacts, NewContainer};

use crate::error::{OpsError, Result};

/// The signal `stop` sends first (the image's `StopSignal`).
pub const LABEL_STOP_SIGNAL: &str = "berth/stop-signal";
/// How the last task ended, recorded when it was reaped.
pub const LABEL_EXIT_CODE: &str = "berth/exit-code";
pub const LABEL_EXITED_AT: &str = "berth/exited-at";
pub const LABEL_OOM_KILLED: &str = "berth/oom-killed";

/// The directory of container `id` of namespace `ns` under `state_dir`:
/// `<state_dir>/containers/<ns>/<id>`. Both names are checked to be identifiers first, so the
/// path never leaves `state_dir`.
pub fn container_dir(state_dir: &Path, ns: &str, id: &str) -> Result<PathBuf> {
    berth_core::identifiers::validate(ns).map_err(|e| OpsError::from(e).context("namespace"))?;
    berth_core::identifiers::validate(id).map_err(|e| OpsError::from(e).context("container id"))?;
    Ok(state_dir.join("containers").join(ns).join(id))
}

/// The log file of container `id`: `log` in its directory.
pub fn log_path(state_dir: &Path, ns: &str, id: &str) -> Result<PathBuf> {
    Ok(container_dir(state_dir, ns, id)?.join("log"))
}

/// Make `dir` and its missing parents, each new one with mode 0700.
pub(crate) fn make_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(OpsError::io(format!("create {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_dirs_stay_under_the_state_dir() {
        let state = Path::new("/run/berth");
        assert_eq!(
            container_dir(state, "default", "c1").unwrap(),
            Path::new("/run/berth/containers/default/c1")
        );
        assert_eq!(
            log_path(state, "default", "c1").unwrap(),
            Path::new("/run/berth/containers/default/c1/log")
        );
        for (ns, id) in [
            ("default", ".."),
            ("..", "c1"),
            ("default", "a/b"),
            ("", "c1"),
        ] {
            assert!(container_dir(state, ns, id).is_err(), "{ns:?} {id:?}");
        }
    }
}

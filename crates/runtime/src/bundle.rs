//! Bundles: the directory a shim runs a task in, and the only record of that task.
//!
//! An OCI **bundle** is a directory holding `config.json` (the runtime spec) and `rootfs/` (the
//! root filesystem, which the shim mounts from the task's rootfs mounts). berth makes one per
//! task at `<state>/io.containerd.runtime.v2.task/<namespace>/<id>/`, as containerd does, and
//! keeps in it what it needs to find the task again after a restart:
//!
//! - `address`: the shim's ttrpc address (written by the shim's `start`, or by berth);
//! - `shim.json`: the runtime name and the resolved shim binary (to run `<shim> delete` after the
//!   shim died);
//! - `log`: a FIFO the shim writes its log to, read by berthd;
//! - `work`: a symlink to a persistent work directory under
//!   `<root>/io.containerd.runtime.v2.task/<namespace>/<id>/` (the shim's scratch space).
//!
//! Modes: the bundle is 0700 and `config.json` (the container's environment, its secrets) 0600,
//! as containerd (CVE-2021-41103); with a user namespace the bundle is 0710 and group-owned by
//! the host gid of the container's root, which must traverse it to reach `rootfs/` (0711).
//!
//! The state directory is on tmpfs: a reboot forgets every task, which is right, since their
//! processes are gone too.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// The plugin directory name containerd uses, under both the state and root directories.
pub const TASK_DIR: &str = "io.containerd.runtime.v2.task";

/// What berth records about a task's shim in its bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ShimRecord {
    /// The container's runtime name.
    pub runtime: String,
    /// The shim binary it resolved to.
    pub binary: PathBuf,
}

/// A task's bundle directory.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub namespace: String,
    pub id: String,
    /// `<state>/io.containerd.runtime.v2.task/<ns>/<id>`.
    pub path: PathBuf,
    /// `<root>/io.containerd.runtime.v2.task/<ns>/<id>`.
    pub work: PathBuf,
}

fn io_err(path: &Path, source: std::io::Error) -> RuntimeError {
    RuntimeError::Bundle {
        path: path.display().to_string(),
        source,
    }
}

fn mkdir_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| io_err(path, e))
}

impl Bundle {
    /// The bundle of task `id` in `ns` (whether or not it exists).
    pub fn at(state: &Path, root: &Path, ns: &str, id: &str) -> Bundle {
        Bundle {
            namespace: ns.to_string(),
            id: id.to_string(),
            path: state.join(TASK_DIR).join(ns).join(id),
            work: root.join(TASK_DIR).join(ns).join(id),
        }
    }

    /// Create the bundle: the directory (which must not exist), `config.json` with `spec`,
    /// `rootfs/`, the work directory and its `work` link.
    pub fn create(state: &Path, root: &Path, ns: &str, id: &str, spec: &[u8]) -> Result<Bundle> {
        berth_core::identifiers::validate(ns)?;
        berth_core::identifiers::validate(id)?;
        let b = Bundle::at(state, root, ns, id);
        let gid = remapped_gid(spec)?;
        let parent = b.path.parent().expect("bundle has a parent");
        mkdir_mode(parent, 0o711)?;
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&b.path)
                .map_err(|e| io_err(&b.path, e))?;
        }
        let made = (|| {
            if let Some(gid) = gid {
                // The container's root must traverse the bundle to reach its rootfs.
                use std::os::unix::fs::PermissionsExt;
                std::os::unix::fs::chown(&b.path, None, Some(gid))
                    .map_err(|e| io_err(&b.path, e))?;
                std::fs::set_permissions(&b.path, std::fs::Permissions::from_mode(0o710))
                    .map_err(|e| io_err(&b.path, e))?;
            }
            mkdir_mode(&b.work, 0o711)?;
            std::os::unix::fs::symlink(&b.work, b.path.join("work"))
                .map_err(|e| io_err(&b.path.join("work"), e))?;
            mkdir_mode(&b.rootfs(), 0o711)?;
            write_private(&b.path.join("config.json"), spec)
        })();
        if let Err(e) = made {
            let _ = b.delete();
            return Err(e);
        }
        Ok(b)
    }

    /// Where the root filesystem is mounted.
    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    /// The shim's log FIFO.
    pub fn log_fifo(&self) -> PathBuf {
        self.path.join("log")
    }

    /// The shim's ttrpc address, as recorded in `address`.
    pub fn address(&self) -> Option<String> {
        let a = std::fs::read_to_string(self.path.join("address")).ok()?;
        let a = a.trim();
        (!a.is_empty()).then(|| a.to_string())
    }

    /// Record the shim's address (atomically: written aside, then renamed).
    pub fn write_address(&self, address: &str) -> Result<()> {
        write_atomic(&self.path.join("address"), address.as_bytes())
    }

    pub(crate) fn write_shim_record(&self, rec: &ShimRecord) -> Result<()> {
        let bytes = serde_json::to_vec(rec).expect("shim record serializes");
        write_atomic(&self.path.join("shim.json"), &bytes)
    }

    pub(crate) fn shim_record(&self) -> Option<ShimRecord> {
        let bytes = std::fs::read(self.path.join("shim.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Remove the bundle: unmount whatever is left on `rootfs` (a shim that died before
    /// unmounting), then remove the bundle and its work directory. Removing one that is gone
    /// is not an error.
    pub fn delete(&self) -> Result<()> {
        berth_mount::unmount_all(&self.rootfs(), berth_mount::UnmountFlags::empty())
            .map_err(|e| io_err(&self.rootfs(), std::io::Error::other(e.to_string())))?;
        for dir in [&self.path, &self.work] {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(dir, e)),
            }
        }
        Ok(())
    }

    /// Every bundle under `state` (namespace, id), skipping hidden entries.
    pub fn list(state: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let dirs = |p: &Path| -> Vec<String> {
            std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        };
        let base = state.join(TASK_DIR);
        for ns in dirs(&base) {
            for id in dirs(&base.join(&ns)) {
                out.push((ns.clone(), id));
            }
        }
        out.sort();
        out
    }

    /// Every work directory under `root` (namespace, id).
    pub(crate) fn list_work(root: &Path) -> Vec<(String, String)> {
        Bundle::list(root)
    }
}

/// Writes a new file readable by its owner only (it may hold the container's secrets).
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| io_err(path, e))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// The host gid that the container's gid 0 maps to, when the spec asks for a user namespace
/// with gid mappings (containerd's `remappedGID`); `None` without one (or mapped to 0, or no
/// spec at all).
fn remapped_gid(spec: &[u8]) -> Result<Option<u32>> {
    #[derive(Deserialize)]
    struct Spec {
        linux: Option<Linux>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Linux {
        #[serde(default)]
        gid_mappings: Vec<IdMapping>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct IdMapping {
        #[serde(rename = "containerID")]
        container_id: u32,
        #[serde(rename = "hostID")]
        host_id: u32,
    }
    if spec.is_empty() {
        return Ok(None);
    }
    let spec: Spec = serde_json::from_slice(spec).map_err(|e| {
        RuntimeError::from(berth_core::Error::invalid_argument(format!(
            "task spec is not a runtime spec: {e}"
        )))
    })?;
    Ok(spec
        .linux
        .into_iter()
        .flat_map(|l| l.gid_mappings)
        .find(|m| m.container_id == 0)
        .map(|m| m.host_id)
        .filter(|gid| *gid != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_record_delete() {
        let d = tempfile::tempdir().unwrap();
        let (state, root) = (d.path().join("state"), d.path().join("root"));
        let b = Bundle::create(&state, &root, "ns", "c1", b"{\"ociVersion\":\"1.0.2\"}").unwrap();
        assert_eq!(
            b.path,
            state.join("io.containerd.runtime.v2.task/ns/c1"),
            "containerd's layout"
        );
        assert!(b.rootfs().is_dir());
        assert_eq!(
            std::fs::read(b.path.join("config.json")).unwrap(),
            b"{\"ociVersion\":\"1.0.2\"}"
        );
        assert_eq!(std::fs::read_link(b.path.join("work")).unwrap(), b.work);
        // A second create of the same task fails.
        assert!(Bundle::create(&state, &root, "ns", "c1", b"{}").is_err());
        assert!(Bundle::create(&state, &root, "ns", "a/b", b"{}").is_err());
        assert_eq!(b.address(), None);
        b.write_address("unix:///run/x\n").unwrap();
        assert_eq!(b.address().as_deref(), Some("unix:///run/x"));
        let rec = ShimRecord {
            runtime: "io.containerd.runc.v2".into(),
            binary: "/usr/bin/containerd-shim-runc-v2".into(),
        };
        b.write_shim_record(&rec).unwrap();
        assert_eq!(b.shim_record(), Some(rec));
        assert_eq!(Bundle::list(&state), vec![("ns".into(), "c1".into())]);
        b.delete().unwrap();
        assert!(!b.path.exists() && !b.work.exists());
        b.delete().unwrap();
        assert!(Bundle::list(&state).is_empty());
    }

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn bundles_are_private() {
        let d = tempfile::tempdir().unwrap();
        let (state, root) = (d.path().join("state"), d.path().join("root"));
        let b = Bundle::create(&state, &root, "ns", "c1", b"{}").unwrap();
        assert_eq!(mode(&b.path), 0o700, "bundle (containerd: 0700)");
        assert_eq!(mode(&b.path.join("config.json")), 0o600);
        assert_eq!(mode(&b.rootfs()), 0o711);
        assert_eq!(mode(b.path.parent().unwrap()), 0o711, "namespace dir");
        assert_eq!(mode(&state.join(TASK_DIR)), 0o711);
        b.write_address("unix:///run/x").unwrap();
        assert_eq!(mode(&b.path.join("address")), 0o600);
        assert!(Bundle::create(&state, &root, "ns", "c2", b"not json").is_err());
    }

    #[test]
    fn a_user_namespace_bundle_is_reachable_by_its_mapped_root_group() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let (state, root) = (d.path().join("state"), d.path().join("root"));
        let me = rustix::process::getegid().as_raw();
        // Mapped to the caller's own gid, so the chown needs no privilege.
        let spec = format!(
            r#"{{"linux":{{"uidMappings":[{{"containerID":0,"hostID":100000,"size":65536}}],
               "gidMappings":[{{"containerID":1,"hostID":200001,"size":10}},
                              {{"containerID":0,"hostID":{me},"size":1}}]}}}}"#
        );
        if me == 0 {
            // Root: map to a real unprivileged gid instead.
            let spec = spec.replace(&format!("\"hostID\":{me},"), "\"hostID\":100000,");
            let b = Bundle::create(&state, &root, "ns", "u", spec.as_bytes()).unwrap();
            assert_eq!(mode(&b.path), 0o710);
            assert_eq!(std::fs::metadata(&b.path).unwrap().gid(), 100000);
            assert_eq!(mode(&b.path.join("config.json")), 0o600);
            return;
        }
        let b = Bundle::create(&state, &root, "ns", "u", spec.as_bytes()).unwrap();
        assert_eq!(mode(&b.path), 0o710);
        assert_eq!(std::fs::metadata(&b.path).unwrap().gid(), me);
    }
}

//! What both backends share: the directory layout, the metastore, and the order of filesystem
//! and metadata steps that keeps them consistent across crashes.
//!
//! ```text
//! <root>/metadata.db            the metastore (see `metastore`)
//! <root>/snapshots/<id>/fs      the snapshot's files (overlay: its upper directory)
//! <root>/snapshots/<id>/work    overlay's work directory (active snapshots only)
//! <root>/snapshots/new-*        a snapshot being prepared, not yet recorded
//! <root>/snapshots/rm-*         a directory being reclaimed by cleanup
//! ```
//!
//! Creating: the directory is built under `new-*` (for the native backend this is the copy of
//! the parent, done outside any transaction), then, inside the write transaction that records
//! the snapshot, renamed to `<id>`. Removing: the record goes first, then the directory.
//! Whatever a crash leaves in `snapshots/` that no record names is removed by `cleanup`.
//!
//! In-process, `ops` is held shared by operations that create or remove directories and
//! exclusively by `cleanup` while it decides what is unreferenced, so it never takes a `new-*`
//! directory that an operation in flight is about to record.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use berth_core::filters::Filter;
use berth_core::snapshots::{Info, Kind, Mount, Usage};

use crate::error::{Result, SnapshotError};
use crate::fsutil::disk_usage;
use crate::metastore::{MetaStore, Snapshot};

/// The backend-specific part of a snapshotter.
pub trait Layout: Send + Sync + std::fmt::Debug + 'static {
    /// Fill the new snapshot directory `dir` (to become `snapshots/<id>`) for a snapshot of
    /// `kind` on the parents `parent_ids` (nearest first).
    fn populate(&self, paths: &Paths, kind: Kind, dir: &Path, parent_ids: &[u64]) -> Result<()>;
    /// The mounts of the active snapshot or view `s`.
    fn mounts(&self, paths: &Paths, s: &Snapshot) -> Vec<Mount>;
}

/// Where things are under a snapshotter's root.
#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub fn dir(&self, id: u64) -> PathBuf {
        self.snapshots().join(id.to_string())
    }

    pub fn fs(&self, id: u64) -> PathBuf {
        self.dir(id).join("fs")
    }

    pub fn work(&self, id: u64) -> PathBuf {
        self.dir(id).join("work")
    }

    /// `fs` of `id` as a mount source string.
    pub fn fs_str(&self, id: u64) -> String {
        self.fs(id).to_string_lossy().into_owned()
    }
}

/// A snapshotter: the shared engine over a backend's [`Layout`].
#[derive(Debug)]
pub struct Engine<L> {
    pub paths: Paths,
    ms: MetaStore,
    ops: RwLock<()>,
    pub layout: L,
}

fn mkdir_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(SnapshotError::io(format!("create {}", path.display()))(e)),
    }
}

/// Create `path` and its missing parents with mode 0700.
pub(crate) fn mkdir_private_all(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(SnapshotError::io(format!("create {}", path.display())))
}

/// Remove a directory tree, logging instead of failing: the caller has already committed the
/// metadata change, and `cleanup` retries whatever is left.
fn remove_tree(path: &Path) {
    match fs::remove_dir_all(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "failed to remove snapshot directory")
        }
    }
}

/// A directory that is removed on drop unless it was moved away.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            remove_tree(&p);
        }
    }
}

impl<L: Layout> Engine<L> {
    /// Open the snapshotter rooted at `root` (created if needed, mode 0700).
    pub fn open(root: &Path, layout: L) -> Result<Engine<L>> {
        mkdir_private_all(root)?;
        let paths = Paths {
            root: root.to_path_buf(),
        };
        mkdir_private(&paths.snapshots())?;
        let ms = MetaStore::open(root.join("metadata.db"))?;
        Ok(Engine {
            paths,
            ms,
            ops: RwLock::new(()),
            layout,
        })
    }

    pub fn stat(&self, key: &str) -> Result<Info> {
        Ok(self.ms.info(key)?.1)
    }

    pub fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        self.ms.update(info, fieldpaths)
    }

    /// Active snapshots are measured now; others report what was measured at commit.
    pub fn usage(&self, key: &str) -> Result<Usage> {
        let (id, info, usage) = self.ms.info(key)?;
        if info.kind != Kind::Active {
            return Ok(usage);
        }
        let fs_dir = self.paths.fs(id);
        disk_usage(&fs_dir).map_err(SnapshotError::io(format!("usage of {}", fs_dir.display())))
    }

    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let s = self.ms.snapshot(key)?;
        Ok(self.layout.mounts(&self.paths, &s))
    }

    pub fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        // containerd's wire format says "no parent" with an empty string.
        let parent = parent.filter(|p| !p.is_empty());
        let _shared = self.ops.read().unwrap_or_else(|e| e.into_inner());
        // Fail fast, before the (for the native backend, expensive) directory work.
        let parent_ids = self.ms.check_create(key, parent)?;
        let tmp = self
            .paths
            .snapshots()
            .join(format!("new-{:016x}", rand::random::<u64>()));
        mkdir_private(&tmp)?;
        let mut tmp = TempDir(Some(tmp));
        let tmp_path = tmp.0.clone().expect("set above");
        self.layout
            .populate(&self.paths, kind, &tmp_path, &parent_ids)?;

        let mut placed: Option<PathBuf> = None;
        let result = self.ms.create(kind, key, parent, labels, |s| {
            if s.parent_ids != parent_ids {
                return Err(SnapshotError::ParentChanged(
                    parent.unwrap_or_default().to_string(),
                ));
            }
            let dir = self.paths.dir(s.id);
            // Left by a crash between this rename and the commit of an earlier attempt: the
            // id was never recorded, so nothing refers to it.
            if dir.exists() {
                fs::remove_dir_all(&dir)
                    .map_err(SnapshotError::io(format!("remove stale {}", dir.display())))?;
            }
            fs::rename(&tmp_path, &dir).map_err(SnapshotError::io(format!(
                "rename {} to {}",
                tmp_path.display(),
                dir.display()
            )))?;
            tmp.0 = None;
            placed = Some(dir);
            Ok(())
        });
        match result {
            Ok((s, _)) => Ok(self.layout.mounts(&self.paths, &s)),
            Err(e) => {
                if let Some(dir) = placed {
                    remove_tree(&dir);
                }
                Err(e)
            }
        }
    }

    pub fn commit(&self, name: &str, key: &str, labels: BTreeMap<String, String>) -> Result<()> {
        let _shared = self.ops.read().unwrap_or_else(|e| e.into_inner());
        if self.ms.info(name).is_ok() {
            return Err(SnapshotError::CommittedExists(name.to_string()));
        }
        let (id, info, _) = self.ms.info(key)?;
        if info.kind != Kind::Active {
            return Err(SnapshotError::NotActive(key.to_string()));
        }
        let fs_dir = self.paths.fs(id);
        let usage = disk_usage(&fs_dir)
            .map_err(SnapshotError::io(format!("usage of {}", fs_dir.display())))?;
        self.ms.commit(key, name, id, usage, labels)?;
        Ok(())
    }

    pub fn remove(&self, key: &str) -> Result<()> {
        let _shared = self.ops.read().unwrap_or_else(|e| e.into_inner());
        let (id, _) = self.ms.remove(key)?;
        remove_tree(&self.paths.dir(id));
        Ok(())
    }

    pub fn walk(&self, filters: &[String]) -> Result<Vec<Info>> {
        let filter = Filter::parse_all(filters)?;
        self.ms.walk(&filter)
    }

    /// Remove every entry of `snapshots/` that no record names.
    pub fn cleanup(&self) -> Result<()> {
        let doomed = {
            let _exclusive = self.ops.write().unwrap_or_else(|e| e.into_inner());
            let ids = self.ms.ids()?;
            let dir = self.paths.snapshots();
            let mut doomed = Vec::new();
            for entry in
                fs::read_dir(&dir).map_err(SnapshotError::io(format!("read {}", dir.display())))?
            {
                let entry = entry.map_err(SnapshotError::io(format!("read {}", dir.display())))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.parse::<u64>().is_ok_and(|id| ids.contains(&id)) {
                    continue;
                }
                // Move it out of the way while still exclusive, so an id freed by a crash can
                // be given again without its new directory being taken for garbage.
                let to = if name.starts_with("rm-") {
                    entry.path()
                } else {
                    let to = dir.join(format!("rm-{name}-{:08x}", rand::random::<u32>()));
                    fs::rename(entry.path(), &to).map_err(SnapshotError::io(format!(
                        "rename {}",
                        entry.path().display()
                    )))?;
                    to
                };
                doomed.push(to);
            }
            doomed
        };
        for path in doomed {
            tracing::debug!(path = %path.display(), "removing unreferenced snapshot directory");
            remove_tree(&path);
        }
        Ok(())
    }
}

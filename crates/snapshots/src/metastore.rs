//! The metastore: what a snapshotter knows of its snapshots, in one redb database at
//! `<root>/metadata.db` (containerd's `snapshots/storage.MetaStore`).
//!
//! | table       | key                    | value                                                  |
//! |-------------|------------------------|--------------------------------------------------------|
//! | `meta`      | `"schema_version"`     | u32 (LE)                                               |
//! | `meta`      | `"next_id"`            | u64 (LE): the id the next snapshot gets                |
//! | `snapshots` | key or name            | JSON `{id, kind, parent, labels, created, updated, size, inodes}` |
//! | `children`  | (parent id, child id)  | () — so a parent with children is refused removal      |
//!
//! A snapshot's **id** is a number given once and never reused; its files live in
//! `<root>/snapshots/<id>`. Committing renames the record from the active key to the committed
//! name and keeps the id, so the files stay where they are. `size`/`inodes` are measured at
//! commit. Times are nanoseconds since the Unix epoch.
//!
//! Crash safety: every operation is one redb write transaction. The filesystem step that goes
//! with an operation (moving a prepared directory into place) runs inside the transaction, just
//! before it commits, through a callback; if the callback fails the transaction is dropped and
//! nothing of the operation is recorded. A crash after the filesystem step but before the commit
//! leaves an unreferenced directory, which the snapshotter's `cleanup` removes (or the next
//! snapshot given the same id replaces).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

use berth_core::filters::Filter;
use berth_core::snapshots::{Info, Kind, Usage};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SnapshotError};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
const CHILDREN: TableDefinition<(u64, u64), ()> = TableDefinition::new("children");

/// The schema this code reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The stored record of one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: u64,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    created: i64,
    updated: i64,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    inodes: i64,
}

impl Record {
    fn kind(&self, key: &str) -> Result<Kind> {
        self.kind.parse().map_err(|_| SnapshotError::Corrupt {
            key: key.to_string(),
            reason: format!("unknown kind {:?}", self.kind),
        })
    }

    fn info(&self, key: &str) -> Result<Info> {
        Ok(Info {
            kind: self.kind(key)?,
            name: key.to_string(),
            parent: self.parent.clone(),
            labels: self.labels.clone(),
            created: from_nanos(self.created),
            updated: from_nanos(self.updated),
        })
    }
}

/// What a snapshotter needs to build mounts: the snapshot's id, kind and its parents' ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: u64,
    pub kind: Kind,
    /// Ids of the parent chain, nearest first (the parent, its parent, …).
    pub parent_ids: Vec<u64>,
}

/// The snapshot metadata of one snapshotter (see the module docs).
#[derive(Debug)]
pub struct MetaStore {
    db: Database,
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn from_nanos(n: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(n.max(0) as u64)
}

fn decode(key: &str, bytes: &[u8]) -> Result<Record> {
    serde_json::from_slice(bytes).map_err(|e| SnapshotError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

fn encode(r: &Record) -> Vec<u8> {
    serde_json::to_vec(r).expect("snapshot record serializes")
}

fn get<T: ReadableTable<&'static str, &'static [u8]>>(t: &T, key: &str) -> Result<Option<Record>> {
    match t.get(key)? {
        Some(v) => Ok(Some(decode(key, v.value())?)),
        None => Ok(None),
    }
}

/// Ids of `parent` and its ancestors, nearest first.
fn chain<T: ReadableTable<&'static str, &'static [u8]>>(t: &T, parent: &str) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    let mut next = Some(parent.to_string());
    while let Some(name) = next {
        let r = get(t, &name)?.ok_or_else(|| SnapshotError::ParentNotFound(name.clone()))?;
        if ids.contains(&r.id) {
            return Err(SnapshotError::Corrupt {
                key: name,
                reason: "parent chain loops".into(),
            });
        }
        ids.push(r.id);
        next = r.parent;
    }
    Ok(ids)
}

fn has_children<T: ReadableTable<(u64, u64), ()>>(t: &T, id: u64) -> Result<bool> {
    Ok(t.range((id, 0)..=(id, u64::MAX))?.next().is_some())
}

fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(SnapshotError::EmptyKey);
    }
    Ok(())
}

impl MetaStore {
    /// Open (creating if needed) the metastore at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<MetaStore> {
        let db = Database::create(path.as_ref())?;
        {
            // Root only, like everything under berth's root.
            use std::os::unix::fs::PermissionsExt;
            let p = path.as_ref();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
                .map_err(SnapshotError::io(format!("chmod {}", p.display())))?;
        }
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let version = meta
                .get("schema_version")?
                .map(|v| u32::from_le_bytes(v.value().try_into().unwrap_or([0; 4])));
            match version {
                Some(found) if found > SCHEMA_VERSION => {
                    return Err(SnapshotError::SchemaTooNew {
                        found,
                        supported: SCHEMA_VERSION,
                    })
                }
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
                    meta.insert("next_id", 1u64.to_le_bytes().as_slice())?;
                }
            }
            txn.open_table(SNAPSHOTS)?;
            txn.open_table(CHILDREN)?;
        }
        txn.commit()?;
        Ok(MetaStore { db })
    }

    /// Id, info and recorded usage of the snapshot `key` (usage is zero until commit).
    pub fn info(&self, key: &str) -> Result<(u64, Info, Usage)> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(SNAPSHOTS)?;
        let r = get(&t, key)?.ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
        let usage = Usage {
            size: r.size,
            inodes: r.inodes,
        };
        Ok((r.id, r.info(key)?, usage))
    }

    /// The active snapshot or view `key`, with its parent chain, for building its mounts.
    pub fn snapshot(&self, key: &str) -> Result<Snapshot> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(SNAPSHOTS)?;
        let r = get(&t, key)?.ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
        let kind = r.kind(key)?;
        if kind == Kind::Committed {
            return Err(SnapshotError::NotActiveOrView(key.to_string()));
        }
        let parent_ids = match &r.parent {
            Some(p) => chain(&t, p)?,
            None => Vec::new(),
        };
        Ok(Snapshot {
            id: r.id,
            kind,
            parent_ids,
        })
    }

    /// Check, without writing, that `create(kind, key, parent, …)` can succeed now; returns the
    /// parent chain's ids (nearest first). Lets a backend fail fast before expensive work.
    pub fn check_create(&self, key: &str, parent: Option<&str>) -> Result<Vec<u64>> {
        validate_key(key)?;
        let txn = self.db.begin_read()?;
        let t = txn.open_table(SNAPSHOTS)?;
        Self::check_create_in(&t, key, parent)
    }

    fn check_create_in<T: ReadableTable<&'static str, &'static [u8]>>(
        t: &T,
        key: &str,
        parent: Option<&str>,
    ) -> Result<Vec<u64>> {
        let parent_ids = match parent {
            Some(p) => {
                let pr = get(t, p)?.ok_or_else(|| SnapshotError::ParentNotFound(p.to_string()))?;
                if pr.kind(p)? != Kind::Committed {
                    return Err(SnapshotError::ParentNotCommitted(p.to_string()));
                }
                chain(t, p)?
            }
            None => Vec::new(),
        };
        if get(t, key)?.is_some() {
            return Err(SnapshotError::AlreadyExists(key.to_string()));
        }
        Ok(parent_ids)
    }

    /// Record a new active snapshot or view `key` on `parent`, in one write transaction that
    /// commits only if `place(&snapshot)` (the backend moving its directory into place) succeeds.
    pub fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
        place: impl FnOnce(&Snapshot) -> Result<()>,
    ) -> Result<(Snapshot, Info)> {
        if kind == Kind::Committed {
            return Err(berth_core::Error::invalid_argument(format!(
                "snapshot type {kind} invalid; only snapshots of type Active or View can be created"
            ))
            .into());
        }
        validate_key(key)?;
        berth_core::labels::validate_all(&labels)?;
        let txn = self.db.begin_write()?;
        let (snapshot, info) = {
            let mut t = txn.open_table(SNAPSHOTS)?;
            let parent_ids = Self::check_create_in(&t, key, parent)?;
            let mut meta = txn.open_table(META)?;
            let id = meta
                .get("next_id")?
                .map(|v| u64::from_le_bytes(v.value().try_into().unwrap_or([0; 8])))
                .unwrap_or(1)
                .max(1);
            meta.insert("next_id", (id + 1).to_le_bytes().as_slice())?;
            let now = now_nanos();
            let record = Record {
                id,
                kind: kind.as_str().to_string(),
                parent: parent.map(str::to_string),
                labels,
                created: now,
                updated: now,
                size: 0,
                inodes: 0,
            };
            t.insert(key, encode(&record).as_slice())?;
            if let Some(&pid) = parent_ids.first() {
                txn.open_table(CHILDREN)?.insert((pid, id), ())?;
            }
            let snapshot = Snapshot {
                id,
                kind,
                parent_ids,
            };
            (snapshot, record.info(key)?)
        };
        place(&snapshot)?;
        txn.commit()?;
        Ok((snapshot, info))
    }

    /// Commit the active snapshot `key` (whose id must be `expected_id`, as read before measuring
    /// it) as `name` with `usage` and `labels` (which replace the active labels). Returns the id.
    pub fn commit(
        &self,
        key: &str,
        name: &str,
        expected_id: u64,
        usage: Usage,
        labels: BTreeMap<String, String>,
    ) -> Result<u64> {
        validate_key(name)?;
        berth_core::labels::validate_all(&labels)?;
        let txn = self.db.begin_write()?;
        let id = {
            let mut t = txn.open_table(SNAPSHOTS)?;
            let mut r = get(&t, key)?.ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
            if get(&t, name)?.is_some() {
                return Err(SnapshotError::CommittedExists(name.to_string()));
            }
            if r.kind(key)? != Kind::Active {
                return Err(SnapshotError::NotActive(key.to_string()));
            }
            if r.id != expected_id {
                // The key was removed and prepared again while we measured it.
                return Err(SnapshotError::NotFound(key.to_string()));
            }
            let now = now_nanos();
            r.kind = Kind::Committed.as_str().to_string();
            r.created = now;
            r.updated = now;
            r.labels = labels;
            r.size = usage.size;
            r.inodes = usage.inodes;
            t.remove(key)?;
            t.insert(name, encode(&r).as_slice())?;
            r.id
        };
        txn.commit()?;
        Ok(id)
    }

    /// Remove the record of `key`; returns its id and kind. Refused while it has children.
    pub fn remove(&self, key: &str) -> Result<(u64, Kind)> {
        let txn = self.db.begin_write()?;
        let out = {
            let mut t = txn.open_table(SNAPSHOTS)?;
            let mut children = txn.open_table(CHILDREN)?;
            let r = get(&t, key)?.ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
            if has_children(&children, r.id)? {
                return Err(SnapshotError::HasChildren(key.to_string()));
            }
            if let Some(p) = &r.parent {
                if let Some(pr) = get(&t, p)? {
                    children.remove((pr.id, r.id))?;
                }
            }
            t.remove(key)?;
            (r.id, r.kind(key)?)
        };
        txn.commit()?;
        Ok(out)
    }

    /// Update the labels of `info.name` under containerd's field-path rules; returns the new info.
    pub fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        for path in fieldpaths {
            if path != "labels" && !path.starts_with("labels.") {
                return Err(SnapshotError::BadFieldPath {
                    path: path.clone(),
                    name: info.name.clone(),
                });
            }
        }
        let txn = self.db.begin_write()?;
        let updated = {
            let mut t = txn.open_table(SNAPSHOTS)?;
            let key = info.name.as_str();
            let mut r = get(&t, key)?.ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
            berth_core::labels::apply_label_mask(&mut r.labels, &info.labels, fieldpaths, &[])?;
            r.updated = now_nanos().max(r.updated + 1);
            t.insert(key, encode(&r).as_slice())?;
            r.info(key)?
        };
        txn.commit()?;
        Ok(updated)
    }

    /// Infos of the snapshots matching `filter`, ordered by name.
    pub fn walk(&self, filter: &Filter) -> Result<Vec<Info>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(SNAPSHOTS)?;
        let mut out = Vec::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            let info = decode(k.value(), v.value())?.info(k.value())?;
            if filter.matches(&info) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// The ids of every recorded snapshot (what `snapshots/<id>` directories may exist).
    pub fn ids(&self) -> Result<BTreeSet<u64>> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(SNAPSHOTS)?;
        let mut ids = BTreeSet::new();
        for entry in t.iter()? {
            let (k, v) = entry?;
            ids.insert(decode(k.value(), v.value())?.id);
        }
        Ok(ids)
    }
}

#[cfg(test)]
#[path = "metastore_tests.rs"]
mod tests;

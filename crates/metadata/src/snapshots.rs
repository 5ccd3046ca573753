//! Namespaced snapshots over un-namespaced snapshotter backends, as containerd's
//! `metadata/snapshot.go`.
//!
//! A backend ([`berth_core::snapshots::Snapshotter`], e.g. overlayfs) knows nothing of
//! namespaces. The metadata layer keeps, per (namespace, snapshotter, key), a record with the
//! snapshot's kind, parent and labels, and the **backend key** it stands for:
//! `<namespace>/<sequence>/<key>`, unique for ever thanks to the sequence. Clients of two
//! namespaces can therefore use the same keys. Labels live only here (except those prefixed
//! `containerd.io/snapshot/` and `containerd.io/snapshot.ref`, which are passed on to the backend
//! as containerd does).
//!
//! Backend calls are made before the record is written (prepare, commit) or after it is removed
//! (remove), so a crash leaves at worst a backend snapshot that no record names: the collector's
//! backend sweep ([`Metadata::sweep_snapshotters`]) removes those, while holding the
//! snapshot lock exclusively so that it never sees an operation half done.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use berth_core::filters::Filter;
use berth_core::snapshots::{Info, Kind, Mount, Snapshotter, Usage};
use berth_core::{labels, Error};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::db::{
    decode, encode, ensure_namespace, from_nanos, now_nanos, Metadata, LEASES, LEASE_RESOURCES,
    META, SNAPSHOTS,
};
use crate::error::{MetadataError, Result};

/// Labels with this prefix are also given to the backend.
const BACKEND_LABEL_PREFIX: &str = "containerd.io/snapshot/";
/// The label an unpacker sets on a prepare to name the chain it is building (for remote
/// snapshotters); also given to the backend, as containerd does.
const SNAPSHOT_REF_LABEL: &str = "containerd.io/snapshot.ref";

/// The record of one snapshot in one namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotRecord {
    /// `view`, `active` or `committed`.
    pub kind: String,
    /// The backend's key (or name, once committed) for this snapshot.
    pub backend: String,
    /// The parent's name in this namespace.
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SnapshotRecord {
    fn kind(&self) -> Kind {
        self.kind.parse().unwrap_or(Kind::Active)
    }

    fn info(&self, name: &str) -> Info {
        Info {
            kind: self.kind(),
            name: name.to_string(),
            parent: self.parent.clone(),
            labels: self.labels.clone(),
            created: from_nanos(self.created_at),
            updated: from_nanos(self.updated_at),
        }
    }
}

fn backend_labels(l: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    l.iter()
        .filter(|(k, _)| k.starts_with(BACKEND_LABEL_PREFIX) || k.as_str() == SNAPSHOT_REF_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn not_found(key: &str) -> MetadataError {
    MetadataError::SnapshotNotFound(key.to_string())
}

/// One snapshotter seen from one namespace (and, optionally, under a lease that every snapshot
/// it creates is added to). Implements [`Snapshotter`], so the conformance suite runs on it.
#[derive(Debug, Clone)]
pub struct NamespacedSnapshotter {
    meta: Metadata,
    ns: String,
    snapshotter: String,
    lease: Option<String>,
    backend: Arc<dyn Snapshotter>,
}

impl Metadata {
    /// Make the backend `backend` available under `name` (e.g. `overlayfs`, `native`).
    pub fn register_snapshotter(&self, name: &str, backend: Arc<dyn Snapshotter>) {
        self.inner
            .snapshotters
            .write()
            .expect("snapshotters poisoned")
            .insert(name.to_string(), backend);
    }

    /// Names of the registered snapshotters.
    pub fn snapshotter_names(&self) -> Vec<String> {
        self.inner
            .snapshotters
            .read()
            .expect("snapshotters poisoned")
            .keys()
            .cloned()
            .collect()
    }

    /// The snapshotter `name` in namespace `ns`; snapshots it creates join `lease` if given.
    pub fn snapshotter(
        &self,
        ns: &str,
        name: &str,
        lease: Option<&str>,
    ) -> berth_core::Result<NamespacedSnapshotter> {
        berth_core::identifiers::validate(ns)?;
        let backend = self
            .inner
            .snapshotters
            .read()
            .expect("snapshotters poisoned")
            .get(name)
            .cloned()
            .ok_or_else(|| Error::invalid_argument(format!("snapshotter not loaded: {name}")))?;
        Ok(NamespacedSnapshotter {
            meta: self.clone(),
            ns: ns.to_string(),
            snapshotter: name.to_string(),
            lease: lease.map(str::to_string),
            backend,
        })
    }

    /// Remove from every backend the snapshots no record names (children before parents), then
    /// let each backend reclaim its disk space. Runs with the snapshot lock held exclusively.
    pub async fn sweep_snapshotters(&self) -> berth_core::Result<usize> {
        let _exclusive = self.inner.snapshot_lock.write().await;
        let backends: Vec<(String, Arc<dyn Snapshotter>)> = self
            .inner
            .snapshotters
            .read()
            .expect("snapshotters poisoned")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut removed = 0;
        for (name, backend) in backends {
            let named = self.backend_keys(&name)?;
            let mut orphans: Vec<Info> = backend
                .walk(&[])
                .await?
                .into_iter()
                .filter(|i| !named.contains(&i.name))
                .collect();
            // Leaves first: repeat until no orphan is the parent of another remaining one.
            while !orphans.is_empty() {
                let parents: BTreeSet<String> =
                    orphans.iter().filter_map(|i| i.parent.clone()).collect();
                let (leaves, rest): (Vec<Info>, Vec<Info>) = orphans
                    .into_iter()
                    .partition(|i| !parents.contains(&i.name));
                if leaves.is_empty() {
                    break;
                }
                for leaf in leaves {
                    match backend.remove(&leaf.name).await {
                        Ok(()) => removed += 1,
                        Err(e) => {
                            tracing::warn!(snapshotter = %name, key = %leaf.name, error = %e, "gc: remove snapshot")
                        }
                    }
                }
                orphans = rest;
            }
            if let Err(e) = backend.cleanup().await {
                tracing::warn!(snapshotter = %name, error = %e, "gc: snapshotter cleanup");
            }
        }
        Ok(removed)
    }

    fn backend_keys(&self, snapshotter: &str) -> Result<BTreeSet<String>> {
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(SNAPSHOTS)?;
        let mut out = BTreeSet::new();
        for e in t.iter()? {
            let (k, v) = e?;
            let (_, sn, key) = k.value();
            if sn == snapshotter {
                out.insert(decode::<SnapshotRecord>(key, v.value())?.backend);
            }
        }
        Ok(out)
    }
}

impl NamespacedSnapshotter {
    fn record(&self, key: &str) -> Result<SnapshotRecord> {
        let txn = self.meta.inner.db.begin_read()?;
        let t = txn.open_table(SNAPSHOTS)?;
        let v = t
            .get((self.ns.as_str(), self.snapshotter.as_str(), key))?
            .ok_or_else(|| not_found(key))?;
        decode(key, v.value())
    }

    fn next_backend_key(&self, key: &str) -> Result<String> {
        let txn = self.meta.inner.db.begin_write()?;
        let seq = berth_redb::next_in_sequence(&mut txn.open_table(META)?, "snapshot_sequence")?;
        txn.commit()?;
        Ok(format!("{}/{seq}/{key}", self.ns))
    }

    /// Add the snapshot `key` to this handle's lease, inside `txn`.
    fn lease_in(&self, txn: &redb::WriteTransaction, key: &str) -> Result<()> {
        if let Some(lease) = &self.lease {
            if txn
                .open_table(LEASES)?
                .get((self.ns.as_str(), lease.as_str()))?
                .is_none()
            {
                return Err(MetadataError::LeaseNotFound(lease.clone()));
            }
            let kind = format!("snapshots/{}", self.snapshotter);
            txn.open_table(LEASE_RESOURCES)?
                .insert((self.ns.as_str(), lease.as_str(), kind.as_str(), key), ())?;
        }
        Ok(())
    }

    async fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        if key.is_empty() {
            return Err(Error::invalid_argument("snapshot key must not be empty").into());
        }
        labels::validate_all(&labels)?;
        let _shared = self.meta.inner.snapshot_lock.read().await;
        if self.record(key).is_ok() {
            return Err(MetadataError::SnapshotExists(key.to_string()));
        }
        let parent_backend = match parent.filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => {
                let rec = self.record(p).map_err(|e| match e {
                    MetadataError::SnapshotNotFound(_) => {
                        Error::not_found(format!("parent snapshot {p:?} does not exist")).into()
                    }
                    e => e,
                })?;
                if rec.kind() != Kind::Committed {
                    return Err(Error::invalid_argument(format!(
                        "parent snapshot {p:?} is not committed"
                    ))
                    .into());
                }
                Some(rec.backend)
            }
        };
        let bkey = self.next_backend_key(key)?;
        let bl = backend_labels(&labels);
        let mounts = match kind {
            Kind::View => {
                self.backend
                    .view(&bkey, parent_backend.as_deref(), bl)
                    .await?
            }
            _ => {
                self.backend
                    .prepare(&bkey, parent_backend.as_deref(), bl)
                    .await?
            }
        };
        let now = now_nanos();
        let rec = SnapshotRecord {
            kind: kind.as_str().to_string(),
            backend: bkey.clone(),
            parent: parent.filter(|p| !p.is_empty()).map(str::to_string),
            labels,
            created_at: now,
            updated_at: now,
        };
        let written = (|| -> Result<()> {
            let txn = self.meta.inner.db.begin_write()?;
            ensure_namespace(&txn, &self.ns)?;
            {
                let mut t = txn.open_table(SNAPSHOTS)?;
                let k = (self.ns.as_str(), self.snapshotter.as_str(), key);
                if t.get(k)?.is_some() {
                    return Err(MetadataError::SnapshotExists(key.to_string()));
                }
                t.insert(k, encode(&rec).as_slice())?;
            }
            self.lease_in(&txn, key)?;
            txn.commit()?;
            Ok(())
        })();
        if let Err(e) = written {
            if let Err(re) = self.backend.remove(&bkey).await {
                tracing::warn!(key = %bkey, error = %re, "undo snapshot create");
            }
            return Err(e);
        }
        Ok(mounts)
    }

    fn has_children(&self, key: &str) -> Result<bool> {
        let txn = self.meta.inner.db.begin_read()?;
        let t = txn.open_table(SNAPSHOTS)?;
        for e in t.range((self.ns.as_str(), self.snapshotter.as_str(), "")..)? {
            let (k, v) = e?;
            let (ns, sn, child) = k.value();
            if ns != self.ns || sn != self.snapshotter {
                break;
            }
            let rec: SnapshotRecord = decode(child, v.value())?;
            if rec.parent.as_deref() == Some(key) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[async_trait::async_trait]
impl Snapshotter for NamespacedSnapshotter {
    async fn stat(&self, key: &str) -> berth_core::Result<Info> {
        Ok(self.record(key)?.info(key))
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> berth_core::Result<Info> {
        let key = info.name.as_str();
        let txn = self
            .meta
            .inner
            .db
            .begin_write()
            .map_err(MetadataError::from)?;
        let rec = {
            let mut t = txn.open_table(SNAPSHOTS).map_err(MetadataError::from)?;
            let k = (self.ns.as_str(), self.snapshotter.as_str(), key);
            let mut rec: SnapshotRecord = match t.get(k).map_err(MetadataError::from)? {
                Some(v) => decode(key, v.value())?,
                None => return Err(not_found(key).into()),
            };
            labels::apply_label_mask(&mut rec.labels, &info.labels, fieldpaths, &[])
                .map_err(|e| e.context(format!("snapshot {key:?}")))?;
            rec.updated_at = now_nanos();
            t.insert(k, encode(&rec).as_slice())
                .map_err(MetadataError::from)?;
            rec
        };
        txn.commit().map_err(MetadataError::from)?;
        Ok(rec.info(key))
    }

    async fn usage(&self, key: &str) -> berth_core::Result<Usage> {
        let rec = self.record(key)?;
        self.backend.usage(&rec.backend).await
    }

    async fn mounts(&self, key: &str) -> berth_core::Result<Vec<Mount>> {
        let rec = self.record(key)?;
        self.backend.mounts(&rec.backend).await
    }

    async fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> berth_core::Result<Vec<Mount>> {
        Ok(self.create(Kind::Active, key, parent, labels).await?)
    }

    async fn view(
        &self,
        key: &str,
        parent: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> berth_core::Result<Vec<Mount>> {
        Ok(self.create(Kind::View, key, parent, labels).await?)
    }

    async fn commit(
        &self,
        name: &str,
        key: &str,
        labels: BTreeMap<String, String>,
    ) -> berth_core::Result<()> {
        if name.is_empty() {
            return Err(Error::invalid_argument("snapshot name must not be empty"));
        }
        labels::validate_all(&labels)?;
        let _shared = self.meta.inner.snapshot_lock.read().await;
        // Commits are serialized: the name check, the backend commit and the record must not
        // interleave with another commit of the same name (two unpacks of one image), or both
        // would succeed. The loser gets AlreadyExists and keeps its active snapshot, as in
        // containerd.
        let _commit = self.meta.inner.commit_lock.lock().await;
        let rec = self.record(key)?;
        if rec.kind() != Kind::Active {
            return Err(Error::failed_precondition(format!(
                "snapshot {key:?} is not active"
            )));
        }
        if self.record(name).is_ok() {
            return Err(MetadataError::SnapshotExists(name.to_string()).into());
        }
        let bname = self.next_backend_key(name)?;
        self.backend
            .commit(&bname, &rec.backend, backend_labels(&labels))
            .await?;
        let now = now_nanos();
        let committed = SnapshotRecord {
            kind: Kind::Committed.as_str().to_string(),
            backend: bname,
            parent: rec.parent,
            labels,
            created_at: now,
            updated_at: now,
        };
        let txn = self
            .meta
            .inner
            .db
            .begin_write()
            .map_err(MetadataError::from)?;
        {
            let mut t = txn.open_table(SNAPSHOTS).map_err(MetadataError::from)?;
            t.remove((self.ns.as_str(), self.snapshotter.as_str(), key))
                .map_err(MetadataError::from)?;
            t.insert(
                (self.ns.as_str(), self.snapshotter.as_str(), name),
                encode(&committed).as_slice(),
            )
            .map_err(MetadataError::from)?;
        }
        self.lease_in(&txn, name)?;
        txn.commit().map_err(MetadataError::from)?;
        Ok(())
    }

    async fn remove(&self, key: &str) -> berth_core::Result<()> {
        let _shared = self.meta.inner.snapshot_lock.read().await;
        let rec = self.record(key)?;
        if self.has_children(key)? {
            return Err(Error::failed_precondition(format!(
                "cannot remove snapshot {key:?} with child"
            )));
        }
        let txn = self
            .meta
            .inner
            .db
            .begin_write()
            .map_err(MetadataError::from)?;
        txn.open_table(SNAPSHOTS)
            .map_err(MetadataError::from)?
            .remove((self.ns.as_str(), self.snapshotter.as_str(), key))
            .map_err(MetadataError::from)?;
        txn.commit().map_err(MetadataError::from)?;
        // The record is gone: the backend's snapshot is garbage now. Remove it at once; if that
        // fails, the collector's backend sweep will.
        if let Err(e) = self.backend.remove(&rec.backend).await {
            tracing::warn!(key = %rec.backend, error = %e, "remove backend snapshot");
        }
        self.meta.mark_dirty();
        Ok(())
    }

    async fn walk(&self, filters: &[String]) -> berth_core::Result<Vec<Info>> {
        let filter = Filter::parse_all(filters)?;
        let txn = self
            .meta
            .inner
            .db
            .begin_read()
            .map_err(MetadataError::from)?;
        let t = txn.open_table(SNAPSHOTS).map_err(MetadataError::from)?;
        let mut out = Vec::new();
        for e in t
            .range((self.ns.as_str(), self.snapshotter.as_str(), "")..)
            .map_err(MetadataError::from)?
        {
            let (k, v) = e.map_err(MetadataError::from)?;
            let (ns, sn, key) = k.value();
            if ns != self.ns || sn != self.snapshotter {
                break;
            }
            let info = decode::<SnapshotRecord>(key, v.value())?.info(key);
            if filter.matches(&info) {
                out.push(info);
            }
        }
        Ok(out)
    }

    async fn cleanup(&self) -> berth_core::Result<()> {
        self.meta.sweep_snapshotters().await.map(|_| ())
    }
}

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use berth_content::LocalStore;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::Result;
use crate::gc::GcStats;

pub(crate) const NAMESPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("namespaces");
pub(crate) const CONTENT: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("content");
pub(crate) const LEASES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("leases");
pub(crate) const IMAGES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("images");
/// (namespace, container id) → container record.
pub(crate) const CONTAINERS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("containers");
/// (namespace, snapshotter, key or name) → snapshot record.
pub(crate) const SNAPSHOTS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("snapshots");
pub(crate) const LEASE_RESOURCES: TableDefinition<(&str, &str, &str, &str), ()> =
    TableDefinition::new("lease_resources");

/// The schema this code reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The metadata store: redb database + the blob store it indexes + the collector's state.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) db: Database,
    pub(crate) blobs: LocalStore,
    /// Held shared by writers while they publish a blob and its record, exclusively by a
    /// collection, so a blob is never swept between being written and being recorded.
    pub(crate) gc_lock: RwLock<()>,
    pub(crate) gc_stats: Mutex<GcStats>,
    /// Woken when a deletion made garbage; the collector's scheduler waits on it.
    pub(crate) dirty: tokio::sync::Notify,
    uuid: String,
    /// Snapshotter backends by name.
    pub(crate) snapshotters: RwLock<BTreeMap<String, Arc<dyn berth_core::snapshots::Snapshotter>>>,
    /// Held shared by snapshot operations from their backend call to their record, exclusively
    /// by the sweep of backend snapshots that no record names.
    pub(crate) snapshot_lock: tokio::sync::RwLock<()>,
    /// Serializes snapshot commits (check name, commit in the backend, write the record).
    pub(crate) commit_lock: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct NamespaceRecord {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ContentRecord {
    pub size: i64,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LeaseRecord {
    pub created_at: i64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

pub(crate) use berth_redb::{encode, from_nanos, now_nanos, to_nanos, META};

/// The record stored under `key` (see [`berth_redb::decode`]).
pub(crate) fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    Ok(berth_redb::decode(key, bytes)?)
}

impl Metadata {
    /// Open (creating if needed) the database at `db_path` over the blob store `blobs`.
    pub fn open(db_path: impl AsRef<Path>, blobs: LocalStore) -> Result<Metadata> {
        let db_path = db_path.as_ref();
        if let Some(parent) = db_path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| {
                    berth_core::Error::from(e).context(format!("create {}", parent.display()))
                })?;
        }
        let mut uuid = String::new();
        let db = berth_redb::open(db_path, SCHEMA_VERSION, |txn, _| -> Result<()> {
            let mut meta = txn.open_table(META)?;
            let existing = meta
                .get("uuid")?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned());
            uuid = match existing {
                Some(u) => u,
                None => {
                    let u = uuid::Uuid::new_v4().to_string();
                    meta.insert("uuid", u.as_bytes())?;
                    u
                }
            };
            txn.open_table(NAMESPACES)?;
            txn.open_table(CONTENT)?;
            txn.open_table(LEASES)?;
            txn.open_table(LEASE_RESOURCES)?;
            txn.open_table(IMAGES)?;
            txn.open_table(SNAPSHOTS)?;
            txn.open_table(CONTAINERS)?;
            Ok(())
        })?;
        Ok(Metadata {
            inner: Arc::new(Inner {
                db,
                blobs,
                gc_lock: RwLock::new(()),
                gc_stats: Mutex::new(GcStats::default()),
                dirty: tokio::sync::Notify::new(),
                uuid,
                snapshotters: RwLock::new(BTreeMap::new()),
                snapshot_lock: tokio::sync::RwLock::new(()),
                commit_lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The server's persistent UUID (created with the database).
    pub fn uuid(&self) -> &str {
        &self.inner.uuid
    }

    /// The blob store underneath.
    pub fn blobs(&self) -> &LocalStore {
        &self.inner.blobs
    }

    /// Tell the collector that a deletion made garbage.
    pub(crate) fn mark_dirty(&self) {
        self.inner.dirty.notify_one();
    }
}

/// Insert the namespace record if it is missing: writing any object into a namespace creates it,
/// as in containerd.
pub(crate) fn ensure_namespace(txn: &redb::WriteTransaction, ns: &str) -> Result<()> {
    berth_core::identifiers::validate(ns)?;
    let mut t = txn.open_table(NAMESPACES)?;
    if t.get(ns)?.is_none() {
        t.insert(ns, encode(&NamespaceRecord::default()).as_slice())?;
    }
    Ok(())
}

/// Keys of a two-part table whose first part is `ns`.
pub(crate) fn keys_in_ns<T: ReadableTable<(&'static str, &'static str), &'static [u8]>>(
    table: &T,
    ns: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in table.range((ns, "")..)? {
        let (k, v) = entry?;
        let (kns, id) = k.value();
        if kns != ns {
            break;
        }
        out.push((id.to_string(), v.value().to_vec()));
    }
    Ok(out)
}

//! berth-redb: what berth's redb databases share (the metadata database of berth-metadata and
//! each snapshotter's metastore in berth-snapshots).
//!
//! - every database has a `meta` table ([`META`]) holding `"schema_version"` (u32, LE) and
//!   counters (u64, LE); [`open`] creates or opens a database and refuses one written by a newer
//!   schema;
//! - a value that cannot be what it should be (a counter of the wrong length, a record that is
//!   not the JSON it should be) is [`StoreError::Corrupt`], containerd's `DataLoss`, naming the
//!   key: it is never read as a default;
//! - records are JSON ([`encode`], [`decode`]); times are nanoseconds since the Unix epoch
//!   ([`now_nanos`], [`to_nanos`], [`from_nanos`]);
//! - [`from_redb!`] gives a crate's error type the `From` conversions of redb's error types that
//!   `?` needs, through [`StoreError`].

use std::path::Path;
use std::time::{Duration, SystemTime};

use berth_core::ErrorKind;
pub use redb;
use redb::{Database, ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{de::DeserializeOwned, Serialize};

/// `"schema_version"`, counters and other single values, by name.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const SCHEMA_VERSION: &str = "schema_version";

/// Failures of a redb database, whatever it holds.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("schema version {found} is newer than this berth supports ({supported})")]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("record {key}: {reason}: data loss")]
    Corrupt { key: String, reason: String },
    #[error("database: {0}")]
    Db(Box<redb::Error>),
    #[error("chmod {path}: {source}")]
    Chmod {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// The errdefs class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Corrupt { .. } => ErrorKind::DataLoss,
            StoreError::SchemaTooNew { .. } => ErrorKind::FailedPrecondition,
            StoreError::Db(_) | StoreError::Chmod { .. } => ErrorKind::Internal,
        }
    }

    /// A value stored under `key` that is not what it should be.
    pub fn corrupt(key: &str, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

/// Implement `From<redb::…Error>` for the error type `$t`, which must implement
/// `From<StoreError>`: what `?` on a redb call needs.
#[macro_export]
macro_rules! from_redb {
    ($t:ty) => {
        $crate::from_redb!(@each $t;
            $crate::redb::Error,
            $crate::redb::DatabaseError,
            $crate::redb::TransactionError,
            $crate::redb::TableError,
            $crate::redb::StorageError,
            $crate::redb::CommitError);
    };
    (@each $t:ty; $($e:ty),*) => {$(
        impl From<$e> for $t {
            fn from(e: $e) -> Self {
                $crate::StoreError::from(e).into()
            }
        }
    )*};
}

macro_rules! store_from_redb {
    ($($e:ty),*) => {$(
        impl From<$e> for StoreError {
            fn from(e: $e) -> Self {
                StoreError::Db(Box::new(e.into()))
            }
        }
    )*};
}
store_from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Open (creating if needed) the database at `path`, whose schema this code knows up to
/// `supported`. In one write transaction: a database of a newer schema is refused
/// ([`StoreError::SchemaTooNew`]); a new one gets `supported` as its version; then `init` runs
/// (open the tables, write first values), told whether the database is new.
pub fn open<E: From<StoreError>>(
    path: &Path,
    supported: u32,
    init: impl FnOnce(&WriteTransaction, bool) -> Result<(), E>,
) -> Result<Database, E> {
    let db = Database::create(path).map_err(StoreError::from)?;
    // Root only: a database names every object and its labels (secrets included).
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| StoreError::Chmod {
                path: path.display().to_string(),
                source,
            },
        )?;
    }
    let txn = db.begin_write().map_err(StoreError::from)?;
    let created = {
        let mut meta = txn.open_table(META).map_err(StoreError::from)?;
        match read_u32(&meta, SCHEMA_VERSION)? {
            Some(found) if found > supported => {
                return Err(StoreError::SchemaTooNew { found, supported }.into())
            }
            Some(_) => false,
            None => {
                meta.insert(SCHEMA_VERSION, supported.to_le_bytes().as_slice())
                    .map_err(StoreError::from)?;
                true
            }
        }
    };
    init(&txn, created)?;
    txn.commit().map_err(StoreError::from)?;
    Ok(db)
}

fn read_bytes<const N: usize>(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<[u8; N]>, StoreError> {
    match meta.get(key)? {
        None => Ok(None),
        Some(v) => {
            let bytes = v.value();
            bytes.try_into().map(Some).map_err(|_| {
                StoreError::corrupt(
                    key,
                    format!("{} bytes where a {N}-byte integer belongs", bytes.len()),
                )
            })
        }
    }
}

/// The u32 under `key` in a `meta` table; `Corrupt` naming `key` when it is not 4 bytes.
pub fn read_u32(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u32>, StoreError> {
    Ok(read_bytes(meta, key)?.map(u32::from_le_bytes))
}

/// The u64 under `key` in a `meta` table; `Corrupt` naming `key` when it is not 8 bytes.
pub fn read_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    Ok(read_bytes(meta, key)?.map(u64::from_le_bytes))
}

/// Advance the counter `key` of a `meta` table and return its new value (1 the first time), as
/// bbolt's `NextSequence`. A counter that cannot be read, or that would overflow, is `Corrupt`:
/// restarting it would hand out numbers already given.
pub fn next_in_sequence(meta: &mut Table<&str, &[u8]>, key: &str) -> Result<u64, StoreError> {
    let next = read_u64(meta, key)?
        .unwrap_or(0)
        .checked_add(1)
        .ok_or_else(|| StoreError::corrupt(key, "sequence exhausted"))?;
    meta.insert(key, next.to_le_bytes().as_slice())?;
    Ok(next)
}

/// A record as stored: JSON.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // The records are plain structs with string keys: serializing them cannot fail.
    serde_json::to_vec(v).expect("record serializes")
}

/// The record stored under `key`; `Corrupt` naming `key` when it is not what `T` expects.
pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(key, e.to_string()))
}

/// Now, in nanoseconds since the Unix epoch.
pub fn now_nanos() -> i64 {
    to_nanos(SystemTime::now())
}

/// `t` in nanoseconds since the Unix epoch (0 before it; the largest i64 past year 2262).
pub fn to_nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The time `n` nanoseconds after the Unix epoch (negative counts as 0).
pub fn from_nanos(n: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_meta<T>(f: impl FnOnce(&mut Table<&str, &[u8]>) -> T) -> T {
        let dir = tempfile::tempdir().unwrap();
        let db = open::<StoreError>(&dir.path().join("t.redb"), 1, |_, _| Ok(())).unwrap();
        let txn = db.begin_write().unwrap();
        let mut meta = txn.open_table(META).unwrap();
        f(&mut meta)
    }

    #[test]
    fn sequences_start_at_one_and_advance() {
        with_meta(|meta| {
            assert_eq!(next_in_sequence(meta, "seq").unwrap(), 1);
            assert_eq!(next_in_sequence(meta, "seq").unwrap(), 2);
            assert_eq!(read_u64(meta, "seq").unwrap(), Some(2));
        });
    }

    #[test]
    fn a_corrupt_counter_is_data_loss_naming_its_key() {
        with_meta(|meta| {
            meta.insert("seq", b"bad".as_slice()).unwrap();
            let e = next_in_sequence(meta, "seq").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::DataLoss);
            assert!(e.to_string().contains("seq"), "{e}");
            meta.insert("seq", u64::MAX.to_le_bytes().as_slice())
                .unwrap();
            assert_eq!(
                next_in_sequence(meta, "seq").unwrap_err().kind(),
                ErrorKind::DataLoss
            );
        });
    }

    #[test]
    fn newer_schemas_are_refused_and_unreadable_ones_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        drop(open::<StoreError>(&path, 2, |_, created| {
            assert!(created);
            Ok(())
        }));
        let e = open::<StoreError>(&path, 1, |_, _| Ok(())).unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::SchemaTooNew {
                    found: 2,
                    supported: 1
                }
            ),
            "{e}"
        );
        let db = open::<StoreError>(&path, 3, |_, created| {
            assert!(!created);
            Ok(())
        })
        .unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(SCHEMA_VERSION, b"x".as_slice())
            .unwrap();
        txn.commit().unwrap();
        drop(db);
        let e = open::<StoreError>(&path, 3, |_, _| Ok(())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::DataLoss, "{e}");
    }

    #[test]
    fn times_round_trip_and_clamp() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_234_567_890);
        assert_eq!(from_nanos(to_nanos(t)), t);
        assert_eq!(from_nanos(-5), SystemTime::UNIX_EPOCH);
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 2);
        assert_eq!(to_nanos(far), i64::MAX);
    }
}

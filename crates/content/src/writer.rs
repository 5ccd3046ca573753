use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::time::SystemTime;

use berth_core::{Digest, DigestAlgorithm, Digester};

use crate::error::ContentError;
use crate::store::{read_record, IngestRecord, IngestStatus, LocalStore, RefLock};

type Result<T> = std::result::Result<T, ContentError>;

/// A writer on one ingest; holds the ref's lock until dropped or committed.
///
/// Bytes are appended to `ingest/<id>/data` as they come. Reopening the same ref (in this process
/// or after a restart) resumes at the end of that file, re-hashing what is there, so the digest
/// checked at commit always covers every byte of the blob.
#[derive(Debug)]
pub struct LocalWriter {
    store: LocalStore,
    _lock: RefLock,
    dir: PathBuf,
    file: File,
    digester: Digester,
    offset: i64,
    record: IngestRecord,
    /// When the last write (or truncate) returned: what status reports, as containerd does.
    updated_at: SystemTime,
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl LocalWriter {
    pub(crate) fn open(
        store: LocalStore,
        lock: RefLock,
        reference: &str,
        total: i64,
        expected: Option<Digest>,
    ) -> Result<LocalWriter> {
        let dir = store.ingest_dir(reference);
        let io = |what: &str| ContentError::io(format!("{what} ingest {reference}"));
        let mut record = match read_record(&dir) {
            Ok(rec) => rec,
            Err(e) if e.kind_is_not_found() => IngestRecord {
                reference: reference.to_string(),
                total: 0,
                expected: None,
                started_at: now_nanos(),
            },
            Err(e) => return Err(e),
        };
        if total > 0 {
            record.total = total;
        }
        if let Some(d) = &expected {
            record.expected = Some(d.to_string());
        }
        fs::create_dir_all(&dir).map_err(io("create"))?;
        write_record(&dir, &record)?;
        let data = dir.join("data");
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(0o600)
            .open(&data)
            .map_err(io("open"))?;
        // Rebuild the running digest from what an earlier writer left.
        let algorithm = record
            .expected
            .as_deref()
            .and_then(|d| Digest::parse(d).ok())
            .map_or(DigestAlgorithm::Sha256, |d| d.algorithm());
        let mut digester = Digester::new(algorithm);
        let mut offset = 0i64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(io("rehash"))?;
            if n == 0 {
                break;
            }
            digester.update(&buf[..n]);
            offset += n as i64;
        }
        // A resumed ingest was last updated when its data was last written.
        let updated_at = if offset > 0 {
            file.metadata().and_then(|m| m.modified()).ok()
        } else {
            None
        }
        .unwrap_or_else(|| {
            SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(record.started_at as u64)
        });
        Ok(LocalWriter {
            store,
            _lock: lock,
            dir,
            file,
            digester,
            offset,
            record,
            updated_at,
        })
    }

    /// Status of this ingest.
    pub fn status(&self) -> IngestStatus {
        let started_at =
            SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(self.record.started_at as u64);
        IngestStatus {
            reference: self.record.reference.clone(),
            offset: self.offset,
            total: self.record.total,
            expected: self
                .record
                .expected
                .as_deref()
                .and_then(|d| Digest::parse(d).ok()),
            started_at,
            updated_at: self.updated_at,
        }
    }

    /// The ref of this ingest.
    pub fn reference(&self) -> &str {
        &self.record.reference
    }

    /// Digest of the bytes written so far.
    pub fn digest(&self) -> Digest {
        self.digester.current()
    }

    /// Append bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.file.write_all(data).map_err(ContentError::io(format!(
            "write ingest {}",
            self.record.reference
        )))?;
        self.digester.update(data);
        self.offset += data.len() as i64;
        self.updated_at = SystemTime::now();
        Ok(())
    }

    /// Cut the ingest back to `size` bytes, re-hashing what stays.
    pub fn truncate(&mut self, size: i64) -> Result<()> {
        let reference = self.record.reference.clone();
        self.file
            .set_len(size.max(0) as u64)
            .map_err(ContentError::io(format!("truncate ingest {reference}")))?;
        let mut digester = Digester::new(self.digest().algorithm());
        if size > 0 {
            let mut f = File::open(self.dir.join("data"))
                .map_err(ContentError::io(format!("reopen ingest {reference}")))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f
                    .read(&mut buf)
                    .map_err(ContentError::io(format!("rehash ingest {reference}")))?;
                if n == 0 {
                    break;
                }
                digester.update(&buf[..n]);
            }
        }
        self.digester = digester;
        self.offset = size.max(0);
        self.updated_at = SystemTime::now();
        Ok(())
    }

    /// Verify and publish the ingest as a blob. On a size or digest mismatch no blob appears and
    /// the ingest stays as it is (only this writer ends), so reopening the ref resumes at the
    /// bytes written and the commit can be retried, as containerd's local writer. When the blob
    /// already exists the ingest is removed and `BlobExists` returned.
    pub fn commit(self, size: i64, expected: Option<Digest>) -> Result<Digest> {
        let reference = self.record.reference.clone();
        let io = |what: &str| ContentError::io(format!("{what} ingest {reference}"));
        let actual = self.digester.current();
        let discard = |err: ContentError| {
            let _ = fs::remove_dir_all(&self.dir);
            Err(err)
        };
        if size > 0 && size != self.offset {
            return Err(ContentError::SizeMismatch {
                actual: self.offset,
                expected: size,
            });
        }
        if let Some(exp) = expected {
            if exp != actual {
                return Err(ContentError::DigestMismatch {
                    actual,
                    expected: exp,
                });
            }
        }
        self.file.sync_all().map_err(io("sync"))?;
        let target = self.store.blob_path(&actual);
        if target.exists() {
            return discard(ContentError::BlobExists(actual));
        }
        let parent = target.parent().expect("blob path has a parent");
        fs::create_dir_all(parent).map_err(io("create blob dir for"))?;
        let data = self.dir.join("data");
        // Read-only, and for root only: a blob may hold secrets baked into an image.
        fs::set_permissions(&data, fs::Permissions::from_mode(0o400)).map_err(io("chmod"))?;
        fs::rename(&data, &target).map_err(io("publish"))?;
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
        fs::remove_dir_all(&self.dir).map_err(io("remove"))?;
        Ok(actual)
    }
}

fn write_record(dir: &std::path::Path, record: &IngestRecord) -> Result<()> {
    let tmp = dir.join("ref.json.tmp");
    let bytes = serde_json::to_vec(record).expect("ingest record serializes");
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(ContentError::io(format!("write {}", tmp.display())))?;
    fs::rename(&tmp, dir.join("ref.json"))
        .map_err(ContentError::io(format!("write {}", dir.display())))
}

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use berth_core::{Digest, DigestAlgorithm};
use serde::{Deserialize, Serialize};

use crate::error::ContentError;
use crate::writer::LocalWriter;

type Result<T> = std::result::Result<T, ContentError>;

/// Size and time of a committed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: i64,
    pub created_at: SystemTime,
}

/// State of an ingest on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestStatus {
    pub reference: String,
    pub offset: i64,
    pub total: i64,
    pub expected: Option<Digest>,
    pub started_at: SystemTime,
    pub updated_at: SystemTime,
}

/// What `ref.json` holds for an ingest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct IngestRecord {
    #[serde(rename = "ref")]
    pub reference: String,
    pub total: i64,
    pub expected: Option<String>,
    /// Nanoseconds since the Unix epoch.
    pub started_at: u128,
}

/// The local, un-namespaced content store (see the crate docs for the layout).
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    locks: Arc<Mutex<HashSet<String>>>,
}

impl LocalStore {
    /// Open (creating if needed) a store rooted at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<LocalStore> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let root = root.as_ref().to_path_buf();
        // Private: blobs may hold secrets baked into images. What the store creates is 0700,
        // and its own two directories are made so even if an older berth created them open.
        for dir in ["blobs", "ingest"] {
            let p = root.join(dir);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .map_err(ContentError::io(format!("create {}", p.display())))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o700))
                .map_err(ContentError::io(format!("chmod {}", p.display())))?;
        }
        Ok(LocalStore {
            root,
            locks: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.encoded())
    }

    pub(crate) fn ingest_dir(&self, reference: &str) -> PathBuf {
        self.root
            .join("ingest")
            .join(Digest::sha256_of(reference.as_bytes()).encoded())
    }

    /// Size and creation time of a blob.
    pub fn info(&self, digest: &Digest) -> Result<BlobInfo> {
        let md = fs::metadata(self.blob_path(digest)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ContentError::BlobNotFound(digest.clone()),
            _ => ContentError::io(format!("stat content {digest}"))(e),
        })?;
        Ok(BlobInfo {
            digest: digest.clone(),
            size: md.len() as i64,
            created_at: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        })
    }

    /// True when the blob is present.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Read up to `len` bytes at `offset`.
    pub fn read_at(&self, digest: &Digest, offset: i64, len: usize) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let mut f = fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ContentError::BlobNotFound(digest.clone()),
            _ => ContentError::io(format!("open content {digest}"))(e),
        })?;
        let size = f
            .metadata()
            .map_err(ContentError::io(format!("stat content {digest}")))?
            .len() as i64;
        if offset < 0 || offset > size {
            return Err(ContentError::ReadOutOfRange {
                digest: digest.clone(),
                offset,
                size,
            });
        }
        f.seek(SeekFrom::Start(offset as u64))
            .map_err(ContentError::io(format!("seek content {digest}")))?;
        let want = len.min((size - offset) as usize);
        let mut buf = vec![0; want];
        f.read_exact(&mut buf)
            .map_err(ContentError::io(format!("read content {digest}")))?;
        Ok(buf)
    }

    /// Remove a blob.
    pub fn delete(&self, digest: &Digest) -> Result<()> {
        fs::remove_file(self.blob_path(digest)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ContentError::BlobNotFound(digest.clone()),
            _ => ContentError::io(format!("remove content {digest}"))(e),
        })
    }

    /// Every blob in the store.
    pub fn walk(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in [
            DigestAlgorithm::Sha256,
            DigestAlgorithm::Sha384,
            DigestAlgorithm::Sha512,
        ] {
            let dir = self.root.join("blobs").join(alg.as_str());
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ContentError::io(format!("list {}", dir.display()))(e)),
            };
            for entry in entries {
                let entry = entry.map_err(ContentError::io(format!("list {}", dir.display())))?;
                let name = entry.file_name();
                if let Ok(d) =
                    Digest::parse(&format!("{}:{}", alg.as_str(), name.to_string_lossy()))
                {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Status of the ingest `reference`.
    pub fn status(&self, reference: &str) -> Result<IngestStatus> {
        let dir = self.ingest_dir(reference);
        let rec = read_record(&dir).map_err(|e| match e.kind() {
            berth_core::ErrorKind::NotFound => ContentError::IngestNotFound(reference.to_string()),
            _ => e,
        })?;
        status_of(&dir, rec)
    }

    /// Statuses of every ingest.
    pub fn list_statuses(&self) -> Result<Vec<IngestStatus>> {
        let dir = self.root.join("ingest");
        let mut out = Vec::new();
        for entry in
            fs::read_dir(&dir).map_err(ContentError::io(format!("list {}", dir.display())))?
        {
            let entry = entry.map_err(ContentError::io(format!("list {}", dir.display())))?;
            // An ingest without its record is a half-created one: skip it.
            if let Ok(rec) = read_record(&entry.path()) {
                out.push(status_of(&entry.path(), rec)?);
            }
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Discard an ingest, even one a live writer holds (as containerd's local store: that
    /// writer's commit then fails; the ref stays locked until it is dropped).
    pub fn abort(&self, reference: &str) -> Result<()> {
        let dir = self.ingest_dir(reference);
        if !dir.join("ref.json").exists() {
            return Err(ContentError::IngestNotFound(reference.to_string()));
        }
        fs::remove_dir_all(&dir).map_err(ContentError::io(format!("remove ingest {reference}")))
    }

    /// Open or resume the ingest `reference`. `total` and `expected` may be unknown (0 / None).
    pub fn writer(
        &self,
        reference: &str,
        total: i64,
        expected: Option<Digest>,
    ) -> Result<LocalWriter> {
        if reference.is_empty() {
            return Err(ContentError::EmptyRef);
        }
        if let Some(d) = &expected {
            if self.contains(d) {
                return Err(ContentError::BlobExists(d.clone()));
            }
        }
        let lock = self.lock(reference)?;
        LocalWriter::open(self.clone(), lock, reference, total, expected)
    }

    /// Take the in-process lock on a ref; released when the guard drops.
    pub(crate) fn lock(&self, reference: &str) -> Result<RefLock> {
        let mut locks = self.locks.lock().expect("ref lock table poisoned");
        if !locks.insert(reference.to_string()) {
            return Err(ContentError::RefLocked(reference.to_string()));
        }
        Ok(RefLock {
            locks: self.locks.clone(),
            reference: reference.to_string(),
        })
    }
}

/// Holds a ref locked for one writer.
#[derive(Debug)]
pub(crate) struct RefLock {
    locks: Arc<Mutex<HashSet<String>>>,
    reference: String,
}

impl Drop for RefLock {
    fn drop(&mut self) {
        if let Ok(mut locks) = self.locks.lock() {
            locks.remove(&self.reference);
        }
    }
}

pub(crate) fn read_record(dir: &Path) -> Result<IngestRecord> {
    let path = dir.join("ref.json");
    let bytes = fs::read(&path).map_err(ContentError::io(format!("read {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| ContentError::Io {
        context: format!("parse {}", path.display()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

fn status_of(dir: &Path, rec: IngestRecord) -> Result<IngestStatus> {
    let started_at =
        SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(rec.started_at as u64);
    let (offset, updated_at) = match fs::metadata(dir.join("data")) {
        Ok(md) => (md.len() as i64, md.modified().unwrap_or(started_at)),
        Err(_) => (0, started_at),
    };
    Ok(IngestStatus {
        reference: rec.reference,
        offset,
        total: rec.total,
        expected: rec.expected.as_deref().and_then(|d| Digest::parse(d).ok()),
        started_at,
        updated_at,
    })
}

impl ContentError {
    pub(crate) fn kind_is_not_found(&self) -> bool {
        self.kind() == berth_core::ErrorKind::NotFound
    }
}

use std::collections::BTreeMap;

use berth_content::{ContentError, IngestStatus, LocalWriter};
use berth_core::content::{ContentStore, ContentWriter, Info, Status, WriterOptions};
use berth_core::filters::Filter;
use berth_core::{identifiers, labels, Digest};
use redb::ReadableTable;

use crate::db::{
    decode, encode, ensure_namespace, from_nanos, keys_in_ns, now_nanos, ContentRecord, Metadata,
    CONTENT, LEASES, LEASE_RESOURCES,
};
use crate::error::{MetadataError, Result};

/// The backing store's ref of a namespaced ingest. Namespaces cannot contain `/`, so the first
/// `/` splits the two unambiguously.
fn backend_ref(ns: &str, reference: &str) -> String {
    format!("{ns}/{reference}")
}

fn status_in_ns(ns: &str, s: IngestStatus) -> Option<Status> {
    let reference = s.reference.strip_prefix(ns)?.strip_prefix('/')?.to_string();
    Some(Status {
        reference,
        offset: s.offset,
        total: s.total,
        expected: s.expected,
        started_at: s.started_at,
        updated_at: s.updated_at,
    })
}

fn info_of(digest: &Digest, rec: ContentRecord) -> Info {
    Info {
        digest: digest.clone(),
        size: rec.size,
        created_at: from_nanos(rec.created_at),
        updated_at: from_nanos(rec.updated_at),
        labels: rec.labels,
    }
}

impl Metadata {
    fn content_record(&self, ns: &str, digest: &Digest) -> Result<ContentRecord> {
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(CONTENT)?;
        let key = digest.to_string();
        let v = t
            .get((ns, key.as_str()))?
            .ok_or_else(|| MetadataError::ContentNotFound(digest.clone()))?;
        decode(&key, v.value())
    }

    /// Check `lease` exists in `ns` and add a resource to it, inside `txn`.
    pub(crate) fn lease_add_in(
        txn: &redb::WriteTransaction,
        ns: &str,
        lease: &str,
        kind: &str,
        id: &str,
    ) -> Result<()> {
        if txn.open_table(LEASES)?.get((ns, lease))?.is_none() {
            return Err(MetadataError::LeaseNotFound(lease.to_string()));
        }
        txn.open_table(LEASE_RESOURCES)?
            .insert((ns, lease, kind, id), ())?;
        Ok(())
    }

    /// Record `digest` (already in the blob store) in `ns`; `ContentExists` if it is there.
    ///
    /// Either way the content joins `lease` in the same transaction (containerd's
    /// `addContentLease`, which its `Commit` runs also on the AlreadyExists path): a writer that
    /// finds its bytes already recorded still holds them for its caller, so a collection cannot
    /// take them before the caller's own references (an image record) exist. Callers hold the
    /// collection lock shared.
    fn record_content(
        &self,
        ns: &str,
        digest: &Digest,
        lease: Option<&str>,
        ingest_ref: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<()> {
        labels::validate_all(&labels)?;
        let size = self.inner.blobs.info(digest)?.size;
        let key = digest.to_string();
        let txn = self.inner.db.begin_write()?;
        let exists = {
            ensure_namespace(&txn, ns)?;
            let mut t = txn.open_table(CONTENT)?;
            let exists = t.get((ns, key.as_str()))?.is_some();
            if !exists {
                let now = now_nanos();
                let rec = ContentRecord {
                    size,
                    created_at: now,
                    updated_at: now,
                    labels,
                };
                t.insert((ns, key.as_str()), encode(&rec).as_slice())?;
            }
            exists
        };
        if let Some(lease) = lease {
            Self::lease_add_in(&txn, ns, lease, "content", &key)?;
            if let Some(r) = ingest_ref {
                txn.open_table(LEASE_RESOURCES)?
                    .remove((ns, lease, "ingests", r))?;
            }
        }
        txn.commit()?;
        if exists {
            return Err(MetadataError::ContentExists(digest.clone()));
        }
        Ok(())
    }

    /// If `digest` is recorded in `ns`, add it to `lease` in the same transaction and answer
    /// true (containerd's `Writer` does both in one update): a collection between the check and
    /// the lease would otherwise take content the caller was told exists. Callers hold the
    /// collection lock shared.
    fn lease_if_recorded(&self, ns: &str, digest: &Digest, lease: Option<&str>) -> Result<bool> {
        let key = digest.to_string();
        let txn = self.inner.db.begin_write()?;
        if txn.open_table(CONTENT)?.get((ns, key.as_str()))?.is_none() {
            return Ok(false);
        }
        if let Some(lease) = lease {
            Self::lease_add_in(&txn, ns, lease, "content", &key)?;
        }
        txn.commit()?;
        Ok(true)
    }
}

impl ContentStore for Metadata {
    type Writer = MetaWriter;

    async fn info(&self, ns: &str, digest: &Digest) -> berth_core::Result<Info> {
        Ok(info_of(digest, self.content_record(ns, digest)?))
    }

    async fn update(
        &self,
        ns: &str,
        info: Info,
        fieldpaths: &[String],
    ) -> berth_core::Result<Info> {
        let key = info.digest.to_string();
        let txn = self.inner.db.begin_write().map_err(MetadataError::from)?;
        let rec = {
            let mut t = txn.open_table(CONTENT).map_err(MetadataError::from)?;
            let mut rec: ContentRecord =
                match t.get((ns, key.as_str())).map_err(MetadataError::from)? {
                    Some(v) => decode(&key, v.value())?,
                    None => return Err(MetadataError::ContentNotFound(info.digest.clone()).into()),
                };
            labels::apply_label_mask(&mut rec.labels, &info.labels, fieldpaths, &[])
                .map_err(|e| e.context(format!("content {}", info.digest)))?;
            rec.updated_at = now_nanos();
            t.insert((ns, key.as_str()), encode(&rec).as_slice())
                .map_err(MetadataError::from)?;
            rec
        };
        txn.commit().map_err(MetadataError::from)?;
        Ok(info_of(&info.digest, rec))
    }

    async fn list(&self, ns: &str, filters: &[String]) -> berth_core::Result<Vec<Info>> {
        let filter = Filter::parse_all(filters)?;
        let txn = self.inner.db.begin_read().map_err(MetadataError::from)?;
        let t = txn.open_table(CONTENT).map_err(MetadataError::from)?;
        let mut out = Vec::new();
        for (key, bytes) in keys_in_ns(&t, ns)? {
            let digest = Digest::parse(&key)?;
            let info = info_of(&digest, decode(&key, &bytes)?);
            if filter.matches(&info) {
                out.push(info);
            }
        }
        Ok(out)
    }

    async fn delete(&self, ns: &str, digest: &Digest) -> berth_core::Result<()> {
        let key = digest.to_string();
        let txn = self.inner.db.begin_write().map_err(MetadataError::from)?;
        {
            let mut t = txn.open_table(CONTENT).map_err(MetadataError::from)?;
            if t.remove((ns, key.as_str()))
                .map_err(MetadataError::from)?
                .is_none()
            {
                return Err(MetadataError::ContentNotFound(digest.clone()).into());
            }
        }
        txn.commit().map_err(MetadataError::from)?;
        self.mark_dirty();
        Ok(())
    }

    async fn read_at(
        &self,
        ns: &str,
        digest: &Digest,
        offset: i64,
        len: usize,
    ) -> berth_core::Result<Vec<u8>> {
        self.content_record(ns, digest)?;
        Ok(self.inner.blobs.read_at(digest, offset, len)?)
    }

    async fn status(&self, ns: &str, reference: &str) -> berth_core::Result<Status> {
        let s = self
            .inner
            .blobs
            .status(&backend_ref(ns, reference))
            .map_err(|e| match e {
                ContentError::IngestNotFound(_) => {
                    ContentError::IngestNotFound(reference.to_string())
                }
                other => other,
            })?;
        status_in_ns(ns, s).ok_or_else(|| berth_core::Error::not_found(format!("ref {reference}")))
    }

    async fn list_statuses(&self, ns: &str, filters: &[String]) -> berth_core::Result<Vec<Status>> {
        let filter = Filter::parse_all(filters)?;
        Ok(self
            .inner
            .blobs
            .list_statuses()?
            .into_iter()
            .filter_map(|s| status_in_ns(ns, s))
            .filter(|s| filter.matches(s))
            .collect())
    }

    async fn abort(&self, ns: &str, reference: &str) -> berth_core::Result<()> {
        self.inner
            .blobs
            .abort(&backend_ref(ns, reference))
            .map_err(|e| match e {
                ContentError::IngestNotFound(_) => {
                    ContentError::IngestNotFound(reference.to_string()).into()
                }
                other => berth_core::Error::from(other),
            })
    }

    async fn writer(&self, ns: &str, options: WriterOptions) -> berth_core::Result<MetaWriter> {
        identifiers::validate(ns)?;
        if options.reference.is_empty() {
            return Err(ContentError::EmptyRef.into());
        }
        if let Some(d) = &options.digest {
            // As containerd: content already recorded joins the writer's lease even though
            // nothing is written, so a pull or import that finds it keeps it until the image
            // record exists. Under the collection lock, so no collection runs in between.
            let _shared = self.inner.gc_lock.read().expect("gc lock poisoned");
            if self.lease_if_recorded(ns, d, options.lease.as_deref())? {
                return Err(MetadataError::ContentExists(d.clone()).into());
            }
            // Shared blob: the bytes are here from another namespace; record them in this one.
            if self.inner.blobs.contains(d) {
                self.record_content(ns, d, options.lease.as_deref(), None, BTreeMap::new())?;
                return Err(MetadataError::ContentExists(d.clone()).into());
            }
        }
        if let Some(lease) = &options.lease {
            let txn = self.inner.db.begin_write().map_err(MetadataError::from)?;
            ensure_namespace(&txn, ns)?;
            Self::lease_add_in(&txn, ns, lease, "ingests", &options.reference)?;
            txn.commit().map_err(MetadataError::from)?;
        }
        let inner = self.inner.blobs.writer(
            &backend_ref(ns, &options.reference),
            options.size,
            options.digest.clone(),
        )?;
        Ok(MetaWriter {
            meta: self.clone(),
            ns: ns.to_string(),
            reference: options.reference,
            lease: options.lease,
            inner,
        })
    }
}

/// A namespaced writer: a local ingest that becomes a blob recorded in its namespace on commit.
#[derive(Debug)]
pub struct MetaWriter {
    meta: Metadata,
    ns: String,
    reference: String,
    lease: Option<String>,
    inner: LocalWriter,
}

impl ContentWriter for MetaWriter {
    async fn status(&self) -> berth_core::Result<Status> {
        let s = self.inner.status();
        Ok(Status {
            reference: self.reference.clone(),
            offset: s.offset,
            total: s.total,
            expected: s.expected,
            started_at: s.started_at,
            updated_at: s.updated_at,
        })
    }

    async fn write(&mut self, data: &[u8]) -> berth_core::Result<()> {
        Ok(self.inner.write(data)?)
    }

    async fn truncate(&mut self, size: i64) -> berth_core::Result<()> {
        Ok(self.inner.truncate(size)?)
    }

    fn digest(&self) -> Digest {
        self.inner.digest()
    }

    async fn commit(
        self,
        size: i64,
        expected: Option<Digest>,
        labels: BTreeMap<String, String>,
    ) -> berth_core::Result<Digest> {
        labels::validate_all(&labels)?;
        let _shared = self.meta.inner.gc_lock.read().expect("gc lock poisoned");
        let digest = match self.inner.commit(size, expected) {
            Ok(d) => d,
            // The bytes already exist (another namespace has them): record them here.
            Err(ContentError::BlobExists(d)) => d,
            Err(e) => return Err(e.into()),
        };
        self.meta.record_content(
            &self.ns,
            &digest,
            self.lease.as_deref(),
            Some(&self.reference),
            labels,
        )?;
        Ok(digest)
    }
}

//! The content store: an immutable, content-addressed blob store with resumable ingests.
//!
//! Vocabulary (containerd's):
//! - a **blob** is a committed piece of content, named only by its [`Digest`];
//! - an **ingest** is a blob being written, named by a client-chosen **ref**; it holds the bytes
//!   written so far, survives restarts, and becomes a blob on **commit**, when its size and digest
//!   are checked against what the writer expected;
//! - [`Info`] is what is known of a blob: size, times, and **labels** (the only mutable part);
//! - [`Status`] is what is known of an ingest: its ref, offset (bytes written), expected total.
//!
//! Every call takes the namespace explicitly: a blob is visible in a namespace only after it was
//! written (or shared) into it, and deleting it from one namespace does not touch the others.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::SystemTime;

use crate::digest::Digest;
use crate::error::Result;
use crate::filters::Adaptor;

/// What is known of a committed blob in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub digest: Digest,
    pub size: i64,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    pub labels: BTreeMap<String, String>,
}

impl Adaptor for Info {
    fn field(&self, fieldpath: &[String]) -> Option<String> {
        match fieldpath.first().map(String::as_str)? {
            "digest" => Some(self.digest.to_string()),
            "size" => Some(self.size.to_string()),
            "labels" => crate::filters::map_field(&fieldpath[1..], &self.labels),
            _ => None,
        }
    }
}

/// What is known of an ingest in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The client's name for the ingest.
    pub reference: String,
    /// Bytes written so far: the offset the next write must start at.
    pub offset: i64,
    /// The total size the writer announced, 0 when unknown.
    pub total: i64,
    /// The digest the writer announced, if any.
    pub expected: Option<Digest>,
    pub started_at: SystemTime,
    pub updated_at: SystemTime,
}

impl Adaptor for Status {
    fn field(&self, fieldpath: &[String]) -> Option<String> {
        match fieldpath.first().map(String::as_str)? {
            "ref" => Some(self.reference.clone()),
            _ => None,
        }
    }
}

/// How a writer is opened: the ingest ref, what to expect (either may be unknown) and the lease
/// that should hold the ingest and the blob it becomes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterOptions {
    /// The client's name for the ingest; a writer opened again with the same ref resumes it.
    pub reference: String,
    /// Expected total size, 0 when unknown.
    pub size: i64,
    /// Expected digest, if known.
    pub digest: Option<Digest>,
    /// Lease that protects the ingest and the committed blob from garbage collection.
    pub lease: Option<String>,
}

/// A writer holds the lock on one ingest ref until it is dropped or committed.
pub trait ContentWriter: Send {
    /// The ingest's current status (offset = bytes written so far).
    fn status(&self) -> impl Future<Output = Result<Status>> + Send;
    /// Append `data` at the current offset.
    fn write(&mut self, data: &[u8]) -> impl Future<Output = Result<()>> + Send;
    /// Cut the ingest back to `size` bytes (only 0 is needed by the wire protocol).
    fn truncate(&mut self, size: i64) -> impl Future<Output = Result<()>> + Send;
    /// Digest of the bytes written so far.
    fn digest(&self) -> Digest;
    /// Turn the ingest into a blob. `size` (when > 0) and `expected` (when set) must match what was
    /// written, or the commit fails with `FailedPrecondition` and the ingest is discarded.
    /// Committing content that already exists fails with `AlreadyExists`.
    fn commit(
        self,
        size: i64,
        expected: Option<Digest>,
        labels: BTreeMap<String, String>,
    ) -> impl Future<Output = Result<Digest>> + Send;
}

/// A namespaced content store (see the module docs for the vocabulary).
pub trait ContentStore: Send + Sync {
    /// The writer type of this store.
    type Writer: ContentWriter;

    /// Info of the blob `digest` in `ns`; `NotFound` when absent from that namespace.
    fn info(&self, ns: &str, digest: &Digest) -> impl Future<Output = Result<Info>> + Send;
    /// Update the mutable fields (labels) of a blob. `fieldpaths` follow containerd: empty (replace
    /// all labels), `labels`, or `labels.<key>`.
    fn update(
        &self,
        ns: &str,
        info: Info,
        fieldpaths: &[String],
    ) -> impl Future<Output = Result<Info>> + Send;
    /// All blobs of `ns` that match any of `filters` (containerd filter syntax).
    fn list(&self, ns: &str, filters: &[String]) -> impl Future<Output = Result<Vec<Info>>> + Send;
    /// Remove the blob from `ns` (the bytes go when no namespace has it).
    fn delete(&self, ns: &str, digest: &Digest) -> impl Future<Output = Result<()>> + Send;
    /// Read up to `len` bytes of the blob starting at `offset` (fewer only at the end).
    fn read_at(
        &self,
        ns: &str,
        digest: &Digest,
        offset: i64,
        len: usize,
    ) -> impl Future<Output = Result<Vec<u8>>> + Send;
    /// Status of the ingest `reference`; `NotFound` when there is none.
    fn status(&self, ns: &str, reference: &str) -> impl Future<Output = Result<Status>> + Send;
    /// Statuses of the ingests of `ns` matching `filters` (field `ref`).
    fn list_statuses(
        &self,
        ns: &str,
        filters: &[String],
    ) -> impl Future<Output = Result<Vec<Status>>> + Send;
    /// Discard the ingest `reference`.
    fn abort(&self, ns: &str, reference: &str) -> impl Future<Output = Result<()>> + Send;
    /// Open (or resume) the ingest `options.reference`. Fails with `Unavailable` while another writer holds
    /// the ref, and with `AlreadyExists` when `options.digest` is already a blob in `ns`.
    fn writer(
        &self,
        ns: &str,
        options: WriterOptions,
    ) -> impl Future<Output = Result<Self::Writer>> + Send;
}

/// A borrowed content store is one (workflows hold their stores by reference).
impl<T: ContentStore> ContentStore for &T {
    type Writer = T::Writer;

    fn info(&self, ns: &str, digest: &Digest) -> impl Future<Output = Result<Info>> + Send {
        (**self).info(ns, digest)
    }
    fn update(
        &self,
        ns: &str,
        info: Info,
        fieldpaths: &[String],
    ) -> impl Future<Output = Result<Info>> + Send {
        (**self).update(ns, info, fieldpaths)
    }
    fn list(&self, ns: &str, filters: &[String]) -> impl Future<Output = Result<Vec<Info>>> + Send {
        (**self).list(ns, filters)
    }
    fn delete(&self, ns: &str, digest: &Digest) -> impl Future<Output = Result<()>> + Send {
        (**self).delete(ns, digest)
    }
    fn read_at(
        &self,
        ns: &str,
        digest: &Digest,
        offset: i64,
        len: usize,
    ) -> impl Future<Output = Result<Vec<u8>>> + Send {
        (**self).read_at(ns, digest, offset, len)
    }
    fn status(&self, ns: &str, reference: &str) -> impl Future<Output = Result<Status>> + Send {
        (**self).status(ns, reference)
    }
    fn list_statuses(
        &self,
        ns: &str,
        filters: &[String],
    ) -> impl Future<Output = Result<Vec<Status>>> + Send {
        (**self).list_statuses(ns, filters)
    }
    fn abort(&self, ns: &str, reference: &str) -> impl Future<Output = Result<()>> + Send {
        (**self).abort(ns, reference)
    }
    fn writer(
        &self,
        ns: &str,
        options: WriterOptions,
    ) -> impl Future<Output = Result<Self::Writer>> + Send {
        (**self).writer(ns, options)
    }
}

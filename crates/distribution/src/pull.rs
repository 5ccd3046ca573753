//! Pulling: resolve a reference at its registry, then fetch the image's graph (index ->
//! manifests -> config and layers) into a content store, children before parents, each blob
//! verified by digest and labelled as containerd labels it, so that the garbage collector
//! sees one graph rooted at the image record the caller creates afterwards.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use berth_core::content::{ContentStore, ContentWriter, WriterOptions};
use berth_core::labels::GC_REF_CONTENT_PREFIX;
use berth_core::{Descriptor, Digest, ErrorKind};
use berth_images::spec::{self, MediaKind};
use berth_images::{ImageError, Platform};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use oci_client::client::BlobResponse;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::credentials::CredentialProvider;
use crate::error::{DistributionError, Result};
use crate::hosts::{endpoints, host_name, Remote};

/// Label naming where a blob came from: `containerd.io/distribution.source.<host>` = repository
/// (containerd's, used to mount blobs across repositories on push).
pub const DISTRIBUTION_SOURCE_PREFIX: &str = "containerd.io/distribution.source.";

/// The manifest media types asked for, most specific first.
const ACCEPT: &[&str] = &[
    spec::MEDIA_TYPE_OCI_INDEX,
    spec::MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    spec::MEDIA_TYPE_OCI_MANIFEST,
    spec::MEDIA_TYPE_DOCKER_MANIFEST,
];

/// Manifests and indexes larger than this are refused (containerd's limit is 4 MiB too).
const MAX_MANIFEST_SIZE: usize = 4 << 20;
/// Bytes per write into the store.
const WRITE_CHUNK: usize = 1 << 20;
/// Indexes nest at most this deep.
const MAX_DEPTH: usize = 4;

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Fetch only the manifests of an index that are for this platform (None: all of them).
    pub platform: Option<Platform>,
    /// Speak plain HTTP to the registry even when it is not this machine.
    pub plain_http: bool,
    /// Who gives the credentials for a host; None: anonymous. Nothing is read from the docker
    /// config file unless this is a [`crate::DockerConfig`].
    pub credentials: Option<Arc<dyn CredentialProvider>>,
    /// The lease every blob joins. Without one, the garbage collector may take blobs between
    /// their commit and the creation of the image record: give one.
    pub lease: Option<String>,
    /// How many blobs of one manifest download at once (containerd's default is 3).
    pub max_concurrent_downloads: usize,
    /// Where `<host>/hosts.toml` files name mirrors (containerd's `config_path`); None: none.
    pub hosts_dir: Option<std::path::PathBuf>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Some(Platform::host()),
            plain_http: false,
            credentials: None,
            lease: None,
            max_concurrent_downloads: 3,
            hosts_dir: None,
        }
    }
}

/// How a blob came to be in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Downloaded (from the start, or resumed from an earlier ingest).
    Downloaded,
    /// Already in the namespace: nothing downloaded.
    Exists,
}

/// Hears about a pull as it goes (for progress bars); every method has a do-nothing default.
pub trait PullProgress: Send + Sync {
    /// The reference resolved to `target` (an index or a manifest).
    fn resolved(&self, _name: &str, _target: &Descriptor) {}
    /// A blob download begins, at `offset` when an earlier ingest is resumed.
    fn started(&self, _desc: &Descriptor, _offset: i64) {}
    /// `done` bytes of the blob are in the ingest.
    fn advanced(&self, _desc: &Descriptor, _done: i64) {}
    /// The blob is in the store.
    fn finished(&self, _desc: &Descriptor, _how: Fetched) {}
}

/// A [`PullProgress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;
impl PullProgress for NoProgress {}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The normalized name of the reference (`docker.io/library/busybox:latest`): the name
    /// the image record should get.
    pub name: String,
    /// What the reference resolved to: the image record's target.
    pub target: Descriptor,
    /// Blobs downloaded.
    pub downloaded: usize,
    /// Blobs already there.
    pub existed: usize,
    /// Bytes downloaded.
    pub bytes: i64,
}

/// `reference` normalized by [`berth_core::reference`], as the registry client parses it.
pub(crate) fn parse(reference: &str) -> Result<Reference> {
    let normalized = berth_core::reference::normalize(reference)?;
    normalized
        .parse::<Reference>()
        .map_err(|e| DistributionError::InvalidReference {
            reference: reference.to_string(),
            reason: e.to_string(),
        })
}

/// Pulls images into the content store `C`.
#[derive(Debug, Clone)]
pub struct Puller<C> {
    content: C,
}

impl<C: ContentStore> Puller<C> {
    /// A puller writing into `content`.
    pub fn new(content: C) -> Self {
        Puller { content }
    }

    /// Fetch `reference` into namespace `ns`: every blob of the image (for an index, of the
    /// manifests `opts.platform` selects), children before parents. Blobs already in `ns` are
    /// not downloaded again; an ingest left by an interrupted pull is resumed where it stopped.
    pub async fn pull(
        &self,
        ns: &str,
        reference: &str,
        opts: &PullOptions,
        progress: &dyn PullProgress,
    ) -> Result<Pulled> {
        let image = parse(reference)?;
        let host = image.registry().to_string();
        let name = image.whole();
        // The first endpoint that resolves the reference serves the whole pull; a mirror that
        // fails or lacks the image passes the turn to the next, the upstream last.
        let mut tried = Vec::new();
        let mut resolved = None;
        for endpoint in endpoints(opts.hosts_dir.as_deref(), &host, opts.plain_http)? {
            if !endpoint.can("resolve") {
                continue;
            }
            let remote = Remote::new(
                &endpoint,
                &image,
                opts.credentials.as_deref(),
                opts.max_concurrent_downloads,
            )
            .await;
            match remote
                .client
                .pull_manifest_raw(&remote.image, &remote.auth, ACCEPT)
                .await
            {
                Ok((data, _)) => {
                    resolved = Some((remote, data));
                    break;
                }
                Err(e) => {
                    let e = DistributionError::registry(&name, "fetch manifest", e);
                    tracing::debug!(endpoint = %endpoint.host, error = %e, "endpoint did not resolve");
                    tried.push(e);
                }
            }
        }
        let Some((
            Remote {
                client,
                auth,
                image,
            },
            data,
        )) = resolved
        else {
            // The upstream's answer says most (the last tried).
            return Err(tried.pop().unwrap_or_else(|| DistributionError::Registry {
                reference: name.clone(),
                reason: "no endpoint may resolve it (hosts.toml capabilities)".into(),
            }));
        };
        let target = root_descriptor(&name, &image, &data)?;
        progress.resolved(&name, &target);
        // containerd keys the source by host name alone (no port): keep its label.
        let host_name = host_name(&host);
        let source = (
            format!("{DISTRIBUTION_SOURCE_PREFIX}{host_name}"),
            image.repository().to_string(),
        );
        let session = Session {
            store: &self.content,
            ns,
            client,
            auth,
            image,
            name: name.clone(),
            source,
            opts,
            progress,
            tally: Mutex::new(Tally::default()),
        };
        session
            .handle(target.clone(), Some(data.to_vec()), 0)
            .await?;
        let tally = session.tally.into_inner().expect("tally lock poisoned");
        Ok(Pulled {
            name,
            target,
            downloaded: tally.downloaded,
            existed: tally.existed,
            bytes: tally.bytes,
        })
    }
}

/// The descriptor of the manifest or index the registry sent for `image`, checked against the
/// digest the reference names, if any.
fn root_descriptor(name: &str, image: &Reference, data: &[u8]) -> Result<Descriptor> {
    if data.len() > MAX_MANIFEST_SIZE {
        return Err(manifest_error(
            name,
            format!("manifest of {} bytes is too large", data.len()),
            ErrorKind::InvalidArgument,
        ));
    }
    let digest = Digest::sha256_of(data);
    if let Some(want) = image.digest() {
        if want != digest.to_string() {
            return Err(manifest_error(
                name,
                format!("registry sent a manifest with digest {digest}"),
                ErrorKind::DataLoss,
            ));
        }
    }
    Ok(Descriptor {
        media_type: document_media_type(data)
            .ok_or_else(|| {
                manifest_error(
                    name,
                    "the registry's answer is neither a manifest nor an index".into(),
                    ErrorKind::InvalidArgument,
                )
            })?
            .to_string(),
        digest,
        size: data.len() as i64,
        annotations: BTreeMap::new(),
    })
}

fn manifest_error(reference: &str, reason: String, kind: ErrorKind) -> DistributionError {
    DistributionError::Manifest {
        reference: reference.to_string(),
        reason,
        kind,
    }
}

/// The media type a manifest or index document gives itself, or that its shape implies (OCI
/// documents may leave `mediaType` out).
fn document_media_type(data: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        #[serde(default)]
        schema_version: u32,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        config: Option<serde_json::Value>,
    }
    let shape: Shape = serde_json::from_slice(data).ok()?;
    match shape.media_type {
        Some(mt) if !mt.is_empty() => Some(mt),
        _ if shape.schema_version == 1 => Some(spec::MEDIA_TYPE_DOCKER_SCHEMA1.to_string()),
        _ if shape.manifests.is_some() => Some(spec::MEDIA_TYPE_OCI_INDEX.to_string()),
        _ if shape.config.is_some() => Some(spec::MEDIA_TYPE_OCI_MANIFEST.to_string()),
        _ => None,
    }
}

#[derive(Debug, Default)]
struct Tally {
    downloaded: usize,
    existed: usize,
    bytes: i64,
}

/// One pull in progress.
struct Session<'a, C> {
    store: &'a C,
    ns: &'a str,
    client: Client,
    auth: RegistryAuth,
    image: Reference,
    name: String,
    /// The distribution source label every blob gets.
    source: (String, String),
    opts: &'a PullOptions,
    progress: &'a dyn PullProgress,
    tally: Mutex<Tally>,
}

impl<C: ContentStore> Session<'_, C> {
    /// Fetch `desc` and everything below it; `data` is its bytes when already at hand.
    fn handle(
        &self,
        desc: Descriptor,
        data: Option<Vec<u8>>,
        depth: usize,
    ) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            match MediaKind::of(&desc.media_type) {
                MediaKind::Index => self.index(desc, data, depth).await,
                MediaKind::Manifest => self.manifest(desc, data).await,
                MediaKind::Schema1 => Err(ImageError::Schema1(desc.digest).into()),
                _ => Err(ImageError::UnexpectedMediaType {
                    media_type: desc.media_type,
                    digest: desc.digest,
                }
                .into()),
            }
        })
    }

    async fn index(&self, desc: Descriptor, data: Option<Vec<u8>>, depth: usize) -> Result<()> {
        if depth >= MAX_DEPTH {
            return Err(ImageError::TooDeep(desc.digest).into());
        }
        let data = self.document(&desc, data).await?;
        let index: spec::Index = spec::parse_json(&data, "index", &desc.digest)?;
        spec::check_media_type(index.media_type.as_deref(), &desc, "index")?;
        let mut labels = BTreeMap::new();
        let mut fetched = 0;
        for entry in &index.manifests {
            let wanted = match (&self.opts.platform, &entry.platform) {
                (Some(want), Some(p)) => want.matches(p),
                // containerd's FilterPlatforms keeps entries that name no platform.
                _ => true,
            };
            let child = entry.to_descriptor(&desc.digest)?;
            if !wanted
                || !matches!(
                    MediaKind::of(&child.media_type),
                    MediaKind::Index | MediaKind::Manifest
                )
            {
                continue;
            }
            self.handle(child.clone(), None, depth + 1).await?;
            labels.insert(
                format!("{GC_REF_CONTENT_PREFIX}.m.{fetched}"),
                child.digest.to_string(),
            );
            fetched += 1;
        }
        if fetched == 0 {
            return Err(ImageError::NoMatchingPlatform {
                platform: self
                    .opts
                    .platform
                    .as_ref()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "any".into()),
                digest: desc.digest,
            }
            .into());
        }
        self.put(&desc, &data, "index", labels).await
    }

    async fn manifest(&self, desc: Descriptor, data: Option<Vec<u8>>) -> Result<()> {
        let data = self.document(&desc, data).await?;
        let manifest: spec::Manifest = spec::parse_json(&data, "manifest", &desc.digest)?;
        spec::check_media_type(manifest.media_type.as_deref(), &desc, "manifest")?;
        let config = manifest.config.to_descriptor(&desc.digest)?;
        let mut labels = BTreeMap::from([(
            format!("{GC_REF_CONTENT_PREFIX}.config"),
            config.digest.to_string(),
        )]);
        let mut blobs = vec![(config, "config")];
        for (i, layer) in manifest.layers.iter().enumerate() {
            let layer = layer.to_descriptor(&desc.digest)?;
            labels.insert(
                format!("{GC_REF_CONTENT_PREFIX}.l.{i}"),
                layer.digest.to_string(),
            );
            blobs.push((layer, "layer"));
        }
        let downloads: Vec<BoxFuture<'_, Result<()>>> = blobs
            .iter()
            .map(|(d, kind)| Box::pin(self.blob(d, kind)) as BoxFuture<'_, Result<()>>)
            .collect();
        futures::stream::iter(downloads)
            .buffer_unordered(self.opts.max_concurrent_downloads.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        self.put(&desc, &data, "manifest", labels).await
    }

    /// The bytes of a manifest or index: `data`, else the store's copy, else the registry's.
    async fn document(&self, desc: &Descriptor, data: Option<Vec<u8>>) -> Result<Vec<u8>> {
        if let Some(data) = data {
            return Ok(data);
        }
        if desc.size < 0 || desc.size as usize > MAX_MANIFEST_SIZE {
            return Err(ImageError::TooLarge {
                what: "manifest",
                digest: desc.digest.clone(),
                size: desc.size,
                limit: MAX_MANIFEST_SIZE as i64,
            }
            .into());
        }
        match berth_images::read_blob(
            self.store,
            self.ns,
            desc,
            "manifest",
            MAX_MANIFEST_SIZE as i64,
        )
        .await
        {
            Ok(data) => return Ok(data),
            Err(e) if e.is(ErrorKind::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        let by_digest = self.image.clone_with_digest(desc.digest.to_string());
        let (data, _) = self
            .client
            .pull_manifest_raw(&by_digest, &self.auth, &[&desc.media_type])
            .await
            .map_err(|e| {
                DistributionError::registry(
                    &self.name,
                    &format!("fetch manifest {}", desc.digest),
                    e,
                )
            })?;
        let actual = Digest::sha256_of(&data);
        if actual != desc.digest || data.len() as i64 != desc.size {
            return Err(ImageError::Corrupt {
                digest: desc.digest.clone(),
                actual,
                size: data.len(),
                expected_size: desc.size,
            }
            .into());
        }
        Ok(data.to_vec())
    }

    /// Store a manifest or index (small, in memory) with its labels.
    async fn put(
        &self,
        desc: &Descriptor,
        data: &[u8],
        kind: &str,
        mut labels: BTreeMap<String, String>,
    ) -> Result<()> {
        labels.insert(self.source.0.clone(), self.source.1.clone());
        let Some(mut w) = self.writer(desc, kind, &labels).await? else {
            return Ok(());
        };
        w.truncate(0).await?;
        w.write(data).await?;
        self.commit(w, desc, labels).await?;
        self.count(Fetched::Downloaded, desc.size);
        Ok(())
    }

    /// Download a config or layer, resuming an earlier ingest of it.
    async fn blob(&self, desc: &Descriptor, kind: &str) -> Result<()> {
        let labels = BTreeMap::from([self.source.clone()]);
        let Some(mut w) = self.writer(desc, kind, &labels).await? else {
            self.progress.finished(desc, Fetched::Exists);
            return Ok(());
        };
        let mut offset = w.status().await?.offset;
        if offset >= desc.size || offset < 0 {
            w.truncate(0).await?;
            offset = 0;
        }
        self.progress.started(desc, offset);
        let oci = OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.to_string(),
            size: desc.size,
            ..Default::default()
        };
        let what = format!("fetch {kind} {}", desc.digest);
        let stream = if offset > 0 {
            let remaining = (desc.size - offset) as u64;
            match self
                .client
                .pull_blob_stream_partial(&self.image, &oci, offset as u64, Some(remaining))
                .await
                .map_err(|e| DistributionError::registry(&self.name, &what, e))?
            {
                BlobResponse::Partial(s) => s,
                BlobResponse::Full(s) => {
                    // The registry ignored the range: start over.
                    w.truncate(0).await?;
                    offset = 0;
                    s
                }
            }
        } else {
            self.client
                .pull_blob_stream(&self.image, &oci)
                .await
                .map_err(|e| DistributionError::registry(&self.name, &what, e))?
        };
        let mut stream = stream.stream;
        let mut done = offset;
        // HTTP bodies arrive in pieces of a few KiB; the store is written in pieces of
        // WRITE_CHUNK (one gRPC message each for a remote store), as containerd copies.
        let mut buf: Vec<u8> = Vec::with_capacity(WRITE_CHUNK);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| DistributionError::Registry {
                reference: self.name.clone(),
                reason: format!("{what}: {e}"),
            })?;
            let received = done + (buf.len() + chunk.len()) as i64;
            if received > desc.size {
                return Err(ImageError::Corrupt {
                    digest: desc.digest.clone(),
                    actual: w.digest(),
                    size: received as usize,
                    expected_size: desc.size,
                }
                .into());
            }
            buf.extend_from_slice(&chunk);
            if buf.len() >= WRITE_CHUNK {
                w.write(&buf).await?;
                done += buf.len() as i64;
                buf.clear();
                self.progress.advanced(desc, done);
            }
        }
        if !buf.is_empty() {
            w.write(&buf).await?;
            done += buf.len() as i64;
            self.progress.advanced(desc, done);
        }
        self.commit(w, desc, labels).await?;
        self.count(Fetched::Downloaded, done - offset);
        self.progress.finished(desc, Fetched::Downloaded);
        Ok(())
    }

    /// Open the ingest of `desc` (containerd's ref names: `layer-sha256:…`), or None when the
    /// blob is already in the namespace (its labels then made to include `labels`).
    async fn writer(
        &self,
        desc: &Descriptor,
        kind: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Option<C::Writer>> {
        let options = WriterOptions {
            reference: format!("{kind}-{}", desc.digest),
            size: desc.size,
            digest: Some(desc.digest.clone()),
            lease: self.opts.lease.clone(),
        };
        // Another pull of the same blob holds the ref: wait for it (containerd retries too).
        let mut wait = std::time::Duration::from_millis(50);
        loop {
            match self.store.writer(self.ns, options.clone()).await {
                Ok(w) => return Ok(Some(w)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    self.exists(desc, labels).await?;
                    return Ok(None);
                }
                Err(e) if e.kind() == ErrorKind::Unavailable && wait.as_secs() < 30 => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => return Err(e.context(format!("open ingest of {}", desc.digest)).into()),
            }
        }
    }

    async fn commit(
        &self,
        w: C::Writer,
        desc: &Descriptor,
        labels: BTreeMap<String, String>,
    ) -> Result<()> {
        let reference = w.status().await?.reference;
        match w
            .commit(desc.size, Some(desc.digest.clone()), labels.clone())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => self.exists(desc, &labels).await,
            Err(e) => {
                // A failed verification keeps the ingest (as containerd's store); bytes that do
                // not hash to the digest are no use to resume from, so the next pull starts anew.
                if e.kind() == ErrorKind::FailedPrecondition {
                    if let Err(ae) = self.store.abort(self.ns, &reference).await {
                        tracing::warn!(%reference, error = %ae, "abort of a rejected ingest");
                    }
                }
                Err(e.context(format!("commit {}", desc.digest)).into())
            }
        }
    }

    /// The blob is in the namespace: give it the labels it lacks.
    async fn exists(&self, desc: &Descriptor, labels: &BTreeMap<String, String>) -> Result<()> {
        self.count(Fetched::Exists, 0);
        let mut info = self.store.info(self.ns, &desc.digest).await?;
        let missing: Vec<String> = labels
            .iter()
            .filter(|(k, v)| info.labels.get(*k) != Some(*v))
            .map(|(k, _)| format!("labels.{k}"))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        info.labels.extend(labels.clone());
        self.store.update(self.ns, info, &missing).await?;
        Ok(())
    }

    fn count(&self, how: Fetched, bytes: i64) {
        let mut t = self.tally.lock().expect("tally lock poisoned");
        match how {
            Fetched::Downloaded => t.downloaded += 1,
            Fetched::Exists => t.existed += 1,
        }
        t.bytes += bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_as_berth_core_normalizes_them() {
        let d = format!("sha256:{}", "a".repeat(64));
        for r in ["busybox", "127.0.0.1:5000/a/b:v1", &format!("busybox@{d}")] {
            assert_eq!(
                parse(r).unwrap().whole(),
                berth_core::reference::normalize(r).unwrap()
            );
        }
        assert_eq!(
            parse(&format!("busybox@{d}")).unwrap().whole(),
            format!("docker.io/library/busybox@{d}")
        );
        for bad in ["Busybox", "a//b", "busybox@sha256:abc"] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}: {err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn documents_say_what_they_are() {
        let oci_index = br#"{"schemaVersion":2,"manifests":[]}"#;
        let oci_manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}"#;
        let schema1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert_eq!(
            document_media_type(oci_index).as_deref(),
            Some(spec::MEDIA_TYPE_OCI_INDEX)
        );
        assert_eq!(
            document_media_type(oci_manifest).as_deref(),
            Some(spec::MEDIA_TYPE_OCI_MANIFEST)
        );
        assert_eq!(
            document_media_type(docker).as_deref(),
            Some(spec::MEDIA_TYPE_DOCKER_MANIFEST)
        );
        assert_eq!(
            document_media_type(schema1).as_deref(),
            Some(spec::MEDIA_TYPE_DOCKER_SCHEMA1)
        );
        assert_eq!(document_media_type(b"{}"), None);
        assert_eq!(document_media_type(b"not json"), None);
    }

    #[test]
    fn a_digest_reference_must_match_what_the_registry_sent() {
        let data = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        let good = Digest::sha256_of(data);
        let image: Reference = format!("127.0.0.1:5000/x@{good}").parse().unwrap();
        let d = root_descriptor("x", &image, data).unwrap();
        assert_eq!(d.digest, good);
        assert_eq!(d.size, data.len() as i64);
        let other = Digest::sha256_of(b"other");
        let image: Reference = format!("127.0.0.1:5000/x@{other}").parse().unwrap();
        let err = root_descriptor("x", &image, data).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DataLoss, "{err}");
    }
}

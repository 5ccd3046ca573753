//! Pushing: upload an image's graph from a content store to a registry, blobs (configs and
//! layers) before the manifests that name them and manifests before the index, so that the
//! registry can check every reference as it arrives; the root is tagged last.

use std::collections::BTreeSet;
use std::sync::Arc;

use berth_core::content::ContentStore;
use berth_core::{Descriptor, ErrorKind};
use berth_images::spec::{self, MediaKind};
use berth_images::ImageError;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use oci_client::errors::OciDistributionError;
use oci_client::{Reference, RegistryOperation};

use crate::credentials::CredentialProvider;
use crate::error::{DistributionError, Result};
use crate::hosts::{endpoints, Remote};
use crate::pull::parse;

/// Manifests and indexes larger than this are refused.
const MAX_MANIFEST_SIZE: i64 = 4 << 20;
/// Bytes per read from the store while uploading.
const READ_CHUNK: i64 = 1 << 20;
/// Indexes nest at most this deep.
const MAX_DEPTH: usize = 4;

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Speak plain HTTP to the registry even when it is not this machine.
    pub plain_http: bool,
    /// Who gives the credentials for a host; None: anonymous. Nothing is read from the docker
    /// config file unless this is a [`crate::DockerConfig`].
    pub credentials: Option<Arc<dyn CredentialProvider>>,
    /// How many blobs upload at once.
    pub max_concurrent_uploads: usize,
    /// Where `<host>/hosts.toml` files are (an endpoint with the `push` capability is used).
    pub hosts_dir: Option<std::path::PathBuf>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            plain_http: false,
            credentials: None,
            max_concurrent_uploads: 3,
            hosts_dir: None,
        }
    }
}

/// How a blob came to be at the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    /// Sent now.
    Sent,
    /// The registry had it: nothing sent.
    Exists,
}

/// Hears about a push as it goes; every method has a do-nothing default.
pub trait PushProgress: Send + Sync {
    /// The upload of a blob or manifest begins.
    fn started(&self, _desc: &Descriptor) {}
    /// The blob or manifest is at the registry.
    fn finished(&self, _desc: &Descriptor, _how: Uploaded) {}
}

/// A [`PushProgress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPushProgress;
impl PushProgress for NoPushProgress {}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    /// The normalized reference pushed to.
    pub name: String,
    /// The root pushed (the reference's tag now names it).
    pub target: Descriptor,
    /// Blobs and manifests sent.
    pub sent: usize,
    /// Blobs the registry already had.
    pub existed: usize,
    /// Bytes sent.
    pub bytes: i64,
}

/// One thing to upload, in upload order.
#[derive(Debug, Clone)]
enum Item {
    /// A config or layer, streamed from the store.
    Blob(Descriptor),
    /// A manifest or index (its bytes at hand); `root` is pushed by the reference's tag.
    Document {
        desc: Descriptor,
        data: Vec<u8>,
        root: bool,
    },
}

/// Pushes images from the content store `C`.
#[derive(Debug, Clone)]
pub struct Pusher<C> {
    content: C,
}

impl<C: ContentStore + Clone + 'static> Pusher<C> {
    /// A pusher reading from `content`.
    pub fn new(content: C) -> Self {
        Pusher { content }
    }

    /// Upload the image whose root is `target` (namespace `ns`) as `reference`: every blob
    /// the graph names must be in the store (for an index, every manifest: pull with all
    /// platforms first). Blobs the registry has are not sent again.
    pub async fn push(
        &self,
        ns: &str,
        target: &Descriptor,
        reference: &str,
        opts: &PushOptions,
        progress: &dyn PushProgress,
    ) -> Result<PushedImage> {
        let image = parse(reference)?;
        let name = image.whole();
        if let Some(d) = image.digest() {
            if d != target.digest.to_string() {
                return Err(DistributionError::InvalidReference {
                    reference: reference.to_string(),
                    reason: format!("names digest {d}, the image is {}", target.digest),
                });
            }
        }
        let mut items = Vec::new();
        let mut seen = BTreeSet::new();
        self.walk(ns, target, 0, true, &mut items, &mut seen)
            .await?;
        let endpoint = endpoints(opts.hosts_dir.as_deref(), image.registry(), opts.plain_http)?
            .into_iter()
            .find(|e| e.can("push"))
            .ok_or_else(|| DistributionError::Registry {
                reference: name.clone(),
                reason: "no endpoint may push (hosts.toml capabilities)".into(),
            })?;
        let remote = Remote::new(
            &endpoint,
            &image,
            opts.credentials.as_deref(),
            opts.max_concurrent_uploads,
        )
        .await;
        let image = remote.image.clone();
        remote
            .client
            .auth(&image, &remote.auth, RegistryOperation::Push)
            .await
            .map_err(|e| DistributionError::registry(&name, "authenticate for push", e))?;
        let session = Session {
            store: &self.content,
            ns,
            remote: &remote,
            image: &image,
            name: &name,
            progress,
        };
        let (blobs, documents): (Vec<Item>, Vec<Item>) =
            items.into_iter().partition(|i| matches!(i, Item::Blob(_)));
        let outcomes: Vec<(Uploaded, i64)> = futures::stream::iter(
            blobs
                .iter()
                .map(|i| Box::pin(session.upload(i)) as BoxFuture<'_, Result<(Uploaded, i64)>>),
        )
        .buffer_unordered(opts.max_concurrent_uploads.max(1))
        .try_collect()
        .await?;
        let mut pushed = PushedImage {
            name: name.clone(),
            target: target.clone(),
            sent: 0,
            existed: 0,
            bytes: 0,
        };
        // Documents one at a time, children first: the registry checks what they name.
        let mut all = outcomes;
        for d in &documents {
            all.push(session.upload(d).await?);
        }
        for (how, bytes) in all {
            match how {
                Uploaded::Sent => pushed.sent += 1,
                Uploaded::Exists => pushed.existed += 1,
            }
            pushed.bytes += bytes;
        }
        Ok(pushed)
    }

    /// Collect what `desc` needs uploaded, children before parents.
    fn walk<'a>(
        &'a self,
        ns: &'a str,
        desc: &'a Descriptor,
        depth: usize,
        root: bool,
        items: &'a mut Vec<Item>,
        seen: &'a mut BTreeSet<String>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if !seen.insert(desc.digest.to_string()) {
                return Ok(());
            }
            let kind = MediaKind::of(&desc.media_type);
            if !matches!(kind, MediaKind::Index | MediaKind::Manifest) {
                items.push(Item::Blob(desc.clone()));
                return Ok(());
            }
            if depth >= MAX_DEPTH {
                return Err(ImageError::TooDeep(desc.digest.clone()).into());
            }
            let data =
                berth_images::read_blob(&self.content, ns, desc, "manifest", MAX_MANIFEST_SIZE)
                    .await
                    .map_err(|e| missing(e, desc))?;
            if kind == MediaKind::Index {
                let index: spec::Index = spec::parse_json(&data, "index", &desc.digest)?;
                for child in &index.manifests {
                    let child = child.to_descriptor(&desc.digest)?;
                    self.walk(ns, &child, depth + 1, false, items, seen).await?;
                }
            } else {
                let m: spec::Manifest = spec::parse_json(&data, "manifest", &desc.digest)?;
                let config = m.config.to_descriptor(&desc.digest)?;
                self.walk(ns, &config, depth + 1, false, items, seen)
                    .await?;
                for layer in &m.layers {
                    let layer = layer.to_descriptor(&desc.digest)?;
                    self.walk(ns, &layer, depth + 1, false, items, seen).await?;
                }
            }
            items.push(Item::Document {
                desc: desc.clone(),
                data,
                root,
            });
            Ok(())
        })
    }
}

/// A manifest that is not in the store: say what to do.
fn missing(e: ImageError, desc: &Descriptor) -> DistributionError {
    if e.is(ErrorKind::NotFound) {
        DistributionError::Core(berth_core::Error::new(
            ErrorKind::NotFound,
            format!(
                "{} {} is not in the content store (pull the image with all its platforms to push it)",
                desc.media_type, desc.digest
            ),
        ))
    } else {
        e.into()
    }
}

struct Session<'a, C> {
    store: &'a C,
    ns: &'a str,
    remote: &'a Remote,
    image: &'a Reference,
    name: &'a str,
    progress: &'a dyn PushProgress,
}

impl<C: ContentStore + Clone + 'static> Session<'_, C> {
    async fn upload(&self, item: &Item) -> Result<(Uploaded, i64)> {
        let client = &self.remote.client;
        match item {
            Item::Blob(desc) => {
                let digest = desc.digest.to_string();
                if client.blob_exists(self.image, &digest).await.map_err(|e| {
                    DistributionError::registry(self.name, &format!("check blob {digest}"), e)
                })? {
                    self.progress.finished(desc, Uploaded::Exists);
                    return Ok((Uploaded::Exists, 0));
                }
                self.progress.started(desc);
                let stream = blob_stream(self.store.clone(), self.ns.to_string(), desc.clone());
                client
                    .push_blob_stream(self.image, stream, &digest, Some(desc.size as u64))
                    .await
                    .map_err(|e| {
                        DistributionError::registry(self.name, &format!("push blob {digest}"), e)
                    })?;
                self.progress.finished(desc, Uploaded::Sent);
                Ok((Uploaded::Sent, desc.size))
            }
            Item::Document { desc, data, root } => {
                let to = if *root && self.image.digest().is_none() {
                    self.image.clone()
                } else {
                    self.image.clone_with_digest(desc.digest.to_string())
                };
                let content_type = desc.media_type.parse().map_err(|_| {
                    DistributionError::Core(berth_core::Error::new(
                        ErrorKind::InvalidArgument,
                        format!("media type {:?} of {}", desc.media_type, desc.digest),
                    ))
                })?;
                self.progress.started(desc);
                client
                    .push_manifest_raw(&to, data.clone(), content_type)
                    .await
                    .map_err(|e| {
                        DistributionError::registry(
                            self.name,
                            &format!("push manifest {}", desc.digest),
                            e,
                        )
                    })?;
                self.progress.finished(desc, Uploaded::Sent);
                Ok((Uploaded::Sent, desc.size))
            }
        }
    }
}

/// The blob `desc` of `ns` read from `store` in pieces, for an upload body.
fn blob_stream<C: ContentStore + 'static>(
    store: C,
    ns: String,
    desc: Descriptor,
) -> impl futures::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    let store = std::sync::Arc::new(store);
    futures::stream::try_unfold(0i64, move |offset| {
        let (store, ns, desc) = (store.clone(), ns.clone(), desc.clone());
        async move {
            if offset >= desc.size {
                return Ok(None);
            }
            let len = READ_CHUNK.min(desc.size - offset) as usize;
            let data = store
                .read_at(&ns, &desc.digest, offset, len)
                .await
                .map_err(|e| OciDistributionError::GenericError(Some(e.to_string())))?;
            if data.is_empty() {
                return Err(OciDistributionError::GenericError(Some(format!(
                    "blob {} ends at {offset} of {} bytes",
                    desc.digest, desc.size
                ))));
            }
            let next = offset + data.len() as i64;
            Ok(Some((bytes::Bytes::from(data), next)))
        }
    })
}

//! From an image's target to what unpacking needs: the manifest for a platform, its config, and
//! its layers with their diff IDs and chain IDs.
//!
//! An image's **target** is either a **manifest** (one config, a list of layers) or an **index**
//! (a list of manifests, usually one per platform, possibly nested indexes). Resolving an index
//! picks the manifest whose platform (on its descriptor, or else in its config) best matches the
//! wanted one, as containerd's `images.Manifest` does; a target that is itself a manifest is
//! taken whatever its platform.

use std::collections::{BTreeSet, VecDeque};

use berth_core::content::ContentStore;
use berth_core::{Descriptor, Digest};

use crate::chain::chain_ids;
use crate::error::{ImageError, Result};
use crate::platform::Platform;
use crate::spec::{check_media_type, parse_json, ImageConfig, Index, Manifest, MediaKind};

/// The largest manifest, index or config read (Docker registries cap manifests at 4 MiB; configs
/// with long histories are bigger, but not this big).
pub const MAX_DOCUMENT_SIZE: i64 = 16 << 20;

/// How deep indexes may nest (real images nest at most once or twice).
const MAX_INDEX_DEPTH: usize = 8;

/// Bytes asked of the content store per read.
const READ_CHUNK: usize = 1 << 20;

/// One layer of a resolved image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The layer blob as the manifest lists it (usually compressed).
    pub blob: Descriptor,
    /// The digest of the uncompressed tar, from the config.
    pub diff_id: Digest,
    /// The chain ID of the stack up to and including this layer: the name of its snapshot.
    pub chain_id: Digest,
}

/// An image resolved for one platform.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedImage {
    /// The indexes read on the way to the manifest (empty when the target is a manifest).
    pub indexes: Vec<Descriptor>,
    /// The manifest chosen.
    pub manifest_desc: Descriptor,
    pub manifest: Manifest,
    /// The config blob; unpacking labels it with the snapshot it keeps alive.
    pub config_desc: Descriptor,
    pub config: ImageConfig,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
}

impl ResolvedImage {
    /// The chain ID of the top layer: the snapshot a container's rootfs is prepared on. `None`
    /// for an image without layers.
    pub fn chain_id(&self) -> Option<&Digest> {
        self.layers.last().map(|l| &l.chain_id)
    }

    /// The diff IDs of the layers, bottom first.
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// The platform the config declares.
    pub fn platform(&self) -> Platform {
        self.config.platform()
    }

    /// The size of every blob this platform's image consists of: indexes, manifest, config and
    /// layers (as stored, i.e. compressed), each counted once.
    pub fn size(&self) -> i64 {
        let mut seen = BTreeSet::new();
        self.indexes
            .iter()
            .chain([&self.manifest_desc, &self.config_desc])
            .chain(self.layers.iter().map(|l| &l.blob))
            .filter(|d| seen.insert(d.digest.clone()))
            .map(|d| d.size)
            .sum()
    }
}

/// Read the whole blob `desc` of namespace `ns`, checking its size against `limit` first and its
/// digest after (`what` names it in errors: `manifest`, `index`, `config`).
pub async fn read_blob<C: ContentStore>(
    content: &C,
    ns: &str,
    desc: &Descriptor,
    what: &'static str,
    limit: i64,
) -> Result<Vec<u8>> {
    if desc.size > limit {
        return Err(ImageError::TooLarge {
            what,
            digest: desc.digest.clone(),
            size: desc.size,
            limit,
        });
    }
    let size = usize::try_from(desc.size).unwrap_or(0);
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        let want = READ_CHUNK.min(size - data.len());
        let chunk = content
            .read_at(ns, &desc.digest, data.len() as i64, want)
            .await
            .map_err(ImageError::context(format!("read {what} {}", desc.digest)))?;
        if chunk.is_empty() {
            break;
        }
        data.extend_from_slice(&chunk);
    }
    let actual = Digest::sha256_of(&data);
    if data.len() != size || actual != desc.digest {
        return Err(ImageError::Corrupt {
            digest: desc.digest.clone(),
            actual,
            size: data.len(),
            expected_size: desc.size,
        });
    }
    Ok(data)
}

async fn read_manifest<C: ContentStore>(
    content: &C,
    ns: &str,
    desc: &Descriptor,
) -> Result<Manifest> {
    let data = read_blob(content, ns, desc, "manifest", MAX_DOCUMENT_SIZE).await?;
    parse_document(&data, desc, "manifest")
}

async fn read_index<C: ContentStore>(content: &C, ns: &str, desc: &Descriptor) -> Result<Index> {
    let data = read_blob(content, ns, desc, "index", MAX_DOCUMENT_SIZE).await?;
    parse_document(&data, desc, "index")
}

/// The `mediaType` field of a document, read before the rest so that a document of the wrong
/// kind is named as such rather than as a missing field.
#[derive(serde::Deserialize)]
struct MediaTypeProbe {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
}

fn parse_document<T: serde::de::DeserializeOwned>(
    data: &[u8],
    desc: &Descriptor,
    what: &'static str,
) -> Result<T> {
    let probe: MediaTypeProbe = parse_json(data, what, &desc.digest)?;
    check_media_type(probe.media_type.as_deref(), desc, what)?;
    parse_json(data, what, &desc.digest)
}

async fn read_config<C: ContentStore>(
    content: &C,
    ns: &str,
    manifest: &Manifest,
    manifest_digest: &Digest,
) -> Result<(Descriptor, ImageConfig)> {
    let desc = manifest.config.to_descriptor(manifest_digest)?;
    if MediaKind::of(&desc.media_type) != MediaKind::Config {
        return Err(ImageError::UnexpectedMediaType {
            media_type: desc.media_type,
            digest: desc.digest,
        });
    }
    let data = read_blob(content, ns, &desc, "config", MAX_DOCUMENT_SIZE).await?;
    let config = parse_json(&data, "config", &desc.digest)?;
    Ok((desc, config))
}

fn unexpected(desc: &Descriptor) -> ImageError {
    match MediaKind::of(&desc.media_type) {
        MediaKind::Schema1 => ImageError::Schema1(desc.digest.clone()),
        _ => ImageError::UnexpectedMediaType {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
        },
    }
}

/// A manifest found while walking indexes: how well it fits, and in which order it was listed.
struct Candidate {
    rank: usize,
    order: usize,
    desc: Descriptor,
}

/// The manifest of `target` for `platform`, and the indexes read to find it.
pub async fn resolve_manifest<C: ContentStore>(
    content: &C,
    ns: &str,
    target: &Descriptor,
    platform: &Platform,
) -> Result<(Vec<Descriptor>, Descriptor, Manifest)> {
    match MediaKind::of(&target.media_type) {
        MediaKind::Manifest => {
            let m = read_manifest(content, ns, target).await?;
            return Ok((Vec::new(), target.clone(), m));
        }
        MediaKind::Index => {}
        _ => return Err(unexpected(target)),
    }
    let mut indexes = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut queue = VecDeque::from([(target.clone(), 0usize)]);
    while let Some((desc, depth)) = queue.pop_front() {
        if depth >= MAX_INDEX_DEPTH {
            return Err(ImageError::TooDeep(target.digest.clone()));
        }
        let index = read_index(content, ns, &desc).await?;
        indexes.push(desc.clone());
        for child in &index.manifests {
            let child_desc = child.to_descriptor(&desc.digest)?;
            let rank = match (MediaKind::of(&child_desc.media_type), &child.platform) {
                (MediaKind::Index, Some(p)) if !platform.matches(p) => continue,
                (MediaKind::Index, _) => {
                    queue.push_back((child_desc, depth + 1));
                    continue;
                }
                (MediaKind::Manifest, Some(p)) => platform.rank(p),
                // No platform on the descriptor: the config says (containerd reads it too).
                (MediaKind::Manifest, None) => {
                    let m = read_manifest(content, ns, &child_desc).await?;
                    let (_, config) = read_config(content, ns, &m, &child_desc.digest).await?;
                    platform.rank(&config.platform())
                }
                // Attestations, signatures and other artifacts are not images to run.
                _ => continue,
            };
            if let Some(rank) = rank {
                let order = candidates.len();
                candidates.push(Candidate {
                    rank,
                    order,
                    desc: child_desc,
                });
            }
        }
    }
    let best = candidates
        .into_iter()
        .min_by_key(|c| (c.rank, c.order))
        .ok_or_else(|| ImageError::NoMatchingPlatform {
            platform: platform.to_string(),
            digest: target.digest.clone(),
        })?;
    let m = read_manifest(content, ns, &best.desc).await?;
    Ok((indexes, best.desc, m))
}

/// Resolve the image whose target is `target` for `platform`: manifest, config, layers with diff
/// IDs and chain IDs. Fails when the config's diff IDs and the manifest's layers disagree in
/// number, or when a layer is not of a layer media type.
pub async fn resolve<C: ContentStore>(
    content: &C,
    ns: &str,
    target: &Descriptor,
    platform: &Platform,
) -> Result<ResolvedImage> {
    let (indexes, manifest_desc, manifest) =
        resolve_manifest(content, ns, target, platform).await?;
    let (config_desc, config) = read_config(content, ns, &manifest, &manifest_desc.digest).await?;
    let diff_ids = config.diff_ids(&config_desc.digest)?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::LayerCount {
            manifest: manifest_desc.digest.clone(),
            layers: manifest.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let chains = chain_ids(&diff_ids);
    let mut layers = Vec::with_capacity(diff_ids.len());
    for ((blob, diff_id), chain_id) in manifest.layers.iter().zip(diff_ids).zip(chains) {
        let blob = blob.to_descriptor(&manifest_desc.digest)?;
        if MediaKind::of(&blob.media_type) != MediaKind::Layer {
            return Err(unexpected(&blob));
        }
        layers.push(Layer {
            blob,
            diff_id,
            chain_id,
        });
    }
    Ok(ResolvedImage {
        indexes,
        manifest_desc,
        manifest,
        config_desc,
        config,
        layers,
    })
}

/// Every platform `target` offers: those of an index's manifests (from their descriptors, or
/// their configs), or the config's platform of a single manifest. Sorted, without duplicates;
/// artifacts and attestations (platform `unknown/unknown`) are left out.
pub async fn platforms<C: ContentStore>(
    content: &C,
    ns: &str,
    target: &Descriptor,
) -> Result<Vec<Platform>> {
    let mut out = BTreeSet::new();
    let mut queue = VecDeque::from([(target.clone(), 0usize)]);
    while let Some((desc, depth)) = queue.pop_front() {
        match MediaKind::of(&desc.media_type) {
            MediaKind::Manifest => {
                let m = read_manifest(content, ns, &desc).await?;
                let (_, config) = read_config(content, ns, &m, &desc.digest).await?;
                out.insert(config.platform().normalize());
            }
            MediaKind::Index if depth < MAX_INDEX_DEPTH => {
                let index = read_index(content, ns, &desc).await?;
                for child in &index.manifests {
                    let child_desc = child.to_descriptor(&desc.digest)?;
                    match (MediaKind::of(&child_desc.media_type), &child.platform) {
                        (MediaKind::Manifest, Some(p)) => {
                            out.insert(p.normalize());
                        }
                        (MediaKind::Manifest | MediaKind::Index, _) => {
                            queue.push_back((child_desc, depth + 1))
                        }
                        _ => {}
                    }
                }
            }
            MediaKind::Index => return Err(ImageError::TooDeep(target.digest.clone())),
            _ if depth == 0 => return Err(unexpected(&desc)),
            _ => {}
        }
    }
    let mut out: Vec<Platform> = out
        .into_iter()
        .filter(|p| p.os != "unknown" && p.architecture != "unknown")
        .map(|p| Platform::new(&p.os, &p.architecture, &p.variant))
        .collect();
    out.sort_by_key(|p| p.to_string());
    out.dedup();
    Ok(out)
}

//! Image archives: tar streams of an **OCI image layout** (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`) or of a **Docker archive** (`manifest.json` naming a config and layer
//! tars by path, as `docker save` writes it), imported into and exported from a content store.
//!
//! Import stores every file of the archive as a blob (verified against its name under
//! `blobs/`), then finds the images: the entries of `index.json`, else those of
//! `manifest.json`, for which a Docker schema 2 manifest is written. It labels the documents of
//! each image for garbage collection (`containerd.io/gc.ref.content.*`), so that the blobs
//! live as long as an image record names the root. Creating the records and unpacking are the
//! caller's; work under a lease, which keeps the blobs until then.
//!
//! Export writes an OCI layout with containerd's name annotations, plus a Docker
//! `manifest.json` for images that resolve to one manifest, so `docker load` reads it too.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use berth_core::content::{ContentStore, ContentWriter, Info, WriterOptions};
use berth_core::labels::GC_REF_CONTENT_PREFIX;
use berth_core::{Descriptor, Digest, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::{ImageError, Result};
use crate::platform::Platform;
use crate::spec::{self, MediaKind};

/// containerd's annotation naming an image in an `index.json`.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation naming a manifest in a layout (a tag, or a whole reference).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Documents (index.json, manifest.json, manifests) larger than this are refused.
const MAX_DOCUMENT: i64 = 4 << 20;
const CHUNK: usize = 1 << 20;

/// An image found in an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedImage {
    /// Its whole name, when the archive gives one (containerd's annotation, a reference as
    /// the OCI ref name, a Docker RepoTag).
    pub name: Option<String>,
    /// The OCI ref name when it is only a tag (`latest`): a name needs a base to go with it.
    pub tag: Option<String>,
    /// Its root: an index or a manifest.
    pub target: Descriptor,
}

fn bad(what: &str, reason: impl std::fmt::Display) -> ImageError {
    let reason = reason.to_string();
    // The tar reader quotes the bytes it choked on: garbage, when the file is not a tar.
    let reason = if reason
        .chars()
        .any(|c| (c.is_control() && c != '\n') || c == char::REPLACEMENT_CHARACTER)
    {
        "not a tar archive (unreadable header)".to_string()
    } else {
        reason
    };
    ImageError::Core(berth_core::Error::new(
        ErrorKind::InvalidArgument,
        format!("{what}: {reason}"),
    ))
}

/// A stored file of the archive.
#[derive(Debug, Clone)]
struct Stored {
    digest: Digest,
    size: i64,
}

/// Import the archive read from `reader` into namespace `ns` of `store`, the new blobs joining
/// `lease`. Returns the images it holds, in archive order.
pub async fn import<C: ContentStore, R: Read>(
    store: &C,
    ns: &str,
    reader: R,
    platform: Option<&Platform>,
    lease: Option<&str>,
) -> Result<Vec<ArchivedImage>> {
    let mut archive = tar::Archive::new(reader);
    let mut files: BTreeMap<String, Stored> = BTreeMap::new();
    let mut documents: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let entries = archive.entries().map_err(|e| bad("read archive", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad("read archive", e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(|e| bad("read archive", e))?;
        let path = path.to_string_lossy().trim_start_matches("./").to_string();
        if matches!(
            path.as_str(),
            "index.json" | "manifest.json" | "oci-layout" | "repositories"
        ) {
            let mut data = Vec::new();
            (&mut entry)
                .take(MAX_DOCUMENT as u64 + 1)
                .read_to_end(&mut data)
                .map_err(|e| bad(&path, e))?;
            if data.len() as i64 > MAX_DOCUMENT {
                return Err(bad(&path, "larger than 4 MiB"));
            }
            documents.insert(path, data);
            continue;
        }
        let expected = path
            .strip_prefix("blobs/sha256/")
            .map(|hex| Digest::parse(&format!("sha256:{hex}")))
            .transpose()
            .map_err(|e| bad(&path, e))?;
        let size = entry.header().size().map_err(|e| bad(&path, e))? as i64;
        let stored = store_file(store, ns, &path, &mut entry, size, expected, lease).await?;
        files.insert(path, stored);
    }
    let images = if let Some(index) = documents.get("index.json") {
        let parent = Digest::sha256_of(index);
        let index: spec::Index = serde_json::from_slice(index).map_err(|e| bad("index.json", e))?;
        let mut out = Vec::new();
        for entry in &index.manifests {
            let target = entry.to_descriptor(&parent)?;
            let ref_name = entry.annotations.get(ANNOTATION_REF_NAME);
            let whole = |r: &&String| r.contains('/') || r.contains('@') || r.contains(':');
            let name = entry
                .annotations
                .get(ANNOTATION_IMAGE_NAME)
                .or_else(|| ref_name.filter(whole))
                .cloned();
            let tag = ref_name.filter(|r| !whole(r)).cloned();
            out.push(ArchivedImage { name, tag, target });
        }
        out
    } else if let Some(manifest) = documents.get("manifest.json") {
        docker_images(store, ns, manifest, &files, lease).await?
    } else {
        return Err(bad(
            "archive",
            "neither an OCI layout (index.json) nor a Docker archive (manifest.json)",
        ));
    };
    for image in &images {
        label_graph(store, ns, &image.target, platform, 0).await?;
    }
    Ok(images)
}

/// Write one file of the archive into the store; its digest is checked when its name says it.
async fn store_file<C: ContentStore>(
    store: &C,
    ns: &str,
    path: &str,
    reader: &mut impl Read,
    size: i64,
    expected: Option<Digest>,
    lease: Option<&str>,
) -> Result<Stored> {
    let opts = WriterOptions {
        reference: format!("import-{}", Digest::sha256_of(path.as_bytes())),
        size,
        digest: expected.clone(),
        lease: lease.map(str::to_string),
    };
    let mut w = match store.writer(ns, opts).await {
        Ok(w) => w,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            // Known blob: skip its bytes.
            std::io::copy(reader, &mut std::io::sink()).map_err(|e| bad(path, e))?;
            let digest = expected.expect("only a named digest can already exist");
            return Ok(Stored { digest, size });
        }
        Err(e) => return Err(ImageError::Core(e.context(format!("import {path}")))),
    };
    w.truncate(0).await?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut buf).map_err(|e| bad(path, e))?;
        if n == 0 {
            break;
        }
        w.write(&buf[..n]).await?;
    }
    let digest = w.digest();
    match w.commit(size, expected, BTreeMap::new()).await {
        Ok(_) => Ok(Stored { digest, size }),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(Stored { digest, size }),
        Err(e) => Err(ImageError::Core(e.context(format!("import {path}")))),
    }
}

/// One image of a Docker archive's `manifest.json`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The images of a Docker archive: a schema 2 manifest written for each.
async fn docker_images<C: ContentStore>(
    store: &C,
    ns: &str,
    manifest_json: &[u8],
    files: &BTreeMap<String, Stored>,
    lease: Option<&str>,
) -> Result<Vec<ArchivedImage>> {
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(manifest_json).map_err(|e| bad("manifest.json", e))?;
    let file = |p: &str| {
        files
            .get(p.trim_start_matches("./"))
            .cloned()
            .ok_or_else(|| {
                bad(
                    "manifest.json",
                    format!("names {p}, which is not in the archive"),
                )
            })
    };
    let mut out = Vec::new();
    for entry in entries {
        let config = file(&entry.config)?;
        let mut layers = Vec::new();
        for l in &entry.layers {
            let stored = file(l)?;
            let head = store.read_at(ns, &stored.digest, 0, 4).await?;
            let media_type = if head.starts_with(&[0x1f, 0x8b]) {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                "application/vnd.oci.image.layer.v1.tar+zstd"
            } else {
                "application/vnd.docker.image.rootfs.diff.tar"
            };
            layers.push(serde_json::json!({
                "mediaType": media_type,
                "size": stored.size,
                "digest": stored.digest.to_string(),
            }));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": spec::MEDIA_TYPE_DOCKER_MANIFEST,
            "config": {
                "mediaType": spec::MEDIA_TYPE_DOCKER_CONFIG,
                "size": config.size,
                "digest": config.digest.to_string(),
            },
            "layers": layers,
        });
        let data = serde_json::to_vec(&manifest).expect("json");
        let digest = Digest::sha256_of(&data);
        let mut cursor = std::io::Cursor::new(&data);
        let path = format!("manifest of {}", entry.config);
        store_file(
            store,
            ns,
            &path,
            &mut cursor,
            data.len() as i64,
            Some(digest.clone()),
            lease,
        )
        .await?;
        let target = Descriptor {
            media_type: spec::MEDIA_TYPE_DOCKER_MANIFEST.to_string(),
            digest,
            size: data.len() as i64,
            annotations: BTreeMap::new(),
        };
        let tags = entry.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            out.push(ArchivedImage {
                name: None,
                tag: None,
                target,
            });
            continue;
        }
        for name in tags {
            out.push(ArchivedImage {
                name: Some(name),
                tag: None,
                target: target.clone(),
            });
        }
    }
    Ok(out)
}

/// Label the manifests and indexes under `desc` with the blobs they hold, as a pull does;
/// children that are not in the store, or not for `platform` when one is given, are left out
/// (and so collected, as containerd's import keeps only the platform it unpacks).
async fn label_graph<C: ContentStore>(
    store: &C,
    ns: &str,
    desc: &Descriptor,
    platform: Option<&Platform>,
    depth: usize,
) -> Result<()> {
    if depth > 4 {
        return Err(ImageError::TooDeep(desc.digest.clone()));
    }
    let kind = MediaKind::of(&desc.media_type);
    if !matches!(kind, MediaKind::Index | MediaKind::Manifest) {
        return Ok(());
    }
    let data = crate::read_blob(store, ns, desc, "manifest", MAX_DOCUMENT).await?;
    let mut labels = BTreeMap::new();
    if kind == MediaKind::Index {
        let index: spec::Index = spec::parse_json(&data, "index", &desc.digest)?;
        let mut i = 0;
        for child in &index.manifests {
            if let (Some(want), Some(p)) = (platform, &child.platform) {
                if !want.matches(p) {
                    continue;
                }
            }
            let child = child.to_descriptor(&desc.digest)?;
            match store.info(ns, &child.digest).await {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
            Box::pin(label_graph(store, ns, &child, platform, depth + 1)).await?;
            labels.insert(
                format!("{GC_REF_CONTENT_PREFIX}.m.{i}"),
                child.digest.to_string(),
            );
            i += 1;
        }
    } else {
        let m: spec::Manifest = spec::parse_json(&data, "manifest", &desc.digest)?;
        labels.insert(
            format!("{GC_REF_CONTENT_PREFIX}.config"),
            m.config.digest.clone(),
        );
        for (i, l) in m.layers.iter().enumerate() {
            labels.insert(format!("{GC_REF_CONTENT_PREFIX}.l.{i}"), l.digest.clone());
        }
    }
    let paths: Vec<String> = labels.keys().map(|k| format!("labels.{k}")).collect();
    let info = Info {
        digest: desc.digest.clone(),
        size: desc.size,
        created_at: std::time::SystemTime::UNIX_EPOCH,
        updated_at: std::time::SystemTime::UNIX_EPOCH,
        labels,
    };
    store.update(ns, info, &paths).await?;
    Ok(())
}

/// Write the images `(name, root)` of namespace `ns` as one archive to `out`. With a
/// `platform`, an index contributes only the blobs of that platform's manifests.
pub async fn export<C: ContentStore, W: Write>(
    store: &C,
    ns: &str,
    images: &[(String, Descriptor)],
    platform: Option<&Platform>,
    out: W,
) -> Result<()> {
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut seen = BTreeSet::new();
    // One manifest.json entry per manifest, with every name that leads to it.
    let mut docker: Vec<(Digest, DockerEntry)> = Vec::new();
    for (name, target) in images {
        let manifest = collect(store, ns, target, platform, 0, &mut blobs, &mut seen).await?;
        let Some(m) = manifest else { continue };
        if let Some((_, entry)) = docker.iter_mut().find(|(d, _)| *d == m.digest) {
            entry
                .repo_tags
                .get_or_insert_with(Vec::new)
                .push(familiar(name));
            continue;
        }
        let data = crate::read_blob(store, ns, &m, "manifest", MAX_DOCUMENT).await?;
        let parsed: spec::Manifest = spec::parse_json(&data, "manifest", &m.digest)?;
        docker.push((
            m.digest.clone(),
            DockerEntry {
                config: blob_path(&parsed.config.digest),
                repo_tags: Some(vec![familiar(name)]),
                layers: parsed.layers.iter().map(|l| blob_path(&l.digest)).collect(),
            },
        ));
    }
    let docker: Vec<DockerEntry> = docker.into_iter().map(|(_, e)| e).collect();
    let mut tar = TarWriter { out };
    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    for desc in &blobs {
        tar.header(&blob_path(&desc.digest.to_string()), desc.size as u64)?;
        let mut offset = 0i64;
        while offset < desc.size {
            let len = (CHUNK as i64).min(desc.size - offset) as usize;
            let data = store.read_at(ns, &desc.digest, offset, len).await?;
            if data.is_empty() {
                return Err(bad(&desc.digest.to_string(), "blob ends early"));
            }
            tar.data(&data)?;
            offset += data.len() as i64;
        }
        tar.pad(desc.size as u64)?;
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": spec::MEDIA_TYPE_OCI_INDEX,
        "manifests": images.iter().map(|(name, t)| {
            let tag = name.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map(|(_, t)| t);
            let mut annotations = serde_json::Map::new();
            annotations.insert(ANNOTATION_IMAGE_NAME.into(), name.clone().into());
            if let Some(tag) = tag {
                annotations.insert(ANNOTATION_REF_NAME.into(), tag.into());
            }
            serde_json::json!({
                "mediaType": t.media_type,
                "digest": t.digest.to_string(),
                "size": t.size,
                "annotations": annotations,
            })
        }).collect::<Vec<_>>(),
    });
    tar.file("index.json", &serde_json::to_vec(&index).expect("json"))?;
    if !docker.is_empty() {
        tar.file("manifest.json", &serde_json::to_vec(&docker).expect("json"))?;
    }
    tar.finish()
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// `docker.io/library/busybox:latest` as Docker writes it: `busybox:latest`.
fn familiar(name: &str) -> String {
    let n = name.strip_prefix("docker.io/").unwrap_or(name);
    n.strip_prefix("library/").unwrap_or(n).to_string()
}

/// Add the blobs of `desc` to `blobs` (children first); returns the manifest a Docker
/// `manifest.json` can name (the root manifest, or the one of `platform`/the host).
async fn collect<C: ContentStore>(
    store: &C,
    ns: &str,
    desc: &Descriptor,
    platform: Option<&Platform>,
    depth: usize,
    blobs: &mut Vec<Descriptor>,
    seen: &mut BTreeSet<Digest>,
) -> Result<Option<Descriptor>> {
    if depth > 4 {
        return Err(ImageError::TooDeep(desc.digest.clone()));
    }
    // Walked again when met again (another name, an index and its own manifest), so each
    // name finds its manifest; its blobs are added once.
    let first = seen.insert(desc.digest.clone());
    let kind = MediaKind::of(&desc.media_type);
    let mut docker_manifest = None;
    if matches!(kind, MediaKind::Index | MediaKind::Manifest) {
        let data = crate::read_blob(store, ns, desc, "manifest", MAX_DOCUMENT).await?;
        if kind == MediaKind::Index {
            let index: spec::Index = spec::parse_json(&data, "index", &desc.digest)?;
            for child in &index.manifests {
                let wanted = match (platform, &child.platform) {
                    (Some(want), Some(p)) => want.matches(p),
                    _ => true,
                };
                if !wanted {
                    continue;
                }
                let child = child.to_descriptor(&desc.digest)?;
                let m =
                    Box::pin(collect(store, ns, &child, platform, depth + 1, blobs, seen)).await?;
                if docker_manifest.is_none() && platform.is_some() {
                    docker_manifest = m;
                }
            }
        } else {
            let m: spec::Manifest = spec::parse_json(&data, "manifest", &desc.digest)?;
            for d in std::iter::once(&m.config).chain(&m.layers) {
                let d = d.to_descriptor(&desc.digest)?;
                if seen.insert(d.digest.clone()) {
                    store
                        .info(ns, &d.digest)
                        .await
                        .map_err(|e| ImageError::Core(e.context(format!("export {}", d.digest))))?;
                    blobs.push(d);
                }
            }
            docker_manifest = Some(desc.clone());
        }
    }
    if first {
        blobs.push(desc.clone());
    }
    Ok(docker_manifest)
}

/// A tar stream written by hand, so blob bytes can come from an async store in pieces.
struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    fn header(&mut self, path: &str, size: u64) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).map_err(|e| bad(path, e))?;
        h.set_size(size);
        h.set_mode(0o444);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        self.out
            .write_all(h.as_bytes())
            .map_err(|e| bad("write archive", e))
    }

    fn data(&mut self, data: &[u8]) -> Result<()> {
        self.out
            .write_all(data)
            .map_err(|e| bad("write archive", e))
    }

    fn pad(&mut self, size: u64) -> Result<()> {
        let rest = (512 - size % 512) % 512;
        self.data(&vec![0u8; rest as usize])
    }

    fn file(&mut self, path: &str, data: &[u8]) -> Result<()> {
        self.header(path, data.len() as u64)?;
        self.data(data)?;
        self.pad(data.len() as u64)
    }

    fn finish(mut self) -> Result<()> {
        self.data(&[0u8; 1024])?;
        self.out.flush().map_err(|e| bad("write archive", e))
    }
}

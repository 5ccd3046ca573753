//! berth-diff: layers between the content store and filesystems, in-process (containerd's
//! `plugins/diff/walking`).
//!
//! Vocabulary (see [`berth_core::diff`]): **applying** a layer blob writes its changes onto the
//! filesystem a snapshot's mounts assemble; **diffing** two filesystems writes the changes
//! from the lower to the upper one as a new layer blob. [`WalkingDiff`] does both over any
//! [`ContentStore`]: berthd's Diff service is a thin gRPC adapter over it, and berthd's own
//! pulls (CRI, Transfer) apply layers through it directly.
//!
//! Where the mounts allow it, nothing is mounted: a writable bind mount is its source
//! directory (the native snapshotter), and an overlay mount with an `upperdir` is applied to
//! that directory alone with whiteouts in overlayfs' on-disk form (containerd's overlay fast
//! path). Other mounts are mounted on a temporary directory for the duration of the call, as
//! containerd's `mount.WithTempMount` does (that needs root).
//!
//! Architecture invariant: this crate knows content stores, directories and mounts, never gRPC
//! or the metadata database; the tar work is berth-archive's, the mounting berth-mount's.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use berth_archive::{
    apply_layer, write_diff, ApplyOptions, Compression, DiffOptions, WhiteoutMode,
};
use berth_core::content::{ContentStore, ContentWriter, WriterOptions};
use berth_core::diff::LayerApplier;
use berth_core::labels::UNCOMPRESSED;
use berth_core::snapshots::Mount;
use berth_core::{Descriptor, Error, ErrorKind, Result};

/// Bytes per read from and write to the content store.
const COPY_CHUNK: usize = 1 << 20;

/// The applier and differ over the content store `C`.
#[derive(Debug, Clone)]
pub struct WalkingDiff<C> {
    content: C,
    scratch: PathBuf,
}

/// What to compute a layer between, and how to store it.
#[derive(Debug, Clone, Default)]
pub struct DiffParams {
    /// The lower tree's mounts (empty tree: none).
    pub lower: Vec<Mount>,
    /// The upper tree's mounts.
    pub upper: Vec<Mount>,
    /// The layer's media type; gzip-compressed OCI layer when empty.
    pub media_type: String,
    /// The ingest ref to write under.
    pub reference: String,
    /// Labels of the new blob.
    pub labels: BTreeMap<String, String>,
}

/// Where a layer is applied for a set of mounts.
#[derive(Debug, PartialEq, Eq)]
enum ApplyTarget {
    /// Straight into this directory, with these whiteouts.
    Dir(PathBuf, WhiteoutMode),
    /// Mount them, apply with deletions.
    Mounted,
}

fn apply_target(mounts: &[Mount]) -> ApplyTarget {
    match mounts {
        [m] if m.kind == "bind" && !m.is_read_only() && m.target.is_none() => {
            ApplyTarget::Dir(PathBuf::from(&m.source), WhiteoutMode::Delete)
        }
        [m] if m.kind == "overlay" && m.target.is_none() => match m.option_value("upperdir") {
            Some(upper) => ApplyTarget::Dir(PathBuf::from(upper), WhiteoutMode::Overlay),
            None => ApplyTarget::Mounted,
        },
        _ => ApplyTarget::Mounted,
    }
}

/// Run `f` on a directory holding `mounts` read-only: a bind mount's source as is, anything else
/// mounted on a temporary directory.
fn with_read_only_dir<R>(mounts: &[Mount], f: impl FnOnce(&Path) -> Result<R>) -> Result<R> {
    match mounts {
        [m] if m.kind == "bind" && m.target.is_none() => f(Path::new(&m.source)),
        // No mounts: the empty tree (the lower side of a base layer).
        [] => {
            let empty = tempfile::tempdir().map_err(|e| Error::from(e).context("empty dir"))?;
            f(empty.path())
        }
        _ => {
            let ro: Vec<Mount> = mounts
                .iter()
                .cloned()
                .map(|mut m| {
                    if m.kind != "overlay" && !m.options.iter().any(|o| o == "ro") {
                        m.options.push("ro".into());
                    }
                    m
                })
                .collect();
            berth_mount::with_temp_mount(&ro, f)?
        }
    }
}

async fn blocking<R: Send + 'static>(f: impl FnOnce() -> Result<R> + Send + 'static) -> Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("diff task: {e}")))?
}

/// The blocking side of a blob streamed from the content store: chunks arrive on a channel.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                // The sender is done (or failed, and says so itself): end of the blob.
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl<C: ContentStore> WalkingDiff<C> {
    /// An applier and differ over `content`; diffs are written to a temporary file in
    /// `scratch` (a directory on the content store's filesystem, not shared with others)
    /// before they go to the store.
    pub fn new(content: C, scratch: impl Into<PathBuf>) -> Self {
        WalkingDiff {
            content,
            scratch: scratch.into(),
        }
    }

    /// The content store it reads layers from and writes diffs to.
    pub fn content(&self) -> &C {
        &self.content
    }

    /// Apply the layer `desc` of namespace `ns` onto `mounts`; returns the applied (uncompressed)
    /// layer's descriptor.
    pub async fn apply(
        &self,
        ns: &str,
        desc: Descriptor,
        mounts: Vec<Mount>,
    ) -> Result<Descriptor> {
        // The layer must be visible in the caller's namespace.
        let info = self.content.info(ns, &desc.digest).await?;
        let compression = Compression::from_media_type(&desc.media_type)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
        let digest = desc.digest.clone();
        let apply = blocking(move || {
            let reader = ChannelReader {
                rx,
                chunk: Vec::new(),
                pos: 0,
            };
            let run = |dir: &Path, whiteouts: WhiteoutMode| {
                let opts = ApplyOptions {
                    whiteouts,
                    compression: Some(compression),
                    ..Default::default()
                };
                apply_layer(dir, reader, &opts)
                    .map_err(|e| Error::from(e).context(format!("apply layer {}", desc.digest)))
            };
            let applied = match apply_target(&mounts) {
                ApplyTarget::Dir(dir, mode) => run(&dir, mode)?,
                ApplyTarget::Mounted => {
                    berth_mount::with_temp_mount(&mounts, |dir| run(dir, WhiteoutMode::Delete))??
                }
            };
            Ok(applied.descriptor())
        });
        let feed = async move {
            let mut offset = 0i64;
            while offset < info.size {
                let chunk = self
                    .content
                    .read_at(ns, &digest, offset, COPY_CHUNK)
                    .await
                    .map_err(|e| e.context(format!("read layer {digest}")))?;
                if chunk.is_empty() {
                    return Err(Error::new(
                        ErrorKind::DataLoss,
                        format!(
                            "layer {digest}: blob ends at {offset} of {} bytes",
                            info.size
                        ),
                    ));
                }
                offset += chunk.len() as i64;
                if tx.send(chunk).await.is_err() {
                    // The applier stopped reading: its error says why.
                    break;
                }
            }
            Ok(())
        };
        let (fed, applied) = tokio::join!(feed, apply);
        // A failed read explains the applier's failure better than "unexpected end of file".
        fed?;
        applied
    }

    /// Write the layer from `lower` to `upper` into the content store of `ns` (under `lease`),
    /// with `labels` and the `containerd.io/uncompressed` label.
    pub async fn diff(
        &self,
        ns: &str,
        lease: Option<String>,
        params: DiffParams,
    ) -> Result<Descriptor> {
        let DiffParams {
            lower,
            upper,
            media_type,
            reference,
            mut labels,
        } = params;
        let compression = if media_type.is_empty() {
            Compression::Gzip
        } else {
            Compression::from_media_type(&media_type)?
        };
        let scratch = self.scratch.clone();
        let (file, diffed) = blocking(move || {
            let mut file = tempfile::Builder::new()
                .prefix(".diff-")
                .tempfile_in(&scratch)
                .map_err(|e| Error::from(e).context("create diff file"))?;
            let diffed = with_read_only_dir(&lower, |l| {
                with_read_only_dir(&upper, |u| {
                    write_diff(l, u, file.as_file_mut(), &DiffOptions { compression })
                        .map_err(Error::from)
                })
            })?;
            file.as_file_mut()
                .flush()
                .map_err(|e| Error::from(e).context("write diff file"))?;
            Ok((file, diffed))
        })
        .await?;
        labels.insert(UNCOMPRESSED.into(), diffed.diff_id.to_string());
        let desc = diffed.descriptor();
        let mut writer = self
            .content
            .writer(
                ns,
                WriterOptions {
                    reference,
                    size: desc.size,
                    digest: Some(desc.digest.clone()),
                    lease,
                },
            )
            .await?;
        let mut reader = std::fs::File::open(file.path())
            .map_err(|e| Error::from(e).context("reopen diff file"))?;
        let mut buf = vec![0u8; COPY_CHUNK];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| Error::from(e).context("read diff file"))?;
            if n == 0 {
                break;
            }
            writer.write(&buf[..n]).await?;
        }
        match writer
            .commit(desc.size, Some(desc.digest.clone()), labels)
            .await
        {
            Ok(_) => {}
            // The same layer already in the store is success, as in containerd.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(desc)
    }
}

impl<C: ContentStore> LayerApplier for WalkingDiff<C> {
    async fn apply(&self, ns: &str, desc: Descriptor, mounts: Vec<Mount>) -> Result<Descriptor> {
        WalkingDiff::apply(self, ns, desc, mounts).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_directory_without_mounting_where_it_can() {
        let bind = Mount::new("bind", "/s/1/fs", ["rbind", "rw"]);
        assert_eq!(
            apply_target(&[bind]),
            ApplyTarget::Dir("/s/1/fs".into(), WhiteoutMode::Delete)
        );
        let ro = Mount::new("bind", "/s/1/fs", ["rbind", "ro"]);
        assert_eq!(apply_target(&[ro]), ApplyTarget::Mounted);
        let overlay = Mount::new(
            "overlay",
            "overlay",
            [
                "index=off",
                "workdir=/s/2/work",
                "upperdir=/s/2/fs",
                "lowerdir=/s/1/fs",
            ],
        );
        assert_eq!(
            apply_target(&[overlay]),
            ApplyTarget::Dir("/s/2/fs".into(), WhiteoutMode::Overlay)
        );
        let view = Mount::new("overlay", "overlay", ["lowerdir=/s/2/fs:/s/1/fs"]);
        assert_eq!(apply_target(&[view]), ApplyTarget::Mounted);
    }
}

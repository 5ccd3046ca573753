//! containerd.services.diff.v1: apply a layer from the content store onto a snapshot's mounts,
//! and compute the layer between two snapshots into the content store.
//!
//! Where the mounts allow it, no mount is performed: a writable bind mount is its source
//! directory (the native snapshotter), and an overlay mount with an `upperdir` is applied to that
//! directory alone with whiteouts in overlayfs' on-disk form (containerd's overlay fast path).
//! Other mounts are mounted on a temporary directory for the duration of the call, as
//! containerd's `mount.WithTempMount` does.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use berth_api::convert::{descriptor_from_msg, descriptor_msg, mounts_from_msg};
use berth_api::diff::diff_server::Diff;
use berth_api::services::v1::{ApplyRequest, ApplyResponse, DiffRequest, DiffResponse};
use berth_archive::{
    apply_layer, write_diff, ApplyOptions, Compression, DiffOptions, WhiteoutMode,
};
use berth_core::content::{ContentStore, ContentWriter, WriterOptions};
use berth_core::snapshots::Mount;
use berth_core::{Descriptor, Error};
use berth_metadata::Metadata;

use crate::request::{lease, namespace};
use crate::status::{GrpcResult, IntoStatus};

/// The label containerd puts on a compressed layer blob: its diff_id.
const LABEL_UNCOMPRESSED: &str = berth_core::labels::UNCOMPRESSED;
const COPY_CHUNK: usize = 1 << 20;

/// The Diff service.
#[derive(Debug)]
pub struct DiffService {
    pub meta: Metadata,
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
fn with_read_only_dir<R>(
    mounts: &[Mount],
    f: impl FnOnce(&Path) -> berth_core::Result<R>,
) -> berth_core::Result<R> {
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

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> berth_core::Result<R> + Send + 'static,
) -> berth_core::Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("diff task: {e}")))?
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
    pub labels: std::collections::BTreeMap<String, String>,
}

impl DiffService {
    /// Apply the layer `desc` of namespace `ns` onto `mounts`; returns the applied (uncompressed)
    /// layer's descriptor.
    pub async fn apply(
        &self,
        ns: &str,
        desc: Descriptor,
        mounts: Vec<Mount>,
    ) -> berth_core::Result<Descriptor> {
        // The layer must be visible in the caller's namespace.
        ContentStore::info(&self.meta, ns, &desc.digest).await?;
        let compression = Compression::from_media_type(&desc.media_type)?;
        let blob = self.meta.blobs().blob_path(&desc.digest);
        blocking(move || {
            let file = std::fs::File::open(&blob)
                .map_err(|e| Error::from(e).context(format!("open {}", desc.digest)))?;
            let reader = std::io::BufReader::with_capacity(COPY_CHUNK, file);
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
        })
        .await
    }

    /// Write the layer from `lower` to `upper` into the content store of `ns` (under `lease`),
    /// with `labels` and the `containerd.io/uncompressed` label.
    pub async fn diff(
        &self,
        ns: &str,
        lease: Option<String>,
        params: DiffParams,
    ) -> berth_core::Result<Descriptor> {
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
        let tmp_dir = self
            .meta
            .blobs()
            .root()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        let (file, diffed) = blocking(move || {
            let mut file = tempfile::Builder::new()
                .prefix(".diff-")
                .tempfile_in(&tmp_dir)
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
        labels.insert(LABEL_UNCOMPRESSED.into(), diffed.diff_id.to_string());
        let desc = diffed.descriptor();
        let mut writer = self
            .meta
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
            Err(e) if e.kind() == berth_core::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(desc)
    }
}

#[tonic::async_trait]
impl Diff for DiffService {
    async fn apply(&self, req: tonic::Request<ApplyRequest>) -> GrpcResult<ApplyResponse> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        if !r.payloads.is_empty() {
            return Err(tonic::Status::unimplemented(
                "stream processors (payloads) are not supported",
            ));
        }
        let desc = descriptor_from_msg(
            r.diff
                .ok_or_else(|| tonic::Status::invalid_argument("diff must not be empty"))?,
        )
        .grpc()?;
        let applied = DiffService::apply(self, &ns, desc, mounts_from_msg(r.mounts))
            .await
            .grpc()?;
        Ok(tonic::Response::new(ApplyResponse {
            applied: Some(descriptor_msg(applied)),
        }))
    }

    async fn diff(&self, req: tonic::Request<DiffRequest>) -> GrpcResult<DiffResponse> {
        let ns = namespace(&req)?;
        let lease = lease(&req);
        let r = req.into_inner();
        let reference = if r.r#ref.is_empty() {
            format!("diff-{}", uuid::Uuid::new_v4())
        } else {
            r.r#ref
        };
        let params = DiffParams {
            lower: mounts_from_msg(r.left),
            upper: mounts_from_msg(r.right),
            media_type: r.media_type,
            reference,
            labels: r.labels.into_iter().collect(),
        };
        let desc = DiffService::diff(self, &ns, lease, params).await.grpc()?;
        Ok(tonic::Response::new(DiffResponse {
            diff: Some(descriptor_msg(desc)),
        }))
    }
}

/// berthd's own unpacks (CRI, transfer) apply layers in process, through the same code as the
/// Diff service's `Apply`.
impl berth_images::LayerApplier for DiffService {
    async fn apply(
        &self,
        ns: &str,
        desc: Descriptor,
        mounts: Vec<Mount>,
    ) -> berth_core::Result<Descriptor> {
        DiffService::apply(self, ns, desc, mounts).await
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

//! Importing image archives (OCI layouts, Docker archives) into the content store, recording
//! and unpacking their images (containerd's `client.Import`), under a temporary lease.

use std::io::Read;

use berth_core::Descriptor;
use berth_images::{image_archive, Platform, UnpackOptions};

use crate::leases::{temporary_id, with_lease, DEFAULT_EXPIRY};
use crate::pull::{record_image, unpacker};
use crate::{OpsError, Result, Stores};

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The platform whose content is kept and unpacked; None: this machine's.
    pub platform: Option<Platform>,
    /// Keep the content of every platform of multi-platform images (only `platform`'s is
    /// unpacked).
    pub all_platforms: bool,
    /// The snapshotter to unpack into; None: do not unpack.
    pub snapshotter: Option<String>,
    /// Name for images the archive gives only a tag (`app` + `latest` is
    /// `docker.io/library/app:latest`).
    pub base_name: Option<String>,
}

/// An image of the archive, now recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The image record's name (normalized).
    pub name: String,
    /// Its target: an index or a manifest.
    pub target: Descriptor,
}

/// Import the archive read from `reader` into namespace `ns` of `stores`: its blobs, an image
/// record per image (named by the archive, or `base_name:tag`), each unpacked when
/// `opts.snapshotter` is set. Returns the images in archive order.
pub async fn import<S: Stores, R: Read>(
    stores: &S,
    ns: &str,
    reader: R,
    opts: &ImportOptions,
) -> Result<Vec<Imported>> {
    let lease = temporary_id("import");
    with_lease(stores.leases(), ns, &lease, DEFAULT_EXPIRY, |lease| {
        import_under(stores, ns, reader, opts, lease)
    })
    .await
}

async fn import_under<S: Stores, R: Read>(
    stores: &S,
    ns: &str,
    reader: R,
    opts: &ImportOptions,
    lease: String,
) -> Result<Vec<Imported>> {
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let keep = (!opts.all_platforms).then_some(&platform);
    let found = image_archive::import(stores.content(), ns, reader, keep, Some(&lease)).await?;
    let mut out = Vec::new();
    for image in found {
        let name = match (&image.name, &image.tag, &opts.base_name) {
            (Some(n), _, _) => n.clone(),
            (None, Some(tag), Some(base)) => format!("{base}:{tag}"),
            (None, _, _) => {
                return Err(OpsError::from(berth_core::Error::invalid_argument(
                    format!(
                        "image {} has no name in the archive: give a base name",
                        image.target.digest
                    ),
                )))
            }
        };
        let name = berth_core::reference::normalize(&name)?;
        record_image(stores.images(), ns, &name, &image.target).await?;
        if let Some(snapshotter) = &opts.snapshotter {
            let unpack = UnpackOptions {
                platform: platform.clone(),
                lease: Some(lease.clone()),
                ..UnpackOptions::new(snapshotter)
            };
            unpacker(stores)
                .unpack(ns, &image.target, &unpack)
                .await
                .map_err(|e| OpsError::from(e).context(format!("unpack {name}")))?;
        }
        out.push(Imported {
            name,
            target: image.target,
        });
    }
    Ok(out)
}

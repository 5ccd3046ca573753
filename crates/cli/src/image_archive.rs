//! `berth image import` and `berth image export`: image archives (OCI layouts, Docker
//! archives) between files and berthd's content store, as `ctr images import/export`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use berth_client::{RemoteContentStore, RemoteImages, RemoteLeases};
use berth_core::labels::GC_EXPIRE;
use berth_core::leases::LeaseManager;
use berth_images::image_archive;
use berth_images::{Platform, UnpackOptions};
use clap::Args;
use serde::Serialize;
use tonic::transport::Channel;

use crate::pull::record_image;
use crate::{Ctx, Format};

/// `berth image import` arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Do not unpack the images into the snapshotter.
    #[arg(long)]
    no_unpack: bool,
    /// Keep the content of every platform of multi-platform images (default: only this
    /// machine's; the rest is collected).
    #[arg(long)]
    all_platforms: bool,
    /// Name for images the archive gives only a tag (`--base-name app` + `latest` is
    /// `docker.io/library/app:latest`).
    #[arg(long)]
    base_name: Option<String>,
    /// The archive (`-`: standard input).
    file: PathBuf,
}

/// `berth image export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Export the blobs of every platform of multi-platform images (default: this machine's).
    #[arg(long)]
    all_platforms: bool,
    /// The archive to write (`-`: standard output).
    file: PathBuf,
    /// The images.
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ImportedJson {
    name: String,
    digest: String,
}

/// Import the archive `a.file` into the namespace of `ctx`, recording and unpacking its images.
pub async fn import(ctx: &Ctx, snapshotter: &str, channel: Channel, a: ImportArgs) -> Result<()> {
    let ns = ctx.namespace.as_str();
    let leases = RemoteLeases::new(channel.clone());
    let lease = format!("berth-import-{}", uuid::Uuid::new_v4().simple());
    let expires = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600));
    leases
        .create(
            ns,
            &lease,
            BTreeMap::from([(GC_EXPIRE.to_string(), expires.to_string())]),
        )
        .await
        .context("create the import's lease")?;
    let result = import_under(ctx, snapshotter, channel, &a, &lease).await;
    if let Err(e) = leases.delete(ns, &lease, result.is_err()).await {
        eprintln!("berth: delete lease {lease}: {e}");
    }
    let imported = result?;
    match ctx.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&imported)?),
        Format::Table => {
            for i in &imported {
                println!("{} {}", i.name, i.digest);
            }
        }
    }
    Ok(())
}

async fn import_under(
    ctx: &Ctx,
    snapshotter: &str,
    channel: Channel,
    a: &ImportArgs,
    lease: &str,
) -> Result<Vec<ImportedJson>> {
    let ns = ctx.namespace.as_str();
    let store = RemoteContentStore::new(channel.clone());
    let shown = a.file.display().to_string();
    let platform = (!a.all_platforms).then(Platform::host);
    let platform = platform.as_ref();
    let found = if shown == "-" {
        image_archive::import(&store, ns, std::io::stdin().lock(), platform, Some(lease)).await
    } else {
        let f = std::fs::File::open(&a.file).with_context(|| format!("open {shown}"))?;
        let reader = std::io::BufReader::new(f);
        image_archive::import(&store, ns, reader, platform, Some(lease)).await
    }
    .with_context(|| format!("import {shown}"))?;
    let images = RemoteImages::new(channel.clone());
    let unpacker = berth_client::remote_unpacker(channel);
    let mut out = Vec::new();
    for image in found {
        let name = match (&image.name, &image.tag, &a.base_name) {
            (Some(n), _, _) => n.clone(),
            (None, Some(tag), Some(base)) => format!("{base}:{tag}"),
            (None, _, _) => anyhow::bail!(
                "import {shown}: image {} has no name in the archive: give --base-name",
                image.target.digest
            ),
        };
        let name = berth_distribution::normalize(&name)
            .with_context(|| format!("import {shown}: image name {name:?}"))?;
        record_image(&images, ns, &name, &image.target).await?;
        if !a.no_unpack {
            let opts = UnpackOptions {
                lease: Some(lease.to_string()),
                ..UnpackOptions::new(snapshotter)
            };
            unpacker
                .unpack(ns, &image.target, &opts)
                .await
                .with_context(|| format!("unpack {name}"))?;
        }
        out.push(ImportedJson {
            name,
            digest: image.target.digest.to_string(),
        });
    }
    Ok(out)
}

/// Export the images `a.names` of the namespace of `ctx` to `a.file`.
pub async fn export(ctx: &Ctx, channel: Channel, a: ExportArgs) -> Result<()> {
    let ns = ctx.namespace.as_str();
    let images = RemoteImages::new(channel.clone());
    let mut list = Vec::new();
    for name in &a.names {
        let image = crate::run::find_image(&images, ns, name).await?;
        list.push((image.name, image.target));
    }
    let store = RemoteContentStore::new(channel);
    let platform = (!a.all_platforms).then(Platform::host);
    let shown = a.file.display().to_string();
    let result = if shown == "-" {
        let out = std::io::stdout().lock();
        image_archive::export(&store, ns, &list, platform.as_ref(), out).await
    } else {
        let f = std::fs::File::create(&a.file).with_context(|| format!("create {shown}"))?;
        let out = std::io::BufWriter::new(f);
        image_archive::export(&store, ns, &list, platform.as_ref(), out).await
    };
    if result.is_err() && shown != "-" {
        // Half an archive is worse than none.
        let _ = std::fs::remove_file(&a.file);
    }
    result.with_context(|| format!("export to {shown}"))
}

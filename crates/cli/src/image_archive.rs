//! `berth image import` and `berth image export`: image archives (OCI layouts, Docker
//! archives) between files and berthd's content store, as `ctr images import/export`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_client::{RemoteContentStore, RemoteImages};
use berth_images::image_archive;
use berth_images::Platform;
use clap::Args;
use serde::Serialize;
use tonic::transport::Channel;

use crate::{Ctx, Format};
use berth_client::RemoteStores;

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

/// Import the archive `a.file` into the namespace of `ctx`, recording and unpacking its images
/// (berth-ops' import over berthd's stores).
pub async fn import(ctx: &Ctx, snapshotter: &str, channel: Channel, a: ImportArgs) -> Result<()> {
    let ns = ctx.namespace.as_str();
    let stores = RemoteStores::new(channel);
    let opts = berth_ops::ImportOptions {
        all_platforms: a.all_platforms,
        snapshotter: (!a.no_unpack).then(|| snapshotter.to_string()),
        base_name: a.base_name.clone(),
        ..berth_ops::ImportOptions::default()
    };
    let shown = a.file.display().to_string();
    let imported = if shown == "-" {
        berth_ops::import(&stores, ns, std::io::stdin().lock(), &opts).await
    } else {
        let f = std::fs::File::open(&a.file).with_context(|| format!("open {shown}"))?;
        berth_ops::import(&stores, ns, std::io::BufReader::new(f), &opts).await
    }
    .with_context(|| format!("import {shown}"))?;
    let imported: Vec<ImportedJson> = imported
        .into_iter()
        .map(|i| ImportedJson {
            name: i.name,
            digest: i.target.digest.to_string(),
        })
        .collect();
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

//! `berth push` (upload an image to its registry, as `ctr images push`) and `berth tag` (give
//! an image another name, as `docker tag`).

use anyhow::{Context, Result};
use berth_client::{RemoteContentStore, RemoteImages};
use berth_core::Descriptor;
use berth_distribution::{PushOptions, PushProgress, Pusher, Uploaded};
use clap::Args;
use serde::Serialize;

use crate::pull::{human_bytes, RegistryArgs};
use crate::run::find_image;
use crate::{Ctx, Format};

/// `berth push` arguments.
#[derive(Debug, Args)]
pub struct PushArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Where to push: `registry.example/app:v1`.
    reference: String,
    /// The local image to push (default: the image named REFERENCE).
    local: Option<String>,
}

/// `berth tag` arguments.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// An existing image.
    source: String,
    /// The new name (normalized as Docker does: `app` is `docker.io/library/app:latest`).
    target: String,
}

#[derive(Debug, Serialize)]
struct PushJson {
    name: String,
    digest: String,
    sent: usize,
    existed: usize,
    bytes: i64,
}

/// Push an image of the namespace of `ctx`.
pub async fn push(ctx: &Ctx, a: PushArgs) -> Result<()> {
    let ns = ctx.namespace.as_str();
    let channel = ctx.channel().await?;
    let images = RemoteImages::new(channel.clone());
    let local = a.local.as_deref().unwrap_or(&a.reference);
    let image = find_image(&images, ns, local).await?;
    let opts = PushOptions {
        plain_http: a.registry.plain_http,
        credentials: a.registry.credentials()?,
        hosts_dir: Some(a.registry.hosts_dir.clone()),
        ..PushOptions::default()
    };
    let pusher = Pusher::new(RemoteContentStore::new(channel));
    let pushed = pusher
        .push(ns, &image.target, &a.reference, &opts, &Lines)
        .await
        .with_context(|| format!("push {} to {}", image.name, a.reference))?;
    let out = PushJson {
        name: pushed.name,
        digest: pushed.target.digest.to_string(),
        sent: pushed.sent,
        existed: pushed.existed,
        bytes: pushed.bytes,
    };
    match ctx.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&out)?),
        Format::Table => println!(
            "{}: pushed {} ({} sent, {}; {} already there)",
            out.name,
            out.digest,
            out.sent,
            human_bytes(out.bytes),
            out.existed
        ),
    }
    Ok(())
}

/// Name the image `a.source` also `a.target` (replacing what `a.target` named).
pub async fn tag(ctx: &Ctx, a: TagArgs) -> Result<()> {
    let ns = ctx.namespace.as_str();
    let images = RemoteImages::new(ctx.channel().await?);
    let source = find_image(&images, ns, &a.source).await?;
    let target = berth_core::reference::normalize(&a.target)?;
    berth_ops::record_image(&images, ns, &target, &source.target).await?;
    println!("{target}");
    Ok(())
}

/// A line on stderr per blob and manifest.
struct Lines;

impl PushProgress for Lines {
    fn finished(&self, desc: &Descriptor, how: Uploaded) {
        let word = match how {
            Uploaded::Sent => "pushed",
            Uploaded::Exists => "exists",
        };
        eprintln!("{}: {word} ({})", desc.digest, human_bytes(desc.size));
    }
}

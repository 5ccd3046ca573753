//! `berth image`: list, inspect, remove and unpack images, and mount their rootfs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use berth_client::{RemoteContentStore, RemoteImages, RemoteUnpacker};
use berth_core::images::{Image, ImageStore};
use berth_core::Descriptor;
use berth_images::{Platform, ResolvedImage, UnpackOptions, Unpacked};
use clap::Subcommand;
use serde::Serialize;

use crate::output::{self, Table};
use crate::{Ctx, Format};

/// The image subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List images, optionally filtered (e.g. `name~=busybox`, `labels.a==b`).
    #[command(alias = "list")]
    Ls {
        /// Print only the names.
        #[arg(short, long)]
        quiet: bool,
        /// Filters; an image matching any of them is listed.
        filters: Vec<String>,
    },
    /// Remove images; what only they kept alive becomes garbage.
    #[command(alias = "remove", alias = "delete", alias = "del")]
    Rm {
        /// Wait for garbage collection of what the images held before returning.
        #[arg(long)]
        sync: bool,
        /// Names of the images.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show an image: its record, and for a platform its manifest, config, layers and whether it
    /// is unpacked.
    Inspect {
        /// Name of the image.
        name: String,
        /// Platform to resolve (default: the host's).
        #[arg(long, value_parser = parse_platform)]
        platform: Option<Platform>,
    },
    /// Unpack an image's layers into the snapshotter.
    Unpack {
        /// Name of the image.
        name: String,
        /// Platform to unpack (default: the host's).
        #[arg(long, value_parser = parse_platform)]
        platform: Option<Platform>,
    },
    /// Mount an image's rootfs at TARGET, read-only unless --rw, unpacking it first if needed.
    Mount {
        /// Name of the image.
        name: String,
        /// Existing directory to mount on; it also names the snapshot and the lease.
        target: PathBuf,
        /// Mount a writable snapshot (discarded on unmount) instead of a read-only view.
        #[arg(long)]
        rw: bool,
        /// Platform to mount (default: the host's).
        #[arg(long, value_parser = parse_platform)]
        platform: Option<Platform>,
    },
    /// Unmount an image mounted at TARGET, and remove its snapshot and lease.
    Unmount {
        /// Where the image is mounted.
        target: PathBuf,
    },
    /// Import images from a tar: an OCI image layout or a Docker archive (`docker save`).
    Import(crate::image_archive::ImportArgs),
    /// Export images to a tar: an OCI image layout with a Docker manifest.json.
    Export(crate::image_archive::ExportArgs),
}

/// Parse a `--platform` value (`linux/amd64`, `linux/arm/v7`, `arm64`…).
fn parse_platform(s: &str) -> Result<Platform, String> {
    s.parse().map_err(|e: berth_core::Error| e.to_string())
}

/// A descriptor as `--format json` prints it.
#[derive(Debug, Serialize, PartialEq)]
pub struct DescriptorJson {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl From<&Descriptor> for DescriptorJson {
    fn from(d: &Descriptor) -> Self {
        DescriptorJson {
            media_type: d.media_type.clone(),
            digest: d.digest.to_string(),
            size: d.size,
            annotations: d.annotations.clone(),
        }
    }
}

/// An image as `image ls --format json` prints it. `size` (of the host platform's image) and
/// `platforms` are absent when the content to compute them is missing.
#[derive(Debug, Serialize, PartialEq)]
pub struct ImageJson {
    pub name: String,
    pub target: DescriptorJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
    pub created_at: String,
    pub updated_at: String,
    pub labels: BTreeMap<String, String>,
}

/// What `image ls` shows of one image beyond its record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub size: Option<i64>,
    pub platforms: Option<Vec<Platform>>,
}

impl ImageJson {
    /// The JSON of `image` with its `summary`.
    pub fn new(image: &Image, summary: &Summary) -> ImageJson {
        ImageJson {
            name: image.name.clone(),
            target: DescriptorJson::from(&image.target),
            size: summary.size,
            platforms: summary
                .platforms
                .as_ref()
                .map(|ps| ps.iter().map(ToString::to_string).collect()),
            created_at: output::time_precise(image.created_at),
            updated_at: output::time_precise(image.updated_at),
            labels: image.labels.clone(),
        }
    }
}

/// `ctr images ls`'s table: REF, TYPE, DIGEST, SIZE, PLATFORMS, LABELS.
pub fn ls_table(images: &[(Image, Summary)]) -> Table {
    let mut t = Table::new(&["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]);
    for (i, s) in images {
        let labels = output::labels_string(&i.labels);
        t.row(vec![
            i.name.clone(),
            i.target.media_type.clone(),
            i.target.digest.to_string(),
            s.size.map_or_else(|| "-".into(), output::human_size),
            s.platforms.as_ref().map_or_else(
                || "-".into(),
                |ps| {
                    ps.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                },
            ),
            if labels.is_empty() {
                "-".into()
            } else {
                labels
            },
        ]);
    }
    t
}

/// A layer as `image inspect --format json` prints it.
#[derive(Debug, Serialize, PartialEq)]
pub struct LayerJson {
    #[serde(flatten)]
    pub blob: DescriptorJson,
    pub diff_id: String,
    pub chain_id: String,
}

/// `image inspect --format json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct InspectJson {
    #[serde(flatten)]
    pub image: ImageJson,
    pub platform: String,
    pub manifest: DescriptorJson,
    pub config: DescriptorJson,
    pub layers: Vec<LayerJson>,
    /// The top chain ID: the snapshot a rootfs is made from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<String>,
    pub snapshotter: String,
    /// Absent when the snapshotter could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpacked: Option<bool>,
    /// The image config document (runtime defaults, history).
    pub image_config: berth_images::spec::ImageConfig,
}

impl InspectJson {
    /// The inspection of `image` resolved as `r`.
    pub fn new(
        image: &Image,
        r: &ResolvedImage,
        snapshotter: &str,
        unpacked: Option<bool>,
    ) -> InspectJson {
        let summary = Summary {
            size: Some(r.size()),
            platforms: None,
        };
        InspectJson {
            image: ImageJson::new(image, &summary),
            platform: r.platform().to_string(),
            manifest: DescriptorJson::from(&r.manifest_desc),
            config: DescriptorJson::from(&r.config_desc),
            layers: r
                .layers
                .iter()
                .map(|l| LayerJson {
                    blob: DescriptorJson::from(&l.blob),
                    diff_id: l.diff_id.to_string(),
                    chain_id: l.chain_id.to_string(),
                })
                .collect(),
            chain_id: r.chain_id().map(ToString::to_string),
            snapshotter: snapshotter.to_string(),
            unpacked,
            image_config: r.config.clone(),
        }
    }
}

/// `image inspect` for people: the record, then the resolved image and its layers.
pub fn inspect_text(j: &InspectJson) -> String {
    let labels = output::labels_string(&j.image.labels);
    let unpacked = match j.unpacked {
        Some(true) => format!("yes ({})", j.snapshotter),
        Some(false) => format!("no ({})", j.snapshotter),
        None => format!("unknown ({})", j.snapshotter),
    };
    let fields = [
        ("Name", j.image.name.clone()),
        (
            "Target",
            format!("{} {}", j.image.target.media_type, j.image.target.digest),
        ),
        ("Platform", j.platform.clone()),
        ("Manifest", j.manifest.digest.clone()),
        ("Config", j.config.digest.clone()),
        ("Size", j.image.size.map_or("-".into(), output::human_size)),
        ("Chain ID", j.chain_id.clone().unwrap_or_else(|| "-".into())),
        ("Unpacked", unpacked),
        (
            "Labels",
            if labels.is_empty() {
                "-".into()
            } else {
                labels
            },
        ),
    ];
    let mut out: String = fields
        .iter()
        .map(|(k, v)| format!("{:<10}{v}\n", format!("{k}:")))
        .collect();
    out.push_str("\nLayers:\n");
    let mut t = Table::new(&["DIGEST", "SIZE", "DIFF ID"]);
    for l in &j.layers {
        t.row(vec![
            l.blob.digest.clone(),
            output::human_size(l.blob.size),
            l.diff_id.clone(),
        ]);
    }
    out.push_str(&t.render());
    out
}

/// `image unpack`'s report.
pub fn unpack_text(platform: &Platform, target: &Descriptor, u: &Unpacked) -> String {
    format!(
        "unpacking {platform} {}...\ndone: {} of {} layers applied{}\n",
        target.digest,
        u.applied(),
        u.layers.len(),
        u.chain_id
            .as_ref()
            .map(|c| format!(", top snapshot {c}"))
            .unwrap_or_default()
    )
}

/// `image unpack --format json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct UnpackJson {
    pub name: String,
    pub platform: String,
    pub config: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<String>,
    pub layers: Vec<UnpackedLayerJson>,
}

/// One layer of `image unpack --format json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct UnpackedLayerJson {
    pub diff_id: String,
    pub chain_id: String,
    pub applied: bool,
}

impl UnpackJson {
    pub fn new(name: &str, platform: &Platform, u: &Unpacked) -> UnpackJson {
        UnpackJson {
            name: name.to_string(),
            platform: platform.to_string(),
            config: u.config.digest.to_string(),
            chain_id: u.chain_id.as_ref().map(ToString::to_string),
            layers: u
                .layers
                .iter()
                .map(|l| UnpackedLayerJson {
                    diff_id: l.diff_id.to_string(),
                    chain_id: l.chain_id.to_string(),
                    applied: l.applied,
                })
                .collect(),
        }
    }
}

fn print_pretty<T: Serialize>(value: &T) -> Result<()> {
    output::print_raw(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

async fn summarize(content: &RemoteContentStore, ns: &str, image: &Image) -> Summary {
    let size = berth_images::resolve(content, ns, &image.target, &Platform::host())
        .await
        .ok()
        .map(|r| r.size());
    let platforms = berth_images::platforms(content, ns, &image.target)
        .await
        .ok();
    Summary { size, platforms }
}

/// Run an image subcommand, with `snapshotter` for those that unpack or mount.
pub async fn run(ctx: &Ctx, snapshotter: &str, command: Command) -> Result<()> {
    let channel = ctx.channel().await?;
    let images = RemoteImages::new(channel.clone());
    let unpacker: RemoteUnpacker = berth_client::remote_unpacker(channel.clone());
    let ns = ctx.namespace.as_str();
    match command {
        Command::Ls { quiet, filters } => {
            let mut list = images.list(ns, &filters).await?;
            list.sort_by(|a, b| a.name.cmp(&b.name));
            if quiet {
                return output::print_lines(list.iter().map(|i| &i.name));
            }
            let mut rows = Vec::with_capacity(list.len());
            for image in list {
                let summary = summarize(unpacker.content(), ns, &image).await;
                rows.push((image, summary));
            }
            match ctx.format {
                Format::Table => ls_table(&rows).print(),
                Format::Json => output::print_json(
                    &rows
                        .iter()
                        .map(|(i, s)| ImageJson::new(i, s))
                        .collect::<Vec<_>>(),
                ),
            }
        }
        Command::Rm { sync, names } => {
            crate::for_each_reporting(&names, |name| {
                let images = images.clone();
                async move { Ok(images.delete(ns, &name, sync).await?) }
            })
            .await
        }
        Command::Inspect { name, platform } => {
            let platform = platform.unwrap_or_else(Platform::host);
            let image = images.get(ns, &name).await?;
            let resolved = unpacker.resolve(ns, &image.target, &platform).await?;
            let unpacked = unpacker
                .is_unpacked(ns, &image.target, snapshotter, &platform)
                .await
                .ok();
            let j = InspectJson::new(&image, &resolved, snapshotter, unpacked);
            match ctx.format {
                Format::Table => output::print_raw(&inspect_text(&j)),
                Format::Json => print_pretty(&j),
            }
        }
        Command::Unpack { name, platform } => {
            let mut opts = UnpackOptions::new(snapshotter);
            if let Some(p) = platform {
                opts.platform = p;
            }
            let image = images.get(ns, &name).await?;
            let done = unpacker.unpack(ns, &image.target, &opts).await?;
            match ctx.format {
                Format::Table => {
                    output::print_raw(&unpack_text(&opts.platform, &image.target, &done))
                }
                Format::Json => print_pretty(&UnpackJson::new(&name, &opts.platform, &done)),
            }
        }
        Command::Import(a) => crate::image_archive::import(ctx, snapshotter, channel, a).await,
        Command::Export(a) => crate::image_archive::export(ctx, channel, a).await,
        Command::Mount {
            name,
            target,
            rw,
            platform,
        } => {
            let req = crate::image_mount::MountRequest {
                name,
                target,
                rw,
                platform: platform.unwrap_or_else(Platform::host),
                snapshotter: snapshotter.to_string(),
            };
            crate::image_mount::mount(ctx, channel, &unpacker, req).await
        }
        Command::Unmount { target } => {
            crate::image_mount::unmount(ctx, channel, snapshotter, &target).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::Digest;
    use std::time::{Duration, SystemTime};

    fn image() -> Image {
        Image {
            name: "docker.io/library/busybox:latest".into(),
            labels: BTreeMap::new(),
            target: Descriptor {
                media_type: "application/vnd.oci.image.index.v1+json".into(),
                digest: Digest::sha256_of(b"index"),
                size: 500,
                annotations: BTreeMap::new(),
            },
            created_at: SystemTime::UNIX_EPOCH + Duration::from_secs(86400),
            updated_at: SystemTime::UNIX_EPOCH + Duration::from_secs(86400),
        }
    }

    #[test]
    fn ls_is_ctrs_table_with_dashes_for_the_unknown() {
        let known = Summary {
            size: Some(1_234_567),
            platforms: Some(vec![
                "linux/amd64".parse().unwrap(),
                "linux/arm64".parse().unwrap(),
            ]),
        };
        let mut labelled = image();
        labelled.name = "x".into();
        labelled.labels.insert("a".into(), "1".into());
        let text = ls_table(&[(image(), known), (labelled, Summary::default())]).render();
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0],
            ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
        );
        let digest = Digest::sha256_of(b"index").to_string();
        assert_eq!(
            lines[1],
            [
                "docker.io/library/busybox:latest",
                "application/vnd.oci.image.index.v1+json",
                digest.as_str(),
                "1.235MB",
                "linux/amd64,linux/arm64",
                "-"
            ]
        );
        assert_eq!(lines[2][3..], ["-", "-", "a=1"]);
    }

    #[test]
    fn ls_json_leaves_out_what_is_unknown() {
        let j = serde_json::to_value(ImageJson::new(&image(), &Summary::default())).unwrap();
        assert_eq!(j["name"], "docker.io/library/busybox:latest");
        assert_eq!(j["target"]["size"], 500);
        assert!(j.get("size").is_none());
        assert!(j.get("platforms").is_none());
        assert_eq!(j["created_at"], "1970-01-02T00:00:00Z");
        let s = Summary {
            size: Some(7),
            platforms: Some(vec!["linux/arm/v7".parse().unwrap()]),
        };
        let j = serde_json::to_value(ImageJson::new(&image(), &s)).unwrap();
        assert_eq!(j["size"], 7);
        assert_eq!(j["platforms"][0], "linux/arm/v7");
    }

    fn resolved() -> ResolvedImage {
        use berth_images::spec::{DescriptorJson as Dj, ImageConfig, Manifest, RootFs};
        let desc = |mt: &str, data: &[u8]| Descriptor {
            media_type: mt.into(),
            digest: Digest::sha256_of(data),
            size: data.len() as i64,
            annotations: BTreeMap::new(),
        };
        let dj = |d: &Descriptor| Dj {
            media_type: d.media_type.clone(),
            digest: d.digest.to_string(),
            size: d.size,
            annotations: BTreeMap::new(),
            platform: None,
        };
        let config = desc("application/vnd.oci.image.config.v1+json", b"config");
        let layer = desc(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            b"layer-bytes",
        );
        let diff_id = Digest::sha256_of(b"diff");
        ResolvedImage {
            indexes: vec![image().target],
            manifest_desc: desc("application/vnd.oci.image.manifest.v1+json", b"manifest"),
            manifest: Manifest {
                schema_version: 2,
                media_type: None,
                config: dj(&config),
                layers: vec![dj(&layer)],
                annotations: BTreeMap::new(),
            },
            config_desc: config,
            config: ImageConfig {
                architecture: "amd64".into(),
                os: "linux".into(),
                rootfs: RootFs {
                    kind: "layers".into(),
                    diff_ids: vec![diff_id.to_string()],
                },
                ..ImageConfig::default()
            },
            layers: vec![berth_images::Layer {
                blob: layer,
                diff_id: diff_id.clone(),
                chain_id: diff_id,
            }],
        }
    }

    #[test]
    fn inspect_shows_the_resolved_image() {
        let r = resolved();
        let j = InspectJson::new(&image(), &r, "overlayfs", Some(true));
        let text = inspect_text(&j);
        let diff_id = Digest::sha256_of(b"diff").to_string();
        assert!(
            text.starts_with("Name:     docker.io/library/busybox:latest\n"),
            "{text}"
        );
        assert!(text.contains("\nPlatform: linux/amd64\n"), "{text}");
        assert!(text.contains(&format!("\nChain ID: {diff_id}\n")), "{text}");
        assert!(text.contains("\nUnpacked: yes (overlayfs)\n"), "{text}");
        assert!(text.contains("\nSize:     525B\n"), "{text}");
        assert!(text.contains("\nLayers:\nDIGEST"), "{text}");
        assert!(text.trim_end().ends_with(&diff_id), "{text}");

        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(v["name"], "docker.io/library/busybox:latest");
        assert_eq!(v["platform"], "linux/amd64");
        assert_eq!(
            v["layers"][0]["media_type"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(v["layers"][0]["diff_id"], diff_id);
        assert_eq!(v["unpacked"], true);
        assert_eq!(v["image_config"]["rootfs"]["diff_ids"][0], diff_id);
        let unknown = InspectJson::new(&image(), &r, "native", None);
        assert!(serde_json::to_value(&unknown)
            .unwrap()
            .get("unpacked")
            .is_none());
        assert!(inspect_text(&unknown).contains("Unpacked: unknown (native)"));
    }

    #[test]
    fn platforms_parse_with_a_clear_error() {
        assert_eq!(
            parse_platform("linux/aarch64").unwrap().to_string(),
            "linux/arm64"
        );
        let e = parse_platform("linux//x").unwrap_err();
        assert!(e.ends_with("invalid argument"), "{e}");
    }

    #[test]
    fn unpack_report_counts_applied_layers() {
        let chain = Digest::sha256_of(b"c");
        let u = Unpacked {
            config: Descriptor {
                media_type: "application/vnd.oci.image.config.v1+json".into(),
                digest: Digest::sha256_of(b"config"),
                size: 3,
                annotations: BTreeMap::new(),
            },
            chain_id: Some(chain.clone()),
            layers: vec![
                berth_images::UnpackedLayer {
                    diff_id: chain.clone(),
                    chain_id: chain.clone(),
                    applied: true,
                },
                berth_images::UnpackedLayer {
                    diff_id: chain.clone(),
                    chain_id: chain.clone(),
                    applied: false,
                },
            ],
        };
        let p: Platform = "linux/amd64".parse().unwrap();
        let text = unpack_text(&p, &image().target, &u);
        assert!(text.starts_with(&format!(
            "unpacking linux/amd64 {}...\n",
            image().target.digest
        )));
        assert!(text.ends_with(&format!(
            "done: 1 of 2 layers applied, top snapshot {chain}\n"
        )));
        let j = serde_json::to_value(UnpackJson::new("busybox", &p, &u)).unwrap();
        assert_eq!(j["layers"][1]["applied"], false);
        assert_eq!(j["chain_id"], chain.to_string());
    }
}

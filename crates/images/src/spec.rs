//! The JSON documents of an image, as the OCI image spec and Docker's image manifest v2 schema 2
//! write them, and their media types.
//!
//! Only the fields berth reads are modelled; unknown fields are ignored (and so survive nowhere:
//! these types are for reading, never for rewriting a blob, whose digest would change).

use std::collections::BTreeMap;

use berth_core::{Descriptor, Digest};
use serde::{Deserialize, Serialize};

use crate::error::{ImageError, Result};
use crate::platform::Platform;

/// OCI image index: a list of manifests, usually one per platform.
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest: a config and layers.
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const MEDIA_TYPE_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker's manifest list, the ancestor of the OCI index.
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker's image manifest, schema 2.
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker's image config.
pub const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker's schema 1 manifest (refused).
pub const MEDIA_TYPE_DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker's signed schema 1 manifest (refused).
pub const MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What a media type says a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// An OCI index or a Docker manifest list.
    Index,
    /// An OCI or Docker schema 2 manifest.
    Manifest,
    /// An OCI or Docker image config.
    Config,
    /// A layer: a tar, plain or compressed (OCI, Docker, non-distributable or foreign).
    Layer,
    /// A Docker schema 1 manifest.
    Schema1,
    /// Anything else (attestations, signatures, artifacts).
    Other,
}

impl MediaKind {
    /// Classify `media_type`.
    pub fn of(media_type: &str) -> MediaKind {
        match media_type {
            MEDIA_TYPE_OCI_INDEX | MEDIA_TYPE_DOCKER_MANIFEST_LIST => MediaKind::Index,
            MEDIA_TYPE_OCI_MANIFEST | MEDIA_TYPE_DOCKER_MANIFEST => MediaKind::Manifest,
            MEDIA_TYPE_OCI_CONFIG | MEDIA_TYPE_DOCKER_CONFIG => MediaKind::Config,
            MEDIA_TYPE_DOCKER_SCHEMA1 | MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED => MediaKind::Schema1,
            mt if is_layer(mt) => MediaKind::Layer,
            _ => MediaKind::Other,
        }
    }
}

/// True for the layer media types containerd's `images.IsLayerType` knows: OCI layers (plain,
/// `+gzip`, `+zstd`, non-distributable) and Docker's `rootfs.diff.tar[.gzip]` and foreign layers.
pub fn is_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || matches!(
            media_type,
            "application/vnd.docker.image.rootfs.diff.tar"
                | "application/vnd.docker.image.rootfs.diff.tar.gzip"
                | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        )
}

/// A descriptor as JSON documents write it (camelCase, with an optional platform).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescriptorJson {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl DescriptorJson {
    /// As berth's [`Descriptor`]; `parent` (the document it was read from) names the error.
    pub fn to_descriptor(&self, parent: &Digest) -> Result<Descriptor> {
        let digest = Digest::parse(&self.digest).map_err(|e| ImageError::Malformed {
            what: "document",
            digest: parent.clone(),
            reason: e.message().to_string(),
        })?;
        if self.size < 0 {
            return Err(ImageError::Malformed {
                what: "document",
                digest: parent.clone(),
                reason: format!("descriptor {digest} has negative size {}", self.size),
            });
        }
        Ok(Descriptor {
            media_type: self.media_type.clone(),
            digest,
            size: self.size,
            annotations: self.annotations.clone(),
        })
    }
}

/// An OCI image index or Docker manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<DescriptorJson>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image manifest or Docker schema 2 manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: DescriptorJson,
    #[serde(default)]
    pub layers: Vec<DescriptorJson>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The rootfs section of a config: the diff IDs of the layers, bottom first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// An OCI or Docker image config: the platform, the rootfs, and the runtime defaults (`config`,
/// kept as raw JSON for whoever runs the image).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub os_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<serde_json::Value>>,
}

impl ImageConfig {
    /// The platform the config says the image is for.
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
            os_version: self.os_version.clone(),
            os_features: Vec::new(),
        }
    }

    /// The diff IDs, parsed; `digest` (the config's) names the error.
    pub fn diff_ids(&self, digest: &Digest) -> Result<Vec<Digest>> {
        self.rootfs
            .diff_ids
            .iter()
            .map(|d| {
                Digest::parse(d).map_err(|e| ImageError::Malformed {
                    what: "config",
                    digest: digest.clone(),
                    reason: format!("rootfs.diff_ids: {}", e.message()),
                })
            })
            .collect()
    }
}

/// Parse the JSON `data` of the blob `digest` as a `T` (`what` names it in errors).
pub fn parse_json<T: serde::de::DeserializeOwned>(
    data: &[u8],
    what: &'static str,
    digest: &Digest,
) -> Result<T> {
    serde_json::from_slice(data).map_err(|e| ImageError::Malformed {
        what,
        digest: digest.clone(),
        reason: e.to_string(),
    })
}

/// Check that a document's own `mediaType` field, when present, agrees with the descriptor that
/// led to it (containerd's `validateMediaType`), so an index is never read as a manifest.
pub fn check_media_type(own: Option<&str>, desc: &Descriptor, what: &'static str) -> Result<()> {
    match own {
        Some(mt) if !mt.is_empty() && !desc.media_type.is_empty() && mt != desc.media_type => {
            Err(ImageError::Malformed {
                what,
                digest: desc.digest.clone(),
                reason: format!(
                    "media type {mt} in the document does not match {} of its descriptor",
                    desc.media_type
                ),
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Digest {
        Digest::sha256_of(b"doc")
    }

    #[test]
    fn media_types_are_classified() {
        assert_eq!(MediaKind::of(MEDIA_TYPE_OCI_INDEX), MediaKind::Index);
        assert_eq!(
            MediaKind::of(MEDIA_TYPE_DOCKER_MANIFEST_LIST),
            MediaKind::Index
        );
        assert_eq!(MediaKind::of(MEDIA_TYPE_OCI_MANIFEST), MediaKind::Manifest);
        assert_eq!(
            MediaKind::of(MEDIA_TYPE_DOCKER_MANIFEST),
            MediaKind::Manifest
        );
        assert_eq!(MediaKind::of(MEDIA_TYPE_DOCKER_CONFIG), MediaKind::Config);
        assert_eq!(
            MediaKind::of(MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED),
            MediaKind::Schema1
        );
        for layer in [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        ] {
            assert_eq!(MediaKind::of(layer), MediaKind::Layer, "{layer}");
        }
        assert_eq!(
            MediaKind::of("application/vnd.in-toto+json"),
            MediaKind::Other
        );
    }

    #[test]
    fn docker_manifest_parses() {
        let json = br#"{
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1469,
                       "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000001"},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 772788,
                        "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000002"}]
        }"#;
        let m: Manifest = parse_json(json, "manifest", &d()).unwrap();
        assert_eq!(m.layers.len(), 1);
        let layer = m.layers[0].to_descriptor(&d()).unwrap();
        assert_eq!(layer.size, 772788);
        assert_eq!(MediaKind::of(&m.config.media_type), MediaKind::Config);
    }

    #[test]
    fn oci_index_with_platforms_parses() {
        let json = br#"{"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 7,
             "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000003",
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 7,
             "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000004",
             "platform": {"architecture": "amd64", "os": "linux", "os.features": ["sse4"]},
             "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}"#;
        let i: Index = parse_json(json, "index", &d()).unwrap();
        assert_eq!(i.manifests.len(), 2);
        let p = i.manifests[1].platform.as_ref().unwrap();
        assert_eq!(p.to_string(), "linux/amd64");
        assert_eq!(p.os_features, vec!["sse4"]);
        assert_eq!(i.manifests[0].platform.as_ref().unwrap().variant, "v8");
    }

    #[test]
    fn config_gives_platform_and_diff_ids() {
        let json = br#"{"architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [
                "sha256:0000000000000000000000000000000000000000000000000000000000000005"]},
            "history": [{"created_by": "x"}]}"#;
        let c: ImageConfig = parse_json(json, "config", &d()).unwrap();
        assert_eq!(c.platform().to_string(), "linux/amd64");
        assert_eq!(c.diff_ids(&d()).unwrap().len(), 1);
        assert_eq!(c.config.unwrap()["Cmd"][0], "sh");
    }

    #[test]
    fn malformed_documents_name_the_blob() {
        let e = parse_json::<Manifest>(b"{\"layers\": 3}", "manifest", &d()).unwrap_err();
        assert_eq!(e.kind(), berth_core::ErrorKind::InvalidArgument);
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("manifest {}: ", d())), "{msg}");
        assert!(msg.ends_with(": invalid argument"), "{msg}");

        let bad = br#"{"rootfs": {"type": "layers", "diff_ids": ["sha256:zz"]}}"#;
        let c: ImageConfig = parse_json(bad, "config", &d()).unwrap();
        assert!(c.diff_ids(&d()).is_err());

        let neg = DescriptorJson {
            media_type: String::new(),
            digest: d().to_string(),
            size: -1,
            annotations: BTreeMap::new(),
            platform: None,
        };
        assert!(neg.to_descriptor(&d()).is_err());
    }

    #[test]
    fn own_media_type_must_match_the_descriptor() {
        let desc = Descriptor {
            media_type: MEDIA_TYPE_OCI_MANIFEST.into(),
            digest: d(),
            size: 3,
            annotations: BTreeMap::new(),
        };
        check_media_type(None, &desc, "manifest").unwrap();
        check_media_type(Some(MEDIA_TYPE_OCI_MANIFEST), &desc, "manifest").unwrap();
        let e = check_media_type(Some(MEDIA_TYPE_OCI_INDEX), &desc, "manifest").unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
    }
}

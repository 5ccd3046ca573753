//! Images over the OCI distribution protocol: pulling from a registry into a content store, and
//! pushing from a content store to a registry.
//!
//! Vocabulary:
//! - a **reference** names an image at a registry: `host[:port]/repository[:tag][@digest]`,
//!   normalized as Docker does by [`berth_core::reference`] (`busybox` is
//!   `docker.io/library/busybox:latest`);
//! - **resolving** asks the registry what the reference points at now: a manifest or an
//!   index, whose descriptor becomes the image record's target;
//! - **fetching** walks down from there (index -> the wanted platforms' manifests -> config and
//!   layers), storing each blob verified by digest, children before parents, with containerd's
//!   labels: `containerd.io/gc.ref.content.{m.<i>,config,l.<i>}` on parents, so the garbage
//!   collector sees the graph, and `containerd.io/distribution.source.<host>` on every blob.
//!
//! Hosts on this machine (`localhost`, `127.0.0.0/8`, `::1`) are spoken to over plain HTTP, as
//! Docker does; others over HTTPS unless asked otherwise. Credentials come only from the
//! caller's [`CredentialProvider`] (the docker config file is one, used when the caller says so). Creating the image record and unpacking are the caller's: this crate
//! only fills the content store, under the caller's lease.
//!
//! Architecture invariant: no daemon or gRPC types here; the store is any
//! [`berth_core::content::ContentStore`] (berthd's in process, or the remote one of
//! `berth-client`).

pub mod credentials;
mod error;
pub mod hosts;
mod pull;
mod push;

pub use credentials::{
    docker_config_credentials, docker_config_path, CredentialProvider, Credentials, DockerConfig,
    StaticCredentials,
};
pub use error::DistributionError;
pub use pull::{
    Fetched, NoProgress, PullOptions, PullProgress, Pulled, Puller, DISTRIBUTION_SOURCE_PREFIX,
};
pub use push::{NoPushProgress, PushOptions, PushProgress, PushedImage, Pusher, Uploaded};

//! berth-cri: the Kubernetes Container Runtime Interface (CRI, API `runtime.v1`) served by
//! berthd, in-process over its stores, as containerd serves it from its `cri` plugin on its
//! own socket.
//!
//! Vocabulary:
//! - the **kubelet** (or `crictl`) calls two gRPC services: the **ImageService** (pull, list,
//!   status, remove images; the image filesystem's usage) and the **RuntimeService** (version,
//!   status, pod sandboxes, containers, streaming);
//! - everything the CRI makes lives in containerd's **`k8s.io` namespace** ([`NAMESPACE`]), so
//!   `ctr -n k8s.io images ls` shows what a kubelet pulled;
//! - a CRI **image** is what image records sharing one config digest describe: its **id** is
//!   the config digest, its **repo tags** and **repo digests** are the records' names (see
//!   [`identity`]);
//! - **not built yet**: pod sandboxes, containers, exec/attach/port-forward, stats and events
//!   answer `Unimplemented`, saying so (ARCHITECTURE.md lists them).
//!
//! Architecture invariant: this crate runs berth-ops' workflows over berth-services'
//! `LocalStores` (no gRPC between the CRI and the stores), and maps errors to gRPC statuses only
//! through berth-services' one mapping (`berth_services::status`).

pub mod auth;
pub mod fsinfo;
pub mod identity;
mod images;
mod runtime;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_metadata::Metadata;
use berth_services::LocalStores;

pub use k8s_cri::v1 as api;
use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;

/// containerd's namespace for everything the CRI makes.
pub const NAMESPACE: &str = "k8s.io";
/// The label containerd's CRI puts on the image records it makes.
pub const MANAGED_LABEL: &str = "io.cri-containerd.image";
/// The CRI API version served.
pub const API_VERSION: &str = "v1";
/// The runtime's name in `Version`.
pub const RUNTIME_NAME: &str = "berth";
/// The default pause image of pod sandboxes (containerd 1.7's).
pub const DEFAULT_SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.9";

/// How the CRI server is set up (berthd's `[cri]` and `[registry]` tables).
#[derive(Debug, Clone)]
pub struct CriConfig {
    /// The snapshotter images are unpacked into (`overlayfs`).
    pub snapshotter: String,
    /// The snapshotter's root directory, whose usage `ImageFsInfo` reports.
    pub snapshotter_root: PathBuf,
    /// Where `<host>/hosts.toml` mirror files are (containerd CRI's `config_path`).
    pub hosts_dir: PathBuf,
    /// The pod sandboxes' pause image (not used yet: no pod sandboxes).
    pub sandbox_image: String,
    /// berthd's version, for `Version`.
    pub runtime_version: String,
}

/// The CRI server: one handle (cheap to clone) serving both services.
#[derive(Debug, Clone)]
pub struct Cri {
    stores: LocalStores,
    meta: Metadata,
    config: Arc<CriConfig>,
    /// The pod CIDR the kubelet gave in `UpdateRuntimeConfig` (for CNI, later).
    pod_cidr: Arc<Mutex<String>>,
}

impl Cri {
    /// The CRI over berthd's stores.
    pub fn new(stores: LocalStores, meta: Metadata, config: CriConfig) -> Cri {
        Cri {
            stores,
            meta,
            config: Arc::new(config),
            pod_cidr: Arc::new(Mutex::new(String::new())),
        }
    }

    /// The pod CIDR last given by `UpdateRuntimeConfig` (empty: none yet).
    pub fn pod_cidr(&self) -> String {
        self.pod_cidr.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The RuntimeService's gRPC server.
    pub fn runtime_server(&self) -> RuntimeServiceServer<Cri> {
        RuntimeServiceServer::new(self.clone())
    }

    /// The ImageService's gRPC server.
    pub fn image_server(&self) -> ImageServiceServer<Cri> {
        ImageServiceServer::new(self.clone())
    }
}

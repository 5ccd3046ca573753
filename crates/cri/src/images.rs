//! The CRI ImageService over berthd's image records in the `k8s.io` namespace: pulls through
//! berth-ops (fetch, record, unpack into the snapshotter), then the names containerd's CRI
//! makes for an image (the reference, its repo digest, its id), each labelled
//! `io.cri-containerd.image=managed`.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use berth_core::images::{Image as Record, ImageStore};
use berth_core::{Descriptor, Error, ErrorKind};
use berth_images::{Platform, ResolvedImage};
use berth_services::status::to_status;
use tonic::{Request, Response, Status};

use crate::api::image_service_server::ImageService;
use crate::api::{
    FilesystemIdentifier, FilesystemUsage, Image, ImageFsInfoRequest, ImageFsInfoResponse,
    ImageStatusRequest, ImageStatusResponse, ListImagesRequest, ListImagesResponse,
    PullImageRequest, PullImageResponse, RemoveImageRequest, RemoveImageResponse, UInt64Value,
};
use crate::identity::{self, Named};
use crate::{Cri, MANAGED_LABEL, NAMESPACE};

type Reply<T> = Result<Response<T>, Status>;

/// One CRI image: the records sharing a config digest, and the image resolved for this
/// machine's platform (through the first record).
#[derive(Debug)]
struct Found {
    id: String,
    records: Vec<Record>,
    resolved: ResolvedImage,
}

impl Found {
    fn named(&self) -> Vec<Named> {
        self.records
            .iter()
            .map(|r| Named {
                name: r.name.clone(),
                target: r.target.digest.to_string(),
            })
            .collect()
    }

    fn size(&self) -> u64 {
        let bytes: i64 = self.resolved.layers.iter().map(|l| l.blob.size).sum();
        u64::try_from(bytes).unwrap_or(0)
    }

    fn cri_image(&self) -> Image {
        identity::cri_image(
            &self.id,
            &self.named(),
            self.size(),
            self.resolved.config.config.as_ref(),
        )
    }

    /// containerd's verbose `info`: the chain ID and the image config, plus what berth knows.
    fn info(&self, snapshotter: &str) -> HashMap<String, String> {
        let info = serde_json::json!({
            "chainID": self.resolved.chain_id().map(|c| c.to_string()),
            "imageSpec": self.resolved.config,
            "manifestDigest": self.resolved.manifest_desc.digest.to_string(),
            "names": self.records.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
            "snapshotter": snapshotter,
        });
        HashMap::from([("info".to_string(), info.to_string())])
    }
}

impl Cri {
    /// Every image of the namespace that resolves for this machine's platform, by id. A record
    /// whose content is missing or has no manifest for this platform is left out (logged).
    async fn all_images(&self) -> Result<Vec<Found>, Error> {
        let mut by_id: BTreeMap<String, Found> = BTreeMap::new();
        let platform = Platform::host();
        for record in ImageStore::list(&self.meta, NAMESPACE, &[]).await? {
            let resolved =
                match berth_images::resolve(&self.meta, NAMESPACE, &record.target, &platform).await
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(image = %record.name, error = %e, "cri: image left out");
                        continue;
                    }
                };
            let id = resolved.config_desc.digest.to_string();
            match by_id.get_mut(&id) {
                Some(found) => found.records.push(record),
                None => {
                    by_id.insert(
                        id.clone(),
                        Found {
                            id,
                            records: vec![record],
                            resolved,
                        },
                    );
                }
            }
        }
        Ok(by_id.into_values().collect())
    }

    /// The image `image` names: an id (`sha256:…`, or a unique prefix of its hex digits), or a
    /// reference (normalized: `busybox` is `docker.io/library/busybox:latest`). None when no
    /// image matches, or the name is neither (as containerd's CRI: not an error).
    async fn find(&self, image: &str) -> Result<Option<Found>, Error> {
        let image = image.trim();
        if image.is_empty() {
            return Err(Error::invalid_argument("image must not be empty"));
        }
        let all = self.all_images().await?;
        if identity::is_id(image) {
            return Ok(all.into_iter().find(|f| f.id == image));
        }
        if let Ok(name) = berth_core::reference::normalize(image) {
            if let Some(f) = all
                .iter()
                .position(|f| f.records.iter().any(|r| r.name == name))
            {
                return Ok(all.into_iter().nth(f));
            }
        }
        // A short id, as `crictl` and `docker` print them.
        let hex = image.strip_prefix("sha256:").unwrap_or(image);
        if hex.len() >= 3 && hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            let prefix = format!("sha256:{}", hex.to_ascii_lowercase());
            let mut matching = all.into_iter().filter(|f| f.id.starts_with(&prefix));
            let first = matching.next();
            if matching.next().is_some() {
                return Err(Error::invalid_argument(format!(
                    "image id prefix {image:?} is ambiguous"
                )));
            }
            return Ok(first);
        }
        Ok(None)
    }

    /// Create the record `name` -> `target` labelled as the CRI's, or point it there.
    async fn upsert(&self, name: &str, target: &Descriptor) -> Result<(), Error> {
        let record = Record {
            name: name.to_string(),
            labels: BTreeMap::from([(MANAGED_LABEL.to_string(), "managed".to_string())]),
            target: target.clone(),
            created_at: SystemTime::now(),
            updated_at: SystemTime::now(),
        };
        match ImageStore::create(&self.meta, NAMESPACE, record.clone()).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let fields = ["target".to_string(), format!("labels.{MANAGED_LABEL}")];
                ImageStore::update(&self.meta, NAMESPACE, record, &fields)
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// Pull `image` into the namespace and unpack it; the image id.
    async fn pull(
        &self,
        image: &str,
        auth: Option<&crate::api::AuthConfig>,
    ) -> Result<String, Error> {
        let image = image.trim();
        if image.is_empty() {
            return Err(Error::invalid_argument("image must not be empty"));
        }
        let opts = berth_ops::PullOptions {
            snapshotter: Some(self.config.snapshotter.clone()),
            credentials: crate::auth::provider(auth)?,
            hosts_dir: Some(self.config.hosts_dir.clone()),
            ..berth_ops::PullOptions::default()
        };
        let started = std::time::Instant::now();
        let pulled = berth_ops::pull(
            &self.stores,
            NAMESPACE,
            image,
            opts,
            &berth_distribution::NoProgress,
        )
        .await
        .map_err(Error::from)?;
        let target = &pulled.fetched.target;
        let resolved =
            berth_images::resolve(&self.meta, NAMESPACE, target, &Platform::host()).await?;
        let id = resolved.config_desc.digest.to_string();
        let mut names = vec![pulled.name.clone(), id.clone()];
        if let Some(d) = identity::repo_digest(&pulled.name, &target.digest.to_string()) {
            names.push(d);
        }
        for name in &names {
            self.upsert(name, target)
                .await
                .map_err(|e| e.context(format!("record image {name}")))?;
        }
        tracing::info!(
            image = %pulled.name,
            id = %id,
            ms = started.elapsed().as_millis() as u64,
            "cri: pulled image"
        );
        Ok(id)
    }

    /// Delete every name of the image `image` names; the last deletion collects its content
    /// before returning. An image that does not exist is already removed.
    async fn remove(&self, image: &str) -> Result<(), Error> {
        let Some(found) = self.find(image).await? else {
            return Ok(());
        };
        let last = found.records.len().saturating_sub(1);
        for (i, record) in found.records.iter().enumerate() {
            match ImageStore::delete(&self.meta, NAMESPACE, &record.name, i == last).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e.context(format!("remove image {}", record.name))),
            }
        }
        tracing::info!(image = %image, id = %found.id, "cri: removed image");
        Ok(())
    }
}

/// The `image` field of an optional image spec.
fn spec_image(spec: Option<&crate::api::ImageSpec>) -> &str {
    spec.map(|s| s.image.as_str()).unwrap_or("")
}

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(&self, req: Request<ListImagesRequest>) -> Reply<ListImagesResponse> {
        let filter = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.trim().is_empty());
        let images = match filter {
            Some(image) => self
                .find(&image)
                .await
                .map_err(to_status)?
                .into_iter()
                .collect::<Vec<_>>(),
            None => self.all_images().await.map_err(to_status)?,
        };
        Ok(Response::new(ListImagesResponse {
            images: images.iter().map(Found::cri_image).collect(),
        }))
    }

    async fn image_status(&self, req: Request<ImageStatusRequest>) -> Reply<ImageStatusResponse> {
        let req = req.into_inner();
        let found = self
            .find(spec_image(req.image.as_ref()))
            .await
            .map_err(to_status)?;
        let Some(found) = found else {
            return Ok(Response::new(ImageStatusResponse::default()));
        };
        Ok(Response::new(ImageStatusResponse {
            image: Some(found.cri_image()),
            info: if req.verbose {
                found.info(&self.config.snapshotter)
            } else {
                HashMap::new()
            },
        }))
    }

    async fn pull_image(&self, req: Request<PullImageRequest>) -> Reply<PullImageResponse> {
        let req = req.into_inner();
        let image = spec_image(req.image.as_ref()).to_string();
        let id = self
            .pull(&image, req.auth.as_ref())
            .await
            .map_err(|e| to_status(e.context(format!("pull image {image:?}"))))?;
        Ok(Response::new(PullImageResponse { image_ref: id }))
    }

    async fn remove_image(&self, req: Request<RemoveImageRequest>) -> Reply<RemoveImageResponse> {
        let req = req.into_inner();
        let image = spec_image(req.image.as_ref()).to_string();
        self.remove(&image).await.map_err(to_status)?;
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(&self, _req: Request<ImageFsInfoRequest>) -> Reply<ImageFsInfoResponse> {
        let root = self.config.snapshotter_root.clone();
        let usage = {
            let walked = root.clone();
            tokio::task::spawn_blocking(move || crate::fsinfo::disk_usage(&walked))
                .await
                .map_err(|e| Status::internal(format!("image filesystem usage: {e}")))?
                .map_err(|e| {
                    to_status(
                        Error::from(e).context(format!("image filesystem {}", root.display())),
                    )
                })?
        };
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Ok(Response::new(ImageFsInfoResponse {
            image_filesystems: vec![FilesystemUsage {
                timestamp,
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: root.display().to_string(),
                }),
                used_bytes: Some(UInt64Value { value: usage.bytes }),
                inodes_used: Some(UInt64Value {
                    value: usage.inodes,
                }),
            }],
            container_filesystems: Vec::new(),
        }))
    }
}

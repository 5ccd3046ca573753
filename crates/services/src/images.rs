//! containerd.services.images.v1 over any [`ImageStore`], publishing `/images/{create,update,delete}`.

use std::sync::Arc;

use berth_api::convert::{descriptor_from_msg, descriptor_msg};
use berth_api::images::images_server::Images;
use berth_api::services::v1::{
    CreateImageRequest, CreateImageResponse, DeleteImageRequest, GetImageRequest, GetImageResponse,
    Image as ImageMsg, ImageCreate, ImageDelete, ImageUpdate, ListImagesRequest,
    ListImagesResponse, UpdateImageRequest, UpdateImageResponse,
};
use berth_core::images::{Image, ImageStore};
use berth_core::{Descriptor, Digest};

use crate::events::Exchange;
use crate::request::namespace;
use crate::status::{GrpcResult, IntoStatus};

/// The Images service.
#[derive(Debug)]
pub struct ImagesService<S> {
    pub store: Arc<S>,
    pub exchange: Exchange,
}

fn image_msg(i: Image) -> ImageMsg {
    ImageMsg {
        name: i.name,
        labels: i.labels.into_iter().collect(),
        target: Some(descriptor_msg(i.target)),
        created_at: Some(i.created_at.into()),
        updated_at: Some(i.updated_at.into()),
    }
}

fn image_from_msg(m: Option<ImageMsg>) -> Result<Image, tonic::Status> {
    let m = m.ok_or_else(|| tonic::Status::invalid_argument("image must not be empty"))?;
    let target = match m.target {
        Some(t) if !t.digest.is_empty() => descriptor_from_msg(t).grpc()?,
        // Field-masked updates may leave the target out; an empty one fails validation later.
        _ => Descriptor {
            media_type: String::new(),
            digest: Digest::sha256_of(b""),
            size: 0,
            annotations: Default::default(),
        },
    };
    Ok(Image {
        name: m.name,
        labels: m.labels.into_iter().collect(),
        target,
        created_at: std::time::SystemTime::UNIX_EPOCH,
        updated_at: std::time::SystemTime::UNIX_EPOCH,
    })
}

#[tonic::async_trait]
impl<S: ImageStore + 'static> Images for ImagesService<S> {
    async fn get(&self, req: tonic::Request<GetImageRequest>) -> GrpcResult<GetImageResponse> {
        let ns = namespace(&req)?;
        let image = self.store.get(&ns, &req.into_inner().name).await.grpc()?;
        Ok(tonic::Response::new(GetImageResponse {
            image: Some(image_msg(image)),
        }))
    }

    async fn list(&self, req: tonic::Request<ListImagesRequest>) -> GrpcResult<ListImagesResponse> {
        let ns = namespace(&req)?;
        let images = self
            .store
            .list(&ns, &req.into_inner().filters)
            .await
            .grpc()?
            .into_iter()
            .map(image_msg)
            .collect();
        Ok(tonic::Response::new(ListImagesResponse { images }))
    }

    async fn create(
        &self,
        req: tonic::Request<CreateImageRequest>,
    ) -> GrpcResult<CreateImageResponse> {
        let ns = namespace(&req)?;
        let image = image_from_msg(req.into_inner().image)?;
        let created = self.store.create(&ns, image).await.grpc()?;
        self.exchange.publish(
            &ns,
            "/images/create",
            &ImageCreate {
                name: created.name.clone(),
                labels: created.labels.clone().into_iter().collect(),
            },
        );
        Ok(tonic::Response::new(CreateImageResponse {
            image: Some(image_msg(created)),
        }))
    }

    async fn update(
        &self,
        req: tonic::Request<UpdateImageRequest>,
    ) -> GrpcResult<UpdateImageResponse> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        let image = image_from_msg(req.image)?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let updated = self.store.update(&ns, image, &paths).await.grpc()?;
        self.exchange.publish(
            &ns,
            "/images/update",
            &ImageUpdate {
                name: updated.name.clone(),
                labels: updated.labels.clone().into_iter().collect(),
            },
        );
        Ok(tonic::Response::new(UpdateImageResponse {
            image: Some(image_msg(updated)),
        }))
    }

    async fn delete(&self, req: tonic::Request<DeleteImageRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        if let Some(target) = req.target {
            // containerd 2's conditional delete: only if the image still points at `target`.
            let current = self.store.get(&ns, &req.name).await.grpc()?;
            if current.target.digest.to_string() != target.digest {
                return Err(tonic::Status::failed_precondition(format!(
                    "image {:?} has target {}, not {}",
                    req.name, current.target.digest, target.digest
                )));
            }
        }
        self.store.delete(&ns, &req.name, req.sync).await.grpc()?;
        self.exchange
            .publish(&ns, "/images/delete", &ImageDelete { name: req.name });
        Ok(tonic::Response::new(()))
    }
}

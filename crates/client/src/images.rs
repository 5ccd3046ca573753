//! Image records over containerd's Images service.

use std::time::SystemTime;

use berth_core::images::{Image, ImageStore};
use berth_core::{Descriptor, Error, Result};
use containerd_client::services::v1::{
    images_client::ImagesClient, CreateImageRequest, DeleteImageRequest, GetImageRequest,
    Image as PbImage, ListImagesRequest, UpdateImageRequest,
};
use containerd_client::types::Descriptor as PbDescriptor;
use tonic::transport::Channel;

use crate::{from_labels, from_time, request, status_to_error, to_labels, to_time};

/// An [`ImageStore`] reached through the Images service of berthd or containerd.
///
/// Cloning is cheap: clones share the channel.
#[derive(Debug, Clone)]
pub struct RemoteImages {
    channel: Channel,
}

impl RemoteImages {
    /// An image store speaking over `channel` (see [`crate::connect`]).
    pub fn new(channel: Channel) -> Self {
        RemoteImages { channel }
    }

    fn client(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone()).max_decoding_message_size(crate::MAX_MESSAGE_SIZE)
    }
}

/// A descriptor message from the server; an invalid digest there is an internal error.
pub(crate) fn descriptor_from_pb(d: PbDescriptor) -> Result<Descriptor> {
    berth_api::convert::descriptor_from_msg(d)
        .map_err(|e| Error::internal(format!("server sent an invalid digest: {e}")))
}

fn image_from_pb(i: PbImage) -> Result<Image> {
    let target = i
        .target
        .ok_or_else(|| Error::internal(format!("server sent image {} without target", i.name)))?;
    Ok(Image {
        name: i.name,
        labels: to_labels(i.labels),
        target: descriptor_from_pb(target)?,
        created_at: to_time(i.created_at),
        updated_at: to_time(i.updated_at),
    })
}

fn image_to_pb(i: Image) -> PbImage {
    let epoch = |t: SystemTime| {
        (t != SystemTime::UNIX_EPOCH)
            .then(|| from_time(t))
            .flatten()
    };
    PbImage {
        name: i.name,
        labels: from_labels(i.labels),
        target: Some(berth_api::convert::descriptor_msg(i.target)),
        created_at: epoch(i.created_at),
        updated_at: epoch(i.updated_at),
    }
}

fn image_of(resp: Option<PbImage>) -> Result<Image> {
    image_from_pb(resp.ok_or_else(|| Error::internal("server response lacks image"))?)
}

impl ImageStore for RemoteImages {
    async fn get(&self, ns: &str, name: &str) -> Result<Image> {
        let req = GetImageRequest {
            name: name.to_string(),
        };
        let resp = self
            .client()
            .get(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        image_of(resp.into_inner().image)
    }

    async fn list(&self, ns: &str, filters: &[String]) -> Result<Vec<Image>> {
        let req = ListImagesRequest {
            filters: filters.to_vec(),
        };
        let resp = self
            .client()
            .list(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        resp.into_inner()
            .images
            .into_iter()
            .map(image_from_pb)
            .collect()
    }

    async fn create(&self, ns: &str, image: Image) -> Result<Image> {
        let req = CreateImageRequest {
            image: Some(image_to_pb(image)),
            source_date_epoch: None,
        };
        let resp = self
            .client()
            .create(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        image_of(resp.into_inner().image)
    }

    async fn update(&self, ns: &str, image: Image, fieldpaths: &[String]) -> Result<Image> {
        let req = UpdateImageRequest {
            image: Some(image_to_pb(image)),
            // As containerd's client: no mask at all when no paths are given.
            update_mask: (!fieldpaths.is_empty()).then(|| prost_types::FieldMask {
                paths: fieldpaths.to_vec(),
            }),
            source_date_epoch: None,
        };
        let resp = self
            .client()
            .update(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        image_of(resp.into_inner().image)
    }

    async fn delete(&self, ns: &str, name: &str, sync: bool) -> Result<()> {
        let req = DeleteImageRequest {
            name: name.to_string(),
            sync,
            target: None,
        };
        self.client()
            .delete(request(req, ns, None))
            .await
            .map_err(status_to_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn image() -> Image {
        Image {
            name: "docker.io/library/busybox:latest".into(),
            labels: BTreeMap::from([("a".to_string(), "1".to_string())]),
            target: Descriptor {
                media_type: "application/vnd.oci.image.index.v1+json".into(),
                digest: berth_core::Digest::sha256_of(b"index"),
                size: 5,
                annotations: BTreeMap::from([("k".to_string(), "v".to_string())]),
            },
            created_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            updated_at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn images_round_trip_through_messages() {
        let i = image();
        let pb = image_to_pb(i.clone());
        assert!(pb.created_at.is_some());
        assert!(pb.updated_at.is_none(), "unset times are left out");
        assert_eq!(image_from_pb(pb).unwrap(), i);
    }

    #[test]
    fn a_server_image_without_target_is_an_internal_error() {
        let mut pb = image_to_pb(image());
        pb.target = None;
        let e = image_from_pb(pb).unwrap_err();
        assert_eq!(e.kind(), berth_core::ErrorKind::Internal);
        let mut pb = image_to_pb(image());
        pb.target.as_mut().unwrap().digest = "sha256:nope".into();
        assert!(image_from_pb(pb).is_err());
    }
}

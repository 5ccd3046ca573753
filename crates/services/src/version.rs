//! containerd.services.version.v1.

use berth_api::services::v1::VersionResponse;
use berth_api::version::version_server::Version;

use crate::status::GrpcResult;

/// Answers with berthd's version and the source revision it was built from.
#[derive(Debug, Clone)]
pub struct VersionService {
    pub version: String,
    pub revision: String,
}

#[tonic::async_trait]
impl Version for VersionService {
    async fn version(&self, _req: tonic::Request<()>) -> GrpcResult<VersionResponse> {
        Ok(tonic::Response::new(VersionResponse {
            version: self.version.clone(),
            revision: self.revision.clone(),
        }))
    }
}

//! containerd.services.introspection.v1: the plugin list and the server's identity.

use berth_api::introspection::introspection_server::Introspection;
use berth_api::services::v1::{
    Plugin as PluginMsg, PluginInfoRequest, PluginInfoResponse, PluginsRequest, PluginsResponse,
    ServerResponse,
};
use berth_api::types::Platform;
use berth_core::filters::Filter;

use crate::plugins::PluginRegistry;
use crate::status::{GrpcResult, IntoStatus};

/// Lists the registered plugins and tells the server's UUID, pid and pid namespace.
#[derive(Debug, Clone)]
pub struct IntrospectionService {
    pub registry: PluginRegistry,
    pub uuid: String,
}

fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: String::new(),
        os_version: String::new(),
    }
}

/// The inode of this process's pid namespace, as `/proc/self/ns/pid` names it (`pid:[4026531836]`).
fn pid_namespace() -> u64 {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|p| {
            let s = p.to_string_lossy().into_owned();
            s.trim_start_matches("pid:[")
                .trim_end_matches(']')
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[tonic::async_trait]
impl Introspection for IntrospectionService {
    async fn plugins(&self, req: tonic::Request<PluginsRequest>) -> GrpcResult<PluginsResponse> {
        let filter = Filter::parse_all(&req.into_inner().filters).grpc()?;
        let plugins = self
            .registry
            .plugins()
            .iter()
            .filter(|p| filter.matches(*p))
            .map(|p| PluginMsg {
                r#type: p.kind.clone(),
                id: p.id.clone(),
                requires: p.requires.clone(),
                platforms: if p.kind.contains("snapshotter") || p.kind.contains("runtime") {
                    vec![host_platform()]
                } else {
                    Vec::new()
                },
                exports: p.all_exports(),
                capabilities: p.capabilities.clone(),
                init_err: p
                    .init_error
                    .as_ref()
                    .map(|m| berth_api::google::rpc::Status {
                        code: tonic::Code::Unknown as i32,
                        message: m.clone(),
                        details: Vec::new(),
                    }),
            })
            .collect();
        Ok(tonic::Response::new(PluginsResponse { plugins }))
    }

    async fn server(&self, _req: tonic::Request<()>) -> GrpcResult<ServerResponse> {
        Ok(tonic::Response::new(ServerResponse {
            uuid: self.uuid.clone(),
            pid: std::process::id() as u64,
            pidns: pid_namespace(),
            deprecations: Vec::new(),
        }))
    }

    async fn plugin_info(
        &self,
        _req: tonic::Request<PluginInfoRequest>,
    ) -> GrpcResult<PluginInfoResponse> {
        Err(tonic::Status::unimplemented(
            "plugin info is not implemented by berthd",
        ))
    }
}

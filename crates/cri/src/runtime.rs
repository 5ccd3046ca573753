//! The CRI RuntimeService: what is built (Version, Status, RuntimeConfig, UpdateRuntimeConfig)
//! and, for everything else, an `Unimplemented` that says so: pod sandboxes, containers,
//! exec/attach/port-forward, stats, events and checkpoints come next (ARCHITECTURE.md lists
//! them as not yet built).

use std::collections::HashMap;
use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::api::runtime_service_server::RuntimeService;
use crate::api::*;
use crate::{Cri, API_VERSION, NAMESPACE, RUNTIME_NAME};

type Reply<T> = Result<Response<T>, Status>;

/// The CRI condition type of a runtime that can run containers.
pub const RUNTIME_READY: &str = "RuntimeReady";
/// The CRI condition type of a runtime whose pod network is set up.
pub const NETWORK_READY: &str = "NetworkReady";
/// The reason of a network that is not ready (containerd's, and the kubelet's word).
pub const NETWORK_NOT_READY_REASON: &str = "NetworkPluginNotReady";
/// Why the network is not ready: berth has no CNI support yet.
pub const NETWORK_NOT_READY_MESSAGE: &str =
    "Network plugin returns error: cni plugin not initialized (berth's CRI has no CNI support yet)";
/// The kubelet API version `Version` answers with (containerd's constant).
const KUBE_API_VERSION: &str = "0.1.0";

/// The `Unimplemented` answer of an RPC not built yet.
fn not_built(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "{rpc} is not built yet in berth's CRI: only images, Version, Status and the runtime \
         config are; pod sandboxes, containers and streaming come next"
    ))
}

impl Cri {
    /// The verbose `info` of `Status`: the CRI's configuration, as containerd's `config` key.
    fn status_info(&self) -> HashMap<String, String> {
        let config = serde_json::json!({
            "namespace": NAMESPACE,
            "snapshotter": self.config.snapshotter,
            "sandboxImage": self.config.sandbox_image,
            "registry": { "configPath": self.config.hosts_dir },
            "podCIDR": self.pod_cidr(),
            "cgroupDriver": "cgroupfs",
        });
        HashMap::from([
            ("config".to_string(), config.to_string()),
            (
                "lastCNILoadStatus".to_string(),
                "cni config load failed: berth's CRI has no CNI support yet".to_string(),
            ),
        ])
    }
}

#[tonic::async_trait]
impl RuntimeService for Cri {
    type GetContainerEventsStream =
        Pin<Box<dyn Stream<Item = Result<ContainerEventResponse, Status>> + Send + 'static>>;

    async fn version(&self, _req: Request<VersionRequest>) -> Reply<VersionResponse> {
        Ok(Response::new(VersionResponse {
            version: KUBE_API_VERSION.to_string(),
            runtime_name: RUNTIME_NAME.to_string(),
            runtime_version: self.config.runtime_version.clone(),
            runtime_api_version: API_VERSION.to_string(),
        }))
    }

    async fn status(&self, req: Request<StatusRequest>) -> Reply<StatusResponse> {
        let conditions = vec![
            RuntimeCondition {
                r#type: RUNTIME_READY.to_string(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            RuntimeCondition {
                r#type: NETWORK_READY.to_string(),
                status: false,
                reason: NETWORK_NOT_READY_REASON.to_string(),
                message: NETWORK_NOT_READY_MESSAGE.to_string(),
            },
        ];
        Ok(Response::new(StatusResponse {
            status: Some(RuntimeStatus { conditions }),
            info: if req.into_inner().verbose {
                self.status_info()
            } else {
                HashMap::new()
            },
            ..Default::default()
        }))
    }

    async fn runtime_config(
        &self,
        _req: Request<RuntimeConfigRequest>,
    ) -> Reply<RuntimeConfigResponse> {
        // containerd reports the driver its runc options name (SystemdCgroup, false by
        // default): berth's shims are configured for cgroupfs.
        Ok(Response::new(RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }

    async fn update_runtime_config(
        &self,
        req: Request<UpdateRuntimeConfigRequest>,
    ) -> Reply<UpdateRuntimeConfigResponse> {
        let cidr = req
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if !cidr.is_empty() {
            if let Ok(mut c) = self.pod_cidr.lock() {
                if *c != cidr {
                    tracing::info!(pod_cidr = %cidr, "cri: pod CIDR set");
                }
                *c = cidr;
            }
        }
        Ok(Response::new(UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(
        &self,
        _req: Request<RunPodSandboxRequest>,
    ) -> Reply<RunPodSandboxResponse> {
        Err(not_built("RunPodSandbox"))
    }
    async fn stop_pod_sandbox(
        &self,
        _req: Request<StopPodSandboxRequest>,
    ) -> Reply<StopPodSandboxResponse> {
        Err(not_built("StopPodSandbox"))
    }
    async fn remove_pod_sandbox(
        &self,
        _req: Request<RemovePodSandboxRequest>,
    ) -> Reply<RemovePodSandboxResponse> {
        Err(not_built("RemovePodSandbox"))
    }
    async fn pod_sandbox_status(
        &self,
        _req: Request<PodSandboxStatusRequest>,
    ) -> Reply<PodSandboxStatusResponse> {
        Err(not_built("PodSandboxStatus"))
    }
    async fn list_pod_sandbox(
        &self,
        _req: Request<ListPodSandboxRequest>,
    ) -> Reply<ListPodSandboxResponse> {
        Err(not_built("ListPodSandbox"))
    }
    async fn create_container(
        &self,
        _req: Request<CreateContainerRequest>,
    ) -> Reply<CreateContainerResponse> {
        Err(not_built("CreateContainer"))
    }
    async fn start_container(
        &self,
        _req: Request<StartContainerRequest>,
    ) -> Reply<StartContainerResponse> {
        Err(not_built("StartContainer"))
    }
    async fn stop_container(
        &self,
        _req: Request<StopContainerRequest>,
    ) -> Reply<StopContainerResponse> {
        Err(not_built("StopContainer"))
    }
    async fn remove_container(
        &self,
        _req: Request<RemoveContainerRequest>,
    ) -> Reply<RemoveContainerResponse> {
        Err(not_built("RemoveContainer"))
    }
    async fn list_containers(
        &self,
        _req: Request<ListContainersRequest>,
    ) -> Reply<ListContainersResponse> {
        Err(not_built("ListContainers"))
    }
    async fn container_status(
        &self,
        _req: Request<ContainerStatusRequest>,
    ) -> Reply<ContainerStatusResponse> {
        Err(not_built("ContainerStatus"))
    }
    async fn update_container_resources(
        &self,
        _req: Request<UpdateContainerResourcesRequest>,
    ) -> Reply<UpdateContainerResourcesResponse> {
        Err(not_built("UpdateContainerResources"))
    }
    async fn reopen_container_log(
        &self,
        _req: Request<ReopenContainerLogRequest>,
    ) -> Reply<ReopenContainerLogResponse> {
        Err(not_built("ReopenContainerLog"))
    }
    async fn exec_sync(&self, _req: Request<ExecSyncRequest>) -> Reply<ExecSyncResponse> {
        Err(not_built("ExecSync"))
    }
    async fn exec(&self, _req: Request<ExecRequest>) -> Reply<ExecResponse> {
        Err(not_built("Exec"))
    }
    async fn attach(&self, _req: Request<AttachRequest>) -> Reply<AttachResponse> {
        Err(not_built("Attach"))
    }
    async fn port_forward(&self, _req: Request<PortForwardRequest>) -> Reply<PortForwardResponse> {
        Err(not_built("PortForward"))
    }
    async fn container_stats(
        &self,
        _req: Request<ContainerStatsRequest>,
    ) -> Reply<ContainerStatsResponse> {
        Err(not_built("ContainerStats"))
    }
    async fn list_container_stats(
        &self,
        _req: Request<ListContainerStatsRequest>,
    ) -> Reply<ListContainerStatsResponse> {
        Err(not_built("ListContainerStats"))
    }
    async fn pod_sandbox_stats(
        &self,
        _req: Request<PodSandboxStatsRequest>,
    ) -> Reply<PodSandboxStatsResponse> {
        Err(not_built("PodSandboxStats"))
    }
    async fn list_pod_sandbox_stats(
        &self,
        _req: Request<ListPodSandboxStatsRequest>,
    ) -> Reply<ListPodSandboxStatsResponse> {
        Err(not_built("ListPodSandboxStats"))
    }
    async fn checkpoint_container(
        &self,
        _req: Request<CheckpointContainerRequest>,
    ) -> Reply<CheckpointContainerResponse> {
        Err(not_built("CheckpointContainer"))
    }
    async fn get_container_events(
        &self,
        _req: Request<GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Err(not_built("GetContainerEvents"))
    }
    async fn list_metric_descriptors(
        &self,
        _req: Request<ListMetricDescriptorsRequest>,
    ) -> Reply<ListMetricDescriptorsResponse> {
        Err(not_built("ListMetricDescriptors"))
    }
    async fn list_pod_sandbox_metrics(
        &self,
        _req: Request<ListPodSandboxMetricsRequest>,
    ) -> Reply<ListPodSandboxMetricsResponse> {
        Err(not_built("ListPodSandboxMetrics"))
    }
}

//! The daemon's ttrpc socket, where shims send their events.
//!
//! A shim publishes what happens to its task (`/tasks/create`, `/tasks/start`, `/tasks/exit`,
//! `/tasks/exec-added`, `/tasks/oom`, …) by calling `Forward` of the ttrpc service
//! `containerd.services.events.ttrpc.v1.Events` at the address it was given in `TTRPC_ADDRESS`.
//! [`ShimEventsServer`] serves that service and hands each envelope, unchanged, to a [`Publisher`]
//! (in berthd, the event exchange that gRPC clients subscribe to).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use berth_core::containers::Any;
use berth_core::ErrorKind;
use containerd_shim_protos::api::{Empty, ForwardRequest};
use containerd_shim_protos::shim_async::{create_events, Events};
use ttrpc::asynchronous::{transport::Listener, Server, TtrpcContext};

use crate::error::{Result, RuntimeError};
use crate::types::{any_from_pb, time_from_pb, Event, Publisher};

/// The ttrpc server of the Events service; stops serving when shut down or dropped.
pub struct ShimEventsServer {
    server: Server,
    path: PathBuf,
}

impl std::fmt::Debug for ShimEventsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShimEventsServer")
            .field("path", &self.path)
            .finish()
    }
}

#[derive(Debug)]
struct Forwarder {
    publisher: Arc<dyn Publisher>,
}

fn status(kind: ErrorKind, msg: impl ToString) -> ttrpc::Error {
    let code = match kind {
        ErrorKind::InvalidArgument => ttrpc::Code::INVALID_ARGUMENT,
        ErrorKind::NotFound => ttrpc::Code::NOT_FOUND,
        ErrorKind::Unavailable => ttrpc::Code::UNAVAILABLE,
        _ => ttrpc::Code::INTERNAL,
    };
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg))
}

#[async_trait::async_trait]
impl Events for Forwarder {
    async fn forward(&self, _ctx: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        let env = req.envelope.into_option().ok_or_else(|| {
            status(
                ErrorKind::InvalidArgument,
                "envelope must not be empty: invalid argument",
            )
        })?;
        let event = any_from_pb(&env.event).unwrap_or_else(|| Any {
            type_url: String::new(),
            value: Vec::new(),
        });
        let ev = Event {
            namespace: env.namespace,
            topic: env.topic,
            timestamp: time_from_pb(&env.timestamp).unwrap_or_else(SystemTime::now),
            event,
        };
        tracing::debug!(namespace = %ev.namespace, topic = %ev.topic, "event from shim");
        self.publisher
            .publish(ev)
            .map_err(|e| status(e.kind(), e.message()))?;
        Ok(Empty::new())
    }
}

/// The ttrpc Events service (`containerd.services.events.ttrpc.v1.Events`), publishing what is
/// forwarded to it to `publisher`.
pub fn events_service(
    publisher: Arc<dyn Publisher>,
) -> std::collections::HashMap<String, ttrpc::asynchronous::Service> {
    create_events(Arc::new(Forwarder { publisher }))
}

impl ShimEventsServer {
    /// Serve the Events service on the unix socket `path` (mode 0660; a stale socket there is
    /// replaced), publishing what shims forward to `publisher`.
    pub async fn serve(path: &Path, publisher: Arc<dyn Publisher>) -> Result<ShimEventsServer> {
        Self::serve_services(path, events_service(publisher)).await
    }

    /// Serve `services` (ttrpc services by name) on the unix socket `path` (mode 0660; a stale
    /// socket there is replaced).
    pub async fn serve_services(
        path: &Path,
        services: std::collections::HashMap<String, ttrpc::asynchronous::Service>,
    ) -> Result<ShimEventsServer> {
        let err = |reason: String| RuntimeError::EventsSocket {
            path: path.display().to_string(),
            reason,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err(e.to_string()))?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => tracing::warn!(address = %path.display(), "removing stale ttrpc socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e.to_string())),
        }
        let listener = tokio::net::UnixListener::bind(path).map_err(|e| err(e.to_string()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                .map_err(|e| err(e.to_string()))?;
        }
        let mut server = Server::new()
            .add_listener(Listener::from(listener))
            .register_service(services);
        server.start().await.map_err(|e| err(e.to_string()))?;
        Ok(ShimEventsServer {
            server,
            path: path.to_path_buf(),
        })
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop serving and remove the socket.
    pub async fn shutdown(mut self) {
        let _ = self.server.shutdown().await;
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::Message;
    use containerd_shim_protos::shim_async::EventsClient;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Collect(Mutex<Vec<Event>>);

    impl Publisher for Collect {
        fn publish(&self, event: Event) -> berth_core::Result<()> {
            if event.topic.is_empty() {
                return Err(berth_core::Error::invalid_argument("topic"));
            }
            self.0.lock().unwrap().push(event);
            Ok(())
        }
    }

    #[tokio::test]
    async fn forwards_what_shims_send() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("berthd.sock.ttrpc");
        let collected = Arc::new(Collect::default());
        let server = ShimEventsServer::serve(&sock, collected.clone())
            .await
            .unwrap();
        let client = ttrpc::asynchronous::Client::connect(&format!("unix://{}", sock.display()))
            .await
            .unwrap();
        let client = EventsClient::new(client);
        let mut exit = containerd_shim_protos::events::task::TaskExit::new();
        exit.container_id = "c1".into();
        exit.exit_status = 7;
        let mut any = containerd_shim_protos::protobuf::well_known_types::any::Any::new();
        any.type_url = "containerd.events.TaskExit".into();
        any.value = exit.write_to_bytes().unwrap();
        let mut env = containerd_shim_protos::shim::event::Envelope::new();
        env.namespace = "ns".into();
        env.topic = "/tasks/exit".into();
        env.event = Some(any).into();
        let mut req = ForwardRequest::new();
        req.envelope = Some(env.clone()).into();
        client
            .forward(ttrpc::context::with_timeout(0), &req)
            .await
            .unwrap();
        let got = collected.0.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].namespace, "ns");
        assert_eq!(got[0].topic, "/tasks/exit");
        assert_eq!(got[0].event.type_url, "containerd.events.TaskExit");
        // The publisher's refusal reaches the shim as a status.
        env.topic.clear();
        req.envelope = Some(env).into();
        let err = client
            .forward(ttrpc::context::with_timeout(0), &req)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ttrpc::Error::RpcStatus(s) if s.code() == ttrpc::Code::INVALID_ARGUMENT)
        );
        server.shutdown().await;
        assert!(!sock.exists());
    }
}

//! The event exchange and containerd.services.events.v1.
//!
//! Services publish events (e.g. `/namespaces/create`, `/content/delete`) on the [`Exchange`];
//! clients subscribe with containerd filters over the envelope's `namespace` and `topic` (and
//! `event.*` fields are not inspected). Publish and Forward let other processes (shims, clients)
//! put events on the same exchange.

use std::pin::Pin;
use std::time::SystemTime;

use berth_api::events_service::events_server::Events;
use berth_api::services::v1::{ForwardRequest, PublishRequest, SubscribeRequest};
use berth_api::types::Envelope;
use berth_core::filters::{Adaptor, Filter};
use futures::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use crate::request::namespace;
use crate::status::{GrpcResult, IntoStatus};

/// In-process fan-out of event envelopes to every subscriber.
#[derive(Debug, Clone)]
pub struct Exchange {
    tx: broadcast::Sender<Envelope>,
}

impl Default for Exchange {
    fn default() -> Self {
        Exchange::new()
    }
}

struct EnvelopeFields<'a>(&'a Envelope);

impl Adaptor for EnvelopeFields<'_> {
    fn field(&self, fieldpath: &[String]) -> Option<String> {
        let v = match fieldpath.first().map(String::as_str)? {
            "namespace" => &self.0.namespace,
            "topic" => &self.0.topic,
            _ => return None,
        };
        (!v.is_empty()).then(|| v.clone())
    }
}

/// Check a topic as containerd does: it must start with `/` and have no empty components.
pub fn validate_topic(topic: &str) -> berth_core::Result<()> {
    if !topic.starts_with('/') || topic.len() < 2 || topic.split('/').skip(1).any(str::is_empty) {
        return Err(berth_core::Error::invalid_argument(format!(
            "topic {topic:?} must start with '/' and have non-empty components"
        )));
    }
    Ok(())
}

impl Exchange {
    /// A new exchange; slow subscribers that fall 4096 events behind lose the oldest ones.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Exchange { tx }
    }

    /// Publish a typed event in `ns` on `topic`.
    pub fn publish<M: prost::Message + prost::Name>(&self, ns: &str, topic: &str, event: &M) {
        self.forward(Envelope {
            timestamp: Some(SystemTime::now().into()),
            namespace: ns.to_string(),
            topic: topic.to_string(),
            event: Some(berth_api::to_any(event)),
        });
    }

    /// Put an already built envelope on the exchange.
    pub fn forward(&self, env: Envelope) {
        tracing::debug!(topic = %env.topic, namespace = %env.namespace, "event");
        // No subscriber is not an error.
        let _ = self.tx.send(env);
    }

    /// A stream of the envelopes matching `filter`, from now on.
    pub fn subscribe(&self, filter: Filter) -> impl Stream<Item = Envelope> + Send + 'static {
        BroadcastStream::new(self.tx.subscribe()).filter_map(move |r| match r {
            Ok(env) if filter.matches(&EnvelopeFields(&env)) => Some(env),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "event subscriber lagged");
                None
            }
        })
    }
}

/// The Events gRPC service over an [`Exchange`].
#[derive(Debug, Clone)]
pub struct EventsService {
    pub exchange: Exchange,
}

type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<Envelope, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Events for EventsService {
    async fn publish(&self, req: tonic::Request<PublishRequest>) -> GrpcResult<()> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        validate_topic(&req.topic).grpc()?;
        let event = req
            .event
            .ok_or_else(|| tonic::Status::invalid_argument("event must not be empty"))?;
        self.exchange.forward(Envelope {
            timestamp: Some(SystemTime::now().into()),
            namespace: ns,
            topic: req.topic,
            event: Some(event),
        });
        Ok(tonic::Response::new(()))
    }

    async fn forward(&self, req: tonic::Request<ForwardRequest>) -> GrpcResult<()> {
        let env = req
            .into_inner()
            .envelope
            .ok_or_else(|| tonic::Status::invalid_argument("envelope must not be empty"))?;
        validate_topic(&env.topic).grpc()?;
        berth_core::identifiers::validate(&env.namespace).grpc()?;
        self.exchange.forward(env);
        Ok(tonic::Response::new(()))
    }

    type SubscribeStream = EnvelopeStream;

    async fn subscribe(
        &self,
        req: tonic::Request<SubscribeRequest>,
    ) -> GrpcResult<Self::SubscribeStream> {
        let filter = Filter::parse_all(&req.into_inner().filters).grpc()?;
        let stream = self.exchange.subscribe(filter).map(Ok);
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::events::NamespaceCreate;

    #[tokio::test]
    async fn subscribers_see_matching_events_only() {
        let ex = Exchange::new();
        let mut sub = Box::pin(ex.subscribe(Filter::parse("topic~=/namespaces/").unwrap()));
        ex.publish(
            "a",
            "/content/delete",
            &berth_api::events::ContentDelete { digest: "x".into() },
        );
        ex.publish(
            "a",
            "/namespaces/create",
            &NamespaceCreate {
                name: "n".into(),
                labels: Default::default(),
            },
        );
        let env = sub.next().await.unwrap();
        assert_eq!(env.topic, "/namespaces/create");
        assert_eq!(
            env.event.unwrap().type_url,
            "containerd.events.NamespaceCreate"
        );
    }

    #[test]
    fn topics_are_validated() {
        validate_topic("/tasks/exit").unwrap();
        for bad in ["", "/", "tasks", "/a//b", "/a/"] {
            assert!(validate_topic(bad).is_err(), "{bad:?}");
        }
    }
}

//! The event exchange and containerd.services.events.v1.
//!
//! Services publish events (e.g. `/namespaces/create`, `/content/delete`) on the [`Exchange`];
//! clients subscribe with containerd filters over the envelope's `namespace` and `topic` (and
//! `event.*` fields are not inspected). Publish and Forward let other processes (shims, clients)
//! put events on the same exchange.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::SystemTime;

use berth_api::events_service::events_server::Events;
use berth_api::services::v1::{ForwardRequest, PublishRequest, SubscribeRequest};
use berth_api::types::Envelope;
use berth_core::filters::{Adaptor, Filter};
use futures::Stream;
use prost::Message;
use tokio::sync::Notify;
use tokio_stream::StreamExt;

use crate::request::namespace;
use crate::status::{GrpcResult, IntoStatus};

/// The most bytes of envelopes waiting for one subscriber before it is dropped (16 MiB).
pub const DEFAULT_SUBSCRIBER_BUFFER: usize = 16 << 20;

/// What one queued envelope costs beyond its encoded bytes (queue slot, shared pointer).
const ENVELOPE_OVERHEAD: usize = 64;

/// In-process fan-out of event envelopes to every subscriber.
///
/// Each *subscriber* has its own queue of the envelopes that match its filter, bounded in bytes:
/// a subscriber that falls further behind than the bound (a client that stopped reading) is
/// dropped, its queue freed, and its stream ends with [`SubscriberDropped`], instead of the
/// daemon growing. An envelope is shared by every queue it is in, not copied.
#[derive(Clone)]
pub struct Exchange {
    inner: Arc<Inner>,
}

struct Inner {
    subscribers: Mutex<Vec<Weak<Queue>>>,
    bound: usize,
}

/// One subscriber's queue; freed as soon as its stream is dropped.
struct Queue {
    filter: Filter,
    state: Mutex<QueueState>,
    notify: Notify,
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<(Arc<Envelope>, usize)>,
    bytes: usize,
    dropped: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The end of a subscription whose subscriber fell too far behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberDropped {
    /// The exchange's per-subscriber bound, in bytes.
    pub bound: usize,
}

impl std::fmt::Display for SubscriberDropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "event subscriber dropped: more than {} bytes of events waiting for it",
            self.bound
        )
    }
}

impl std::error::Error for SubscriberDropped {}

impl From<SubscriberDropped> for tonic::Status {
    fn from(e: SubscriberDropped) -> Self {
        tonic::Status::resource_exhausted(e.to_string())
    }
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("subscribers", &self.subscribers())
            .field("bound", &self.inner.bound)
            .finish()
    }
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

impl Queue {
    /// Queues `env` if it matches; `false` once this subscriber is dropped. An envelope larger
    /// than the bound still reaches a subscriber with nothing waiting.
    fn offer(&self, env: &Arc<Envelope>, size: usize, bound: usize) -> bool {
        if !self.filter.matches(&EnvelopeFields(env)) {
            return true;
        }
        let mut st = lock(&self.state);
        if st.dropped {
            return false;
        }
        if !st.items.is_empty() && st.bytes + size > bound {
            tracing::warn!(
                waiting = st.bytes,
                bound,
                "event subscriber fell behind: dropped"
            );
            *st = QueueState {
                dropped: true,
                ..QueueState::default()
            };
            drop(st);
            self.notify.notify_one();
            return false;
        }
        st.items.push_back((Arc::clone(env), size));
        st.bytes += size;
        drop(st);
        self.notify.notify_one();
        true
    }
}

impl Exchange {
    /// A new exchange holding at most [`DEFAULT_SUBSCRIBER_BUFFER`] bytes per subscriber.
    pub fn new() -> Self {
        Exchange::with_subscriber_buffer(DEFAULT_SUBSCRIBER_BUFFER)
    }

    /// A new exchange holding at most `bound` bytes of waiting envelopes per subscriber (plus
    /// one envelope, so an envelope larger than the bound still reaches a subscriber that
    /// keeps up).
    pub fn with_subscriber_buffer(bound: usize) -> Self {
        Exchange {
            inner: Arc::new(Inner {
                subscribers: Mutex::new(Vec::new()),
                bound,
            }),
        }
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
        let size = env.encoded_len() + ENVELOPE_OVERHEAD;
        let env = Arc::new(env);
        let bound = self.inner.bound;
        // Subscribers whose stream is gone, or that fell behind, leave the list here.
        lock(&self.inner.subscribers).retain(|w| match w.upgrade() {
            Some(q) => q.offer(&env, size, bound),
            None => false,
        });
    }

    /// Live subscribers (dropped ones are counted until the next event).
    pub fn subscribers(&self) -> usize {
        lock(&self.inner.subscribers)
            .iter()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// Bytes of envelopes waiting in all subscribers' queues (an envelope counted once per
    /// queue).
    pub fn buffered_bytes(&self) -> usize {
        lock(&self.inner.subscribers)
            .iter()
            .filter_map(Weak::upgrade)
            .map(|q| lock(&q.state).bytes)
            .sum()
    }

    /// A stream of the envelopes matching `filter`, from now on; it ends with
    /// [`SubscriberDropped`] if its reader falls more than the bound behind.
    pub fn subscription(
        &self,
        filter: Filter,
    ) -> impl Stream<Item = Result<Envelope, SubscriberDropped>> + Send + 'static {
        let queue = Arc::new(Queue {
            filter,
            state: Mutex::new(QueueState::default()),
            notify: Notify::new(),
        });
        lock(&self.inner.subscribers).push(Arc::downgrade(&queue));
        let bound = self.inner.bound;
        futures::stream::unfold(Some(queue), move |queue| async move {
            let queue = queue?;
            loop {
                {
                    let mut st = lock(&queue.state);
                    if let Some((env, size)) = st.items.pop_front() {
                        st.bytes -= size;
                        drop(st);
                        return Some((Ok(Arc::unwrap_or_clone(env)), Some(queue)));
                    }
                    if st.dropped {
                        return Some((Err(SubscriberDropped { bound }), None));
                    }
                }
                queue.notify.notified().await;
            }
        })
    }

    /// Like [`Exchange::subscription`], for in-process readers: the stream simply ends if the
    /// reader falls behind.
    pub fn subscribe(&self, filter: Filter) -> impl Stream<Item = Envelope> + Send + 'static {
        self.subscription(filter).map_while(Result::ok)
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
        let stream = self
            .exchange
            .subscription(filter)
            .map(|r| r.map_err(tonic::Status::from));
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

    fn big_event(i: usize) -> Envelope {
        Envelope {
            timestamp: None,
            namespace: "default".into(),
            topic: "/test/big".into(),
            event: Some(prost_types::Any {
                type_url: format!("big.{i}"),
                value: vec![7; 1 << 20],
            }),
        }
    }

    #[tokio::test]
    async fn a_stalled_subscriber_is_dropped_at_the_byte_bound() {
        let bound = 8 << 20;
        let ex = Exchange::with_subscriber_buffer(bound);
        let stalled = ex.subscription(Filter::always());
        let mut reader = Box::pin(ex.subscription(Filter::always()));
        for i in 0..64 {
            ex.forward(big_event(i));
            // The reader keeps up; the stalled one never polls.
            let env = reader.next().await.unwrap().unwrap();
            assert_eq!(env.event.unwrap().type_url, format!("big.{i}"));
            assert!(
                ex.buffered_bytes() <= bound + (2 << 20),
                "{} bytes buffered after {i} events",
                ex.buffered_bytes()
            );
        }
        assert_eq!(ex.subscribers(), 1, "the stalled subscriber was dropped");
        assert_eq!(ex.buffered_bytes(), 0, "its events were freed");
        let mut stalled = Box::pin(stalled);
        let err = stalled.next().await.unwrap().unwrap_err();
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("8388608"), "{}", status.message());
        assert!(
            stalled.next().await.is_none(),
            "the stream ends after the error"
        );
        // The reader goes on; once it goes too, nothing is held.
        ex.forward(big_event(64));
        assert!(reader.next().await.unwrap().is_ok());
        drop(reader);
        ex.forward(big_event(65));
        assert_eq!(ex.subscribers(), 0);
        assert_eq!(ex.buffered_bytes(), 0);
    }

    #[tokio::test]
    async fn one_event_over_the_bound_reaches_a_subscriber_that_keeps_up() {
        let ex = Exchange::with_subscriber_buffer(1 << 10);
        let mut sub = Box::pin(ex.subscribe(Filter::always()));
        ex.forward(big_event(0));
        assert_eq!(
            sub.next().await.unwrap().event.unwrap().value.len(),
            1 << 20
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

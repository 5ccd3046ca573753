//! Events over containerd's Events service.

use std::time::SystemTime;

use berth_core::containers::Any;
use berth_core::Result;
use containerd_client::services::v1::{events_client::EventsClient, SubscribeRequest};
use containerd_client::types::Envelope as PbEnvelope;
use tonic::transport::Channel;

use crate::containers::any_from_pb;
use crate::{status_to_error, to_time};

/// One event: what happened (`topic`, e.g. `/tasks/exit`), in which namespace, when, and the
/// event message as an `Any` (`containerd.events.TaskExit`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub timestamp: SystemTime,
    pub namespace: String,
    pub topic: String,
    pub event: Option<Any>,
}

fn envelope_from_pb(e: PbEnvelope) -> Envelope {
    Envelope {
        timestamp: to_time(e.timestamp),
        namespace: e.namespace,
        topic: e.topic,
        event: e.event.map(any_from_pb),
    }
}

/// The Events service of berthd or containerd.
#[derive(Debug, Clone)]
pub struct RemoteEvents {
    channel: Channel,
}

/// The events of a subscription, as they happen.
#[derive(Debug)]
pub struct EventStream {
    inner: tonic::Streaming<PbEnvelope>,
}

impl EventStream {
    /// The next event; `None` when the server ends the stream.
    pub async fn next(&mut self) -> Result<Option<Envelope>> {
        Ok(self
            .inner
            .message()
            .await
            .map_err(status_to_error)?
            .map(envelope_from_pb))
    }
}

impl RemoteEvents {
    /// An events client speaking over `channel` (see [`crate::connect`]).
    pub fn new(channel: Channel) -> Self {
        RemoteEvents { channel }
    }

    /// Subscribe to the events of every namespace matching any of `filters` (containerd's
    /// syntax over `topic`, `namespace` and `event.*`, e.g. `topic~=/tasks/`; empty: all). This
    /// returns when the server answers: berthd answers at once, with the subscription in place;
    /// containerd only with the first event.
    pub async fn subscribe(&self, filters: &[String]) -> Result<EventStream> {
        let req = SubscribeRequest {
            filters: filters.to_vec(),
        };
        let inner = EventsClient::new(self.channel.clone())
            .max_decoding_message_size(crate::MAX_MESSAGE_SIZE)
            .subscribe(tonic::Request::new(req))
            .await
            .map_err(status_to_error)?
            .into_inner();
        Ok(EventStream { inner })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_convert() {
        let e = envelope_from_pb(PbEnvelope {
            timestamp: Some(prost_types::Timestamp {
                seconds: 5,
                nanos: 0,
            }),
            namespace: "default".into(),
            topic: "/tasks/oom".into(),
            event: Some(prost_types::Any {
                type_url: "containerd.events.TaskOOM".into(),
                value: vec![10, 2, b'c', b'1'],
            }),
        });
        assert_eq!(e.topic, "/tasks/oom");
        assert_eq!(e.event.unwrap().type_url, "containerd.events.TaskOOM");
        assert_eq!(
            e.timestamp,
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(5)
        );
    }
}

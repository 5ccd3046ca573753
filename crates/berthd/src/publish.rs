//! `berthd publish`: forward one event to a running berthd, as containerd's `containerd publish`.
//!
//! A shim that cannot reach the daemon's ttrpc socket (or an older one that was only given
//! `-publish-binary`) runs `berthd --address SOCK publish --topic T --namespace NS` with the
//! event, a protobuf `Any`, on stdin; this sends it through the Events service's `Forward`.

use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;
use berth_api::services::v1::events_client::EventsClient;
use berth_api::services::v1::ForwardRequest;
use berth_api::types::Envelope;
use prost::Message;

pub async fn publish(address: &Path, topic: &str, namespace: &str) -> anyhow::Result<()> {
    if topic.is_empty() {
        anyhow::bail!("topic required to publish event: invalid argument");
    }
    let mut data = Vec::new();
    std::io::stdin()
        .read_to_end(&mut data)
        .context("read event from stdin")?;
    let event = berth_api::prost_types::Any::decode(data.as_slice())
        .context("decode event (a protobuf Any) from stdin")?;
    let channel = berth_client::connect(address).await?;
    EventsClient::new(channel)
        .forward(ForwardRequest {
            envelope: Some(Envelope {
                timestamp: Some(SystemTime::now().into()),
                namespace: namespace.to_string(),
                topic: topic.to_string(),
                event: Some(event),
            }),
        })
        .await
        .map_err(|s| anyhow::anyhow!("forward event: {}", s.message()))?;
    Ok(())
}

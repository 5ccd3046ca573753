//! [`LocalStores`]: berth-ops' [`Stores`] in-process, for berthd's own workflows (the CRI
//! server, the Transfer service): the metadata store's content, leases, images, containers and
//! snapshotters, berth-diff's layer applier, and [`LocalTasks`]. No gRPC on the way.

use std::pin::Pin;
use std::sync::Arc;

use berth_api::types::Envelope;
use berth_core::filters::Filter;
use berth_core::snapshots::Snapshotter;
use berth_diff::WalkingDiff;
use berth_images::SnapshotterProvider;
use berth_metadata::Metadata;
use berth_ops::containers::OomEvents;
use berth_ops::Stores;
use tokio_stream::{Stream, StreamExt};

use crate::diff::DiffService;
use crate::events::Exchange;
use crate::tasks::LocalTasks;

/// The metadata store's snapshotters, bound to a namespace and a lease on request.
#[derive(Debug, Clone)]
pub struct LocalSnapshotters {
    meta: Metadata,
}

impl SnapshotterProvider for LocalSnapshotters {
    fn snapshotter(
        &self,
        ns: &str,
        name: &str,
        lease: Option<&str>,
    ) -> berth_core::Result<Arc<dyn Snapshotter>> {
        Ok(Arc::new(self.meta.snapshotter(ns, name, lease)?))
    }
}

/// The stores of berthd, in-process. Cloning is cheap (handles).
#[derive(Debug, Clone)]
pub struct LocalStores {
    meta: Metadata,
    snapshotters: LocalSnapshotters,
    applier: WalkingDiff<Metadata>,
    tasks: LocalTasks,
}

impl LocalStores {
    /// The stores over `meta` whose tasks are run by `tasks`.
    pub fn new(meta: Metadata, tasks: LocalTasks) -> Self {
        LocalStores {
            snapshotters: LocalSnapshotters { meta: meta.clone() },
            applier: DiffService { meta: meta.clone() }.walking(),
            meta,
            tasks,
        }
    }
}

impl Stores for LocalStores {
    type Content = Metadata;
    type Leases = Metadata;
    type Images = Metadata;
    type Containers = Metadata;
    type Snapshotters = LocalSnapshotters;
    type Applier = WalkingDiff<Metadata>;
    type Tasks = LocalTasks;

    fn content(&self) -> &Metadata {
        &self.meta
    }
    fn leases(&self) -> &Metadata {
        &self.meta
    }
    fn images(&self) -> &Metadata {
        &self.meta
    }
    fn containers(&self) -> &Metadata {
        &self.meta
    }
    fn snapshotters(&self) -> &LocalSnapshotters {
        &self.snapshotters
    }
    fn applier(&self) -> &WalkingDiff<Metadata> {
        &self.applier
    }
    fn tasks(&self) -> &LocalTasks {
        &self.tasks
    }
}

/// The `/tasks/oom` events of one namespace on the daemon's exchange, for berth-ops' OOM watch
/// (the CLI's comes from the Events service).
pub struct ExchangeOom(Pin<Box<dyn Stream<Item = Envelope> + Send>>);

impl std::fmt::Debug for ExchangeOom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExchangeOom")
    }
}

impl ExchangeOom {
    /// Subscribe to the OOM events of namespace `ns`.
    pub fn subscribe(exchange: &Exchange, ns: &str) -> berth_core::Result<ExchangeOom> {
        let filter = Filter::parse(&format!("topic==\"/tasks/oom\",namespace=={ns}"))?;
        Ok(ExchangeOom(Box::pin(exchange.subscribe(filter))))
    }
}

impl OomEvents for ExchangeOom {
    async fn next_oom(&mut self) -> Option<String> {
        loop {
            let env = self.0.next().await?;
            let Some(event) = env.event else { continue };
            if let Ok(oom) =
                <berth_api::events::TaskOom as prost::Message>::decode(event.value.as_slice())
            {
                return Some(oom.container_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_ops::containers::OomWatch;
    use std::time::Duration;

    #[tokio::test]
    async fn the_oom_watch_sees_the_exchanges_oom_events() {
        let ex = Exchange::new();
        let sub = ExchangeOom::subscribe(&ex, "default").unwrap();
        let watch = OomWatch::start("c1", move || async move { Some(sub) });
        let oom = |id: &str| berth_api::events::TaskOom {
            container_id: id.to_string(),
        };
        ex.publish("other", "/tasks/oom", &oom("c1"));
        ex.publish("default", "/tasks/oom", &oom("c2"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!watch.seen(), "another namespace's or container's event");
        ex.publish("default", "/tasks/oom", &oom("c1"));
        let mut seen = false;
        for _ in 0..100 {
            if watch.seen() {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(seen);
    }
}

//! The snapshotter conformance suite through berthd's Snapshots service (berth-client's
//! `RemoteSnapshotter`), for each snapshotter berthd serves: the namespaced metadata layer and
//! the gRPC edge must keep every behaviour the backends have. Each case gets a fresh berthd and
//! works under a lease, as containerd's clients do.

use std::collections::BTreeMap;

use berth_client::{RemoteLeases, RemoteSnapshotter};
use berth_core::leases::LeaseManager;
use berth_integration_tests::{enabled, Berthd};

async fn remote(case: &str, snapshotter: &str) -> Option<(RemoteSnapshotter, Berthd)> {
    if !enabled(case) {
        return None;
    }
    let daemon = Berthd::start();
    let channel = daemon.channel().await;
    // As every containerd client does, work under a lease: berthd's collector (run after each
    // removal) would otherwise collect snapshots that nothing references.
    let lease = LeaseManager::create(
        &RemoteLeases::new(channel.clone()),
        "conformance",
        "conformance-suite",
        BTreeMap::new(),
    )
    .await
    .expect("create lease");
    Some((
        RemoteSnapshotter::new(channel, "conformance", snapshotter).with_lease(Some(&lease.id)),
        daemon,
    ))
}

mod overlayfs {
    async fn setup(case: &str) -> Option<(berth_client::RemoteSnapshotter, super::Berthd)> {
        super::remote(case, "overlayfs").await
    }
    berth_conformance::snapshotter_suite!(optional setup);
}

mod native {
    async fn setup(case: &str) -> Option<(berth_client::RemoteSnapshotter, super::Berthd)> {
        super::remote(case, "native").await
    }
    berth_conformance::snapshotter_suite!(optional setup);
}

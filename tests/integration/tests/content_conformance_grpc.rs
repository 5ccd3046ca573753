//! The content-store conformance suite, run through berthd's gRPC Content service with
//! berth-client's `RemoteContentStore`: the same cases the in-process store passes must pass over
//! the wire. Each case gets a fresh berthd.

use berth_client::RemoteContentStore;
use berth_integration_tests::{enabled, Berthd};

async fn setup(case: &str) -> Option<(RemoteContentStore, Berthd)> {
    if !enabled(case) {
        return None;
    }
    let daemon = Berthd::start();
    let channel = daemon.channel().await;
    Some((RemoteContentStore::new(channel), daemon))
}

berth_conformance::content_store_suite!(optional setup);

//! The content-store conformance suite, run through berthd's gRPC Content service with
//! berth-client's `RemoteContentStore`: the same cases the in-process store passes must pass over
//! the wire. Each case gets a fresh berthd.

use std::time::{Duration, Instant};

use berth_client::RemoteContentStore;
use berth_integration_tests::{enabled, Berthd};

async fn setup(case: &str) -> Option<(RemoteContentStore, Berthd)> {
    if !enabled(case) {
        return None;
    }
    let daemon = Berthd::start();
    let deadline = Instant::now() + Duration::from_secs(10);
    let channel = loop {
        match berth_client::connect(daemon.address()).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("connect to berthd: {e}"),
        }
    };
    Some((RemoteContentStore::new(channel), daemon))
}

berth_conformance::content_store_suite!(optional setup);

//! `remove` deletes the container's own directory, derived from the namespace and the id,
//! never a path named by a label (any API client can set labels, and berth runs as root).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns panic on purpose

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_content::LocalStore;
use berth_core::containers::{Any, Container, ContainerStore};
use berth_metadata::Metadata;
use berth_ops::containers::{container_dir, remove};
use berth_runtime::{RuntimeConfig, TaskManager};
use berth_services::{Exchange, LocalStores, LocalTasks};

#[tokio::test]
async fn remove_leaves_a_directory_named_by_a_label_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = Metadata::open(
        tmp.path().join("meta.redb"),
        LocalStore::open(tmp.path().join("content")).unwrap(),
    )
    .unwrap();
    let runtime = TaskManager::new(
        RuntimeConfig {
            state: tmp.path().join("run"),
            root: tmp.path().join("root"),
            grpc_address: tmp.path().join("berthd.sock"),
            ttrpc_address: tmp.path().join("berthd.sock.ttrpc"),
            publish_binary: "/bin/false".into(),
            shim_dirs: Vec::new(),
        },
        Arc::new(Exchange::new()),
    );
    let stores = LocalStores::new(meta.clone(), LocalTasks::new(meta.clone(), runtime));

    // A directory outside the state directory, named by the record's labels.
    let victim = tmp.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious"), b"keep me").unwrap();
    let state_dir = tmp.path().join("state");
    let own = container_dir(&state_dir, "default", "c1").unwrap();
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(own.join("log"), b"").unwrap();

    let mut c = Container::new("c1");
    c.labels = BTreeMap::from([
        ("berth/dir".to_string(), victim.display().to_string()),
        (
            "berth/log".to_string(),
            victim.join("precious").display().to_string(),
        ),
    ]);
    c.runtime.name = "io.containerd.runc.v2".into();
    c.spec = Some(Any {
        type_url: berth_oci::SPEC_TYPE_URL.into(),
        value: b"{}".to_vec(),
    });
    let record = ContainerStore::create(&meta, "default", c).await.unwrap();

    remove(&stores, "default", &record, false, &state_dir)
        .await
        .unwrap();

    assert_eq!(
        std::fs::read(victim.join("precious")).unwrap(),
        b"keep me",
        "the directory a label names is left alone"
    );
    assert!(!own.exists(), "the container's own directory is removed");
    assert!(ContainerStore::get(&meta, "default", "c1").await.is_err());
}

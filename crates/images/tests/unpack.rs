//! Unpacking into an in-memory snapshotter: chains committed under chain IDs, the config label,
//! the lease, idempotence, concurrency and failure cleanup.

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

mod fakes;

use std::sync::Arc;
use std::time::Duration;

use berth_core::labels::GC_EXPIRE;
use berth_core::{Descriptor, Digest, ErrorKind};
use berth_images::{
    chain_ids, gc_snapshot_label, snapshotter_fn, SnapshotterFn, UnpackOptions, Unpacker,
};
use fakes::*;

const NS: &str = "default";

type Provider = SnapshotterFn<
    Box<dyn Fn(&str, &str, Option<&str>) -> berth_core::Result<FakeSnapshotter> + Send + Sync>,
>;

struct World {
    content: FakeContent,
    leases: FakeLeases,
    snaps: FakeSnapshots,
    applier: FakeApplier,
}

impl World {
    fn new() -> World {
        let content = FakeContent::default();
        World {
            applier: FakeApplier::new(&content),
            content,
            leases: FakeLeases::default(),
            snaps: FakeSnapshots::default(),
        }
    }

    fn unpacker(&self) -> Unpacker<FakeContent, FakeLeases, Provider, FakeApplier> {
        let snaps = self.snaps.clone();
        let provider: Provider = snapshotter_fn(Box::new(
            move |_ns: &str, name: &str, lease: Option<&str>| {
                assert_eq!(name, "fake");
                Ok(snaps.handle(lease))
            },
        ));
        Unpacker::new(
            self.content.clone(),
            self.leases.clone(),
            provider,
            self.applier.clone(),
        )
    }

    /// An amd64/arm64 index whose amd64 manifest has `layers`.
    fn image(&self, layers: &[&[u8]]) -> Descriptor {
        let amd = manifest(&self.content, "linux", "amd64", layers, None);
        let arm = manifest(&self.content, "linux", "arm64", &[b"arm-only"], None);
        index(
            &self.content,
            &[
                (&arm, Some(("linux", "arm64"))),
                (&amd, Some(("linux", "amd64"))),
            ],
        )
    }
}

fn opts() -> UnpackOptions {
    let mut o = UnpackOptions::new("fake");
    o.platform = "linux/amd64".parse().unwrap();
    o
}

fn chains(layers: &[&[u8]]) -> Vec<String> {
    let diff_ids: Vec<_> = layers.iter().map(|l| fake_diff_id(l)).collect();
    chain_ids(&diff_ids)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[tokio::test]
async fn unpack_commits_the_chain_and_labels_the_config() {
    let w = World::new();
    let layers: &[&[u8]] = &[b"base", b"middle", b"top"];
    let target = w.image(layers);
    let u = w.unpacker();
    assert!(!u
        .is_unpacked(NS, &target, "fake", &opts().platform)
        .await
        .unwrap());

    let done = u.unpack(NS, &target, &opts()).await.unwrap();
    assert_eq!(done.applied(), 3);
    let c = chains(layers);
    assert_eq!(
        done.chain_id.as_ref().map(ToString::to_string),
        Some(c[2].clone())
    );

    // Each chain ID committed on the previous one; no extract snapshot left behind.
    let committed = w.snaps.committed();
    assert_eq!(committed.len(), 3);
    assert_eq!(committed[&c[0]], None);
    assert_eq!(committed[&c[1]], Some(c[0].clone()));
    assert_eq!(committed[&c[2]], Some(c[1].clone()));
    assert_eq!(w.snaps.keys().len(), 3, "{:?}", w.snaps.keys());

    // The applier saw each layer once, on an extract key naming the chain ID.
    let calls = w.applier.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3);
    for (call, chain) in calls.iter().zip(&c) {
        assert!(call.1.starts_with("/fake/extract-"), "{}", call.1);
        assert!(call.1.ends_with(chain.as_str()), "{}", call.1);
    }

    // The config names the top snapshot; the lease expired-labelled, held the chain, and is gone.
    let labels = w.content.labels(&done.config.digest);
    assert_eq!(labels[&gc_snapshot_label("fake")], c[2]);
    let created = w.leases.created.lock().unwrap().clone();
    assert_eq!(created.len(), 1);
    assert!(created[0].1.contains_key(GC_EXPIRE));
    assert!(w.leases.leases.lock().unwrap().is_empty());
    for chain in &c {
        let snap = &w.snaps.snaps.lock().unwrap()[chain];
        assert_eq!(snap.lease.as_deref(), Some(created[0].0.as_str()));
    }

    assert!(u
        .is_unpacked(NS, &target, "fake", &opts().platform)
        .await
        .unwrap());
    let arm = "linux/arm64".parse().unwrap();
    assert!(!u.is_unpacked(NS, &target, "fake", &arm).await.unwrap());
}

#[tokio::test]
async fn a_second_unpack_does_nothing() {
    let w = World::new();
    let target = w.image(&[b"a", b"b"]);
    let u = w.unpacker();
    u.unpack(NS, &target, &opts()).await.unwrap();
    let again = u.unpack(NS, &target, &opts()).await.unwrap();
    assert_eq!(again.applied(), 0);
    assert_eq!(again.layers.len(), 2);
    assert_eq!(w.applier.calls(), 2);
    assert_eq!(w.snaps.commits.lock().unwrap().len(), 2);
    assert_eq!(
        w.leases.created.lock().unwrap().len(),
        1,
        "no lease the second time"
    );
}

#[tokio::test]
async fn layers_shared_with_another_image_are_skipped() {
    let w = World::new();
    let first = w.image(&[b"shared", b"one"]);
    let second = w.image(&[b"shared", b"two"]);
    let u = w.unpacker();
    u.unpack(NS, &first, &opts()).await.unwrap();
    let done = u.unpack(NS, &second, &opts()).await.unwrap();
    let applied: Vec<bool> = done.layers.iter().map(|l| l.applied).collect();
    assert_eq!(applied, [false, true]);
    let c = chains(&[b"shared", b"two"]);
    assert_eq!(w.snaps.committed()[&c[1]], Some(c[0].clone()));
}

#[tokio::test]
async fn a_lost_config_label_is_restored_without_applying() {
    let w = World::new();
    let target = w.image(&[b"a"]);
    let u = w.unpacker();
    let done = u.unpack(NS, &target, &opts()).await.unwrap();
    let label = gc_snapshot_label("fake");
    w.content
        .blobs
        .lock()
        .unwrap()
        .get_mut(&done.config.digest)
        .unwrap()
        .1
        .remove(&label);
    let again = u.unpack(NS, &target, &opts()).await.unwrap();
    assert_eq!(again.applied(), 0);
    assert_eq!(w.applier.calls(), 1);
    assert!(w.content.labels(&done.config.digest).contains_key(&label));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unpacks_both_succeed_and_each_layer_is_committed_once() {
    let mut w = World::new();
    w.applier.delay = Duration::from_millis(10);
    let layers: &[&[u8]] = &[b"l0", b"l1", b"l2"];
    let target = w.image(layers);
    // Both unpacks must be applying the bottom layer at once: one of their commits then finds
    // the other's, which is the race this test is about.
    let l0 = Digest::sha256_of(b"l0");
    w.applier.race_on = Some((l0.clone(), Arc::new(tokio::sync::Barrier::new(2))));
    let (a, b) = (w.unpacker(), w.unpacker());
    let (ta, tb) = (target.clone(), target.clone());
    let ja = tokio::spawn(async move { a.unpack(NS, &ta, &opts()).await });
    let jb = tokio::spawn(async move { b.unpack(NS, &tb, &opts()).await });
    let (ra, rb) = (ja.await.unwrap().unwrap(), jb.await.unwrap().unwrap());

    // Every layer was committed by exactly one of them.
    for i in 0..layers.len() {
        let n = [&ra, &rb].iter().filter(|r| r.layers[i].applied).count();
        assert!(n <= 1, "layer {i} committed twice");
    }
    let c = chains(layers);
    assert_eq!(w.snaps.committed().keys().cloned().collect::<Vec<_>>(), {
        let mut s = c.clone();
        s.sort();
        s
    });
    assert_eq!(
        *w.snaps.commits.lock().unwrap(),
        c,
        "one commit per layer, in order"
    );
    assert_eq!(w.snaps.keys().len(), 3, "losers' extract snapshots removed");
    assert!(w.leases.leases.lock().unwrap().is_empty());
    assert_eq!(ra.chain_id, rb.chain_id);
    let l0_applies = w
        .applier
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.0 == l0)
        .count();
    assert_eq!(l0_applies, 2);
    assert!(
        ra.layers[0].applied != rb.layers[0].applied,
        "exactly one won layer 0"
    );
}

#[tokio::test]
async fn a_wrong_diff_id_fails_and_leaves_nothing_behind() {
    let w = World::new();
    let bad = vec![
        fake_diff_id(b"good"),
        fake_diff_id(b"not what the layer gives"),
    ];
    let target = manifest(
        &w.content,
        "linux",
        "amd64",
        &[b"good", b"bad"],
        Some(bad.clone()),
    );
    let u = w.unpacker();
    let e = u.unpack(NS, &target, &opts()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FailedPrecondition, "{e}");
    assert!(
        e.to_string()
            .starts_with("wrong diff id calculated on extraction"),
        "{e}"
    );
    // The good layer stays committed (another image may use it); the extract is gone, as is the
    // lease; the config is not labelled.
    assert_eq!(w.snaps.keys(), vec![bad[0].to_string()]);
    assert!(w.leases.leases.lock().unwrap().is_empty());
    let config = config_of(&w.content, &target);
    assert!(w.content.labels(&config).is_empty());

    let err: berth_core::Error = e.into();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
}

#[tokio::test]
async fn a_callers_lease_is_used_and_kept() {
    let w = World::new();
    let target = w.image(&[b"a"]);
    use berth_core::leases::LeaseManager;
    w.leases
        .create(NS, "mine", Default::default())
        .await
        .unwrap();
    let mut o = opts();
    o.lease = Some("mine".into());
    w.unpacker().unpack(NS, &target, &o).await.unwrap();
    let leases = w.leases.leases.lock().unwrap();
    assert_eq!(leases.len(), 1);
    let resources = &leases["mine"].1;
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0].kind, "snapshots/fake");
    assert_eq!(resources[0].id, chains(&[b"a"])[0]);
}

#[tokio::test]
async fn an_image_without_layers_is_trivially_unpacked() {
    let w = World::new();
    let target = manifest(&w.content, "linux", "amd64", &[], None);
    let u = w.unpacker();
    assert!(u
        .is_unpacked(NS, &target, "fake", &opts().platform)
        .await
        .unwrap());
    let done = u.unpack(NS, &target, &opts()).await.unwrap();
    assert_eq!(done.chain_id, None);
    assert!(w.snaps.keys().is_empty());
}

//! Namespaces, leases and garbage collection of the metadata layer.

// Test helpers outside #[test] functions: a panic is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use berth_content::LocalStore;
use berth_core::content::{ContentStore, ContentWriter, WriterOptions};
use berth_core::leases::{LeaseManager, Resource};
use berth_core::namespaces::NamespaceStore;
use berth_core::{Digest, ErrorKind};
use berth_metadata::Metadata;
use tempfile::TempDir;

fn open(dir: &TempDir) -> Metadata {
    let blobs = LocalStore::open(dir.path().join("content")).unwrap();
    Metadata::open(dir.path().join("meta.redb"), blobs).unwrap()
}

fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn put(
    m: &Metadata,
    ns: &str,
    data: &[u8],
    l: BTreeMap<String, String>,
    lease: Option<&str>,
) -> Digest {
    let mut w = m
        .writer(
            ns,
            WriterOptions {
                reference: format!("ref-{}", Digest::sha256_of(data).encoded()),
                lease: lease.map(str::to_string),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    w.write(data).await.unwrap();
    w.commit(0, None, l).await.unwrap()
}

#[tokio::test]
async fn namespaces_create_label_list_delete() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(&dir);
    NamespaceStore::create(&m, "one", labels(&[("a", "1")])).unwrap();
    assert_eq!(
        NamespaceStore::create(&m, "one", BTreeMap::new())
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        NamespaceStore::create(&m, "bad/name", BTreeMap::new())
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    let l = NamespaceStore::update(&m, "one", labels(&[("b", "2")]), &["labels.b".into()]).unwrap();
    assert_eq!(l, labels(&[("a", "1"), ("b", "2")]));
    // Writing into a namespace creates it.
    let d = put(&m, "two", b"data", BTreeMap::new(), None).await;
    let names: Vec<String> = NamespaceStore::list(&m)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec!["one", "two"]);
    let err = NamespaceStore::delete(&m, "two").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    assert!(err.to_string().contains("blobs"), "{err}");
    ContentStore::delete(&m, "two", &d).await.unwrap();
    NamespaceStore::delete(&m, "two").unwrap();
    NamespaceStore::delete(&m, "one").unwrap();
    assert_eq!(
        NamespaceStore::get(&m, "one").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn leases_hold_resources_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(&dir);
    LeaseManager::create(&m, "ns", "l1", labels(&[("team", "x")]))
        .await
        .unwrap();
    LeaseManager::create(&m, "ns", "l2", BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        LeaseManager::create(&m, "ns", "l1", BTreeMap::new())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    let ids: Vec<String> = LeaseManager::list(&m, "ns", &["labels.team==x".into()])
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(ids, vec!["l1"]);
    let d = put(&m, "ns", b"leased", BTreeMap::new(), Some("l1")).await;
    let res = LeaseManager::list_resources(&m, "ns", "l1").await.unwrap();
    assert_eq!(
        res,
        vec![Resource {
            id: d.to_string(),
            kind: "content".into()
        }]
    );
    let snap = Resource {
        id: "key".into(),
        kind: "snapshots/overlayfs".into(),
    };
    LeaseManager::add_resource(&m, "ns", "l2", snap.clone())
        .await
        .unwrap();
    assert_eq!(
        LeaseManager::list_resources(&m, "ns", "l2").await.unwrap(),
        vec![snap.clone()]
    );
    LeaseManager::delete_resource(&m, "ns", "l2", snap)
        .await
        .unwrap();
    assert!(LeaseManager::list_resources(&m, "ns", "l2")
        .await
        .unwrap()
        .is_empty());
    let bad = Resource {
        id: "x".into(),
        kind: "images".into(),
    };
    assert_eq!(
        LeaseManager::add_resource(&m, "ns", "l2", bad)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        LeaseManager::delete(&m, "ns", "nope", false)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // A write under a lease that does not exist fails.
    let err = m
        .writer(
            "ns",
            WriterOptions {
                reference: "r".into(),
                lease: Some("ghost".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn gc_removes_unreferenced_and_keeps_leased_rooted_and_referenced() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(&dir);
    LeaseManager::create(&m, "ns", "hold", BTreeMap::new())
        .await
        .unwrap();
    let leased = put(&m, "ns", b"leased", BTreeMap::new(), Some("hold")).await;
    let child = put(&m, "ns", b"child", BTreeMap::new(), None).await;
    let grandchild = put(&m, "ns", b"grandchild", BTreeMap::new(), None).await;
    // child references grandchild
    let mut info = m.info("ns", &child).await.unwrap();
    info.labels.insert(
        "containerd.io/gc.ref.content.l0".into(),
        grandchild.to_string(),
    );
    ContentStore::update(
        &m,
        "ns",
        info,
        &["labels.containerd.io/gc.ref.content.l0".into()],
    )
    .await
    .unwrap();
    let root = put(
        &m,
        "ns",
        b"root",
        labels(&[
            ("containerd.io/gc.root", "2026-01-01T00:00:00Z"),
            ("containerd.io/gc.ref.content.c", &child.to_string()),
        ]),
        None,
    )
    .await;
    let garbage = put(&m, "ns", b"garbage", BTreeMap::new(), None).await;
    // The same bytes as `leased`, in another namespace, unreferenced there.
    let shared = put(&m, "other", b"leased", BTreeMap::new(), None).await;
    assert_eq!(shared, leased);

    let report = m.collect_garbage().unwrap();
    assert_eq!(report.content_removed, 2, "{report:?}"); // garbage in ns, leased-copy in other
    assert_eq!(report.blobs_removed, 1, "{report:?}"); // only garbage's bytes
    assert_eq!(report.bytes_freed, b"garbage".len() as u64, "{report:?}");
    for d in [&leased, &child, &grandchild, &root] {
        m.info("ns", d).await.unwrap();
        assert!(m.blobs().contains(d), "{d} bytes must stay");
    }
    assert_eq!(
        m.info("ns", &garbage).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(!m.blobs().contains(&garbage));
    assert_eq!(
        m.info("other", &leased).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // Dropping the lease with sync collects synchronously.
    LeaseManager::delete(&m, "ns", "hold", true).await.unwrap();
    assert!(!m.blobs().contains(&leased));
    let stats = m.gc_stats();
    assert_eq!(stats.runs, 2);
    assert_eq!(stats.total_blobs_removed, 2);
    // Metrics' bytes freed: "garbage" then "leased".
    assert_eq!(
        stats.total_bytes_freed,
        (b"garbage".len() + b"leased".len()) as u64
    );
}

#[tokio::test]
async fn expired_leases_protect_nothing_and_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(&dir);
    LeaseManager::create(
        &m,
        "ns",
        "old",
        labels(&[("containerd.io/gc.expire", "2001-01-01T00:00:00Z")]),
    )
    .await
    .unwrap();
    LeaseManager::create(
        &m,
        "ns",
        "new",
        labels(&[("containerd.io/gc.expire", "2999-01-01T00:00:00+02:00")]),
    )
    .await
    .unwrap();
    let a = put(&m, "ns", b"under-old", BTreeMap::new(), Some("old")).await;
    let b = put(&m, "ns", b"under-new", BTreeMap::new(), Some("new")).await;
    let r = m.collect_garbage().unwrap();
    assert_eq!(r.leases_expired, 1);
    assert!(!m.blobs().contains(&a));
    assert!(m.blobs().contains(&b));
    let ids: Vec<String> = LeaseManager::list(&m, "ns", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(ids, vec!["new"]);
    assert_eq!(
        LeaseManager::create(
            &m,
            "ns",
            "bad",
            labels(&[("containerd.io/gc.expire", "soon")])
        )
        .await
        .unwrap_err()
        .kind(),
        ErrorKind::InvalidArgument
    );
}

#[tokio::test]
async fn flat_lease_keeps_only_its_own_resources() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(&dir);
    LeaseManager::create(&m, "ns", "flat", labels(&[("containerd.io/gc.flat", "")]))
        .await
        .unwrap();
    let child = put(&m, "ns", b"child", BTreeMap::new(), None).await;
    let parent = put(
        &m,
        "ns",
        b"parent",
        labels(&[("containerd.io/gc.ref.content.0", &child.to_string())]),
        Some("flat"),
    )
    .await;
    m.collect_garbage().unwrap();
    assert!(m.blobs().contains(&parent));
    assert!(!m.blobs().contains(&child));
}

#[tokio::test]
async fn database_and_uuid_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (uuid, d) = {
        let m = open(&dir);
        (
            m.uuid().to_string(),
            put(&m, "ns", b"kept", labels(&[("k", "v")]), None).await,
        )
    };
    let m = open(&dir);
    assert_eq!(m.uuid(), uuid);
    assert_eq!(
        m.info("ns", &d).await.unwrap().labels,
        labels(&[("k", "v")])
    );
}

#[tokio::test]
async fn scheduler_collects_after_a_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(&dir);
    let d = put(
        &m,
        "ns",
        b"to-delete",
        labels(&[("containerd.io/gc.root", "x")]),
        None,
    )
    .await;
    let sched = tokio::spawn(m.clone().run_gc_scheduler(berth_metadata::gc::GcConfig {
        startup_delay: std::time::Duration::ZERO,
        ..Default::default()
    }));
    ContentStore::delete(&m, "ns", &d).await.unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if !m.blobs().contains(&d) {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    sched.abort();
    assert!(gone, "blob still on disk 2s after its record was deleted");
}

fn image(name: &str, target: &Digest, size: i64) -> berth_core::images::Image {
    berth_core::images::Image {
        name: name.to_string(),
        labels: BTreeMap::new(),
        target: berth_core::Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: target.clone(),
            size,
            annotations: BTreeMap::new(),
        },
        created_at: std::time::SystemTime::UNIX_EPOCH,
        updated_at: std::time::SystemTime::UNIX_EPOCH,
    }
}

#[tokio::test]
async fn images_create_get_list_update_delete() {
    use berth_core::images::ImageStore;
    let dir = tempfile::tempdir().unwrap();
    let m = open(&dir);
    let d = Digest::sha256_of(b"manifest");
    let mut img = image("docker.io/library/busybox:latest", &d, 8);
    img.labels = labels(&[("a", "1"), ("b", "2")]);
    let created = ImageStore::create(&m, "ns", img.clone()).await.unwrap();
    assert!(created.created_at > std::time::SystemTime::UNIX_EPOCH);
    let err = ImageStore::create(&m, "ns", img.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        err.to_string(),
        "image \"docker.io/library/busybox:latest\": already exists"
    );
    let mut bad = img.clone();
    bad.name.clear();
    assert_eq!(
        ImageStore::create(&m, "ns", bad).await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let mut zero = image("zero", &d, 0);
    zero.target.size = 0;
    assert_eq!(
        ImageStore::create(&m, "ns", zero).await.unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );

    ImageStore::create(&m, "ns", image("other:1", &Digest::sha256_of(b"x"), 1))
        .await
        .unwrap();
    let by_label = ImageStore::list(&m, "ns", &["labels.a==1".to_string()])
        .await
        .unwrap();
    assert_eq!(by_label.len(), 1);
    let by_digest = ImageStore::list(&m, "ns", &[format!("target.digest=={d}")])
        .await
        .unwrap();
    assert_eq!(by_digest[0].name, "docker.io/library/busybox:latest");
    assert_eq!(ImageStore::list(&m, "ns", &[]).await.unwrap().len(), 2);
    assert!(ImageStore::list(&m, "elsewhere", &[])
        .await
        .unwrap()
        .is_empty());

    // Update one label through a field path; the others stay.
    let mut upd = img.clone();
    upd.labels = labels(&[("a", "9")]);
    let got = ImageStore::update(&m, "ns", upd.clone(), &["labels.a".to_string()])
        .await
        .unwrap();
    assert_eq!(got.labels, labels(&[("a", "9"), ("b", "2")]));
    let err = ImageStore::update(&m, "ns", upd.clone(), &["name".to_string()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    upd.target.digest = Digest::sha256_of(b"new");
    let got = ImageStore::update(&m, "ns", upd, &["target".to_string()])
        .await
        .unwrap();
    assert_eq!(got.target.digest, Digest::sha256_of(b"new"));
    assert_eq!(got.labels.get("b").map(String::as_str), Some("2"));

    assert_eq!(
        NamespaceStore::delete(&m, "ns").unwrap_err().to_string(),
        "namespace \"ns\" must be empty, but it still has images: failed precondition"
    );
    ImageStore::delete(&m, "ns", "other:1", false)
        .await
        .unwrap();
    assert_eq!(
        ImageStore::get(&m, "ns", "other:1")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn gc_keeps_what_an_image_references_until_it_is_deleted() {
    use berth_core::images::ImageStore;
    let dir = tempfile::tempdir().unwrap();
    let m = open(&dir);
    let layer = put(&m, "ns", b"layer", BTreeMap::new(), None).await;
    let config = put(&m, "ns", b"config", BTreeMap::new(), None).await;
    let manifest = put(
        &m,
        "ns",
        b"manifest",
        labels(&[
            ("containerd.io/gc.ref.content.config", &config.to_string()),
            ("containerd.io/gc.ref.content.l.0", &layer.to_string()),
        ]),
        None,
    )
    .await;
    let stray = put(&m, "ns", b"stray", BTreeMap::new(), None).await;
    ImageStore::create(&m, "ns", image("img", &manifest, 8))
        .await
        .unwrap();
    let r = m.collect_garbage().unwrap();
    assert_eq!(r.content_removed, 1, "only the stray blob goes");
    for d in [&layer, &config, &manifest] {
        assert!(m.blobs().contains(d));
    }
    assert!(!m.blobs().contains(&stray));
    // An expired image protects nothing.
    let mut expired = image("img", &manifest, 8);
    expired.labels = labels(&[("containerd.io/gc.expire", "2000-01-01T00:00:00Z")]);
    ImageStore::update(&m, "ns", expired, &["labels".to_string()])
        .await
        .unwrap();
    let r = m.collect_garbage().unwrap();
    assert_eq!(r.content_removed, 3);
    ImageStore::delete(&m, "ns", "img", true).await.unwrap();
    assert!(m.blobs().walk().unwrap().is_empty());
}

#[tokio::test]
async fn a_corrupt_snapshot_sequence_is_data_loss() {
    use berth_core::snapshots::Snapshotter;
    let dir = tempfile::tempdir().unwrap();
    let backend = berth_snapshots::NativeSnapshotter::open(dir.path().join("native")).unwrap();
    {
        let m = open(&dir);
        m.register_snapshotter("native", std::sync::Arc::new(backend.clone()));
        let sn = m.snapshotter("default", "native", None).unwrap();
        sn.prepare("first", None, BTreeMap::new()).await.unwrap();
    }
    // Three bytes where a u64 belongs: a sequence that cannot be read must not restart at 0
    // (it would hand out backend keys already used).
    {
        let db = redb::Database::create(dir.path().join("meta.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            meta.insert("snapshot_sequence", b"bad".as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let m = open(&dir);
    m.register_snapshotter("native", std::sync::Arc::new(backend));
    let sn = m.snapshotter("default", "native", None).unwrap();
    let e = sn
        .prepare("second", None, BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DataLoss, "{e}");
    assert!(e.to_string().contains("snapshot_sequence"), "{e}");
}

#[test]
fn the_database_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let dir = tempfile::tempdir().unwrap();
    let blobs = LocalStore::open(dir.path().join("content")).unwrap();
    let db = dir.path().join("io.containerd.metadata.v1.redb/meta.redb");
    drop(Metadata::open(&db, blobs).unwrap());
    assert_eq!(mode(db.parent().unwrap()), 0o700);
    assert_eq!(mode(&db), 0o600);
}

/// containerd's `addContentLease`: content a writer finds already recorded joins the writer's
/// lease, when the writer opens with its digest and when its commit ends in AlreadyExists, so
/// a collection after that cannot take what the caller was told exists.
#[tokio::test]
async fn recorded_content_found_by_a_writer_joins_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let m = open(&dir);
    let by_commit = put(&m, "ns", b"found at commit", BTreeMap::new(), None).await;
    let by_open = put(&m, "ns", b"found at open", BTreeMap::new(), None).await;
    LeaseManager::create(&m, "ns", "import", BTreeMap::new())
        .await
        .unwrap();
    let opts = |reference: &str, digest: Option<Digest>| WriterOptions {
        reference: reference.into(),
        digest,
        lease: Some("import".into()),
        ..Default::default()
    };
    let mut w = m.writer("ns", opts("tar-1", None)).await.unwrap();
    w.write(b"found at commit").await.unwrap();
    let err = w.commit(0, None, BTreeMap::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let err = m
        .writer("ns", opts("tar-2", Some(by_open.clone())))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    m.collect_garbage().unwrap();
    for d in [&by_commit, &by_open] {
        m.info("ns", d).await.unwrap();
    }
    let held: Vec<String> = m
        .list_resources("ns", "import")
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "content")
        .map(|r| r.id)
        .collect();
    assert!(held.contains(&by_commit.to_string()), "{held:?}");
    assert!(held.contains(&by_open.to_string()), "{held:?}");
}

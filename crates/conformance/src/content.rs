//! The content-store cases. Each takes a fresh, empty store.

use std::collections::BTreeMap;

use berth_core::content::{ContentStore, ContentWriter, Info, WriterOptions};
use berth_core::{Digest, ErrorKind};

const NS: &str = "conformance";

fn opts(reference: &str) -> WriterOptions {
    WriterOptions {
        reference: reference.into(),
        ..Default::default()
    }
}

fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Write `data` under `reference` in one go and commit it with its digest.
pub async fn put<S: ContentStore>(
    store: &S,
    ns: &str,
    reference: &str,
    data: &[u8],
    l: BTreeMap<String, String>,
) -> Digest {
    let mut w = store
        .writer(ns, opts(reference))
        .await
        .expect("open writer");
    w.write(data).await.expect("write");
    let d = Digest::sha256_of(data);
    let got = w
        .commit(data.len() as i64, Some(d.clone()), l)
        .await
        .expect("commit");
    assert_eq!(got, d);
    d
}

async fn read_all<S: ContentStore>(store: &S, ns: &str, d: &Digest) -> Vec<u8> {
    let info = store.info(ns, d).await.expect("info");
    let mut out = Vec::new();
    while (out.len() as i64) < info.size {
        let chunk = store
            .read_at(ns, d, out.len() as i64, 64 * 1024)
            .await
            .expect("read");
        assert!(!chunk.is_empty(), "short read at {}", out.len());
        out.extend_from_slice(&chunk);
    }
    out
}

fn expect_kind<T: std::fmt::Debug>(r: berth_core::Result<T>, kind: ErrorKind, what: &str) {
    match r {
        Err(e) => assert_eq!(e.kind(), kind, "{what}: {e}"),
        Ok(v) => panic!("{what}: expected {kind:?}, got Ok({v:?})"),
    }
}

pub async fn write_commit_info_read<S: ContentStore>(store: &S) {
    let data = pattern(10_000, 1);
    let mut w = store.writer(NS, opts("wcir")).await.unwrap();
    for chunk in data.chunks(3000) {
        w.write(chunk).await.unwrap();
    }
    assert_eq!(w.status().await.unwrap().offset, 10_000);
    assert_eq!(w.digest(), Digest::sha256_of(&data));
    let d = w
        .commit(
            10_000,
            Some(Digest::sha256_of(&data)),
            labels(&[("a", "1")]),
        )
        .await
        .unwrap();
    let info = store.info(NS, &d).await.unwrap();
    assert_eq!(info.size, 10_000);
    assert_eq!(info.labels, labels(&[("a", "1")]));
    assert_eq!(read_all(store, NS, &d).await, data);
    assert_eq!(
        store.read_at(NS, &d, 9_990, 100).await.unwrap(),
        &data[9_990..]
    );
    let listed: Vec<Digest> = store
        .list(NS, &[])
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.digest)
        .collect();
    assert_eq!(listed, vec![d]);
    assert!(
        store.list_statuses(NS, &[]).await.unwrap().is_empty(),
        "ingest must be gone after commit"
    );
}

/// A failed commit publishes nothing and leaves the ingest, as containerd's local writer does:
/// reopening the ref resumes at the bytes written, so the commit can be retried.
pub async fn wrong_digest_is_rejected_and_the_ingest_kept<S: ContentStore>(store: &S) {
    let mut w = store.writer(NS, opts("bad-digest")).await.unwrap();
    w.write(b"the real bytes").await.unwrap();
    let claimed = Digest::sha256_of(b"other bytes");
    expect_kind(
        w.commit(0, Some(claimed.clone()), BTreeMap::new()).await,
        ErrorKind::FailedPrecondition,
        "commit with wrong digest",
    );
    expect_kind(
        store.info(NS, &claimed).await,
        ErrorKind::NotFound,
        "claimed digest",
    );
    expect_kind(
        store.info(NS, &Digest::sha256_of(b"the real bytes")).await,
        ErrorKind::NotFound,
        "actual digest",
    );
    assert!(store.list(NS, &[]).await.unwrap().is_empty());
    let mut status = store.status(NS, "bad-digest").await;
    for _ in 0..50 {
        if status.as_ref().is_ok_and(|s| s.offset == 14) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        status = store.status(NS, "bad-digest").await;
    }
    assert_eq!(
        status.unwrap().offset,
        14,
        "ingest kept after a failed commit"
    );
    // Retried with the right digest, the same ingest commits.
    let w = loop {
        match store.writer(NS, opts("bad-digest")).await {
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(w.status().await.unwrap().offset, 14);
    let real = Digest::sha256_of(b"the real bytes");
    assert_eq!(
        w.commit(14, Some(real.clone()), BTreeMap::new())
            .await
            .unwrap(),
        real
    );
}

pub async fn wrong_size_is_rejected<S: ContentStore>(store: &S) {
    let mut w = store.writer(NS, opts("bad-size")).await.unwrap();
    w.write(b"12345").await.unwrap();
    expect_kind(
        w.commit(6, None, BTreeMap::new()).await,
        ErrorKind::FailedPrecondition,
        "commit with wrong size",
    );
    assert!(store.list(NS, &[]).await.unwrap().is_empty());
}

pub async fn ingest_resumes_at_its_offset<S: ContentStore>(store: &S) {
    let data = pattern(50_000, 7);
    let d = Digest::sha256_of(&data);
    {
        let mut w = store
            .writer(
                NS,
                WriterOptions {
                    reference: "resume".into(),
                    size: data.len() as i64,
                    digest: Some(d.clone()),
                    lease: None,
                },
            )
            .await
            .unwrap();
        w.write(&data[..20_000]).await.unwrap();
    }
    let st = store.status(NS, "resume").await.unwrap();
    assert_eq!(st.offset, 20_000);
    assert_eq!(st.total, data.len() as i64);
    let mut w = store.writer(NS, opts("resume")).await.unwrap();
    assert_eq!(w.status().await.unwrap().offset, 20_000);
    w.write(&data[20_000..]).await.unwrap();
    w.commit(data.len() as i64, Some(d.clone()), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(read_all(store, NS, &d).await, data);
}

pub async fn truncate_restarts_an_ingest<S: ContentStore>(store: &S) {
    let mut w = store.writer(NS, opts("trunc")).await.unwrap();
    w.write(b"garbage that will go").await.unwrap();
    w.truncate(0).await.unwrap();
    assert_eq!(w.status().await.unwrap().offset, 0);
    w.write(b"kept").await.unwrap();
    let d = w
        .commit(4, Some(Digest::sha256_of(b"kept")), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(read_all(store, NS, &d).await, b"kept");
}

pub async fn second_writer_on_a_ref_is_refused<S: ContentStore>(store: &S) {
    let mut first = store.writer(NS, opts("locked")).await.unwrap();
    first.write(b"x").await.unwrap();
    expect_kind(
        store.writer(NS, opts("locked")).await.map(|_| ()),
        ErrorKind::Unavailable,
        "second writer",
    );
    drop(first);
    // The lock goes with the first writer (remote stores release it asynchronously).
    let mut ok = false;
    for _ in 0..50 {
        match store.writer(NS, opts("locked")).await {
            Ok(_) => {
                ok = true;
                break;
            }
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
    assert!(ok, "ref stayed locked after the first writer went away");
}

pub async fn writer_for_existing_digest_reports_already_exists<S: ContentStore>(store: &S) {
    let d = put(store, NS, "exists", b"present", BTreeMap::new()).await;
    let r = store
        .writer(
            NS,
            WriterOptions {
                reference: "exists-again".into(),
                size: 7,
                digest: Some(d),
                lease: None,
            },
        )
        .await;
    expect_kind(
        r.map(|_| ()),
        ErrorKind::AlreadyExists,
        "writer for existing digest",
    );
}

pub async fn committing_existing_content_reports_already_exists<S: ContentStore>(store: &S) {
    put(store, NS, "dup-1", b"same", BTreeMap::new()).await;
    let mut w = store.writer(NS, opts("dup-2")).await.unwrap();
    w.write(b"same").await.unwrap();
    expect_kind(
        w.commit(4, None, BTreeMap::new()).await,
        ErrorKind::AlreadyExists,
        "commit of existing content",
    );
    assert_eq!(store.list(NS, &[]).await.unwrap().len(), 1);
}

pub async fn labels_update_with_field_masks<S: ContentStore>(store: &S) {
    let d = put(
        store,
        NS,
        "lbl",
        b"labelled",
        labels(&[("a", "1"), ("b", "2")]),
    )
    .await;
    let mut info: Info = store.info(NS, &d).await.unwrap();
    info.labels = labels(&[("a", "9"), ("c", "3")]);
    let fp: Vec<String> = ["labels.a", "labels.b", "labels.c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let updated = store.update(NS, info.clone(), &fp).await.unwrap();
    assert_eq!(updated.labels, labels(&[("a", "9"), ("c", "3")]));
    assert_eq!(store.info(NS, &d).await.unwrap().labels, updated.labels);
    expect_kind(
        store.update(NS, info, &["size".to_string()]).await,
        ErrorKind::InvalidArgument,
        "update of size",
    );
}

pub async fn list_applies_filters<S: ContentStore>(store: &S) {
    let a = put(
        store,
        NS,
        "fa",
        b"alpha",
        labels(&[("kind", "a"), ("x.y", "1")]),
    )
    .await;
    let b = put(store, NS, "fb", b"beta", labels(&[("kind", "b")])).await;
    let names = |v: Vec<Info>| v.into_iter().map(|i| i.digest).collect::<Vec<_>>();
    assert_eq!(
        names(store.list(NS, &["labels.kind==a".into()]).await.unwrap()),
        vec![a.clone()]
    );
    assert_eq!(
        names(store.list(NS, &[format!("digest=={b}")]).await.unwrap()),
        vec![b.clone()]
    );
    assert_eq!(
        names(store.list(NS, &["labels.\"x.y\"".into()]).await.unwrap()),
        vec![a.clone()]
    );
    let mut both = names(
        store
            .list(NS, &["labels.kind==a".into(), "labels.kind==b".into()])
            .await
            .unwrap(),
    );
    both.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(both, want);
    expect_kind(
        store.list(NS, &["labels.kind==".into()]).await,
        ErrorKind::InvalidArgument,
        "bad filter",
    );
}

pub async fn delete_removes_from_the_namespace<S: ContentStore>(store: &S) {
    let d = put(store, NS, "del", b"doomed", BTreeMap::new()).await;
    store.delete(NS, &d).await.unwrap();
    expect_kind(
        store.info(NS, &d).await,
        ErrorKind::NotFound,
        "info after delete",
    );
    expect_kind(
        store.read_at(NS, &d, 0, 10).await,
        ErrorKind::NotFound,
        "read after delete",
    );
    expect_kind(
        store.delete(NS, &d).await,
        ErrorKind::NotFound,
        "second delete",
    );
}

pub async fn namespaces_are_isolated<S: ContentStore>(store: &S) {
    let d = put(store, "ns-one", "iso", b"private", BTreeMap::new()).await;
    expect_kind(
        store.info("ns-two", &d).await,
        ErrorKind::NotFound,
        "other namespace",
    );
    assert!(store.list("ns-two", &[]).await.unwrap().is_empty());
    // The same bytes can be written into the second namespace, and deleting them there
    // leaves the first one's copy alone.
    let d2 = put(store, "ns-two", "iso", b"private", BTreeMap::new()).await;
    assert_eq!(d, d2);
    store.delete("ns-two", &d).await.unwrap();
    assert_eq!(read_all(store, "ns-one", &d).await, b"private");
}

pub async fn abort_discards_an_ingest<S: ContentStore>(store: &S) {
    {
        let mut w = store.writer(NS, opts("abort-me")).await.unwrap();
        w.write(b"partial").await.unwrap();
    }
    // A remote writer may release its ref a moment after it is dropped.
    let mut aborted = store.abort(NS, "abort-me").await;
    for _ in 0..50 {
        match &aborted {
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                aborted = store.abort(NS, "abort-me").await;
            }
            _ => break,
        }
    }
    aborted.unwrap();
    expect_kind(
        store.status(NS, "abort-me").await,
        ErrorKind::NotFound,
        "status after abort",
    );
    expect_kind(
        store.abort(NS, "abort-me").await,
        ErrorKind::NotFound,
        "second abort",
    );
}

pub async fn reads_are_bounded<S: ContentStore>(store: &S) {
    let d = put(store, NS, "rb", b"0123456789", BTreeMap::new()).await;
    assert_eq!(store.read_at(NS, &d, 4, 3).await.unwrap(), b"456");
    assert_eq!(store.read_at(NS, &d, 10, 3).await.unwrap(), b"");
    expect_kind(
        store.read_at(NS, &Digest::sha256_of(b"absent"), 0, 1).await,
        ErrorKind::NotFound,
        "read of absent blob",
    );
}

pub async fn statuses_list_and_filter<S: ContentStore>(store: &S) {
    for r in ["st-a", "st-b"] {
        let mut w = store.writer(NS, opts(r)).await.unwrap();
        w.write(r.as_bytes()).await.unwrap();
    }
    let mut refs: Vec<String> = store
        .list_statuses(NS, &[])
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.reference)
        .collect();
    refs.sort();
    assert_eq!(refs, vec!["st-a", "st-b"]);
    let only: Vec<String> = store
        .list_statuses(NS, &["ref==st-b".into()])
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.reference)
        .collect();
    assert_eq!(only, vec!["st-b"]);
    assert!(store
        .list_statuses("elsewhere", &[])
        .await
        .unwrap()
        .is_empty());
}

pub async fn large_blob_round_trips<S: ContentStore>(store: &S) {
    let data = pattern(3 * 1024 * 1024 + 17, 3);
    let mut w = store.writer(NS, opts("large")).await.unwrap();
    for chunk in data.chunks(1 << 20) {
        w.write(chunk).await.unwrap();
    }
    let d = w
        .commit(
            data.len() as i64,
            Some(Digest::sha256_of(&data)),
            BTreeMap::new(),
        )
        .await
        .unwrap();
    assert_eq!(read_all(store, NS, &d).await, data);
}

//! The snapshotter cases. Each takes a fresh, empty snapshotter.
//!
//! The cases in this file need no privilege: they exercise metadata (keys, names, kinds,
//! parents, labels, filters, errors) and the shape of the returned mounts. The cases in
//! [`mounted`] write and read files through the mounts, which needs root; without it they print
//! `SKIP: <why>` and pass.

pub mod mounted;

use std::collections::BTreeMap;
use std::time::SystemTime;

use berth_core::snapshots::{Info, Kind, Mount, Snapshotter};
use berth_core::ErrorKind;

pub use mounted::*;

fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn no_labels() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn expect_kind<T: std::fmt::Debug>(r: berth_core::Result<T>, kind: ErrorKind, what: &str) {
    match r {
        Err(e) => assert_eq!(e.kind(), kind, "{what}: {e}"),
        Ok(v) => panic!("{what}: expected {kind:?}, got Ok({v:?})"),
    }
}

/// Prepare `key` on `parent` and commit it as `name` without writing anything.
pub async fn commit_empty<S: Snapshotter + ?Sized>(s: &S, name: &str, parent: Option<&str>) {
    let key = format!("{name}-active");
    s.prepare(&key, parent, no_labels())
        .await
        .unwrap_or_else(|e| panic!("prepare {key}: {e}"));
    s.commit(name, &key, no_labels())
        .await
        .unwrap_or_else(|e| panic!("commit {key} as {name}: {e}"));
}

fn names(infos: Vec<Info>) -> Vec<String> {
    infos.into_iter().map(|i| i.name).collect()
}

fn all_read_only(mounts: &[Mount]) -> bool {
    !mounts.is_empty() && mounts.iter().all(Mount::is_read_only)
}

pub async fn prepare_then_commit_renames_key_to_name<S: Snapshotter + ?Sized>(s: &S) {
    let mounts = s
        .prepare("base-active", None, labels(&[("a", "1")]))
        .await
        .unwrap();
    assert!(!mounts.is_empty(), "prepare returns mounts");
    assert!(
        !all_read_only(&mounts),
        "an active snapshot is writable: {mounts:?}"
    );
    let info = s.stat("base-active").await.unwrap();
    assert_eq!(info.kind, Kind::Active);
    assert_eq!(info.name, "base-active");
    assert_eq!(info.parent, None);
    assert_eq!(info.labels, labels(&[("a", "1")]));

    s.commit("base", "base-active", labels(&[("b", "2")]))
        .await
        .unwrap();
    expect_kind(
        s.stat("base-active").await,
        ErrorKind::NotFound,
        "the active key is gone after commit",
    );
    let info = s.stat("base").await.unwrap();
    assert_eq!(info.kind, Kind::Committed);
    assert_eq!(info.name, "base");
    assert_eq!(info.labels, labels(&[("b", "2")]), "commit labels replace");

    // The key is free again, and a committed snapshot is a parent.
    s.prepare("base-active", Some("base"), no_labels())
        .await
        .unwrap();
    let child = s.stat("base-active").await.unwrap();
    assert_eq!(child.parent.as_deref(), Some("base"));
    assert_eq!(child.kind, Kind::Active);
}

pub async fn keys_and_names_are_unique<S: Snapshotter + ?Sized>(s: &S) {
    commit_empty(s, "layer", None).await;
    s.prepare("work", None, no_labels()).await.unwrap();
    let e = s.prepare("work", None, no_labels()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(e.message().contains("work"), "message names the key: {e}");
    expect_kind(
        s.view("work", Some("layer"), no_labels()).await,
        ErrorKind::AlreadyExists,
        "view on an existing key",
    );
    expect_kind(
        s.prepare("layer", None, no_labels()).await,
        ErrorKind::AlreadyExists,
        "prepare on a committed name",
    );
    expect_kind(
        s.commit("layer", "work", no_labels()).await,
        ErrorKind::AlreadyExists,
        "commit onto an existing name",
    );
    // The failed commit left the active snapshot as it was.
    assert_eq!(s.stat("work").await.unwrap().kind, Kind::Active);
}

pub async fn missing_snapshots_are_not_found<S: Snapshotter + ?Sized>(s: &S) {
    expect_kind(s.stat("nope").await, ErrorKind::NotFound, "stat");
    expect_kind(s.mounts("nope").await, ErrorKind::NotFound, "mounts");
    expect_kind(s.usage("nope").await, ErrorKind::NotFound, "usage");
    expect_kind(s.remove("nope").await, ErrorKind::NotFound, "remove");
    expect_kind(
        s.commit("name", "nope", no_labels()).await,
        ErrorKind::NotFound,
        "commit",
    );
    expect_kind(
        s.update(Info::named("nope", no_labels()), &[]).await,
        ErrorKind::NotFound,
        "update",
    );
    expect_kind(
        s.prepare("k", Some("nope"), no_labels()).await,
        ErrorKind::NotFound,
        "prepare on a missing parent",
    );
    expect_kind(
        s.view("v", Some("nope"), no_labels()).await,
        ErrorKind::NotFound,
        "view of a missing parent",
    );
    let e = s.stat("nope").await.unwrap_err();
    assert!(e.message().contains("nope"), "message names the key: {e}");
    assert!(
        s.walk(&[]).await.unwrap().is_empty(),
        "failures left nothing"
    );
}

pub async fn parents_must_be_committed<S: Snapshotter + ?Sized>(s: &S) {
    s.prepare("active", None, no_labels()).await.unwrap();
    s.view("view", None, no_labels()).await.unwrap();
    for parent in ["active", "view"] {
        expect_kind(
            s.prepare("child", Some(parent), no_labels()).await,
            ErrorKind::InvalidArgument,
            &format!("prepare on {parent}"),
        );
        expect_kind(
            s.view("child", Some(parent), no_labels()).await,
            ErrorKind::InvalidArgument,
            &format!("view of {parent}"),
        );
    }
    expect_kind(
        s.stat("child").await,
        ErrorKind::NotFound,
        "nothing created",
    );
}

pub async fn only_active_snapshots_commit<S: Snapshotter + ?Sized>(s: &S) {
    commit_empty(s, "done", None).await;
    s.view("look", Some("done"), no_labels()).await.unwrap();
    expect_kind(
        s.commit("again", "done", no_labels()).await,
        ErrorKind::FailedPrecondition,
        "commit of a committed snapshot",
    );
    expect_kind(
        s.commit("frozen", "look", no_labels()).await,
        ErrorKind::FailedPrecondition,
        "commit of a view",
    );
    assert_eq!(s.stat("look").await.unwrap().kind, Kind::View);
}

pub async fn committed_snapshots_have_no_mounts<S: Snapshotter + ?Sized>(s: &S) {
    commit_empty(s, "c", None).await;
    expect_kind(
        s.mounts("c").await,
        ErrorKind::FailedPrecondition,
        "mounts of a committed snapshot",
    );
}

pub async fn remove_refuses_parents_with_children<S: Snapshotter + ?Sized>(s: &S) {
    commit_empty(s, "p", None).await;
    commit_empty(s, "c", Some("p")).await;
    s.view("v", Some("c"), no_labels()).await.unwrap();
    s.prepare("a", Some("p"), no_labels()).await.unwrap();
    let e = s.remove("p").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FailedPrecondition, "{e}");
    assert!(e.message().contains("child"), "{e}");
    expect_kind(
        s.remove("c").await,
        ErrorKind::FailedPrecondition,
        "c has a view",
    );
    s.remove("v").await.unwrap();
    s.remove("c").await.unwrap();
    expect_kind(
        s.remove("p").await,
        ErrorKind::FailedPrecondition,
        "p has a",
    );
    s.remove("a").await.unwrap();
    s.remove("p").await.unwrap();
    assert!(s.walk(&[]).await.unwrap().is_empty());
}

pub async fn remove_frees_the_key<S: Snapshotter + ?Sized>(s: &S) {
    commit_empty(s, "base", None).await;
    s.prepare("k", Some("base"), no_labels()).await.unwrap();
    s.remove("k").await.unwrap();
    expect_kind(s.stat("k").await, ErrorKind::NotFound, "removed");
    s.view("k", Some("base"), no_labels()).await.unwrap();
    assert_eq!(s.stat("k").await.unwrap().kind, Kind::View);
    s.remove("k").await.unwrap();
    s.prepare("k", None, no_labels()).await.unwrap();
    s.commit("base2", "k", no_labels()).await.unwrap();
    s.remove("base2").await.unwrap();
    assert_eq!(names(s.walk(&[]).await.unwrap()), ["base"]);
}

pub async fn views_are_read_only<S: Snapshotter + ?Sized>(s: &S) {
    commit_empty(s, "l1", None).await;
    commit_empty(s, "l2", Some("l1")).await;
    let empty = s.view("v0", None, no_labels()).await.unwrap();
    let one = s.view("v1", Some("l1"), no_labels()).await.unwrap();
    let two = s.view("v2", Some("l2"), no_labels()).await.unwrap();
    for (what, m) in [
        ("no parent", empty),
        ("one layer", one),
        ("two layers", two),
    ] {
        assert!(all_read_only(&m), "view of {what}: {m:?}");
    }
    let rw = s.prepare("rw", Some("l2"), no_labels()).await.unwrap();
    assert!(!all_read_only(&rw), "active on two layers: {rw:?}");
    for key in ["v0", "v1", "v2"] {
        assert_eq!(s.stat(key).await.unwrap().kind, Kind::View);
    }
}

pub async fn mounts_are_stable<S: Snapshotter + ?Sized>(s: &S) {
    commit_empty(s, "l1", None).await;
    commit_empty(s, "l2", Some("l1")).await;
    let cases = [
        ("a0", s.prepare("a0", None, no_labels()).await.unwrap()),
        (
            "a2",
            s.prepare("a2", Some("l2"), no_labels()).await.unwrap(),
        ),
        ("v1", s.view("v1", Some("l1"), no_labels()).await.unwrap()),
        ("v2", s.view("v2", Some("l2"), no_labels()).await.unwrap()),
    ];
    for (key, mounts) in cases {
        assert_eq!(s.mounts(key).await.unwrap(), mounts, "mounts of {key}");
    }
}

pub async fn walk_applies_filters<S: Snapshotter + ?Sized>(s: &S) {
    s.prepare("b-active", None, no_labels()).await.unwrap();
    s.commit("base", "b-active", labels(&[("tier", "base")]))
        .await
        .unwrap();
    s.prepare("work", Some("base"), labels(&[("owner", "me")]))
        .await
        .unwrap();
    s.view(
        "look",
        Some("base"),
        labels(&[("owner", "you"), ("x.y", "z")]),
    )
    .await
    .unwrap();
    let walk = |f: &'static [&'static str]| async move {
        let filters: Vec<String> = f.iter().map(|s| s.to_string()).collect();
        let mut got = names(s.walk(&filters).await.unwrap());
        got.sort();
        got
    };
    assert_eq!(walk(&[]).await, ["base", "look", "work"]);
    assert_eq!(walk(&["kind==committed"]).await, ["base"]);
    assert_eq!(walk(&["kind==active"]).await, ["work"]);
    assert_eq!(walk(&["kind==view"]).await, ["look"]);
    assert_eq!(walk(&["name==work"]).await, ["work"]);
    assert_eq!(walk(&["name~=^(base|look)$"]).await, ["base", "look"]);
    assert_eq!(walk(&["parent==base"]).await, ["look", "work"]);
    assert_eq!(walk(&["parent==base,kind==view"]).await, ["look"]);
    assert_eq!(walk(&["labels.owner"]).await, ["look", "work"]);
    assert_eq!(walk(&["labels.owner==me"]).await, ["work"]);
    assert_eq!(walk(&["labels.\"x.y\"==z"]).await, ["look"]);
    assert_eq!(
        walk(&["labels.tier==base", "name==work"]).await,
        ["base", "work"]
    );
    assert!(walk(&["name==none"]).await.is_empty());
    expect_kind(
        s.walk(&["name==".to_string()]).await,
        ErrorKind::InvalidArgument,
        "a malformed filter",
    );
}

pub async fn update_applies_field_paths<S: Snapshotter + ?Sized>(s: &S) {
    s.prepare("a", None, labels(&[("k1", "v1"), ("k2", "v2")]))
        .await
        .unwrap();
    let before = s.stat("a").await.unwrap();
    let mut upd = Info::named("a", labels(&[("k1", "new"), ("k3", "v3")]));
    // Immutable fields of the request are ignored.
    upd.kind = Kind::Committed;
    upd.parent = Some("elsewhere".into());
    let after = s
        .update(upd.clone(), &["labels.k1".into(), "labels.k2".into()])
        .await
        .unwrap();
    assert_eq!(
        after.labels,
        labels(&[("k1", "new")]),
        "k1 set, k2 removed, k3 untouched"
    );
    assert_eq!(after.kind, Kind::Active);
    assert_eq!(after.parent, None);
    assert_eq!(after.created, before.created);
    assert!(after.updated >= before.updated);
    assert_eq!(s.stat("a").await.unwrap().labels, after.labels, "persisted");

    let all = s.update(upd.clone(), &["labels".into()]).await.unwrap();
    assert_eq!(all.labels, labels(&[("k1", "new"), ("k3", "v3")]));
    let none = s.update(Info::named("a", no_labels()), &[]).await.unwrap();
    assert!(none.labels.is_empty(), "no field paths: replace all labels");
    for bad in ["name", "parent", "kind"] {
        expect_kind(
            s.update(upd.clone(), &[bad.to_string()]).await,
            ErrorKind::InvalidArgument,
            &format!("update of {bad}"),
        );
    }
    // Committed snapshots have mutable labels too.
    commit_empty(s, "c", None).await;
    let c = s
        .update(
            Info::named("c", labels(&[("gc", "root")])),
            &["labels.gc".into()],
        )
        .await
        .unwrap();
    assert_eq!(c.labels, labels(&[("gc", "root")]));
    assert_eq!(c.kind, Kind::Committed);
}

pub async fn info_reports_parent_and_times<S: Snapshotter + ?Sized>(s: &S) {
    let t0 = SystemTime::now() - std::time::Duration::from_secs(1);
    commit_empty(s, "p", None).await;
    s.prepare("child", Some("p"), no_labels()).await.unwrap();
    s.view("view", Some("p"), no_labels()).await.unwrap();
    let p = s.stat("p").await.unwrap();
    let child = s.stat("child").await.unwrap();
    let view = s.stat("view").await.unwrap();
    assert_eq!(p.parent, None);
    assert_eq!(child.parent.as_deref(), Some("p"));
    assert_eq!(view.parent.as_deref(), Some("p"));
    for i in [&p, &child, &view] {
        assert!(i.created >= t0, "{}: created {:?}", i.name, i.created);
        assert!(i.updated >= i.created, "{}: updated before created", i.name);
    }
    assert!(child.created >= p.created);
    s.commit("c", "child", no_labels()).await.unwrap();
    let c = s.stat("c").await.unwrap();
    assert_eq!(c.parent.as_deref(), Some("p"), "commit keeps the parent");
    assert!(
        c.created >= child.created,
        "a committed snapshot is created at commit"
    );
}

pub async fn usage_of_empty_snapshots<S: Snapshotter + ?Sized>(s: &S) {
    s.prepare("a", None, no_labels()).await.unwrap();
    let u = s.usage("a").await.unwrap();
    assert!(u.inodes >= 1, "the root directory counts: {u:?}");
    assert!(u.size >= 0);
    s.commit("c", "a", no_labels()).await.unwrap();
    let c = s.usage("c").await.unwrap();
    assert!(c.inodes >= 1, "measured at commit: {c:?}");
    s.view("v", Some("c"), no_labels()).await.unwrap();
    s.usage("v").await.unwrap();
}

pub async fn cleanup_keeps_live_snapshots<S: Snapshotter + ?Sized>(s: &S) {
    commit_empty(s, "l1", None).await;
    commit_empty(s, "l2", Some("l1")).await;
    let a = s.prepare("a", Some("l2"), no_labels()).await.unwrap();
    let v = s.view("v", Some("l1"), no_labels()).await.unwrap();
    commit_empty(s, "gone", None).await;
    s.remove("gone").await.unwrap();
    s.cleanup().await.unwrap();
    s.cleanup().await.unwrap();
    assert_eq!(names(s.walk(&[]).await.unwrap()), ["a", "l1", "l2", "v"]);
    assert_eq!(s.mounts("a").await.unwrap(), a);
    assert_eq!(s.mounts("v").await.unwrap(), v);
    commit_empty(s, "l3", Some("l2")).await;
}

pub async fn concurrent_prepares_are_atomic<S: Snapshotter + ?Sized>(s: &S) {
    commit_empty(s, "base", None).await;
    let distinct = futures::future::join_all(
        (0..8).map(|i| async move { s.prepare(&format!("k{i}"), Some("base"), no_labels()).await }),
    )
    .await;
    assert!(distinct.iter().all(Result::is_ok), "{distinct:?}");
    let same = futures::future::join_all(
        (0..6).map(|_| async { s.prepare("same", Some("base"), no_labels()).await }),
    )
    .await;
    let ok = same.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "exactly one prepare of one key wins: {same:?}");
    for r in same.into_iter().filter_map(Result::err) {
        assert_eq!(r.kind(), ErrorKind::AlreadyExists, "{r}");
    }
    assert_eq!(
        s.walk(&["parent==base".to_string()]).await.unwrap().len(),
        9
    );
}

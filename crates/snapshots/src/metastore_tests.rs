//! Unit tests of the metastore: semantics, and crash safety (an operation whose transaction does
//! not commit — what a crash amounts to — leaves no trace, and each operation is atomic).

use super::*;
use berth_core::ErrorKind;

fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn open(dir: &tempfile::TempDir) -> MetaStore {
    MetaStore::open(dir.path().join("metadata.db")).unwrap()
}

fn ok(_: &Snapshot) -> Result<()> {
    Ok(())
}

fn create(ms: &MetaStore, kind: Kind, key: &str, parent: Option<&str>) -> Snapshot {
    ms.create(kind, key, parent, BTreeMap::new(), ok).unwrap().0
}

fn commit(ms: &MetaStore, key: &str, name: &str) -> u64 {
    let (id, _, _) = ms.info(key).unwrap();
    ms.commit(key, name, id, Usage::default(), BTreeMap::new())
        .unwrap()
}

fn kind_of<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
    r.unwrap_err().kind()
}

#[test]
fn ids_are_sequential_and_commit_keeps_the_id() {
    let dir = tempfile::tempdir().unwrap();
    let ms = open(&dir);
    let a = create(&ms, Kind::Active, "a-key", None);
    assert_eq!(a.id, 1);
    assert_eq!(commit(&ms, "a-key", "a"), 1);
    assert_eq!(kind_of(ms.info("a-key")), ErrorKind::NotFound);
    let (id, info, _) = ms.info("a").unwrap();
    assert_eq!((id, info.kind), (1, Kind::Committed));
    let b = create(&ms, Kind::Active, "b-key", Some("a"));
    assert_eq!((b.id, b.parent_ids.clone()), (2, vec![1]));
    commit(&ms, "b-key", "b");
    let v = create(&ms, Kind::View, "v", Some("b"));
    assert_eq!((v.id, v.parent_ids), (3, vec![2, 1]));
    assert_eq!(ms.snapshot("v").unwrap().parent_ids, vec![2, 1]);
    assert_eq!(ms.ids().unwrap(), BTreeSet::from([1, 2, 3]));
}

#[test]
fn errors_follow_containerd() {
    let dir = tempfile::tempdir().unwrap();
    let ms = open(&dir);
    create(&ms, Kind::Active, "active", None);
    let e = ms
        .create(Kind::Active, "active", None, BTreeMap::new(), ok)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(e.to_string(), "snapshot active: already exists");
    let e = ms
        .create(Kind::View, "x", Some("active"), BTreeMap::new(), ok)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    let e = ms
        .create(Kind::View, "x", Some("nope"), BTreeMap::new(), ok)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(
        kind_of(ms.create(Kind::Committed, "c", None, BTreeMap::new(), ok)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind_of(ms.create(Kind::Active, "", None, BTreeMap::new(), ok)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(kind_of(ms.snapshot("missing")), ErrorKind::NotFound);
    let e = ms.info("missing").unwrap_err();
    assert_eq!(e.to_string(), "snapshot missing: not found");

    commit(&ms, "active", "c");
    assert_eq!(kind_of(ms.snapshot("c")), ErrorKind::FailedPrecondition);
    let (id, _, _) = ms.info("c").unwrap();
    assert_eq!(
        kind_of(ms.commit("c", "c2", id, Usage::default(), BTreeMap::new())),
        ErrorKind::FailedPrecondition
    );
    create(&ms, Kind::View, "view", None);
    let (vid, _, _) = ms.info("view").unwrap();
    assert_eq!(
        kind_of(ms.commit("view", "c3", vid, Usage::default(), BTreeMap::new())),
        ErrorKind::FailedPrecondition
    );
    create(&ms, Kind::Active, "a2", None);
    let (aid, _, _) = ms.info("a2").unwrap();
    assert_eq!(
        kind_of(ms.commit("a2", "c", aid, Usage::default(), BTreeMap::new())),
        ErrorKind::AlreadyExists
    );
    // A stale id (the key was removed and prepared again meanwhile) does not commit.
    assert_eq!(
        kind_of(ms.commit("a2", "c4", aid + 100, Usage::default(), BTreeMap::new())),
        ErrorKind::NotFound
    );
}

#[test]
fn parents_with_children_cannot_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    let ms = open(&dir);
    create(&ms, Kind::Active, "p-key", None);
    commit(&ms, "p-key", "p");
    create(&ms, Kind::Active, "c-key", Some("p"));
    let e = ms.remove("p").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
    assert_eq!(
        e.to_string(),
        "cannot remove snapshot with child: failed precondition"
    );
    // The child link follows the commit (same id).
    commit(&ms, "c-key", "c");
    assert_eq!(kind_of(ms.remove("p")), ErrorKind::FailedPrecondition);
    create(&ms, Kind::View, "v", Some("p"));
    assert_eq!(ms.remove("c").unwrap(), (2, Kind::Committed));
    assert_eq!(kind_of(ms.remove("p")), ErrorKind::FailedPrecondition);
    assert_eq!(ms.remove("v").unwrap(), (3, Kind::View));
    assert_eq!(ms.remove("p").unwrap(), (1, Kind::Committed));
    assert_eq!(kind_of(ms.remove("p")), ErrorKind::NotFound);
    assert!(ms.ids().unwrap().is_empty());
}

#[test]
fn a_failed_placement_records_nothing_and_burns_no_id() {
    let dir = tempfile::tempdir().unwrap();
    let ms = open(&dir);
    create(&ms, Kind::Active, "p-key", None);
    commit(&ms, "p-key", "p");
    let e = ms
        .create(Kind::Active, "k", Some("p"), BTreeMap::new(), |_| {
            Err(SnapshotError::Io {
                context: "rename".into(),
                source: std::io::Error::other("disk on fire"),
            })
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal);
    assert_eq!(kind_of(ms.info("k")), ErrorKind::NotFound);
    // No child link was left behind: the parent can go.
    drop(ms);
    let ms = open(&dir);
    assert_eq!(kind_of(ms.info("k")), ErrorKind::NotFound);
    assert_eq!(create(&ms, Kind::Active, "k", Some("p")).id, 2);
    ms.remove("k").unwrap();
    ms.remove("p").unwrap();
}

#[test]
fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ms = open(&dir);
        ms.create(Kind::Active, "a", None, labels(&[("x", "1")]), ok)
            .unwrap();
        let (id, _, _) = ms.info("a").unwrap();
        let usage = Usage {
            size: 4096,
            inodes: 3,
        };
        ms.commit("a", "base", id, usage, labels(&[("y", "2")]))
            .unwrap();
        create(&ms, Kind::Active, "rw", Some("base"));
    }
    let ms = open(&dir);
    let (_, info, usage) = ms.info("base").unwrap();
    assert_eq!(info.labels, labels(&[("y", "2")]), "commit replaces labels");
    assert_eq!(usage.size, 4096);
    assert_eq!(usage.inodes, 3);
    let (_, rw, _) = ms.info("rw").unwrap();
    assert_eq!(rw.parent.as_deref(), Some("base"));
    assert_eq!(
        create(&ms, Kind::View, "v", None).id,
        3,
        "next_id persisted"
    );
}

#[test]
fn update_applies_field_paths() {
    let dir = tempfile::tempdir().unwrap();
    let ms = open(&dir);
    ms.create(
        Kind::Active,
        "a",
        None,
        labels(&[("k1", "v1"), ("k2", "v2")]),
        ok,
    )
    .unwrap();
    let before = ms.info("a").unwrap().1;
    let upd = Info::named("a", labels(&[("k1", "new"), ("k3", "v3")]));
    let after = ms
        .update(upd.clone(), &["labels.k1".into(), "labels.k2".into()])
        .unwrap();
    assert_eq!(after.labels, labels(&[("k1", "new")]));
    assert_eq!(after.kind, Kind::Active, "kind is not updatable");
    assert_eq!(after.created, before.created);
    assert!(after.updated > before.updated);
    let after = ms.update(upd.clone(), &[]).unwrap();
    assert_eq!(after.labels, labels(&[("k1", "new"), ("k3", "v3")]));
    let e = ms.update(upd.clone(), &["parent".into()]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        e.to_string(),
        "cannot update \"parent\" field on snapshot \"a\": invalid argument"
    );
    assert_eq!(
        kind_of(ms.update(Info::named("zz", BTreeMap::new()), &[])),
        ErrorKind::NotFound
    );
    assert_eq!(ms.info("a").unwrap().1.labels, after.labels);
}

#[test]
fn walk_filters_and_orders_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let ms = open(&dir);
    ms.create(Kind::Active, "b", None, labels(&[("tier", "base")]), ok)
        .unwrap();
    commit(&ms, "b", "base");
    create(&ms, Kind::Active, "work", Some("base"));
    ms.create(
        Kind::View,
        "look",
        Some("base"),
        labels(&[("tier", "top")]),
        ok,
    )
    .unwrap();
    let names = |f: &[&str]| -> Vec<String> {
        let filter = Filter::parse_all(f).unwrap();
        ms.walk(&filter)
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect()
    };
    assert_eq!(names(&[]), ["base", "look", "work"]);
    assert_eq!(names(&["kind==committed"]), ["base"]);
    assert_eq!(names(&["parent==base"]), ["look", "work"]);
    assert_eq!(names(&["parent==base,kind==view"]), ["look"]);
    assert_eq!(names(&["kind==view", "kind==active"]), ["look", "work"]);
    assert_eq!(names(&["labels.tier==top"]), ["look"]);
    assert_eq!(
        names(&["labels.tier"]),
        ["look"],
        "commit dropped the active labels"
    );
    assert_eq!(names(&["name~=^w"]), ["work"]);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    drop(MetaStore::open(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 99u32.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let e = MetaStore::open(&path).unwrap_err();
    assert!(
        matches!(
            e,
            SnapshotError::Store(berth_redb::StoreError::SchemaTooNew { found: 99, .. })
        ),
        "{e}"
    );
}

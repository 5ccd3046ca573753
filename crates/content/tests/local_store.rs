//! Behaviour of the local store that only it can show: restart resume, on-disk leftovers.

use berth_content::LocalStore;
use berth_core::{Digest, ErrorKind};

#[test]
fn ingest_resumes_after_reopen_of_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let data = b"0123456789abcdef".repeat(1000);
    {
        let store = LocalStore::open(tmp.path()).unwrap();
        let mut w = store.writer("resume-me", data.len() as i64, None).unwrap();
        w.write(&data[..7000]).unwrap();
        // Dropped without commit: as if the daemon died.
    }
    let store = LocalStore::open(tmp.path()).unwrap();
    assert_eq!(store.status("resume-me").unwrap().offset, 7000);
    let mut w = store.writer("resume-me", 0, None).unwrap();
    assert_eq!(w.status().offset, 7000);
    assert_eq!(w.status().total, data.len() as i64);
    w.write(&data[7000..]).unwrap();
    let d = w
        .commit(data.len() as i64, Some(Digest::sha256_of(&data)))
        .unwrap();
    assert_eq!(d, Digest::sha256_of(&data));
    assert_eq!(store.read_at(&d, 0, data.len()).unwrap(), data);
    assert!(store.list_statuses().unwrap().is_empty());
}

/// As containerd's local writer: a failed commit publishes nothing and keeps the ingest, so the
/// ref resumes where it was and the commit can be retried.
#[test]
fn wrong_digest_publishes_nothing_and_keeps_the_ingest() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    let mut w = store.writer("bad", 0, None).unwrap();
    w.write(b"some bytes").unwrap();
    let wrong = Digest::sha256_of(b"other bytes");
    let err = w.commit(0, Some(wrong.clone())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    assert!(
        err.to_string().contains("unexpected commit digest"),
        "{err}"
    );
    assert!(store.walk().unwrap().is_empty());
    assert!(!store.contains(&Digest::sha256_of(b"some bytes")));
    assert_eq!(store.status("bad").unwrap().offset, 10);
    let w = store.writer("bad", 0, None).unwrap();
    assert_eq!(w.status().offset, 10);
    let d = w
        .commit(10, Some(Digest::sha256_of(b"some bytes")))
        .unwrap();
    assert!(store.contains(&d));
    assert!(store.list_statuses().unwrap().is_empty());
}

/// The time an ingest reports as updated is that of its last write, as containerd's writer.
#[test]
fn updated_at_is_the_time_of_the_last_write() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    let mut w = store.writer("timed", 0, None).unwrap();
    w.write(b"bytes").unwrap();
    let after = std::time::SystemTime::now();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(w.status().updated_at <= after);
}

#[test]
fn second_writer_on_a_ref_is_refused_until_the_first_drops() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    let w = store.writer("busy", 0, None).unwrap();
    let err = store.writer("busy", 0, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    drop(w);
    store.writer("busy", 0, None).unwrap();
}

/// As containerd's local store: Abort does not wait for the writer's lock; the live writer's
/// commit then fails.
#[test]
fn abort_discards_an_ingest_a_live_writer_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    let mut w = store.writer("held", 0, None).unwrap();
    w.write(b"partial").unwrap();
    store.abort("held").unwrap();
    assert_eq!(
        store.status("held").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(w.commit(7, None).is_err());
    assert!(store.walk().unwrap().is_empty());
}

#[test]
fn blobs_are_read_only_files_named_by_digest() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    let mut w = store.writer("ro", 0, None).unwrap();
    w.write(b"hello").unwrap();
    let d = w.commit(5, None).unwrap();
    let path = tmp.path().join("blobs/sha256").join(d.encoded());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o222, 0, "blob must not be writable: {mode:o}");
    assert_eq!(store.walk().unwrap(), vec![d]);
}

#[test]
fn the_store_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("content");
    let store = LocalStore::open(&root).unwrap();
    for d in ["", "blobs", "ingest"] {
        assert_eq!(mode(&root.join(d)), 0o700, "{d:?}");
    }
    let mut w = store.writer("private", 0, None).unwrap();
    w.write(b"secret layer").unwrap();
    let ingest = std::fs::read_dir(root.join("ingest"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(mode(&ingest.join("data")), 0o600);
    assert_eq!(mode(&ingest.join("ref.json")), 0o600);
    let d = w.commit(12, None).unwrap();
    assert_eq!(mode(&root.join("blobs/sha256").join(d.encoded())), 0o400);
}

//! berthd killed with SIGKILL mid-ingest resumes the ingest after restart; garbage collection
//! through the API removes unreferenced blobs from disk and keeps rooted, referenced and leased ones.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_core::Digest;
use berth_integration_tests::gate::have_tools;
use berth_integration_tests::{ctr, ctr_with_file, enabled, ok, wait_until, Berthd};

fn ingest_data_sizes(b: &Berthd) -> Vec<u64> {
    let dir = b.root().join("io.containerd.content.v1.content/ingest");
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::metadata(e.path().join("data")).ok())
                .map(|m| m.len())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ingest_interrupted_by_kill9_resumes_after_restart() {
    if !enabled("ingest_interrupted_by_kill9_resumes_after_restart")
        || !have_tools(
            "ingest_interrupted_by_kill9_resumes_after_restart",
            &["ctr"],
        )
    {
        return;
    }
    let mut b = Berthd::start();
    let data: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let d = Digest::sha256_of(&data).to_string();
    let size = data.len().to_string();
    let args = [
        "content",
        "ingest",
        "--expected-size",
        &size,
        "--expected-digest",
        &d,
        "resume-ref",
    ];
    // First attempt: feed 3 MiB through a pipe and keep the pipe open, so ctr waits mid-ingest.
    let mut first = Command::new("ctr")
        .arg("--address")
        .arg(b.address())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctr");
    let mut stdin = first.stdin.take().unwrap();
    stdin.write_all(&data[..3 * 1024 * 1024]).unwrap();
    stdin.flush().unwrap();
    wait_until(Duration::from_secs(20), "the ingest to reach 1 MiB", || {
        ingest_data_sizes(&b).iter().any(|&s| s >= 1024 * 1024)
    });
    b.kill9();
    let _ = first.kill();
    let _ = first.wait();
    drop(stdin);
    let offset = ingest_data_sizes(&b)[0];
    assert!(offset > 0 && offset < data.len() as u64);

    b.restart();
    let active = ok(
        b.ctr("default", &["content", "active"]),
        "ctr content active",
    );
    assert!(
        active.contains("resume-ref"),
        "ingest lost across restart: {active}"
    );

    // Resume from a file whose first `offset` bytes are zeros: only a writer that resumes at
    // the stored offset (and skips them) produces the expected digest.
    let file = b.dir.path().join("resume-input");
    let mut patched = vec![0u8; offset as usize];
    patched.extend_from_slice(&data[offset as usize..]);
    std::fs::write(&file, &patched).unwrap();
    ok(
        ctr_with_file(&b.address(), "default", &args, &file),
        "resumed ctr content ingest",
    );
    let got = b.ctr("default", &["content", "get", &d]);
    assert!(
        got.status.success() && got.stdout == data,
        "resumed blob differs"
    );
    let active = ok(
        b.ctr("default", &["content", "active"]),
        "ctr content active",
    );
    assert!(!active.contains("resume-ref"), "{active}");
}

#[test]
fn gc_removes_unreferenced_blobs_and_keeps_rooted_and_referenced() {
    if !enabled("gc_removes_unreferenced_blobs_and_keeps_rooted_and_referenced")
        || !have_tools(
            "gc_removes_unreferenced_blobs_and_keeps_rooted_and_referenced",
            &["ctr"],
        )
    {
        return;
    }
    let b = Berthd::start();
    let a = b.address();
    let put = |name: &str| -> String {
        let bytes = format!("blob {name}");
        ok(
            ctr(
                &a,
                "default",
                &["content", "ingest", name],
                Some(bytes.as_bytes()),
            ),
            "ingest",
        );
        Digest::sha256_of(bytes.as_bytes()).to_string()
    };
    let plain = put("plain");
    let child = put("child");
    let root = put("root");
    let other_ns = {
        ok(
            ctr(&a, "other", &["content", "ingest", "x"], Some(b"blob root")),
            "ingest other ns",
        );
        root.clone()
    };
    ok(
        ctr(
            &a,
            "default",
            &[
                "content",
                "label",
                &root,
                "containerd.io/gc.root=2026-01-01T00:00:00Z",
                &format!("containerd.io/gc.ref.content.c={child}"),
            ],
            None,
        ),
        "label root",
    );
    let blob = |d: &str| {
        b.root()
            .join("io.containerd.content.v1.content/blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    for d in [&plain, &child, &root] {
        assert!(blob(d).exists());
    }
    // A synchronous lease deletion runs a collection before it answers.
    ok(
        ctr(
            &a,
            "default",
            &["leases", "create", "--id", "trigger"],
            None,
        ),
        "lease",
    );
    ok(
        ctr(&a, "default", &["leases", "rm", "--sync", "trigger"], None),
        "lease rm --sync",
    );
    let ls = ok(
        ctr(&a, "default", &["content", "ls", "-q"], None),
        "content ls",
    );
    assert!(!ls.contains(&plain), "unreferenced blob still listed: {ls}");
    assert!(ls.contains(&child) && ls.contains(&root), "{ls}");
    assert!(!blob(&plain).exists(), "unreferenced blob still on disk");
    assert!(blob(&child).exists() && blob(&root).exists());
    // The other namespace's unrooted record of the same bytes went, the bytes stayed.
    let ls = ok(
        ctr(&a, "other", &["content", "ls", "-q"], None),
        "content ls other",
    );
    assert!(!ls.contains(&other_ns), "{ls}");
    // The collection is observable: a log line and introspection exports.
    assert!(b.log().contains("garbage collected"), "{}", b.log());
    // Dropping the root label frees both on the next collection.
    ok(
        ctr(
            &a,
            "default",
            &["content", "label", &root, "containerd.io/gc.root="],
            None,
        ),
        "unlabel",
    );
    ok(
        ctr(&a, "default", &["leases", "create", "--id", "t2"], None),
        "lease",
    );
    ok(
        ctr(&a, "default", &["leases", "rm", "--sync", "t2"], None),
        "lease rm --sync",
    );
    assert!(!blob(&child).exists() && !blob(&root).exists());
}

//! Debian's `ctr` against berthd, and the same commands against a real containerd: the answers
//! (tables with times masked, bytes, error messages) must be the same.

use berth_integration_tests::gate::have_tools;
use berth_integration_tests::tasks::FollowedLines;
use berth_integration_tests::{ctr, enabled, fails, normalize, ok, wait_until, Berthd, Containerd};
use std::path::Path;

/// Run the same ctr command on both daemons and compare normalized stdout and success.
fn same(b: &Path, c: Option<&Path>, ns: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
    let ob = ctr(b, ns, args, stdin);
    let Some(c) = c else {
        return ok(ob, &format!("ctr {args:?} on berthd"));
    };
    let oc = ctr(c, ns, args, stdin);
    assert_eq!(
        ob.status.success(),
        oc.status.success(),
        "ctr {args:?}: berthd {} ({}) vs containerd {} ({})",
        ob.status,
        String::from_utf8_lossy(&ob.stderr),
        oc.status,
        String::from_utf8_lossy(&oc.stderr)
    );
    let (sb, sc) = (
        String::from_utf8_lossy(&ob.stdout).into_owned(),
        String::from_utf8_lossy(&oc.stdout).into_owned(),
    );
    assert_eq!(
        normalize(&sb),
        normalize(&sc),
        "ctr {args:?} stdout differs"
    );
    if !ob.status.success() {
        let (eb, ec) = (
            String::from_utf8_lossy(&ob.stderr).into_owned(),
            String::from_utf8_lossy(&oc.stderr).into_owned(),
        );
        assert_eq!(normalize(&eb), normalize(&ec), "ctr {args:?} error differs");
        return eb;
    }
    sb
}

#[test]
fn version_and_plugins() {
    if !enabled("version_and_plugins") || !have_tools("version_and_plugins", &["ctr"]) {
        return;
    }
    let b = Berthd::start();
    let v = ok(b.ctr("default", &["version"]), "ctr version");
    let server = v.split("Server:").nth(1).expect("server section");
    assert!(server.contains("Version:  v0.1.0"), "{v}");
    assert!(server.contains("Revision:"), "{v}");
    let uuid = server
        .lines()
        .find_map(|l| l.trim().strip_prefix("UUID: "))
        .expect("uuid line")
        .to_string();
    assert_eq!(uuid.len(), 36, "{uuid}");

    let plugins = ok(b.ctr("default", &["plugins", "ls"]), "ctr plugins ls");
    let rows = normalize(&plugins);
    assert_eq!(rows[0], "TYPE ID PLATFORMS STATUS");
    for want in [
        "io.containerd.content.v1 content - ok",
        "io.containerd.gc.v1 scheduler - ok",
        "io.containerd.grpc.v1 content - ok",
        "io.containerd.grpc.v1 events - ok",
        "io.containerd.grpc.v1 leases - ok",
        "io.containerd.grpc.v1 namespaces - ok",
        "io.containerd.grpc.v1 introspection - ok",
        "io.containerd.grpc.v1 version - ok",
    ] {
        assert!(
            rows.iter().any(|r| r == want),
            "missing {want:?} in {rows:#?}"
        );
    }
    let grpc = ok(
        b.ctr("default", &["plugins", "ls", "type==io.containerd.grpc.v1"]),
        "ctr plugins ls with filter",
    );
    let grpc_rows: Vec<&String> = rows
        .iter()
        .filter(|r| r.starts_with("io.containerd.grpc.v1 "))
        .collect();
    assert!(grpc_rows.len() >= 6, "{plugins}");
    assert_eq!(normalize(&grpc).len(), 1 + grpc_rows.len(), "{grpc}");

    // The UUID is persistent across restarts.
    let mut b = b;
    b.restart();
    let v2 = ok(b.ctr("default", &["version"]), "ctr version after restart");
    assert!(v2.contains(&uuid), "uuid changed: {v2}");
}

#[test]
fn namespaces_like_containerd() {
    if !enabled("namespaces_like_containerd") || !have_tools("namespaces_like_containerd", &["ctr"])
    {
        return;
    }
    let b = Berthd::start();
    let c = Containerd::start();
    let (ba, ca) = (b.address(), c.as_ref().map(|c| c.address()));
    let ca = ca.as_deref();
    same(
        &ba,
        ca,
        "default",
        &["namespaces", "create", "itns", "a=1"],
        None,
    );
    same(
        &ba,
        ca,
        "default",
        &["namespaces", "label", "itns", "b=2"],
        None,
    );
    same(&ba, ca, "default", &["namespaces", "create", "other"], None);
    let ls = same(&ba, ca, "default", &["namespaces", "ls"], None);
    assert_eq!(normalize(&ls), vec!["NAME LABELS", "itns a=1,b=2", "other"]);
    same(&ba, ca, "default", &["namespaces", "ls", "-q"], None);
    same(
        &ba,
        ca,
        "default",
        &["namespaces", "label", "itns", "a="],
        None,
    );
    let ls = same(&ba, ca, "default", &["namespaces", "ls"], None);
    assert_eq!(normalize(&ls), vec!["NAME LABELS", "itns b=2", "other"]);
    same(&ba, ca, "default", &["namespaces", "create", "itns"], None);
    same(
        &ba,
        ca,
        "default",
        &["namespaces", "create", "bad/name"],
        None,
    );
    // A namespace holding content cannot be removed.
    same(
        &ba,
        ca,
        "itns",
        &["content", "ingest", "r"],
        Some(b"in itns"),
    );
    let err = same(&ba, ca, "default", &["namespaces", "rm", "itns"], None);
    assert!(err.contains("must be empty"), "{err}");
    let d = "sha256:".to_string() + &sha256_hex(b"in itns");
    same(&ba, ca, "itns", &["content", "rm", &d], None);
    same(
        &ba,
        ca,
        "default",
        &["namespaces", "rm", "itns", "other"],
        None,
    );
    same(&ba, ca, "default", &["namespaces", "rm", "itns"], None);
    same(&ba, ca, "default", &["namespaces", "ls"], None);
}

fn sha256_hex(data: &[u8]) -> String {
    berth_core::Digest::sha256_of(data).encoded().to_string()
}

#[test]
fn content_like_containerd() {
    if !enabled("content_like_containerd") || !have_tools("content_like_containerd", &["ctr"]) {
        return;
    }
    let b = Berthd::start();
    let c = Containerd::start();
    let (ba, ca) = (b.address(), c.as_ref().map(|c| c.address()));
    let ca = ca.as_deref();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let d = format!("sha256:{}", sha256_hex(&data));
    same(
        &ba,
        ca,
        "default",
        &["content", "ingest", "ref-1"],
        Some(&data),
    );
    let ls = same(&ba, ca, "default", &["content", "ls"], None);
    assert!(ls.contains(&d), "{ls}");
    assert!(normalize(&ls)[1].contains(" 3MB "), "{ls}");
    // Bytes come back identical.
    let got = b.ctr("default", &["content", "get", &d]);
    assert!(got.status.success());
    assert!(got.stdout == data, "content get returned other bytes");
    same(
        &ba,
        ca,
        "default",
        &["content", "label", &d, "foo=bar", "x.y=z"],
        None,
    );
    same(&ba, ca, "default", &["content", "ls"], None);
    let f = same(
        &ba,
        ca,
        "default",
        &["content", "ls", "labels.foo==bar"],
        None,
    );
    assert_eq!(normalize(&f).len(), 2, "{f}");
    let f = same(
        &ba,
        ca,
        "default",
        &["content", "ls", "labels.foo==nope"],
        None,
    );
    assert_eq!(normalize(&f).len(), 1, "{f}");
    same(&ba, ca, "default", &["content", "label", &d, "foo="], None);
    same(&ba, ca, "default", &["content", "ls", "-q"], None);
    // Another namespace does not see it.
    same(&ba, ca, "elsewhere", &["content", "ls", "-q"], None);
    same(&ba, ca, "elsewhere", &["content", "get", &d], None);
    // Ingesting with a wrong expected digest fails alike and keeps nothing.
    let wrong = format!("sha256:{}", sha256_hex(b"not this"));
    let err = same(
        &ba,
        ca,
        "default",
        &["content", "ingest", "--expected-digest", &wrong, "bad-ref"],
        Some(b"these bytes"),
    );
    assert!(err.contains("unexpected commit digest"), "{err}");
    // As containerd (issue #14): a rejected commit keeps the ingest, so the commit can be retried.
    same(&ba, ca, "default", &["content", "active"], None);
    same(&ba, ca, "default", &["content", "rm", &d], None);
    same(&ba, ca, "default", &["content", "ls"], None);
    same(&ba, ca, "default", &["content", "get", &d], None);
    same(&ba, ca, "default", &["content", "rm", &d], None);
}

#[test]
fn leases_like_containerd() {
    if !enabled("leases_like_containerd") || !have_tools("leases_like_containerd", &["ctr"]) {
        return;
    }
    let b = Berthd::start();
    let c = Containerd::start();
    let (ba, ca) = (b.address(), c.as_ref().map(|c| c.address()));
    let ca = ca.as_deref();
    let out = same(
        &ba,
        ca,
        "default",
        &["leases", "create", "--id", "lid", "a=b"],
        None,
    );
    assert_eq!(out.trim(), "lid");
    same(
        &ba,
        ca,
        "default",
        &["leases", "create", "--id", "l2", "--expires", "1h"],
        None,
    );
    let ls = same(&ba, ca, "default", &["leases", "ls"], None);
    assert_eq!(
        normalize(&ls),
        vec![
            "ID CREATED AT LABELS",
            "l2 TIME containerd.io/gc.expire=TIME",
            "lid TIME a=b,containerd.io/gc.expire=TIME"
        ]
    );
    same(&ba, ca, "default", &["leases", "ls", "-q"], None);
    same(&ba, ca, "default", &["leases", "ls", "id==l2"], None);
    same(
        &ba,
        ca,
        "default",
        &["leases", "create", "--id", "lid"],
        None,
    );
    same(&ba, ca, "default", &["leases", "rm", "lid", "l2"], None);
    same(&ba, ca, "default", &["leases", "rm", "lid"], None);
    same(&ba, ca, "default", &["leases", "ls"], None);
    // Without --id the server picks one.
    let id = ok(b.ctr("default", &["leases", "create"]), "ctr leases create");
    assert!(!id.trim().is_empty());
    let ls = ok(b.ctr("default", &["leases", "ls", "-q"]), "ctr leases ls");
    assert_eq!(ls.trim(), id.trim());
}

/// `ctr events` subscribed to one daemon sees what another ctr does there; the topics seen are
/// the same on berthd and containerd.
#[test]
fn events_seen_by_another_ctr() {
    if !enabled("events_seen_by_another_ctr") || !have_tools("events_seen_by_another_ctr", &["ctr"])
    {
        return;
    }
    fn topics(address: &Path) -> Vec<String> {
        // Subscribed for sure before anything happens (its probe events, in namespace
        // `evtprobe`, are left out below).
        let mut cmd = std::process::Command::new("ctr");
        cmd.arg("--address").arg(address).arg("events");
        let sub = FollowedLines::spawn_events(cmd, address, "evtprobe");
        ok(
            ctr(address, "default", &["namespaces", "create", "evt"], None),
            "ns create",
        );
        ok(
            ctr(
                address,
                "default",
                &["namespaces", "label", "evt", "k=v"],
                None,
            ),
            "ns label",
        );
        ok(
            ctr(
                address,
                "evt",
                &["content", "ingest", "r"],
                Some(b"event bytes"),
            ),
            "ingest",
        );
        let d = format!("sha256:{}", sha256_hex(b"event bytes"));
        ok(
            ctr(address, "evt", &["content", "rm", &d], None),
            "content rm",
        );
        ok(
            ctr(address, "default", &["namespaces", "rm", "evt"], None),
            "ns rm",
        );
        wait_until(
            std::time::Duration::from_secs(10),
            "the namespace delete event of evt",
            || sub.text().contains(" evt /namespaces/delete "),
        );
        sub.text()
            .lines()
            .filter_map(|l| {
                // "<date> <time> <tz> <tz> <namespace> <topic> <json>"
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 6 && f[4] != "evtprobe").then(|| format!("{} {}", f[4], f[5]))
            })
            .collect()
    }
    let b = Berthd::start();
    let got = topics(&b.address());
    assert_eq!(
        got,
        vec![
            "default /namespaces/create",
            "default /namespaces/update",
            "evt /content/delete",
            "evt /namespaces/delete"
        ]
    );
    if let Some(c) = Containerd::start() {
        assert_eq!(got, topics(&c.address()), "containerd saw other events");
    }
}

#[test]
fn missing_namespace_header_is_refused_like_containerd() {
    if !enabled("missing_namespace_header_is_refused_like_containerd")
        || !have_tools(
            "missing_namespace_header_is_refused_like_containerd",
            &["ctr"],
        )
    {
        return;
    }
    // ctr always sends a namespace; an empty one must be refused the same way.
    let b = Berthd::start();
    let c = Containerd::start();
    let ca = c.as_ref().map(|c| c.address());
    let err = same(&b.address(), ca.as_deref(), "", &["content", "ls"], None);
    assert!(!err.is_empty());
    let _ = fails(b.ctr("", &["leases", "ls"]), "leases ls without namespace");
}

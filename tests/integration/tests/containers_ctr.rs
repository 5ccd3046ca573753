//! Containers through berthd, driven by Debian's `ctr`: create, list (with filters), info,
//! label (a field-masked update), remove, with their events; a container keeps its root
//! filesystem through garbage collection, even once its image is deleted; and the same commands
//! against a real containerd give the same answers (records and error messages).

use std::process::Output;

use berth_integration_tests::gate::have_tools;
use berth_integration_tests::registry::TestImages;
use berth_integration_tests::tasks::FollowedLines;
use berth_integration_tests::{ctr, enabled, fails, normalize, ok, wait_until, Berthd, Containerd};

const IMAGE: &str = "docker.io/library/busybox:latest";

fn import(address: &std::path::Path, ns: &str) {
    let archive = TestImages::get().archive("busybox");
    ok(
        ctr(
            address,
            ns,
            &["images", "import", archive.to_str().unwrap()],
            None,
        ),
        "ctr images import",
    );
}

fn info(out: Output) -> serde_json::Value {
    serde_json::from_str(&ok(out, "ctr containers info")).expect("ctr c info prints JSON")
}

#[test]
fn create_list_label_remove_and_gc() {
    if !enabled("create_list_label_remove_and_gc")
        || !have_tools("create_list_label_remove_and_gc", &["ctr"])
    {
        return;
    }
    let ns = "berth-containers";
    let b = Berthd::start();
    import(&b.address(), ns);
    let mut cmd = std::process::Command::new("ctr");
    cmd.arg("--address")
        .arg(b.address())
        .args(["--namespace", ns, "events"]);
    let events = FollowedLines::spawn_events(cmd, &b.address(), ns);

    ok(
        b.ctr(
            ns,
            &["containers", "create", "--label", "app=web", IMAGE, "c1"],
        ),
        "ctr c create c1",
    );
    ok(
        b.ctr(ns, &["containers", "create", IMAGE, "c2"]),
        "ctr c create c2",
    );
    let err = fails(
        b.ctr(ns, &["containers", "create", IMAGE, "c1"]),
        "create c1 twice",
    );
    // ctr prepares the snapshot first, so that is what already exists (as with containerd).
    assert!(err.contains("\"c1\": already exists"), "{err}");

    let ls = ok(b.ctr(ns, &["containers", "ls"]), "ctr c ls");
    assert_eq!(
        normalize(&ls),
        vec![
            "CONTAINER IMAGE RUNTIME".to_string(),
            format!("c1 {IMAGE} io.containerd.runc.v2"),
            format!("c2 {IMAGE} io.containerd.runc.v2"),
        ]
    );
    assert_eq!(
        ok(
            b.ctr(ns, &["containers", "ls", "-q", "labels.app==web"]),
            "ctr c ls filter"
        ),
        "c1\n"
    );
    assert_eq!(
        ok(
            b.ctr(ns, &["containers", "ls", "-q", "id==c2"]),
            "ctr c ls filter"
        ),
        "c2\n"
    );

    let c1 = info(b.ctr(ns, &["containers", "info", "c1"]));
    assert_eq!(c1["ID"], "c1");
    assert_eq!(c1["Image"], IMAGE);
    assert_eq!(c1["Runtime"]["Name"], "io.containerd.runc.v2");
    assert_eq!(c1["Snapshotter"], "overlayfs");
    assert_eq!(c1["SnapshotKey"], "c1");
    assert_eq!(c1["Labels"]["app"], "web");
    assert!(c1["Spec"]["process"]["args"].is_array(), "{c1}");
    assert!(c1["Spec"]["root"]["path"].is_string(), "{c1}");

    // A field-masked update of one label keeps the others.
    ok(
        b.ctr(ns, &["containers", "label", "c1", "tier=front"]),
        "ctr c label",
    );
    let c1 = info(b.ctr(ns, &["containers", "info", "c1"]));
    assert_eq!(c1["Labels"]["app"], "web");
    assert_eq!(c1["Labels"]["tier"], "front");
    assert_ne!(c1["CreatedAt"], c1["UpdatedAt"]);

    // The collector keeps a container's snapshot (the lease ctr created it under is gone),
    // even after the image is deleted.
    ok(
        b.ctr(ns, &["images", "rm", "--sync", IMAGE]),
        "ctr images rm",
    );
    let snaps = ok(b.ctr(ns, &["snapshots", "ls"]), "ctr snapshots ls");
    assert!(snaps.lines().any(|l| l.starts_with("c1 ")), "{snaps}");
    assert!(snaps.lines().any(|l| l.starts_with("c2 ")), "{snaps}");
    // Namespaces with containers are not empty.
    let err = fails(b.ctr("default", &["namespaces", "rm", ns]), "ns rm");
    assert!(err.contains("containers"), "{err}");

    // Removing the container removes its snapshot (ctr asks); the rest becomes garbage.
    ok(b.ctr(ns, &["containers", "rm", "c1", "c2"]), "ctr c rm");
    let err = fails(b.ctr(ns, &["containers", "info", "c1"]), "info c1");
    assert!(
        err.contains(&format!(
            "container \"c1\" in namespace \"{ns}\": not found"
        )),
        "{err}"
    );
    ok(b.ctr(ns, &["containers", "ls"]), "ctr c ls");
    // One more collection (a lease removed with --sync runs one), then nothing is left.
    ok(
        b.ctr(ns, &["leases", "create", "--id", "gc-now"]),
        "ctr leases create",
    );
    ok(
        b.ctr(ns, &["leases", "delete", "--sync", "gc-now"]),
        "ctr leases delete --sync",
    );
    let snaps = ok(b.ctr(ns, &["snapshots", "ls"]), "ctr snapshots ls");
    assert_eq!(snaps.lines().count(), 1, "{snaps}");

    wait_until(
        std::time::Duration::from_secs(10),
        "the delete event of c1",
        || events.text().contains("/containers/delete {\"id\":\"c1\"}"),
    );
    let events = events.text();
    for want in [
        "/containers/create {\"id\":\"c1\"",
        "/containers/update {\"id\":\"c1\"",
        "/containers/delete {\"id\":\"c1\"}",
    ] {
        assert!(events.contains(want), "no {want} in:\n{events}");
    }
}

/// The same ctr command on both daemons: success and normalized output must match.
fn same(b: &Berthd, c: &Containerd, ns: &str, args: &[&str]) -> (String, String) {
    let (ob, oc) = (b.ctr(ns, args), c.ctr(ns, args));
    let text = |o: &Output| {
        let stream = if o.status.success() {
            &o.stdout
        } else {
            &o.stderr
        };
        String::from_utf8_lossy(stream).into_owned()
    };
    let (tb, tc) = (text(&ob), text(&oc));
    assert_eq!(
        ob.status.success(),
        oc.status.success(),
        "ctr {args:?}: berthd {tb} vs containerd {tc}"
    );
    (tb, tc)
}

#[test]
fn containers_match_containerd() {
    if !enabled("containers_match_containerd")
        || !have_tools("containers_match_containerd", &["ctr"])
    {
        return;
    }
    let Some(c) = Containerd::start() else {
        return;
    };
    let b = Berthd::start();
    let ns = "berth-containers-sbs";
    import(&b.address(), ns);
    import(&c.address(), ns);
    for args in [
        &["containers", "create", "--label", "a=b", IMAGE, "s1"][..],
        &["containers", "create", IMAGE, "s1"],
        &["containers", "label", "s1", "c=d"],
        &["containers", "info", "missing"],
        &["containers", "rm", "missing"],
    ] {
        let (tb, tc) = same(&b, &c, ns, args);
        assert_eq!(normalize(&tb), normalize(&tc), "ctr {args:?}");
    }
    let (tb, tc) = same(&b, &c, ns, &["containers", "ls"]);
    assert_eq!(normalize(&tb), normalize(&tc));
    // The whole record, times aside.
    let strip = |s: &str| {
        let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("CreatedAt");
        o.remove("UpdatedAt");
        v
    };
    let (tb, tc) = same(&b, &c, ns, &["containers", "info", "s1"]);
    assert_eq!(strip(&tb), strip(&tc));
    same(&b, &c, ns, &["containers", "rm", "s1"]);
    let (tb, tc) = same(&b, &c, ns, &["containers", "ls", "-q"]);
    assert_eq!((tb.as_str(), tc.as_str()), ("", ""));
}

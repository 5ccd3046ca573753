//! `berth pull` against a real registry (Debian's docker-registry on 127.0.0.1, plain HTTP),
//! checked with Debian's `ctr` as the independent client: the image record and its digest, the
//! content and its garbage-collection labels, no lease or ingest left over, the unpacked
//! snapshots (which survive a collection), a container run from the pulled image, an idempotent
//! second pull, removal that frees everything; the exact tree of the `layers` image with the
//! overlayfs and native snapshotters; `--no-unpack`, a pull by digest, and errors for a missing
//! tag or repository and for a registry that is not there; an index with two platforms, with
//! the host's, `--platform` and `--all-platforms`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_integration_tests::cli::{
    berth, blob_path, image_digest, manifest_parts, read_json, rows, setup_registry, TwoPlatforms,
};
use berth_integration_tests::registry::check_tree;
use berth_integration_tests::tasks::TaskCleanup;
use berth_integration_tests::{fails, ok, Berthd};

/// The line of `ctr images check` for `name`.
fn check_line(b: &Berthd, ns: &str, name: &str) -> String {
    let check = ok(b.ctr(ns, &["images", "check"]), "ctr images check");
    check
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in `ctr images check`:\n{check}"))
        .to_string()
}

/// Assert `ctr images check` says `name` is complete, and unpacked or not.
fn assert_complete(b: &Berthd, ns: &str, name: &str, unpacked: bool) {
    let line = check_line(b, ns, name);
    let want = if unpacked { "true" } else { "false" };
    assert!(
        line.contains("complete") && line.trim_end().ends_with(want),
        "want complete and unpacked={want}: {line}"
    );
}

/// Assert no lease and no unfinished ingest is left in `ns`.
fn assert_no_lease_or_ingest(b: &Berthd, ns: &str, after: &str) {
    let leases = ok(b.ctr(ns, &["leases", "ls", "-q"]), "ctr leases ls -q");
    assert!(
        leases.trim().is_empty(),
        "leases left after {after}: {leases}"
    );
    let active = ok(b.ctr(ns, &["content", "active"]), "ctr content active");
    assert!(
        rows(&active).is_empty(),
        "ingests left after {after}: {active}"
    );
}

/// The digests `ctr content ls -q` lists.
fn content_digests(b: &Berthd, ns: &str) -> BTreeSet<String> {
    let ls = ok(b.ctr(ns, &["content", "ls", "-q"]), "ctr content ls -q");
    ls.split_whitespace().map(str::to_string).collect()
}

/// The line of `ctr content ls` for `digest` (labels are in its last column).
fn content_line(b: &Berthd, ns: &str, digest: &str) -> String {
    let ls = ok(b.ctr(ns, &["content", "ls"]), "ctr content ls");
    ls.lines()
        .find(|l| l.split_whitespace().next() == Some(digest))
        .unwrap_or_else(|| panic!("{digest} not in `ctr content ls`:\n{ls}"))
        .to_string()
}

/// Whether a `ctr content ls` line has a `containerd.io/gc.ref.content.m.<i>` label (containerd
/// numbers them by position in the index) whose value is `manifest`.
fn refs_manifest(line: &str, manifest: &str) -> bool {
    let labels = line.split_whitespace().last().unwrap_or_default();
    labels.split(',').any(|kv| {
        kv.split_once('=').is_some_and(|(k, v)| {
            k.strip_prefix("containerd.io/gc.ref.content.m.")
                .is_some_and(|i| i.parse::<u32>().is_ok())
                && v == manifest
        })
    })
}

/// The snapshots of `ns` in `snapshotter`, as `[key, (parent,) kind]` rows.
fn snapshots(b: &Berthd, ns: &str, snapshotter: &str) -> Vec<Vec<String>> {
    let ls = ok(
        b.ctr(ns, &["snapshots", "--snapshotter", snapshotter, "ls"]),
        "ctr snapshots ls",
    );
    rows(&ls)
}

/// How many of them are committed.
fn committed(snaps: &[Vec<String>]) -> usize {
    snaps
        .iter()
        .filter(|r| r.last().map(String::as_str) == Some("Committed"))
        .count()
}

/// Run a garbage collection and wait for it: delete a fresh lease with `--sync`.
fn sync_gc(b: &Berthd, ns: &str) {
    ok(
        b.ctr(ns, &["leases", "create", "--id", "berth-pull-gc-now"]),
        "ctr leases create",
    );
    ok(
        b.ctr(ns, &["leases", "rm", "--sync", "berth-pull-gc-now"]),
        "ctr leases rm --sync",
    );
}

fn files_under(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// `berth image mount` on a temp dir; `berth image unmount` (or a lazy umount) when dropped.
struct Mounted<'a> {
    b: &'a Berthd,
    ns: &'a str,
    dir: tempfile::TempDir,
}

impl<'a> Mounted<'a> {
    fn new(b: &'a Berthd, ns: &'a str, name: &str) -> Mounted<'a> {
        let dir = tempfile::Builder::new()
            .prefix("berth-pull-mount-")
            .tempdir()
            .expect("tempdir");
        let target = dir.path().to_str().expect("utf-8 path").to_string();
        let m = Mounted { b, ns, dir };
        ok(
            berth(b, ns, &["image", "mount", name, &target]),
            "berth image mount",
        );
        m
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let target = self.dir.path().to_str().unwrap_or_default().to_string();
        let out = berth(self.b, self.ns, &["image", "unmount", &target]);
        if !out.status.success() {
            let _ = Command::new("umount").arg("-l").arg(&target).status();
        }
    }
}

/// `ctr images mount --snapshotter S` on a temp dir; unmounted (with `--rm`) when dropped.
struct CtrMounted<'a> {
    b: &'a Berthd,
    ns: &'a str,
    snapshotter: &'a str,
    dir: tempfile::TempDir,
}

impl<'a> CtrMounted<'a> {
    fn new(b: &'a Berthd, ns: &'a str, snapshotter: &'a str, name: &str) -> CtrMounted<'a> {
        let dir = tempfile::Builder::new()
            .prefix("berth-pull-ctr-mount-")
            .tempdir()
            .expect("tempdir");
        let target = dir.path().to_str().expect("utf-8 path").to_string();
        let m = CtrMounted {
            b,
            ns,
            snapshotter,
            dir,
        };
        ok(
            b.ctr(
                ns,
                &[
                    "images",
                    "mount",
                    "--snapshotter",
                    snapshotter,
                    name,
                    &target,
                ],
            ),
            "ctr images mount",
        );
        m
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for CtrMounted<'_> {
    fn drop(&mut self) {
        let target = self.dir.path().to_str().unwrap_or_default().to_string();
        let out = self.b.ctr(
            self.ns,
            &[
                "images",
                "unmount",
                "--snapshotter",
                self.snapshotter,
                "--rm",
                &target,
            ],
        );
        if !out.status.success() {
            let _ = Command::new("umount").arg("-l").arg(&target).status();
        }
    }
}

#[test]
fn berth_pull_then_run() {
    let ns = "berth-pull-run";
    let Some((reg, images)) = setup_registry(
        "berth_pull_then_run",
        &["ctr", "runc", "containerd-shim-runc-v2"],
    ) else {
        return;
    };
    reg.push_oci_layout(&images.layout("busybox"), "busybox:latest");
    let b = Berthd::start();
    let _tasks = TaskCleanup::new(b.address(), ns);
    let name = reg.reference("busybox:latest");
    let digest = reg
        .manifest_digest("busybox", "latest")
        .expect("busybox:latest pushed");
    assert_eq!(digest, images.manifest_digest("busybox"), "skopeo kept it");
    let (config, layers) = manifest_parts(&images.layout("busybox"), &digest);

    let stdout = ok(berth(&b, ns, &["pull", &name]), "berth pull");
    assert!(
        stdout.contains(&digest),
        "stdout does not name {digest}:\n{stdout}"
    );

    // The record, complete and unpacked; the pull's lease is gone, no ingest is left.
    assert_eq!(
        image_digest(&b, ns, &name).as_deref(),
        Some(digest.as_str())
    );
    assert_complete(&b, ns, &name, true);
    assert_no_lease_or_ingest(&b, ns, "berth pull");

    // Exactly the manifest, config and layers, with containerd's labels.
    let mut want: BTreeSet<String> = layers.iter().cloned().collect();
    want.insert(digest.clone());
    want.insert(config.clone());
    assert_eq!(content_digests(&b, ns), want);
    let manifest = content_line(&b, ns, &digest);
    assert!(
        manifest.contains(&format!("containerd.io/gc.ref.content.config={config}")),
        "manifest lacks the config gc.ref label: {manifest}"
    );
    for (i, layer) in layers.iter().enumerate() {
        assert!(
            manifest.contains(&format!("containerd.io/gc.ref.content.l.{i}={layer}")),
            "manifest lacks the gc.ref label of layer {i}: {manifest}"
        );
    }
    // containerd (1.6, 1.7) keys the source by the host without the port; berth does the same.
    let source = "containerd.io/distribution.source.127.0.0.1=busybox";
    for d in &want {
        let line = content_line(&b, ns, d);
        let labels = line.split_whitespace().last().unwrap_or_default();
        assert!(
            labels.split(',').any(|l| l == source),
            "{d} lacks the label {source}: {line}"
        );
    }
    // The unpacked layers carry their diff IDs, as containerd's unpacker leaves them.
    let config_json = read_json(&blob_path(&images.layout("busybox"), &config));
    let diff_ids = config_json["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), layers.len());
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let line = content_line(&b, ns, layer);
        let want = format!("containerd.io/uncompressed={}", diff_id.as_str().unwrap());
        assert!(line.contains(&want), "layer {layer} lacks {want}: {line}");
    }

    // One committed snapshot per layer, and they (and the content) survive a collection:
    // the image holds them through its labels, not through a lease.
    let before_gc = snapshots(&b, ns, "overlayfs");
    assert_eq!(committed(&before_gc), layers.len(), "{before_gc:?}");
    sync_gc(&b, ns);
    assert_eq!(snapshots(&b, ns, "overlayfs"), before_gc, "after a GC");
    assert_eq!(content_digests(&b, ns), want, "content after a GC");
    assert_complete(&b, ns, &name, true);

    // A container from the pulled image.
    let out = berth(&b, ns, &["run", "--rm", &name, "echo", "hi"]);
    assert_eq!(ok(out, "berth run --rm <pulled> echo hi"), "hi\n");

    // Pulling again changes nothing.
    let stdout = ok(berth(&b, ns, &["pull", &name]), "second berth pull");
    assert!(stdout.contains(&digest), "{stdout}");
    assert_eq!(
        image_digest(&b, ns, &name).as_deref(),
        Some(digest.as_str())
    );
    assert_complete(&b, ns, &name, true);
    assert_no_lease_or_ingest(&b, ns, "the second berth pull");
    assert_eq!(
        content_digests(&b, ns),
        want,
        "content after the second pull"
    );
    assert_eq!(snapshots(&b, ns, "overlayfs"), before_gc);

    // Removing the image frees everything: records, blobs and snapshots.
    let containers = ok(b.ctr(ns, &["containers", "ls", "-q"]), "ctr containers ls");
    assert!(containers.trim().is_empty(), "run --rm left: {containers}");
    ok(
        b.ctr(ns, &["images", "rm", "--sync", &name]),
        "ctr images rm --sync",
    );
    assert!(image_digest(&b, ns, &name).is_none());
    let left = content_digests(&b, ns);
    assert!(left.is_empty(), "content left: {left:?}");
    let snaps = snapshots(&b, ns, "overlayfs");
    assert!(snaps.is_empty(), "snapshots left: {snaps:?}");
    let blobs = b
        .root()
        .join("io.containerd.content.v1.content/blobs/sha256");
    assert!(files_under(&blobs).is_empty(), "blobs left on disk");
}

#[test]
fn berth_pull_layers_matches_expected_tree() {
    let ns = "berth-pull-layers";
    let ns_native = "berth-pull-layers-native";
    let Some((reg, images)) = setup_registry("berth_pull_layers_matches_expected_tree", &["ctr"])
    else {
        return;
    };
    reg.push_oci_layout(&images.layout("layers"), "layers:latest");
    let b = Berthd::start();
    let name = reg.reference("layers:latest");
    let digest = images.manifest_digest("layers");
    let (_, layers) = manifest_parts(&images.layout("layers"), &digest);

    ok(berth(&b, ns, &["pull", &name]), "berth pull");
    assert_eq!(
        image_digest(&b, ns, &name).as_deref(),
        Some(digest.as_str())
    );
    assert_complete(&b, ns, &name, true);
    assert_no_lease_or_ingest(&b, ns, "berth pull");
    let snaps = snapshots(&b, ns, "overlayfs");
    assert_eq!(committed(&snaps), layers.len(), "{snaps:?}");
    {
        let m = Mounted::new(&b, ns, &name);
        if let Err(diff) = check_tree(m.path(), &images.expected()) {
            panic!("pulled layers image differs from EXPECTED.json:\n{diff}");
        }
    }

    // With --snapshotter native: unpacked there only, and the same tree.
    ok(
        berth(&b, ns_native, &["pull", "--snapshotter", "native", &name]),
        "berth pull --snapshotter native",
    );
    assert_no_lease_or_ingest(&b, ns_native, "berth pull --snapshotter native");
    let native = snapshots(&b, ns_native, "native");
    assert_eq!(committed(&native), layers.len(), "{native:?}");
    let overlay = snapshots(&b, ns_native, "overlayfs");
    assert!(
        overlay.is_empty(),
        "unpacked into overlayfs too: {overlay:?}"
    );
    let m = CtrMounted::new(&b, ns_native, "native", &name);
    if let Err(diff) = check_tree(m.path(), &images.expected()) {
        panic!("layers image pulled into native differs from EXPECTED.json:\n{diff}");
    }
}

#[test]
fn berth_pull_no_unpack_and_errors() {
    let ns = "berth-pull-errors";
    let Some((reg, images)) = setup_registry("berth_pull_no_unpack_and_errors", &["ctr"]) else {
        return;
    };
    reg.push_oci_layout(&images.layout("busybox"), "busybox:latest");
    let b = Berthd::start();
    let name = reg.reference("busybox:latest");
    let digest = images.manifest_digest("busybox");

    // --no-unpack (and --plain-http, which 127.0.0.1 does not need): content, no snapshots.
    ok(
        berth(&b, ns, &["pull", "--no-unpack", "--plain-http", &name]),
        "berth pull --no-unpack --plain-http",
    );
    assert_eq!(
        image_digest(&b, ns, &name).as_deref(),
        Some(digest.as_str())
    );
    assert_complete(&b, ns, &name, false);
    assert_no_lease_or_ingest(&b, ns, "berth pull --no-unpack");
    let snaps = snapshots(&b, ns, "overlayfs");
    assert!(snaps.is_empty(), "--no-unpack unpacked: {snaps:?}");

    // By digest: the image is named by the reference with its digest.
    let by_digest = reg.reference(&format!("busybox@{digest}"));
    ok(
        berth(&b, ns, &["pull", "--no-unpack", &by_digest]),
        "berth pull NAME@DIGEST",
    );
    assert_eq!(
        image_digest(&b, ns, &by_digest).as_deref(),
        Some(digest.as_str())
    );
    assert_no_lease_or_ingest(&b, ns, "berth pull NAME@DIGEST");

    // A tag or a repository the registry does not have.
    let before = ok(b.ctr(ns, &["images", "ls", "-q"]), "ctr images ls -q");
    for (missing, what) in [
        ("busybox:nosuchtag", "nosuchtag"),
        ("nosuchrepo:latest", "nosuchrepo"),
    ] {
        let reference = reg.reference(missing);
        let err = fails(
            berth(&b, ns, &["pull", &reference]),
            "pull of a missing tag",
        );
        assert!(
            err.to_lowercase().contains("not found"),
            "{reference}: no 'not found' in: {err}"
        );
        assert!(
            err.contains(what),
            "{reference}: error does not name it: {err}"
        );
        assert_no_lease_or_ingest(&b, ns, "a failed pull");
    }

    // A registry that is not there: a port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port();
    let host = format!("127.0.0.1:{dead}");
    let started = Instant::now();
    let err = fails(
        berth(&b, ns, &["pull", &format!("{host}/busybox:latest")]),
        "pull from a port nothing listens on",
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?} to give up on a refused connection",
        started.elapsed()
    );
    assert!(!err.trim().is_empty(), "no error on stderr");
    assert!(err.contains(&host), "error does not name {host}: {err}");
    assert_no_lease_or_ingest(&b, ns, "a pull from nowhere");

    // The failures created no image.
    assert_eq!(
        ok(b.ctr(ns, &["images", "ls", "-q"]), "ctr images ls -q"),
        before
    );
}

#[test]
fn berth_pull_index_picks_platform() {
    let Some((reg, images)) = setup_registry("berth_pull_index_picks_platform", &["ctr"]) else {
        return;
    };
    // An OCI layout with an index of two images: busybox for the host's platform, and the
    // `layers` image (its config saying so) for another.
    let multi = TwoPlatforms::build(images);
    let dir = multi.dir.path();
    let host_manifest = multi.host_manifest.clone();
    let (host_config, host_layers) = manifest_parts(dir, &host_manifest);
    let other_manifest = multi.other_manifest.clone();
    let (other_config, other_layers) = manifest_parts(dir, &other_manifest);
    let index_digest = multi.index.clone();
    let other_arch = &multi.other_arch;
    let name = reg.reference("multi:latest");
    multi.push(&name);
    assert_eq!(
        reg.manifest_digest("multi", "latest").as_deref(),
        Some(index_digest.as_str()),
        "the registry serves the index"
    );
    let b = Berthd::start();
    let all = |v: &[&String]| -> BTreeSet<String> { v.iter().map(|s| s.to_string()).collect() };

    // Default: the host's image only, unpacked; the index labels the manifest it holds.
    let ns = "berth-pull-index";
    ok(berth(&b, ns, &["pull", &name]), "berth pull of an index");
    assert_eq!(
        image_digest(&b, ns, &name).as_deref(),
        Some(index_digest.as_str())
    );
    assert_complete(&b, ns, &name, true);
    assert_no_lease_or_ingest(&b, ns, "berth pull of an index");
    let mut want = all(&[&index_digest, &host_manifest, &host_config]);
    want.extend(host_layers.iter().cloned());
    assert_eq!(
        content_digests(&b, ns),
        want,
        "host platform's content only"
    );
    let line = content_line(&b, ns, &index_digest);
    assert!(
        refs_manifest(&line, &host_manifest),
        "index lacks a gc.ref.content.m label for the host's manifest: {line}"
    );
    let snaps = snapshots(&b, ns, "overlayfs");
    assert_eq!(committed(&snaps), host_layers.len(), "{snaps:?}");
    // The labels hold it: a collection keeps it all.
    sync_gc(&b, ns);
    assert_eq!(content_digests(&b, ns), want, "content after a GC");

    // --platform: the other image.
    let ns = "berth-pull-index-other";
    let platform = format!("linux/{other_arch}");
    ok(
        berth(
            &b,
            ns,
            &["pull", "--platform", &platform, "--no-unpack", &name],
        ),
        "berth pull --platform",
    );
    assert_eq!(
        image_digest(&b, ns, &name).as_deref(),
        Some(index_digest.as_str())
    );
    let mut want = all(&[&index_digest, &other_manifest, &other_config]);
    want.extend(other_layers.iter().cloned());
    assert_eq!(content_digests(&b, ns), want, "{platform}'s content only");
    assert_no_lease_or_ingest(&b, ns, "berth pull --platform");

    // --all-platforms: both.
    let ns = "berth-pull-index-all";
    ok(
        berth(&b, ns, &["pull", "--all-platforms", "--no-unpack", &name]),
        "berth pull --all-platforms",
    );
    let mut want = all(&[
        &index_digest,
        &host_manifest,
        &host_config,
        &other_manifest,
        &other_config,
    ]);
    want.extend(host_layers.iter().cloned());
    want.extend(other_layers.iter().cloned());
    assert_eq!(content_digests(&b, ns), want, "every platform's content");
    let line = content_line(&b, ns, &index_digest);
    for m in [&other_manifest, &host_manifest] {
        assert!(
            refs_manifest(&line, m),
            "index lacks a gc.ref.content.m label for {m}: {line}"
        );
    }
    assert_no_lease_or_ingest(&b, ns, "berth pull --all-platforms");
}

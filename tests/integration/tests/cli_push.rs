//! `berth push` and `berth tag` against a real registry (Debian's docker-registry on 127.0.0.1,
//! plain HTTP), checked with the registry's own answers and with skopeo as the independent
//! client (it verifies every digest it fetches): a pulled image tagged and pushed to a new
//! repository round-trips byte for byte, and a second push sends nothing but the manifest; an
//! image imported with `ctr` is pushed by its local name (full and short); an index is refused
//! until all its manifests are local, then pushed whole; errors for an image that does not
//! exist, a registry that is not there and a reference naming another digest.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_integration_tests::cli::{
    berth, blob_path, image_digest, manifest_parts, read_json, setup_registry, TwoPlatforms,
};
use berth_integration_tests::registry::TestImages;
use berth_integration_tests::{fails, ok, Berthd};

/// `berth --format json push ARGS`, which must succeed: its JSON report.
fn push_json(b: &Berthd, ns: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--format", "json", "push"];
    all.extend_from_slice(args);
    let stdout = ok(berth(b, ns, &all), &format!("berth push {args:?}"));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("push json: {e}:\n{stdout}"))
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("push json has no number {key:?}: {v}"))
}

fn blob_size(layout: &Path, digest: &str) -> u64 {
    std::fs::metadata(blob_path(layout, digest))
        .unwrap_or_else(|e| panic!("blob {digest} in {}: {e}", layout.display()))
        .len()
}

/// Fetch `reference` from the registry with skopeo (which checks every digest) into a new OCI
/// layout, every platform when `all`; the layout and the digest of the root it fetched.
fn skopeo_fetch(reference: &str, all: bool) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy", "copy", "--quiet", "--preserve-digests"]);
    if all {
        cmd.arg("--all");
    }
    let out = cmd
        .arg("--src-tls-verify=false")
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:fetched", dir.path().display()))
        .output()
        .expect("run skopeo");
    ok(out, &format!("skopeo copy docker://{reference}"));
    let index = read_json(&dir.path().join("index.json"));
    let root = index["manifests"][0]["digest"]
        .as_str()
        .expect("fetched index.json names a root")
        .to_string();
    (dir, root)
}

/// The layout `fetched` holds exactly the blobs `digests`, each byte-identical to `orig`'s.
fn assert_same_blobs(orig: &Path, fetched: &Path, digests: &BTreeSet<String>) {
    let got: BTreeSet<String> = std::fs::read_dir(fetched.join("blobs/sha256"))
        .expect("read fetched blobs")
        .flatten()
        .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
        .collect();
    assert_eq!(&got, digests, "blobs skopeo fetched back");
    for d in digests {
        let want = std::fs::read(blob_path(orig, d)).expect("read original blob");
        let have = std::fs::read(blob_path(fetched, d)).expect("read fetched blob");
        assert!(want == have, "blob {d} differs from the original");
    }
}

/// The manifest, config and layer digests of the single image `manifest` of `layout`.
fn image_blobs(layout: &Path, manifest: &str) -> BTreeSet<String> {
    let (config, layers) = manifest_parts(layout, manifest);
    let mut all: BTreeSet<String> = layers.into_iter().collect();
    all.insert(config);
    all.insert(manifest.to_string());
    all
}

/// A port on 127.0.0.1 nothing listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

#[test]
fn berth_push_round_trips_through_the_registry() {
    let ns = "berth-push-round-trip";
    let Some((reg, images)) =
        setup_registry("berth_push_round_trips_through_the_registry", &["ctr"])
    else {
        return;
    };
    let layout = images.layout("busybox");
    reg.push_oci_layout(&layout, "busybox:latest");
    let b = Berthd::start();
    let digest = images.manifest_digest("busybox");
    let (config, layers) = manifest_parts(&layout, &digest);
    let blobs = 1 + layers.len() as u64;
    let blob_bytes: u64 = std::iter::once(&config)
        .chain(&layers)
        .map(|d| blob_size(&layout, d))
        .sum();
    let manifest_size = blob_size(&layout, &digest);

    let source = reg.reference("busybox:latest");
    ok(berth(&b, ns, &["pull", &source]), "berth pull");
    assert_eq!(
        image_digest(&b, ns, &source).as_deref(),
        Some(digest.as_str())
    );
    let mirror = reg.reference("mirror/busybox:v1");
    let tagged = ok(berth(&b, ns, &["tag", &source, &mirror]), "berth tag");
    assert_eq!(tagged.trim(), mirror, "berth tag prints the target");
    assert_eq!(
        image_digest(&b, ns, &mirror).as_deref(),
        Some(digest.as_str()),
        "the tag names the pulled image"
    );
    assert_eq!(reg.manifest_digest("mirror/busybox", "v1"), None);

    // A new repository: every blob is sent, then the manifest.
    let first = push_json(&b, ns, &[&mirror]);
    assert_eq!(first["name"].as_str(), Some(mirror.as_str()), "{first}");
    assert_eq!(first["digest"].as_str(), Some(digest.as_str()), "{first}");
    assert_eq!(num(&first, "existed"), 0, "{first}");
    assert_eq!(num(&first, "sent"), blobs + 1, "{first}");
    assert_eq!(num(&first, "bytes"), blob_bytes + manifest_size, "{first}");
    assert_eq!(
        reg.manifest_digest("mirror/busybox", "v1").as_deref(),
        Some(digest.as_str()),
        "the registry's mirror/busybox:v1"
    );

    // skopeo fetches it back, digests checked: the very bytes of the original layout.
    let (fetched, root) = skopeo_fetch(&mirror, false);
    assert_eq!(root, digest, "the manifest skopeo fetched");
    assert_same_blobs(&layout, fetched.path(), &image_blobs(&layout, &digest));

    // Again (and --plain-http, which 127.0.0.1 does not need): the registry has every blob;
    // only the manifest goes.
    let again = push_json(&b, ns, &["--plain-http", &mirror]);
    assert_eq!(again["digest"].as_str(), Some(digest.as_str()), "{again}");
    assert!(num(&again, "existed") >= blobs, "{again}");
    assert_eq!(num(&again, "sent"), 1, "only the manifest: {again}");
    assert_eq!(num(&again, "bytes"), manifest_size, "{again}");
    assert_eq!(
        reg.manifest_digest("mirror/busybox", "v1").as_deref(),
        Some(digest.as_str())
    );
    // The source repository is untouched.
    assert_eq!(
        reg.manifest_digest("busybox", "latest").as_deref(),
        Some(digest.as_str())
    );
}

#[test]
fn berth_push_an_imported_image() {
    let ns = "berth-push-imported";
    let Some((reg, images)) = setup_registry("berth_push_an_imported_image", &["ctr"]) else {
        return;
    };
    let b = Berthd::start();
    let archive = images.archive("layers");
    ok(
        b.ctr(
            ns,
            &["images", "import", "--no-unpack", archive.to_str().unwrap()],
        ),
        "ctr images import --no-unpack",
    );
    let local = TestImages::import_name("layers");
    let digest = image_digest(&b, ns, &local).expect("ctr imported the layers image");
    assert_eq!(digest, images.manifest_digest("layers"));
    let layout = images.layout("layers");

    // LOCAL by its full name; the reference names no local image.
    let target = reg.reference("imported/layers:1");
    let pushed = push_json(&b, ns, &[&target, &local]);
    assert_eq!(pushed["digest"].as_str(), Some(digest.as_str()), "{pushed}");
    assert_eq!(pushed["name"].as_str(), Some(target.as_str()), "{pushed}");
    assert_eq!(
        reg.manifest_digest("imported/layers", "1").as_deref(),
        Some(digest.as_str()),
        "the registry's imported/layers:1"
    );
    assert_eq!(
        image_digest(&b, ns, &target),
        None,
        "push made a local image record"
    );
    let (fetched, root) = skopeo_fetch(&target, false);
    assert_eq!(root, digest, "the manifest skopeo fetched");
    assert_same_blobs(&layout, fetched.path(), &image_blobs(&layout, &digest));

    // LOCAL by its short name, normalized as Docker does; to `localhost`, plain HTTP too.
    let short = format!("localhost:{}/imported/layers:short", reg.port());
    let pushed = push_json(&b, ns, &[&short, "layers"]);
    assert_eq!(pushed["digest"].as_str(), Some(digest.as_str()), "{pushed}");
    assert_eq!(
        num(&pushed, "sent"),
        1,
        "the repository had the blobs: {pushed}"
    );
    assert_eq!(
        reg.manifest_digest("imported/layers", "short").as_deref(),
        Some(digest.as_str()),
        "the registry's imported/layers:short"
    );
}

/// Every blob of `multi`: the index, both manifests, their configs and layers.
fn all_blobs(multi: &TwoPlatforms) -> BTreeSet<String> {
    let dir = multi.dir.path();
    let mut all = image_blobs(dir, &multi.host_manifest);
    all.extend(image_blobs(dir, &multi.other_manifest));
    all.insert(multi.index.clone());
    all
}

#[test]
fn berth_push_an_index_needs_all_its_manifests() {
    let ns = "berth-push-index";
    let Some((reg, images)) =
        setup_registry("berth_push_an_index_needs_all_its_manifests", &["ctr"])
    else {
        return;
    };
    let multi = TwoPlatforms::build(images);
    let source = reg.reference("multi:latest");
    multi.push(&source);
    assert_eq!(
        reg.manifest_digest("multi", "latest").as_deref(),
        Some(multi.index.as_str()),
        "the registry serves the index"
    );
    let b = Berthd::start();

    // The host's platform only: the other manifest is not local.
    ok(berth(&b, ns, &["pull", &source]), "berth pull of an index");
    assert_eq!(
        image_digest(&b, ns, &source).as_deref(),
        Some(multi.index.as_str())
    );
    let content = ok(b.ctr(ns, &["content", "ls", "-q"]), "ctr content ls -q");
    assert!(
        !content.contains(&multi.other_manifest),
        "the default pull fetched the other platform's manifest: {content}"
    );
    let copy = reg.reference("copy/multi:1");
    ok(berth(&b, ns, &["tag", &source, &copy]), "berth tag");
    let err = fails(berth(&b, ns, &["push", &copy]), "push of a partial index");
    assert!(
        err.contains("is not in the content store"),
        "push of a partial index: {err}"
    );
    assert!(
        err.contains(&multi.other_manifest),
        "error does not name the missing manifest {}: {err}",
        multi.other_manifest
    );
    assert_eq!(
        reg.manifest_digest("copy/multi", "1"),
        None,
        "a refused push tagged the index"
    );
    for m in [&multi.host_manifest, &multi.other_manifest] {
        assert_eq!(
            reg.manifest_digest("copy/multi", m),
            None,
            "a refused push uploaded manifest {m}"
        );
    }

    // With every platform local the push goes through, children before the index.
    ok(
        berth(&b, ns, &["pull", "--all-platforms", "--no-unpack", &source]),
        "berth pull --all-platforms --no-unpack",
    );
    let pushed = push_json(&b, ns, &[&copy]);
    assert_eq!(
        pushed["digest"].as_str(),
        Some(multi.index.as_str()),
        "{pushed}"
    );
    assert_eq!(
        reg.manifest_digest("copy/multi", "1").as_deref(),
        Some(multi.index.as_str()),
        "the registry's copy/multi:1"
    );
    for m in [&multi.host_manifest, &multi.other_manifest] {
        assert_eq!(
            reg.manifest_digest("copy/multi", m).as_deref(),
            Some(m.as_str()),
            "manifest {m} in copy/multi"
        );
    }
    let (fetched, root) = skopeo_fetch(&copy, true);
    assert_eq!(root, multi.index, "the index skopeo fetched");
    assert_same_blobs(multi.dir.path(), fetched.path(), &all_blobs(&multi));
}

#[test]
fn berth_push_errors() {
    let ns = "berth-push-errors";
    let Some((reg, images)) = setup_registry("berth_push_errors", &["ctr"]) else {
        return;
    };
    let b = Berthd::start();

    // No such local image, by the reference and by LOCAL: nothing reaches the registry.
    let nothere = reg.reference("nothere:1");
    let err = fails(berth(&b, ns, &["push", &nothere]), "push of no image");
    assert!(
        err.contains(&nothere),
        "error does not name {nothere}: {err}"
    );
    let err = fails(
        berth(&b, ns, &["push", &nothere, "no-such-local-image"]),
        "push of no image by LOCAL",
    );
    assert!(
        err.contains("no-such-local-image"),
        "error does not name the local image: {err}"
    );
    assert_eq!(reg.manifest_digest("nothere", "1"), None);

    let archive = images.archive("busybox");
    ok(
        b.ctr(
            ns,
            &["images", "import", "--no-unpack", archive.to_str().unwrap()],
        ),
        "ctr images import --no-unpack",
    );
    let local = TestImages::import_name("busybox");
    let digest = images.manifest_digest("busybox");

    // A registry that is not there.
    let host = format!("127.0.0.1:{}", dead_port());
    let started = Instant::now();
    let err = fails(
        berth(&b, ns, &["push", &format!("{host}/x:1"), &local]),
        "push to a port nothing listens on",
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?} to give up on a refused connection",
        started.elapsed()
    );
    assert!(err.contains(&host), "error does not name {host}: {err}");
    assert!(
        err.to_lowercase().contains("refused"),
        "error does not say the connection was refused: {err}"
    );

    // A reference naming another digest than the image's.
    let other = format!("sha256:{}", "0".repeat(64));
    let wrong = reg.reference(&format!("x@{other}"));
    let err = fails(
        berth(&b, ns, &["push", &wrong, &local]),
        "push to a reference with another digest",
    );
    assert!(
        err.contains(&other) && err.contains(&digest),
        "error does not name both digests: {err}"
    );
    assert_eq!(reg.manifest_digest("x", &digest), None);
}

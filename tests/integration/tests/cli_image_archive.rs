//! `berth image import` and `berth image export` against berthd, checked with Debian's `ctr` as
//! the independent client and with a real containerd beside: an OCI archive imported (file and
//! stdin) gives the image record with the archive's digest, containerd's GC labels, no lease,
//! snapshots and content that survive a collection, a container that runs, an idempotent second
//! import (JSON report), removal that frees everything, `--no-unpack`, and the exact tree of
//! the `layers` image; an export (file, stdout, two names) is an OCI layout with byte-identical
//! blobs and a Docker manifest.json, which containerd imports with the same digest, and
//! containerd's own export imports back; a Docker archive written by skopeo (full and short RepoTags) keeps its
//! config and layers; a two-platform index is imported and exported for the host's platform or
//! for all; errors name what is wrong.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use berth_integration_tests::cli::{
    berth, berth_with, blob_path, copy_blobs, image_digest, manifest_parts, read_json, rows,
    write_blob, Input,
};
use berth_integration_tests::registry::{check_tree, sha256_digest, TestImages};
use berth_integration_tests::tasks::TaskCleanup;
use berth_integration_tests::{fails, ok, setup as harness_setup, Berthd, Containerd};

/// The gate: root tests on, ctr, tar, skopeo and `tools` installed; the test images.
fn setup(test: &str, tools: &[&str]) -> Option<&'static TestImages> {
    let tools = [&["ctr", "tar", "skopeo"][..], tools].concat();
    Some(harness_setup(test, &tools)?.images)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `ctr ARGS` against berthd, which must succeed: its stdout.
fn c(b: &Berthd, ns: &str, args: &[&str]) -> String {
    ok(b.ctr(ns, args), &format!("ctr {}", args.join(" ")))
}

/// `berth image import ARGS`, which must succeed: its stdout.
fn import(b: &Berthd, ns: &str, args: &[&str]) -> String {
    let all = [&["image", "import"][..], args].concat();
    ok(berth(b, ns, &all), &format!("berth image import {args:?}"))
}

/// `berth ... image import ARGS < input`.
fn import_stdin(b: &Berthd, ns: &str, args: &[&str], input: &Path) -> String {
    let all = [&["image", "import"][..], args].concat();
    let out = berth_with(&b.address(), ns, &all, &[], Input::File(input));
    ok(out, &format!("berth image import {args:?} < FILE"))
}

/// Raw stdout of a successful command, or a panic showing its stderr.
fn ok_bytes(out: Output, what: &str) -> Vec<u8> {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed:\n{err}");
    out.stdout
}

/// The table report of an import names `name` with `digest` on one line.
fn assert_reports(stdout: &str, name: &str, digest: &str) {
    assert!(
        stdout.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.contains(&name) && w.contains(&digest)
        }),
        "import report has no line `{name} {digest}`:\n{stdout}"
    );
}

/// `ctr images check` says `name` is complete, and unpacked or not.
fn assert_complete(b: &Berthd, ns: &str, name: &str, unpacked: bool) {
    let check = c(b, ns, &["images", "check"]);
    let line = check
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in `ctr images check`:\n{check}"));
    let want = if unpacked { "true" } else { "false" };
    assert!(
        line.contains("complete") && line.trim_end().ends_with(want),
        "want complete and unpacked={want}: {line}"
    );
}

fn assert_no_lease_or_ingest(b: &Berthd, ns: &str, after: &str) {
    let leases = c(b, ns, &["leases", "ls", "-q"]);
    assert!(leases.trim().is_empty(), "{after}: leases {leases}");
    let active = c(b, ns, &["content", "active"]);
    assert!(rows(&active).is_empty(), "{after}: ingests {active}");
}

/// `ctr images ls` lists `name` -> `digest`, `ctr images check` says it is complete (and
/// unpacked or not), and no lease or ingest is left.
fn assert_image(b: &Berthd, ns: &str, name: &str, digest: &str, unpacked: bool) {
    let got = image_digest(b, ns, name);
    assert_eq!(got.as_deref(), Some(digest), "{name} in {ns}");
    assert_complete(b, ns, name, unpacked);
    assert_no_lease_or_ingest(b, ns, &format!("the import of {name}"));
}

fn content_digests(b: &Berthd, ns: &str) -> BTreeSet<String> {
    let ls = c(b, ns, &["content", "ls", "-q"]);
    ls.split_whitespace().map(str::to_string).collect()
}

/// The manifest `digest` carries containerd's gc.ref labels for `config` and `layers`.
fn assert_gc_labels(b: &Berthd, ns: &str, digest: &str, config: &str, layers: &[String]) {
    let ls = c(b, ns, &["content", "ls"]);
    let line = ls
        .lines()
        .find(|l| l.split_whitespace().next() == Some(digest))
        .unwrap_or_else(|| panic!("{digest} not in `ctr content ls`:\n{ls}"));
    let mut want = vec![format!("containerd.io/gc.ref.content.config={config}")];
    for (i, layer) in layers.iter().enumerate() {
        want.push(format!("containerd.io/gc.ref.content.l.{i}={layer}"));
    }
    for label in want {
        assert!(line.contains(&label), "manifest lacks {label}: {line}");
    }
}

/// The blob `digest` of namespace `ns` of berthd, as `ctr content get` reads it.
fn content_get(b: &Berthd, ns: &str, digest: &str) -> Vec<u8> {
    ok_bytes(b.ctr(ns, &["content", "get", digest]), "ctr content get")
}

/// Snapshots of `ns` in overlayfs, as `[key, (parent,) kind]` rows.
fn snapshots(b: &Berthd, ns: &str) -> Vec<Vec<String>> {
    rows(&c(b, ns, &["snapshots", "ls"]))
}

fn committed(snaps: &[Vec<String>]) -> usize {
    let kind = |r: &Vec<String>| r.last().map(String::as_str) == Some("Committed");
    snaps.iter().filter(|r| kind(r)).count()
}

/// Run a garbage collection and wait for it: delete a fresh lease with `--sync`.
fn sync_gc(b: &Berthd, ns: &str) {
    let id = "berth-archive-gc-now";
    c(b, ns, &["leases", "create", "--id", id]);
    c(b, ns, &["leases", "rm", "--sync", id]);
}

/// Extract `tar` into `dir` (created); the digests of its `blobs/sha256/`.
fn untar(tar: &Path, dir: &Path) -> BTreeSet<String> {
    std::fs::create_dir_all(dir).expect("create dir");
    let mut cmd = Command::new("tar");
    cmd.arg("-xf").arg(tar).arg("-C").arg(dir);
    ok(cmd.output().expect("run tar"), "tar -xf");
    let blobs = std::fs::read_dir(dir.join("blobs/sha256"));
    let names = blobs.into_iter().flatten().flatten().map(|e| e.file_name());
    names
        .map(|n| format!("sha256:{}", n.to_string_lossy()))
        .collect()
}

/// `tar -C dir -cf out ENTRIES...`
fn tar_create<S: AsRef<std::ffi::OsStr>>(dir: &Path, out: &Path, entries: &[S]) {
    let mut cmd = Command::new("tar");
    cmd.arg("-C").arg(dir).arg("-cf").arg(out).args(entries);
    ok(cmd.output().expect("run tar"), "tar -cf");
}

/// `berth image mount` on a temp dir; `berth image unmount` (or a lazy umount) when dropped.
struct Mounted<'a> {
    b: &'a Berthd,
    ns: &'a str,
    dir: tempfile::TempDir,
}

impl<'a> Mounted<'a> {
    fn new(b: &'a Berthd, ns: &'a str, name: &str) -> Mounted<'a> {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = s(dir.path()).to_string();
        ok(berth(b, ns, &["image", "mount", name, &target]), "mount");
        Mounted { b, ns, dir }
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let target = s(self.dir.path()).to_string();
        let out = berth(self.b, self.ns, &["image", "unmount", &target]);
        if !out.status.success() {
            let _ = Command::new("umount").arg("-l").arg(&target).status();
        }
    }
}

#[test]
fn berth_import_oci_archive_then_run_and_gc() {
    let test = "berth_import_oci_archive_then_run_and_gc";
    let Some(images) = setup(test, &["runc", "containerd-shim-runc-v2"]) else {
        return;
    };
    let ns = "berth-import-run";
    let b = Berthd::start();
    let _tasks = TaskCleanup::new(b.address(), ns);
    let name = TestImages::import_name("busybox");
    let digest = images.manifest_digest("busybox");
    let (config, layers) = manifest_parts(&images.layout("busybox"), &digest);
    let archive = images.archive("busybox");

    assert_reports(&import(&b, ns, &[s(&archive)]), &name, &digest);
    assert_image(&b, ns, &name, &digest, true);
    assert_gc_labels(&b, ns, &digest, &config, &layers);

    // The image holds its content and snapshots through a collection; what nothing references
    // (such as the archive's own index.json, if it was stored) goes.
    let mut want: BTreeSet<String> = layers.iter().cloned().collect();
    want.insert(digest.clone());
    want.insert(config.clone());
    let before = content_digests(&b, ns);
    assert!(before.is_superset(&want), "{before:?} lacks {want:?}");
    let snaps = snapshots(&b, ns);
    assert_eq!(committed(&snaps), layers.len(), "{snaps:?}");
    sync_gc(&b, ns);
    assert_eq!(content_digests(&b, ns), want, "content after a GC");
    assert_eq!(snapshots(&b, ns), snaps, "snapshots after a GC");
    assert_complete(&b, ns, &name, true);

    let out = berth(&b, ns, &["run", "--rm", &name, "echo", "hi"]);
    assert_eq!(ok(out, "berth run --rm <imported> echo hi"), "hi\n");

    // Importing again changes nothing; the JSON report names the image.
    let stdout = import(&b, ns, &["--format", "json", s(&archive)]);
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("import --format json: {e}:\n{stdout}"));
    let entries = report.as_array().expect("a JSON array");
    let reported = |e: &serde_json::Value| e["name"] == *name && e["digest"] == *digest;
    assert!(entries.iter().any(reported), "JSON report: {stdout}");
    assert_image(&b, ns, &name, &digest, true);
    sync_gc(&b, ns);
    assert_eq!(content_digests(&b, ns), want, "content after import 2");
    assert_eq!(snapshots(&b, ns), snaps, "snapshots after import 2");

    // Removal frees everything.
    let containers = c(&b, ns, &["containers", "ls", "-q"]);
    assert!(containers.trim().is_empty(), "run --rm left: {containers}");
    c(&b, ns, &["images", "rm", "--sync", &name]);
    assert!(image_digest(&b, ns, &name).is_none());
    let left = content_digests(&b, ns);
    assert!(left.is_empty(), "content left: {left:?}");
    let snaps = snapshots(&b, ns);
    assert!(snaps.is_empty(), "snapshots left: {snaps:?}");
}

#[test]
fn berth_import_layers_matches_expected_tree() {
    let Some(images) = setup("berth_import_layers_matches_expected_tree", &[]) else {
        return;
    };
    let b = Berthd::start();
    let name = TestImages::import_name("layers");
    let digest = images.manifest_digest("layers");
    let (_, layers) = manifest_parts(&images.layout("layers"), &digest);
    let archive = images.archive("layers");

    let ns = "berth-import-layers";
    assert_reports(&import(&b, ns, &[s(&archive)]), &name, &digest);
    assert_image(&b, ns, &name, &digest, true);
    let snaps = snapshots(&b, ns);
    assert_eq!(committed(&snaps), layers.len(), "{snaps:?}");
    {
        let m = Mounted::new(&b, ns, &name);
        if let Err(diff) = check_tree(m.dir.path(), &images.expected()) {
            panic!("imported layers image differs from EXPECTED.json:\n{diff}");
        }
    }

    // From stdin, with --no-unpack: the record and content, no snapshot.
    let ns = "berth-import-layers-no-unpack";
    let stdout = import_stdin(&b, ns, &["--no-unpack", "-"], &archive);
    assert_reports(&stdout, &name, &digest);
    assert_image(&b, ns, &name, &digest, false);
    let snaps = snapshots(&b, ns);
    assert!(snaps.is_empty(), "--no-unpack unpacked: {snaps:?}");
}

/// The extracted export `x`, with blobs `blobs`, is an OCI layout naming `name` -> `digest`
/// whose blobs are exactly those of `layout`, byte for byte, with a Docker manifest.json.
fn check_export(x: &Path, blobs: &BTreeSet<String>, layout: &Path, name: &str, digest: &str) {
    let oci_layout = std::fs::read_to_string(x.join("oci-layout")).expect("oci-layout in export");
    assert!(oci_layout.contains("imageLayoutVersion"), "{oci_layout}");
    let index = read_json(&x.join("index.json"));
    let entry = index["manifests"]
        .as_array()
        .expect("index.json manifests")
        .iter()
        .find(|m| m["digest"] == digest)
        .unwrap_or_else(|| panic!("index.json has no entry for {digest}: {index}"));
    let notes = &entry["annotations"];
    assert_eq!(notes["io.containerd.image.name"], name, "{entry}");
    let tag = &notes["org.opencontainers.image.ref.name"];
    assert_eq!(tag, "latest", "{entry}");
    let (config, layers) = manifest_parts(layout, digest);
    let mut want: BTreeSet<String> = layers.iter().cloned().collect();
    want.extend([config.clone(), digest.to_string()]);
    assert_eq!(blobs, &want, "exported blobs");
    for d in &want {
        let orig = std::fs::read(blob_path(layout, d)).expect("original blob");
        let same = orig == std::fs::read(blob_path(x, d)).unwrap();
        assert!(same, "exported {d} differs");
    }
    let docker = read_json(&x.join("manifest.json"));
    let short = name.trim_start_matches("docker.io/library/");
    let img = docker
        .as_array()
        .expect("manifest.json is an array")
        .iter()
        .find(|m| {
            let mut tags = m["RepoTags"].as_array().into_iter().flatten();
            tags.any(|t| t == name || t == short)
        })
        .unwrap_or_else(|| panic!("manifest.json has no RepoTags entry {short}: {docker}"));
    let cfg_file = img["Config"].as_str().expect("manifest.json Config");
    let cfg = std::fs::read(x.join(cfg_file)).unwrap_or_else(|e| panic!("{cfg_file}: {e}"));
    assert_eq!(sha256_digest(&cfg), config, "manifest.json Config");
    let files = img["Layers"].as_array().expect("manifest.json Layers");
    assert_eq!(files.len(), layers.len(), "manifest.json Layers: {img}");
    for f in files.iter().map(|f| f.as_str().expect("a layer path")) {
        assert!(x.join(f).is_file(), "manifest.json: no {f} in the tar");
    }
}

#[test]
fn berth_export_round_trips_with_ctr() {
    let Some(images) = setup("berth_export_round_trips_with_ctr", &[]) else {
        return;
    };
    let b = Berthd::start();
    let ns = "berth-export";
    let name = TestImages::import_name("busybox");
    let digest = images.manifest_digest("busybox");
    let layout = images.layout("busybox");
    import(&b, ns, &[s(&images.archive("busybox"))]);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n);

    let out = berth(&b, ns, &["image", "export", s(&p("export.tar")), &name]);
    ok(out, "berth image export FILE");
    let blobs = untar(&p("export.tar"), &p("x"));
    check_export(&p("x"), &blobs, &layout, &name, &digest);
    assert_no_lease_or_ingest(&b, ns, "berth image export");

    // To stdout: the same layout.
    let out = berth(&b, ns, &["image", "export", "-", &name]);
    std::fs::write(p("stdout.tar"), ok_bytes(out, "berth image export -")).unwrap();
    let blobs = untar(&p("stdout.tar"), &p("y"));
    check_export(&p("y"), &blobs, &layout, &name, &digest);

    // A real containerd imports berth's export with the same digest, and berth imports
    // containerd's export of it with the same digest.
    if let Some(cd) = Containerd::start() {
        let cns = "berth-export-check";
        let (file, back) = (p("export.tar"), p("containerd.tar"));
        let cd_ctr = |args: &[&str]| ok(cd.ctr(cns, args), &format!("containerd: ctr {args:?}"));
        cd_ctr(&["images", "import", s(&file)]);
        let ls = cd_ctr(&["images", "ls"]);
        let row = rows(&ls).into_iter().find(|r| r[0] == name);
        assert_eq!(row.map(|r| r[2].clone()), Some(digest.clone()), "{ls}");
        let check = cd_ctr(&["images", "check"]);
        let done = |l: &str| l.starts_with(&name) && l.contains("complete");
        assert!(check.lines().any(done), "containerd: {check}");
        cd_ctr(&["images", "export", s(&back), &name]);
        let ns2 = "berth-export-back";
        assert_reports(&import(&b, ns2, &[s(&back)]), &name, &digest);
        assert_image(&b, ns2, &name, &digest, true);
        cd_ctr(&["images", "rm", "--sync", &name]);
    }

    // Two names of one image: an index entry each, and both tags in manifest.json (containerd
    // lists them in one entry's RepoTags).
    let two = "docker.io/library/busybox:two";
    c(&b, ns, &["images", "tag", &name, two]);
    let file = p("two.tar");
    ok(
        berth(&b, ns, &["image", "export", s(&file), &name, two]),
        "export of 2",
    );
    untar(&p("two.tar"), &p("z"));
    let index = std::fs::read_to_string(p("z/index.json")).expect("index.json");
    let docker = std::fs::read_to_string(p("z/manifest.json")).expect("manifest.json");
    for (full, tag) in [(name.as_str(), "busybox:latest\""), (two, "busybox:two\"")] {
        assert!(
            index.contains(&format!("\"{full}\"")),
            "{full} not in {index}"
        );
        assert!(docker.contains(tag), "{tag} not in manifest.json: {docker}");
    }
}

/// The manifest of image `name` in `ns` of berthd, from its content store.
fn stored_manifest(b: &Berthd, ns: &str, name: &str) -> serde_json::Value {
    let digest = image_digest(b, ns, name).unwrap_or_else(|| panic!("{name} not imported"));
    serde_json::from_slice(&content_get(b, ns, &digest)).expect("manifest JSON")
}

#[test]
fn berth_import_docker_archive() {
    let test = "berth_import_docker_archive";
    let Some(images) = setup(test, &["runc", "containerd-shim-runc-v2", "zcat"]) else {
        return;
    };
    let layout = images.layout("busybox");
    let (config, _) = manifest_parts(&layout, &images.manifest_digest("busybox"));
    let config_bytes = std::fs::read(blob_path(&layout, &config)).expect("config blob");
    let config_json: serde_json::Value = serde_json::from_slice(&config_bytes).unwrap();
    let diff_id = config_json["rootfs"]["diff_ids"][0].as_str().unwrap();
    let dir = tempfile::tempdir().expect("tempdir");
    let docker_tar = dir.path().join("busybox-docker.tar");
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--quiet"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker-archive:{}:busybox:v1", s(&docker_tar)))
        .output()
        .expect("run skopeo");
    ok(out, "skopeo copy oci: docker-archive:");

    let ns = "berth-import-docker";
    let b = Berthd::start();
    let _tasks = TaskCleanup::new(b.address(), ns);
    let name = "docker.io/library/busybox:v1";
    let stdout = import(&b, ns, &[s(&docker_tar)]);
    let digest = image_digest(&b, ns, name)
        .unwrap_or_else(|| panic!("{name} not recorded; import printed:\n{stdout}"));
    assert_reports(&stdout, name, &digest);
    assert_image(&b, ns, name, &digest, true);

    // The config is kept byte for byte; the layer is the one with the config's diff ID,
    // unpacked as the snapshot of that chain; the manifest has containerd's GC labels.
    let manifest = stored_manifest(&b, ns, name);
    assert_eq!(manifest["config"]["digest"], config.as_str(), "{manifest}");
    let stored_config = content_get(&b, ns, &config);
    assert!(stored_config == config_bytes, "stored config differs");
    let stored_layers = manifest["layers"].as_array().expect("manifest layers");
    assert_eq!(stored_layers.len(), 1, "{manifest}");
    let layer = stored_layers[0]["digest"].as_str().expect("layer digest");
    let sh = format!(
        "ctr --address {} -n {ns} content get {layer} | zcat -f | sha256sum",
        b.address().display()
    );
    let sum = ok(Command::new("sh").args(["-c", &sh]).output().unwrap(), &sh);
    assert_eq!(format!("sha256:{}", &sum[..64]), diff_id, "{layer}");
    let snaps = snapshots(&b, ns);
    let found = snaps.iter().any(|r| r[0] == diff_id);
    assert!(found, "no snapshot {diff_id}: {snaps:?}");
    assert_gc_labels(&b, ns, &digest, &config, &[layer.to_string()]);

    // A collection keeps it; it runs.
    sync_gc(&b, ns);
    assert_complete(&b, ns, name, true);
    let out = berth(&b, ns, &["run", "--rm", name, "echo", "hi"]);
    assert_eq!(ok(out, "berth run --rm busybox:v1 echo hi"), "hi\n");

    // Short RepoTags, as `docker save` writes them, are normalized.
    let x = dir.path().join("x");
    untar(&docker_tar, &x);
    let mut m = read_json(&x.join("manifest.json"));
    m[0]["RepoTags"] = serde_json::json!(["busybox:v2"]);
    std::fs::write(x.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let short_tar = dir.path().join("busybox-short.tar");
    let entries = std::fs::read_dir(&x).expect("read extracted archive");
    let entries = entries.flatten().map(|e| e.file_name().into_string());
    let entries: Vec<String> = entries.map(|n| n.expect("utf-8 name")).collect();
    tar_create(&x, &short_tar, &entries);
    let short = "docker.io/library/busybox:v2";
    let stdout = import(&b, ns, &[s(&short_tar)]);
    assert!(stdout.contains(short), "{short} not reported:\n{stdout}");
    assert_complete(&b, ns, short, true);
    let manifest = stored_manifest(&b, ns, short);
    assert_eq!(manifest["config"]["digest"], config.as_str(), "{manifest}");
    assert_no_lease_or_ingest(&b, ns, "import with short RepoTags");
}

#[test]
fn berth_import_export_index_platforms() {
    let Some(images) = setup("berth_import_export_index_platforms", &[]) else {
        return;
    };
    // An OCI layout whose index holds busybox for the host's platform and the `layers` image
    // (its config saying so) for another.
    let (bb, ll) = (images.layout("busybox"), images.layout("layers"));
    let host_arch = read_json(&bb.join("index.json"))["manifests"][0]["platform"]["architecture"]
        .as_str()
        .expect("busybox platform in index.json")
        .to_string();
    let other_arch = ["s390x", "ppc64le"]
        .into_iter()
        .find(|a| *a != host_arch)
        .unwrap();
    let dir = tempfile::tempdir().expect("tempdir");
    let l = dir.path().join("layout");
    copy_blobs(&bb, &l);
    copy_blobs(&ll, &l);
    std::fs::copy(bb.join("oci-layout"), l.join("oci-layout")).expect("copy oci-layout");
    let host = images.manifest_digest("busybox");
    let mut manifest = read_json(&blob_path(&l, &images.manifest_digest("layers")));
    let mut config = read_json(&blob_path(
        &l,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    config["architecture"] = other_arch.into();
    let (config_digest, size) = write_blob(&l, &serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = config_digest.into();
    manifest["config"]["size"] = size.into();
    let (other, other_size) = write_blob(&l, &serde_json::to_vec(&manifest).unwrap());
    let host_size = std::fs::metadata(blob_path(&l, &host)).unwrap().len() as usize;
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let it = "application/vnd.oci.image.index.v1+json";
    let desc = |d: &str, n: usize, arch: &str| {
        let p = serde_json::json!({"os": "linux", "architecture": arch});
        serde_json::json!({"mediaType": mt, "digest": d, "size": n, "platform": p})
    };
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": it, "manifests": [
        desc(&other, other_size, other_arch), desc(&host, host_size, &host_arch)]});
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let (index, index_size) = write_blob(&l, &index_bytes);
    let name = "docker.io/library/multi:latest";
    let notes = serde_json::json!({"io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": "latest"});
    let top = serde_json::json!({"schemaVersion": 2, "mediaType": it, "manifests": [
        {"mediaType": it, "digest": index, "size": index_size, "annotations": notes}]});
    std::fs::write(l.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    let archive = dir.path().join("multi.tar");
    tar_create(&l, &archive, &["oci-layout", "index.json", "blobs"]);
    let parts = |m: &str| {
        let (config, layers) = manifest_parts(&l, m);
        let mut set: BTreeSet<String> = layers.into_iter().collect();
        set.extend([config, m.to_string()]);
        set
    };
    let mut host_blobs = parts(&host);
    host_blobs.insert(index.clone());
    let mut all_blobs = parts(&other);
    all_blobs.extend(host_blobs.iter().cloned());
    let b = Berthd::start();

    // Export, from every platform's content (imported with ctr): the host's blobs and the
    // index unchanged, or with --all-platforms every blob.
    let ns = "berth-archive-index-export";
    c(
        &b,
        ns,
        &[
            "images",
            "import",
            "--all-platforms",
            "--no-unpack",
            s(&archive),
        ],
    );
    let all: &[&str] = &["--all-platforms"];
    for (flags, want) in [(&[][..], &host_blobs), (all, &all_blobs)] {
        let out = dir.path().join(format!("export{}.tar", flags.len()));
        let args = [&["image", "export"][..], flags, &[s(&out), name]].concat();
        ok(berth(&b, ns, &args), &format!("export {flags:?}"));
        let x = dir.path().join(format!("x{}", flags.len()));
        assert_eq!(&untar(&out, &x), want, "blobs of export {flags:?}");
        let same = std::fs::read(blob_path(&x, &index)).unwrap() == index_bytes;
        assert!(same, "export {flags:?} changed the index");
    }

    // Import: the host's platform, unpacked; with --all-platforms, every platform's content.
    for (ns, flags, want) in [
        ("berth-archive-index-host", &[][..], &host_blobs),
        ("berth-archive-index-all", all, &all_blobs),
    ] {
        let stdout = import(&b, ns, &[flags, &[s(&archive)]].concat());
        assert_reports(&stdout, name, &index);
        assert_image(&b, ns, name, &index, true);
        sync_gc(&b, ns);
        let content = content_digests(&b, ns);
        assert_eq!(&content, want, "content after import {flags:?} and GC");
        assert_complete(&b, ns, name, true);
    }
}

#[test]
fn berth_import_export_errors() {
    let Some(images) = setup("berth_import_export_errors", &[]) else {
        return;
    };
    let b = Berthd::start();
    let ns = "berth-import-errors";
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n);

    // Not a tar at all; a tar with neither index.json nor manifest.json; a missing file.
    let not_tar = b"this is not a tar archive\n".repeat(64);
    std::fs::write(p("not-a-tar.bin"), not_tar).unwrap();
    std::fs::create_dir(p("plain")).unwrap();
    std::fs::write(p("plain/hello.txt"), b"hello\n").unwrap();
    tar_create(&p("plain"), &p("no-index.tar"), &["hello.txt"]);
    for file in ["not-a-tar.bin", "no-index.tar", "missing.tar"] {
        let err = fails(berth(&b, ns, &["image", "import", s(&p(file))]), file);
        assert!(!err.trim().is_empty(), "import of {file}: empty stderr");
        // A missing file must be named; a bad archive may instead say what it lacks.
        let mut names = vec![file];
        if file != "missing.tar" {
            names.extend(["index.json", "manifest.json"]);
        }
        let named = names.iter().any(|n| err.contains(n));
        assert!(
            named,
            "import of {file}: error names none of {names:?}: {err}"
        );
        assert_no_lease_or_ingest(&b, ns, &format!("the import of {file}"));
    }
    let listed = c(&b, ns, &["images", "ls", "-q"]);
    assert!(
        listed.trim().is_empty(),
        "failed imports recorded: {listed}"
    );

    // An OCI layout missing its layer blob cannot be imported and unpacked.
    let layout = images.layout("busybox");
    let (_, layers) = manifest_parts(&layout, &images.manifest_digest("busybox"));
    let missing = layers[0].trim_start_matches("sha256:");
    let exclude = format!("--exclude=blobs/sha256/{missing}");
    let entries = [exclude.as_str(), "oci-layout", "index.json", "blobs"];
    tar_create(&layout, &p("broken.tar"), &entries);
    let broken = p("broken.tar");
    let err = fails(berth(&b, ns, &["image", "import", s(&broken)]), "broken");
    assert!(
        err.contains(missing),
        "missing layer {missing} not named: {err}"
    );
    assert_no_lease_or_ingest(&b, ns, "the import of broken.tar");

    // Exporting an image that does not exist.
    let out = p("nosuch-export.tar");
    let nosuch = "docker.io/library/nosuchimage:latest";
    let err = fails(berth(&b, ns, &["image", "export", s(&out), nosuch]), nosuch);
    assert!(err.contains("nosuchimage"), "{nosuch} not named: {err}");
}

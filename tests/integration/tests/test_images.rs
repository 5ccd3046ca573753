//! The test images (`scripts/testimages.py`) and the registry fixture, validated with the real
//! tools: Debian's docker-registry serves what skopeo pushed, and Debian's containerd imports
//! the archives, pulls the images over plain HTTP and mounts them to the tree `EXPECTED.json`
//! describes. containerd's tree is the reference that berthd must match later.

use berth_integration_tests::gate::have_tools;
use berth_integration_tests::registry::{check_tree, sha256_digest, Registry, TestImages};
use berth_integration_tests::{ok, setup, Containerd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `ctr images mount REF DIR`, unmounted (and its snapshot removed) when dropped.
struct Mounted<'a> {
    cd: &'a Containerd,
    ns: &'a str,
    dir: tempfile::TempDir,
}

impl<'a> Mounted<'a> {
    fn new(cd: &'a Containerd, ns: &'a str, reference: &str) -> Mounted<'a> {
        let dir = tempfile::Builder::new()
            .prefix("ctr-mount-")
            .tempdir()
            .unwrap();
        let target = dir.path().to_str().unwrap().to_string();
        ok(
            cd.ctr(ns, &["images", "mount", reference, &target]),
            "ctr images mount",
        );
        Mounted { cd, ns, dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let target = self.dir.path().to_str().unwrap().to_string();
        let out = self
            .cd
            .ctr(self.ns, &["images", "unmount", "--rm", &target]);
        if !out.status.success() {
            let _ = Command::new("umount").arg("-l").arg(&target).status();
        }
    }
}

#[test]
fn images_are_deterministic() {
    if !have_tools("images_are_deterministic", &["python3", "/bin/busybox"]) {
        return;
    }
    let a = TestImages::get();
    // A second build of the same script (bypassing the cache) gives the same digests.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/testimages.py"))
        .arg("--out")
        .arg(dir.path())
        .args(["busybox", "layers"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = TestImages {
        dir: dir.path().to_path_buf(),
    };
    for name in ["busybox", "layers"] {
        assert_eq!(a.manifest_digest(name), b.manifest_digest(name), "{name}");
        assert_eq!(
            std::fs::read(a.archive(name)).unwrap(),
            std::fs::read(b.archive(name)).unwrap(),
            "{name}.tar"
        );
    }
    assert_eq!(
        std::fs::read(a.expected()).unwrap(),
        std::fs::read(b.expected()).unwrap()
    );
}

#[test]
fn check_tree_lists_every_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("d/f"), b"hello\n").unwrap();
    std::fs::set_permissions(root.join("d/f"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::set_permissions(root.join("d"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("f", root.join("d/l")).unwrap();
    std::fs::write(root.join("extra"), b"").unwrap();
    std::fs::write(root.join("gone"), b"").unwrap();
    let md = std::fs::metadata(&root).unwrap();
    let (uid, gid) = (
        std::os::unix::fs::MetadataExt::uid(&md),
        std::os::unix::fs::MetadataExt::gid(&md),
    );
    let sha = sha256_digest(b"hello\n");
    let expected = |f_mode: &str, f_sha: &str, target: &str, exact: bool| {
        serde_json::json!({
            "exact": exact,
            "absent": ["gone"],
            "paths": {
                "d": {"type": "dir", "mode": "0755", "uid": uid, "gid": gid},
                "d/f": {"type": "file", "mode": f_mode, "uid": uid, "gid": gid, "size": 6,
                        "nlink": 1, "sha256": f_sha},
                "d/l": {"type": "symlink", "target": target, "uid": uid, "gid": gid},
                "gone": {"type": "file"},
            }
        })
    };
    let json = dir.path().join("EXPECTED.json");
    let write = |v: serde_json::Value| std::fs::write(&json, v.to_string()).unwrap();

    std::fs::remove_file(root.join("gone")).unwrap();
    write(expected("0640", &sha[7..], "f", false));
    let err = check_tree(&root, &json).unwrap_err();
    assert!(err.contains("1 mismatch"), "{err}");
    assert!(err.contains("gone: missing"), "{err}");

    std::fs::write(root.join("gone"), b"").unwrap();
    write(expected("0600", &"0".repeat(64), "g", true));
    let err = check_tree(&root, &json).unwrap_err();
    for want in [
        "d/f: mode 0640, want 0600",
        "d/f: sha256 ",
        "d/l: target f, want g",
        "gone: exists but must not",
        "extra: unexpected path",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

/// Push busybox and layers to a fresh registry; return it with their references.
fn registry_with_images(images: &TestImages) -> Registry {
    let reg = Registry::start().expect("docker-registry installed");
    for name in ["busybox", "layers"] {
        reg.push_oci_layout(&images.layout(name), &format!("{name}:latest"));
    }
    reg
}

#[test]
fn registry_serves_pushed_images() {
    if setup(
        "registry_serves_pushed_images",
        &["docker-registry", "skopeo"],
    )
    .is_none()
    {
        return;
    }
    let images = TestImages::get();
    let reg = registry_with_images(images);
    for name in ["busybox", "layers"] {
        assert_eq!(
            reg.manifest_digest(name, "latest").as_deref(),
            Some(images.manifest_digest(name).as_str()),
            "{name}: registry digest vs layout index"
        );
        let by_digest = reg.manifest_digest(name, &images.manifest_digest(name));
        assert_eq!(by_digest, Some(images.manifest_digest(name)));
    }
    assert_eq!(reg.manifest_digest("busybox", "nope"), None);
    let cat = reg.request("GET", "/v2/_catalog", &[]);
    assert_eq!(cat.status, 200);
    let cat: serde_json::Value = serde_json::from_slice(&cat.body).unwrap();
    assert_eq!(
        cat["repositories"],
        serde_json::json!(["busybox", "layers"])
    );
    // A blob comes back byte for byte.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            images
                .layout("layers")
                .join("blobs/sha256")
                .join(&images.manifest_digest("layers")[7..]),
        )
        .unwrap(),
    )
    .unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let d = layer["digest"].as_str().unwrap();
        let r = reg.request("GET", &format!("/v2/layers/blobs/{d}"), &[]);
        assert_eq!(r.status, 200, "GET blob {d}");
        assert_eq!(sha256_digest(&r.body), d);
    }
}

#[test]
fn containerd_imports_archives() {
    if setup("containerd_imports_archives", &["containerd", "ctr"]).is_none() {
        return;
    }
    let images = TestImages::get();
    let Some(cd) = Containerd::start() else {
        return;
    };
    let ns = "testimages";
    for name in ["busybox", "layers"] {
        let tar = images.archive(name);
        let out = ok(
            cd.ctr(ns, &["images", "import", tar.to_str().unwrap()]),
            "ctr images import",
        );
        assert!(out.contains(&TestImages::import_name(name)), "{out}");
    }
    let ls = ok(cd.ctr(ns, &["images", "ls"]), "ctr images ls");
    for name in ["busybox", "layers"] {
        let line = ls
            .lines()
            .find(|l| l.starts_with(&format!("{} ", TestImages::import_name(name))))
            .unwrap_or_else(|| panic!("{name} not in:\n{ls}"));
        assert!(line.contains(&images.manifest_digest(name)), "{line}");
        assert!(
            line.contains("linux/amd64") || line.contains("linux/"),
            "{line}"
        );
    }
    let m = Mounted::new(&cd, ns, &TestImages::import_name("layers"));
    check_tree(m.path(), &images.expected()).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn containerd_pulls_from_registry_and_matches_expected() {
    if setup(
        "containerd_pulls_from_registry_and_matches_expected",
        &["docker-registry", "skopeo", "containerd", "ctr"],
    )
    .is_none()
    {
        return;
    }
    let images = TestImages::get();
    let reg = registry_with_images(images);
    let Some(cd) = Containerd::start() else {
        return;
    };
    let ns = "testimages";
    for name in ["busybox", "layers"] {
        let r = reg.reference(&format!("{name}:latest"));
        ok(
            cd.ctr(ns, &["images", "pull", "--plain-http", &r]),
            "ctr images pull --plain-http",
        );
        let ls = ok(cd.ctr(ns, &["images", "ls", "-q"]), "ctr images ls -q");
        assert!(ls.lines().any(|l| l == r), "{r} not in {ls}");
    }

    let bb = Mounted::new(&cd, ns, &reg.reference("busybox:latest"));
    let busybox = bb.path().join("bin/busybox");
    let md = std::fs::symlink_metadata(&busybox).expect("/bin/busybox in the mounted image");
    assert!(md.is_file());
    assert_eq!(md.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        std::fs::read(&busybox).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        std::fs::read_link(bb.path().join("bin/sh")).unwrap(),
        PathBuf::from("/bin/busybox")
    );
    assert_eq!(
        std::fs::symlink_metadata(bb.path().join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
    assert!(std::fs::read_to_string(bb.path().join("etc/passwd"))
        .unwrap()
        .starts_with("root:x:0:0:"));
    // The applets run (the image's busybox is the host's static one).
    let out = Command::new("chroot")
        .arg(bb.path())
        .args([
            "/bin/sh",
            "-c",
            "echo hello from $(basename $(readlink /bin/ls))",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from busybox\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(bb);

    let m = Mounted::new(&cd, ns, &reg.reference("layers:latest"));
    check_tree(m.path(), &images.expected()).unwrap_or_else(|e| panic!("{e}"));
}

/// The large image (300 MiB; builds in tens of seconds the first time): `--ignored` to run.
#[test]
#[ignore]
fn large_image_pushes_and_pulls() {
    if setup(
        "large_image_pushes_and_pulls",
        &["docker-registry", "skopeo", "containerd", "ctr"],
    )
    .is_none()
    {
        return;
    }
    let t = std::time::Instant::now();
    let images = TestImages::large(300);
    eprintln!("large image ready after {:?}", t.elapsed());
    let reg = Registry::start().expect("docker-registry installed");
    let t = std::time::Instant::now();
    let r = reg.push_oci_layout(&images.layout("large"), "large:latest");
    eprintln!("pushed in {:?}", t.elapsed());
    assert_eq!(
        reg.manifest_digest("large", "latest"),
        Some(images.manifest_digest("large"))
    );
    let Some(cd) = Containerd::start() else {
        return;
    };
    let t = std::time::Instant::now();
    ok(
        cd.ctr("large", &["images", "pull", "--plain-http", &r]),
        "ctr images pull large",
    );
    eprintln!("containerd pulled and unpacked in {:?}", t.elapsed());
}

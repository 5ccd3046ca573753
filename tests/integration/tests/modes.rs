//! File modes as an unprivileged local user sees them (ARCHITECTURE.md, "File modes"): with a
//! running container (Debian's Go runc shim, a secret in its environment), a throwaway user
//! cannot list berth's root, the task directories or a bundle, nor read `config.json`,
//! `meta.redb`, a snapshotter's metastore or a blob; it can traverse the state directory down to
//! the bundles (a container's root in a user namespace needs that), and such a container starts.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_integration_tests::cli::berth;
use berth_integration_tests::gate::have_tools;
use berth_integration_tests::registry::TestImages;
use berth_integration_tests::tasks::TaskCleanup;
use berth_integration_tests::{enabled, ok, Berthd};

const USER: &str = "berth-modes-it";
const IMAGE: &str = "docker.io/library/busybox:latest";
const NS: &str = "berth-modes";

/// Creates the throwaway user unless it exists.
fn ensure_user() {
    let exists = Command::new("id")
        .arg(USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        let out = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/sh", USER])
            .output()
            .expect("run useradd");
        assert!(
            out.status.success(),
            "useradd {USER}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `sh -c SCRIPT` as the unprivileged user.
fn as_user(script: &str) -> Output {
    Command::new("su")
        .args(["-s", "/bin/sh", USER, "-c", script])
        .output()
        .expect("run su")
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// Whether the unprivileged user fails to run `cmd PATH` for want of permission.
fn is_denied(cmd: &str, p: &Path) -> bool {
    assert!(p.exists(), "{} should exist", p.display());
    let out = as_user(&format!("{cmd} {}", q(p)));
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Permission denied")
}

/// The unprivileged user must fail to run `cmd PATH`.
fn denied(cmd: &str, p: &Path) {
    assert!(is_denied(cmd, p), "{USER} could `{cmd} {}`", p.display());
}

/// The unprivileged user must succeed at `script`.
fn allowed(script: &str) {
    let out = as_user(script);
    assert!(
        out.status.success(),
        "{USER} could not `{script}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Any regular file below `dir` (walked as root).
fn some_file(dir: &Path) -> PathBuf {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_file() {
                return e.path();
            }
            if t.is_dir() {
                todo.push(e.path());
            }
        }
    }
    panic!("no file under {}", dir.display())
}

fn setup(test: &str) -> Option<Berthd> {
    if !enabled(test) {
        return None;
    }
    if !have_tools(test, &["containerd-shim-runc-v2", "runc", "useradd", "su"]) {
        return None;
    }
    ensure_user();
    let b = Berthd::start();
    // The harness's temp dir is 0700: open it, so that only berth's own modes protect what
    // is below it.
    std::fs::set_permissions(b.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let archive = TestImages::get().archive("busybox");
    ok(
        b.ctr(NS, &["images", "import", archive.to_str().unwrap()]),
        "ctr images import",
    );
    Some(b)
}

#[test]
fn an_unprivileged_user_reads_nothing_of_berths() {
    let Some(b) = setup("an_unprivileged_user_reads_nothing_of_berths") else {
        return;
    };
    let _cleanup = TaskCleanup::new(b.address(), NS);
    ok(
        b.ctr(
            NS,
            &[
                "run",
                "-d",
                "--runtime",
                "io.containerd.runc.v2",
                "--env",
                "SECRET=hunter2",
                IMAGE,
                "m1",
                "sleep",
                "1000",
            ],
        ),
        "ctr run -d",
    );
    let root = b.root();
    let state = b.dir.path().join("state");
    let tasks = state.join("io.containerd.runtime.v2.task");
    let bundle = tasks.join(NS).join("m1");
    let config = bundle.join("config.json");
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains("SECRET=hunter2"));

    // The modes themselves, as the table says.
    assert_eq!(mode(&root), 0o700, "root");
    assert_eq!(mode(&state), 0o711, "state");
    assert_eq!(mode(&state.join("fifo")), 0o700, "fifo dir");
    assert_eq!(mode(&tasks), 0o711, "task dir");
    assert_eq!(mode(&tasks.join(NS)), 0o711, "namespace dir");
    assert_eq!(mode(&bundle), 0o700, "bundle");
    assert_eq!(mode(&config), 0o600, "config.json");
    // (`rootfs/` is 0711 when made; mounted, it shows the image's own root.)
    assert_eq!(mode(&b.address()), 0o660, "gRPC socket");

    // What the user cannot see.
    denied("ls", &root);
    denied("ls", &state);
    denied("ls", &tasks);
    denied("ls", &tasks.join(NS));
    denied("ls", &bundle);
    denied("cat", &config);
    denied("ls", &bundle.join("rootfs"));
    let meta = root.join("io.containerd.metadata.v1.redb/meta.redb");
    denied("cat", &meta);
    let content = root.join("io.containerd.content.v1.content");
    let blob = some_file(&content.join("blobs"));
    denied("cat", &blob);
    let overlay = root.join("io.containerd.snapshotter.v1.overlayfs");
    denied("cat", &overlay.join("metadata.db"));
    denied("ls", &overlay.join("snapshots"));
    // Without the root's mode, the files themselves still say no.
    for (p, m) in [(&meta, 0o600), (&blob, 0o400)] {
        assert_eq!(mode(p), m, "{}", p.display());
    }
    denied("cat", &b.address());

    // What a container's root in a user namespace needs: traversal down to the bundles.
    allowed(&format!("cd {}", q(&tasks.join(NS))));
}

#[test]
fn the_clis_container_directory_is_private() {
    let Some(b) = setup("the_clis_container_directory_is_private") else {
        return;
    };
    let _cleanup = TaskCleanup::new(b.address(), NS);
    ok(
        berth(
            &b,
            NS,
            &[
                "run",
                "-d",
                "--name",
                "c1",
                IMAGE,
                "sh",
                "-c",
                "echo secret-out; sleep 1000",
            ],
        ),
        "berth run -d",
    );
    // The CLI's state dir is its socket's directory: the harness's temp dir.
    let dir = b.dir.path().join("containers").join(NS);
    let c1 = dir.join("c1");
    assert!(c1.join("log").exists(), "{}", c1.display());
    // The per-container directory is 0700 and its log 0600 (berth-ops' container_dir).
    let open: Vec<String> = [
        ("ls", dir.clone()),
        ("ls", c1.clone()),
        ("cat", c1.join("log")),
    ]
    .into_iter()
    .filter(|(cmd, p)| !is_denied(cmd, p))
    .map(|(cmd, p)| format!("{cmd} {}", p.display()))
    .collect();
    assert!(open.is_empty(), "{USER} could: {open:?}");
    ok(berth(&b, NS, &["rm", "-f", "c1"]), "berth rm -f");
}

#[test]
fn a_container_in_a_user_namespace_reaches_its_bundle() {
    let Some(b) = setup("a_container_in_a_user_namespace_reaches_its_bundle") else {
        return;
    };
    let _cleanup = TaskCleanup::new(b.address(), NS);
    // ctr chowns a copy of the image's snapshot to the mapped ids.
    ok(
        b.ctr(
            NS,
            &[
                "run",
                "-d",
                "--runtime",
                "io.containerd.runc.v2",
                "--uidmap",
                "0:300000:65536",
                "--gidmap",
                "0:300000:65536",
                IMAGE,
                "u1",
                "sleep",
                "1000",
            ],
        ),
        "ctr run -d in a user namespace",
    );
    let bundle = b
        .dir
        .path()
        .join("state/io.containerd.runtime.v2.task")
        .join(NS)
        .join("u1");
    let md = std::fs::metadata(&bundle).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o710);
    assert_eq!(md.gid(), 300000, "group-owned by the mapped root");
    let out = b.ctr(NS, &["task", "exec", "--exec-id", "x", "u1", "id", "-u"]);
    assert_eq!(ok(out, "ctr task exec id").trim(), "0", "root inside");
    let out = Command::new("ctr")
        .args([
            "--address",
            b.address().to_str().unwrap(),
            "-n",
            NS,
            "task",
            "ls",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("RUNNING"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

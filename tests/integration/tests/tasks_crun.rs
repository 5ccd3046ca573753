//! crun under berthd: `ctr run --runc-binary crun` (the runc shim's BinaryName option) with
//! Debian's Go runc shim and, through runtime options, with berth's shim. crun 1.8 refuses this
//! machine's hybrid cgroups while cgroup2 still offers a controller (hugetlb): the test mounts
//! the v1 hugetlb hierarchy if needed and leaves it mounted (unmounting it would leave a live
//! but unmounted hierarchy that breaks cgroup v1 users).

use std::path::Path;
use std::process::Command;

use berth_integration_tests::registry::TestImages;
use berth_integration_tests::{enabled, ok, Berthd};

const IMAGE: &str = "docker.io/library/busybox:latest";

fn crun_ready(test: &str) -> bool {
    if Command::new("crun").arg("--version").output().is_err() {
        eprintln!("SKIP {test}: crun not installed (apt-get install crun)");
        return false;
    }
    let dir = "/sys/fs/cgroup/hugetlb";
    let hybrid = Path::new("/sys/fs/cgroup/unified").exists();
    let mounted = Command::new("mountpoint")
        .args(["-q", dir])
        .status()
        .is_ok_and(|s| s.success());
    if hybrid && !mounted {
        let _ = std::fs::create_dir_all(dir);
        let st = Command::new("mount")
            .args(["-t", "cgroup", "-o", "hugetlb", "cgroup", dir])
            .status();
        if !st.is_ok_and(|s| s.success()) {
            eprintln!("SKIP {test}: cannot mount the hugetlb v1 hierarchy crun needs here");
            return false;
        }
    }
    true
}

#[test]
fn crun_runs_containers_under_berthd() {
    let test = "crun_runs_containers_under_berthd";
    if !enabled(test) || !crun_ready(test) {
        return;
    }
    let ns = "berth-crun";
    let b = Berthd::start();
    let archive = TestImages::get().archive("busybox");
    ok(
        b.ctr(ns, &["images", "import", archive.to_str().unwrap()]),
        "ctr images import",
    );
    // Debian's Go runc shim with BinaryName=crun.
    let out = ok(
        b.ctr(
            ns,
            &[
                "run",
                "--rm",
                "--runc-binary",
                "crun",
                IMAGE,
                "cr1",
                "echo",
                "hi from crun",
            ],
        ),
        "ctr run --runc-binary crun",
    );
    assert_eq!(out.trim(), "hi from crun");
    let out = b.ctr(
        ns,
        &[
            "run",
            "--rm",
            "--runc-binary",
            "crun",
            IMAGE,
            "cr2",
            "sh",
            "-c",
            "exit 7",
        ],
    );
    assert_eq!(out.status.code(), Some(7));
    // It really is crun: crun itself knows the container, in the shim's runtime root.
    ok(
        b.ctr(
            ns,
            &[
                "run",
                "-d",
                "--runc-binary",
                "crun",
                IMAGE,
                "cr4",
                "sleep",
                "100",
            ],
        ),
        "ctr run -d --runc-binary crun",
    );
    let state = Command::new("crun")
        .args([
            "--root",
            &format!("/run/containerd/runc/{ns}"),
            "state",
            "cr4",
        ])
        .output()
        .unwrap();
    let state_json = String::from_utf8_lossy(&state.stdout).into_owned();
    ok(b.ctr(ns, &["task", "kill", "-s", "SIGKILL", "cr4"]), "kill");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = b.ctr(ns, &["task", "delete", "cr4"]);
    let _ = b.ctr(ns, &["container", "rm", "cr4"]);
    assert!(
        state.status.success() && state_json.contains("\"running\""),
        "crun state cr4: {state_json} {}",
        String::from_utf8_lossy(&state.stderr)
    );

    // berth's shim, told to use crun through a runtime options file (ctr only passes
    // --runc-binary to io.containerd.runc.v2).
    let cfg = b.dir.path().join("crun.toml");
    std::fs::write(&cfg, "BinaryName = \"crun\"\n").unwrap();
    let out = ok(
        b.ctr(
            ns,
            &[
                "run",
                "--rm",
                "--runtime",
                "io.containerd.berth.v2",
                "--runtime-config-path",
                cfg.to_str().unwrap(),
                IMAGE,
                "cr3",
                "cat",
                "/proc/self/cgroup",
            ],
        ),
        "ctr run --runtime io.containerd.berth.v2 with crun",
    );
    assert!(out.contains("cr3"), "{out}");
}

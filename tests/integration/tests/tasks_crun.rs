//! crun under berthd: `ctr run --runc-binary crun` (the runc shim's BinaryName option) with
//! Debian's Go runc shim and, through runtime options, with berth's shim. crun 1.8 refuses this
//! machine's hybrid cgroups while cgroup2 still offers a controller (hugetlb): the test mounts
//! the v1 hugetlb hierarchy if needed and leaves it mounted (unmounting it would leave a live
//! but unmounted hierarchy that breaks cgroup v1 users).

use std::process::Command;
use std::time::Duration;

use berth_integration_tests::shim::{hugetlb_for_crun, task_row};
use berth_integration_tests::{ok, setup, unmet, wait_until};

const IMAGE: &str = "docker.io/library/busybox:latest";

#[test]
fn crun_runs_containers_under_berthd() {
    let test = "crun_runs_containers_under_berthd";
    let Some(s) = setup(
        test,
        &["crun", "ctr", "containerd-shim-runc-v2", "mountpoint"],
    ) else {
        return;
    };
    if let Err(why) = hugetlb_for_crun() {
        unmet(test, &why);
        return;
    }
    let ns = "berth-crun";
    let b = s.berthd_with(ns, "busybox", true);
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
    wait_until(Duration::from_secs(10), "cr4 STOPPED", || {
        task_row(&ok(b.ctr(ns, &["task", "ls"]), "ctr task ls"), "cr4")
            .is_some_and(|(_, status)| status == "STOPPED")
    });
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

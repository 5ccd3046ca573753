//! Restart survival through the berth CLI: five long-running containers and one that exits
//! while berthd is down; `kill -9` berthd and start it again: the five are listed running,
//! `berth exec` into one works, `berth stop` stops them with the right statuses, and the one that
//! ended while berthd was down shows its real exit status. Run with each shim.

use std::time::Duration;

use berth_integration_tests::cli::berth;
use berth_integration_tests::shim::task_row;
use berth_integration_tests::tasks::{running, TaskCleanup};
use berth_integration_tests::{ok, setup, wait_until, Berthd, Runtime};

const IMAGE: &str = "docker.io/library/busybox:latest";

fn ps_status(b: &Berthd, ns: &str, id: &str) -> String {
    ok(berth(b, ns, &["ps", "-a"]), "berth ps -a")
        .lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .unwrap_or_default()
        .to_string()
}

fn survive(test: &str, rt: Runtime) {
    let ns = &rt.ns("berth-cli-restart");
    let runtime = rt.name();
    let Some(s) = setup(test, &["containerd-shim-runc-v2", "runc", "ctr"]) else {
        return;
    };
    let mut b = s.berthd_with(ns, "busybox", false);
    let _cleanup = TaskCleanup::new(b.address(), ns);
    let ids = ["c1", "c2", "c3", "c4", "c5"];
    for id in ids {
        ok(
            berth(
                &b,
                ns,
                &[
                    "run",
                    "-d",
                    "--runtime",
                    runtime,
                    "--name",
                    id,
                    IMAGE,
                    "sleep",
                    "1000",
                ],
            ),
            "berth run -d",
        );
    }
    ok(
        berth(
            &b,
            ns,
            &[
                "run",
                "-d",
                "--runtime",
                runtime,
                "--name",
                "ends",
                IMAGE,
                "sh",
                "-c",
                "sleep 2; exit 5",
            ],
        ),
        "berth run -d ends",
    );

    let tasks = ok(b.ctr(ns, &["task", "ls"]), "ctr task ls");
    let (ends_pid, _) = task_row(&tasks, "ends").unwrap_or_else(|| panic!("no task ends: {tasks}"));

    b.kill9();
    // Not a pause: wait until "ends" has exited, so that it did while berthd was down.
    wait_until(Duration::from_secs(20), "task ends to exit", || {
        !running(ends_pid)
    });
    b.restart();

    for id in ids {
        let line = ps_status(&b, ns, id);
        assert!(
            line.contains(" Up "),
            "{id} not running after restart: {line}"
        );
    }
    let ended = ps_status(&b, ns, "ends");
    assert!(ended.contains("Exited (5)"), "{ended}");

    let out = berth(&b, ns, &["exec", "c3", "sh", "-c", "exit 4"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // busybox sleep as pid 1 ignores SIGTERM: stop kills it after the grace period.
    let mut args = vec!["stop", "-t", "1"];
    args.extend(ids);
    ok(berth(&b, ns, &args), "berth stop");
    for id in ids {
        let line = ps_status(&b, ns, id);
        assert!(line.contains("Exited (137)"), "{id}: {line}");
    }
    let mut args = vec!["rm"];
    args.extend(ids);
    args.push("ends");
    ok(berth(&b, ns, &args), "berth rm");
    let left = ok(berth(&b, ns, &["ps", "-a", "-q"]), "berth ps -a -q");
    assert!(left.trim().is_empty(), "{left}");
}

#[test]
fn containers_survive_a_berthd_kill9_with_the_runc_shim() {
    survive(
        "containers_survive_a_berthd_kill9_with_the_runc_shim",
        Runtime::RuncShim,
    );
}

#[test]
fn containers_survive_a_berthd_kill9_with_berths_shim() {
    survive(
        "containers_survive_a_berthd_kill9_with_berths_shim",
        Runtime::BerthShim,
    );
}

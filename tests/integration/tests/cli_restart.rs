//! Restart survival through the berth CLI: five long-running containers and one that exits
//! while berthd is down; `kill -9` berthd and start it again: the five are listed running,
//! `berth exec` into one works, `berth stop` stops them with the right statuses, and the one that
//! ended while berthd was down shows its real exit status. Run with each shim.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use berth_integration_tests::registry::TestImages;
use berth_integration_tests::{enabled, ok, workspace_bin, Berthd};

const IMAGE: &str = "docker.io/library/busybox:latest";

fn berth(b: &Berthd, ns: &str, args: &[&str]) -> Output {
    Command::new(workspace_bin("berth"))
        .env_remove("BERTH_NAMESPACE")
        .env_remove("BERTH_RUNTIME")
        .env_remove("BERTH_STATE_DIR")
        .arg("--address")
        .arg(b.address())
        .args(["-n", ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run berth")
}

fn ps_status(b: &Berthd, ns: &str, id: &str) -> String {
    ok(berth(b, ns, &["ps", "-a"]), "berth ps -a")
        .lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .unwrap_or_default()
        .to_string()
}

fn survive(test: &str, ns: &str, runtime: &str) {
    if !enabled(test) {
        return;
    }
    let mut b = Berthd::start();
    let archive = TestImages::get().archive("busybox");
    ok(
        b.ctr(
            ns,
            &["images", "import", "--no-unpack", archive.to_str().unwrap()],
        ),
        "ctr images import",
    );
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

    b.kill9();
    std::thread::sleep(Duration::from_secs(4));
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
        "berth-cli-restart",
        "io.containerd.runc.v2",
    );
}

#[test]
fn containers_survive_a_berthd_kill9_with_berths_shim() {
    survive(
        "containers_survive_a_berthd_kill9_with_berths_shim",
        "berth-cli-restart-bshim",
        "io.containerd.berth.v2",
    );
}

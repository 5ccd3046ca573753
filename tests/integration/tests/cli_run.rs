//! `berth run` and the container commands against a real berthd, with Debian's runc shim (and
//! berth's own shim): output and exit codes, environment, working directory, a user looked up
//! in the image's /etc/passwd, bind mounts, a read-only root, host and no network, a terminal,
//! an OOM kill reported, and a detached container through ps, exec, logs, top, stats, inspect,
//! events, pause, stop, start and rm.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use berth_integration_tests::cli::{
    berth, berth_command, berth_with, clean_env, run_limited, Input, BERTH_TIMEOUT,
};
use berth_integration_tests::tasks::{FollowedLines, TaskCleanup};
use berth_integration_tests::{
    fails, ok, poll, setup as harness_setup, wait_until, workspace_bin, Berthd, Containerd,
};

/// The gate (root tests on, runc and the Go runc shim installed) and a berthd with busybox
/// imported (not unpacked: `run` unpacks it) in namespace `ns`.
fn setup(test: &str, ns: &str) -> Option<Berthd> {
    let s = harness_setup(test, &["containerd-shim-runc-v2", "runc", "ctr"])?;
    Some(s.berthd_with(ns, "busybox", false))
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Nothing of container `id` is left: no record, no task, no snapshot, no directory.
fn assert_gone(b: &Berthd, ns: &str, id: &str) {
    assert_eq!(ok(berth(b, ns, &["ps", "-a", "-q"]), "berth ps -a -q"), "");
    assert_eq!(ok(b.ctr(ns, &["task", "ls", "-q"]), "ctr task ls"), "");
    let snapshots = ok(b.ctr(ns, &["snapshots", "ls"]), "ctr snapshots ls");
    assert!(
        !snapshots.lines().any(|l| l.starts_with(&format!("{id} "))),
        "{snapshots}"
    );
    let dir = b.dir.path().join("containers").join(ns).join(id);
    assert!(!dir.exists(), "{} left", dir.display());
}

#[test]
fn run_prints_and_exits_with_the_container() {
    let ns = "berth-cli-run";
    let Some(b) = setup("run_prints_and_exits_with_the_container", ns) else {
        return;
    };
    let _cleanup = TaskCleanup::new(b.address(), ns);
    let out = berth(
        &b,
        ns,
        &["run", "--rm", "--name", "r1", "busybox", "echo", "hi"],
    );
    assert_eq!(ok(out, "berth run echo hi"), "hi\n");
    assert_gone(&b, ns, "r1");
    let out = berth(
        &b,
        ns,
        &[
            "run", "--rm", "--name", "r2", "busybox", "sh", "-c", "exit 7",
        ],
    );
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert_gone(&b, ns, "r2");
    let out = berth(
        &b,
        ns,
        &[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
    );
    assert_eq!(code(&out), 3);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(stderr(&out), "err\n");
    // Stdin with -i; a command that does not exist exits 127, as in Docker.
    let out = berth_with(
        &b.address(),
        ns,
        &["run", "-i", "--rm", "busybox", "wc", "-l"],
        &[],
        Input::Bytes(b"a\nb\nc\n"),
    );
    assert_eq!(ok(out, "berth run -i wc -l").trim(), "3");
    let out = berth(&b, ns, &["run", "--rm", "busybox", "/no/such/binary"]);
    assert_eq!(code(&out), 127, "{}", stderr(&out));
    assert!(stderr(&out).contains("/no/such/binary"), "{}", stderr(&out));
    // Without --rm the container stays, exited with its code.
    let out = berth(
        &b,
        ns,
        &["run", "--name", "kept", "busybox", "sh", "-c", "exit 5"],
    );
    assert_eq!(code(&out), 5);
    let ps = ok(berth(&b, ns, &["ps", "-a"]), "berth ps -a");
    assert!(
        ps.lines()
            .any(|l| l.starts_with("kept ") && l.contains("Exited (5)")),
        "{ps}"
    );
    ok(berth(&b, ns, &["rm", "kept"]), "berth rm kept");
    assert_gone(&b, ns, "kept");
    let out = berth(&b, ns, &["run", "--rm", "no-such-image", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

#[test]
fn run_with_env_workdir_user_mounts_and_read_only_root() {
    let ns = "berth-cli-opts";
    let Some(b) = setup("run_with_env_workdir_user_mounts_and_read_only_root", ns) else {
        return;
    };
    let _cleanup = TaskCleanup::new(b.address(), ns);
    let run = |args: &[&str]| {
        let mut full = vec!["run", "--rm"];
        full.extend_from_slice(args);
        berth(&b, ns, &full)
    };
    let env_file = b.dir.path().join("env");
    std::fs::write(&env_file, "# settings\nFROM_FILE=yes\n").unwrap();
    let out = run(&[
        "-e",
        "A=1",
        "--env-file",
        env_file.to_str().unwrap(),
        "-w",
        "/tmp",
        "busybox",
        "sh",
        "-c",
        "echo $A $FROM_FILE; pwd",
    ]);
    assert_eq!(ok(out, "env and workdir"), "1 yes\n/tmp\n");
    // A user name is looked up in the image's own /etc/passwd.
    let out = run(&["-u", "nobody", "busybox", "id", "-u"]);
    assert_eq!(ok(out, "-u nobody").trim(), "65534");
    let out = run(&["-u", "nobody", "busybox", "id", "-g"]);
    assert_eq!(ok(out, "-u nobody gid").trim(), "65534");
    let out = run(&["-u", "1234:5678", "busybox", "id"]);
    assert!(ok(out, "-u uid:gid").starts_with("uid=1234 gid=5678"));
    let out = run(&["-u", "ghost", "busybox", "true"]);
    assert_eq!(code(&out), 125);
    assert!(stderr(&out).contains("\"ghost\""), "{}", stderr(&out));

    // Bind mounts, read-only and writable.
    let host = b.dir.path().join("vol");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "from the host\n").unwrap();
    let ro = format!("{}:/data:ro", host.display());
    let out = run(&["-v", &ro, "busybox", "cat", "/data/f"]);
    assert_eq!(ok(out, "-v ro read"), "from the host\n");
    let out = run(&["-v", &ro, "busybox", "touch", "/data/x"]);
    assert_ne!(code(&out), 0, "a read-only mount is not writable");
    let rw = format!("{}:/data", host.display());
    ok(
        run(&["-v", &rw, "busybox", "sh", "-c", "echo back > /data/g"]),
        "-v rw write",
    );
    assert_eq!(std::fs::read_to_string(host.join("g")).unwrap(), "back\n");

    // A read-only root; /dev/shm and the /etc files stay writable.
    let out = run(&["--read-only", "busybox", "touch", "/x"]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    ok(
        run(&["--read-only", "busybox", "touch", "/dev/shm/x"]),
        "tmpfs under a read-only root",
    );

    // Safe defaults: no new privileges, seccomp filtering, containerd's capabilities.
    let status = ok(
        run(&["busybox", "cat", "/proc/self/status"]),
        "cat /proc/self/status",
    );
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2");
    assert_eq!(field("CapEff:"), "00000000a80425fb");
    let out = run(&["--cap-drop", "ALL", "busybox", "cat", "/proc/self/status"]);
    assert!(ok(out, "--cap-drop ALL").contains("CapEff:\t0000000000000000"));
    let out = run(&["--pids-limit", "20", "--cpus", "0.5", "busybox", "true"]);
    ok(out, "--pids-limit and --cpus");

    // Networks: none has only loopback; host shares the host's interfaces and /etc/hosts.
    let out = run(&["busybox", "ls", "/sys/class/net"]);
    assert_eq!(ok(out, "--net none").trim(), "lo");
    let out = run(&["--net", "host", "busybox", "ls", "/sys/class/net"]);
    assert!(ok(out, "--net host").lines().count() > 1);
    let out = run(&["--net", "host", "busybox", "cat", "/etc/hosts"]);
    assert_eq!(
        ok(out, "--net host hosts"),
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    );
    let out = run(&["--name", "h1", "busybox", "hostname"]);
    assert_eq!(ok(out, "hostname").trim(), "h1");
}

#[test]
fn run_with_a_terminal() {
    let ns = "berth-cli-tty";
    let Some(b) = harness_setup(
        "run_with_a_terminal",
        &["containerd-shim-runc-v2", "runc", "ctr", "script"],
    )
    .map(|s| s.berthd_with(ns, "busybox", false)) else {
        return;
    };
    let _cleanup = TaskCleanup::new(b.address(), ns);
    // `script` gives berth a terminal; it and the shell it starts get the clean environment.
    let in_terminal = |args: &str| {
        let cmd = format!(
            "{} --address {} -n {ns} {args}",
            workspace_bin("berth").display(),
            b.address().display()
        );
        let mut script = Command::new("script");
        clean_env(&mut script).args(["-qec", &cmd, "/dev/null"]);
        run_limited(script, Input::Null, BERTH_TIMEOUT)
    };
    let out = in_terminal("run -it --rm busybox tty");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("/dev/pts/0"), "{stdout:?}");
    // The exit code comes through the terminal too.
    let out = in_terminal("run -t --rm busybox sh -c 'exit 4'");
    assert_eq!(code(&out), 4);
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() {
    let ns = "berth-cli-oom";
    let Some(b) = setup("a_container_over_its_memory_limit_is_oom_killed", ns) else {
        return;
    };
    let _cleanup = TaskCleanup::new(b.address(), ns);
    let hog = |mib: u32| {
        format!("x=$(dd if=/dev/zero bs=1M count={mib} 2>/dev/null | tr '\\0' a); echo ${{#x}}")
    };
    let out = berth(
        &b,
        ns,
        &[
            "run",
            "--name",
            "hog",
            "--memory",
            "20m",
            "busybox",
            "sh",
            "-c",
            &hog(100),
        ],
    );
    assert_eq!(code(&out), 137, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("container hog was OOM-killed (memory limit 20.00MiB)"),
        "{}",
        stderr(&out)
    );
    let inspect = ok(
        berth(&b, ns, &["inspect", "--format", "json", "hog"]),
        "inspect",
    );
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v[0]["state"]["oom_killed"], true);
    assert_eq!(v[0]["state"]["exit_code"], 137);
    assert_eq!(
        v[0]["spec"]["linux"]["resources"]["memory"]["limit"],
        20 << 20
    );
    ok(berth(&b, ns, &["rm", "hog"]), "rm hog");
    // Under the limit, the same program runs to its end.
    let out = berth(
        &b,
        ns,
        &[
            "run",
            "--rm",
            "--memory",
            "20m",
            "busybox",
            "sh",
            "-c",
            &hog(2),
        ],
    );
    assert_eq!(ok(out, "under the limit").trim(), "2097152");
}

/// `berth events` of `ns`, running until dropped.
struct Events(FollowedLines);

impl Events {
    fn start(b: &Berthd, ns: &str) -> Events {
        let cmd = berth_command(&b.address(), ns, &["events", &format!("namespace=={ns}")]);
        Events(FollowedLines::spawn_events(cmd, &b.address(), ns))
    }

    fn text(&self) -> String {
        self.0.text()
    }
}

fn ps_line(b: &Berthd, ns: &str, id: &str) -> String {
    ok(berth(b, ns, &["ps", "-a"]), "berth ps -a")
        .lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_detached_container_through_its_life() {
    let ns = "berth-cli-detached";
    let Some(b) = setup("a_detached_container_through_its_life", ns) else {
        return;
    };
    let _cleanup = TaskCleanup::new(b.address(), ns);
    let events = Events::start(&b, ns);
    let script = "echo started; echo oops >&2; trap 'echo bye; exit 0' TERM; \
                  while true; do sleep 0.2; done";
    let out = berth(
        &b,
        ns,
        &["run", "-d", "--name", "d1", "busybox", "sh", "-c", script],
    );
    assert_eq!(ok(out, "berth run -d"), "d1\n");
    let ps = ok(berth(&b, ns, &["ps"]), "berth ps");
    assert!(ps.starts_with("CONTAINER ID "), "{ps}");
    assert!(ps_line(&b, ns, "d1").contains(" Up "), "{ps}");
    assert_eq!(ok(berth(&b, ns, &["ps", "-q"]), "ps -q"), "d1\n");

    // exec: its output and its exit code.
    let out = berth(&b, ns, &["exec", "d1", "sh", "-c", "echo in; exit 3"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "in\n");
    let out = berth(
        &b,
        ns,
        &[
            "exec",
            "-e",
            "X=2",
            "-w",
            "/etc",
            "d1",
            "sh",
            "-c",
            "echo $X; pwd",
        ],
    );
    assert_eq!(ok(out, "exec -e -w"), "2\n/etc\n");

    // logs: stdout and stderr of the detached task, through a file:// log.
    assert!(
        poll(Duration::from_secs(5), || {
            let logs = ok(berth(&b, ns, &["logs", "d1"]), "berth logs");
            logs.contains("started\n") && logs.contains("oops\n")
        }),
        "logs of d1 lack started and oops: {}",
        ok(berth(&b, ns, &["logs", "d1"]), "berth logs")
    );

    // top, stats and inspect see the running task.
    let top = ok(berth(&b, ns, &["top", "d1"]), "berth top");
    assert!(top.contains("sh -c echo started"), "{top}");
    let stats = ok(
        berth(&b, ns, &["stats", "--format", "json", "d1"]),
        "berth stats",
    );
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(v[0]["id"], "d1");
    assert!(v[0]["pids"].as_u64().unwrap() >= 1, "{stats}");
    assert!(v[0]["memory"].as_u64().unwrap() > 0, "{stats}");
    let inspect = ok(
        berth(&b, ns, &["inspect", "--format", "json", "d1"]),
        "berth inspect",
    );
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v[0]["state"]["status"], "running");
    assert_eq!(v[0]["runtime"], "io.containerd.runc.v2");
    assert_eq!(v[0]["spec"]["process"]["noNewPrivileges"], true);
    let pid = v[0]["state"]["pid"].as_u64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    ok(berth(&b, ns, &["pause", "d1"]), "berth pause");
    assert!(ps_line(&b, ns, "d1").contains("Up (Paused)"));
    ok(berth(&b, ns, &["unpause", "d1"]), "berth unpause");
    // A running container is not removed without -f.
    let err = fails(berth(&b, ns, &["rm", "d1"]), "rm a running container");
    assert!(err.contains("is running"), "{err}");

    // stop: SIGTERM (trapped, exit 0), then the exit is recorded.
    ok(berth(&b, ns, &["stop", "-t", "10", "d1"]), "berth stop");
    let line = ps_line(&b, ns, "d1");
    assert!(line.contains("Exited (0)"), "{line}");
    assert!(ok(berth(&b, ns, &["logs", "d1"]), "logs").contains("bye\n"));
    assert_eq!(ok(berth(&b, ns, &["ps", "-q"]), "ps -q"), "");

    // start: again, detached; kill; a stopped container's task is replaced by start.
    ok(berth(&b, ns, &["start", "d1"]), "berth start");
    assert!(ps_line(&b, ns, "d1").contains(" Up "));
    ok(berth(&b, ns, &["kill", "d1"]), "berth kill");
    wait_until(
        Duration::from_secs(10),
        "d1 Exited (137) in berth ps",
        || ps_line(&b, ns, "d1").contains("Exited (137)"),
    );
    // logs -f ends when the container has stopped.
    let logs = ok(berth(&b, ns, &["logs", "-f", "d1"]), "logs -f");
    assert_eq!(logs.matches("started\n").count(), 2, "{logs}");

    // A stuck container is killed after the grace time.
    ok(
        berth(
            &b,
            ns,
            &["run", "-d", "--name", "d2", "busybox", "sleep", "1000"],
        ),
        "run d2",
    );
    let t = Instant::now();
    ok(berth(&b, ns, &["stop", "-t", "1", "d2"]), "stop d2");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(ps_line(&b, ns, "d2").contains("Exited (137)"));

    ok(berth(&b, ns, &["rm", "d1", "d2"]), "berth rm");
    assert_gone(&b, ns, "d1");
    let out = berth(
        &b,
        ns,
        &["run", "-d", "--name", "d3", "busybox", "sleep", "1000"],
    );
    ok(out, "run d3");
    ok(berth(&b, ns, &["rm", "-f", "d3"]), "rm -f");
    assert_gone(&b, ns, "d3");

    wait_until(Duration::from_secs(5), "the delete event of d3", || {
        events.text().contains("/containers/delete {\"id\":\"d3\"}")
    });
    let text = events.text();
    for topic in [
        "/containers/create",
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!(" {ns} {topic} ")) && l.contains("\"d1\"")),
            "no {topic} for d1 in:\n{text}"
        );
    }
}

#[test]
fn run_with_berths_own_shim() {
    let ns = "berth-cli-shim";
    let Some(b) = setup("run_with_berths_own_shim", ns) else {
        return;
    };
    let _cleanup = TaskCleanup::new(b.address(), ns);
    let rt = "io.containerd.berth.v2";
    let out = berth(
        &b,
        ns,
        &["run", "--rm", "--runtime", rt, "busybox", "echo", "hi"],
    );
    assert_eq!(ok(out, "run with the berth shim"), "hi\n");
    let out = berth(
        &b,
        ns,
        &[
            "run",
            "--rm",
            "--runtime",
            rt,
            "busybox",
            "sh",
            "-c",
            "exit 9",
        ],
    );
    assert_eq!(code(&out), 9);
    ok(
        berth(
            &b,
            ns,
            &[
                "run",
                "-d",
                "--runtime",
                rt,
                "--name",
                "s1",
                "busybox",
                "sh",
                "-c",
                "echo up; sleep 1000",
            ],
        ),
        "run -d",
    );
    let out = berth(&b, ns, &["exec", "s1", "sh", "-c", "exit 6"]);
    assert_eq!(code(&out), 6);
    wait_until(Duration::from_secs(5), "logs of s1 to say up", || {
        ok(berth(&b, ns, &["logs", "s1"]), "logs") == "up\n"
    });
    ok(berth(&b, ns, &["rm", "-f", "s1"]), "rm -f");
    assert_gone(&b, ns, "s1");
}

#[test]
fn berth_runs_containers_on_containerd_too() {
    let ns = "berth-cli-containerd";
    let Some(s) = harness_setup(
        "berth_runs_containers_on_containerd_too",
        &["containerd", "containerd-shim-runc-v2", "runc", "ctr"],
    ) else {
        return;
    };
    let Some(c) = Containerd::start() else {
        return;
    };
    let archive = s.images.archive("busybox");
    ok(
        c.ctr(
            ns,
            &["images", "import", "--no-unpack", archive.to_str().unwrap()],
        ),
        "ctr images import",
    );
    let _cleanup = TaskCleanup::new(c.address(), ns);
    let run = |args: &[&str]| berth_with(&c.address(), ns, args, &[], Input::Null);
    let out = run(&["run", "--rm", "-u", "nobody", "busybox", "id", "-u"]);
    assert_eq!(ok(out, "run on containerd").trim(), "65534");
    let out = run(&["run", "--rm", "busybox", "sh", "-c", "exit 7"]);
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    let out = run(&[
        "run",
        "-d",
        "--name",
        "c1",
        "busybox",
        "sh",
        "-c",
        "echo up; sleep 1000",
    ]);
    ok(out, "run -d on containerd");
    let out = run(&["exec", "c1", "sh", "-c", "exit 3"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    wait_until(Duration::from_secs(5), "logs of c1 to say up", || {
        ok(run(&["logs", "c1"]), "logs") == "up\n"
    });
    ok(run(&["stop", "-t", "1", "c1"]), "stop");
    ok(run(&["rm", "c1"]), "rm");
    assert_eq!(ok(run(&["ps", "-a", "-q"]), "ps"), "");
    // Only the image's snapshot is left.
    let snapshots = ok(c.ctr(ns, &["snapshots", "ls"]), "snapshots");
    assert_eq!(snapshots.lines().count(), 2, "{snapshots}");
}

/// `berth rm` removes the container's own directory, never a path a label names: any API
/// client (here Debian's ctr) can set labels, and berth runs as root.
#[test]
fn rm_leaves_a_directory_named_by_a_label_alone() {
    let ns = "berth-cli-rm-label";
    let Some(b) = setup("rm_leaves_a_directory_named_by_a_label_alone", ns) else {
        return;
    };
    let _cleanup = TaskCleanup::new(b.address(), ns);
    let victim = b.dir.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious"), b"keep me").unwrap();
    let dir_label = format!("berth/dir={}", victim.display());
    let log_label = format!("berth/log={}", victim.join("precious").display());
    ok(
        b.ctr(
            ns,
            &[
                "run",
                "--label",
                &dir_label,
                "--label",
                &log_label,
                "docker.io/library/busybox:latest",
                "l1",
                "true",
            ],
        ),
        "ctr run with labels",
    );
    ok(berth(&b, ns, &["rm", "l1"]), "berth rm l1");
    assert_eq!(
        std::fs::read(victim.join("precious")).unwrap(),
        b"keep me",
        "berth rm followed a label"
    );
    assert_eq!(ok(berth(&b, ns, &["ps", "-a", "-q"]), "berth ps -a -q"), "");
}

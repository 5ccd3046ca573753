//! `containerd-shim-berth-v2` under Debian's real containerd 1.6, driven by Debian's `ctr` as a
//! user would (`--runtime io.containerd.berth.v2`): run with output and exit codes, a detached
//! task through its whole lifecycle (ls, ps, exec, pause/resume, metrics, kill, delete) with the
//! events containerd receives, a real terminal, stdin and log URIs, crun, an OOM kill, a shim
//! killed under a running container, a containerd restart, and the shim's memory beside
//! containerd's own runc shim.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_integration_tests::cli::{clean_env, run_limited, Input, BERTH_TIMEOUT};
use berth_integration_tests::shim::{
    hugetlb_for_crun, parent_pid, rss_kib, task_row, ShimContainerd, BUSYBOX, RUNTIME,
};
use berth_integration_tests::tasks::running;
use berth_integration_tests::{ok, poll, setup as harness_setup, unmet, wait_until};

/// The gate (root tests on; runc, ctr, containerd and `tools` installed) and a containerd
/// that finds the berth shim, with busybox imported.
fn setup(test: &str, tools: &[&str]) -> Option<ShimContainerd> {
    let tools = [&["runc", "ctr", "containerd"][..], tools].concat();
    harness_setup(test, &tools)?;
    ShimContainerd::start(&[])
}

/// `ctr run --rm --runtime io.containerd.berth.v2 busybox ID ARGS...`
fn run_rm<'a>(id: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run", "--rm", "--runtime", RUNTIME, BUSYBOX, id];
    v.extend_from_slice(args);
    v
}

#[test]
fn run_prints_and_exit_codes_propagate() {
    let Some(c) = setup("run_prints_and_exit_codes_propagate", &[]) else {
        return;
    };
    let out = c.ctr(&run_rm("t1", &["echo", "hi"]));
    assert_eq!(ok(out, "ctr run echo hi"), "hi\n");

    let out = c.ctr(&run_rm(
        "t1",
        &["sh", "-c", "echo out; echo err >&2; exit 7"],
    ));
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err\n"));

    // The runtime's own error reaches the user.
    let out = c.ctr(&run_rm("t1", &["/no/such/binary"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("runc create failed") && err.contains("/no/such/binary"),
        "{err}"
    );

    // Nothing is left behind: no shim, no bundle, no container.
    assert!(!c.bundle("t1").exists());
    assert_eq!(ok(c.ctr(&["containers", "ls", "-q"]), "ls"), "");
}

#[test]
fn detached_task_lifecycle_with_events() {
    let Some(c) = setup("detached_task_lifecycle_with_events", &[]) else {
        return;
    };
    let events = c.events();
    let id = "t2";
    ok(
        c.ctr(&[
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            BUSYBOX,
            id,
            "sleep",
            "1000",
        ]),
        "ctr run -d",
    );
    let table = ok(c.ctr(&["task", "ls"]), "task ls");
    let (pid, status) = task_row(&table, id).expect("task listed");
    assert_eq!(status, "RUNNING", "{table}");
    let shim = parent_pid(pid).expect("shim pid");
    assert!(
        std::fs::read_to_string(format!("/proc/{shim}/cmdline"))
            .unwrap()
            .contains("containerd-shim-berth-v2"),
        "the task's parent is the berth shim"
    );
    let address = std::fs::read_to_string(c.bundle(id).join("address")).unwrap();
    assert!(address.starts_with("unix:///run/berth/s/"), "{address}");

    let ps = ok(c.ctr(&["task", "ps", id]), "task ps");
    assert!(ps.lines().any(|l| l.starts_with(&pid.to_string())), "{ps}");

    let out = c.ctr(&["task", "exec", "--exec-id", "x", id, "sh", "-c", "exit 3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "y",
        id,
        "sh",
        "-c",
        "echo in; cat /proc/1/comm",
    ]);
    assert!(ok(out, "exec echo").contains("in\nsleep\n"));

    ok(c.ctr(&["task", "pause", id]), "pause");
    assert_eq!(
        task_row(&ok(c.ctr(&["task", "ls"]), "ls"), id).unwrap().1,
        "PAUSED"
    );
    ok(c.ctr(&["task", "resume", id]), "resume");
    assert_eq!(
        task_row(&ok(c.ctr(&["task", "ls"]), "ls"), id).unwrap().1,
        "RUNNING"
    );

    let metrics = ok(c.ctr(&["task", "metrics", id]), "metrics");
    for row in ["memory.usage_in_bytes", "cpuacct.usage", "pids.current"] {
        assert!(metrics.contains(row), "{metrics}");
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["pids.current", "1"]),
        "{metrics}"
    );

    // sleep as pid 1 ignores SIGTERM: kill it for good.
    ok(c.ctr(&["task", "kill", "-s", "SIGKILL", id]), "kill");
    wait_until(Duration::from_secs(10), &format!("{id} STOPPED"), || {
        task_row(&ok(c.ctr(&["task", "ls"]), "ls"), id).is_some_and(|r| r.1 == "STOPPED")
    });
    ok(c.ctr(&["task", "delete", id]), "task delete");
    ok(c.ctr(&["container", "rm", id]), "container rm");
    wait_until(
        Duration::from_secs(10),
        "the shim to exit after delete",
        || !running(shim),
    );
    assert!(
        !Path::new(address.trim_start_matches("unix://")).exists(),
        "socket removed"
    );

    wait_until(Duration::from_secs(10), "the delete event of t2", || {
        events
            .text()
            .lines()
            .any(|l| l.contains(" /tasks/delete ") && l.contains("\"t2\""))
    });
    // A pause that is the thing under test: no event may come twice, and an absence cannot be
    // polled for; anything still in flight gets this long to show up as a duplicate.
    std::thread::sleep(Duration::from_millis(300));
    let text = events.text();
    let count = |topic: &str, needle: &str| {
        text.lines()
            .filter(|l| l.contains(&format!(" {topic} ")) && l.contains(needle))
            .count()
    };
    for topic in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/delete",
    ] {
        assert_eq!(count(topic, "\"t2\""), 1, "{topic} once:\n{text}");
    }
    assert_eq!(count("/tasks/exec-added", "\"x\""), 1, "{text}");
    assert_eq!(count("/tasks/exec-started", "\"x\""), 1, "{text}");
    // Each process's exit is reported exactly once, with its status.
    assert_eq!(count("/tasks/exit", "\"id\":\"x\""), 1, "{text}");
    assert_eq!(count("/tasks/exit", "\"exit_status\":3"), 1, "{text}");
    assert_eq!(count("/tasks/exit", "\"id\":\"y\""), 1, "{text}");
    assert_eq!(count("/tasks/exit", "\"id\":\"t2\""), 1, "{text}");
    assert_eq!(count("/tasks/exit", "\"exit_status\":137"), 1, "{text}");
    let line_of = |topic: &str, needle: &str| {
        text.lines()
            .position(|l| l.contains(&format!(" {topic} ")) && l.contains(needle))
            .unwrap()
    };
    let start = line_of("/tasks/start", "\"t2\"");
    let exit = line_of("/tasks/exit", "\"id\":\"t2\"");
    assert!(start < exit, "start before exit");
}

#[test]
fn terminal_is_a_real_tty() {
    let Some(c) = setup("terminal_is_a_real_tty", &["script"]) else {
        return;
    };
    // ctr -t needs a terminal of its own: script gives it one.
    let ctr = |cmd: &str| {
        let line = format!(
            "ctr --address {} run -t --rm --runtime {RUNTIME} {BUSYBOX} t3 {cmd}",
            c.containerd.address().display()
        );
        let mut script = Command::new("script");
        clean_env(&mut script).args(["-eqc", &line, "/dev/null"]);
        run_limited(script, Input::Null, BERTH_TIMEOUT)
    };
    let out = ctr("tty");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("/dev/pts/0"), "{text:?}");
    let out = ctr("sh -c 'test -t 0 && test -t 1 && exit 9'");
    assert_eq!(
        out.status.code(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // An exec with its own terminal.
    ok(
        c.ctr(&[
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            BUSYBOX,
            "t3b",
            "sleep",
            "1000",
        ]),
        "run -d",
    );
    let line = format!(
        "ctr --address {} task exec -t --exec-id tty t3b tty",
        c.containerd.address().display()
    );
    let out = Command::new("script")
        .args(["-eqc", &line, "/dev/null"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/dev/pts/"),
        "{out:?}"
    );
    ok(c.ctr(&["task", "kill", "-s", "SIGKILL", "t3b"]), "kill");
}

#[test]
fn stdin_and_log_uris() {
    let Some(c) = setup("stdin_and_log_uris", &[]) else {
        return;
    };
    let out = c.ctr_stdin(&run_rm("t4", &["cat"]), b"hello stdin\n");
    assert_eq!(ok(out, "cat"), "hello stdin\n");
    let out = c.ctr_stdin(&run_rm("t4", &["wc", "-l"]), b"a\nb\nc\n");
    assert_eq!(ok(out, "wc -l").trim(), "3");

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("logs/t5.log");
    let uri = format!("file://{}", log.display());
    let out = c.ctr(&[
        "run",
        "--rm",
        "--log-uri",
        &uri,
        "--runtime",
        RUNTIME,
        BUSYBOX,
        "t5",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2",
    ]);
    ok(out, "run with file log");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("to-out\n") && text.contains("to-err\n"),
        "{text:?}"
    );

    // A logging binary gets stdout on fd 3, stderr on fd 4, and closes fd 5 when ready.
    let logger = dir.path().join("logger.sh");
    std::fs::write(
        &logger,
        "#!/bin/sh\nexec 5>&-\necho \"$CONTAINER_NAMESPACE/$CONTAINER_ID\" > \"$2/who\"\n\
         cat <&3 > \"$2/out\" &\ncat <&4 > \"$2/err\" &\nwait\n",
    )
    .unwrap();
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&logger, mode).unwrap();
    let uri = format!("binary://{}?dir={}", logger.display(), dir.path().display());
    let out = c.ctr(&[
        "run",
        "--rm",
        "--log-uri",
        &uri,
        "--runtime",
        RUNTIME,
        BUSYBOX,
        "t6",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; exit 2",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
    wait_until(
        Duration::from_secs(5),
        "the log URIs' files to hold the output",
        || read("out") == "to-out\n" && read("err") == "to-err\n",
    );
    assert_eq!(read("who"), "default/t6\n");
}

#[test]
fn crun_through_runtime_options() {
    let Some(c) = setup("crun_through_runtime_options", &["crun", "mountpoint"]) else {
        return;
    };
    if let Err(why) = hugetlb_for_crun() {
        unmet("crun_through_runtime_options", &why);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("crun.toml");
    std::fs::write(&config, "BinaryName = \"crun\"\n").unwrap();
    let config = config.to_str().unwrap();
    let run = |id: &str, args: &[&str]| {
        let mut v = vec![
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            "--runtime-config-path",
            config,
            BUSYBOX,
            id,
        ];
        v.extend_from_slice(args);
        c.ctr(&v)
    };
    assert_eq!(ok(run("c1", &["echo", "hi"]), "crun echo"), "hi\n");
    let out = run("c1", &["sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    let out = run("c1", &["/no/such/binary"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("crun create failed"),
        "{out:?}"
    );

    // containerd's runc options (`--runc-binary`, which ctr sets only for io.containerd.runc.v2):
    // a containerd whose io.containerd.runc.v2 is this shim.
    drop(c);
    let Some(c) = ShimContainerd::start(&["containerd-shim-runc-v2"]) else {
        return;
    };
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runc-binary",
        "crun",
        BUSYBOX,
        "c2",
        "sh",
        "-c",
        "echo via-runc-options",
    ]);
    assert_eq!(ok(out, "runc options"), "via-runc-options\n");
    assert!(
        c.log().contains("runtime=io.containerd.berth.v2"),
        "served by the berth shim"
    );
    ok(
        c.ctr(&[
            "run",
            "-d",
            "--runc-binary",
            "crun",
            BUSYBOX,
            "c3",
            "sleep",
            "100",
        ]),
        "run -d crun",
    );
    let runtime = std::fs::read_to_string(c.bundle("c3").join("berth-runtime.json")).unwrap();
    assert!(
        runtime.contains("\"binary\":\"/usr/bin/crun\""),
        "{runtime}"
    );
    let out = c.ctr(&["task", "exec", "--exec-id", "e", "c3", "sh", "-c", "exit 6"]);
    assert_eq!(out.status.code(), Some(6));
    ok(c.ctr(&["task", "kill", "-s", "SIGKILL", "c3"]), "kill");
}

#[test]
fn oom_kill_is_reported() {
    let Some(c) = setup("oom_kill_is_reported", &[]) else {
        return;
    };
    let events = c.events();
    // 16 MiB limit, then a 64 MiB string in the shell.
    let out = c.ctr(&[
        "run",
        "--rm",
        "--memory-limit",
        "16777216",
        "--runtime",
        RUNTIME,
        BUSYBOX,
        "t7",
        "sh",
        "-c",
        "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    let seen = poll(Duration::from_secs(10), || {
        events
            .text()
            .lines()
            .any(|l| l.contains(" /tasks/oom ") && l.contains("\"t7\""))
    });
    assert!(seen, "no /tasks/oom event of t7: {}", events.text());
}

#[test]
fn killed_shim_is_cleaned_up_by_delete() {
    let Some(c) = setup("killed_shim_is_cleaned_up_by_delete", &[]) else {
        return;
    };
    ok(
        c.ctr(&[
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            BUSYBOX,
            "t8",
            "sleep",
            "1000",
        ]),
        "run -d",
    );
    let (pid, _) = task_row(&ok(c.ctr(&["task", "ls"]), "ls"), "t8").unwrap();
    let shim = parent_pid(pid).unwrap();
    Command::new("kill")
        .args(["-9", &shim.to_string()])
        .status()
        .unwrap();
    // containerd runs `containerd-shim-berth-v2 delete`: the container is killed, the rootfs
    // unmounted, the bundle removed.
    wait_until(
        Duration::from_secs(10),
        "the container to be killed",
        || !running(pid),
    );
    wait_until(
        Duration::from_secs(10),
        "the bundle of t8 to be removed",
        || !c.bundle("t8").exists(),
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&c.bundle("t8").display().to_string()),
        "rootfs unmounted"
    );
    assert!(c.log().contains("cleaning up dead shim"));
    ok(c.ctr(&["container", "rm", "t8"]), "container rm");
}

#[test]
fn containerd_restart_reconnects() {
    let Some(mut c) = setup("containerd_restart_reconnects", &[]) else {
        return;
    };
    ok(
        c.ctr(&[
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            BUSYBOX,
            "t9",
            "sleep",
            "1000",
        ]),
        "run -d",
    );
    let (pid, _) = task_row(&ok(c.ctr(&["task", "ls"]), "ls"), "t9").unwrap();
    c.restart();
    let (pid2, status) = task_row(&ok(c.ctr(&["task", "ls"]), "ls after restart"), "t9").unwrap();
    assert_eq!((pid2, status.as_str()), (pid, "RUNNING"));
    let out = c.ctr(&["task", "exec", "--exec-id", "x", "t9", "sh", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    ok(c.ctr(&["task", "kill", "-s", "SIGKILL", "t9"]), "kill");
    wait_until(
        Duration::from_secs(10),
        "ctr task delete t9 to succeed",
        || c.ctr(&["task", "delete", "t9"]).status.success(),
    );
    ok(c.ctr(&["container", "rm", "t9"]), "container rm");
}

#[test]
fn shim_memory_beside_the_runc_shim() {
    let Some(c) = setup("shim_memory_beside_the_runc_shim", &[]) else {
        return;
    };
    ok(
        c.ctr(&[
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            BUSYBOX,
            "m1",
            "sleep",
            "1000",
        ]),
        "berth",
    );
    ok(
        c.ctr(&[
            "run",
            "-d",
            "--runtime",
            "io.containerd.runc.v2",
            BUSYBOX,
            "m2",
            "sleep",
            "1000",
        ]),
        "runc",
    );
    // A pause that is part of the measurement: the shims' memory when idle, after the
    // allocations of starting a task have settled.
    std::thread::sleep(Duration::from_millis(500));
    let table = ok(c.ctr(&["task", "ls"]), "ls");
    let rss = |id: &str| {
        let (pid, _) = task_row(&table, id).unwrap();
        rss_kib(parent_pid(pid).unwrap()).unwrap()
    };
    let (berth, runc) = (rss("m1"), rss("m2"));
    let shim = berth_integration_tests::workspace_bin("containerd-shim-berth-v2");
    eprintln!(
        "idle shim RSS: {} {berth} KiB, containerd-shim-runc-v2 {runc} KiB",
        shim.display()
    );
    assert!(
        berth < runc,
        "berth shim {berth} KiB vs runc shim {runc} KiB"
    );
    for id in ["m1", "m2"] {
        ok(c.ctr(&["task", "kill", "-s", "SIGKILL", id]), "kill");
    }
}

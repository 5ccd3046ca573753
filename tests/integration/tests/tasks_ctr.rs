//! Tasks through berthd, with Debian's Go runc shim (`containerd-shim-runc-v2`) and with berth's own
//! shim (`containerd-shim-berth-v2`): every lifecycle test runs once per shim. Driven by
//! Debian's `ctr` as a user would: `ctr run` in the foreground (output, exit codes, a terminal),
//! detached tasks (list, ps, exec, pause/resume, metrics, kill, delete) with the events the shim
//! forwards, a shim killed under berthd, and tasks surviving `kill -9` of berthd: reconnected
//! after the restart, still usable, with the real exit status of a task that ended while berthd
//! was down and a clean-up for a shim that died meanwhile.

use std::process::{Command, Output};
use std::time::Duration;

use berth_integration_tests::cli::{clean_env, run_limited, Input, BERTH_TIMEOUT};
use berth_integration_tests::tasks::{running, shim_pids, FollowedLines, TaskCleanup};
use berth_integration_tests::{
    fails, ok, setup as harness_setup, wait_until, workspace_bin, Berthd, Runtime,
};

const IMAGE: &str = "docker.io/library/busybox:latest";

/// `ctr run` arguments with the test's `--runtime`.
fn run_args<'a>(rt: Runtime, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run", "--runtime", rt.name()];
    v.extend_from_slice(rest);
    v
}

/// Run every lifecycle test with Debian's Go runc shim and with berth's own shim: the runtime
/// is the test function's parameter.
macro_rules! with_both_shims {
    ($($test:ident),* $(,)?) => {
        mod runc_shim {
            $(#[test]
            fn $test() {
                super::$test(super::Runtime::RuncShim)
            })*
        }
        mod berth_shim {
            $(#[test]
            fn $test() {
                super::$test(super::Runtime::BerthShim)
            })*
        }
    };
}

with_both_shims!(
    run_in_the_foreground_prints_and_exits_with_the_task,
    run_with_a_terminal,
    detached_task_lifecycle_with_events,
    a_shim_killed_under_berthd_is_cleaned_up,
    tasks_survive_a_berthd_kill9,
);

/// The gate (root tests on, runc and the Go runc shim installed) and a berthd with busybox
/// imported and unpacked in namespace `ns`.
fn setup(test: &str, ns: &str, tools: &[&str]) -> Option<Berthd> {
    let tools = [&["containerd-shim-runc-v2", "runc", "ctr"][..], tools].concat();
    Some(harness_setup(test, &tools)?.berthd_with(ns, "busybox", true))
}

/// The shim process serving task `id`.
fn shim_of(b: &Berthd, id: &str) -> u32 {
    shim_pids(&b.address())
        .into_iter()
        .find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|&c| c == 0).collect();
            args.windows(2)
                .any(|w| w[0] == b"-id" && w[1] == id.as_bytes())
        })
        .unwrap_or_else(|| panic!("no shim for task {id}"))
}

/// `ctr task ls` as (id, pid, status) rows.
fn tasks(b: &Berthd, ns: &str) -> Vec<(String, String, String)> {
    ok(b.ctr(ns, &["task", "ls"]), "ctr task ls")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 3).then(|| (w[0].to_string(), w[1].to_string(), w[2].to_string()))
        })
        .collect()
}

fn status(b: &Berthd, ns: &str, id: &str) -> String {
    tasks(b, ns)
        .into_iter()
        .find(|t| t.0 == id)
        .map(|t| t.2)
        .unwrap_or_default()
}

/// `s` without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// `ctr task delete ID` (the task has exited); returns the exit code ctr 1.6 warns about
/// (`task ID exit with non-zero exit code N`), 0 if none.
fn delete_task(b: &Berthd, ns: &str, id: &str) -> u32 {
    let out = b.ctr(ns, &["task", "delete", id]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ctr task delete {id}: {stderr}");
    stderr
        .split("non-zero exit code ")
        .nth(1)
        .and_then(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// `ctr events` of `ns`, running until dropped.
struct Events(FollowedLines);

impl Events {
    fn start(b: &Berthd, ns: &str) -> Events {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(b.address())
            .args(["--namespace", ns, "events"]);
        Events(FollowedLines::spawn_events(cmd, &b.address(), ns))
    }

    /// Wait (up to 10 s) until `topic` was seen for `id`; all lines so far.
    fn wait_for(&self, topic: &str, id: &str) -> String {
        wait_until(
            Duration::from_secs(10),
            &format!("event {topic} of {id}"),
            || topics_for(&self.0.text(), id).iter().any(|t| t == topic),
        );
        self.0.text()
    }
}

/// The topics in `events` for task or container `id`, in order.
fn topics_for(events: &str, id: &str) -> Vec<String> {
    let needle = format!("\"container_id\":\"{id}\"");
    events
        .lines()
        .filter(|l| l.contains(&needle) || l.contains(&format!("{{\"id\":\"{id}\"")))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(str::to_string)
        .collect()
}

fn run_in_the_foreground_prints_and_exits_with_the_task(rt: Runtime) {
    let ns = &rt.ns("berth-tasks-fg");
    let Some(b) = setup(
        "run_in_the_foreground_prints_and_exits_with_the_task",
        ns,
        &[],
    ) else {
        return;
    };
    let _cleanup = TaskCleanup::new(b.address(), ns);
    let out = b.ctr(ns, &run_args(rt, &["--rm", IMAGE, "fg1", "echo", "hi"]));
    assert_eq!(ok(out, "ctr run echo hi"), "hi\n");
    let out = b.ctr(
        ns,
        &run_args(rt, &["--rm", IMAGE, "fg2", "sh", "-c", "exit 7"]),
    );
    assert_eq!(code(&out), 7, "{}", String::from_utf8_lossy(&out.stderr));
    // --rm removed the containers and their snapshots; no task and no bundle is left.
    assert_eq!(ok(b.ctr(ns, &["containers", "ls", "-q"]), "ctr c ls"), "");
    assert!(tasks(&b, ns).is_empty());
    let snapshots = ok(b.ctr(ns, &["snapshots", "ls"]), "ctr snapshots ls");
    assert!(
        !snapshots.contains("fg1") && !snapshots.contains("fg2"),
        "{snapshots}"
    );
    let bundles = b
        .dir
        .path()
        .join("state/io.containerd.runtime.v2.task")
        .join(ns);
    assert!(
        std::fs::read_dir(&bundles).map_or(true, |mut d| d.next().is_none()),
        "bundles left in {}",
        bundles.display()
    );
    assert!(shim_pids(&b.address()).is_empty(), "shims left running");
}

fn run_with_a_terminal(rt: Runtime) {
    let ns = &rt.ns("berth-tasks-tty");
    let Some(b) = setup("run_with_a_terminal", ns, &["script"]) else {
        return;
    };
    let _cleanup = TaskCleanup::new(b.address(), ns);
    let cmd = format!(
        "ctr --address {} --namespace {ns} run --runtime {} --rm -t {IMAGE} tty1 tty",
        b.address().display(),
        rt.name()
    );
    let mut script = Command::new("script");
    clean_env(&mut script).args(["-qec", &cmd, "/dev/null"]);
    let out = run_limited(script, Input::Null, BERTH_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("/dev/pts/0"), "{stdout:?}");
}

fn detached_task_lifecycle_with_events(rt: Runtime) {
    let ns = &rt.ns("berth-tasks-detached");
    let Some(b) = setup("detached_task_lifecycle_with_events", ns, &[]) else {
        return;
    };
    let _cleanup = TaskCleanup::new(b.address(), ns);
    let events = Events::start(&b, ns);
    ok(
        b.ctr(ns, &run_args(rt, &["-d", IMAGE, "d1", "sleep", "1000"])),
        "ctr run -d",
    );
    let listed = tasks(&b, ns);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let (id, pid, st) = &listed[0];
    assert_eq!((id.as_str(), st.as_str()), ("d1", "RUNNING"));
    // The init pid is a real process on this host, running sleep.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");
    let ps = ok(b.ctr(ns, &["task", "ps", "d1"]), "ctr task ps");
    assert!(ps.lines().any(|l| l.starts_with(pid.as_str())), "{ps}");

    let out = b.ctr(
        ns,
        &["task", "exec", "--exec-id", "x", "d1", "sh", "-c", "exit 3"],
    );
    assert_eq!(code(&out), 3, "{}", String::from_utf8_lossy(&out.stderr));
    let out = b.ctr(
        ns,
        &[
            "task",
            "exec",
            "--exec-id",
            "y",
            "d1",
            "cat",
            "/etc/hostname",
        ],
    );
    ok(out, "ctr task exec cat");
    // An exec id is an identifier.
    fails(
        b.ctr(ns, &["task", "exec", "--exec-id", "a/b", "d1", "true"]),
        "exec with a bad exec id",
    );

    ok(b.ctr(ns, &["task", "pause", "d1"]), "ctr task pause");
    assert_eq!(status(&b, ns, "d1"), "PAUSED");
    ok(b.ctr(ns, &["task", "resume", "d1"]), "ctr task resume");
    assert_eq!(status(&b, ns, "d1"), "RUNNING");

    let metrics = ok(b.ctr(ns, &["task", "metrics", "d1"]), "ctr task metrics");
    assert!(
        metrics.contains("pids.current") || metrics.contains("memory"),
        "{metrics}"
    );

    // A running task cannot be deleted, nor its container made into a second task.
    let err = fails(b.ctr(ns, &["task", "delete", "d1"]), "delete running task");
    assert!(err.contains("running"), "{err}");
    fails(b.ctr(ns, &["task", "start", "d1"]), "second task");

    ok(
        b.ctr(ns, &["task", "kill", "-s", "SIGKILL", "d1"]),
        "ctr task kill",
    );
    wait_until(Duration::from_secs(10), "d1 STOPPED", || {
        status(&b, ns, "d1") == "STOPPED"
    });
    assert_eq!(delete_task(&b, ns, "d1"), 137);
    assert!(tasks(&b, ns).is_empty());
    let err = fails(b.ctr(ns, &["task", "delete", "d1"]), "delete twice");
    assert!(err.contains("not found"), "{err}");
    ok(b.ctr(ns, &["containers", "rm", "d1"]), "ctr containers rm");

    let events = events.wait_for("/containers/delete", "d1");
    let topics = topics_for(&events, "d1");
    for want in [
        "/containers/create",
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/exit",
        "/tasks/delete",
        "/containers/delete",
    ] {
        assert!(topics.iter().any(|t| t == want), "no {want} in:\n{events}");
    }
    let pos = |t: &str| topics.iter().position(|x| x == t).unwrap();
    assert!(pos("/tasks/create") < pos("/tasks/start"));
    assert!(pos("/tasks/start") < pos("/tasks/delete"));
    let exit = events
        .lines()
        .find(|l| l.contains("/tasks/exit") && l.contains("\"id\":\"d1\""))
        .unwrap_or_else(|| panic!("no init exit in {events}"));
    assert!(exit.contains("\"exit_status\":137"), "{exit}");
}

fn a_shim_killed_under_berthd_is_cleaned_up(rt: Runtime) {
    let ns = &rt.ns("berth-tasks-deadshim");
    let Some(b) = setup("a_shim_killed_under_berthd_is_cleaned_up", ns, &[]) else {
        return;
    };
    let _cleanup = TaskCleanup::new(b.address(), ns);
    ok(
        b.ctr(ns, &run_args(rt, &["-d", IMAGE, "k1", "sleep", "1000"])),
        "ctr run -d",
    );
    let events = Events::start(&b, ns);
    let shim = shim_of(&b, "k1");
    ok(
        Command::new("kill")
            .args(["-9", &shim.to_string()])
            .output()
            .unwrap(),
        "kill the shim",
    );
    let events = events.wait_for("/tasks/delete", "k1");
    assert!(tasks(&b, ns).is_empty(), "{:?}", tasks(&b, ns));
    let topics = topics_for(&events, "k1");
    assert!(topics.contains(&"/tasks/exit".to_string()), "{events}");
    assert!(topics.contains(&"/tasks/delete".to_string()), "{events}");
    // The container is still there, and can run again.
    ok(b.ctr(ns, &["task", "start", "-d", "k1"]), "ctr task start");
    assert_eq!(status(&b, ns, "k1"), "RUNNING");
}

fn tasks_survive_a_berthd_kill9(rt: Runtime) {
    let ns = &rt.ns("berth-tasks-restart");
    let Some(mut b) = setup("tasks_survive_a_berthd_kill9", ns, &[]) else {
        return;
    };
    let _cleanup = TaskCleanup::new(b.address(), ns);
    let ids = ["s1", "s2", "s3", "s4", "s5"];
    for id in ids {
        ok(
            b.ctr(ns, &run_args(rt, &["-d", IMAGE, id, "sleep", "1000"])),
            "ctr run -d",
        );
    }
    // One ends while berthd is down, one's shim dies while berthd is down.
    ok(
        b.ctr(
            ns,
            &run_args(rt, &["-d", IMAGE, "ends", "sh", "-c", "sleep 2; exit 5"]),
        ),
        "ctr run -d ends",
    );
    ok(
        b.ctr(ns, &run_args(rt, &["-d", IMAGE, "orphan", "sleep", "1000"])),
        "ctr run -d orphan",
    );
    let pids: Vec<(String, String, String)> = tasks(&b, ns);
    assert_eq!(pids.len(), 7, "{pids:?}");
    let orphan_shim = shim_of(&b, "orphan");

    b.kill9();
    Command::new("kill")
        .args(["-9", &orphan_shim.to_string()])
        .status()
        .unwrap();
    // Not a pause: wait until "ends" has exited and the orphan's shim is gone, so both
    // happened while berthd was down.
    let ends_pid: u32 = pids
        .iter()
        .find(|t| t.0 == "ends")
        .unwrap()
        .1
        .parse()
        .unwrap();
    wait_until(Duration::from_secs(20), "task ends to exit", || {
        !running(ends_pid)
    });
    wait_until(Duration::from_secs(10), "the orphan's shim to die", || {
        !running(orphan_shim)
    });
    b.restart();

    let after = tasks(&b, ns);
    for id in ids {
        let before = pids.iter().find(|t| t.0 == id).unwrap();
        let now = after
            .iter()
            .find(|t| t.0 == id)
            .unwrap_or_else(|| panic!("{id} not listed after restart: {after:?}"));
        assert_eq!(now.1, before.1, "{id}: same pid");
        assert_eq!(now.2, "RUNNING", "{id}");
    }
    assert_eq!(status(&b, ns, "ends"), "STOPPED", "{after:?}");
    assert!(
        !after.iter().any(|t| t.0 == "orphan"),
        "the dead shim's task is cleaned up: {after:?}"
    );
    let log = strip_ansi(&b.log());
    assert!(log.contains("tasks_reconnected=6"), "{log}");
    assert!(log.contains("tasks_cleaned_up=1"), "{log}");

    // Exec into a reconnected task works, with its exit code.
    let out = b.ctr(
        ns,
        &[
            "task",
            "exec",
            "--exec-id",
            "after",
            "s3",
            "sh",
            "-c",
            "exit 4",
        ],
    );
    assert_eq!(code(&out), 4, "{}", String::from_utf8_lossy(&out.stderr));

    // The real exit status of the task that ended while berthd was down.
    assert_eq!(delete_task(&b, ns, "ends"), 5);
    for id in ids {
        ok(
            b.ctr(ns, &["task", "kill", "-s", "SIGKILL", id]),
            "ctr task kill",
        );
    }
    for id in ids {
        wait_until(Duration::from_secs(10), &format!("{id} STOPPED"), || {
            status(&b, ns, id) == "STOPPED"
        });
        assert_eq!(delete_task(&b, ns, id), 137, "{id}");
    }
    assert!(tasks(&b, ns).is_empty());
    wait_until(Duration::from_secs(5), "no shim left", || {
        shim_pids(&b.address()).is_empty()
    });
    let bundles = b
        .dir
        .path()
        .join("state/io.containerd.runtime.v2.task")
        .join(ns);
    assert!(
        std::fs::read_dir(&bundles).map_or(true, |mut d| d.next().is_none()),
        "bundles left in {}",
        bundles.display()
    );
}

#[test]
fn berthd_publish_forwards_an_event() {
    let ns = "berth-tasks-publish";
    let Some(s) = harness_setup("berthd_publish_forwards_an_event", &["ctr"]) else {
        return;
    };
    let b = s.berthd();
    let events = Events::start(&b, ns);
    // A protobuf Any holding containerd.events.TaskOOM{container_id: "x1"}, as a shim writes it.
    let type_url = b"containerd.events.TaskOOM";
    let mut any = vec![0x0a, type_url.len() as u8];
    any.extend_from_slice(type_url);
    any.extend_from_slice(&[0x12, 4, 0x0a, 2, b'x', b'1']);
    let mut publish = Command::new(workspace_bin("berthd"));
    clean_env(&mut publish)
        .arg("--address")
        .arg(b.address())
        .args(["publish", "--topic", "/tasks/oom", "--namespace", ns]);
    let out = run_limited(publish, Input::Bytes(&any), BERTH_TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = events.wait_for("/tasks/oom", "x1");
    assert!(
        seen.contains("/tasks/oom {\"container_id\":\"x1\"}"),
        "{seen}"
    );
}

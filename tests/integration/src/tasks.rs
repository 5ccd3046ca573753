//! Helpers shared by the tests that run containers: a guard that leaves no task, container,
//! shim or runc state of a namespace behind, the shims of one daemon, and a follower that
//! collects the lines of a long-running command such as `ctr events`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{ctr, poll};

/// Our shim's binary name.
pub const BERTH_SHIM: &str = "containerd-shim-berth-v2";

/// On drop (also when a test fails): kill and delete every task of the namespace, remove its
/// containers, kill any shim of the daemon still there, and delete runc containers of the
/// namespace a failed test may have left, so that nothing outlives the test.
#[derive(Debug)]
pub struct TaskCleanup {
    address: PathBuf,
    ns: String,
}

impl TaskCleanup {
    /// The guard for namespace `ns` of the daemon (berthd or containerd) at `address`.
    pub fn new(address: PathBuf, ns: &str) -> TaskCleanup {
        TaskCleanup {
            address,
            ns: ns.to_string(),
        }
    }

    fn ctr(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&ctr(&self.address, &self.ns, args, None).stdout).into_owned()
    }
}

impl Drop for TaskCleanup {
    fn drop(&mut self) {
        let tasks = self.ctr(&["task", "ls", "-q"]);
        for id in tasks.split_whitespace() {
            self.ctr(&["task", "kill", "-s", "SIGKILL", "--all", id]);
        }
        for id in tasks.split_whitespace() {
            self.ctr(&["task", "delete", "--force", id]);
        }
        for id in self.ctr(&["containers", "ls", "-q"]).split_whitespace() {
            self.ctr(&["containers", "rm", id]);
        }
        for pid in shim_pids(&self.address) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        for root in [
            format!("/run/containerd/runc/{}", self.ns),
            format!("/run/berth/runc/{}", self.ns),
        ] {
            for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = Command::new("runc")
                    .args(["--root", &root, "delete", "--force", &id])
                    .output();
            }
        }
    }
}

/// True while process `pid` exists and is not a zombie (a zombie has exited; only its
/// parent has not collected it).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // `pid (comm) STATE ...`: the state follows the last `)`.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The pids of the shims (Go runc shim or ours) started by the daemon at `address`.
pub fn shim_pids(address: &Path) -> Vec<u32> {
    let address = address.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&c| c == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_shim = args
            .first()
            .is_some_and(|a| a.ends_with("containerd-shim-runc-v2") || a.ends_with(BERTH_SHIM));
        if is_shim
            && args
                .windows(2)
                .any(|w| w[0] == "-address" && w[1] == address)
        {
            out.push(pid);
        }
    }
    out
}

/// A long-running command (`ctr events`, `berth events`) whose stdout lines are collected as
/// they come; killed when dropped.
#[derive(Debug)]
pub struct FollowedLines {
    child: Child,
    lines: Arc<Mutex<String>>,
}

impl FollowedLines {
    /// Spawn `cmd` and collect its stdout. It returns at once: a test that needs the command
    /// to be ready (an event subscription) waits for a sign of it ([`Self::spawn_events`]).
    pub fn spawn(mut cmd: Command) -> FollowedLines {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the followed command");
        let lines = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("followed command's stdout");
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        FollowedLines { child, lines }
    }

    /// Spawn the event stream `cmd` (`ctr events`, `berth events`) and return once it
    /// demonstrably receives the events of namespace `ns` of the daemon at `address`: the
    /// namespace is created (or labelled) until an event about it shows up. A fixed pause
    /// is not enough on a loaded machine: an event published before the subscription is lost.
    pub fn spawn_events(cmd: Command, address: &Path, ns: &str) -> FollowedLines {
        let f = FollowedLines::spawn(cmd);
        for i in 0..50 {
            let create = ctr(address, ns, &["namespaces", "create", ns], None);
            if !create.status.success() {
                let label = format!("berth.test/subscribed={i}");
                ctr(address, ns, &["namespaces", "label", ns, &label], None);
            }
            if poll(Duration::from_millis(300), || {
                f.text().contains("/namespaces/")
            }) {
                return f;
            }
        }
        panic!("the event stream shows no event of namespace {ns} after 50 tries");
    }

    /// Every line so far.
    pub fn text(&self) -> String {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for FollowedLines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

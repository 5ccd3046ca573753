//! Helpers for the shim tests: a real containerd (Debian's) whose `PATH` starts with a directory
//! holding `containerd-shim-berth-v2` (the workspace build), so the runtime name
//! `io.containerd.berth.v2` resolves to it; the busybox test image imported.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::registry::TestImages;
use crate::tasks::FollowedLines;
use crate::{ctr, wait_for_socket, workspace_bin, Containerd};

/// The runtime name containerd maps to `containerd-shim-berth-v2`.
pub const RUNTIME: &str = "io.containerd.berth.v2";
/// The busybox test image, as `ctr images import` names it.
pub const BUSYBOX: &str = "docker.io/library/busybox:latest";

/// A containerd that finds the berth shim; killed (with its containers' shims left to the
/// test's own cleanup) when dropped.
#[derive(Debug)]
pub struct ShimContainerd {
    pub containerd: Containerd,
    /// Holds the shim (and any aliases of it) for containerd's `PATH`.
    pub bin_dir: PathBuf,
}

impl ShimContainerd {
    /// Start containerd with the shim on its `PATH` (also under each name in `aliases`, e.g.
    /// `containerd-shim-runc-v2` to make `io.containerd.runc.v2` this shim), with busybox
    /// imported. None without containerd (the skip recorded, or a failure in `require` mode).
    pub fn start(aliases: &[&str]) -> Option<ShimContainerd> {
        if !crate::gate::installed("containerd") {
            crate::gate::unmet(
                &crate::gate::current_test(),
                "containerd not installed (apt-get install containerd)",
            );
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("containerd-shim-it-")
            .tempdir()
            .expect("tempdir");
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir_all(&bin_dir).expect("bin dir");
        let shim = workspace_bin("containerd-shim-berth-v2");
        for name in std::iter::once("containerd-shim-berth-v2").chain(aliases.iter().copied()) {
            std::os::unix::fs::symlink(&shim, bin_dir.join(name)).expect("link shim");
        }
        let mut c = ShimContainerd {
            containerd: Containerd {
                child: spawn(dir.path(), &bin_dir),
                dir,
                ready_after: Duration::ZERO,
            },
            bin_dir,
        };
        let start = Instant::now();
        wait_for_socket(&c.containerd.address(), Duration::from_secs(30));
        c.containerd.ready_after = start.elapsed();
        let archive = TestImages::get().archive("busybox");
        let out = c.ctr(&["images", "import", archive.to_str().expect("utf-8 path")]);
        assert!(
            out.status.success(),
            "import busybox: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(c)
    }

    /// SIGKILL containerd (its shims keep running) and start it again on the same dirs.
    pub fn restart(&mut self) {
        let _ = self.containerd.child.kill();
        let _ = self.containerd.child.wait();
        self.containerd.child = spawn(self.containerd.dir.path(), &self.bin_dir);
        wait_for_socket(&self.containerd.address(), Duration::from_secs(30));
    }

    /// Run `ctr` in namespace `default`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        ctr(&self.containerd.address(), "default", args, None)
    }

    /// Run `ctr` with `stdin` as its standard input.
    pub fn ctr_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        ctr(&self.containerd.address(), "default", args, Some(stdin))
    }

    /// `ctr events` of this containerd, subscribed (a probe event arrived) when returned;
    /// stopped when dropped.
    pub fn events(&self) -> FollowedLines {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.containerd.address())
            .arg("events");
        FollowedLines::spawn_events(cmd, &self.containerd.address(), "default")
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.containerd.dir.path().join("containerd.log"))
            .unwrap_or_default()
    }

    /// The bundle directory of task `id` in namespace `default`.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.containerd
            .dir
            .path()
            .join("state/io.containerd.runtime.v2.task/default")
            .join(id)
    }
}

impl Drop for ShimContainerd {
    /// Kill and delete what a failed test left running, so no shim or mount outlives it.
    fn drop(&mut self) {
        let out = self.ctr(&["tasks", "ls", "-q"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", "--all", id]);
            crate::poll(Duration::from_secs(5), || {
                self.ctr(&["tasks", "delete", id]).status.success()
            });
        }
        let out = self.ctr(&["containers", "ls", "-q"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.ctr(&["containers", "rm", id]);
        }
    }
}

fn spawn(dir: &Path, bin_dir: &Path) -> Child {
    let config = format!(
        "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
         [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  address = \"{sock}.debug\"\n  level = \"debug\"\n\
         [metrics]\n  address = \"\"\n",
        root = dir.join("root").display(),
        state = dir.join("state").display(),
        sock = dir.join("containerd.sock").display(),
    );
    std::fs::write(dir.join("config.toml"), config).expect("write containerd config");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))
        .expect("log");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
    );
    Command::new("containerd")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .env("PATH", path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn containerd")
}

/// The parent pid of `pid` (the shim of a task's init), from `/proc`.
pub fn parent_pid(pid: u32) -> Option<u32> {
    proc_status(pid, "PPid:")
}

/// The resident set size of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u32> {
    proc_status(pid, "VmRSS:")
}

fn proc_status(pid: u32, key: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The pid in `ctr task ls` output for task `id`, with its status.
pub fn task_row(table: &str, id: &str) -> Option<(u32, String)> {
    table.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&id)).then(|| (f[1].parse().unwrap_or(0), f[2].to_string()))
    })
}

/// True while a process with `pid` exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Poll `f` for up to `timeout`; true once it holds. The old name of [`crate::poll`].
pub fn eventually(timeout: Duration, f: impl FnMut() -> bool) -> bool {
    crate::poll(timeout, f)
}

/// Make this host usable by crun: crun 1.8 refuses cgroup v1 "hybrid" hosts while cgroup2
/// still offers a controller (hugetlb), so mount the v1 hugetlb hierarchy if it is not, and
/// leave it mounted: once mounted, the kernel has moved the hugetlb controller off cgroup2 for
/// good, and an unmounted but live v1 hierarchy makes other cgroup v1 users (Go's cgroups
/// library in the runc shim, whose `ctr task metrics` then fails) unable to find it. Mounted
/// is the consistent state. The error says why crun cannot run here.
pub fn hugetlb_for_crun() -> Result<(), String> {
    const DIR: &str = "/sys/fs/cgroup/hugetlb";
    let hybrid = Path::new("/sys/fs/cgroup/unified").exists();
    let mounted = Command::new("mountpoint")
        .args(["-q", DIR])
        .status()
        .is_ok_and(|s| s.success());
    if !hybrid || mounted {
        return Ok(());
    }
    std::fs::create_dir_all(DIR).map_err(|e| format!("mkdir {DIR}: {e}"))?;
    let st = Command::new("mount")
        .args(["-t", "cgroup", "-o", "hugetlb", "cgroup", DIR])
        .status();
    if !st.is_ok_and(|s| s.success()) {
        let _ = std::fs::remove_dir(DIR);
        return Err("cannot mount the cgroup v1 hugetlb hierarchy crun needs here".into());
    }
    Ok(())
}

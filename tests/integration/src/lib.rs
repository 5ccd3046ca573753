//! Harness for berth's root integration tests: start a real berthd (and, for side-by-side checks,
//! a real containerd) in temp dirs, drive them with Debian's `ctr`, and clean up.
//!
//! The tests run only as root with `BERTH_ROOT_TESTS=1` or `=require`; otherwise each test
//! records that it skipped, and why (see [`gate`]; run them with `scripts/test.sh`).
//!
//! One way to do each thing: [`gate::setup`] (gate, tools, images, daemons),
//! [`cli::berth`] (the CLI, with a clean environment and a time limit),
//! [`gate::wait_until`] (the poller), [`gate::skip`] / [`gate::unmet`] (visible skips).

pub mod cli;
pub mod gate;
pub mod registry;
pub mod shim;
pub mod tasks;

pub use gate::{enabled, poll, setup, skip, unmet, wait_until, Runtime, Setup};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of a binary built by this workspace (`berthd`, `berth`): next to the test executable's
/// `deps/` directory, or `$BERTH_BIN_DIR`.
pub fn workspace_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("BERTH_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("current exe");
            exe.parent()
                .and_then(Path::parent)
                .expect("target dir")
                .to_path_buf()
        });
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} not built: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// Wait until something accepts connections on the unix socket `sock`.
pub fn wait_for_socket(sock: &Path, timeout: Duration) -> Duration {
    wait_until(
        timeout,
        &format!("{} to accept connections", sock.display()),
        || std::os::unix::net::UnixStream::connect(sock).is_ok(),
    )
}

/// A berthd running on temp dirs; killed when dropped.
#[derive(Debug)]
pub struct Berthd {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    /// Time from spawn to the socket accepting connections, for the last start.
    pub ready_after: Duration,
}

impl Berthd {
    /// Start a fresh berthd.
    pub fn start() -> Berthd {
        Berthd::start_with_config("[gc]\nschedule_interval = \"10m\"\n")
    }

    /// Start a fresh berthd whose configuration file (`--config`) is `config` (TOML).
    pub fn start_with_config(config: &str) -> Berthd {
        let dir = tempfile::Builder::new()
            .prefix("berthd-it-")
            .tempdir()
            .expect("tempdir");
        let mut d = Berthd {
            dir,
            child: None,
            ready_after: Duration::ZERO,
        };
        std::fs::write(d.dir.path().join("config.toml"), config).expect("write config");
        d.spawn();
        d
    }

    /// A gRPC channel to this berthd (retrying while it starts).
    pub async fn channel(&self) -> tonic::transport::Channel {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match berth_client::connect(self.address()).await {
                Ok(c) => return c,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("connect to berthd: {e}"),
            }
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn address(&self) -> PathBuf {
        self.dir.path().join("berthd.sock")
    }

    fn spawn(&mut self) {
        let config = self.dir.path().join("config.toml");
        if !config.exists() {
            std::fs::write(&config, "[gc]\nschedule_interval = \"10m\"\n").expect("write config");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("berthd.log"))
            .expect("log file");
        let child = Command::new(workspace_bin("berthd"))
            .arg("--root")
            .arg(self.root())
            .arg("--state")
            .arg(self.dir.path().join("state"))
            .arg("--address")
            .arg(self.address())
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .env("BERTH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn berthd");
        let start = Instant::now();
        self.child = Some(child);
        wait_for_socket(&self.address(), Duration::from_secs(20));
        self.ready_after = start.elapsed();
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    /// SIGKILL the daemon (no cleanup at all), and wait for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start the daemon again on the same dirs.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Run ctr against this daemon.
    pub fn ctr(&self, ns: &str, args: &[&str]) -> Output {
        ctr(&self.address(), ns, args, None)
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            // Graceful first, so the socket is removed; then make sure.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            if poll(Duration::from_secs(5), || {
                matches!(c.try_wait(), Ok(Some(_)))
            }) {
                return;
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A real containerd (Debian's) on temp dirs, for side-by-side checks; killed when dropped.
#[derive(Debug)]
pub struct Containerd {
    pub dir: tempfile::TempDir,
    child: Child,
    pub ready_after: Duration,
}

impl Containerd {
    /// Start containerd, or None when it is not installed: the running test then skips what
    /// needs containerd ([`gate::unmet`]: recorded, or a failure in `require` mode).
    pub fn start() -> Option<Containerd> {
        if !gate::installed("containerd") {
            gate::unmet(
                &gate::current_test(),
                "containerd not installed (apt-get install containerd): its side skipped",
            );
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("containerd-it-")
            .tempdir()
            .expect("tempdir");
        let p = dir.path();
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  address = \"{sock}.debug\"\n\
             [metrics]\n  address = \"\"\n",
            root = p.join("root").display(),
            state = p.join("state").display(),
            sock = p.join("containerd.sock").display(),
        );
        std::fs::write(p.join("config.toml"), config).expect("write containerd config");
        let log = std::fs::File::create(p.join("containerd.log")).expect("log");
        let start = Instant::now();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(p.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        let sock = p.join("containerd.sock");
        wait_for_socket(&sock, Duration::from_secs(30));
        Some(Containerd {
            ready_after: start.elapsed(),
            dir,
            child,
        })
    }

    pub fn address(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn ctr(&self, ns: &str, args: &[&str]) -> Output {
        ctr(&self.address(), ns, args, None)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run Debian's `ctr --address SOCK -n NS ARGS...`, feeding `stdin` if given.
pub fn ctr(address: &Path, ns: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new("ctr");
    cmd.arg("--address").arg(address).arg("--namespace").arg(ns);
    cmd.args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("spawn ctr (is the containerd package installed?)");
    if let Some(data) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(data)
            .expect("write ctr stdin");
    }
    child.wait_with_output().expect("wait for ctr")
}

/// Run `ctr` with stdin from a file (seekable, as `ctr ... < file` gives it).
pub fn ctr_with_file(address: &Path, ns: &str, args: &[&str], file: &Path) -> Output {
    Command::new("ctr")
        .arg("--address")
        .arg(address)
        .arg("--namespace")
        .arg(ns)
        .args(args)
        .stdin(std::fs::File::open(file).expect("open stdin file"))
        .output()
        .expect("run ctr")
}

/// stdout of a successful command, or a panic showing its stderr.
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr of a command that must fail.
pub fn fails(out: Output, what: &str) -> String {
    assert!(
        !out.status.success(),
        "{what} should have failed but printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Table output with runs of whitespace collapsed and time-dependent columns masked
/// (ages like "2 seconds", RFC 3339 timestamps), so two daemons' answers can be compared.
pub fn normalize(table: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| {
            let l = l.replace("Less than a second", "AGE");
            let mut words: Vec<String> = Vec::new();
            let toks: Vec<&str> = l.split_whitespace().collect();
            let mut i = 0;
            while i < toks.len() {
                let t = toks[i];
                let next = toks.get(i + 1).copied().unwrap_or("");
                if t.parse::<u64>().is_ok()
                    && ["second", "seconds", "minute", "minutes"].contains(&next)
                {
                    words.push("AGE".into());
                    i += 2;
                    continue;
                }
                words.push(sort_label_list(&mask_times(t)));
                i += 1;
            }
            words.join(" ")
        })
        .collect()
}

fn mask_times(t: &str) -> String {
    // 2026-11-23T09:15:25Z (possibly inside label=value lists)
    let mut out = String::new();
    let b = t.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if i + 20 <= b.len()
            && b[i..i + 4].iter().all(u8::is_ascii_digit)
            && b[i + 4] == b'-'
            && b[i + 10] == b'T'
        {
            let end = t[i..].find([',', ' ']).map_or(t.len(), |e| i + e);
            out.push_str("TIME");
            i = end;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// `b=2,a=1` -> `a=1,b=2`: ctr prints label maps in Go's random map order.
fn sort_label_list(t: &str) -> String {
    if !t.contains('=') || !t.contains(',') {
        return t.to_string();
    }
    let mut parts: Vec<&str> = t.split(',').collect();
    parts.sort();
    parts.join(",")
}

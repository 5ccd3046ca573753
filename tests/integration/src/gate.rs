//! The gate of the root integration tests, the one way a test records that it skipped, the one
//! `setup` and the one poller.
//!
//! `BERTH_ROOT_TESTS` says how far a root test may go:
//! - unset (or anything else): every root test skips;
//! - `1`: root tests run as root; a missing tool or any other unmet precondition skips the test,
//!   saying why;
//! - `require` (what `.ci/run` and `scripts/test.sh` as root use): an unmet precondition, or not
//!   being root, FAILS the test, naming what is missing.
//!
//! A skip is never silent: [`skip`] prints `SKIP <test>: <reason>` to stderr (uncaptured) and appends
//! `<test>: <reason>` to the file named by `BERTH_SKIP_LOG` (when set), which `scripts/test.sh`
//! reads to count the test as skipped rather than passed.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::registry::{Registry, TestImages};
use crate::{ok, Berthd};

/// The environment variable that turns the root tests on (`1`) or makes them mandatory
/// (`require`).
pub const ROOT_TESTS_VAR: &str = "BERTH_ROOT_TESTS";
/// The environment variable naming the file where skips are recorded.
pub const SKIP_LOG_VAR: &str = berth_conformance::skip::SKIP_LOG_VAR;

/// How root tests treat an unmet precondition, from `BERTH_ROOT_TESTS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Unset: root tests skip.
    Off,
    /// `1`: run; skip (recorded) where a precondition is missing.
    On,
    /// `require`: run; fail where a precondition is missing.
    Require,
}

impl Mode {
    /// The mode `BERTH_ROOT_TESTS` selects.
    pub fn current() -> Mode {
        match std::env::var(ROOT_TESTS_VAR).as_deref() {
            Ok("1") => Mode::On,
            Ok("require") => Mode::Require,
            _ => Mode::Off,
        }
    }
}

/// Record that `test` skipped for `reason`: `SKIP <test>: <reason>` on stderr, and a line
/// `<binary>::<test>: <reason>` appended to `$BERTH_SKIP_LOG` when set.
pub fn skip(test: &str, reason: &str) {
    record_skip(skip_log().as_deref(), test, reason);
}

fn skip_log() -> Option<std::path::PathBuf> {
    std::env::var_os(SKIP_LOG_VAR).map(std::path::PathBuf::from)
}

fn record_skip(log: Option<&std::path::Path>, test: &str, reason: &str) {
    berth_conformance::skip::record_in(log, test, reason);
}

/// A precondition of `test` is not met (`what` says which, and how to get it): in `require`
/// mode the test fails here; otherwise the skip is recorded ([`skip`]). Returns false, so that
/// a check can end with it (`return unmet(test, what)` from a `-> bool` check).
pub fn unmet(test: &str, what: &str) -> bool {
    unmet_in(Mode::current(), skip_log().as_deref(), test, what)
}

fn unmet_in(mode: Mode, log: Option<&std::path::Path>, test: &str, what: &str) -> bool {
    if mode == Mode::Require {
        panic!(
            "{test}: {what} ({ROOT_TESTS_VAR}=require turns a missing precondition into a failure)"
        );
    }
    record_skip(log, test, what);
    false
}

/// True when root integration tests should run. Otherwise records why `test` skips (or, with
/// `BERTH_ROOT_TESTS=require` but not root, fails it).
pub fn enabled(test: &str) -> bool {
    match Mode::current() {
        Mode::Off => {
            skip(
                test,
                &format!(
                    "root integration test: set {ROOT_TESTS_VAR}=1 or =require (as root) to run it"
                ),
            );
            false
        }
        _ if !is_root() => unmet(test, "root integration tests need uid 0"),
        _ => true,
    }
}

/// The name libtest gives the running test's thread (`runc_shim::run_with_a_terminal`), for
/// helpers that record a skip without being told the test's name.
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unknown test")
        .to_string()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Whether `tool` is a program on `PATH` (or an absolute path to a file).
pub fn installed(tool: &str) -> bool {
    if tool.starts_with('/') {
        return std::path::Path::new(tool).is_file();
    }
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The Debian package that provides `tool`, for the message naming what is missing.
fn package_of(tool: &str) -> &str {
    match tool {
        "ctr" | "containerd" | "containerd-shim-runc-v2" => "containerd",
        "docker-registry" | "/usr/bin/docker-registry" => "docker-registry",
        "script" | "mountpoint" => "util-linux",
        "busybox" | "/bin/busybox" => "busybox-static",
        "python3" => "python3",
        "timeout" | "tar" | "sh" => "coreutils/tar",
        other => other,
    }
}

/// True when every tool in `tools` is installed; otherwise the first missing one is
/// [`unmet`] (a recorded skip, or a failure in `require` mode).
pub fn have_tools(test: &str, tools: &[&str]) -> bool {
    match tools.iter().find(|t| !installed(t)) {
        None => true,
        Some(t) => unmet(
            test,
            &format!("{t} not installed (apt-get install {})", package_of(t)),
        ),
    }
}

/// The runtime a test runs its containers with: Debian's Go runc shim or berth's own shim.
/// Tests that run once per shim take it as a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `io.containerd.runc.v2`: `containerd-shim-runc-v2`.
    RuncShim,
    /// `io.containerd.berth.v2`: `containerd-shim-berth-v2`, built by this workspace.
    BerthShim,
}

impl Runtime {
    /// The runtime name `ctr run --runtime` and `berth run --runtime` take.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::RuncShim => "io.containerd.runc.v2",
            Runtime::BerthShim => "io.containerd.berth.v2",
        }
    }

    /// A namespace for the test `base`, distinct per runtime (cgroup paths and runc state
    /// are keyed by namespace and id, so the two runs of a test must not share one).
    pub fn ns(self, base: &str) -> String {
        match self {
            Runtime::RuncShim => base.to_string(),
            Runtime::BerthShim => format!("{base}-bshim"),
        }
    }
}

/// What a test has once [`setup`] lets it run: the test images, and ways to start the
/// daemons it needs.
#[derive(Debug)]
pub struct Setup {
    pub test: String,
    pub images: &'static TestImages,
}

/// The one gate of a root test: root tests on, running as root, `tools` installed (plus
/// `python3` for the test images), the test images built. None when the test must skip (the
/// skip recorded); a failure instead in `require` mode.
pub fn setup(test: &str, tools: &[&str]) -> Option<Setup> {
    if !enabled(test) || !have_tools(test, &["python3", "/bin/busybox"]) || !have_tools(test, tools)
    {
        return None;
    }
    Some(Setup {
        test: test.to_string(),
        images: TestImages::get(),
    })
}

impl Setup {
    /// A fresh berthd.
    pub fn berthd(&self) -> Berthd {
        Berthd::start()
    }

    /// A fresh berthd with the test image `image` imported into namespace `ns` by `ctr`;
    /// unpacked into the default snapshotter unless `unpack` is false.
    pub fn berthd_with(&self, ns: &str, image: &str, unpack: bool) -> Berthd {
        let b = Berthd::start();
        let archive = self.images.archive(image);
        let archive = archive.to_str().expect("utf-8 test image path");
        let mut args = vec!["images", "import"];
        if !unpack {
            args.push("--no-unpack");
        }
        args.push(archive);
        ok(b.ctr(ns, &args), &format!("ctr images import {image}"));
        b
    }

    /// A fresh registry; `docker-registry` must be among the tools given to [`setup`].
    pub fn registry(&self) -> Registry {
        Registry::start().unwrap_or_else(|| panic!("{}: docker-registry did not start", self.test))
    }
}

/// Poll `condition` every 20 ms until it holds (true) or `timeout` passes (false).
pub fn poll(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll `condition` until it holds; fail the test, naming `what` was awaited, if it does not
/// within `timeout`. Returns how long it took.
pub fn wait_until(timeout: Duration, what: &str, condition: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    assert!(
        poll(timeout, condition),
        "timed out after {timeout:?} waiting for {what}"
    );
    start.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_appended_to_the_log_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips");
        record_skip(Some(&log), "one", "ctr not installed");
        record_skip(Some(&log), "two", "needs: root");
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let bin = lines[0].strip_suffix("::one: ctr not installed").unwrap();
        assert_eq!(
            lines,
            [
                format!("{bin}::one: ctr not installed"),
                format!("{bin}::two: needs: root")
            ]
        );
        assert!(!bin.is_empty() && !bin.contains('/'), "{bin}");
    }

    #[test]
    #[should_panic(expected = "crun not installed")]
    fn require_mode_turns_an_unmet_precondition_into_a_failure() {
        unmet_in(
            Mode::Require,
            None,
            "t",
            "crun not installed (apt-get install crun)",
        );
    }

    #[test]
    fn other_modes_skip_on_an_unmet_precondition() {
        assert!(!unmet_in(
            Mode::On,
            None,
            "gate_self_test",
            "crun not installed"
        ));
        assert!(!unmet_in(
            Mode::Off,
            None,
            "gate_self_test",
            "crun not installed"
        ));
    }

    #[test]
    fn the_runtime_names_and_namespaces() {
        assert_eq!(Runtime::RuncShim.name(), "io.containerd.runc.v2");
        assert_eq!(Runtime::BerthShim.name(), "io.containerd.berth.v2");
        assert_eq!(Runtime::RuncShim.ns("x"), "x");
        assert_eq!(Runtime::BerthShim.ns("x"), "x-bshim");
    }

    #[test]
    fn wait_until_fails_naming_what_it_waited_for() {
        let err = std::panic::catch_unwind(|| {
            wait_until(Duration::from_millis(30), "the moon", || false);
        })
        .unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("waiting for the moon"), "{msg}");
        let mut n = 0;
        wait_until(Duration::from_secs(5), "three calls", || {
            n += 1;
            n == 3
        });
        assert_eq!(n, 3);
    }
}

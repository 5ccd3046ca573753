//! Skips that show. A test that cannot run here says why and is counted as skipped, not passed:
//! [`record`] prints `SKIP <test>: <reason>` straight to stderr (libtest captures `eprintln!` of
//! a passing test) and, when `BERTH_SKIP_LOG` names a file, appends `<binary>::<test>: <reason>`
//! to it; `scripts/test.sh` counts those lines as skipped. Used by the integration harness's gate
//! and by the unit tests that need root.

use std::io::Write;
use std::path::Path;

/// The environment variable naming the file skips are appended to.
pub const SKIP_LOG_VAR: &str = "BERTH_SKIP_LOG";

/// Record that the running test skipped for `reason` (its name is libtest's thread name).
pub fn record(reason: &str) {
    record_as(&current_test(), reason);
}

/// Record that `test` skipped for `reason`, in `$BERTH_SKIP_LOG` when set.
pub fn record_as(test: &str, reason: &str) {
    let log = std::env::var_os(SKIP_LOG_VAR).map(std::path::PathBuf::from);
    record_in(log.as_deref(), test, reason);
}

/// Record that `test` skipped for `reason`, in `log` when given.
pub fn record_in(log: Option<&Path>, test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {reason}");
    if let Some(path) = log {
        let line = format!("{}::{test}: {reason}\n", binary_name());
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("record the skip of {test} in {}: {e}", path.display());
        }
    }
}

/// The name libtest gives the running test's thread (`runc_shim::run_with_a_terminal`).
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unknown test")
        .to_string()
}

/// The test binary's name without cargo's hash (`cli_run` for `cli_run-0123abcd`).
fn binary_name() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let stem = exe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
        _ => stem,
    }
}

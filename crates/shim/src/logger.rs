//! The shim's log: containerd opens a FIFO named `log` in the bundle for reading before it starts
//! a shim and copies whatever the shim writes there into its own log. Lines are written in
//! logrus' text format (`time=… level=… msg=…`), as containerd's own shims do.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

#[derive(Debug)]
struct FifoLogger {
    out: Mutex<Option<File>>,
    level: LevelFilter,
}

impl Log for FifoLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        let ours = metadata.target().starts_with("berth_shim")
            || metadata.target().starts_with("containerd_shim_berth");
        metadata.level() <= self.level && (ours || metadata.level() <= Level::Warn)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = out.as_mut() {
            let level = match record.level() {
                Level::Error => "error",
                Level::Warn => "warning",
                Level::Info => "info",
                Level::Debug => "debug",
                Level::Trace => "trace",
            };
            let line = format!(
                "time=\"{}\" level={level} msg={:?} runtime=io.containerd.berth.v2 pid={}\n",
                rfc3339(SystemTime::now()),
                record.args().to_string(),
                std::process::id()
            );
            if f.write_all(line.as_bytes()).is_err() {
                // The reader is gone (containerd restarted): stop logging rather than block.
                *out = None;
            }
        }
    }

    fn flush(&self) {}
}

/// Log to the bundle's `log` FIFO when containerd has it open, else nowhere. Only the shim's own
/// messages at `info` and above are kept (`debug` with `-debug`); the ttrpc crate's are warnings.
pub fn init(debug: bool) {
    let out = rustix::fs::open(
        "log",
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()
    .map(File::from)
    // Only containerd's FIFO: never write over a regular file someone named `log`.
    .filter(|f| {
        f.metadata()
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()))
    });
    if let Some(f) = &out {
        // Writes block again once open (the FIFO is containerd's to drain).
        let _ = rustix::fs::fcntl_setfl(f, rustix::fs::OFlags::empty());
    }
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let logger: &'static FifoLogger = Box::leak(Box::new(FifoLogger {
        out: Mutex::new(out),
        level,
    }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// `2006-01-02T15:04:05.000000000Z` for a time (UTC).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert!(rfc3339(leap).starts_with("2000-02-29T"));
    }
}

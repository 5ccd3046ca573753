//! What berthd watches about a shim besides its ttrpc answers: its log and its death.
//!
//! - The **log**: a shim writes its log to the FIFO `log` in its bundle (containerd's Go shims
//!   refuse to start if it is missing, and block until someone reads it). berthd creates it and
//!   forwards its lines into its own log, again after a restart.
//! - Its **exit**: a shim that dies without being told to leaves a task nobody can reach. berthd
//!   holds a pidfd on the shim process (a handle on that process, immune to pid reuse), checks
//!   it twice a second, and cleans up after the shim once it has exited.

use std::path::Path;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::{FileType, Mode, CWD};
use rustix::process::{pidfd_open, Pid, PidfdFlags};
use tokio::io::AsyncBufReadExt;
use tokio::task::JoinHandle;

use crate::bundle::Bundle;
use crate::error::{Result, RuntimeError};

/// How often a shim's pidfd is checked.
const EXIT_POLL: std::time::Duration = std::time::Duration::from_millis(500);

fn make_fifo(path: &Path) -> std::io::Result<()> {
    match rustix::fs::mknodat(CWD, path, FileType::Fifo, Mode::RWXU, 0) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Make the bundle's log FIFO if needed and copy its lines into berthd's log until the returned
/// task is aborted. It is opened read-write, so it never reports end-of-file while the shim
/// comes and goes, and a shim opening it for writing never blocks.
pub(crate) fn pump_log(bundle: &Bundle) -> Result<JoinHandle<()>> {
    let path = bundle.log_fifo();
    let io = |e: std::io::Error| RuntimeError::Bundle {
        path: path.display().to_string(),
        source: e,
    };
    make_fifo(&path).map_err(io)?;
    let rx = tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&path)
        .map_err(io)?;
    let (ns, id) = (bundle.namespace.clone(), bundle.id.clone());
    Ok(tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(rx).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            // Go shims log with logrus: `time=".." level=warning msg=".." ...`.
            if line.contains("level=error") || line.contains("level=fatal") {
                tracing::error!(target: "shim", namespace = %ns, id = %id, "{line}");
            } else if line.contains("level=warn") {
                tracing::warn!(target: "shim", namespace = %ns, id = %id, "{line}");
            } else if line.contains("level=debug") || line.contains("level=trace") {
                tracing::debug!(target: "shim", namespace = %ns, id = %id, "{line}");
            } else {
                tracing::info!(target: "shim", namespace = %ns, id = %id, "{line}");
            }
        }
    }))
}

/// Wait until process `pid` (not a child of ours) has exited. Returns at once if it is gone.
pub(crate) async fn wait_for_exit(pid: u32) -> std::io::Result<()> {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Err(std::io::Error::other(format!("bad pid {pid}")));
    };
    let fd = match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    // A pidfd becomes readable when its process exits.
    let mut tick = tokio::time::interval(EXIT_POLL);
    loop {
        tick.tick().await;
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, 0) {
            Ok(0) | Err(rustix::io::Errno::INTR) => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notices_a_process_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id();
        let waited = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::task::spawn_blocking(move || child.wait()),
        );
        let watched = tokio::time::timeout(std::time::Duration::from_secs(5), wait_for_exit(pid));
        let (w, r) = tokio::join!(watched, waited);
        w.unwrap().unwrap();
        r.unwrap().unwrap().unwrap();
        // A pid that does not exist counts as exited.
        wait_for_exit(i32::MAX as u32).await.unwrap();
    }

    #[tokio::test]
    async fn pumps_the_log_fifo() {
        let d = tempfile::tempdir().unwrap();
        let b = Bundle::create(&d.path().join("s"), &d.path().join("r"), "ns", "t", b"{}").unwrap();
        let h = pump_log(&b).unwrap();
        // A writer (the shim) can open it without blocking and write lines.
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(b.log_fifo())
            .unwrap();
        writeln!(w, "time=\"x\" level=info msg=\"hello\"").unwrap();
        drop(w);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!h.is_finished(), "no EOF when the writer goes");
        h.abort();
    }
}

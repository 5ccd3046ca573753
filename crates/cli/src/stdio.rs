//! A process's stdio as the CLI attaches to it, the way ctr's `cio` does: the CLI makes
//! **FIFOs** (named pipes) in a fresh directory and passes their paths to the task; the shim
//! opens the other ends. Threads copy this terminal's stdin into the stdin FIFO and the output
//! FIFOs to stdout and stderr. With a **terminal**, the shim allocates a pty, its output comes
//! through the stdout FIFO alone, the local terminal is put in raw mode (keys go to the
//! container's pty as typed) and its size follows ours (`SIGWINCH` → `ResizePty`).
//!
//! Opening a FIFO blocks until the other side opens it, so each copy opens its FIFO in its own
//! thread; an output copy ends when the shim closes its end (after the process and everything
//! that shared its output exited).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_client::RemoteTasks;
use berth_core::tasks::{Stdio as TaskIo, Tasks};
use rustix::fs::{FileType, Mode, CWD};
use rustix::termios::{OptionalActions, Termios};

/// The FIFOs of one process, in a directory removed when dropped.
#[derive(Debug)]
pub struct Fifos {
    dir: PathBuf,
    pub stdin: Option<PathBuf>,
    pub stdout: PathBuf,
    /// None with a terminal (the pty merges both streams).
    pub stderr: Option<PathBuf>,
}

impl Fifos {
    /// Make the FIFOs of process `id` in a new directory under `base`: stdin if `stdin`,
    /// stdout, and stderr unless `terminal`.
    pub fn new(base: &Path, id: &str, stdin: bool, terminal: bool) -> Result<Fifos> {
        std::fs::create_dir_all(base).with_context(|| format!("create {}", base.display()))?;
        let dir = base.join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
        let make = |suffix: &str| -> Result<PathBuf> {
            let p = dir.join(format!("{id}-{suffix}"));
            rustix::fs::mknodat(CWD, &p, FileType::Fifo, Mode::from_raw_mode(0o700), 0)
                .with_context(|| format!("mkfifo {}", p.display()))?;
            Ok(p)
        };
        Ok(Fifos {
            stdin: if stdin { Some(make("stdin")?) } else { None },
            stdout: make("stdout")?,
            stderr: if terminal {
                None
            } else {
                Some(make("stderr")?)
            },
            dir,
        })
    }

    /// The task io naming these FIFOs.
    pub fn io(&self, terminal: bool) -> TaskIo {
        let s = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        TaskIo {
            stdin: s(&self.stdin),
            stdout: self.stdout.display().to_string(),
            stderr: s(&self.stderr),
            terminal,
        }
    }
}

impl Drop for Fifos {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A file both output copies append to (the container's log), shared.
pub type Tee = Option<Arc<Mutex<File>>>;

/// The running copies of a process's stdio.
#[derive(Debug)]
pub struct Copies {
    outputs: Vec<JoinHandle<()>>,
    /// Fires when our stdin reached its end and the FIFO was closed (time for `CloseIO`).
    pub stdin_done: Option<tokio::sync::oneshot::Receiver<()>>,
}

fn copy_out(fifo: PathBuf, mut to: impl Write + Send + 'static, tee: Tee) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut from) = File::open(&fifo) else {
            return;
        };
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(t) = &tee {
                if let Ok(mut f) = t.lock() {
                    let _ = f.write_all(&buf[..n]);
                }
            }
            if to.write_all(&buf[..n]).and_then(|_| to.flush()).is_err() {
                // Our reader went away; keep draining so the process is not blocked.
                continue;
            }
        }
    })
}

impl Copies {
    /// Start copying between this process's stdio and `fifos`.
    pub fn start(fifos: &Fifos, tee: Tee) -> Copies {
        let mut outputs = vec![copy_out(
            fifos.stdout.clone(),
            std::io::stdout(),
            tee.clone(),
        )];
        if let Some(err) = &fifos.stderr {
            outputs.push(copy_out(err.clone(), std::io::stderr(), tee));
        }
        let stdin_done = fifos.stdin.clone().map(|path| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                if let Ok(mut fifo) = File::options().write(true).open(&path) {
                    let mut stdin = std::io::stdin();
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        match stdin.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if fifo.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
                let _ = tx.send(());
            });
            rx
        });
        Copies {
            outputs,
            stdin_done,
        }
    }

    /// Wait up to `timeout` for the output copies to reach the end of their FIFOs.
    pub fn wait_outputs(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for h in self.outputs {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

/// This terminal in raw mode until dropped (then restored).
#[derive(Debug)]
pub struct RawTerminal {
    saved: Termios,
}

impl RawTerminal {
    /// Put stdin's terminal in raw mode; None when stdin is not a terminal.
    pub fn enable() -> Option<RawTerminal> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        if !rustix::termios::isatty(fd) {
            return None;
        }
        let saved = rustix::termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(fd, OptionalActions::Now, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// The size (columns, rows) of the terminal on stdin or stdout, if either is one.
pub fn terminal_size() -> Option<(u32, u32)> {
    let of = |fd: std::os::fd::BorrowedFd<'_>| {
        rustix::termios::tcgetwinsize(fd)
            .ok()
            .filter(|w| w.ws_col > 0 && w.ws_row > 0)
            .map(|w| (u32::from(w.ws_col), u32::from(w.ws_row)))
    };
    of(std::io::stdin().as_fd()).or_else(|| of(std::io::stdout().as_fd()))
}

/// Resize the pty of process `exec_id` of `id` to this terminal's size now and on every
/// `SIGWINCH`, until the returned task is aborted.
pub async fn follow_terminal_size(
    tasks: RemoteTasks,
    ns: String,
    id: String,
    exec_id: String,
) -> tokio::task::JoinHandle<()> {
    if let Some((w, h)) = terminal_size() {
        let _ = tasks.resize_pty(&ns, &id, &exec_id, w, h).await;
    }
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut winch) = signal(SignalKind::window_change()) else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some((w, h)) = terminal_size() {
                let _ = tasks.resize_pty(&ns, &id, &exec_id, w, h).await;
            }
        }
    })
}

/// The signals a foreground `run` or `exec` passes on to the process instead of dying of them
/// (Docker's sig-proxy): SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2.
pub fn forward_signals(
    tasks: RemoteTasks,
    ns: String,
    id: String,
    exec_id: String,
) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<i32>();
        for sig in [
            libc_sig::SIGINT,
            libc_sig::SIGTERM,
            libc_sig::SIGHUP,
            libc_sig::SIGQUIT,
            libc_sig::SIGUSR1,
            libc_sig::SIGUSR2,
        ] {
            let Ok(mut s) = signal(SignalKind::from_raw(sig)) else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    if tx.send(sig).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        while let Some(sig) = rx.recv().await {
            let _ = tasks.kill(&ns, &id, &exec_id, sig as u32, false).await;
        }
    })
}

/// Signal numbers (Linux, all architectures berth runs on).
pub mod libc_sig {
    pub const SIGHUP: i32 = 1;
    pub const SIGINT: i32 = 2;
    pub const SIGQUIT: i32 = 3;
    pub const SIGUSR1: i32 = 10;
    pub const SIGUSR2: i32 = 12;
    pub const SIGTERM: i32 = 15;
}

/// A signal by name (`SIGTERM`, `term`) or number (`15`, 1 to 64).
pub fn parse_signal(s: &str) -> Result<i32> {
    Ok(berth_ops::signals::parse(s)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("kill").unwrap(), 9);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), 10);
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn fifos_are_made_and_removed() {
        let base = tempfile_dir();
        let f = Fifos::new(&base, "c1", true, false).unwrap();
        let io = f.io(false);
        assert!(io.stdin.ends_with("/c1-stdin"), "{io:?}");
        assert!(io.stderr.ends_with("/c1-stderr"), "{io:?}");
        let meta = std::fs::metadata(&f.stdout).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(meta.file_type().is_fifo());
        let dir = f.stdout.parent().unwrap().to_path_buf();
        drop(f);
        assert!(!dir.exists());
        let t = Fifos::new(&base, "c2", false, true).unwrap();
        let io = t.io(true);
        assert_eq!((io.stdin.as_str(), io.stderr.as_str()), ("", ""));
        assert!(io.terminal);
        drop(t);
        let _ = std::fs::remove_dir_all(&base);
    }

    fn tempfile_dir() -> PathBuf {
        let p = std::env::temp_dir().join(format!("berth-cli-fifo-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    #[test]
    fn output_copies_end_with_the_writer() {
        let base = tempfile_dir();
        let f = Fifos::new(&base, "c3", false, false).unwrap();
        let log = base.join("log");
        let tee: Tee = Some(Arc::new(Mutex::new(File::create(&log).unwrap())));
        let h = copy_out(f.stdout.clone(), std::io::sink(), tee);
        let mut w = File::options().write(true).open(&f.stdout).unwrap();
        w.write_all(b"hello\n").unwrap();
        drop(w);
        h.join().unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "hello\n");
        drop(f);
        let _ = std::fs::remove_dir_all(&base);
    }
}

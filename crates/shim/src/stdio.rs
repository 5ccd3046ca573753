//! A container process's standard I/O.
//!
//! containerd names where a process's stdin, stdout and stderr go, as URIs on `Create` and
//! `Exec`:
//! - a plain path (or `fifo://`): a **FIFO** the client (ctr) opened; the shim gives the process
//!   pipes and copies between pipes and FIFOs in threads, so it can close the process's stdin
//!   on `CloseIO` and still hold the output FIFOs open when the client goes away (as containerd's
//!   shim, it opens them read-write: output is kept in the FIFO, never an error for the process);
//! - `file:///path`: output appended to a file;
//! - `binary:///path?key=value`: a **logging binary**, started once per process with the
//!   process's stdout pipe as fd 3, its stderr pipe as fd 4 and a *ready* pipe as fd 5 that it
//!   closes when it is ready; `CONTAINER_ID` and `CONTAINER_NAMESPACE` in its environment, each
//!   query pair as arguments `key value`;
//! - empty: `/dev/null`.
//!
//! With a **terminal**, the runtime makes a pty and sends its master side over a unix socket
//! (`--console-socket`); the shim copies stdin into the master and the master into stdout, and
//! resizes it on `ResizePty`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

use crate::error::{Result, ShimError};
use crate::reaper::Reaper;
use crate::runtime::ProcessStdio;

/// The hidden action of this binary that starts a logging binary with fds 3, 4, 5 in place.
pub const EXEC_LOGGER: &str = "exec-logger";

/// Where containerd wants a process's stdio.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioSpec {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// One output destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Null,
    Fifo(PathBuf),
    File(PathBuf),
    Binary { path: PathBuf, args: Vec<String> },
}

impl Target {
    /// Parse a stdio URI as containerd's shim does (no scheme: a FIFO).
    pub fn parse(uri: &str) -> Result<Target> {
        if uri.is_empty() {
            return Ok(Target::Null);
        }
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Ok(Target::Fifo(uri.into()));
        };
        // `scheme://host/path?query`: no host is expected, the path must be absolute.
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = percent_decode(path);
        if !path.starts_with('/') {
            return Err(ShimError::InvalidArgument(format!(
                "stdio uri {uri:?} must have an absolute path"
            )));
        }
        match scheme {
            "fifo" => Ok(Target::Fifo(path.into())),
            "file" => Ok(Target::File(path.into())),
            "binary" => {
                let mut args = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    args.push(percent_decode(k));
                    if !v.is_empty() {
                        args.push(percent_decode(v));
                    }
                }
                Ok(Target::Binary {
                    path: path.into(),
                    args,
                })
            }
            other => Err(ShimError::InvalidArgument(format!(
                "stdio uri {uri:?}: unknown scheme {other:?}"
            ))),
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The shim's side of a process's stdin: the pipe (or pty) it writes into, closed on `CloseIO`
/// once what the client had written is copied.
#[derive(Debug)]
struct StdinPipe {
    writer: Mutex<Option<File>>,
    /// Set by `CloseIO`; the copy then stops at the first moment the FIFO has nothing to read.
    closing: AtomicBool,
    /// Set once the copy has opened the FIFO (before that, `CloseIO` closes the pipe itself).
    opened: AtomicBool,
    /// Written to wake the copy when `closing` is set.
    wake: (OwnedFd, OwnedFd),
}

impl StdinPipe {
    fn new() -> Result<StdinPipe> {
        Ok(StdinPipe {
            writer: Mutex::new(None),
            closing: AtomicBool::new(false),
            opened: AtomicBool::new(false),
            wake: pipe((0, 0))?,
        })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Option<File>> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// I/O set up before the runtime starts the process.
#[derive(Debug)]
pub struct PreparedIo {
    spec: StdioSpec,
    stdio: Option<ProcessStdio>,
    console: Option<ConsoleSocket>,
    /// Non-terminal stdin: the pipe end the shim writes.
    stdin_writer: Option<File>,
    /// Output pipes to copy (read end, destination).
    copies: Vec<(File, Target)>,
    /// Terminal: where the master's output goes (a pipe to a logging binary, or a target).
    terminal_out: Option<Target>,
    terminal_pipe: Option<File>,
}

impl PreparedIo {
    /// Make the pipes (or the console socket) for a process, chowned to `owner` (containerd's
    /// `IoUid`/`IoGid`), and start its logging binary if it has one.
    pub fn new(
        spec: &StdioSpec,
        owner: (u32, u32),
        reaper: &Reaper,
        id: &str,
        ns: &str,
    ) -> Result<PreparedIo> {
        let stdout = Target::parse(&spec.stdout)?;
        let stderr = Target::parse(&spec.stderr)?;
        let mut io = PreparedIo {
            spec: spec.clone(),
            stdio: None,
            console: None,
            stdin_writer: None,
            copies: Vec::new(),
            terminal_out: None,
            terminal_pipe: None,
        };
        let mut logger_fds: [Option<OwnedFd>; 2] = [None, None];
        if spec.terminal {
            io.console = Some(ConsoleSocket::new()?);
            if let Target::Binary { .. } = stdout {
                let (r, w) = pipe(owner)?;
                logger_fds[0] = Some(r);
                io.terminal_pipe = Some(File::from(w));
            }
            io.terminal_out = Some(stdout.clone());
            io.stdio = Some(ProcessStdio {
                stdin: Stdio::null(),
                stdout: Stdio::null(),
                stderr: Stdio::null(),
                console_socket: io.console.as_ref().map(|c| c.path.clone()),
            });
        } else {
            let stdin = if spec.stdin.is_empty() {
                Stdio::null()
            } else {
                let (r, w) = pipe(owner)?;
                io.stdin_writer = Some(File::from(w));
                Stdio::from(r)
            };
            let mut outs = [Stdio::null(), Stdio::null()];
            for (i, target) in [&stdout, &stderr].into_iter().enumerate() {
                if *target == Target::Null {
                    continue;
                }
                let (r, w) = pipe(owner)?;
                outs[i] = Stdio::from(w);
                match target {
                    Target::Binary { .. } => logger_fds[i] = Some(r),
                    t => io.copies.push((File::from(r), t.clone())),
                }
            }
            let [stdout_w, stderr_w] = outs;
            io.stdio = Some(ProcessStdio {
                stdin,
                stdout: stdout_w,
                stderr: stderr_w,
                console_socket: None,
            });
        }
        if let Some(Target::Binary { path, args }) = [&stdout, &stderr]
            .into_iter()
            .find(|t| matches!(t, Target::Binary { .. }))
        {
            start_logger(reaper, path, args, logger_fds, id, ns)?;
        }
        Ok(io)
    }

    /// The stdio to give the runtime command (once).
    pub fn take_stdio(&mut self) -> ProcessStdio {
        self.stdio.take().unwrap_or(ProcessStdio {
            stdin: Stdio::null(),
            stdout: Stdio::null(),
            stderr: Stdio::null(),
            console_socket: None,
        })
    }

    /// After the runtime has started the process: receive its console, start copying.
    pub fn start(self) -> Result<ProcessIo> {
        let (done_tx, done) = mpsc::channel();
        let stdin = Arc::new(StdinPipe::new()?);
        let mut console = None;
        if let Some(sock) = &self.console {
            let master = sock.receive(Duration::from_secs(10))?;
            let reader = master
                .try_clone()
                .map_err(|e| ShimError::io("duplicate console", e))?;
            *stdin.writer() = Some(
                master
                    .try_clone()
                    .map_err(|e| ShimError::io("duplicate console", e))?,
            );
            match (self.terminal_pipe, self.terminal_out) {
                (Some(pipe), _) => spawn_copy(reader, CopyTo::Open(pipe), done_tx.clone()),
                (None, Some(target)) if target != Target::Null => {
                    spawn_copy(reader, CopyTo::Target(target), done_tx.clone())
                }
                _ => {}
            }
            console = Some(master);
        } else {
            *stdin.writer() = self.stdin_writer;
            for (src, target) in self.copies {
                spawn_copy(src, CopyTo::Target(target), done_tx.clone());
            }
        }
        if !self.spec.stdin.is_empty() {
            let fifo = PathBuf::from(&self.spec.stdin);
            let pipe = stdin.clone();
            thread::Builder::new()
                .name("stdin".into())
                .spawn(move || copy_stdin(&fifo, &pipe))
                .map_err(|e| ShimError::io("start stdin copy", e))?;
        } else {
            stdin.writer().take();
        }
        Ok(ProcessIo {
            stdin,
            console,
            done: Mutex::new(done),
        })
    }
}

/// A running process's I/O.
#[derive(Debug)]
pub struct ProcessIo {
    stdin: Arc<StdinPipe>,
    console: Option<File>,
    /// Disconnected once every output copy has finished.
    done: Mutex<Receiver<()>>,
}

impl ProcessIo {
    /// Resize the terminal, if the process has one.
    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        let Some(console) = &self.console else {
            return Ok(());
        };
        let size = rustix::termios::Winsize {
            ws_row: height as u16,
            ws_col: width as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(console, size)
            .map_err(|e| ShimError::io("resize console", e.into()))
    }

    /// Close the process's stdin once what the client wrote so far is copied (containerd's
    /// `CloseIO`: ctr sends it when its own stdin ends, before it closes the FIFO).
    pub fn close_stdin(&self) {
        self.stdin.closing.store(true, Ordering::SeqCst);
        if !self.stdin.opened.load(Ordering::SeqCst) {
            self.stdin.writer().take();
        }
        let _ = rustix::io::write(&self.stdin.wake.1, &[1]);
    }

    /// Wait (at most `timeout`) for the output copies to finish; true if they did.
    pub fn wait(&self, timeout: Duration) -> bool {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        matches!(
            done.recv_timeout(timeout),
            Err(mpsc::RecvTimeoutError::Disconnected)
        )
    }
}

fn pipe(owner: (u32, u32)) -> Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ShimError::io("create pipe", e.into()))?;
    if owner != (0, 0) {
        for fd in [&r, &w] {
            std::os::unix::fs::fchown(fd, Some(owner.0), Some(owner.1))
                .map_err(|e| ShimError::io("chown pipe", e))?;
        }
    }
    Ok((r, w))
}

enum CopyTo {
    Target(Target),
    Open(File),
}

fn spawn_copy(mut src: File, to: CopyTo, done: Sender<()>) {
    let _ = thread::Builder::new().name("stdout".into()).spawn(move || {
        let _done = done;
        let dst = match to {
            CopyTo::Open(f) => Ok(f),
            // Read-write: the open never blocks and writes never fail when the client is gone.
            CopyTo::Target(Target::Fifo(p)) => OpenOptions::new().read(true).write(true).open(&p),
            CopyTo::Target(Target::File(p)) => {
                if let Some(dir) = p.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                OpenOptions::new().append(true).create(true).open(&p)
            }
            CopyTo::Target(_) => OpenOptions::new().write(true).open("/dev/null"),
        };
        match dst {
            // A terminal's master ends with EIO once the process side is closed: that is EOF.
            Ok(mut dst) => match io::copy(&mut src, &mut dst) {
                Err(e) if e.raw_os_error() != Some(rustix::io::Errno::IO.raw_os_error()) => {
                    log::warn!("copy output: {e}")
                }
                _ => {}
            },
            Err(e) => log::warn!("open output: {e}"),
        }
    });
}

fn copy_stdin(fifo: &Path, pipe: &StdinPipe) {
    use rustix::event::{PollFd, PollFlags};
    if let Ok(mut src) = File::open(fifo) {
        pipe.opened.store(true, Ordering::SeqCst);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let closing = pipe.closing.load(Ordering::SeqCst);
            let mut fds = [
                PollFd::new(&src, PollFlags::IN),
                PollFd::new(&pipe.wake.0, PollFlags::IN),
            ];
            // Closing: only what is already in the FIFO is still copied.
            match rustix::event::poll(&mut fds, if closing { 0 } else { -1 }) {
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
                Ok(_) => {}
            }
            let (ready, woken) = (fds[0].revents(), fds[1].revents());
            if !ready.contains(PollFlags::IN) {
                if woken.contains(PollFlags::IN) && !closing {
                    continue; // look again, now closing
                }
                break; // hung up, or closing and drained
            }
            let n = match src.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let written = pipe.writer().as_mut().map(|f| f.write_all(&buf[..n]));
            if !matches!(written, Some(Ok(()))) {
                break;
            }
        }
    }
    pipe.writer().take();
}

/// Start a logging binary through this executable's [`EXEC_LOGGER`] action (std cannot place
/// fds at 3, 4, 5 in a child without `unsafe`; a fresh process can, with `dup`), then wait for
/// it to close its ready pipe.
fn start_logger(
    reaper: &Reaper,
    path: &Path,
    args: &[String],
    fds: [Option<OwnedFd>; 2],
    id: &str,
    ns: &str,
) -> Result<()> {
    if !path.is_file() {
        return Err(ShimError::NotFound(format!(
            "logging binary {}",
            path.display()
        )));
    }
    let me = std::env::current_exe().map_err(|e| ShimError::io("find shim binary", e))?;
    let (ready_r, ready_w) = pipe((0, 0))?;
    let [out, err] = fds;
    let stdio = |fd: Option<OwnedFd>| fd.map(Stdio::from).unwrap_or_else(Stdio::null);
    let mut cmd = Command::new(me);
    cmd.arg(EXEC_LOGGER)
        .arg(path)
        .args(args)
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", ns)
        .stdin(stdio(out))
        .stdout(Stdio::from(ready_w))
        .stderr(stdio(err));
    reaper
        .spawn_detached(&mut cmd)
        .map_err(|e| ShimError::io(format!("start logging binary {}", path.display()), e))?;
    drop(cmd);
    // Ready when it writes a byte or closes fd 5 (EOF).
    let mut ready = File::from(ready_r);
    let mut pfd = [rustix::event::PollFd::new(
        &ready,
        rustix::event::PollFlags::IN,
    )];
    match rustix::event::poll(&mut pfd, 10_000) {
        Ok(1) => {
            let _ = ready.read(&mut [0u8; 1]);
            Ok(())
        }
        _ => Err(ShimError::Runtime {
            action: format!("start logging binary {}", path.display()),
            message: "not ready after 10s".into(),
        }),
    }
}

/// The [`EXEC_LOGGER`] action: this process's stdin, stderr and stdout become fds 3, 4 and 5
/// (stdout pipe, stderr pipe, ready pipe), its stdio `/dev/null`, and it becomes `program`.
pub fn exec_logger(program: &str, args: &[String]) -> io::Error {
    use std::os::unix::process::CommandExt;
    let moved = (|| -> io::Result<Vec<OwnedFd>> {
        let mut fds = Vec::new();
        // Each dup takes the lowest free fd from 3 on: 3, 4, 5 in a process that has only its
        // standard streams open.
        for (want, from) in [
            (3, io::stdin().as_fd()),
            (4, io::stderr().as_fd()),
            (5, io::stdout().as_fd()),
        ] {
            let fd = rustix::io::fcntl_dupfd_cloexec(from, want)?;
            if std::os::fd::AsRawFd::as_raw_fd(&fd) != want {
                return Err(io::Error::other(format!("fd {want} is not free")));
            }
            rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::empty())?;
            fds.push(fd);
        }
        let null = File::options().read(true).write(true).open("/dev/null")?;
        rustix::stdio::dup2_stdin(&null)?;
        rustix::stdio::dup2_stdout(&null)?;
        rustix::stdio::dup2_stderr(&null)?;
        Ok(fds)
    })();
    match moved {
        // The fds must stay open through exec.
        Ok(_fds) => Command::new(program).args(args).exec(),
        Err(e) => e,
    }
}

/// The unix socket a runtime sends a new terminal's master over (`--console-socket`).
#[derive(Debug)]
pub struct ConsoleSocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    fn new() -> Result<ConsoleSocket> {
        // In /tmp: a socket path must be short, and a bundle path need not be.
        let dir = tempfile::Builder::new()
            .prefix("berth-pty")
            .tempdir_in("/tmp")
            .map_err(|e| ShimError::io("create console socket dir", e))?;
        let path = dir.path().join("pty.sock");
        let listener =
            UnixListener::bind(&path).map_err(|e| ShimError::io("bind console socket", e))?;
        Ok(ConsoleSocket {
            _dir: dir,
            path,
            listener,
        })
    }

    /// Accept the runtime's connection and receive the master fd it sends.
    fn receive(&self, timeout: Duration) -> Result<File> {
        let err = |e: io::Error| ShimError::io("receive console from runtime", e);
        self.listener.set_nonblocking(true).map_err(err)?;
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(5))
                }
                Err(e) => return Err(err(e)),
            }
        };
        stream.set_nonblocking(false).map_err(err)?;
        stream.set_read_timeout(Some(timeout)).map_err(err)?;
        let mut name = [0u8; 4096];
        let mut space = [0u8; rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        rustix::net::recvmsg(
            &stream,
            &mut [io::IoSliceMut::new(&mut name)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(|e| err(e.into()))?;
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
                if let Some(fd) = fds.next() {
                    return Ok(File::from(fd));
                }
            }
        }
        Err(err(io::Error::other("no file descriptor in the message")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_uris() {
        assert_eq!(Target::parse("").unwrap(), Target::Null);
        assert_eq!(
            Target::parse("/run/ctr/fifo-1").unwrap(),
            Target::Fifo("/run/ctr/fifo-1".into())
        );
        assert_eq!(
            Target::parse("file:///var/log/a%20b.log").unwrap(),
            Target::File("/var/log/a b.log".into())
        );
        assert_eq!(
            Target::parse("binary:///usr/bin/logger?tag=web&debug").unwrap(),
            Target::Binary {
                path: "/usr/bin/logger".into(),
                args: vec!["tag".into(), "web".into(), "debug".into()],
            }
        );
        assert!(Target::parse("http://x/y").is_err());
        assert!(Target::parse("file://relative").is_err());
    }
}

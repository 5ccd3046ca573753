//! The sub-reaper: the one place where the shim waits for children.
//!
//! The shim marks itself a **child sub-reaper** (`PR_SET_CHILD_SUBREAPER`): when the runtime
//! (`runc create`, `runc exec --detach`) exits, the container's init and exec processes it started
//! are re-parented to the shim instead of to pid 1, so the shim can collect their exit status. One
//! thread calls `waitpid(-1)` for every child; nothing else in the shim may wait (a second waiter
//! would steal statuses). Each exit is numbered (a *sequence* number) and then either
//!
//! - handed to whoever spawned that child through [`Reaper::spawn`] (runtime commands, which are
//!   registered under the reaper's lock before it can see them exit), or
//! - sent on the channel returned by [`Reaper::start`]: container and exec processes, whose pids
//!   the shim learns only from a pid file after the runtime returns. The receiver keeps exits of
//!   pids it does not know yet and claims them by pid once the pid file is read, accepting only
//!   exits numbered after the runtime command was spawned ([`Spawned::since`]), so an old exit
//!   of a recycled pid is never taken for the new process.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::process::{Child, Command};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use rustix::io::Errno;
use rustix::process::WaitOptions;

/// One child's exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: u32,
    /// The exit code, or 128 + the signal number for a process killed by a signal (containerd's
    /// convention).
    pub status: u32,
    pub at: SystemTime,
    /// Position of this exit in the order the reaper saw exits.
    pub seq: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Number of exits seen so far.
    seq: u64,
    /// Bumped on every spawn, to wake the reaper when it had no children.
    generation: u64,
    commands: HashMap<u32, SyncSender<Exit>>,
    ignored: HashSet<u32>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    spawned: Condvar,
}

/// Handle on the reaper thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct Reaper {
    shared: Arc<Shared>,
}

/// A child started through [`Reaper::spawn`].
#[derive(Debug)]
pub struct Spawned {
    /// The std handle, for its stdio pipes only: never wait on it.
    pub child: Child,
    pub pid: u32,
    /// The reaper's sequence number when the child was spawned.
    pub since: u64,
    exit: Receiver<Exit>,
}

impl Spawned {
    /// Block until the child exits.
    pub fn wait(self) -> Exit {
        self.exit
            .recv()
            .expect("the reaper thread lives as long as the process")
    }
}

/// What a command printed, and how it ended.
#[derive(Debug)]
pub struct Output {
    pub status: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Reaper {
    /// Make this process a sub-reaper and start the reaping thread. Exits of children that were
    /// not spawned through [`Reaper::spawn`] arrive on the returned channel.
    pub fn start() -> io::Result<(Reaper, Receiver<Exit>)> {
        rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
        let reaper = Reaper {
            shared: Arc::new(Shared::default()),
        };
        let (tx, rx) = mpsc::channel();
        let shared = reaper.shared.clone();
        thread::Builder::new()
            .name("reaper".into())
            .spawn(move || reap(&shared, &tx))?;
        Ok((reaper, rx))
    }

    /// Spawn `cmd`, registering its pid before the reaper can see it exit.
    ///
    /// `cmd` must name its program by absolute path and must not carry `pre_exec` closures, so
    /// that std spawns it with `posix_spawn` (which never waits for the child itself).
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Spawned> {
        let (tx, rx) = mpsc::sync_channel(1);
        let mut state = self.lock();
        let child = cmd.spawn()?;
        let pid = child.id();
        state.commands.insert(pid, tx);
        state.generation += 1;
        let since = state.seq;
        drop(state);
        self.shared.spawned.notify_all();
        Ok(Spawned {
            child,
            pid,
            since,
            exit: rx,
        })
    }

    /// Spawn `cmd` whose exit nobody waits for (a logging binary): the reaper just collects it.
    pub fn spawn_detached(&self, cmd: &mut Command) -> io::Result<Child> {
        let mut state = self.lock();
        let child = cmd.spawn()?;
        state.ignored.insert(child.id());
        state.generation += 1;
        drop(state);
        self.shared.spawned.notify_all();
        Ok(child)
    }

    /// Run `cmd` to completion, feeding it `stdin` and collecting its stdout and stderr (which
    /// `cmd` must have set to piped where wanted).
    pub fn output(&self, cmd: &mut Command, stdin: Option<&[u8]>) -> io::Result<Output> {
        let mut spawned = self.spawn(cmd)?;
        let input = spawned.child.stdin.take();
        let out = spawned.child.stdout.take();
        let err = spawned.child.stderr.take();
        let (stdout, stderr) = thread::scope(|s| {
            if let (Some(mut pipe), Some(data)) = (input, stdin) {
                s.spawn(move || {
                    let _ = pipe.write_all(data);
                });
            }
            let e = s.spawn(move || read_all(err));
            (read_all(out), e.join().unwrap_or_default())
        });
        let exit = spawned.wait();
        Ok(Output {
            status: exit.status,
            stdout,
            stderr,
        })
    }

    /// The number of exits seen so far.
    pub fn seq(&self) -> u64 {
        self.lock().seq
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn read_all(pipe: Option<impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_end(&mut buf);
    }
    buf
}

fn reap(shared: &Shared, others: &mpsc::Sender<Exit>) {
    loop {
        let generation = shared.state.lock().map(|s| s.generation).unwrap_or(0);
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, status))) => {
                let code = match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => code,
                    (None, Some(sig)) => 128 + sig,
                    (None, None) => continue,
                };
                let pid = pid.as_raw_nonzero().get() as u32;
                let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                state.seq += 1;
                let exit = Exit {
                    pid,
                    status: code,
                    at: SystemTime::now(),
                    seq: state.seq,
                };
                if let Some(tx) = state.commands.remove(&pid) {
                    let _ = tx.send(exit);
                } else if !state.ignored.remove(&pid) {
                    drop(state);
                    let _ = others.send(exit);
                }
            }
            Ok(None) | Err(Errno::INTR) => {}
            Err(Errno::CHILD) => {
                // No children: sleep until the next spawn.
                let state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
                let _unused = shared
                    .spawned
                    .wait_while(state, |s| s.generation == generation)
                    .unwrap_or_else(|e| e.into_inner());
            }
            Err(err) => {
                log::error!("waitpid: {err}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    // One test: a process has a single sub-reaper thread.
    #[test]
    fn commands_and_orphans_are_each_reaped_once() {
        let (reaper, others) = Reaper::start().unwrap();
        let out = reaper
            .output(
                Command::new("/bin/sh")
                    .args(["-c", "cat; echo err >&2; exit 3"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped()),
                Some(b"in"),
            )
            .unwrap();
        assert_eq!(out.status, 3);
        assert_eq!(out.stdout, b"in");
        assert_eq!(out.stderr, b"err\n");

        // A grandchild orphaned by its parent comes back to us, through the channel.
        let before = reaper.seq();
        let out = reaper
            .output(
                Command::new("/bin/sh")
                    .args(["-c", "sh -c 'sleep 0.2; kill -9 $$' & echo $!"])
                    .stdout(Stdio::piped()),
                None,
            )
            .unwrap();
        let orphan: u32 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let exit = others.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(exit.pid, orphan);
        assert_eq!(exit.status, 128 + 9);
        assert!(exit.seq > before);
    }
}

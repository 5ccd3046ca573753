//! The shim's processes: the task's **init** (the container's first process, named by the
//! container id) and its **execs** (extra processes started in the container, each named by an
//! exec id), with their lifecycle `created → running ⇄ paused → stopped`, then deleted.
//!
//! A process is *stopped* once the reaper has seen it exit; its exit status is recorded once,
//! announced once (`/tasks/exit`), and answered to every `Wait` until the process is deleted.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim_protos::types::task::Status as ProtoStatus;

use crate::cgroups::Cgroup;
use crate::error::{Result, ShimError};
use crate::reaper::Exit;
use crate::runtime::Runtime;
use crate::stdio::{ProcessIo, StdioSpec};

/// How many exits of unknown pids are kept for a later claim.
const UNCLAIMED: usize = 256;

/// Where a process is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn proto(self) -> ProtoStatus {
        match self {
            Status::Created => ProtoStatus::CREATED,
            Status::Running => ProtoStatus::RUNNING,
            Status::Paused => ProtoStatus::PAUSED,
            Status::Stopped => ProtoStatus::STOPPED,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// One process of the task.
#[derive(Debug)]
pub struct Process {
    /// The container id for init, the exec id for an exec.
    pub id: String,
    /// 0 until the runtime has started it.
    pub pid: u32,
    pub status: Status,
    pub exit: Option<Exit>,
    pub stdio: StdioSpec,
    pub io: Option<Arc<ProcessIo>>,
    /// Set while `start` runs the runtime: an exit seen meanwhile is held back until the start
    /// is announced, so `/tasks/exit` never precedes `/tasks/start`.
    pub starting: bool,
    pub held_exit: Option<Exit>,
    /// An exec's OCI process spec (JSON), as the client sent it.
    pub spec: Vec<u8>,
}

impl Process {
    pub fn new(id: &str, stdio: StdioSpec) -> Process {
        Process {
            id: id.to_string(),
            pid: 0,
            status: Status::Created,
            exit: None,
            stdio,
            io: None,
            starting: false,
            held_exit: None,
            spec: Vec::new(),
        }
    }

    /// Stopped processes have no one to signal.
    pub fn check_alive(&self) -> Result<()> {
        match self.status {
            Status::Stopped => Err(ShimError::NotFound("process already finished".into())),
            _ => Ok(()),
        }
    }

    /// A running (or paused) process cannot be deleted.
    pub fn check_deletable(&self) -> Result<()> {
        match self.status {
            Status::Running | Status::Paused => Err(ShimError::FailedPrecondition(format!(
                "process {} is {}: cannot delete a running process",
                self.id, self.status
            ))),
            _ => Ok(()),
        }
    }
}

/// The task's first process and what belongs to the container as a whole.
#[derive(Debug)]
pub struct Init {
    pub process: Process,
    pub bundle: PathBuf,
    pub runtime: Runtime,
    /// The rootfs the shim mounted (unmounted on delete).
    pub rootfs: Option<PathBuf>,
    pub cgroup: Option<Cgroup>,
    /// The container shares a pid namespace: when init exits, the rest must be killed.
    pub shared_pid_ns: bool,
    /// Owner of the stdio pipes of its processes (containerd's `IoUid`/`IoGid`).
    pub io_owner: (u32, u32),
}

/// Every process of the task, and exits not yet claimed.
#[derive(Debug, Default)]
pub struct Table {
    pub init: Option<Init>,
    pub execs: BTreeMap<String, Process>,
    unclaimed: VecDeque<Exit>,
}

impl Table {
    /// The task, or `NotFound`.
    pub fn init(&self, id: &str) -> Result<&Init> {
        self.init
            .as_ref()
            .ok_or_else(|| ShimError::NotFound(format!("task {id}")))
    }

    pub fn init_mut(&mut self, id: &str) -> Result<&mut Init> {
        self.init
            .as_mut()
            .ok_or_else(|| ShimError::NotFound(format!("task {id}")))
    }

    /// The process named by `exec_id` (empty: init).
    pub fn process(&self, id: &str, exec_id: &str) -> Result<&Process> {
        let init = self.init(id)?;
        if exec_id.is_empty() {
            return Ok(&init.process);
        }
        self.execs
            .get(exec_id)
            .ok_or_else(|| ShimError::NotFound(format!("exec {exec_id}")))
    }

    pub fn process_mut(&mut self, id: &str, exec_id: &str) -> Result<&mut Process> {
        if exec_id.is_empty() {
            return Ok(&mut self.init_mut(id)?.process);
        }
        self.init(id)?;
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| ShimError::NotFound(format!("exec {exec_id}")))
    }

    /// The live process with `pid`, if the shim knows it.
    pub fn by_pid_mut(&mut self, pid: u32) -> Option<&mut Process> {
        let init = self.init.as_mut().map(|i| &mut i.process);
        init.into_iter()
            .chain(self.execs.values_mut())
            .find(|p| p.pid == pid && p.exit.is_none())
    }

    /// Keep an exit of a pid not (yet) known.
    pub fn stash(&mut self, exit: Exit) {
        if self.unclaimed.len() == UNCLAIMED {
            self.unclaimed.pop_front();
        }
        self.unclaimed.push_back(exit);
    }

    /// Take the exit of `pid` seen after sequence number `since`, if any.
    pub fn claim(&mut self, pid: u32, since: u64) -> Option<Exit> {
        let i = self
            .unclaimed
            .iter()
            .position(|e| e.pid == pid && e.seq > since)?;
        self.unclaimed.remove(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn exit(pid: u32, seq: u64) -> Exit {
        Exit {
            pid,
            status: 0,
            at: SystemTime::now(),
            seq,
        }
    }

    #[test]
    fn only_exits_after_the_spawn_are_claimed() {
        let mut t = Table::default();
        t.stash(exit(42, 3));
        assert_eq!(
            t.claim(42, 3),
            None,
            "an exit before the spawn is an older process"
        );
        t.stash(exit(42, 7));
        assert_eq!(t.claim(42, 3).map(|e| e.seq), Some(7));
        assert_eq!(t.claim(42, 3), None, "claimed once");
        for i in 0..(UNCLAIMED as u32 + 10) {
            t.stash(exit(1000 + i, 10));
        }
        assert_eq!(t.unclaimed.len(), UNCLAIMED);
    }

    #[test]
    fn lookups_name_what_is_missing() {
        let t = Table::default();
        assert_eq!(
            t.process("c1", "").unwrap_err().to_string(),
            "task c1: not found"
        );
        let mut p = Process::new("x", StdioSpec::default());
        p.status = Status::Running;
        assert!(p.check_deletable().is_err());
        assert!(p.check_alive().is_ok());
        p.status = Status::Stopped;
        assert_eq!(
            p.check_alive().unwrap_err().to_string(),
            "process already finished: not found"
        );
    }
}

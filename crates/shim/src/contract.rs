//! The shim binary's contract with containerd (runtime v2): the `start` and `delete` commands,
//! and the serving process that `start` leaves behind.
//!
//! containerd runs every command with the task's **bundle** as working directory and
//! `-namespace NS -address CONTAINERD_SOCK -publish-binary CONTAINERD_BIN -id ID [-debug]`, with
//! `TTRPC_ADDRESS`, `GRPC_ADDRESS` and `NAMESPACE` in the environment:
//!
//! - `start` (stdin: the runtime options, a marshalled `google.protobuf.Any`): listen on a unix
//!   socket under `/run/berth/s/` named by a hash of containerd's address, the namespace and the
//!   id; start the serving process (this binary without an action, in its own session, the
//!   listening socket as its stdin, stdout and stderr `/dev/null`); write `address` (and
//!   `shim.pid`) in the bundle; print `unix:///run/berth/s/<hash>` on stdout and exit 0.
//!   containerd reads stdout and stderr together, so nothing else may be printed.
//! - the serving process: serve `containerd.task.v2.Task` on the inherited socket until
//!   `Shutdown` after the task is deleted; log into the bundle's `log` FIFO.
//! - `delete` (also `-bundle BUNDLE`), run when the serving process is gone: force-delete the
//!   container with the runtime, unmount `<bundle>/rootfs`, and print a `DeleteResponse`
//!   protobuf (init's pid, exit status 137, now) on stdout.

use std::fs;
use std::io::{IsTerminal, Read};
use std::os::fd::{AsFd, IntoRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, SystemTime};

use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use sha2::{Digest, Sha256};

use crate::args::Flags;
use crate::error::{Result, ShimError};
use crate::events::{timestamp, Publisher};
use crate::reaper::Reaper;
use crate::runtime::{Runtime, RuntimeOptions};
use crate::service::Service;

/// Where shims listen.
pub const SOCKET_DIR: &str = "/run/berth/s";

/// The socket address of the shim for task `id` in `namespace` of the daemon at `address`.
pub fn socket_address(address: &str, namespace: &str, id: &str) -> String {
    let digest = Sha256::digest(format!("{address}/{namespace}/{id}"));
    format!("unix://{SOCKET_DIR}/{}", hex::encode(digest))
}

fn bundle_dir(flags: &Flags) -> Result<PathBuf> {
    if !flags.bundle.is_empty() {
        return Ok(PathBuf::from(&flags.bundle));
    }
    std::env::current_dir().map_err(|e| ShimError::io("find working directory", e))
}

fn check_flags(flags: &Flags) -> Result<()> {
    if flags.namespace.is_empty() {
        return Err(ShimError::InvalidArgument(
            "shim namespace cannot be empty".into(),
        ));
    }
    if flags.id.is_empty() {
        return Err(ShimError::InvalidArgument("shim id cannot be empty".into()));
    }
    Ok(())
}

/// Write `data` to `dir/name` atomically (temp file + rename), as containerd's shims do.
fn write_atomic(dir: &Path, name: &str, data: &str) -> Result<()> {
    let tmp = dir.join(format!(".{name}"));
    let err = |e| ShimError::io(format!("write {}", dir.join(name).display()), e);
    fs::write(&tmp, data).map_err(err)?;
    fs::rename(&tmp, dir.join(name)).map_err(err)
}

/// The `start` command: start the serving process and answer its address.
pub fn start(flags: &Flags) -> Result<String> {
    check_flags(flags)?;
    let bundle = bundle_dir(flags)?;
    let address = socket_address(&flags.address, &flags.namespace, &flags.id);
    let path = PathBuf::from(address.trim_start_matches("unix://"));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(SOCKET_DIR)
        .map_err(|e| ShimError::io(format!("create {SOCKET_DIR}"), e))?;
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            // A shim already serves this task (containerd retried a start): answer it.
            write_atomic(&bundle, "address", &address)?;
            return Ok(address);
        }
        let _ = fs::remove_file(&path);
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| ShimError::io(format!("listen on {}", path.display()), e))?;
    let options = read_start_options();
    let me = std::env::current_exe().map_err(|e| ShimError::io("find shim binary", e))?;
    let mut cmd = Command::new(me);
    cmd.args([
        "-namespace",
        &flags.namespace,
        "-id",
        &flags.id,
        "-address",
        &flags.address,
    ]);
    if flags.debug {
        cmd.arg("-debug");
    }
    cmd.current_dir(&bundle)
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .map_err(|e| ShimError::io("start the shim server", e))?;
    drop(cmd);
    let written = write_atomic(&bundle, "shim.pid", &child.id().to_string())
        .and_then(|()| write_atomic(&bundle, "address", &address));
    if let Err(e) = written {
        let _ = child.kill();
        let _ = child.wait();
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    if !options.shim_cgroup.is_empty() {
        if let Err(e) = join_cgroup(child.id(), &options.shim_cgroup) {
            let _ = child.kill();
            let _ = child.wait();
            let _ = fs::remove_file(&path);
            return Err(e);
        }
    }
    adjust_oom_score(child.id());
    Ok(address)
}

/// The runtime options containerd writes on `start`'s stdin (ignored when unreadable).
fn read_start_options() -> RuntimeOptions {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        return RuntimeOptions::default();
    }
    let mut data = Vec::new();
    let _ = stdin.read_to_end(&mut data);
    Any::parse_from_bytes(&data)
        .ok()
        .and_then(|any| RuntimeOptions::from_any(Some(&any)).ok())
        .unwrap_or_default()
}

/// Make the shim a little likelier to be OOM-killed than the daemon, never less: an
/// unprivileged process (without `CAP_SYS_RESOURCE`) may not go below its own score, so the
/// value is clamped to [own + 1, 1000], as containerd does for its shims.
fn adjust_oom_score(pid: u32) {
    let own: i32 = fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let score = (own + 1).clamp(-999, 1000);
    if let Err(e) = fs::write(format!("/proc/{pid}/oom_score_adj"), score.to_string()) {
        log::warn!("set oom_score_adj of shim {pid}: {e}");
    }
}

/// Move the shim into the cgroup its options name (`ShimCgroup`), as containerd's runc shim
/// does in `start`: the cgroup must exist (berth creates none) in at least one hierarchy (every
/// v1 hierarchy that has it, or the unified one); the shim joins each, and any failure fails
/// the start.
fn join_cgroup(pid: u32, cgroup: &str) -> Result<()> {
    let rel = Path::new(cgroup.trim_start_matches('/'));
    if rel.as_os_str().is_empty()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(ShimError::InvalidArgument(format!(
            "shim cgroup {cgroup:?} is not a cgroup path"
        )));
    }
    let root = Path::new("/sys/fs/cgroup");
    let hierarchies: Vec<PathBuf> = if root.join("cgroup.controllers").exists() {
        vec![root.to_path_buf()]
    } else {
        fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| !p.ends_with("unified"))
            .collect()
    };
    let mut joined = 0;
    for h in hierarchies {
        let dir = h.join(rel);
        if !dir.is_dir() {
            continue;
        }
        let procs = dir.join("cgroup.procs");
        fs::write(&procs, pid.to_string()).map_err(|e| {
            ShimError::FailedPrecondition(format!(
                "failed to join cgroup {cgroup}: write {}: {e}",
                procs.display()
            ))
        })?;
        joined += 1;
    }
    if joined == 0 {
        return Err(ShimError::NotFound(format!(
            "failed to load cgroup {cgroup}: no hierarchy has it"
        )));
    }
    Ok(())
}

/// The `delete` command: clean up after a shim that died, and answer how its task ended.
pub fn delete(flags: &Flags) -> Result<DeleteResponse> {
    check_flags(flags)?;
    let bundle = bundle_dir(flags)?;
    let (reaper, _orphans) = Reaper::start().map_err(|e| ShimError::io("start reaper", e))?;
    let runtime = match Runtime::load(&bundle) {
        Some(r) => Ok(r),
        None => Runtime::new(&RuntimeOptions::default(), &flags.namespace, &bundle),
    };
    match runtime.and_then(|r| r.delete(&reaper, &flags.id, true)) {
        Ok(()) => {}
        // containerd logs stderr as cleanup warnings.
        Err(e) => eprintln!("delete container {}: {e}", flags.id),
    }
    let rootfs = bundle.join("rootfs");
    if let Err(e) = crate::service::unmount_rootfs(&rootfs) {
        eprintln!("{e}");
    }
    // The socket named in the bundle, and the one `start` would have made (the bundle may be
    // gone already), unless a shim still answers there.
    let recorded = fs::read_to_string(bundle.join("address")).unwrap_or_default();
    let computed = socket_address(&flags.address, &flags.namespace, &flags.id);
    for address in [recorded.trim(), computed.as_str()] {
        let path = Path::new(address.trim_start_matches("unix://"));
        if !address.is_empty() && UnixStream::connect(path).is_err() {
            let _ = fs::remove_file(path);
        }
    }
    let pid = fs::read_to_string(bundle.join("init.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    Ok(DeleteResponse {
        pid,
        exit_status: 128 + 9,
        exited_at: timestamp(SystemTime::now()),
        ..Default::default()
    })
}

/// The serving process: serve the task service until shut down, then exit.
pub fn serve(flags: &Flags) -> Result<()> {
    check_flags(flags)?;
    // Its own session: signals to containerd's process group do not reach the shim.
    let _ = rustix::process::setsid();
    crate::logger::init(flags.debug);
    let listener = take_listener(flags)?;
    let (reaper, exits) = Reaper::start().map_err(|e| ShimError::io("become a sub-reaper", e))?;
    let ttrpc_address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
    let publisher = Arc::new(Publisher::start(&ttrpc_address, &flags.namespace));
    let (shutdown_tx, shutdown) = mpsc::channel();
    let service = Arc::new(Service::new(
        &flags.id,
        &flags.namespace,
        reaper,
        publisher.clone(),
        shutdown_tx,
    ));
    let on_exit = service.clone();
    thread::Builder::new()
        .name("exits".into())
        .spawn(move || exits.into_iter().for_each(|exit| on_exit.on_exit(exit)))
        .map_err(|e| ShimError::io("start exit handler", e))?;
    let ttrpc_err =
        |e: ttrpc::Error| ShimError::io("serve ttrpc", std::io::Error::other(format!("{e:?}")));
    let mut server = ttrpc::Server::new()
        .add_listener(listener.into_raw_fd())
        .map_err(ttrpc_err)?
        .register_service(containerd_shim_protos::create_task(service))
        .set_thread_count_min(1)
        .set_thread_count_default(2)
        .set_thread_count_max(8);
    server.start().map_err(ttrpc_err)?;
    log::info!("serving task {} in namespace {}", flags.id, flags.namespace);
    // Read the socket's address now: the bundle (our cwd) may be removed by the daemon as soon
    // as Shutdown has answered.
    let address = fs::read_to_string("address")
        .map(|a| a.trim().to_string())
        .unwrap_or_else(|_| socket_address(&flags.address, &flags.namespace, &flags.id));
    let _ = shutdown.recv();
    publisher.close(Duration::from_secs(5));
    let _ = fs::remove_file(address.trim_start_matches("unix://"));
    log::info!("shim exiting");
    std::process::exit(0)
}

/// The listening socket: `-socket PATH`, or the one `start` passed as stdin (stdin then
/// becomes `/dev/null`).
fn take_listener(flags: &Flags) -> Result<OwnedFd> {
    if !flags.socket.is_empty() {
        let path = flags.socket.trim_start_matches("unix://");
        let _ = fs::remove_file(path);
        let l =
            UnixListener::bind(path).map_err(|e| ShimError::io(format!("listen on {path}"), e))?;
        return Ok(OwnedFd::from(l));
    }
    let stdin = std::io::stdin();
    let is_socket = rustix::fs::fstat(stdin.as_fd()).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket
    });
    if !is_socket {
        return Err(ShimError::InvalidArgument(
            "the serving process needs its listening socket as stdin (run `start`) or -socket"
                .into(),
        ));
    }
    let err = |e: rustix::io::Errno| ShimError::io("take listening socket", e.into());
    let fd = rustix::io::fcntl_dupfd_cloexec(stdin.as_fd(), 3).map_err(err)?;
    let null = fs::File::open("/dev/null").map_err(|e| ShimError::io("open /dev/null", e))?;
    rustix::stdio::dup2_stdin(&null).map_err(err)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_are_short_and_distinct() {
        let a = socket_address("/run/containerd/containerd.sock", "default", "t1");
        assert!(a.starts_with("unix:///run/berth/s/"));
        assert!(a.len() - "unix://".len() < 108, "fits in sun_path");
        assert_ne!(
            a,
            socket_address("/run/containerd/containerd.sock", "other", "t1")
        );
        assert_ne!(a, socket_address("/tmp/c.sock", "default", "t1"));
    }

    #[test]
    fn files_are_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "address", "unix:///a").unwrap();
        write_atomic(dir.path(), "address", "unix:///b").unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("address")).unwrap(),
            "unix:///b"
        );
        assert!(!dir.path().join(".address").exists());
    }
}

//! The OCI runtime: a `runc`-compatible command-line binary (runc by default, crun when the
//! options name it) that the shim runs once per operation.
//!
//! **Runtime options** come with the task's `Create` request as a `google.protobuf.Any`:
//! - `containerd.runc.v1.Options` (containerd's runc options: `BinaryName`, `Root`,
//!   `SystemdCgroup`, `NoPivotRoot`, `NoNewKeyring`, `IoUid`/`IoGid`), what `ctr run
//!   --runc-binary` and CRI's runc runtime config produce;
//! - `runtimeoptions.v1.Options` (a `ConfigPath`), what containerd passes for other runtime
//!   types (`ctr run --runtime-config-path FILE`, CRI): the file is TOML with the same keys.
//!
//! Every runtime command gets the **state root** `--root <Root>/<namespace>` (default
//! `/run/berth/runc/<namespace>`) and `--log <bundle>/log.json --log-format json`; when a command
//! fails, its last `error` entry in that log is the error message (runc and crun write the real
//! cause there, while their stderr may be the container's). The options in force are saved in
//! the bundle (`berth-runtime.json`) for the `delete` command, which runs when the shim is gone.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::{Message, UnknownValueRef};
use containerd_shim_protos::shim::oci::Options as RuncOptions;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ShimError};
use crate::reaper::{Exit, Reaper};

/// Type URL of containerd's runc options.
pub const RUNC_OPTIONS: &str = berth_core::type_urls::RUNC_OPTIONS;
/// Type URL of containerd's generic runtime options (a config file path).
pub const RUNTIME_OPTIONS: &str = "runtimeoptions.v1.Options";
/// Where runtime state lives when the options name no root.
pub const DEFAULT_ROOT: &str = "/run/berth/runc";
/// The file in the bundle that remembers the runtime for `delete`.
pub const SAVED: &str = "berth-runtime.json";

/// The runtime options this shim understands (the subset of containerd's runc options that
/// matters to a runc-compatible binary).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RuntimeOptions {
    pub binary_name: String,
    pub root: String,
    pub systemd_cgroup: bool,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
    /// Owner given to the process's stdio pipes (containerd's `IoUid`/`IoGid`).
    pub io_uid: u32,
    pub io_gid: u32,
    /// A cgroup for the shim itself.
    pub shim_cgroup: String,
}

impl RuntimeOptions {
    /// Decode the options of a `Create` request (none: the defaults).
    pub fn from_any(any: Option<&Any>) -> Result<RuntimeOptions> {
        let Some(any) = any.filter(|a| !a.type_url.is_empty()) else {
            return Ok(RuntimeOptions::default());
        };
        let name = any.type_url.rsplit('/').next().unwrap_or_default();
        let bad = |e: &dyn std::fmt::Display| {
            ShimError::InvalidArgument(format!("runtime options {name}: {e}"))
        };
        match name {
            RUNC_OPTIONS => {
                let o = RuncOptions::parse_from_bytes(&any.value).map_err(|e| bad(&e))?;
                Ok(RuntimeOptions {
                    binary_name: o.binary_name,
                    root: o.root,
                    systemd_cgroup: o.systemd_cgroup,
                    no_pivot_root: o.no_pivot_root,
                    no_new_keyring: o.no_new_keyring,
                    io_uid: o.io_uid,
                    io_gid: o.io_gid,
                    shim_cgroup: o.shim_cgroup,
                })
            }
            RUNTIME_OPTIONS => {
                // message Options { string type_url = 1; string config_path = 2; }: read as
                // unknown fields of an empty message rather than generating code for two strings.
                let m = Empty::parse_from_bytes(&any.value).map_err(|e| bad(&e))?;
                let path = match m.special_fields.unknown_fields().get(2) {
                    Some(UnknownValueRef::LengthDelimited(b)) => {
                        String::from_utf8(b.to_vec()).map_err(|e| bad(&e))?
                    }
                    _ => return Ok(RuntimeOptions::default()),
                };
                let text = fs::read_to_string(&path)
                    .map_err(|e| ShimError::io(format!("read runtime config {path}"), e))?;
                toml::from_str(&text).map_err(|e| ShimError::BadFile {
                    path: path.into(),
                    message: e.message().to_string(),
                })
            }
            other => Err(ShimError::InvalidArgument(format!(
                "runtime options of type {other:?} (want {RUNC_OPTIONS} or {RUNTIME_OPTIONS})"
            ))),
        }
    }
}

/// A runtime binary with its root and global flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
    /// The runtime's JSON log (`<bundle>/log.json`).
    pub log: PathBuf,
}

/// Stdio and terminal for a process the runtime starts.
#[derive(Debug)]
pub struct ProcessStdio {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    pub console_socket: Option<PathBuf>,
}

impl Runtime {
    /// The runtime the options ask for, for a task of `namespace` in `bundle`.
    pub fn new(opts: &RuntimeOptions, namespace: &str, bundle: &Path) -> Result<Runtime> {
        let name = if opts.binary_name.is_empty() {
            "runc"
        } else {
            opts.binary_name.as_str()
        };
        let root = if opts.root.is_empty() {
            DEFAULT_ROOT
        } else {
            &opts.root
        };
        Ok(Runtime {
            binary: find_binary(name)?,
            root: Path::new(root).join(namespace),
            systemd_cgroup: opts.systemd_cgroup,
            no_pivot_root: opts.no_pivot_root,
            no_new_keyring: opts.no_new_keyring,
            log: bundle.join("log.json"),
        })
    }

    /// Remember this runtime in `bundle`.
    pub fn save(&self, bundle: &Path) -> Result<()> {
        let path = bundle.join(SAVED);
        let data = serde_json::to_vec(self).unwrap_or_default();
        fs::write(&path, data).map_err(|e| ShimError::io(format!("write {}", path.display()), e))
    }

    /// The runtime saved in `bundle`, if any.
    pub fn load(bundle: &Path) -> Option<Runtime> {
        let data = fs::read(bundle.join(SAVED)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    fn name(&self) -> String {
        self.binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json");
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd.args(args);
        cmd
    }

    /// Run a command whose output the shim reads; its stdin is `input` (or nothing).
    fn run(
        &self,
        reaper: &Reaper,
        verb: &str,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let offset = log_len(&self.log);
        let mut cmd = self.command(args);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let out = reaper
            .output(&mut cmd, input)
            .map_err(|e| ShimError::io(format!("run {} {verb}", self.binary.display()), e))?;
        if out.status == 0 {
            return Ok(out.stdout);
        }
        Err(self.failure(verb, offset, out.status, &out.stderr))
    }

    fn failure(&self, verb: &str, log_offset: u64, status: u32, stderr: &[u8]) -> ShimError {
        let message = last_log_error(&self.log, log_offset)
            .or_else(|| {
                let s = String::from_utf8_lossy(stderr).trim().to_string();
                (!s.is_empty()).then_some(s)
            })
            .unwrap_or_else(|| format!("exit status {status}"));
        let action = format!("{} {verb}", self.name());
        // runc says "runc create failed: …" itself.
        let message = match message.strip_prefix(&format!("{action} failed: ")) {
            Some(rest) => rest.to_string(),
            None => message,
        };
        ShimError::Runtime { action, message }
    }

    /// Run a command that starts a container process (`create`, `exec`) with `stdio`, waiting for
    /// the runtime to return. Answers the reaper's sequence number at spawn time (see
    /// [`crate::reaper`]).
    fn spawn_process(
        &self,
        reaper: &Reaper,
        verb: &str,
        args: &[&str],
        stdio: ProcessStdio,
    ) -> Result<u64> {
        let offset = log_len(&self.log);
        let mut cmd = self.command(&[verb]);
        if let Some(sock) = &stdio.console_socket {
            cmd.arg("--console-socket").arg(sock);
        }
        cmd.args(args)
            .stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr);
        let spawned = reaper
            .spawn(&mut cmd)
            .map_err(|e| ShimError::io(format!("run {} {verb}", self.binary.display()), e))?;
        drop(cmd); // the parent's copies of the child's stdio
        let since = spawned.since;
        let Exit { status, .. } = spawned.wait();
        if status != 0 {
            return Err(self.failure(verb, offset, status, b""));
        }
        Ok(since)
    }

    /// `create --bundle B --pid-file P [--console-socket S] ID`.
    pub fn create(
        &self,
        reaper: &Reaper,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        stdio: ProcessStdio,
    ) -> Result<u64> {
        let (bundle, pid_file) = (path_str(bundle)?, path_str(pid_file)?);
        let mut args = vec!["--bundle", bundle, "--pid-file", pid_file];
        if self.no_pivot_root {
            args.push("--no-pivot");
        }
        if self.no_new_keyring {
            args.push("--no-new-keyring");
        }
        args.push(id);
        self.spawn_process(reaper, "create", &args, stdio)
    }

    /// `exec --detach --pid-file P --process SPEC [--console-socket S] ID`.
    pub fn exec(
        &self,
        reaper: &Reaper,
        id: &str,
        spec: &Path,
        pid_file: &Path,
        stdio: ProcessStdio,
    ) -> Result<u64> {
        let (spec, pid_file) = (path_str(spec)?, path_str(pid_file)?);
        let args = ["--detach", "--pid-file", pid_file, "--process", spec, id];
        self.spawn_process(reaper, "exec", &args, stdio)
    }

    pub fn start(&self, reaper: &Reaper, id: &str) -> Result<()> {
        self.run(reaper, "start", &["start", id], None).map(drop)
    }

    /// Signal the container's init (or, with `all`, every process in it). A container that is
    /// not running any more is [`ShimError::NotFound`], as containerd reports it.
    pub fn kill(&self, reaper: &Reaper, id: &str, signal: u32, all: bool) -> Result<()> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        self.run(reaper, "kill", &args, None)
            .map(drop)
            .map_err(|e| {
                let msg = e.to_string();
                if [
                    "not running",
                    "no such process",
                    "not in running state",
                    "does not exist",
                ]
                .iter()
                .any(|s| msg.contains(s))
                {
                    ShimError::NotFound("process already finished".into())
                } else {
                    e
                }
            })
    }

    /// Delete the container's runtime state; one that the runtime does not know is fine.
    pub fn delete(&self, reaper: &Reaper, id: &str, force: bool) -> Result<()> {
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        match self.run(reaper, "delete", &args, None) {
            Err(e) if e.to_string().contains("not exist") => Ok(()),
            other => other.map(drop),
        }
    }

    pub fn pause(&self, reaper: &Reaper, id: &str) -> Result<()> {
        self.run(reaper, "pause", &["pause", id], None).map(drop)
    }

    pub fn resume(&self, reaper: &Reaper, id: &str) -> Result<()> {
        self.run(reaper, "resume", &["resume", id], None).map(drop)
    }

    /// `update --resources FILE ID` with the OCI `LinuxResources` JSON (a file rather than `-`:
    /// crun reads no stdin there).
    pub fn update(&self, reaper: &Reaper, id: &str, resources: &[u8]) -> Result<()> {
        let dir = self.log.parent().unwrap_or(Path::new("/tmp"));
        let file = tempfile::Builder::new()
            .prefix(".resources-")
            .suffix(".json")
            .tempfile_in(dir)
            .map_err(|e| ShimError::io("create resources file", e))?;
        fs::write(file.path(), resources).map_err(|e| ShimError::io("write resources file", e))?;
        let path = path_str(file.path())?;
        self.run(reaper, "update", &["update", "--resources", path, id], None)
            .map(drop)
    }

    /// The pids of every process in the container (`ps --format json`).
    pub fn ps(&self, reaper: &Reaper, id: &str) -> Result<Vec<u32>> {
        let out = self.run(reaper, "ps", &["ps", "--format", "json", id], None)?;
        let text = String::from_utf8_lossy(&out);
        let text = text.trim();
        if text.is_empty() || text == "null" {
            return Ok(Vec::new());
        }
        serde_json::from_str(text).map_err(|e| ShimError::Runtime {
            action: format!("{} ps", self.name()),
            message: format!("unexpected output {text:?}: {e}"),
        })
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| ShimError::InvalidArgument(format!("path {} is not UTF-8", p.display())))
}

/// `name` as an absolute path: itself if it has a slash, else the first match on `$PATH`.
pub fn find_binary(name: &str) -> Result<PathBuf> {
    let found = if name.contains('/') {
        Some(PathBuf::from(name)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .unwrap_or_else(|| {
                vec![
                    "/usr/local/sbin".into(),
                    "/usr/sbin".into(),
                    "/usr/bin".into(),
                    "/sbin".into(),
                    "/bin".into(),
                ]
            })
            .into_iter()
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    };
    let found = found.ok_or_else(|| ShimError::NotFound(format!("runtime binary {name:?}")))?;
    std::path::absolute(&found).map_err(|e| ShimError::io(format!("resolve {name}"), e))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn log_len(log: &Path) -> u64 {
    fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// The message of the last `error` (or `fatal`) entry written to the runtime's JSON log after
/// `offset`.
pub fn last_log_error(log: &Path, offset: u64) -> Option<String> {
    let mut f = File::open(log).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v["level"].as_str(), Some("error") | Some("fatal")))
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_options_pick_the_binary_and_root() {
        let o = RuncOptions {
            binary_name: "crun".into(),
            root: "/run/x".into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        let any = Any {
            type_url: RUNC_OPTIONS.into(),
            value: o.write_to_bytes().unwrap(),
            ..Default::default()
        };
        let opts = RuntimeOptions::from_any(Some(&any)).unwrap();
        assert_eq!(opts.binary_name, "crun");
        assert_eq!(opts.root, "/run/x");
        assert!(opts.systemd_cgroup);
        assert_eq!(
            RuntimeOptions::from_any(None).unwrap(),
            RuntimeOptions::default()
        );
    }

    #[test]
    fn runtime_options_read_their_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("crun.toml");
        fs::write(&cfg, "BinaryName = \"crun\"\nSystemdCgroup = false\n").unwrap();
        // Options { type_url = 1: "", config_path = 2: cfg }
        let path = cfg.to_str().unwrap().as_bytes();
        let mut value = vec![0x12, path.len() as u8];
        value.extend_from_slice(path);
        let any = Any {
            type_url: RUNTIME_OPTIONS.into(),
            value,
            ..Default::default()
        };
        let opts = RuntimeOptions::from_any(Some(&any)).unwrap();
        assert_eq!(opts.binary_name, "crun");

        fs::write(&cfg, "BinaryName = 3\n").unwrap();
        let err = RuntimeOptions::from_any(Some(&any)).unwrap_err();
        assert_eq!(err.kind(), berth_core::ErrorKind::InvalidArgument, "{err}");

        let other = Any {
            type_url: "x.Options".into(),
            ..Default::default()
        };
        assert!(RuntimeOptions::from_any(Some(&other)).is_err());
    }

    #[test]
    fn binaries_resolve_to_absolute_paths() {
        assert!(find_binary("sh").unwrap().is_absolute());
        let err = find_binary("no-such-runtime-berth").unwrap_err();
        assert_eq!(
            err.to_string(),
            "runtime binary \"no-such-runtime-berth\": not found"
        );
    }

    #[test]
    fn the_last_logged_error_is_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        fs::write(&log, "{\"level\":\"error\",\"msg\":\"old\"}\n").unwrap();
        let offset = log_len(&log);
        let mut text = fs::read_to_string(&log).unwrap();
        text.push_str("{\"level\":\"warning\",\"msg\":\"w\"}\nnot json\n");
        text.push_str("{\"level\":\"error\",\"msg\":\"exec: \\\"nope\\\": not found\"}\n");
        fs::write(&log, text).unwrap();
        assert_eq!(
            last_log_error(&log, offset).as_deref(),
            Some("exec: \"nope\": not found")
        );
        assert_eq!(last_log_error(&log, log_len(&log)), None);
    }
}

//! Shim binaries: which one a runtime name means, and the two subcommands the daemon runs.
//!
//! A **runtime name** `<prefix>.<name>.<version>` (`io.containerd.runc.v2`) names the binary
//! `containerd-shim-<name>-<version>` (`containerd-shim-runc-v2`), looked up on `PATH` and then
//! beside the daemon's own executable; an absolute path names the binary itself. This is
//! containerd's rule, so containerd's shims (and berth's `containerd-shim-berth-v2`, runtime
//! `io.containerd.berth.v2`) are found the same way.
//!
//! The daemon runs a shim binary for two things (the shim **start contract** of containerd's
//! runtime v2):
//!
//! - `<shim> -namespace NS -address GRPC -publish-binary DAEMON -id ID start`, in the bundle
//!   directory, with `TTRPC_ADDRESS` (the daemon's ttrpc socket, where the shim forwards its
//!   events), `GRPC_ADDRESS` and `NAMESPACE` in the environment and the runtime options
//!   (protobuf `Any`) on stdin. It starts the long-running shim process, which outlives the
//!   daemon, and prints the address of its ttrpc socket on stdout.
//! - `<shim> -namespace NS -address GRPC -publish-binary DAEMON -id ID -bundle BUNDLE delete`,
//!   after a shim died: it cleans up what the shim left (the runc container, mounts) and prints a
//!   protobuf `DeleteResponse` with the exit status it could establish.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use containerd_shim_protos::protobuf::Message;
use tokio::io::AsyncWriteExt;

use crate::bundle::Bundle;
use crate::error::{Result, RuntimeError};
use crate::types::{pb_any, time_from_pb};
use berth_core::containers::Any;
use berth_core::tasks::ExitStatus;

/// How long `start` and `delete` may take.
const BINARY_TIMEOUT: Duration = Duration::from_secs(30);

/// The shim binary name a runtime name stands for, or `None` if it is not of the form
/// `<prefix>.<name>.<version>` (containerd's `BinaryName`).
pub fn binary_name(runtime: &str) -> Option<String> {
    let parts: Vec<&str> = runtime.split('.').collect();
    if parts.len() < 2 || parts[0].is_empty() {
        return None;
    }
    let n = parts.len();
    Some(format!("containerd-shim-{}-{}", parts[n - 2], parts[n - 1]))
}

/// containerd's v1 runtime (shim v1 API), which berthd refuses rather than aliases.
pub const LEGACY_V1_RUNTIME: &str = "io.containerd.runtime.v1.linux";

/// Resolve `runtime` to a shim binary: an absolute path as is (it must exist); a name through
/// [`binary_name`], then `PATH`, then each of `extra_dirs` (berthd passes its own directory).
/// containerd's v1 runtime name is refused with `FailedPrecondition` naming the v2 runtimes.
pub fn resolve(runtime: &str, extra_dirs: &[PathBuf]) -> Result<PathBuf> {
    let invalid = || RuntimeError::InvalidRuntimeName(runtime.to_string());
    if runtime.is_empty() {
        return Err(invalid());
    }
    if runtime == LEGACY_V1_RUNTIME {
        return Err(RuntimeError::LegacyRuntime(runtime.to_string()));
    }
    let path = Path::new(runtime);
    if path.is_absolute() {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(RuntimeError::ShimNotInstalled {
                runtime: runtime.to_string(),
                binary: runtime.to_string(),
            })
        };
    }
    if runtime.contains('/') {
        return Err(invalid());
    }
    let name = binary_name(runtime).ok_or_else(invalid)?;
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .iter()
        .chain(extra_dirs)
        .map(|d| d.join(&name))
        .find(|p| is_executable(p))
        .ok_or(RuntimeError::ShimNotInstalled {
            runtime: runtime.to_string(),
            binary: name,
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A shim binary and the daemon addresses it is told about.
#[derive(Debug, Clone)]
pub struct ShimBinary {
    pub path: PathBuf,
    /// The daemon's gRPC socket (`-address`, `GRPC_ADDRESS`).
    pub grpc_address: PathBuf,
    /// The daemon's ttrpc socket (`TTRPC_ADDRESS`), serving the Events service.
    pub ttrpc_address: PathBuf,
    /// The daemon's executable (`-publish-binary`; `<it> publish` forwards an event).
    pub publish_binary: PathBuf,
}

impl ShimBinary {
    fn command(&self, bundle: &Bundle, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.arg("-namespace")
            .arg(&bundle.namespace)
            .arg("-address")
            .arg(&self.grpc_address)
            .arg("-publish-binary")
            .arg(&self.publish_binary)
            .args(args)
            .current_dir(&bundle.path)
            .env("TTRPC_ADDRESS", &self.ttrpc_address)
            .env("GRPC_ADDRESS", &self.grpc_address)
            .env("NAMESPACE", &bundle.namespace)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if std::env::var_os("GOMAXPROCS").is_none() {
            // containerd's default for Go shims: they need few threads.
            cmd.env("GOMAXPROCS", "2");
        }
        cmd
    }

    async fn run(
        &self,
        bundle: &Bundle,
        args: &[&str],
        stdin: Vec<u8>,
    ) -> std::result::Result<Vec<u8>, String> {
        let mut child = self
            .command(bundle, args)
            .spawn()
            .map_err(|e| format!("exec {}: {e}", self.path.display()))?;
        if let Some(mut input) = child.stdin.take() {
            // A shim that does not read its options closes stdin early: not an error.
            let _ = input.write_all(&stdin).await;
        }
        let out = tokio::time::timeout(BINARY_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| format!("{} timed out after {BINARY_TIMEOUT:?}", args.join(" ")))?
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            return Err(format!(
                "{}{}: {}",
                stdout.trim(),
                stderr.trim(),
                out.status
            ));
        }
        Ok(out.stdout)
    }

    /// Run `start` for the task of `bundle`; returns the shim's ttrpc address, also recorded
    /// in the bundle's `address` file.
    pub async fn start(&self, bundle: &Bundle, options: Option<&Any>) -> Result<String> {
        let stdin = match options {
            Some(a) => pb_any(a)
                .write_to_bytes()
                .map_err(|e| RuntimeError::ShimStart {
                    id: bundle.id.clone(),
                    reason: format!("encode runtime options: {e}"),
                })?,
            None => Vec::new(),
        };
        let out = self
            .run(bundle, &["-id", &bundle.id, "start"], stdin)
            .await
            .map_err(|reason| RuntimeError::ShimStart {
                id: bundle.id.clone(),
                reason,
            })?;
        let printed = String::from_utf8_lossy(&out);
        let address = printed.trim();
        if address.is_empty() {
            return Err(RuntimeError::ShimStart {
                id: bundle.id.clone(),
                reason: "the shim printed no address".into(),
            });
        }
        let address = if address.contains("://") {
            address.to_string()
        } else {
            format!("unix://{address}")
        };
        bundle.write_address(&address)?;
        Ok(address)
    }

    /// Run `delete` for the task of `bundle` (its shim is gone); returns what the binary
    /// reports about the task's end.
    pub async fn delete(&self, bundle: &Bundle) -> Result<ExitStatus> {
        let bundle_path = bundle.path.display().to_string();
        let args = ["-id", &bundle.id, "-bundle", &bundle_path, "delete"];
        // The bundle may be half gone; the binary still needs a working directory.
        let run_in = if bundle.path.is_dir() {
            bundle.clone()
        } else {
            Bundle {
                path: std::env::temp_dir(),
                ..bundle.clone()
            }
        };
        let out = self
            .run(&run_in, &args, Vec::new())
            .await
            .map_err(|reason| RuntimeError::ShimDelete {
                id: bundle.id.clone(),
                reason,
            })?;
        let resp =
            containerd_shim_protos::api::DeleteResponse::parse_from_bytes(&out).map_err(|e| {
                RuntimeError::ShimDelete {
                    id: bundle.id.clone(),
                    reason: format!("decode response: {e}"),
                }
            })?;
        Ok(ExitStatus {
            pid: resp.pid,
            code: resp.exit_status,
            exited_at: time_from_pb(&resp.exited_at).unwrap_or_else(SystemTime::now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_as_containerd() {
        assert_eq!(
            binary_name("io.containerd.runc.v2").as_deref(),
            Some("containerd-shim-runc-v2")
        );
        assert_eq!(
            binary_name("io.containerd.berth.v2").as_deref(),
            Some("containerd-shim-berth-v2")
        );
        assert_eq!(binary_name("runc"), None);
        assert_eq!(binary_name(".a.b"), None);
    }

    #[test]
    fn resolve_checks_names_paths_and_extra_dirs() {
        let d = tempfile::tempdir().unwrap();
        let shim = d.path().join("containerd-shim-test-v9");
        std::fs::write(&shim, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            resolve("io.containerd.test.v9", &[d.path().to_path_buf()]).unwrap(),
            shim
        );
        assert_eq!(resolve(shim.to_str().unwrap(), &[]).unwrap(), shim);
        let e = resolve("io.containerd.nope.v9", &[]).unwrap_err();
        assert_eq!(e.kind(), berth_core::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "runtime \"io.containerd.nope.v9\" binary not installed \"containerd-shim-nope-v9\": not found"
        );
        assert_eq!(
            resolve("rel/path", &[]).unwrap_err().kind(),
            berth_core::ErrorKind::InvalidArgument
        );
        assert!(resolve("", &[]).is_err());
        let legacy = resolve(LEGACY_V1_RUNTIME, &[]).unwrap_err();
        assert_eq!(legacy.kind(), berth_core::ErrorKind::FailedPrecondition);
        assert!(
            legacy.to_string().contains("io.containerd.runc.v2"),
            "{legacy}"
        );
    }
}

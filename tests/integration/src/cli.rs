//! Helpers for the tests that drive the `berth` CLI: the one runner of the CLI ([`berth`],
//! [`berth_with`]: a clean, explicit environment and a time limit), a registry with the test
//! images, `ctr` tables, and the blobs of OCI layouts.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::registry::{sha256_digest, Registry, TestImages};
use crate::{ok, poll, setup, workspace_bin, Berthd};

/// How long one `berth` command may take before the test fails (instead of hanging).
pub const BERTH_TIMEOUT: Duration = Duration::from_secs(180);

/// Skip unless root tests are on and skopeo, docker-registry and `tools` are installed; a
/// registry and the test images. (The old name of `setup(...)` + `Setup::registry`.)
pub fn setup_registry(test: &str, tools: &[&str]) -> Option<(Registry, &'static TestImages)> {
    let needs: Vec<&str> = ["skopeo", "docker-registry"]
        .iter()
        .chain(tools)
        .copied()
        .collect();
    let s = setup(test, &needs)?;
    Some((s.registry(), s.images))
}

/// The `PATH` every command the harness runs for a test gets.
pub const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Give `cmd` a clean, explicit environment: nothing of the caller's (no `BERTH_*`, proxies,
/// `DOCKER_CONFIG`), `PATH` = [`CLEAN_PATH`], and `HOME=/nonexistent` so that no user's
/// `~/.docker/config.json` is read. Add what a test needs with `cmd.env(...)` afterwards.
pub fn clean_env(cmd: &mut Command) -> &mut Command {
    cmd.env_clear()
        .env("PATH", CLEAN_PATH)
        .env("HOME", "/nonexistent")
}

/// `berth --address ADDRESS --namespace NS ARGS` as a command with a clean environment
/// ([`clean_env`]), for a test to add `env`, or to spawn (`berth events`, `-i` with a pipe).
pub fn berth_command(address: &Path, ns: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(workspace_bin("berth"));
    clean_env(&mut cmd);
    cmd.arg("--address")
        .arg(address)
        .arg("--namespace")
        .arg(ns)
        .args(args);
    cmd
}

/// What a command run by [`run_limited`] reads on its standard input.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// `/dev/null`.
    Null,
    /// A file (seekable, as `berth ... < FILE` gives it).
    File(&'a Path),
    /// These bytes (written to a file first, so no writer thread is needed).
    Bytes(&'a [u8]),
}

/// Run `cmd` with `input`, stdout and stderr collected; fail the test (killing the command)
/// if it runs past `limit` instead of letting the test hang.
pub fn run_limited(mut cmd: Command, input: Input<'_>, limit: Duration) -> Output {
    // Files rather than pipes: no reader threads, and what it wrote survives a kill.
    let io = tempfile::tempdir().expect("tempdir");
    let (out_path, err_path) = (io.path().join("stdout"), io.path().join("stderr"));
    let stdin = match input {
        Input::Null => Stdio::null(),
        Input::File(p) => Stdio::from(
            File::open(p).unwrap_or_else(|e| panic!("open stdin file {}: {e}", p.display())),
        ),
        Input::Bytes(data) => {
            let p = io.path().join("stdin");
            std::fs::write(&p, data).expect("write stdin file");
            Stdio::from(File::open(&p).expect("open stdin file"))
        }
    };
    let mut child = cmd
        .stdin(stdin)
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let mut status = None;
    let finished = poll(limit, || {
        status = child.try_wait().expect("wait for the command");
        status.is_some()
    });
    let Some(status) = status.filter(|_| finished) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{cmd:?} still running after {limit:?}; stderr:\n{}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    }
}

/// `berth --address <b> --namespace <ns> ARGS` with a clean environment and no input, stdout
/// and stderr collected; fails the test if it runs past [`BERTH_TIMEOUT`]. The one way the
/// tests run the CLI; [`berth_with`] for a daemon at another address, extra environment or
/// input.
pub fn berth(b: &Berthd, ns: &str, args: &[&str]) -> Output {
    berth_with(&b.address(), ns, args, &[], Input::Null)
}

/// [`berth`] against the daemon at `address` (berthd or containerd), with `env` added to
/// the clean environment and `input` on stdin.
pub fn berth_with(
    address: &Path,
    ns: &str,
    args: &[&str],
    env: &[(&str, &str)],
    input: Input<'_>,
) -> Output {
    let mut cmd = berth_command(address, ns, args);
    cmd.envs(env.iter().copied());
    run_limited(cmd, input, BERTH_TIMEOUT)
}

/// Rows of a `ctr` table, header skipped, split on whitespace.
pub fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .filter(|r: &Vec<String>| !r.is_empty())
        .collect()
}

/// The target digest of image `name` as `ctr images ls` shows it, or None when not listed.
pub fn image_digest(b: &Berthd, ns: &str, name: &str) -> Option<String> {
    let ls = ok(b.ctr(ns, &["images", "ls"]), "ctr images ls");
    rows(&ls)
        .into_iter()
        .find(|r| r[0] == name)
        .map(|r| r.get(2).cloned().unwrap_or_default())
}

pub fn read_json(p: &Path) -> serde_json::Value {
    let data = std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_slice(&data).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
}

pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// The manifest `digest` of an OCI layout: (config digest, layer digests).
pub fn manifest_parts(layout: &Path, digest: &str) -> (String, Vec<String>) {
    let m = read_json(&blob_path(layout, digest));
    let config = m["config"]["digest"]
        .as_str()
        .expect("manifest config digest")
        .to_string();
    let layers = m["layers"]
        .as_array()
        .expect("manifest layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("layer digest").to_string())
        .collect();
    (config, layers)
}

/// Copy every blob of `from` into the layout `to`.
pub fn copy_blobs(from: &Path, to: &Path) {
    let dst = to.join("blobs/sha256");
    std::fs::create_dir_all(&dst).expect("create blobs dir");
    for e in std::fs::read_dir(from.join("blobs/sha256"))
        .expect("read blobs")
        .flatten()
    {
        std::fs::copy(e.path(), dst.join(e.file_name())).expect("copy blob");
    }
}

/// Write `data` as a blob of the layout at `dir`; its descriptor's digest and size.
pub fn write_blob(dir: &Path, data: &[u8]) -> (String, usize) {
    let digest = sha256_digest(data);
    std::fs::write(blob_path(dir, &digest), data).expect("write blob");
    (digest, data.len())
}

/// An OCI layout with an index of two images: busybox for the host's platform, and the
/// `layers` image (its config saying so) for another.
#[derive(Debug)]
pub struct TwoPlatforms {
    pub dir: tempfile::TempDir,
    pub index: String,
    pub host_manifest: String,
    pub other_manifest: String,
    /// The architecture the other image claims (`s390x`, or `ppc64le` on s390x).
    pub other_arch: String,
}

impl TwoPlatforms {
    pub fn build(images: &TestImages) -> TwoPlatforms {
        let host_arch = read_json(&images.layout("busybox").join("index.json"))["manifests"][0]
            ["platform"]["architecture"]
            .as_str()
            .expect("busybox platform in index.json")
            .to_string();
        let other_arch = if host_arch == "s390x" {
            "ppc64le"
        } else {
            "s390x"
        };
        let layout = tempfile::tempdir().expect("tempdir");
        let dir = layout.path();
        copy_blobs(&images.layout("busybox"), dir);
        copy_blobs(&images.layout("layers"), dir);
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let host_manifest = images.manifest_digest("busybox");
        let mut manifest = read_json(&blob_path(dir, &images.manifest_digest("layers")));
        let mut config = read_json(&blob_path(
            dir,
            manifest["config"]["digest"].as_str().unwrap(),
        ));
        config["architecture"] = other_arch.into();
        let (other_config, size) = write_blob(dir, &serde_json::to_vec(&config).unwrap());
        manifest["config"]["digest"] = other_config.into();
        manifest["config"]["size"] = size.into();
        let (other_manifest, other_size) = write_blob(dir, &serde_json::to_vec(&manifest).unwrap());
        let host_size = std::fs::metadata(blob_path(dir, &host_manifest))
            .expect("host manifest blob")
            .len();
        let mt_manifest = "application/vnd.oci.image.manifest.v1+json";
        let mt_index = "application/vnd.oci.image.index.v1+json";
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": mt_index,
            "manifests": [
                {"mediaType": mt_manifest, "digest": other_manifest, "size": other_size,
                 "platform": {"os": "linux", "architecture": other_arch}},
                {"mediaType": mt_manifest, "digest": host_manifest, "size": host_size,
                 "platform": {"os": "linux", "architecture": host_arch}},
            ],
        });
        let (index_digest, index_size) = write_blob(dir, &serde_json::to_vec(&index).unwrap());
        let top = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": mt_index,
            "manifests": [{"mediaType": mt_index, "digest": index_digest, "size": index_size,
                           "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
        });
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
        TwoPlatforms {
            dir: layout,
            index: index_digest,
            host_manifest,
            other_manifest,
            other_arch: other_arch.to_string(),
        }
    }

    /// Push it all to `reference` with `skopeo copy --all`.
    pub fn push(&self, reference: &str) {
        let out = Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:latest", self.dir.path().display()))
            .arg(format!("docker://{reference}"))
            .output()
            .expect("run skopeo");
        ok(out, "skopeo copy --all of the two-platform index");
    }
}

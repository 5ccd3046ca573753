//! Test images without internet, and a real registry to serve them.
//!
//! - [`TestImages`]: OCI images built from local files by `scripts/testimages.py` (busybox from
//!   Debian's busybox-static; `layers`, a multi-layer image with whiteouts, an opaque dir, a
//!   hardlink, symlinks, a fifo, setuid, xattrs, uid 1000 and a zstd layer; `large`, for
//!   benchmarks), cached on disk under `target/testimages/<key>` so reruns are fast.
//! - [`Registry`]: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, a free port and its
//!   own storage dir; images are pushed to it with skopeo.
//! - [`check_tree`]: compare a rootfs (e.g. a mounted snapshot) against the `EXPECTED.json`
//!   the script writes for the `layers` image.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Accept header for manifests: OCI and Docker, single and multi-platform.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// A `docker-registry serve` on 127.0.0.1 with storage in a temp dir; killed when dropped.
#[derive(Debug)]
pub struct Registry {
    pub dir: tempfile::TempDir,
    child: Child,
    port: u16,
    pub ready_after: Duration,
}

impl Registry {
    /// Start a registry, or None when `docker-registry` is not installed (the running test's
    /// skip recorded, or a failure in `require` mode: [`crate::gate::unmet`]). Panics if it is installed but does not come up.
    pub fn start() -> Option<Registry> {
        Registry::start_with_auth(None)
    }

    /// Like [`Registry::start`], with HTTP basic authentication (an htpasswd file holding
    /// `user` with a bcrypt hash of `password`, as distribution wants it): every request
    /// without those credentials gets 401.
    pub fn start_with_basic_auth(user: &str, password: &str) -> Option<Registry> {
        Registry::start_with_auth(Some((user, password)))
    }

    fn start_with_auth(auth: Option<(&str, &str)>) -> Option<Registry> {
        if !Path::new(REGISTRY_BIN).is_file() {
            crate::gate::unmet(
                &crate::gate::current_test(),
                &format!("{REGISTRY_BIN} not installed (apt-get install docker-registry)"),
            );
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("registry-it-")
            .tempdir()
            .expect("tempdir");
        let auth_config = match auth {
            Some((user, password)) => {
                let hash = bcrypt::hash(password, 4).expect("bcrypt");
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: berth-tests\n    path: {}\n",
                    htpasswd.display()
                )
            }
            None => String::new(),
        };
        let mut last_log = String::new();
        // The port is free when we pick it, but may be taken before the registry binds it:
        // try a few.
        for _ in 0..5 {
            let port = free_port();
            let p = dir.path();
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: berth-integration-tests\n{auth_config}",
                storage = p.join("storage").display(),
            );
            std::fs::write(p.join("config.yml"), config).expect("write registry config");
            let log = std::fs::File::create(p.join("registry.log")).expect("log");
            let start = Instant::now();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(p.join("config.yml"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn docker-registry");
            // Up, or exited (port taken, or a bad config: retry, then report).
            let mut exited = false;
            let up = crate::poll(Duration::from_secs(20), || {
                if let Ok(Some(_)) = child.try_wait() {
                    exited = true;
                    return true;
                }
                // 401: up, and asking for the credentials it was configured with.
                http(port, "GET", "/v2/", &[])
                    .is_ok_and(|r| r.status == 200 || (auth.is_some() && r.status == 401))
            });
            if up && !exited {
                return Some(Registry {
                    dir,
                    child,
                    port,
                    ready_after: start.elapsed(),
                });
            }
            if !exited {
                let _ = child.kill();
                let _ = child.wait();
            }
            last_log = std::fs::read_to_string(p.join("registry.log")).unwrap_or_default();
        }
        panic!("docker-registry did not start; last log:\n{last_log}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/NAME:TAG` for `name_tag` = `NAME:TAG` (or `NAME@DIGEST`).
    pub fn reference(&self, name_tag: &str) -> String {
        format!("{}/{name_tag}", self.host())
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Push the (single) image of the OCI layout `layout` as `name_tag` (`busybox:latest`)
    /// with skopeo, digests preserved. Returns the full reference. Panics on failure.
    pub fn push_oci_layout(&self, layout: &Path, name_tag: &str) -> String {
        let reference = self.reference(name_tag);
        let out = Command::new("skopeo")
            .arg("--insecure-policy")
            .arg("copy")
            .arg("--quiet")
            .arg("--preserve-digests")
            .arg("--dest-tls-verify=false")
            .arg(format!("oci:{}", layout.display()))
            .arg(format!("docker://{reference}"))
            .output()
            .expect("run skopeo (apt-get install skopeo)");
        assert!(
            out.status.success(),
            "skopeo copy {} -> {reference} failed ({}):\n{}{}",
            layout.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        reference
    }

    /// A plain-HTTP request to the registry (`path` like `/v2/busybox/manifests/latest`).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        http(self.port, method, path, headers)
            .unwrap_or_else(|e| panic!("{method} {path} on registry: {e}"))
    }

    /// The digest the registry gives for `repo:reference` (Docker-Content-Digest of a GET with
    /// an Accept for OCI and Docker manifests), checked against the body's sha256.
    /// None when the registry answers 404.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Option<String> {
        let r = self.request(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", MANIFEST_ACCEPT)],
        );
        if r.status == 404 {
            return None;
        }
        assert_eq!(
            r.status,
            200,
            "GET manifest {repo}:{reference}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let body_digest = sha256_digest(&r.body);
        if let Some(d) = r.header("docker-content-digest") {
            assert_eq!(d, body_digest, "Docker-Content-Digest vs body");
        }
        Some(body_digest)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// An HTTP response; header names are lowercased.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Minimal HTTP/1.1 client (Connection: close; Content-Length, chunked or read-to-end bodies).
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let resp_header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    if method == "HEAD" {
        body.clear();
    } else if resp_header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    } else if let Some(n) = resp_header("content-length").and_then(|n| n.parse().ok()) {
        body.truncate(n);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&b[..nl]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        b = &b[nl + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ------------------------------------------------------------------------------------------------

/// Images built by `scripts/testimages.py` into a cache dir. For each image NAME: an OCI layout
/// `dir/NAME/` and its tar `dir/NAME.tar`; the index names it `docker.io/library/NAME:latest`
/// (`io.containerd.image.name`, which `ctr images import` uses) and `latest`
/// (`org.opencontainers.image.ref.name`, which `skopeo ... oci:dir/NAME:latest` uses).
#[derive(Debug, Clone)]
pub struct TestImages {
    pub dir: PathBuf,
}

impl TestImages {
    /// `busybox` and `layers`, built once per cache key (script + host busybox), reused after.
    pub fn get() -> &'static TestImages {
        static IMAGES: OnceLock<TestImages> = OnceLock::new();
        IMAGES.get_or_init(|| TestImages::build(&["busybox", "layers"], None))
    }

    /// The `large` image of `mb` MiB (busybox plus incompressible data), cached like `get`.
    /// Building 300 MiB takes tens of seconds the first time.
    pub fn large(mb: u64) -> TestImages {
        TestImages::build(&["large"], Some(mb))
    }

    /// Run the script (unless its output for these arguments is cached) and return the dir.
    pub fn build(images: &[&str], large_mb: Option<u64>) -> TestImages {
        let script = script_path();
        let script_hash = hex(&Sha256::digest(
            std::fs::read(&script).expect("read scripts/testimages.py"),
        ));
        let mut key = Sha256::new();
        key.update(script_hash.as_bytes());
        key.update(std::fs::read("/bin/busybox").unwrap_or_default());
        key.update(format!("{images:?} {large_mb:?}").as_bytes());
        let key = hex(&key.finalize()[..8]);
        let cache = cache_root();
        let dir = cache.join(&key);
        if dir.join("DONE").is_file() {
            return TestImages { dir };
        }
        std::fs::create_dir_all(&cache).expect("create testimages cache dir");
        prune_stale(&cache, &script_hash);
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".tmp-{key}-"))
            .tempdir_in(&cache)
            .expect("tempdir for test images");
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg("--out").arg(tmp.path());
        if let Some(mb) = large_mb {
            cmd.arg("--large-mb").arg(mb.to_string());
        }
        let start = Instant::now();
        let out = cmd
            .args(images)
            .output()
            .expect("run python3 scripts/testimages.py (apt-get install python3)");
        assert!(
            out.status.success(),
            "testimages.py {images:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "built test images {images:?} in {:?} into {}",
            start.elapsed(),
            dir.display()
        );
        std::fs::write(tmp.path().join("SCRIPT"), &script_hash).expect("write SCRIPT");
        std::fs::write(tmp.path().join("DONE"), &out.stdout).expect("write DONE");
        let tmp = tmp.keep();
        // Another test process may have finished the same key first: keep theirs.
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
            assert!(dir.join("DONE").is_file(), "{} incomplete", dir.display());
        }
        TestImages { dir }
    }

    /// OCI layout dir of image `name`.
    pub fn layout(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Tar of the layout of `name`, for `ctr images import`.
    pub fn archive(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.tar"))
    }

    /// `docker.io/library/NAME:latest`: what `ctr images import` names it.
    pub fn import_name(name: &str) -> String {
        format!("docker.io/library/{name}:latest")
    }

    /// `layers/EXPECTED.json`, for [`check_tree`].
    pub fn expected(&self) -> PathBuf {
        self.dir.join("layers").join("EXPECTED.json")
    }

    /// The manifest digest in the layout's index.json.
    pub fn manifest_digest(&self, name: &str) -> String {
        let index = read_json(&self.layout(name).join("index.json"));
        index["manifests"][0]["digest"]
            .as_str()
            .expect("index.json manifests[0].digest")
            .to_string()
    }
}

/// Remove cached builds of other versions of the script (the large image is hundreds of MB).
fn prune_stale(cache: &Path, script_hash: &str) {
    for ent in std::fs::read_dir(cache).into_iter().flatten().flatten() {
        let p = ent.path();
        let done = p.join("DONE").is_file();
        let script = std::fs::read_to_string(p.join("SCRIPT")).unwrap_or_default();
        if done && script != script_hash {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/testimages.py")
}

/// `$BERTH_TESTIMAGES_DIR`, or `<target>/testimages` next to the test executable's profile dir.
fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("BERTH_TESTIMAGES_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/test-xxx -> target
    exe.ancestors()
        .nth(3)
        .map(|t| t.join("testimages"))
        .unwrap_or_else(|| std::env::temp_dir().join("berth-testimages"))
}

fn read_json(p: &Path) -> serde_json::Value {
    let data = std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_slice(&data).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
}

// ------------------------------------------------------------------------------------------------

/// Check the tree at `root` against an `EXPECTED.json` written by `scripts/testimages.py`:
/// for every listed path its type, permission bits (incl. setuid/sticky), owner, size, sha256,
/// nlink, hardlink partner, `user.*` xattrs and symlink target; that `absent` paths do not exist;
/// and, when `exact`, that no other path exists. Lists every mismatch in the error.
pub fn check_tree(root: &Path, expected_json: &Path) -> Result<(), String> {
    let exp = read_json(expected_json);
    let mut errs = Vec::new();
    let paths = exp["paths"].as_object().ok_or("EXPECTED.json: no paths")?;
    for (rel, e) in paths {
        check_entry(root, rel, e, &mut errs);
    }
    for rel in exp["absent"].as_array().into_iter().flatten() {
        let rel = rel.as_str().unwrap_or_default();
        if std::fs::symlink_metadata(root.join(rel)).is_ok() {
            errs.push(format!("{rel}: exists but must not"));
        }
    }
    if exp["exact"].as_bool() == Some(true) {
        let mut found = BTreeSet::new();
        walk(root, root, &mut found, &mut errs);
        for rel in found {
            if !paths.contains_key(&rel) {
                errs.push(format!("{rel}: unexpected path"));
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} mismatch(es) in {} against {}:\n  {}",
            errs.len(),
            root.display(),
            expected_json.display(),
            errs.join("\n  ")
        ))
    }
}

fn walk(root: &Path, dir: &Path, found: &mut BTreeSet<String>, errs: &mut Vec<String>) {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            errs.push(format!("{}: read_dir: {e}", dir.display()));
            return;
        }
    };
    for ent in rd.flatten() {
        let p = ent.path();
        let rel = p
            .strip_prefix(root)
            .unwrap_or(&p)
            .to_string_lossy()
            .into_owned();
        found.insert(rel);
        if ent.file_type().is_ok_and(|t| t.is_dir()) {
            walk(root, &p, found, errs);
        }
    }
}

fn check_entry(root: &Path, rel: &str, e: &serde_json::Value, errs: &mut Vec<String>) {
    let p = root.join(rel);
    let md = match std::fs::symlink_metadata(&p) {
        Ok(m) => m,
        Err(err) => {
            errs.push(format!("{rel}: missing ({err})"));
            return;
        }
    };
    let ft = md.file_type();
    let actual_type = if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_socket() {
        "socket"
    } else {
        "unknown"
    };
    let want_type = e["type"].as_str().unwrap_or("?");
    if actual_type != want_type {
        errs.push(format!("{rel}: type {actual_type}, want {want_type}"));
        return;
    }
    let num = |k: &str| e[k].as_u64().map(|v| v.to_string());
    cmp(errs, rel, "uid", md.uid().to_string(), num("uid"));
    cmp(errs, rel, "gid", md.gid().to_string(), num("gid"));
    if want_type != "symlink" {
        cmp(
            errs,
            rel,
            "mode",
            format!("{:04o}", md.mode() & 0o7777),
            e["mode"].as_str().map(str::to_string),
        );
    }
    match want_type {
        "file" => {
            cmp(errs, rel, "size", md.len().to_string(), num("size"));
            cmp(errs, rel, "nlink", md.nlink().to_string(), num("nlink"));
            if let Some(want) = e["sha256"].as_str() {
                match std::fs::read(&p) {
                    Ok(data) => cmp(
                        errs,
                        rel,
                        "sha256",
                        hex(&Sha256::digest(&data)),
                        Some(want.into()),
                    ),
                    Err(err) => errs.push(format!("{rel}: read: {err}")),
                }
            }
            if let Some(other) = e["hardlink_to"].as_str() {
                match std::fs::symlink_metadata(root.join(other)) {
                    Ok(o) if o.ino() == md.ino() && o.dev() == md.dev() => {}
                    Ok(_) => errs.push(format!("{rel}: not a hardlink of {other}")),
                    Err(err) => errs.push(format!("{rel}: hardlink partner {other}: {err}")),
                }
            }
        }
        "symlink" => {
            let got = std::fs::read_link(&p)
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_else(|err| format!("<{err}>"));
            cmp(
                errs,
                rel,
                "target",
                got,
                e["target"].as_str().map(str::to_string),
            );
        }
        _ => {}
    }
    if want_type != "symlink" {
        let want: BTreeMap<String, String> = e["xattrs"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        match user_xattrs(&p) {
            Ok(got) if got == want => {}
            Ok(got) => errs.push(format!("{rel}: user xattrs {got:?}, want {want:?}")),
            Err(err) => errs.push(format!("{rel}: xattrs: {err}")),
        }
    }
}

/// The `user.*` xattrs of `p` (not following symlinks), values lossily as UTF-8.
pub fn user_xattrs(p: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let mut names = vec![0u8; 64 * 1024];
    let n = rustix::fs::llistxattr(p, &mut names)?;
    names.truncate(n);
    let mut out = BTreeMap::new();
    for name in names.split(|&b| b == 0).filter(|n| n.starts_with(b"user.")) {
        let name = String::from_utf8_lossy(name).into_owned();
        let mut val = vec![0u8; 64 * 1024];
        let n = rustix::fs::lgetxattr(p, name.as_str(), &mut val)?;
        out.insert(name, String::from_utf8_lossy(&val[..n]).into_owned());
    }
    Ok(out)
}

fn cmp(errs: &mut Vec<String>, rel: &str, what: &str, got: String, want: Option<String>) {
    if let Some(want) = want {
        if got != want {
            errs.push(format!("{rel}: {what} {got}, want {want}"));
        }
    }
}

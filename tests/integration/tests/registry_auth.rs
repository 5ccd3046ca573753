//! `berth push` and `berth pull` against a registry that wants credentials (Debian's
//! docker-registry with an htpasswd file, HTTP basic authentication): refused without them or
//! with a wrong password (permission denied, naming the 401), accepted with `-u USER:PASS`,
//! with `-u USER` and the password on stdin, and with a docker config file (`DOCKER_CONFIG`).
//! Pulls run on a second berthd, so every blob really crosses the authenticated registry.

use std::process::{Command, Output};

use base64::Engine as _;
use berth_integration_tests::cli::{berth_with, Input};
use berth_integration_tests::registry::{Registry, TestImages};
use berth_integration_tests::{ok, setup, Berthd};

const USER: &str = "alice";
const PASSWORD: &str = "s3cr:et";

/// `berth ARGS` with `env` added and `stdin` as its input.
fn berth(b: &Berthd, ns: &str, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    berth_with(&b.address(), ns, args, env, Input::Bytes(stdin.as_bytes()))
}

fn refused(out: Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what} must fail: {stderr}");
    assert!(
        stderr.contains("permission denied") && stderr.contains("401"),
        "{what}: want a permission denied naming the 401: {stderr}"
    );
    stderr
}

fn json(out: Output, what: &str) -> serde_json::Value {
    let text = ok(out, what);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not json ({e}): {text}"))
}

#[test]
fn push_and_pull_with_basic_authentication() {
    let Some(s) = setup(
        "push_and_pull_with_basic_authentication",
        &[
            "docker-registry",
            "skopeo",
            "ctr",
            "runc",
            "containerd-shim-runc-v2",
        ],
    ) else {
        return;
    };
    let reg = Registry::start_with_basic_auth(USER, PASSWORD).expect("docker-registry installed");
    let ns = "berth-auth";
    let name = reg.reference("auth/busybox:1");
    let pusher = s.berthd_with(ns, "busybox", true);
    let local = TestImages::import_name("busybox");
    let listed = ok(pusher.ctr(ns, &["images", "ls", "-q"]), "ctr images ls");
    assert!(listed.contains(&local), "{listed}");

    // Push: refused without credentials and with a wrong password; accepted with the right ones.
    refused(
        berth(&pusher, ns, &["push", &name, &local], &[], ""),
        "push without credentials",
    );
    let wrong = format!("{USER}:wrong");
    refused(
        berth(&pusher, ns, &["push", "-u", &wrong, &name, &local], &[], ""),
        "push with a wrong password",
    );
    let creds = format!("{USER}:{PASSWORD}");
    let pushed = json(
        berth(
            &pusher,
            ns,
            &["push", "--format", "json", "-u", &creds, &name, &local],
            &[],
            "",
        ),
        "push with credentials",
    );
    let digest = pushed["digest"].as_str().unwrap().to_string();
    assert_eq!(
        pushed["sent"].as_u64(),
        Some(3),
        "manifest, config, layer: {pushed}"
    );
    // skopeo, an independent client, sees it with the same credentials.
    let inspect = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--creds", &creds])
        .arg(format!("docker://{name}"))
        .output()
        .expect("run skopeo");
    let inspect: serde_json::Value = serde_json::from_slice(&inspect.stdout)
        .unwrap_or_else(|e| panic!("skopeo inspect ({e}): {inspect:?}"));
    assert_eq!(inspect["Digest"].as_str(), Some(digest.as_str()));

    // Pull on a second daemon (nothing local): refused, then each way of giving credentials.
    let puller = Berthd::start();
    refused(
        berth(&puller, "p1", &["pull", "--no-unpack", &name], &[], ""),
        "pull without credentials",
    );
    let pulled = json(
        berth(
            &puller,
            "p1",
            &["pull", "--format", "json", "-u", USER, &name],
            &[],
            &format!("{PASSWORD}\n"),
        ),
        "pull with the password on stdin",
    );
    assert_eq!(pulled["digest"].as_str(), Some(digest.as_str()));
    assert_eq!(pulled["downloaded"].as_u64(), Some(3), "{pulled}");
    let out = berth(
        &puller,
        "p1",
        &["run", "--rm", &name, "echo", "hi"],
        &[],
        "",
    );
    assert_eq!(ok(out, "run the pulled image"), "hi\n");

    // A docker config file, as `docker login` writes it, on a third daemon.
    let config_dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(&creds);
    std::fs::write(
        config_dir.path().join("config.json"),
        format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let third = Berthd::start();
    let pulled = json(
        berth(
            &third,
            "p2",
            &["pull", "--format", "json", "--no-unpack", &name],
            &[("DOCKER_CONFIG", config_dir.path().to_str().unwrap())],
            "",
        ),
        "pull with DOCKER_CONFIG",
    );
    assert_eq!(pulled["digest"].as_str(), Some(digest.as_str()));
    assert_eq!(pulled["downloaded"].as_u64(), Some(3), "{pulled}");
}

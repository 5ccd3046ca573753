//! Registry mirrors from containerd-style `hosts.toml` files (`berth pull --hosts-dir`), with
//! real registries on 127.0.0.1: a host that does not exist is pulled through its mirror; a
//! mirror that lacks the image or does not answer passes the turn to the next endpoint and
//! finally to the upstream; a push goes to the upstream, never to a pull-only mirror.

use std::path::Path;
use std::process::Output;

use berth_integration_tests::cli::{berth_with, Input};
use berth_integration_tests::{ok, setup, Berthd};

/// `berth ARGS` with `BERTH_HOSTS_DIR=hosts_dir`.
fn berth(b: &Berthd, ns: &str, hosts_dir: &Path, args: &[&str]) -> Output {
    let hosts_dir = hosts_dir.to_str().expect("utf-8 hosts dir");
    berth_with(
        &b.address(),
        ns,
        args,
        &[("BERTH_HOSTS_DIR", hosts_dir)],
        Input::Null,
    )
}

fn hosts_toml(dir: &Path, host: &str, mirrors: &[String]) {
    let mut text = String::new();
    for m in mirrors {
        text.push_str(&format!(
            "[host.\"http://{m}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ));
    }
    std::fs::create_dir_all(dir.join(host)).unwrap();
    std::fs::write(dir.join(host).join("hosts.toml"), text).unwrap();
}

fn json(out: Output, what: &str) -> serde_json::Value {
    let text = ok(out, what);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not json ({e}): {text}"))
}

/// A port on 127.0.0.1 where nothing listens.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn pulls_go_through_mirrors_and_fall_back_to_the_upstream() {
    let Some(s) = setup(
        "pulls_go_through_mirrors_and_fall_back_to_the_upstream",
        &[
            "docker-registry",
            "skopeo",
            "runc",
            "containerd-shim-runc-v2",
        ],
    ) else {
        return;
    };
    let (mirror, upstream, empty) = (s.registry(), s.registry(), s.registry());
    let images = s.images;
    mirror.push_oci_layout(&images.layout("busybox"), "busybox:latest");
    upstream.push_oci_layout(&images.layout("layers"), "layers:latest");
    let busybox = mirror.manifest_digest("busybox", "latest").unwrap();
    let layers = upstream.manifest_digest("layers", "latest").unwrap();
    let hosts = tempfile::tempdir().unwrap();
    let b = Berthd::start();

    // A host that does not exist, reached only through its mirror.
    hosts_toml(hosts.path(), "upstream.invalid", &[mirror.host()]);
    let name = "upstream.invalid/busybox:latest";
    let pulled = json(
        berth(&b, "m1", hosts.path(), &["pull", "--format", "json", name]),
        "pull through the mirror",
    );
    assert_eq!(pulled["name"].as_str(), Some(name));
    assert_eq!(pulled["digest"].as_str(), Some(busybox.as_str()));
    let out = berth(&b, "m1", hosts.path(), &["run", "--rm", name, "echo", "hi"]);
    assert_eq!(ok(out, "run the mirrored image"), "hi\n");
    // Without the hosts file the same pull cannot work.
    let nowhere = tempfile::tempdir().unwrap();
    let out = berth(&b, "m2", nowhere.path(), &["pull", name]);
    assert!(
        !out.status.success(),
        "pulled from a host that does not exist"
    );

    // Mirrors that lack the image or do not answer: the upstream serves it.
    hosts_toml(
        hosts.path(),
        &upstream.host(),
        &[empty.host(), format!("127.0.0.1:{}", dead_port())],
    );
    let name = upstream.reference("layers:latest");
    let pulled = json(
        berth(
            &b,
            "m3",
            hosts.path(),
            &["pull", "--format", "json", "--no-unpack", &name],
        ),
        "pull past two failing mirrors",
    );
    assert_eq!(pulled["digest"].as_str(), Some(layers.as_str()));
    assert_eq!(pulled["downloaded"].as_u64(), Some(5), "{pulled}");

    // A push goes to the upstream, not to the pull-only mirror.
    let pushed_name = upstream.reference("pushed/layers:1");
    ok(
        berth(&b, "m3", hosts.path(), &["tag", &name, &pushed_name]),
        "berth tag",
    );
    ok(
        berth(&b, "m3", hosts.path(), &["push", &pushed_name]),
        "berth push",
    );
    assert_eq!(
        upstream.manifest_digest("pushed/layers", "1").as_deref(),
        Some(layers.as_str())
    );
    assert_eq!(empty.manifest_digest("pushed/layers", "1"), None);
}

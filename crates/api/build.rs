//! Generates tonic *server* stubs for containerd's v1 services from the .proto files that the
//! `containerd-client` crate ships in its package. Message types are not generated again: every
//! message is mapped (`extern_path`) onto containerd-client's types, so client and server share
//! one set of Rust types. The .proto files are read from wherever cargo unpacked
//! containerd-client; none is copied into this repository.

use std::path::{Path, PathBuf};
use std::process::Command;

const SERVICES: &[&str] = &[
    "containerd/api/services/containers/v1/containers.proto",
    "containerd/api/services/content/v1/content.proto",
    "containerd/api/services/diff/v1/diff.proto",
    "containerd/api/services/events/v1/events.proto",
    "containerd/api/services/images/v1/images.proto",
    "containerd/api/services/introspection/v1/introspection.proto",
    "containerd/api/services/leases/v1/leases.proto",
    "containerd/api/services/namespaces/v1/namespace.proto",
    "containerd/api/services/snapshots/v1/snapshots.proto",
    "containerd/api/services/tasks/v1/tasks.proto",
    "containerd/api/services/transfer/v1/transfer.proto",
    "containerd/api/services/version/v1/version.proto",
];

/// Proto packages whose messages live in containerd-client, and where.
const EXTERN: &[(&str, &str)] = &[
    (".google.rpc", "::containerd_client::google::rpc"),
    (
        ".containerd.types.transfer",
        "::containerd_client::types::transfer",
    ),
    (".containerd.v1.types", "::containerd_client::types::v1"),
    (".containerd.types", "::containerd_client::types"),
    (".containerd.events", "::containerd_client::events"),
    (
        ".containerd.services.snapshots.v1",
        "::containerd_client::services::v1::snapshots",
    ),
    (
        ".containerd.services.sandbox.v1",
        "::containerd_client::services::v1::sandbox",
    ),
    (
        ".containerd.services.containers.v1",
        "::containerd_client::services::v1",
    ),
    (
        ".containerd.services.content.v1",
        "::containerd_client::services::v1",
    ),
    (
        ".containerd.services.diff.v1",
        "::containerd_client::services::v1",
    ),
    (
        ".containerd.services.events.v1",
        "::containerd_client::services::v1",
    ),
    (
        ".containerd.services.images.v1",
        "::containerd_client::services::v1",
    ),
    (
        ".containerd.services.introspection.v1",
        "::containerd_client::services::v1",
    ),
    (
        ".containerd.services.leases.v1",
        "::containerd_client::services::v1",
    ),
    (
        ".containerd.services.namespaces.v1",
        "::containerd_client::services::v1",
    ),
    (
        ".containerd.services.tasks.v1",
        "::containerd_client::services::v1",
    ),
    (
        ".containerd.services.transfer.v1",
        "::containerd_client::services::v1",
    ),
    (
        ".containerd.services.version.v1",
        "::containerd_client::services::v1",
    ),
];

fn main() {
    let vendor = containerd_client_vendor_dir();
    let containerd = vendor.join("github.com/containerd/containerd");
    let protos: Vec<PathBuf> = SERVICES
        .iter()
        .map(|p| containerd.join(p.trim_start_matches("containerd/")))
        .collect();
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }

    let mut config = tonic_prost_build::Config::new();
    config.protoc_arg("--experimental_allow_proto3_optional");
    let mut builder = tonic_prost_build::configure()
        .build_client(false)
        .build_server(true);
    for (proto, rust) in EXTERN {
        builder = builder.extern_path(*proto, *rust);
    }
    builder
        .compile_with_config(config, &protos, &[vendor])
        .expect("generate containerd server stubs");
}

/// The `vendor/` folder inside the containerd-client package that cargo resolved for this build.
///
/// First the version pinned in the workspace's Cargo.lock is looked up in cargo's registry cache
/// (`$CARGO_HOME/registry/src/*/containerd-client-<version>`), which needs no network; failing
/// that, `cargo metadata` is asked (it may download the workspace's other dependencies).
fn containerd_client_vendor_dir() -> PathBuf {
    if let Some(dir) = from_lockfile_and_registry() {
        return dir;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(&manifest_dir)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("parse cargo metadata");
    let manifest = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "containerd-client")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("containerd-client in cargo metadata");
    let dir = Path::new(manifest)
        .parent()
        .expect("package dir")
        .join("vendor");
    assert!(dir.is_dir(), "no vendor dir at {}", dir.display());
    dir
}

fn from_lockfile_and_registry() -> Option<PathBuf> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").ok()?);
    let lock = manifest_dir
        .ancestors()
        .map(|d| d.join("Cargo.lock"))
        .find(|p| p.is_file())?;
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(lock).ok()?;
    let mut lines = text.lines();
    let version = loop {
        let line = lines.next()?;
        if line.trim() == "name = \"containerd-client\"" {
            let v = lines
                .next()?
                .trim()
                .strip_prefix("version = \"")?
                .strip_suffix('"')?;
            break v.to_string();
        }
    };
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let src = cargo_home.join("registry/src");
    std::fs::read_dir(src).ok()?.flatten().find_map(|index| {
        let dir = index
            .path()
            .join(format!("containerd-client-{version}/vendor"));
        dir.is_dir().then_some(dir)
    })
}

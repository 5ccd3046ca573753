//! The runc options' `ShimCgroup` under berthd (issue #14, item 6).
//!
//! containerd's runc shim, in its `start`, reads the runtime options from stdin and, when
//! `ShimCgroup` is set, loads that (existing) cgroup and adds the shim process to it, failing
//! the start if it cannot. The same container is run here with Debian's Go runc shim (which
//! shows containerd's behaviour) and with berth's shim, each under berthd, and the shim's
//! `/proc/<pid>/cgroup` must name the cgroup. This host is cgroup v1 (hybrid): the cgroup is
//! made in every v1 hierarchy first, as an administrator would.

use std::collections::HashMap;

use berth_client::api::services::v1 as api;
use berth_integration_tests::gate::have_tools;
use berth_integration_tests::registry::TestImages;
use berth_integration_tests::tasks::{shim_pids, TaskCleanup};
use berth_integration_tests::{enabled, fails, ok, Berthd};
use containerd_shim_protos::protobuf::Message;

const IMAGE: &str = "docker.io/library/busybox:latest";
const NS: &str = "shim-cgroup";

fn request<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("containerd-namespace", NS.parse().unwrap());
    req
}

/// The v1 hierarchies under /sys/fs/cgroup (the `unified` v2 mount of a hybrid host left out).
fn v1_hierarchies() -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists() && !p.ends_with("unified"))
        .collect()
}

/// Removes the test's cgroup from every hierarchy when dropped.
struct CgroupDirs(Vec<std::path::PathBuf>);

impl Drop for CgroupDirs {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The shim serving task `id` of the daemon at `b`.
fn shim_of(b: &Berthd, id: &str) -> Option<u32> {
    shim_pids(&b.address()).into_iter().find(|pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&c| c == 0).collect();
        args.windows(2)
            .any(|w| w[0] == b"-id" && w[1] == id.as_bytes())
    })
}

type Containers = api::containers_client::ContainersClient<tonic::transport::Channel>;

/// berthd with busybox imported and a container `base` made by ctr, or None (with the reason
/// printed) when the test cannot run here.
async fn setup(test: &str) -> Option<(Berthd, TaskCleanup, Containers, api::Container)> {
    if !enabled(test) {
        return None;
    }
    if !have_tools(test, &["containerd-shim-runc-v2", "runc"]) {
        return None;
    }
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        // Not a missing tool: the test's cgroup paths are v1 ones; require mode does not fail.
        berth_integration_tests::skip(
            test,
            "written for a cgroup v1 (hybrid) host; this one is v2 only",
        );
        return None;
    }
    let b = Berthd::start();
    let cleanup = TaskCleanup::new(b.address(), NS);
    let archive = TestImages::get().archive("busybox");
    ok(
        b.ctr(NS, &["images", "import", archive.to_str().unwrap()]),
        "ctr images import",
    );
    // A container as ctr makes it (spec, snapshot); its record is copied with the runc options
    // a client sets.
    ok(
        b.ctr(NS, &["containers", "create", IMAGE, "base", "sleep", "60"]),
        "ctr containers create",
    );
    let mut containers = api::containers_client::ContainersClient::new(b.channel().await);
    let base = containers
        .get(request(api::GetContainerRequest { id: "base".into() }))
        .await
        .unwrap()
        .into_inner()
        .container
        .unwrap();
    Some((b, cleanup, containers, base))
}

/// Container `id`: `base` with `runtime` and runc options naming `shim_cgroup`.
async fn create(
    containers: &mut Containers,
    base: &api::Container,
    id: &str,
    runtime: &str,
    shim_cgroup: &str,
) {
    let options = containerd_shim_protos::shim::oci::Options {
        shim_cgroup: shim_cgroup.into(),
        ..Default::default()
    };
    let mut c = base.clone();
    c.id = id.into();
    c.labels = HashMap::new();
    c.runtime = Some(api::container::Runtime {
        name: runtime.into(),
        options: Some(prost_types::Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: options.write_to_bytes().unwrap(),
        }),
    });
    containers
        .create(request(api::CreateContainerRequest { container: Some(c) }))
        .await
        .unwrap();
}

const RUNTIMES: [(&str, &str); 2] = [
    ("runc", "io.containerd.runc.v2"),
    ("berth", "io.containerd.berth.v2"),
];

/// Both shims under berthd: with the cgroup made, the shim's `/proc/<pid>/cgroup` names it in
/// every v1 hierarchy.
#[tokio::test]
async fn shim_joins_the_cgroup_its_runc_options_name() {
    let Some((b, _cleanup, mut containers, base)) =
        setup("shim_joins_the_cgroup_its_runc_options_name").await
    else {
        return;
    };
    for (shim, runtime) in RUNTIMES {
        let id = &format!("cg-{shim}");
        let name = format!("berth-it-shim-cg-{}-{id}", std::process::id());
        let dirs = CgroupDirs(v1_hierarchies().iter().map(|h| h.join(&name)).collect());
        for d in &dirs.0 {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            // A new cpuset cgroup has no cpus or mems until given its parent's.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = std::fs::read_to_string(d.parent().unwrap().join(f)) {
                    std::fs::write(d.join(f), v.trim()).unwrap();
                }
            }
        }
        create(&mut containers, &base, id, runtime, &format!("/{name}")).await;
        ok(b.ctr(NS, &["task", "start", "-d", id]), "ctr task start -d");
        let pid = shim_of(&b, id).unwrap_or_else(|| panic!("{runtime}: no shim for {id}"));
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        // One line per hierarchy, `N:controllers:/path`; every v1 one must end in our cgroup
        // (its path may be under this host's own cgroup when the tests run in a container).
        let v1: Vec<&str> = cgroups.lines().filter(|l| !l.starts_with("0::")).collect();
        assert!(!v1.is_empty(), "{cgroups}");
        for line in &v1 {
            assert!(
                line.ends_with(&format!("/{name}")),
                "{runtime}: shim {pid} not in {name}:\n{cgroups}"
            );
        }
        ok(
            b.ctr(NS, &["task", "kill", "-s", "SIGKILL", id]),
            "ctr task kill",
        );
        for _ in 0..50 {
            if b.ctr(NS, &["task", "delete", id]).status.success() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // The shim leaves after the delete; the cgroup can go once it is empty.
        for _ in 0..50 {
            if shim_of(&b, id).is_none() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        drop(dirs);
    }
}

/// containerd's runc shim loads the cgroup before adding itself and fails `start` when no
/// hierarchy has it ("failed to load cgroup ...: cgroup deleted"); the task is not created.
#[tokio::test]
async fn shim_start_fails_when_its_cgroup_is_missing() {
    let Some((b, _cleanup, mut containers, base)) =
        setup("shim_start_fails_when_its_cgroup_is_missing").await
    else {
        return;
    };
    for (shim, runtime) in RUNTIMES {
        let id = &format!("missing-{shim}");
        let missing = format!("/berth-it-no-such-cgroup-{}", std::process::id());
        create(&mut containers, &base, id, runtime, &missing).await;
        let err = fails(b.ctr(NS, &["task", "start", "-d", id]), "ctr task start -d");
        assert!(err.contains("cgroup"), "{runtime}: {err}");
        assert!(
            shim_of(&b, id).is_none(),
            "{runtime}: a shim stayed for {id}"
        );
    }
}

//! `containerd-shim-berth-v2` driven directly over ttrpc, as a daemon's runtime manager would:
//! `start` in a hand-made bundle (busybox-static rootfs, bind-mounted by the shim), the task API
//! calls that ctr cannot make (Update, CloseIO, ResizePty, Connect, Shutdown) and the events the
//! shim forwards to `$TTRPC_ADDRESS`, served here by a ttrpc Events server of the test's own;
//! then `delete` after a shim killed with SIGKILL.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_integration_tests::gate::have_tools;
use berth_integration_tests::shim::alive;
use berth_integration_tests::tasks::running;
use berth_integration_tests::{enabled, poll, wait_until, workspace_bin};
use containerd_shim_protos::api::{
    CloseIORequest, ConnectRequest, CreateTaskRequest, DeleteRequest, DeleteResponse, Empty,
    ExecProcessRequest, KillRequest, ResizePtyRequest, ShutdownRequest, StartRequest, StateRequest,
    UpdateTaskRequest, WaitRequest,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::types::mount::Mount;
use containerd_shim_protos::types::task::Status;
use containerd_shim_protos::{Events, TaskClient};

const NS: &str = "berth-shim-it";

/// Records the envelopes the shim forwards: (topic, type URL, message bytes).
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, String, Vec<u8>)>>);

impl Events for Recorder {
    fn forward(&self, _: &ttrpc::TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        let e = req.envelope.unwrap_or_default();
        assert_eq!(e.namespace, NS);
        let ev = e.event.unwrap_or_default();
        self.0
            .lock()
            .unwrap()
            .push((e.topic, ev.type_url, ev.value));
        Ok(Empty::new())
    }
}

/// A bundle whose rootfs is a directory with busybox-static, bind-mounted by the shim.
fn make_bundle(root: &Path, id: &str) -> (PathBuf, PathBuf) {
    let image = root.join(format!("{id}-image"));
    fs::create_dir_all(image.join("bin")).unwrap();
    fs::copy("/bin/busybox", image.join("bin/busybox")).unwrap();
    for tool in ["sh", "cat", "sleep", "stty", "echo"] {
        std::os::unix::fs::symlink("busybox", image.join("bin").join(tool)).unwrap();
    }
    for d in ["proc", "dev", "sys", "tmp"] {
        fs::create_dir_all(image.join(d)).unwrap();
    }
    let bundle = root.join(id);
    fs::create_dir_all(bundle.join("rootfs")).unwrap();
    let st = Command::new("runc")
        .args(["spec"])
        .current_dir(&bundle)
        .status()
        .unwrap();
    assert!(st.success(), "runc spec");
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["sleep", "1000"]);
    spec["root"]["readonly"] = false.into();
    spec["linux"]["cgroupsPath"] = format!("/{NS}/{id}").into();
    fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    (bundle, image)
}

struct Shim {
    pid: u32,
    address: String,
}

fn start_shim(bundle: &Path, id: &str, events: &Path) -> Shim {
    let out = Command::new(workspace_bin("containerd-shim-berth-v2"))
        .args([
            "-namespace",
            NS,
            "-address",
            "/run/berth-it/none.sock",
            "-publish-binary",
            "/bin/false",
        ])
        .args(["-id", id, "start"])
        .current_dir(bundle)
        .env("TTRPC_ADDRESS", events)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let address = String::from_utf8(out.stdout).unwrap();
    assert!(address.starts_with("unix:///run/berth/s/"), "{address:?}");
    assert_eq!(fs::read_to_string(bundle.join("address")).unwrap(), address);
    let pid = fs::read_to_string(bundle.join("shim.pid"))
        .unwrap()
        .parse()
        .unwrap();
    Shim { pid, address }
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_duration(Duration::from_secs(20))
}

fn create_req(id: &str, bundle: &Path, image: &Path, stdout: &str) -> CreateTaskRequest {
    CreateTaskRequest {
        id: id.into(),
        bundle: bundle.display().to_string(),
        rootfs: vec![Mount {
            type_: "bind".into(),
            source: image.display().to_string(),
            options: vec!["rbind".into(), "rw".into()],
            ..Default::default()
        }],
        stdout: stdout.into(),
        stderr: stdout.into(),
        ..Default::default()
    }
}

fn process_json(args: &[&str], terminal: bool) -> MessageField<Any> {
    let spec = serde_json::json!({
        "args": args, "cwd": "/", "terminal": terminal,
        "env": ["PATH=/bin", "TERM=xterm"], "user": {"uid": 0, "gid": 0},
    });
    MessageField::some(Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
        value: serde_json::to_vec(&spec).unwrap(),
        ..Default::default()
    })
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

#[test]
fn task_api_over_ttrpc() {
    if !enabled("task_api_over_ttrpc")
        || !have_tools("task_api_over_ttrpc", &["runc", "/bin/busybox"])
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let events_sock = dir.path().join("events.sock");
    let recorder = Arc::new(Recorder::default());
    let mut server = ttrpc::Server::new()
        .bind(&format!("unix://{}", events_sock.display()))
        .unwrap()
        .register_service(containerd_shim_protos::create_events(recorder.clone()));
    server.start().unwrap();

    let id = "direct1";
    let (bundle, image) = make_bundle(dir.path(), id);
    let shim = start_shim(&bundle, id, &events_sock);
    let task = TaskClient::new(ttrpc::Client::connect(&shim.address).unwrap());
    let log = dir.path().join("out.log");
    let uri = format!("file://{}", log.display());

    let pid = task
        .create(ctx(), &create_req(id, &bundle, &image, &uri))
        .unwrap()
        .pid;
    let state = task
        .state(
            ctx(),
            &StateRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        (state.pid, state.status.enum_value()),
        (pid, Ok(Status::CREATED))
    );
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mounts.contains(&bundle.join("rootfs").display().to_string()),
        "rootfs mounted"
    );
    let connect = task
        .connect(
            ctx(),
            &ConnectRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((connect.shim_pid, connect.task_pid), (shim.pid, pid));

    assert_eq!(
        task.start(
            ctx(),
            &StartRequest {
                id: id.into(),
                ..Default::default()
            }
        )
        .unwrap()
        .pid,
        pid
    );

    // Update: the OCI LinuxResources JSON reaches the cgroup.
    let resources = serde_json::json!({"memory": {"limit": 64 * 1024 * 1024}});
    let req = UpdateTaskRequest {
        id: id.into(),
        resources: MessageField::some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
            value: serde_json::to_vec(&resources).unwrap(),
            ..Default::default()
        }),
        ..Default::default()
    };
    task.update(ctx(), &req).unwrap();
    let limit = fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/{NS}/{id}/memory.limit_in_bytes"
    ))
    .or_else(|_| fs::read_to_string(format!("/sys/fs/cgroup/{NS}/{id}/memory.max")))
    .unwrap();
    assert_eq!(limit.trim(), (64 * 1024 * 1024).to_string());

    // An exec reading a FIFO: CloseIO ends its stdin once what was written is copied.
    let stdin = dir.path().join("e1.stdin");
    mkfifo(&stdin);
    let exec = ExecProcessRequest {
        id: id.into(),
        exec_id: "e1".into(),
        stdin: stdin.display().to_string(),
        stdout: uri.clone(),
        spec: process_json(&["cat"], false),
        ..Default::default()
    };
    task.exec(ctx(), &exec).unwrap();
    let err = task.exec(ctx(), &exec).unwrap_err();
    assert!(
        format!("{err:?}").contains("exec e1: already exists"),
        "{err:?}"
    );
    let e1 = task
        .start(
            ctx(),
            &StartRequest {
                id: id.into(),
                exec_id: "e1".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .pid;
    let mut w = fs::OpenOptions::new().write(true).open(&stdin).unwrap();
    w.write_all(b"through stdin\n").unwrap();
    let close = CloseIORequest {
        id: id.into(),
        exec_id: "e1".into(),
        stdin: true,
        ..Default::default()
    };
    task.close_io(ctx(), &close).unwrap();
    let wait = task
        .wait(
            ctx(),
            &WaitRequest {
                id: id.into(),
                exec_id: "e1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(wait.exit_status, 0);
    drop(w);
    let del = task
        .delete(
            ctx(),
            &DeleteRequest {
                id: id.into(),
                exec_id: "e1".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((del.pid, del.exit_status), (e1, 0));

    // An exec with a terminal, resized before it looks.
    let exec = ExecProcessRequest {
        id: id.into(),
        exec_id: "e2".into(),
        terminal: true,
        stdout: uri.clone(),
        spec: process_json(&["sh", "-c", "sleep 0.5; stty size; exit 3"], true),
        ..Default::default()
    };
    task.exec(ctx(), &exec).unwrap();
    task.start(
        ctx(),
        &StartRequest {
            id: id.into(),
            exec_id: "e2".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let resize = ResizePtyRequest {
        id: id.into(),
        exec_id: "e2".into(),
        width: 91,
        height: 37,
        ..Default::default()
    };
    task.resize_pty(ctx(), &resize).unwrap();
    let wait = task
        .wait(
            ctx(),
            &WaitRequest {
                id: id.into(),
                exec_id: "e2".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(wait.exit_status, 3);
    task.delete(
        ctx(),
        &DeleteRequest {
            id: id.into(),
            exec_id: "e2".into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        poll(Duration::from_secs(5), || {
            let text = fs::read_to_string(&log).unwrap_or_default();
            text.contains("through stdin\n") && text.contains("37 91")
        }),
        "the log lacks the stdin line and the terminal size: {:?}",
        fs::read_to_string(&log)
    );

    // Shutdown while the task exists is a no-op.
    task.shutdown(
        ctx(),
        &ShutdownRequest {
            id: id.into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(alive(shim.pid));
    let err = task
        .delete(
            ctx(),
            &DeleteRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("FAILED_PRECONDITION"),
        "running: {err:?}"
    );

    task.kill(
        ctx(),
        &KillRequest {
            id: id.into(),
            signal: 9,
            ..Default::default()
        },
    )
    .unwrap();
    let wait = task
        .wait(
            ctx(),
            &WaitRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(wait.exit_status, 137);
    let err = task
        .kill(
            ctx(),
            &KillRequest {
                id: id.into(),
                signal: 9,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(format!("{err:?}").contains("NOT_FOUND"), "{err:?}");
    let del = task
        .delete(
            ctx(),
            &DeleteRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((del.pid, del.exit_status), (pid, 137));
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&bundle.join("rootfs").display().to_string()),
        "rootfs unmounted"
    );
    let _ = task.shutdown(
        ctx(),
        &ShutdownRequest {
            id: id.into(),
            ..Default::default()
        },
    );
    wait_until(
        Duration::from_secs(5),
        "the shim to exit after shutdown",
        || !running(shim.pid),
    );
    assert!(!Path::new(shim.address.trim_start_matches("unix://")).exists());

    let events = recorder.0.lock().unwrap().clone();
    let topics: Vec<&str> = events.iter().map(|(t, _, _)| t.as_str()).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &topics {
        *counts.entry(t).or_default() += 1;
    }
    assert_eq!(counts.get("/tasks/create"), Some(&1), "{topics:?}");
    assert_eq!(counts.get("/tasks/start"), Some(&1), "{topics:?}");
    assert_eq!(counts.get("/tasks/exec-added"), Some(&2), "{topics:?}");
    assert_eq!(counts.get("/tasks/exec-started"), Some(&2), "{topics:?}");
    assert_eq!(
        counts.get("/tasks/exit"),
        Some(&3),
        "one per process: {topics:?}"
    );
    assert_eq!(counts.get("/tasks/delete"), Some(&1), "{topics:?}");
    let (_, url, value) = events.iter().find(|(t, _, _)| t == "/tasks/exit").unwrap();
    assert_eq!(url, "containerd.events.TaskExit");
    let exit = containerd_shim_protos::events::task::TaskExit::parse_from_bytes(value).unwrap();
    assert_eq!(
        (
            exit.container_id.as_str(),
            exit.id.as_str(),
            exit.exit_status
        ),
        (id, "e1", 0)
    );
    server.shutdown();
    remove_parent_cgroups();
}

#[test]
fn delete_cleans_up_after_a_killed_shim() {
    if !enabled("delete_cleans_up_after_a_killed_shim")
        || !have_tools(
            "delete_cleans_up_after_a_killed_shim",
            &["runc", "/bin/busybox"],
        )
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let id = "direct2";
    let (bundle, image) = make_bundle(dir.path(), id);
    let shim = start_shim(&bundle, id, &dir.path().join("no-events.sock"));
    let task = TaskClient::new(ttrpc::Client::connect(&shim.address).unwrap());
    let pid = task
        .create(ctx(), &create_req(id, &bundle, &image, ""))
        .unwrap()
        .pid;
    task.start(
        ctx(),
        &StartRequest {
            id: id.into(),
            ..Default::default()
        },
    )
    .unwrap();
    drop(task);
    Command::new("kill")
        .args(["-9", &shim.pid.to_string()])
        .status()
        .unwrap();
    wait_until(Duration::from_secs(5), "the killed shim to be gone", || {
        !running(shim.pid)
    });
    assert!(alive(pid), "the container outlives its shim");

    let out = Command::new(workspace_bin("containerd-shim-berth-v2"))
        .args([
            "-namespace",
            NS,
            "-address",
            "/run/berth-it/none.sock",
            "-id",
            id,
        ])
        .args(["-bundle", bundle.to_str().unwrap(), "delete"])
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resp = DeleteResponse::parse_from_bytes(&out.stdout).unwrap();
    assert_eq!((resp.pid, resp.exit_status), (pid, 137));
    assert!(resp.exited_at.is_some());
    wait_until(Duration::from_secs(5), "the container to be killed", || {
        !running(pid)
    });
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&bundle.join("rootfs").display().to_string()),
        "rootfs unmounted"
    );
    assert!(
        !Path::new(shim.address.trim_start_matches("unix://")).exists(),
        "socket removed"
    );
    let state = Command::new("runc")
        .args(["--root", &format!("/run/berth/runc/{NS}"), "state", id])
        .output()
        .unwrap();
    assert!(!state.status.success(), "runc forgot the container");
    remove_parent_cgroups();
}

/// runc leaves the parent cgroup (`/berth-shim-it`) of the tests' containers: remove it.
fn remove_parent_cgroups() {
    for hierarchy in fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = fs::remove_dir(hierarchy.path().join(NS));
    }
    let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(NS));
}

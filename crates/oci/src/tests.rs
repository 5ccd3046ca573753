//! The generated spec as a whole, read back as JSON the way runc reads it.

use std::path::Path;

use serde_json::{json, Value};

use crate::*;

fn busybox() -> ImageDefaults {
    ImageDefaults {
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
        cmd: vec!["sh".into()],
        ..ImageDefaults::default()
    }
}

fn users() -> UserDb {
    UserDb::parse(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
        "root:x:0:\nnogroup:x:65534:\n",
    )
}

fn opts() -> RunOptions {
    RunOptions {
        id: "c1".into(),
        namespace: "default".into(),
        hostname: "c1".into(),
        ..RunOptions::default()
    }
}

fn spec_json(image: &ImageDefaults, opts: &RunOptions) -> Value {
    let spec = generate(image, &users(), opts).unwrap();
    let bytes = spec_to_json(&spec);
    // It reads back, as the shim and runc will read it.
    assert_eq!(spec_from_json(&bytes).unwrap(), spec);
    serde_json::from_slice(&bytes).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn defaults_are_safe() {
    let v = spec_json(&busybox(), &opts());
    assert_eq!(v["ociVersion"], "1.0.2-dev");
    assert_eq!(v["root"], json!({"path": "rootfs", "readonly": false}));
    assert_eq!(v["hostname"], "c1");
    let p = &v["process"];
    assert_eq!(p["args"], json!(["sh"]));
    assert_eq!(p["cwd"], "/");
    assert_eq!(p["terminal"], false);
    assert_eq!(p["noNewPrivileges"], true);
    assert_eq!(
        p["user"],
        json!({"uid": 0, "gid": 0, "additionalGids": [0]})
    );
    assert_eq!(
        p["rlimits"],
        json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}])
    );
    let env = strings(&p["env"]);
    assert_eq!(
        env,
        [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=c1",
            "HOME=/root"
        ]
    );
    let mut bounding = strings(&p["capabilities"]["bounding"]);
    bounding.sort();
    assert_eq!(bounding.len(), 14);
    assert!(bounding.contains(&"CAP_NET_BIND_SERVICE".to_string()));
    assert!(!bounding.contains(&"CAP_SYS_ADMIN".to_string()));
    assert!(p["capabilities"].get("inheritable").is_none());
    assert!(p.get("oomScoreAdj").is_none());

    let l = &v["linux"];
    assert_eq!(l["cgroupsPath"], "/default/c1");
    let ns: Vec<&str> = l["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(ns, ["pid", "ipc", "uts", "mount", "network"]);
    assert!(strings(&l["maskedPaths"]).contains(&"/proc/kcore".to_string()));
    assert!(strings(&l["readonlyPaths"]).contains(&"/proc/sysrq-trigger".to_string()));
    assert_eq!(
        l["resources"],
        json!({"devices": [{"allow": false, "access": "rwm"}]})
    );
    assert_eq!(l["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    let dests: Vec<&str> = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    for want in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ] {
        assert!(dests.contains(&want), "{want} in {dests:?}");
    }
}

#[test]
fn options_shape_the_spec() {
    let mut o = opts();
    o.args = vec!["id".into(), "-u".into()];
    o.env = vec!["A=1".into(), "PATH=/bin".into()];
    o.workdir = Some("/tmp".into());
    o.user = Some("nobody".into());
    o.tty = true;
    o.read_only = true;
    o.network = NetworkMode::Host;
    o.cgroup_ns = true;
    o.cap_add = vec!["NET_ADMIN".into()];
    o.cap_drop = vec!["CAP_CHOWN".into()];
    o.oom_score_adj = Some(restrict_oom_score_adj(0, 5));
    o.resources = Resources {
        memory: Some(20 << 20),
        memory_swap: Some(20 << 20),
        cpus: Some(0.5),
        pids_limit: Some(64),
    };
    o.mounts = vec![
        "/srv/data:/data:ro".parse().unwrap(),
        "/srv/shm:/dev/shm".parse().unwrap(),
    ];
    o.etc_files = Some(EtcFiles::in_dir(Path::new(
        "/run/berth/containers/default/c1",
    )));
    let v = spec_json(&busybox(), &o);
    let p = &v["process"];
    assert_eq!(p["args"], json!(["id", "-u"]));
    assert_eq!(p["cwd"], "/tmp");
    assert_eq!(p["terminal"], true);
    assert_eq!(
        p["user"],
        json!({"uid": 65534, "gid": 65534, "additionalGids": [65534]})
    );
    assert_eq!(p["oomScoreAdj"], 5);
    let env = strings(&p["env"]);
    assert_eq!(
        env,
        [
            "PATH=/bin",
            "HOSTNAME=c1",
            "A=1",
            "TERM=xterm",
            "HOME=/home"
        ]
    );
    let caps = strings(&p["capabilities"]["effective"]);
    assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
    assert!(!caps.contains(&"CAP_CHOWN".to_string()));
    assert_eq!(v["root"]["readonly"], true);
    let l = &v["linux"];
    let ns: Vec<&str> = l["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(ns, ["pid", "ipc", "uts", "mount", "cgroup"]);
    assert_eq!(
        l["resources"]["memory"],
        json!({"limit": 20971520, "swap": 20971520})
    );
    assert_eq!(
        l["resources"]["cpu"],
        json!({"quota": 50000, "period": 100000})
    );
    assert_eq!(l["resources"]["pids"], json!({"limit": 64}));
    let mounts = v["mounts"].as_array().unwrap();
    let find = |d: &str| -> Vec<&Value> {
        mounts
            .iter()
            .filter(|m| m["destination"] == d)
            .collect::<Vec<_>>()
    };
    let data = find("/data");
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["source"], "/srv/data");
    assert_eq!(data[0]["options"], json!(["rbind", "rprivate", "ro"]));
    // The user's /dev/shm replaces the default one.
    let shm = find("/dev/shm");
    assert_eq!(shm.len(), 1);
    assert_eq!(shm[0]["type"], "bind");
    let resolv = find("/etc/resolv.conf");
    assert_eq!(
        resolv[0]["source"],
        "/run/berth/containers/default/c1/resolv.conf"
    );
    assert_eq!(find("/etc/hostname").len(), 1);
    assert_eq!(find("/etc/hosts").len(), 1);
}

#[test]
fn entrypoint_and_cmd_combine_like_docker() {
    let image = ImageDefaults {
        entrypoint: vec!["/entry".into()],
        cmd: vec!["--serve".into()],
        working_dir: "/app".into(),
        user: "nobody".into(),
        ..ImageDefaults::default()
    };
    let v = spec_json(&image, &opts());
    assert_eq!(v["process"]["args"], json!(["/entry", "--serve"]));
    assert_eq!(v["process"]["cwd"], "/app");
    assert_eq!(v["process"]["user"]["uid"], 65534);
    let mut o = opts();
    o.args = vec!["--debug".into()];
    let v = spec_json(&image, &o);
    assert_eq!(v["process"]["args"], json!(["/entry", "--debug"]));
    o.entrypoint = Some(vec!["sh".into()]);
    o.args = Vec::new();
    let v = spec_json(&image, &o);
    assert_eq!(
        v["process"]["args"],
        json!(["sh"]),
        "a new entrypoint drops the cmd"
    );
}

#[test]
fn bad_inputs_are_refused_with_their_name() {
    let e = generate(&ImageDefaults::default(), &users(), &opts()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "container c1: no command given and the image has none: invalid argument"
    );
    let mut o = opts();
    o.user = Some("ghost".into());
    let e = generate(&busybox(), &users(), &o).unwrap_err();
    assert!(e.is(berth_core::ErrorKind::NotFound), "{e}");
    let mut o = opts();
    o.workdir = Some("tmp".into());
    assert!(generate(&busybox(), &users(), &o).is_err());
    let mut o = opts();
    o.env = vec!["=x".into()];
    assert!(generate(&busybox(), &users(), &o).is_err());
}

#[test]
fn exec_processes_inherit_the_containers() {
    let spec = generate(&busybox(), &users(), &opts()).unwrap();
    let p = exec_process(
        &spec,
        vec!["sh".into(), "-c".into(), "exit 3".into()],
        true,
        &["X=1".to_string()],
        Some("/tmp"),
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&process_to_json(&p)).unwrap();
    assert_eq!(v["args"], json!(["sh", "-c", "exit 3"]));
    assert_eq!(v["terminal"], true);
    assert_eq!(v["cwd"], "/tmp");
    assert_eq!(v["noNewPrivileges"], true);
    let env = strings(&v["env"]);
    assert!(env.contains(&"X=1".to_string()));
    assert!(env.contains(&"TERM=xterm".to_string()));
    assert!(exec_process(&spec, Vec::new(), false, &[], None).is_err());
}

#[test]
fn merge_env_replaces_in_place() {
    let base = vec!["A=1".to_string(), "B=2".to_string()];
    let out = merge_env(&base, &["B=3".to_string(), "C=".to_string()]).unwrap();
    assert_eq!(out, ["A=1", "B=3", "C="]);
    assert!(merge_env(&base, &["NOEQ".to_string()]).is_err());
}

#[test]
fn oom_score_is_never_below_the_daemons() {
    assert_eq!(restrict_oom_score_adj(-500, 0), 0);
    assert_eq!(restrict_oom_score_adj(0, -999), 0);
    assert_eq!(restrict_oom_score_adj(100, 5), 100);
    let own = read_oom_score_adj(None).unwrap();
    assert!((-1000..=1000).contains(&own));
    assert_eq!(read_oom_score_adj(Some(std::process::id())).unwrap(), own);
}

//! berthd's Prometheus metrics (`[metrics] address`), scraped with `curl` from
//! `GET /v1/metrics` while real clients work: gRPC calls counted per method (exactly), tasks,
//! containers and shims of a running container and its cgroup usage, event subscribers, garbage collection runs and
//! bytes freed.

use std::process::{Command, Stdio};
use std::time::Duration;

use berth_integration_tests::cli::berth;
use berth_integration_tests::tasks::TaskCleanup;
use berth_integration_tests::{ok, poll, setup, wait_until, Berthd};

/// A port free on 127.0.0.1 just now (a small race with other programs binding it).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

/// The exposition text from `url`, scraped with curl.
fn scrape(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", url])
        .output()
        .expect("run curl");
    ok(out, &format!("curl {url}"))
}

/// The sum of the samples of `name` whose labels include every `label="value"` of `labels`
/// (0 when there are none).
fn value(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| v.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[test]
fn metrics_count_calls_containers_subscribers_and_gc() {
    let test = "metrics_count_calls_containers_subscribers_and_gc";
    let Some(s) = setup(test, &["containerd-shim-runc-v2", "runc", "ctr", "curl"]) else {
        return;
    };
    let ns = "berth-metrics";
    let port = free_port();
    let b = Berthd::start_with_config(&format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n"));
    let _cleanup = TaskCleanup::new(b.address(), ns);
    let url = format!("http://127.0.0.1:{port}/v1/metrics");
    let archive = s.images.archive("busybox");
    let archive = archive.to_str().expect("utf-8 test image path");
    ok(
        b.ctr(ns, &["images", "import", "--no-unpack", archive]),
        "ctr images import busybox",
    );

    // gRPC: exactly the calls made, by method and code.
    let version = "grpc_method=\"Version\"";
    let service = "grpc_service=\"containerd.services.version.v1.Version\"";
    let before = scrape(&url);
    let started0 = value(&before, "grpc_server_started_total", &[service, version]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    const CALLS: usize = 5;
    rt.block_on(async {
        for _ in 0..CALLS {
            berth_client::server_version(b.channel().await)
                .await
                .expect("Version call");
        }
    });
    let after = scrape(&url);
    let started = value(&after, "grpc_server_started_total", &[service, version]) - started0;
    assert_eq!(
        started, CALLS as f64,
        "grpc_server_started_total of Version moved by {started}, not {CALLS}:\n{after}"
    );
    let handled = value(
        &after,
        "grpc_server_handled_total",
        &[service, version, "grpc_code=\"OK\""],
    ) - value(
        &before,
        "grpc_server_handled_total",
        &[service, version, "grpc_code=\"OK\""],
    );
    assert_eq!(
        handled, CALLS as f64,
        "Version calls handled OK moved by {handled}, not {CALLS}:\n{after}"
    );
    assert!(
        value(
            &after,
            "grpc_server_handling_seconds_count",
            &[service, version]
        ) >= CALLS as f64,
        "Version calls not timed:\n{after}"
    );
    // The import went through the content service's streams.
    assert!(
        value(
            &after,
            "grpc_server_started_total",
            &["grpc_service=\"containerd.services.content.v1.Content\""]
        ) > 0.0,
        "the import's content calls are not counted:\n{after}"
    );

    // An error is counted with its code (a trailers-only response).
    let out = b.ctr(ns, &["containers", "info", "no-such-container"]);
    assert!(!out.status.success(), "ctr containers info of a missing id");
    let errors = scrape(&url);
    assert!(
        value(
            &errors,
            "grpc_server_handled_total",
            &[
                "grpc_service=\"containerd.services.containers.v1.Containers\"",
                "grpc_method=\"Get\"",
                "grpc_code=\"NotFound\""
            ]
        ) >= 1.0,
        "Containers/Get of a missing id not counted as NotFound:\n{errors}"
    );

    // A running container: one task, one container, a shim.
    let nsl = format!("namespace=\"{ns}\"");
    ok(
        berth(
            &b,
            ns,
            &["run", "-d", "--name", "m1", "busybox", "sleep", "1000"],
        ),
        "berth run -d m1",
    );
    let running = scrape(&url);
    assert_eq!(
        value(&running, "berth_tasks", &[&nsl]),
        1.0,
        "berth_tasks with m1 running:\n{running}"
    );
    assert_eq!(
        value(&running, "berth_containers", &[&nsl]),
        1.0,
        "berth_containers with m1:\n{running}"
    );
    assert!(
        value(&running, "berth_shims", &[]) >= 1.0,
        "berth_shims with m1 running:\n{running}"
    );
    // m1's cgroup, through its shim: a process (sleep), some memory.
    let m1 = "container_id=\"m1\"";
    assert!(
        value(&running, "container_pids_current", &[&nsl, m1]) >= 1.0,
        "container_pids_current of m1:\n{running}"
    );
    assert!(
        value(&running, "container_memory_usage_bytes", &[&nsl, m1]) > 0.0,
        "container_memory_usage_bytes of m1:\n{running}"
    );

    // An event subscriber while `ctr events` runs.
    let mut events = Command::new("ctr")
        .args(["--address"])
        .arg(b.address())
        .args(["events"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ctr events");
    let subscribed = poll(Duration::from_secs(10), || {
        value(&scrape(&url), "berth_event_subscribers", &[]) >= 1.0
    });
    let _ = events.kill();
    let _ = events.wait();
    assert!(
        subscribed,
        "berth_event_subscribers never reached 1 while ctr events ran"
    );

    ok(berth(&b, ns, &["rm", "-f", "m1"]), "berth rm -f m1");
    let removed = scrape(&url);
    assert_eq!(
        value(&removed, "berth_tasks", &[&nsl]),
        0.0,
        "berth_tasks after rm:\n{removed}"
    );
    assert_eq!(
        value(&removed, "berth_containers", &[&nsl]),
        0.0,
        "berth_containers after rm:\n{removed}"
    );

    // Garbage collection: removing the only image with --sync frees its blobs.
    let runs0 = value(&removed, "berth_gc_runs_total", &[]);
    let freed0 = value(&removed, "berth_gc_bytes_freed_total", &[]);
    let images = ok(b.ctr(ns, &["images", "ls", "-q"]), "ctr images ls -q");
    for name in images.lines() {
        ok(
            b.ctr(ns, &["images", "rm", "--sync", name]),
            &format!("ctr images rm --sync {name}"),
        );
    }
    let mut last = String::new();
    wait_until(Duration::from_secs(10), "gc counted in metrics", || {
        last = scrape(&url);
        value(&last, "berth_gc_bytes_freed_total", &[]) > freed0
    });
    assert!(
        value(&last, "berth_gc_runs_total", &[]) > runs0,
        "berth_gc_runs_total did not move:\n{last}"
    );
    println!(
        "{test}: {CALLS} Version calls counted; gc runs {runs0} -> {}, bytes freed {freed0} -> {}",
        value(&last, "berth_gc_runs_total", &[]),
        value(&last, "berth_gc_bytes_freed_total", &[])
    );
}

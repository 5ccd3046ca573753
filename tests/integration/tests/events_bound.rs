//! A stalled event subscriber does not make berthd grow: three `ctr events` whose output nobody
//! reads, 300 events of 1 MiB published, and berthd's resident memory stays within the
//! exchange's per-subscriber bound (16 MiB each) plus transport buffers; the stalled
//! subscribers are dropped (logged), and memory is given back once they are gone.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_integration_tests::{enabled, workspace_bin, Berthd};

const NS: &str = "berth-events-bound";
const EVENTS: usize = 300;
const EVENT_BYTES: usize = 1 << 20;

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024
}

fn varint(mut v: usize, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A protobuf `Any` holding `containerd.events.TaskOOM{container_id: "xxx…"}` of about `n`
/// bytes, a type `ctr events` decodes and prints (so a stalled reader really stalls it).
fn oom_event(n: usize) -> Vec<u8> {
    let mut oom = vec![0x0a];
    varint(n, &mut oom);
    oom.extend(std::iter::repeat_n(b'x', n));
    let type_url = b"containerd.events.TaskOOM";
    let mut any = vec![0x0a, type_url.len() as u8];
    any.extend_from_slice(type_url);
    any.push(0x12);
    varint(oom.len(), &mut any);
    any.extend_from_slice(&oom);
    any
}

fn publish(b: &Berthd, any: &[u8]) {
    let mut child = Command::new(workspace_bin("berthd"))
        .arg("--address")
        .arg(b.address())
        .args(["publish", "--topic", "/tasks/oom", "--namespace", NS])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berthd publish");
    child.stdin.take().unwrap().write_all(any).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ctr events` with its stdout a pipe that nobody reads.
fn stalled_subscriber(b: &Berthd) -> Child {
    Command::new("ctr")
        .arg("--address")
        .arg(b.address())
        .args(["-n", NS, "events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ctr events")
}

#[test]
fn stalled_subscribers_do_not_grow_berthd() {
    if !enabled("stalled_subscribers_do_not_grow_berthd") {
        return;
    }
    let b = Berthd::start();
    let pid = b.child.as_ref().unwrap().id();
    let any = oom_event(EVENT_BYTES);
    // Warm up: the publish path's own buffers.
    publish(&b, &any);
    let base = rss_mib(pid);
    let mut subs: Vec<Child> = (0..3).map(|_| stalled_subscriber(&b)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut peak = base;
    for _ in 0..EVENTS {
        publish(&b, &any);
        peak = peak.max(rss_mib(pid));
    }
    let log = b.log();
    let dropped = log.matches("event subscriber fell behind: dropped").count();
    for s in &mut subs {
        let _ = s.kill();
        let _ = s.wait();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = rss_mib(pid);
    while Instant::now() < deadline && after > base + 64 {
        // An event makes the exchange forget the dead subscribers.
        publish(&b, &oom_event(16));
        std::thread::sleep(Duration::from_millis(200));
        after = rss_mib(pid);
    }
    eprintln!(
        "berthd RSS: {base} MiB before, {peak} MiB peak with 3 stalled subscribers and \
         {EVENTS} x 1 MiB events, {after} MiB after they died; {dropped} subscribers dropped"
    );
    assert_eq!(dropped, 3, "each stalled subscriber is dropped:\n{log}");
    // 3 x 16 MiB queued at most, plus transport buffers and the event being published.
    assert!(
        peak < base + 160,
        "berthd grew from {base} MiB to {peak} MiB"
    );
    // Before the bound: 33 MiB -> 339 MiB peak, 298 MiB still held after the subscribers died.
    assert!(
        after <= base + 64,
        "berthd holds {after} MiB after the subscribers died ({base} MiB before)"
    );
}

#!/usr/bin/env python3
"""Container lifecycle: berthd beside containerd 1.6, each with runc's Go shim and with berth's
Rust shim, same machine, same run.

For each (daemon, runtime) pair, on a fresh daemon with the busybox test image imported:
  - lifecycle: `ctr run --rm IMAGE id true` (container create, task create, start, wait, task
    delete, container delete, snapshot removal), median of --runs;
  - 50 sequential runs, and 50 runs by 4 concurrent workers: total seconds;
  - 20 `sleep` containers running: the daemon's RSS and the median shim RSS.
Needs root. Usage: sudo python3 bench/lifecycle.py [--runs 10] [--berthd target/release/berthd]
The shim binary containerd-shim-berth-v2 is taken from the berthd binary's directory (PATH).
"""
import argparse
import concurrent.futures
import glob
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemons import Daemon, daemons as daemon_list  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "docker.io/library/busybox:latest"
RUNTIMES = ["io.containerd.runc.v2", "io.containerd.berth.v2"]


def busybox_archive():
    out = os.path.join(REPO, "target", "bench-images-busybox")
    tar = os.path.join(out, "busybox.tar")
    if not os.path.exists(tar):
        subprocess.run([sys.executable, os.path.join(REPO, "scripts/testimages.py"), "--out", out,
                        "busybox"], check=True, capture_output=True)
    return tar


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def shim_pids(name):
    # Both shims' comm is truncated to "containerd-shim": match the command line instead.
    out = subprocess.run(["pgrep", "-f", f"{name} -namespace"], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def run(d, runtime, cid, *cmd):
    t0 = time.monotonic()
    d.ctr("run", "--rm", "--runtime", runtime, IMAGE, cid, *cmd)
    return time.monotonic() - t0


def measure(kind, binary, runtime, archive, runs):
    d = Daemon(kind, binary)
    try:
        d.ctr("images", "import", archive)
        run(d, runtime, "warmup", "true")
        life = statistics.median(run(d, runtime, f"l{i}", "true") for i in range(runs))
        t0 = time.monotonic()
        for i in range(50):
            run(d, runtime, f"s{i}", "true")
        seq = time.monotonic() - t0
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: run(d, runtime, f"c{i}", "true"), range(50)))
        conc = time.monotonic() - t0
        for i in range(20):
            d.ctr("run", "-d", "--runtime", runtime, IMAGE, f"r{i}", "sleep", "1000")
        time.sleep(3)
        shim = "containerd-shim-berth-v2" if runtime.endswith("berth.v2") else "containerd-shim-runc-v2"
        shims = [rss_kib(p) for p in shim_pids(shim)]
        daemon_rss = d.rss_kib()
        for i in range(20):
            d.ctr("task", "kill", "-s", "SIGKILL", f"r{i}", check=False)
        time.sleep(1)
        for i in range(20):
            d.ctr("task", "delete", f"r{i}", check=False)
            d.ctr("container", "rm", f"r{i}", check=False)
        return life, seq, conc, daemon_rss, statistics.median(shims) if shims else 0
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--berthd", default=os.path.join(REPO, "target/release/berthd"))
    a = ap.parse_args()
    bindir = os.path.dirname(os.path.abspath(a.berthd))
    os.environ["PATH"] = bindir + os.pathsep + os.environ["PATH"]
    archive = busybox_archive()
    results = []
    for kind, binary in daemon_list(a.berthd):
        for runtime in RUNTIMES:
            r = measure(kind, binary, runtime, archive, a.runs)
            results.append((kind, runtime, r))
            print(f"{kind} + {runtime}: {r}", flush=True)
    print(f"\n{'daemon + runtime':<42}{'lifecycle ms':>13}{'50 seq s':>10}{'50 conc4 s':>12}"
          f"{'daemon RSS MiB (20 running)':>29}{'shim RSS MiB':>14}")
    for kind, runtime, (life, seq, conc, drss, srss) in results:
        print(f"{kind + ' + ' + runtime:<42}{life * 1000:>13.0f}{seq:>10.2f}{conc:>12.2f}"
              f"{drss / 1024:>29.1f}{srss / 1024:>14.1f}")


if __name__ == "__main__":
    main()

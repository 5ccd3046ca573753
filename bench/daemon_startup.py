#!/usr/bin/env python3
"""Start-to-socket-ready time and idle RSS: berthd beside containerd, same machine, same run.

Each daemon starts N times on fresh temp dirs (cold: empty root); "ready" is the first successful
connect() to its gRPC socket, polled every millisecond. Idle RSS is VmRSS from /proc two seconds
after ready, with one `version` call made (so the gRPC server is warmed). Prints medians and
berthd/containerd ratios.

Usage: python3 bench/daemon_startup.py [--runs 5] [--berthd target/release/berthd]
containerd runs with CRI disabled (berthd has no CRI server yet), otherwise with its defaults.
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time


def wait_ready(sock, proc, timeout=30.0):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}")
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            s.close()
            return
        except OSError:
            time.sleep(0.001)
    raise RuntimeError(f"{sock} not ready after {timeout}s")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_once(kind, binary):
    d = tempfile.mkdtemp(prefix=f"bench-{kind}-")
    sock = os.path.join(d, "d.sock")
    if kind == "berthd":
        cmd = [binary, "--root", f"{d}/root", "--state", f"{d}/state", "--address", sock]
    else:
        cfg = os.path.join(d, "config.toml")
        with open(cfg, "w") as f:
            f.write(
                f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
                'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n'
                f'[debug]\n  address = "{sock}.debug"\n'
            )
        cmd = [binary, "--config", cfg]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(sock, p)
        ready_ms = (time.monotonic() - t0) * 1000
        subprocess.run(["ctr", "--address", sock, "version"], check=True, capture_output=True)
        time.sleep(2)
        rss = rss_kib(p.pid)
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)
    return ready_ms, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--berthd", default="target/release/berthd")
    a = ap.parse_args()
    results = {}
    daemons = [("berthd", a.berthd)]
    if shutil.which("containerd"):
        daemons.append(("containerd", shutil.which("containerd")))
    else:
        print("containerd not installed: no side-by-side figures")
    for kind, binary in daemons:
        runs = [run_once(kind, binary) for _ in range(a.runs)]
        results[kind] = (
            statistics.median(r[0] for r in runs),
            statistics.median(r[1] for r in runs),
        )
    print(f"{'daemon':<12}{'ready ms (median of %d)' % a.runs:>26}{'idle RSS MiB':>16}")
    for kind, (ms, rss) in results.items():
        print(f"{kind:<12}{ms:>26.1f}{rss / 1024:>16.1f}")
    if "containerd" in results:
        b, c = results["berthd"], results["containerd"]
        print(f"{'ratio b/c':<12}{b[0] / c[0]:>26.2f}{b[1] / c[1]:>16.2f}")


if __name__ == "__main__":
    main()

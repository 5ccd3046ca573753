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
import statistics
import time

from daemons import Daemon, daemons as daemon_list


def run_once(kind, binary):
    d = Daemon(kind, binary)
    try:
        d.ctr("version")
        time.sleep(2)
        return d.ready_ms, d.rss_kib()
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--berthd", default="target/release/berthd")
    a = ap.parse_args()
    results = {}
    for kind, binary in daemon_list(a.berthd):
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

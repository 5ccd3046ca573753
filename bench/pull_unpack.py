#!/usr/bin/env python3
"""Pull + unpack of a large image from a local registry: berthd beside containerd, same run.

Builds the `large` test image (scripts/testimages.py, default 300 MiB of incompressible data in
7 layers on busybox), serves it from Debian's docker-registry on 127.0.0.1 (plain HTTP), and for
each daemon, N times on a fresh daemon and empty root:
  - pull:   `ctr images pull --plain-http` (download, verify, write content, unpack to overlayfs),
            and on berthd also `berth pull` (the same work done by berth's own client);
  - unpack: remove the image's snapshots (content stays) and pull again: the content is already
            there, so this is the unpack alone (plus a manifest round trip).
Prints medians, MB/s (compressed bytes for pull, uncompressed for unpack) and berthd/containerd
ratios. Needs root (overlay mounts).

Usage: sudo python3 bench/pull_unpack.py [--runs 3] [--mb 300] [--berthd target/release/berthd]
"""
import argparse
import gzip
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemons import Daemon, daemons as daemon_list  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Registry:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bench-registry-")
        self.port = free_port()
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
                    f"storage:\n  filesystem:\n    rootdirectory: {self.dir}/storage\n"
                    f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: bench\n")
        self.proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", cfg],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(500):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/", timeout=1)
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("registry did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def layer_sizes(layout):
    """(compressed, uncompressed) bytes of the image's layers."""
    blobs = os.path.join(layout, "blobs", "sha256")
    index = json.load(open(os.path.join(layout, "index.json")))
    manifest = json.load(open(os.path.join(blobs, index["manifests"][0]["digest"][7:])))
    comp = uncomp = 0
    for layer in manifest["layers"]:
        comp += layer["size"]
        path = os.path.join(blobs, layer["digest"][7:])
        if layer["mediaType"].endswith("gzip"):
            with gzip.open(path) as g:
                while True:
                    n = len(g.read(1 << 20))
                    if not n:
                        break
                    uncomp += n
        else:
            uncomp += os.path.getsize(path)
    return comp, uncomp


def remove_snapshots(d):
    """Remove every snapshot, children first. The collector may remove parents on its own once
    their child is gone (nothing references them), so a NotFound here is fine."""
    while True:
        rows = [l.split() for l in d.ctr("snapshots", "ls").stdout.splitlines()[1:] if l.strip()]
        if not rows:
            return
        parents = {r[1] for r in rows if len(r) == 3}
        for r in rows:
            if r[0] not in parents:
                d.ctr("snapshots", "rm", r[0], check=False)


def run_once(kind, binary, ref, client):
    """One fresh daemon: (pull s, unpack s) with `client` ("ctr" or the path of `berth`)."""
    d = Daemon(kind, binary)

    def pull():
        if client == "ctr":
            d.ctr("images", "pull", "--plain-http", ref)
        else:
            subprocess.run([client, "--address", d.sock, "pull", "--plain-http", ref],
                           check=True, capture_output=True)

    try:
        t0 = time.monotonic()
        pull()
        first = time.monotonic() - t0
        remove_snapshots(d)
        time.sleep(2)  # let background removal of the old snapshot dirs finish
        t0 = time.monotonic()
        pull()
        unpack = time.monotonic() - t0
        return first, unpack
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=300)
    ap.add_argument("--berthd", default=os.path.join(REPO, "target/release/berthd"))
    a = ap.parse_args()
    out = os.path.join(REPO, "target", f"bench-images-{a.mb}")
    layout = os.path.join(out, "large")
    if not os.path.isdir(layout):
        subprocess.run([sys.executable, os.path.join(REPO, "scripts/testimages.py"), "--out", out,
                        "--large-mb", str(a.mb), "--no-tar", "large"], check=True)
    comp, uncomp = layer_sizes(layout)
    reg = Registry()
    try:
        ref = f"127.0.0.1:{reg.port}/large:latest"
        subprocess.run(["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false",
                        "--preserve-digests", f"oci:{layout}:latest", f"docker://{ref}"],
                       check=True, capture_output=True)
        results = {}
        berth = os.path.join(os.path.dirname(os.path.abspath(a.berthd)), "berth")
        configs = []
        for kind, binary in daemon_list(a.berthd):
            configs.append((kind, kind, binary, "ctr"))
            if kind == "berthd" and os.path.exists(berth):
                configs.append(("berth pull", kind, binary, berth))
        for label, kind, binary, client in configs:
            runs = [run_once(kind, binary, ref, client) for _ in range(a.runs)]
            results[label] = (statistics.median(r[0] for r in runs),
                              statistics.median(r[1] for r in runs))
            print(f"{label}: pull {[round(r[0], 2) for r in runs]} s, "
                  f"unpack {[round(r[1], 2) for r in runs]} s", flush=True)
    finally:
        reg.stop()
    mb = 1e6
    print(f"\nimage: {comp / mb:.0f} MB compressed, {uncomp / mb:.0f} MB uncompressed; "
          f"median of {a.runs}")
    print(f"{'daemon':<12}{'pull s':>10}{'pull MB/s':>12}{'unpack s':>10}{'unpack MB/s':>13}")
    for kind, (p, u) in results.items():
        print(f"{kind:<12}{p:>10.2f}{comp / mb / p:>12.1f}{u:>10.2f}{uncomp / mb / u:>13.1f}")
    if "containerd" in results:
        c = results["containerd"]
        for label in ("berthd", "berth pull"):
            if label in results:
                b = results[label]
                print(f"{label + '/c':<12}{b[0] / c[0]:>10.2f}{'':>12}{b[1] / c[1]:>10.2f}")


if __name__ == "__main__":
    main()

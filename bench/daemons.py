"""Start berthd or containerd on fresh temp dirs, for side-by-side benchmarks (same machine, same run)."""
import os
import shutil
import socket
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


class Daemon:
    """A berthd (kind "berthd") or containerd (kind "containerd", CRI disabled) on temp dirs."""

    def __init__(self, kind, binary):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix=f"bench-{kind}-")
        self.sock = os.path.join(self.dir, "d.sock")
        if kind == "berthd":
            cmd = [binary, "--root", f"{self.dir}/root", "--state", f"{self.dir}/state",
                   "--address", self.sock]
        else:
            cfg = os.path.join(self.dir, "config.toml")
            with open(cfg, "w") as f:
                f.write(
                    f'version = 2\nroot = "{self.dir}/root"\nstate = "{self.dir}/state"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.sock}"\n[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
                    f'[debug]\n  address = "{self.sock}.debug"\n'
                )
            cmd = [binary, "--config", cfg]
        self.log = open(os.path.join(self.dir, "daemon.log"), "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)
        wait_ready(self.sock, self.proc)
        self.ready_ms = (time.monotonic() - t0) * 1000

    def ctr(self, *args, ns="default", check=True):
        return subprocess.run(["ctr", "--address", self.sock, "-n", ns, *args],
                              check=check, capture_output=True, text=True)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        # Snapshot mounts are gone with the daemon's users; remove the trees.
        subprocess.run(["umount", "-R", "-l", self.dir], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def daemons(berthd_binary):
    """The (kind, binary) pairs to compare: berthd, and containerd where installed."""
    out = [("berthd", berthd_binary)]
    c = shutil.which("containerd")
    if c:
        out.append(("containerd", c))
    else:
        print("containerd not installed: no side-by-side figures")
    return out

#!/usr/bin/env python3
"""Build OCI test images from local files, without internet.

    python3 scripts/testimages.py --out DIR [--large-mb 300] [busybox|layers|large|all ...]

For each image NAME this writes

    DIR/NAME/        an OCI image layout (oci-layout, index.json, blobs/sha256/...)
    DIR/NAME.tar     the same layout as a tar archive (`ctr images import DIR/NAME.tar`)

The index.json entry carries `org.opencontainers.image.ref.name: latest` (so
`skopeo copy oci:DIR/NAME:latest ...` works) and `io.containerd.image.name:
docker.io/library/NAME:latest` (the name `ctr images import` gives the image).

Images:

  busybox  one gzip layer: /bin/busybox (from the host's busybox-static) and its applet
           symlinks (`busybox --list-full`), /etc/passwd, /etc/group, /tmp (1777), /root.
  layers   several layers exercising whiteouts, an opaque dir, a hardlink pair, symlinks, a
           fifo, a setuid file, a user xattr, uid 1000, a zstd layer (when the `zstd` CLI is
           installed; otherwise that layer is gzip and a warning is printed), long and
           non-ASCII names. DIR/layers/EXPECTED.json describes the final tree exactly.
  large    the busybox layer plus several layers of incompressible pseudo-random data,
           --large-mb MB in all (for benchmarks).

Output is deterministic (fixed mtimes, sorted entries, uid/gid 0 unless a test needs
otherwise, gzip mtime 0, seeded PRNG), so digests are the same run to run on the same host
(the busybox layer depends on the host's /bin/busybox). Python standard library only.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

MTIME = 1704067200  # 2024-01-01T00:00:00Z
CREATED = "2024-01-01T00:00:00Z"

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MT_INDEX = "application/vnd.oci.image.index.v1+json"


def log(msg):
    print(f"testimages: {msg}", file=sys.stderr, flush=True)


def goarch():
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class HashWriter:
    """File-like sink that hashes and counts what passes through, forwarding to `inner`."""

    def __init__(self, inner):
        self.inner = inner
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        if self.inner is not None:
            self.inner.write(b)
        return len(b)

    def flush(self):
        if self.inner is not None:
            self.inner.flush()

    def digest(self):
        return "sha256:" + self.h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Tar entries. An entry is a dict: path, type (file|dir|symlink|hardlink|fifo), mode, uid, gid,
# and data (bytes) or a data generator (callable yielding chunks, with size), link target,
# xattrs. Entries are written in sorted path order, with parents before children.


def e_dir(path, mode=0o755, uid=0, gid=0):
    return {"path": path, "type": "dir", "mode": mode, "uid": uid, "gid": gid}


def e_file(path, data=b"", mode=0o644, uid=0, gid=0, xattrs=None):
    return {"path": path, "type": "file", "mode": mode, "uid": uid, "gid": gid,
            "data": data, "xattrs": xattrs or {}}


def e_gen(path, size, gen, mode=0o644):
    """A file whose content comes from gen() (an iterator of byte chunks totalling size)."""
    return {"path": path, "type": "file", "mode": mode, "uid": 0, "gid": 0,
            "size": size, "gen": gen, "xattrs": {}}


def e_symlink(path, target):
    return {"path": path, "type": "symlink", "mode": 0o777, "uid": 0, "gid": 0,
            "target": target}


def e_hardlink(path, target):
    return {"path": path, "type": "hardlink", "mode": 0o644, "uid": 0, "gid": 0,
            "target": target}


def e_fifo(path, mode=0o644):
    return {"path": path, "type": "fifo", "mode": mode, "uid": 0, "gid": 0}


class GenReader(io.RawIOBase):
    def __init__(self, it):
        self.it = iter(it)
        self.buf = b""

    def readable(self):
        return True

    def readinto(self, b):
        while not self.buf:
            try:
                self.buf = next(self.it)
            except StopIteration:
                return 0
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


def sort_key(path):
    # Parents sort before children; siblings by byte order of each component.
    return [c.encode() for c in path.split("/")]


def write_tar(entries, sink):
    """Write entries as a PAX tar to the file-like sink, deterministically."""
    tf = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT)
    # Hardlinks must come after their target: emit in sorted order, but a hardlink whose
    # target sorts after it is deferred until the target has been written.
    ordered = sorted(entries, key=lambda e: sort_key(e["path"]))
    written = set()
    deferred = []
    by_path = {e["path"]: e for e in entries}

    def emit(e):
        ti = tarfile.TarInfo(e["path"] + ("/" if e["type"] == "dir" else ""))
        ti.mtime = MTIME
        ti.mode = e["mode"]
        ti.uid = e["uid"]
        ti.gid = e["gid"]
        ti.uname = ""
        ti.gname = ""
        fobj = None
        if e["type"] == "dir":
            ti.type = tarfile.DIRTYPE
        elif e["type"] == "file":
            ti.type = tarfile.REGTYPE
            if "gen" in e:
                ti.size = e["size"]
                fobj = io.BufferedReader(GenReader(e["gen"]()), 1 << 20)
            else:
                ti.size = len(e["data"])
                fobj = io.BytesIO(e["data"])
        elif e["type"] == "symlink":
            ti.type = tarfile.SYMTYPE
            ti.linkname = e["target"]
        elif e["type"] == "hardlink":
            # Same owner and mode as the target (as docker and containerd write them):
            # appliers chown/chmod the path, which is the shared inode.
            ti.type = tarfile.LNKTYPE
            ti.linkname = e["target"]
            t = by_path[e["target"]]
            ti.mode, ti.uid, ti.gid = t["mode"], t["uid"], t["gid"]
        elif e["type"] == "fifo":
            ti.type = tarfile.FIFOTYPE
        else:
            raise ValueError(e["type"])
        if e.get("xattrs"):
            ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in sorted(e["xattrs"].items())}
        tf.addfile(ti, fobj)
        written.add(e["path"])

    for e in ordered:
        if e["type"] == "hardlink" and e["target"] not in written:
            deferred.append(e)
            continue
        emit(e)
        for d in [d for d in deferred if d["target"] in written]:
            deferred.remove(d)
            emit(d)
    if deferred:
        raise ValueError(f"hardlinks to missing targets: {[d['path'] for d in deferred]}")
    tf.close()


# ---------------------------------------------------------------------------------------------
# OCI layout writer.


class Layout:
    def __init__(self, root):
        self.root = root
        self.blobs = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blobs, exist_ok=True)
        with open(os.path.join(root, "oci-layout"), "wb") as f:
            f.write(canonical_json({"imageLayoutVersion": "1.0.0"}))

    def _commit(self, tmp, digest):
        dst = os.path.join(self.blobs, digest.split(":", 1)[1])
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)

    def add_bytes(self, data, media_type):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self._commit(tmp, digest)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def add_layer(self, entries, compression="gzip", level=9):
        """Tar + compress entries into a blob. Returns (descriptor, diff_id)."""
        fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out:
            if compression == "gzip":
                outer = HashWriter(out)
                gz = gzip.GzipFile(filename="", mode="wb", fileobj=outer, mtime=0,
                                   compresslevel=level)
                inner = HashWriter(gz)
                write_tar(entries, inner)
                gz.close()
                desc = {"mediaType": MT_GZIP, "digest": outer.digest(), "size": outer.n}
            elif compression == "zstd":
                p = subprocess.Popen(["zstd", "-q", "-c", "-3", "-T1", "--no-progress"],
                                     stdin=subprocess.PIPE, stdout=out)
                inner = HashWriter(p.stdin)
                write_tar(entries, inner)
                p.stdin.close()
                if p.wait() != 0:
                    raise RuntimeError("zstd failed")
                out.flush()
                h = hashlib.sha256()
                n = 0
                with open(tmp, "rb") as f:
                    while True:
                        b = f.read(1 << 20)
                        if not b:
                            break
                        h.update(b)
                        n += len(b)
                desc = {"mediaType": MT_ZSTD, "digest": "sha256:" + h.hexdigest(), "size": n}
            else:
                raise ValueError(compression)
        self._commit(tmp, desc["digest"])
        return desc, inner.digest()

    def finish(self, name, layers, config_extra):
        """Write config, manifest and index.json for an image made of `layers`
        ([(descriptor, diff_id)]). Returns the manifest descriptor."""
        config = {
            "created": CREATED,
            "architecture": goarch(),
            "os": "linux",
            "config": config_extra,
            "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
            "history": [{"created": CREATED, "created_by": f"testimages.py {name} layer {i}"}
                        for i in range(len(layers))],
        }
        cdesc = self.add_bytes(canonical_json(config), MT_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": cdesc,
            "layers": [d for d, _ in layers],
        }
        mdesc = self.add_bytes(canonical_json(manifest), MT_MANIFEST)
        ref = f"docker.io/library/{name}:latest"
        entry = dict(mdesc)
        entry["platform"] = {"architecture": goarch(), "os": "linux"}
        entry["annotations"] = {
            "io.containerd.image.name": ref,
            "org.opencontainers.image.ref.name": "latest",
        }
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [entry]}
        with open(os.path.join(self.root, "index.json"), "wb") as f:
            f.write(canonical_json(index))
        return mdesc


def tar_layout(layout_dir, tar_path):
    """The layout as a deterministic tar (what `ctr images import` reads)."""
    tmp = tar_path + ".tmp"
    with open(tmp, "wb") as f:
        tf = tarfile.open(fileobj=f, mode="w|", format=tarfile.PAX_FORMAT)
        names = ["oci-layout", "index.json", "blobs", "blobs/sha256"]
        names += ["blobs/sha256/" + b
                  for b in sorted(os.listdir(os.path.join(layout_dir, "blobs", "sha256")))
                  if not b.startswith(".")]
        for n in names:
            p = os.path.join(layout_dir, n)
            st = os.stat(p)
            isdir = os.path.isdir(p)
            ti = tarfile.TarInfo(n + ("/" if isdir else ""))
            ti.mtime = MTIME
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            if isdir:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tf.addfile(ti)
            else:
                ti.mode = 0o644
                ti.size = st.st_size
                with open(p, "rb") as src:
                    tf.addfile(ti, src)
        tf.close()
    os.replace(tmp, tar_path)


def new_layout(out, name):
    d = os.path.join(out, name)
    if os.path.exists(d):
        shutil.rmtree(d)
    return Layout(d)


# ---------------------------------------------------------------------------------------------
# busybox


PASSWD = b"""root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
"""

GROUP = b"""root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
tty:x:5:
nogroup:x:65534:
user:x:1000:
"""


def busybox_entries(busybox):
    with open(busybox, "rb") as f:
        binary = f.read()
    applets = subprocess.run([busybox, "--list-full"], check=True, capture_output=True,
                             text=True).stdout.split()
    dirs = {"bin", "dev", "etc", "home", "proc", "root", "sbin", "sys", "tmp", "usr",
            "usr/bin", "usr/sbin", "var"}
    entries = {}
    for d in sorted(dirs):
        entries[d] = e_dir(d, 0o700 if d == "root" else 0o1777 if d == "tmp" else 0o755)
    entries["bin/busybox"] = e_file("bin/busybox", binary, 0o755)
    for a in applets:
        a = a.strip("/")
        if a == "bin/busybox" or a in entries:
            continue
        parent = os.path.dirname(a)
        if parent and parent not in entries:
            entries[parent] = e_dir(parent)
        entries[a] = e_symlink(a, "/bin/busybox")
    entries["etc/passwd"] = e_file("etc/passwd", PASSWD)
    entries["etc/group"] = e_file("etc/group", GROUP)
    entries["etc/hostname"] = e_file("etc/hostname", b"busybox\n")
    return list(entries.values())


BUSYBOX_CONFIG = {
    "Cmd": ["sh"],
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "WorkingDir": "/",
}


def build_busybox(out, args):
    lay = new_layout(out, "busybox")
    layer = lay.add_layer(busybox_entries(args.busybox))
    return lay, lay.finish("busybox", [layer], BUSYBOX_CONFIG)


# ---------------------------------------------------------------------------------------------
# layers


def layers_spec():
    """The layers of the `layers` image, and what the final tree must look like."""
    long_dir = "long/" + "/".join(["d" * 60] * 3)  # > 100 bytes: needs a PAX path
    l1 = [
        e_dir("bin"),
        e_file("bin/suid", b"#!/bin/sh\necho suid\n", 0o4755),
        e_dir("data"),
        e_file("data/changed", b"version 1\n"),
        e_file("data/unchanged", b"same in every layer\n", 0o600),
        e_dir("del"),
        e_file("del/gone.txt", b"deleted by a whiteout in layer 2\n"),
        e_file("del/keep.txt", b"kept\n"),
        e_dir("gonedir"),
        e_file("gonedir/x", b"x\n"),
        e_dir("gonedir/sub"),
        e_file("gonedir/sub/y", b"y\n"),
        e_dir("hard"),
        e_file("hard/orig", b"hardlinked content\n", 0o640),
        e_hardlink("hard/link", "hard/orig"),
        e_dir("misc"),
        e_fifo("misc/fifo", 0o600),
        e_dir("opq"),
        e_file("opq/a", b"lower a\n"),
        e_dir("opq/sub"),
        e_file("opq/sub/b", b"lower b\n"),
        e_dir("owned", 0o750, uid=1000, gid=1000),
        e_file("owned/file", b"owned by 1000\n", 0o600, uid=1000, gid=1000),
        e_file("swap", b"a file in layer 1, a dir in layer 3\n"),
        e_dir("sym"),
        e_symlink("sym/rel", "../data/changed"),
        e_symlink("sym/abs", "/data/unchanged"),
        e_symlink("sym/dangling", "/does/not/exist"),
        e_dir("tmp", 0o1777),
        e_dir("xattr"),
        e_file("xattr/file", b"has a user xattr\n", xattrs={"user.test": "hello"}),
    ]
    l2 = [
        e_dir("data"),
        e_file("data/changed", b"version 2, longer than version 1\n", 0o664),
        e_file("data/new-in-2", b"added by layer 2\n"),
        e_dir("del"),
        e_file("del/.wh.gone.txt", b""),
        e_file(".wh.gonedir", b""),
        e_dir("opq"),
        e_file("opq/.wh..wh..opq", b""),
        e_file("opq/new", b"upper new\n"),
    ]
    parts = long_dir.split("/")
    l3 = [e_dir("/".join(parts[:i])) for i in range(1, len(parts) + 1)] + [
        e_file(long_dir + "/file-with-a-long-path", b"long path\n"),
        e_symlink("sym/long", "/" + long_dir + "/file-with-a-long-path"),
        e_dir("sym"),
        e_dir("swap"),
        e_file("swap/inner", b"swap is a dir now\n"),
        e_dir("unicode"),
        e_file("unicode/h\u00e9llo-\u4e16\u754c.txt", "non-ASCII name\n".encode()),
        e_file("empty", b""),
        e_dir("data"),
        e_file("data/new-in-2", b"changed again by layer 3\n", 0o755),
    ]
    absent = ["del/gone.txt", "gonedir", "gonedir/x", "gonedir/sub/y", "opq/a", "opq/sub",
              "opq/sub/b", "del/.wh.gone.txt", ".wh.gonedir", "opq/.wh..wh..opq"]
    return [l1, l2, l3], absent


def expected_tree(layer_entries, absent):
    """Apply the layers in memory (OCI semantics) and describe the result."""
    tree = {}
    for entries in layer_entries:
        # Whiteouts first: they apply to lower layers only.
        for e in entries:
            base = os.path.basename(e["path"])
            parent = os.path.dirname(e["path"])
            if base == ".wh..wh..opq":
                for p in list(tree):
                    if p.startswith(parent + "/"):
                        del tree[p]
            elif base.startswith(".wh."):
                victim = os.path.join(parent, base[4:])
                for p in list(tree):
                    if p == victim or p.startswith(victim + "/"):
                        del tree[p]
        for e in entries:
            if os.path.basename(e["path"]).startswith(".wh."):
                continue
            old = tree.get(e["path"])
            if old is not None and (old["type"] != "dir" or e["type"] != "dir"):
                for p in list(tree):
                    if p.startswith(e["path"] + "/"):
                        del tree[p]
            tree[e["path"]] = dict(e)
    out = {}
    nlinks = {}
    for p, e in tree.items():
        if e["type"] == "hardlink":
            nlinks[e["target"]] = nlinks.get(e["target"], 1) + 1
    for p, e in sorted(tree.items(), key=lambda kv: sort_key(kv[0])):
        t = e["type"]
        d = {"uid": e["uid"], "gid": e["gid"]}
        if t == "hardlink":
            tgt = tree[e["target"]]
            d.update({"type": "file", "mode": "%04o" % tgt["mode"], "size": len(tgt["data"]),
                      "sha256": hashlib.sha256(tgt["data"]).hexdigest(),
                      "nlink": nlinks[e["target"]], "hardlink_to": e["target"],
                      "uid": tgt["uid"], "gid": tgt["gid"]})
            if tgt.get("xattrs"):
                d["xattrs"] = tgt["xattrs"]
        elif t == "file":
            d.update({"type": "file", "mode": "%04o" % e["mode"], "size": len(e["data"]),
                      "sha256": hashlib.sha256(e["data"]).hexdigest()})
            if p in nlinks:
                d["nlink"] = nlinks[p]
            else:
                d["nlink"] = 1
            if e.get("xattrs"):
                d["xattrs"] = e["xattrs"]
        elif t == "dir":
            d.update({"type": "dir", "mode": "%04o" % e["mode"]})
        elif t == "symlink":
            d.update({"type": "symlink", "target": e["target"]})
        elif t == "fifo":
            d.update({"type": "fifo", "mode": "%04o" % e["mode"]})
        out[p] = d
    for p in absent:
        assert p not in out, p
    return {
        "description": "final tree of the `layers` test image: every path (relative to the "
                       "rootfs) with type, permission bits (octal, incl. setuid/sticky), "
                       "owner, and for files size, sha256, nlink, xattrs; symlinks' targets. "
                       "`exact`: no other paths may exist. `absent`: paths that must not exist.",
        "exact": True,
        "paths": out,
        "absent": sorted(absent),
    }


def build_layers(out, args):
    lay = new_layout(out, "layers")
    specs, absent = layers_spec()
    have_zstd = shutil.which("zstd") is not None
    if not have_zstd:
        log("WARNING: `zstd` not installed (apt-get install zstd): layer 2 of `layers` is "
            "gzip instead of zstd")
    layers = []
    for i, entries in enumerate(specs):
        comp = "zstd" if i == 1 and have_zstd else "gzip"
        layers.append(lay.add_layer(entries, comp))
    mdesc = lay.finish("layers", layers, {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]})
    exp = expected_tree(specs, absent)
    exp["layers"] = [{"mediaType": d["mediaType"], "digest": d["digest"]} for d, _ in layers]
    with open(os.path.join(out, "layers", "EXPECTED.json"), "w", encoding="utf-8") as f:
        json.dump(exp, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    return lay, mdesc


# ---------------------------------------------------------------------------------------------
# large


def random_gen(seed, size):
    def gen():
        r = random.Random(seed)
        left = size
        while left:
            n = min(left, 1 << 20)
            yield r.randbytes(n)
            left -= n
    return gen


def large_layers(total_mb):
    """Layers of pseudo-random files, total_mb MiB in all, of mixed sizes (4 KiB .. 32 MiB)."""
    total = total_mb << 20
    nlayers = max(1, min(6, (total_mb + 49) // 50))
    per_layer = total // nlayers
    rng = random.Random(0x6265727468)  # "berth"
    # Mostly small files, a few big ones: ~330 files for 300 MiB.
    sizes = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 32 << 20]
    weights = [40, 20, 15, 10, 8, 4, 2, 1]
    layers = []
    fileno = 0
    for li in range(nlayers):
        budget = per_layer if li < nlayers - 1 else total - per_layer * (nlayers - 1)
        entries = [e_dir("data"), e_dir(f"data/layer{li}")]
        while budget > 0:
            size = min(budget, rng.choices(sizes, weights)[0] + rng.randrange(4096))
            path = f"data/layer{li}/f{fileno:05d}"
            entries.append(e_gen(path, size, random_gen((li << 32) | fileno, size)))
            fileno += 1
            budget -= size
        layers.append(entries)
    return layers


def build_large(out, args):
    lay = new_layout(out, "large")
    layers = [lay.add_layer(busybox_entries(args.busybox))]
    for entries in large_layers(args.large_mb):
        layers.append(lay.add_layer(entries, "gzip", level=1))
    return lay, lay.finish("large", layers, BUSYBOX_CONFIG)


BUILDERS = {"busybox": build_busybox, "layers": build_layers, "large": build_large}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--large-mb", type=int, default=300, help="size of the large image (MiB)")
    ap.add_argument("--busybox", default="/bin/busybox", help="a static busybox binary")
    ap.add_argument("--no-tar", action="store_true", help="only write the layout dirs")
    ap.add_argument("images", nargs="*", default=["busybox", "layers"],
                    help="busybox, layers, large or all (default: busybox layers)")
    args = ap.parse_args()
    names = []
    for n in args.images:
        for m in (list(BUILDERS) if n == "all" else [n]):
            if m not in BUILDERS:
                ap.error(f"unknown image {m!r}")
            if m not in names:
                names.append(m)
    os.makedirs(args.out, exist_ok=True)
    for n in names:
        t = time.monotonic()
        lay, mdesc = BUILDERS[n](args.out, args)
        if not args.no_tar:
            tar_layout(lay.root, os.path.join(args.out, n + ".tar"))
        log(f"{n}: {mdesc['digest']} ({time.monotonic() - t:.1f}s)")
        print(f"{n} docker.io/library/{n}:latest {mdesc['digest']}")


if __name__ == "__main__":
    main()

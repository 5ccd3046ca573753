#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install what berth needs, build it, install berthd and
# berth into /usr/local/bin, start berthd on its default paths (root /var/lib/berth, state
# /run/berth, socket /run/berth/berthd.sock) and show it working with berth's CLI and Debian's ctr.
# berthd keeps running afterwards; stop it with: kill "$(cat /run/berth/berthd.pid)"
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (berthd owns /var/lib/berth and /run/berth)" >&2; exit 1; }
bash scripts/deps.sh
cargo build --release --bins
install -m 0755 target/release/berthd target/release/berth target/release/containerd-shim-berth-v2 /usr/local/bin/

sock=/run/berth/berthd.sock
if berth --address "$sock" version >/dev/null 2>&1; then
  echo "demo: berthd already serving $sock"
else
  mkdir -p /run/berth /var/log
  nohup berthd >>/var/log/berthd.log 2>&1 &
  echo $! > /run/berth/berthd.pid
  for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
  echo "demo: started berthd (pid $(cat /run/berth/berthd.pid), log /var/log/berthd.log)"
fi

run() { echo; echo "\$ $*"; "$@"; }
run berth version
run ctr --address "$sock" version
berth namespace ls -q 2>/dev/null | grep -qx demo || run berth namespace create demo
run ctr --address "$sock" namespaces ls
blob=$(mktemp)
echo "hello from berth $(date -u +%FT%TZ)" > "$blob"
run berth -n demo content ingest --label containerd.io/gc.root=demo demo-ref "$blob"
run berth -n demo content ls
digest=$(berth -n demo --format json content ls | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["digest"])')
run ctr --address "$sock" -n demo content get "$digest"
run berth -n demo lease create --expires 1h
run ctr --address "$sock" plugins ls

# An image built locally (no internet needed), imported, and a container run from it.
images=$(mktemp -d)
python3 scripts/testimages.py --out "$images" busybox >/dev/null
run ctr --address "$sock" -n demo images import "$images/busybox.tar"
run berth -n demo image ls
run berth -n demo run --rm docker.io/library/busybox:latest sh -c 'echo hello from a berth container; uname -a'
run berth -n demo run --rm --runtime io.containerd.berth.v2 docker.io/library/busybox:latest echo "and from berth's own shim"

# The same image served by a real registry on 127.0.0.1 (Debian's docker-registry), pulled.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog: {level: warn, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s/registry}}\nhttp: {addr: "127.0.0.1:%s", secret: demo}\n' "$images" "$port" > "$images/registry.yml"
/usr/bin/docker-registry serve "$images/registry.yml" >/dev/null 2>&1 &
registry=$!
for _ in $(seq 100); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v2/')" 2>/dev/null && break; sleep 0.05; done
skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$images/busybox:latest" "docker://127.0.0.1:$port/demo/busybox:1"
run berth -n demo pull "127.0.0.1:$port/demo/busybox:1"
run berth -n demo run --rm "127.0.0.1:$port/demo/busybox:1" echo "pulled from a registry and run"
kill "$registry"
rm -rf "$images"
echo
echo "demo: berthd is running on $sock; try: berth --help, ctr --address $sock --help"

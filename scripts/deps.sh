#!/usr/bin/env bash
# Install what berth needs to build and to run its tests on Debian 12 (idempotent).
#   protobuf-compiler      protoc, for the gRPC stubs generated at build time
#   containerd             Debian's ctr client (interop tests) and containerd (side-by-side tests, benchmarks)
#   runc crun              OCI runtimes driven by berth's shim
#   docker-registry skopeo a real OCI distribution registry on 127.0.0.1 and a tool to push to it
#   busybox-static         the files of the test images
#   containernetworking-plugins  CNI plugins for pods
#   python3 zstd           the test-image builder and its zstd layers
#   curl                   scraping berthd's metrics (tests/integration/tests/metrics.rs)
set -euo pipefail
packages=(protobuf-compiler containerd runc crun docker-registry skopeo busybox-static
  containernetworking-plugins python3 zstd git ca-certificates curl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Packages' own services (containerd, docker-registry) are not wanted running: tests start their own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/berth-apt.log 2>&1 || {
  apt-get update -q >>/tmp/berth-apt.log 2>&1
  apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/berth-apt.log 2>&1 || {
    tail -20 /tmp/berth-apt.log >&2
    exit 1
  }
}

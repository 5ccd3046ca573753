#!/usr/bin/env bash
# The test command: installs what the tests need, builds, runs the unit tests, then the root
# integration tests (real berthd, Debian's ctr, a real containerd beside it) one at a time.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh || exit 1
log=$(mktemp /tmp/berth-test.XXXXXX)
status=0

step() {
  echo "==> $*"
  "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    echo "==> FAILED ($rc): $*"
    status=1
  fi
}

step cargo fmt --all -- --check
step cargo build --workspace --bins --tests
step cargo clippy --workspace --all-targets -- -D warnings
step cargo test --no-fail-fast --workspace --exclude berth-integration-tests
if [ "$(id -u)" -eq 0 ]; then
  step env BERTH_ROOT_TESTS=1 cargo test --no-fail-fast -p berth-integration-tests -- --test-threads=1
else
  echo "==> SKIP root integration tests: they need root (real mounts, runc, a registry); run as root"
fi

echo
echo "==> summary"
passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
ignored=$(grep -Eo '[0-9]+ ignored' "$log" | awk '{s+=$1} END {print s+0}')
echo "tests: $passed passed, $failed failed, $ignored ignored"
grep -E '^(test .* FAILED|failures:$|    [a-z_:]+$)' "$log" | head -40
rm -f "$log"
exit $status

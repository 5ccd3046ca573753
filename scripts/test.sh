#!/usr/bin/env bash
# The test command: installs what the tests need, builds, runs the unit tests, then the root
# integration tests (real berthd, Debian's ctr, a real containerd beside it) one at a time.
#
# As root the integration tests run with BERTH_ROOT_TESTS=require (unless set otherwise): a
# missing tool fails its test instead of skipping it. Every skip is recorded in BERTH_SKIP_LOG
# and counted as skipped, not passed; as another user the integration tests are not run at all
# and each is counted as skipped. The last line is `N passed, N failed, N skipped`.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh || exit 1
log=$(mktemp /tmp/berth-test.XXXXXX)
BERTH_SKIP_LOG=$(mktemp /tmp/berth-skips.XXXXXX)
export BERTH_SKIP_LOG
not_run=$(mktemp /tmp/berth-not-run.XXXXXX)
trap 'rm -f "$log" "$BERTH_SKIP_LOG" "$not_run"' EXIT
status=0
failed_steps=()

step() {
  echo "==> $*"
  "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    echo "==> FAILED ($rc): $*"
    failed_steps+=("$*")
    status=1
  fi
}

step cargo fmt --all -- --check
step cargo build --workspace --bins --tests
step cargo clippy --workspace --all-targets -- -D warnings
# Crates whose tests include root tests through the harness's gate (berth-ops and the
# services' workflows in-process, berthd's in-process pull and run): as root they run with the
# integration tests, serially; as another user with the unit tests, their root tests skipping.
root_crates=(-p berth-integration-tests -p berthd -p berth-services -p berth-ops)
if [ "$(id -u)" -eq 0 ]; then
  step cargo test --no-fail-fast --workspace --exclude berth-integration-tests \
    --exclude berthd --exclude berth-services --exclude berth-ops
  step env BERTH_ROOT_TESTS="${BERTH_ROOT_TESTS:-require}" \
    cargo test --no-fail-fast "${root_crates[@]}" -- --test-threads=1
else
  step cargo test --no-fail-fast --workspace --exclude berth-integration-tests
  reason="not run: root integration tests need root (run scripts/test.sh as root)"
  echo "==> SKIP root integration tests: $reason"
  # The harness's own unit tests need no root.
  step cargo test --no-fail-fast -p berth-integration-tests --lib
  # Count the others: each test of each integration test binary, as `binary::test`.
  cargo test -p berth-integration-tests --test '*' -- --list 2>&1 |
    awk -v why="$reason" '
      /^ *Running / { bin = $0; sub(/.*\//, "", bin); sub(/-[0-9a-f]+\)$/, "", bin) }
      /: test$/ { sub(/: test$/, ""); print bin "::" $0 ": " why }' >"$not_run"
  if [ ! -s "$not_run" ]; then
    echo "==> could not list the root integration tests: they are not counted below"
  fi
fi

echo
echo "==> summary"
sum() { grep -E '^test result:' "$log" | grep -Eo "[0-9]+ $1" | awk '{s+=$1} END {print s+0}'; }
passed=$(sum passed)
failed=$(sum failed)
ignored=$(sum ignored)
# A test that recorded a skip returned early and counts as passed in cargo's tally.
skipped_run=$(awk -F': ' '!seen[$1]++' "$BERTH_SKIP_LOG" | wc -l)
not_run_count=$(wc -l <"$not_run")
passed=$((passed > skipped_run ? passed - skipped_run : 0))
skipped=$((skipped_run + not_run_count + ignored))
grep -E '^(test .* FAILED|failures:$|    [a-z_:]+$)' "$log" | head -40
if [ "$skipped_run" -gt 0 ]; then
  echo "skipped (recorded by the tests):"
  awk -F': ' '!seen[$1]++ { print "  " $0 }' "$BERTH_SKIP_LOG"
fi
if [ "$not_run_count" -gt 0 ]; then
  echo "skipped: $not_run_count root integration tests $reason"
fi
if [ "$ignored" -gt 0 ]; then
  echo "skipped: $ignored tests marked #[ignore] (run with -- --ignored)"
fi
for s in "${failed_steps[@]}"; do
  echo "failed step: $s"
done
echo "$passed passed, $failed failed, $skipped skipped"
exit $status

#!/usr/bin/env bash
# Build and run every test suite, one lane after another
# (default: dev asan tsan tsan-gcc fuzz).
#
#   bash scripts/test.sh [lane...]      lanes: dev release asan tsan tsan-gcc fuzz
#
# Installs missing Debian packages first (needs root or sudo). Stops at the
# first failing lane.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/deps.sh
source scripts/deps.sh
palitra_deps base sanitizers fuzz model

lanes=("$@")
[ ${#lanes[@]} -gt 0 ] || lanes=(dev asan tsan tsan-gcc fuzz)

start=$SECONDS
for lane in "${lanes[@]}"; do
  echo
  echo "=================================================================="
  echo "== palitra: lane '${lane}'"
  echo "=================================================================="
  lane_start=$SECONDS
  if ! cmake --workflow --preset "$lane"; then
    echo "== lane '${lane}' FAILED after $((SECONDS - lane_start)) s (total $((SECONDS - start)) s)" >&2
    exit 1
  fi
  echo "== lane '${lane}' passed in $((SECONDS - lane_start)) s"
done

echo
echo "== all lanes passed (${lanes[*]}) in $((SECONDS - start)) s"

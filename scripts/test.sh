#!/usr/bin/env bash
# Build and run every test suite, one lane after another
# (default: dev asan tsan tsan-gcc fuzz).
#
#   bash scripts/test.sh [--soak] [lane...]
#       lanes: dev release asan tsan tsan-gcc fuzz
#       --soak: after the lanes, the long forms in the dev and tsan builds:
#               stress scenarios with --long, 100,000 dsched seeds each, the
#               big spin configurations (check.sh --soak, several GB), and
#               10 minutes of libFuzzer per target. Hours, not minutes.
#
# Installs missing Debian packages first (needs root or sudo). Stops at the
# first failing lane.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/deps.sh
source scripts/deps.sh
palitra_deps base sanitizers fuzz model

soak=0
lanes=()
for a in "$@"; do
  case "$a" in
    --soak) soak=1 ;;
    *) lanes+=("$a") ;;
  esac
done
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

if [ "$soak" = 1 ]; then
  echo
  echo "== palitra: soak"
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:report_signal_unsafe=0"
  for b in dev tsan; do
    cmake --preset "$b" >/dev/null && cmake --build --preset "$b"
    for s in build/"$b"/stress/scenarios/stress_*; do
      echo "-- $s --long"; "$s" --long
    done
    for d in build/"$b"/stress/dsched/dsched_*; do
      echo "-- $d --seeds 100000"; "$d" --seeds 100000
    done
  done
  bash stress/model/check.sh --soak
  cmake --preset fuzz >/dev/null && cmake --build --preset fuzz
  for t in fuzz_ops fuzz_timer_heap fuzz_queue; do
    mkdir -p build/fuzz/soak/"$t"
    ASAN_OPTIONS=detect_leaks=1:detect_stack_use_after_return=1:abort_on_error=1:halt_on_error=1 \
      build/fuzz/fuzz/"$t" -max_total_time=600 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 build/fuzz/soak/"$t" fuzz/corpus/"$t"
  done
  echo "== soak passed in $((SECONDS - start)) s"
fi

echo
echo "== all lanes passed (${lanes[*]}) in $((SECONDS - start)) s"

#!/usr/bin/env bash
# Instructions per palitra::run() round trip, counted by callgrind.
#
#   bash bench/callgrind.sh [build/bench] [threads...]
#
# Runs build/bench/bench/palitra_cg under callgrind with 2,000 and 12,000
# calls for each thread count (default: 1 16) and prints
# (Ir(12000) - Ir(2000)) / 10000: start-up, warm-up and shutdown cancel out.
# Also prints the per-function split of the difference for the top entries
# (callgrind_annotate, inclusive=no). Needs valgrind (Debian: valgrind).
# Under valgrind glibc cannot register rseq, so sched_getcpu takes its
# fallback path (~30 instructions, against ~3 natively): subtract 30 per
# sched_getcpu call listed when comparing with code that had none.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build/bench}
shift || true
threads=("$@")
[ ${#threads[@]} -gt 0 ] || threads=(1 16)
exe="$build/bench/palitra_cg"
[ -x "$exe" ] || { echo "callgrind.sh: $exe missing; run: cmake --workflow --preset bench" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind missing (apt-get install valgrind)" >&2; exit 2; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
lo=2000
hi=12000
total() { # file -> total Ir
  callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !t {gsub(",", "", $1); t = $1} END {print t}'
}
for t in "${threads[@]}"; do
  for n in $lo $hi; do
    # valgrind 3.19 does not know epoll_pwait2 (syscall 441) and warns once;
    # palitra then falls back to epoll_wait. Its stderr is shown on failure.
    # taskset -c 0: valgrind runs one thread at a time but sched_getcpu
    # reports each OS thread's real CPU, so without it the cross-CPU spin
    # would pause-spin until valgrind switches threads. On one CPU the
    # counted path is the yield hand-over, the same in every run.
    if ! taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out/cg.$t.$n" -q \
        "$exe" --calls "$n" --threads "$t" >/dev/null 2>"$out/err"; then
      cat "$out/err" >&2
      exit 1
    fi
  done
  a=$(total "$out/cg.$t.$lo")
  b=$(total "$out/cg.$t.$hi")
  echo "threads $t: $(( (b - a) / (hi - lo) )) instructions per run() (Ir $a at $lo calls, $b at $hi)"
  # Per function: the difference of the two profiles, per call.
  python3 - "$out/cg.$t.$lo" "$out/cg.$t.$hi" $((hi - lo)) <<'PY'
import re, subprocess, sys
def profile(path):
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", path],
                          capture_output=True, text=True).stdout
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([0-9,]+) \(\s*[0-9.]+%\)\s+(.*)$", line)
        if m and "PROGRAM TOTALS" not in m.group(2):
            out[m.group(2)] = int(m.group(1).replace(",", ""))
    return out
lo, hi, d = profile(sys.argv[1]), profile(sys.argv[2]), int(sys.argv[3])
rows = sorted(((hi[k] - lo.get(k, 0)) / d, k) for k in hi)
for per, name in reversed(rows[-25:]):
    if per >= 2:
        print(f"  {per:8.1f}  {name[:150]}")
PY
done

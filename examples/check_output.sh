#!/usr/bin/env bash
# ctest helper: run a command; pass if it exits 0 and its output contains
# the expected text.   check_output.sh EXPECTED COMMAND [ARGS...]
set -uo pipefail
expected="$1"
shift
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
[ "$rc" -eq 0 ] || { echo "exit status $rc"; exit 1; }
grep -qF -- "$expected" <<<"$out" || { echo "missing: $expected"; exit 1; }

#!/usr/bin/env bash
# stress/model/check.sh -- model-check stress/model/palitra.pml with spin.
#
#   check.sh           the default set (about 1-2 min of CPU; see README.md)
#   check.sh --soak    also the big configurations (3x1 with spurious
#                      wake-ups, the -DTOTALS accounting runs; several GB)
#   check.sh --keep    keep the work directory (pan sources, outputs, trails)
#
# Exit status: 0 when the real model has no error in any run AND every
# mutant is caught (errors >= 1); 1 otherwise; 2 if spin or gcc is missing.
set -u

here=$(cd "$(dirname "$0")" && pwd)
model="$here/palitra.pml"
soak=0
keep=0
for a in "$@"; do
  case "$a" in
    --soak) soak=1 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "check.sh: unknown argument: $a" >&2; exit 2 ;;
  esac
done
for tool in spin gcc; do
  command -v "$tool" >/dev/null || { echo "check.sh: $tool not found" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/palitra-model.XXXXXX")
if [ "$keep" = 1 ]; then
  echo "work directory: $work"
else
  trap 'rm -rf "$work"' EXIT
fi

MEMLIM=${MEMLIM:-4000} # MB per pan run
start=$SECONDS
failures=0
total_cpu=0

printf '%-34s %-7s %12s %12s %8s %8s %6s  %s\n' \
  configuration mode "states" "visited" "wall s" "cpu s" errors result
printf '%s\n' "$(printf '%.0s-' {1..112})"

# run NAME EXPECT MODE "SPIN_DEFINES" "EXTRA_CC_FLAGS" "EXTRA_PAN_FLAGS"
#   EXPECT: pass (errors == 0, search complete) or catch (errors >= 1)
#   MODE:   safety (assertions + invalid end states) or ltl (-a -f)
run() {
  local name=$1 expect=$2 mode=$3 defs=$4 ccx=$5 panx=$6
  local dir="$work/$(echo "$name" | tr -c 'A-Za-z0-9_.-' '_')"
  mkdir -p "$dir"
  cp "$model" "$dir/palitra.pml"
  local cc="-O2 -w -DMEMLIM=$MEMLIM $ccx" pan="-m100000 $panx"
  if [ "$mode" = safety ]; then
    cc="$cc -DSAFETY -DNOCLAIM"
  else
    pan="$pan -a -f"
  fi
  if ! (cd "$dir" && spin -a $defs palitra.pml >spin.out 2>&1 && gcc $cc -o pan pan.c >gcc.out 2>&1); then
    printf '%-34s %-7s %s\n' "$name" "$mode" "BUILD FAILED (see $dir)"
    failures=$((failures + 1))
    return
  fi
  local t
  t=$( { TIMEFORMAT='%R %U'; time (cd "$dir" && ./pan $pan >pan.out 2>&1); } 2>&1 )
  local wall=${t% *} cpu=${t#* }
  local out="$dir/pan.out"
  local errors states visited depth what
  errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' "$out" | tail -1)
  states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$out" | tail -1)
  visited=$(sed -n 's/.*states, stored (\([0-9.e+]*\) visited).*/\1/p' "$out" | tail -1)
  depth=$(sed -n 's/.*(at depth \([0-9]*\)).*/\1/p' "$out" | head -1)
  what=$(sed -n 's/^pan:1: \(.*\) (at depth.*/\1/p' "$out" | head -1)
  : "${errors:=?}" "${states:=?}" "${visited:=-}"
  local incomplete=""
  grep -q 'reached -DMEMLIM bound' "$out" && incomplete="out of memory (MEMLIM)"
  grep -q 'max search depth too small' "$out" && incomplete="depth limit hit"
  local result
  if [ "$expect" = pass ]; then
    if [ "$errors" = 0 ] && [ -z "$incomplete" ]; then
      result=PASS
    else
      result="FAIL ${what:+($what at depth $depth)}${incomplete}"
      failures=$((failures + 1))
    fi
  else
    if [ "$errors" != "?" ] && [ "$errors" -ge 1 ]; then
      result="PASS caught: $what, depth $depth"
    else
      result="FAIL mutant not caught${incomplete:+ ($incomplete)}"
      failures=$((failures + 1))
    fi
  fi
  total_cpu=$(awk -v a="$total_cpu" -v b="$cpu" 'BEGIN { printf "%.2f", a + b }')
  printf '%-34s %-7s %12s %12s %8s %8s %6s  %s\n' \
    "$name" "$mode" "$states" "$visited" "$wall" "$cpu" "$errors" "$result"
}

# ---- the real model
run "2x2"                         pass safety "-DNC=2 -DK=2"            ""          ""
run "2x2 spurious"                pass safety "-DNC=2 -DK=2 -DSPURIOUS" ""          ""
run "3x1"                         pass safety "-DNC=3 -DK=1"            "-DCOLLAPSE" "-w26"
run "2x2 spurious, <> all return" pass ltl    "-DNC=2 -DK=2 -DSPURIOUS" ""          "-w24"

# ---- mutants: each must be reported
run "BUG_NO_GATE 2x2"             catch safety "-DNC=2 -DK=2 -DBUG_NO_GATE"    "" ""
run "BUG_TRUST_WAKE 2x2"          catch safety "-DNC=2 -DK=2 -DBUG_TRUST_WAKE" "" ""
run "BUG_WAKE_ORDER 2x2"          catch safety "-DNC=2 -DK=2 -DBUG_WAKE_ORDER" "" ""
run "BUG_RELAXED 2x2"             catch safety "-DNC=2 -DK=2 -DBUG_RELAXED"    "" ""

if [ "$soak" = 1 ]; then
  run "3x1 spurious"              pass safety "-DNC=3 -DK=1 -DSPURIOUS" "-DCOLLAPSE" "-w27"
  run "2x2 TOTALS"                pass safety "-DNC=2 -DK=2 -DTOTALS"   "" ""
  run "2x2 TOTALS spurious"       pass safety "-DNC=2 -DK=2 -DTOTALS -DSPURIOUS" "" ""
  run "2x2 TOTALS spurious, <> all return" pass ltl "-DNC=2 -DK=2 -DTOTALS -DSPURIOUS" "" "-w26"
fi

printf '%s\n' "$(printf '%.0s-' {1..112})"
echo "total: pan CPU ${total_cpu} s; wall $((SECONDS - start)) s including the spin/gcc builds"
if [ "$failures" -ne 0 ]; then
  echo "check.sh: $failures FAILED run(s); rerun with --keep to inspect pan.out and the trails"
  exit 1
fi
echo "check.sh: all runs passed, every mutant caught"

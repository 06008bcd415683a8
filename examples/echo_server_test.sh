#!/usr/bin/env bash
# ctest example.echo_server: start echo_server on an ephemeral port, echo one
# line through it with bash's /dev/tcp, stop it with SIGINT, expect exit 0.
set -euo pipefail
server="$1"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$server" --port 0 >"$out" &
pid=$!
for _ in $(seq 100); do grep -q '^listening on' "$out" && break; sleep 0.05; done
port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out")
[ -n "$port" ] || { echo "no 'listening on' line"; kill -9 "$pid"; exit 1; }
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'hello palitra\n' >&3
read -r -t 5 reply <&3
exec 3>&-
[ "$reply" = "hello palitra" ] || { echo "echoed '$reply'"; kill -9 "$pid"; exit 1; }
kill -INT "$pid"
wait "$pid"  # set -e: a non-zero exit fails the test
cat "$out"

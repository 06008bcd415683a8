#!/usr/bin/env bash
# ctest example.sync_server: for each case, start sync_server on an
# ephemeral port, GET /api/comments with curl, check the status (and the
# three documents on 200), stop it with SIGTERM and expect exit 0.
#   sync_server_test.sh SYNC_SERVER
set -euo pipefail
server="$1"
out=$(mktemp)
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -f "$out"' EXIT

# A port nothing listens on: bind an ephemeral one and let it go.
down_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 1)

check() { # check EXPECTED_STATUS ARGS...
  local want="$1" port status body
  shift
  "$server" --port 0 "$@" >"$out" &
  pid=$!
  for _ in $(seq 100); do grep -q '^listening on' "$out" && break; sleep 0.05; done
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out")
  [ -n "$port" ] || { echo "no 'listening on' line ($*)"; exit 1; }
  body=$(curl -s -m 10 -w '\n%{http_code}' "http://127.0.0.1:$port/api/comments")
  status=${body##*$'\n'}
  body=${body%$'\n'*}
  echo "[$*] $status $body"
  [ "$status" = "$want" ] || { echo "expected $want"; exit 1; }
  if [ "$want" = 200 ]; then
    [ "$(grep -o '"id":' <<<"$body" | wc -l)" -eq 3 ] || { echo "expected three documents"; exit 1; }
  else
    grep -q '"error"' <<<"$body" || { echo "expected a JSON error"; exit 1; }
    # still serving after a failure
    [ "$(curl -s -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/comments")" = "$want" ]
  fi
  kill -TERM "$pid"
  wait "$pid" # set -e: a non-zero exit fails the test
  pid=
}

check 200                                      # palitra, the built-in upstream
check 200 --variant blocking
check 200 --variant fresh
check 502 --upstream "http://127.0.0.1:$down_port"  # upstream down
check 502 --timeout-ms 5                       # slower than the timeout (20 ms upstream)
check 502 --variant blocking --timeout-ms 5
echo "sync_server: ok"

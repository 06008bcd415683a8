#!/usr/bin/env bash
# Build and run the demo (README, Quick start): a synchronous HTTP server whose
# handler needs three upstream documents, run three ways under the same load
# (blocking calls, palitra with one shared client, a fresh runner per
# request); one table at the end, about 40 s. Arguments go to the demo
# (e.g. --seconds 3). Installs missing Debian packages first (needs root or sudo).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/deps.sh
source scripts/deps.sh
palitra_deps base

cmake --preset dev
cmake --build --preset dev --target palitra_http_demo
exec ./build/dev/examples/palitra_http_demo "$@"

#!/usr/bin/env bash
# Build and run the demo: several synchronous threads call palitra::run on one
# background event loop. Installs missing Debian packages first (needs root or sudo).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/deps.sh
source scripts/deps.sh
palitra_deps base

cmake --preset dev
cmake --build --preset dev --target palitra_demo
exec ./build/dev/examples/palitra_demo

#!/usr/bin/env bash
# Install the Debian 12 packages that the given lanes need, only when missing.
#
#   bash scripts/deps.sh [group...]      groups: base sanitizers bench fuzz model
#   source scripts/deps.sh; palitra_deps base sanitizers
#
# apt-get update runs at most once, and only if something is missing. Uses sudo
# only when not root and sudo exists.

palitra_deps_packages() {
  case "$1" in
    # libmimalloc2.0: the run-time library palitra dlopen()s (-dev depends on it,
    # but it is what a run needs; nothing else pulls it in: no DT_NEEDED).
    # libcurl4-openssl-dev: palitra::http (its tests run in every lane);
    # openssl (the CLI makes the TLS tests' certificates) and nghttp2-server
    # (nghttpd: the TLS and HTTP/2 loopback server of those tests);
    # libcpp-httplib-dev: the HTTP examples (sync_server, the demo); curl: the
    # client of their ctest (examples/sync_server_test.sh).
    base)       echo "cmake ninja-build g++ catch2 libmimalloc-dev libmimalloc2.0 libconcurrentqueue-dev pkg-config libcurl4-openssl-dev openssl nghttp2-server libcpp-httplib-dev curl" ;;
    sanitizers) echo "clang-16 libclang-rt-16-dev" ;;
    # bench: python3-matplotlib is optional (plots only); never a test dependency.
    bench)      echo "libasio-dev python3-matplotlib" ;;
    fuzz)       echo "clang-16 libclang-rt-16-dev libfuzzer-16-dev" ;;
    model)      echo "spin" ;;
    *)          echo "deps.sh: unknown group '$1' (base sanitizers bench fuzz model)" >&2; return 2 ;;
  esac
}

palitra_deps() {
  local groups=("$@") missing=() group pkg pkgs
  [ ${#groups[@]} -gt 0 ] || groups=(base)

  for group in "${groups[@]}"; do
    pkgs=$(palitra_deps_packages "$group") || return
    for pkg in $pkgs; do
      if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
        case " ${missing[*]} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
      fi
    done
  done

  if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: ${groups[*]}: all packages present"
    return 0
  fi

  if ! command -v apt-get >/dev/null 2>&1; then
    echo "deps: missing ${missing[*]}, and apt-get is not available (palitra's scripts target Debian 12)" >&2
    return 1
  fi

  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      echo "deps: missing ${missing[*]}; run as root or install sudo" >&2
      return 1
    fi
  fi

  echo "deps: installing ${missing[*]}"
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
}

# Executed (not sourced): install the groups named on the command line.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  palitra_deps "$@"
fi

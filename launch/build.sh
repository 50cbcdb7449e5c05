#!/usr/bin/env bash
# Configures and builds shopclip into ${SHOPCLIP_BUILD_DIR:-build} (Release, Ninja).
# SHOPCLIP_TARGET=shopclip builds only the binary (no tests).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SHOPCLIP_BUILD_DIR:-$root/build}
jobs=${SHOPCLIP_JOBS:-$(nproc)}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
if [ -n "${SHOPCLIP_TARGET:-}" ]; then
  cmake --build "$build" -j "$jobs" --target "$SHOPCLIP_TARGET"
else
  cmake --build "$build" -j "$jobs"
fi

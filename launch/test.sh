#!/usr/bin/env bash
# The whole test suite on a fresh Debian bookworm machine: installs what is missing, builds
# (Release, with tests), runs every test with CTest (unit suites and the end-to-end pipeline).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/launch/setup.sh"
bash "$root/launch/build.sh"
cd "${SHOPCLIP_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "$(nproc)" "$@"

#!/usr/bin/env bash
# Installs every Debian bookworm package shopclip needs (idempotent: only what is missing).
# Run as root or with sudo available. LibTorch is linked against OpenBLAS through the
# libblas.so.3 alternative; installing libopenblas0-pthread makes it the default (Debian's
# reference BLAS is ~30x slower for LibTorch's matrix products).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config ccache git
  libtorch-dev libopenblas0-pthread libopenblas0-openmp libopenblas-dev
  libfaiss-dev libhdf5-dev libopenmpi-dev openmpi-bin
  libyaml-cpp-dev libfmt-dev libgtest-dev libgmock-dev nlohmann-json3-dev libcli11-dev
  libjpeg-dev libturbojpeg0-dev libpng-dev zlib1g-dev libicu-dev libgoogle-perftools-dev python3
  libxxhash-dev xxhash libcpp-httplib-dev libdnnl-dev
  dataset-fashion-mnist slurm-wlm munge python3-torch python3-pil
  python3-jieba chromium fonts-noto-cjk python3-websocket python3-h5py iproute2
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "[setup] installing: ${missing[*]}"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
case "$blas" in
  *openblas*) ;;
  *) echo "[setup] warning: libblas.so.3 resolves to '$blas', not OpenBLAS; LibTorch will be slow." >&2
     echo "[setup] fix: update-alternatives --config libblas.so.3-x86_64-linux-gnu" >&2 ;;
esac
echo "[setup] dependencies ready"

#!/usr/bin/env bash
# Prepares, on a Debian bookworm machine, the libraries shopclip links besides LibTorch, for a
# machine that has a CUDA LibTorch (PyTorch's) but none of our Debian packages and no network (the
# lent GPU machine, issue 15). Downloads the packages with apt-get, unpacks them into a private
# prefix, drops what a build does not need (static archives other than FAISS's, docs, man pages)
# and packs the prefix as .devdeps/prefix.tar.xz (ignored by git; carried to the device).
# experiments/gpu/device_env.sh unpacks it there and points CMake and the loader at it.
# Usage: experiments/gpu/fetch_deps.sh   (as root; apt-get update first if the lists are old)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$root/.devdeps
packages=(
  # search, and the BLAS/LAPACK its static library calls (OpenMP build)
  libfaiss-dev libopenblas0-openmp libgfortran5 libquadmath0
  # HDF5 and what libhdf5_serial loads (libcurl's closure; libssl/libcrypto/zstd are everywhere)
  libhdf5-dev libhdf5-103-1 libhdf5-hl-100 libsz2 libaec0 libcurl4 libbrotli1 libgnutls30
  libgssapi-krb5-2 libhogweed6 libidn2-0 libk5crypto3 libkrb5-3 libkrb5support0 libldap-2.5-0
  libnettle8 libnghttp2-14 libp11-kit0 libpsl5 librtmp1 libsasl2-2 libssh2-1 libtasn1-6
  libunistring2 libgmp10 libffi8 libkeyutils1 libcom-err2
  # Open MPI (mpirun for the one-rank NCCL test; libmpi for the bootstrap)
  libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common libhwloc15 libudev1 libevent-core-2.1-7
  libevent-pthreads-2.1-7 libevent-2.1-7 libpmix2 libmunge2
  # configs, logs, JSON, command line
  libyaml-cpp-dev libyaml-cpp0.7 libfmt-dev libfmt9 nlohmann-json3-dev libcli11-dev
  # images, hashing, text segmentation, allocator
  libturbojpeg0-dev libturbojpeg0 libpng-dev libpng16-16 zlib1g-dev libxxhash-dev libxxhash0
  libicu-dev libicu72 libtcmalloc-minimal4
  # pkg-config (CMake's pkg_check_modules); GoogleTest for the test binaries
  pkgconf pkgconf-bin libpkgconf3 libgtest-dev
)
rm -rf "$out/debs" "$out/prefix"
mkdir -p "$out/debs" "$out/prefix"
(cd "$out/debs" && apt-get download "${packages[@]}")
for deb in "$out"/debs/*.deb; do dpkg -x "$deb" "$out/prefix"; done
lib=$out/prefix/usr/lib/x86_64-linux-gnu
# Static archives are big and unused, except FAISS's and GoogleTest's (Debian ships only those).
find "$out/prefix" -name '*.a' ! -name libfaiss.a ! -name 'libgtest*.a' -delete
rm -rf "$out/prefix/usr/share/doc" "$out/prefix/usr/share/man" "$out/prefix/usr/share/lintian" \
  "$out/prefix/usr/share/locale"
# The -dev packages' unversioned links point to Debian's alternatives or are missing for packages
# unpacked without their -dev: make the ones the build looks for.
ln -sf openblas-openmp/libblas.so.3 "$lib/libblas.so"
ln -sf openblas-openmp/liblapack.so.3 "$lib/liblapack.so"
ln -sf libtcmalloc_minimal.so.4 "$lib/libtcmalloc_minimal.so"
# zlib itself is on every system; the -dev link must not name this machine's exact version.
ln -sf /lib/x86_64-linux-gnu/libz.so.1 "$lib/libz.so"
tar -C "$out" -cJf "$out/prefix.tar.xz" prefix
du -sh "$out/debs" "$out/prefix" "$out/prefix.tar.xz"

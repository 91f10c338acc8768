#!/usr/bin/env bash
# Builds fitlm with the CUDA backend on the lent device machine (scripts/device/README.md).
# The device image has the CUDA toolkit but not fitlm's Debian libraries: those travel as .deb
# files in .debs/ (made here by scripts/device/fetch-debs.sh, carried with `carry: [".debs"]`)
# and are unpacked into a private prefix, never into /.
#   bash scripts/device/build.sh [BUILD_DIR]   # then BUILD_DIR/fitlm, BUILD_DIR/tests/fitlm_cuda_tests
# Programs it builds need LD_LIBRARY_PATH=/opt/fitlm-deps/usr/lib/x86_64-linux-gnu[/openblas-pthread].
set -euo pipefail
BUILD=${1:-build-device}
PREFIX=/opt/fitlm-deps
if [ ! -d "$PREFIX/usr" ]; then
  ls .debs/*.deb >/dev/null 2>&1 || { echo "no .debs/: run scripts/device/fetch-debs.sh here and carry .debs"; exit 2; }
  for f in .debs/*.deb; do dpkg -x "$f" "$PREFIX"; done
fi
LIBDIR=$PREFIX/usr/lib/x86_64-linux-gnu
export PKG_CONFIG_SYSROOT_DIR=$PREFIX
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig:$LIBDIR/openblas-pthread/pkgconfig:$PREFIX/usr/share/pkgconfig
export LD_LIBRARY_PATH=$LIBDIR:$LIBDIR/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=/usr/local/cuda/bin:$PATH
# Always from scratch: a warm machine once reused stale objects (bench/NOTES.md, session 4).
rm -rf "$BUILD"
cmake -S . -B "$BUILD" -G Ninja -DFITLM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX/usr" >"$BUILD.cmake.log" 2>&1 ||
  { cat "$BUILD.cmake.log"; exit 1; }
cmake --build "$BUILD" -j "$(nproc)" --target fitlm fitlm_cuda_tests cuda_ops_bench \
  >"$BUILD.build.log" 2>&1 || { grep -B2 -A12 -m4 -E 'error|FAILED' "$BUILD.build.log"; exit 1; }

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
# Every call unpacks what .debs/ holds (a second or two): a warm machine may have a prefix from
# an earlier call with fewer packages.
ls .debs/*.deb >/dev/null 2>&1 || { echo "no .debs/: run scripts/device/fetch-debs.sh here and carry .debs"; exit 2; }
for f in .debs/*.deb; do dpkg -x "$f" "$PREFIX"; done
LIBDIR=$PREFIX/usr/lib/x86_64-linux-gnu
export PKG_CONFIG_SYSROOT_DIR=$PREFIX
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig:$LIBDIR/openblas-pthread/pkgconfig:$PREFIX/usr/share/pkgconfig
export LD_LIBRARY_PATH=$LIBDIR:$LIBDIR/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=/usr/local/cuda/bin:$PATH
# From scratch: a warm machine once reused stale objects (bench/NOTES.md, session 4).
# FITLM_REUSE_BUILD=1 keeps a build this session's previous call made from the same tree.
if [ -n "${FITLM_REUSE_BUILD:-}" ] && [ -x "$BUILD/fitlm" ]; then
  echo "reusing $BUILD"
  exit 0
fi
rm -rf "$BUILD"
# NCCL (backend/cuda/nccl_comm.h) from the CUDA toolkit, else from the Python package
# nvidia-nccl-cu13 (the device's toolkit has none); linked by path, so binaries find it (RPATH).
if [ ! -f /usr/local/cuda/include/nccl.h ]; then
  nccl=$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null ||
    find / -path /proc -prune -o -name nccl.h -path '*nvidia/nccl/include*' -print 2>/dev/null | head -1 | xargs -r dirname | xargs -r dirname)
  echo "NCCL from $nccl"
  ln -sf libnccl.so.2 "$nccl/lib/libnccl.so" 2>/dev/null
  FITLM_CMAKE_EXTRA="${FITLM_CMAKE_EXTRA:-} -DFITLM_NCCL_INCLUDE_DIR=$nccl/include -DFITLM_NCCL_LIBRARY=$nccl/lib/libnccl.so.2"
fi
# Open MPI from the prefix too (dist/mpi_comm.cpp), named directly: its compiler wrappers do not
# work from a prefix. FITLM_CMAKE_EXTRA adds options (NCCL's location above, and any others);
# FITLM_DEVICE_TARGETS replaces the targets.
MPI_ARGS=()
if [ -f "$LIBDIR/openmpi/include/mpi.h" ]; then
  MPI_ARGS=(-DMPI_SKIP_COMPILER_WRAPPER=ON -DMPI_C_HEADER_DIR="$LIBDIR/openmpi/include"
    -DMPI_C_LIB_NAMES=mpi -DMPI_mpi_LIBRARY="$LIBDIR/libmpi.so.40")
fi
# shellcheck disable=SC2086
cmake -S . -B "$BUILD" -G Ninja -DFITLM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX/usr" "${MPI_ARGS[@]}" \
  ${FITLM_CMAKE_EXTRA:-} >"$BUILD.cmake.log" 2>&1 ||
  { cat "$BUILD.cmake.log"; exit 1; }
# shellcheck disable=SC2086
cmake --build "$BUILD" -j "$(nproc)" --target ${FITLM_DEVICE_TARGETS:-fitlm fitlm_cuda_tests cuda_ops_bench} \
  >"$BUILD.build.log" 2>&1 || { grep -B2 -A12 -m4 -E 'error|FAILED' "$BUILD.build.log"; exit 1; }

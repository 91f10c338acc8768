#!/usr/bin/env bash
# A/B of the CUDA op benchmark (bench/cuda_ops_bench.cpp) between two source trees, each built
# with the stand-alone project tests/cuda/standalone (core + backends only, fast to build).
#   bash scripts/device/ops-ab.sh OLD_TREE NEW_TREE   (e.g. `git archive <commit>` unpacked here)
set -euo pipefail
PREFIX=/opt/fitlm-deps
[ -d "$PREFIX/usr" ] || for f in .debs/*.deb; do dpkg -x "$f" "$PREFIX"; done
LIBDIR=$PREFIX/usr/lib/x86_64-linux-gnu
export PKG_CONFIG_SYSROOT_DIR=$PREFIX
export PKG_CONFIG_PATH=$LIBDIR/pkgconfig:$LIBDIR/openblas-pthread/pkgconfig:$PREFIX/usr/share/pkgconfig
export LD_LIBRARY_PATH=$LIBDIR:$LIBDIR/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for tree in "$@"; do
  b=/tmp/ops-$(basename "$tree")
  cmake -S "$tree/tests/cuda/standalone" -B "$b" -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_PREFIX_PATH="$PREFIX/usr" >"$b.log" 2>&1 && ninja -C "$b" cuda_ops_bench >>"$b.log" 2>&1 ||
    { tail -30 "$b.log"; exit 1; }
done
for round in 1 2; do  # twice each, interleaved: the spread between rounds is the noise
  for tree in "$@"; do
    echo "== $(basename "$tree") (round $round)"
    /tmp/ops-$(basename "$tree")/cuda_ops_bench | grep -i attention
  done
done

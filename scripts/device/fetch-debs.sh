#!/usr/bin/env bash
# Downloads (here, not on the device) the Debian packages that scripts/device/build.sh unpacks
# on the device machine. .debs/ is ignored by git (.git/info/exclude) and carried by the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
exclude=$(git rev-parse --git-path info/exclude)  # a worktree's .git is a file
mkdir -p "$(dirname "$exclude")"
grep -qx '/.debs/' "$exclude" 2>/dev/null || echo '/.debs/' >>"$exclude"
mkdir -p .debs && cd .debs
apt-get download nlohmann-json3-dev libcli11-dev libfmt-dev libfmt9 libyaml-cpp-dev \
  libyaml-cpp0.7 libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 \
  libopenblas-dev libopenblas0 libopenblas0-pthread libopenblas-pthread-dev libgfortran5 \
  libgtest-dev
# The image decoders (src/fitlm/vision): headers and the libraries they link.
apt-get download libjpeg62-turbo-dev libjpeg62-turbo libpng-dev libpng16-16 libwebp-dev \
  libwebp7 libwebpdemux2 libwebpmux3 zlib1g-dev
# Open MPI, for building and loading fitlm_lib (dist/mpi_comm.cpp) there: headers and the
# libraries libmpi loads, not mpirun (nccl-check.sh starts its ranks itself).
apt-get download libopenmpi-dev libopenmpi3 libhwloc15 libevent-core-2.1-7 \
  libevent-pthreads-2.1-7 libudev1

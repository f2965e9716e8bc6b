#!/usr/bin/env bash
# Install the Debian packages asrkit needs (espeak-ng/flite for the synthetic corpus, libsndfile for audio I/O,
# a C++ toolchain and cmake for building fast_rnnt). Does nothing when they are all present.
set -euo pipefail

need=()
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v flite >/dev/null 2>&1 || need+=(flite)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
ldconfig -p 2>/dev/null | grep -q libsndfile || need+=(libsndfile1)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "install_system_deps: installing ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install_system_deps: need root (or sudo) to apt-get install ${need[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"

#!/usr/bin/env bash
# Install the Debian packages asrkit needs: the speech synthesizers of the synthetic corpus (espeak-ng, flite,
# festival with its kal_diphone voice, SVOX Pico), libsndfile for audio I/O, a C++ toolchain and cmake for building
# fast_rnnt. Does nothing when they are all present.
#
# SVOX Pico (libttspico-utils) is in Debian's non-free component: it is installed from a private sources list,
# /etc/apt/sources.list.d/asrkit-nonfree.list, for this machine's Debian suite (from /etc/os-release). Where that
# is impossible (not Debian, no network), Pico is skipped with a warning and the corpus can use the other engines.
set -euo pipefail
os_release=${ASRKIT_OS_RELEASE:-/etc/os-release}           # (both overridable for tests)
nonfree_list=${ASRKIT_NONFREE_LIST:-/etc/apt/sources.list.d/asrkit-nonfree.list}

need=()
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v flite >/dev/null 2>&1 || need+=(flite)
command -v festival >/dev/null 2>&1 || need+=(festival)
[ -d /usr/share/festival/voices/english/kal_diphone ] || need+=(festvox-kallpc16k)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
ldconfig -p 2>/dev/null | grep -q libsndfile || need+=(libsndfile1)
need_pico=""
command -v pico2wave >/dev/null 2>&1 || need_pico=1

if [ ${#need[@]} -eq 0 ] && [ -z "$need_pico" ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install_system_deps: need root (or sudo) to apt-get install ${need[*]} ${need_pico:+libttspico-utils}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
if [ ${#need[@]} -gt 0 ]; then
  echo "install_system_deps: installing ${need[*]}"
  $SUDO apt-get update -qq
  # --no-install-recommends: festival recommends other voices, some of which asrkit must never use.
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

if [ -n "$need_pico" ]; then
  suite=""
  if [ -r "$os_release" ]; then
    suite=$(. "$os_release"; [ "${ID:-}" = debian ] && echo "${VERSION_CODENAME:-}" || true)
  fi
  list=$nonfree_list
  if [ -z "$suite" ]; then
    echo "install_system_deps: WARNING: not a Debian release with a codename; SVOX Pico (pico2wave) skipped" >&2
  elif echo "deb http://deb.debian.org/debian $suite non-free" | $SUDO tee "$list" >/dev/null &&
       $SUDO apt-get update -qq -o Dir::Etc::sourcelist="$list" -o Dir::Etc::sourceparts=- \
         -o APT::Get::List-Cleanup=0 &&
       $SUDO apt-get install -y -qq --no-install-recommends libttspico-utils; then
    echo "install_system_deps: installed SVOX Pico (libttspico-utils) from $list"
  else
    echo "install_system_deps: WARNING: could not install SVOX Pico (libttspico-utils, Debian non-free);" \
         "the pico engine is unavailable" >&2
  fi
fi

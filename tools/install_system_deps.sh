#!/usr/bin/env bash
# Install the Debian packages asrkit needs: the speech synthesizers of the synthetic corpus (espeak-ng, flite,
# festival with its kal_diphone voice, SVOX Pico, RHVoice with its English voices), libsndfile for audio I/O, a C++
# toolchain and cmake for building fast_rnnt. Does nothing when they are all present.
#
# SVOX Pico (libttspico-utils) and RHVoice (rhvoice, rhvoice-english) are in Debian's non-free component: they are
# installed from a private sources list, /etc/apt/sources.list.d/asrkit-nonfree.list, for this machine's Debian
# suite (from /etc/os-release). Where that is impossible (not Debian, no network), each is skipped with a warning
# and the corpus can use the other engines.
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
# The non-free engines missing here, as "label|packages" (label: the name warnings and the log use).
nonfree=()
command -v pico2wave >/dev/null 2>&1 || nonfree+=("SVOX Pico (pico2wave)|libttspico-utils")
{ command -v RHVoice-test >/dev/null 2>&1 && [ -d /usr/share/RHVoice/voices/bdl ]; } ||
  nonfree+=("RHVoice (RHVoice-test)|rhvoice rhvoice-english")

if [ ${#need[@]} -eq 0 ] && [ ${#nonfree[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install_system_deps: need root (or sudo) to apt-get install ${need[*]} ${nonfree[*]#*|}" >&2
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

if [ ${#nonfree[@]} -gt 0 ]; then
  suite=""
  if [ -r "$os_release" ]; then
    suite=$(. "$os_release"; [ "${ID:-}" = debian ] && echo "${VERSION_CODENAME:-}" || true)
  fi
  list=$nonfree_list
  listed=""
  if [ -n "$suite" ] && echo "deb http://deb.debian.org/debian $suite non-free" | $SUDO tee "$list" >/dev/null &&
     $SUDO apt-get update -qq -o Dir::Etc::sourcelist="$list" -o Dir::Etc::sourceparts=- \
       -o APT::Get::List-Cleanup=0; then
    listed=1
  fi
  for item in "${nonfree[@]}"; do
    label=${item%%|*} packages=${item#*|}
    if [ -z "$suite" ]; then
      echo "install_system_deps: WARNING: not a Debian release with a codename; $label skipped" >&2
    # shellcheck disable=SC2086  # $packages: several package names
    elif [ -n "$listed" ] && $SUDO apt-get install -y -qq --no-install-recommends $packages; then
      echo "install_system_deps: installed $label: $packages from $list"
    else
      echo "install_system_deps: WARNING: could not install $label ($packages, Debian non-free);" \
           "that engine is unavailable" >&2
    fi
  done
fi

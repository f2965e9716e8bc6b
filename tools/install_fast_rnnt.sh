#!/usr/bin/env bash
# Build and install fast_rnnt from its sdist into a Python environment: with CUDA when `nvcc` is on PATH
# and the installed torch is a CUDA build (torch.version.cuda), for the GPU architectures that torch was
# built for; CPU only otherwise.
#
# Usage: tools/install_fast_rnnt.sh [PYTHON]      (default: .venv/bin/python)
# Sourcing the script defines its detection functions without building anything (tests use this).
# TORCH_CUDA_ARCH_LIST (e.g. "8.0;9.0") overrides the architectures taken from torch.
#
# Why a script: fast_rnnt 1.3 ships no wheel for Python 3.11 / torch 2.x, and its CMake build
# downloads pybind11 at configure time, which fails offline.  We fetch both sdists from the
# package registry, point CMake at the unpacked pybind11 and build against the torch that is
# already installed.  torch is never installed or changed (--no-deps, --no-build-isolation).
#
# Idempotent: exits 0 at once when `import fast_rnnt` already works.
FAST_RNNT_VERSION="1.3"
# pybind11: its 2.x sdists on PyPI ship only headers + CMake config files, no CMakeLists.txt, so
# FetchContent cannot add_subdirectory() them; 3.x sdists are the full CMake project. torch 2.13
# bundles pybind11 3.0.x headers, so the same 3.0 series is used here.
PYBIND11_VERSION="3.0.1"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${REPO_ROOT}/.build/fast_rnnt"

log() { echo "[install_fast_rnnt] $*"; }

# Exit status 0 when a CUDA build is possible and useful: nvcc on PATH and a CUDA build of torch.
want_cuda_build() {
    local python="$1"
    command -v nvcc >/dev/null 2>&1 || return 1
    local cuda
    cuda="$("${python}" -c 'import torch; print(torch.version.cuda or "")' 2>/dev/null)" || return 1
    [[ -n "${cuda}" ]]
}

# The compute capabilities to build for, as CMake wants them ("80 90"): TORCH_CUDA_ARCH_LIST when set
# ("8.0;9.0+PTX"), else the sm_XY targets torch itself was compiled for (no GPU needed to ask).
torch_cuda_archs() {
    local python="$1"
    TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-}" "${python}" - <<'EOF'
import os
import re

listed = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
if listed:
    archs = [a.replace("+PTX", "").replace(".", "") for a in re.split(r"[;\s]+", listed) if a]
else:
    import torch

    flags = torch._C._cuda_getArchFlags() if hasattr(torch._C, "_cuda_getArchFlags") else ""
    archs = re.findall(r"sm_(\d+)", flags or "")
print(" ".join(sorted(set(archs), key=int)))
EOF
}

# The -DFT_WITH_CUDA=... argument for fast_rnnt's CMake build.
cuda_cmake_flag() {
    if want_cuda_build "$1"; then echo "-DFT_WITH_CUDA=ON"; else echo "-DFT_WITH_CUDA=OFF"; fi
}

# fast_rnnt's CMakeLists builds for a fixed list of architectures (35 ... 86: CUDA 12 refuses sm_35, and
# sm_90 is missing); replace that list with ours in the unpacked sources.
patch_cuda_archs() {
    local cmakelists="$1" archs="$2"
    sed -i -e "s/^\( *\)set(FT_COMPUTE_ARCH_CANDIDATES .*)/\1set(FT_COMPUTE_ARCH_CANDIDATES ${archs})/" \
        -e "s/^\( *\)list(APPEND FT_COMPUTE_ARCH_CANDIDATES .*)/\1# (architectures set from torch)/" "${cmakelists}"
}

main() {
set -euo pipefail
PYTHON="${1:-.venv/bin/python}"

if ! "${PYTHON}" -c "import sys" >/dev/null 2>&1; then
    echo "[install_fast_rnnt] error: '${PYTHON}' is not a working Python interpreter" >&2
    echo "[install_fast_rnnt] hint: pass the interpreter, e.g. tools/install_fast_rnnt.sh .venv/bin/python" >&2
    exit 1
fi
# Absolute path: the script changes directory below.
PYTHON="$("${PYTHON}" -c 'import sys; print(sys.executable)')"

if ! "${PYTHON}" -c "import torch" >/dev/null 2>&1; then
    echo "[install_fast_rnnt] error: torch is not importable by ${PYTHON}; install asrkit (and torch) first" >&2
    exit 1
fi

CUDA_FLAG="$(cuda_cmake_flag "${PYTHON}")"
if [[ "${CUDA_FLAG}" == "-DFT_WITH_CUDA=ON" ]]; then
    if "${PYTHON}" -c "import fast_rnnt, sys; sys.exit(0 if fast_rnnt.with_cuda() else 1)" >/dev/null 2>&1; then
        log "fast_rnnt with CUDA is already importable by ${PYTHON}; nothing to do."
        exit 0
    fi
    log "nvcc and a CUDA build of torch found: building fast_rnnt with CUDA"
elif "${PYTHON}" -c "import fast_rnnt" >/dev/null 2>&1; then
    log "fast_rnnt is already importable by ${PYTHON}; nothing to do."
    exit 0
fi

PIP=("${PYTHON}" -m pip)

log "ensuring setuptools and wheel are present (needed by --no-build-isolation)"
"${PIP[@]}" install --quiet --no-deps "setuptools>=68" wheel

# fast_rnnt's CMakeLists needs a modern cmake; prefer one new enough on PATH, else pip's.
cmake_ok() {
    local exe="$1"
    command -v "${exe}" >/dev/null 2>&1 || return 1
    "${exe}" -P /dev/stdin <<'EOF' >/dev/null 2>&1
if(CMAKE_VERSION VERSION_LESS 3.18)
  message(FATAL_ERROR "too old")
endif()
EOF
}
PY_BIN_DIR="$("${PYTHON}" -c 'import os, sys; print(os.path.dirname(sys.executable))')"
if cmake_ok "${PY_BIN_DIR}/cmake"; then
    log "using cmake from the environment: ${PY_BIN_DIR}/cmake"
elif cmake_ok cmake; then
    log "using system cmake: $(command -v cmake)"
else
    log "no cmake >= 3.18 found; installing cmake into the environment with pip"
    "${PIP[@]}" install --quiet --no-deps cmake
fi
# The build (setup.py) calls `cmake` from PATH: put the environment's bin first.
export PATH="${PY_BIN_DIR}:${PATH}"

mkdir -p "${BUILD_DIR}"
cd "${BUILD_DIR}"

FT_SDIST="${BUILD_DIR}/fast_rnnt-${FAST_RNNT_VERSION}.tar.gz"
PB_SDIST="${BUILD_DIR}/pybind11-${PYBIND11_VERSION}.tar.gz"
if [[ ! -f "${FT_SDIST}" ]]; then
    log "downloading fast_rnnt==${FAST_RNNT_VERSION} sdist"
    "${PIP[@]}" download --quiet --no-deps --no-binary fast_rnnt "fast_rnnt==${FAST_RNNT_VERSION}" -d "${BUILD_DIR}"
fi
if [[ ! -f "${PB_SDIST}" ]]; then
    log "downloading pybind11==${PYBIND11_VERSION} sdist"
    "${PIP[@]}" download --quiet --no-deps --no-binary pybind11 "pybind11==${PYBIND11_VERSION}" -d "${BUILD_DIR}"
fi

PB_DIR="${BUILD_DIR}/pybind11-${PYBIND11_VERSION}"
if [[ ! -f "${PB_DIR}/CMakeLists.txt" ]]; then
    log "unpacking pybind11"
    rm -rf "${PB_DIR}"
    tar -xzf "${PB_SDIST}" -C "${BUILD_DIR}"
fi

PY_INCLUDE="$("${PYTHON}" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
if [[ ! -f "${PY_INCLUDE}/Python.h" ]]; then
    echo "[install_fast_rnnt] error: Python.h not found in ${PY_INCLUDE}" >&2
    echo "[install_fast_rnnt] hint: install the Python development headers (e.g. apt-get install python3-dev)" >&2
    exit 1
fi

SOURCE="${FT_SDIST}"
if [[ "${CUDA_FLAG}" == "-DFT_WITH_CUDA=ON" ]]; then
    ARCHS="$(torch_cuda_archs "${PYTHON}")"
    if [[ -z "${ARCHS}" ]]; then
        echo "[install_fast_rnnt] error: could not tell which GPU architectures torch was built for" >&2
        echo "[install_fast_rnnt] hint: set TORCH_CUDA_ARCH_LIST, e.g. TORCH_CUDA_ARCH_LIST='8.0;9.0'" >&2
        exit 1
    fi
    SOURCE="${BUILD_DIR}/fast_rnnt-${FAST_RNNT_VERSION}-cuda"
    rm -rf "${SOURCE}" && mkdir -p "${SOURCE}"
    tar -xzf "${FT_SDIST}" -C "${SOURCE}" --strip-components=1
    patch_cuda_archs "${SOURCE}/CMakeLists.txt" "${ARCHS}"
    log "CUDA architectures (from torch): ${ARCHS}"
fi

export FT_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=Release ${CUDA_FLAG} -DFT_BUILD_TESTS=OFF -DCMAKE_CXX_STANDARD=17 -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DFETCHCONTENT_SOURCE_DIR_PYBIND11=${PB_DIR} -DCMAKE_CXX_FLAGS=-I${PY_INCLUDE}"
export FT_MAKE_ARGS="${FT_MAKE_ARGS:--j2}"

TORCH_BEFORE="$("${PYTHON}" -c 'import torch; print(torch.__version__)')"
log "building fast_rnnt ${FAST_RNNT_VERSION} against torch ${TORCH_BEFORE} (${CUDA_FLAG}; CPU only: ~1-2 min on 2 cores)"
"${PIP[@]}" install --no-deps --no-build-isolation --no-cache-dir "${SOURCE}"

TORCH_AFTER="$("${PYTHON}" -c 'import torch; print(torch.__version__)')"
if [[ "${TORCH_BEFORE}" != "${TORCH_AFTER}" ]]; then
    echo "[install_fast_rnnt] error: torch changed from ${TORCH_BEFORE} to ${TORCH_AFTER}; this must not happen" >&2
    exit 1
fi

log "checking the installed module"
"${PYTHON}" - <<'EOF'
import torch
import fast_rnnt

# Smallest smoke test: a 1x1 lattice, one symbol.
logits = torch.zeros(1, 1, 2, 3)
loss = fast_rnnt.rnnt_loss(logits, torch.tensor([[1]]), termination_symbol=0, reduction="sum")
assert torch.isfinite(loss), loss
print(f"[install_fast_rnnt] fast_rnnt imported from {fast_rnnt.__file__}; smoke loss={loss.item():.4f}; "
      f"with CUDA: {fast_rnnt.with_cuda()}")
EOF
log "done."
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi

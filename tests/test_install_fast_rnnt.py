"""tools/install_fast_rnnt.sh chooses a CUDA build only when nvcc is on PATH *and* torch is a CUDA build.

The script's detection functions are sourced (sourcing builds nothing) and run in a subprocess against a fake
``torch`` package (``torch.version.cuda``, the arch flags torch was compiled for) and a PATH with or without a
fake ``nvcc``; nothing is built.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "install_fast_rnnt.sh"


def _fake_env(tmp_path: Path, cuda: str | None, nvcc: bool) -> dict:
    pkg = tmp_path / "site" / "torch"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "import types\n"
        f"version = types.SimpleNamespace(cuda={cuda!r})\n"
        "class _C:\n"
        "    @staticmethod\n"
        "    def _cuda_getArchFlags():\n"
        "        return 'sm_80 sm_90 sm_75 compute_90'\n"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if nvcc:
        (bin_dir / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.4'\n")
        (bin_dir / "nvcc").chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "site"), "HOME": str(tmp_path)}


def _run(snippet: str, env: dict) -> str:
    proc = subprocess.run(["bash", "-c", f'source "{SCRIPT}"; {snippet}'], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize(
    "cuda, nvcc, flag",
    [("12.4", True, "ON"),     # a GPU machine: nvcc and a CUDA torch
     (None, True, "OFF"),      # this machine: nvcc, but a CPU torch -> the CPU build stays
     ("12.4", False, "OFF"),   # a CUDA torch without the toolkit
     (None, False, "OFF")],
)
def test_cuda_build_needs_nvcc_and_a_cuda_torch(tmp_path, cuda, nvcc, flag):
    env = _fake_env(tmp_path, cuda, nvcc)
    assert _run(f'cuda_cmake_flag "{sys.executable}"', env) == f"-DFT_WITH_CUDA={flag}"


def test_cuda_archs_come_from_torch_or_the_env(tmp_path):
    env = _fake_env(tmp_path, "12.4", True)
    assert _run(f'torch_cuda_archs "{sys.executable}"', env) == "75 80 90"
    env["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
    assert _run(f'torch_cuda_archs "{sys.executable}"', env) == "80 90"


def test_patch_replaces_fast_rnnts_fixed_arch_list(tmp_path):
    cmakelists = tmp_path / "CMakeLists.txt"
    cmakelists.write_text(
        "  set(FT_COMPUTE_ARCH_CANDIDATES 35 50 60 61 70 75)\n"
        '  if(CUDA_VERSION VERSION_GREATER "11.0")\n'
        "    list(APPEND FT_COMPUTE_ARCH_CANDIDATES 80 86)\n"
        "  endif()\n"
    )
    _run(f'patch_cuda_archs "{cmakelists}" "80 90"', _fake_env(tmp_path, "12.4", True))
    text = cmakelists.read_text()
    assert "  set(FT_COMPUTE_ARCH_CANDIDATES 80 90)\n" in text
    assert "35" not in text and "86" not in text


def test_the_real_environment():
    """Here (an nvcc binary, a CPU torch) the CPU build stays; on a GPU machine with the toolkit, CUDA."""
    import shutil

    import torch

    out = subprocess.run(["bash", "-c", f'source "{SCRIPT}"; cuda_cmake_flag "{sys.executable}"'],
                         capture_output=True, text=True, timeout=60).stdout.strip()
    cuda = torch.version.cuda is not None and shutil.which("nvcc") is not None
    assert out == f"-DFT_WITH_CUDA={'ON' if cuda else 'OFF'}"

"""The fused Triton kernel of the mutual-information recursion against today's wavefront code and fast_rnnt.

The kernel runs under triton's interpreter (``TRITON_INTERPRET=1``) on CPU tensors.  The variable must be
set before triton is imported and would send every other CPU test through the (slow) interpreter, so the
cases run in one child process: this file, run as a script, computes every case and prints one JSON line of
measured differences and kernel launch counts; the tests below check them.  A case counts only if the
kernel's launch counter moved, so a silent fallback to the wavefront code fails the tests.

Shapes follow tests/test_loss_parity.py (B=4, S=5, T=9, ragged boundaries with non-zero s_begin/t_begin),
plus S = 0, T = 1, T = 0, -inf entries, float64, a wavefront wider than one block, and the pruned loss
pipeline end to end.  On a GPU machine ``pytest -m cuda`` also runs the kernel on CUDA (last test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

from asrkit.loss import mutual_information as M  # noqa: E402
from asrkit.loss.validation import LossInputError  # noqa: E402

TOL = {"float64": dict(rtol=1e-9, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-5)}
PARITY_BOUNDARY = [[0, 0, 5, 9], [1, 2, 4, 7], [0, 3, 2, 9], [2, 1, 5, 8]]

# name -> (regular, B, S, T, boundary rows or None, dtype, max block)
CASES: dict[str, tuple] = {}
for _regular in (True, False):
    for _dtype in ("float32", "float64"):
        for _bnd in ("full", "ragged"):
            CASES[f"parity-{'regular' if _regular else 'modified'}-{_dtype}-{_bnd}"] = (
                _regular, 4, 5, 9, PARITY_BOUNDARY if _bnd == "ragged" else None, _dtype, 512)
CASES.update({
    "S0-regular": (True, 3, 0, 6, [[0, 0, 0, 6], [0, 2, 0, 5], [0, 0, 0, 1]], "float64", 512),
    "S0-modified": (False, 2, 0, 4, None, "float64", 512),
    "T1-regular": (True, 2, 3, 1, [[0, 0, 3, 1], [1, 0, 2, 1]], "float64", 512),
    "T1-modified": (False, 2, 1, 1, None, "float32", 512),
    "T0-regular": (True, 2, 3, 0, None, "float64", 512),
    "multi-block-regular": (True, 2, 21, 6, [[0, 0, 21, 6], [3, 1, 17, 5]], "float32", 16),
    "multi-block-modified": (False, 2, 19, 24, [[0, 0, 19, 24], [2, 3, 15, 22]], "float64", 16),
})


def _tensor(rows):
    return None if rows is None else torch.tensor(rows, dtype=torch.int64)


def _worker() -> dict:
    """Runs in the child process (TRITON_INTERPRET=1): every case, compared three ways."""
    from asrkit import loss as L
    from asrkit.loss import mi_triton

    try:
        import fast_rnnt
    except ImportError:
        fast_rnnt = None
    out: dict = {"kernel_cpu": M.recursion_kernel("cpu"), "cases": {}}

    def max_diff(a, b):
        return float((a - b).abs().max()) if a.numel() else 0.0

    def run(px, py, bnd, kernel):
        """Scores, returned occupation grads, and autograd grads of weighted scores (one call)."""
        os.environ["ASRKIT_MI_KERNEL"] = kernel
        px, py = px.clone().requires_grad_(True), py.clone().requires_grad_(True)
        scores, (gx, gy) = M.mutual_information_recursion(px, py, bnd, return_grad=True)
        weights = torch.linspace(0.5, 1.5, scores.numel(), dtype=scores.dtype)
        ax, ay = torch.autograd.grad((scores * weights).sum(), (px, py))
        return [t.detach() for t in (scores, gx, gy, ax, ay)]

    for name, (regular, B, S, T, rows, dtype, block) in CASES.items():
        g = torch.Generator().manual_seed(len(name))
        dt = getattr(torch, dtype)
        px = torch.randn(B, S, T + 1 if regular else T, generator=g, dtype=dt)
        py = torch.randn(B, S + 1, T, generator=g, dtype=dt)
        bnd = _tensor(rows)
        mi_triton._MAX_BLOCK = block
        before = dict(mi_triton.LAUNCHES)
        fused = run(px, py, bnd, "auto")
        launches = {k: mi_triton.LAUNCHES[k] - before[k] for k in before}
        reference = run(px, py, bnd, "wavefront")
        res = {"launches": launches, "vs_wavefront": [max_diff(a, b) for a, b in zip(fused, reference)],
               "finite": bool(torch.isfinite(fused[0]).all())}
        if fast_rnnt is not None:
            sc, (gx, gy) = fast_rnnt.mutual_information_recursion(px, py, bnd, return_grad=True)
            res["vs_fast_rnnt"] = [max_diff(a, b) for a, b in zip(fused[:3], (sc, gx, gy))]
        out["cases"][name] = res
    mi_triton._MAX_BLOCK = 512

    # -inf entries (as pruning and the last-frame column produce): a random fifth of px and py, both lattices
    out["minus_inf"] = {}
    for regular in (True, False):
        g = torch.Generator().manual_seed(7)
        B, S, T = 3, 4, 6
        px = torch.randn(B, S, T + 1 if regular else T, generator=g, dtype=torch.float64)
        py = torch.randn(B, S + 1, T, generator=g, dtype=torch.float64)
        px[torch.rand(px.shape, generator=g) < 0.2] = float("-inf")
        py[torch.rand(py.shape, generator=g) < 0.2] = float("-inf")
        if regular:
            px[:, :, T] = float("-inf")
        bnd = torch.tensor([[0, 0, S, T], [0, 0, 3, 5], [1, 1, 4, 6]], dtype=torch.int64)
        before = mi_triton.LAUNCHES["forward"]
        fused = run(px, py, bnd, "auto")
        reference = run(px, py, bnd, "wavefront")
        out["minus_inf"]["regular" if regular else "modified"] = {
            "launches": mi_triton.LAUNCHES["forward"] - before,
            "finite": int(torch.isfinite(fused[0]).sum()),
            "vs_wavefront": [max_diff(a[torch.isfinite(b)], b[torch.isfinite(b)]) for a, b in zip(fused, reference)],
            "same_infinities": all(torch.equal(torch.isfinite(a), torch.isfinite(b)) for a, b in zip(fused, reference)),
        }

    # The pruned loss pipeline through the public API (backend="torch"), fused against wavefront.
    def pipeline(kernel):
        os.environ["ASRKIT_MI_KERNEL"] = kernel
        g = torch.Generator().manual_seed(3)
        B, S, T, C = 3, 4, 8, 6
        am = torch.randn(B, T, C, generator=g, dtype=torch.float64, requires_grad=True)
        lm = torch.randn(B, S + 1, C, generator=g, dtype=torch.float64, requires_grad=True)
        symbols = torch.randint(1, C, (B, S), generator=g)
        bnd = torch.tensor([[0, 0, 4, 8], [0, 0, 2, 6], [0, 0, 3, 8]], dtype=torch.int64)
        simple, (gx, gy) = L.rnnt_loss_smoothed(lm=lm, am=am, symbols=symbols, termination_symbol=0,
                                                lm_only_scale=0.25, am_only_scale=0.0, boundary=bnd,
                                                reduction="sum", return_grad=True, backend="torch")
        ranges = L.get_rnnt_prune_ranges(gx, gy, bnd, 3, backend="torch")
        am_p, lm_p = L.do_rnnt_pruning(am, lm, ranges, backend="torch")
        pruned = L.rnnt_loss_pruned(torch.tanh(am_p + lm_p), symbols, ranges, 0, bnd, reduction="sum",
                                    backend="torch")
        grads = torch.autograd.grad(0.5 * simple + pruned, (am, lm))
        return [simple.detach(), pruned.detach(), ranges.double(), *grads]

    before = mi_triton.LAUNCHES["forward"]
    fused = pipeline("auto")
    out["pipeline"] = {"launches": mi_triton.LAUNCHES["forward"] - before,
                       "vs_wavefront": [max_diff(a, b) for a, b in zip(fused, pipeline("wavefront"))]}
    return out


@pytest.fixture(scope="module")
def interpreted() -> dict:
    """Run this file as a script under TRITON_INTERPRET=1 and return its JSON report."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("ASRKIT_MI_KERNEL", None)
    proc = subprocess.run([sys.executable, "-W", "ignore", __file__], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_interpreter_routes_cpu_tensors_to_the_kernel(interpreted):
    assert interpreted["kernel_cpu"] == "triton"


@pytest.mark.parametrize("name", list(CASES))
def test_kernel_matches_wavefront_and_fast_rnnt(interpreted, name):
    case = interpreted["cases"][name]
    dtype = CASES[name][5]
    # one forward and one backward launch ran the kernel, not the fallback
    assert case["launches"] == {"forward": 1, "backward": 1}
    assert case["finite"]
    tol = TOL[dtype]["atol"] * 10  # scores are O(10): absolute differences of a few ulps
    # scores, returned px/py grads, autograd px/py grads
    for what, diff in zip(("scores", "px_grad", "py_grad", "autograd px", "autograd py"), case["vs_wavefront"]):
        assert diff <= tol, f"{name}: {what} differs from the wavefront code by {diff}"
    if "vs_fast_rnnt" in case:
        for what, diff in zip(("scores", "px_grad", "py_grad"), case["vs_fast_rnnt"]):
            assert diff <= tol, f"{name}: {what} differs from fast_rnnt by {diff}"


@pytest.mark.parametrize("lattice", ["regular", "modified"])
def test_kernel_with_minus_inf_entries(interpreted, lattice):
    case = interpreted["minus_inf"][lattice]
    assert case["launches"] == 1 and case["finite"] >= 1  # at least one sequence keeps a path
    assert case["same_infinities"], case
    assert max(case["vs_wavefront"]) <= 1e-11, case


def test_pruned_loss_pipeline_through_the_kernel(interpreted):
    case = interpreted["pipeline"]
    # smoothed (return_grad) + pruned loss forward: at least two fused launches
    assert case["launches"] >= 2
    assert max(case["vs_wavefront"]) <= 1e-10, case


def test_recursion_kernel_choice(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("ASRKIT_MI_KERNEL", raising=False)
    assert M.recursion_kernel("cpu") == "wavefront"
    assert M.recursion_kernel("cuda") == "triton"
    monkeypatch.setenv("ASRKIT_MI_KERNEL", "wavefront")
    assert M.recursion_kernel("cuda") == "wavefront"
    monkeypatch.setenv("ASRKIT_MI_KERNEL", "fast")
    with pytest.raises(LossInputError, match="ASRKIT_MI_KERNEL"):
        M.recursion_kernel("cuda")


def test_without_triton_cuda_falls_back(monkeypatch):
    monkeypatch.delenv("ASRKIT_MI_KERNEL", raising=False)
    monkeypatch.setattr(M, "_triton_kernels", lambda: None)
    assert M.recursion_kernel("cuda") == "wavefront"


_COMPILE_FOR_GPUS = r"""
import re, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from asrkit.loss import mi_triton as K

common = {"bnd_ptr": "*i64", "S": "i32", "T": "i32", "K": "i32", "REGULAR": "constexpr", "BLOCK": "constexpr"}
for arch, dt, regular, block in [(90, "fp32", True, 64), (90, "fp64", False, 16), (80, "fp32", False, 512)]:
    ptrs = {"fwd": ["px_ptr", "py_ptr", "p_ptr", "score_ptr"],
            "bwd": ["px_ptr", "py_ptr", "p_ptr", "g_ptr", "px_grad_ptr", "py_grad_ptr"]}
    for kind, fn in (("fwd", K._mi_forward_kernel), ("bwd", K._mi_backward_kernel)):
        names = list(fn.arg_names)
        types = {**{n: "*" + dt for n in ptrs[kind]}, **common}
        src = ASTSource(fn=fn, signature={n: types[n] for n in names}, constexprs={"REGULAR": regular, "BLOCK": block})
        out = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": 4})
        ptx = out.asm["ptx"]
        assert out.asm["cubin"], (arch, dt, kind)
        # threads meet between wavefronts, and the previous wavefront is re-read from memory, not a cache
        assert "bar.sync" in ptx and "ld.volatile.global" in ptx, (arch, dt, kind)
        print(arch, dt, kind, "ok")
"""


def test_kernels_compile_for_hopper_and_ampere_without_a_gpu():
    """triton's own compiler (its bundled ptxas) builds both kernels into sm_90 / sm_80 cubins on this CPU machine:
    what a GPU run would compile first, so a construct only the interpreter accepts fails here, not on the GPU."""
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", _COMPILE_FOR_GPUS], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count(" ok") == 6, proc.stdout


def test_a_kernel_that_fails_to_compile_falls_back_with_a_warning(monkeypatch):
    """A GPU triton cannot compile for must still train: a warning, then the wavefront code on that device."""

    class Broken:
        @staticmethod
        def mutual_information_triton(*args, **kwargs):
            raise RuntimeError("PTX assembly failed (simulated)")

    monkeypatch.delenv("ASRKIT_MI_KERNEL", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(M, "_triton_kernels", lambda: Broken)
    monkeypatch.setattr(M, "_KERNEL_FAILED", set())
    assert M.recursion_kernel("cpu") == "triton"
    g = torch.Generator().manual_seed(1)
    px, py = torch.randn(2, 3, 6, generator=g), torch.randn(2, 4, 5, generator=g)
    with pytest.warns(RuntimeWarning, match="PTX assembly failed"):
        got, (gx, gy) = M.mutual_information_recursion(px, py, return_grad=True)
    assert M.recursion_kernel("cpu") == "wavefront"
    monkeypatch.setenv("ASRKIT_MI_KERNEL", "wavefront")
    want, (wx, wy) = M.mutual_information_recursion(px, py, return_grad=True)
    assert torch.equal(got, want) and torch.equal(gx, wx) and torch.equal(gy, wy)


@pytest.mark.cuda
def test_kernel_on_cuda_matches_cpu():
    from asrkit.loss import mi_triton

    g = torch.Generator().manual_seed(0)
    for regular in (True, False):
        B, S, T = 6, 37, 150
        px = torch.randn(B, S, T + 1 if regular else T, generator=g)
        py = torch.randn(B, S + 1, T, generator=g)
        rows = torch.tensor([[0, 0, S, T], [1, 2, 30, 140], [0, 0, 5, 150], [0, 0, S, 90], [3, 0, 20, 100],
                             [0, 0, 0, 1]])
        want, (wx, wy) = M.mutual_information_recursion(px, py, rows, return_grad=True)
        before = mi_triton.LAUNCHES["forward"]
        got, (gx, gy) = M.mutual_information_recursion(px.cuda(), py.cuda(), rows.cuda(), return_grad=True)
        assert mi_triton.LAUNCHES["forward"] == before + 1
        torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(gx.cpu(), wx, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(gy.cpu(), wy, rtol=1e-4, atol=1e-5)


if __name__ == "__main__":
    print(json.dumps(_worker()))

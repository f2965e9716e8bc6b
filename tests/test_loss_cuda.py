"""The built-in (torch) loss backend on CUDA gives what it gives on the CPU: values, gradients and prune ranges.

Run on a GPU machine with ``pytest -m cuda``; skipped where torch sees no GPU (tests/conftest.py). The CPU side
is itself checked against fast_rnnt (test_loss_parity.py) and a loop reference (test_loss_reference.py).
"""

from __future__ import annotations

import pytest
import torch

from asrkit import loss as L

pytestmark = pytest.mark.cuda

TOL = {torch.float64: dict(rtol=1e-7, atol=1e-9), torch.float32: dict(rtol=1e-4, atol=1e-4)}


def _inputs(seed: int, dtype: torch.dtype, B: int = 4, S: int = 12, T: int = 40, C: int = 30):
    """Random encoder/predictor outputs, symbols and ragged boundaries (the longest row is full)."""
    g = torch.Generator().manual_seed(seed)
    am = torch.randn(B, T, C, generator=g, dtype=dtype)
    lm = torch.randn(B, S + 1, C, generator=g, dtype=dtype)
    symbols = torch.randint(1, C, (B, S), generator=g)
    s_end = torch.cat([torch.tensor([S]), torch.randint(1, S + 1, (B - 1,), generator=g)])
    t_end = torch.cat([torch.tensor([T]), torch.randint(S + 2, T + 1, (B - 1,), generator=g)])
    boundary = torch.stack([torch.zeros(B, dtype=torch.int64), torch.zeros(B, dtype=torch.int64), s_end, t_end], 1)
    return am, lm, symbols, boundary


def _pruned_pipeline(am, lm, symbols, boundary, rnnt_type: str):
    """icefall's recipe on an additive joiner: smoothed simple loss -> ranges -> pruned loss; returns the
    per-utterance losses, the ranges and the gradients w.r.t. ``am`` and ``lm``."""
    am, lm = am.clone().requires_grad_(True), lm.clone().requires_grad_(True)
    simple, (px_grad, py_grad) = L.rnnt_loss_smoothed(
        lm=lm, am=am, symbols=symbols, termination_symbol=0, lm_only_scale=0.25, am_only_scale=0.0,
        boundary=boundary, rnnt_type=rnnt_type, reduction="none", return_grad=True, backend="torch")
    ranges = L.get_rnnt_prune_ranges(px_grad, py_grad, boundary, 5, backend="torch")
    am_pruned, lm_pruned = L.do_rnnt_pruning(am, lm, ranges, backend="torch")
    pruned = L.rnnt_loss_pruned(torch.tanh(am_pruned + lm_pruned), symbols, ranges, 0, boundary,
                                rnnt_type=rnnt_type, reduction="none", backend="torch")
    weights = torch.linspace(0.5, 1.5, simple.numel(), dtype=simple.dtype, device=simple.device)
    am_grad, lm_grad = torch.autograd.grad(((0.5 * simple + pruned) * weights).sum(), (am, lm))
    return simple.detach(), pruned.detach(), ranges, am_grad, lm_grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rnnt_type", ["regular", "modified", "constrained"])
@pytest.mark.parametrize("seed", range(3))
def test_pruned_pipeline_on_cuda_matches_cpu(seed, rnnt_type, dtype):
    cpu_inputs = _inputs(seed, dtype)
    on_cpu = _pruned_pipeline(*cpu_inputs, rnnt_type)
    on_cuda = _pruned_pipeline(*(t.cuda() for t in cpu_inputs), rnnt_type)
    simple, pruned, ranges, am_grad, lm_grad = (t.cpu() for t in on_cuda)
    assert torch.equal(ranges, on_cpu[2])
    for got, want in ((simple, on_cpu[0]), (pruned, on_cpu[1]), (am_grad, on_cpu[3]), (lm_grad, on_cpu[4])):
        torch.testing.assert_close(got, want, **TOL[dtype])


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
def test_full_loss_on_cuda_matches_cpu(rnnt_type):
    am, lm, symbols, boundary = _inputs(7, torch.float64, S=8, T=20)
    logits = (am.unsqueeze(2) + lm.unsqueeze(1)).tanh()  # (B, T, S+1, C)

    def loss_and_grad(x, symbols, boundary):
        x = x.clone().requires_grad_(True)
        loss = L.rnnt_loss(x, symbols, 0, boundary, rnnt_type=rnnt_type, reduction="sum", backend="torch")
        return loss.detach(), torch.autograd.grad(loss, x)[0]

    want = loss_and_grad(logits, symbols, boundary)
    got = loss_and_grad(logits.cuda(), symbols.cuda(), boundary.cuda())
    for g, w in zip(got, want):
        torch.testing.assert_close(g.cpu(), w, **TOL[torch.float64])


def test_half_precision_inputs_on_cuda_are_computed_in_float32():
    am, lm, symbols, boundary = (t.cuda() for t in _inputs(3, torch.float32))
    lm16, am16 = lm.half(), am.half()
    simple16 = L.rnnt_loss_simple(lm16, am16, symbols, 0, boundary, reduction="none", backend="torch")
    simple32 = L.rnnt_loss_simple(lm16.float(), am16.float(), symbols, 0, boundary, reduction="none", backend="torch")
    assert simple16.dtype == torch.float32
    torch.testing.assert_close(simple16, simple32)

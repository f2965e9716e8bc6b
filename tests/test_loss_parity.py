"""Parity of asrkit's torch loss backend with fast_rnnt (k2's algorithms), function by function.

Random shapes, ragged boundaries (including non-zero s_begin/t_begin), every rnnt_type,
delay_penalty > 0 and every reduction: values and gradients within 1e-5 relative in float64 and
1e-4 in float32; prune ranges identical.
"""

from __future__ import annotations

import pytest
import torch

fast_rnnt = pytest.importorskip("fast_rnnt")

from asrkit import loss as L  # noqa: E402

RNNT_TYPES = ["regular", "modified", "constrained"]
REDUCTIONS = ["none", "mean", "sum"]
TOL = {torch.float64: dict(rtol=1e-5, atol=1e-8), torch.float32: dict(rtol=1e-4, atol=1e-5)}


def _case(seed: int, rnnt_type: str, dtype: torch.dtype, begins: bool = True, C: int = 7):
    """Random lm/am/symbols and ragged boundaries for one test case."""
    g = torch.Generator().manual_seed(seed)
    B = int(torch.randint(2, 5, (1,), generator=g))
    S = int(torch.randint(2, 7, (1,), generator=g))
    T = int(torch.randint(S + 2, S + 9, (1,), generator=g))
    lm = torch.randn(B, S + 1, C, generator=g, dtype=dtype)
    am = torch.randn(B, T, C, generator=g, dtype=dtype)
    symbols = torch.randint(1, C, (B, S), generator=g)
    rows = [[0, 0, S, T]]
    for _ in range(B - 1):
        s_end = int(torch.randint(1, S + 1, (1,), generator=g))
        s_begin = min(int(torch.randint(0, 2, (1,), generator=g)), s_end - 1) if begins else 0
        t_begin = int(torch.randint(0, 2, (1,), generator=g)) if begins else 0
        # at least one more frame than symbols, so every rnnt_type has a path
        t_end = int(torch.randint(t_begin + s_end - s_begin + 1, T + 1, (1,), generator=g))
        rows.append([s_begin, t_begin, s_end, t_end])
    boundary = torch.tensor(rows, dtype=torch.int64)
    return lm, am, symbols, boundary


def _grads(loss: torch.Tensor, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    weights = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
    return torch.autograd.grad((loss * weights).sum(), inputs)


def _assert_close(a, b, dtype):
    torch.testing.assert_close(a, b, **TOL[dtype])


# ---------------------------------------------------------------- mutual information recursion


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("regular", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_mutual_information_matches(seed, regular, dtype):
    g = torch.Generator().manual_seed(100 + seed)
    B, S, T = 4, 5, 9
    px = torch.randn(B, S, T + 1 if regular else T, generator=g, dtype=dtype, requires_grad=True)
    py = torch.randn(B, S + 1, T, generator=g, dtype=dtype, requires_grad=True)
    boundary = torch.tensor([[0, 0, S, T], [1, 2, 4, 7], [0, 3, 2, 9], [2, 1, 5, 8]], dtype=torch.int64)
    for bnd in (None, boundary):
        ours, (ogx, ogy) = L.mutual_information_recursion(px, py, bnd, return_grad=True, backend="torch")
        ref, (rgx, rgy) = fast_rnnt.mutual_information_recursion(px, py, bnd, return_grad=True)
        _assert_close(ours, ref, dtype)
        _assert_close(ogx, rgx, dtype)
        _assert_close(ogy, rgy, dtype)
        # autograd through the recursion == the returned occupation grads, scaled
        got = _grads(ours, px, py)
        want = _grads(fast_rnnt.mutual_information_recursion(px, py, bnd), px, py)
        for a, b in zip(got, want):
            _assert_close(a, b, dtype)


def test_mutual_information_with_minus_inf_entries():
    """-inf in px/py (as pruning and the last-frame column produce) must not create NaN."""
    g = torch.Generator().manual_seed(7)
    B, S, T = 3, 4, 6
    px = torch.randn(B, S, T + 1, generator=g, dtype=torch.float64)
    py = torch.randn(B, S + 1, T, generator=g, dtype=torch.float64)
    px[:, :, T] = float("-inf")
    px[0, 2, 1:3] = float("-inf")
    py[1, 0, 3:] = float("-inf")
    boundary = torch.tensor([[0, 0, S, T], [0, 0, 3, 5], [1, 1, 4, 6]], dtype=torch.int64)
    ours, (ogx, ogy) = L.mutual_information_recursion(px, py, boundary, return_grad=True, backend="torch")
    ref, (rgx, rgy) = fast_rnnt.mutual_information_recursion(px, py, boundary, return_grad=True)
    assert torch.isfinite(ours).all()
    _assert_close(ours, ref, torch.float64)
    _assert_close(ogx, rgx, torch.float64)
    _assert_close(ogy, rgy, torch.float64)


# ---------------------------------------------------------------- log-prob helpers


@pytest.mark.parametrize("rnnt_type", RNNT_TYPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_logprob_helpers_match(rnnt_type, dtype):
    lm, am, symbols, boundary = _case(1, rnnt_type, dtype)
    lm.requires_grad_(True)
    am.requires_grad_(True)
    logits = (lm.unsqueeze(1) + am.unsqueeze(2)).detach().requires_grad_(True)
    cases = [
        (
            [lm, am],
            L.get_rnnt_logprobs(lm, am, symbols, 0, boundary, rnnt_type, backend="torch"),
            fast_rnnt.get_rnnt_logprobs(lm=lm, am=am, symbols=symbols, termination_symbol=0,
                                        boundary=boundary, rnnt_type=rnnt_type),
        ),
        (
            [lm, am],
            L.get_rnnt_logprobs_smoothed(lm, am, symbols, 0, 0.2, 0.1, boundary, rnnt_type, backend="torch"),
            fast_rnnt.get_rnnt_logprobs_smoothed(lm=lm, am=am, symbols=symbols, termination_symbol=0,
                                                 lm_only_scale=0.2, am_only_scale=0.1,
                                                 boundary=boundary, rnnt_type=rnnt_type),
        ),
        (
            [logits],
            L.get_rnnt_logprobs_joint(logits, symbols, 0, boundary, rnnt_type, backend="torch"),
            fast_rnnt.get_rnnt_logprobs_joint(logits=logits, symbols=symbols, termination_symbol=0,
                                              boundary=boundary, rnnt_type=rnnt_type),
        ),
    ]
    g = torch.Generator().manual_seed(3)
    for inputs, (opx, opy), (rpx, rpy) in cases:
        _assert_close(opx, rpx, dtype)
        _assert_close(opy, rpy, dtype)
        # gradients of a random weighting of the finite entries
        fx, fy = torch.isfinite(rpx), torch.isfinite(rpy)
        wx = torch.rand(rpx.shape, dtype=dtype, generator=g)[fx]
        wy = torch.rand(rpy.shape, dtype=dtype, generator=g)[fy]
        got = torch.autograd.grad((opx[fx] * wx).sum() + (opy[fy] * wy).sum(), inputs)
        want = torch.autograd.grad((rpx[fx] * wx).sum() + (rpy[fy] * wy).sum(), inputs)
        for a, b in zip(got, want):
            _assert_close(a, b, dtype)


# ---------------------------------------------------------------- losses


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("rnnt_type", RNNT_TYPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_simple_and_smoothed_losses_match(dtype, rnnt_type, reduction):
    lm, am, symbols, boundary = _case(2, rnnt_type, dtype)
    lm.requires_grad_(True)
    am.requires_grad_(True)
    for delay_penalty in (0.0, 0.05):
        kw = dict(symbols=symbols, termination_symbol=0, boundary=boundary, rnnt_type=rnnt_type,
                  delay_penalty=delay_penalty, reduction=reduction, return_grad=True)
        o_loss, (o_gx, o_gy) = L.rnnt_loss_simple(lm=lm, am=am, backend="torch", **kw)
        r_loss, (r_gx, r_gy) = fast_rnnt.rnnt_loss_simple(lm=lm, am=am, **kw)
        _assert_close(o_loss, r_loss, dtype)
        _assert_close(o_gx, r_gx, dtype)
        _assert_close(o_gy, r_gy, dtype)
        for a, b in zip(_grads(o_loss, lm, am), _grads(r_loss, lm, am)):
            _assert_close(a, b, dtype)

        kw.update(lm_only_scale=0.25, am_only_scale=0.0)
        o_loss, (o_gx, o_gy) = L.rnnt_loss_smoothed(lm=lm, am=am, backend="torch", **kw)
        r_loss, (r_gx, r_gy) = fast_rnnt.rnnt_loss_smoothed(lm=lm, am=am, **kw)
        _assert_close(o_loss, r_loss, dtype)
        _assert_close(o_gx, r_gx, dtype)
        _assert_close(o_gy, r_gy, dtype)
        for a, b in zip(_grads(o_loss, lm, am), _grads(r_loss, lm, am)):
            _assert_close(a, b, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("rnnt_type", RNNT_TYPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_full_loss_matches(dtype, rnnt_type, reduction):
    lm, am, symbols, boundary = _case(3, rnnt_type, dtype)
    logits = (torch.tanh(lm.unsqueeze(1) + am.unsqueeze(2)) * 3).requires_grad_(True)
    for bnd in (boundary, None):
        for delay_penalty in (0.0, 0.1):
            kw = dict(logits=logits, symbols=symbols, termination_symbol=0, boundary=bnd,
                      rnnt_type=rnnt_type, delay_penalty=delay_penalty, reduction=reduction)
            ours = L.rnnt_loss(backend="torch", **kw)
            ref = fast_rnnt.rnnt_loss(**kw)
            _assert_close(ours, ref, dtype)
            _assert_close(_grads(ours, logits)[0], _grads(ref, logits)[0], dtype)


@pytest.mark.parametrize("rnnt_type", RNNT_TYPES)
@pytest.mark.parametrize("seed", range(3))
def test_prune_ranges_identical(seed, rnnt_type):
    lm, am, symbols, boundary = _case(10 + seed, rnnt_type, torch.float64, begins=False)
    _, (px_grad, py_grad) = fast_rnnt.rnnt_loss_smoothed(
        lm=lm, am=am, symbols=symbols, termination_symbol=0, lm_only_scale=0.25,
        am_only_scale=0.0, boundary=boundary, rnnt_type=rnnt_type, return_grad=True)
    for s_range in (1, 2, 3, 5, 100):
        if rnnt_type == "regular" and s_range < 2:
            continue
        ours = L.get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range, backend="torch")
        ref = fast_rnnt.get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)
        assert torch.equal(ours, ref), (s_range, ours[:, :, 0], ref[:, :, 0])
    # ...and our own occupation grads give the same ranges
    _, (o_gx, o_gy) = L.rnnt_loss_smoothed(
        lm=lm, am=am, symbols=symbols, termination_symbol=0, lm_only_scale=0.25,
        am_only_scale=0.0, boundary=boundary, rnnt_type=rnnt_type, return_grad=True, backend="torch")
    assert torch.equal(
        L.get_rnnt_prune_ranges(o_gx, o_gy, boundary, 3, backend="torch"),
        fast_rnnt.get_rnnt_prune_ranges(px_grad, py_grad, boundary, 3),
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("rnnt_type", RNNT_TYPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pruned_pipeline_matches(dtype, rnnt_type, reduction):
    """icefall's sequence: smoothed loss -> ranges -> do_rnnt_pruning -> joiner -> pruned loss."""
    lm, am, symbols, boundary = _case(4, rnnt_type, dtype, begins=False)
    lm.requires_grad_(True)
    am.requires_grad_(True)
    _, (px_grad, py_grad) = L.rnnt_loss_smoothed(
        lm=lm, am=am, symbols=symbols, termination_symbol=0, lm_only_scale=0.25,
        am_only_scale=0.0, boundary=boundary, rnnt_type=rnnt_type, reduction="sum",
        return_grad=True, backend="torch")
    ranges = L.get_rnnt_prune_ranges(px_grad, py_grad, boundary, 3, backend="torch")
    o_am, o_lm = L.do_rnnt_pruning(am, lm, ranges, backend="torch")
    r_am, r_lm = fast_rnnt.do_rnnt_pruning(am, lm, ranges)
    assert torch.equal(o_am, r_am) and torch.equal(o_lm, r_lm)
    for delay_penalty in (0.0, 0.07):
        logits = torch.tanh(o_am + o_lm) * 4
        kw = dict(logits=logits, symbols=symbols, ranges=ranges, termination_symbol=0,
                  boundary=boundary, rnnt_type=rnnt_type, delay_penalty=delay_penalty,
                  reduction=reduction)
        ours = L.rnnt_loss_pruned(backend="torch", **kw)
        ref = fast_rnnt.rnnt_loss_pruned(**kw)
        _assert_close(ours, ref, dtype)
        weights = torch.linspace(0.5, 1.5, ours.numel(), dtype=dtype).reshape(ours.shape)
        got = torch.autograd.grad((ours * weights).sum(), (lm, am), retain_graph=True)
        want = torch.autograd.grad((ref * weights).sum(), (lm, am), retain_graph=True)
        for a, b in zip(got, want):
            _assert_close(a, b, dtype)
        (opx, opy) = L.get_rnnt_logprobs_pruned(logits, symbols, ranges, 0, boundary, rnnt_type, backend="torch")
        (rpx, rpy) = fast_rnnt.get_rnnt_logprobs_pruned(logits=logits, symbols=symbols, ranges=ranges,
                                                        termination_symbol=0, boundary=boundary,
                                                        rnnt_type=rnnt_type)
        _assert_close(opx, rpx, dtype)
        _assert_close(opy, rpy, dtype)


def test_backend_fast_rnnt_dispatch_and_auto():
    """backend='fast_rnnt' really calls fast_rnnt, and 'auto' picks a compiled backend here."""
    assert "fast_rnnt" in L.available_backends()
    assert L.resolve_backend("auto") in ("k2", "fast_rnnt")
    lm, am, symbols, boundary = _case(5, "regular", torch.float64)
    a = L.rnnt_loss_simple(lm, am, symbols, 0, boundary, backend="fast_rnnt", reduction="none")
    b = fast_rnnt.rnnt_loss_simple(lm=lm, am=am, symbols=symbols, termination_symbol=0,
                                   boundary=boundary, reduction="none")
    assert torch.equal(a, b)
    # half precision is upcast for every backend (fast_rnnt itself has no half kernels)
    c = L.rnnt_loss_simple(lm.half(), am.half(), symbols, 0, boundary, backend="fast_rnnt", reduction="none")
    assert c.dtype == torch.float32
    torch.testing.assert_close(c.double(), b, rtol=1e-2, atol=1e-2)

"""The torch backend against first principles: a plain RNN-T forward/backward written here with
Python loops, hand-computed and published values, gradcheck, and input validation."""

from __future__ import annotations

import math

import pytest
import torch

from asrkit import loss as L
from asrkit.errors import ConfigError, MissingDependencyError


def _reference_rnnt(logits: torch.Tensor, y: list[int], blank: int, modified: bool = False):
    """Textbook RNN-T (Graves 2012) for one utterance, by loops over the lattice.

    logits: [T, U+1, V].  Returns (loss, d loss / d logits) computed with explicit alpha/beta
    recursions (no autograd).
    """
    T, U1, V = logits.shape
    U = U1 - 1
    lp = torch.log_softmax(logits.double(), dim=-1)
    ninf = float("-inf")

    def lae(a: float, b: float) -> float:
        if a == ninf:
            return b
        if b == ninf:
            return a
        m = max(a, b)
        return m + math.log(math.exp(a - m) + math.exp(b - m))

    def blank_lp(t, u):
        return float(lp[t, u, blank])

    def emit_lp(t, u):
        return float(lp[t, u, y[u]])

    if not modified:
        # alpha[t][u]: log-prob of having emitted y[:u] and being at frame t (not yet left it)
        alpha = [[ninf] * U1 for _ in range(T)]
        for t in range(T):
            for u in range(U1):
                if t == 0 and u == 0:
                    alpha[t][u] = 0.0
                    continue
                a = alpha[t - 1][u] + blank_lp(t - 1, u) if t > 0 else ninf
                b = alpha[t][u - 1] + emit_lp(t, u - 1) if u > 0 else ninf
                alpha[t][u] = lae(a, b)
        total = alpha[T - 1][U] + blank_lp(T - 1, U)
        beta = [[ninf] * U1 for _ in range(T)]
        for t in reversed(range(T)):
            for u in reversed(range(U1)):
                if t == T - 1 and u == U:
                    beta[t][u] = blank_lp(t, u)
                    continue
                a = beta[t + 1][u] + blank_lp(t, u) if t + 1 < T else ninf
                b = beta[t][u + 1] + emit_lp(t, u) if u < U else ninf
                beta[t][u] = lae(a, b)
        assert abs(beta[0][0] - total) < 1e-9, (beta[0][0], total)
        grad_lp = torch.zeros(T, U1, V, dtype=torch.float64)
        for t in range(T):
            for u in range(U1):
                nxt = beta[t + 1][u] if t + 1 < T else (0.0 if u == U else ninf)
                grad_lp[t, u, blank] -= math.exp(alpha[t][u] + blank_lp(t, u) + nxt - total)
                if u < U:
                    grad_lp[t, u, y[u]] -= math.exp(alpha[t][u] + emit_lp(t, u) + beta[t][u + 1] - total)
    else:
        # one symbol per frame: every emission (blank or not) moves to the next frame
        alpha = [[ninf] * U1 for _ in range(T + 1)]
        alpha[0][0] = 0.0
        for t in range(1, T + 1):
            for u in range(U1):
                a = alpha[t - 1][u] + blank_lp(t - 1, u)
                b = alpha[t - 1][u - 1] + emit_lp(t - 1, u - 1) if u > 0 else ninf
                alpha[t][u] = lae(a, b)
        total = alpha[T][U]
        beta = [[ninf] * U1 for _ in range(T + 1)]
        beta[T][U] = 0.0
        for t in reversed(range(T)):
            for u in range(U1):
                a = beta[t + 1][u] + blank_lp(t, u)
                b = beta[t + 1][u + 1] + emit_lp(t, u) if u < U else ninf
                beta[t][u] = lae(a, b)
        assert abs(beta[0][0] - total) < 1e-9
        grad_lp = torch.zeros(T, U1, V, dtype=torch.float64)
        for t in range(T):
            for u in range(U1):
                grad_lp[t, u, blank] -= math.exp(alpha[t][u] + blank_lp(t, u) + beta[t + 1][u] - total)
                if u < U:
                    grad_lp[t, u, y[u]] -= math.exp(alpha[t][u] + emit_lp(t, u) + beta[t + 1][u + 1] - total)
    # through log_softmax: dL/dz = dL/dlp - softmax * sum(dL/dlp)
    grad_logits = grad_lp - lp.exp() * grad_lp.sum(-1, keepdim=True)
    return -total, grad_logits


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
@pytest.mark.parametrize("seed", range(3))
def test_full_loss_equals_loop_reference(seed, rnnt_type):
    g = torch.Generator().manual_seed(seed)
    B, T, U, V = 3, 6, 3, 5
    logits = torch.randn(B, T, U + 1, V, generator=g, dtype=torch.float64, requires_grad=True)
    symbols = torch.randint(1, V, (B, U), generator=g)
    lengths = [(U, T), (2, 5), (1, 3)]  # (U_b, T_b), ragged
    boundary = torch.tensor([[0, 0, u, t] for u, t in lengths], dtype=torch.int64)
    loss = L.rnnt_loss(logits, symbols, 0, boundary, rnnt_type=rnnt_type, reduction="none", backend="torch")
    grads = torch.autograd.grad(loss.sum(), logits)[0]
    for b, (u, t) in enumerate(lengths):
        ref_loss, ref_grad = _reference_rnnt(logits[b, :t, : u + 1].detach(), symbols[b, :u].tolist(),
                                             blank=0, modified=rnnt_type == "modified")
        assert loss[b].item() == pytest.approx(ref_loss, rel=1e-10)
        torch.testing.assert_close(grads[b, :t, : u + 1], ref_grad, rtol=1e-8, atol=1e-10)
        # padding receives no gradient
        assert grads[b, t:].abs().max().item() == 0.0 if t < T else True
        assert grads[b, :, u + 1:].abs().max().item() == 0.0 if u < U else True


def test_textbook_values():
    # Uniform 2-symbol vocabulary, T=2, U=1: the two alignments (y b b), (b y b) each have
    # probability 1/8, so the loss is -log(1/4).
    loss = L.rnnt_loss(torch.zeros(1, 2, 2, 2, dtype=torch.float64), torch.tensor([[1]]), 0, backend="torch")
    assert loss.item() == pytest.approx(math.log(4.0), rel=1e-12)
    # The classic example of warp-transducer / torchaudio's RNN-T tests: cost 4.495666.
    acts = torch.tensor(
        [[[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.6, 0.1, 0.1], [0.1, 0.1, 0.2, 0.8, 0.1]],
         [[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.1, 0.1], [0.7, 0.1, 0.2, 0.1, 0.1]]],
        dtype=torch.float32,
    ).unsqueeze(0)
    loss = L.rnnt_loss(acts, torch.tensor([[1, 2]]), 0, reduction="sum", backend="torch")
    assert loss.item() == pytest.approx(4.495666, abs=1e-5)


def test_simple_loss_equals_full_loss_of_additive_joiner():
    g = torch.Generator().manual_seed(5)
    B, S, T, C = 2, 4, 7, 6
    lm = torch.randn(B, S + 1, C, generator=g, dtype=torch.float64)
    am = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    symbols = torch.randint(1, C, (B, S), generator=g)
    for rnnt_type in ("regular", "modified", "constrained"):
        simple = L.rnnt_loss_simple(lm, am, symbols, 0, rnnt_type=rnnt_type, reduction="none", backend="torch")
        full = L.rnnt_loss(lm.unsqueeze(1) + am.unsqueeze(2), symbols, 0, rnnt_type=rnnt_type,
                           reduction="none", backend="torch")
        torch.testing.assert_close(simple, full, rtol=1e-10, atol=1e-10)


def test_smoothed_loss_with_zero_scales_is_simple_loss():
    g = torch.Generator().manual_seed(6)
    lm = torch.randn(2, 4, 5, generator=g, dtype=torch.float64)
    am = torch.randn(2, 6, 5, generator=g, dtype=torch.float64)
    symbols = torch.randint(1, 5, (2, 3), generator=g)
    a = L.rnnt_loss_smoothed(lm, am, symbols, 0, lm_only_scale=0.0, am_only_scale=0.0, backend="torch")
    b = L.rnnt_loss_simple(lm, am, symbols, 0, backend="torch")
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    c = L.rnnt_loss_smoothed(lm, am, symbols, 0, lm_only_scale=0.3, am_only_scale=0.0, backend="torch")
    assert abs(c.item() - b.item()) > 1e-3  # the lm-only part really changes the loss


@pytest.mark.parametrize("regular", [True, False])
def test_mutual_information_gradcheck(regular):
    g = torch.Generator().manual_seed(8)
    B, S, T = 3, 3, 5
    px = torch.randn(B, S, T + 1 if regular else T, generator=g, dtype=torch.float64, requires_grad=True)
    py = torch.randn(B, S + 1, T, generator=g, dtype=torch.float64, requires_grad=True)
    boundary = torch.tensor([[0, 0, S, T], [1, 1, 3, 5], [0, 2, 2, 4]], dtype=torch.int64)

    def f(px, py):
        return L.mutual_information_recursion(px, py, boundary, backend="torch")

    def f_default(px, py):
        return L.mutual_information_recursion(px, py, backend="torch")

    assert torch.autograd.gradcheck(f, (px, py))
    assert torch.autograd.gradcheck(f_default, (px, py))


def test_mutual_information_small_case_by_hand():
    # S=1, T=1 regular: p[1][1] = logaddexp(px[0][0] + py[1][0], py[0][0] + px[0][1])
    px = torch.tensor([[[0.3, -0.2]]], dtype=torch.float64)
    py = torch.tensor([[[-0.5], [0.7]]], dtype=torch.float64)
    score, (gx, gy) = L.mutual_information_recursion(px, py, return_grad=True, backend="torch")
    a, b = 0.3 + 0.7, -0.5 + -0.2
    assert score.item() == pytest.approx(math.log(math.exp(a) + math.exp(b)), rel=1e-14)
    wa = math.exp(a) / (math.exp(a) + math.exp(b))
    torch.testing.assert_close(gx, torch.tensor([[[wa, 1 - wa]]], dtype=torch.float64))
    torch.testing.assert_close(gy, torch.tensor([[[1 - wa], [wa]]], dtype=torch.float64))


def test_empty_sequence_has_zero_score_and_no_gradient():
    px = torch.randn(2, 3, 5, dtype=torch.float64)
    py = torch.randn(2, 4, 4, dtype=torch.float64)
    boundary = torch.tensor([[1, 2, 1, 2], [0, 0, 3, 4]], dtype=torch.int64)
    score, (gx, gy) = L.mutual_information_recursion(px, py, boundary, return_grad=True, backend="torch")
    assert score[0].item() == 0.0
    assert gx[0].abs().sum().item() == 0.0 and gy[0].abs().sum().item() == 0.0


def test_half_precision_is_computed_in_float32():
    g = torch.Generator().manual_seed(9)
    logits = torch.randn(2, 5, 3, 6, generator=g)
    symbols = torch.randint(1, 6, (2, 2), generator=g)
    half = logits.half().requires_grad_(True)
    loss = L.rnnt_loss(half, symbols, 0, backend="torch")
    assert loss.dtype == torch.float32
    loss.backward()
    assert half.grad is not None and half.grad.dtype == torch.float16
    ref = L.rnnt_loss(half.detach().float(), symbols, 0, backend="torch")
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


def test_delay_penalty_moves_symbols_earlier():
    """With a delay penalty the occupancy-weighted emission time of symbols decreases."""
    g = torch.Generator().manual_seed(10)
    lm = torch.randn(1, 4, 5, generator=g, dtype=torch.float64)
    am = torch.randn(1, 12, 5, generator=g, dtype=torch.float64)
    symbols = torch.randint(1, 5, (1, 3), generator=g)

    def mean_emit_frame(dp):
        _, (gx, _) = L.rnnt_loss_simple(lm, am, symbols, 0, delay_penalty=dp, return_grad=True, backend="torch")
        frames = torch.arange(gx.shape[-1], dtype=gx.dtype)
        return float((gx * frames).sum() / gx.sum())

    assert mean_emit_frame(0.5) < mean_emit_frame(0.0) - 0.1


def test_input_errors_are_clear():
    lm = torch.randn(2, 4, 5)
    am = torch.randn(2, 6, 5)
    symbols = torch.randint(1, 5, (2, 3))
    with pytest.raises(L.LossInputError, match="rnnt_type"):
        L.rnnt_loss_simple(lm, am, symbols, 0, rnnt_type="fancy", backend="torch")
    with pytest.raises(L.LossInputError, match="reduction"):
        L.rnnt_loss_simple(lm, am, symbols, 0, reduction="avg", backend="torch")
    with pytest.raises(L.LossInputError, match="symbols"):
        L.rnnt_loss_simple(lm, am, symbols[:, :2], 0, backend="torch")
    with pytest.raises(L.LossInputError, match=r"boundary\[1\]"):
        L.rnnt_loss_simple(lm, am, symbols, 0, boundary=torch.tensor([[0, 0, 3, 6], [0, 0, 4, 6]]), backend="torch")
    with pytest.raises(L.LossInputError, match="int64"):
        L.rnnt_loss_simple(lm, am, symbols, 0, boundary=torch.zeros(2, 4, dtype=torch.int32), backend="torch")
    with pytest.raises(L.LossInputError, match="T=2 frames < S=3"):
        L.rnnt_loss_simple(lm, am[:, :2], symbols, 0, rnnt_type="modified", backend="torch")
    with pytest.raises(ValueError):  # LossInputError is also a ValueError, like k2's checks
        L.mutual_information_recursion(torch.randn(2, 3, 5), torch.randn(2, 3, 4), backend="torch")


def test_backend_resolution():
    assert "torch" in L.available_backends()
    assert L.resolve_backend("torch") == "torch"
    assert L.resolve_backend("auto") in L.available_backends()
    with pytest.raises(ConfigError, match="valid choices: auto, torch, fast_rnnt, k2"):
        L.resolve_backend("warp")
    if "k2" not in L.available_backends():
        with pytest.raises(MissingDependencyError, match="k2"):
            L.rnnt_loss_simple(torch.randn(1, 2, 3), torch.randn(1, 3, 3), torch.tensor([[1]]), 0, backend="k2")


def test_gradients_w_r_t_inputs_match_finite_differences_of_pruned_loss():
    """The pruned loss (scatter into the lattice + recursion) has correct gradients."""
    g = torch.Generator().manual_seed(12)
    B, T, S, C, R = 2, 5, 3, 4, 2
    symbols = torch.randint(1, C, (B, S), generator=g)
    ranges = torch.tensor([[0, 0, 1, 1, 2], [0, 1, 1, 2, 2]]).unsqueeze(-1) + torch.arange(R)
    boundary = torch.tensor([[0, 0, S, T], [0, 0, S, T]])
    logits = torch.randn(B, T, R, C, generator=g, dtype=torch.float64, requires_grad=True)

    def f(logits):
        return L.rnnt_loss_pruned(logits, symbols, ranges, 0, boundary, reduction="none", backend="torch")

    assert torch.autograd.gradcheck(f, (logits,))

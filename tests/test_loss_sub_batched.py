"""rnnt_loss_sub_batched equals the one-shot full loss, values and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from asrkit import loss as L
from asrkit.loss.sub_batched import _length_groups


class _Joiner(nn.Module):
    def __init__(self, dim: int, vocab: int) -> None:
        super().__init__()
        self.out = nn.Linear(dim, vocab)

    def forward(self, enc: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(enc + dec))


def _setup(seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    B, T, S, D, V = 5, 9, 4, 6, 7
    torch.manual_seed(seed)
    joiner = _Joiner(D, V).to(dtype)
    enc = torch.randn(B, T, D, generator=g, dtype=dtype, requires_grad=True)
    dec = torch.randn(B, S + 1, D, generator=g, dtype=dtype, requires_grad=True)
    symbols = torch.randint(1, V, (B, S), generator=g)
    boundary = torch.tensor([[0, 0, 4, 9], [0, 0, 2, 5], [0, 0, 3, 9], [0, 0, 1, 3], [0, 0, 4, 7]])
    return joiner, enc, dec, symbols, boundary


def _one_shot(joiner, enc, dec, symbols, boundary, **kw):
    logits = joiner(enc.unsqueeze(2), dec.unsqueeze(1))
    return L.rnnt_loss(logits, symbols, 0, boundary, backend="torch", **kw)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
@pytest.mark.parametrize("max_nodes", [1, 60, 10_000])
def test_sub_batched_equals_one_shot(max_nodes, reduction, rnnt_type):
    joiner, enc, dec, symbols, boundary = _setup()
    kw = dict(rnnt_type=rnnt_type, reduction=reduction, delay_penalty=0.05)
    params = list(joiner.parameters())

    ref = _one_shot(joiner, enc, dec, symbols, boundary, **kw)
    weights = torch.linspace(0.5, 2.0, 5, dtype=ref.dtype) if reduction == "none" else torch.tensor(1.7, dtype=ref.dtype)
    ref_grads = torch.autograd.grad((ref * weights).sum(), [enc, dec, *params])

    got = L.rnnt_loss_sub_batched(enc, dec, joiner, symbols, 0, boundary, max_nodes=max_nodes,
                                  backend="torch", **kw)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    got_grads = torch.autograd.grad((got * weights).sum(), [enc, dec, *params])
    for a, b in zip(got_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_sub_batched_without_boundary_and_closure_params():
    """A closure joiner with explicit params; boundary None means full lengths."""
    joiner, enc, dec, symbols, _ = _setup(1)
    lin = joiner.out

    def closure(e, d):
        return lin(torch.tanh(e + d))

    ref = _one_shot(joiner, enc, dec, symbols, None, reduction="sum", delay_penalty=0.1)
    ref_grads = torch.autograd.grad(ref, [enc, dec, lin.weight, lin.bias])
    got = L.rnnt_loss_sub_batched(enc, dec, closure, symbols, 0, None, reduction="sum", delay_penalty=0.1,
                                  max_nodes=50, params=[lin.weight, lin.bias], backend="torch")
    got_grads = torch.autograd.grad(got, [enc, dec, lin.weight, lin.bias])
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    for a, b in zip(got_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_parameter_grads_accumulate_in_module():
    joiner, enc, dec, symbols, boundary = _setup(2)
    L.rnnt_loss_sub_batched(enc, dec, joiner, symbols, 0, boundary, max_nodes=40, backend="torch").backward()
    got = [p.grad.clone() for p in joiner.parameters()]
    joiner.zero_grad()
    _one_shot(joiner, enc, dec, symbols, boundary).backward()
    for a, p in zip(got, joiner.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-9, atol=1e-10)


def test_no_grad_mode_computes_only_values():
    joiner, enc, dec, symbols, boundary = _setup(3)
    with torch.no_grad():
        got = L.rnnt_loss_sub_batched(enc, dec, joiner, symbols, 0, boundary, reduction="none",
                                      max_nodes=30, backend="torch")
        ref = _one_shot(joiner, enc, dec, symbols, boundary, reduction="none")
    assert got.grad_fn is None
    torch.testing.assert_close(got, ref)


def test_length_groups_respect_budget_and_cover_everything():
    rows = [[0, 0, u, t] for u, t in [(4, 9), (2, 5), (3, 9), (1, 3), (4, 7), (10, 50)]]
    groups = _length_groups(rows, max_nodes=100)
    assert sorted(b for g in groups for b in g) == list(range(len(rows)))
    for g in groups:
        t = max(rows[b][3] for b in g)
        s = max(rows[b][2] for b in g)
        assert len(g) == 1 or len(g) * t * (s + 1) <= 100
    assert [5] in groups  # the long one is alone (over budget by itself, still allowed)


def test_bad_arguments():
    joiner, enc, dec, symbols, boundary = _setup()
    with pytest.raises(L.LossInputError, match="max_nodes"):
        L.rnnt_loss_sub_batched(enc, dec, joiner, symbols, 0, boundary, max_nodes=0)
    with pytest.raises(L.LossInputError, match="symbols"):
        L.rnnt_loss_sub_batched(enc, dec, joiner, symbols[:, :2], 0, boundary)

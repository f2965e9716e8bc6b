"""Mixed precision on the CPU: Swoosh keeps the autocast dtype (computed in float32), and the demo's zipformer
trains a few steps under bfloat16 autocast with finite losses and float32 parameters."""

from __future__ import annotations

import pytest
import torch
from test_models_zipformer import _zipformer_xs_batch

from asrkit.models import build_transducer, presets, set_batch_count
from asrkit.models.zipformer.scaling import swoosh_l, swoosh_r

SWOOSH = [(swoosh_l, 4.0, 0.035), (swoosh_r, 1.0, 0.313261687)]


@pytest.mark.parametrize("fn, offset, const", SWOOSH)
def test_swoosh_returns_the_input_dtype_computed_in_float32(fn, offset, const):
    x32 = torch.linspace(-12.0, 12.0, 301, dtype=torch.float32)
    want = torch.nn.functional.softplus(x32 - offset) - 0.08 * x32 - const
    for requires_grad in (False, True):
        x = x32.to(torch.bfloat16).requires_grad_(requires_grad)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = fn(x)
        assert y.dtype == torch.bfloat16
        # float32 arithmetic on the bf16 inputs, rounded once
        xf = x.detach().float()
        torch.testing.assert_close(y.detach(), (torch.nn.functional.softplus(xf - offset) - 0.08 * xf - const)
                                   .to(torch.bfloat16), rtol=0, atol=0)
        if requires_grad:
            (g,) = torch.autograd.grad(y.float().sum(), x)
            assert g.dtype == torch.bfloat16
            torch.testing.assert_close(g.float(), torch.sigmoid(xf - offset) - 0.08, rtol=1e-2, atol=4e-3)
    # float32 stays exactly the plain formula
    torch.testing.assert_close(fn(x32), want, rtol=0, atol=0)


def test_zipformer_xs_trains_under_cpu_bf16_autocast():
    torch.manual_seed(0)
    model = build_transducer(presets.zipformer_xs(vocab_size=50)).train()
    set_batch_count(model, 500.0)
    x, x_lens, y, y_lens = _zipformer_xs_batch()
    x, x_lens = x[:2, :200], torch.tensor([200, 190])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    totals = []
    for _ in range(4):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses = model(x, x_lens, y[:2], y_lens[:2], loss_backend="torch")
        assert losses.simple_loss.dtype == losses.pruned_loss.dtype == torch.float32
        total = 0.5 * losses.simple_loss + losses.pruned_loss + 0.2 * losses.ctc_loss
        assert torch.isfinite(total)
        opt.zero_grad()
        total.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        totals.append(total.item())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert totals[-1] < totals[0], totals

"""Tests for asrkit.training.schedulers against hand-computed learning rates."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from asrkit.errors import ConfigError
from asrkit.training.checkpoint import load_checkpoint, save_checkpoint
from asrkit.training.optim import ScaledAdam
from asrkit.training.schedulers import Eden, WarmupInverseSqrt, build_scheduler, cooldown_factor


def _opt(lr: float = 0.045, second_group_lr: float | None = None) -> torch.optim.Optimizer:
    groups = [{"params": [nn.Parameter(torch.zeros(2))]}]
    if second_group_lr is not None:
        groups.append({"params": [nn.Parameter(torch.zeros(2))], "lr": second_group_lr})
    return torch.optim.SGD(groups, lr=lr)


def test_eden_hand_computed_values():
    opt = _opt(0.045)
    s = Eden(opt, lr_batches=7500, lr_epochs=3.5, warmup_batches=500, warmup_start=0.5)
    # Batch 0, epoch 0: both decay terms are 1, warm-up factor 0.5; set at construction already.
    assert s.get_last_lr() == [pytest.approx(0.0225)]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0225)
    # b = B: ((B^2 + B^2) / B^2) ** -0.25 = 2 ** -0.25; warm-up is over.
    s.step_batch(7500)
    assert s.get_last_lr()[0] == pytest.approx(0.045 * 2**-0.25)
    # e = E as well: another 2 ** -0.25.
    s.step_epoch(3.5)
    assert s.get_last_lr()[0] == pytest.approx(0.045 * 2**-0.5)
    # b = sqrt(15) B and e = sqrt(15) E: each term is 16 ** -0.25 = 1/2.
    s.step_batch(math.sqrt(15) * 7500)
    s.step_epoch(math.sqrt(15) * 3.5)
    assert s.get_last_lr()[0] == pytest.approx(0.045 / 4)


def test_eden_warmup_is_linear_from_warmup_start():
    s = Eden(_opt(1.0), lr_batches=1e12, lr_epochs=1e12, warmup_batches=500, warmup_start=0.5)
    lrs = {}
    for b in (0, 100, 250, 499, 500, 1000):
        s.step_batch(b)
        lrs[b] = s.get_last_lr()[0]
    assert lrs[0] == pytest.approx(0.5)
    assert lrs[100] == pytest.approx(0.6)
    assert lrs[250] == pytest.approx(0.75)
    assert lrs[499] == pytest.approx(0.5 + 0.5 * 499 / 500)
    assert lrs[500] == pytest.approx(1.0) and lrs[1000] == pytest.approx(1.0)


def test_eden_without_warmup_and_increments():
    s = Eden(_opt(2.0), lr_batches=10, lr_epochs=2, warmup_batches=0)
    assert s.get_last_lr() == [pytest.approx(2.0)]
    for _ in range(10):
        s.step_batch()  # no argument: +1
    assert s.batch == 10
    assert s.get_last_lr()[0] == pytest.approx(2.0 * 2**-0.25)
    s.step_epoch()
    s.step_epoch()
    assert s.epoch == 2
    assert s.get_last_lr()[0] == pytest.approx(2.0 * 2**-0.5)


def test_eden_decays_monotonically_after_warmup():
    s = Eden(_opt(), lr_batches=100, lr_epochs=2, warmup_batches=50)
    lrs = []
    for b in range(50, 5000, 50):
        s.step_batch(b)
        lrs.append(s.get_last_lr()[0])
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_each_param_group_keeps_its_own_base_lr():
    opt = _opt(0.04, second_group_lr=0.01)
    s = Eden(opt, lr_batches=100, lr_epochs=1, warmup_batches=0)
    s.step_batch(100)
    assert s.get_last_lr() == [pytest.approx(0.04 * 2**-0.25), pytest.approx(0.01 * 2**-0.25)]
    assert [g["initial_lr"] for g in opt.param_groups] == [0.04, 0.01]


def test_inverse_sqrt_hand_computed_values():
    s = WarmupInverseSqrt(_opt(1e-3), warmup_batches=500)
    expected = {0: 0.0, 250: 0.5e-3, 500: 1e-3, 2000: 0.5e-3, 4500: 1e-3 / 3}
    for b, lr in expected.items():
        s.step_batch(b)
        assert s.get_last_lr()[0] == pytest.approx(lr, abs=1e-15), b
    s.step_epoch(7)  # epochs do not matter
    assert s.get_last_lr()[0] == pytest.approx(1e-3 / 3)
    s2 = WarmupInverseSqrt(_opt(1.0), warmup_batches=100, warmup_start=0.2)
    assert s2.get_last_lr()[0] == pytest.approx(0.2)
    s2.step_batch(50)
    assert s2.get_last_lr()[0] == pytest.approx(0.6)


def test_state_dict_round_trip_through_checkpoint(tmp_path):
    opt = _opt(0.045, second_group_lr=0.02)
    s = Eden(opt, lr_batches=7500, lr_epochs=3.5)
    s.step_epoch(2)
    s.step_batch(1234)
    save_checkpoint(tmp_path / "c.pt", {"optimizer": opt.state_dict(), "scheduler": s.state_dict()})

    opt2 = _opt(0.045, second_group_lr=0.02)
    s2 = Eden(opt2, lr_batches=7500, lr_epochs=3.5)
    payload = load_checkpoint(tmp_path / "c.pt")
    opt2.load_state_dict(payload["optimizer"])
    s2.load_state_dict(payload["scheduler"])
    assert (s2.batch, s2.epoch) == (1234, 2)
    assert s2.get_last_lr() == s.get_last_lr()
    assert [g["lr"] for g in opt2.param_groups] == s.get_last_lr()
    s.step_batch(2000)
    s2.step_batch(2000)
    assert s2.get_last_lr() == s.get_last_lr()
    with pytest.raises(ValueError, match="1 param groups"):
        Eden(_opt()).load_state_dict(payload["scheduler"])


def test_scheduled_lr_drives_scaled_adam():
    w = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = ScaledAdam([("w", w)], lr=0.05, clipping_scale=None, scalar_lr_scale=1.0)
    Eden(opt, lr_batches=1e12, lr_epochs=1e12, warmup_batches=500, warmup_start=0.5)
    w.grad = torch.ones(1, dtype=torch.float64)
    opt.step()
    # Scalar first step: -lr * (1 - beta1) * g / (|g| + eps), with lr = 0.05 * 0.5 from the warm-up.
    assert w.item() == pytest.approx(-0.025 * 0.1 / (1 + 1e-8), rel=1e-12)


def test_build_scheduler():
    s = build_scheduler("eden", _opt(), lr_batches=100, lr_epochs=2, warmup_batches=10)
    assert isinstance(s, Eden) and s.warmup_start == 0.5 and s.lr_batches == 100
    s = build_scheduler("warmup_inverse_sqrt", _opt(), warmup_batches=10)
    assert isinstance(s, WarmupInverseSqrt) and s.warmup_start == 0.0
    with pytest.raises(ConfigError, match="unknown name 'warmup_cosine'") as info:
        build_scheduler("warmup_cosine", _opt())
    assert "eden" in info.value.hint and "warmup_inverse_sqrt" in info.value.hint
    with pytest.raises(ConfigError, match="scheduler 'eden': Eden: lr_batches"):
        build_scheduler("eden", _opt(), lr_batches=0)
    with pytest.raises(ConfigError, match="warmup_start"):
        build_scheduler("warmup_inverse_sqrt", _opt(), warmup_start=1.5)


def test_cooldown_factor_is_linear_over_the_last_fraction_of_the_budget():
    assert [cooldown_factor(u, 0.2) for u in (0.0, 0.5, 0.8)] == pytest.approx([1.0, 1.0, 1.0])
    assert cooldown_factor(0.9, 0.2) == pytest.approx(0.5)
    assert cooldown_factor(0.95, 0.2) == pytest.approx(0.25)
    assert cooldown_factor(1.0, 0.2) == 0.0 and cooldown_factor(1.3, 0.2) == 0.0
    assert cooldown_factor(0.99, 0.0) == 1.0  # disabled
    assert cooldown_factor(0.25, 1.0) == pytest.approx(0.75)  # the whole budget
    with pytest.raises(ValueError, match="cooldown_fraction"):
        cooldown_factor(0.5, 1.5)


def test_budget_factor_multiplies_the_schedule_and_is_not_checkpointed():
    s = Eden(_opt(0.045), lr_batches=100, lr_epochs=2, warmup_batches=0)
    s.step_batch(50)
    scheduled = s.get_last_lr()[0]
    s.set_budget_factor(0.25)
    assert s.get_last_lr()[0] == pytest.approx(0.25 * scheduled)
    s.step_batch(60)
    assert s.get_last_lr()[0] == pytest.approx(0.25 * s.lr_factor() * 0.045)
    assert "budget_factor" not in s.state_dict()

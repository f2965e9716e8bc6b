"""Tests for asrkit.training.optim: ScaledAdam's update rule, clipping, state and build_optimizer."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

from asrkit.errors import ConfigError
from asrkit.training.checkpoint import check_weights_only_safe, load_checkpoint, save_checkpoint
from asrkit.training.optim import ScaledAdam, build_optimizer

LR = 0.05
B1, B2 = 0.9, 0.98
EPS = 1e-8


def _unit(g: torch.Tensor) -> torch.Tensor:
    """Adam's first step direction: g / (sqrt(g^2) + eps), i.e. sign(g) up to eps."""
    return g / (g.abs() + EPS)


def _param(values) -> nn.Parameter:
    return nn.Parameter(torch.tensor(values, dtype=torch.float64))


def _step_with(opt: torch.optim.Optimizer, grads: dict) -> None:
    for p, g in grads.items():
        p.grad = torch.as_tensor(g, dtype=p.dtype).clone()
    opt.step()


# ---------------------------------------------------------------------------------------------
# Update rule, hand-computed
# ---------------------------------------------------------------------------------------------


def test_first_steps_are_relative_to_each_tensors_rms():
    small = _param([0.1, -0.1, 0.1, -0.1])  # rms 0.1
    large = _param([30.0, 40.0, -30.0, -40.0])  # rms sqrt((900+1600)/2) = 35.355...
    opt = ScaledAdam([("small", small), ("large", large)], lr=LR, clipping_scale=None)
    g_small = torch.tensor([1e-3, -2.0, 5.0, 0.0], dtype=torch.float64)
    g_large = torch.tensor([-7.0, 1.0, 1e-2, 3.0], dtype=torch.float64)
    s0, l0 = small.detach().clone(), large.detach().clone()

    # Step 0: exp_avg_sq / bias_correction = g^2, so grad / denom = g / (|g| + eps), and
    # delta_0 = -lr * (1 - beta1) * rms(p) * g / (|g| + eps).
    _step_with(opt, {small: g_small, large: g_large})
    rms_large = math.sqrt(1250.0)
    d_small = -LR * (1 - B1) * 0.1 * _unit(g_small)
    d_large = -LR * (1 - B1) * rms_large * _unit(g_large)
    torch.testing.assert_close(small.detach(), s0 + d_small, rtol=0, atol=1e-12)
    torch.testing.assert_close(large.detach(), l0 + d_large, rtol=0, atol=1e-9)

    # Step 1, same gradients: bias-corrected second moment is still g^2, momentum gives
    # delta_1 = beta1 * delta_0 + delta_0. (param_rms is refreshed only every 4 steps.)
    _step_with(opt, {small: g_small, large: g_large})
    torch.testing.assert_close(small.detach(), s0 + d_small * (2 + B1), rtol=0, atol=1e-12)
    torch.testing.assert_close(large.detach(), l0 + d_large * (2 + B1), rtol=0, atol=1e-9)


def test_zero_tensor_moves_at_param_min_rms():
    bias = _param([0.0, 0.0, 0.0])
    opt = ScaledAdam([("bias", bias)], lr=LR, clipping_scale=None, param_min_rms=1e-3)
    _step_with(opt, {bias: [1.0, -1.0, 0.5]})
    expected = -LR * (1 - B1) * 1e-3 * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(bias.detach(), expected, rtol=1e-6, atol=1e-12)


def test_scalar_parameters_use_plain_adam_and_are_clamped():
    w = _param([2.0])  # one element: the scalar path
    opt = ScaledAdam([("w", w)], lr=LR, clipping_scale=None, scalar_lr_scale=0.1, scalar_max=2.01)
    _step_with(opt, {w: [3.0]})
    # No rms scaling: delta_0 = -lr * scalar_lr_scale * (1 - beta1) * sign(g)
    assert w.item() == pytest.approx(2.0 - LR * 0.1 * (1 - B1), abs=1e-9)
    for _ in range(200):
        _step_with(opt, {w: [-3.0]})  # pushes upwards, beyond scalar_max
    assert w.item() == pytest.approx(2.01, abs=1e-12)


def test_learned_scale_grows_a_tensor_whose_loss_wants_it_larger():
    """grad = -p: both the Adam step and the scale step grow |p|.

    With the *same* Adam step, a larger ``scalar_lr_scale`` (the learning-rate factor of the
    scale) must grow the tensor more; with ``param_max_rms`` below the tensor's rms the scale
    step must pull it back instead (so it ends smaller than without scale learning).
    """

    def run(scalar_lr_scale: float, param_max_rms: float, steps: int = 8) -> float:
        p = _param([1.0, -1.0, 1.0, -1.0])
        opt = ScaledAdam(
            [("p", p)], lr=LR, clipping_scale=None, scalar_lr_scale=scalar_lr_scale,
            param_max_rms=param_max_rms, size_update_period=4,
        )
        for _ in range(steps):
            _step_with(opt, {p: -p.detach()})
        return float(p.detach().pow(2).mean().sqrt())

    base = run(scalar_lr_scale=1e-9, param_max_rms=3.0)  # scale step ~ 0
    with_scale = run(scalar_lr_scale=0.5, param_max_rms=3.0)
    capped = run(scalar_lr_scale=0.5, param_max_rms=1.0)
    assert base > 1.05  # the Adam part alone grows it
    assert with_scale > base * 1.01
    assert capped < base * 0.99


def test_scale_is_not_shrunk_below_param_min_rms():
    """Same Adam steps (same param_min_rms); only the scale learning rate differs."""

    def run(scalar_lr_scale: float, param_min_rms: float) -> float:
        p = _param([0.5, -0.5, 0.5, -0.5])
        opt = ScaledAdam([("p", p)], lr=LR, clipping_scale=None, scalar_lr_scale=scalar_lr_scale,
                         param_min_rms=param_min_rms)
        for _ in range(8):
            _step_with(opt, {p: p.detach()})  # the loss wants p smaller
        return float(p.detach().pow(2).mean().sqrt())

    # rms 0.5 is above param_min_rms=1e-5: the scale step shrinks the tensor further.
    assert run(0.5, param_min_rms=1e-5) < run(1e-9, param_min_rms=1e-5) * 0.99
    # rms 0.5 is below param_min_rms=1.0: the scale step is masked, nothing changes.
    assert run(0.5, param_min_rms=1.0) == pytest.approx(run(1e-9, param_min_rms=1.0), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Clipping
# ---------------------------------------------------------------------------------------------


def test_clipping_thresholds_follow_median_of_recent_norms():
    # A scalar's contribution to the norm is |g| * scalar_lr_scale, so norms are known exactly.
    w = _param([0.0])
    opt = ScaledAdam([("w", w)], lr=1e-6, clipping_scale=2.0, scalar_lr_scale=0.1, clipping_update_period=100)
    thresholds = {}
    for step in range(101):
        _step_with(opt, {w: [float(step + 1)]})
        thresholds[step] = opt.clipping_threshold()
    assert all(thresholds[s] is None for s in range(10))
    # Step 10: norms 0.1 .. 1.1 (11 values), median 0.6, early threshold doubled: 2 * 0.6 * 2.
    assert thresholds[10] == pytest.approx(2.4)
    # Step 20: norms 0.1 .. 2.1 (21 values), median 1.1 -> 4.4; step 40: median 2.1 -> 8.4.
    assert thresholds[20] == pytest.approx(4.4)
    assert thresholds[40] == pytest.approx(8.4)
    assert thresholds[99] == thresholds[40]
    # Step 100: buffer holds norms of steps 1..100 = 0.2 .. 10.1; sorted[50] = 5.2; 2 * 5.2.
    assert thresholds[100] == pytest.approx(10.4)


def test_clipping_scales_a_spike_and_names_the_dominant_parameter(caplog):
    w = _param([0.0])
    m = _param([0.5, -0.5])
    opt = ScaledAdam([("enc.w", w), ("joiner.m", m)], lr=1e-6, clipping_scale=1.0, scalar_lr_scale=0.1)
    for _ in range(11):
        _step_with(opt, {w: [1.0], m: [0.0, 0.0]})
    threshold = opt.clipping_threshold()
    assert threshold == pytest.approx(2 * 1.0 * 0.1)  # early doubling, median norm 0.1
    before = opt.state[m]["exp_avg_sq"].clone()
    g_m = torch.tensor([400.0, 0.0], dtype=torch.float64)  # norm: 400 * rms(m)=0.5 -> 200
    with caplog.at_level(logging.WARNING, logger="asrkit.training.optim"):
        _step_with(opt, {w: [1.0], m: g_m})
    total_norm = math.sqrt(0.1**2 + 200.0**2)
    factor = threshold / total_norm
    expected = B2 * before + (1 - B2) * (g_m * factor) ** 2
    torch.testing.assert_close(opt.state[m]["exp_avg_sq"], expected, rtol=1e-4, atol=0)
    assert "joiner.m" in caplog.text and "scaling gradients" in caplog.text
    assert caplog.text.index("joiner.m") < caplog.text.index("enc.w")  # ranked first


def test_non_finite_gradients_are_dropped():
    p = _param([1.0, 2.0, 3.0])
    opt = ScaledAdam([("p", p)], lr=LR)
    _step_with(opt, {p: [0.1, 0.1, 0.1]})
    before, delta0 = p.detach().clone(), opt.state[p]["delta"].clone()
    _step_with(opt, {p: [float("inf"), 1.0, float("nan")]})
    assert torch.isfinite(p).all()
    assert torch.isfinite(opt.state[p]["exp_avg_sq"]).all()
    # The gradient was dropped, so only momentum moved it: delta_1 = beta1 * delta_0.
    torch.testing.assert_close(p.detach() - before, B1 * delta0, rtol=1e-9, atol=1e-12)


def test_parameters_without_grad_are_left_alone():
    a, b = _param([1.0, 2.0]), _param([3.0, 4.0])
    opt = ScaledAdam([("a", a), ("b", b)], lr=LR)
    a.grad = torch.ones_like(a)
    opt.step()
    assert b.tolist() == [3.0, 4.0] and "step" not in opt.state[b]
    b.grad = torch.ones_like(b)
    opt.step()  # b (not the group's first param) starts now
    assert opt.state[b]["step"] == 1 and opt.state[a]["step"] == 2


def test_tensors_updated_together_match_each_tensor_updated_alone():
    """Without clipping every tensor's update is independent of the others, so the multi-tensor step (which
    groups tensors by their step count) must give each tensor exactly what an optimizer of its own gives,
    including a tensor that misses some gradients and so runs at another step than the rest."""
    g = torch.Generator().manual_seed(3)
    shapes = [(4, 3), (5,), (2, 2, 3), (1,), (6,)]
    init = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    together = [nn.Parameter(t.clone()) for t in init]
    alone = [nn.Parameter(t.clone()) for t in init]
    opt = ScaledAdam([(f"p{i}", p) for i, p in enumerate(together)], lr=LR, clipping_scale=None)
    opts = [ScaledAdam([(f"p{i}", p)], lr=LR, clipping_scale=None) for i, p in enumerate(alone)]
    for step in range(13):  # > 3 scale-update periods of 4 steps
        for i, (a, b) in enumerate(zip(together, alone)):
            if i == 2 and step % 3 == 1:
                a.grad = b.grad = None
                continue
            grad = torch.randn(a.shape, generator=g, dtype=torch.float64) * (1.0 + i)
            a.grad, b.grad = grad.clone(), grad.clone()
        opt.step()
        for o in opts:
            o.step()
    assert opt.state[together[2]]["step"] != opt.state[together[0]]["step"]
    for i, (a, b) in enumerate(zip(together, alone)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=f"tensor {i}")
        for key in ("delta", "exp_avg_sq"):
            torch.testing.assert_close(opt.state[a][key], opts[i].state[b][key], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Training behaviour and state
# ---------------------------------------------------------------------------------------------


def _regression_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 8, generator=g)
    y = torch.sin(x @ torch.randn(8, 1, generator=g)) + 0.5 * x[:, :1]
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))
    return model, x, y


def test_scaled_adam_trains_a_small_mlp():
    model, x, y = _regression_problem()
    opt = ScaledAdam(model.named_parameters(), lr=0.04)
    initial = nn.functional.mse_loss(model(x), y).item()
    for _ in range(150):
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = nn.functional.mse_loss(model(x), y).item()
    assert final < initial / 10, (initial, final)


def test_state_dict_round_trip_through_a_checkpoint_resumes_exactly(tmp_path):
    def run(model, opt, x, y, steps):
        for _ in range(steps):
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

    model, x, y = _regression_problem()
    opt = ScaledAdam(model.named_parameters(), lr=0.04, clipping_update_period=8)
    run(model, opt, x, y, 13)  # past a threshold update and several scale updates
    sd = opt.state_dict()
    check_weights_only_safe(sd)
    save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "optimizer": sd})

    model2, _, _ = _regression_problem(seed=5)
    opt2 = ScaledAdam(model2.named_parameters(), lr=0.04, clipping_update_period=8)
    payload = load_checkpoint(tmp_path / "c.pt")
    model2.load_state_dict(payload["model"])
    opt2.load_state_dict(payload["optimizer"])
    assert opt2.clipping_threshold() == opt.clipping_threshold() is not None
    run(model, opt, x, y, 11)
    run(model2, opt2, x, y, 11)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_param_names_default_to_positions():
    p = _param([1.0, 2.0])
    assert ScaledAdam([p]).param_name(0, 0) == "group0.param0"
    assert ScaledAdam([("enc.w", p)]).param_name(0, 0) == "enc.w"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lr": -1.0}, "lr"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"clipping_scale": 0.0}, "clipping_scale"),
        ({"param_min_rms": 1.0, "param_max_rms": 0.5}, "param_min_rms"),
        ({"size_update_period": 0}, "size_update_period"),
    ],
)
def test_invalid_hyper_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScaledAdam([("p", _param([1.0, 2.0]))], **kwargs)


# ---------------------------------------------------------------------------------------------
# build_optimizer
# ---------------------------------------------------------------------------------------------


def test_build_scaled_adam():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    model[1].weight.requires_grad_(False)
    opt = build_optimizer(model, "scaled_adam", lr=0.045)
    assert isinstance(opt, ScaledAdam)
    assert opt.param_groups[0]["param_names"] == ["0.weight", "0.bias", "1.bias"]
    assert opt.param_groups[0]["betas"] == (0.9, 0.98) and opt.param_groups[0]["clipping_scale"] == 2.0
    with pytest.raises(ConfigError, match="scaled_adam has no weight decay"):
        build_optimizer(model, "scaled_adam", lr=0.045, weight_decay=0.01)


def test_build_adamw_decays_only_matrices():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    opt = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.01)
    assert isinstance(opt, torch.optim.AdamW)
    by_wd = {g["weight_decay"]: g["param_names"] for g in opt.param_groups}
    assert by_wd == {0.01: ["0.weight"], 0.0: ["0.bias", "1.weight", "1.bias"]}
    assert opt.param_groups[0]["betas"] == (0.9, 0.98)


def test_build_optimizer_errors():
    model = nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="unknown name 'sgd'") as info:
        build_optimizer(model, "sgd", lr=0.1)
    assert "scaled_adam" in info.value.hint and "adamw" in info.value.hint
    with pytest.raises(ConfigError, match="lr must be > 0"):
        build_optimizer(model, "adamw", lr=0.0)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        build_optimizer(nn.ReLU(), "adamw", lr=0.1)

"""Training-time machinery of Zipformer2: schedules, activations, BiasNorm and gradient regularizers.

Everything here is the identity (or a plain formula) at inference: the regularizers only change gradients,
and every training-only branch sits behind ``torch.jit.is_scripting()`` / ``self.training`` so TorchScript and
ONNX export see simple graphs.

Batch-count schedules: many rates (dropout, layer skipping, regularizer strengths) follow
:class:`ScheduledFloat`, a piecewise-linear function of the training batch count. The trainer must call
:func:`set_batch_count` before every step (icefall passes ``batch_idx * max_duration * world_size / 600``);
without it every schedule returns its ``default`` (usually "off").
"""

from __future__ import annotations

import math
import random
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ScheduledFloat(nn.Module):
    """A float that is a piecewise-linear function of the training batch count.

    Args:
        points: ``(batch_count, value)`` pairs with increasing batch counts; the value is held constant outside.
        default: value in eval mode, under TorchScript, or before :func:`set_batch_count` was called.

    Example:
        ``ScheduledFloat((0.0, 0.3), (20000.0, 0.1))`` is 0.3 at batch 0 and 0.1 from batch 20000 on.
    """

    training_state_attributes = ("batch_count",)  # see asrkit.training.run_state

    def __init__(self, *points: tuple[float, float], default: float = 0.0) -> None:
        super().__init__()
        if not points:
            raise ValueError("ScheduledFloat needs at least one (batch_count, value) point")
        xs = [float(p[0]) for p in points]
        if any(b <= a for a, b in zip(xs, xs[1:])):
            raise ValueError(f"ScheduledFloat batch counts must increase: {xs}")
        self.xs = xs
        self.ys = [float(p[1]) for p in points]
        self.default = float(default)
        self.batch_count: Optional[float] = None

    def value_at(self, batch_count: float) -> float:
        """The schedule's value at ``batch_count``."""
        xs, ys = self.xs, self.ys
        if batch_count <= xs[0]:
            return ys[0]
        for i in range(1, len(xs)):
            if batch_count <= xs[i]:
                frac = (batch_count - xs[i - 1]) / (xs[i] - xs[i - 1])
                return ys[i - 1] + frac * (ys[i] - ys[i - 1])
        return ys[-1]

    def __float__(self) -> float:
        if self.batch_count is None or not self.training:
            return self.default
        return self.value_at(self.batch_count)

    def extra_repr(self) -> str:
        return f"points={list(zip(self.xs, self.ys))}, default={self.default}, batch_count={self.batch_count}"


FloatLike = Union[float, ScheduledFloat]


def set_batch_count(model: nn.Module, batch_count: float) -> None:
    """Tell every :class:`ScheduledFloat` inside ``model`` the current (duration-adjusted) batch count."""
    for module in model.modules():
        if isinstance(module, ScheduledFloat):
            module.batch_count = float(batch_count)


def _as_float(value: FloatLike) -> float:
    return float(value)


def _swoosh_formula(x: Tensor, offset: float, const: float, with_derivative: bool) -> tuple[Tensor, Optional[Tensor]]:
    """``(softplus(x - offset) - 0.08 x - const, its derivative or None)``, computed in float32 for half-precision ``x``
    with autocast off, and returned in ``x.dtype``.

    Under CUDA autocast ``softplus`` is on the float32 list, so the plain formula would return float32 and the
    feed-forward modules' widest activations would be float32, cast back to half by the next linear; icefall's
    SwooshL/SwooshR likewise return half under autocast.
    """
    with torch.autocast(x.device.type, enabled=False):
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        shifted = xf - offset
        y = F.softplus(shifted) - 0.08 * xf - const
        deriv = (torch.sigmoid(shifted) - 0.08).to(x.dtype) if with_derivative else None
    return y.to(x.dtype), deriv


class _SwooshFunction(torch.autograd.Function):
    """``softplus(x - offset) - 0.08 x - const`` whose backward is one multiply by the saved derivative
    ``sigmoid(x - offset) - 0.08`` (far fewer autograd ops than the composed formula), kept in ``x.dtype``."""

    @staticmethod
    def forward(ctx, x: Tensor, offset: float, const: float) -> Tensor:
        y, deriv = _swoosh_formula(x, offset, const, with_derivative=True)
        ctx.save_for_backward(deriv)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        (deriv,) = ctx.saved_tensors
        return grad * deriv, None, None


def swoosh_l(x: Tensor) -> Tensor:
    """SwooshL(x) = log(1 + exp(x - 4)) - 0.08 x - 0.035 (Zipformer paper, eq. 6); same dtype as ``x``."""
    if torch.jit.is_scripting():
        return F.softplus(x - 4.0) - 0.08 * x - 0.035
    if not x.requires_grad:
        return _swoosh_formula(x, 4.0, 0.035, with_derivative=False)[0]
    return _SwooshFunction.apply(x, 4.0, 0.035)


def swoosh_r(x: Tensor) -> Tensor:
    """SwooshR(x) = log(1 + exp(x - 1)) - 0.08 x - 0.313261687 (zero at x = 0); same dtype as ``x``."""
    if torch.jit.is_scripting():
        return F.softplus(x - 1.0) - 0.08 * x - 0.313261687
    if not x.requires_grad:
        return _swoosh_formula(x, 1.0, 0.313261687, with_derivative=False)[0]
    return _SwooshFunction.apply(x, 1.0, 0.313261687)


class SwooshL(nn.Module):
    """Module form of :func:`swoosh_l`."""

    def forward(self, x: Tensor) -> Tensor:
        return swoosh_l(x)


class SwooshR(nn.Module):
    """Module form of :func:`swoosh_r`."""

    def forward(self, x: Tensor) -> Tensor:
        return swoosh_r(x)


def scaled_linear(in_features: int, out_features: int, bias: bool = True, initial_scale: float = 1.0) -> nn.Linear:
    """``nn.Linear`` whose initial weights are multiplied by ``initial_scale`` (bias ~ U(+-0.1 * scale)).

    Zipformer relies on small initial outputs of residual branches (e.g. 0.05) so the network starts close to
    the identity; ScaledAdam then learns the parameter scales explicitly.
    """
    linear = nn.Linear(in_features, out_features, bias=bias)
    with torch.no_grad():
        linear.weight.mul_(initial_scale)
        if linear.bias is not None:
            nn.init.uniform_(linear.bias, -0.1 * initial_scale, 0.1 * initial_scale)
    return linear


def scaled_conv2d(*args, initial_scale: float = 1.0, **kwargs) -> nn.Conv2d:
    """``nn.Conv2d`` with initial weights multiplied by ``initial_scale`` (see :func:`scaled_linear`)."""
    conv = nn.Conv2d(*args, **kwargs)
    with torch.no_grad():
        conv.weight.mul_(initial_scale)
        if conv.bias is not None:
            nn.init.uniform_(conv.bias, -0.1 * initial_scale, 0.1 * initial_scale)
    return conv


class Dropout2(nn.Module):
    """Dropout whose rate may be a :class:`ScheduledFloat`."""

    def __init__(self, p: FloatLike) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_scripting() or not self.training:
            return x
        return F.dropout(x, p=_as_float(self.p), training=True)


class Dropout3(nn.Module):
    """Dropout sharing one mask along ``shared_dim`` (e.g. the time axis), rate may be scheduled."""

    def __init__(self, p: FloatLike, shared_dim: int) -> None:
        super().__init__()
        self.p = p
        self.shared_dim = shared_dim

    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_scripting() or not self.training:
            return x
        return _shared_dropout(x, _as_float(self.p), self.shared_dim)


def _shared_dropout(x: Tensor, p: float, shared_dim: Optional[int]) -> Tensor:
    if p == 0.0:
        return x
    shape = list(x.shape)
    if shared_dim is not None:
        shape[shared_dim] = 1
    mask = (torch.rand(shape, device=x.device) > p).to(x.dtype) * (1.0 / (1.0 - p))
    return x * mask


class ActivationDropoutAndLinear(nn.Module):
    """SwooshL/SwooshR -> dropout (mask shared along ``dropout_shared_dim``) -> Linear, in one module.

    Args:
        in_channels / out_channels: Linear sizes.
        bias: whether the Linear has a bias.
        activation: ``"SwooshL"`` or ``"SwooshR"``.
        dropout_p: dropout rate (may be scheduled).
        dropout_shared_dim: axis sharing the dropout mask (None: independent mask).
        initial_scale: see :func:`scaled_linear`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        bias: bool = True,
        activation: str = "SwooshL",
        dropout_p: FloatLike = 0.0,
        dropout_shared_dim: Optional[int] = -1,
        initial_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if activation not in ("SwooshL", "SwooshR"):
            raise ValueError(f"activation must be SwooshL or SwooshR, got {activation!r}")
        linear = scaled_linear(in_channels, out_channels, bias=bias, initial_scale=initial_scale)
        self.weight = linear.weight
        self.bias = linear.bias
        self.use_swoosh_l = activation == "SwooshL"
        self.dropout_p = dropout_p
        self.dropout_shared_dim = dropout_shared_dim

    def forward(self, x: Tensor) -> Tensor:
        x = swoosh_l(x) if self.use_swoosh_l else swoosh_r(x)
        if not torch.jit.is_scripting() and self.training:
            x = _shared_dropout(x, _as_float(self.dropout_p), self.dropout_shared_dim)
        return F.linear(x, self.weight, self.bias)


class _LimitParamValue(torch.autograd.Function):
    """Identity; in backward, flips gradient signs that would push ``x`` further outside [min, max]."""

    @staticmethod
    def forward(ctx, x: Tensor, min_value: float, max_value: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.bounds = (min_value, max_value)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        # Descent moves x by -grad: below `lo` make the step point up, above `hi` point down.
        grad = torch.where((x < lo) & (grad > 0), -grad, grad)
        grad = torch.where((x > hi) & (grad < 0), -grad, grad)
        return grad, None, None


def limit_param_value(x: Tensor, min_value: float, max_value: float, prob: float = 0.6) -> Tensor:
    """Keep a parameter mostly inside [min, max] through its gradients (applied on a random ``prob`` of calls)."""
    if random.random() < prob:
        return _LimitParamValue.apply(x, min_value, max_value)
    return x


class _WithLoss(torch.autograd.Function):
    """Returns ``x``; in backward, acts as if ``y.sum()`` had been added to the loss."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor) -> Tensor:
        ctx.y_shape = y.shape
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, torch.ones(ctx.y_shape, dtype=grad.dtype, device=grad.device)


def penalize_abs_values_gt(x: Tensor, limit: float, penalty: float) -> Tensor:
    """Return ``x`` unchanged but add ``penalty * relu(|x| - limit)`` to the loss (a failsafe against huge
    attention scores)."""
    over = (x.abs() > limit).to(x.dtype)
    aux = penalty * (x.sign() * over * x)  # derivative penalty * sign(x) where |x| > limit
    return _WithLoss.apply(x, aux)


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, alpha: float) -> Tensor:
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.alpha, None


class ScaleGrad(nn.Module):
    """Identity that multiplies the gradient by ``alpha`` (protects the first conv's fp16 gradients)."""

    def __init__(self, alpha: float) -> None:
        super().__init__()
        self.alpha = alpha

    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_scripting() or not self.training or not x.requires_grad:
            return x
        return _ScaleGrad.apply(x, self.alpha)


class BiasNorm(nn.Module):
    """``x * exp(log_scale) / rms(x - bias)`` over the last axis (Zipformer's LayerNorm replacement).

    LayerNorm lets a model "defeat" normalization by parking a large constant in one channel; BiasNorm's
    learned ``bias`` is only used to compute the scale, and ``log_scale`` is a single learned scalar.

    Args:
        num_channels: size of the last axis.
        log_scale: initial log of the output scale (kept within [log_scale_min, log_scale_max] in training).
    """

    def __init__(
        self, num_channels: int, log_scale: float = 1.0, log_scale_min: float = -1.5, log_scale_max: float = 1.5
    ) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.log_scale = nn.Parameter(torch.tensor(log_scale))
        self.bias = nn.Parameter(torch.empty(num_channels).normal_(mean=0.0, std=1e-4))
        self.log_scale_min = log_scale_min
        self.log_scale_max = log_scale_max

    def forward(self, x: Tensor) -> Tensor:
        """x (..., C) -> (..., C)."""
        log_scale = self.log_scale
        if not torch.jit.is_scripting() and self.training:
            log_scale = limit_param_value(log_scale, self.log_scale_min, self.log_scale_max)
        scales = torch.mean((x - self.bias) ** 2, dim=-1, keepdim=True) ** -0.5 * log_scale.exp()
        return x * scales


def _proportion_positive_to_mean(p: float) -> float:
    """For a Gaussian, P(x > 0) = p  <=>  mean/stddev = erfinv(2p - 1) * sqrt(2) (crude atanh approximation)."""
    v = 2.0 * p - 1.0
    eps = 1.0e-10
    atanh = (math.log(1 + v + eps) - math.log(1 - v + eps)) / 2.0
    return 0.8139535143 * atanh


def _abs_to_rms(mean_abs: float) -> float:
    """For a zero-mean Gaussian, rms = sqrt(pi/2) * E|x|."""
    return 1.25331413732 * mean_abs


class _BalancerFunction(torch.autograd.Function):
    """Identity whose backward adds a small gradient pushing per-channel statistics into range.

    Per channel (statistics over all other axes): with mean mu, stddev sigma and rms r, the penalty
    ``|m - clamp(m, min_mean, max_mean)| + |log(clamp(r, min_rms, max_rms) / r)|`` with ``m = mu / sigma`` has the
    gradient ``s_m * (1/sigma - mu (x - mu) / sigma^3) / N + s_r * x / (r N)`` (s_m, s_r in {-1, 0, 1}: which
    limit is violated). It is written out in closed form (a few ops instead of a nested autograd pass),
    normalized to rms ``grad_scale`` per channel (so N drops out) and scaled element-wise by ``|x_grad|``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, limits: tuple[float, float, float, float], grad_scale: float, channel_dim: int):
        ctx.save_for_backward(x)
        ctx.limits = limits
        ctx.grad_scale = grad_scale
        ctx.channel_dim = channel_dim
        return x.view_as(x)

    @staticmethod
    def backward(ctx, x_grad: Tensor):
        (x,) = ctx.saved_tensors
        min_mean, max_mean, min_rms, max_rms = ctx.limits
        dims = [d for d in range(x.ndim) if d != ctx.channel_dim]
        with torch.no_grad():
            xf = x.float()
            mean = xf.mean(dim=dims, keepdim=True)
            sq_mean = (xf * xf).mean(dim=dims, keepdim=True)
            std = (sq_mean - mean * mean).clamp(min=1e-20).sqrt()
            rms = sq_mean.clamp(min=1e-20).sqrt()
            m = mean / std
            s_m = (m > max_mean).float() - (m < min_mean).float()
            s_r = (rms > max_rms).float() - (rms < min_rms).float()
            pen_grad = s_m * (1.0 / std - mean * (xf - mean) / (std * std * std)) + s_r * xf / rms
            pen_rms = (pen_grad * pen_grad).mean(dim=dims, keepdim=True).sqrt().clamp(min=1e-20)
            pen_grad = pen_grad * (ctx.grad_scale / pen_rms)
            g = x_grad.float()
            return (g + g.abs() * pen_grad).to(x_grad.dtype), None, None, None


class Balancer(nn.Module):
    """Gradient-only regularizer keeping each channel's sign balance and magnitude in range.

    Forward is the identity. With probability ``prob`` per training call, the backward pass adds a gradient
    (scaled relative to the incoming gradient by ``grad_scale``) that moves the proportion of positive values
    toward [min_positive, max_positive] and the mean absolute value toward [min_abs, max_abs]. This prevents
    dead or saturated channels without adding a loss term.
    """

    def __init__(
        self,
        num_channels: int,
        channel_dim: int,
        min_positive: FloatLike = 0.05,
        max_positive: FloatLike = 0.95,
        min_abs: FloatLike = 0.2,
        max_abs: FloatLike = 100.0,
        grad_scale: FloatLike = 0.04,
        prob: Optional[FloatLike] = None,
    ) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.channel_dim = channel_dim
        self.min_positive = min_positive
        self.max_positive = max_positive
        self.min_abs = min_abs
        self.max_abs = max_abs
        self.grad_scale = grad_scale
        self.prob = prob if prob is not None else ScheduledFloat((0.0, 0.5), (8000.0, 0.125), default=0.4)

    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_scripting() or not self.training or not x.requires_grad:
            return x
        if random.random() >= _as_float(self.prob):
            return x
        limits = (
            _proportion_positive_to_mean(_as_float(self.min_positive)),
            _proportion_positive_to_mean(_as_float(self.max_positive)),
            _abs_to_rms(_as_float(self.min_abs)),
            _abs_to_rms(_as_float(self.max_abs)),
        )
        channel_dim = self.channel_dim if self.channel_dim >= 0 else self.channel_dim + x.ndim
        return _BalancerFunction.apply(x, limits, _as_float(self.grad_scale), channel_dim)


def whitening_metric(x: Tensor, num_groups: int) -> Tensor:
    """>= 1; equals 1 when, within each channel group, the centred covariance is a multiple of I (same for all
    groups). x: (..., C) with C divisible by ``num_groups``."""
    x = x.reshape(-1, x.shape[-1])
    frames, channels = x.shape
    per_group = channels // num_groups
    x = x.reshape(frames, num_groups, per_group).transpose(0, 1)  # (G, N, c)
    x = x - x.mean(dim=1, keepdim=True)
    covar = torch.matmul(x.transpose(1, 2), x)  # (G, c, c)
    mean_diag = torch.diagonal(covar, dim1=1, dim2=2).mean()
    mean_sq = (covar**2).sum() / (num_groups * per_group)
    return mean_sq / (mean_diag**2 + 1e-20)


class _WhitenFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, module: "Whiten") -> Tensor:
        ctx.save_for_backward(x)
        ctx.module = module
        return x.view_as(x)

    @staticmethod
    def backward(ctx, x_grad: Tensor):
        (x,) = ctx.saved_tensors
        w = ctx.module
        with torch.enable_grad():
            xf = x.detach().float().requires_grad_(True)
            metric = whitening_metric(xf, w.num_groups)
            if float(metric.detach()) < _as_float(w.whitening_limit):
                w.prob = w.min_prob  # constraint satisfied: check less often
                return x_grad, None
            w.prob = w.max_prob
            (pen_grad,) = torch.autograd.grad(metric, xf)
        scale = _as_float(w.grad_scale) * x_grad.float().norm() / (pen_grad.norm() + 1e-20)
        return x_grad + (pen_grad * scale).to(x_grad.dtype), None


class Whiten(nn.Module):
    """Gradient-only regularizer limiting how far activations are from "white" (isotropic covariance).

    Forward is the identity; when the :func:`whitening_metric` exceeds ``whitening_limit`` the backward pass adds
    its gradient, scaled to ``grad_scale`` times the norm of the incoming gradient. ``prob`` = (min, max):
    checked with the max probability while the limit is violated, otherwise with the min probability.
    """

    training_state_attributes = ("prob",)  # see asrkit.training.run_state

    def __init__(
        self, num_groups: int, whitening_limit: FloatLike, prob: tuple[float, float], grad_scale: FloatLike
    ) -> None:
        super().__init__()
        self.num_groups = num_groups
        self.whitening_limit = whitening_limit
        self.grad_scale = grad_scale
        self.min_prob, self.max_prob = prob
        self.prob = self.max_prob  # switched by the backward pass: saved with checkpoints (exact resume)

    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_scripting() or not self.training or not x.requires_grad:
            return x
        if random.random() > self.prob or _as_float(self.grad_scale) == 0.0:
            return x
        return _WhitenFunction.apply(x, self)


def whitening_schedule(x: float, ratio: float = 2.0) -> ScheduledFloat:
    """Whitening limit relaxing from ``x`` to ``ratio * x`` over the first 20k batches."""
    return ScheduledFloat((0.0, x), (20000.0, ratio * x), default=x)

"""ScaledAdam, the optimizer zipformer models are trained with, and :func:`build_optimizer`.

ScaledAdam (after the optimizer of the same name in icefall) is Adam with three changes that let
one learning rate fit every tensor of a deep model:

1. **Relative updates.** Each tensor's Adam step is multiplied by that tensor's RMS
   (clamped below by ``param_min_rms``), so a step changes every tensor by about the same
   *fraction* whatever its size or initial scale -- the learning rate means "relative change".
2. **A learned scale per tensor.** Relative updates alone cannot change a tensor's overall size
   quickly, so each non-scalar tensor also takes an Adam-normalised step on its log-scale, whose
   gradient is ``sum(p * grad)``. Gradients for it are gathered over ``size_update_period`` steps
   (they are noisy), and the scale is never allowed to push the RMS above ``param_max_rms``
   (this replaces weight decay) nor to shrink a tensor whose RMS is already below
   ``param_min_rms``.
3. **Adaptive gradient clipping.** The total gradient norm -- measured in the same relative
   units, ``sum(grad**2) * rms(p)**2`` per tensor -- is recorded every step; every
   ``clipping_update_period`` steps the threshold becomes ``clipping_scale`` x the median of the
   recent norms, and larger gradients are scaled down to it. When a batch needs heavy clipping
   (factor < 0.5) the tensors that dominate the norm are logged by name, which is usually the
   fastest way to find a diverging module.

Scalars (one-element tensors) get plain Adam with a smaller rate (``lr * scalar_lr_scale``) and are
clamped to ``[-scalar_max, scalar_max]``. Momentum (``betas[0]``) is applied to the final update
of each tensor (Adam step + scale step), like heavy-ball momentum; ``betas[1]`` is Adam's second
moment decay, with bias correction but (on purpose) no first-moment bias correction, which keeps
the first steps small.

Tensors are updated together with PyTorch's multi-tensor (``torch._foreach_*``) kernels, which cut the
per-tensor dispatch overhead that dominates a small model's step (icefall batches tensors of equal shape instead;
the arithmetic is the same).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from asrkit.errors import ConfigError

__all__ = ["ScaledAdam", "build_optimizer", "OPTIMIZERS"]

logger = logging.getLogger(__name__)

OPTIMIZERS = ("scaled_adam", "adamw")

# Steps (before the first regular update) at which a provisional clipping threshold is set, so
# the very start of training -- where gradients are most erratic -- is protected too.
_EARLY_THRESHOLD_STEPS = (10, 20, 40)


class ScaledAdam(Optimizer):
    """Adam with parameter-scale-relative updates, learned tensor scales and adaptive clipping.

    Args:
        params: ``model.named_parameters()`` (preferred: names appear in clipping diagnostics),
            plain parameters, or a list of param-group dicts (``{"params": [...], "lr": ...}``,
            ``params`` holding tensors or ``(name, tensor)`` pairs).
        lr: learning rate, a *relative* change per step (typically 0.02-0.05 under Eden).
        clipping_scale: clip the gradient norm to this multiple of the median recent norm;
            ``None`` disables clipping.
        betas: ``(momentum, second-moment decay)``.
        scalar_lr_scale: learning-rate factor for scalar parameters and for the tensor scales.
        eps: added to Adam's denominators.
        param_min_rms: lower bound of the RMS used to scale updates (so tensors that start at zero
            can move), and below which a tensor's scale is no longer shrunk.
        param_max_rms: the learned scale never takes a tensor's RMS above this.
        scalar_max: scalar parameters are clamped to ``[-scalar_max, scalar_max]``.
        size_update_period: steps over which scale gradients are accumulated (and after which
            the RMS used for updates is refreshed).
        clipping_update_period: steps between recomputations of the clipping threshold.

    Raises:
        ValueError: on invalid hyper-parameters (each message names the argument).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[tuple[str, Tensor]] | Iterable[dict[str, Any]],
        lr: float = 0.045,
        clipping_scale: float | None = 2.0,
        betas: tuple[float, float] = (0.9, 0.98),
        scalar_lr_scale: float = 0.1,
        eps: float = 1.0e-8,
        param_min_rms: float = 1.0e-5,
        param_max_rms: float = 3.0,
        scalar_max: float = 10.0,
        size_update_period: int = 4,
        clipping_update_period: int = 100,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"ScaledAdam: lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"ScaledAdam: betas must be in [0, 1), got {betas}")
        if clipping_scale is not None and not clipping_scale > 0.0:
            raise ValueError(f"ScaledAdam: clipping_scale must be > 0 or None, got {clipping_scale}")
        if not 0.0 < param_min_rms < param_max_rms:
            raise ValueError(
                f"ScaledAdam: need 0 < param_min_rms < param_max_rms, got {param_min_rms}, {param_max_rms}"
            )
        if size_update_period < 1 or clipping_update_period < 1:
            raise ValueError(
                "ScaledAdam: size_update_period and clipping_update_period must be >= 1, got "
                f"{size_update_period}, {clipping_update_period}"
            )
        defaults = dict(
            lr=lr,
            clipping_scale=clipping_scale,
            betas=tuple(betas),
            scalar_lr_scale=scalar_lr_scale,
            eps=eps,
            param_min_rms=param_min_rms,
            param_max_rms=param_max_rms,
            scalar_max=scalar_max,
            size_update_period=size_update_period,
            clipping_update_period=clipping_update_period,
        )
        super().__init__(params, defaults)

    # ------------------------------------------------------------------------------------------
    # Public helpers
    # ------------------------------------------------------------------------------------------

    def param_name(self, group_index: int, param_index: int) -> str:
        """The name of ``param_groups[group_index]["params"][param_index]`` (or a positional label)."""
        names = self.param_groups[group_index].get("param_names")
        if names is not None:
            return names[param_index]
        return f"group{group_index}.param{param_index}"

    def clipping_threshold(self, group_index: int = 0) -> float | None:
        """The current gradient-norm clipping threshold of a param group (``None`` until set)."""
        stats = self._group_stats(self.param_groups[group_index], create=False)
        return None if stats is None or "threshold" not in stats else float(stats["threshold"])

    # ------------------------------------------------------------------------------------------
    # The step
    # ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One optimization step over all parameters that have a gradient.

        Args:
            closure: optional callable re-evaluating the model and returning the loss.

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            items = [(pi, p) for pi, p in enumerate(group["params"]) if p.grad is not None]
            if not items:
                continue
            for _, p in items:
                if p.grad.is_sparse:
                    raise RuntimeError("ScaledAdam does not support sparse gradients")
                if "step" not in self.state[p]:  # (the state may hold only clipping stats)
                    self._init_state(group, p, self.state[p])
            factor = self._clipping_factor(gi, group, items)
            params = [p for _, p in items]
            grads = [p.grad for p in params]
            if factor != 1.0:
                grads = torch._foreach_mul(grads, factor)
            tensors: dict[int, tuple[list[Tensor], list[Tensor]]] = {}  # step -> (params, grads)
            for p, grad in zip(params, grads):
                state = self.state[p]
                if p.numel() == 1:
                    self._step_scalar(group, p, grad, state)
                else:  # (a tensor that had no gradient at some steps is at another step than the rest)
                    ps, gs = tensors.setdefault(state["step"], ([], []))
                    ps.append(p)
                    gs.append(grad)
            for step, (ps, gs) in tensors.items():
                self._step_tensors(group, ps, gs, step)
            for p in params:
                self.state[p]["step"] += 1
        return loss

    def _init_state(self, group: dict, p: Tensor, state: dict) -> None:
        state["step"] = 0
        state["delta"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if p.numel() > 1:
            state["param_rms"] = _rms(p)
            state["scale_exp_avg_sq"] = torch.zeros((), dtype=p.dtype, device=p.device)
            state["scale_grads"] = torch.zeros(group["size_update_period"], dtype=p.dtype, device=p.device)

    def _step_scalar(self, group: dict, p: Tensor, grad: Tensor, state: dict) -> None:
        """Plain Adam (no first-moment bias correction) at ``lr * scalar_lr_scale``, then clamp."""
        beta1, beta2 = group["betas"]
        lr = group["lr"] * group["scalar_lr_scale"]
        exp_avg_sq = state["exp_avg_sq"]
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        bias_correction2 = 1.0 - beta2 ** (state["step"] + 1)
        denom = (exp_avg_sq / bias_correction2).sqrt_().add_(group["eps"])
        delta = state["delta"]
        delta.mul_(beta1).addcdiv_(grad, denom, value=-lr * (1.0 - beta1))
        p.add_(delta)
        p.clamp_(min=-group["scalar_max"], max=group["scalar_max"])

    def _step_tensors(self, group: dict, params: list[Tensor], grads: list[Tensor], step: int) -> None:
        """The update of all non-scalar tensors at the same ``step``, with multi-tensor (foreach) kernels."""
        beta1, beta2 = group["betas"]
        period = group["size_update_period"]
        states = [self.state[p] for p in params]
        deltas = [st["delta"] for st in states]
        torch._foreach_mul_(deltas, beta1)

        # Gradient w.r.t. the log of each tensor's overall scale: d loss / d log(s) = sum(p * grad).
        slot = step % period
        for st, prod in zip(states, torch._foreach_mul(params, grads)):
            st["scale_grads"][slot] = prod.sum()
        if slot == period - 1:
            rms = torch._foreach_norm(params)
            torch._foreach_div_(rms, [math.sqrt(p.numel()) for p in params])
            torch._foreach_copy_([st["param_rms"] for st in states], rms)
            if step > 0:
                self._scale_update(group, params, states, deltas)

        # Adam direction, scaled by each tensor's RMS so the step is a relative change.
        exp_avg_sqs = [st["exp_avg_sq"] for st in states]
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
        bias_correction2 = 1.0 - beta2 ** (step + 1)
        if bias_correction2 < 0.99:  # skip the division once it is a <1% effect
            denoms = torch._foreach_div(exp_avg_sqs, bias_correction2)
            torch._foreach_sqrt_(denoms)
        else:
            denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_add_(denoms, group["eps"])
        param_rms = torch.stack([st["param_rms"] for st in states]).clamp(min=group["param_min_rms"])
        alphas = (-group["lr"] * (1.0 - beta1) * param_rms).tolist()
        updates = torch._foreach_div(grads, denoms)
        torch._foreach_mul_(updates, alphas)
        torch._foreach_add_(deltas, updates)
        torch._foreach_add_(params, deltas)

    def _scale_update(self, group: dict, params: list[Tensor], states: list[dict], deltas: list[Tensor]) -> None:
        """Adam step on each tensor's log(scale), from its scale gradients of the last ``size_update_period``
        steps (all tensors at once: row i of each stacked statistic belongs to ``params[i]``)."""
        beta1, beta2 = group["betas"]
        period = group["size_update_period"]
        scale_grads = torch.stack([st["scale_grads"] for st in states])  # (N, period)
        param_rms = torch.stack([st["param_rms"] for st in states])  # (N,)
        # One scale update per `period` steps: decay its statistics correspondingly faster.
        beta2_period = beta2**period
        scale_exp_avg_sq = torch.stack([st["scale_exp_avg_sq"] for st in states])
        scale_exp_avg_sq = scale_exp_avg_sq * beta2_period + (scale_grads**2).mean(dim=1) * (1.0 - beta2_period)
        torch._foreach_copy_([st["scale_exp_avg_sq"] for st in states], list(scale_exp_avg_sq.unbind(0)))
        num_scale_steps = (states[0]["step"] + 1) // period
        bias_correction2 = 1.0 - beta2_period**num_scale_steps
        denom = scale_exp_avg_sq.sqrt() + group["eps"]
        lr = group["lr"] * group["scalar_lr_scale"]
        # Equivalent to dividing scale_exp_avg_sq by bias_correction2 in the denominator.
        scale_step = -lr * math.sqrt(bias_correction2) * scale_grads.sum(dim=1) / denom
        # Never shrink a tensor that is already tiny, never grow one beyond param_max_rms.
        scale_step = torch.where(param_rms < group["param_min_rms"], torch.zeros_like(scale_step), scale_step)
        scale_step = torch.minimum(scale_step, (group["param_max_rms"] - param_rms) / param_rms)
        torch._foreach_add_(deltas, torch._foreach_mul(params, (scale_step * (1.0 - beta1)).tolist()))

    # ------------------------------------------------------------------------------------------
    # Gradient clipping
    # ------------------------------------------------------------------------------------------

    def _group_stats(self, group: dict, create: bool = True) -> dict | None:
        """Clipping statistics of a group live in the state of its first parameter (so they are saved)."""
        state = self.state[group["params"][0]] if create else self.state.get(group["params"][0])
        if state is None:
            return None
        if "clip_norms" not in state:
            if not create:
                return None
            p0 = group["params"][0]
            state["clip_norms"] = torch.zeros(group["clipping_update_period"], dtype=torch.float32, device=p0.device)
            state["clip_step"] = 0
            state["clip_num_clipped"] = 0
        return state

    def _sumsq_terms(self, group: dict, items: Sequence[tuple[int, Tensor]]) -> list[Tensor]:
        """Per-tensor contributions to the squared relative gradient norm: ``sum(grad**2) * rms(p)**2``
        (``scalar_lr_scale**2`` instead of ``rms(p)**2`` for scalars)."""
        grads = [p.grad if p.grad.dtype == torch.float32 else p.grad.float() for _, p in items]
        norms = torch.stack(torch._foreach_norm(grads))
        scalar_scale = torch.tensor(float(group["scalar_lr_scale"]), device=norms.device)
        scales = torch.stack([scalar_scale if p.numel() == 1 else self.state[p]["param_rms"].float()
                              for _, p in items])
        return list((norms * norms * scales * scales).unbind(0))

    def _clipping_factor(self, gi: int, group: dict, items: Sequence[tuple[int, Tensor]]) -> float:
        """Record this step's gradient norm and return the factor (<= 1) to scale gradients by."""
        clipping_scale = group["clipping_scale"]
        if clipping_scale is None:
            return 1.0
        stats = self._group_stats(group)
        assert stats is not None
        period = group["clipping_update_period"]
        step = stats["clip_step"]
        stats["clip_step"] = step + 1
        terms = self._sumsq_terms(group, items)
        tot_norm = float(torch.stack(terms).sum().sqrt())
        norms = stats["clip_norms"]
        norms[step % period] = tot_norm

        early = step in _EARLY_THRESHOLD_STEPS and step < period
        if (step > 0 and step % period == 0) or early:
            count = min(step + 1, period)
            recent = norms[:count] if step < period else norms
            median = float(recent.sort().values[count // 2])
            if not math.isfinite(median):
                raise RuntimeError(
                    f"ScaledAdam: the median of the last {count} gradient norms is {median}: "
                    "too many non-finite gradients (diverged training?)"
                )
            # Early thresholds are doubled: the norm is still changing fast.
            threshold = clipping_scale * median * (2.0 if early else 1.0)
            logger.info(
                "ScaledAdam group %d step %d: grad-norm median %.3e, clipping threshold %.3e, "
                "%.1f%% of steps clipped since the last update",
                gi, step, median, threshold, 100.0 * stats["clip_num_clipped"] / count,
            )
            stats["threshold"] = threshold
            stats["clip_num_clipped"] = 0

        if "threshold" not in stats:
            factor = 1.0 if math.isfinite(tot_norm) else 0.0
        else:
            factor = min(1.0, stats["threshold"] / (tot_norm + 1.0e-20)) if math.isfinite(tot_norm) else 0.0
        if factor < 1.0:
            stats["clip_num_clipped"] += 1
        if factor < 0.5:
            logger.warning(
                "ScaledAdam: scaling gradients by %.3g (norm %.3e, threshold %s); largest contributions: %s",
                factor, tot_norm, f"{stats['threshold']:.3e}" if "threshold" in stats else "unset",
                self._dominant(gi, items, terms),
            )
        if factor == 0.0:
            for _, p in items:
                p.grad.zero_()  # drop inf/nan gradients instead of poisoning the moments
        return factor

    def _dominant(self, gi: int, items: Sequence[tuple[int, Tensor]], terms: Sequence[Tensor], k: int = 3) -> str:
        total = float(torch.stack(list(terms)).sum())
        ranked = sorted(zip((float(t) for t in terms), (pi for pi, _ in items)), reverse=True, key=lambda x: x[0])
        parts = []
        for value, pi in ranked[:k]:
            share = value / total if total > 0 and math.isfinite(total) else float("nan")
            parts.append(f"{self.param_name(gi, pi)} ({share:.0%} of norm^2, {value:.3e})")
        return ", ".join(parts)


def _rms(p: Tensor) -> Tensor:
    """0-d tensor: root mean square of ``p``."""
    return (p.detach() ** 2).mean().sqrt()


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float = 0.0,
    *,
    clipping_scale: float | None = 2.0,
    betas: tuple[float, float] | None = None,
) -> Optimizer:
    """Build the optimizer named ``name`` over ``model``'s trainable parameters.

    * ``"scaled_adam"`` -- :class:`ScaledAdam` with ``model.named_parameters()``, betas
      ``(0.9, 0.98)`` by default. It has no weight decay (``param_max_rms`` bounds the weights),
      so ``weight_decay`` must be 0.
    * ``"adamw"`` -- ``torch.optim.AdamW``, betas ``(0.9, 0.98)`` by default; ``weight_decay``
      applies to tensors with 2+ dimensions only (not to biases, norms and scalars, which
      decaying would only hurt). ``clipping_scale`` is ignored: clip in the training loop
      (``torch.nn.utils.clip_grad_norm_``).

    Raises:
        ConfigError: for an unknown ``name`` (listing the valid ones), a negative ``lr`` or
            ``weight_decay``, or ``weight_decay != 0`` with ``scaled_adam``.
    """
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer: unknown name {name!r}", hint=f"valid optimizers: {', '.join(OPTIMIZERS)}")
    if not lr > 0:
        raise ConfigError(f"optimizer: lr must be > 0, got {lr}")
    if weight_decay < 0:
        raise ConfigError(f"optimizer: weight_decay must be >= 0, got {weight_decay}")
    betas = tuple(betas) if betas is not None else (0.9, 0.98)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ConfigError("optimizer: the model has no trainable parameters")
    if name == "scaled_adam":
        if weight_decay != 0:
            raise ConfigError(
                f"optimizer: scaled_adam has no weight decay, got weight_decay={weight_decay}",
                hint="set weight_decay to 0 (ScaledAdam bounds weights with param_max_rms instead)",
            )
        return ScaledAdam(named, lr=lr, clipping_scale=clipping_scale, betas=betas)
    decay = [(n, p) for n, p in named if p.ndim >= 2]
    no_decay = [(n, p) for n, p in named if p.ndim < 2]
    groups = [g for g in ({"params": decay, "weight_decay": weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay)

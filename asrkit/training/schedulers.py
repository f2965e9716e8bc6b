"""Learning-rate schedules stepped both per batch and per epoch: Eden and warm-up + inverse-sqrt.

Unlike ``torch.optim.lr_scheduler``, these schedulers are told *where* training is rather than
being ticked: call ``step_batch(batch_idx_train)`` after every optimizer step and
``step_epoch(epoch)`` at the start of every epoch. That makes them trivially correct after a
resume (no replaying of steps) and lets the trainer pass an *adjusted* batch count (for example
batches scaled by ``max_duration * world_size / reference_duration``, so the schedule does not
depend on the batch size).

Both keep the learning rate of each param group as ``base_lr * factor``, where ``base_lr`` is the
group's ``"initial_lr"`` (set from its ``"lr"`` when the scheduler is created).

Example::

    scheduler = build_scheduler("eden", optimizer, lr_batches=7500, lr_epochs=3.5)
    for epoch in range(1, num_epochs + 1):
        scheduler.step_epoch(epoch - 1)          # number of *completed* epochs
        for batch in loader:
            ...; optimizer.step(); batch_idx_train += 1
            scheduler.step_batch(batch_idx_train)
"""

from __future__ import annotations

import math
from typing import Any

from torch.optim import Optimizer

from asrkit.errors import ConfigError

__all__ = ["LRScheduler", "Eden", "WarmupInverseSqrt", "build_scheduler", "cooldown_factor", "SCHEDULERS"]

SCHEDULERS = ("eden", "warmup_inverse_sqrt")


class LRScheduler:
    """Base class: tracks ``batch`` and ``epoch`` and sets each group's ``lr = base_lr * factor``.

    Subclasses implement :meth:`lr_factor`. The learning rates are set on construction too, so the
    very first optimizer step already uses the schedule's batch-0 value.

    Args:
        optimizer: any ``torch.optim.Optimizer``.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a torch Optimizer")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs: list[float] = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.batch: float = 0
        self.epoch: float = 0
        self.budget_factor: float = 1.0
        self._apply()

    def lr_factor(self) -> float:
        """Multiplier of the base learning rates at the current ``batch`` and ``epoch``."""
        raise NotImplementedError

    def step_batch(self, batch: float | None = None) -> None:
        """Set the batch count (or increment it by one when ``batch`` is None) and update the lrs."""
        self.batch = self.batch + 1 if batch is None else batch
        self._apply()

    def step_epoch(self, epoch: float | None = None) -> None:
        """Set the number of completed epochs (or increment it when None) and update the lrs."""
        self.epoch = self.epoch + 1 if epoch is None else epoch
        self._apply()

    def set_budget_factor(self, factor: float) -> None:
        """Multiply the schedule by ``factor`` (e.g. :func:`cooldown_factor` of the used training budget) from now
        on. Not part of :meth:`state_dict`: the trainer recomputes it from the budget."""
        self.budget_factor = factor
        self._apply()

    def get_last_lr(self) -> list[float]:
        """The learning rate of each param group, as last set."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """``{"base_lrs", "batch", "epoch"}`` -- plain values, safe for weights_only loading.

        Hyper-parameters (e.g. ``lr_batches``) are *not* saved: they come from the config, so a
        resumed run may change them on purpose.
        """
        return {"base_lrs": list(self.base_lrs), "batch": self.batch, "epoch": self.epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore counters and base lrs from :meth:`state_dict` and re-apply the learning rates.

        Raises:
            ValueError: if the number of base lrs differs from the optimizer's param groups.
        """
        base_lrs = [float(x) for x in state_dict["base_lrs"]]
        if len(base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(
                f"scheduler state has {len(base_lrs)} base lrs but the optimizer has "
                f"{len(self.optimizer.param_groups)} param groups"
            )
        self.base_lrs = base_lrs
        self.batch = state_dict["batch"]
        self.epoch = state_dict["epoch"]
        self._apply()

    def _apply(self) -> None:
        factor = self.lr_factor() * self.budget_factor
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base_lr * factor


class Eden(LRScheduler):
    """The Eden schedule: slow power-law decay in both batches and epochs, after a linear warm-up.

    ``lr = base_lr * ((b^2 + B^2) / B^2) ** -0.25 * ((e^2 + E^2) / E^2) ** -0.25 * w(b)``

    with ``b`` the batch count, ``e`` the number of completed epochs, ``B = lr_batches``,
    ``E = lr_epochs``, and ``w(b) = warmup_start + (1 - warmup_start) * b / warmup_batches`` for
    ``b < warmup_batches``, else 1. Each decay term is ~1 while ``b << B`` (``e << E``) and then
    falls like ``b ** -0.5`` (``e ** -0.5``): the lr halves by ``b = sqrt(15) B``. Decaying on
    both axes means the schedule behaves sensibly whether a corpus has many short epochs or a few
    long ones.

    Args:
        optimizer: the optimizer (typically :class:`~asrkit.training.optim.ScaledAdam`).
        lr_batches: ``B`` (icefall's zipformer recipes use 7500).
        lr_epochs: ``E`` (3.5 to 6 in icefall's recipes).
        warmup_batches: length of the linear warm-up.
        warmup_start: warm-up factor at batch 0.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        lr_batches: float = 7500,
        lr_epochs: float = 3.5,
        warmup_batches: float = 500.0,
        warmup_start: float = 0.5,
    ) -> None:
        if lr_batches <= 0 or lr_epochs <= 0:
            raise ValueError(f"Eden: lr_batches and lr_epochs must be > 0, got {lr_batches}, {lr_epochs}")
        if warmup_batches < 0 or not 0.0 <= warmup_start <= 1.0:
            raise ValueError(
                f"Eden: need warmup_batches >= 0 and 0 <= warmup_start <= 1, got {warmup_batches}, {warmup_start}"
            )
        self.lr_batches = lr_batches
        self.lr_epochs = lr_epochs
        self.warmup_batches = warmup_batches
        self.warmup_start = warmup_start
        super().__init__(optimizer)

    def lr_factor(self) -> float:
        b, e = self.batch, self.epoch
        batch_term = ((b**2 + self.lr_batches**2) / self.lr_batches**2) ** -0.25
        epoch_term = ((e**2 + self.lr_epochs**2) / self.lr_epochs**2) ** -0.25
        if b >= self.warmup_batches:
            warmup = 1.0
        else:
            warmup = self.warmup_start + (1.0 - self.warmup_start) * b / self.warmup_batches
        return batch_term * epoch_term * warmup


class WarmupInverseSqrt(LRScheduler):
    """Linear warm-up, then inverse-square-root decay (the usual schedule for AdamW).

    ``factor = warmup_start + (1 - warmup_start) * b / warmup_batches`` for ``b < warmup_batches``,
    then ``sqrt(warmup_batches / b)``: continuous at the end of warm-up, 1/2 at ``4 *
    warmup_batches``. Chosen over cosine because it needs no total number of steps, which is
    unknown in advance with duration-bucketed batches. Epochs do not affect it
    (:meth:`step_epoch` only records the epoch).

    Args:
        optimizer: the optimizer (typically ``AdamW``).
        warmup_batches: warm-up length in batches (> 0).
        warmup_start: factor at batch 0 (0 starts from lr 0).
    """

    def __init__(self, optimizer: Optimizer, warmup_batches: float = 500.0, warmup_start: float = 0.0) -> None:
        if warmup_batches <= 0 or not 0.0 <= warmup_start <= 1.0:
            raise ValueError(
                "WarmupInverseSqrt: need warmup_batches > 0 and 0 <= warmup_start <= 1, got "
                f"{warmup_batches}, {warmup_start}"
            )
        self.warmup_batches = warmup_batches
        self.warmup_start = warmup_start
        super().__init__(optimizer)

    def lr_factor(self) -> float:
        b = self.batch
        if b < self.warmup_batches:
            return self.warmup_start + (1.0 - self.warmup_start) * b / self.warmup_batches
        return math.sqrt(self.warmup_batches / b)


def cooldown_factor(budget_used: float, cooldown_fraction: float) -> float:
    """Learning-rate multiplier of a linear cool-down over the last ``cooldown_fraction`` of a training budget.

    1 until ``1 - cooldown_fraction`` of the budget is used, then linearly down to 0 when all of it is used
    (``budget_used`` >= 1). A schedule that reaches a small learning rate exactly when a time- or step-capped run
    ends gives a better final model than one cut off at a high rate. ``cooldown_fraction`` 0 disables it.
    """
    if not 0.0 <= cooldown_fraction <= 1.0:
        raise ValueError(f"cooldown_fraction must be in [0, 1], got {cooldown_fraction}")
    if cooldown_fraction == 0.0:
        return 1.0
    return min(1.0, max(0.0, (1.0 - budget_used) / cooldown_fraction))


def build_scheduler(
    name: str,
    optimizer: Optimizer,
    *,
    lr_batches: float = 7500,
    lr_epochs: float = 3.5,
    warmup_batches: float = 500.0,
    warmup_start: float | None = None,
) -> LRScheduler:
    """Build the scheduler named ``name``.

    * ``"eden"`` -- :class:`Eden` (``warmup_start`` defaults to 0.5);
    * ``"warmup_inverse_sqrt"`` -- :class:`WarmupInverseSqrt` (``lr_batches``/``lr_epochs`` unused;
      ``warmup_start`` defaults to 0).

    Raises:
        ConfigError: for an unknown name (listing the valid ones) or invalid values.
    """
    if name not in SCHEDULERS:
        raise ConfigError(f"scheduler: unknown name {name!r}", hint=f"valid schedulers: {', '.join(SCHEDULERS)}")
    try:
        if name == "eden":
            return Eden(
                optimizer,
                lr_batches=lr_batches,
                lr_epochs=lr_epochs,
                warmup_batches=warmup_batches,
                warmup_start=0.5 if warmup_start is None else warmup_start,
            )
        return WarmupInverseSqrt(
            optimizer, warmup_batches=warmup_batches, warmup_start=0.0 if warmup_start is None else warmup_start
        )
    except ValueError as e:
        raise ConfigError(f"scheduler {name!r}: {e}") from e

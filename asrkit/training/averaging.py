"""Model averaging: a running average kept during training, and averages of saved checkpoints.

Two ways to average weights, both usually worth ~0.1-0.5 % absolute WER for free:

* **Checkpoint averaging** (:func:`average_checkpoints`): the plain mean of the ``"model"`` state
  dicts of the last N epoch checkpoints.
* **Running average** (:func:`update_running_average`): every ``average_period`` batches the
  trainer folds the current weights into a float64 copy, ``model_avg``, saved in each checkpoint.
  After ``n`` batches ``model_avg`` is the mean of the snapshots taken at batches ``p, 2p, ..., n``,
  i.e. an average over *all* of training so far. Because ``n * avg_n`` is then a *sum* of
  snapshots, the average over just the batches between two checkpoints is recovered exactly by
  :func:`averaged_model_from_running_averages` -- a much finer-grained average than a handful of
  epoch ends, at no extra storage.

Why float64: the running average gives the new snapshot weight ``p / n``, which is ~1e-4 after a
few hundred thousand batches; in float32 those small increments are eaten by rounding.

Non-floating-point entries (e.g. BatchNorm's integer ``num_batches_tracked``) cannot be averaged
meaningfully; everywhere in this module they take the value of the *latest* model.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from asrkit.errors import CheckpointError
from asrkit.training.checkpoint import load_checkpoint

__all__ = [
    "init_running_average",
    "update_running_average",
    "average_state_dicts",
    "average_checkpoints",
    "interval_average",
    "averaged_model_from_running_averages",
]

StateDict = dict[str, Tensor]


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip a DistributedDataParallel wrapper so keys carry no ``module.`` prefix."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def init_running_average(model: nn.Module) -> StateDict:
    """A float64 copy of ``model.state_dict()`` to start the running average from.

    Floating-point entries become float64 CPU tensors; other entries are copied unchanged.
    (The starting values do not matter: the first :func:`update_running_average`, at
    ``batch_idx_train == average_period``, gives them weight 0.)
    """
    out: StateDict = {}
    for name, value in _unwrap(model).state_dict().items():
        value = value.detach().to("cpu", copy=True)
        out[name] = value.to(torch.float64) if value.is_floating_point() else value
    return out


@torch.no_grad()
def update_running_average(
    model_avg: dict[str, Tensor],
    model: nn.Module,
    batch_idx_train: int,
    average_period: int,
) -> None:
    """Fold the current weights into the running average, in place.

    ``avg = cur * p / n + avg * (n - p) / n`` with ``n = batch_idx_train`` and
    ``p = average_period``. Call it when ``batch_idx_train % average_period == 0``; then after the
    call ``model_avg`` is the mean of the weights at batches ``p, 2p, ..., n``.

    Args:
        model_avg: float64 state dict (see :func:`init_running_average`), updated in place.
            Non-floating-point entries are overwritten with the current value.
        model: the model being trained (a DDP wrapper is unwrapped).
        batch_idx_train: number of batches trained so far, ``n >= p``.
        average_period: ``p``, batches between updates.

    Raises:
        ValueError: if ``average_period < 1`` or ``batch_idx_train < average_period``.
        KeyError: if ``model_avg`` and the model's state dict have different keys.
    """
    if average_period < 1:
        raise ValueError(f"average_period must be >= 1, got {average_period}")
    if batch_idx_train < average_period:
        raise ValueError(
            f"batch_idx_train ({batch_idx_train}) must be >= average_period ({average_period})"
        )
    current = _unwrap(model).state_dict()
    if current.keys() != model_avg.keys():
        diff = sorted(set(current) ^ set(model_avg))
        raise KeyError(f"model_avg and model state dict differ in keys: {diff[:10]}")
    weight_cur = average_period / batch_idx_train
    weight_avg = 1.0 - weight_cur
    for name, cur in current.items():
        avg = model_avg[name]
        if avg.is_floating_point():
            avg.mul_(weight_avg).add_(cur.detach().to(avg.device, torch.float64), alpha=weight_cur)
        else:
            avg.copy_(cur.detach())


def _check_same_layout(reference: Mapping[str, Tensor], other: Mapping[str, Tensor], what: str, ref_what: str) -> None:
    if reference.keys() != other.keys():
        missing = sorted(set(reference) - set(other))
        extra = sorted(set(other) - set(reference))
        raise CheckpointError(
            f"{what}: its state dict does not match {ref_what}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}",
            hint="only checkpoints of the same model architecture can be averaged",
        )
    for name, value in other.items():
        if value.shape != reference[name].shape:
            raise CheckpointError(
                f"{what}: {name!r} has shape {tuple(value.shape)} but {tuple(reference[name].shape)} in {ref_what}",
                hint="only checkpoints of the same model architecture can be averaged",
            )


class _Averager:
    """Accumulates state dicts one at a time (float64 sums), so N checkpoints need not fit in memory."""

    def __init__(self) -> None:
        self.sums: StateDict = {}
        self.dtypes: dict[str, torch.dtype] = {}
        self.count = 0
        self.first_name = ""

    def add(self, state_dict: Mapping[str, Tensor], name: str) -> None:
        if self.count == 0:
            self.first_name = name
            for key, value in state_dict.items():
                self.dtypes[key] = value.dtype
                value = value.detach().to("cpu")
                self.sums[key] = value.to(torch.float64, copy=True) if value.is_floating_point() else value.clone()
        else:
            _check_same_layout(self.sums, state_dict, name, self.first_name)
            for key, value in state_dict.items():
                if self.sums[key].is_floating_point():
                    self.sums[key] += value.detach().to("cpu", torch.float64)
                else:
                    self.sums[key] = value.detach().to("cpu").clone()  # latest wins
        self.count += 1

    def result(self) -> StateDict:
        out: StateDict = {}
        for key, value in self.sums.items():
            out[key] = (value / self.count).to(self.dtypes[key]) if value.is_floating_point() else value
        return out


def average_state_dicts(state_dicts: Sequence[Mapping[str, Tensor]]) -> StateDict:
    """Element-wise mean of state dicts with identical keys and shapes.

    Floating-point entries are averaged in float64 and returned in their original dtype (that of
    the first state dict); other entries (integer buffers) are taken from the *last* state dict.

    Args:
        state_dicts: one or more state dicts, e.g. ``model.state_dict()`` of several epochs.

    Returns:
        A new state dict on CPU.

    Raises:
        ValueError: if ``state_dicts`` is empty.
        CheckpointError: if keys or shapes differ (naming the offending index and key).
    """
    if len(state_dicts) == 0:
        raise ValueError("average_state_dicts needs at least one state dict")
    acc = _Averager()
    for i, sd in enumerate(state_dicts):
        acc.add(sd, f"state dict #{i}")
    return acc.result()


def average_checkpoints(
    paths: Iterable[str | os.PathLike[str]], key: str = "model"
) -> StateDict:
    """Mean of ``payload[key]`` over checkpoint files, loaded one at a time.

    Args:
        paths: checkpoint files (see :mod:`asrkit.training.checkpoint`), e.g. the last N
            ``epoch-<n>.pt``; the non-float entries of the last one are kept.
        key: which payload entry to average (``"model"``; ``"model_avg"`` also works).

    Returns:
        The averaged state dict (CPU; each float entry in the dtype of the first checkpoint).

    Raises:
        ValueError: if ``paths`` is empty.
        CheckpointError: if a file cannot be loaded, lacks ``key``, or does not match the first
            file's keys/shapes (the message names the file).
    """
    acc = _Averager()
    for path in paths:
        payload = load_checkpoint(path, required_keys=(key,))
        acc.add(payload[key], f"{path} [{key!r}]")
        del payload
    if acc.count == 0:
        raise ValueError("average_checkpoints needs at least one checkpoint path")
    return acc.result()


def interval_average(
    avg_start: Mapping[str, Tensor], n_start: int, avg_end: Mapping[str, Tensor], n_end: int
) -> StateDict:
    """Average of the weights between batch ``n_start`` (exclusive) and ``n_end`` (inclusive).

    ``(n_end * avg_end - n_start * avg_start) / (n_end - n_start)``, computed in float64, where
    ``avg_*`` are running averages (see :func:`update_running_average`) after ``n_*`` batches.
    ``n_start`` may be 0 (then ``avg_start`` is irrelevant and the result is ``avg_end``).
    Non-float entries are taken from ``avg_end``. Float entries are returned as float64.

    Raises:
        ValueError: if ``not 0 <= n_start < n_end``.
        CheckpointError: if the two state dicts differ in keys or shapes.
    """
    if not 0 <= n_start < n_end:
        raise ValueError(f"need 0 <= n_start < n_end, got n_start={n_start}, n_end={n_end}")
    _check_same_layout(avg_end, avg_start, "start running average", "the end running average")
    out: StateDict = {}
    for name, end in avg_end.items():
        if end.is_floating_point():
            end64 = end.detach().to("cpu", torch.float64)
            start64 = avg_start[name].detach().to("cpu", torch.float64)
            out[name] = (end64 * n_end - start64 * n_start) / (n_end - n_start)
        else:
            out[name] = end.detach().to("cpu").clone()
    return out


def _running_average_and_count(path: str | os.PathLike[str]) -> tuple[dict, int, dict]:
    payload = load_checkpoint(path, required_keys=("model_avg", "train_state"))
    train_state = payload["train_state"]
    n = train_state.get("batch_idx_train") if isinstance(train_state, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise CheckpointError(
            f"{path}: train_state['batch_idx_train'] must be a non-negative int, got {n!r}"
        )
    return payload["model_avg"], n, payload.get("model", {})


def averaged_model_from_running_averages(
    start_ckpt: str | os.PathLike[str], end_ckpt: str | os.PathLike[str]
) -> StateDict:
    """The average of the weights trained between two checkpoints, from their running averages.

    Uses each file's ``"model_avg"`` and ``train_state["batch_idx_train"]``:
    ``(n_end * avg_end - n_start * avg_start) / (n_end - n_start)``. Typical use: start =
    ``epoch-(E-N).pt``, end = ``epoch-E.pt`` averages the last N epochs batch by batch.

    Returns:
        A state dict whose float entries have the dtype of the same entry in the end
        checkpoint's ``"model"`` (float64 when that checkpoint has no ``"model"``), ready for
        ``model.load_state_dict``.

    Raises:
        CheckpointError: naming the file when one cannot be loaded, lacks ``model_avg`` or
            ``train_state['batch_idx_train']``, the end was not trained further than the start,
            or the two averages differ in keys/shapes.
    """
    avg_start, n_start, _ = _running_average_and_count(start_ckpt)
    avg_end, n_end, model_end = _running_average_and_count(end_ckpt)
    if n_end <= n_start:
        raise CheckpointError(
            f"{end_ckpt}: batch_idx_train={n_end} is not after the start checkpoint {start_ckpt} "
            f"(batch_idx_train={n_start})",
            hint="pass the earlier checkpoint as the start and the later one as the end",
        )
    try:
        out = interval_average(avg_start, n_start, avg_end, n_end)
    except CheckpointError as e:
        raise CheckpointError(f"{start_ckpt} vs {end_ckpt}: {e}", hint=e.hint) from e
    for name, value in out.items():
        ref = model_end.get(name)
        if value.is_floating_point() and isinstance(ref, Tensor) and ref.is_floating_point():
            out[name] = value.to(ref.dtype)
    return out

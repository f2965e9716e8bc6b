"""Choose (and average) the weights a later stage uses: ``--epoch/--iter/--avg/--use-averaged-model``.

Shared by ``average``, ``decode`` and ``export`` so the selection flags mean the same everywhere:

- ``--epoch E --avg N``: plain mean of ``epoch-(E-N+1).pt .. epoch-E.pt``.
- ``--epoch E --avg N --use-averaged-model``: the average of all models between the end of epoch E-N and the end
  of epoch E, from the running averages stored in ``epoch-(E-N).pt`` and ``epoch-E.pt``
  ((n_end * avg_end - n_start * avg_start) / (n_end - n_start)); with E-N = 0 the running average of epoch-E.pt.
- ``--iter I``: the same with ``checkpoint-<batch>.pt`` files, the newest N (N+1 with averaged models) whose
  batch index is <= I.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from asrkit.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)


@dataclass
class Selection:
    """Which checkpoints to use."""

    epoch: int = 0
    iter: int = 0
    avg: int = 1
    use_averaged_model: bool = False

    @property
    def suffix(self) -> str:
        """A name for the selection, used in output file names (icefall style)."""
        base = f"iter-{self.iter}" if self.iter > 0 else f"epoch-{self.epoch}"
        return f"{base}-avg-{self.avg}" + ("-use-averaged-model" if self.use_averaged_model else "")


def select_weights(exp_dir: Path, sel: Selection) -> tuple[dict[str, torch.Tensor], dict]:
    """Load (and average) the selected checkpoints.

    Returns:
        (model state dict in float32, the resolved training config dict stored in the checkpoints).

    Raises:
        ConfigError: inconsistent flags. CheckpointError: missing or unreadable files (named).
    """
    from asrkit.training.averaging import average_checkpoints, averaged_model_from_running_averages
    from asrkit.training.checkpoint import (
        batch_checkpoint_path,
        epoch_checkpoint_path,
        find_checkpoints,
        load_checkpoint,
    )

    exp_dir = Path(exp_dir)
    if sel.avg < 1:
        raise ConfigError(f"--avg must be >= 1, got {sel.avg}")
    if sel.iter > 0:
        candidates = [p for p in find_checkpoints(exp_dir) if _batch_of(p) <= sel.iter]
        needed = sel.avg + 1 if sel.use_averaged_model else sel.avg
        if len(candidates) < needed:
            raise CheckpointError(
                f"{exp_dir}: found {len(candidates)} checkpoint-*.pt with batch <= {sel.iter}, need {needed}"
            )
        chosen = candidates[:needed]
        if sel.use_averaged_model:
            end, start = chosen[0], chosen[-1]
            weights = averaged_model_from_running_averages(start, end)
            config = load_checkpoint(end, required_keys=("config",))["config"]
        else:
            weights = average_checkpoints(chosen)
            config = load_checkpoint(chosen[0], required_keys=("config",))["config"]
        log.info("selected %s", ", ".join(p.name for p in chosen))
        return _float32(weights), config
    if sel.epoch < 1:
        raise ConfigError("choose the checkpoint with --epoch E (or --iter I)")
    end = epoch_checkpoint_path(exp_dir, sel.epoch)
    if sel.use_averaged_model:
        start_epoch = sel.epoch - sel.avg
        if start_epoch < 0:
            raise ConfigError(f"--use-averaged-model with --epoch {sel.epoch} needs --avg <= {sel.epoch}")
        end_ckpt = load_checkpoint(end, required_keys=("config", "model_avg"))
        if start_epoch == 0:
            if end_ckpt["model_avg"] is None:
                raise CheckpointError(f"{end}: has no running-average model")
            weights = end_ckpt["model_avg"]
        else:
            weights = averaged_model_from_running_averages(epoch_checkpoint_path(exp_dir, start_epoch), end)
        return _float32(weights), end_ckpt["config"]
    first = sel.epoch - sel.avg + 1
    if first < 1:
        raise ConfigError(f"--epoch {sel.epoch} --avg {sel.avg} reaches before epoch 1")
    paths = [epoch_checkpoint_path(exp_dir, e) for e in range(first, sel.epoch + 1)]
    weights = average_checkpoints(paths) if len(paths) > 1 else load_checkpoint(paths[0], required_keys=("model",))["model"]
    config = load_checkpoint(paths[-1], required_keys=("config",))["config"]
    log.info("selected %s", ", ".join(p.name for p in paths))
    return _float32(weights), config


def load_selected_model(exp_dir: Path, sel: Selection, device: str | torch.device = "cpu"):
    """Build the model from the stored config and load the selected weights; returns (model, config dict).

    Only the stored ``model`` section is parsed (strictly): training-only keys that another asrkit version added or
    removed (augmentation, optimizer, ...) do not stop a checkpoint from being decoded, averaged or exported.
    """
    from asrkit.export.pretrained import build_model_from_config

    weights, config = select_weights(exp_dir, sel)
    model = build_model_from_config(config, where=f"{exp_dir} checkpoint config")
    model.load_state_dict(weights)
    model.to(device).eval()
    return model, config


def _batch_of(path: Path) -> int:
    return int(path.stem.split("-")[-1])


def _float32(weights: dict) -> dict:
    return {k: (v.to(torch.float32) if v.is_floating_point() else v) for k, v in weights.items()}

"""Mutable run state saved with every checkpoint (kept apart from the hyper-parameters)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class TrainState:
    """Where a training run is.

    Attributes:
        epoch: the epoch being trained (1-based).
        batch_idx_train: optimizer steps taken since the start of training (all epochs).
        batch_in_epoch: batches of ``epoch`` already consumed (0 at an epoch boundary).
        best_valid_loss / best_valid_epoch: the best validation loss per frame so far.
        nonfinite_batches: batches skipped because their loss was not finite.
        epoch_done: True when ``epoch`` finished (the checkpoint was written at its end).
    """

    epoch: int = 1
    batch_idx_train: int = 0
    batch_in_epoch: int = 0
    best_valid_loss: float = math.inf
    best_valid_epoch: int = 0
    nonfinite_batches: int = 0
    epoch_done: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainState":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

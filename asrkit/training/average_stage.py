"""Stage "average": write ``epoch-E-avg-N.pt`` (or ``iter-I-avg-N.pt``) with averaged weights + config."""

from __future__ import annotations

import logging
from pathlib import Path

from asrkit.training.selection import Selection, select_weights

log = logging.getLogger(__name__)


def average_to_file(exp_dir: Path, sel: Selection) -> Path:
    """Average the selected checkpoints and save ``{exp_dir}/{suffix}.pt`` (keys ``model``, ``config``)."""
    from asrkit.training.checkpoint import save_checkpoint

    weights, config = select_weights(exp_dir, sel)
    out = Path(exp_dir) / f"{sel.suffix}.pt"
    save_checkpoint(out, {"model": weights, "config": config})
    log.info("wrote %s", out)
    return out

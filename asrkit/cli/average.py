"""``asrkit average``."""

from __future__ import annotations

from pathlib import Path

import typer

from asrkit.cli.common import Avg, Epoch, ExpDir, Iter, UseAveragedModel


def average(
    exp_dir: ExpDir = Path("exp"),
    epoch: Epoch = 0,
    iter: Iter = 0,
    avg: Avg = 1,
    use_averaged_model: UseAveragedModel = False,
) -> None:
    """Average checkpoints into EXP_DIR/epoch-E-avg-N[-use-averaged-model].pt.

    Example: asrkit average --exp-dir exp/zipformer-xs --epoch 10 --avg 3 --use-averaged-model
    """
    from asrkit.training.average_stage import average_to_file
    from asrkit.training.selection import Selection
    from asrkit.utils.logging import setup_logging

    setup_logging(exp_dir / "log" / "average.log")
    out = average_to_file(exp_dir, Selection(epoch, iter, avg, use_averaged_model))
    typer.echo(str(out))
